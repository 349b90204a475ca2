//! Card specifications: the one string a user gives to name a card and its
//! transport (`--card`, `$HITLESS_CARD`), parsed and opened here so every
//! program (the CLI, the daemon, tests) accepts the same ones.
//!
//! | spec | transport |
//! |---|---|
//! | `vfio-user:SOCKET` | the simulated card (`hitless-sim serve`) |
//! | `vfio:DDDD:BB:DD.F` | a PCIe card bound to `vfio-pci` |
//! | `uio:REGS,dma=PATH,iova=ADDR[,offset=N][,len=N][,irq]` | a Zynq board's UIO device |
//! | `uart:/dev/ttyUSB0[@BAUD]` | a board without PCIe, over the UART bridge |
//! | `daemon:SOCKET` | the firmware API through `hitlessd` (no raw controller access) |
//! | `backup:HOST:PORT` | a card's read-only backup reader service over TCP (list, restore, log read and trim, status) |
//! | `pair:SPEC,SPEC[,…]` | whichever card of a replicated pair is master, followed across takeovers and switchovers ([`crate::pair`]) |

use crate::error::Error;
use crate::io::CardIo;
use std::path::PathBuf;
use std::time::Duration;

/// The local simulated card (`hitless-sim serve --socket` this path).
pub const DEFAULT_CARD: &str = "vfio-user:/tmp/hitless/card.sock";

/// The card to use: `explicit`, else `$HITLESS_CARD`, else the daemon at
/// [`crate::daemon::DEFAULT_SOCKET`] when its socket exists, else
/// [`DEFAULT_CARD`].
pub fn card_spec(explicit: Option<String>) -> String {
    explicit
        .or_else(|| std::env::var("HITLESS_CARD").ok())
        .unwrap_or_else(|| {
            let daemon = std::path::Path::new(crate::daemon::DEFAULT_SOCKET);
            if daemon.exists() {
                format!("daemon:{}", daemon.display())
            } else {
                DEFAULT_CARD.to_string()
            }
        })
}

/// The firmware a spec names: through the daemon for `daemon:SOCKET`,
/// else the card itself (opened as [`open_card`] does).
pub fn open_firmware(
    spec: &str,
    timeout: Duration,
) -> Result<Box<dyn crate::firmware::Firmware>, Error> {
    if let Some(cards) = spec.strip_prefix(crate::pair::PREFIX) {
        let pair = crate::pair::PairSpec::parse(cards)?;
        return Ok(Box::new(crate::pair::PairClient::open(pair, timeout)?));
    }
    if let Some(addr) = spec.strip_prefix("backup:") {
        return Ok(Box::new(crate::backup::BackupClient::connect(
            addr, timeout,
        )?));
    }
    match spec.strip_prefix("daemon:") {
        Some(path) => Ok(Box::new(crate::daemon::DaemonClient::connect(
            std::path::Path::new(path),
            timeout,
        )?)),
        None => Ok(Box::new(crate::firmware::Client::open(
            open_card(spec, timeout)?,
            timeout,
        )?)),
    }
}

/// Open the card a spec names; every wait of the transport is bounded by
/// `timeout`.
pub fn open_card(spec: &str, timeout: Duration) -> Result<Box<dyn CardIo + Send>, Error> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or_else(|| Error::InvalidArgument(format!("card {spec:?}: expected KIND:ADDRESS")))?;
    match kind {
        #[cfg(feature = "vfio-user")]
        "vfio-user" => Ok(Box::new(crate::backend::vfio_user::VfioUserIo::connect(
            std::path::Path::new(rest),
            // Room for the largest set (`MAX_SET_BYTES`) plus the rings and
            // message buffers; the card maps the memfd, pages are touched
            // only as they are used.
            crate::firmware::MAX_SET_BYTES as usize + (16 << 20),
            timeout,
        )?)),
        #[cfg(feature = "vfio")]
        "vfio" => Ok(Box::new(crate::backend::vfio::VfioIo::open(
            rest.parse()?,
            8 << 20,
        )?)),
        "uio" => {
            let mut parts = rest.split(',');
            let regs = parts
                .next()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::InvalidArgument("uio: register device missing".into()))?;
            let mut cfg = crate::backend::uio::UioConfig {
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
            Ok(Box::new(crate::backend::uio::UioIo::open(&cfg)?))
        }
        "uart" => Ok(Box::new(crate::backend::uart::UartIo::from_spec(
            rest, timeout,
        )?)),
        "backup" => Err(Error::InvalidArgument(format!(
            "card {spec:?}: the backup reader serves an application's sets and log only \
             (list, restore, log read and trim); raw controller access needs the card itself"
        ))),
        "pair" => Err(Error::InvalidArgument(format!(
            "card {spec:?}: a pair is two cards; raw controller access needs one of them"
        ))),
        "daemon" => Err(Error::InvalidArgument(format!(
            "card {spec:?}: hitlessd serves the firmware API only; raw controller access \
             needs the card itself (vfio-user:, vfio:, uio: or uart:)"
        ))),
        other => Err(Error::InvalidArgument(format!(
            "card kind {other:?}: vfio-user, vfio, uio, uart, daemon, backup or pair"
        ))),
    }
}
