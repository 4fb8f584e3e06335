//! The archive volume states and action exclusions (walb-tools.md §3.3).
//!
//! Steady: Clear, SyncReady, Archived, Stopped. Receiving a full backup or a full/resync
//! replication goes SyncReady → FullSync/Resync → Archived; hash backup, wdiff receive and
//! hash/diff replication run inside Archived through a temporary state. Long operations
//! on an archived volume (restore, merge, apply, replicate, resize) are actions, which
//! exclude each other through [`deny_list`].

use super::{t, Transition, VolState};

/// An archive volume's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveState {
    /// No metadata, no base image.
    Clear,
    /// Ready to receive a full backup, full replication or resync.
    SyncReady,
    /// Has a base image (clean or dirty) and possibly diffs.
    Archived,
    /// Refuses wdiff transfers for now (`stopped`).
    Stopped,
    /// `init-vol` running.
    InitVol,
    /// `clear-vol` running.
    ClearVol,
    /// `reset-vol` running.
    ResetVol,
    /// Full backup or full replication being received.
    FullSync,
    /// Resync replication being received.
    Resync,
    /// Hash backup being received.
    HashSync,
    /// One wdiff transfer being received.
    WdiffRecv,
    /// Hash or diff replication being received.
    ReplSyncAsServer,
    /// `stop` running.
    Stop,
    /// `start` running.
    Start,
}

use ArchiveState as A;

impl VolState for ArchiveState {
    const ALL: &'static [Self] = &[
        A::Clear,
        A::SyncReady,
        A::Archived,
        A::Stopped,
        A::InitVol,
        A::ClearVol,
        A::ResetVol,
        A::FullSync,
        A::Resync,
        A::HashSync,
        A::WdiffRecv,
        A::ReplSyncAsServer,
        A::Stop,
        A::Start,
    ];
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
        match self {
            A::Clear => "Clear",
            A::SyncReady => "SyncReady",
            A::Archived => "Archived",
            A::Stopped => "Stopped",
            A::InitVol => "InitVol",
            A::ClearVol => "ClearVol",
            A::ResetVol => "ResetVol",
            A::FullSync => "FullSync",
            A::Resync => "Resync",
            A::HashSync => "HashSync",
            A::WdiffRecv => "WdiffRecv",
            A::ReplSyncAsServer => "ReplSyncAsServer",
            A::Stop => "Stop",
            A::Start => "Start",
        }
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
