//! Synthetic wlogs for tests and benchmarks (walb-tools' `wlog-gen`).
//!
//! [`WlogGen`] writes a valid wlog of random writes, discards and all-zero writes to a
//! device of a given size, packed exactly as the driver packs them (optionally with ring
//! padding). The content is reproducible from the seed.

use std::io::Write;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::block::{Pbs, LBS_USIZE};
use crate::error::{Error, Result};
use crate::logpack::{AddOutcome, LogPackBuilder};
use crate::wlog::{WlogHeader, WlogWriter, NO_END_LSID};

/// What the written blocks contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Uniformly random bytes (incompressible).
    Random,
    /// Mostly zero: each 4 KiB holds 512 random bytes then zeros (compresses about 8:1).
    Compressible,
}

impl std::str::FromStr for DataKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "random" => Ok(DataKind::Random),
            "compressible" | "zero" => Ok(DataKind::Compressible),
            _ => Err(Error::Invalid(format!(
                "data kind {s:?}: expected random or compressible"
            ))),
        }
    }
}

/// Parameters of a generated wlog.
#[derive(Debug, Clone)]
pub struct WlogGen {
    /// Physical block size of the log.
    pub pbs: Pbs,
    /// Device size in logical blocks; IOs stay inside it.
    pub device_lb: u64,
    /// Stop once this many bytes of normal IO data were written.
    pub data_bytes: u64,
    /// Smallest normal IO in logical blocks.
    pub min_io_lb: u32,
    /// Largest normal IO in logical blocks.
    pub max_io_lb: u32,
    /// Percentage of IOs that are discards.
    pub discard_pct: u32,
    /// Percentage of normal IOs whose data is all zero.
    pub zero_pct: u32,
    /// Content of the other normal IOs.
    pub kind: DataKind,
    /// Ring size for padding (None: no padding).
    pub ring_size: Option<u64>,
    /// lsid of the first pack.
    pub begin_lsid: u64,
    /// Seed.
    pub seed: u64,
}

impl WlogGen {
    /// Defaults: pbs 4096, 4–64 KiB IOs, 2% discards, 2% zero writes, random data.
    pub fn new(device_lb: u64, data_bytes: u64) -> WlogGen {
        WlogGen {
            pbs: Pbs::B4096,
            device_lb,
            data_bytes,
            min_io_lb: 8,
            max_io_lb: 128,
            discard_pct: 2,
            zero_pct: 2,
            kind: DataKind::Random,
            ring_size: None,
            begin_lsid: 0,
            seed: 1,
        }
    }

    fn fill(&self, rng: &mut SmallRng, buf: &mut [u8]) {
        match self.kind {
            DataKind::Random => rng.fill_bytes(buf),
            DataKind::Compressible => {
                for chunk in buf.chunks_mut(4096) {
                    let n = chunk.len().min(512);
                    rng.fill_bytes(&mut chunk[..n]);
                    chunk[n..].fill(0);
                }
            }
        }
    }

    /// Writes the wlog; returns the lsid after the last pack.
    pub fn write<W: Write>(&self, out: W) -> Result<u64> {
        if self.min_io_lb == 0
            || self.min_io_lb > self.max_io_lb
            || u64::from(self.max_io_lb) > self.device_lb
        {
            return Err(Error::Invalid(format!(
                "IO size range {}..={} lb does not fit a {}-lb device",
                self.min_io_lb, self.max_io_lb, self.device_lb
            )));
        }
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let salt: u32 = rng.random();
        let mut uuid = [0u8; 16];
        rng.fill_bytes(&mut uuid);
        let header = WlogHeader {
            salt,
            pbs: self.pbs,
            uuid,
            begin_lsid: self.begin_lsid,
            end_lsid: NO_END_LSID,
        };
        let mut w = WlogWriter::new(out, header)?;
        let mut b = LogPackBuilder::new(self.pbs, salt, self.begin_lsid, self.ring_size);
        let mut written = 0u64;
        let mut buf = vec![0u8; self.max_io_lb as usize * LBS_USIZE];
        while written < self.data_bytes {
            let lb = rng.random_range(self.min_io_lb..=self.max_io_lb);
            let addr = rng.random_range(0..=self.device_lb - u64::from(lb));
            let outcome = if rng.random_range(0..100) < self.discard_pct {
                let dl = rng.random_range(1..=(self.max_io_lb * 4).min(self.device_lb as u32));
                let da = rng.random_range(0..=self.device_lb - u64::from(dl));
                b.add_discard(da, dl)?
            } else {
                let data = &mut buf[..lb as usize * LBS_USIZE];
                if rng.random_range(0..100) < self.zero_pct {
                    data.fill(0);
                } else {
                    self.fill(&mut rng, data);
                }
                written += data.len() as u64;
                let mut o = b.add_write(addr, data)?;
                while o == AddOutcome::Full {
                    w.write_pack(&b.finish())?;
                    o = b.add_write(addr, data)?;
                }
                o
            };
            if outcome == AddOutcome::Full {
                w.write_pack(&b.finish())?;
            }
        }
        if !b.is_empty() {
            w.write_pack(&b.finish())?;
        }
        let end = w.next_lsid();
        w.finish()?;
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wlog::WlogReader;

    #[test]
    fn generated_wlog_is_valid_and_reproducible() {
        for pbs in [Pbs::B512, Pbs::B4096] {
            let mut g = WlogGen::new(1 << 16, 1 << 20);
            g.pbs = pbs;
            g.ring_size = Some(1000);
            g.discard_pct = 20;
            g.kind = DataKind::Compressible;
            let mut a = Vec::new();
            let end = g.write(&mut a).unwrap();
            let mut b = Vec::new();
            g.write(&mut b).unwrap();
            assert_eq!(a, b);
            let mut rd = WlogReader::new(&a[..]).unwrap();
            let mut data = 0u64;
            let mut discards = 0;
            while let Some(p) = rd.next_pack().unwrap() {
                for r in &p.header.records {
                    match r.kind() {
                        crate::logpack::RecordKind::Normal => data += u64::from(r.io_size) * 512,
                        crate::logpack::RecordKind::Discard => discards += 1,
                        crate::logpack::RecordKind::Padding => {}
                    }
                }
            }
            assert_eq!(rd.next_lsid(), end);
            assert!(data >= 1 << 20);
            assert!(discards > 0);
        }
    }
}
