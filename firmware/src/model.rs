//! What the card must answer, without any of the machinery: the model the
//! property tests compare the firmware (through the driver and the
//! simulated card) against.

use hitless_proto::msg::TierSel;
use std::collections::BTreeMap;

/// One stored set as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSet {
    pub tier: TierSel,
    pub stage: u32,
    pub data: Vec<u8>,
}

/// The sets a card holds, by (app, object).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardModel {
    pub sets: BTreeMap<(u32, u32), ModelSet>,
}

impl CardModel {
    /// Store or replace a set (it moves to `tier`).
    pub fn store(&mut self, app: u32, object: u32, tier: TierSel, stage: u32, data: Vec<u8>) {
        self.sets
            .insert((app, object), ModelSet { tier, stage, data });
    }
    /// Delete; `false` when there was nothing (the card answers NOT_FOUND).
    pub fn delete(&mut self, app: u32, object: u32) -> bool {
        self.sets.remove(&(app, object)).is_some()
    }
    /// A warm reset keeps both tiers.
    pub fn warm_reset(&mut self) {}
    /// A power cycle keeps only the cold-committed sets.
    pub fn power_cycle(&mut self) {
        self.sets.retain(|_, s| s.tier == TierSel::Cold);
    }
    /// Damage to one region of a tier loses nothing: the alternate holds
    /// the same table.
    pub fn damage_one_region(&mut self, _tier: TierSel) {}
    pub fn restore(&self, app: u32, object: u32) -> Option<&[u8]> {
        self.sets.get(&(app, object)).map(|s| &s.data[..])
    }
    /// What FETCH of `stage` delivers to `app`, in object order.
    pub fn at_stage(&self, app: u32, stage: u32) -> Vec<(u32, Vec<u8>)> {
        self.sets
            .iter()
            .filter(|((a, _), s)| *a == app && s.stage == stage)
            .map(|((_, o), s)| (*o, s.data.clone()))
            .collect()
    }
}
