//! AppArmor and SELinux: `process.apparmorProfile`, `process.selinuxLabel`
//! and `linux.mountLabel`, with runc's semantics, including on a host
//! without the LSM (checked against runc 1.1 on such a host):
//!
//! - apparmorProfile: `exec <profile>` is written to the process' own
//!   `attr/apparmor/exec` (or the older shared `attr/exec`) just before
//!   execve, as libapparmor's aa_change_onexec does. runc does not ask
//!   whether AppArmor is enabled (its `apparmor.IsEnabled` serves callers
//!   like docker, which then leave the field empty), so on a host without
//!   it the write fails (EINVAL) and so does the container's start.
//! - selinuxLabel: written to `attr/exec` before execve when SELinux is
//!   enabled; when it is not, runc's config validation refuses the config
//!   ("selinux label is specified in config, but selinux is disabled or not
//!   supported"), before anything is created.
//! - mountLabel: go-selinux's FormatMountLabel adds `context="<label>"` to
//!   the data of the filesystems runc mounts with it (not proc, sysfs,
//!   mqueue, cgroup, nor binds, whose data the kernel ignores), whether or
//!   not SELinux is enabled; a kernel without SELinux rejects the option.
//!   mqueue gets the label as its `security.selinux` xattr instead, only
//!   when SELinux is enabled (go-selinux label.SetFileLabel is a no-op
//!   otherwise).

use std::path::Path;

use oci_spec::runtime::{Process, Spec};

#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    #[error("process.selinuxLabel: selinux label is specified in config, but selinux is disabled or not supported")]
    SelinuxDisabled,
    #[error(
        "process.apparmorProfile: apparmor failed to apply profile {profile:?}: writing {path}"
    )]
    AppArmor {
        profile: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("process.selinuxLabel: setting exec label {label:?}: writing {path}")]
    Selinux {
        label: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.mountLabel: labelling {dest}")]
    MountLabel {
        dest: String,
        #[source]
        source: std::io::Error,
    },
}

/// selinuxfs's statfs magic.
const SELINUX_MAGIC: libc::c_long = 0xf97c_ff8c;

/// go-selinux's GetEnabled: selinuxfs is mounted and we have a label other
/// than "kernel".
pub(crate) fn selinux_enabled() -> bool {
    let on_selinuxfs = nix::sys::statfs::statfs("/sys/fs/selinux")
        .map(|s| s.filesystem_type().0 as libc::c_long == SELINUX_MAGIC)
        .unwrap_or(false);
    on_selinuxfs
        && std::fs::read_to_string("/proc/self/attr/current")
            .map(|c| c.trim_end_matches(['\0', '\n']) != "kernel")
            .unwrap_or(false)
}

/// Create-time check (runc's validator): a process label needs SELinux.
pub(crate) fn validate(p: Option<&Process>, enabled: bool) -> Result<(), LsmError> {
    let label = p.and_then(|p| p.selinux_label().as_deref());
    match label {
        Some(l) if !l.is_empty() && !enabled => Err(LsmError::SelinuxDisabled),
        _ => Ok(()),
    }
}

/// The AppArmor attribute file and what to write to it.
fn apparmor_write(profile: &str, proc_self: &Path) -> (std::path::PathBuf, String) {
    let modern = proc_self.join("attr/apparmor/exec");
    let path = if modern.exists() {
        modern
    } else {
        // Kernels before LSM stacking (5.8) have only the shared file.
        proc_self.join("attr/exec")
    };
    (path, format!("exec {profile}"))
}

/// Sets the labels the next execve takes on. Called last before execve.
pub(crate) fn apply_exec_labels(p: &Process) -> Result<(), LsmError> {
    // Our own thread's attributes (only those may be changed anyway).
    let proc_self = Path::new("/proc/thread-self");
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        let (path, data) = apparmor_write(profile, proc_self);
        write_attr(&path, &data).map_err(|source| LsmError::AppArmor {
            profile: profile.to_string(),
            path: path.display().to_string(),
            source,
        })?;
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        if selinux_enabled() {
            let path = proc_self.join("attr/exec");
            write_attr(&path, label).map_err(|source| LsmError::Selinux {
                label: label.to_string(),
                path: path.display().to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

/// One write(2) of the whole value (the LSMs parse each write whole), and
/// only to the real procfs file: the container's /proc is built from its
/// config, and a bind mount over the attribute file would otherwise take our
/// write (CVE-2025-52881); see `paths::write_procfs`.
fn write_attr(path: &Path, data: &str) -> std::io::Result<()> {
    crate::paths::write_procfs(path, data.as_bytes())
}

/// The spec's mount label, if any.
pub(crate) fn mount_label(spec: &Spec) -> Option<&str> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.mount_label().as_deref())
        .filter(|l| !l.is_empty())
}

/// Filesystems runc mounts without the label in their data.
fn unlabelled(fstype: &str) -> bool {
    matches!(fstype, "proc" | "sysfs" | "mqueue" | "cgroup" | "cgroup2")
}

/// `context="<label>"` appended to a filesystem's mount data, as
/// go-selinux's FormatMountLabel does.
pub(crate) fn label_data(data: &mut Vec<String>, fstype: &str, label: Option<&str>) {
    if let Some(l) = label.filter(|_| !unlabelled(fstype)) {
        data.push(format!("context={l:?}"));
    }
}

/// mqueue: the label as an xattr, only under SELinux.
pub(crate) fn label_mqueue(tpath: &Path, dest: &Path, label: Option<&str>) -> Result<(), LsmError> {
    let Some(l) = label.filter(|_| selinux_enabled()) else {
        return Ok(());
    };
    let c = |s: &[u8]| std::ffi::CString::new(s).unwrap_or_default();
    let path = c(tpath.as_os_str().as_encoded_bytes());
    // SAFETY: NUL-terminated path and name; value pointer and length
    // describe the label's bytes, which outlive the call.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            c"security.selinux".as_ptr(),
            l.as_ptr().cast(),
            l.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(LsmError::MountLabel {
            dest: dest.display().to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;

    #[test]
    fn apparmor_prefers_the_stacked_attribute_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("attr")).expect("mkdir");
        let (p, data) = apparmor_write("docker-default", dir.path());
        assert_eq!(p, dir.path().join("attr/exec"));
        assert_eq!(data, "exec docker-default");
        std::fs::create_dir_all(dir.path().join("attr/apparmor")).expect("mkdir");
        std::fs::write(dir.path().join("attr/apparmor/exec"), "").expect("touch");
        let (p, _) = apparmor_write("x", dir.path());
        assert_eq!(p, dir.path().join("attr/apparmor/exec"));
    }

    #[test]
    fn mount_label_goes_where_runc_puts_it() {
        let l = Some("system_u:object_r:container_file_t:s0:c1,c2");
        let mut d = vec!["mode=755".to_string()];
        label_data(&mut d, "tmpfs", l);
        assert_eq!(
            d,
            [
                "mode=755",
                "context=\"system_u:object_r:container_file_t:s0:c1,c2\""
            ]
        );
        for fs in ["proc", "sysfs", "mqueue", "cgroup", "cgroup2"] {
            let mut d = Vec::new();
            label_data(&mut d, fs, l);
            assert!(d.is_empty(), "{fs}");
        }
        let mut d = Vec::new();
        label_data(&mut d, "devpts", None);
        assert!(d.is_empty());
    }

    #[test]
    fn a_process_label_needs_selinux() {
        let p = ProcessBuilder::default()
            .selinux_label("system_u:system_r:container_t:s0")
            .build()
            .expect("process");
        assert!(matches!(
            validate(Some(&p), false),
            Err(LsmError::SelinuxDisabled)
        ));
        assert!(validate(Some(&p), true).is_ok());
        let empty = ProcessBuilder::default().build().expect("process");
        assert!(validate(Some(&empty), false).is_ok());
    }
}
