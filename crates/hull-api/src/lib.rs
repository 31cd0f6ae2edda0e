//! The Docker Engine API (v1.41, what docker 20.10 clients speak) over hull-engine: the
//! same containers, images, networks and volumes that `hull` shows, served on a unix
//! socket by `hull system service`.
//!
//! hyper 1.x on tokio serves HTTP/1.1 (with the connection upgrade docker's attach uses);
//! routing is a match on the path's segments ([`routes`]), the version prefix `/v1.xx`
//! optional. The engine is synchronous (files, flocks, ttrpc to the shims), so every call
//! into it runs on tokio's blocking pool; streams (logs, attach, wait) are fed from there
//! through channels.

mod body_file;
mod containers;
mod create;
mod ctr_image;
mod ctr_more;
mod error;
mod events;
mod exec;
mod http;
mod image_xfer;
mod images;
mod networks;
mod routes;
mod server;
mod streams;
mod system;
mod volumes;

pub use server::{serve, Config, Error, Listen};

/// The API version we answer with (docker 20.10's).
pub(crate) const API_VERSION: &str = "1.41";
/// The oldest version we accept (docker's own minimum).
pub(crate) const MIN_API_VERSION: &str = "1.12";
