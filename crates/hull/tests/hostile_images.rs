//! `hull` against hostile input (issue #24): a pull killed half-way leaves its staging
//! behind, which the next command that opens the store removes while a concurrent pull's
//! staging stays; the per-layer limits set with `HULL_LAYER_MAX_SIZE` /
//! `HULL_LAYER_MAX_FILES` refuse a layer with a clear message and leave nothing behind.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctr::{archive, ensure_binaries, text, HULL};
use sha2::{Digest, Sha256};

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn hull(root: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(HULL)
        .arg("--root")
        .arg(root)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

/// A registry of one image whose layer stops half-way until `release` is set.
struct Stalling {
    port: u16,
    release: Arc<AtomicBool>,
}

fn stalling_registry(layer: Vec<u8>) -> Stalling {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch(), "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&layer))]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{}", sha(&layer)), "size": layer.len()}],
    }))
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let blobs = Arc::new((config, manifest, layer));
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let (r, blobs) = (r.clone(), blobs.clone());
            std::thread::spawn(move || {
                let _ = serve(c, &blobs, &r);
            });
        }
    });
    Stalling { port, release }
}

fn serve(
    mut c: TcpStream,
    (config, manifest, layer): &(Vec<u8>, Vec<u8>, Vec<u8>),
    release: &AtomicBool,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut b)? == 0 {
            return Ok(());
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let (body, ctype, stall) = if head.contains("/manifests/") {
        (
            manifest,
            "application/vnd.oci.image.manifest.v1+json",
            false,
        )
    } else if head.contains(&sha(config)) {
        (config, "application/json", false)
    } else {
        (layer, "application/octet-stream", true)
    };
    write!(
        c,
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    let half = if stall { body.len() / 2 } else { body.len() };
    c.write_all(&body[..half])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stall && !release.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    c.write_all(&body[half..])
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The stage directories under `<root>/tmp` that hold something.
fn busy_stages(root: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(root.join("tmp")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()))
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_pulls_staging_goes_at_the_next_command_but_a_running_ones_stays() {
    ensure_binaries();
    // 2 MiB: more than the socket buffers, so the first half is really staged.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(2 << 20);
    b.append_data(&mut h, "big", vec![1u8; 2 << 20].as_slice())
        .unwrap();
    let reg = stalling_registry(b.into_inner().unwrap());
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let reference = format!("127.0.0.1:{}/stall/img:v1", reg.port);
    let spawn = || {
        Command::new(HULL)
            .arg("--root")
            .arg(r)
            .args(["pull", "-q", &reference])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut killed = spawn();
    wait_for("the first pull to stage", || busy_stages(r).len() == 1);
    let dead = busy_stages(r)[0].clone();
    let running = spawn();
    wait_for("the second pull to stage", || busy_stages(r).len() == 2);
    let live: Vec<PathBuf> = busy_stages(r).into_iter().filter(|p| *p != dead).collect();
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(dead.exists());

    // Any command that opens the store cleans up after the dead pull only.
    let o = hull(r, &[], &["images"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        !dead.exists(),
        "the killed pull's staging {dead:?} is still there"
    );
    assert!(
        live[0].exists(),
        "the running pull's staging {live:?} was removed"
    );

    reg.release.store(true, Ordering::SeqCst);
    let o = running.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the running pull failed: {:?}",
        text(&o)
    );
    let left: Vec<_> = std::fs::read_dir(r.join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(hull(r, &[], &["images"]).status.success());
}

#[test]
fn layer_limits_from_the_environment_refuse_a_layer_and_leave_nothing() {
    ensure_binaries();
    let work = tempfile::tempdir().unwrap();
    let a = archive(
        work.path(),
        "hull.test/limits:1",
        serde_json::json!({"Cmd": ["sh"]}),
    );
    let a = a.to_str().unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let empty = |sub: &str| {
        std::fs::read_dir(r.join(sub))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    };
    for (env, needle) in [
        (("HULL_LAYER_MAX_SIZE", "64K"), "more than 65536 bytes"),
        (("HULL_LAYER_MAX_FILES", "5"), "more than 5 entries"),
    ] {
        let o = hull(r, &[env], &["load", "-i", a]);
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(125), "{env:?}: {err}");
        assert!(
            err.contains(needle) && err.contains(env.0),
            "{env:?}: {err}"
        );
        for sub in ["tmp", "snapshots", "blobs/sha256"] {
            assert!(empty(sub), "{env:?}: {sub} not empty");
        }
    }
    let o = hull(r, &[("HULL_LAYER_MAX_SIZE", "lots")], &["images"]);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("HULL_LAYER_MAX_SIZE=\"lots\""), "{err}");
    // Within the defaults, and with a suffix, the same archive loads.
    let o = hull(r, &[("HULL_LAYER_MAX_SIZE", "1G")], &["load", "-i", a]);
    assert!(o.status.success(), "{:?}", text(&o));
}
