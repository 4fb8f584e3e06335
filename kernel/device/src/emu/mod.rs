//! The userspace WalB device emulator (walb-driver.md §7.1).
//!
//! An [`Emulator`] drives a log device (ldev) and a data device (ddev), each a file or a
//! block device (or a [`disk::MemDisk`] in crash tests), as the kernel driver does:
//!
//! 1. **write**: the write joins the queue of the group-commit writer (the `writer`
//!    module): the leading writer packs the queued IOs into log packs as the driver does
//!    (concurrent writes share a pack, up to `max_logpack_kb` and the header's record
//!    limit; padding at the ring end; checksums), admits them with the lsid state machine
//!    ([`DeviceState::admit`]: freeze, the `prev_written` guard, overflow or
//!    error-before-overflow), writes them to the ring, and acknowledges them
//!    (`completed`). Their data stays *pending* in memory; reads see it
//!    (read-after-write).
//! 2. **flush** (an application flush or FUA, or the periodic/size-based log flush):
//!    `fdatasync` of the ldev makes the logs permanent; only then is pending data written
//!    to the ddev (`written`). Data therefore never reaches the ddev before its log is
//!    durable. Concurrent flushes share one `fdatasync` when it covers them.
//! 3. **checkpoint** (periodic, forced, set-oldest-lsid, close): `fdatasync` of the ddev,
//!    then the superblock with `written` and `oldest`, synced (`prev_written`).
//! 4. **open**: redo from the superblock's `written_lsid` up to the first invalid pack; a
//!    torn last pack is cut at its first bad record and its header rewritten; overflow is
//!    recomputed. Ring blocks just after the redo end, where packs written but never
//!    flushed before the crash may survive, are zeroed so that a later log cannot run into
//!    them (the writer never lets the unflushed log grow beyond that window).
//!
//! One mutex guards the state; the log writes, the log `fdatasync`s and the data device
//! writes run without it, so writers, readers and flushes overlap. A background ticker
//! (optional) runs the flush and checkpoint timers and the auto-melt; tests can instead
//! call [`Emulator::poll`] with a chosen time.
//!
//! Waiters for new permanent logs ([`WalbDevice::wait_for_permanent`]) are woken on the
//! driver's notify edge only (walb-driver.md §2.2, §4.2: `permanent` advancing while it
//! equals `oldest`, i.e. the first extractable log), and otherwise look again every
//! [`PERMANENT_RECHECK`], as the driver backend polls sysfs.
//!
//! Freeze and melt follow the driver's state machine (§5.5), with the transient
//! CANCELING state while one of them cancels a pending automatic melt.

mod device;
pub mod disk;
mod redo;
mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::lsids::{overflow_at_start, DeviceState, Freeze, LsidSet, Tunables};
use walb_kernel::block::{Pbs, LBS, LBS_USIZE};
use walb_kernel::error::{Error, IoContext, Result};
use walb_kernel::ldev::{SuperBlock, SUPER_OFFSET};

use disk::{Disk, DiskReader, FileDisk};
use redo::{header_valid, redo};
pub use writer::WriteStats;
use writer::{stale_window_pb, ItemIo, WriteQueue, MAX_CHUNK_LB, MAX_DISCARD_LB};

/// How often a waiter for permanent logs looks again when no notify edge woke it.
pub const PERMANENT_RECHECK: Duration = Duration::from_secs(1);

/// Settings of an emulated device (the driver's start parameters that matter here).
#[derive(Debug, Clone)]
pub struct EmuConfig {
    /// Fail writes that would overflow the log instead of overwriting unreleased logs.
    pub error_before_overflow: bool,
    /// Periodic checkpoint interval in ms (driver default 10000; 0 disables).
    pub checkpoint_interval_ms: u32,
    /// Flush the log at least this often when logs are unflushed (wdevc default 100 ms).
    pub log_flush_interval_ms: u32,
    /// Flush the log when this many MiB are unflushed (wdevc default 16).
    pub log_flush_interval_mb: u32,
    /// Largest data of a log pack in KiB (wdevc default 32; 0: only the header's limits).
    /// A single larger write still gets a pack of its own.
    pub max_logpack_kb: u32,
    /// Run the timers in a background thread.
    pub background: bool,
    /// Device name (default: the name in the superblock).
    pub name: Option<String>,
}

impl Default for EmuConfig {
    fn default() -> Self {
        EmuConfig {
            error_before_overflow: false,
            checkpoint_interval_ms: 10_000,
            log_flush_interval_ms: 100,
            log_flush_interval_mb: 16,
            max_logpack_kb: 32,
            background: true,
            name: None,
        }
    }
}

#[derive(Debug)]
enum PendingIo {
    Write { off: u64, data: Bytes },
    Discard { off: u64, len: u64 },
}

/// A logged IO whose data is not yet on the ddev; `end` is the end lsid of its pack.
#[derive(Debug)]
struct Pending {
    end: u64,
    io: PendingIo,
}

struct Inner {
    st: DeviceState,
    sb: SuperBlock,
    /// In lsid order; removed only once written to the ddev.
    pending: VecDeque<Pending>,
    closed: bool,
    wq: WriteQueue,
    /// Notify edges so far (the driver's `sysfs_notify` calls).
    notifications: u64,
}

struct Shared {
    name: String,
    ldev: Arc<dyn Disk>,
    ddev: Arc<dyn Disk>,
    ldev_path: Option<PathBuf>,
    ddev_path: Option<PathBuf>,
    inner: Mutex<Inner>,
    /// Writers: batch completions, leader hand-over, melt, close.
    wq_cond: Condvar,
    /// Waiters for permanent logs: the notify edge and close.
    perm_cond: Condvar,
    /// The ticker: a size-based log flush is due, or stop.
    tick_cond: Condvar,
    stop: AtomicBool,
    /// Serialises the log flushes that sync the ldev outside `inner`'s lock; taken before
    /// `apply_lock` and `inner`.
    flush_lock: Mutex<()>,
    /// Serialises the writes of pending data to the ddev outside `inner`'s lock; taken
    /// before `inner`.
    apply_lock: Mutex<()>,
    /// Held while the automatic melt runs (the driver's melt work); a freeze or melt
    /// cancelling it waits for it. Taken before `inner`.
    melt_work: Mutex<()>,
    /// The size-based flush limit in blocks.
    limit_pb: u64,
    /// The most blocks the log may run ahead of `permanent` (see [`stale_window_pb`]).
    window_pb: u64,
    /// `max_logpack_kb` in blocks (0: no limit).
    max_logpack_pb: u64,
    background: bool,
}

/// An emulated WalB device. Dropping it closes it cleanly (see [`Emulator::close`]).
pub struct Emulator {
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
}

/// What redo found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedoReport {
    /// Redo started here (the superblock's written lsid).
    pub begin: u64,
    /// and ended here.
    pub end: u64,
    /// Packs redone.
    pub packs: u64,
    /// The last pack was torn and cut (its header rewritten).
    pub cut: bool,
}

impl Emulator {
    /// Opens an emulated device over an ldev and a ddev path (files or block devices),
    /// redoing the log.
    pub fn open(ldev: &Path, ddev: &Path, cfg: EmuConfig) -> Result<Emulator> {
        let open = |p: &Path| -> Result<Arc<dyn Disk>> {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .ctx(|| format!("opening {}", p.display()))?;
            Ok(Arc::new(
                FileDisk::new(f).ctx(|| format!("inspecting {}", p.display()))?,
            ))
        };
        let l = open(ldev)?;
        let d = open(ddev)?;
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        Self::open_disks(l, d, cfg, Some(abs(ldev)), Some(abs(ddev))).map(|(e, _)| e)
    }

    /// Opens an emulated device over two disks; returns it with the redo report.
    pub fn open_disks(
        ldev: Arc<dyn Disk>,
        ddev: Arc<dyn Disk>,
        cfg: EmuConfig,
        ldev_path: Option<PathBuf>,
        ddev_path: Option<PathBuf>,
    ) -> Result<(Emulator, RedoReport)> {
        let now = Instant::now();
        let mut sb = SuperBlock::read(&DiskReader(&*ldev))?;
        let ddev_bytes = ddev.size().ctx(|| "sizing the data device".into())?;
        if sb.device_size.saturating_mul(u64::from(LBS)) > ddev_bytes {
            return Err(Error::Invalid(format!(
                "the superblock's device size ({} blocks) exceeds the data device ({ddev_bytes} bytes)",
                sb.device_size
            )));
        }
        let pbs = sb.pbs;
        let limit_pb = flush_limit_pb(&cfg, pbs);
        let report = redo(&*ldev, &*ddev, &mut sb, limit_pb)?;
        let lsids = LsidSet::at(sb.oldest_lsid, report.end);
        let header_ok = lsids.latest <= lsids.oldest || header_valid(&*ldev, &sb, lsids.oldest);
        let overflow = overflow_at_start(&lsids, sb.ring_buffer_size, header_ok);
        if overflow {
            warn!(
                "log of {} is overflowed (oldest {}, latest {}, ring {})",
                sb.name, lsids.oldest, lsids.latest, sb.ring_buffer_size
            );
        }
        let tun = Tunables {
            error_before_overflow: cfg.error_before_overflow,
            checkpoint_interval: Duration::from_millis(cfg.checkpoint_interval_ms.into()),
            log_flush_interval: Duration::from_millis(cfg.log_flush_interval_ms.into()),
            log_flush_interval_pb: limit_pb,
        };
        let st = DeviceState::new(lsids, sb.ring_buffer_size, overflow, tun, now);
        info!(
            "emulated walb device {:?} open: redo [{}, {}) of {} packs{}",
            sb.name,
            report.begin,
            report.end,
            report.packs,
            if report.cut {
                ", torn last pack cut"
            } else {
                ""
            }
        );
        let max_logpack_pb =
            (u64::from(cfg.max_logpack_kb) * 1024 / u64::from(pbs.get())).min(65535);
        let shared = Arc::new(Shared {
            name: cfg.name.clone().unwrap_or_else(|| sb.name.clone()),
            ldev,
            ddev,
            ldev_path,
            ddev_path,
            inner: Mutex::new(Inner {
                st,
                sb,
                pending: VecDeque::new(),
                closed: false,
                wq: WriteQueue::default(),
                notifications: 0,
            }),
            wq_cond: Condvar::new(),
            perm_cond: Condvar::new(),
            tick_cond: Condvar::new(),
            stop: AtomicBool::new(false),
            flush_lock: Mutex::new(()),
            apply_lock: Mutex::new(()),
            melt_work: Mutex::new(()),
            limit_pb,
            window_pb: stale_window_pb(limit_pb, pbs),
            max_logpack_pb,
            background: cfg.background,
        });
        let ticker = if cfg.background {
            let weak = Arc::downgrade(&shared);
            Some(
                std::thread::Builder::new()
                    .name("walb-emu-ticker".into())
                    .spawn(move || ticker(weak))
                    .ctx(|| "starting the emulator's ticker thread".into())?,
            )
        } else {
            None
        };
        Ok((Emulator { shared, ticker }, report))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// Device size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.lock().sb.device_size * u64::from(LBS)
    }

    /// Physical block size of the log.
    pub fn pbs(&self) -> Pbs {
        self.lock().sb.pbs
    }

    /// A copy of the in-memory superblock.
    pub fn superblock(&self) -> SuperBlock {
        self.lock().sb.clone()
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Reads `buf.len()` bytes at byte offset `off` (pending writes included).
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let g = self.lock();
        let size = g.sb.device_size * u64::from(LBS);
        if off.checked_add(buf.len() as u64).is_none_or(|e| e > size) {
            return Err(Error::Invalid(format!(
                "read of {} bytes at {off} is past the device end {size}",
                buf.len()
            )));
        }
        self.shared
            .ddev
            .read_at(buf, off)
            .ctx(|| format!("reading the data device at {off}"))?;
        let end = off + buf.len() as u64;
        for p in &g.pending {
            match &p.io {
                PendingIo::Write { off: po, data } => {
                    let pe = po + data.len() as u64;
                    let (s, e) = ((*po).max(off), pe.min(end));
                    if s < e {
                        buf[(s - off) as usize..(e - off) as usize]
                            .copy_from_slice(&data[(s - po) as usize..(e - po) as usize]);
                    }
                }
                PendingIo::Discard { off: po, len } => {
                    let (s, e) = ((*po).max(off), (po + len).min(end));
                    if s < e {
                        buf[(s - off) as usize..(e - off) as usize].fill(0);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `data` at byte offset `off` (both multiples of 512). Acknowledged once
    /// logged; durable after the next flush.
    pub fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write_flags(off, data, false)
    }

    /// A FUA write: durable when it returns.
    pub fn write_fua(&self, off: u64, data: &[u8]) -> Result<()> {
        self.write_flags(off, data, true)
    }

    fn check_range(&self, g: &Inner, off: u64, len: u64, what: &str) -> Result<()> {
        let size = g.sb.device_size * u64::from(LBS);
        if off % u64::from(LBS) != 0 || len % u64::from(LBS) != 0 || len == 0 {
            return Err(Error::Invalid(format!(
                "{what} of {len} bytes at {off}: offset and length must be non-zero multiples of 512"
            )));
        }
        if off.checked_add(len).is_none_or(|e| e > size) {
            return Err(Error::Invalid(format!(
                "{what} of {len} bytes at {off} is past the device end {size}"
            )));
        }
        Ok(())
    }

    fn write_flags(&self, off: u64, data: &[u8], fua: bool) -> Result<()> {
        let salt = {
            let g = self.lock();
            self.check_range(&g, off, data.len() as u64, "write")?;
            g.sb.salt
        };
        // Copied before queueing (the leader packs it), one record per chunk.
        // The checksum is computed here, in parallel with other writers.
        let chunk = MAX_CHUNK_LB as usize * LBS_USIZE;
        let ios = data
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| ItemIo::Write {
                lb: off / u64::from(LBS) + (i * chunk / LBS_USIZE) as u64,
                data: Bytes::copy_from_slice(c),
                salt,
                csum: walb_kernel::checksum::checksum(c, salt),
            })
            .collect();
        self.shared.submit(ios)?;
        if fua {
            // FUA: the log of this write is made durable before the acknowledgement.
            // Its data goes to the ddev with the next flush (the ticker's, if any).
            let upto = self.lock().st.lsids().completed;
            let sh = &*self.shared;
            sh.flush_upto(upto, !sh.background)?;
            if sh.background {
                sh.tick_cond.notify_all();
            }
        }
        Ok(())
    }

    /// Discards `len` bytes at `off` (multiples of 512): logged as discard records; the
    /// range reads as zeros.
    pub fn discard(&self, off: u64, len: u64) -> Result<()> {
        {
            let g = self.lock();
            self.check_range(&g, off, len, "discard")?;
        }
        let (mut lb, end) = (off / u64::from(LBS), (off + len) / u64::from(LBS));
        let mut ios = Vec::new();
        while lb < end {
            let n = (end - lb).min(MAX_DISCARD_LB);
            ios.push(ItemIo::Discard { lb, n: n as u32 });
            lb += n;
        }
        self.shared.submit(ios)
    }

    /// Flush: every write acknowledged before the call is durable when it returns (and
    /// its data on the data device). Like REQ_PREFLUSH, it starts a new log pack.
    pub fn flush(&self) -> Result<()> {
        self.shared.submit(vec![ItemIo::Flush])?;
        self.shared.flush_unlocked()
    }

    /// Runs the timers as the ticker does, at time `now` (for deterministic tests).
    pub fn poll(&self, now: Instant) -> Result<()> {
        self.shared.poll(now)
    }

    /// Flushes, applies and checkpoints (so that `written == latest` on disk), and stops
    /// the ticker. Later calls fail; dropping the emulator calls it.
    pub fn close(&mut self) -> Result<()> {
        let r = self.shutdown();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        r
    }

    /// [`Emulator::close`] through a shared reference (the ticker thread exits by itself):
    /// for a device shared with server threads. IOs still queued fail.
    pub fn shutdown(&self) -> Result<()> {
        let sh = &*self.shared;
        sh.stop.store(true, Ordering::SeqCst);
        sh.tick_cond.notify_all();
        let _serial = sh.serialize();
        let mut g = self.lock();
        if g.closed {
            return Ok(());
        }
        g.closed = true;
        sh.wake_all();
        g = sh.wait_no_batch_in_flight(g);
        let r = sh
            .sync_and_apply(&mut g)
            .and_then(|_| sh.checkpoint(&mut g, true));
        g.st.handle_io_error();
        r
    }

    /// Abandons the device without flushing (a simulated crash): the ticker stops, the
    /// disks keep whatever was written.
    pub fn crash(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.tick_cond.notify_all();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let mut g = self.lock();
        g.closed = true;
        g.st.handle_io_error();
        self.shared.wake_all();
        let g = self.shared.wait_no_batch_in_flight(g);
        drop(g);
    }

    /// Counters of the log writer (batches, packs, records, waits for the flush window).
    pub fn write_stats(&self) -> WriteStats {
        let g = self.lock();
        WriteStats {
            queued: g.wq.queued() as u64,
            ..g.wq.stats
        }
    }

    /// The freeze state (for tests and diagnostics).
    pub fn freeze_state(&self) -> Freeze {
        self.lock().st.freeze_state()
    }

    /// How many times the driver would have notified `lsids` pollers so far (the edge of
    /// walb-driver.md §4.2: `permanent` advancing while it equals `oldest`).
    pub fn notifications(&self) -> u64 {
        self.lock().notifications
    }

    /// Holds the automatic-melt work as if it were running, until the guard is dropped:
    /// a freeze or melt that cancels the auto-melt meanwhile stays in the CANCELING state
    /// (walb-driver.md §5.5). For tests of that window.
    #[doc(hidden)]
    pub fn hold_melt_work(&self) -> MutexGuard<'_, ()> {
        self.shared
            .melt_work
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels a pending automatic melt as the driver's `cancel_melt_work` does: the state
    /// is CANCELING until a running melt work has finished, then FROZEN.
    fn cancel_melt(&self) {
        if !self.lock().st.begin_cancel_melt() {
            return;
        }
        let work = self.hold_melt_work();
        self.lock().st.end_cancel_melt();
        drop(work);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            warn!("closing emulated device {}: {e}", self.shared.name);
        }
    }
}

/// Log blocks that may be written but unflushed at any time.
fn flush_limit_pb(cfg: &EmuConfig, pbs: Pbs) -> u64 {
    let mb = if cfg.log_flush_interval_mb == 0 {
        16
    } else {
        cfg.log_flush_interval_mb
    };
    (u64::from(mb) << 20) / u64::from(pbs.get())
}

fn ticker(weak: Weak<Shared>) {
    loop {
        let Some(sh) = weak.upgrade() else { return };
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        let ok = match sh.poll(Instant::now()) {
            Ok(()) => true,
            Err(e) => {
                if !sh.stop.load(Ordering::SeqCst) {
                    warn!(
                        "emulated device {}: background flush/checkpoint failed: {e}",
                        sh.name
                    );
                }
                false
            }
        };
        let g = sh.lock();
        let now = Instant::now();
        if sh.stop.load(Ordering::SeqCst) || g.closed {
            return;
        }
        if ok && g.st.poll_flush(now) {
            continue;
        }
        let wait = match (ok, g.st.next_deadline()) {
            (true, Some(d)) => d
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(50)),
            // After a failure, no busy retry.
            _ => Duration::from_millis(50),
        };
        // Woken early by a writer when a size-based flush is due.
        let g = sh
            .tick_cond
            .wait_timeout(g, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
        drop(g);
        drop(sh);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every waiter (close, melt, reset).
    fn wake_all(&self) {
        self.wq_cond.notify_all();
        self.perm_cond.notify_all();
        self.tick_cond.notify_all();
    }

    /// Waits until no batch is being written outside the lock (so that `completed ==
    /// latest`): freeze, reset-wal and close drain through it.
    fn wait_no_batch_in_flight<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
    ) -> MutexGuard<'a, Inner> {
        while g.wq.in_flight {
            g = self.wq_wait(g);
        }
        g
    }

    fn poll(&self, now: Instant) -> Result<()> {
        {
            // The automatic melt, as the driver's melt work (see Emulator::cancel_melt).
            let _work = self.melt_work.lock().unwrap_or_else(|p| p.into_inner());
            let mut g = self.lock();
            if g.closed {
                return Ok(());
            }
            if g.st.poll_melt(now) {
                info!("emulated device {}: freeze timed out, melted", self.name);
                self.wq_cond.notify_all();
            }
        }
        let (flush, apply) = {
            let g = self.lock();
            let p = g.st.lsids().permanent;
            (
                g.st.poll_flush(now),
                g.pending.front().is_some_and(|x| x.end <= p),
            )
        };
        if flush {
            self.flush_unlocked()?;
        } else if apply {
            self.apply_pending()?;
        }
        let mut g = self.lock();
        if !g.closed && g.st.poll_checkpoint(now) {
            self.checkpoint(&mut g, false)?;
        }
        Ok(())
    }

    /// The log flush issued for `up` finished: `permanent` moves, and on the driver's edge
    /// the waiters for permanent logs are notified.
    fn flush_done(&self, g: &mut Inner, up: u64) {
        if g.st.handle_flush_done(up) {
            debug!("{}: new permanent logs after an empty log", self.name);
            g.notifications += 1;
            self.perm_cond.notify_all();
        }
    }

    /// Makes completed logs permanent, then writes their data to the ddev, all under the
    /// lock (freeze, reset-wal, checkpoints, close: callers hold `flush_lock` and no batch
    /// is in flight).
    fn sync_and_apply(&self, g: &mut Inner) -> Result<()> {
        let l = g.st.lsids();
        if l.completed > l.permanent {
            let up = g.st.handle_flush_issued(Instant::now());
            if let Err(e) = self.ldev.sync() {
                g.st.handle_io_error();
                return Err(Error::io("flushing the log device", e));
            }
            self.flush_done(g, up);
        }
        let permanent = g.st.lsids().permanent;
        let n = g.pending.iter().position(|p| p.end > permanent);
        let n = n.unwrap_or(g.pending.len());
        let ios: Vec<Pending> = g.pending.drain(..n).collect();
        if let Err(e) = self.apply(&ios) {
            g.st.handle_io_error();
            return Err(e);
        }
        g.st.handle_data_written(permanent);
        Ok(())
    }

    /// A log flush without holding the lock while the ldev syncs and the data is written:
    /// logs completed now become permanent, then pending data of permanent logs goes to the
    /// ddev. Writers and readers go on meanwhile.
    fn flush_unlocked(&self) -> Result<()> {
        self.flush_upto(u64::MAX, true)
    }

    /// Like [`Shared::flush_unlocked`], but skips the ldev sync when `permanent` already
    /// reached `upto` (a concurrent flush covered it), and writes the data to the ddev
    /// only when `apply`.
    fn flush_upto(&self, upto: u64, apply: bool) -> Result<()> {
        {
            let _serial = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut g = self.lock();
            if g.closed {
                return Err(Error::Invalid("the device is closed".into()));
            }
            let l = g.st.lsids();
            if l.completed > l.permanent && l.permanent < upto {
                let up = g.st.handle_flush_issued(Instant::now());
                drop(g);
                let r = self.ldev.sync();
                g = self.lock();
                if let Err(e) = r {
                    g.st.handle_io_error();
                    return Err(Error::io("flushing the log device", e));
                }
                self.flush_done(&mut g, up);
            }
        }
        if apply {
            self.apply_pending()
        } else {
            Ok(())
        }
    }

    /// Writes the pending data of permanent logs to the ddev, in lsid order, without the
    /// lock; it stays visible to reads (pending) until written. Only this (serialised by
    /// `apply_lock`) and [`Shared::sync_and_apply`] remove pending entries.
    fn apply_pending(&self) -> Result<()> {
        let _serial = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut g = self.lock();
        let permanent = g.st.lsids().permanent;
        let n = g.pending.iter().position(|p| p.end > permanent);
        let n = n.unwrap_or(g.pending.len());
        if n == 0 {
            g.st.handle_data_written(permanent);
            return Ok(());
        }
        let ios: Vec<(u64, Option<Bytes>, u64)> = g
            .pending
            .iter()
            .take(n)
            .map(|p| match &p.io {
                PendingIo::Write { off, data } => (*off, Some(data.clone()), 0),
                PendingIo::Discard { off, len } => (*off, None, *len),
            })
            .collect();
        drop(g);
        let r = self.apply_parts(&ios);
        g = self.lock();
        if let Err(e) = r {
            g.st.handle_io_error();
            return Err(e);
        }
        g.pending.drain(..n);
        g.st.handle_data_written(permanent);
        Ok(())
    }

    /// Takes the locks that serialise flushes and data writes (before `inner`): for the
    /// operations that flush and apply under the lock.
    fn serialize(&self) -> (MutexGuard<'_, ()>, MutexGuard<'_, ()>) {
        let f = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let a = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        (f, a)
    }

    fn apply(&self, ios: &[Pending]) -> Result<()> {
        for p in ios {
            let r = match &p.io {
                PendingIo::Write { off, data } => self.ddev.write_at(data, *off),
                PendingIo::Discard { off, len } => self.ddev.discard(*off, *len),
            };
            r.ctx(|| "writing to the data device".into())?;
        }
        Ok(())
    }

    fn apply_parts(&self, ios: &[(u64, Option<Bytes>, u64)]) -> Result<()> {
        for (off, data, len) in ios {
            let r = match data {
                Some(d) => self.ddev.write_at(d, *off),
                None => self.ddev.discard(*off, *len),
            };
            r.ctx(|| "writing to the data device".into())?;
        }
        Ok(())
    }

    /// Superblock sync: flush the ddev, write `written` and `oldest`, sync the ldev.
    fn checkpoint(&self, g: &mut Inner, always: bool) -> Result<()> {
        let l = g.st.lsids();
        let now = Instant::now();
        if !always && l.written == l.prev_written {
            g.st.handle_checkpoint_done(l.written, now);
            return Ok(());
        }
        if g.st.is_read_only() {
            return Err(Error::io(
                "checkpoint refused",
                std::io::Error::other("the device is read-only after an IO error"),
            ));
        }
        let r = (|| -> Result<()> {
            self.ddev.sync().ctx(|| "flushing the data device".into())?;
            g.sb.written_lsid = l.written;
            g.sb.oldest_lsid = l.oldest;
            let block = g.sb.to_block();
            self.ldev
                .write_at(&block, SUPER_OFFSET)
                .ctx(|| "writing the superblock".into())?;
            self.ldev.sync().ctx(|| "syncing the superblock".into())
        })();
        if let Err(e) = r {
            g.st.handle_io_error();
            return Err(e);
        }
        g.st.handle_checkpoint_done(l.written, now);
        Ok(())
    }
}
