// C ABI around the Verilated board top-level: one call per clock cycle.
// Compiled once per board variant: `lite.cpp` includes it with the lite
// board's model and function prefix.
#include <cstdint>
#ifndef HB_MODEL
#define HB_MODEL Vboard
#define HB_HEADER "Vboard.h"
#define HB(name) hb_##name
#endif
#include HB_HEADER
#include "verilated.h"

extern "C" {

struct HB(state) {
    VerilatedContext* ctx;
    HB_MODEL* top;
};

void* HB(new)() {
    HB(state)* h = new HB(state)();
    h->ctx = new VerilatedContext();
    h->top = new HB_MODEL(h->ctx);
    h->top->clock = 0;
    h->top->reset = 0;
    h->top->uart_rx = 1;
    h->top->flash_miso = 1;
    h->top->eval();
    return h;
}

void HB(free)(void* p) {
    HB(state)* h = static_cast<HB(state)*>(p);
    h->top->final();
    delete h->top;
    delete h->ctx;
    delete h;
}

// One clock cycle with `rx` on the UART input, `miso` from the flash and
// the reset button `reset` (active high);
// returns tx in bit 0, the LEDs in bits 4:1, flash SCK, CS# and MOSI in
// bits 5, 6, 7, the interrupt pulse in bit 8 (sampled after the rising edge).
uint32_t HB(cycle)(void* p, uint32_t rx, uint32_t miso, uint32_t reset) {
    HB(state)* h = static_cast<HB(state)*>(p);
    h->top->uart_rx = rx & 1;
    h->top->flash_miso = miso & 1;
    h->top->reset = reset & 1;
    h->top->clock = 1;
    h->top->eval();
    h->top->clock = 0;
    h->top->eval();
    return (h->top->uart_tx & 1) | ((uint32_t)(h->top->leds & 15) << 1) |
           ((uint32_t)(h->top->flash_sck & 1) << 5) | ((uint32_t)(h->top->flash_cs_n & 1) << 6) |
           ((uint32_t)(h->top->flash_mosi & 1) << 7) | ((uint32_t)(h->top->irq & 1) << 8);
}

}
