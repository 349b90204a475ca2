//! Write the controller's Verilog for the default geometry to stdout or a
//! file; with `--board DIVIDER`, the UART board top-level instead (see
//! `hitless_hdl::rtl::board`), its UART at DIVIDER clocks per bit, its cold
//! tier in block RAM, or on SPI flash with `--flash BASE[:HALF]` (flash byte
//! address, SCK half period in clocks, default 2); with `--board DIVIDER
//! --lite`, the board top-level of the reduced controller for small FPGAs
//! (`LiteBoardTop`: no cold tier); with `--zynq`, the Zynq top-level
//! (`ZynqTop`: CSRs on the PS's GP0 port, DMA on its HP0 port).
use hitless_hdl::rtl::board::ColdTier;
use std::io::Write;

const USAGE: &str =
    "usage: hitless-verilog [--board DIVIDER(4..65535) [--flash BASE[:HALF] | --lite] | --zynq] [OUT]";

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `BASE[:HALF]`: a sector-aligned base below 16 MiB - 24 KiB, HALF 1..=256.
fn parse_flash(s: &str) -> Option<ColdTier> {
    let (base, half) = match s.split_once(':') {
        Some((b, h)) => (b, h.parse::<u16>().ok()?),
        None => (s, 2),
    };
    let base = parse_u32(base)?;
    let fits = base % 4096 == 0 && u64::from(base) + 24 * 1024 <= 1 << 24;
    (fits && (1..=256).contains(&half)).then_some(ColdTier::Flash { base, half })
}

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let v = if args.first().is_some_and(|a| a == "--board") {
        let divider = args.get(1).and_then(|d| d.parse::<u16>().ok());
        let Some(divider) = divider.filter(|&d| d >= 4) else {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        };
        args.drain(..2);
        let mut cold = ColdTier::Bram;
        if args.first().is_some_and(|a| a == "--flash") {
            let Some(c) = args.get(1).and_then(|f| parse_flash(f)) else {
                eprintln!("{USAGE}\n--flash: BASE is a 4 KiB-aligned flash address with 24 KiB above it below 16 MiB; HALF is 1..256");
                return std::process::ExitCode::from(2);
            };
            cold = c;
            args.drain(..2);
        }
        if args.first().is_some_and(|a| a == "--lite") {
            if cold != ColdTier::Bram {
                eprintln!("{USAGE}\n--lite has no cold tier: --flash does not apply");
                return std::process::ExitCode::from(2);
            }
            args.drain(..1);
            hitless_hdl::rtl::generate_lite_board_verilog(divider)
        } else {
            hitless_hdl::rtl::generate_board_verilog(divider, cold)
        }
    } else if args.first().is_some_and(|a| a == "--zynq") {
        args.drain(..1);
        hitless_hdl::rtl::generate_zynq_verilog()
    } else {
        hitless_hdl::rtl::generate_verilog(&hitless_hdl::contract::DEFAULT_GEOMETRY)
    };
    if args.len() > 1 || args.first().is_some_and(|a| a.starts_with("--")) {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    }
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
