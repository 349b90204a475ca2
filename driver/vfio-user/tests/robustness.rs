//! The server against hostile input: a table of hand-made bad messages and
//! a property test with random byte strings. After each, a good client must
//! still be served, and the device must never have been called out of range.

mod common;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use hitless_vfio_user::proto::{
    cmd, dma_flags, errno, flags, irq_set_flags, DmaMap, DmaUnmap, IrqInfo, IrqSet, RegionAccess,
    RegionInfo, HEADER_SIZE,
};
use hitless_vfio_user::{card, Limits};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const T: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
enum Fd {
    Sealed(u64),
    Unsealed(u64),
    Event,
}

impl Fd {
    fn make(self) -> OwnedFd {
        match self {
            Fd::Sealed(n) => sealed_memfd(n),
            Fd::Unsealed(n) => unsealed_memfd(n),
            Fd::Event => eventfd(),
        }
    }
}

/// What the server must answer: `None` = success reply, `Some(e)` = error
/// reply with errno `e`.
type Reply = Option<u32>;

struct Case {
    name: &'static str,
    /// Send a VERSION first (and consume its reply).
    negotiate: bool,
    /// Chunks to send, each with descriptors attached.
    sends: Vec<(Vec<u8>, Vec<Fd>)>,
    /// Close our write side after sending.
    shutdown: bool,
    /// Replies expected, in order.
    replies: Vec<Reply>,
    /// The server must then close the connection (otherwise it must still
    /// answer a good request on it).
    closes: bool,
}

fn case(name: &'static str, bytes: Vec<u8>, replies: Vec<Reply>, closes: bool) -> Case {
    Case {
        name,
        negotiate: true,
        sends: vec![(bytes, vec![])],
        shutdown: false,
        replies,
        closes,
    }
}

fn region_read(offset: u64, region: u32, count: u32) -> Vec<u8> {
    message(
        1,
        cmd::REGION_READ,
        &RegionAccess {
            offset,
            region,
            count,
        }
        .encode(),
    )
}

fn region_write(offset: u64, region: u32, count: u32, data: &[u8]) -> Vec<u8> {
    message(
        1,
        cmd::REGION_WRITE,
        &RegionAccess {
            offset,
            region,
            count,
        }
        .encode_with(data),
    )
}

fn dma_map(flags: u32, offset: u64, address: u64, size: u64) -> Vec<u8> {
    message(
        2,
        cmd::DMA_MAP,
        &DmaMap {
            argsz: 32,
            flags,
            offset,
            address,
            size,
        }
        .encode(),
    )
}

fn set_irqs(flags: u32, index: u32, start: u32, count: u32) -> Vec<u8> {
    message(
        3,
        cmd::DEVICE_SET_IRQS,
        &IrqSet {
            argsz: 20,
            flags,
            index,
            start,
            count,
        }
        .encode(),
    )
}

/// A one-message case with descriptors: name, bytes, fds, replies.
type FdCase = (&'static str, Vec<u8>, Vec<Fd>, Vec<Reply>);

const RW: u32 = dma_flags::READ | dma_flags::WRITE;
const EVT: u32 = irq_set_flags::DATA_EVENTFD | irq_set_flags::ACTION_TRIGGER;
const INVAL: Reply = Some(errno::EINVAL);

fn cases() -> Vec<Case> {
    let limit = Limits::default().max_message_size();
    let mut v = vec![
        Case {
            name: "truncated header, then EOF",
            negotiate: false,
            sends: vec![(vec![0, 0, 1, 0, 32, 0, 0, 0], vec![])],
            shutdown: true,
            replies: vec![],
            closes: true,
        },
        Case {
            name: "truncated header after VERSION, then EOF",
            negotiate: true,
            sends: vec![(vec![1, 0, 4, 0], vec![])],
            shutdown: true,
            replies: vec![],
            closes: true,
        },
        case(
            "size 0",
            message_sized(1, cmd::DEVICE_GET_INFO, 0, 0, &[]),
            vec![],
            true,
        ),
        case(
            "size below header",
            message_sized(1, cmd::DEVICE_GET_INFO, 0, 15, &[0; 8]),
            vec![],
            true,
        ),
        case(
            "size 4 GiB",
            message_sized(1, cmd::REGION_WRITE, 0, u32::MAX, &[0; 64]),
            vec![Some(errno::EMSGSIZE)],
            true,
        ),
        case(
            "size one above the limit",
            message_sized(1, cmd::REGION_WRITE, 0, limit + 1, &[0; 64]),
            vec![Some(errno::EMSGSIZE)],
            true,
        ),
        Case {
            name: "payload shorter than declared, then EOF",
            negotiate: true,
            sends: vec![(
                message_sized(1, cmd::REGION_WRITE, 0, 100, &[0; 40]),
                vec![],
            )],
            shutdown: true,
            replies: vec![],
            closes: true,
        },
        case(
            "payload shorter than declared, then silence",
            message_sized(1, cmd::REGION_WRITE, 0, 100, &[0; 40]),
            vec![],
            true,
        ),
        case(
            "header only, then silence",
            message_sized(1, cmd::DEVICE_RESET, 0, 17, &[]),
            vec![],
            true,
        ),
        Case {
            name: "command before VERSION",
            negotiate: false,
            sends: vec![(get_info_message(1), vec![])],
            shutdown: false,
            replies: vec![INVAL],
            closes: true,
        },
        Case {
            name: "VERSION without NUL terminator",
            negotiate: false,
            sends: vec![(
                message(0, cmd::VERSION, b"\x00\x00\x00\x00{\"capabilities\":{}}"),
                vec![],
            )],
            shutdown: false,
            replies: vec![None],
            closes: false,
        },
        Case {
            name: "VERSION without JSON",
            negotiate: false,
            sends: vec![(message(0, cmd::VERSION, b"\x00\x00\x05\x00"), vec![])],
            shutdown: false,
            replies: vec![None],
            closes: false,
        },
        Case {
            name: "VERSION with broken JSON",
            negotiate: false,
            sends: vec![(
                message(0, cmd::VERSION, b"\x00\x00\x00\x00{\"capabilities\":\0"),
                vec![],
            )],
            shutdown: false,
            replies: vec![INVAL],
            closes: true,
        },
        Case {
            name: "VERSION with deeply nested JSON",
            negotiate: false,
            sends: vec![(
                message(
                    0,
                    cmd::VERSION,
                    &[&b"\x00\x00\x00\x00"[..], &[b'['; 100_000]].concat(),
                ),
                vec![],
            )],
            shutdown: false,
            replies: vec![INVAL],
            closes: true,
        },
        Case {
            name: "VERSION with non-UTF-8 text",
            negotiate: false,
            sends: vec![(
                message(0, cmd::VERSION, b"\x00\x00\x00\x00\xff\xfe\xfd"),
                vec![],
            )],
            shutdown: false,
            replies: vec![INVAL],
            closes: true,
        },
        Case {
            name: "VERSION major 2",
            negotiate: false,
            sends: vec![(message(0, cmd::VERSION, b"\x02\x00\x00\x00"), vec![])],
            shutdown: false,
            replies: vec![Some(errno::ENOTSUP)],
            closes: true,
        },
        Case {
            name: "VERSION major 1 (not the specification's 0)",
            negotiate: false,
            sends: vec![(message(0, cmd::VERSION, b"\x01\x00\x00\x00"), vec![])],
            shutdown: false,
            replies: vec![Some(errno::ENOTSUP)],
            closes: true,
        },
        Case {
            name: "VERSION with a non-numeric max_msg_fds",
            negotiate: false,
            sends: vec![(
                message(
                    0,
                    cmd::VERSION,
                    b"\x00\x00\x00\x00{\"capabilities\":{\"max_msg_fds\":\"8\"}}\0",
                ),
                vec![],
            )],
            shutdown: false,
            replies: vec![INVAL],
            closes: true,
        },
        Case {
            name: "VERSION with no page size in common",
            negotiate: false,
            sends: vec![(
                message(
                    0,
                    cmd::VERSION,
                    b"\x00\x00\x00\x00{\"capabilities\":{\"pgsizes\":8192}}\0",
                ),
                vec![],
            )],
            shutdown: false,
            replies: vec![Some(errno::ENOTSUP)],
            closes: true,
        },
        Case {
            name: "VERSION payload of 2 bytes",
            negotiate: false,
            sends: vec![(message(0, cmd::VERSION, b"\x00\x00"), vec![])],
            shutdown: false,
            replies: vec![INVAL],
            closes: true,
        },
        case("second VERSION", version_message(), vec![INVAL], false),
        case(
            "reply-type message from the client",
            message_sized(1, cmd::DEVICE_GET_INFO, flags::TYPE_REPLY, 16, &[]),
            vec![],
            true,
        ),
        case(
            "type 0xf message",
            message_sized(1, cmd::DEVICE_GET_INFO, 0xf, 20, &[0; 4]),
            vec![],
            true,
        ),
        case(
            "unknown command with a payload is skipped exactly",
            [message(1, 99, &[0xaa; 37]), get_info_message(2)].concat(),
            vec![Some(errno::ENOSYS), None],
            false,
        ),
        case(
            "unknown command 0xffff",
            message(1, 0xffff, &[]),
            vec![Some(errno::ENOSYS)],
            false,
        ),
        case(
            "GET_REGION_IO_FDS is not implemented",
            message(1, cmd::DEVICE_GET_REGION_IO_FDS, &[0; 16]),
            vec![Some(errno::ENOSYS)],
            false,
        ),
        case(
            "server-to-client DMA_READ sent by a client",
            message(1, cmd::DMA_READ, &[0; 16]),
            vec![Some(errno::ENOSYS)],
            false,
        ),
        case(
            "unknown command with NO_REPLY",
            [message_sized(1, 77, flags::NO_REPLY, 20, &[1, 2, 3, 4])].concat(),
            vec![],
            false,
        ),
        case(
            "region read near 2^64",
            region_read(u64::MAX - 3, 0, 4),
            vec![INVAL],
            false,
        ),
        case(
            "region read straddling the end",
            region_read(card::BAR0_SIZE - 2, 0, 4),
            vec![INVAL],
            false,
        ),
        case(
            "region read past the end",
            region_read(card::BAR0_SIZE, 0, 4),
            vec![INVAL],
            false,
        ),
        case(
            "region read of 3 bytes",
            region_read(0, 0, 3),
            vec![INVAL],
            false,
        ),
        case(
            "region read of 0 bytes",
            region_read(0, 0, 0),
            vec![INVAL],
            false,
        ),
        case(
            "region read of 2^31 bytes",
            region_read(0, 0, 1 << 31),
            vec![INVAL],
            false,
        ),
        case(
            "region read of twice BAR0",
            region_read(0, 0, (2 * card::BAR0_SIZE) as _),
            vec![INVAL],
            false,
        ),
        case(
            "region read misaligned",
            region_read(2, 0, 4),
            vec![INVAL],
            false,
        ),
        case(
            "region read of an absent BAR",
            region_read(0, 3, 4),
            vec![INVAL],
            false,
        ),
        case(
            "config space read",
            region_read(0, 7, 64),
            vec![None],
            false,
        ),
        case(
            "config space read past its end",
            region_read(254, 7, 4),
            vec![INVAL],
            false,
        ),
        case(
            "config space read of 512 bytes",
            region_read(0, 7, 512),
            vec![INVAL],
            false,
        ),
        case(
            "config space write past its end",
            region_write(256, 7, 4, &[0xff; 4]),
            vec![INVAL],
            false,
        ),
        case(
            "config space write near 2^64",
            region_write(u64::MAX - 3, 7, 4, &[0xff; 4]),
            vec![INVAL],
            false,
        ),
        case(
            "MSI-X BAR read past its end",
            region_read(4096, card::MSIX_BAR, 4),
            vec![INVAL],
            false,
        ),
        case(
            "region read of region 2^32-1",
            region_read(0, u32::MAX, 4),
            vec![INVAL],
            false,
        ),
        case(
            "region read payload 15 bytes",
            message(1, cmd::REGION_READ, &[0; 15]),
            vec![INVAL],
            false,
        ),
        case(
            "region read payload 17 bytes",
            message(1, cmd::REGION_READ, &[0; 17]),
            vec![INVAL],
            false,
        ),
        case(
            "region write count above data",
            region_write(0, 0, 4, &[1, 2, 3]),
            vec![INVAL],
            false,
        ),
        case(
            "region write count below data",
            region_write(0, 0, 4, &[1, 2, 3, 4, 5]),
            vec![INVAL],
            false,
        ),
        case(
            "region write near 2^64",
            region_write(u64::MAX - 7, 0, 8, &[0; 8]),
            vec![INVAL],
            false,
        ),
        case(
            "region write of 6 bytes",
            region_write(0, 0, 6, &[0; 6]),
            vec![INVAL],
            false,
        ),
        case(
            "region write count 2^32-1, short data",
            region_write(0, 0, u32::MAX, &[0; 8]),
            vec![INVAL],
            false,
        ),
        case(
            "good region write",
            region_write(0x10, 0, 4, &[1, 2, 3, 4]),
            vec![None],
            false,
        ),
        case(
            "bad region read with NO_REPLY",
            message_sized(
                1,
                cmd::REGION_READ,
                flags::NO_REPLY,
                32,
                &RegionAccess {
                    offset: 4096,
                    region: 0,
                    count: 4,
                }
                .encode(),
            ),
            vec![],
            false,
        ),
        case(
            "DMA map without fd",
            dma_map(RW, 0, 0, 4096),
            vec![Some(errno::ENOTSUP)],
            false,
        ),
        case(
            "DMA unmap of nothing",
            message(
                4,
                cmd::DMA_UNMAP,
                &DmaUnmap {
                    argsz: 24,
                    flags: 0,
                    address: 0,
                    size: 4096,
                }
                .encode(),
            ),
            vec![Some(errno::ENOENT)],
            false,
        ),
        case(
            "DMA unmap with unknown flags",
            message(
                4,
                cmd::DMA_UNMAP,
                &DmaUnmap {
                    argsz: 24,
                    flags: 1,
                    address: 0,
                    size: 4096,
                }
                .encode(),
            ),
            vec![INVAL],
            false,
        ),
        case(
            "DMA unmap all",
            message(
                4,
                cmd::DMA_UNMAP,
                &DmaUnmap {
                    argsz: 24,
                    flags: dma_flags::UNMAP_ALL,
                    address: 0,
                    size: 0,
                }
                .encode(),
            ),
            vec![None],
            false,
        ),
        case(
            "DMA unmap short payload",
            message(4, cmd::DMA_UNMAP, &[0; 10]),
            vec![INVAL],
            false,
        ),
        case(
            "GET_REGION_INFO index 9",
            message(
                5,
                cmd::DEVICE_GET_REGION_INFO,
                &RegionInfo {
                    argsz: 32,
                    index: 9,
                    ..Default::default()
                }
                .encode(),
            ),
            vec![INVAL],
            false,
        ),
        case(
            "GET_REGION_INFO index 2^32-1",
            message(
                5,
                cmd::DEVICE_GET_REGION_INFO,
                &RegionInfo {
                    argsz: 32,
                    index: u32::MAX,
                    ..Default::default()
                }
                .encode(),
            ),
            vec![INVAL],
            false,
        ),
        case(
            "GET_REGION_INFO small argsz",
            message(
                5,
                cmd::DEVICE_GET_REGION_INFO,
                &RegionInfo {
                    argsz: 8,
                    ..Default::default()
                }
                .encode(),
            ),
            vec![INVAL],
            false,
        ),
        case(
            "GET_REGION_INFO short payload",
            message(5, cmd::DEVICE_GET_REGION_INFO, &[32, 0, 0, 0]),
            vec![INVAL],
            false,
        ),
        case(
            "GET_IRQ_INFO index 5",
            message(
                6,
                cmd::DEVICE_GET_IRQ_INFO,
                &IrqInfo {
                    argsz: 16,
                    index: 5,
                    ..Default::default()
                }
                .encode(),
            ),
            vec![INVAL],
            false,
        ),
        case(
            "GET_INFO empty payload",
            message(6, cmd::DEVICE_GET_INFO, &[]),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS index 7",
            set_irqs(EVT, 7, 0, 1),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS on an index without vectors",
            set_irqs(EVT, 0, 0, 1),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS start+count overflows",
            set_irqs(EVT, card::IRQ_INDEX, u32::MAX, 2),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS no flags",
            set_irqs(0, card::IRQ_INDEX, 0, 1),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS two data flags",
            set_irqs(EVT | irq_set_flags::DATA_BOOL, card::IRQ_INDEX, 0, 1),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS mask action",
            set_irqs(
                irq_set_flags::DATA_NONE | irq_set_flags::ACTION_MASK,
                card::IRQ_INDEX,
                0,
                1,
            ),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS bool data",
            [set_irqs(
                irq_set_flags::DATA_BOOL | irq_set_flags::ACTION_TRIGGER,
                card::IRQ_INDEX,
                0,
                1,
            )]
            .concat(),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS software trigger",
            set_irqs(
                irq_set_flags::DATA_NONE | irq_set_flags::ACTION_TRIGGER,
                card::IRQ_INDEX,
                0,
                1,
            ),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS unknown flag bits",
            set_irqs(EVT | 1 << 9, card::IRQ_INDEX, 0, 1),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS short payload",
            message(3, cmd::DEVICE_SET_IRQS, &[20, 0, 0, 0, 0]),
            vec![INVAL],
            false,
        ),
        case(
            "SET_IRQS deassign without fds",
            set_irqs(EVT, card::IRQ_INDEX, 0, 1),
            vec![None],
            false,
        ),
        case(
            "SET_IRQS disable all",
            set_irqs(
                irq_set_flags::DATA_NONE | irq_set_flags::ACTION_TRIGGER,
                card::IRQ_INDEX,
                0,
                0,
            ),
            vec![None],
            false,
        ),
        case(
            "RESET with a payload",
            message(7, cmd::DEVICE_RESET, &[1, 2, 3]),
            vec![None],
            false,
        ),
    ];
    let fd_cases: Vec<FdCase> = vec![
        (
            "DMA map of size 0",
            dma_map(RW, 0, 0, 0),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map larger than the fd",
            dma_map(RW, 0, 0, 8192),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map offset past the fd",
            dma_map(RW, 4096, 0, 4096),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map offset+size overflows",
            dma_map(RW, u64::MAX - 4095, 0, 4096),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map iova+size overflows",
            dma_map(RW, 0, u64::MAX - 4095, 8192),
            vec![Fd::Sealed(8192)],
            vec![INVAL],
        ),
        (
            "DMA map of 2^64-4096 bytes",
            dma_map(RW, 0, 0, u64::MAX - 4095),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map unaligned iova",
            dma_map(RW, 0, 100, 4096),
            vec![Fd::Sealed(8192)],
            vec![INVAL],
        ),
        (
            "DMA map unaligned size",
            dma_map(RW, 0, 0, 100),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map unknown flags",
            dma_map(RW | 4, 0, 0, 4096),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map short payload",
            message(2, cmd::DMA_MAP, &[32, 0, 0, 0, 3, 0, 0, 0]),
            vec![Fd::Sealed(4096)],
            vec![INVAL],
        ),
        (
            "DMA map of an eventfd",
            dma_map(RW, 0, 0, 4096),
            vec![Fd::Event],
            vec![INVAL],
        ),
        (
            "DMA map of an unsealed memfd (accepted, as QEMU passes them)",
            dma_map(RW, 0, 0, 4096),
            vec![Fd::Unsealed(4096)],
            vec![None],
        ),
        (
            "DMA map with 3 fds",
            dma_map(RW, 0, 0, 4096),
            vec![Fd::Sealed(4096); 3],
            vec![INVAL],
        ),
        (
            "DMA map read-only",
            dma_map(dma_flags::READ, 0, 0x1000, 4096),
            vec![Fd::Sealed(4096)],
            vec![None],
        ),
        (
            "fds on GET_INFO",
            get_info_message(1),
            vec![Fd::Event],
            vec![INVAL],
        ),
        (
            "16 fds on SET_IRQS (above the limit of 8)",
            set_irqs(EVT, card::IRQ_INDEX, 0, 1),
            vec![Fd::Event; 16],
            vec![INVAL],
        ),
        (
            "40 fds (above what one message can carry)",
            set_irqs(EVT, card::IRQ_INDEX, 0, 1),
            vec![Fd::Event; 40],
            vec![INVAL],
        ),
        (
            "SET_IRQS count 1 with 2 fds",
            set_irqs(EVT, card::IRQ_INDEX, 0, 1),
            vec![Fd::Event; 2],
            vec![INVAL],
        ),
        (
            "SET_IRQS good",
            set_irqs(EVT, card::IRQ_INDEX, 0, 1),
            vec![Fd::Event],
            vec![None],
        ),
    ];
    for (name, bytes, fds, replies) in fd_cases {
        v.push(Case {
            name,
            negotiate: true,
            sends: vec![(bytes, fds)],
            shutdown: false,
            replies,
            closes: false,
        });
    }
    v.push(Case {
        name: "overlapping DMA maps",
        negotiate: true,
        sends: vec![
            (dma_map(RW, 0, 0x10000, 8192), vec![Fd::Sealed(8192)]),
            (dma_map(RW, 0, 0x11000, 4096), vec![Fd::Sealed(8192)]),
            (dma_map(RW, 0, 0xf000, 8192), vec![Fd::Sealed(8192)]),
            (dma_map(RW, 0, 0x12000, 4096), vec![Fd::Sealed(8192)]),
        ],
        shutdown: false,
        replies: vec![None, Some(errno::EEXIST), Some(errno::EEXIST), None],
        closes: false,
    });
    v.push(Case {
        name: "too many DMA maps",
        negotiate: true,
        sends: (0..65)
            .map(|i| (dma_map(RW, 0, i * 4096, 4096), vec![Fd::Sealed(4096)]))
            .collect(),
        shutdown: false,
        replies: (0..65)
            .map(|i| if i < 64 { None } else { Some(errno::ENOSPC) })
            .collect(),
        closes: false,
    });
    v
}

fn run_case(srv: &TestServer, c: &Case) {
    let s = if c.negotiate {
        raw_negotiated(&srv.path)
    } else {
        UnixStream::connect(&srv.path).unwrap()
    };
    for (bytes, fds) in &c.sends {
        let owned: Vec<OwnedFd> = fds.iter().map(|f| f.make()).collect();
        // The server may hang up before we are done sending; that is fine.
        if try_send_with_fds(&s, bytes, &borrow(&owned)).is_err() {
            assert!(
                c.closes,
                "{}: send failed on a connection that must stay open",
                c.name
            );
        }
    }
    if c.shutdown {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    for (i, want) in c.replies.iter().enumerate() {
        let (h, _) = read_message(&s, T).unwrap_or_else(|| panic!("{}: reply {i} missing", c.name));
        assert_eq!(h.msg_type(), flags::TYPE_REPLY, "{}", c.name);
        let got = h.is_error().then_some(h.error);
        assert_eq!(got, *want, "{}: reply {i}: {h:?}", c.name);
    }
    if c.closes {
        let t0 = Instant::now();
        assert!(
            closed_within(&s, T),
            "{}: server kept the connection",
            c.name
        );
        assert!(t0.elapsed() < Duration::from_millis(1500), "{}", c.name);
    } else {
        (&s).write_all(&get_info_message(0x7777)).unwrap();
        let (h, p) = read_message(&s, T)
            .unwrap_or_else(|| panic!("{}: connection lost its framing", c.name));
        assert_eq!(
            (h.msg_id, h.is_error(), p.len()),
            (0x7777, false, 16),
            "{}",
            c.name
        );
    }
    drop(s);
    assert_good_client(srv);
    let v = srv.violations();
    assert!(
        v.is_empty(),
        "{}: device called out of range: {v:?}",
        c.name
    );
}

#[test]
fn malformed_messages_end_or_fail_cleanly() {
    let srv = TestServer::start();
    for c in cases() {
        run_case(&srv, &c);
    }
    srv.wait_released();
}

#[test]
fn idle_timeout_ends_a_silent_client() {
    let srv = TestServer::start_with(Limits {
        idle_timeout: Some(Duration::from_millis(200)),
        ..test_limits()
    });
    let s = raw_negotiated(&srv.path);
    let t0 = Instant::now();
    assert!(closed_within(&s, T));
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_good_client(&srv);
}

/// A chunk of hostile input.
fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Raw noise.
        proptest::collection::vec(any::<u8>(), 0..48),
        // A header with a plausible command and a size that may lie.
        (
            any::<u16>(),
            0u16..20,
            -24i64..40,
            prop_oneof![Just(0u32), Just(0x10), any::<u32>()],
            proptest::collection::vec(any::<u8>(), 0..48)
        )
            .prop_map(|(id, command, delta, flags, payload)| {
                let size = (HEADER_SIZE as i64 + payload.len() as i64 + delta).max(0) as u32;
                message_sized(id, command, flags, size, &payload)
            }),
        // A well-framed region access with random fields, biased to the
        // edges of BAR0 (several per chunk, so they run before any framing
        // error ends the connection).
        proptest::collection::vec(
            (
                any::<bool>(),
                prop_oneof![
                    (0u64..1100).prop_map(|x| x * 4),
                    4080u64..4104,
                    any::<u64>(),
                    (0u64..16).prop_map(|x| u64::MAX - x),
                ],
                prop_oneof![3 => Just(0u32), 1 => 1u32..10, 1 => any::<u32>()],
                prop_oneof![
                    Just(1u32),
                    Just(2),
                    Just(4),
                    Just(8),
                    Just(3),
                    Just(0),
                    Just(4096),
                    any::<u32>()
                ],
                proptest::collection::vec(any::<u8>(), 0..16),
            ),
            1..6,
        )
        .prop_map(|accesses| {
            let mut out = Vec::new();
            for (write, offset, region, count, data) in accesses {
                let a = RegionAccess {
                    offset,
                    region,
                    count,
                };
                out.extend(if write {
                    // Data length usually matches `count`, sometimes not.
                    let mut d = data.clone();
                    if count <= 16 && data.len() % 3 != 0 {
                        d.resize(count as usize, 0xee);
                    }
                    message(1, cmd::REGION_WRITE, &a.encode_with(&d))
                } else {
                    message(1, cmd::REGION_READ, &a.encode())
                });
            }
            out
        }),
        // Well-framed other commands with random payloads.
        (
            prop_oneof![
                Just(cmd::DMA_UNMAP),
                Just(cmd::DEVICE_SET_IRQS),
                Just(cmd::DEVICE_GET_REGION_INFO),
                Just(cmd::DEVICE_GET_IRQ_INFO),
                Just(cmd::DMA_MAP),
                Just(cmd::VERSION)
            ],
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(command, payload)| message(9, command, &payload)),
    ]
}

#[test]
fn random_bytes_never_break_the_server() {
    let srv = TestServer::start();
    let mut runner = TestRunner::new(Config {
        cases: 160,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::bool::weighted(0.85),
        proptest::collection::vec(chunk(), 0..6),
    );
    runner
        .run(&strategy, |(negotiate, chunks)| {
            let s = UnixStream::connect(&srv.path).unwrap();
            let mut bytes = if negotiate {
                version_message()
            } else {
                Vec::new()
            };
            bytes.extend(chunks.concat());
            // The server may hang up early: ignore send errors.
            let _ = (&s).write_all(&bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            prop_assert!(closed_within(&s, T), "server did not finish the connection");
            drop(s);
            assert_good_client(&srv);
            let v = srv.violations();
            prop_assert!(v.is_empty(), "device called out of range: {:?}", v);
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_bytes_with_descriptors() {
    let srv = TestServer::start();
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (chunk(), 0usize..20, any::<bool>());
    runner
        .run(&strategy, |(bytes, nfds, memfd)| {
            let s = raw_negotiated(&srv.path);
            let fds: Vec<OwnedFd> = (0..nfds)
                .map(|_| if memfd { sealed_memfd(8192) } else { eventfd() })
                .collect();
            if !bytes.is_empty() {
                let _ = try_send_with_fds(&s, &bytes, &borrow(&fds));
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
            prop_assert!(closed_within(&s, T));
            drop(s);
            assert_good_client(&srv);
            prop_assert!(srv.violations().is_empty());
            Ok(())
        })
        .unwrap();
    srv.wait_released();
    let _ = fds_open_sanity();
}

/// The test process must not leak descriptors: count them.
fn fds_open_sanity() -> usize {
    let n = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(n < 200, "{n} descriptors open: received fds are leaking");
    n
}

#[test]
fn many_connections_do_not_leak_descriptors() {
    let srv = TestServer::start();
    let before = fds_open_sanity();
    for _ in 0..50 {
        let s = raw_negotiated(&srv.path);
        let fds: Vec<OwnedFd> = (0..10).map(|_| eventfd()).collect();
        send_with_fds(&s, &set_irqs(EVT, card::IRQ_INDEX, 0, 1), &borrow(&fds));
        let _ = read_message(&s, T);
        let fd = sealed_memfd(4096);
        send_with_fds(&s, &dma_map(RW, 0, 0, 4096), &[fd.as_fd()]);
        let _ = read_message(&s, T);
    }
    assert_good_client(&srv);
    srv.wait_released();
    let after = fds_open_sanity();
    assert!(
        after <= before + 8,
        "descriptors grew from {before} to {after}"
    );
}
