//! `run`/`create --pull missing|always|never`: the image pulled before the container is
//! made, with the pull's progress on stderr (bars on a terminal, docker's plain lines
//! otherwise), so that stdout keeps only what `run`/`create` print (the id, the output).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use clap::ValueEnum;
use hull_image::{PullOptions, RegistryOptions, StoreError};

/// docker's `--pull` policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum PullPolicy {
    /// Pull only when the image is not in the store.
    #[default]
    Missing,
    /// Pull every time (a newer image under the same tag replaces the old one).
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

/// Makes sure `image` is in the store under `policy`, pulling it when needed.
pub(crate) fn ensure(root: &Path, image: &str, policy: PullPolicy) -> Result<()> {
    let present = {
        let store = super::open_store(root)?;
        match store.lookup(image) {
            Ok(_) => true,
            Err(StoreError::NotFound(_)) => false,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("looking up {image}"))),
        }
    };
    match (policy, present) {
        (PullPolicy::Never, false) => bail!(
            "unable to find image {image:?} locally, and --pull never forbids pulling it \
             (pull it with `hull pull {image}`, or use --pull missing)"
        ),
        (PullPolicy::Never, true) | (PullPolicy::Missing, true) => return Ok(()),
        _ => {}
    }
    if !present {
        eprintln!("Unable to find image '{image}' locally");
    }
    pull(root, image)
}

/// Pulls `image` with the defaults of `hull pull` (TLS verified, 3 layers at a time).
fn pull(root: &Path, image: &str) -> Result<()> {
    // An image id (or its prefix) that is not here cannot be pulled by that name.
    let r: hull_image::Reference = image
        .parse()
        .with_context(|| format!("unable to find image {image:?} locally"))?;
    let opts = PullOptions {
        registry: RegistryOptions {
            tls_verify: true,
            credentials: None,
        },
        platform: None,
        parallel: 3,
    };
    let mut store = super::open_store(root)?;
    let bars = std::io::stderr()
        .is_terminal()
        .then(crate::progress::Bars::new);
    let progress: &dyn hull_image::Progress = match &bars {
        Some(b) => b,
        None => &Lines,
    };
    eprintln!("Pulling {r}");
    let report = hull_image::pull(&mut store, image, &opts, progress)
        .with_context(|| format!("pulling {r}"))?;
    hull_engine::events::Journal::open(root).emit_image("pull", image, image);
    eprintln!(
        "Status: {} for {r} ({} layers fetched, {} already present)",
        if report.layers_fetched > 0 {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        },
        report.layers_fetched,
        report.layers_skipped
    );
    Ok(())
}

/// Progress as docker prints it when stderr is not a terminal: one line per layer event.
struct Lines;

impl hull_image::Progress for Lines {
    fn layer_start(&self, blob: &hull_image::Digest, _size: u64, action: hull_image::LayerAction) {
        let what = match action {
            hull_image::LayerAction::Skip => "Already exists",
            _ => "Pulling fs layer",
        };
        eprintln!("{}: {what}", &blob.hex()[..12]);
    }
    fn layer_bytes(&self, _blob: &hull_image::Digest, _n: u64) {}
    fn layer_done(&self, blob: &hull_image::Digest, ok: bool) {
        let what = if ok { "Pull complete" } else { "Pull failed" };
        eprintln!("{}: {what}", &blob.hex()[..12]);
    }
    fn message(&self, msg: &str) {
        eprintln!("{msg}");
    }
}
