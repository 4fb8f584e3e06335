//! The proxy volume states (walb-tools.md §3.2).
//!
//! Steady: Clear, Stopped, Started. The proxy persists no state: a volume directory boots
//! as Stopped and is started unless the daemon runs with `--stopped`.

use super::{t, Transition, VolState};

/// A proxy volume's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyState {
    /// No metadata.
    Clear,
    /// No wlog receive, no wdiff send; archive-info editing allowed.
    Stopped,
    /// Receiving wlogs and sending wdiffs.
    Started,
    /// `start` running.
    Start,
    /// `stop graceful|force` running.
    Stop,
    /// `clear-vol` running.
    ClearVol,
    /// `archive-info add|update` running.
    AddArchiveInfo,
    /// `archive-info delete` running.
    DeleteArchiveInfo,
    /// `stop empty`: delivering what is queued.
    WaitForEmpty,
    /// One wlog transfer being received.
    WlogRecv,
}

use ProxyState as P;

impl VolState for ProxyState {
    const ALL: &'static [Self] = &[
        P::Clear,
        P::Stopped,
        P::Started,
        P::Start,
        P::Stop,
        P::ClearVol,
        P::AddArchiveInfo,
        P::DeleteArchiveInfo,
        P::WaitForEmpty,
        P::WlogRecv,
    ];
    const TRANSITIONS: &'static [Transition<Self>] = &[
        t(P::Clear, P::AddArchiveInfo, P::Stopped),
        t(P::Stopped, P::AddArchiveInfo, P::Stopped),
        t(P::Stopped, P::DeleteArchiveInfo, P::Stopped),
        t(P::Stopped, P::DeleteArchiveInfo, P::Clear),
        t(P::Stopped, P::ClearVol, P::Clear),
        t(P::Stopped, P::Start, P::Started),
        t(P::Started, P::Stop, P::Stopped),
        t(P::Started, P::WaitForEmpty, P::Stopped),
        t(P::Started, P::WlogRecv, P::Started),
    ];
    const CLEAR: Self = P::Clear;

    fn name(self) -> &'static str {
        match self {
            P::Clear => "Clear",
            P::Stopped => "Stopped",
            P::Started => "Started",
            P::Start => "Start",
            P::Stop => "Stop",
            P::ClearVol => "ClearVol",
            P::AddArchiveInfo => "AddArchiveInfo",
            P::DeleteArchiveInfo => "DeleteArchiveInfo",
            P::WaitForEmpty => "WaitForEmpty",
            P::WlogRecv => "WlogRecv",
        }
    }
}

/// States in which wdiffs are sent to archives.
pub const WDIFF_SEND: &[ProxyState] = &[P::Started, P::WlogRecv, P::WaitForEmpty];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{check_every_transition, check_table, Machine};

    #[test]
    fn table_is_well_formed() {
        check_table::<ProxyState>();
    }

    #[test]
    fn every_transition_commits_and_rolls_back() {
        check_every_transition::<ProxyState>();
    }

    #[test]
    fn deleting_the_last_archive_clears_the_volume() {
        let mut m = Machine::<ProxyState>::default();
        m.begin(&[P::Clear, P::Stopped], P::AddArchiveInfo).unwrap();
        m.commit(P::Stopped).unwrap();
        m.begin(&[P::Stopped], P::DeleteArchiveInfo).unwrap();
        m.commit(P::Clear).unwrap();
        assert_eq!(m.state(), P::Clear);
    }
}
