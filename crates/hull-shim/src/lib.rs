//! hull-shim: `containerd-shim-hull-v2`, a containerd shim v2 that drives
//! `hullc`.
//!
//! The lifecycle core — [`reaper`], [`hullc`], [`stdio`], [`mount`],
//! [`process`], [`tasks`] — knows nothing of ttrpc, so `hull` can run
//! containers through it directly; [`service`], [`metrics`] and [`shim`] are
//! the containerd glue.

pub mod events;
pub mod health;
pub mod hullc;
pub(crate) mod journal;
pub mod jsonlog;
pub mod metrics;
pub mod mount;
pub mod process;
pub mod reaper;
pub mod restart;
pub mod serve;
pub mod service;
pub mod shim;
pub mod stdio;
pub mod supervise;
pub mod tasks;
pub mod trim;
