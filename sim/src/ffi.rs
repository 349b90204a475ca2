//! The C ABI of `csrc/shim.cpp`.

use std::ffi::{c_char, c_void, CString};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HlIn {
    pub reset: u8,
    pub awvalid: u8,
    pub wvalid: u8,
    pub bready: u8,
    pub arvalid: u8,
    pub rready: u8,
    pub wstrb: u8,
    pub awaddr: u16,
    pub araddr: u16,
    pub wdata: u32,
    pub host_cmd_ready: u8,
    pub host_rsp_valid: u8,
    pub host_rsp_write: u8,
    pub host_rsp_data: u64,
    pub warm_cmd_ready: u8,
    pub warm_rsp_valid: u8,
    pub warm_rsp_write: u8,
    pub warm_rsp_data: u64,
    pub cold_cmd_ready: u8,
    pub cold_rsp_valid: u8,
    pub cold_rsp_write: u8,
    pub cold_rsp_data: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HlOut {
    pub awready: u8,
    pub wready: u8,
    pub bvalid: u8,
    pub bresp: u8,
    pub arready: u8,
    pub rvalid: u8,
    pub rresp: u8,
    pub irq: u8,
    pub rdata: u32,
    pub host_cmd_valid: u8,
    pub host_cmd_write: u8,
    pub host_cmd_wstrb: u8,
    pub host_cmd_addr: u64,
    pub host_cmd_wdata: u64,
    pub warm_cmd_valid: u8,
    pub warm_cmd_write: u8,
    pub warm_cmd_wstrb: u8,
    pub warm_cmd_addr: u64,
    pub warm_cmd_wdata: u64,
    pub cold_cmd_valid: u8,
    pub cold_cmd_write: u8,
    pub cold_cmd_wstrb: u8,
    pub cold_cmd_addr: u64,
    pub cold_cmd_wdata: u64,
}

extern "C" {
    fn hl_new(vcd_path: *const c_char) -> *mut c_void;
    fn hl_free(p: *mut c_void);
    fn hl_step(p: *mut c_void, input: *const HlIn, output: *mut HlOut);
    fn hl_peek(p: *mut c_void, output: *mut HlOut);
    fn hl_trace_supported() -> i32;
}

/// One instance of the Verilated controller. Dropping it is a power cut:
/// every flip-flop is gone.
pub struct Verilated {
    raw: *mut c_void,
}

// SAFETY: the model is only ever touched through `&mut self`; Verilator
// models may move between threads as long as calls are not concurrent.
unsafe impl Send for Verilated {}

impl Verilated {
    /// A fresh model. `vcd` writes a waveform if tracing was compiled in
    /// (`HITLESS_TRACE_BUILD=1` at build time).
    pub fn new(vcd: Option<&str>) -> Self {
        let path = vcd.and_then(|p| CString::new(p).ok());
        let ptr = path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        // SAFETY: `ptr` is null or a NUL-terminated string that outlives the call;
        // hl_new copies what it needs.
        let raw = unsafe { hl_new(ptr) };
        assert!(!raw.is_null(), "hl_new returned null");
        Self { raw }
    }

    /// Whether VCD tracing was compiled into the model.
    pub fn trace_supported() -> bool {
        // SAFETY: a pure query with no arguments.
        unsafe { hl_trace_supported() != 0 }
    }

    /// The outputs the design presents in the current cycle.
    pub fn peek(&mut self) -> HlOut {
        let mut out = HlOut::default();
        // SAFETY: `raw` is a live model created by hl_new (freed only in Drop);
        // `out` is a #[repr(C)] mirror of the C struct.
        unsafe { hl_peek(self.raw, &mut out) };
        out
    }

    /// Apply this cycle's `input` and clock one edge; returns the outputs
    /// for the next cycle (every output of the design is registered).
    #[inline]
    pub fn step(&mut self, input: &HlIn) -> HlOut {
        let mut out = HlOut::default();
        // SAFETY: `raw` is a live model created by hl_new (freed only in Drop);
        // both structs are #[repr(C)] mirrors of the C definitions.
        unsafe { hl_step(self.raw, input, &mut out) };
        out
    }
}

impl Drop for Verilated {
    fn drop(&mut self) {
        // SAFETY: `raw` came from hl_new and is freed exactly once.
        unsafe { hl_free(self.raw) };
    }
}
