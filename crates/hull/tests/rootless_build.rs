//! Rootless `hull build` and `hull push` (issue 22: "build and push ... as for root"): a real
//! unprivileged user (as in rootless.rs) builds from the registry's test image with COPY, a
//! RUN that chowns to uid 1000 and deletes a lower layer's file, and USER; runs the result;
//! pushes it to the local registry, where skopeo reads it back. Must run as root (to make the
//! user); needs uidmap, docker-registry and skopeo.
#![allow(clippy::unwrap_used)]

#[path = "../../hull-image/tests/common/mod.rs"]
mod common;

#[allow(dead_code)]
mod rootless_env;

use std::process::Command;

use rootless_env::{registry_image, sh, skip_unless_root, User};

#[test]
fn ordinary_user_builds_runs_and_pushes() {
    if skip_unless_root() {
        return;
    }
    let u = User::new(true);
    let (reg, img, _layout) = registry_image();
    u.ok(&["pull", &img]);

    // The context belongs to the user, as it would in their home.
    let ctx = u.home.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hi\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {img}\nCOPY hello.txt /srv/hello.txt\n\
             RUN echo built > /srv/built && chown 1000:1000 /srv/built && rm /home/u/notes\n\
             USER 1000\nCMD [\"cat\", \"/srv/built\"]\n"
        ),
    )
    .unwrap();
    let uid = u.uid.to_string();
    assert!(sh(Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(&ctx))
    .status
    .success());
    let ctx_s = ctx.to_str().unwrap();
    u.ok(&["build", "--network", "none", "-t", "localbuilt:1", ctx_s]);

    // From inside: the COPY, the RUN's owner (uid 1000 through the subordinate range), the
    // deletion (a whiteout over the base layer), USER and CMD.
    let script = "stat -c '%u %n' /srv/built; cat /srv/hello.txt; id -u; ls /home/u | wc -l";
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localbuilt:1",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out, "1000 /srv/built\nhi\n1000\n0\n");
    let out = u.ok(&["run", "--rm", "--network", "none", "localbuilt:1"]);
    assert_eq!(out, "built\n");

    // Pushed to the registry: skopeo sees the base's two layers plus COPY and RUN, and USER.
    let dst = format!("{}/rootless/built:1", reg.host());
    u.ok(&["push", "localbuilt:1", &dst]);
    let skopeo = |extra: &[&str]| {
        let o = sh(Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{dst}")));
        assert!(o.status.success(), "skopeo inspect {dst}: {o:?}");
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    assert_eq!(skopeo(&[])["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(skopeo(&["--config"])["config"]["User"], "1000");

    u.ok(&["system", "reset", "--force"]);
    assert!(u.processes_after_exit().is_empty(), "{:?}", u.processes());
}
