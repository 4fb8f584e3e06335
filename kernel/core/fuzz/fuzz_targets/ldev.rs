//! Fuzzes reading packs out of an ldev image (scan mode and a known end).
#![no_main]
use libfuzzer_sys::fuzz_target;
use walb_kernel::ldev::{LdevEnd, LdevReader, SuperBlock};

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else { return };
    // A plausible image: the fuzz bytes from byte 4096, and room for a small ring.
    let mut img = vec![0u8; 4096];
    img.extend_from_slice(rest);
    let Ok(sb) = SuperBlock::read(&img) else { return };
    let start = sb.oldest_lsid;
    let ends = [LdevEnd::Scan, LdevEnd::Known(start.saturating_add(u64::from(k)))];
    for end in ends {
        let Ok(mut rd) = LdevReader::new(&img, sb.clone(), start, end, k & 1 == 1) else { continue };
        for _ in 0..64 {
            match rd.next_pack() {
                Ok(Some(p)) => {
                    let _ = p.verify_data();
                }
                _ => break,
            }
        }
    }
});
