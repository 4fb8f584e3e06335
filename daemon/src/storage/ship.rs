//! The wlog-transfer client (Protocol 1, walb-tools.md §5.2) and the proxy list.
//!
//! One [`step`] of a Target volume: free the logs already acknowledged, plan a transfer
//! ([`Snaps::plan`](super::snap::Snaps::plan)), open `WlogTransfer` on the first
//! available proxy (in `--proxy` order) that accepts, stream the packs of
//! `[done, limit)` exactly as they are on the log device (header block, then data blocks)
//! as chunks of at most 4 MiB, end the bulk, send the `MetaDiff`, and wait for the
//! proxy's `Ack`. Only then is the done record advanced (persisted) and the log freed up
//! to it. Any failure before the ack leaves the done record and the log as they were; the
//! call is reset so the proxy keeps nothing.
//!
//! [`Proxies`] tracks which proxies answer: each is checked with a handshake (which
//! proves a live walb daemon with a proxy certificate) every `proxy_check_interval` while
//! it is unavailable (and once at start); a proxy whose connection breaks or that does not
//! answer within 3 s during a transfer is marked unavailable and its connection dropped;
//! `kick` checks them now.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use walb_device::LsidSet;
use walb_kernel::ldev::SuperBlock;
use walb_kernel::logpack::{LogPack, LogPackHeader};
use walb_kernel::Location;
use walb_wire::msg::{Event, Reply, Request, Step, WireError, WlogTransfer};
use walb_wire::Call;

use crate::encode::spawn_encoder;
use crate::peers::PeerAddr;
use crate::session::ack_step;

use crate::dto::diff_to_dto;

use super::snap::{self, Plan, SnapError};
use super::{vol, Device, Storage, Vol};

/// Largest bulk chunk sent.
pub(crate) const CHUNK: usize = 4 << 20;
/// Chunks read ahead of the sender.
const READ_AHEAD: usize = 4;
/// How long a proxy may take to accept or refuse a transfer.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting to a proxy may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a heartbeat may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an explicit snapshot whose logs are not yet permanent looks again.
const SNAPSHOT_PERMANENT_POLL: Duration = Duration::from_millis(10);

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing to do until new logs or a snapshot.
    Idle,
    /// Run again after this long.
    After(Duration),
}

/// Why a transfer step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShipError {
    /// A refusal, device or metadata failure, already worded.
    #[error("{0}")]
    Wire(WireError),
    /// The device failed.
    #[error("device: {0}")]
    Device(#[from] walb_kernel::Error),
    /// Snapshot records refused.
    #[error("{0}")]
    Snap(#[from] SnapError),
    /// The metadata could not be written.
    #[error("{0}")]
    Meta(#[from] vol::MetaError),
    /// The transport failed.
    #[error("{0}")]
    Transport(#[from] walb_wire::Error),
    /// No proxy took the transfer.
    #[error("no proxy accepted the transfer: {0}")]
    NoProxy(String),
    /// Force stop or shutdown.
    #[error("aborted by a forced stop")]
    Aborted,
    /// The log is not what the records expect.
    #[error("{0}")]
    Inconsistent(String),
}

impl From<WireError> for ShipError {
    fn from(e: WireError) -> Self {
        ShipError::Wire(e)
    }
}

#[derive(Debug, Clone)]
struct ProxyInfo {
    addr: PeerAddr,
    available: bool,
    checked: Option<Instant>,
}

/// The proxies in priority order and whether each answers.
#[derive(Debug)]
pub(crate) struct Proxies {
    list: Mutex<Vec<ProxyInfo>>,
}

impl Proxies {
    pub(crate) fn new(addrs: &[PeerAddr]) -> Proxies {
        Proxies {
            list: Mutex::new(
                addrs
                    .iter()
                    .map(|a| ProxyInfo {
                        addr: a.clone(),
                        available: true,
                        checked: None,
                    })
                    .collect(),
            ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ProxyInfo>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Available proxies in priority order; all of them when none is known available.
    pub(crate) fn candidates(&self) -> Vec<PeerAddr> {
        let l = self.lock();
        let av: Vec<PeerAddr> = l
            .iter()
            .filter(|p| p.available)
            .map(|p| p.addr.clone())
            .collect();
        if av.is_empty() {
            l.iter().map(|p| p.addr.clone()).collect()
        } else {
            av
        }
    }

    /// Records whether `addr` answered a check or a connection at `now`.
    fn set(&self, addr: &PeerAddr, available: bool, now: Instant) {
        for p in self.lock().iter_mut().filter(|p| p.addr == *addr) {
            p.available = available;
            p.checked = Some(now);
        }
    }

    /// Makes every proxy due for a check.
    pub(crate) fn kick(&self) {
        for p in self.lock().iter_mut() {
            p.checked = None;
        }
    }

    /// The proxies and whether each answered its last check, for the status.
    pub(crate) fn links(&self) -> Vec<walb_wire::msg::ProxyLink> {
        self.lock()
            .iter()
            .map(|p| walb_wire::msg::ProxyLink {
                addr: p.addr.to_string(),
                available: p.available,
            })
            .collect()
    }

    /// Proxies whose last check is older than `every` at `now` (unavailable ones, or
    /// never checked).
    fn due(&self, every: Duration, now: Instant) -> Vec<PeerAddr> {
        self.lock()
            .iter()
            .filter(|p| match p.checked {
                None => true,
                Some(t) => !p.available && now.duration_since(t) >= every,
            })
            .map(|p| p.addr.clone())
            .collect()
    }
}

impl Storage {
    /// Checks due proxies every second (walb-tools' proxy monitor).
    pub(crate) async fn check_proxies(self: Arc<Self>) {
        loop {
            for addr in self
                .proxies
                .due(self.cfg.proxy_check_interval, self.ctx.clock.instant())
            {
                let ok = self.check_proxy(&addr).await;
                if !ok {
                    debug!(proxy = %addr, "proxy unavailable");
                }
                self.proxies.set(&addr, ok, self.ctx.clock.instant());
            }
            tokio::select! {
                _ = self.ctx.clock.sleep(Duration::from_secs(1)) => {}
                _ = self.ctx.shutdown.cancelled() => return,
            }
        }
    }

    /// A proxy is available when a handshake with it succeeds: the negotiation proves a
    /// live walb daemon, and [`Ctx::connect`] checks that its certificate carries the
    /// proxy's id. (Storages may not send queries to proxies; the handshake is the
    /// heartbeat.)
    async fn check_proxy(&self, addr: &PeerAddr) -> bool {
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, self.ctx.connect(addr)).await,
            Ok(Ok(_))
        )
    }

    fn force_abort(&self, vol: &Vol) -> bool {
        vol.core.stop_state().is_force() || self.ctx.is_force_shutdown()
    }

    /// Opens a transfer on the first proxy that accepts it.
    async fn open_transfer(&self, req: &WlogTransfer) -> Result<(PeerAddr, Call), ShipError> {
        let mut why = Vec::new();
        for addr in self.proxies.candidates() {
            let peer = match tokio::time::timeout(CONNECT_TIMEOUT, self.ctx.connect(&addr)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    self.proxies.set(&addr, false, self.ctx.clock.instant());
                    why.push(format!("{addr}: {e:#}"));
                    continue;
                }
                Err(_) => {
                    self.proxies.set(&addr, false, self.ctx.clock.instant());
                    why.push(format!("{addr}: connection timed out"));
                    continue;
                }
            };
            let r = tokio::time::timeout(ACCEPT_TIMEOUT, async {
                let mut call = peer.call(Request::WlogTransfer(req.clone())).await?;
                let reply = call.receiver.reply().await?;
                Ok::<_, walb_wire::Error>((call, reply))
            })
            .await;
            match r {
                Ok(Ok((call, Reply::Accepted))) => return Ok((addr, call)),
                Ok(Ok((mut call, other))) => {
                    call.sender.reset();
                    why.push(format!("{addr}: unexpected reply {other:?}"));
                }
                // A refusal (stopped, busy, disk short) comes from a live proxy: try the
                // next one this time, keep this one available.
                Ok(Err(walb_wire::Error::Remote(e))) => why.push(format!("{addr}: {e}")),
                Ok(Err(e)) => {
                    // The connection is broken (the proxy died or restarted): drop it so
                    // the next attempt dials afresh, and let the monitor re-check it.
                    peer.close();
                    self.proxies.set(&addr, false, self.ctx.clock.instant());
                    why.push(format!("{addr}: {e}"));
                }
                Err(_) => {
                    peer.close();
                    self.proxies.set(&addr, false, self.ctx.clock.instant());
                    why.push(format!("{addr}: no answer within {ACCEPT_TIMEOUT:?}"));
                }
            }
        }
        Err(ShipError::NoProxy(why.join("; ")))
    }
}

/// A transfer ready to go.
struct Prep {
    plan: Plan,
    dev: Device,
    ldev: File,
    sb: SuperBlock,
    req: WlogTransfer,
    max_pb: u64,
}

enum Prepared {
    Done(Next),
    Go(Box<Prep>),
}

/// One run of the worker for a Target (or full-syncing) volume.
pub(crate) async fn step(st: &Arc<Storage>, vol: &Arc<Vol>) -> Result<Next, ShipError> {
    let (s2, v2) = (Arc::clone(st), Arc::clone(vol));
    let prep = match crate::session::blocking(move || prepare(&s2, &v2)).await?? {
        Prepared::Done(next) => return Ok(next),
        Prepared::Go(p) => p,
    };
    let plan = prep.plan;
    let (addr, mut call) = st.open_transfer(&prep.req).await?;
    info!(
        vol = %vol.name, proxy = %addr,
        gid_b = plan.rec_b.gid, gid_e = plan.rec_e.gid,
        lsid_b = plan.rec_b.lsid, limit = plan.lsid_limit,
        "wlog transfer started"
    );
    let dev = Arc::clone(&prep.dev);
    let (lsid_e, diff) = match send(st, vol, &mut call, *prep).await {
        Ok(l) => l,
        Err(e) => {
            call.sender.reset();
            call.receiver.stop();
            return Err(e);
        }
    };
    let _ = call.sender.finish();
    info!(
        vol = %vol.name, proxy = %addr,
        gid_b = plan.rec_b.gid, gid_e = diff.snap_e.gid_b, lsid_b = plan.rec_b.lsid, lsid_e,
        "wlog transfer acknowledged"
    );
    let (s2, v2) = (Arc::clone(st), Arc::clone(vol));
    crate::session::blocking(move || finish(&s2, &v2, &dev, &plan, lsid_e)).await?
}

fn prepare(st: &Storage, vol: &Vol) -> Result<Prepared, ShipError> {
    // The device work that needs no record is done without the metadata lock (only this
    // worker, holding the WlogSend action, moves the done record).
    let (path, done, uuid) = match vol.meta().as_ref() {
        Some(m) => (m.wdev_path.clone(), m.snaps.done, m.uuid),
        None => return Err(vol.no_meta().into()),
    };
    let dev = st.open_dev(vol, &path)?;
    let info = dev.info()?;
    let max_pb = snap::max_wlog_send_pb(st.cfg.max_wlog_send_mb, info.pbs);
    let reset_outside = |what: String| {
        ShipError::Inconsistent(format!(
            "volume {}: {what}: the log of {path} was reset outside walb; {}",
            vol.name,
            snap::OVERFLOW_RECOVERY
        ))
    };
    if snap::is_valid(&done) {
        let l = dev.lsids()?;
        if l.latest < done.lsid {
            return Err(reset_outside(format!(
                "the log ends at lsid {} before the done record's {}",
                l.latest, done.lsid
            )));
        }
        free_logs(&*dev, done.lsid)?;
    }
    // Planning reads the lsids under the lock, so that a concurrent snapshot command
    // (which also does) never sees them go backwards.
    let mut g = vol.meta();
    let Some(meta) = g.as_mut() else {
        return Err(vol.no_meta().into());
    };
    let lsids = dev.lsids()?;
    let pbs = info.pbs;
    let max_mb = st.cfg.max_wlog_send_mb;
    if !meta.snaps.transfer_needed(lsids.permanent) {
        let left = snap::remaining_mb(meta.snaps.done.lsid, lsids.latest, pbs);
        return Ok(Prepared::Done(if left > 0 {
            Next::After(Duration::from_millis(snap::wait_delay_ms(left, max_mb)))
        } else {
            Next::Idle
        }));
    }
    let mut snaps = meta.snaps.clone();
    let plan = snaps.plan(
        lsids.latest,
        lsids.permanent,
        st.ctx.clock.now_s(),
        st.cfg.snapshot_interval_s,
        max_pb,
        false,
    )?;
    if snaps.queue != meta.snaps.queue {
        vol::save_queue(&vol.dir, &snaps)?;
        meta.snaps = snaps;
    }
    drop(g);
    if plan.later {
        // An explicit snapshot waits only for its logs to become permanent (the next
        // flush); logs alone wait to be shipped in bulk.
        let delay = if plan.rec_e.mergeable {
            let left = snap::remaining_mb(plan.rec_b.lsid, lsids.latest, pbs);
            Duration::from_millis(snap::wait_delay_ms(left, max_mb))
        } else {
            SNAPSHOT_PERMANENT_POLL
        };
        return Ok(Prepared::Done(Next::After(delay)));
    }
    let ldev = dev.open_ldev()?;
    let sb = SuperBlock::read(&ldev)?;
    if sb.uuid != uuid {
        return Err(reset_outside(format!(
            "the log has uuid {}, the volume {}",
            walb_kernel::wlog::uuid_hex(&sb.uuid),
            walb_kernel::wlog::uuid_hex(&uuid)
        )));
    }
    let req = WlogTransfer {
        vol: vol.name.clone(),
        uuid,
        pbs: sb.pbs.get(),
        salt: sb.salt,
        size_lb: info.size_lb,
        log_size_pb: plan.lsid_limit - plan.rec_b.lsid,
    };
    Ok(Prepared::Go(Box::new(Prep {
        plan,
        dev,
        ldev,
        sb,
        req,
        max_pb,
    })))
}

/// Streams the packs, the end of the bulk and the diff; returns the end lsid and the diff
/// once the proxy acknowledged.
async fn send(
    st: &Arc<Storage>,
    vol: &Arc<Vol>,
    call: &mut Call,
    prep: Prep,
) -> Result<(u64, walb_kernel::meta::MetaDiff), ShipError> {
    let Prep {
        plan,
        ldev,
        sb,
        max_pb,
        ..
    } = prep;
    let (tx, rx) = mpsc::channel::<Bytes>(READ_AHEAD);
    // Buffers the transport is done with go back to the reader.
    let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<BytesMut>(READ_AHEAD + 2);
    let abort = Arc::new(AtomicBool::new(false));
    let abort2 = Arc::clone(&abort);
    let (start, limit) = (plan.rec_b.lsid, plan.lsid_limit);
    let reader = tokio::task::spawn_blocking(move || {
        let out = RangeOut {
            tx: &tx,
            spare: &back_rx,
            abort: &abort2,
        };
        read_range(&ldev, &sb, start, limit, max_pb, out)
    });
    // A second thread encodes (checksum, compression) what the reader read, so that
    // reading, encoding and sending overlap.
    let (mut erx, encoder) = spawn_encoder(rx, back_tx, call.sender.encoder()?, READ_AHEAD);
    let r = async {
        while let Some(c) = erx.recv().await {
            if st.force_abort(vol) {
                return Err(ShipError::Aborted);
            }
            call.sender.chunk_encoded(c).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        abort.store(true, Ordering::Relaxed);
        drop(erx);
        return Err(e);
    }
    encoder
        .await
        .map_err(|e| ShipError::Inconsistent(format!("log encoder failed: {e}")))??;
    let lsid_e = reader
        .await
        .map_err(|e| ShipError::Inconsistent(format!("log reader failed: {e}")))??;
    call.sender.end_bulk().await?;
    let diff = snap::transfer_diff(&plan.rec_b, &plan.rec_e, lsid_e)?;
    call.sender.step(Step::MetaDiff(diff_to_dto(&diff))).await?;
    // The proxy acknowledges once the diff is durable in every archive queue.
    let ack = ack_step(&st.ctx, call, st.forced(vol))
        .await
        .map_err(|()| ShipError::Aborted)??;
    match ack {
        Step::Ack => Ok((lsid_e, diff)),
        other => Err(ShipError::Transport(walb_wire::Error::Unexpected(format!(
            "expected the ack of the wlog transfer, got {other:?}"
        )))),
    }
}

/// Fills `buf` with the blocks of the ring from `lsid` on, raw.
fn read_blocks_into(
    f: &File,
    sb: &SuperBlock,
    lsid: u64,
    buf: &mut [u8],
) -> walb_kernel::Result<()> {
    use walb_kernel::error::IoContext;
    let pbs = u64::from(sb.pbs.get());
    let n = buf.len() as u64 / pbs;
    let mut done = 0u64;
    while done < n {
        let l = lsid + done;
        let pos = l % sb.ring_buffer_size;
        let run = (sb.ring_buffer_size - pos).min(n - done);
        let off = sb.offset_of_lsid(l);
        let (s, e) = ((done * pbs) as usize, ((done + run) * pbs) as usize);
        f.read_exact_at(&mut buf[s..e], off)
            .ctx(|| format!("reading lsid {l} at byte {off} of the log device"))?;
        done += run;
    }
    Ok(())
}

/// Reads `n` blocks of the ring from `lsid` on into a buffer (a spare one if any).
fn read_window(
    f: &File,
    sb: &SuperBlock,
    lsid: u64,
    n: u64,
    spare: &std::sync::mpsc::Receiver<BytesMut>,
) -> walb_kernel::Result<Bytes> {
    let mut buf = spare.try_recv().unwrap_or_default();
    // A spare buffer has the window's length already: no zeroing.
    buf.resize((n * u64::from(sb.pbs.get())) as usize, 0);
    read_blocks_into(f, sb, lsid, &mut buf)?;
    Ok(buf.freeze())
}

/// Where [`read_range`] sends its chunks and gets buffers back.
pub(crate) struct RangeOut<'a> {
    /// Chunks to send.
    pub tx: &'a mpsc::Sender<Bytes>,
    /// Buffers sent and done with.
    pub spare: &'a std::sync::mpsc::Receiver<BytesMut>,
    /// Set when the sender gave up.
    pub abort: &'a AtomicBool,
}

/// Reads the packs of `[start, limit)` (stopping before a pack that would end after
/// `limit`), verifies every checksum, and sends their raw blocks as chunks of at most
/// [`CHUNK`] bytes; returns the lsid after the last pack sent.
///
/// The ring is read in windows of [`CHUNK`] bytes; the whole packs of a window are sent
/// as one chunk straight from the buffer they were read into, and a pack that runs past
/// the window starts the next one (a pack larger than a window is read alone and sent in
/// several chunks).
pub(crate) fn read_range(
    f: &File,
    sb: &SuperBlock,
    start: u64,
    limit: u64,
    max_pb: u64,
    out: RangeOut<'_>,
) -> Result<u64, ShipError> {
    if limit.saturating_sub(start) > sb.ring_buffer_size {
        return Err(ShipError::Inconsistent(format!(
            "lsid range [{start}, {limit}) is longer than the ring ({} blocks)",
            sb.ring_buffer_size
        )));
    }
    let pbs = u64::from(sb.pbs.get());
    let window_pb = (CHUNK as u64 / pbs).max(1);
    let send = |b: Bytes| out.tx.blocking_send(b).map_err(|_| ShipError::Aborted);
    let mut lsid = start;
    'windows: while lsid < limit {
        if out.abort.load(Ordering::Relaxed) {
            return Err(ShipError::Aborted);
        }
        let n = window_pb.min(limit - lsid);
        let win = read_window(f, sb, lsid, n, out.spare)?;
        // Blocks of whole packs at the start of the window.
        let mut used = 0u64;
        while used < n {
            let at = lsid + used;
            let hb = &win[(used * pbs) as usize..((used + 1) * pbs) as usize];
            let header = LogPackHeader::parse(hb, sb.pbs, sb.salt, Some(at))?;
            if header.n_records() == 0 {
                return Err(walb_kernel::Error::corrupt(
                    "log pack header",
                    Location::Lsid(at),
                    "pack has no records inside the log range",
                )
                .into());
            }
            let next = header.next_lsid();
            if next > limit {
                if at == start {
                    return Err(ShipError::Inconsistent(format!(
                        "the pack at lsid {at} ({} blocks) does not fit a transfer of at most \
                         {max_pb} blocks ending at {limit}; raise --max-wlog-send-mb",
                        header.pack_pb()
                    )));
                }
                if used > 0 {
                    send(win.slice(..(used * pbs) as usize))?;
                }
                lsid = at;
                break 'windows;
            }
            let pack_pb = next - at;
            if used + pack_pb > n {
                if used == 0 {
                    // Larger than a window: alone, in several chunks.
                    let big = read_window(f, sb, at, pack_pb, out.spare)?;
                    verify_pack(header, big.slice(pbs as usize..))?;
                    let mut rest = big;
                    while !rest.is_empty() {
                        let c = rest.split_to(rest.len().min(CHUNK));
                        send(c)?;
                    }
                    lsid = next;
                    continue 'windows;
                }
                break;
            }
            verify_pack(
                header,
                win.slice(((used + 1) * pbs) as usize..((used + pack_pb) * pbs) as usize),
            )?;
            used += pack_pb;
        }
        send(win.slice(..(used * pbs) as usize))?;
        lsid += used;
    }
    Ok(lsid)
}

/// Verifies the data checksums of a pack.
fn verify_pack(header: LogPackHeader, data: Bytes) -> walb_kernel::Result<()> {
    LogPack { header, data }.verify_data()
}

/// After the ack: advance the done record (persisted), free the log, publish the usage.
fn finish(
    st: &Storage,
    vol: &Vol,
    dev: &Device,
    plan: &Plan,
    lsid_e: u64,
) -> Result<Next, ShipError> {
    let mut g = vol.meta();
    let Some(meta) = g.as_mut() else {
        return Err(vol.no_meta().into());
    };
    let mut snaps = meta.snaps.clone();
    snaps.finish(plan, lsid_e)?;
    vol::save_snaps(&vol.dir, &snaps)?;
    meta.snaps = snaps;
    let done = meta.snaps.done.lsid;
    let more = !meta.snaps.queue.is_empty();
    drop(g);
    let l = match free_logs(&**dev, done) {
        Ok(l) => l,
        Err(e) => {
            // The transfer is recorded; freeing is retried by the next run.
            warn!(vol = %vol.name, "freeing logs up to {done}: {e}");
            return Ok(Next::After(st.cfg.delay));
        }
    };
    publish_usage(&st.ctx.node, &vol.name, &**dev, &l);
    if more || done < l.permanent {
        return Ok(Next::After(Duration::ZERO));
    }
    let pbs = dev.info().map(|i| i.pbs).unwrap_or(512);
    let left = snap::remaining_mb(done, l.latest, pbs);
    Ok(if left > 0 {
        Next::After(Duration::from_millis(snap::wait_delay_ms(
            left,
            st.cfg.max_wlog_send_mb,
        )))
    } else {
        Next::Idle
    })
}

/// Frees the logs before `min(upto, prev_written)` (taking a checkpoint first when
/// `prev_written` lags); returns the lsids after.
pub(crate) fn free_logs(
    dev: &dyn walb_device::WalbDevice,
    upto: u64,
) -> walb_kernel::Result<LsidSet> {
    let mut l = dev.lsids()?;
    let upto = upto.min(l.latest);
    if l.oldest >= upto {
        return Ok(l);
    }
    if l.prev_written < upto && l.prev_written < l.permanent {
        dev.take_checkpoint()?;
        l = dev.lsids()?;
    }
    let target = upto.min(l.prev_written);
    if l.oldest < target {
        dev.set_oldest_lsid(target)?;
        l = dev.lsids()?;
    }
    Ok(l)
}

/// Publishes the log usage of a volume.
pub(crate) fn publish_usage(
    node: &walb_wire::Node,
    vol: &str,
    dev: &dyn walb_device::WalbDevice,
    l: &LsidSet,
) {
    let capacity_pb = dev.log_capacity().unwrap_or(0);
    node.publish(Event::LogUsage {
        vol: vol.to_owned(),
        usage_pb: l.latest.saturating_sub(l.oldest),
        capacity_pb,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use walb_kernel::block::Pbs;
    use walb_kernel::gen::WlogGen;
    use walb_kernel::wlog::{WlogHeader, WLOG_HEADER_BYTES};

    /// A log device whose ring holds the packs of a generated wlog from `begin` on
    /// (wrapping); returns the file, the superblock, the raw packs and their end lsid.
    fn ring(begin: u64, max_io_lb: u32) -> (tempfile::NamedTempFile, SuperBlock, Vec<u8>, u64) {
        let pbs = Pbs::B512;
        let ldev_bytes = 64u64 << 20;
        let mut sb = SuperBlock::format(pbs, ldev_bytes, 1 << 22, "t").unwrap();
        let mut g = WlogGen::new(1 << 22, 24 << 20);
        g.pbs = pbs;
        g.min_io_lb = 8;
        g.max_io_lb = max_io_lb;
        g.begin_lsid = begin;
        g.ring_size = Some(sb.ring_buffer_size);
        let mut w = Vec::new();
        let end = g.write(&mut w).unwrap();
        let h = WlogHeader::parse(&w).unwrap();
        sb.salt = h.salt;
        let body = w[WLOG_HEADER_BYTES..w.len() - 512].to_vec();
        assert_eq!(body.len() as u64, (end - begin) * 512);
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(ldev_bytes).unwrap();
        for (i, b) in body.chunks(512).enumerate() {
            f.as_file()
                .write_all_at(b, sb.offset_of_lsid(begin + i as u64))
                .unwrap();
        }
        (f, sb, body, end)
    }

    /// Runs [`read_range`]; returns its result and the chunks it sent.
    fn read(
        f: &File,
        sb: &SuperBlock,
        start: u64,
        limit: u64,
    ) -> (Result<u64, ShipError>, Vec<Bytes>) {
        let (tx, mut rx) = mpsc::channel::<Bytes>(2);
        let (_back_tx, back_rx) = std::sync::mpsc::sync_channel::<BytesMut>(2);
        let abort = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                let out = RangeOut {
                    tx: &tx,
                    spare: &back_rx,
                    abort: &abort,
                };
                let r = read_range(f, sb, start, limit, limit - start, out);
                drop(tx);
                r
            });
            let mut chunks = Vec::new();
            while let Some(c) = rx.blocking_recv() {
                chunks.push(c);
            }
            (h.join().unwrap(), chunks)
        })
    }

    #[test]
    fn read_range_sends_whole_packs_across_windows_and_the_ring_end() {
        // Packs up to 6 MiB (larger than a window) and small ones, wrapping the ring.
        for (max_io_lb, begin_back) in [(12_000u32, 20_000u64), (128, 3_000)] {
            let sb0 = SuperBlock::format(Pbs::B512, 64 << 20, 1, "t").unwrap();
            let begin = 5 * sb0.ring_buffer_size - begin_back;
            let (f, sb, body, end) = ring(begin, max_io_lb);
            let (r, chunks) = read(f.as_file(), &sb, begin, end);
            assert_eq!(r.unwrap(), end);
            assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
            assert_eq!(chunks.concat(), body);
            // A limit inside a pack: the packs before it, nothing of it.
            let mut starts = vec![begin];
            while let Some(&l) = starts.last().filter(|&&l| l < end) {
                let o = ((l - begin) * 512) as usize;
                let h = LogPackHeader::parse(&body[o..o + 512], sb.pbs, sb.salt, Some(l)).unwrap();
                starts.push(h.next_lsid());
            }
            if starts.len() < 4 {
                // One huge pack (large IOs): read whole above.
                assert!(max_io_lb > 1000, "{starts:?}");
                continue;
            }
            let mid = starts[starts.len() / 2];
            let (r, chunks) = read(f.as_file(), &sb, begin, mid + 1);
            let got = r.unwrap();
            assert_eq!(got, mid);
            assert_eq!(chunks.concat(), body[..((got - begin) * 512) as usize]);
            // The next range goes on from there.
            let (r, chunks) = read(f.as_file(), &sb, got, end);
            assert_eq!(r.unwrap(), end);
            assert_eq!(chunks.concat(), body[((got - begin) * 512) as usize..]);
        }
    }

    #[test]
    fn read_range_refuses_a_corrupt_pack() {
        let sb0 = SuperBlock::format(Pbs::B512, 64 << 20, 1, "t").unwrap();
        let begin = sb0.ring_buffer_size;
        let (f, sb, _body, end) = ring(begin, 128);
        // A data block of the first pack.
        f.as_file()
            .write_all_at(&[0xff; 16], sb.offset_of_lsid(begin + 1))
            .unwrap();
        let (r, _) = read(f.as_file(), &sb, begin, end);
        assert!(matches!(r, Err(ShipError::Device(e)) if e.is_corrupt()));
    }
}
