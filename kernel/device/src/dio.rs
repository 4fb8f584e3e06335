//! Direct-IO reads of an image ([`DirectReader`]): a scan that reads a whole image once
//! (the archive's virtual full scans) has no use for the page cache, and filling it costs
//! more CPU than the rest of the scan on the machines we measured (most of it in the
//! kernel's copy to user space and the zeroing of pages for holes).
//!
//! [`DirectReader`] opens its own `O_DIRECT` description of the file and serves any
//! [`ReadAt`] range through an aligned staging buffer (the range widened to the alignment,
//! then copied out). A file system without direct IO (`EINVAL` at open or at the first
//! read, e.g. tmpfs) is read through the page cache instead, with the same results.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use walb_kernel::ldev::ReadAt;

/// Alignment of offsets, lengths and memory for direct IO.
pub const DIO_ALIGN: usize = 4096;
/// Largest single read (the staging buffer's size).
const MAX_READ: usize = 4 << 20;

/// Reads a file with direct IO where the file system allows it (see the module
/// documentation).
#[derive(Debug)]
pub struct DirectReader {
    /// The `O_DIRECT` description, `None` once direct IO proved unavailable.
    direct: Mutex<Option<(File, Vec<u8>)>>,
    /// The ordinary description (fallback, size).
    plain: File,
}

impl DirectReader {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> std::io::Result<DirectReader> {
        Ok(Self::from_file(File::open(path)?))
    }

    /// Reads the file `plain` is open on (its own `O_DIRECT` description is opened through
    /// `/proc/self/fd`, so `plain` keeps its flags).
    pub fn from_file(plain: File) -> DirectReader {
        use std::os::fd::AsRawFd;
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(format!("/proc/self/fd/{}", plain.as_raw_fd()))
            .ok()
            .map(|f| (f, vec![0u8; MAX_READ + DIO_ALIGN]));
        DirectReader {
            direct: Mutex::new(direct),
            plain,
        }
    }

    /// Whether reads still go around the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

impl ReadAt for DirectReader {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let mut g = self.direct.lock().unwrap_or_else(|p| p.into_inner());
        let Some((file, staging)) = g.as_mut() else {
            return FileExt::read_exact_at(&self.plain, buf, off);
        };
        let a = DIO_ALIGN as u64;
        let start = staging.as_ptr().align_offset(DIO_ALIGN);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let lo = pos / a * a;
            let skip = (pos - lo) as usize;
            let want = (buf.len() - done + skip).div_ceil(DIO_ALIGN) * DIO_ALIGN;
            let len = want.min(MAX_READ);
            let st = &mut staging[start..start + len];
            let n = match file.read_at(st, lo) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) && done == 0 => {
                    // No direct IO here: the page cache from now on.
                    *g = None;
                    return FileExt::read_exact_at(&self.plain, buf, off);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n <= skip {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "read past the end of the image",
                ));
            }
            let k = (n - skip).min(buf.len() - done);
            buf[done..done + k].copy_from_slice(&st[skip..skip + k]);
            done += k;
        }
        Ok(())
    }

    fn size(&self) -> std::io::Result<u64> {
        ReadAt::size(&self.plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_range_reads_as_through_the_page_cache() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        let data: Vec<u8> = (0..3 * MAX_READ + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&p, &data).unwrap();
        let r = DirectReader::open(&p).unwrap();
        eprintln!("direct: {}", r.is_direct());
        let r2 = DirectReader::from_file(File::open(&p).unwrap());
        assert_eq!(r2.is_direct(), r.is_direct());
        assert_eq!(ReadAt::size(&r).unwrap(), data.len() as u64);
        for (off, len) in [
            (0usize, 512usize),
            (1, 1),
            (4095, 2),
            (4096, 4096),
            (100, MAX_READ * 2 + 77),
            (data.len() - 10, 10),
            (0, data.len()),
        ] {
            let mut b = vec![0u8; len];
            r.read_exact_at(&mut b, off as u64).unwrap();
            assert_eq!(b, data[off..off + len], "range {off}+{len}");
        }
        let mut b = vec![0u8; 20];
        let e = r.read_exact_at(&mut b, data.len() as u64 - 10).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
