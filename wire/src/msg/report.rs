//! The typed answers of protocol 4: status, ts-delta, log usage, actions, bases, diff
//! statistics, restored images, archive info.
//!
//! A daemon fills these in; the console reads their fields (the TUI's lag and log bars,
//! the uptime) and prints them with [`Report::lines`]-style renderers that give exactly
//! the lines walb-tools operators know. A daemon answering a protocol-3 peer sends the
//! same lines as [`super::Reply::Lines`] ([`super::Reply::for_version`]): one renderer,
//! two uses, nothing a daemon formats that the console parses.

use serde::{Deserialize, Serialize};

use super::text::{gid_or_dash, meta_state_str, time_compact, time_iso, uuid_hex};
use super::{
    ArchiveDest, ArchiveState, Codec, MetaDiffDto, MetaStateDto, ProxyState, StorageState, Uuid,
};
use crate::Role;

/// One `ts-delta` row: how far a destination is behind a volume's newest snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TsDeltaRow {
    /// Volume.
    pub vol: String,
    /// The destination's id.
    pub dest: String,
    /// Who answers (a storage towards its archive, an archive towards a replica).
    pub kind: Role,
    /// The destination's role.
    pub dest_kind: Role,
    /// The newest snapshot here.
    pub gid: u64,
    /// Its timestamp, seconds since the epoch.
    pub ts_s: u64,
    /// The destination's newest snapshot and its timestamp, if known.
    pub dest_snap: Option<(u64, u64)>,
    /// A storage's rows: seconds since the destination's snapshot was gathered.
    pub age_s: Option<u64>,
}

impl TsDeltaRow {
    /// Seconds the destination is behind, if known.
    pub fn delta_s(&self) -> Option<u64> {
        self.dest_snap.map(|(_, t)| self.ts_s.saturating_sub(t))
    }

    /// `name:VOL\tdest:ID\tkind:K\tdest_kind:K\tgid:N\tts:T\tdest_gid:N\tdest_ts:T\t
    /// ts_delta:S` (and `\tage:S` on a storage).
    pub fn line(&self) -> String {
        let dash = || "-".to_owned();
        let (dest_gid, dest_ts) = self
            .dest_snap
            .map_or((dash(), dash()), |(g, t)| (g.to_string(), time_iso(t)));
        let mut l = format!(
            "name:{}\tdest:{}\tkind:{}\tdest_kind:{}\tgid:{}\tts:{}\tdest_gid:{dest_gid}\t\
             dest_ts:{dest_ts}\tts_delta:{}",
            self.vol,
            self.dest,
            self.kind,
            self.dest_kind,
            self.gid,
            time_iso(self.ts_s),
            self.delta_s().map_or_else(dash, |d| d.to_string())
        );
        if self.kind == Role::Storage {
            l.push_str(&format!(
                "\tage:{}",
                self.age_s.map_or_else(dash, |a| a.to_string())
            ));
        }
        l
    }
}

/// One volume's log usage (storage).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LogUsageRow {
    /// Volume.
    pub vol: String,
    /// Physical blocks of log in use.
    pub usage_pb: u64,
    /// Physical blocks of the ring.
    pub capacity_pb: u64,
    /// Physical block size, bytes.
    pub pbs: u32,
}

impl LogUsageRow {
    /// `name:VOL\tusage_pb:N\tcapacity_pb:N\tpbs:N`.
    pub fn line(&self) -> String {
        format!(
            "name:{}\tusage_pb:{}\tcapacity_pb:{}\tpbs:{}",
            self.vol, self.usage_pb, self.capacity_pb, self.pbs
        )
    }
}

/// One action's count and last start (`all-actions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ActionCount {
    /// `Merge`, `Apply`, `Restore`, `ReplSyncAsClient` or `Resize`.
    pub action: String,
    /// How many run.
    pub running: u32,
    /// When the last one started, seconds since the epoch.
    pub last_start_s: Option<u64>,
}

/// One volume's actions (`all-actions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct VolActions {
    /// Volume.
    pub vol: String,
    /// Every action, in walb-tools' order.
    pub actions: Vec<ActionCount>,
}

impl VolActions {
    /// `VOL Merge 0 --- Apply 1 20170524044940 ...`.
    pub fn line(&self) -> String {
        let mut l = self.vol.clone();
        for a in &self.actions {
            let ts = a.last_start_s.map_or("---".to_owned(), time_compact);
            l.push_str(&format!(" {} {} {ts}", a.action, a.running));
        }
        l
    }
}

/// One volume's base (`base-all`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct VolBase {
    /// Volume.
    pub vol: String,
    /// Its base meta state.
    pub base: MetaStateDto,
}

impl VolBase {
    /// `name:VOL\tmetastate:<|5|>-...`.
    pub fn line(&self) -> String {
        format!(
            "name:{}\tmetastate:{}",
            self.vol,
            meta_state_str(&self.base)
        )
    }
}

/// How many diffs a range holds and their size (`num-diff`, `total-diff-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DiffStats {
    /// Number of diffs.
    pub num: u64,
    /// Their total size, bytes.
    pub total_size: u64,
}

impl DiffStats {
    /// `num_diff:N`, `total_diff_size:N`.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("num_diff:{}", self.num),
            format!("total_diff_size:{}", self.total_size),
        ]
    }
}

/// A restored image (`get restored`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RestoredImage {
    /// Its snapshot.
    pub gid: u64,
    /// Its path on the archive's host.
    pub path: String,
    /// How it was made (`reflink`, `copy`), if recorded.
    pub how: Option<String>,
}

impl RestoredImage {
    /// `GID PATH` (`get restored`).
    pub fn line(&self) -> String {
        format!("{} {}", self.gid, self.path)
    }
}

/// The walb-tools name of a codec.
pub fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::None => "none",
        Codec::Gzip => "gzip",
        Codec::Snappy => "snappy",
        Codec::Lzma => "lzma",
        Codec::Lz4 => "lz4",
        Codec::Zstd => "zstd",
    }
}

impl ArchiveDest {
    /// `HOST:PORT CODEC:LEVEL:NCPU DELAY` (`archive-info get`).
    pub fn line(&self) -> String {
        format!(
            "{} {}:{}:{} {}",
            self.addr,
            codec_name(self.compress.codec),
            self.compress.level,
            self.compress.ncpu,
            self.delay_s
        )
    }
}

// ----------------------------------------------------------------------------------------
// status

/// A daemon's foreground slots and the requests waiting for one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FgStatus {
    /// Slots taken.
    pub running: u32,
    /// Slots.
    pub slots: u32,
    /// Requests in line, first first.
    pub queued: Vec<FgWaiting>,
}

/// A request waiting for a foreground slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FgWaiting {
    /// Volume.
    pub vol: String,
    /// Operation.
    pub op: String,
    /// Who asked.
    pub peer: String,
    /// Seconds in line.
    pub waiting_s: u64,
}

impl FgStatus {
    /// `foreground R/S running, Q queued`, then `queued VOL OP by PEER: N ahead, waiting
    /// S s` per request in line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "foreground {}/{} running, {} queued",
            self.running,
            self.slots,
            self.queued.len()
        )];
        out.extend(self.queued.iter().enumerate().map(|(i, q)| {
            format!(
                "queued {} {} by {}: {i} ahead, waiting {} s",
                q.vol, q.op, q.peer, q.waiting_s
            )
        }));
        out
    }
}

/// A volume's stop flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum StopFlag {
    /// Running normally.
    #[default]
    NotStopping,
    /// Proxy `stop empty`: delivering what is queued, then stopping.
    WaitingForEmpty,
    /// Graceful stop: running work finishes.
    Stopping,
    /// Forced stop: running work aborts at its next check.
    ForceStopping,
}

impl StopFlag {
    /// Its name (`NotStopping`).
    pub fn name(self) -> &'static str {
        match self {
            Self::NotStopping => "NotStopping",
            Self::WaitingForEmpty => "WaitingForEmpty",
            Self::Stopping => "Stopping",
            Self::ForceStopping => "ForceStopping",
        }
    }
}

/// What `status` answers (protocol 4): a daemon's summary, or one volume's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Status {
    /// A storage's summary.
    Storage(StorageSummary),
    /// One storage volume.
    StorageVol(StorageVolStatus),
    /// A proxy's summary.
    Proxy(ProxySummary),
    /// One proxy volume.
    ProxyVol(ProxyVolStatus),
    /// An archive's summary.
    Archive(ArchiveSummary),
    /// One archive volume.
    ArchiveVol(ArchiveVolStatus),
}

impl Status {
    /// The lines `status` prints (walb-tools' forms where it has them).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Storage(s) => s.lines(),
            Self::StorageVol(s) => s.lines(),
            Self::Proxy(s) => s.lines(),
            Self::ProxyVol(s) => s.lines(),
            Self::Archive(s) => s.lines(),
            Self::ArchiveVol(s) => s.lines(),
        }
    }

    /// How long the daemon has run, seconds (summaries only).
    pub fn uptime_s(&self) -> Option<u64> {
        match self {
            Self::Storage(s) => Some(s.uptime_s),
            Self::Proxy(s) => Some(s.uptime_s),
            Self::Archive(s) => Some(s.uptime_s),
            Self::StorageVol(_) | Self::ProxyVol(_) | Self::ArchiveVol(_) => None,
        }
    }
}

/// A proxy as a storage sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyLink {
    /// `ID@HOST:PORT`.
    pub addr: String,
    /// Whether its last check answered.
    pub available: bool,
}

/// The storage's archive gathers for ts-delta.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GatherStatus {
    /// Seconds between gathers.
    pub interval_s: u64,
    /// Gathers tried.
    pub gathers: u64,
    /// Seconds since the last one that answered.
    pub last_ok_ago_s: Option<u64>,
    /// Why the last one failed, if it did.
    pub last_error: Option<String>,
}

/// One volume's line in a storage's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StorageVolLine {
    /// Volume.
    pub vol: String,
    /// State.
    pub state: StorageState,
    /// Oldest gid still in the log, if any.
    pub oldest_gid: Option<u64>,
    /// Newest gid handed out, if any.
    pub latest_gid: Option<u64>,
}

/// A storage's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StorageSummary {
    /// The node's id.
    pub node_id: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Its base directory.
    pub base_dir: String,
    /// Its primary archive, `ID@HOST:PORT`.
    pub archive: String,
    /// Its proxies, in order of preference.
    pub proxies: Vec<ProxyLink>,
    /// Largest wlog transfer, MiB.
    pub max_wlog_send_mb: u64,
    /// Seconds between implicit snapshots.
    pub snapshot_interval_s: u64,
    /// Full-scan rate limit, bytes per second (0: none).
    pub full_scan_bps: u64,
    /// Monitor tasks scheduled.
    pub scheduled_tasks: u64,
    /// The ts-delta gathers.
    pub ts_delta: GatherStatus,
    /// Foreground slots.
    pub fg: FgStatus,
    /// Every volume that is not Clear.
    pub vols: Vec<StorageVolLine>,
}

impl StorageSummary {
    fn lines(&self) -> Vec<String> {
        let mut v = vec![
            "hostType storage".to_owned(),
            format!("nodeId {}", self.node_id),
            format!("uptime {}s", self.uptime_s),
            format!("baseDir {}", self.base_dir),
            format!("archive {}", self.archive),
        ];
        v.extend(
            self.proxies
                .iter()
                .map(|p| format!("proxy {} available {}", p.addr, u8::from(p.available))),
        );
        v.push(format!("maxWlogSendMb {}", self.max_wlog_send_mb));
        v.push(format!("snapshotIntervalS {}", self.snapshot_interval_s));
        v.push(format!("fullScanBps {}", self.full_scan_bps));
        v.push(format!("scheduledTasks {}", self.scheduled_tasks));
        let t = &self.ts_delta;
        v.push(format!(
            "tsDelta intervalS {} gathers {} lastGatherAgoS {} lastError {}",
            t.interval_s,
            t.gathers,
            gid_or_dash(t.last_ok_ago_s),
            t.last_error.as_deref().unwrap_or("-")
        ));
        v.extend(self.fg.lines());
        v.extend(self.vols.iter().map(|l| {
            format!(
                "volume {} state {} oldestGid {} latestGid {}",
                l.vol,
                l.state,
                gid_or_dash(l.oldest_gid),
                gid_or_dash(l.latest_gid)
            )
        }));
        v
    }
}

/// A snapshot record of a storage volume (`done`, `queued`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SnapRecord {
    /// Gid.
    pub gid: u64,
    /// Lsid.
    pub lsid: u64,
    /// Explicit (taken by an operator) or implicit.
    pub explicit: bool,
    /// Seconds since the epoch.
    pub timestamp_s: u64,
}

impl SnapRecord {
    /// `gid N lsid N explicit|implicit YYYY-MM-DDThh:mm:ss`.
    pub fn text(&self) -> String {
        format!(
            "gid {} lsid {} {} {}",
            self.gid,
            self.lsid,
            if self.explicit {
                "explicit"
            } else {
                "implicit"
            },
            time_iso(self.timestamp_s)
        )
    }
}

/// The lsids of a WalB device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LsidsDto {
    /// Oldest lsid in the ring.
    pub oldest: u64,
    /// Written before the last flush of the superblock.
    pub prev_written: u64,
    /// Written to the log.
    pub written: u64,
    /// Durable.
    pub permanent: u64,
    /// Newest.
    pub latest: u64,
}

/// What a storage reads from a volume's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DeviceStatus {
    /// Size, logical blocks.
    pub size_lb: u64,
    /// Whether the log overflowed.
    pub overflow: bool,
    /// Log in use, physical blocks.
    pub log_usage_pb: u64,
    /// Log capacity, physical blocks.
    pub log_capacity_pb: u64,
    /// Physical block size.
    pub pbs: u32,
    /// Lsids.
    pub lsids: LsidsDto,
}

/// A storage volume's metadata and device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StorageVolMeta {
    /// The WalB device's path.
    pub wdev_path: String,
    /// Volume uuid.
    pub uuid: Uuid,
    /// What the device says, or why it could not be read.
    pub device: Result<DeviceStatus, String>,
    /// The meta state of the last full or hash backup.
    pub full_sync_base: Option<MetaStateDto>,
    /// The newest snapshot shipped.
    pub done: SnapRecord,
    /// Snapshots waiting to be shipped.
    pub queue: Vec<SnapRecord>,
}

/// One storage volume's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StorageVolStatus {
    /// Volume.
    pub vol: String,
    /// State.
    pub state: StorageState,
    /// The stop flag.
    pub stop: StopFlag,
    /// Running actions.
    pub actions: Vec<String>,
    /// Whether its log is shipped (monitored).
    pub monitored: bool,
    /// Its metadata, or why it could not be read (`None` when Clear).
    pub meta: Option<Result<StorageVolMeta, String>>,
}

impl StorageVolStatus {
    fn lines(&self) -> Vec<String> {
        let mut out = vec![
            "hostType storage".to_owned(),
            format!("volId {}", self.vol),
            format!("state {}", self.state),
        ];
        let Some(meta) = &self.meta else {
            return out;
        };
        out.push(format!("stopState {}", self.stop.name()));
        out.push(format!("actions {:?}", self.actions));
        out.push(format!("isUnderMonitoring {}", u8::from(self.monitored)));
        let m = match meta {
            Ok(m) => m,
            Err(e) => {
                out.push(format!("error {e}"));
                return out;
            }
        };
        out.push(format!("wdevPath {}", m.wdev_path));
        out.push(format!("uuid {}", uuid_hex(&m.uuid)));
        match &m.device {
            Ok(d) => {
                let l = &d.lsids;
                out.push(format!("sizeLb {}", d.size_lb));
                out.push(format!("isOverflow {}", u8::from(d.overflow)));
                out.push(format!("logUsagePb {}", d.log_usage_pb));
                out.push(format!("logCapacityPb {}", d.log_capacity_pb));
                out.push(format!("pbs {}", d.pbs));
                out.push(format!(
                    "lsids oldest {} prevWritten {} written {} permanent {} latest {}",
                    l.oldest, l.prev_written, l.written, l.permanent, l.latest
                ));
            }
            Err(e) => out.push(format!("deviceError {e}")),
        }
        if let Some(st) = &m.full_sync_base {
            out.push(format!("fullSyncBase {}", meta_state_str(st)));
        }
        out.push(format!("done {}", m.done.text()));
        out.push(format!("queue {}", m.queue.len()));
        out.extend(m.queue.iter().map(|r| format!("queued {}", r.text())));
        out
    }
}

/// One volume's line in a proxy's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyVolLine {
    /// Volume.
    pub vol: String,
    /// State.
    pub state: ProxyState,
    /// Archives it forwards to.
    pub archives: u32,
    /// Of them, how many gave up sending.
    pub send_errors: u32,
}

/// A proxy's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxySummary {
    /// The node's id.
    pub node_id: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Background slots.
    pub bg: u64,
    /// Free foreground slots.
    pub fg_free: u32,
    /// Every volume that is not Clear.
    pub vols: Vec<ProxyVolLine>,
}

impl ProxySummary {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "proxy {} uptime {}s bg {} fg-free {}",
            self.node_id, self.uptime_s, self.bg, self.fg_free
        )];
        lines.extend(self.vols.iter().map(|v| {
            format!(
                "{} {} archives:{} send-errors:{}",
                v.vol, v.state, v.archives, v.send_errors
            )
        }));
        lines
    }
}

/// How a proxy's sending to one archive goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SendHealth {
    /// Sending (or nothing to send).
    Ok,
    /// It gave up: the error.
    GaveUp(String),
    /// Retrying after a failure.
    Retrying {
        /// Seconds until the next try.
        delay_s: u64,
        /// The last failure, if recorded.
        last_error: Option<String>,
    },
}

/// A proxy volume's queue towards one archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyQueue {
    /// The archive's name.
    pub archive: String,
    /// Where and how it forwards.
    pub dest: ArchiveDest,
    /// Diffs queued.
    pub queued: u64,
    /// Their size, bytes.
    pub bytes: u64,
    /// How sending goes.
    pub health: SendHealth,
}

/// One proxy volume's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyVolStatus {
    /// Volume.
    pub vol: String,
    /// State.
    pub state: ProxyState,
    /// The stop flag.
    pub stop: StopFlag,
    /// Size, logical blocks.
    pub size_lb: u64,
    /// Seconds since the last wlog arrived.
    pub last_wlog_s_ago: u64,
    /// One queue per archive.
    pub queues: Vec<ProxyQueue>,
}

impl ProxyVolStatus {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("name:{}", self.vol),
            format!("state:{}", self.state),
            format!("stop:{}", self.stop.name()),
            format!("size_lb:{}", self.size_lb),
            format!("last_wlog_s_ago:{}", self.last_wlog_s_ago),
        ];
        for q in &self.queues {
            let mut l = format!(
                "archive:{}\t{}\tqueued:{}\tbytes:{}",
                q.archive,
                q.dest.line(),
                q.queued,
                q.bytes
            );
            match &q.health {
                SendHealth::Ok => {}
                SendHealth::GaveUp(e) => l.push_str(&format!("\tsend-error:{e}")),
                SendHealth::Retrying {
                    delay_s,
                    last_error,
                } => {
                    l.push_str(&format!("\tretry-delay:{delay_s}s"));
                    if let Some(e) = last_error {
                        l.push_str(&format!("\tlast-error:{e}"));
                    }
                }
            }
            lines.push(l);
        }
        lines
    }
}

/// One volume's line in an archive's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ArchiveVolLine {
    /// Volume.
    pub vol: String,
    /// State.
    pub state: ArchiveState,
    /// Base meta state.
    pub base: MetaStateDto,
    /// The newest snapshot its diffs reach.
    pub latest: super::SnapDto,
    /// Diffs held.
    pub diffs: u64,
}

/// An archive's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ArchiveSummary {
    /// The node's id.
    pub node_id: String,
    /// The image backend (`file`, `reflink`).
    pub backend: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Every volume it knows.
    pub vols: Vec<ArchiveVolLine>,
    /// Foreground slots.
    pub fg: FgStatus,
}

impl ArchiveSummary {
    fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "archive {} ({} backend): {} volume(s), uptime {}s",
            self.node_id,
            self.backend,
            self.vols.len(),
            self.uptime_s
        )];
        out.extend(self.vols.iter().map(|v| {
            format!(
                "{} {} base:{} latest:{} diffs:{}",
                v.vol,
                v.state,
                meta_state_str(&v.base),
                super::text::snap_str(v.latest),
                v.diffs
            )
        }));
        out.extend(self.fg.lines());
        out
    }
}

/// An archive volume's data (not Clear).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ArchiveVolData {
    /// Volume uuid.
    pub uuid: Uuid,
    /// Archive uuid.
    pub archive_uuid: Uuid,
    /// Base meta state.
    pub base: MetaStateDto,
    /// The newest snapshot (`None` while the base is empty).
    pub latest: Option<super::SnapDto>,
    /// The image backend's name and the base image's size, logical blocks (`None`: no
    /// base image).
    pub base_image: Option<(String, u64)>,
    /// Every diff.
    pub diffs: Vec<MetaDiffDto>,
    /// Restorable explicit snapshots.
    pub restorable: Vec<u64>,
    /// Restored images.
    pub restored: Vec<RestoredImage>,
    /// Running actions.
    pub actions: Vec<String>,
    /// Logical blocks done by the running sync.
    pub progress_lb: u64,
    /// Whether a stop is under way.
    pub stopping: bool,
}

/// One archive volume's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ArchiveVolStatus {
    /// Volume.
    pub vol: String,
    /// State.
    pub state: ArchiveState,
    /// Its data (`None` when Clear).
    pub data: Option<ArchiveVolData>,
}

impl ArchiveVolStatus {
    fn lines(&self) -> Vec<String> {
        let mut out = vec![
            format!("name:{}", self.vol),
            format!("state:{}", self.state),
        ];
        let Some(d) = &self.data else {
            return out;
        };
        out.push(format!("uuid:{}", uuid_hex(&d.uuid)));
        out.push(format!("archive_uuid:{}", uuid_hex(&d.archive_uuid)));
        out.push(format!("base:{}", meta_state_str(&d.base)));
        if let Some(l) = d.latest {
            out.push(format!("latest:{}", super::text::snap_str(l)));
        }
        out.push(match &d.base_image {
            Some((kind, s)) => format!("base_image:{kind} size_lb:{s}"),
            None => "base_image:none".into(),
        });
        let total = d.diffs.iter().fold(0u64, |s, x| s.saturating_add(x.size));
        out.push(format!("diffs:{} total_size:{total}", d.diffs.len()));
        out.extend(
            d.diffs
                .iter()
                .map(|x| format!("diff:{}", super::text::diff_line(x))),
        );
        let gids: Vec<String> = d.restorable.iter().map(u64::to_string).collect();
        out.push(format!("restorable:{}", gids.join(" ")));
        for r in &d.restored {
            let how = r.how.as_ref().map_or(String::new(), |h| format!(" ({h})"));
            out.push(format!("restored:{} {}{how}", r.gid, r.path));
        }
        if !d.actions.is_empty() {
            out.push(format!("actions:{}", d.actions.join(" ")));
        }
        if d.progress_lb > 0 {
            out.push(format!("progress_lb:{}", d.progress_lb));
        }
        if d.stopping {
            out.push("stopping:yes".into());
        }
        out
    }
}
