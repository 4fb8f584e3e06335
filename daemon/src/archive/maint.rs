//! Merge and apply: the archive's upkeep of its diffs (walb-tools.md §5.8, §5.9).
//!
//! **merge** `vol gidB gidE` (or `gidB size MiB`) takes the mergeable run of diffs that
//! starts at `gidB` ([`plan_merge`]: `DiffManager::mergeable_from`, cut before diffs
//! starting at `gidE` or at the size budget), needs at least two, and replaces them by one
//! SORTED wdiff: the inputs are merged by the kernel (newest data wins) into
//! `<merged name>.tmp`, which is synced and renamed; the merged diff joins the list, then
//! the inputs are deleted (after any running restore ends: a restore opens the files of
//! its later rounds as it reaches them). Implicit snapshots inside the run disappear;
//! explicit ones cannot be inside (a non-mergeable diff ends the run). Refused while the
//! base is being applied.
//!
//! **apply** `vol gid` writes the diffs up to `gid` into the base image, in rounds of at
//! most `--max-open` diffs ([`DiffManager::diffs_to_apply`]). Each round persists the base
//! state as applying (`<B --> E>`), writes the merged IOs into the base in place, syncs
//! it, persists `<E>`, and deletes the diffs it made redundant. The IOs are idempotent, so
//! an apply cut short (crash, force stop) leaves an applying base that restore still
//! reads correctly and that the next apply finishes first.
//!
//! Both answer `Accepted` and run in the background under their action (`num-action`
//! shows them), with `Event::Progress` (ops `merge`, `apply`) and `Event::Failed`.
//!
//! **resize** `vol size` grows the base image (grow only), under the `Resize` action.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;
use walb_kernel::block::LBS;
use walb_kernel::diff::convert::{merge_to_sorted, ConvertOpt};
use walb_kernel::ldev::ReadAt;
use walb_kernel::meta::{DiffManager, MergeLimits, MetaDiff, MetaState};
use walb_kernel::wdiff::WdiffHeader;
use walb_wire::msg::MergeUntil;
use walb_wire::{ErrorCode, Reply, WireError};

use super::restore::{
    apply_round, open_round, EdgePrefetch, ImageWriter, RestoreError, Throttle, PROGRESS_EVERY,
};
use super::vol::{diff_path, ArchiveVol, BASE_FILE};
use super::{backend_error, persist_error, remove_diff_files, Archive};
use crate::persist;
use crate::session::{blocking, refuse, Caller};
use crate::state::archive::{action, deny_list, ArchiveState as A, ACTIVE};

/// States an archive volume can be resized in (walb-tools: aActive, Stopped, SyncReady).
const RESIZE_ACCEPT: &[A] = &[
    A::Archived,
    A::HashSync,
    A::WdiffRecv,
    A::ReplSyncAsServer,
    A::Stopped,
    A::SyncReady,
];

/// Operation names in progress and failure events.
pub const OP_MERGE: &str = "merge";
/// See [`OP_MERGE`].
pub const OP_APPLY: &str = "apply";

/// The diffs `merge vol gid_b until` replaces: the mergeable run from `gid_b`, cut by
/// `until`; an error (for the operator) unless it holds at least two diffs and the base is
/// settled.
pub fn plan_merge(
    diffs: &DiffManager,
    base: &MetaState,
    gid_b: u64,
    until: MergeUntil,
) -> Result<Vec<MetaDiff>, String> {
    if base.applying {
        return Err(format!(
            "the base is being applied ({}): apply again to finish it first",
            base.snapshots_string()
        ));
    }
    let limits = match until {
        MergeUntil::Gid(g) => MergeLimits {
            before_gid: Some(g),
            ..MergeLimits::default()
        },
        MergeUntil::SizeMib(mib) => MergeLimits {
            max_total_size: Some(mib.saturating_mul(1 << 20)),
            ..MergeLimits::default()
        },
    };
    let v = diffs.mergeable_from(gid_b, &limits);
    if v.len() < 2 {
        let what = match until {
            MergeUntil::Gid(g) => format!("from gid {gid_b} before gid {g}"),
            MergeUntil::SizeMib(m) => format!("from gid {gid_b} within {m} MiB"),
        };
        return Err(format!(
            "{} mergeable diff{} {what}: a merge needs at least two (the diffs after an explicit snapshot start a new run)",
            v.len(),
            if v.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(v)
}

/// Merges `inputs` (files in `dir`, oldest first) into one SORTED wdiff, written durably
/// under its own name; returns its metadata (with its size). Stops with
/// [`RestoreError::Cancelled`] when `abort()` turns true; leaves no file on failure.
pub fn merge_files(
    dir: &Path,
    inputs: &[MetaDiff],
    abort: &dyn Fn() -> bool,
) -> Result<MetaDiff, RestoreError> {
    let merged = MetaDiff::merge_all(inputs)?;
    let last = inputs.last().map(|d| diff_path(dir, d));
    let uuid = match &last {
        Some(p) => {
            let mut f = File::open(p)
                .map_err(|e| walb_kernel::Error::io(format!("opening wdiff {}", p.display()), e))?;
            WdiffHeader::read_from(&mut f)?.0.uuid
        }
        None => [0; 16],
    };
    let dst = diff_path(dir, &merged);
    let tmp = persist::tmp_path(&dst);
    let res = (|| {
        let streams = open_round(dir, inputs)?;
        let f = persist::create_file(&tmp)
            .map_err(|e| walb_kernel::Error::io(format!("creating {}", tmp.display()), e))?;
        let (w, _) = merge_to_sorted(
            streams,
            uuid,
            BufWriter::with_capacity(1 << 20, persist::NamedWriter::new(f, &tmp)),
            &ConvertOpt::default(),
        )?;
        let f = w
            .into_inner()
            .map(persist::NamedWriter::into_inner)
            .map_err(|e| walb_kernel::Error::io(format!("writing {}", tmp.display()), e.into()))?;
        f.sync_all()
            .map_err(|e| walb_kernel::Error::io(format!("syncing {}", tmp.display()), e))?;
        if abort() {
            return Err(RestoreError::Cancelled);
        }
        let size = f
            .metadata()
            .map_err(|e| walb_kernel::Error::io(format!("sizing {}", tmp.display()), e))?
            .len();
        std::fs::rename(&tmp, &dst)
            .map_err(|e| walb_kernel::Error::io(format!("renaming {}", tmp.display()), e))?;
        persist::sync_dir(dir)
            .map_err(|e| walb_kernel::Error::io(format!("syncing {}", dir.display()), e.source))?;
        Ok(merged.with_data_size(size))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes the merged IOs of `round` (files in `dir`) into `base`, then syncs it; returns
/// the IOs written. `on_io(end_lb)` after every IO may stop it ([`RestoreError::Cancelled`]).
pub fn write_round(
    base: &File,
    dir: &Path,
    round: &[MetaDiff],
    discard: walb_kernel::diff::apply::DiscardPolicy,
    fsync_bytes: u64,
    on_io: &mut dyn FnMut(u64) -> Result<(), RestoreError>,
) -> Result<u64, RestoreError> {
    let mut w = ImageWriter::new(base, discard, fsync_bytes)?;
    let streams = open_round(dir, round)?;
    apply_round(streams, &mut w, EdgePrefetch::new(base, discard), on_io)?;
    let ios = w.ios;
    drop(w);
    base.sync_all()
        .map_err(|e| walb_kernel::Error::io("syncing the base image", e))?;
    Ok(ios)
}

impl Archive {
    /// `merge vol gid_b until` (see the module documentation).
    pub(super) async fn merge(
        self: &Arc<Self>,
        name: &str,
        gid_b: u64,
        until: MergeUntil,
        caller: Option<&mut Caller<'_>>,
    ) -> Result<Reply, WireError> {
        let v = self.vol_for_action(name, "merge")?;
        let permit = self.ctx.fg_slot(caller, name, "merge").await?;
        let guard = v
            .core
            .begin_action(ACTIVE, action::MERGE, deny_list(action::MERGE))?;
        let inputs = {
            let m = v.meta();
            plan_merge(&m.diffs, &m.base, gid_b, until)
                .map_err(|e| refuse(ErrorCode::NotFound, format!("merge {name}: {e}")))?
        };
        info!(vol = name, gid_b, n = inputs.len(), "merge started");
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let r = me.run_merge(&v, inputs).await;
            if let Err(e) = r {
                me.op_failed(&v.name, OP_MERGE, &format!("{OP_MERGE}: {e}"));
            }
            drop(permit);
            drop(guard);
        });
        Ok(Reply::Accepted)
    }

    async fn run_merge(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        inputs: Vec<MetaDiff>,
    ) -> Result<(), String> {
        let t0 = Instant::now();
        let (dir, ins, v2, me) = (
            v.dir.clone(),
            inputs.clone(),
            Arc::clone(v),
            Arc::clone(self),
        );
        let merged = blocking(move || merge_files(&dir, &ins, &|| me.aborting(&v2)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        {
            let mut m = v.meta();
            m.diffs.remove(&merged);
            m.diffs.add(merged.clone()).map_err(|e| e.to_string())?;
        }
        self.publish_diffs(v);
        // A running restore opens the files of its later rounds when it reaches them.
        while v.core.actions().count(action::RESTORE) > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (dir, ins) = (v.dir.clone(), inputs.clone());
        blocking(move || remove_diff_files(&dir, &ins))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        v.meta().diffs.remove_all(&inputs);
        self.publish_diffs(v);
        let before: u64 = inputs.iter().map(|d| d.data_size).sum();
        info!(
            vol = %v.name,
            diff = %merged,
            inputs = inputs.len(),
            bytes_before = before,
            bytes_after = merged.data_size,
            secs = t0.elapsed().as_secs_f64(),
            "merged"
        );
        Ok(())
    }

    /// `apply vol gid` (see the module documentation).
    pub(super) async fn apply(
        self: &Arc<Self>,
        name: &str,
        gid: u64,
        caller: Option<&mut Caller<'_>>,
    ) -> Result<Reply, WireError> {
        let v = self.vol_for_action(name, "apply")?;
        let permit = self.ctx.fg_slot(caller, name, "apply").await?;
        let guard = v
            .core
            .begin_action(ACTIVE, action::APPLY, deny_list(action::APPLY))?;
        {
            let m = v.meta();
            if m.diffs.diffs_to_apply(&m.base, gid, 0).is_empty() {
                return Err(refuse(
                    ErrorCode::NotFound,
                    format!(
                        "apply {name}: no diff applies to the base {} up to gid {gid}",
                        m.base.snapshots_string()
                    ),
                ));
            }
        }
        info!(vol = name, gid, "apply started");
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let (v2, me2) = (Arc::clone(&v), Arc::clone(&me));
            let r = blocking(move || me2.run_apply(&v2, gid)).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => me.op_failed(&v.name, OP_APPLY, &format!("{OP_APPLY}: {e}")),
                Err(e) => me.op_failed(&v.name, OP_APPLY, &format!("{OP_APPLY}: {e}")),
            }
            me.publish_diffs(&v);
            drop(permit);
            drop(guard);
        });
        Ok(Reply::Accepted)
    }

    /// The rounds of an apply (blocking).
    fn run_apply(&self, v: &ArchiveVol, gid: u64) -> Result<(), String> {
        let t0 = Instant::now();
        let base = self
            .backend
            .open_base_rw(&v.name)
            .map_err(|e| e.to_string())?;
        let size_lb = ReadAt::size(&base).map_err(|e| e.to_string())? / u64::from(LBS);
        let mut throttle = Throttle::new(self.cfg.apply_sleep_pct);
        let (mut rounds, mut ios, mut removed) = (0u64, 0u64, 0usize);
        let mut last = Instant::now();
        loop {
            let (st, list) = {
                let m = v.meta();
                (
                    m.base,
                    m.diffs.diffs_to_apply(&m.base, gid, self.cfg.max_open),
                )
            };
            if list.is_empty() {
                break;
            }
            let applying = st.begin_applying(&list).map_err(|e| e.to_string())?;
            let done = st.end_applying(&list).map_err(|e| e.to_string())?;
            self.save_base(v, applying)?;
            let mut on_io = |end_lb: u64| -> Result<(), RestoreError> {
                if self.aborting(v) {
                    return Err(RestoreError::Cancelled);
                }
                if last.elapsed() >= PROGRESS_EVERY {
                    last = Instant::now();
                    self.publish_progress(&v.name, OP_APPLY, end_lb.min(size_lb), size_lb);
                }
                throttle.tick();
                Ok(())
            };
            let written = write_round(
                &base,
                &v.dir,
                &list,
                self.cfg.discard,
                self.cfg.fsync_bytes,
                &mut on_io,
            )
            .map_err(|e| e.to_string())?;
            // The new base and the diffs it swallowed leave the volume's view at once (a
            // query never sees the base past diffs still listed); their files go after
            // (a start removes what a crash left behind).
            persist::write_atomic(&v.dir.join(BASE_FILE), &done.to_bytes())
                .map_err(|e| e.to_string())?;
            let garbage = {
                let mut m = v.meta();
                m.base = done;
                let g = m.diffs.clone().erase_before_gid(done.snap_b.gid_b);
                m.diffs.remove_all(&g);
                g
            };
            remove_diff_files(&v.dir, &garbage).map_err(|e| e.to_string())?;
            self.publish_diffs(v);
            rounds += 1;
            ios += written;
            removed += garbage.len();
        }
        info!(
            vol = %v.name,
            gid,
            base = %v.meta().base.snapshots_string(),
            rounds,
            ios,
            diffs_removed = removed,
            secs = t0.elapsed().as_secs_f64(),
            "applied"
        );
        Ok(())
    }

    /// `resize vol size_lb`: grows the base image (grow only; a file backend's new part
    /// reads as zeros, so `zero_clear` has nothing left to do). Later wdiffs of the larger
    /// volume are accepted from then on.
    pub(super) async fn resize(
        self: &Arc<Self>,
        name: &str,
        size_lb: u64,
    ) -> Result<Reply, WireError> {
        let v = self.vol(name).ok_or_else(|| {
            refuse(
                ErrorCode::WrongState,
                format!("volume {name} is Clear; resize needs an initialized volume"),
            )
        })?;
        let _guard =
            v.core
                .begin_action(RESIZE_ACCEPT, action::RESIZE, deny_list(action::RESIZE))?;
        let (b, n) = (Arc::clone(&self.backend), name.to_owned());
        let have = blocking(move || b.base_size_lb(&n))
            .await?
            .map_err(backend_error)?
            .ok_or_else(|| {
                refuse(
                    ErrorCode::NotFound,
                    format!("volume {name} has no base image yet (full backup first)"),
                )
            })?;
        if size_lb < have {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("resize {name}: {size_lb} blocks is smaller than the image's {have} (grow only)"),
            ));
        }
        let (b, n) = (Arc::clone(&self.backend), name.to_owned());
        blocking(move || b.grow_base(&n, size_lb))
            .await?
            .map_err(backend_error)?;
        info!(vol = name, from_lb = have, to_lb = size_lb, "resized");
        Ok(Reply::Done)
    }

    /// `enable-snapshot` / `disable-snapshot vol gid...`: the diffs that start at each gid
    /// get the mergeable flag cleared (the snapshot is explicit: restorable, a merge stops
    /// there) or set (implicit). The flag is in the file name: the files are renamed, the
    /// directory synced, then the list changed.
    pub(super) async fn set_explicit(
        self: &Arc<Self>,
        name: &str,
        gids: &[u64],
        explicit: bool,
    ) -> Result<Reply, WireError> {
        let what = if explicit {
            "enable-snapshot"
        } else {
            "disable-snapshot"
        };
        let v = self.vol_for_action(name, what)?;
        v.core.require(ACTIVE)?;
        v.core
            .actions()
            .check_none(what, deny_list(what))
            .map_err(|e| refuse(ErrorCode::Busy, format!("volume {name}: {e}")))?;
        let (renames, after) = {
            let m = v.meta();
            let mut d = m.diffs.clone();
            let mut renames = Vec::new();
            for &g in gids {
                let Some(changed) = d.set_mergeable_at(g, !explicit) else {
                    return Err(refuse(
                        ErrorCode::NotFound,
                        format!("{what} {name}: no diff starts at gid {g}"),
                    ));
                };
                for now in changed {
                    let before = now.clone().with_mergeable(explicit);
                    renames.push((diff_path(&v.dir, &before), diff_path(&v.dir, &now)));
                }
            }
            (renames, d)
        };
        let dir = v.dir.clone();
        let n = renames.len();
        blocking(move || -> Result<(), WireError> {
            for (from, to) in &renames {
                std::fs::rename(from, to).map_err(|e| {
                    refuse(
                        ErrorCode::Internal,
                        format!("renaming {}: {e}", from.display()),
                    )
                })?;
            }
            persist::sync_dir(&dir).map_err(persist_error)
        })
        .await??;
        v.meta().diffs = after;
        self.publish_diffs(&v);
        info!(
            vol = name,
            ?gids,
            explicit,
            renamed = n,
            "snapshots {what}d"
        );
        Ok(Reply::Done)
    }

    /// Persists `st` as the base state of `v`, then shows it.
    fn save_base(&self, v: &ArchiveVol, st: MetaState) -> Result<(), String> {
        persist::write_atomic(&v.dir.join(BASE_FILE), &st.to_bytes()).map_err(|e| e.to_string())?;
        v.meta().base = st;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(diffs: &[MetaDiff]) -> DiffManager {
        DiffManager::from_diffs(diffs.iter().cloned()).unwrap()
    }

    #[test]
    fn merge_plans_take_the_mergeable_run_and_need_two() {
        let base = MetaState::new(walb_kernel::meta::MetaSnap::clean(0), 0);
        let d = |b, e, m: bool| {
            MetaDiff::clean(b, e)
                .unwrap()
                .with_mergeable(m)
                .with_data_size(1 << 20)
        };
        // 0->1 explicit start, 1->2, 2->3 mergeable, 3->4 explicit (not mergeable), 4->5.
        let m = mgr(&[
            d(0, 1, false),
            d(1, 2, false),
            d(2, 3, true),
            d(3, 4, false),
            d(4, 5, true),
        ]);
        let p = plan_merge(&m, &base, 1, MergeUntil::Gid(10)).unwrap();
        assert_eq!(
            p,
            vec![d(1, 2, false), d(2, 3, true)],
            "stops at the explicit 3"
        );
        let e = plan_merge(&m, &base, 1, MergeUntil::Gid(2)).unwrap_err();
        assert!(
            e.contains("1 mergeable diff from gid 1 before gid 2"),
            "{e}"
        );
        let e = plan_merge(&m, &base, 0, MergeUntil::Gid(10)).unwrap_err();
        assert!(
            e.contains("at least two"),
            "0->1 then 1->2 is not mergeable: {e}"
        );
        let p = plan_merge(&m, &base, 3, MergeUntil::SizeMib(2)).unwrap();
        assert_eq!(p.len(), 2);
        assert!(plan_merge(&m, &base, 3, MergeUntil::SizeMib(1)).is_err());
        let applying = MetaState::new_applying(
            walb_kernel::meta::MetaSnap::clean(0),
            walb_kernel::meta::MetaSnap::clean(2),
            0,
        )
        .unwrap();
        let e = plan_merge(&m, &applying, 1, MergeUntil::Gid(10)).unwrap_err();
        assert!(e.contains("being applied"), "{e}");
    }
}
