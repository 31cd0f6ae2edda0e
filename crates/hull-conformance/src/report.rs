//! Per-field results and their JSON lines.

use serde_json::{json, Value};

/// The result of checking one field of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The config field, JSON-path-like: `process.user.uid`,
    /// `mounts[/dev/shm].options.nosuid`, `linux.sysctl[kernel.shmmax]`.
    pub field: String,
    pub ok: bool,
    pub want: Value,
    pub got: Value,
}

impl Check {
    /// The line `hull-check` prints.
    pub fn to_json(&self) -> Value {
        json!({ "field": self.field, "ok": self.ok, "want": self.want, "got": self.got })
    }
}

/// All checks of one run, in order.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Records a check whose verdict the caller computed.
    pub fn check(
        &mut self,
        field: impl Into<String>,
        ok: bool,
        want: impl Into<Value>,
        got: impl Into<Value>,
    ) {
        self.checks.push(Check {
            field: field.into(),
            ok,
            want: want.into(),
            got: got.into(),
        });
    }

    /// Records `want == got`.
    pub fn eq<T: Into<Value> + PartialEq>(&mut self, field: impl Into<String>, want: T, got: T) {
        let ok = want == got;
        self.check(field, ok, want, got);
    }

    /// Records a failure to observe a field (file missing, unparsable).
    pub fn fail(
        &mut self,
        field: impl Into<String>,
        want: impl Into<Value>,
        why: impl Into<String>,
    ) {
        self.check(field, false, want, json!({ "error": why.into() }));
    }

    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_verdict() {
        let mut r = Report::default();
        r.eq("a", 1, 1);
        r.eq("b", "x", "y");
        r.fail("c", 3, "missing");
        assert!(!r.all_ok());
        let bad: Vec<_> = r.failures().map(|c| c.field.as_str()).collect();
        assert_eq!(bad, ["b", "c"]);
        assert_eq!(
            r.checks[0].to_json(),
            json!({"field": "a", "ok": true, "want": 1, "got": 1})
        );
    }
}
