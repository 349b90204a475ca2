//! include/hitless.h is what cbindgen makes of src/lib.rs today.

#[path = "../header.rs"]
mod header;

#[test]
fn header_is_fresh() {
    let want = header::generate();
    let path = header::header_path();
    let have = std::fs::read(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale (or missing): run `cargo run -p hitless-c --example gen-header` and commit it",
        path.display()
    );
}
