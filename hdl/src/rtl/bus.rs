//! Bus bundles used everywhere in the controller: one AXI4-Lite bundle type,
//! one pipelined-memory-port (PMP) bundle type, and the AXI4 bundle of the
//! DMA adapter (`axi4`).

use rust_hdl::prelude::*;

/// Width of the CSR byte address on the AXI4-Lite port
/// (`contract::CSR_ADDR_BITS`: the controller's 4 KiB register file).
pub const CSR_ADDR_BITS: usize = crate::contract::CSR_ADDR_BITS as usize;

/// AXI4-Lite, controller (master) side. `CSR_ADDR_BITS`-bit byte addresses, 32-bit data.
#[derive(LogicInterface, Default)]
#[join = "AxiLiteTarget"]
pub struct AxiLiteInitiator {
    /// Write address valid.
    pub awvalid: Signal<Out, Bit>,
    /// Write address accepted.
    pub awready: Signal<In, Bit>,
    /// Write byte address.
    pub awaddr: Signal<Out, Bits<CSR_ADDR_BITS>>,
    /// Write data valid.
    pub wvalid: Signal<Out, Bit>,
    /// Write data accepted.
    pub wready: Signal<In, Bit>,
    /// Write data.
    pub wdata: Signal<Out, Bits<32>>,
    /// Write byte strobes (the CSR file requires all four).
    pub wstrb: Signal<Out, Bits<4>>,
    /// Write response valid.
    pub bvalid: Signal<In, Bit>,
    /// Write response accepted.
    pub bready: Signal<Out, Bit>,
    /// Write response (0 OKAY, 2 SLVERR).
    pub bresp: Signal<In, Bits<2>>,
    /// Read address valid.
    pub arvalid: Signal<Out, Bit>,
    /// Read address accepted.
    pub arready: Signal<In, Bit>,
    /// Read byte address.
    pub araddr: Signal<Out, Bits<CSR_ADDR_BITS>>,
    /// Read data valid.
    pub rvalid: Signal<In, Bit>,
    /// Read data accepted.
    pub rready: Signal<Out, Bit>,
    /// Read data.
    pub rdata: Signal<In, Bits<32>>,
    /// Read response.
    pub rresp: Signal<In, Bits<2>>,
}

/// AXI4-Lite, target (slave) side: the controller's CSR port.
#[derive(LogicInterface, Default)]
#[join = "AxiLiteInitiator"]
pub struct AxiLiteTarget {
    /// Write address valid.
    pub awvalid: Signal<In, Bit>,
    /// Write address accepted.
    pub awready: Signal<Out, Bit>,
    /// Write byte address.
    pub awaddr: Signal<In, Bits<CSR_ADDR_BITS>>,
    /// Write data valid.
    pub wvalid: Signal<In, Bit>,
    /// Write data accepted.
    pub wready: Signal<Out, Bit>,
    /// Write data.
    pub wdata: Signal<In, Bits<32>>,
    /// Write byte strobes (the CSR file requires all four).
    pub wstrb: Signal<In, Bits<4>>,
    /// Write response valid.
    pub bvalid: Signal<Out, Bit>,
    /// Write response accepted.
    pub bready: Signal<In, Bit>,
    /// Write response (0 OKAY, 2 SLVERR).
    pub bresp: Signal<Out, Bits<2>>,
    /// Read address valid.
    pub arvalid: Signal<In, Bit>,
    /// Read address accepted.
    pub arready: Signal<Out, Bit>,
    /// Read byte address.
    pub araddr: Signal<In, Bits<CSR_ADDR_BITS>>,
    /// Read data valid.
    pub rvalid: Signal<Out, Bit>,
    /// Read data accepted.
    pub rready: Signal<In, Bit>,
    /// Read data.
    pub rdata: Signal<Out, Bits<32>>,
    /// Read response.
    pub rresp: Signal<Out, Bits<2>>,
}

/// Pipelined memory port, master side. 64-bit data, byte addresses that are
/// always 8-byte aligned. Every accepted command produces exactly one
/// response, in order: read data for a read, an acknowledgement for a write
/// (for NV memory the acknowledgement means the write is durable). There is
/// no backpressure on responses: a master only issues what it can absorb.
#[derive(LogicInterface, Default)]
#[join = "PmpTarget"]
pub struct PmpInitiator<const A: usize> {
    /// Command valid.
    pub cmd_valid: Signal<Out, Bit>,
    /// Command accepted this cycle (with `cmd_valid`).
    pub cmd_ready: Signal<In, Bit>,
    /// 1 = write, 0 = read.
    pub cmd_write: Signal<Out, Bit>,
    /// Byte address, 8-byte aligned.
    pub cmd_addr: Signal<Out, Bits<A>>,
    /// Write data.
    pub cmd_wdata: Signal<Out, Bits<64>>,
    /// Write byte strobes.
    pub cmd_wstrb: Signal<Out, Bits<8>>,
    /// Response valid (one per accepted command, in order).
    pub rsp_valid: Signal<In, Bit>,
    /// The response is a write acknowledgement (echo of `cmd_write`).
    pub rsp_write: Signal<In, Bit>,
    /// Read data.
    pub rsp_data: Signal<In, Bits<64>>,
}

/// Pipelined memory port, target side (memories, adapters).
#[derive(LogicInterface, Default)]
#[join = "PmpInitiator"]
pub struct PmpTarget<const A: usize> {
    /// Command valid.
    pub cmd_valid: Signal<In, Bit>,
    /// Command accepted this cycle (with `cmd_valid`).
    pub cmd_ready: Signal<Out, Bit>,
    /// 1 = write, 0 = read.
    pub cmd_write: Signal<In, Bit>,
    /// Byte address, 8-byte aligned.
    pub cmd_addr: Signal<In, Bits<A>>,
    /// Write data.
    pub cmd_wdata: Signal<In, Bits<64>>,
    /// Write byte strobes.
    pub cmd_wstrb: Signal<In, Bits<8>>,
    /// Response valid (one per accepted command, in order).
    pub rsp_valid: Signal<Out, Bit>,
    /// The response is a write acknowledgement (echo of `cmd_write`).
    pub rsp_write: Signal<Out, Bit>,
    /// Read data.
    pub rsp_data: Signal<Out, Bits<64>>,
}

/// AXI4 (full), master side: 64-bit data, `A`-bit byte addresses, `I`-bit IDs.
/// The signal set of a Zynq HP port or a PCIe DMA bridge (no user or region
/// signals).
#[derive(LogicInterface, Default)]
#[join = "Axi4Target"]
pub struct Axi4Initiator<const A: usize, const I: usize> {
    /// Write address ID (the adapter uses one ID: 0).
    pub awid: Signal<Out, Bits<I>>,
    /// Write burst start byte address.
    pub awaddr: Signal<Out, Bits<A>>,
    /// Write burst length in beats minus one.
    pub awlen: Signal<Out, Bits<8>>,
    /// Beat size, log2 bytes (3: 8 bytes).
    pub awsize: Signal<Out, Bits<3>>,
    /// Burst type (1: INCR).
    pub awburst: Signal<Out, Bits<2>>,
    /// Exclusive access (never).
    pub awlock: Signal<Out, Bit>,
    /// Memory attributes.
    pub awcache: Signal<Out, Bits<4>>,
    /// Protection attributes.
    pub awprot: Signal<Out, Bits<3>>,
    /// Quality of service.
    pub awqos: Signal<Out, Bits<4>>,
    /// Write address valid.
    pub awvalid: Signal<Out, Bit>,
    /// Write address accepted.
    pub awready: Signal<In, Bit>,
    /// Write data.
    pub wdata: Signal<Out, Bits<64>>,
    /// Write byte strobes.
    pub wstrb: Signal<Out, Bits<8>>,
    /// Last beat of the write burst.
    pub wlast: Signal<Out, Bit>,
    /// Write data valid.
    pub wvalid: Signal<Out, Bit>,
    /// Write data accepted.
    pub wready: Signal<In, Bit>,
    /// Write response ID.
    pub bid: Signal<In, Bits<I>>,
    /// Write response (0 OKAY, 1 EXOKAY, 2 SLVERR, 3 DECERR).
    pub bresp: Signal<In, Bits<2>>,
    /// Write response valid.
    pub bvalid: Signal<In, Bit>,
    /// Write response accepted.
    pub bready: Signal<Out, Bit>,
    /// Read address ID (the adapter uses one ID: 0).
    pub arid: Signal<Out, Bits<I>>,
    /// Read burst start byte address.
    pub araddr: Signal<Out, Bits<A>>,
    /// Read burst length in beats minus one.
    pub arlen: Signal<Out, Bits<8>>,
    /// Beat size, log2 bytes (3: 8 bytes).
    pub arsize: Signal<Out, Bits<3>>,
    /// Burst type (1: INCR).
    pub arburst: Signal<Out, Bits<2>>,
    /// Exclusive access (never).
    pub arlock: Signal<Out, Bit>,
    /// Memory attributes.
    pub arcache: Signal<Out, Bits<4>>,
    /// Protection attributes.
    pub arprot: Signal<Out, Bits<3>>,
    /// Quality of service.
    pub arqos: Signal<Out, Bits<4>>,
    /// Read address valid.
    pub arvalid: Signal<Out, Bit>,
    /// Read address accepted.
    pub arready: Signal<In, Bit>,
    /// Read data ID.
    pub rid: Signal<In, Bits<I>>,
    /// Read data.
    pub rdata: Signal<In, Bits<64>>,
    /// Read response (0 OKAY, 1 EXOKAY, 2 SLVERR, 3 DECERR).
    pub rresp: Signal<In, Bits<2>>,
    /// Last beat of the read burst.
    pub rlast: Signal<In, Bit>,
    /// Read data valid.
    pub rvalid: Signal<In, Bit>,
    /// Read data accepted.
    pub rready: Signal<Out, Bit>,
}

/// AXI4 (full), slave side: the mirror of [`Axi4Initiator`].
#[derive(LogicInterface, Default)]
#[join = "Axi4Initiator"]
pub struct Axi4Target<const A: usize, const I: usize> {
    /// Write address ID (the adapter uses one ID: 0).
    pub awid: Signal<In, Bits<I>>,
    /// Write burst start byte address.
    pub awaddr: Signal<In, Bits<A>>,
    /// Write burst length in beats minus one.
    pub awlen: Signal<In, Bits<8>>,
    /// Beat size, log2 bytes (3: 8 bytes).
    pub awsize: Signal<In, Bits<3>>,
    /// Burst type (1: INCR).
    pub awburst: Signal<In, Bits<2>>,
    /// Exclusive access (never).
    pub awlock: Signal<In, Bit>,
    /// Memory attributes.
    pub awcache: Signal<In, Bits<4>>,
    /// Protection attributes.
    pub awprot: Signal<In, Bits<3>>,
    /// Quality of service.
    pub awqos: Signal<In, Bits<4>>,
    /// Write address valid.
    pub awvalid: Signal<In, Bit>,
    /// Write address accepted.
    pub awready: Signal<Out, Bit>,
    /// Write data.
    pub wdata: Signal<In, Bits<64>>,
    /// Write byte strobes.
    pub wstrb: Signal<In, Bits<8>>,
    /// Last beat of the write burst.
    pub wlast: Signal<In, Bit>,
    /// Write data valid.
    pub wvalid: Signal<In, Bit>,
    /// Write data accepted.
    pub wready: Signal<Out, Bit>,
    /// Write response ID.
    pub bid: Signal<Out, Bits<I>>,
    /// Write response (0 OKAY, 1 EXOKAY, 2 SLVERR, 3 DECERR).
    pub bresp: Signal<Out, Bits<2>>,
    /// Write response valid.
    pub bvalid: Signal<Out, Bit>,
    /// Write response accepted.
    pub bready: Signal<In, Bit>,
    /// Read address ID (the adapter uses one ID: 0).
    pub arid: Signal<In, Bits<I>>,
    /// Read burst start byte address.
    pub araddr: Signal<In, Bits<A>>,
    /// Read burst length in beats minus one.
    pub arlen: Signal<In, Bits<8>>,
    /// Beat size, log2 bytes (3: 8 bytes).
    pub arsize: Signal<In, Bits<3>>,
    /// Burst type (1: INCR).
    pub arburst: Signal<In, Bits<2>>,
    /// Exclusive access (never).
    pub arlock: Signal<In, Bit>,
    /// Memory attributes.
    pub arcache: Signal<In, Bits<4>>,
    /// Protection attributes.
    pub arprot: Signal<In, Bits<3>>,
    /// Quality of service.
    pub arqos: Signal<In, Bits<4>>,
    /// Read address valid.
    pub arvalid: Signal<In, Bit>,
    /// Read address accepted.
    pub arready: Signal<Out, Bit>,
    /// Read data ID.
    pub rid: Signal<Out, Bits<I>>,
    /// Read data.
    pub rdata: Signal<Out, Bits<64>>,
    /// Read response (0 OKAY, 1 EXOKAY, 2 SLVERR, 3 DECERR).
    pub rresp: Signal<Out, Bits<2>>,
    /// Last beat of the read burst.
    pub rlast: Signal<Out, Bit>,
    /// Read data valid.
    pub rvalid: Signal<Out, Bit>,
    /// Read data accepted.
    pub rready: Signal<In, Bit>,
}
