// Tang Nano 20K (GW2AR-LV18QN88C8/I7) top-level: the controller at the
// 27 MHz board clock; UART through the on-board BL616 (USB serial);
// S1 resets; LEDs (active low): 0 heartbeat, 1 warm region B, 2 cold
// region B, 3 error. The cold tier lives in the configuration flash above
// the bitstream, on the MSPI pins (released to the fabric after
// configuration: gowin_pack --mspi_as_gpio); HOLD# is held high.
`default_nettype none
module board_top (
    input  wire       clk,
    input  wire       s1,
    input  wire       uart_rx,
    output wire       uart_tx,
    output wire [5:0] led,
    output wire       mspi_sclk,
    output wire       mspi_cs,
    output wire       mspi_mosi,
    input  wire       mspi_miso,
    output wire       mspi_hold
);
    assign mspi_hold = 1'b1;
    wire [3:0] leds;
    top hitless (
        .clock(clk),
        .reset(s1),
        .uart_rx(uart_rx),
        .uart_tx(uart_tx),
        .leds(leds),
        .flash_sck(mspi_sclk),
        .flash_cs_n(mspi_cs),
        .flash_mosi(mspi_mosi),
        .flash_miso(mspi_miso)
    );
    assign led = ~{2'b00, leds};
endmodule
