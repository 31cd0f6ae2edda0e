//! An exec whose stdio the caller handles (hull-api's hijacked `exec start`), where
//! [`crate::exec::run`] copies to and from our own stdio.

use std::fs::File;

use crate::engine::{Engine, Error, State};
use crate::exec::{self, ExecOptions};
use crate::record::{new_id, Record};
use crate::shim::Shim;

/// A started exec: its pid, the shim that runs it and the FIFO ends (stdin when asked
/// for, stderr unless it has a terminal), all blocking.
pub struct Started {
    pub shim: Shim,
    pub exec_id: String,
    pub pid: u32,
    pub stdin: Option<File>,
    pub stdout: File,
    pub stderr: Option<File>,
}

/// Starts `o` in the running container `r`. The caller reads the output to EOF (the
/// shim lets go when the process is gone), then waits for and deletes `exec_id`.
pub fn start(engine: &Engine, r: &Record, o: &ExecOptions) -> Result<Started, Error> {
    if !matches!(engine.state(r), State::Running { .. }) {
        return Err(Error::NotRunning(r.name.clone()));
    }
    let proc = exec::process(engine, r, o)?;
    let exec_id = format!("exec-{}", &new_id()?[..16]);
    let dir = engine.dir(r);
    let launched = exec::open_ends(&dir, &exec_id, o).and_then(|ends| {
        let shim = engine.shim(r)?;
        let spec = serde_json::to_vec(&proc).unwrap_or_default();
        shim.exec(&exec_id, &spec, &ends.io)?;
        match shim.start(&exec_id) {
            Ok(pid) => Ok((shim, ends, pid)),
            Err(e) => {
                let _ = shim.delete(&exec_id);
                Err(exec::start_error(e))
            }
        }
    });
    // Both sides hold their ends now: the names can go (see `exec::run`).
    exec::remove_fifos(&dir, &exec_id);
    let (shim, ends, pid) = launched?;
    exec::set_blocking(&ends.stdout);
    if let Some(e) = &ends.stderr {
        exec::set_blocking(e);
    }
    Ok(Started {
        shim,
        exec_id,
        pid,
        stdin: ends.stdin,
        stdout: ends.stdout,
        stderr: ends.stderr,
    })
}
