// PYNQ-Z2 (xc7z020clg400-1) top-level: the controller in the PL at the
// 125 MHz PL clock. The board's USB-UART belongs to the PS, so the UART is
// on Pmod JA (JA1 = RX from the host, JA2 = TX to the host) for a 3.3 V
// USB-serial adapter; on a Zynq the natural host path is the AXI GP port
// with the driver's UIO transport. BTN0 resets; LD0..LD3: 0 heartbeat,
// 1 warm region B, 2 cold region B, 3 error. The board's only flash is
// the PS's Quad SPI (MIO pins the fabric cannot reach), so the cold tier is
// block RAM here (`Board::cold`): its flash pins are left unconnected.
`default_nettype none
module board_top (
    input  wire       sysclk,
    input  wire [0:0] btn,
    input  wire       ja_rx,
    output wire       ja_tx,
    output wire [3:0] led
);
    top hitless (
        .clock(sysclk),
        .reset(btn[0]),
        .uart_rx(ja_rx),
        .uart_tx(ja_tx),
        .leds(led),
        .flash_sck(),
        .flash_cs_n(),
        .flash_mosi(),
        .flash_miso(1'b1)
    );
endmodule
