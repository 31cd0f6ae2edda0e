//! Image handling for hull: references, registry pulls, a content-addressable
//! blob store with SQLite metadata, layer snapshots keyed by ChainID, and
//! overlayfs root filesystems for containers.

pub mod digest;
mod fsutil;
pub mod reference;
pub mod spec;
mod unpack;

pub use digest::Digest;
pub use reference::Reference;
