//! The proxy role: receives wlogs from storages, turns them into wdiffs, keeps one queue
//! per archive and forwards the queued diffs to every archive of the volume.
//!
//! - [`vol`]: a volume's directory (destinations, size, `received/`, `sendto/<archive>/`)
//!   and the crash recovery run at start.
//! - [`recv`]: Protocol 1, server side (wlog stream → indexed wdiff → queues → Ack).
//! - [`send`]: Protocol 2, client side (merge a batch, stream it, react to the answer),
//!   the task dispatcher with `--bg` workers and retry backoff.
//! - [`queue`]: the pure decisions of forwarding (batch selection, reactions).
//!
//! This file holds the daemon state, boot, the command and query handlers, and the
//! stop procedures. Volume states follow [`crate::state::proxy`]; the proxy persists no
//! state file: every volume directory boots Stopped and is started unless `--stopped`.

pub mod queue;
pub mod recv;
pub mod send;
pub mod vol;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::Notify;
use tracing::{error, info, warn};
use walb_wire::msg::{
    ArchiveInfoCommand, Command, ErrorCode, MetaDiffDto, ProxyQueue, ProxySummary, ProxyVolLine,
    ProxyVolStatus, Query, Reply, Request, SendHealth, SnapshotInfo, Status, StopMode, VolumeState,
    WireError,
};
use walb_wire::IncomingCall;

use crate::dto::diff_to_dto;
use crate::opts::ProxyOpts;
use crate::peers::{PeerBook, VolPeers};
use crate::persist::{check_vol_name, PersistError};
use crate::session::{answer, refuse, Ctx, Handler};
use crate::state::proxy::{ProxyState as P, WDIFF_SEND};
use crate::state::StopState;
use crate::task::Backoff;
use crate::vol::VolCore;
use vol::{check_archive_name, list_diffs, ArchiveInfo, VolDir};

/// How long `stop` waits for running work before giving up.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// The send state of one archive of a volume.
#[derive(Debug, Clone)]
pub(crate) struct SendState {
    /// Why sending gave up (`is-wdiff-send-error`), until `kick` or `start`.
    pub error: Option<String>,
    /// Why the last attempt failed while retries go on (shown beside the retry delay),
    /// until a delivery.
    pub last_failure: Option<String>,
    /// Retry delays.
    pub backoff: Backoff,
}

/// What a volume keeps in memory beside its state.
#[derive(Debug)]
pub(crate) struct VolMeta {
    /// Destinations.
    pub archives: BTreeMap<String, ArchiveInfo>,
    /// Send state per destination.
    pub send: BTreeMap<String, SendState>,
    /// Volume size, logical blocks.
    pub size_lb: u64,
    /// When the last wlog arrived (or the volume started).
    pub last_wlog: Instant,
    /// The newest snapshot a received wdiff reached since the daemon started: gid and
    /// timestamp (`latest-snap` also looks at the diffs still queued).
    pub latest: Option<(u64, u64)>,
}

/// One proxy volume.
#[derive(Debug)]
pub(crate) struct ProxyVol {
    pub name: String,
    pub dir: VolDir,
    pub core: Arc<VolCore<P>>,
    meta: Mutex<VolMeta>,
    /// Signalled when a send ended (queues may have shrunk).
    pub queue_changed: Notify,
}

impl ProxyVol {
    pub(crate) fn meta(&self) -> MutexGuard<'_, VolMeta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The key of a send task: (volume, archive).
pub(crate) type Key = (String, String);

/// The send scheduler: due tasks and running ones (`true`: run again when done).
#[derive(Debug, Default)]
pub(crate) struct Sched {
    pub queue: crate::task::TaskQueue<Key>,
    pub running: BTreeMap<Key, bool>,
}

/// The proxy daemon.
#[derive(Debug)]
pub struct Proxy {
    ctx: Arc<Ctx>,
    opts: ProxyOpts,
    vols: Mutex<BTreeMap<String, Arc<ProxyVol>>>,
    sched: Mutex<Sched>,
    wake: Notify,
    /// The storage bound to each volume.
    peers: PeerBook,
}

/// Starts the proxy role: loads every volume directory as Stopped, starts them unless
/// `--stopped`, and starts the send dispatcher.
pub async fn start(ctx: Arc<Ctx>, opts: ProxyOpts) -> Result<Arc<Proxy>> {
    let p = Arc::new(Proxy {
        ctx: Arc::clone(&ctx),
        opts,
        vols: Mutex::new(BTreeMap::new()),
        sched: Mutex::new(Sched::default()),
        wake: Notify::new(),
        peers: PeerBook::default(),
    });
    let names = {
        let c = Arc::clone(&ctx);
        tokio::task::spawn_blocking(move || scan_base(&c)).await??
    };
    for name in &names {
        let v = p.new_vol(name, P::Stopped);
        let dir = v.dir.clone();
        let (archives, size_lb) = tokio::task::spawn_blocking(move || {
            Ok::<_, PersistError>((dir.load_archives()?, dir.size_lb()?))
        })
        .await??;
        {
            let mut m = v.meta();
            m.send = archives
                .keys()
                .map(|a| (a.clone(), p.fresh_send_state()))
                .collect();
            m.archives = archives;
            m.size_lb = size_lb;
        }
        p.lock_vols().insert(name.clone(), v);
    }
    info!(vols = names.len(), "proxy volumes loaded");
    tokio::spawn(Arc::clone(&p).dispatcher());
    if !p.opts.stopped {
        for name in &names {
            match p.start_vol(name).await {
                Ok(()) => info!(vol = %name, "started"),
                Err(e) => error!(vol = %name, "cannot start: {e}"),
            }
        }
    }
    Ok(p)
}

/// The volume directories of the base directory, once interrupted creations and removals
/// are removed (what is not the proxy's is left alone, with a warning).
fn scan_base(ctx: &Ctx) -> Result<Vec<String>, PersistError> {
    let scan = ctx.base.scan(&vol::DIR_RULE)?;
    for name in &scan.interrupted {
        warn!(vol = %name, "removing an interrupted archive-info add or clear-vol");
        if let Err(e) = crate::persist::voldir::remove_marked(&ctx.base.vol_dir(name)) {
            error!(vol = %name, "cannot remove: {e}");
        }
    }
    Ok(scan.vols)
}

impl Proxy {
    fn lock_vols(&self) -> MutexGuard<'_, BTreeMap<String, Arc<ProxyVol>>> {
        self.vols.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_sched(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh_send_state(&self) -> SendState {
        SendState {
            error: None,
            last_failure: None,
            backoff: Backoff::new(
                Duration::from_secs(self.opts.delay),
                Duration::from_secs(self.opts.max_delay),
            ),
        }
    }

    fn new_vol(&self, name: &str, state: P) -> Arc<ProxyVol> {
        Arc::new(ProxyVol {
            name: name.to_owned(),
            dir: VolDir::new(self.ctx.base.vol_dir(name)),
            core: VolCore::new(name, state, None, Some(self.ctx.publisher())),
            meta: Mutex::new(VolMeta {
                archives: BTreeMap::new(),
                send: BTreeMap::new(),
                size_lb: 0,
                last_wlog: self.ctx.clock.instant(),
                latest: None,
            }),
            queue_changed: Notify::new(),
        })
    }

    /// The volume `name`, if known (it may be Clear).
    pub(crate) fn vol(&self, name: &str) -> Option<Arc<ProxyVol>> {
        self.lock_vols().get(name).cloned()
    }

    /// The volume `name`, created Clear if unknown. Clear volumes stay in the map (only
    /// their name), so that a volume never has two live states.
    fn vol_or_new(&self, name: &str) -> Arc<ProxyVol> {
        let mut m = self.lock_vols();
        Arc::clone(
            m.entry(name.to_owned())
                .or_insert_with(|| self.new_vol(name, P::Clear)),
        )
    }

    fn known_vol(&self, name: &str) -> Result<Arc<ProxyVol>, WireError> {
        match self.vol(name) {
            Some(v) if v.core.state() != P::Clear => Ok(v),
            _ => Err(refuse(
                ErrorCode::NotFound,
                format!("volume {name} is Clear on proxy {}", self.ctx.id),
            )),
        }
    }

    /// The peers bound to `vol` (nobody for a Clear volume); on a proxy only the storage
    /// is bound, the archives are those of its archive-info.
    pub(crate) fn peers_of(&self, vol: &str) -> Result<VolPeers, WireError> {
        match self.vol(vol) {
            Some(v) if v.core.state() != P::Clear => self
                .peers
                .get(vol, v.dir.path())
                .map_err(|e| refuse(ErrorCode::Internal, e.to_string())),
            _ => Ok(VolPeers::default()),
        }
    }

    /// `bind` on a proxy: the storage whose wlogs a volume takes.
    fn bind(&self, cmd: &walb_wire::msg::BindCommand) -> Result<Reply, WireError> {
        if cmd.role != walb_wire::msg::PeerRole::Storage {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "a proxy binds a volume to its storage only ({} given); the archives it \
                     sends to are its archive-info",
                    cmd.role.as_str()
                ),
            ));
        }
        let v = self.known_vol(&cmd.vol)?;
        let p = self.peers.bind(v.dir.path(), cmd)?;
        info!(vol = %cmd.vol, ids = ?cmd.ids, how = ?cmd.how, "storage bound");
        Ok(self.peers_dto(&v, &p))
    }

    fn peers_dto(&self, v: &ProxyVol, p: &VolPeers) -> Reply {
        let mut dto = p.to_dto();
        dto.archives = v.meta().archives.keys().cloned().collect();
        Reply::Peers(dto)
    }

    fn check_vol_arg(vol: &str) -> Result<(), WireError> {
        check_vol_name(vol).map_err(|e| refuse(ErrorCode::BadRequest, e))
    }

    async fn dispatch(self: &Arc<Self>, req: Request) -> Result<Reply, WireError> {
        match req {
            Request::Command(c) => self.command(c).await,
            Request::Query(q) => self.query(q).await,
            other => Err(refuse(
                ErrorCode::Unsupported,
                format!("a proxy does not answer {:?} requests", other.op_class()),
            )),
        }
    }

    async fn command(self: &Arc<Self>, c: Command) -> Result<Reply, WireError> {
        match c {
            Command::Bind(b) => self.bind(&b),
            Command::ArchiveInfo(ArchiveInfoCommand::Set {
                vol,
                archive,
                dest,
                update,
            }) => {
                Self::check_vol_arg(&vol)?;
                check_archive_name(&archive).map_err(|e| refuse(ErrorCode::BadRequest, e))?;
                let info = ArchiveInfo::from_dest(&dest).map_err(|e| {
                    refuse(ErrorCode::BadRequest, format!("archive {archive}: {e}"))
                })?;
                self.archive_info_set(&vol, &archive, info, update).await?;
                Ok(Reply::Done)
            }
            Command::ArchiveInfo(ArchiveInfoCommand::Delete { vol, archive }) => {
                Self::check_vol_arg(&vol)?;
                self.archive_info_delete(&vol, &archive).await?;
                Ok(Reply::Done)
            }
            Command::Start { vol, mode } => {
                Self::check_vol_arg(&vol)?;
                if mode.is_some() {
                    return Err(refuse(
                        ErrorCode::BadRequest,
                        "a proxy volume starts without a mode (target/standby are storage modes)",
                    ));
                }
                self.start_vol(&vol).await?;
                Ok(Reply::Done)
            }
            Command::Stop { vol, mode } => {
                Self::check_vol_arg(&vol)?;
                self.stop_vol(&vol, mode)?;
                Ok(Reply::Accepted)
            }
            Command::ClearVol { vol } => {
                Self::check_vol_arg(&vol)?;
                self.clear_vol(&vol).await?;
                Ok(Reply::Done)
            }
            Command::Kick { vol, archive } => {
                self.kick(vol.as_deref(), archive.as_deref())?;
                Ok(Reply::Done)
            }
            Command::Resize {
                vol,
                size_lb,
                zero_clear: _,
            } => {
                Self::check_vol_arg(&vol)?;
                self.resize(&vol, size_lb).await?;
                Ok(Reply::Done)
            }
            other => Err(refuse(
                ErrorCode::Unsupported,
                format!("a proxy has no command {}", command_name(&other)),
            )),
        }
    }

    // ------------------------------------------------------------------------------------
    // archive-info

    async fn archive_info_set(
        &self,
        vol: &str,
        archive: &str,
        info: ArchiveInfo,
        update: bool,
    ) -> Result<(), WireError> {
        let v = self.vol_or_new(vol);
        let txn = v.core.begin_exclusive(
            &[P::Clear, P::Stopped],
            P::AddArchiveInfo,
            "archive-info",
            None,
        )?;
        let was_clear = txn.from() == P::Clear;
        if !update && v.meta().archives.contains_key(archive) {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("volume {vol} already has archive {archive}; use update to change it"),
            ));
        }
        let vd = v.dir.clone();
        let (a, i) = (archive.to_owned(), info.clone());
        spawn_io(move || {
            if was_clear {
                vd.create()?;
            }
            let r = vd.save_archive(&a, &i);
            if r.is_err() && was_clear {
                let _ = vd.remove();
            }
            r
        })
        .await?;
        {
            let fresh = self.fresh_send_state();
            let mut m = v.meta();
            if was_clear {
                m.size_lb = 0;
                m.send.clear();
                m.archives.clear();
                self.peers.forget(vol);
            }
            m.archives.insert(archive.to_owned(), info);
            m.send.entry(archive.to_owned()).or_insert(fresh);
        }
        txn.commit(P::Stopped)?;
        info!(%vol, %archive, "archive-info set");
        Ok(())
    }

    async fn archive_info_delete(&self, vol: &str, archive: &str) -> Result<(), WireError> {
        let v = self.known_vol(vol)?;
        let txn = v.core.begin_exclusive(
            &[P::Stopped],
            P::DeleteArchiveInfo,
            "archive-info delete",
            None,
        )?;
        let last = {
            let m = v.meta();
            if !m.archives.contains_key(archive) {
                return Err(refuse(
                    ErrorCode::NotFound,
                    format!("volume {vol} has no archive {archive}"),
                ));
            }
            m.archives.len() == 1
        };
        let vd = v.dir.clone();
        let a = archive.to_owned();
        spawn_io(move || {
            vd.delete_archive(&a)?;
            if last {
                vd.remove()?;
            }
            Ok(())
        })
        .await?;
        {
            let mut m = v.meta();
            m.archives.remove(archive);
            m.send.remove(archive);
        }
        let key = (vol.to_owned(), archive.to_owned());
        self.lock_sched().queue.remove(&key);
        if last {
            self.peers.forget(vol);
        }
        txn.commit(if last { P::Clear } else { P::Stopped })?;
        info!(%vol, %archive, last, "archive-info deleted");
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // start, stop, clear, kick, resize

    /// Stopped → Start → Started: recovery of the directory, then a send per archive.
    pub(crate) async fn start_vol(&self, vol: &str) -> Result<(), WireError> {
        let v = self.known_vol(vol)?;
        let txn = v
            .core
            .begin_exclusive(&[P::Stopped], P::Start, "start", None)?;
        let archives: Vec<String> = v.meta().archives.keys().cloned().collect();
        let vd = v.dir.clone();
        let a2 = archives.clone();
        let r = spawn_io(move || vol::recover(&vd, &a2)).await?;
        if r.temp_files > 0 || r.relinked > 0 || r.unsynced > 0 {
            info!(%vol, temp_files = r.temp_files, relinked = r.relinked, unsynced = r.unsynced, "recovered the volume directory");
        }
        if r.left_in_received > 0 {
            return Err(refuse(
                ErrorCode::WrongState,
                format!(
                    "volume {vol}: {} diffs in {} cannot be queued (no archive); add an archive-info",
                    r.left_in_received,
                    v.dir.received().display()
                ),
            ));
        }
        {
            let fresh = self.fresh_send_state();
            let mut m = v.meta();
            m.last_wlog = self.ctx.clock.instant();
            for a in &archives {
                m.send.insert(a.clone(), fresh.clone());
            }
        }
        txn.commit(P::Started)?;
        let now = self.ctx.clock.instant();
        for a in archives {
            self.schedule_force((vol.to_owned(), a), now);
        }
        Ok(())
    }

    fn stop_vol(self: &Arc<Self>, vol: &str, mode: StopMode) -> Result<(), WireError> {
        let v = self.known_vol(vol)?;
        let state = v.core.state();
        let flag = v.core.stop_state();
        match mode {
            StopMode::Force if state == P::WaitForEmpty || flag == StopState::Stopping => {
                // Abort a running `stop empty` or speed up a graceful stop.
                v.core.set_stop(StopState::ForceStopping);
                return Ok(());
            }
            _ if flag.is_stopping() => {
                return Err(refuse(
                    ErrorCode::WrongState,
                    format!("volume {vol} is already stopping ({state:?})"),
                ))
            }
            _ => {}
        }
        if !matches!(state, P::Started | P::WlogRecv) {
            return Err(refuse(
                ErrorCode::WrongState,
                format!("volume {vol} is {}; stop needs Started", state.name()),
            ));
        }
        let p = Arc::clone(self);
        let name = vol.to_owned();
        match mode {
            StopMode::Empty => {
                v.core.set_stop(StopState::WaitingForEmpty);
                tokio::spawn(async move { p.stop_empty(v, name).await });
            }
            StopMode::Graceful | StopMode::Force => {
                v.core.set_stop(if mode == StopMode::Force {
                    StopState::ForceStopping
                } else {
                    StopState::Stopping
                });
                tokio::spawn(async move { p.stop_plain(v, name).await });
            }
        }
        Ok(())
    }

    /// Waits until the volume is Started with no running send, then runs `temp`'s
    /// transaction; gives up after [`STOP_WAIT`].
    async fn begin_when_idle(v: &Arc<ProxyVol>, temp: P) -> Option<crate::vol::Txn<P>> {
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !v
                .core
                .wait_until(left, |s, _, a| s == P::Started && a.is_idle())
                .await
            {
                return None;
            }
            if let Ok(t) = v.core.begin(&[P::Started], temp) {
                if v.core.actions().is_idle() {
                    return Some(t);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop_plain(self: Arc<Self>, v: Arc<ProxyVol>, vol: String) {
        let Some(txn) = Self::begin_when_idle(&v, P::Stop).await else {
            error!(%vol, "stop gave up: transfers still running after {STOP_WAIT:?}");
            v.core.set_stop(StopState::NotStopping);
            return;
        };
        match txn.commit(P::Stopped) {
            Ok(()) => info!(%vol, "stopped"),
            Err(e) => error!(%vol, "stop failed: {e}"),
        }
        self.lock_sched().queue.remove_if(|k| k.0 == vol);
        v.core.set_stop(StopState::NotStopping);
    }

    async fn stop_empty(self: Arc<Self>, v: Arc<ProxyVol>, vol: String) {
        let Some(txn) = Self::begin_when_idle(&v, P::WaitForEmpty).await else {
            error!(%vol, "stop empty gave up: a wlog transfer is still running after {STOP_WAIT:?}");
            v.core.set_stop(StopState::NotStopping);
            return;
        };
        let archives: Vec<String> = v.meta().archives.keys().cloned().collect();
        let now = self.ctx.clock.instant();
        for a in &archives {
            self.schedule_force((vol.clone(), a.clone()), now);
        }
        info!(%vol, "waiting until every queue is delivered");
        loop {
            if v.core.stop_state() == StopState::ForceStopping {
                info!(%vol, "stop empty forced: queued diffs stay queued");
                break;
            }
            let vd = v.dir.clone();
            let a2 = archives.clone();
            let queued = tokio::task::spawn_blocking(move || {
                a2.iter()
                    .map(|a| list_diffs(&vd.queue(a)).map(|l| l.len()))
                    .sum::<Result<usize, _>>()
            })
            .await;
            match queued {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(%vol, "cannot list the queues: {e}"),
                Err(e) => warn!(%vol, "cannot list the queues: {e}"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), v.queue_changed.notified()).await;
        }
        if v.core.stop_state() != StopState::ForceStopping {
            v.core.set_stop(StopState::Stopping);
        }
        // Running sends finish (or abort when forced).
        v.core
            .wait_until(Duration::from_secs(365 * 86400), |_, _, a| a.is_idle())
            .await;
        match txn.commit(P::Stopped) {
            Ok(()) => info!(%vol, "stopped (empty)"),
            Err(e) => error!(%vol, "stop empty failed: {e}"),
        }
        self.lock_sched().queue.remove_if(|k| k.0 == vol);
        v.core.set_stop(StopState::NotStopping);
    }

    async fn clear_vol(&self, vol: &str) -> Result<(), WireError> {
        let v = self.known_vol(vol)?;
        let txn = v
            .core
            .begin_exclusive(&[P::Stopped], P::ClearVol, "clear-vol", None)?;
        let vd = v.dir.clone();
        spawn_io(move || vd.remove()).await?;
        {
            let mut m = v.meta();
            m.archives.clear();
            m.send.clear();
            m.size_lb = 0;
        }
        self.lock_sched().queue.remove_if(|k| k.0 == vol);
        self.peers.forget(vol);
        txn.commit(P::Clear)?;
        info!(%vol, "cleared");
        Ok(())
    }

    fn kick(&self, vol: Option<&str>, archive: Option<&str>) -> Result<(), WireError> {
        let vols: Vec<Arc<ProxyVol>> = match vol {
            Some(n) => vec![self.known_vol(n)?],
            None => self.lock_vols().values().cloned().collect(),
        };
        let now = self.ctx.clock.instant();
        for v in vols {
            if !WDIFF_SEND.contains(&v.core.state()) {
                continue;
            }
            let names: Vec<String> = {
                let mut m = v.meta();
                let names: Vec<String> = match archive {
                    Some(a) if m.archives.contains_key(a) => vec![a.to_owned()],
                    // Kicking an archive everywhere: volumes without it are skipped.
                    Some(_) if vol.is_none() => Vec::new(),
                    Some(a) => {
                        return Err(refuse(
                            ErrorCode::NotFound,
                            format!("volume {} has no archive {a}", v.name),
                        ))
                    }
                    None => m.archives.keys().cloned().collect(),
                };
                for a in &names {
                    if let Some(s) = m.send.get_mut(a) {
                        if let Some(e) = s.error.take() {
                            info!(vol = %v.name, archive = %a, "send error cleared by kick (was: {e})");
                        }
                        s.backoff.reset();
                    }
                }
                names
            };
            for a in names {
                self.schedule_force((v.name.clone(), a), now);
            }
        }
        Ok(())
    }

    async fn resize(&self, vol: &str, size_lb: u64) -> Result<(), WireError> {
        let v = self.known_vol(vol)?;
        v.core.require(&[P::Stopped])?;
        let cur = v.meta().size_lb;
        if size_lb < cur {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("volume {vol}: {size_lb} lb is smaller than {cur} lb (grow only)"),
            ));
        }
        let vd = v.dir.clone();
        spawn_io(move || vd.set_size_lb(size_lb)).await?;
        v.meta().size_lb = size_lb;
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // queries

    async fn query(&self, q: Query) -> Result<Reply, WireError> {
        match q {
            Query::State { vol } => Ok(Reply::State(VolumeState::Proxy(
                self.vol(&vol).map_or(P::Clear, |v| v.core.state()),
            ))),
            Query::Vols => Ok(Reply::Names(
                self.lock_vols()
                    .values()
                    .filter(|v| v.core.state() != P::Clear)
                    .map(|v| v.name.clone())
                    .collect(),
            )),
            Query::Status { vol } => self.status(vol.as_deref()).await,
            Query::Peers { vol } => {
                let p = self.peers_of(&vol)?;
                match self.vol(&vol) {
                    Some(v) => Ok(self.peers_dto(&v, &p)),
                    None => Ok(Reply::Peers(p.to_dto())),
                }
            }
            Query::ArchiveInfo { vol, archive } => {
                let v = match self.vol(&vol) {
                    Some(v) if v.core.state() != P::Clear => v,
                    _ if archive.is_none() => return Ok(Reply::Names(Vec::new())),
                    _ => {
                        return Err(refuse(
                            ErrorCode::NotFound,
                            format!("volume {vol} is Clear on proxy {}", self.ctx.id),
                        ))
                    }
                };
                let m = v.meta();
                match archive {
                    None => Ok(Reply::Names(m.archives.keys().cloned().collect())),
                    Some(a) => m
                        .archives
                        .get(&a)
                        .map(|i| Reply::ArchiveInfo(i.to_dest()))
                        .ok_or_else(|| {
                            refuse(
                                ErrorCode::NotFound,
                                format!("volume {vol} has no archive {a}"),
                            )
                        }),
                }
            }
            Query::IsWdiffSendError { vol, archive } => {
                let v = self.known_vol(&vol)?;
                let m = v.meta();
                match m.send.get(&archive) {
                    Some(s) => Ok(Reply::Bool(s.error.is_some())),
                    None => Err(refuse(
                        ErrorCode::NotFound,
                        format!("volume {vol} has no archive {archive}"),
                    )),
                }
            }
            Query::LatestSnap { vol } => self.latest_snaps(vol).await.map(Reply::Snapshots),
            Query::Diff {
                vol,
                gid_b,
                gid_e,
                archive,
            } => {
                let v = self.known_vol(&vol)?;
                let dir = match &archive {
                    Some(a) => {
                        if !v.meta().archives.contains_key(a) {
                            return Err(refuse(
                                ErrorCode::NotFound,
                                format!("volume {vol} has no archive {a}"),
                            ));
                        }
                        v.dir.queue(a)
                    }
                    None => v.dir.received(),
                };
                let files = spawn_io(move || list_diffs(&dir)).await?;
                let (lo, hi) = (gid_b.unwrap_or(0), gid_e.unwrap_or(u64::MAX));
                let mut diffs: Vec<MetaDiffDto> = files
                    .iter()
                    .filter(|f| lo <= f.diff.snap_b.gid_b && f.diff.snap_b.gid_b < hi)
                    .map(|f| diff_to_dto(&f.diff))
                    .collect();
                diffs.sort_by_key(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b));
                Ok(Reply::Diffs(diffs))
            }
            other => Err(refuse(
                ErrorCode::Unsupported,
                format!("a proxy does not answer {other:?}"),
            )),
        }
    }

    /// `latest-snap`: per volume (one, or every volume that is not Clear), the newest
    /// snapshot a wdiff it received reaches — queued for an archive (or not yet queued), or
    /// forwarded since the daemon started; `gid: None` when it holds none.
    async fn latest_snaps(&self, vol: Option<String>) -> Result<Vec<SnapshotInfo>, WireError> {
        let vols = match vol {
            Some(name) => vec![self.known_vol(&name)?],
            None => self
                .lock_vols()
                .values()
                .filter(|v| v.core.state() != P::Clear)
                .cloned()
                .collect(),
        };
        let mut out = Vec::with_capacity(vols.len());
        for v in vols {
            let mut dirs = vec![v.dir.received()];
            let (archives, mut latest) = {
                let m = v.meta();
                (m.archives.keys().cloned().collect::<Vec<_>>(), m.latest)
            };
            dirs.extend(archives.iter().map(|a| v.dir.queue(a)));
            let files = spawn_io(move || {
                let mut all = Vec::new();
                for d in dirs.iter().filter(|d| d.is_dir()) {
                    all.extend(list_diffs(d)?);
                }
                Ok(all)
            })
            .await?;
            for f in files {
                latest = newest(latest, (f.diff.snap_e.gid_b, f.diff.timestamp));
            }
            out.push(SnapshotInfo {
                vol: v.name.clone(),
                gid: latest.map(|l| l.0),
                timestamp_s: latest.map_or(0, |l| l.1),
                lsid: None,
                explicit: false,
            });
        }
        Ok(out)
    }

    async fn status(&self, vol: Option<&str>) -> Result<Reply, WireError> {
        let Some(name) = vol else {
            let vols: Vec<Arc<ProxyVol>> = self.lock_vols().values().cloned().collect();
            let lines = vols
                .iter()
                .filter(|v| v.core.state() != P::Clear)
                .map(|v| {
                    let m = v.meta();
                    let errors = m.send.values().filter(|s| s.error.is_some()).count();
                    ProxyVolLine {
                        vol: v.name.clone(),
                        state: v.core.state(),
                        archives: u32::try_from(m.archives.len()).unwrap_or(u32::MAX),
                        send_errors: u32::try_from(errors).unwrap_or(u32::MAX),
                    }
                })
                .collect();
            return Ok(Reply::Status(Box::new(Status::Proxy(ProxySummary {
                node_id: self.ctx.id.to_string(),
                uptime_s: self.ctx.uptime().as_secs(),
                bg: self.ctx.bg as u64,
                fg_free: self.ctx.fg.free_slots(),
                vols: lines,
            }))));
        };
        let v = self.known_vol(name)?;
        let (archives, size_lb, since) = {
            let m = v.meta();
            (
                m.archives
                    .iter()
                    .map(|(a, i)| (a.clone(), i.clone(), m.send.get(a).cloned()))
                    .collect::<Vec<_>>(),
                m.size_lb,
                self.ctx
                    .clock
                    .instant()
                    .saturating_duration_since(m.last_wlog)
                    .as_secs(),
            )
        };
        let vd = v.dir.clone();
        let names: Vec<String> = archives.iter().map(|(a, _, _)| a.clone()).collect();
        let queues = spawn_io(move || {
            names
                .iter()
                .map(|a| list_diffs(&vd.queue(a)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let queues = archives
            .iter()
            .zip(queues)
            .map(|((a, info, send), q)| ProxyQueue {
                archive: a.clone(),
                dest: info.to_dest(),
                queued: q.len() as u64,
                bytes: q.iter().map(|f| f.diff.data_size).sum(),
                health: match send {
                    None => SendHealth::Ok,
                    Some(s) => match (&s.error, s.backoff.current()) {
                        (Some(e), _) => SendHealth::GaveUp(e.clone()),
                        (None, Some(d)) => SendHealth::Retrying {
                            delay_s: d.as_secs(),
                            last_error: s.last_failure.clone(),
                        },
                        (None, None) => SendHealth::Ok,
                    },
                },
            })
            .collect();
        Ok(Reply::Status(Box::new(Status::ProxyVol(ProxyVolStatus {
            vol: name.to_owned(),
            state: v.core.state(),
            stop: crate::dto::stop_flag(v.core.stop_state()),
            size_lb,
            last_wlog_s_ago: since,
            queues,
        }))))
    }
}

/// Runs blocking IO on a blocking thread; errors become wire errors (internal, or
/// wrong-state for a directory the proxy did not create).
/// The newer of a known snapshot and another (gid, timestamp).
pub(crate) fn newest(known: Option<(u64, u64)>, other: (u64, u64)) -> Option<(u64, u64)> {
    Some(match known {
        Some(k) if k.0 >= other.0 => k,
        _ => other,
    })
}

async fn spawn_io<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PersistError> + Send + 'static,
) -> Result<T, WireError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(refuse(ErrorCode::Internal, format!("io thread: {e}"))),
    }
}

fn command_name(c: &Command) -> String {
    let s = format!("{c:?}");
    s.split([' ', '(', '{']).next().unwrap_or("?").to_owned()
}

impl Handler for Proxy {
    async fn handle(self: Arc<Self>, inc: IncomingCall) {
        let IncomingCall { request, call, .. } = inc;
        match request {
            Request::WlogTransfer(req) => self.wlog_transfer(req, call).await,
            other => {
                let r = self.dispatch(other).await;
                answer(call, r).await;
            }
        }
    }

    async fn shutdown(self: Arc<Self>, force: bool) {
        // The dispatcher stops with the context's token; running sends finish (or abort at
        // their next chunk when forced).
        self.wake.notify_one();
        let wait = if force { 5 } else { 60 };
        let deadline = Instant::now() + Duration::from_secs(wait);
        while !self.lock_sched().running.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
