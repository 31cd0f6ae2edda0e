//! Driving `hullc` as a subprocess, with runc's command line (the same
//! flags containerd's go-runc passes).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::reaper::Reaper;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {bin}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("hullc {cmd} failed (exit status {status}): {msg}")]
    Failed {
        cmd: String,
        status: u32,
        msg: String,
    },
    #[error("cannot read the output of hullc {cmd}")]
    Output {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse the output of hullc {cmd}")]
    Parse {
        cmd: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read pid file {path}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The child's end of its three standard streams.
#[derive(Default)]
pub struct ChildStdio {
    pub stdin: Option<std::fs::File>,
    pub stdout: Option<std::fs::File>,
    pub stderr: Option<std::fs::File>,
}

fn to_stdio(f: Option<std::fs::File>) -> Stdio {
    f.map_or_else(Stdio::null, Stdio::from)
}

/// Options of one `create` or `exec` call.
pub struct Launch<'a> {
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
    /// Where hullc writes its JSON log; errors are read back from it because
    /// hullc's stderr belongs to the container.
    pub log: &'a Path,
    pub stdio: ChildStdio,
}

/// A `hullc` binary and the state root it keeps containers under.
#[derive(Clone)]
pub struct Hullc {
    pub bin: PathBuf,
    pub root: PathBuf,
    /// containerd's `SystemdCgroup = true` (runc options): hullc's
    /// `--systemd-cgroup` on every call, as go-runc passes it.
    pub systemd_cgroup: bool,
    reaper: Arc<Reaper>,
}

impl Hullc {
    pub fn new(bin: PathBuf, root: PathBuf, reaper: Arc<Reaper>) -> Self {
        Hullc {
            bin,
            root,
            systemd_cgroup: false,
            reaper,
        }
    }

    /// With `--systemd-cgroup` when `on` (containerd's SystemdCgroup option).
    pub fn with_systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        if self.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c
    }

    fn spawn_err(&self, source: std::io::Error) -> Error {
        Error::Spawn {
            bin: self.bin.display().to_string(),
            source,
        }
    }

    /// Runs a short command, returns its stdout; stderr becomes the error.
    fn output(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let cmd = args.first().copied().unwrap_or_default().to_string();
        let mut c = self.command();
        c.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| self.spawn_err(e))?;
        let io_err = |source| Error::Output {
            cmd: cmd.clone(),
            source,
        };
        if let (Some(mut w), Some(data)) = (child.stdin.take(), stdin) {
            w.write_all(data).map_err(io_err)?;
        }
        let mut out = Vec::new();
        let mut err = String::new();
        if let Some(mut r) = child.stdout.take() {
            r.read_to_end(&mut out).map_err(io_err)?;
        }
        // hullc's error output is one short line, so reading it after stdout
        // cannot deadlock on a full pipe.
        if let Some(mut r) = child.stderr.take() {
            r.read_to_string(&mut err).map_err(io_err)?;
        }
        let exit = self.reaper.wait_pid(child.id() as i32);
        if exit.status != 0 {
            return Err(Error::Failed {
                cmd,
                status: exit.status,
                msg: err.trim().trim_start_matches("hullc: ").to_string(),
            });
        }
        Ok(out)
    }

    /// `create` or `exec`: the child's stdio go to the container, so errors
    /// are read from the JSON log. Returns the container process's pid.
    fn launch(&self, args: &[&str], l: Launch<'_>, id: &str) -> Result<i32, Error> {
        let cmd = args.first().copied().unwrap_or_default().to_string();
        let mut c = self.command();
        c.arg("--log").arg(l.log).arg("--log-format").arg("json");
        c.args(args).arg("--pid-file").arg(l.pid_file);
        if let Some(s) = l.console_socket {
            c.arg("--console-socket").arg(s);
        }
        c.arg(id)
            .stdin(to_stdio(l.stdio.stdin))
            .stdout(to_stdio(l.stdio.stdout))
            .stderr(to_stdio(l.stdio.stderr));
        let child = c.spawn().map_err(|e| self.spawn_err(e))?;
        // The Command keeps the child's ends of the pipes: drop them now so
        // that our readers see EOF when the container closes its side.
        drop(c);
        let exit = self.reaper.wait_pid(child.id() as i32);
        if exit.status != 0 {
            return Err(Error::Failed {
                cmd,
                status: exit.status,
                msg: last_log_error(l.log),
            });
        }
        read_pid(l.pid_file)
    }

    pub fn create(&self, id: &str, bundle: &Path, l: Launch<'_>) -> Result<i32, Error> {
        let b = bundle.to_string_lossy();
        self.launch(&["create", "--bundle", &b], l, id)
    }

    pub fn exec(&self, id: &str, process: &Path, l: Launch<'_>) -> Result<i32, Error> {
        let p = process.to_string_lossy();
        self.launch(&["exec", "--detach", "--process", &p], l, id)
    }

    pub fn start(&self, id: &str) -> Result<(), Error> {
        self.output(&["start", id], None).map(drop)
    }

    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), Error> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, &sig]);
        self.output(&args, None).map(drop)
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.output(&args, None).map(drop)
    }

    pub fn pause(&self, id: &str) -> Result<(), Error> {
        self.output(&["pause", id], None).map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<(), Error> {
        self.output(&["resume", id], None).map(drop)
    }

    /// Pids of every process in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>, Error> {
        let out = self.output(&["ps", "--format", "json", id], None)?;
        serde_json::from_slice(&out).map_err(|source| Error::Parse {
            cmd: "ps".into(),
            source,
        })
    }

    /// `events --stats`: the cgroup statistics object.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value, Error> {
        let out = self.output(&["events", "--stats", id], None)?;
        let v: serde_json::Value = serde_json::from_slice(&out).map_err(|source| Error::Parse {
            cmd: "events".into(),
            source,
        })?;
        // runc wraps the stats as {"type":"stats","data":{...}}; accept both.
        Ok(match v.get("data") {
            Some(d) => d.clone(),
            None => v,
        })
    }

    /// `update --resources=-` with runtime-spec LinuxResources JSON.
    pub fn update(&self, id: &str, resources_json: &[u8]) -> Result<(), Error> {
        self.output(&["update", "--resources", "-", id], Some(resources_json))
            .map(drop)
    }
}

fn read_pid(path: &Path) -> Result<i32, Error> {
    let pid_err = |source| Error::PidFile {
        path: path.to_path_buf(),
        source,
    };
    let s = std::fs::read_to_string(path).map_err(pid_err)?;
    s.trim().parse().map_err(|_| {
        pid_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a pid: {s:?}"),
        ))
    })
}

/// The message of the last `"level":"error"` line of a runc-style JSON log.
fn last_log_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("level").and_then(|l| l.as_str()) == Some("error"))
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| "no error message in the log".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::zombie_processes)]
mod tests {
    use super::*;

    #[test]
    fn systemd_cgroup_goes_to_every_call() {
        let reaper = Reaper::start(false).unwrap();
        let h = Hullc::new("hullc".into(), "/run/x".into(), reaper);
        let args = |h: &Hullc| -> Vec<String> {
            let c = h.command();
            c.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(args(&h), ["--root", "/run/x"]);
        let h = h.with_systemd_cgroup(true);
        assert_eq!(args(&h), ["--root", "/run/x", "--systemd-cgroup"]);
        // From containerd's runc options (`SystemdCgroup = true` in its config).
        use crate::service::systemd_cgroup_from_options as from;
        use containerd_shim::protos::shim::oci::Options;
        let o = Options {
            systemd_cgroup: true,
            ..Default::default()
        };
        assert!(from(Some(&o)));
        assert!(!from(Some(&Options::default())));
        assert!(!from(None));
    }

    #[test]
    fn last_error_from_json_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.json");
        std::fs::write(
            &p,
            "{\"level\":\"error\",\"msg\":\"first\"}\n{\"level\":\"warning\",\"msg\":\"w\"}\n\
             {\"level\":\"error\",\"msg\":\"second\"}\n{\"level\":\"info\",\"msg\":\"i\"}\n",
        )
        .unwrap();
        assert_eq!(last_log_error(&p), "second");
        assert_eq!(
            last_log_error(&d.path().join("none")),
            "no error message in the log"
        );
    }
}
