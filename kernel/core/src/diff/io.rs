//! The in-memory diff IO: one address range of a diff with its uncompressed content.
//!
//! Every wdiff reader yields [`DiffIo`]s in address order, every wdiff writer consumes them,
//! and the engine (overlap elimination, merge, apply, virtual scan) works on them. Data is
//! held in [`Bytes`] so that splitting an IO (max IO size, overlap punching) never copies.

use bytes::Bytes;

use crate::block::LBS_USIZE;

/// The content of a diff IO.
#[derive(Clone, PartialEq, Eq)]
pub enum IoData {
    /// Data blocks: exactly `blocks * 512` bytes, uncompressed.
    Normal(Bytes),
    /// The range reads as zeros.
    AllZero,
    /// The range was discarded (reads as zeros in virtual scans; applied per policy).
    Discard,
}

impl std::fmt::Debug for IoData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoData::Normal(b) => write!(f, "Normal({} bytes)", b.len()),
            IoData::AllZero => f.write_str("AllZero"),
            IoData::Discard => f.write_str("Discard"),
        }
    }
}

/// One IO of a diff: `blocks` logical blocks starting at logical block `addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffIo {
    /// Start address in logical blocks.
    pub addr: u64,
    /// Length in logical blocks (> 0).
    pub blocks: u32,
    /// Content.
    pub data: IoData,
}

impl DiffIo {
    /// A normal IO. `data.len()` must be `blocks * 512`.
    pub fn normal(addr: u64, data: Bytes) -> DiffIo {
        debug_assert!(data.len() % LBS_USIZE == 0 && !data.is_empty());
        DiffIo {
            addr,
            blocks: (data.len() / LBS_USIZE) as u32,
            data: IoData::Normal(data),
        }
    }

    /// An all-zero IO.
    pub fn all_zero(addr: u64, blocks: u32) -> DiffIo {
        DiffIo {
            addr,
            blocks,
            data: IoData::AllZero,
        }
    }

    /// A discard IO.
    pub fn discard(addr: u64, blocks: u32) -> DiffIo {
        DiffIo {
            addr,
            blocks,
            data: IoData::Discard,
        }
    }

    /// One past the last logical block.
    #[inline]
    pub fn end(&self) -> u64 {
        self.addr + u64::from(self.blocks)
    }

    /// The sub-range `[addr + off, addr + off + len)` of this IO (no copy).
    ///
    /// `off + len` must not exceed `blocks`.
    pub fn slice(&self, off: u32, len: u32) -> DiffIo {
        debug_assert!(len > 0 && off + len <= self.blocks);
        let data = match &self.data {
            IoData::Normal(b) => {
                let s = off as usize * LBS_USIZE;
                IoData::Normal(b.slice(s..s + len as usize * LBS_USIZE))
            }
            IoData::AllZero => IoData::AllZero,
            IoData::Discard => IoData::Discard,
        };
        DiffIo {
            addr: self.addr + u64::from(off),
            blocks: len,
            data,
        }
    }

    /// Splits into pieces of at most `max_blocks` logical blocks each.
    pub fn split(self, max_blocks: u32) -> impl Iterator<Item = DiffIo> {
        let max = max_blocks.max(1);
        let n = self.blocks.div_ceil(max);
        (0..n).map(move |i| {
            let off = i * max;
            self.slice(off, max.min(self.blocks - off))
        })
    }

    /// True for a normal IO (one that carries data).
    pub fn is_normal(&self) -> bool {
        matches!(self.data, IoData::Normal(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_and_split() {
        let data: Vec<u8> = (0..10 * 512).map(|i| (i / 512) as u8).collect();
        let io = DiffIo::normal(100, Bytes::from(data));
        assert_eq!(io.blocks, 10);
        let s = io.slice(3, 2);
        assert_eq!(s.addr, 103);
        match &s.data {
            IoData::Normal(b) => {
                assert_eq!(b.len(), 1024);
                assert_eq!(b[0], 3);
                assert_eq!(b[512], 4);
            }
            _ => panic!("expected normal"),
        }
        let parts: Vec<_> = io.split(4).collect();
        assert_eq!(
            parts.iter().map(|p| (p.addr, p.blocks)).collect::<Vec<_>>(),
            vec![(100, 4), (104, 4), (108, 2)]
        );
        let d: Vec<_> = DiffIo::discard(0, 5).split(5).collect();
        assert_eq!(d.len(), 1);
    }
}
