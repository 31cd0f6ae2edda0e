//! Reads clap's help output (`hull ... -h`, `hullc ... -h`) and the docs' mentions of a
//! program's commands. Shared by hull's and hullc's docs tests.

use std::path::Path;
use std::process::Command;

/// A program whose help is checked against the docs.
#[derive(Clone, Copy)]
pub struct Program {
    /// The name the docs write (`hull`).
    pub name: &'static str,
    /// Its binary (`env!("CARGO_BIN_EXE_hull")`).
    pub bin: &'static str,
}

/// One entry of a help section: a command, an option or an argument, with its help text.
#[derive(Debug)]
pub struct Entry {
    /// The command's name, an option's long flag (`--name`; the short one when it has no
    /// long one) or an argument's placeholder (`<IMAGE>`).
    pub name: String,
    pub help: String,
}

impl Program {
    /// `PROGRAM ARGS... -h` (the one-line form; `--help` adds long texts), which must succeed.
    pub fn help(&self, args: &[&str]) -> String {
        let out = Command::new(self.bin)
            .args(args)
            .arg("-h")
            .output()
            .expect("run the program");
        assert!(
            out.status.success(),
            "{} {args:?} -h: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("help is UTF-8")
    }

    /// Whether `PROG PATH... FLAG` is accepted though help does not list it (a hidden flag,
    /// e.g. one a shim passes): clap names an unknown one "unexpected argument".
    pub fn has_hidden_flag(&self, path: &[String], flag: &str) -> bool {
        let out = Command::new(self.bin)
            .args(path)
            .args([flag, "--help"])
            .output()
            .expect("run the program");
        !String::from_utf8_lossy(&out.stderr).contains(&format!("unexpected argument '{flag}'"))
    }

    /// `[cmd]` for each command of the program's help, and `[group, sub]` for each
    /// subcommand of a group instead of the group itself.
    pub fn command_paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for c in commands(&self.help(&[])) {
            let subs = commands(&self.help(&[&c.name]));
            if subs.is_empty() {
                out.push(vec![c.name.clone()]);
            }
            for s in subs {
                out.push(vec![c.name.clone(), s.name]);
            }
        }
        out
    }
}

/// The entries of a section (`Commands:`, `Options:`, `Arguments:`) of clap's help. An entry
/// starts at a line indented by at most 6 columns; its help follows after two spaces on
/// that line or on the lines below, indented further (clap's two layouts).
pub fn section(help: &str, title: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line.trim_end() == title;
            continue;
        }
        let text = line.trim();
        if !inside || text.is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent <= 6 {
            let (spec, rest) = text.split_once("  ").unwrap_or((text, ""));
            out.push((spec.to_string(), rest.trim().to_string()));
        } else if let Some(last) = out.last_mut() {
            last.1 = format!("{} {text}", last.1).trim().to_string();
        }
    }
    out
}

/// The subcommands listed in a help text, without clap's own `help`.
pub fn commands(help: &str) -> Vec<Entry> {
    section(help, "Commands:")
        .into_iter()
        .map(|(spec, help)| Entry {
            name: spec.split_whitespace().next().unwrap_or("").to_string(),
            help,
        })
        .filter(|e| e.name != "help")
        .collect()
}

/// The options of a help text: each one's flags (`-q`, `--quiet`), named by the long one.
pub fn options(help: &str) -> Vec<(Entry, Vec<String>)> {
    section(help, "Options:")
        .into_iter()
        .map(|(spec, help)| {
            let flags: Vec<String> = spec
                .split([' ', ',', '=', '['])
                .filter(|t| t.starts_with('-'))
                .map(str::to_string)
                .collect();
            let name = flags
                .iter()
                .find(|f| f.starts_with("--"))
                .or(flags.first())
                .cloned()
                .unwrap_or_default();
            (Entry { name, help }, flags)
        })
        .collect()
}

/// The words of the `PROG` commands written in `text`: for each `PROG` (`hull`), the words up
/// to the next one, the end of the line or a backtick (a code span ends the command: `` `hull run`
/// against `podman --runtime runc` ``), split at spaces and parentheses, leaving out global
/// options (`hull [--root DIR] pull` names `pull`). A word may hold alternatives
/// (`pause|unpause`).
pub fn invocations(text: &str, prog: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for segment in text.lines().flat_map(|l| l.split('`')) {
        let words = segment
            .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')'))
            .filter(|w| !w.is_empty());
        let mut current: Option<Vec<String>> = None;
        for w in words {
            if w == prog {
                out.extend(current.take());
                current = Some(Vec::new());
            } else if let Some(c) = current.as_mut() {
                if c.is_empty() && (w.starts_with('[') || w.ends_with(']') || w.starts_with('-')) {
                    continue;
                }
                c.push(w.trim_matches([',', '.', ';', ':']).to_string());
            }
        }
        out.extend(current);
    }
    out
}

/// Whether `text` shows `PROG PATH[0] ...` with the rest of `path` (a subcommand) among the
/// words that follow.
pub fn mentions(text: &str, prog: &str, path: &[&str]) -> bool {
    let is = |word: &str, name: &str| word.split('|').any(|alt| alt == name);
    invocations(text, prog).iter().any(|words| {
        words.first().is_some_and(|w| is(w, path[0]))
            && path[1..]
                .iter()
                .all(|p| words[1..].iter().any(|w| is(w, p)))
    })
}

/// Whether the words of one invocation (from [`invocations`]) name the command `path`:
/// its first word, then a group's subcommand as the next word that is no option.
pub fn names(words: &[String], path: &[String]) -> bool {
    let mut plain = words
        .iter()
        .filter(|w| !w.starts_with('-') && !w.starts_with('['));
    path.iter().all(|p| plain.next().is_some_and(|w| w == p))
}

/// The long flags (`--name`) among an invocation's words, up to a shell comment.
pub fn long_flags(words: &[String]) -> Vec<String> {
    words
        .iter()
        .take_while(|w| !w.starts_with('#'))
        .filter_map(|w| {
            let at = w.find("--")?;
            let name: String = w[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty() && (at == 0 || w[..at].chars().all(|c| c == '[')))
                .then(|| format!("--{name}"))
        })
        .collect()
}

/// Whether `text` holds the flag `flag` (`--name`, `-n`) as a whole word: `--network` is not
/// `--network-alias`, `-t` not `set-top`.
pub fn has_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + flag.len()..].chars().next();
        let word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// A page's sections: each heading (outside code blocks) with the text up to the next one.
pub fn sections(text: &str) -> Vec<(String, String)> {
    let starts: Vec<(usize, &str)> = super::links::prose_lines(text)
        .into_iter()
        .filter(|(_, l)| l.starts_with('#'))
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![("".to_string(), String::new())];
    for (n, line) in lines.iter().enumerate() {
        if starts.iter().any(|(s, _)| *s == n + 1) {
            out.push((
                line.trim_start_matches('#').trim().to_string(),
                String::new(),
            ));
        }
        let last = out.last_mut().expect("one section at least");
        last.1.push_str(line);
        last.1.push('\n');
    }
    out
}

/// Whether a section documents the command `path`: it shows `PROG PATH...`, or its heading
/// names the command (`## run / create: init, namespaces`).
pub fn covers(section: &(String, String), prog: &str, path: &[&str]) -> bool {
    let words: Vec<&str> = section.0.split(|c: char| !c.is_alphanumeric()).collect();
    mentions(&section.1, prog, path) || path.iter().all(|p| words.contains(p))
}

/// A reference page of `docs/` and every page of `docs/` it links to, with their text
/// (`docs/cli.md` links the pages of images, networks, devices ...).
pub fn reference_pages(repo: &Path, page: &str) -> Vec<(String, String)> {
    let main = std::fs::read_to_string(repo.join("docs").join(page)).expect("read the page");
    let mut names = vec![page.to_string()];
    for (_, line) in super::links::prose_lines(&main) {
        for t in super::links::link_targets(line) {
            let file = t.split('#').next().unwrap_or("");
            if file.ends_with(".md") && !file.contains('/') && !names.iter().any(|n| n == file) {
                names.push(file.to_string());
            }
        }
    }
    names
        .into_iter()
        .filter_map(|n| {
            let text = std::fs::read_to_string(repo.join("docs").join(&n)).ok()?;
            Some((format!("docs/{n}"), text))
        })
        .collect()
}
