//! The flash-backed cold tier under Verilator against a reference model,
//! with the behavioural SPI flash behind it: seeded random traffic on the
//! NV port (reads, byte-strobed writes, commit barriers) with power cuts at
//! random cycles, during flushes and during the boot-time journal replay;
//! a directed cut in every flash operation of a flush; a dead flash.
//!
//! The scoreboard: reads return the model's shadow; after a power cut the
//! tier's content is what the last acknowledged barrier made durable, or, if
//! a barrier was in flight, each sector is either its old or its new
//! content, and the new ones are a prefix of the flush order (data sectors
//! ascending, the superblock sector last).

use hitless_board_sim::flash::{FlashTierModel, In, Out, SpiFlash, SECTOR, TIER_BASE, TIER_BYTES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, VecDeque};

const SECTORS: usize = TIER_BYTES / SECTOR;
const FLASH_BYTES: usize = 1 << 20;
/// Cycles a boot may take: a journal replay (erase + 16 page programs +
/// copies) and the 16 KiB load at 16 clocks per byte, with margin.
const BOOT_CYCLES: u64 = 2_000_000;

/// A command on the NV port.
#[derive(Clone, Copy, Debug)]
struct Cmd {
    write: bool,
    addr: u32,
    data: u64,
    strb: u8,
}

impl Cmd {
    fn write(addr: u32, data: u64, strb: u8) -> Self {
        Self {
            write: true,
            addr,
            data,
            strb,
        }
    }

    /// The port input that issues this command.
    fn input(&self) -> In {
        In {
            valid: 1,
            write: u32::from(self.write),
            addr: self.addr,
            wdata: self.data,
            wstrb: u32::from(self.strb),
            ..In::default()
        }
    }
}

/// A data sector and the superblock sector written, then the commit
/// barrier (slot 0's last word): a two-sector flush.
fn two_sector_flush() -> [Cmd; 4] {
    [
        Cmd::write(2 * SECTOR as u32 + 64, 0x1122_3344_5566_7788, 0xFF),
        Cmd::write(2 * SECTOR as u32 + 4088, 0x99AA_BBCC_DDEE_FF00, 0x0F),
        Cmd::write(16, 0xC0DE, 0xFF),
        Cmd::write(56, 0xFEED_FACE, 0xFF),
    ]
}

/// A barrier in flight: the content it makes durable and the sectors it
/// flushes.
#[derive(Clone)]
struct Inflight {
    next: Vec<u8>,
    dirty: BTreeSet<usize>,
}

struct Bench {
    tier: FlashTierModel,
    out: Out,
    miso: bool,
    cycles: u64,
}

impl Bench {
    fn power_on() -> Self {
        let mut b = Self {
            tier: FlashTierModel::new(),
            out: Out::default(),
            miso: true,
            cycles: 0,
        };
        for _ in 0..4 {
            b.out = b.tier.cycle(&In {
                reset: 1,
                ..In::default()
            });
        }
        b
    }

    fn step(&mut self, flash: &mut SpiFlash, mut input: In) -> Out {
        input.miso = u32::from(self.miso);
        self.out = self.tier.cycle(&input);
        self.miso = flash.cycle(self.out.cs_n != 0, self.out.sck != 0, self.out.mosi != 0);
        self.cycles += 1;
        self.out
    }

    /// One cycle that issues the next of `cmds` (writes, in order) if the
    /// port is ready; `issued` counts them and `shadow` follows them.
    fn step_writes(
        &mut self,
        flash: &mut SpiFlash,
        cmds: &[Cmd],
        issued: &mut usize,
        shadow: &mut [u8],
    ) -> Out {
        let mut input = In::default();
        if let Some(c) = cmds.get(*issued) {
            if self.out.cmd_ready != 0 {
                apply(shadow, c);
                input = c.input();
                *issued += 1;
            }
        }
        self.step(flash, input)
    }

    /// Run until the tier serves, or `limit` cycles; with `cut_at`, stop
    /// early at that cycle and report false.
    fn boot(&mut self, flash: &mut SpiFlash, limit: u64, cut_at: Option<u64>) -> bool {
        for i in 0..limit {
            if cut_at == Some(i) {
                return false;
            }
            if self.step(flash, In::default()).ready != 0 {
                return true;
            }
            assert_eq!(self.out.error, 0, "the tier failed while booting");
        }
        panic!("the tier did not boot within {limit} cycles");
    }

    /// Read the whole tier through the port.
    fn read_all(&mut self, flash: &mut SpiFlash) -> Vec<u8> {
        let mut got = Vec::with_capacity(TIER_BYTES);
        let mut next = 0usize;
        let mut outstanding = 0usize;
        let mut idle = 0u64;
        while got.len() < TIER_BYTES {
            let mut input = In::default();
            if next < TIER_BYTES && self.out.cmd_ready != 0 && outstanding < 8 {
                input.valid = 1;
                input.addr = next as u32;
                next += 8;
                outstanding += 1;
            }
            let out = self.step(flash, input);
            if out.rsp_valid != 0 {
                assert_eq!(out.rsp_write, 0, "a read got a write acknowledgement");
                got.extend_from_slice(&out.rsp_data.to_le_bytes());
                outstanding -= 1;
                idle = 0;
            } else {
                idle += 1;
                assert!(idle < 1000, "a read was never answered");
            }
        }
        got
    }
}

fn sector(addr: u32) -> usize {
    addr as usize / SECTOR % SECTORS
}

fn is_barrier(addr: u32) -> bool {
    addr < 128 && (addr >> 3) & 7 == 7
}

fn apply(mem: &mut [u8], c: &Cmd) {
    let a = c.addr as usize;
    for (i, b) in c.data.to_le_bytes().iter().enumerate() {
        if c.strb >> i & 1 != 0 {
            mem[a + i] = *b;
        }
    }
}

/// After a power cut: is `seen` a content the tier may come back with?
fn check_recovered(seen: &[u8], durable: &[u8], inflight: Option<&Inflight>) -> Result<(), String> {
    let sec = |m: &[u8], s: usize| m[s * SECTOR..(s + 1) * SECTOR].to_vec();
    let Some(f) = inflight else {
        for s in 0..SECTORS {
            if sec(seen, s) != sec(durable, s) {
                return Err(format!("sector {s} is not the durable content"));
            }
        }
        return Ok(());
    };
    let mut order: Vec<usize> = (1..SECTORS)
        .chain([0])
        .filter(|s| f.dirty.contains(s))
        .collect();
    order.retain(|&s| sec(&f.next, s) != sec(durable, s));
    for s in 0..SECTORS {
        let (old, new) = (sec(durable, s), sec(&f.next, s));
        let got = sec(seen, s);
        if got != old && got != new {
            return Err(format!("sector {s} is neither its old nor its new content"));
        }
    }
    let new: Vec<bool> = order
        .iter()
        .map(|&s| sec(seen, s) == sec(&f.next, s))
        .collect();
    if new.windows(2).any(|w| !w[0] && w[1]) {
        return Err(format!(
            "new sectors are not a prefix of the flush order {order:?}: {new:?}"
        ));
    }
    Ok(())
}

/// Random traffic until `cut_at` cycles (then a power cut). Returns the
/// barrier in flight at the cut, if any; `durable` and `shadow` follow the
/// acknowledged barriers.
fn traffic(
    bench: &mut Bench,
    flash: &mut SpiFlash,
    rng: &mut ChaCha8Rng,
    shadow: &mut [u8],
    durable: &mut Vec<u8>,
    cut_at: u64,
) -> Option<Inflight> {
    let mut expect: VecDeque<(bool, u64)> = VecDeque::new();
    let mut dirty = BTreeSet::new();
    let mut inflight: Option<Inflight> = None;
    // Writes cluster in a few sectors, like a checkpoint into a region.
    let hot: Vec<usize> = (0..2).map(|_| rng.gen_range(0..SECTORS)).collect();
    let start = bench.cycles;
    while bench.cycles - start < cut_at {
        let mut input = In::default();
        if bench.out.cmd_ready != 0 && expect.len() < 6 && rng.gen_bool(0.6) {
            let roll = rng.gen_range(0..100);
            let c = if roll < 4 {
                Cmd {
                    write: true,
                    addr: if rng.gen_bool(0.5) { 56 } else { 120 },
                    data: rng.gen(),
                    strb: 0xFF,
                }
            } else {
                let s = if rng.gen_bool(0.8) {
                    hot[rng.gen_range(0..hot.len())]
                } else {
                    rng.gen_range(0..SECTORS)
                };
                let mut addr = (s * SECTOR + rng.gen_range(0..SECTOR / 8) * 8) as u32;
                if is_barrier(addr) {
                    addr -= 8;
                }
                Cmd {
                    write: roll < 70,
                    addr,
                    data: rng.gen(),
                    strb: if rng.gen_bool(0.7) { 0xFF } else { rng.gen() },
                }
            };
            input = c.input();
            if c.write {
                apply(shadow, &c);
                dirty.insert(sector(c.addr));
                expect.push_back((true, 0));
                if is_barrier(c.addr) {
                    inflight = Some(Inflight {
                        next: shadow.to_vec(),
                        dirty: std::mem::take(&mut dirty),
                    });
                }
            } else {
                let a = c.addr as usize;
                let want = u64::from_le_bytes(shadow[a..a + 8].try_into().unwrap());
                expect.push_back((false, want));
            }
        }
        let out = bench.step(flash, input);
        assert_eq!(out.error, 0, "the tier failed");
        if out.rsp_valid != 0 {
            let (write, want) = expect.pop_front().expect("a response nobody asked for");
            assert_eq!(out.rsp_write != 0, write, "response kind");
            if !write {
                assert_eq!(out.rsp_data, want, "read data at cycle {}", bench.cycles);
            }
            if write && expect.is_empty() {
                if let Some(f) = inflight.take() {
                    // The barrier's acknowledgement: durable now.
                    *durable = f.next;
                }
            }
        }
    }
    inflight
}

fn run_seed(seed: u64, rounds: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut flash = SpiFlash::new(FLASH_BYTES);
    let mut durable = vec![0xFFu8; TIER_BYTES];
    let mut inflight: Option<Inflight> = None;
    let mut barriers_cut = 0;
    for round in 0..rounds {
        // Sometimes the power fails again while booting (journal replay).
        if rng.gen_bool(0.25) {
            let mut b = Bench::power_on();
            let cut = rng.gen_range(0..400_000);
            if !b.boot(&mut flash, BOOT_CYCLES, Some(cut)) {
                flash.power_cut(&mut rng);
            }
        }
        let mut bench = Bench::power_on();
        bench.boot(&mut flash, BOOT_CYCLES, None);
        let seen = bench.read_all(&mut flash);
        if let Err(e) = check_recovered(&seen, &durable, inflight.as_ref()) {
            panic!("seed {seed} round {round}: {e}");
        }
        durable = seen.clone();
        let mut shadow = seen;
        let cut = rng.gen_range(1_000..1_500_000);
        inflight = traffic(
            &mut bench,
            &mut flash,
            &mut rng,
            &mut shadow,
            &mut durable,
            cut,
        );
        barriers_cut += usize::from(inflight.is_some());
        drop(bench);
        flash.power_cut(&mut rng);
    }
    // A test that never cuts a flush would not test the journal.
    assert!(
        barriers_cut > 0,
        "seed {seed}: no power cut landed in a flush"
    );
}

#[test]
fn random_traffic_with_power_cuts_seed_1() {
    run_seed(1, 10);
}

#[test]
fn random_traffic_with_power_cuts_seed_2() {
    run_seed(2, 10);
}

/// Write two sectors (a data sector and the superblock sector), commit, and
/// cut the power in the middle of each flash operation of the flush in turn.
#[test]
fn a_cut_in_every_flash_operation_of_a_flush_recovers() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // First learn how many operations the flush takes.
    let mut ops = None;
    let mut k = 0u64;
    loop {
        let mut flash = SpiFlash::new(FLASH_BYTES);
        let mut bench = Bench::power_on();
        bench.boot(&mut flash, BOOT_CYCLES, None);
        let mut shadow = vec![0xFFu8; TIER_BYTES];
        let cmds = two_sector_flush();
        let before = flash.started;
        let mut issued = 0;
        let mut acked = 0;
        let mut cut = false;
        let mut cycles = 0u64;
        while acked < cmds.len() {
            let out = bench.step_writes(&mut flash, &cmds, &mut issued, &mut shadow);
            acked += usize::from(out.rsp_valid != 0);
            if ops.is_some() && flash.started - before == k + 1 && flash.busy() {
                cut = true;
                break;
            }
            cycles += 1;
            assert!(cycles < 5_000_000, "the flush did not finish");
        }
        let total = flash.started - before;
        let Some(n) = ops else {
            // Erase journal header, erase journal data, 16 pages, header,
            // erase home, 16 pages, done: 37 per dirty sector.
            let log: Vec<String> = flash.log[flash.log.len() - total as usize..]
                .iter()
                .map(|(c, a, n)| format!("{c:02x}@{a:x}+{n}"))
                .collect();
            assert_eq!(total, 74, "flash operations of a two-sector flush: {log:?}");
            assert_eq!(
                flash.erases.values().sum::<u32>(),
                6,
                "three erases per flushed sector"
            );
            ops = Some(total);
            continue;
        };
        assert!(cut, "operation {k} of {n} was not reached");
        drop(bench);
        flash.power_cut(&mut rng);
        let mut bench = Bench::power_on();
        bench.boot(&mut flash, BOOT_CYCLES, None);
        let seen = bench.read_all(&mut flash);
        let f = Inflight {
            next: shadow,
            dirty: [0, 2].into_iter().collect(),
        };
        let durable = vec![0xFFu8; TIER_BYTES];
        if let Err(e) = check_recovered(&seen, &durable, Some(&f)) {
            panic!("cut in flash operation {k} of {n}: {e}");
        }
        // A cut after the data sector's journal header is programmed must
        // end with the data sector new (the replay finishes it).
        if k >= 19 {
            assert_eq!(
                seen[2 * SECTOR + 64],
                0x88,
                "cut in operation {k}: sector 2 not replayed"
            );
        }
        k += 1;
        if k == n {
            break;
        }
    }
}

/// A flash that never finishes an erase: the tier reports the error, never
/// acknowledges the commit and accepts nothing more.
#[test]
fn a_dead_flash_stops_the_tier_without_acknowledging_the_commit() {
    let mut flash = SpiFlash::new(FLASH_BYTES);
    let mut bench = Bench::power_on();
    bench.boot(&mut flash, BOOT_CYCLES, None);
    flash.stuck = true;
    let cmds = [Cmd::write(8192, 5, 0xFF), Cmd::write(56, 5, 0xFF)];
    let mut shadow = vec![0xFFu8; TIER_BYTES];
    let mut acks = 0;
    let mut sent = 0;
    for _ in 0..2_000_000u64 {
        let out = bench.step_writes(&mut flash, &cmds, &mut sent, &mut shadow);
        acks += u32::from(out.rsp_valid != 0);
        if out.error != 0 {
            break;
        }
    }
    assert_ne!(bench.out.error, 0, "no error after the poll budget");
    assert_eq!(
        acks, 1,
        "the data write is acknowledged, the commit barrier is not"
    );
    for _ in 0..1000 {
        let out = bench.step(&mut flash, In::default());
        assert_eq!(out.cmd_ready, 0, "a stopped tier accepts commands");
        assert_eq!(out.rsp_valid, 0, "a stopped tier acknowledges");
    }
}

/// The tier sits where it was built: nothing outside its sectors and
/// journal is touched.
#[test]
fn flushes_touch_only_the_tier_and_its_journal() {
    let mut flash = SpiFlash::new(FLASH_BYTES);
    flash.mem_mut()[TIER_BASE - 1] = 0x5A;
    flash.mem_mut()[TIER_BASE + TIER_BYTES + 2 * SECTOR] = 0xA5;
    let mut bench = Bench::power_on();
    bench.boot(&mut flash, BOOT_CYCLES, None);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut shadow = vec![0xFF; TIER_BYTES];
    let mut durable = shadow.clone();
    let inflight = traffic(
        &mut bench,
        &mut flash,
        &mut rng,
        &mut shadow,
        &mut durable,
        1_000_000,
    );
    // Let a flush in progress finish.
    for _ in 0..3_000_000 {
        bench.step(&mut flash, In::default());
        if bench.out.cmd_ready != 0 {
            break;
        }
    }
    assert_ne!(bench.out.cmd_ready, 0, "the last flush did not finish");
    let durable = inflight.map_or(durable, |f| f.next);
    assert!(flash
        .erases
        .keys()
        .all(|&a| (TIER_BASE..TIER_BASE + TIER_BYTES + 2 * SECTOR).contains(&a)));
    assert_eq!(flash.mem()[TIER_BASE - 1], 0x5A);
    assert_eq!(flash.mem()[TIER_BASE + TIER_BYTES + 2 * SECTOR], 0xA5);
    assert!(!flash.erases.is_empty(), "the traffic committed nothing");
    assert_eq!(
        &flash.mem()[TIER_BASE..TIER_BASE + TIER_BYTES],
        &durable[..],
        "flash holds the durable content"
    );
}

/// The reset pin (not a power cut) in the middle of a flush: the flash
/// finishes what it was doing, the tier waits for it, replays the journal
/// if the home sector was being rewritten, and comes back with the old or
/// the new content in the flush order.
#[test]
fn a_reset_during_a_flush_waits_for_the_flash_and_recovers() {
    for k in [1u64, 10, 18, 19, 22, 36, 40, 60] {
        let mut flash = SpiFlash::new(FLASH_BYTES);
        let mut bench = Bench::power_on();
        bench.boot(&mut flash, BOOT_CYCLES, None);
        let mut shadow = vec![0xFFu8; TIER_BYTES];
        // A data sector, then slot 1's last word (the barrier).
        let cmds = [
            Cmd::write(SECTOR as u32 + 8, 0xABCD, 0xFF),
            Cmd::write(120, 0x1234, 0xFF),
        ];
        let before = flash.started;
        let mut issued = 0;
        for _ in 0..5_000_000u64 {
            bench.step_writes(&mut flash, &cmds, &mut issued, &mut shadow);
            if flash.started - before >= k {
                break;
            }
        }
        assert_eq!(flash.started - before, k, "operation {k} not reached");
        for _ in 0..4 {
            bench.step(
                &mut flash,
                In {
                    reset: 1,
                    ..In::default()
                },
            );
        }
        bench.boot(&mut flash, BOOT_CYCLES, None);
        let seen = bench.read_all(&mut flash);
        let f = Inflight {
            next: shadow,
            dirty: [0, 1].into_iter().collect(),
        };
        if let Err(e) = check_recovered(&seen, &vec![0xFF; TIER_BYTES], Some(&f)) {
            panic!("reset during flash operation {k}: {e}");
        }
        if k > 19 {
            assert_eq!(
                seen[SECTOR + 8],
                0xCD,
                "reset in operation {k}: sector 1 not finished"
            );
        }
    }
}
