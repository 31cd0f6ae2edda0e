use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use super::*;

#[test]
fn reports_are_magic_byte_and_errno() {
    assert_eq!(parse_report(&[0xff, 2, 0, 0, 0]), Some(libc::ENOENT));
    assert_eq!(parse_report(&[0xff, 8, 0, 0, 0]), Some(libc::ENOEXEC));
    assert_eq!(parse_report(&[0xff, 0, 1, 0, 0]), Some(256));
    // Not reports: text, wrong length, errno 0 or out of range.
    assert_eq!(parse_report(b"process.args: exec"), None);
    assert_eq!(parse_report(&[0xff, 2, 0, 0]), None);
    assert_eq!(parse_report(&[0xff, 2, 0, 0, 0, 0]), None);
    assert_eq!(parse_report(&[0xff, 0, 0, 0, 0]), None);
    assert_eq!(parse_report(&[0xff, 0xff, 0xff, 0xff, 0xff]), None);
    assert_eq!(parse_report(&[]), None);
}

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use super::*;

    fn u16_at(o: usize) -> u16 {
        u16::from_le_bytes([IMAGE[o], IMAGE[o + 1]])
    }
    fn u32_at(o: usize) -> u32 {
        u32::from_le_bytes(IMAGE[o..o + 4].try_into().expect("4 bytes"))
    }
    fn u64_at(o: usize) -> u64 {
        u64::from_le_bytes(IMAGE[o..o + 8].try_into().expect("8 bytes"))
    }

    #[test]
    fn elf_header_fields() {
        assert_eq!(&IMAGE[..4], b"\x7fELF");
        assert_eq!(IMAGE[4], 2, "ELFCLASS64");
        assert_eq!(IMAGE[5], 1, "ELFDATA2LSB");
        assert_eq!(IMAGE[6], 1, "EV_CURRENT");
        assert_eq!(u16_at(0x10), 2, "e_type ET_EXEC");
        assert_eq!(u16_at(0x12), 0x3e, "e_machine EM_X86_64");
        assert_eq!(u32_at(0x14), 1, "e_version");
        assert_eq!(u64_at(0x18), VADDR + CODE_OFF as u64, "e_entry");
        assert_eq!(u64_at(0x20), 64, "e_phoff");
        assert_eq!(u64_at(0x28), 0, "e_shoff");
        assert_eq!(u16_at(0x34), 64, "e_ehsize");
        assert_eq!(u16_at(0x36), 56, "e_phentsize");
        assert_eq!(u16_at(0x38), 2, "e_phnum");
        assert_eq!(u16_at(0x3c), 0, "e_shnum");
        assert_eq!(64 + 2 * 56, CODE_OFF, "code right after the headers");
        // PT_LOAD: the whole file, read + execute, at VADDR.
        let ph = 0x40;
        assert_eq!(u32_at(ph), 1, "PT_LOAD");
        assert_eq!(u32_at(ph + 4), 5, "PF_R | PF_X");
        assert_eq!(u64_at(ph + 8), 0, "p_offset");
        assert_eq!(u64_at(ph + 0x10), VADDR, "p_vaddr");
        assert_eq!(u64_at(ph + 0x20), IMAGE.len() as u64, "p_filesz");
        assert_eq!(u64_at(ph + 0x28), IMAGE.len() as u64, "p_memsz");
        assert_eq!(u64_at(ph + 0x30), 0x1000, "p_align");
        assert_eq!(VADDR % 0x1000, 0, "page-aligned with p_offset 0");
        let st = ph + 56;
        assert_eq!(u32_at(st), 0x6474_e551, "PT_GNU_STACK");
        assert_eq!(u32_at(st + 4), 6, "stack PF_R | PF_W, not executable");
        // The code ends with exit_group's syscall and ud2.
        assert_eq!(&IMAGE[IMAGE.len() - 4..], &[0x0f, 0x05, 0x0f, 0x0b]);
    }

    #[test]
    fn the_memfd_is_sealed_and_named() {
        let t = Trampoline::new().expect("trampoline memfd");
        let fd = t.fd.as_raw_fd();
        // SAFETY: F_GET_SEALS reads the seal set of our own memfd.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        assert_eq!(seals & SEALS, SEALS, "seals {seals:#x}");
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("readlink");
        assert!(
            link.to_string_lossy()
                .starts_with("/memfd:hullc-trampoline"),
            "{link:?}"
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))
            .expect("reopen for writing");
        let e = std::io::Write::write_all(&mut f, b"x").expect_err("sealed");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        let data = std::fs::read(format!("/proc/self/fd/{fd}")).expect("read back");
        assert_eq!(data, IMAGE);
    }

    /// Runs the trampoline in a forked child with `argv` ("ERRFD" stands
    /// for the write end of a pipe) and `env`; returns its exit status and
    /// what it wrote to the pipe.
    fn run(argv: &[&str], env: &[&str]) -> (i32, Vec<u8>) {
        run_with(argv, env, false)
    }

    /// `run`, with the pipe's read end closed before the trampoline starts
    /// when `reader_gone` (a caller that went away).
    fn run_with(argv: &[&str], env: &[&str], reader_gone: bool) -> (i32, Vec<u8>) {
        let t = Trampoline::new().expect("trampoline memfd");
        let (r, w): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let cs = |v: &[&str]| -> Vec<CString> {
            v.iter()
                .map(|a| match *a {
                    "ERRFD" => w.as_raw_fd().to_string(),
                    a => a.replace("ERRFD", &w.as_raw_fd().to_string()),
                })
                .map(|a| CString::new(a).expect("no NUL"))
                .collect()
        };
        let (args, envs) = (cs(argv), cs(env));
        let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
            v.iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        let (argp, envp) = (ptrs(&args), ptrs(&envs));
        let (tfd, wfd) = (t.fd.as_raw_fd(), w.as_raw_fd());
        let r = if reader_gone {
            drop(r);
            None
        } else {
            Some(r)
        };
        // SAFETY: the child only makes raw syscalls (async-signal-safe) on
        // memory prepared before fork, then _exits if execveat failed.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above; fds and pointer arrays are valid here.
            unsafe {
                libc::fcntl(wfd, libc::F_SETFD, 0);
                libc::syscall(
                    libc::SYS_execveat,
                    tfd,
                    c"".as_ptr(),
                    argp.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                libc::_exit(99);
            }
        }
        assert!(pid > 0, "fork");
        drop(w);
        let mut out = Vec::new();
        if let Some(r) = r {
            std::fs::File::from(r)
                .read_to_end(&mut out)
                .expect("read pipe");
        }
        let mut st = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(libc::WIFEXITED(st), "trampoline died: status {st:#x}");
        (libc::WEXITSTATUS(st), out)
    }

    #[test]
    fn execs_the_program_with_its_argv_env_and_errfd_closed() {
        assert_eq!(run(&["ERRFD", "/bin/true", "true"], &[]), (0, vec![]));
        // argv[0], the environment and comm are the program's; the error
        // fd is closed at its execve (EOF for the caller).
        // (`sh -c SCRIPT A` makes A its $0; argv[0] is in cmdline.)
        let script = r#"test "$0" = a1 && test "$HULL_T" = env-ok \
            && test "$(head -c 6 /proc/$$/cmdline | tr '\0' .)" = name0. \
            && test "$(cat /proc/$$/comm)" = sh && test ! -e /proc/$$/fd/ERRFD"#;
        let r = run(
            &["ERRFD", "/bin/sh", "name0", "-c", script, "a1"],
            &["HULL_T=env-ok"],
        );
        assert_eq!(r, (0, vec![]));
        let r = run(&["ERRFD", "/bin/sh", "sh", "-c", "exit 7"], &[]);
        assert_eq!(r, (7, vec![]));
    }

    #[test]
    fn a_failed_execve_is_reported_with_its_errno() {
        let r = run(&["ERRFD", "/nonexistent-hull-trampoline", "x"], &[]);
        assert_eq!(r, (127, vec![0xff, libc::ENOENT as u8, 0, 0, 0]));
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, b"\x01\x02 not an executable\n").expect("write");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&garbage, mode).expect("chmod");
        let g = garbage.to_str().expect("utf-8");
        let r = run(&["ERRFD", g, g], &[]);
        assert_eq!(r, (127, vec![0xff, libc::ENOEXEC as u8, 0, 0, 0]));
        assert_eq!(parse_report(&r.1), Some(libc::ENOEXEC));
    }

    #[test]
    fn a_report_to_a_caller_that_went_away_is_not_death_by_sigpipe() {
        // SIGPIPE is at its default here (init and the exec child reset
        // every signal before the exec); the trampoline blocks it, so the
        // write fails with EPIPE and the exit status is still 127.
        // SAFETY: rt_sigaction through libc's signal() with SIG_DFL.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let r = run_with(&["ERRFD", "/nonexistent-hull-trampoline", "x"], &[], true);
        // SAFETY: restores the disposition read above.
        unsafe { libc::signal(libc::SIGPIPE, old) };
        assert_eq!(r, (127, vec![]));
    }

    #[test]
    fn any_other_argv_exits_126_without_running_anything() {
        for argv in [
            &["x", "/bin/sh", "sh", "-c", "exit 0"][..],
            &["", "/bin/true", "true"],
            &["1x", "/bin/true", "true"],
            &["1234567890", "/bin/true", "true"],
            // What the kernel passes to a `#!/proc/self/exe` interpreter.
            &["/proc/self/exe", "/evil"],
            &["ERRFD"],
            // ERRFD, PATH and at least args[0]: a script whose interpreter
            // is a digit-named link to /proc/self/exe loses an argument a
            // round and stops here.
            &["ERRFD", "/bin/true"],
        ] {
            assert_eq!(run(argv, &[]), (126, vec![]), "argv {argv:?}");
        }
    }
}
