//! Sets a host stores with its peer card's endpoint (seed 000, claims
//! 13-15), as real processes on loopback: a witness and two replicated
//! cards. The application, talking to the master, stores a set with the
//! slave's node id as its endpoint: acknowledged when the slave holds it,
//! read back through the master, not in the master's own memory, listed
//! and deleted there with the same endpoint (also through the C API); an
//! endpoint of no card is refused; with the slave hung (SIGSTOP) the store
//! fails within a bounded time, with it killed a store, a delete and a
//! list fail at once; after the master is killed the slave takes over and
//! serves the set from its own memory. Every wait has a timeout.

mod common;

use common::*;
use hitless_driver::credentials::Credentials;
use hitless_driver::firmware::{Client, Secret, Session};
use hitless_driver::CardIo;
use hitless_proto::Code;
use std::ffi::{CStr, CString};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest a peer-set request may take before the host hears (the card's
/// deadline at 200 ms heartbeats is 3 s; the client's own is `CALL`).
const BOUND: Duration = Duration::from_millis(3800);

#[test]
fn a_set_stored_with_the_peers_endpoint_lives_in_the_peer_cards_memory() {
    let (dir, _witness, cards) = witness_and_pair("peerset");
    let mut procs = vec![Some(cards[0].start()), Some(cards[1].start())];
    let (m, secret) = first_master(&cards, Duration::from_secs(30));
    let s = 1 - m;
    let (mn, sn) = (cards[m].node, cards[s].node);
    let first = cards[m].peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1);
    cards[s].peer(TIMEOUT, |p| {
        p.role == 1 && p.master == Some(mn) && p.epoch == first.epoch
    });
    let (mut client, session, _) = cards[m].open(Some(&secret)).unwrap();

    // Stored in the slave's memory, acknowledged when it has it.
    let data = pattern(1, 40_000);
    client.store(&session, 20, sn, 0, true, &data).unwrap();
    let warm = pattern(2, 777);
    client.store(&session, 21, sn, 5, false, &warm).unwrap();
    // The master's own node id is the master itself, as is 0.
    client.store(&session, 22, mn, 0, false, b"here").unwrap();
    let (info, got) = client.restore_from(&session, 20, sn).unwrap();
    assert!(got == data, "set 20 read back through the link differs");
    assert_eq!((info.endpoint, info.len), (sn, 40_000));
    assert_eq!(client.restore_from(&session, 21, sn).unwrap().1, warm);
    assert_eq!(client.restore(&session, 22).unwrap().1, b"here");
    assert_eq!(client.restore_from(&session, 22, mn).unwrap().1, b"here");
    // Not in the master's memory, nor listed there.
    assert_eq!(
        code(client.restore(&session, 20).unwrap_err()),
        Code::NotFound
    );
    let listed: Vec<u32> = client
        .list(&session)
        .unwrap()
        .iter()
        .map(|i| i.object)
        .collect();
    assert!(!listed.contains(&20), "{listed:?}");

    // LIST with the slave's endpoint: exactly the sets it holds for the
    // application. DELETE there: done when the slave's delete is
    // durable, then gone from its LIST, and RESTORE says not found. The
    // master's own set (22) is not one the slave holds for it.
    client
        .store(&session, 28, sn, 0, true, b"to delete")
        .unwrap();
    let sets = client.list_from(&session, sn).unwrap();
    assert_eq!(
        sets.iter().map(|i| i.object).collect::<Vec<_>>(),
        [20, 21, 28]
    );
    assert!(sets.iter().all(|i| i.endpoint == sn), "{sets:?}");
    assert_eq!((sets[0].len, sets[1].len), (40_000, 777));
    client.delete_from(&session, 28, sn).unwrap();
    assert_eq!(held(&mut client, &session, sn), [20, 21]);
    for e in [
        client.restore_from(&session, 28, sn).unwrap_err(),
        client.delete_from(&session, 28, sn).unwrap_err(),
        client.delete_from(&session, 22, sn).unwrap_err(),
    ] {
        assert_eq!(code(e), Code::NotFound);
    }
    assert_eq!(client.restore(&session, 22).unwrap().1, b"here");

    // An endpoint that names no card of the pair: refused, nothing stored.
    let e = client
        .store(&session, 23, 9, 0, true, b"nowhere")
        .unwrap_err();
    assert_eq!(code(e), Code::Invalid);
    let e = client.restore_from(&session, 20, 9).unwrap_err();
    assert_eq!(code(e), Code::Invalid);
    assert_eq!(
        code(client.restore(&session, 23).unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(client.restore_from(&session, 23, sn).unwrap_err()),
        Code::NotFound
    );

    // The slave hung: a store for its memory fails, within the bound.
    procs[s].as_ref().unwrap().signal("STOP");
    let t = Instant::now();
    let e = client
        .store(&session, 24, sn, 0, true, b"to a hung card")
        .unwrap_err();
    let took = t.elapsed();
    eprintln!("store with the peer hung: {e} after {took:?}");
    assert_eq!(code(e), Code::Device);
    assert!(took < BOUND, "{took:?}");
    let t = Instant::now();
    let e = client.restore_from(&session, 20, sn).unwrap_err();
    assert_eq!(code(e), Code::Device);
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    // The master's own sets go on meanwhile.
    client.store(&session, 25, 0, 0, false, b"local").unwrap();
    procs[s].as_ref().unwrap().signal("CONT");
    // (A vfio-user card serves one client at a time.)
    drop(client);
    cards[m].peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1);
    let (mut client, session, _) = cards[m].open(Some(&secret)).unwrap();
    // The link back: stores for the slave work again.
    wait_for(TIMEOUT, "a store on the peer after it resumed", || {
        client.store(&session, 26, sn, 0, true, b"after").ok()
    });
    assert_eq!(client.restore_from(&session, 26, sn).unwrap().1, b"after");
    // The C API, on the same master: restore, list and delete with the
    // slave's endpoint.
    drop(client);
    through_the_c_api(&cards[m].socket, &secret, sn, &dir);
    let (mut client, session, _) = cards[m].open(Some(&secret)).unwrap();

    // The link down: the slave killed, a store for it refused at once.
    procs[s] = None;
    wait_for(TIMEOUT, "the master to see the link down", || {
        let t = Instant::now();
        match client.store(&session, 27, sn, 0, true, b"to a dead card") {
            Err(e) => {
                let took = t.elapsed();
                assert!(took < BOUND, "{took:?}");
                assert_eq!(code(e), Code::Device);
                (took < Duration::from_millis(500)).then_some(())
            }
            Ok(()) => panic!("a store for a killed card was acknowledged"),
        }
    });
    // A delete and a list for it: refused at once too (nothing deleted:
    // set 20 is there after the takeover below).
    let t = Instant::now();
    assert_eq!(
        code(client.delete_from(&session, 20, sn).unwrap_err()),
        Code::Device
    );
    assert_eq!(
        code(client.list_from(&session, sn).unwrap_err()),
        Code::Device
    );
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    // It comes back (a power cycle: its warm tier is gone, so it gets a
    // full snapshot, which keeps the cold sets it holds for its peer) and
    // catches up as the slave.
    procs[s] = Some(cards[s].start());
    drop(client);
    // Caught up: its mark is the master's last bracket (a card whose
    // state is not whole brackets never takes over), and in sync.
    let at = cards[m].peer_now().unwrap();
    cards[s].peer(TIMEOUT, |p| {
        p.role == 1
            && p.master == Some(mn)
            && (p.mark_epoch, p.mark_bracket) >= (at.mark_epoch, at.mark_bracket)
    });
    cards[m].peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1);

    // The master killed: the slave takes over and holds the sets it held
    // for its peer as its own (its memory, read on it directly).
    procs[m] = None;
    let (mut client, session) = take_over(&cards[s], &secret, Duration::from_secs(20));
    let (info, got) = client.restore(&session, 20).unwrap();
    assert!(got == data, "set 20 on the new master differs");
    assert_eq!(info.endpoint, sn);
    assert_eq!(client.restore_from(&session, 26, sn).unwrap().1, b"after");
    // A warm set held for the peer went with the card's power cycle (it
    // has no other copy: it is not the replicated state).
    assert_eq!(
        code(client.restore(&session, 21).unwrap_err()),
        Code::NotFound
    );
    // The old master's replicated sets are there too.
    assert_eq!(client.restore(&session, 22).unwrap().1, b"here");
    assert_eq!(client.restore(&session, 25).unwrap().1, b"local");
    drop(client);
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The objects of the sets node `endpoint` holds for the application.
fn held<T: CardIo>(client: &mut Client<T>, session: &Session, endpoint: u32) -> Vec<u32> {
    let sets = client.list_from(session, endpoint).unwrap();
    sets.iter().map(|i| i.object).collect()
}

/// The C API on the master at `socket` (as a C program calls it, with the
/// application's secret in its credential store): a set stored with the
/// slave's endpoint `sn` is restored, listed and deleted with it.
fn through_the_c_api(socket: &Path, secret: &Secret, sn: u32, dir: &Path) {
    use hitless::*;
    let creds = Credentials::new(Some(dir.join("creds"))).unwrap();
    creds.save(APP, secret).unwrap();
    // The library reads its credential store's place from here (this
    // file's one test is the only thread using the environment).
    std::env::set_var("HITLESS_CREDENTIALS", creds.dir());
    let why = || {
        // SAFETY: the library's thread-local message, valid until the
        // next call on this thread.
        unsafe { CStr::from_ptr(hitless_last_error()) }
            .to_string_lossy()
            .into_owned()
    };
    let spec = CString::new(format!("vfio-user:{}", socket.display())).unwrap();
    let data = pattern(3, 5000);
    let mut buf = vec![0u8; 8192];
    let (mut len, mut n) = (0usize, 0usize);
    let mut sets = [hitless_set_info::default(); 16];
    let objects = |sets: &[hitless_set_info]| sets.iter().map(|i| i.object).collect::<Vec<_>>();
    // SAFETY: every pointer is a live local of the size passed with it;
    // the handles come from the library and are closed once, at the end.
    unsafe {
        let card = hitless_open(spec.as_ptr(), 4000);
        assert!(!card.is_null(), "{}", why());
        let s = hitless_session_open(card, APP, HITLESS_ALL);
        assert!(!s.is_null(), "{}", why());
        let r = hitless_store(s, 30, sn, 0, 1, data.as_ptr(), data.len());
        assert_eq!(r, HITLESS_OK, "{}", why());
        let r = hitless_restore_from(s, 30, sn, buf.as_mut_ptr(), buf.len(), &mut len);
        assert_eq!(r, HITLESS_OK, "{}", why());
        assert!(buf[..len] == data[..], "set 30 through the C API differs");
        let r = hitless_restore(s, 30, buf.as_mut_ptr(), buf.len(), &mut len);
        assert_eq!(r, HITLESS_E_NOT_FOUND, "not in the master's memory");
        let r = hitless_list_from(s, sn, sets.as_mut_ptr(), sets.len(), &mut n);
        assert_eq!(r, HITLESS_OK, "{}", why());
        let on_peer = objects(&sets[..n]);
        assert!(
            on_peer.contains(&30) && on_peer.contains(&20),
            "{on_peer:?}"
        );
        assert!(sets[..n].iter().all(|i| i.endpoint == sn));
        let r = hitless_list(s, sets.as_mut_ptr(), sets.len(), &mut n);
        assert_eq!(r, HITLESS_OK, "{}", why());
        assert!(!objects(&sets[..n]).contains(&30));
        let r = hitless_delete_from(s, 30, sn);
        assert_eq!(r, HITLESS_OK, "{}", why());
        let r = hitless_list_from(s, sn, sets.as_mut_ptr(), sets.len(), &mut n);
        assert_eq!(r, HITLESS_OK, "{}", why());
        assert!(
            !objects(&sets[..n]).contains(&30),
            "{:?}",
            objects(&sets[..n])
        );
        let r = hitless_restore_from(s, 30, sn, buf.as_mut_ptr(), buf.len(), &mut len);
        assert_eq!(r, HITLESS_E_NOT_FOUND);
        assert_eq!(hitless_delete_from(s, 30, sn), HITLESS_E_NOT_FOUND);
        assert_eq!(hitless_delete_from(s, 30, 9), HITLESS_E_INVALID);
        assert_eq!(hitless_session_close(s), HITLESS_OK, "{}", why());
        hitless_close(card);
    }
}
