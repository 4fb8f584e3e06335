//! walb-device: the WalB device runtime, one interface and three implementations.
//!
//! [`WalbDevice`] is what the storage daemon and `wdevc` use to drive a WalB device: the
//! seven lsids, set-oldest-lsid, checkpoints, log usage and capacity, overflow, reset-wal,
//! freeze/melt, resize, flush capability, a wait for new permanent logs, and read access
//! to the raw log device (the ring). It is implemented by
//!
//! - [`emu::Emulator`]: a userspace emulation of the kernel driver over two files or block
//!   devices (walb-driver.md §7.1), with the same on-disk format and lsid invariants;
//! - [`control::DeviceClient`]: a client of the control socket of an emulated device
//!   process (`wdevc create-wdev --emulate`);
//! - [`driver::DriverDevice`]: the real kernel driver through its ioctls and sysfs.
//!
//! [`open`] picks the backend of a device by name, as `wdevc` does: the emulated device
//! when its control socket exists, the kernel driver otherwise.
//!
//! This crate is the runtime half of the kernel: everything that talks to the operating
//! system (nix, FUSE, ioctls, O_DIRECT, threads and sockets). The formats, the diff engine
//! and the snapshot model it builds on are the pure crate `walb_kernel`.
//!
//! Modules:
//! - [`lsids`]: the pure state machine of the lsid bookkeeping, overflow, checkpoint and
//!   flush timers, and freeze (no IO, time is a parameter).
//! - [`emu`]: the emulator (write pipeline, redo at open, checkpoints) and its disks
//!   ([`emu::disk`]: files with fsync, and an in-memory disk that can simulate a crash).
//! - [`control`]: the control-socket protocol, server and client.
//! - [`driver`]: ioctl encodings and the driver backend.
//! - [`fuse`]: the FUSE file that exposes an emulated device to the kernel (for a loop
//!   device).
//! - [`dio`]: O_DIRECT reads of base images (the archive's scans), aligned buffers.
//! - [`image`]: image files and block devices as redo targets (fallocate, discard).
//! - [`sys`]: safe wrappers of the system calls `nix` does not wrap (BLKDISCARD,
//!   BLKPBSZGET, sync_file_range, FICLONE), for this crate, the daemons and `wdevc`.
//! - [`writeback`]: a file writer that starts write-back as it goes (large outputs that
//!   are synced at the end).
//!
//! # Unsafe code
//!
//! Denied at the crate root; allowed only in [`driver`] (the driver's ioctls), [`fuse`]
//! (taking ownership of a descriptor received over SCM_RIGHTS) and [`sys`]. Every unsafe
//! block there says why it is sound.
//!
//! Invariants kept by every implementation (walb-driver.md §2):
//! `oldest <= prev_written <= written <= permanent <= flush <= completed <= latest`;
//! data reaches the data device only after its log is permanent; log usage is
//! `latest - oldest` and capacity the ring size, in physical blocks.

#![deny(unsafe_code)]

pub mod control;
pub mod dio;
#[allow(unsafe_code)]
pub mod driver;
pub mod emu;
#[allow(unsafe_code)]
pub mod fuse;
pub mod image;
pub mod lsids;
#[allow(unsafe_code)]
pub mod sys;
pub mod writeback;

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use walb_kernel::error::{Error, IoContext, Result};

pub use lsids::LsidSet;

/// The version the emulator reports (that of walb-driver 1.5.1: `(1<<16)+(5<<8)+1`).
pub const WALB_VERSION: u32 = 0x0001_0501;

/// Formats a driver version number as `major.minor.patch`.
pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// Static facts about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device name (without the `walb/` prefix).
    pub name: String,
    /// Size of the WalB device in logical blocks (512 bytes).
    pub size_lb: u64,
    /// Physical block size of the log.
    pub pbs: u32,
    /// Path of the raw log device (read only), if known.
    pub ldev_path: Option<PathBuf>,
    /// Path of the data device, if known.
    pub ddev_path: Option<PathBuf>,
    /// Path where the device appears as a block device (`/dev/walb/NAME` or its link).
    pub wdev_path: Option<PathBuf>,
    /// True for the userspace emulator.
    pub emulated: bool,
}

/// The control interface of a WalB device (walb-driver.md §3.3 and §4).
///
/// All lsids and sizes of the log are in physical blocks; device sizes in logical blocks.
/// Failed preconditions are [`Error::Invalid`]; device failures are [`Error::Io`].
pub trait WalbDevice: Send + Sync {
    /// Name, size and paths.
    fn info(&self) -> Result<DeviceInfo>;
    /// The seven lsids.
    fn lsids(&self) -> Result<LsidSet>;
    /// Releases logs before `lsid`: requires `oldest <= lsid <= prev_written` and, when
    /// `lsid < permanent`, a valid pack header at `lsid`. Syncs the superblock.
    fn set_oldest_lsid(&self, lsid: u64) -> Result<()>;
    /// Takes a checkpoint now (superblock sync of `written`).
    fn take_checkpoint(&self) -> Result<()>;
    /// Checkpoint interval in milliseconds (0 = disabled).
    fn checkpoint_interval_ms(&self) -> Result<u32>;
    /// Sets the checkpoint interval (at most 86400000 ms; 0 disables).
    fn set_checkpoint_interval_ms(&self, ms: u32) -> Result<()>;
    /// `latest - oldest`.
    fn log_usage(&self) -> Result<u64> {
        let l = self.lsids()?;
        Ok(l.latest - l.oldest)
    }
    /// Ring buffer size.
    fn log_capacity(&self) -> Result<u64>;
    /// True once the log has overflowed (sticky until reset-wal).
    fn is_overflow(&self) -> Result<bool>;
    /// Clears the log (CLEAR_LOG): all lsids to 0, new uuid and salt, overflow cleared.
    fn reset_wal(&self) -> Result<()>;
    /// Freezes writes (they wait); `timeout_s > 0` melts automatically after that long.
    fn freeze(&self, timeout_s: u32) -> Result<()>;
    /// Melts a frozen device.
    fn melt(&self) -> Result<()>;
    /// True while frozen.
    fn is_frozen(&self) -> Result<bool>;
    /// Grows the device to `size_lb` logical blocks (0 = the data device's size).
    fn resize(&self, size_lb: u64) -> Result<()>;
    /// True when the log device honours flushes.
    fn is_flush_capable(&self) -> Result<bool>;
    /// Waits until `permanent > after` or `timeout` passes; returns the permanent lsid.
    ///
    /// Like a poller of the driver's sysfs `lsids`, an implementation is woken at once on
    /// the driver's notify edge (the first permanent log while `permanent == oldest`,
    /// walb-driver.md §4.2) and otherwise looks again at least once a second, so a return
    /// can lag an advance that is not an edge by up to a second.
    fn wait_for_permanent(&self, after: u64, timeout: Duration) -> Result<u64>;
    /// The driver (or emulated driver) version.
    fn version(&self) -> Result<u32> {
        Ok(WALB_VERSION)
    }
    /// Opens the raw log device read-only, for [`walb_kernel::ldev::LdevReader`], with no stale
    /// cached pages ([`open_fresh`]).
    fn open_ldev(&self) -> Result<File> {
        let info = self.info()?;
        let p = info.ldev_path.ok_or_else(|| {
            Error::Unsupported(format!(
                "device {} does not expose its log device",
                info.name
            ))
        })?;
        open_fresh(&p).ctx(|| format!("opening log device {}", p.display()))
    }
}

/// Opens a device or image read-only, first dropping the page cache of a block device:
/// what the driver writes to its log device, and a file system to the WalB device, goes
/// under that cache (as bios), and while another opener (the driver, a mount) keeps the
/// device open, pages cached by an earlier read stay — an earlier lap of the log ring, an
/// older superblock, the data of an earlier full backup. Dropping them at open makes every
/// block read at least as new as the open. A regular file (an emulated device's log) is
/// written through its own page cache, which is never stale: it is kept, or every read
/// would go back to the disk for what was just written.
pub fn open_fresh(path: &std::path::Path) -> std::io::Result<File> {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    use std::os::unix::fs::FileTypeExt;
    let f = File::open(path)?;
    if f.metadata()?.file_type().is_block_device() {
        // Clean pages are dropped; dirty ones (written through this cache, so the newest)
        // stay. Best effort: a failure leaves reads as a plain open would.
        let _ = posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    }
    Ok(f)
}

/// The device name in `wdev`: a name or a path (`/dev/walb/NAME`, any directory, or an
/// unprivileged emulator's FUSE file `DIR/NAME.mnt/wdev`), checked with [`check_name`].
pub fn name_of(wdev: &str) -> Result<String> {
    let path = std::path::Path::new(wdev);
    let bad = || Error::Invalid(format!("{wdev:?} is not a device name or path"));
    let mut name = path.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
    // An unprivileged emulator's device is its FUSE file, `<dir>/NAME.mnt/wdev`.
    if name == fuse::FILE_NAME {
        if let Some(n) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".mnt"))
        {
            name = n;
        }
    }
    check_name(name)?;
    Ok(name.to_string())
}

/// Opens the device `wdev` (a name or a path `/dev/walb/NAME`) on whichever backend has
/// it: the emulated device process when its control socket
/// ([`control::socket_path`]) exists, else the kernel driver's `/dev/walb/NAME`.
///
/// A bad name is [`Error::Invalid`]; a device that neither backend has is [`Error::Io`].
pub fn open(wdev: &str) -> Result<Box<dyn WalbDevice>> {
    let name = name_of(wdev)?;
    let sock = control::socket_path(&name);
    if sock.exists() {
        return Ok(Box::new(control::DeviceClient::connect_name(&name)?));
    }
    match driver::DriverDevice::open(&name) {
        Ok(d) => Ok(Box::new(d)),
        Err(Error::Io { context, cause }) => Err(Error::io(
            format!(
                "no emulated device {name} (socket {} absent) and no driver device ({context})",
                sock.display()
            ),
            cause,
        )),
        Err(e) => Err(e),
    }
}

/// Checks the `NAME` of a WalB device: 1 to 25 bytes of `[A-Za-z0-9_.-]`, not `.`/`..`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 25
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "device name {name:?} must be 1 to 25 characters of letters, digits, '_', '-', '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_names_links_and_fuse_files() {
        assert_eq!(name_of("vol0").unwrap(), "vol0");
        assert_eq!(name_of("/dev/walb/vol0").unwrap(), "vol0");
        assert_eq!(
            name_of("/run/user/1000/walb-emu/vol0.mnt/wdev").unwrap(),
            "vol0"
        );
        // A device really named "wdev" still works.
        assert_eq!(name_of("/dev/walb/wdev").unwrap(), "wdev");
        assert!(matches!(
            name_of("/x/bad name.mnt/wdev"),
            Err(Error::Invalid(_))
        ));
        assert!(name_of("/").is_err());
    }
}
