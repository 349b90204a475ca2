//! VERSION negotiation in both directions (our server against raw
//! proposals, our client against scripted replies), and DMA maps of
//! ordinary, unsealed shared-memory files.

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;
use hitless_vfio_user::proto::{self, cmd, errno, Header, Version};
use hitless_vfio_user::{card, Caps, Client, Error, Limits};

const T: Duration = Duration::from_secs(2);

/// Send a VERSION proposal and return the decoded reply (or the errno).
fn propose(path: &std::path::Path, major: u16, minor: u16, json: &str) -> Result<Version, u32> {
    let s = std::os::unix::net::UnixStream::connect(path).unwrap();
    let mut payload = Vec::new();
    payload.extend_from_slice(&major.to_ne_bytes());
    payload.extend_from_slice(&minor.to_ne_bytes());
    payload.extend_from_slice(json.as_bytes());
    if !json.is_empty() {
        payload.push(0);
    }
    (&s).write_all(&message(0, cmd::VERSION, &payload)).unwrap();
    let (h, p) = read_message(&s, T).expect("VERSION reply");
    if h.is_error() {
        return Err(h.error);
    }
    Ok(Version::decode(&p).expect("well-formed VERSION reply"))
}

fn caps_json(v: &Version) -> serde_json::Value {
    v.json.as_ref().expect("capabilities in the reply")["capabilities"].clone()
}

#[test]
fn server_answers_a_larger_minor_and_bigger_limits_with_its_own() {
    let srv = TestServer::start();
    // A future client: minor 7, limits far above ours, a capability we do
    // not know, page sizes 4 KiB | 2 MiB.
    let v = propose(
        &srv.path,
        0,
        7,
        r#"{"capabilities":{"max_msg_fds":253,"max_data_xfer_size":67108864,
            "max_dma_maps":100000,"pgsizes":2101248,"write_multiple":true,
            "migration":{"pgsize":4096}}}"#,
    )
    .unwrap();
    assert_eq!((v.major, v.minor), (0, 0), "the lower minor");
    let caps = caps_json(&v);
    let limits = Limits::default();
    assert_eq!(caps["max_msg_fds"], limits.max_fds as u64);
    assert_eq!(caps["max_data_xfer_size"], u64::from(limits.max_data_xfer));
    assert_eq!(caps["max_dma_maps"], limits.max_dma_maps as u64);
    assert_eq!(caps["pgsizes"], 4096, "the page sizes both support");
    assert_eq!(
        caps.as_object().unwrap().len(),
        4,
        "nothing we do not support: {caps}"
    );
}

#[test]
fn server_reply_is_a_subset_and_never_larger_than_the_proposal() {
    let srv = TestServer::start();
    // Smaller limits than ours, and only two capabilities proposed.
    let v = propose(
        &srv.path,
        0,
        0,
        r#"{"capabilities":{"max_msg_fds":2,"max_data_xfer_size":4096}}"#,
    )
    .unwrap();
    let caps = caps_json(&v);
    assert_eq!(caps["max_msg_fds"], 2);
    assert_eq!(caps["max_data_xfer_size"], 4096);
    assert_eq!(caps.as_object().unwrap().len(), 2, "{caps}");

    // No capabilities at all (libvfio-user's oldest clients): none back.
    let v = propose(&srv.path, 0, 0, "").unwrap();
    assert_eq!(v.json, None);
    // An empty capability object: an empty one back.
    let v = propose(&srv.path, 0, 0, r#"{"capabilities":{}}"#).unwrap();
    assert_eq!(caps_json(&v), serde_json::json!({}));

    // Major 1 (what this crate spoke before) and 2 are refused.
    assert_eq!(propose(&srv.path, 1, 0, "").unwrap_err(), errno::ENOTSUP);
    assert_eq!(propose(&srv.path, 2, 0, "").unwrap_err(), errno::ENOTSUP);
    // No page size in common, or a zero transfer size.
    assert_eq!(
        propose(&srv.path, 0, 0, r#"{"capabilities":{"pgsizes":2097152}}"#).unwrap_err(),
        errno::ENOTSUP
    );
    assert_eq!(
        propose(
            &srv.path,
            0,
            0,
            r#"{"capabilities":{"max_data_xfer_size":0}}"#
        )
        .unwrap_err(),
        errno::EINVAL
    );
    assert_good_client(&srv);
}

#[test]
fn server_enforces_the_agreed_limits() {
    let srv = TestServer::start();
    let s = std::os::unix::net::UnixStream::connect(&srv.path).unwrap();
    let caps = r#"{"capabilities":{"max_data_xfer_size":8,"max_msg_fds":0}}"#;
    let mut payload = vec![0, 0, 0, 0];
    payload.extend_from_slice(caps.as_bytes());
    (&s).write_all(&message(0, cmd::VERSION, &payload)).unwrap();
    assert!(!read_message(&s, T).unwrap().0.is_error());
    let read = |count: u32| {
        message(
            1,
            cmd::REGION_READ,
            &proto::RegionAccess {
                offset: 0,
                region: card::BAR0,
                count,
            }
            .encode(),
        )
    };
    (&s).write_all(&read(8)).unwrap();
    assert!(
        !read_message(&s, T).unwrap().0.is_error(),
        "8 bytes: agreed"
    );
    (&s).write_all(&read(16)).unwrap();
    let (h, _) = read_message(&s, T).unwrap();
    assert_eq!(h.error, errno::EINVAL, "16 bytes: above the agreed size");
    // max_msg_fds 0: a DMA map's descriptor is one too many.
    let fd = unsealed_memfd(4096);
    let map = proto::DmaMap {
        argsz: 32,
        flags: 3,
        offset: 0,
        address: 0,
        size: 4096,
    }
    .encode();
    send_with_fds(&s, &message(2, cmd::DMA_MAP, &map), &[fd.as_fd()]);
    let (h, _) = read_message(&s, T).unwrap();
    assert_eq!(h.error, errno::EINVAL);
}

/// A fake server that answers VERSION with `reply` (raw payload).
fn fake_version_server(
    reply: Vec<u8>,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::thread::JoinHandle<Version>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let (h, p) = read_message(&s, T).unwrap();
        assert_eq!(h.command, cmd::VERSION);
        let mut m = Header::reply(h.msg_id, h.command, reply.len())
            .unwrap()
            .encode();
        m.extend_from_slice(&reply);
        (&s).write_all(&m).unwrap();
        // Answer GET_INFO too, if the client gets that far.
        if let Some((h, _)) = read_message(&s, Duration::from_millis(500)) {
            let info = proto::DeviceInfo {
                argsz: 16,
                flags: 3,
                num_regions: 9,
                num_irqs: 5,
            }
            .encode();
            let mut m = Header::reply(h.msg_id, h.command, info.len())
                .unwrap()
                .encode();
            m.extend_from_slice(&info);
            let _ = (&s).write_all(&m);
            std::thread::sleep(Duration::from_millis(100));
        }
        Version::decode(&p).unwrap()
    });
    (dir, path, t)
}

fn version_reply(major: u16, minor: u16, json: Option<serde_json::Value>) -> Vec<u8> {
    Version { major, minor, json }.encode()
}

fn protocol_error(r: Result<Client, Error>) -> String {
    match r {
        Err(
            e @ (Error::VersionMajor(_)
            | Error::VersionMinor { .. }
            | Error::VersionShort
            | Error::NotProposed(_)
            | Error::CapabilityLarger { .. }
            | Error::BadCapability(_)
            | Error::NoCommonPageSize),
        ) => e.to_string(),
        Err(other) => panic!("expected a negotiation error, got {other:?}"),
        Ok(_) => panic!("expected a negotiation error, the client accepted the reply"),
    }
}

#[test]
fn client_proposes_the_spec_version() {
    let (_d, path, t) = fake_version_server(version_reply(0, 0, None));
    let c = Client::connect(&path, T).unwrap();
    let proposal = t.join().unwrap();
    assert_eq!((proposal.major, proposal.minor), (0, 0));
    assert_eq!(proposal.caps().unwrap(), Client::proposed_caps());
    // No capabilities in the reply: the spec's defaults, capped by ours.
    let caps = c.server_caps();
    assert_eq!(caps.max_msg_fds, 1);
    assert_eq!(caps.max_data_xfer, 1 << 20);
    assert_eq!(caps.max_dma_maps, 65535);
    assert_eq!(caps.pgsizes, 4096);
}

#[test]
fn client_takes_smaller_server_limits() {
    let reply = Caps {
        max_msg_fds: Some(4),
        max_data_xfer_size: Some(65536),
        max_dma_maps: Some(8),
        pgsizes: Some(4096),
    };
    let (_d, path, t) = fake_version_server(version_reply(0, 0, Some(reply.to_json())));
    let c = Client::connect(&path, T).unwrap();
    t.join().unwrap();
    let caps = c.server_caps();
    assert_eq!(
        (caps.max_msg_fds, caps.max_data_xfer, caps.max_dma_maps),
        (4, 65536, 8)
    );
}

#[test]
fn client_refuses_replies_that_break_the_rules() {
    let ours = Client::proposed_caps();
    let too_many_fds = Caps {
        max_msg_fds: Some(ours.max_msg_fds.unwrap() + 1),
        ..Caps::default()
    };
    let too_big_xfer = Caps {
        max_data_xfer_size: Some(ours.max_data_xfer_size.unwrap() * 2),
        ..Caps::default()
    };
    let other_pages = Caps {
        pgsizes: Some(4096 | (2 << 20)),
        ..Caps::default()
    };
    let zero_xfer = Caps {
        max_data_xfer_size: Some(0),
        ..Caps::default()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("major 1", version_reply(1, 0, None), "major"),
        ("a larger minor", version_reply(0, 1, None), "minor"),
        (
            "more fds than proposed",
            version_reply(0, 0, Some(too_many_fds.to_json())),
            "max_msg_fds",
        ),
        (
            "a larger transfer size",
            version_reply(0, 0, Some(too_big_xfer.to_json())),
            "max_data_xfer_size",
        ),
        (
            "page sizes not proposed",
            version_reply(0, 0, Some(other_pages.to_json())),
            "pgsizes",
        ),
        (
            "a zero transfer size",
            version_reply(0, 0, Some(zero_xfer.to_json())),
            "max_data_xfer_size",
        ),
        (
            "a string where a number belongs",
            version_reply(
                0,
                0,
                Some(serde_json::json!({"capabilities": {"max_dma_maps": "8"}})),
            ),
            "max_dma_maps",
        ),
        ("a short payload", vec![0, 0], "shorter"),
    ];
    for (name, reply, needle) in cases {
        let (_d, path, t) = fake_version_server(reply);
        let msg = protocol_error(Client::connect(&path, T));
        assert!(msg.contains(needle), "{name}: {msg}");
        t.join().unwrap();
    }
}

#[test]
fn caps_negotiation_rules() {
    let ours = Limits::default();
    let ours = Caps {
        max_msg_fds: Some(ours.max_fds as u64),
        max_data_xfer_size: Some(u64::from(ours.max_data_xfer)),
        max_dma_maps: Some(ours.max_dma_maps as u64),
        pgsizes: Some(4096),
    };
    let big = Caps {
        max_msg_fds: Some(1000),
        max_data_xfer_size: Some(1 << 30),
        max_dma_maps: Some(1 << 20),
        pgsizes: Some(u64::MAX),
    };
    let r = Caps::negotiate(&ours, &big).unwrap();
    assert_eq!(r, ours);
    Caps::check_reply(&big, &r).unwrap();
    let small = Caps {
        max_msg_fds: Some(1),
        max_data_xfer_size: None,
        max_dma_maps: Some(2),
        pgsizes: None,
    };
    let r = Caps::negotiate(&ours, &small).unwrap();
    assert_eq!(r, small, "subset of the proposed names, none larger");
    Caps::check_reply(&small, &r).unwrap();
    assert!(Caps::check_reply(&small, &ours).is_err());
}

#[test]
fn unsealed_dma_memory_is_accepted_and_a_shrink_is_an_error_not_a_crash() {
    let srv = TestServer::start();
    let mut c = Client::connect(&srv.path, T).unwrap();
    // A plain temporary file, as a shared-memory backend would be.
    let file = tempfile::tempfile().unwrap();
    file.set_len(8192).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[7u8; 8192], 0).unwrap();
    let iova = 0x100_0000u64;
    c.dma_map(file.as_fd(), iova, 8192, 0).unwrap();
    c.write64(card::BAR0, REG_DMA_ADDR, iova).unwrap();
    c.write32(card::BAR0, REG_DMA_LEN, 8192).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_SUM).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 0);
    assert_eq!(c.read32(card::BAR0, REG_RESULT).unwrap(), 7 * 8192);

    // The client shrinks its file under the mapping. With mmap this would
    // be a SIGBUS in the server; here both directions fail cleanly.
    file.set_len(4096).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_SUM).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 1, "read fault");
    c.write64(card::BAR0, REG_DMA_ADDR, iova + 4096).unwrap();
    c.write32(card::BAR0, REG_DMA_LEN, 16).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_PATTERN).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 1, "write fault");
    assert_eq!(file.metadata().unwrap().len(), 4096, "not grown back");
    // The part still backed works.
    c.write64(card::BAR0, REG_DMA_ADDR, iova).unwrap();
    c.write32(card::BAR0, REG_DOORBELL, CMD_PATTERN).unwrap();
    assert_eq!(c.read32(card::BAR0, REG_STATUS).unwrap(), 0);
    let mut back = [0u8; 16];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, 0).unwrap();
    assert!(back.iter().enumerate().all(|(i, &b)| b == pattern(i)));

    // Still refused: a file too small at map time, size 0, overlap.
    let small = unsealed_memfd(4096);
    assert_eq!(
        c.dma_map(small.as_fd(), 0x200_0000, 8192, 0)
            .unwrap_err()
            .remote_errno(),
        Some(errno::EINVAL as i32)
    );
    assert_eq!(
        c.dma_map(small.as_fd(), 0x200_0000, 0, 0)
            .unwrap_err()
            .remote_errno(),
        Some(errno::EINVAL as i32)
    );
    assert_eq!(
        c.dma_map(small.as_fd(), iova + 4096, 4096, 0)
            .unwrap_err()
            .remote_errno(),
        Some(errno::EEXIST as i32)
    );
    drop(c);
    srv.wait_released();
    assert!(srv.violations().is_empty(), "{:?}", srv.violations());
}

#[test]
fn require_dma_seals_still_refuses_unsealed_memory() {
    let srv = TestServer::start_with(Limits {
        require_dma_seals: true,
        ..test_limits()
    });
    let mut c = Client::connect(&srv.path, T).unwrap();
    let unsealed = unsealed_memfd(4096);
    assert_eq!(
        c.dma_map(unsealed.as_fd(), 0, 4096, 0)
            .unwrap_err()
            .remote_errno(),
        Some(errno::EPERM as i32)
    );
    let sealed = sealed_memfd(4096);
    c.dma_map(sealed.as_fd(), 0, 4096, 0).unwrap();
}
