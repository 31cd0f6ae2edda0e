//! Images through `hull system service` with the docker 20.10 client: push to and pull
//! from Debian's docker-registry on loopback, tag, history, rmi, save/load, build, prune.
#![allow(clippy::unwrap_used)]

mod apisvc;
#[path = "../../hull-image/tests/common/mod.rs"]
mod common;
mod ctr;

use apisvc::{env, net_lock, start, IMG};

#[test]
fn docker_push_pull_tag_rmi_through_a_local_registry() {
    let _l = net_lock();
    let reg = common::Registry::start(None).unwrap();
    let e = env();
    let s = start(&e, "0");
    let remote = format!("{}/team/app:1", reg.host());
    s.ok(&["tag", IMG, &remote]);
    let images = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == remote), "{images}");
    let out = s.ok(&["push", &remote]);
    assert!(out.contains("digest: sha256:"), "{out}");
    let hist = s.ok(&["history", "--format", "{{.ID}}", IMG]);
    assert!(!hist.trim().is_empty(), "{hist}");
    // rmi of one of two names only untags.
    let out = s.ok(&["rmi", &remote]);
    assert!(out.contains(&format!("Untagged: {remote}")), "{out}");
    assert!(s.ok(&["image", "inspect", IMG]).contains("Id"));
    let o = s.run(&["rmi", &remote]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such image"),
        "{o:?}"
    );

    // A second root pulls it back and runs it; hull sees the same image.
    let e2 = env();
    let s2 = start(&e2, "0");
    let out = s2.ok(&["pull", &remote]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(
        s2.ok(&["run", "--rm", &remote, "echo", "pulled"]),
        "pulled\n"
    );
    assert!(e2.ok(&["images"]).contains("team/app"));
    // A pull of what the registry lacks fails with its reason.
    let o = s2.run(&["pull", &format!("{}/team/nothing:1", reg.host())]);
    assert!(!o.status.success(), "{o:?}");
    drop((s, s2));
    e.assert_clean();
    e2.assert_clean();
}

#[test]
fn docker_save_load_build_and_prune() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let tar = e.work.path().join("img.tar");
    s.ok(&["save", "-o", tar.to_str().unwrap(), IMG]);
    assert!(std::fs::metadata(&tar).unwrap().len() > 1024);
    s.ok(&["rmi", IMG]);
    let out = s.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image: {IMG}")), "{out}");

    let ctx = e.work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("msg"), "from the context\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMG}\nCOPY msg /msg\nRUN cp /msg /copy\nCMD [\"cat\", \"/copy\"]\n"),
    )
    .unwrap();
    let out = s.ok(&["build", "-t", "built:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    assert_eq!(s.ok(&["run", "--rm", "built:1"]), "from the context\n");
    // A failing step fails the client with the step's error.
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {IMG}\nRUN exit 7\n")).unwrap();
    let o = s.run(&["build", ctx.to_str().unwrap()]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("non-zero code: 7"),
        "{o:?}"
    );

    // The untagged image of `built:1` once the tag moves is dangling: prune takes it.
    s.ok(&["tag", IMG, "built:1"]);
    let out = s.ok(&["image", "prune", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    let out = s.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    drop(s);
    e.assert_clean();
}
