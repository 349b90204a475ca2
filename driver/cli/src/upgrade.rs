//! `hitless --card pair:A,B peer upgrade PKG`: the hitless rolling upgrade
//! of a replicated pair (issue 18 item 9; seed 004 claims 19–33), one card
//! at a time, the master last:
//!
//! 1. each slave: install the package, activate it, reboot it (a trial
//!    boot of the new image), wait until it follows the master again (it
//!    receives the state over the version-tolerant link), mark it good;
//! 2. a switchover to the first upgraded slave (it has acknowledged every
//!    bracket: nothing acknowledged is lost);
//! 3. the old master (now a slave) the same way.
//!
//! It stops at the first failure, saying where the pair stands: a card
//! that comes back running its old image (its self-test failed, or the
//! boot limit) or does not rejoin in time is rolled back and rebooted, and
//! the master has served throughout. Images are per card: each card is
//! reached on its own (`pair:`'s specs), one client at a time, so the
//! master's card must not be held by another host process for the
//! switchover (an application holding it asks for the switchover itself:
//! `Firmware::switchover`).

use crate::image::{bad, reboot};
use hitless_driver::firmware::ImageReport;
use hitless_driver::pair::{PairSpec, PREFIX};
use hitless_driver::{open_firmware, Error};
use hitless_proto::image::cause;
use hitless_proto::PeerReport;
use std::path::Path;
use std::time::{Duration, Instant};

/// One card of the pair as the upgrade sees it.
struct Member {
    spec: String,
    node: u32,
}

fn peer_of(spec: &str, timeout: Duration) -> Result<PeerReport, Error> {
    let st = open_firmware(spec, timeout)?.status()?;
    st.peer
        .ok_or_else(|| bad(format!("{spec} is not a replicated card (no peer state)")))
}

/// Poll `f` every 100 ms until it is `Some`, at most `limit`.
fn wait<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Upgrade the rolling way; `health` bounds each card's return.
pub fn upgrade(
    spec: &str,
    timeout: Duration,
    package: &Path,
    force: bool,
    health: Duration,
) -> Result<(), Error> {
    let rest = spec.strip_prefix(PREFIX).ok_or_else(|| {
        bad(format!(
            "peer upgrade needs the pair's cards: --card {PREFIX}SPEC,SPEC (got {spec})"
        ))
    })?;
    let pair = PairSpec::parse(rest)?;
    let pkg = std::fs::read(package).map_err(|e| bad(format!("{}: {e}", package.display())))?;

    // The pair must be whole before anything is touched: one master, every
    // other card its slave in its epoch.
    let mut master: Option<(Member, PeerReport)> = None;
    let mut slaves: Vec<(Member, PeerReport)> = Vec::new();
    for c in &pair.cards {
        let p = peer_of(c, timeout)?;
        let m = Member {
            spec: c.clone(),
            node: p.node,
        };
        match p.role {
            0 if master.is_none() => master = Some((m, p)),
            1 => slaves.push((m, p)),
            _ => {
                return Err(bad(format!(
                    "node {} ({c}) is {} in epoch {}: the pair is not whole, nothing upgraded",
                    p.node,
                    p.role_name(),
                    p.epoch
                )))
            }
        }
    }
    let Some((master, mp)) = master else {
        return Err(bad("no card of the pair is master: nothing upgraded".into()));
    };
    if slaves.is_empty() {
        return Err(bad(
            "the pair has no slave to take over: nothing upgraded".into()
        ));
    }
    for (s, p) in &slaves {
        if p.master != Some(master.node) || p.epoch != mp.epoch {
            return Err(bad(format!(
                "node {} follows {:?} in epoch {}, not node {} in epoch {}: nothing upgraded",
                s.node, p.master, p.epoch, master.node, mp.epoch
            )));
        }
    }
    println!(
        "pair: node {} master in epoch {}, slaves {:?}",
        master.node,
        mp.epoch,
        slaves.iter().map(|s| s.0.node).collect::<Vec<_>>()
    );

    let mut version = 0;
    for (s, _) in &slaves {
        version = upgrade_card(s, master.node, &pkg, force, timeout, health)?;
    }
    let to = slaves[0].0.node;
    println!("node {}: switchover to node {to}", master.node);
    let done = switchover(&master.spec, to, timeout, health)?;
    println!(
        "node {to}: master in epoch {} (brackets up to {} handed over)",
        done.epoch.map_or("?".to_string(), |e| e.to_string()),
        done.bracket
    );
    upgrade_card(&master, to, &pkg, force, timeout, health)?;
    println!(
        "done: every card runs version {version}; node {to} is master, node {} its slave",
        master.node
    );
    Ok(())
}

/// A switchover asked of the master's card, retried while the target is
/// still catching up (the card refuses until it has acknowledged every
/// bracket).
fn switchover(
    spec: &str,
    to: u32,
    timeout: Duration,
    health: Duration,
) -> Result<hitless_driver::firmware::Switched, Error> {
    let start = Instant::now();
    loop {
        match open_firmware(spec, timeout).and_then(|mut f| f.switchover(Some(to))) {
            Ok(done) => return Ok(done),
            Err(e) if start.elapsed() < health => {
                tracing::info!("switchover to node {to}: {e}; again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(bad(format!(
                    "the switchover to node {to} did not happen within {health:?}: {e}; \
                     the master has not changed (its card must not be held by another host \
                     process)"
                )))
            }
        }
    }
}

/// Install, activate, reboot, check, mark good one slave; its version.
fn upgrade_card(
    card: &Member,
    master: u32,
    pkg: &[u8],
    force: bool,
    timeout: Duration,
    health: Duration,
) -> Result<u64, Error> {
    let n = card.node;
    let open = || open_firmware(&card.spec, timeout);
    let mut fw = open()?;
    let before = fw.image_status()?.version;
    println!(
        "node {n}: installing ({} bytes, running version {before})",
        pkg.len()
    );
    let installed = fw
        .image_install(&mut &pkg[..], pkg.len() as u64, force, &mut |_, _| {})
        .map_err(|e| {
            bad(format!(
                "node {n}: the install was refused: {e}; nothing changed"
            ))
        })?;
    let v = installed.version;
    fw.image_activate()?;
    drop(fw);
    println!("node {n}: version {v} installed and activated; rebooting");
    let r = reboot(&open, health)?;
    if r.version != v || !r.trial {
        return Err(bad(format!(
            "node {n} came back running version {} ({}): the upgrade stops here; node \
             {master} is still master",
            r.version,
            rollback_cause(&r)
        )));
    }
    println!(
        "node {n}: trial boot {} of {} of version {v}; waiting for it to rejoin node {master}",
        r.boot_count, r.boot_limit
    );
    let back = wait(health, || {
        let p = peer_of(&card.spec, timeout).ok()?;
        (p.role == 1 && p.master == Some(master)).then_some(())
    });
    if back.is_none() {
        // Not healthy: back to the image it ran, before anything else.
        let why = format!("node {n} did not rejoin node {master} within {health:?}");
        let undo = open()
            .and_then(|mut f| f.image_rollback())
            .and_then(|_| reboot(&open, health));
        return Err(bad(match undo {
            Ok(r) => format!(
                "{why}: rolled back, it runs version {} again; node {master} is still master",
                r.version
            ),
            Err(e) => format!("{why}, and its rollback failed ({e}): roll it back by hand"),
        }));
    }
    let schema = open()?.status()?.peer_notes.link_schema;
    open()?.image_mark_good()?;
    println!(
        "node {n}: follows node {master} again{}; version {v} marked good",
        schema.map_or(String::new(), |s| format!(" speaking link schema {s}"))
    );
    Ok(v)
}

fn rollback_cause(r: &ImageReport) -> String {
    match r.last_rollback {
        Some((c, _)) => format!("its trial was rolled back: {}", cause::name(c)),
        None => "no trial".into(),
    }
}
