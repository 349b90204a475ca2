//! `hitless heap`: an application's persistent heaps on the card (made by
//! `hitless-heap` / `hitless_heap_*`): list them and their versions,
//! restart from a version, migrate one to another card. `docs/heap.md`.

use crate::status::print_json;
use crate::App;
use clap::Subcommand;
use hitless_driver::firmware::HeapVersion;
use hitless_driver::heaps::{self, MigrateRequest};
use hitless_driver::Error;
use hitless_proto::msg::heap_of_object;
use serde::Serialize;
use std::path::PathBuf;

/// A heap id: 0..=255 (8 bits of the card's root object id).
fn heap_id(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(h) if h <= 255 => Ok(h),
        _ => Err(format!("{s:?} is not a heap id (0..=255)")),
    }
}

/// `SRC_VER:DST_VER`.
fn version_pair(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{s:?}: give SRC_VER:DST_VER, two version numbers");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

#[derive(Subcommand)]
pub enum HeapCmd {
    /// The application's heaps and their versions (oldest first; the
    /// newest is the current one, where the next open starts).
    List {
        /// The application id.
        app: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One heap's versions: number, pages written, state length and CRC.
    Versions {
        /// The application id.
        app: u32,
        /// The heap id (0..=255).
        #[arg(value_parser = heap_id)]
        heap: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart the heap from VERSION (it becomes the current contents).
    ///
    /// A new current version with that version's pages and state, so the
    /// application's next open starts from it (the older versions stay). Refused while a process of the
    /// application holds the heap open through hitlessd.
    Restart {
        /// The application id.
        app: u32,
        /// The heap id (0..=255).
        #[arg(value_parser = heap_id)]
        heap: u32,
        /// The version to restart from (`hitless heap versions`).
        version: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move the heap to another card (only the pages changed since a
    /// version both cards hold).
    ///
    /// The heap's current version is committed on both cards or on
    /// neither (the destination's commit is the one commit point). The
    /// base is found by itself: a previous migration between the two
    /// cards recorded the pair of versions on both; with none, a
    /// destination without the heap gets a full copy, one with unrelated
    /// versions is refused (pass --since). The source's heap is deleted
    /// after the destination committed, unless --keep-source. A heap the
    /// destination does not have is created with the source's size, K = 4,
    /// in the cold tier.
    ///
    /// Credentials: through hitlessd (daemon:SOCKET) the daemon holds the
    /// application's secret; for a card reached directly, the secret is
    /// taken from the credential store like every other command (--credentials
    /// for the source, --to-credentials for the destination, registering
    /// the application there if the destination card does not know it).
    Migrate {
        /// The application id.
        app: u32,
        /// The heap id (0..=255).
        #[arg(value_parser = heap_id)]
        heap: u32,
        /// The destination card, in --card's syntax (daemon:SOCKET,
        /// vfio-user:SOCKET, ...).
        #[arg(long, value_name = "CARDSPEC")]
        to: String,
        /// The versions (source:destination) with the same contents to
        /// start from, instead of the one found automatically.
        #[arg(long, value_name = "SRC_VER:DST_VER", value_parser = version_pair)]
        since: Option<(u64, u64)>,
        /// Copy: keep the heap on the source.
        #[arg(long)]
        keep_source: bool,
        /// The destination card's secret store when both cards are reached
        /// directly (an application's secret differs per card); default
        /// --credentials when the source is reached through hitlessd.
        #[arg(long, value_name = "DIR")]
        to_credentials: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct VersionView {
    version: u64,
    pages: u32,
    state_len: u32,
    state_crc: String,
    current: bool,
}

#[derive(Serialize)]
struct HeapView {
    heap: u32,
    current: Option<u64>,
    versions: Vec<VersionView>,
}

impl HeapView {
    fn new(heap: u32, versions: &[HeapVersion]) -> Self {
        let current = versions.last().map(|v| v.version);
        Self {
            heap,
            current,
            versions: versions
                .iter()
                .map(|v| VersionView {
                    version: v.version,
                    pages: v.pages,
                    state_len: v.state_len,
                    state_crc: format!("{:08x}", v.state_crc),
                    current: Some(v.version) == current,
                })
                .collect(),
        }
    }

    fn print_text(&self) {
        println!(
            "heap {}: {} versions, current {}",
            self.heap,
            self.versions.len(),
            self.current.map_or("none".into(), |v| v.to_string())
        );
        for v in &self.versions {
            println!(
                "  version {}{}: {} pages written, state {} bytes, crc {}",
                v.version,
                if v.current { " (current)" } else { "" },
                v.pages,
                v.state_len,
                v.state_crc
            );
        }
    }
}

#[derive(Serialize)]
struct ListView {
    app: u32,
    heaps: Vec<HeapView>,
}

#[derive(Serialize)]
struct RestartView {
    app: u32,
    heap: u32,
    restarted_from: u64,
    version: u64,
}

#[derive(Serialize)]
struct BaseView {
    source: u64,
    destination: u64,
}

#[derive(Serialize)]
struct MigrateView {
    app: u32,
    heap: u32,
    to: String,
    /// `null`: a full copy.
    base: Option<BaseView>,
    pages: usize,
    source_version: u64,
    destination_version: u64,
    source_removed: bool,
}

/// The versions of one heap (opened for the look, then closed).
fn versions_of(x: &mut App, heap: u32) -> Result<Vec<HeapVersion>, Error> {
    let s = x.s.clone();
    let v = heaps::open_existing(&mut *x.fw, &s, heap)?;
    if let Err(e) = x.fw.heap_close(&s, heap) {
        tracing::warn!("closing heap {heap}: {e}");
    }
    Ok(v)
}

/// Opens a session of an application on a migration's destination:
/// `(card spec, its secret store, app)`.
pub type OpenDestination<'a> = &'a dyn Fn(&str, Option<PathBuf>, u32) -> Result<App, Error>;

/// Run a heap command. `app` opens a session on the source card, `to_app`
/// one on a destination.
pub fn run(
    cmd: HeapCmd,
    app: &dyn Fn(u32) -> Result<App, Error>,
    to_app: OpenDestination,
) -> Result<(), Error> {
    match cmd {
        HeapCmd::List { app: a, json } => {
            let mut x = app(a)?;
            let s = x.s.clone();
            let mut ids: Vec<u32> =
                x.fw.list(&s)?
                    .iter()
                    .filter_map(|i| heap_of_object(i.object))
                    .collect();
            ids.sort_unstable();
            ids.dedup();
            let mut view = ListView {
                app: a,
                heaps: vec![],
            };
            for h in ids {
                let v = versions_of(&mut x, h)?;
                view.heaps.push(HeapView::new(h, &v));
            }
            if json {
                return print_json(&view);
            }
            if view.heaps.is_empty() {
                println!("application {a} has no heap");
            }
            for h in &view.heaps {
                h.print_text();
            }
            Ok(())
        }
        HeapCmd::Versions { app: a, heap, json } => {
            let mut x = app(a)?;
            let view = HeapView::new(heap, &versions_of(&mut x, heap)?);
            if json {
                return print_json(&view);
            }
            view.print_text();
            Ok(())
        }
        HeapCmd::Restart {
            app: a,
            heap,
            version,
            json,
        } => {
            let mut x = app(a)?;
            let s = x.s.clone();
            heaps::open_existing(&mut *x.fw, &s, heap)?;
            let made = heaps::heap_restart(&mut *x.fw, &s, heap, version);
            if let Err(e) = x.fw.heap_close(&s, heap) {
                tracing::warn!("closing heap {heap}: {e}");
            }
            let made = made?;
            let view = RestartView {
                app: a,
                heap,
                restarted_from: version,
                version: made.version,
            };
            if json {
                return print_json(&view);
            }
            println!(
                "heap {heap} of application {a} restarted from version {version}: \
                 version {} is current",
                made.version
            );
            Ok(())
        }
        HeapCmd::Migrate {
            app: a,
            heap,
            to,
            since,
            keep_source,
            to_credentials,
            json,
        } => {
            // Both sessions before anything moves: an unreachable or
            // refusing destination changes nothing.
            let mut src = app(a)?;
            let mut dst = to_app(&to, to_credentials, a)?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} pages {per_sec}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let (ss, ds) = (src.s.clone(), dst.s.clone());
            let moved = heaps::migrate(
                &mut *src.fw,
                &ss,
                &mut *dst.fw,
                &ds,
                MigrateRequest {
                    heap,
                    since,
                    remove: !keep_source,
                },
                &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                },
            );
            bar.finish_and_clear();
            let moved = moved?;
            let m = moved.migrated;
            let view = MigrateView {
                app: a,
                heap,
                to,
                base: moved.since.map(|(s, d)| BaseView {
                    source: s,
                    destination: d,
                }),
                pages: m.pages,
                source_version: m.src_version,
                destination_version: m.dst_version,
                source_removed: !keep_source,
            };
            if json {
                return print_json(&view);
            }
            println!(
                "heap {heap} of application {a}: version {} {} {} as version {}, {} pages sent ({})",
                m.src_version,
                if keep_source { "copied to" } else { "moved to" },
                view.to,
                m.dst_version,
                m.pages,
                match moved.since {
                    Some((s, d)) => format!("changed since source version {s} = destination version {d}"),
                    None => "a full copy".into(),
                }
            );
            Ok(())
        }
    }
}
