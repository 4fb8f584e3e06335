//! What each volume should hold, and the run's counters.
//!
//! A snapshot enters the model only when it was taken on a quiet device (the writer
//! paused and flushed): its gid, the SHA-256 of the device at that instant and the size
//! hashed. Whatever an archive later lists as restorable among these gids must restore
//! to exactly those bytes.

use std::collections::BTreeMap;

/// A snapshot taken on a quiet device.
#[derive(Debug, Clone)]
pub struct Snap {
    /// Its gid.
    pub gid: u64,
    /// SHA-256 of the device's first `size` bytes when it was taken.
    pub sha: String,
    /// Bytes hashed.
    pub size: u64,
    /// Times a restore matched.
    pub verified: u32,
}

/// One volume.
#[derive(Debug, Clone, Default)]
pub struct VolModel {
    /// Snapshots with their device hashes, oldest first.
    pub snaps: Vec<Snap>,
    /// Gids made implicit by disable-snapshot (not yet enabled again).
    pub disabled: Vec<u64>,
    /// a1 holds a replica.
    pub replicated: bool,
    /// The proxies send to a1 too.
    pub syncing: bool,
    /// The latest gid replicated to a1 (a0 and a1 agree from there on).
    pub replicated_at: u64,
    /// Device size, bytes.
    pub size: u64,
}

impl VolModel {
    /// The snapshot of `gid`, if taken quietly.
    pub fn snap(&self, gid: u64) -> Option<&Snap> {
        self.snaps.iter().find(|s| s.gid == gid)
    }
}

/// The counts a run reports.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Operations by kind: (succeeded, failed or refused).
    pub ops: BTreeMap<String, (u64, u64)>,
    /// Faults injected by kind.
    pub faults: BTreeMap<String, u64>,
    /// Fault steps skipped (e.g. disk full without root's file systems).
    pub skipped: BTreeMap<String, u64>,
    /// Restores compared with the device hash during the run (sampled).
    pub sampled_restores: u64,
    /// Restores compared at the end (every outstanding snapshot).
    pub final_restores: u64,
    /// Steady-state checks (after restarts and at the end) passed.
    pub steady_checks: u64,
    /// Whole-device checks after device crashes.
    pub crash_checks: u64,
    /// Random blocks read back by the writers.
    pub readbacks: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Operator repairs needed at the end (volume not back to Target on its own).
    pub repairs: u64,
    /// Overflowed volumes the operator's watch levelled during the run.
    pub watched: u64,
    /// Snapshots taken quietly.
    pub snapshots: u64,
}

impl Counts {
    /// Records an operation's outcome.
    pub fn op(&mut self, kind: &str, ok: bool) {
        let e = self.ops.entry(kind.into()).or_default();
        if ok {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// Total faults injected.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Total operations.
    pub fn total_ops(&self) -> u64 {
        self.ops.values().map(|(a, b)| a + b).sum()
    }
}
