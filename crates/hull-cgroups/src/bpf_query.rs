//! BPF_PROG_QUERY: the device programs attached to a cgroup directory.

use std::io;
use std::os::fd::RawFd;

use crate::devices_bpf::{bpf, BPF_CGROUP_DEVICE};

const BPF_PROG_QUERY: libc::c_long = 16;

/// Room for the IDs on the first try: the kernel attaches at most 64
/// programs per cgroup and attach type (BPF_CGROUP_MAX_PROGS), as runc
/// assumes; a bigger count is still read, see [`attached`].
pub(crate) const ROOM: usize = 64;

/// The query part of union bpf_attr (uapi/linux/bpf.h) up to prog_cnt;
/// the kernel writes no field past the size passed (6.18 stores the newer
/// `revision` only for callers whose attr reaches it).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// IDs of the device programs attached to the cgroup `cg` itself (not the
/// inherited ones), asking first with room for `room`. With more attached
/// the kernel copies `room` IDs, fails with ENOSPC and sets prog_cnt to the
/// real count: retry with that (runc's findAttachedCgroupDeviceFilters),
/// a few times, as programs may be attached in between.
pub(crate) fn attached(cg: RawFd, room: usize) -> io::Result<Vec<u32>> {
    let mut room = room.max(1);
    for _ in 0..10 {
        let mut ids = vec![0u32; room];
        let mut attr = query_attr(cg, &mut ids);
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                room = (attr.prog_cnt as usize).max(room + 1);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "the list of attached programs kept growing (ENOSPC 10 times)",
    ))
}

fn query_attr(cg: RawFd, ids: &mut [u32]) -> QueryAttr {
    QueryAttr {
        target_fd: cg as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_rules::DevState;
    use crate::devices_bpf::{self, BPF_F_ALLOW_MULTI};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::path::PathBuf;

    /// A scratch cgroup below ours in the cgroup2 tree (pure v2, or hybrid's
    /// unified mount); None (with a note) when not root or no cgroup2.
    struct Scratch(PathBuf, std::fs::File);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = crate::fs::rmdir_retry(&self.0);
        }
    }

    fn scratch(tag: &str) -> Option<Scratch> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0
            || std::env::var("HULL_CGROUP_HOST_TESTS").as_deref() == Ok("0")
        {
            eprintln!("skipped: needs root (HULL_CGROUP_HOST_TESTS unset)");
            return None;
        }
        let Some(u) = crate::Hierarchy::detect().ok().and_then(|h| h.unified) else {
            eprintln!("skipped: no cgroup2 mount");
            return None;
        };
        let dir = u
            .own_dir()
            .join(format!("hull-bpfq-{tag}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("skipped: cannot create {}: {e}", dir.display());
            return None;
        }
        match std::fs::File::open(&dir) {
            Ok(f) => Some(Scratch(dir, f)),
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
    }

    /// Attach `n` allow-all programs in multi mode; they stay attached while
    /// the cgroup lives (the fds may go).
    fn attach_n(s: &Scratch, n: usize) -> Vec<OwnedFd> {
        let allow_all = DevState::from_rules(&[{
            let mut r = oci_spec::runtime::LinuxDeviceCgroup::default();
            r.set_allow(true);
            r
        }])
        .expect("rules");
        (0..n)
            .map(|_| {
                let p = devices_bpf::load(&devices_bpf::program(&allow_all)).expect("load");
                devices_bpf::attach(s.1.as_raw_fd(), p.as_raw_fd(), BPF_F_ALLOW_MULTI)
                    .expect("attach");
                p
            })
            .collect()
    }

    /// More programs than the room asked with: all IDs come back (the old
    /// query gave up on ENOSPC and left every old program attached), and
    /// `apply` then leaves only its own.
    #[test]
    fn query_retries_with_the_count_the_kernel_reports() {
        let Some(s) = scratch("retry") else { return };
        let _progs = attach_n(&s, 5);
        let ids = attached(s.1.as_raw_fd(), 2).expect("query");
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert!(ids.iter().all(|id| *id != 0), "{ids:?}");
        assert_eq!(attached(s.1.as_raw_fd(), ROOM).expect("query"), ids);
        let state = DevState::from_rules(&[]).expect("rules");
        devices_bpf::apply(&s.0, &state).expect("apply");
        let now = attached(s.1.as_raw_fd(), 1).expect("query");
        assert_eq!(now.len(), 1, "old programs detached: {now:?}");
        assert!(!ids.contains(&now[0]));
    }
}
