//! The few system calls the safe APIs of `nix` and `std` do not wrap, as safe functions.
//!
//! This is one of the crate's three modules allowed `unsafe` (with [`crate::driver`] and
//! [`crate::fuse`]); each call here states what the kernel reads or writes through its
//! arguments, and what keeps them valid. The daemons and `wdevc` call these instead of
//! `libc` or `ioctl` directly, so that their crates can forbid unsafe code.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use nix::libc;
use walb_kernel::error::{Error, Result};

nix::ioctl_write_ptr_bad!(blkdiscard, 0x1277, [u64; 2]);
nix::ioctl_read_bad!(blkpbszget, 0x127b, std::ffi::c_uint);

/// Discards `[off, off + len)` of a block device (`BLKDISCARD`).
pub fn block_discard(file: &File, off: u64, len: u64) -> Result<()> {
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

/// The physical block size of a block device (`BLKPBSZGET`).
pub fn physical_block_size(file: &File) -> nix::Result<u32> {
    let mut v: std::ffi::c_uint = 0;
    // SAFETY: BLKPBSZGET writes one unsigned int through the pointer, which points to `v`.
    unsafe { blkpbszget(file.as_raw_fd(), &mut v) }?;
    Ok(v)
}

/// Starts the write-back of `[off, off + len)` of `f` without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`).
pub fn start_writeback(f: &File, off: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(off), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open
    // for as long as `f` is borrowed.
    let r = unsafe { libc::sync_file_range(f.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `dst` share the extents of `src` (`ioctl(FICLONE)`, a reflink copy); fails where
/// the file system cannot.
pub fn reflink(dst: &File, src: &File) -> io::Result<()> {
    // SAFETY: FICLONE takes the source file descriptor as its argument; both descriptors
    // are open for the duration of the call.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    fn file_with(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("temporary file");
        f.write_all(data).expect("write");
        f
    }

    #[test]
    fn block_calls_on_a_regular_file_fail_instead_of_answering() {
        // FileTarget and wdevc fall back (or report) on these errors: a regular file must
        // never yield a block size or a silent "discarded".
        let f = file_with(&[1u8; 4096]);
        assert_eq!(physical_block_size(&f), Err(nix::errno::Errno::ENOTTY));
        assert!(block_discard(&f, 0, 4096).is_err());
    }

    #[test]
    fn writeback_starts_on_a_file_and_refuses_offsets_beyond_i64() {
        let f = file_with(&[7u8; 8192]);
        start_writeback(&f, 0, 8192).expect("sync_file_range on a regular file");
        let e = start_writeback(&f, u64::MAX, 1).expect_err("offset beyond i64");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_reflink_copies_the_bytes_or_leaves_the_target_untouched() {
        let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let src = file_with(&data);
        let mut dst = tempfile::tempfile().expect("temporary file");
        match reflink(&dst, &src) {
            Ok(()) => {
                let mut got = Vec::new();
                dst.rewind().expect("rewind");
                dst.read_to_end(&mut got).expect("read");
                assert_eq!(got, data);
            }
            // tmpfs, ext4: no reflink; the caller copies instead.
            Err(_) => assert_eq!(dst.metadata().expect("metadata").len(), 0),
        }
    }
}
