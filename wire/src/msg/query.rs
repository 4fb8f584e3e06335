//! Queries: what an operator (or a peer) asks a daemon to tell.

use serde::{Deserialize, Serialize};

use super::DiffRange;

/// Read-only queries: `status`, `version` and the `get` targets (§2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Query {
    /// Every running action per active volume (archive).
    AllActions,
    /// Diffs whose chain is applicable from the base (archive).
    ApplicableDiff {
        /// Volume.
        vol: String,
        /// Stop once the snapshot passes this gid.
        gid_max: Option<u64>,
    },
    /// A proxy volume's destinations (`archive-info get|list`).
    ArchiveInfo {
        /// Volume.
        vol: String,
        /// One archive, or all.
        archive: Option<String>,
    },
    /// Archive uuid (archive).
    ArchiveUuid {
        /// Volume.
        vol: String,
    },
    /// Base meta state (archive); all active volumes if `vol` is `None`.
    Base {
        /// Volume.
        vol: Option<String>,
    },
    /// MurmurHash3 of the virtual image of snapshot `gid` (archive).
    BlockHash {
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
    },
    /// Cold snapshot gids (archive).
    Cold {
        /// Volume.
        vol: String,
    },
    /// Diffs of a volume in a gid range (archive: stored; proxy: queued, per archive).
    Diff {
        /// Volume.
        vol: String,
        /// Lower gid bound.
        gid_b: Option<u64>,
        /// Upper gid bound.
        gid_e: Option<u64>,
        /// Proxy only: the queue of this archive instead of `received/`.
        archive: Option<String>,
    },
    /// Whether this diff exists (archive).
    ExistsDiff {
        /// Volume.
        vol: String,
        /// The diff.
        diff: DiffRange,
    },
    /// Whether a base image exists (archive).
    ExistsBaseImage {
        /// Volume.
        vol: String,
    },
    /// Daemon counters (does not reset them, unlike walb-tools' handler-stat).
    HandlerStat,
    /// `storage`, `proxy` or `archive` (and the daemon's identity).
    HostType,
    /// Whether the log overflowed (storage).
    IsOverflow {
        /// Volume.
        vol: String,
    },
    /// Whether sending to `archive` gave up (proxy).
    IsWdiffSendError {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
    },
    /// Latest snapshot (all volumes if `None`).
    LatestSnap {
        /// Volume.
        vol: Option<String>,
    },
    /// Log usage (storage; all volumes if `None`).
    LogUsage {
        /// Volume.
        vol: Option<String>,
    },
    /// The snapshot reached by applying the chain up to `gid` (archive).
    MetaSnap {
        /// Volume.
        vol: String,
        /// Up to this gid (latest if `None`).
        gid: Option<u64>,
    },
    /// The meta state reached by applying the chain up to `gid` (archive).
    MetaState {
        /// Volume.
        vol: String,
        /// Return the "applying" form.
        applying: bool,
        /// Up to this gid (latest if `None`).
        gid: Option<u64>,
    },
    /// Count of running actions of a kind (archive).
    NumAction {
        /// Volume.
        vol: String,
        /// Action name (`Merge`, `Apply`, `Restore`, `ReplSyncAsClient`, `Resize`).
        action: String,
    },
    /// Number and total size of diffs in a range (archive).
    DiffStats {
        /// Volume.
        vol: String,
        /// Lower gid bound.
        gid_b: Option<u64>,
        /// Upper gid bound.
        gid_e: Option<u64>,
    },
    /// The daemon's process id.
    Pid,
    /// Logical blocks done by the running sync (archive).
    Progress {
        /// Volume.
        vol: String,
    },
    /// Restorable snapshots (archive).
    Restorable {
        /// Volume.
        vol: String,
        /// Include implicit snapshots.
        all: bool,
    },
    /// Restored snapshot gids (archive).
    Restored {
        /// Volume.
        vol: String,
    },
    /// Current state name of a volume.
    State {
        /// Volume.
        vol: String,
    },
    /// The peers bound to a volume ([`Reply::Peers`]).
    Peers {
        /// Volume.
        vol: String,
    },
    /// Human-readable status lines (a summary if `vol` is `None`).
    Status {
        /// Volume.
        vol: Option<String>,
    },
    /// Replication lag to each destination.
    TsDelta,
    /// Volume uuid.
    Uuid {
        /// Volume.
        vol: String,
    },
    /// The daemon's software and protocol version.
    Version,
    /// Volume names.
    Vols,
    /// Base image size, logical blocks (archive).
    VolSize {
        /// Volume.
        vol: String,
    },
    /// The archive's LVM volume group and thin pool.
    VolumeGroup,
    /// A volume's retention policy and what the next pass would do (archive;
    /// [`super::Reply::Retention`]).
    Retention {
        /// Volume.
        vol: String,
    },
}
