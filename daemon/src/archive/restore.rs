//! Restore: materializing a clean snapshot as an image, and deleting it again
//! (walb-tools.md §5.7).
//!
//! `restore vol gid` needs an active volume (Archived and its receive states), no running
//! Restore or Resize (the `Restore` action's deny list), a gid that is not restored yet
//! and that the diff chain can make exactly clean (`DiffManager::diffs_to_restore`), and a
//! foreground slot; it answers `Accepted` and goes on in the background:
//!
//! 1. the backend starts `restored/<gid>.img.tmp` as a copy of the base image (reflink or
//!    sparse copy);
//! 2. the diff chain is applied in rounds of at most `--max-open` wdiffs
//!    ([`plan_restore`]): each round's wdiffs are merged (`DiffMerger`, newest wins) and
//!    written with `Redo` under the `--discard` policy, fdatasync every
//!    `--fsync-interval-mb`, throttled by `--apply-sleep-pct`, with `Event::Progress{op:
//!    "restore"}`;
//! 3. the image is synced and renamed to `restored/<gid>.img` (and attached to a loop
//!    device with `--restore-loop`).
//!
//! A failure, a force stop or a forced shutdown removes the temporary image; a daemon
//! killed half-way removes it at its next start. `del-restored` detaches and deletes a
//! restored image (active or Stopped volume, no Restore/Resize running).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use walb_kernel::block::LBS;
use walb_kernel::diff::apply::{DiscardPolicy, FileTarget, Redo};
use walb_kernel::diff::merge::{DiffMerger, DiffStream};
use walb_kernel::ldev::ReadAt;
use walb_kernel::meta::{DiffManager, MetaDiff, MetaSnap, MetaState};
use walb_kernel::wdiff::open_wdiff;
use walb_wire::{ErrorCode, Event, Reply, WireError};

use super::backend::{BackendError, CloneMethod, ImageBackend};
use super::vol::diff_path;
use super::{backend_error, blocking, Archive};
use crate::server::refuse;
use crate::state::archive::{action, deny_list, ACTIVE, ACTIVE_OR_STOPPED};

/// Name of the operation in progress events.
pub const OP: &str = "restore";
/// Least time between two progress events.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Work between two throttling sleeps.
const THROTTLE_SLICE: Duration = Duration::from_millis(20);

/// The rounds of diffs that turn the base `base` into the clean snapshot `|gid|`, each of
/// at most `max_open` diffs (0 = one round); `None` if `|gid|` is not restorable. No
/// rounds at all when the base is `|gid|` itself.
pub fn plan_restore(
    diffs: &DiffManager,
    base: &MetaState,
    gid: u64,
    max_open: usize,
) -> Option<Vec<Vec<MetaDiff>>> {
    let mut st = *base;
    let mut rounds = Vec::new();
    loop {
        let v = diffs.diffs_to_restore(&st, gid, max_open)?;
        if v.is_empty() {
            break;
        }
        st = st.apply_all(&v).ok()?;
        rounds.push(v);
    }
    let done = !st.applying && st.snap_b == MetaSnap::clean(gid);
    done.then_some(rounds)
}

/// Why building a restored image failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The image backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Reading a wdiff or writing the image failed.
    #[error(transparent)]
    Kernel(#[from] walb_kernel::Error),
    /// A force stop or shutdown asked to stop.
    #[error("cancelled")]
    Cancelled,
}

/// One restore, as the blocking worker sees it.
#[derive(Debug, Clone)]
pub struct RestoreJob {
    /// Volume.
    pub vol: String,
    /// Snapshot gid.
    pub gid: u64,
    /// Volume directory (where the wdiffs are).
    pub dir: PathBuf,
    /// The diffs to apply, in rounds ([`plan_restore`]).
    pub rounds: Vec<Vec<MetaDiff>>,
    /// Discard policy.
    pub discard: DiscardPolicy,
    /// fdatasync interval, bytes.
    pub fsync_bytes: u64,
    /// Sleep percentage (0–99).
    pub sleep_pct: u32,
}

/// Builds the restored image of `job` through `backend` (blocking): copy of the base,
/// diffs applied, committed. Calls `progress(done_lb, total_lb)` now and then and stops
/// with [`RestoreError::Cancelled`] once `abort()` is true. The temporary image is removed
/// on every failure.
pub fn build_restored(
    backend: &dyn ImageBackend,
    job: &RestoreJob,
    abort: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(PathBuf, CloneMethod), RestoreError> {
    let res = (|| {
        let (file, how) = backend.begin_restore(&job.vol, job.gid)?;
        let size_lb = ReadAt::size(&file)
            .map_err(|e| walb_kernel::Error::io("sizing the restored image", e))?
            / u64::from(LBS);
        let total = size_lb.saturating_mul(job.rounds.len().max(1) as u64);
        let mut last = Instant::now();
        let mut throttle = Throttle::new(job.sleep_pct);
        progress(0, total);
        for (r, round) in job.rounds.iter().enumerate() {
            let streams = open_round(&job.dir, round)?;
            let target = FileTarget::new(
                file.try_clone()
                    .map_err(|e| walb_kernel::Error::io("duplicating the image handle", e))?,
            )?;
            let mut redo = Redo::new(target, job.discard)?;
            let mut unsynced = 0u64;
            let done_before = size_lb.saturating_mul(r as u64);
            for io in DiffMerger::new(streams) {
                if abort() {
                    return Err(RestoreError::Cancelled);
                }
                let io = io?;
                redo.apply_io(&io)?;
                if io.is_normal() {
                    unsynced += u64::from(io.blocks) * u64::from(LBS);
                }
                if unsynced >= job.fsync_bytes {
                    unsynced = 0;
                    file.sync_data()
                        .map_err(|e| walb_kernel::Error::io("syncing the restored image", e))?;
                }
                if last.elapsed() >= PROGRESS_EVERY {
                    last = Instant::now();
                    progress(done_before + io.end().min(size_lb), total);
                }
                throttle.tick();
            }
            redo.finish()?;
        }
        file.sync_all()
            .map_err(|e| walb_kernel::Error::io("syncing the restored image", e))?;
        if abort() {
            return Err(RestoreError::Cancelled);
        }
        let path = backend.commit_restore(&job.vol, job.gid)?;
        progress(total, total);
        Ok((path, how))
    })();
    if res.is_err() {
        if let Err(e) = backend.abort_restore(&job.vol, job.gid) {
            warn!(vol = %job.vol, gid = job.gid, "cannot remove the unfinished image: {e}");
        }
    }
    res
}

fn open_round(dir: &Path, round: &[MetaDiff]) -> Result<Vec<DiffStream<'static>>, RestoreError> {
    round
        .iter()
        .map(|d| open_wdiff(diff_path(dir, d)).map_err(RestoreError::from))
        .collect()
}

/// Sleeps `pct`% of the time: after each slice of work, a proportional pause.
struct Throttle {
    pct: u32,
    since: Instant,
}

impl Throttle {
    fn new(pct: u32) -> Throttle {
        Throttle {
            pct: pct.min(99),
            since: Instant::now(),
        }
    }

    fn tick(&mut self) {
        if self.pct == 0 {
            return;
        }
        let busy = self.since.elapsed();
        if busy >= THROTTLE_SLICE {
            let pause = busy * self.pct / (100 - self.pct);
            std::thread::sleep(pause);
            self.since = Instant::now();
        }
    }
}

impl Archive {
    /// `restore vol gid` (see the module documentation).
    pub(super) async fn restore(
        self: &Arc<Self>,
        name: &str,
        gid: u64,
    ) -> Result<Reply, WireError> {
        let v = self.vol(name).ok_or_else(|| {
            refuse(
                ErrorCode::WrongState,
                format!("volume {name} is Clear; restore needs an archived volume"),
            )
        })?;
        if v.core.stop_state().is_stopping() {
            return Err(refuse(
                ErrorCode::Stopped,
                format!("volume {name} is stopping"),
            ));
        }
        let permit = self.ctx.fg_permit()?;
        let guard = v
            .core
            .begin_action(ACTIVE, action::RESTORE, deny_list(action::RESTORE))?;
        let (b, n) = (Arc::clone(&self.backend), name.to_owned());
        let restored = blocking(move || b.restored(&n))
            .await?
            .map_err(backend_error)?;
        if let Some(r) = restored.iter().find(|r| r.gid == gid) {
            return Err(refuse(
                ErrorCode::WrongState,
                format!(
                    "snapshot {gid} of volume {name} is already restored at {} (del-restored it first)",
                    r.path.display()
                ),
            ));
        }
        let rounds = {
            let m = v.meta();
            plan_restore(&m.diffs, &m.base, gid, self.cfg.max_open).ok_or_else(|| {
                let points: Vec<String> = m
                    .diffs
                    .restorable(&m.base, true)
                    .iter()
                    .map(|p| p.gid.to_string())
                    .collect();
                refuse(
                    ErrorCode::NotFound,
                    format!(
                        "volume {name}: gid {gid} is not a restorable clean snapshot (restorable: {})",
                        if points.is_empty() { "none".to_owned() } else { points.join(" ") }
                    ),
                )
            })?
        };
        let job = RestoreJob {
            vol: name.to_owned(),
            gid,
            dir: v.dir.clone(),
            rounds,
            discard: self.cfg.discard,
            fsync_bytes: self.cfg.fsync_bytes,
            sleep_pct: self.cfg.apply_sleep_pct,
        };
        info!(
            vol = name,
            gid,
            diffs = job.rounds.iter().map(Vec::len).sum::<usize>(),
            "restore started"
        );
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let (b, v2, me2) = (Arc::clone(&me.backend), Arc::clone(&v), Arc::clone(&me));
            let res = blocking(move || {
                let abort = || me2.aborting(&v2);
                let mut progress = |done_lb, total_lb| {
                    me2.publish(Event::Progress {
                        vol: v2.name.clone(),
                        op: OP.into(),
                        done_lb,
                        total_lb,
                    })
                };
                build_restored(b.as_ref(), &job, &abort, &mut progress)
            })
            .await;
            match res {
                Ok(Ok((path, how))) => {
                    v.set_clone_method(gid, Some(how));
                    info!(vol = %v.name, gid, path = %path.display(), method = %how, "restored");
                }
                Ok(Err(e)) => warn!(vol = %v.name, gid, "restore failed: {e}"),
                Err(e) => warn!(vol = %v.name, gid, "restore failed: {e}"),
            }
            drop(permit);
            drop(guard);
        });
        Ok(Reply::Accepted)
    }

    /// `del-restored vol gid`.
    pub(super) async fn del_restored(
        self: &Arc<Self>,
        name: &str,
        gid: u64,
    ) -> Result<Reply, WireError> {
        let v = self.vol(name).ok_or_else(|| {
            refuse(
                ErrorCode::WrongState,
                format!("volume {name} is Clear; del-restored needs an archived or stopped volume"),
            )
        })?;
        v.core.require(ACTIVE_OR_STOPPED)?;
        v.core
            .actions()
            .check_none("del-restored", deny_list("del-restored"))
            .map_err(|e| refuse(ErrorCode::Busy, format!("volume {name}: {e}")))?;
        let (b, n) = (Arc::clone(&self.backend), name.to_owned());
        let removed = blocking(move || b.remove_restored(&n, gid))
            .await?
            .map_err(backend_error)?;
        if !removed {
            return Err(refuse(
                ErrorCode::NotFound,
                format!("snapshot {gid} of volume {name} is not restored"),
            ));
        }
        v.set_clone_method(gid, None);
        info!(vol = name, gid, "restored image deleted");
        Ok(Reply::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(diffs: &[MetaDiff]) -> DiffManager {
        DiffManager::from_diffs(diffs.iter().cloned()).unwrap()
    }

    #[test]
    fn plans_rounds_of_at_most_max_open() {
        let base = MetaState::new(MetaSnap::new(0, 2).unwrap(), 10);
        let d = |b, e, m| MetaDiff::clean(b, e).unwrap().with_mergeable(m);
        let m = mgr(&[d(0, 1, false), d(1, 2, true), d(2, 3, true), d(3, 5, false)]);
        // |0,2| becomes clean at 2; 1 is still dirty, so not restorable.
        assert_eq!(plan_restore(&m, &base, 1, 0), None);
        assert_eq!(
            plan_restore(&m, &base, 2, 0).unwrap(),
            vec![vec![d(0, 1, false), d(1, 2, true)]]
        );
        let rounds = plan_restore(&m, &base, 5, 3).unwrap();
        assert_eq!(rounds.len(), 2);
        assert_eq!(rounds.concat().len(), 4);
        assert!(rounds.iter().all(|r| r.len() <= 3));
        assert_eq!(plan_restore(&m, &base, 4, 0), None);
        assert_eq!(plan_restore(&m, &base, 9, 0), None);
        // The base itself, when clean.
        let clean = MetaState::new(MetaSnap::clean(3), 10);
        assert_eq!(
            plan_restore(&mgr(&[]), &clean, 3, 0).unwrap(),
            Vec::<Vec<MetaDiff>>::new()
        );
    }
}
