//! Image handling for hull: docker-style references, an OCI distribution
//! client, a content-addressable blob store with SQLite metadata, layer
//! snapshots keyed by ChainID, and overlayfs root filesystems.
//!
//! Entry points: [`Store::open`], [`pull()`], [`Store::lookup`] (image
//! config), [`Store::prepare_rootfs`] / [`Store::teardown_rootfs`],
//! [`archive::save`] / [`archive::load`], [`Store::remove_image`].
//!
//! Making images: [`Store::draft_from`] / [`Store::draft_scratch`] → [`ImageDraft`],
//! layers with [`Store::add_layer`] (a tar stream) or [`Store::add_layer_from_dir`] (a
//! directory, e.g. an overlay upper dir), then [`Store::commit_draft`].

pub mod archive;
pub mod auth;
pub mod changes;
pub mod container;
pub mod create;
mod cred_helper;
pub mod digest;
mod fsutil;
mod layer_stack;
pub mod layer_write;
pub mod limits;
pub mod progress;
mod pull;
pub mod push;
pub mod reference;
mod registry;
pub mod rootfs;
pub mod spec;
pub mod store;
pub mod tarball;
mod unpack;
mod userns;

pub use auth::Credentials;
pub use create::{CreateError, History, ImageDraft, MediaTypes};
pub use digest::Digest;
pub use layer_write::{LayerFile, LayerWriteError, LayerWriter, Override, Staging};
pub use limits::LayerLimits;
pub use progress::{LayerAction, NoProgress, Progress};
pub use pull::{pull, PullError, PullOptions, PullReport};
pub use push::{push, PushError, PushOptions, PushReport};
pub use reference::Reference;
pub use registry::{check_login, RegistryError, RegistryOptions};
pub use rootfs::{Durability, Rootfs, RootfsError, RootfsMode};
pub use spec::{ContainerConfig, ImageConfig, Platform};
pub use store::{ImageRecord, LayerRecord, PruneReport, RemoveReport, Store, StoreError};
pub use unpack::{unpack_layer, unpack_plain, UnpackError};
