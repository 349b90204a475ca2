//! Serving components to modules (seed 002 claims 2–4, 33; issue 18
//! items 8 and 3) checked with independent, standard clients: `curl` for
//! HTTP (and TFTP), `tftp` (tftp-hpa) and `atftp` for TFTP. A missing
//! client fails the test: run `cargo xtask setup`.
use hitless_image::bench::{Fixture, NOW};
use hitless_image::fetch::{fetch, fetch_to_file, FetchError, FetchOptions};
use hitless_image::manifest::{Manifest, Sha};
use hitless_image::package::{read_package, PackageLimits};
use hitless_image::serve::http::{serve_http, HttpOptions};
use hitless_image::serve::tftp::{serve_tftp, TftpOptions};
use hitless_image::{ComponentSource, FixedSource, ImageError, ImageManager, SimFlash};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOCAL: &str = "127.0.0.1:0";

fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

/// The path of a client binary; a missing one fails the test.
fn need(bin: &str) -> &str {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{bin}` is not installed: run `cargo xtask setup` (apt packages curl, tftp-hpa, atftp)"
    );
    bin
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "{:?}: {}\nstdout: {}\nstderr: {}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn curl() -> Command {
    let mut c = Command::new(need("curl"));
    c.args(["-sS", "--max-time", "10"]);
    c
}

/// A card running v1 (gateware 5000 B, firmware 3000 B, config 600 B).
fn card() -> (Fixture, Arc<ImageManager<SimFlash>>) {
    let fx = Fixture::new().unwrap();
    let m = fx.card.open().unwrap();
    assert!(matches!(m.boot(NOW), Err(ImageError::NeedsFreshDownload)));
    m.install_package(&fx.v1.full[..], NOW, false).unwrap();
    m.boot(NOW).unwrap();
    (fx, Arc::new(m))
}

fn status_of(out: &Output) -> u16 {
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit('\n')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn curl_fetches_components_ranges_resume_head_and_errors() {
    let (fx, m) = card();
    let srv = serve_http(local(), m.clone(), HttpOptions::default()).unwrap();
    let base = format!("http://{}", srv.local_addr());
    let dir = tempfile::tempdir().unwrap();

    // every component, checked against the manifest's SHA-256
    for c in &fx.v1.manifest.components {
        let path = dir.path().join(&c.name);
        let out = run(curl()
            .arg("-f")
            .arg("-o")
            .arg(&path)
            .arg(format!("{base}/components/{}", c.name)));
        assert!(out.status.success());
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, c.size);
        assert_eq!(Sha::of(&data), c.sha256, "{}", c.name);
    }
    // the manifest
    let out = run(curl().arg("-f").arg(format!("{base}/manifest")));
    assert!(out.status.success());
    assert_eq!(Manifest::from_bytes(&out.stdout).unwrap(), fx.v1.manifest);

    let gw = &fx.v1.components[0].1;
    let gw_sha = fx.v1.manifest.components[0].sha256;
    let gw_url = format!("{base}/components/gateware");

    // HEAD: status, length, ETag = SHA-256, no body
    let out = run(curl().arg("-I").arg(&gw_url));
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {}\r\n", gw.len())));
    assert!(head.contains(&format!("etag: \"{}\"\r\n", gw_sha.hex())));
    assert!(head.contains("accept-ranges: bytes"));

    // a range: 206, Content-Range, the bytes
    let path = dir.path().join("range");
    let out = run(curl()
        .args(["-r", "100-199", "-D", "-", "-o"])
        .arg(&path)
        .arg(&gw_url));
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(head.contains(&format!("content-range: bytes 100-199/{}", gw.len())));
    assert_eq!(std::fs::read(&path).unwrap(), &gw[100..200]);
    // an open range and a suffix range
    let out = run(curl().args(["-r", "4000-"]).arg(&gw_url));
    assert_eq!(out.stdout, &gw[4000..]);
    let out = run(curl().args(["-r", "-50"]).arg(&gw_url));
    assert_eq!(out.stdout, &gw[gw.len() - 50..]);

    // resume: the first 1234 bytes are there, `-C -` fetches the rest
    let path = dir.path().join("resumed");
    std::fs::write(&path, &gw[..1234]).unwrap();
    let out = run(curl()
        .args(["-f", "-C", "-", "-D", "-", "-o"])
        .arg(&path)
        .arg(&gw_url));
    assert!(out.status.success());
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains(&format!(
        "content-range: bytes 1234-{}/{}",
        gw.len() - 1,
        gw.len()
    )));
    assert_eq!(Sha::of(&std::fs::read(&path).unwrap()), gw_sha);

    // errors: 404 (component, path), 416, 405, each with a body saying why
    let code = |args: &[&str], url: &str| {
        let out = run(curl()
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .arg(url));
        status_of(&out)
    };
    assert_eq!(code(&[], &format!("{base}/components/nope")), 404);
    assert_eq!(code(&[], &format!("{base}/elsewhere")), 404);
    assert_eq!(code(&["-r", "5000-"], &gw_url), 416);
    assert_eq!(code(&["-X", "POST"], &gw_url), 405);
    assert_eq!(code(&["-X", "DELETE"], &gw_url), 405);
    let out = run(curl().arg(format!("{base}/components/nope")));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no component nope"));
    let out = run(curl().args(["-r", "9999-", "-D", "-"]).arg(&gw_url));
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        head.contains(&format!("content-range: bytes */{}", gw.len())),
        "{head}"
    );
    // If-None-Match with the ETag: 304
    let inm = format!("If-None-Match: \"{}\"", gw_sha.hex());
    assert_eq!(code(&["-H", &inm], &gw_url), 304);

    // keep-alive: two URLs on one connection (curl reuses it)
    let out = run(curl()
        .args(["-f", "-v", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(&gw_url)
        .arg(format!("{base}/manifest")));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Re-using existing connection"));

    srv.stop();
}

#[test]
fn http_bounds_slow_malformed_and_excess_clients() {
    let src = Arc::new(FixedSource::new([("blob", vec![7u8; 1000])]));
    let opts = HttpOptions {
        max_connections: 2,
        max_head: 1024,
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_millis(500),
    };
    let srv = serve_http(local(), src, opts).unwrap();
    let addr = srv.local_addr();
    let exchange = |bytes: &[u8]| -> String {
        // the previous connection's thread has ended (the test is about
        // one connection at a time, not the bound)
        wait_until(|| srv.active() == 0);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let t = Instant::now();
        let _ = s.read_to_end(&mut out);
        assert!(t.elapsed() < Duration::from_secs(3), "server did not close");
        String::from_utf8_lossy(&out).into_owned()
    };
    // a head that never ends: 408 after the request timeout, then closed
    let r = exchange(b"GET /components/blob HTTP/1.1\r\nHost: x\r\n");
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    // garbage, a bad request line, a missing Host, a body, a huge head
    for (req, status) in [
        (&b"\x00\x01\x02\x03\r\n\r\n"[..], "400"),
        (b"GET\r\n\r\n", "400"),
        (b"GET /components/blob HTTP/1.1\r\n\r\n", "400"),
        (b"GET /components/blob HTTP/3\r\nHost: x\r\n\r\n", "505"),
        (
            b"GET /components/blob HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            "400",
        ),
        (b"GET /components/%zz HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
    ] {
        let r = exchange(req);
        assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{r}");
    }
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 4096));
    huge.extend_from_slice(b"\r\n\r\n");
    let r = exchange(&huge);
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    // a client that connects and says nothing is dropped after the idle time
    let r = exchange(b"");
    assert!(r.is_empty());
    // connections beyond the bound get 503 while two idle ones are held
    wait_until(|| srv.active() == 0);
    let a = TcpStream::connect(addr).unwrap();
    let b = TcpStream::connect(addr).unwrap();
    wait_until(|| srv.active() == 2);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /components/blob HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(srv.refused() >= 1);
    drop((a, b));
    // and it serves again once they are gone
    let r = exchange(b"GET /components/blob HTTP/1.0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with(&"\u{7}".repeat(1000)));
    srv.stop();
}

/// Wait (5 s at most) for a server's threads to reach a state.
fn wait_until(cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out waiting");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tftp_opts() -> TftpOptions {
    TftpOptions {
        timeout: Duration::from_millis(150),
        retries: 2,
        max_transfers: 2,
        ..TftpOptions::default()
    }
}

#[test]
fn tftp_clients_fetch_components_and_are_refused_writes() {
    let (fx, m) = card();
    let srv = serve_tftp(local(), m.clone(), tftp_opts()).unwrap();
    let (host, port) = (
        srv.local_addr().ip().to_string(),
        srv.local_addr().port().to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let check = |path: &Path, name: &str| {
        let c = fx.v1.manifest.component(name).unwrap();
        let data = std::fs::read(path).unwrap();
        assert_eq!(Sha::of(&data), c.sha256, "{name}");
    };

    // tftp-hpa, binary mode, no options: 512-byte blocks
    let p = dir.path().join("gw-hpa");
    let out = run(Command::new(need("tftp"))
        .args(["-m", "binary", &host, &port, "-c", "get", "gateware"])
        .arg(&p));
    assert!(out.status.success());
    check(&p, "gateware");

    // atftp with blksize and tsize; firmware is 3000 bytes = 3 × 1000, so
    // the transfer ends with an empty block
    let p = dir.path().join("fw-atftp");
    let out = run(Command::new(need("atftp"))
        .args(["--option", "blksize 1000", "--option", "tsize 0"])
        .args(["--option", "timeout 2", "-g", "-r", "firmware", "-l"])
        .arg(&p)
        .args([&host, &port]));
    assert!(out.status.success());
    check(&p, "firmware");

    // curl's TFTP client with a small block size, and the manifest
    let p = dir.path().join("cfg-curl");
    let out = run(curl()
        .args(["--tftp-blksize", "64", "-o"])
        .arg(&p)
        .arg(format!("tftp://{host}:{port}/config")));
    assert!(out.status.success());
    check(&p, "config");
    let out = run(curl().arg(format!("tftp://{host}:{port}/manifest.json")));
    assert!(out.status.success());
    assert_eq!(Manifest::from_bytes(&out.stdout).unwrap(), fx.v1.manifest);

    // a missing file: error 1 (File not found)
    let p = dir.path().join("missing");
    let out = run(Command::new("tftp")
        .args(["-m", "binary", &host, &port, "-c", "get", "nope"])
        .arg(&p));
    let msg =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("Error code 1"), "{msg}");
    let out = run(Command::new("atftp")
        .args(["-g", "-r", "nope", "-l"])
        .arg(&p)
        .args([&host, &port]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("file not found"));

    // a write request: error 2 (Access violation), nothing written
    let up = dir.path().join("upload");
    std::fs::write(&up, b"evil firmware").unwrap();
    let out = run(Command::new("tftp")
        .args(["-m", "binary", &host, &port, "-c", "put"])
        .arg(&up)
        .arg("firmware"));
    let msg =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("Error code 2"), "{msg}");
    let out = run(Command::new("atftp")
        .args(["-p", "-r", "firmware", "-l"])
        .arg(&up)
        .args([&host, &port]));
    assert!(!out.status.success());
    assert_eq!(
        m.component("firmware").unwrap(),
        fx.v1.components[1].1,
        "the running image is unchanged"
    );
    srv.stop();
}

fn tftp_error(sock: &UdpSocket) -> Option<(u16, SocketAddr)> {
    let mut buf = [0u8; 1024];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    assert!(
        n >= 5 && buf[..2] == [0, 5],
        "not an ERROR: {:?}",
        &buf[..n]
    );
    assert_eq!(buf[n - 1], 0, "ERROR message not NUL-terminated");
    Some((u16::from_be_bytes([buf[2], buf[3]]), from))
}

#[test]
fn tftp_survives_garbage_stalled_clients_and_bounds_transfers() {
    let text = b"line one\nline two\r\nbare CR\r".to_vec();
    let src = Arc::new(FixedSource::new([
        ("blob", vec![1u8; 1500]),
        ("notes.txt", text.clone()),
    ]));
    let srv = serve_tftp(local(), src.clone(), tftp_opts()).unwrap();
    let addr = srv.local_addr();
    let c = UdpSocket::bind(LOCAL).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();

    // garbage and truncated packets: ERROR 4 (5 for a stray ACK/DATA)
    for (pkt, code) in [
        (&b""[..], 4),
        (b"\x00", 4),
        (b"\x00\x09junk", 4),
        (b"\x00\x01blob", 4),
        (b"\x00\x01blob\0", 4),
        (b"\x00\x01\xff\xfe\0octet\0", 4),
        (b"\x00\x01blob\0octet\0blksize\0", 4),
        (b"\x00\x01blob\0mail\0", 4),
        (b"\x00\x04\x00", 4),
        (b"\x00\x04\x00\x01", 5),
        (b"\x00\x03\x00\x01data", 5),
    ] {
        c.send_to(pkt, addr).unwrap();
        let (got, _) = tftp_error(&c).unwrap_or_else(|| panic!("no ERROR for {pkt:?}"));
        assert_eq!(got, code, "{pkt:?}");
    }
    // an ERROR packet is never answered
    c.send_to(b"\x00\x05\x00\x00bye\0", addr).unwrap();
    assert!(tftp_error(&c).is_none());
    // a large random datagram
    let noise: Vec<u8> = (0..60000u32).map(|i| (i * 7919 % 251) as u8).collect();
    c.send_to(&noise, addr).unwrap();
    assert!(tftp_error(&c).is_some());

    // a stalled client: DATA 1 is sent 1 + retries times, then the
    // transfer is abandoned; the same with an OACK never acknowledged
    let stalled = |rrq: &[u8], first: u16| {
        let s = UdpSocket::bind(LOCAL).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(600)))
            .unwrap();
        s.send_to(rrq, addr).unwrap();
        let mut buf = [0u8; 2048];
        let mut copies = 0;
        let t = Instant::now();
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            assert_eq!(
                u16::from_be_bytes([buf[0], buf[1]]),
                first,
                "{:?}",
                &buf[..n]
            );
            copies += 1;
        }
        assert_eq!(copies, 3, "DATA/OACK sent once and retried twice");
        assert!(t.elapsed() < Duration::from_secs(3));
        s
    };
    stalled(b"\x00\x01blob\0octet\0", 3);
    stalled(b"\x00\x01blob\0octet\0blksize\x001024\0", 6);

    // the bound, on a server with a slower timeout (so that this part
    // does not race its retransmissions): two transfers held, the third
    // is refused as busy
    let srv2 = serve_tftp(
        local(),
        src.clone(),
        TftpOptions {
            timeout: Duration::from_secs(2),
            retries: 1,
            max_transfers: 2,
            ..TftpOptions::default()
        },
    )
    .unwrap();
    let addr2 = srv2.local_addr();
    let s1 = UdpSocket::bind(LOCAL).unwrap();
    let s2 = UdpSocket::bind(LOCAL).unwrap();
    s1.send_to(b"\x00\x01blob\0octet\0", addr2).unwrap();
    s2.send_to(b"\x00\x01blob\0octet\0", addr2).unwrap();
    let mut buf = [0u8; 2048];
    s1.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s2.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (_, tid) = s1.recv_from(&mut buf).unwrap();
    assert_ne!(tid, addr2, "a transfer answers from its own port");
    let mut buf2 = [0u8; 2048];
    let (_, tid2) = s2.recv_from(&mut buf2).unwrap();
    assert_eq!(srv2.active(), 2);
    // a packet from a foreign address to a transfer's port: ERROR 5, and
    // the transfer goes on
    c.send_to(b"\x00\x04\x00\x01", tid).unwrap();
    assert_eq!(tftp_error(&c).map(|x| x.0), Some(5));
    c.send_to(b"\x00\x01blob\0octet\0", addr2).unwrap();
    let (code, _) = tftp_error(&c).unwrap();
    assert_eq!(code, 0, "busy");
    assert_eq!(srv2.refused(), 1);
    // s2 gives up with an ERROR: its transfer ends at once
    s2.send_to(b"\x00\x05\x00\x00cancelled\0", tid2).unwrap();
    // s1 finishes its transfer by hand: ACK 1 → DATA 2 … ACK 3 (1500 = 2×512 + 476)
    let mut got = buf[4..516].to_vec();
    for block in 1u16..=3 {
        s1.send_to(&[0, 4, (block >> 8) as u8, block as u8], tid)
            .unwrap();
        if block < 3 {
            let (n, _) = s1.recv_from(&mut buf).unwrap();
            assert_eq!(buf[..4], [0, 3, 0, block as u8 + 1]);
            got.extend_from_slice(&buf[4..n]);
        }
    }
    assert_eq!(got, vec![1u8; 1500]);
    // both transfers are over; the servers still serve
    wait_until(|| srv2.active() == 0);
    assert_eq!(srv2.finished(), 2);
    let out = run(curl().arg(format!("tftp://{addr2}/blob")));
    assert_eq!(out.stdout, vec![1u8; 1500]);
    srv2.stop();
    wait_until(|| srv.active() == 0);
    let out = run(curl().arg(format!("tftp://{addr}/blob")));
    assert_eq!(out.stdout, vec![1u8; 1500]);
    // netascii (tftp-hpa's default mode) round-trips line ends
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes");
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let out = run(Command::new(need("tftp"))
        .args(["-m", "netascii", &host, &port, "-c", "get", "notes.txt"])
        .arg(&p));
    assert!(out.status.success());
    assert_eq!(std::fs::read(&p).unwrap(), text);
    srv.stop();
}

/// A proxy in front of an HTTP server that cuts the first response after
/// `cut` bytes and counts the bytes of every response it relays. With
/// `strip_range` it removes `Range` from requests (a server that ignores
/// ranges).
struct Proxy {
    addr: SocketAddr,
    relayed: Arc<Mutex<Vec<usize>>>,
}

fn proxy(upstream: SocketAddr, cut: usize, strip_range: bool) -> Proxy {
    let l = TcpListener::bind(LOCAL).unwrap();
    let addr = l.local_addr().unwrap();
    let relayed = Arc::new(Mutex::new(Vec::new()));
    let rel = relayed.clone();
    std::thread::spawn(move || {
        for (i, conn) in l.incoming().enumerate() {
            let Ok(mut down) = conn else { return };
            down.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if down.read(&mut b).unwrap_or(0) == 0 {
                    break;
                }
                head.push(b[0]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let text: String = text
                .split_inclusive("\r\n")
                .filter(|l| !(strip_range && l.to_ascii_lowercase().starts_with("range:")))
                .collect();
            let mut up = TcpStream::connect(upstream).unwrap();
            up.write_all(text.as_bytes()).unwrap();
            let mut resp = Vec::new();
            let _ = up.read_to_end(&mut resp);
            let n = if i == 0 {
                cut.min(resp.len())
            } else {
                resp.len()
            };
            let _ = down.write_all(&resp[..n]);
            rel.lock().unwrap().push(n);
            // drop: the connection closes mid-body on the first
        }
    });
    Proxy { addr, relayed }
}

#[test]
fn fetch_resumes_a_cut_download_and_the_package_verifies() {
    let (fx, m) = card();
    let pkg = fx.v2.full.clone();
    let total = pkg.len() as u64;
    let src = Arc::new(FixedSource::new([("v2.hpkg", pkg.clone())]));
    let srv = serve_http(local(), src, HttpOptions::default()).unwrap();
    let px = proxy(srv.local_addr(), 4000, false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.hpkg");
    let url = format!("http://{}/components/v2.hpkg", px.addr);
    let opts = FetchOptions {
        retry_delay: Duration::from_millis(10),
        read_timeout: Duration::from_secs(2),
        ..FetchOptions::default()
    };
    let mut seen = Vec::new();
    let r = fetch_to_file(&url, &path, &opts, &mut |held, t| seen.push((held, t))).unwrap();
    assert_eq!(r.total, total);
    assert_eq!(r.attempts, 2);
    assert_eq!(r.restarts, 0);
    assert_eq!(r.etag, Some(format!("\"{}\"", Sha::of(&pkg).hex())));
    let relayed = px.relayed.lock().unwrap().clone();
    assert_eq!(relayed.len(), 2);
    assert_eq!(relayed[0], 4000);
    // the resumed response carried only the rest (plus its head)
    let resumed_at = r.resumed_from[0];
    assert!(resumed_at > 0 && resumed_at < 4000, "{resumed_at}");
    assert!(
        (relayed[1] as u64) < total && (relayed[1] as u64) < total - resumed_at + 600,
        "resume moved {} bytes of {total}",
        relayed[1]
    );
    assert_eq!(
        r.received, total,
        "each body byte came over the network once"
    );
    assert_eq!(seen.last(), Some(&(total, Some(total))));
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress is monotonic"
    );
    assert!(!dir.path().join("v2.hpkg.etag").exists());
    // the package verifies, and installs on the card
    let f = std::fs::File::open(&path).unwrap();
    let p = read_package(
        f,
        &[fx.card.key.verifying_key()],
        NOW,
        PackageLimits::default(),
    )
    .unwrap();
    assert_eq!(p.manifest, fx.v2.manifest);
    let rep = m
        .install_package(std::fs::File::open(&path).unwrap(), NOW, false)
        .unwrap();
    assert_eq!(rep.version, 2);
    srv.stop();
}

#[test]
fn fetch_resumes_across_calls_and_restarts_when_it_must() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let etag = format!("\"{}\"", Sha::of(&body).hex());
    let src = Arc::new(FixedSource::new([("big", body.clone())]));
    let srv = serve_http(local(), src, HttpOptions::default()).unwrap();
    let url = format!("http://{}/components/big", srv.local_addr());
    let opts = FetchOptions {
        retry_delay: Duration::from_millis(10),
        ..FetchOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let none = &mut |_: u64, _: Option<u64>| {};

    // an earlier process left 150000 bytes and the ETag: the rest only
    let path = dir.path().join("a");
    std::fs::write(&path, &body[..150_000]).unwrap();
    std::fs::write(dir.path().join("a.etag"), &etag).unwrap();
    let r = fetch_to_file(&url, &path, &opts, none).unwrap();
    assert_eq!((r.received, r.restarts), (50_000, 0));
    assert_eq!(r.resumed_from, [150_000]);
    assert_eq!(std::fs::read(&path).unwrap(), body);

    // the ETag kept is not the server's (the file changed): If-Range
    // gets the whole file, the target is truncated and rewritten
    let path = dir.path().join("b");
    std::fs::write(&path, vec![9u8; 190_000]).unwrap();
    std::fs::write(dir.path().join("b.etag"), "\"stale\"").unwrap();
    let r = fetch_to_file(&url, &path, &opts, none).unwrap();
    assert_eq!((r.received, r.restarts), (200_000, 1));
    assert_eq!(std::fs::read(&path).unwrap(), body);

    // already complete: 416 with the same total, nothing transferred
    let mut cur = std::io::Cursor::new(body.clone());
    let r = fetch(&url, &mut cur, Some(&etag), &opts, none).unwrap();
    assert_eq!((r.received, r.total), (0, 200_000));

    // more bytes than the file (junk): 416, start over
    let mut cur = std::io::Cursor::new(vec![0u8; 250_000]);
    let r = fetch(&url, &mut cur, None, &opts, none).unwrap();
    assert_eq!((r.received, r.restarts), (200_000, 1));
    assert_eq!(cur.into_inner(), body);

    // a server that ignores Range: the first cut, the second sends 200
    // with the whole file, which replaces the partial one
    let px = proxy(srv.local_addr(), 100_000, true);
    let mut cur = std::io::Cursor::new(Vec::new());
    let r = fetch(
        &format!("http://{}/components/big", px.addr),
        &mut cur,
        None,
        &opts,
        none,
    )
    .unwrap();
    assert_eq!(r.restarts, 1);
    assert!(r.resumed_from.is_empty());
    assert_eq!(cur.into_inner(), body);

    // typed errors: 404 is not retried; nothing listening is retried, then given up
    let mut cur = std::io::Cursor::new(Vec::new());
    let e = fetch(
        &format!("http://{}/components/none", srv.local_addr()),
        &mut cur,
        None,
        &opts,
        none,
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
    let dead = TcpListener::bind(LOCAL).unwrap().local_addr().unwrap();
    let o = FetchOptions {
        attempts: 2,
        connect_timeout: Duration::from_millis(200),
        ..opts.clone()
    };
    let e = fetch(&format!("http://{dead}/x"), &mut cur, None, &o, none).unwrap_err();
    assert!(matches!(e, FetchError::GaveUp { attempts: 2, .. }), "{e}");
    srv.stop();
}

#[test]
fn a_stalled_server_times_out_the_fetch() {
    // accepts, reads the request, never answers
    let l = TcpListener::bind(LOCAL).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    let opts = FetchOptions {
        attempts: 2,
        read_timeout: Duration::from_millis(200),
        retry_delay: Duration::from_millis(10),
        ..FetchOptions::default()
    };
    let t = Instant::now();
    let mut cur = std::io::Cursor::new(Vec::new());
    let e = fetch(
        &format!("http://{addr}/p"),
        &mut cur,
        None,
        &opts,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::GaveUp { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_module_boots_its_components_from_the_card() {
    use hitless_image::fetch::fetch_components_for;
    let (fx, m) = card();
    let srv = serve_http(local(), m.clone(), HttpOptions::default()).unwrap();
    let base = format!("http://{}", srv.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let opts = FetchOptions::default();
    // an interrupted earlier boot left half of the gateware
    let gw = &fx.v1.components[0].1;
    std::fs::write(dir.path().join("gateware"), &gw[..2500]).unwrap();
    let mut names = Vec::new();
    let got = fetch_components_for(&base, "card", dir.path(), &opts, &mut |n, _, _| {
        if names.last().is_none_or(|l| l != n) {
            names.push(n.to_string());
        }
    })
    .unwrap();
    assert_eq!(got.manifest, fx.v1.manifest);
    assert_eq!(names, ["gateware", "firmware", "config"]);
    assert_eq!(got.received, 2500 + 3000 + 600, "the gateware resumed");
    for (c, path) in &got.files {
        assert_eq!(Sha::of(&std::fs::read(path).unwrap()), c.sha256);
    }
    // a module no component is for fetches nothing
    let none = fetch_components_for(&base, "nobody", dir.path(), &opts, &mut |_, _, _| {});
    assert!(none.unwrap().files.is_empty());
    // a partial file that is not the component's start: caught by the SHA-256
    std::fs::write(dir.path().join("firmware"), vec![0u8; 100]).unwrap();
    let e = fetch_components_for(&base, "card", dir.path(), &opts, &mut |_, _, _| {});
    assert!(
        matches!(e, Err(FetchError::Checksum { ref component }) if component == "firmware"),
        "{e:?}"
    );
    assert!(
        !dir.path().join("firmware").exists(),
        "the bad file is removed"
    );
    srv.stop();
}
