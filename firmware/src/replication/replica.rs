//! Where a slave applies brackets: the [`Replica`] trait, implemented by
//! the memory manager (the card's record tables and append log) and by
//! [`MemReplica`], the card's replicated state in memory (the reference the
//! tests compare with, and fast enough for thousands of fault trials).
//!
//! Why a trait and not the manager directly: the role logic (brackets,
//! epochs, acks, takeover) does not depend on how a state is made durable,
//! so it is tested at the speed of memory, and the manager's own
//! implementation is tested once against the controller's reference model.

use super::journal::{Bracket, Change, Mark};
use hitless_hdl::contract::crc32c;
use hitless_proto::auth::SECRET_BYTES;
use hitless_proto::link::SetRecord;
use std::collections::{BTreeMap, VecDeque};

/// A node's replicated state.
pub trait Replica {
    type Error: std::error::Error + Send + Sync + 'static;
    /// The last bracket applied durably (survives a restart).
    fn mark(&self) -> Mark;
    /// Apply a closed bracket: every change or none (a `full` one replaces
    /// the whole state), durable together with the bracket's mark when
    /// this returns `Ok`.
    fn apply(&mut self, bracket: &Bracket) -> Result<(), Self::Error>;
    /// Record the mark of a bracket this node made as master from changes
    /// it had already applied itself (the manager ran the host request).
    fn set_mark(&mut self, mark: Mark) -> Result<(), Self::Error>;
    /// The whole state as changes (a `full` bracket for a slave that
    /// joins or is behind).
    fn snapshot(&mut self) -> Result<Vec<Change>, Self::Error>;
    /// Why the state is not whole brackets to its mark, if it is not.
    fn inconsistency(&self) -> Option<Inconsistency> {
        None
    }
    /// Whether the state is whole brackets (false after a cut in the
    /// middle of applying one, or a power cycle that lost warm sets: such
    /// a node never takes over before a full snapshot, and the operator
    /// promotes it only in the second case, saying so).
    fn consistent(&self) -> bool {
        self.inconsistency().is_none()
    }
    /// The operator accepted the loss of the warm tier (a promotion with
    /// `--accept-lost-warm`): the state is its cold part, whole to its
    /// mark, from now on. Refused (`Err`) unless the only inconsistency is
    /// [`Inconsistency::LostWarm`].
    fn accept_lost_warm(&mut self) -> Result<(), Self::Error>;
}

/// Why a replica's state is not whole brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inconsistency {
    /// A cut while a bracket of several changes was being applied: the
    /// state mixes two brackets. Never promotable: it needs a snapshot
    /// from a master. (What an older firmware's dirty mark reads as.)
    MixedBrackets,
    /// A power cycle lost the warm tier while it held sets or log records:
    /// the cold tier is whole to the mark, the warm part of it is gone.
    /// `sets`: how many warm sets were lost, when the mark says
    /// (`None`: a mark of an older firmware, which only said "some");
    /// `log`: whether warm log records were lost too.
    LostWarm { sets: Option<u32>, log: bool },
}

impl std::fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inconsistency::MixedBrackets => f.write_str(
                "a bracket was cut while being applied (mixed brackets): \
                 it needs a snapshot from a master",
            ),
            Inconsistency::LostWarm { sets, log } => {
                f.write_str("a power cycle lost the warm tier (")?;
                match sets {
                    Some(n) => write!(f, "{n} warm sets")?,
                    None => f.write_str("warm sets")?,
                }
                if *log {
                    f.write_str(" and warm log records")?;
                }
                f.write_str("); the cold tier is whole to the mark")
            }
        }
    }
}

/// Why a bracket was not applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error(
        "set {app}/{object}: its {len} bytes have CRC {got:#010x}, the record says {want:#010x}"
    )]
    Crc {
        app: u32,
        object: u32,
        len: usize,
        got: u32,
        want: u32,
    },
    #[error("tier {0} is neither warm (0) nor cold (1)")]
    Tier(u32),
    #[error("the state could not be made durable: {0}")]
    Durable(String),
}

/// One log record as a replica keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Offset in the master's log.
    pub offset: u32,
    pub app: u32,
    pub object: u32,
    pub data: Vec<u8>,
}

/// The replicated state in memory: sets, both tiers' logs, credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState {
    pub sets: BTreeMap<(u32, u32), (SetRecord, Vec<u8>)>,
    pub logs: [VecDeque<LogEntry>; 2],
    pub secrets: BTreeMap<u32, [u8; SECRET_BYTES]>,
}

impl MemState {
    /// Apply one change (checked: a set's bytes must match its CRC).
    pub fn change(&mut self, c: &Change) -> Result<(), ApplyError> {
        match c {
            Change::Put { set, data } => {
                let got = crc32c(data);
                if got != set.crc {
                    return Err(ApplyError::Crc {
                        app: set.app,
                        object: set.object,
                        len: data.len(),
                        got,
                        want: set.crc,
                    });
                }
                if set.tier > 1 {
                    return Err(ApplyError::Tier(set.tier));
                }
                self.sets
                    .insert((set.app, set.object), (set.clone(), data.clone()));
            }
            Change::Delete { app, object } => {
                self.sets.remove(&(*app, *object));
            }
            Change::LogAppend {
                app,
                object,
                tier,
                offset,
                data,
            } => {
                let log = self
                    .logs
                    .get_mut(*tier as usize)
                    .ok_or(ApplyError::Tier(*tier))?;
                log.push_back(LogEntry {
                    offset: *offset,
                    app: *app,
                    object: *object,
                    data: data.clone(),
                });
            }
            Change::LogTrim { tier, to } => {
                let log = self
                    .logs
                    .get_mut(*tier as usize)
                    .ok_or(ApplyError::Tier(*tier))?;
                // Offsets run free (wrapping): a record before `to` is
                // one `to` is ahead of.
                while log
                    .front()
                    .is_some_and(|r| (to.wrapping_sub(r.offset) as i32) > 0)
                {
                    log.pop_front();
                }
            }
            Change::Secret { app, secret } => {
                self.secrets.insert(*app, *secret);
            }
        }
        Ok(())
    }

    /// The state as the changes that rebuild it.
    pub fn snapshot(&self) -> Vec<Change> {
        let mut v: Vec<Change> = self
            .secrets
            .iter()
            .map(|(app, secret)| Change::Secret {
                app: *app,
                secret: *secret,
            })
            .collect();
        v.extend(self.sets.values().map(|(set, data)| Change::Put {
            set: set.clone(),
            data: data.clone(),
        }));
        for (tier, log) in self.logs.iter().enumerate() {
            v.extend(log.iter().map(|r| Change::LogAppend {
                app: r.app,
                object: r.object,
                tier: tier as u32,
                offset: r.offset,
                data: r.data.clone(),
            }));
        }
        v
    }
}

/// What a [`MemReplica`] applied, in order (the fault tests check that
/// every applied bracket was closed by its master, with the same contents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub mark: Mark,
    pub full: bool,
    pub digest: u32,
}

/// The replicated state in memory, with its mark and the list of brackets
/// applied. Survives a simulated restart (it stands for the card's NV
/// memory: clone it into the restarted node).
#[derive(Clone, Debug, Default)]
pub struct MemReplica {
    pub state: MemState,
    pub mark: Mark,
    pub applied: Vec<Applied>,
    /// Tests: make the next apply fail (a card that cannot write).
    pub fail_next: bool,
    /// Tests: a state that is not whole brackets (a cut mid-apply).
    pub torn: bool,
    /// Tests: a power cycle lost this many warm sets (the warm sets are
    /// not modelled apart: the flag is what the node sees).
    pub lost_warm: Option<u32>,
}

impl Replica for MemReplica {
    type Error = ApplyError;

    fn mark(&self) -> Mark {
        self.mark
    }

    fn apply(&mut self, b: &Bracket) -> Result<(), ApplyError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(ApplyError::Durable("injected failure".into()));
        }
        // All or nothing: the changes go to a copy that replaces the state
        // only when every one of them applied.
        let mut next = if b.full {
            MemState::default()
        } else {
            self.state.clone()
        };
        for c in &b.changes {
            next.change(c)?;
        }
        self.state = next;
        self.mark = b.mark();
        if b.full {
            self.torn = false;
            self.lost_warm = None;
        }
        self.applied.push(Applied {
            mark: b.mark(),
            full: b.full,
            digest: b.digest(),
        });
        Ok(())
    }

    fn set_mark(&mut self, mark: Mark) -> Result<(), ApplyError> {
        self.mark = mark;
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<Change>, ApplyError> {
        Ok(self.state.snapshot())
    }

    fn inconsistency(&self) -> Option<Inconsistency> {
        if self.torn {
            Some(Inconsistency::MixedBrackets)
        } else {
            self.lost_warm.map(|n| Inconsistency::LostWarm {
                sets: Some(n),
                log: false,
            })
        }
    }

    fn accept_lost_warm(&mut self) -> Result<(), ApplyError> {
        if self.torn {
            return Err(ApplyError::Durable(
                Inconsistency::MixedBrackets.to_string(),
            ));
        }
        self.lost_warm = None;
        Ok(())
    }
}
