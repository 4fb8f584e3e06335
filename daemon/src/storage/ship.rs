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
use walb_kernel::ldev::SuperBlock;
use walb_kernel::logpack::{LogPack, LogPackHeader};
use walb_kernel::Location;
use walb_wire::msg::{Reply, Request, Step, WireError, WlogTransfer};
use walb_wire::{Call, Role};

use crate::dto::diff_to_dto;
use crate::vol::now_s;

use super::monitor::{free_logs, publish_usage};
use super::snap::{self, Plan, SnapError};
use super::{vol, Device, Storage, Vol};

/// Largest bulk chunk sent.
pub(crate) const CHUNK: usize = 4 << 20;
/// How long a proxy may take to accept or refuse a transfer.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting to a proxy may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a heartbeat may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

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
    addr: String,
    available: bool,
    checked: Option<Instant>,
}

/// The proxies in priority order and whether each answers.
#[derive(Debug)]
pub(crate) struct Proxies {
    list: Mutex<Vec<ProxyInfo>>,
}

impl Proxies {
    pub(crate) fn new(addrs: &[String]) -> Proxies {
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
    pub(crate) fn candidates(&self) -> Vec<String> {
        let l = self.lock();
        let av: Vec<String> = l
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

    fn set(&self, addr: &str, available: bool) {
        for p in self.lock().iter_mut().filter(|p| p.addr == addr) {
            p.available = available;
            p.checked = Some(Instant::now());
        }
    }

    /// Makes every proxy due for a check.
    pub(crate) fn kick(&self) {
        for p in self.lock().iter_mut() {
            p.checked = None;
        }
    }

    /// Status lines.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|p| {
                format!(
                    "proxy {} available {}",
                    p.addr,
                    if p.available { 1 } else { 0 }
                )
            })
            .collect()
    }

    /// Proxies whose last check is older than `every` (unavailable ones, or never
    /// checked).
    fn due(&self, every: Duration) -> Vec<String> {
        let now = Instant::now();
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
            for addr in self.proxies.due(self.cfg.proxy_check_interval) {
                let ok = self.check_proxy(&addr).await;
                if !ok {
                    debug!(proxy = %addr, "proxy unavailable");
                }
                self.proxies.set(&addr, ok);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.ctx.shutdown.cancelled() => return,
            }
        }
    }

    /// A proxy is available when a handshake with it succeeds: the negotiation proves a
    /// live walb daemon, and [`Ctx::connect`] checks that its certificate says proxy.
    /// (Storages may not send queries to proxies; the handshake is the heartbeat.)
    async fn check_proxy(&self, addr: &str) -> bool {
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, self.ctx.connect(addr, Role::Proxy)).await,
            Ok(Ok(_))
        )
    }

    fn force_abort(&self, vol: &Vol) -> bool {
        vol.core.stop_state().is_force() || self.ctx.is_force_shutdown()
    }

    /// Opens a transfer on the first proxy that accepts it.
    async fn open_transfer(&self, req: &WlogTransfer) -> Result<(String, Call), ShipError> {
        let mut why = Vec::new();
        for addr in self.proxies.candidates() {
            let peer =
                match tokio::time::timeout(CONNECT_TIMEOUT, self.ctx.connect(&addr, Role::Proxy))
                    .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        self.proxies.set(&addr, false);
                        why.push(format!("{addr}: {e:#}"));
                        continue;
                    }
                    Err(_) => {
                        self.proxies.set(&addr, false);
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
                    self.proxies.set(&addr, false);
                    why.push(format!("{addr}: {e}"));
                }
                Err(_) => {
                    peer.close();
                    self.proxies.set(&addr, false);
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
    let prep = match super::blocking(move || prepare(&s2, &v2)).await?? {
        Prepared::Done(next) => return Ok(next),
        Prepared::Go(p) => p,
    };
    let plan = prep.plan;
    let (addr, mut call) = st.open_transfer(&prep.req).await?;
    debug!(vol = %vol.name, proxy = %addr, from = plan.rec_b.lsid, limit = plan.lsid_limit, "wlog transfer");
    let dev = Arc::clone(&prep.dev);
    let lsid_e = match send(st, vol, &mut call, *prep).await {
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
        gid_b = plan.rec_b.gid, lsid_b = plan.rec_b.lsid, lsid_e,
        "wlog transfer acknowledged"
    );
    let (s2, v2) = (Arc::clone(st), Arc::clone(vol));
    super::blocking(move || finish(&s2, &v2, &dev, &plan, lsid_e)).await?
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
            "volume {}: {what}: the log of {path} was reset outside walb; reset-vol and a \
             full or hash backup are needed",
            vol.name
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
        now_s(),
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
        let left = snap::remaining_mb(plan.rec_b.lsid, lsids.latest, pbs);
        return Ok(Prepared::Done(Next::After(Duration::from_millis(
            snap::wait_delay_ms(left, max_mb),
        ))));
    }
    let ldev = dev.open_ldev()?;
    super::drop_cache(&ldev);
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

/// Streams the packs, the end of the bulk and the diff; returns the end lsid once the
/// proxy acknowledged.
async fn send(
    st: &Arc<Storage>,
    vol: &Arc<Vol>,
    call: &mut Call,
    prep: Prep,
) -> Result<u64, ShipError> {
    let Prep {
        plan,
        ldev,
        sb,
        max_pb,
        ..
    } = prep;
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let abort = Arc::new(AtomicBool::new(false));
    let abort2 = Arc::clone(&abort);
    let (start, limit) = (plan.rec_b.lsid, plan.lsid_limit);
    let reader = tokio::task::spawn_blocking(move || {
        read_range(&ldev, &sb, start, limit, max_pb, &tx, &abort2)
    });
    let r = async {
        while let Some(chunk) = rx.recv().await {
            if st.force_abort(vol) {
                return Err(ShipError::Aborted);
            }
            call.sender.chunk_bytes(chunk).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        abort.store(true, Ordering::Relaxed);
        drop(rx);
        return Err(e);
    }
    let lsid_e = reader
        .await
        .map_err(|e| ShipError::Inconsistent(format!("log reader failed: {e}")))??;
    call.sender.end_bulk().await?;
    let diff = snap::transfer_diff(&plan.rec_b, &plan.rec_e, lsid_e)?;
    call.sender.step(Step::MetaDiff(diff_to_dto(&diff))).await?;
    let ack = tokio::select! {
        r = call.receiver.step() => r?,
        _ = st.forced(vol) => return Err(ShipError::Aborted),
    };
    match ack {
        Step::Ack => Ok(lsid_e),
        other => Err(ShipError::Transport(walb_wire::Error::Unexpected(format!(
            "expected the ack of the wlog transfer, got {other:?}"
        )))),
    }
}

/// Reads `n` blocks of the ring from `lsid` on, raw.
fn read_blocks(f: &File, sb: &SuperBlock, lsid: u64, n: u64) -> walb_kernel::Result<Vec<u8>> {
    use walb_kernel::error::IoContext;
    let pbs = u64::from(sb.pbs.get());
    let mut buf = vec![0u8; (n * pbs) as usize];
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
    Ok(buf)
}

/// Reads the packs of `[start, limit)` (stopping before a pack that would end after
/// `limit`), verifies every checksum, and sends their raw blocks as chunks of at most
/// [`CHUNK`] bytes; returns the lsid after the last pack sent.
pub(crate) fn read_range(
    f: &File,
    sb: &SuperBlock,
    start: u64,
    limit: u64,
    max_pb: u64,
    tx: &mpsc::Sender<Bytes>,
    abort: &AtomicBool,
) -> Result<u64, ShipError> {
    if limit.saturating_sub(start) > sb.ring_buffer_size {
        return Err(ShipError::Inconsistent(format!(
            "lsid range [{start}, {limit}) is longer than the ring ({} blocks)",
            sb.ring_buffer_size
        )));
    }
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut lsid = start;
    let send = |b: Bytes| tx.blocking_send(b).map_err(|_| ShipError::Aborted);
    while lsid < limit {
        if abort.load(Ordering::Relaxed) {
            return Err(ShipError::Aborted);
        }
        let hb = read_blocks(f, sb, lsid, 1)?;
        let header = LogPackHeader::parse(&hb, sb.pbs, sb.salt, Some(lsid))?;
        if header.n_records() == 0 {
            return Err(walb_kernel::Error::corrupt(
                "log pack header",
                Location::Lsid(lsid),
                "pack has no records inside the log range",
            )
            .into());
        }
        let next = header.next_lsid();
        if next > limit {
            if lsid == start {
                return Err(ShipError::Inconsistent(format!(
                    "the pack at lsid {lsid} ({} blocks) does not fit a transfer of at most \
                     {max_pb} blocks ending at {limit}; raise --max-wlog-send-mb",
                    header.pack_pb()
                )));
            }
            break;
        }
        let data = read_blocks(f, sb, lsid + 1, u64::from(header.total_io_size))?;
        let pack = LogPack {
            header,
            data: Bytes::from(data),
        };
        pack.verify_data()?;
        buf.extend_from_slice(&hb);
        buf.extend_from_slice(&pack.data);
        while buf.len() >= CHUNK {
            send(buf.split_to(CHUNK).freeze())?;
        }
        lsid = next;
    }
    if !buf.is_empty() {
        send(buf.freeze())?;
    }
    Ok(lsid)
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
