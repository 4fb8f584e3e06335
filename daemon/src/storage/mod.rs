//! The storage role: runs beside WalB devices, ships their logs to proxies and drives
//! full backups to the primary archive (walb-tools.md §3.1, §5.2, §5.4, §5.19).
//!
//! Layout:
//!
//! - [`snap`]: gid allocation and transfer planning, pure.
//! - [`vol`]: the persisted metadata of a volume (path, uuid, done record, queue, last
//!   full backup, reset intent).
//! - [`dev`]: the injectable device access ([`DeviceAccess`]).
//! - `cmd`, `query`: the controller commands and queries.
//! - `monitor`: the per-volume log watchers, the delayed task queue and its dispatcher,
//!   the worker that ships (Target) or frees (Standby) logs, and the overflow stop.
//! - `ship`: the wlog-transfer client (Protocol 1) and the proxy availability list.
//! - `full`: the full backup client (Protocol 3).
//!
//! Consistency: every file is replaced atomically and every state change is a
//! [`VolCore`] transaction whose steady end is persisted before it shows. A daemon killed
//! at any instant restarts from its base directory ([`start_with`]): temporary states
//! roll back (only steady states are on disk), an interrupted `init-vol` or `clear-vol`
//! leaves no volume (and a directory the daemon did not create is left alone), an interrupted log reset is finished (the volume is SyncReady), the
//! done record only moves after a proxy acknowledged a durable wdiff, and Target/Standby
//! volumes resume their monitoring.

pub mod dev;
pub mod snap;
pub mod vol;

mod backup;
mod cmd;
mod full;
mod hash;
mod monitor;
mod query;
mod ship;
mod tsdelta;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{error, info, warn};
use walb_wire::msg::{Command, ErrorCode, Request, WireError};
use walb_wire::{IncomingCall, Role};

use crate::opts::StorageOpts;
use crate::peers::PeerAddr;
use crate::persist;
use crate::session::{answer, kernel_error, refuse, Ctx, Handler};
use crate::state::storage::StorageState;
use crate::vol::VolCore;

pub use dev::{DataRead, Device, DeviceAccess, SystemDevices};

use monitor::Monitor;
use ship::Proxies;
use snap::Snaps;
use vol::VolMeta;

/// What the storage runs with (from [`StorageOpts`], or set by tests).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The primary archive.
    pub archive: PeerAddr,
    /// Proxies in priority order.
    pub proxies: Vec<PeerAddr>,
    /// Most wlog MiB per transfer (also the gid spacing).
    pub max_wlog_send_mb: u64,
    /// Implicit snapshot interval.
    pub snapshot_interval_s: u64,
    /// First retry delay of a failed transfer.
    pub delay: Duration,
    /// Longest retry delay.
    pub max_delay: Duration,
    /// Full-scan read limit, bytes per second (0 = none).
    pub full_scan_bps: u64,
    /// How often an unavailable proxy is checked again.
    pub proxy_check_interval: Duration,
    /// How long `stop` waits for running work.
    pub stop_timeout: Duration,
    /// zstd level of full-backup bulks (`None`: raw), from `--sync-compress`.
    pub sync_level: Option<i32>,
    /// How often the primary archive's latest snapshots are gathered (`get ts-delta`).
    pub ts_delta_interval: Duration,
}

impl TryFrom<&StorageOpts> for StorageConfig {
    type Error = anyhow::Error;

    fn try_from(o: &StorageOpts) -> Result<Self> {
        let archive = PeerAddr::parse(Role::Archive, &o.archive)
            .map_err(|e| anyhow::anyhow!("--archive {e}"))?;
        let proxies = o
            .proxy
            .iter()
            .map(|p| PeerAddr::parse(Role::Proxy, p).map_err(|e| anyhow::anyhow!("--proxy {e}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(StorageConfig {
            archive,
            proxies,
            max_wlog_send_mb: o.max_wlog_send_mb,
            snapshot_interval_s: o.snapshot_interval,
            delay: Duration::from_secs(o.delay),
            max_delay: Duration::from_secs(o.max_delay),
            full_scan_bps: o.full_scan_bps,
            proxy_check_interval: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(60),
            sync_level: crate::bulk::sync_level(&o.sync_compress).unwrap_or(Some(1)),
            ts_delta_interval: Duration::from_secs(o.ts_delta_interval),
        })
    }
}

/// One storage volume: its live state and its persisted metadata.
pub(crate) struct Vol {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) core: Arc<VolCore<StorageState>>,
    /// `None` while Clear (or when the files could not be read: see `broken`).
    meta: Mutex<Option<VolMeta>>,
    /// Why the metadata could not be loaded at boot.
    broken: Option<String>,
}

impl Vol {
    /// The metadata, locked (never held across an `.await`).
    pub(crate) fn meta(&self) -> MutexGuard<'_, Option<VolMeta>> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the metadata, or why there is none.
    pub(crate) fn meta_copy(&self) -> Result<VolMeta, WireError> {
        self.meta().clone().ok_or_else(|| self.no_meta())
    }

    /// The refusal for a volume without metadata.
    pub(crate) fn no_meta(&self) -> WireError {
        match &self.broken {
            Some(why) => refuse(
                ErrorCode::Internal,
                format!("volume {}: metadata unreadable: {why}", self.name),
            ),
            None => not_found(&self.name),
        }
    }
}

/// The storage daemon.
pub struct Storage {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) cfg: StorageConfig,
    pub(crate) devices: Arc<dyn DeviceAccess>,
    vols: Mutex<BTreeMap<String, Arc<Vol>>>,
    /// Serialises init-vol (the device-in-use check).
    init_lock: tokio::sync::Mutex<()>,
    pub(crate) monitor: Monitor,
    pub(crate) proxies: Proxies,
    pub(crate) full_scan_bps: AtomicU64,
    /// The primary archive's latest snapshots, as last gathered.
    ts_delta: tsdelta::TsDelta,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("id", &self.ctx.id)
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Starts the storage role with the host's devices.
pub async fn start(ctx: Arc<Ctx>, opts: StorageOpts) -> Result<Arc<Storage>> {
    crate::bulk::sync_level(&opts.sync_compress)
        .map_err(|e| anyhow::anyhow!("--sync-compress {e}"))?;
    start_with(
        ctx,
        StorageConfig::try_from(&opts)?,
        Arc::new(SystemDevices),
    )
    .await
}

/// Starts the storage role: loads every volume of the base directory (finishing or
/// rolling back what a crash interrupted), resumes the monitoring of Target and Standby
/// volumes, and starts the dispatcher and the proxy checks.
pub async fn start_with(
    ctx: Arc<Ctx>,
    cfg: StorageConfig,
    devices: Arc<dyn DeviceAccess>,
) -> Result<Arc<Storage>> {
    if cfg.proxies.is_empty() {
        anyhow::bail!("no proxy given (--proxy ID@HOST:PORT,...)");
    }
    let st = Arc::new(Storage {
        monitor: Monitor::new(ctx.clock.clone()),
        proxies: Proxies::new(&cfg.proxies),
        full_scan_bps: AtomicU64::new(cfg.full_scan_bps),
        ctx,
        cfg,
        devices,
        vols: Mutex::new(BTreeMap::new()),
        init_lock: tokio::sync::Mutex::new(()),
        ts_delta: tsdelta::TsDelta::default(),
    });
    let s2 = Arc::clone(&st);
    let names = tokio::task::spawn_blocking(move || s2.scan_base())
        .await
        .context("listing volumes")??;
    for name in names {
        let s2 = Arc::clone(&st);
        let n2 = name.clone();
        let vol = tokio::task::spawn_blocking(move || s2.boot_vol(&n2))
            .await
            .context("loading a volume")?;
        match vol {
            Ok(v) => {
                let state = v.core.state();
                info!(vol = %name, state = state.name(), "volume loaded");
                st.vols_lock().insert(name.clone(), Arc::clone(&v));
                if matches!(state, StorageState::Target | StorageState::Standby) {
                    if let Err(e) = st.start_monitoring(&v) {
                        error!(vol = %name, "cannot resume monitoring: {}", e.message);
                    }
                }
            }
            Err(e) => error!(vol = %name, "cannot load volume: {e:#}"),
        }
    }
    tokio::spawn(Arc::clone(&st).dispatch());
    tokio::spawn(Arc::clone(&st).check_proxies());
    st.log_ts_delta();
    tokio::spawn(Arc::clone(&st).gather_loop());
    Ok(st)
}

impl Storage {
    fn vols_lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Vol>>> {
        self.vols.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The volume directories of the base directory, once the interrupted init-vols and
    /// clear-vols are removed (what is not the daemon's is left alone, with a warning).
    fn scan_base(&self) -> Result<Vec<String>> {
        let scan = self.ctx.base.scan(&vol::DIR_RULE)?;
        for name in &scan.interrupted {
            warn!(vol = %name, "removing an interrupted init-vol or clear-vol");
            let dir = self.ctx.base.vol_dir(name);
            if let Err(e) = persist::voldir::remove_marked(&dir) {
                error!(vol = %name, "cannot remove: {e}");
            }
        }
        Ok(scan.vols)
    }

    /// Loads one volume directory at boot.
    fn boot_vol(&self, name: &str) -> Result<Arc<Vol>> {
        let dir = self.ctx.base.vol_dir(name);
        persist::remove_temp_files(&dir)?;
        let state_file = dir.join(vol::file::STATE);
        let Some(mut state) = VolCore::<StorageState>::load_state(&state_file)? else {
            anyhow::bail!(
                "{} does not hold a storage state; the volume is left alone",
                state_file.display()
            );
        };
        let (meta, broken) = match vol::load(&dir) {
            Ok(m) => (Some(m), None),
            Err(e) => {
                error!(vol = %name, "metadata unreadable: {e}");
                (None, Some(e.to_string()))
            }
        };
        let mut meta = meta;
        let mut finished_reset = false;
        if let (Some(m), Some(gid)) = (meta.as_mut(), vol::read_reset_intent(&dir)?) {
            warn!(vol = %name, gid, "finishing an interrupted log reset");
            self.finish_reset(&dir, m, gid);
            state = StorageState::SyncReady;
            finished_reset = true;
        }
        let core = VolCore::new(name, state, Some(state_file), Some(self.ctx.publisher()));
        if finished_reset {
            // Every log reset ends in SyncReady; the intent goes once that is on disk.
            core.force(state)?;
            vol::remove_reset_intent(&dir)?;
        }
        Ok(Arc::new(Vol {
            name: name.to_owned(),
            dir,
            core,
            meta: Mutex::new(meta),
            broken,
        }))
    }

    /// Finishes the records of a log reset whose intent was found at boot: they restart
    /// at `gid` and the uuid is the device's (when it can be read).
    fn finish_reset(&self, dir: &std::path::Path, m: &mut VolMeta, gid: u64) {
        let snaps = Snaps::reset(gid, self.ctx.clock.now_s());
        let uuid = self
            .devices
            .open(&m.wdev_path)
            .and_then(|d| read_superblock(&*d))
            .map(|sb| sb.uuid);
        let res = (|| -> Result<(), vol::MetaError> {
            vol::save_snaps(dir, &snaps)?;
            if let Ok(u) = &uuid {
                vol::save_uuid(dir, u)?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => {
                m.snaps = snaps;
                if let Ok(u) = uuid {
                    m.uuid = u;
                }
            }
            Err(e) => error!("finishing the log reset in {}: {e}", dir.display()),
        }
    }

    /// The volume `name` if the daemon knows it.
    pub(crate) fn get_vol(&self, name: &str) -> Option<Arc<Vol>> {
        self.vols_lock().get(name).cloned()
    }

    /// The volume `name`, created Clear if unknown (the name is checked).
    pub(crate) fn vol_or_clear(&self, name: &str) -> Result<Arc<Vol>, WireError> {
        persist::check_vol_name(name).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
        let mut g = self.vols_lock();
        if let Some(v) = g.get(name) {
            return Ok(Arc::clone(v));
        }
        let dir = self.ctx.base.vol_dir(name);
        let core = VolCore::new(
            name,
            StorageState::Clear,
            Some(dir.join(vol::file::STATE)),
            Some(self.ctx.publisher()),
        );
        let v = Arc::new(Vol {
            name: name.to_owned(),
            dir,
            core,
            meta: Mutex::new(None),
            broken: None,
        });
        g.insert(name.to_owned(), Arc::clone(&v));
        Ok(v)
    }

    /// The volume `name`, which must not be Clear.
    pub(crate) fn existing_vol(&self, name: &str) -> Result<Arc<Vol>, WireError> {
        match self.get_vol(name) {
            Some(v) if v.core.state() != StorageState::Clear => Ok(v),
            _ => Err(not_found(name)),
        }
    }

    /// Every known volume, by name.
    pub(crate) fn all_vols(&self) -> Vec<Arc<Vol>> {
        self.vols_lock().values().cloned().collect()
    }

    /// Returns once `vol` is force-stopped or the daemon shuts down by force (to abort a
    /// transfer waiting for its peer).
    pub(crate) async fn forced(&self, vol: &Vol) {
        while !(vol.core.stop_state().is_force() || self.ctx.is_force_shutdown()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens the device of a volume (blocking).
    pub(crate) fn open_dev(&self, vol: &Vol, path: &str) -> Result<Device, WireError> {
        self.devices
            .open(path)
            .map_err(|e| dev_error(&vol.name, path, &e))
    }
}

impl Handler for Storage {
    async fn handle(self: Arc<Self>, inc: IncomingCall) {
        match &inc.request {
            Request::Command(Command::FullBackup { vol, bulk_lb }) => {
                let (vol, bulk_lb) = (vol.clone(), *bulk_lb);
                return full::run(self, inc, vol, bulk_lb, full::SyncKind::Full).await;
            }
            Request::Command(Command::HashBackup { vol, bulk_lb }) => {
                let (vol, bulk_lb) = (vol.clone(), *bulk_lb);
                return full::run(self, inc, vol, bulk_lb, full::SyncKind::Hash).await;
            }
            _ => {}
        }
        let IncomingCall {
            peer,
            request,
            call,
            ..
        } = inc;
        match request {
            Request::Command(Command::Stop { vol, mode }) => self.cmd_stop(call, vol, mode).await,
            Request::Command(c) => {
                info!(%peer, command = ?c, "command");
                let r = self.command(c).await;
                if let Err(e) = &r {
                    info!(%peer, "refused: {e}");
                }
                answer(call, r).await
            }
            Request::Query(q) => {
                let r = self.query(q).await;
                answer(call, r).await
            }
            other => {
                let what = format!("{:?}", other.op_class());
                answer(
                    call,
                    Err(refuse(
                        ErrorCode::Unsupported,
                        format!("storage {} does not serve {what} requests", self.ctx.id),
                    )),
                )
                .await
            }
        }
    }

    async fn shutdown(self: Arc<Self>, force: bool) {
        info!(force, "storage stopping its monitoring");
        self.monitor.stop_all();
    }
}

/// The refusal for an unknown volume.
pub(crate) fn not_found(vol: &str) -> WireError {
    refuse(
        ErrorCode::NotFound,
        format!("volume {vol} does not exist here (state Clear); run init-vol first"),
    )
}

/// A device failure, naming the volume and the device.
pub(crate) fn dev_error(vol: &str, path: &str, e: &walb_kernel::Error) -> WireError {
    let w = kernel_error(e);
    WireError::new(
        w.code,
        format!("volume {vol}: device {path}: {}", w.message),
    )
}

/// A metadata failure (`wrong-state` for a directory the daemon did not create).
pub(crate) fn meta_error(vol: &str, e: &vol::MetaError) -> WireError {
    let code = match e {
        vol::MetaError::Persist(p) => p.wire_code(),
        _ => ErrorCode::Internal,
    };
    refuse(code, format!("volume {vol}: {e}"))
}

/// A refused snapshot operation.
pub(crate) fn snap_error(vol: &str, e: &snap::SnapError) -> WireError {
    let code = match e {
        snap::SnapError::Overflow | snap::SnapError::NoRecord => ErrorCode::WrongState,
        snap::SnapError::ZeroMax => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    refuse(code, format!("volume {vol}: {e}"))
}

/// Reads and validates the superblock of a device's log.
pub(crate) fn read_superblock(
    dev: &dyn walb_device::WalbDevice,
) -> walb_kernel::Result<walb_kernel::ldev::SuperBlock> {
    let f = dev.open_ldev()?;
    walb_kernel::ldev::SuperBlock::read(&f)
}
