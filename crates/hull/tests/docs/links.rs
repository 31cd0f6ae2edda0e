//! A link checker for the project's Markdown: every relative link names a file that exists, and
//! every `#anchor` a heading of its target, by GitHub's slug rules (what readers click on).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The Markdown files the checker reads: the repository root's, `docs/`'s and `bench/`'s.
pub fn markdown_files(repo: &Path) -> Vec<PathBuf> {
    [repo.to_path_buf(), repo.join("docs"), repo.join("bench")]
        .iter()
        .flat_map(|d| markdown_in(d))
        .collect()
}

/// The `*.md` files directly in `dir`, sorted.
pub fn markdown_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md") && p.is_file())
        .collect();
    files.sort();
    files
}

/// The lines outside fenced code blocks, numbered from 1 (a `# comment` in a shell block is
/// no heading, and `a[i](x)` in code no link).
pub fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let marker = ['`', '~']
            .into_iter()
            .find(|c| indent <= 3 && t.starts_with(&c.to_string().repeat(3)));
        if let Some(c) = marker {
            let n = t.chars().take_while(|x| *x == c).count();
            match fence {
                None => fence = Some((c, n)),
                // A fence closes with at least as many of the same character and nothing else.
                Some((fc, fnum)) if fc == c && n >= fnum && t[n..].trim().is_empty() => {
                    fence = None
                }
                Some(_) => {}
            }
            continue;
        }
        if fence.is_none() {
            out.push((i + 1, line));
        }
    }
    out
}

/// The line with its code spans (`` `...` ``, any run of backticks) blanked out.
fn without_code_spans(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            let ch = line[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let run = b[i..].iter().take_while(|c| **c == b'`').count();
        let fence = "`".repeat(run);
        match line[i + run..].find(&fence) {
            Some(end) => {
                out.push(' ');
                i += run + end + run;
            }
            None => {
                out.push_str(&fence);
                i += run;
            }
        }
    }
    out
}

/// GitHub's anchor for a heading's text: inline markup dropped, lower case, everything but
/// letters, digits, `_`, `-` and spaces removed, each space a `-`.
pub fn slug(heading: &str) -> String {
    let text = link_texts(heading);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `[text](target)` becomes `text`, as GitHub renders a heading before making its anchor.
fn link_texts(s: &str) -> String {
    let mut out = s.to_string();
    while let Some(mid) = out.find("](") {
        let (Some(open), Some(close)) = (out[..mid].rfind('['), out[mid..].find(')')) else {
            break;
        };
        let text = out[open + 1..mid].to_string();
        out.replace_range(open..mid + close + 1, &text);
    }
    out
}

/// The anchors of a file's ATX headings, numbered as GitHub numbers repeats (`x`, `x-1`, ...).
pub fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start();
        let hashes = t.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || line.len() - t.len() > 3 {
            continue;
        }
        let rest = &t[hashes..];
        if !(rest.is_empty() || rest.starts_with(' ')) {
            continue;
        }
        let base = slug(rest.trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_insert(0);
        out.push(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of a line's inline links and images (`[t](target "title")`, `<target>` form
/// too) and of a reference definition (`[t]: target`).
pub fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut out = Vec::new();
    let t = line.trim_start();
    if t.starts_with('[') {
        if let Some(end) = t.find("]:") {
            if !t[..end].contains("](") {
                if let Some(target) = t[end + 2..].split_whitespace().next() {
                    out.push(target.trim_matches(['<', '>']).to_string());
                }
                return out;
            }
        }
    }
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        // The target ends at the ")" that balances, so `x_(y).md` links survive.
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inner = after[..end].trim();
        let target = match inner.strip_prefix('<') {
            Some(s) => s.split('>').next().unwrap_or(""),
            None => inner.split_whitespace().next().unwrap_or(""),
        };
        out.push(target.to_string());
        rest = &after[end.min(after.len())..];
    }
    out
}

/// Every broken relative link in `files`, as `file:line: target: why`. Paths in messages are
/// relative to `repo`.
pub fn check(repo: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut anchor_cache: HashMap<PathBuf, Option<Vec<String>>> = HashMap::new();
    let mut errors = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(file) else {
            errors.push(format!("{}: cannot read", show(repo, file)));
            continue;
        };
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if let Some(why) = broken(file, &target, &mut anchor_cache) {
                    errors.push(format!("{}:{n}: {target}: {why}", show(repo, file)));
                }
            }
        }
    }
    errors
}

fn show(repo: &Path, file: &Path) -> String {
    file.strip_prefix(repo)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Why `target`, linked from `from`, does not resolve; `None` when it does or is not ours to
/// check (a URL, mail).
fn broken(
    from: &Path,
    target: &str,
    cache: &mut HashMap<PathBuf, Option<Vec<String>>>,
) -> Option<String> {
    if target.is_empty() {
        return Some("empty link target".into());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let dest = if path.is_empty() {
        from.to_path_buf()
    } else if path.starts_with('/') {
        return Some(
            "absolute path (GitHub resolves it against the site, not the repository)".into(),
        );
    } else {
        from.parent().unwrap_or(Path::new(".")).join(path)
    };
    if !dest.exists() {
        return Some(format!("no such file {}", dest.display()));
    }
    let anchor = anchor?;
    if dest.extension() != Some(std::ffi::OsStr::new("md")) {
        return None;
    }
    let known = cache
        .entry(dest.clone())
        .or_insert_with(|| fs::read_to_string(&dest).ok().map(|t| anchors(&t)));
    match known {
        Some(list) if list.iter().any(|a| a == anchor) => None,
        Some(_) => Some(format!(
            "no heading with anchor #{anchor} in {}",
            dest.display()
        )),
        None => Some(format!("cannot read {}", dest.display())),
    }
}
