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
