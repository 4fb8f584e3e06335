//! The diff engine on the golden data: our own conversion, merge, redo and virtual scan
//! reproduce every reference image of walb-tools 1.0.19.

mod common;

use std::fs::File;
use std::io::{BufReader, Cursor, Read};

use walb_kernel::compress::{Codec, CompressOpt};
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::diff::convert::{
    convert_wlog, merge_stored_to_sorted, merge_to_sorted, ConvertOpt,
};
use walb_kernel::diff::merge::{DiffMerger, DiffStream};
use walb_kernel::diff::source::source_stream;
use walb_kernel::diff::virt::VirtualFullScan;
use walb_kernel::wdiff::{WdiffKind, WdiffReader};

const SIZE: usize = common::GOLDEN_DEVICE_BYTES as usize;

fn convert(name: &str, kind: WdiffKind, compress: CompressOpt) -> Vec<u8> {
    let f = File::open(common::golden(name)).unwrap();
    let opt = ConvertOpt {
        kind,
        compress,
        ..Default::default()
    };
    convert_wlog(BufReader::new(f), Vec::new(), &opt).unwrap().0
}

fn stream(bytes: Vec<u8>) -> DiffStream<'static> {
    Box::new(WdiffReader::new(Cursor::new(bytes)).unwrap())
}

fn redo(img: Vec<u8>, wdiff: &[u8]) -> Vec<u8> {
    let mut r = Redo::new(img, DiscardPolicy::Zero).unwrap();
    r.apply_stream(WdiffReader::new(Cursor::new(wdiff)).unwrap())
        .unwrap();
    r.finish().unwrap().0
}

#[test]
fn own_conversions_step_by_step_and_merged() {
    for pbs in [512, 4096] {
        let kinds = [WdiffKind::Sorted, WdiffKind::Indexed, WdiffKind::Sorted];
        let mut diffs = Vec::new();
        let mut img = vec![0u8; SIZE];
        for n in 1..=3 {
            let d = convert(
                &format!("pub-{pbs}-{n}.wlog"),
                kinds[n - 1],
                CompressOpt::default(),
            );
            img = redo(img, &d);
            assert_eq!(
                common::sha256_hex(&img),
                common::golden_image_sha256(&format!("pub-{pbs}-after-{n}.img")),
                "pbs {pbs} step {n}"
            );
            diffs.push(d);
        }
        let want = common::golden_image_sha256(&format!("pub-{pbs}-after-3.img"));
        // Our merge of our own diffs (sorted + indexed + sorted).
        let streams = diffs.iter().cloned().map(stream).collect();
        let (merged, _) =
            merge_to_sorted(streams, [0; 16], Vec::new(), &ConvertOpt::default()).unwrap();
        assert_eq!(
            common::sha256_hex(&redo(vec![0u8; SIZE], &merged)),
            want,
            "pbs {pbs} merged"
        );
        // Our merge of the reference diffs.
        let refs = ["1.sorted", "2.indexed", "3.sorted"]
            .iter()
            .map(|k| {
                stream(std::fs::read(common::golden(&format!("pub-{pbs}-{k}.wdiff"))).unwrap())
            })
            .collect();
        let (merged_ref, _) =
            merge_to_sorted(refs, [0; 16], Vec::new(), &ConvertOpt::default()).unwrap();
        assert_eq!(
            common::sha256_hex(&redo(vec![0u8; SIZE], &merged_ref)),
            want,
            "pbs {pbs} merged reference diffs"
        );
        // The virtual full scan streams the same image from an empty base.
        let streams = diffs.into_iter().map(stream).collect();
        let mut scan = VirtualFullScan::new(
            None,
            (SIZE / 512) as u64,
            Box::new(DiffMerger::new(streams)),
        )
        .unwrap();
        let mut out = Vec::new();
        scan.read_to_end(&mut out).unwrap();
        assert_eq!(common::sha256_hex(&out), want, "pbs {pbs} virtual scan");
    }
}

#[test]
fn virtual_scan_over_a_base_image_matches_redo() {
    // Base = image after wlog 1 (from the reference merged path), diffs 2 and 3 on top.
    let pbs = 4096;
    let d1 = convert(
        &format!("pub-{pbs}-1.wlog"),
        WdiffKind::Sorted,
        CompressOpt::default(),
    );
    let base = redo(vec![0u8; SIZE], &d1);
    let d2 = std::fs::read(common::golden(&format!("pub-{pbs}-2.indexed.wdiff"))).unwrap();
    let d3 = std::fs::read(common::golden(&format!("pub-{pbs}-3.sorted.wdiff"))).unwrap();
    let b: &dyn walb_kernel::ldev::ReadAt = &base;
    let mut scan = VirtualFullScan::new(
        Some(b),
        (SIZE / 512) as u64,
        Box::new(DiffMerger::new(vec![stream(d2), stream(d3)])),
    )
    .unwrap();
    let mut out = Vec::new();
    scan.read_to_end(&mut out).unwrap();
    assert_eq!(
        common::sha256_hex(&out),
        common::golden_image_sha256(&format!("pub-{pbs}-after-3.img"))
    );
}

#[test]
fn every_writable_codec_reproduces_the_compressible_image() {
    let want = common::golden_image_sha256("pub-z-after.img");
    for codec in [
        Codec::None,
        Codec::Snappy,
        Codec::Zstd,
        Codec::Gzip,
        Codec::Lz4,
        Codec::Lzma,
    ] {
        for kind in [WdiffKind::Sorted, WdiffKind::Indexed] {
            let d = convert("pub-z.wlog", kind, CompressOpt::new(codec, 0).unwrap());
            assert_eq!(
                common::sha256_hex(&redo(vec![0u8; SIZE], &d)),
                want,
                "{codec} {kind:?}"
            );
        }
    }
}

#[test]
fn merging_records_as_stored_reproduces_the_image_and_the_decoded_merge() {
    // walb-tools stored these records uncompressed: an output of `none` declared for the
    // inputs copies them as stored; one of zstd re-encodes them.
    for pbs in [512, 4096] {
        let want = common::golden_image_sha256(&format!("pub-{pbs}-after-3.img"));
        let files: Vec<Vec<u8>> = ["1.sorted", "2.indexed", "3.sorted"]
            .iter()
            .map(|k| std::fs::read(common::golden(&format!("pub-{pbs}-{k}.wdiff"))).unwrap())
            .collect();
        for out in [CompressOpt::NONE, CompressOpt::default()] {
            let opt = ConvertOpt {
                compress: out,
                ..Default::default()
            };
            let inputs = files
                .iter()
                .map(|f| {
                    let rd = WdiffReader::new(Cursor::new(f.clone())).unwrap();
                    source_stream(rd, Some(CompressOpt::NONE))
                })
                .collect();
            let (stored, _) = merge_stored_to_sorted(inputs, [0; 16], Vec::new(), &opt).unwrap();
            let refs = files.iter().cloned().map(stream).collect();
            let (decoded, _) = merge_to_sorted(refs, [0; 16], Vec::new(), &opt).unwrap();
            assert!(stored == decoded, "pbs {pbs} {out}: the merges differ");
            assert_eq!(
                common::sha256_hex(&redo(vec![0u8; SIZE], &stored)),
                want,
                "pbs {pbs} {out}"
            );
        }
    }
}
