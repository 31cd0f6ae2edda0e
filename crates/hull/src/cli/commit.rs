//! `hull commit`, `hull export`, `hull diff`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{ArgAction, Args};
use hull_engine::image::CommitOptions;
use hull_engine::Engine;

#[derive(Args)]
pub(crate) struct CommitArgs {
    /// Container name or id.
    container: String,
    /// Name of the new image: [registry/]name[:tag].
    image: Option<String>,
    /// Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER,
    /// VOLUME, WORKDIR, ...); repeatable.
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Commit message (the history comment).
    #[arg(short, long)]
    message: Option<String>,
    /// Author (e.g. "Jane <jane@example.com>").
    #[arg(short, long)]
    author: Option<String>,
    /// Freeze the container while committing.
    #[arg(short, long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Container name or id.
    container: String,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct DiffArgs {
    /// Container name or id.
    container: String,
}

pub(crate) fn commit(root: &Path, a: CommitArgs) -> anyhow::Result<()> {
    if let Some(n) = &a.image {
        hull_image::create::parse_new_name(n).with_context(|| format!("image name {n:?}"))?;
    }
    let engine = Engine::open(root)?;
    let o = CommitOptions {
        name: a.image,
        changes: a.change,
        message: a.message,
        author: a.author,
        pause: a.pause,
    };
    let img = engine
        .commit(&a.container, &o)
        .with_context(|| format!("committing {}", a.container))?;
    outln!("{}", img.id)?;
    Ok(())
}

pub(crate) fn export(root: &Path, a: ExportArgs) -> anyhow::Result<()> {
    let engine = Engine::open(root)?;
    let what = || format!("exporting {}", a.container);
    match &a.output {
        Some(p) => {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("--output {}", p.display()))?;
            let w = std::io::BufWriter::new(tmp.reopen()?);
            engine.export(&a.container, w).with_context(what)?;
            tmp.persist(p)
                .with_context(|| format!("--output {}", p.display()))?;
        }
        None => {
            let out = std::io::stdout();
            if std::io::IsTerminal::is_terminal(&out) {
                anyhow::bail!("refusing to write a tar to a terminal: use -o FILE or a redirect");
            }
            let w = std::io::BufWriter::with_capacity(1 << 20, super::Output(out.lock()));
            engine.export(&a.container, w).with_context(what)?;
        }
    }
    Ok(())
}

pub(crate) fn diff(root: &Path, a: DiffArgs) -> anyhow::Result<()> {
    let engine = Engine::open(root)?;
    let changes = engine
        .diff(&a.container)
        .with_context(|| format!("diff of {}", a.container))?;
    let mut out = std::io::BufWriter::new(super::Output(std::io::stdout().lock()));
    for c in changes {
        writeln!(out, "{} {}", c.kind.letter(), c.path).map_err(super::out_err)?;
    }
    out.flush().map_err(super::out_err)?;
    Ok(())
}
