//! cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program built as
//! raw instructions (like runc's devicefilter), loaded with bpf(2) and
//! attached to the cgroup directory, replacing previously attached ones.
//!
//! The program is generated from the rule list reduced to cgroup v1's state
//! (device_rules: a default verdict plus exceptions that all carry the other
//! verdict), not from the raw list: v2 then grants exactly what v1 grants,
//! and every exception block starts with a type test, so no block returns
//! unconditionally. The verifier rejects unreachable instructions
//! ("unreachable insn N", EINVAL); a program built from the raw list had them
//! after any unconditional rule such as docker's leading `a *:* rwm` deny.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::device_rules::{DevState, DevType, Exception, ACC_ALL};
use crate::{bpf_query, Error};

// Instruction encodings (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }:
// access_type = (access << 16) | type; access bits as in device_rules.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub(crate) const BPF_CGROUP_DEVICE: u32 = 6;
pub(crate) const BPF_F_ALLOW_MULTI: u32 = 2;

/// struct bpf_insn; `regs` is dst_reg in the low nibble, src_reg in the high.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Build the filter: the first exception that matches returns the opposite
/// of the default, the end returns the default. Exceptions all share one
/// verdict, so their order does not matter.
pub(crate) fn program(s: &DevState) -> Vec<Insn> {
    let mut p = Vec::new();
    if !s.exceptions.is_empty() {
        p.extend([
            insn(LDX_MEM_W, 2, 1, 0, 0),        // r2 = ctx->access_type
            insn(ALU32_AND_K, 2, 0, 0, 0xFFFF), // r2 = type
            insn(LDX_MEM_W, 3, 1, 0, 0),
            insn(ALU32_RSH_K, 3, 0, 0, 16), // r3 = access
            insn(LDX_MEM_W, 4, 1, 4, 0),    // r4 = major
            insn(LDX_MEM_W, 5, 1, 8, 0),    // r5 = minor
        ]);
    }
    for e in &s.exceptions {
        p.extend(exception_block(e, s.default_allow));
    }
    p.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(s.default_allow)));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// Tests that jump past the block (to the next one) on mismatch, then the
/// exception's verdict. The type test comes first and is always there.
fn exception_block(e: &Exception, default_allow: bool) -> Vec<Insn> {
    let typ = match e.typ {
        DevType::Block => DEV_BLOCK,
        DevType::Char => DEV_CHAR,
    };
    let mut b = vec![insn(JMP_JNE_K, 2, 0, 0, typ)];
    if e.access != ACC_ALL {
        let access = i32::from(e.access);
        b.push(insn(ALU32_MOV_X, 1, 3, 0, 0)); // r1 = requested access
        if default_allow {
            // A deny exception hits when it shares any requested bit.
            b.push(insn(ALU32_AND_K, 1, 0, 0, access));
            b.push(insn(JMP_JEQ_K, 1, 0, 0, 0));
        } else {
            // An allow exception must hold every requested bit.
            b.push(insn(ALU32_AND_K, 1, 0, 0, !access));
            b.push(insn(JMP_JNE_K, 1, 0, 0, 0));
        }
    }
    // 64-bit compares of the zero-extended u32 with the sign-extended imm:
    // a number >= 2^31 never matches, as no device has one (12-bit majors,
    // 20-bit minors).
    if let Some(m) = e.major {
        b.push(insn(JMP_JNE_K, 4, 0, 0, m as i32));
    }
    if let Some(m) = e.minor {
        b.push(insn(JMP_JNE_K, 5, 0, 0, m as i32));
    }
    b.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(!default_allow)));
    b.push(insn(JMP_EXIT, 0, 0, 0, 0));
    let len = b.len();
    for (i, ins) in b.iter_mut().enumerate() {
        if ins.code == JMP_JNE_K || ins.code == JMP_JEQ_K {
            // Relative to the next instruction: land just past the exit.
            ins.off = (len - i - 1) as i16;
        }
    }
    b
}

pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly sized #[repr(C)] bpf_attr variant
    // for `cmd`; the kernel reads/writes at most size_of::<T>() bytes of it.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: bpf() returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

pub(crate) fn load(prog: &[Insn]) -> Result<OwnedFd, (io::Error, String)> {
    const LICENSE: &[u8] = b"Apache-2.0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..8].copy_from_slice(b"hull_dev");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(first) => {
            // Retry with the verifier log on, only to explain the failure.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr).map(fd_from);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err((
                first,
                String::from_utf8_lossy(&log[..end]).trim().to_string(),
            ))
        }
    }
}

/// BPF_PROG_ATTACH of a device program to the cgroup directory `cg`.
pub(crate) fn attach(cg: RawFd, prog: RawFd, flags: u32) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cg as u32,
        attach_bpf_fd: prog as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Load the program for `rules` and attach it to `dir`, then detach the
/// programs that were attached before (so an update replaces, not stacks:
/// with several programs attached every one of them must allow an access).
pub(crate) fn apply(dir: &Path, state: &DevState) -> Result<(), Error> {
    let berr = |op, source, log: String| Error::Bpf {
        op,
        path: dir.to_path_buf(),
        log,
        source,
    };
    let cg = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|source| Error::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    // runc fails here too: old programs left attached would keep denying
    // whatever the new one allows (every attached program must allow).
    let old = bpf_query::attached(cg.as_raw_fd(), bpf_query::ROOM)
        .map_err(|e| berr("query attached programs", e, String::new()))?;
    let prog = load(&program(state)).map_err(|(e, log)| berr("load", e, log))?;
    if let Err(e) = attach(cg.as_raw_fd(), prog.as_raw_fd(), BPF_F_ALLOW_MULTI) {
        // A program attached earlier without ALLOW_MULTI (another manager)
        // blocks multi mode; fall back to the override mode, which replaces it.
        tracing::debug!(error = %e, "attach with BPF_F_ALLOW_MULTI failed, retrying");
        attach(cg.as_raw_fd(), prog.as_raw_fd(), 0)
            .map_err(|e| berr("attach", e, String::new()))?;
        return Ok(());
    }
    for id in old {
        let mut g = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut g) {
            Ok(fd) => fd_from(fd),
            Err(e) => {
                tracing::warn!(id, error = %e, "cannot open old device program");
                continue;
            }
        };
        let mut d = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut d).map_err(|e| berr("detach old program", e, String::new()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_rules::{ACC_MKNOD, ACC_READ, ACC_WRITE};
    use crate::devices::default_allowed_devices;
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

    /// A tiny interpreter for the instructions `program` emits.
    fn run(p: &[Insn], typ: i32, access: u8, major: u32, minor: u32) -> u64 {
        let ctx = [(u32::from(access) << 16) | typ as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            let jump = |taken: bool, pc: &mut usize| {
                if taken {
                    *pc = (*pc as isize + isize::from(i.off)) as usize;
                }
            };
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                ALU32_MOV_K => r[dst] = u64::from(i.imm as u32),
                ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
                JMP_JNE_K => jump(r[dst] != i.imm as i64 as u64, &mut pc),
                JMP_JEQ_K => jump(r[dst] == i.imm as i64 as u64, &mut pc),
                JMP_EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    /// Every instruction is reachable from the first and every jump lands
    /// inside the program, the verifier's CFG check (kernel/bpf/verifier.c
    /// check_cfg: "unreachable insn", "jump out of range").
    fn assert_all_reachable(p: &[Insn]) {
        let mut seen = vec![false; p.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < p.len(), "jump out of range to {pc} in {p:?}");
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            match p[pc].code {
                JMP_EXIT => {}
                JMP_JNE_K | JMP_JEQ_K => {
                    todo.push(pc + 1);
                    todo.push((pc as isize + 1 + isize::from(p[pc].off)) as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            panic!("unreachable insn {i} in {p:?}");
        }
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(Some(major));
        r.set_minor(Some(minor));
        r.set_access(Some(acc.into()));
        r
    }

    fn prog(rules: &[LinuxDeviceCgroup]) -> (DevState, Vec<Insn>) {
        let s = DevState::from_rules(rules).expect("valid rules");
        let p = program(&s);
        assert_all_reachable(&p);
        (s, p)
    }

    /// docker's and runc's lists start with deny-all; privileged is allow-all.
    fn deny_all_then_defaults() -> Vec<LinuxDeviceCgroup> {
        let mut r = vec![rule(false, LinuxDeviceType::A, -1, -1, "rwm")];
        r.extend(default_allowed_devices());
        r
    }

    #[test]
    fn no_unreachable_code_after_an_unconditional_rule() {
        let allow_all = rule(true, LinuxDeviceType::A, -1, -1, "rwm");
        for rules in [
            vec![],
            deny_all_then_defaults(),
            vec![allow_all.clone()],
            vec![
                allow_all.clone(),
                rule(false, LinuxDeviceType::C, 1, 3, "w"),
            ],
            vec![rule(true, LinuxDeviceType::C, 1, 3, "w"), allow_all],
        ] {
            prog(&rules);
        }
        let (_, p) = prog(&[rule(true, LinuxDeviceType::A, -1, -1, "")]);
        assert_eq!(p.len(), 2, "allow-all is just `return 1`: {p:?}");
    }

    #[test]
    fn semantics_match_v1_rules() {
        let (_, p) = prog(&deny_all_then_defaults());
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "/dev/null read");
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 136, 7), 1, "pts");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 4), 0, "/dev/port denied");
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1, "mknod b allowed");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "block read denied");
        let mut rules = deny_all_then_defaults();
        rules.push(rule(false, LinuxDeviceType::C, 1, 3, "w"));
        let (_, p) = prog(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0, "later deny removes");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        let mut rules = vec![rule(true, LinuxDeviceType::A, -1, -1, "rwm")];
        rules.push(rule(false, LinuxDeviceType::C, 1, 3, "w"));
        let (_, p) = prog(&rules);
        assert_eq!(run(&p, DEV_BLOCK, ACC_WRITE, 259, 1), 1, "allow all");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 3), 0, "O_RDWR shares the w");
        assert_eq!(
            run(&prog(&[]).1, DEV_CHAR, ACC_READ, 1, 3),
            0,
            "empty denies"
        );
    }

    /// The program agrees with the v1 state it was built from, for random
    /// overlapping lists and every access combination.
    #[test]
    fn program_equals_state_for_random_lists() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let nums = [-1i64, 1, 3, 5, 7];
        let types = [LinuxDeviceType::A, LinuxDeviceType::B, LinuxDeviceType::C];
        for _ in 0..500 {
            let rules: Vec<LinuxDeviceCgroup> = (0..next(8))
                .map(|_| {
                    let acc: String = ["r", "w", "m"]
                        .iter()
                        .filter(|_| next(2) == 0)
                        .copied()
                        .collect();
                    let typ = types[next(10).min(2) as usize];
                    let (maj, min) = (nums[next(5) as usize], nums[next(5) as usize]);
                    rule(next(2) == 0, typ, maj, min, &acc)
                })
                .collect();
            let (s, p) = prog(&rules);
            for (typ, dt) in [(DEV_BLOCK, DevType::Block), (DEV_CHAR, DevType::Char)] {
                for acc in 1..=ACC_ALL {
                    for (maj, min) in [(1, 3), (1, 5), (3, 7), (7, 7), (9, 1)] {
                        let want = u64::from(s.allows(dt, acc, maj, min));
                        let got = run(&p, typ, acc, maj, min);
                        assert_eq!(got, want, "{rules:?} {typ} {acc} {maj}:{min}");
                    }
                }
            }
        }
    }

    #[test]
    fn insn_layout() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        let (_, p) = prog(&[rule(true, LinuxDeviceType::C, 1, 3, "r")]);
        assert_eq!(
            p[0],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 0,
                imm: 0
            }
        );
    }

    /// Loads and attaches the real program on this host's cgroup2 tree (pure
    /// v2, or hybrid's unified mount, where device programs are enforced too)
    /// and checks a child is confined by it. Skips when not root / no cgroup2.
    #[test]
    fn host_attach_replace_and_enforce() {
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Command, Stdio};
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0
            || std::env::var("HULL_CGROUP_HOST_TESTS").as_deref() == Ok("0")
        {
            return;
        }
        let Some(u) = crate::Hierarchy::detect().ok().and_then(|h| h.unified) else {
            return;
        };
        let dir = u
            .own_dir()
            .join(format!("hull-bpf-test-{}", std::process::id()));
        if std::fs::create_dir(&dir).is_err() {
            eprintln!("skipped: cannot create {}", dir.display());
            return;
        }
        let script = "read _; if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-ok; else echo zero-denied; fi";
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let res = (|| -> Result<(usize, Vec<String>), Error> {
            crate::fs::write(&dir, "cgroup.procs", &child.id().to_string())?;
            let null = rule(true, LinuxDeviceType::C, 1, 3, "rwm");
            let state = DevState::from_rules(&[null])?;
            apply(&dir, &state)?;
            apply(&dir, &state)?;
            let cg = File::open(&dir).map_err(|source| Error::Open {
                path: dir.clone(),
                source,
            })?;
            let attached = bpf_query::attached(cg.as_raw_fd(), bpf_query::ROOM)
                .expect("query")
                .len();
            let _ = writeln!(stdin, "go");
            Ok((
                attached,
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .collect(),
            ))
        })();
        let _ = child.kill();
        let _ = child.wait();
        let _ = crate::fs::rmdir_retry(&dir);
        let (attached, out) = res.expect("bpf device filter");
        assert_eq!(attached, 1, "re-apply must replace the program");
        assert_eq!(out, ["zero-denied"]);
        assert!(!dir.exists());
    }
}
