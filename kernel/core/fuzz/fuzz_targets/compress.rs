//! Fuzzes the six record decompressors with arbitrary bytes and claimed sizes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_kernel::compress::{decompress, Codec};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let codec = Codec::from_u8(head % 6).unwrap_or(Codec::None);
    // Claimed original size: a few interesting values derived from the input.
    let claimed = [(head as usize) * 512, rest.len(), rest.len() * 4, 1 << 20];
    let mut out = Vec::new();
    for n in claimed {
        if decompress(codec, rest, n, &mut out).is_ok() {
            assert_eq!(out.len(), n);
        }
    }
});
