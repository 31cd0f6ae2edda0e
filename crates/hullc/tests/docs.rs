//! `hullc --help` and its commands' help agree with docs/hullc.md: each command and option
//! documented, each documented flag real, each with a help text. No root needed. The link
//! check of all Markdown is hull's (crates/hull/tests/docs.rs); its helpers are shared.
#![allow(clippy::unwrap_used)]

// hullc's tests use only part of the helpers hull's docs tests share.
#[allow(dead_code)]
#[path = "../../hull/tests/docs/checks.rs"]
mod checks;
#[allow(dead_code)]
#[path = "../../hull/tests/docs/help.rs"]
mod help;
#[allow(dead_code)]
#[path = "../../hull/tests/docs/links.rs"]
mod links;

use std::path::{Path, PathBuf};

use help::Program;

const HULLC: Program = Program {
    name: "hullc",
    bin: env!("CARGO_BIN_EXE_hullc"),
};

/// Options every command takes from `hullc` itself (runc's global flags).
const GLOBAL: [&str; 9] = [
    "--root",
    "--log",
    "--log-format",
    "--debug",
    "--systemd-cgroup",
    "--rootless",
    "--help",
    "--version",
    "-v",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every command of `hullc --help` is shown as `hullc CMD` in docs/hullc.md (or a page of
/// docs/ it links to), every option of each in a section that shows the command, and hullc's
/// own options on docs/hullc.md.
#[test]
fn every_command_and_flag_is_documented() {
    let pages = help::reference_pages(&repo(), "hullc.md");
    assert!(HULLC.command_paths().len() > 10);
    let mut missing = checks::undocumented_commands(HULLC, &pages);
    missing.extend(checks::undocumented_options(HULLC, &pages, &GLOBAL));
    missing.extend(checks::undocumented_globals(
        HULLC,
        &pages[0].1,
        &["--help"],
    ));
    assert!(
        missing.is_empty(),
        "not documented in docs/hullc.md:\n{}",
        missing.join("\n")
    );
}

/// Every flag the docs show after `hullc CMD` exists in that command's help.
#[test]
fn every_documented_flag_exists() {
    let unknown = checks::unknown_flags(HULLC, &repo(), &GLOBAL);
    assert!(
        unknown.is_empty(),
        "flags hullc does not have:\n{}",
        unknown.join("\n")
    );
}

/// Every command and option has a help text.
#[test]
fn every_help_entry_has_a_text() {
    let bare = checks::bare_help_entries(HULLC);
    assert!(bare.is_empty(), "no help text:\n{}", bare.join("\n"));
}
