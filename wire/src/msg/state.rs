//! The volume states of the three roles, as they travel (protocol 4) and as operators
//! read them.
//!
//! Each role has its own enum ([`StorageState`], [`ProxyState`], [`ArchiveState`]); the
//! daemons' state machines (their transition tables) are built on these same types, so a
//! state the console shows is always one the daemon can be in. [`VolumeState`] is the
//! answer to `get state` on protocol 4: the role and its state. Names are walb-tools'
//! (`SyncReady`, `Archived`) and are what `--exec` prints; [`VolumeState::parse`] reads one
//! back (a protocol-3 daemon answers with the name).
//!
//! The steady states — the ones an operation starts from and ends in — are marked here
//! too, so that the console can tell "an operation is running" without a copy of the
//! tables; the daemon's tests check the marks against its transition tables.

use serde::{Deserialize, Serialize};

use crate::Role;

/// Defines a role's state enum: variants in the order of the encoding (append only),
/// each with its walb-tools name and whether it is steady.
macro_rules! states {
    ($(#[$doc:meta])* $name:ident { $( $(#[$vdoc:meta])* $v:ident = $text:literal, $steady:literal; )* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub enum $name {
            $( $(#[$vdoc])* $v, )*
        }

        impl $name {
            /// Every state, in the order of the encoding.
            pub const ALL: &'static [$name] = &[ $( $name::$v, )* ];

            /// The name operators see (`SyncReady`).
            pub fn name(self) -> &'static str {
                match self { $( $name::$v => $text, )* }
            }

            /// True for a state an operation starts from or ends in; false while one runs.
            pub fn is_steady(self) -> bool {
                match self { $( $name::$v => $steady, )* }
            }

            /// The state named `s` ([`Self::name`]).
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|st| st.name() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

states! {
    /// A storage volume's state (walb-tools.md §3.1).
    StorageState {
        /// No metadata.
        Clear = "Clear", true;
        /// Initialized; full or hash backup possible; logs not monitored.
        SyncReady = "SyncReady", true;
        /// Logs are kept in the log device, neither sent nor freed.
        Stopped = "Stopped", true;
        /// Backup target: logs are shipped to proxies, then freed.
        Target = "Target", true;
        /// Replica not backed up: logs are freed.
        Standby = "Standby", true;
        /// `init-vol` running.
        InitVol = "InitVol", false;
        /// `clear-vol` running.
        ClearVol = "ClearVol", false;
        /// `start standby` running.
        StartStandby = "StartStandby", false;
        /// `stop` of a standby volume running.
        StopStandby = "StopStandby", false;
        /// Full backup running.
        FullSync = "FullSync", false;
        /// Hash backup running.
        HashSync = "HashSync", false;
        /// `reset-vol` running.
        Reset = "Reset", false;
        /// `start target` running.
        StartTarget = "StartTarget", false;
        /// `stop` of a target volume running (also on overflow).
        StopTarget = "StopTarget", false;
    }
}

states! {
    /// A proxy volume's state (walb-tools.md §3.2).
    ProxyState {
        /// No metadata.
        Clear = "Clear", true;
        /// No wlog receive, no wdiff send; archive-info editing allowed.
        Stopped = "Stopped", true;
        /// Receiving wlogs and sending wdiffs.
        Started = "Started", true;
        /// `start` running.
        Start = "Start", false;
        /// `stop graceful|force` running.
        Stop = "Stop", false;
        /// `clear-vol` running.
        ClearVol = "ClearVol", false;
        /// `archive-info add|update` running.
        AddArchiveInfo = "AddArchiveInfo", false;
        /// `archive-info delete` running.
        DeleteArchiveInfo = "DeleteArchiveInfo", false;
        /// `stop empty`: delivering what is queued.
        WaitForEmpty = "WaitForEmpty", false;
        /// One wlog transfer being received.
        WlogRecv = "WlogRecv", false;
    }
}

states! {
    /// An archive volume's state (walb-tools.md §3.3).
    ArchiveState {
        /// No metadata, no base image.
        Clear = "Clear", true;
        /// Ready to receive a full backup, full replication or resync.
        SyncReady = "SyncReady", true;
        /// Has a base image (clean or dirty) and possibly diffs.
        Archived = "Archived", true;
        /// Refuses wdiff transfers for now (`stopped`).
        Stopped = "Stopped", true;
        /// `init-vol` running.
        InitVol = "InitVol", false;
        /// `clear-vol` running.
        ClearVol = "ClearVol", false;
        /// `reset-vol` running.
        ResetVol = "ResetVol", false;
        /// Full backup or full replication being received.
        FullSync = "FullSync", false;
        /// Resync replication being received.
        Resync = "Resync", false;
        /// Hash backup being received.
        HashSync = "HashSync", false;
        /// One wdiff transfer being received.
        WdiffRecv = "WdiffRecv", false;
        /// Hash or diff replication being received.
        ReplSyncAsServer = "ReplSyncAsServer", false;
        /// `stop` running.
        Stop = "Stop", false;
        /// `start` running.
        Start = "Start", false;
    }
}

/// A volume's state on one daemon: its role and the state (the protocol-4 answer to
/// `get state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum VolumeState {
    /// On a storage.
    Storage(StorageState),
    /// On a proxy.
    Proxy(ProxyState),
    /// On an archive.
    Archive(ArchiveState),
}

impl VolumeState {
    /// The state of a volume a daemon of `role` does not know (every role has `Clear`);
    /// `None` for the roles that hold no volumes.
    pub fn clear(role: Role) -> Option<Self> {
        match role {
            Role::Storage => Some(Self::Storage(StorageState::Clear)),
            Role::Proxy => Some(Self::Proxy(ProxyState::Clear)),
            Role::Archive => Some(Self::Archive(ArchiveState::Clear)),
            Role::Operator | Role::Viewer => None,
        }
    }

    /// The state named `name` on a daemon of `role` (a protocol-3 daemon's answer).
    pub fn parse(role: Role, name: &str) -> Option<Self> {
        match role {
            Role::Storage => StorageState::parse(name).map(Self::Storage),
            Role::Proxy => ProxyState::parse(name).map(Self::Proxy),
            Role::Archive => ArchiveState::parse(name).map(Self::Archive),
            Role::Operator | Role::Viewer => None,
        }
    }

    /// The role of the daemon.
    pub fn role(self) -> Role {
        match self {
            Self::Storage(_) => Role::Storage,
            Self::Proxy(_) => Role::Proxy,
            Self::Archive(_) => Role::Archive,
        }
    }

    /// The name operators see.
    pub fn name(self) -> &'static str {
        match self {
            Self::Storage(s) => s.name(),
            Self::Proxy(s) => s.name(),
            Self::Archive(s) => s.name(),
        }
    }

    /// True unless an operation is running.
    pub fn is_steady(self) -> bool {
        match self {
            Self::Storage(s) => s.is_steady(),
            Self::Proxy(s) => s.is_steady(),
            Self::Archive(s) => s.is_steady(),
        }
    }

    /// True for `Clear`, on any role.
    pub fn is_clear(self) -> bool {
        self.name() == "Clear"
    }
}

impl std::fmt::Display for VolumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_are_unique_per_role() {
        fn check<T: Copy + Eq + std::fmt::Debug>(all: &[T], name: fn(T) -> &'static str) {
            let mut seen = std::collections::BTreeSet::new();
            for &s in all {
                assert!(seen.insert(name(s)), "{s:?} named twice");
            }
        }
        check(StorageState::ALL, StorageState::name);
        check(ProxyState::ALL, ProxyState::name);
        check(ArchiveState::ALL, ArchiveState::name);
        for &s in ArchiveState::ALL {
            assert_eq!(
                VolumeState::parse(Role::Archive, s.name()),
                Some(VolumeState::Archive(s))
            );
        }
        assert_eq!(VolumeState::parse(Role::Proxy, "Archived"), None);
        assert_eq!(VolumeState::parse(Role::Viewer, "Clear"), None);
        let steady: Vec<&str> = StorageState::ALL
            .iter()
            .filter(|s| s.is_steady())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            steady,
            ["Clear", "SyncReady", "Stopped", "Target", "Standby"]
        );
        assert!(VolumeState::clear(Role::Proxy).is_some_and(VolumeState::is_clear));
        assert!(!VolumeState::Proxy(ProxyState::WlogRecv).is_steady());
    }

    /// The encodings are the variants' order: appending keeps older peers' bytes.
    #[test]
    fn encodings_are_the_variant_order() {
        let b = |v: &VolumeState| postcard::to_stdvec(v).unwrap_or_default();
        assert_eq!(b(&VolumeState::Storage(StorageState::Clear)), [0, 0]);
        assert_eq!(b(&VolumeState::Proxy(ProxyState::WlogRecv)), [1, 9]);
        assert_eq!(b(&VolumeState::Archive(ArchiveState::Start)), [2, 13]);
    }
}
