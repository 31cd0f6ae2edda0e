//! Path patterns: Go's `filepath.Match` per component (`*`, `?`, `[a-z]`, `[^a]`, `\x`), plus
//! `**` for any number of components as `.dockerignore` allows (docker's
//! `patternmatcher`). Paths are relative, `/`-separated, without `.` or `..`.

/// Whether `path` matches `pattern` (both relative, `/`-separated).
pub fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let s: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    components(&p, &s)
}

/// Whether `pattern` has any glob character.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

fn components(p: &[&str], s: &[&str]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(&"**") => (0..=s.len()).any(|k| components(&p[1..], &s[k..])),
        Some(first) => match s.first() {
            Some(c) if component(first, c) => components(&p[1..], &s[1..]),
            _ => false,
        },
    }
}

/// `filepath.Match` of one path component.
fn component(p: &str, s: &str) -> bool {
    let p: Vec<char> = p.chars().collect();
    let s: Vec<char> = s.chars().collect();
    chars(&p, &s)
}

fn chars(p: &[char], s: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return s.is_empty();
    };
    match first {
        '*' => (0..=s.len()).any(|k| chars(&p[1..], &s[k..])),
        '?' => !s.is_empty() && chars(&p[1..], &s[1..]),
        '[' => {
            let Some(&c) = s.first() else { return false };
            match class(&p[1..], c) {
                Some((ok, used)) => ok && chars(&p[1 + used..], &s[1..]),
                None => false,
            }
        }
        '\\' if p.len() > 1 => s.first() == Some(&p[1]) && chars(&p[2..], &s[1..]),
        lit => s.first() == Some(&lit) && chars(&p[1..], &s[1..]),
    }
}

/// A `[...]` class after the `[`: (matches, characters used including the `]`).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let lo = if p[i] == '\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            p[i]
        };
        i += 1;
        if i + 1 < p.len() && p[i] == '-' && p[i + 1] != ']' {
            let hi = p[i + 1];
            i += 2;
            hit |= lo <= c && c <= hi;
        } else {
            hit |= lo == c;
        }
    }
    None
}

/// The rules of a `.dockerignore` file.
#[derive(Default, Debug)]
pub struct Ignore {
    rules: Vec<(String, bool)>,
}

impl Ignore {
    /// Parses `.dockerignore` text: one pattern a line, `#` comments, `!` re-includes.
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (neg, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let pat = pat.trim_start_matches('/').trim_end_matches('/');
            if pat.is_empty() || pat == "." {
                continue;
            }
            rules.push((pat.to_string(), neg));
        }
        Ignore { rules }
    }

    /// Whether `path` (relative) is excluded: the last rule matching it or one of its
    /// parents decides.
    pub fn excluded(&self, path: &str) -> bool {
        let mut out = false;
        for (pat, neg) in &self.rules {
            let mut hit = matches(pat, path);
            let mut cur = path;
            while !hit {
                let Some((parent, _)) = cur.rsplit_once('/') else {
                    break;
                };
                hit = matches(pat, parent);
                cur = parent;
            }
            if hit {
                out = !neg;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("*.txt", "a.txt"));
        assert!(!matches("*.txt", "d/a.txt"));
        assert!(matches("d/*.t?t", "d/a.txt"));
        assert!(matches("**/*.go", "a/b/c.go"));
        assert!(matches("**/*.go", "c.go"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[^a-c]x", "bx"));
        assert!(matches("a\\*", "a*"));
    }

    #[test]
    fn dockerignore() {
        let i = Ignore::parse("# c\n*.log\nbuild\n!build/keep\n/secret/\n");
        assert!(i.excluded("x.log"));
        assert!(!i.excluded("d/x.log"));
        assert!(i.excluded("build/a"));
        assert!(!i.excluded("build/keep"));
        assert!(i.excluded("secret/k"));
        assert!(!i.excluded("src/main.c"));
    }
}
