//! `hitless raw ...`: the controller driven directly, without firmware
//! (cards with a controller only, or a look under the firmware).

use crate::{progress_bar, read_input, tier, tier_name, write_output};
use clap::Subcommand;
use hitless_driver::card::tier_status;
use hitless_driver::{Card, CardIo, Error, Options, Tier};
use hitless_hdl::contract::{perm, reg, PT_ENTRIES};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Protection entry and tag `raw` commands use for the region window.
const ENTRY: u32 = 1;
const TAG: u32 = 0x0C11;

#[derive(Subcommand)]
pub enum RawCmd {
    /// Commit FILE (or -) as the whole image of a tier.
    Checkpoint {
        #[arg(long)]
        cold: bool,
        file: PathBuf,
    },
    /// The committed image of a tier to FILE (or stdout).
    Restore {
        #[arg(long)]
        cold: bool,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check the committed images of both tiers against their CRCs.
    Validate,
    /// The protection table.
    Protection,
    /// Time a 1 MiB checkpoint and restore.
    Bench,
}

/// A progress bar for transfers over 1 MiB (hidden when stderr is not a
/// terminal, so scripts see no escape codes).
pub fn raw(cmd: RawCmd, io: Box<dyn CardIo>, timeout: Duration) -> Result<(), Error> {
    let opts = Options {
        op_timeout: timeout,
        ..Options::default()
    };
    let mut card = Card::open(io, opts)?;
    let g = card.geometry();
    let window = perm::FULL_REGION_WINDOW;
    let key = card.program_entry(ENTRY, TAG, 0, g.region_size, window)?;
    match cmd {
        RawCmd::Checkpoint { cold, file } => {
            let data = read_input(&file)?;
            let bar = progress_bar(data.len() as u64);
            let c = card.checkpoint_with_progress(key, tier(cold), &data, &mut |done, _| {
                if let Some(b) = &bar {
                    b.set_position(done)
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            eprintln!(
                "committed {} bytes to the {} tier: seq {}, crc {:#010x}",
                data.len(),
                tier_name(cold),
                c.seq,
                c.crc
            );
            Ok(())
        }
        RawCmd::Restore { cold, output } => {
            let st = tier_status(card.io(), tier(cold))?;
            let bar = progress_bar(st.active_image().0 as u64);
            let img = card.restore_with_progress(key, tier(cold), &mut |done, _| {
                if let Some(b) = &bar {
                    b.set_position(done)
                }
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            write_output(output.as_deref(), &img)
        }
        RawCmd::Validate => {
            let mut mismatch = 0;
            for (name, t) in [("warm", Tier::Warm), ("cold", Tier::Cold)] {
                let result = card.tier_status(t)?.result;
                match card.validate_image(key, t) {
                    Ok((len, crc)) => {
                        println!("{name}: {result:?}, {len} bytes, crc {crc:#010x}: valid")
                    }
                    Err(Error::Device {
                        status: hitless_hdl::contract::Status::CrcMismatch,
                    }) => {
                        mismatch += 1;
                        println!("{name}: {result:?}: the image fails its CRC");
                    }
                    // A timeout or a transport failure is not a verdict on
                    // the image: say what it is.
                    Err(e) => return Err(e),
                }
            }
            if mismatch > 0 {
                return Err(Error::Device {
                    status: hitless_hdl::contract::Status::CrcMismatch,
                });
            }
            Ok(())
        }
        RawCmd::Protection => {
            for i in 0..PT_ENTRIES {
                card.io().write32(reg::PT_INDEX, i)?;
                let perm_bits = card.io().read32(reg::PT_PERM)?;
                if perm_bits & perm::VALID != 0 {
                    println!(
                        "protection entry {i}: base {:#x} len {:#x} perm {perm_bits:#04x}",
                        card.io().read32(reg::PT_BASE)?,
                        card.io().read32(reg::PT_LEN)?
                    );
                }
            }
            Ok(())
        }
        RawCmd::Bench => {
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
