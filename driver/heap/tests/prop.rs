//! Property test: random operation sequences against a plain `Vec<u8>` model
//! of the heap, a model of the kept versions, and a model of the page table,
//! for each tracking mode; a simulated crash must bring back the newest
//! committed version byte for byte.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use hitless_heap::{Heap, HeapConfig, HeapError, MemStore, PageState, StoreError, Tracking};
use proptest::prelude::*;

const PS: usize = 4096;
const PAGES: u64 = 10;
const LEN: usize = PS * PAGES as usize;
const RESIDENT: usize = 3;
const KEEP: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// `Heap::write`; may run past the end (then an error, nothing written).
    Write {
        off: usize,
        len: usize,
        seed: u8,
    },
    /// A direct write through `as_ptr` (after `mark_dirty` in Explicit mode).
    Direct {
        off: usize,
        len: usize,
        seed: u8,
    },
    Read {
        off: usize,
        len: usize,
    },
    MarkDirty {
        off: usize,
        len: usize,
    },
    Checkpoint {
        state: u8,
    },
    Preflush {
        n: usize,
    },
    Evict {
        page: u64,
    },
    /// Touch more pages than are resident.
    Pressure {
        first: u64,
    },
    Restart {
        pick: usize,
    },
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..LEN + 64, 1..3 * PS, any::<u8>()).prop_map(|(off, len, seed)| Op::Write { off, len, seed }),
        3 => (0..LEN - 1, 1..PS, any::<u8>()).prop_map(|(off, len, seed)| Op::Direct { off, len: len.min(LEN - off), seed }),
        3 => (0..LEN + 64, 1..3 * PS).prop_map(|(off, len)| Op::Read { off, len }),
        1 => (0..LEN - 1, 1..2 * PS).prop_map(|(off, len)| Op::MarkDirty { off, len: len.min(LEN - off) }),
        2 => any::<u8>().prop_map(|state| Op::Checkpoint { state }),
        1 => (0..4usize).prop_map(|n| Op::Preflush { n }),
        1 => (0..PAGES).prop_map(|page| Op::Evict { page }),
        1 => (0..PAGES).prop_map(|first| Op::Pressure { first }),
        1 => any::<usize>().prop_map(|pick| Op::Restart { pick }),
        1 => Just(Op::Crash),
    ]
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

struct Model {
    heap: Vec<u8>,
    /// (version, contents, state), oldest first, at most KEEP.
    versions: VecDeque<(u64, Vec<u8>, Vec<u8>)>,
}

fn cfg(mode: Tracking) -> HeapConfig {
    HeapConfig {
        resident_pages: RESIDENT,
        tracking: mode,
        lock_timeout: Duration::from_secs(5),
        fault_timeout: Duration::from_secs(20),
        stage_batch: 2,
    }
}

fn pages_of(off: usize, len: usize) -> std::ops::Range<usize> {
    off / PS..(off + len).div_ceil(PS)
}

fn check_table(heap: &Heap) -> Result<Vec<PageState>, TestCaseError> {
    let states = heap
        .page_states()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let resident = states
        .iter()
        .filter(|s| **s != PageState::NotResident)
        .count();
    prop_assert!(resident <= RESIDENT, "{} resident > {}", resident, RESIDENT);
    prop_assert!(
        !states.contains(&PageState::Flushing),
        "Flushing outside a flush"
    );
    Ok(states)
}

fn run(mode: Tracking, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let e = |e: HeapError| TestCaseError::fail(format!("{mode:?}: {e}"));
    let store = MemStore::new(PS, PAGES, KEEP).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut heap = Some(Heap::open(store.clone(), cfg(mode)).map_err(e)?);
    let mut m = Model {
        heap: vec![0; LEN],
        versions: VecDeque::new(),
    };
    for op in ops {
        let h = heap
            .as_ref()
            .ok_or_else(|| TestCaseError::fail("no heap"))?;
        match op {
            Op::Write { off, len, seed } => {
                let data = bytes(seed, len);
                let r = h.write(off as u64, &data);
                if off + len <= LEN {
                    r.map_err(e)?;
                    m.heap[off..off + len].copy_from_slice(&data);
                    // The last RESIDENT pages written are resident and dirty;
                    // earlier ones of a long write may have been evicted.
                    let st = check_table(h)?;
                    let pages = pages_of(off, len);
                    let keep_from = pages.end.saturating_sub(RESIDENT);
                    for p in pages {
                        if p >= keep_from {
                            prop_assert_eq!(st[p], PageState::Dirty, "page {} after write", p);
                        } else {
                            prop_assert!(matches!(
                                st[p],
                                PageState::Dirty | PageState::NotResident
                            ));
                        }
                    }
                } else {
                    prop_assert!(matches!(r, Err(HeapError::OutOfRange { .. })), "{:?}", r);
                }
            }
            Op::Direct { off, len, seed } => {
                let data = bytes(seed, len);
                if mode == Tracking::Explicit {
                    h.mark_dirty(off as u64..(off + len) as u64).map_err(e)?;
                }
                // SAFETY: the range lies inside the heap (off + len <= LEN),
                // which outlives the copy; in Explicit mode its pages (at
                // most 2 < RESIDENT) were just made resident and writable.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), h.as_ptr().add(off), len) };
                m.heap[off..off + len].copy_from_slice(&data);
                let st = check_table(h)?;
                for p in pages_of(off, len) {
                    prop_assert_eq!(st[p], PageState::Dirty, "page {} after direct write", p);
                }
            }
            Op::Read { off, len } => {
                let mut buf = vec![0; len];
                let r = h.read(off as u64, &mut buf);
                if off + len <= LEN {
                    r.map_err(e)?;
                    prop_assert!(
                        buf == m.heap[off..off + len],
                        "read {}+{} differs",
                        off,
                        len
                    );
                } else {
                    prop_assert!(r.is_err());
                }
            }
            Op::MarkDirty { off, len } => {
                h.mark_dirty(off as u64..(off + len) as u64).map_err(e)?;
                let st = check_table(h)?;
                for p in pages_of(off, len) {
                    prop_assert_eq!(st[p], PageState::Dirty);
                }
            }
            Op::Checkpoint { state } => {
                let v = h.checkpoint(&[state]).map_err(e)?;
                m.versions
                    .push_back((v.version, m.heap.clone(), vec![state]));
                while m.versions.len() > KEEP {
                    m.versions.pop_front();
                }
                let st = check_table(h)?;
                prop_assert!(!st.contains(&PageState::Dirty), "dirty after checkpoint");
                let kept: Vec<u64> = h.versions().map_err(e)?.iter().map(|v| v.version).collect();
                let want: Vec<u64> = m.versions.iter().map(|v| v.0).collect();
                prop_assert_eq!(kept, want);
            }
            Op::Preflush { n } => {
                let before = check_table(h)?
                    .iter()
                    .filter(|s| **s == PageState::Dirty)
                    .count();
                let done = h.preflush(n).map_err(e)?;
                prop_assert_eq!(done, before.min(n));
                let after = check_table(h)?
                    .iter()
                    .filter(|s| **s == PageState::Dirty)
                    .count();
                prop_assert_eq!(after, before - done);
            }
            Op::Evict { page } => {
                h.evict(page).map_err(e)?;
                prop_assert_eq!(check_table(h)?[page as usize], PageState::NotResident);
            }
            Op::Pressure { first } => {
                let mut b = [0u8; 1];
                for i in 0..=RESIDENT as u64 {
                    let p = (first + i) % PAGES;
                    h.read(p * PS as u64 + 7, &mut b).map_err(e)?;
                    prop_assert_eq!(b[0], m.heap[p as usize * PS + 7]);
                }
                check_table(h)?;
            }
            Op::Restart { pick } => {
                if m.versions.is_empty() {
                    let r = h.restart_from(1);
                    prop_assert!(matches!(
                        r,
                        Err(HeapError::Store(StoreError::NoSuchVersion(1)))
                    ));
                } else {
                    let (v, content, state) = m.versions[pick % m.versions.len()].clone();
                    let got = h.restart_from(v).map_err(e)?;
                    prop_assert_eq!(got, state);
                    m.heap = content;
                    let st = check_table(h)?;
                    prop_assert!(st.iter().all(|s| *s == PageState::NotResident));
                }
            }
            Op::Crash => {
                drop(heap.take());
                store.crash();
                heap = Some(Heap::open(store.clone(), cfg(mode)).map_err(e)?);
                m.heap = m
                    .versions
                    .back()
                    .map(|v| v.1.clone())
                    .unwrap_or_else(|| vec![0; LEN]);
            }
        }
    }
    // Contents equal the model; then a crash brings back the newest version.
    let h = heap.take().ok_or_else(|| TestCaseError::fail("no heap"))?;
    let mut all = vec![0; LEN];
    h.read(0, &mut all).map_err(e)?;
    prop_assert!(
        all == m.heap,
        "{:?}: final contents differ from the model",
        mode
    );
    drop(h);
    store.crash();
    let h = Heap::open(store, cfg(mode)).map_err(e)?;
    h.read(0, &mut all).map_err(e)?;
    let newest = m
        .versions
        .back()
        .map(|v| v.1.clone())
        .unwrap_or_else(|| vec![0; LEN]);
    prop_assert!(
        all == newest,
        "{:?}: after a crash the heap is not the newest version",
        mode
    );
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // HEAP_PROP_CASES=N runs more (the default keeps the suite quick).
        cases: std::env::var("HEAP_PROP_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(40),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn model_uffd_wp(ops in prop::collection::vec(op(), 1..40)) {
        if hitless_heap::uffd_wp_available() {
            run(Tracking::UffdWp, ops)?;
        }
    }

    #[test]
    fn model_uffd_wp_async(ops in prop::collection::vec(op(), 1..40)) {
        if hitless_heap::uffd_wp_async_available() {
            run(Tracking::UffdWpAsync, ops)?;
        }
    }

    #[test]
    fn model_mprotect(ops in prop::collection::vec(op(), 1..40)) {
        run(Tracking::Mprotect, ops)?;
    }

    #[test]
    fn model_explicit(ops in prop::collection::vec(op(), 1..40)) {
        run(Tracking::Explicit, ops)?;
    }
}
