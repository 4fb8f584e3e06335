//! Volume directories: a daemon removes only what it created.
//!
//! A base directory may hold things that are not the daemon's: a mistyped `-b`, an
//! operator's notes, another program's data. So a subdirectory is never taken for a
//! volume, nor removed, by its name alone:
//!
//! - a *volume* directory holds what its role's [`VolRule`] names (the storage's and the
//!   archive's `state` file, the proxy's destination files);
//! - a directory the daemon is creating or removing holds the marker [`MARKER`], written
//!   durably before anything else ([`begin`], [`mark`]) and removed last: after the state
//!   when a volume is created ([`end`]), after everything else when one is removed
//!   ([`remove_marked`]). A marked directory that is not a volume is an interrupted
//!   init-vol or clear-vol, which [`BaseDir::scan`] hands back for removal at start; a
//!   marked one that is a volume is whole (the stale marker goes);
//! - any other directory is *foreign*: [`BaseDir::scan`] names it in a warning and leaves
//!   it alone, and [`begin`] refuses to take it over (an empty one excepted: it holds
//!   nothing to lose). Files beside the volumes are never touched.
//!
//! [`BaseDir::scan`]: super::BaseDir::scan

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{create_file, dir_mode, err, parent, remove_file, sync_dir, PersistError};

/// The marker of a volume directory being created or removed.
pub const MARKER: &str = "walb-incomplete";

/// What the marker file says to an operator who finds it.
const MARKER_TEXT: &str = "walb: this volume directory is being created or removed. \
    Found without the volume's own files at the daemon's start, it is removed.\n";

/// What makes a directory a volume of a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolRule {
    /// A file of this name (the state file of the storage and the archive).
    File(&'static str),
    /// At least one file named `NAME<suffix>` with a valid name before the suffix (the
    /// proxy's destinations, `ARCHIVE.archive`).
    Suffix(&'static str),
}

impl VolRule {
    /// Whether `dir` holds a volume by this rule.
    pub fn is_volume(&self, dir: &Path) -> io::Result<bool> {
        match self {
            VolRule::File(name) => exists(&dir.join(name)),
            VolRule::Suffix(suffix) => Ok(!self.files(dir, suffix)?.is_empty()),
        }
    }

    /// The files that make `dir` a volume (removed first when it is removed).
    pub fn volume_files(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        match self {
            VolRule::File(name) => {
                let p = dir.join(name);
                Ok(if exists(&p)? { vec![p] } else { Vec::new() })
            }
            VolRule::Suffix(suffix) => self.files(dir, suffix),
        }
    }

    fn files(&self, dir: &Path, suffix: &str) -> io::Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(v),
            Err(e) => return Err(e),
        };
        for ent in rd {
            let ent = ent?;
            let name = ent.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
                continue;
            };
            if super::check_vol_name(stem).is_ok() && ent.file_type()?.is_file() {
                v.push(ent.path());
            }
        }
        Ok(v)
    }

    /// What a volume directory holds, for messages.
    pub fn describe(&self) -> String {
        match self {
            VolRule::File(name) => format!("a {name} file"),
            VolRule::Suffix(suffix) => format!("a destination file (*{suffix})"),
        }
    }
}

/// What a directory in a base directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirKind {
    /// A volume (a stale marker in it is ignored).
    Volume,
    /// Marked and not a volume: an init-vol or clear-vol that was cut short.
    Interrupted,
    /// Neither: not the daemon's.
    Foreign {
        /// It holds nothing at all.
        empty: bool,
    },
}

/// Classifies the directory `dir` by `rule`.
pub fn classify(dir: &Path, rule: &VolRule) -> io::Result<DirKind> {
    if rule.is_volume(dir)? {
        return Ok(DirKind::Volume);
    }
    if exists(&dir.join(MARKER))? {
        return Ok(DirKind::Interrupted);
    }
    let empty = fs::read_dir(dir)?.next().is_none();
    Ok(DirKind::Foreign { empty })
}

/// Whether `p` exists (a link counts, whatever it points to).
fn exists(p: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A directory this daemon did not create, in the way of a new volume (the source of a
/// [`PersistError`]; [`PersistError::is_not_ours`] tells it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotOurs(String);

fn not_ours(dir: &Path, why: String) -> PersistError {
    PersistError {
        what: "refusing to take over",
        path: dir.to_path_buf(),
        source: io::Error::new(io::ErrorKind::AlreadyExists, NotOurs(why)),
    }
}

/// What an operator can do about a foreign directory.
fn advice(rule: &VolRule) -> String {
    format!(
        "it holds files this daemon did not create (no {}, no {MARKER} marker); it was left \
         alone: move it out of the base directory, or remove it if it is an unwanted \
         leftover, then try again",
        rule.describe()
    )
}

/// Starts the volume directory `dir`: creates it (mode [`dir_mode`]) and writes the
/// marker durably before anything else goes in. An interrupted creation or removal found
/// there is removed first, an empty directory is taken over; anything else is refused
/// ([`NotOurs`]) and left as it is.
pub fn begin(dir: &Path, rule: &VolRule) -> Result<(), PersistError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(dir_mode())
                .create(dir)
                .map_err(err("creating directory", dir))?;
            sync_dir(parent(dir))?;
        }
        Err(e) => return Err(err("inspecting", dir)(e)),
        Ok(m) if !m.is_dir() => {
            let what = if m.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a directory"
            };
            return Err(not_ours(
                dir,
                format!("it is {what}; move it out of the base directory, then try again"),
            ));
        }
        Ok(_) => match classify(dir, rule).map_err(err("inspecting", dir))? {
            DirKind::Volume => {
                return Err(not_ours(
                    dir,
                    format!(
                        "it holds {} this daemon did not load (see the log of its start): \
                         move it out of the base directory, then try again",
                        rule.describe()
                    ),
                ))
            }
            DirKind::Interrupted => {
                remove_marked(dir)?;
                return begin(dir, rule);
            }
            DirKind::Foreign { empty: true } => {}
            DirKind::Foreign { empty: false } => return Err(not_ours(dir, advice(rule))),
        },
    }
    mark(dir)
}

/// Writes the marker into `dir` durably (before a volume directory's removal begins).
pub fn mark(dir: &Path) -> Result<(), PersistError> {
    let p = dir.join(MARKER);
    let res = (|| {
        let mut f = create_file(&p)?;
        f.write_all(MARKER_TEXT.as_bytes())?;
        f.sync_all()
    })();
    res.map_err(err("writing", &p))?;
    sync_dir(dir)
}

/// Ends the creation of the volume directory `dir`, once what makes it a volume is
/// durable: removes the marker.
pub fn end(dir: &Path) -> Result<(), PersistError> {
    remove_file(&dir.join(MARKER))
}

/// Removes the volume directory `dir`: marks it, removes what makes it a volume by `rule`
/// (so that from then on it reads as an interrupted removal), then the rest
/// ([`remove_marked`]). Absent is fine.
pub fn remove(dir: &Path, rule: &VolRule) -> Result<(), PersistError> {
    if !exists(dir).map_err(err("inspecting", dir))? {
        return Ok(());
    }
    if let DirKind::Foreign { .. } = classify(dir, rule).map_err(err("inspecting", dir))? {
        return Err(not_ours(dir, advice(rule)));
    }
    mark(dir)?;
    let files = rule.volume_files(dir).map_err(err("listing", dir))?;
    for f in &files {
        fs::remove_file(f).map_err(err("removing", f))?;
    }
    if !files.is_empty() {
        sync_dir(dir)?;
    }
    remove_marked(dir)
}

/// Removes the marked directory `dir`: everything in it, then the marker, then the
/// directory. Refuses an unmarked one (it may not be the daemon's). Absent is fine.
pub fn remove_marked(dir: &Path) -> Result<(), PersistError> {
    let marker = dir.join(MARKER);
    match fs::symlink_metadata(&marker) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(not_ours(
                dir,
                format!("it is not marked {MARKER}: this daemon removes only what it created"),
            ))
        }
        Err(e) => return Err(err("inspecting", &marker)(e)),
    }
    for ent in fs::read_dir(dir).map_err(err("listing", dir))? {
        let ent = ent.map_err(err("listing", dir))?;
        if ent.file_name() == MARKER {
            continue;
        }
        let p = ent.path();
        let is_dir = ent.file_type().map_err(err("inspecting", &p))?.is_dir();
        if is_dir {
            fs::remove_dir_all(&p).map_err(err("removing", &p))?;
        } else {
            fs::remove_file(&p).map_err(err("removing", &p))?;
        }
    }
    sync_dir(dir)?;
    remove_file(&marker)?;
    fs::remove_dir(dir).map_err(err("removing directory", dir))?;
    sync_dir(parent(dir))
}

/// What [`BaseDir::scan`](super::BaseDir::scan) found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Volume directories, by name.
    pub vols: Vec<String>,
    /// Interrupted creations and removals: the role removes them
    /// ([`remove_marked`] after its own cleanup).
    pub interrupted: Vec<String>,
    /// Directories left alone (each named in a warning).
    pub foreign: Vec<String>,
}

/// Sorts the entries of the base directory `base` (see the module documentation).
pub(super) fn scan(base: &Path, rule: &VolRule) -> Result<Scan, PersistError> {
    let mut s = Scan::default();
    for ent in fs::read_dir(base).map_err(err("listing", base))? {
        let ent = ent.map_err(err("listing", base))?;
        let path = ent.path();
        let ft = ent.file_type().map_err(err("inspecting", &path))?;
        let link = ft.is_symlink();
        // A link to a volume directory elsewhere is a volume; nothing is removed through
        // a link.
        if !(ft.is_dir() || link && path.is_dir()) {
            continue;
        }
        let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
            info!(dir = %path.display(), "not a volume name; left alone");
            continue;
        };
        if super::check_vol_name(&name).is_err() {
            info!(dir = %path.display(), "not a volume name; left alone");
            continue;
        }
        match classify(&path, rule) {
            Ok(DirKind::Volume) => {
                if exists(&path.join(MARKER)).unwrap_or(false) {
                    // Created whole, or a removal that had not begun: the volume stands.
                    if let Err(e) = end(&path) {
                        warn!(dir = %path.display(), "cannot remove a stale marker: {e}");
                    }
                }
                s.vols.push(name);
            }
            Ok(DirKind::Interrupted) if link => {
                warn!(
                    dir = %path.display(),
                    "a link to an interrupted init-vol or clear-vol; not removed through a \
                     link: remove it and its target by hand"
                );
                s.foreign.push(name);
            }
            Ok(DirKind::Interrupted) => s.interrupted.push(name),
            Ok(DirKind::Foreign { empty }) => {
                if empty {
                    warn!(
                        dir = %path.display(),
                        "an empty directory, not a volume; left alone (init-vol {name} takes \
                         it over)"
                    );
                } else {
                    warn!(
                        dir = %path.display(),
                        "not a volume: {}; until then init-vol {name} is refused",
                        advice(rule)
                    );
                }
                s.foreign.push(name);
            }
            Err(e) => {
                warn!(dir = %path.display(), "cannot inspect ({e}); left alone");
                s.foreign.push(name);
            }
        }
    }
    s.vols.sort();
    s.interrupted.sort();
    s.foreign.sort();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const RULE: VolRule = VolRule::File("state");

    fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let b = fs::read(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), b)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn begin_marks_first_and_end_unmarks_after_the_state() {
        let d = tempfile::tempdir().unwrap();
        let v = d.path().join("v0");
        begin(&v, &RULE).unwrap();
        assert_eq!(
            fs::metadata(&v).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(classify(&v, &RULE).unwrap(), DirKind::Interrupted);
        fs::write(v.join("path"), b"x").unwrap();
        assert_eq!(classify(&v, &RULE).unwrap(), DirKind::Interrupted);
        fs::write(v.join("state"), b"SyncReady").unwrap();
        assert_eq!(classify(&v, &RULE).unwrap(), DirKind::Volume);
        end(&v).unwrap();
        assert!(!v.join(MARKER).exists());
        // A volume is not taken over again.
        let e = begin(&v, &RULE).unwrap_err();
        assert!(e.is_not_ours(), "{e}");
    }

    #[test]
    fn a_foreign_directory_is_refused_and_left_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let v = d.path().join("data");
        fs::create_dir(&v).unwrap();
        fs::write(v.join("notes"), b"keep me").unwrap();
        let before = tree(&v);
        let e = begin(&v, &RULE).unwrap_err();
        assert!(e.is_not_ours());
        let msg = e.to_string();
        assert!(
            msg.contains(&v.display().to_string()) && msg.contains("left alone"),
            "{msg}"
        );
        assert_eq!(tree(&v), before);
        assert!(remove_marked(&v).unwrap_err().is_not_ours());
        assert_eq!(tree(&v), before);
        // An empty one holds nothing to lose: taken over.
        let e = d.path().join("empty");
        fs::create_dir(&e).unwrap();
        begin(&e, &RULE).unwrap();
        assert!(e.join(MARKER).exists());
        // A file or a link of the name is refused.
        let f = d.path().join("file");
        fs::write(&f, b"x").unwrap();
        assert!(begin(&f, &RULE).unwrap_err().is_not_ours());
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&v, &l).unwrap();
        assert!(begin(&l, &RULE).unwrap_err().is_not_ours());
        assert_eq!(tree(&v), before);
    }

    #[test]
    fn removal_reads_as_interrupted_until_it_is_done() {
        let d = tempfile::tempdir().unwrap();
        let v = d.path().join("v0");
        begin(&v, &RULE).unwrap();
        fs::create_dir(v.join("restored")).unwrap();
        fs::write(v.join("restored/1.img"), b"img").unwrap();
        fs::write(v.join("state"), b"SyncReady").unwrap();
        end(&v).unwrap();
        // Cut short after the marker: the volume stands.
        mark(&v).unwrap();
        assert_eq!(classify(&v, &RULE).unwrap(), DirKind::Volume);
        remove(&v, &RULE).unwrap();
        assert!(!v.exists());
        remove(&v, &RULE).unwrap();
    }

    #[test]
    fn a_proxy_volume_is_one_with_a_destination() {
        let rule = VolRule::Suffix(".archive");
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sendto")).unwrap();
        fs::write(d.path().join("bad name.archive"), b"x").unwrap();
        assert!(!rule.is_volume(d.path()).unwrap());
        fs::write(d.path().join("a0.archive"), b"x").unwrap();
        assert!(rule.is_volume(d.path()).unwrap());
        assert_eq!(rule.volume_files(d.path()).unwrap().len(), 1);
    }
}
