//! `exec`: an extra process in a running container, its stdio through FIFOs
//! that we read while the shim writes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use serde_json::Value;

use crate::create::make_fifo;
use crate::engine::{Engine, Error, State};
use crate::record::{new_id, Record};
use crate::shim::{self, Io, Shim};
use crate::user;

/// What `hull exec` asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub stdin: bool,
    pub tty: bool,
    /// The terminal's size to start with (rows, columns), with `tty`.
    pub console_size: Option<(u16, u16)>,
}

/// Why the runtime could not start the exec's program: docker's exit codes
/// 127 (not found) and 126 (not executable) come from these.
///
/// The runtime's words decide, as in docker (`translateContainerdStartErr`):
/// runc says `executable file not found in $PATH`, `no such file or
/// directory`, `permission denied`; older hullc `not found in $PATH` and
/// `Permission denied`. Matched without case, so both work.
pub(crate) fn start_error(e: shim::Error) -> Error {
    let msg = e.to_string().to_lowercase();
    if [
        "executable file not found",
        "not found in $path",
        "no such file or directory",
    ]
    .iter()
    .any(|m| msg.contains(m))
    {
        return Error::ExecNotFound(e);
    }
    if msg.contains("permission denied") {
        return Error::ExecNotExecutable(e);
    }
    e.into()
}

fn io_err<'a>(what: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: p.into(),
        source,
    }
}

/// The container's process spec with the exec's overrides.
pub(crate) fn process(engine: &Engine, r: &Record, o: &ExecOptions) -> Result<Value, Error> {
    let p = engine.dir(r).join("config.json");
    let data = std::fs::read(&p).map_err(io_err("cannot read", &p))?;
    let config: Value = serde_json::from_slice(&data).map_err(|e| Error::Io {
        what: "corrupt bundle config",
        path: p.clone(),
        source: std::io::Error::other(e),
    })?;
    let mut proc = config["process"].clone();
    proc["args"] = serde_json::json!(o.cmd);
    proc["terminal"] = Value::Bool(o.tty);
    // Sized before the program runs (runtime-spec `consoleSize`): a resize
    // after start would race with a program that reads its size at once.
    if let (true, Some((rows, cols))) = (o.tty, o.console_size) {
        proc["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
    }
    if let Some(env) = proc["env"].as_array_mut() {
        for e in &o.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.as_str().and_then(|s| s.split('=').next()) != Some(key));
            env.push(Value::String(e.clone()));
        }
    }
    if let Some(w) = &o.workdir {
        proc["cwd"] = Value::String(w.clone());
    }
    if let Some(u) = &o.user {
        let u = user::resolve(&r.rootfs, u).map_err(crate::spec::Error::from)?;
        proc["user"] =
            serde_json::json!({"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids});
    }
    // rlimits/caps stay as the container's; an exec never gets more.
    Ok(proc)
}

/// Opens a FIFO's read end without waiting for a writer, then makes reads
/// block: EOF comes once the shim (which holds it O_RDWR) lets go.
fn open_reader(p: &Path) -> Result<File, Error> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(io_err("cannot open", p))?;
    Ok(f)
}

/// Opens a FIFO's write end without waiting for a reader: O_RDWR never
/// blocks on open (fifo(7)). A blocking write-only open would wait for the
/// shim's end, which a process that exits at once has already closed again.
pub(crate) fn open_writer(p: &Path) -> Result<File, Error> {
    File::options()
        .read(true)
        .write(true)
        .open(p)
        .map_err(io_err("cannot open", p))
}

pub(crate) fn set_blocking(f: &File) {
    // SAFETY: fcntl on a descriptor we own; flags come from F_GETFL.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
    }
}

fn pump(mut from: File, to: impl Fn(&[u8]) + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            to(&buf[..n]);
        }
    })
}

/// Copies our stdin into the FIFO `p`, then tells the shim input ended.
pub fn feed_stdin(engine: &Engine, r: &Record, p: PathBuf, exec_id: String) -> Result<(), Error> {
    let fifo = open_writer(&p)?;
    feed(fifo, engine.shim(r)?, exec_id);
    Ok(())
}

fn feed(mut fifo: File, shim: Shim, exec_id: String) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut fifo);
        drop(fifo);
        let _ = shim.close_io(&exec_id);
    });
}

/// Our ends of an exec's FIFOs, all opened before the shim is asked for the
/// exec: none of them waits for a partner, so a process that exits before we
/// look cannot leave us waiting in open(2).
pub(crate) struct Ends {
    pub(crate) stdin: Option<File>,
    pub(crate) stdout: File,
    pub(crate) stderr: Option<File>,
    pub(crate) io: Io,
}

/// Makes and opens the FIFOs `<exec_id>.{in,out,err}` in `dir`.
pub(crate) fn open_ends(dir: &Path, exec_id: &str, o: &ExecOptions) -> Result<Ends, Error> {
    let path = |s: &str| dir.join(format!("{exec_id}.{s}"));
    let (pin, pout, perr) = (path("in"), path("out"), path("err"));
    let s = |p: &Path| p.to_string_lossy().into_owned();
    make_fifo(&pout)?;
    let stdout = open_reader(&pout)?;
    let mut io = Io {
        stdout: s(&pout),
        terminal: o.tty,
        ..Io::default()
    };
    // A terminal has one stream.
    let stderr = if o.tty {
        None
    } else {
        make_fifo(&perr)?;
        io.stderr = s(&perr);
        Some(open_reader(&perr)?)
    };
    let stdin = if o.stdin {
        make_fifo(&pin)?;
        io.stdin = s(&pin);
        Some(open_writer(&pin)?)
    } else {
        None
    };
    Ok(Ends {
        stdin,
        stdout,
        stderr,
        io,
    })
}

pub(crate) fn remove_fifos(dir: &Path, exec_id: &str) {
    for s in ["in", "out", "err"] {
        let _ = std::fs::remove_file(dir.join(format!("{exec_id}.{s}")));
    }
}

/// Runs the exec to completion with our stdio attached; its exit status.
/// `started` is called once the process runs, with the shim and the exec id
/// (`hull exec -t` forwards window size changes from there).
pub fn run(
    engine: &Engine,
    r: &Record,
    o: &ExecOptions,
    started: impl FnOnce(&Shim, &str),
) -> Result<u32, Error> {
    if !matches!(engine.state(r), State::Running { .. }) {
        return Err(Error::NotRunning(r.name.clone()));
    }
    let proc = process(engine, r, o)?;
    let exec_id = format!("exec-{}", &new_id()?[..16]);
    let dir = engine.dir(r);
    let ends = open_ends(&dir, &exec_id, o);
    // docker's actions name the command: `exec_start: sh -c date`.
    let cmd = o.cmd.join(" ");
    let exec_attr = || [("execID", exec_id.clone())];
    let launched = ends.and_then(|ends| {
        let shim = engine.shim(r)?;
        let spec = serde_json::to_vec(&proc).unwrap_or_default();
        shim.exec(&exec_id, &spec, &ends.io)?;
        engine.emit(r, &format!("exec_create: {cmd}"), &exec_attr());
        match shim.start(&exec_id) {
            Ok(_) => {
                engine.emit(r, &format!("exec_start: {cmd}"), &exec_attr());
                Ok((shim, ends))
            }
            Err(e) => {
                let _ = shim.delete(&exec_id);
                Err(start_error(e))
            }
        }
    });
    // Both sides hold their ends open now (the shim opens its own in Start):
    // the names are no longer needed, and gone they cannot pile up even if
    // we are killed.
    remove_fifos(&dir, &exec_id);
    let (shim, ends) = launched?;
    started(&shim, &exec_id);
    let code = attach(&shim, &exec_id, ends)?;
    engine.emit(
        r,
        "exec_die",
        &[("execID", exec_id.clone()), ("exitCode", code.to_string())],
    );
    Ok(code)
}

/// Copies the exec's output to ours (and our input to it) until it exits;
/// its exit status.
fn attach(shim: &Shim, exec_id: &str, ends: Ends) -> Result<u32, Error> {
    if let Some(fifo) = ends.stdin {
        feed(fifo, shim.clone(), exec_id.into());
    }
    set_blocking(&ends.stdout);
    let mut threads = vec![pump(ends.stdout, |b| {
        let mut w = std::io::stdout().lock();
        let _ = w.write_all(b).and_then(|()| w.flush());
    })];
    if let Some(err) = ends.stderr {
        set_blocking(&err);
        threads.push(pump(err, |b| {
            let _ = std::io::stderr().lock().write_all(b);
        }));
    }
    let code = shim.wait(exec_id, None)?.map_or(137, |(c, _)| c);
    for t in threads {
        let _ = t.join();
    }
    let _ = shim.delete(exec_id);
    Ok(code)
}
