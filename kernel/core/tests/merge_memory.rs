//! Merging 100 wdiffs that hold 1 GiB of data in total does not load them whole.
//!
//! This test runs alone in its process, so the peak resident set size (`VmHWM`) measures
//! the merge itself. The inputs are compressible so that they are cheap to make and store,
//! but the merge decompresses and recompresses every byte of the 1 GiB. The merge of the
//! records kept as stored runs after it, on the same inputs.

use std::fs::File;
use std::io::{BufWriter, Write};

use bytes::Bytes;
use walb_kernel::compress::CompressOpt;
use walb_kernel::diff::convert::{merge_stored_to_sorted, merge_to_sorted, ConvertOpt};
use walb_kernel::diff::merge::DiffStream;
use walb_kernel::diff::source::source_stream;
use walb_kernel::diff::DiffIo;
use walb_kernel::wdiff::sorted::SortedDiffWriter;
use walb_kernel::wdiff::{WdiffHeader, WdiffKind, WdiffReader};

const N: u64 = 100;
const IO_BLOCKS: u32 = 128; // 64 KiB
const IOS_PER_DIFF: u64 = 164; // 164 x 64 KiB = 10.25 MiB per diff, 1.0 GiB in all

fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn merging_a_gibibyte_of_diffs_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut total = 0u64;
    let block = vec![0u8; IO_BLOCKS as usize * 512];
    for d in 0..N {
        let p = dir.path().join(format!("{d}.wdiff"));
        let f = BufWriter::new(File::create(&p).unwrap());
        let mut w = SortedDiffWriter::new(
            f,
            &WdiffHeader::new(WdiffKind::Sorted, [0; 16]),
            CompressOpt::default(),
        )
        .unwrap();
        for i in 0..IOS_PER_DIFF {
            // Diffs overlap each other: diff d covers [d * 64, d * 64 + IOS * 128) blocks.
            let addr = d * 64 + i * u64::from(IO_BLOCKS);
            let mut data = block.clone();
            data[..16].copy_from_slice(&[(d as u8) ^ (i as u8); 16]);
            data[1000..1008].copy_from_slice(&addr.to_le_bytes());
            w.push(DiffIo::normal(addr, Bytes::from(data))).unwrap();
            total += u64::from(IO_BLOCKS) * 512;
        }
        w.finish().unwrap().flush().unwrap();
        paths.push(p);
    }
    assert!(total >= 1 << 30, "inputs hold {total} bytes");
    let before = peak_rss_kib();
    let streams: Vec<DiffStream<'static>> = paths
        .iter()
        .map(|p| Box::new(WdiffReader::open(p).unwrap()) as DiffStream<'static>)
        .collect();
    let merged = dir.path().join("merged.wdiff");
    let out = BufWriter::new(File::create(&merged).unwrap());
    let opt = ConvertOpt::default();
    let (_, stats) = merge_to_sorted(streams, [0; 16], out, &opt).unwrap();
    // The same merge with the records kept as stored until they are written (the cut ones
    // re-encoded, the newest diff's copied): the in-flight records hold their inputs'
    // pack buffers, which must not add up either.
    let inputs = paths
        .iter()
        .map(|p| source_stream(WdiffReader::open(p).unwrap(), Some(opt.compress)))
        .collect();
    let stored = dir.path().join("stored.wdiff");
    let out = BufWriter::new(File::create(&stored).unwrap());
    let (_, stored_stats) = merge_stored_to_sorted(inputs, [0; 16], out, &opt).unwrap();
    let after = peak_rss_kib();
    assert_eq!(stored_stats, stats);
    assert!(
        std::fs::read(&stored).unwrap() == std::fs::read(&merged).unwrap(),
        "the stored merge wrote another file"
    );
    // The merged diff covers the union: (N - 1) * 64 + IOS * 128 blocks.
    assert_eq!(
        stats.normal_blocks,
        (N - 1) * 64 + IOS_PER_DIFF * u64::from(IO_BLOCKS)
    );
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "peak RSS before the merge {} MiB, after {} MiB",
        before / 1024,
        after / 1024
    );
    assert!(
        after / 1024 < 256,
        "peak RSS {} MiB while merging 1 GiB of diffs",
        after / 1024
    );
    assert!(
        grown_mib < 200,
        "the merge grew the peak RSS by {grown_mib} MiB"
    );
}
