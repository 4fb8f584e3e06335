//! Fuzzes the snapshot-model parsers: binary records, text forms and wdiff file names.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_kernel::meta::{parse_diff_file_name, MetaDiff, MetaLsidGid, MetaSnap, MetaState};

fuzz_target!(|data: &[u8]| {
    let _ = MetaSnap::from_bytes(data);
    let _ = MetaDiff::from_bytes(data);
    let _ = MetaState::from_bytes(data);
    let _ = MetaLsidGid::from_bytes(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<MetaSnap>();
        let _ = s.parse::<MetaState>();
        if let Ok(d) = s.parse::<MetaDiff>() {
            let _ = walb_kernel::meta::diff_file_name(&d);
        }
        if let Ok(d) = parse_diff_file_name(s) {
            let name = walb_kernel::meta::diff_file_name(&d);
            assert!(parse_diff_file_name(&name).is_ok());
        }
    }
});
