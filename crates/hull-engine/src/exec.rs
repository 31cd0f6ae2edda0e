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
use crate::shim::Io;
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
}

fn io_err<'a>(what: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: p.into(),
        source,
    }
}

/// The container's process spec with the exec's overrides.
fn process(engine: &Engine, r: &Record, o: &ExecOptions) -> Result<Value, Error> {
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

fn set_blocking(f: &File) {
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
    let mut fifo = File::options()
        .write(true)
        .open(&p)
        .map_err(io_err("cannot open", &p))?;
    let shim = engine.shim(r)?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut fifo);
        drop(fifo);
        let _ = shim.close_io(&exec_id);
    });
    Ok(())
}

/// Runs the exec to completion with our stdio attached; its exit status.
pub fn run(engine: &Engine, r: &Record, o: &ExecOptions) -> Result<u32, Error> {
    if !matches!(engine.state(r), State::Running { .. }) {
        return Err(Error::NotRunning(r.name.clone()));
    }
    let proc = process(engine, r, o)?;
    let exec_id = format!("exec-{}", &new_id()?[..16]);
    let dir = engine.dir(r);
    let path = |s: &str| dir.join(format!("{exec_id}.{s}"));
    let (pin, pout, perr) = (path("in"), path("out"), path("err"));
    let result = (|| {
        make_fifo(&pout)?;
        if !o.tty {
            make_fifo(&perr)?;
        }
        if o.stdin {
            make_fifo(&pin)?;
        }
        let out = open_reader(&pout)?;
        let err = if o.tty {
            None
        } else {
            Some(open_reader(&perr)?)
        };
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let io = Io {
            stdin: if o.stdin { s(&pin) } else { String::new() },
            stdout: s(&pout),
            stderr: if o.tty { String::new() } else { s(&perr) },
            terminal: o.tty,
        };
        let shim = engine.shim(r)?;
        let spec = serde_json::to_vec(&proc).unwrap_or_default();
        shim.exec(&exec_id, &spec, &io)?;
        shim.start(&exec_id)?;
        if o.stdin {
            feed_stdin(engine, r, pin.clone(), exec_id.clone())?;
        }
        set_blocking(&out);
        let mut threads = vec![pump(out, |b| {
            let mut w = std::io::stdout().lock();
            let _ = w.write_all(b).and_then(|()| w.flush());
        })];
        if let Some(err) = err {
            set_blocking(&err);
            threads.push(pump(err, |b| {
                let _ = std::io::stderr().lock().write_all(b);
            }));
        }
        let code = shim.wait(&exec_id, None)?.map_or(137, |(c, _)| c);
        for t in threads {
            let _ = t.join();
        }
        let _ = shim.delete(&exec_id);
        Ok(code)
    })();
    for p in [&pin, &pout, &perr] {
        let _ = std::fs::remove_file(p);
    }
    result
}
