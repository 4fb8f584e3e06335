//! Inputs the fuzzers once found trouble with, replayed through the same code paths as the
//! fuzz targets. Each file in `tests/fuzz-regressions/` is named after its target.

use std::path::PathBuf;

use walb_kernel::diff::convert::{convert_wlog, ConvertOpt};
use walb_kernel::wdiff::WdiffKind;
use walb_kernel::wlog::write_listing;

fn inputs(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-regressions")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    v.sort();
    v
}

/// `wlog-huge-discard-oom`: a discard of 2^32-1 blocks used to be split at the maximum IO
/// size into hundreds of millions of records and exhaust memory.
#[test]
fn wlog_inputs_convert_in_bounded_space() {
    let files = inputs("wlog-");
    assert!(!files.is_empty());
    for (name, data) in files {
        let mut listing = Vec::new();
        if write_listing(&data[..], &mut listing).is_err() {
            continue;
        }
        for kind in [WdiffKind::Sorted, WdiffKind::Indexed] {
            let opt = ConvertOpt {
                kind,
                max_io_blocks: 16,
                threads: 0,
                ..Default::default()
            };
            if let Ok((out, stats)) = convert_wlog(&data[..], Vec::new(), &opt) {
                assert!(
                    out.len() < 64 << 20,
                    "{name} {kind:?}: {} bytes of wdiff",
                    out.len()
                );
                assert!(
                    stats.records < 1 << 20,
                    "{name} {kind:?}: {} records",
                    stats.records
                );
            }
        }
    }
}
