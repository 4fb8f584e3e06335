//! Tests of the merge of stored records: copies equal recompressed records, cut records and
//! records of another codec or level are re-encoded.

use std::io::Cursor;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::compress::Decompressor;
use crate::diff::convert::{merge_stored_to_sorted, merge_to_sorted, write_sorted, ConvertOpt};
use crate::diff::mem::DiffMemory;
use crate::diff::merge::{DiffMerger, DiffStream};
use crate::wdiff::SortedDiffReader;

/// Mostly-zero blocks (a few tagged bytes per block, then zeros): they compress, and each
/// block tells where it came from.
fn data(tag: u8, addr: u64, blocks: u32) -> Bytes {
    let mut v = vec![0u8; blocks as usize * LBS_USIZE];
    for (i, b) in v.chunks_mut(LBS_USIZE).enumerate() {
        let a = addr + i as u64;
        b[..8].copy_from_slice(&a.to_le_bytes());
        b[8] = tag;
        b[9..9 + (a % 50) as usize].fill(tag ^ 0x5a);
    }
    Bytes::from(v)
}

fn io(addr: u64, blocks: u32, tag: u8) -> DiffIo {
    match tag % 6 {
        0 => DiffIo::discard(addr, blocks),
        1 => DiffIo::all_zero(addr, blocks),
        _ => DiffIo::normal(addr, data(tag, addr, blocks)),
    }
}

/// A sorted wdiff of `ios` (overlaps resolved, newest last) written with `compress`.
fn wdiff(ios: &[DiffIo], compress: CompressOpt) -> Vec<u8> {
    let mut m = DiffMemory::new();
    for io in ios {
        m.add(io.clone());
    }
    let opt = ConvertOpt {
        compress,
        threads: 0,
        ..Default::default()
    };
    write_sorted(m.drain().map(Ok), [1; 16], Vec::new(), &opt)
        .unwrap()
        .0
}

fn reader(file: &[u8]) -> WdiffReader<Cursor<Vec<u8>>> {
    WdiffReader::new(Cursor::new(file.to_vec())).unwrap()
}

/// The merge of decompressed inputs, as before this module existed.
fn decoded_merge(files: &[Vec<u8>], opt: &ConvertOpt) -> Vec<u8> {
    let streams: Vec<DiffStream<'_>> = files
        .iter()
        .map(|f| Box::new(reader(f)) as DiffStream<'_>)
        .collect();
    merge_to_sorted(streams, [2; 16], Vec::new(), opt)
        .unwrap()
        .0
}

fn stored_merge(files: &[(Vec<u8>, Option<CompressOpt>)], opt: &ConvertOpt) -> Vec<u8> {
    let inputs = files
        .iter()
        .map(|(f, w)| source_stream(reader(f), *w))
        .collect();
    merge_stored_to_sorted(inputs, [2; 16], Vec::new(), opt)
        .unwrap()
        .0
}

/// Every record of a sorted wdiff as stored.
fn records(file: &[u8]) -> Vec<StoredIo> {
    let mut r = SortedDiffReader::new(Cursor::new(file.to_vec())).unwrap();
    let mut v = Vec::new();
    while let Some(s) = r.next_stored().unwrap() {
        v.push(s);
    }
    v
}

fn decoded(file: &[u8]) -> Vec<DiffIo> {
    reader(file).collect::<Result<_>>().unwrap()
}

#[test]
fn a_whole_record_is_copied_and_equals_the_recompressed_one() {
    let opt = ConvertOpt {
        threads: 2,
        ..Default::default()
    };
    let older = wdiff(&[io(0, 8, 2), io(100, 16, 3), io(300, 4, 0)], opt.compress);
    let newer = wdiff(&[io(50, 8, 4), io(400, 2, 1)], opt.compress);
    let inputs = [
        (older.clone(), Some(opt.compress)),
        (newer.clone(), Some(opt.compress)),
    ];
    let merged = stored_merge(&inputs, &opt);
    // Byte for byte what the merge of decompressed inputs writes.
    assert_eq!(merged, decoded_merge(&[older.clone(), newer], &opt));
    // And every normal record is an input's record as stored.
    let input_recs = records(&older);
    for r in records(&merged) {
        if r.kind == RecordKind::Normal && r.addr < 200 && r.addr != 50 {
            assert!(input_recs.contains(&r), "{r:?} is not an input record");
        }
    }
    // The encoding hands the stored bytes on, without a copy.
    let st = input_recs[0].clone();
    let mut coder = Coder::new(opt.compress).unwrap();
    let piece = StoredPiece::new(st.clone(), Some(opt.compress));
    assert!(piece.copies_with(opt.compress));
    let out = SourceIo::Stored(piece).encode(&mut coder).unwrap();
    assert_eq!(out.data.as_ptr(), st.data.as_ptr());
}

#[test]
fn a_record_cut_by_a_newer_one_is_reencoded() {
    let c = CompressOpt::default();
    let older = wdiff(&[io(100, 32, 3)], c);
    // The newer record punches a hole in the middle of the older one.
    let newer = wdiff(&[io(110, 4, 5)], c);
    let streams = vec![
        source_stream(reader(&older), Some(c)),
        source_stream(reader(&newer), Some(c)),
    ];
    let pieces: Vec<SourceIo> = DiffMerger::new(streams).collect::<Result<_>>().unwrap();
    let spans: Vec<(u64, u32)> = pieces.iter().map(|p| (p.addr(), p.blocks())).collect();
    assert_eq!(spans, vec![(100, 10), (110, 4), (114, 18)]);
    let copies: Vec<bool> = pieces
        .iter()
        .map(|p| matches!(p, SourceIo::Stored(s) if s.copies_with(c)))
        .collect();
    assert_eq!(copies, vec![false, true, false]);
    let older_rec = records(&older).remove(0);
    let mut coder = Coder::new(c).unwrap();
    let mut dec = Decompressor::new();
    for p in pieces {
        let (addr, blocks) = (p.addr(), p.blocks());
        let st = p.encode(&mut coder).unwrap();
        assert_eq!((st.addr, st.blocks), (addr, blocks));
        if addr != 110 {
            assert_ne!(
                st.data, older_rec.data,
                "a cut must not keep the whole record"
            );
        }
        let tag = if addr == 110 { 5 } else { 3 };
        assert_eq!(st.decompress(&mut dec).unwrap(), io(addr, blocks, tag));
    }
    // The merged file holds the same content as the merge of decompressed inputs.
    let opt = ConvertOpt::default();
    let merged = stored_merge(&[(older.clone(), Some(c)), (newer.clone(), Some(c))], &opt);
    assert_eq!(merged, decoded_merge(&[older, newer], &opt));
}

#[test]
fn another_codec_or_level_or_an_undeclared_input_is_recompressed() {
    let ios = [io(0, 64, 2), io(200, 128, 3), io(1000, 8, 4)];
    let out = ConvertOpt::default();
    let zstd3 = CompressOpt::new(Codec::Zstd, 3).unwrap();
    let lz4 = CompressOpt::new(Codec::Lz4, 0).unwrap();
    for written in [zstd3, lz4, CompressOpt::NONE, out.compress] {
        let file = wdiff(&ios, written);
        let want = decoded_merge(std::slice::from_ref(&file), &out);
        for declared in [Some(written), None] {
            let got = stored_merge(&[(file.clone(), declared)], &out);
            assert_eq!(got, want, "written {written}, declared {declared:?}");
            let copied = records(&got)
                .iter()
                .filter(|r| r.kind == RecordKind::Normal)
                .all(|r| records(&file).contains(r));
            // Records are copied only when the input declares the output's option.
            if declared == Some(out.compress) {
                assert!(copied);
            } else {
                assert!(records(&got)
                    .iter()
                    .all(|r| r.kind != RecordKind::Normal || r.codec == Codec::Zstd));
            }
        }
        // Levels differ in their bytes: the check above would pass vacuously otherwise.
        if written == zstd3 {
            assert_ne!(records(&file), records(&want));
        }
    }
}

#[test]
fn indexed_inputs_and_a_smaller_output_io_size_merge_as_decoded() {
    let c = CompressOpt::default();
    let sorted = wdiff(&[io(0, 40, 2), io(100, 8, 3)], c);
    let opt = ConvertOpt {
        kind: crate::wdiff::WdiffKind::Indexed,
        threads: 0,
        ..Default::default()
    };
    let indexed = crate::diff::convert::write_indexed(
        [io(20, 30, 4), io(104, 2, 1)].into_iter().map(Ok),
        [3; 16],
        Vec::new(),
        &opt,
    )
    .unwrap()
    .0;
    // 16-block pieces: the 40-block record is cut by the maximum IO size too.
    let out = ConvertOpt {
        max_io_blocks: 16,
        ..Default::default()
    };
    let got = stored_merge(
        &[(sorted.clone(), Some(c)), (indexed.clone(), Some(c))],
        &out,
    );
    assert_eq!(got, decoded_merge(&[sorted, indexed], &out));
    assert!(decoded(&got)
        .iter()
        .all(|io| io.blocks <= 16 || !io.is_normal()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn stored_merge_writes_the_decoded_merge_byte_for_byte(
        diffs in proptest::collection::vec(
            proptest::collection::vec((0u64..400, 1u32..40, 0u8..250), 1..12), 1..6),
        max_io in prop_oneof![Just(8u32), Just(2048u32)],
        threads in 0usize..3,
    ) {
        let c = CompressOpt::default();
        let files: Vec<Vec<u8>> = diffs
            .iter()
            .map(|d| wdiff(&d.iter().map(|&(a, n, t)| io(a, n, t)).collect::<Vec<_>>(), c))
            .collect();
        let opt = ConvertOpt { max_io_blocks: max_io, threads, ..Default::default() };
        let want = decoded_merge(&files, &opt);
        let declared: Vec<_> = files.iter().map(|f| (f.clone(), Some(c))).collect();
        prop_assert_eq!(&stored_merge(&declared, &opt), &want);
        let undeclared: Vec<_> = files.iter().map(|f| (f.clone(), None)).collect();
        prop_assert_eq!(&stored_merge(&undeclared, &opt), &want);
    }
}
