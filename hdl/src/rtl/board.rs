//! The board top-level for boards without PCIe: the controller with its CSR
//! port and host memory reachable over a UART, and block RAM for the host
//! window and both NV tiers.
//!
//! - UART (8N1, `divider` clocks per bit) → [`UartBridge`] → the
//!   controller's AXI4-Lite CSR port, and → the host-memory window.
//! - Host memory: 16 KiB of block RAM shared by the controller's DMA port
//!   and the bridge ([`PmpBram`], bridge first). The controller sees it at
//!   every host address modulo 16 KiB; the driver uses IOVA 0.
//! - Warm tier: 16 KiB of block RAM, laid out with [`BOARD_GEOMETRY`]
//!   (4 KiB regions, 4 KiB log).
//! - Cold tier: the same geometry on the board's SPI flash
//!   ([`ColdTier::Flash`], a [`FlashTier`]: block-RAM shadow, journaled
//!   sector updates, durable at each commit), or block RAM only on boards
//!   whose fabric cannot reach a flash ([`ColdTier::Bram`]).
//! - LEDs (`contract::board::led`): 0 heartbeat, 1 warm tier's active
//!   region, 2 cold tier's active region, 3 error (`IRQ_STATUS.ERROR`, or
//!   the flash stopped).
//! - `irq`: the controller's interrupt pulse (one cycle per message), for
//!   a wrapper that has an interrupt line; the UART boards leave it open.
//! - Reset: a power-on reset of 16 cycles, then `reset` (active high,
//!   synchronized here; the board wrapper inverts active-low buttons).

use super::bram::PmpBram;
use super::bridge::UartBridge;
use super::bus::{AxiLiteInitiator, PmpInitiator};
use super::controller::HitlessController;
use super::flash::FlashTier;
use super::lite::LiteController;
use super::spram::PmpSpram;
use super::uart::{UartRx, UartTx};
use crate::contract::{board, NvGeometry};
use rust_hdl::prelude::*;

/// NV geometry of the board build: the board contract's
/// (`contract::board::GEOMETRY`: 4 KiB regions, 4 KiB log, 16 KiB a tier).
pub const BOARD_GEOMETRY: NvGeometry = board::GEOMETRY;

/// log2 of the 64-bit words of each board memory: the contract's host
/// window (16 KiB); a tier takes the same.
pub const BOARD_MEM_WORDS_LOG2: usize = (board::HOST_WINDOW_BYTES / 8).trailing_zeros() as usize;
const _: () = assert!(
    board::HOST_WINDOW_BYTES.is_power_of_two()
        && BOARD_GEOMETRY.total() <= 8 << BOARD_MEM_WORDS_LOG2
);
// The `leds` wiring below is the contract's LED map.
const _: () = assert!(
    board::led::HEARTBEAT == 1
        && board::led::WARM_ACTIVE == 2
        && board::led::COLD_ACTIVE == 4
        && board::led::ERROR == 8
);

/// Status polls one flash erase or page program may take before the cold
/// tier gives up: about 1.6 s at 100 MHz with SCK at a quarter of the clock
/// (sector erase is 400 ms at most on common 3.3 V NOR parts).
pub const BOARD_FLASH_POLLS: u32 = 1 << 21;

/// Where the board keeps its cold tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColdTier {
    /// Block RAM: lost at power-off.
    Bram,
    /// SPI NOR flash from byte address `base` (the tier and two journal
    /// sectors: 24 KiB), SCK half period `half` clocks.
    Flash {
        /// Flash byte address of the tier (sector aligned, after the bitstream).
        base: u32,
        /// SCK half period in clocks (SCK = clock / (2 × half)).
        half: u16,
    },
}

/// Bytes of the host-memory window (`contract::board::HOST_WINDOW_BYTES`).
pub const BOARD_HOST_BYTES: usize = board::HOST_WINDOW_BYTES as usize;

/// The board top-level.
#[derive(LogicBlock)]
pub struct BoardTop {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Reset request, active high (asynchronous; synchronized here).
    pub reset: Signal<In, Bit>,
    /// UART line from the host (FTDI TX).
    pub uart_rx: Signal<In, Bit>,
    /// UART line to the host (FTDI RX).
    pub uart_tx: Signal<Out, Bit>,
    /// LEDs: 0 heartbeat, 1 warm active region, 2 cold active region, 3 error.
    pub leds: Signal<Out, Bits<4>>,
    /// Flash serial clock (the cold tier; idle low without flash).
    pub flash_sck: Signal<Out, Bit>,
    /// Flash chip select, active low.
    pub flash_cs_n: Signal<Out, Bit>,
    /// Flash data in (MOSI, IO0).
    pub flash_mosi: Signal<Out, Bit>,
    /// Flash data out (MISO, IO1).
    pub flash_miso: Signal<In, Bit>,
    /// The controller's interrupt: a one-cycle pulse per message (the UART
    /// boards leave it unconnected; the board simulator counts it).
    pub irq: Signal<Out, Bit>,
    ctrl: HitlessController,
    receiver: UartRx,
    transmitter: UartTx,
    bridge: UartBridge,
    host_mem: PmpBram<BOARD_MEM_WORDS_LOG2>,
    warm_mem: PmpBram<BOARD_MEM_WORDS_LOG2>,
    cold_mem: FlashTier<BOARD_MEM_WORDS_LOG2>,
    rst_meta: DFF<Bit>,
    rst_sync: DFF<Bit>,
    por: DFF<Bits<4>>,
    rst: DFF<Bit>,
    beat: DFF<Bits<27>>,
}

impl BoardTop {
    /// A board top for a UART of `divider` clocks per bit (clock / baud),
    /// its cold tier in `cold`.
    pub fn new(divider: u16, cold: ColdTier) -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            uart_rx: Default::default(),
            uart_tx: Default::default(),
            leds: Default::default(),
            flash_sck: Default::default(),
            flash_cs_n: Default::default(),
            flash_mosi: Default::default(),
            flash_miso: Default::default(),
            irq: Default::default(),
            ctrl: HitlessController::new(&BOARD_GEOMETRY),
            receiver: UartRx::new(divider),
            transmitter: UartTx::new(divider),
            bridge: UartBridge::new(divider),
            host_mem: Default::default(),
            warm_mem: Default::default(),
            cold_mem: match cold {
                ColdTier::Bram => FlashTier::volatile(),
                ColdTier::Flash { base, half } => FlashTier::new(base, half, BOARD_FLASH_POLLS),
            },
            rst_meta: Default::default(),
            rst_sync: Default::default(),
            por: Default::default(),
            rst: Default::default(),
            beat: Default::default(),
        }
    }
}

impl Logic for BoardTop {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, rst_meta, rst_sync, por, rst, beat);
        clock!(
            self,
            clock,
            ctrl,
            receiver,
            transmitter,
            bridge,
            host_mem,
            warm_mem,
            cold_mem
        );
        self.rst_meta.d.next = self.reset.val();
        self.rst_sync.d.next = self.rst_meta.q.val();
        if self.por.q.val() != 15 {
            self.por.d.next = self.por.q.val() + 1;
        }
        self.rst.d.next = (self.por.q.val() != 15) | self.rst_sync.q.val();
        self.beat.d.next = self.beat.q.val() + 1;
        self.ctrl.reset.next = self.rst.q.val();
        self.receiver.reset.next = self.rst.q.val();
        self.transmitter.reset.next = self.rst.q.val();
        self.bridge.reset.next = self.rst.q.val();
        self.cold_mem.reset.next = self.rst.q.val();
        self.flash_sck.next = self.cold_mem.sck.val();
        self.flash_cs_n.next = self.cold_mem.cs_n.val();
        self.flash_mosi.next = self.cold_mem.mosi.val();
        self.cold_mem.miso.next = self.flash_miso.val();

        self.receiver.rx.next = self.uart_rx.val();
        self.uart_tx.next = self.transmitter.tx.val();
        self.bridge.rx_data.next = self.receiver.data.val();
        self.bridge.rx_valid.next = self.receiver.valid.val();
        self.transmitter.data.next = self.bridge.tx_data.val();
        self.transmitter.start.next = self.bridge.tx_start.val();
        self.bridge.tx_busy.next = self.transmitter.busy.val();

        AxiLiteInitiator::join(&mut self.bridge.csr, &mut self.ctrl.csr);
        PmpInitiator::<64>::join(&mut self.ctrl.host, &mut self.host_mem.a);
        PmpInitiator::<32>::join(&mut self.bridge.mem, &mut self.host_mem.b);
        PmpInitiator::<32>::join(&mut self.ctrl.warm, &mut self.warm_mem.b);
        PmpInitiator::<32>::join(&mut self.ctrl.cold, &mut self.cold_mem.up);
        // The warm tier's second port is unused.
        self.warm_mem.a.cmd_valid.next = false;
        self.warm_mem.a.cmd_write.next = false;
        self.warm_mem.a.cmd_addr.next = 0.into();
        self.warm_mem.a.cmd_wdata.next = 0.into();
        self.warm_mem.a.cmd_wstrb.next = 0.into();

        self.irq.next = self.ctrl.irq.val();
        self.leds.next = bit_cast::<4, 1>(self.beat.q.val().get_bit(26).into())
            | (bit_cast::<4, 2>(self.ctrl.active.val()) << 1)
            | (bit_cast::<4, 1>((self.ctrl.error.val() | self.cold_mem.error.val()).into()) << 3);
    }
}

/// log2 of the 64-bit words of the lite board's one memory: the 16 KiB
/// host window and the 16 KiB tier (SPRAM on the iCE40 UltraPlus).
pub const LITE_MEM_WORDS_LOG2: usize = 12;

/// The board top-level with the reduced controller ([`LiteController`]),
/// for FPGAs the full one does not fit (iCE40 UltraPlus): the same pins and
/// UART protocol as [`BoardTop`], the same 16 KiB host window and tier
/// geometry ([`BOARD_GEOMETRY`]); host window and tier share one
/// single-port memory ([`PmpSpram`]); no cold tier (the flash pins idle).
/// LEDs: 0 heartbeat, 1 the tier's active region, 2 off, 3 error.
#[derive(LogicBlock)]
pub struct LiteBoardTop {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Reset request, active high (asynchronous; synchronized here).
    pub reset: Signal<In, Bit>,
    /// UART line from the host (FTDI TX).
    pub uart_rx: Signal<In, Bit>,
    /// UART line to the host (FTDI RX).
    pub uart_tx: Signal<Out, Bit>,
    /// LEDs: 0 heartbeat, 1 active region, 2 off, 3 error.
    pub leds: Signal<Out, Bits<4>>,
    /// Flash serial clock (idle low: no cold tier).
    pub flash_sck: Signal<Out, Bit>,
    /// Flash chip select, active low (idle high).
    pub flash_cs_n: Signal<Out, Bit>,
    /// Flash data in (idle low).
    pub flash_mosi: Signal<Out, Bit>,
    /// Flash data out (unused).
    pub flash_miso: Signal<In, Bit>,
    /// The controller's interrupt: a one-cycle pulse per message (left
    /// unconnected on the iCEBreaker; the board simulator counts it).
    pub irq: Signal<Out, Bit>,
    ctrl: LiteController,
    receiver: UartRx,
    transmitter: UartTx,
    bridge: UartBridge,
    mem: PmpSpram<LITE_MEM_WORDS_LOG2>,
    rst_meta: DFF<Bit>,
    rst_sync: DFF<Bit>,
    por: DFF<Bits<4>>,
    rst: DFF<Bit>,
    beat: DFF<Bits<27>>,
}

impl LiteBoardTop {
    /// A lite board top for a UART of `divider` clocks per bit.
    pub fn new(divider: u16) -> Self {
        Self {
            clock: Default::default(),
            reset: Default::default(),
            uart_rx: Default::default(),
            uart_tx: Default::default(),
            leds: Default::default(),
            flash_sck: Default::default(),
            flash_cs_n: Default::default(),
            flash_mosi: Default::default(),
            flash_miso: Default::default(),
            irq: Default::default(),
            ctrl: LiteController::new(&BOARD_GEOMETRY),
            receiver: UartRx::new(divider),
            transmitter: UartTx::new(divider),
            bridge: UartBridge::new(divider),
            mem: Default::default(),
            rst_meta: Default::default(),
            rst_sync: Default::default(),
            por: Default::default(),
            rst: Default::default(),
            beat: Default::default(),
        }
    }
}

impl Logic for LiteBoardTop {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, rst_meta, rst_sync, por, rst, beat);
        clock!(self, clock, ctrl, receiver, transmitter, bridge, mem);
        self.rst_meta.d.next = self.reset.val();
        self.rst_sync.d.next = self.rst_meta.q.val();
        if self.por.q.val() != 15 {
            self.por.d.next = self.por.q.val() + 1;
        }
        self.rst.d.next = (self.por.q.val() != 15) | self.rst_sync.q.val();
        self.beat.d.next = self.beat.q.val() + 1;
        self.ctrl.reset.next = self.rst.q.val();
        self.receiver.reset.next = self.rst.q.val();
        self.transmitter.reset.next = self.rst.q.val();
        self.bridge.reset.next = self.rst.q.val();
        self.flash_sck.next = false;
        self.flash_cs_n.next = true;
        self.flash_mosi.next = false;

        self.receiver.rx.next = self.uart_rx.val();
        self.uart_tx.next = self.transmitter.tx.val();
        self.bridge.rx_data.next = self.receiver.data.val();
        self.bridge.rx_valid.next = self.receiver.valid.val();
        self.transmitter.data.next = self.bridge.tx_data.val();
        self.transmitter.start.next = self.bridge.tx_start.val();
        self.bridge.tx_busy.next = self.transmitter.busy.val();

        AxiLiteInitiator::join(&mut self.bridge.csr, &mut self.ctrl.csr);
        PmpInitiator::<15>::join(&mut self.ctrl.mem, &mut self.mem.a);
        PmpInitiator::<32>::join(&mut self.bridge.mem, &mut self.mem.b);

        self.irq.next = self.ctrl.irq.val();
        self.leds.next = bit_cast::<4, 1>(self.beat.q.val().get_bit(26).into())
            | (bit_cast::<4, 2>(self.ctrl.active.val()) << 1)
            | (bit_cast::<4, 1>(self.ctrl.error.val().into()) << 3);
    }
}
