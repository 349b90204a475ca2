//! The card's software images (seed 002) as the mailbox reports them: the
//! fields of the IMAGE_* responses, written once for both sides. The
//! requests themselves are [`crate::Request`]'s `Image*` variants.
//!
//! Packed words are little-endian u32s; a u64 is two words, low first. A
//! decoder takes at least the words it knows and ignores any after them,
//! so a newer card may append words.

use crate::msg::tag;
use crate::tlv::{Builder, Message};

/// One NVS device's copy of one context area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AreaReport {
    /// [`AreaReport::EMPTY`], [`AreaReport::GOOD`] or [`AreaReport::CORRUPT`].
    pub state: u32,
    /// The version the metadata names for the area (0 when empty).
    pub version: u64,
}

impl AreaReport {
    pub const EMPTY: u32 = 0;
    pub const GOOD: u32 = 1;
    pub const CORRUPT: u32 = 2;

    pub fn state_name(&self) -> &'static str {
        match self.state {
            Self::EMPTY => "empty",
            Self::GOOD => "good",
            _ => "corrupt",
        }
    }
}

/// Why a trial ended in a rollback (the image manager's `RollbackCause`).
pub mod cause {
    pub const BOOT_LIMIT: u32 = 0;
    pub const ALTERNATE_CORRUPT: u32 = 1;
    pub const DEADLINE: u32 = 2;
    pub const MANUAL: u32 = 3;
    pub const SELF_TEST: u32 = 4;

    /// For messages.
    pub fn name(c: u32) -> &'static str {
        match c {
            BOOT_LIMIT => "boot limit reached without mark-good",
            ALTERNATE_CORRUPT => "the new image failed verification",
            DEADLINE => "not marked good before the deadline",
            MANUAL => "operator rollback",
            SELF_TEST => "a component failed its boot self-test",
            _ => "unknown",
        }
    }
}

/// The card's image state: IMAGE_STATUS's answer, and the answer to
/// IMAGE_ACTIVATE, IMAGE_MARK_GOOD, IMAGE_ROLLBACK and IMAGE_SERVE (the
/// state after the request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageReport {
    /// [`ImageReport::RUNNING`], [`ImageReport::NEEDS_FRESH`] or
    /// [`ImageReport::NOT_BOOTED`].
    pub state: u32,
    /// The running image's version (0: none).
    pub version: u64,
    /// The context area it runs from.
    pub area: u32,
    /// A trial boot, not yet marked good.
    pub trial: bool,
    /// The trial's mark-good deadline (Unix seconds).
    pub deadline: Option<u64>,
    /// The alternate boot flag: the next boot is a trial boot.
    pub alt_boot: bool,
    /// Trial boots counted, and allowed before the automatic rollback.
    pub boot_count: u32,
    pub boot_limit: u32,
    /// The primary NVS device and the current context area.
    pub primary: u32,
    pub current_area: u32,
    /// `[device][area]`, verified when the report was made.
    pub areas: [[AreaReport; 2]; 2],
    /// The last automatic or manual rollback since the card process
    /// started: (cause, the version it went back to).
    pub last_rollback: Option<(u32, u64)>,
    /// Where the card serves its components, when it does.
    pub http: Option<String>,
    pub tftp: Option<String>,
    /// The running image's manifest (JSON, the SGC); empty when none.
    pub manifest: Vec<u8>,
    /// Notes for the operator (notices, corruption, self-test results).
    pub notes: Vec<String>,
}

impl ImageReport {
    pub const RUNNING: u32 = 0;
    pub const NEEDS_FRESH: u32 = 1;
    pub const NOT_BOOTED: u32 = 2;
    const STATE_WORDS: usize = 17;
    const HEALTH_WORDS: usize = 12;

    pub fn state_name(&self) -> &'static str {
        match self.state {
            Self::RUNNING => "running",
            Self::NEEDS_FRESH => "no valid image: needs a fresh install",
            _ => "not booted",
        }
    }

    pub(crate) fn encode(&self, b: Builder) -> Builder {
        let (dl, dh) = split(self.deadline.unwrap_or(0));
        let (vl, vh) = split(self.version);
        let (rc, rv) = self.last_rollback.unwrap_or((0, 0));
        let (rl, rh) = split(rv);
        let state = [
            self.state,
            vl,
            vh,
            self.area,
            self.trial.into(),
            self.deadline.is_some().into(),
            dl,
            dh,
            self.alt_boot.into(),
            self.boot_count,
            self.boot_limit,
            self.primary,
            self.current_area,
            self.last_rollback.is_some().into(),
            rc,
            rl,
            rh,
        ];
        let health = self.areas.iter().flatten().flat_map(|a| {
            let (l, h) = split(a.version);
            [a.state, l, h]
        });
        let mut b = b
            .bytes(tag::IMAGE_STATE, &pack(state))
            .bytes(tag::IMAGE_HEALTH, &pack(health));
        if !self.manifest.is_empty() {
            b = b.bytes(tag::MANIFEST, &self.manifest);
        }
        if let Some(h) = &self.http {
            b = b.bytes(tag::HTTP_ADDR, h.as_bytes());
        }
        if let Some(t) = &self.tftp {
            b = b.bytes(tag::TFTP_ADDR, t.as_bytes());
        }
        lines(b, tag::NOTES, &self.notes)
    }

    pub(crate) fn decode(m: &Message<'_>) -> Result<Self, crate::message::ResponseError> {
        let s = words(m, tag::IMAGE_STATE, Self::STATE_WORDS)?;
        let h = words(m, tag::IMAGE_HEALTH, Self::HEALTH_WORDS)?;
        let area = |i: usize| AreaReport {
            state: h[3 * i],
            version: join(h[3 * i + 1], h[3 * i + 2]),
        };
        Ok(Self {
            state: s[0],
            version: join(s[1], s[2]),
            area: s[3],
            trial: s[4] != 0,
            deadline: (s[5] != 0).then(|| join(s[6], s[7])),
            alt_boot: s[8] != 0,
            boot_count: s[9],
            boot_limit: s[10],
            primary: s[11],
            current_area: s[12],
            areas: [[area(0), area(1)], [area(2), area(3)]],
            last_rollback: (s[13] != 0).then(|| (s[14], join(s[15], s[16]))),
            http: text(m, tag::HTTP_ADDR),
            tftp: text(m, tag::TFTP_ADDR),
            manifest: m.bytes_or_empty(tag::MANIFEST).to_vec(),
            notes: read_lines(m, tag::NOTES),
        })
    }
}

/// IMAGE_INSTALL's answer: how much of the package the card holds, and
/// what the install did once the last chunk arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallProgress {
    /// Package bytes the card holds.
    pub received: u64,
    /// The install, after the last chunk.
    pub installed: Option<Installed>,
}

/// What an install wrote (the image manager's `InstallReport`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub version: u64,
    /// The context area written.
    pub area: u32,
    /// A fresh install on a card without a valid image: it is current.
    pub fresh: bool,
    /// Components written from the package.
    pub written: Vec<String>,
    /// Unchanged components copied from the current area.
    pub copied: Vec<String>,
    pub bytes_from_package: u64,
    pub bytes_copied: u64,
    /// Flash erases and page programs, both devices.
    pub erases: u64,
    pub programs: u64,
    /// Notices raised (a gateware change).
    pub notes: Vec<String>,
}

impl InstallProgress {
    const WORDS: usize = 10;

    pub(crate) fn encode(&self, b: Builder) -> Builder {
        let b = b.u64(tag::OFFSET, self.received);
        let Some(i) = &self.installed else { return b };
        let w = [i.bytes_from_package, i.bytes_copied, i.erases, i.programs]
            .into_iter()
            .flat_map(|v| {
                let (l, h) = split(v);
                [l, h]
            });
        let words = [i.area, i.fresh.into()].into_iter().chain(w);
        let b = b
            .u64(tag::VERSION, i.version)
            .bytes(tag::INSTALL, &pack(words));
        let b = lines(b, tag::WRITTEN, &i.written);
        let b = lines(b, tag::COPIED, &i.copied);
        lines(b, tag::NOTES, &i.notes)
    }

    pub(crate) fn decode(m: &Message<'_>) -> Result<Self, crate::message::ResponseError> {
        let received = m.u64_or(tag::OFFSET, 0)?;
        if !m.has(tag::VERSION) {
            return Ok(Self {
                received,
                installed: None,
            });
        }
        let w = words(m, tag::INSTALL, Self::WORDS)?;
        Ok(Self {
            received,
            installed: Some(Installed {
                version: m.u64_or(tag::VERSION, 0)?,
                area: w[0],
                fresh: w[1] != 0,
                bytes_from_package: join(w[2], w[3]),
                bytes_copied: join(w[4], w[5]),
                erases: join(w[6], w[7]),
                programs: join(w[8], w[9]),
                written: read_lines(m, tag::WRITTEN),
                copied: read_lines(m, tag::COPIED),
                notes: read_lines(m, tag::NOTES),
            }),
        })
    }
}

fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

fn join(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | u64::from(hi) << 32
}

fn pack(words: impl IntoIterator<Item = u32>) -> Vec<u8> {
    words.into_iter().flat_map(u32::to_le_bytes).collect()
}

/// At least `n` packed words of field `t` (more are a newer sender's).
fn words(m: &Message<'_>, t: u16, n: usize) -> Result<Vec<u32>, crate::message::ResponseError> {
    let b = m
        .field(t)
        .ok_or(crate::message::ResponseError::Missing(t))?;
    if b.len() < 4 * n || b.len() % 4 != 0 {
        return Err(crate::message::ResponseError::Size {
            tag: t,
            len: b.len(),
        });
    }
    Ok(b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn text(m: &Message<'_>, t: u16) -> Option<String> {
    m.field(t).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn lines(b: Builder, t: u16, v: &[String]) -> Builder {
    if v.is_empty() {
        b
    } else {
        b.bytes(t, v.join("\n").as_bytes())
    }
}

fn read_lines(m: &Message<'_>, t: u16) -> Vec<String> {
    let b = m.bytes_or_empty(t);
    if b.is_empty() {
        return Vec::new();
    }
    String::from_utf8_lossy(b)
        .split('\n')
        .map(str::to_owned)
        .collect()
}
