//! A heap's versions and its migration as a user drives them (the
//! `hitless heap` commands, `hitless_heap_migrate` in C, the store
//! browser's restart): restart from a version, and a migration that finds
//! its shared base by itself. `docs/heap.md`, "Versions and migration
//! from the CLI and C", says how the base is found.

use crate::error::{Error, Result};
use crate::firmware::{heap_migrate_with, Firmware, HeapVersion, Migrated, Session};
use hitless_proto::Code;
use std::io::Read;

/// Restart a heap from `version`: a new newest version with that
/// version's pages and state (checkout, then a commit with nothing
/// staged), so the application's next open starts from it. `versions`
/// are the heap's kept ones; `checkout` and `commit` reach the card. The
/// steps are the store browser's (which reaches the card through the
/// daemon's card thread) and [`heap_restart`]'s, written once here.
pub fn heap_restart_steps<E: From<Error>>(
    heap: u32,
    version: u64,
    versions: &[HeapVersion],
    checkout: impl FnOnce(u64) -> std::result::Result<(HeapVersion, Vec<u8>), E>,
    commit: impl FnOnce(&[u8]) -> std::result::Result<HeapVersion, E>,
) -> std::result::Result<HeapVersion, E> {
    if !versions.iter().any(|v| v.version == version) {
        return Err(no_such_version(heap, version, versions).into());
    }
    let (v, state) = checkout(version)?;
    if hitless_hdl::contract::crc32c(&state) != v.state_crc {
        return Err(Error::BadCompletion(format!(
            "version {version}'s state failed its CRC on the way"
        ))
        .into());
    }
    commit(&state)
}

/// "Heap H has no version V (it keeps [...])", as the card's NotFound.
pub fn no_such_version(heap: u32, version: u64, versions: &[HeapVersion]) -> Error {
    Error::Firmware {
        code: Code::NotFound,
        detail: format!(
            "heap {heap} has no version {version} (it keeps {:?})",
            versions.iter().map(|v| v.version).collect::<Vec<_>>()
        ),
        needed: None,
    }
}

/// [`heap_restart_steps`] over a [`Firmware`] session that has the heap
/// open: the new version.
pub fn heap_restart<F: Firmware + ?Sized>(
    fw: &mut F,
    s: &Session,
    heap: u32,
    version: u64,
) -> Result<HeapVersion> {
    let versions = fw.heap_versions(s, heap)?;
    let fw = std::cell::RefCell::new(fw);
    heap_restart_steps(
        heap,
        version,
        &versions,
        |v| fw.borrow_mut().heap_checkout(s, heap, v),
        |state| fw.borrow_mut().heap_commit(s, heap, state),
    )
}

/// Open an existing heap (any size): its versions. A heap the
/// application does not have is a clear NotFound (the card would
/// otherwise ask for a size to create it with).
pub fn open_existing<F: Firmware + ?Sized>(
    fw: &mut F,
    s: &Session,
    heap: u32,
) -> Result<Vec<HeapVersion>> {
    fw.heap_open(s, heap, 0, 0, false).map_err(|e| match e {
        Error::Firmware {
            code: Code::Invalid,
            ..
        } => Error::Firmware {
            code: Code::NotFound,
            detail: format!(
                "application {} has no heap {heap} on {}",
                s.app,
                fw.describe()
            ),
            needed: None,
        },
        e => e,
    })
}

/// Pages a heap has at most (the heap store's limit, 2^20).
const MAX_HEAP_PAGES: u32 = 1 << 20;

/// The page count of an open heap. The heap store's answers carry no
/// size, so it is found by reading single pages: a page past the end is
/// refused (`Invalid`), one inside reads (present or absent). Twenty
/// one-page reads at most (a heap has at most 2^20 pages); no page data
/// crosses beyond those.
pub fn heap_pages<F: Firmware + ?Sized>(fw: &mut F, s: &Session, heap: u32) -> Result<u32> {
    // Invariant: page lo - 1 exists (lo = 0: none checked yet), page hi
    // does not.
    let (mut lo, mut hi) = (0u32, MAX_HEAP_PAGES);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match fw.heap_read(s, heap, &[mid]) {
            Ok(_) => lo = mid + 1,
            Err(Error::Firmware {
                code: Code::Invalid,
                ..
            }) => hi = mid,
            Err(e) => return Err(e),
        }
    }
    if lo == 0 {
        return Err(Error::BadCompletion(format!(
            "heap {heap} refuses to read page 0"
        )));
    }
    Ok(lo)
}

/// The set holding heap `heap`'s migration records (an ordinary set of
/// the application, beside the heap's roots at `0xFFFF_xxxx`).
pub fn record_object(heap: u32) -> u32 {
    0xFFFE_FF00 | (heap & 0xFF)
}

/// The migration records are delivered at this reboot stage only, so an
/// application fetching its sets at its own stages never gets them.
pub const RECORD_STAGE: u32 = u32::MAX;

/// Records kept per heap and card (the oldest goes first).
const RECORDS_KEPT: usize = 16;
const RECORD_MAGIC: [u8; 8] = *b"HTLSMIG1";
const RECORD_BYTES: usize = 8 + 2 * HeapVersion::BYTES;

/// One migration, as each of its two cards records it: the version this
/// card holds and the other card's, which have the same contents, and
/// the migration's random id (the same on both cards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationRecord {
    pub id: u64,
    pub mine: HeapVersion,
    pub theirs: HeapVersion,
}

impl MigrationRecord {
    /// A card's records: magic, then `RECORD_BYTES` each.
    pub fn encode(records: &[MigrationRecord]) -> Vec<u8> {
        let mut b = RECORD_MAGIC.to_vec();
        for r in records {
            b.extend_from_slice(&r.id.to_le_bytes());
            b.extend_from_slice(&r.mine.to_bytes());
            b.extend_from_slice(&r.theirs.to_bytes());
        }
        b
    }

    /// The records of a set; anything else (a set the application made
    /// under this id, a damaged one) is no records.
    pub fn decode(b: &[u8]) -> Vec<MigrationRecord> {
        let Some(body) = b.strip_prefix(&RECORD_MAGIC[..]) else {
            return vec![];
        };
        if body.len() % RECORD_BYTES != 0 {
            return vec![];
        }
        body.chunks(RECORD_BYTES)
            .filter_map(|c| {
                let mut id = [0u8; 8];
                id.copy_from_slice(&c[..8]);
                Some(MigrationRecord {
                    id: u64::from_le_bytes(id),
                    mine: HeapVersion::from_bytes(&c[8..8 + HeapVersion::BYTES])?,
                    theirs: HeapVersion::from_bytes(&c[8 + HeapVersion::BYTES..])?,
                })
            })
            .collect()
    }
}

/// The migration records a card holds for a heap (none: no set).
pub fn records<F: Firmware + ?Sized>(
    fw: &mut F,
    s: &Session,
    heap: u32,
) -> Result<Vec<MigrationRecord>> {
    match fw.restore(s, record_object(heap)) {
        Ok((_, data)) => Ok(MigrationRecord::decode(&data)),
        Err(Error::Firmware {
            code: Code::NotFound,
            ..
        }) => Ok(vec![]),
        Err(e) => Err(e),
    }
}

/// Add the record of migration `id` to one card's records (`side` names
/// the card in the warning when it fails: the records are a hint, so a
/// failure is not the migration's).
fn add_record<F: Firmware + ?Sized>(
    fw: &mut F,
    s: &Session,
    heap: u32,
    r: MigrationRecord,
    side: &str,
) {
    let stored = records(fw, s, heap).and_then(|mut all| {
        all.push(r);
        let drop = all.len().saturating_sub(RECORDS_KEPT);
        all.drain(..drop);
        fw.store(
            s,
            record_object(heap),
            0,
            RECORD_STAGE,
            true,
            &MigrationRecord::encode(&all),
        )
    });
    if let Err(e) = stored {
        tracing::warn!("the {side}'s migration record: {e}");
    }
}

/// Where a migration starts from on the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The destination has no version: every written page crosses.
    Empty,
    /// (source version, destination version) with the same contents.
    Shared(u64, u64),
}

/// The base of a migration of `heap` from `src` to `dst` (both have it
/// open): a pair of versions that a migration between these two cards
/// recorded on both (same id, each side's record naming the other's
/// version) and that both still hold exactly as recorded (number, state
/// length and CRC, pages), the newest such source version; else `Empty`
/// when the destination has no version; else an error saying what to
/// pass.
pub fn find_base<A: Firmware + ?Sized, B: Firmware + ?Sized>(
    src: &mut A,
    ss: &Session,
    dst: &mut B,
    ds: &Session,
    heap: u32,
) -> Result<Base> {
    let dst_versions = dst.heap_versions(ds, heap)?;
    if dst_versions.is_empty() {
        return Ok(Base::Empty);
    }
    let src_versions = src.heap_versions(ss, heap)?;
    let src_records = records(src, ss, heap)?;
    let dst_records = records(dst, ds, heap)?;
    let found = src_records
        .iter()
        .filter(|a| src_versions.contains(&a.mine) && dst_versions.contains(&a.theirs))
        .filter(|a| {
            dst_records
                .iter()
                .any(|b| b.id == a.id && b.mine == a.theirs && b.theirs == a.mine)
        })
        .max_by_key(|a| a.mine.version);
    match found {
        Some(a) => Ok(Base::Shared(a.mine.version, a.theirs.version)),
        None => Err(Error::InvalidArgument(format!(
            "the destination's heap {heap} holds versions {:?}, none known to have the \
             contents of one of the source's {:?} (no migration between these cards \
             recorded a pair both still hold): pass --since SRC_VER:DST_VER naming two \
             versions with the same contents, or delete the destination's heap for a full copy",
            dst_versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            src_versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        ))),
    }
}

/// A migration's random id (unique, not secret): from the kernel's
/// random source, else the clock and the process id.
fn migration_id() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        Err(e) => {
            tracing::warn!("no /dev/urandom ({e}): the migration id comes from the clock");
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (u64::from(std::process::id()) << 40)
        }
    }
}

/// What a user's migration asks for.
#[derive(Clone, Copy, Debug)]
pub struct MigrateRequest {
    pub heap: u32,
    /// (source version, destination version) with the same contents;
    /// `None`: found by [`find_base`].
    pub since: Option<(u64, u64)>,
    /// Delete the source's heap (and its records) after the destination
    /// committed; `false` keeps it (a copy).
    pub remove: bool,
}

/// Move (or copy) a heap between two cards as a user asks for it: opens
/// the heap on both (created on the destination with the source's page
/// count, default K, cold tier, when it has none), finds the base unless
/// given, migrates ([`heap_migrate_with`]: committed on both or on
/// neither), then records the pair of versions on both cards so the next
/// migration between them finds its base, and closes the heaps.
/// `progress(pages sent, pages to send)`.
pub fn migrate<A: Firmware + ?Sized, B: Firmware + ?Sized>(
    src: &mut A,
    ss: &Session,
    dst: &mut B,
    ds: &Session,
    req: MigrateRequest,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Moved> {
    let heap = req.heap;
    let src_versions = open_existing(src, ss, heap)?;
    if src_versions.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "heap {heap} of application {} has no version to move",
            ss.app
        )));
    }
    if let Some((s, _)) = req.since {
        if !src_versions.iter().any(|v| v.version == s) {
            return Err(no_such_version(heap, s, &src_versions));
        }
    }
    let pages = heap_pages(src, ss, heap)?;
    dst.heap_open(ds, heap, pages, 0, true)?;
    let since = match req.since {
        Some((s, d)) => {
            let dv = dst.heap_versions(ds, heap)?;
            if !dv.iter().any(|v| v.version == d) {
                return Err(no_such_version(heap, d, &dv));
            }
            Some((s, d))
        }
        None => match find_base(src, ss, dst, ds, heap)? {
            Base::Empty => None,
            Base::Shared(s, d) => Some((s, d)),
        },
    };
    tracing::info!(heap, ?since, remove = req.remove, "migrating a heap");
    let m = heap_migrate_with(src, ss, dst, ds, heap, since, req.remove, progress)?;
    // Committed: the records only help the next migration find its base
    // (one missing makes it ask for --since), so their failures are
    // warnings, not the migration's.
    let id = migration_id();
    let (source, destination) = (m.source, m.destination);
    let record = |mine, theirs| MigrationRecord { id, mine, theirs };
    add_record(dst, ds, heap, record(destination, source), "destination");
    if req.remove {
        match src.delete(ss, record_object(heap)) {
            Ok(())
            | Err(Error::Firmware {
                code: Code::NotFound,
                ..
            }) => {}
            Err(e) => tracing::warn!("the source's migration records: {e}"),
        }
    } else {
        add_record(src, ss, heap, record(source, destination), "source");
        if let Err(e) = src.heap_close(ss, heap) {
            tracing::warn!("closing the source's heap: {e}");
        }
    }
    if let Err(e) = dst.heap_close(ds, heap) {
        tracing::warn!("closing the destination's heap: {e}");
    }
    Ok(Moved { migrated: m, since })
}

/// What [`migrate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    pub migrated: Migrated,
    /// The base it started from (given or found); `None`: a full copy.
    pub since: Option<(u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: u64, pages: u32) -> HeapVersion {
        HeapVersion {
            version,
            state_len: 3,
            state_crc: 0xabc,
            pages,
        }
    }

    #[test]
    fn records_round_trip_and_garbage_is_none() {
        let r = [
            MigrationRecord {
                id: 7,
                mine: v(2, 9),
                theirs: v(5, 1),
            },
            MigrationRecord {
                id: u64::MAX,
                mine: v(3, 0),
                theirs: v(6, 2),
            },
        ];
        let b = MigrationRecord::encode(&r);
        assert_eq!(MigrationRecord::decode(&b), r);
        assert!(MigrationRecord::decode(&b[..b.len() - 1]).is_empty());
        assert!(MigrationRecord::decode(b"application bytes").is_empty());
        assert!(MigrationRecord::decode(&[]).is_empty());
    }

    #[test]
    fn restart_of_a_version_not_kept_is_not_found_and_touches_nothing() {
        let mut touched = false;
        let r = heap_restart_steps::<Error>(
            1,
            9,
            &[v(1, 1), v(2, 1)],
            |_| {
                touched = true;
                Ok((v(9, 0), vec![]))
            },
            |_| Ok(v(10, 0)),
        );
        assert!(!touched);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("no version 9"), "{e}");
        assert!(e.to_string().contains("[1, 2]"), "{e}");
    }
}
