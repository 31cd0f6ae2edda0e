//! `hull build` end to end as root: Dockerfiles covering every instruction built by hull
//! and by `podman build` (Debian podman/buildah, runc, vfs storage in a temp root) from the
//! same busybox image, the results compared layer by layer flattened (owners, modes,
//! set-id bits, hardlinks, symlinks, contents) and config field by field; the step cache,
//! a failing RUN and a syntax error.
#![allow(clippy::unwrap_used)]

mod bld;
mod ctr;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bld::{base_archive, flatten, hull_build, normalise, Podman, BASE};
use ctr::{text, Env};

const CONTEXT_FILES: &[(&str, &str)] = &[
    ("a.txt", "hello\n"),
    ("sub/b.txt", "b\n"),
    ("sub/deep/d.txt", "deep\n"),
    ("glob1.conf", "1\n"),
    ("glob2.conf", "2\n"),
    ("skip.log", "ignored\n"),
];

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=hull.test/bbase:1
FROM $BASE AS first
ARG GREETING=hi
ENV A=1 B="two words" \
    C=${A}-c
RUN echo "$GREETING $B $C" > /greet && mkdir -p /data/sub && echo x > /data/x \
    && ln /data/x /data/x2 && ln -s ../greet /data/link && mkfifo /data/fifo \
    && rm /srv/old && chmod 4755 /data/x && chmod 2750 /data/sub && chown 1000:50 /data/sub
WORKDIR /app
COPY a.txt sub/ ./
COPY *.conf /conf/
COPY --chown=web:staff a.txt /home/web/
COPY --chmod=0600 a.txt /private
ADD files.tar.gz /unpacked/
RUN ["/bin/sh", "-c", "echo exec form > /exec"]
SHELL ["/bin/sh", "-c"]
RUN rm /data/x2 && rm -r /conf && mkdir /conf && echo new > /conf/new

FROM hull.test/bbase:1
ARG GREETING
COPY --from=first /greet /data/ /out/
COPY --from=first /app /app
COPY --from=first /unpacked /unpacked
WORKDIR rel/dir
USER web
LABEL k=v "x y"=z greeting=$GREETING
EXPOSE 80 53/udp
VOLUME /vol ["/vol2"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD true
ENV PATH=/bin:/usr/bin
ENTRYPOINT ["/bin/sh","-c"]
CMD ["echo hi from cmd"]
"#;

fn context(dir: &Path) -> PathBuf {
    let c = dir.join("ctx");
    for (p, data) in CONTEXT_FILES {
        let f = c.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, data).unwrap();
    }
    std::fs::write(c.join(".dockerignore"), "*.log\n").unwrap();
    std::fs::write(c.join("Dockerfile"), DOCKERFILE).unwrap();
    // An archive for ADD, with an owner of its own.
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_uid(7);
    h.set_gid(8);
    h.set_size(4);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "in/arch.txt", &b"arch"[..]).unwrap();
    std::fs::write(
        c.join("files.tar.gz"),
        b.into_inner().unwrap().finish().unwrap(),
    )
    .unwrap();
    c
}

const FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
];

#[test]
fn build_matches_podman() {
    let e = Env::new();
    let base = base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let ctx = context(e.work.path());
    let o = hull_build(&e, &ctx, &["-t", "built:1", "--build-arg", "GREETING=hey"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("STEP 2/"), "{out}");
    let ours = e.work.path().join("ours.tar");
    e.ok(&["save", "-o", ours.to_str().unwrap(), "built:1"]);
    // The result is an ordinary image: it runs.
    assert_eq!(
        e.ok(&["run", "--rm", "--network", "none", "built:1"]),
        "hi from cmd\n"
    );

    let p = Podman::new();
    p.ok(&["load", "-i", base.to_str().unwrap()]);
    p.ok(&[
        "build",
        "--format",
        "docker",
        "--network",
        "none",
        "--build-arg",
        "GREETING=hey",
        "-t",
        "built:1",
        ctx.to_str().unwrap(),
    ]);
    let theirs = e.work.path().join("theirs.tar");
    p.ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        theirs.to_str().unwrap(),
        "built:1",
    ]);

    let (t1, c1) = flatten(&ours);
    let (t2, c2) = flatten(&theirs);
    let (t1, t2) = (normalise(&t1), normalise(&t2));
    let keys: std::collections::BTreeSet<&String> = t1.keys().chain(t2.keys()).collect();
    let mut diffs = Vec::new();
    for k in keys {
        // WORKDIR makes its directory at once in hull, as docker's BuildKit does; buildah
        // 1.28 makes it only for a later RUN or COPY, and there is none after `rel/dir`.
        if (k == "rel" || k == "rel/dir") && !t2.contains_key(k) {
            assert_eq!(t1[k].mode, 0o755);
            continue;
        }
        if t1.get(k) != t2.get(k) {
            diffs.push(format!(
                "{k}:\n  hull:   {:?}\n  podman: {:?}",
                t1.get(k),
                t2.get(k)
            ));
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    for f in FIELDS {
        let mut a = c1["config"][f].clone();
        let mut b = c2["config"][f].clone();
        // buildah moves a redefined variable to the end; docker replaces it in place.
        if *f == "Env" {
            for v in [&mut a, &mut b] {
                v.as_array_mut().unwrap().sort_by_key(|x| x.to_string());
            }
        }
        if *f == "Labels" {
            b.as_object_mut().unwrap().remove("io.buildah.version");
        }
        if *f == "WorkingDir" && a.is_null() {
            a = serde_json::json!("");
        }
        if b.is_null() && a == serde_json::json!("") {
            b = a.clone();
        }
        assert_eq!(a, b, "config field {f}");
    }
    e.assert_clean();
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn rebuild_uses_the_cache() {
    let e = Env::new();
    let base = base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let ctx = context(e.work.path());
    let first = hull_build(&e, &ctx, &["-q", "-t", "c:1"]);
    let id1 = ctr::ok(&first);
    let root = e.root.path();
    let (snaps, images) = (
        count(&root.join("snapshots")),
        e.ok(&["images", "-a", "-q"]),
    );
    let containers_mtime = std::fs::metadata(root.join("containers"))
        .unwrap()
        .modified()
        .unwrap();
    let o = hull_build(&e, &ctx, &["-t", "c:1"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    // Every layer step: RUN x3, COPY x7, ADD, WORKDIR x2.
    assert_eq!(out.matches("Using cache").count(), 13, "{out}");
    assert!(
        out.trim_end()
            .ends_with(id1.trim().trim_start_matches("sha256:")),
        "{out} vs {id1}"
    );
    assert_eq!(count(&root.join("snapshots")), snaps, "no new layer");
    assert_eq!(e.ok(&["images", "-a", "-q"]), images, "no new image");
    let after = std::fs::metadata(root.join("containers"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(containers_mtime, after, "no container was made");
    // A changed file invalidates its COPY and what follows, nothing before.
    std::fs::write(ctx.join("glob2.conf"), "changed\n").unwrap();
    let o = hull_build(&e, &ctx, &["-t", "c:1"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(out.matches("Using cache").count(), 3, "{out}");
    // --no-cache uses none.
    let o = hull_build(&e, &ctx, &["--no-cache", "-t", "c:1"]);
    assert_eq!(text(&o).0.matches("Using cache").count(), 0);
    e.assert_clean();
}

#[test]
fn failing_run_reports_step_and_exit_code() {
    let e = Env::new();
    let base = base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let ctx = e.work.path().join("fail");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {BASE}\nENV X=1\nRUN echo visible-output; exit 3\nRUN echo never\n"),
    )
    .unwrap();
    let images = e.ok(&["images", "-a", "-q"]);
    let o = hull_build(&e, &ctx, &["-t", "fail:1"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{out}{err}");
    assert!(out.contains("visible-output"), "{out}");
    assert!(!out.contains("never"), "{out}");
    assert!(
        err.contains("step 3/4") && err.contains("RUN echo visible-output; exit 3"),
        "{err}"
    );
    assert!(err.contains("returned a non-zero code: 3"), "{err}");
    assert_eq!(e.ok(&["images", "-a", "-q"]), images, "no image made");
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "", "no container left");
    e.assert_clean();
}

#[test]
fn syntax_errors_name_the_line() {
    let e = Env::new();
    let ctx = e.work.path().join("bad");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\n# comment\nRUNN echo\n",
    )
    .unwrap();
    let o = hull_build(&e, &ctx, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err.contains("Dockerfile:4: RUNN: unknown instruction"),
        "{err}"
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY missing.txt /\n").unwrap();
    let (_, err) = text(&hull_build(&e, &ctx, &[]));
    assert!(
        err.contains("missing.txt") && err.contains("no such file"),
        "{err}"
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY ../outside /\n").unwrap();
    let (_, err) = text(&hull_build(&e, &ctx, &[]));
    assert!(err.contains("outside the build context"), "{err}");
}

#[test]
fn interrupted_build_leaves_nothing_and_keeps_complete_cache_entries() {
    use std::io::BufRead;
    let e = Env::new();
    let base = base_archive(e.work.path());
    e.ok(&["load", "-i", base.to_str().unwrap()]);
    let ctx = e.work.path().join("int");
    std::fs::create_dir_all(&ctx).unwrap();
    let df = |last: &str| format!("FROM {BASE}\nRUN echo done > /first\n{last}\n");
    std::fs::write(ctx.join("Dockerfile"), df("RUN echo sleeping; sleep 60")).unwrap();
    let images = e.ok(&["images", "-a", "-q"]);
    let mut c = e.cmd(&[
        "build",
        "--network",
        "none",
        "-t",
        "int:1",
        ctx.to_str().unwrap(),
    ]);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for l in lines.by_ref() {
        if l.unwrap().contains("sleeping") {
            break;
        }
    }
    // SAFETY: a signal to the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = std::time::Instant::now();
    let st = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "the build went on"
    );
    assert_eq!(st.code(), Some(125), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "", "no container left");
    // The first RUN's image and cache entry are complete: only the unnamed step image is new.
    let after = e.ok(&["images", "-a", "-q"]);
    assert_eq!(after.lines().count(), images.lines().count() + 1, "{after}");
    std::fs::write(ctx.join("Dockerfile"), df("RUN true")).unwrap();
    let o = hull_build(&e, &ctx, &["-t", "int:1"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(out.matches("Using cache").count(), 1, "{out}");
    e.assert_clean();
}
