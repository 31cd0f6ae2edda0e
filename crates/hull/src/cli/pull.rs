//! `hull pull`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{ArgAction, Args};
use hull_image::{Credentials, Platform, PullOptions, RegistryOptions};

#[derive(Args)]
pub(crate) struct PullArgs {
    /// Image reference, e.g. busybox, quay.io/org/img:tag, repo@sha256:...
    reference: String,
    /// Platform to pull from a multi-arch image (os/arch[/variant]).
    #[arg(long)]
    platform: Option<Platform>,
    /// Credentials for the registry (user:password).
    #[arg(long)]
    creds: Option<Credentials>,
    /// Docker/podman style auth.json to take credentials from (default: the files `hull
    /// login` writes, podman's and docker's).
    #[arg(long)]
    authfile: Option<PathBuf>,
    /// Use HTTPS with certificate verification (false: plain HTTP).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    tls_verify: bool,
    /// Layers downloaded in parallel.
    #[arg(long, default_value_t = 3)]
    parallel: usize,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn run(root: &Path, a: PullArgs) -> anyhow::Result<()> {
    let r: hull_image::Reference = a.reference.parse()?;
    let credentials = super::push::credentials(&r.registry, a.creds, a.authfile.as_deref())?;
    let opts = PullOptions {
        registry: RegistryOptions {
            tls_verify: a.tls_verify,
            credentials,
        },
        platform: a.platform,
        parallel: a.parallel,
    };
    let mut store = super::open_store(root)?;
    let bars = (!a.quiet && std::io::stderr().is_terminal()).then(crate::progress::Bars::new);
    let progress: &dyn hull_image::Progress = match &bars {
        Some(b) => b,
        None => &hull_image::NoProgress,
    };
    let report = hull_image::pull(&mut store, &a.reference, &opts, progress)
        .with_context(|| format!("pulling {r}"))?;
    if bars.is_some() {
        eprintln!(
            "{r}: {} layers fetched, {} already present",
            report.layers_fetched, report.layers_skipped
        );
    }
    hull_engine::events::Journal::open(root).emit_image("pull", &a.reference, &a.reference);
    outln!("{}", report.image.id)?;
    Ok(())
}
