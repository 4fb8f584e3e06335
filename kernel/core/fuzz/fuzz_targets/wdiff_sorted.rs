//! Fuzzes the SORTED wdiff reader: the raw records, the decompressed IO stream and the
//! `wdiff-show` listing.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use walb_kernel::wdiff::sorted::SortedDiffReader;

fuzz_target!(|data: &[u8]| {
    if let Ok(rd) = SortedDiffReader::new(Cursor::new(data)) {
        for io in rd.take(4096) {
            if io.is_err() {
                break;
            }
        }
    }
    let mut out = Vec::new();
    let _ = walb_kernel::wdiff::show::show_sorted(Cursor::new(data), &mut out);
});
