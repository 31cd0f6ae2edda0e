#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::time::Duration;

use super::*;

thread_local! {
    /// Run by this thread's next append between its open and its write.
    static AFTER_OPEN: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
}

/// The hook of [`Journal::append`] (tests only): see [`AFTER_OPEN`].
pub(super) fn after_open() {
    if let Some(f) = AFTER_OPEN.with(|h| h.borrow_mut().take()) {
        f();
    }
}

/// Everything a follower has to hand out now.
fn drain(events: &mut Events) -> Vec<String> {
    let mut out = Vec::new();
    while let Next::Event(e) = events.poll(Duration::ZERO).unwrap() {
        out.push(e.action);
    }
    out
}

/// A writer that opened the journal just before another one rotated it writes its line to
/// the old file: the rotation waits for that write (writers hold the lock shared), so a
/// follower that sees the rotation and reads the old file to its end gets the line.
#[test]
fn a_rotation_does_not_lose_a_line_being_written() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path());
    j.append(&ev("first", "a", 1, &[])).unwrap();
    let mut events = j.read(Query::default());
    assert!(drain(&mut events).is_empty());
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let ja = j.clone();
    let caught = std::thread::spawn(move || {
        AFTER_OPEN.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                opened_tx.send(()).unwrap();
                let _ = go_rx.recv();
            }))
        });
        ja.append(&ev("caught", "a", 2, &[])).unwrap();
    });
    opened_rx.recv().unwrap();
    // Past the bound: this append rotates the journal.
    let big = "x".repeat(MAX_BYTES as usize);
    let jb = j.clone();
    let rotating = std::thread::spawn(move || jb.append(&ev("big", "b", 3, &[("big", &big)])));
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = drain(&mut events);
    go_tx.send(()).unwrap();
    caught.join().unwrap();
    rotating.join().unwrap().unwrap();
    j.append(&ev("after", "a", 4, &[])).unwrap();
    seen.extend(drain(&mut events));
    assert!(suffixed(j.path(), ".1").exists(), "rotated");
    assert_eq!(seen, ["big", "caught", "after"]);
}

fn ev(action: &str, id: &str, t: i64, a: &[(&str, &str)]) -> Event {
    let mut e = Event::new("container", action, id, attrs(a.iter().copied()));
    e.time_nano = t;
    e.time = t / 1_000_000_000;
    e
}

fn all(j: &Journal, q: Query) -> Vec<String> {
    j.read(q)
        .map(|e| {
            let e = e.unwrap();
            format!("{}:{}", e.action, e.actor.id)
        })
        .collect()
}

#[test]
fn window_and_filters() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path());
    j.append(&ev(
        "create",
        "aaa",
        10,
        &[("name", "web"), ("image", "busybox")],
    ))
    .unwrap();
    j.append(&ev(
        "start",
        "aaa",
        20,
        &[("name", "web"), ("image", "busybox")],
    ))
    .unwrap();
    j.append(&ev(
        "die",
        "bbb",
        30,
        &[("name", "db"), ("exitCode", "1"), ("tier", "x")],
    ))
    .unwrap();
    let q = |since, until, f: &[&str]| Query {
        since,
        until,
        filters: Filters::parse(f).unwrap(),
    };
    assert_eq!(all(&j, q(Some(0), Some(100), &[])).len(), 3);
    assert_eq!(all(&j, q(Some(15), Some(25), &[])), ["start:aaa"]);
    assert_eq!(
        all(&j, q(Some(0), Some(100), &["container=db"])),
        ["die:bbb"]
    );
    assert_eq!(
        all(&j, q(Some(0), Some(100), &["event=create", "event=die"])),
        ["create:aaa", "die:bbb"]
    );
    assert_eq!(
        all(&j, q(Some(0), Some(100), &["image=busybox:latest"])).len(),
        2
    );
    assert_eq!(
        all(&j, q(Some(0), Some(100), &["label=tier=x"])),
        ["die:bbb"]
    );
    assert!(all(&j, q(Some(0), Some(100), &["type=image"])).is_empty());
    assert!(matches!(
        Filters::parse(&["bogus=1"]),
        Err(Error::FilterKey(_))
    ));
    assert!(matches!(
        Filters::parse(&["type"]),
        Err(Error::FilterSyntax(_))
    ));
}

#[test]
fn follows_across_a_rotation() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(d.path());
    j.append(&ev("create", "a", 1, &[])).unwrap();
    // Without since or until: from the end, only what comes next.
    let mut r = j.read(Query::default());
    assert!(matches!(r.poll(Duration::ZERO).unwrap(), Next::Idle));
    // Made big enough that the next append rotates it.
    let filler = "x".repeat(MAX_BYTES as usize);
    j.append(&ev("start", "a", 2, &[("pad", &filler)])).unwrap();
    assert!(d.path().join("events.jsonl.1").exists());
    j.append(&ev("die", "a", 3, &[])).unwrap();
    let mut got = Vec::new();
    while let Next::Event(e) = r.poll(Duration::from_millis(300)).unwrap() {
        got.push(e.action);
    }
    assert_eq!(got, ["start", "die"]);
}

#[test]
fn times() {
    let now = 1_000_000 * 1_000_000_000;
    assert_eq!(
        parse_time("--since", "10m", now).unwrap(),
        now - 600_000_000_000
    );
    assert_eq!(
        parse_time("--since", "1h30m", now).unwrap(),
        now - 5_400_000_000_000
    );
    assert_eq!(
        parse_time("--since", "1700000000.5", now).unwrap(),
        1_700_000_000_500_000_000
    );
    assert_eq!(
        parse_time("--since", "2023-11-14T22:13:20Z", now).unwrap(),
        1_700_000_000_000_000_000
    );
    assert_eq!(
        parse_time("--since", "2023-11-14T23:13:20.25+01:00", now).unwrap(),
        1_700_000_000_250_000_000
    );
    assert_eq!(
        parse_time("--since", "2023-11-14", now).unwrap(),
        1_699_920_000_000_000_000
    );
    for bad in ["", "abc", "10x", "2023-13-01", "2023-11-14T25:00"] {
        assert!(parse_time("--until", bad, now).is_err(), "{bad}");
    }
}

#[test]
fn huge_times_are_errors_naming_the_flag() {
    let now = 1_000_000 * 1_000_000_000;
    // Unix seconds that fit an i128 but not as nanoseconds, seconds past Go's int64, and
    // durations past int64 nanoseconds: an error that names the flag, never an overflow.
    for huge in [
        "170141183460469231731687303715884105727",
        "99999999999999999999999999999999.5",
        "9223372036854775808",
        "9999999999999999999h",
        "2562048h",
    ] {
        let e = parse_time("--since", huge, now).expect_err(huge);
        let msg = e.to_string();
        assert!(
            msg.contains("--since") && msg.contains("out of range"),
            "{huge}: {msg}"
        );
    }
    // The largest unix seconds Go takes still parse.
    assert_eq!(
        parse_time("--until", "9223372036854775807", now).unwrap(),
        9_223_372_036_854_775_807 * 1_000_000_000
    );
}
