//! Images from containers: `commit` (the container's own layer as a new image), `export`
//! (its whole filesystem as a tar) and `diff` (what it changed, docker's A/C/D); `import`
//! (a root filesystem tarball as a one-layer image), shared by `hull import` and the API's
//! `images/create?fromSrc=-`. The other image commands (tag, push, prune, mount) are
//! hull-image's.

use std::io::{Read, Write};
use std::path::PathBuf;

use hull_image::container::PathChange;
use hull_image::tarball::{self, Whiteouts};
use hull_image::{History, ImageRecord, Store};

use crate::engine::{Engine, Error, State};
use crate::record::Record;

/// What `commit` takes besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `name[:tag]` of the new image; none makes a dangling image.
    pub name: Option<String>,
    /// Dockerfile-style changes (`CMD ["sh"]`, `ENV A=1`, ...).
    pub changes: Vec<String>,
    /// The history comment (`-m`).
    pub message: Option<String>,
    pub author: Option<String>,
    /// Freeze the container while its layer is read (docker's default).
    pub pause: bool,
}

/// What `import` takes besides the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `name[:tag]` of the new image; none makes a dangling image.
    pub name: Option<String>,
    /// Dockerfile-style changes (`CMD ["sh"]`, `ENV A=1`, ...).
    pub changes: Vec<String>,
    /// The history comment (`-m`).
    pub message: Option<String>,
    /// The image's platform; the host's by default.
    pub platform: Option<hull_image::Platform>,
    /// Where the tarball came from, for the history (`stdin`, a file name).
    pub source: String,
}

/// Files the engine bind-mounts over the rootfs: created there as empty mount points, they
/// are not the container's changes (docker keeps them in a separate init layer).
fn mount_points() -> Vec<PathBuf> {
    ["etc/hosts", "etc/hostname", "etc/resolv.conf"]
        .iter()
        .map(PathBuf::from)
        .collect()
}

/// What the engine makes in every container's rootfs, as docker's init layer holds it, for
/// `diff`: the mount points above and the mount points of /dev, /proc and /sys (made when the
/// image lacks them). Docker counts these as part of the base, never as the container's.
fn init_layer() -> Vec<PathBuf> {
    let mut v = mount_points();
    v.extend(["dev", "proc", "sys"].iter().map(PathBuf::from));
    v
}

impl Engine {
    /// `commit`: a new image from `key`'s image and its upper layer, with the container's
    /// own settings (command, entrypoint, env, workdir, user) in the config as docker does,
    /// then `o.changes`.
    pub fn commit(&self, key: &str, o: &CommitOptions) -> Result<ImageRecord, Error> {
        let r = self.find(key)?;
        let paused = o.pause && matches!(self.state(&r), State::Running { .. });
        if paused {
            self.pause(&r, true)?;
        }
        let res = self.commit_layer(&r, o);
        if res.is_ok() {
            self.emit(
                &r,
                "commit",
                &[("imageName", o.name.clone().unwrap_or_default())],
            );
        }
        if paused {
            // Thaw whatever happened; the commit's error wins over the thaw's.
            let thawed = self.pause(&r, false);
            let img = res?;
            thawed?;
            return Ok(img);
        }
        res
    }

    fn commit_layer(&self, r: &Record, o: &CommitOptions) -> Result<ImageRecord, Error> {
        let mut store = Store::open(&self.root)?;
        let base = store.container_image(&r.id)?;
        let upper = store.container_upper(&r.id)?;
        let whiteouts = match store.container_fuse(&r.id)? {
            true => Whiteouts::FuseOverlay,
            false => Whiteouts::Overlay,
        };
        let mut draft = store.draft_from(&base)?;
        apply_container_settings(&mut draft, r);
        for c in &o.changes {
            draft
                .apply_change(c)
                .map_err(hull_image::CreateError::from)?;
        }
        if let Some(a) = o.author.as_deref().filter(|a| !a.is_empty()) {
            draft
                .image_config_mut()
                .insert("author".into(), serde_json::json!(a));
        }
        let layer = store.add_layer_from_dir(
            draft.top_chain(),
            &upper,
            whiteouts,
            &mount_points(),
            draft.media_types(),
        )?;
        let created_by = match r.args.is_empty() {
            true => "hull commit".to_string(),
            false => r.args.join(" "),
        };
        draft.push_layer(
            layer,
            History {
                created_by,
                comment: o.message.clone(),
                author: o.author.clone(),
            },
        );
        let names: Vec<String> = o.name.iter().cloned().collect();
        Ok(store.commit_draft(draft, &names)?)
    }

    /// `export`: `key`'s root filesystem (the merged view) as a tar stream into `out`.
    pub fn export(&self, key: &str, out: impl Write) -> Result<(), Error> {
        let r = self.find(key)?;
        tarball::write_tree(&r.rootfs, out, Whiteouts::Plain, &[])
            .map_err(Error::Tar)?
            .flush()
            .map_err(crate::engine::io("writing the export of", &r.rootfs))
    }

    /// `import`: a root filesystem tarball (plain, gzip or zstd) as a new one-layer image
    /// with `o.changes` applied. The name and changes are checked before the tar is read.
    pub fn import(
        &self,
        tar: impl Read + Send + 'static,
        o: &ImportOptions,
    ) -> Result<ImageRecord, Error> {
        if let Some(n) = &o.name {
            hull_image::create::parse_new_name(n)?;
        }
        let mut store = Store::open(&self.root)?;
        let mut draft = store.draft_scratch(o.platform.as_ref())?;
        for c in &o.changes {
            draft
                .apply_change(c)
                .map_err(hull_image::CreateError::from)?;
        }
        let tar = hull_image::create::decompressed(tar).map_err(crate::engine::io(
            "cannot read the tarball",
            std::path::Path::new(&o.source),
        ))?;
        let layer = store.add_layer(None, tar, draft.media_types())?;
        draft.push_layer(
            layer,
            History {
                created_by: format!("hull import {}", o.source),
                comment: o.message.clone(),
                author: None,
            },
        );
        let names: Vec<String> = o.name.iter().cloned().collect();
        let img = store.commit_draft(draft, &names)?;
        let name = o.name.as_deref().unwrap_or_default();
        self.journal()
            .emit_image("import", &img.id.to_string(), name);
        Ok(img)
    }

    /// `diff`: the paths `key` added, changed or deleted against its image.
    pub fn diff(&self, key: &str) -> Result<Vec<PathChange>, Error> {
        let r = self.find(key)?;
        let store = Store::open(&self.root)?;
        Ok(store.container_changes(&r.id, &init_layer())?)
    }
}

/// What the container was created with overrides the image's config, as in docker's
/// commit (the container's config becomes the image's).
fn apply_container_settings(draft: &mut hull_image::ImageDraft, r: &Record) {
    use serde_json::json;
    let o = &r.options;
    let cfg = draft.config_mut();
    if !o.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(o.cmd));
    }
    match o.entrypoint.as_deref() {
        Some("") => {
            cfg.remove("Entrypoint");
        }
        Some(e) => {
            cfg.insert("Entrypoint".into(), json!([e]));
        }
        None => {}
    }
    if let Some(w) = &o.workdir {
        cfg.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &o.user {
        cfg.insert("User".into(), json!(u));
    }
    for e in &o.env {
        if let Some((k, v)) = e.split_once('=') {
            hull_image::changes::set_env(cfg, k, v);
        }
    }
}
