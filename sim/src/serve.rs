//! `hitless-sim serve`: the card service behind a vfio-user socket, and a
//! control socket for fault injection.

use crate::firmware::FirmwareHandle;
use crate::service::{CardService, Control, RegionSel, ServiceStatus};
use hitless_hdl::contract::MAILBOX_BASE;
use hitless_vfio_user::{card, Device, DeviceDescription, DmaRegion, Error as DeviceError, IrqFd};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The card as a vfio-user device: BAR0 accesses, DMA maps and interrupts
/// go to the card service.
pub struct SimDevice {
    svc: CardService,
    firmware: Option<FirmwareHandle>,
}

impl SimDevice {
    /// A card whose BAR0 is the controller's register file only (the
    /// mailbox page reads as zeros: no firmware).
    pub fn new(svc: CardService) -> Self {
        Self {
            svc,
            firmware: None,
        }
    }
    /// A card with firmware serving the mailbox page.
    pub fn with_firmware(svc: CardService, firmware: FirmwareHandle) -> Self {
        Self {
            svc,
            firmware: Some(firmware),
        }
    }
    fn read32(&self, offset: u32) -> Result<u32, DeviceError> {
        if offset >= MAILBOX_BASE {
            return Ok(self.firmware.as_ref().map_or(0, |f| f.read32(offset)));
        }
        self.svc.read32(offset).map_err(dev_err)
    }
    fn write32(&self, offset: u32, value: u32) -> Result<(), DeviceError> {
        if offset >= MAILBOX_BASE {
            if let Some(f) = &self.firmware {
                f.write32(offset, value);
            }
            return Ok(());
        }
        self.svc.write32(offset, value).map_err(dev_err)
    }
}

fn dev_err(e: crate::service::ServiceError) -> DeviceError {
    tracing::warn!("card: {e}");
    DeviceError::DeviceIo
}

impl Device for SimDevice {
    fn description(&self) -> DeviceDescription {
        card::description()
    }

    fn region_read(&mut self, region: u32, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        // The CSR file is 32-bit registers: 4- and 8-byte aligned accesses.
        if region != card::BAR0 || !offset.is_multiple_of(4) || (buf.len() != 4 && buf.len() != 8) {
            return Err(DeviceError::InvalidArgument(
                "BAR0 takes aligned 4- and 8-byte reads",
            ));
        }
        if offset + buf.len() as u64 > card::BAR0_SIZE {
            return Err(DeviceError::InvalidArgument("read past BAR0"));
        }
        for (i, chunk) in buf.chunks_mut(4).enumerate() {
            let v = self.read32((offset + 4 * i as u64) as u32)?;
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        if region != card::BAR0 || !offset.is_multiple_of(4) || (data.len() != 4 && data.len() != 8)
        {
            return Err(DeviceError::InvalidArgument(
                "BAR0 takes aligned 4- and 8-byte writes",
            ));
        }
        if offset + data.len() as u64 > card::BAR0_SIZE {
            return Err(DeviceError::InvalidArgument("write past BAR0"));
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let mut w = [0u8; 4];
            w.copy_from_slice(chunk);
            self.write32((offset + 4 * i as u64) as u32, u32::from_le_bytes(w))?;
        }
        Ok(())
    }

    fn dma_map(&mut self, region: DmaRegion) -> Result<(), DeviceError> {
        // Sealed or not: the card's DMA port maps only fds sealed against
        // shrinking and reaches any other (QEMU's plain shared memory) with
        // pread/pwrite, so a client shrinking its file costs it faults, not
        // the card a SIGBUS (crate::dma).
        let file = std::fs::File::from(region.fd);
        self.svc
            .dma_map(
                region.iova,
                region.size,
                file,
                region.offset,
                region.prot.write,
            )
            .map_err(|e| {
                tracing::warn!("DMA map refused: {e}");
                DeviceError::InvalidArgument("DMA map refused by the card")
            })
    }

    fn dma_unmap(&mut self, iova: u64, size: u64) -> Result<(), DeviceError> {
        self.svc
            .dma_unmap(iova, size)
            .map_err(|_| DeviceError::NotFound)
    }

    fn set_irqs(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        fds: Vec<IrqFd>,
    ) -> Result<(), DeviceError> {
        if index != card::IRQ_INDEX || start != 0 || count > 1 {
            return Err(DeviceError::InvalidArgument(
                "the card has one MSI-X vector",
            ));
        }
        let sink = fds.into_iter().next().map(|fd| {
            Box::new(move || {
                let _ = fd.trigger();
            }) as Box<dyn FnMut() + Send>
        });
        self.svc.set_irq(sink).map_err(dev_err)
    }

    fn reset(&mut self) -> Result<(), DeviceError> {
        self.svc
            .control(Control::WarmReset)
            .map(|_| ())
            .map_err(dev_err)
    }
}

/// Parse one control command line (the protocol of the control socket).
pub fn parse_control(line: &str) -> Result<Control, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("not a number: {s:?}"));
    match w.as_slice() {
        ["warm-reset"] => Ok(Control::WarmReset),
        ["power-cycle"] => Ok(Control::PowerCycle),
        ["status"] => Ok(Control::Status),
        ["cut-power", n] => Ok(Control::CutPowerAt(num(n)?)),
        ["flip-bits", tier, region, count, seed] => Ok(Control::FlipBits {
            cold: match *tier {
                "cold" => true,
                "warm" => false,
                t => return Err(format!("tier {t:?}: warm or cold")),
            },
            region: match *region {
                "a" | "A" => RegionSel::A,
                "b" | "B" => RegionSel::B,
                "active" => RegionSel::Active,
                "alternate" => RegionSel::Alternate,
                r => return Err(format!("region {r:?}: a, b, active or alternate")),
            },
            count: u32::try_from(num(count)?).map_err(|_| "count too large".to_string())?,
            seed: num(seed)?,
        }),
        ["flip-data", tier, offset, len, count, seed] => Ok(Control::FlipDataBits {
            cold: match *tier {
                "cold" => true,
                "warm" => false,
                t => return Err(format!("tier {t:?}: warm or cold")),
            },
            offset: num(offset)?,
            len: num(len)?,
            count: u32::try_from(num(count)?).map_err(|_| "count too large".to_string())?,
            seed: num(seed)?,
        }),
        _ => Err(format!("unknown command {line:?}")),
    }
}

/// One line describing the card's state.
pub fn format_status(s: &ServiceStatus) -> String {
    let r = |x: Option<hitless_hdl::contract::BootResult>| {
        x.map_or("?".to_string(), |b| format!("{b:?}"))
    };
    format!(
        "cycle={} power_ons={} warm={} cold={} dma_mappings={} dma_faults={} irqs={}",
        s.cycle,
        s.power_ons,
        r(s.warm_result),
        r(s.cold_result),
        s.dma_mappings,
        s.dma_faults,
        s.irqs
    )
}

/// Serve the control socket until `stop` is set: one command per
/// connection, one reply line ("ok <status>" or "error <reason>").
pub fn control_loop(listener: UnixListener, svc: CardService, stop: Arc<AtomicBool>) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                let mut reader = BufReader::new((&stream).take_limited(256));
                let reply = match reader.read_line(&mut line) {
                    Ok(_) => match parse_control(line.trim()) {
                        Ok(c) => match svc.control(c) {
                            Ok(st) => format!("ok {}", format_status(&st)),
                            Err(e) => format!("error {e}"),
                        },
                        Err(e) => format!("error {e}"),
                    },
                    Err(e) => format!("error reading the command: {e}"),
                };
                let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Send one command to a card's control socket and return its reply.
pub fn control_request(socket: &Path, command: &str, timeout: Duration) -> Result<String, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    (&stream)
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("no reply: {e}"))?;
    match line.trim().strip_prefix("ok") {
        Some(rest) => Ok(rest.trim().to_string()),
        None => Err(line.trim().trim_start_matches("error").trim().to_string()),
    }
}

trait TakeLimited: Sized {
    fn take_limited(self, n: u64) -> std::io::Take<Self>;
}

impl<R: std::io::Read> TakeLimited for R {
    fn take_limited(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}

/// A `hitless-sim serve` child process; killed (and reaped) when dropped.
pub struct CardProcess {
    pub child: std::process::Child,
    pub socket: std::path::PathBuf,
    pub control: std::path::PathBuf,
}

impl Drop for CardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `exe serve` (the `hitless-sim` binary) with its sockets and state
/// in `dir`, plus `extra` arguments, and wait (at most `timeout`) for both
/// sockets to appear. Stale sockets of a killed card are removed first.
pub fn spawn_card(
    exe: &Path,
    dir: &Path,
    extra: &[&str],
    timeout: Duration,
) -> Result<CardProcess, String> {
    let socket = dir.join("card.sock");
    let control = dir.join("card.ctl");
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&control);
    let child = std::process::Command::new(exe)
        .args(["serve", "--socket"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--control")
        .arg(&control)
        .args(extra)
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let p = CardProcess {
        child,
        socket,
        control,
    };
    let start = std::time::Instant::now();
    while !(p.socket.exists() && p.control.exists()) {
        if start.elapsed() > timeout {
            return Err("the card process did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_commands_parse() {
        assert_eq!(parse_control("warm-reset"), Ok(Control::WarmReset));
        assert_eq!(
            parse_control("cut-power 1234"),
            Ok(Control::CutPowerAt(1234))
        );
        assert_eq!(
            parse_control("flip-bits cold active 3 9"),
            Ok(Control::FlipBits {
                cold: true,
                region: RegionSel::Active,
                count: 3,
                seed: 9
            })
        );
        assert_eq!(
            parse_control("flip-data warm 0 4096 2 5"),
            Ok(Control::FlipDataBits {
                cold: false,
                offset: 0,
                len: 4096,
                count: 2,
                seed: 5
            })
        );
        for bad in [
            "",
            "flip-data hot 0 1 1 1",
            "reboot",
            "cut-power",
            "cut-power x",
            "flip-bits hot a 1 1",
            "flip-bits cold c 1 1",
            "flip-bits cold a 99999999999 1",
        ] {
            assert!(parse_control(bad).is_err(), "{bad:?}");
        }
    }
}
