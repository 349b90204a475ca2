//! Allocation of DMA buffers inside the window (first fit, coalescing).

use crate::error::{Error, Result};

/// A buffer in the DMA window: `offset` from the window start, `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBuf {
    pub offset: u64,
    pub len: u64,
}

/// First-fit allocator over `[0, size)`; every buffer is `align`-aligned.
#[derive(Debug)]
pub struct DmaAllocator {
    free: Vec<(u64, u64)>,
    size: u64,
}

impl DmaAllocator {
    pub fn new(size: u64) -> Self {
        Self {
            free: vec![(0, size)],
            size,
        }
    }

    /// Bytes free in total.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|&(_, l)| l).sum()
    }

    /// Allocate `len` bytes (at least 1) aligned to `align` (a power of two).
    pub fn alloc(&mut self, len: u64, align: u64) -> Result<DmaBuf> {
        if len == 0 || !align.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "DMA allocation of {len} bytes aligned to {align}"
            )));
        }
        for i in 0..self.free.len() {
            let (start, flen) = self.free[i];
            let aligned = start.next_multiple_of(align);
            let pad = aligned - start;
            if flen >= pad + len {
                let rest = flen - pad - len;
                let mut repl = Vec::with_capacity(2);
                if pad > 0 {
                    repl.push((start, pad));
                }
                if rest > 0 {
                    repl.push((aligned + len, rest));
                }
                self.free.splice(i..=i, repl);
                return Ok(DmaBuf {
                    offset: aligned,
                    len,
                });
            }
        }
        Err(Error::DmaExhausted {
            wanted: len,
            free: self.free_bytes(),
        })
    }

    /// Return a buffer. Freeing something not allocated is a driver bug and
    /// is ignored (with a log line) rather than corrupting the free list.
    pub fn free(&mut self, buf: DmaBuf) {
        let end = buf.offset.saturating_add(buf.len);
        if end > self.size
            || self
                .free
                .iter()
                .any(|&(s, l)| buf.offset < s + l && s < end)
        {
            tracing::error!(?buf, "freeing a DMA buffer that is not allocated");
            return;
        }
        let pos = self.free.partition_point(|&(s, _)| s < buf.offset);
        self.free.insert(pos, (buf.offset, buf.len));
        // Coalesce with neighbours.
        if pos + 1 < self.free.len() && self.free[pos].0 + self.free[pos].1 == self.free[pos + 1].0
        {
            self.free[pos].1 += self.free[pos + 1].1;
            self.free.remove(pos + 1);
        }
        if pos > 0 && self.free[pos - 1].0 + self.free[pos - 1].1 == self.free[pos].0 {
            self.free[pos - 1].1 += self.free[pos].1;
            self.free.remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Random alloc/free sequences: buffers never overlap, stay inside
        /// the window, are aligned, and freeing everything restores one block.
        #[test]
        fn allocations_never_overlap(ops in proptest::collection::vec((1u64..5000, 0u32..7, any::<bool>()), 1..200)) {
            let size = 1 << 16;
            let mut a = DmaAllocator::new(size);
            let mut live: Vec<DmaBuf> = Vec::new();
            for (len, align_log, free_one) in ops {
                if free_one && !live.is_empty() {
                    let b = live.remove(len as usize % live.len());
                    a.free(b);
                } else if let Ok(b) = a.alloc(len, 1 << align_log) {
                    prop_assert_eq!(b.offset % (1 << align_log), 0);
                    prop_assert!(b.offset + b.len <= size);
                    for o in &live {
                        prop_assert!(b.offset + b.len <= o.offset || o.offset + o.len <= b.offset);
                    }
                    live.push(b);
                }
            }
            for b in live.drain(..) {
                a.free(b);
            }
            prop_assert_eq!(a.free.clone(), vec![(0, size)]);
        }
    }

    #[test]
    fn exhaustion_and_bad_free_are_errors_not_panics() {
        let mut a = DmaAllocator::new(4096);
        let b = a.alloc(4096, 8).unwrap();
        assert!(matches!(a.alloc(1, 8), Err(Error::DmaExhausted { .. })));
        assert!(a.alloc(0, 8).is_err());
        assert!(a.alloc(8, 3).is_err());
        a.free(b);
        a.free(b); // double free: ignored
        assert_eq!(a.free_bytes(), 4096);
    }
}
