//! The DMA datapath: reads a byte range from one memory port and writes it
//! to another (or nowhere, for a CRC scan), 8 bytes per cycle, with CRC-32C
//! computed on the way through.
//!
//! Reads run ahead of the data by up to `INFLIGHT` words, bounded by the
//! space in the read-response FIFO, so memory latency (64-256 cycles) does
//! not throttle the stream. Source bytes are realigned to the payload (the
//! source may start at any byte), the CRC sees payload-aligned words, and a
//! second realigner places the payload at the destination byte offset with
//! byte strobes, so bytes outside the range are never touched.

use super::bus::PmpInitiator;
use super::crc::Crc32c;
use rust_hdl::prelude::*;

/// Reads kept in flight at most (the FIFO holds 512 words; a small margin
/// keeps the credit check a plain compare).
const INFLIGHT_LIMIT: u64 = 508;

/// The DMA datapath.
#[derive(LogicBlock)]
pub struct Mover {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// Start a transfer with the parameters below (ignored while busy).
    pub start: Signal<In, Bit>,
    /// Source byte address (any alignment).
    pub src_addr: Signal<In, Bits<64>>,
    /// Destination byte address (any alignment).
    pub dst_addr: Signal<In, Bits<64>>,
    /// Bytes to move (0 is allowed: completes with the CRC of nothing).
    pub len: Signal<In, Bits<32>>,
    /// Write the data to `dst`; without it the transfer is a CRC scan.
    pub has_dst: Signal<In, Bit>,
    /// A transfer is running.
    pub busy: Signal<Out, Bit>,
    /// CRC-32C of the data of the last transfer (valid when not busy), or
    /// of the `ext_*` words (valid when `crc_idle`).
    pub crc: Signal<Out, Bits<32>>,
    /// Every `ext_valid` word so far is folded into `crc` (the CRC unit's
    /// input is registered: a word is in `crc` two edges after it is given).
    pub crc_idle: Signal<Out, Bit>,
    /// While idle: restart the CRC unit (for the engine's own CRCs).
    pub ext_init: Signal<In, Bit>,
    /// While idle: fold `ext_data` (8 bytes) into the CRC.
    pub ext_valid: Signal<In, Bit>,
    /// While idle: data for `ext_valid`.
    pub ext_data: Signal<In, Bits<64>>,
    /// Source port (reads only).
    pub src: PmpInitiator<64>,
    /// Destination port (writes only).
    pub dst: PmpInitiator<64>,
    crc_unit: Crc32c,
    fifo: SynchronousFIFO<Bits<64>, 9, 10, 1>,
    running: DFF<Bit>,
    has_dst_q: DFF<Bit>,
    // read side
    rd_addr: DFF<Bits<64>>,
    rd_left: DFF<Bits<32>>,
    inflight: DFF<Bits<10>>,
    // source realigner
    sbits: DFF<Bits<7>>,
    sbits_inv: DFF<Bits<7>>,
    have_prev: DFF<Bit>,
    prev: DFF<Bits<64>>,
    pay_left: DFF<Bits<32>>,
    // pay_left < 8 and pay_left != 0, registered with it (the compares were
    // on the realigner's critical path).
    pay_lt8: DFF<Bit>,
    pay_nz: DFF<Bit>,
    pay_valid: DFF<Bit>,
    pay_data: DFF<Bits<64>>,
    pay_nb: DFF<Bits<4>>,
    // destination realigner
    dbits: DFF<Bits<7>>,
    dbits_inv: DFF<Bits<7>>,
    dshift: DFF<Bits<4>>,
    dst_first: DFF<Bit>,
    dst_left: DFF<Bits<32>>,
    dst_lt8: DFF<Bit>,
    dst_word: DFF<Bits<64>>,
    carry: DFF<Bits<64>>,
    cmd_v: DFF<Bit>,
    cmd_addr: DFF<Bits<64>>,
    cmd_data: DFF<Bits<64>>,
    cmd_strb: DFF<Bits<8>>,
    wr_inflight: DFF<Bits<10>>,
    // combinational helpers
    pay_left_new: Signal<Local, Bits<32>>,
    dst_left_new: Signal<Local, Bits<32>>,
    nb: Signal<Local, Bits<4>>,
    need_next: Signal<Local, Bit>,
    pay_free: Signal<Local, Bit>,
    pay_take: Signal<Local, Bit>,
    pop: Signal<Local, Bit>,
    cmd_free: Signal<Local, Bit>,
    src_fire: Signal<Local, Bit>,
    dst_fire: Signal<Local, Bit>,
    dst_ack: Signal<Local, Bit>,
    start_lane: Signal<Local, Bits<4>>,
    room: Signal<Local, Bits<4>>,
    count: Signal<Local, Bits<4>>,
    strb_wide: Signal<Local, Bits<16>>,
    flush: Signal<Local, Bit>,
    one16: Constant<Bits<16>>,
    limit: Constant<Bits<10>>,
    c64: Constant<Bits<7>>,
}

impl Default for Mover {
    fn default() -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            start: Default::default(),
            src_addr: Default::default(),
            dst_addr: Default::default(),
            len: Default::default(),
            has_dst: Default::default(),
            busy: Default::default(),
            crc: Default::default(),
            crc_idle: Default::default(),
            ext_init: Default::default(),
            ext_valid: Default::default(),
            ext_data: Default::default(),
            src: Default::default(),
            dst: Default::default(),
            crc_unit: Default::default(),
            fifo: Default::default(),
            running: Default::default(),
            has_dst_q: Default::default(),
            rd_addr: Default::default(),
            rd_left: Default::default(),
            inflight: Default::default(),
            sbits: Default::default(),
            sbits_inv: Default::default(),
            have_prev: Default::default(),
            prev: Default::default(),
            pay_left: Default::default(),
            pay_lt8: Default::default(),
            pay_nz: Default::default(),
            pay_left_new: Default::default(),
            dst_lt8: Default::default(),
            dst_left_new: Default::default(),
            pay_valid: Default::default(),
            pay_data: Default::default(),
            pay_nb: Default::default(),
            dbits: Default::default(),
            dbits_inv: Default::default(),
            dshift: Default::default(),
            dst_first: Default::default(),
            dst_left: Default::default(),
            dst_word: Default::default(),
            carry: Default::default(),
            cmd_v: Default::default(),
            cmd_addr: Default::default(),
            cmd_data: Default::default(),
            cmd_strb: Default::default(),
            wr_inflight: Default::default(),
            nb: Default::default(),
            need_next: Default::default(),
            pay_free: Default::default(),
            pay_take: Default::default(),
            pop: Default::default(),
            cmd_free: Default::default(),
            src_fire: Default::default(),
            dst_fire: Default::default(),
            dst_ack: Default::default(),
            start_lane: Default::default(),
            room: Default::default(),
            count: Default::default(),
            strb_wide: Default::default(),
            flush: Default::default(),
            one16: Constant::new(1.into()),
            limit: Constant::new(INFLIGHT_LIMIT.into()),
            c64: Constant::new(64.into()),
        }
    }
}

impl Logic for Mover {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self,
            clock,
            running,
            has_dst_q,
            rd_addr,
            rd_left,
            inflight,
            sbits,
            sbits_inv,
            have_prev,
            prev,
            pay_left,
            pay_lt8,
            pay_nz,
            dst_lt8,
            pay_valid,
            pay_data,
            pay_nb,
            dbits,
            dbits_inv,
            dshift,
            dst_first,
            dst_left,
            dst_word,
            carry,
            cmd_v,
            cmd_addr,
            cmd_data,
            cmd_strb,
            wr_inflight
        );
        clock!(self, clock, crc_unit, fifo);
        self.busy.next = self.running.q.val();
        self.crc.next = self.crc_unit.crc.val();
        self.crc_idle.next = self.crc_unit.idle.val() & !self.running.q.val();

        // ---- read issue -------------------------------------------------
        self.src.cmd_valid.next = self.running.q.val()
            & self.rd_left.q.val().any()
            & (self.inflight.q.val() < self.limit.val());
        self.src.cmd_write.next = false;
        self.src.cmd_addr.next = self.rd_addr.q.val();
        self.src.cmd_wdata.next = 0.into();
        self.src.cmd_wstrb.next = 0.into();
        self.src_fire.next = self.src.cmd_valid.val() & self.src.cmd_ready.val();
        if self.src_fire.val() {
            self.rd_addr.d.next = self.rd_addr.q.val() + 8;
            self.rd_left.d.next = self.rd_left.q.val() - 1;
        }
        // Read data lands in the FIFO; the credit check guarantees room.
        self.fifo.write.next = self.src.rsp_valid.val() & !self.src.rsp_write.val();
        self.fifo.data_in.next = self.src.rsp_data.val();

        // ---- destination realigner and write issue ------------------------
        self.dst.cmd_valid.next = self.cmd_v.q.val();
        self.dst.cmd_write.next = true;
        self.dst.cmd_addr.next = self.cmd_addr.q.val();
        self.dst.cmd_wdata.next = self.cmd_data.q.val();
        self.dst.cmd_wstrb.next = self.cmd_strb.q.val();
        self.dst_fire.next = self.cmd_v.q.val() & self.dst.cmd_ready.val();
        self.cmd_free.next = !self.cmd_v.q.val() | self.dst.cmd_ready.val();
        if self.dst_fire.val() {
            self.cmd_v.d.next = false;
        }
        self.dst_ack.next = self.dst.rsp_valid.val() & self.dst.rsp_write.val();
        if self.dst_fire.val() & !self.dst_ack.val() {
            self.wr_inflight.d.next = self.wr_inflight.q.val() + 1;
        } else if !self.dst_fire.val() & self.dst_ack.val() & self.wr_inflight.q.val().any() {
            self.wr_inflight.d.next = self.wr_inflight.q.val() - 1;
        }

        self.pay_take.next = false;
        if self.pay_valid.q.val() & !self.crc_unit.busy.val() {
            if self.has_dst_q.q.val() {
                self.pay_take.next = self.cmd_free.val();
            } else {
                self.pay_take.next = true;
            }
        }
        // ---- source realigner -------------------------------------------
        self.nb.next = 8.into();
        self.pay_left_new.next = self.pay_left.q.val();
        self.dst_left_new.next = self.dst_left.q.val();
        if self.pay_lt8.q.val() {
            self.nb.next = self.pay_left.q.val().get_bits::<4>(0);
        }
        self.need_next.next = (bit_cast::<7, 4>(self.nb.val()) + (self.sbits.q.val() >> 3)) > 8;
        self.pop.next = false;
        self.pay_free.next = !self.pay_valid.q.val() | self.pay_take.val();
        if self.pay_take.val() {
            self.pay_valid.d.next = false;
        }
        if self.running.q.val() & self.pay_nz.q.val() {
            if !self.sbits.q.val().any() {
                if !self.fifo.empty.val() & self.pay_free.val() {
                    self.pop.next = true;
                    self.pay_data.d.next = self.fifo.data_out.val();
                    self.pay_valid.d.next = true;
                    self.pay_nb.d.next = self.nb.val();
                    self.pay_left_new.next =
                        self.pay_left.q.val() - bit_cast::<32, 4>(self.nb.val());
                }
            } else if !self.have_prev.q.val() {
                if !self.fifo.empty.val() {
                    self.pop.next = true;
                    self.prev.d.next = self.fifo.data_out.val();
                    self.have_prev.d.next = true;
                }
            } else if self.need_next.val() {
                if !self.fifo.empty.val() & self.pay_free.val() {
                    self.pop.next = true;
                    self.prev.d.next = self.fifo.data_out.val();
                    self.pay_data.d.next = (self.prev.q.val() >> self.sbits.q.val())
                        | (self.fifo.data_out.val() << self.sbits_inv.q.val());
                    self.pay_valid.d.next = true;
                    self.pay_nb.d.next = self.nb.val();
                    self.pay_left_new.next =
                        self.pay_left.q.val() - bit_cast::<32, 4>(self.nb.val());
                }
            } else if self.pay_free.val() {
                self.pay_data.d.next = self.prev.q.val() >> self.sbits.q.val();
                self.pay_valid.d.next = true;
                self.pay_nb.d.next = self.nb.val();
                self.pay_left_new.next = self.pay_left.q.val() - bit_cast::<32, 4>(self.nb.val());
                self.have_prev.d.next = false;
            }
        }
        // Outside a transfer the FIFO holds nothing useful (e.g. after a
        // reset mid-transfer): drain it.
        if !self.running.q.val() & !self.fifo.empty.val() {
            self.pop.next = true;
        }
        self.fifo.read.next = self.pop.val();
        if self.src_fire.val() & !(self.pop.val() & self.running.q.val()) {
            self.inflight.d.next = self.inflight.q.val() + 1;
        } else if !self.src_fire.val() & self.pop.val() & self.running.q.val() {
            self.inflight.d.next = self.inflight.q.val() - 1;
        }

        // Final word holding only carried-over bytes.
        self.flush.next = self.running.q.val()
            & self.has_dst_q.q.val()
            & !self.pay_valid.q.val()
            & !self.pay_nz.q.val()
            & self.dst_left.q.val().any()
            & self.cmd_free.val();
        self.start_lane.next = 0.into();
        if self.dst_first.q.val() {
            self.start_lane.next = self.dshift.q.val();
        }
        self.room.next = bit_cast::<4, 7>(self.dbits_inv.q.val() >> 3);
        if !self.dst_first.q.val() {
            self.room.next = 8.into();
        }
        self.count.next = self.room.val();
        if self.dst_lt8.q.val() & (self.dst_left.q.val().get_bits::<4>(0) < self.room.val()) {
            self.count.next = self.dst_left.q.val().get_bits::<4>(0);
        }
        self.strb_wide.next =
            ((self.one16.val() << self.count.val()) - self.one16.val()) << self.start_lane.val();
        if (self.pay_take.val() & self.has_dst_q.q.val()) | self.flush.val() {
            self.cmd_v.d.next = true;
            self.cmd_addr.d.next = self.dst_word.q.val();
            self.dst_word.d.next = self.dst_word.q.val() + 8;
            self.cmd_strb.d.next = self.strb_wide.val().get_bits::<8>(0);
            self.dst_left_new.next = self.dst_left.q.val() - bit_cast::<32, 4>(self.count.val());
            self.dst_first.d.next = false;
            if self.flush.val() {
                self.cmd_data.d.next = self.carry.q.val();
            } else if self.dbits.q.val().any() {
                self.cmd_data.d.next =
                    (self.pay_data.q.val() << self.dbits.q.val()) | self.carry.q.val();
                self.carry.d.next = self.pay_data.q.val() >> self.dbits_inv.q.val();
            } else {
                self.cmd_data.d.next = self.pay_data.q.val();
            }
        }

        // ---- CRC ---------------------------------------------------------
        self.crc_unit.init.next = self.ext_init.val() & !self.running.q.val();
        self.crc_unit.valid.next = self.pay_take.val();
        self.crc_unit.data.next = self.pay_data.q.val();
        self.crc_unit.nbytes.next = self.pay_nb.q.val();
        if !self.running.q.val() {
            self.crc_unit.valid.next = self.ext_valid.val();
            self.crc_unit.data.next = self.ext_data.val();
            self.crc_unit.nbytes.next = 8.into();
        }

        // ---- start and completion ------------------------------------------
        if self.running.q.val()
            & !self.rd_left.q.val().any()
            & !self.inflight.q.val().any()
            & !self.pay_nz.q.val()
            & !self.pay_valid.q.val()
            & !self.cmd_v.q.val()
            & !self.dst_left.q.val().any()
            & !self.wr_inflight.q.val().any()
            & self.crc_unit.idle.val()
        {
            self.running.d.next = false;
        }
        if self.start.val() & !self.running.q.val() {
            self.crc_unit.init.next = true;
            self.running.d.next = true;
            self.has_dst_q.d.next = self.has_dst.val();
            self.rd_addr.d.next = (self.src_addr.val() >> 3) << 3;
            self.rd_left.d.next = 0.into();
            if self.len.val().any() {
                self.rd_left.d.next =
                    (self.len.val() + bit_cast::<32, 3>(self.src_addr.val().get_bits::<3>(0)) + 7)
                        >> 3;
            }
            self.inflight.d.next = 0.into();
            self.sbits.d.next = bit_cast::<7, 3>(self.src_addr.val().get_bits::<3>(0)) << 3;
            self.sbits_inv.d.next =
                self.c64.val() - (bit_cast::<7, 3>(self.src_addr.val().get_bits::<3>(0)) << 3);
            self.have_prev.d.next = false;
            self.pay_left_new.next = self.len.val();
            self.pay_valid.d.next = false;
            self.dbits.d.next = bit_cast::<7, 3>(self.dst_addr.val().get_bits::<3>(0)) << 3;
            self.dbits_inv.d.next =
                self.c64.val() - (bit_cast::<7, 3>(self.dst_addr.val().get_bits::<3>(0)) << 3);
            self.dshift.d.next = bit_cast::<4, 3>(self.dst_addr.val().get_bits::<3>(0));
            self.dst_first.d.next = true;
            self.dst_left_new.next = 0.into();
            if self.has_dst.val() {
                self.dst_left_new.next = self.len.val();
            }
            self.dst_word.d.next = (self.dst_addr.val() >> 3) << 3;
            self.carry.d.next = 0.into();
            self.cmd_v.d.next = false;
            self.wr_inflight.d.next = 0.into();
        }
        if self.reset.val() {
            self.running.d.next = false;
            self.cmd_v.d.next = false;
            self.pay_valid.d.next = false;
            self.have_prev.d.next = false;
            self.inflight.d.next = 0.into();
            self.wr_inflight.d.next = 0.into();
            self.rd_left.d.next = 0.into();
            self.pay_left_new.next = 0.into();
            self.dst_left_new.next = 0.into();
        }
        self.pay_left.d.next = self.pay_left_new.val();
        self.pay_lt8.d.next = self.pay_left_new.val() < 8;
        self.pay_nz.d.next = self.pay_left_new.val().any();
        self.dst_left.d.next = self.dst_left_new.val();
        self.dst_lt8.d.next = self.dst_left_new.val() < 8;
    }
}
