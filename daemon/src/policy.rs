//! Who may use which application id.
//!
//! A policy file (TOML) lists rules; a rule names application ids and the
//! uids and gids that may use them:
//!
//! ```toml
//! [[rule]]
//! apps = "100-199"      # ids: "7", "7,9", "100-199", "1-9,42"
//! uids = [1000]
//! gids = [1001]         # the peer's primary or supplementary groups
//! ```
//!
//! An application id no rule names belongs to the uid that registered it
//! (opened it first through this daemon); the daemon records owners in its
//! state directory. The first matching rule decides; root (uid 0) may use
//! every id (it can read the daemon's secrets anyway).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the policy or the owners file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: rule {rule}: application ids {text:?}: {why}")]
    Ids {
        path: PathBuf,
        rule: usize,
        text: String,
        why: &'static str,
    },
    #[error("{path}: line {line}: expected \"APP UID\"")]
    Owners { path: PathBuf, line: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RuleText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    apps: toml::Value,
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    gids: Vec<u32>,
}

/// One rule: the ids it covers and who may use them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub apps: Vec<(u32, u32)>,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl Rule {
    fn covers(&self, app: u32) -> bool {
        self.apps.iter().any(|&(lo, hi)| (lo..=hi).contains(&app))
    }
}

/// Parse "7", "7,9", "100-199" into inclusive ranges.
pub fn parse_ids(text: &str) -> Result<Vec<(u32, u32)>, &'static str> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let num = |s: &str| s.trim().parse::<u32>().map_err(|_| "not a number");
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi {
            return Err("a range's first id is above its last");
        }
        out.push((lo, hi));
    }
    Ok(out)
}

/// Who is asking: from `SO_PEERCRED` and the process's groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gids: Vec<u32>,
}

/// The decision for one open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Allowed, and the peer becomes the id's owner (its first open).
    Register,
    Refused,
}

/// The rules and the owners of the ids no rule names.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    owners: BTreeMap<u32, u32>,
    owners_file: Option<PathBuf>,
}

impl Policy {
    /// No rules: every id belongs to its registrant; owners kept in
    /// `owners_file` when given.
    pub fn new(rules: Vec<Rule>, owners_file: Option<PathBuf>) -> Result<Self, PolicyError> {
        let owners = match &owners_file {
            Some(p) => read_owners(p)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            rules,
            owners,
            owners_file,
        })
    }

    /// Load the rules of a policy file.
    pub fn rules_from_file(path: &Path) -> Result<Vec<Rule>, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.into(),
            source,
        })?;
        Self::rules_from_str(path, &text)
    }

    pub fn rules_from_str(path: &Path, text: &str) -> Result<Vec<Rule>, PolicyError> {
        let f: File = toml::from_str(text).map_err(|source| PolicyError::Parse {
            path: path.into(),
            source,
        })?;
        f.rule
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let ids_text = match &r.apps {
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let apps = parse_ids(&ids_text).map_err(|why| PolicyError::Ids {
                    path: path.into(),
                    rule: i + 1,
                    text: ids_text.clone(),
                    why,
                })?;
                Ok(Rule {
                    apps,
                    uids: r.uids,
                    gids: r.gids,
                })
            })
            .collect()
    }

    /// The applications registered through this daemon, with their owner
    /// uid.
    pub fn owners(&self) -> &BTreeMap<u32, u32> {
        &self.owners
    }

    /// May `peer` use application `app`?
    pub fn decide(&self, peer: &Peer, app: u32) -> Decision {
        if peer.uid == 0 {
            return Decision::Allowed;
        }
        if let Some(r) = self.rules.iter().find(|r| r.covers(app)) {
            let ok = r.uids.contains(&peer.uid) || peer.gids.iter().any(|g| r.gids.contains(g));
            return if ok {
                Decision::Allowed
            } else {
                Decision::Refused
            };
        }
        match self.owners.get(&app) {
            Some(&uid) if uid == peer.uid => Decision::Allowed,
            Some(_) => Decision::Refused,
            None => Decision::Register,
        }
    }

    /// Record `uid` as the owner of `app` (kept in the owners file, written
    /// whole and renamed into place so a crash leaves the old or the new).
    pub fn register(&mut self, app: u32, uid: u32) -> Result<(), PolicyError> {
        self.owners.insert(app, uid);
        let Some(path) = &self.owners_file else {
            return Ok(());
        };
        let text: String = self
            .owners
            .iter()
            .map(|(a, u)| format!("{a} {u}\n"))
            .collect();
        let tmp = path.with_extension("new");
        let io = |source| PolicyError::Read {
            path: path.clone(),
            source,
        };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }
}

fn read_owners(path: &Path) -> Result<BTreeMap<u32, u32>, PolicyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(PolicyError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let mut owners = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut w = line.split_whitespace().map(str::parse::<u32>);
        match (w.next(), w.next(), w.next()) {
            (Some(Ok(app)), Some(Ok(uid)), None) => {
                owners.insert(app, uid);
            }
            _ => {
                return Err(PolicyError::Owners {
                    path: path.into(),
                    line: i + 1,
                })
            }
        }
    }
    Ok(owners)
}

/// The peer's supplementary groups (`/proc/PID/status`), with its primary
/// group; only the primary one when the process is gone.
pub fn groups_of(pid: i32, primary: u32) -> Vec<u32> {
    let mut gids = vec![primary];
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        if let Some(line) = status.lines().find_map(|l| l.strip_prefix("Groups:")) {
            gids.extend(
                line.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    gids.sort_unstable();
    gids.dedup();
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gids: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn ids_parse() {
        assert_eq!(parse_ids("7"), Ok(vec![(7, 7)]));
        assert_eq!(parse_ids("7, 100-199"), Ok(vec![(7, 7), (100, 199)]));
        assert!(parse_ids("9-1").is_err());
        assert!(parse_ids("x").is_err());
        assert!(parse_ids("").is_err());
    }

    #[test]
    fn rules_decide_before_owners() {
        let text = "[[rule]]\napps = \"100-199\"\nuids = [1000]\ngids = [50]\n\n[[rule]]\napps = 7\nuids = [1001]\n";
        let rules = Policy::rules_from_str(Path::new("p.toml"), text).unwrap();
        assert_eq!(rules.len(), 2);
        let p = Policy::new(rules, None).unwrap();
        assert_eq!(p.decide(&peer(1000, &[1000]), 150), Decision::Allowed);
        assert_eq!(p.decide(&peer(1002, &[1002, 50]), 150), Decision::Allowed);
        assert_eq!(p.decide(&peer(1002, &[1002]), 150), Decision::Refused);
        assert_eq!(p.decide(&peer(1000, &[1000]), 7), Decision::Refused);
        assert_eq!(p.decide(&peer(1001, &[1001]), 7), Decision::Allowed);
        assert_eq!(p.decide(&peer(0, &[0]), 7), Decision::Allowed);
        assert_eq!(p.decide(&peer(1000, &[1000]), 8), Decision::Register);
    }

    #[test]
    fn bad_policy_files_are_refused_with_their_place() {
        let p = Path::new("p.toml");
        let e = Policy::rules_from_str(p, "[[rule]]\napps = \"5-1\"\n").unwrap_err();
        assert!(e.to_string().contains("rule 1"), "{e}");
        assert!(Policy::rules_from_str(p, "[[rule]]\nuids = [1]\n").is_err());
        assert!(Policy::rules_from_str(p, "[[rule]]\napps = 1\nusers = [1]\n").is_err());
        assert!(Policy::rules_from_str(p, "garbage =").is_err());
    }

    #[test]
    fn owners_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("hitlessd-owners-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("owners");
        let _ = std::fs::remove_file(&f);
        let mut p = Policy::new(vec![], Some(f.clone())).unwrap();
        assert_eq!(p.decide(&peer(1000, &[]), 9), Decision::Register);
        p.register(9, 1000).unwrap();
        let p = Policy::new(vec![], Some(f.clone())).unwrap();
        assert_eq!(p.decide(&peer(1000, &[]), 9), Decision::Allowed);
        assert_eq!(p.decide(&peer(1001, &[]), 9), Decision::Refused);
        std::fs::write(&f, "9 x\n").unwrap();
        assert!(Policy::new(vec![], Some(f)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_shipped_example_policy_parses() {
        let text = include_str!("../systemd/policy.example.toml");
        let rules =
            super::Policy::rules_from_str(std::path::Path::new("policy.example.toml"), text)
                .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].apps, vec![(100, 199)]);
        assert_eq!(rules[1].apps, vec![(7, 7), (9, 9)]);
    }
}
