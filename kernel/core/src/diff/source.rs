//! Merge inputs kept as stored: records copied without recompressing when nothing in them
//! changes.
//!
//! A merge of wdiffs that decompresses every input record and compresses every output
//! record spends nearly all its time in the codecs, although most output records are one
//! input record unchanged (inputs overlap little). A [`SourceIo`] is a merge input's IO as
//! its file stores it: the merger ([`DiffMerger`](super::merge::DiffMerger)) cuts it by
//! address only, and the encoding, on the pipeline's workers
//! ([`compress_ordered`](super::pipeline::compress_ordered)), then
//!
//! - copies a normal record's stored bytes when the record survives whole (not cut by a
//!   newer input nor by the maximum IO size) and its input declares it was written with the
//!   output's codec and level ([`source_stream`]'s `written_with`: a record does not say
//!   its level, so an undeclared input is always re-encoded);
//! - writes an all-zero or discard record, or any cut of one, without touching data;
//! - otherwise decompresses the record, cuts it and compresses it with the output's
//!   option, exactly as a merge of decompressed IOs does.
//!
//! The copied bytes are those the reader verified against the record's checksum; they are
//! not decompressed, so a record whose stored stream is broken although its checksum
//! holds is copied as it is (the reader of the output finds it, as it would in the input).
//! Since compression with one codec and level is deterministic, a record copied from an
//! input this crate's converters or merges wrote with the output's option equals the
//! recompressed one byte for byte; in every case the content (the decompressed blocks) is
//! the same.
//!
//! Sorted inputs are read as stored; indexed ones (whose records are cuts of images) as
//! decompressed IOs ([`SourceIo::Decoded`]).

use std::io::{Read, Seek};

use bytes::Bytes;

use super::io::DiffIo;
use super::merge::{MergeItem, MergeStream};
use super::pipeline::{Coder, Encode};
use crate::block::LBS_USIZE;
use crate::compress::{Codec, CompressOpt};
use crate::error::Result;
use crate::wdiff::{RecordKind, StoredIo, WdiffReader};

/// Blocks `[off, off + len)` of a record as stored in a merge input.
#[derive(Debug, Clone)]
pub struct StoredPiece {
    io: StoredIo,
    off: u32,
    len: u32,
    written_with: Option<CompressOpt>,
}

impl StoredPiece {
    /// The whole of `io`, from an input whose records were compressed with `written_with`
    /// (when known).
    pub fn new(io: StoredIo, written_with: Option<CompressOpt>) -> StoredPiece {
        StoredPiece {
            off: 0,
            len: io.blocks,
            io,
            written_with,
        }
    }

    /// True when the piece is its whole record.
    pub fn is_whole(&self) -> bool {
        self.off == 0 && self.len == self.io.blocks
    }

    /// True when encoding with `opt` copies the stored bytes: a whole normal record of an
    /// input written with `opt`.
    pub fn copies_with(&self, opt: CompressOpt) -> bool {
        self.io.kind == RecordKind::Normal && self.is_whole() && self.written_with == Some(opt)
    }

    fn addr(&self) -> u64 {
        self.io.addr + u64::from(self.off)
    }

    /// The piece's blocks, decompressed.
    fn decode(self, coder: &mut Coder) -> Result<DiffIo> {
        let addr = self.addr();
        match self.io.kind {
            RecordKind::AllZero => Ok(DiffIo::all_zero(addr, self.len)),
            RecordKind::Discard => Ok(DiffIo::discard(addr, self.len)),
            RecordKind::Normal => {
                let (off, len) = (self.off, self.len);
                Ok(self.io.decompress(&mut coder.dec)?.slice(off, len))
            }
        }
    }
}

/// An IO of a merge input: decompressed, or (part of) a record as stored.
#[derive(Debug, Clone)]
pub enum SourceIo {
    /// Decompressed data (an indexed input's IO, or any decoded stream's).
    Decoded(DiffIo),
    /// A record as stored, or a cut of it.
    Stored(StoredPiece),
}

impl MergeItem for SourceIo {
    fn addr(&self) -> u64 {
        match self {
            SourceIo::Decoded(io) => io.addr,
            SourceIo::Stored(p) => p.addr(),
        }
    }

    fn blocks(&self) -> u32 {
        match self {
            SourceIo::Decoded(io) => io.blocks,
            SourceIo::Stored(p) => p.len,
        }
    }

    fn carries_data(&self) -> bool {
        match self {
            SourceIo::Decoded(io) => io.is_normal(),
            SourceIo::Stored(p) => p.io.kind == RecordKind::Normal,
        }
    }

    fn slice(&self, off: u32, len: u32) -> SourceIo {
        match self {
            SourceIo::Decoded(io) => SourceIo::Decoded(io.slice(off, len)),
            SourceIo::Stored(p) => {
                debug_assert!(len > 0 && off + len <= p.len);
                SourceIo::Stored(StoredPiece {
                    io: p.io.clone(),
                    off: p.off + off,
                    len,
                    written_with: p.written_with,
                })
            }
        }
    }
}

impl Encode for SourceIo {
    fn weight(&self) -> usize {
        match self {
            SourceIo::Decoded(io) => io.weight(),
            // A copy costs little; a re-encoding about as much as compressing its blocks.
            SourceIo::Stored(p) if p.io.kind != RecordKind::Normal => 0,
            SourceIo::Stored(p) => p.len as usize * LBS_USIZE,
        }
    }

    fn encode(self, coder: &mut Coder) -> Result<StoredIo> {
        match self {
            SourceIo::Decoded(io) => coder.compress(io),
            SourceIo::Stored(p) if p.copies_with(coder.comp.opt()) => Ok(p.io),
            SourceIo::Stored(p) if p.io.kind != RecordKind::Normal => Ok(StoredIo {
                addr: p.addr(),
                blocks: p.len,
                kind: p.io.kind,
                codec: Codec::None,
                data: Bytes::new(),
            }),
            SourceIo::Stored(p) => {
                let io = p.decode(coder)?;
                coder.compress(io)
            }
        }
    }
}

/// The IOs of a wdiff as a merge input: a sorted file's records as stored, an indexed
/// file's IOs decompressed. `written_with` is the option its records were compressed
/// with, when the caller knows it (a wdiff does not record levels): only then are its
/// records copied as stored into an output of that option.
pub fn source_stream<'a, R>(
    reader: WdiffReader<R>,
    written_with: Option<CompressOpt>,
) -> MergeStream<'a, SourceIo>
where
    R: Read + Seek + Send + 'a,
{
    match reader {
        WdiffReader::Sorted(mut s) => {
            let mut failed = false;
            Box::new(std::iter::from_fn(move || {
                if failed {
                    return None;
                }
                let next = s.next_stored();
                failed = next.is_err();
                next.map(|st| st.map(|io| SourceIo::Stored(StoredPiece::new(io, written_with))))
                    .transpose()
            }))
        }
        WdiffReader::Indexed(i) => Box::new(i.map(|r| r.map(SourceIo::Decoded))),
    }
}

#[cfg(test)]
mod tests;
