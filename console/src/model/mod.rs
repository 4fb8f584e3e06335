//! The live model: everything the console knows about the cluster, kept current by the
//! daemons' events, with no screen in it. The TUI draws it, `--exec metrics` exports it
//! and the status dump prints it.
//!
//! [`Live`] is filled from query replies (a snapshot taken when a daemon's event
//! subscription starts) and kept current by the daemons' events; nothing here polls.
//! [`fold`] is the pure function that folds a daemon's event or a query's reply into it
//! (`Msg` in, [`Live`] changed, [`Effect`]s out); [`feed`] carries those effects out
//! against the daemons, and [`feed::load_snapshot`] drives it without a terminal. Time
//! is injected ([`Live::clock`]), so the model is deterministic in tests.
//!
//! States are typed ([`VolumeState`]); which are temporary is the wire's
//! [`VolumeState::is_steady`], and which long operations become tasks is a table
//! ([`TASK_KINDS`]): a new operation of the daemons (hash backup,
//! merge, apply, replication...) shows up as a task as soon as a daemon publishes
//! progress for it, with the label from the table if it has one.

pub mod ask;
pub mod feed;
pub mod fold;

use std::collections::{BTreeMap, VecDeque};

use walb_wire::msg::{
    ArchiveState, MetaDiffDto, MetaStateDto, RestoredImage, SnapshotInfo, VolumeState,
};
use walb_wire::Role;

use crate::cluster::Cluster;

pub use ask::{Answer, Ask, AskError};
pub use feed::{load_snapshot, now_ms};
pub use fold::{Effect, Msg};

/// Milliseconds since the Unix epoch.
pub type Ms = u64;

/// How many lines the Events view keeps.
pub const EVENT_LOG_MAX: usize = 5000;
/// How many ended tasks the Tasks view keeps.
pub const ENDED_TASKS_MAX: usize = 50;
/// A running task without progress for this long is shown as stalled.
pub const STALLED_MS: Ms = 60_000;

/// One kind of long operation the Tasks view knows by name.
#[derive(Debug)]
pub struct TaskKind {
    /// The `op` of the daemons' progress events.
    pub op: &'static str,
    /// What operators call it.
    pub label: &'static str,
    /// Archive states during which it runs (a task appears when a volume enters one, and
    /// ends when the volume leaves it).
    pub states: &'static [ArchiveState],
}

/// The long operations, by the `op` of their progress events.
pub static TASK_KINDS: &[TaskKind] = &[
    TaskKind {
        op: "full-sync",
        label: "full backup",
        states: &[ArchiveState::FullSync],
    },
    TaskKind {
        op: "hash-sync",
        label: "hash backup",
        states: &[ArchiveState::HashSync],
    },
    TaskKind {
        op: "restore",
        label: "restore",
        states: &[],
    },
    TaskKind {
        op: "merge",
        label: "merge",
        states: &[],
    },
    TaskKind {
        op: "apply",
        label: "apply",
        states: &[],
    },
    TaskKind {
        op: "replicate",
        label: "replication",
        states: &[ArchiveState::ReplSyncAsServer, ArchiveState::Resync],
    },
];

/// The label of operation `op` (the op itself if the table does not know it).
pub fn task_label(op: &str) -> String {
    TASK_KINDS
        .iter()
        .find(|k| k.op == op)
        .map_or_else(|| op.to_owned(), |k| k.label.to_owned())
}

/// Whether a node answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Dialling and subscribing.
    Connecting,
    /// Subscribed to its events.
    Up,
    /// Lost or never reached; retried with backoff.
    Down {
        /// Why.
        error: String,
    },
}

/// A daemon of the cluster file, and what the console knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its id.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// `HOST:PORT` from the cluster file.
    pub addr: String,
    /// Storage: its primary archive.
    pub archive: Option<String>,
    /// Storage: its proxies.
    pub proxies: Vec<String>,
    /// Reachability.
    pub reach: Reach,
    /// Software version, once known.
    pub version: Option<String>,
    /// Process id, once known.
    pub pid: Option<u64>,
    /// Uptime in seconds as of `uptime_at`, if its status tells.
    pub uptime_s: Option<u64>,
    /// When `uptime_s` was read.
    pub uptime_at: Ms,
    /// Its summary status lines.
    pub status: Vec<String>,
    /// Consecutive failed subscriptions (for the backoff).
    pub failures: u32,
    /// Errors seen from it (refusals, failed queries, lost connections).
    pub errors: u64,
}

impl Node {
    /// The uptime now, if known.
    pub fn uptime_now(&self, now: Ms) -> Option<u64> {
        self.uptime_s
            .map(|u| u + now.saturating_sub(self.uptime_at) / 1000)
    }
}

/// One node's state of one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellState {
    /// The state.
    pub state: VolumeState,
    /// When the console learned it.
    pub since: Ms,
    /// The model's sequence number when an event set it (replies older than that are
    /// ignored).
    pub seq: u64,
}

/// A storage volume's log usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogUsage {
    /// Used, physical blocks.
    pub usage_pb: u64,
    /// Capacity, physical blocks.
    pub capacity_pb: u64,
    /// Physical block size, bytes, if known.
    pub pbs: Option<u64>,
}

impl LogUsage {
    /// Used fraction, 0..=1.
    pub fn ratio(&self) -> f64 {
        if self.capacity_pb == 0 {
            0.0
        } else {
            (self.usage_pb as f64 / self.capacity_pb as f64).clamp(0.0, 1.0)
        }
    }
}

/// A snapshot: gid and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snap {
    /// Gid.
    pub gid: u64,
    /// Seconds since the epoch.
    pub timestamp_s: u64,
}

/// A proxy's queue of one volume towards one archive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// Queued diffs.
    pub diffs: u64,
    /// Their size, bytes.
    pub bytes: u64,
    /// Sending gave up (until kick).
    pub send_error: bool,
}

/// What an archive holds of one volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveVol {
    /// The diff list, once known.
    pub diffs: Option<Vec<MetaDiffDto>>,
    /// Restorable snapshots, once asked.
    pub restorable: Option<Vec<SnapshotInfo>>,
    /// The base state, once asked.
    pub base: Option<MetaStateDto>,
    /// Restored images.
    pub restored: Vec<RestoredImage>,
    /// The latest snapshot.
    pub latest: Option<Snap>,
    /// The retention policy and its next pass, once asked.
    pub retention: Option<walb_wire::msg::RetentionReport>,
}

/// How far an archive is behind the storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lag {
    /// Gids.
    pub gids: u64,
    /// Seconds between the storage's latest snapshot and the archive's.
    pub secs: u64,
}

/// A storage's own measure of its primary archive's lag (`get ts-delta`, refreshed by the
/// storage every `--ts-delta-interval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsDelta {
    /// The storage's latest snapshot when it answered.
    pub gid: u64,
    /// The archive's latest snapshot, as the storage last gathered it.
    pub dest_gid: u64,
    /// Seconds between the two snapshots.
    pub secs: u64,
}

/// One volume across the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vol {
    /// Its name.
    pub name: String,
    /// State per node.
    pub cells: BTreeMap<String, CellState>,
    /// Log usage per storage.
    pub log: BTreeMap<String, LogUsage>,
    /// Overflow flag per storage.
    pub overflow: BTreeMap<String, bool>,
    /// Latest snapshot per storage.
    pub storage_latest: BTreeMap<String, Snap>,
    /// Per (storage, archive): the storage's `ts-delta`.
    pub ts_delta: BTreeMap<(String, String), TsDelta>,
    /// Queues per (proxy, archive).
    pub queues: BTreeMap<(String, String), Queue>,
    /// What each archive holds.
    pub archives: BTreeMap<String, ArchiveVol>,
}

impl Vol {
    /// The state of `node`, if known.
    pub fn state(&self, node: &str) -> Option<VolumeState> {
        self.cells.get(node).map(|c| c.state)
    }

    /// The storage that ships this volume: the newest latest snapshot among storages
    /// that are not Clear.
    pub fn source(&self) -> Option<(&str, Snap)> {
        self.storage_latest
            .iter()
            .filter(|(n, _)| self.state(n).is_some_and(|s| !s.is_clear()))
            .max_by_key(|(_, s)| s.gid)
            .map(|(n, s)| (n.as_str(), *s))
    }

    /// How far `archive` is behind the storage. The shipping storage's own measure
    /// (`ts-delta`, for its primary archive) comes first, unless the archive's latest
    /// snapshot seen here is newer than what the storage last gathered; otherwise the
    /// storage's and the archive's latest snapshots are compared.
    pub fn lag(&self, archive: &str) -> Option<Lag> {
        let (name, src) = self.source()?;
        let seen = self.archives.get(archive).and_then(|a| a.latest);
        if let Some(t) = self.ts_delta.get(&(name.to_owned(), archive.to_owned())) {
            if seen.is_none_or(|a| a.gid <= t.dest_gid) {
                return Some(Lag {
                    gids: t.gid.saturating_sub(t.dest_gid),
                    secs: t.secs,
                });
            }
        }
        let a = seen?;
        if a.gid >= src.gid {
            return Some(Lag { gids: 0, secs: 0 });
        }
        Some(Lag {
            gids: src.gid - a.gid,
            secs: src.timestamp_s.saturating_sub(a.timestamp_s),
        })
    }

    /// The largest lag over all archives.
    pub fn worst_lag(&self) -> Option<(String, Lag)> {
        self.archives
            .keys()
            .filter_map(|a| self.lag(a).map(|l| (a.clone(), l)))
            .max_by_key(|(_, l)| (l.gids, l.secs))
    }

    /// The fullest log over all storages.
    pub fn fullest_log(&self) -> Option<(&str, LogUsage)> {
        self.log
            .iter()
            .max_by(|a, b| a.1.ratio().total_cmp(&b.1.ratio()))
            .map(|(n, l)| (n.as_str(), *l))
    }

    /// Any storage overflowed.
    pub fn any_overflow(&self) -> bool {
        self.overflow.values().any(|o| *o)
    }

    /// Any proxy gave up sending.
    pub fn any_send_error(&self) -> bool {
        self.queues.values().any(|q| q.send_error)
    }
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEnd {
    /// When.
    pub at: Ms,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it said.
    pub message: String,
}

/// A long operation: a daemon's (from its progress events and states) or a command the
/// console runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// Unique in this console.
    pub id: u64,
    /// The node doing it.
    pub node: String,
    /// The volume.
    pub vol: Option<String>,
    /// The daemon's op name, or the command's name.
    pub op: String,
    /// The console's command line, for tasks the console runs.
    pub command: Option<String>,
    /// Logical blocks done.
    pub done_lb: u64,
    /// Logical blocks in all (0: unknown).
    pub total_lb: u64,
    /// When it started.
    pub started: Ms,
    /// Last progress.
    pub updated: Ms,
    /// The last progress sample (time, done) for the throughput.
    pub sample: Option<(Ms, u64)>,
    /// Smoothed throughput, bytes per second.
    pub rate_bps: Option<f64>,
    /// How it ended.
    pub end: Option<TaskEnd>,
    /// Waiting in the daemon's queue for a foreground slot (`None`: not, or no longer).
    pub queued: Option<QueuePos>,
}

/// Where a task waiting for a foreground slot stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePos {
    /// Tasks ahead of it.
    pub ahead: u32,
    /// Foreground tasks running on its node.
    pub running: u32,
    /// The node's foreground slots.
    pub slots: u32,
}

impl QueuePos {
    /// `waiting: 2/2 slots busy` (its place is in the progress column).
    pub fn describe(&self) -> String {
        format!("waiting: {}/{} slots busy", self.running, self.slots)
    }
}

impl Task {
    /// A task that starts now: `op` of `vol` on `node`, run by the console (`command`)
    /// or seen in a daemon's events.
    pub fn new(
        id: u64,
        node: String,
        vol: Option<String>,
        op: String,
        command: Option<String>,
        now: Ms,
    ) -> Task {
        Task {
            id,
            node,
            vol,
            op,
            command,
            done_lb: 0,
            total_lb: 0,
            started: now,
            updated: now,
            sample: None,
            rate_bps: None,
            end: None,
            queued: None,
        }
    }

    /// Done fraction, if the total is known.
    pub fn ratio(&self) -> Option<f64> {
        (self.total_lb > 0).then(|| (self.done_lb as f64 / self.total_lb as f64).clamp(0.0, 1.0))
    }

    /// Seconds left at the current throughput.
    pub fn eta_s(&self) -> Option<u64> {
        let rate = self.rate_bps.filter(|r| *r > 0.0)?;
        if self.total_lb == 0 || self.end.is_some() {
            return None;
        }
        let left = self.total_lb.saturating_sub(self.done_lb) as f64 * 512.0;
        Some((left / rate).round() as u64)
    }

    /// Whether it still runs.
    pub fn running(&self) -> bool {
        self.end.is_none()
    }

    /// What operators call it.
    pub fn label(&self) -> String {
        if self.command.is_some() {
            self.op.clone()
        } else {
            task_label(&self.op)
        }
    }

    /// Records progress at `now`, updating the smoothed throughput.
    pub fn progress(&mut self, now: Ms, done_lb: u64, total_lb: u64) {
        self.queued = None;
        if let Some((t, d)) = self.sample {
            let dt = now.saturating_sub(t);
            if dt >= 200 && done_lb >= d {
                let inst = (done_lb - d) as f64 * 512.0 * 1000.0 / dt as f64;
                self.rate_bps = Some(match self.rate_bps {
                    None => inst,
                    Some(r) => 0.6 * r + 0.4 * inst,
                });
                self.sample = Some((now, done_lb));
            } else if done_lb < d {
                self.sample = Some((now, done_lb));
            }
        } else {
            self.sample = Some((now, done_lb));
        }
        self.done_lb = done_lb;
        self.total_lb = total_lb;
        self.updated = now;
    }
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Normal changes.
    Info,
    /// Worth a look.
    Warn,
    /// Failures.
    Error,
}

impl Level {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One line of the Events view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When.
    pub at: Ms,
    /// Severity.
    pub level: Level,
    /// The node, if any.
    pub node: Option<String>,
    /// The volume, if any.
    pub vol: Option<String>,
    /// What happened.
    pub text: String,
}

impl LogLine {
    /// The line as the filter sees it.
    pub fn haystack(&self) -> String {
        format!(
            "{} {} {} {}",
            self.level.as_str(),
            self.node.as_deref().unwrap_or("-"),
            self.vol.as_deref().unwrap_or("-"),
            self.text
        )
    }
}

/// What the console knows about the cluster.
#[derive(Clone, Debug)]
pub struct Live {
    /// The cluster's name.
    pub cluster: String,
    /// Where the cluster file is.
    pub origin: String,
    /// The nodes, in cluster-file order.
    pub nodes: Vec<Node>,
    /// Volumes by name.
    pub vols: BTreeMap<String, Vol>,
    /// Tasks, oldest first.
    pub tasks: Vec<Task>,
    /// The log, oldest first.
    pub log: VecDeque<LogLine>,
    /// Lines ever appended to the log (a reader that remembers it knows how many are new).
    pub logged: u64,
    /// Hide every action.
    pub read_only: bool,
    /// Why read-only (`--read-only`, a viewer certificate).
    pub read_only_why: Option<String>,
    /// Reconnect lost subscriptions (off for one-shot snapshots).
    pub reconnect: bool,
    /// Ask every archive for its restorable snapshots and base (one-shot snapshots).
    pub eager: bool,
    /// Now.
    pub now: Ms,
    /// When the storages' `ts-delta` was last asked for.
    pub ts_delta_asked: Ms,
    /// Event and reply sequence.
    pub seq: u64,
    /// Queries sent and not answered.
    pub pending: usize,
    /// Next task id.
    pub next_id: u64,
    /// The archive and volume followed closely (the TUI's Diffs view): their diff list,
    /// restorable snapshots and base are asked again when they change.
    pub diffs_target: Option<(String, String)>,
}

impl Live {
    /// A model of `cluster`'s nodes, nothing known yet.
    pub fn new(cluster: &Cluster) -> Live {
        Live {
            cluster: cluster.name.clone(),
            origin: cluster.origin.clone(),
            nodes: cluster
                .nodes
                .iter()
                .map(|n| Node {
                    name: n.name.clone(),
                    role: n.role,
                    addr: n.addr.clone(),
                    archive: n.archive.clone(),
                    proxies: n.proxies.clone(),
                    reach: Reach::Connecting,
                    version: None,
                    pid: None,
                    uptime_s: None,
                    uptime_at: 0,
                    status: Vec::new(),
                    failures: 0,
                    errors: 0,
                })
                .collect(),
            vols: BTreeMap::new(),
            tasks: Vec::new(),
            log: VecDeque::new(),
            logged: 0,
            read_only: false,
            read_only_why: None,
            reconnect: true,
            eager: false,
            now: 0,
            ts_delta_asked: 0,
            seq: 0,
            pending: 0,
            next_id: 1,
            diffs_target: None,
        }
    }
    /// Sets the clock (the shell calls this before every update; tests set it).
    pub fn clock(&mut self, now: Ms) {
        self.now = now;
    }

    /// Makes the model read-only, saying why.
    pub fn set_read_only(&mut self, why: impl Into<String>) {
        self.read_only = true;
        self.read_only_why = Some(why.into());
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node called `name`, mutably.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// The role of node `name`.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.node(name).map(|n| n.role)
    }

    /// Names of the nodes of `role`.
    pub fn names_of(&self, role: Role) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.name.clone())
            .collect()
    }

    /// The volume `name`, created if new.
    pub fn vol_mut(&mut self, name: &str) -> &mut Vol {
        self.vols.entry(name.to_owned()).or_insert_with(|| Vol {
            name: name.to_owned(),
            ..Vol::default()
        })
    }

    /// Appends a log line (dropping the oldest beyond [`EVENT_LOG_MAX`]).
    pub fn push_log(
        &mut self,
        level: Level,
        node: Option<&str>,
        vol: Option<&str>,
        text: impl Into<String>,
    ) {
        if self.log.len() >= EVENT_LOG_MAX {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            at: self.now,
            level,
            node: node.map(str::to_owned),
            vol: vol.map(str::to_owned),
            text: text.into(),
        });
        self.logged += 1;
    }

    /// Running tasks of node `name`.
    pub fn running_tasks(&self, name: &str) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.running() && t.node == name)
            .count()
    }

    /// Nodes that are not up.
    pub fn down_nodes(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.reach, Reach::Down { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task bound to archive states ends when the volume reaches a steady state, so
    /// the states it is bound to must be temporary ones.
    #[test]
    fn task_states_are_temporary() {
        for k in TASK_KINDS {
            for s in k.states {
                assert!(!s.is_steady(), "{} bound to the steady {s}", k.op);
            }
        }
    }

    #[test]
    fn throughput_and_eta_follow_progress() {
        let mut t = Task {
            id: 1,
            node: "a0".into(),
            vol: Some("vol".into()),
            op: "full-sync".into(),
            command: None,
            done_lb: 0,
            total_lb: 0,
            started: 0,
            updated: 0,
            sample: None,
            rate_bps: None,
            end: None,
            queued: None,
        };
        t.progress(0, 0, 20_480);
        assert_eq!(t.rate_bps, None);
        // 2048 lb = 1 MiB in one second.
        t.progress(1000, 2048, 20_480);
        assert_eq!(t.rate_bps, Some(1_048_576.0));
        assert_eq!(t.eta_s(), Some(9));
        assert_eq!(t.ratio(), Some(0.1));
        assert_eq!(t.label(), "full backup");
    }

    /// A volume s0 ships (Target) with its latest snapshot at `gid`, taken at `ts`.
    fn shipping_from_s0(gid: u64, ts: u64) -> Vol {
        let mut v = Vol::default();
        v.cells.insert(
            "s0".into(),
            CellState {
                state: VolumeState::Storage(walb_wire::msg::StorageState::Target),
                since: 0,
                seq: 0,
            },
        );
        v.storage_latest.insert(
            "s0".into(),
            Snap {
                gid,
                timestamp_s: ts,
            },
        );
        v
    }

    #[test]
    fn lag_compares_the_shipping_storage_with_each_archive() {
        let mut v = shipping_from_s0(12, 1000);
        v.archives.insert(
            "a0".into(),
            ArchiveVol {
                latest: Some(Snap {
                    gid: 8,
                    timestamp_s: 965,
                }),
                ..ArchiveVol::default()
            },
        );
        assert_eq!(v.lag("a0"), Some(Lag { gids: 4, secs: 35 }));
        assert_eq!(v.lag("a1"), None);
        v.archives.get_mut("a0").unwrap().latest = Some(Snap {
            gid: 12,
            timestamp_s: 1000,
        });
        assert_eq!(v.lag("a0"), Some(Lag { gids: 0, secs: 0 }));
    }

    #[test]
    fn lag_takes_the_storages_ts_delta_unless_the_archive_is_seen_further() {
        let mut v = shipping_from_s0(20, 2000);
        v.ts_delta.insert(
            ("s0".into(), "a0".into()),
            TsDelta {
                gid: 20,
                dest_gid: 14,
                secs: 50,
            },
        );
        // The archive is not reachable from here: the storage's measure alone.
        assert_eq!(v.lag("a0"), Some(Lag { gids: 6, secs: 50 }));
        // A storage that does not ship (Clear) measures nothing.
        assert_eq!(v.lag("a1"), None);
        // Seen at an older snapshot than the storage gathered: the storage's measure.
        v.archives.insert(
            "a0".into(),
            ArchiveVol {
                latest: Some(Snap {
                    gid: 10,
                    timestamp_s: 1900,
                }),
                ..ArchiveVol::default()
            },
        );
        assert_eq!(v.lag("a0"), Some(Lag { gids: 6, secs: 50 }));
        // Seen further than the storage's last gather: the direct comparison.
        v.archives.get_mut("a0").unwrap().latest = Some(Snap {
            gid: 18,
            timestamp_s: 1990,
        });
        assert_eq!(v.lag("a0"), Some(Lag { gids: 2, secs: 10 }));
        // Another storage's measure is not the shipping one's.
        v.ts_delta.clear();
        v.ts_delta.insert(
            ("s1".into(), "a0".into()),
            TsDelta {
                gid: 20,
                dest_gid: 1,
                secs: 999,
            },
        );
        assert_eq!(v.lag("a0"), Some(Lag { gids: 2, secs: 10 }));
    }
}
