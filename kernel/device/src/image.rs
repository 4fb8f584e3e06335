//! Image files and block devices as targets of a redo ([`FileTarget`]).
//!
//! [`walb_kernel::diff::apply::Redo`] writes through the [`ImageTarget`] trait; this is its
//! implementation on an open file or block device. All-zero ranges become
//! `fallocate(FALLOC_FL_ZERO_RANGE)` on files; punched ranges a hole
//! (`FALLOC_FL_PUNCH_HOLE`) on files and `BLKDISCARD` ([`crate::sys::block_discard`]) on
//! block devices; whatever the file system or device refuses is written as zeros instead.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};

use walb_kernel::diff::apply::ImageTarget;
use walb_kernel::error::{IoContext, Result};

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
        let size = walb_kernel::ldev::ReadAt::size(&file).ctx(|| "sizing the target".into())?;
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
            return crate::sys::block_discard(&self.file, off, len)
                .or_else(|_| self.zero_by_writing(off, len));
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::os::unix::fs::MetadataExt;
    use walb_kernel::diff::apply::{DiscardPolicy, Redo};
    use walb_kernel::diff::io::DiffIo;

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
