//! Replication between archives (walb-tools.md §5.6): `replicate` on the source archive
//! (action `ReplSyncAsClient`), the session served by the destination archive.
//!
//! The source opens `Request::Replicate(ReplSync{vol, archive_uuid, do_resync})` on the
//! destination and answers the operator `Reply::Accepted` once the destination accepted
//! (or passes on its refusal). The destination needs a volume in SyncReady or Archived,
//! no running action and a foreground slot, and chooses the kind ([`choose_kind`]):
//! `Full` for a SyncReady volume, `Resync` for an Archived one of another lineage
//! (archive uuid) when the source allows it (refused otherwise), else `HashOrDiff`. It
//! answers `Reply::Accepted` and `Step::ReplKind`. Then:
//!
//! 1. `Full` and `Resync`: the source sends `Step::ReplFull{size_lb, bulk_lb, base,
//!    uuid}`; the destination answers `Step::StartLb(0)`; the source sends its base image
//!    in bulks (all-zero ones as `Step::Zero`, [`crate::bulk`]) and ends the bulk; the
//!    destination writes a new image, syncs it and acks; it then takes the source's base
//!    state, volume uuid and archive uuid, drops every diff it held and commits the image
//!    (crash-safe order: an empty base first, so that an interruption boots SyncReady).
//!    A `Resync` instead compares: the source sends `Step::ReplResync{size_lb, bulk_lb,
//!    base, uuid, hash_seed}`, the destination streams the bulk hashes of its own base
//!    image and the source the sorted wdiff of its base's differing bulks, which the
//!    destination writes into its image (after an empty base state is saved, and the
//!    diffs it held are deleted) before taking the source's base, uuids and archive
//!    uuid; acked. Only what differs travels (walb-tools' resync).
//! 2. Rounds: the destination sends `Step::MetaState` of its latest snapshot; the source
//!    decides ([`plan_round`]): `Done`, or `Diff` followed by `Step::Uuid` (the volume's
//!    uuid), `Step::MetaDiff` and the bytes of one sorted wdiff, the applicable and
//!    mergeable chain from the destination's snapshot merged on the fly (cut at
//!    `merge_size_max` bytes and `--max-wdiff-send-nr` files; one diff per round with
//!    `dont_merge`), then the bulk end. The destination validates and stores it like a
//!    proxy's wdiff, removes the diffs it made redundant, takes the uuid and acks.
//! 3. `Done`: the destination acks and the session ends.
//!
//! The destination is in FullSync (then Archived) during a full replication and in
//! ReplSyncAsServer during rounds and resyncs. Any failure rolls back what was not
//! committed (a partial image is removed; received diffs are kept, they are valid); the
//! source publishes `Event::Failed{op: "replicate"}` and its volume's progress
//! (`Event::Progress{op: "replicate"}`, `Query::Progress`) counts the blocks of a full copy.
//!
//! A destination older than every diff the source holds (the diffs between were applied
//! away) gets a hash round instead of a diff: `Step::ReplDecision(Hash)` and
//! `Step::ReplResync{size_lb, bulk_lb, oldest: the source's first clean snapshot after the
//! destination's, uuid, hash_seed}`; the destination streams the bulk hashes of its
//! virtual image of its latest snapshot while the source streams back a sorted wdiff of
//! the bulks of its own virtual image that differ ([`crate::bulk::compare`]); stored as
//! the compared diff `latest --> oldest` (walb-tools' compDiff), acked; rounds go on.
//!
//! A full copy that breaks (network, source stopped) keeps what was written and synced,
//! with a [`FullReplState`]; the next full copy of the same lineage and base resumes there
//! (`Step::StartLb`), also after a restart of the destination (the kept image is not one
//! of the temporaries a start removes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};
use walb_kernel::block::LBS;
use walb_kernel::diff::convert::ConvertOpt;
use walb_kernel::diff::merge::DiffMerger;
use walb_kernel::diff::virt::VirtualFullScan;
use walb_kernel::ldev::ReadAt;
use walb_kernel::meta::{DiffManager, MergeLimits, MetaDiff, MetaSnap, MetaState, Relation};
use walb_kernel::wdiff::WdiffKind;
use walb_wire::frame::ChunkEncoder;
use walb_wire::msg::{MergeUntil, ReplDecision, ReplKind, ReplSync, ReplicateCommand, Uuid};
use walb_wire::{
    Call, EncodedChunk, ErrorCode, Event, PeerId, Reply, Request, Role, Step, WireError,
};

use super::full::Resume;
use super::hash::HashScan;
use super::restore::open_round;
use super::vol::{ArchiveVol, VolMeta};
use super::wdiff::hex;
use super::{backend_error, blocking, persist_error, remove_diff_files, Archive};
use crate::bulk::{self, compare, Bulk, Compare, ScanIo, HASH_QUEUE, READ_AHEAD};
use crate::dto;
use crate::peers::PeerAddr;
use crate::proxy::bridge::{ChunkWriter, CHANNEL_DEPTH};
use crate::server::{answer, refuse, CallError, Caller};
use crate::state::archive::{action, deny_list, ArchiveState as A, ACTIVE};
use crate::state::VolState;
use crate::vol::Txn;

/// Name of the operation in events.
pub const OP: &str = "replicate";
/// Default bulk size of a full copy: 256 KiB.
pub const DEFAULT_BULK_LB: u64 = 512;
/// Largest bulk: 4 MiB (one chunk).
pub const MAX_BULK_LB: u64 = 8192;
/// Default cut of one round's merged diffs (walb-tools' `maxWdiffMergeSize`): 1 GiB.
pub const DEFAULT_MERGE_MAX: u64 = 1 << 30;
/// How long the destination may take to accept.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks queued between the diff producer and the sender.
const DIFF_QUEUE: usize = 8;

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

/// The kind a destination in `state`, of lineage `mine`, chooses for a source of lineage
/// `theirs` (pure; `Err` is the refusal).
pub fn choose_kind(
    vol: &str,
    state: A,
    mine: &Uuid,
    theirs: &Uuid,
    do_resync: bool,
) -> Result<ReplKind, WireError> {
    match state {
        A::SyncReady => Ok(ReplKind::Full),
        A::Archived if mine != theirs && !do_resync => Err(refuse(
            ErrorCode::DifferentUuid,
            format!(
                "volume {vol}: this archive holds another lineage (archive uuid {} here, {} at the source): replicate with resync to rebuild it",
                hex(mine),
                hex(theirs)
            ),
        )),
        A::Archived if do_resync || mine != theirs => Ok(ReplKind::Resync),
        A::Archived => Ok(ReplKind::HashOrDiff),
        A::Clear => Err(refuse(
            ErrorCode::NotFound,
            format!("volume {vol} does not exist on the destination archive (init-vol first)"),
        )),
        s => Err(refuse(
            ErrorCode::WrongState,
            format!(
                "volume {vol} is {} on the destination: replication needs SyncReady or Archived",
                s.name()
            ),
        )),
    }
}

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

/// One `ts-delta` line (pure).
pub fn ts_delta_line(vol: &str, dest: &str, gid: u64, ts: u64, dest_st: &MetaState) -> String {
    crate::dto::ts_delta_line(
        vol,
        dest,
        "archive",
        "archive",
        gid,
        ts,
        Some((dest_st.snap_b.gid_b, dest_st.timestamp)),
    )
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

fn wire(e: walb_wire::Error) -> WireError {
    e.to_wire()
}

/// The next step of `call`, which must be what `pick` takes; `what` names it.
async fn expect<T>(
    call: &mut Call,
    what: &str,
    pick: impl FnOnce(Step) -> Result<T, Step>,
) -> Result<T, WireError> {
    let step = call.receiver.step().await.map_err(wire)?;
    pick(step).map_err(|other| {
        refuse(
            ErrorCode::BadRequest,
            format!("{OP}: expected {what}, got {other:?}"),
        )
    })
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
    let (size_lb, bulk_lb, to, uuid, seed) = expect(call, what, |s| match s {
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
    // --------------------------------------------------------------------------------
    // Source

    /// `replicate` (see the module documentation): answers once the destination accepted.
    pub(super) async fn replicate(
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
                    me.publish(Event::Progress {
                        vol: v.name.clone(),
                        op: OP.into(),
                        done_lb: 1,
                        total_lb: 1,
                    });
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
        let kind = expect(call, "the replication kind", |s| match s {
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
            let dest = expect(call, "the destination's latest state", |s| match s {
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
                    expect(call, "the final acknowledgement", |s| match s {
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
        let (base, uuid) = {
            let m = v.meta();
            (m.base, m.uuid)
        };
        if base.applying {
            return Err(refuse(
                ErrorCode::WrongState,
                format!(
                    "volume {}: the base is being applied ({}): apply again to finish it before a full replication",
                    v.name,
                    base.snapshots_string()
                ),
            ));
        }
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
        let start_lb = expect(call, "where the copy starts", |s| match s {
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
                let mut tick = super::Ticker::new(&me, &v2, OP, start_lb, size_lb);
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
        expect(call, "an acknowledgement of the image", |s| match s {
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
            crate::proxy::send::produce(paths, uuid, opt, tx, spare)
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
        expect(call, "an acknowledgement of the diff", |s| match s {
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
        let (base, uuid) = {
            let m = v.meta();
            (m.base, m.uuid)
        };
        if base.applying {
            return Err(refuse(
                ErrorCode::WrongState,
                format!(
                    "volume {}: the base is being applied ({}): apply again to finish it before a resync",
                    v.name,
                    base.snapshots_string()
                ),
            ));
        }
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
        expect(call, "an acknowledgement of the hash round", |s| match s {
            Step::Ack => Ok(()),
            o => Err(o),
        })
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
        let mut rd = super::scan::SeqRead::new(scan);
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
    pub fn ts_delta_lines(&self) -> Vec<String> {
        let g = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        g.iter()
            .filter_map(|((vol, dest), st)| {
                let v = self.vol(vol)?;
                let (snap, ts) = {
                    let m = v.meta();
                    (m.latest_snapshot(), m.latest_state().timestamp)
                };
                Some(ts_delta_line(vol, dest, snap.gid_b, ts, st))
            })
            .collect()
    }

    // --------------------------------------------------------------------------------
    // Destination

    /// Serves one replication session (see the module documentation).
    pub(super) async fn receive_repl(
        self: &Arc<Self>,
        peer: PeerId,
        version: u16,
        mut call: Call,
        r: ReplSync,
    ) {
        let admit = || super::admit::repl(&peer, &r, &self.view(&r.vol)?);
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
        let (vol, txn, kind, permit) = match accepted {
            Ok(x) => x,
            Err(e) => {
                info!(%peer, vol = %r.vol, "replication refused: {e}");
                return answer(call, Err(e)).await;
            }
        };
        if let Err(e) = call.reply(Reply::Accepted).await {
            warn!(%peer, vol = %r.vol, "cannot accept the replication: {e}");
            return;
        }
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
            let d = expect(call, "the source's decision", |s| match s {
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
            expect(call, "the full copy's parameters", |s| match s {
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
            self.publish(Event::Progress {
                vol: vol.name.clone(),
                op: OP.into(),
                done_lb: resume.start_lb,
                total_lb: size_lb,
            });
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
            let stream = super::restore::open_diff(&t2)
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            let cfg = me.config();
            let mut w = super::restore::ImageWriter::new(&img, cfg.discard, cfg.fsync_bytes)
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
            super::restore::apply_round(vec![stream], &mut w, None, &mut |_| Ok(())).map_err(
                |e| refuse(ErrorCode::Internal, format!("writing the differences: {e}")),
            )?;
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
        let uuid = expect(call, "the volume uuid", |s| match s {
            Step::Uuid(u) => Ok(u),
            o => Err(o),
        })
        .await?;
        let diff = expect(call, "the diff", |s| match s {
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
    fn the_destination_chooses_full_resync_or_rounds_and_refuses_the_rest() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        assert_eq!(
            choose_kind("v", A::SyncReady, &a, &b, false).unwrap(),
            ReplKind::Full
        );
        assert_eq!(
            choose_kind("v", A::Archived, &a, &a, false).unwrap(),
            ReplKind::HashOrDiff
        );
        assert_eq!(
            choose_kind("v", A::Archived, &a, &a, true).unwrap(),
            ReplKind::Resync
        );
        assert_eq!(
            choose_kind("v", A::Archived, &a, &b, true).unwrap(),
            ReplKind::Resync
        );
        let e = choose_kind("v", A::Archived, &a, &b, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::DifferentUuid);
        assert!(e.message.contains("resync"), "{e}");
        let e = choose_kind("v", A::Clear, &a, &a, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("init-vol"), "{e}");
        for s in [A::Stopped, A::FullSync, A::HashSync, A::WdiffRecv] {
            assert_eq!(
                choose_kind("v", s, &a, &a, false).unwrap_err().code,
                ErrorCode::WrongState
            );
        }
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
