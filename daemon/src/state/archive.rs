//! The archive volume states and action exclusions (walb-tools.md §3.3).
//!
//! Steady: Clear, SyncReady, Archived, Stopped. Receiving a full backup or a full/resync
//! replication goes SyncReady → FullSync/Resync → Archived; hash backup, wdiff receive and
//! hash/diff replication run inside Archived through a temporary state. Long operations
//! on an archived volume (restore, merge, apply, replicate, resize) are actions, which
//! exclude each other through [`deny_list`].

use super::{t, Transition, VolState};

pub use walb_wire::msg::ArchiveState;

use ArchiveState as A;

impl VolState for ArchiveState {
    const ALL: &'static [Self] = ArchiveState::ALL;
    const TRANSITIONS: &'static [Transition<Self>] = &[
        t(A::Clear, A::InitVol, A::SyncReady),
        t(A::SyncReady, A::ClearVol, A::Clear),
        t(A::Stopped, A::ClearVol, A::Clear),
        t(A::SyncReady, A::FullSync, A::Archived),
        t(A::SyncReady, A::Resync, A::Archived),
        t(A::Archived, A::HashSync, A::Archived),
        t(A::Archived, A::WdiffRecv, A::Archived),
        t(A::Archived, A::ReplSyncAsServer, A::Archived),
        t(A::Archived, A::Stop, A::Stopped),
        t(A::Stopped, A::Start, A::Archived),
        t(A::Stopped, A::ResetVol, A::SyncReady),
        t(A::SyncReady, A::ResetVol, A::SyncReady),
    ];
    const CLEAR: Self = A::Clear;

    fn name(self) -> &'static str {
        ArchiveState::name(self)
    }

    fn to_wire(self) -> walb_wire::msg::VolumeState {
        walb_wire::msg::VolumeState::Archive(self)
    }
}

/// aActive: states in which an archive serves its data.
pub const ACTIVE: &[ArchiveState] = &[A::Archived, A::HashSync, A::WdiffRecv, A::ReplSyncAsServer];
/// aActive plus Stopped.
pub const ACTIVE_OR_STOPPED: &[ArchiveState] = &[
    A::Archived,
    A::HashSync,
    A::WdiffRecv,
    A::ReplSyncAsServer,
    A::Stopped,
];
/// States a replication server accepts.
pub const REPL_SERVER_ACCEPT: &[ArchiveState] = &[A::SyncReady, A::Archived];

/// Action names (the `num-action` argument).
pub mod action {
    /// Materializing a snapshot.
    pub const RESTORE: &str = "Restore";
    /// Replicating to another archive (as the source).
    pub const REPL_SYNC_AS_CLIENT: &str = "ReplSyncAsClient";
    /// Applying diffs to the base.
    pub const APPLY: &str = "Apply";
    /// Merging diffs.
    pub const MERGE: &str = "Merge";
    /// Growing the volume.
    pub const RESIZE: &str = "Resize";
    /// Every action, in the order `all-actions` prints them.
    pub const ALL: [&str; 5] = [MERGE, APPLY, RESTORE, REPL_SYNC_AS_CLIENT, RESIZE];
}

/// What an operation must not run beside (walb-tools.md §3.3); `None` = every action.
pub fn deny_list(op: &str) -> Option<&'static [&'static str]> {
    use action::*;
    match op {
        RESTORE => Some(&[RESTORE, RESIZE]),
        REPL_SYNC_AS_CLIENT => Some(&[RESTORE, REPL_SYNC_AS_CLIENT, APPLY, MERGE, RESIZE]),
        APPLY => Some(&[RESTORE, REPL_SYNC_AS_CLIENT, APPLY, MERGE, RESIZE]),
        MERGE => Some(&[APPLY, MERGE, RESIZE]),
        RESIZE => Some(&[RESTORE, REPL_SYNC_AS_CLIENT, APPLY, RESIZE]),
        "del-restored" | "del-cold" => Some(&[RESTORE, RESIZE]),
        "enable-snapshot" | "disable-snapshot" => Some(&[APPLY, MERGE]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{check_every_transition, check_table, Actions, Machine};

    #[test]
    fn table_is_well_formed() {
        check_table::<ArchiveState>();
    }

    /// The steady marks the console reads (in `walb_wire`) are the table's.
    #[test]
    fn wire_steady_marks_are_the_tables() {
        for &s in <ArchiveState as VolState>::ALL {
            assert_eq!(ArchiveState::is_steady(s), VolState::is_steady(s), "{s:?}");
        }
    }

    #[test]
    fn every_transition_commits_and_rolls_back() {
        check_every_transition::<ArchiveState>();
    }

    #[test]
    fn wdiff_receive_needs_archived() {
        let mut m = Machine::new(A::Stopped);
        let e = m.begin(&[A::Archived], A::WdiffRecv).unwrap_err();
        assert_eq!(e.to_string(), "volume is Stopped; this needs Archived");
    }

    #[test]
    fn deny_lists_match_walb_tools() {
        let mut a = Actions::default();
        a.begin(action::MERGE, deny_list(action::MERGE), 1).unwrap();
        // Restore may run beside a merge; apply and resize may not.
        a.begin(action::RESTORE, deny_list(action::RESTORE), 2)
            .unwrap();
        assert!(a.begin(action::APPLY, deny_list(action::APPLY), 3).is_err());
        assert!(a
            .begin(action::RESIZE, deny_list(action::RESIZE), 3)
            .is_err());
        assert!(a
            .check_none("del-restored", deny_list("del-restored"))
            .is_err());
        a.end(action::RESTORE);
        a.check_none("del-restored", deny_list("del-restored"))
            .unwrap();
        assert!(a.check_none("init-vol", deny_list("init-vol")).is_err());
    }
}
