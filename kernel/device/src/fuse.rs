//! The emulated device as one file in a FUSE mount (pure Rust, no libfuse).
//!
//! The mount holds a single regular file, [`FILE_NAME`], whose bytes are the WalB device:
//! reads and writes go to the [`Emulator`], `fsync` is a flush (the loop driver turns
//! block-layer flushes into `fsync` of its backing file), and `fallocate` punching a hole
//! or zeroing a range is a discard. The file is opened in direct-IO mode so that the kernel
//! page cache never hides a write from the log. A loop device on this file gives the
//! emulated WalB device a block device that `mkfs` and `mount` accept.

use std::ffi::OsStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, KernelConfig,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};
use tracing::debug;

use crate::emu::Emulator;
use walb_kernel::error::{Error, IoContext, Result};

/// Name of the device file in the mount.
pub const FILE_NAME: &str = "wdev";
const FILE_INO: u64 = 2;
const TTL: Duration = Duration::from_secs(0);

/// The FUSE file system of one emulated device.
pub struct WdevFs {
    emu: Arc<Emulator>,
    uid: u32,
    gid: u32,
}

fn errno(e: &Error) -> Errno {
    match e {
        Error::Invalid(_) => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

impl WdevFs {
    /// A file system serving `emu`.
    pub fn new(emu: Arc<Emulator>) -> WdevFs {
        WdevFs {
            emu,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let size = if ino == FILE_INO {
            self.emu.size_bytes()
        } else {
            0
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size / 512,
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: if ino == FILE_INO {
                FileType::RegularFile
            } else {
                FileType::Directory
            },
            perm: if ino == FILE_INO { 0o600 } else { 0o755 },
            nlink: if ino == FILE_INO { 1 } else { 2 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: self.emu.pbs().get(),
        }
    }

    /// Zeroes `[off, off+len)`: a discard of the aligned part, zero writes at the edges.
    fn zero_range(&self, off: u64, len: u64) -> Result<()> {
        let end = off.saturating_add(len).min(self.emu.size_bytes());
        if off >= end {
            return Ok(());
        }
        let a = off.next_multiple_of(512);
        let b = end / 512 * 512;
        if a < b {
            self.emu.discard(a, b - a)?;
        }
        for (s, e) in [(off, a.min(end)), (b.max(a), end)] {
            if s < e {
                let base = s / 512 * 512;
                let mut blk = vec![0u8; 512];
                self.emu.read(base, &mut blk)?;
                blk[(s - base) as usize..(e - base) as usize].fill(0);
                self.emu.write(base, &blk)?;
            }
        }
        Ok(())
    }
}

impl Filesystem for WdevFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if u64::from(parent) == 1 && name == FILE_NAME {
            reply.entry(&TTL, &self.attr(FILE_INO), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match u64::from(ino) {
            1 | FILE_INO => reply.attr(&TTL, &self.attr(ino.into())),
            _ => reply.error(Errno::ENOENT),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if size.is_some_and(|s| s != self.emu.size_bytes()) {
            // A block device's size changes only through resize.
            reply.error(Errno::EINVAL);
            return;
        }
        reply.attr(&TTL, &self.attr(ino.into()));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if u64::from(ino) != FILE_INO {
            reply.error(Errno::EACCES);
            return;
        }
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let end = offset
            .saturating_add(size.into())
            .min(self.emu.size_bytes());
        if offset >= end {
            reply.data(&[]);
            return;
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        match self.emu.read(offset, &mut buf) {
            Ok(()) => reply.data(&buf),
            Err(e) => {
                debug!("fuse read at {offset}: {e}");
                reply.error(errno(&e));
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let sync = flags.0 & (nix::libc::O_SYNC | nix::libc::O_DSYNC) != 0;
        let r = if offset % 512 == 0 && data.len() % 512 == 0 {
            if sync {
                self.emu.write_fua(offset, data)
            } else {
                self.emu.write(offset, data)
            }
        } else {
            // Unaligned (not from a loop device): read-modify-write whole blocks.
            let s = offset / 512 * 512;
            let e = (offset + data.len() as u64).next_multiple_of(512);
            let mut buf = vec![0u8; (e - s) as usize];
            self.emu.read(s, &mut buf).and_then(|_| {
                buf[(offset - s) as usize..][..data.len()].copy_from_slice(data);
                self.emu.write(s, &buf)
            })
        };
        match r {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => {
                debug!("fuse write at {offset}: {e}");
                reply.error(errno(&e));
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        match self.emu.flush() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        use nix::libc::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE};
        let m = mode & !FALLOC_FL_KEEP_SIZE;
        let r = if m == FALLOC_FL_PUNCH_HOLE || m == FALLOC_FL_ZERO_RANGE {
            self.zero_range(offset, length)
        } else if m == 0 {
            Ok(())
        } else {
            reply.error(Errno::EOPNOTSUPP);
            return;
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if u64::from(ino) != 1 {
            reply.error(Errno::ENOENT);
            return;
        }
        let entries = [
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted device file; unmounted by [`FuseMount::unmount`] or when dropped.
pub struct FuseMount {
    session: Option<fuser::BackgroundSession>,
    /// Set for a user's mount (made by `fusermount3`, unmounted by it too).
    user_mount: Option<PathBuf>,
}

impl FuseMount {
    /// Unmounts the file and waits for the serving threads to end.
    pub fn unmount(mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match self.user_mount.take() {
            Some(m) => {
                fusermount_unmount(&m)?;
                session.join()
            }
            None => session.umount_and_join(),
        }
        .ctx(|| "unmounting the FUSE device file".to_string())
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if let Some(m) = self.user_mount.take() {
            if self.session.is_some() {
                let _ = fusermount_unmount(&m);
            }
        }
    }
}

/// The mount helper of unprivileged users.
const FUSERMOUNT: &str = "fusermount3";

fn fusermount_bin() -> std::ffi::OsString {
    std::env::var_os("FUSERMOUNT_PATH").unwrap_or_else(|| FUSERMOUNT.into())
}

fn fusermount_unmount(mountpoint: &Path) -> Result<()> {
    let out = Command::new(fusermount_bin())
        .args(["-u", "-z", "--"])
        .arg(mountpoint)
        .output()
        .ctx(|| format!("running {FUSERMOUNT} -u"))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("unmounting {}", mountpoint.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(())
}

/// Mounts through the setuid `fusermount3` (what libfuse does for users): it opens
/// `/dev/fuse`, mounts, and hands the descriptor back over a socket pair.
fn fusermount_mount(mountpoint: &Path, options: &str) -> Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let ctx = || format!("mounting {} with {FUSERMOUNT}", mountpoint.display());
    let (ours, theirs) = UnixStream::pair().ctx(ctx)?;
    // The helper finds its end of the pair by number: keep it open across exec.
    fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| Error::io(ctx(), e.into()))?;
    let child = Command::new(fusermount_bin())
        .args(["-o", options, "--"])
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| format!("running {FUSERMOUNT} (package fuse3)"))?;
    drop(theirs);
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let fd = match recvmsg::<()>(
        ours.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    ) {
        Ok(msg) => msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
        }),
        Err(_) => None,
    };
    let out = child.wait_with_output().ctx(ctx)?;
    match fd {
        // SAFETY: the descriptor was just received with SCM_RIGHTS: it is open and ours.
        Some(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        None => Err(Error::io(
            ctx(),
            std::io::Error::other(format!(
                "{FUSERMOUNT} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        )),
    }
}

/// Mounts the device file of `emu` at `mountpoint` (a directory), served by `threads`
/// threads. Root mounts directly; other users mount through the setuid `fusermount3`
/// (package fuse3; `$FUSERMOUNT_PATH` names another), and the file then serves its owner
/// only (`allow_root` would need `user_allow_other` in /etc/fuse.conf; root's mount also
/// serves root, whose loop driver sends the requests).
pub fn mount(emu: Arc<Emulator>, mountpoint: &Path, threads: usize) -> Result<FuseMount> {
    let fsname = format!("walb-emu:{}", emu.name());
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(fsname.clone()),
        MountOption::Subtype("walb".into()),
        MountOption::NoAtime,
        MountOption::NoExec,
        MountOption::NoSuid,
    ];
    cfg.n_threads = Some(threads.max(1));
    let ctx = || format!("mounting the FUSE device file at {}", mountpoint.display());
    if nix::unistd::geteuid().is_root() {
        cfg.acl = SessionACL::RootAndOwner;
        let session = fuser::spawn_mount(WdevFs::new(emu), mountpoint, &cfg).ctx(ctx)?;
        return Ok(FuseMount {
            session: Some(session),
            user_mount: None,
        });
    }
    cfg.acl = SessionACL::Owner;
    // fsname may not hold a comma (the option separator of the helper).
    let opts = format!(
        "fsname={},subtype=walb,noatime,noexec,nosuid",
        fsname.replace(',', "_")
    );
    let fd = fusermount_mount(mountpoint, &opts)?;
    let acl = cfg.acl;
    let started = fuser::Session::from_fd(WdevFs::new(emu), fd, acl, cfg)
        .and_then(|s| s.spawn())
        .ctx(ctx);
    match started {
        Ok(session) => Ok(FuseMount {
            session: Some(session),
            user_mount: Some(mountpoint.to_path_buf()),
        }),
        Err(e) => {
            let _ = fusermount_unmount(mountpoint);
            Err(e)
        }
    }
}
