//! Write the controller's Verilog for the default geometry to stdout or a file.
use std::io::Write;

fn main() -> std::io::Result<()> {
    let v = hitless_hdl::rtl::generate_verilog(&hitless_hdl::contract::DEFAULT_GEOMETRY);
    match std::env::args().nth(1) {
        Some(path) => std::fs::write(path, v),
        None => std::io::stdout().write_all(v.as_bytes()),
    }
}
