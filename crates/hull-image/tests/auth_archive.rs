#![allow(clippy::unwrap_used)]
//! Registry authentication (htpasswd basic auth, bearer tokens through a
//! loopback gate) and save/load round trips cross-checked with skopeo.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use common::{push, read_head, run, Comp, Layer, Layout, Registry};
use hull_image::{archive, pull, Credentials, NoProgress, PullOptions, RegistryOptions, Store};

fn small_image(tag: &str) -> Result<(tempfile::TempDir, Layout)> {
    let dir = tempfile::tempdir()?;
    let mut layout = Layout::new(&dir.path().join("layout"));
    let m = layout.image(
        vec![
            (Comp::Gzip, Layer::new().busybox().tar()),
            (
                Comp::None,
                Layer::new().dir("etc/").file("etc/motd", b"hello\n").tar(),
            ),
        ],
        "amd64",
    );
    layout.finish(vec![m], tag)?;
    Ok((dir, layout))
}

fn opts(creds: Option<&str>) -> PullOptions {
    PullOptions {
        registry: RegistryOptions {
            tls_verify: true,
            credentials: creds.map(|c| c.parse::<Credentials>().expect("creds")),
        },
        ..Default::default()
    }
}

#[test]
fn basic_auth_with_htpasswd() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let htpasswd = dir.path().join("htpasswd");
    run(Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["alice", "wonder"]))?;
    let auth = format!(
        "  htpasswd:\n    realm: hull-test\n    path: {}\n",
        htpasswd.display()
    );
    let reg = Registry::start(Some(&auth))?;
    let (_d, layout) = small_image("v1")?;
    let name = format!("{}/private:v1", reg.host());
    push(&layout.dir, "v1", &name, false, Some("alice:wonder"))?;
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let e = pull(&mut store, &name, &opts(None), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("credentials required"), "{e}");
    let e = pull(&mut store, &name, &opts(Some("alice:wrong")), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    pull(&mut store, &name, &opts(Some("alice:wonder")), &NoProgress)?;
    // auth.json lookup by registry host.
    let authfile = dir.path().join("auth.json");
    let enc = base64_encode(b"alice:wonder");
    std::fs::write(
        &authfile,
        format!(r#"{{"auths":{{"{}":{{"auth":"{enc}"}}}}}}"#, reg.host()),
    )?;
    let c = hull_image::auth::from_authfile(&authfile, &reg.host())?;
    assert_eq!(c.map(|c| c.username), Some("alice".to_string()));
    Ok(())
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A loopback gate that demands a bearer token (issued by its own /token
/// endpoint against basic credentials) and proxies to the real registry.
fn bearer_gate(upstream: u16, stop: Arc<AtomicBool>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut c) = conn else { continue };
            let _ = serve(&mut c, port, upstream);
        }
    });
    Ok(port)
}

fn serve(c: &mut TcpStream, port: u16, upstream: u16) -> Result<()> {
    let head = read_head(c)?;
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let auth = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .map(|l| l[14..].trim().to_string());
    let reply = |c: &mut TcpStream, status: &str, extra: &str, body: &str| {
        write!(
            c,
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if path.starts_with("/token") {
        let ok = auth.as_deref() == Some(&format!("Basic {}", base64_encode(b"bob:builder")));
        let scoped =
            path.contains("scope=repository%3Atok%3Apull") && path.contains("service=gate");
        if ok && scoped {
            reply(
                c,
                "200 OK",
                "Content-Type: application/json\r\n",
                r#"{"token":"t0k3n"}"#,
            )?;
        } else {
            reply(c, "401 Unauthorized", "", "")?;
        }
        return Ok(());
    }
    if auth.as_deref() != Some("Bearer t0k3n") {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"gate\",scope=\"repository:tok:pull\"\r\nContent-Type: application/json\r\n"
        );
        reply(
            c,
            "401 Unauthorized",
            &challenge,
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        )?;
        return Ok(());
    }
    // Forward the GET without credentials; the upstream closes after it.
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut fwd = String::new();
    for l in head.lines() {
        let lower = l.to_ascii_lowercase();
        if !(lower.starts_with("authorization:")
            || lower.starts_with("connection:")
            || l.is_empty())
        {
            fwd.push_str(l);
            fwd.push_str("\r\n");
        }
    }
    fwd.push_str("Connection: close\r\n\r\n");
    up.write_all(fwd.as_bytes())?;
    std::io::copy(&mut up, c)?;
    Ok(())
}

#[test]
fn bearer_token_auth() -> Result<()> {
    let reg = Registry::start(None)?;
    let (_d, layout) = small_image("v1")?;
    push(
        &layout.dir,
        "v1",
        &format!("{}/tok:v1", reg.host()),
        false,
        None,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let gate = bearer_gate(reg.port, stop.clone())?;
    let name = format!("127.0.0.1:{gate}/tok:v1");
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let e = pull(&mut store, &name, &opts(Some("bob:wrong")), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("token endpoint"), "{e}");
    let r = pull(&mut store, &name, &opts(Some("bob:builder")), &NoProgress)?;
    assert_eq!(r.layers_fetched, 2);
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(("127.0.0.1", gate));
    Ok(())
}

#[test]
fn save_load_round_trip() -> Result<()> {
    let (dir, layout) = small_image("v1")?;
    // An oci-archive built by the test (uncompressed + gzip layers) loads.
    let src = dir.path().join("src.tar");
    layout.archive(&src)?;
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let loaded = archive::load(&mut store, &src, &NoProgress)?;
    assert_eq!(loaded.len(), 1);
    let img = &loaded[0];
    assert_eq!(
        img.layers[1].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    // Save it and let skopeo read the result.
    let out = dir.path().join("saved.tar");
    archive::save(&store, &img.id.to_string(), &out)?;
    let inspect: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["--insecure-policy", "inspect", "--raw"])
        .arg(format!("oci-archive:{}", out.display())))?)?;
    assert_eq!(
        inspect["config"]["digest"].as_str(),
        Some(img.id.to_string().as_str())
    );
    let cfg: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["--insecure-policy", "inspect", "--config"])
        .arg(format!("oci-archive:{}", out.display())))?)?;
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(2));
    // umoci checks the layout itself (blob digests, manifest shape).
    let unpacked = tempfile::tempdir()?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(unpacked.path()))?;
    let stat = run(Command::new("umoci")
        .args(["stat", "--json", "--image"])
        .arg(unpacked.path()))?;
    assert!(stat.contains("history") || stat.starts_with('{'), "{stat}");
    // Round trip into a fresh store gives the same image.
    let root2 = tempfile::tempdir()?;
    let mut store2 = Store::open(root2.path())?;
    let again = archive::load(&mut store2, &out, &NoProgress)?;
    assert_eq!(again[0].id, img.id);
    // docker-archive (as skopeo/docker write it) loads too, with its tag.
    let darch = dir.path().join("docker.tar");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q"])
        .arg(format!("oci-archive:{}", out.display()))
        .arg(format!(
            "docker-archive:{}:example.com/demo:v2",
            darch.display()
        )))?;
    let root3 = tempfile::tempdir()?;
    let mut store3 = Store::open(root3.path())?;
    let d = archive::load(&mut store3, &darch, &NoProgress)?;
    assert_eq!(d[0].config.rootfs.diff_ids, img.config.rootfs.diff_ids);
    assert!(
        d[0].names.iter().any(|n| n == "example.com/demo:v2"),
        "{:?}",
        d[0].names
    );
    let fs = store3.prepare_rootfs("example.com/demo:v2", "c", hull_image::RootfsMode::Overlay)?;
    assert_eq!(std::fs::read(fs.path.join("etc/motd"))?, b"hello\n");
    store3.teardown_rootfs("c")?;
    Ok(())
}

/// A zstd layer goes through the decoder (an OCI archive keeps its media
/// type as built, unlike a registry push, where skopeo may recompress).
#[test]
fn zstd_layer_loads_from_an_archive() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut layout = Layout::new(&dir.path().join("layout"));
    let m = layout.image(
        vec![(
            Comp::Zstd,
            Layer::new()
                .dir("z/")
                .file("z/data", b"from a zstd layer\n")
                .tar(),
        )],
        "amd64",
    );
    layout.finish(vec![m], "z1")?;
    let src = dir.path().join("zstd.tar");
    layout.archive(&src)?;
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let loaded = archive::load(&mut store, &src, &NoProgress)?;
    let layer = &loaded[0].layers[0];
    assert_eq!(
        layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let snap = root.path().join("snapshots").join(layer.chain_id.hex());
    assert_eq!(
        std::fs::read_to_string(snap.join("z/data"))?,
        "from a zstd layer\n"
    );
    Ok(())
}
