//! Replication, the destination half: the session a source opens here
//! ([`Archive::receive_repl`]): admission ([`super::crate::archive::admit::repl`]), then a full copy
//! (resumed from a [`FullReplState`]), a resync, or rounds of diffs and hash rounds.

use std::sync::Arc;

use tracing::{info, warn};
use walb_kernel::meta::{DiffManager, MetaDiff, MetaSnap, MetaState, Relation};
use walb_wire::msg::{ReplDecision, ReplKind, ReplSync, Uuid};
use walb_wire::{Call, ErrorCode, PeerId, Step, WireError};

use super::{wire, OP};
use crate::archive::full::Resume;
use crate::archive::hash::HashScan;
use crate::archive::vol::{ArchiveVol, VolMeta};
use crate::archive::{backend_error, persist_error, remove_diff_files, Archive};
use crate::bulk::MAX_BULK_LB;
use crate::dto;
use crate::session::{accept, blocking, expect, refuse};
use crate::state::archive::{action, ArchiveState as A};
use crate::vol::Txn;

/// File of an unfinished full copy (walb-tools' `full_repl_state`).
pub const FULL_REPL_FILE: &str = "full_repl_state";

/// An unfinished full copy, persisted beside its image: resumed when the same source
/// lineage sends the same base again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullReplState {
    /// The source's archive uuid.
    pub archive_uuid: Uuid,
    /// The base being copied.
    pub base: MetaState,
    /// The image size, logical blocks.
    pub size_lb: u64,
    /// Blocks written and synced.
    pub done_lb: u64,
}

impl FullReplState {
    const LEN: usize = 16 + MetaState::ENCODED_LEN + 16;

    /// The persistent form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.extend_from_slice(&self.archive_uuid);
        v.extend_from_slice(&self.base.to_bytes());
        v.extend_from_slice(&self.size_lb.to_le_bytes());
        v.extend_from_slice(&self.done_lb.to_le_bytes());
        v
    }

    /// Parses [`FullReplState::to_bytes`]; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<FullReplState> {
        if b.len() != Self::LEN {
            return None;
        }
        let (uuid, rest) = b.split_at(16);
        let (base, rest) = rest.split_at(MetaState::ENCODED_LEN);
        let (size, done) = rest.split_at(8);
        Some(FullReplState {
            archive_uuid: uuid.try_into().ok()?,
            base: MetaState::from_bytes(base).ok()?,
            size_lb: u64::from_le_bytes(size.try_into().ok()?),
            done_lb: u64::from_le_bytes(done.try_into().ok()?),
        })
    }

    /// The state in `dir`, if any and readable (an unreadable one only costs a restart
    /// of the copy).
    pub fn load(dir: &std::path::Path) -> Option<FullReplState> {
        let b = crate::persist::read_opt(&dir.join(FULL_REPL_FILE)).ok()??;
        FullReplState::from_bytes(&b)
    }

    /// Persists the state in `dir`.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), crate::persist::PersistError> {
        crate::persist::write_atomic(&dir.join(FULL_REPL_FILE), &self.to_bytes())
    }

    /// Removes the state of `dir` (absent is fine).
    pub fn remove(dir: &std::path::Path) -> Result<(), crate::persist::PersistError> {
        crate::persist::remove_file(&dir.join(FULL_REPL_FILE))
    }
}

/// The parameters of a compared image (`Step::ReplResync`): a hash round or a resync.
struct Compared {
    size_lb: u64,
    bulk_lb: u64,
    /// The snapshot (hash round) or base (resync) the source compares.
    to: MetaState,
    uuid: Uuid,
    seed: u32,
}

/// The next step, which must be `Step::ReplResync` with a usable bulk size.
async fn expect_compared(call: &mut Call, what: &str) -> Result<Compared, WireError> {
    let (size_lb, bulk_lb, to, uuid, seed) = expect(call, OP, what, |s| match s {
        Step::ReplResync {
            size_lb,
            bulk_lb,
            oldest,
            uuid,
            hash_seed,
        } => Ok((size_lb, bulk_lb, oldest, uuid, hash_seed)),
        o => Err(o),
    })
    .await?;
    if bulk_lb == 0 || bulk_lb > MAX_BULK_LB {
        return Err(refuse(
            ErrorCode::BadRequest,
            format!("{what}: bulk size {bulk_lb} blocks, it must be 1 to {MAX_BULK_LB}"),
        ));
    }
    Ok(Compared {
        size_lb,
        bulk_lb,
        to: dto::state_from_dto(&to)?,
        uuid,
        seed,
    })
}

impl Archive {
    /// Serves one replication session (see the module documentation).
    pub(crate) async fn receive_repl(
        self: &Arc<Self>,
        peer: PeerId,
        version: u16,
        mut call: Call,
        r: ReplSync,
    ) {
        let admit = || crate::archive::admit::repl(&peer, &r, &self.view(&r.vol)?);
        let slot = self
            .admitted_slot(&peer, version, &mut call, &r.vol, "replicate", admit)
            .await;
        let accepted = slot.and_then(|(kind, permit)| {
            let v = self
                .vol(&r.vol)
                .ok_or_else(|| refuse(ErrorCode::Internal, "volume vanished"))?;
            let txn = match kind {
                ReplKind::Full => {
                    v.core
                        .begin_exclusive(&[A::SyncReady], A::FullSync, "replication", None)?
                }
                _ => v.core.begin_exclusive(
                    &[A::Archived],
                    A::ReplSyncAsServer,
                    "replication",
                    None,
                )?,
            };
            Ok((v, txn, kind, permit))
        });
        let Some((mut call, (vol, txn, kind, permit))) =
            accept(call, &r.vol, "replication", accepted).await
        else {
            return;
        };
        info!(%peer, vol = %r.vol, ?kind, "replication started");
        let mut txn = Some(txn);
        let res = self
            .repl_body(&vol, &mut call, kind, &r.archive_uuid, &mut txn)
            .await;
        vol.set_progress(0);
        match res {
            Ok(rounds) => {
                if let Some(t) = txn.take() {
                    if let Err(e) = t.commit(A::Archived) {
                        warn!(vol = %vol.name, "{e}");
                    }
                }
                drop(permit);
                info!(%peer, vol = %vol.name, rounds, latest = %vol.meta().latest_snapshot(), "replication received");
                if let Err(e) = call.sender.step(Step::Ack).await {
                    warn!(%peer, vol = %vol.name, "cannot acknowledge the replication: {e}");
                }
                let _ = call.sender.finish();
            }
            Err(e) => {
                warn!(%peer, vol = %vol.name, "replication failed: {e}");
                drop(txn);
                if vol.meta().base.is_empty() && vol.state() == A::Archived {
                    // A resync that failed while committing: what a restart would find.
                    warn!(vol = %vol.name, "the resync left no base: the volume is SyncReady");
                    if let Err(e) = vol.core.force(A::SyncReady) {
                        warn!(vol = %vol.name, "{e}");
                    }
                    let (b, n) = (Arc::clone(&self.backend), vol.name.clone());
                    if let Ok(Err(e)) = blocking(move || b.remove_base(&n)).await {
                        warn!(vol = %vol.name, "cannot remove the base image: {e}");
                    }
                }
                drop(permit);
                self.publish_diffs(&vol);
                call.receiver.stop();
                call.sender.refuse(e).await;
            }
        }
    }

    /// The destination's side after the acceptance; returns the diff rounds received.
    /// `txn` holds the volume's transaction (replaced when a full copy commits).
    async fn repl_body(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        kind: ReplKind,
        archive_uuid: &Uuid,
        txn: &mut Option<Txn<A>>,
    ) -> Result<u64, WireError> {
        call.sender.step(Step::ReplKind(kind)).await.map_err(wire)?;
        if kind == ReplKind::Resync {
            self.receive_resync(vol, call, archive_uuid).await?;
            self.publish_diffs(vol);
        }
        if kind == ReplKind::Full {
            self.receive_full_repl(vol, call, archive_uuid).await?;
            // FullSync → Archived; the rounds run in ReplSyncAsServer.
            if let Some(t) = txn.take() {
                t.commit(A::Archived)?;
            }
            *txn = Some(vol.core.begin_exclusive(
                &[A::Archived],
                A::ReplSyncAsServer,
                "replication",
                None,
            )?);
            self.publish_diffs(vol);
        }
        let mut rounds = 0u64;
        loop {
            let latest = {
                let m = vol.meta();
                MetaState::new(m.latest_snapshot(), m.latest_state().timestamp)
            };
            call.sender
                .step(Step::MetaState(dto::state_to_dto(&latest)))
                .await
                .map_err(wire)?;
            let d = expect(call, OP, "the source's decision", |s| match s {
                Step::ReplDecision(d) => Ok(d),
                o => Err(o),
            })
            .await?;
            match d {
                ReplDecision::Done => return Ok(rounds),
                ReplDecision::Hash => {
                    self.receive_repl_hash(vol, call, latest.snap_b).await?;
                    rounds += 1;
                    self.publish_diffs(vol);
                    call.sender.step(Step::Ack).await.map_err(wire)?;
                }
                ReplDecision::Diff => {
                    self.receive_repl_diff(vol, call, latest.snap_b).await?;
                    rounds += 1;
                    self.publish_diffs(vol);
                    call.sender.step(Step::Ack).await.map_err(wire)?;
                }
            }
        }
    }

    /// Receives the source's base image and makes it this volume's (full or resync).
    async fn receive_full_repl(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        archive_uuid: &Uuid,
    ) -> Result<(), WireError> {
        let (size_lb, bulk_lb, base, uuid) =
            expect(call, OP, "the full copy's parameters", |s| match s {
                Step::ReplFull {
                    size_lb,
                    bulk_lb,
                    base,
                    uuid,
                } => Ok((size_lb, bulk_lb, base, uuid)),
                o => Err(o),
            })
            .await?;
        let base = dto::state_from_dto(&base)?;
        if size_lb == 0 || bulk_lb == 0 || base.is_empty() {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "{OP} of {}: needs a volume size, a bulk size and a base state (got {size_lb} and {bulk_lb} blocks, base {})",
                    vol.name,
                    base.snapshots_string()
                ),
            ));
        }
        // Resume an unfinished copy of the same lineage and base; else start afresh
        // (and forget the old one first: its image is about to be replaced).
        let saved = FullReplState::load(&vol.dir);
        let resumable = match saved {
            Some(st)
                if st.archive_uuid == *archive_uuid && st.base == base && st.size_lb == size_lb =>
            {
                let (b, n) = (Arc::clone(&self.backend), vol.name.clone());
                blocking(move || b.resume_base(&n, size_lb))
                    .await?
                    .map_err(backend_error)?
                    .is_some()
                    .then_some(st.done_lb)
            }
            _ => None,
        };
        let start_lb = match resumable {
            Some(lb) => lb,
            None => {
                FullReplState::remove(&vol.dir).map_err(persist_error)?;
                let (b, n) = (Arc::clone(&self.backend), vol.name.clone());
                blocking(move || b.abort_base(&n))
                    .await?
                    .map_err(backend_error)?;
                0
            }
        };
        let mut resume = Resume {
            start_lb,
            kept_lb: 0,
        };
        let r = self
            .copy_base(
                vol,
                call,
                size_lb,
                &mut resume,
                VolMeta {
                    uuid,
                    archive_uuid: *archive_uuid,
                    base,
                    diffs: DiffManager::new(),
                },
            )
            .await;
        let Err(e) = r else {
            return Ok(());
        };
        // Keep what arrived for the next attempt, or nothing.
        let dir = vol.dir.clone();
        let (b, n) = (Arc::clone(&self.backend), vol.name.clone());
        let kept = FullReplState {
            archive_uuid: *archive_uuid,
            base,
            size_lb,
            done_lb: resume.kept_lb,
        };
        let cleaned = blocking(move || {
            if kept.done_lb > 0 {
                kept.save(&dir).map_err(|e| e.to_string())?;
                b.keep_partial(&n).map_err(|e| e.to_string())
            } else {
                FullReplState::remove(&dir).map_err(|e| e.to_string())?;
                b.abort_base(&n).map_err(|e| e.to_string())
            }
        })
        .await;
        match cleaned {
            Ok(Ok(())) if kept.done_lb > 0 => {
                info!(vol = %vol.name, kept_lb = kept.done_lb, "unfinished copy kept for a resumed replication")
            }
            Ok(Ok(())) => {}
            Ok(Err(m)) => warn!(vol = %vol.name, "cleaning up the unfinished copy: {m}"),
            Err(m) => warn!(vol = %vol.name, "cleaning up the unfinished copy: {m}"),
        }
        Err(e)
    }

    /// The image of a full copy from `resume.start_lb`, then its commit as the base of
    /// `meta` (the source's base, uuids; no diffs).
    async fn copy_base(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        size_lb: u64,
        resume: &mut Resume,
        meta: VolMeta,
    ) -> Result<(), WireError> {
        call.sender
            .step(Step::StartLb(resume.start_lb))
            .await
            .map_err(wire)?;
        if resume.start_lb > 0 {
            info!(vol = %vol.name, start_lb = resume.start_lb, size_lb, "resuming an unfinished copy");
            self.publish_progress(&vol.name, OP, resume.start_lb, size_lb);
        }
        self.receive_image(vol, call, size_lb, resume, OP).await?;
        // Commit: an empty base first (an interruption from here boots SyncReady and drops
        // the rest), the image, the old diffs gone, then the new metadata.
        let old: Vec<MetaDiff> = vol.meta().diffs.iter().cloned().collect();
        let (b, n, dir, m2) = (
            Arc::clone(&self.backend),
            vol.name.clone(),
            vol.dir.clone(),
            meta.clone(),
        );
        blocking(move || -> Result<(), WireError> {
            VolMeta::initial().save(&dir).map_err(persist_error)?;
            b.commit_base(&n).map_err(backend_error)?;
            FullReplState::remove(&dir).map_err(persist_error)?;
            remove_diff_files(&dir, &old).map_err(persist_error)?;
            m2.save(&dir).map_err(persist_error)
        })
        .await??;
        let base = meta.base;
        *vol.meta() = meta;
        call.sender.step(Step::Ack).await.map_err(wire)?;
        info!(vol = %vol.name, %base, size_lb, "base image replicated");
        Ok(())
    }

    /// A resync: this archive's base image is hashed bulk by bulk, the source answers with
    /// the differing bulks of its base, which are written into the image; the volume then
    /// takes the source's base state, uuids and no diffs. Until the data is here nothing
    /// changes; from the commit on, an interruption leaves an empty base (SyncReady).
    async fn receive_resync(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        archive_uuid: &Uuid,
    ) -> Result<(), WireError> {
        let Compared {
            size_lb,
            bulk_lb,
            to: base,
            uuid,
            seed,
        } = expect_compared(call, "the resync's parameters").await?;
        if base.is_empty() || base.applying {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "{OP} of {}: a resync needs a settled base (got {})",
                    vol.name,
                    base.snapshots_string()
                ),
            ));
        }
        let have_lb = self
            .backend
            .base_size_lb(&vol.name)
            .map_err(backend_error)?
            .unwrap_or(0);
        if size_lb < have_lb {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "volume {}: this archive's image ({have_lb} blocks) is larger than the source's ({size_lb}); clear it and replicate again",
                    vol.name
                ),
            ));
        }
        if size_lb > have_lb {
            let (b, n) = (Arc::clone(&self.backend), vol.name.clone());
            blocking(move || b.grow_base(&n, size_lb))
                .await?
                .map_err(backend_error)?;
        }
        let tmp = crate::persist::tmp_path(&vol.dir.join("repl-resync.wdiff"));
        let scan = HashScan {
            size_lb,
            bulk_lb,
            seed: u64::from(seed),
        };
        let received = self.exchange_hashes(vol, call, &[], &scan, &tmp, OP).await;
        let bytes = match received {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Commit: an empty base first, the old diffs gone, the differences written into
        // the image and synced, then the source's metadata.
        let meta = VolMeta {
            uuid,
            archive_uuid: *archive_uuid,
            base,
            diffs: DiffManager::new(),
        };
        let old: Vec<MetaDiff> = vol.meta().diffs.iter().cloned().collect();
        *vol.meta() = VolMeta::initial();
        let (me, v2, t2, m2) = (Arc::clone(self), Arc::clone(vol), tmp.clone(), meta.clone());
        let r = blocking(move || -> Result<u64, WireError> {
            let dir = &v2.dir;
            VolMeta::initial().save(dir).map_err(persist_error)?;
            remove_diff_files(dir, &old).map_err(persist_error)?;
            let img = me.backend.open_base_rw(&v2.name).map_err(backend_error)?;
            let stream = crate::archive::restore::open_diff(&t2)
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            let cfg = me.config();
            let mut w =
                crate::archive::restore::ImageWriter::new(&img, cfg.discard, cfg.fsync_bytes)
                    .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            crate::archive::restore::apply_round(vec![stream], &mut w, None, &mut |_| Ok(()))
                .map_err(|e| {
                    refuse(ErrorCode::Internal, format!("writing the differences: {e}"))
                })?;
            drop(w);
            img.sync_all()
                .map_err(|e| refuse(ErrorCode::Internal, format!("syncing the base image: {e}")))?;
            crate::persist::remove_file(&t2).map_err(persist_error)?;
            FullReplState::remove(dir).map_err(persist_error)?;
            m2.save(dir).map_err(persist_error)?;
            Ok(bytes)
        })
        .await
        .and_then(|r| r);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        *vol.meta() = meta;
        call.sender.step(Step::Ack).await.map_err(wire)?;
        info!(vol = %vol.name, base = %base, bytes, "resynced by hashes");
        Ok(())
    }

    /// Receives one round's diff; `latest` is the snapshot the source planned from.
    async fn receive_repl_diff(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        latest: MetaSnap,
    ) -> Result<(), WireError> {
        let uuid = expect(call, OP, "the volume uuid", |s| match s {
            Step::Uuid(u) => Ok(u),
            o => Err(o),
        })
        .await?;
        let diff = expect(call, OP, "the diff", |s| match s {
            Step::MetaDiff(d) => Ok(d),
            o => Err(o),
        })
        .await?;
        let diff = dto::diff_from_dto(&diff)?;
        match latest.relation(&diff) {
            Relation::Applicable => {}
            r => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!(
                    "volume {}: {r}: diff {diff} does not apply to the latest snapshot {latest}",
                    vol.name
                ),
                ))
            }
        }
        let size_lb = self
            .backend
            .base_size_lb(&vol.name)
            .map_err(backend_error)?
            .unwrap_or(0);
        let (stored, _) = self.wdiff_body(vol, call, &diff, size_lb).await?;
        // The diffs the new one makes redundant; their files go unless a restore may be
        // reading them (then the next gc-diff or start removes them).
        let (garbage, meta) = {
            let mut m = vol.meta();
            let g = m.diffs.gc_range(stored.snap_b.gid_b, stored.snap_e.gid_b);
            m.uuid = uuid;
            (g, m.clone())
        };
        let restoring = vol.core.actions().count(action::RESTORE) > 0;
        let dir = vol.dir.clone();
        blocking(move || -> Result<(), WireError> {
            meta.save(&dir).map_err(persist_error)?;
            if !restoring {
                remove_diff_files(&dir, &garbage).map_err(persist_error)?;
            }
            Ok(())
        })
        .await??;
        info!(vol = %vol.name, diff = %stored, bytes = stored.data_size, "replicated diff received");
        Ok(())
    }
    /// Receives a hash round: this archive's image of `latest` is hashed bulk by bulk,
    /// the source answers with the differing bulks of its snapshot `to`, stored as the
    /// compared diff `latest --> to`.
    async fn receive_repl_hash(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        latest: MetaSnap,
    ) -> Result<(), WireError> {
        let Compared {
            size_lb,
            bulk_lb,
            to,
            uuid,
            seed,
        } = expect_compared(call, "the hash round's parameters").await?;
        let have_lb = self
            .backend
            .base_size_lb(&vol.name)
            .map_err(backend_error)?
            .unwrap_or(0);
        if size_lb != have_lb {
            return Err(refuse(
                ErrorCode::SmallerLvSize,
                format!(
                    "volume {}: the source's image has {size_lb} blocks, this archive's {have_lb} (resize first)",
                    vol.name
                ),
            ));
        }
        let diff = MetaDiff::new(latest, to.snap_b)
            .map_err(|e| refuse(ErrorCode::BadRequest, format!("{OP}: {e}")))?
            .with_comp_diff(true)
            .with_timestamp(to.timestamp);
        if !to.snap_b.is_clean() || to.snap_b.gid_b <= latest.gid_b {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "{OP}: a hash round to {} does not move the latest snapshot {latest}",
                    to.snap_b
                ),
            ));
        }
        let chain = {
            let m = vol.meta();
            m.diffs.diffs_to_scan(&m.base, latest.gid_b, self.cfg.max_open)
        }
        .ok_or_else(|| {
            refuse(
                ErrorCode::Internal,
                format!(
                    "volume {}: the latest snapshot {latest} needs more than --max-open diffs to scan: apply or merge first",
                    vol.name
                ),
            )
        })?;
        let tmp = crate::persist::tmp_path(&vol.dir.join("repl-hash.wdiff"));
        let r = async {
            let bytes = self
                .exchange_hashes(
                    vol,
                    call,
                    &chain,
                    &HashScan {
                        size_lb,
                        bulk_lb,
                        seed: u64::from(seed),
                    },
                    &tmp,
                    OP,
                )
                .await?;
            let diff = diff.with_data_size(bytes);
            self.commit_temp_diff(vol, &tmp, &diff, uuid, OP).await?;
            Ok::<_, WireError>(diff)
        }
        .await;
        match r {
            Ok(diff) => {
                info!(vol = %vol.name, %diff, bytes = diff.data_size, "hash round received");
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_of_an_unfinished_copy_round_trips_and_garbage_reads_as_none() {
        let st = FullReplState {
            archive_uuid: [7; 16],
            base: MetaState::new(MetaSnap::new(0, 5).unwrap(), 1_700_000_000),
            size_lb: 1 << 30,
            done_lb: 12345,
        };
        assert_eq!(FullReplState::from_bytes(&st.to_bytes()), Some(st));
        let b = st.to_bytes();
        assert_eq!(FullReplState::from_bytes(&b[..b.len() - 1]), None);
        let mut bad = b.clone();
        bad[16] ^= 0xff; // the base's preamble
        assert_eq!(FullReplState::from_bytes(&bad), None);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(FullReplState::load(d.path()), None);
        st.save(d.path()).unwrap();
        assert_eq!(FullReplState::load(d.path()), Some(st));
        FullReplState::remove(d.path()).unwrap();
        FullReplState::remove(d.path()).unwrap();
        assert_eq!(FullReplState::load(d.path()), None);
    }
}
