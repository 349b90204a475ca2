//! The descriptor checks and the address translation ("Checks, in this
//! order" in ARCHITECTURE.md), as pure functions.

use crate::contract::{
    flags, key_index, key_tag, lacks, perm, Descriptor, NvGeometry, Opcode, Status, MAX_TRANSFER,
    PT_INDEX_BITS,
};

/// One protection-table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PtEntry {
    /// Key tag: key bits 31:4, stored right-aligned (28 bits).
    pub tag: u32,
    /// Base byte address (tier-absolute) or, with `perm::REGION`, offset inside a region.
    pub base: u32,
    /// Window length in bytes.
    pub len: u32,
    /// `perm` bits (8 bits).
    pub perm: u32,
}

impl PtEntry {
    /// Bits a tag has (the key minus its index bits).
    pub const TAG_MASK: u32 = u32::MAX >> PT_INDEX_BITS;

    /// The key that selects this entry at `index`.
    pub fn key(&self, index: u32) -> u32 {
        crate::contract::make_key(index, self.tag)
    }
}

/// Byte address of region `r` (0 = A, 1 = B), without overflow.
pub fn region_base(g: &NvGeometry, r: u8) -> u64 {
    4096 + (r & 1) as u64 * g.region_size as u64
}
/// Byte address of the log ring, without overflow.
pub fn log_base(g: &NvGeometry) -> u64 {
    4096 + 2 * g.region_size as u64
}
/// Bytes in one tier, without overflow.
pub fn tier_bytes(g: &NvGeometry) -> u64 {
    log_base(g) + g.log_size as u64 + g.data_size as u64
}

/// What a descriptor that passed every check does, with its addresses
/// translated to tier-absolute NV byte addresses. `tier`: 0 warm, 1 cold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Nop,
    Write {
        tier: usize,
        phys: u64,
        len: u32,
        /// `Some(r)`: COMMIT flag, commit region `r` (the alternate one) afterwards.
        commit: Option<u8>,
    },
    Read {
        tier: usize,
        phys: u64,
        len: u32,
    },
    Validate {
        tier: usize,
        phys: u64,
        len: u32,
    },
    Copy {
        src_tier: usize,
        src_phys: u64,
        tier: usize,
        phys: u64,
        len: u32,
    },
    Flip {
        tier: usize,
        /// The alternate region, which becomes active.
        region: u8,
        len: u32,
    },
    Append {
        tier: usize,
        len: u32,
    },
    LogTrim {
        tier: usize,
        new_tail: u32,
    },
}

/// Window check and translation of `[off, off + len)` through `entry`
/// (check 7). `region` is the region a region-relative entry resolves to
/// (ignored without `perm::REGION`). Returns the tier-absolute NV address.
/// All sums in u64: nothing wraps.
pub fn translate(
    entry: &PtEntry,
    geometry: &NvGeometry,
    off: u32,
    len: u32,
    region: u8,
) -> Result<u64, Status> {
    let len = len as u64;
    if off as u64 + len > entry.len as u64 {
        return Err(Status::OutOfRange);
    }
    let rel = entry.base as u64 + off as u64;
    if entry.perm & perm::REGION != 0 {
        if rel + len > geometry.region_size as u64 {
            return Err(Status::OutOfRange);
        }
        Ok(region_base(geometry, region) + rel)
    } else {
        if rel + len > tier_bytes(geometry) {
            return Err(Status::OutOfRange);
        }
        Ok(rel)
    }
}

/// Run the checks of ARCHITECTURE.md in order against the protection table
/// `pt` (indexed by `key & 15`; a missing entry counts as invalid) and the
/// served active region of each tier (`active[0]` warm, `active[1]` cold),
/// on a controller lacking what `limits` (`LIMITS`) says. The first failing
/// check is the error.
pub fn check_descriptor(
    d: &Descriptor,
    pt: &[PtEntry],
    geometry: &NvGeometry,
    active: [u8; 2],
    limits: u32,
) -> Result<Plan, Status> {
    use Opcode::*;
    // 1. BAD_OPCODE, also for what the controller lacks (NOP completes here).
    let op = match Opcode::from_u8(d.opcode) {
        Some(op) if d.flags & !flags::ALL == 0 && lacks(limits, d).is_none() => op,
        _ => return Err(Status::BadOpcode),
    };
    if op == Nop {
        return Ok(Plan::Nop);
    }

    // 2. BAD_KEY.
    let e = pt
        .get(key_index(d.key) as usize)
        .copied()
        .unwrap_or_default();
    if e.perm & perm::VALID == 0 || e.tag != key_tag(d.key) {
        return Err(Status::BadKey);
    }

    // 3. PERMISSION: tiers, then the operation.
    let tier = (d.flags & flags::COLD != 0) as usize;
    let src_tier = (d.flags & flags::SRC_COLD != 0) as usize;
    let tier_allowed = |t: usize| e.perm & if t == 1 { perm::COLD } else { perm::WARM } != 0;
    if !tier_allowed(tier) || (op == Copy && !tier_allowed(src_tier)) {
        return Err(Status::Permission);
    }
    let commit = op == Write && d.flags & flags::COMMIT != 0;
    let need = match op {
        Write if commit => perm::WRITE | perm::COMMIT,
        Write => perm::WRITE,
        Read | Validate => perm::READ,
        Copy => perm::READ | perm::WRITE,
        Flip => perm::COMMIT,
        Append | LogTrim => perm::LOG,
        Nop => 0,
    };
    if e.perm & need != need {
        return Err(Status::Permission);
    }
    let region_rel = e.perm & perm::REGION != 0;

    // 4. BAD_COMMIT.
    if commit && (!region_rel || e.base as u64 + d.nv_offset as u64 != 0) {
        return Err(Status::BadCommit);
    }

    // 5. BAD_LENGTH.
    match op {
        Write | Read | Validate | Copy | Append => {
            if d.len == 0 || d.len > MAX_TRANSFER {
                return Err(Status::BadLength);
            }
        }
        Flip => {
            if d.len > geometry.region_size {
                return Err(Status::BadLength);
            }
        }
        LogTrim | Nop => {}
    }

    // 6. BAD_ALIGN.
    if matches!(op, Write | Read | Validate | Copy) && d.nv_offset & 7 != 0 {
        return Err(Status::BadAlign);
    }
    if op == Copy && d.aux & 7 != 0 {
        return Err(Status::BadAlign);
    }

    // 7. OUT_OF_RANGE and translation.
    let act = |t: usize| active[t] & 1;
    let alt = |t: usize| 1 - (active[t] & 1);
    Ok(match op {
        Write => {
            let r = alt(tier);
            let phys = translate(&e, geometry, d.nv_offset, d.len, r)?;
            Plan::Write {
                tier,
                phys,
                len: d.len,
                commit: commit.then_some(r),
            }
        }
        Read | Validate => {
            let r = if d.flags & flags::ALT != 0 {
                alt(tier)
            } else {
                act(tier)
            };
            let phys = translate(&e, geometry, d.nv_offset, d.len, r)?;
            if op == Read {
                Plan::Read {
                    tier,
                    phys,
                    len: d.len,
                }
            } else {
                Plan::Validate {
                    tier,
                    phys,
                    len: d.len,
                }
            }
        }
        Copy => {
            let src_phys = translate(&e, geometry, d.aux, d.len, act(src_tier))?;
            let phys = translate(&e, geometry, d.nv_offset, d.len, alt(tier))?;
            let len = d.len as u64;
            if src_tier == tier && src_phys < phys + len && phys < src_phys + len {
                return Err(Status::OutOfRange);
            }
            Plan::Copy {
                src_tier,
                src_phys,
                tier,
                phys,
                len: d.len,
            }
        }
        Flip => Plan::Flip {
            tier,
            region: alt(tier),
            len: d.len,
        },
        Append => Plan::Append { tier, len: d.len },
        LogTrim => Plan::LogTrim {
            tier,
            new_tail: d.aux,
        },
        Nop => Plan::Nop,
    })
}
