// ULX3S (LFE5U-85F-6BG381C) top-level: 25 MHz oscillator -> PLL (generated
// by ecppll at build time as module `pll`) -> the controller clock
// (`Board::clock` in xtask/src/bitstreams.rs);
// UART through the on-board FT231X (USB serial); FIRE1 resets.
`default_nettype none
module board_top (
    input  wire       clk_25mhz,
    input  wire       ftdi_txd,   // FT231X -> FPGA
    output wire       ftdi_rxd,   // FPGA -> FT231X
    input  wire [1:1] btn,        // FIRE1, active high
    output wire [7:0] led
);
    wire clk, locked;
    pll pll_i (.clkin(clk_25mhz), .clkout0(clk), .locked(locked));
    wire [3:0] leds;
    top hitless (
        .clock(clk),
        .reset(btn[1] | ~locked),
        .uart_rx(ftdi_txd),
        .uart_tx(ftdi_rxd),
        .leds(leds)
    );
    assign led = {4'b0, leds};
endmodule
