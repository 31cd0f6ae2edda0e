//! The spec directories: every `*.json`/`*.yaml`/`*.yml` file is a spec. SPEC.md: "specs
//! in later directories take precedence": a device named in a later directory replaces
//! the earlier one; the same device twice in one directory is a conflict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::name::{self, Qualified};
use crate::schema::{ContainerEdits, Device, Spec};

/// Colon-separated spec directories overriding the defaults (hull's `--cdi-spec-dir`
/// sets it, so the engine sees the same list).
pub const SPEC_DIRS_ENV: &str = "HULL_CDI_SPEC_DIRS";
const DEFAULT_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read CDI spec {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("CDI spec {file}: {field}: {msg}")]
    Invalid {
        file: PathBuf,
        field: String,
        msg: String,
    },
    #[error("CDI device {name} is defined twice: in {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("unresolvable CDI device {0}: no spec in {1} defines it")]
    Unknown(String, String),
    #[error(transparent)]
    Name(#[from] name::Error),
}

/// The spec directories in precedence order (lowest first).
pub fn spec_dirs() -> Vec<PathBuf> {
    match std::env::var(SPEC_DIRS_ENV) {
        Ok(v) if !v.is_empty() => v
            .split(':')
            .filter(|s| !s.is_empty())
            .map(Into::into)
            .collect(),
        _ => DEFAULT_DIRS.iter().map(Into::into).collect(),
    }
}

/// A device as found: its spec file and the spec-wide edits that come with it.
#[derive(Debug, Clone)]
pub struct Found {
    pub file: PathBuf,
    pub device: Device,
    pub spec_edits: ContainerEdits,
}

/// All valid specs of some directories, plus the errors of those that were not.
#[derive(Debug, Default)]
pub struct Registry {
    pub dirs: Vec<PathBuf>,
    pub devices: BTreeMap<String, Found>,
    /// Broken spec files: with their kind when it could be read.
    pub errors: Vec<(Option<String>, Error)>,
}

impl Registry {
    /// Reads every spec in `dirs` (missing directories are skipped, as they are by the
    /// reference implementation).
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry {
            dirs: dirs.to_vec(),
            ..Default::default()
        };
        for dir in dirs {
            let mut in_dir: BTreeMap<String, Found> = BTreeMap::new();
            for file in spec_files(dir) {
                match read_spec(&file) {
                    Ok(spec) => reg.add(&file, spec, &mut in_dir),
                    Err((kind, e)) => reg.errors.push((kind, e)),
                }
            }
            reg.devices.extend(in_dir);
        }
        reg
    }

    fn add(&mut self, file: &Path, spec: Spec, in_dir: &mut BTreeMap<String, Found>) {
        for d in spec.devices {
            let qualified = format!("{}={}", spec.kind, d.name);
            if let Some(prev) = in_dir.get(&qualified) {
                let e = Error::Duplicate {
                    name: qualified,
                    first: prev.file.clone(),
                    second: file.into(),
                };
                self.errors.push((Some(spec.kind.clone()), e));
                continue;
            }
            let found = Found {
                file: file.into(),
                device: d,
                spec_edits: spec.container_edits.clone(),
            };
            in_dir.insert(qualified, found);
        }
    }

    /// The devices of `names`, failing on an unknown name or on a broken spec that could
    /// have defined it (its kind matches, or could not be read).
    pub fn resolve(&self, names: &[String]) -> Result<Vec<(Qualified, &Found)>, Error> {
        let mut out = Vec::new();
        for n in names {
            let q = name::parse_qualified_name(n)?;
            let kind = q.kind();
            if let Some((_, e)) = self
                .errors
                .iter()
                .find(|(k, _)| k.as_deref().is_none_or(|k| k == kind))
            {
                return Err(clone_err(e));
            }
            let found = self
                .devices
                .get(n)
                .ok_or_else(|| Error::Unknown(n.clone(), self.dirs_text()))?;
            out.push((q, found));
        }
        Ok(out)
    }

    pub fn dirs_text(&self) -> String {
        let d: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        d.join(", ")
    }
}

/// Errors hold io errors, which do not clone: the message is what matters here.
fn clone_err(e: &Error) -> Error {
    match e {
        Error::Read(p, io) => {
            Error::Read(p.clone(), std::io::Error::new(io.kind(), io.to_string()))
        }
        Error::Invalid { file, field, msg } => Error::Invalid {
            file: file.clone(),
            field: field.clone(),
            msg: msg.clone(),
        },
        Error::Duplicate {
            name,
            first,
            second,
        } => Error::Duplicate {
            name: name.clone(),
            first: first.clone(),
            second: second.clone(),
        },
        Error::Unknown(a, b) => Error::Unknown(a.clone(), b.clone()),
        Error::Name(n) => Error::Name(n.clone()),
    }
}

fn spec_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml" | "yml")
            ) && p.is_file()
        })
        .collect();
    files.sort();
    files
}

type SpecResult = Result<Spec, (Option<String>, Error)>;

/// Parses and validates one spec file; a failure carries the spec's kind when known.
pub fn read_spec(file: &Path) -> SpecResult {
    let text = std::fs::read_to_string(file).map_err(|e| (None, Error::Read(file.into(), e)))?;
    let spec = parse_spec(file, &text).map_err(|e| (None, e))?;
    // A spec whose kind is itself broken could have meant any kind.
    let kind = name::parse_kind(&spec.kind).ok().map(|_| spec.kind.clone());
    validate(file, &spec).map_err(|e| (kind, e))?;
    Ok(spec)
}

fn invalid(file: &Path, field: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::Invalid {
        file: file.into(),
        field: field.into(),
        msg: msg.into(),
    }
}

/// JSON or YAML (YAML is a superset, but JSON's error messages are better for JSON);
/// the error names the field path (`devices[0].containerEdits.deviceNodes[1].major`).
fn parse_spec(file: &Path, text: &str) -> Result<Spec, Error> {
    let field = |p: String| if p == "." { "(top)".into() } else { p };
    if file.extension().is_some_and(|e| e == "json") {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| invalid(file, field(e.path().to_string()), e.inner().to_string()))
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(file, field(e.path().to_string()), e.inner().to_string()))
    }
}

const HOOK_NAMES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// SPEC.md's rules a parser cannot check: version, kind and name syntax, absolute
/// paths, hook names, env shape.
pub(crate) fn validate(file: &Path, s: &Spec) -> Result<(), Error> {
    if !crate::KNOWN_VERSIONS.contains(&s.cdi_version.as_str()) {
        let msg = format!(
            "unknown version {:?} (known: {})",
            s.cdi_version,
            crate::KNOWN_VERSIONS.join(", ")
        );
        return Err(invalid(file, "cdiVersion", msg));
    }
    name::parse_kind(&s.kind).map_err(|e| invalid(file, "kind", e.to_string()))?;
    if s.devices.is_empty() {
        return Err(invalid(file, "devices", "no devices"));
    }
    validate_edits(file, "containerEdits", &s.container_edits)?;
    for (i, d) in s.devices.iter().enumerate() {
        name::check_device_name(&d.name)
            .map_err(|e| invalid(file, format!("devices[{i}].name"), e.to_string()))?;
        let at = format!("devices[{i}].containerEdits");
        if d.container_edits.is_empty() {
            return Err(invalid(file, at, "a device needs at least one edit"));
        }
        validate_edits(file, &at, &d.container_edits)?;
    }
    Ok(())
}

fn validate_edits(file: &Path, at: &str, e: &ContainerEdits) -> Result<(), Error> {
    for (i, v) in e.env.iter().enumerate() {
        if !v.contains('=') || v.starts_with('=') {
            return Err(invalid(
                file,
                format!("{at}.env[{i}]"),
                format!("{v:?} is not KEY=VALUE"),
            ));
        }
    }
    for (i, n) in e.device_nodes.iter().enumerate() {
        let f = |x: &str| format!("{at}.deviceNodes[{i}].{x}");
        if !n.path.starts_with('/') {
            return Err(invalid(
                file,
                f("path"),
                format!("{:?} is not absolute", n.path),
            ));
        }
        if let Some(t) = n.kind.as_deref() {
            if !matches!(t, "b" | "c" | "u" | "p") {
                return Err(invalid(
                    file,
                    f("type"),
                    format!("{t:?}: expected b, c, u or p"),
                ));
            }
        }
        if let Some(p) = n.permissions.as_deref() {
            if p.is_empty() || !p.chars().all(|c| "rwm".contains(c)) {
                return Err(invalid(
                    file,
                    f("permissions"),
                    format!("{p:?}: expected letters of rwm"),
                ));
            }
        }
    }
    for (i, m) in e.mounts.iter().enumerate() {
        let f = |x: &str| format!("{at}.mounts[{i}].{x}");
        if m.host_path.is_empty() {
            return Err(invalid(file, f("hostPath"), "empty"));
        }
        if !m.container_path.starts_with('/') {
            return Err(invalid(
                file,
                f("containerPath"),
                format!("{:?} is not absolute", m.container_path),
            ));
        }
    }
    for (i, h) in e.hooks.iter().enumerate() {
        let f = |x: &str| format!("{at}.hooks[{i}].{x}");
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(invalid(
                file,
                f("hookName"),
                format!("unknown hook {:?}", h.hook_name),
            ));
        }
        if !h.path.starts_with('/') {
            return Err(invalid(
                file,
                f("path"),
                format!("{:?} is not absolute", h.path),
            ));
        }
    }
    Ok(())
}
