//! Generating include/hitless.h from src/lib.rs with cbindgen; shared by
//! `examples/gen-header.rs` (writes it) and `tests/header.rs` (checks the
//! checked-in copy is fresh).

use std::path::{Path, PathBuf};

/// The crate's directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the header is checked in.
pub fn header_path() -> PathBuf {
    crate_dir()
        .parent()
        .expect("capi/ is in the workspace")
        .join("include/hitless.h")
}

/// The header's text.
pub fn generate() -> Vec<u8> {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("capi/cbindgen.toml: {e}"));
    // Parse src/lib.rs alone (not `with_crate`, which runs `cargo
    // metadata` on the whole workspace): the whole C API is in that file.
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(Path::new(&dir).join("src/lib.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    out
}
