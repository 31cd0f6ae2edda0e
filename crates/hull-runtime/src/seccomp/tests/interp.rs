//! A classic-BPF interpreter for the instructions seccomp filters use, with
//! the kernel's rules (seccomp_check_filter): aligned 32-bit loads inside
//! `struct seccomp_data`, forward jumps only, every path ends in `ret`.

use crate::seccomp::bpf::*;

/// `struct seccomp_data`.
pub(super) struct Data {
    pub(super) nr: u32,
    pub(super) arch: u32,
    pub(super) args: [u64; 6],
}

impl Data {
    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        // instruction_pointer (8..16) stays 0.
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        b
    }
}

/// Runs `prog` on `d` and returns the filter's verdict; panics on anything
/// the kernel would refuse to load or run.
pub(super) fn run(prog: &[libc::sock_filter], d: &Data) -> u32 {
    assert!(
        !prog.is_empty() && prog.len() <= MAX_INSNS,
        "program length"
    );
    let data = d.bytes();
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = prog
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the end at {pc}"));
        pc += 1;
        let k = i.k;
        match i.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => {
                let off = k as usize;
                assert!(
                    off & 3 == 0 && off + 4 <= data.len(),
                    "bad load offset {off}"
                );
                a = u32::from_le_bytes(data[off..off + 4].try_into().expect("4 bytes"));
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= k,
            c if c == BPF_RET | BPF_K => return k,
            c if c == BPF_JMP | BPF_JA => pc += k as usize,
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    x if x == BPF_JEQ => a == k,
                    x if x == BPF_JGT => a > k,
                    x if x == BPF_JGE => a >= k,
                    _ => panic!("unexpected jump {c:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c => panic!("unexpected opcode {c:#x} at {}", pc - 1),
        }
    }
}

/// Counts instructions of a kind, for structure checks.
pub(super) fn count(prog: &[libc::sock_filter], code: u16) -> usize {
    prog.iter().filter(|i| i.code == code).count()
}
