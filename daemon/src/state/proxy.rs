//! The proxy volume states (walb-tools.md §3.2).
//!
//! Steady: Clear, Stopped, Started. The proxy persists no state: a volume directory boots
//! as Stopped and is started unless the daemon runs with `--stopped`.

use super::{t, Transition, VolState};

pub use walb_wire::msg::ProxyState;

use ProxyState as P;

impl VolState for ProxyState {
    const ALL: &'static [Self] = ProxyState::ALL;
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
        ProxyState::name(self)
    }

    fn to_wire(self) -> walb_wire::msg::VolumeState {
        walb_wire::msg::VolumeState::Proxy(self)
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

    /// The steady marks the console reads (in `walb_wire`) are the table's.
    #[test]
    fn wire_steady_marks_are_the_tables() {
        for &s in <ProxyState as VolState>::ALL {
            assert_eq!(ProxyState::is_steady(s), VolState::is_steady(s), "{s:?}");
        }
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
