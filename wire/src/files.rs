//! Files written whole or not at all, never through a planted link.
//!
//! Everything the console and `walb-console ca` write (keys, certificates, deny lists,
//! cluster files, exported images) goes through [`NewFile`]: the bytes go to a new
//! temporary file beside the destination, under a name nobody can guess (a random part),
//! created exclusively (`O_CREAT | O_EXCL`, which also never follows a symbolic link
//! planted at that name), with the mode asked for from the start (a key is never readable
//! by others, not even for an instant; the umask does not change it); the file is synced
//! and then moved into place: renamed over the destination ([`Place::Replace`]; a link
//! at the destination is replaced, not followed), or linked to a name that must not exist
//! yet ([`Place::New`], which fails with `AlreadyExists` instead of overwriting). The
//! directory is synced last. A temporary file that is dropped uncommitted is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of secrets: private keys, and anything only the owner may read.
pub const MODE_PRIVATE: u32 = 0o600;
/// Mode of public files (certificates).
pub const MODE_PUBLIC: u32 = 0o644;

/// How a [`NewFile`] takes its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The destination must not exist (checked atomically, by `link`).
    New,
    /// Replace the destination atomically (`rename`) if it exists.
    Replace,
}

/// A file being written under a temporary name beside its destination.
#[derive(Debug)]
pub struct NewFile {
    file: File,
    tmp: PathBuf,
    dst: PathBuf,
}

impl NewFile {
    /// Creates the temporary file of `dst` with `mode` (exactly: whatever the umask),
    /// exclusively (so never through a link). Its name is `.NAME.RANDOM.tmp` in `dst`'s
    /// directory.
    pub fn create(dst: &Path, mode: u32) -> io::Result<NewFile> {
        let name = dst.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no file", dst.display()),
            )
        })?;
        let dir = parent(dst);
        let mut last = None;
        for _ in 0..16 {
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
            let tmp = dir.join(tmp_name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
            {
                Ok(file) => {
                    let f = NewFile {
                        file,
                        tmp,
                        dst: dst.to_path_buf(),
                    };
                    // The umask may have taken bits away; `f` removes the file on failure.
                    f.file.set_permissions(fs::Permissions::from_mode(mode))?;
                    return Ok(f);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary file's path.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the file and moves it into place (see [`Place`]), then syncs the directory.
    pub fn commit(mut self, place: Place) -> io::Result<()> {
        self.file.sync_all()?;
        match place {
            Place::Replace => fs::rename(&self.tmp, &self.dst)?,
            Place::New => {
                fs::hard_link(&self.tmp, &self.dst)?;
                fs::remove_file(&self.tmp)?;
            }
        }
        // Committed: nothing left for `drop` to remove.
        self.tmp = PathBuf::new();
        sync_dir(parent(&self.dst))
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes `bytes` to `dst` whole or not at all, with `mode` (see the module doc).
pub fn write_file(dst: &Path, bytes: &[u8], mode: u32, place: Place) -> io::Result<()> {
    let mut f = NewFile::create(dst, mode)?;
    f.write_all(bytes)?;
    f.commit(place)
}

/// Opens `path` to append to it (a log), created with `mode` if absent, never through a
/// symbolic link planted at that name (`O_NOFOLLOW`: refused with `ELOOP`).
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Fsyncs a directory, so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("walb-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftovers(d: &Path) -> Vec<String> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn a_new_file_has_its_mode_and_refuses_to_overwrite() {
        let d = tmpdir("new");
        let p = d.join("key");
        write_file(&p, b"secret", MODE_PRIVATE, Place::New).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "a private file is not readable by others: {mode:o}"
        );
        let e = write_file(&p, b"other", MODE_PRIVATE, Place::New).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replacing_a_planted_link_replaces_the_link_not_its_target() {
        let d = tmpdir("link");
        let victim = d.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let p = d.join("out");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_file(&p, b"new", MODE_PUBLIC, Place::Replace).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&p).unwrap(), b"new");
        // A link where the file must be new is an existing entry: refused.
        let q = d.join("out2");
        std::os::unix::fs::symlink(&victim, &q).unwrap();
        let e = write_file(&q, b"x", MODE_PUBLIC, Place::New).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_mode_is_the_one_asked_for_whatever_the_umask() {
        let d = tmpdir("mode");
        // 0666 is more than a usual umask (022) lets through.
        let p = d.join("shared");
        write_file(&p, b"x", 0o666, Place::New).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o666
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temporary_names_are_not_predictable() {
        let d = tmpdir("names");
        let p = d.join("out");
        let a = NewFile::create(&p, MODE_PRIVATE).unwrap();
        let b = NewFile::create(&p, MODE_PRIVATE).unwrap();
        let name = |f: &NewFile| f.tmp_path().file_name().unwrap().to_owned();
        assert_ne!(name(&a), name(&b));
        assert!(!name(&a)
            .to_string_lossy()
            .contains(&std::process::id().to_string()));
        drop((a, b));
        assert!(leftovers(&d).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_log_is_appended_to_but_never_through_a_link() {
        let d = tmpdir("log");
        let p = d.join("log");
        open_append(&p, MODE_PRIVATE)
            .unwrap()
            .write_all(b"a")
            .unwrap();
        open_append(&p, MODE_PRIVATE)
            .unwrap()
            .write_all(b"b")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"ab");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o077, 0);
        let victim = d.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let q = d.join("planted");
        std::os::unix::fs::symlink(&victim, &q).unwrap();
        assert!(open_append(&q, MODE_PRIVATE).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let d = tmpdir("drop");
        let p = d.join("img");
        {
            let mut f = NewFile::create(&p, MODE_PRIVATE).unwrap();
            f.write_all(b"half").unwrap();
            assert!(f.tmp_path().exists());
        }
        assert!(!p.exists());
        assert!(leftovers(&d).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }
}
