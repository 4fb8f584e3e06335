//! The storage's controller commands (walb-tools.md §2.1, §3.1, §5.15).
//!
//! | command | transition | notes |
//! |---|---|---|
//! | `init-vol VOL WDEV` | Clear → InitVol → SyncReady | the device must open and not belong to another volume |
//! | `clear-vol` | SyncReady → ClearVol → Clear | the directory is removed |
//! | `reset-vol [gid]` | Stopped → Reset → SyncReady | log reset, records restart at gid |
//! | `start target` | Stopped → StartTarget → Target | refused after an overflow; monitoring starts |
//! | `start standby` | SyncReady → StartStandby → Standby | an overflowed log is reset first |
//! | `stop [graceful\|force]` | Target → StopTarget → Stopped, Standby → StopStandby → SyncReady | asynchronous |
//! | `snapshot` | (Target, Stopped) | explicit snapshot at the latest lsid; replies its gid |
//! | `kick`, `set-full-scan-bps`, `resize` | | |
//!
//! `full-bkp` is in `full`. Refusals carry the most specific code and name the volume, its
//! state and what is needed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info};
use walb_wire::msg::{Command, ErrorCode, Reply, StartMode, StopMode, Uuid, WireError};
use walb_wire::Call;

use crate::session::{answer, blocking, refuse};
use crate::state::storage::{StorageState as S, RESIZE_ACCEPT, SNAPSHOT_ACCEPT, STOP_ACCEPT};
use crate::state::StopState;
use crate::vol::VolError;

use super::snap::{self, Snaps};
use super::{dev_error, meta_error, snap_error, vol, Storage, Vol};

fn stopping(vol: &str) -> WireError {
    VolError::Stopping {
        vol: vol.to_owned(),
    }
    .into()
}

impl Storage {
    /// Answers a synchronous command.
    pub(crate) async fn command(self: &Arc<Self>, c: Command) -> Result<Reply, WireError> {
        match c {
            Command::InitVol { vol, wdev_path } => self.init_vol(&vol, wdev_path).await,
            Command::ClearVol { vol } => self.clear_vol(&vol).await,
            Command::ResetVol { vol, gid } => self.reset_vol(&vol, gid.unwrap_or(0)).await,
            Command::Start { vol, mode } => self.start_vol(&vol, mode).await,
            Command::Snapshot { vol } => {
                let v = self.existing_vol(&vol)?;
                v.core.require(SNAPSHOT_ACCEPT)?;
                if v.core.stop_state().is_stopping() {
                    return Err(stopping(&vol));
                }
                let (s2, v2) = (Arc::clone(self), Arc::clone(&v));
                let gid = blocking(move || s2.take_snapshot(&v2)).await??;
                self.monitor.push_force(&vol, Duration::ZERO);
                info!(vol = %vol, gid, "snapshot taken");
                Ok(Reply::Gid(gid))
            }
            Command::Kick { .. } => {
                self.proxies.kick();
                let n = self.monitor.kick();
                info!(tasks = n, "kick");
                Ok(Reply::Done)
            }
            Command::SetFullScanBps(bps) => {
                self.full_scan_bps.store(bps, Ordering::Relaxed);
                info!(bps, "full-scan limit set");
                Ok(Reply::Done)
            }
            Command::Resize { vol, size_lb, .. } => self.resize(&vol, size_lb).await,
            Command::Bind(_) => Err(refuse(
                ErrorCode::Unsupported,
                "a storage takes no requests from peers: the proxies and the archive it \
                 sends to are its --proxy and --archive options (ID@HOST:PORT)",
            )),
            other => Err(refuse(
                ErrorCode::Unsupported,
                format!("the storage does not run {}", command_name(&other)),
            )),
        }
    }

    async fn init_vol(
        self: &Arc<Self>,
        name: &str,
        path: Option<String>,
    ) -> Result<Reply, WireError> {
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("init-vol {name}: the storage needs the WalB device path"),
            ));
        };
        let dev_name = walb_device::name_of(&path).map_err(|e| {
            refuse(
                ErrorCode::BadRequest,
                format!("init-vol {name}: {path}: {e}"),
            )
        })?;
        let vol = self.vol_or_clear(name)?;
        let _serial = self.init_lock.lock().await;
        // The state first (the clearest refusal), then the device; the transaction
        // begins once the request is known to be good.
        vol.core.require(&[S::Clear])?;
        for other in self.all_vols() {
            if other.name == name {
                continue;
            }
            let used = other
                .meta()
                .as_ref()
                .map(|m| walb_device::name_of(&m.wdev_path).ok() == Some(dev_name.clone()))
                .unwrap_or(false);
            if used {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!(
                        "init-vol {name}: device {dev_name} ({path}) is already used by volume {}",
                        other.name
                    ),
                ));
            }
        }
        let (s2, p2) = (Arc::clone(self), path.clone());
        blocking(move || s2.devices.open(&p2).map(|_| ()))
            .await?
            .map_err(|e| {
                refuse(
                    ErrorCode::NotFound,
                    format!("init-vol {name}: device {path} cannot be opened: {e}"),
                )
            })?;
        let txn = vol.core.begin(&[S::Clear], S::InitVol)?;
        let (dir, p2) = (vol.dir.clone(), path.clone());
        let now = self.ctx.clock.now_s();
        let meta = blocking(move || vol::init(&dir, &p2, now))
            .await?
            .map_err(|e| meta_error(name, &e))?;
        *vol.meta() = Some(meta);
        if let Err(e) = txn.commit(S::SyncReady) {
            *vol.meta() = None;
            let _ = vol::remove(&vol.dir);
            return Err(e.into());
        }
        // The state is durable: the directory is a whole volume (a marker left by a
        // failure here is removed at the next start).
        let dir = vol.dir.clone();
        if let Err(e) = blocking(move || crate::persist::voldir::end(&dir)).await? {
            error!(
                vol = name,
                "removing the marker of the new volume directory: {e}"
            );
        }
        info!(vol = name, path = %path, "volume initialized");
        Ok(Reply::Done)
    }

    async fn clear_vol(self: &Arc<Self>, name: &str) -> Result<Reply, WireError> {
        let vol = self.vol_or_clear(name)?;
        let txn = vol.core.begin(&[S::SyncReady], S::ClearVol)?;
        let dir = vol.dir.clone();
        blocking(move || vol::remove(&dir))
            .await?
            .map_err(|e| meta_error(name, &e))?;
        *vol.meta() = None;
        txn.commit(S::Clear)?;
        info!(vol = name, "volume cleared");
        Ok(Reply::Done)
    }

    async fn reset_vol(self: &Arc<Self>, name: &str, gid: u64) -> Result<Reply, WireError> {
        let vol = self.vol_or_clear(name)?;
        if vol.core.stop_state().is_stopping() {
            return Err(stopping(name));
        }
        let txn = vol.core.begin(&[S::Stopped], S::Reset)?;
        let (s2, v2) = (Arc::clone(self), Arc::clone(&vol));
        blocking(move || s2.reset_wlog(&v2, gid, true)).await??;
        txn.commit(S::SyncReady)?;
        let dir = vol.dir.clone();
        if let Err(e) = blocking(move || vol::remove_reset_intent(&dir)).await? {
            error!(vol = name, "removing the reset intent: {e}");
        }
        info!(vol = name, gid, "volume reset");
        Ok(Reply::Done)
    }

    async fn start_vol(
        self: &Arc<Self>,
        name: &str,
        mode: Option<StartMode>,
    ) -> Result<Reply, WireError> {
        let Some(mode) = mode else {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("start {name}: the storage needs a mode, target or standby"),
            ));
        };
        let vol = self.vol_or_clear(name)?;
        if vol.core.stop_state().is_stopping() {
            return Err(stopping(name));
        }
        let (from, temp, to) = match mode {
            StartMode::Target => (S::Stopped, S::StartTarget, S::Target),
            StartMode::Standby => (S::SyncReady, S::StartStandby, S::Standby),
        };
        let txn = vol.core.begin(&[from], temp)?;
        let overflow = self.overflow_of(&vol).await?;
        if overflow {
            match mode {
                StartMode::Target => {
                    return Err(refuse(
                        ErrorCode::WrongState,
                        format!(
                            "volume {name}: the log has overflowed: {}",
                            super::snap::OVERFLOW_RECOVERY
                        ),
                    ))
                }
                StartMode::Standby => {
                    info!(vol = name, "log overflowed: resetting it before standby");
                    let (s2, v2) = (Arc::clone(self), Arc::clone(&vol));
                    blocking(move || s2.reset_wlog(&v2, 0, false)).await??;
                }
            }
        }
        self.start_monitoring(&vol)?;
        if let Err(e) = txn.commit(to) {
            self.stop_monitoring(name);
            return Err(e.into());
        }
        info!(vol = name, state = to.name(), "volume started");
        Ok(Reply::Done)
    }

    async fn overflow_of(&self, vol: &Arc<Vol>) -> Result<bool, WireError> {
        let path = vol.meta_copy()?.wdev_path;
        let (devs, v2) = (Arc::clone(&self.devices), Arc::clone(vol));
        blocking(move || {
            devs.open(&path)
                .and_then(|d| d.is_overflow())
                .map_err(|e| dev_error(&v2.name, &path, &e))
        })
        .await?
    }

    async fn resize(self: &Arc<Self>, name: &str, size_lb: u64) -> Result<Reply, WireError> {
        if size_lb == 0 {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("resize {name}: the new size must be given (not 0)"),
            ));
        }
        let vol = self.existing_vol(name)?;
        vol.core.require(RESIZE_ACCEPT)?;
        if vol.core.stop_state().is_stopping() {
            return Err(stopping(name));
        }
        let path = vol.meta_copy()?.wdev_path;
        let (devs, v2) = (Arc::clone(&self.devices), Arc::clone(&vol));
        blocking(move || {
            devs.open(&path)
                .and_then(|d| d.resize(size_lb))
                .map_err(|e| dev_error(&v2.name, &path, &e))
        })
        .await??;
        info!(vol = name, size_lb, "device resized");
        Ok(Reply::Done)
    }

    /// Resets the log of `vol` (blocking): the device's log is cleared (new uuid), the
    /// records restart at `gid`, the uuid is the new superblock's. An intent file makes a
    /// crash in the middle finish at boot (in SyncReady); with `keep_intent` it stays for
    /// the caller to remove once SyncReady is on disk (reset-vol, which runs from
    /// Stopped).
    pub(crate) fn reset_wlog(
        &self,
        vol: &Vol,
        gid: u64,
        keep_intent: bool,
    ) -> Result<Uuid, WireError> {
        let mut g = vol.meta();
        let Some(meta) = g.as_mut() else {
            return Err(vol.no_meta());
        };
        let path = meta.wdev_path.clone();
        let dev = self.open_dev(vol, &path)?;
        let me = |e: vol::MetaError| meta_error(&vol.name, &e);
        // The gids handed out so far stay taken: written before anything is reset.
        let handed_out = meta.newest_gid();
        if let Some(g) = handed_out.filter(|g| Some(*g) != meta.handed_out) {
            vol::save_handed_out(&vol.dir, g).map_err(me)?;
        }
        meta.handed_out = handed_out;
        vol::write_reset_intent(&vol.dir, gid).map_err(me)?;
        if let Err(e) = dev.reset_wal() {
            // Nothing was reset: no intent to finish.
            let _ = vol::remove_reset_intent(&vol.dir);
            return Err(dev_error(&vol.name, &path, &e));
        }
        let sb = super::read_superblock(&*dev).map_err(|e| dev_error(&vol.name, &path, &e))?;
        let snaps = Snaps::reset(gid, self.ctx.clock.now_s());
        vol::save_snaps(&vol.dir, &snaps).map_err(me)?;
        vol::save_uuid(&vol.dir, &sb.uuid).map_err(me)?;
        if !keep_intent {
            vol::remove_reset_intent(&vol.dir).map_err(me)?;
        }
        meta.snaps = snaps;
        meta.uuid = sb.uuid;
        info!(vol = %vol.name, gid, uuid = %walb_kernel::wlog::uuid_hex(&sb.uuid), "log reset");
        Ok(sb.uuid)
    }

    /// Takes an explicit snapshot at the device's latest lsid (blocking); returns its gid.
    pub(crate) fn take_snapshot(&self, vol: &Vol) -> Result<u64, WireError> {
        let mut g = vol.meta();
        let Some(meta) = g.as_mut() else {
            return Err(vol.no_meta());
        };
        let path = meta.wdev_path.clone();
        let dev = self.open_dev(vol, &path)?;
        let de = |e: walb_kernel::Error| dev_error(&vol.name, &path, &e);
        let info = dev.info().map_err(de)?;
        let lsids = dev.lsids().map_err(de)?;
        let overflow = dev.is_overflow().map_err(de)?;
        let max_pb = snap::max_wlog_send_pb(self.cfg.max_wlog_send_mb, info.pbs);
        let mut snaps = meta.snaps.clone();
        let rec = snaps
            .take(
                lsids.latest,
                false,
                self.ctx.clock.now_s(),
                max_pb,
                overflow,
            )
            .map_err(|e| snap_error(&vol.name, &e))?;
        vol::save_queue(&vol.dir, &snaps).map_err(|e| meta_error(&vol.name, &e))?;
        meta.snaps = snaps;
        Ok(rec.gid)
    }

    /// `stop`: accepted at once, then waits for a steady state and no running action.
    pub(crate) async fn cmd_stop(self: Arc<Self>, call: Call, name: String, mode: StopMode) {
        let pre = (|| {
            let force = match mode {
                StopMode::Empty => {
                    return Err(refuse(
                        ErrorCode::BadRequest,
                        format!("stop {name}: 'empty' is for proxies; use graceful or force"),
                    ))
                }
                StopMode::Force => true,
                StopMode::Graceful => false,
            };
            let vol = self.vol_or_clear(&name)?;
            let st = vol.core.state();
            if st.is_steady() && !STOP_ACCEPT.contains(&st) {
                return Err(refuse(
                    ErrorCode::WrongState,
                    format!(
                        "volume {name} is {}; stop needs Target or Standby",
                        st.name()
                    ),
                ));
            }
            if vol.core.stop_state().is_stopping() {
                return Err(refuse(
                    ErrorCode::Stopped,
                    format!("volume {name} is already stopping"),
                ));
            }
            vol.core.set_stop(if force {
                StopState::ForceStopping
            } else {
                StopState::Stopping
            });
            Ok(vol)
        })();
        let vol = match pre {
            Ok(v) => v,
            Err(e) => {
                answer(call, Err(e)).await;
                return;
            }
        };
        answer(call, Ok(Reply::Accepted)).await;
        let r = self.finish_stop(&vol).await;
        vol.core.set_stop(StopState::NotStopping);
        match r {
            Ok(to) => info!(vol = %name, state = to.name(), "stopped"),
            Err(e) => error!(vol = %name, "stop failed: {e}"),
        }
    }

    async fn finish_stop(&self, vol: &Arc<Vol>) -> Result<S, WireError> {
        if !vol.core.wait_idle(self.cfg.stop_timeout).await {
            return Err(refuse(
                ErrorCode::Busy,
                format!(
                    "volume {}: still {} with {:?} running after {:?}",
                    vol.name,
                    vol.core.state().name(),
                    vol.core.actions().running(),
                    self.cfg.stop_timeout
                ),
            ));
        }
        let (from, temp, to) = match vol.core.state() {
            S::Target => (S::Target, S::StopTarget, S::Stopped),
            S::Standby => (S::Standby, S::StopStandby, S::SyncReady),
            other => {
                return Err(refuse(
                    ErrorCode::WrongState,
                    format!(
                        "volume {} is {} now; stop needs Target or Standby",
                        vol.name,
                        other.name()
                    ),
                ))
            }
        };
        let txn = vol.core.begin(&[from], temp)?;
        self.stop_monitoring(&vol.name);
        txn.commit(to)?;
        Ok(to)
    }
}

/// The operator's name of a command, for refusals.
fn command_name(c: &Command) -> &'static str {
    match c {
        Command::ArchiveInfo(_) => "archive-info",
        Command::Apply { .. } => "apply",
        Command::Bind(_) => "bind",
        Command::ClearVol { .. } => "clear-vol",
        Command::DelCold { .. } => "del-cold",
        Command::DelRestored { .. } => "del-restored",
        Command::SetSnapshotsExplicit { .. } => "enable/disable-snapshot",
        Command::FullBackup { .. } => "full-bkp",
        Command::GcDiff { .. } => "gc-diff",
        Command::HashBackup { .. } => "hash-bkp",
        Command::InitVol { .. } => "init-vol",
        Command::Kick { .. } => "kick",
        Command::Merge { .. } => "merge",
        Command::Replicate(_) => "replicate",
        Command::Resize { .. } => "resize",
        Command::ResetVol { .. } => "reset-vol",
        Command::Restore { .. } => "restore",
        Command::SetFullScanBps(_) => "set-full-scan-bps",
        Command::Shutdown { .. } => "shutdown",
        Command::Snapshot { .. } => "snapshot",
        Command::Start { .. } => "start",
        Command::Stop { .. } => "stop",
        Command::VirtFullScan { .. } => "virt-full-scan",
        Command::SetRetention(_) => "retention",
    }
}
