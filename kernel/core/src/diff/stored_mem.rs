//! Overlap elimination over IOs that are already compressed.
//!
//! Sorted conversion must see the whole log before it writes anything. Keeping the log's
//! IOs compressed while they wait lets the compression run in parallel with reading (and
//! holds less memory); [`StoredMemory`] does the newest-wins bookkeeping on them. A stored
//! IO that a newer one overwrites only in part is kept as a sub-range of the original and
//! re-encoded when written (decompress, cut, compress again): rare in real logs, and the
//! cost falls on the IOs that need it only.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::io::{DiffIo, IoData};
use super::pipeline::compress_io;
use crate::block::LBS_USIZE;
use crate::compress::{Codec, Compressor, Decompressor};
use crate::error::Result;
use crate::wdiff::{RecordKind, StoredIo};

/// A live part of a stored IO: blocks `[off, off + len)` of it.
#[derive(Debug, Clone)]
struct Piece {
    io: Arc<StoredIo>,
    off: u32,
    len: u32,
}

impl Piece {
    fn addr(&self) -> u64 {
        self.io.addr + u64::from(self.off)
    }

    fn end(&self) -> u64 {
        self.addr() + u64::from(self.len)
    }

    fn sub(&self, off: u32, len: u32) -> Piece {
        Piece {
            io: Arc::clone(&self.io),
            off: self.off + off,
            len,
        }
    }
}

/// A non-overlapping, address-ordered set of stored IOs where the newest write wins.
#[derive(Debug, Default)]
pub struct StoredMemory {
    map: BTreeMap<u64, Piece>,
}

impl StoredMemory {
    /// An empty set.
    pub fn new() -> StoredMemory {
        StoredMemory::default()
    }

    /// Adds `io`, newer than everything already held.
    pub fn add(&mut self, io: StoredIo) {
        if io.blocks == 0 {
            return;
        }
        let new = Piece {
            off: 0,
            len: io.blocks,
            io: Arc::new(io),
        };
        let (start, end) = (new.addr(), new.end());
        let mut hit = Vec::new();
        for (&a, p) in self.map.range(..end).rev() {
            if p.end() <= start {
                break;
            }
            hit.push(a);
        }
        for a in hit {
            let Some(old) = self.map.remove(&a) else {
                continue;
            };
            if old.addr() < start {
                let keep = old.sub(0, (start - old.addr()) as u32);
                self.map.insert(keep.addr(), keep);
            }
            if old.end() > end {
                let cut = (end - old.addr()) as u32;
                let keep = old.sub(cut, old.len - cut);
                self.map.insert(keep.addr(), keep);
            }
        }
        self.map.insert(start, new);
    }

    /// Number of pieces held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Takes the stored IOs in address order, re-encoding the ones that survive only in
    /// part. `comp` compresses re-encoded data with the writer's option.
    pub fn drain(self, comp: &mut Compressor) -> impl Iterator<Item = Result<StoredIo>> + '_ {
        let mut dec = Decompressor::new();
        let mut scratch = Vec::new();
        self.map.into_values().map(move |p| {
            if p.off == 0 && p.len == p.io.blocks {
                return Ok(Arc::unwrap_or_clone(p.io));
            }
            let addr = p.addr();
            match p.io.kind {
                RecordKind::AllZero | RecordKind::Discard => Ok(StoredIo {
                    addr,
                    blocks: p.len,
                    kind: p.io.kind,
                    codec: Codec::None,
                    data: Bytes::new(),
                }),
                RecordKind::Normal => {
                    let full = match p.io.codec {
                        Codec::None => p.io.data.clone(),
                        _ => {
                            let whole = StoredIo::clone(&p.io).decompress(&mut dec)?;
                            match whole.data {
                                IoData::Normal(b) => b,
                                _ => Bytes::new(),
                            }
                        }
                    };
                    let s = p.off as usize * LBS_USIZE;
                    let data = full.slice(s..s + p.len as usize * LBS_USIZE);
                    compress_io(comp, &mut scratch, DiffIo::normal(addr, data))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::CompressOpt;
    use crate::diff::mem::DiffMemory;
    use proptest::prelude::*;

    fn io(addr: u64, blocks: u32, tag: u8) -> DiffIo {
        match tag % 5 {
            0 => DiffIo::discard(addr, blocks),
            1 => DiffIo::all_zero(addr, blocks),
            // Compressible data, so that most stored IOs are compressed.
            _ => DiffIo::normal(addr, Bytes::from(vec![tag; blocks as usize * 512])),
        }
    }

    proptest! {
        #[test]
        fn same_result_as_overlap_elimination_before_compression(
            ios in proptest::collection::vec((0u64..300, 1u32..80, 0u8..250), 1..50)
        ) {
            let mut comp = Compressor::new(CompressOpt::default()).unwrap();
            let mut scratch = Vec::new();
            let mut plain = DiffMemory::new();
            let mut stored = StoredMemory::new();
            for &(a, n, t) in &ios {
                plain.add(io(a, n, t));
                stored.add(compress_io(&mut comp, &mut scratch, io(a, n, t)).unwrap());
            }
            let want: Vec<DiffIo> = plain.drain().collect();
            let mut dec = Decompressor::new();
            let got: Vec<DiffIo> = stored
                .drain(&mut comp)
                .map(|s| s.unwrap().decompress(&mut dec).unwrap())
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
