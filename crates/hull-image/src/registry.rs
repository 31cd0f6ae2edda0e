//! A small blocking OCI distribution-spec client on `ureq` (pull here, push in push.rs).
//! Each layer is fetched on its own thread and its body is consumed as a
//! plain `Read`, which is what lets pull.rs inflate and unpack while bytes
//! arrive.

use std::io::{self, Read};
use std::sync::Mutex;
use std::time::Duration;

use crate::auth::{parse_challenge, Credentials};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::spec::MANIFEST_ACCEPT;

/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}")]
    Unreachable {
        registry: String,
        #[source]
        source: Box<ureq::Transport>,
    },
    #[error("{what}: registry answered HTTP {status}{detail}")]
    Status {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("authentication to {registry} failed: {reason}")]
    Auth { registry: String, reason: String },
    #[error("reading {what} from the registry")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
}

/// How to talk to registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// When false, speak plain HTTP (also always done for loopback registries).
    pub tls_verify: bool,
    pub credentials: Option<Credentials>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tls_verify: true,
            credentials: None,
        }
    }
}

pub(crate) struct Registry {
    agent: ureq::Agent,
    base: String,
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    /// Token scope actions asked for when a challenge names none (`pull`, `pull,push`).
    actions: &'static str,
    /// Current `Authorization` value, shared by the layer threads.
    auth: Mutex<Option<String>>,
}

impl Registry {
    pub(crate) fn new(r: &Reference, opts: &RegistryOptions) -> Registry {
        let scheme = if !opts.tls_verify || r.is_loopback() {
            "http"
        } else {
            "https"
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(120))
            // Blob GETs may redirect to storage; keep credentials only on
            // the same host so they never leak to a CDN.
            .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
            .user_agent(concat!("hull/", env!("CARGO_PKG_VERSION")))
            .build();
        Registry {
            agent,
            base: format!("{scheme}://{}", r.api_host()),
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            creds: opts.credentials.clone(),
            actions: "pull",
            auth: Mutex::new(None),
        }
    }

    /// A client that will push: tokens are asked for `pull,push` when the challenge does
    /// not say which scope it wants.
    pub(crate) fn for_push(mut self) -> Registry {
        self.actions = "pull,push";
        self
    }

    fn current_auth(&self) -> Option<String> {
        self.auth.lock().map(|g| g.clone()).unwrap_or(None)
    }

    /// GET with the current credentials; on 401 answers the challenge once
    /// and retries.
    fn get(&self, path: &str, accept: &str, what: &str) -> Result<ureq::Response, RegistryError> {
        let url = self.url(path);
        self.call("GET", &url, &[("Accept", accept)], Body::Empty, what)
    }

    /// `base/v2/<repository>/<path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// An upload `Location` (absolute, or relative to the registry) as a URL.
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}/{}", self.base, location.trim_start_matches('/'))
        }
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// One request with the current credentials; a 401 is answered (challenge → basic
    /// credentials or a bearer token) and the request sent once more, body included. Any
    /// status ≥ 400 is an error carrying the registry's own reason.
    pub(crate) fn call(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        what: &str,
    ) -> Result<ureq::Response, RegistryError> {
        let mut retried = false;
        loop {
            let mut req = self.agent.request(method, url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if let Some(a) = self.current_auth() {
                req = req.set("Authorization", &a);
            }
            let sent = match &body {
                Body::Empty if method == "GET" || method == "HEAD" => req.call(),
                Body::Empty => req.send_bytes(&[]),
                Body::Bytes(b) => req.send_bytes(b),
                Body::File {
                    path,
                    offset,
                    len,
                    on_bytes,
                } => {
                    let f = open_at(path, *offset).map_err(|source| RegistryError::Read {
                        what: what.to_string(),
                        source,
                    })?;
                    let counted = Counted {
                        inner: io::Read::take(f, *len),
                        on_bytes: *on_bytes,
                    };
                    req.set("Content-Length", &len.to_string()).send(counted)
                }
            };
            match sent {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !retried => {
                    let challenge = resp.header("WWW-Authenticate").unwrap_or("").to_string();
                    let header = self.answer_challenge(&challenge)?;
                    if let Ok(mut g) = self.auth.lock() {
                        *g = Some(header);
                    }
                    retried = true;
                }
                Err(ureq::Error::Status(status, resp)) => {
                    return Err(RegistryError::Status {
                        what: what.to_string(),
                        status,
                        detail: error_detail(resp),
                    })
                }
                Err(ureq::Error::Transport(t)) => {
                    return Err(RegistryError::Unreachable {
                        registry: self.registry.clone(),
                        source: Box::new(t),
                    })
                }
            }
        }
    }

    fn auth_err(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::Auth {
            registry: self.registry.clone(),
            reason: reason.into(),
        }
    }

    /// Turns a challenge into an `Authorization` header value: basic
    /// credentials directly, or a bearer token from the realm (token auth
    /// spec: GET realm?service=..&scope=.., basic credentials if any).
    fn answer_challenge(&self, header: &str) -> Result<String, RegistryError> {
        let c = parse_challenge(header)
            .ok_or_else(|| self.auth_err(format!("unparsable challenge {header:?}")))?;
        match c.scheme.as_str() {
            "basic" => self
                .creds
                .as_ref()
                .map(Credentials::basic_header)
                .ok_or_else(|| {
                    self.auth_err("credentials required (use hull login, --creds or --authfile)")
                }),
            "bearer" => {
                let realm = c
                    .params
                    .get("realm")
                    .ok_or_else(|| self.auth_err("bearer challenge without realm"))?;
                let default_scope = format!("repository:{}:{}", self.repository, self.actions);
                let scope = c.params.get("scope").unwrap_or(&default_scope);
                let mut req = self.agent.get(realm);
                // A login asks for no repository: no scope (docker login does the same).
                if !self.repository.is_empty() || c.params.contains_key("scope") {
                    req = req.query("scope", scope);
                }
                if let Some(service) = c.params.get("service") {
                    req = req.query("service", service);
                }
                if let Some(cr) = &self.creds {
                    req = req.set("Authorization", &cr.basic_header());
                }
                let resp = req.call().map_err(|e| match e {
                    ureq::Error::Status(s, _) => {
                        self.auth_err(format!("token endpoint {realm} answered HTTP {s}"))
                    }
                    ureq::Error::Transport(t) => {
                        self.auth_err(format!("token endpoint {realm}: {t}"))
                    }
                })?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_reader(resp.into_reader().take(1 << 20))
                    .map_err(|e| self.auth_err(format!("bad token response: {e}")))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| self.auth_err("token response without a token"))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(self.auth_err(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// Fetches a manifest or index by tag or digest; returns body and media type.
    pub(crate) fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String), RegistryError> {
        let what = format!("manifest {}/{}:{reference}", self.registry, self.repository);
        let resp = self.get(&format!("manifests/{reference}"), MANIFEST_ACCEPT, &what)?;
        let media_type = resp.content_type().to_string();
        let body = read_limited(resp.into_reader(), MAX_MANIFEST, &what)?;
        Ok((body, media_type))
    }

    /// Opens a blob for streaming. Callers verify the digest.
    pub(crate) fn blob(
        &self,
        digest: &Digest,
    ) -> Result<Box<dyn Read + Send + Sync>, RegistryError> {
        let what = format!("blob {digest} of {}/{}", self.registry, self.repository);
        Ok(self
            .get(&format!("blobs/{digest}"), "*/*", &what)?
            .into_reader())
    }

    /// Fetches a small blob (config) whole.
    pub(crate) fn small_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        read_limited(self.blob(digest)?, limit, &what)
    }
}

/// `login`: checks the credentials in `opts` against `registry` (`GET /v2/`, answering a
/// basic or bearer challenge with them).
pub fn check_login(registry: &str, opts: &RegistryOptions) -> Result<(), RegistryError> {
    let r = Reference {
        registry: registry.to_string(),
        repository: String::new(),
        tag: None,
        digest: None,
    };
    let reg = Registry::new(&r, opts);
    let url = format!("{}/v2/", reg.base);
    reg.call(
        "GET",
        &url,
        &[],
        Body::Empty,
        &format!("login to {registry}"),
    )
    .map(drop)
}

/// What a request sends.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset` (a blob, or one chunk of it); `on_bytes` hears of
    /// every read (progress).
    File {
        path: &'a std::path::Path,
        offset: u64,
        len: u64,
        on_bytes: &'a (dyn Fn(u64) + Sync),
    },
}

fn open_at(path: &std::path::Path, offset: u64) -> io::Result<std::fs::File> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path)?;
    f.seek(io::SeekFrom::Start(offset))?;
    Ok(f)
}

/// Reports the bytes read through it.
struct Counted<'a, R> {
    inner: R,
    on_bytes: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

fn read_limited(r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
    let mut body = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|source| RegistryError::Read {
            what: what.to_string(),
            source,
        })?;
    if body.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(body)
}

/// First error message of a distribution error body, for the user.
fn error_detail(resp: ureq::Response) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    let parsed: Option<Errors> = serde_json::from_reader(resp.into_reader().take(64 << 10)).ok();
    match parsed.and_then(|e| e.errors.into_iter().next()) {
        Some(E { code, message }) => format!(
            " ({})",
            [code, message]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ")
        ),
        None => String::new(),
    }
}
