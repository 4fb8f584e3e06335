//! Built-in maintenance of an archive's volumes (walb-tools' `walb-worker`, walb-tools.md
//! §6.3): finish interrupted applies, apply what is older than a keep period, merge when
//! diffs pile up, replicate to other archives at an interval.
//!
//! Retention ([`super::retention`]) is on by default; the rest is off unless configured
//! (`--apply-keep`, `--merge-threshold`, `--merge-interval`, `--replicate-to`). Every
//! `--policy-tick` the archive looks at its volumes and starts at most one task, trying
//! in walb-worker's order ([`select`], pure: the volumes' views, the history of what ran,
//! the time on the daemon's [`crate::clock::Clock`]):
//!
//! 1. a volume whose base is being applied (an interrupted apply): apply to its end;
//!
//! 1b. retention: on the volume with the most diffs whose next retention pass has work
//!    (and whose last step was not refused within [`RETRY_S`]), the pass's next step:
//!    make the explicit snapshots it folds implicit, apply up to the oldest kept
//!    snapshot, or its oldest merge; each step is a log line and an
//!    `Event::Retention`, and a pass cut short is planned again, from what is on disk,
//!    by the next tick. A volume whose `retention` file (its settings and pins) cannot
//!    be read or parsed gets no pass, nor any apply or merge of the policy, until the
//!    file is fixed: its pins are never taken for "none". The first tick that finds the
//!    file broken (or broken in a new way) logs a warning and publishes an
//!    `Event::Retention` whose step is `refused: ` and the reason, naming the file;
//! 2. apply by age: on a volume whose last apply began more than `--apply-interval` ago,
//!    the newest restorable snapshot older than `now - keep` (never the base itself);
//!    the volume with the most diff bytes to apply first;
//! 3. merge by count: the volume with the most diffs, if at least `--merge-threshold`;
//! 4. replication: per destination and volume whose interval elapsed and whose latest
//!    snapshot the destination does not have yet, the least recently replicated pair;
//! 5. merge by interval: a volume whose last merge began more than `--merge-interval` ago.
//!
//! A merge takes the run of mergeable diffs with the smallest average size (at least two,
//! within `--merge-max-nr` and `--merge-max-size`), never the run at the tail (it is still
//! growing) and never one that would swallow the snapshot a destination is at (so that
//! replication can go on from there) ([`merge_range`]). No task starts while
//! `--policy-max-tasks` archive actions (merge, apply, replication) run; the tasks run
//! as the commands of the same names do, with their checks and events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use walb_kernel::meta::{MetaDiff, MetaState};
use walb_wire::msg::{ErrorCode, Event, MergeUntil, ReplicateCommand, RetentionPass};
use walb_wire::Role;

use super::retention::{self, Retention};
use super::Archive;
use crate::opts::{parse_period, ArchiveOpts};
use crate::peers::PeerAddr;
use crate::session::refuse;
use crate::state::archive::{action, ArchiveState as A};

/// A destination of the replication policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplTarget {
    /// `ID@HOST:PORT` of the destination archive.
    pub addr: String,
    /// Least time between two replications of a volume, seconds.
    pub interval_s: u64,
}

/// The policy's settings (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Apply what is older than this many seconds (`None`: no apply by age).
    pub apply_keep_s: Option<u64>,
    /// Least time between two applies of a volume by age, seconds.
    pub apply_interval_s: u64,
    /// Merge a volume holding at least this many diffs (`None`: no merge by count).
    pub merge_threshold: Option<usize>,
    /// Merge a volume whose last merge began this long ago (`None`: no merge by interval).
    pub merge_interval_s: Option<u64>,
    /// Most diffs in one merge (0: no limit).
    pub merge_max_nr: usize,
    /// Largest diff and largest merge, bytes (0: no limit).
    pub merge_max_size: u64,
    /// Replication destinations.
    pub replicate_to: Vec<ReplTarget>,
    /// How many archive actions may run before the policy starts no more.
    pub max_tasks: usize,
    /// The default retention of the volumes without their own.
    pub retention: Retention,
}

/// How long a volume's retention waits after one of its steps was refused, seconds.
pub const RETRY_S: u64 = 60;

impl Policy {
    /// Whether anything is configured.
    pub fn is_on(&self) -> bool {
        self.apply_keep_s.is_some()
            || self.merge_threshold.is_some()
            || self.merge_interval_s.is_some()
            || !self.replicate_to.is_empty()
    }
}

/// What the policy sees of a volume.
#[derive(Debug, Clone)]
pub struct VolView {
    /// Name.
    pub name: String,
    /// State.
    pub state: A,
    /// Whether no action runs on it.
    pub idle: bool,
    /// Base state.
    pub base: MetaState,
    /// The applicable chain from the base, oldest first (empty when neither its
    /// retention nor a merge or apply rule is on).
    pub chain: Vec<MetaDiff>,
    /// Restorable points (all): gid and timestamp, oldest first (empty without
    /// `--apply-keep`).
    pub restorable: Vec<(u64, u64)>,
    /// The latest snapshot's gid (0 without `--replicate-to`).
    pub latest_gid: u64,
    /// Per destination address: the gid it was at after the last replication.
    pub replicas: BTreeMap<String, u64>,
    /// Its retention policy in force.
    pub retention: Retention,
    /// Its pinned snapshots.
    pub pinned: BTreeSet<u64>,
    /// Why its retention settings cannot be read (then it gets no retention pass, apply
    /// or merge).
    pub retention_error: Option<String>,
}

/// A task the policy starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// `apply vol gid`.
    Apply {
        /// Volume.
        vol: String,
        /// Up to this gid.
        gid: u64,
    },
    /// `merge vol gid_b until gid_e`.
    Merge {
        /// Volume.
        vol: String,
        /// First gid.
        gid_b: u64,
        /// Stop before diffs starting at or after this gid.
        gid_e: u64,
    },
    /// `replicate vol` to `dest`.
    Replicate {
        /// Volume.
        vol: String,
        /// `host:port`.
        dest: String,
    },
    /// A step of a retention pass.
    Retain {
        /// Volume.
        vol: String,
        /// The step.
        step: RetainStep,
        /// Snapshots the pass keeps.
        kept: u64,
        /// Diffs the volume holds.
        diffs: u64,
    },
}

/// A step of a retention pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetainStep {
    /// `disable-snapshot vol gids...`: explicit snapshots the pass folds.
    Demote(Vec<u64>),
    /// `apply vol gid`: up to the oldest kept snapshot.
    Apply(u64),
    /// `merge vol gid_b until gid_e`: a run between two kept snapshots.
    Merge(u64, u64),
}

impl std::fmt::Display for RetainStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetainStep::Demote(g) => {
                let g: Vec<String> = g.iter().map(u64::to_string).collect();
                write!(f, "demote {}", g.join(","))
            }
            RetainStep::Apply(g) => write!(f, "apply {g}"),
            RetainStep::Merge(b, e) => write!(f, "merge {b}..{e}"),
        }
    }
}

/// When each kind of task last began (seconds), per volume (and destination).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Last apply by age, per volume.
    pub apply: BTreeMap<String, u64>,
    /// Last merge, per volume.
    pub merge: BTreeMap<String, u64>,
    /// Last replication, per (volume, destination).
    pub repl: BTreeMap<(String, String), u64>,
    /// Last refusal of a retention step, per volume.
    pub retain_refused: BTreeMap<String, u64>,
    /// The error of each volume whose retention file cannot be read, as last reported.
    pub retain_broken: BTreeMap<String, String>,
}

impl History {
    /// Records that `t` began at `now`.
    pub fn began(&mut self, t: &Task, now: u64) {
        match t {
            Task::Apply { vol, .. } => {
                self.apply.insert(vol.clone(), now);
            }
            Task::Merge { vol, .. } => {
                self.merge.insert(vol.clone(), now);
            }
            Task::Replicate { vol, dest } => {
                self.repl.insert((vol.clone(), dest.clone()), now);
            }
            Task::Retain { .. } => {}
        }
    }
}

/// The next retention step (1b in the module documentation).
fn retain_step(ready: &[&VolView], h: &History, now: u64) -> Option<Task> {
    let mut best: Option<(usize, Task)> = None;
    for v in ready {
        if !v.retention.on || !due(h.retain_refused.get(&v.name), RETRY_S, now) {
            continue;
        }
        let at: Vec<u64> = v.replicas.values().copied().collect();
        let p = retention::plan(&v.retention, &v.base, &v.chain, now, &v.pinned, &at);
        let step = if !p.demote.is_empty() {
            RetainStep::Demote(p.demote.clone())
        } else if let Some(g) = p.apply_to {
            RetainStep::Apply(g)
        } else if let Some(&(b, e)) = p.merges.first() {
            RetainStep::Merge(b, e)
        } else {
            continue;
        };
        if best.as_ref().is_none_or(|(n, _)| v.chain.len() > *n) {
            let t = Task::Retain {
                vol: v.name.clone(),
                step,
                kept: p.kept() as u64,
                diffs: v.chain.len() as u64,
            };
            best = Some((v.chain.len(), t));
        }
    }
    best.map(|(_, t)| t)
}

fn due(last: Option<&u64>, interval: u64, now: u64) -> bool {
    last.is_none_or(|&t| now.saturating_sub(t) >= interval)
}

/// The run of `chain` to merge (see the module documentation): `(gid_b, gid_e)`.
pub fn merge_range(chain: &[MetaDiff], p: &Policy, replica_gids: &[u64]) -> Option<(u64, u64)> {
    let max_size = if p.merge_max_size == 0 {
        u64::MAX
    } else {
        p.merge_max_size
    };
    let max_nr = if p.merge_max_nr == 0 {
        usize::MAX
    } else {
        p.merge_max_nr
    };
    let mut best: Option<(u64, u64, f64)> = None;
    let mut i = 0;
    while i < chain.len() {
        let first = &chain[i];
        if first.comp_diff || first.data_size > max_size {
            i += 1;
            continue;
        }
        let (mut j, mut total) = (i + 1, first.data_size);
        while j < chain.len() && j - i < max_nr {
            let d = &chain[j];
            let inside = replica_gids.contains(&d.snap_b.gid_b);
            if !d.mergeable
                || d.comp_diff
                || d.data_size > max_size
                || total.saturating_add(d.data_size) > max_size
                || inside
            {
                break;
            }
            total += d.data_size;
            j += 1;
        }
        // chain[i..j] is a run; the tail run is still growing.
        if j - i >= 2 && j < chain.len() {
            let avg = total as f64 / (j - i) as f64;
            if best.is_none_or(|(_, _, a)| avg < a) {
                best = Some((first.snap_b.gid_b, chain[j - 1].snap_e.gid_b, avg));
            }
        }
        i = j.max(i + 1);
    }
    best.map(|(b, e, _)| (b, e))
}

/// The next task, if any (see the module documentation).
pub fn select(vols: &[VolView], h: &History, p: &Policy, now: u64) -> Option<Task> {
    let ready: Vec<&VolView> = vols
        .iter()
        .filter(|v| v.idle && v.state == A::Archived)
        .collect();
    // 1. An interrupted apply.
    if let Some(v) = ready.iter().find(|v| v.base.applying) {
        return Some(Task::Apply {
            vol: v.name.clone(),
            gid: v.base.snap_e.gid_b,
        });
    }
    // The rest may fold snapshots: not on a volume whose pins cannot be read.
    let ready: Vec<&VolView> = ready
        .into_iter()
        .filter(|v| v.retention_error.is_none())
        .collect();
    // 1b. Retention.
    if let Some(t) = retain_step(&ready, h, now) {
        return Some(t);
    }
    // 2. Apply by age.
    if let Some(keep) = p.apply_keep_s {
        let limit = now.saturating_sub(keep);
        let best = ready
            .iter()
            .filter(|v| due(h.apply.get(&v.name), p.apply_interval_s, now))
            .filter_map(|v| {
                let gid = v
                    .restorable
                    .iter()
                    .skip(1)
                    .filter(|(g, ts)| *ts < limit && *g > v.base.snap_b.gid_b)
                    .map(|(g, _)| *g)
                    .next_back()?;
                let bytes: u64 = v
                    .chain
                    .iter()
                    .take_while(|d| d.snap_e.gid_b <= gid)
                    .map(|d| d.data_size)
                    .sum();
                Some((bytes, v.name.clone(), gid))
            })
            .max_by_key(|(bytes, _, _)| *bytes);
        if let Some((_, vol, gid)) = best {
            return Some(Task::Apply { vol, gid });
        }
    }
    let merge_of = |v: &VolView| {
        let at: Vec<u64> = v.replicas.values().copied().collect();
        merge_range(&v.chain, p, &at).map(|(gid_b, gid_e)| Task::Merge {
            vol: v.name.clone(),
            gid_b,
            gid_e,
        })
    };
    // 3. Merge by count.
    if let Some(n) = p.merge_threshold {
        let mut by_count: Vec<&&VolView> = ready.iter().filter(|v| v.chain.len() >= n).collect();
        by_count.sort_by_key(|v| std::cmp::Reverse(v.chain.len()));
        if let Some(t) = by_count.iter().find_map(|v| merge_of(v)) {
            return Some(t);
        }
    }
    // 4. Replication: the least recently replicated due pair whose destination lags.
    let mut pairs: Vec<(u64, Task)> = Vec::new();
    for r in &p.replicate_to {
        for v in &ready {
            let key = (v.name.clone(), r.addr.clone());
            let last = h.repl.get(&key);
            if !due(last, r.interval_s, now) {
                continue;
            }
            if v.replicas.get(&r.addr) == Some(&v.latest_gid) {
                continue;
            }
            pairs.push((
                last.copied().unwrap_or(0),
                Task::Replicate {
                    vol: v.name.clone(),
                    dest: r.addr.clone(),
                },
            ));
        }
    }
    if let Some((_, t)) = pairs.into_iter().min_by_key(|(t, _)| *t) {
        return Some(t);
    }
    // 5. Merge by interval.
    if let Some(iv) = p.merge_interval_s {
        if let Some(t) = ready
            .iter()
            .filter(|v| due(h.merge.get(&v.name), iv, now))
            .find_map(|v| merge_of(v))
        {
            return Some(t);
        }
    }
    None
}

impl Archive {
    /// What the policy `p` sees of each live volume (the chain, the restorable points and
    /// the latest snapshot only where a rule in force needs them: with retention off and
    /// nothing else configured, a look costs no walk over a volume's diffs).
    fn policy_views(&self, p: &Policy) -> Vec<VolView> {
        let replicas = self.replica_gids();
        self.live_vols()
            .iter()
            .map(|v| {
                let (retention, pinned, retention_error) = match retention::serve::load(&v.dir) {
                    Ok(own) => (
                        own.effective(&self.cfg.policy.retention).clone(),
                        own.pinned,
                        None,
                    ),
                    Err(e) => (Retention::off(), BTreeSet::new(), Some(e)),
                };
                let chain_needed = retention.on
                    || p.merge_threshold.is_some()
                    || p.merge_interval_s.is_some()
                    || p.apply_keep_s.is_some();
                let m = v.meta();
                let chain = if chain_needed {
                    m.diffs.applicable_chain(m.base.snap_b, Default::default())
                } else {
                    Vec::new()
                };
                let restorable = match p.apply_keep_s {
                    Some(_) => m
                        .diffs
                        .restorable(&m.base, true)
                        .iter()
                        .map(|p| (p.gid, p.timestamp))
                        .collect(),
                    None => Vec::new(),
                };
                let latest_gid = if p.replicate_to.is_empty() {
                    0
                } else {
                    m.latest_snapshot().gid_b
                };
                VolView {
                    name: v.name.clone(),
                    state: v.state(),
                    idle: v.core.actions().is_idle(),
                    base: m.base,
                    chain,
                    restorable,
                    latest_gid,
                    replicas: replicas.get(&v.name).cloned().unwrap_or_default(),
                    retention,
                    pinned,
                    retention_error,
                }
            })
            .collect()
    }

    /// Reports, once per volume and reason, a retention file that cannot be read (a
    /// warning and an [`Event::Retention`] whose step is `refused: ...`), and when it can
    /// be read again.
    fn report_broken_settings(&self, views: &[VolView], h: &mut History) {
        for v in views {
            match &v.retention_error {
                Some(e) if h.retain_broken.get(&v.name) != Some(e) => {
                    warn!(vol = %v.name, "retention refused: {e}; no pass, apply or merge of the policy on this volume until the file is fixed");
                    self.publish(Event::Retention(RetentionPass {
                        vol: v.name.clone(),
                        step: format!("refused: {e}"),
                        kept: 0,
                        diffs: self.vol(&v.name).map_or(0, |x| x.meta().diffs.len() as u64),
                    }));
                    h.retain_broken.insert(v.name.clone(), e.clone());
                }
                None if h.retain_broken.remove(&v.name).is_some() => {
                    info!(vol = %v.name, "retention settings readable again");
                }
                _ => {}
            }
        }
    }

    /// Starts `task` as the command of its name does (a retention step also logged and
    /// published as [`Event::Retention`]).
    async fn run_task(
        self: &Arc<Self>,
        task: &Task,
    ) -> Result<walb_wire::Reply, walb_wire::WireError> {
        if let Task::Retain {
            vol,
            step,
            kept,
            diffs,
        } = task
        {
            info!(vol = %vol, %step, kept, diffs, "retention pass");
            self.publish(Event::Retention(RetentionPass {
                vol: vol.clone(),
                step: step.to_string(),
                kept: *kept,
                diffs: *diffs,
            }));
        } else {
            info!(?task, "maintenance task");
        }
        match task {
            Task::Retain { vol, step, .. } => match step {
                RetainStep::Demote(gids) => self.set_explicit(vol, gids, false).await,
                RetainStep::Apply(gid) => self.apply(vol, *gid, None).await,
                RetainStep::Merge(b, e) => self.merge(vol, *b, MergeUntil::Gid(*e), None).await,
            },
            Task::Apply { vol, gid } => self.apply(vol, *gid, None).await,
            Task::Merge { vol, gid_b, gid_e } => {
                self.merge(vol, *gid_b, MergeUntil::Gid(*gid_e), None).await
            }
            Task::Replicate { vol, dest } => match PeerAddr::parse(Role::Archive, dest) {
                Err(e) => Err(refuse(ErrorCode::BadRequest, format!("--replicate-to {e}"))),
                Ok(to) => {
                    self.replicate(
                        ReplicateCommand {
                            vol: vol.clone(),
                            until: MergeUntil::SizeMib(0),
                            dest: to.addr,
                            dest_id: to.id.id().to_owned(),
                            do_resync: false,
                            dont_merge: false,
                            compress: None,
                            merge_size_max: None,
                            bulk_lb: None,
                        },
                        None,
                    )
                    .await
                }
            },
        }
    }

    /// Runs the policy until shutdown (see the module documentation).
    pub(super) async fn run_policy(self: Arc<Self>, p: Policy, tick: Duration) {
        info!(?p, "maintenance policy on");
        let mut h = History::default();
        let token = self.ctx.shutdown.clone();
        let mut shutdown = std::pin::pin!(token.cancelled_owned());
        loop {
            tokio::select! {
                _ = self.ctx.clock.sleep(tick) => {}
                _ = &mut shutdown => return,
            }
            let running: usize = self
                .live_vols()
                .iter()
                .map(|v| {
                    let a = v.core.actions();
                    (a.count(action::MERGE)
                        + a.count(action::APPLY)
                        + a.count(action::REPL_SYNC_AS_CLIENT)) as usize
                })
                .sum();
            if running >= p.max_tasks.max(1) {
                continue;
            }
            let now = self.ctx.clock.now_s();
            let views = self.policy_views(&p);
            self.report_broken_settings(&views, &mut h);
            let Some(task) = select(&views, &h, &p, now) else {
                continue;
            };
            h.began(&task, now);
            let r = self.run_task(&task).await;
            if let Err(e) = r {
                warn!(?task, "maintenance task refused: {e}");
                if let Task::Retain { vol, .. } = &task {
                    h.retain_refused.insert(vol.clone(), now);
                }
            }
        }
    }
}

impl Policy {
    /// The maintenance policy of an archive's options.
    pub fn from_opts(o: &ArchiveOpts) -> anyhow::Result<Policy> {
        let period =
            |what: &str, v: &str| parse_period(v).map_err(|e| anyhow::anyhow!("--{what}: {e}"));
        let replicate_to = o
            .replicate_to
            .iter()
            .map(|r| {
                let (addr, per) = r.rsplit_once('@').ok_or_else(|| {
                    anyhow::anyhow!("--replicate-to {r:?}: expected ID@HOST:PORT@PERIOD")
                })?;
                PeerAddr::parse(Role::Archive, addr)
                    .map_err(|e| anyhow::anyhow!("--replicate-to {e}"))?;
                Ok(ReplTarget {
                    addr: addr.to_owned(),
                    interval_s: period("replicate-to", per)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Policy {
            apply_keep_s: o
                .apply_keep
                .as_deref()
                .map(|v| period("apply-keep", v))
                .transpose()?,
            apply_interval_s: period("apply-interval", &o.apply_interval)?,
            merge_threshold: o.merge_threshold,
            merge_interval_s: o
                .merge_interval
                .as_deref()
                .map(|v| period("merge-interval", v))
                .transpose()?,
            merge_max_nr: o.merge_max_nr,
            merge_max_size: o.merge_max_mb.saturating_mul(1 << 20),
            replicate_to,
            max_tasks: o.policy_max_tasks.max(1),
            retention: Retention::from_opts(o).map_err(|e| anyhow::anyhow!("{e}"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walb_kernel::meta::MetaSnap;

    fn d(b: u64, e: u64, size: u64, mergeable: bool) -> MetaDiff {
        MetaDiff::clean(b, e)
            .unwrap()
            .with_mergeable(mergeable)
            .with_data_size(size)
    }

    fn view(name: &str, chain: Vec<MetaDiff>, times: &[(u64, u64)]) -> VolView {
        VolView {
            name: name.into(),
            state: A::Archived,
            idle: true,
            base: MetaState::new(MetaSnap::new(0, 0).unwrap(), 100),
            latest_gid: chain.last().map_or(0, |d| d.snap_e.gid_b),
            chain,
            restorable: times.to_vec(),
            replicas: BTreeMap::new(),
            retention: Retention::off(),
            pinned: BTreeSet::new(),
            retention_error: None,
        }
    }

    fn pol() -> Policy {
        Policy {
            max_tasks: 1,
            ..Policy::default()
        }
    }

    #[test]
    fn merge_takes_the_cheapest_closed_run_and_spares_replica_points() {
        let chain = vec![
            d(0, 1, 100, false),
            d(1, 2, 100, true),
            d(2, 3, 100, true),
            d(3, 4, 10, false),
            d(4, 5, 10, true),
            d(5, 6, 10, true),
            d(6, 7, 50, false),
            d(7, 8, 5, true),
        ];
        let p = pol();
        // Runs: [0..3) avg 100, [3..6) avg 10, the tail [6..8) is never taken.
        assert_eq!(merge_range(&chain, &p, &[]), Some((3, 6)));
        // A destination at gid 5 cuts that run to [3..5).
        assert_eq!(merge_range(&chain, &p, &[5]), Some((3, 5)));
        // Limits.
        let small = Policy {
            merge_max_nr: 2,
            ..pol()
        };
        assert_eq!(merge_range(&chain, &small, &[]), Some((3, 5)));
        let tight = Policy {
            merge_max_size: 15,
            ..pol()
        };
        assert_eq!(merge_range(&chain, &tight, &[]), None);
        // Nothing closed to merge.
        assert_eq!(merge_range(&chain[6..], &p, &[]), None);
    }

    #[test]
    fn tasks_come_in_walb_worker_order() {
        let now = 10_000;
        // Snapshot 3 is explicit: the run up to it is closed.
        let chain = vec![
            d(0, 1, 100, true),
            d(1, 2, 100, true),
            d(2, 3, 100, true),
            d(3, 4, 100, false),
        ];
        let times = [(0, 100), (1, 1000), (2, 5000), (3, 9000), (4, 9900)];
        let v = view("v", chain.clone(), &times);
        let mut h = History::default();
        // Nothing configured: nothing to do.
        assert_eq!(select(std::slice::from_ref(&v), &h, &pol(), now), None);
        // An interrupted apply first.
        let mut applying = v.clone();
        applying.base = MetaState::new_applying(
            MetaSnap::new(0, 0).unwrap(),
            MetaSnap::new(2, 2).unwrap(),
            100,
        )
        .unwrap();
        assert_eq!(
            select(&[applying], &h, &pol(), now),
            Some(Task::Apply {
                vol: "v".into(),
                gid: 2
            })
        );
        // Apply by age: the newest snapshot older than now - keep (gid 2 at 5000).
        let p = Policy {
            apply_keep_s: Some(3000),
            apply_interval_s: 3600,
            merge_threshold: Some(3),
            ..pol()
        };
        let t = select(std::slice::from_ref(&v), &h, &p, now).unwrap();
        assert_eq!(
            t,
            Task::Apply {
                vol: "v".into(),
                gid: 2
            }
        );
        // Not again within the interval: merge by count comes next.
        h.began(&t, now);
        assert_eq!(
            select(std::slice::from_ref(&v), &h, &p, now + 10),
            Some(Task::Merge {
                vol: "v".into(),
                gid_b: 0,
                gid_e: 3
            })
        );
        // A busy volume gets nothing.
        let mut busy = v.clone();
        busy.idle = false;
        assert_eq!(select(&[busy], &History::default(), &p, now), None);
    }

    #[test]
    fn replication_goes_to_the_least_recently_served_lagging_pair() {
        let now = 10_000;
        let chain = vec![d(0, 1, 100, false), d(1, 2, 100, false)];
        let a = view("a", chain.clone(), &[(0, 1), (1, 2), (2, 3)]);
        let mut b = view("b", chain, &[(0, 1), (1, 2), (2, 3)]);
        let p = Policy {
            replicate_to: vec![ReplTarget {
                addr: "h:1".into(),
                interval_s: 60,
            }],
            ..pol()
        };
        let mut h = History::default();
        h.repl.insert(("a".into(), "h:1".into()), now - 100);
        h.repl.insert(("b".into(), "h:1".into()), now - 200);
        let t = select(&[a.clone(), b.clone()], &h, &p, now);
        assert_eq!(
            t,
            Some(Task::Replicate {
                vol: "b".into(),
                dest: "h:1".into()
            })
        );
        // b's destination already has its latest: a goes.
        b.replicas.insert("h:1".into(), 2);
        assert_eq!(
            select(&[a.clone(), b.clone()], &h, &p, now),
            Some(Task::Replicate {
                vol: "a".into(),
                dest: "h:1".into()
            })
        );
        // Within the interval: nothing.
        h.repl.insert(("a".into(), "h:1".into()), now - 10);
        assert_eq!(select(&[a, b], &h, &p, now), None);
    }

    #[test]
    fn retention_steps_follow_an_interrupted_apply_and_wait_after_a_refusal() {
        let now = 200_000;
        // A day and more ago, snapshot 2 explicit: the default policy keeps the newest
        // (4) and explicit 2 (keep-last), applies up to 2 and merges 2..4.
        let chain: Vec<MetaDiff> = [(0, 1, true), (1, 2, true), (2, 3, false), (3, 4, true)]
            .iter()
            .map(|&(b, e, m)| d(b, e, 10, m).with_timestamp(1000 * e))
            .collect();
        let mut v = view("v", chain, &[]);
        v.retention = Retention::default();
        let h = History::default();
        let task = |step| Task::Retain {
            vol: "v".into(),
            step,
            kept: 2,
            diffs: 4,
        };
        assert_eq!(
            select(std::slice::from_ref(&v), &h, &pol(), now),
            Some(task(RetainStep::Apply(2)))
        );
        // Pinning the base: nothing to apply, the two runs are merged.
        v.pinned.insert(0);
        let t = select(std::slice::from_ref(&v), &h, &pol(), now);
        assert_eq!(
            t,
            Some(Task::Retain {
                vol: "v".into(),
                step: RetainStep::Merge(0, 2),
                kept: 3,
                diffs: 4,
            })
        );
        // An interrupted apply comes first.
        let mut applying = v.clone();
        applying.base = MetaState::new_applying(
            MetaSnap::new(0, 0).unwrap(),
            MetaSnap::new(1, 1).unwrap(),
            100,
        )
        .unwrap();
        assert!(matches!(
            select(&[applying], &h, &pol(), now),
            Some(Task::Apply { gid: 1, .. })
        ));
        // A refused step waits RETRY_S.
        let mut h = History::default();
        h.retain_refused.insert("v".into(), now - 10);
        assert_eq!(select(std::slice::from_ref(&v), &h, &pol(), now), None);
        assert!(select(std::slice::from_ref(&v), &h, &pol(), now + RETRY_S).is_some());
        // Settings that cannot be read: no pass, and no merge by count either.
        let mut broken = v.clone();
        broken.retention_error = Some("vol/retention: line 1: bad".into());
        let merging = Policy {
            merge_threshold: Some(2),
            ..pol()
        };
        assert_eq!(select(&[broken.clone()], &h, &merging, now + RETRY_S), None);
        broken.retention_error = None;
        assert!(select(&[broken], &h, &merging, now + RETRY_S).is_some());
        // Off: nothing.
        v.retention = Retention::off();
        assert_eq!(select(&[v], &History::default(), &pol(), now), None);
        assert_eq!(RetainStep::Demote(vec![4, 5]).to_string(), "demote 4,5");
    }
}
