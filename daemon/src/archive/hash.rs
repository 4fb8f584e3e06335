//! Hash-backup receive: the archive's side of a hash sync (storage → primary archive,
//! walb-tools.md §5.5).
//!
//! `BackupSync::Hash(SyncStart{vol, size_lb, time_s, bulk_lb})` needs an Archived volume
//! of that size, no running action and a foreground slot; Archived → HashSync,
//! `Reply::Accepted`. Then:
//!
//! 1. the archive sends `Step::MetaSnap(snapFrom)`, its latest snapshot; the storage resets
//!    its log to start at `snapFrom.gidE + 1` or later and sends `Step::Uuid` (its log's new uuid),
//!    which the archive acks;
//! 2. a blocking thread reads the virtual image of `snapFrom` (base + diff chain, never
//!    written anywhere; with direct IO) bulk by bulk (progress: `Query::Progress` and
//!    `Event::Progress{op: "hash-sync"}`) and sends `Step::Hash` of each
//!    ([`walb_kernel::hash::bulk_hash`], seed `time_s`), while the storage streams back a
//!    SORTED wdiff of the bulks that differ (all-zero ones as ALLZERO records), which the
//!    archive writes to a temporary file; at the bulk end it is synced and validated whole,
//!    and acked;
//! 3. `Step::MetaSnap(|gidB,gidE|)` → the wdiff becomes the diff `snapFrom --> |gidB,gidE|`
//!    (dirty; mergeable when snapFrom was dirty, so that a clean snapFrom stays
//!    restorable), the volume takes the new uuid, HashSync → Archived, `Step::Ack`.
//!
//! Any error, disconnect or forced shutdown removes the temporary file and rolls the
//! volume back to Archived with nothing changed.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};
use walb_kernel::block::LBS;
use walb_kernel::diff::merge::DiffMerger;
use walb_kernel::diff::virt::VirtualFullScan;
use walb_kernel::ldev::ReadAt;
use walb_kernel::meta::{MetaDiff, MetaSnap};
use walb_wire::msg::{Message, Step, SyncStart, Uuid};
use walb_wire::{Call, ErrorCode, PeerId, Received, WireError};

use super::full::BackgroundWriter;
use super::restore::open_round;
use super::vol::{diff_path, ArchiveVol};
use super::wdiff::validate_wdiff;
use super::{backend_error, persist_error, Archive};
use crate::dto;
use crate::persist::{self, create_file};
use crate::session::{accept, blocking, refuse};
use crate::state::archive::ArchiveState as A;

/// Name of the operation in progress events (the TUI's hash-backup task).
pub const OP: &str = "hash-sync";

/// Hashes queued between the image reader and the sender.
const HASH_QUEUE: usize = 64;

/// The bulks a hash sync hashes.
#[derive(Debug, Clone, Copy)]
pub(super) struct HashScan {
    /// Image size, logical blocks.
    pub(super) size_lb: u64,
    /// Bulk size, logical blocks.
    pub(super) bulk_lb: u64,
    /// Hash seed.
    pub(super) seed: u64,
}

/// What the hash sync needs from the volume, fixed when it is accepted.
struct Plan {
    snap_from: MetaSnap,
    chain: Vec<MetaDiff>,
}

impl Archive {
    pub(super) async fn receive_hash(
        self: &Arc<Self>,
        peer: PeerId,
        version: u16,
        mut call: Call,
        s: SyncStart,
    ) {
        let admit = || super::admit::hash(&peer, &s, &self.view(&s.vol)?);
        let slot = self
            .admitted_slot(&peer, version, &mut call, &s.vol, "hash-sync", admit)
            .await;
        let accepted = slot.and_then(|((), permit)| {
            let v = self.sync_vol(&s, "hash backup")?;
            let txn = v
                .core
                .begin_exclusive(&[A::Archived], A::HashSync, "hash backup", None)?;
            let plan = {
                let m = v.meta();
                let snap_from = m.latest_snapshot();
                let chain = m
                    .diffs
                    .diffs_to_scan(&m.base, snap_from.gid_b, self.cfg.max_open)
                    .ok_or_else(|| {
                        refuse(
                            ErrorCode::Internal,
                            format!(
                                "volume {}: the latest snapshot {snap_from} cannot be scanned (more than --max-open diffs: apply or merge first)",
                                s.vol
                            ),
                        )
                    })?;
                Plan { snap_from, chain }
            };
            Ok((v, txn, plan, permit))
        });
        let Some((mut call, (vol, txn, plan, permit))) =
            accept(call, &s.vol, "hash backup", accepted).await
        else {
            return;
        };
        info!(%peer, vol = %s.vol, from = %plan.snap_from, diffs = plan.chain.len(), "hash backup started");
        let tmp = persist::tmp_path(&vol.dir.join("hash-sync.wdiff"));
        let res = self.hash_body(&vol, &mut call, &s, &plan, &tmp).await;
        vol.set_progress(0);
        match res {
            Ok(diff) => {
                if let Err(e) = txn.commit(A::Archived) {
                    warn!(vol = %vol.name, "{e}");
                    call.sender.refuse(e.into()).await;
                    return;
                }
                drop(permit);
                info!(%peer, vol = %vol.name, diff = %diff, bytes = diff.data_size, "hash backup received");
                self.publish_diffs(&vol);
                if let Err(e) = call.sender.step(Step::Ack).await {
                    warn!(%peer, vol = %vol.name, "cannot acknowledge the hash backup: {e}");
                }
                let _ = call.sender.finish();
            }
            Err(e) => {
                warn!(%peer, vol = %vol.name, "hash backup failed: {e}");
                let _ = std::fs::remove_file(&tmp);
                drop(txn);
                drop(permit);
                call.receiver.stop();
                call.sender.refuse(e).await;
            }
        }
    }

    async fn hash_body(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        s: &SyncStart,
        plan: &Plan,
        tmp: &Path,
    ) -> Result<MetaDiff, WireError> {
        let wire = |e: walb_wire::Error| e.to_wire();
        call.sender
            .step(Step::MetaSnap(dto::snap_to_dto(plan.snap_from)))
            .await
            .map_err(wire)?;
        let uuid: Uuid = match call.receiver.step().await.map_err(wire)? {
            Step::Uuid(u) => u,
            other => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!("hash backup: expected the volume uuid, got {other:?}"),
                ))
            }
        };
        call.sender.step(Step::Ack).await.map_err(wire)?;

        let bytes = self
            .exchange_hashes(
                vol,
                call,
                &plan.chain,
                &HashScan {
                    size_lb: s.size_lb,
                    bulk_lb: s.bulk_lb,
                    seed: s.time_s,
                },
                tmp,
                OP,
            )
            .await?;
        call.sender.step(Step::Ack).await.map_err(wire)?;

        let snap_e = match call.receiver.step().await.map_err(wire)? {
            Step::MetaSnap(snap) => dto::snap_from_dto(snap)?,
            other => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!("hash backup: expected the end snapshot, got {other:?}"),
                ))
            }
        };
        let diff = MetaDiff::new(plan.snap_from, snap_e)
            .map_err(|e| refuse(ErrorCode::BadRequest, format!("hash backup: {e}")))?
            .with_mergeable(!plan.snap_from.is_clean())
            .with_timestamp(s.time_s)
            .with_data_size(bytes);
        self.commit_temp_diff(vol, tmp, &diff, uuid, OP).await?;
        Ok(diff)
    }

    /// Registers the synced and validated wdiff `tmp` as `diff` of `vol`, which takes the
    /// volume uuid `uuid`: renamed into place, directory synced, metadata saved.
    pub(super) async fn commit_temp_diff(
        &self,
        vol: &Arc<ArchiveVol>,
        tmp: &Path,
        diff: &MetaDiff,
        uuid: Uuid,
        op: &str,
    ) -> Result<(), WireError> {
        let mut meta = vol.meta().clone();
        meta.uuid = uuid;
        meta.diffs
            .add(diff.clone())
            .map_err(|e| refuse(ErrorCode::Internal, format!("{op}: {e}")))?;
        let (dir, t2, dst, m2) = (
            vol.dir.clone(),
            tmp.to_path_buf(),
            diff_path(&vol.dir, diff),
            meta.clone(),
        );
        blocking(move || -> Result<(), WireError> {
            std::fs::rename(&t2, &dst).map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("renaming {}: {e}", t2.display()),
                )
            })?;
            persist::sync_dir(&dir).map_err(persist_error)?;
            m2.save(&dir).map_err(persist_error)
        })
        .await??;
        *vol.meta() = meta;
        Ok(())
    }

    /// The middle of a hash sync (hash backup, hash replication): streams the bulk hashes
    /// of the virtual image of `chain` (seed `seed`) while the peer's SORTED wdiff of the
    /// differing bulks is written to `tmp`; at the bulk end the file is synced and
    /// validated. Returns its size. The caller renames or removes `tmp`.
    pub(super) async fn exchange_hashes(
        self: &Arc<Self>,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        chain: &[MetaDiff],
        job: &HashScan,
        tmp: &Path,
        op: &str,
    ) -> Result<u64, WireError> {
        let wire = |e: walb_wire::Error| e.to_wire();
        // The hashes of the virtual image go out while the differences come in.
        let (tx, mut rx) = mpsc::channel::<[u8; 16]>(HASH_QUEUE);
        let hasher = {
            let (me, v2, chain, job) = (Arc::clone(self), Arc::clone(vol), chain.to_vec(), *job);
            let op = op.to_owned();
            tokio::task::spawn_blocking(move || me.hash_image(&v2, &chain, &job, &tx, &op))
        };
        let f = {
            let t = tmp.to_path_buf();
            blocking(move || create_file(&t)).await?.map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("creating {}: {e}", tmp.display()),
                )
            })?
        };
        let file = Arc::new(f);
        let what = tmp.display().to_string();
        let mut writer =
            BackgroundWriter::new(Arc::clone(&file), what, self.cfg.fsync_bytes, false);
        let Call {
            sender, receiver, ..
        } = call;
        let send_hashes = async {
            while let Some(h) = rx.recv().await {
                sender.step(Step::Hash(h)).await.map_err(wire)?;
            }
            // The queue ends with the reader: its failure (a diff or the base unreadable)
            // ends the session, or the storage would wait for hashes that never come.
            hasher
                .await
                .map_err(|e| refuse(ErrorCode::Internal, format!("image reader failed: {e}")))?
        };
        // The differences of an image are at most the image and their records: a peer
        // that sends more is not sending a diff of this image.
        let diff_max = job
            .size_lb
            .saturating_mul(2 * u64::from(LBS))
            .saturating_add(1 << 20);
        let receive = async {
            let mut off = 0u64;
            loop {
                if self.aborting(vol) {
                    return Err(refuse(
                        ErrorCode::Cancelled,
                        format!("volume {}: {op} aborted (shutdown)", vol.name),
                    ));
                }
                match receiver.next().await.map_err(wire)? {
                    Some(Received::Chunk(data)) => {
                        let n = data.len() as u64;
                        if off.saturating_add(n) > diff_max {
                            return Err(refuse(
                                ErrorCode::TooLarge,
                                format!(
                                    "{op}: the differences pass {diff_max} bytes, twice the image"
                                ),
                            ));
                        }
                        writer.write(off, data).await?;
                        off += n;
                    }
                    Some(Received::End { .. }) => return Ok(()),
                    Some(Received::Msg(Message::Error(e))) => return Err(e),
                    Some(other) => {
                        return Err(refuse(
                            ErrorCode::BadRequest,
                            format!("{op}: unexpected {other:?} inside the diff"),
                        ))
                    }
                    None => {
                        return Err(refuse(
                            ErrorCode::Truncated,
                            format!("{op}: the peer ended the stream inside the diff"),
                        ))
                    }
                }
            }
        };
        // The first failure ends both directions; dropping the hash queue ends the reader.
        tokio::try_join!(send_hashes, receive)?;
        writer.finish().await?;
        let (t2, f2, size_lb) = (tmp.to_path_buf(), Arc::clone(&file), job.size_lb);
        let bytes = blocking(move || -> Result<u64, WireError> {
            f2.sync_all().map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("syncing {}: {e}", t2.display()),
                )
            })?;
            validate_wdiff(&t2, size_lb)?;
            f2.metadata()
                .map(|m| m.len())
                .map_err(|e| refuse(ErrorCode::Internal, format!("sizing {}: {e}", t2.display())))
        })
        .await??;
        Ok(bytes)
    }

    /// Reads the virtual image of the scan chain and queues the hash of every bulk
    /// (blocking).
    fn hash_image(
        &self,
        vol: &ArchiveVol,
        chain: &[MetaDiff],
        job: &HashScan,
        tx: &mpsc::Sender<[u8; 16]>,
        op: &str,
    ) -> Result<(), WireError> {
        let HashScan {
            size_lb,
            bulk_lb,
            seed,
        } = *job;
        let kerr =
            |e: walb_kernel::Error| refuse(ErrorCode::Internal, format!("reading the image: {e}"));
        // Read once, front to back: around the page cache where the file system allows.
        let base = walb_device::dio::DirectReader::from_file(
            self.backend.open_base(&vol.name).map_err(backend_error)?,
        );
        let streams =
            open_round(&vol.dir, chain).map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
        let base_ref: &dyn ReadAt = &base;
        let scan =
            VirtualFullScan::new(Some(base_ref), size_lb, Box::new(DiffMerger::new(streams)))
                .map_err(kerr)?;
        let mut tick = super::Ticker::new(self, vol, op, 0, size_lb);
        let mut rd = super::scan::SeqRead::new(scan);
        let bulk_bytes = (bulk_lb.max(1) * u64::from(LBS)) as usize;
        // The image is read in pieces of several bulks ahead of their hashing.
        crate::bulk::read_ahead(
            [0, size_lb, crate::bulk::piece_lb(bulk_lb)],
            &mut |off, b| rd.read(off, b).map_err(kerr),
            &mut |bytes| tick.add_bytes(bytes),
            &|| self.aborting(vol),
            |mut pieces| {
                while let Some((_, piece)) = pieces.next() {
                    for b in piece.chunks(bulk_bytes) {
                        if tx
                            .blocking_send(walb_kernel::hash::bulk_hash(b, seed))
                            .is_err()
                        {
                            return;
                        }
                    }
                    pieces.recycle(piece);
                }
            },
        )?;
        Ok(())
    }
}
