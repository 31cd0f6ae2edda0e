//! The build loop: stages, steps, the cache, and the final commit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hull_engine::Engine;
use hull_image::layer_write::{commit_image, resolve_in_layers, stat_in_layers};
use hull_image::store::LayerRecord;
use hull_image::{Digest, Reference, Store};
use serde_json::{json, Value};

use crate::copy;
use crate::lex::Lexer;
use crate::parser::{self, Instruction};
use crate::pattern::Ignore;
use crate::{cache, instr, msg, run, BuildError, BuildOptions, StepError};

mod from;
pub(crate) use from::parse_trigger;
mod steps;

/// The state of a stage as the build goes.
#[derive(Clone)]
struct Stage {
    name: Option<String>,
    config: Value,
    layers: Vec<LayerRecord>,
    /// A stored image whose layers are `layers` (RUN containers and `--from` start there).
    image: Option<Digest>,
    key: Digest,
    /// ARGs declared in this stage and their values.
    args: BTreeMap<String, String>,
    cmd_set: bool,
}

struct Builder<'a> {
    opts: &'a BuildOptions,
    file: PathBuf,
    escape: char,
    store: Store,
    engine: Engine,
    ignore: Ignore,
    stages: Vec<Stage>,
    global_args: BTreeMap<String, String>,
    staging: hull_image::Staging,
    interrupted: Arc<AtomicBool>,
    out: &'a mut dyn Write,
}

fn now_rfc3339() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    hull_engine::time::rfc3339(i128::from(ns) * 1_000_000_000)
}

fn find_file(opts: &BuildOptions) -> Result<PathBuf, BuildError> {
    if let Some(f) = &opts.file {
        return Ok(f.clone());
    }
    ["Containerfile", "Dockerfile"]
        .iter()
        .map(|n| opts.context.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| BuildError::NoFile(opts.context.clone()))
}

/// Builds the image; returns its id. Step lines and RUN output go to `out`.
pub fn build(root: &Path, opts: &BuildOptions, out: &mut dyn Write) -> Result<Digest, BuildError> {
    let file = find_file(opts)?;
    let text = std::fs::read_to_string(&file).map_err(|source| BuildError::Read {
        path: file.clone(),
        source,
    })?;
    let df = parser::parse(&file, &text)?;
    if let Some(p) = &opts.platform {
        p.parse::<hull_image::Platform>()
            .map_err(|e| BuildError::Platform(p.clone(), e))?;
    }
    let ignore_path = opts.context.join(".dockerignore");
    let ignore = std::fs::read_to_string(&ignore_path)
        .map(|t| Ignore::parse(&t))
        .unwrap_or_default();
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut sig_ids = Vec::new();
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        if let Ok(id) = signal_hook::flag::register(s, interrupted.clone()) {
            sig_ids.push(id);
        }
    }
    let store = Store::open(root)?;
    let staging = store.staging()?;
    let engine = Engine::open(root)?;
    run::sweep(&engine);
    let mut b = Builder {
        opts,
        file,
        escape: df.escape,
        store,
        engine,
        ignore,
        stages: Vec::new(),
        global_args: BTreeMap::new(),
        staging,
        interrupted,
        out,
    };
    let result = b.run(&df.instructions);
    for id in sig_ids {
        signal_hook::low_level::unregister(id);
    }
    result
}

impl Builder<'_> {
    fn say(&mut self, line: &str) -> Result<(), BuildError> {
        if self.opts.quiet {
            return Ok(());
        }
        writeln!(self.out, "{line}").map_err(BuildError::Output)
    }

    fn bad(&self, ins: &Instruction, m: impl Into<String>) -> BuildError {
        BuildError::Instruction {
            file: self.file.clone(),
            line: ins.line,
            instruction: ins.keyword.clone(),
            msg: m.into(),
        }
    }

    fn run(&mut self, all: &[Instruction]) -> Result<Digest, BuildError> {
        // The instructions of the stages that matter: up to the target's end.
        let stage_names: Vec<Option<String>> = all
            .iter()
            .filter(|i| i.keyword == "FROM")
            .map(|i| from_alias(&i.args))
            .collect();
        if stage_names.is_empty() {
            let first = all.first().cloned().unwrap_or(Instruction {
                line: 1,
                keyword: "FROM".into(),
                flags: vec![],
                args: String::new(),
                heredocs: vec![],
            });
            return Err(self.bad(&first, "no FROM instruction"));
        }
        let last_stage = match &self.opts.target {
            Some(t) => stage_names
                .iter()
                .position(|n| n.as_deref() == Some(t.as_str()))
                .ok_or_else(|| BuildError::NoTarget(t.clone()))?,
            None => stage_names.len() - 1,
        };
        let mut stage_no = 0usize;
        let mut todo = Vec::new();
        for ins in all {
            if ins.keyword == "FROM" {
                stage_no += 1;
                if stage_no > last_stage + 1 {
                    break;
                }
            }
            todo.push(ins);
        }
        let total = todo.len();
        for (i, ins) in todo.iter().enumerate() {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(BuildError::Interrupted);
            }
            let step = format!("{}/{}", i + 1, total);
            self.say(&format!("STEP {step}: {}", ins.text()))?;
            if let Err(e) = self.step(ins) {
                return Err(match e {
                    StepFail::Build(b) => *b,
                    StepFail::Step(StepError::Interrupted) => BuildError::Interrupted,
                    StepFail::Step(source) => BuildError::Step {
                        step,
                        instruction: ins.text(),
                        source: Box::new(source),
                    },
                    StepFail::Exit(command, code) => BuildError::RunFailed {
                        step,
                        instruction: ins.text(),
                        command,
                        code,
                    },
                });
            }
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<Digest, BuildError> {
        let names = self.tags()?;
        let stage = self
            .stages
            .last()
            .cloned()
            .ok_or_else(|| BuildError::Step {
                step: "commit".into(),
                instruction: String::new(),
                source: Box::new(msg("no stage")),
            })?;
        let key = cache::key(
            &stage.key,
            "commit",
            &serde_json::to_string(&stage.config["config"]).unwrap_or_default(),
        );
        let hit = (!self.opts.no_cache)
            .then(|| cache::get(&self.store, &key))
            .flatten();
        let fail = |source: StepError| BuildError::Step {
            step: "commit".into(),
            instruction: String::new(),
            source: Box::new(source),
        };
        let img = match hit {
            Some(img) => {
                let raw = self.store.config_raw(&img)?;
                let config: Value = serde_json::from_slice(&raw)
                    .map_err(|e| fail(msg(format!("cached config: {e}"))))?;
                commit_image(&mut self.store, &img.layers, &[], config, names)
                    .map_err(|e| fail(e.into()))?
            }
            None => {
                let mut config = stage.config.clone();
                config["created"] = json!(now_rfc3339());
                let img = commit_image(&mut self.store, &stage.layers, &[], config, names)
                    .map_err(|e| fail(e.into()))?;
                cache::put(&self.store, &key, &img.id, cache::Kind::Result).map_err(fail)?;
                img
            }
        };
        if self.opts.quiet {
            writeln!(self.out, "{}", img.id).map_err(BuildError::Output)?;
        } else {
            self.say(&format!("COMMIT {}", img.names.join(" ")))?;
            writeln!(self.out, "{}", img.id.hex()).map_err(BuildError::Output)?;
        }
        Ok(img.id)
    }

    fn tags(&self) -> Result<Vec<String>, BuildError> {
        self.opts
            .tags
            .iter()
            .map(|t| {
                t.parse::<Reference>()
                    .map(|r| r.to_string())
                    .map_err(|e| BuildError::Step {
                        step: "commit".into(),
                        instruction: format!("-t {t}"),
                        source: Box::new(msg(e.to_string())),
                    })
            })
            .collect()
    }

    fn cur(&mut self) -> &mut Stage {
        let n = self.stages.len() - 1;
        &mut self.stages[n]
    }

    fn lookup_var(&self, name: &str) -> Option<String> {
        match self.stages.last() {
            Some(st) => instr::env_pairs(&st.config)
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .or_else(|| st.args.get(name).cloned()),
            None => self.global_args.get(name).cloned(),
        }
    }

    fn step(&mut self, ins: &Instruction) -> Result<(), StepFail> {
        if ins.keyword != "FROM" && ins.keyword != "ARG" && self.stages.is_empty() {
            return Err(self
                .bad(ins, "only ARG may come before the first FROM")
                .into());
        }
        let vars = |n: &str| self.lookup_var(n);
        let lx = Lexer {
            escape: self.escape,
            lookup: &vars,
        };
        match ins.keyword.as_str() {
            "FROM" => {
                let args = lx.words(&ins.args).map_err(StepError::from)?;
                self.from(ins, &args)
            }
            "ARG" => {
                let pairs = arg_pairs(ins, &lx)?;
                self.arg(pairs);
                Ok(())
            }
            "RUN" => self.run_step(ins),
            "COPY" | "ADD" => self.copy_step(ins),
            "WORKDIR" => {
                let w = lx.word(ins.args.trim()).map_err(StepError::from)?;
                self.workdir(ins, &w)
            }
            _ => {
                let last = self.stages.len() - 1;
                let mut config = self.stages[last].config.clone();
                let mut cmd_set = self.stages[last].cmd_set;
                instr::apply(&mut config, ins, &lx, &mut cmd_set)?;
                let st = self.cur();
                st.config = config;
                st.cmd_set = cmd_set;
                st.key = cache::key(&st.key, &ins.text(), "");
                Ok(())
            }
        }
    }

    fn arg(&mut self, pairs: Vec<(String, Option<String>)>) {
        for (k, default) in pairs {
            let given = self
                .opts
                .build_args
                .iter()
                .rev()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone());
            let inherited = self.global_args.get(&k).cloned();
            let value = given.or(default).or(inherited).unwrap_or_default();
            match self.stages.last_mut() {
                Some(st) => {
                    st.key = cache::key(&st.key, &format!("ARG {k}={value}"), "");
                    st.args.insert(k, value);
                }
                None => {
                    self.global_args.insert(k, value);
                }
            }
        }
    }

    fn snapshots(&self, layers: &[LayerRecord]) -> Vec<PathBuf> {
        layers
            .iter()
            .rev()
            .map(|l| self.store.snapshot_dir(&l.chain_id))
            .collect()
    }

    /// Looks the step up in the cache: on a hit the stage moves to the cached image.
    fn cached(&mut self, key: &Digest) -> bool {
        if self.opts.no_cache {
            return false;
        }
        let Some(img) = cache::get(&self.store, key) else {
            return false;
        };
        let st = self.stages.last_mut();
        let Some(st) = st else { return false };
        let prefix_ok = img.layers.len() > st.layers.len()
            && img
                .layers
                .iter()
                .zip(&st.layers)
                .all(|(a, b)| a.chain_id == b.chain_id);
        if !prefix_ok {
            return false;
        }
        st.layers = img.layers.clone();
        st.image = Some(img.id.clone());
        st.key = key.clone();
        let _ = writeln!(self.out, "--> Using cache {}", img.id.hex());
        true
    }

    /// Commits a new layer on top of the stage and records it in the cache.
    fn commit_layer(&mut self, layer: hull_image::LayerFile, key: Digest) -> Result<(), StepError> {
        let st = self.stages.last().cloned().ok_or_else(|| msg("no stage"))?;
        let img = commit_image(
            &mut self.store,
            &st.layers,
            &[layer],
            st.config.clone(),
            vec![],
        )?;
        cache::put(&self.store, &key, &img.id, cache::Kind::Step)?;
        let cur = self.cur();
        cur.layers = img.layers.clone();
        cur.image = Some(img.id.clone());
        cur.key = key;
        Ok(())
    }

    fn workdir(&mut self, ins: &Instruction, w: &str) -> Result<(), StepFail> {
        let st = self.cur();
        let base = st.config["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        let abs = if w.starts_with('/') {
            w.to_string()
        } else {
            format!("{}/{w}", base.trim_end_matches('/'))
        };
        let rel = copy::container_rel(&abs);
        let abs = format!("/{}", rel.display());
        instr::cfg(&mut st.config).insert("WorkingDir".into(), json!(abs));
        let key = cache::key(&st.key, &format!("WORKDIR {abs}"), "");
        let cur_layers = self.cur().layers.clone();
        let layers = self.snapshots(&cur_layers);
        // The directory is made where the path leads inside the image (symlinks followed
        // there, as a RUN's `mkdir -p` would); the config keeps the path as written.
        let rel = resolve_in_layers(&layers, &rel).map_err(crate::io_err(&rel))?;
        if rel.as_os_str().is_empty() || stat_in_layers(&layers, &rel).is_some() {
            self.cur().key = key;
            return Ok(());
        }
        if self.cached(&key) {
            return Ok(());
        }
        let items = vec![copy::Item {
            from: copy::From::Inline(vec![]),
            dest: rel,
        }];
        let _ = ins;
        let layer = write_dir_layer(self.staging.path(), &items, &layers)?;
        self.commit_layer(layer, key)?;
        Ok(())
    }
}

/// A layer holding the new (empty) directories of `items` (WORKDIR).
fn write_dir_layer(
    stage: &Path,
    items: &[copy::Item],
    layers: &[PathBuf],
) -> Result<hull_image::LayerFile, StepError> {
    let mut w = hull_image::LayerWriter::create(stage)?;
    let mut done = std::collections::BTreeSet::new();
    for it in items {
        let mut cur = PathBuf::new();
        for c in it.dest.components() {
            cur.push(c);
            if !done.insert(cur.clone()) {
                continue;
            }
            match stat_in_layers(layers, &cur) {
                Some((p, m)) => hull_image::layer_write::append_entry(
                    w.tar(),
                    &p,
                    &cur,
                    &m,
                    &mut Default::default(),
                    None,
                )?,
                None => {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_size(0);
                    h.set_mtime(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs()),
                    );
                    w.tar()
                        .append_data(&mut h, &cur, std::io::empty())
                        .map_err(crate::io_err(&cur))?;
                }
            }
        }
    }
    Ok(w.finish()?)
}

/// `FROM x AS name` → the name.
fn from_alias(args: &str) -> Option<String> {
    let w: Vec<&str> = args.split_whitespace().collect();
    match w.as_slice() {
        [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
        _ => None,
    }
}

fn arg_pairs(
    ins: &Instruction,
    lx: &Lexer<'_>,
) -> Result<Vec<(String, Option<String>)>, StepError> {
    let mut out = Vec::new();
    for w in lx.words(&ins.args)? {
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((w, None)),
        }
    }
    Ok(out)
}

/// A failed step: a build error as is, a step error, or a RUN's non-zero exit.
pub(crate) enum StepFail {
    Build(Box<BuildError>),
    Step(StepError),
    Exit(Vec<String>, u32),
}

impl From<BuildError> for StepFail {
    fn from(e: BuildError) -> Self {
        StepFail::Build(Box::new(e))
    }
}

impl From<StepError> for StepFail {
    fn from(e: StepError) -> Self {
        StepFail::Step(e)
    }
}

impl From<hull_image::LayerWriteError> for StepFail {
    fn from(e: hull_image::LayerWriteError) -> Self {
        StepFail::Step(e.into())
    }
}
