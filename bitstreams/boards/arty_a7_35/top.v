// Arty A7-35T (xc7a35ticsg324-1L) top-level: the controller at the 100 MHz
// board clock; UART through the on-board FT2232 (USB serial); BTN0 resets;
// LD4..LD7: 0 heartbeat, 1 warm region B, 2 cold region B, 3 error.
// The cold tier lives in the configuration flash (Quad SPI, used single-bit)
// above the bitstream; its clock is the CCLK pin, driven through
// STARTUPE2's USRCCLKO; DQ2 (WP#) and DQ3 (HOLD#) are held high.
`default_nettype none
module board_top (
    input  wire       CLK100MHZ,
    input  wire [0:0] btn,
    input  wire       uart_txd_in,
    output wire       uart_rxd_out,
    output wire [3:0] led,
    output wire       qspi_cs,
    output wire       qspi_dq0,
    input  wire       qspi_dq1,
    output wire       qspi_dq2,
    output wire       qspi_dq3
);
    wire flash_sck;
    STARTUPE2 startup_i (
        .CLK(1'b0), .GSR(1'b0), .GTS(1'b0), .KEYCLEARB(1'b1), .PACK(1'b0),
        .USRCCLKO(flash_sck), .USRCCLKTS(1'b0), .USRDONEO(1'b1), .USRDONETS(1'b1)
    );
    assign qspi_dq2 = 1'b1;
    assign qspi_dq3 = 1'b1;
    top hitless (
        .clock(CLK100MHZ),
        .reset(btn[0]),
        .uart_rx(uart_txd_in),
        .uart_tx(uart_rxd_out),
        .leds(led),
        .flash_sck(flash_sck),
        .flash_cs_n(qspi_cs),
        .flash_mosi(qspi_dq0),
        .flash_miso(qspi_dq1)
    );
endmodule
