//! `hull cdi list|generate`, and the CDI side of `--device`/`--gpus`/`inspect`: the
//! spec work itself is hull-cdi's; the engine applies the devices when it builds the
//! container's config.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use hull_engine::opts::{self, ContainerOptions};

#[derive(Subcommand)]
pub(crate) enum CdiCommand {
    /// Print the qualified names of the devices in the CDI spec directories.
    List,
    /// Write a CDI spec for this host's devices.
    Generate {
        /// NVIDIA GPUs (kind nvidia.com/gpu), as `nvidia-ctk cdi generate` finds them.
        #[arg(long, required = true)]
        nvidia: bool,
        /// Write here (YAML, or JSON for a .json name) instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Look for devices, libraries and driver files under this root.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

/// `--cdi-spec-dir`: handed on through the environment, which is where the engine reads
/// the spec directories from ([`hull_cdi::spec_dirs`]).
pub(crate) fn set_spec_dirs(dirs: &[PathBuf]) {
    if dirs.is_empty() {
        return;
    }
    let joined: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    std::env::set_var(hull_cdi::SPEC_DIRS_ENV, joined.join(":"));
}

/// `--device`: a leading `/` is a host path, a `vendor/class=name` a CDI device (as
/// docker and podman tell them apart); `--gpus`: `nvidia.com/gpu` CDI devices.
pub(crate) fn device_flags(
    o: &mut ContainerOptions,
    devices: &[String],
    gpus: Option<&str>,
) -> Result<()> {
    for d in devices {
        if hull_cdi::is_qualified_name(d) {
            hull_cdi::parse_qualified_name(d).with_context(|| format!("--device {d}"))?;
            o.cdi_devices.push(d.clone());
        } else {
            o.devices.push(opts::parse_device(d)?);
        }
    }
    if let Some(g) = gpus {
        let reg = hull_cdi::Registry::load(&hull_cdi::spec_dirs());
        o.cdi_devices.extend(hull_cdi::gpu_devices(&reg, g)?);
    }
    Ok(())
}

/// `HostConfig.DeviceRequests` as docker 25 shows CDI devices.
pub(crate) fn run(c: CdiCommand) -> Result<()> {
    match c {
        CdiCommand::List => list(),
        CdiCommand::Generate { output, root, .. } => generate(&root, output.as_deref()),
    }
}

/// Broken specs are reported on stderr; the devices of the others still list.
fn list() -> Result<()> {
    let reg = hull_cdi::Registry::load(&hull_cdi::spec_dirs());
    for (_, e) in &reg.errors {
        eprintln!("warning: {e}");
    }
    for name in reg.devices.keys() {
        outln!("{name}")?;
    }
    Ok(())
}

fn generate(root: &Path, output: Option<&Path>) -> Result<()> {
    let spec = hull_cdi::nvidia::generate(root)?;
    let Some(out) = output else {
        std::io::stdout()
            .write_all(hull_cdi::nvidia::render(&spec, false).as_bytes())
            .map_err(super::out_err)?;
        return Ok(());
    };
    let json = out.extension().is_some_and(|e| e == "json");
    let text = hull_cdi::nvidia::render(&spec, json);
    let Some(name) = out.file_name() else {
        bail!("--output {}: not a file name", out.display());
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written aside and renamed: a runtime reading the directory never sees half a spec.
    let tmp = out.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(())
}
