//! Write include/hitless.h from src/lib.rs (cbindgen):
//! `cargo run -p hitless-c --example gen-header`.

#[path = "../header.rs"]
mod header;

fn main() {
    let path = header::header_path();
    let text = header::generate();
    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {} ({} bytes)", path.display(), text.len());
}
