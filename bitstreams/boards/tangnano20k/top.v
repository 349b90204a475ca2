// Tang Nano 20K (GW2AR-LV18QN88C8/I7) top-level: the controller at the
// 27 MHz board clock; UART through the on-board BL616 (USB serial);
// S1 resets; LEDs (active low): 0 heartbeat, 1 warm region B, 2 cold
// region B, 3 error.
`default_nettype none
module board_top (
    input  wire       clk,
    input  wire       s1,
    input  wire       uart_rx,
    output wire       uart_tx,
    output wire [5:0] led
);
    wire [3:0] leds;
    top hitless (
        .clock(clk),
        .reset(s1),
        .uart_rx(uart_rx),
        .uart_tx(uart_tx),
        .leds(leds)
    );
    assign led = ~{2'b00, leds};
endmodule
