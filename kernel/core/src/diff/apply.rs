//! Redo: applying wlogs and wdiffs to an image file or a block device.
//!
//! Normal IOs are written; all-zero IOs are written as zeros; discards follow a
//! [`DiscardPolicy`]: written as zeros, ignored, or punched (a hole in a file, BLKDISCARD
//! on a block device). Every IO is checked against the image size first, so a diff for a
//! larger volume fails with a clear error instead of writing past the end.
//!
//! [`Redo`] writes to any [`ImageTarget`]; this crate has the in-memory one (`Vec<u8>`).
//! Image files and block devices (fallocate, BLKDISCARD) are `walb_device::image`'s
//! `FileTarget`, in the device runtime.

use super::io::{DiffIo, IoData};
use crate::block::LBS;
use crate::error::{Error, Result};
use crate::logpack::{LogPack, RecordKind};

/// What to do with discarded ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiscardPolicy {
    /// Write zeros (the image then reads as the virtual scan does).
    #[default]
    Zero,
    /// Leave the old data.
    Ignore,
    /// Punch a hole (files) or discard (block devices); reads as zeros on file systems
    /// and on devices that zero discarded blocks.
    Punch,
}

impl std::str::FromStr for DiscardPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "zero" => Ok(DiscardPolicy::Zero),
            "ignore" => Ok(DiscardPolicy::Ignore),
            "punch" | "passdown" => Ok(DiscardPolicy::Punch),
            _ => Err(Error::Invalid(format!(
                "discard policy {s:?}: expected zero, ignore or punch"
            ))),
        }
    }
}

/// Something an image can be written to.
pub trait ImageTarget {
    /// Size in bytes.
    fn size(&self) -> Result<u64>;
    /// Writes `data` at byte offset `off`.
    fn write_at(&mut self, data: &[u8], off: u64) -> Result<()>;
    /// Makes `[off, off + len)` read as zeros.
    fn write_zeros(&mut self, off: u64, len: u64) -> Result<()>;
    /// Deallocates `[off, off + len)` (reads as zeros afterwards).
    fn punch(&mut self, off: u64, len: u64) -> Result<()>;
    /// Makes everything written durable.
    fn sync(&mut self) -> Result<()>;
}

fn mem_range(v: &mut [u8], off: u64, len: u64) -> Result<&mut [u8]> {
    let size = v.len() as u64;
    match off.checked_add(len) {
        Some(e) if e <= size => Ok(&mut v[off as usize..e as usize]),
        _ => Err(Error::Invalid(format!(
            "write of {len} bytes at byte offset {off} beyond a {size}-byte image"
        ))),
    }
}

/// An in-memory image of fixed size (tests, small tools).
impl ImageTarget for Vec<u8> {
    fn size(&self) -> Result<u64> {
        Ok(self.len() as u64)
    }
    fn write_at(&mut self, data: &[u8], off: u64) -> Result<()> {
        mem_range(self, off, data.len() as u64)?.copy_from_slice(data);
        Ok(())
    }
    fn write_zeros(&mut self, off: u64, len: u64) -> Result<()> {
        mem_range(self, off, len)?.fill(0);
        Ok(())
    }
    fn punch(&mut self, off: u64, len: u64) -> Result<()> {
        self.write_zeros(off, len)
    }
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Statistics of a redo.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedoStats {
    /// Logical blocks written with data.
    pub normal_lb: u64,
    /// Logical blocks written as zeros (all-zero IOs).
    pub zero_lb: u64,
    /// Logical blocks of discards (whatever the policy did).
    pub discard_lb: u64,
}

/// Applies IOs to an [`ImageTarget`].
pub struct Redo<T: ImageTarget> {
    target: T,
    size_lb: u64,
    policy: DiscardPolicy,
    stats: RedoStats,
}

impl<T: ImageTarget> Redo<T> {
    /// Prepares to apply to `target` with the given discard policy.
    pub fn new(target: T, policy: DiscardPolicy) -> Result<Redo<T>> {
        let size_lb = target.size()? / u64::from(LBS);
        Ok(Redo {
            target,
            size_lb,
            policy,
            stats: RedoStats::default(),
        })
    }

    /// What was applied so far.
    pub fn stats(&self) -> &RedoStats {
        &self.stats
    }

    fn check_range(&self, addr: u64, blocks: u64) -> Result<()> {
        match addr.checked_add(blocks) {
            Some(e) if e <= self.size_lb => Ok(()),
            _ => Err(Error::Invalid(format!(
                "IO at logical block {addr} of {blocks} blocks lies beyond the end of the image ({} blocks)",
                self.size_lb
            ))),
        }
    }

    fn discard(&mut self, addr: u64, blocks: u64) -> Result<()> {
        self.check_range(addr, blocks)?;
        self.stats.discard_lb += blocks;
        let (off, len) = (addr * u64::from(LBS), blocks * u64::from(LBS));
        match self.policy {
            DiscardPolicy::Zero => self.target.write_zeros(off, len),
            DiscardPolicy::Ignore => Ok(()),
            DiscardPolicy::Punch => self.target.punch(off, len),
        }
    }

    /// Applies one diff IO.
    pub fn apply_io(&mut self, io: &DiffIo) -> Result<()> {
        let (addr, blocks) = (io.addr, u64::from(io.blocks));
        match &io.data {
            IoData::Normal(d) => {
                self.check_range(addr, blocks)?;
                self.stats.normal_lb += blocks;
                self.target.write_at(d, addr * u64::from(LBS))
            }
            IoData::AllZero => {
                self.check_range(addr, blocks)?;
                self.stats.zero_lb += blocks;
                self.target
                    .write_zeros(addr * u64::from(LBS), blocks * u64::from(LBS))
            }
            IoData::Discard => self.discard(addr, blocks),
        }
    }

    /// Applies every IO of a stream.
    pub fn apply_stream<I: IntoIterator<Item = Result<DiffIo>>>(&mut self, ios: I) -> Result<()> {
        for io in ios {
            self.apply_io(&io?)?;
        }
        Ok(())
    }

    /// Applies the records of a log pack in order (padding skipped).
    pub fn apply_pack(&mut self, pack: &LogPack) -> Result<()> {
        for (i, r) in pack.header.records.iter().enumerate() {
            match r.kind() {
                RecordKind::Padding => {}
                RecordKind::Discard => self.discard(r.offset, u64::from(r.io_size))?,
                RecordKind::Normal => {
                    self.check_range(r.offset, u64::from(r.io_size))?;
                    let Some(d) = pack.record_data(i) else {
                        return Err(Error::corrupt(
                            "log record",
                            crate::Location::Record {
                                index: i,
                                pack: pack.header.logpack_lsid,
                                lsid: true,
                            },
                            "data area is shorter than the record",
                        ));
                    };
                    self.stats.normal_lb += u64::from(r.io_size);
                    self.target.write_at(&d, r.offset * u64::from(LBS))?;
                }
            }
        }
        Ok(())
    }

    /// Syncs and returns the target.
    pub fn finish(mut self) -> Result<(T, RedoStats)> {
        self.target.sync()?;
        Ok((self.target, self.stats))
    }
}
