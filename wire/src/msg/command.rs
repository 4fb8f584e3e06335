//! Commands: what an operator (or a peer) asks a daemon to do.

use serde::{Deserialize, Serialize};

/// Controller commands that change state (walbc's commands, §2.1 of the walb-tools notes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Command {
    /// Add, update, delete archive destinations of a proxy volume.
    ArchiveInfo(ArchiveInfoCommand),
    /// Bind peers to a volume: who may ship its wlogs, send its diffs, back it up or
    /// replicate it here (proxy, archive). See [`BindCommand`].
    Bind(BindCommand),
    /// Apply diffs to the base image up to `gid` (archive).
    Apply {
        /// Volume.
        vol: String,
        /// Target gid.
        gid: u64,
    },
    /// Forget a volume entirely.
    ClearVol {
        /// Volume.
        vol: String,
    },
    /// Remove a cold snapshot LV (archive).
    DelCold {
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
    },
    /// Remove a restored LV (archive).
    DelRestored {
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
    },
    /// Make explicit snapshots implicit (mergeable) or explicit again (archive).
    SetSnapshotsExplicit {
        /// Volume.
        vol: String,
        /// Snapshot gids.
        gids: Vec<u64>,
        /// `true` = enable-snapshot, `false` = disable-snapshot.
        explicit: bool,
    },
    /// Start a full backup to the primary archive (storage).
    FullBackup {
        /// Volume.
        vol: String,
        /// Bulk size in logical blocks (`None` = default).
        bulk_lb: Option<u64>,
    },
    /// Delete diffs unreachable from the base (archive).
    GcDiff {
        /// Volume.
        vol: String,
    },
    /// Start a hash backup to the primary archive (storage).
    HashBackup {
        /// Volume.
        vol: String,
        /// Bulk size in logical blocks (`None` = default).
        bulk_lb: Option<u64>,
    },
    /// Create volume metadata.
    InitVol {
        /// Volume.
        vol: String,
        /// The WalB device path (storage only).
        wdev_path: Option<String>,
    },
    /// Retry delayed transfers now (storage, proxy).
    Kick {
        /// Volume (proxy).
        vol: Option<String>,
        /// Archive (proxy).
        archive: Option<String>,
    },
    /// Merge diffs (archive).
    Merge {
        /// Volume.
        vol: String,
        /// First gid of the chain.
        gid_b: u64,
        /// Where the chain stops.
        until: MergeUntil,
    },
    /// Replicate a volume to another archive (archive, as source).
    Replicate(ReplicateCommand),
    /// Grow a volume.
    Resize {
        /// Volume.
        vol: String,
        /// New size in logical blocks.
        size_lb: u64,
        /// Zero-fill the grown part (archive).
        zero_clear: bool,
    },
    /// Reset a volume (storage: clear the log and start a new gid epoch).
    ResetVol {
        /// Volume.
        vol: String,
        /// First gid of the new epoch (storage).
        gid: Option<u64>,
    },
    /// Materialize snapshot `gid` as an LV (archive).
    Restore {
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
    },
    /// Limit the full-scan throughput (storage), bytes per second, 0 = unlimited.
    SetFullScanBps(u64),
    /// Stop the daemon.
    Shutdown {
        /// Abort running work instead of finishing it.
        force: bool,
    },
    /// Take an explicit snapshot (storage); the reply is [`Reply::Gid`].
    Snapshot {
        /// Volume.
        vol: String,
    },
    /// Start a volume.
    Start {
        /// Volume.
        vol: String,
        /// Storage only: target or standby.
        mode: Option<StartMode>,
    },
    /// Stop a volume (asynchronous: [`Reply::Accepted`]).
    Stop {
        /// Volume.
        vol: String,
        /// How to stop.
        mode: StopMode,
    },
    /// Stream the virtual full image of snapshot `gid` back as bulk chunks (archive).
    VirtFullScan {
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
        /// Bulk size in logical blocks (`None` = default).
        bulk_lb: Option<u64>,
    },
    /// Change a volume's retention policy or pins (archive; [`super::Reply::Retention`]).
    SetRetention(super::RetentionSet),
}

/// The `bind` command: which peers of one role are bound to a volume on the daemon that
/// receives it. An archive takes a storage (the one whose full and hash backups and latest
/// snapshots it serves), proxies (whose wdiffs it takes) and archives (replication sources
/// it takes copies from); a proxy takes a storage (whose wlogs it takes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BindCommand {
    /// Volume.
    pub vol: String,
    /// The role of the peers named.
    pub role: PeerRole,
    /// Their ids (a storage: at most one).
    pub ids: Vec<String>,
    /// Replace the role's set, add to it or remove from it.
    pub how: BindHow,
}

/// The daemon roles a volume can be bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PeerRole {
    /// Archives (replication sources).
    Archive,
    /// Proxies.
    Proxy,
    /// The storage that owns the volume.
    Storage,
}

impl PeerRole {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerRole::Archive => "archive",
            PeerRole::Proxy => "proxy",
            PeerRole::Storage => "storage",
        }
    }

    /// The certificate role of peers of this kind.
    pub fn role(self) -> crate::identity::Role {
        match self {
            PeerRole::Archive => crate::identity::Role::Archive,
            PeerRole::Proxy => crate::identity::Role::Proxy,
            PeerRole::Storage => crate::identity::Role::Storage,
        }
    }
}

/// How a [`BindCommand`] changes a role's set of peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum BindHow {
    /// Add the ids.
    Add,
    /// Remove the ids.
    Remove,
    /// The set becomes exactly the ids (none: nobody).
    Set,
}

/// The peers bound to a volume on one daemon (the answer to [`Query::Peers`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct VolPeers {
    /// The storage that owns the volume.
    pub storage: Option<String>,
    /// Proxies.
    pub proxies: Vec<String>,
    /// Archives (on an archive: replication sources; on a storage: its primary archive).
    pub archives: Vec<String>,
}

/// How a storage volume starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum StartMode {
    /// Standby: logs are freed, not shipped.
    Standby,
    /// Target: logs are shipped to proxies.
    Target,
}

/// How a volume stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum StopMode {
    /// Proxy only: deliver every queued diff first.
    Empty,
    /// Abort running transfers at their next check.
    Force,
    /// Wait for running work.
    Graceful,
}

/// Where a merge chain stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum MergeUntil {
    /// Stop before diffs starting at or after this gid.
    Gid(u64),
    /// Stop when the merged files would exceed this many MiB.
    SizeMib(u64),
}

/// A proxy's archive-info sub-command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ArchiveInfoCommand {
    /// Add (or with `update`, replace) a destination.
    Set {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
        /// Where it listens and what to send.
        dest: ArchiveDest,
        /// Replace an existing destination instead of failing.
        update: bool,
    },
    /// Remove a destination.
    Delete {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
    },
}

/// Where a proxy sends a volume's diffs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ArchiveDest {
    /// `host:port` of the archive.
    pub addr: String,
    /// Compression of the forwarded diffs.
    pub compress: CompressOpt,
    /// Delay before forwarding, seconds.
    pub delay_s: u64,
}

/// A compression choice for diffs and syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CompressOpt {
    /// The codec.
    pub codec: Codec,
    /// Codec level.
    pub level: i32,
    /// Worker threads.
    pub ncpu: u32,
}

/// A record codec of wdiff files (the kernel's six).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Codec {
    /// gzip (zlib).
    Gzip,
    /// lz4.
    Lz4,
    /// xz (lzma).
    Lzma,
    /// Stored as is.
    None,
    /// snappy.
    Snappy,
    /// zstd.
    Zstd,
}

/// The `replicate` command, sent to the source archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReplicateCommand {
    /// Volume.
    pub vol: String,
    /// Replicate up to this gid, or until at most this many MiB of diffs remain.
    pub until: MergeUntil,
    /// `host:port` of the destination archive.
    pub dest: String,
    /// The destination archive's id (its certificate must say so).
    pub dest_id: String,
    /// Allow a resync if the destination diverged.
    pub do_resync: bool,
    /// Send diffs one by one, without merging.
    pub dont_merge: bool,
    /// Compression of the sync data.
    pub compress: Option<CompressOpt>,
    /// Largest merged diff, bytes.
    pub merge_size_max: Option<u64>,
    /// Bulk size, logical blocks.
    pub bulk_lb: Option<u64>,
}
