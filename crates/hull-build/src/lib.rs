//! `hull build`: builds an image from a Dockerfile/Containerfile with hull's own parts.
//!
//! - [`parser`] turns the file into instructions (our own parser, grammar in its comment),
//!   [`lex`] expands variables and splits words per instruction as the build goes.
//! - Each stage starts from an image in the store (pulled if missing), `scratch` or an
//!   earlier stage. Config instructions (ENV, CMD, ...) change the config in memory; RUN
//!   runs a real container through hull-engine (shim + hullc) and turns its overlay upper
//!   dir into a layer; COPY/ADD write their layer straight from the context.
//! - Every file-changing step commits an (unnamed) image through hull-image's
//!   `layer_write` and records it in the step cache (`cache.rs`), keyed like docker's:
//!   the parent's key, the instruction and the digests of the files it copies.
//! - An interrupted build removes its container; one killed outright leaves it to the
//!   next build, which removes the build containers of dead builders before starting.

pub mod lex;
pub mod parser;
pub mod pattern;

mod build;
pub mod cache;
mod copy;
mod instr;
mod run;

use std::path::PathBuf;

pub use build::build;

/// What `hull build` was asked.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile; `Containerfile` or `Dockerfile` in the context when `None`.
    pub file: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--network` for RUN (`bridge` when empty, as docker).
    pub network: String,
    /// `--platform`: the platform of every FROM without its own (RUN needs the host's).
    pub platform: Option<String>,
    /// Print only the image id.
    pub quiet: bool,
}

/// A failure of a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] parser::ParseError),
    #[error("{file}:{line}: {instruction}: {msg}")]
    Instruction {
        file: PathBuf,
        line: usize,
        instruction: String,
        msg: String,
    },
    #[error(
        "step {step}: {instruction}: the command {command:?} returned a non-zero code: {code}"
    )]
    RunFailed {
        step: String,
        instruction: String,
        command: Vec<String>,
        code: u32,
    },
    #[error("step {step}: {instruction}")]
    Step {
        step: String,
        instruction: String,
        #[source]
        source: Box<StepError>,
    },
    #[error("no Containerfile or Dockerfile in {0}")]
    NoFile(PathBuf),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--target {0}: no stage of that name")]
    NoTarget(String),
    #[error("--platform {0}: {1}")]
    Platform(String, String),
    #[error("the build was interrupted")]
    Interrupted,
    #[error(transparent)]
    Store(Box<hull_image::StoreError>),
    #[error(transparent)]
    Engine(Box<hull_engine::Error>),
    #[error("writing {0}")]
    Output(#[source] std::io::Error),
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Msg(String),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lex(#[from] lex::LexError),
    #[error(transparent)]
    Store(#[from] hull_image::StoreError),
    #[error(transparent)]
    Layer(#[from] hull_image::LayerWriteError),
    #[error(transparent)]
    Engine(#[from] hull_engine::Error),
    #[error(transparent)]
    Rootfs(#[from] hull_image::RootfsError),
    #[error(transparent)]
    Pull(#[from] hull_image::PullError),
    #[error("the build was interrupted")]
    Interrupted,
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StepError + '_ {
    move |source| StepError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn msg(s: impl Into<String>) -> StepError {
    StepError::Msg(s.into())
}

impl From<hull_image::StoreError> for BuildError {
    fn from(e: hull_image::StoreError) -> Self {
        BuildError::Store(Box::new(e))
    }
}

impl From<hull_engine::Error> for BuildError {
    fn from(e: hull_engine::Error) -> Self {
        BuildError::Engine(Box::new(e))
    }
}
