//! The full controller under Verilator: an interrupt cause already pending
//! when the host unmasks it is delivered (as MSI-X sends a pending vector
//! on unmask). A driver that enables interrupts after reset sees BOOT_DONE;
//! ERROR and COMPLETION set under the mask are sent when unmasked; one
//! message per cause that becomes deliverable, as the reference model
//! counts them.

use hitless_hdl::contract::{ctrl, flags, irq, reg, Descriptor, Opcode, Status};
use hitless_hdl::model::Model;
use hitless_sim::harness::Rings;
use hitless_sim::{CardTiming, SimCard};

const LIMIT: u64 = 20_000_000;

/// A register write on the card and the model; the card runs a little so
/// the registered pulse is out.
fn write(card: &mut SimCard, model: &mut Model, r: u32, v: u32) {
    card.write_reg(r, v).expect("write");
    model.write_reg(r, v);
    card.run(16);
    assert_eq!(
        card.irq_count(),
        model.irq_pulses(),
        "after writing {v:#x} to {r:#x}: messages (card vs model)"
    );
}

fn booted() -> (SimCard, Model) {
    let mut card = SimCard::new(CardTiming::default());
    card.wait_boot(LIMIT).expect("boot");
    let mut model = Model::new(hitless_hdl::contract::DEFAULT_GEOMETRY);
    model.reset();
    (card, model)
}

#[test]
fn a_pending_boot_done_is_delivered_on_unmask() {
    for mask_first in [true, false] {
        let (mut card, mut m) = booted();
        assert_eq!(card.read_reg(reg::IRQ_STATUS).unwrap(), irq::BOOT_DONE);
        assert_eq!(card.irq_count(), 0, "masked at boot");
        let order = if mask_first {
            [
                (reg::IRQ_MASK, 7),
                (reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE),
            ]
        } else {
            [
                (reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE),
                (reg::IRQ_MASK, 7),
            ]
        };
        write(&mut card, &mut m, order[0].0, order[0].1);
        assert_eq!(card.irq_count(), 0, "only half enabled");
        write(&mut card, &mut m, order[1].0, order[1].1);
        assert_eq!(card.irq_count(), 1, "BOOT_DONE pending on unmask");
        write(&mut card, &mut m, reg::IRQ_MASK, 7);
        write(
            &mut card,
            &mut m,
            reg::CTRL,
            ctrl::ENABLE | ctrl::IRQ_ENABLE,
        );
        assert_eq!(card.irq_count(), 1, "rewriting sends nothing");
        write(&mut card, &mut m, reg::IRQ_MASK, 0);
        write(&mut card, &mut m, reg::IRQ_MASK, irq::BOOT_DONE);
        assert_eq!(card.irq_count(), 2, "unmasked again while pending");
        write(&mut card, &mut m, reg::IRQ_STATUS, irq::BOOT_DONE);
        write(&mut card, &mut m, reg::IRQ_MASK, 0);
        write(&mut card, &mut m, reg::IRQ_MASK, 7);
        assert_eq!(card.irq_count(), 2, "acknowledged: nothing pending");
    }
}

#[test]
fn pending_error_and_completion_are_delivered_on_unmask() {
    let (mut card, _) = booted();
    // The harness enables everything; start from all masked, all clear.
    let mut rings = Rings::setup(&mut card, 2, 2).expect("rings");
    card.write_reg(reg::IRQ_MASK, 0).unwrap();
    card.write_reg(reg::IRQ_STATUS, 7).unwrap();
    card.run(16);
    let n0 = card.irq_count();
    // Entry 0 is not valid: BAD_KEY, with the IRQ flag.
    let c = rings
        .exec(
            &mut card,
            Descriptor {
                opcode: Opcode::Read as u8,
                flags: flags::IRQ,
                key: 0x1230,
                host_addr: 0x4000_0000,
                len: 8,
                ..Default::default()
            },
            LIMIT,
        )
        .expect("completion");
    assert_eq!(c.status(), Some(Status::BadKey));
    card.run(16);
    assert_eq!(
        card.read_reg(reg::IRQ_STATUS).unwrap(),
        irq::ERROR | irq::COMPLETION
    );
    assert_eq!(card.irq_count(), n0, "masked");
    let step = |card: &mut SimCard, r: u32, v: u32| {
        card.write_reg(r, v).unwrap();
        card.run(16);
        card.irq_count() - n0
    };
    assert_eq!(step(&mut card, reg::IRQ_MASK, irq::ERROR), 1, "ERROR");
    assert_eq!(
        step(&mut card, reg::IRQ_MASK, irq::ERROR | irq::COMPLETION),
        2,
        "COMPLETION"
    );
    // IRQ_ENABLE off: the mask alone sends nothing; enabling sends one
    // message for both pending causes.
    assert_eq!(step(&mut card, reg::CTRL, ctrl::ENABLE), 2);
    assert_eq!(step(&mut card, reg::IRQ_MASK, 0), 2);
    assert_eq!(step(&mut card, reg::IRQ_MASK, 7), 2);
    assert_eq!(
        step(&mut card, reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE),
        3,
        "one message on enable"
    );
}
