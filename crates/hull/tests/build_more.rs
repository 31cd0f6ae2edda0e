//! `hull build` beyond the main Dockerfile (root): HEALTHCHECK seen through `hull inspect`
//! and a registry round trip, ONBUILD triggers, COPY through symlinks of the image (against
//! podman build), and the step cache against `hull image prune`.
#![allow(clippy::unwrap_used)]

mod bld;
#[path = "../../hull-image/tests/common/mod.rs"]
mod common;
mod ctr;

use std::path::{Path, PathBuf};
use std::process::Command;

use bld::hull_build;
use ctr::{text, Env};

fn write_ctx(dir: &Path, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let c = dir.join(name);
    for (p, data) in files {
        let f = c.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, data).unwrap();
    }
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("Dockerfile"), dockerfile).unwrap();
    c
}

fn build_ok(e: &Env, ctx: &Path, extra: &[&str]) -> String {
    let o = hull_build(e, ctx, extra);
    let (out, err) = text(&o);
    assert!(o.status.success(), "hull build failed:\n{out}{err}");
    out
}

fn inspect(e: &Env, name: &str) -> serde_json::Value {
    serde_json::from_str(&e.ok(&["inspect", name])).unwrap()
}

/// docker's `Config.Healthcheck`: durations in nanoseconds.
fn expected_healthcheck() -> serde_json::Value {
    serde_json::json!({
        "Test": ["CMD", "/bin/check", "x"],
        "Interval": 5_000_000_000_i64,
        "Timeout": 3_000_000_000_i64,
        "StartPeriod": 2_000_000_000_i64,
        "Retries": 4,
    })
}

#[test]
fn healthcheck_in_inspect_and_through_a_registry() {
    let e = Env::new();
    let ctx = write_ctx(
        e.work.path(),
        "hc",
        "FROM scratch\nCOPY a.txt /a.txt\n\
         HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=4 \
         CMD [\"/bin/check\", \"x\"]\n",
        &[("a.txt", "a\n")],
    );
    build_ok(&e, &ctx, &["-t", "hull.test/hc:1"]);
    // `hull inspect` falls back to images as docker's does; both show the field.
    let v = inspect(&e, "hull.test/hc:1");
    assert_eq!(v[0]["Config"]["Healthcheck"], expected_healthcheck(), "{v}");
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["image", "inspect", "hull.test/hc:1"])).unwrap();
    assert_eq!(v[0]["Config"]["Healthcheck"], expected_healthcheck(), "{v}");

    let reg = common::Registry::start(None).unwrap();
    let dest = format!("{}/hc:1", reg.host());
    e.ok(&["push", "--tls-verify=false", "hull.test/hc:1", &dest]);
    // `--raw`: skopeo's parsed view of an OCI config has only the OCI fields, and OCI's
    // config has no Healthcheck (docker's schema 2 and buildah's `--format docker` do).
    let out = common::run(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        cfg["config"]["Healthcheck"],
        expected_healthcheck(),
        "{cfg}"
    );

    let fresh = Env::new();
    fresh.ok(&["pull", "--tls-verify=false", &dest]);
    let v = inspect(&fresh, &dest);
    assert_eq!(v[0]["Config"]["Healthcheck"], expected_healthcheck(), "{v}");
    // A name that is neither a container nor an image is still an error.
    let o = e.hull(&["inspect", "nothing-here"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    e.assert_clean();
}

/// Builds `builds` (context, tag) in order with podman (`--format docker`) from the same base
/// image; the paths where the last one's tree differs from hull's image of the same tag, and
/// both configs.
fn against_podman(
    e: &Env,
    builds: &[(&Path, &str)],
) -> (Vec<String>, serde_json::Value, serde_json::Value) {
    let base = bld::base_archive(e.work.path());
    let name = builds.last().unwrap().1;
    let file = name.replace(['/', ':'], "_");
    let ours = e.work.path().join(format!("{file}-ours.tar"));
    e.ok(&["save", "-o", ours.to_str().unwrap(), name]);
    let p = bld::Podman::new();
    p.ok(&["load", "-i", base.to_str().unwrap()]);
    for (ctx, tag) in builds {
        p.ok(&[
            "build",
            "--format",
            "docker",
            "--network",
            "none",
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ]);
    }
    let theirs = e.work.path().join(format!("{file}-theirs.tar"));
    p.ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        theirs.to_str().unwrap(),
        name,
    ]);
    let (t1, c1) = bld::flatten(&ours);
    let (t2, c2) = bld::flatten(&theirs);
    let (t1, t2) = (bld::normalise(&t1), bld::normalise(&t2));
    let keys: std::collections::BTreeSet<&String> = t1.keys().chain(t2.keys()).collect();
    let diffs = keys
        .into_iter()
        .filter(|k| t1.get(*k) != t2.get(*k))
        .map(|k| format!("{k}:\n  hull:   {:?}\n  podman: {:?}", t1.get(k), t2.get(k)))
        .collect();
    (diffs, c1, c2)
}

#[test]
fn copy_through_symlinks_stays_in_the_image() {
    let e = Env::new();
    let base = bld::base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    // Unique names: a COPY that followed a symlink on the host would leave them in /etc.
    let tag = format!("hull-symlink-{}", std::process::id());
    let df = format!(
        "FROM {}\nCOPY links/ /data/\nCOPY {tag} /data/etclink/\nCOPY f2 /data/up/{tag}-escaped\n\
         COPY f3 /data/rel/\nCOPY dir/ /data/abs/sub/\nCOPY f4 /data/abs\n\
         WORKDIR /data/etclink/{tag}-wd\nCOPY f5 ./\n",
        bld::BASE
    );
    let ctx = write_ctx(
        e.work.path(),
        "links",
        &df,
        &[
            (&tag, "one\n"),
            ("f2", "two\n"),
            ("f3", "three\n"),
            ("f4", "four\n"),
            ("f5", "five\n"),
            ("dir/x", "x\n"),
            ("links/real/.keep", ""),
        ],
    );
    let l = ctx.join("links");
    std::os::unix::fs::symlink("/etc", l.join("etclink")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", l.join("up")).unwrap();
    std::os::unix::fs::symlink("real", l.join("rel")).unwrap();
    std::os::unix::fs::symlink("/data/real", l.join("abs")).unwrap();
    build_ok(&e, &ctx, &["-t", "hull.test/links:1"]);
    let v = inspect(&e, "hull.test/links:1");
    assert_eq!(
        v[0]["Config"]["WorkingDir"],
        format!("/data/etclink/{tag}-wd")
    );
    let ls = |p: &str| {
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "hull.test/links:1",
            "cat",
            p,
        ])
    };
    assert_eq!(ls(&format!("/etc/{tag}")), "one\n");
    assert_eq!(ls(&format!("/{tag}-escaped")), "two\n");
    assert_eq!(ls("/data/real/f3"), "three\n");
    assert_eq!(ls("/data/real/sub/x"), "x\n");
    assert_eq!(ls("/data/real/f4"), "four\n");
    assert_eq!(ls(&format!("/etc/{tag}-wd/f5")), "five\n");
    for host in [
        format!("/etc/{tag}"),
        format!("/etc/{tag}-wd"),
        format!("/{tag}-escaped"),
    ] {
        assert!(!Path::new(&host).exists(), "{host} written on the host");
    }
    let (diffs, _, _) = against_podman(&e, &[(&ctx, "hull.test/links:1")]);
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    e.assert_clean();
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let e = Env::new();
    let base = bld::base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let parent = write_ctx(
        e.work.path(),
        "onparent",
        &format!(
            "FROM {}\nONBUILD COPY trig.txt /from-trigger.txt\n\
             ONBUILD RUN echo ran > /onbuild-ran\nonbuild env TRIG=yes\nLABEL p=1\n",
            bld::BASE
        ),
        &[("trig.txt", "parent's context\n")],
    );
    build_ok(&e, &parent, &["-t", "hull.test/onparent:1"]);
    let v = inspect(&e, "hull.test/onparent:1");
    assert_eq!(
        v[0]["Config"]["OnBuild"],
        serde_json::json!([
            "COPY trig.txt /from-trigger.txt",
            "RUN echo ran > /onbuild-ran",
            "env TRIG=yes"
        ])
    );
    // The parent itself ran none of them.
    let o = e.hull(&[
        "run",
        "--rm",
        "--network",
        "none",
        "hull.test/onparent:1",
        "ls",
        "/onbuild-ran",
    ]);
    assert!(!o.status.success(), "{o:?}");

    // The child's context has its own trig.txt: a trigger's COPY reads the child's context.
    let child = write_ctx(
        e.work.path(),
        "onchild",
        "FROM hull.test/onparent:1\nRUN cat /onbuild-ran /from-trigger.txt > /seen && echo $TRIG >> /seen\n",
        &[("trig.txt", "child's context\n")],
    );
    let out = build_ok(&e, &child, &["-t", "hull.test/onchild:1"]);
    assert!(
        out.contains("--> ONBUILD RUN echo ran > /onbuild-ran"),
        "{out}"
    );
    let seen = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "hull.test/onchild:1",
        "cat",
        "/seen",
    ]);
    assert_eq!(seen, "ran\nchild's context\nyes\n");
    let v = inspect(&e, "hull.test/onchild:1");
    assert!(v[0]["Config"]["OnBuild"].is_null(), "{v}");
    // Not inherited: a grandchild runs nothing.
    let grand = write_ctx(
        e.work.path(),
        "ongrand",
        "FROM hull.test/onchild:1\nLABEL g=1\n",
        &[],
    );
    let out = build_ok(&e, &grand, &["-t", "hull.test/ongrand:1"]);
    assert!(!out.contains("ONBUILD"), "{out}");
    // The cached rebuild of the child runs the triggers from the cache.
    let out = build_ok(&e, &child, &["-t", "hull.test/onchild:1"]);
    assert_eq!(out.matches("Using cache").count(), 3, "{out}");

    let (diffs, c1, c2) = against_podman(
        &e,
        &[
            (&parent, "hull.test/onparent:1"),
            (&child, "hull.test/onchild:1"),
        ],
    );
    // buildah 1.28 leaves the mount points of its RUN containers in the layer (an empty
    // /etc/hostname, /run); docker keeps them in an init layer that is not committed, as hull
    // leaves them out.
    let diffs: Vec<&String> = diffs
        .iter()
        .filter(|d| {
            !d.starts_with("etc/hostname:\n  hull:   None")
                && !d.starts_with("run:\n  hull:   None")
        })
        .collect();
    assert!(diffs.is_empty(), "trees differ:\n{diffs:?}");
    for f in ["Env", "OnBuild", "Labels"] {
        let mut b = c2["config"][f].clone();
        if f == "Labels" {
            b.as_object_mut().unwrap().remove("io.buildah.version");
        }
        // Spent triggers: buildah writes [], docker null (hull leaves the field out).
        if f == "OnBuild" && b == serde_json::json!([]) {
            b = serde_json::Value::Null;
        }
        assert_eq!(c1["config"][f], b, "config field {f}");
    }

    // Bad triggers are refused where they are declared.
    for (bad, want) in [
        ("ONBUILD ONBUILD RUN true", "ONBUILD ONBUILD"),
        ("ONBUILD FROM scratch", "FROM isn't allowed"),
        ("ONBUILD RUNN x", "unknown instruction"),
    ] {
        let ctx = write_ctx(
            e.work.path(),
            "onbad",
            &format!("FROM scratch\n{bad}\n"),
            &[],
        );
        let o = hull_build(&e, &ctx, &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{bad}: {err}");
        assert!(err.contains(want), "{bad}: {err}");
    }
    e.assert_clean();
}

fn cache_entries(e: &Env) -> usize {
    std::fs::read_dir(e.root.path().join("build-cache"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn image_prune_keeps_the_build_cache() {
    let e = Env::new();
    let base = bld::base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let ctx = write_ctx(
        e.work.path(),
        "prune",
        &format!(
            "FROM {}\nRUN echo ran > /a\nCOPY f /f\nCMD [\"cat\", \"/a\", \"/f\"]\n",
            bld::BASE
        ),
        &[("f", "file\n")],
    );
    let id = build_ok(&e, &ctx, &["-t", "hull.test/pruned:1"]);
    let id = id.lines().last().unwrap().to_string();
    // The intermediate images are untagged, yet `image prune` keeps them: they are the cache.
    // `hull images` hides them as docker does; `-a` shows them.
    assert_eq!(
        e.ok(&["images", "-q"]).lines().count(),
        2,
        "the base and the result"
    );
    let images = e.ok(&["images", "-a", "-q"]);
    assert_eq!(images.lines().count(), 4, "and the RUN's and COPY's images");
    e.ok(&["image", "prune"]);
    assert_eq!(e.ok(&["images", "-a", "-q"]), images);
    let out = build_ok(&e, &ctx, &["-t", "hull.test/pruned:1"]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    assert!(out.trim_end().ends_with(&id), "{out}");

    // A build's result whose name moved to a newer build is dangling and goes.
    e.ok(&["tag", "hull.test/pruned:1", "hull.test/other:1"]);
    let ctx2 = write_ctx(
        e.work.path(),
        "prune2",
        "FROM hull.test/other:1\nLABEL x=1\n",
        &[],
    );
    build_ok(&e, &ctx2, &["-t", "hull.test/lab:1"]);
    std::fs::write(
        ctx2.join("Dockerfile"),
        "FROM hull.test/other:1\nLABEL x=2\n",
    )
    .unwrap();
    build_ok(&e, &ctx2, &["-t", "hull.test/lab:1"]);
    let before = e.ok(&["images", "-a", "-q"]).lines().count();
    let out = e.ok(&["image", "prune"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(e.ok(&["images", "-a", "-q"]).lines().count(), before - 1);

    // `builder prune`: the entries and the images only they kept; named images stay.
    let out = e.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Deleted build cache entries:"), "{out}");
    assert_eq!(cache_entries(&e), 0);
    e.ok(&["image", "inspect", "hull.test/pruned:1"]);
    let out = build_ok(&e, &ctx, &["-t", "hull.test/pruned:1"]);
    assert_eq!(out.matches("Using cache").count(), 0, "{out}");

    // `image prune -a`: every unused image, the cache's too, and then their entries; the
    // next build makes them again and is right.
    assert!(cache_entries(&e) > 0);
    e.ok(&["image", "prune", "-a"]);
    assert_eq!(e.ok(&["images", "-a", "-q"]), "");
    assert_eq!(cache_entries(&e), 0);
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let out = build_ok(&e, &ctx, &["-t", "hull.test/pruned:1"]);
    assert_eq!(out.matches("Using cache").count(), 0, "{out}");
    assert_eq!(
        e.ok(&["run", "--rm", "--network", "none", "hull.test/pruned:1"]),
        "ran\nfile\n"
    );
    e.assert_clean();
}

#[test]
fn platform_picks_the_index_entry_and_run_needs_the_host() {
    let e = Env::new();
    let reg = common::Registry::start(None).unwrap();
    let dir = e.work.path().join("multi");
    let mut layout = common::Layout::new(&dir);
    let host = std::process::Command::new("uname")
        .arg("-m")
        .output()
        .unwrap();
    let host = match String::from_utf8_lossy(&host.stdout).trim() {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    let mine = layout.image(
        vec![(
            common::Comp::Gzip,
            common::Layer::new()
                .busybox()
                .file("arch", format!("{host}\n").as_bytes())
                .tar(),
        )],
        host,
    );
    let theirs = layout.image(
        vec![(
            common::Comp::Gzip,
            common::Layer::new()
                .file("arch", format!("{other}\n").as_bytes())
                .tar(),
        )],
        other,
    );
    layout.finish(vec![mine, theirs], "v1").unwrap();
    let src = format!("{}/multi:v1", reg.host());
    common::push(&dir, "v1", &src, true, None).unwrap();

    // A COPY-only stage of the other platform feeds a stage of the host's.
    let ctx = write_ctx(
        e.work.path(),
        "plat",
        &format!(
            "FROM {src} AS native\nFROM --platform=linux/{other} {src} AS foreign\n\
             FROM native\nCOPY --from=foreign /arch /foreign-arch\n"
        ),
        &[],
    );
    let out = build_ok(&e, &ctx, &["-t", "hull.test/plat:1"]);
    assert!(out.contains(&format!("for linux/{other}")), "{out}");
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "hull.test/plat:1",
            "cat",
            "/arch",
            "/foreign-arch"
        ]),
        format!("{host}\n{other}\n")
    );
    assert_eq!(inspect(&e, "hull.test/plat:1")[0]["Architecture"], host);

    // The build's --platform applies to every FROM; COPY-only works, the result is tagged
    // with that platform.
    let ctx = write_ctx(
        e.work.path(),
        "plat2",
        &format!("FROM {src}\nCOPY f /f\nFROM scratch\nCOPY f /g\n"),
        &[("f", "f\n")],
    );
    build_ok(
        &e,
        &ctx,
        &[
            "--platform",
            &format!("linux/{other}"),
            "-t",
            "hull.test/plat:2",
        ],
    );
    assert_eq!(inspect(&e, "hull.test/plat:2")[0]["Architecture"], other);

    // RUN in such a stage: a clear error, nothing left behind.
    let ctx = write_ctx(
        e.work.path(),
        "plat3",
        &format!("FROM --platform=linux/{other} {src}\nRUN true\n"),
        &[],
    );
    let o = hull_build(&e, &ctx, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains(&format!("linux/{other}")) && err.contains("does not emulate"),
        "{err}"
    );
    let o = hull_build(&e, &ctx, &["--platform", "linux"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("--platform linux"), "{err}");
    e.assert_clean();
}

/// A COPY source that passes through a symlink in the context resolves inside the context (as
/// docker's), never on the host: `s -> /` makes `s/etc/marker` the context's `etc/marker`, and
/// `s/etc/hostname` (only on the host) is missing.
#[test]
fn copy_sources_resolve_inside_the_context() {
    let e = Env::new();
    let base = bld::base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let df = format!("FROM {}\nCOPY s/etc/marker /m\n", bld::BASE);
    let ctx = write_ctx(e.work.path(), "ctxlinks", &df, &[("etc/marker", "ctx\n")]);
    std::os::unix::fs::symlink("/", ctx.join("s")).unwrap();
    build_ok(&e, &ctx, &["-t", "hull.test/ctxlinks:1"]);
    let cat = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "hull.test/ctxlinks:1",
        "cat",
        "/m",
    ]);
    assert_eq!(cat, "ctx\n");

    let df = format!("FROM {}\nCOPY s/etc/hostname /h\n", bld::BASE);
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let o = hull_build(&e, &ctx, &["-t", "hull.test/ctxlinks:2"]);
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "the host's /etc/hostname was copied:\n{out}{err}"
    );
    assert!(err.contains("no such file"), "{err}");
    e.assert_clean();
}
