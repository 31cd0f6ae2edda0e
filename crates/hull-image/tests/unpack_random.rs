#![allow(clippy::unwrap_used)]
//! Layer unpacking on two thousand random tar streams (the CI side of
//! fuzz/fuzz_targets/unpack_layer.rs): mutations of a layer full of hostile entries
//! (`..`, absolute and symlinked parents, dot whiteouts, hardlinks out, devices, huge
//! sizes). No input may panic, and nothing may appear, change or vanish outside the
//! snapshot directory.

use std::path::Path;

use hull_image::{unpack_layer, LayerLimits};

/// xorshift64*: deterministic, so a failure names its case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn entry(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    let gnu = h.as_gnu_mut().unwrap();
    let n = name.len().min(100);
    gnu.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let l = link.len().min(100);
    gnu.linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A layer of hostile entries, in an order picked by `rng`.
fn seed(rng: &mut Rng) -> Vec<u8> {
    use tar::EntryType::*;
    let entries: Vec<(tar::EntryType, &str, &str, &[u8])> = vec![
        (Directory, "d/", "", b""),
        (Regular, "d/f", "", b"data"),
        (Symlink, "up", "..", b""),
        (Symlink, "abs", "/", b""),
        (Regular, "up/escape", "", b"x"),
        (Regular, "abs/escape", "", b"x"),
        (Regular, "../escape", "", b"x"),
        (Regular, ".wh...", "", b""),
        (Regular, "d/.wh..", "", b""),
        (Regular, ".wh.", "", b""),
        (Regular, "d/.wh.f", "", b""),
        (Regular, "d/.wh..wh..opq", "", b""),
        (Link, "hl", "../outside", b""),
        (Link, "hl2", "d/f", b""),
        (Link, "hl3", "up/outside", b""),
        (Fifo, "fifo", "", b""),
        (Char, "d/null", "", b""),
        (Directory, "d/f/", "", b""),
        (Regular, "/etc/passwd", "", b"root"),
        (Regular, "./d/../../escape", "", b"x"),
    ];
    let mut b = tar::Builder::new(Vec::new());
    for _ in 0..8 {
        let (k, n, l, d) = entries[rng.below(entries.len())];
        entry(&mut b, k, n, l, d);
    }
    b.into_inner().unwrap()
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..=rng.below(8) {
        if data.is_empty() {
            return;
        }
        let i = rng.below(data.len());
        match rng.below(4) {
            0 => data[i] = rng.next() as u8,
            1 => data[i] = b"./\0.9 wh"[rng.below(8)],
            2 => data.truncate(i),
            _ => {
                let j = rng.below(data.len());
                let b = data[j];
                data.insert(i, b);
            }
        }
    }
}

/// Names (with content) of everything under `dir` outside `skip`, recursively.
fn listing(dir: &Path, skip: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push(format!("{} {:?}", p.display(), m.len()));
        if m.is_dir() {
            out.extend(listing(&p, skip));
        }
    }
    out.sort();
    out
}

#[test]
fn random_layers_never_panic_nor_write_outside_the_snapshot() {
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("outside"), b"keep").unwrap();
    std::fs::create_dir(base.path().join("sibling")).unwrap();
    let snap = base.path().join("snap");
    let before = listing(base.path(), &snap);
    let limits = LayerLimits {
        max_size: 1 << 20,
        max_files: 64,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cases = 2000;
    for case in 0..cases {
        let mut data = seed(&mut rng);
        if case % 4 != 0 {
            mutate(&mut rng, &mut data);
        }
        std::fs::create_dir(&snap).unwrap();
        let _ = unpack_layer(data.as_slice(), &snap, &limits);
        std::fs::remove_dir_all(&snap).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(listing(base.path(), &snap), before, "case {case}");
        assert_eq!(std::fs::read(base.path().join("outside")).unwrap(), b"keep");
    }
}
