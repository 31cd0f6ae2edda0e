//! The checks of a program's help against its reference pages; each returns what it found
//! wrong, one line per finding. Shared by hull's and hullc's docs tests.

use std::collections::HashMap;
use std::path::Path;

use super::help::{self, Program};
use super::links;

/// Pages as (name, text), e.g. from [`help::reference_pages`].
pub type Pages = [(String, String)];

/// Every command of the program's help, and every subcommand of its groups, shown as
/// `PROG CMD` on one of `pages`.
pub fn undocumented_commands(prog: Program, pages: &Pages) -> Vec<String> {
    let all: String = pages.iter().map(|(_, t)| t.as_str()).collect();
    prog.command_paths()
        .into_iter()
        .filter(|path| {
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            !help::mentions(&all, prog.name, &p)
        })
        .map(|path| format!("{} {}", prog.name, path.join(" ")))
        .collect()
}

/// Every option (long or short form) of every command in a section of `pages` that documents
/// the command; `global` options are left to [`undocumented_globals`].
pub fn undocumented_options(prog: Program, pages: &Pages, global: &[&str]) -> Vec<String> {
    let sections: Vec<(&str, (String, String))> = pages
        .iter()
        .flat_map(|(n, t)| help::sections(t).into_iter().map(move |s| (n.as_str(), s)))
        .collect();
    let mut missing = Vec::new();
    for path in prog.command_paths() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let shown: Vec<&(&str, (String, String))> = sections
            .iter()
            .filter(|(_, s)| help::covers(s, prog.name, &p))
            .collect();
        for (opt, flags) in help::options(&prog.help(&p)) {
            if global.contains(&opt.name.as_str()) {
                continue;
            }
            let documented = |t: &str| flags.iter().any(|f| help::has_flag(t, f));
            if !shown.iter().any(|(_, (_, t))| documented(t)) {
                let on: Vec<String> = shown.iter().map(|(n, (h, _))| format!("{n} {h}")).collect();
                missing.push(format!(
                    "{} {} {} (sections: {on:?})",
                    prog.name,
                    p.join(" "),
                    opt.name
                ));
            }
        }
    }
    missing
}

/// The program's own options (`PROG --root ...`) on `page`.
pub fn undocumented_globals(prog: Program, page: &str, skip: &[&str]) -> Vec<String> {
    help::options(&prog.help(&[]))
        .into_iter()
        .filter(|(o, flags)| {
            !skip.contains(&o.name.as_str()) && !flags.iter().any(|f| help::has_flag(page, f))
        })
        .map(|(o, _)| format!("{} {}", prog.name, o.name))
        .collect()
}

/// Every flag the Markdown of `repo` shows after `PROG CMD` exists in that command's help.
pub fn unknown_flags(prog: Program, repo: &Path, global: &[&str]) -> Vec<String> {
    let paths = prog.command_paths();
    let mut flags_of = HashMap::new();
    for path in &paths {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let flags: Vec<String> = help::options(&prog.help(&p))
            .into_iter()
            .flat_map(|(_, f)| f)
            .collect();
        flags_of.insert(path.clone(), flags);
    }
    let mut unknown = Vec::new();
    for file in links::markdown_files(repo) {
        let text = std::fs::read_to_string(&file).expect("read a Markdown file");
        let shown = file
            .strip_prefix(repo)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            for words in help::invocations(line, prog.name) {
                let Some(path) = paths.iter().find(|p| help::names(&words, p)) else {
                    continue;
                };
                for flag in help::long_flags(&words) {
                    let listed = flags_of[path].contains(&flag) || global.contains(&flag.as_str());
                    if !listed && !prog.has_hidden_flag(path, &flag) {
                        let cmd = path.join(" ");
                        unknown.push(format!("{shown}:{}: {} {cmd} {flag}", n + 1, prog.name));
                    }
                }
            }
        }
    }
    unknown
}

/// Every command and option of the program without a help text. Positional arguments need
/// none: the usage line names them (`<CONTAINERS>...`), as docker's help does.
pub fn bare_help_entries(prog: Program) -> Vec<String> {
    let mut bare = Vec::new();
    let mut paths = vec![vec![]];
    paths.extend(prog.command_paths());
    for path in paths {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = prog.help(&p);
        let entries = help::commands(&text)
            .into_iter()
            .chain(help::options(&text).into_iter().map(|(e, _)| e));
        for e in entries {
            if e.help.is_empty() {
                bare.push(format!("{} {} {}", prog.name, p.join(" "), e.name));
            }
        }
    }
    bare
}
