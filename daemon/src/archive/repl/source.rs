//! Replication, the source half: `replicate` (action `ReplSyncAsClient`) opens the
//! session on the destination and sends what the destination's kind and rounds ask for:
//! the base image (full), the differing bulks of the base (resync), merged diffs (rounds,
//! [`plan_round`]) or the differing bulks of a virtual image (hash rounds). It also keeps
//! the replicas' gids for queries ([`Archive::replica_gids`], [`Archive::ts_delta_rows`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::info;
use walb_kernel::block::LBS;
use walb_kernel::diff::convert::ConvertOpt;
use walb_kernel::diff::merge::DiffMerger;
use walb_kernel::diff::virt::VirtualFullScan;
use walb_kernel::ldev::ReadAt;
use walb_kernel::meta::{DiffManager, MergeLimits, MetaDiff, MetaSnap, MetaState};
use walb_kernel::wdiff::WdiffKind;
use walb_wire::frame::ChunkEncoder;
use walb_wire::msg::{
    MergeUntil, ReplDecision, ReplKind, ReplSync, ReplicateCommand, TsDeltaRow, Uuid,
};
use walb_wire::{Call, EncodedChunk, ErrorCode, PeerId, Reply, Request, Role, Step, WireError};

use super::{wire, OP};
use crate::archive::restore::open_round;
use crate::archive::vol::ArchiveVol;
use crate::archive::{backend_error, Archive};
use crate::bulk::{
    self, compare, Bulk, Compare, ScanIo, DEFAULT_BULK_LB, HASH_QUEUE, MAX_BULK_LB, READ_AHEAD,
};
use crate::dto;
use crate::peers::PeerAddr;
use crate::session::{expect, refuse, CallError, Caller, ChunkWriter, CHANNEL_DEPTH};
use crate::state::archive::{action, deny_list, ACTIVE};

/// Default cut of one round's merged diffs (walb-tools' `maxWdiffMergeSize`): 1 GiB.
pub const DEFAULT_MERGE_MAX: u64 = 1 << 30;
/// How long the destination may take to accept.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks queued between the diff producer and the sender.
const DIFF_QUEUE: usize = 8;

/// What the source sends in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundPlan {
    /// The destination has what was asked.
    Done,
    /// Send these diffs merged into one (oldest first).
    Diffs(Vec<MetaDiff>),
    /// The destination's snapshot is older than every diff the source holds: only a hash
    /// replication or a resync can move it.
    Behind {
        /// The destination's latest snapshot.
        dest: MetaSnap,
        /// The source's base.
        base: MetaSnap,
    },
}

/// The source's decision for a destination at `dest` (pure): `Done` once the destination
/// reached `until` (a gid; a size: less than that many MiB of diffs remain) or the
/// source's latest snapshot; else the applicable and mergeable chain from `dest`, cut by
/// `limits`.
pub fn plan_round(
    diffs: &DiffManager,
    base: &MetaState,
    dest: MetaSnap,
    until: MergeUntil,
    limits: &MergeLimits,
) -> RoundPlan {
    let latest = diffs.latest_snapshot(base);
    let chain = diffs.applicable_mergeable(dest, limits);
    if chain.is_empty() {
        return if dest.gid_b >= latest.gid_b {
            RoundPlan::Done
        } else {
            RoundPlan::Behind {
                dest,
                base: base.snap_b,
            }
        };
    }
    match until {
        MergeUntil::Gid(g) if dest.gid_b >= g && dest.is_clean() => RoundPlan::Done,
        MergeUntil::SizeMib(mib) if mib > 0 => {
            let rest: u64 = diffs
                .applicable_chain(dest, walb_kernel::meta::ChainBound::NONE)
                .iter()
                .map(|d| d.data_size)
                .sum();
            if rest < mib.saturating_mul(1 << 20) {
                RoundPlan::Done
            } else {
                RoundPlan::Diffs(chain)
            }
        }
        _ => RoundPlan::Diffs(chain),
    }
}

/// One `ts-delta` row (pure): `vol` here at `gid` (`ts`), the destination at `dest_st`.
pub fn ts_delta_row(vol: &str, dest: &str, gid: u64, ts: u64, dest_st: &MetaState) -> TsDeltaRow {
    TsDeltaRow {
        vol: vol.to_owned(),
        dest: dest.to_owned(),
        kind: Role::Archive,
        dest_kind: Role::Archive,
        gid,
        ts_s: ts,
        dest_snap: Some((dest_st.snap_b.gid_b, dest_st.timestamp)),
        age_s: None,
    }
}

/// The zstd level of a full copy's bulks asked by a `replicate` command.
fn image_level(c: &walb_wire::msg::CompressOpt) -> Result<Option<i32>, WireError> {
    use walb_wire::msg::Codec;
    match c.codec {
        Codec::Zstd => Ok(Some(c.level.clamp(1, 19))),
        Codec::None => Ok(None),
        other => Err(refuse(
            ErrorCode::BadRequest,
            format!("images travel compressed with zstd or not at all, not {other:?}"),
        )),
    }
}

/// The limits of one round for `cmd`, with at most `max_nr` files (`--max-wdiff-send-nr`).
fn round_limits(cmd: &ReplicateCommand, max_nr: usize) -> MergeLimits {
    MergeLimits {
        before_gid: None,
        max_total_size: Some(cmd.merge_size_max.unwrap_or(DEFAULT_MERGE_MAX)),
        max_count: Some(if cmd.dont_merge { 1 } else { max_nr.max(1) }),
    }
}

impl Archive {
    /// `replicate` (see the module documentation): answers once the destination accepted.
    pub(crate) async fn replicate(
        self: &Arc<Self>,
        cmd: ReplicateCommand,
        mut caller: Option<&mut Caller<'_>>,
    ) -> Result<Reply, WireError> {
        let bulk_lb = cmd.bulk_lb.unwrap_or(DEFAULT_BULK_LB);
        if bulk_lb == 0 || bulk_lb > MAX_BULK_LB {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("bulk size {bulk_lb} blocks: it must be 1 to {MAX_BULK_LB} (4 MiB)"),
            ));
        }
        let v = self.vol_for_action(&cmd.vol, "replicate")?;
        let permit = self
            .ctx
            .fg_slot(caller.as_deref_mut(), &cmd.vol, "replicate")
            .await?;
        let guard = v.core.begin_action(
            ACTIVE,
            action::REPL_SYNC_AS_CLIENT,
            deny_list(action::REPL_SYNC_AS_CLIENT),
        )?;
        let archive_uuid = v.meta().archive_uuid;
        let req = Request::Replicate(ReplSync {
            vol: cmd.vol.clone(),
            archive_uuid,
            do_resync: cmd.do_resync,
        });
        let dest = cmd.dest.clone();
        let to = PeerAddr {
            id: PeerId::new(Role::Archive, &cmd.dest_id)
                .map_err(|e| refuse(ErrorCode::BadRequest, format!("destination: {e}")))?,
            addr: dest.clone(),
        };
        let r = self
            .ctx
            .call_first_reply(&to, req, ACCEPT_TIMEOUT, caller)
            .await;
        let call = match r {
            // The destination acknowledges each round once it is validated and durable,
            // which takes longer than a step: the whole session waits that long.
            Ok((mut call, Reply::Accepted)) => {
                call.set_step_timeout(self.ctx.ack_timeout());
                call
            }
            Ok((mut call, other)) => {
                call.sender.reset();
                return Err(refuse(
                    ErrorCode::Internal,
                    format!("the destination archive {dest} answered {other:?}"),
                ));
            }
            Err(CallError::Wire(walb_wire::Error::Remote(e))) => {
                return Err(WireError::new(
                    e.code,
                    format!("the destination archive {dest} refused: {}", e.message),
                ))
            }
            Err(e) => {
                return Err(refuse(
                    ErrorCode::Internal,
                    format!("cannot reach the destination archive {dest}: {e}"),
                ))
            }
        };
        info!(vol = %cmd.vol, %dest, "replication started");
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let mut call = call;
            let t0 = Instant::now();
            let r = me.run_source(&v, &mut call, &cmd, bulk_lb).await;
            v.set_progress(0);
            match r {
                Ok((rounds, dest_state)) => {
                    let _ = call.sender.finish();
                    me.record_replica(&v.name, &cmd.dest, dest_state);
                    info!(
                        vol = %v.name, dest = %cmd.dest, rounds,
                        secs = t0.elapsed().as_secs_f64(),
                        "replication done"
                    );
                    me.publish_progress(&v.name, OP, 1, 1);
                }
                Err(e) => {
                    call.sender.reset();
                    call.receiver.stop();
                    me.op_failed(&v.name, OP, &format!("{OP} to {}: {}", cmd.dest, e.message));
                }
            }
            drop(guard);
            drop(permit);
        });
        Ok(Reply::Accepted)
    }

    /// The source's side after the acceptance; returns the rounds sent and the
    /// destination's last state.
    async fn run_source(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        call: &mut Call,
        cmd: &ReplicateCommand,
        bulk_lb: u64,
    ) -> Result<(u64, MetaState), WireError> {
        let kind = expect(call, OP, "the replication kind", |s| match s {
            Step::ReplKind(k) => Ok(k),
            o => Err(o),
        })
        .await?;
        match kind {
            ReplKind::Full => {
                let level = match &cmd.compress {
                    None => self.cfg.sync_level,
                    Some(c) => image_level(c)?,
                };
                self.send_full(v, call, bulk_lb, kind, level).await?
            }
            ReplKind::Resync => self.send_resync(v, call, bulk_lb).await?,
            ReplKind::HashOrDiff => {}
        }
        let limits = round_limits(cmd, self.cfg.max_wdiff_send_nr);
        let mut rounds = 0u64;
        loop {
            let dest = expect(call, OP, "the destination's latest state", |s| match s {
                Step::MetaState(st) => Ok(st),
                o => Err(o),
            })
            .await?;
            let dest_state = dto::state_from_dto(&dest)?;
            let dest = dest_state.snap_b;
            let (plan, uuid) = {
                let m = v.meta();
                (
                    plan_round(&m.diffs, &m.base, dest, cmd.until, &limits),
                    m.uuid,
                )
            };
            match plan {
                RoundPlan::Done => {
                    call.sender
                        .step(Step::ReplDecision(ReplDecision::Done))
                        .await
                        .map_err(wire)?;
                    expect(call, OP, "the final acknowledgement", |s| match s {
                        Step::Ack => Ok(()),
                        o => Err(o),
                    })
                    .await?;
                    return Ok((rounds, dest_state));
                }
                RoundPlan::Behind { dest, .. } => {
                    self.send_hash(v, call, dest, bulk_lb, uuid).await?;
                    rounds += 1;
                }
                RoundPlan::Diffs(chain) => {
                    self.send_diffs(v, call, &chain, uuid).await?;
                    rounds += 1;
                }
            }
        }
    }

    /// Sends the base image (the `Full`/`Resync` part of the session).
    async fn send_full(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        call: &mut Call,
        bulk_lb: u64,
        kind: ReplKind,
        level: Option<i32>,
    ) -> Result<(), WireError> {
        let (base, uuid) = settled_base(v, "a full replication")?;
        let file = self.backend.open_base(&v.name).map_err(backend_error)?;
        let size_lb = ReadAt::size(&file)
            .map_err(|e| refuse(ErrorCode::Internal, format!("sizing the base image: {e}")))?
            / u64::from(LBS);
        call.sender
            .step(Step::ReplFull {
                size_lb,
                bulk_lb,
                base: dto::state_to_dto(&base),
                uuid,
            })
            .await
            .map_err(wire)?;
        let start_lb = expect(call, OP, "where the copy starts", |s| match s {
            Step::StartLb(lb) => Ok(lb),
            o => Err(o),
        })
        .await?;
        if start_lb > size_lb {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("the destination asked to start at block {start_lb} of {size_lb}"),
            ));
        }
        info!(vol = %v.name, ?kind, size_lb, start_lb, "sending the base image");
        let (tx, rx) = mpsc::channel::<Bulk>(READ_AHEAD);
        let encoder = ChunkEncoder::new(level)
            .map_err(|e| refuse(ErrorCode::Internal, format!("the chunk encoder: {e}")))?;
        let abort = Arc::new(AtomicBool::new(false));
        let reader = {
            let (abort, me, v2) = (Arc::clone(&abort), Arc::clone(self), Arc::clone(v));
            let base = walb_device::dio::DirectReader::from_file(file);
            tokio::task::spawn_blocking(move || {
                let io = ScanIo {
                    tx: &tx,
                    encoder,
                    abort: &abort,
                };
                let mut tick = crate::archive::Ticker::new(&me, &v2, OP, start_lb, size_lb);
                bulk::scan(
                    &mut |off, buf| {
                        base.read_exact_at(buf, off).map_err(|e| {
                            walb_kernel::Error::io(
                                format!("reading the base image at byte {off}"),
                                e,
                            )
                        })
                    },
                    start_lb,
                    size_lb,
                    bulk_lb,
                    io,
                    &mut |bytes| tick.add_bytes(bytes),
                )
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))
            })
        };
        let cancelled = || self.cancel_error(v, "replication");
        bulk::send_bulks(
            rx,
            reader,
            &abort,
            &mut call.sender,
            &cancelled,
            "base image reader",
        )
        .await?;
        expect(call, OP, "an acknowledgement of the image", |s| match s {
            Step::Ack => Ok(()),
            o => Err(o),
        })
        .await
    }

    /// Sends `chain` merged into one sorted wdiff (one round).
    async fn send_diffs(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        call: &mut Call,
        chain: &[MetaDiff],
        uuid: Uuid,
    ) -> Result<(), WireError> {
        let merged = if let [one] = chain {
            one.clone()
        } else {
            MetaDiff::merge_all(chain).map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("the chain does not merge: {e}"),
                )
            })?
        };
        call.sender
            .step(Step::ReplDecision(ReplDecision::Diff))
            .await
            .map_err(wire)?;
        call.sender.step(Step::Uuid(uuid)).await.map_err(wire)?;
        call.sender
            .step(Step::MetaDiff(dto::diff_to_dto(&merged)))
            .await
            .map_err(wire)?;
        let paths: Vec<PathBuf> = chain.iter().map(|d| v.diff_path(d)).collect();
        let (tx, mut rx) = mpsc::channel::<Bytes>(DIFF_QUEUE);
        let opt = ConvertOpt {
            kind: WdiffKind::Sorted,
            ..ConvertOpt::default()
        };
        let producer = tokio::task::spawn_blocking(move || {
            // No buffers come back: the producer allocates its own.
            let (_none, spare) = std::sync::mpsc::sync_channel(1);
            crate::diffsend::produce(paths, uuid, opt, tx, spare)
        });
        // The records are compressed by the diff codec: the chunks go raw (checksummed).
        let mut enc = ChunkEncoder::new(None).map_err(|e| wire(e.into()))?;
        while let Some(data) = rx.recv().await {
            if let Some(e) = self.cancel_error(v, "replication") {
                return Err(e);
            }
            let c = EncodedChunk::encode(&mut enc, data).map_err(wire)?;
            call.sender.chunk_encoded(c).await.map_err(wire)?;
        }
        let bytes = producer
            .await
            .map_err(|e| refuse(ErrorCode::Internal, format!("diff reader: {e}")))?
            .map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("reading the diffs of {}: {e}", v.name),
                )
            })?;
        call.sender.end_bulk().await.map_err(wire)?;
        expect(call, OP, "an acknowledgement of the diff", |s| match s {
            Step::Ack => Ok(()),
            o => Err(o),
        })
        .await?;
        info!(vol = %v.name, diff = %merged, files = chain.len(), bytes, "diff replicated");
        Ok(())
    }

    /// A hash round: the destination at `dest` is older than every diff held here, so
    /// the blocks of the first clean snapshot after it that differ from the destination's
    /// image travel, found by comparing the destination's bulk hashes with this archive's
    /// virtual image of that snapshot.
    async fn send_hash(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        call: &mut Call,
        dest: MetaSnap,
        bulk_lb: u64,
        uuid: Uuid,
    ) -> Result<(), WireError> {
        let (to, chain) = {
            let m = v.meta();
            let point = m
                .diffs
                .restorable(&m.base, true)
                .into_iter()
                .find(|p| p.gid > dest.gid_b)
                .ok_or_else(|| {
                    refuse(
                        ErrorCode::NotFound,
                        format!(
                            "volume {}: no clean snapshot after the destination's {dest} to compare with",
                            v.name
                        ),
                    )
                })?;
            let snap = MetaSnap::new(point.gid, point.gid)
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            let chain = m
                .diffs
                .diffs_to_scan(&m.base, point.gid, self.cfg.max_open)
                .ok_or_else(|| {
                    refuse(
                        ErrorCode::Internal,
                        format!(
                            "volume {}: snapshot {} needs more than --max-open diffs to scan: apply or merge first",
                            v.name, point.gid
                        ),
                    )
                })?;
            (MetaState::new(snap, point.timestamp), chain)
        };
        info!(vol = %v.name, from = %dest, to = %to.snap_b, diffs = chain.len(), "hash round");
        call.sender
            .step(Step::ReplDecision(ReplDecision::Hash))
            .await
            .map_err(wire)?;
        self.send_compared(v, call, &to, chain, bulk_lb, uuid).await
    }

    /// A resync: the destination's base image is compared with this archive's base, and
    /// the differing bulks travel (the destination then takes this base).
    async fn send_resync(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        call: &mut Call,
        bulk_lb: u64,
    ) -> Result<(), WireError> {
        let (base, uuid) = settled_base(v, "a resync")?;
        info!(vol = %v.name, base = %base.snap_b, "resync by hashes of the base image");
        self.send_compared(v, call, &base, Vec::new(), bulk_lb, uuid)
            .await
    }

    /// Sends `Step::ReplResync` for `to` and the differing bulks of this archive's
    /// virtual image of `chain` against the destination's hashes.
    async fn send_compared(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        call: &mut Call,
        to: &MetaState,
        chain: Vec<MetaDiff>,
        bulk_lb: u64,
        uuid: Uuid,
    ) -> Result<(), WireError> {
        let size_lb = self
            .backend
            .base_size_lb(&v.name)
            .map_err(backend_error)?
            .unwrap_or(0);
        // The seed: the low bits of the clock (any value works; a fresh one per round).
        let seed = crate::vol::now_s() as u32;
        call.sender
            .step(Step::ReplResync {
                size_lb,
                bulk_lb,
                oldest: dto::state_to_dto(to),
                uuid,
                hash_seed: seed,
            })
            .await
            .map_err(wire)?;
        let bulks = size_lb.div_ceil(bulk_lb);
        let (htx, hrx) = mpsc::channel::<[u8; 16]>(HASH_QUEUE);
        let (ctx, mut crx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let abort = Arc::new(AtomicBool::new(false));
        let comparer = {
            let (me, v2, abort) = (Arc::clone(self), Arc::clone(v), Arc::clone(&abort));
            let job = Compare {
                size_lb,
                bulk_lb,
                seed: u64::from(seed),
                uuid,
            };
            tokio::task::spawn_blocking(move || {
                me.compare_image(&v2, &chain, &job, hrx, ChunkWriter::new(ctx), &abort)
            })
        };
        let cancelled = || self.cancel_error(v, "replication");
        let exchanged = bulk::hashes_in_diff_out(call, bulks, htx, &mut crx, &cancelled, OP).await;
        if let Err(e) = exchanged {
            abort.store(true, Ordering::Relaxed);
            return Err(e);
        }
        let (differing, bytes) = comparer
            .await
            .map_err(|e| refuse(ErrorCode::Internal, format!("image reader: {e}")))?
            .map_err(|e| refuse(ErrorCode::Internal, format!("comparing {}: {e}", v.name)))?;
        call.sender.end_bulk().await.map_err(wire)?;
        expect(
            call,
            OP,
            "an acknowledgement of the hash round",
            |s| match s {
                Step::Ack => Ok(()),
                o => Err(o),
            },
        )
        .await?;
        info!(vol = %v.name, bulks, differing, bytes, "compared image sent");
        Ok(())
    }

    /// Compares the virtual image of `chain` with the destination's hashes (blocking).
    fn compare_image(
        &self,
        v: &ArchiveVol,
        chain: &[MetaDiff],
        job: &Compare,
        hashes: mpsc::Receiver<[u8; 16]>,
        out: ChunkWriter,
        abort: &AtomicBool,
    ) -> walb_kernel::Result<(u64, u64)> {
        let base = walb_device::dio::DirectReader::from_file(
            self.backend.open_base(&v.name).map_err(|e| {
                walb_kernel::Error::io(
                    "opening the base image",
                    std::io::Error::other(e.to_string()),
                )
            })?,
        );
        let streams = open_round(&v.dir, chain).map_err(|e| {
            walb_kernel::Error::io("opening the diffs", std::io::Error::other(e.to_string()))
        })?;
        let base_ref: &dyn ReadAt = &base;
        let scan = VirtualFullScan::new(
            Some(base_ref),
            job.size_lb,
            Box::new(DiffMerger::new(streams)),
        )?;
        let mut rd = crate::archive::scan::SeqRead::new(scan);
        compare(
            &mut |off, buf| rd.read(off, buf),
            &mut |_| {},
            job,
            hashes,
            out,
            abort,
        )
    }

    /// Records where `dest` stands after a replication of `vol` (for `get ts-delta`).
    fn record_replica(&self, vol: &str, dest: &str, st: MetaState) {
        let mut g = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        g.insert((vol.to_owned(), dest.to_owned()), st);
    }

    /// Per volume, per destination: the gid it was at after the last replication.
    pub fn replica_gids(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let g = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((vol, dest), st) in g.iter() {
            out.entry(vol.clone())
                .or_default()
                .insert(dest.clone(), st.snap_b.gid_b);
        }
        out
    }

    /// `get ts-delta`: per volume and destination replicated to, this archive's latest
    /// snapshot and the destination's as of the last replication (LTSV, walb-tools'
    /// fields; the delta in seconds).
    pub fn ts_delta_rows(&self) -> Vec<TsDeltaRow> {
        let g = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        g.iter()
            .filter_map(|((vol, dest), st)| {
                let v = self.vol(vol)?;
                let (snap, ts) = {
                    let m = v.meta();
                    (m.latest_snapshot(), m.latest_state().timestamp)
                };
                Some(ts_delta_row(vol, dest, snap.gid_b, ts, st))
            })
            .collect()
    }
}

/// The base and uuid of `v` for `what` (a full replication, a resync): refused while an
/// apply into the base is unfinished.
fn settled_base(v: &ArchiveVol, what: &str) -> Result<(MetaState, Uuid), WireError> {
    let (base, uuid) = {
        let m = v.meta();
        (m.base, m.uuid)
    };
    if base.applying {
        return Err(refuse(
            ErrorCode::WrongState,
            format!(
                "volume {}: the base is being applied ({}): apply again to finish it before {what}",
                v.name,
                base.snapshots_string()
            ),
        ));
    }
    Ok((base, uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(diffs: &[MetaDiff]) -> DiffManager {
        DiffManager::from_diffs(diffs.iter().cloned()).unwrap()
    }

    fn d(b: u64, e: u64, size: u64) -> MetaDiff {
        MetaDiff::clean(b, e)
            .unwrap()
            .with_mergeable(true)
            .with_data_size(size)
    }

    fn snap(g: u64) -> MetaSnap {
        MetaSnap::new(g, g).unwrap()
    }

    #[test]
    fn rounds_send_the_chain_from_the_destination_until_it_is_reached() {
        let base = MetaState::new(snap(2), 0);
        let m = mgr(&[d(2, 4, 10), d(4, 6, 10), d(6, 9, 10)]);
        let all = MergeLimits::default();
        let to_latest = MergeUntil::SizeMib(0);
        // From the base: the whole mergeable chain.
        assert_eq!(
            plan_round(&m, &base, snap(2), to_latest, &all),
            RoundPlan::Diffs(vec![d(2, 4, 10), d(4, 6, 10), d(6, 9, 10)])
        );
        // From the middle, and a merged diff that starts before the destination's
        // snapshot still applies.
        assert_eq!(
            plan_round(&m, &base, snap(6), to_latest, &all),
            RoundPlan::Diffs(vec![d(6, 9, 10)])
        );
        let merged = mgr(&[d(2, 9, 30)]);
        assert_eq!(
            plan_round(&merged, &base, snap(6), to_latest, &all),
            RoundPlan::Diffs(vec![d(2, 9, 30)])
        );
        // Reached: the latest, or the gid asked for.
        assert_eq!(
            plan_round(&m, &base, snap(9), to_latest, &all),
            RoundPlan::Done
        );
        assert_eq!(
            plan_round(&m, &base, snap(4), MergeUntil::Gid(4), &all),
            RoundPlan::Done
        );
        assert!(matches!(
            plan_round(&m, &base, snap(4), MergeUntil::Gid(5), &all),
            RoundPlan::Diffs(_)
        ));
        // Limits cut a round; dont-merge sends one diff at a time.
        let one = MergeLimits {
            max_count: Some(1),
            ..MergeLimits::default()
        };
        assert_eq!(
            plan_round(&m, &base, snap(2), to_latest, &one),
            RoundPlan::Diffs(vec![d(2, 4, 10)])
        );
        // Less than the size asked remains: nothing to do.
        assert_eq!(
            plan_round(&m, &base, snap(2), MergeUntil::SizeMib(1), &all),
            RoundPlan::Done
        );
        // Older than every diff held: only a resync (or hash) can move it.
        let applied = mgr(&[d(6, 9, 10)]);
        let base6 = MetaState::new(snap(6), 0);
        assert_eq!(
            plan_round(&applied, &base6, snap(2), to_latest, &all),
            RoundPlan::Behind {
                dest: snap(2),
                base: snap(6)
            }
        );
    }
}
