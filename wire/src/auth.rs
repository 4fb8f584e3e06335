//! Who may ask what: the one authorization table of walb.
//!
//! Every request belongs to an [`OpClass`] ([`crate::msg::Request::op_class`]). Whether a
//! peer may send it depends only on the role in the sender's certificate, the role of the
//! receiver, and that class — never on addresses. [`authorize`] is that table, as one
//! `match`; anything it does not allow is refused with a [`Denied`] that names who may not
//! do what.

use serde::{Deserialize, Serialize};

use crate::identity::Role;

/// The operation classes requests are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum OpClass {
    /// Storage ↔ archive: full and hash sync, latest-snapshot gathering.
    BackupSync,
    /// Controller commands that change state.
    Command,
    /// Read-only queries.
    Query,
    /// Archive → archive replication.
    Replication,
    /// Event subscriptions.
    Subscribe,
    /// Proxy → archive wdiff transfer.
    WdiffTransfer,
    /// Storage → proxy wlog transfer.
    WlogTransfer,
}

impl OpClass {
    /// Every class.
    pub const ALL: [OpClass; 7] = [
        OpClass::BackupSync,
        OpClass::Command,
        OpClass::Query,
        OpClass::Replication,
        OpClass::Subscribe,
        OpClass::WdiffTransfer,
        OpClass::WlogTransfer,
    ];

    /// What a request of this class does, for error messages ("send control commands").
    pub fn describe(self) -> &'static str {
        match self {
            OpClass::BackupSync => "run full/hash sync or gather latest snapshots",
            OpClass::Command => "send control commands",
            OpClass::Query => "send queries",
            OpClass::Replication => "replicate",
            OpClass::Subscribe => "subscribe to events",
            OpClass::WdiffTransfer => "transfer wdiffs",
            OpClass::WlogTransfer => "transfer wlogs",
        }
    }
}

/// Decides whether a peer of role `from` may send a request of class `op` to a daemon of
/// role `to`.
pub fn authorize(from: Role, to: Role, op: OpClass) -> Result<(), Denied> {
    use OpClass as O;
    use Role as R;
    let allowed = match (from, op) {
        (R::Operator, O::Command | O::Query | O::Subscribe) => true,
        (R::Viewer, O::Query | O::Subscribe) => true,
        (R::Storage, O::WlogTransfer) => to == R::Proxy,
        (R::Storage, O::BackupSync) => to == R::Archive,
        (R::Proxy, O::WdiffTransfer) => to == R::Archive,
        (R::Archive, O::Replication) => to == R::Archive,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied { from, to, op })
    }
}

/// The roles that may send `op` to a daemon of role `to` (for messages and docs).
pub fn allowed_senders(to: Role, op: OpClass) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|&from| authorize(from, to, op).is_ok())
        .collect()
}

/// A refused request: `from` may not do `op` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Denied {
    /// The sender's role.
    pub from: Role,
    /// The receiver's role.
    pub to: Role,
    /// What was asked.
    pub op: OpClass,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} may not {} to {}",
            self.from,
            self.op.describe(),
            self.to
        )?;
        let roles = allowed_senders(self.to, self.op);
        if roles.is_empty() {
            return write!(f, " (no role may)");
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        write!(f, " (only {} may)", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use OpClass as O;
        use Role as R;
        let ok = |from, to, op| authorize(from, to, op).is_ok();
        for to in [R::Storage, R::Proxy, R::Archive] {
            for op in [O::Command, O::Query, O::Subscribe] {
                assert!(ok(R::Operator, to, op));
            }
            assert!(ok(R::Viewer, to, O::Query));
            assert!(ok(R::Viewer, to, O::Subscribe));
            assert!(!ok(R::Viewer, to, O::Command));
        }
        assert!(ok(R::Storage, R::Proxy, O::WlogTransfer));
        assert!(!ok(R::Storage, R::Archive, O::WlogTransfer));
        assert!(ok(R::Storage, R::Archive, O::BackupSync));
        assert!(ok(R::Proxy, R::Archive, O::WdiffTransfer));
        assert!(!ok(R::Proxy, R::Archive, O::Command));
        assert!(ok(R::Archive, R::Archive, O::Replication));
        assert!(!ok(R::Archive, R::Proxy, O::Replication));
        assert!(!ok(R::Storage, R::Proxy, O::Command));
    }

    #[test]
    fn denial_says_who_may_not_do_what() {
        let e = authorize(Role::Viewer, Role::Archive, OpClass::Command).unwrap_err();
        assert_eq!(
            e.to_string(),
            "viewer may not send control commands to archive (only operator may)"
        );
        let e = authorize(Role::Proxy, Role::Archive, OpClass::WlogTransfer).unwrap_err();
        assert_eq!(
            e.to_string(),
            "proxy may not transfer wlogs to archive (no role may)"
        );
    }
}
