//! `hull push`, `login`, `logout` against Debian's docker-registry on loopback, checked with
//! skopeo (inspect and copy of what hull pushed) and pulls into fresh roots.
#![allow(clippy::unwrap_used)]

#[path = "../../hull-image/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::Result;
use common::{free_port, push, run, Comp, Layer, Layout, Registry};

fn hull_env(root: &Path, envs: &[(&str, &Path)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hull"))
        .arg("--root")
        .arg(root)
        .args(args)
        // Keep the developer's own login files out of the tests.
        .env("HOME", root)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("run hull")
}

fn hull(root: &Path, args: &[&str]) -> Output {
    hull_env(root, &[], args)
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "hull failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: Output) -> String {
    assert_eq!(o.status.code(), Some(125), "expected failure: {o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The manifest digest in hull push's `REF: digest: sha256:... size: N` line.
fn pushed_digest(out: &str) -> String {
    out.split("digest: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {out:?}"))
        .to_string()
}

fn skopeo_digest(reference: &str, extra: &[&str]) -> Result<String> {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}")))?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["Digest"].as_str().unwrap_or_default().to_string())
}

fn image_id(root: &Path, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(hull(root, &["image", "inspect", name]))).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

fn two_layer_layout(dir: &Path, tag: &str) -> Result<Layout> {
    let mut layout = Layout::new(&dir.join("layout"));
    let m = layout.image(
        vec![
            (Comp::Gzip, Layer::new().busybox().tar()),
            (
                Comp::Zstd,
                Layer::new().dir("etc/").file("etc/motd", b"pushed\n").tar(),
            ),
        ],
        "amd64",
    );
    layout.finish(vec![m], tag)?;
    Ok(layout)
}

#[test]
fn push_then_pull_and_skopeo_see_the_same_image() -> Result<()> {
    let reg = Registry::start(None)?;
    let dir = tempfile::tempdir()?;
    let layout = two_layer_layout(dir.path(), "v1")?;
    let src = format!("{}/src:v1", reg.host());
    push(&layout.dir, "v1", &src, false, None)?;
    let root = tempfile::tempdir()?;
    let r = root.path();
    let id = ok(hull(r, &["pull", &src]));

    // To another repository of the same registry: the blobs are mounted from `src`.
    let dst = format!("{}/dst:v2", reg.host());
    let o = hull(r, &["push", &src, &format!("docker://{dst}")]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let digest = pushed_digest(&ok(o));
    assert!(
        stderr.contains("0 blobs uploaded, 0 already there, 3 mounted"),
        "{stderr}"
    );
    assert_eq!(skopeo_digest(&dst, &[])?, digest);
    assert_eq!(
        skopeo_digest(&src, &[])?,
        digest,
        "pushed bytes differ from the source"
    );

    // skopeo copies what hull pushed; the manifest digest stays.
    let oci = dir.path().join("copy");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{dst}"))
        .arg(format!("oci:{}:x", oci.display())))?;
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(oci.join("index.json"))?)?;
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(digest.as_str())
    );

    // A fresh root pulls the same image; a second push finds every blob there (HEAD).
    let fresh = tempfile::tempdir()?;
    assert_eq!(ok(hull(fresh.path(), &["pull", &dst])), id);
    let again = hull(r, &["push", &src, &dst]);
    let stderr = String::from_utf8_lossy(&again.stderr).into_owned();
    assert_eq!(pushed_digest(&ok(again)), digest);
    assert!(
        stderr.contains("0 blobs uploaded, 3 already there"),
        "{stderr}"
    );
    // The pushed name is recorded as a digest of the image.
    let v: serde_json::Value = serde_json::from_str(&ok(hull(r, &["image", "inspect", &src])))?;
    let digests = v[0]["RepoDigests"].to_string();
    assert!(
        digests.contains(&format!("{}/dst@{digest}", reg.host())),
        "{digests}"
    );
    Ok(())
}

#[test]
fn push_of_a_local_image_uploads_monolithic_and_chunked() -> Result<()> {
    let reg = Registry::start(None)?;
    let dir = tempfile::tempdir()?;
    let root = tempfile::tempdir()?;
    let r = root.path();
    let tar = dir.path().join("rootfs.tar");
    std::fs::write(
        &tar,
        Layer::new()
            .busybox()
            .dir("srv/")
            .file("srv/data", &vec![7u8; 300_000])
            .tar(),
    )?;
    let name = format!("{}/local/app:1", reg.host());
    ok(hull(
        r,
        &[
            "import",
            tar.to_str().unwrap(),
            &name,
            "-c",
            "CMD [\"/bin/sh\"]",
        ],
    ));
    // Monolithic (one PUT per blob).
    let o = hull(r, &["push", &name]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let digest = pushed_digest(&ok(o));
    assert!(stderr.contains("2 blobs uploaded"), "{stderr}");
    assert_eq!(skopeo_digest(&name, &[])?, digest);
    // Chunked (PATCH per 64 KiB, then PUT) into a repository that has nothing yet.
    let chunked = format!("{}/chunked:1", reg.host());
    let o = hull(r, &["push", "--chunk-size", "64K", &name, &chunked]);
    assert_eq!(pushed_digest(&ok(o)), digest);
    assert_eq!(skopeo_digest(&chunked, &[])?, digest);
    let fresh = tempfile::tempdir()?;
    ok(hull(fresh.path(), &["pull", &chunked]));
    assert_eq!(image_id(fresh.path(), &chunked), image_id(r, &name));
    let mnt = ok(hull(fresh.path(), &["image", "mount", &chunked]));
    let data = std::fs::read(Path::new(mnt.trim()).join("srv/data"))?;
    assert_eq!(data, vec![7u8; 300_000]);
    ok(hull(fresh.path(), &["image", "unmount", &chunked]));

    // Bad input names the argument; an unreachable registry says so.
    let e = err(hull(r, &["push", "nothere:1", &chunked]));
    assert!(e.contains("nothere"), "{e}");
    let e = err(hull(r, &["push", "--chunk-size", "0", &name, &chunked]));
    assert!(e.contains("--chunk-size"), "{e}");
    let gone = format!("127.0.0.1:{}/x:1", free_port());
    let e = err(hull(r, &["push", &name, &gone]));
    assert!(e.contains("cannot reach registry"), "{e}");
    Ok(())
}

#[test]
fn login_then_push_and_pull_through_htpasswd() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let htpasswd = dir.path().join("htpasswd");
    run(Command::new("htpasswd")
        .arg("-Bbc")
        .arg(&htpasswd)
        .args(["alice", "wonder"]))?;
    let auth = format!(
        "  htpasswd:\n    realm: hull-test\n    path: {}\n",
        htpasswd.display()
    );
    let open = Registry::start(None)?;
    let reg = Registry::start(Some(&auth))?;
    let layout = two_layer_layout(dir.path(), "v1")?;
    let src = format!("{}/src:v1", open.host());
    push(&layout.dir, "v1", &src, false, None)?;
    let root = tempfile::tempdir()?;
    let r = root.path();
    ok(hull(r, &["pull", &src]));
    let dest = format!("{}/private:v1", reg.host());

    // Unauthorised: the registry's reason comes back.
    let e = err(hull(r, &["push", &src, &dest]));
    assert!(e.contains("credentials required"), "{e}");
    let authfile = dir.path().join("auth.json");
    let af = authfile.to_str().unwrap();
    let e = err(hull(
        r,
        &[
            "login",
            "-u",
            "alice",
            "-p",
            "nope",
            "--authfile",
            af,
            &reg.host(),
        ],
    ));
    assert!(e.contains("401") && e.contains("UNAUTHORIZED"), "{e}");
    assert!(!authfile.exists(), "a failed login wrote the auth file");

    ok(hull(
        r,
        &[
            "login",
            "-u",
            "alice",
            "-p",
            "wonder",
            "--authfile",
            af,
            &reg.host(),
        ],
    ));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&authfile)?)?;
    assert!(v["auths"][reg.host()]["auth"].is_string(), "{v}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&authfile)?.permissions().mode() & 0o777,
        0o600
    );
    let digest = pushed_digest(&ok(hull(r, &["push", "--authfile", af, &src, &dest])));
    // skopeo reads the same file.
    assert_eq!(skopeo_digest(&dest, &["--authfile", af])?, digest);
    let fresh = tempfile::tempdir()?;
    ok(hull(fresh.path(), &["pull", "--authfile", af, &dest]));

    // Without --authfile: login writes, and pull/push read, $REGISTRY_AUTH_FILE.
    let envfile = dir.path().join("env-auth.json");
    let env = [("REGISTRY_AUTH_FILE", envfile.as_path())];
    ok(hull_env(
        r,
        &env,
        &["login", "-u", "alice", "-p", "wonder", &reg.host()],
    ));
    let fresh2 = tempfile::tempdir()?;
    ok(hull_env(fresh2.path(), &env, &["pull", &dest]));
    ok(hull_env(r, &env, &["logout", &reg.host()]));
    let e = err(hull_env(fresh2.path(), &env, &["pull", &dest]));
    assert!(e.contains("credentials required"), "{e}");
    let e = err(hull_env(r, &env, &["logout", &reg.host()]));
    assert!(e.contains("not logged in"), "{e}");
    Ok(())
}

/// Writes an executable `docker-credential-NAME` into `bin` that logs its argument and
/// stdin to `bin/log` and knows alice's password for `host` only.
fn fake_helper(bin: &Path, name: &str, host: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).unwrap();
    let p = bin.join(format!("docker-credential-{name}"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nserver=$(cat)\necho \"$1 $server\" >> {log}\n\
             if [ \"$1 $server\" = \"get {host}\" ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"wonder\"}}' \"$server\"\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            log = bin.join("log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_helpers_for_push_and_pull() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let htpasswd = dir.path().join("htpasswd");
    run(Command::new("htpasswd")
        .arg("-Bbc")
        .arg(&htpasswd)
        .args(["alice", "wonder"]))?;
    let auth = format!(
        "  htpasswd:\n    realm: hull-test\n    path: {}\n",
        htpasswd.display()
    );
    let open = Registry::start(None)?;
    let reg = Registry::start(Some(&auth))?;
    let layout = two_layer_layout(dir.path(), "v1")?;
    let src = format!("{}/src:v1", open.host());
    push(&layout.dir, "v1", &src, false, None)?;
    let root = tempfile::tempdir()?;
    let r = root.path();
    ok(hull(r, &["pull", &src]));
    let dest = format!("{}/helped:v1", reg.host());

    let bin = dir.path().join("bin");
    fake_helper(&bin, "hulltest", &reg.host());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker)?;
    let config = docker.join("config.json");
    let env = [
        ("PATH", Path::new(&path)),
        ("DOCKER_CONFIG", docker.as_path()),
    ];
    // credHelpers: the registry's own helper.
    std::fs::write(
        &config,
        serde_json::json!({"credHelpers": {reg.host(): "hulltest"}}).to_string(),
    )?;
    let digest = pushed_digest(&ok(hull_env(r, &env, &["push", &src, &dest])));
    let log = std::fs::read_to_string(bin.join("log"))?;
    assert!(log.contains(&format!("get {}", reg.host())), "{log}");
    let fresh = tempfile::tempdir()?;
    ok(hull_env(fresh.path(), &env, &["pull", &dest]));
    assert_eq!(image_id(fresh.path(), &dest), image_id(r, &src));

    // credsStore: the helper for all, behind the empty entry docker leaves in `auths`.
    std::fs::write(
        &config,
        serde_json::json!({"auths": {reg.host(): {}}, "credsStore": "hulltest"}).to_string(),
    )?;
    let fresh = tempfile::tempdir()?;
    ok(hull_env(fresh.path(), &env, &["pull", &dest]));
    assert_eq!(skopeo_digest(&dest, &["--creds", "alice:wonder"])?, digest);

    // A helper without credentials for the registry: the registry's refusal.
    fake_helper(&bin, "other", "elsewhere:1");
    std::fs::write(
        &config,
        serde_json::json!({"credHelpers": {reg.host(): "other"}}).to_string(),
    )?;
    let e = err(hull_env(r, &env, &["push", &src, &dest]));
    assert!(e.contains("credentials required"), "{e}");
    // A helper that is not installed, in a file named with --authfile: an error naming it.
    std::fs::write(
        &config,
        serde_json::json!({"credHelpers": {reg.host(): "absent"}}).to_string(),
    )?;
    let e = err(hull_env(
        r,
        &env,
        &["push", "--authfile", config.to_str().unwrap(), &src, &dest],
    ));
    assert!(e.contains("docker-credential-absent"), "{e}");
    Ok(())
}

/// base64 (RFC 4648), `url`: the URL alphabet without padding (JWT).
fn b64(data: &[u8], url: bool) -> String {
    let abc: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(abc[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - c.len()));
        }
    }
    out
}

/// A token server after distribution's token spec: GET /token?service=..&scope=.. with
/// alice's basic credentials answers a JWT (RS256, the signing certificate in `x5c`, which
/// docker-registry checks against its `rootcertbundle`) granting the actions asked for.
/// Every query it gets is kept in `seen`.
struct TokenServer {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn token_for(dir: &Path, query: &str) -> Result<String> {
    let der = std::fs::read(dir.join("cert.der"))?;
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [b64(&der, false)]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(pct_decode)
        .filter_map(|scope| {
            let mut p = scope.split(':');
            let (kind, name, actions) = (p.next()?, p.next()?, p.next()?);
            Some(serde_json::json!({"type": kind, "name": name,
                "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let claims = serde_json::json!({
        "iss": "hull-test-issuer", "sub": "alice", "aud": "hull-test",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", query.len()),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes(), true),
        b64(claims.to_string().as_bytes(), true)
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes())?;
    let sig = child.wait_with_output()?;
    anyhow::ensure!(sig.status.success(), "openssl dgst failed");
    Ok(format!("{input}.{}", b64(&sig.stdout, true)))
}

fn token_server(dir: &Path) -> Result<TokenServer> {
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=hull-test-token"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem")))?;
    run(Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(dir.join("cert.pem"))
        .arg("-out")
        .arg(dir.join("cert.der")))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen2, stop2, dir) = (seen.clone(), stop.clone(), dir.to_path_buf());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let Ok(mut c) = conn else { continue };
            let Ok(head) = common::read_head(&mut c) else {
                continue;
            };
            let target = head.split(' ').nth(1).unwrap_or("").to_string();
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
            seen2.lock().unwrap().push(query.to_string());
            let authorised = head.lines().any(|l| {
                l.to_ascii_lowercase().starts_with("authorization:")
                    && l[14..].trim() == format!("Basic {}", b64(b"alice:wonder", false))
            });
            let (status, body) = match (authorised, token_for(&dir, query)) {
                (true, Ok(t)) => ("200 OK", serde_json::json!({"token": t}).to_string()),
                _ => (
                    "401 Unauthorized",
                    r#"{"details":"bad credentials"}"#.to_string(),
                ),
            };
            let _ = std::io::Write::write_all(
                &mut c,
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    Ok(TokenServer { port, seen, stop })
}

#[test]
fn push_with_token_auth() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = token_server(dir.path())?;
    let auth = format!(
        "  token:\n    realm: http://127.0.0.1:{}/token\n    service: hull-test\n    \
         issuer: hull-test-issuer\n    rootcertbundle: {}\n",
        tokens.port,
        dir.path().join("cert.pem").display()
    );
    let open = Registry::start(None)?;
    let reg = Registry::start(Some(&auth))?;
    let layout = two_layer_layout(dir.path(), "v1")?;
    let src = format!("{}/src:v1", open.host());
    push(&layout.dir, "v1", &src, false, None)?;
    let root = tempfile::tempdir()?;
    let r = root.path();
    ok(hull(r, &["pull", &src]));
    let dest = format!("{}/team/tokpush:v1", reg.host());

    let e = err(hull(r, &["push", "--creds", "alice:nope", &src, &dest]));
    assert!(e.contains("401"), "{e}");
    let digest = pushed_digest(&ok(hull(
        r,
        &["push", "--creds", "alice:wonder", &src, &dest],
    )));
    let seen = tokens.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|q| q.contains("service=hull-test")
            && pct_decode(q).contains("scope=repository:team/tokpush:pull,push")),
        "token requests: {seen:?}"
    );
    // What hull pushed through the token-guarded registry is what skopeo and a pull see.
    assert_eq!(skopeo_digest(&dest, &["--creds", "alice:wonder"])?, digest);
    let fresh = tempfile::tempdir()?;
    ok(hull(
        fresh.path(),
        &["pull", "--creds", "alice:wonder", &dest],
    ));
    assert_eq!(image_id(fresh.path(), &dest), image_id(r, &src));
    // A second push: every blob is there (HEAD with the token), only the manifest goes.
    let out = hull(r, &["push", "--creds", "alice:wonder", &src, &dest]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(stderr.contains("0 blobs uploaded"), "{stderr}");
    Ok(())
}
