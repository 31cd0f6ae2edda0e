//! Loading and validating a bundle's `config.json`.
//!
//! Parsing goes through `serde_path_to_error` so that a type error names the
//! field (`process.user.uid: invalid type ...`), and the semantic checks below
//! catch what the schema cannot (runc's `validate` package is the reference).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {field}: {cause}")]
    Parse {
        path: PathBuf,
        field: String,
        cause: String,
    },
    #[error("config.json: {field}: {cause}")]
    Invalid { field: String, cause: String },
    #[error("invalid container id {id:?}: {cause}")]
    Id { id: String, cause: &'static str },
}

fn invalid(field: impl Into<String>, cause: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        cause: cause.into(),
    }
}

/// A parsed bundle: the spec, the raw bytes (kept in the state dir for later
/// commands) and the absolute paths it refers to.
pub struct Bundle {
    pub(crate) dir: PathBuf,
    pub(crate) spec: Spec,
    pub(crate) raw: Vec<u8>,
    pub(crate) rootfs: PathBuf,
}

/// Container ids become directory names under the state root, so they must
/// not be able to name anything but one plain entry (runc's rule).
pub fn validate_id(id: &str) -> Result<(), ConfigError> {
    let bad = |cause| {
        Err(ConfigError::Id {
            id: id.to_string(),
            cause,
        })
    };
    if id.is_empty() {
        return bad("must not be empty");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
    {
        return bad("only letters, digits and _ . + - are allowed");
    }
    Ok(())
}

/// Parses `config.json` bytes, naming the failing field.
pub fn parse_spec(path: &Path, raw: &[u8]) -> Result<Spec, ConfigError> {
    let parse_err = |field: String, cause: String| ConfigError::Parse {
        path: path.to_path_buf(),
        field: if field == "." || field.is_empty() {
            "(root)".into()
        } else {
            field
        },
        cause,
    };
    // Fast path: one direct parse. Only a config that fails it (a type
    // error, or a capability this build does not know) takes the slower
    // road through a Value, which names the field and drops unknown caps.
    if let Ok(spec) = serde_json::from_slice::<Spec>(raw) {
        return Ok(spec);
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| parse_err(String::new(), e.to_string()))?;
    drop_unknown_capabilities(&mut v);
    serde_path_to_error::deserialize(v)
        .map_err(|e| parse_err(e.path().to_string(), e.into_inner().to_string()))
}

/// runtime-spec 1.1: a capability the runtime does not know is skipped with
/// a warning, not an error (configs written for newer kernels must run).
fn drop_unknown_capabilities(v: &mut serde_json::Value) {
    let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return;
    };
    for (set, list) in caps.iter_mut() {
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        list.retain(|c| {
            let known = serde_json::from_value::<oci_spec::runtime::Capability>(c.clone()).is_ok();
            if !known {
                tracing::warn!("process.capabilities.{set}: unknown capability {c} ignored");
            }
            known
        });
    }
}

/// Reads `<bundle>/config.json`, resolves the rootfs and validates the spec.
pub fn load_bundle(bundle: &Path) -> Result<Bundle, ConfigError> {
    let dir = std::path::absolute(bundle).map_err(|source| ConfigError::Read {
        path: bundle.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    let raw = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let spec = parse_spec(&path, &raw)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    let rootfs = dir.join(root.path());
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(invalid(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ))
        }
        Err(e) => return Err(invalid("root.path", format!("{}: {e}", rootfs.display()))),
    }
    validate(&spec)?;
    Ok(Bundle {
        dir,
        spec,
        raw,
        rootfs,
    })
}

/// Semantic checks that the JSON schema cannot express.
pub(crate) fn validate(spec: &Spec) -> Result<(), ConfigError> {
    if spec.version().is_empty() {
        return Err(invalid("ociVersion", "missing"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(invalid("process.args", "must name a program")),
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd", "must be an absolute path"));
    }
    // A NUL cannot cross execve: say so at create, not at start.
    for (field, list) in [("args", process.args()), ("env", process.env())] {
        if let Some(i) = list.iter().flatten().position(|a| a.contains('\0')) {
            return Err(invalid(
                format!("process.{field}[{i}]"),
                "contains a NUL byte",
            ));
        }
    }
    if let Some(env) = process.env() {
        if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
            return Err(invalid("process.env", format!("{bad:?} is not KEY=value")));
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(invalid(
                format!("mounts[{i}].destination"),
                format!("{} must be absolute", m.destination().display()),
            ));
        }
    }
    validate_linux(spec)
}

fn validate_linux(spec: &Spec) -> Result<(), ConfigError> {
    let Some(linux) = spec.linux() else {
        return Err(invalid("linux", "missing"));
    };
    let mut seen = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} appears twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() || !p.exists() {
                return Err(invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} is not an existing absolute path", p.display()),
                ));
            }
        }
    }
    let has = |t| seen.contains(&t);
    // Without a mount namespace every mount, pivot_root and masked path
    // would land on the host: refuse, as runc's validator does.
    if !has(LinuxNamespaceType::Mount) {
        return Err(invalid("linux.namespaces", "a mount namespace is required"));
    }
    if spec.hostname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "hostname",
            "setting it needs a private uts namespace",
        ));
    }
    if spec.domainname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "domainname",
            "setting it needs a private uts namespace",
        ));
    }
    let user = has(LinuxNamespaceType::User);
    let mapped = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if user && !mapped && !linux_ns_has_path(spec, LinuxNamespaceType::User) {
        return Err(invalid(
            "linux.uidMappings",
            "a user namespace needs uid and gid mappings",
        ));
    }
    if !user && mapped {
        return Err(invalid(
            "linux.uidMappings",
            "mappings need a user namespace",
        ));
    }
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        validate_sysctl(key, &has)?;
    }
    Ok(())
}

fn linux_ns_has_path(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|ns| ns.typ() == t && ns.path().is_some()))
}

/// A sysctl must be namespaced by a namespace the container owns, or it
/// would change the host (runc's validator has the same table).
fn validate_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<(), ConfigError> {
    if key.contains("..") || key.starts_with('/') {
        return Err(invalid(format!("linux.sysctl.{key}"), "not a sysctl name"));
    }
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let ok = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        has(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        has(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        has(LinuxNamespaceType::Uts)
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("linux.sysctl.{key}"),
            "not namespaced by any namespace of the container; it would change the host",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-DEF_1.2+3", &"x".repeat(64)] {
            validate_id(ok).expect(ok);
        }
        for bad in ["", ".", "..", "a/b", "a b", "ä", "a\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let raw = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":"x","gid":0}}}"#;
        let err = parse_spec(Path::new("config.json"), raw).expect_err("bad uid");
        assert!(err.to_string().contains("process.user.uid"), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_skipped() {
        let raw = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_KILL","CAP_FROM_THE_FUTURE"]}}}"#;
        let spec = parse_spec(Path::new("config.json"), raw).expect("unknown caps are not fatal");
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .expect("caps");
        assert_eq!(caps.bounding().as_ref().map(|b| b.len()), Some(1));
    }

    #[test]
    fn semantic_errors() {
        let mut spec = Spec::default();
        validate(&spec).expect("default spec is valid");
        spec.set_hostname(Some("h".into()));
        let mut linux = spec.linux().clone().expect("default has linux");
        linux.set_namespaces(Some(vec![]));
        spec.set_linux(Some(linux.clone()));
        let err = validate(&spec).expect_err("no mount namespace");
        assert!(err.to_string().contains("mount namespace"), "{err}");
        let mnt = oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()
            .expect("namespace");
        linux.set_namespaces(Some(vec![mnt]));
        spec.set_linux(Some(linux));
        let err = validate(&spec).expect_err("hostname without uts");
        assert!(err.to_string().contains("hostname"), "{err}");
    }
}
