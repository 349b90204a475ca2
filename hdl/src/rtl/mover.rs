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
//!
//! Timing: every decision that depends on another block (a port's ready,
//! the FIFO's state) is taken from registers; the FIFO's block RAM feeds a
//! register, then a small head queue; "last word" flags are the sign bits
//! of down-counters; a transfer's starting values are precomputed.

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
    /// Start a transfer with the parameters below (ignored while busy). The
    /// parameters are sampled in the cycle of `start` and the one after, so
    /// they must be held for both; `busy` is high from the cycle after on.
    pub start: Signal<In, Bit>,
    /// Source byte address (any alignment).
    pub src_addr: Signal<In, Bits<64>>,
    /// Destination byte address (any alignment).
    pub dst_addr: Signal<In, Bits<64>>,
    /// Bytes to move (0 is allowed: completes with the CRC of nothing).
    pub len: Signal<In, Bits<32>>,
    /// Write the data to `dst`; without it the transfer is a CRC scan.
    pub has_dst: Signal<In, Bit>,
    /// A transfer is starting or running.
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
    // `start`, registered: the transfer begins the cycle after it, from the
    // parameter inputs (held by the controller), so the controller's phase
    // decode does not reach the mover's counters in one cycle.
    start_q: DFF<Bit>,
    // Head queue between the read FIFO and the realigner: the FIFO's block
    // RAM output goes straight into `stage` (its clock-to-out is most of a
    // cycle), then into one of four registers. Reads from the FIFO are
    // decided from registers only (`head_occ`, `stage_v`, the FIFO's own
    // state), so the realigner's consume decision (`pop`) moves only the
    // read pointer, never the FIFO or the stored words.
    stage: DFF<Bits<64>>,
    stage_v: DFF<Bit>,
    head0: DFF<Bits<64>>,
    head1: DFF<Bits<64>>,
    head2: DFF<Bits<64>>,
    head3: DFF<Bits<64>>,
    head_wr: DFF<Bits<2>>,
    head_rd: DFF<Bits<2>>,
    head_occ: DFF<Bits<3>>,
    // `pop` while running, registered: the read credit is returned a cycle
    // late (conservative), which keeps `pop` off the `inflight` adder.
    pop_q: DFF<Bit>,
    // A transfer's starting counts and masks, computed from the parameter
    // inputs every cycle, so the start (`start_q`) only copies registers:
    // its arithmetic is not shared with the running updates (yosys would
    // merge the two subtractors and put the late select in front of the
    // carry chain).
    i_rd_left: DFF<Bits<32>>,
    i_pay_words: DFF<Bits<30>>,
    i_tail_split: DFF<Bit>,
    i_dst_words: DFF<Bits<31>>,
    i_dst_nz: DFF<Bit>,
    i_first_strb: DFF<Bits<8>>,
    i_last_strb: DFF<Bits<8>>,
    i_sbits_inv: DFF<Bits<7>>,
    i_dbits_inv: DFF<Bits<7>>,
    // read side
    rd_addr: DFF<Bits<64>>,
    rd_left: DFF<Bits<32>>,
    // `rd_left != 0` and "a read may issue" as registers, so the read
    // issue (whose `fire` enables 100 flip-flops) is one gate after flops.
    // The credit is a cycle stale, so it is checked against one less than
    // the limit: `inflight` grows by at most one per cycle.
    rd_more: DFF<Bit>,
    credit: DFF<Bit>,
    inflight: DFF<Bits<10>>,
    // source realigner
    sbits: DFF<Bits<7>>,
    sbits_inv: DFF<Bits<7>>,
    have_prev: DFF<Bit>,
    prev: DFF<Bits<64>>,
    // Payload still to produce: full 8-byte words minus one (two's
    // complement, so bit 29 set means no full word is left: the sign is a
    // register, not a compare after the decrement) and the bytes of the
    // final short word.
    pay_words: DFF<Bits<30>>,
    pay_tail: DFF<Bits<3>>,
    // The final short word spans two source words (its bytes plus the
    // source offset exceed 8): fixed per transfer, so computed at start.
    tail_split: DFF<Bit>,
    // Registers, so the realigner's decision starts one gate later: payload
    // is left to produce (`pay_words`/`pay_tail` not exhausted; implies
    // `running`), the next payload word needs another source word (a full
    // word at a nonzero offset, or a split tail), the source is 8-aligned.
    // Updated with `pay_words` from its next value.
    pay_nz: DFF<Bit>,
    need_next: DFF<Bit>,
    s_aligned: DFF<Bit>,
    pay_valid: DFF<Bit>,
    pay_data: DFF<Bits<64>>,
    pay_nb: DFF<Bits<4>>,
    // Skid slot behind the payload word: the realigner produces while it
    // is empty (a register), so its decision and the counters it steps
    // (`pay_words`, the head queue) do not wait for the destination's
    // `cmd_ready` in the same cycle. A word produced while the payload word
    // is not taken waits here; throughput stays one word per cycle.
    skid_v: DFF<Bit>,
    skid_data: DFF<Bits<64>>,
    skid_nb: DFF<Bits<4>>,
    // destination realigner
    dbits: DFF<Bits<7>>,
    dbits_inv: DFF<Bits<7>>,
    dst_first: DFF<Bit>,
    // Destination words still to write: words minus two (two's complement,
    // so bit 30 set means this is the last one) and whether any is left;
    // the byte strobes of the first and the last word, computed at start.
    dst_words: DFF<Bits<31>>,
    dst_nz: DFF<Bit>,
    first_strb: DFF<Bits<8>>,
    last_strb: DFF<Bits<8>>,
    dst_word: DFF<Bits<64>>,
    carry: DFF<Bits<64>>,
    cmd_v: DFF<Bit>,
    cmd_addr: DFF<Bits<64>>,
    cmd_data: DFF<Bits<64>>,
    cmd_strb: DFF<Bits<8>>,
    wr_inflight: DFF<Bits<10>>,
    // combinational helpers
    pay_lt8: Signal<Local, Bit>,
    pay_step: Signal<Local, Bit>,
    dst_sum: Signal<Local, Bits<34>>,
    dst_end: Signal<Local, Bits<3>>,
    dst_last: Signal<Local, Bit>,
    nb: Signal<Local, Bits<4>>,
    pay_free: Signal<Local, Bit>,
    pay_take: Signal<Local, Bit>,
    out_free: Signal<Local, Bit>,
    new_data: Signal<Local, Bits<64>>,
    pop: Signal<Local, Bit>,
    fill: Signal<Local, Bit>,
    head_v: Signal<Local, Bit>,
    head: Signal<Local, Bits<64>>,
    cmd_free: Signal<Local, Bit>,
    src_fire: Signal<Local, Bit>,
    dst_fire: Signal<Local, Bit>,
    dst_ack: Signal<Local, Bit>,
    strb: Signal<Local, Bits<8>>,
    flush: Signal<Local, Bit>,
    neg32: Constant<Bits<34>>,
    ff8: Constant<Bits<8>>,
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
            start_q: Default::default(),
            stage: Default::default(),
            stage_v: Default::default(),
            head0: Default::default(),
            head1: Default::default(),
            head2: Default::default(),
            head3: Default::default(),
            head_wr: Default::default(),
            head_rd: Default::default(),
            head_occ: Default::default(),
            pop_q: Default::default(),
            i_rd_left: Default::default(),
            i_pay_words: Default::default(),
            i_tail_split: Default::default(),
            i_dst_words: Default::default(),
            i_dst_nz: Default::default(),
            i_first_strb: Default::default(),
            i_last_strb: Default::default(),
            i_sbits_inv: Default::default(),
            i_dbits_inv: Default::default(),
            rd_addr: Default::default(),
            rd_left: Default::default(),
            rd_more: Default::default(),
            credit: Default::default(),
            inflight: Default::default(),
            sbits: Default::default(),
            sbits_inv: Default::default(),
            have_prev: Default::default(),
            prev: Default::default(),
            pay_words: Default::default(),
            pay_tail: Default::default(),
            tail_split: Default::default(),
            pay_lt8: Default::default(),
            pay_nz: Default::default(),
            s_aligned: Default::default(),
            pay_step: Default::default(),
            dst_words: Default::default(),
            dst_nz: Default::default(),
            first_strb: Default::default(),
            last_strb: Default::default(),
            dst_sum: Default::default(),
            dst_end: Default::default(),
            dst_last: Default::default(),
            pay_valid: Default::default(),
            skid_v: Default::default(),
            skid_data: Default::default(),
            skid_nb: Default::default(),
            pay_data: Default::default(),
            pay_nb: Default::default(),
            dbits: Default::default(),
            dbits_inv: Default::default(),
            dst_first: Default::default(),
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
            out_free: Default::default(),
            new_data: Default::default(),
            pop: Default::default(),
            fill: Default::default(),
            head_v: Default::default(),
            head: Default::default(),
            cmd_free: Default::default(),
            src_fire: Default::default(),
            dst_fire: Default::default(),
            dst_ack: Default::default(),
            strb: Default::default(),
            flush: Default::default(),
            neg32: Constant::new(0x3_FFFF_FFE0_u64.into()),
            ff8: Constant::new(0xFF.into()),
            limit: Constant::new((INFLIGHT_LIMIT - 1).into()),
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
            start_q,
            stage,
            stage_v,
            head0,
            head1,
            head2,
            head3,
            head_wr,
            head_rd,
            head_occ,
            pop_q,
            i_rd_left,
            i_pay_words,
            i_tail_split,
            i_dst_words,
            i_dst_nz,
            i_first_strb,
            i_last_strb,
            i_sbits_inv,
            i_dbits_inv,
            rd_addr,
            rd_left,
            rd_more,
            credit,
            inflight,
            sbits,
            sbits_inv,
            have_prev,
            prev,
            pay_words,
            pay_tail,
            tail_split,
            pay_nz,
            need_next,
            s_aligned,
            pay_valid,
            skid_v,
            skid_data,
            skid_nb,
            pay_data,
            pay_nb,
            dbits,
            dbits_inv,
            dst_first,
            dst_words,
            dst_nz,
            first_strb,
            last_strb,
            dst_word,
            carry,
            cmd_v,
            cmd_addr,
            cmd_data,
            cmd_strb,
            wr_inflight
        );
        clock!(self, clock, crc_unit, fifo);
        self.busy.next = self.running.q.val() | self.start_q.q.val();
        self.crc.next = self.crc_unit.crc.val();
        self.crc_idle.next = self.crc_unit.idle.val() & !self.running.q.val();

        // ---- read issue -------------------------------------------------
        self.credit.d.next = self.inflight.q.val() < self.limit.val();
        self.src.cmd_valid.next = self.running.q.val() & self.rd_more.q.val() & self.credit.q.val();
        self.src.cmd_write.next = false;
        self.src.cmd_addr.next = self.rd_addr.q.val();
        self.src.cmd_wdata.next = 0.into();
        self.src.cmd_wstrb.next = 0.into();
        self.src_fire.next = self.src.cmd_valid.val() & self.src.cmd_ready.val();
        if self.src_fire.val() {
            self.rd_addr.d.next = self.rd_addr.q.val() + 8;
            self.rd_left.d.next = self.rd_left.q.val() - 1;
            self.rd_more.d.next = self.rd_left.q.val() != 1;
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

        // The CRC unit is busy only after a short word, and a short word is
        // a transfer's last: no payload word can follow it, so the CRC's
        // `busy` need not (and, for timing, does not) gate the take.
        self.pay_take.next = false;
        if self.pay_valid.q.val() {
            if self.has_dst_q.q.val() {
                self.pay_take.next = self.cmd_free.val();
            } else {
                self.pay_take.next = true;
            }
        }
        // ---- source realigner -------------------------------------------
        self.head_v.next = self.head_occ.q.val().any();
        self.head.next = self.head0.q.val();
        if self.head_rd.q.val() == 1 {
            self.head.next = self.head1.q.val();
        } else if self.head_rd.q.val() == 2 {
            self.head.next = self.head2.q.val();
        } else if self.head_rd.q.val() == 3 {
            self.head.next = self.head3.q.val();
        }
        self.nb.next = 8.into();
        self.pay_lt8.next = self.pay_words.q.val().get_bit(29);
        self.pay_step.next = false;
        if self.pay_lt8.val() {
            self.nb.next = bit_cast::<4, 3>(self.pay_tail.q.val());
        }
        // A word of 8 bytes at a nonzero source offset always spans two
        // source words; the final short word does when `tail_split`.
        self.pop.next = false;
        self.pay_free.next = !self.skid_v.q.val();
        self.new_data.next = self.prev.q.val() >> self.sbits.q.val();
        if self.pay_nz.q.val() {
            if self.s_aligned.q.val() {
                if self.head_v.val() & self.pay_free.val() {
                    self.pop.next = true;
                    self.new_data.next = self.head.val();
                    self.pay_step.next = true;
                }
            } else if !self.have_prev.q.val() {
                if self.head_v.val() {
                    self.pop.next = true;
                    self.prev.d.next = self.head.val();
                    self.have_prev.d.next = true;
                }
            } else if self.need_next.q.val() {
                if self.head_v.val() & self.pay_free.val() {
                    self.pop.next = true;
                    self.prev.d.next = self.head.val();
                    self.new_data.next = (self.prev.q.val() >> self.sbits.q.val())
                        | (self.head.val() << self.sbits_inv.q.val());
                    self.pay_step.next = true;
                }
            } else if self.pay_free.val() {
                self.pay_step.next = true;
                self.have_prev.d.next = false;
            }
        }
        // The payload word is refilled from the skid slot first (it is
        // older), else from the realigner.
        self.out_free.next = !self.pay_valid.q.val() | self.pay_take.val();
        if self.out_free.val() {
            if self.skid_v.q.val() {
                self.pay_data.d.next = self.skid_data.q.val();
                self.pay_nb.d.next = self.skid_nb.q.val();
                self.pay_valid.d.next = true;
                self.skid_v.d.next = false;
            } else if self.pay_step.val() {
                self.pay_data.d.next = self.new_data.val();
                self.pay_nb.d.next = self.nb.val();
                self.pay_valid.d.next = true;
            } else {
                self.pay_valid.d.next = false;
            }
        } else if self.pay_step.val() {
            self.skid_data.d.next = self.new_data.val();
            self.skid_nb.d.next = self.nb.val();
            self.skid_v.d.next = true;
        }
        if self.pay_step.val() {
            if self.pay_lt8.val() {
                self.pay_tail.d.next = 0.into();
                self.pay_nz.d.next = false;
            } else {
                self.pay_words.d.next = self.pay_words.q.val() - 1;
                if !self.pay_words.q.val().any() {
                    // The last full word: what remains is the tail.
                    self.pay_nz.d.next = self.pay_tail.q.val().any();
                    self.need_next.d.next = self.tail_split.q.val();
                }
            }
        }
        // Outside a transfer the FIFO holds nothing useful (e.g. after a
        // reset mid-transfer): drain it.
        if !self.running.q.val() & self.head_v.val() {
            self.pop.next = true;
        }
        // Head queue: read the FIFO while the words it holds, plus the one
        // on its way, leave room (registers only); store what arrives;
        // `pop` consumes.
        self.fill.next = !self.fifo.empty.val()
            & ((self.head_occ.q.val() + bit_cast::<3, 1>(self.stage_v.q.val().into())) < 4);
        self.fifo.read.next = self.fill.val();
        self.stage.d.next = self.fifo.data_out.val();
        self.stage_v.d.next = self.fill.val();
        if self.stage_v.q.val() {
            if self.head_wr.q.val() == 0 {
                self.head0.d.next = self.stage.q.val();
            } else if self.head_wr.q.val() == 1 {
                self.head1.d.next = self.stage.q.val();
            } else if self.head_wr.q.val() == 2 {
                self.head2.d.next = self.stage.q.val();
            } else {
                self.head3.d.next = self.stage.q.val();
            }
            self.head_wr.d.next = self.head_wr.q.val() + 1;
        }
        if self.pop.val() {
            self.head_rd.d.next = self.head_rd.q.val() + 1;
        }
        if self.stage_v.q.val() & !self.pop.val() {
            self.head_occ.d.next = self.head_occ.q.val() + 1;
        } else if !self.stage_v.q.val() & self.pop.val() {
            self.head_occ.d.next = self.head_occ.q.val() - 1;
        }
        self.pop_q.d.next = self.pop.val() & self.running.q.val();
        if self.src_fire.val() & !self.pop_q.q.val() {
            self.inflight.d.next = self.inflight.q.val() + 1;
        } else if !self.src_fire.val() & self.pop_q.q.val() & self.inflight.q.val().any() {
            self.inflight.d.next = self.inflight.q.val() - 1;
        }

        // Final word holding only carried-over bytes.
        self.flush.next = self.running.q.val()
            & self.has_dst_q.q.val()
            & !self.pay_valid.q.val()
            & !self.skid_v.q.val()
            & !self.pay_nz.q.val()
            & self.dst_nz.q.val()
            & self.cmd_free.val();
        self.dst_last.next = self.dst_words.q.val().get_bit(30);
        self.strb.next = 0xFF.into();
        if self.dst_first.q.val() {
            self.strb.next = self.first_strb.q.val();
        }
        if self.dst_last.val() {
            self.strb.next = self.strb.val() & self.last_strb.q.val();
        }
        if (self.pay_take.val() & self.has_dst_q.q.val()) | self.flush.val() {
            self.cmd_v.d.next = true;
            self.cmd_addr.d.next = self.dst_word.q.val();
            self.dst_word.d.next = self.dst_word.q.val() + 8;
            self.cmd_strb.d.next = self.strb.val();
            if self.dst_last.val() {
                self.dst_nz.d.next = false;
            } else {
                self.dst_words.d.next = self.dst_words.q.val() - 1;
            }
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
            & !self.rd_more.q.val()
            & !self.inflight.q.val().any()
            & !self.pay_nz.q.val()
            & !self.pay_valid.q.val()
            & !self.skid_v.q.val()
            & !self.cmd_v.q.val()
            & !self.dst_nz.q.val()
            & !self.wr_inflight.q.val().any()
            & self.crc_unit.idle.val()
        {
            self.running.d.next = false;
        }
        // Words = ceil((lane + len) / 8); words - 2 = floor((len + lane - 9) / 8),
        // one carry chain: the addend is lane - 9 sign-extended.
        self.dst_sum.next = bit_cast::<34, 32>(self.len.val())
            + (self.neg32.val()
                | bit_cast::<34, 5>(bit_cast::<5, 3>(self.dst_addr.val().get_bits::<3>(0)) + 23));
        self.dst_end.next = self.dst_addr.val().get_bits::<3>(0) + self.len.val().get_bits::<3>(0);
        self.i_rd_left.d.next = 0.into();
        if self.len.val().any() {
            self.i_rd_left.d.next =
                (self.len.val() + bit_cast::<32, 3>(self.src_addr.val().get_bits::<3>(0)) + 7) >> 3;
        }
        self.i_pay_words.d.next = bit_cast::<30, 32>(self.len.val() >> 3) - 1;
        self.i_tail_split.d.next = (bit_cast::<4, 3>(self.len.val().get_bits::<3>(0))
            + bit_cast::<4, 3>(self.src_addr.val().get_bits::<3>(0)))
            > 8;
        self.i_dst_words.d.next = self.dst_sum.val().get_bits::<31>(3);
        self.i_dst_nz.d.next = self.has_dst.val() & self.len.val().any();
        self.i_first_strb.d.next = self.ff8.val() << self.dst_addr.val().get_bits::<3>(0);
        // Bytes below the end offset (all eight when it is 0): a table of
        // the 3-bit end, not a subtractor.
        self.i_last_strb.d.next = self.ff8.val();
        if self.dst_end.val() == 1 {
            self.i_last_strb.d.next = 0x01.into();
        } else if self.dst_end.val() == 2 {
            self.i_last_strb.d.next = 0x03.into();
        } else if self.dst_end.val() == 3 {
            self.i_last_strb.d.next = 0x07.into();
        } else if self.dst_end.val() == 4 {
            self.i_last_strb.d.next = 0x0F.into();
        } else if self.dst_end.val() == 5 {
            self.i_last_strb.d.next = 0x1F.into();
        } else if self.dst_end.val() == 6 {
            self.i_last_strb.d.next = 0x3F.into();
        } else if self.dst_end.val() == 7 {
            self.i_last_strb.d.next = 0x7F.into();
        }
        self.i_sbits_inv.d.next =
            self.c64.val() - (bit_cast::<7, 3>(self.src_addr.val().get_bits::<3>(0)) << 3);
        self.i_dbits_inv.d.next =
            self.c64.val() - (bit_cast::<7, 3>(self.dst_addr.val().get_bits::<3>(0)) << 3);
        self.start_q.d.next = self.start.val() & !self.running.q.val() & !self.start_q.q.val();
        if self.start_q.q.val() {
            self.crc_unit.init.next = true;
            self.running.d.next = true;
            self.has_dst_q.d.next = self.has_dst.val();
            self.rd_addr.d.next = (self.src_addr.val() >> 3) << 3;
            self.rd_left.d.next = self.i_rd_left.q.val();
            self.rd_more.d.next = self.i_rd_left.q.val().any();
            self.inflight.d.next = 0.into();
            self.sbits.d.next = bit_cast::<7, 3>(self.src_addr.val().get_bits::<3>(0)) << 3;
            self.sbits_inv.d.next = self.i_sbits_inv.q.val();
            self.have_prev.d.next = false;
            self.pay_words.d.next = self.i_pay_words.q.val();
            self.pay_tail.d.next = self.len.val().get_bits::<3>(0);
            self.tail_split.d.next = self.i_tail_split.q.val();
            self.pay_nz.d.next = self.len.val().any();
            self.need_next.d.next =
                !self.i_pay_words.q.val().get_bit(29) | self.i_tail_split.q.val();
            self.s_aligned.d.next = !self.src_addr.val().get_bits::<3>(0).any();
            self.pay_valid.d.next = false;
            self.skid_v.d.next = false;
            self.dbits.d.next = bit_cast::<7, 3>(self.dst_addr.val().get_bits::<3>(0)) << 3;
            self.dbits_inv.d.next = self.i_dbits_inv.q.val();
            self.dst_words.d.next = self.i_dst_words.q.val();
            self.first_strb.d.next = self.i_first_strb.q.val();
            self.last_strb.d.next = self.i_last_strb.q.val();
            self.dst_first.d.next = true;
            self.dst_nz.d.next = self.i_dst_nz.q.val();
            self.dst_word.d.next = (self.dst_addr.val() >> 3) << 3;
            self.carry.d.next = 0.into();
            self.cmd_v.d.next = false;
            self.wr_inflight.d.next = 0.into();
            self.pop_q.d.next = false;
        }
        if self.reset.val() {
            self.running.d.next = false;
            self.start_q.d.next = false;
            self.stage_v.d.next = false;
            self.head_wr.d.next = 0.into();
            self.head_rd.d.next = 0.into();
            self.head_occ.d.next = 0.into();
            self.pop_q.d.next = false;
            self.cmd_v.d.next = false;
            self.pay_valid.d.next = false;
            self.skid_v.d.next = false;
            self.have_prev.d.next = false;
            self.inflight.d.next = 0.into();
            self.wr_inflight.d.next = 0.into();
            self.rd_left.d.next = 0.into();
            self.rd_more.d.next = false;
            self.pay_words.d.next = 0x3FFF_FFFF.into();
            self.pay_tail.d.next = 0.into();
            self.pay_nz.d.next = false;
            self.dst_nz.d.next = false;
        }
    }
}
