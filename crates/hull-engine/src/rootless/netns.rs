//! The user's **rootless network namespace** (podman's `rootless-netns`): one network
//! namespace per user, owned by the pause process's user namespace, where the bridges of the
//! user's networks live (hull-net runs there as it runs in the host's namespace for root).
//! It is an nsfs bind mount on `<run dir>/netns/ns`, made in the pause process's mount
//! namespace, so it lives as long as that namespace (or until [`teardown`]) with no process
//! of its own. One `pasta` is attached to it: egress for every container on a user network
//! (their bridge's masquerade leaves through pasta's tap), and published ports.
//!
//! Published ports: pasta forwards each host port `H` of a container on a user network to
//! port `H` of the namespace (`-t H,...`), where hull-net's DNAT rules (the ones root's
//! bridges use, in prerouting for pasta's tap and output for its spliced loopback
//! connections) take it to the container. This pasta fixes its port list at start (it has
//! no control interface), so the list is the union of the ports of every lease on the
//! user's networks, and pasta is restarted when that union changes (a container with `-p`
//! comes or goes): connections through it, of every container on a user network, are cut
//! then. Not chosen: `-t auto` (pasta forwards what is bound in the namespace, rescanned
//! each second), which needs a process holding a socket per port there, leaves a port
//! unforwarded for up to a second after `run`, and (tried with Debian's pasta 2023-03-09)
//! did not forward such a port within 10 s (not diagnosed further).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hull_net::{PortMapping, Protocol};

/// `statfs` magic of nsfs: how a bound namespace file is told from the empty mount point.
const NSFS_MAGIC: i64 = 0x6e73_6673;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rootless netns: {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rootless netns: {0}")]
    Ns(&'static str, #[source] std::io::Error),
    #[error("rootless netns: the worker thread panicked")]
    Thread,
    #[error("running pasta for the rootless netns (install Debian's `passt` package)")]
    Spawn(#[source] std::io::Error),
    #[error("pasta could not connect the rootless netns ({status}): {log}")]
    Pasta { status: String, log: String },
    #[error(
        "-p: host port {port}/tcp is held by another process on the host, not by this user's \
         pasta (the ports published before are forwarded again)"
    )]
    PortHeld { port: u16 },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.into(),
        source,
    }
}

fn dir(run: &Path) -> PathBuf {
    run.join("netns")
}

fn ns_file(run: &Path) -> PathBuf {
    dir(run).join("ns")
}

fn pasta_pid(run: &Path) -> PathBuf {
    dir(run).join("pasta.pid")
}

/// Serialises making, using and ending the namespace among the user's hull processes.
/// `system reset` removes the run dir, this file with it, while holding the lock: a hull
/// that waited on the removed file would hold a lock nobody else sees, beside a newcomer
/// locking a new file. So the lock counts only while the path still names the locked file;
/// otherwise it is taken again on the file there now.
pub(crate) fn lock(run: &Path) -> Result<File, Error> {
    use std::os::unix::fs::MetadataExt;
    let path = run.join("netns.lock");
    loop {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(run)
            .map_err(io("creating", run))?;
        let f = File::create(&path).map_err(io("creating", &path))?;
        // SAFETY: flock on an fd we own; released when it closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io("locking", &path)(std::io::Error::last_os_error()));
        }
        let held = f.metadata().map_err(io("reading", &path))?;
        let now = std::fs::metadata(&path).ok();
        if now.is_some_and(|m| m.dev() == held.dev() && m.ino() == held.ino()) {
            return Ok(f);
        }
    }
}

fn c_path(p: &Path) -> Result<std::ffi::CString, Error> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io("naming", p)(std::io::ErrorKind::InvalidInput.into()))
}

/// The namespace file when it is bound (in this mount namespace).
pub(crate) fn bound(run: &Path) -> Option<PathBuf> {
    let file = ns_file(run);
    let c = c_path(&file).ok()?;
    // SAFETY: a zeroed statfs is a valid out-parameter; c is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    (rc == 0 && st.f_type == NSFS_MAGIC).then_some(file)
}

/// Runs `f` on a thread in the namespace `ns`, or (`None`) in a fresh empty one: hull-net
/// acts on the namespace of the calling thread (rtnetlink sockets, `/proc/sys/net`, the
/// `nft` it spawns), and setns/unshare of a network namespace is per thread, so the rest of
/// hull stays in the host's. An empty namespace is for tearing down state whose namespace is
/// gone (the pause process ended): deleting what is not there succeeds.
pub(crate) fn run_in<T: Send>(ns: Option<&Path>, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| Error::Thread)?
    })
}

fn enter(ns: Option<&Path>) -> Result<(), Error> {
    let Some(path) = ns else {
        // SAFETY: unshare takes no pointers; affects only this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(Error::Ns("unshare", std::io::Error::last_os_error()));
        }
        return Ok(());
    };
    let f = File::open(path).map_err(io("opening", path))?;
    // SAFETY: setns on an fd we own; a network namespace may be joined by one thread of a
    // multithreaded process (only user and mount namespaces refuse that). We are root of
    // the user namespace that owns it.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::Ns("setns", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The namespace (made, with its pasta, when missing); the caller holds [`lock`].
pub(crate) fn ensure(run: &Path) -> Result<PathBuf, Error> {
    let d = dir(run);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .map_err(io("creating", &d))?;
    let (file, made) = match bound(run) {
        Some(f) if pasta_running(run).is_some() => return Ok(f),
        Some(f) => (f, false),
        None => {
            // A namespace lost with an earlier pause process: its pasta may still run,
            // holding the host ports the new one needs.
            stop_pasta(run);
            let _ = std::fs::remove_file(ns_file(run));
            (make(run)?, true)
        }
    };
    let _ = std::fs::remove_file(d.join("ports"));
    if let Err(e) = start_pasta(run, &file, &("none".into(), "none".into())) {
        // Only a namespace made just now is ours to end: one that was there already holds
        // running containers' bridges and veths.
        if made {
            let mut errs = Vec::new();
            unbind(run, &mut errs);
        }
        return Err(e);
    }
    Ok(file)
}

/// Makes the namespace on a thread and binds it on the file; loopback up (pasta's spliced
/// connections and the DNAT of forwarded ports use it).
fn make(run: &Path) -> Result<PathBuf, Error> {
    let file = ns_file(run);
    File::create(&file).map_err(io("creating", &file))?;
    let target = c_path(&file)?;
    run_in(None, || {
        lo_up()?;
        // SAFETY: valid C strings; mount keeps no pointer. We are root of the user namespace
        // that owns this mount namespace (the pause process's).
        let rc = unsafe {
            libc::mount(
                c"/proc/thread-self/ns/net".as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(Error::Ns("binding", std::io::Error::last_os_error()));
        }
        Ok(())
    })??;
    Ok(file)
}

fn lo_up() -> Result<(), Error> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::Ns("socket", std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd of ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed ifreq is valid; the name fits (3 bytes of 16).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: ioctl with a valid ifreq; SIOCGIFFLAGS fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(Error::Ns(
            "reading lo's flags",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: ifru_flags was filled by SIOCGIFFLAGS just above.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: ioctl with a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(Error::Ns("setting lo up", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Starts the namespace's pasta forwarding the `(tcp, udp)` lists, in the foreground as
/// our child so that its pid is known (this pasta writes its `--pid` file before it forks
/// to the background), and waits until it has configured the namespace and bound the
/// host's ports.
fn start_pasta(run: &Path, file: &Path, ports: &(String, String)) -> Result<(), Error> {
    let log = dir(run).join("pasta.log");
    let out = File::create(&log).map_err(io("creating", &log))?;
    let err = out.try_clone().map_err(io("opening", &log))?;
    let mut child = Command::new("pasta")
        .args(["--config-net", "--quiet", "--no-map-gw", "--foreground"])
        .args(["-t", &ports.0, "-u", &ports.1, "-T", "none", "-U", "none"])
        .arg("--netns")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(Error::Spawn)?;
    let pid_file = pasta_pid(run);
    let pid = child.id();
    let ready = wait_ready(file, ports, &mut child);
    let ready = ready.and_then(|()| {
        let start = start_time(pid as i32).unwrap_or_default();
        std::fs::write(&pid_file, format!("{pid} {start}")).map_err(io("writing", &pid_file))
    });
    if let Err(e) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    // Reaped whenever it ends (a long-lived `hull system service` keeps no zombie).
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Until the namespace has a link besides `lo` with an IPv4 route (pasta's tap, configured)
/// and the host listens on every TCP port of the list.
fn wait_ready(
    ns: &Path,
    ports: &(String, String),
    child: &mut std::process::Child,
) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let tcp: Vec<u16> = ports.0.split(',').filter_map(|p| p.parse().ok()).collect();
    loop {
        let mut ready = true;
        for &port in &tcp {
            match listener(port, child.id()) {
                Listen::Ours => {}
                Listen::Nobody => ready = false,
                // Someone else listens where our pasta does not: it took the port first
                // (during a restart, or before) and keeps it; pasta may have quit for it.
                Listen::Foreign => return Err(Error::PortHeld { port }),
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(ns.with_file_name("pasta.log")).unwrap_or_default();
            let log: Vec<&str> = log.lines().filter(|l| !l.contains("syslog")).collect();
            return Err(Error::Pasta {
                status: status.to_string(),
                log: log.join("; "),
            });
        }
        let routed = run_in(Some(ns), || {
            std::fs::read_to_string("/proc/thread-self/net/route")
                .is_ok_and(|r| r.lines().skip(1).any(|l| !l.starts_with("lo")))
        })?;
        if ready && routed {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Pasta {
                status: "not ready after 10s".into(),
                log: String::new(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Who listens on a TCP port of the host.
#[derive(Debug, PartialEq, Eq)]
enum Listen {
    /// Our pasta (our uid, and one of its sockets where its fds can be read).
    Ours,
    /// Someone else: another uid, or another process of ours.
    Foreign,
    Nobody,
}

/// The inodes of the sockets `pid` holds, or `None` when its fds cannot be read.
fn socket_inodes(pid: u32) -> Option<Vec<u64>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let inodes = dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?;
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    Some(inodes)
}

/// Who listens on TCP `port` of the host's namespace (ours: hull joins only the user and
/// mount namespaces), `pid` being our pasta.
fn listener(port: u16, pid: u32) -> Listen {
    // The sockets first, then pasta's fds: a socket seen listening is among the fds then.
    let tables: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let fds = socket_inodes(pid);
    // SAFETY: geteuid cannot fail. /proc/net/tcp shows uids as our user namespace maps
    // them: ours is our euid, another user's is not mapped (the overflow uid).
    let uid = unsafe { libc::geteuid() };
    classify(&tables, port, uid, fds.as_deref())
}

/// [`listener`] over the text of /proc/net/tcp{,6}: `sl local rem st queues tr retrnsmt uid
/// timeout inode`. Foreign when any listening socket is someone else's (on one address or
/// family that one gets the connections), ours when some are ours and none foreign.
fn classify(tables: &[String], port: u16, uid: u32, fds: Option<&[u64]>) -> Listen {
    let suffix = format!(":{port:04X}");
    let mut seen = Listen::Nobody;
    for l in tables.iter().flat_map(|t| t.lines().skip(1)) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let (Some(local), Some(st), Some(owner), Some(inode)) =
            (w.get(1), w.get(3), w.get(7), w.get(9))
        else {
            continue;
        };
        if !local.ends_with(&suffix) || *st != "0A" {
            continue;
        }
        let owner_ok = owner.parse::<u32>().is_ok_and(|o| o == uid);
        let inode_ok = fds.is_none_or(|f| inode.parse::<u64>().is_ok_and(|i| f.contains(&i)));
        if !(owner_ok && inode_ok) {
            return Listen::Foreign;
        }
        seen = Listen::Ours;
    }
    seen
}

/// `pid`'s start time (field 22 of /proc/PID/stat, clock ticks since boot): with the pid
/// it names one process, where a pid alone may have been reused by another.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After `comm)`: field 3 (state) is the first; 22 the 20th.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The pid in `file` (`PID START`) when it is a live process started at `START` whose name
/// starts with one of `comms`.
fn live_pid(file: &Path, comms: &[&str]) -> Option<i32> {
    let text = std::fs::read_to_string(file).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    let (pid, start): (i32, u64) = (pid.parse().ok()?, start.parse().ok()?);
    let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = state
        .rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('Z'));
    let same = start_time(pid) == Some(start);
    (comms.iter().any(|n| c.starts_with(n)) && !zombie && same).then_some(pid)
}

/// pasta re-executes itself as `passt.avx2` where the CPU has AVX2: that is its `comm` then.
const PASTA_COMMS: &[&str] = &["pasta", "passt"];

fn pasta_running(run: &Path) -> Option<i32> {
    live_pid(&pasta_pid(run), PASTA_COMMS)
}

/// Kills the namespace's pasta and waits a moment for it to go, so that its host ports
/// and tap device are free when this returns. SIGKILL: pasta keeps no state worth a clean
/// exit.
fn stop_pasta(run: &Path) {
    let file = pasta_pid(run);
    if let Some(pid) = live_pid(&file, PASTA_COMMS) {
        // SAFETY: kill touches no memory; the pid was checked to be a pasta of ours.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while live_pid(&file, PASTA_COMMS).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(file);
}

fn unbind(run: &Path, errs: &mut Vec<String>) {
    let file = ns_file(run);
    if bound(run).is_some() {
        if let Ok(c) = c_path(&file) {
            // SAFETY: a valid C string.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                let e = std::io::Error::last_os_error();
                errs.push(format!("unmount {}: {e}", file.display()));
            }
        }
    }
    if let Err(e) = std::fs::remove_file(&file) {
        if e.kind() != std::io::ErrorKind::NotFound {
            errs.push(format!("remove {}: {e}", file.display()));
        }
    }
}

/// Ends the namespace: its pasta, the bind mount, the files. Collects errors and carries on.
pub(crate) fn teardown(run: &Path) -> Vec<String> {
    let mut errs = Vec::new();
    stop_pasta(run);
    unbind(run, &mut errs);
    let d = dir(run);
    let _ = std::fs::remove_file(d.join("pasta.log"));
    let _ = std::fs::remove_file(d.join("ports"));
    if let Err(e) = std::fs::remove_dir(&d) {
        if e.kind() != std::io::ErrorKind::NotFound {
            errs.push(format!("remove {}: {e}", d.display()));
        }
    }
    errs
}

/// pasta's list for one protocol: `H,...` (host port H to the namespace's H), or `none`.
fn port_list(ports: &[PortMapping], proto: Protocol) -> String {
    let mut list: Vec<u16> = ports
        .iter()
        .filter(|p| p.protocol == proto)
        .map(|p| p.host_port)
        .collect();
    list.sort_unstable();
    list.dedup();
    if list.is_empty() {
        return "none".into();
    }
    let list: Vec<String> = list.iter().map(u16::to_string).collect();
    list.join(",")
}

/// Has the namespace's pasta forward exactly `ports` (the union over the user's leases),
/// restarting it when its list differs; the caller holds [`lock`].
pub(crate) fn publish(run: &Path, ns: &Path, ports: &[PortMapping]) -> Result<(), Error> {
    let lists = (
        port_list(ports, Protocol::Tcp),
        port_list(ports, Protocol::Udp),
    );
    let file = dir(run).join("ports");
    let want = format!("{} {}\n", lists.0, lists.1);
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    if have == want && pasta_running(run).is_some() {
        return Ok(());
    }
    let Err(e) = restart(run, ns, &file, &lists) else {
        return Ok(());
    };
    // The other containers keep their egress and ports: the list before, again.
    let old = have.trim().split_once(' ');
    if let Some((t, u)) = old.filter(|_| have != want) {
        let _ = restart(run, ns, &file, &(t.into(), u.into()));
    }
    Err(e)
}

fn restart(run: &Path, ns: &Path, file: &Path, lists: &(String, String)) -> Result<(), Error> {
    stop_pasta(run);
    let want = format!("{} {}\n", lists.0, lists.1);
    std::fs::write(file, &want).map_err(io("writing", file))?;
    // The old pasta's tap device is unregistered by the kernel a moment after it exits;
    // until then the new one cannot take its name.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match start_pasta(run, ns, lists) {
            Err(Error::Pasta { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => {
                if r.is_err() {
                    let _ = std::fs::remove_file(file);
                }
                return r;
            }
        }
    }
}

#[cfg(test)]
#[path = "netns_tests.rs"]
mod tests;
