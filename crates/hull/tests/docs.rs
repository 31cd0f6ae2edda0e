//! The user docs stay true: every relative link and `#anchor` in the Markdown resolves, and
//! `hull --help` and its commands' help agree with `docs/` (each command and flag documented,
//! each with a help text). No root needed.
#![allow(clippy::unwrap_used)]

#[path = "docs/help.rs"]
mod help;
#[path = "docs/links.rs"]
mod links;

use std::path::{Path, PathBuf};

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
    let pages = help::reference_pages(&repo());
    let all: String = pages.iter().map(|(_, t)| t.as_str()).collect();
    let mut missing = Vec::new();
    for path in command_paths() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if !help::mentions(&all, &p) {
            missing.push(format!("hull {}", p.join(" ")));
        }
    }
    assert!(
        missing.is_empty(),
        "not shown in docs/cli.md or the pages it links to ({}):\n{}",
        pages
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        missing.join("\n")
    );
}

/// Every option of every command appears (long or short) in a section of the docs that
/// documents that command, and the global options in docs/cli.md.
#[test]
fn every_flag_is_documented() {
    let pages = help::reference_pages(&repo());
    let sections: Vec<(String, (String, String))> = pages
        .iter()
        .flat_map(|(n, t)| help::sections(t).into_iter().map(move |s| (n.clone(), s)))
        .collect();
    let mut missing = Vec::new();
    for path in command_paths() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let shown: Vec<&(String, (String, String))> = sections
            .iter()
            .filter(|(_, s)| help::covers(s, &p))
            .collect();
        for (opt, flags) in help::options(&help::help(&p)) {
            if GLOBAL.contains(&opt.name.as_str()) {
                continue;
            }
            let documented = |t: &str| flags.iter().any(|f| help::has_flag(t, f));
            if !shown.iter().any(|(_, (_, t))| documented(t)) {
                let on: Vec<String> = shown.iter().map(|(n, (h, _))| format!("{n} {h}")).collect();
                missing.push(format!(
                    "hull {} {} (sections: {on:?})",
                    p.join(" "),
                    opt.name
                ));
            }
        }
    }
    let cli = &pages[0].1;
    for g in ["--root", "--cdi-spec-dir"] {
        if !help::has_flag(cli, g) {
            missing.push(format!("hull {g} (docs/cli.md)"));
        }
    }
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
    let repo = repo();
    let paths = command_paths();
    let mut flags_of = std::collections::HashMap::new();
    for path in &paths {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let flags: Vec<String> = help::options(&help::help(&p))
            .into_iter()
            .flat_map(|(_, f)| f)
            .collect();
        flags_of.insert(path.clone(), flags);
    }
    let mut unknown = Vec::new();
    for file in links::markdown_files(&repo) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for words in help::invocations(line) {
                let Some(path) = paths.iter().find(|p| help::names(&words, p)) else {
                    continue;
                };
                for flag in help::long_flags(&words) {
                    if !flags_of[path].contains(&flag) && !GLOBAL.contains(&flag.as_str()) {
                        let f = file.strip_prefix(&repo).unwrap_or(&file).display();
                        unknown.push(format!("{f}:{}: hull {} {flag}", n + 1, path.join(" ")));
                    }
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags hull does not have:\n{}",
        unknown.join("\n")
    );
}

/// Every command and option has a help text. Positional arguments need none: the usage line
/// names them (`<CONTAINERS>...`), as docker's help does.
#[test]
fn every_help_entry_has_a_text() {
    let mut bare = Vec::new();
    let mut paths = vec![vec![]];
    paths.extend(command_paths());
    for path in paths {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help::help(&p);
        let entries = help::commands(&text)
            .into_iter()
            .chain(help::options(&text).into_iter().map(|(e, _)| e));
        for e in entries {
            if e.help.is_empty() {
                bare.push(format!("hull {} {}", p.join(" "), e.name));
            }
        }
    }
    assert!(bare.is_empty(), "no help text:\n{}", bare.join("\n"));
}

/// Options every command takes from `hull` itself.
const GLOBAL: [&str; 4] = ["--root", "--cdi-spec-dir", "--help", "--version"];

/// `[cmd]` for each command of `hull --help`, and `[group, sub]` for each subcommand of a
/// group instead of the group itself.
fn command_paths() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let top = help::commands(&help::help(&[]));
    assert!(top.len() > 30, "hull --help lists {top:?}");
    for c in top {
        let subs = help::commands(&help::help(&[&c.name]));
        if subs.is_empty() {
            out.push(vec![c.name.clone()]);
        }
        for s in subs {
            out.push(vec![c.name.clone(), s.name]);
        }
    }
    out
}
