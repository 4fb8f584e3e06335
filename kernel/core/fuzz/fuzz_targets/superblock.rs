//! Fuzzes the ldev superblock parser (any pbs, any bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_kernel::ldev::SuperBlock;

fuzz_target!(|data: &[u8]| {
    let _ = SuperBlock::parse(data, None);
    // As an ldev image: the superblock at byte 4096, ring bounds checked against the size.
    let mut img = vec![0u8; 4096];
    img.extend_from_slice(data);
    if let Ok(mut sb) = SuperBlock::read(&img) {
        // A parsed superblock must survive a round trip.
        let block = sb.to_block();
        let again = SuperBlock::parse(&block, Some(sb.pbs)).expect("round trip");
        assert_eq!(again.ring_buffer_size, sb.ring_buffer_size);
        let _ = sb.offset_of_lsid(u64::MAX - 1);
    }
});
