//! RUN: a real container through hull-engine (shim + hullc, nothing else), its output
//! streamed, its overlay upper dir turned into the step's layer.
//!
//! The container is made from the stage's last stored image with the stage's config as
//! options (env, user, workdir; no entrypoint) and is removed whatever happens. hullc
//! creates the mount targets of the default mounts (`/proc`, `/sys`, `/dev`, `/etc/hosts`,
//! ...) in the rootfs when the image lacks them; those land in the upper dir and are left
//! out of the layer, as docker's init layer and buildah's cleanup leave them out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hull_engine::{logs, ContainerOptions, Engine, Record};
use hull_image::layer_write::{append_tree, stat_in_layers, TreeOptions};
use hull_image::{LayerFile, LayerWriter};

use crate::{msg, StepError};

/// Label on build containers: the builder's pid, so that the next build can remove the
/// containers of a builder that was killed.
pub(crate) const PID_LABEL: &str = "io.hull.build.pid";

/// Mount targets of hull's default mounts, relative to `/`.
const TARGETS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// What a RUN needs.
pub(crate) struct RunSpec<'a> {
    pub image: &'a str,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub network: &'a str,
    /// The image's snapshots, top first (to know which mount targets exist).
    pub layers: &'a [PathBuf],
    pub quiet: bool,
}

/// Removes the container when dropped.
struct Guard<'a> {
    engine: &'a Engine,
    rec: Record,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.engine.remove(&self.rec, true, true);
    }
}

/// Runs the command; on exit 0 writes the layer of what it changed into `stage_dir`.
/// `Ok(Err(code))` is a non-zero exit.
pub(crate) fn run(
    engine: &Engine,
    spec: &RunSpec<'_>,
    stage_dir: &Path,
    out: &mut dyn Write,
    interrupted: &Arc<AtomicBool>,
) -> Result<Result<LayerFile, u32>, StepError> {
    let missing: Vec<PathBuf> = TARGETS
        .iter()
        .map(PathBuf::from)
        .filter(|t| stat_in_layers(spec.layers, t).is_none())
        .collect();
    let etc_missing = stat_in_layers(spec.layers, Path::new("etc")).is_none();
    let opts = ContainerOptions {
        cmd: spec.args.clone(),
        entrypoint: Some(String::new()),
        env: spec.env.clone(),
        user: spec.user.clone().filter(|u| !u.is_empty()),
        workdir: spec.workdir.clone().filter(|w| !w.is_empty()),
        network: spec.network.to_string(),
        labels: vec![(PID_LABEL.to_string(), std::process::id().to_string())],
        ..Default::default()
    };
    if interrupted.load(Ordering::SeqCst) {
        return Err(StepError::Interrupted);
    }
    let rec = engine.create(spec.image, &opts)?;
    let guard = Guard { engine, rec };
    let code = start_and_follow(engine, &guard.rec, out, spec.quiet, interrupted)?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(StepError::Interrupted);
    }
    if code != 0 {
        return Ok(Err(code));
    }
    let merged = &guard.rec.rootfs;
    let upper = merged
        .parent()
        .map(|d| d.join("upper"))
        .filter(|u| u.is_dir())
        .ok_or_else(|| msg("RUN needs an overlayfs root filesystem (no upper dir)"))?;
    let mut skip = missing;
    if etc_missing && only_targets(&upper.join("etc")) {
        skip.push(PathBuf::from("etc"));
    }
    let fuse = hull_image::Store::open(&engine.root)?.container_fuse(&guard.rec.id)?;
    let mut w = LayerWriter::create(stage_dir)?;
    append_tree(
        w.tar(),
        &upper,
        Path::new(""),
        &TreeOptions {
            overlay: true,
            fuse,
            skip: &skip,
        },
    )?;
    let layer = w.finish()?;
    drop(guard);
    Ok(Ok(layer))
}

/// An `etc` made only for the mount targets.
fn only_targets(etc: &Path) -> bool {
    std::fs::read_dir(etc).is_ok_and(|rd| {
        rd.flatten().all(|e| {
            let n = e.file_name();
            n == "hosts" || n == "hostname" || n == "resolv.conf"
        })
    })
}

/// Starts the container and copies its output to `out` until it exits; returns the code.
fn start_and_follow(
    engine: &Engine,
    rec: &Record,
    out: &mut dyn Write,
    quiet: bool,
    interrupted: &Arc<AtomicBool>,
) -> Result<u32, StepError> {
    let shim = engine.shim(rec)?;
    engine.start(rec)?;
    let exited = logs::Exited::new().map_err(|e| msg(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C: the container is killed, which ends the wait below.
    let watcher = {
        let (shim, stop, flag) = (shim.clone(), stop.clone(), interrupted.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if flag.load(Ordering::SeqCst) {
                    let _ = shim.kill("", libc::SIGKILL as u32, true);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let waiter = {
        let (exited, shim) = (exited.clone(), shim.clone());
        std::thread::spawn(move || {
            let r = shim.wait("", None);
            exited.set();
            r
        })
    };
    let dir = engine.dir(rec);
    let (mut sink_out, mut sink_err) = (std::io::sink(), std::io::sink());
    let mut err = std::io::stderr();
    let followed = if quiet {
        let mut sink = logs::Sink {
            out: &mut sink_out,
            err: &mut sink_err,
            timestamps: false,
        };
        logs::Follower::from(&dir, 0).follow(&mut sink, &exited)
    } else {
        let mut sink = logs::Sink {
            out,
            err: &mut err,
            timestamps: false,
        };
        logs::Follower::from(&dir, 0).follow(&mut sink, &exited)
    };
    let done = waiter
        .join()
        .map_err(|_| msg("waiting for the container panicked"));
    stop.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    followed.map_err(|e| msg(e.to_string()))?;
    let (code, _) = done?
        .map_err(|e| msg(format!("waiting for the container: {e}")))?
        .unwrap_or((137, 0));
    Ok(code)
}

/// Removes build containers of builders that are gone (killed before they could clean up).
pub(crate) fn sweep(engine: &Engine) {
    let Ok(list) = engine.containers.list() else {
        return;
    };
    for r in list {
        let Some((_, pid)) = r.options.labels.iter().find(|(k, _)| k == PID_LABEL) else {
            continue;
        };
        let alive = pid
            .parse::<i32>()
            .ok()
            // SAFETY: kill with signal 0 only checks that the process exists.
            .is_some_and(|p| unsafe { libc::kill(p, 0) } == 0 || last_errno_is_eperm());
        if !alive {
            let _ = engine.remove(&r, true, true);
        }
    }
}

fn last_errno_is_eperm() -> bool {
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
