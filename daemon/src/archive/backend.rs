//! Where an archive keeps its images: the [`ImageBackend`] trait and the file backend.
//!
//! An archive volume has one *base image* (the image of the volume at the base snapshot,
//! written by a full backup) and any number of *restored images* (the image at a clean
//! snapshot, materialized by `restore`). The daemon never touches image storage except
//! through [`ImageBackend`], which hands out plain [`File`]s to read and write: an image
//! file here, a logical volume (a block device) in an LVM backend, so such a backend can be
//! added without changing the callers.
//!
//! Every image appears whole or not at all: a new base image and a restored image are
//! written under a temporary name and renamed (`commit_*`) only when complete; a daemon
//! killed half-way finds the temporary name at start and [`ImageBackend::recover`] removes
//! it.
//!
//! The file backend ([`FileBackend`]) keeps, per volume directory:
//! - `base.img`: the sparse base image (`base.img.tmp` while a full backup writes it);
//! - `restored/<gid>.img`: restored images (`restored/<gid>.img.tmp` while written). A
//!   restore starts from a reflink clone of the base (`FICLONE`, XFS and btrfs: instant,
//!   no space used) and falls back to a sparse copy (`SEEK_DATA`/`SEEK_HOLE`, holes kept,
//!   zero blocks not written) elsewhere;
//! - with `--restore-loop` (root only), each restored image is attached to a loop device
//!   (`losetup --find --show`) and its path is the loop device; `losetup -j` finds it
//!   again after a daemon restart.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use walb_kernel::block::{is_all_zero, LBS};

use crate::persist;

/// Name of the base image file in a volume directory.
pub const BASE_IMAGE: &str = "base.img";
/// Directory of restored images in a volume directory.
pub const RESTORED_DIR: &str = "restored";
/// Suffix of a restored image file.
pub const IMAGE_SUFFIX: &str = ".img";

/// How a restored image was started from the base image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloneMethod {
    /// A reflink clone (shares the base's extents; copy-on-write).
    Reflink,
    /// A sparse copy (only the data regions of the base, zero blocks skipped).
    SparseCopy,
}

impl fmt::Display for CloneMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloneMethod::Reflink => "reflink",
            CloneMethod::SparseCopy => "sparse copy",
        })
    }
}

/// A restored image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredImage {
    /// The snapshot's gid.
    pub gid: u64,
    /// Where to use it (a loop device when attached, else the image file).
    pub path: PathBuf,
}

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An external command failed.
    #[error("{cmd}: {detail}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its error output or status.
        detail: String,
    },
    /// The image does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// A durable metadata operation failed.
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackendError + 'a {
    move |source| BackendError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`ImageBackend::recover`] did at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Temporary images removed.
    pub removed_temps: usize,
    /// Restored images attached again (loop devices).
    pub reattached: usize,
}

/// Image storage of an archive (see the module documentation). Methods block; call them
/// from blocking threads when they may take long (clone, remove).
pub trait ImageBackend: Send + Sync + fmt::Debug + 'static {
    /// A short name for status lines (`file`).
    fn kind(&self) -> &'static str;

    /// The base image's size in logical blocks, `None` if there is no base image.
    fn base_size_lb(&self, vol: &str) -> Result<Option<u64>, BackendError>;

    /// The base image, open for reading.
    fn open_base(&self, vol: &str) -> Result<File, BackendError>;

    /// The base image, open for writing in place (apply: the diffs it writes are
    /// idempotent, and the base's meta state says which are being applied).
    fn open_base_rw(&self, vol: &str) -> Result<File, BackendError>;

    /// Starts a new base image of `size_lb` logical blocks reading as zeros, not yet
    /// visible as the base; replaces an unfinished one.
    fn create_base(&self, vol: &str, size_lb: u64) -> Result<File, BackendError>;

    /// Keeps the unfinished image of [`ImageBackend::create_base`] for a copy resumed
    /// later, out of the temporaries a restart removes.
    fn keep_partial(&self, vol: &str) -> Result<(), BackendError>;

    /// The unfinished image (kept by [`ImageBackend::keep_partial`], or still being
    /// written), open for writing as [`ImageBackend::create_base`]'s, if it exists with
    /// `size_lb` blocks (a copy resumed where it broke); `None` otherwise.
    fn resume_base(&self, vol: &str, size_lb: u64) -> Result<Option<File>, BackendError>;

    /// Makes the image of [`ImageBackend::create_base`] the base image (synced, atomic).
    fn commit_base(&self, vol: &str) -> Result<(), BackendError>;

    /// Drops the image of [`ImageBackend::create_base`] and a kept unfinished one (absent
    /// is fine).
    fn abort_base(&self, vol: &str) -> Result<(), BackendError>;

    /// Grows the base image to `size_lb` (never shrinks).
    fn grow_base(&self, vol: &str, size_lb: u64) -> Result<(), BackendError>;

    /// Removes the base image (absent is fine).
    fn remove_base(&self, vol: &str) -> Result<(), BackendError>;

    /// Starts the restored image of `gid` as a copy of the base image, not yet visible as
    /// restored; replaces an unfinished one. Returns it open for writing, and how it was
    /// made.
    fn begin_restore(&self, vol: &str, gid: u64) -> Result<(File, CloneMethod), BackendError>;

    /// Makes the image of [`ImageBackend::begin_restore`] the restored image of `gid`
    /// (synced, atomic) and returns where to use it.
    fn commit_restore(&self, vol: &str, gid: u64) -> Result<PathBuf, BackendError>;

    /// Drops the image of [`ImageBackend::begin_restore`] (absent is fine).
    fn abort_restore(&self, vol: &str, gid: u64) -> Result<(), BackendError>;

    /// The restored images, by gid.
    fn restored(&self, vol: &str) -> Result<Vec<RestoredImage>, BackendError>;

    /// Deletes the restored image of `gid`; `false` if there was none.
    fn remove_restored(&self, vol: &str, gid: u64) -> Result<bool, BackendError>;

    /// Deletes every image of the volume (base, restored, unfinished).
    fn remove_all(&self, vol: &str) -> Result<(), BackendError>;

    /// At start: removes unfinished images and makes restored images usable again.
    fn recover(&self, vol: &str) -> Result<Recovered, BackendError>;
}

/// Images as files in the volume directories (see the module documentation).
#[derive(Debug, Clone)]
pub struct FileBackend {
    root: PathBuf,
    loop_attach: bool,
}

impl FileBackend {
    /// Images under `root/<vol>/`; restored images attached to loop devices when
    /// `loop_attach` (needs root).
    pub fn new(root: &Path, loop_attach: bool) -> FileBackend {
        FileBackend {
            root: root.to_path_buf(),
            loop_attach,
        }
    }

    /// Whether restored images are attached to loop devices.
    pub fn loop_attach(&self) -> bool {
        self.loop_attach
    }

    fn vol_dir(&self, vol: &str) -> PathBuf {
        self.root.join(vol)
    }

    /// The base image file of `vol`.
    pub fn base_path(&self, vol: &str) -> PathBuf {
        self.vol_dir(vol).join(BASE_IMAGE)
    }

    /// Where an unfinished copy of the base waits to be resumed.
    fn partial_path(&self, vol: &str) -> PathBuf {
        let mut s = self.base_path(vol).into_os_string();
        s.push(".partial");
        PathBuf::from(s)
    }

    fn open_base_file(&self, vol: &str, write: bool) -> Result<File, BackendError> {
        let p = self.base_path(vol);
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(&p)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    BackendError::Missing(format!("base image of volume {vol}"))
                } else {
                    io_err("opening", &p)(e)
                }
            })
    }

    fn restored_dir(&self, vol: &str) -> PathBuf {
        self.vol_dir(vol).join(RESTORED_DIR)
    }

    /// The restored image file of `gid`.
    pub fn restored_path(&self, vol: &str, gid: u64) -> PathBuf {
        self.restored_dir(vol).join(format!("{gid}{IMAGE_SUFFIX}"))
    }

    fn present(&self, file: &Path) -> PathBuf {
        if self.loop_attach {
            if let Some(dev) = loop_devices_of(file).into_iter().next() {
                return dev;
            }
        }
        file.to_path_buf()
    }

    fn restored_gids(&self, vol: &str) -> Result<Vec<u64>, BackendError> {
        let dir = self.restored_dir(vol);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listing", &dir)(e)),
        };
        let mut gids = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err("listing", &dir))?;
            let name = ent.file_name();
            if let Some(gid) = name
                .to_str()
                .and_then(|n| n.strip_suffix(IMAGE_SUFFIX))
                .and_then(|g| g.parse::<u64>().ok())
            {
                gids.push(gid);
            }
        }
        gids.sort_unstable();
        Ok(gids)
    }
}

fn remove_file_durably(path: &Path) -> Result<bool, BackendError> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(d) = path.parent() {
                persist::sync_dir(d)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

/// Syncs `tmp`, renames it to `dst` and syncs the directory.
fn commit_file(tmp: &Path, dst: &Path) -> Result<(), BackendError> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", tmp))?;
    fs::rename(tmp, dst).map_err(io_err("renaming into place", dst))?;
    if let Some(d) = dst.parent() {
        persist::sync_dir(d)?;
    }
    Ok(())
}

fn new_sparse(path: &Path, bytes: u64) -> Result<File, BackendError> {
    let f = persist::create_file(path).map_err(io_err("creating", path))?;
    f.set_len(bytes).map_err(io_err("sizing", path))?;
    Ok(f)
}

impl ImageBackend for FileBackend {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn base_size_lb(&self, vol: &str) -> Result<Option<u64>, BackendError> {
        let p = self.base_path(vol);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len() / u64::from(LBS))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspecting", &p)(e)),
        }
    }

    fn open_base(&self, vol: &str) -> Result<File, BackendError> {
        self.open_base_file(vol, false)
    }

    fn open_base_rw(&self, vol: &str) -> Result<File, BackendError> {
        self.open_base_file(vol, true)
    }

    fn create_base(&self, vol: &str, size_lb: u64) -> Result<File, BackendError> {
        let tmp = persist::tmp_path(&self.base_path(vol));
        new_sparse(&tmp, size_lb * u64::from(LBS))
    }

    fn keep_partial(&self, vol: &str) -> Result<(), BackendError> {
        let tmp = persist::tmp_path(&self.base_path(vol));
        commit_file(&tmp, &self.partial_path(vol))
    }

    fn resume_base(&self, vol: &str, size_lb: u64) -> Result<Option<File>, BackendError> {
        let tmp = persist::tmp_path(&self.base_path(vol));
        let partial = self.partial_path(vol);
        if partial.exists() {
            commit_file(&partial, &tmp)?;
        }
        match fs::metadata(&tmp) {
            Ok(m) if m.len() == size_lb * u64::from(LBS) => OpenOptions::new()
                .read(true)
                .write(true)
                .open(&tmp)
                .map(Some)
                .map_err(io_err("opening", &tmp)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspecting", &tmp)(e)),
        }
    }

    fn commit_base(&self, vol: &str) -> Result<(), BackendError> {
        let dst = self.base_path(vol);
        commit_file(&persist::tmp_path(&dst), &dst)
    }

    fn abort_base(&self, vol: &str) -> Result<(), BackendError> {
        remove_file_durably(&self.partial_path(vol))?;
        remove_file_durably(&persist::tmp_path(&self.base_path(vol))).map(|_| ())
    }

    fn grow_base(&self, vol: &str, size_lb: u64) -> Result<(), BackendError> {
        let p = self.base_path(vol);
        let f = OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(io_err("opening", &p))?;
        let want = size_lb * u64::from(LBS);
        let have = f.metadata().map_err(io_err("inspecting", &p))?.len();
        if want > have {
            f.set_len(want).map_err(io_err("growing", &p))?;
            f.sync_all().map_err(io_err("syncing", &p))?;
            info!(
                vol,
                from_lb = have / u64::from(LBS),
                to_lb = size_lb,
                "base image grown"
            );
        }
        Ok(())
    }

    fn remove_base(&self, vol: &str) -> Result<(), BackendError> {
        remove_file_durably(&self.base_path(vol)).map(|_| ())
    }

    fn begin_restore(&self, vol: &str, gid: u64) -> Result<(File, CloneMethod), BackendError> {
        let dir = self.restored_dir(vol);
        if !dir.exists() {
            persist::create_dir(&dir)?;
        }
        let base = self.open_base(vol)?;
        let tmp = persist::tmp_path(&self.restored_path(vol, gid));
        let (f, how) = clone_file(&base, &tmp)?;
        debug!(vol, gid, method = %how, "restore image started");
        Ok((f, how))
    }

    fn commit_restore(&self, vol: &str, gid: u64) -> Result<PathBuf, BackendError> {
        let dst = self.restored_path(vol, gid);
        commit_file(&persist::tmp_path(&dst), &dst)?;
        if self.loop_attach {
            let dev = attach_loop(&dst)?;
            info!(vol, gid, dev = %dev.display(), "restored image attached");
            return Ok(dev);
        }
        Ok(dst)
    }

    fn abort_restore(&self, vol: &str, gid: u64) -> Result<(), BackendError> {
        remove_file_durably(&persist::tmp_path(&self.restored_path(vol, gid))).map(|_| ())
    }

    fn restored(&self, vol: &str) -> Result<Vec<RestoredImage>, BackendError> {
        Ok(self
            .restored_gids(vol)?
            .into_iter()
            .map(|gid| RestoredImage {
                gid,
                path: self.present(&self.restored_path(vol, gid)),
            })
            .collect())
    }

    fn remove_restored(&self, vol: &str, gid: u64) -> Result<bool, BackendError> {
        let p = self.restored_path(vol, gid);
        if !p.exists() {
            return Ok(false);
        }
        for dev in loop_devices_of(&p) {
            detach_loop(&dev)?;
        }
        remove_file_durably(&p)
    }

    fn remove_all(&self, vol: &str) -> Result<(), BackendError> {
        for gid in self.restored_gids(vol)? {
            self.remove_restored(vol, gid)?;
        }
        let rdir = self.restored_dir(vol);
        persist::remove_temp_files(&rdir)?;
        persist::remove_dir(&rdir)?;
        self.abort_base(vol)?;
        self.remove_base(vol)
    }

    fn recover(&self, vol: &str) -> Result<Recovered, BackendError> {
        let mut r = Recovered::default();
        let vdir = self.vol_dir(vol);
        // An image being written when the daemon stopped (a kept unfinished copy, under
        // its own name, stays for a resumed replication).
        let base_tmp = persist::tmp_path(&self.base_path(vol));
        if remove_file_durably(&base_tmp)? {
            r.removed_temps += 1;
        }
        r.removed_temps += persist::remove_temp_files(&self.restored_dir(vol))?;
        if self.loop_attach {
            for gid in self.restored_gids(vol)? {
                let p = self.restored_path(vol, gid);
                if loop_devices_of(&p).is_empty() {
                    match attach_loop(&p) {
                        Ok(dev) => {
                            info!(vol, gid, dev = %dev.display(), "restored image attached again");
                            r.reattached += 1;
                        }
                        Err(e) => warn!(vol, gid, "cannot attach restored image: {e}"),
                    }
                }
            }
        }
        debug!(vol, dir = %vdir.display(), ?r, "images recovered");
        Ok(r)
    }
}

// ------------------------------------------------------------------------------------
// Cloning

/// Makes `dst` a copy of `src`: a reflink clone where the file system supports it, else
/// a sparse copy. Returns `dst` open for reading and writing.
pub fn clone_file(src: &File, dst: &Path) -> Result<(File, CloneMethod), BackendError> {
    let out = persist::create_file(dst).map_err(io_err("creating", dst))?;
    let Err(why) = walb_device::sys::reflink(&out, src) else {
        return Ok((out, CloneMethod::Reflink));
    };
    debug!(dst = %dst.display(), "no reflink ({why}); sparse copy");
    let size = src.metadata().map_err(io_err("inspecting", dst))?.len();
    out.set_len(size).map_err(io_err("sizing", dst))?;
    sparse_copy(src, &out, size).map_err(io_err("copying the base image to", dst))?;
    Ok((out, CloneMethod::SparseCopy))
}

const COPY_CHUNK: usize = 1 << 20;
const ZERO_GRAIN: usize = 64 << 10;

/// Copies the data regions of `src` (per `SEEK_DATA`/`SEEK_HOLE`) into `dst`, which must
/// read as zeros and have the size `size`; blocks of zeros are not written.
pub fn sparse_copy(src: &File, dst: &File, size: u64) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut pos = 0u64;
    while pos < size {
        let (start, end) = match data_region(src, pos, size)? {
            Some(r) => r,
            None => break,
        };
        let mut off = start;
        while off < end {
            let n = ((end - off) as usize).min(COPY_CHUNK);
            src.read_exact_at(&mut buf[..n], off)?;
            write_nonzero(dst, &buf[..n], off)?;
            off += n as u64;
        }
        pos = end;
    }
    Ok(())
}

/// Writes the pieces of `data` (at `off`) that are not all zero, in `ZERO_GRAIN` steps
/// aligned to the start of `data`; zero pieces are skipped (the target reads as zeros).
pub fn write_nonzero(dst: &File, data: &[u8], off: u64) -> io::Result<()> {
    for_nonzero(data, |s, e| dst.write_all_at(&data[s..e], off + s as u64))
}

/// Calls `f(start, end)` for each run of `data` that is not all zero, found in
/// `ZERO_GRAIN` steps aligned to the start of `data`.
pub fn for_nonzero(
    data: &[u8],
    mut f: impl FnMut(usize, usize) -> io::Result<()>,
) -> io::Result<()> {
    let mut run: Option<usize> = None;
    let mut i = 0;
    while i < data.len() {
        let end = (i + ZERO_GRAIN).min(data.len());
        let zero = is_all_zero(&data[i..end]);
        match (zero, run) {
            (false, None) => run = Some(i),
            (true, Some(s)) => {
                f(s, i)?;
                run = None;
            }
            _ => {}
        }
        i = end;
    }
    if let Some(s) = run {
        f(s, data.len())?;
    }
    Ok(())
}

/// The next data region `[start, end)` at or after `pos`, `None` past the last one.
/// Without `SEEK_DATA` support the rest of the file is one region.
fn data_region(f: &File, pos: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    use nix::errno::Errno;
    use nix::unistd::{lseek, Whence};
    let to_i64 = |v: u64| i64::try_from(v).map_err(|_| io::Error::other("offset too large"));
    let start = match lseek(f, to_i64(pos)?, Whence::SeekData) {
        Ok(o) => o as u64,
        Err(Errno::ENXIO) => return Ok(None),
        Err(Errno::EINVAL | Errno::EOPNOTSUPP) => return Ok(Some((pos, size))),
        Err(e) => return Err(e.into()),
    };
    if start >= size {
        return Ok(None);
    }
    let end = match lseek(f, start as i64, Whence::SeekHole) {
        Ok(o) => (o as u64).min(size),
        Err(_) => size,
    };
    Ok(Some((start, end.max(start))))
}

// ------------------------------------------------------------------------------------
// Loop devices (util-linux losetup, as wdevc uses it)

fn run(cmd: &mut Command) -> Result<String, BackendError> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| BackendError::Command {
        cmd: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(BackendError::Command {
            cmd: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Attaches `file` to a free loop device; returns the device.
pub fn attach_loop(file: &Path) -> Result<PathBuf, BackendError> {
    let out = run(Command::new("losetup").args(["--find", "--show"]).arg(file))?;
    let dev = out.trim();
    if dev.is_empty() {
        return Err(BackendError::Command {
            cmd: format!("losetup --find --show {}", file.display()),
            detail: "printed no device".into(),
        });
    }
    Ok(PathBuf::from(dev))
}

/// The loop devices `file` is attached to (none if losetup is unavailable).
pub fn loop_devices_of(file: &Path) -> Vec<PathBuf> {
    match run(Command::new("losetup").arg("-j").arg(file)) {
        Ok(out) => out
            .lines()
            .filter_map(|l| l.split_once(':').map(|(dev, _)| PathBuf::from(dev.trim())))
            .filter(|d| !d.as_os_str().is_empty())
            .collect(),
        Err(e) => {
            debug!("{e}");
            Vec::new()
        }
    }
}

/// Detaches a loop device and waits (up to 5 s) until the driver released its file.
pub fn detach_loop(dev: &Path) -> Result<(), BackendError> {
    run(Command::new("losetup").arg("-d").arg(dev))?;
    if let Some(n) = dev.file_name().and_then(|n| n.to_str()) {
        let f = PathBuf::from(format!("/sys/block/{n}/loop/backing_file"));
        let t0 = Instant::now();
        while f.exists() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Whether the process may attach loop devices (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_nonzero_skips_zero_grains_and_keeps_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        let f = new_sparse(&p, 4 << 20).unwrap();
        let mut data = vec![0u8; 1 << 20];
        data[0] = 1;
        data[(512 << 10) + 7] = 2;
        data[(1 << 20) - 1] = 3;
        write_nonzero(&f, &data, 1 << 20).unwrap();
        f.sync_all().unwrap();
        let back = fs::read(&p).unwrap();
        assert_eq!(&back[1 << 20..2 << 20], &data[..]);
        assert!(back[..1 << 20].iter().all(|&b| b == 0));
        // Three 64 KiB grains were written, not the whole MiB.
        let used = f.metadata().unwrap().blocks() * 512;
        assert!(
            used <= 3 * ZERO_GRAIN as u64 + (64 << 10),
            "{used} bytes used"
        );
    }

    #[test]
    fn sparse_copy_keeps_holes_and_data() {
        let d = tempfile::tempdir().unwrap();
        let src_p = d.path().join("src");
        let src = new_sparse(&src_p, 8 << 20).unwrap();
        src.write_all_at(&[7u8; 4096], 1 << 20).unwrap();
        src.write_all_at(&[9u8; 8192], 6 << 20).unwrap();
        // A data region holding zeros is not copied as data either.
        src.write_all_at(&vec![0u8; 1 << 20], 3 << 20).unwrap();
        src.sync_all().unwrap();
        let (dst, how) = clone_file(&src, &d.path().join("dst")).unwrap();
        assert_eq!(
            fs::read(&src_p).unwrap(),
            fs::read(d.path().join("dst")).unwrap()
        );
        if how == CloneMethod::SparseCopy {
            let used = dst.metadata().unwrap().blocks() * 512;
            assert!(
                used <= 2 * ZERO_GRAIN as u64 + (64 << 10),
                "{used} bytes used"
            );
        }
    }

    #[test]
    fn restored_images_are_listed_by_gid_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let b = FileBackend::new(d.path(), false);
        fs::create_dir_all(d.path().join("v")).unwrap();
        assert_eq!(b.base_size_lb("v").unwrap(), None);
        let f = b.create_base("v", 16).unwrap();
        f.write_all_at(&[1u8; 512], 512).unwrap();
        assert_eq!(
            b.base_size_lb("v").unwrap(),
            None,
            "not visible before commit"
        );
        b.commit_base("v").unwrap();
        assert_eq!(b.base_size_lb("v").unwrap(), Some(16));
        for gid in [12, 3] {
            let (f, _) = b.begin_restore("v", gid).unwrap();
            f.write_all_at(&[gid as u8; 512], 0).unwrap();
            assert!(b.restored("v").unwrap().iter().all(|r| r.gid != gid));
            b.commit_restore("v", gid).unwrap();
        }
        let gids: Vec<u64> = b.restored("v").unwrap().iter().map(|r| r.gid).collect();
        assert_eq!(gids, [3, 12]);
        let img = fs::read(b.restored_path("v", 12)).unwrap();
        assert_eq!((img[0], img[512]), (12, 1));
        // An unfinished restore is removed at recovery.
        let _ = b.begin_restore("v", 20).unwrap();
        assert_eq!(b.recover("v").unwrap().removed_temps, 1);
        assert!(b.remove_restored("v", 3).unwrap());
        assert!(!b.remove_restored("v", 3).unwrap());
        b.remove_all("v").unwrap();
        assert!(b.restored("v").unwrap().is_empty());
        assert_eq!(b.base_size_lb("v").unwrap(), None);
    }
}
