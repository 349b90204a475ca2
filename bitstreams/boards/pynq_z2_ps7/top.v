// PYNQ-Z2 (xc7z020clg400-1) top-level with the Zynq processing system:
// the controller (`top`, rust-hdl's ZynqTop) in the PL, its CSRs on the
// PS's M_AXI_GP0 (AXI3, 12-bit IDs; the PS maps it at 0x4000_0000 and up,
// the device tree names the 4 KiB window), its DMA on S_AXI_HP0 (AXI3,
// 64-bit, bursts of at most 16 beats) into the PS DDR, its interrupt on
// IRQ_F2P[0] (SPI 61: `interrupts = <0 29 1>`, rising edge), clocked by
// FCLK_CLK0 through a BUFG and reset by FCLK_RESET0_N. The PS7 is Xilinx's
// primitive, a black box here (yosys' xilinx cells_xtra; nextpnr-xilinx
// packs it as PS7_PS7 at its one site); the PS itself (clocks, DDR
// controller, the HP port's 64-bit mode) is set up by the boot loader's
// ps7_init, not by this bitstream.
// LD0..LD3: 0 heartbeat, 1 warm region B, 2 cold region B, 3 error
// (including a SLVERR/DECERR from the HP port).
`default_nettype none
module board_top (
    output wire [3:0] led
);
    // The PS's DDR and MIO pads are dedicated pins, not PL I/O: wires
    // here, so no I/O buffer is inferred for them (as LiteX does for its
    // non-Vivado toolchains; Vivado would want them as ports).
    wire [14:0] DDR_addr;
    wire [2:0]  DDR_ba;
    wire        DDR_cas_n, DDR_ck_n, DDR_ck_p, DDR_cke, DDR_cs_n;
    wire [3:0]  DDR_dm, DDR_dqs_n, DDR_dqs_p;
    wire [31:0] DDR_dq;
    wire        DDR_odt, DDR_ras_n, DDR_reset_n, DDR_we_n;
    wire        FIXED_IO_ddr_vrn, FIXED_IO_ddr_vrp;
    wire [53:0] FIXED_IO_mio;
    wire        FIXED_IO_ps_clk, FIXED_IO_ps_porb, FIXED_IO_ps_srstb;

    wire [3:0] fclk;
    wire [3:0] fclk_resetn;
    wire clk;
    BUFG fclk0_buf (.I(fclk[0]), .O(clk));

    // GP0: the PS is the master.
    wire [11:0] gp_awid, gp_arid, gp_bid, gp_rid;
    wire [31:0] gp_awaddr, gp_araddr, gp_wdata, gp_rdata;
    wire [3:0]  gp_awlen, gp_arlen, gp_wstrb;
    wire        gp_awvalid, gp_awready, gp_wlast, gp_wvalid, gp_wready;
    wire [1:0]  gp_bresp, gp_rresp;
    wire        gp_bvalid, gp_bready, gp_arvalid, gp_arready;
    wire        gp_rlast, gp_rvalid, gp_rready;
    // HP0: the controller is the master (AXI4 bundle, lengths below 16).
    wire [5:0]  hp_awid, hp_arid, hp_bid, hp_rid;
    wire [31:0] hp_awaddr, hp_araddr;
    wire [7:0]  hp_awlen, hp_arlen, hp_wstrb;
    wire [2:0]  hp_awsize, hp_arsize, hp_awprot, hp_arprot;
    wire [1:0]  hp_awburst, hp_arburst, hp_bresp, hp_rresp;
    wire [3:0]  hp_awcache, hp_arcache, hp_awqos, hp_arqos;
    wire        hp_awlock, hp_arlock;
    wire        hp_awvalid, hp_awready, hp_wlast, hp_wvalid, hp_wready;
    wire [63:0] hp_wdata, hp_rdata;
    wire        hp_bvalid, hp_bready, hp_arvalid, hp_arready;
    wire        hp_rlast, hp_rvalid, hp_rready;
    wire        irq;

    top hitless (
        .clock(clk),
        .reset(~fclk_resetn[0]),
        .\gp$awid (gp_awid), .\gp$awaddr (gp_awaddr), .\gp$awlen (gp_awlen),
        .\gp$awvalid (gp_awvalid), .\gp$awready (gp_awready),
        .\gp$wdata (gp_wdata), .\gp$wstrb (gp_wstrb), .\gp$wlast (gp_wlast),
        .\gp$wvalid (gp_wvalid), .\gp$wready (gp_wready),
        .\gp$bid (gp_bid), .\gp$bresp (gp_bresp), .\gp$bvalid (gp_bvalid),
        .\gp$bready (gp_bready),
        .\gp$arid (gp_arid), .\gp$araddr (gp_araddr), .\gp$arlen (gp_arlen),
        .\gp$arvalid (gp_arvalid), .\gp$arready (gp_arready),
        .\gp$rid (gp_rid), .\gp$rdata (gp_rdata), .\gp$rresp (gp_rresp),
        .\gp$rlast (gp_rlast), .\gp$rvalid (gp_rvalid), .\gp$rready (gp_rready),
        .\hp$awid (hp_awid), .\hp$awaddr (hp_awaddr), .\hp$awlen (hp_awlen),
        .\hp$awsize (hp_awsize), .\hp$awburst (hp_awburst), .\hp$awlock (hp_awlock),
        .\hp$awcache (hp_awcache), .\hp$awprot (hp_awprot), .\hp$awqos (hp_awqos),
        .\hp$awvalid (hp_awvalid), .\hp$awready (hp_awready),
        .\hp$wdata (hp_wdata), .\hp$wstrb (hp_wstrb), .\hp$wlast (hp_wlast),
        .\hp$wvalid (hp_wvalid), .\hp$wready (hp_wready),
        .\hp$bid (hp_bid), .\hp$bresp (hp_bresp), .\hp$bvalid (hp_bvalid),
        .\hp$bready (hp_bready),
        .\hp$arid (hp_arid), .\hp$araddr (hp_araddr), .\hp$arlen (hp_arlen),
        .\hp$arsize (hp_arsize), .\hp$arburst (hp_arburst), .\hp$arlock (hp_arlock),
        .\hp$arcache (hp_arcache), .\hp$arprot (hp_arprot), .\hp$arqos (hp_arqos),
        .\hp$arvalid (hp_arvalid), .\hp$arready (hp_arready),
        .\hp$rid (hp_rid), .\hp$rdata (hp_rdata), .\hp$rresp (hp_rresp),
        .\hp$rlast (hp_rlast), .\hp$rvalid (hp_rvalid), .\hp$rready (hp_rready),
        .irq(irq),
        .leds(led),
        .dma_error()
    );

    PS7 ps7 (
        .DDRA(DDR_addr), .DDRBA(DDR_ba), .DDRCASB(DDR_cas_n), .DDRCKN(DDR_ck_n),
        .DDRCKP(DDR_ck_p), .DDRCKE(DDR_cke), .DDRCSB(DDR_cs_n), .DDRDM(DDR_dm),
        .DDRDQ(DDR_dq), .DDRDQSN(DDR_dqs_n), .DDRDQSP(DDR_dqs_p), .DDRODT(DDR_odt),
        .DDRRASB(DDR_ras_n), .DDRDRSTB(DDR_reset_n), .DDRWEB(DDR_we_n),
        .DDRVRN(FIXED_IO_ddr_vrn), .DDRVRP(FIXED_IO_ddr_vrp), .MIO(FIXED_IO_mio),
        .PSCLK(FIXED_IO_ps_clk), .PSPORB(FIXED_IO_ps_porb), .PSSRSTB(FIXED_IO_ps_srstb),
        .FCLKCLK(fclk), .FCLKRESETN(fclk_resetn),
        .IRQF2P({19'b0, irq}),
        // GP0 (AXI3 master): size, burst type, lock, cache, protection,
        // QoS and WID are not needed by a target that takes single beats.
        .MAXIGP0ACLK(clk),
        .MAXIGP0AWID(gp_awid), .MAXIGP0AWADDR(gp_awaddr), .MAXIGP0AWLEN(gp_awlen),
        .MAXIGP0AWVALID(gp_awvalid), .MAXIGP0AWREADY(gp_awready),
        .MAXIGP0WDATA(gp_wdata), .MAXIGP0WSTRB(gp_wstrb), .MAXIGP0WLAST(gp_wlast),
        .MAXIGP0WVALID(gp_wvalid), .MAXIGP0WREADY(gp_wready),
        .MAXIGP0BID(gp_bid), .MAXIGP0BRESP(gp_bresp), .MAXIGP0BVALID(gp_bvalid),
        .MAXIGP0BREADY(gp_bready),
        .MAXIGP0ARID(gp_arid), .MAXIGP0ARADDR(gp_araddr), .MAXIGP0ARLEN(gp_arlen),
        .MAXIGP0ARVALID(gp_arvalid), .MAXIGP0ARREADY(gp_arready),
        .MAXIGP0RID(gp_rid), .MAXIGP0RDATA(gp_rdata), .MAXIGP0RRESP(gp_rresp),
        .MAXIGP0RLAST(gp_rlast), .MAXIGP0RVALID(gp_rvalid), .MAXIGP0RREADY(gp_rready),
        // HP0 (AXI3 slave): lengths' bits 3:0 (the adapter never makes
        // more than 16 beats), WID = AWID (one ID, no interleaving).
        .SAXIHP0ACLK(clk),
        .SAXIHP0AWID(hp_awid), .SAXIHP0AWADDR(hp_awaddr), .SAXIHP0AWLEN(hp_awlen[3:0]),
        .SAXIHP0AWSIZE(hp_awsize[1:0]), .SAXIHP0AWBURST(hp_awburst),
        .SAXIHP0AWLOCK({1'b0, hp_awlock}), .SAXIHP0AWCACHE(hp_awcache),
        .SAXIHP0AWPROT(hp_awprot), .SAXIHP0AWQOS(hp_awqos),
        .SAXIHP0AWVALID(hp_awvalid), .SAXIHP0AWREADY(hp_awready),
        .SAXIHP0WID(hp_awid), .SAXIHP0WDATA(hp_wdata), .SAXIHP0WSTRB(hp_wstrb),
        .SAXIHP0WLAST(hp_wlast), .SAXIHP0WVALID(hp_wvalid), .SAXIHP0WREADY(hp_wready),
        .SAXIHP0BID(hp_bid), .SAXIHP0BRESP(hp_bresp), .SAXIHP0BVALID(hp_bvalid),
        .SAXIHP0BREADY(hp_bready),
        .SAXIHP0ARID(hp_arid), .SAXIHP0ARADDR(hp_araddr), .SAXIHP0ARLEN(hp_arlen[3:0]),
        .SAXIHP0ARSIZE(hp_arsize[1:0]), .SAXIHP0ARBURST(hp_arburst),
        .SAXIHP0ARLOCK({1'b0, hp_arlock}), .SAXIHP0ARCACHE(hp_arcache),
        .SAXIHP0ARPROT(hp_arprot), .SAXIHP0ARQOS(hp_arqos),
        .SAXIHP0ARVALID(hp_arvalid), .SAXIHP0ARREADY(hp_arready),
        .SAXIHP0RID(hp_rid), .SAXIHP0RDATA(hp_rdata), .SAXIHP0RRESP(hp_rresp),
        .SAXIHP0RLAST(hp_rlast), .SAXIHP0RVALID(hp_rvalid), .SAXIHP0RREADY(hp_rready),
        .SAXIHP0RDISSUECAP1EN(1'b0), .SAXIHP0WRISSUECAP1EN(1'b0)
    );
endmodule
