//! Dockerfile-style changes to an image's execution config, as `docker commit --change` and
//! `docker import --change` take them: `CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`, `LABEL`,
//! `ONBUILD`, `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`.
//!
//! Grammar (one instruction per change, keyword case-insensitive):
//! - `CMD` / `ENTRYPOINT`: a JSON array of strings (exec form), else the rest of the line
//!   run by `/bin/sh -c` (shell form);
//! - `ENV k=v [k2="v 2"...]` or the legacy `ENV k v...`; `LABEL k=v...` the same way;
//! - `EXPOSE 80 53/udp` (protocol `tcp` by default); `VOLUME ["/a"]` or `VOLUME /a /b`;
//! - `WORKDIR` relative to the current one; `USER`, `STOPSIGNAL`, `ONBUILD` verbatim.
//!
//! Words are split on blanks outside double or single quotes; quotes are removed and a
//! backslash escapes the next character (outside single quotes), as in a Dockerfile.

use serde_json::{json, Map, Value};

/// A change that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("change {0:?}: unknown instruction (supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)")]
    Unknown(String),
    #[error("change {change:?}: {reason}")]
    Invalid {
        change: String,
        reason: &'static str,
    },
}

/// Applies `change` to the execution config `cfg` (docker's key spelling).
pub fn apply(cfg: &mut Map<String, Value>, change: &str) -> Result<(), ChangeError> {
    let change_t = change.trim();
    let (word, rest) = change_t
        .split_once(char::is_whitespace)
        .unwrap_or((change_t, ""));
    let rest = rest.trim();
    let bad = |reason| ChangeError::Invalid {
        change: change.to_string(),
        reason,
    };
    let need = |v: &str| {
        if v.is_empty() {
            Err(bad("needs an argument"))
        } else {
            Ok(())
        }
    };
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert(
                "Cmd".into(),
                command(rest).ok_or_else(|| bad("bad JSON array"))?,
            );
        }
        "ENTRYPOINT" => {
            let v = command(rest).ok_or_else(|| bad("bad JSON array"))?;
            cfg.insert("Entrypoint".into(), v);
        }
        "ENV" => {
            need(rest)?;
            for (k, v) in pairs(rest).ok_or_else(|| bad("expected KEY=VALUE or KEY VALUE"))? {
                set_env(cfg, &k, &v);
            }
        }
        "LABEL" => {
            need(rest)?;
            let labels = sub_object(cfg, "Labels");
            for (k, v) in pairs(rest).ok_or_else(|| bad("expected KEY=VALUE"))? {
                labels.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            need(rest)?;
            let mut ports = Vec::new();
            for p in words(rest).ok_or_else(|| bad("unbalanced quotes"))? {
                let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let ok_num = num.split('-').all(|n| n.parse::<u16>().is_ok());
                if !ok_num || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(bad("expected PORT[/tcp|udp|sctp]"));
                }
                ports.push(format!("{num}/{proto}"));
            }
            let exposed = sub_object(cfg, "ExposedPorts");
            for p in ports {
                exposed.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            need(rest)?;
            let list = if rest.starts_with('[') {
                serde_json::from_str::<Vec<String>>(rest).map_err(|_| bad("bad JSON array"))?
            } else {
                words(rest).ok_or_else(|| bad("unbalanced quotes"))?
            };
            let vols = sub_object(cfg, "Volumes");
            for v in list {
                vols.insert(v, json!({}));
            }
        }
        "WORKDIR" => {
            need(rest)?;
            let cur = cfg.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
            let dir = if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("{}/{rest}", cur.trim_end_matches('/'))
            };
            cfg.insert("WorkingDir".into(), json!(dir));
        }
        "USER" => {
            need(rest)?;
            cfg.insert("User".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            need(rest)?;
            cfg.insert("StopSignal".into(), json!(rest));
        }
        "ONBUILD" => {
            need(rest)?;
            let v = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if !v.is_array() {
                *v = json!([]);
            }
            if let Some(a) = v.as_array_mut() {
                a.push(json!(rest));
            }
        }
        _ => return Err(ChangeError::Unknown(change.to_string())),
    }
    Ok(())
}

/// Exec form (a JSON array of strings) or shell form.
fn command(rest: &str) -> Option<Value> {
    if rest.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(rest)
            .ok()
            .map(|v| json!(v));
    }
    Some(json!(["/bin/sh", "-c", rest]))
}

fn sub_object<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = cfg.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// Replaces `key`'s entry in `Env`, or appends one.
pub fn set_env(cfg: &mut Map<String, Value>, key: &str, value: &str) {
    let env = cfg.entry("Env").or_insert_with(|| json!([]));
    if !env.is_array() {
        *env = json!([]);
    }
    let Some(list) = env.as_array_mut() else {
        return;
    };
    let entry = json!(format!("{key}={value}"));
    let prefix = format!("{key}=");
    match list.iter_mut().find(|e| {
        e.as_str()
            .is_some_and(|s| s.starts_with(&prefix) || s == key)
    }) {
        Some(e) => *e = entry,
        None => list.push(entry),
    }
}

/// `k=v k2=v2` pairs, or the legacy `k v w` form (one pair, the value the rest).
fn pairs(rest: &str) -> Option<Vec<(String, String)>> {
    let ws = words(rest)?;
    let first = ws.first()?;
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    ws.into_iter()
        .map(|w| {
            let (k, v) = w.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Splits on blanks outside quotes; removes the quotes; `\` escapes outside `'...'`.
fn words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                cur.push(chars.next()?);
                in_word = true;
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(changes: &[&str]) -> Value {
        let mut m = Map::new();
        m.insert("Env".into(), json!(["PATH=/bin", "A=0"]));
        for c in changes {
            apply(&mut m, c).unwrap();
        }
        Value::Object(m)
    }

    #[test]
    fn instructions() {
        let v = run(&[
            r#"CMD ["echo", "hi"]"#,
            "ENTRYPOINT /bin/app --x",
            r#"ENV A=1 B="two words""#,
            "env C three words",
            r#"LABEL a=1 "b c"=d"#,
            "EXPOSE 80 53/udp",
            "VOLUME /data /logs",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER web:web",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(v["Cmd"], json!(["echo", "hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "/bin/app --x"]));
        assert_eq!(
            v["Env"],
            json!(["PATH=/bin", "A=1", "B=two words", "C=three words"])
        );
        assert_eq!(v["Labels"], json!({"a": "1", "b c": "d"}));
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Volumes"], json!({"/data": {}, "/logs": {}}));
        assert_eq!(v["WorkingDir"], json!("/srv/app"));
        assert_eq!(v["User"], json!("web:web"));
        assert_eq!(v["StopSignal"], json!("SIGINT"));
    }

    #[test]
    fn errors_name_the_change() {
        let mut m = Map::new();
        let e = apply(&mut m, "RUN true").unwrap_err().to_string();
        assert!(
            e.contains("RUN true") && e.contains("unknown instruction"),
            "{e}"
        );
        let e = apply(&mut m, "EXPOSE http").unwrap_err().to_string();
        assert!(e.contains("EXPOSE http"), "{e}");
        assert!(apply(&mut m, r#"CMD ["unterminated"#).is_err());
        assert!(apply(&mut m, "ENV").is_err());
    }
}
