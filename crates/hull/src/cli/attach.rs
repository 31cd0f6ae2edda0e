//! `hull attach [--detach-keys KEYS] [--no-stdin] [--sig-proxy=false] CONTAINER`: our stdio on a
//! running container's. Output is what the shim appends to the container's log from now on (the
//! shim is the one reader of the container's stdout/stderr, so `logs` and any number of attached
//! clients see the same stream); input goes to the stdin FIFO the shim holds open (`-i`
//! containers), minus the detach sequence, which ends the attachment and leaves the container
//! running.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{ArgAction, Args};
use hull_engine::{logs, State};

use super::run::engine;
use super::tty;

#[derive(Args)]
pub(crate) struct AttachArgs {
    /// Do not attach our stdin.
    #[arg(long)]
    no_stdin: bool,
    /// The key sequence that detaches: comma-separated `ctrl-<c>` or single characters.
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    detach_keys: String,
    /// Forward the signals we receive to the container.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    container: String,
}

/// docker's `--detach-keys` syntax: `ctrl-a`..`ctrl-z`, `ctrl-@`, `ctrl-[`, `ctrl-\`,
/// `ctrl-]`, `ctrl-^`, `ctrl-_`, or one character, comma-separated.
fn parse_keys(s: &str) -> Result<Vec<u8>> {
    let bad = |k: &str| {
        anyhow::anyhow!(
            "invalid --detach-keys {s:?}: {k:?} is not ctrl-<key> or a single character"
        )
    };
    let mut out = Vec::new();
    for k in s.split(',') {
        let b = match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                c @ b'a'..=b'z' => c - b'a' + 1,
                c @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_') => c - b'@',
                _ => return Err(bad(k)),
            },
            None if k.len() == 1 => k.as_bytes()[0],
            _ => return Err(bad(k)),
        };
        out.push(b);
    }
    Ok(out)
}

/// Finds the detach sequence in input as it comes: bytes that may start it are held back
/// until it completes (detach) or diverges (passed on).
struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    /// What to pass on from `input`, and whether the sequence completed.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = usize::from(b == self.keys[0]);
            if self.matched == 0 {
                out.push(b);
            }
        }
        (out, false)
    }
}

pub(crate) fn run(root: &Path, a: AttachArgs) -> Result<u8> {
    let keys = parse_keys(&a.detach_keys)?;
    let e = engine(root)?;
    let r = e.find(&a.container)?;
    if r.options.extra.no_log() {
        bail!(
            "cannot attach to {}: its --log-driver none keeps no output to show",
            r.name
        );
    }
    match e.state(&r) {
        State::Running { .. } => {}
        State::Paused { .. } => bail!("container {} is paused: unpause it first", r.name),
        _ => bail!(
            "cannot attach to a stopped container {}: start it first",
            r.name
        ),
    }
    let dir = e.dir(&r);
    let shim = e.shim(&r)?;
    e.emit(&r, "attach", &[]);
    // From the log's end now: what the container writes from here on.
    let offset = std::fs::metadata(dir.join(logs::LOG)).map_or(0, |m| m.len());
    let _raw = if r.options.tty {
        tty::RawMode::enter()
    } else {
        None
    };
    if r.options.tty {
        tty::resize(&shim);
    }
    if a.sig_proxy {
        tty::forward_signals(shim.clone(), r.options.tty)?;
    }
    let exited = logs::Exited::new()?;
    let detached = Arc::new(AtomicBool::new(false));
    if r.options.stdin && !a.no_stdin {
        let fifo = std::fs::File::options()
            .read(true)
            .write(true)
            .open(dir.join("stdin"))?;
        let (exited, detached) = (exited.clone(), detached.clone());
        std::thread::spawn(move || feed(fifo, Escape { keys, matched: 0 }, &exited, &detached));
    }
    let waiter = {
        let exited = exited.clone();
        std::thread::spawn(move || {
            let r = shim.wait("", None);
            exited.set();
            r
        })
    };
    let (mut out, mut err) = (
        super::Output(std::io::stdout().lock()),
        super::Output(std::io::stderr().lock()),
    );
    let mut sink = logs::Sink {
        out: &mut out,
        err: &mut err,
        timestamps: false,
    };
    logs::Follower::from(&dir, offset).follow(&mut sink, &exited)?;
    if detached.load(Ordering::SeqCst) {
        drop(_raw);
        eprintln!("\r\nread escape sequence");
        return Ok(0);
    }
    let done = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiting for the container panicked"))??;
    let (code, at_ns) = done.unwrap_or((137, hull_engine::record::now_ns()));
    e.remember_exit(&r, code, at_ns);
    Ok(code.min(255) as u8)
}

/// Our stdin → the container's stdin FIFO until the detach sequence (or our EOF: the
/// container's stdin stays open, as docker leaves it).
fn feed(mut fifo: std::fs::File, mut esc: Escape, exited: &logs::Exited, detached: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut stdin = std::io::stdin().lock();
    while let Ok(n) = stdin.read(&mut buf) {
        if n == 0 {
            return;
        }
        let (pass, detach) = esc.feed(&buf[..n]);
        if !pass.is_empty() && fifo.write_all(&pass).is_err() {
            return;
        }
        if detach {
            detached.store(true, Ordering::SeqCst);
            exited.set();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_and_escape() {
        assert_eq!(parse_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(parse_keys("ctrl-x,y").unwrap(), [24, b'y']);
        assert!(parse_keys("ctrl-").is_err() && parse_keys("ab").is_err());
        let mut e = Escape {
            keys: vec![16, 17],
            matched: 0,
        };
        assert_eq!(e.feed(b"ab\x10c"), (b"ab\x10c".to_vec(), false));
        assert_eq!(e.feed(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(e.feed(b"\x11rest"), (Vec::new(), true));
    }
}
