#![allow(clippy::unwrap_used)]
mod common;
use common::*;

#[test]
fn run_prints_hello_and_exits_3() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "echo hello; exit 3"]);
    let id = h.id("hello");
    let o = h.run(&b, &id, &[]);
    assert_eq!(o.stdout, "hello\n", "{o:?}");
    assert_eq!(o.code(), Some(3));
    assert_clean(&h, &b, &[&id]);
}
