//! Retention messages (archive): a volume's policy, what the next pass would do, the
//! change of a policy or of pins, and the event of a pass.
//!
//! Appended to protocol 3's enums (`Query::Retention`, `Command::SetRetention`,
//! `Reply::Retention`, `Event::Retention`); the event is sent only on connections that
//! speak [`PROTOCOL_VERSION_RETENTION`].

use serde::{Deserialize, Serialize};

/// The first protocol version with [`super::Event::Retention`].
pub const PROTOCOL_VERSION_RETENTION: u16 = 4;

/// A retention policy: PBS-style counts for explicit snapshots and a zrepl-style grid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RetentionPolicy {
    /// Whether it runs.
    pub on: bool,
    /// `keep-last`.
    pub keep_last: u32,
    /// `keep-hourly`.
    pub keep_hourly: u32,
    /// `keep-daily`.
    pub keep_daily: u32,
    /// `keep-weekly`.
    pub keep_weekly: u32,
    /// `keep-monthly`.
    pub keep_monthly: u32,
    /// `keep-yearly`.
    pub keep_yearly: u32,
    /// The grid, `1x1m(keep=all) | 59x1m | 23x1h`.
    pub grid: String,
}

/// What the next pass does to a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RetentionFate {
    /// Kept, for these reasons (`newest`, `pinned`, `replica`, `grid1`, `last`...).
    Keep(Vec<String>),
    /// Merged away.
    Fold,
    /// Applied into the base.
    Apply,
}

/// A restorable snapshot and its fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RetentionPoint {
    /// Gid.
    pub gid: u64,
    /// Timestamp, seconds since the epoch.
    pub timestamp: u64,
    /// Explicit (the diff after it is not mergeable).
    pub explicit: bool,
    /// Its fate.
    pub fate: RetentionFate,
}

/// A volume's retention: its policy and the next pass ([`super::Reply::Retention`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RetentionReport {
    /// Volume.
    pub vol: String,
    /// The policy in force.
    pub policy: RetentionPolicy,
    /// Whether it is the volume's own (else the archive's default).
    pub own: bool,
    /// Pinned gids.
    pub pinned: Vec<u64>,
    /// The archive's time of the plan, seconds since the epoch.
    pub now_s: u64,
    /// Every restorable snapshot, oldest first.
    pub points: Vec<RetentionPoint>,
    /// Explicit snapshots the pass makes implicit before merging them away.
    pub demote: Vec<u64>,
    /// Merges: the run from the first gid up to the second.
    pub merges: Vec<(u64, u64)>,
    /// Apply the base up to this gid.
    pub apply_to: Option<u64>,
    /// Diffs the volume holds.
    pub diffs: u64,
    /// The most diffs the policy lets the volume hold, given the diffs that arrived in
    /// the last two keep-all intervals (`None`: off, or no keep-all interval).
    pub bound: Option<u64>,
    /// Whether the change asked for was only shown, not made.
    pub dry_run: bool,
}

/// Changes a volume's retention ([`super::Command::SetRetention`]); answered with the
/// report under the new settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RetentionSet {
    /// Volume.
    pub vol: String,
    /// Go back to the archive's default policy first.
    pub default: bool,
    /// Settings as `(key, value)`: `retention` on/off, `keep-last`... counts,
    /// `keep-grid` a grid; the volume gets its own policy (from the one in force).
    pub set: Vec<(String, String)>,
    /// Gids to pin.
    pub pin: Vec<u64>,
    /// Gids to unpin.
    pub unpin: Vec<u64>,
    /// Only show what the next pass would do under the change.
    pub dry_run: bool,
}

/// A retention pass began ([`super::Event::Retention`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RetentionPass {
    /// Volume.
    pub vol: String,
    /// What it does: `demote 4,5`, `merge 3..9`, `apply 12`.
    pub step: String,
    /// Snapshots kept.
    pub kept: u64,
    /// Diffs held before the step.
    pub diffs: u64,
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn tag<T: Serialize>(v: &T) -> u8 {
        postcard::to_stdvec(v).unwrap()[0]
    }

    /// The retention variants come after every variant of protocol 3: what older peers
    /// send and receive keeps its encoding, and the event goes only to peers that know it.
    #[test]
    fn retention_variants_are_appended() {
        let vol = || "v".to_owned();
        assert_eq!(
            tag(&Query::Retention { vol: vol() }),
            tag(&Query::VolumeGroup) + 1
        );
        let scan = Command::VirtFullScan {
            vol: vol(),
            gid: 0,
            bulk_lb: None,
        };
        let set = Command::SetRetention(RetentionSet {
            vol: vol(),
            default: false,
            set: vec![],
            pin: vec![],
            unpin: vec![],
            dry_run: true,
        });
        assert_eq!(tag(&set), tag(&scan) + 1);
        let version = Reply::Version {
            software: vol(),
            protocol: 3,
        };
        let report = Reply::Retention(RetentionReport::default());
        assert!(tag(&report) > tag(&version));
        let pass = Event::Retention(RetentionPass {
            vol: vol(),
            step: "merge 1..3".into(),
            kept: 1,
            diffs: 2,
        });
        let queue = Event::Queue {
            vol: vol(),
            op: "merge".into(),
            ahead: None,
            running: 0,
            slots: 1,
        };
        assert!(tag(&pass) > tag(&queue));
        assert_eq!(pass.vol(), Some("v"));
        assert_eq!(pass.clone().for_version(PROTOCOL_VERSION_QUEUE), None);
        assert_eq!(
            pass.clone().for_version(PROTOCOL_VERSION_RETENTION),
            Some(pass)
        );
        const { assert!(PROTOCOL_VERSION_RETENTION > PROTOCOL_VERSION_QUEUE) };
    }
}
