//! Interrupts on the Verilated board tops (the lite controller and the
//! full one), counted at the board top's `irq` output, cycle-exact: a
//! cause already pending when the host unmasks it is delivered (as MSI-X
//! sends a pending vector on unmask), so a driver that enables interrupts
//! after reset sees BOOT_DONE; so are ERROR and COMPLETION pending under
//! the mask. Exactly one message per cause that becomes deliverable.

use hitless_board_sim::{SerialBoard, Variant};
use hitless_hdl::contract::{ctrl, irq, reg, status, Descriptor, Opcode, CPL_BYTES};

/// A board of `variant` past its boot scan.
fn booted(variant: Variant) -> SerialBoard {
    let mut b = SerialBoard::new(variant);
    for _ in 0..200 {
        let st = b.csr_read(reg::STATUS).expect("STATUS");
        if st & status::BOOT_DONE != 0 {
            return b;
        }
        b.run(50_000);
    }
    panic!("{variant:?}: no BOOT_DONE");
}

fn write(b: &mut SerialBoard, r: u32, v: u32) {
    assert!(b.csr_write(r, v), "write {v:#x} to {r:#x}");
    // The pulse is registered a few cycles after the write's reply.
    b.run(64);
}

fn boot_done_is_delivered_on_unmask(variant: Variant, mask_first: bool) {
    let mut b = booted(variant);
    assert_eq!(b.csr_read(reg::IRQ_STATUS), Some(irq::BOOT_DONE));
    assert_eq!(b.irqs(), 0, "{variant:?}: masked at boot");
    let (first, second) = if mask_first {
        (
            (reg::IRQ_MASK, 7),
            (reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE),
        )
    } else {
        (
            (reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE),
            (reg::IRQ_MASK, 7),
        )
    };
    write(&mut b, first.0, first.1);
    assert_eq!(b.irqs(), 0, "{variant:?}: only half enabled");
    write(&mut b, second.0, second.1);
    assert_eq!(b.irqs(), 1, "{variant:?}: BOOT_DONE pending on unmask");
    // Rewriting what is enabled sends nothing.
    write(&mut b, reg::IRQ_MASK, 7);
    write(&mut b, reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE);
    assert_eq!(b.irqs(), 1, "{variant:?}: nothing new");
    // Masked and unmasked again while pending: delivered again.
    write(&mut b, reg::IRQ_MASK, 0);
    write(&mut b, reg::IRQ_MASK, irq::BOOT_DONE);
    assert_eq!(b.irqs(), 2, "{variant:?}: unmasked again");
    // Acknowledged: nothing pending to deliver.
    write(&mut b, reg::IRQ_STATUS, irq::BOOT_DONE);
    write(&mut b, reg::IRQ_MASK, 0);
    write(&mut b, reg::IRQ_MASK, 7);
    assert_eq!(b.irqs(), 2, "{variant:?}: acknowledged");
}

/// ERROR and COMPLETION set under the mask (a descriptor with the IRQ flag
/// and a key of an invalid entry: BAD_KEY), then unmasked one at a time.
fn error_and_completion_are_delivered_on_unmask(variant: Variant) {
    let mut b = booted(variant);
    let (dq, cq) = (0u32, 0x100u32);
    assert!(b.mem_write(cq, &[0; 4 * CPL_BYTES as usize]));
    let d = Descriptor {
        opcode: Opcode::Read as u8,
        flags: hitless_hdl::contract::flags::IRQ,
        tag: 7,
        key: 0x1230, // entry 0: not valid
        host_addr: 0x2000,
        len: 8,
        ..Default::default()
    };
    assert!(b.mem_write(dq, &d.to_bytes()));
    for (r, v) in [
        (reg::DQ_BASE_LO, dq),
        (reg::DQ_SIZE_LOG2, 2),
        (reg::CQ_BASE_LO, cq),
        (reg::CQ_SIZE_LOG2, 2),
        (reg::IRQ_STATUS, 7),
        (reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE),
        (reg::DQ_TAIL, 1),
    ] {
        write(&mut b, r, v);
    }
    let mut head = 0;
    for _ in 0..100 {
        head = b.csr_read(reg::CQ_HEAD).expect("CQ_HEAD");
        if head == 1 {
            break;
        }
        b.run(10_000);
    }
    assert_eq!(head, 1, "{variant:?}: the descriptor completed");
    assert_eq!(
        b.csr_read(reg::IRQ_STATUS),
        Some(irq::ERROR | irq::COMPLETION),
        "{variant:?}"
    );
    assert_eq!(b.irqs(), 0, "{variant:?}: masked");
    write(&mut b, reg::IRQ_MASK, irq::ERROR);
    assert_eq!(b.irqs(), 1, "{variant:?}: pending ERROR on unmask");
    write(&mut b, reg::IRQ_MASK, irq::ERROR | irq::COMPLETION);
    assert_eq!(b.irqs(), 2, "{variant:?}: pending COMPLETION on unmask");
    // IRQ_ENABLE off: the mask alone sends nothing; enabling sends one
    // message for both pending causes.
    write(&mut b, reg::CTRL, ctrl::ENABLE);
    write(&mut b, reg::IRQ_MASK, 0);
    write(&mut b, reg::IRQ_MASK, irq::ERROR | irq::COMPLETION);
    assert_eq!(b.irqs(), 2, "{variant:?}: IRQ_ENABLE off");
    write(&mut b, reg::CTRL, ctrl::ENABLE | ctrl::IRQ_ENABLE);
    assert_eq!(b.irqs(), 3, "{variant:?}: one message on enable");
}

#[test]
fn lite_delivers_a_pending_boot_done_on_unmask() {
    boot_done_is_delivered_on_unmask(Variant::Lite, true);
    boot_done_is_delivered_on_unmask(Variant::Lite, false);
}

#[test]
fn lite_delivers_pending_error_and_completion_on_unmask() {
    error_and_completion_are_delivered_on_unmask(Variant::Lite);
}

#[test]
fn full_board_delivers_pending_causes_on_unmask() {
    boot_done_is_delivered_on_unmask(Variant::Full, true);
    error_and_completion_are_delivered_on_unmask(Variant::Full);
}
