//! One archive volume: its live state and its persisted metadata.
//!
//! The volume directory `<base>/<vol>/` holds `state` (written by [`VolCore`]), `uuid`
//! and `archive_uuid` (16 bytes each), `base` (the base image's [`MetaState`] in its
//! persistent form) and the wdiff files, named by [`diff_file_name`]: the directory
//! listing *is* the diff metadata ([`scan_diffs`] rebuilds the [`DiffManager`] from it,
//! with sizes from `stat`). Images live in the [`super::backend`].
//!
//! [`ArchiveVol`] pairs the volume's [`VolCore`] with a [`VolMeta`] behind a mutex (never
//! held across an `.await`); metadata is changed on disk first, then in memory, so what
//! the queries see has always been persisted.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::warn;
use walb_kernel::meta::{
    diff_file_name, parse_diff_file_name, DiffManager, MetaDiff, MetaSnap, MetaState,
    DIFF_FILE_SUFFIX,
};
use walb_wire::msg::Uuid;

use super::backend::CloneMethod;
use crate::persist::{self, PersistError};
use crate::state::archive::ArchiveState;
use crate::vol::{Publish, VolCore};

/// File of the volume uuid.
pub const UUID_FILE: &str = "uuid";
/// File of the archive uuid.
pub const ARCHIVE_UUID_FILE: &str = "archive_uuid";
/// File of the base meta state.
pub const BASE_FILE: &str = "base";
/// File of the volume state.
pub const STATE_FILE: &str = "state";

/// Why volume metadata could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Reading or writing failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A file does not hold what it should.
    #[error("{}: {detail}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The persisted metadata of an archive volume.
#[derive(Debug, Clone, Default)]
pub struct VolMeta {
    /// The volume uuid (the storage's log device uuid at the full backup).
    pub uuid: Uuid,
    /// This archive lineage's random id (made by the full backup).
    pub archive_uuid: Uuid,
    /// The base image's meta state (`<|2^64-1|>` before the first full backup).
    pub base: MetaState,
    /// The wdiff files.
    pub diffs: DiffManager,
}

impl VolMeta {
    /// The metadata written by init-vol: zero uuids, empty base, no diffs.
    pub fn initial() -> VolMeta {
        VolMeta {
            uuid: [0; 16],
            archive_uuid: [0; 16],
            base: MetaState::empty(),
            diffs: DiffManager::new(),
        }
    }

    /// Loads the metadata in `dir` (absent files read as [`VolMeta::initial`]'s values)
    /// and the diff list from the directory listing.
    pub fn load(dir: &Path) -> Result<VolMeta, MetaError> {
        let uuid = read_uuid(&dir.join(UUID_FILE))?;
        let archive_uuid = read_uuid(&dir.join(ARCHIVE_UUID_FILE))?;
        let bp = dir.join(BASE_FILE);
        let base = match persist::read_opt(&bp)? {
            None => MetaState::empty(),
            Some(b) => MetaState::from_bytes(&b).map_err(|e| MetaError::Bad {
                path: bp.clone(),
                detail: e.to_string(),
            })?,
        };
        let (diffs, skipped) = scan_diffs(dir)?;
        for s in skipped {
            warn!(file = %s.display(), "not a wdiff file name; ignored");
        }
        Ok(VolMeta {
            uuid,
            archive_uuid,
            base,
            diffs,
        })
    }

    /// Writes uuid, archive uuid and base (not the diffs, which are files of their own).
    pub fn save(&self, dir: &Path) -> Result<(), PersistError> {
        persist::write_atomic(&dir.join(UUID_FILE), &self.uuid)?;
        persist::write_atomic(&dir.join(ARCHIVE_UUID_FILE), &self.archive_uuid)?;
        persist::write_atomic(&dir.join(BASE_FILE), &self.base.to_bytes())
    }

    /// The latest snapshot: the base with the whole applicable chain applied.
    pub fn latest_snapshot(&self) -> MetaSnap {
        self.diffs.latest_snapshot(&self.base)
    }

    /// The latest state (base + chain), or the base if the chain cannot settle it.
    pub fn latest_state(&self) -> MetaState {
        self.diffs.latest_state(&self.base).unwrap_or(self.base)
    }
}

fn read_uuid(p: &Path) -> Result<Uuid, MetaError> {
    match persist::read_opt(p)? {
        None => Ok([0; 16]),
        Some(b) => b.as_slice().try_into().map_err(|_| MetaError::Bad {
            path: p.to_path_buf(),
            detail: format!("{} bytes, expected 16", b.len()),
        }),
    }
}

/// Rebuilds the diff list of `dir` from the wdiff file names (sizes from `stat`); returns
/// it and the `*.wdiff` files whose names do not parse (or that duplicate a diff).
pub fn scan_diffs(dir: &Path) -> Result<(DiffManager, Vec<PathBuf>), PersistError> {
    let listing = |e| PersistError {
        what: "listing",
        path: dir.to_path_buf(),
        source: e,
    };
    let mut m = DiffManager::new();
    let mut skipped = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((m, skipped)),
        Err(e) => return Err(listing(e)),
    };
    for ent in rd {
        let ent = ent.map_err(listing)?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if !name.ends_with(DIFF_FILE_SUFFIX) {
            continue;
        }
        let size = ent.metadata().map_err(listing)?.len();
        match parse_diff_file_name(&name) {
            Ok(d) => {
                if m.add(d.with_data_size(size)).is_err() {
                    skipped.push(ent.path());
                }
            }
            Err(_) => skipped.push(ent.path()),
        }
    }
    Ok((m, skipped))
}

/// The file of `diff` in `dir`.
pub fn diff_path(dir: &Path, diff: &MetaDiff) -> PathBuf {
    dir.join(diff_file_name(diff))
}

/// An archive volume: live state, metadata, progress.
#[derive(Debug)]
pub struct ArchiveVol {
    /// Volume name.
    pub name: String,
    /// Volume directory.
    pub dir: PathBuf,
    /// State machine, actions, stop flag.
    pub core: Arc<VolCore<ArchiveState>>,
    meta: Mutex<VolMeta>,
    progress: AtomicU64,
    clones: Mutex<HashMap<u64, CloneMethod>>,
}

impl ArchiveVol {
    /// A volume in `state` with `meta`.
    pub fn new(
        name: &str,
        dir: PathBuf,
        state: ArchiveState,
        meta: VolMeta,
        publish: Option<Publish>,
    ) -> Arc<ArchiveVol> {
        let core = VolCore::new(name, state, Some(dir.join(STATE_FILE)), publish);
        Arc::new(ArchiveVol {
            name: name.to_owned(),
            dir,
            core,
            meta: Mutex::new(meta),
            progress: AtomicU64::new(0),
            clones: Mutex::new(HashMap::new()),
        })
    }

    /// The metadata (a consistent snapshot while the guard lives; never hold it across an
    /// `.await`).
    pub fn meta(&self) -> MutexGuard<'_, VolMeta> {
        // Every change replaces fields in one step, so a poisoned lock is consistent.
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> ArchiveState {
        self.core.state()
    }

    /// Logical blocks done by the running full sync (0 when idle).
    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Sets the progress of the running full sync.
    pub fn set_progress(&self, lb: u64) {
        self.progress.store(lb, Ordering::Relaxed);
    }

    /// Records how the restored image of `gid` was started (status lines).
    pub fn set_clone_method(&self, gid: u64, how: Option<CloneMethod>) {
        let mut g = self.clones.lock().unwrap_or_else(|p| p.into_inner());
        match how {
            Some(h) => g.insert(gid, h),
            None => g.remove(&gid),
        };
    }

    /// How the restored image of `gid` was started, if restored since the daemon started.
    pub fn clone_method(&self, gid: u64) -> Option<CloneMethod> {
        self.clones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&gid)
            .copied()
    }

    /// The file of `diff`.
    pub fn diff_path(&self, diff: &MetaDiff) -> PathBuf {
        diff_path(&self.dir, diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_the_listing_is_the_diff_list() {
        let d = tempfile::tempdir().unwrap();
        let m = VolMeta {
            uuid: [3; 16],
            archive_uuid: [4; 16],
            base: MetaState::new(MetaSnap::new(0, 5).unwrap(), 1_700_000_000),
            diffs: DiffManager::new(),
        };
        m.save(d.path()).unwrap();
        let diffs = [
            MetaDiff::clean(0, 3).unwrap().with_timestamp(1_700_000_100),
            MetaDiff::clean(3, 7)
                .unwrap()
                .with_mergeable(true)
                .with_timestamp(1_700_000_200),
        ];
        for (i, df) in diffs.iter().enumerate() {
            fs::write(diff_path(d.path(), df), vec![0u8; 100 * (i + 1)]).unwrap();
        }
        fs::write(d.path().join("junk.wdiff"), b"x").unwrap();
        fs::write(d.path().join("other"), b"x").unwrap();
        let back = VolMeta::load(d.path()).unwrap();
        assert_eq!((back.uuid, back.archive_uuid), ([3; 16], [4; 16]));
        assert_eq!(back.base, m.base);
        let got: Vec<MetaDiff> = back.diffs.iter().cloned().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], diffs[0].clone().with_data_size(100));
        assert_eq!(got[1], diffs[1].clone().with_data_size(200));
        assert_eq!(back.latest_snapshot(), MetaSnap::clean(7));
        let (_, skipped) = scan_diffs(d.path()).unwrap();
        assert_eq!(skipped, vec![d.path().join("junk.wdiff")]);
    }

    #[test]
    fn missing_files_read_as_initial_and_bad_ones_are_named() {
        let d = tempfile::tempdir().unwrap();
        let m = VolMeta::load(d.path()).unwrap();
        assert!(m.base.is_empty());
        assert_eq!(m.uuid, [0; 16]);
        fs::write(d.path().join(UUID_FILE), b"short").unwrap();
        let e = VolMeta::load(d.path()).unwrap_err();
        assert!(e.to_string().contains("5 bytes, expected 16"), "{e}");
        fs::remove_file(d.path().join(UUID_FILE)).unwrap();
        fs::write(d.path().join(BASE_FILE), b"garbage").unwrap();
        assert!(VolMeta::load(d.path()).is_err());
    }
}
