//! The part of Go's text/template that users paste from docker's `--format`: `{{.Field}}`,
//! `{{.Label "key"}}`, `{{json .Field}}`, `\t`/`\n` escapes, and a `table` prefix (a
//! header row of the fields' column names, columns aligned). Anything else is an error
//! naming the action, rather than output that silently differs from docker's.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(String),
    Label(String),
    Json(String),
    /// `{{json .}}`: the whole row as JSON, where the command has it (the `.` field).
    JsonDot,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    table: bool,
    parts: Vec<Part>,
}

/// A row's values by field name; `Labels` also serves `{{.Label "k"}}`.
pub(crate) struct Row {
    pub(crate) fields: BTreeMap<&'static str, String>,
    pub(crate) labels: BTreeMap<String, String>,
}

impl Template {
    pub(crate) fn parse(s: &str) -> Result<Template> {
        let (table, body) = match s.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, s),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].into()));
            }
            let Some(j) = rest[i..].find("}}") else {
                bail!("invalid --format {s:?}: unclosed action");
            };
            parts.push(action(s, rest[i + 2..i + j].trim())?);
            rest = &rest[i + j + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.into()));
        }
        // A format without one action is a typo of `table`/`json` far more often than a
        // wish to print the same text per row (which docker would do).
        if parts.iter().all(|p| matches!(p, Part::Text(_))) {
            bail!("invalid --format {s:?}: expected table, json, or a template such as '{{{{.Names}}}}'");
        }
        Ok(Template { table, parts })
    }

    fn render(&self, row: &Row, known: &[&str]) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) | Part::Json(f) => {
                    let Some(v) = row.fields.get(f.as_str()) else {
                        bail!(
                            "invalid --format: no field {f:?} (fields: {})",
                            known.join(", ")
                        );
                    };
                    if matches!(p, Part::Json(_)) {
                        out.push_str(&serde_json::to_string(v)?);
                    } else {
                        out.push_str(v);
                    }
                }
                Part::Label(k) => out.push_str(row.labels.get(k).map_or("", String::as_str)),
                Part::JsonDot => match row.fields.get(".") {
                    Some(v) => out.push_str(v),
                    None => bail!("invalid --format: {{{{json .}}}} is not supported here"),
                },
            }
        }
        Ok(out)
    }

    /// The output lines for `rows`; `header` maps a field to its column title.
    pub(crate) fn lines(
        &self,
        rows: &[Row],
        header: impl Fn(&str) -> String,
        known: &[&str],
    ) -> Result<Vec<String>> {
        let mut lines: Vec<String> = Vec::new();
        if self.table {
            let head: String = self
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.clone(),
                    Part::Field(f) | Part::Json(f) => header(f),
                    Part::Label(k) => k.to_ascii_uppercase(),
                    Part::JsonDot => String::new(),
                })
                .collect();
            lines.push(head);
        }
        for r in rows {
            lines.push(self.render(r, known)?);
        }
        Ok(if self.table { align(&lines) } else { lines })
    }
}

fn action(whole: &str, a: &str) -> Result<Part> {
    let bad = || {
        anyhow::anyhow!("invalid --format {whole:?}: unsupported action {{{{{a}}}}} (supported: {{{{.Field}}}}, {{{{.Label \"key\"}}}}, {{{{json .Field}}}})")
    };
    if let Some(rest) = a.strip_prefix("json ") {
        if rest.trim() == "." {
            return Ok(Part::JsonDot);
        }
        let f = rest.trim().strip_prefix('.').ok_or_else(bad)?;
        return Ok(Part::Json(f.into()));
    }
    let f = a.strip_prefix('.').ok_or_else(bad)?;
    if let Some(k) = f.strip_prefix("Label ") {
        let k = k.trim().trim_matches('"');
        return Ok(Part::Label(k.into()));
    }
    // `Actor.ID`: a nested field, when the command offers it under that name.
    if f.is_empty() || f.ends_with('.') || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
    {
        return Err(bad());
    }
    Ok(Part::Field(f.into()))
}

/// Columns split on tabs, padded like docker's tabwriter (minwidth 10, padding 3).
fn align(lines: &[String]) -> Vec<String> {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let n = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; n];
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    cells
        .iter()
        .map(|row| {
            let mut s = String::new();
            for (i, c) in row.iter().enumerate() {
                s.push_str(c);
                if i + 1 < row.len() {
                    // docker's tabwriter: cells padded by 3, at least 10 wide.
                    let w = (widths[i] + 3).max(10);
                    s.push_str(&" ".repeat(w - c.chars().count()));
                }
            }
            s.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(name: &str, status: &str) -> Row {
        Row {
            fields: [("Names", name.to_string()), ("Status", status.to_string())].into(),
            labels: [("k".to_string(), "v".to_string())].into(),
        }
    }

    #[test]
    fn fields_labels_and_table() {
        let t = Template::parse("{{.Names}}: {{.Status}} {{.Label \"k\"}}").unwrap();
        let l = t
            .lines(&[row("a", "Up")], |f| f.to_uppercase(), &[])
            .unwrap();
        assert_eq!(l, ["a: Up v"]);
        let t = Template::parse("table {{.Names}}\\t{{.Status}}").unwrap();
        let l = t
            .lines(
                &[row("long-name", "Up"), row("b", "Exited")],
                |f| f.to_uppercase(),
                &[],
            )
            .unwrap();
        assert_eq!(
            l,
            ["NAMES       STATUS", "long-name   Up", "b           Exited"]
        );
        let t = Template::parse("{{json .Names}}").unwrap();
        assert_eq!(
            t.lines(&[row("a", "")], |f| f.into(), &[]).unwrap(),
            ["\"a\""]
        );
    }

    #[test]
    fn unknown_actions_and_fields_are_errors() {
        assert!(Template::parse("{{range .Names}}").is_err());
        assert!(Template::parse("{{.Names").is_err());
        assert!(Template::parse("xml").is_err());
        let t = Template::parse("{{.Nope}}").unwrap();
        assert!(t.lines(&[row("a", "")], |f| f.into(), &["Names"]).is_err());
    }
}
