//! The heap tests that start processes: a fault that cannot be resolved
//! kills its process with SIGBUS (not a hang), and two processes' heaps are
//! isolated. The processes are this test binary started in a role
//! (`hitless_testkit`), so no role is a test that passes vacuously.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cfg, check_pattern, fill_and_verify, modes, tmpdir, tracked, TestResult, PS};
use hitless_heap::{DirStore, FailOp, Heap, MemStore, Tracking};
use hitless_testkit::{named, role_command, test_main, wait_until};

fn main() -> std::process::ExitCode {
    test_main(
        named![faulter, isolated],
        named![
            an_unresolvable_fault_is_sigbus_not_a_hang,
            two_processes_heaps_are_isolated
        ],
    )
}

/// The role `an_unresolvable_fault_is_sigbus_not_a_hang` starts: a
/// reference to a page whose fault cannot be resolved.
fn faulter() -> TestResult {
    let mode = std::env::var("HEAP_SIGBUS_MODE")?;
    let mode = match mode.as_str() {
        "UffdWp" => Tracking::UffdWp,
        _ => Tracking::Mprotect,
    };
    let store = MemStore::new(PS, 4, 2)?;
    let mut c = cfg(mode, 2);
    c.lock_timeout = Duration::from_millis(300);
    c.fault_timeout = Duration::from_millis(300);
    let heap = Heap::open(store.clone(), c)?;
    store.fail_next(FailOp::Read, u32::MAX);
    // SAFETY: inside the heap; the fault cannot be resolved, so this thread
    // gets SIGBUS and the process dies.
    let v = unsafe { heap.as_ptr().read_volatile() };
    Err(format!("read {v}: the fault was resolved").into())
}

fn an_unresolvable_fault_is_sigbus_not_a_hang() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    for mode in modes()
        .into_iter()
        .filter(|m| matches!(m, Tracking::UffdWp | Tracking::Mprotect))
    {
        let mut child = role_command("faulter")
            .env("HEAP_SIGBUS_MODE", mode.name())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let Some(status) = wait_until(&mut child, Instant::now() + Duration::from_secs(20))? else {
            return Err(format!("{mode:?}: the faulting child hung").into());
        };
        assert_eq!(status.signal(), Some(libc::SIGBUS), "{mode:?}: {status:?}");
    }
    Ok(())
}

/// The role `two_processes_heaps_are_isolated` starts twice: a heap of
/// its own, filled, checkpointed and checked three times.
fn isolated() -> TestResult {
    let dir = std::env::var("HEAP_CHILD_DIR")?;
    let tag = std::env::var("HEAP_CHILD_TAG")?;
    let tag: u8 = tag.parse()?;
    const PAGES: u64 = 32;
    let mode = modes()[0];
    let heap = Heap::open(DirStore::open(&dir, PS, PAGES, 2)?, cfg(mode, 8))?;
    // A fresh store: nothing of the other process's heap is visible.
    let mut page = vec![0u8; PS];
    for p in 0..PAGES {
        heap.read(p * PS as u64, &mut page)?;
        assert!(
            page.iter().all(|b| *b == 0),
            "child {tag}: page {p} not empty"
        );
    }
    for round in 0..3u8 {
        fill_and_verify(&heap, PAGES, tag.wrapping_add(round), tracked(mode))?;
        heap.checkpoint(&[tag, round])?;
        std::thread::sleep(Duration::from_millis(20));
        check_pattern(&heap, PAGES, tag.wrapping_add(round))?;
    }
    println!("child {tag} at {:p}", heap.as_ptr());
    Ok(())
}

fn two_processes_heaps_are_isolated() -> TestResult {
    let dirs = [tmpdir("iso-a"), tmpdir("iso-b")];
    let tags = [0x10u8, 0x80u8];
    let mut children = Vec::new();
    for (dir, tag) in dirs.iter().zip(tags) {
        children.push(
            role_command("isolated")
                .env("HEAP_CHILD_DIR", dir)
                .env("HEAP_CHILD_TAG", tag.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (mut child, tag) in children.into_iter().zip(tags) {
        let Some(status) = wait_until(&mut child, deadline)? else {
            return Err("child timed out".into());
        };
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            status.success(),
            "child failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("child {tag} at ")),
            "the child never finished: {text}"
        );
    }
    // Each store holds its own process's last pattern, and only that.
    for (dir, tag) in dirs.iter().zip(tags) {
        let mut store = DirStore::open(dir, PS, 32, 2)?;
        let versions = hitless_heap::PageStore::versions(&mut store)?;
        assert_eq!(versions.len(), 2);
        let heap = Heap::open(store, cfg(Tracking::Explicit, 8))?;
        check_pattern(&heap, 32, tag.wrapping_add(2))?;
        drop(heap);
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
