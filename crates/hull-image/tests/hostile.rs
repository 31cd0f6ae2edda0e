#![allow(clippy::unwrap_used)]
//! Hostile registries and layers (issue #24): a registry that streams more (or fewer) bytes
//! than a blob's declared size, a decompression bomb, and a `.wh...` whiteout, each served
//! by a tiny fake registry on 127.0.0.1 in this process. Each refusal must name its cause and
//! leave nothing in the store: no blob, snapshot or staging file.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hull_image::{pull, LayerLimits, NoProgress, PullOptions, Store};
use sha2::{Digest as _, Sha256};

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// How the fake registry answers a blob request.
#[derive(Clone)]
enum Serve {
    /// The bytes, with their length.
    Whole(Vec<u8>),
    /// The bytes, then zeros until the client hangs up or `cap` bytes went, claiming 10 GB.
    Endless(Vec<u8>, u64),
    /// The first half of the bytes, with that length.
    Half(Vec<u8>),
    /// The bytes, a second after `gate` is set.
    Gated(Vec<u8>, Arc<AtomicBool>),
    /// The bytes, then sets the flag.
    Opens(Vec<u8>, Arc<AtomicBool>),
}

/// A fake registry serving one repository: manifests by tag, blobs by digest.
struct Fake {
    port: u16,
    /// Bytes sent for `Endless` blobs, and whether that handler has finished.
    sent: Arc<AtomicU64>,
    endless_done: Arc<AtomicBool>,
}

impl Fake {
    fn start(routes: HashMap<String, (String, Serve)>) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let endless_done = Arc::new(AtomicBool::new(false));
        let routes = Arc::new(Mutex::new(routes));
        let (s, d) = (sent.clone(), endless_done.clone());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (routes, s, d) = (routes.clone(), s.clone(), d.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &routes, &s, &d);
                });
            }
        });
        Fake {
            port,
            sent,
            endless_done,
        }
    }

    fn reference(&self, tag: &str) -> String {
        format!("127.0.0.1:{}/hostile/img:{tag}", self.port)
    }
}

fn handle(
    mut c: TcpStream,
    routes: &Mutex<HashMap<String, (String, Serve)>>,
    sent: &AtomicU64,
    done: &AtomicBool,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let key = path.rsplit('/').next().unwrap_or("").to_string();
    let Some((ctype, serve)) = routes.lock().unwrap().get(&key).cloned() else {
        write!(
            c,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    };
    let hdr = |c: &mut TcpStream, len: u64| {
        write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    match serve {
        Serve::Whole(b) => {
            hdr(&mut c, b.len() as u64)?;
            c.write_all(&b)?;
        }
        Serve::Half(b) => {
            let half = &b[..b.len() / 2];
            hdr(&mut c, half.len() as u64)?;
            c.write_all(half)?;
        }
        Serve::Gated(b, gate) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !gate.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_secs(1));
            hdr(&mut c, b.len() as u64)?;
            c.write_all(&b)?;
        }
        Serve::Opens(b, gate) => {
            hdr(&mut c, b.len() as u64)?;
            c.write_all(&b)?;
            gate.store(true, Ordering::SeqCst);
        }
        Serve::Endless(b, cap) => {
            hdr(&mut c, 10_000_000_000)?;
            let res: std::io::Result<()> = (|| {
                c.write_all(&b)?;
                sent.fetch_add(b.len() as u64, Ordering::SeqCst);
                let zeros = vec![0u8; 64 << 10];
                while sent.load(Ordering::SeqCst) < cap {
                    c.write_all(&zeros)?;
                    sent.fetch_add(zeros.len() as u64, Ordering::SeqCst);
                }
                Ok(())
            })();
            done.store(true, Ordering::SeqCst);
            res?;
        }
    }
    Ok(())
}

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Routes of an image with one layer `blob` (media type `mt`, DiffID of `tar`) served as
/// `serve`, under tag `tag`.
fn image(
    routes: &mut HashMap<String, (String, Serve)>,
    tag: &str,
    mt: &str,
    tar: &[u8],
    blob: &[u8],
    serve: Serve,
) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": host_arch(), "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(tar))]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
        "layers": [{"mediaType": mt, "digest": format!("sha256:{}", sha(blob)),
            "size": blob.len()}],
    }))
    .unwrap();
    let json = "application/json".to_string();
    routes.insert(
        format!("sha256:{}", sha(&config)),
        (json, Serve::Whole(config)),
    );
    routes.insert(format!("sha256:{}", sha(blob)), (mt.to_string(), serve));
    routes.insert(
        tag.to_string(),
        (
            "application/vnd.oci.image.manifest.v1+json".to_string(),
            Serve::Whole(manifest),
        ),
    );
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn small_tar(name: &str, size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size as u64);
    b.append_data(&mut h, name, vec![7u8; size].as_slice())
        .unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Nothing in the store: no image, blob, snapshot or staging entry.
fn assert_clean(store: &Store, root: &Path) {
    assert!(store.images().unwrap().is_empty());
    for sub in ["snapshots", "blobs/sha256", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(root.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{sub} not empty: {left:?}");
    }
}

#[test]
fn a_blob_longer_or_shorter_than_declared_is_cut_off_and_named() {
    let tar = small_tar("f", 9 << 10);
    let mut routes = HashMap::new();
    // 1 GiB at most, so that a client reading to the end still ends the test.
    image(
        &mut routes,
        "long",
        TAR,
        &tar,
        &tar,
        Serve::Endless(tar.clone(), 1 << 30),
    );
    let short = small_tar("g", 12 << 10);
    image(
        &mut routes,
        "short",
        TAR,
        &short,
        &short,
        Serve::Half(short.clone()),
    );
    let fake = Fake::start(routes);
    let root = tempfile::tempdir().unwrap();
    let mut store = Store::open(root.path()).unwrap();
    let opts = PullOptions::default();
    let err = pull(&mut store, &fake.reference("long"), &opts, &NoProgress).unwrap_err();
    let msg = format!("{err}");
    assert!(
        msg.contains(&format!(
            "size mismatch: expected {} bytes, got more",
            tar.len()
        )),
        "{msg}"
    );
    // The registry stopped writing because hull hung up, long before the 1 GiB.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fake.endless_done.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = fake.sent.load(Ordering::SeqCst);
    assert!(
        sent < 256 << 20,
        "hull read {sent} bytes of an endless blob"
    );
    assert_clean(&store, root.path());

    let err = pull(&mut store, &fake.reference("short"), &opts, &NoProgress).unwrap_err();
    let msg = format!("{err}");
    let want = format!(
        "size mismatch: expected {} bytes, got {}",
        short.len(),
        short.len() / 2
    );
    assert!(msg.contains(&want), "{msg}");
    assert_clean(&store, root.path());
}

#[test]
fn a_decompression_bomb_stops_at_the_layer_limit() {
    // 8 MiB in a tar, ~8 KiB gzipped (debug builds inflate slowly); the limit is 1 MiB.
    let tar = small_tar("zeros", 8 << 20);
    let bomb = gzip(&tar);
    assert!(bomb.len() < 1 << 20);
    let mut routes = HashMap::new();
    image(
        &mut routes,
        "bomb",
        GZIP,
        &tar,
        &bomb,
        Serve::Whole(bomb.clone()),
    );
    let fake = Fake::start(routes);
    let root = tempfile::tempdir().unwrap();
    let mut store = Store::open(root.path()).unwrap();
    store.set_layer_limits(LayerLimits {
        max_size: 1 << 20,
        ..LayerLimits::default()
    });
    let err = pull(
        &mut store,
        &fake.reference("bomb"),
        &PullOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.contains("the layer unpacks to more than 1048576 bytes")
            && chain.contains("HULL_LAYER_MAX_SIZE"),
        "{chain}"
    );
    assert_clean(&store, root.path());
    // The same image within the defaults is fine.
    store.set_layer_limits(LayerLimits::default());
    pull(
        &mut store,
        &fake.reference("bomb"),
        &PullOptions::default(),
        &NoProgress,
    )
    .unwrap();
}

#[test]
fn a_dot_dot_whiteout_is_refused_beside_a_concurrent_pull() {
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(0);
    h.as_gnu_mut().unwrap().name[..6].copy_from_slice(b".wh...");
    h.set_cksum();
    evil.append(&h, [].as_slice()).unwrap();
    let evil = evil.into_inner().unwrap();
    let good = small_tar("good", 100 << 10);
    let gate = Arc::new(AtomicBool::new(false));
    let mut routes = HashMap::new();
    // The good layer is sent a second after the evil one: its pull has staged meanwhile.
    let evil_served = Serve::Opens(evil.clone(), gate.clone());
    image(&mut routes, "evil", TAR, &evil, &evil, evil_served);
    image(
        &mut routes,
        "good",
        TAR,
        &good,
        &good,
        Serve::Gated(good.clone(), gate.clone()),
    );
    let fake = Fake::start(routes);
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    std::fs::write(&outside, b"keep").unwrap();
    // A pull that stages its layer while the hostile one runs.
    let good_ref = fake.reference("good");
    let r = root.path().to_path_buf();
    let concurrent = std::thread::spawn(move || {
        let mut store = Store::open(&r).unwrap();
        pull(&mut store, &good_ref, &PullOptions::default(), &NoProgress).map(|_| ())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let staged = || std::fs::read_dir(root.path().join("tmp")).map_or(0, |d| d.count());
    while staged() == 0 {
        assert!(
            Instant::now() < deadline,
            "the concurrent pull staged nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut store = Store::open(root.path()).unwrap();
    let err = pull(
        &mut store,
        &fake.reference("evil"),
        &PullOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.contains("\".wh...\"") && chain.contains("not '', '.' or '..'"),
        "{chain}"
    );
    concurrent.join().unwrap().expect("the concurrent pull");
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    let left = std::fs::read_dir(root.path().join("tmp")).unwrap().count();
    assert_eq!(left, 0, "staging left behind");
}

#[test]
fn a_nested_index_is_followed_to_the_platform_manifest() {
    let tar = small_tar("f", 10);
    let mut routes = HashMap::new();
    image(
        &mut routes,
        "plain",
        TAR,
        &tar,
        &tar,
        Serve::Whole(tar.clone()),
    );
    let Serve::Whole(manifest) = routes["plain"].1.clone() else {
        unreachable!()
    };
    let platform = serde_json::json!({"architecture": host_arch(), "os": "linux"});
    let index_mt = "application/vnd.oci.image.index.v1+json";
    let wrap = |child: &[u8], mt: &str| {
        serde_json::to_vec(
            &serde_json::json!({"schemaVersion": 2, "mediaType": index_mt,
            "manifests": [{"mediaType": mt, "digest": format!("sha256:{}", sha(child)),
                "size": child.len(), "platform": platform}]}),
        )
        .unwrap()
    };
    let inner = wrap(&manifest, "application/vnd.oci.image.manifest.v1+json");
    let outer = wrap(&inner, index_mt);
    let m = "application/vnd.oci.image.manifest.v1+json".to_string();
    routes.insert(
        format!("sha256:{}", sha(&manifest)),
        (m, Serve::Whole(manifest)),
    );
    routes.insert(
        format!("sha256:{}", sha(&inner)),
        (index_mt.to_string(), Serve::Whole(inner)),
    );
    routes.insert(
        "nested".to_string(),
        (index_mt.to_string(), Serve::Whole(outer.clone())),
    );
    // Nesting past the limit: the error says what the entries are.
    let mut deep = outer;
    for _ in 0..4 {
        let d = wrap(&deep, index_mt);
        routes.insert(
            format!("sha256:{}", sha(&deep)),
            (index_mt.to_string(), Serve::Whole(deep)),
        );
        deep = d;
    }
    routes.insert(
        "deep".to_string(),
        (index_mt.to_string(), Serve::Whole(deep)),
    );
    let fake = Fake::start(routes);
    let root = tempfile::tempdir().unwrap();
    let mut store = Store::open(root.path()).unwrap();
    let opts = PullOptions::default();
    pull(&mut store, &fake.reference("nested"), &opts, &NoProgress).unwrap();
    let err = pull(&mut store, &fake.reference("deep"), &opts, &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("(available: linux/{} ({index_mt}))", host_arch())),
        "{err}"
    );
}
