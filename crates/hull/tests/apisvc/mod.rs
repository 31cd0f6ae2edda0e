//! The harness of the API tests: `hull system service` on a temp socket, the docker
//! 20.10 client pointed at it, raw HTTP for error cases, the network tests' lock.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::ctr::Env;
use serde_json::json;

pub const IMG: &str = "hull.test/api:1";
pub const DOCKER: &str = "/usr/bin/docker";

/// Serialises the tests that give containers networks with the other helpers' tests.
pub struct NetLock(#[allow(dead_code)] std::fs::File);

pub fn net_lock() -> NetLock {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/hull-net-tests.lock")
        .unwrap();
    // SAFETY: flock on a descriptor we own; released when it closes.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    NetLock(f)
}

pub struct Service {
    pub child: Child,
    pub sock: PathBuf,
    pub home: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: signals the service this test started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub fn start(e: &Env, time: &str) -> Service {
    let sock = e.work.path().join("docker.sock");
    let child = e
        .cmd(&[
            "system",
            "service",
            "--time",
            time,
            &format!("unix://{}", sock.display()),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "service did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Service {
        child,
        sock,
        home: tempfile::tempdir().unwrap(),
    }
}

impl Service {
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.home.path())
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.docker(args).output().unwrap()
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({:?}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// One HTTP/1.1 request on the socket; (status, body).
pub fn http(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

pub fn env() -> Env {
    let e = Env::new();
    e.load(
        IMG,
        json!({"Env": ["PATH=/bin"], "Cmd": ["sh", "-c", "echo default"]}),
    );
    e
}
