//! The remote backup reader (issue 16 item 6; seed 001 claims 1, 4, 9,
//! 14-19): a primary application appends log records and stores sets on
//! the card through vfio-user (a separate process) while a backup reader
//! reads them over TCP (`backup:HOST:PORT`) and trims what it has read.
//! The primary is killed (SIGKILL) mid-stream; the backup then reads the
//! previously unread portion: every record the primary got acknowledged
//! is there, in order, none read twice, and every acknowledged set
//! restores. Then the service's refusals: wrong credentials (counted in
//! the card's one auth-failure counter), writes, garbage, an oversized
//! frame, a truncated frame, a reader that stalls mid-frame; the service
//! goes on serving after each.
//!
//! Where the machine can create network namespaces, the card runs in its
//! own namespace and the backup reader reaches it only over a veth pair
//! (another host); elsewhere over loopback, saying so.

mod common;

use common::*;
use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::backup::BackupClient;
use hitless_driver::firmware::{Client, Firmware, OpenFlags};
use hitless_driver::Error;
use hitless_proto::backup::{Frame, Header, Kind, HEADER_BYTES, HELLO_BYTES, MAX_DATA};
use hitless_proto::message::Request;
use hitless_proto::Code;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The card's socket and the application's secret, for the primary.
const PRIMARY_ENV: &str = "HITLESS_BACKUP_PRIMARY";
/// A reader frame must be whole within this (the card's
/// `--backup-frame-ms`).
const FRAME_MS: u64 = 500;
/// Records the primary has acknowledged before it is killed.
const BEFORE_KILL: usize = 60;

fn main() -> std::process::ExitCode {
    test_main(
        named![primary],
        named![backup_reads_what_the_killed_primary_left_unread],
    )
}

/// The primary's role (this binary started by the test, see
/// `common::test_main`): append records and store sets until killed,
/// printing each acknowledgement.
fn primary() {
    let spec = std::env::var(PRIMARY_ENV).expect("started by the backup reader test");
    let (socket, secret) = spec.split_once(',').expect("SOCKET,SECRET");
    let io = VfioUserIo::connect(std::path::Path::new(socket), 4 << 20, TIMEOUT)
        .expect("the card's socket");
    let mut fw = Client::open(io, TIMEOUT).expect("the firmware");
    let (s, _) = fw
        .open_app(
            APP,
            OpenFlags::all(),
            Some(&unhex(secret).expect("hex secret")),
        )
        .expect("the application");
    let out = std::io::stdout();
    for i in 0u64.. {
        loop {
            match fw.log_append(&s, 1, false, false, &record(i)) {
                Ok(offset) => {
                    writeln!(out.lock(), "ACK LOG {i} {offset}").expect("stdout");
                    break;
                }
                // The backup reader trims; wait for room.
                Err(Error::Firmware {
                    code: Code::LogFull,
                    ..
                }) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("append {i}: {e}"),
            }
        }
        if i % 5 == 0 {
            let object = 10 + (i / 5 % 3) as u32;
            fw.store(&s, object, 0, 1, false, &pattern(i as u32, 3000))
                .expect("store");
            writeln!(out.lock(), "ACK SET {object} {i}").expect("stdout");
        }
    }
}

/// The veth pair and namespace; deleting the namespace removes both.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The card's namespace joined to this one by a veth pair: (namespace,
/// the card's address). `Err` with the reason where the machine cannot.
fn netns() -> Result<(Netns, String), String> {
    let pid = std::process::id();
    let name = format!("hitless-bk-{pid}");
    run(&["ip", "netns", "add", &name])?;
    let ns = Netns(name.clone());
    let (host_end, card_end) = (format!("hbh{pid}"), format!("hbc{pid}"));
    let octet = pid % 200 + 20;
    let (host_ip, card_ip) = (format!("10.233.{octet}.2"), format!("10.233.{octet}.1"));
    run(&[
        "ip", "link", "add", &host_end, "type", "veth", "peer", "name", &card_end,
    ])?;
    run(&["ip", "link", "set", &card_end, "netns", &name])?;
    run(&[
        "ip",
        "addr",
        "add",
        &format!("{host_ip}/24"),
        "dev",
        &host_end,
    ])?;
    run(&["ip", "link", "set", &host_end, "up"])?;
    run(&[
        "ip",
        "-n",
        &name,
        "addr",
        "add",
        &format!("{card_ip}/24"),
        "dev",
        &card_end,
    ])?;
    run(&["ip", "-n", &name, "link", "set", &card_end, "up"])?;
    run(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
    Ok((ns, card_ip))
}

fn backup_reads_what_the_killed_primary_left_unread() {
    let (dir, _) = test_dir("backup-reader");
    let (ns, card_ip, how) = match netns() {
        Ok((ns, ip)) => {
            let name = ns.0.clone();
            (
                Some(ns),
                ip,
                format!("the card in network namespace {name}, over veth"),
            )
        }
        Err(why) => {
            println!("loopback: this machine cannot create network namespaces: {why}");
            (None, "127.0.0.1".to_string(), "loopback".to_string())
        }
    };
    let addr = format!("{card_ip}:{}", free_port());
    let card_dir = dir.join("card");
    std::fs::create_dir_all(&card_dir).expect("the card directory");
    let card = Card {
        node: 1,
        socket: card_dir.join("card.sock"),
        dir: card_dir,
        args: [
            "--backup-listen",
            &addr,
            "--backup-frame-ms",
            &FRAME_MS.to_string(),
        ]
        .map(String::from)
        .to_vec(),
        wrap: ns
            .as_ref()
            .map(|n| ["ip", "netns", "exec", &n.0].map(String::from).to_vec())
            .unwrap_or_default(),
    };
    let _card = card.start();
    let spec = format!("backup:{addr}");
    let backup = || -> Box<dyn Firmware> {
        wait_for(TIMEOUT, "the backup reader service", || {
            hitless_driver::open_firmware(&spec, TIMEOUT).ok()
        })
    };

    // The host registers the application; the backup gets its secret.
    let secret = {
        let (_c, _s, secret) = card.open(None).expect("registering the application");
        secret.expect("the first open hands out the secret")
    };

    // Before the primary writes anything: the backup reads an empty log.
    let mut b = backup();
    let (bs, fresh) = b
        .open_app(APP, OpenFlags::all(), Some(&secret))
        .expect("the backup's session");
    assert!(fresh.is_none());
    assert!(b.log_read(&bs, false).expect("log read").records.is_empty());

    // The primary, a process of its own.
    let mut child = role_command("primary")
        .env(
            PRIMARY_ENV,
            format!("{},{}", card.socket.display(), hex(&secret)),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the primary process");
    let (acks, reader) = collect_acks(child.stdout.take().expect("the primary's stdout"));
    let mut primary = Proc(child);

    // The backup reads and trims while the primary writes; after
    // BEFORE_KILL acknowledged records, the primary is killed.
    let mut read: Vec<u64> = Vec::new();
    let mut rounds = 0;
    let mut restored = 0;
    let started = Instant::now();
    let take = |b: &mut Box<dyn Firmware>, read: &mut Vec<u64>| -> usize {
        let log = b.log_read(&bs, false).expect("log read over TCP");
        let n = log.records.len();
        for (_, payload) in &log.records {
            read.push(record_number(payload));
        }
        if n > 0 {
            b.log_trim(&bs, false, log.head)
                .expect("trim what was read");
        }
        n
    };
    loop {
        take(&mut b, &mut read);
        rounds += 1;
        for set in b.list(&bs).expect("list over TCP") {
            // The CRC is checked on the way (restore fails otherwise).
            b.restore(&bs, set.object).expect("restore over TCP");
            restored += 1;
        }
        if lock(&acks).log.len() >= BEFORE_KILL {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the primary acknowledged {} records in 60 s",
            lock(&acks).log.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the primary run ahead of the reader, then kill it mid-stream.
    std::thread::sleep(Duration::from_millis(150));
    let _ = primary.0.kill();
    let _ = primary.0.wait();
    drop(primary);
    let _ = reader.join();
    let read_before = read.len();
    // The previously unread portion.
    let after = take(&mut b, &mut read);
    let a = lock(&acks);
    assert!(a.done);
    assert!(
        after > 0,
        "the primary's last records were read before it was killed: nothing left to take over"
    );
    // In order, each once, from the first record on.
    for (n, r) in read.iter().enumerate() {
        assert_eq!(*r, n as u64, "record {n} read as {r}: {read:?}");
    }
    // Every acknowledged record was read (one more may be durable
    // without its acknowledgement having been printed).
    let last_ack = *a.log.last().expect("acknowledged records");
    assert!(
        read.len() as u64 > last_ack,
        "acknowledged up to record {last_ack}, read {}",
        read.len()
    );
    assert!(read.len() as u64 <= last_ack + 2);
    // Nothing is read twice after the trim.
    assert!(b.log_read(&bs, false).expect("log read").records.is_empty());
    // Every acknowledged set restores, as the primary last stored it.
    for (object, version) in &a.sets {
        let (_, data) = b
            .restore(&bs, *object)
            .expect("restore after the primary died");
        // The same object is stored again 15 records later.
        let newer = version + 15;
        assert!(
            data == pattern(*version as u32, 3000) || data == pattern(newer as u32, 3000),
            "set {object}: neither version {version} nor an unacknowledged newer one"
        );
    }
    println!(
        "backup reader ({how}): {} records read in {rounds} rounds while the primary ran, {after} \
         unread after kill -9 (last acknowledged {last_ack}); {} sets restored during, {} after",
        read_before,
        restored,
        a.sets.len()
    );
    drop(a);

    // Wrong credentials: refused and counted, on the card's one counter
    // (the host's mailbox register shows it too).
    let before = b.status().expect("status over TCP").auth_fails;
    let mut wrong = secret;
    wrong[0] ^= 1;
    let mut other = backup();
    match other.open_app(APP, OpenFlags::all(), Some(&wrong)) {
        Err(Error::Firmware {
            code: Code::AuthFailed,
            ..
        }) => {}
        r => panic!("a wrong secret: {:?}", r.map(|_| ())),
    }
    assert_eq!(b.status().expect("status").auth_fails, before + 1);
    let mut host = card.client(TIMEOUT).expect("the host's client");
    assert_eq!(host.auth_failures().expect("MB_AUTH_FAILS"), before + 1);
    // No secret: the backup reader never registers an application.
    assert!(matches!(
        other.open_app(99, OpenFlags::all(), None),
        Err(Error::InvalidArgument(_))
    ));

    // Writes: refused by the client, naming the service …
    match b.store(&bs, 1, 0, 0, false, b"x") {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("read-only"), "{m}"),
        r => panic!("a store over the backup reader: {r:?}"),
    }
    for r in [
        b.delete(&bs, 10).map(|_| ()),
        b.format(&bs, false).map(|_| ()),
        b.log_append(&bs, 1, false, false, b"x").map(|_| ()),
    ] {
        assert!(matches!(r, Err(Error::InvalidArgument(ref m)) if m.contains("read-only")));
    }
    // … and by the card, even correctly signed.
    let mut raw = BackupClient::connect(&addr, TIMEOUT).expect("a backup client");
    let (rs, _) = raw
        .open_app(APP, OpenFlags::read_only(), Some(&secret))
        .expect("a session");
    let store = Request::Store {
        object: 1,
        endpoint: 0,
        stage: 0,
        flags: 0,
        addr: raw.window().0,
        len: 1,
        crc: 0,
    };
    match raw.request(&store, Some(&rs)) {
        Err(Error::Firmware {
            code: Code::Permission,
            detail,
            ..
        }) => assert!(detail.contains("read-only"), "{detail}"),
        r => panic!("a signed STORE: {:?}", r.map(|_| ())),
    }
    // Data only into the window.
    let outside = Request::Restore {
        object: 10,
        endpoint: 0,
        addr: 0x1000,
        cap: 4096,
    };
    assert!(matches!(
        raw.request(&outside, Some(&rs)),
        Err(Error::Firmware {
            code: Code::Invalid,
            ..
        })
    ));
    assert_eq!(host.auth_failures().expect("MB_AUTH_FAILS"), before + 1);

    // Bad frames: answered with an ERROR frame, the connection closed,
    // the service still there.
    let send = |bytes: &[u8], shut: bool| -> Frame {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let mut hello = [0u8; HEADER_BYTES + HELLO_BYTES];
        s.read_exact(&mut hello).expect("the hello");
        s.write_all(bytes).expect("write");
        if shut {
            s.shutdown(Shutdown::Write).expect("shutdown");
        }
        let f = Frame::read(&mut s, MAX_DATA).expect("an ERROR frame");
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).expect("closed"), 0, "then closed");
        f
    };
    let error_text = |f: &Frame| {
        assert_eq!(f.header.kind, Kind::Error);
        String::from_utf8_lossy(&f.message).into_owned()
    };
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
    println!("garbage: {}", error_text(&send(&garbage, false)));
    let mut big = Header::new(Kind::Request, 1, 0, 0, 0)
        .expect("header")
        .encode();
    big[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    let t = error_text(&send(&big, false));
    assert!(t.contains("bytes"), "oversized: {t}");
    let short = Header::new(Kind::Request, 100, 0, 0, 0)
        .expect("header")
        .encode();
    let t = error_text(&send(&[&short[..], &[1u8; 10][..]].concat(), true));
    assert!(t.contains("truncated"), "truncated: {t}");
    let t = error_text(&send(&[&short[..], &[1u8; 10][..]].concat(), false));
    assert!(t.contains("not whole"), "stalled: {t}");
    let hello = Frame::hello(1, 2, 3).encode();
    let t = error_text(&send(&hello, false));
    assert!(t.contains("Hello"), "a hello from a reader: {t}");

    // Still serving, and the host too.
    let mut again = backup();
    assert!(again.status().is_ok());
    let (s2, _) = again
        .open_app(APP, OpenFlags::all(), Some(&secret))
        .expect("a session after the bad frames");
    assert_eq!(again.list(&s2).expect("list").len(), a_sets(&acks));
    assert!(host.status().is_ok());
}

fn a_sets(acks: &Mutex<Acks>) -> usize {
    lock(acks).sets.len()
}
