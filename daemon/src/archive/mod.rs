//! The archive role: keeps base images and diffs, restores snapshots.
//!
//! Per volume (walb-tools.md §3.3, §4.8) an archive holds a base image written by a full
//! backup ([`full`], Protocol 3), the wdiffs received from proxies ([`wdiff`], Protocol 2)
//! and restored images of clean snapshots ([`restore`]). Images live in an
//! [`ImageBackend`] ([`backend`]; files here); metadata in the volume directory
//! ([`vol`]). Queries and status lines are in [`query`].
//!
//! Operations and their state transitions:
//! - `init-vol` Clear → InitVol → SyncReady; `clear-vol` SyncReady|Stopped → ClearVol →
//!   Clear; `reset-vol` Stopped|SyncReady → ResetVol → SyncReady; `start` Stopped → Start
//!   → Archived; `stop` (asynchronous: waits for running work) Archived → Stop → Stopped.
//!   All of them refuse to run beside any action.
//! - full backup SyncReady → FullSync → Archived; wdiff receive Archived → WdiffRecv →
//!   Archived.
//! - replication ([`repl`]): as the source, the action `ReplSyncAsClient`; as the
//!   destination SyncReady → FullSync → Archived (a first, full copy) and Archived →
//!   ReplSyncAsServer → Archived (diffs, resync).
//! - `bhash` ([`scan`]): the hash of a snapshot's virtual image.
//! - [`policy`]: built-in maintenance (retention, apply by age, merge, replication at
//!   intervals); [`retention`]: which snapshots stay, by default and per volume.
//! - `restore` and `del-restored` are actions (`Restore`, with its deny list).
//!
//! At start ([`start`]) interrupted init-vols and clear-vols are removed (directories the
//! daemon did not create are left alone, [`crate::persist::voldir`]), every volume
//! directory is loaded, temporary files are removed,
//! volumes whose metadata cannot back their state fall back to SyncReady, and wdiffs off
//! the chain from the base are deleted ([`walb_kernel::meta::DiffManager::gc`]).

pub mod admit;
pub mod backend;
pub mod full;
pub mod hash;
pub mod maint;
pub mod policy;
pub mod query;
pub mod repl;
pub mod restore;
pub mod retention;
pub mod scan;
pub mod vol;
pub mod wdiff;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use walb_kernel::diff::apply::DiscardPolicy;
use walb_kernel::meta::MetaDiff;
use walb_wire::msg::{BackupSync, Command, ErrorCode, Event, Reply, Request, StopMode};
use walb_wire::{IncomingCall, WireError};

use self::backend::{BackendError, FileBackend, ImageBackend};
use self::vol::{ArchiveVol, MetaError, VolMeta};
use crate::dto;
use crate::opts::ArchiveOpts;
use crate::peers::PeerBook;
use crate::persist::{self, voldir, DirKind, PersistError, VolRule};
use crate::session::{answer, blocking, refuse, Caller, Ctx, Handler};
use crate::state::archive::{ArchiveState as A, ACTIVE, ACTIVE_OR_STOPPED};
use crate::state::StopState;

/// What makes an archive volume directory: its state file.
pub const DIR_RULE: VolRule = VolRule::File(vol::STATE_FILE);

/// How long `stop` waits for running work before giving up.
pub const STOP_WAIT: Duration = Duration::from_secs(60);

/// The archive's tunables, from its options.
#[derive(Debug, Clone)]
pub struct Config {
    /// How discards are applied to restored images.
    pub discard: DiscardPolicy,
    /// fdatasync interval while writing images and wdiffs, bytes.
    pub fsync_bytes: u64,
    /// Most wdiffs opened at once per restore round (0 = unlimited).
    pub max_open: usize,
    /// Grow the base image when a larger volume size arrives.
    pub auto_resize: bool,
    /// Percentage of time a restore sleeps (throttling), 0–99.
    pub apply_sleep_pct: u32,
    /// Most wdiffs merged into one replication round.
    pub max_wdiff_send_nr: usize,
    /// zstd level of a full copy's bulks as a replication source (`None`: raw).
    pub sync_level: Option<i32>,
    /// The maintenance policy (off unless configured).
    pub policy: policy::Policy,
    /// How often the policy looks for work.
    pub policy_tick: Duration,
}

impl Config {
    /// The configuration of `opts`.
    pub fn from_opts(opts: &ArchiveOpts) -> Result<Config> {
        let discard = opts
            .discard
            .parse::<DiscardPolicy>()
            .map_err(|e| anyhow::anyhow!("--discard: {e}"))?;
        Ok(Config {
            discard,
            fsync_bytes: opts.fsync_interval_mb.max(1) << 20,
            max_open: opts.max_open,
            auto_resize: opts.auto_resize,
            apply_sleep_pct: opts.apply_sleep_pct.min(99),
            max_wdiff_send_nr: opts.max_wdiff_send_nr.max(1),
            sync_level: crate::bulk::sync_level(&opts.sync_compress)
                .map_err(|e| anyhow::anyhow!("--sync-compress {e}"))?,
            policy: policy::Policy::from_opts(opts)?,
            policy_tick: Duration::from_secs(opts.policy_tick_s.max(1)),
        })
    }
}

/// The archive daemon.
pub struct Archive {
    ctx: Arc<Ctx>,
    cfg: Config,
    backend: Arc<dyn ImageBackend>,
    vols: Mutex<BTreeMap<String, Arc<ArchiveVol>>>,
    /// Where each destination stood after the last replication (volume, destination).
    replicas: Mutex<BTreeMap<(String, String), walb_kernel::meta::MetaState>>,
    /// The peers bound to each volume.
    peers: PeerBook,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("id", &self.ctx.id)
            .field("backend", &self.backend.kind())
            .finish()
    }
}

/// Starts the archive role with the file backend.
pub async fn start(ctx: Arc<Ctx>, opts: ArchiveOpts) -> Result<Arc<Archive>> {
    let cfg = Config::from_opts(&opts)?;
    let loop_attach = if opts.restore_loop && !backend::is_root() {
        warn!("--restore-loop needs root; restored images stay plain files");
        false
    } else {
        opts.restore_loop
    };
    let backend = Arc::new(FileBackend::new(ctx.base.path(), loop_attach));
    start_with_backend(ctx, cfg, backend).await
}

/// Starts the archive role over `backend`: loads and recovers every volume.
pub async fn start_with_backend(
    ctx: Arc<Ctx>,
    cfg: Config,
    backend: Arc<dyn ImageBackend>,
) -> Result<Arc<Archive>> {
    let archive = Arc::new(Archive {
        ctx,
        cfg,
        backend,
        vols: Mutex::new(BTreeMap::new()),
        replicas: Mutex::new(BTreeMap::new()),
        peers: PeerBook::default(),
        tasks: TaskTracker::new(),
    });
    let a = Arc::clone(&archive);
    tokio::task::spawn_blocking(move || a.load_all())
        .await
        .context("loading volumes")??;
    // Always: retention is on by default, and a volume may have its own.
    {
        let (a, p, tick) = (
            Arc::clone(&archive),
            archive.cfg.policy.clone(),
            archive.cfg.policy_tick,
        );
        archive.tasks.spawn(a.run_policy(p, tick));
    }
    Ok(archive)
}

/// What a persisted state means at start: steady states stay; a temporary state (never
/// persisted by this daemon, but possible in a directory from elsewhere) rolls back to
/// where its transaction began.
pub fn recover_state(s: A) -> A {
    match s {
        A::InitVol => A::Clear,
        A::ClearVol | A::ResetVol | A::FullSync | A::Resync => A::SyncReady,
        A::HashSync | A::WdiffRecv | A::ReplSyncAsServer | A::Stop => A::Archived,
        A::Start => A::Stopped,
        steady => steady,
    }
}

/// Whether a volume in `state` can keep it at start: Archived and Stopped need a base
/// image and a base state; anything else that claims them falls back to SyncReady.
pub fn consistent_state(state: A, has_base_state: bool, has_base_image: bool) -> A {
    match state {
        A::Archived | A::Stopped if !(has_base_state && has_base_image) => A::SyncReady,
        s => s,
    }
}

impl Archive {
    /// The context.
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The image backend.
    pub fn backend(&self) -> &Arc<dyn ImageBackend> {
        &self.backend
    }

    fn vols_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<ArchiveVol>>> {
        self.vols.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The volume `name` if known (any state).
    pub fn vol(&self, name: &str) -> Option<Arc<ArchiveVol>> {
        self.vols_lock().get(name).cloned()
    }

    /// The state of `name` (Clear when unknown).
    pub fn state_of(&self, name: &str) -> A {
        self.vol(name).map_or(A::Clear, |v| v.state())
    }

    /// Every volume not Clear, by name.
    pub fn live_vols(&self) -> Vec<Arc<ArchiveVol>> {
        self.vols_lock()
            .values()
            .filter(|v| v.state() != A::Clear)
            .cloned()
            .collect()
    }

    /// The volume `name`, created in state Clear if unknown (name checked).
    fn vol_entry(&self, name: &str) -> Result<Arc<ArchiveVol>, WireError> {
        persist::check_vol_name(name).map_err(|m| refuse(ErrorCode::BadRequest, m))?;
        let mut g = self.vols_lock();
        let v = g.entry(name.to_owned()).or_insert_with(|| {
            ArchiveVol::new(
                name,
                self.ctx.base.vol_dir(name),
                A::Clear,
                VolMeta::initial(),
                Some(self.ctx.publisher()),
            )
        });
        Ok(Arc::clone(v))
    }

    /// `archive ID`, for messages.
    pub(crate) fn me(&self) -> String {
        crate::peers::me(walb_wire::Role::Archive, &self.ctx.id)
    }

    /// What admission needs to know of volume `name` ([`admit::View`]). Reads the base
    /// image's size (a `stat`) and, the first time, the volume's peers file.
    pub(crate) fn view(&self, name: &str) -> Result<admit::View, WireError> {
        let v = self.vol(name);
        let state = v.as_ref().map_or(A::Clear, |v| v.state());
        let peers = if state == A::Clear {
            crate::peers::VolPeers::default()
        } else {
            self.peers
                .get(name, &self.ctx.base.vol_dir(name))
                .map_err(persist_error)?
        };
        let base_lb = if state == A::Clear {
            None
        } else {
            self.backend.base_size_lb(name).map_err(backend_error)?
        };
        let (holding, archive_uuid) = match &v {
            Some(v) if state != A::Clear => {
                let m = v.meta();
                (
                    base_lb.map(|size_lb| admit::Holding {
                        uuid: m.uuid,
                        size_lb,
                        latest: m.latest_snapshot(),
                    }),
                    m.archive_uuid,
                )
            }
            _ => (None, [0; 16]),
        };
        Ok(admit::View {
            me: self.me(),
            vol: name.to_owned(),
            state,
            stopping: v
                .as_ref()
                .is_some_and(|v| v.core.stop_state().is_stopping()),
            peers,
            fg_free: self.ctx.fg.free(),
            base_lb,
            holding,
            archive_uuid,
        })
    }

    /// `bind`: changes the peers bound to an existing volume.
    fn bind(&self, cmd: &walb_wire::msg::BindCommand) -> Result<Reply, WireError> {
        let v = self
            .vol(&cmd.vol)
            .filter(|v| v.state() != A::Clear)
            .ok_or_else(|| {
                refuse(
                    ErrorCode::NotFound,
                    format!(
                        "volume {} does not exist on {} (init-vol first)",
                        cmd.vol,
                        self.me()
                    ),
                )
            })?;
        let p = self.peers.bind(&v.dir, cmd)?;
        info!(vol = %cmd.vol, role = cmd.role.as_str(), ids = ?cmd.ids, how = ?cmd.how, "peers bound");
        Ok(Reply::Peers(p.to_dto()))
    }

    /// The peers bound to `name` (nobody for a Clear volume).
    pub(crate) fn peers_of(&self, name: &str) -> Result<crate::peers::VolPeers, WireError> {
        if self.state_of(name) == A::Clear {
            return Ok(crate::peers::VolPeers::default());
        }
        self.peers
            .get(name, &self.ctx.base.vol_dir(name))
            .map_err(persist_error)
    }

    /// Publishes an event to subscribers.
    pub fn publish(&self, e: Event) {
        self.ctx.node.publish(e);
    }

    /// Publishes the progress of `op` on `vol`: `done_lb` of `total_lb`.
    pub fn publish_progress(&self, vol: &str, op: &str, done_lb: u64, total_lb: u64) {
        self.publish(Event::Progress {
            vol: vol.to_owned(),
            op: op.to_owned(),
            done_lb,
            total_lb,
        });
    }

    /// Logs and publishes ([`Event::Failed`]) a background operation `op` of `vol` that
    /// failed with `error` (the operator's message).
    pub fn op_failed(&self, vol: &str, op: &str, error: &str) {
        warn!(vol, op, "{error}");
        self.publish(Event::Failed {
            vol: vol.to_owned(),
            op: op.into(),
            error: error.to_owned(),
        });
    }

    /// The volume for an action (`what`: restore, merge, apply): archived, not stopping.
    pub(crate) fn vol_for_action(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Arc<ArchiveVol>, WireError> {
        let v = self.vol(name).ok_or_else(|| {
            refuse(
                ErrorCode::WrongState,
                format!("volume {name} is Clear; {what} needs an archived volume"),
            )
        })?;
        if v.core.stop_state().is_stopping() {
            return Err(refuse(
                ErrorCode::Stopped,
                format!("volume {name} is stopping"),
            ));
        }
        Ok(v)
    }

    /// Publishes the diff list of `v`.
    pub fn publish_diffs(&self, v: &ArchiveVol) {
        let diffs = v.meta().diffs.iter().map(dto::diff_to_dto).collect();
        self.publish(Event::DiffList {
            vol: v.name.clone(),
            diffs,
        });
    }

    /// True when work on `v` must abort now (force stop or forced shutdown).
    pub fn aborting(&self, v: &ArchiveVol) -> bool {
        self.ctx.is_force_shutdown() || v.core.stop_state().is_force()
    }

    /// The refusal that ends `op` on `v` when it must abort now (see
    /// [`Archive::aborting`]).
    pub(crate) fn cancel_error(&self, v: &ArchiveVol, op: &str) -> Option<WireError> {
        self.aborting(v).then(|| {
            refuse(
                ErrorCode::Cancelled,
                format!("volume {}: {op} aborted (force stop or shutdown)", v.name),
            )
        })
    }

    // --------------------------------------------------------------------------------
    // Start

    fn load_all(&self) -> Result<()> {
        let scan = self.ctx.base.scan(&DIR_RULE)?;
        for name in &scan.interrupted {
            warn!(vol = %name, "removing an interrupted init-vol or clear-vol");
            if let Err(e) = self.remove_interrupted(name) {
                error!(vol = %name, "cannot remove: {e}");
            }
        }
        for name in scan.vols {
            match self.load_vol(&name) {
                Ok(Some(v)) => {
                    info!(vol = %name, state = v.state().name(), "volume loaded");
                    self.vols_lock().insert(name, v);
                }
                Ok(None) => warn!(
                    vol = %name,
                    "the state file holds a state this daemon never leaves on disk (Clear or \
                     InitVol); the directory is left alone (move it out of the base directory \
                     to init-vol {name})"
                ),
                Err(e) => error!(vol = %name, "cannot load volume: {e:#}"),
            }
        }
        Ok(())
    }

    /// Removes the directory of an interrupted init-vol or clear-vol (marked, no state):
    /// its images first (restored ones may be attached to loop devices), then the rest.
    fn remove_interrupted(&self, name: &str) -> Result<(), BackendError> {
        self.backend.remove_all(name)?;
        voldir::remove_marked(&self.ctx.base.vol_dir(name))?;
        Ok(())
    }

    fn load_vol(&self, name: &str) -> Result<Option<Arc<ArchiveVol>>> {
        let dir = self.ctx.base.vol_dir(name);
        let state_file = dir.join(vol::STATE_FILE);
        let Some(persisted) = crate::vol::VolCore::<A>::load_state(&state_file)? else {
            anyhow::bail!(
                "{} does not hold an archive state; the volume is left alone",
                state_file.display()
            );
        };
        let state = recover_state(persisted);
        if state == A::Clear {
            return Ok(None);
        }
        let removed = persist::remove_temp_files(&dir)?;
        let rec = self.backend.recover(name)?;
        if removed + rec.removed_temps > 0 {
            info!(
                vol = name,
                files = removed + rec.removed_temps,
                "removed unfinished files"
            );
        }
        let mut meta = VolMeta::load(&dir)?;
        let has_image = self.backend.base_size_lb(name)?.is_some();
        let fixed = consistent_state(state, !meta.base.is_empty(), has_image);
        if fixed == A::SyncReady && state != A::SyncReady {
            warn!(
                vol = name,
                persisted = state.name(),
                "no usable base image or base state; volume falls back to SyncReady"
            );
        }
        if fixed == A::SyncReady {
            // A SyncReady volume holds nothing but its metadata: drop what an
            // interrupted full backup or reset left.
            if has_image || !meta.diffs.is_empty() || !meta.base.is_empty() {
                self.backend.remove_all(name)?;
                remove_diff_files(&dir, &meta.diffs.iter().cloned().collect::<Vec<_>>())?;
                meta = VolMeta::initial();
                meta.save(&dir)?;
            }
        } else {
            let garbage = meta.diffs.gc(meta.base.snap_b);
            if !garbage.is_empty() {
                info!(
                    vol = name,
                    n = garbage.len(),
                    "deleting wdiffs off the chain from the base"
                );
                remove_diff_files(&dir, &garbage)?;
            }
        }
        let v = ArchiveVol::new(name, dir, fixed, meta, Some(self.ctx.publisher()));
        if fixed != persisted {
            v.core.force(fixed)?;
        }
        Ok(Some(v))
    }

    // --------------------------------------------------------------------------------
    // Commands

    async fn command(
        self: &Arc<Self>,
        cmd: Command,
        caller: Option<&mut Caller<'_>>,
    ) -> Result<Reply, WireError> {
        match cmd {
            Command::Bind(b) => self.bind(&b),
            Command::InitVol { vol, .. } => self.init_vol(&vol).await,
            Command::ClearVol { vol } => self.clear_vol(&vol).await,
            Command::ResetVol { vol, .. } => self.reset_vol(&vol).await,
            Command::Start { vol, .. } => self.start_vol(&vol),
            Command::Stop { vol, mode } => self.stop_vol(&vol, mode),
            Command::Restore { vol, gid } => self.restore(&vol, gid, caller).await,
            Command::DelRestored { vol, gid } => self.del_restored(&vol, gid).await,
            Command::GcDiff { vol } => self.gc_diff(&vol).await,
            Command::DelCold { vol, gid } => Err(refuse(
                ErrorCode::NotFound,
                format!(
                    "volume {vol} has no cold snapshot {gid}: the {} backend keeps none",
                    self.backend.kind()
                ),
            )),
            Command::Merge { vol, gid_b, until } => self.merge(&vol, gid_b, until, caller).await,
            Command::Apply { vol, gid } => self.apply(&vol, gid, caller).await,
            Command::Resize { vol, size_lb, .. } => self.resize(&vol, size_lb).await,
            Command::SetSnapshotsExplicit {
                vol,
                gids,
                explicit,
            } => self.set_explicit(&vol, &gids, explicit).await,
            Command::Replicate(cmd) => self.replicate(cmd, caller).await,
            Command::SetRetention(s) => self.set_retention(s).await,
            Command::VirtFullScan { .. } => Err(refuse(
                ErrorCode::BadRequest,
                "virt-full-scan streams the image: it is served on its call",
            )),
            other => Err(refuse(
                ErrorCode::BadRequest,
                format!("not an archive command: {other:?}"),
            )),
        }
    }

    async fn init_vol(self: &Arc<Self>, name: &str) -> Result<Reply, WireError> {
        let v = self.vol_entry(name)?;
        let txn = v
            .core
            .begin_exclusive(&[A::Clear], A::InitVol, "init-vol", None)?;
        let (b, n, dir) = (Arc::clone(&self.backend), name.to_owned(), v.dir.clone());
        let d2 = dir.clone();
        blocking(move || -> Result<(), WireError> {
            if dir.is_dir() && voldir::classify(&dir, &DIR_RULE).ok() == Some(DirKind::Interrupted)
            {
                // Leftovers of an interrupted init-vol or clear-vol: images first.
                b.remove_all(&n).map_err(backend_error)?;
            }
            // Marked before anything goes in; a directory this daemon did not create is
            // refused and left alone.
            voldir::begin(&dir, &DIR_RULE).map_err(persist_error)?;
            VolMeta::initial().save(&dir).map_err(persist_error)
        })
        .await??;
        *v.meta() = VolMeta::initial();
        self.peers.forget(name);
        txn.commit(A::SyncReady)?;
        // The state is durable: the directory is a whole volume.
        if let Err(e) = blocking(move || voldir::end(&d2)).await? {
            error!(
                vol = name,
                "removing the marker of the new volume directory: {e}"
            );
        }
        info!(vol = name, "volume initialized");
        self.publish_diffs(&v);
        Ok(Reply::Done)
    }

    async fn clear_vol(self: &Arc<Self>, name: &str) -> Result<Reply, WireError> {
        let v = self.vol_entry(name)?;
        let txn =
            v.core
                .begin_exclusive(&[A::SyncReady, A::Stopped], A::ClearVol, "clear-vol", None)?;
        let (b, n, dir) = (Arc::clone(&self.backend), name.to_owned(), v.dir.clone());
        blocking(move || -> Result<(), WireError> {
            // Marked, and without its state file, the directory is a leftover of this
            // daemon's whatever happens next.
            voldir::mark(&dir).map_err(persist_error)?;
            persist::remove_file(&dir.join(vol::STATE_FILE)).map_err(persist_error)?;
            b.remove_all(&n).map_err(backend_error)?;
            voldir::remove_marked(&dir).map_err(persist_error)
        })
        .await??;
        *v.meta() = VolMeta::initial();
        self.peers.forget(name);
        txn.commit(A::Clear)?;
        info!(vol = name, "volume cleared");
        self.publish_diffs(&v);
        Ok(Reply::Done)
    }

    async fn reset_vol(self: &Arc<Self>, name: &str) -> Result<Reply, WireError> {
        let v = self.vol_entry(name)?;
        let txn =
            v.core
                .begin_exclusive(&[A::Stopped, A::SyncReady], A::ResetVol, "reset-vol", None)?;
        let diffs: Vec<MetaDiff> = v.meta().diffs.iter().cloned().collect();
        let (b, n, dir) = (Arc::clone(&self.backend), name.to_owned(), v.dir.clone());
        blocking(move || -> Result<(), WireError> {
            // The empty base first: a volume killed half-way boots as SyncReady.
            VolMeta::initial().save(&dir).map_err(persist_error)?;
            b.remove_all(&n).map_err(backend_error)?;
            remove_diff_files(&dir, &diffs).map_err(persist_error)
        })
        .await??;
        *v.meta() = VolMeta::initial();
        txn.commit(A::SyncReady)?;
        info!(vol = name, "volume reset");
        self.publish_diffs(&v);
        Ok(Reply::Done)
    }

    fn start_vol(&self, name: &str) -> Result<Reply, WireError> {
        let v = self.vol_entry(name)?;
        let txn = v
            .core
            .begin_exclusive(&[A::Stopped], A::Start, "start", None)?;
        txn.commit(A::Archived)?;
        info!(vol = name, "volume started");
        Ok(Reply::Done)
    }

    fn stop_vol(self: &Arc<Self>, name: &str, mode: StopMode) -> Result<Reply, WireError> {
        let flag = match mode {
            StopMode::Empty => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    "stop empty is a proxy mode; an archive stops graceful or force",
                ))
            }
            StopMode::Graceful => StopState::Stopping,
            StopMode::Force => StopState::ForceStopping,
        };
        let v = self.vol_entry(name)?;
        v.core.require(ACTIVE)?;
        if v.core.stop_state().is_stopping() {
            return Err(refuse(
                ErrorCode::Busy,
                format!("volume {name} is already stopping"),
            ));
        }
        v.core.set_stop(flag);
        let me = Arc::clone(self);
        self.tasks.spawn(async move { me.finish_stop(v).await });
        Ok(Reply::Accepted)
    }

    async fn finish_stop(self: Arc<Self>, v: Arc<ArchiveVol>) {
        let idle = v.core.wait_idle(STOP_WAIT).await;
        let res = if idle {
            v.core
                .begin(&[A::Archived], A::Stop)
                .and_then(|t| t.commit(A::Stopped))
                .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "running work did not end within {} s",
                STOP_WAIT.as_secs()
            ))
        };
        v.core.set_stop(StopState::NotStopping);
        match res {
            Ok(()) => info!(vol = %v.name, "volume stopped"),
            Err(e) => warn!(vol = %v.name, "stop failed: {e}"),
        }
    }

    async fn gc_diff(self: &Arc<Self>, name: &str) -> Result<Reply, WireError> {
        let v = self.vol_entry(name)?;
        v.core.require(ACTIVE_OR_STOPPED)?;
        v.core
            .actions()
            .check_none("gc-diff", None)
            .map_err(|e| refuse(ErrorCode::Busy, format!("volume {name}: {e}")))?;
        let garbage = {
            let m = v.meta();
            let mut d = m.diffs.clone();
            d.gc(m.base.snap_b)
        };
        let dir = v.dir.clone();
        let g2 = garbage.clone();
        blocking(move || remove_diff_files(&dir, &g2))
            .await?
            .map_err(persist_error)?;
        v.meta().diffs.remove_all(&garbage);
        if !garbage.is_empty() {
            info!(vol = name, n = garbage.len(), "garbage wdiffs deleted");
            self.publish_diffs(&v);
        }
        Ok(Reply::Done)
    }

    /// Admits a peer's protocol request (`admit`), waits for a foreground slot in the
    /// queue ([`Ctx::fg_slot`], the peer told where it stands), and admits it again:
    /// the volume may have changed while it waited.
    pub(crate) async fn admitted_slot<T>(
        &self,
        peer: &walb_wire::PeerId,
        version: u16,
        call: &mut walb_wire::Call,
        vol: &str,
        op: &str,
        admit: impl Fn() -> Result<T, WireError>,
    ) -> Result<(T, tokio::sync::OwnedSemaphorePermit), WireError> {
        admit()?;
        let mut caller = Caller {
            peer,
            version,
            call: &mut call.sender,
        };
        let permit = self.ctx.fg_slot(Some(&mut caller), vol, op).await?;
        Ok((admit()?, permit))
    }

    // --------------------------------------------------------------------------------
    // Dispatch

    async fn dispatch(self: &Arc<Self>, inc: IncomingCall) {
        let IncomingCall {
            peer,
            request,
            mut call,
            version,
        } = inc;
        let mut caller = Caller {
            peer: &peer,
            version,
            call: &mut call.sender,
        };
        match request {
            Request::Command(Command::VirtFullScan { vol, gid, bulk_lb }) => {
                self.virt_full_scan(peer.clone(), version, call, vol, gid, bulk_lb)
                    .await
            }
            Request::Command(cmd) => {
                let what = format!("{cmd:?}");
                let r = self.command(cmd, Some(&mut caller)).await;
                if let Err(e) = &r {
                    info!(%peer, "refused {what}: {e}");
                }
                answer(call, r).await;
            }
            Request::Query(q) => {
                let r = query::answer_query(self, q, Some(&mut caller)).await;
                answer(call, r).await;
            }
            Request::WdiffTransfer(t) => self.receive_wdiff(peer, call, t).await,
            Request::BackupSync(BackupSync::Full(s)) => {
                self.receive_full(peer.clone(), version, call, s).await
            }
            Request::BackupSync(BackupSync::GatherLatestSnap { vols }) => {
                let r = vols
                    .iter()
                    .map(|v| self.view(v))
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|views| admit::gather(&peer, &views))
                    .map(|()| Reply::Snapshots(self.latest_snaps(Some(&vols))));
                if let Err(e) = &r {
                    info!(%peer, "latest snapshots refused: {e}");
                }
                answer(call, r).await;
            }
            Request::BackupSync(BackupSync::Hash(s)) => {
                self.receive_hash(peer.clone(), version, call, s).await
            }
            Request::Replicate(r) => self.receive_repl(peer.clone(), version, call, r).await,
            other => {
                answer(
                    call,
                    Err(refuse(
                        ErrorCode::BadRequest,
                        format!("not an archive request: {:?}", other.op_class()),
                    )),
                )
                .await
            }
        }
    }
}

impl Handler for Archive {
    async fn handle(self: Arc<Self>, call: IncomingCall) {
        self.dispatch(call).await;
    }

    async fn shutdown(self: Arc<Self>, force: bool) {
        self.tasks.close();
        let wait = if force {
            Duration::from_secs(5)
        } else {
            STOP_WAIT
        };
        if tokio::time::timeout(wait, self.tasks.wait()).await.is_err() {
            warn!(
                "{} archive tasks still running; their unfinished files are removed at the next start",
                self.tasks.len()
            );
        }
    }
}

/// The progress of a long operation on a volume as blocks go by: the volume's
/// `Query::Progress`, and `Event::Progress{op}` at most every
/// [`restore::PROGRESS_EVERY`] and once the end is reached.
pub(crate) struct Ticker<'a> {
    archive: &'a Archive,
    vol: &'a ArchiveVol,
    op: &'a str,
    done_lb: u64,
    total_lb: u64,
    last: std::time::Instant,
}

impl<'a> Ticker<'a> {
    /// A ticker at `done_lb` of `total_lb`.
    pub(crate) fn new(
        archive: &'a Archive,
        vol: &'a ArchiveVol,
        op: &'a str,
        done_lb: u64,
        total_lb: u64,
    ) -> Ticker<'a> {
        Ticker {
            archive,
            vol,
            op,
            done_lb,
            total_lb,
            last: std::time::Instant::now(),
        }
    }

    /// `bytes` more are done.
    pub(crate) fn add_bytes(&mut self, bytes: u64) {
        self.done_lb += bytes / u64::from(walb_kernel::block::LBS);
        self.vol.set_progress(self.done_lb);
        if self.last.elapsed() >= restore::PROGRESS_EVERY || self.done_lb == self.total_lb {
            self.last = std::time::Instant::now();
            self.archive
                .publish_progress(&self.vol.name, self.op, self.done_lb, self.total_lb);
        }
    }
}

/// Deletes the files of `diffs` in `dir` (absent is fine).
pub fn remove_diff_files(dir: &std::path::Path, diffs: &[MetaDiff]) -> Result<(), PersistError> {
    for d in diffs {
        persist::remove_file(&vol::diff_path(dir, d))?;
    }
    Ok(())
}

/// A backend failure as told to a peer.
pub(crate) fn backend_error(e: BackendError) -> WireError {
    let code = match e {
        BackendError::Missing(_) => ErrorCode::NotFound,
        _ => ErrorCode::Internal,
    };
    refuse(code, e.to_string())
}

/// A persistence failure as told to a peer.
pub(crate) fn persist_error(e: PersistError) -> WireError {
    e.into()
}

impl From<MetaError> for WireError {
    fn from(e: MetaError) -> Self {
        refuse(ErrorCode::Internal, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_states_roll_back_to_where_they_began() {
        for s in A::ALL {
            let r = recover_state(*s);
            assert!(r.is_steady(), "{s:?} → {r:?}");
            if s.is_steady() {
                assert_eq!(r, *s);
            } else {
                // The recovered state is a `from` of some transition through `s`.
                assert!(
                    <A as crate::state::VolState>::TRANSITIONS
                        .iter()
                        .any(|t| t.temp == *s && t.from == r)
                        || (*s == A::ClearVol && r == A::SyncReady),
                    "{s:?} → {r:?}"
                );
            }
        }
    }

    #[test]
    fn archived_without_base_falls_back_to_sync_ready() {
        assert_eq!(consistent_state(A::Archived, true, true), A::Archived);
        assert_eq!(consistent_state(A::Stopped, true, false), A::SyncReady);
        assert_eq!(consistent_state(A::Archived, false, true), A::SyncReady);
        assert_eq!(consistent_state(A::SyncReady, false, false), A::SyncReady);
    }
}
