//! Counted slots per peer identity: connections, calls and subscriptions a peer holds of
//! a node. A [`Quota`] is a pure counter; a [`Slot`] gives its unit back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::identity::PeerId;

/// How many units each identity holds, and all together.
#[derive(Debug, Default)]
pub(crate) struct Quota {
    held: HashMap<PeerId, u32>,
    total: u32,
}

/// A refused slot: which cap, and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Over {
    /// The identity holds `max` already.
    Identity(u32),
    /// All identities together hold `max` already.
    Total(u32),
}

impl Quota {
    /// Takes a unit for `peer` if it holds fewer than `per_identity` and all hold fewer
    /// than `total` (if given).
    pub(crate) fn take(
        &mut self,
        peer: &PeerId,
        per_identity: u32,
        total: Option<u32>,
    ) -> Result<(), Over> {
        let held = self.held.get(peer).copied().unwrap_or(0);
        if held >= per_identity {
            return Err(Over::Identity(per_identity));
        }
        if let Some(t) = total {
            if self.total >= t {
                return Err(Over::Total(t));
            }
        }
        self.held.insert(peer.clone(), held + 1);
        self.total += 1;
        Ok(())
    }

    /// Gives back a unit of `peer`.
    pub(crate) fn give(&mut self, peer: &PeerId) {
        if let Some(n) = self.held.get_mut(peer) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(peer);
            }
            self.total -= 1;
        }
    }

    /// Units `peer` holds.
    #[cfg(test)]
    pub(crate) fn held(&self, peer: &PeerId) -> u32 {
        self.held.get(peer).copied().unwrap_or(0)
    }
}

/// A shared [`Quota`].
pub(crate) type Shared = Arc<Mutex<Quota>>;

/// One unit of a shared quota, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    quota: Shared,
    peer: PeerId,
}

impl Slot {
    /// Takes a unit of `quota` for `peer` (see [`Quota::take`]).
    pub(crate) fn take(
        quota: &Shared,
        peer: &PeerId,
        per_identity: u32,
        total: Option<u32>,
    ) -> Result<Slot, Over> {
        lock(quota).take(peer, per_identity, total)?;
        Ok(Slot {
            quota: quota.clone(),
            peer: peer.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.quota).give(&self.peer);
    }
}

/// Locks a quota; a poisoned lock (a panic while counting) still holds valid counts.
fn lock(q: &Shared) -> std::sync::MutexGuard<'_, Quota> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    #[test]
    fn caps_per_identity_and_in_total() {
        let a = PeerId::new(Role::Viewer, "a").unwrap();
        let b = PeerId::new(Role::Viewer, "b").unwrap();
        let q: Shared = Arc::default();
        let s1 = Slot::take(&q, &a, 2, Some(3)).unwrap();
        let _s2 = Slot::take(&q, &a, 2, Some(3)).unwrap();
        assert_eq!(
            Slot::take(&q, &a, 2, Some(3)).unwrap_err(),
            Over::Identity(2)
        );
        let _s3 = Slot::take(&q, &b, 2, Some(3)).unwrap();
        assert_eq!(Slot::take(&q, &b, 2, Some(3)).unwrap_err(), Over::Total(3));
        drop(s1);
        assert_eq!(q.lock().unwrap().held(&a), 1);
        let _s4 = Slot::take(&q, &b, 2, Some(3)).unwrap();
        assert_eq!(q.lock().unwrap().held(&b), 2);
    }
}
