//! CDI devices end to end: specs in a temp `--cdi-spec-dir` exposing harmless devices
//! (`/dev/null`, a char node made with mknod in a tmpfs), checked from inside a
//! container; spec errors and conflicts; `hull cdi generate --nvidia` on a fake tree
//! (fake nodes, ld cache, driver files) and `--gpus` with the generated spec.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::os::unix::fs::symlink;
use std::path::Path;

use ctr::{text, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/cdi:1";

fn env() -> Env {
    let e = Env::new();
    e.load(
        IMG,
        json!({"Env": ["PATH=/bin", "FOO=image"], "Cmd": ["sh"]}),
    );
    e
}

/// A temp dir on a tmpfs, where mknod works whatever the test dir's filesystem is.
fn shm_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap()
}

fn mknod(p: &Path, major: u32, minor: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; mknod has no other memory effects.
    let r = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// `example.com/dev=null` and `=full` (a node 1:7 made in a tmpfs), with env, a mount,
/// a hook writing the container's state to `hook_out`, and an additional gid.
fn example_spec(devs: &Path, share: &Path, hook_out: &Path) -> String {
    mknod(&devs.join("full"), 1, 7);
    write(&share.join("f"), "shared-from-host\n");
    json!({
        "cdiVersion": "0.6.0",
        "kind": "example.com/dev",
        "containerEdits": {"env": ["SPEC_WIDE=yes"], "additionalGids": [4242]},
        "devices": [
            {"name": "null", "containerEdits": {
                "env": ["FOO=from-cdi"],
                "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/null", "permissions": "rw"}],
                "mounts": [{"hostPath": share, "containerPath": "/cdi-share", "options": ["ro", "bind"]}],
                "hooks": [{"hookName": "createRuntime", "path": "/bin/sh",
                           "args": ["sh", "-c", format!("cat > {}", hook_out.display())]}]}},
            {"name": "full", "containerEdits": {
                "deviceNodes": [{"path": "/dev/cdi-full", "hostPath": devs.join("full")}]}}
        ]
    })
    .to_string()
}

#[test]
fn cdi_devices_seen_from_inside() {
    let e = env();
    let (specs, devs) = (e.work.path().join("cdi"), shm_dir());
    let hook_out = e.work.path().join("hook-state");
    let spec = example_spec(devs.path(), &e.work.path().join("share"), &hook_out);
    write(&specs.join("example.json"), &spec);
    let dir = specs.to_str().unwrap();
    let script = "echo $FOO $SPEC_WIDE; id -G; cat /cdi-share/f; ls -l /dev/cdi-null /dev/cdi-full | \
                  awk '{print $1, $5, $6, $NF}'; echo x > /dev/cdi-null && echo wrote-null; \
                  echo x > /dev/cdi-full 2>/dev/null || echo full-refused; echo y > /cdi-share/g || echo ro";
    let out = e.ok(&[
        "--cdi-spec-dir",
        dir,
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        "example.com/dev=null",
        "--device",
        "example.com/dev=full",
        IMG,
        "sh",
        "-c",
        script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-cdi yes", "{out}");
    assert!(lines[1].split(' ').any(|g| g == "4242"), "{out}");
    assert_eq!(lines[2], "shared-from-host", "{out}");
    // ls sorts: cdi-full (mknod'd here, under our umask) before cdi-null.
    assert!(
        lines[3].starts_with("crw") && lines[3].ends_with("1, 7 /dev/cdi-full"),
        "{out}"
    );
    assert_eq!(lines[4], "crw-rw-rw- 1, 3 /dev/cdi-null", "{out}");
    assert_eq!(&lines[5..], ["wrote-null", "full-refused", "ro"], "{out}");
    // The createRuntime hook ran on the host with the container's state on stdin.
    let state: Value = serde_json::from_slice(&std::fs::read(&hook_out).unwrap()).unwrap();
    assert!(
        state["id"].as_str().is_some_and(|i| !i.is_empty()),
        "{state}"
    );
    // The environment names the spec dirs as well as the flag; inspect shows the request.
    let id = e
        .cmd(&[
            "create",
            "--network",
            "none",
            "--device",
            "example.com/dev=null",
            IMG,
        ])
        .env("HULL_CDI_SPEC_DIRS", dir)
        .output()
        .unwrap();
    let id = ctr::ok(&id).trim().to_string();
    let v: Value = serde_json::from_str(&e.ok(&["inspect", &id])).unwrap();
    let req = &v[0]["HostConfig"]["DeviceRequests"];
    assert_eq!(
        req,
        &json!([{"Driver": "cdi", "Count": 0, "DeviceIDs": ["example.com/dev=null"],
        "Capabilities": null, "Options": {}}]),
        "{v}"
    );
    e.ok(&["rm", &id]);
    // A plain path is still a plain device.
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        "/dev/null:/dev/plain",
        IMG,
        "ls",
        "/dev/plain",
    ]);
    assert_eq!(out, "/dev/plain\n");
    e.assert_clean();
}

/// Fails with status 125, stderr containing each of `want`, and nothing left behind.
fn fails(e: &Env, dir: &Path, args: &[&str], want: &[&str]) {
    let mut all = vec![
        "--cdi-spec-dir",
        dir.to_str().unwrap(),
        "run",
        "--rm",
        "--network",
        "none",
    ];
    all.extend(args);
    all.extend([IMG, "true"]);
    let o = e.hull(&all);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{out}{err}");
    for w in want {
        assert!(err.contains(w), "want {w:?} in: {err}");
    }
    e.assert_clean();
}

#[test]
fn spec_errors_and_conflicts() {
    let e = env();
    let devs = shm_dir();
    let hook_out = e.work.path().join("hook-state");
    let good = example_spec(devs.path(), &e.work.path().join("share"), &hook_out);
    let d = |n: &str| e.work.path().join(n);
    write(&d("version/a.json"), &good.replace("0.6.0", "7.0.0"));
    fails(
        &e,
        &d("version"),
        &["--device", "example.com/dev=null"],
        &["version/a.json", "cdiVersion", "7.0.0"],
    );
    write(
        &d("field/a.json"),
        &good.replace("\"hostPath\":\"/dev/null\"", "\"hostPath\":7"),
    );
    fails(
        &e,
        &d("field"),
        &["--device", "example.com/dev=null"],
        &[
            "field/a.json",
            "devices[0].containerEdits.deviceNodes[0].hostPath",
        ],
    );
    write(
        &d("name/a.json"),
        &good.replace("\"name\":\"full\"", "\"name\":\"fu ll\""),
    );
    fails(
        &e,
        &d("name"),
        &["--device", "example.com/dev=null"],
        &["name/a.json", "devices[1].name"],
    );
    write(
        &d("kind/a.yaml"),
        "cdiVersion: 0.5.0\nkind: nokind\ndevices: [{name: a, containerEdits: {env: [A=1]}}]\n",
    );
    fails(
        &e,
        &d("kind"),
        &["--device", "example.com/dev=null"],
        &["kind/a.yaml", "kind"],
    );
    // Two devices: one path, two different nodes; one mount point, two sources.
    write(&d("conflict/a.json"), &good);
    let other = json!({"cdiVersion": "0.5.0", "kind": "other.com/dev", "devices": [
        {"name": "n", "containerEdits": {"deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/zero"}]}},
        {"name": "m", "containerEdits": {"mounts": [{"hostPath": "/etc", "containerPath": "/cdi-share"}]}}]});
    write(&d("conflict/b.json"), &other.to_string());
    let both = ["conflict/a.json", "conflict/b.json"];
    fails(
        &e,
        &d("conflict"),
        &[
            "--device",
            "example.com/dev=null",
            "--device",
            "other.com/dev=n",
        ],
        &["device node /dev/cdi-null", both[0], both[1]],
    );
    fails(
        &e,
        &d("conflict"),
        &[
            "--device",
            "example.com/dev=null",
            "--device",
            "other.com/dev=m",
        ],
        &["mount /cdi-share", both[0], both[1]],
    );
    fails(
        &e,
        &d("conflict"),
        &["--device", "example.com/dev=nope"],
        &["unresolvable CDI device example.com/dev=nope"],
    );
    fails(
        &e,
        &d("conflict"),
        &["--device", "example.com/dev="],
        &["invalid CDI device name"],
    );
    fails(
        &e,
        &d("conflict"),
        &["--gpus", "2"],
        &["--gpus 2", "hull cdi generate --nvidia"],
    );
    assert!(
        !hook_out.exists(),
        "a hook ran for a container that was never made"
    );
}

/// A host as the NVIDIA driver leaves it, under `r`.
fn fake_nvidia_host(r: &Path) {
    for (n, minor) in [("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)] {
        mknod(&r.join("dev").join(n), 195, minor);
    }
    mknod(&r.join("dev/nvidia-uvm"), 511, 0);
    mknod(&r.join("dev/nvidia-caps/nvidia-cap1"), 237, 1);
    for (bus, minor, uuid) in [
        ("0000:07:00.0", 0, "GPU-aaaa"),
        ("0000:0f:00.0", 1, "GPU-bbbb"),
    ] {
        let info = format!("Model: \t\t NVIDIA H200\nGPU UUID: \t {uuid}\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n");
        write(
            &r.join("proc/driver/nvidia/gpus")
                .join(bus)
                .join("information"),
            &info,
        );
    }
    write(
        &r.join("proc/driver/nvidia/version"),
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n",
    );
    let lib = r.join("usr/lib/x86_64-linux-gnu");
    write(&lib.join("libcuda.so.550.54.14"), "fake cuda\n");
    symlink("libcuda.so.550.54.14", lib.join("libcuda.so.1")).unwrap();
    write(&lib.join("libnvidia-ml.so.550.54.14"), "fake nvml\n");
    symlink("libnvidia-ml.so.550.54.14", lib.join("libnvidia-ml.so.1")).unwrap();
    write(&lib.join("libz.so.1"), "not nvidia\n");
    let cache = hull_cdi::ldcache::build(&[
        ("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        (
            "libnvidia-ml.so.1",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        ),
        ("libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"),
    ]);
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/ld.so.cache"), cache).unwrap();
    write(
        &r.join("usr/local/nvidia/lib64/libnvidia-encode.so.550.54.14"),
        "fake enc\n",
    );
    write(&r.join("usr/bin/nvidia-smi"), "#!/bin/sh\necho fake smi\n");
    std::fs::set_permissions(
        r.join("usr/bin/nvidia-smi"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    write(&r.join("lib/firmware/nvidia/550.54.14/gsp.bin"), "fw\n");
    write(&r.join("run/nvidia-persistenced/socket"), "");
}

#[test]
fn generate_nvidia_on_a_fake_host_and_use_it() {
    let e = env();
    let root = shm_dir();
    let r = root.path();
    fake_nvidia_host(r);
    let specs = e.work.path().join("cdi");
    let out = specs.join("nvidia.json");
    e.ok(&[
        "cdi",
        "generate",
        "--nvidia",
        "--root",
        r.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let spec: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        (spec["kind"].as_str(), spec["cdiVersion"].as_str()),
        (Some("nvidia.com/gpu"), Some("0.5.0"))
    );
    let names: Vec<&str> = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["0", "GPU-aaaa", "1", "GPU-bbbb", "all"]);
    let host = |p: &str| format!("{}{p}", r.display());
    assert_eq!(
        spec["devices"][3]["containerEdits"]["deviceNodes"],
        json!([{"path": "/dev/nvidia1", "hostPath": host("/dev/nvidia1")}])
    );
    let global: Vec<&str> = spec["containerEdits"]["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        global,
        [
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/nvidia-caps/nvidia-cap1"
        ]
    );
    let mounts: Vec<(String, String)> = spec["containerEdits"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["containerPath"].as_str().unwrap().into(),
                m["hostPath"].as_str().unwrap().into(),
            )
        })
        .collect();
    let lib = "/usr/lib/x86_64-linux-gnu";
    let want: Vec<(String, String)> = [
        "/lib/firmware/nvidia/550.54.14",
        "/run/nvidia-persistenced/socket",
        "/usr/bin/nvidia-smi",
        &format!("{lib}/libcuda.so.1"),
        &format!("{lib}/libcuda.so.550.54.14"),
        &format!("{lib}/libnvidia-ml.so.1"),
        &format!("{lib}/libnvidia-ml.so.550.54.14"),
        "/usr/local/nvidia/lib64/libnvidia-encode.so.550.54.14",
    ]
    .iter()
    .map(|p| (p.to_string(), host(p)))
    .collect();
    assert_eq!(mounts, want);
    assert_eq!(
        spec["containerEdits"]["mounts"][2]["options"],
        json!(["ro", "nosuid", "nodev", "bind"])
    );
    // YAML to stdout by default.
    let yaml = e.ok(&["cdi", "generate", "--nvidia", "--root", r.to_str().unwrap()]);
    assert!(
        yaml.contains("kind: nvidia.com/gpu") && yaml.contains("cdiVersion: 0.5.0"),
        "{yaml}"
    );
    let dir = specs.to_str().unwrap();
    let list = e.ok(&["--cdi-spec-dir", dir, "cdi", "list"]);
    assert_eq!(list, "nvidia.com/gpu=0\nnvidia.com/gpu=1\nnvidia.com/gpu=GPU-aaaa\nnvidia.com/gpu=GPU-bbbb\nnvidia.com/gpu=all\n");
    // --gpus with that spec: the nodes and the driver's files show up in the container.
    let script = "ls /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl 2>&1 | sort; cat /usr/lib/x86_64-linux-gnu/libcuda.so.1; /usr/bin/nvidia-smi";
    let run = |gpus: &str| {
        e.ok(&[
            "--cdi-spec-dir",
            dir,
            "run",
            "--rm",
            "--network",
            "none",
            "--gpus",
            gpus,
            IMG,
            "sh",
            "-c",
            script,
        ])
    };
    let out = run("1");
    assert!(
        out.contains("/dev/nvidia0\n")
            && out.contains("nvidia1: No such file")
            && out.contains("/dev/nvidiactl\n"),
        "{out}"
    );
    assert!(out.ends_with("fake cuda\nfake smi\n"), "{out}");
    let out = run("\"device=GPU-bbbb\"");
    assert!(
        out.contains("nvidia0: No such file") && out.contains("/dev/nvidia1\n"),
        "{out}"
    );
    let out = run("all");
    assert!(out.contains("/dev/nvidia0\n/dev/nvidia1\n"), "{out}");
    e.assert_clean();
    // No GPUs: a clear error.
    let empty = shm_dir();
    let o = e.hull(&[
        "cdi",
        "generate",
        "--nvidia",
        "--root",
        empty.path().to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text(&o).1.contains("no NVIDIA GPUs found"),
        "{:?}",
        text(&o)
    );
}
