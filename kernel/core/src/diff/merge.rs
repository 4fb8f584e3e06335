//! N-way streaming merge of address-sorted diffs (oldest first, newest wins).
//!
//! Every input is a stream of address-ordered, non-overlapping [`DiffIo`]s (a sorted or an
//! indexed wdiff reader, or another merge). The merger holds one current IO per input and
//! sweeps the address space once: at each address the newest input covering it wins, and a
//! newer input that starts inside an older IO cuts it. Memory is one IO per input (plus
//! whatever each reader buffers), whatever the total size of the inputs.
//!
//! The merger works on any [`MergeItem`]: decompressed [`DiffIo`]s, or the records of the
//! inputs as stored ([`SourceIo`](super::source::SourceIo)), so that a record that survives
//! whole can be written without being decompressed and compressed again.

use super::io::DiffIo;
use crate::error::Result;

/// What the merger needs of an IO: its range, and a cut of it.
pub trait MergeItem: Sized {
    /// Start address in logical blocks.
    fn addr(&self) -> u64;
    /// Length in logical blocks (> 0).
    fn blocks(&self) -> u32;
    /// True when the IO carries data (split at the maximum IO size when written).
    fn carries_data(&self) -> bool;
    /// The sub-range `[addr + off, addr + off + len)` (`off + len <= blocks`, `len > 0`).
    fn slice(&self, off: u32, len: u32) -> Self;

    /// One past the last logical block.
    fn end(&self) -> u64 {
        self.addr() + u64::from(self.blocks())
    }
}

impl MergeItem for DiffIo {
    fn addr(&self) -> u64 {
        self.addr
    }
    fn blocks(&self) -> u32 {
        self.blocks
    }
    fn carries_data(&self) -> bool {
        self.is_normal()
    }
    fn slice(&self, off: u32, len: u32) -> Self {
        DiffIo::slice(self, off, len)
    }
}

/// A stream of address-ordered, non-overlapping merge items.
pub type MergeStream<'a, T> = Box<dyn Iterator<Item = Result<T>> + Send + 'a>;

/// A stream of address-ordered, non-overlapping diff IOs.
pub type DiffStream<'a> = MergeStream<'a, DiffIo>;

struct Input<'a, T> {
    stream: MergeStream<'a, T>,
    head: Option<T>,
    last_end: u64,
    index: usize,
}

impl<T: MergeItem> Input<'_, T> {
    /// Advances until the head ends after `pos` (or the stream ends).
    fn skip_to(&mut self, pos: u64) -> Result<()> {
        loop {
            match &self.head {
                Some(h) if h.end() > pos => return Ok(()),
                _ => {}
            }
            match self.stream.next().transpose()? {
                Some(io) => {
                    if io.addr() < self.last_end {
                        return Err(crate::Error::corrupt(
                            "diff stream",
                            crate::Location::None,
                            format!(
                                "input {} is not address-ordered: IO at {} after an IO ending at {}",
                                self.index,
                                io.addr(),
                                self.last_end
                            ),
                        ));
                    }
                    self.last_end = io.end();
                    self.head = Some(io);
                }
                None => {
                    self.head = None;
                    return Ok(());
                }
            }
        }
    }
}

/// Merges N diff streams given oldest first into one address-ordered stream.
pub struct DiffMerger<'a, T = DiffIo> {
    inputs: Vec<Input<'a, T>>,
    pos: u64,
    started: bool,
}

impl<'a, T: MergeItem> DiffMerger<'a, T> {
    /// Merges `streams`, oldest first.
    pub fn new(streams: Vec<MergeStream<'a, T>>) -> DiffMerger<'a, T> {
        let inputs = streams
            .into_iter()
            .enumerate()
            .map(|(index, stream)| Input {
                stream,
                head: None,
                last_end: 0,
                index,
            })
            .collect();
        DiffMerger {
            inputs,
            pos: 0,
            started: false,
        }
    }

    /// The next merged IO.
    pub fn next_io(&mut self) -> Result<Option<T>> {
        if !self.started {
            self.started = true;
            for i in &mut self.inputs {
                i.skip_to(0)?;
            }
        }
        let pos = self.pos;
        // Heads are kept so that each ends after `pos`.
        let mut lo = u64::MAX;
        for i in &self.inputs {
            if let Some(h) = &i.head {
                lo = lo.min(h.addr().max(pos));
            }
        }
        if lo == u64::MAX {
            return Ok(None);
        }
        // The newest input covering `lo` wins.
        let mut winner = None;
        for (k, i) in self.inputs.iter().enumerate().rev() {
            if let Some(h) = &i.head {
                if h.addr() <= lo {
                    winner = Some(k);
                    break;
                }
            }
        }
        let Some(w) = winner else { return Ok(None) };
        let Some(wh) = self.inputs[w].head.as_ref() else {
            return Ok(None);
        };
        let mut hi = wh.end();
        for i in &self.inputs[w + 1..] {
            if let Some(h) = &i.head {
                if h.addr() > lo && h.addr() < hi {
                    hi = h.addr();
                }
            }
        }
        let out = wh.slice((lo - wh.addr()) as u32, (hi - lo) as u32);
        self.pos = hi;
        for i in &mut self.inputs {
            i.skip_to(hi)?;
        }
        Ok(Some(out))
    }
}

impl<T: MergeItem> Iterator for DiffMerger<'_, T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_io().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::io::IoData;
    use crate::diff::mem::DiffMemory;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn stream(ios: Vec<DiffIo>) -> DiffStream<'static> {
        Box::new(ios.into_iter().map(Ok))
    }

    fn to_mem(ios: &[(u64, u32, u8)]) -> Vec<DiffIo> {
        let mut m = DiffMemory::new();
        for &(a, n, t) in ios {
            let io = match t % 7 {
                0 => DiffIo::all_zero(a, n),
                1 => DiffIo::discard(a, n),
                _ => DiffIo::normal(a, Bytes::from(vec![t; n as usize * 512])),
            };
            m.add(io);
        }
        m.drain().collect()
    }

    fn blocks(ios: &[DiffIo]) -> Vec<(u64, i32)> {
        let mut v = Vec::new();
        for io in ios {
            for i in 0..u64::from(io.blocks) {
                let t = match &io.data {
                    IoData::Normal(b) => i32::from(b[i as usize * 512]),
                    IoData::AllZero => -1,
                    IoData::Discard => -2,
                };
                v.push((io.addr + i, t));
            }
        }
        v
    }

    proptest! {
        #[test]
        fn merge_equals_sequential_overwrite(diffs in proptest::collection::vec(
            proptest::collection::vec((0u64..300, 1u32..50, 1u8..250), 0..25), 1..8)) {
            let streams = diffs.iter().map(|d| stream(to_mem(d))).collect();
            let merged: Vec<DiffIo> = DiffMerger::new(streams).collect::<Result<_>>().unwrap();
            let mut prev = 0;
            for io in &merged {
                prop_assert!(io.addr >= prev);
                prev = io.end();
            }
            let all: Vec<_> = diffs.concat();
            prop_assert_eq!(blocks(&merged), blocks(&to_mem(&all)));
        }
    }

    #[test]
    fn rejects_unordered_input() {
        let bad = stream(vec![DiffIo::discard(10, 5), DiffIo::discard(0, 5)]);
        let r: Result<Vec<_>> = DiffMerger::new(vec![bad]).collect();
        assert!(r.unwrap_err().is_corrupt());
    }
}
