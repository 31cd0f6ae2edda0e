//! The exec trampoline (CVE-2019-5736 without re-executing hullc; runc
//! 1.2-rc called it runc-dmz).
//!
//! init and the exec child are copies of hullc until their final execve, so
//! a container program that *is* `/proc/self/exe` (a `#!/proc/self/exe`
//! script, a symlink to it) would make the kernel run hullc's own binary
//! there. Instead of that execve they `execveat` a tiny static ELF held in a
//! sealed memfd, which then `execve`s the real program: the process doing
//! the final execve runs the trampoline, so `/proc/self/exe` resolves to the
//! memfd, never to a file of the host. The memfd is made per start, sealed
//! (`F_SEAL_WRITE|SHRINK|GROW|SEAL`) and mode 0111, so nothing can write it,
//! and it is gone once the program runs (its fd is close-on-exec).
//!
//! Protocol: `argv = [ERRFD, PATH, args[0], args[1], ...]`, envp as is. The
//! trampoline first makes itself non-dumpable (it holds ERRFD, the caller's
//! channel; execute-only, the memfd already makes the exec non-dumpable
//! for a process without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH), then checks
//! that there are at least three arguments and that argv[0] is 1–9 ASCII
//! digits (else `exit_group(126)`: run any other way, as the interpreter of
//! a `#!/proc/self/exe` script for one, it does nothing; a script whose
//! interpreter is a digit-named link to `/proc/self/exe` loses one argument
//! per round, so even that ends), sets FD_CLOEXEC on ERRFD and
//! `execve(PATH, &argv[2], envp)`. If that returns, it blocks SIGPIPE,
//! writes a [`REPORT_LEN`]-byte report to ERRFD — the byte
//! [`REPORT_MAGIC`] (0xff, which starts no UTF-8 text) and the errno as a
//! little-endian u32 — and exits with 127. ERRFD is the channel that already
//! tells the caller whether the exec succeeded (EOF), so the caller makes it
//! inheritable just before the `execveat`; the reader turns the report into
//! the message a failed direct execve gives ([`crate::process::exec_failure`]).
//!
//! What the extra execve leaves alone: capabilities (the memfd has no file
//! capabilities and no set-id bit, so for root P' = P(inh) | bset, clamped
//! to P under no_new_privs, and for others P' = P(amb): functions of sets
//! that the first execve keeps, so the second one computes the same),
//! no_new_privs, rlimits, the signal mask and dispositions (all default by
//! then), the pid, the fds below 3+N, argv[0], the environment and, at the
//! second execve, `comm` and AT_EXECFN. The trampoline runs under the
//! container's seccomp filter; `exeseal::trampoline_usable` checks that the
//! filter lets through its syscalls.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TrampolineError {
    #[error("the exec trampoline is built for x86_64 only")]
    Unsupported,
    #[error("exec trampoline: {op}")]
    Sys {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn last(op: &'static str) -> TrampolineError {
    TrampolineError::Sys {
        op,
        source: std::io::Error::last_os_error(),
    }
}

/// First byte of a failure report: 0xff never starts UTF-8 text, so it
/// cannot be mistaken for init's textual errors.
pub(crate) const REPORT_MAGIC: u8 = 0xff;
/// Magic byte + errno (u32, little-endian).
pub(crate) const REPORT_LEN: usize = 5;

/// The errno of a trampoline failure report, if `b` is one.
pub(crate) fn parse_report(b: &[u8]) -> Option<i32> {
    match b {
        [REPORT_MAGIC, e @ ..] if b.len() == REPORT_LEN => {
            let errno = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            i32::try_from(errno).ok().filter(|e| *e > 0)
        }
        _ => None,
    }
}

/// Load address of the image (ET_EXEC; any page-aligned address above
/// vm.mmap_min_addr works, this is the traditional one).
#[cfg(target_arch = "x86_64")]
const VADDR: u64 = 0x40_0000;
/// Where the code starts: after the ELF header (64) and two program
/// headers (2 × 56).
#[cfg(target_arch = "x86_64")]
const CODE_OFF: usize = 0xb0;
/// The whole file.
#[cfg(target_arch = "x86_64")]
const IMAGE_LEN: usize = 0x178;

/// The trampoline: a static x86_64 ELF executable, no libc, 376 bytes.
/// Multi-byte fields are little-endian; the listing is `as` Intel syntax,
/// offsets relative to the code start (file offset 0xb0, address 0x4000b0).
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const IMAGE: [u8; IMAGE_LEN] = [
    // ---- ELF header (Elf64_Ehdr), offset 0x00 ----
    0x7f, b'E', b'L', b'F', // e_ident[EI_MAG0..3]
    2,                      // EI_CLASS: ELFCLASS64
    1,                      // EI_DATA: ELFDATA2LSB
    1,                      // EI_VERSION: EV_CURRENT
    0,                      // EI_OSABI: ELFOSABI_SYSV
    0, 0, 0, 0, 0, 0, 0, 0, // EI_ABIVERSION + padding
    2, 0,                   // e_type: ET_EXEC
    0x3e, 0,                // e_machine: EM_X86_64
    1, 0, 0, 0,             // e_version: EV_CURRENT
    0xb0, 0x00, 0x40, 0, 0, 0, 0, 0, // e_entry: 0x4000b0 (VADDR + CODE_OFF)
    0x40, 0, 0, 0, 0, 0, 0, 0,       // e_phoff: 64, right after this header
    0, 0, 0, 0, 0, 0, 0, 0,          // e_shoff: no section headers
    0, 0, 0, 0,             // e_flags
    64, 0,                  // e_ehsize
    56, 0,                  // e_phentsize
    2, 0,                   // e_phnum
    64, 0,                  // e_shentsize
    0, 0,                   // e_shnum
    0, 0,                   // e_shstrndx: SHN_UNDEF
    // ---- program header 0 (Elf64_Phdr), offset 0x40: the whole file ----
    1, 0, 0, 0,             // p_type: PT_LOAD
    5, 0, 0, 0,             // p_flags: PF_R | PF_X (never writable)
    0, 0, 0, 0, 0, 0, 0, 0,          // p_offset: 0
    0, 0, 0x40, 0, 0, 0, 0, 0,       // p_vaddr: 0x400000
    0, 0, 0x40, 0, 0, 0, 0, 0,       // p_paddr: 0x400000
    0x78, 0x01, 0, 0, 0, 0, 0, 0,    // p_filesz: 0x178
    0x78, 0x01, 0, 0, 0, 0, 0, 0,    // p_memsz: 0x178 (no bss)
    0, 0x10, 0, 0, 0, 0, 0, 0,       // p_align: 0x1000
    // ---- program header 1, offset 0x78: a non-executable stack ----
    0x51, 0xe5, 0x74, 0x64, // p_type: PT_GNU_STACK
    6, 0, 0, 0,             // p_flags: PF_R | PF_W
    0, 0, 0, 0, 0, 0, 0, 0, // p_offset
    0, 0, 0, 0, 0, 0, 0, 0, // p_vaddr
    0, 0, 0, 0, 0, 0, 0, 0, // p_paddr
    0, 0, 0, 0, 0, 0, 0, 0, // p_filesz
    0, 0, 0, 0, 0, 0, 0, 0, // p_memsz
    0x10, 0, 0, 0, 0, 0, 0, 0, // p_align
    // ---- code, offset 0xb0. At entry [rsp] = argc, then argv[], NULL,
    // envp[], NULL (the System V x86_64 process start). ----
    // Not dumpable, first thing: the exec made this process dumpable again
    // with the container's credentials, and it holds the caller's channel
    // (ERRFD), which a container process could otherwise take with
    // pidfd_getfd or ptrace. (The memfd being execute-only already makes
    // the exec non-dumpable for a process without CAP_DAC_OVERRIDE or
    // CAP_DAC_READ_SEARCH.) The program's execve sets dumpable afresh.
    0xbf, 0x04, 0x00, 0x00, 0x00, // 00: mov  edi, 4           ; PR_SET_DUMPABLE
    0x31, 0xf6,                   // 05: xor  esi, esi         ; 0: not dumpable
    0xb8, 0x9d, 0x00, 0x00, 0x00, // 07: mov  eax, 157         ; SYS_prctl
    0x0f, 0x05,                   // 0c: syscall
    0x48, 0x89, 0xe3,             // 0e: mov  rbx, rsp         ; rbx = &argc
    0x48, 0x83, 0x3b, 0x03,       // 11: cmp  qword [rbx], 3
    0x0f, 0x82, 0x9f, 0, 0, 0,    // 15: jb   bad (ba)         ; ERRFD, PATH, args[0]
    0x48, 0x8b, 0x73, 0x08,       // 1b: mov  rsi, [rbx+8]     ; rsi = argv[0]
    0x31, 0xff,                   // 1f: xor  edi, edi         ; edi = fd
    0x0f, 0xb6, 0x06,             // 21: movzx eax, byte [rsi]
    0x85, 0xc0,                   // 24: test eax, eax
    0x0f, 0x84, 0x8e, 0, 0, 0,    // 26: je   bad (ba)         ; empty argv[0]
    // digit:
    0x83, 0xe8, 0x30,             // 2c: sub  eax, '0'
    0x83, 0xf8, 0x09,             // 2f: cmp  eax, 9
    0x0f, 0x87, 0x82, 0, 0, 0,    // 32: ja   bad (ba)         ; not a digit (unsigned)
    0x81, 0xff, 0x00, 0xe1, 0xf5, 0x05, // 38: cmp edi, 100000000
    0x0f, 0x83, 0x76, 0, 0, 0,    // 3e: jae  bad (ba)         ; > 9 digits: no overflow
    0x6b, 0xff, 0x0a,             // 44: imul edi, edi, 10
    0x01, 0xc7,                   // 47: add  edi, eax
    0x48, 0xff, 0xc6,             // 49: inc  rsi
    0x0f, 0xb6, 0x06,             // 4c: movzx eax, byte [rsi]
    0x85, 0xc0,                   // 4f: test eax, eax
    0x75, 0xd9,                   // 51: jne  digit (2c)
    0x41, 0x89, 0xfc,             // 53: mov  r12d, edi        ; keep fd (syscall saves r12)
    0xbe, 0x02, 0x00, 0x00, 0x00, // 56: mov  esi, 2           ; F_SETFD
    0xba, 0x01, 0x00, 0x00, 0x00, // 5b: mov  edx, 1           ; FD_CLOEXEC
    0xb8, 0x48, 0x00, 0x00, 0x00, // 60: mov  eax, 72          ; SYS_fcntl
    0x0f, 0x05,                   // 65: syscall               ; success closes ERRFD: EOF
    0x48, 0x8b, 0x7b, 0x10,       // 67: mov  rdi, [rbx+16]    ; argv[1] = PATH
    0x48, 0x8d, 0x73, 0x18,       // 6b: lea  rsi, [rbx+24]    ; &argv[2]
    0x48, 0x8b, 0x13,             // 6f: mov  rdx, [rbx]       ; argc
    0x48, 0x8d, 0x54, 0xd3, 0x10, // 72: lea  rdx, [rbx+rdx*8+16] ; envp = &argv[argc+1]
    0xb8, 0x3b, 0x00, 0x00, 0x00, // 77: mov  eax, 59          ; SYS_execve
    0x0f, 0x05,                   // 7c: syscall               ; returns only -errno
    0xf7, 0xd8,                   // 7e: neg  eax              ; errno (zero-extends rax)
    0x48, 0xc1, 0xe0, 0x08,       // 80: shl  rax, 8
    0xb0, 0xff,                   // 84: mov  al, 0xff         ; REPORT_MAGIC
    0x50,                         // 86: push rax              ; [rsp] = ff, errno LE
    // Block SIGPIPE: a reader that went away gives EPIPE here, and the exit
    // status stays 127 (Rust's send used MSG_NOSIGNAL). Only on this failure
    // path, so the program never inherits the mask.
    0x68, 0x00, 0x10, 0x00, 0x00, // 87: push 0x1000           ; sigset {SIGPIPE (13)}
    0x31, 0xff,                   // 8c: xor  edi, edi         ; SIG_BLOCK
    0x48, 0x89, 0xe6,             // 8e: mov  rsi, rsp
    0x31, 0xd2,                   // 91: xor  edx, edx         ; no old set
    0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // 93: mov r10d, 8     ; sizeof(sigset_t)
    0xb8, 0x0e, 0x00, 0x00, 0x00, // 99: mov  eax, 14          ; SYS_rt_sigprocmask
    0x0f, 0x05,                   // 9e: syscall
    0x58,                         // a0: pop  rax              ; drop the sigset
    0x44, 0x89, 0xe7,             // a1: mov  edi, r12d        ; ERRFD
    0x48, 0x89, 0xe6,             // a4: mov  rsi, rsp         ; the report
    0xba, 0x05, 0x00, 0x00, 0x00, // a7: mov  edx, 5           ; REPORT_LEN
    0xb8, 0x01, 0x00, 0x00, 0x00, // ac: mov  eax, 1           ; SYS_write
    0x0f, 0x05,                   // b1: syscall
    0xbf, 0x7f, 0x00, 0x00, 0x00, // b3: mov  edi, 127
    0xeb, 0x05,                   // b8: jmp  exit (bf)
    // bad:
    0xbf, 0x7e, 0x00, 0x00, 0x00, // ba: mov  edi, 126
    // exit:
    0xb8, 0xe7, 0x00, 0x00, 0x00, // bf: mov  eax, 231         ; SYS_exit_group
    0x0f, 0x05,                   // c4: syscall
    0x0f, 0x0b,                   // c6: ud2                   ; unreachable: die if not
];

/// The little-endian u64 at `off` of the image.
#[cfg(target_arch = "x86_64")]
const fn le64(off: usize) -> u64 {
    let b = &IMAGE;
    u64::from_le_bytes([
        b[off],
        b[off + 1],
        b[off + 2],
        b[off + 3],
        b[off + 4],
        b[off + 5],
        b[off + 6],
        b[off + 7],
    ])
}

// The hand-written fields agree with the layout, or the build fails:
// e_entry, PT_LOAD's p_vaddr, p_filesz and p_memsz.
#[cfg(target_arch = "x86_64")]
const _: () = {
    assert!(le64(0x18) == VADDR + CODE_OFF as u64);
    assert!(le64(0x40 + 0x10) == VADDR);
    assert!(le64(0x40 + 0x20) == IMAGE_LEN as u64);
    assert!(le64(0x40 + 0x28) == IMAGE_LEN as u64);
};

/// The image for this architecture, if there is one.
fn image() -> Option<&'static [u8]> {
    #[cfg(target_arch = "x86_64")]
    return Some(&IMAGE);
    #[cfg(not(target_arch = "x86_64"))]
    return None;
}

/// The seals that make the memfd immutable (the file and the seal set).
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// A sealed memfd holding the trampoline, made by the caller before clone
/// (the child inherits it; close-on-exec is fine: `execveat` uses the fd,
/// not a path, and an ELF image needs no `/dev/fd` path afterwards).
#[derive(Debug)]
pub(crate) struct Trampoline {
    fd: OwnedFd,
}

impl Trampoline {
    /// Makes the memfd. `Err` when this host cannot execute it: not
    /// x86_64, or memfds may not be executed (vm.memfd_noexec=2: EACCES).
    pub(crate) fn new() -> Result<Trampoline, TrampolineError> {
        let image = image().ok_or(TrampolineError::Unsupported)?;
        let fd = memfd()?;
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, image).map_err(|source| TrampolineError::Sys {
            op: "writing the memfd",
            source,
        })?;
        let fd = OwnedFd::from(f);
        // Execute-only: an exec of a file the process may not read is
        // non-dumpable from the start (the kernel's would_dump), so the
        // container's other processes can't reach into the trampoline
        // before its first instruction makes that so for everyone.
        // SAFETY: fchmod on our own memfd.
        if unsafe { libc::fchmod(fd.as_raw_fd(), 0o111) } != 0 {
            return Err(last("fchmod 0111"));
        }
        // F_SEAL_EXEC (6.3): the mode can no longer change; older kernels
        // reject it (EINVAL) and the mode matters little there, so optional.
        // SAFETY: fcntl(F_ADD_SEALS) on our own memfd, integer argument.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_EXEC) };
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
            return Err(last("sealing the memfd"));
        }
        Ok(Trampoline { fd })
    }

    /// `execveat(trampoline, "", [ERRFD, path, args...], env, AT_EMPTY_PATH)`
    /// after making `errfd` inheritable. Returns only the error (`errfd` is
    /// close-on-exec again then).
    pub(crate) fn exec(
        &self,
        errfd: BorrowedFd,
        path: &CStr,
        args: &[CString],
        env: &[CString],
    ) -> nix::Error {
        let fd = errfd.as_raw_fd();
        let Ok(fd_arg) = CString::new(fd.to_string()) else {
            return nix::Error::EINVAL;
        };
        let argv: Vec<*const libc::c_char> = [fd_arg.as_c_str(), path]
            .into_iter()
            .chain(args.iter().map(CString::as_c_str))
            .map(CStr::as_ptr)
            .chain([std::ptr::null()])
            .collect();
        let envp: Vec<*const libc::c_char> = env
            .iter()
            .map(|e| e.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        // SAFETY: F_SETFD on a live fd the caller lends us, integer argument.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return nix::Error::last();
        }
        // SAFETY: argv/envp are NULL-terminated arrays of pointers into
        // C strings that outlive the call; on success this image is gone.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                self.fd.as_raw_fd(),
                c"".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        let err = nix::Error::last();
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        err
    }
}

/// memfd_create("hullc-trampoline", CLOEXEC | ALLOW_SEALING | EXEC).
fn memfd() -> Result<OwnedFd, TrampolineError> {
    let name = c"hullc-trampoline";
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (6.3) asks for an executable memfd explicitly, which
    // vm.memfd_noexec=1 requires; =2 refuses it with EACCES (no trampoline
    // then). Kernels before 6.3 know no such flag (EINVAL) and no sysctl.
    // SAFETY: memfd_create reads a NUL-terminated name; returns a new fd or -1.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(last("memfd_create"));
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
#[path = "trampoline_tests.rs"]
mod tests;
