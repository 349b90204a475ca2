//! The firmware end to end: a host application through the driver's
//! firmware client, the vfio-user transport, the mailbox, the memory
//! manager and the Verilated controller, to NV and back.

use hitless_driver::firmware::{Client, OpenFlags};
use hitless_driver::{CardIo, Error};
use hitless_firmware::msg::{Code, TierSel};
use hitless_hdl::contract::BootResult;
use hitless_sim::inproc::InProcessCard;
use hitless_sim::service::{Control, RegionSel};
use std::time::Duration;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hitless-fw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn client(card: &InProcessCard) -> Client<Box<dyn CardIo>> {
    let io: Box<dyn CardIo> = Box::new(card.connect().unwrap());
    Client::open(io, Duration::from_secs(30)).unwrap()
}

fn code(e: Error) -> Code {
    match e {
        Error::Firmware { code, .. } => code,
        other => panic!("expected a firmware refusal, got {other}"),
    }
}

#[test]
fn stages_tiers_and_fallback() {
    let dir = temp("stages");
    let card = InProcessCard::start(&dir).unwrap();
    let mut fw = client(&card);
    let (s, secret) = fw.open_app(7, OpenFlags::all(), None).unwrap();
    let secret = secret.expect("first open hands out the secret");
    fw.store(&s, 1, 0, 0, false, b"warm, stage 0").unwrap();
    fw.store(&s, 2, 0, 1, true, b"cold, stage 1").unwrap();
    fw.store(&s, 3, 0, 1, false, &vec![0xAB; 5000]).unwrap();
    assert_eq!(fw.list(&s).unwrap().len(), 3);
    // Before any announcement, FETCH refuses.
    assert_eq!(code(fw.fetch(&s, 0).unwrap_err()), Code::NotYet);

    // Warm reset: everything comes back; the session is gone (reopen with
    // the secret), the stage announcements start over.
    drop(fw);
    card.control(Control::WarmReset).unwrap();
    let mut fw = client(&card);
    assert_eq!(
        code(fw.open_app(7, OpenFlags::all(), None).unwrap_err()),
        Code::AuthFailed,
        "a second open without the secret is refused"
    );
    let (s, again) = fw.open_app(7, OpenFlags::all(), Some(&secret)).unwrap();
    assert!(again.is_none());
    let at0 = fw.announce(0).unwrap();
    assert_eq!(at0.len(), 1);
    let got = fw.fetch(&s, 0).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"warm, stage 0");
    assert_eq!(code(fw.fetch(&s, 1).unwrap_err()), Code::NotYet);
    fw.announce(1).unwrap();
    let got = fw.fetch(&s, 1).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1, b"cold, stage 1");
    assert_eq!(got[1].1, vec![0xAB; 5000]);

    // Power cycle: only the cold set survives.
    drop(fw);
    card.control(Control::PowerCycle).unwrap();
    let mut fw = client(&card);
    let (s, _) = fw.open_app(7, OpenFlags::all(), Some(&secret)).unwrap();
    let sets = fw.list(&s).unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!((sets[0].object, sets[0].tier), (2, TierSel::Cold));
    assert_eq!(code(fw.restore(&s, 1).unwrap_err()), Code::NotFound);

    // A damaged active region: the card serves the alternate copy.
    fw.store(&s, 4, 0, 2, true, &vec![0x5A; 20_000]).unwrap();
    drop(fw);
    card.control(Control::FlipBits {
        cold: true,
        region: RegionSel::Active,
        count: 8,
        seed: 3,
    })
    .unwrap();
    let st = card.control(Control::WarmReset).unwrap();
    assert_eq!(
        st.cold_result,
        Some(BootResult::FellBack),
        "the boot scan fell back"
    );
    let mut fw = client(&card);
    let (s, _) = fw.open_app(7, OpenFlags::all(), Some(&secret)).unwrap();
    assert_eq!(fw.restore(&s, 4).unwrap().1, vec![0x5A; 20_000]);
    assert_eq!(fw.restore(&s, 2).unwrap().1, b"cold, stage 1");
    let st = fw.status().unwrap();
    assert_eq!(st.cold.state, 0, "{st:?}");
}
