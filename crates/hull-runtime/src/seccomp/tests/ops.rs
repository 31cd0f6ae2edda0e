//! Every argument operator against a reference implementation, on 64-bit
//! values whose high and low words each decide, and on 32-bit arches.

use oci_spec::runtime::LinuxSeccompOperator as Op;
use serde_json::json;

use super::{build, eval};
use crate::seccomp::ArchId;

const OPS: [(&str, Op); 7] = [
    ("SCMP_CMP_NE", Op::ScmpCmpNe),
    ("SCMP_CMP_LT", Op::ScmpCmpLt),
    ("SCMP_CMP_LE", Op::ScmpCmpLe),
    ("SCMP_CMP_EQ", Op::ScmpCmpEq),
    ("SCMP_CMP_GE", Op::ScmpCmpGe),
    ("SCMP_CMP_GT", Op::ScmpCmpGt),
    ("SCMP_CMP_MASKED_EQ", Op::ScmpCmpMaskedEq),
];

/// Values around every word boundary.
const VALUES: [u64; 12] = [
    0,
    1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    0x1_ffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_0000_0000,
    u64::MAX,
];

fn reference(op: Op, value: u64, value_two: u64, arg: u64) -> bool {
    match op {
        Op::ScmpCmpNe => arg != value,
        Op::ScmpCmpLt => arg < value,
        Op::ScmpCmpLe => arg <= value,
        Op::ScmpCmpEq => arg == value,
        Op::ScmpCmpGe => arg >= value,
        Op::ScmpCmpGt => arg > value,
        Op::ScmpCmpMaskedEq => arg & value == value_two,
    }
}

/// One filter per (op, value): `kill` gets ERRNO(7) when arg 2 matches.
fn check(arch: ArchId, op_name: &str, op: Op, value: u64, value_two: u64) {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
            "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op_name}]}]
    }));
    for arg in VALUES {
        let (v, v2, a) = if arch.wide() {
            (value, value_two, arg)
        } else {
            // 32-bit arches: the kernel zero-extends, values are truncated.
            (
                value & 0xffff_ffff,
                value_two & 0xffff_ffff,
                arg & 0xffff_ffff,
            )
        };
        let want = if reference(op, v, v2, a) {
            libc::SECCOMP_RET_ERRNO | 7
        } else {
            libc::SECCOMP_RET_ALLOW
        };
        let got = eval(&f, arch, "kill", [0, 0, a, 0, 0, 0]);
        assert_eq!(
            got, want,
            "{arch:?} arg {a:#x} {op_name} {value:#x} / {value_two:#x}"
        );
    }
}

#[test]
fn every_operator_on_64_bit_values() {
    for (name, op) in OPS {
        for value in VALUES {
            for arch in [ArchId::X86_64, ArchId::Aarch64] {
                if op == Op::ScmpCmpMaskedEq {
                    for value_two in [0, value, value & 0xffff_ffff, 1, 0x1_0000_0000] {
                        check(arch, name, op, value, value_two);
                    }
                } else {
                    check(arch, name, op, value, 0);
                }
            }
        }
    }
}

#[test]
fn every_operator_on_32_bit_arches() {
    for (name, op) in OPS {
        for value in VALUES {
            let value_two = if op == Op::ScmpCmpMaskedEq {
                value & 0x8000_0001
            } else {
                0
            };
            check(ArchId::X86, name, op, value, value_two);
        }
    }
}

#[test]
fn long_jumps_with_400_argument_rules() {
    // 400 syscalls (by number on x86_64: the table's names) each with an
    // argument rule, so the bodies push the tree's right branches far away.
    let names: Vec<&str> = crate::seccomp::tables::X86_64
        .iter()
        .map(|(n, _)| *n)
        .take(400)
        .collect();
    let rules: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": i % 4000 + 1,
            "args": [{"index": i % 6, "value": i as u64 * 0x1_0000_0001, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert!(f.prog.len() > 2000, "{}", f.prog.len());
    for (i, n) in names.iter().enumerate() {
        let mut args = [0u64; 6];
        args[i % 6] = i as u64 * 0x1_0000_0001;
        assert_eq!(
            eval(&f, ArchId::X86_64, n, args),
            libc::SECCOMP_RET_ERRNO | (i as u32 % 4000 + 1),
            "{n}"
        );
        args[i % 6] += 1;
        assert_eq!(
            eval(&f, ArchId::X86_64, n, args),
            libc::SECCOMP_RET_ALLOW,
            "{n}"
        );
    }
}

#[test]
fn assembler_chains_far_conditional_jumps() {
    use crate::seccomp::bpf::{Asm, Cmp, To};
    let mut asm = Asm::default();
    let (far, far2) = (asm.label(), asm.label());
    asm.load(0);
    asm.jump(Cmp::Eq, 1, To::L(far), To::L(far2));
    for i in 0..300 {
        asm.ret(i);
    }
    asm.bind(far);
    asm.ret(1000);
    for i in 0..300 {
        asm.ret(i);
    }
    asm.bind(far2);
    asm.ret(2000);
    let prog = asm.finish().expect("assemble");
    assert_eq!(prog.len(), 1 + 1 + 2 + 300 + 1 + 300 + 1);
    let data = |nr| super::interp::Data {
        nr,
        arch: 0,
        args: [0; 6],
    };
    assert_eq!(super::interp::run(&prog, &data(1)), 1000);
    assert_eq!(super::interp::run(&prog, &data(2)), 2000);
}
