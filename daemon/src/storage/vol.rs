//! The persisted metadata of a storage volume (contract layout, walb-tools.md §4.8).
//!
//! `<base>/<vol>/` holds:
//!
//! - `path`: the WalB device path (text);
//! - `state`: the steady state (written by [`crate::vol::VolCore`]);
//! - `uuid`: 16 bytes, the log device's uuid since the last log reset;
//! - `done`: the [`MetaLsidGid`] of the last snapshot a proxy acknowledged;
//! - `queue`: the snapshots not yet shipped (magic `0x119d83a7`, then records oldest
//!   first);
//! - `fullsync`: the [`MetaState`] the last full backup (`<|0,gidE|>`) or hash backup
//!   (`<|gidB,gidE|>`) left the archive in;
//! - `reset`: while a log reset runs, the gid it starts (an intent, finished at boot).
//!
//! Every file is replaced atomically ([`crate::persist::write_atomic`]), so a daemon
//! killed at any instant finds each file old or new. The done record is written before
//! the queue: a queue still holding records at or before the done record is trimmed when
//! loaded. A volume directory is created whole before its `state` file, between the
//! marker of an unfinished directory ([`crate::persist::voldir`]) written first and
//! removed last; `clear-vol` marks the directory and removes the `state` file before
//! anything else. So a directory with the marker and no `state` file is an interrupted
//! `init-vol` or `clear-vol`, removed at boot, while a directory with neither is not the
//! daemon's and is left alone.

use std::path::{Path, PathBuf};

use walb_kernel::meta::{MetaLsidGid, MetaState};
use walb_wire::msg::Uuid;

use crate::persist::{self, voldir, PersistError, VolRule};
use crate::storage::snap::{self, Snaps};

/// What makes a storage volume directory: its state file.
pub const DIR_RULE: VolRule = VolRule::File(file::STATE);

/// File names.
pub mod file {
    /// Device path.
    pub const PATH: &str = "path";
    /// Steady state.
    pub const STATE: &str = "state";
    /// Log uuid.
    pub const UUID: &str = "uuid";
    /// Done record.
    pub const DONE: &str = "done";
    /// Snapshot queue.
    pub const QUEUE: &str = "queue";
    /// Meta state of the last full backup.
    pub const FULLSYNC: &str = "fullsync";
    /// Log reset intent.
    pub const RESET: &str = "reset";
    /// The newest gid handed out before the last log reset (absent: none yet).
    pub const HANDED_OUT: &str = "handed-out";
}

/// Magic at the start of the queue file (walb-tools' queue preamble).
pub const QUEUE_MAGIC: u32 = 0x119d_83a7;

/// Why the metadata could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A file operation failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A file is missing.
    #[error("{}: missing", .0.display())]
    Missing(PathBuf),
    /// A file does not decode.
    #[error("{}: {what}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// Everything persisted about a volume but its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolMeta {
    /// WalB device path given to init-vol.
    pub wdev_path: String,
    /// The log's uuid (zero until the first log reset).
    pub uuid: Uuid,
    /// Done record and snapshot queue.
    pub snaps: Snaps,
    /// The meta state the last full or hash backup left the archive in.
    pub fullsync: Option<MetaState>,
    /// The newest gid handed out before the last log reset: a reset forgets its queue,
    /// not that its gids were given out.
    pub handed_out: Option<u64>,
}

impl VolMeta {
    /// The newest gid this volume ever handed out, if any.
    pub fn newest_gid(&self) -> Option<u64> {
        let latest = self.snaps.latest();
        let now = snap::is_valid(latest).then_some(latest.gid);
        now.max(self.handed_out)
    }

    /// The gid a log reset that the archive wants at `floor` starts at: never one this
    /// volume already handed out, so that a gid names one image for good. (Snapshots
    /// taken before an overflow and never shipped leave their gids unused, where
    /// walb-tools would give them to later, different images.)
    pub fn restart_gid(&self, floor: u64) -> u64 {
        match self.newest_gid() {
            Some(g) => floor.max(g.saturating_add(1)),
            None => floor,
        }
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> MetaError {
    MetaError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Encodes the queue file.
pub fn encode_queue(queue: &[MetaLsidGid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + queue.len() * MetaLsidGid::ENCODED_LEN);
    out.extend_from_slice(&QUEUE_MAGIC.to_le_bytes());
    for r in queue {
        r.write_bytes(&mut out);
    }
    out
}

/// Decodes the queue file (`path` for messages).
pub fn decode_queue(path: &Path, b: &[u8]) -> Result<Vec<MetaLsidGid>, MetaError> {
    let Some((magic, rest)) = b.split_first_chunk::<4>() else {
        return Err(corrupt(path, "shorter than its magic"));
    };
    if u32::from_le_bytes(*magic) != QUEUE_MAGIC {
        return Err(corrupt(path, "bad magic"));
    }
    if rest.len() % MetaLsidGid::ENCODED_LEN != 0 {
        return Err(corrupt(
            path,
            format!("{} bytes of records is not whole records", rest.len()),
        ));
    }
    let mut v = Vec::with_capacity(rest.len() / MetaLsidGid::ENCODED_LEN);
    for c in rest.chunks_exact(MetaLsidGid::ENCODED_LEN) {
        v.push(MetaLsidGid::from_bytes(c).map_err(|e| corrupt(path, e.to_string()))?);
    }
    for w in v.windows(2) {
        if w[0].gid >= w[1].gid || w[0].lsid > w[1].lsid {
            return Err(corrupt(
                path,
                format!("records out of order: {} then {}", w[0], w[1]),
            ));
        }
    }
    Ok(v)
}

fn read_required(path: &Path) -> Result<Vec<u8>, MetaError> {
    persist::read_opt(path)?.ok_or_else(|| MetaError::Missing(path.to_path_buf()))
}

/// Creates the files of a new volume in `dir` (all but `state`), after the marker of an
/// unfinished directory ([`voldir::begin`]: a directory this daemon did not create is
/// refused). [`voldir::end`] removes the marker once the state is written.
pub fn init(dir: &Path, wdev_path: &str, now: u64) -> Result<VolMeta, MetaError> {
    voldir::begin(dir, &DIR_RULE)?;
    let meta = VolMeta {
        wdev_path: wdev_path.to_owned(),
        uuid: [0; 16],
        snaps: Snaps::unknown(now),
        fullsync: None,
        handed_out: None,
    };
    persist::write_atomic(&dir.join(file::QUEUE), &encode_queue(&[]))?;
    persist::write_atomic(&dir.join(file::PATH), wdev_path.as_bytes())?;
    persist::write_atomic(&dir.join(file::DONE), &meta.snaps.done.to_bytes())?;
    persist::write_atomic(&dir.join(file::UUID), &meta.uuid)?;
    Ok(meta)
}

/// Loads a volume's metadata from `dir`.
pub fn load(dir: &Path) -> Result<VolMeta, MetaError> {
    let p = dir.join(file::PATH);
    let wdev_path = persist::read_text_opt(&p)?.ok_or(MetaError::Missing(p.clone()))?;
    if wdev_path.is_empty() {
        return Err(corrupt(&p, "empty device path"));
    }
    let p = dir.join(file::UUID);
    let b = read_required(&p)?;
    let uuid: Uuid = b
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(&p, format!("{} bytes, expected 16", b.len())))?;
    let p = dir.join(file::DONE);
    let done =
        MetaLsidGid::from_bytes(&read_required(&p)?).map_err(|e| corrupt(&p, e.to_string()))?;
    let p = dir.join(file::QUEUE);
    let queue = decode_queue(&p, &read_required(&p)?)?;
    let p = dir.join(file::FULLSYNC);
    let fullsync = match persist::read_opt(&p)? {
        Some(b) => Some(MetaState::from_bytes(&b).map_err(|e| corrupt(&p, e.to_string()))?),
        None => None,
    };
    let p = dir.join(file::HANDED_OUT);
    let handed_out = match persist::read_text_opt(&p)? {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| corrupt(&p, format!("{s:?} is not a gid")))?,
        ),
    };
    let mut snaps = Snaps { done, queue };
    snaps.remove_old();
    Ok(VolMeta {
        wdev_path,
        uuid,
        snaps,
        fullsync,
        handed_out,
    })
}

/// Persists the done record, then the queue.
pub fn save_snaps(dir: &Path, snaps: &Snaps) -> Result<(), MetaError> {
    persist::write_atomic(&dir.join(file::DONE), &snaps.done.to_bytes())?;
    save_queue(dir, snaps)
}

/// Persists the queue only (a new snapshot).
pub fn save_queue(dir: &Path, snaps: &Snaps) -> Result<(), MetaError> {
    persist::write_atomic(&dir.join(file::QUEUE), &encode_queue(&snaps.queue))?;
    Ok(())
}

/// Persists the uuid.
pub fn save_uuid(dir: &Path, uuid: &Uuid) -> Result<(), MetaError> {
    persist::write_atomic(&dir.join(file::UUID), uuid)?;
    Ok(())
}

/// Persists the meta state of the last full backup.
pub fn save_fullsync(dir: &Path, st: &MetaState) -> Result<(), MetaError> {
    persist::write_atomic(&dir.join(file::FULLSYNC), &st.to_bytes())?;
    Ok(())
}

/// Persists the newest gid handed out before a log reset.
pub fn save_handed_out(dir: &Path, gid: u64) -> Result<(), MetaError> {
    persist::write_atomic(&dir.join(file::HANDED_OUT), gid.to_string().as_bytes())?;
    Ok(())
}

/// Records the intent to reset the log with first gid `gid`.
pub fn write_reset_intent(dir: &Path, gid: u64) -> Result<(), MetaError> {
    persist::write_atomic(&dir.join(file::RESET), gid.to_string().as_bytes())?;
    Ok(())
}

/// The gid of an unfinished log reset, if any.
pub fn read_reset_intent(dir: &Path) -> Result<Option<u64>, MetaError> {
    let p = dir.join(file::RESET);
    match persist::read_text_opt(&p)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| corrupt(&p, format!("{s:?} is not a gid"))),
    }
}

/// Removes the reset intent.
pub fn remove_reset_intent(dir: &Path) -> Result<(), MetaError> {
    persist::remove_file(&dir.join(file::RESET))?;
    Ok(())
}

/// Removes a volume directory: marked, its `state` file removed, then the rest
/// ([`voldir::remove`]).
pub fn remove(dir: &Path) -> Result<(), MetaError> {
    voldir::remove(dir, &DIR_RULE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_load_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("v0");
        let m = init(&dir, "/dev/walb/w0", 42).unwrap();
        assert_eq!(load(&dir).unwrap(), m);
        assert!(!crate::storage::snap::is_valid(&m.snaps.done));
        let mut snaps = Snaps::reset(3, 50);
        snaps.take(100, false, 51, 10, false).unwrap();
        snaps.take(200, true, 52, 10, false).unwrap();
        save_snaps(&dir, &snaps).unwrap();
        save_uuid(&dir, &[7; 16]).unwrap();
        let st = MetaState::new(walb_kernel::meta::MetaSnap::new(0, 9).unwrap(), 5);
        save_fullsync(&dir, &st).unwrap();
        let back = load(&dir).unwrap();
        assert_eq!(back.snaps, snaps);
        assert_eq!(back.uuid, [7; 16]);
        assert!(back.fullsync.unwrap().same_snapshots(&st));
    }

    #[test]
    fn a_log_reset_never_restarts_below_a_gid_handed_out() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("v0");
        let mut m = init(&dir, "/dev/walb/w0", 0).unwrap();
        // A fresh volume has handed out nothing.
        assert_eq!(m.restart_gid(7), 7);
        // Shipped up to 20, then 21 and 26 taken but never shipped (an overflow).
        m.snaps = Snaps::reset(20, 0);
        m.snaps.take(10, false, 1, 100, false).unwrap();
        assert_eq!(m.snaps.take(500, false, 2, 100, false).unwrap().gid, 26);
        // The archive's latest snapshot is 20: the reset starts after 26, not at 21.
        assert_eq!(m.restart_gid(21), 27);
        // An archive ahead of the storage (a replacement storage) keeps its floor.
        assert_eq!(m.restart_gid(40), 40);
        // A reset at 0 (`reset`, full backup) forgets the queue, not the gids: persisted.
        save_handed_out(&dir, 26).unwrap();
        let mut back = load(&dir).unwrap();
        assert_eq!(back.handed_out, Some(26));
        back.snaps = Snaps::reset(0, 0);
        assert_eq!(back.restart_gid(21), 27);
        // A damaged record is named, not taken for "none".
        std::fs::write(dir.join(file::HANDED_OUT), "x1").unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(
            e.contains(file::HANDED_OUT) && e.contains("not a gid"),
            "{e}"
        );
    }

    #[test]
    fn a_crash_between_done_and_queue_is_trimmed_at_load() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("v0");
        init(&dir, "/dev/walb/w0", 0).unwrap();
        let mut snaps = Snaps::reset(0, 0);
        let a = snaps.take(100, true, 1, 1000, false).unwrap();
        snaps.take(200, true, 2, 1000, false).unwrap();
        save_snaps(&dir, &snaps).unwrap();
        // The done record moved to `a`, the queue was not rewritten yet.
        persist::write_atomic(&dir.join(file::DONE), &a.to_bytes()).unwrap();
        let back = load(&dir).unwrap();
        assert_eq!(back.snaps.done, a);
        assert_eq!(back.snaps.queue.len(), 1);
        assert_eq!(back.snaps.queue[0].lsid, 200);
    }

    #[test]
    fn corrupt_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("v0");
        init(&dir, "/dev/walb/w0", 0).unwrap();
        std::fs::write(dir.join(file::QUEUE), b"\xa7\x83\x9d\x11xyz").unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains("queue") && e.contains("whole records"), "{e}");
        std::fs::write(dir.join(file::QUEUE), b"nope").unwrap();
        assert!(load(&dir).unwrap_err().to_string().contains("magic"));
        std::fs::remove_file(dir.join(file::UUID)).unwrap();
        assert!(matches!(load(&dir), Err(MetaError::Missing(_))));
    }

    #[test]
    fn removal_goes_through_the_marker() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("v0");
        init(&dir, "/dev/walb/w0", 0).unwrap();
        assert!(
            dir.join(voldir::MARKER).exists(),
            "marked until the state is written"
        );
        write_reset_intent(&dir, 9).unwrap();
        assert_eq!(read_reset_intent(&dir).unwrap(), Some(9));
        remove_reset_intent(&dir).unwrap();
        assert_eq!(read_reset_intent(&dir).unwrap(), None);
        persist::write_atomic(&dir.join(file::STATE), b"SyncReady").unwrap();
        voldir::end(&dir).unwrap();
        remove(&dir).unwrap();
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        remove(&dir).unwrap();
    }
}
