//! Durable small files: every piece of persistent daemon state goes through here.
//!
//! [`write_atomic`] writes a temporary file beside the target, fsyncs it, renames it over
//! the target and fsyncs the directory, so a daemon killed at any instant finds either the
//! old or the new content, never a mix. Temporary files end in [`TMP_SUFFIX`];
//! [`remove_temp_files`] deletes leftovers in the daemon's own directories at start.
//! [`BaseDir::lock`] takes an exclusive `flock` on the base directory so two daemons
//! never share one; [`BaseDir::scan`] tells its volume directories from what is not the
//! daemon's ([`voldir`]).
//!
//! Modes: everything a daemon creates is private to its user, whatever the umask it was
//! started with: directories [`dir_mode`] (0700), files [`file_mode`] (0600), or 0750 /
//! 0640 with `--group-access` ([`set_group_access`]). Files are created anew with their
//! mode ([`create_file`]: never through a link, never by truncating what was there),
//! directories with theirs ([`create_dir`]); a looser base directory is tightened at
//! start ([`BaseDir::lock`]).

pub mod voldir;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{Flock, FlockArg};
use tracing::warn;
use walb_wire::msg::{ErrorCode, WireError};

pub use voldir::{DirKind, Scan, VolRule};

/// Suffix of files being written.
pub const TMP_SUFFIX: &str = ".tmp";
/// Appended to a file's name until the file is durable: readers may use it meanwhile
/// (the proxy forwards a queued diff before its fsync), and a start deletes what a crash
/// left under such a name.
pub const UNSYNCED_SUFFIX: &str = ".unsynced";
/// Name of the lock file in a base directory.
pub const LOCK_FILE: &str = "daemon.lock";

/// An IO error naming the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct PersistError {
    /// What was being done (`writing`, `reading`).
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl PersistError {
    /// Whether this is a refusal to take over a directory the daemon did not create
    /// ([`voldir::NotOurs`]).
    pub fn is_not_ours(&self) -> bool {
        self.source
            .get_ref()
            .is_some_and(|e| e.is::<voldir::NotOurs>())
    }

    /// The wire code of this failure: `wrong-state` for a directory in the way, else
    /// `internal`.
    pub fn wire_code(&self) -> ErrorCode {
        if self.is_not_ours() {
            ErrorCode::WrongState
        } else {
            ErrorCode::Internal
        }
    }
}

impl From<PersistError> for WireError {
    fn from(e: PersistError) -> Self {
        WireError::new(e.wire_code(), e.to_string())
    }
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether directories and files are group-readable (`--group-access`).
static GROUP_ACCESS: AtomicBool = AtomicBool::new(false);

/// Lets the daemon's group read what it creates (`--group-access`): directories 0750,
/// files 0640, umask 0027. Off by default (0700, 0600, 0077). Process-wide, like the
/// umask it goes with.
pub fn set_group_access(on: bool) {
    GROUP_ACCESS.store(on, Ordering::Relaxed);
}

/// Whether [`set_group_access`] is on.
pub fn group_access() -> bool {
    GROUP_ACCESS.load(Ordering::Relaxed)
}

/// Mode of every directory a daemon creates: 0700, or 0750 with group access.
pub fn dir_mode() -> u32 {
    if group_access() {
        0o750
    } else {
        0o700
    }
}

/// Mode of every file a daemon creates: 0600, or 0640 with group access.
pub fn file_mode() -> u32 {
    if group_access() {
        0o640
    } else {
        0o600
    }
}

/// The umask a daemon runs with: 0077, or 0027 with group access.
pub fn umask() -> u32 {
    0o777 & !dir_mode()
}

/// Creates `path` anew, open for reading and writing, with mode [`file_mode`]: a
/// leftover of that name (a file or a link, never what a link points to) is removed
/// first, and the file is created exclusively, so nothing is written through a link.
pub fn create_file(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(file_mode())
        .open(path)
}

/// Removes the permission bits of the open file or directory `f` beyond `allowed`;
/// returns the old and new modes when it changed them.
pub fn tighten(f: &File, allowed: u32) -> io::Result<Option<(u32, u32)>> {
    let mode = f.metadata()?.permissions().mode();
    let perm = mode & 0o777;
    if perm & !allowed == 0 {
        return Ok(None);
    }
    let new = (mode & !0o777) | (perm & allowed);
    f.set_permissions(fs::Permissions::from_mode(new))?;
    Ok(Some((perm, new & 0o777)))
}

/// The temporary name used while `path` is written.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// Fsyncs a directory, so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("syncing directory", dir))
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = create_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(err("writing", path)(e));
    }
    fs::rename(&tmp, path).map_err(err("renaming into place", path))?;
    sync_dir(parent(path))
}

/// Reads `path`, or `None` if it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err("reading", path)(e)),
    }
}

/// Reads a one-line text file (trimmed), or `None` if it does not exist.
pub fn read_text_opt(path: &Path) -> Result<Option<String>, PersistError> {
    Ok(read_opt(path)?.map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
}

/// Creates `dir` (and parents) with mode [`dir_mode`] and makes the new entry durable.
pub fn create_dir(dir: &Path) -> Result<(), PersistError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(dir_mode())
        .create(dir)
        .map_err(err("creating directory", dir))?;
    sync_dir(parent(dir))
}

/// Removes `dir` and everything in it, durably.
pub fn remove_dir(dir: &Path) -> Result<(), PersistError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => sync_dir(parent(dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err("removing directory", dir)(e)),
    }
}

/// Removes `path` durably; absent is fine.
pub fn remove_file(path: &Path) -> Result<(), PersistError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err("removing", path)(e)),
    }
}

/// Deletes leftover temporary files (`*.tmp`) in `dir`; returns how many.
pub fn remove_temp_files(dir: &Path) -> Result<usize, PersistError> {
    remove_with_suffix(dir, TMP_SUFFIX)
}

/// Deletes what a crash left in `dir` under a name ending in `suffix` ([`TMP_SUFFIX`],
/// [`UNSYNCED_SUFFIX`]), then syncs `dir` once; returns how many.
pub fn remove_with_suffix(dir: &Path, suffix: &str) -> Result<usize, PersistError> {
    let mut n = 0;
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err("listing", dir)(e)),
    };
    for ent in rd {
        let ent = ent.map_err(err("listing", dir))?;
        if ent.file_name().to_string_lossy().ends_with(suffix) {
            let p = ent.path();
            if ent.file_type().map_err(err("inspecting", &p))?.is_dir() {
                fs::remove_dir_all(&p).map_err(err("removing", &p))?;
            } else {
                fs::remove_file(&p).map_err(err("removing", &p))?;
            }
            n += 1;
        }
    }
    if n > 0 {
        sync_dir(dir)?;
    }
    Ok(n)
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A daemon's base directory, locked for its lifetime.
#[derive(Debug)]
pub struct BaseDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl BaseDir {
    /// Creates `path` if needed (mode [`dir_mode`]), tightens it if it is looser (with a
    /// log line), and locks it; fails if another daemon holds it.
    pub fn lock(path: &Path) -> Result<BaseDir, PersistError> {
        create_base_dir(path)?;
        let d = File::open(path).map_err(err("opening base directory", path))?;
        if let Some((old, new)) =
            tighten(&d, dir_mode()).map_err(err("tightening the mode of", path))?
        {
            warn!(
                dir = %path.display(),
                "base directory was mode {old:04o}, readable by others: tightened to {new:04o}"
            );
        }
        let lp = path.join(LOCK_FILE);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(file_mode())
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lp)
            .map_err(err("opening lock file", &lp))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            err("locking", &lp)(io::Error::other(format!(
                "{e}: another daemon uses this base directory"
            )))
        })?;
        Ok(BaseDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of volume `vol`.
    pub fn vol_dir(&self, vol: &str) -> PathBuf {
        self.path.join(vol)
    }

    /// Sorts the subdirectories by `rule`: volumes, interrupted creations and removals
    /// (for the role to remove), and the rest, which are named in warnings and left alone
    /// (see [`voldir`]). Files are not looked at.
    pub fn scan(&self, rule: &VolRule) -> Result<Scan, PersistError> {
        voldir::scan(&self.path, rule)
    }
}

/// A writer whose errors name the file it writes (`PATH: No space left on device`), for
/// writers handed to code that knows only a `Write` (the kernel's wdiff writers).
#[derive(Debug)]
pub struct NamedWriter<W> {
    inner: W,
    path: PathBuf,
}

impl<W: Write> NamedWriter<W> {
    /// `inner`, writing the file at `path`.
    pub fn new(inner: W, path: &Path) -> NamedWriter<W> {
        NamedWriter {
            inner,
            path: path.to_path_buf(),
        }
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn named(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
    }
}

impl<W: Write> Write for NamedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.named(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.named(e))
    }
}

/// Creates the base directory `path` (and parents) with mode [`dir_mode`] if it does not
/// exist.
pub fn create_base_dir(path: &Path) -> Result<(), PersistError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(dir_mode())
        .create(path)
        .map_err(err("creating base directory", path))
}

/// Checks a volume name (the wire's rule, [`walb_wire::admit::vol_name`]).
pub fn check_vol_name(vol: &str) -> Result<(), String> {
    walb_wire::admit::vol_name(vol).map_err(|e| e.message)
}

/// The durable name of a path (`<name>.unsynced` -> `<name>`; any other path is itself).
pub fn durable_name(path: &Path) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    match s.strip_suffix(UNSYNCED_SUFFIX) {
        Some(d) => PathBuf::from(d),
        None => path.to_path_buf(),
    }
}

/// Opens a file for reading that may be made durable, and so renamed from
/// `<name>.unsynced` to `<name>`, between the listing that named it and this call.
pub fn open_durable_or_not(path: &Path) -> io::Result<File> {
    match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && durable_name(path) != path => {
            File::open(durable_name(path))
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_writer_names_the_file_in_its_errors() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let mut w = NamedWriter::new(full, Path::new("/srv/a0/vol/x.wdiff.tmp"));
        let e = w.write_all(&[1u8; 4096]).and_then(|()| w.flush());
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.starts_with("/srv/a0/vol/x.wdiff.tmp: No space left on device"),
            "{msg}"
        );
        let mut ok = NamedWriter::new(Vec::new(), Path::new("v"));
        ok.write_all(b"abc").unwrap();
        assert_eq!(ok.into_inner(), b"abc");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state");
        write_atomic(&p, b"Target").unwrap();
        write_atomic(&p, b"Stopped").unwrap();
        assert_eq!(read_text_opt(&p).unwrap().as_deref(), Some("Stopped"));
        assert!(!tmp_path(&p).exists());
        assert_eq!(read_opt(&d.path().join("none")).unwrap(), None);
    }

    #[test]
    fn leftover_temp_files_are_removed() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x.tmp"), b"half").unwrap();
        fs::write(d.path().join("keep"), b"ok").unwrap();
        assert_eq!(remove_temp_files(d.path()).unwrap(), 1);
        assert!(d.path().join("keep").exists());
    }

    #[test]
    fn create_file_replaces_a_leftover_and_never_writes_through_a_link() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let p = d.path().join("state.tmp");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let mut f = create_file(&p).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&p).unwrap().is_file());
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o077, 0);
        write_atomic(&d.path().join("state"), b"x").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn tighten_removes_only_the_bits_beyond_the_allowed_ones() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b");
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o2775)).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(tighten(&f, 0o750).unwrap(), Some((0o775, 0o750)));
        let m = fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(m & 0o7777, 0o2750, "the setgid bit stays: {m:o}");
        assert_eq!(tighten(&f, 0o750).unwrap(), None);
    }

    #[test]
    fn base_dir_lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let a = BaseDir::lock(d.path()).unwrap();
        let e = BaseDir::lock(d.path()).unwrap_err();
        assert!(e.to_string().contains("another daemon"), "{e}");
        drop(a);
        BaseDir::lock(d.path()).unwrap();
    }

    #[test]
    fn volume_names() {
        assert!(check_vol_name("vol0").is_ok());
        assert!(check_vol_name("").is_err());
        assert!(check_vol_name("a/b").is_err());
        assert!(check_vol_name("..").is_err());
        assert!(check_vol_name(&"x".repeat(65)).is_err());
    }
}
