//! Fuzzes the log pack header parser and record data access for both block sizes.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use walb_kernel::block::Pbs;
use walb_kernel::logpack::{LogPack, LogPackHeader};

fuzz_target!(|data: &[u8]| {
    for pbs in [Pbs::B512, Pbs::B4096] {
        let expected = data.get(8..16).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        for exp in [None, expected] {
            if let Ok(mut h) = LogPackHeader::parse(data, pbs, 0x1234_5678, exp) {
                let body = Bytes::copy_from_slice(data.get(pbs.bytes()..).unwrap_or(&[]));
                let mut pack = LogPack { header: h.clone(), data: body };
                for i in 0..h.n_records() {
                    let _ = pack.record_data(i);
                }
                let _ = pack.verify_data();
                pack.shrink_to_valid();
                let block = h.to_block();
                assert!(LogPackHeader::parse(&block, pbs, 0x1234_5678, Some(h.logpack_lsid)).is_ok());
            }
        }
    }
});
