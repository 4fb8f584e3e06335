//! Bulk hashes for hash sync: the storage and the archive hash the same bulk of their
//! images and compare, so that only differing bulks cross the network.
//!
//! The hash is XXH3-128 with a per-session seed (the sync's start time): 128 bits make an
//! accidental match of different data negligible over a whole device, and XXH3 hashes at
//! memory speed, so the scan is bound by the disk on both sides, not by the hash. (walb-
//! tools uses MurmurHash3-x64-128 there; the hash sync protocol is walb's own.)
//!
//! [`Murmur3`] is MurmurHash3-x64-128 fed in pieces, for `bhash` (walb-tools' hash of a
//! whole snapshot image: seed 0, streaming): the same value as the one-shot function over
//! the concatenated bytes.

use xxhash_rust::xxh3::xxh3_128_with_seed;

/// MurmurHash3-x64-128 over data fed in pieces of any size.
#[derive(Debug, Clone)]
pub struct Murmur3 {
    h1: u64,
    h2: u64,
    /// Bytes of an unfinished 16-byte block.
    tail: [u8; 16],
    tail_len: usize,
    len: u64,
}

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

impl Murmur3 {
    /// A hasher with `seed`.
    pub fn new(seed: u32) -> Murmur3 {
        Murmur3 {
            h1: u64::from(seed),
            h2: u64::from(seed),
            tail: [0; 16],
            tail_len: 0,
            len: 0,
        }
    }

    fn block(&mut self, b: &[u8; 16]) {
        let mut k1 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let mut k2 = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        self.h1 ^= k1;
        self.h1 = self
            .h1
            .rotate_left(27)
            .wrapping_add(self.h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        self.h2 ^= k2;
        self.h2 = self
            .h2
            .rotate_left(31)
            .wrapping_add(self.h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }

    /// Feeds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let n = (16 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + n].copy_from_slice(&data[..n]);
            self.tail_len += n;
            data = &data[n..];
            if self.tail_len < 16 {
                return;
            }
            let t = self.tail;
            self.block(&t);
            self.tail_len = 0;
        }
        let mut blocks = data.chunks_exact(16);
        for b in &mut blocks {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            self.block(&a);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// The hash: `h1` then `h2`, little endian (MurmurHash3's output bytes).
    pub fn finish(&self) -> [u8; 16] {
        let (mut h1, mut h2) = (self.h1, self.h2);
        let t = &self.tail[..self.tail_len];
        let mut k1 = 0u64;
        let mut k2 = 0u64;
        for (i, &b) in t.iter().enumerate().skip(8) {
            k2 ^= u64::from(b) << ((i - 8) * 8);
        }
        for (i, &b) in t.iter().enumerate().take(8) {
            k1 ^= u64::from(b) << (i * 8);
        }
        if t.len() > 8 {
            h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        }
        if !t.is_empty() {
            h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        }
        h1 ^= self.len;
        h2 ^= self.len;
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
        h1 = fmix64(h1);
        h2 = fmix64(h2);
        h1 = h1.wrapping_add(h2);
        h2 = h2.wrapping_add(h1);
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
