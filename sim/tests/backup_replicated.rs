//! The remote backup reader on a replicated pair (issue 16; seed 001
//! claims 1, 3, 4, 7, 12, 16, 35-37): both cards serve `--backup-listen`.
//! A primary process appends log records and stores sets on the master
//! (sync mode: each acknowledged when the slave has it); a backup reader
//! reads and trims them over TCP on the master while a second reader
//! reads the slave as it applies the master's brackets. The master is
//! killed (SIGKILL), the slave takes over, and the backup reader goes on
//! from the new master with the cursor it had: every acknowledged record
//! read exactly once, in order; the records it had read but not trimmed
//! are at the same positions on the new master (and skipped); every
//! acknowledged set restores.

mod common;

use common::*;
use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{Client, Firmware, OpenFlags, Secret, Session};
use hitless_driver::Error;
use hitless_proto::Code;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The master's socket and the application's secret, for the primary.
const PRIMARY_ENV: &str = "HITLESS_BACKUP_PRIMARY";
/// Records the primary has acknowledged before the reader's last read on
/// the old master.
const BEFORE_KILL: usize = 16;
/// A record marking what the new master appends after the takeover.
const AFTER_TAKEOVER: u64 = 1_000_000;

/// `a` at or after `b` in the log's wrapping positions.
fn at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

fn main() -> std::process::ExitCode {
    test_main(
        named![primary],
        named![backup_reader_goes_on_from_the_new_master_after_kill_9],
    )
}

/// The primary's role: append records and store sets on the master
/// until its card dies, printing each acknowledgement.
fn primary() -> Result<(), String> {
    let spec = std::env::var(PRIMARY_ENV).map_err(|e| format!("{PRIMARY_ENV}: {e}"))?;
    let (socket, secret) = spec.split_once(',').ok_or("SOCKET,SECRET")?;
    let io = VfioUserIo::connect(std::path::Path::new(socket), 4 << 20, CALL)
        .map_err(|e| e.to_string())?;
    let mut fw = Client::open(io, CALL).map_err(|e| e.to_string())?;
    let (s, _) = fw
        .open_app(APP, OpenFlags::all(), Some(&unhex(secret)?))
        .map_err(|e| e.to_string())?;
    let out = std::io::stdout();
    for i in 0u64.. {
        loop {
            match fw.log_append(&s, 1, false, false, &record(i)) {
                Ok(pos) => {
                    writeln!(out.lock(), "ACK LOG {i} {pos}").map_err(|e| e.to_string())?;
                    break;
                }
                Err(Error::Firmware {
                    code: Code::LogFull,
                    ..
                }) => std::thread::sleep(Duration::from_millis(5)),
                // The card died: the primary's host is gone with it.
                Err(e) => return Err(format!("append {i}: {e}")),
            }
        }
        if i % 5 == 0 {
            let object = 10 + (i / 5 % 3) as u32;
            fw.store(&s, object, 0, 1, false, &pattern(i as u32, 3000))
                .map_err(|e| format!("store {i}: {e}"))?;
            writeln!(out.lock(), "ACK SET {object} {i}").map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// What a reader on the slave saw while the master ran.
#[derive(Default)]
struct SlaveView {
    reads: usize,
    /// Reads that returned records.
    with_records: usize,
    /// Position → record number, as the slave reported them.
    at: BTreeMap<u32, u64>,
    sets_restored: usize,
    trims_refused: usize,
}

fn backup(addr: &str) -> Box<dyn Firmware> {
    let spec = format!("backup:{addr}");
    wait_for(TIMEOUT, "the backup reader service", || {
        hitless_driver::open_firmware(&spec, TIMEOUT).ok()
    })
}

/// The reader on the slave: reads its log and sets until `stop`, each
/// read a whole number of the master's brackets (records whole,
/// consecutive, positions rising), its trims refused naming the master.
fn read_slave(
    addr: String,
    secret: Secret,
    master: u32,
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<SlaveView>>,
) {
    let mut b = backup(&addr);
    let (bs, _) = b
        .open_app(APP, OpenFlags::all(), Some(&secret))
        .expect("the slave reader's session (the secret is replicated)");
    while !stop.load(Ordering::SeqCst) {
        let log = b.log_read(&bs, false).expect("log read on the slave");
        let mut last: Option<(u32, u64)> = None;
        for (info, payload) in &log.records {
            let n = record_number(payload);
            if let Some((p, m)) = last {
                assert_eq!(n, m + 1, "the slave's log skips from record {m} to {n}");
                assert!(
                    at_or_after(info.offset, p.wrapping_add(1)),
                    "positions not rising"
                );
            }
            last = Some((info.offset, n));
        }
        let sets = b.list(&bs).expect("list on the slave");
        let mut restored = 0;
        for set in &sets {
            let (_, data) = b.restore(&bs, set.object).expect("restore on the slave");
            let v = (0..400u32)
                .step_by(5)
                .find(|v| data == pattern(*v, 3000))
                .unwrap_or_else(|| panic!("set {} on the slave is no stored version", set.object));
            assert_eq!(10 + v / 5 % 3, set.object);
            restored += 1;
        }
        let refused = match b.log_trim(&bs, false, log.head) {
            Err(Error::NotMaster { master: m, .. }) => {
                assert_eq!(m, Some(master), "the slave names its master");
                true
            }
            Ok(()) => panic!("the slave took a trim"),
            Err(e) => panic!("a trim on the slave: {e}"),
        };
        let mut v = lock(&view);
        v.reads += 1;
        v.with_records += usize::from(!log.records.is_empty());
        v.sets_restored += restored;
        v.trims_refused += usize::from(refused);
        for (info, payload) in &log.records {
            v.at.insert(info.offset, record_number(payload));
        }
        drop(v);
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The backup reader's state: the records read (in order) and the
/// cursor, the position after the last one read.
#[derive(Default)]
struct Reader {
    read: Vec<u64>,
    at: BTreeMap<u32, u64>,
    cursor: Option<u32>,
    skipped: usize,
}

impl Reader {
    /// Read the unread records (those at or after the cursor: a record
    /// before it was read already, on this card or its old master);
    /// trim when `trim`. Returns the records new to the reader.
    fn take(&mut self, b: &mut Box<dyn Firmware>, s: &Session, trim: bool) -> usize {
        let log = b.log_read(s, false).expect("log read over TCP");
        let mut n = 0;
        for (info, payload) in &log.records {
            let number = record_number(payload);
            if self.cursor.is_some_and(|c| !at_or_after(info.offset, c)) {
                // Read before the kill, not trimmed: the same record at
                // the same position.
                assert_eq!(
                    self.at.get(&info.offset),
                    Some(&number),
                    "position {:#x} is another record than the reader read there",
                    info.offset
                );
                self.skipped += 1;
                continue;
            }
            self.read.push(number);
            self.at.insert(info.offset, number);
            n += 1;
        }
        self.cursor = Some(log.head);
        if trim && !log.records.is_empty() {
            b.log_trim(s, false, log.head).expect("trim what was read");
        }
        n
    }
}

fn backup_reader_goes_on_from_the_new_master_after_kill_9() {
    let (dir, _witness, mut cards) = witness_and_pair("backup-repl");
    let addrs = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    for (c, a) in cards.iter_mut().zip(&addrs) {
        c.args
            .extend(["--backup-listen", a.as_str()].map(String::from));
    }
    let mut procs: Vec<Option<Proc>> = cards.iter().map(|c| Some(c.start())).collect();
    let (m, secret) = first_master(&cards, Duration::from_secs(20));
    let s = 1 - m;
    let (mn, sn) = (cards[m].node, cards[s].node);
    let epoch = cards[m]
        .peer(TIMEOUT, |p| p.role == 0 && p.in_sync == 1)
        .epoch;
    cards[s].peer(TIMEOUT, |p| {
        p.role == 1 && p.master == Some(mn) && p.epoch == epoch
    });

    // The primary, a process of its own, on the master's card.
    let mut child = role_command("primary")
        .env(
            PRIMARY_ENV,
            format!("{},{}", cards[m].socket.display(), hex(&secret)),
        )
        .stdout(Stdio::piped())
        .stderr(log_file(&dir, "primary"))
        .spawn()
        .expect("the primary process");
    let (acks, acks_thread) = collect_acks(child.stdout.take().expect("the primary's stdout"));
    let primary = Proc(child);

    // A reader on the slave while it applies the master's brackets.
    let stop = Arc::new(AtomicBool::new(false));
    let view = Arc::new(Mutex::new(SlaveView::default()));
    let slave_reader = {
        let (addr, stop, view) = (addrs[s].clone(), stop.clone(), view.clone());
        std::thread::spawn(move || read_slave(addr, secret, mn, stop, view))
    };

    // The backup reads and trims on the master while the primary writes.
    let mut b = backup(&addrs[m]);
    let (bs, _) = b
        .open_app(APP, OpenFlags::all(), Some(&secret))
        .expect("the backup's session");
    let mut r = Reader::default();
    let mut rounds = 0;
    let started = Instant::now();
    while lock(&acks).log.len() < BEFORE_KILL {
        r.take(&mut b, &bs, true);
        for set in b.list(&bs).expect("list over TCP") {
            b.restore(&bs, set.object).expect("restore over TCP");
        }
        rounds += 1;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the primary acknowledged {} records in 60 s",
            lock(&acks).log.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A last read on the master, not trimmed (the reader dies with the
    // master before it trims, as it were); the primary runs on.
    let untrimmed = r.take(&mut b, &bs, false);
    let read_on_master = r.read.len();
    // Records the reader has not read: acknowledged after its last read
    // (one acknowledgement may still be on its way from the primary).
    let acked = lock(&acks).log.len();
    wait_for(TIMEOUT, "the primary to append past the last read", || {
        (lock(&acks).log.len() >= acked + 3).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    slave_reader.join().expect("the slave reader");
    // kill -9 the master; its primary loses its card (and is killed).
    drop(procs[m].take());
    let kill = Instant::now();
    drop(primary);
    let _ = acks_thread.join();
    drop(b);

    // The slave takes over in a newer epoch.
    let after = cards[s].peer(Duration::from_secs(15), |p| p.role == 0 && p.epoch > epoch);
    let takeover = kill.elapsed();
    // Something the new master appends after the takeover follows the
    // reader's cursor.
    let (mut host, hs) = take_over(&cards[s], &secret, TIMEOUT);
    let marker = host
        .log_append(&hs, 1, false, false, &record(AFTER_TAKEOVER))
        .expect("an append on the new master");
    let cursor = r.cursor.expect("the reader read on the master");
    assert!(
        at_or_after(marker, cursor),
        "the new master's record at {marker:#x} is before the reader's cursor {cursor:#x}"
    );

    // The backup goes on from the new master: the previously unread
    // portion, each record once.
    let mut b = backup(&addrs[s]);
    let (bs, _) = b
        .open_app(APP, OpenFlags::all(), Some(&secret))
        .expect("the backup's session on the new master");
    let unread = r.take(&mut b, &bs, true);
    assert!(b.log_read(&bs, false).expect("log read").records.is_empty());
    let a = lock(&acks);
    assert_eq!(
        r.read.pop(),
        Some(AFTER_TAKEOVER),
        "the new master's record last"
    );
    for (n, got) in r.read.iter().enumerate() {
        assert_eq!(*got, n as u64, "record {n} read as {got}: {:?}", r.read);
    }
    let last_ack = *a.log.last().expect("acknowledged records");
    assert!(
        r.read.len() as u64 > last_ack,
        "acknowledged up to record {last_ack}, read {}",
        r.read.len()
    );
    // At most the one in flight at the kill beyond the last acknowledged.
    assert!(r.read.len() as u64 <= last_ack + 2);
    assert!(untrimmed > 0, "the last read on the master took nothing");
    assert_eq!(
        r.skipped, untrimmed,
        "the records read but not trimmed on the master are on the new master"
    );
    assert!(
        unread >= 3,
        "the records acknowledged after the last read (and the new master's) were not all \
         left to take over: {unread}"
    );
    // Every acknowledged set restores, as last stored (or its next,
    // unacknowledged version).
    for (object, version) in &a.sets {
        let (_, data) = b.restore(&bs, *object).expect("restore on the new master");
        assert!(
            data == pattern(*version as u32, 3000) || data == pattern(*version as u32 + 15, 3000),
            "set {object}: neither version {version} nor a newer one"
        );
    }
    // The slave reported the master's positions: where both read a
    // position, it is the same record.
    let v = lock(&view);
    assert!(v.with_records > 0, "the slave reader never saw a record");
    assert_eq!(v.trims_refused, v.reads);
    let mut shared = 0;
    for (pos, n) in &v.at {
        if let Some(m) = r.at.get(pos) {
            assert_eq!(
                m, n,
                "position {pos:#x}: the slave's record {n}, the master's {m}"
            );
            shared += 1;
        }
    }
    assert!(shared > 0, "no position read on both cards");
    // A wrong secret on the new master is refused.
    let mut wrong = secret;
    wrong[0] ^= 1;
    assert!(matches!(
        backup(&addrs[s]).open_app(APP, OpenFlags::all(), Some(&wrong)),
        Err(Error::Firmware {
            code: Code::AuthFailed,
            ..
        })
    ));
    println!(
        "backup reader on a pair (master node {mn}, slave node {sn}): {read_on_master} records \
         read on the master in {rounds} rounds ({untrimmed} of them not trimmed, found again \
         at the same positions on the new master and skipped); slave reader: {} reads, {} with \
         records, {} sets restored, {} trims refused (NotMaster), {shared} positions read on both; \
         takeover {:.1} s after kill -9 (epoch {} -> {}); {unread} records read from the new \
         master (last acknowledged {last_ack}, then its own record at {marker:#x})",
        v.reads,
        v.with_records,
        v.sets_restored,
        v.trims_refused,
        takeover.as_secs_f64(),
        epoch,
        after.epoch,
    );
    drop(procs);
}
