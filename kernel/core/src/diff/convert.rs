//! wlog → wdiff conversion.
//!
//! Each log record becomes a diff IO: padding is dropped, a discard becomes a DISCARD
//! record, a write whose data is all zero becomes an ALLZERO record without data, any other
//! write a NORMAL record. Later records win over earlier ones where they overlap.
//!
//! - SORTED output from a stream ([`convert_wlog`], [`convert_packs`]): the IOs are split at
//!   the maximum IO size and compressed while the log is read (in parallel, order kept),
//!   collected in a [`StoredMemory`] (overlaps eliminated as they arrive), then written in
//!   address order. Memory holds the surviving compressed data of the whole log
//!   (walb-tools holds it uncompressed).
//! - SORTED output from a file ([`convert_wlog_file`](super::twopass::convert_wlog_file)): two passes ([`twopass`](super::twopass)), an index
//!   of the newest content of every block first, then only the surviving data, read in
//!   address order while it is compressed and written. No data is held in memory and
//!   nothing overwritten is compressed.
//! - INDEXED output from a stream: the IOs are appended in arrival order as they come; the
//!   writer keeps only the index in memory. From a file: the two passes of the SORTED case,
//!   the surviving IOs appended in address order.

use std::io::{Read, Write};

use super::io::DiffIo;
use super::merge::{DiffMerger, DiffStream, MergeItem, MergeStream};
use super::pipeline::{compress_ordered, default_threads, Encode};
use super::source::SourceIo;
use super::stored_mem::StoredMemory;
use crate::block::is_all_zero;
use crate::compress::{CompressOpt, Compressor};
use crate::error::Result;
use crate::logpack::{LogPack, RecordKind};
use crate::wdiff::indexed::IndexedDiffWriter;
use crate::wdiff::sorted::SortedDiffWriter;
use crate::wdiff::{WdiffHeader, WdiffKind, WriteStats};
use crate::wlog::WlogReader;

/// Default maximum IO size of produced diffs: 1 MiB.
pub const DEFAULT_MAX_IO_BLOCKS: u32 = 2048;

/// Options of a conversion or a merge.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOpt {
    /// SORTED or INDEXED output (merges always write SORTED).
    pub kind: WdiffKind,
    /// Codec and level of NORMAL records.
    pub compress: CompressOpt,
    /// Maximum IO size in logical blocks (larger IOs are split).
    pub max_io_blocks: u32,
    /// Compression threads (0: compress on the calling thread).
    pub threads: usize,
}

impl Default for ConvertOpt {
    fn default() -> Self {
        ConvertOpt {
            kind: WdiffKind::Sorted,
            compress: CompressOpt::default(),
            max_io_blocks: DEFAULT_MAX_IO_BLOCKS,
            threads: default_threads(),
        }
    }
}

/// Writes an address-ordered stream of IOs as a SORTED wdiff, splitting data IOs at the
/// maximum IO size and compressing them in parallel (or, for records kept as stored,
/// copying or re-encoding them: see [`source`](super::source)).
pub fn write_sorted<I, T, W>(
    ios: I,
    uuid: [u8; 16],
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)>
where
    I: IntoIterator<Item = Result<T>>,
    T: MergeItem + Encode + 'static,
    W: Write + Send,
{
    let header = WdiffHeader::new(WdiffKind::Sorted, uuid);
    let mut w = SortedDiffWriter::new(out, &header, opt.compress)?;
    let pieces = split_data_ios(ios, opt.max_io_blocks);
    compress_ordered(pieces, opt.compress, opt.threads, |s| w.push_stored(s))?;
    w.finish_with_stats()
}

/// Writes a stream of IOs as an INDEXED wdiff: data IOs compressed in parallel and
/// appended in the order given, a later IO overriding earlier ones where they overlap
/// (any order is valid: the streaming conversion gives arrival order, the two-pass one
/// address order), index records capped at the maximum IO size.
pub fn write_indexed<I, W>(
    ios: I,
    uuid: [u8; 16],
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)>
where
    I: IntoIterator<Item = Result<DiffIo>>,
    W: Write + Send,
{
    let header = WdiffHeader::new(WdiffKind::Indexed, uuid);
    let mut w = IndexedDiffWriter::new(out, &header, opt.compress)?;
    w.set_max_io_blocks(opt.max_io_blocks);
    compress_ordered(ios, opt.compress, opt.threads, |s| w.push_stored(s))?;
    w.finish_with_stats()
}

/// Splits data IOs at `max` blocks; a discard or all-zero record of any length stays one.
fn split_data_ios<I, T>(ios: I, max: u32) -> impl Iterator<Item = Result<T>>
where
    I: IntoIterator<Item = Result<T>>,
    T: MergeItem + 'static,
{
    let max = max.max(1);
    ios.into_iter()
        .flat_map(move |r| -> Box<dyn Iterator<Item = Result<T>>> {
            match r {
                Ok(io) if io.carries_data() && io.blocks() > max => {
                    let n = io.blocks().div_ceil(max);
                    Box::new((0..n).map(move |i| {
                        let off = i * max;
                        Ok(io.slice(off, max.min(io.blocks() - off)))
                    }))
                }
                other => Box::new(std::iter::once(other)),
            }
        })
}

/// Merges address-ordered diff streams, given oldest first, into a SORTED wdiff.
pub fn merge_to_sorted<W: Write + Send>(
    streams: Vec<DiffStream<'_>>,
    uuid: [u8; 16],
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)> {
    write_sorted(DiffMerger::new(streams), uuid, out, opt)
}

/// Merges address-ordered inputs whose records are kept as stored (see
/// [`source_stream`](super::source::source_stream)), given oldest first, into a SORTED
/// wdiff: the same content as [`merge_to_sorted`] of the decompressed inputs, with every
/// record that survives whole copied as stored when its input was written with
/// `opt.compress`.
pub fn merge_stored_to_sorted<W: Write + Send>(
    inputs: Vec<MergeStream<'_, SourceIo>>,
    uuid: [u8; 16],
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)> {
    write_sorted(DiffMerger::new(inputs), uuid, out, opt)
}

/// The diff IOs of one log pack, in record order (padding dropped).
pub fn pack_ios(pack: &LogPack) -> impl Iterator<Item = DiffIo> + '_ {
    pack.header
        .records
        .iter()
        .enumerate()
        .filter_map(move |(i, r)| match r.kind() {
            RecordKind::Padding => None,
            RecordKind::Discard => Some(DiffIo::discard(r.offset, r.io_size)),
            RecordKind::Normal => {
                let data = pack.record_data(i)?;
                Some(if is_all_zero(&data) {
                    DiffIo::all_zero(r.offset, r.io_size)
                } else {
                    DiffIo::normal(r.offset, data)
                })
            }
        })
}

/// Converts a stream of log packs into a wdiff written to `out`.
pub fn convert_packs<I, W>(
    packs: I,
    uuid: [u8; 16],
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)>
where
    I: IntoIterator<Item = Result<LogPack>>,
    W: Write + Send,
{
    match opt.kind {
        WdiffKind::Sorted => {
            // Compress while reading (in parallel, in arrival order), then eliminate
            // overlaps on the stored IOs and write them in address order.
            let mut mem = StoredMemory::new();
            let ios = packs.into_iter().flat_map(|p| -> Vec<Result<DiffIo>> {
                match p {
                    Ok(p) => pack_ios(&p).map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                }
            });
            let pieces = split_data_ios(ios, opt.max_io_blocks);
            compress_ordered(pieces, opt.compress, opt.threads, |s| {
                mem.add(s);
                Ok(())
            })?;
            let header = WdiffHeader::new(WdiffKind::Sorted, uuid);
            let mut w = SortedDiffWriter::new(out, &header, opt.compress)?;
            let mut comp = Compressor::new(opt.compress)?;
            for s in mem.drain(&mut comp) {
                w.push_stored(s?)?;
            }
            w.finish_with_stats()
        }
        WdiffKind::Indexed => {
            // IOs in arrival order; each becomes one image, indexed in aligned pieces.
            let ios = packs.into_iter().flat_map(|p| -> Vec<Result<DiffIo>> {
                match p {
                    Ok(p) => pack_ios(&p).map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                }
            });
            write_indexed(ios, uuid, out, opt)
        }
    }
}

/// Converts a wlog file into a wdiff written to `out` (uuid taken from the wlog header).
pub fn convert_wlog<R: Read, W: Write + Send>(
    wlog: R,
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)> {
    let rd = WlogReader::new(wlog)?;
    let uuid = rd.header().uuid;
    convert_packs(rd, uuid, out, opt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::apply::{DiscardPolicy, Redo};
    use crate::gen::{DataKind, WlogGen};
    use crate::wdiff::WdiffReader;
    use std::io::Cursor;

    #[test]
    fn conversion_preserves_the_image() {
        let mut g = WlogGen::new(4096, 2 << 20);
        g.kind = DataKind::Compressible;
        g.discard_pct = 10;
        g.zero_pct = 10;
        let mut wlog = Vec::new();
        g.write(&mut wlog).unwrap();
        let mut redo = Redo::new(vec![0x55u8; 4096 * 512], DiscardPolicy::Zero).unwrap();
        for p in WlogReader::new(&wlog[..]).unwrap() {
            redo.apply_pack(&p.unwrap()).unwrap();
        }
        let (expect, _) = redo.finish().unwrap();
        for kind in [WdiffKind::Sorted, WdiffKind::Indexed] {
            for max_io in [8, 2048] {
                let opt = ConvertOpt {
                    kind,
                    max_io_blocks: max_io,
                    ..Default::default()
                };
                let (out, stats) = convert_wlog(&wlog[..], Vec::new(), &opt).unwrap();
                assert!(stats.records > 0);
                let mut redo = Redo::new(vec![0x55u8; 4096 * 512], DiscardPolicy::Zero).unwrap();
                let rd = WdiffReader::new(Cursor::new(out)).unwrap();
                let mut prev_end = 0;
                for io in rd {
                    let io = io.unwrap();
                    assert!(
                        io.addr >= prev_end,
                        "{kind:?}: {io:?} overlaps or is out of order"
                    );
                    // Only data IOs are split; the indexed reader may join adjacent pieces of
                    // one image.
                    assert!(
                        kind == WdiffKind::Indexed || !io.is_normal() || io.blocks <= max_io,
                        "{io:?} exceeds {max_io}"
                    );
                    prev_end = io.end();
                    redo.apply_io(&io).unwrap();
                }
                let (got, _) = redo.finish().unwrap();
                assert!(got == expect, "{kind:?} max_io {max_io}");
            }
        }
    }

    #[test]
    fn a_huge_discard_stays_a_few_records() {
        use crate::block::Pbs;
        use crate::logpack::LogPackBuilder;
        use crate::wlog::{WlogHeader, WlogWriter, NO_END_LSID};
        let header = WlogHeader {
            salt: 1,
            pbs: Pbs::B512,
            uuid: [0; 16],
            begin_lsid: 0,
            end_lsid: NO_END_LSID,
        };
        let mut w = WlogWriter::new(Vec::new(), header).unwrap();
        let mut b = LogPackBuilder::new(Pbs::B512, 1, 0, None);
        b.add_discard(12345, u32::MAX).unwrap();
        b.add_write(7, &[3u8; 512]).unwrap();
        w.write_pack(&b.finish()).unwrap();
        let wlog = w.finish().unwrap();
        for kind in [WdiffKind::Sorted, WdiffKind::Indexed] {
            let opt = ConvertOpt {
                kind,
                max_io_blocks: 16,
                threads: 0,
                ..Default::default()
            };
            let (out, stats) = convert_wlog(&wlog[..], Vec::new(), &opt).unwrap();
            assert!(stats.records <= 80, "{kind:?}: {} records", stats.records);
            assert!(out.len() < 1 << 20, "{kind:?}: {} bytes", out.len());
            assert_eq!(stats.discard_blocks, u64::from(u32::MAX), "{kind:?}");
        }
    }
}
