// Arty A7-35T (xc7a35ticsg324-1L) top-level: the controller at the 100 MHz
// board clock; UART through the on-board FT2232 (USB serial); BTN0 resets;
// LD4..LD7: 0 heartbeat, 1 warm region B, 2 cold region B, 3 error.
`default_nettype none
module board_top (
    input  wire       CLK100MHZ,
    input  wire [0:0] btn,
    input  wire       uart_txd_in,
    output wire       uart_rxd_out,
    output wire [3:0] led
);
    top hitless (
        .clock(CLK100MHZ),
        .reset(btn[0]),
        .uart_rx(uart_txd_in),
        .uart_tx(uart_rxd_out),
        .leds(led)
    );
endmodule
