//! The protocol messages: what walb peers say to each other.
//!
//! Every control message is a [`Message`], encoded with postcard inside a frame (see
//! [`crate::frame`]); bulk data travels in chunk frames beside them. A conversation runs
//! on one QUIC bidirectional stream:
//!
//! 1. The first stream of a connection carries the negotiation: the client sends a
//!    [`Hello`] (in a `Hello` frame), the server answers with a [`Welcome`]. [`Hello`] and
//!    [`Welcome`] are frozen: their encoding never changes, so that any two versions can
//!    tell each other that they do not match.
//! 2. Every later stream starts with one [`Message::Request`]. Requests are grouped by the
//!    [`OpClass`] that authorizes them ([`Request::op_class`]), so the authorization table
//!    in [`crate::auth`] is one `match`.
//! 3. The server answers with [`Message::Reply`] or [`Message::Error`]. Multi-step
//!    protocols (full sync, replication, wlog and wdiff transfer) then exchange
//!    [`Message::Step`]s and bulk chunks on the same stream, in the order each protocol
//!    fixes (see the doc of each request).
//! 4. [`Request::Subscribe`] turns the stream into an event feed: the server answers
//!    [`Reply::Accepted`] and then sends [`Message::Event`]s until either side closes it.
//!
//! The types here are wire DTOs: plain data, converted by hand from and to the daemons'
//! internal types at the boundary. When version N+1 changes a type, version N's types
//! move to `prev::vN` and are kept for decoding.

use serde::{Deserialize, Serialize};

pub use crate::auth::OpClass;

/// The protocol version this build speaks best (version 3 added the queue for foreground
/// slots: [`Step::Queued`] before a reply and [`Event::Queue`], sent only on connections
/// that speak 3; nothing a version-2 peer sends or receives changed, so 2 is still spoken).
pub const PROTOCOL_VERSION: u16 = 3;
/// The first protocol version with [`Step::Queued`] and [`Event::Queue`].
pub const PROTOCOL_VERSION_QUEUE: u16 = 3;
/// The oldest protocol version this build still speaks (version 2 added peer bindings:
/// `Command::Bind`, `Query::Peers`, the destination's id in a `replicate`; a version-1 peer
/// is told to upgrade).
pub const PROTOCOL_VERSION_MIN: u16 = 2;
/// The magic at the start of every [`Hello`].
pub const MAGIC: [u8; 4] = *b"WALB";

/// A 16-byte volume or archive UUID.
pub type Uuid = [u8; 16];

/// The first message of a connection, from the client. Frozen: never changes encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Oldest protocol version the client speaks.
    pub version_min: u16,
    /// Newest protocol version the client speaks.
    pub version_max: u16,
    /// Free-form software description, for logs (`walb-daemon 0.1.0`).
    pub software: String,
}

impl Hello {
    /// This build's hello.
    pub fn ours(software: &str) -> Self {
        Self {
            magic: MAGIC,
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION,
            software: software.to_owned(),
        }
    }
}

/// The server's answer to a [`Hello`]. Frozen: never changes encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Welcome {
    /// The connection will speak `version`.
    Accept {
        /// The chosen protocol version.
        version: u16,
        /// The server's software description.
        software: String,
    },
    /// The server cannot talk to this client.
    Reject(WireError),
}

/// Picks the version to speak, the newest both sides know: a pure function of the
/// client's [`Hello`] and the server's range.
pub fn negotiate(hello: &Hello, ours_min: u16, ours_max: u16) -> Result<u16, WireError> {
    if hello.magic != MAGIC {
        return Err(WireError::new(
            ErrorCode::VersionMismatch,
            "not a walb peer (bad magic in hello)",
        ));
    }
    let lo = hello.version_min.max(ours_min);
    let hi = hello.version_max.min(ours_max);
    if lo > hi || hello.version_min > hello.version_max {
        return Err(WireError::new(
            ErrorCode::VersionMismatch,
            format!(
                "protocol version mismatch: peer ({}) speaks {}..={}, we speak {}..={}; \
                 upgrade the older side",
                hello.software, hello.version_min, hello.version_max, ours_min, ours_max
            ),
        ));
    }
    Ok(hi)
}

/// One control message on a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Message {
    /// Opens a stream: what the client asks.
    Request(Request),
    /// The server's answer to a request.
    Reply(Reply),
    /// A step of a multi-step protocol, in either direction.
    Step(Step),
    /// An event of a subscription.
    Event(Event),
    /// A refusal or failure, in either direction; ends the conversation.
    Error(WireError),
}

// ----------------------------------------------------------------------------------------
// Requests

/// Everything a peer can ask, grouped by the operation class that authorizes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// A controller command that changes state (operator only).
    Command(Command),
    /// A read-only query (operator, viewer).
    Query(Query),
    /// Subscribe to the event stream (operator, viewer).
    Subscribe(Subscribe),
    /// Storage → proxy: ship a range of wlog packs. After [`Reply::Accepted`], the storage
    /// streams one bulk chunk per log pack (header block then data blocks, as on the log
    /// device) and ends the bulk, then sends [`Step::MetaDiff`]; the proxy answers
    /// [`Step::Ack`] once the diff is durable.
    WlogTransfer(WlogTransfer),
    /// Proxy → archive: ship a wdiff. After [`Reply::Accepted`], the proxy streams the
    /// diff's packs as bulk chunks and ends the bulk; the archive answers [`Step::Ack`].
    WdiffTransfer(WdiffTransfer),
    /// Storage → primary archive: full sync, hash sync, latest-snapshot gathering.
    BackupSync(BackupSync),
    /// Archive → archive: replication (full, resync, hash, diff; resumable).
    Replicate(ReplSync),
}

impl Request {
    /// The operation class that decides who may send this request.
    pub fn op_class(&self) -> OpClass {
        match self {
            Request::Command(_) => OpClass::Command,
            Request::Query(_) => OpClass::Query,
            Request::Subscribe(_) => OpClass::Subscribe,
            Request::WlogTransfer(_) => OpClass::WlogTransfer,
            Request::WdiffTransfer(_) => OpClass::WdiffTransfer,
            Request::BackupSync(_) => OpClass::BackupSync,
            Request::Replicate(_) => OpClass::Replication,
        }
    }
}

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

/// Read-only queries: `status`, `version` and the `get` targets (§2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Query {
    /// Every running action per active volume (archive).
    AllActions,
    /// Diffs whose chain is applicable from the base (archive).
    ApplicableDiff {
        /// Volume.
        vol: String,
        /// Stop once the snapshot passes this gid.
        gid_max: Option<u64>,
    },
    /// A proxy volume's destinations (`archive-info get|list`).
    ArchiveInfo {
        /// Volume.
        vol: String,
        /// One archive, or all.
        archive: Option<String>,
    },
    /// Archive uuid (archive).
    ArchiveUuid {
        /// Volume.
        vol: String,
    },
    /// Base meta state (archive); all active volumes if `vol` is `None`.
    Base {
        /// Volume.
        vol: Option<String>,
    },
    /// MurmurHash3 of the virtual image of snapshot `gid` (archive).
    BlockHash {
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
    },
    /// Cold snapshot gids (archive).
    Cold {
        /// Volume.
        vol: String,
    },
    /// Diffs of a volume in a gid range (archive: stored; proxy: queued, per archive).
    Diff {
        /// Volume.
        vol: String,
        /// Lower gid bound.
        gid_b: Option<u64>,
        /// Upper gid bound.
        gid_e: Option<u64>,
        /// Proxy only: the queue of this archive instead of `received/`.
        archive: Option<String>,
    },
    /// Whether this diff exists (archive).
    ExistsDiff {
        /// Volume.
        vol: String,
        /// The diff.
        diff: DiffRange,
    },
    /// Whether a base image exists (archive).
    ExistsBaseImage {
        /// Volume.
        vol: String,
    },
    /// Daemon counters (does not reset them, unlike walb-tools' handler-stat).
    HandlerStat,
    /// `storage`, `proxy` or `archive` (and the daemon's identity).
    HostType,
    /// Whether the log overflowed (storage).
    IsOverflow {
        /// Volume.
        vol: String,
    },
    /// Whether sending to `archive` gave up (proxy).
    IsWdiffSendError {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
    },
    /// Latest snapshot (all volumes if `None`).
    LatestSnap {
        /// Volume.
        vol: Option<String>,
    },
    /// Log usage (storage; all volumes if `None`).
    LogUsage {
        /// Volume.
        vol: Option<String>,
    },
    /// The snapshot reached by applying the chain up to `gid` (archive).
    MetaSnap {
        /// Volume.
        vol: String,
        /// Up to this gid (latest if `None`).
        gid: Option<u64>,
    },
    /// The meta state reached by applying the chain up to `gid` (archive).
    MetaState {
        /// Volume.
        vol: String,
        /// Return the "applying" form.
        applying: bool,
        /// Up to this gid (latest if `None`).
        gid: Option<u64>,
    },
    /// Count of running actions of a kind (archive).
    NumAction {
        /// Volume.
        vol: String,
        /// Action name (`Merge`, `Apply`, `Restore`, `ReplSyncAsClient`, `Resize`).
        action: String,
    },
    /// Number and total size of diffs in a range (archive).
    DiffStats {
        /// Volume.
        vol: String,
        /// Lower gid bound.
        gid_b: Option<u64>,
        /// Upper gid bound.
        gid_e: Option<u64>,
    },
    /// The daemon's process id.
    Pid,
    /// Logical blocks done by the running sync (archive).
    Progress {
        /// Volume.
        vol: String,
    },
    /// Restorable snapshots (archive).
    Restorable {
        /// Volume.
        vol: String,
        /// Include implicit snapshots.
        all: bool,
    },
    /// Restored snapshot gids (archive).
    Restored {
        /// Volume.
        vol: String,
    },
    /// Current state name of a volume.
    State {
        /// Volume.
        vol: String,
    },
    /// The peers bound to a volume ([`Reply::Peers`]).
    Peers {
        /// Volume.
        vol: String,
    },
    /// Human-readable status lines (a summary if `vol` is `None`).
    Status {
        /// Volume.
        vol: Option<String>,
    },
    /// Replication lag to each destination.
    TsDelta,
    /// Volume uuid.
    Uuid {
        /// Volume.
        vol: String,
    },
    /// The daemon's software and protocol version.
    Version,
    /// Volume names.
    Vols,
    /// Base image size, logical blocks (archive).
    VolSize {
        /// Volume.
        vol: String,
    },
    /// The archive's LVM volume group and thin pool.
    VolumeGroup,
}

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

/// The server's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Reply {
    /// Asynchronous command accepted; work goes on, progress comes as events.
    Accepted,
    /// A yes/no answer.
    Bool(bool),
    /// Synchronous command done.
    Done,
    /// Diff descriptions.
    Diffs(Vec<MetaDiffDto>),
    /// A gid (e.g. of a new snapshot).
    Gid(u64),
    /// A 128-bit hash.
    Hash([u8; 16]),
    /// Lines of text (status, listings).
    Lines(Vec<String>),
    /// A meta state.
    MetaState(MetaStateDto),
    /// A number (sizes, counts, pids).
    Number(u64),
    /// The peers bound to a volume.
    Peers(VolPeers),
    /// Snapshots (latest-snap, restorable, gather-latest-snap).
    Snapshots(Vec<SnapshotInfo>),
    /// A string.
    Text(String),
    /// A uuid.
    Uuid(Uuid),
    /// Software and protocol version.
    Version {
        /// Software description.
        software: String,
        /// Protocol version in use.
        protocol: u16,
    },
}

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

/// An event on the subscription stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Event {
    /// A volume's diff list changed.
    DiffList {
        /// Volume.
        vol: String,
        /// The diffs now held.
        diffs: Vec<MetaDiffDto>,
    },
    /// The subscriber was too slow; this many events were dropped.
    Lagged {
        /// Dropped events.
        missed: u64,
    },
    /// Log usage of a storage volume.
    LogUsage {
        /// Volume.
        vol: String,
        /// Used, physical blocks.
        usage_pb: u64,
        /// Capacity, physical blocks.
        capacity_pb: u64,
    },
    /// Progress of a long operation.
    Progress {
        /// Volume.
        vol: String,
        /// The operation (`full-sync`, `replicate`, `apply`, ...).
        op: String,
        /// Logical blocks done.
        done_lb: u64,
        /// Logical blocks in all.
        total_lb: u64,
    },
    /// A volume changed state.
    State {
        /// Volume.
        vol: String,
        /// The new state's name.
        state: String,
        /// When, seconds since the epoch.
        at_s: u64,
    },
    /// A long operation that reported [`Event::Progress`] failed (one that succeeds ends
    /// with a last progress of `done_lb == total_lb`, or with a state change).
    Failed {
        /// Volume.
        vol: String,
        /// The operation, as in its progress events.
        op: String,
        /// What went wrong.
        error: String,
    },
    /// Protocol 3: an operation waits for a foreground slot (`ahead: Some`), or got one
    /// and runs (`ahead: None`). One that gives up waiting ends with [`Event::Failed`].
    Queue {
        /// Volume.
        vol: String,
        /// The operation, as in its progress events.
        op: String,
        /// Operations ahead of it in the queue; `None`: it left the queue with a slot.
        ahead: Option<u32>,
        /// Foreground tasks running.
        running: u32,
        /// Foreground slots (`--fg`).
        slots: u32,
    },
}

impl Event {
    /// The oldest protocol version a subscriber must speak to be sent this event.
    pub fn since_version(&self) -> u16 {
        match self {
            Event::Queue { .. } => PROTOCOL_VERSION_QUEUE,
            _ => PROTOCOL_VERSION_MIN,
        }
    }

    /// The volume this event is about, if any.
    pub fn vol(&self) -> Option<&str> {
        match self {
            Event::DiffList { vol, .. }
            | Event::LogUsage { vol, .. }
            | Event::Progress { vol, .. }
            | Event::State { vol, .. }
            | Event::Failed { vol, .. }
            | Event::Queue { vol, .. } => Some(vol),
            Event::Lagged { .. } => None,
        }
    }
}

// ----------------------------------------------------------------------------------------
// Snapshot model DTOs

/// A snapshot: clean if `gid_b == gid_e`, dirty otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapDto {
    /// First gid.
    pub gid_b: u64,
    /// Last gid.
    pub gid_e: u64,
}

/// The four gids naming a diff `|b0,b1|-->|e0,e1|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DiffRange {
    /// Snapshot before.
    pub snap_b: SnapDto,
    /// Snapshot after.
    pub snap_e: SnapDto,
}

/// A diff's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MetaDiffDto {
    /// Which snapshots it links.
    pub range: DiffRange,
    /// Whether it may be merged with the next (its end is an implicit snapshot).
    pub mergeable: bool,
    /// Whether it is a compared diff (from a hash sync).
    pub comp_diff: bool,
    /// Timestamp, seconds since the epoch.
    pub timestamp_s: u64,
    /// File size, bytes (0 if unknown).
    pub size: u64,
}

/// A meta state: a snapshot, or an apply in progress from one snapshot to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MetaStateDto {
    /// The snapshot (or the start of the apply).
    pub snap_b: SnapDto,
    /// The end of an apply in progress.
    pub snap_e: Option<SnapDto>,
    /// Timestamp, seconds since the epoch.
    pub timestamp_s: u64,
}

/// A volume's latest snapshot as one peer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapshotInfo {
    /// Volume.
    pub vol: String,
    /// Gid (`None` if unknown).
    pub gid: Option<u64>,
    /// Timestamp, seconds since the epoch.
    pub timestamp_s: u64,
    /// Lsid (storage only).
    pub lsid: Option<u64>,
    /// Whether the snapshot is explicit (restorable lists).
    pub explicit: bool,
}

// ----------------------------------------------------------------------------------------
// Errors

/// A typed error code with a human message; what travels when something is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{code}: {message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

impl WireError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The kinds of failure peers tell each other. Daemons act on the code; humans read the
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ErrorCode {
    /// A request that makes no sense (bad arguments, wrong step).
    BadRequest,
    /// Too many foreground tasks: retry later.
    Busy,
    /// The operation was cancelled (force stop, shutdown).
    Cancelled,
    /// Data failed a checksum or did not decode.
    Corrupt,
    /// Archive: the uuid of the diff differs from the volume's.
    DifferentUuid,
    /// The peer's role may not ask this (see [`crate::auth`]).
    Forbidden,
    /// Something failed inside the peer.
    Internal,
    /// No such volume or object.
    NotFound,
    /// Archive: the base image is smaller than the volume.
    SmallerLvSize,
    /// The volume is stopped.
    Stopped,
    /// The volume is syncing.
    Syncing,
    /// Archive: the diff is older than what the archive has.
    TooOldDiff,
    /// Archive: the diff is newer than the next one the archive can take.
    TooNewDiff,
    /// A frame or message is larger than allowed.
    TooLarge,
    /// A frame or message was cut short.
    Truncated,
    /// The peer does not support this.
    Unsupported,
    /// The protocol versions do not overlap.
    VersionMismatch,
    /// The volume is in a state that forbids this.
    WrongState,
}

impl ErrorCode {
    /// The kebab-case name (walb-tools' reply strings where one existed).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Busy => "busy",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::DifferentUuid => "different-uuid",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not-found",
            ErrorCode::SmallerLvSize => "smaller-lv-size",
            ErrorCode::Stopped => "stopped",
            ErrorCode::Syncing => "syncing",
            ErrorCode::TooOldDiff => "too-old-diff",
            ErrorCode::TooNewDiff => "too-new-diff",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Truncated => "truncated",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::WrongState => "wrong-state",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Protocol 3 only appended variants: what a version-2 peer sends and receives keeps
    /// its encoding, and what it cannot decode is never sent to it.
    #[test]
    fn protocol_3_appends_only() {
        let first = |v: &dyn erased::Enc| v.first_byte();
        assert_eq!(first(&Step::Zero { len_lb: 1 }), 12);
        let note = QueueNote {
            queue: "archive a0".into(),
            ahead: 0,
            running: 2,
            slots: 2,
            wait_left_s: 5,
        };
        assert_eq!(first(&Step::Queued(note)), 13);
        let failed = Event::Failed {
            vol: "v".into(),
            op: "restore".into(),
            error: "e".into(),
        };
        assert_eq!(first(&failed), 5);
        let queue = Event::Queue {
            vol: "v".into(),
            op: "restore".into(),
            ahead: Some(1),
            running: 2,
            slots: 2,
        };
        assert_eq!(first(&queue), 6);
        assert_eq!(queue.since_version(), PROTOCOL_VERSION_QUEUE);
        assert_eq!(failed.since_version(), PROTOCOL_VERSION_MIN);
        const { assert!(PROTOCOL_VERSION_MIN < PROTOCOL_VERSION_QUEUE) };
        assert_eq!(queue.vol(), Some("v"));
    }

    mod erased {
        pub(super) trait Enc {
            fn first_byte(&self) -> u8;
        }
        impl<T: serde::Serialize> Enc for T {
            fn first_byte(&self) -> u8 {
                postcard::to_stdvec(self).unwrap()[0]
            }
        }
    }

    fn round_trip<T>(v: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let bytes = postcard::to_stdvec(v).unwrap();
        let back: T = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, v);
    }

    /// Round-trips `cases` arbitrary values of `T`. The derived strategies of the big
    /// nested enums recurse deeply in debug builds, so this runs on a thread with a large
    /// stack.
    fn check_round_trips<T>(cases: u32)
    where
        T: Arbitrary + Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                let mut runner =
                    proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
                runner
                    .run(&any::<T>(), |v| {
                        round_trip(&v);
                        Ok(())
                    })
                    .unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn every_message_type_round_trips() {
        check_round_trips::<Message>(512);
        check_round_trips::<Hello>(64);
        check_round_trips::<Welcome>(64);
        check_round_trips::<Request>(256);
        check_round_trips::<Command>(256);
        check_round_trips::<Query>(256);
        check_round_trips::<Reply>(256);
        check_round_trips::<Step>(256);
        check_round_trips::<Event>(256);
        check_round_trips::<WireError>(64);
        check_round_trips::<OpClass>(16);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = postcard::from_bytes::<Message>(&bytes);
            let _ = postcard::from_bytes::<Hello>(&bytes);
        }
        #[test]
        fn negotiation_picks_a_common_version(lo in 0u16..5, hi in 0u16..5) {
            let hello = Hello { magic: MAGIC, version_min: lo, version_max: hi, software: "t".into() };
            match negotiate(&hello, 1, 3) {
                Ok(v) => prop_assert!(lo <= v && v <= hi && (1..=3).contains(&v)),
                Err(e) => {
                    prop_assert_eq!(e.code, ErrorCode::VersionMismatch);
                    prop_assert!(lo > hi || hi < 1 || lo > 3);
                }
            }
        }
    }

    #[test]
    fn hello_encoding_is_frozen() {
        let h = Hello::ours("x");
        let bytes = postcard::to_stdvec(&h).unwrap();
        // Versions 2..=3, then the software string.
        assert_eq!(bytes, [b'W', b'A', b'L', b'B', 2, 3, 1, b'x']);
    }

    #[test]
    fn mismatch_message_names_both_ranges() {
        let hello = Hello {
            magic: MAGIC,
            version_min: 7,
            version_max: 9,
            software: "walb 9".into(),
        };
        let e = negotiate(&hello, 1, 1).unwrap_err();
        assert!(
            e.message.contains("7..=9") && e.message.contains("1..=1"),
            "{e}"
        );
    }
}
