//! The disks under the emulator: a file or block device, or an in-memory disk that can
//! simulate a power failure.
//!
//! [`MemDisk`] keeps a *durable* image and the writes issued since the last `sync`.
//! [`MemDisk::crash`] returns what a disk could hold after a power cut: the durable image
//! plus, for each unsynced write in issue order, all of it, none of it, or a prefix of its
//! 512-byte sectors (a torn write).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::sync::Mutex;

use rand::Rng;

use walb_kernel::ldev::ReadAt;

/// Block storage with explicit durability.
pub trait Disk: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `off`.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes all of `buf` at `off` (not durable until [`Disk::sync`]).
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Writes the buffers one after the other from `off` (not durable until
    /// [`Disk::sync`]). The default writes them one by one.
    fn write_vectored_at(&self, bufs: &[&[u8]], off: u64) -> io::Result<()> {
        let mut o = off;
        for b in bufs {
            self.write_at(b, o)?;
            o += b.len() as u64;
        }
        Ok(())
    }
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
    /// Size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Discards a range so that it reads as zeros.
    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        let zero = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zero.len() as u64) as usize;
            self.write_at(&zero[..n], off + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// A [`ReadAt`] view of a disk (for [`walb_kernel::ldev::LdevReader`]).
pub struct DiskReader<'a>(pub &'a dyn Disk);

impl ReadAt for DiskReader<'_> {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.0.read_at(buf, off)
    }
    fn size(&self) -> io::Result<u64> {
        self.0.size()
    }
}

/// A regular file or a block device; `sync` is `fdatasync`.
pub struct FileDisk {
    file: File,
    is_block: bool,
}

impl FileDisk {
    /// Wraps an open file (read-write).
    pub fn new(file: File) -> io::Result<FileDisk> {
        let is_block = file.metadata()?.file_type().is_block_device();
        Ok(FileDisk { file, is_block })
    }
    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Disk for FileDisk {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.file.write_all_at(buf, off)
    }
    fn write_vectored_at(&self, bufs: &[&[u8]], off: u64) -> io::Result<()> {
        use std::io::IoSlice;
        // At most IOV_MAX (1024) buffers per call; a short write resumes where it stopped.
        let (mut i, mut skip, mut o) = (0usize, 0usize, off);
        loop {
            while i < bufs.len() && bufs[i].len() == skip {
                i += 1;
                skip = 0;
            }
            if i == bufs.len() {
                break;
            }
            let mut v: Vec<IoSlice<'_>> = Vec::with_capacity((bufs.len() - i).min(1024));
            v.push(IoSlice::new(&bufs[i][skip..]));
            v.extend(bufs[i + 1..].iter().take(1023).map(|b| IoSlice::new(b)));
            let at = i64::try_from(o)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            let mut n = match nix::sys::uio::pwritev(&self.file, &v, at) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            };
            o += n as u64;
            while n > 0 && i < bufs.len() {
                let left = bufs[i].len() - skip;
                if n >= left {
                    n -= left;
                    i += 1;
                    skip = 0;
                } else {
                    skip += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        ReadAt::size(&self.file)
    }
    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        if !self.is_block && len > 0 {
            use nix::fcntl::{fallocate, FallocateFlags};
            let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            if let (Ok(o), Ok(l)) = (i64::try_from(off), i64::try_from(len)) {
                if fallocate(&self.file, flags, o, l).is_ok() {
                    return Ok(());
                }
            }
        }
        // Block devices and file systems without hole punching: write zeros.
        let zero = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zero.len() as u64) as usize;
            self.write_at(&zero[..n], off + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct MemInner {
    durable: Vec<u8>,
    live: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
    fail_writes: bool,
}

/// An in-memory disk that remembers what is durable (for crash tests).
#[derive(Debug, Default)]
pub struct MemDisk {
    inner: Mutex<MemInner>,
}

impl MemDisk {
    /// A zero-filled disk of `size` bytes, all durable.
    pub fn new(size: usize) -> MemDisk {
        MemDisk::from_image(vec![0u8; size])
    }

    /// A disk holding `image`, all durable.
    pub fn from_image(image: Vec<u8>) -> MemDisk {
        MemDisk {
            inner: Mutex::new(MemInner {
                durable: image.clone(),
                live: image,
                unsynced: Vec::new(),
                fail_writes: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What reads return now.
    pub fn live(&self) -> Vec<u8> {
        self.lock().live.clone()
    }

    /// What survives a crash for sure.
    pub fn durable(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// Makes later writes and syncs fail with EIO (to test read-only mode).
    pub fn set_fail_writes(&self, on: bool) {
        self.lock().fail_writes = on;
    }

    /// An image the disk could hold after a power cut now (see the module docs).
    pub fn crash(&self, rng: &mut impl Rng) -> Vec<u8> {
        let g = self.lock();
        let mut img = g.durable.clone();
        for (off, data) in &g.unsynced {
            let sectors = data.len().div_ceil(512);
            let keep = match rng.random_range(0..4) {
                0 => 0,
                1 => rng.random_range(0..=sectors),
                _ => sectors,
            };
            let n = (keep * 512).min(data.len());
            let o = *off as usize;
            img[o..o + n].copy_from_slice(&data[..n]);
        }
        img
    }
}

fn range(len: usize, buf: usize, off: u64) -> io::Result<std::ops::Range<usize>> {
    let o = usize::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    match o.checked_add(buf) {
        Some(e) if e <= len => Ok(o..e),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "access past the end of the memory disk",
        )),
    }
}

impl Disk for MemDisk {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let g = self.lock();
        let r = range(g.live.len(), buf.len(), off)?;
        buf.copy_from_slice(&g.live[r]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut g = self.lock();
        if g.fail_writes {
            return Err(io::Error::from_raw_os_error(nix::libc::EIO));
        }
        let r = range(g.live.len(), buf.len(), off)?;
        g.live[r].copy_from_slice(buf);
        g.unsynced.push((off, buf.to_vec()));
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let mut g = self.lock();
        if g.fail_writes {
            return Err(io::Error::from_raw_os_error(nix::libc::EIO));
        }
        g.unsynced.clear();
        g.durable = g.live.clone();
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.lock().live.len() as u64)
    }
}
