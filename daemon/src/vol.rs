//! A volume's live state, shared between the tasks of a daemon.
//!
//! [`VolCore`] wraps the pure [`Machine`] with what the tokio drivers need: a mutex (never
//! held across an `.await`), the stop flag, the action counters, persistence of steady
//! states, a watch channel for waiters, and state-change events. A transaction is a
//! [`Txn`] guard: [`Txn::commit`] persists the new steady state (atomically, before it
//! becomes visible) and publishes it; dropping an uncommitted guard rolls back. An
//! [`ActionGuard`] ends its action when dropped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use walb_wire::msg::Event;

use crate::persist::{self, PersistError};
use crate::state::{ActionDenied, Actions, Machine, StateError, StopState, VolState};

/// Where state-change events go (the node's event stream, or nowhere in tests).
pub type Publish = Arc<dyn Fn(Event) + Send + Sync>;

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a volume operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum VolError {
    /// Wrong state, busy, or a table violation.
    #[error("volume {vol}: {source}")]
    State {
        /// Volume.
        vol: String,
        /// Cause.
        #[source]
        source: StateError,
    },
    /// An action excludes this one.
    #[error("volume {vol}: {source}")]
    Action {
        /// Volume.
        vol: String,
        /// Cause.
        #[source]
        source: ActionDenied,
    },
    /// The volume is being stopped.
    #[error("volume {vol} is stopping")]
    Stopping {
        /// Volume.
        vol: String,
    },
    /// Persisting the state failed; the state did not change.
    #[error(transparent)]
    Persist(#[from] PersistError),
}

struct Inner<S: VolState> {
    machine: Machine<S>,
    stop: StopState,
    actions: Actions,
}

/// A volume's live state.
pub struct VolCore<S: VolState> {
    name: String,
    inner: Mutex<Inner<S>>,
    state_file: Option<PathBuf>,
    changed: watch::Sender<u64>,
    publish: Option<Publish>,
}

impl<S: VolState> std::fmt::Debug for VolCore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolCore")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

impl<S: VolState> VolCore<S> {
    /// A volume in `state`; steady states are persisted to `state_file` if given.
    pub fn new(
        name: &str,
        state: S,
        state_file: Option<PathBuf>,
        publish: Option<Publish>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            inner: Mutex::new(Inner {
                machine: Machine::new(state),
                stop: StopState::NotStopping,
                actions: Actions::default(),
            }),
            state_file,
            changed: watch::channel(0).0,
            publish,
        })
    }

    /// Loads the persisted state from `state_file` (Clear when absent or unknown).
    pub fn load_state(state_file: &std::path::Path) -> Result<Option<S>, PersistError> {
        Ok(persist::read_text_opt(state_file)?.and_then(|s| S::parse(&s)))
    }

    /// The volume's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        // A panic while holding the lock cannot leave the machine half-changed (every
        // method changes it in one step), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn event(&self, state: S) {
        if let Some(p) = &self.publish {
            p(Event::VolState {
                vol: self.name.clone(),
                state: state.to_wire(),
                at_s: now_s(),
            });
        }
    }

    /// The current state.
    pub fn state(&self) -> S {
        self.lock().machine.state()
    }

    /// True while a transaction runs.
    pub fn in_transaction(&self) -> bool {
        self.lock().machine.in_transaction()
    }

    /// The stop flag.
    pub fn stop_state(&self) -> StopState {
        self.lock().stop
    }

    /// Sets the stop flag.
    pub fn set_stop(&self, stop: StopState) {
        self.lock().stop = stop;
        self.bump();
    }

    /// A copy of the action counters.
    pub fn actions(&self) -> Actions {
        self.lock().actions.clone()
    }

    /// Starts a transaction `from → temp` for the first of `froms` the volume is in.
    pub fn begin(self: &Arc<Self>, froms: &[S], temp: S) -> Result<Txn<S>, VolError> {
        let from = {
            let mut g = self.lock();
            g.machine
                .begin(froms, temp)
                .map_err(|source| VolError::State {
                    vol: self.name.clone(),
                    source,
                })?
        };
        self.event(temp);
        self.bump();
        Ok(Txn {
            vol: Arc::clone(self),
            from,
            done: false,
        })
    }

    /// Like [`VolCore::begin`], but also requires that none of `deny` runs (`None` = no
    /// action at all) and that the volume is not stopping.
    pub fn begin_exclusive(
        self: &Arc<Self>,
        froms: &[S],
        temp: S,
        what: &str,
        deny: Option<&[&str]>,
    ) -> Result<Txn<S>, VolError> {
        // A volume at rest in a state the operation does not start from is refused for
        // that, whatever runs beside it (a transfer in progress must not turn "wrong
        // state" into "busy, try again").
        let cur = self.state();
        if cur.is_steady() && !froms.contains(&cur) {
            self.require(froms)?;
        }
        {
            let g = self.lock();
            if g.stop.is_stopping() {
                return Err(VolError::Stopping {
                    vol: self.name.clone(),
                });
            }
            g.actions
                .check_none(what, deny)
                .map_err(|source| VolError::Action {
                    vol: self.name.clone(),
                    source,
                })?;
        }
        self.begin(froms, temp)
    }

    /// Starts action `action` if the volume is in one of `states` and none of `deny` runs.
    pub fn begin_action(
        self: &Arc<Self>,
        states: &[S],
        action: &str,
        deny: Option<&[&str]>,
    ) -> Result<ActionGuard<S>, VolError> {
        let mut g = self.lock();
        let cur = g.machine.state();
        if !states.contains(&cur) {
            return Err(VolError::State {
                vol: self.name.clone(),
                source: StateError::WrongState {
                    current: cur.name(),
                    expected: states.iter().map(|s| s.name()).collect(),
                },
            });
        }
        g.actions
            .begin(action, deny, now_s())
            .map_err(|source| VolError::Action {
                vol: self.name.clone(),
                source,
            })?;
        drop(g);
        self.bump();
        Ok(ActionGuard {
            vol: Arc::clone(self),
            action: action.to_owned(),
        })
    }

    /// Checks that the volume is in one of `states` (for operations that take no
    /// transaction).
    pub fn require(&self, states: &[S]) -> Result<S, VolError> {
        let cur = self.state();
        if states.contains(&cur) {
            Ok(cur)
        } else {
            Err(VolError::State {
                vol: self.name.clone(),
                source: StateError::WrongState {
                    current: cur.name(),
                    expected: states.iter().map(|s| s.name()).collect(),
                },
            })
        }
    }

    /// Forces a steady state (boot recovery) and persists it.
    pub fn force(&self, state: S) -> Result<(), VolError> {
        self.persist(state)?;
        self.lock().machine.force(state);
        self.event(state);
        self.bump();
        Ok(())
    }

    fn persist(&self, state: S) -> Result<(), PersistError> {
        match &self.state_file {
            Some(p) if state != S::CLEAR => persist::write_atomic(p, state.name().as_bytes()),
            _ => Ok(()),
        }
    }

    /// Waits until `pred(state, stop, actions)` holds, or `timeout` passes; returns whether
    /// it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(S, StopState, &Actions) -> bool,
    ) -> bool {
        let mut rx = self.changed.subscribe();
        let check = |pred: &mut dyn FnMut(S, StopState, &Actions) -> bool| {
            let g = self.lock();
            pred(g.machine.state(), g.stop, &g.actions)
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(&mut pred) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return check(&mut pred),
            }
        }
    }

    /// Waits (up to `timeout`) until no transaction and no action runs.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |s, _, a| s.is_steady() && a.is_idle())
            .await
    }
}

/// A running transaction; rolls back when dropped uncommitted.
#[derive(Debug)]
pub struct Txn<S: VolState> {
    vol: Arc<VolCore<S>>,
    from: S,
    done: bool,
}

impl<S: VolState> Txn<S> {
    /// The steady state the transaction began in.
    pub fn from(&self) -> S {
        self.from
    }

    /// The volume.
    pub fn vol(&self) -> &Arc<VolCore<S>> {
        &self.vol
    }

    /// Persists `to` and ends the transaction there. On a persistence error the
    /// transaction rolls back (when the guard drops) and the error names the file.
    pub fn commit(mut self, to: S) -> Result<(), VolError> {
        self.vol.persist(to)?;
        {
            let mut g = self.vol.lock();
            g.machine.commit(to).map_err(|source| VolError::State {
                vol: self.vol.name.clone(),
                source,
            })?;
        }
        self.done = true;
        self.vol.event(to);
        self.vol.bump();
        Ok(())
    }
}

impl<S: VolState> Drop for Txn<S> {
    fn drop(&mut self) {
        if !self.done {
            self.vol.lock().machine.rollback();
            self.vol.event(self.from);
            self.vol.bump();
        }
    }
}

/// A running action; ends when dropped.
#[derive(Debug)]
pub struct ActionGuard<S: VolState> {
    vol: Arc<VolCore<S>>,
    action: String,
}

impl<S: VolState> Drop for ActionGuard<S> {
    fn drop(&mut self) {
        self.vol.lock().actions.end(&self.action);
        self.vol.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::archive::{action, deny_list, ArchiveState as A, ACTIVE};

    #[test]
    fn dropped_transaction_rolls_back_and_commit_persists() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("state");
        let v = VolCore::new("v", A::Clear, Some(f.clone()), None);
        {
            let _t = v.begin(&[A::Clear], A::InitVol).unwrap();
            assert_eq!(v.state(), A::InitVol);
        }
        assert_eq!(v.state(), A::Clear);
        assert!(!f.exists());
        let t = v.begin(&[A::Clear], A::InitVol).unwrap();
        t.commit(A::SyncReady).unwrap();
        assert_eq!(VolCore::<A>::load_state(&f).unwrap(), Some(A::SyncReady));
    }

    #[test]
    fn actions_block_exclusive_transactions() {
        let v = VolCore::new("v", A::Archived, None, None);
        let g = v
            .begin_action(ACTIVE, action::MERGE, deny_list(action::MERGE))
            .unwrap();
        let e = v
            .begin_exclusive(&[A::Archived], A::Stop, "stop", None)
            .unwrap_err();
        assert!(e.to_string().contains("Merge"), "{e}");
        drop(g);
        v.begin_exclusive(&[A::Archived], A::Stop, "stop", None)
            .unwrap();
    }

    #[tokio::test]
    async fn waiters_see_the_end_of_a_transaction() {
        let v = VolCore::new("v", A::Archived, None, None);
        let t = v.begin(&[A::Archived], A::WdiffRecv).unwrap();
        let v2 = Arc::clone(&v);
        let w = tokio::spawn(async move { v2.wait_idle(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        t.commit(A::Archived).unwrap();
        assert!(w.await.unwrap());
        assert!(
            !v.wait_until(Duration::from_millis(10), |s, _, _| s == A::Stopped)
                .await
        );
    }
}
