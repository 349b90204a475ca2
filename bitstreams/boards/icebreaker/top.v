// iCEBreaker (iCE40UP5K-SG48) top-level: the reduced controller
// (`LiteBoardTop`, hdl/src/rtl/lite.rs; the full one is twice the UP5K) at
// the 12 MHz board clock (no PLL); UART through the FT2232H's second
// channel (USB serial); BTN_N resets; LEDG_N heartbeat, LEDR_N error (both
// active low); the PMOD2 snap-off's LED1-LED4 (active high) show heartbeat,
// region B active, off (no cold tier), error. Host window and tier are in
// SPRAM. The flash pins are driven idle (SSB high): the reduced controller
// has no cold tier, and the configuration flash stays untouched.
`default_nettype none
module board_top (
    input  wire CLK,
    input  wire BTN_N,
    input  wire RX,
    output wire TX,
    output wire LEDR_N,
    output wire LEDG_N,
    output wire LED1,
    output wire LED2,
    output wire LED3,
    output wire LED4,
    output wire FLASH_SCK,
    output wire FLASH_SSB,
    output wire FLASH_IO0,
    input  wire FLASH_IO1
);
    wire [3:0] leds;
    top hitless (
        .clock(CLK),
        .reset(~BTN_N),
        .uart_rx(RX),
        .uart_tx(TX),
        .leds(leds),
        .flash_sck(FLASH_SCK),
        .flash_cs_n(FLASH_SSB),
        .flash_mosi(FLASH_IO0),
        .flash_miso(FLASH_IO1)
    );
    assign {LED4, LED3, LED2, LED1} = leds;
    assign LEDG_N = ~leds[0];
    assign LEDR_N = ~leds[3];
endmodule
