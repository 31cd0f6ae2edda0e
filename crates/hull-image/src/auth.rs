//! Registry credentials (`--creds`, docker-style auth.json) and parsing of
//! `WWW-Authenticate` challenges (RFC 7235 auth-params).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Errors loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading auth file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing auth file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("auth file {path}: entry for {registry} is not base64 of user:password")]
    Entry { path: PathBuf, registry: String },
    #[error("credentials must be user:password")]
    Creds,
    #[error("writing auth file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth file {path} is not a JSON object")]
    NotObject { path: PathBuf },
    #[error("credential helper {helper}: {msg}")]
    Helper { helper: String, msg: String },
}

/// A user name and password for basic auth or the token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl std::str::FromStr for Credentials {
    type Err = AuthError;
    /// `user:password` as given to `--creds`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (u, p) = s.split_once(':').ok_or(AuthError::Creds)?;
        if u.is_empty() {
            return Err(AuthError::Creds);
        }
        Ok(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }
}

impl Credentials {
    /// `Authorization` header value for HTTP basic auth.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    /// docker's per-registry credential helpers.
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    /// docker's credential helper for every registry.
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// Normalises an auth.json key (`https://index.docker.io/v1/`, `host:port`)
/// to a registry host as it appears in references.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// Looks up `registry` (e.g. `docker.io`, `127.0.0.1:5000`) in a docker /
/// podman style auth.json, running the credential helper it names for the registry.
pub fn from_authfile(path: &Path, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let data = std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: AuthFile = serde_json::from_slice(&data).map_err(|source| AuthError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    // docker's order: the registry's own helper, then the file's entry, then the helper
    // for all (whose logins leave empty `auths` entries behind).
    if let Some((_, h)) = file
        .cred_helpers
        .iter()
        .find(|(k, _)| key_host(k) == registry)
    {
        return crate::cred_helper::get(h, registry);
    }
    let Some(entry) = file
        .auths
        .iter()
        .find(|(k, _)| key_host(k) == registry)
        .and_then(|(_, v)| v.auth.as_deref())
        .filter(|a| !a.trim().is_empty())
    else {
        return match file.creds_store.as_deref().filter(|s| !s.is_empty()) {
            Some(h) => crate::cred_helper::get(h, registry),
            None => Ok(None),
        };
    };
    let bad = || AuthError::Entry {
        path: path.to_path_buf(),
        registry: registry.to_string(),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(entry.trim())
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    s.parse().map(Some).map_err(|_| bad())
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> PathBuf {
    env_path("HOME").unwrap_or_else(|| PathBuf::from("/root"))
}

/// docker's file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config() -> PathBuf {
    env_path("DOCKER_CONFIG")
        .unwrap_or_else(|| home().join(".docker"))
        .join("config.json")
}

/// The auth files read when no `--authfile` is given, in order (containers-auth.json(5)'s
/// order, docker's file last): `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/...`), docker's `config.json`.
pub fn default_auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    v.extend(env_path("REGISTRY_AUTH_FILE"));
    v.extend(env_path("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    let config = env_path("XDG_CONFIG_HOME").unwrap_or_else(|| home().join(".config"));
    v.push(config.join("containers/auth.json"));
    v.push(docker_config());
    v
}

/// Where `login` writes without `--authfile`: `$REGISTRY_AUTH_FILE`, else podman's
/// `$XDG_RUNTIME_DIR/containers/auth.json` when that directory is set, else docker's
/// `config.json` (which podman reads too, and which outlives a reboot).
pub fn default_write_file() -> PathBuf {
    env_path("REGISTRY_AUTH_FILE")
        .or_else(|| env_path("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")))
        .unwrap_or_else(docker_config)
}

/// Credentials for `registry`: from `authfile` when given (it must exist and parse), else
/// from the first of [`default_auth_files`] that has an entry.
pub fn lookup(registry: &str, authfile: Option<&Path>) -> Result<Option<Credentials>, AuthError> {
    if let Some(f) = authfile {
        return from_authfile(f, registry);
    }
    for f in default_auth_files() {
        if f.is_file() {
            // A broken file nobody named (another tool's config.json) must not stop a pull
            // of a public image: it is skipped, with a warning.
            match from_authfile(&f, registry) {
                Ok(Some(c)) => return Ok(Some(c)),
                Ok(None) => {}
                Err(e) => tracing::warn!("ignoring auth file {}: {e}", f.display()),
            }
        }
    }
    Ok(None)
}

fn read_object(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(source) => {
            return Err(AuthError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    match serde_json::from_slice(&data) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(AuthError::NotObject {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(AuthError::Parse {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `map` to `path` atomically, mode 0600 (it holds passwords), its directory made
/// 0700 if missing.
fn write_object(
    path: &Path,
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<(), AuthError> {
    use std::io::Write as _;
    use std::os::unix::fs::DirBuilderExt;
    let werr = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(werr)?;
    // NamedTempFile is created 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(werr)?;
    let data = serde_json::to_vec_pretty(&serde_json::Value::Object(map))
        .map_err(|e| werr(std::io::Error::other(e)))?;
    tmp.write_all(&data).map_err(werr)?;
    tmp.write_all(b"\n").map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.persist(path).map_err(|e| werr(e.error))?;
    Ok(())
}

/// The key `registry` is stored under: docker writes Docker Hub as its v1 URL in its own
/// `config.json`; podman's files use the host name.
fn store_key(path: &Path, registry: &str) -> String {
    let docker_file = path.file_name().is_some_and(|n| n == "config.json");
    if registry == crate::reference::DEFAULT_REGISTRY && docker_file {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// `login`: stores `creds` for `registry` in `path` (other entries and keys kept).
pub fn store_credentials(
    path: &Path,
    registry: &str,
    creds: &Credentials,
) -> Result<(), AuthError> {
    let mut map = read_object(path)?;
    let auths = map.entry("auths").or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    let raw = format!("{}:{}", creds.username, creds.password);
    let enc = base64::engine::general_purpose::STANDARD.encode(raw);
    if let Some(a) = auths.as_object_mut() {
        a.retain(|k, _| key_host(k) != registry);
        a.insert(store_key(path, registry), serde_json::json!({"auth": enc}));
    }
    write_object(path, map)
}

/// `logout`: removes `registry`'s entries from `path`; whether there were any.
pub fn remove_credentials(path: &Path, registry: &str) -> Result<bool, AuthError> {
    if !path.is_file() {
        return Ok(false);
    }
    let mut map = read_object(path)?;
    let Some(auths) = map.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|k, _| key_host(k) != registry);
    if auths.len() == before {
        return Ok(false);
    }
    write_object(path, map)?;
    Ok(true)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Lower-cased scheme: `bearer` or `basic`.
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Scheme k="v", k2=v2`. Registries send one challenge per header.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            // Quoted string; backslash escapes one character.
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &q[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry Realm");
        assert_eq!(parse_challenge("Basic").unwrap().params.len(), 0);
    }

    #[test]
    fn authfile_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        let enc = base64::engine::general_purpose::STANDARD.encode("bob:s3:cret");
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{enc}"}},"127.0.0.1:5000":{{"auth":"{enc}"}}}}}}"#),
        )
        .unwrap();
        let c = from_authfile(&p, "docker.io").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bob", "s3:cret")
        );
        assert!(from_authfile(&p, "127.0.0.1:5000").unwrap().is_some());
        assert!(from_authfile(&p, "quay.io").unwrap().is_none());
        assert!("nouser".parse::<Credentials>().is_err());
    }
}
