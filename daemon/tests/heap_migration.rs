//! A heap migrated between two cards, each behind its own hitlessd (two
//! `hitless-sim serve` processes, two daemons): a full copy, then a move
//! of a newer version that sends only the pages changed since the base
//! the first migration recorded (found without being named), the source's
//! heap removed; and a refused migration (the destination holds an
//! unrelated version) that loses nothing on either side. This is the
//! path `hitless heap migrate` and `hitless_heap_migrate` take
//! (`hitless_driver::heaps::migrate`).

use hitless_driver::daemon::DaemonClient;
use hitless_driver::firmware::{Firmware, OpenFlags, Session};
use hitless_driver::heaps::{self, Base, MigrateRequest};
use hitless_driver::Error;
use std::path::Path;
use std::time::Duration;

mod common;
use common::{scratch, start_card, start_daemon};

const PAGE: usize = 4096;
const PAGES: u32 = 64;

fn connect(socket: &Path, app: u32) -> (DaemonClient, Session) {
    let mut c = DaemonClient::connect(socket, Duration::from_secs(30)).unwrap();
    let s = c.open_app(app, OpenFlags::all(), None).unwrap().0;
    (c, s)
}

fn page(tag: u8, p: u32) -> Vec<u8> {
    (0..PAGE)
        .map(|i| tag ^ (p as u8).wrapping_mul(31) ^ (i % 251) as u8)
        .collect()
}

/// Commit `pages` (written with `tag`) and `state` as a new version of
/// heap 0 of `app` on the card behind `socket`; the model follows.
fn checkpoint(socket: &Path, app: u32, model: &mut Model, tag: u8, pages: &[u32], state: &[u8]) {
    let (mut c, s) = connect(socket, app);
    c.heap_open(&s, 0, PAGES, 4, true).unwrap();
    let data: Vec<(u32, Vec<u8>)> = pages.iter().map(|&p| (p, page(tag, p))).collect();
    let refs: Vec<(u32, &[u8])> = data.iter().map(|(p, d)| (*p, &d[..])).collect();
    c.heap_stage(&s, 0, &refs).unwrap();
    c.heap_commit(&s, 0, state).unwrap();
    c.heap_close(&s, 0).unwrap();
    for (p, d) in data {
        model.pages[p as usize] = Some(d);
    }
    model.state = state.to_vec();
}

/// A heap's newest version as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    pages: Vec<Option<Vec<u8>>>,
    state: Vec<u8>,
}

impl Model {
    fn new() -> Self {
        Self {
            pages: vec![None; PAGES as usize],
            state: vec![],
        }
    }
}

/// Heap 0 of `app` on a card: its versions and its newest version's pages
/// and state (`None`: the application has no heap 0 with a version).
fn read_back(socket: &Path, app: u32) -> (Vec<u64>, Option<Model>) {
    let (mut c, s) = connect(socket, app);
    let versions = match heaps::open_existing(&mut c, &s, 0) {
        Ok(v) => v,
        Err(Error::Firmware {
            code: hitless_proto::Code::NotFound,
            ..
        }) => return (vec![], None),
        Err(e) => panic!("opening heap 0 of {app}: {e}"),
    };
    let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    let Some(newest) = versions.last() else {
        c.heap_close(&s, 0).unwrap();
        return (numbers, None);
    };
    let (_, state) = c.heap_checkout(&s, 0, newest.version).unwrap();
    let all: Vec<u32> = (0..PAGES).collect();
    let pages = c.heap_read(&s, 0, &all).unwrap();
    c.heap_close(&s, 0).unwrap();
    (numbers, Some(Model { pages, state }))
}

fn migrate(
    from: &Path,
    to: &Path,
    app: u32,
    remove: bool,
) -> (Result<heaps::Moved, Error>, Vec<(usize, usize)>) {
    let (mut a, sa) = connect(from, app);
    let (mut b, sb) = connect(to, app);
    let mut seen = vec![];
    let r = heaps::migrate(
        &mut a,
        &sa,
        &mut b,
        &sb,
        MigrateRequest {
            heap: 0,
            since: None,
            remove,
        },
        &mut |done, total| seen.push((done, total)),
    );
    (r, seen)
}

#[test]
fn a_heap_moves_between_two_daemons_sending_only_changed_pages() {
    let (da, db) = (scratch("migrate-a"), scratch("migrate-b"));
    let (card_a, card_b) = (start_card(&da), start_card(&db));
    let a = start_daemon(&da, &card_a.socket, &[]);
    let b = start_daemon(&db, &card_b.socket, &[]);
    let app = 31;

    // Version 1 on A: 40 pages written.
    let mut model = Model::new();
    let first: Vec<u32> = (0..40).collect();
    checkpoint(&a.socket, app, &mut model, 0x11, &first, b"state one");

    // A full copy (B has no heap), A keeps it.
    let (r, seen) = migrate(&a.socket, &b.socket, app, false);
    let moved = r.unwrap();
    assert_eq!(moved.since, None, "B had no version: a full copy");
    assert_eq!(moved.migrated.pages, 40);
    assert_eq!(seen.last(), Some(&(40, 40)), "progress reaches the total");
    let (vb, on_b) = read_back(&b.socket, app);
    assert_eq!(vb.len(), 1);
    assert_eq!(
        on_b.as_ref(),
        Some(&model),
        "B holds A's version byte for byte"
    );
    let (va, on_a) = read_back(&a.socket, app);
    assert_eq!(va, [1]);
    assert_eq!(on_a.as_ref(), Some(&model));

    // Version 2 on A changes 3 pages and writes a new one.
    let changed = [5, 17, 39, 50];
    checkpoint(&a.socket, app, &mut model, 0x22, &changed, b"state two");
    {
        let (mut ca, sa) = connect(&a.socket, app);
        let (mut cb, sb) = connect(&b.socket, app);
        heaps::open_existing(&mut ca, &sa, 0).unwrap();
        heaps::open_existing(&mut cb, &sb, 0).unwrap();
        assert_eq!(
            heaps::find_base(&mut ca, &sa, &mut cb, &sb, 0).unwrap(),
            Base::Shared(1, vb[0]),
            "the pair the first migration recorded on both cards"
        );
        ca.heap_close(&sa, 0).unwrap();
        cb.heap_close(&sb, 0).unwrap();
    }

    // The move: only the changed pages cross, the base found by itself.
    let (r, _) = migrate(&a.socket, &b.socket, app, true);
    let moved = r.unwrap();
    assert_eq!(moved.since, Some((1, vb[0])));
    assert_eq!(
        moved.migrated.pages,
        changed.len(),
        "only the changed pages"
    );
    assert_eq!(moved.migrated.src_version, 2);
    let (vb2, on_b) = read_back(&b.socket, app);
    assert_eq!(vb2.len(), 2);
    assert_eq!(
        on_b.as_ref(),
        Some(&model),
        "B holds version 2 byte for byte"
    );
    let (va, on_a) = read_back(&a.socket, app);
    assert!(va.is_empty() && on_a.is_none(), "A's heap removed: {va:?}");
    let (mut ca, sa) = connect(&a.socket, app);
    assert!(
        heaps::records(&mut ca, &sa, 0).unwrap().is_empty(),
        "A's migration records go with its heap"
    );
}

#[test]
fn a_migration_onto_an_unrelated_version_is_refused_and_loses_nothing() {
    let (da, db) = (scratch("refuse-a"), scratch("refuse-b"));
    let (card_a, card_b) = (start_card(&da), start_card(&db));
    let a = start_daemon(&da, &card_a.socket, &[]);
    let b = start_daemon(&db, &card_b.socket, &[]);
    let app = 32;
    let (mut ma, mut mb) = (Model::new(), Model::new());
    checkpoint(&a.socket, app, &mut ma, 0x33, &[0, 1, 2, 3], b"on a");
    checkpoint(&b.socket, app, &mut mb, 0x44, &[2, 3, 4], b"on b");
    let before = (read_back(&a.socket, app), read_back(&b.socket, app));

    let (r, seen) = migrate(&a.socket, &b.socket, app, true);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("--since"), "the error says what to pass: {e}");
    assert!(seen.is_empty(), "no page moved: {seen:?}");
    let after = (read_back(&a.socket, app), read_back(&b.socket, app));
    assert_eq!(after, before, "both cards as they were");
    assert_eq!(after.0 .1, Some(ma));
    assert_eq!(after.1 .1, Some(mb));
}
