//! Bulk hashes for hash sync: the storage and the archive hash the same bulk of their
//! images and compare, so that only differing bulks cross the network.
//!
//! The hash is XXH3-128 with a per-session seed (the sync's start time): 128 bits make an
//! accidental match of different data negligible over a whole device, and XXH3 hashes at
//! memory speed, so the scan is bound by the disk on both sides, not by the hash. (walb-
//! tools uses MurmurHash3-x64-128 there; the hash sync protocol is walb's own.)
//!
//! [`Murmur3`] is MurmurHash3-x64-128 fed in pieces (the `mur3` crate), for `bhash` (walb-tools' hash of a
//! whole snapshot image: seed 0, streaming): the same value as the one-shot function over
//! the concatenated bytes.

use std::hash::Hasher as _;

use xxhash_rust::xxh3::xxh3_128_with_seed;

/// MurmurHash3-x64-128 over data fed in pieces of any size (the `mur3` crate's hasher).
pub struct Murmur3(mur3::Hasher128);

impl std::fmt::Debug for Murmur3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Murmur3").finish_non_exhaustive()
    }
}

impl Murmur3 {
    /// A hasher with `seed`.
    pub fn new(seed: u32) -> Murmur3 {
        Murmur3(mur3::Hasher128::with_seed(seed))
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.write(data);
    }

    /// The hash: `h1` then `h2`, little endian (MurmurHash3's output bytes).
    pub fn finish(&self) -> [u8; 16] {
        let (h1, h2) = self.0.finish128();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&h1.to_le_bytes());
        out[8..].copy_from_slice(&h2.to_le_bytes());
        out
    }
}

/// The hash of one bulk under `seed`, as the 16 bytes sent on the wire (little endian).
pub fn bulk_hash(data: &[u8], seed: u64) -> [u8; 16] {
    xxh3_128_with_seed(data, seed).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bulks_hash_equal_and_any_change_or_seed_differs() {
        let a = vec![7u8; 1 << 16];
        let mut b = a.clone();
        assert_eq!(bulk_hash(&a, 1), bulk_hash(&b, 1));
        b[12345] ^= 1;
        assert_ne!(bulk_hash(&a, 1), bulk_hash(&b, 1));
        assert_ne!(bulk_hash(&a, 1), bulk_hash(&a, 2));
        // A fixed value: the wire format must not change with the crate's version.
        let h = bulk_hash(b"walb", 0);
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "7a0cb6d087ca7c78d942ca6936f7cac1");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn murmur3_matches_the_reference_in_one_piece_and_in_any_pieces() {
        // Values of the reference implementation (MurmurHash3_x64_128, seed 0, output
        // bytes h1 then h2 little endian).
        let long: Vec<u8> = (0..3).flat_map(|_| 0u8..=255).chain(*b"xyz").collect();
        let cases: [(&[u8], &str); 5] = [
            (b"", "00000000000000000000000000000000"),
            (b"a", "897859f6655555855a890e51483ab5e6"),
            (b"hello", "029bbd41b3a7d8cb191dae486a901e5b"),
            (
                b"The quick brown fox jumps over the lazy dog",
                "6c1b07bc7bbc4be347939ac4a93c437a",
            ),
            (&long, "107df987c496d78a5f8ad4ebc45e9473"),
        ];
        for (data, want) in cases {
            let mut h = Murmur3::new(0);
            h.update(data);
            assert_eq!(hex(&h.finish()), want, "{} bytes", data.len());
            // Fed in uneven pieces: the same.
            for piece in [1, 3, 7, 16, 17, 100] {
                let mut h = Murmur3::new(0);
                for c in data.chunks(piece) {
                    h.update(c);
                }
                assert_eq!(hex(&h.finish()), want, "{} bytes by {piece}", data.len());
            }
        }
    }
}
