//! Directed tests of the heap: page states, eviction, checkpoints, versions,
//! a heap 10x its resident cache, crash recovery. (The tests that start
//! processes are in `processes.rs`.)

mod common;

use common::{
    cfg, check_pattern, fill_and_verify, modes, pattern, tmpdir, tracked, TestResult, PS,
};
use hitless_heap::{DirStore, FailOp, Heap, HeapError, MemStore, PageState, StoreError, Tracking};

#[test]
fn write_dirties_checkpoint_cleans() -> TestResult {
    for mode in modes() {
        let store = MemStore::new(PS, 8, 4)?;
        let heap = Heap::open(store.clone(), cfg(mode, 4))?;
        assert_eq!(heap.page_state(0)?, PageState::NotResident, "{mode:?}");
        heap.fault_in(0..1)?;
        assert_eq!(heap.page_state(0)?, PageState::Clean, "{mode:?}");
        heap.write(10, b"hello")?;
        assert_eq!(heap.page_state(0)?, PageState::Dirty, "{mode:?}");
        let v = heap.checkpoint(b"state-1")?;
        assert_eq!(v.pages, 1);
        assert_eq!(v.state_len, 7);
        assert_eq!(heap.page_state(0)?, PageState::Clean, "{mode:?}");
        assert_eq!(
            &store.committed_page(v.version, 0).ok_or("no v")?[10..15],
            b"hello"
        );
        // Clean again: a second checkpoint writes no page.
        let v2 = heap.checkpoint(b"")?;
        assert_eq!(v2.pages, 0, "{mode:?}");
        // mark_dirty makes a clean page dirty without writing.
        heap.mark_dirty(PS as u64..PS as u64 + 1)?;
        assert_eq!(heap.page_state(1)?, PageState::Dirty, "{mode:?}");
        assert_eq!(heap.checkpoint(b"")?.pages, 1, "{mode:?}");
    }
    Ok(())
}

#[test]
fn direct_access_is_tracked() -> TestResult {
    for mode in modes().into_iter().filter(|m| tracked(*m)) {
        let store = MemStore::new(PS, 8, 4)?;
        let heap = Heap::open(store.clone(), cfg(mode, 4))?;
        let p = heap.as_ptr();
        // SAFETY: inside the heap, which outlives these accesses.
        let first = unsafe { p.add(3 * PS + 5).read_volatile() };
        assert_eq!(first, 0);
        assert_eq!(
            heap.page_state(3)?,
            PageState::Clean,
            "{mode:?}: a read faults in clean"
        );
        // SAFETY: as above.
        unsafe { p.add(3 * PS + 5).write_volatile(0xab) };
        assert_eq!(
            heap.page_state(3)?,
            PageState::Dirty,
            "{mode:?}: a write dirties"
        );
        // A write to a page never referenced: faulted in and dirty.
        // SAFETY: as above.
        unsafe { p.add(6 * PS).write_volatile(0xcd) };
        assert_eq!(heap.page_state(6)?, PageState::Dirty, "{mode:?}");
        let v = heap.checkpoint(b"")?;
        assert_eq!(v.pages, 2);
        assert_eq!(store.committed_page(v.version, 3).ok_or("v")?[5], 0xab);
        assert_eq!(store.committed_page(v.version, 6).ok_or("v")?[0], 0xcd);
        assert_eq!(heap.page_state(3)?, PageState::Clean);
        // Write after the checkpoint: dirty again.
        // SAFETY: as above.
        unsafe { p.add(3 * PS + 6).write_volatile(1) };
        assert_eq!(heap.page_state(3)?, PageState::Dirty, "{mode:?}");
        let s = heap.stats()?;
        assert_eq!(s.faults, 2);
        assert!(s.dirtied >= 3);
    }
    Ok(())
}

#[test]
fn evicting_a_dirty_page_stages_it_first() -> TestResult {
    for mode in modes() {
        let store = MemStore::new(PS, 8, 4)?;
        let heap = Heap::open(store.clone(), cfg(mode, 2))?;
        heap.write(0, &[1; 16])?;
        heap.write(PS as u64, &[2; 16])?;
        assert_eq!(heap.resident_count()?, 2);
        assert!(store.staged_pages().is_empty());
        // A third page: page 0 is the LRU victim, dirty, so staged first.
        heap.write(2 * PS as u64, &[3; 16])?;
        assert_eq!(heap.page_state(0)?, PageState::NotResident, "{mode:?}");
        assert_eq!(store.staged_pages(), vec![0], "{mode:?}");
        assert_eq!(heap.resident_count()?, 2);
        let s = heap.stats()?;
        assert_eq!((s.evictions, s.dirty_evictions, s.pages_staged), (1, 1, 1));
        // Faulted back in from the staged copy, clean; page 1, now the
        // LRU and dirty, is staged and evicted to make room.
        let mut b = [0u8; 16];
        heap.read(0, &mut b)?;
        assert_eq!(b, [1; 16]);
        assert_eq!(heap.page_state(0)?, PageState::Clean, "{mode:?}");
        assert_eq!(heap.page_state(1)?, PageState::NotResident, "{mode:?}");
        assert_eq!(store.staged_pages(), vec![0, 1], "{mode:?}");
        // Evicting a clean page stages nothing.
        heap.evict(0)?;
        assert_eq!(heap.stats()?.pages_staged, 2);
        // The checkpoint commits the staged page and the resident dirty ones.
        let v = heap.checkpoint(b"")?;
        assert_eq!(v.pages, 3, "{mode:?}"); // 0, 1 staged; 2 dirty
        assert!(store.staged_pages().is_empty());
    }
    Ok(())
}

#[test]
fn failed_staging_leaves_pages_dirty() -> TestResult {
    for mode in modes() {
        let store = MemStore::new(PS, 8, 4)?;
        let heap = Heap::open(store.clone(), cfg(mode, 4))?;
        heap.write(0, b"x")?;
        store.fail_next(FailOp::Stage, 1);
        assert!(matches!(
            heap.checkpoint(b""),
            Err(HeapError::Store(StoreError::Injected(_)))
        ));
        assert_eq!(heap.page_state(0)?, PageState::Dirty, "{mode:?}");
        assert!(heap.versions()?.is_empty());
        // Still writable (Dirty pages are never write-protected).
        heap.write(1, b"y")?;
        if tracked(mode) {
            // SAFETY: inside the heap.
            unsafe { heap.as_ptr().add(2).write_volatile(b'z') };
        } else {
            heap.write(2, b"z")?;
        }
        store.fail_next(FailOp::Commit, 1);
        assert!(heap.checkpoint(b"").is_err());
        // Staged but not committed: clean, readable, in no version.
        assert_eq!(heap.page_state(0)?, PageState::Clean);
        assert_eq!(store.staged_pages(), vec![0]);
        let v = heap.checkpoint(b"ok")?;
        assert_eq!(&store.committed_page(v.version, 0).ok_or("v")?[..3], b"xyz");
    }
    Ok(())
}

#[test]
fn bad_input_is_an_error_not_a_panic() -> TestResult {
    let store = MemStore::new(PS, 4, 2)?;
    let heap = Heap::open(store, cfg(Tracking::Explicit, 2))?;
    let len = heap.len() as u64;
    let mut b = [0u8; 8];
    assert!(matches!(
        heap.read(len - 4, &mut b),
        Err(HeapError::OutOfRange { .. })
    ));
    assert!(matches!(
        heap.write(u64::MAX - 2, &b),
        Err(HeapError::OutOfRange { .. })
    ));
    assert!(heap.mark_dirty(len..len + 1).is_err());
    assert!(heap.fault_in(0..len + 1).is_err());
    assert!(heap.page_state(4).is_err());
    assert!(heap.evict(99).is_err());
    assert!(matches!(
        heap.restart_from(7),
        Err(HeapError::Store(StoreError::NoSuchVersion(7)))
    ));
    // Zero-length accesses are fine.
    heap.read(len, &mut [])?;
    assert!(Heap::open(MemStore::new(PS, 4, 2)?, cfg(Tracking::Explicit, 1)).is_err());
    assert!(MemStore::new(1000, 4, 2).is_err());
    assert!(MemStore::new(PS, 0, 2).is_err());
    assert!(MemStore::new(PS, 4, 0).is_err());
    Ok(())
}

#[test]
fn a_fault_retries_a_failing_store() -> TestResult {
    for mode in modes().into_iter().filter(|m| tracked(*m)) {
        let store = MemStore::new(PS, 4, 2)?;
        let heap = Heap::open(store.clone(), cfg(mode, 2))?;
        // The heap's own call reports the error...
        store.fail_next(FailOp::Read, 1);
        let mut b = [0u8; 4];
        assert!(matches!(
            heap.read(0, &mut b),
            Err(HeapError::Store(StoreError::Injected(_)))
        ));
        assert_eq!(heap.page_state(0)?, PageState::NotResident);
        // ...a fault cannot: it is retried until the store answers.
        store.fail_next(FailOp::Read, 3);
        // SAFETY: inside the heap.
        let v = unsafe { heap.as_ptr().add(PS).read_volatile() };
        assert_eq!(v, 0);
        assert_eq!(heap.page_state(1)?, PageState::Clean, "{mode:?}");
        heap.write(0, b"ok")?;
    }
    Ok(())
}

#[test]
fn explicit_ranges_must_fit_the_cache() -> TestResult {
    let heap = Heap::open(MemStore::new(PS, 8, 2)?, cfg(Tracking::Explicit, 2))?;
    assert!(matches!(
        heap.mark_dirty(0..3 * PS as u64),
        Err(HeapError::Config(_))
    ));
    assert!(matches!(
        heap.fault_in(PS as u64 - 1..2 * PS as u64 + 1),
        Err(HeapError::Config(_))
    ));
    heap.mark_dirty(PS as u64 - 1..PS as u64 + 1)?;
    // SAFETY: pages 0 and 1 were just made resident and writable.
    unsafe { heap.as_ptr().add(PS).write_volatile(5) };
    let mut b = [0u8; 1];
    heap.read(PS as u64, &mut b)?;
    assert_eq!(b, [5]);
    Ok(())
}

#[test]
fn heap_ten_times_the_resident_cache() -> TestResult {
    const RESIDENT: usize = 16;
    const PAGES: u64 = 10 * RESIDENT as u64;
    for mode in modes() {
        let store = MemStore::new(PS, PAGES, 2)?;
        let heap = Heap::open(store.clone(), cfg(mode, RESIDENT))?;
        fill_and_verify(&heap, PAGES, 0x5a, tracked(mode))?;
        assert!(heap.resident_count()? <= RESIDENT);
        let s = heap.stats()?;
        assert!(s.evictions >= PAGES - RESIDENT as u64, "{mode:?}: {s:?}");
        assert!(
            s.dirty_evictions >= PAGES - RESIDENT as u64,
            "{mode:?}: {s:?}"
        );
        check_pattern(&heap, PAGES, 0x5a)?;
        let v = heap.checkpoint(b"ten")?;
        assert_eq!(v.pages, PAGES, "{mode:?}");
        drop(heap);
        let heap = Heap::open(store, cfg(mode, RESIDENT))?;
        check_pattern(&heap, PAGES, 0x5a)?;
        assert!(heap.resident_count()? <= RESIDENT);
    }
    // The same through a directory store, reopened from disk.
    let dir = tmpdir("ten");
    {
        let heap = Heap::open(
            DirStore::open(&dir, PS, PAGES, 2)?,
            cfg(modes()[0], RESIDENT),
        )?;
        fill_and_verify(&heap, PAGES, 0x33, tracked(modes()[0]))?;
        heap.checkpoint(b"dir")?;
    }
    let heap = Heap::open(
        DirStore::open(&dir, PS, PAGES, 2)?,
        cfg(Tracking::Explicit, RESIDENT),
    )?;
    check_pattern(&heap, PAGES, 0x33)?;
    drop(heap);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn keeps_k_versions_and_restarts_from_any() -> TestResult {
    for mode in modes() {
        let store = MemStore::new(PS, 6, 3)?;
        let heap = Heap::open(store.clone(), cfg(mode, 2))?;
        let mut made = Vec::new();
        for round in 0..5u8 {
            heap.write(round as u64 * 100, &[round + 1; 100])?;
            heap.write(5 * PS as u64, &[round + 1; 8])?;
            made.push(heap.checkpoint(&[round])?);
        }
        let kept = heap.versions()?;
        assert_eq!(kept, made[2..].to_vec(), "{mode:?}");
        let target = made[3];
        heap.write(0, &[0xee; 64])?; // discarded by the restart
        let state = heap.restart_from(target.version)?;
        assert_eq!(state, vec![3u8]);
        let mut b = [0u8; 8];
        heap.read(5 * PS as u64, &mut b)?;
        assert_eq!(b, [4; 8], "{mode:?}");
        heap.read(0, &mut b)?;
        assert_eq!(b, [1; 8], "{mode:?}");
        heap.read(400, &mut b)?;
        assert_eq!(b, [0; 8], "{mode:?}: written only in version 5");
        // Committing after a restart builds on the restarted version.
        heap.write(1000, &[9; 8])?;
        let v6 = heap.checkpoint(b"after")?;
        assert!(v6.version > made[4].version);
        assert_eq!(store.committed_page(v6.version, 0).ok_or("v6")?[400], 0);
        assert!(matches!(
            heap.restart_from(made[0].version),
            Err(HeapError::Store(StoreError::NoSuchVersion(_)))
        ));
    }
    Ok(())
}

#[test]
fn crash_recovers_the_last_committed_version() -> TestResult {
    for mode in modes() {
        let store = MemStore::new(PS, 8, 2)?;
        let heap = Heap::open(store.clone(), cfg(mode, 3))?;
        heap.write(0, &[1; PS * 4])?;
        heap.checkpoint(b"v1")?;
        heap.write(0, &[2; PS * 6])?; // some evicted (staged), some dirty
        assert_eq!(heap.preflush(1)?, 1);
        assert!(!store.staged_pages().is_empty());
        drop(heap);
        store.crash();
        let heap = Heap::open(store.clone(), cfg(mode, 3))?;
        let mut all = vec![0u8; PS * 8];
        heap.read(0, &mut all)?;
        assert!(all[..PS * 4].iter().all(|b| *b == 1), "{mode:?}");
        assert!(all[PS * 4..].iter().all(|b| *b == 0), "{mode:?}");
    }
    Ok(())
}

#[test]
fn concurrent_direct_writers() -> TestResult {
    // Not UffdWpAsync: it does not block writers during eviction (documented).
    for mode in modes()
        .into_iter()
        .filter(|m| tracked(*m) && *m != Tracking::UffdWpAsync)
    {
        const PAGES: u64 = 64;
        let store = MemStore::new(PS, PAGES, 2)?;
        let heap = Heap::open(store.clone(), cfg(mode, 8))?;
        let base = heap.as_ptr() as usize;
        std::thread::scope(|s| {
            for t in 0..4u64 {
                s.spawn(move || {
                    for round in 0..3 {
                        for p in (t..PAGES).step_by(4) {
                            for i in (0..PS).step_by(512) {
                                // SAFETY: inside the heap, which outlives the scope;
                                // each thread writes its own pages.
                                unsafe {
                                    ((base + p as usize * PS + i) as *mut u8)
                                        .write_volatile(pattern(p, i, round))
                                };
                            }
                        }
                    }
                });
            }
        });
        heap.checkpoint(b"")?;
        drop(heap);
        let heap = Heap::open(store, cfg(Tracking::Explicit, 8))?;
        let mut page = vec![0u8; PS];
        for p in 0..PAGES {
            heap.read(p * PS as u64, &mut page)?;
            for i in (0..PS).step_by(512) {
                assert_eq!(page[i], pattern(p, i, 2), "{mode:?} page {p}");
            }
        }
    }
    Ok(())
}
