//! `hull system service`: the Docker Engine API on a socket (hull-api does the work).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use hull_api::{Config, Listen};

#[derive(Args)]
pub(crate) struct ServiceArgs {
    /// Exit after this many seconds without a client (0: run until stopped).
    #[arg(short, long, default_value_t = 5, value_name = "SECONDS")]
    time: u64,
    /// Where to listen: unix:///PATH, or tcp://HOST:PORT (unauthenticated: root to anyone)
    /// [default: unix:///run/hull/docker.sock; rootless unix://$XDG_RUNTIME_DIR/hull/docker.sock].
    uri: Option<String>,
}

pub(crate) fn run(root: &Path, a: ServiceArgs) -> Result<u8> {
    let uri = a
        .uri
        .unwrap_or_else(|| match hull_engine::rootless::run_dir() {
            Some(run) => format!("unix://{}", run.join("docker.sock").display()),
            None => "unix:///run/hull/docker.sock".into(),
        });
    let listen: Listen = uri.parse()?;
    hull_api::serve(Config {
        root: root.into(),
        listen,
        idle: (a.time > 0).then(|| Duration::from_secs(a.time)),
    })
    .context("hull system service")?;
    Ok(0)
}
