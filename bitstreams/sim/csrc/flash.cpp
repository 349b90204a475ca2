// C ABI around the Verilated flash-backed cold tier: one call per clock.
#include <cstdint>
#include "Vflash.h"
#include "verilated.h"

extern "C" {

struct Hf {
    VerilatedContext* ctx;
    Vflash* top;
};

// Inputs of one cycle (the NV port's command and the flash's MISO).
struct HfIn {
    uint64_t wdata;
    uint32_t addr;
    uint32_t valid;
    uint32_t write;
    uint32_t wstrb;
    uint32_t miso;
    uint32_t reset;
};

// Outputs after the cycle's rising edge.
struct HfOut {
    uint64_t rsp_data;
    uint32_t cmd_ready;
    uint32_t rsp_valid;
    uint32_t rsp_write;
    uint32_t sck;
    uint32_t cs_n;
    uint32_t mosi;
    uint32_t ready;
    uint32_t error;
};

void* hf_new() {
    Hf* h = new Hf();
    h->ctx = new VerilatedContext();
    h->top = new Vflash(h->ctx);
    h->top->clock = 0;
    h->top->eval();
    return h;
}

void hf_free(void* p) {
    Hf* h = static_cast<Hf*>(p);
    h->top->final();
    delete h->top;
    delete h->ctx;
    delete h;
}

void hf_cycle(void* p, const HfIn* in, HfOut* out) {
    Hf* h = static_cast<Hf*>(p);
    Vflash* t = h->top;
    t->reset = in->reset & 1;
    t->up__024cmd_valid = in->valid & 1;
    t->up__024cmd_write = in->write & 1;
    t->up__024cmd_addr = in->addr;
    t->up__024cmd_wdata = in->wdata;
    t->up__024cmd_wstrb = in->wstrb & 0xFF;
    t->miso = in->miso & 1;
    t->clock = 1;
    t->eval();
    t->clock = 0;
    t->eval();
    out->cmd_ready = t->up__024cmd_ready;
    out->rsp_valid = t->up__024rsp_valid;
    out->rsp_write = t->up__024rsp_write;
    out->rsp_data = t->up__024rsp_data;
    out->sck = t->sck;
    out->cs_n = t->cs_n;
    out->mosi = t->mosi;
    out->ready = t->ready;
    out->error = t->error;
}

}
