//! The card's image manager in the card process (`hitless-sim serve`,
//! issue 18): packages streamed through the mailbox and DMA, trial boot
//! across restarts of the card process and warm resets, mark-good, the
//! automatic rollback of an image whose self-test fails, refused packages
//! that write nothing, and serving the running image over HTTP and TFTP to
//! the standard clients. (Power cuts are the library's sweep.)

use hitless_driver::backend::vfio_user::VfioUserIo;
use hitless_driver::firmware::{AreaReport, Client, ImageReport};
use hitless_driver::Error;
use hitless_image::package::generate_key;
use hitless_image::{ComponentKind, PackageBuilder};
use hitless_proto::image::cause;
use hitless_proto::Code;
use hitless_sim::serve::CardProcess;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);
const EXPIRES: u64 = 4_000_000_000;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(dir: &Path, key: &Path) -> CardProcess {
    let k = key.to_str().unwrap();
    hitless_sim::serve::spawn_card(
        Path::new(env!("CARGO_BIN_EXE_hitless-sim")),
        dir,
        &["--image-trust", k, "--image-flash-mib", "2"],
        TIMEOUT,
    )
    .unwrap()
}

fn client(p: &CardProcess) -> Client<VfioUserIo> {
    let io = VfioUserIo::connect(&p.socket, 4 << 20, TIMEOUT).unwrap();
    Client::open(io, TIMEOUT).unwrap()
}

/// A gateware blob (an ECP5-like bitstream stand-in) and a firmware text.
fn gateware(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect()
}

fn package(key: &ed25519_dalek::SigningKey, version: u64, firmware: &str, gw: u32) -> Vec<u8> {
    PackageBuilder::new(version, EXPIRES)
        .component(
            "gateware",
            ComponentKind::Gateware,
            &version.to_string(),
            &["fpga"],
            gateware(gw, 300_000),
        )
        .component(
            "firmware",
            ComponentKind::Firmware,
            &version.to_string(),
            &["cpu"],
            firmware.as_bytes().to_vec(),
        )
        .build_signed(key)
}

fn install(c: &mut Client<VfioUserIo>, pkg: &[u8], force: bool) -> Result<u64, Error> {
    let mut calls = 0u64;
    let mut last = 0;
    let r = c.image_install(
        &mut &pkg[..],
        pkg.len() as u64,
        force,
        &mut |sent, total| {
            calls += 1;
            assert!(sent > last && sent <= total);
            last = sent;
        },
    );
    r.map(|i| {
        assert_eq!(last, pkg.len() as u64);
        assert!(calls >= 1);
        i.version
    })
}

fn nvs(dir: &Path) -> Vec<Vec<u8>> {
    (0..2)
        .map(|i| std::fs::read(dir.join(format!("state/nvs{i}.flash"))).unwrap())
        .collect()
}

fn both_good(r: &ImageReport, area: usize, version: u64) {
    for d in 0..2 {
        assert_eq!(
            r.areas[d][area],
            AreaReport {
                state: AreaReport::GOOD,
                version
            },
            "device {d} area {area}: {r:?}"
        );
    }
}

fn refused(e: Error, code: Code, text: &str) {
    match e {
        Error::Firmware {
            code: c, detail, ..
        } => {
            assert_eq!(c, code, "{detail}");
            assert!(detail.contains(text), "{detail}");
        }
        other => panic!("{other}"),
    }
}

fn curl(url: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sSf", "--max-time", "10", url])
        .output()
        .expect("curl is installed (cargo xtask setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn tftp_get(addr: &str, name: &str, to: &Path) -> Vec<u8> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("tftp")
        .args(["-m", "binary", host, port, "-c", "get", name])
        .arg(to)
        .output()
        .expect("tftp-hpa is installed (cargo xtask setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(to).unwrap()
}

#[test]
fn install_trial_boot_mark_good_rollback_and_serve_in_the_card_process() {
    let d = dir("card");
    let key = generate_key(&mut rand::rngs::StdRng::seed_from_u64(18));
    let keyfile = d.join("trusted.pub");
    let hex: String = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&keyfile, hex).unwrap();
    let v1 = package(&key, 1, "hitless firmware 1\nselftest=pass\n", 1);
    let v2 = package(&key, 2, "hitless firmware 2\nselftest=pass\n", 2);
    let broken = package(&key, 3, "hitless firmware 3\nselftest=fail\n", 3);

    // First start: the card creates its NVS, blank: needs a fresh install.
    let p = start(&d, &keyfile);
    let mut c = client(&p);
    let s = c.image_status().unwrap();
    assert_eq!(s.state, ImageReport::NEEDS_FRESH, "{s:?}");
    assert_eq!(install(&mut c, &v1, false).unwrap(), 1);
    let s = c.image_status().unwrap();
    assert_eq!(
        (s.state, s.version, s.trial),
        (ImageReport::RUNNING, 1, false)
    );
    both_good(&s, s.area as usize, 1);

    // Refused packages write nothing: tampered, unsigned, untrusted key,
    // truncated (the card has the whole length), older (anti-rollback).
    let before = nvs(&d);
    let mut tampered = v2.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 0x40;
    refused(
        install(&mut c, &tampered, false).unwrap_err(),
        Code::Invalid,
        "does not match its SHA-256",
    );
    let unsigned = PackageBuilder::new(2, EXPIRES)
        .component("firmware", ComponentKind::Firmware, "2", &[], b"x".to_vec())
        .build_unsigned();
    refused(
        install(&mut c, &unsigned, false).unwrap_err(),
        Code::AuthFailed,
        "not signed",
    );
    let stranger = generate_key(&mut rand::rngs::StdRng::seed_from_u64(99));
    refused(
        install(&mut c, &package(&stranger, 2, "x", 2), false).unwrap_err(),
        Code::AuthFailed,
        "untrusted key",
    );
    let v0 = package(&key, 0, "hitless firmware 0\n", 0);
    refused(
        install(&mut c, &v0, false).unwrap_err(),
        Code::Permission,
        "lower than the installed",
    );
    assert!(nvs(&d) == before, "a refused package changed the NVS");
    // A chunk that does not continue an upload is refused.
    let stray = hitless_proto::Request::ImageInstall {
        total: 10_000,
        offset: 5,
        addr: 0,
        len: 5,
        force: false,
    };
    let (code, _) = c.raw(&stray.encode().finish()).unwrap();
    assert_eq!(code, Code::Invalid);
    // v2: install, activate, restart the card process: trial boot.
    assert_eq!(install(&mut c, &v2, false).unwrap(), 2);
    let s = c.image_activate().unwrap();
    assert!(s.alt_boot && !s.trial && s.version == 1, "{s:?}");
    drop(c);
    drop(p);
    let p = start(&d, &keyfile);
    let mut c = client(&p);
    let s = c.image_status().unwrap();
    assert_eq!((s.version, s.trial, s.boot_count), (2, true, 1), "{s:?}");
    assert!(s.deadline.is_some());
    // A second install during the trial is refused.
    refused(
        install(&mut c, &v2, false).unwrap_err(),
        Code::Invalid,
        "trial",
    );
    let s = c.image_mark_good().unwrap();
    assert_eq!((s.version, s.trial, s.alt_boot), (2, false, false), "{s:?}");
    assert_eq!(s.current_area, s.area);
    both_good(&s, s.area as usize, 2);
    both_good(&s, 1 - s.area as usize, 1);
    drop(c);
    drop(p);
    let p = start(&d, &keyfile);
    let mut c = client(&p);
    let s = c.image_status().unwrap();
    assert_eq!((s.version, s.trial), (2, false), "{s:?}");

    // Serve the current image; curl and tftp get its bytes.
    let s = c
        .image_serve(Some("127.0.0.1:0".into()), Some("127.0.0.1:0".into()))
        .unwrap();
    let (http, tftp) = (s.http.clone().unwrap(), s.tftp.clone().unwrap());
    assert_eq!(
        curl(&format!("http://{http}/components/firmware")),
        b"hitless firmware 2\nselftest=pass\n"
    );
    let m = hitless_image::Manifest::from_bytes(&curl(&format!("http://{http}/manifest"))).unwrap();
    assert_eq!(m.version, 2);
    assert_eq!(
        tftp_get(&tftp, "gateware", &d.join("gw")),
        gateware(2, 300_000)
    );
    let s = c.image_serve(None, None).unwrap();
    assert!(s.http.is_none() && s.tftp.is_none());

    // A broken image: installed and activated, its firmware fails the
    // self-test at the trial boot: the card rolls back by itself.
    assert_eq!(install(&mut c, &broken, false).unwrap(), 3);
    c.image_activate().unwrap();
    drop(c);
    drop(p);
    let p = start(&d, &keyfile);
    let mut c = client(&p);
    let s = c.image_status().unwrap();
    assert_eq!((s.version, s.trial, s.alt_boot), (2, false, false), "{s:?}");
    assert_eq!(s.last_rollback, Some((cause::SELF_TEST, 2)), "{s:?}");
    assert!(
        s.notes.iter().any(|n| n.contains("self-test")),
        "{:?}",
        s.notes
    );
    // The same through a warm reset (a card boot without a restart).
    c.image_activate().unwrap();
    drop(c);
    let reply = hitless_sim::serve::control_request(&p.control, "warm-reset", TIMEOUT).unwrap();
    assert!(!reply.is_empty());
    let mut c = client(&p);
    let s = c.image_status().unwrap();
    assert_eq!((s.version, s.trial, s.alt_boot), (2, false, false), "{s:?}");
    assert_eq!(s.last_rollback, Some((cause::SELF_TEST, 2)), "{s:?}");

    // mark-good outside a trial is refused.
    refused(
        c.image_mark_good().map(|_| ()).unwrap_err(),
        Code::Invalid,
        "not running a trial",
    );
    drop(c);
    drop(p);
    let _ = std::fs::remove_dir_all(&d);
}
