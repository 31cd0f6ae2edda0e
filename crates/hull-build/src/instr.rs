//! The instructions that change only the image config: ENV, LABEL, USER, WORKDIR (its
//! directory is made by build.rs), EXPOSE, VOLUME, ENTRYPOINT, CMD, SHELL, STOPSIGNAL,
//! HEALTHCHECK, MAINTAINER, ONBUILD. The config is kept as JSON so that fields hull does
//! not model pass through from the base image untouched.

use serde_json::{json, Map, Value};

use crate::lex::Lexer;
use crate::parser::Instruction;
use crate::{msg, StepError};

/// The `config` object of an image config, created when missing.
pub(crate) fn cfg(config: &mut Value) -> &mut Map<String, Value> {
    if !config.get("config").is_some_and(Value::is_object) {
        config["config"] = json!({});
    }
    match config.get_mut("config") {
        Some(Value::Object(m)) => m,
        // Just made an object above.
        _ => unreachable!("config is an object"),
    }
}

/// The config's Env as (key, value) pairs.
pub(crate) fn env_pairs(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    let (k, v) = s.split_once('=').unwrap_or((s, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn set_env(config: &mut Value, key: &str, value: &str) {
    let mut pairs = env_pairs(config);
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1 = value.to_string(),
        None => pairs.push((key.to_string(), value.to_string())),
    }
    let list: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    cfg(config).insert("Env".into(), json!(list));
}

/// `key=value ...` (or the legacy `key value`) pairs of ENV, LABEL and ARG.
pub(crate) fn key_values(
    ins: &Instruction,
    lx: &Lexer<'_>,
    legacy: bool,
) -> Result<Vec<(String, String)>, StepError> {
    let raw = lx_split(&ins.args, lx.escape);
    if legacy && raw.first().is_some_and(|w| !w.contains('=')) {
        let (k, v) = ins
            .args
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| msg(format!("{} needs a value", ins.keyword)))?;
        return Ok(vec![(k.to_string(), lx.word(v.trim())?)]);
    }
    raw.iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| msg(format!("{}: {w:?} is not key=value", ins.keyword)))?;
            Ok((lx.word(k)?, lx.word(v)?))
        })
        .collect()
}

/// Splits on unquoted blanks, keeping quotes and escapes for the lexer.
fn lx_split(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ' ' | '\t') => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (q, e) if e == escape && q != Some('\'') => {
                cur.push(e);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Exec form as given, or shell form wrapped in the stage's shell.
pub(crate) fn command(ins: &Instruction, shell: &[String]) -> Vec<String> {
    match ins.json_args() {
        Some(v) => v,
        None => {
            let mut v = shell.to_vec();
            v.push(ins.args.clone());
            v
        }
    }
}

/// The stage's SHELL (docker's default `/bin/sh -c`).
pub(crate) fn shell(config: &Value) -> Vec<String> {
    config["config"]["Shell"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// Docker duration syntax (`30s`, `1m30s`, `500ms`) to nanoseconds.
fn duration_ns(flag: &str, s: &str) -> Result<i64, StepError> {
    let bad = || msg(format!("HEALTHCHECK --{flag}={s}: not a duration"));
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let v: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += v * mult;
        rest = &rest[u..];
    }
    Ok(total as i64)
}

fn healthcheck(ins: &Instruction, shell: &[String]) -> Result<Value, StepError> {
    let args = ins.args.trim();
    if args.eq_ignore_ascii_case("NONE") {
        return Ok(json!({"Test": ["NONE"]}));
    }
    let rest = args
        .strip_prefix("CMD")
        .or_else(|| args.strip_prefix("cmd"))
        .ok_or_else(|| msg("HEALTHCHECK: expected CMD or NONE"))?
        .trim_start();
    let sub = Instruction {
        args: rest.to_string(),
        ..ins.clone()
    };
    let test = match sub.json_args() {
        Some(v) => [vec!["CMD".to_string()], v].concat(),
        None => {
            let _ = shell;
            vec!["CMD-SHELL".to_string(), rest.to_string()]
        }
    };
    let mut h = Map::new();
    h.insert("Test".into(), json!(test));
    for (flag, key) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(v) = ins.flag(flag) {
            h.insert(key.into(), json!(duration_ns(flag, v)?));
        }
    }
    if let Some(r) = ins.flag("retries") {
        let n: i64 = r
            .parse()
            .map_err(|_| msg(format!("HEALTHCHECK --retries={r}: not a number")))?;
        h.insert("Retries".into(), json!(n));
    }
    Ok(Value::Object(h))
}

/// Applies a config-only instruction. `cmd_set` tracks whether this stage set CMD
/// (ENTRYPOINT clears an inherited CMD, as docker).
pub(crate) fn apply(
    config: &mut Value,
    ins: &Instruction,
    lx: &Lexer<'_>,
    cmd_set: &mut bool,
) -> Result<(), StepError> {
    let sh = shell(config);
    match ins.keyword.as_str() {
        "ENV" => {
            for (k, v) in key_values(ins, lx, true)? {
                set_env(config, &k, &v);
            }
        }
        "LABEL" => {
            let pairs = key_values(ins, lx, false)?;
            let c = cfg(config);
            let labels = c.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in pairs {
                labels[k] = json!(v);
            }
        }
        "MAINTAINER" => config["author"] = json!(lx.word(ins.args.trim())?),
        "USER" => {
            cfg(config).insert("User".into(), json!(lx.word(ins.args.trim())?));
        }
        "STOPSIGNAL" => {
            cfg(config).insert("StopSignal".into(), json!(lx.word(ins.args.trim())?));
        }
        "EXPOSE" => {
            let ports = lx.words(&ins.args)?;
            let c = cfg(config);
            let map = c.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in ports {
                let p = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                map[p] = json!({});
            }
        }
        "VOLUME" => {
            let vols = match ins.json_args() {
                Some(v) => v,
                None => lx.words(&ins.args)?,
            };
            let c = cfg(config);
            let map = c.entry("Volumes").or_insert_with(|| json!({}));
            for v in vols {
                if v.is_empty() {
                    return Err(msg("VOLUME: empty path"));
                }
                map[v] = json!({});
            }
        }
        "CMD" => {
            cfg(config).insert("Cmd".into(), json!(command(ins, &sh)));
            *cmd_set = true;
        }
        "ENTRYPOINT" => {
            let c = cfg(config);
            c.insert("Entrypoint".into(), json!(command(ins, &sh)));
            if !*cmd_set {
                c.insert("Cmd".into(), Value::Null);
            }
        }
        "SHELL" => {
            let v = ins
                .json_args()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| msg("SHELL requires the arguments in JSON form"))?;
            cfg(config).insert("Shell".into(), json!(v));
        }
        "HEALTHCHECK" => {
            let h = healthcheck(ins, &sh)?;
            cfg(config).insert("Healthcheck".into(), h);
        }
        "ONBUILD" => {
            crate::build::parse_trigger(ins.args.trim())
                .map_err(|m| msg(format!("ONBUILD: {m}")))?;
            let c = cfg(config);
            let list = c.entry("OnBuild").or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(a) = list.as_array_mut() {
                a.push(json!(ins.args.trim()));
            }
        }
        other => return Err(msg(format!("{other} is not a config instruction"))),
    }
    Ok(())
}
