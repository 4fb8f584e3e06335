//! Redo: applying wlogs and wdiffs to an image file or a block device.
//!
//! Normal IOs are written; all-zero IOs are written as zeros; discards follow a
//! [`DiscardPolicy`]: written as zeros, ignored, or punched (a hole in a file, BLKDISCARD
//! on a block device). Every IO is checked against the image size first, so a diff for a
//! larger volume fails with a clear error instead of writing past the end.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};

use super::io::{DiffIo, IoData};
use crate::block::LBS;
use crate::error::{Error, IoContext, Result};
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

const ZERO_CHUNK: usize = 1 << 20;

/// An image file or a block device.
pub struct FileTarget {
    file: File,
    size: u64,
    is_block: bool,
}

impl FileTarget {
    /// Wraps an open file or block device (opened for writing).
    pub fn new(file: File) -> Result<FileTarget> {
        let meta = file.metadata().ctx(|| "inspecting the target".into())?;
        let is_block = meta.file_type().is_block_device();
        let size = crate::ldev::ReadAt::size(&file).ctx(|| "sizing the target".into())?;
        Ok(FileTarget {
            file,
            size,
            is_block,
        })
    }

    /// The inner file.
    pub fn into_inner(self) -> File {
        self.file
    }

    fn zero_by_writing(&mut self, mut off: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let end = off + len;
        while off < end {
            let n = ((end - off) as usize).min(zeros.len());
            self.file
                .write_all_at(&zeros[..n], off)
                .ctx(|| format!("writing zeros at byte offset {off}"))?;
            off += n as u64;
        }
        Ok(())
    }
}

impl ImageTarget for FileTarget {
    fn size(&self) -> Result<u64> {
        Ok(self.size)
    }

    fn write_at(&mut self, data: &[u8], off: u64) -> Result<()> {
        self.file
            .write_all_at(data, off)
            .ctx(|| format!("writing {} bytes at byte offset {off}", data.len()))
    }

    fn write_zeros(&mut self, off: u64, len: u64) -> Result<()> {
        if !self.is_block {
            use nix::fcntl::{fallocate, FallocateFlags};
            let r = fallocate(
                &self.file,
                FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                off as i64,
                len as i64,
            );
            if r.is_ok() {
                return Ok(());
            }
        }
        self.zero_by_writing(off, len)
    }

    fn punch(&mut self, off: u64, len: u64) -> Result<()> {
        if self.is_block {
            return block_discard(&self.file, off, len).or_else(|_| self.zero_by_writing(off, len));
        }
        use nix::fcntl::{fallocate, FallocateFlags};
        match fallocate(
            &self.file,
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            off as i64,
            len as i64,
        ) {
            Ok(()) => Ok(()),
            Err(_) => self.zero_by_writing(off, len),
        }
    }

    fn sync(&mut self) -> Result<()> {
        self.file.sync_data().ctx(|| "syncing the target".into())
    }
}

nix::ioctl_write_ptr_bad!(blkdiscard, 0x1277, [u64; 2]);

fn block_discard(file: &File, off: u64, len: u64) -> Result<()> {
    use std::os::fd::AsRawFd;
    let range = [off, len];
    // SAFETY: BLKDISCARD reads two u64s from the pointer, which points to `range`.
    unsafe { blkdiscard(file.as_raw_fd(), &range) }
        .map(|_| ())
        .map_err(|e| {
            Error::io(
                format!("discarding {len} bytes at byte offset {off}"),
                e.into(),
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::os::unix::fs::MetadataExt;

    fn target(blocks: u64) -> (tempfile::NamedTempFile, FileTarget) {
        let f = tempfile::NamedTempFile::new().unwrap();
        let file = f.reopen().unwrap();
        file.write_all_at(&vec![0xeeu8; blocks as usize * 512], 0)
            .unwrap();
        file.sync_all().unwrap();
        (f, FileTarget::new(file).unwrap())
    }

    #[test]
    fn discard_policies_on_a_file() {
        // 2 MiB of 0xee; discard 1 MiB in the middle under each policy.
        let io = DiffIo::discard(1024, 2048);
        for policy in [
            DiscardPolicy::Zero,
            DiscardPolicy::Ignore,
            DiscardPolicy::Punch,
        ] {
            let (f, t) = target(4096);
            let blocks_before = f.as_file().metadata().unwrap().blocks();
            let mut r = Redo::new(t, policy).unwrap();
            r.apply_io(&io).unwrap();
            r.apply_io(&DiffIo::normal(0, Bytes::from(vec![1u8; 512])))
                .unwrap();
            let (t, stats) = r.finish().unwrap();
            assert_eq!(stats.discard_lb, 2048);
            let data = std::fs::read(f.path()).unwrap();
            assert_eq!(data[0], 1);
            let mid = &data[1024 * 512..3072 * 512];
            match policy {
                DiscardPolicy::Ignore => assert!(mid.iter().all(|&b| b == 0xee)),
                _ => assert!(mid.iter().all(|&b| b == 0)),
            }
            assert!(data[3072 * 512..].iter().all(|&b| b == 0xee));
            let blocks_after = t.into_inner().metadata().unwrap().blocks();
            if policy == DiscardPolicy::Punch {
                assert!(
                    blocks_after < blocks_before,
                    "punching frees space: {blocks_before} -> {blocks_after}"
                );
            }
        }
    }

    #[test]
    fn ios_beyond_the_end_are_refused_before_writing() {
        let (f, t) = target(8);
        let mut r = Redo::new(t, DiscardPolicy::Zero).unwrap();
        let e = r
            .apply_io(&DiffIo::normal(7, Bytes::from(vec![9u8; 1024])))
            .unwrap_err();
        assert!(e.to_string().contains("beyond the end"), "{e}");
        assert!(r.apply_io(&DiffIo::discard(u64::MAX - 1, 5)).is_err());
        drop(r);
        assert!(std::fs::read(f.path()).unwrap().iter().all(|&b| b == 0xee));
    }
}
