//! Write the controller's Verilog for the default geometry to stdout or a
//! file; with `--board DIVIDER`, the UART board top-level instead (see
//! `hitless_hdl::rtl::board`), its UART at DIVIDER clocks per bit.
use std::io::Write;

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let v = if args.first().is_some_and(|a| a == "--board") {
        let divider = args.get(1).and_then(|d| d.parse::<u16>().ok());
        let Some(divider) = divider.filter(|&d| d >= 4) else {
            eprintln!("usage: hitless-verilog [--board DIVIDER(4..65535)] [OUT]");
            return std::process::ExitCode::from(2);
        };
        args.drain(..2);
        hitless_hdl::rtl::generate_board_verilog(divider)
    } else {
        hitless_hdl::rtl::generate_verilog(&hitless_hdl::contract::DEFAULT_GEOMETRY)
    };
    let written = match args.first() {
        Some(path) => std::fs::write(path, v),
        None => std::io::stdout().write_all(v.as_bytes()),
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hitless-verilog: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
