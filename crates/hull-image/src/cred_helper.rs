//! docker credential helpers: an auth file's `credHelpers` (registry → NAME) or `credsStore`
//! (NAME for every registry) names a program `docker-credential-NAME` on `PATH`. Its `get`
//! command reads the registry's server address on stdin and prints
//! `{"ServerURL": ..., "Username": ..., "Secret": ...}` (docker-credential-helpers'
//! protocol, the one docker and podman speak); "credentials not found" on a non-zero exit
//! means it has none.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::auth::{AuthError, Credentials};

/// A helper's `get` answer.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The server address docker hands its helpers: Docker Hub as its v1 URL, else the host.
fn server_address(registry: &str) -> String {
    if registry == crate::reference::DEFAULT_REGISTRY {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// Runs `docker-credential-NAME get` for `registry`.
pub(crate) fn get(name: &str, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let program = format!("docker-credential-{name}");
    let fail = |msg: String| AuthError::Helper {
        helper: program.clone(),
        msg,
    };
    if name.is_empty() || name.contains('/') {
        return Err(fail("not a helper name".into()));
    }
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE here; its exit status tells.
        let _ = stdin.write_all(server_address(registry).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!(
            "{}: {}",
            out.status,
            format!("{stdout} {stderr}").trim()
        )));
    }
    let a: Answer = serde_json::from_str(stdout.trim())
        .map_err(|e| fail(format!("its answer is not the expected JSON: {e}")))?;
    if a.username == "<token>" {
        // An identity (OAuth refresh) token: hull's token client sends user and password.
        tracing::warn!("{program}: identity tokens are not supported; trying without credentials");
        return Ok(None);
    }
    if a.username.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}
