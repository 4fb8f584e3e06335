//! In-memory overlap elimination: the newest write wins.
//!
//! [`DiffMemory`] keeps a set of non-overlapping [`DiffIo`]s keyed by address. Adding an IO
//! removes every older IO it overlaps and keeps only the parts it does not cover (a left
//! part, a right part, or both when it punches a hole). The result is what walb-tools calls
//! "logical compression": overwritten data is dropped before it is ever compressed.

use std::collections::BTreeMap;

use super::io::DiffIo;

/// A non-overlapping, address-ordered set of diff IOs.
#[derive(Debug, Default, Clone)]
pub struct DiffMemory {
    map: BTreeMap<u64, DiffIo>,
    blocks: u64,
    data_bytes: u64,
}

impl DiffMemory {
    /// An empty set.
    pub fn new() -> DiffMemory {
        DiffMemory::default()
    }

    /// Number of IOs held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Logical blocks covered.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Bytes of normal data held (uncompressed).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    fn account(&mut self, io: &DiffIo, add: bool) {
        let d = if io.is_normal() {
            u64::from(io.blocks) * 512
        } else {
            0
        };
        if add {
            self.blocks += u64::from(io.blocks);
            self.data_bytes += d;
        } else {
            self.blocks -= u64::from(io.blocks);
            self.data_bytes -= d;
        }
    }

    fn insert_raw(&mut self, io: DiffIo) {
        self.account(&io, true);
        self.map.insert(io.addr, io);
    }

    /// Adds `io`, newer than everything already held.
    pub fn add(&mut self, io: DiffIo) {
        if io.blocks == 0 {
            return;
        }
        let (start, end) = (io.addr, io.end());
        // Overlapped entries are contiguous: walk back from the last one starting before `end`.
        let mut hit = Vec::new();
        for (&a, e) in self.map.range(..end).rev() {
            if e.end() <= start {
                break;
            }
            hit.push(a);
        }
        for a in hit {
            let Some(old) = self.map.remove(&a) else {
                continue;
            };
            self.account(&old, false);
            if old.addr < start {
                self.insert_raw(old.slice(0, (start - old.addr) as u32));
            }
            if old.end() > end {
                let off = (end - old.addr) as u32;
                self.insert_raw(old.slice(off, old.blocks - off));
            }
        }
        self.insert_raw(io);
    }

    /// The IOs in address order.
    pub fn iter(&self) -> impl Iterator<Item = &DiffIo> {
        self.map.values()
    }

    /// Takes the IOs in address order, leaving the set empty.
    pub fn drain(&mut self) -> impl Iterator<Item = DiffIo> {
        self.blocks = 0;
        self.data_bytes = 0;
        std::mem::take(&mut self.map).into_values()
    }

    /// Takes every IO that ends at or before `addr` (in address order).
    pub fn drain_before(&mut self, addr: u64) -> Vec<DiffIo> {
        let mut out = Vec::new();
        while let Some(e) = self.map.first_entry() {
            if e.get().end() > addr {
                break;
            }
            let io = e.remove();
            self.account(&io, false);
            out.push(io);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::io::IoData;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn normal(addr: u64, blocks: u32, tag: u8) -> DiffIo {
        DiffIo::normal(addr, Bytes::from(vec![tag; blocks as usize * 512]))
    }

    /// Block map model: block -> tag (0 = zero/discard marker 255).
    fn model(ios: &[(u64, u32, u8)]) -> std::collections::BTreeMap<u64, u8> {
        let mut m = std::collections::BTreeMap::new();
        for &(a, n, t) in ios {
            for b in a..a + u64::from(n) {
                m.insert(b, t);
            }
        }
        m
    }

    fn flatten(mem: &DiffMemory) -> std::collections::BTreeMap<u64, u8> {
        let mut m = std::collections::BTreeMap::new();
        let mut prev_end = 0;
        for io in mem.iter() {
            assert!(io.addr >= prev_end, "overlap or disorder");
            prev_end = io.end();
            for i in 0..u64::from(io.blocks) {
                let t = match &io.data {
                    IoData::Normal(b) => b[i as usize * 512],
                    IoData::AllZero => 254,
                    IoData::Discard => 253,
                };
                m.insert(io.addr + i, t);
            }
        }
        m
    }

    #[test]
    fn punch_hole_and_cover() {
        let mut m = DiffMemory::new();
        m.add(normal(0, 10, 1));
        m.add(normal(3, 2, 2));
        assert_eq!(
            m.iter().map(|i| (i.addr, i.blocks)).collect::<Vec<_>>(),
            vec![(0, 3), (3, 2), (5, 5)]
        );
        m.add(DiffIo::discard(0, 20));
        assert_eq!(m.len(), 1);
        assert_eq!(m.blocks(), 20);
        assert_eq!(m.data_bytes(), 0);
    }

    proptest! {
        #[test]
        fn newest_wins_like_a_block_map(ios in proptest::collection::vec((0u64..200, 1u32..40, 1u8..250), 1..60)) {
            let mut m = DiffMemory::new();
            for &(a, n, t) in &ios {
                m.add(normal(a, n, t));
            }
            prop_assert_eq!(flatten(&m), model(&ios));
            prop_assert_eq!(m.blocks(), model(&ios).len() as u64);
        }
    }
}
