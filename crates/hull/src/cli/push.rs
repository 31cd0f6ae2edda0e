//! `hull push`, `hull login`, `hull logout`.

use std::io::{BufRead as _, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{ArgAction, Args};
use hull_image::{Credentials, PushOptions, RegistryOptions};

#[derive(Args)]
pub(crate) struct PushArgs {
    /// Image name or id.
    image: String,
    /// Where to: [docker://]registry/name[:tag] (default: the image's name).
    dest: Option<String>,
    /// Credentials for the registry (user:password).
    #[arg(long)]
    creds: Option<Credentials>,
    /// Docker/podman style auth.json to take credentials from (default: the login files).
    #[arg(long)]
    authfile: Option<PathBuf>,
    /// Use HTTPS with certificate verification (false: plain HTTP).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    tls_verify: bool,
    /// Upload blobs in chunks of this many bytes (K/M/G suffixes; default: one request
    /// per blob).
    #[arg(long, value_parser = parse_size)]
    chunk_size: Option<u64>,
    /// Blobs uploaded in parallel.
    #[arg(long, default_value_t = 3)]
    parallel: usize,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct LoginArgs {
    /// Registry host[:port] (default docker.io).
    registry: Option<String>,
    /// User name for the registry.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible in the process list: prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Auth file to write (default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    /// else ~/.docker/config.json).
    #[arg(long)]
    authfile: Option<PathBuf>,
    /// Use HTTPS with certificate verification (false: plain HTTP).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    tls_verify: bool,
}

#[derive(Args)]
pub(crate) struct LogoutArgs {
    /// Registry host[:port] (default docker.io).
    registry: Option<String>,
    /// Auth file to edit (default: every file login and pull read).
    #[arg(long)]
    authfile: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            format!("invalid size {s:?}: expected a positive number of bytes, K, M or G")
        })
}

/// Credentials from `--creds`, else `--authfile`, else the default auth files.
pub(crate) fn credentials(
    registry: &str,
    creds: Option<Credentials>,
    authfile: Option<&Path>,
) -> anyhow::Result<Option<Credentials>> {
    if creds.is_some() {
        return Ok(creds);
    }
    Ok(hull_image::auth::lookup(registry, authfile)?)
}

pub(crate) fn push(root: &Path, a: PushArgs) -> anyhow::Result<()> {
    let dest = hull_image::push::destination(&a.image, a.dest.as_deref())
        .with_context(|| format!("pushing {}", a.image))?;
    let opts = PushOptions {
        registry: RegistryOptions {
            tls_verify: a.tls_verify,
            credentials: credentials(&dest.registry, a.creds, a.authfile.as_deref())?,
        },
        chunk_size: a.chunk_size,
        parallel: a.parallel,
    };
    let mut store = super::open_store(root)?;
    let bars = (!a.quiet && std::io::stderr().is_terminal()).then(crate::progress::Bars::new);
    let progress: &dyn hull_image::Progress = match &bars {
        Some(b) => b,
        None => &hull_image::NoProgress,
    };
    let r = hull_image::push(&mut store, &a.image, a.dest.as_deref(), &opts, progress)
        .with_context(|| format!("pushing {} to {dest}", a.image))?;
    if !a.quiet {
        eprintln!(
            "{}: {} blobs uploaded, {} already there, {} mounted",
            r.reference, r.blobs_uploaded, r.blobs_present, r.blobs_mounted
        );
    }
    let pushed = r.reference.to_string();
    hull_engine::events::Journal::open(root).emit_image("push", &pushed, &pushed);
    outln!("{}: digest: {} size: {}", r.reference, r.digest, r.size)?;
    Ok(())
}

fn registry_arg(r: Option<String>) -> anyhow::Result<String> {
    let r = r.unwrap_or_else(|| "docker.io".into());
    let host = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(&r)
        .trim_end_matches('/');
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "index.docker.io/v1" => "docker.io",
        h => h,
    };
    if host.is_empty() || host.contains('/') {
        bail!("invalid registry {r:?}: give host[:port]");
    }
    Ok(host.to_string())
}

pub(crate) fn login(a: LoginArgs) -> anyhow::Result<()> {
    let registry = registry_arg(a.registry)?;
    let Some(username) = a.username.filter(|u| !u.is_empty()) else {
        bail!("--username is required");
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("--password or --password-stdin is required"),
    };
    let creds = Credentials { username, password };
    let opts = RegistryOptions {
        tls_verify: a.tls_verify,
        credentials: Some(creds.clone()),
    };
    hull_image::check_login(&registry, &opts)
        .with_context(|| format!("logging in to {registry}"))?;
    let file = a
        .authfile
        .unwrap_or_else(hull_image::auth::default_write_file);
    hull_image::auth::store_credentials(&file, &registry, &creds)?;
    outln!("Login Succeeded!")?;
    Ok(())
}

pub(crate) fn logout(a: LogoutArgs) -> anyhow::Result<()> {
    let registry = registry_arg(a.registry)?;
    let files = match a.authfile {
        Some(f) => vec![f],
        None => hull_image::auth::default_auth_files(),
    };
    let mut removed = false;
    for f in &files {
        removed |= hull_image::auth::remove_credentials(f, &registry)?;
    }
    if !removed {
        bail!("not logged in to {registry}");
    }
    outln!("Removed login credentials for {registry}")?;
    Ok(())
}
