//! hull-check [CONFIG]: checks from inside a container that CONFIG (default
//! `$HULL_CHECK_CONFIG`, else `/config.json`) was applied to the process it
//! runs as, printing one JSON line per field:
//!
//! `{"field":"process.user.uid","ok":true,"want":0,"got":[0,0,0,0]}`
//!
//! Environment: `HULL_CHECK_HOST_NS` (`net:INODE mnt:INODE ...`, the host's
//! namespaces, to tell new from shared ones) and `HULL_CHECK_JOINED_NS`
//! (the same for namespaces the config joins by path).
//!
//! The checker's own argv must be the config's `process.args`, so options are
//! taken from the environment only: the config path is the one argument it
//! reads, and only when it names an existing file.
//!
//! Exit status: 0 all fields ok, 1 some field failed, 2 the config could not
//! be read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use hull_conformance::checks::{self, Env};

fn config_path() -> PathBuf {
    if let Some(a) = std::env::args().nth(1) {
        let p = PathBuf::from(a);
        if p.is_file() {
            return p;
        }
    }
    std::env::var_os("HULL_CHECK_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/config.json"))
}

fn run() -> anyhow::Result<bool> {
    let path = config_path();
    let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: serde_json::Value =
        serde_json::from_slice(&raw).with_context(|| format!("parsing {}", path.display()))?;
    let list = |k: &str| Env::parse_ns_list(&std::env::var(k).unwrap_or_default());
    let env = Env {
        host_ns: list("HULL_CHECK_HOST_NS"),
        joined_ns: list("HULL_CHECK_JOINED_NS"),
    };
    let report = checks::run_all(&cfg, &env);
    let mut out = std::io::stdout().lock();
    for c in &report.checks {
        writeln!(out, "{}", c.to_json()).context("writing stdout")?;
    }
    out.flush().context("writing stdout")?;
    Ok(report.all_ok())
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("hull-check: {e:#}");
            std::process::exit(2);
        }
    }
}
