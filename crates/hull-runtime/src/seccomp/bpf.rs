//! A tiny classic-BPF assembler with forward labels.
//!
//! Classic BPF (the only kind seccomp filters may use) has no backward jumps,
//! and its conditional jumps encode both targets as 8-bit offsets relative to
//! the next instruction. Only `ja` carries a 32-bit offset. The code
//! generator therefore works on labels, and `finish` lays the program out:
//! every conditional branch whose target lies more than 255 instructions
//! ahead gets a `ja` trampoline placed right after it. Inserting trampolines
//! only ever lengthens distances, so the layout is iterated until no new
//! trampoline is needed (it terminates: at most two per branch).

use super::SeccompError;

// Opcode parts from <linux/bpf_common.h>.
pub(super) const BPF_LD: u16 = 0x00;
pub(super) const BPF_ALU: u16 = 0x04;
pub(super) const BPF_JMP: u16 = 0x05;
pub(super) const BPF_RET: u16 = 0x06;
pub(super) const BPF_W: u16 = 0x00;
pub(super) const BPF_ABS: u16 = 0x20;
pub(super) const BPF_AND: u16 = 0x50;
pub(super) const BPF_JA: u16 = 0x00;
pub(super) const BPF_JEQ: u16 = 0x10;
pub(super) const BPF_JGT: u16 = 0x20;
pub(super) const BPF_JGE: u16 = 0x30;
pub(super) const BPF_K: u16 = 0x00;

/// The kernel refuses filters longer than this (BPF_MAXINSNS).
pub(super) const MAX_INSNS: usize = 4096;

/// A conditional jump's comparison (always against the constant `k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Gt,
    Ge,
}

impl Cmp {
    fn code(self) -> u16 {
        BPF_JMP
            | BPF_K
            | match self {
                Cmp::Eq => BPF_JEQ,
                Cmp::Gt => BPF_JGT,
                Cmp::Ge => BPF_JGE,
            }
    }
}

/// A position in the program, bound once with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Label(usize);

/// Where a conditional jump goes.
#[derive(Clone, Copy, Debug)]
pub(super) enum To {
    /// The instruction written next.
    Next,
    L(Label),
}

enum Item {
    /// A non-jump instruction: load, ALU or return.
    Stmt {
        code: u16,
        k: u32,
    },
    Jmp {
        cmp: Cmp,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Bind(Label),
}

#[derive(Default)]
pub(super) struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    pub(super) fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    pub(super) fn bind(&mut self, l: Label) {
        self.items.push(Item::Bind(l));
    }

    /// `A = *(u32 *)(seccomp_data + off)`.
    pub(super) fn load(&mut self, off: u32) {
        let code = BPF_LD | BPF_W | BPF_ABS;
        self.items.push(Item::Stmt { code, k: off });
    }

    /// `A &= k`.
    pub(super) fn and(&mut self, k: u32) {
        let code = BPF_ALU | BPF_AND | BPF_K;
        self.items.push(Item::Stmt { code, k });
    }

    pub(super) fn ret(&mut self, k: u32) {
        let code = BPF_RET | BPF_K;
        self.items.push(Item::Stmt { code, k });
    }

    /// `if A <cmp> k goto jt else goto jf`.
    pub(super) fn jump(&mut self, cmp: Cmp, k: u32, jt: To, jf: To) {
        let mut next = None;
        let mut resolve = |to: To, asm: &mut Self| match to {
            To::L(l) => l,
            To::Next => *next.get_or_insert_with(|| asm.label()),
        };
        let jt = resolve(jt, self);
        let jf = resolve(jf, self);
        self.items.push(Item::Jmp { cmp, k, jt, jf });
        if let Some(l) = next {
            self.bind(l);
        }
    }

    /// Lays the program out and encodes it.
    pub(super) fn finish(self) -> Result<Vec<libc::sock_filter>, SeccompError> {
        // far[i] = (jt needs a trampoline, jf needs one) for item i.
        let mut far = vec![(false, false); self.items.len()];
        let pos = loop {
            let (pos, at) = self.layout(&far);
            let mut changed = false;
            for (i, item) in self.items.iter().enumerate() {
                let Item::Jmp { jt, jf, .. } = item else {
                    continue;
                };
                // Offsets count from the instruction after the jump.
                let base = at[i] + 1;
                let (ft, ff) = &mut far[i];
                for (target, is_far) in [(jt, ft), (jf, ff)] {
                    let dist = pos[target.0]
                        .checked_sub(base)
                        .ok_or(SeccompError::Internal(
                            "backward jump in the generated filter",
                        ))?;
                    if !*is_far && dist > usize::from(u8::MAX) {
                        *is_far = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break pos;
            }
        };
        self.encode(&far, &pos)
    }

    /// Position of each label and of each item, given the trampolines.
    fn layout(&self, far: &[(bool, bool)]) -> (Vec<usize>, Vec<usize>) {
        let mut pos = vec![usize::MAX; self.labels];
        let mut at = Vec::with_capacity(self.items.len());
        let mut n = 0;
        for (i, item) in self.items.iter().enumerate() {
            at.push(n);
            match item {
                Item::Bind(l) => pos[l.0] = n,
                Item::Jmp { .. } => n += 1 + usize::from(far[i].0) + usize::from(far[i].1),
                Item::Stmt { .. } => n += 1,
            }
        }
        (pos, at)
    }

    fn encode(
        &self,
        far: &[(bool, bool)],
        pos: &[usize],
    ) -> Result<Vec<libc::sock_filter>, SeccompError> {
        let mut out: Vec<libc::sock_filter> = Vec::new();
        let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        let off = |target: usize, from: usize| -> Result<u32, SeccompError> {
            let d = target.checked_sub(from + 1).ok_or(SeccompError::Internal(
                "backward jump in the generated filter",
            ))?;
            u32::try_from(d).map_err(|_| SeccompError::Internal("jump offset overflows"))
        };
        let short = |d: u32| {
            u8::try_from(d).map_err(|_| SeccompError::Internal("conditional jump too long"))
        };
        for (i, item) in self.items.iter().enumerate() {
            match *item {
                Item::Bind(_) => {}
                Item::Stmt { code, k } => out.push(ins(code, 0, 0, k)),
                Item::Jmp { cmp, k, jt, jf } => {
                    let here = out.len();
                    let (ft, ff) = far[i];
                    // Trampolines sit at here+1 (jt's, if any) then jf's.
                    let t_at = here + 1;
                    let f_at = here + 1 + usize::from(ft);
                    let jt_off = if ft { 0 } else { short(off(pos[jt.0], here)?)? };
                    let jf_off = if ff {
                        short(off(f_at, here)?)?
                    } else {
                        short(off(pos[jf.0], here)?)?
                    };
                    out.push(ins(cmp.code(), jt_off, jf_off, k));
                    if ft {
                        out.push(ins(BPF_JMP | BPF_JA, 0, 0, off(pos[jt.0], t_at)?));
                    }
                    if ff {
                        out.push(ins(BPF_JMP | BPF_JA, 0, 0, off(pos[jf.0], f_at)?));
                    }
                }
            }
        }
        if out.len() > MAX_INSNS {
            return Err(SeccompError::TooLarge(out.len()));
        }
        Ok(out)
    }
}
