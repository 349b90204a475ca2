//! The interrupt unit shared by both controllers: `IRQ_STATUS` (set by the
//! sequencer's causes, cleared by W1C writes), `IRQ_MASK`, and the message
//! rule of ARCHITECTURE.md: `irq` pulses once in every cycle in which some
//! bit of `IRQ_STATUS & IRQ_MASK & (IRQ_ENABLE ? 7 : 0)` turns on. A cause
//! newly set while enabled, and one already pending when it is unmasked or
//! `IRQ_ENABLE` is set, are both a bit turning on (MSI-X sends a pending
//! vector on unmask); bits turning on together are one message, a bit set
//! again while it is set is none.
//!
//! Timing shape: the deliverable bits are computed from registers only
//! (status, mask and the controller's `CTRL` register) and registered
//! (`live`); a bit on now that was off in `live` loads the `pulse`
//! flip-flop, which is `irq`. So `irq` is a flip-flop, two edges after
//! the cause's register changes.

use rust_hdl::prelude::*;

/// Width of `IRQ_STATUS` / `IRQ_MASK` (`contract::irq`: COMPLETION, ERROR,
/// BOOT_DONE).
pub const IRQ_BITS: usize = 3;
const _: () = assert!(
    (crate::contract::irq::COMPLETION
        | crate::contract::irq::ERROR
        | crate::contract::irq::BOOT_DONE)
        == (1 << IRQ_BITS) - 1
);

/// `IRQ_STATUS`, `IRQ_MASK` and the interrupt message.
#[derive(LogicBlock, Default)]
pub struct IrqUnit {
    /// Clock.
    pub clock: Signal<In, Clock>,
    /// Synchronous reset, active high: status, mask and message cleared.
    pub reset: Signal<In, Bit>,
    /// Causes raised this cycle (`contract::irq` bits).
    pub raise: Signal<In, Bits<IRQ_BITS>>,
    /// Bits written 1 to `IRQ_STATUS` this cycle (W1C); a bit both set and
    /// cleared in one cycle stays set.
    pub clear: Signal<In, Bits<IRQ_BITS>>,
    /// `IRQ_MASK` is written this cycle with `mask_data`.
    pub mask_write: Signal<In, Bit>,
    pub mask_data: Signal<In, Bits<IRQ_BITS>>,
    /// `CTRL.IRQ_ENABLE` (from the controller's `CTRL` register).
    pub enable: Signal<In, Bit>,
    /// `IRQ_STATUS` (the level).
    pub status: Signal<Out, Bits<IRQ_BITS>>,
    /// `IRQ_MASK`.
    pub mask: Signal<Out, Bits<IRQ_BITS>>,
    /// The interrupt message: high for one cycle per message.
    pub irq: Signal<Out, Bit>,
    status_r: DFF<Bits<IRQ_BITS>>,
    mask_r: DFF<Bits<IRQ_BITS>>,
    // The deliverable bits a cycle ago: a bit on now and off here turns on.
    live: DFF<Bits<IRQ_BITS>>,
    pulse: DFF<Bit>,
    now: Signal<Local, Bits<IRQ_BITS>>,
}

impl Logic for IrqUnit {
    #[hdl_gen]
    fn update(&mut self) {
        dff_setup!(self, clock, status_r, mask_r, live, pulse);
        self.status.next = self.status_r.q.val();
        self.mask.next = self.mask_r.q.val();
        self.irq.next = self.pulse.q.val();
        self.status_r.d.next = (self.status_r.q.val() & !self.clear.val()) | self.raise.val();
        if self.mask_write.val() {
            self.mask_r.d.next = self.mask_data.val();
        }
        // Deliverable causes from registers only; a rising bit is a message.
        self.now.next = 0.into();
        if self.enable.val() {
            self.now.next = self.status_r.q.val() & self.mask_r.q.val();
        }
        self.live.d.next = self.now.val();
        self.pulse.d.next = (self.now.val() & !self.live.q.val()).any();
        if self.reset.val() {
            self.status_r.d.next = 0.into();
            self.mask_r.d.next = 0.into();
            self.live.d.next = 0.into();
            self.pulse.d.next = false;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The unit in rust-hdl's simulator against a cycle model of the rule,
    //! with a scoreboard on every cycle: seeded random stimulus, and the
    //! directed corners of the rule.
    use super::*;

    /// One cycle's inputs.
    #[derive(Clone, Copy, Debug, Default)]
    struct Step {
        set: u8,
        clear: u8,
        mask: Option<u8>,
        enable: bool,
        reset: bool,
    }

    /// The rule as ARCHITECTURE.md states it, a cycle at a time: the
    /// registers as the unit holds them, and `irq` two edges after the
    /// deliverable bits turn on.
    #[derive(Default)]
    struct RefIrq {
        status: u8,
        mask: u8,
        live: u8,
        pulse: bool,
    }

    impl RefIrq {
        /// The outputs in the cycle the step's inputs are applied.
        fn outputs(&self) -> (u8, u8, bool) {
            (self.status, self.mask, self.pulse)
        }
        /// The clock edge at the end of that cycle.
        fn edge(&mut self, s: &Step) {
            let now = if s.enable { self.status & self.mask } else { 0 };
            if s.reset {
                *self = Self::default();
                return;
            }
            self.pulse = now & !self.live != 0;
            self.live = now;
            self.status = (self.status & !s.clear) | s.set;
            if let Some(m) = s.mask {
                self.mask = m;
            }
        }
    }

    /// Runs `steps` on the unit and the reference; every cycle's outputs
    /// must be equal. Returns the cycles in which `irq` was high.
    fn run(steps: Vec<Step>) -> Vec<usize> {
        let pulses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = pulses.clone();
        let mut sim = Simulation::new();
        sim.add_clock(5, |x: &mut Box<IrqUnit>| x.clock.next = !x.clock.val());
        sim.add_testbench(move |mut sim: Sim<IrqUnit>| {
            let mut x = sim.init()?;
            let mut r = RefIrq::default();
            // Start from reset, as the controllers do.
            x.reset.next = true;
            wait_clock_cycle!(sim, clock, x);
            for (cycle, s) in steps.iter().enumerate() {
                x.reset.next = s.reset;
                x.raise.next = u64::from(s.set).into();
                x.clear.next = u64::from(s.clear).into();
                x.mask_write.next = s.mask.is_some();
                x.mask_data.next = u64::from(s.mask.unwrap_or(0)).into();
                x.enable.next = s.enable;
                let (status, mask, irq) = r.outputs();
                sim_assert_eq!(
                    sim,
                    x.status.val(),
                    Bits::<IRQ_BITS>::from(u64::from(status)),
                    x
                );
                sim_assert_eq!(
                    sim,
                    x.mask.val(),
                    Bits::<IRQ_BITS>::from(u64::from(mask)),
                    x
                );
                sim_assert_eq!(sim, x.irq.val(), irq, x);
                if irq {
                    if let Ok(mut p) = seen.lock() {
                        p.push(cycle);
                    }
                }
                r.edge(s);
                wait_clock_cycle!(sim, clock, x);
            }
            sim.done(x)
        });
        let mut uut = IrqUnit::default();
        uut.connect_all();
        sim.run(Box::new(uut), 1_000_000).unwrap();
        let p = pulses.lock().unwrap().clone();
        p
    }

    /// Quiet cycles with interrupts enabled or not.
    fn idle(n: usize, enable: bool) -> Vec<Step> {
        vec![
            Step {
                enable,
                ..Default::default()
            };
            n
        ]
    }

    /// Seeded random set / W1C clear / mask / enable traffic and the odd
    /// reset, 20,000 cycles, compared every cycle; the run must contain
    /// messages of both kinds (a cause raised while enabled, a pending one
    /// delivered on unmask or enable) for the comparison to mean something.
    #[test]
    fn irq_unit_matches_the_rule_on_random_traffic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let mut steps = Vec::new();
        let mut enable = false;
        for _ in 0..20_000 {
            if rng.gen_bool(0.05) {
                enable = !enable;
            }
            steps.push(Step {
                set: if rng.gen_bool(0.15) {
                    rng.gen_range(1..8)
                } else {
                    0
                },
                clear: if rng.gen_bool(0.15) {
                    rng.gen_range(1..8)
                } else {
                    0
                },
                mask: rng.gen_bool(0.08).then(|| rng.gen_range(0..8)),
                enable,
                reset: rng.gen_bool(0.001),
            });
        }
        // Classify the reference's messages: the bits turning on were
        // newly set, or already pending (delivered on unmask or enable).
        let (mut by_set, mut by_unmask) = (0, 0);
        let mut r = RefIrq::default();
        let mut prev_status = 0u8;
        for s in &steps {
            let now = if s.enable { r.status & r.mask } else { 0 };
            let rising = now & !r.live;
            if rising != 0 && !s.reset {
                if rising & prev_status == rising {
                    by_unmask += 1;
                } else {
                    by_set += 1;
                }
            }
            prev_status = r.status;
            r.edge(s);
        }
        let pulses = run(steps);
        assert!(pulses.len() > 200, "only {} messages", pulses.len());
        assert!(by_set > 0 && by_unmask > 0, "{by_set} / {by_unmask}");
    }

    fn set(bits: u8, enable: bool) -> Step {
        Step {
            set: bits,
            enable,
            ..Default::default()
        }
    }
    fn mask(bits: u8, enable: bool) -> Step {
        Step {
            mask: Some(bits),
            enable,
            ..Default::default()
        }
    }
    fn clear(bits: u8, enable: bool) -> Step {
        Step {
            clear: bits,
            enable,
            ..Default::default()
        }
    }

    #[test]
    fn irq_unit_delivers_a_pending_cause_on_unmask() {
        // BOOT_DONE set while masked: no message; unmasking sends one.
        let mut s = vec![set(4, true)];
        s.extend(idle(5, true));
        s.push(mask(4, true));
        s.extend(idle(5, true));
        assert_eq!(run(s), vec![8]);
    }

    #[test]
    fn irq_unit_delivers_a_pending_cause_on_enable() {
        // Set and unmasked while IRQ_ENABLE is off: the message comes when
        // it is set (a driver enabling interrupts after reset sees BOOT_DONE).
        let mut s = vec![mask(7, false), set(4, false)];
        s.extend(idle(5, false));
        s.extend(idle(5, true));
        // Off again and on again with the cause still pending: another.
        s.extend(idle(3, false));
        s.extend(idle(4, true));
        assert_eq!(run(s), vec![8, 16]);
    }

    #[test]
    fn irq_unit_sends_one_message_for_bits_turning_on_together() {
        let mut s = vec![mask(7, true)];
        s.extend(idle(2, true));
        s.push(set(3, true));
        s.extend(idle(5, true));
        // Two pending bits unmasked in one write: one message too.
        s.push(mask(0, true));
        s.push(set(4, true));
        s.extend(idle(3, true));
        s.push(mask(7, true));
        s.extend(idle(4, true));
        assert_eq!(run(s), vec![5, 16]);
    }

    #[test]
    fn irq_unit_sends_nothing_for_a_cause_set_again_while_set() {
        let mut s = vec![mask(7, true), set(2, true)];
        s.extend(idle(4, true));
        s.push(set(2, true));
        s.extend(idle(4, true));
        // A second cause while the first is still set is a message.
        s.push(set(3, true));
        s.extend(idle(4, true));
        assert_eq!(run(s), vec![3, 13]);
    }

    #[test]
    fn irq_unit_clears_with_w1c_and_sends_again_after_it() {
        let mut s = vec![mask(7, true), set(1, true)];
        s.extend(idle(4, true));
        // Writing 0 bits clears nothing, the other bits only those.
        s.push(clear(6, true));
        s.extend(idle(2, true));
        s.push(clear(1, true));
        s.extend(idle(2, true));
        // Cleared: set again, a new message. Set and cleared in one cycle:
        // the cause stays set (and this one is a message too).
        s.push(set(1, true));
        s.extend(idle(4, true));
        s.push(clear(1, true));
        s.extend(idle(2, true));
        s.push(Step {
            set: 1,
            clear: 1,
            enable: true,
            ..Default::default()
        });
        s.extend(idle(4, true));
        assert_eq!(run(s), vec![3, 14, 22]);
    }
}
