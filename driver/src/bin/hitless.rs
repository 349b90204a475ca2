//! `hitless`: checkpoint and restore application state on a hitless card.

use clap::{Parser, Subcommand};
use hitless_driver::set::{self, SetId};
use hitless_driver::{Card, CardIo, Error, Options, Tier};
use hitless_hdl::contract::{perm, reg, PT_ENTRIES};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The local simulated card (`hitless-sim serve --socket` this path).
const DEFAULT_CARD: &str = "vfio-user:/tmp/hitless/card.sock";
/// Protection entry and tag this tool uses for the region window.
const ENTRY: u32 = 1;
const TAG: u32 = 0x0C11;

#[derive(Parser)]
#[command(
    name = "hitless",
    version,
    about = "Checkpoint and restore application state on a hitless card"
)]
struct Cli {
    /// The card: vfio-user:SOCKET (simulated), vfio:DDDD:BB:DD.F (PCIe),
    /// uio:REGS,dma=PATH,iova=ADDR[,offset=N][,len=N][,irq] (Zynq).
    /// Default: $HITLESS_CARD, else the local simulated card.
    #[arg(long, global = true)]
    card: Option<String>,
    /// Log what the driver does (tracing to stderr).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Seconds an operation may take before the card is declared hung.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Controller state: boot results, committed images, log, counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Store FILE (or stdin with -) as the application's set and commit it.
    /// Until the card firmware keeps a record table (issue 4), each tier
    /// holds one set: the last checkpoint wins.
    Checkpoint {
        #[arg(long)]
        app: u32,
        #[arg(long, default_value_t = 0)]
        object: u32,
        /// Reboot stage at which the set is delivered.
        #[arg(long, default_value_t = 0)]
        stage: u32,
        /// Commit to the cold tier (survives a power cycle); default warm.
        #[arg(long)]
        cold: bool,
        file: PathBuf,
    },
    /// Write the application's set to FILE (or stdout).
    Restore {
        #[arg(long)]
        app: u32,
        #[arg(long)]
        object: Option<u32>,
        #[arg(long)]
        cold: bool,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check the committed images of both tiers against their CRCs.
    Validate,
    /// Superblock state, regions, stored sets, log and protection table.
    Inspect {
        #[arg(long)]
        json: bool,
    },
    /// Time a 1 MiB checkpoint and restore on this card.
    Bench,
}

fn open_io(spec: &str, timeout: Duration) -> Result<Box<dyn CardIo>, Error> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| Error::InvalidArgument(format!("card {spec:?}: expected KIND:ADDRESS")))?;
    match kind {
        #[cfg(feature = "vfio-user")]
        "vfio-user" => Ok(Box::new(
            hitless_driver::backend::vfio_user::VfioUserIo::connect(
                std::path::Path::new(rest),
                8 << 20,
                timeout,
            )?,
        )),
        #[cfg(feature = "vfio")]
        "vfio" => Ok(Box::new(hitless_driver::backend::vfio::VfioIo::open(
            rest.parse()?,
            8 << 20,
        )?)),
        "uio" => {
            let mut parts = rest.split(',');
            let regs = parts
                .next()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::InvalidArgument("uio: register device missing".into()))?;
            let mut cfg = hitless_driver::backend::uio::UioConfig {
                regs: regs.into(),
                regs_offset: 0,
                dma: PathBuf::new(),
                dma_len: 8 << 20,
                dma_iova: 0,
                irq: false,
            };
            let num = |v: &str| -> Result<u64, Error> {
                let r = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => v.parse(),
                };
                r.map_err(|_| Error::InvalidArgument(format!("uio: not a number {v:?}")))
            };
            for p in parts {
                match p.split_once('=') {
                    Some(("dma", v)) => cfg.dma = v.into(),
                    Some(("iova", v)) => cfg.dma_iova = num(v)?,
                    Some(("offset", v)) => cfg.regs_offset = num(v)?,
                    Some(("len", v)) => cfg.dma_len = num(v)?,
                    None if p == "irq" => cfg.irq = true,
                    _ => return Err(Error::InvalidArgument(format!("uio: unknown option {p:?}"))),
                }
            }
            if cfg.dma.as_os_str().is_empty() {
                return Err(Error::InvalidArgument("uio: dma=PATH missing".into()));
            }
            Ok(Box::new(hitless_driver::backend::uio::UioIo::open(&cfg)?))
        }
        "uart" => Ok(Box::new(hitless_driver::backend::uart::UartIo::from_spec(
            rest, timeout,
        )?)),
        other => Err(Error::InvalidArgument(format!(
            "card kind {other:?}: vfio-user, vfio, uio or uart"
        ))),
    }
}

/// A progress bar for transfers over 1 MiB (hidden when stderr is not a
/// terminal, so scripts see no escape codes).
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    (total > 1 << 20).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    })
}

fn tier(cold: bool) -> Tier {
    if cold {
        Tier::Cold
    } else {
        Tier::Warm
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hitless: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    let spec = cli
        .card
        .or_else(|| std::env::var("HITLESS_CARD").ok())
        .unwrap_or_else(|| DEFAULT_CARD.to_string());
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let io = open_io(&spec, timeout)?;
    let opts = Options {
        op_timeout: timeout,
        ..Options::default()
    };
    let mut card = Card::open(io, opts)?;
    let g = card.geometry();
    let window = perm::VALID
        | perm::READ
        | perm::WRITE
        | perm::COMMIT
        | perm::WARM
        | perm::COLD
        | perm::REGION;
    let key = card.program_entry(ENTRY, TAG, 0, g.region_size, window)?;
    match cli.cmd {
        Cmd::Status { json } => status(&mut card, json),
        Cmd::Checkpoint {
            app,
            object,
            stage,
            cold,
            file,
        } => {
            let mut data = Vec::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut data)?;
            } else {
                data = std::fs::read(&file)
                    .map_err(|e| Error::InvalidArgument(format!("{}: {e}", file.display())))?;
            }
            let img = set::encode(SetId { app, object, stage }, &data);
            let bar = progress_bar(img.len() as u64);
            let c = card.checkpoint_with_progress(key, tier(cold), &img, &mut |done, _| {
                if let Some(b) = &bar {
                    b.set_position(done)
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            eprintln!(
                "checkpointed {} bytes for app {app} object {object} stage {stage} to the {} tier: seq {}, crc {:#010x}",
                data.len(),
                if cold { "cold" } else { "warm" },
                c.seq,
                c.crc
            );
            Ok(())
        }
        Cmd::Restore {
            app,
            object,
            cold,
            output,
        } => {
            let img = card.restore(key, tier(cold))?;
            let (id, data) = set::decode(&img)?;
            if id.app != app || object.is_some_and(|o| o != id.object) {
                return Err(Error::InvalidArgument(format!(
                    "the {} tier holds app {} object {}, not app {app}{}",
                    if cold { "cold" } else { "warm" },
                    id.app,
                    id.object,
                    object.map_or(String::new(), |o| format!(" object {o}"))
                )));
            }
            match output {
                Some(p) => std::fs::write(&p, data)
                    .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))?,
                None => std::io::stdout().write_all(data)?,
            }
            Ok(())
        }
        Cmd::Validate => {
            let mut bad = 0;
            for (name, t) in [("warm", Tier::Warm), ("cold", Tier::Cold)] {
                let st = card.tier_status(t)?;
                let (len, crc) = st.active_image();
                let r = if len == 0 {
                    Ok(0)
                } else {
                    card.validate(
                        key,
                        t,
                        0,
                        len.min(1 << 20),
                        if len <= 1 << 20 { Some(crc) } else { None },
                    )
                };
                match r {
                    Ok(_) => println!(
                        "{name}: {:?}, {len} bytes, crc {crc:#010x}: valid",
                        st.result
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("{name}: {:?}, {len} bytes: {e}", st.result);
                    }
                }
            }
            if bad > 0 {
                return Err(Error::Device {
                    status: hitless_hdl::contract::Status::CrcMismatch,
                });
            }
            Ok(())
        }
        Cmd::Inspect { json } => inspect(&mut card, key, json),
        Cmd::Bench => {
            let data = vec![0x5Au8; 1 << 20];
            let t = Instant::now();
            card.checkpoint(key, Tier::Warm, &data)?;
            let w = t.elapsed();
            let t = Instant::now();
            let back = card.restore(key, Tier::Warm)?;
            let r = t.elapsed();
            if back != data {
                return Err(Error::BadCompletion("restored data differs".into()));
            }
            println!("checkpoint_1MiB_s = {:.4}", w.as_secs_f64());
            println!("restore_1MiB_s = {:.4}", r.as_secs_f64());
            Ok(())
        }
    }
}

fn status(card: &mut Card<Box<dyn CardIo>>, json: bool) -> Result<(), Error> {
    let s = card.status()?;
    let tier_json = |t: &hitless_driver::TierStatus| {
        serde_json::json!({
            "boot_result": format!("{:?}", t.result),
            "active_region": if t.active == 0 { "A" } else { "B" },
            "seq": t.seq,
            "region_len": t.region_len,
            "region_crc": t.region_crc,
            "log_head": t.log_head,
            "log_tail": t.log_tail,
        })
    };
    if json {
        let v = serde_json::json!({
            "card": card.io().describe(),
            "version": format!("{}.{}", s.version >> 16, s.version & 0xFFFF),
            "boot_done": s.boot_done,
            "busy": s.busy,
            "ring_error": s.ring_error,
            "ops_ok": s.ops_ok,
            "ops_failed": s.ops_failed,
            "warm": tier_json(&s.warm),
            "cold": tier_json(&s.cold),
        });
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "card: {} (contract {}.{})",
        card.io().describe(),
        s.version >> 16,
        s.version & 0xFFFF
    );
    println!("operations: {} ok, {} failed", s.ops_ok, s.ops_failed);
    for (name, t) in [("warm", s.warm), ("cold", s.cold)] {
        let (len, crc) = t.active_image();
        println!(
            "{name}: {:?}; seq {}, active region {}, {len} bytes, crc {crc:#010x}; log {} bytes unread",
            t.result,
            t.seq,
            if t.active == 0 { 'A' } else { 'B' },
            t.log_head.wrapping_sub(t.log_tail)
        );
    }
    Ok(())
}

fn inspect(card: &mut Card<Box<dyn CardIo>>, key: u32, json: bool) -> Result<(), Error> {
    let s = card.status()?;
    let g = card.geometry();
    let mut sets = Vec::new();
    for (name, t) in [("warm", Tier::Warm), ("cold", Tier::Cold)] {
        let st = card.tier_status(t)?;
        let set = if st.active_image().0 == 0 {
            serde_json::Value::Null
        } else {
            match card
                .restore(key, t)
                .and_then(|img| set::decode(&img).map(|(id, d)| (id, d.len())))
            {
                Ok((id, len)) => {
                    serde_json::json!({"app": id.app, "object": id.object, "stage": id.stage, "len": len})
                }
                Err(e) => serde_json::json!({"error": e.to_string()}),
            }
        };
        sets.push(serde_json::json!({"tier": name, "set": set}));
    }
    let mut pt = Vec::new();
    for i in 0..PT_ENTRIES {
        card.io().write32(reg::PT_INDEX, i)?;
        let perm_bits = card.io().read32(reg::PT_PERM)?;
        if perm_bits & perm::VALID != 0 {
            pt.push(serde_json::json!({
                "entry": i,
                "base": card.io().read32(reg::PT_BASE)?,
                "len": card.io().read32(reg::PT_LEN)?,
                "perm": format!("{perm_bits:#04x}"),
            }));
        }
    }
    let v = serde_json::json!({
        "geometry": {"region_size": g.region_size, "log_size": g.log_size,
                      "region_a": g.region_a_base(), "region_b": g.region_b_base(), "log": g.log_base()},
        "superblocks": {
            "warm": {"result": format!("{:?}", s.warm.result), "seq": s.warm.seq, "active": s.warm.active,
                     "regions": [[s.warm.region_len[0], s.warm.region_crc[0]], [s.warm.region_len[1], s.warm.region_crc[1]]],
                     "log": [s.warm.log_tail, s.warm.log_head]},
            "cold": {"result": format!("{:?}", s.cold.result), "seq": s.cold.seq, "active": s.cold.active,
                     "regions": [[s.cold.region_len[0], s.cold.region_crc[0]], [s.cold.region_len[1], s.cold.region_crc[1]]],
                     "log": [s.cold.log_tail, s.cold.log_head]},
        },
        "sets": sets,
        "protection_table": pt,
    });
    if json {
        println!("{v:#}");
    } else {
        println!(
            "geometry: regions of {} bytes at {:#x} and {:#x}, log of {} bytes at {:#x}",
            g.region_size,
            g.region_a_base(),
            g.region_b_base(),
            g.log_size,
            g.log_base()
        );
        for (name, t) in [("warm", s.warm), ("cold", s.cold)] {
            println!(
                "{name} superblock: {:?}, seq {}, active {}; A {} bytes crc {:#010x}; B {} bytes crc {:#010x}; log tail {} head {}",
                t.result, t.seq, if t.active == 0 { 'A' } else { 'B' }, t.region_len[0], t.region_crc[0], t.region_len[1], t.region_crc[1], t.log_tail, t.log_head
            );
        }
        for s in &v["sets"].as_array().cloned().unwrap_or_default() {
            println!("{} set: {}", s["tier"].as_str().unwrap_or("?"), s["set"]);
        }
        for e in &pt {
            println!(
                "protection entry {}: base {:#x} len {:#x} perm {}",
                e["entry"],
                e["base"].as_u64().unwrap_or(0),
                e["len"].as_u64().unwrap_or(0),
                e["perm"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
