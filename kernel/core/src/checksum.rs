//! The WalB checksum: a salted 32-bit additive sum, negated.
//!
//! The data is read as little-endian `u32` words (a trailing partial word is zero-padded),
//! summed with wrap-around starting from `salt`, and the result is the two's-complement
//! negation of the sum. A block that stores its own checksum therefore verifies when the
//! checksum of the whole block (same salt) is zero.

/// Returns the raw sum (before negation) of `data` added to `sum`.
///
/// Exposed so that callers can checksum a structure in pieces (for example a header whose
/// checksum field must be treated as zero) and negate once at the end with [`finish`].
#[inline]
pub fn sum(acc: u32, data: &[u8]) -> u32 {
    // Eight lanes of u32 summed in u64 keep the loop free of carries between words and let
    // the compiler vectorise it; the lanes are folded back modulo 2^32.
    let mut chunks = data.chunks_exact(32);
    let mut lanes = [0u64; 8];
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u32::from_le_bytes([c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]]);
            *lane += u64::from(w);
        }
        // 2^32 words of at most 2^32-1 would overflow u64 only after 2^32 iterations
        // (128 GiB per call), far beyond any single structure we checksum.
    }
    let mut total: u64 = lanes.iter().sum();
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(4);
    for w in &mut words {
        total += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut b = [0u8; 4];
        b[..tail.len()].copy_from_slice(tail);
        total += u64::from(u32::from_le_bytes(b));
    }
    acc.wrapping_add(total as u32)
}

/// Negates a raw sum into a checksum value.
#[inline]
pub fn finish(sum: u32) -> u32 {
    (!sum).wrapping_add(1)
}

/// The WalB checksum of `data` with `salt`.
#[inline]
pub fn checksum(data: &[u8], salt: u32) -> u32 {
    finish(sum(salt, data))
}

/// True when a block that embeds its own checksum verifies (its checksum is zero).
///
/// Under `cfg(fuzzing)` every checksum is accepted, so that fuzzers explore the validation
/// behind it instead of stopping at the first additive sum they cannot solve.
#[inline]
pub fn verifies(block: &[u8], salt: u32) -> bool {
    cfg!(fuzzing) || checksum(block, salt) == 0
}

/// True when `data` has the checksum `expected` (always true under `cfg(fuzzing)`).
#[inline]
pub fn matches(data: &[u8], salt: u32, expected: u32) -> bool {
    cfg!(fuzzing) || checksum(data, salt) == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8], salt: u32) -> u32 {
        let mut s = salt;
        for w in data.chunks(4) {
            let mut b = [0u8; 4];
            b[..w.len()].copy_from_slice(w);
            s = s.wrapping_add(u32::from_le_bytes(b));
        }
        (!s).wrapping_add(1)
    }

    #[test]
    fn matches_word_by_word_definition() {
        let data: Vec<u8> = (0..10_007u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in [0, 1, 3, 4, 5, 31, 32, 33, 512, 4096, 10_007] {
            for salt in [0, 1, 0xdead_beef, u32::MAX] {
                assert_eq!(
                    checksum(&data[..len], salt),
                    reference(&data[..len], salt),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn block_with_embedded_checksum_verifies_to_zero() {
        let mut block = vec![0u8; 512];
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        block[4..8].copy_from_slice(&[0; 4]);
        let c = checksum(&block, 0x1234_5678);
        block[4..8].copy_from_slice(&c.to_le_bytes());
        assert_eq!(checksum(&block, 0x1234_5678), 0);
        block[100] ^= 1;
        assert_ne!(checksum(&block, 0x1234_5678), 0);
    }

    #[test]
    fn max_words_do_not_lose_carries() {
        let data = vec![0xffu8; 4096 * 8];
        assert_eq!(checksum(&data, 7), reference(&data, 7));
    }
}
