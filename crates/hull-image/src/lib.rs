//! Image handling for hull: docker-style references, an OCI distribution
//! client, a content-addressable blob store with SQLite metadata, layer
//! snapshots keyed by ChainID, and overlayfs root filesystems.
//!
//! Entry points: [`Store::open`], [`pull()`], [`Store::lookup`] (image
//! config), [`Store::prepare_rootfs`] / [`Store::teardown_rootfs`],
//! [`archive::save`] / [`archive::load`], [`Store::remove_image`].

pub mod archive;
pub mod auth;
pub mod digest;
mod fsutil;
pub mod layer_write;
pub mod limits;
pub mod progress;
mod pull;
pub mod reference;
mod registry;
pub mod rootfs;
pub mod spec;
pub mod store;
mod unpack;

pub use auth::Credentials;
pub use digest::Digest;
pub use layer_write::{LayerFile, LayerWriteError, LayerWriter, Override, Staging};
pub use limits::LayerLimits;
pub use progress::{LayerAction, NoProgress, Progress};
pub use pull::{pull, PullError, PullOptions, PullReport};
pub use reference::Reference;
pub use registry::{RegistryError, RegistryOptions};
pub use rootfs::{Durability, Rootfs, RootfsError, RootfsMode};
pub use spec::{ContainerConfig, ImageConfig, Platform};
pub use store::{ImageRecord, RemoveReport, Store, StoreError};
pub use unpack::{unpack_layer, UnpackError};
