//! AXI4 master adapter for a pipelined memory port: the controller's DMA
//! port on an AXI4 fabric (a Zynq HP port, a PCIe DMA bridge).
//!
//! The memory port side is a [`PmpTarget`]: one command per cycle, exactly
//! one response per command, in command order, no response backpressure.
//! The AXI side is an AXI4 master with 64-bit data, INCR bursts of 8-byte
//! beats, one ID (0) for every transaction.
//!
//! How commands become bursts: consecutive commands of the same kind at
//! consecutive addresses are gathered into one burst ("open burst"). The
//! burst closes when a command does not extend it (the other kind, another
//! address), when it reaches `max_len` beats, when the next beat would start
//! a new 4 KiB page (AXI forbids a burst crossing one), or in the first
//! cycle without a command: gathering never waits for traffic that may not
//! come, so a lone command costs no extra latency beyond the pipeline. A
//! DMA stream that issues a command every cycle gets full-length bursts.
//! Write data waits in a FIFO (512 beats) until its burst's length is known;
//! the W beats go out after the burst's AW is issued (possibly before the
//! slave accepts it, which AXI allows).
//!
//! Several bursts are in flight (`max_out`, at most 8, counted from issue
//! until the port has had every response of the burst). Reads and writes are
//! not reordered against each other: a read burst is issued only when every
//! earlier write burst has its B response, a write burst only when every
//! earlier read burst has its last R beat. AXI gives no ordering between
//! its read and write channels, and the memory port promises a read after
//! a write sees the write (and a write after a read does not change what the
//! read returns). The fence costs one round trip at each switch between
//! reading and writing; the DMA engine streams one kind at a time.
//!
//! Responses: R beats go into a 512-entry FIFO (`rready` is "room in it",
//! a register) and B responses into a small one; the responder walks the
//! issued bursts in order, giving one port response per R beat of a read
//! burst and, once a write burst's B has arrived, one write acknowledgement
//! per beat of it. A SLVERR or DECERR is given with the response it belongs
//! to (`rsp_err`, with `rsp_valid`; every beat of a failed write burst) and
//! latched in `err` with the first failing code and direction, until
//! `err_clear`: the controller can map `err` to a status bit and fail the
//! operation in flight (read data of a failed beat is whatever the slave
//! returned).
//!
//! Timing shape: every output is a register (`cmd_ready`, `rsp_*`, the
//! AXI valids, payloads and readies), so no path runs from an input valid
//! to an output ready, on either side. The command is registered before the
//! burst former looks at it; "does it extend the burst" is one A-bit compare
//! against a precomputed next address. The AR/AW registers load when empty
//! or being accepted (`arready`/`awready` reach their enables), the W
//! register likewise from `wready`. `cmd_ready`, `rready` and `bready` come
//! from FIFO occupancies with the margin their one-cycle delay needs.
//!
//! What it does not do: several IDs (responses come back in order on one ID,
//! so a slave that could reorder across IDs gains nothing), WRAP or FIXED
//! bursts, narrow transfers (every beat is 8 bytes; byte strobes select),
//! exclusive access, address compare instead of the read/write fence, or
//! AXI3 by itself: a Zynq-7000 HP port is AXI3, and `zynq::ZynqTop` makes
//! one of this adapter with `max_len` = `zynq::AXI3_MAX_LEN` (16), its
//! board wrapper passing `awlen[3:0]` and WID = AWID (0).

use super::bus::{Axi4Initiator, PmpTarget};
use super::fifo::Fifo;
use rust_hdl::prelude::*;

/// Most bursts in flight the adapter supports (its bookkeeping FIFOs hold
/// 16 entries; the burst queue needs a margin for its registered ready).
pub const MAX_OUTSTANDING: u32 = 8;

/// Depth of the write-data and read-data FIFOs, in beats (one block RAM of
/// 512 x 72 on Xilinx 7-series).
const DATA_DEPTH: u64 = 512;

/// Depth of the burst bookkeeping FIFOs.
const META_DEPTH: u64 = 16;

/// AXI4 master adapter for a pipelined memory port (see the module doc).
/// `A`: address bits (at least 12), `I`: ID bits (at least 1).
#[derive(LogicBlock)]
pub struct PmpToAxi4<const A: usize, const I: usize> {
    /// Clock (the AXI clock).
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high. Reset the AXI slave with it: a
    /// transaction in flight is forgotten.
    pub reset: Signal<In, Bit>,
    /// The memory port (from the controller's DMA port).
    pub pmp: PmpTarget<A>,
    /// With `pmp.rsp_valid`: this command's AXI response was SLVERR or
    /// DECERR.
    pub rsp_err: Signal<Out, Bit>,
    /// Sticky: some response was SLVERR or DECERR since the last `err_clear`.
    pub err: Signal<Out, Bit>,
    /// The first error's response code (2 SLVERR, 3 DECERR), valid with `err`.
    pub err_resp: Signal<Out, Bits<2>>,
    /// The first error was a write (B) rather than a read (R).
    pub err_write: Signal<Out, Bit>,
    /// Clear `err` (an error arriving in the same cycle sets it again).
    pub err_clear: Signal<In, Bit>,
    /// The AXI4 master port.
    pub axi: Axi4Initiator<A, I>,
    // Intake: registered ready and the command, registered.
    rdy: DFF<Bit>,
    in_v: DFF<Bit>,
    in_write: DFF<Bit>,
    in_addr: DFF<Bits<A>>,
    in_wdata: DFF<Bits<64>>,
    in_wstrb: DFF<Bits<8>>,
    // The burst being gathered: kind, start, beats - 1, the address that
    // would extend it.
    ob_v: DFF<Bit>,
    ob_write: DFF<Bit>,
    ob_addr: DFF<Bits<A>>,
    ob_cnt: DFF<Bits<8>>,
    ob_next: DFF<Bits<A>>,
    // Closed bursts waiting to issue: address, and (write << 8 | beats - 1).
    burst_fifo_addr: Fifo<Bits<A>, 4, 5>,
    burst_fifo_meta: Fifo<Bits<9>, 4, 5>,
    // Write beats: strobes << 64 | data.
    w_fifo: Fifo<Bits<72>, 9, 10>,
    // AR and AW output registers.
    ar_v: DFF<Bit>,
    ar_addr: DFF<Bits<A>>,
    ar_len: DFF<Bits<8>>,
    aw_v: DFF<Bit>,
    aw_addr: DFF<Bits<A>>,
    aw_len: DFF<Bits<8>>,
    // Bursts issued and not fully answered on the port; read bursts
    // without their last R beat; write bursts without their B.
    inflight: DFF<Bits<5>>,
    r_pend: DFF<Bits<5>>,
    w_pend: DFF<Bits<5>>,
    // Issued bursts in order (write << 8 | beats - 1), for the responder.
    order_fifo: Fifo<Bits<9>, 4, 5>,
    // Issued write bursts' beats - 1, for the W sender's WLAST.
    wlen_fifo: Fifo<Bits<8>, 4, 5>,
    // W output register and the beat count within the burst.
    w_v: DFF<Bit>,
    w_data: DFF<Bits<64>>,
    w_strb: DFF<Bits<8>>,
    w_last: DFF<Bit>,
    w_cnt: DFF<Bits<8>>,
    // R and B: registered readies and their FIFOs (rresp << 64 | rdata).
    r_rdy: DFF<Bit>,
    r_fifo: Fifo<Bits<66>, 9, 10>,
    b_rdy: DFF<Bit>,
    b_fifo: Fifo<Bits<2>, 4, 5>,
    // Responder: the burst being answered, beats left - 1, its B taken.
    cur_v: DFF<Bit>,
    cur_write: DFF<Bit>,
    cur_left: DFF<Bits<8>>,
    cur_bdone: DFF<Bit>,
    cur_bresp: DFF<Bits<2>>,
    o_v: DFF<Bit>,
    o_write: DFF<Bit>,
    o_data: DFF<Bits<64>>,
    o_err: DFF<Bit>,
    err_q: DFF<Bit>,
    err_resp_q: DFF<Bits<2>>,
    err_write_q: DFF<Bit>,
    // Combinational helpers.
    extend: Signal<Local, Bit>,
    close: Signal<Local, Bit>,
    h_write: Signal<Local, Bit>,
    room: Signal<Local, Bit>,
    issue_r: Signal<Local, Bit>,
    issue_w: Signal<Local, Bit>,
    w_take: Signal<Local, Bit>,
    r_fire: Signal<Local, Bit>,
    b_fire: Signal<Local, Bit>,
    emit: Signal<Local, Bit>,
    emit_resp: Signal<Local, Bits<2>>,
    fin: Signal<Local, Bit>,
    // Parameters.
    max_m1: Constant<Bits<8>>,
    max_out: Constant<Bits<5>>,
    cmd_lim: Constant<Bits<10>>,
    bq_lim: Constant<Bits<5>>,
    rq_lim: Constant<Bits<10>>,
    bresp_lim: Constant<Bits<5>>,
}

impl<const A: usize, const I: usize> PmpToAxi4<A, I> {
    /// An adapter making bursts of up to `max_len` beats (1..=256; 16 for
    /// an AXI3 port) with up to `max_out` bursts in flight
    /// (1..=[`MAX_OUTSTANDING`]).
    pub fn new(max_len: u32, max_out: u32) -> Self {
        assert!(A >= 12, "the 4 KiB rule needs at least 12 address bits");
        assert!(I >= 1, "AXI4 IDs are at least one bit here");
        assert!((1..=256).contains(&max_len), "max_len is 1..=256 beats");
        assert!(
            (1..=MAX_OUTSTANDING).contains(&max_out),
            "max_out is 1..={MAX_OUTSTANDING}"
        );
        Self {
            clock: Default::default(),
            reset: Default::default(),
            pmp: Default::default(),
            rsp_err: Default::default(),
            err: Default::default(),
            err_resp: Default::default(),
            err_write: Default::default(),
            err_clear: Default::default(),
            axi: Default::default(),
            rdy: Default::default(),
            in_v: Default::default(),
            in_write: Default::default(),
            in_addr: Default::default(),
            in_wdata: Default::default(),
            in_wstrb: Default::default(),
            ob_v: Default::default(),
            ob_write: Default::default(),
            ob_addr: Default::default(),
            ob_cnt: Default::default(),
            ob_next: Default::default(),
            burst_fifo_addr: Default::default(),
            burst_fifo_meta: Default::default(),
            w_fifo: Default::default(),
            ar_v: Default::default(),
            ar_addr: Default::default(),
            ar_len: Default::default(),
            aw_v: Default::default(),
            aw_addr: Default::default(),
            aw_len: Default::default(),
            inflight: Default::default(),
            r_pend: Default::default(),
            w_pend: Default::default(),
            order_fifo: Default::default(),
            wlen_fifo: Default::default(),
            w_v: Default::default(),
            w_data: Default::default(),
            w_strb: Default::default(),
            w_last: Default::default(),
            w_cnt: Default::default(),
            r_rdy: Default::default(),
            r_fifo: Default::default(),
            b_rdy: Default::default(),
            b_fifo: Default::default(),
            cur_v: Default::default(),
            cur_write: Default::default(),
            cur_left: Default::default(),
            cur_bdone: Default::default(),
            cur_bresp: Default::default(),
            o_v: Default::default(),
            o_write: Default::default(),
            o_data: Default::default(),
            o_err: Default::default(),
            err_q: Default::default(),
            err_resp_q: Default::default(),
            err_write_q: Default::default(),
            extend: Default::default(),
            close: Default::default(),
            h_write: Default::default(),
            room: Default::default(),
            issue_r: Default::default(),
            issue_w: Default::default(),
            w_take: Default::default(),
            r_fire: Default::default(),
            b_fire: Default::default(),
            emit: Default::default(),
            emit_resp: Default::default(),
            fin: Default::default(),
            max_m1: Constant::new(u64::from(max_len - 1).into()),
            max_out: Constant::new(u64::from(max_out).into()),
            // `cmd_ready` is a register: when it is decided from `used`,
            // the command in `in_*` and the one accepted in the same cycle
            // are not counted yet, and one more may be accepted before the
            // new value shows. Four entries cover them.
            cmd_lim: Constant::new((DATA_DEPTH - 4).into()),
            // Each command closes at most one burst; the open burst, the
            // registered command and two accepted ones are not counted yet.
            bq_lim: Constant::new((META_DEPTH - 5).into()),
            rq_lim: Constant::new((DATA_DEPTH - 4).into()),
            bresp_lim: Constant::new((META_DEPTH - 4).into()),
        }
    }
}

impl<const A: usize, const I: usize> Default for PmpToAxi4<A, I> {
    /// 16-beat bursts (128 bytes: the AXI3 limit of a Zynq HP port), 4 in
    /// flight.
    fn default() -> Self {
        Self::new(16, 4)
    }
}

impl<const A: usize, const I: usize> Logic for PmpToAxi4<A, I> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            rdy,
            in_v,
            in_write,
            in_addr,
            in_wdata,
            in_wstrb,
            ob_v,
            ob_write,
            ob_addr,
            ob_cnt,
            ob_next,
            ar_v,
            ar_addr,
            ar_len,
            aw_v,
            aw_addr,
            aw_len,
            inflight,
            r_pend,
            w_pend,
            w_v,
            w_data,
            w_strb,
            w_last,
            w_cnt,
            r_rdy,
            b_rdy,
            cur_v,
            cur_write,
            cur_left,
            cur_bdone,
            cur_bresp,
            o_v,
            o_write,
            o_data,
            o_err,
            err_q,
            err_resp_q,
            err_write_q
        );
        clock!(
            self,
            clock,
            burst_fifo_addr,
            burst_fifo_meta,
            w_fifo,
            order_fifo,
            wlen_fifo,
            r_fifo,
            b_fifo
        );
        self.burst_fifo_addr.reset.next = self.reset.val();
        self.burst_fifo_meta.reset.next = self.reset.val();
        self.w_fifo.reset.next = self.reset.val();
        self.order_fifo.reset.next = self.reset.val();
        self.wlen_fifo.reset.next = self.reset.val();
        self.r_fifo.reset.next = self.reset.val();
        self.b_fifo.reset.next = self.reset.val();

        // Constant AXI attributes: one ID, 8-byte INCR beats, normal
        // non-cacheable bufferable memory (AxCACHE 0011, what Xilinx's
        // DMA cores drive), unprivileged secure data access, no QoS.
        self.axi.awid.next = 0.into();
        self.axi.awsize.next = 3.into();
        self.axi.awburst.next = 1.into();
        self.axi.awlock.next = false;
        self.axi.awcache.next = 3.into();
        self.axi.awprot.next = 0.into();
        self.axi.awqos.next = 0.into();
        self.axi.arid.next = 0.into();
        self.axi.arsize.next = 3.into();
        self.axi.arburst.next = 1.into();
        self.axi.arlock.next = false;
        self.axi.arcache.next = 3.into();
        self.axi.arprot.next = 0.into();
        self.axi.arqos.next = 0.into();

        // ---- Intake: the command is registered, then always consumed.
        self.pmp.cmd_ready.next = self.rdy.q.val();
        self.rdy.d.next = (self.w_fifo.used.val() < self.cmd_lim.val())
            & (self.burst_fifo_meta.used.val() < self.bq_lim.val());
        self.in_v.d.next = self.pmp.cmd_valid.val() & self.rdy.q.val();
        self.in_write.d.next = self.pmp.cmd_write.val();
        self.in_addr.d.next = self.pmp.cmd_addr.val();
        self.in_wdata.d.next = self.pmp.cmd_wdata.val();
        self.in_wstrb.d.next = self.pmp.cmd_wstrb.val();
        self.w_fifo.push.next = self.in_v.q.val() & self.in_write.q.val();
        self.w_fifo.data_in.next = (bit_cast::<72, 8>(self.in_wstrb.q.val()) << 64)
            | bit_cast::<72, 64>(self.in_wdata.q.val());

        // ---- Burst former. The command extends the open burst if it is of
        // the same kind at the next address, the burst is not full and the
        // address does not start a 4 KiB page.
        self.extend.next = self.ob_v.q.val()
            & (self.in_write.q.val() == self.ob_write.q.val())
            & (self.in_addr.q.val() == self.ob_next.q.val())
            & (self.ob_cnt.q.val() != self.max_m1.val())
            & self.in_addr.q.val().get_bits::<9>(3).any();
        self.close.next = self.ob_v.q.val() & !(self.in_v.q.val() & self.extend.val());
        self.burst_fifo_addr.push.next = self.close.val();
        self.burst_fifo_meta.push.next = self.close.val();
        self.burst_fifo_addr.data_in.next = self.ob_addr.q.val();
        self.burst_fifo_meta.data_in.next = (bit_cast::<9, 1>(self.ob_write.q.val().into()) << 8)
            | bit_cast::<9, 8>(self.ob_cnt.q.val());
        if self.in_v.q.val() {
            self.ob_next.d.next = self.in_addr.q.val() + 8;
            if self.extend.val() {
                self.ob_cnt.d.next = self.ob_cnt.q.val() + 1;
            } else {
                self.ob_v.d.next = true;
                self.ob_write.d.next = self.in_write.q.val();
                self.ob_addr.d.next = self.in_addr.q.val();
                self.ob_cnt.d.next = 0.into();
            }
        } else if self.close.val() {
            self.ob_v.d.next = false;
        }

        // ---- Issue: the head burst goes to AR or AW when that register is
        // free (or being taken), the fence allows it and a slot is free.
        self.h_write.next = self.burst_fifo_meta.data_out.val().get_bit(8);
        self.room.next = self.inflight.q.val() < self.max_out.val();
        self.issue_r.next = !self.burst_fifo_meta.empty.val()
            & !self.h_write.val()
            & self.room.val()
            & !self.w_pend.q.val().any()
            & (!self.ar_v.q.val() | self.axi.arready.val());
        self.issue_w.next = !self.burst_fifo_meta.empty.val()
            & self.h_write.val()
            & self.room.val()
            & !self.r_pend.q.val().any()
            & (!self.aw_v.q.val() | self.axi.awready.val());
        self.burst_fifo_addr.pop.next = self.issue_r.val() | self.issue_w.val();
        self.burst_fifo_meta.pop.next = self.issue_r.val() | self.issue_w.val();
        self.order_fifo.push.next = self.issue_r.val() | self.issue_w.val();
        self.order_fifo.data_in.next = self.burst_fifo_meta.data_out.val();
        self.wlen_fifo.push.next = self.issue_w.val();
        self.wlen_fifo.data_in.next = self.burst_fifo_meta.data_out.val().get_bits::<8>(0);
        if self.axi.arready.val() {
            self.ar_v.d.next = false;
        }
        if self.issue_r.val() {
            self.ar_v.d.next = true;
            self.ar_addr.d.next = self.burst_fifo_addr.data_out.val();
            self.ar_len.d.next = self.burst_fifo_meta.data_out.val().get_bits::<8>(0);
        }
        if self.axi.awready.val() {
            self.aw_v.d.next = false;
        }
        if self.issue_w.val() {
            self.aw_v.d.next = true;
            self.aw_addr.d.next = self.burst_fifo_addr.data_out.val();
            self.aw_len.d.next = self.burst_fifo_meta.data_out.val().get_bits::<8>(0);
        }
        self.axi.arvalid.next = self.ar_v.q.val();
        self.axi.araddr.next = self.ar_addr.q.val();
        self.axi.arlen.next = self.ar_len.q.val();
        self.axi.awvalid.next = self.aw_v.q.val();
        self.axi.awaddr.next = self.aw_addr.q.val();
        self.axi.awlen.next = self.aw_len.q.val();

        // ---- W: beats of issued write bursts, WLAST by count.
        self.w_take.next = !self.wlen_fifo.empty.val()
            & !self.w_fifo.empty.val()
            & (!self.w_v.q.val() | self.axi.wready.val());
        self.w_fifo.pop.next = self.w_take.val();
        self.wlen_fifo.pop.next = false;
        if self.axi.wready.val() {
            self.w_v.d.next = false;
        }
        if self.w_take.val() {
            self.w_v.d.next = true;
            self.w_data.d.next = self.w_fifo.data_out.val().get_bits::<64>(0);
            self.w_strb.d.next = self.w_fifo.data_out.val().get_bits::<8>(64);
            self.w_last.d.next = self.w_cnt.q.val() == self.wlen_fifo.data_out.val();
            self.w_cnt.d.next = self.w_cnt.q.val() + 1;
            if self.w_cnt.q.val() == self.wlen_fifo.data_out.val() {
                self.w_cnt.d.next = 0.into();
                self.wlen_fifo.pop.next = true;
            }
        }
        self.axi.wvalid.next = self.w_v.q.val();
        self.axi.wdata.next = self.w_data.q.val();
        self.axi.wstrb.next = self.w_strb.q.val();
        self.axi.wlast.next = self.w_last.q.val();

        // ---- R and B into their FIFOs.
        self.axi.rready.next = self.r_rdy.q.val();
        self.r_fire.next = self.axi.rvalid.val() & self.r_rdy.q.val();
        self.r_fifo.push.next = self.r_fire.val();
        self.r_fifo.data_in.next = (bit_cast::<66, 2>(self.axi.rresp.val()) << 64)
            | bit_cast::<66, 64>(self.axi.rdata.val());
        self.r_rdy.d.next = self.r_fifo.used.val() < self.rq_lim.val();
        self.axi.bready.next = self.b_rdy.q.val();
        self.b_fire.next = self.axi.bvalid.val() & self.b_rdy.q.val();
        self.b_fifo.push.next = self.b_fire.val();
        self.b_fifo.data_in.next = self.axi.bresp.val();
        self.b_rdy.d.next = self.b_fifo.used.val() < self.bresp_lim.val();

        // ---- Responder: one port response per beat, bursts in issue order.
        self.emit.next = false;
        self.emit_resp.next = self.r_fifo.data_out.val().get_bits::<2>(64);
        self.fin.next = false;
        self.r_fifo.pop.next = false;
        self.b_fifo.pop.next = false;
        self.order_fifo.pop.next = false;
        self.o_data.d.next = self.r_fifo.data_out.val().get_bits::<64>(0);
        self.o_write.d.next = self.cur_write.q.val();
        if self.cur_v.q.val() {
            if !self.cur_write.q.val() {
                if !self.r_fifo.empty.val() {
                    self.r_fifo.pop.next = true;
                    self.emit.next = true;
                }
            } else {
                self.o_data.d.next = 0.into();
                if self.cur_bdone.q.val() {
                    self.emit.next = true;
                    self.emit_resp.next = self.cur_bresp.q.val();
                } else if !self.b_fifo.empty.val() {
                    self.emit.next = true;
                    self.emit_resp.next = self.b_fifo.data_out.val();
                    self.b_fifo.pop.next = true;
                    self.cur_bdone.d.next = true;
                    self.cur_bresp.d.next = self.b_fifo.data_out.val();
                }
            }
        }
        if self.emit.val() {
            self.cur_left.d.next = self.cur_left.q.val() - 1;
            self.fin.next = !self.cur_left.q.val().any();
        }
        if !self.cur_v.q.val() | self.fin.val() {
            self.cur_v.d.next = !self.order_fifo.empty.val();
            self.order_fifo.pop.next = true;
            self.cur_write.d.next = self.order_fifo.data_out.val().get_bit(8);
            self.cur_left.d.next = self.order_fifo.data_out.val().get_bits::<8>(0);
            self.cur_bdone.d.next = false;
        }
        self.o_v.d.next = self.emit.val();
        self.o_err.d.next = self.emit.val() & self.emit_resp.val().get_bit(1);
        self.pmp.rsp_valid.next = self.o_v.q.val();
        self.pmp.rsp_write.next = self.o_write.q.val();
        self.pmp.rsp_data.next = self.o_data.q.val();
        self.rsp_err.next = self.o_err.q.val();

        // ---- Error latch: the first error's code and direction.
        if self.err_clear.val() {
            self.err_q.d.next = false;
        }
        if self.emit.val()
            & self.emit_resp.val().get_bit(1)
            & (!self.err_q.q.val() | self.err_clear.val())
        {
            self.err_q.d.next = true;
            self.err_resp_q.d.next = self.emit_resp.val();
            self.err_write_q.d.next = self.cur_write.q.val();
        }
        self.err.next = self.err_q.q.val();
        self.err_resp.next = self.err_resp_q.q.val();
        self.err_write.next = self.err_write_q.q.val();

        // ---- Counts.
        if (self.issue_r.val() | self.issue_w.val()) & !self.fin.val() {
            self.inflight.d.next = self.inflight.q.val() + 1;
        }
        if !(self.issue_r.val() | self.issue_w.val()) & self.fin.val() {
            self.inflight.d.next = self.inflight.q.val() - 1;
        }
        if self.issue_r.val() & !(self.r_fire.val() & self.axi.rlast.val()) {
            self.r_pend.d.next = self.r_pend.q.val() + 1;
        }
        if !self.issue_r.val() & self.r_fire.val() & self.axi.rlast.val() {
            self.r_pend.d.next = self.r_pend.q.val() - 1;
        }
        if self.issue_w.val() & !self.b_fire.val() {
            self.w_pend.d.next = self.w_pend.q.val() + 1;
        }
        if !self.issue_w.val() & self.b_fire.val() {
            self.w_pend.d.next = self.w_pend.q.val() - 1;
        }

        if self.reset.val() {
            self.rdy.d.next = false;
            self.in_v.d.next = false;
            self.ob_v.d.next = false;
            self.ar_v.d.next = false;
            self.aw_v.d.next = false;
            self.inflight.d.next = 0.into();
            self.r_pend.d.next = 0.into();
            self.w_pend.d.next = 0.into();
            self.w_v.d.next = false;
            self.w_cnt.d.next = 0.into();
            self.r_rdy.d.next = false;
            self.b_rdy.d.next = false;
            self.cur_v.d.next = false;
            self.o_v.d.next = false;
            self.err_q.d.next = false;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The adapter in rust-hdl's simulator against two Rust models: the
    //! memory port's meaning (a memory answering every command in order,
    //! `PortModel`) and an AXI4 slave (`SlaveModel`) that checks the AXI
    //! rules the adapter must keep (valid held until ready with a stable
    //! payload, INCR 8-byte bursts within `max_len` and a 4 KiB page, WLAST
    //! on the last beat only, the read/write fence), stalls every channel at
    //! random and answers with random latency. It performs a write when it
    //! sends the B response and samples read data when it sends the R beat,
    //! so an adapter that let a read pass an unacknowledged write (or a
    //! write pass an unfinished read) would see the wrong data, besides
    //! tripping the fence assertion. Pages 5 and 6 answer SLVERR and DECERR.
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    type Dut = PmpToAxi4<32, 2>;

    const SLVERR_PAGE: u64 = 5;
    const DECERR_PAGE: u64 = 6;

    /// The resp code for an address (0 OKAY, 2 SLVERR, 3 DECERR).
    fn resp_of(addr: u64) -> u64 {
        match addr >> 12 {
            SLVERR_PAGE => 2,
            DECERR_PAGE => 3,
            _ => 0,
        }
    }

    /// What unwritten memory holds.
    fn pattern(word_addr: u64) -> u64 {
        word_addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0123_4567_89AB_CDEF
    }

    fn merge(old: u64, data: u64, strb: u8) -> u64 {
        let mut o = old.to_le_bytes();
        for (i, b) in data.to_le_bytes().iter().enumerate() {
            if strb & (1 << i) != 0 {
                o[i] = *b;
            }
        }
        u64::from_le_bytes(o)
    }

    #[derive(Clone, Debug)]
    pub(super) struct Cmd {
        write: bool,
        addr: u64,
        data: u64,
        strb: u8,
        /// Idle cycles before the command is offered.
        gap: u32,
    }

    /// How hard the slave pushes back: probability of each ready / valid.
    #[derive(Clone, Copy)]
    struct Pressure {
        aw: f64,
        w: f64,
        ar: f64,
        b: f64,
        r: f64,
        max_lat: u64,
    }

    const FREE: Pressure = Pressure {
        aw: 1.0,
        w: 1.0,
        ar: 1.0,
        b: 1.0,
        r: 1.0,
        max_lat: 0,
    };

    /// What a run saw: the bursts on AR and AW (address, beats), in order.
    #[derive(Default, Debug)]
    struct Seen {
        ar: Vec<(u64, u64)>,
        aw: Vec<(u64, u64)>,
        responses: u64,
        err_flag: bool,
        err_resp: u64,
        err_write: bool,
        cycles: u64,
        /// Cycles of the handshakes: commands taken, AR, AW, R beats, B,
        /// port responses.
        at: HashMap<&'static str, Vec<u64>>,
    }

    struct Memory(HashMap<u64, u64>);

    impl Memory {
        fn read(&self, a: u64) -> u64 {
            self.0.get(&a).copied().unwrap_or_else(|| pattern(a))
        }
        fn write(&mut self, a: u64, d: u64, strb: u8) {
            let v = merge(self.read(a), d, strb);
            self.0.insert(a, v);
        }
    }

    struct Burst {
        addr: u64,
        beats: u64,
    }

    /// A write burst with all its beats (data, strobes), waiting to be
    /// performed and answered from cycle `due`.
    type WriteBurst = (u64, u64, Vec<(u64, u8)>);

    /// The AXI4 slave. Its inputs to the adapter are set for the coming
    /// edge; the adapter's outputs (all registers) are read for this cycle.
    struct SlaveModel {
        mem: Memory,
        max_len: u64,
        p: Pressure,
        aw_q: VecDeque<Burst>,
        w_beats: VecDeque<(u64, u8, bool)>,
        // Write bursts with all their beats, waiting to answer: due cycle,
        // address, beats.
        b_q: VecDeque<WriteBurst>,
        b_shown: Option<u64>,
        ar_q: VecDeque<(u64, Burst)>,
        r_beat: u64,
        r_shown: Option<(u64, u64, bool)>,
        // Bursts the adapter has outstanding as the slave sees them.
        writes_open: u64,
        reads_open: u64,
        // Last cycle's offered-but-not-taken payloads.
        aw_held: Option<(u64, u64)>,
        ar_held: Option<(u64, u64)>,
        w_held: Option<(u64, u8, bool)>,
        seen: Seen,
    }

    impl SlaveModel {
        fn new(max_len: u64, p: Pressure) -> Self {
            Self {
                mem: Memory(HashMap::new()),
                max_len,
                p,
                aw_q: VecDeque::new(),
                w_beats: VecDeque::new(),
                b_q: VecDeque::new(),
                b_shown: None,
                ar_q: VecDeque::new(),
                r_beat: 0,
                r_shown: None,
                writes_open: 0,
                reads_open: 0,
                aw_held: None,
                ar_held: None,
                w_held: None,
                seen: Seen::default(),
            }
        }

        fn check_burst(
            &self,
            what: &str,
            addr: u64,
            len: u64,
            size: u64,
            burst: u64,
        ) -> Result<(), String> {
            let beats = len + 1;
            if size != 3 || burst != 1 {
                return Err(format!("{what} {addr:#x}: size {size} burst {burst}"));
            }
            if !addr.is_multiple_of(8) || beats > self.max_len {
                return Err(format!(
                    "{what} {addr:#x}: {beats} beats (max {})",
                    self.max_len
                ));
            }
            if (addr & 0xFFF) + beats * 8 > 0x1000 {
                return Err(format!(
                    "{what} {addr:#x}: {beats} beats cross a 4 KiB page"
                ));
            }
            Ok(())
        }

        fn step(
            &mut self,
            x: &mut Box<Dut>,
            rng: &mut ChaCha8Rng,
            cycle: u64,
        ) -> Result<(), String> {
            let a = &x.axi;
            // Held payloads must not change while valid waits for ready.
            if let Some(h) = self.aw_held {
                let now = (a.awaddr.val().to_u64(), a.awlen.val().to_u64());
                if !a.awvalid.val() || now != h {
                    return Err(format!("AW changed while waiting: {h:x?} -> {now:x?}"));
                }
            }
            if let Some(h) = self.ar_held {
                let now = (a.araddr.val().to_u64(), a.arlen.val().to_u64());
                if !a.arvalid.val() || now != h {
                    return Err(format!("AR changed while waiting: {h:x?} -> {now:x?}"));
                }
            }
            if let Some(h) = self.w_held {
                let now = (
                    a.wdata.val().to_u64(),
                    a.wstrb.val().to_u64() as u8,
                    a.wlast.val(),
                );
                if !a.wvalid.val() || now != h {
                    return Err(format!("W changed while waiting: {h:x?} -> {now:x?}"));
                }
            }
            let awready = rng.gen_bool(self.p.aw);
            let wready = rng.gen_bool(self.p.w);
            let arready = rng.gen_bool(self.p.ar);
            x.axi.awready.next = awready;
            x.axi.wready.next = wready;
            x.axi.arready.next = arready;
            let a = &x.axi;
            // AW
            self.aw_held = None;
            if a.awvalid.val() {
                let (addr, len) = (a.awaddr.val().to_u64(), a.awlen.val().to_u64());
                if awready {
                    self.check_burst(
                        "AW",
                        addr,
                        len,
                        a.awsize.val().to_u64(),
                        a.awburst.val().to_u64(),
                    )?;
                    if self.reads_open != 0 {
                        return Err(format!(
                            "AW {addr:#x} while {} read bursts are open",
                            self.reads_open
                        ));
                    }
                    self.aw_q.push_back(Burst {
                        addr,
                        beats: len + 1,
                    });
                    self.seen.aw.push((addr, len + 1));
                    self.seen.at.entry("aw").or_default().push(cycle);
                    self.writes_open += 1;
                } else {
                    self.aw_held = Some((addr, len));
                }
            }
            // W
            self.w_held = None;
            if a.wvalid.val() {
                let beat = (
                    a.wdata.val().to_u64(),
                    a.wstrb.val().to_u64() as u8,
                    a.wlast.val(),
                );
                if wready {
                    self.w_beats.push_back(beat);
                } else {
                    self.w_held = Some(beat);
                }
            }
            // AR
            self.ar_held = None;
            if a.arvalid.val() {
                let (addr, len) = (a.araddr.val().to_u64(), a.arlen.val().to_u64());
                if arready {
                    self.check_burst(
                        "AR",
                        addr,
                        len,
                        a.arsize.val().to_u64(),
                        a.arburst.val().to_u64(),
                    )?;
                    if self.writes_open != 0 {
                        return Err(format!(
                            "AR {addr:#x} while {} write bursts are open",
                            self.writes_open
                        ));
                    }
                    let due = cycle + rng.gen_range(1..=self.p.max_lat.max(1));
                    self.ar_q.push_back((
                        due,
                        Burst {
                            addr,
                            beats: len + 1,
                        },
                    ));
                    self.seen.ar.push((addr, len + 1));
                    self.seen.at.entry("ar").or_default().push(cycle);
                    self.reads_open += 1;
                } else {
                    self.ar_held = Some((addr, len));
                }
            }
            // A write burst with all its beats: check WLAST, queue its B.
            while let Some(b) = self.aw_q.front() {
                if (self.w_beats.len() as u64) < b.beats {
                    break;
                }
                let mut beats = Vec::new();
                for i in 0..b.beats {
                    let (d, s, last) = self.w_beats.pop_front().unwrap();
                    if last != (i + 1 == b.beats) {
                        return Err(format!(
                            "WLAST wrong at beat {i} of {} at {:#x}",
                            b.beats, b.addr
                        ));
                    }
                    beats.push((d, s));
                }
                let due = cycle + rng.gen_range(0..=self.p.max_lat);
                self.b_q.push_back((due, b.addr, beats));
                self.aw_q.pop_front();
            }
            // B: once shown, held until taken. The write is performed when
            // its response is first shown.
            if self.b_shown.is_none() {
                if let Some((due, addr, beats)) = self.b_q.front() {
                    if *due <= cycle && rng.gen_bool(self.p.b) {
                        let resp = resp_of(*addr);
                        if resp == 0 {
                            for (i, (d, s)) in beats.iter().enumerate() {
                                self.mem.write(addr + 8 * i as u64, *d, *s);
                            }
                        }
                        self.b_shown = Some(resp);
                        self.b_q.pop_front();
                    }
                }
            }
            x.axi.bvalid.next = self.b_shown.is_some();
            x.axi.bresp.next = self.b_shown.unwrap_or(0).into();
            x.axi.bid.next = 0.into();
            if self.b_shown.is_some() && x.axi.bready.val() {
                self.b_shown = None;
                self.seen.at.entry("b").or_default().push(cycle);
                self.writes_open -= 1;
            }
            // R: beats of the head burst, each sampled when first shown.
            if self.r_shown.is_none() {
                if let Some((due, b)) = self.ar_q.front() {
                    if *due <= cycle && rng.gen_bool(self.p.r) {
                        let addr = b.addr + 8 * self.r_beat;
                        let resp = resp_of(addr);
                        let data = if resp == 0 {
                            self.mem.read(addr)
                        } else {
                            0xDEAD
                        };
                        let last = self.r_beat + 1 == b.beats;
                        self.r_shown = Some((data, resp, last));
                        self.r_beat += 1;
                        if last {
                            self.r_beat = 0;
                            self.ar_q.pop_front();
                        }
                    }
                }
            }
            let (d, resp, last) = self.r_shown.unwrap_or((0, 0, false));
            x.axi.rvalid.next = self.r_shown.is_some();
            x.axi.rdata.next = d.into();
            x.axi.rresp.next = resp.into();
            x.axi.rlast.next = last;
            x.axi.rid.next = 0.into();
            if self.r_shown.is_some() && x.axi.rready.val() {
                self.r_shown = None;
                self.seen.at.entry("r").or_default().push(cycle);
                if last {
                    self.reads_open -= 1;
                }
            }
            Ok(())
        }

        fn idle(&self) -> bool {
            self.aw_q.is_empty()
                && self.w_beats.is_empty()
                && self.b_q.is_empty()
                && self.b_shown.is_none()
                && self.ar_q.is_empty()
                && self.r_shown.is_none()
        }
    }

    /// Run `cmds` through the adapter against the slave model; the
    /// scoreboard checks every response (order, kind, data, error flag) and,
    /// at the end, the slave's memory against the port model's. `clear_at`:
    /// pulse `err_clear` after that many responses.
    fn run(
        max_len: u32,
        max_out: u32,
        p: Pressure,
        seed: u64,
        cmds: Vec<Cmd>,
        clear_at: Option<u64>,
    ) -> Seen {
        let out = Arc::new(Mutex::new(Seen::default()));
        let out2 = out.clone();
        let mut sim = Simulation::new();
        sim.add_clock(5, |x: &mut Box<Dut>| x.clock.next = !x.clock.val());
        sim.add_testbench(move |mut sim: Sim<Dut>| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut x = sim.init()?;
            let mut slave = SlaveModel::new(u64::from(max_len), p);
            let mut model = Memory(HashMap::new());
            // Expected responses: (write, data, error).
            let mut want: VecDeque<(bool, u64, bool)> = VecDeque::new();
            x.reset.next = true;
            wait_clock_cycle!(sim, clock, x);
            wait_clock_cycle!(sim, clock, x);
            x.reset.next = false;
            let mut next = 0usize;
            let mut gap = cmds.first().map_or(0, |c| c.gap);
            let mut cycle = 0u64;
            let mut responses = 0u64;
            let total = cmds.len() as u64;
            let limit = 2000 + 200 * total;
            while responses < total || !slave.idle() {
                // Port side: offer the next command after its gap.
                let offer = next < cmds.len() && gap == 0;
                x.pmp.cmd_valid.next = offer;
                if let Some(c) = cmds.get(next) {
                    x.pmp.cmd_write.next = c.write;
                    x.pmp.cmd_addr.next = c.addr.into();
                    x.pmp.cmd_wdata.next = c.data.into();
                    x.pmp.cmd_wstrb.next = u64::from(c.strb).into();
                }
                if offer && x.pmp.cmd_ready.val() {
                    let c = &cmds[next];
                    let err = resp_of(c.addr) != 0;
                    if c.write {
                        if !err {
                            model.write(c.addr, c.data, c.strb);
                        }
                        want.push_back((true, 0, err));
                    } else {
                        want.push_back((false, if err { 0 } else { model.read(c.addr) }, err));
                    }
                    next += 1;
                    slave.seen.at.entry("cmd").or_default().push(cycle);
                    gap = cmds.get(next).map_or(0, |c| c.gap);
                } else {
                    gap = gap.saturating_sub(1);
                }
                if x.pmp.rsp_valid.val() {
                    let got = (
                        x.pmp.rsp_write.val(),
                        x.pmp.rsp_data.val().to_u64(),
                        x.rsp_err.val(),
                    );
                    let Some((w, d, e)) = want.pop_front() else {
                        eprintln!("cycle {cycle}: response {got:x?} with none expected");
                        sim_assert!(sim, false, x);
                        unreachable!()
                    };
                    let ok = got.0 == w && got.2 == e && (w || e || got.1 == d);
                    if !ok {
                        eprintln!(
                            "cycle {cycle}: response {responses}: got {got:x?}, want {:x?}",
                            (w, d, e)
                        );
                    }
                    sim_assert!(sim, ok, x);
                    responses += 1;
                    slave.seen.at.entry("rsp").or_default().push(cycle);
                }
                x.err_clear.next = clear_at == Some(responses);
                if let Err(e) = slave.step(&mut x, &mut rng, cycle) {
                    eprintln!("cycle {cycle}: {e}");
                    sim_assert!(sim, false, x);
                }
                wait_clock_cycle!(sim, clock, x);
                cycle += 1;
                if cycle > limit {
                    eprintln!(
                        "stuck at cycle {cycle}: {responses}/{total} responses, {} commands taken",
                        next
                    );
                    sim_assert!(sim, false, x);
                }
            }
            // Nothing more may come.
            for _ in 0..20 {
                sim_assert!(sim, !x.pmp.rsp_valid.val(), x);
                wait_clock_cycle!(sim, clock, x);
            }
            let same = slave
                .mem
                .0
                .keys()
                .chain(model.0.keys())
                .all(|a| slave.mem.read(*a) == model.read(*a));
            if !same {
                eprintln!("slave memory differs from the port model");
            }
            sim_assert!(sim, same, x);
            let mut o = out2.lock().unwrap();
            *o = std::mem::take(&mut slave.seen);
            o.responses = responses;
            o.err_flag = x.err.val();
            o.err_resp = x.err_resp.val().to_u64();
            o.err_write = x.err_write.val();
            o.cycles = cycle;
            drop(o);
            sim.done(x)
        });
        let mut uut = Dut::new(max_len, max_out);
        uut.connect_all();
        sim.run(Box::new(uut), 200_000_000).unwrap();
        let seen = std::mem::take(&mut *out.lock().unwrap());
        seen
    }

    /// Seeded random traffic: runs of sequential reads or writes (1..=40
    /// commands, a quarter of them starting just below a 4 KiB boundary),
    /// random strobes now and then, random idle gaps, over 8 pages of which
    /// pages 5 and 6 answer errors.
    pub(super) fn random_cmds(seed: u64, n: usize) -> Vec<Cmd> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut cmds = Vec::new();
        while cmds.len() < n {
            let write = rng.gen_bool(0.5);
            let run = rng.gen_range(1..=40u64);
            let start = if rng.gen_bool(0.25) {
                (rng.gen_range(1..8u64) << 12) - 8 * rng.gen_range(1..=8u64)
            } else {
                rng.gen_range(0..(8u64 << 9)) * 8
            };
            for i in 0..run {
                let addr = (start + 8 * i) % (8 << 12);
                let strb = if rng.gen_bool(0.8) { 0xFF } else { rng.gen() };
                let gap = if rng.gen_bool(0.85) {
                    0
                } else {
                    rng.gen_range(1..=3)
                };
                cmds.push(Cmd {
                    write,
                    addr,
                    data: rng.gen(),
                    strb,
                    gap,
                });
            }
        }
        cmds.truncate(n);
        cmds
    }

    const BUSY: Pressure = Pressure {
        aw: 0.5,
        w: 0.6,
        ar: 0.5,
        b: 0.5,
        r: 0.6,
        max_lat: 12,
    };

    /// Random traffic under random back-pressure on all five channels,
    /// three seeds, two shapes (16-beat bursts with 4 in flight; 8-beat
    /// bursts with 1 in flight, where the max-length and in-flight limits
    /// bind all the time).
    #[test]
    fn axi4_random_traffic_matches_models() {
        for (seed, max_len, max_out) in [(1u64, 16u32, 4u32), (2, 8, 1), (3, 16, 8)] {
            let cmds = random_cmds(seed, 1500);
            let seen = run(max_len, max_out, BUSY, seed * 7 + 1, cmds, None);
            assert_eq!(seen.responses, 1500);
            let beats: u64 = seen.ar.iter().chain(&seen.aw).map(|b| b.1).sum();
            let bursts = (seen.ar.len() + seen.aw.len()) as u64;
            // The runs are sequential: bursts must be gathered, not one per
            // command.
            assert!(
                beats >= 2 * bursts,
                "seed {seed}: {beats} beats in {bursts} bursts"
            );
            eprintln!(
                "seed {seed}: {bursts} bursts, {beats} beats, {} cycles",
                seen.cycles
            );
        }
    }

    fn seq(write: bool, addr: u64, n: u64) -> Vec<Cmd> {
        (0..n)
            .map(|i| Cmd {
                write,
                addr: addr + 8 * i,
                data: 0x5A5A_0000_0000_0000 | (addr + 8 * i),
                strb: 0xFF,
                gap: 0,
            })
            .collect()
    }

    /// A sequential stream across a 4 KiB boundary without back-pressure
    /// gives exactly the bursts the rules allow: split at the boundary and
    /// at the maximum length, nothing crossing.
    #[test]
    fn axi4_bursts_split_at_4k_and_max_len() {
        // 0xFE0: 4 beats to the boundary, then 36 more: 4 | 16 16 4.
        let mut cmds = seq(true, 0x0FE0, 40);
        cmds.extend(seq(false, 0x0FE0, 40));
        let seen = run(16, 4, FREE, 9, cmds, None);
        let want = vec![(0x0FE0, 4), (0x1000, 16), (0x1080, 16), (0x1100, 4)];
        assert_eq!(seen.aw, want);
        assert_eq!(seen.ar, want);
        // A burst of the maximum AXI4 length: 256 beats from a page start,
        // then one more beat, 256 + 1 (it is still within the page).
        let mut cmds = seq(false, 0x2000, 257);
        cmds.extend(seq(true, 0x3000, 257));
        let seen = run(256, 2, FREE, 10, cmds, None);
        assert_eq!(seen.ar, vec![(0x2000, 256), (0x2800, 1)]);
        assert_eq!(seen.aw, vec![(0x3000, 256), (0x3800, 1)]);
        // The same streams under back-pressure: the scoreboard still holds
        // and no burst crosses or overflows (the slave model checks).
        let mut cmds = seq(true, 0x0FE0, 40);
        cmds.extend(seq(false, 0x0FE0, 40));
        cmds.extend(seq(false, 0x2000, 257));
        run(256, 2, BUSY, 11, cmds, None);
    }

    /// A write followed at once by a read of the same address (and a read
    /// followed at once by a write) returns the data in command order, with
    /// slow B and R responses that would expose a missing fence.
    #[test]
    fn axi4_write_then_read_same_address() {
        let slow = Pressure {
            max_lat: 40,
            ..BUSY
        };
        let mut cmds = Vec::new();
        for i in 0..20u64 {
            let a = 0x400 + 8 * (i % 5);
            cmds.push(Cmd {
                write: true,
                addr: a,
                data: 0x1111 * (i + 1),
                strb: 0xFF,
                gap: 0,
            });
            cmds.push(Cmd {
                write: false,
                addr: a,
                data: 0,
                strb: 0,
                gap: 0,
            });
            cmds.push(Cmd {
                write: true,
                addr: a,
                data: 0x7777 * (i + 1),
                strb: 0x0F,
                gap: 0,
            });
            cmds.push(Cmd {
                write: false,
                addr: a,
                data: 0,
                strb: 0,
                gap: 0,
            });
        }
        let seen = run(16, 4, slow, 12, cmds, None);
        assert_eq!(seen.responses, 80);
    }

    /// SLVERR and DECERR come back with the responses they belong to
    /// (every beat of a failed write burst), the sticky flag keeps the
    /// first one, and `err_clear` clears it.
    #[test]
    fn axi4_error_responses() {
        // OK write, SLVERR write burst (3 beats), DECERR reads, OK read.
        let mut cmds = seq(true, 0x0100, 2);
        cmds.extend(seq(true, SLVERR_PAGE << 12, 3));
        cmds.extend(seq(false, DECERR_PAGE << 12, 2));
        cmds.extend(seq(false, 0x0100, 2));
        let seen = run(16, 4, BUSY, 13, cmds.clone(), None);
        assert!(seen.err_flag);
        assert_eq!(seen.err_resp, 2);
        assert!(seen.err_write);
        // Cleared after the write errors: the DECERR reads set it again.
        let seen = run(16, 4, BUSY, 14, cmds.clone(), Some(5));
        assert!(seen.err_flag);
        assert_eq!(seen.err_resp, 3);
        assert!(!seen.err_write);
        // Cleared after the last error: stays clear.
        let seen = run(16, 4, BUSY, 15, cmds, Some(7));
        assert!(!seen.err_flag);
    }

    /// The latency the documentation states, without back-pressure: a lone
    /// command's AR or AW handshake 5 cycles after the command is taken,
    /// its port response 3 cycles after the R beat or the B.
    #[test]
    fn axi4_latency_is_as_documented() {
        let mut cmds = seq(false, 0x100, 1);
        cmds.extend(
            seq(true, 0x200, 1)
                .into_iter()
                .map(|c| Cmd { gap: 30, ..c }),
        );
        let seen = run(16, 4, FREE, 16, cmds, None);
        let at = |k: &str| seen.at.get(k).cloned().unwrap_or_default();
        let (cmd, rsp) = (at("cmd"), at("rsp"));
        assert_eq!(cmd.len(), 2);
        assert_eq!(at("ar"), vec![cmd[0] + 5]);
        assert_eq!(at("aw"), vec![cmd[1] + 5]);
        assert_eq!(rsp, vec![at("r")[0] + 3, at("b")[0] + 3]);
    }
}
