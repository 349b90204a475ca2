//! `cargo xtask fuzz`: the firmware's decoders under libFuzzer for a
//! bounded time each: `tlv_decode` (the mailbox's TLV messages) and
//! `link_decode` (the card-to-card link: link messages, their framing, the
//! Noise channel, the witness messages, and the replication node receiving
//! them) and `backup_decode` (the remote backup reader's frames). The targets are ordinary `cargo fuzz` targets (`firmware/fuzz`,
//! run one longer with `cargo fuzz run link_decode`); here they are built
//! with the same coverage instrumentation cargo-fuzz passes,
//! so no extra tool has to be installed and the stable toolchain works
//! (no sanitizer: the decoder is safe Rust, a panic is the bug we hunt).

use crate::util;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The instrumentation flags `cargo fuzz build --sanitizer none` uses.
const FLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

/// The fuzz targets, in the order they run.
pub const TARGETS: &[&str] = &["tlv_decode", "link_decode", "backup_decode"];

/// Build the targets, then fuzz each for `seconds`.
pub fn run(seconds: u32, targets: &[&str]) -> Result<()> {
    let root = util::root();
    let dir = root.join("firmware/fuzz");
    // With an explicit --target, RUSTFLAGS reach only the target's code,
    // not build scripts and proc macros (as cargo-fuzz does it).
    let triple = host_triple()?;
    let mut build = util::cargo();
    build
        .current_dir(&dir)
        .args(["build", "--release", "--target", &triple])
        .env("RUSTFLAGS", FLAGS)
        .env("CARGO_TARGET_DIR", root.join("target/fuzz"));
    for t in targets {
        if !TARGETS.contains(t) {
            bail!("no fuzz target {t} (targets: {})", TARGETS.join(", "));
        }
        build.args(["--bin", t]);
    }
    util::run(&mut build).context("building the fuzz targets")?;
    for t in targets {
        println!("fuzz: {t} for {seconds} s");
        fuzz_one(&root, &dir, &triple, t, seconds)?;
    }
    Ok(())
}

fn fuzz_one(root: &Path, dir: &Path, triple: &str, target: &str, seconds: u32) -> Result<()> {
    let bin = root.join(format!("target/fuzz/{triple}/release/{target}"));
    // Work on a copy of the seed corpus: libFuzzer adds what it finds.
    let corpus = root.join(format!("target/fuzz/corpus/{target}"));
    std::fs::create_dir_all(&corpus)?;
    copy_seeds(&dir.join(format!("corpus/{target}")), &corpus)?;
    let artifacts = root.join("target/fuzz/artifacts/");
    std::fs::create_dir_all(&artifacts)?;
    let mut fuzz = util::command(bin.to_str().context("non-UTF-8 path")?);
    fuzz.arg(format!("-max_total_time={seconds}"))
        .arg("-max_len=4096")
        .arg("-seed=1")
        .arg(format!("-artifact_prefix={}", artifacts.display()))
        .arg(&corpus);
    let status = util::status(&mut fuzz)?;
    if !status.success() {
        bail!(
            "the fuzzer found a crash in {target} (input saved under {}); reproduce with {} <file>",
            artifacts.display(),
            bin.display()
        );
    }
    Ok(())
}

fn host_triple() -> Result<String> {
    let out = util::command("rustc").arg("-vV").output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host triple")
}

fn copy_seeds(from: &Path, to: &Path) -> Result<()> {
    for e in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}
