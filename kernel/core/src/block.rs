//! Block units.
//!
//! - **lb**: logical block, always 512 bytes. Record offsets and IO sizes are in lb.
//! - **pb**: physical block of the log device, `pbs` bytes (512 or 4096, any power of two
//!   from 512 to 65536 is accepted). lsids, ring sizes and log usage are in pb.

use crate::error::{Error, Result};

/// Logical block size in bytes.
pub const LBS: u32 = 512;
/// Logical block size as `usize`.
pub const LBS_USIZE: usize = LBS as usize;
/// Page size assumed by the on-disk layout (the superblock lives at this byte offset).
pub const PAGE_SIZE: u64 = 4096;

/// A validated physical block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pbs(u32);

impl Pbs {
    /// 512-byte physical blocks.
    pub const B512: Pbs = Pbs(512);
    /// 4096-byte physical blocks.
    pub const B4096: Pbs = Pbs(4096);

    /// Validates a physical block size: a power of two from 512 to 65536.
    pub fn new(pbs: u32) -> Result<Pbs> {
        if (LBS..=65536).contains(&pbs) && pbs.is_power_of_two() {
            Ok(Pbs(pbs))
        } else {
            Err(Error::Invalid(format!(
                "physical block size {pbs} is not a power of two between 512 and 65536"
            )))
        }
    }

    /// Bytes per physical block.
    #[inline]
    pub fn get(self) -> u32 {
        self.0
    }

    /// Bytes per physical block as `usize`.
    #[inline]
    pub fn bytes(self) -> usize {
        self.0 as usize
    }

    /// Logical blocks per physical block.
    #[inline]
    pub fn lb_per_pb(self) -> u32 {
        self.0 / LBS
    }

    /// Physical blocks needed to hold `lb` logical blocks (rounded up).
    #[inline]
    pub fn capacity_pb(self, lb: u64) -> u64 {
        lb.div_ceil(u64::from(self.lb_per_pb()))
    }

    /// Logical blocks in `pb` physical blocks.
    #[inline]
    pub fn pb_to_lb(self, pb: u64) -> u64 {
        pb * u64::from(self.lb_per_pb())
    }
}

impl std::fmt::Display for Pbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Little-endian field readers over a byte slice whose length the caller has checked.
///
/// Parsers check the slice length once and then read fixed offsets; these helpers keep that
/// code short without `unwrap`.
pub(crate) mod le {
    #[inline]
    pub fn u16(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([b[off], b[off + 1]])
    }
    #[inline]
    pub fn u32(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }
    #[inline]
    pub fn u64(b: &[u8], off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        u64::from_le_bytes(a)
    }
    #[inline]
    pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// True when every byte of `data` is zero. Fast path for all-zero IO detection.
#[inline]
pub fn is_all_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(64);
    for c in &mut chunks {
        let mut acc = 0u64;
        for w in c.chunks_exact(8) {
            acc |= u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbs_validation_and_capacity() {
        assert!(Pbs::new(512).is_ok());
        assert!(Pbs::new(4096).is_ok());
        assert!(Pbs::new(1000).is_err());
        assert!(Pbs::new(256).is_err());
        assert!(Pbs::new(1 << 17).is_err());
        let p = Pbs::B4096;
        assert_eq!(p.capacity_pb(0), 0);
        assert_eq!(p.capacity_pb(1), 1);
        assert_eq!(p.capacity_pb(8), 1);
        assert_eq!(p.capacity_pb(9), 2);
        assert_eq!(Pbs::B512.capacity_pb(9), 9);
    }

    #[test]
    fn all_zero() {
        let mut v = vec![0u8; 1000];
        assert!(is_all_zero(&v));
        v[999] = 1;
        assert!(!is_all_zero(&v));
        v[999] = 0;
        v[3] = 1;
        assert!(!is_all_zero(&v));
        assert!(is_all_zero(&[]));
    }
}
