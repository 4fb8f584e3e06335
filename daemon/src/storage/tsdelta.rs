//! The storage's lag behind its primary archive (walb-tools' ts-delta getter, §5.18).
//!
//! Every `--ts-delta-interval` (the first time a few seconds after start), a background
//! task asks the primary archive for the latest snapshot of every Target volume
//! (`BackupSync::GatherLatestSnap`) and keeps the answer. `get ts-delta` compares each
//! Target volume's latest snapshot with the archive's as last gathered, in the line shape
//! of the archive's own ts-delta (`kind:storage dest_kind:archive`), plus `age:` — how
//! many seconds ago the archive answered (`-`: never). An archive that does not answer
//! leaves the last answer in place (its age grows, `status` says why it failed); the
//! gather has its own time limit and never holds anything the storage's other work needs.
//! Volumes are asked about in batches, so that a request stays within the wire's limits
//! however many volumes a storage has.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use walb_wire::msg::{BackupSync, GatherStatus, Reply, Request, SnapshotInfo, TsDeltaRow};
use walb_wire::Role;

use crate::state::storage::StorageState as S;

use super::{snap, Storage};

/// The first gather waits this long after start (walb-tools: 5 s), or the interval if it
/// is shorter.
const FIRST_GATHER: Duration = Duration::from_secs(5);
/// The longest one gather may take (connection, request and answer).
const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// Volumes asked about per request (a request's list and size are bounded).
const GATHER_BATCH: usize = 256;

/// The archive's latest snapshot of one volume, as last gathered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gathered {
    /// Its gid (`None`: the archive does not hold the volume).
    pub gid: Option<u64>,
    /// Its timestamp, seconds since the epoch.
    pub timestamp_s: u64,
    /// When the archive said so.
    pub at: Instant,
}

/// What the gathers found.
#[derive(Debug, Default)]
struct Known {
    /// Per volume.
    vols: BTreeMap<String, Gathered>,
    /// When the last gather succeeded.
    last_ok: Option<Instant>,
    /// Why the last gather failed (cleared by a success).
    last_error: Option<String>,
    /// Gathers tried.
    tries: u64,
}

/// The gathered answers, shared between the background task and the queries.
#[derive(Debug, Default)]
pub(crate) struct TsDelta {
    known: Mutex<Known>,
}

impl TsDelta {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an archive's answer.
    fn record(&self, snaps: Vec<SnapshotInfo>, at: Instant) {
        let mut k = self.lock();
        for s in snaps {
            k.vols.insert(
                s.vol,
                Gathered {
                    gid: s.gid,
                    timestamp_s: s.timestamp_s,
                    at,
                },
            );
        }
        k.last_ok = Some(at);
        k.last_error = None;
        k.tries += 1;
    }

    /// Records a failed gather (what was known stays).
    fn failed(&self, why: String) {
        let mut k = self.lock();
        k.last_error = Some(why);
        k.tries += 1;
    }

    /// The archive's latest snapshot of `vol`, as last gathered.
    pub(crate) fn get(&self, vol: &str) -> Option<Gathered> {
        self.lock().vols.get(vol).copied()
    }

    /// The gathers' status at `now`: interval, the last success's age, the last failure.
    pub(crate) fn status(&self, interval: Duration, now: Instant) -> GatherStatus {
        let k = self.lock();
        GatherStatus {
            interval_s: interval.as_secs(),
            gathers: k.tries,
            last_ok_ago_s: k
                .last_ok
                .map(|t| now.saturating_duration_since(t).as_secs()),
            last_error: k.last_error.clone(),
        }
    }
}

/// One storage ts-delta row (pure): `gid`/`ts` the storage's latest snapshot, `dest` the
/// archive's as gathered `age_s` seconds ago (`None`: not known).
pub(super) fn row(
    vol: &str,
    dest: &str,
    gid: u64,
    ts: u64,
    dest_snap: Option<(u64, u64)>,
    age_s: Option<u64>,
) -> TsDeltaRow {
    TsDeltaRow {
        vol: vol.to_owned(),
        dest: dest.to_owned(),
        kind: Role::Storage,
        dest_kind: Role::Archive,
        gid,
        ts_s: ts,
        dest_snap,
        age_s,
    }
}

impl Storage {
    /// The first delay and the period of the gathers.
    fn ts_delta_timing(&self) -> (Duration, Duration) {
        let every = self.cfg.ts_delta_interval.max(Duration::from_millis(100));
        (FIRST_GATHER.min(every), every)
    }

    /// The background task: gathers the primary archive's latest snapshots every
    /// interval until the daemon shuts down.
    pub(crate) async fn gather_loop(self: Arc<Self>) {
        let (first, every) = self.ts_delta_timing();
        let mut wait = first;
        loop {
            tokio::select! {
                _ = self.ctx.clock.sleep(wait) => {}
                _ = self.ctx.shutdown.cancelled() => return,
            }
            wait = every;
            let vols: Vec<String> = self
                .all_vols()
                .iter()
                .filter(|v| v.core.state() == S::Target)
                .map(|v| v.name.clone())
                .collect();
            if vols.is_empty() {
                continue;
            }
            for batch in vols.chunks(GATHER_BATCH) {
                let why =
                    match tokio::time::timeout(GATHER_TIMEOUT, self.gather(batch.to_vec())).await {
                        Ok(Ok(snaps)) => {
                            debug!(n = snaps.len(), "gathered the archive's latest snapshots");
                            self.ts_delta.record(snaps, self.ctx.clock.instant());
                            continue;
                        }
                        Ok(Err(why)) => why,
                        Err(_) => format!("no answer within {}s", GATHER_TIMEOUT.as_secs()),
                    };
                // The rest waits for the next interval.
                self.gather_failed(why);
                break;
            }
        }
    }

    fn gather_failed(&self, why: String) {
        let why = format!("archive {}: {why}", self.cfg.archive);
        // Warn when the archive stops answering, not at every interval after.
        if self.ts_delta.lock().last_error.is_none() {
            warn!("ts-delta: {why}; the last answer is kept");
        } else {
            debug!("ts-delta: {why}");
        }
        self.ts_delta.failed(why);
    }

    /// One gather: the archive's latest snapshots of `vols`.
    async fn gather(&self, vols: Vec<String>) -> Result<Vec<SnapshotInfo>, String> {
        let req = Request::BackupSync(BackupSync::GatherLatestSnap { vols });
        let (mut call, reply) = self
            .ctx
            .call_first_reply(&self.cfg.archive, req, GATHER_TIMEOUT, None)
            .await
            .map_err(|e| e.to_string())?;
        let _ = call.sender.finish();
        match reply {
            Reply::Snapshots(s) => Ok(s),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// `get ts-delta`: one line per Target volume.
    pub(crate) fn ts_delta_rows(&self) -> Vec<TsDeltaRow> {
        let dest = self.cfg.archive.id.id().to_owned();
        let now = self.ctx.clock.instant();
        self.all_vols()
            .iter()
            .filter(|v| v.core.state() == S::Target)
            .filter_map(|v| {
                let latest = {
                    let m = v.meta();
                    let r = *m.as_ref()?.snaps.latest();
                    snap::is_valid(&r).then_some((r.gid, r.timestamp))?
                };
                let g = self.ts_delta.get(&v.name);
                let dest_snap = g.and_then(|g| g.gid.map(|gid| (gid, g.timestamp_s)));
                let age = g.map(|g| now.saturating_duration_since(g.at).as_secs());
                Some(row(&v.name, &dest, latest.0, latest.1, dest_snap, age))
            })
            .collect()
    }

    /// Logs the gather's settings once at start.
    pub(crate) fn log_ts_delta(&self) {
        let (first, every) = self.ts_delta_timing();
        info!(
            first_s = first.as_secs_f64(),
            every_s = every.as_secs_f64(),
            archive = %self.cfg.archive,
            "ts-delta gathers"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_delta_and_the_age_or_dashes() {
        let line = |v, d, g, t, ds, a| row(v, d, g, t, ds, a).line();
        let l = line("v", "a0", 12, 1_000, Some((8, 965)), Some(3));
        assert!(l.starts_with("name:v\tdest:a0\tkind:storage\tdest_kind:archive\tgid:12\t"));
        assert!(l.contains("\tdest_gid:8\t"), "{l}");
        assert!(l.ends_with("\tts_delta:35\tage:3"), "{l}");
        let l = line("v", "a0", 12, 1_000, None, None);
        assert!(
            l.contains("\tdest_gid:-\tdest_ts:-\tts_delta:-\tage:-"),
            "{l}"
        );
        // An archive ahead of the clock gives no negative delta.
        let l = line("v", "a0", 12, 1_000, Some((12, 1_005)), Some(0));
        assert!(l.contains("\tts_delta:0\t"), "{l}");
    }

    #[test]
    fn a_failure_keeps_what_was_known() {
        let t = TsDelta::default();
        let at = Instant::now();
        t.record(
            vec![SnapshotInfo {
                vol: "v".into(),
                gid: Some(7),
                timestamp_s: 99,
                lsid: None,
                explicit: true,
            }],
            at,
        );
        t.failed("archive a0: timed out".into());
        assert_eq!(
            t.get("v"),
            Some(Gathered {
                gid: Some(7),
                timestamp_s: 99,
                at
            })
        );
        let s = t.status(Duration::from_secs(60), at + Duration::from_secs(42));
        assert_eq!((s.gathers, s.last_ok_ago_s), (2, Some(42)));
        assert_eq!(s.last_error.as_deref(), Some("archive a0: timed out"));
        assert_eq!(t.get("w"), None);
    }
}
