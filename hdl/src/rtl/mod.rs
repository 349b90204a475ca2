//! The controller RTL, written with rust-hdl (feature `rtl`).
//!
//! One block, one job: `axil` (AXI4-Lite to register strobes), `crc`
//! (CRC-32C, 8 bytes/cycle), `mover` (the DMA datapath), `router` (port
//! ownership), `controller` (registers, rings, sequencing, commit, boot scan).

pub mod axi4;
pub mod axil;
pub mod board;
pub mod bram;
pub mod bridge;
pub mod bus;
pub mod controller;
pub mod crc;
pub mod fifo;
pub mod flash;
pub mod irq;
pub mod lite;
pub mod mover;
pub mod router;
pub mod slice;
pub mod spi;
pub mod spram;
pub mod superblock;
pub mod uart;
pub mod zynq;

use crate::contract::NvGeometry;
use rust_hdl::prelude::*;

/// Elaborate the controller for `geometry` and return its Verilog (module `top`).
pub fn generate_verilog(geometry: &NvGeometry) -> String {
    let mut uut = controller::HitlessController::new(geometry);
    uut.connect_all();
    rust_hdl::core::prelude::generate_verilog(&uut)
}

/// Elaborate the board top-level (controller, UART bridge, block RAMs, the
/// cold tier in `cold`; see [`board`]) for a UART of `divider` clocks per
/// bit; Verilog module `top`.
pub fn generate_board_verilog(divider: u16, cold: board::ColdTier) -> String {
    let mut uut = board::BoardTop::new(divider, cold);
    uut.connect_all();
    rust_hdl::core::prelude::generate_verilog(&uut)
}

/// Elaborate the lite board top-level ([`board::LiteBoardTop`]: the reduced
/// controller for small FPGAs, UART bridge, one shared memory) for a UART of
/// `divider` clocks per bit; Verilog module `top`.
pub fn generate_lite_board_verilog(divider: u16) -> String {
    let mut uut = board::LiteBoardTop::new(divider);
    uut.connect_all();
    rust_hdl::core::prelude::generate_verilog(&uut)
}

/// Elaborate the Zynq top-level ([`zynq::ZynqTop`]: the controller on the
/// PS's GP0 and HP0 ports, block-RAM tiers); Verilog module `top`, for the
/// PYNQ-Z2 wrapper that instantiates the `PS7`.
pub fn generate_zynq_verilog() -> String {
    let mut uut = zynq::ZynqTop::default();
    uut.connect_all();
    rust_hdl::core::prelude::generate_verilog(&uut)
}

/// Elaborate a flash-backed tier of `2^N` words ([`flash::FlashTier`]) on
/// its own, for its Verilated testbench; Verilog module `top`.
pub fn generate_flash_tier_verilog<const N: usize>(base: u32, half: u16, polls: u32) -> String {
    let mut uut = flash::FlashTier::<N>::new(base, half, polls);
    uut.connect_all();
    rust_hdl::core::prelude::generate_verilog(&uut)
}

/// A port of a test wrapper: (wrapper name, name on the generated `top`
/// or "" for a port the wrapper's `body` drives, output?, width).
type TbPort = (String, String, bool, usize);

/// A wrapper module `name` around the generated `top`, renaming its ports
/// (rust-hdl names a bundle's signals `bundle$signal`, which cocotb's bus
/// helpers cannot address). `body` is extra Verilog inside the wrapper.
fn wrap_top(name: &str, ports: &[TbPort], wires: &[TbPort], body: &str) -> String {
    let range = |w: usize| {
        if w > 1 {
            format!("[{}:0] ", w - 1)
        } else {
            String::new()
        }
    };
    let mut v = format!("module {name} (\n");
    let decls: Vec<String> = ports
        .iter()
        .map(|(outer, _, out, w)| {
            format!(
                "    {} wire {}{outer}",
                if *out { "output" } else { "input" },
                range(*w)
            )
        })
        .collect();
    v += &decls.join(",\n");
    v += "\n);\n";
    for (outer, _, _, w) in wires {
        v += &format!("    wire {}{outer};\n", range(*w));
    }
    v += body;
    let conns: Vec<String> = ports
        .iter()
        .chain(wires)
        .filter(|(_, inner, _, _)| !inner.is_empty())
        .map(|(outer, inner, _, _)| format!("        .{inner}({outer})"))
        .collect();
    v += &format!("    top dut (\n{}\n    );\nendmodule\n", conns.join(",\n"));
    v
}

/// Width of an AXI4 signal in a test wrapper's table: the ID, the data,
/// the strobes, or a fixed width.
#[derive(Clone, Copy)]
enum AxiWidth {
    Id,
    Data,
    Strb,
    Bits(usize),
}

/// The AXI4 signals (no user or region signals), each with whether the
/// master drives it.
const AXI4_SIGNALS: &[(&str, bool, AxiWidth)] = &[
    ("awid", true, AxiWidth::Id),
    ("awaddr", true, AxiWidth::Bits(32)),
    ("awlen", true, AxiWidth::Bits(8)),
    ("awsize", true, AxiWidth::Bits(3)),
    ("awburst", true, AxiWidth::Bits(2)),
    ("awlock", true, AxiWidth::Bits(1)),
    ("awcache", true, AxiWidth::Bits(4)),
    ("awprot", true, AxiWidth::Bits(3)),
    ("awqos", true, AxiWidth::Bits(4)),
    ("awvalid", true, AxiWidth::Bits(1)),
    ("awready", false, AxiWidth::Bits(1)),
    ("wdata", true, AxiWidth::Data),
    ("wstrb", true, AxiWidth::Strb),
    ("wlast", true, AxiWidth::Bits(1)),
    ("wvalid", true, AxiWidth::Bits(1)),
    ("wready", false, AxiWidth::Bits(1)),
    ("bid", false, AxiWidth::Id),
    ("bresp", false, AxiWidth::Bits(2)),
    ("bvalid", false, AxiWidth::Bits(1)),
    ("bready", true, AxiWidth::Bits(1)),
    ("arid", true, AxiWidth::Id),
    ("araddr", true, AxiWidth::Bits(32)),
    ("arlen", true, AxiWidth::Bits(8)),
    ("arsize", true, AxiWidth::Bits(3)),
    ("arburst", true, AxiWidth::Bits(2)),
    ("arlock", true, AxiWidth::Bits(1)),
    ("arcache", true, AxiWidth::Bits(4)),
    ("arprot", true, AxiWidth::Bits(3)),
    ("arqos", true, AxiWidth::Bits(4)),
    ("arvalid", true, AxiWidth::Bits(1)),
    ("arready", false, AxiWidth::Bits(1)),
    ("rid", false, AxiWidth::Id),
    ("rdata", false, AxiWidth::Data),
    ("rresp", false, AxiWidth::Bits(2)),
    ("rlast", false, AxiWidth::Bits(1)),
    ("rvalid", false, AxiWidth::Bits(1)),
    ("rready", true, AxiWidth::Bits(1)),
];

/// An AXI4 port of a test wrapper, named `{outer}_{signal}` for
/// cocotbext-axi: `master` is whether the generated `top` is its master,
/// `id`/`data` its widths. Signals in `omit` are left out; those in
/// `by_body` are wrapper ports the wrapper's body drives or reads (not
/// connected to `top`); the others connect to `{inner}${signal}`.
fn axi_tb_ports(
    outer: &str,
    inner: &str,
    master: bool,
    (id, data): (usize, usize),
    omit: &[&str],
    by_body: &[&str],
) -> Vec<TbPort> {
    AXI4_SIGNALS
        .iter()
        .filter(|(sig, _, _)| !omit.contains(sig))
        .map(|&(sig, from_master, w)| {
            let w = match w {
                AxiWidth::Id => id,
                AxiWidth::Data => data,
                AxiWidth::Strb => data / 8,
                AxiWidth::Bits(n) => n,
            };
            let to = if by_body.contains(&sig) {
                String::new()
            } else {
                format!("{inner}${sig}")
            };
            (format!("{outer}_{sig}"), to, from_master == master, w)
        })
        .collect()
}

/// The AXI4 DMA adapter (`axi4::PmpToAxi4<32, 4>` with `max_len`,
/// `max_out`) as module `top`, plus a wrapper `axi4_tb` with plain names
/// for the cocotb tests (`hdl/tests/cocotb`): `clk`, `rst`, the memory port
/// as `cmd_*`/`rsp_*`, the error outputs, and the AXI4 port as `m_axi_*`.
pub fn generate_axi4_tb_verilog(max_len: u32, max_out: u32) -> String {
    let mut uut = axi4::PmpToAxi4::<32, 4>::new(max_len, max_out);
    uut.connect_all();
    let mut v = rust_hdl::core::prelude::generate_verilog(&uut);
    let mut ports: Vec<TbPort> = vec![
        ("clk".into(), "clock".into(), false, 1),
        ("rst".into(), "reset".into(), false, 1),
    ];
    for (n, out, w) in [
        ("cmd_valid", false, 1),
        ("cmd_ready", true, 1),
        ("cmd_write", false, 1),
        ("cmd_addr", false, 32),
        ("cmd_wdata", false, 64),
        ("cmd_wstrb", false, 8),
        ("rsp_valid", true, 1),
        ("rsp_write", true, 1),
        ("rsp_data", true, 64),
    ] {
        ports.push((n.into(), format!("pmp${n}"), out, w));
    }
    for (n, out, w) in [
        ("rsp_err", true, 1),
        ("err", true, 1),
        ("err_resp", true, 2),
        ("err_write", true, 1),
        ("err_clear", false, 1),
    ] {
        ports.push((n.into(), n.into(), out, w));
    }
    ports.extend(axi_tb_ports("m_axi", "axi", true, (4, 64), &[], &[]));
    v += &wrap_top("axi4_tb", &ports, &[], "");
    v
}

/// The CSR port's AXI4-Lite target (`axil::AxiLiteCsr`) as module `top`,
/// plus a wrapper `axil_tb` for the cocotb tests: the AXI4-Lite port as
/// `s_axil_*` and a 16-word register file on the strobes (word `i` resets
/// to `0xC0DE0000 + i`), read two cycles after the read strobe, as the
/// controller's register file is.
pub fn generate_axil_tb_verilog() -> String {
    let mut uut = axil::AxiLiteCsr::default();
    uut.connect_all();
    let mut v = rust_hdl::core::prelude::generate_verilog(&uut);
    let a = bus::CSR_ADDR_BITS;
    let mut ports: Vec<TbPort> = vec![
        ("clk".into(), "clock".into(), false, 1),
        ("rst".into(), "reset".into(), false, 1),
    ];
    for (outer, inner, out, w) in [
        ("s_axil_awvalid", "awvalid", false, 1),
        ("s_axil_awready", "awready", true, 1),
        ("s_axil_awaddr", "awaddr", false, a),
        ("s_axil_wvalid", "wvalid", false, 1),
        ("s_axil_wready", "wready", true, 1),
        ("s_axil_wdata", "wdata", false, 32),
        ("s_axil_wstrb", "wstrb", false, 4),
        ("s_axil_bvalid", "bvalid", true, 1),
        ("s_axil_bready", "bready", false, 1),
        ("s_axil_bresp", "bresp", true, 2),
        ("s_axil_arvalid", "arvalid", false, 1),
        ("s_axil_arready", "arready", true, 1),
        ("s_axil_araddr", "araddr", false, a),
        ("s_axil_rvalid", "rvalid", true, 1),
        ("s_axil_rready", "rready", false, 1),
        ("s_axil_rdata", "rdata", true, 32),
        ("s_axil_rresp", "rresp", true, 2),
    ] {
        ports.push((outer.into(), format!("axi${inner}"), out, w));
    }
    let wires: Vec<TbPort> = vec![
        ("wr".into(), "wr".into(), true, 1),
        ("wr_addr".into(), "wr_addr".into(), true, a),
        ("wr_data".into(), "wr_data".into(), true, 32),
        ("rd".into(), "rd".into(), true, 1),
        ("rd_addr".into(), "rd_addr".into(), true, a),
        ("rd_data".into(), "rd_data".into(), false, 32),
    ];
    let body = "    reg [31:0] regs [0:15];
    reg [31:0] rd_q;
    reg [31:0] rd_data_q;
    assign rd_data = rd_data_q;
    integer i;
    initial for (i = 0; i < 16; i = i + 1) regs[i] = 32'hC0DE0000 + i;
    always @(posedge clk) begin
        if (wr) regs[wr_addr[5:2]] <= wr_data;
        rd_q <= regs[rd_addr[5:2]];
        rd_data_q <= rd_q;
    end
";
    v += &wrap_top("axil_tb", &ports, &wires, body);
    v
}

/// The Zynq top-level ([`zynq::ZynqTop`]) as module `top`, plus a wrapper
/// `zynq_tb` for the cocotb test of its AXI glue: `clk`, `rst` (the PS's
/// reset, active high), the GP0 slave as `s_axi_*` and the HP0 master as
/// `m_axi_*` with AXI4 signal widths (what cocotbext-axi's models take):
/// the wrapper passes GP lengths' bits 3:0 in (AXI3) and gives the HP
/// lengths' bits 3:0 out; it checks every HP burst (`hp_bad`, sticky: more
/// than AXI3's 16 beats, not 8-byte beats, unaligned, or across 4 KiB) and
/// counts bursts, beats, the longest burst and the interrupt's rising
/// edges; and `irq`, `leds`, `dma_error`.
pub fn generate_zynq_tb_verilog() -> String {
    use zynq::{GP_ID_BITS as G, HP_ID_BITS as H};
    let mut v = generate_zynq_verilog();
    let mut ports: Vec<TbPort> = vec![
        ("clk".into(), "clock".into(), false, 1),
        ("rst".into(), "reset".into(), false, 1),
        ("irq".into(), "irq".into(), true, 1),
        ("leds".into(), "leds".into(), true, 4),
        ("dma_error".into(), "dma_error".into(), true, 1),
        ("hp_bad".into(), String::new(), true, 1),
        ("hp_bursts".into(), String::new(), true, 16),
        ("hp_beats".into(), String::new(), true, 20),
        ("hp_max_beats".into(), String::new(), true, 9),
        ("irq_edges".into(), String::new(), true, 8),
    ];
    // The GP side: what cocotbext's AxiMaster drives (8-bit lengths, size
    // and burst type, which the bridge ignores; the GP bundle has no
    // lock, cache, protection or QoS).
    const GP_OMIT: &[&str] = &[
        "awlock", "awcache", "awprot", "awqos", "arlock", "arcache", "arprot", "arqos",
    ];
    const GP_BY_BODY: &[&str] = &["awlen", "awsize", "awburst", "arlen", "arsize", "arburst"];
    ports.extend(axi_tb_ports(
        "s_axi",
        "gp",
        false,
        (G, 32),
        GP_OMIT,
        GP_BY_BODY,
    ));
    // The HP side: what cocotbext's AxiRam answers; the lengths pass
    // through the body (bits 3:0 only, as on the PS7).
    ports.extend(axi_tb_ports(
        "m_axi",
        "hp",
        true,
        (H, 64),
        &[],
        &["awlen", "arlen"],
    ));
    let wires: Vec<TbPort> = vec![
        ("gp_awlen".into(), "gp$awlen".into(), false, 4),
        ("gp_arlen".into(), "gp$arlen".into(), false, 4),
        ("hp_awlen".into(), "hp$awlen".into(), true, 8),
        ("hp_arlen".into(), "hp$arlen".into(), true, 8),
    ];
    // The HP checks are kept here, sticky, so that the test reads them once
    // instead of sampling the channels from Python every cycle (the whole
    // controller runs at a few hundred cycles a second under Icarus).
    let body = "    assign gp_awlen = s_axi_awlen[3:0];
    assign gp_arlen = s_axi_arlen[3:0];
    assign m_axi_awlen = {4'b0, hp_awlen[3:0]};
    assign m_axi_arlen = {4'b0, hp_arlen[3:0]};
    reg bad_q = 1'b0;
    reg [15:0] bursts_q = 16'd0;
    reg [19:0] beats_q = 20'd0;
    reg [8:0] max_q = 9'd0;
    reg [7:0] edges_q = 8'd0;
    reg irq_q = 1'b0;
    assign hp_bad = bad_q;
    assign hp_bursts = bursts_q;
    assign hp_beats = beats_q;
    assign hp_max_beats = max_q;
    assign irq_edges = edges_q;
    wire aw_go = m_axi_awvalid & m_axi_awready;
    wire ar_go = m_axi_arvalid & m_axi_arready;
    wire [8:0] aw_n = {1'b0, hp_awlen} + 9'd1;
    wire [8:0] ar_n = {1'b0, hp_arlen} + 9'd1;
    // Longer than AXI3's 16 beats, not 8-byte beats, unaligned, or across 4 KiB.
    wire aw_bad = aw_n > 9'd16 || m_axi_awsize != 3'd3 || m_axi_awaddr[2:0] != 3'd0
        || {4'b0, m_axi_awaddr[11:0]} + {4'b0, aw_n, 3'b0} > 16'd4096;
    wire ar_bad = ar_n > 9'd16 || m_axi_arsize != 3'd3 || m_axi_araddr[2:0] != 3'd0
        || {4'b0, m_axi_araddr[11:0]} + {4'b0, ar_n, 3'b0} > 16'd4096;
    always @(posedge clk) begin
        irq_q <= irq;
        if (irq && !irq_q) edges_q <= edges_q + 8'd1;
        if ((aw_go && aw_bad) || (ar_go && ar_bad)) bad_q <= 1'b1;
        bursts_q <= bursts_q + {15'd0, aw_go} + {15'd0, ar_go};
        beats_q <= beats_q + (aw_go ? {11'd0, aw_n} : 20'd0) + (ar_go ? {11'd0, ar_n} : 20'd0);
        if (aw_go && aw_n > max_q) max_q <= aw_n;
        if (ar_go && ar_n > max_q && !(aw_go && aw_n > ar_n)) max_q <= ar_n;
    end
";
    v += &wrap_top("zynq_tb", &ports, &wires, body);
    v
}

#[cfg(test)]
mod tests {
    //! Per-block structural checks: every block elaborates on its own,
    //! passes yosys' read/proc checks (no latches, no undriven wires) and
    //! Verilator's `-Wall` lint with the project's waivers. The functional
    //! tests of the whole controller run on the Verilated controller in
    //! `sim/tests` (scoreboard against the reference model); the CRC unit,
    //! the mover and the register slice have block-level simulations here,
    //! the interrupt unit and the superblock blocks in their own files.
    use super::*;
    use rust_hdl::core::prelude::{generate_verilog as verilog_of, yosys_validate};
    use std::process::Command;

    fn lint(name: &str, v: &str) {
        let dir = std::env::temp_dir().join(format!("hitless-lint-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("top.v");
        std::fs::write(&file, v).unwrap();
        let waivers = concat!(env!("CARGO_MANIFEST_DIR"), "/lint.vlt");
        let out = Command::new("verilator")
            .args([
                "--lint-only",
                "-Wall",
                "-Wno-DECLFILENAME",
                "--top-module",
                "top",
                waivers,
            ])
            .arg(&file)
            .output()
            .expect("verilator on PATH (cargo xtask setup)");
        assert!(
            out.status.success(),
            "{name}: verilator lint failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn check<B: Block>(name: &str, mut block: B) {
        block.connect_all();
        let v = verilog_of(&block);
        yosys_validate(&format!("hitless_{name}"), &v).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        lint(name, &v);
    }

    #[test]
    fn crc_block_synthesizes_and_lints() {
        check("crc", crc::Crc32c::default());
    }

    #[test]
    fn mover_block_synthesizes_and_lints() {
        check("mover", mover::Mover::default());
    }

    #[test]
    fn axi4_block_synthesizes_and_lints() {
        check("axi4", axi4::PmpToAxi4::<32, 2>::default());
        check("axi4_wide", axi4::PmpToAxi4::<64, 4>::new(256, 8));
    }

    #[test]
    fn axil_block_synthesizes_and_lints() {
        check("axil", axil::AxiLiteCsr::default());
    }

    #[test]
    fn uart_blocks_synthesize_and_lint() {
        check("uart_rx", uart::UartRx::new(8));
        check("uart_tx", uart::UartTx::new(8));
    }

    #[test]
    fn bridge_block_synthesizes_and_lints() {
        check("bridge", bridge::UartBridge::new(8));
    }

    #[test]
    fn bram_block_synthesizes_and_lints() {
        check("bram", bram::PmpBram::<4>::default());
    }

    #[test]
    fn board_top_synthesizes_and_lints() {
        check(
            "board",
            board::BoardTop::new(
                8,
                board::ColdTier::Flash {
                    base: 0x30_0000,
                    half: 2,
                },
            ),
        );
        check("board_bram", board::BoardTop::new(8, board::ColdTier::Bram));
    }

    #[test]
    fn lite_blocks_synthesize_and_lint() {
        check("lite", lite::LiteController::new(&board::BOARD_GEOMETRY));
        check("spram", spram::PmpSpram::<4>::default());
        check("lite_board", board::LiteBoardTop::new(8));
    }

    #[test]
    fn flash_tier_blocks_synthesize_and_lint() {
        check("spi", spi::SpiByte::new(2));
        check(
            "flash_tier",
            flash::FlashTier::<11>::new(0x10_0000, 2, 1 << 20),
        );
    }

    #[test]
    fn irq_block_synthesizes_and_lints() {
        check("irq", irq::IrqUnit::default());
    }

    #[test]
    fn superblock_blocks_synthesize_and_lint() {
        check("sb_scan", superblock::SbScan::default());
        check("sb_commit", superblock::SbCommit::default());
    }

    #[test]
    fn slice_block_synthesizes_and_lints() {
        check("slice", slice::PmpSlice::<32>::default());
    }

    #[test]
    fn router_block_synthesizes_and_lints() {
        check("router", router::PortRouter::default());
    }

    #[test]
    fn zynq_blocks_synthesize_and_lint() {
        check("axi3_csr", zynq::Axi3CsrBridge::<12>::default());
        check("zynq", zynq::ZynqTop::default());
    }

    #[test]
    fn controller_synthesizes_and_lints() {
        check(
            "controller",
            controller::HitlessController::new(&crate::contract::DEFAULT_GEOMETRY),
        );
    }

    /// rust-hdl puts a block's update function in one `always @(*)`. A
    /// signal read there before its first assignment in the same block is a
    /// stale value (or a combinational loop), and Verilator's lint does not
    /// flag it for `always @(*)`. Check the generated Verilog for it.
    fn read_before_assignment(v: &str) -> Vec<String> {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
        let mut problems = Vec::new();
        for block in v.split("always @(*) begin").skip(1) {
            let body = block.split("\n    end\n").next().unwrap_or("");
            // (name, rhs) per line; an assignment is `name [index] = ...`.
            let lines: Vec<(Option<&str>, &str)> = body
                .lines()
                .map(|l| {
                    let t = l.trim_start();
                    let name_end = t.find(|c: char| !ident(c)).unwrap_or(t.len());
                    let rest = t[name_end..].trim_start();
                    let rest = match rest.strip_prefix('[') {
                        Some(r) => r.split_once(']').map_or(r, |x| x.1).trim_start(),
                        None => rest,
                    };
                    match rest.strip_prefix('=') {
                        Some(rhs) if name_end > 0 && !rhs.starts_with('=') => {
                            (Some(&t[..name_end]), rhs)
                        }
                        _ => (None, t),
                    }
                })
                .collect();
            let assigned: std::collections::HashSet<&str> =
                lines.iter().filter_map(|(n, _)| *n).collect();
            let mut written = std::collections::HashSet::new();
            for (name, rhs) in &lines {
                for word in rhs.split(|c: char| !ident(c)).filter(|w| !w.is_empty()) {
                    if assigned.contains(word) && !written.contains(word) {
                        problems.push(word.to_string());
                    }
                }
                if let Some(n) = name {
                    written.insert(*n);
                }
            }
        }
        problems.sort();
        problems.dedup();
        problems
    }

    #[test]
    fn no_combinational_read_before_assignment() {
        let bad = "always @(*) begin\n        a = b;\n        b = c[1];\n        d[2] = a == b;\n    end\n";
        assert_eq!(read_before_assignment(bad), vec!["b".to_string()]);
        let v = generate_verilog(&crate::contract::DEFAULT_GEOMETRY);
        let problems = read_before_assignment(&v);
        assert!(problems.is_empty(), "read before assignment: {problems:?}");
        let v = generate_flash_tier_verilog::<11>(0x10_0000, 2, 1 << 20);
        let problems = read_before_assignment(&v);
        assert!(
            problems.is_empty(),
            "flash tier: read before assignment: {problems:?}"
        );
        let v = generate_axi4_tb_verilog(16, 4);
        let problems = read_before_assignment(&v);
        assert!(
            problems.is_empty(),
            "axi4 adapter: read before assignment: {problems:?}"
        );
        let v = generate_zynq_tb_verilog();
        let problems = read_before_assignment(&v);
        assert!(
            problems.is_empty(),
            "zynq top: read before assignment: {problems:?}"
        );
        let v = generate_lite_board_verilog(8);
        let problems = read_before_assignment(&v);
        assert!(
            problems.is_empty(),
            "lite board: read before assignment: {problems:?}"
        );
    }

    /// The CRC block in rust-hdl's own simulator against the `crc` crate:
    /// seeded random messages of 0..40 bytes, fed 8 bytes per cycle with a
    /// short final word, must give CRC-32C.
    #[test]
    fn crc_block_matches_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let messages: Vec<Vec<u8>> = (0..24)
            .map(|i| (0..(i * 7) % 41).map(|_| rng.gen()).collect())
            .collect();
        let mut sim = Simulation::new();
        sim.add_clock(5, |x: &mut Box<crc::Crc32c>| x.clock.next = !x.clock.val());
        sim.add_testbench(move |mut sim: Sim<crc::Crc32c>| {
            let mut x = sim.init()?;
            for m in &messages {
                x.init.next = true;
                wait_clock_cycle!(sim, clock, x);
                x.init.next = false;
                for chunk in m.chunks(8) {
                    let mut w = [0u8; 8];
                    w[..chunk.len()].copy_from_slice(chunk);
                    x.valid.next = true;
                    x.data.next = u64::from_le_bytes(w).into();
                    x.nbytes.next = (chunk.len() as u64).into();
                    wait_clock_cycle!(sim, clock, x);
                    x.valid.next = false;
                    while x.busy.val() {
                        wait_clock_cycle!(sim, clock, x);
                    }
                }
                while !x.idle.val() {
                    wait_clock_cycle!(sim, clock, x);
                }
                let want = crate::contract::crc32c(m) as u64;
                sim_assert_eq!(sim, x.crc.val(), Bits::<32>::from(want), x);
            }
            sim.done(x)
        });
        let mut uut = crc::Crc32c::default();
        uut.connect_all();
        sim.run(Box::new(uut), 100_000).unwrap();
    }

    /// The mover on its own in rust-hdl's simulator against a byte-copy
    /// reference, the Corundum way: two memory ports with latency, random
    /// `cmd_ready` stalls and one in-order response per command; seeded
    /// random transfers (any source and destination byte alignment,
    /// lengths 0 to 300, some CRC scans without a destination). After each
    /// transfer: the CRC is the reference's, the destination memory equals
    /// the reference byte for byte (nothing outside the range written), and
    /// `busy` fell only after every write was acknowledged (the commit's
    /// ordering rests on that).
    #[test]
    fn mover_block_matches_a_byte_copy() {
        use crate::contract::crc32c;
        use rand::{Rng, SeedableRng};
        use std::collections::{HashMap, VecDeque};
        fn src_byte(a: u64) -> u8 {
            (a.wrapping_mul(0x9E37_79B9) >> 7) as u8
        }
        fn dst_pattern(a: u64) -> u8 {
            (a as u8) ^ 0xA5
        }
        let mut sim = Simulation::new();
        sim.add_clock(5, |x: &mut Box<mover::Mover>| x.clock.next = !x.clock.val());
        sim.add_testbench(move |mut sim: Sim<mover::Mover>| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let mut x = sim.init()?;
            // Source bytes are a function of the address; the destination
            // starts with another pattern, kept in a map of words.
            let mut dst: HashMap<u64, [u8; 8]> = HashMap::new();
            let dst_word = |m: &HashMap<u64, [u8; 8]>, w: u64| {
                m.get(&w)
                    .copied()
                    .unwrap_or_else(|| std::array::from_fn(|i| dst_pattern(w + i as u64)))
            };
            // In-order responses: (due cycle, write ack, data).
            let mut src_q: VecDeque<(u64, bool, u64)> = VecDeque::new();
            let mut dst_q: VecDeque<(u64, bool, u64)> = VecDeque::new();
            let (src_lat, dst_lat) = (23u64, 9u64);
            let mut cycle = 0u64;
            x.reset.next = true;
            wait_clock_cycle!(sim, clock, x);
            x.reset.next = false;
            for t in 0..40u32 {
                let len: u32 = if t % 10 == 0 {
                    0
                } else {
                    rng.gen_range(1..=300)
                };
                let src_addr: u64 = 0x1000 + rng.gen_range(0..64u64);
                let dst_addr: u64 = 0x8000 + rng.gen_range(0..64u64);
                let has_dst = t % 7 != 3;
                let mut want_dst = dst.clone();
                if has_dst {
                    for i in 0..u64::from(len) {
                        let a = dst_addr + i;
                        let mut w = dst_word(&want_dst, a & !7);
                        w[(a & 7) as usize] = src_byte(src_addr + i);
                        want_dst.insert(a & !7, w);
                    }
                }
                let data: Vec<u8> = (0..u64::from(len))
                    .map(|i| src_byte(src_addr + i))
                    .collect();
                x.src_addr.next = src_addr.into();
                x.dst_addr.next = dst_addr.into();
                x.len.next = u64::from(len).into();
                x.has_dst.next = has_dst;
                x.start.next = true;
                let mut started = false;
                let mut acks_due = 0u64;
                let limit = cycle + 20_000;
                loop {
                    // Ports: random stalls, then the command the mover
                    // offers under the ready given now.
                    let src_ready = rng.gen_bool(0.7);
                    let dst_ready = rng.gen_bool(0.6);
                    x.src.cmd_ready.next = src_ready;
                    x.dst.cmd_ready.next = dst_ready;
                    if x.src.cmd_valid.val() & src_ready {
                        sim_assert!(sim, !x.src.cmd_write.val(), x);
                        let a = x.src.cmd_addr.val().to_u64();
                        let w: [u8; 8] = std::array::from_fn(|i| src_byte(a + i as u64));
                        src_q.push_back((cycle + src_lat, false, u64::from_le_bytes(w)));
                    }
                    if x.dst.cmd_valid.val() & dst_ready {
                        sim_assert!(sim, x.dst.cmd_write.val(), x);
                        let a = x.dst.cmd_addr.val().to_u64();
                        let data = x.dst.cmd_wdata.val().to_u64();
                        let strb = x.dst.cmd_wstrb.val().index() as u8;
                        let mut w = dst_word(&dst, a);
                        for (i, b) in data.to_le_bytes().iter().enumerate() {
                            if strb & (1 << i) != 0 {
                                w[i] = *b;
                            }
                        }
                        dst.insert(a, w);
                        dst_q.push_back((cycle + dst_lat, true, 0));
                        acks_due += 1;
                    }
                    for (port, q) in [(&mut x.src, &mut src_q), (&mut x.dst, &mut dst_q)] {
                        match q.front() {
                            Some(&(due, write, d)) if due <= cycle => {
                                port.rsp_valid.next = true;
                                port.rsp_write.next = write;
                                port.rsp_data.next = d.into();
                                q.pop_front();
                            }
                            _ => port.rsp_valid.next = false,
                        }
                    }
                    if x.dst.rsp_valid.next && x.dst.rsp_write.next {
                        acks_due -= 1;
                    }
                    wait_clock_cycle!(sim, clock, x);
                    cycle += 1;
                    if x.busy.val() {
                        started = true;
                        x.start.next = false;
                    } else if started {
                        break;
                    }
                    sim_assert!(sim, cycle < limit, x);
                }
                // Done: every write acknowledged, nothing else in flight.
                sim_assert_eq!(sim, acks_due, 0, x);
                sim_assert!(sim, src_q.is_empty() && dst_q.is_empty(), x);
                sim_assert_eq!(
                    sim,
                    x.crc.val(),
                    Bits::<32>::from(u64::from(crc32c(&data))),
                    x
                );
                sim_assert!(sim, dst == want_dst, x);
            }
            sim.done(x)
        });
        let mut uut = mover::Mover::default();
        uut.connect_all();
        sim.run(Box::new(uut), 10_000_000).unwrap();
    }

    /// The register slice in rust-hdl's simulator against a queue model:
    /// seeded random upstream commands and downstream stalls; every
    /// command must come out once, in order, unchanged, and every response
    /// must come back one cycle later.
    #[test]
    fn slice_block_matches_a_queue() {
        use rand::{Rng, SeedableRng};
        use std::collections::VecDeque;
        let mut sim = Simulation::new();
        sim.add_clock(5, |x: &mut Box<slice::PmpSlice<32>>| {
            x.clock.next = !x.clock.val()
        });
        sim.add_testbench(move |mut sim: Sim<slice::PmpSlice<32>>| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
            let mut x = sim.init()?;
            let mut sent: VecDeque<u64> = VecDeque::new();
            let mut next = 1u64;
            let mut got = 0u64;
            let mut offered: Option<u64> = None;
            let mut rsp_due: Option<u64> = None;
            for cycle in 0..4000u64 {
                // Upstream: keep a command up until it is taken.
                if offered.is_none() && rng.gen_bool(0.7) {
                    offered = Some(next);
                    next += 1;
                }
                x.up.cmd_valid.next = offered.is_some();
                let v = offered.unwrap_or(0);
                x.up.cmd_write.next = v.is_multiple_of(3);
                x.up.cmd_addr.next = ((v * 8) as u32 as u64).into();
                x.up.cmd_wdata.next = v.wrapping_mul(0x9E37_79B9_7F4A_7C15).into();
                x.up.cmd_wstrb.next = ((v % 255) + 1).into();
                // Downstream: random stalls; a response now and then.
                let ready = rng.gen_bool(0.6);
                x.down.cmd_ready.next = ready;
                let rsp = rng.gen_bool(0.3);
                x.down.rsp_valid.next = rsp;
                x.down.rsp_write.next = cycle % 2 == 1;
                x.down.rsp_data.next = cycle.into();
                // (Inputs set above read back only after the clock edge:
                // use the values given, and the slice's registered outputs.)
                let up_fire = offered.is_some() & x.up.cmd_ready.val();
                let down_fire = x.down.cmd_valid.val() & ready;
                if down_fire {
                    let want = sent.pop_front();
                    let a: u64 = x.down.cmd_addr.val().index() as u64;
                    let w = x.down.cmd_wdata.val();
                    sim_assert!(sim, want.map(|v| (v * 8) as u32 as u64) == Some(a), x);
                    let v = want.unwrap_or(0);
                    sim_assert_eq!(
                        sim,
                        w,
                        Bits::<64>::from(v.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                        x
                    );
                    sim_assert_eq!(sim, x.down.cmd_write.val(), v.is_multiple_of(3), x);
                    got += 1;
                }
                // The response given last cycle appears now.
                match rsp_due {
                    Some(c) => {
                        sim_assert!(sim, x.up.rsp_valid.val(), x);
                        sim_assert_eq!(sim, x.up.rsp_data.val(), Bits::<64>::from(c), x);
                        sim_assert_eq!(sim, x.up.rsp_write.val(), c % 2 == 1, x);
                    }
                    None => sim_assert!(sim, !x.up.rsp_valid.val(), x),
                }
                if up_fire {
                    sent.push_back(v);
                    offered = None;
                }
                sim_assert!(sim, sent.len() <= 2, x);
                rsp_due = rsp.then_some(cycle);
                wait_clock_cycle!(sim, clock, x);
            }
            // Drain: everything taken comes out.
            x.up.cmd_valid.next = false;
            x.down.cmd_ready.next = true;
            x.down.rsp_valid.next = false;
            for _ in 0..4 {
                if x.down.cmd_valid.val() {
                    sent.pop_front();
                    got += 1;
                }
                wait_clock_cycle!(sim, clock, x);
            }
            sim_assert!(sim, sent.is_empty() && got > 1000, x);
            sim.done(x)
        });
        let mut uut = slice::PmpSlice::<32>::default();
        uut.connect_all();
        sim.run(Box::new(uut), 100_000).unwrap();
    }
}
