//! A cold tier on SPI NOR flash: what makes the board's cold tier survive a
//! power cut. The controller's cold port sees an ordinary NV memory; behind
//! it a block-RAM shadow serves every read and write, and the flash keeps
//! the shadow's content as of the last commit.
//!
//! **Durability point.** The controller writes a superblock's eight words in
//! order and completes its operation only after the last one (the CRC word,
//! slot offset 56) is acknowledged. That write is the *commit barrier*: its
//! acknowledgement is held until every sector dirtied since the previous
//! barrier is in flash, data sectors first and the superblock sector last,
//! so a commit is never durable before the data it commits. Other writes are
//! acknowledged from the shadow; they are durable at the tier's next commit
//! (for the contract that is enough: what is not committed is not promised).
//!
//! **Power-cut atomic sector updates.** NOR flash erases 4 KiB at a time, so
//! rewriting a sector risks its other bytes (the other superblock slot, live
//! log records). Every sector update therefore goes through a journal: the
//! new content is first written to a journal data sector, then a 4-byte
//! journal header `{0xA5, s, !s, 0xFF}` names its home sector `s`, then the
//! home sector is erased and programmed, then the header's last byte is
//! programmed to 0x00 ("done"). At boot a complete header that is not done
//! means a cut during the home sector's update: the journal data is copied
//! home again (idempotent). The header sector is erased before the journal
//! data is rewritten, so a stale header never points at new journal data;
//! `s` beside `!s` detects a torn header program (programming only clears
//! bits, so a torn pair has a position where both are 1).
//!
//! Flash layout from `base`: the tier's sectors in order, then the journal
//! data sector, then the journal header sector (tier bytes + 8 KiB).
//! Commands: READ 0x03, PAGE PROGRAM 0x02 (256-byte pages), SECTOR ERASE
//! 0x20, WRITE ENABLE 0x06, READ STATUS 0x05 (polled until WIP clears, with
//! a timeout). A flash that never finishes, or a timeout, stops the tier:
//! `error` rises and the held acknowledgement is never given, so the
//! controller's operation never completes and the host's completion wait
//! times out (an acknowledgement would claim a durability that is not
//! there).
//!
//! At reset the block waits for the flash to be idle, finishes an
//! interrupted journal update, then copies the tier into the shadow
//! (`ready` rises); the cold port accepts nothing before that.

use super::bram::PmpBram;
use super::bus::PmpTarget;
use super::spi::SpiByte;
use rust_hdl::prelude::*;

/// Bytes per flash sector (the erase unit).
pub const SECTOR_BYTES: usize = 4096;
/// Journal header byte 0.
pub const JOURNAL_MAGIC: u8 = 0xA5;
/// Flash command: read data.
pub const CMD_READ: u8 = 0x03;
/// Flash command: page program.
pub const CMD_PAGE_PROGRAM: u8 = 0x02;
/// Flash command: 4 KiB sector erase.
pub const CMD_SECTOR_ERASE: u8 = 0x20;
/// Flash command: write enable.
pub const CMD_WRITE_ENABLE: u8 = 0x06;
/// Flash command: read status register 1 (bit 0: write in progress).
pub const CMD_READ_STATUS: u8 = 0x05;

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
enum Tier {
    BootWait,
    BootHdr,
    BootCheck,
    RedoRead,
    RedoErase,
    RedoProg,
    RedoDone,
    Load,
    Ready,
    Pick,
    JhErase,
    JdErase,
    JdProg,
    JhProg,
    SErase,
    SProg,
    JhDone,
    Release,
    Failed,
}

#[derive(Copy, Clone, PartialEq, Debug, LogicState)]
enum Op {
    Idle,
    WrenSend,
    WrenWait,
    WrenGap,
    CmdSend,
    CmdWait,
    Fetch,
    FetchWait,
    DataSend,
    DataWait,
    Store,
    End,
    EndGap,
    PollCmd,
    PollCmdWait,
    PollRd,
    PollRdWait,
    PollGap,
    Fail,
}

/// A flash-backed NV tier of `2^N` 64-bit words (`2^(N-9)` sectors, at
/// most 16).
#[derive(LogicBlock)]
pub struct FlashTier<const N: usize> {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high.
    pub reset: Signal<In, Bit>,
    /// The NV port (the controller's cold port).
    pub up: PmpTarget<32>,
    /// Flash serial clock.
    pub sck: Signal<Out, Bit>,
    /// Flash chip select, active low.
    pub cs_n: Signal<Out, Bit>,
    /// Flash data in.
    pub mosi: Signal<Out, Bit>,
    /// Flash data out.
    pub miso: Signal<In, Bit>,
    /// The tier is loaded and serving the port.
    pub ready: Signal<Out, Bit>,
    /// The flash failed (timeout): the tier has stopped.
    pub error: Signal<Out, Bit>,
    shadow: PmpBram<N>,
    spi: SpiByte,
    state: DFF<Tier>,
    op: DFF<Op>,
    issued: DFF<Bit>,
    go: DFF<Bit>,
    op_done: DFF<Bit>,
    /// The operation: 0 read, 1 page program(s), 2 sector erase, 3 wait until idle.
    kind: DFF<Bits<2>>,
    /// Read into / program from `word` instead of the shadow.
    to_reg: DFF<Bit>,
    faddr: DFF<Bits<24>>,
    left: DFF<Bits<17>>,
    // Shadow byte address: the tier is at most 64 KiB (N <= 13); 17 bits
    // also hold the address one past its end.
    saddr: DFF<Bits<17>>,
    word: DFF<Bits<64>>,
    lane: DFF<Bits<3>>,
    idx: DFF<Bits<2>>,
    gap: DFF<Bits<4>>,
    polls: DFF<Bits<24>>,
    status: DFF<Bits<8>>,
    cs: DFF<Bit>,
    cur: DFF<Bits<4>>,
    scan: DFF<Bits<5>>,
    dirty: DFF<Bits<16>>,
    barrier: DFF<Bit>,
    outst: DFF<Bits<4>>,
    accept: Signal<Local, Bit>,
    held: Signal<Local, Bit>,
    releasing: Signal<Local, Bit>,
    hdr: Signal<Local, Bits<32>>,
    cur_base: Signal<Local, Bits<24>>,
    cur_shadow: Signal<Local, Bits<17>>,
    scan_sector: Signal<Local, Bits<4>>,
    scan_dirty: Signal<Local, Bits<16>>,
    p_op: Signal<Local, Bit>,
    p_kind: Signal<Local, Bits<2>>,
    p_reg: Signal<Local, Bit>,
    p_faddr: Signal<Local, Bits<24>>,
    p_left: Signal<Local, Bits<17>>,
    p_saddr: Signal<Local, Bits<17>>,
    // What `word` is loaded with for a program from the register: a
    // journal header (32 bits; the bytes above it are never sent).
    p_word: Signal<Local, Bits<32>>,
    p_next: Signal<Local, Tier>,
    k_base: Constant<Bits<24>>,
    k_jdata: Constant<Bits<24>>,
    k_jhdr: Constant<Bits<24>>,
    k_sectors: Constant<Bits<5>>,
    k_smask: Constant<Bits<4>>,
    k_tier_bytes: Constant<Bits<17>>,
    k_polls: Constant<Bits<24>>,
    k_persist: Constant<Bit>,
}

impl<const N: usize> FlashTier<N> {
    /// A tier at flash byte address `base` (sector aligned; the tier and
    /// its two journal sectors must fit below 16 MiB), SCK half period
    /// `half` clocks, giving up after `polls` status polls of one erase or
    /// page program.
    pub fn new(base: u32, half: u16, polls: u32) -> Self {
        Self::build(base, half, polls, true)
    }

    /// The same tier without flash (boards with no flash the fabric can
    /// reach): block RAM only, ready at reset, nothing survives power-off.
    /// The SPI pins stay idle (chip select high).
    pub fn volatile() -> Self {
        Self::build(0, 2, 1, false)
    }

    fn build(base: u32, half: u16, polls: u32, persist: bool) -> Self {
        assert!((9..=13).contains(&N), "a flash tier is 1 to 16 sectors");
        let tier = 8u64 << N;
        let base = u64::from(base) & !(SECTOR_BYTES as u64 - 1);
        assert!(
            base + tier + 2 * SECTOR_BYTES as u64 <= 1 << 24,
            "flash tier beyond 16 MiB"
        );
        let sectors = tier / SECTOR_BYTES as u64;
        Self {
            clock: Default::default(),
            reset: Default::default(),
            up: Default::default(),
            sck: Default::default(),
            cs_n: Default::default(),
            mosi: Default::default(),
            miso: Default::default(),
            ready: Default::default(),
            error: Default::default(),
            shadow: Default::default(),
            spi: SpiByte::new(half),
            state: Default::default(),
            op: Default::default(),
            issued: Default::default(),
            go: Default::default(),
            op_done: Default::default(),
            kind: Default::default(),
            to_reg: Default::default(),
            faddr: Default::default(),
            left: Default::default(),
            saddr: Default::default(),
            word: Default::default(),
            lane: Default::default(),
            idx: Default::default(),
            gap: Default::default(),
            polls: Default::default(),
            status: Default::default(),
            cs: Default::default(),
            cur: Default::default(),
            scan: Default::default(),
            dirty: Default::default(),
            barrier: Default::default(),
            outst: Default::default(),
            accept: Default::default(),
            held: Default::default(),
            releasing: Default::default(),
            hdr: Default::default(),
            cur_base: Default::default(),
            cur_shadow: Default::default(),
            scan_sector: Default::default(),
            scan_dirty: Default::default(),
            p_op: Default::default(),
            p_kind: Default::default(),
            p_reg: Default::default(),
            p_faddr: Default::default(),
            p_left: Default::default(),
            p_saddr: Default::default(),
            p_word: Default::default(),
            p_next: Default::default(),
            k_base: Constant::new(base.into()),
            k_jdata: Constant::new((base + tier).into()),
            k_jhdr: Constant::new((base + tier + SECTOR_BYTES as u64).into()),
            k_sectors: Constant::new(sectors.into()),
            k_smask: Constant::new((sectors - 1).into()),
            k_tier_bytes: Constant::new(tier.into()),
            k_polls: Constant::new(u64::from(polls.clamp(1, (1 << 24) - 1)).into()),
            k_persist: Constant::new(persist),
        }
    }
}

impl<const N: usize> Default for FlashTier<N> {
    fn default() -> Self {
        Self::new(0, 2, 1 << 22)
    }
}

impl<const N: usize> Logic for FlashTier<N> {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(
            self, clock, state, op, issued, go, op_done, kind, to_reg, faddr, left, saddr, word,
            lane, idx, gap, polls, status, cs, cur, scan, dirty, barrier, outst
        );
        clock!(self, clock, shadow, spi);
        self.spi.reset.next = self.reset.val();
        self.sck.next = self.spi.sck.val();
        self.mosi.next = self.spi.mosi.val();
        self.spi.miso.next = self.miso.val();
        self.cs_n.next = !self.cs.q.val();
        self.ready.next = self.state.q.val() == Tier::Ready;
        self.error.next = self.state.q.val() == Tier::Failed;
        self.spi.start.next = false;
        self.spi.tx.next = 0.into();

        // ---- the NV port: straight to the shadow while serving ----
        self.accept.next = (self.state.q.val() == Tier::Ready) & !self.barrier.q.val();
        self.up.cmd_ready.next = self.accept.val();
        self.shadow.b.cmd_valid.next = self.up.cmd_valid.val() & self.accept.val();
        self.shadow.b.cmd_write.next = self.up.cmd_write.val();
        self.shadow.b.cmd_addr.next = self.up.cmd_addr.val();
        self.shadow.b.cmd_wdata.next = self.up.cmd_wdata.val();
        self.shadow.b.cmd_wstrb.next = self.up.cmd_wstrb.val();
        // The barrier's acknowledgement is the last response once the
        // barrier is accepted (nothing is accepted after it).
        self.held.next =
            self.barrier.q.val() & (self.outst.q.val() == 1) & self.shadow.b.rsp_valid.val();
        self.releasing.next = self.state.q.val() == Tier::Release;
        self.up.rsp_valid.next =
            (self.shadow.b.rsp_valid.val() & !self.held.val()) | self.releasing.val();
        self.up.rsp_write.next = self.shadow.b.rsp_write.val() | self.releasing.val();
        self.up.rsp_data.next = self.shadow.b.rsp_data.val();
        if self.up.cmd_valid.val() & self.accept.val() {
            if !self.shadow.b.rsp_valid.val() {
                self.outst.d.next = self.outst.q.val() + 1;
            }
            if self.up.cmd_write.val() {
                self.dirty.d.next = self.dirty.q.val()
                    | (bit_cast::<16, 1>(true.into())
                        << (self.up.cmd_addr.val().get_bits::<4>(12) & self.k_smask.val()));
                // The last word of either superblock slot.
                if (self.up.cmd_addr.val().get_bits::<25>(7) == 0)
                    & (self.up.cmd_addr.val().get_bits::<3>(3) == 7)
                    & self.k_persist.val()
                {
                    self.barrier.d.next = true;
                }
            }
        } else if self.shadow.b.rsp_valid.val() {
            self.outst.d.next = self.outst.q.val() - 1;
        }

        // ---- the shadow's engine port: flash loads and flushes ----
        self.shadow.a.cmd_valid.next = false;
        self.shadow.a.cmd_write.next = false;
        self.shadow.a.cmd_addr.next = bit_cast::<64, 17>(self.saddr.q.val());
        self.shadow.a.cmd_wdata.next = self.word.q.val();
        self.shadow.a.cmd_wstrb.next = 0xFF.into();

        // Journal header for the current sector, "not done".
        self.hdr.next = bit_cast::<32, 8>(0xA5.into())
            | (bit_cast::<32, 4>(self.cur.q.val()) << 8)
            | (bit_cast::<32, 8>(!bit_cast::<8, 4>(self.cur.q.val())) << 16)
            | (bit_cast::<32, 8>(0xFF.into()) << 24);
        self.cur_base.next = self.k_base.val() + (bit_cast::<24, 4>(self.cur.q.val()) << 12);
        self.cur_shadow.next = bit_cast::<17, 4>(self.cur.q.val()) << 12;
        self.scan_sector.next = self.scan.q.val().get_bits::<4>(0) & self.k_smask.val();
        self.scan_dirty.next = self.dirty.q.val() >> self.scan_sector.val();

        // ---- the operation engine: one flash operation per `go` ----
        self.op_done.d.next = false;
        self.go.d.next = false;
        match self.op.q.val() {
            Op::Idle => {
                if self.go.q.val() {
                    self.lane.d.next = 0.into();
                    self.idx.d.next = 0.into();
                    self.polls.d.next = self.k_polls.val();
                    self.cs.d.next = true;
                    if self.kind.q.val() == 3 {
                        self.op.d.next = Op::PollCmd;
                    } else if self.kind.q.val() == 0 {
                        self.op.d.next = Op::CmdSend;
                    } else {
                        self.op.d.next = Op::WrenSend;
                    }
                }
            }
            Op::WrenSend => {
                self.spi.start.next = true;
                self.spi.tx.next = 0x06.into();
                self.op.d.next = Op::WrenWait;
            }
            Op::WrenWait => {
                if !self.spi.busy.val() {
                    self.cs.d.next = false;
                    self.gap.d.next = 7.into();
                    self.op.d.next = Op::WrenGap;
                }
            }
            Op::WrenGap => {
                if self.gap.q.val() == 0 {
                    self.cs.d.next = true;
                    self.idx.d.next = 0.into();
                    self.op.d.next = Op::CmdSend;
                } else {
                    self.gap.d.next = self.gap.q.val() - 1;
                }
            }
            Op::CmdSend => {
                self.spi.start.next = true;
                if self.idx.q.val() == 0 {
                    if self.kind.q.val() == 0 {
                        self.spi.tx.next = 0x03.into();
                    } else if self.kind.q.val() == 1 {
                        self.spi.tx.next = 0x02.into();
                    } else {
                        self.spi.tx.next = 0x20.into();
                    }
                } else if self.idx.q.val() == 1 {
                    self.spi.tx.next = self.faddr.q.val().get_bits::<8>(16);
                } else if self.idx.q.val() == 2 {
                    self.spi.tx.next = self.faddr.q.val().get_bits::<8>(8);
                } else {
                    self.spi.tx.next = self.faddr.q.val().get_bits::<8>(0);
                }
                self.op.d.next = Op::CmdWait;
            }
            Op::CmdWait => {
                if !self.spi.busy.val() {
                    self.idx.d.next = self.idx.q.val() + 1;
                    self.op.d.next = Op::CmdSend;
                    if self.idx.q.val() == 3 {
                        if self.kind.q.val() == 2 {
                            self.op.d.next = Op::End;
                        } else if (self.kind.q.val() == 1)
                            & !self.to_reg.q.val()
                            & (self.lane.q.val() == 0)
                        {
                            self.op.d.next = Op::Fetch;
                        } else {
                            self.op.d.next = Op::DataSend;
                        }
                    }
                }
            }
            Op::Fetch => {
                self.shadow.a.cmd_valid.next = true;
                if self.shadow.a.cmd_ready.val() {
                    self.saddr.d.next = self.saddr.q.val() + 8;
                    self.op.d.next = Op::FetchWait;
                }
            }
            Op::FetchWait => {
                if self.shadow.a.rsp_valid.val() & !self.shadow.a.rsp_write.val() {
                    self.word.d.next = self.shadow.a.rsp_data.val();
                    self.op.d.next = Op::DataSend;
                }
            }
            Op::DataSend => {
                self.spi.start.next = true;
                if self.kind.q.val() == 1 {
                    self.spi.tx.next = self.word.q.val().get_bits::<8>(0);
                }
                self.op.d.next = Op::DataWait;
            }
            Op::DataWait => {
                if !self.spi.busy.val() {
                    self.left.d.next = self.left.q.val() - 1;
                    self.lane.d.next = self.lane.q.val() + 1;
                    self.faddr.d.next = self.faddr.q.val() + 1;
                    self.op.d.next = Op::DataSend;
                    // One shift for both directions: a program sends the low
                    // byte and ignores what comes in at the top.
                    self.word.d.next =
                        (self.word.q.val() >> 8) | (bit_cast::<64, 8>(self.spi.rx.val()) << 56);
                    if self.kind.q.val() == 1 {
                        if (self.left.q.val() == 1) | (self.faddr.q.val().get_bits::<8>(0) == 0xFF)
                        {
                            // Last byte, or the end of a 256-byte page.
                            self.op.d.next = Op::End;
                        } else if (self.lane.q.val() == 7) & !self.to_reg.q.val() {
                            self.op.d.next = Op::Fetch;
                        }
                    } else if (self.lane.q.val() == 7) & !self.to_reg.q.val() {
                        self.op.d.next = Op::Store;
                    } else if self.left.q.val() == 1 {
                        self.op.d.next = Op::End;
                    }
                }
            }
            Op::Store => {
                self.shadow.a.cmd_valid.next = true;
                self.shadow.a.cmd_write.next = true;
                if self.shadow.a.cmd_ready.val() {
                    self.saddr.d.next = self.saddr.q.val() + 8;
                    if self.left.q.val() == 0 {
                        self.op.d.next = Op::End;
                    } else {
                        self.op.d.next = Op::DataSend;
                    }
                }
            }
            Op::End => {
                self.cs.d.next = false;
                self.gap.d.next = 7.into();
                self.op.d.next = Op::EndGap;
            }
            Op::EndGap => {
                if self.gap.q.val() == 0 {
                    if self.kind.q.val() == 0 {
                        self.op_done.d.next = true;
                        self.op.d.next = Op::Idle;
                    } else {
                        self.cs.d.next = true;
                        self.op.d.next = Op::PollCmd;
                    }
                } else {
                    self.gap.d.next = self.gap.q.val() - 1;
                }
            }
            Op::PollCmd => {
                self.spi.start.next = true;
                self.spi.tx.next = 0x05.into();
                self.op.d.next = Op::PollCmdWait;
            }
            Op::PollCmdWait => {
                if !self.spi.busy.val() {
                    self.op.d.next = Op::PollRd;
                }
            }
            Op::PollRd => {
                self.spi.start.next = true;
                self.op.d.next = Op::PollRdWait;
            }
            Op::PollRdWait => {
                if !self.spi.busy.val() {
                    self.status.d.next = self.spi.rx.val();
                    self.cs.d.next = false;
                    self.gap.d.next = 7.into();
                    self.op.d.next = Op::PollGap;
                }
            }
            Op::PollGap => {
                if self.gap.q.val() != 0 {
                    self.gap.d.next = self.gap.q.val() - 1;
                } else if self.status.q.val().get_bit(0) {
                    if self.polls.q.val() == 0 {
                        self.op.d.next = Op::Fail;
                    } else {
                        self.polls.d.next = self.polls.q.val() - 1;
                        self.cs.d.next = true;
                        self.op.d.next = Op::PollCmd;
                    }
                } else if (self.kind.q.val() == 1) & (self.left.q.val() != 0) {
                    // The next page.
                    self.polls.d.next = self.k_polls.val();
                    self.cs.d.next = true;
                    self.op.d.next = Op::WrenSend;
                } else {
                    self.op_done.d.next = true;
                    self.op.d.next = Op::Idle;
                }
            }
            Op::Fail => {}
            _ => {
                self.op.d.next = Op::Idle;
            }
        }

        // ---- the tier: boot, load, serve, flush ----
        // The flash operation of each state (`p_op`), issued once
        // (`issued`); the state moves to `p_next` when it is done.
        self.p_op.next = true;
        self.p_kind.next = 1.into();
        self.p_reg.next = false;
        self.p_faddr.next = self.cur_base.val();
        self.p_left.next = 4096.into();
        self.p_saddr.next = self.cur_shadow.val();
        self.p_word.next = self.hdr.val() & 0x00FFFFFF;
        self.p_next.next = Tier::Failed;
        match self.state.q.val() {
            Tier::BootWait => {
                // A reset may land during an erase: wait for the flash.
                self.p_kind.next = 3.into();
                self.p_next.next = Tier::BootHdr;
            }
            Tier::BootHdr => {
                self.p_kind.next = 0.into();
                self.p_reg.next = true;
                self.p_faddr.next = self.k_jhdr.val();
                self.p_left.next = 4.into();
                self.p_next.next = Tier::BootCheck;
            }
            Tier::RedoRead => {
                // The journal data into the shadow of its home sector.
                self.p_kind.next = 0.into();
                self.p_faddr.next = self.k_jdata.val();
                self.p_next.next = Tier::RedoErase;
            }
            Tier::RedoErase => {
                self.p_kind.next = 2.into();
                self.p_next.next = Tier::RedoProg;
            }
            Tier::RedoProg => {
                self.p_next.next = Tier::RedoDone;
            }
            Tier::RedoDone => {
                self.p_reg.next = true;
                self.p_faddr.next = self.k_jhdr.val();
                self.p_left.next = 4.into();
                self.p_next.next = Tier::Load;
            }
            Tier::Load => {
                self.p_kind.next = 0.into();
                self.p_faddr.next = self.k_base.val();
                self.p_left.next = self.k_tier_bytes.val();
                self.p_saddr.next = 0.into();
                self.p_next.next = Tier::Ready;
            }
            Tier::JhErase => {
                self.p_kind.next = 2.into();
                self.p_faddr.next = self.k_jhdr.val();
                self.p_next.next = Tier::JdErase;
            }
            Tier::JdErase => {
                self.p_kind.next = 2.into();
                self.p_faddr.next = self.k_jdata.val();
                self.p_next.next = Tier::JdProg;
            }
            Tier::JdProg => {
                self.p_faddr.next = self.k_jdata.val();
                self.p_next.next = Tier::JhProg;
            }
            Tier::JhProg => {
                // The header, "not done", before the home sector is touched.
                self.p_reg.next = true;
                self.p_faddr.next = self.k_jhdr.val();
                self.p_left.next = 4.into();
                self.p_word.next = self.hdr.val();
                self.p_next.next = Tier::SErase;
            }
            Tier::SErase => {
                self.p_kind.next = 2.into();
                self.p_next.next = Tier::SProg;
            }
            Tier::SProg => {
                self.p_next.next = Tier::JhDone;
            }
            Tier::JhDone => {
                // ... and "done" after.
                self.p_reg.next = true;
                self.p_faddr.next = self.k_jhdr.val();
                self.p_left.next = 4.into();
                self.p_next.next = Tier::Pick;
            }
            Tier::BootCheck => {
                self.p_op.next = false;
                // The header's bytes arrived in word bits 63:32.
                self.cur.d.next = self.word.q.val().get_bits::<4>(40);
                self.state.d.next = Tier::Load;
                if (self.word.q.val().get_bits::<8>(32) == 0xA5)
                    & (self.word.q.val().get_bits::<8>(40) == !self.word.q.val().get_bits::<8>(48))
                    & (self.word.q.val().get_bits::<8>(56) == 0xFF)
                    & (self.word.q.val().get_bits::<5>(40) < self.k_sectors.val())
                    & (self.word.q.val().get_bits::<4>(44) == 0)
                {
                    self.state.d.next = Tier::RedoRead;
                }
            }
            Tier::Ready => {
                self.p_op.next = false;
                if self.held.val() {
                    self.scan.d.next = 1.into();
                    self.state.d.next = Tier::Pick;
                }
            }
            Tier::Pick => {
                self.p_op.next = false;
                // Sectors 1.. first, the superblock sector (0) last.
                if self.scan.q.val() > self.k_sectors.val() {
                    self.state.d.next = Tier::Release;
                } else if self.scan_dirty.val().get_bit(0) {
                    self.cur.d.next = self.scan_sector.val();
                    self.state.d.next = Tier::JhErase;
                } else {
                    self.scan.d.next = self.scan.q.val() + 1;
                }
            }
            Tier::Release => {
                self.p_op.next = false;
                self.barrier.d.next = false;
                self.state.d.next = Tier::Ready;
            }
            Tier::Failed => {
                self.p_op.next = false;
            }
            _ => {
                self.p_op.next = false;
                self.state.d.next = Tier::BootWait;
            }
        }
        if !self.k_persist.val() {
            // No flash: serve from reset on.
            self.p_op.next = false;
            self.state.d.next = Tier::Ready;
            self.dirty.d.next = 0.into();
        }
        if self.p_op.val() {
            if !self.issued.q.val() {
                self.kind.d.next = self.p_kind.val();
                self.to_reg.d.next = self.p_reg.val();
                self.faddr.d.next = self.p_faddr.val();
                self.left.d.next = self.p_left.val();
                self.saddr.d.next = self.p_saddr.val();
                self.word.d.next = bit_cast::<64, 32>(self.p_word.val());
                self.go.d.next = true;
                self.issued.d.next = true;
            } else if self.op_done.q.val() {
                self.issued.d.next = false;
                self.state.d.next = self.p_next.val();
                if self.state.q.val() == Tier::JhDone {
                    self.dirty.d.next =
                        self.dirty.q.val() & !(bit_cast::<16, 1>(true.into()) << self.cur.q.val());
                    self.scan.d.next = self.scan.q.val() + 1;
                }
            }
        }
        if self.op.q.val() == Op::Fail {
            self.state.d.next = Tier::Failed;
        }

        if self.reset.val() {
            self.state.d.next = Tier::BootWait;
            self.op.d.next = Op::Idle;
            self.issued.d.next = false;
            self.go.d.next = false;
            self.op_done.d.next = false;
            self.cs.d.next = false;
            self.dirty.d.next = 0.into();
            self.barrier.d.next = false;
            self.outst.d.next = 0.into();
        }
    }
}
