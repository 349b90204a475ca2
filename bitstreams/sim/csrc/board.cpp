// C ABI around the Verilated board top-level: one call per clock cycle.
#include <cstdint>
#include "Vboard.h"
#include "verilated.h"

extern "C" {

struct Hb {
    VerilatedContext* ctx;
    Vboard* top;
};

void* hb_new() {
    Hb* h = new Hb();
    h->ctx = new VerilatedContext();
    h->top = new Vboard(h->ctx);
    h->top->clock = 0;
    h->top->reset = 0;
    h->top->uart_rx = 1;
    h->top->flash_miso = 1;
    h->top->eval();
    return h;
}

void hb_free(void* p) {
    Hb* h = static_cast<Hb*>(p);
    h->top->final();
    delete h->top;
    delete h->ctx;
    delete h;
}

// One clock cycle with `rx` on the UART input and `miso` from the flash;
// returns tx in bit 0, the LEDs in bits 4:1, flash SCK, CS# and MOSI in
// bits 5, 6, 7 (sampled after the rising edge).
uint32_t hb_cycle(void* p, uint32_t rx, uint32_t miso) {
    Hb* h = static_cast<Hb*>(p);
    h->top->uart_rx = rx & 1;
    h->top->flash_miso = miso & 1;
    h->top->clock = 1;
    h->top->eval();
    h->top->clock = 0;
    h->top->eval();
    return (h->top->uart_tx & 1) | ((uint32_t)(h->top->leds & 15) << 1) |
           ((uint32_t)(h->top->flash_sck & 1) << 5) | ((uint32_t)(h->top->flash_cs_n & 1) << 6) |
           ((uint32_t)(h->top->flash_mosi & 1) << 7);
}

}
