//! AppArmor / SELinux fields on a host without those LSMs (issue 5): hullc
//! must end as runc does on the same bundle, so runc (Debian package, a
//! test reference only) runs every case too. Cases whose LSM is active on
//! the host are skipped (there the fields are applied; see lsm.rs).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Bundle, Hullc};
use serde_json::{json, Value};

fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.starts_with('Y'))
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// (success, stderr) of `runc run` on the bundle.
fn runc(h: &Hullc, b: &Bundle, id: &str) -> (bool, String) {
    let o = Command::new("runc")
        .arg("--root")
        .arg(h.scratch().join("runc"))
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .expect("runc is installed (scripts/deps.sh)");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// Runs both runtimes on `b` with `field` set; asserts they agree on
/// success, and that a failure names `cause` in both.
fn same_as_runc(h: &Hullc, b: &mut Bundle, set: impl Fn(&mut Value), cause: &[&str]) {
    set(&mut b.config);
    let hid = h.id("lsm");
    let rid = format!("{hid}-runc");
    // Relative: below the test's own cgroup, for both runtimes.
    b.config["linux"]["cgroupsPath"] = json!(hid);
    b.save();
    let (runc_ok, runc_err) = runc(h, b, &rid);
    b.config["linux"]["cgroupsPath"] = json!(format!("{hid}-h"));
    let o = h.run(b, &hid, &[]);
    o.assert_no_panic();
    assert_eq!(
        o.status.success(),
        runc_ok,
        "hullc and runc disagree:\nhullc: {}\nrunc: {runc_err}",
        o.stderr
    );
    for c in cause {
        let lc = c.to_lowercase();
        assert!(
            runc_err.to_lowercase().contains(&lc),
            "runc's error lacks {c:?}: {runc_err}"
        );
        assert!(
            o.stderr.to_lowercase().contains(&lc),
            "hullc's error lacks {c:?}: {}",
            o.stderr
        );
    }
    common::assert_clean(h, b, &[&hid, &rid, &format!("{hid}-h")]);
}

#[test]
fn apparmor_profile_without_apparmor_fails_like_runc() {
    if apparmor_enabled() {
        eprintln!("AppArmor is enabled here: the not-enabled case does not apply");
        return;
    }
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // runc writes "exec <profile>" whatever the host; without AppArmor the
    // kernel answers EINVAL and the container does not start.
    same_as_runc(
        &h,
        &mut b,
        |c| c["process"]["apparmorProfile"] = json!("hull-test-profile"),
        &["apparmor failed to apply profile", "invalid argument"],
    );
    same_as_runc(
        &h,
        &mut b,
        |c| c["process"]["apparmorProfile"] = json!(""),
        &[],
    );
}

#[test]
fn selinux_label_without_selinux_fails_like_runc() {
    if selinux_enabled() {
        eprintln!("SELinux is enabled here: the not-enabled case does not apply");
        return;
    }
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    same_as_runc(
        &h,
        &mut b,
        |c| c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2"),
        &["selinux label is specified in config, but selinux is disabled or not supported"],
    );
    same_as_runc(
        &h,
        &mut b,
        |c| c["process"]["selinuxLabel"] = json!(""),
        &[],
    );
}

#[test]
fn mount_label_without_selinux_fails_like_runc() {
    if selinux_enabled() {
        eprintln!("SELinux is enabled here: the not-enabled case does not apply");
        return;
    }
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // go-selinux adds context="..." to tmpfs/devpts data regardless; a
    // kernel without SELinux refuses the option.
    same_as_runc(
        &h,
        &mut b,
        |c| c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2"),
        &["tmpfs", "/dev", "invalid argument"],
    );
    same_as_runc(&h, &mut b, |c| c["linux"]["mountLabel"] = json!(""), &[]);
}
