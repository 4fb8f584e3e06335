//! A file writer that starts the write-back of what it wrote as it goes.
//!
//! A tool that writes a large file and then syncs it (a converted or merged wdiff) would
//! otherwise leave all of it dirty in the page cache until the final sync, which then waits
//! for the whole file: the disk idles while the data is computed, then the computation is
//! done and waits for the disk. [`WritebackFile`] asks the kernel to start writing every
//! [`WRITEBACK_STEP`] bytes as soon as they are written (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE`, which does not wait for the disk), so that the disk writes while
//! the rest is computed and the final sync waits for the tail only. Durability is unchanged:
//! only the final sync promises it.

use std::fs::File;
use std::io::{self, Seek, Write};

use crate::sys::start_writeback;

/// Bytes written between two write-back requests.
pub const WRITEBACK_STEP: u64 = 16 << 20;

/// A [`File`] whose written bytes are handed to write-back every [`WRITEBACK_STEP`] bytes.
#[derive(Debug)]
pub struct WritebackFile {
    file: File,
    /// File offset of the first byte written through this writer.
    base: u64,
    /// Bytes written through this writer.
    written: u64,
    /// Bytes whose write-back was requested.
    started: u64,
}

impl WritebackFile {
    /// Wraps `file`, whose writes continue at its current position.
    pub fn new(mut file: File) -> io::Result<WritebackFile> {
        let base = file.stream_position()?;
        Ok(WritebackFile {
            file,
            base,
            written: 0,
            started: 0,
        })
    }

    /// The file.
    pub fn get_ref(&self) -> &File {
        &self.file
    }

    /// Gives the file back.
    pub fn into_inner(self) -> File {
        self.file
    }

    fn advance(&mut self, n: usize) {
        self.written += n as u64;
        let pending = self.written - self.started;
        if pending >= WRITEBACK_STEP {
            // A hint: a file that cannot take it (not a regular file) is written all the same.
            if let Err(e) = start_writeback(&self.file, self.base + self.started, pending) {
                tracing::debug!(error = %e, "starting write-back failed");
            }
            self.started = self.written;
        }
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.advance(n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.file.write_vectored(bufs)?;
        self.advance(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_land_where_they_would_without_it() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"head").unwrap();
        let mut w = WritebackFile::new(f).unwrap();
        let data: Vec<u8> = (0..(WRITEBACK_STEP as usize * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        for c in data.chunks(1 << 20) {
            w.write_all(c).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(
            w.started,
            WRITEBACK_STEP * 2,
            "two steps handed to write-back"
        );
        let mut f = w.into_inner();
        f.rewind().unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..4], b"head");
        assert!(got[4..] == data[..]);
    }
}
