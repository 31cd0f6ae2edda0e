//! Rootless containers run by a real unprivileged user (issue 5).
//!
//! Each test creates its own user (useradd, no home; useradd gives it a
//! subordinate id range in /etc/subuid and /etc/subgid), a bundle and an
//! XDG_RUNTIME_DIR chowned to it, runs hullc as that user with setpriv, and
//! removes all of it again: containers, state, processes, the user and its
//! subordinate ids (userdel drops those).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Bundle, Hullc};
use serde_json::{json, Value};

/// A throwaway user, deleted on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    fn new() -> User {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("hullrl{}x{n}", std::process::id());
        let st = Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", &name])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name}");
        let id = |flag: &str| {
            let o = Command::new("id")
                .args([flag, name.as_str()])
                .output()
                .expect("id");
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .expect("numeric id")
        };
        User {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// The user's first range in /etc/sub{u,g}id: (start, count).
    fn subids(&self, file: &str) -> (u32, u32) {
        let text = fs::read_to_string(file).unwrap_or_default();
        let found = text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == self.name).then(|| (f[1].parse().ok(), f[2].parse().ok()))
        });
        match found {
            Some((Some(s), Some(c))) => (s, c),
            _ => panic!("{} has no range in {file}", self.name),
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// What a test works in: the user, its XDG_RUNTIME_DIR, a copy of hullc it
/// can run (the build tree may sit below a directory it cannot enter).
struct Env {
    user: User,
    dir: tempfile::TempDir,
    hullc: PathBuf,
}

impl Env {
    fn new() -> Env {
        let user = User::new();
        let dir = tempfile::Builder::new()
            .prefix("hullc-rootless-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("xdg")).expect("mkdir xdg");
        let hullc = dir.path().join("hullc");
        fs::copy(common::HULLC, &hullc).expect("copy hullc");
        chown_r(dir.path(), &user);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        Env { user, dir, hullc }
    }

    fn xdg(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    /// `hullc ARGS` as the user, without --root. Output goes through files:
    /// a detached container keeps its stdio open after hullc exits.
    fn hullc(&self, h: &Hullc, args: &[&str]) -> Output {
        let out = tempfile::tempfile().expect("stdout file");
        let err = tempfile::tempfile().expect("stderr file");
        let status = Command::new("setpriv")
            .args(["--reuid", &self.user.name, "--regid", &self.user.name])
            .arg("--init-groups")
            .arg(&self.hullc)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("USER", &self.user.name)
            .env("XDG_RUNTIME_DIR", self.xdg())
            .env("HULL_TEST_TAG", &h.tag)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"))
            .status()
            .expect("setpriv hullc");
        let read = |mut f: fs::File| {
            use std::io::{Read, Seek};
            let mut v = Vec::new();
            f.rewind().expect("rewind");
            f.read_to_end(&mut v).expect("read output");
            v
        };
        let o = Output {
            status,
            stdout: read(out),
            stderr: read(err),
        };
        eprintln!(
            "hullc {args:?} as {}: {}\n{}{}",
            self.user.name,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    #[track_caller]
    fn ok(&self, h: &Hullc, args: &[&str]) -> String {
        let o = self.hullc(h, args);
        assert!(o.status.success(), "hullc {args:?} failed as the user");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A bundle whose config is `hullc spec --rootless` made by the user,
    /// with a `/vol` bind mount of a host dir the user owns.
    fn bundle(&self, h: &Hullc) -> (Bundle, PathBuf) {
        let mut b = Bundle::new(h);
        fs::remove_file(b.path().join("config.json")).expect("rm config");
        fs::create_dir(b.rootfs().join("vol")).expect("mkdir /vol");
        let vol = self.dir.path().join("vol");
        fs::create_dir(&vol).expect("mkdir vol");
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).expect("chmod vol");
        chown_r(b.path(), &self.user);
        chown_r(&vol, &self.user);
        let bundle = b.path().to_str().expect("utf-8").to_string();
        self.ok(h, &["spec", "--rootless", "--bundle", &bundle]);
        let raw = fs::read(b.path().join("config.json")).expect("config.json");
        let mut c: Value = serde_json::from_slice(&raw).expect("json");
        c["process"]["terminal"] = json!(false);
        c["root"]["readonly"] = json!(false);
        c["process"]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!(format!("HULL_TEST_TAG={}", h.tag)));
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rw"]
        }));
        b.config = c;
        (b, vol)
    }

    /// Force-deletes `id` as root (after a failed test) and checks that the
    /// per-user state root is empty.
    fn cleanup(&self, id: &str) {
        let root = self.xdg().join("hullc");
        let _ = Command::new(common::HULLC)
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", id])
            .stderr(Stdio::null())
            .status();
    }
}

fn chown_r(p: &Path, u: &User) {
    let st = Command::new("chown")
        .args(["-R", &format!("{}:{}", u.uid, u.gid)])
        .arg(p)
        .status()
        .expect("chown");
    assert!(st.success(), "chown -R {}", p.display());
}

fn map_line(container: u32, host: u32, size: u32) -> String {
    format!("{container} {host} {size}")
}

fn normalize(map: &str) -> Vec<String> {
    map.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// `spec --rootless` as the user: its own uid/gid as root inside, state
/// under $XDG_RUNTIME_DIR/hullc, files in a bind mount owned by the user on
/// the host, and list/state/exec/kill/delete all working unprivileged.
#[test]
fn rootless_single_mapping_lifecycle() {
    let h = Hullc::new();
    let env = Env::new();
    let (mut b, vol) = env.bundle(&h);
    let id = h.id("rl");
    b.args(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map >/vol/maps; id -u >/vol/uid; touch /vol/made; sleep 1000",
    ]);
    b.save();
    let bundle = b.path().to_str().expect("utf-8");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.ok(&h, &["run", "-d", "--bundle", bundle, &id]);
        common::wait_until("the container's files", Duration::from_secs(20), || {
            vol.join("made").exists()
        });
        let maps = normalize(&fs::read_to_string(vol.join("maps")).expect("maps"));
        let (u, g) = (env.user.uid, env.user.gid);
        assert_eq!(maps, [map_line(0, u, 1), map_line(0, g, 1)], "id maps");
        assert_eq!(
            fs::read_to_string(vol.join("uid")).expect("uid").trim(),
            "0"
        );
        let made = fs::metadata(vol.join("made")).expect("stat made");
        assert_eq!((made.uid(), made.gid()), (u, g), "owner on the host");
        let state_dir = env.xdg().join("hullc").join(&id);
        assert!(state_dir.join("state.json").exists(), "state under XDG");
        assert_eq!(fs::metadata(&state_dir).expect("stat").uid(), u);
        assert!(env.ok(&h, &["list", "-q"]).lines().any(|l| l == id));
        let st: Value = serde_json::from_str(&env.ok(&h, &["state", &id])).expect("json");
        assert_eq!(st["status"], "running");
        assert_eq!(env.ok(&h, &["exec", &id, "id", "-u"]).trim(), "0");
        env.ok(&h, &["kill", &id, "KILL"]);
        common::wait_until("the container to stop", Duration::from_secs(20), || {
            env.ok(&h, &["state", &id]).contains("\"stopped\"")
        });
        env.ok(&h, &["delete", &id]);
        assert!(!state_dir.exists(), "state left: {}", state_dir.display());
    }));
    env.cleanup(&id);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    common::assert_clean(&h, &b, &[&id]);
    let left: Vec<_> = fs::read_dir(env.xdg().join("hullc"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "state left under XDG_RUNTIME_DIR: {left:?}"
    );
}

/// A multi-range mapping (the user's own id plus its /etc/subuid range)
/// goes through newuidmap/newgidmap; setgroups is then allowed.
#[test]
fn rootless_multi_range_mapping_uses_newuidmap() {
    let h = Hullc::new();
    let env = Env::new();
    let (mut b, vol) = env.bundle(&h);
    let (su, sun) = env.user.subids("/etc/subuid");
    let (sg, sgn) = env.user.subids("/etc/subgid");
    let (u, g) = (env.user.uid, env.user.gid);
    let m = |own, start, n: u32| {
        json!([{"containerID": 0, "hostID": own, "size": 1},
        {"containerID": 1, "hostID": start, "size": n}])
    };
    b.config["linux"]["uidMappings"] = m(u, su, sun);
    b.config["linux"]["gidMappings"] = m(g, sg, sgn);
    b.config["process"]["user"] = json!({"uid": 1, "gid": 1, "additionalGids": [2]});
    b.args(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map >/vol/maps; id -G >/vol/groups; touch /vol/made",
    ]);
    let id = h.id("rlm");
    b.save();
    let bundle = b.path().to_str().expect("utf-8");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.ok(&h, &["run", "--bundle", bundle, &id]);
        let maps = normalize(&fs::read_to_string(vol.join("maps")).expect("maps"));
        let want = [
            map_line(0, u, 1),
            map_line(1, su, sun),
            map_line(0, g, 1),
            map_line(1, sg, sgn),
        ];
        assert_eq!(maps, want, "id maps");
        assert_eq!(
            fs::read_to_string(vol.join("groups"))
                .expect("groups")
                .trim(),
            "1 2"
        );
        let made = fs::metadata(vol.join("made")).expect("stat made");
        assert_eq!(
            (made.uid(), made.gid()),
            (su, sg),
            "uid/gid 1 inside = first subordinate ids"
        );
    }));
    env.cleanup(&id);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
    common::assert_clean(&h, &b, &[&id]);
}

/// Rootless without a delegated cgroup: limits cannot be honoured, and
/// create says so (runc: "cannot set ... limit: container could not join
/// or create cgroup") and leaves nothing behind.
#[test]
fn rootless_limits_without_a_cgroup_fail_cleanly() {
    let h = Hullc::new();
    let env = Env::new();
    let (mut b, _vol) = env.bundle(&h);
    b.config["linux"]["resources"] = json!({"pids": {"limit": 100}});
    b.save();
    let id = h.id("rll");
    let bundle = b.path().to_str().expect("utf-8");
    let o = env.hullc(&h, &["create", "--bundle", bundle, &id]);
    env.cleanup(&id);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot set limits"), "{err}");
    common::assert_clean(&h, &b, &[&id]);
    let o = env.hullc(&h, &["--rootless=maybe", "list"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "--rootless takes true, false or auto"
    );
}
