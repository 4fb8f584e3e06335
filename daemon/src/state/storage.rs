//! The storage volume states (walb-tools.md §3.1).
//!
//! Steady: Clear, SyncReady, Stopped, Target, Standby. A full or hash backup runs
//! SyncReady → FullSync/HashSync → Stopped and then, automatically, Stopped →
//! StartTarget → Target. A log overflow stops a Target volume (Target → StopTarget →
//! Stopped).

use super::{t, Transition, VolState};

pub use walb_wire::msg::StorageState;

use StorageState as S;

impl VolState for StorageState {
    const ALL: &'static [Self] = StorageState::ALL;
    const TRANSITIONS: &'static [Transition<Self>] = &[
        t(S::Clear, S::InitVol, S::SyncReady),
        t(S::SyncReady, S::ClearVol, S::Clear),
        t(S::SyncReady, S::StartStandby, S::Standby),
        t(S::Standby, S::StopStandby, S::SyncReady),
        t(S::SyncReady, S::FullSync, S::Stopped),
        t(S::SyncReady, S::HashSync, S::Stopped),
        t(S::Stopped, S::Reset, S::SyncReady),
        t(S::Stopped, S::StartTarget, S::Target),
        t(S::Target, S::StopTarget, S::Stopped),
    ];
    const CLEAR: Self = S::Clear;

    fn name(self) -> &'static str {
        StorageState::name(self)
    }

    fn to_wire(self) -> walb_wire::msg::VolumeState {
        walb_wire::msg::VolumeState::Storage(self)
    }
}

/// States in which wlogs are sent (`WlogSend`): Target, and during a backup.
pub const WLOG_SEND: &[StorageState] = &[S::Target, S::FullSync, S::HashSync];
/// States in which logs are freed without sending (`WlogRemove`).
pub const WLOG_REMOVE: &[StorageState] = &[S::Standby];
/// States `stop` accepts.
pub const STOP_ACCEPT: &[StorageState] = &[S::Target, S::Standby];
/// States `snapshot` accepts.
pub const SNAPSHOT_ACCEPT: &[StorageState] = &[S::Target, S::Stopped];
/// States `resize` accepts.
pub const RESIZE_ACCEPT: &[StorageState] = &[S::SyncReady, S::Stopped, S::Target, S::Standby];
/// States in which the device's log is monitored.
pub const MONITORED: &[StorageState] = &[
    S::Target,
    S::Standby,
    S::FullSync,
    S::HashSync,
    S::StartTarget,
    S::StopTarget,
    S::StartStandby,
    S::StopStandby,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{check_every_transition, check_table, Machine};

    #[test]
    fn table_is_well_formed() {
        check_table::<StorageState>();
    }

    /// The steady marks the console reads (in `walb_wire`) are the table's.
    #[test]
    fn wire_steady_marks_are_the_tables() {
        for &s in <StorageState as VolState>::ALL {
            assert_eq!(StorageState::is_steady(s), VolState::is_steady(s), "{s:?}");
        }
    }

    #[test]
    fn every_transition_commits_and_rolls_back() {
        check_every_transition::<StorageState>();
    }

    #[test]
    fn full_backup_path_reaches_target() {
        let mut m = Machine::<StorageState>::default();
        m.begin(&[S::Clear], S::InitVol).unwrap();
        m.commit(S::SyncReady).unwrap();
        m.begin(&[S::SyncReady], S::FullSync).unwrap();
        m.commit(S::Stopped).unwrap();
        m.begin(&[S::Stopped], S::StartTarget).unwrap();
        m.commit(S::Target).unwrap();
        assert_eq!(m.state(), S::Target);
        // A full backup cannot start from Target.
        assert!(m.begin(&[S::SyncReady], S::FullSync).is_err());
    }
}
