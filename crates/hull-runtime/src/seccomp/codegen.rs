//! Profile → classic BPF over `struct seccomp_data`.
//!
//! Layout:
//! ```text
//!   A = arch
//!   per architecture (native first): if A != AUDIT_ARCH_x goto next arch
//!       A = nr                      (x86_64/x32: split on bit 30 first)
//!       if A > last named syscall: ret ERRNO(ENOSYS)   (runc's stub)
//!       binary search over the sorted syscall numbers (jge), down to leaves
//!       of up to LEAF numbers tested with jeq; each leaf is followed by its
//!       own `ret default`, the `ret` of each plain action it uses and the
//!       argument-checking bodies, so that nearly every jump is short
//!   ret KILL_PROCESS                (an architecture the filter does not know)
//! ```
//! A ~400-syscall profile costs about 9 comparisons per syscall instead of
//! the ~200 of libseccomp's default linear chain.

use std::collections::{BTreeMap, HashMap};

use oci_spec::runtime::LinuxSeccompOperator as Op;

use super::bpf::{Asm, Cmp, Label, To};
use super::{ArchId, Cond, Profile, Rule, SeccompError, X32_SYSCALL_BIT};

/// Syscall numbers per leaf of the search tree: a leaf costs its jeqs plus
/// one `ret` per distinct action, so larger leaves share more returns and
/// need fewer tree nodes, at a few more comparisons per syscall.
const LEAF: usize = 8;

// offsetof(struct seccomp_data, ...): int nr; __u32 arch;
// __u64 instruction_pointer; __u64 args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// What a syscall whose architecture the filter does not cover gets. The
/// whole process dies: killing one thread would leave the rest running in
/// an undefined state.
pub(super) const BAD_ARCH: u32 = libc::SECCOMP_RET_KILL_PROCESS;

type Rules = BTreeMap<u32, Vec<Rule>>;

pub(super) fn generate(
    p: &Profile,
    native: ArchId,
) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let mut asm = Asm::default();
    let bad_arch = asm.label();
    let enosys = asm.label();
    let stub = |asm: &mut Asm, a: ArchId| {
        if let Some(last) = p.enosys_above.get(&a) {
            asm.jump(Cmp::Gt, *last, To::L(enosys), To::Next);
        }
    };
    // One section per AUDIT_ARCH value: x86_64 and x32 share theirs.
    let mut sections: Vec<(u32, Vec<ArchId>)> = Vec::new();
    let mut order: Vec<ArchId> = p.arches.keys().copied().collect();
    order.sort_by_key(|a| (a.audit() != native.audit(), *a));
    for a in order {
        match sections.iter_mut().find(|(audit, _)| *audit == a.audit()) {
            Some((_, list)) => list.push(a),
            None => sections.push((a.audit(), vec![a])),
        }
    }
    asm.load(OFF_ARCH);
    for (audit, list) in &sections {
        let next = asm.label();
        asm.jump(Cmp::Eq, *audit, To::Next, To::L(next));
        asm.load(OFF_NR);
        let rules = |a: ArchId| p.arches.get(&a);
        if *audit == super::AUDIT_ARCH_X86_64 {
            x86_64_family(
                &mut asm,
                p.default,
                rules(ArchId::X86_64),
                rules(ArchId::X32),
                bad_arch,
                &stub,
            );
        } else if let Some(r) = list.first().and_then(|a| rules(*a)) {
            stub(&mut asm, list[0]);
            tree(&mut asm, p.default, list[0].wide(), &entries(r));
        }
        asm.bind(next);
        // The accumulator still holds the arch here: sections end in `ret`.
    }
    asm.bind(bad_arch);
    asm.ret(BAD_ARCH);
    if !p.enosys_above.is_empty() {
        asm.bind(enosys);
        asm.ret(super::RET_ENOSYS);
    }
    asm.finish()
}

/// x86_64 and x32 tasks both report AUDIT_ARCH_X86_64; the syscall number's
/// bit 30 (__X32_SYSCALL_BIT) tells them apart. Whichever of the two the
/// profile lacks is treated as an unknown architecture, as libseccomp does.
fn x86_64_family(
    asm: &mut Asm,
    default: u32,
    x86_64: Option<&Rules>,
    x32: Option<&Rules>,
    bad_arch: Label,
    stub: &dyn Fn(&mut Asm, ArchId),
) {
    let x32_label = asm.label();
    let to_x32 = if x32.is_some() {
        To::L(x32_label)
    } else {
        To::L(bad_arch)
    };
    match x86_64 {
        Some(r) => {
            asm.jump(Cmp::Ge, X32_SYSCALL_BIT, to_x32, To::Next);
            stub(asm, ArchId::X86_64);
            tree(asm, default, true, &entries(r));
        }
        None => asm.jump(Cmp::Ge, X32_SYSCALL_BIT, to_x32, To::L(bad_arch)),
    }
    if let Some(r) = x32 {
        asm.bind(x32_label);
        stub(asm, ArchId::X32);
        tree(asm, default, true, &entries(r));
    }
}

fn entries(r: &Rules) -> Vec<(u32, &[Rule])> {
    r.iter()
        .map(|(nr, rules)| (*nr, rules.as_slice()))
        .collect()
}

/// Binary search on the syscall number in A; every path ends in a `ret`.
fn tree(asm: &mut Asm, default: u32, wide: bool, e: &[(u32, &[Rule])]) {
    if e.len() <= LEAF {
        return leaf(asm, default, wide, e);
    }
    let mid = e.len() / 2;
    let right = asm.label();
    asm.jump(Cmp::Ge, e[mid].0, To::L(right), To::Next);
    tree(asm, default, wide, &e[..mid]);
    asm.bind(right);
    tree(asm, default, wide, &e[mid..]);
}

fn leaf(asm: &mut Asm, default: u32, wide: bool, e: &[(u32, &[Rule])]) {
    // Plain actions (first rule without conditions) share one `ret` each.
    let mut rets: HashMap<u32, Label> = HashMap::new();
    let mut ret_order = Vec::new();
    let mut bodies = Vec::new();
    for (nr, rules) in e {
        let target = match rules.first() {
            Some(r) if r.conds.is_empty() => *rets.entry(r.action).or_insert_with(|| {
                let l = asm.label();
                ret_order.push((l, r.action));
                l
            }),
            _ => {
                let l = asm.label();
                bodies.push((l, *rules));
                l
            }
        };
        asm.jump(Cmp::Eq, *nr, To::L(target), To::Next);
    }
    asm.ret(default);
    for (l, action) in ret_order {
        asm.bind(l);
        asm.ret(action);
    }
    for (l, rules) in bodies {
        asm.bind(l);
        body(asm, default, wide, rules);
    }
}

/// The rules of one syscall in order; the first whose conditions all hold
/// decides, none matching means the default action.
fn body(asm: &mut Asm, default: u32, wide: bool, rules: &[Rule]) {
    for r in rules {
        if r.conds.is_empty() {
            // Matches everything: later rules are unreachable.
            asm.ret(r.action);
            return;
        }
        let fail = asm.label();
        for c in &r.conds {
            cond(asm, c, wide, fail);
        }
        asm.ret(r.action);
        asm.bind(fail);
    }
    asm.ret(default);
}

/// Emits a test of `c`: falls through when it holds, jumps to `fail` when
/// not. Clobbers A.
///
/// Classic BPF is 32-bit: a 64-bit argument is two words, the high one
/// decides unless equal (all comparisons unsigned, as libseccomp's).
/// Supported architectures are little-endian: the low word comes first.
fn cond(asm: &mut Asm, c: &Cond, wide: bool, fail: Label) {
    let lo_off = OFF_ARGS + 8 * u32::from(c.index);
    let hi_off = lo_off + 4;
    let (v_hi, v_lo) = split(c.value);
    let fail = To::L(fail);
    let matched = asm.label();
    // A masked-eq whose mask and value have empty high words always holds
    // there (docker's clone flag rules): skip that half.
    if wide && !(c.op == Op::ScmpCmpMaskedEq && v_hi == 0 && split(c.value_two).0 == 0) {
        asm.load(hi_off);
        high_word(asm, c, matched, fail);
    }
    asm.load(lo_off);
    // On the low word (or the only word), with the high words equal.
    let n = To::Next;
    match c.op {
        Op::ScmpCmpEq => asm.jump(Cmp::Eq, v_lo, n, fail),
        Op::ScmpCmpNe => asm.jump(Cmp::Eq, v_lo, fail, n),
        Op::ScmpCmpGt => asm.jump(Cmp::Gt, v_lo, n, fail),
        Op::ScmpCmpGe => asm.jump(Cmp::Ge, v_lo, n, fail),
        Op::ScmpCmpLt => asm.jump(Cmp::Ge, v_lo, fail, n),
        Op::ScmpCmpLe => asm.jump(Cmp::Gt, v_lo, fail, n),
        Op::ScmpCmpMaskedEq => {
            asm.and(v_lo);
            asm.jump(Cmp::Eq, split(c.value_two).1, n, fail);
        }
    }
    asm.bind(matched);
}

/// The high-word part of a 64-bit comparison (A = high word): jumps to
/// `done` when the high words already decide a match, to `fail` when they
/// decide a mismatch, and falls through to the low-word test otherwise.
fn high_word(asm: &mut Asm, c: &Cond, done: Label, fail: To) {
    let v_hi = split(c.value).0;
    let (n, done) = (To::Next, To::L(done));
    match c.op {
        Op::ScmpCmpEq => asm.jump(Cmp::Eq, v_hi, n, fail),
        // Different high words: not equal, a match.
        Op::ScmpCmpNe => asm.jump(Cmp::Eq, v_hi, n, done),
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            asm.jump(Cmp::Gt, v_hi, done, n);
            asm.jump(Cmp::Eq, v_hi, n, fail);
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            asm.jump(Cmp::Gt, v_hi, fail, n);
            asm.jump(Cmp::Eq, v_hi, n, done);
        }
        Op::ScmpCmpMaskedEq => {
            asm.and(v_hi);
            asm.jump(Cmp::Eq, split(c.value_two).0, n, fail);
        }
    }
}

fn split(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}
