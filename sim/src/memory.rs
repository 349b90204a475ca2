//! Memory models for the controller's pipelined memory ports: a fixed
//! latency pipeline in front of a backing store, optional random command
//! stalls, and a record of writes that are accepted but not yet durable
//! (what a power cut may tear).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// Something a port can read and write in 8-byte words.
pub trait WordStore {
    fn read_word(&self, addr: u64) -> u64;
    fn write_word(&mut self, addr: u64, value: u64, strobe: u8);
}

impl WordStore for hitless_hdl::model::PagedMemory {
    fn read_word(&self, addr: u64) -> u64 {
        self.read_u64(addr)
    }
    fn write_word(&mut self, addr: u64, value: u64, strobe: u8) {
        self.write_u64_masked(addr, value, strobe)
    }
}

/// A tier's bytes: in memory, or a shared mapping of its state file (a
/// 512 MiB tier is neither read nor copied at start: pages come in as the
/// controller touches them, and every write is in the file at once).
pub enum TierBytes {
    /// `high`: no byte at or above it was ever written, so a copy of a
    /// 512 MiB tier copies only what was used.
    Mem {
        bytes: Vec<u8>,
        high: usize,
    },
    File(memmap2::MmapMut),
}

impl TierBytes {
    fn mem(bytes: Vec<u8>, high: usize) -> Self {
        Self::Mem { bytes, high }
    }

    /// The bytes, for a write that ends at `end` (keeps `high` exact).
    fn for_write(&mut self, end: usize) -> &mut [u8] {
        match self {
            Self::Mem { bytes, high } => {
                *high = (*high).max(end.min(bytes.len()));
                bytes
            }
            Self::File(m) => m,
        }
    }
}

impl std::ops::Deref for TierBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mem { bytes, .. } => bytes,
            Self::File(m) => m,
        }
    }
}

/// Mutable access by slice may write anywhere: all of it counts as used.
impl std::ops::DerefMut for TierBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        let end = self.len();
        self.for_write(end)
    }
}

/// A copy is always in memory (a snapshot of the file's contents).
impl Clone for TierBytes {
    fn clone(&self) -> Self {
        match self {
            Self::Mem { bytes, high } => {
                let mut copy = vec![0; bytes.len()];
                copy[..*high].copy_from_slice(&bytes[..*high]);
                Self::mem(copy, *high)
            }
            Self::File(m) => Self::mem(m.to_vec(), m.len()),
        }
    }
}

impl PartialEq for TierBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<u8>> for TierBytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}

impl std::fmt::Debug for TierBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TierBytes({} bytes)", self.len())
    }
}

/// A byte array NV tier. Out-of-range addresses read as all ones and
/// ignore writes (the controller must never produce them; tests check).
pub struct NvStore {
    pub bytes: TierBytes,
    pub out_of_range: u64,
}

impl NvStore {
    /// A blank in-memory tier (zero pages are not touched until written).
    pub fn new(size: usize) -> Self {
        Self {
            bytes: TierBytes::mem(vec![0; size], 0),
            out_of_range: 0,
        }
    }

    /// An in-memory tier with the given contents.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let high = bytes.len();
        Self {
            bytes: TierBytes::mem(bytes, high),
            out_of_range: 0,
        }
    }

    /// An in-memory copy of this tier's contents (no file behind it).
    pub fn snapshot(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            out_of_range: 0,
        }
    }

    /// A tier kept in `path` (created blank, sparse, if missing). Every
    /// durable write goes to the shared mapping of the file at once, so a
    /// killed process leaves exactly the writes the controller saw
    /// acknowledged: the same state a power cut leaves in real NV memory.
    pub fn open_file(path: &std::path::Path, size: usize) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            file.set_len(size as u64)?;
        } else if len != size as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} holds {len} bytes, the tier needs {size}: not this card's state file \
                     (an older geometry? remove the state directory to start blank)",
                    path.display()
                ),
            ));
        }
        // SAFETY: the file is this process's private state file; nothing else
        // is expected to modify it while mapped, and all access goes through
        // this struct.
        let map = unsafe { memmap2::MmapMut::map_mut(&file)? };
        Ok(Self {
            bytes: TierBytes::File(map),
            out_of_range: 0,
        })
    }

    /// Push the file-backed copy to disk (for an orderly shutdown).
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.bytes {
            TierBytes::File(m) => m.flush(),
            TierBytes::Mem { .. } => Ok(()),
        }
    }

    /// XOR `mask` into byte `index` (fault injection), in the file too.
    pub fn corrupt(&mut self, index: usize, mask: u8) -> bool {
        match self.bytes.for_write(index + 1).get_mut(index) {
            Some(b) => {
                *b ^= mask;
                true
            }
            None => false,
        }
    }
}

impl WordStore for NvStore {
    fn read_word(&self, addr: u64) -> u64 {
        let a = addr as usize;
        match self.bytes.get(a..a + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().unwrap_or([0xFF; 8])),
            None => u64::MAX,
        }
    }
    fn write_word(&mut self, addr: u64, value: u64, strobe: u8) {
        let a = addr as usize;
        match self.bytes.for_write(a + 8).get_mut(a..a + 8) {
            Some(b) => {
                for (i, byte) in b.iter_mut().enumerate() {
                    if strobe & (1 << i) != 0 {
                        *byte = (value >> (8 * i)) as u8;
                    }
                }
            }
            None => self.out_of_range += 1,
        }
    }
}

/// A command accepted by the port and not yet answered.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub accepted: u64,
    pub due: u64,
    pub write: bool,
    pub addr: u64,
    pub data: u64,
    pub strobe: u8,
}

/// Port timing.
#[derive(Clone, Copy, Debug)]
pub struct PortTiming {
    /// Cycles from a read's acceptance to its data.
    pub latency: u64,
    /// Cycles from a write's acceptance to its acknowledgement. On an NV
    /// port that is when the write is durable; on the host port (PCIe
    /// posted writes) it is short.
    pub write_latency: u64,
    /// Probability (0..=1) that the port refuses a command in a cycle.
    pub stall: f64,
}

impl PortTiming {
    /// Reads and writes both answered after `latency` cycles, no stalls.
    pub const fn fixed(latency: u64) -> Self {
        Self {
            latency,
            write_latency: latency,
            stall: 0.0,
        }
    }
    /// Reads after `read` cycles, write acknowledgements after `write`.
    pub const fn split(read: u64, write: u64) -> Self {
        Self {
            latency: read,
            write_latency: write,
            stall: 0.0,
        }
    }
}

/// A write seen by a port, for timing analysis (`PortModel::trace`).
#[derive(Clone, Copy, Debug)]
pub struct WriteEvent {
    pub addr: u64,
    pub accepted: u64,
    pub acked: u64,
}

/// A pipelined memory port in front of a store.
pub struct PortModel {
    pub timing: PortTiming,
    pub pending: VecDeque<Pending>,
    rng: ChaCha8Rng,
    ready_now: bool,
    pub reads: u64,
    pub writes: u64,
    /// When `Some`, every acknowledged write is recorded.
    pub trace: Option<Vec<WriteEvent>>,
}

/// What the port presents this cycle.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortDrive {
    pub cmd_ready: bool,
    pub rsp_valid: bool,
    pub rsp_write: bool,
    pub rsp_data: u64,
}

impl PortModel {
    pub fn new(timing: PortTiming, seed: u64) -> Self {
        Self {
            timing,
            pending: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            ready_now: true,
            reads: 0,
            writes: 0,
            trace: None,
        }
    }

    /// Decide this cycle's ready and response (before the model is clocked).
    /// A write becomes durable (reaches the store) when it is acknowledged.
    pub fn drive<S: WordStore + ?Sized>(&mut self, cycle: u64, store: &mut S) -> PortDrive {
        self.ready_now = self.timing.stall <= 0.0 || !self.rng.gen_bool(self.timing.stall.min(1.0));
        let mut d = PortDrive {
            cmd_ready: self.ready_now,
            ..Default::default()
        };
        if let Some(p) = self.pending.front() {
            if p.due <= cycle {
                let p = *p;
                self.pending.pop_front();
                d.rsp_valid = true;
                d.rsp_write = p.write;
                if p.write {
                    store.write_word(p.addr, p.data, p.strobe);
                    if let Some(t) = self.trace.as_mut() {
                        t.push(WriteEvent {
                            addr: p.addr,
                            accepted: p.accepted,
                            acked: cycle,
                        });
                    }
                } else {
                    d.rsp_data = store.read_word(p.addr);
                }
            }
        }
        d
    }

    /// Record the command the model presented this cycle (after clocking).
    pub fn observe(
        &mut self,
        cycle: u64,
        valid: bool,
        write: bool,
        addr: u64,
        data: u64,
        strobe: u8,
    ) {
        if valid && self.ready_now {
            // One response per cycle at most: keep responses strictly after
            // the previous one so the in-order pipeline never bunches.
            let lat = if write {
                self.timing.write_latency
            } else {
                self.timing.latency
            };
            let due = (cycle + lat).max(self.pending.back().map_or(0, |p| p.due + 1));
            self.pending.push_back(Pending {
                accepted: cycle,
                due,
                write,
                addr,
                data,
                strobe,
            });
            if write {
                self.writes += 1;
            } else {
                self.reads += 1;
            }
        }
    }

    /// Drop everything in flight (a reset or a power cut), returning the
    /// writes that were accepted but not yet durable.
    pub fn abort(&mut self) -> Vec<Pending> {
        self.pending.drain(..).filter(|p| p.write).collect()
    }
}
