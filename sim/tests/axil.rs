//! The AXI4-Lite target under a randomized master: write address and data
//! presented in either order with random gaps, random `bready`/`rready`
//! backpressure, reads overlapping writes, partial-strobe writes (SLVERR,
//! no effect). A scoreboard of register values checks every read.

use hitless_hdl::contract::{self, reg};
use hitless_sim::{CardTiming, SimCard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Registers the test may write, with their implemented bit mask.
const RW: &[(u32, u32)] = &[
    (reg::SCRATCH, 0xFFFF_FFFF),
    (reg::DQ_BASE_LO, 0xFFFF_FFFF),
    (reg::DQ_BASE_HI, 0xFFFF_FFFF),
    (reg::CQ_BASE_LO, 0xFFFF_FFFF),
    (reg::IRQ_MASK, 0x7),
    (reg::PT_INDEX, 0xF),
];

struct Write {
    addr: u32,
    data: u32,
    strb: u8,
    aw_at: u64,
    w_at: u64,
    aw_done: bool,
    w_done: bool,
}

struct Read {
    addr: u32,
    ar_at: u64,
    ar_done: bool,
}

#[test]
fn randomized_axi_lite_master() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut card = SimCard::new(CardTiming::default());
    card.wait_boot(1_000_000).unwrap();
    let mut model: HashMap<u32, u32> = RW.iter().map(|&(a, _)| (a, 0)).collect();
    model.insert(reg::ID, contract::CONTROLLER_ID);
    model.insert(reg::VERSION, contract::CONTRACT_VERSION);
    let mut write: Option<Write> = None;
    let mut read: Option<Read> = None;
    let (mut writes, mut reads, mut errors) = (0, 0, 0);
    let mut cycle = 0u64;
    while writes < 300 || reads < 300 {
        cycle += 1;
        assert!(cycle < 200_000, "bus hung: {writes} writes, {reads} reads");
        let reading = read.as_ref().map(|r| r.addr);
        let (addr, _) = RW[rng.gen_range(0..RW.len())];
        if write.is_none() && writes < 300 && rng.gen_bool(0.3) && Some(addr) != reading {
            write = Some(Write {
                addr,
                data: rng.gen(),
                strb: if rng.gen_range(0..10) == 0 {
                    rng.gen_range(0..15)
                } else {
                    0xF
                },
                aw_at: cycle + rng.gen_range(0..4),
                w_at: cycle + rng.gen_range(0..4),
                aw_done: false,
                w_done: false,
            });
        }
        if read.is_none() && reads < 300 && rng.gen_bool(0.3) {
            // Never read a register with a write in flight: AXI orders
            // nothing between the read and write channels.
            let busy = write.as_ref().map(|w| w.addr);
            let addr = *model.keys().nth(rng.gen_range(0..model.len())).unwrap();
            if Some(addr) != busy {
                read = Some(Read {
                    addr,
                    ar_at: cycle + rng.gen_range(0..4),
                    ar_done: false,
                });
            }
        }
        let pins = card.pins();
        pins.awvalid = 0;
        pins.wvalid = 0;
        pins.arvalid = 0;
        if let Some(w) = &write {
            if !w.aw_done && cycle >= w.aw_at {
                pins.awvalid = 1;
                pins.awaddr = w.addr as u16;
            }
            if !w.w_done && cycle >= w.w_at {
                pins.wvalid = 1;
                pins.wdata = w.data;
                pins.wstrb = w.strb;
            }
        }
        if let Some(r) = &read {
            if !r.ar_done && cycle >= r.ar_at {
                pins.arvalid = 1;
                pins.araddr = r.addr as u16;
            }
        }
        pins.bready = rng.gen_bool(0.6) as u8;
        pins.rready = rng.gen_bool(0.6) as u8;
        let (awv, wv, arv, bready, rready) = (
            pins.awvalid,
            pins.wvalid,
            pins.arvalid,
            pins.bready,
            pins.rready,
        );
        let o = card.tick();
        if let Some(w) = write.as_mut() {
            w.aw_done |= awv != 0 && o.awready != 0;
            w.w_done |= wv != 0 && o.wready != 0;
            if o.bvalid != 0 && bready != 0 {
                assert!(
                    w.aw_done && w.w_done,
                    "response before the write was accepted"
                );
                if w.strb == 0xF {
                    assert_eq!(o.bresp, 0);
                    let mask = RW.iter().find(|r| r.0 == w.addr).unwrap().1;
                    model.insert(w.addr, w.data & mask);
                } else {
                    assert_eq!(o.bresp, 2, "partial write must answer SLVERR");
                    errors += 1;
                }
                writes += 1;
                write = None;
            }
        } else {
            assert!(o.bvalid == 0 || bready == 0, "write response with no write");
        }
        if let Some(r) = read.as_mut() {
            r.ar_done |= arv != 0 && o.arready != 0;
            if o.rvalid != 0 && rready != 0 {
                assert!(r.ar_done, "read data before the address was accepted");
                assert_eq!(o.rdata, model[&r.addr], "register {:#x}", r.addr);
                reads += 1;
                read = None;
            }
        } else {
            assert!(o.rvalid == 0 || rready == 0, "read data with no read");
        }
    }
    assert!(errors > 0, "the partial-write path was never exercised");
}
