//! Log monitoring and the background worker (walb-tools.md §5.1, §5.2, §5.19).
//!
//! Each monitored volume (Target, Standby, and during a full backup) has a watcher task
//! that waits for the device's permanent lsid to move ([`WalbDevice::wait_for_permanent`]
//! on a blocking thread, 1 s at a time) and then schedules the volume 100 ms later, so
//! logs are shipped in bulk. The [`Monitor`]'s delayed task queue (one entry per volume)
//! is drained by one dispatcher that runs at most `--bg` workers at once and never two
//! for the same volume. A worker:
//!
//! - stops a Target volume whose log overflowed (Target → StopTarget → Stopped);
//! - frees the logs of a Standby volume up to `prev_written` (action `WlogRemove`);
//! - ships the logs of a Target (or full-syncing) volume (action `WlogSend`, see
//!   `ship`), then reschedules itself: at once while more is permanent, after 100 ms to
//!   1 s while logs are not yet permanent, and after a doubling backoff
//!   (`--delay`..`--max-delay`) when the transfer failed. `kick` makes every entry due now.
//!
//! [`WalbDevice::wait_for_permanent`]: walb_device::WalbDevice::wait_for_permanent

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use walb_wire::msg::{ErrorCode, WireError};

use crate::clock::Clock;
use crate::session::{blocking, refuse};
use crate::state::storage::{StorageState as S, WLOG_REMOVE, WLOG_SEND};
use crate::task::{Backoff, TaskQueue};

use super::ship::{self, free_logs, publish_usage, Next};
use super::{Device, Storage, Vol};

/// Action name of a running wlog transfer.
pub(crate) const WLOG_SEND_ACTION: &str = "WlogSend";
/// Action name of a running log removal (Standby).
pub(crate) const WLOG_REMOVE_ACTION: &str = "WlogRemove";

/// Delay between a new permanent log and the transfer (bulk shipping).
const BULK_DELAY: Duration = Duration::from_millis(100);
/// How long one wait for new permanent logs lasts.
const WATCH_STEP: Duration = Duration::from_secs(1);

struct Watch {
    dev_name: String,
    token: CancellationToken,
}

/// The task queue, the running workers, the backoffs and the watchers.
pub(crate) struct Monitor {
    tasks: Mutex<TaskQueue<String>>,
    wake: Notify,
    running: Mutex<HashSet<String>>,
    /// Running volumes that were due again meanwhile: they run again as soon as their
    /// worker ends (a snapshot taken during a transfer ships right after it).
    again: Mutex<HashSet<String>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    watches: Mutex<HashMap<String, Watch>>,
    /// The daemon's clock (the queue's times are on it).
    clock: Clock,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Monitor {
    /// An empty monitor whose queue runs on `clock`.
    pub(crate) fn new(clock: Clock) -> Monitor {
        Monitor {
            tasks: Mutex::default(),
            wake: Notify::new(),
            running: Mutex::default(),
            again: Mutex::default(),
            backoff: Mutex::default(),
            watches: Mutex::default(),
            clock,
        }
    }

    /// Schedules `vol` after `delay`, keeping an earlier time.
    pub(crate) fn push(&self, vol: &str, delay: Duration) {
        lock(&self.tasks).push(vol.to_owned(), self.clock.instant() + delay);
        self.wake.notify_one();
    }

    /// Schedules `vol` after `delay`, replacing an earlier time.
    pub(crate) fn push_force(&self, vol: &str, delay: Duration) {
        lock(&self.tasks).push_force(vol.to_owned(), self.clock.instant() + delay);
        self.wake.notify_one();
    }

    /// Makes every scheduled volume due now and forgets the backoffs.
    pub(crate) fn kick(&self) -> usize {
        let mut q = lock(&self.tasks);
        q.make_all_due(self.clock.instant());
        let n = q.len();
        drop(q);
        lock(&self.backoff).clear();
        self.wake.notify_one();
        n
    }

    /// Number of scheduled volumes.
    pub(crate) fn scheduled(&self) -> usize {
        lock(&self.tasks).len()
    }

    /// True while `vol` is monitored.
    pub(crate) fn is_monitored(&self, vol: &str) -> bool {
        lock(&self.watches).contains_key(vol)
    }

    /// Cancels every watcher (shutdown).
    pub(crate) fn stop_all(&self) {
        for (_, w) in lock(&self.watches).drain() {
            w.token.cancel();
        }
    }

    fn next_delay(&self, vol: &str, min: Duration, max: Duration) -> Duration {
        lock(&self.backoff)
            .entry(vol.to_owned())
            .or_insert_with(|| Backoff::new(min, max))
            .next_delay()
    }

    fn reset_backoff(&self, vol: &str) {
        lock(&self.backoff).remove(vol);
    }
}

impl Storage {
    /// Starts watching the device of `vol` and schedules it now. Refused if another
    /// volume monitors the same device.
    pub(crate) fn start_monitoring(self: &Arc<Self>, vol: &Arc<Vol>) -> Result<(), WireError> {
        let path = vol.meta_copy()?.wdev_path;
        let dev_name = walb_device::name_of(&path).unwrap_or_else(|_| path.clone());
        let token = {
            let mut w = lock(&self.monitor.watches);
            if let Some((other, _)) = w
                .iter()
                .find(|(v, x)| x.dev_name == dev_name && **v != vol.name)
            {
                return Err(refuse(
                    ErrorCode::WrongState,
                    format!(
                        "volume {}: device {dev_name} is already monitored for volume {other}",
                        vol.name
                    ),
                ));
            }
            if let Some(old) = w.remove(&vol.name) {
                old.token.cancel();
            }
            let token = self.ctx.shutdown.child_token();
            w.insert(
                vol.name.clone(),
                Watch {
                    dev_name,
                    token: token.clone(),
                },
            );
            token
        };
        tokio::spawn(Arc::clone(self).watch(Arc::clone(vol), path, token));
        self.monitor.push_force(&vol.name, Duration::ZERO);
        info!(vol = %vol.name, "monitoring started");
        Ok(())
    }

    /// Stops watching `vol` and drops its scheduled work.
    pub(crate) fn stop_monitoring(&self, vol: &str) {
        if let Some(w) = lock(&self.monitor.watches).remove(vol) {
            w.token.cancel();
            info!(vol, "monitoring stopped");
        }
        lock(&self.monitor.tasks).remove(&vol.to_owned());
        lock(&self.monitor.again).remove(vol);
        self.monitor.reset_backoff(vol);
    }

    /// Watches the permanent lsid of a device; schedules the volume when it moves.
    async fn watch(self: Arc<Self>, vol: Arc<Vol>, path: String, token: CancellationToken) {
        let mut dev: Option<Device> = None;
        let mut last: Option<u64> = None;
        while !token.is_cancelled() {
            let d = match &dev {
                Some(d) => Arc::clone(d),
                None => {
                    let s2 = Arc::clone(&self);
                    let p2 = path.clone();
                    match blocking(move || s2.devices.open(&p2)).await {
                        Ok(Ok(d)) => {
                            dev = Some(Arc::clone(&d));
                            d
                        }
                        Ok(Err(e)) => {
                            warn!(vol = %vol.name, "watching {path}: {e}");
                            sleep_or_cancel(&token, WATCH_STEP).await;
                            continue;
                        }
                        Err(_) => return,
                    }
                }
            };
            let r = blocking(move || -> walb_kernel::Result<u64> {
                let cur = d.lsids()?.permanent;
                // Returns at once if it moved since; else waits for it to.
                d.wait_for_permanent(cur, WATCH_STEP)?;
                Ok(cur)
            })
            .await;
            match r {
                Ok(Ok(cur)) => {
                    if last != Some(cur) {
                        if last.is_some() {
                            self.monitor.push(&vol.name, BULK_DELAY);
                        }
                        last = Some(cur);
                    }
                }
                Ok(Err(e)) => {
                    warn!(vol = %vol.name, "watching {path}: {e}");
                    dev = None;
                    sleep_or_cancel(&token, WATCH_STEP).await;
                }
                Err(_) => return,
            }
        }
        debug!(vol = %vol.name, "watcher ended");
    }

    /// The dispatcher: runs due volumes, at most `--bg` at once, one worker per volume.
    pub(crate) async fn dispatch(self: Arc<Self>) {
        let sem = Arc::new(Semaphore::new(self.ctx.bg));
        loop {
            let now = self.ctx.clock.instant();
            let (due, next) = {
                let mut q = lock(&self.monitor.tasks);
                let due = q.pop_due(now);
                (due, q.next_due())
            };
            if let Some(name) = due {
                if lock(&self.monitor.running).contains(&name) {
                    // Runs again when its worker ends, not after a fixed delay.
                    lock(&self.monitor.again).insert(name);
                    continue;
                }
                let permit = tokio::select! {
                    p = Arc::clone(&sem).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = self.ctx.shutdown.cancelled() => return,
                };
                lock(&self.monitor.running).insert(name.clone());
                let me = Arc::clone(&self);
                tokio::spawn(async move {
                    me.run_task(&name).await;
                    lock(&me.monitor.running).remove(&name);
                    drop(permit);
                    // Unless the worker scheduled itself (a delay, a backoff).
                    if lock(&me.monitor.again).remove(&name)
                        && !lock(&me.monitor.tasks).contains(&name)
                    {
                        me.monitor.push(&name, Duration::ZERO);
                    }
                    me.monitor.wake.notify_one();
                });
                continue;
            }
            let wait = next
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = self.ctx.clock.sleep(wait) => {}
                _ = self.monitor.wake.notified() => {}
                _ = self.ctx.shutdown.cancelled() => return,
            }
        }
    }

    /// One background run for a volume (walb-tools' `StorageWorker`).
    async fn run_task(self: &Arc<Self>, name: &str) {
        let Some(vol) = self.get_vol(name) else {
            return;
        };
        let core = &vol.core;
        if core.stop_state().is_stopping() || self.ctx.is_shutting_down() {
            return;
        }
        let st = core.state();
        if matches!(st, S::StartStandby | S::StartTarget) {
            // The start command is still committing.
            self.monitor.push(name, BULK_DELAY);
            return;
        }
        if !WLOG_SEND.contains(&st) && !WLOG_REMOVE.contains(&st) {
            return;
        }
        if !core.actions().is_idle() {
            self.monitor.push_force(name, BULK_DELAY);
            return;
        }
        match self.is_overflow(&vol).await {
            Ok(false) => {}
            Ok(true) => {
                error!(vol = name, state = ?st, "the log overflowed");
                if st == S::Target {
                    self.stop_on_overflow(&vol);
                }
                return;
            }
            Err(e) => {
                warn!(vol = name, "{}", e.message);
                self.retry(name);
                return;
            }
        }
        if st == S::Standby {
            let Ok(_g) = core.begin_action(WLOG_REMOVE, WLOG_REMOVE_ACTION, None) else {
                self.monitor.push_force(name, BULK_DELAY);
                return;
            };
            if let Err(e) = self.free_all(&vol).await {
                warn!(
                    vol = name,
                    "freeing the logs of a standby volume: {}", e.message
                );
                self.retry(name);
            }
            return;
        }
        let Ok(g) = core.begin_action(WLOG_SEND, WLOG_SEND_ACTION, None) else {
            self.monitor.push_force(name, BULK_DELAY);
            return;
        };
        let r = ship::step(self, &vol).await;
        drop(g);
        match r {
            Ok(next) => {
                self.monitor.reset_backoff(name);
                match next {
                    Next::Idle => {}
                    Next::After(d) => self.monitor.push(name, d),
                }
            }
            Err(e) => {
                warn!(vol = name, "wlog transfer failed: {e}");
                self.retry(name);
            }
        }
    }

    fn retry(&self, name: &str) {
        let d = self
            .monitor
            .next_delay(name, self.cfg.delay, self.cfg.max_delay);
        debug!(
            vol = name,
            delay_ms = d.as_millis() as u64,
            "retry scheduled"
        );
        self.monitor.push_force(name, d);
    }

    async fn is_overflow(&self, vol: &Arc<Vol>) -> Result<bool, WireError> {
        let path = vol.meta_copy()?.wdev_path;
        let dev = self.devices.clone();
        let v = Arc::clone(vol);
        blocking(move || {
            dev.open(&path)
                .and_then(|d| d.is_overflow())
                .map_err(|e| super::dev_error(&v.name, &path, &e))
        })
        .await?
    }

    /// Target → StopTarget → Stopped after an overflow.
    fn stop_on_overflow(&self, vol: &Arc<Vol>) {
        let txn = match vol.core.begin(&[S::Target], S::StopTarget) {
            Ok(t) => t,
            Err(e) => {
                warn!(vol = %vol.name, "cannot stop after overflow: {e}");
                return;
            }
        };
        self.stop_monitoring(&vol.name);
        match txn.commit(S::Stopped) {
            Ok(()) => error!(
                vol = %vol.name,
                "stopped: the log overflowed; {}",
                super::snap::OVERFLOW_RECOVERY
            ),
            Err(e) => error!(vol = %vol.name, "stopping after overflow: {e}"),
        }
    }

    /// Standby: frees every log up to `prev_written` (after a checkpoint).
    async fn free_all(&self, vol: &Arc<Vol>) -> Result<(), WireError> {
        let path = vol.meta_copy()?.wdev_path;
        let dev = self.devices.clone();
        let v = Arc::clone(vol);
        let node = self.ctx.node.clone();
        blocking(move || {
            let r = dev.open(&path).and_then(|d| {
                let l = free_logs(&*d, u64::MAX)?;
                publish_usage(&node, &v.name, &*d, &l);
                Ok(())
            });
            r.map_err(|e| super::dev_error(&v.name, &path, &e))
        })
        .await?
    }
}

async fn sleep_or_cancel(token: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = token.cancelled() => {}
    }
}
