// ULX3S (LFE5U-85F-6BG381C) top-level: 25 MHz oscillator -> PLL (generated
// by ecppll at build time as module `pll`) -> the controller clock
// (`Board::clock` in xtask/src/bitstreams.rs);
// UART through the on-board FT231X (USB serial); FIRE1 resets.
// The cold tier lives in the configuration flash above the bitstream
// (`Board::cold`): its clock pin is driven through USRMCLK, the only way
// to reach it after configuration; WP# and HOLD# are held high (single-bit
// SPI).
`default_nettype none
module board_top (
    input  wire       clk_25mhz,
    input  wire       ftdi_txd,   // FT231X -> FPGA
    output wire       ftdi_rxd,   // FPGA -> FT231X
    input  wire [1:1] btn,        // FIRE1, active high
    output wire [7:0] led,
    output wire       flash_csn,
    output wire       flash_mosi,
    input  wire       flash_miso,
    output wire       flash_wpn,
    output wire       flash_holdn
);
    wire flash_sck;
    USRMCLK usrmclk_i (.USRMCLKI(flash_sck), .USRMCLKTS(1'b0));
    assign flash_wpn = 1'b1;
    assign flash_holdn = 1'b1;
    wire clk, locked;
    pll pll_i (.clkin(clk_25mhz), .clkout0(clk), .locked(locked));
    wire [3:0] leds;
    top hitless (
        .clock(clk),
        .reset(btn[1] | ~locked),
        .uart_rx(ftdi_txd),
        .uart_tx(ftdi_rxd),
        .leds(leds),
        .flash_sck(flash_sck),
        .flash_cs_n(flash_csn),
        .flash_mosi(flash_mosi),
        .flash_miso(flash_miso)
    );
    assign led = {4'b0, leds};
endmodule
