//! The file-changing steps: RUN (through `run.rs`) and COPY/ADD (through `copy.rs`).

use std::path::{Path, PathBuf};

use hull_image::layer_write::{resolve_in_layers, stat_in_layers};
use hull_image::{Digest, Override};

use super::{Builder, StepFail};
use crate::copy::{self, Source};
use crate::lex::Lexer;
use crate::parser::Instruction;
use crate::{cache, instr, io_err, msg, run, StepError};

impl Builder<'_> {
    pub(super) fn run_step(&mut self, ins: &Instruction) -> Result<(), StepFail> {
        let st = self
            .stages
            .last()
            .cloned()
            .ok_or_else(|| StepError::Msg("no stage".into()))?;
        let shell = instr::shell(&st.config);
        let args = match (ins.json_args(), ins.heredocs.as_slice()) {
            (Some(v), _) => v,
            (None, [h])
                if ins.args.trim().starts_with("<<") && !ins.args.contains(char::is_whitespace)
                    || is_lone_heredoc(ins) =>
            {
                [shell.clone(), vec![h.body.clone()]].concat()
            }
            (None, hs) if !hs.is_empty() => {
                let mut script = ins.args.clone();
                for h in hs {
                    script.push('\n');
                    script.push_str(&h.body);
                    script.push_str(&h.name);
                }
                [shell.clone(), vec![script]].concat()
            }
            _ => [shell.clone(), vec![ins.args.clone()]].concat(),
        };
        let mut env: Vec<String> = instr::env_pairs(&st.config)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let env_keys: Vec<String> = instr::env_pairs(&st.config)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut arg_env = String::new();
        for (k, v) in &st.args {
            arg_env.push_str(&format!("{k}={v}\n"));
            if !env_keys.contains(k) {
                env.push(format!("{k}={v}"));
            }
        }
        let key = cache::key(
            &st.key,
            &format!("RUN {}", serde_json::to_string(&args).unwrap_or_default()),
            &arg_env,
        );
        if self.cached(&key) {
            return Ok(());
        }
        // No emulation: a RUN executes the stage's binaries on this host's CPU.
        let host = hull_image::spec::host_platform();
        let arch = st.config["architecture"].as_str().unwrap_or_default();
        let os = st.config["os"].as_str().unwrap_or("linux");
        if arch != host.architecture || os != host.os {
            return Err(StepError::Msg(format!(
                "RUN in a stage for {os}/{arch}: this host runs {}/{} and hull does not emulate \
                 other platforms (no qemu-user); only COPY, ADD and config instructions can \
                 build such a stage",
                host.os, host.architecture
            ))
            .into());
        }
        let image = st
            .image
            .clone()
            .ok_or_else(|| StepError::Msg("RUN needs a base image with a filesystem (this stage starts from scratch with no files)".into()))?;
        let layers = self.snapshots(&st.layers);
        let network = if self.opts.network.is_empty() {
            "bridge"
        } else {
            self.opts.network.as_str()
        };
        let image_s = image.to_string();
        let spec = run::RunSpec {
            image: &image_s,
            args: args.clone(),
            env,
            user: st.config["config"]["User"].as_str().map(str::to_string),
            workdir: st.config["config"]["WorkingDir"]
                .as_str()
                .map(str::to_string),
            network,
            layers: &layers,
            quiet: self.opts.quiet,
        };
        let res = run::run(
            &self.engine,
            &spec,
            self.staging.path(),
            self.out,
            &self.interrupted,
        )?;
        match res {
            Ok(layer) => Ok(self.commit_layer(layer, key)?),
            Err(code) => Err(StepFail::Exit(args, code)),
        }
    }

    pub(super) fn copy_step(&mut self, ins: &Instruction) -> Result<(), StepFail> {
        let add = ins.keyword == "ADD";
        let st = self
            .stages
            .last()
            .cloned()
            .ok_or_else(|| StepError::Msg("no stage".into()))?;
        let vars = |n: &str| self.lookup_var(n);
        let lx = Lexer {
            escape: self.escape,
            lookup: &vars,
        };
        let mut words = match ins.json_args() {
            Some(v) => v,
            None => lx.words(&ins.args).map_err(StepError::from)?,
        };
        if words.len() < 2 && ins.heredocs.is_empty() {
            return Err(self
                .bad(
                    ins,
                    "requires at least two arguments: source and destination",
                )
                .into());
        }
        let dest_raw = words.pop().unwrap_or_default();
        let workdir = st.config["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let mut d = format!("{}/{dest_raw}", workdir.trim_end_matches('/'));
            if dest_raw == "." || dest_raw == "./" {
                d = format!("{}/", workdir.trim_end_matches('/'));
            }
            d
        };
        let layers = self.snapshots(&st.layers);
        // Symlinks of the image on the destination's way are followed inside the image,
        // never on the host (docker resolves the destination in the container's root).
        let dest = {
            let rel = copy::container_rel(&dest);
            let res = resolve_in_layers(&layers, &rel).map_err(io_err(&rel))?;
            let slash = if dest.ends_with('/') { "/" } else { "" };
            format!("/{}{slash}", res.display())
        };
        let over = Override {
            owner: match ins.flag("chown") {
                Some(c) => Some(copy::owner(c, &layers)?),
                None => None,
            },
            mode: match ins.flag("chmod") {
                Some(m) => Some(
                    u32::from_str_radix(m, 8)
                        .map_err(|_| StepError::Msg(format!("--chmod={m}: not an octal mode")))?,
                ),
                None => None,
            },
        };
        let exists_dir = |rel: &Path| stat_in_layers(&layers, rel).is_some_and(|(_, m)| m.is_dir());
        // `--from`: the source image's id keys the step (it names its content), so a hit
        // needs no mount; sources are read from its root, mounted, on a miss.
        let from_id = match ins.flag("from") {
            Some(f) => Some(self.source_image(f)?),
            None => None,
        };
        let from_key = from_id
            .as_ref()
            .map(|id| cache::key(&st.key, &ins.text(), &format!("from {id}")));
        if let Some(k) = &from_key {
            if self.cached(k) {
                return Ok(());
            }
        }
        // Sources: the context, or a stage's or image's root mounted for the copy.
        let mut mounted: Option<(String, PathBuf)> = None;
        let result = (|| -> Result<(Vec<copy::Item>, String), StepFail> {
            let heredoc_sources: Vec<&crate::parser::Heredoc> = ins.heredocs.iter().collect();
            let mut items = Vec::new();
            let srcs: Vec<String> = words
                .iter()
                .filter(|w| !w.starts_with("<<"))
                .cloned()
                .collect();
            if words
                .iter()
                .any(|w| w.starts_with("http://") || w.starts_with("https://"))
            {
                return Err(StepError::Msg(format!(
                    "{}: sources from URLs are not supported; download them in a RUN step",
                    ins.keyword
                ))
                .into());
            }
            let many = srcs.len() + heredoc_sources.len() > 1
                || srcs.iter().any(|s| crate::pattern::is_glob(s));
            let root = match &from_id {
                Some(f) => {
                    let (id, path) = self.mount_from(f)?;
                    mounted = Some((id, path.clone()));
                    path
                }
                None => self.opts.context.clone(),
            };
            let source = Source {
                root: &root,
                ignore: ins.flag("from").is_none().then_some(&self.ignore),
            };
            let mut paths = Vec::new();
            for s in &srcs {
                paths.extend(source.resolve(s, &ins.keyword)?);
            }
            if many && paths.len() > 1 && !dest.ends_with('/') {
                return Err(StepError::Msg(format!("with more than one source the destination must be a directory and end with a / (got {dest_raw:?})")).into());
            }
            items.extend(copy::plan(&source, &paths, &dest, add, &exists_dir)?);
            for h in heredoc_sources {
                let rel = copy::container_rel(&dest);
                let d = if dest.ends_with('/') || exists_dir(&rel) {
                    rel.join(&h.name)
                } else {
                    rel
                };
                let body = if h.expand {
                    let vars = |n: &str| self.lookup_var(n);
                    let lx = Lexer {
                        escape: self.escape,
                        lookup: &vars,
                    };
                    lx.expand_only(&h.body).map_err(StepError::from)?
                } else {
                    h.body.clone()
                };
                items.push(copy::Item {
                    from: copy::From::Inline(body.into_bytes()),
                    dest: d,
                });
            }
            let digest = copy::digest(&items, &over)?;
            Ok((items, digest))
        })();
        let done = result.and_then(|(items, digest)| {
            let key = from_key
                .clone()
                .unwrap_or_else(|| cache::key(&st.key, &ins.text(), &digest));
            if from_key.is_none() && self.cached(&key) {
                return Ok(());
            }
            let layer = copy::write(self.staging.path(), &items, over, &layers)?;
            self.commit_layer(layer, key)?;
            Ok(())
        });
        if let Some((id, _)) = mounted {
            let _ = self.store.teardown_rootfs(&id);
        }
        done
    }

    /// Mounts the root of a stage (by name or number) or an image for `--from`.
    /// The image (id) a `--from` names: an earlier stage's last image, or a stored one.
    fn source_image(&mut self, from: &str) -> Result<Digest, StepError> {
        let by_name = self.stages[..self.stages.len() - 1]
            .iter()
            .find(|s| s.name.as_deref() == Some(from))
            .or_else(|| from.parse::<usize>().ok().and_then(|n| self.stages.get(n)))
            .cloned();
        match by_name {
            Some(s) => s
                .image
                .clone()
                .ok_or_else(|| msg(format!("--from={from}: that stage has no files"))),
            None => Ok(self.base_image(from, None)?.id),
        }
    }

    /// Mounts the root of image `image` for reading `--from` sources.
    fn mount_from(&mut self, image: &Digest) -> Result<(String, PathBuf), StepError> {
        let image = image.to_string();
        let id = format!("build-{}-{}", std::process::id(), self.stages.len());
        let _ = self.store.teardown_rootfs(&id);
        let r = self
            .store
            .prepare_rootfs(&image, &id, hull_image::RootfsMode::Auto)?;
        Ok((id, r.path))
    }
}

fn is_lone_heredoc(ins: &Instruction) -> bool {
    let a = ins.args.trim();
    a.starts_with("<<") && a.split_whitespace().count() == 1
}
