//! Fuzzes the INDEXED wdiff reader (index at the end, images anywhere) and its listing.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use walb_kernel::wdiff::indexed::IndexedDiffReader;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut rd) = IndexedDiffReader::new(Cursor::new(data)) {
        let _ = rd.verify_images();
    }
    if let Ok(rd) = IndexedDiffReader::new(Cursor::new(data)) {
        for io in rd.take(4096) {
            if io.is_err() {
                break;
            }
        }
    }
    let mut out = Vec::new();
    let _ = walb_kernel::wdiff::show::show_indexed(Cursor::new(data), &mut out);
});
