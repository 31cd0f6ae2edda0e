#![allow(clippy::unwrap_used)]
use super::*;
use crate::registry::Error as RegError;

fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (n, t) in files {
        std::fs::write(d.path().join(n), t).unwrap();
    }
    d
}

const NULL_SPEC: &str = r#"
cdiVersion: "0.6.0"
kind: example.com/dev
containerEdits:
  env: ["SPEC_WIDE=1"]
  additionalGids: [0, 44]
devices:
  - name: "null"
    containerEdits:
      env: ["FOO=from-cdi"]
      deviceNodes:
        - path: /dev/cdi-null
          hostPath: /dev/null
          permissions: rw
      mounts:
        - hostPath: /etc/hostname
          containerPath: /cdi/hostname
          options: [ro, bind]
      hooks:
        - hookName: createRuntime
          path: /bin/true
          args: ["true", "x"]
  - name: zero
    containerEdits:
      deviceNodes:
        - {path: /dev/cdi-zero, hostPath: /dev/zero}
      mounts:
        - {hostPath: /etc, containerPath: /cdi}
"#;

fn base() -> Value {
    json!({"process": {"env": ["PATH=/bin", "FOO=image"], "user": {"uid": 0, "gid": 0, "additionalGids": [44]}},
           "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
           "linux": {"devices": [], "resources": {"devices": [{"allow": false, "access": "rwm"}]}}})
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn applies_device_and_spec_edits() {
    let d = dir(&[("ex.yaml", NULL_SPEC)]);
    let mut c = base();
    apply(
        &mut c,
        &names(&["example.com/dev=null", "example.com/dev=zero"]),
        &[d.path().into()],
    )
    .unwrap();
    let env = c["process"]["env"].as_array().unwrap();
    assert!(
        env.contains(&json!("FOO=from-cdi")) && !env.contains(&json!("FOO=image")),
        "{env:?}"
    );
    assert!(env.contains(&json!("SPEC_WIDE=1")));
    assert_eq!(c["process"]["user"]["additionalGids"], json!([44]));
    let devs = c["linux"]["devices"].as_array().unwrap();
    assert_eq!(devs[0]["path"], "/dev/cdi-null");
    assert_eq!(
        (
            devs[0]["type"].clone(),
            devs[0]["major"].clone(),
            devs[0]["minor"].clone()
        ),
        (json!("c"), json!(1), json!(3))
    );
    assert_eq!(devs[1]["minor"], 5);
    let rules = c["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(
        rules[1],
        json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})
    );
    let m = c["mounts"].as_array().unwrap();
    // Parents first: /cdi before /cdi/hostname.
    assert_eq!(m[1]["destination"], "/cdi");
    assert_eq!(m[1]["options"], json!(["bind"]));
    assert_eq!(
        m[2],
        json!({"destination": "/cdi/hostname", "type": "bind", "source": "/etc/hostname", "options": ["ro", "bind"]})
    );
    assert_eq!(
        c["hooks"]["createRuntime"],
        json!([{"path": "/bin/true", "args": ["true", "x"]}])
    );
}

#[test]
fn later_dirs_override_and_unknown_names_fail() {
    let a = dir(&[("a.yaml", NULL_SPEC)]);
    let b = dir(&[(
        "b.json",
        r#"{"cdiVersion":"0.5.0","kind":"example.com/dev","devices":[{"name":"null","containerEdits":{"env":["FOO=b"]}}]}"#,
    )]);
    let mut c = base();
    apply(
        &mut c,
        &names(&["example.com/dev=null"]),
        &[a.path().into(), b.path().into()],
    )
    .unwrap();
    assert!(c["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&json!("FOO=b")));
    assert!(c["linux"]["devices"].as_array().unwrap().is_empty());
    let e = apply(
        &mut base(),
        &names(&["example.com/dev=nope"]),
        &[a.path().into()],
    )
    .unwrap_err();
    assert!(matches!(e, Error::Registry(RegError::Unknown(..))), "{e}");
}

#[test]
fn conflicts_name_both_files() {
    let other = r#"
cdiVersion: "0.6.0"
kind: other.com/dev
devices:
  - name: a
    containerEdits:
      deviceNodes: [{path: /dev/cdi-null, hostPath: /dev/zero}]
  - name: b
    containerEdits:
      mounts: [{hostPath: /tmp, containerPath: /cdi}]
"#;
    let d = dir(&[("ex.yaml", NULL_SPEC), ("other.yaml", other)]);
    let e = apply(
        &mut base(),
        &names(&["example.com/dev=null", "other.com/dev=a"]),
        &[d.path().into()],
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("device node /dev/cdi-null")
            && msg.contains("ex.yaml")
            && msg.contains("other.yaml"),
        "{msg}"
    );
    let e = apply(
        &mut base(),
        &names(&["example.com/dev=zero", "other.com/dev=b"]),
        &[d.path().into()],
    )
    .unwrap_err();
    assert!(e.to_string().contains("mount /cdi"), "{e}");
    // The same node or mount twice is no conflict.
    apply(
        &mut base(),
        &names(&["example.com/dev=null", "example.com/dev=null"]),
        &[d.path().into()],
    )
    .unwrap();
}

fn err_of(text: &str, file: &str) -> String {
    let d = dir(&[(file, text)]);
    let e = apply(
        &mut base(),
        &names(&["example.com/dev=null"]),
        &[d.path().into()],
    )
    .unwrap_err();
    e.to_string()
}

#[test]
fn spec_errors_name_file_and_field() {
    let m = err_of(&NULL_SPEC.replace("0.6.0", "9.9.9"), "v.yaml");
    assert!(
        m.contains("v.yaml") && m.contains("cdiVersion") && m.contains("9.9.9"),
        "{m}"
    );
    let m = err_of(
        &NULL_SPEC.replace("kind: example.com/dev", "kind: example.com"),
        "k.yaml",
    );
    assert!(m.contains("k.yaml: kind"), "{m}");
    let m = err_of(
        &NULL_SPEC.replace("name: zero", "name: \"ze ro\""),
        "n.yaml",
    );
    assert!(m.contains("devices[1].name"), "{m}");
    let m = err_of(
        &NULL_SPEC.replace("hostPath: /dev/zero}", "hostPath: /dev/zero, major: x}"),
        "t.yaml",
    );
    assert!(
        m.contains("t.yaml") && m.contains("devices[1].containerEdits.deviceNodes[0].major"),
        "{m}"
    );
    let m = err_of(&NULL_SPEC.replace("createRuntime", "sometime"), "h.yaml");
    assert!(
        m.contains("devices[0].containerEdits.hooks[0].hookName"),
        "{m}"
    );
    let m = err_of(
        r#"{"cdiVersion":"0.5.0","kind":"example.com/dev","devices":[{"name":"null","containerEdits":{"mounts":[{"hostPath":"/x"}]}}]}"#,
        "j.json",
    );
    assert!(
        m.contains("j.json")
            && m.contains("devices[0].containerEdits.mounts[0]")
            && m.contains("containerPath"),
        "{m}"
    );
    let m = err_of(
        &NULL_SPEC.replace("hostPath: /dev/null", "hostPath: /etc/hostname"),
        "nd.yaml",
    );
    assert!(
        m.contains("nd.yaml") && m.contains("not a device node"),
        "{m}"
    );
    // A broken spec of another kind does not stop this one.
    let d = dir(&[
        ("ex.yaml", NULL_SPEC),
        (
            "bad.yaml",
            "cdiVersion: \"0.5.0\"\nkind: other.com/x\ndevices: []\n",
        ),
    ]);
    apply(
        &mut base(),
        &names(&["example.com/dev=null"]),
        &[d.path().into()],
    )
    .unwrap();
    let d = dir(&[("a.yaml", NULL_SPEC), ("b.yaml", NULL_SPEC)]);
    let m = apply(
        &mut base(),
        &names(&["example.com/dev=null"]),
        &[d.path().into()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        m.contains("defined twice") && m.contains("a.yaml") && m.contains("b.yaml"),
        "{m}"
    );
}
