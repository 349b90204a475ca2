// C ABI around the Verilated controller: one call per clock cycle.
// Port names come from rust-hdl's bundle flattening ("csr$awvalid"), which
// Verilator mangles to "csr__024awvalid".
#include <cstdint>
#include "Vtop.h"
#include "verilated.h"
#ifdef HITLESS_TRACE
#include "verilated_vcd_c.h"
#endif

extern "C" {

struct HlIn {
    uint8_t reset;
    uint8_t awvalid, wvalid, bready, arvalid, rready, wstrb;
    uint16_t awaddr, araddr;
    uint32_t wdata;
    uint8_t host_cmd_ready, host_rsp_valid, host_rsp_write;
    uint64_t host_rsp_data;
    uint8_t warm_cmd_ready, warm_rsp_valid, warm_rsp_write;
    uint64_t warm_rsp_data;
    uint8_t cold_cmd_ready, cold_rsp_valid, cold_rsp_write;
    uint64_t cold_rsp_data;
};

struct HlOut {
    uint8_t awready, wready, bvalid, bresp, arready, rvalid, rresp, irq;
    uint32_t rdata;
    uint8_t host_cmd_valid, host_cmd_write, host_cmd_wstrb;
    uint64_t host_cmd_addr, host_cmd_wdata;
    uint8_t warm_cmd_valid, warm_cmd_write, warm_cmd_wstrb;
    uint64_t warm_cmd_addr, warm_cmd_wdata;
    uint8_t cold_cmd_valid, cold_cmd_write, cold_cmd_wstrb;
    uint64_t cold_cmd_addr, cold_cmd_wdata;
};

struct Hl {
    VerilatedContext* ctx;
    Vtop* top;
#ifdef HITLESS_TRACE
    VerilatedVcdC* vcd;
#endif
    uint64_t time;
};

int hl_trace_supported() {
#ifdef HITLESS_TRACE
    return 1;
#else
    return 0;
#endif
}

void* hl_new(const char* vcd_path) {
    Hl* h = new Hl();
    h->ctx = new VerilatedContext();
    h->top = new Vtop(h->ctx);
    h->time = 0;
#ifdef HITLESS_TRACE
    h->vcd = nullptr;
    if (vcd_path && vcd_path[0]) {
        h->ctx->traceEverOn(true);
        h->vcd = new VerilatedVcdC();
        h->top->trace(h->vcd, 99);
        h->vcd->open(vcd_path);
    }
#else
    (void)vcd_path;
#endif
    h->top->clock = 0;
    h->top->eval();
    return h;
}

void hl_free(void* p) {
    Hl* h = static_cast<Hl*>(p);
    if (!h) return;
#ifdef HITLESS_TRACE
    if (h->vcd) { h->vcd->close(); delete h->vcd; }
#endif
    h->top->final();
    delete h->top;
    delete h->ctx;
    delete h;
}

static void read_outputs(Vtop* t, HlOut* out);

// The outputs the design presents in the current cycle (all registered).
void hl_peek(void* p, HlOut* out) {
    read_outputs(static_cast<Hl*>(p)->top, out);
}

// Apply this cycle's inputs and clock one edge (the simulation Verilog
// triggers its flops on every clock change, see build.rs); `out` receives
// the outputs for the next cycle.
void hl_step(void* p, const HlIn* in, HlOut* out) {
    Hl* h = static_cast<Hl*>(p);
    Vtop* t = h->top;
    t->reset = in->reset;
    t->csr__024awvalid = in->awvalid;
    t->csr__024awaddr = in->awaddr;
    t->csr__024wvalid = in->wvalid;
    t->csr__024wdata = in->wdata;
    t->csr__024wstrb = in->wstrb;
    t->csr__024bready = in->bready;
    t->csr__024arvalid = in->arvalid;
    t->csr__024araddr = in->araddr;
    t->csr__024rready = in->rready;
    t->host__024cmd_ready = in->host_cmd_ready;
    t->host__024rsp_valid = in->host_rsp_valid;
    t->host__024rsp_write = in->host_rsp_write;
    t->host__024rsp_data = in->host_rsp_data;
    t->warm__024cmd_ready = in->warm_cmd_ready;
    t->warm__024rsp_valid = in->warm_rsp_valid;
    t->warm__024rsp_write = in->warm_rsp_write;
    t->warm__024rsp_data = in->warm_rsp_data;
    t->cold__024cmd_ready = in->cold_cmd_ready;
    t->cold__024rsp_valid = in->cold_rsp_valid;
    t->cold__024rsp_write = in->cold_rsp_write;
    t->cold__024rsp_data = in->cold_rsp_data;
    t->clock = !t->clock;
    t->eval();
#ifdef HITLESS_TRACE
    if (h->vcd) h->vcd->dump(h->time);
#endif
    h->time++;
    read_outputs(t, out);
}

static void read_outputs(Vtop* t, HlOut* out) {
    out->awready = t->csr__024awready;
    out->wready = t->csr__024wready;
    out->bvalid = t->csr__024bvalid;
    out->bresp = t->csr__024bresp;
    out->arready = t->csr__024arready;
    out->rvalid = t->csr__024rvalid;
    out->rdata = t->csr__024rdata;
    out->rresp = t->csr__024rresp;
    out->irq = t->irq;
    out->host_cmd_valid = t->host__024cmd_valid;
    out->host_cmd_write = t->host__024cmd_write;
    out->host_cmd_addr = t->host__024cmd_addr;
    out->host_cmd_wdata = t->host__024cmd_wdata;
    out->host_cmd_wstrb = t->host__024cmd_wstrb;
    out->warm_cmd_valid = t->warm__024cmd_valid;
    out->warm_cmd_write = t->warm__024cmd_write;
    out->warm_cmd_addr = t->warm__024cmd_addr;
    out->warm_cmd_wdata = t->warm__024cmd_wdata;
    out->warm_cmd_wstrb = t->warm__024cmd_wstrb;
    out->cold_cmd_valid = t->cold__024cmd_valid;
    out->cold_cmd_write = t->cold__024cmd_write;
    out->cold_cmd_addr = t->cold__024cmd_addr;
    out->cold_cmd_wdata = t->cold__024cmd_wdata;
    out->cold_cmd_wstrb = t->cold__024cmd_wstrb;
}

}  // extern "C"
