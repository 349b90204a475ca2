//! The shortest end-to-end path: boot, registers, a committed WRITE from an
//! unaligned host buffer, and a READ back to another unaligned address.

use hitless_hdl::contract::{self, flags, perm, reg, BootResult, Descriptor, Opcode, Status};
use hitless_hdl::model::HostMemory;
use hitless_sim::harness::{program_entry, Rings, DATA_ADDR};
use hitless_sim::{CardTiming, SimCard};

#[test]
fn smoke_write_commit_read() {
    let mut card = SimCard::new(CardTiming::default());
    card.wait_boot(100_000).expect("boot");
    assert_eq!(card.read_reg(reg::ID).unwrap(), contract::CONTROLLER_ID);
    assert_eq!(card.read_reg(reg::SCRATCH).unwrap(), 0);
    card.write_reg(reg::SCRATCH, 0xDEAD_BEEF).unwrap();
    assert_eq!(card.read_reg(reg::SCRATCH).unwrap(), 0xDEAD_BEEF);
    let ws = card.read_reg(reg::WARM_STATE).unwrap();
    assert_eq!(BootResult::from_bits(ws), BootResult::Empty);
    let mut rings = Rings::setup(&mut card, 4, 4).unwrap();
    let all = perm::FULL_REGION_WINDOW;
    let key = program_entry(&mut card, 1, 0x123, 0, 1 << 20, all).unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    card.host.write(DATA_ADDR + 3, &data);
    let c = rings
        .exec(
            &mut card,
            Descriptor {
                opcode: Opcode::Write as u8,
                flags: flags::COMMIT,
                tag: 7,
                key,
                host_addr: DATA_ADDR + 3,
                nv_offset: 0,
                len: data.len() as u32,
                ..Default::default()
            },
            1_000_000,
        )
        .unwrap();
    assert_eq!(c.status(), Some(Status::Ok), "{c:?}");
    assert_eq!(c.crc, contract::crc32c(&data));
    assert_eq!(c.tag, 7);
    let c = rings
        .exec(
            &mut card,
            Descriptor {
                opcode: Opcode::Read as u8,
                tag: 8,
                key,
                host_addr: DATA_ADDR + 0x10_0005,
                nv_offset: 0,
                len: data.len() as u32,
                ..Default::default()
            },
            1_000_000,
        )
        .unwrap();
    assert_eq!(c.status(), Some(Status::Ok), "{c:?}");
    let mut back = vec![0u8; data.len()];
    card.host.read(DATA_ADDR + 0x10_0005, &mut back);
    assert_eq!(back, data);
    assert_eq!(c.crc, contract::crc32c(&data));
}
