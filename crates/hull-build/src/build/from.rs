//! FROM: a stage starts from an image of the store (pulled if missing), `scratch` or an
//! earlier stage; the base's ONBUILD triggers run first.

use std::collections::BTreeMap;

use hull_image::{Digest, ImageRecord, Platform};
use serde_json::{json, Value};

use super::{Builder, Stage, StepFail};
use crate::parser::{self, Instruction};

use crate::{msg, StepError};

impl Builder<'_> {
    pub(super) fn from(&mut self, ins: &Instruction, args: &[String]) -> Result<(), StepFail> {
        let (image, name) = match args {
            [i] => (i.clone(), None),
            [i, as_, n] if as_.eq_ignore_ascii_case("as") => (i.clone(), Some(n.clone())),
            _ => return Err(self.bad(ins, "expected FROM image [AS name]").into()),
        };
        // `--platform` of the FROM, else of the build: which image of an index to use. Only
        // RUN needs the host's architecture (see `run_step`).
        let platform = match ins.flag("platform").or(self.opts.platform.as_deref()) {
            Some(p) => Some(
                p.parse::<Platform>()
                    .map_err(|e| self.bad(ins, format!("--platform: {e}")))?,
            ),
            None => None,
        };
        let earlier = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(image.as_str()))
            .cloned();
        let mut st = match earlier {
            Some(s) => s,
            None if image == "scratch" => Stage {
                name: None,
                config: scratch_config(platform.as_ref()),
                layers: vec![],
                image: None,
                key: match &platform {
                    Some(p) => Digest::of(format!("scratch {p}").as_bytes()),
                    None => Digest::of(b"scratch"),
                },
                args: BTreeMap::new(),
                cmd_set: false,
            },
            None => {
                let img = self.base_image(&image, platform.as_ref())?;
                let raw = self.store.config_raw(&img).map_err(StepError::from)?;
                let mut config: Value = serde_json::from_slice(&raw)
                    .map_err(|e| msg(format!("config of {image}: {e}")))?;
                if let Some(o) = config.as_object_mut() {
                    o.remove("history");
                    o.remove("created");
                }
                Stage {
                    name: None,
                    config,
                    layers: img.layers.clone(),
                    image: Some(img.id.clone()),
                    key: Digest::of(format!("from {}", img.id).as_bytes()),
                    args: BTreeMap::new(),
                    cmd_set: false,
                }
            }
        };
        st.name = name;
        st.args.clear();
        st.cmd_set = false;
        let triggers = take_onbuild(&mut st.config);
        self.stages.push(st);
        for t in &triggers {
            self.trigger(ins, t)?;
        }
        Ok(())
    }

    /// Runs one ONBUILD trigger of the base as if it followed the FROM (docker's order:
    /// the base's triggers in the order they were declared).
    fn trigger(&mut self, from: &Instruction, text: &str) -> Result<(), StepFail> {
        let ins =
            parse_trigger(text).map_err(|m| self.bad(from, format!("ONBUILD {text}: {m}")))?;
        let ins = Instruction {
            line: from.line,
            ..ins
        };
        self.say(&format!("--> ONBUILD {}", ins.text()))?;
        self.step(&ins)
    }

    /// The stored image `image`, pulled when missing or (with `platform`) of another
    /// platform: a pull then takes the index's entry for `platform`, as docker's does.
    pub(super) fn base_image(
        &mut self,
        image: &str,
        platform: Option<&Platform>,
    ) -> Result<ImageRecord, StepError> {
        match self.store.lookup(image) {
            Ok(i) if platform.is_none_or(|p| is_platform(&i, p)) => Ok(i),
            Ok(_) | Err(hull_image::StoreError::NotFound(_)) => {
                let for_p = platform.map(|p| format!(" for {p}")).unwrap_or_default();
                let _ = writeln!(self.out, "pulling {image}{for_p}");
                let opts = hull_image::PullOptions {
                    platform: platform.cloned(),
                    ..Default::default()
                };
                hull_image::pull(&mut self.store, image, &opts, &hull_image::NoProgress)?;
                let img = self.store.lookup(image)?;
                match platform {
                    Some(p) if !is_platform(&img, p) => Err(msg(format!(
                        "{image}: no image for {p} (it is {}/{})",
                        img.config.os, img.config.architecture
                    ))),
                    _ => Ok(img),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `img` is for `p` (a variant missing on either side matches).
fn is_platform(img: &ImageRecord, p: &Platform) -> bool {
    let c = &img.config;
    c.os == p.os
        && c.architecture == p.architecture
        && (p.variant.is_none() || c.variant.is_none() || c.variant == p.variant)
}

/// The config of a `scratch` stage: the platform asked for, else the host's.
fn scratch_config(platform: Option<&Platform>) -> Value {
    let p = platform
        .cloned()
        .unwrap_or_else(hull_image::spec::host_platform);
    let mut c = json!({"architecture": p.architecture, "os": p.os, "config": {}});
    if let Some(v) = p.variant.filter(|_| platform.is_some()) {
        c["variant"] = json!(v);
    }
    c
}

/// Takes the ONBUILD triggers out of a base's config: they run once, in the image built
/// on it, and are not inherited further (docker clears them likewise).
fn take_onbuild(config: &mut Value) -> Vec<String> {
    let Some(c) = config.get_mut("config").and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    match c.remove("OnBuild") {
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// One trigger as an instruction. docker refuses FROM, MAINTAINER and ONBUILD as triggers
/// (when ONBUILD is declared, and again here for images made elsewhere).
pub(crate) fn parse_trigger(text: &str) -> Result<Instruction, String> {
    let df = parser::parse(std::path::Path::new("ONBUILD"), text).map_err(|e| e.to_string())?;
    let ins = match df.instructions.as_slice() {
        [i] => i.clone(),
        _ => return Err("expected one instruction".into()),
    };
    match ins.keyword.as_str() {
        "ONBUILD" => Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        k @ ("FROM" | "MAINTAINER") => Err(format!("{k} isn't allowed as an ONBUILD trigger")),
        _ => Ok(ins),
    }
}
