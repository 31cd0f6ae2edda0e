//! OCI hooks (runtime-spec config.md "POSIX-platform Hooks"): each runs
//! with the container state JSON on stdin, its `args` (args[0] is argv[0])
//! and `env`, and is killed when its `timeout` passes.
//!
//! | hook            | who runs it | when                                        |
//! |-----------------|-------------|---------------------------------------------|
//! | prestart        | parent      | with createRuntime (deprecated alias)       |
//! | createRuntime   | parent      | namespaces and mounts made, before pivot    |
//! | createContainer | init        | right after createRuntime, before pivot     |
//! | startContainer  | init        | at `start`, before execve of the program    |
//! | poststart       | `start`     | after the program was exec'd                |
//! | poststop        | `delete`    | after the container is gone                 |

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// "error running hook" as runc says it (tools match on it).
    #[error("hooks.{kind}[{index}] {path}: error running hook: {cause}")]
    Failed {
        kind: &'static str,
        index: usize,
        path: String,
        cause: String,
    },
}

/// Which list of hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    #[allow(deprecated)]
    fn list(self, h: &Hooks) -> Option<&Vec<Hook>> {
        match self {
            Kind::Prestart => h.prestart().as_ref(),
            Kind::CreateRuntime => h.create_runtime().as_ref(),
            Kind::CreateContainer => h.create_container().as_ref(),
            Kind::StartContainer => h.start_container().as_ref(),
            Kind::Poststart => h.poststart().as_ref(),
            Kind::Poststop => h.poststop().as_ref(),
        }
    }
}

/// Whether `spec` has any hook of these kinds (so the protocol can skip the
/// round trip that exists only for them).
pub(crate) fn any(spec: &Spec, kinds: &[Kind]) -> bool {
    spec.hooks().as_ref().is_some_and(|h| {
        kinds
            .iter()
            .any(|k| k.list(h).is_some_and(|l| !l.is_empty()))
    })
}

/// Runs every hook of `kind` in order; the first failure stops the list.
pub(crate) fn run(spec: &Spec, kind: Kind, state_json: &str) -> Result<(), HookError> {
    let Some(hooks) = spec.hooks().as_ref().and_then(|h| kind.list(h)) else {
        return Ok(());
    };
    for (index, h) in hooks.iter().enumerate() {
        run_one(h, state_json).map_err(|cause| HookError::Failed {
            kind: kind.name(),
            index,
            path: h.path().display().to_string(),
            cause,
        })?;
    }
    Ok(())
}

/// Runs every hook of `kind`, logging failures instead of stopping
/// (poststart and poststop: the container's fate is already decided).
pub(crate) fn run_logged(spec: &Spec, kind: Kind, state_json: &str) {
    let Some(hooks) = spec.hooks().as_ref().and_then(|h| kind.list(h)) else {
        return;
    };
    for (index, h) in hooks.iter().enumerate() {
        if let Err(cause) = run_one(h, state_json) {
            tracing::warn!(
                "hooks.{}[{index}] {}: {cause}",
                kind.name(),
                h.path().display()
            );
        }
    }
}

fn run_one(h: &Hook, state_json: &str) -> Result<(), String> {
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE is ignored).
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let how = st
                    .code()
                    .map(|c| format!("exit status {c}"))
                    .unwrap_or_else(|| signal_text(st.signal().unwrap_or(0)));
                return Err(format!(
                    "{how}{}",
                    if err.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", err.trim())
                    }
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", h.timeout().unwrap_or(0)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How a hook died of a signal, in the words runc (Go's os/exec) uses:
/// "signal: bad system call" for a seccomp kill.
fn signal_text(sig: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local
    // string, read at once and copied.
    let p = unsafe { libc::strsignal(sig) };
    let name = if p.is_null() {
        format!("signal {sig}")
    } else {
        // SAFETY: a NUL-terminated string from libc, valid until the next call.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .to_lowercase()
    };
    format!("signal: {name}")
}

/// The state JSON given to hooks.
pub(crate) fn state_json(
    spec: &Spec,
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
) -> String {
    serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}
