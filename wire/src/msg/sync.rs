//! The multi-step protocols' openings (wlog and wdiff transfer, full and hash sync,
//! replication, subscription) and their steps.

use serde::{Deserialize, Serialize};

use super::{MetaDiffDto, MetaStateDto, SnapDto, Uuid};

/// A subscription to the event stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Subscribe {
    /// Only events of these volumes (all if empty). Daemon-wide events always pass.
    pub vols: Vec<String>,
}

/// Opening of a wlog transfer (storage → proxy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WlogTransfer {
    /// Volume.
    pub vol: String,
    /// Volume uuid.
    pub uuid: Uuid,
    /// Physical block size of the log device.
    pub pbs: u32,
    /// Checksum salt of the log device.
    pub salt: u32,
    /// Volume size, logical blocks.
    pub size_lb: u64,
    /// Size of the logs to come, physical blocks.
    pub log_size_pb: u64,
}

/// Opening of a wdiff transfer (proxy → archive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WdiffTransfer {
    /// Volume.
    pub vol: String,
    /// Volume uuid.
    pub uuid: Uuid,
    /// Volume size, logical blocks.
    pub size_lb: u64,
    /// The diff being sent.
    pub diff: MetaDiffDto,
}

/// Storage ↔ primary archive sessions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum BackupSync {
    /// Full sync: after [`Reply::Accepted`] the storage sends [`Step::Uuid`] (archive
    /// [`Step::Ack`]s), then the image as bulk chunks (zero chunks may be skipped by
    /// sending [`Step::Zero`]), ends the bulk, sends [`Step::MetaSnap`]; archive
    /// [`Step::Ack`]s.
    Full(SyncStart),
    /// Hash sync: after [`Reply::Accepted`] the archive sends [`Step::MetaSnap`] (its
    /// latest snapshot) and then per bulk [`Step::Hash`]; the storage streams diff packs as
    /// bulk chunks, ends the bulk, sends [`Step::MetaSnap`]; archive [`Step::Ack`]s.
    Hash(SyncStart),
    /// Latest snapshots of these volumes; the reply is [`Reply::Snapshots`].
    GatherLatestSnap {
        /// Volumes.
        vols: Vec<String>,
    },
}

/// Opening of a full or hash sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SyncStart {
    /// Volume.
    pub vol: String,
    /// Volume size, logical blocks.
    pub size_lb: u64,
    /// Storage clock at the start (seconds since the epoch; the hash seed of hash sync).
    pub time_s: u64,
    /// Bulk size, logical blocks.
    pub bulk_lb: u64,
}

/// Opening of a replication session (source archive → destination archive). The
/// destination answers [`Reply::Accepted`] then [`Step::ReplKind`]; the source answers with
/// [`Step::ReplFull`] or [`Step::ReplResync`] as needed (the destination replies
/// [`Step::StartLb`] to resume), then loops: destination sends [`Step::MetaState`], source
/// sends [`Step::ReplDecision`] and the data; finally the destination [`Step::Ack`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReplSync {
    /// Volume.
    pub vol: String,
    /// The source's archive uuid.
    pub archive_uuid: Uuid,
    /// Whether a resync is allowed.
    pub do_resync: bool,
}

// ----------------------------------------------------------------------------------------
// Replies, steps, events

/// A step of a multi-step protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Step {
    /// The previous step is durable.
    Ack,
    /// A hash of one bulk (hash sync, resync).
    Hash([u8; 16]),
    /// A meta diff.
    MetaDiff(MetaDiffDto),
    /// A snapshot.
    MetaSnap(SnapDto),
    /// A meta state.
    MetaState(MetaStateDto),
    /// Progress of a long transfer.
    Progress {
        /// Logical blocks done.
        done_lb: u64,
        /// Logical blocks in all.
        total_lb: u64,
    },
    /// The source's choice for this round of replication.
    ReplDecision(ReplDecision),
    /// Parameters of a full replication.
    ReplFull {
        /// Volume size, logical blocks.
        size_lb: u64,
        /// Bulk size, logical blocks.
        bulk_lb: u64,
        /// Base meta state of the source.
        base: MetaStateDto,
        /// Volume uuid.
        uuid: Uuid,
    },
    /// The kind of replication the destination chose.
    ReplKind(ReplKind),
    /// Parameters of a hash round of a replication (`oldest`: the snapshot the source
    /// compares with; the destination answers with its bulk hashes).
    ReplResync {
        /// Volume size, logical blocks.
        size_lb: u64,
        /// Bulk size, logical blocks.
        bulk_lb: u64,
        /// Oldest meta state of the source.
        oldest: MetaStateDto,
        /// Volume uuid.
        uuid: Uuid,
        /// Hash seed.
        hash_seed: u32,
    },
    /// Where a (resumed) full sync starts, logical blocks.
    StartLb(u64),
    /// A volume uuid.
    Uuid(Uuid),
    /// The next `len_lb` logical blocks are all zero (sent instead of a chunk).
    Zero {
        /// Length, logical blocks.
        len_lb: u64,
    },
    /// Server → client, before the reply (protocol 3): the request waits in the queue for
    /// a foreground slot. Sent when the queue moves and at least every few seconds, so
    /// that the caller's step timeout does not fire while it waits; the caller that does
    /// not want to wait longer closes the call, which takes it out of the queue.
    Queued(QueueNote),
}

/// Where a request waiting for a foreground slot stands ([`Step::Queued`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct QueueNote {
    /// Whose queue (`archive a0`): a storage waiting in its archive's queue passes the
    /// archive's notes on to its own caller.
    pub queue: String,
    /// Requests ahead of this one in the queue.
    pub ahead: u32,
    /// Foreground tasks running.
    pub running: u32,
    /// Foreground slots (`--fg`).
    pub slots: u32,
    /// How much longer the daemon lets it wait, seconds.
    pub wait_left_s: u64,
}

/// The replication kind the destination chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ReplKind {
    /// Copy the whole image.
    Full,
    /// Hash sync or diffs.
    HashOrDiff,
    /// The destination diverged: rebuild by hashes.
    Resync,
}

/// The source's decision in a replication round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ReplDecision {
    /// Send merged diffs.
    Diff,
    /// Nothing more to do.
    Done,
    /// Hash sync.
    Hash,
}
