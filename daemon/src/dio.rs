//! Direct-IO writes (`O_DIRECT`) of files written once, front to back, and read later by
//! another task: the archive's images and received wdiffs, the proxy's wdiffs.
//!
//! The data goes from our buffer to the disk without passing through (and crowding out)
//! the page cache, which costs the least CPU per byte, and the final fsync has only the
//! metadata left to write, so it no longer waits for the whole file at the end.
//!
//! [`DirectIo`] sets the flag on a file's open description for the duration of the
//! writes; a piece that is not aligned (offset or length) is written through the page
//! cache with the flag cleared for that write. A file system without direct IO (the flag
//! refused, or `EINVAL` at the first aligned write, e.g. tmpfs on older kernels) keeps the
//! buffered path for good, with the same bytes written. [`DirectWriter`] is a sequential
//! [`Write`] on top of it (an aligned buffer written whole), for writers that only
//! stream, such as the kernel's wdiff writers.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use walb_device::dio::DIO_ALIGN;

/// Direct IO on a file being written (see the module documentation).
pub(crate) struct DirectIo {
    flags: nix::fcntl::OFlag,
    /// Still direct (cleared for good when the file system refuses an aligned write).
    on: bool,
    /// An aligned staging buffer (for data that is not aligned in memory).
    buf: Vec<u8>,
}

impl DirectIo {
    /// Sets `O_DIRECT` on `f`'s description; `None` when the file system refuses it.
    pub(crate) fn new(f: &File) -> Option<DirectIo> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(f, FcntlArg::F_GETFL).ok()?);
        fcntl(f, FcntlArg::F_SETFL(flags | OFlag::O_DIRECT)).ok()?;
        Some(DirectIo {
            flags,
            on: true,
            buf: Vec::new(),
        })
    }

    /// Whether aligned writes still go around the page cache.
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    fn set(&self, f: &File, direct: bool) -> std::io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let fl = if direct {
            self.flags | OFlag::O_DIRECT
        } else {
            self.flags
        };
        fcntl(f, FcntlArg::F_SETFL(fl))
            .map(|_| ())
            .map_err(std::io::Error::from)
    }

    /// Writes all of `data` at `off`: directly when both are aligned (staged through an
    /// aligned buffer when `data` is not aligned in memory), else through the page cache.
    pub(crate) fn write_at(&mut self, f: &File, data: &[u8], off: u64) -> std::io::Result<()> {
        let a = DIO_ALIGN as u64;
        if !self.on {
            return f.write_all_at(data, off);
        }
        if off % a != 0 || data.len() as u64 % a != 0 {
            self.set(f, false)?;
            let r = f.write_all_at(data, off);
            self.set(f, true)?;
            return r;
        }
        let r = if data.as_ptr().align_offset(DIO_ALIGN) == 0 {
            f.write_all_at(data, off)
        } else {
            if self.buf.len() < data.len() + DIO_ALIGN {
                self.buf = vec![0u8; data.len() + DIO_ALIGN];
            }
            let start = self.buf.as_ptr().align_offset(DIO_ALIGN);
            let staged = &mut self.buf[start..start + data.len()];
            staged.copy_from_slice(data);
            f.write_all_at(staged, off)
        };
        match r {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                // The file system wants a larger alignment, or has no direct IO: the page
                // cache from now on.
                self.set(f, false)?;
                self.on = false;
                f.write_all_at(data, off)
            }
            r => r,
        }
    }

    /// Back to buffered IO for what follows.
    pub(crate) fn end(self, f: &File) -> std::io::Result<()> {
        self.set(f, false)
    }
}

/// Size of [`DirectWriter`]'s buffer: one write per this many bytes.
const WRITER_BUF: usize = 1 << 20;

/// A sequential writer of a new file with direct IO where the file system has it (see
/// the module documentation). [`DirectWriter::finish`] writes the tail and gives the file
/// back in buffered mode, unsynced.
pub(crate) struct DirectWriter {
    file: File,
    direct: Option<DirectIo>,
    /// `WRITER_BUF + DIO_ALIGN` bytes; the buffer is the aligned window at `start`.
    mem: Vec<u8>,
    start: usize,
    /// Bytes in the buffer.
    len: usize,
    /// File offset of the buffer's first byte.
    off: u64,
}

impl DirectWriter {
    /// Writes `file` from its start.
    pub(crate) fn new(file: File) -> DirectWriter {
        let direct = DirectIo::new(&file);
        let mem = vec![0u8; WRITER_BUF + DIO_ALIGN];
        let start = mem.as_ptr().align_offset(DIO_ALIGN);
        DirectWriter {
            file,
            direct,
            mem,
            start,
            len: 0,
            off: 0,
        }
    }

    /// Whether the writes still go around the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.as_ref().is_some_and(DirectIo::is_on)
    }

    fn write_buffer(&mut self) -> std::io::Result<()> {
        let data = &self.mem[self.start..self.start + self.len];
        match self.direct.as_mut() {
            Some(d) => d.write_at(&self.file, data, self.off)?,
            None => self.file.write_all_at(data, self.off)?,
        }
        self.off += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// Writes what is buffered (the tail through the page cache when it is not aligned)
    /// and returns the file, in buffered mode, not synced.
    pub(crate) fn finish(mut self) -> std::io::Result<File> {
        self.write_buffer()?;
        if let Some(d) = self.direct.take() {
            d.end(&self.file)?;
        }
        Ok(self.file)
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(WRITER_BUF - self.len);
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == WRITER_BUF {
            self.write_buffer()?;
        }
        Ok(n)
    }

    /// Buffered bytes stay until the buffer is full or [`DirectWriter::finish`]: a write
    /// of a partial buffer would leave the next one unaligned.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags_direct(f: &File) -> bool {
        let fl = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        nix::fcntl::OFlag::from_bits_truncate(fl).contains(nix::fcntl::OFlag::O_DIRECT)
    }

    /// Bytes of every length class: writes smaller than the buffer, across it, larger than
    /// it, and an unaligned tail.
    fn write_pattern(w: &mut impl Write) -> Vec<u8> {
        let mut all = Vec::new();
        for (i, n) in [1usize, 4095, 3 << 20, 17, WRITER_BUF, 100_000, 513]
            .into_iter()
            .enumerate()
        {
            let piece: Vec<u8> = (0..n).map(|j| ((j * 7 + i * 13) % 251) as u8).collect();
            w.write_all(&piece).unwrap();
            all.extend_from_slice(&piece);
        }
        all
    }

    #[test]
    fn direct_writer_writes_every_byte_and_leaves_the_file_buffered() {
        // The temporary directory's file system, and /dev/shm (tmpfs: direct IO or the
        // fallback, whichever the kernel has): the same bytes either way.
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            dirs.push(d);
        }
        for d in &dirs {
            let p = d.path().join("w");
            let mut w = DirectWriter::new(File::create(&p).unwrap());
            let all = write_pattern(&mut w);
            let f = w.finish().unwrap();
            assert!(!flags_direct(&f));
            assert_eq!(std::fs::read(&p).unwrap(), all, "{}", p.display());
        }
    }

    #[test]
    fn direct_writer_falls_back_to_the_page_cache() {
        // A description that cannot take direct IO (the flag refused, as on a file system
        // without it): every write goes through the page cache.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w");
        let mut w = DirectWriter::new(File::create(&p).unwrap());
        if let Some(dio) = w.direct.take() {
            dio.end(&w.file).unwrap();
        }
        assert!(!w.is_direct());
        let all = write_pattern(&mut w);
        assert!(!flags_direct(&w.file));
        w.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), all);
    }
}
