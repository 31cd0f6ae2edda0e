//! Real engines drive hullc with their own default configurations and
//! seccomp profiles (issue #17): Docker Engine 20.10 and containerd 1.6
//! (Debian packages), each with private daemons in a temp dir. Every
//! scenario runs against Debian's runc too (the `*_with_runc` tests), so
//! the scenarios prove themselves; podman lives in podman.rs.
//!
//! Needs root, busybox-static, runc, containerd (ctr) and, for Docker,
//! docker.io (/usr/bin/docker, /usr/sbin/dockerd); skips with a message
//! when one is missing. scripts/deps.sh installs them all.

#![allow(clippy::unwrap_used)]

#[path = "engines/ctr.rs"]
mod ctr;
#[path = "engines/docker.rs"]
mod docker;
#[path = "engines/support.rs"]
mod support;
