//! Protocol 2, client side: forwarding queued wdiffs to the archives, and the task
//! dispatcher that runs the sends.
//!
//! One task per (volume, archive) lives in a [`TaskQueue`](crate::task::TaskQueue); the
//! dispatcher runs due tasks on at most `--bg` workers, never two of the same key at
//! once. A task picks a batch ([`super::queue::select_batch`]), asks the archive with
//! `WdiffTransfer`, and streams the bytes: a single diff as its file, several merged
//! on the fly by the kernel into one sorted wdiff compressed as the destination asks
//! ([`crate::diffsend`]). The blocking producer hands chunks to the async call through a
//! channel ([`crate::session::ChunkWriter`]). The archive's answer decides the rest
//! ([`super::queue::react`]): delivered or dropped files are deleted and the next batch
//! goes at once; a retry waits the doubling backoff (`--delay` to `--max-delay`); a send
//! error stops the task until `kick` or `start`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use walb_kernel::compress::Codec;
use walb_kernel::diff::convert::ConvertOpt;
use walb_kernel::meta::MetaDiff;
use walb_kernel::wdiff::{WdiffHeader, WdiffKind};
use walb_kernel::Error as KError;
use walb_wire::frame::ChunkEncoder;
use walb_wire::msg::{ErrorCode, Reply, Request, Step, WdiffTransfer};
use walb_wire::{PeerId, Role};

use super::queue::{cut_at_uuid_change, react, select_batch, BatchLimits, Reaction};
use super::vol::{durable_name, list_diffs, ArchiveInfo, QueuedFile};
use super::{Key, Proxy, ProxyVol};
use crate::dto::diff_to_dto;
use crate::encode::spawn_encoder;
use crate::peers::PeerAddr;
use crate::session::{ack_step, CHANNEL_DEPTH};
use crate::state::proxy::WDIFF_SEND;
use crate::state::StopState;

/// What a task asks for after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Nothing to do until something new is queued or a kick.
    Nothing,
    /// Run again at this instant (or earlier if something else asks).
    At(Instant),
    /// Retry at this instant, not earlier: a new wlog does not cut a backoff short.
    Retry(Instant),
}

/// A batch ready to send.
#[derive(Debug)]
struct Plan {
    files: Vec<QueuedFile>,
    uuid: [u8; 16],
    wait_until: Option<SystemTime>,
}

/// Why a transfer failed.
#[derive(Debug)]
struct Failure {
    /// The archive's code, or what stands for a local or network failure.
    code: ErrorCode,
    /// Whether a queued file itself is broken (retrying cannot help).
    local_corrupt: bool,
    msg: String,
}

impl Failure {
    fn net(msg: String) -> Failure {
        Failure {
            code: ErrorCode::Internal,
            local_corrupt: false,
            msg,
        }
    }

    fn from_wire(e: &walb_wire::Error) -> Failure {
        match e {
            walb_wire::Error::Remote(w) => Failure {
                code: w.code,
                local_corrupt: false,
                msg: w.to_string(),
            },
            other => Failure::net(other.to_string()),
        }
    }

    fn local(e: &KError) -> Failure {
        Failure {
            code: ErrorCode::Internal,
            local_corrupt: e.is_corrupt() || e.is_incomplete(),
            msg: format!("reading the queued diffs: {e}"),
        }
    }
}

/// Reads the uuid in the header of a wdiff file.
fn read_uuid(path: &std::path::Path) -> walb_kernel::Result<[u8; 16]> {
    let mut f = crate::persist::open_durable_or_not(path)
        .map_err(|e| KError::io(format!("opening {}", path.display()), e))?;
    Ok(WdiffHeader::read_from(&mut f)?.0.uuid)
}

/// Lists a queue and picks the next batch (blocking).
fn plan(
    dir: PathBuf,
    limits: BatchLimits,
    delay: Duration,
    now: SystemTime,
) -> Result<Plan, KError> {
    let files = list_diffs(&dir).map_err(|e| KError::io(e.to_string(), e.source))?;
    let q: Vec<(MetaDiff, SystemTime)> = files.iter().map(|f| (f.diff.clone(), f.mtime)).collect();
    let b = select_batch(&q, limits, delay, now);
    let mut uuids = Vec::with_capacity(b.files.len());
    for &i in &b.files {
        uuids.push(read_uuid(&files[i].path)?);
    }
    let n = cut_at_uuid_change(&uuids);
    Ok(Plan {
        uuid: uuids.first().copied().unwrap_or([0; 16]),
        files: b.files[..n].iter().map(|&i| files[i].clone()).collect(),
        wait_until: b.wait_until,
    })
}

/// The begin gid of the first diff of a batch and the end gid of its last (for the logs).
fn plan_gids(files: &[QueuedFile]) -> (u64, u64) {
    let b = files.first().map_or(0, |f| f.diff.snap_b.gid_b);
    let e = files.last().map_or(0, |f| f.diff.snap_e.gid_b);
    (b, e)
}

/// When the dispatcher must look at the queue again by itself: at the earliest due time,
/// unless every worker is busy; then only the end of a run (which wakes it) can let
/// another task start, and waking for a task already due would spin.
fn wake_at(running: usize, workers: usize, next_due: Option<Instant>) -> Option<Instant> {
    if running >= workers {
        None
    } else {
        next_due
    }
}

impl Proxy {
    /// Schedules `key` at `at` unless it is already scheduled (a retry in backoff keeps
    /// its time).
    pub(crate) fn schedule_soft(&self, key: Key, at: Instant) {
        let mut s = self.lock_sched();
        if !s.queue.contains(&key) {
            s.queue.push(key, at);
        }
        drop(s);
        self.wake.notify_one();
    }

    /// Schedules `key` at `at`, replacing its time.
    pub(crate) fn schedule_force(&self, key: Key, at: Instant) {
        self.lock_sched().queue.push_force(key, at);
        self.wake.notify_one();
    }

    /// Runs due send tasks on at most `--bg` workers until shutdown.
    pub(crate) async fn dispatcher(self: Arc<Self>) {
        loop {
            let next = {
                let mut s = self.lock_sched();
                let now = self.ctx.clock.instant();
                while s.running.len() < self.ctx.bg {
                    let Some(k) = s.queue.pop_due(now) else { break };
                    if let Some(again) = s.running.get_mut(&k) {
                        // Running: run once more when it ends.
                        *again = true;
                        continue;
                    }
                    s.running.insert(k.clone(), false);
                    let p = Arc::clone(&self);
                    tokio::spawn(async move { p.run(k).await });
                }
                wake_at(s.running.len(), self.ctx.bg, s.queue.next_due())
            };
            let sleep = match next {
                Some(at) => at,
                None => self.ctx.clock.instant() + Duration::from_secs(3600),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.ctx.clock.sleep_until(sleep) => {}
                _ = self.ctx.shutdown.cancelled() => break,
            }
        }
        debug!("send dispatcher stopped");
    }

    async fn run(self: Arc<Self>, key: Key) {
        let next = self.send_once(&key.0, &key.1).await;
        let mut s = self.lock_sched();
        let again = s.running.remove(&key).unwrap_or(false);
        match next {
            Next::At(at) => s.queue.push(key.clone(), at),
            Next::Retry(at) => s.queue.push_force(key.clone(), at),
            Next::Nothing if again && !s.queue.contains(&key) => {
                s.queue.push(key.clone(), self.ctx.clock.instant())
            }
            Next::Nothing => {}
        }
        drop(s);
        self.wake.notify_one();
        if let Some(v) = self.vol(&key.0) {
            v.queue_changed.notify_waiters();
        }
    }

    /// One attempt to deliver the next batch of (vol, archive).
    async fn send_once(&self, vol: &str, archive: &str) -> Next {
        let Some(v) = self.vol(vol) else {
            return Next::Nothing;
        };
        if !WDIFF_SEND.contains(&v.core.state()) {
            return Next::Nothing;
        }
        let stop = v.core.stop_state();
        if matches!(stop, StopState::Stopping | StopState::ForceStopping) {
            return Next::Nothing;
        }
        let info = {
            let m = v.meta();
            if m.send.get(archive).is_some_and(|s| s.error.is_some()) {
                return Next::Nothing;
            }
            match m.archives.get(archive) {
                Some(i) => i.clone(),
                None => return Next::Nothing,
            }
        };
        let _guard = match v.core.begin_action(WDIFF_SEND, archive, Some(&[archive])) {
            Ok(g) => g,
            Err(e) => {
                debug!(%vol, %archive, "not sending: {e}");
                return Next::Nothing;
            }
        };
        let delay = if stop == StopState::WaitingForEmpty {
            Duration::ZERO
        } else {
            Duration::from_secs(info.delay_s)
        };
        let limits = BatchLimits {
            max_bytes: self.opts.max_wdiff_send_mb.saturating_mul(1 << 20),
            max_files: self.opts.max_wdiff_send_nr,
        };
        let dir = v.dir.queue(archive);
        let now = self.ctx.clock.now();
        let planned = tokio::task::spawn_blocking(move || plan(dir, limits, delay, now)).await;
        let plan = match planned {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return self.after(&v, archive, &[], Err(Failure::local(&e))).await,
            Err(e) => {
                return self
                    .after(
                        &v,
                        archive,
                        &[],
                        Err(Failure::net(format!("planner thread: {e}"))),
                    )
                    .await
            }
        };
        if plan.files.is_empty() {
            return match plan.wait_until {
                Some(t) => {
                    let d = t
                        .duration_since(self.ctx.clock.now())
                        .unwrap_or(Duration::ZERO);
                    Next::At(self.ctx.clock.instant() + d)
                }
                None => Next::Nothing,
            };
        }
        let gids = plan_gids(&plan.files);
        info!(
            %vol, %archive, files = plan.files.len(), gid_b = gids.0, gid_e = gids.1,
            "wdiff send started"
        );
        let t0 = Instant::now();
        let res = tokio::select! {
            r = self.transfer(&v, archive, &info, &plan) => r,
            () = self.until_forced(&v) => Err(Failure {
                code: ErrorCode::Cancelled,
                local_corrupt: false,
                msg: "force stop".into(),
            }),
        };
        let res = res.map(|()| t0.elapsed());
        self.after(&v, archive, &plan.files, res).await
    }

    /// Applies the reaction to a transfer's outcome; returns when to run again.
    async fn after(
        &self,
        v: &ProxyVol,
        archive: &str,
        files: &[QueuedFile],
        res: Result<Duration, Failure>,
    ) -> Next {
        let (since, rto) = (
            self.ctx
                .clock
                .instant()
                .saturating_duration_since(v.meta().last_wlog),
            Duration::from_secs(self.opts.retry_timeout),
        );
        let reaction = match &res {
            Ok(_) => Reaction::Delivered,
            Err(f) if f.local_corrupt => Reaction::GiveUp,
            Err(f) => react(Some(f.code), since, rto),
        };
        let names = || {
            files
                .iter()
                .filter_map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match (&reaction, &res) {
            (Reaction::Delivered, r) => {
                let ms = r.as_ref().map_or(0, |d| d.as_millis() as u64);
                let (gid_b, gid_e) = plan_gids(files);
                info!(vol = %v.name, %archive, files = files.len(), gid_b, gid_e, ms, "delivered: {}", names())
            }
            (_, Err(f)) => {
                warn!(vol = %v.name, %archive, ?reaction, "sending {} failed: {}", names(), f.msg)
            }
            _ => {}
        }
        if matches!(reaction, Reaction::Delivered | Reaction::Drop) {
            let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
            // Without the directory's fsync: a delete lost in a crash only costs a resend,
            // which the archive refuses as too old, and the next batch need not wait.
            let deleted = tokio::task::spawn_blocking(move || {
                // A diff sent while not yet durable may have been renamed to its
                // durable name meanwhile: both names go.
                paths
                    .iter()
                    .flat_map(|p| [p.clone(), durable_name(p)])
                    .map(|p| match std::fs::remove_file(&p) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            Err(format!("removing {}: {e}", p.display()))
                        }
                        _ => Ok(()),
                    })
                    .collect::<Result<Vec<()>, _>>()
            })
            .await;
            match deleted {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(vol = %v.name, %archive, "cannot delete a sent diff: {e}"),
                Err(e) => warn!(vol = %v.name, %archive, "cannot delete the sent diffs: {e}"),
            }
        }
        let mut m = v.meta();
        let Some(s) = m.send.get_mut(archive) else {
            return Next::Nothing;
        };
        match reaction {
            Reaction::Delivered | Reaction::Drop => {
                s.backoff.reset();
                s.last_failure = None;
                Next::At(self.ctx.clock.instant())
            }
            Reaction::GiveUp => {
                let msg = res.err().map_or_else(String::new, |f| f.msg);
                s.error = Some(msg);
                Next::Nothing
            }
            Reaction::Retry => {
                s.last_failure = res.err().map(|f| f.msg);
                Next::Retry(self.ctx.clock.instant() + s.backoff.next_delay())
            }
        }
    }

    /// Asks the archive and streams one batch: the archive's acceptance, the bytes of
    /// the batch (one file, or the merge of all), the archive's acknowledgement.
    async fn transfer(
        &self,
        v: &ProxyVol,
        archive: &str,
        info: &ArchiveInfo,
        plan: &Plan,
    ) -> Result<(), Failure> {
        let mut call = self.open_transfer(v, archive, info, plan).await?;
        self.stream_batch(v, &mut call, info, plan).await?;
        call.sender
            .end_bulk()
            .await
            .map_err(|e| Failure::from_wire(&e))?;
        // The archive acknowledges once the diff is validated and durable.
        let never = std::future::pending::<std::convert::Infallible>();
        let r = ack_step(&self.ctx, &mut call, never)
            .await
            .unwrap_or_else(|n| match n {});
        let _ = call.sender.finish();
        match r {
            Ok(Step::Ack) => Ok(()),
            Ok(other) => Err(Failure::net(format!(
                "archive answered {other:?} instead of an acknowledgement"
            ))),
            Err(e) => Err(Failure::from_wire(&e)),
        }
    }

    /// Opens the `WdiffTransfer` of a batch (its diffs merged into one) on the archive
    /// and waits for its acceptance.
    async fn open_transfer(
        &self,
        v: &ProxyVol,
        archive: &str,
        info: &ArchiveInfo,
        plan: &Plan,
    ) -> Result<walb_wire::Call, Failure> {
        let diffs: Vec<MetaDiff> = plan.files.iter().map(|f| f.diff.clone()).collect();
        let diff = if let [one] = &diffs[..] {
            one.clone()
        } else {
            MetaDiff::merge_all(&diffs).map_err(|e| Failure {
                code: ErrorCode::Internal,
                local_corrupt: true,
                msg: format!("the batch does not merge: {e}"),
            })?
        };
        let size_lb = v.meta().size_lb;
        let peer = self
            .ctx
            .connect(&PeerAddr {
                id: PeerId::new(Role::Archive, archive).map_err(|e| Failure {
                    code: ErrorCode::BadRequest,
                    local_corrupt: false,
                    msg: format!("archive-info {archive}: {e}"),
                })?,
                addr: info.addr.clone(),
            })
            .await
            .map_err(|e| Failure::net(format!("archive {archive} at {}: {e:#}", info.addr)))?;
        let req = WdiffTransfer {
            vol: v.name.clone(),
            uuid: plan.uuid,
            size_lb,
            diff: diff_to_dto(&diff),
        };
        let mut call = peer
            .call(Request::WdiffTransfer(req))
            .await
            .map_err(|e| Failure::from_wire(&e))?;
        match call.receiver.reply().await {
            Ok(Reply::Accepted) => Ok(call),
            Ok(other) => Err(Failure::net(format!("archive answered {other:?}"))),
            Err(e) => Err(Failure::from_wire(&e)),
        }
    }

    /// Streams the bytes of a batch: a producer thread ([`crate::diffsend::produce`]), an
    /// encoder task, and the chunks sent here. A failure resets the call (or refuses it
    /// when the queue cannot be read).
    async fn stream_batch(
        &self,
        v: &ProxyVol,
        call: &mut walb_wire::Call,
        info: &ArchiveInfo,
        plan: &Plan,
    ) -> Result<(), Failure> {
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<BytesMut>(CHANNEL_DEPTH + 2);
        let paths: Vec<PathBuf> = plan.files.iter().map(|f| f.path.clone()).collect();
        let opt = ConvertOpt {
            kind: WdiffKind::Sorted,
            compress: info.compress,
            threads: info.ncpu as usize,
            ..ConvertOpt::default()
        };
        let uuid = plan.uuid;
        // Records compressed by the diff codec gain nothing from the transport's zstd:
        // those chunks go raw (still checksummed).
        let enc = if opt.compress.codec == Codec::None {
            call.sender.encoder()
        } else {
            ChunkEncoder::new(None).map_err(walb_wire::Error::from)
        }
        .map_err(|e| Failure::from_wire(&e))?;
        let producer = tokio::task::spawn_blocking(move || {
            crate::diffsend::produce(paths, uuid, opt, tx, back_rx)
        });
        let (mut erx, encoder) = spawn_encoder(rx, back_tx, enc, CHANNEL_DEPTH);
        let mut failed: Option<Failure> = None;
        while let Some(c) = erx.recv().await {
            if self.is_forced(v) {
                failed = Some(Failure {
                    code: ErrorCode::Cancelled,
                    local_corrupt: false,
                    msg: "force stop".into(),
                });
                break;
            }
            if let Err(e) = call.sender.chunk_encoded(c).await {
                failed = Some(Failure::from_wire(&e));
                break;
            }
        }
        drop(erx);
        if failed.is_none() {
            match encoder.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = Some(Failure::from_wire(&e)),
                Err(e) => failed = Some(Failure::net(format!("chunk encoder: {e}"))),
            }
        }
        let produced = producer.await;
        if let Some(f) = failed {
            call.sender.reset();
            return Err(f);
        }
        match produced {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                call.sender
                    .refuse(walb_wire::msg::WireError::new(
                        ErrorCode::Cancelled,
                        format!("proxy cannot read its queue: {e}"),
                    ))
                    .await;
                Err(Failure::local(&e))
            }
            Err(e) => {
                call.sender.reset();
                Err(Failure::net(format!("producer thread: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatcher_waits_for_a_free_worker_not_for_due_tasks() {
        let due = Instant::now() - Duration::from_secs(1);
        // All workers busy: a due task must not wake the dispatcher (it would spin).
        assert_eq!(wake_at(1, 1, Some(due)), None);
        assert_eq!(wake_at(3, 2, Some(due)), None);
        // A free worker: wake at the due time.
        assert_eq!(wake_at(0, 1, Some(due)), Some(due));
        assert_eq!(wake_at(1, 2, None), None);
    }
}
