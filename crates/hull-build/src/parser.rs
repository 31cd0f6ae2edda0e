//! Dockerfile parsing: from text to a list of instructions with their line numbers.
//!
//! Grammar (docker's `moby/buildkit/frontend/dockerfile/parser`, the parts hull uses):
//!
//! ```text
//! file        = directive* line*
//! directive   = "#" ws* name ws* "=" ws* value NL     ; only before anything else;
//!                                                     ; names: escape (\ or `), syntax (ignored)
//! line        = ws* ( comment | instruction | "" ) NL
//! comment     = "#" any*                              ; also dropped inside continuations
//! instruction = KEYWORD ( ws+ args )?                 ; keyword case-insensitive
//! args        = text, where ESC NL (ESC followed only by blanks up to the newline)
//!               continues on the next line; empty and comment lines inside a
//!               continuation are skipped
//! flags       = ( "--" name [ "=" value ] ws+ )*      ; at the start of FROM RUN COPY ADD
//!                                                     ; HEALTHCHECK
//! exec form   = JSON array of strings                 ; RUN CMD ENTRYPOINT SHELL HEALTHCHECK
//!                                                     ; VOLUME; anything else is shell form
//! heredoc     = "<<" ["-"] ( WORD | "WORD" | 'WORD' ) ; in RUN COPY ADD: the body is the lines
//!               after the instruction up to a line equal to WORD ("<<-": leading tabs
//!               removed); a quoted WORD turns variable expansion off in the body
//! ```
//!
//! Variables (`$V`, `${V}`, `${V:-default}`, `${V-default}`, `${V:+alt}`, `${V+alt}`) are not
//! expanded here but per instruction while building (see `lex.rs`), since their values come
//! from ARG and ENV as the build goes.

use std::path::{Path, PathBuf};

/// A syntax error, naming the file, line and instruction.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {instruction}: {msg}")]
pub struct ParseError {
    pub file: PathBuf,
    pub line: usize,
    pub instruction: String,
    pub msg: String,
}

/// A here-document of an instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    /// Variables in the body are expanded (unquoted delimiter).
    pub expand: bool,
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line of the keyword.
    pub line: usize,
    /// Upper-case keyword (`FROM`, `RUN`, ...).
    pub keyword: String,
    /// `--name=value` flags in front of the arguments.
    pub flags: Vec<(String, String)>,
    /// The arguments, continuations joined, flags removed.
    pub args: String,
    pub heredocs: Vec<Heredoc>,
}

impl Instruction {
    /// The instruction as docker shows it in a step line (`RUN echo hi`).
    pub fn text(&self) -> String {
        let mut s = self.keyword.clone();
        for (k, v) in &self.flags {
            s.push_str(&format!(" --{k}={v}"));
        }
        if !self.args.is_empty() {
            s.push(' ');
            s.push_str(&self.args);
        }
        s
    }

    /// The exec (JSON) form of the arguments, if they are one.
    pub fn json_args(&self) -> Option<Vec<String>> {
        let t = self.args.trim();
        if !t.starts_with('[') {
            return None;
        }
        serde_json::from_str::<Vec<String>>(t).ok()
    }

    /// A flag's value.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

const FLAGGED: &[&str] = &["FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"];
const HEREDOCS: &[&str] = &["RUN", "COPY", "ADD"];

/// Parses `text`, read from `file` (named in errors).
pub fn parse(file: &Path, text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    while let Some(l) = lines.get(i) {
        let Some((k, v)) = directive(l) else { break };
        if k == "escape" {
            escape = match v.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(err(file, i + 1, "escape directive", "must be \\ or `"));
                }
            };
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        // Join continuation lines.
        let mut logical = String::new();
        let mut cur = first.to_string();
        loop {
            match continued(&cur, escape) {
                Some(body) => {
                    logical.push_str(body);
                    // Skip blank and comment lines inside the continuation.
                    while i < lines.len() {
                        let t = lines[i].trim_start();
                        if t.is_empty() || t.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                    cur = lines[i].to_string();
                    i += 1;
                }
                None => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        let mut ins = instruction(file, start + 1, &logical)?;
        if HEREDOCS.contains(&ins.keyword.as_str()) {
            for (name, strip, expand) in heredoc_names(&ins.args) {
                let mut body = String::new();
                loop {
                    let Some(l) = lines.get(i) else {
                        return Err(err(
                            file,
                            start + 1,
                            &ins.keyword,
                            &format!("unterminated heredoc <<{name}"),
                        ));
                    };
                    i += 1;
                    let l = if strip { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                ins.heredocs.push(Heredoc { name, body, expand });
            }
        }
        out.push(ins);
    }
    Ok(Dockerfile {
        escape,
        instructions: out,
    })
}

fn err(file: &Path, line: usize, instruction: &str, msg: &str) -> ParseError {
    ParseError {
        file: file.to_path_buf(),
        line,
        instruction: instruction.to_string(),
        msg: msg.to_string(),
    }
}

fn directive(l: &str) -> Option<(String, String)> {
    let rest = l.trim().strip_prefix('#')?;
    let (k, v) = rest.split_once('=')?;
    let k = k.trim().to_ascii_lowercase();
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    matches!(k.as_str(), "escape" | "syntax" | "check").then(|| (k, v.trim().to_string()))
}

/// The line without its trailing escape when it continues on the next one.
fn continued(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    let body = t.strip_suffix(escape)?;
    // An escaped escape (`\\` at the end) does not continue.
    let escapes = body.chars().rev().take_while(|c| *c == escape).count();
    (escapes % 2 == 0).then_some(body)
}

fn instruction(file: &Path, line: usize, logical: &str) -> Result<Instruction, ParseError> {
    let t = logical.trim();
    let (kw, rest) = t.split_once(|c: char| c.is_whitespace()).unwrap_or((t, ""));
    let keyword = kw.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(err(file, line, kw, "unknown instruction"));
    }
    let mut args = rest.trim_start();
    let mut flags = Vec::new();
    if FLAGGED.contains(&keyword.as_str()) {
        while let Some(f) = args.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let (k, v) = f[..end].split_once('=').unwrap_or((&f[..end], "true"));
            if k.is_empty() {
                return Err(err(file, line, &keyword, "empty flag name"));
            }
            flags.push((k.to_string(), v.to_string()));
            args = f[end..].trim_start();
        }
    }
    let needs_args = !matches!(keyword.as_str(), "HEALTHCHECK");
    if needs_args && args.is_empty() {
        return Err(err(file, line, &keyword, "requires at least one argument"));
    }
    Ok(Instruction {
        line,
        keyword,
        flags,
        args: args.to_string(),
        heredocs: Vec::new(),
    })
}

/// The heredoc delimiters of an argument string: (name, strip tabs, expand variables).
fn heredoc_names(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(p) = rest.find("<<") {
        let mut s = &rest[p + 2..];
        let strip = s.starts_with('-');
        if strip {
            s = &s[1..];
        }
        let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'');
        let (name, used) = match quote {
            Some(q) => match s[1..].find(q) {
                Some(e) => (&s[1..1 + e], e + 2),
                None => ("", 0),
            },
            None => {
                let e = s
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(s.len());
                (&s[..e], e)
            }
        };
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            out.push((name.to_string(), strip, quote.is_none()));
        }
        rest = &s[used.max(1).min(s.len())..];
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Instruction> {
        parse(Path::new("Dockerfile"), s).unwrap().instructions
    }

    #[test]
    fn continuations_comments_and_flags() {
        let v = p("# syntax=docker/dockerfile:1\nFROM --platform=linux/amd64 busybox AS b\n\n# c\nRUN echo a \\\n  # inner comment\n\n  && echo b\ncopy --chown=1:2 --from=b /x /y\n");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].flag("platform"), Some("linux/amd64"));
        assert_eq!(v[0].args, "busybox AS b");
        assert_eq!(v[1].args, "echo a   && echo b");
        assert_eq!(v[1].line, 5);
        assert_eq!(v[2].keyword, "COPY");
        assert_eq!(v[2].flag("from"), Some("b"));
        assert_eq!(v[2].args, "/x /y");
    }

    #[test]
    fn escape_directive_and_heredoc() {
        let v = p("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  x\nRUN <<EOF\necho hi\nEOF\nCOPY <<-'END' /f\n\tbody $X\n\tEND\n");
        assert_eq!(v[1].args, "dir c:\\   x");
        assert_eq!(v[2].heredocs[0].body, "echo hi\n");
        assert_eq!(v[3].heredocs[0].body, "body $X\n");
        assert!(!v[3].heredocs[0].expand);
    }

    #[test]
    fn errors_name_line_and_instruction() {
        let e = parse(Path::new("Df"), "FROM a\n\nFORM b\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.to_string(), "Df:3: FORM: unknown instruction");
        let e = parse(Path::new("Df"), "FROM a\nRUN\n").unwrap_err();
        assert_eq!(e.to_string(), "Df:2: RUN: requires at least one argument");
        assert!(parse(Path::new("Df"), "FROM a\nRUN <<X\nno end\n").is_err());
    }
}
