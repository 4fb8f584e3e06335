//! Fuzzes the wlog file reader, the `wlog-show` listing and wlog → wdiff conversion.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_kernel::diff::convert::{convert_wlog, ConvertOpt};
use walb_kernel::wdiff::WdiffKind;
use walb_kernel::wlog::write_listing;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if write_listing(data, &mut out).is_ok() {
        for kind in [WdiffKind::Sorted, WdiffKind::Indexed] {
            // No worker threads: deterministic, and LeakSanitizer flags thread-local teardown.
            let opt = ConvertOpt { kind, max_io_blocks: 16, threads: 0, ..Default::default() };
            let _ = convert_wlog(data, Vec::new(), &opt);
        }
    }
});
