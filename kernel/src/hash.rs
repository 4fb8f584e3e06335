//! Bulk hashes for hash sync: the storage and the archive hash the same bulk of their
//! images and compare, so that only differing bulks cross the network.
//!
//! The hash is XXH3-128 with a per-session seed (the sync's start time): 128 bits make an
//! accidental match of different data negligible over a whole device, and XXH3 hashes at
//! memory speed, so the scan is bound by the disk on both sides, not by the hash. (walb-
//! tools uses MurmurHash3-x64-128 there; the hash sync protocol is walb's own, and bhash,
//! whose printed value is walb-tools', is a separate command.)

use xxhash_rust::xxh3::xxh3_128_with_seed;

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
}
