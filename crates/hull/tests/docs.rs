//! The user docs stay true: every relative link and `#anchor` in the Markdown resolves, and
//! `hull --help` and its commands' help agree with `docs/` (each command and flag documented,
//! each with a help text). No root needed.
#![allow(clippy::unwrap_used)]

#[path = "docs/checks.rs"]
mod checks;
#[path = "docs/help.rs"]
mod help;
#[path = "docs/links.rs"]
mod links;

use std::path::{Path, PathBuf};

use help::Program;

const HULL: Program = Program {
    name: "hull",
    bin: env!("CARGO_BIN_EXE_hull"),
};

/// Options every command takes from `hull` itself.
const GLOBAL: [&str; 5] = [
    "--root",
    "--cdi-spec-dir",
    "--storage-opt",
    "--help",
    "--version",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn markdown_links_resolve() {
    let repo = repo();
    let files = links::markdown_files(&repo);
    assert!(
        files.iter().any(|f| f.ends_with("README.md")) && files.len() > 5,
        "found {files:?}"
    );
    let errors = links::check(&repo, &files);
    assert!(errors.is_empty(), "broken links:\n{}", errors.join("\n"));
}

/// README's documentation list links every page of docs/, so a new page is found.
#[test]
fn readme_lists_every_docs_page() {
    let repo = repo();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let linked: Vec<String> = links::prose_lines(&readme)
        .into_iter()
        .flat_map(|(_, l)| links::link_targets(l))
        .collect();
    let mut unlisted = Vec::new();
    for page in links::markdown_in(&repo.join("docs")) {
        let name = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        if !linked
            .iter()
            .any(|t| t.split('#').next() == Some(name.as_str()))
        {
            unlisted.push(name);
        }
    }
    assert!(
        unlisted.is_empty(),
        "not linked from README.md's Documentation list: {unlisted:?}"
    );
}

/// The checker itself: it must fail on each kind of broken link, naming file and line, and
/// accept what GitHub resolves.
#[test]
fn link_checker_reports_broken_links() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("docs")).unwrap();
    std::fs::write(
        d.join("docs/a.md"),
        "# Page A\n\n## Tests (`scripts/x.sh`, issue 17)\n\n## Tests\n\n## Tests\n\n```sh\n# not a heading\n```\n",
    )
    .unwrap();
    let readme = "# Top\n\
        [ok](docs/a.md) [ok](docs/a.md#tests-scriptsxsh-issue-17) [ok](docs/a.md#tests-1)\n\
        [ok](#top) [url](https://example.com/x#y) `[code](missing.md)`\n\
        [gone](docs/missing.md)\n\
        [bad anchor](docs/a.md#not-a-heading)\n\
        ```\n[in code](nowhere.md)\n```\n\
        [self](#nope) ![img](docs/none.png \"title\")\n\
        [ref]: docs/zzz.md\n";
    std::fs::write(d.join("README.md"), readme).unwrap();
    let errors = links::check(d, &links::markdown_files(d));
    let want = [
        "README.md:4: docs/missing.md: no such file",
        "README.md:5: docs/a.md#not-a-heading: no heading with anchor #not-a-heading",
        "README.md:9: #nope: no heading with anchor #nope",
        "README.md:9: docs/none.png: no such file",
        "README.md:10: docs/zzz.md: no such file",
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for (e, w) in errors.iter().zip(want) {
        assert!(e.starts_with(w), "{e:?} should start with {w:?}");
    }
}

#[test]
fn slugs_follow_github() {
    for (heading, want) in [
        ("hullc — the OCI runtime", "hullc--the-oci-runtime"),
        (
            "runc's own integration suite (issue 17)",
            "runcs-own-integration-suite-issue-17",
        ),
        ("run / create: `--pull`", "run--create---pull"),
        (
            "Kubernetes CRI pods (`bench/cri.sh`)",
            "kubernetes-cri-pods-benchcrish",
        ),
        (
            "What is [applied](x.md) from config_json",
            "what-is-applied-from-config_json",
        ),
    ] {
        assert_eq!(links::slug(heading), want, "{heading}");
    }
}

/// Every command of `hull --help` and every subcommand of its groups (`hull network ...`) is
/// shown as `hull CMD` in docs/cli.md or a page it links to.
#[test]
fn every_command_is_documented() {
    let pages = help::reference_pages(&repo(), "cli.md");
    assert!(HULL.command_paths().len() > 40);
    let missing = checks::undocumented_commands(HULL, &pages);
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        missing.is_empty(),
        "not shown in docs/cli.md or the pages it links to ({names:?}):\n{}",
        missing.join("\n")
    );
}

/// Every option of every command appears (long or short) in a section of the docs that
/// documents that command, and hull's own options in docs/cli.md.
#[test]
fn every_flag_is_documented() {
    let pages = help::reference_pages(&repo(), "cli.md");
    let mut missing = checks::undocumented_options(HULL, &pages, &GLOBAL);
    missing.extend(checks::undocumented_globals(
        HULL,
        &pages[0].1,
        &["--help", "--version"],
    ));
    assert!(
        missing.is_empty(),
        "flags not documented:\n{}",
        missing.join("\n")
    );
}

/// Every flag the docs show with a `hull` command exists in that command's help (a renamed or
/// dropped flag is not left in the docs).
#[test]
fn every_documented_flag_exists() {
    let unknown = checks::unknown_flags(HULL, &repo(), &GLOBAL);
    assert!(
        unknown.is_empty(),
        "flags hull does not have:\n{}",
        unknown.join("\n")
    );
}

/// Every command and option has a help text.
#[test]
fn every_help_entry_has_a_text() {
    let bare = checks::bare_help_entries(HULL);
    assert!(bare.is_empty(), "no help text:\n{}", bare.join("\n"));
}
