//! hitless-bench's heap lines (issue 20's bench targets), on the simulated
//! card (`InProcessCard`, the firmware's heap store through the driver's
//! client):
//!
//! - `heap_checkpoint_1pct_dirty_bytes_ratio`: a 256 MiB heap written
//!   whole once, then checkpointed with 1 % of its pages dirty (every
//!   100th page): bytes that crossed the DMA for that checkpoint (the
//!   dirty pages and the application state) ÷ heap size;
//! - `heap_checkpoint_1pct_dirty_cycles_ratio`: card cycles of the 1 %
//!   checkpoint (staging and commit: pages, leaves, root, index commit,
//!   mirror) ÷ card cycles of the checkpoint that wrote the whole heap;
//! - `migration_bytes_ratio_shared_base`: a 16 MiB heap moved to a second
//!   card, then 1 % of its pages changed and moved again naming the
//!   version both cards have: bytes sent to the destination (pages and
//!   state) ÷ bytes of the changed pages;
//! - `migration_bytes_ratio_no_base`: the same version copied to a third
//!   card holding no version (every written page) ÷ the changed pages'
//!   bytes, for contrast;
//! - `heap_fault_in_us_card`: median time of a first reference to a page
//!   not resident in a `Heap` over `CardStore` (one HEAP_READ of 4096
//!   bytes through the mailbox and the simulated controller).
//!
//! `HITLESS_BENCH_HEAP_MIB` changes the checkpoint heap's size (256 by
//! default; the simulated data area is 512 MiB per tier).

use hitless_driver::firmware::{heap_migrate, Client, OpenFlags, Session};
use hitless_driver::CardIo;
use hitless_heap::{CardStore, Heap, HeapConfig, Tracking};
use hitless_sim::inproc::InProcessCard;
use hitless_sim::service::Control;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const STATE: [u8; 256] = [0x5A; 256];

type R<T> = Result<T, String>;

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn cycle(card: &InProcessCard) -> R<u64> {
    card.control(Control::Status).map(|s| s.cycle).map_err(s)
}

fn dir(name: &str) -> R<PathBuf> {
    let d = std::env::temp_dir().join(format!("hitless-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).map_err(s)?;
    Ok(d)
}

/// A card in this process (its state in a fresh directory, removed after).
struct Card {
    card: Option<InProcessCard>,
    dir: PathBuf,
}

impl Card {
    fn start(name: &str) -> R<Self> {
        let dir = dir(name)?;
        Ok(Card {
            card: Some(InProcessCard::start(&dir)?),
            dir,
        })
    }
    fn get(&self) -> &InProcessCard {
        self.card.as_ref().expect("the card runs until dropped")
    }
    /// Application 1's session, with heap 0 of `pages` pages open.
    fn open(
        &self,
        pages: usize,
    ) -> R<(
        Client<hitless_driver::backend::vfio_user::VfioUserIo>,
        Session,
    )> {
        let io = self.get().connect()?;
        let mut fw = Client::open(io, Duration::from_secs(60)).map_err(s)?;
        let (sn, _) = fw.open_app(1, OpenFlags::all(), None).map_err(s)?;
        fw.heap_open(&sn, 0, pages as u32, 2, true).map_err(s)?;
        Ok((fw, sn))
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        drop(self.card.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn page(p: usize, v: u8) -> Vec<u8> {
    vec![(p as u8) ^ v; PAGE]
}

/// Stage `pages` of version `v`; the bytes sent.
fn stage<T: CardIo>(fw: &mut Client<T>, sn: &Session, pages: &[usize], v: u8) -> R<u64> {
    let mut sent = 0;
    for chunk in pages.chunks(256) {
        let data: Vec<(u32, Vec<u8>)> = chunk.iter().map(|p| (*p as u32, page(*p, v))).collect();
        let refs: Vec<(u32, &[u8])> = data.iter().map(|(p, d)| (*p, &d[..])).collect();
        sent += fw.heap_stage(sn, 0, &refs).map_err(s)?;
    }
    Ok(sent)
}

/// (bytes ratio, cycles ratio, MiB) of the 1 %-dirty checkpoint.
fn checkpoint() -> R<(f64, f64, u64)> {
    let mib: u64 = std::env::var("HITLESS_BENCH_HEAP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let pages = (mib << 20) as usize / PAGE;
    let card = Card::start("heap")?;
    let (mut fw, sn) = card.open(pages)?;
    // The whole heap, once.
    let c0 = cycle(card.get())?;
    stage(&mut fw, &sn, &(0..pages).collect::<Vec<_>>(), 1)?;
    fw.heap_commit(&sn, 0, &STATE).map_err(s)?;
    let full = cycle(card.get())? - c0;
    // 1 % dirty.
    let dirty: Vec<usize> = (0..pages).step_by(100).collect();
    let c0 = cycle(card.get())?;
    let sent = stage(&mut fw, &sn, &dirty, 2)?;
    fw.heap_commit(&sn, 0, &STATE).map_err(s)?;
    let small = cycle(card.get())? - c0;
    let heap_bytes = (pages * PAGE) as f64;
    Ok((
        (sent + STATE.len() as u64) as f64 / heap_bytes,
        small as f64 / full as f64,
        mib,
    ))
}

/// (shared base, no base) migration bytes ÷ changed-page bytes.
fn migration() -> R<(f64, f64)> {
    const PAGES: usize = 4096; // 16 MiB
    let (a, b, c) = (
        Card::start("mig-a")?,
        Card::start("mig-b")?,
        Card::start("mig-c")?,
    );
    let (mut fa, sa) = a.open(PAGES)?;
    let (mut fb, sb) = b.open(PAGES)?;
    let (mut fc, sc) = c.open(PAGES)?;
    stage(&mut fa, &sa, &(0..PAGES).collect::<Vec<_>>(), 1)?;
    fa.heap_commit(&sa, 0, &STATE).map_err(s)?;
    let base = heap_migrate(&mut fa, &sa, &mut fb, &sb, 0, None, false).map_err(s)?;
    // 1 % of the pages change on the source.
    let changed: Vec<usize> = (0..PAGES).step_by(100).collect();
    stage(&mut fa, &sa, &changed, 2)?;
    fa.heap_commit(&sa, 0, &STATE).map_err(s)?;
    let changed_bytes = (changed.len() * PAGE) as f64;
    let sent = |m: hitless_driver::firmware::Migrated| (m.pages * PAGE + STATE.len()) as f64;
    let since = Some((base.src_version, base.dst_version));
    let shared = heap_migrate(&mut fa, &sa, &mut fb, &sb, 0, since, false).map_err(s)?;
    let full = heap_migrate(&mut fa, &sa, &mut fc, &sc, 0, None, false).map_err(s)?;
    // Both destinations hold the source's bytes.
    let probe: Vec<u32> = changed.iter().take(8).map(|p| *p as u32).collect();
    let want = fa.heap_read(&sa, 0, &probe).map_err(s)?;
    if fb.heap_read(&sb, 0, &probe).map_err(s)? != want
        || fc.heap_read(&sc, 0, &probe).map_err(s)? != want
    {
        return Err("a destination's pages differ from the source's".into());
    }
    Ok((sent(shared) / changed_bytes, sent(full) / changed_bytes))
}

/// Median µs of a first reference to a non-resident page of a heap over
/// the card.
fn fault_in_card() -> R<f64> {
    const PAGES: usize = 1024;
    const RESIDENT: usize = 64;
    let card = Card::start("fault")?;
    let (mut fw, sn) = card.open(PAGES)?;
    stage(&mut fw, &sn, &(0..PAGES).collect::<Vec<_>>(), 1)?;
    fw.heap_commit(&sn, 0, &STATE).map_err(s)?;
    let store = CardStore::open(fw, sn, 0, PAGES as u64, 2, true).map_err(s)?;
    let heap = Heap::open(
        store,
        HeapConfig {
            resident_pages: RESIDENT,
            tracking: Tracking::Explicit,
            ..HeapConfig::default()
        },
    )
    .map_err(s)?;
    // Pages in order through a cache of 64: every read faults one in and
    // evicts a clean page (nothing to stage).
    let mut times = Vec::with_capacity(PAGES);
    let mut b = [0u8; 1];
    for p in 0..PAGES {
        let t = Instant::now();
        heap.read((p * PAGE) as u64, &mut b).map_err(s)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if b[0] != p as u8 ^ 1 {
            return Err(format!("page {p} read back {:#x}", b[0]));
        }
    }
    let faults = heap.stats().map_err(s)?.faults;
    if faults < PAGES as u64 {
        return Err(format!("{faults} faults for {PAGES} first references"));
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn line(name: &str, v: R<f64>, digits: usize) {
    match v {
        Ok(v) => println!("{name} = {v:.digits$}"),
        Err(e) => {
            eprintln!("heap bench: {name}: {e}");
            println!("{name} = NaN");
        }
    }
}

pub(super) fn lines() {
    match checkpoint() {
        Ok((bytes, cycles, mib)) => {
            println!("# heap: {mib} MiB heap on the simulated card, 1 % of its pages dirty");
            println!("heap_checkpoint_1pct_dirty_bytes_ratio = {bytes:.4}");
            println!("heap_checkpoint_1pct_dirty_cycles_ratio = {cycles:.4}");
        }
        Err(e) => {
            eprintln!("heap bench: {e}");
            println!("heap_checkpoint_1pct_dirty_bytes_ratio = NaN");
            println!("heap_checkpoint_1pct_dirty_cycles_ratio = NaN");
        }
    }
    println!("# heap migration: 16 MiB heap, 1 % of its pages changed since the shared version");
    let m = migration();
    line(
        "migration_bytes_ratio_shared_base",
        m.as_ref().map(|m| m.0).map_err(Clone::clone),
        3,
    );
    line("migration_bytes_ratio_no_base", m.map(|m| m.1), 1);
    line("heap_fault_in_us_card", fault_in_card(), 1);
}
