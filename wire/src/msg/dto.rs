//! Snapshots, diffs and meta states as they travel.

use serde::{Deserialize, Serialize};

/// A snapshot: clean if `gid_b == gid_e`, dirty otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapDto {
    /// First gid.
    pub gid_b: u64,
    /// Last gid.
    pub gid_e: u64,
}

/// The four gids naming a diff `|b0,b1|-->|e0,e1|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DiffRange {
    /// Snapshot before.
    pub snap_b: SnapDto,
    /// Snapshot after.
    pub snap_e: SnapDto,
}

/// A diff's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MetaDiffDto {
    /// Which snapshots it links.
    pub range: DiffRange,
    /// Whether it may be merged with the next (its end is an implicit snapshot).
    pub mergeable: bool,
    /// Whether it is a compared diff (from a hash sync).
    pub comp_diff: bool,
    /// Timestamp, seconds since the epoch.
    pub timestamp_s: u64,
    /// File size, bytes (0 if unknown).
    pub size: u64,
}

impl MetaDiffDto {
    /// The mergeable clean diff `|gid_b|-->|gid_e|`, without time or size.
    pub fn clean(gid_b: u64, gid_e: u64) -> MetaDiffDto {
        MetaDiffDto {
            range: DiffRange {
                snap_b: SnapDto {
                    gid_b,
                    gid_e: gid_b,
                },
                snap_e: SnapDto {
                    gid_b: gid_e,
                    gid_e,
                },
            },
            mergeable: true,
            comp_diff: false,
            timestamp_s: 0,
            size: 0,
        }
    }
}

/// A meta state: a snapshot, or an apply in progress from one snapshot to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MetaStateDto {
    /// The snapshot (or the start of the apply).
    pub snap_b: SnapDto,
    /// The end of an apply in progress.
    pub snap_e: Option<SnapDto>,
    /// Timestamp, seconds since the epoch.
    pub timestamp_s: u64,
}

/// A volume's latest snapshot as one peer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapshotInfo {
    /// Volume.
    pub vol: String,
    /// Gid (`None` if unknown).
    pub gid: Option<u64>,
    /// Timestamp, seconds since the epoch.
    pub timestamp_s: u64,
    /// Lsid (storage only).
    pub lsid: Option<u64>,
    /// Whether the snapshot is explicit (restorable lists).
    pub explicit: bool,
}

// ----------------------------------------------------------------------------------------
// Errors
