//! Durable small files: every piece of persistent daemon state goes through here.
//!
//! [`write_atomic`] writes a temporary file beside the target, fsyncs it, renames it over
//! the target and fsyncs the directory, so a daemon killed at any instant finds either the
//! old or the new content, never a mix. Temporary files end in [`TMP_SUFFIX`];
//! [`remove_temp_files`] deletes leftovers at start. [`BaseDir::lock`] takes an exclusive
//! `flock` on the base directory so two daemons never share one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Suffix of files being written.
pub const TMP_SUFFIX: &str = ".tmp";
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

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError {
        what,
        path: path.to_path_buf(),
        source,
    }
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
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
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

/// Creates `dir` (and parents) and makes the new entry durable.
pub fn create_dir(dir: &Path) -> Result<(), PersistError> {
    fs::create_dir_all(dir).map_err(err("creating directory", dir))?;
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
    let mut n = 0;
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err("listing", dir)(e)),
    };
    for ent in rd {
        let ent = ent.map_err(err("listing", dir))?;
        if ent.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            let p = ent.path();
            if p.is_dir() {
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
    /// Creates `path` if needed and locks it; fails if another daemon holds it.
    pub fn lock(path: &Path) -> Result<BaseDir, PersistError> {
        fs::create_dir_all(path).map_err(err("creating base directory", path))?;
        let lp = path.join(LOCK_FILE);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
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

    /// Names of the volume directories (every subdirectory not ending in `.tmp`).
    pub fn vols(&self) -> Result<Vec<String>, PersistError> {
        let mut v = Vec::new();
        for ent in fs::read_dir(&self.path).map_err(err("listing", &self.path))? {
            let ent = ent.map_err(err("listing", &self.path))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if ent.path().is_dir() && !name.ends_with(TMP_SUFFIX) && check_vol_name(&name).is_ok() {
                v.push(name);
            }
        }
        v.sort();
        Ok(v)
    }
}

/// Checks a volume name (the wire's rule, [`walb_wire::admit::vol_name`]).
pub fn check_vol_name(vol: &str) -> Result<(), String> {
    walb_wire::admit::vol_name(vol).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

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
