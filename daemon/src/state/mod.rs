//! Volume state machines: pure transition tables, no IO, no clock.
//!
//! Every volume on every daemon has a state (walb-tools.md §3). A change is a transaction
//! `from → temporary → to`: [`Machine::begin`] moves a volume from a steady state into a
//! temporary one, and [`Machine::commit`] ends it in a steady state allowed for that
//! temporary; [`Machine::rollback`] returns to where it began. Only the transitions in a
//! role's table ([`VolState::TRANSITIONS`]) are possible, so a machine can never reach a
//! state the table does not name.
//!
//! Beside the state, a volume has a stop flag ([`StopState`]) and action counters
//! ([`Actions`]): named, possibly concurrent operations (an archive's merge, a proxy's send
//! to one archive) that exclude each other through deny lists.
//!
//! The tokio drivers wrap a [`Machine`] in a [`crate::vol::VolCore`] whose transaction guard
//! rolls back when dropped, so an error or a cancelled task never leaves a volume in a
//! temporary state.

pub mod archive;
pub mod proxy;
pub mod storage;

use std::collections::BTreeMap;
use std::fmt;

/// One allowed transition: `from → temp → to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition<S> {
    /// Steady state the transaction starts in.
    pub from: S,
    /// Temporary state while it runs.
    pub temp: S,
    /// Steady state it commits to.
    pub to: S,
}

/// Shorthand for table entries.
pub const fn t<S>(from: S, temp: S, to: S) -> Transition<S> {
    Transition { from, temp, to }
}

/// The states of one role.
pub trait VolState: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// Every state.
    const ALL: &'static [Self];
    /// Every allowed transition.
    const TRANSITIONS: &'static [Transition<Self>];
    /// The state of a volume with no metadata.
    const CLEAR: Self;

    /// The name operators see (`SyncReady`).
    fn name(self) -> &'static str;

    /// The state as it travels, with its role.
    fn to_wire(self) -> walb_wire::msg::VolumeState;

    /// True for states a transaction can start or end in.
    fn is_steady(self) -> bool {
        Self::TRANSITIONS
            .iter()
            .any(|tr| tr.from == self || tr.to == self)
    }

    /// Parses [`VolState::name`].
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|st| st.name() == s)
    }
}

/// Why a state change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The volume is not in a state the operation starts from.
    #[error("volume is {current}; this needs {}", expected.join(" or "))]
    WrongState {
        /// Where it is.
        current: &'static str,
        /// Where it would have to be.
        expected: Vec<&'static str>,
    },
    /// The table has no such transition (a bug in the caller).
    #[error("no transition {from} → {temp} → {to}")]
    NoTransition {
        /// Start.
        from: &'static str,
        /// Temporary.
        temp: &'static str,
        /// Attempted end.
        to: &'static str,
    },
    /// Another transaction is running on the volume.
    #[error("volume is busy ({current})")]
    Busy {
        /// The temporary state it is in.
        current: &'static str,
    },
}

/// The state of one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine<S: VolState> {
    cur: S,
    pending: Option<(S, S)>,
}

impl<S: VolState> Default for Machine<S> {
    fn default() -> Self {
        Self::new(S::CLEAR)
    }
}

impl<S: VolState> Machine<S> {
    /// A machine resting in `state` (loaded from disk, or [`VolState::CLEAR`]).
    pub fn new(state: S) -> Self {
        Self {
            cur: state,
            pending: None,
        }
    }

    /// The current state (temporary while a transaction runs).
    pub fn state(&self) -> S {
        self.cur
    }

    /// The steady state the running transaction started from, if one runs.
    pub fn pending_from(&self) -> Option<S> {
        self.pending.map(|(from, _)| from)
    }

    /// True while a transaction runs.
    pub fn in_transaction(&self) -> bool {
        self.pending.is_some()
    }

    /// Starts `from → temp`, for the first `from` of `froms` the volume is in.
    pub fn begin(&mut self, froms: &[S], temp: S) -> Result<S, StateError> {
        if self.pending.is_some() {
            return Err(StateError::Busy {
                current: self.cur.name(),
            });
        }
        let from = self.cur;
        let allowed = froms.contains(&from)
            && S::TRANSITIONS
                .iter()
                .any(|tr| tr.from == from && tr.temp == temp);
        if !allowed {
            let mut expected: Vec<&'static str> = froms
                .iter()
                .filter(|f| {
                    S::TRANSITIONS
                        .iter()
                        .any(|tr| tr.from == **f && tr.temp == temp)
                })
                .map(|f| f.name())
                .collect();
            expected.dedup();
            return Err(StateError::WrongState {
                current: from.name(),
                expected,
            });
        }
        self.pending = Some((from, temp));
        self.cur = temp;
        Ok(from)
    }

    /// Ends the running transaction in `to`.
    pub fn commit(&mut self, to: S) -> Result<(), StateError> {
        let Some((from, temp)) = self.pending else {
            return Err(StateError::NoTransition {
                from: self.cur.name(),
                temp: self.cur.name(),
                to: to.name(),
            });
        };
        if !S::TRANSITIONS.contains(&t(from, temp, to)) {
            return Err(StateError::NoTransition {
                from: from.name(),
                temp: temp.name(),
                to: to.name(),
            });
        }
        self.cur = to;
        self.pending = None;
        Ok(())
    }

    /// Abandons the running transaction: back to where it began. No-op without one.
    pub fn rollback(&mut self) {
        if let Some((from, _)) = self.pending.take() {
            self.cur = from;
        }
    }

    /// Forces a steady state (boot recovery, debugging); ends any transaction.
    pub fn force(&mut self, state: S) {
        self.cur = state;
        self.pending = None;
    }
}

/// The per-volume stop flag (walb-tools' `stopState`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopState {
    /// Running normally.
    #[default]
    NotStopping,
    /// Proxy `stop empty`: deliver what is queued, then stop.
    WaitingForEmpty,
    /// Graceful stop: running work finishes.
    Stopping,
    /// Forced stop: running work aborts at its next check.
    ForceStopping,
}

impl StopState {
    /// True when running transfers should abort now.
    pub fn is_force(self) -> bool {
        self == StopState::ForceStopping
    }

    /// True for any stop in progress.
    pub fn is_stopping(self) -> bool {
        self != StopState::NotStopping
    }
}

/// Named action counters with the time each last started (walb-tools' action counters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    map: BTreeMap<String, (u32, Option<u64>)>,
}

/// Why an action could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{action} cannot start while {running} is running")]
pub struct ActionDenied {
    /// The action asked for.
    pub action: String,
    /// The running action that excludes it.
    pub running: String,
}

impl Actions {
    /// How many of `action` run.
    pub fn count(&self, action: &str) -> u32 {
        self.map.get(action).map_or(0, |(n, _)| *n)
    }

    /// When `action` last started (seconds since the epoch).
    pub fn last_start(&self, action: &str) -> Option<u64> {
        self.map.get(action).and_then(|(_, ts)| *ts)
    }

    /// True when no action runs.
    pub fn is_idle(&self) -> bool {
        self.map.values().all(|(n, _)| *n == 0)
    }

    /// Names of the running actions.
    pub fn running(&self) -> Vec<&str> {
        self.map
            .iter()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// Starts `action` at `now_s` unless one of `deny` runs (`None` = deny every action).
    pub fn begin(
        &mut self,
        action: &str,
        deny: Option<&[&str]>,
        now_s: u64,
    ) -> Result<(), ActionDenied> {
        let blocking = match deny {
            None => self.running().first().map(|s| s.to_string()),
            Some(list) => list
                .iter()
                .find(|a| self.count(a) > 0)
                .map(|s| s.to_string()),
        };
        if let Some(running) = blocking {
            return Err(ActionDenied {
                action: action.to_owned(),
                running,
            });
        }
        let e = self.map.entry(action.to_owned()).or_insert((0, None));
        e.0 += 1;
        e.1 = Some(now_s);
        Ok(())
    }

    /// Ends one running `action`.
    pub fn end(&mut self, action: &str) {
        if let Some(e) = self.map.get_mut(action) {
            e.0 = e.0.saturating_sub(1);
        }
    }

    /// Checks that none of `deny` (`None` = any action) runs, without starting anything.
    pub fn check_none(&self, what: &str, deny: Option<&[&str]>) -> Result<(), ActionDenied> {
        let blocking = match deny {
            None => self.running().first().map(|s| s.to_string()),
            Some(list) => list
                .iter()
                .find(|a| self.count(a) > 0)
                .map(|s| s.to_string()),
        };
        match blocking {
            Some(running) => Err(ActionDenied {
                action: what.to_owned(),
                running,
            }),
            None => Ok(()),
        }
    }
}

/// Checks the invariants every role's table must keep (used by each role's tests):
/// temporaries are never steady, every state is reachable from `CLEAR`, names are unique
/// and parse back.
#[cfg(test)]
pub(crate) fn check_table<S: VolState + std::hash::Hash>() {
    use std::collections::HashSet;
    let names: HashSet<&str> = S::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names.len(), S::ALL.len(), "duplicate state names");
    for s in S::ALL {
        assert_eq!(S::parse(s.name()), Some(*s));
    }
    for tr in S::TRANSITIONS {
        assert!(tr.from.is_steady() && tr.to.is_steady(), "{tr:?}");
        assert!(
            !tr.temp.is_steady(),
            "temporary {:?} is also steady",
            tr.temp
        );
    }
    let mut seen: HashSet<S> = HashSet::from([S::CLEAR]);
    loop {
        let before = seen.len();
        for tr in S::TRANSITIONS {
            if seen.contains(&tr.from) {
                seen.insert(tr.temp);
                seen.insert(tr.to);
            }
        }
        if seen.len() == before {
            break;
        }
    }
    for s in S::ALL {
        assert!(seen.contains(s), "{s:?} unreachable from Clear");
    }
}

/// Drives every transition of a role's table through a [`Machine`]: begin, commit, and
/// begin + rollback; and checks that no other (state, temporary) pair can begin.
#[cfg(test)]
pub(crate) fn check_every_transition<S: VolState>() {
    for tr in S::TRANSITIONS {
        let mut m = Machine::new(tr.from);
        assert_eq!(m.begin(&[tr.from], tr.temp), Ok(tr.from));
        assert_eq!(m.state(), tr.temp);
        assert!(matches!(
            m.begin(&[tr.temp], tr.temp),
            Err(StateError::Busy { .. })
        ));
        m.commit(tr.to).unwrap();
        assert_eq!(m.state(), tr.to);
        let mut m = Machine::new(tr.from);
        m.begin(&[tr.from], tr.temp).unwrap();
        m.rollback();
        assert_eq!(m.state(), tr.from);
        // Committing to a steady state the table does not pair with this temporary fails.
        for other in S::ALL {
            if other.is_steady() && !S::TRANSITIONS.contains(&t(tr.from, tr.temp, *other)) {
                let mut m = Machine::new(tr.from);
                m.begin(&[tr.from], tr.temp).unwrap();
                assert!(m.commit(*other).is_err(), "{tr:?} → {other:?}");
                m.rollback();
                assert_eq!(m.state(), tr.from);
            }
        }
    }
    for from in S::ALL {
        for temp in S::ALL {
            let listed = S::TRANSITIONS
                .iter()
                .any(|tr| tr.from == *from && tr.temp == *temp);
            let mut m = Machine::new(*from);
            assert_eq!(
                m.begin(&[*from], *temp).is_ok(),
                listed,
                "{from:?} → {temp:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_exclude_through_deny_lists() {
        let mut a = Actions::default();
        a.begin("Merge", Some(&["Apply", "Merge"]), 10).unwrap();
        assert_eq!(a.count("Merge"), 1);
        assert_eq!(a.last_start("Merge"), Some(10));
        let e = a.begin("Apply", Some(&["Merge"]), 11).unwrap_err();
        assert_eq!(e.running, "Merge");
        a.begin("Restore", Some(&["Restore", "Resize"]), 12)
            .unwrap();
        assert!(a.begin("Init", None, 13).is_err());
        a.end("Merge");
        a.end("Restore");
        assert!(a.is_idle());
        a.begin("Init", None, 14).unwrap();
        assert!(a.check_none("clear", None).is_err());
    }

    #[test]
    fn stop_state_flags() {
        assert!(StopState::ForceStopping.is_force());
        assert!(StopState::WaitingForEmpty.is_stopping());
        assert!(!StopState::NotStopping.is_stopping());
    }
}
