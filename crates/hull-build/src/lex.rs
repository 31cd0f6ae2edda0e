//! Word splitting, quote removal and variable expansion of instruction arguments, as
//! docker's shell lexer (`moby/buildkit/frontend/dockerfile/shell`): `'...'` is literal,
//! `"..."` expands variables, the escape character quotes the next one, unquoted blanks
//! separate words, and an expansion is never split into words again.
//!
//! Forms: `$V`, `${V}`, `${V:-w}` (w when V is unset or empty), `${V-w}` (when unset),
//! `${V:+w}` (w when V is set and not empty), `${V+w}` (when set).

/// A bad variable reference.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LexError(pub String);

pub struct Lexer<'a> {
    pub escape: char,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    /// The whole of `s` as one word (quotes removed, variables expanded).
    pub fn word(&self, s: &str) -> Result<String, LexError> {
        let chars: Vec<char> = s.chars().collect();
        let mut pos = 0;
        let words = self.process(&chars, &mut pos, false, None)?;
        Ok(words.concat())
    }

    /// `s` split into words on unquoted blanks, each processed.
    pub fn words(&self, s: &str) -> Result<Vec<String>, LexError> {
        let chars: Vec<char> = s.chars().collect();
        let mut pos = 0;
        self.process(&chars, &mut pos, true, None)
    }

    /// Expands variables only; quotes and escapes stay (heredoc bodies).
    pub fn expand_only(&self, s: &str) -> Result<String, LexError> {
        let chars: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$' {
                i += 1;
                out.push_str(&self.variable(&chars, &mut i)?);
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        Ok(out)
    }

    fn process(
        &self,
        c: &[char],
        pos: &mut usize,
        split: bool,
        stop: Option<char>,
    ) -> Result<Vec<String>, LexError> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut started = false;
        while *pos < c.len() {
            let ch = c[*pos];
            if Some(ch) == stop {
                break;
            }
            *pos += 1;
            match ch {
                ' ' | '\t' | '\n' if split => {
                    if started {
                        words.push(std::mem::take(&mut cur));
                        started = false;
                    }
                }
                '\'' => {
                    started = true;
                    while *pos < c.len() && c[*pos] != '\'' {
                        cur.push(c[*pos]);
                        *pos += 1;
                    }
                    if *pos >= c.len() {
                        return Err(LexError("unexpected end of input: missing '".into()));
                    }
                    *pos += 1;
                }
                '"' => {
                    started = true;
                    self.double_quoted(c, pos, &mut cur)?;
                }
                '$' => {
                    started = true;
                    cur.push_str(&self.variable(c, pos)?);
                }
                e if e == self.escape => {
                    started = true;
                    if let Some(n) = c.get(*pos) {
                        cur.push(*n);
                        *pos += 1;
                    } else {
                        cur.push(e);
                    }
                }
                other => {
                    started = true;
                    cur.push(other);
                }
            }
        }
        if started || !split {
            words.push(cur);
        }
        Ok(words)
    }

    fn double_quoted(&self, c: &[char], pos: &mut usize, cur: &mut String) -> Result<(), LexError> {
        while *pos < c.len() {
            let ch = c[*pos];
            *pos += 1;
            match ch {
                '"' => return Ok(()),
                '$' => cur.push_str(&self.variable(c, pos)?),
                e if e == self.escape => match c.get(*pos) {
                    Some(n @ ('"' | '$')) => {
                        cur.push(*n);
                        *pos += 1;
                    }
                    Some(n) if *n == self.escape => {
                        cur.push(*n);
                        *pos += 1;
                    }
                    _ => cur.push(e),
                },
                other => cur.push(other),
            }
        }
        Err(LexError("unexpected end of input: missing \"".into()))
    }

    /// After a `$`: the variable's expansion.
    fn variable(&self, c: &[char], pos: &mut usize) -> Result<String, LexError> {
        let name_char = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
        match c.get(*pos) {
            Some('{') => {
                *pos += 1;
                let start = *pos;
                while *pos < c.len() && name_char(c[*pos]) {
                    *pos += 1;
                }
                let name: String = c[start..*pos].iter().collect();
                if name.is_empty() {
                    return Err(LexError("bad substitution: ${} needs a name".into()));
                }
                let value = (self.lookup)(&name);
                match c.get(*pos) {
                    Some('}') => {
                        *pos += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(':') | Some('-') | Some('+') => self.modifier(c, pos, &name, value),
                    _ => Err(LexError(format!("bad substitution in ${{{name}...}}"))),
                }
            }
            Some(ch) if name_char(*ch) => {
                let start = *pos;
                while *pos < c.len() && name_char(c[*pos]) {
                    *pos += 1;
                }
                let name: String = c[start..*pos].iter().collect();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    fn modifier(
        &self,
        c: &[char],
        pos: &mut usize,
        name: &str,
        value: Option<String>,
    ) -> Result<String, LexError> {
        let colon = c[*pos] == ':';
        if colon {
            *pos += 1;
        }
        let op = c.get(*pos).copied();
        *pos += 1;
        let word = self.process(c, pos, false, Some('}'))?.concat();
        if c.get(*pos) != Some(&'}') {
            return Err(LexError(format!("missing }} in ${{{name}...")));
        }
        *pos += 1;
        let set = value.is_some();
        let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
        let present = if colon { nonempty } else { set };
        match op {
            Some('-') => Ok(if present {
                value.unwrap_or_default()
            } else {
                word
            }),
            Some('+') => Ok(if present { word } else { String::new() }),
            _ => Err(LexError(format!(
                "unsupported modifier in ${{{name}...}} (only :- - :+ +)"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lx(f: &dyn Fn(&str) -> Option<String>) -> Lexer<'_> {
        Lexer {
            escape: '\\',
            lookup: f,
        }
    }

    #[test]
    fn expansion_and_quotes() {
        let f = |n: &str| match n {
            "A" => Some("x y".to_string()),
            "E" => Some(String::new()),
            _ => None,
        };
        let l = lx(&f);
        assert_eq!(
            l.words("$A 'b c' \"d $A\" e\\ f").unwrap(),
            ["x y", "b c", "d x y", "e f"]
        );
        assert_eq!(
            l.word("${U:-def}/${A:+set}/${E:-e}/${E-e}/${U+no}")
                .unwrap(),
            "def/set/e//"
        );
        assert_eq!(l.word("${U:-${A}}").unwrap(), "x y");
        assert_eq!(l.word("\\$A '$A'").unwrap(), "$A $A");
        assert!(l.word("${A").is_err());
        assert!(l.words("'open").is_err());
    }
}
