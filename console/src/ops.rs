//! The blocking operations of walblib's `Controller`, on top of [`Client`].
//!
//! Operators know walblib's semantics: `init_storage` is init-vol plus start standby,
//! `stop` waits until the volume is stopped, `full_backup` first prepares the storage,
//! the primary archive and the proxies (`_prepare_backup`), `snapshot` with archives waits
//! until the new gid is restorable there, `restore` waits until the image exists. Each
//! waiting helper polls every [`crate::client::ClientOptions::poll_interval`] (0.3 s, as
//! walblib) and fails when the volume leaves the states it may pass through on the way,
//! or when the timeout runs out, naming the last state seen.
//!
//! Replication follows walblib too: `replicate_once` (init the destination if Clear, the
//! gid defaults to the source's latest restorable snapshot, wait until the source's
//! `ReplSyncAsClient` ends and the destination holds the gid), `synchronize` (the proxies
//! drained with `stop empty`, the destination added to their archive-info, a last
//! replication, the proxies started again) and `start/stop/is_synchronizing`.
//!
//! The decisions (which states a wait may pass through, what `clear` or `full-backup`
//! must do first from a given state, what a replication's destination needs, whether the
//! proxies agree on an archive) are pure functions, unit-tested without daemons.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use walb_wire::msg::{
    ArchiveDest, BindHow, Codec, CompressOpt, MergeUntil, PeerRole, ReplicateCommand, StartMode,
    StopMode,
};
use walb_wire::Role;

use crate::client::{Client, ClientError};
use crate::poll::{poll_until, Poll};

/// walblib's `TIMEOUT_SEC`: long operations (backups, restores, restorable waits).
pub const TIMEOUT_LONG: Duration = Duration::from_secs(86_400);
/// walblib's `SHORT_TIMEOUT_SEC`: state changes.
pub const TIMEOUT_SHORT: Duration = Duration::from_secs(100);

/// State names of the three daemons (walb-tools' names).
pub mod states {
    /// Storage steady and temporary states.
    pub mod storage {
        #![allow(missing_docs)]
        pub const CLEAR: &str = "Clear";
        pub const SYNC_READY: &str = "SyncReady";
        pub const STOPPED: &str = "Stopped";
        pub const TARGET: &str = "Target";
        pub const STANDBY: &str = "Standby";
        pub const START_STANDBY: &str = "StartStandby";
        pub const STOP_STANDBY: &str = "StopStandby";
        pub const START_TARGET: &str = "StartTarget";
        pub const STOP_TARGET: &str = "StopTarget";
        pub const FULL_SYNC: &str = "FullSync";
        pub const HASH_SYNC: &str = "HashSync";
        pub const RESET: &str = "Reset";
        pub const INIT_VOL: &str = "InitVol";
        pub const CLEAR_VOL: &str = "ClearVol";
    }
    /// Proxy steady and temporary states.
    pub mod proxy {
        #![allow(missing_docs)]
        pub const CLEAR: &str = "Clear";
        pub const STOPPED: &str = "Stopped";
        pub const STARTED: &str = "Started";
        pub const START: &str = "Start";
        pub const STOP: &str = "Stop";
        pub const WLOG_RECV: &str = "WlogRecv";
        pub const WAIT_FOR_EMPTY: &str = "WaitForEmpty";
    }
    /// Archive steady and temporary states.
    pub mod archive {
        #![allow(missing_docs)]
        pub const CLEAR: &str = "Clear";
        pub const SYNC_READY: &str = "SyncReady";
        pub const ARCHIVED: &str = "Archived";
        pub const STOPPED: &str = "Stopped";
        pub const START: &str = "Start";
        pub const STOP: &str = "Stop";
        pub const RESET_VOL: &str = "ResetVol";
        pub const FULL_SYNC: &str = "FullSync";
        pub const HASH_SYNC: &str = "HashSync";
        pub const WDIFF_RECV: &str = "WdiffRecv";
        pub const REPL_SYNC_AS_SERVER: &str = "ReplSyncAsServer";
        pub const RESYNC: &str = "Resync";
        /// walblib's `aActive`: states in which an archive volume holds a usable backup.
        pub const ACTIVE: [&str; 4] = [ARCHIVED, HASH_SYNC, WDIFF_RECV, REPL_SYNC_AS_SERVER];
    }
}

use states::{archive as A, proxy as P, storage as S};

/// A wait for a state change: the states it may pass through, and where it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateWait {
    /// States the volume may be in on the way.
    pub transient: Vec<&'static str>,
    /// States that end the wait.
    pub goal: Vec<&'static str>,
}

impl StateWait {
    fn new(transient: &[&'static str], goal: &[&'static str]) -> Self {
        Self {
            transient: transient.to_vec(),
            goal: goal.to_vec(),
        }
    }
}

/// What `start` does on a node of `role` whose volume is in `state` (walblib's `start`):
/// the storage mode to send and the wait. Without a mode, a storage in SyncReady goes
/// Standby and any other goes Target.
pub fn start_plan(
    role: Role,
    state: &str,
    mode: Option<StartMode>,
) -> Result<(Option<StartMode>, StateWait), String> {
    match role {
        Role::Storage => {
            let mode = mode.unwrap_or(if state == S::SYNC_READY {
                StartMode::Standby
            } else {
                StartMode::Target
            });
            Ok(match mode {
                StartMode::Standby => (
                    Some(mode),
                    StateWait::new(&[S::SYNC_READY, S::START_STANDBY], &[S::STANDBY]),
                ),
                StartMode::Target => (
                    Some(mode),
                    StateWait::new(&[S::STOPPED, S::START_TARGET], &[S::TARGET]),
                ),
            })
        }
        _ if mode.is_some() => Err(format!(
            "a start mode (target|standby) is for a storage only, not {}",
            crate::cluster::article(role)
        )),
        Role::Proxy => Ok((None, StateWait::new(&[P::STOPPED, P::START], &[P::STARTED]))),
        _ => Ok((
            None,
            StateWait::new(&[A::STOPPED, A::START], &[A::ARCHIVED]),
        )),
    }
}

/// The wait after `stop` of a volume that was in `prev` (walblib's `wait_for_stopped`).
pub fn stop_wait(role: Role, prev: &str) -> StateWait {
    match role {
        Role::Storage if prev == S::STANDBY || prev == S::STOP_STANDBY => {
            StateWait::new(&[S::STANDBY, S::STOP_STANDBY], &[S::SYNC_READY])
        }
        Role::Storage => StateWait::new(&[S::TARGET, S::STOP_TARGET], &[S::STOPPED]),
        Role::Proxy => StateWait::new(
            &[P::STARTED, P::WLOG_RECV, P::STOP, P::WAIT_FOR_EMPTY],
            &[P::STOPPED],
        ),
        _ => StateWait::new(
            &[
                A::ARCHIVED,
                A::HASH_SYNC,
                A::WDIFF_RECV,
                A::REPL_SYNC_AS_SERVER,
                A::STOP,
            ],
            &[A::STOPPED],
        ),
    }
}

/// The wait after `reset-vol`.
pub fn reset_wait(role: Role) -> StateWait {
    match role {
        Role::Storage => StateWait::new(&[S::STOPPED, S::RESET], &[S::SYNC_READY]),
        _ => StateWait::new(&[A::STOPPED, A::RESET_VOL], &[A::SYNC_READY]),
    }
}

/// One step of bringing a volume to a state `clear-vol` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClearStep {
    /// `stop force` and wait.
    StopForce,
    /// `reset-vol` and wait (storage).
    Reset,
    /// `clear-vol`.
    ClearVol,
}

/// What `clear` does from `state` (walblib's `clear`): nothing for a Clear volume.
pub fn clear_plan(role: Role, state: &str) -> Result<Vec<ClearStep>, String> {
    use ClearStep::*;
    let refuse = |want: &str| {
        Err(format!(
            "the volume is {state}; clear needs it {want} (wait for the running operation)"
        ))
    };
    match role {
        Role::Storage => match state {
            S::CLEAR => Ok(vec![]),
            S::SYNC_READY => Ok(vec![ClearVol]),
            S::STOPPED => Ok(vec![Reset, ClearVol]),
            S::TARGET => Ok(vec![StopForce, Reset, ClearVol]),
            S::STANDBY => Ok(vec![StopForce, ClearVol]),
            _ => refuse("Clear, SyncReady, Stopped, Target or Standby"),
        },
        Role::Proxy => match state {
            P::CLEAR => Ok(vec![]),
            P::STOPPED => Ok(vec![ClearVol]),
            P::STARTED | P::WLOG_RECV => Ok(vec![StopForce, ClearVol]),
            _ => refuse("Clear, Stopped or Started"),
        },
        _ => match state {
            A::CLEAR => Ok(vec![]),
            A::SYNC_READY | A::STOPPED => Ok(vec![ClearVol]),
            A::ARCHIVED => Ok(vec![StopForce, ClearVol]),
            _ => refuse("Clear, SyncReady, Stopped or Archived"),
        },
    }
}

/// What the storage needs before a full backup, from `state` (walblib's
/// `_prepare_backup`): SyncReady as is, Standby → stop, Stopped → reset.
pub fn prepare_storage(state: &str) -> Result<Option<ClearStep>, String> {
    match state {
        S::SYNC_READY => Ok(None),
        S::STANDBY => Ok(Some(ClearStep::StopForce)),
        S::STOPPED => Ok(Some(ClearStep::Reset)),
        S::TARGET => Err(
            "it is Target (backed up already); stop it first (a new full backup starts a new \
             gid epoch)"
                .into(),
        ),
        S::CLEAR => Err("it is Clear; run init-storage NODE VOL WDEV first".into()),
        other => Err(format!(
            "it is {other}; a full backup needs SyncReady, Standby or Stopped"
        )),
    }
}

/// What the primary archive needs before a full backup: `Some(true)` = init-vol first.
pub fn prepare_archive(state: &str) -> Result<bool, String> {
    match state {
        A::CLEAR => Ok(true),
        A::SYNC_READY => Ok(false),
        other => Err(format!(
            "it is {other}; a full backup needs it Clear or SyncReady (reset it to start over, \
             which drops its backups)"
        )),
    }
}

/// The one command that brings `storage vol` back after its log overflowed, given the
/// state of its primary archive `archive`: `hash-backup` when the archive holds the
/// volume (a full backup is refused then; the hash backup resets the storage's volume
/// and sends only the blocks that differ), `full-backup` when it holds nothing yet.
pub fn overflow_recovery(storage: &str, vol: &str, archive: &str, archive_state: &str) -> String {
    let lost = format!("the log of {storage} {vol} overflowed");
    if A::ACTIVE.contains(&archive_state) {
        format!(
            "{lost}: run `hash-backup {storage} {vol}` ({archive} holds {vol}: the volume is \
             reset and only the blocks that differ travel)"
        )
    } else if archive_state == A::CLEAR || archive_state == A::SYNC_READY {
        format!("{lost}: run `full-backup {storage} {vol}` ({archive} holds no copy of {vol})")
    } else {
        format!(
            "{lost}: run `hash-backup {storage} {vol}` once {archive} {vol} is Archived again \
             (it is {archive_state})"
        )
    }
}

/// The name of `storage`'s primary archive (its backup group's), for `command`.
pub fn primary_archive(
    client: &Client,
    storage: &str,
    command: &str,
) -> Result<String, ClientError> {
    Ok(client
        .cluster()
        .group(storage, command)?
        .archive
        .name
        .clone())
}

/// When `storage vol` has overflowed: [`overflow_recovery`] from the state of its
/// primary archive; `None` while its log is fine.
pub async fn overflow_advice(
    client: &Client,
    storage: &str,
    vol: &str,
) -> Result<Option<String>, ClientError> {
    if !client.is_overflow(storage, vol).await? {
        return Ok(None);
    }
    let archive = primary_archive(client, storage, "is-overflow")?;
    let ast = client.state(&archive, vol).await?;
    Ok(Some(overflow_recovery(storage, vol, &archive, &ast)))
}

/// `e`, or when `storage vol` overflowed (the reason `e` happened), what recovers it.
async fn or_overflow_advice(
    client: &Client,
    storage: &str,
    vol: &str,
    e: ClientError,
) -> ClientError {
    match overflow_advice(client, storage, vol).await {
        Ok(Some(advice)) => ClientError::State(advice),
        _ => e,
    }
}

/// What the primary archive needs before a hash backup: a base to compare with.
pub fn prepare_archive_hash(state: &str) -> Result<(), String> {
    if A::ACTIVE.contains(&state) {
        Ok(())
    } else {
        Err(format!(
            "it is {state}; a hash backup needs it Archived (take a full backup first)"
        ))
    }
}

/// Parses `CODEC[:LEVEL[:NCPU]]` (walb-tools' compression option).
pub fn parse_compress(s: &str) -> Option<CompressOpt> {
    let mut parts = s.split(':');
    let codec = match parts.next()? {
        "none" => Codec::None,
        "snappy" => Codec::Snappy,
        "gzip" | "zlib" => Codec::Gzip,
        "lzma" | "xz" => Codec::Lzma,
        "lz4" => Codec::Lz4,
        "zstd" => Codec::Zstd,
        _ => return None,
    };
    let level = match parts.next() {
        Some(l) => l.parse().ok()?,
        None => 0,
    };
    let ncpu = match parts.next() {
        Some(n) => n.parse().ok()?,
        None => 1,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(CompressOpt { codec, level, ncpu })
}

/// walb-tools' default compression of forwarded diffs (`snappy:0:1`).
pub fn default_compress() -> CompressOpt {
    CompressOpt {
        codec: Codec::Snappy,
        level: 0,
        ncpu: 1,
    }
}

/// Waits until `node`'s `vol` is in one of `wait.goal`; fails if it is in a state that is
/// neither transient nor a goal, or after `timeout`. Returns the goal state reached.
pub async fn wait_for_state(
    client: &Client,
    node: &str,
    vol: &str,
    wait: &StateWait,
    timeout: Duration,
) -> Result<String, ClientError> {
    let every = client.options().poll_interval;
    poll_until(Instant::now(), timeout, every, move || async move {
        let st = client.state(node, vol).await?;
        if wait.goal.iter().any(|g| *g == st) {
            return Ok(Poll::Ready(st));
        }
        if !wait.transient.iter().any(|t| *t == st) {
            return Err(ClientError::State(format!(
                "{node} {vol} is {st}, expected {} on the way to {}",
                wait.transient.join("/"),
                wait.goal.join("/")
            )));
        }
        Ok(Poll::Pending(format!(
            "{node} {vol} to be {} (it is {st})",
            wait.goal.join("/")
        )))
    })
    .await
}

pub(crate) fn role_of(
    client: &Client,
    node: &str,
    want: &[Role],
    command: &str,
) -> Result<Role, ClientError> {
    Ok(client.cluster().node_as(node, want, command)?.role)
}

/// walblib's `init_storage`: init-vol with the device, then start standby.
pub async fn init_storage(
    client: &Client,
    node: &str,
    vol: &str,
    wdev: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    role_of(client, node, &[Role::Storage], "init-storage")?;
    client.init_vol(node, vol, Some(wdev)).await?;
    client.start(node, vol, Some(StartMode::Standby)).await?;
    let (_, wait) = start_plan(Role::Storage, S::SYNC_READY, Some(StartMode::Standby))
        .map_err(ClientError::State)?;
    wait_for_state(client, node, vol, &wait, timeout).await
}

/// `init-vol` on an archive (Clear → SyncReady).
pub async fn init_archive(client: &Client, node: &str, vol: &str) -> Result<String, ClientError> {
    role_of(client, node, &[Role::Archive], "init-archive")?;
    client.init_vol(node, vol, None).await?;
    client.state(node, vol).await
}

/// walblib's `start`: start and wait for the started state.
pub async fn start(
    client: &Client,
    node: &str,
    vol: &str,
    mode: Option<StartMode>,
    timeout: Duration,
) -> Result<String, ClientError> {
    let role = role_of(
        client,
        node,
        &[Role::Storage, Role::Proxy, Role::Archive],
        "start",
    )?;
    let st = client.state(node, vol).await?;
    let (mode, wait) = start_plan(role, &st, mode).map_err(ClientError::State)?;
    client.start(node, vol, mode).await?;
    wait_for_state(client, node, vol, &wait, timeout).await
}

/// walblib's `stop`: stop and wait for the stopped state.
pub async fn stop(
    client: &Client,
    node: &str,
    vol: &str,
    mode: StopMode,
    timeout: Duration,
) -> Result<String, ClientError> {
    let role = role_of(
        client,
        node,
        &[Role::Storage, Role::Proxy, Role::Archive],
        "stop",
    )?;
    if mode == StopMode::Empty && role != Role::Proxy {
        return Err(ClientError::State(format!(
            "stop empty is for a proxy; {node} is {}",
            crate::cluster::article(role)
        )));
    }
    let prev = client.state(node, vol).await?;
    client.stop(node, vol, mode).await?;
    wait_for_state(client, node, vol, &stop_wait(role, &prev), timeout).await
}

/// walblib's `reset`: reset-vol and wait for SyncReady.
pub async fn reset(
    client: &Client,
    node: &str,
    vol: &str,
    gid: Option<u64>,
    timeout: Duration,
) -> Result<String, ClientError> {
    let role = role_of(client, node, &[Role::Storage, Role::Archive], "reset")?;
    if gid.is_some() && role != Role::Storage {
        return Err(ClientError::State(
            "reset with a gid is for a storage only".into(),
        ));
    }
    client.reset_vol(node, vol, gid).await?;
    wait_for_state(client, node, vol, &reset_wait(role), timeout).await
}

/// walblib's `clear`: brings the volume to a clearable state, then clear-vol.
pub async fn clear(
    client: &Client,
    node: &str,
    vol: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    let role = role_of(
        client,
        node,
        &[Role::Storage, Role::Proxy, Role::Archive],
        "clear",
    )?;
    let st = client.state(node, vol).await?;
    let plan =
        clear_plan(role, &st).map_err(|m| ClientError::State(format!("{node} {vol}: {m}")))?;
    for step in plan {
        match step {
            ClearStep::StopForce => {
                stop(client, node, vol, StopMode::Force, timeout).await?;
            }
            ClearStep::Reset => {
                reset(client, node, vol, None, timeout).await?;
            }
            ClearStep::ClearVol => client.clear_vol(node, vol).await?,
        }
    }
    client.state(node, vol).await
}

/// walblib's `add_archive_to_proxy` for one proxy: makes `proxy` send `vol` to `archive`
/// at `addr` and leaves it Started. Touches nothing if it already does.
pub async fn add_archive_to_proxy(
    client: &Client,
    proxy: &str,
    vol: &str,
    archive: &str,
    addr: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    let st = client.state(proxy, vol).await?;
    let listed = if st == P::CLEAR {
        Vec::new()
    } else {
        client.archive_info_list(proxy, vol).await?
    };
    let have = listed.iter().any(|a| a == archive);
    if have && st == P::STARTED {
        let info = client.archive_info_get(proxy, vol, archive).await?;
        if info.split_whitespace().next() == Some(addr) {
            return Ok(());
        }
    }
    if st == P::STARTED || st == P::WLOG_RECV {
        stop(client, proxy, vol, StopMode::Force, timeout).await?;
    }
    let dest = ArchiveDest {
        addr: addr.to_owned(),
        compress: default_compress(),
        delay_s: 0,
    };
    info!(proxy, vol, archive, addr, update = have, "archive-info");
    client
        .archive_info_set(proxy, vol, archive, dest, have)
        .await?;
    if client.state(proxy, vol).await? == P::STOPPED {
        start(client, proxy, vol, None, timeout).await?;
    }
    Ok(())
}

/// walblib's `_prepare_backup`: the storage SyncReady, no other storage backing up the
/// volume, the primary archive initialized, the proxies sending to it and started.
pub async fn prepare_backup(
    client: &Client,
    storage: &str,
    vol: &str,
    hash: bool,
    timeout: Duration,
) -> Result<(), ClientError> {
    let cluster = client.cluster().clone();
    let group = cluster.group(storage, "full-backup")?;
    // Both ends are judged before anything changes: the storage first (as walblib), then
    // the archive, whose refusal would otherwise come after the storage was reset.
    let st = client.state(storage, vol).await?;
    // An overflowed Target volume is stopped by the storage's monitor soon; a hash backup
    // (the one command that recovers it) does not wait for that.
    let overflowed_target = hash && st == S::TARGET && client.is_overflow(storage, vol).await?;
    let step = if overflowed_target {
        Some(ClearStep::StopForce)
    } else {
        prepare_storage(&st).map_err(|m| ClientError::State(format!("{storage} {vol}: {m}")))?
    };
    let a = &group.archive.name;
    let ast = client.state(a, vol).await?;
    let init_archive = if hash {
        prepare_archive_hash(&ast).map(|()| false)
    } else {
        prepare_archive(&ast)
    }
    .map_err(|m| ClientError::State(format!("{a} {vol}: {m}")))?;
    match step {
        Some(ClearStep::StopForce) if overflowed_target => {
            if stop(client, storage, vol, StopMode::Force, timeout)
                .await
                .is_err()
            {
                // The monitor stopped it first (or is stopping it).
                let wait = stop_wait(Role::Storage, S::TARGET);
                wait_for_state(client, storage, vol, &wait, timeout).await?;
            }
            reset(client, storage, vol, None, timeout).await?;
        }
        Some(ClearStep::StopForce) => {
            stop(client, storage, vol, StopMode::Graceful, timeout).await?;
        }
        Some(ClearStep::Reset) => {
            reset(client, storage, vol, None, timeout).await?;
        }
        _ => {}
    }
    for other in cluster.nodes_of(Role::Storage) {
        if other.name == storage {
            continue;
        }
        let st = client.state(&other.name, vol).await?;
        if st != S::CLEAR && st != S::STANDBY {
            return Err(ClientError::State(format!(
                "{} {vol} is {st}: only one storage may back up a volume (make it Standby or \
                 clear it first)",
                other.name
            )));
        }
    }
    // walblib stops synchronizing every archive before a backup: the backup gives the
    // volume a new uuid at the primary, so a secondary still fed by the proxies would
    // refuse every later diff (different-uuid) for good. It follows again after
    // `replicate --sync`.
    for other in cluster.nodes_of(Role::Archive) {
        if other.name != *a {
            stop_synchronizing(client, &other.name, vol, timeout).await?;
        }
    }
    if init_archive {
        client.init_vol(a, vol, None).await?;
    }
    // The archive takes this storage's backups and the group's proxies' diffs; each proxy
    // takes this storage's wlogs. The storage becomes the volume's owner everywhere.
    let owner = [storage.to_owned()];
    client
        .bind(a, vol, PeerRole::Storage, &owner, BindHow::Set)
        .await?;
    for p in &group.proxies {
        serve_through_proxy(client, storage, vol, &p.name, timeout).await?;
    }
    Ok(())
}

/// Makes `proxy` one of the ways of `vol` from `storage` to its primary archive: the
/// archive takes the proxy's diffs, the proxy sends `vol` to the archive (started) and
/// takes the storage's wlogs. Done for every proxy of the group before a backup; for a
/// proxy added to a running group (`lab add-node proxy`), on its own.
pub async fn serve_through_proxy(
    client: &Client,
    storage: &str,
    vol: &str,
    proxy: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    let cluster = client.cluster().clone();
    let group = cluster.group(storage, "serve-through-proxy")?;
    let (a, addr) = (&group.archive.name, &group.archive.addr);
    let p = [proxy.to_owned()];
    client
        .bind(a, vol, PeerRole::Proxy, &p, BindHow::Add)
        .await?;
    add_archive_to_proxy(client, proxy, vol, a, addr, timeout).await?;
    let owner = [storage.to_owned()];
    client
        .bind(proxy, vol, PeerRole::Storage, &owner, BindHow::Set)
        .await?;
    Ok(())
}

/// Waits until the storage volume is Target after a full or hash backup was accepted:
/// it passes through `during`; SyncReady is where a failed sync rolls back to (tolerated
/// only for a moment after the start, before the sync shows).
async fn wait_for_sync(
    client: &Client,
    storage: &str,
    vol: &str,
    kind: &Backup,
    watch: &FailureWatch,
    t0: Instant,
    timeout: Duration,
) -> Result<(), ClientError> {
    let accepted = Instant::now();
    let seen_sync = &AtomicBool::new(false);
    let every = client.options().poll_interval;
    poll_until(t0, timeout, every, move || async move {
        let st = client.state(storage, vol).await?;
        if st == S::TARGET {
            return Ok(Poll::Ready(()));
        }
        if let Some(e) = watch.error() {
            return Err(ClientError::State(format!("{storage} {vol}: {e}")));
        }
        let what = kind.what;
        if kind.during.contains(&st.as_str()) {
            seen_sync.store(true, Ordering::Relaxed);
        } else if !(st == S::SYNC_READY
            && !seen_sync.load(Ordering::Relaxed)
            && accepted.elapsed() < FULL_SYNC_GRACE)
        {
            let fallback = format!("{what} failed: the storage is {st} (see its log)");
            let why = watch.reason_or(fallback).await;
            return Err(ClientError::State(format!("{storage} {vol}: {why}")));
        }
        Ok(Poll::Pending(format!(
            "the {} of {storage} {vol} (the storage is {st})",
            kind.what
        )))
    })
    .await
}

/// Kicks the proxies of `storage`'s backup group (after a sync, their archive may be in
/// backoff).
async fn kick_proxies(client: &Client, storage: &str, vol: &str) -> Result<(), ClientError> {
    let group = client.cluster().group(storage, "full-backup")?;
    for p in &group.proxies {
        if let Err(e) = client.kick(&p.name, Some(vol), None).await {
            warn!(proxy = %p.name, "kick after a backup: {e}");
        }
    }
    Ok(())
}

/// What a full backup reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullBackupDone {
    /// The gid the image becomes clean (restorable) at.
    pub gid: u64,
    /// Whether it was seen restorable at the primary archive.
    pub restorable: bool,
}

/// A kind of backup as the console waits for it.
struct Backup {
    /// For messages.
    what: &'static str,
    /// The states the storage passes through meanwhile.
    during: [&'static str; 3],
    /// The operation of the storage's `Event::Failed` when it fails.
    op: &'static str,
}

/// A full backup: the states are walblib's `sDuringFullSync`.
const FULL_BACKUP: Backup = Backup {
    what: "full backup",
    during: [S::FULL_SYNC, S::STOPPED, S::START_TARGET],
    op: "full-backup",
};
/// A hash backup.
const HASH_BACKUP: Backup = Backup {
    what: "hash backup",
    during: [S::HASH_SYNC, S::STOPPED, S::START_TARGET],
    op: "hash-backup",
};
/// The operation an archive's restore names in its progress and failure events.
pub const OP_RESTORE: &str = "restore";
/// ... its merge.
pub const OP_MERGE: &str = "merge";
/// ... its apply.
pub const OP_APPLY: &str = "apply";

/// A SyncReady seen this soon after the command may precede the FullSync state.
const FULL_SYNC_GRACE: Duration = Duration::from_secs(2);

/// walblib's `full_backup`: prepare, full-bkp, wait until the storage is Target, read the
/// gid the image becomes clean at, and (if `wait_restorable`) wait until it is restorable
/// at the primary archive.
pub async fn full_backup(
    client: &Client,
    storage: &str,
    vol: &str,
    bulk_lb: Option<u64>,
    wait_restorable: bool,
    timeout: Duration,
) -> Result<FullBackupDone, ClientError> {
    let t0 = Instant::now();
    prepare_backup(client, storage, vol, false, TIMEOUT_SHORT.min(timeout)).await?;
    let watch = FailureWatch::start(client, storage, vol, FULL_BACKUP.op).await;
    client.full_backup(storage, vol, bulk_lb).await?;
    info!(storage, vol, "full backup accepted");
    wait_for_sync(client, storage, vol, &FULL_BACKUP, &watch, t0, timeout).await?;
    let archive = primary_archive(client, storage, "full-backup")?;
    let ast = client.state(&archive, vol).await?;
    if !A::ACTIVE.contains(&ast.as_str()) {
        return Err(ClientError::State(format!(
            "after the full backup of {storage} {vol}, {archive} {vol} is {ast}, not Archived"
        )));
    }
    kick_proxies(client, storage, vol).await?;
    let base = client.meta_state(storage, vol, false, None).await?;
    let gid = base.snap_b.gid_e;
    backup_done(
        client,
        &archive,
        vol,
        gid,
        wait_restorable,
        timeout.saturating_sub(t0.elapsed()),
    )
    .await
}

/// A backup's end: its gid, once restorable at `archive` when `wait` (within `left`).
async fn backup_done(
    client: &Client,
    archive: &str,
    vol: &str,
    gid: u64,
    wait: bool,
    left: Duration,
) -> Result<FullBackupDone, ClientError> {
    if wait {
        wait_for_restorable(client, archive, vol, gid, left).await?;
    }
    Ok(FullBackupDone {
        gid,
        restorable: wait,
    })
}

/// Waits until `gid` is among `archive`'s restorable snapshots of `vol` (implicit ones
/// included, as walblib).
pub async fn wait_for_restorable(
    client: &Client,
    archive: &str,
    vol: &str,
    gid: u64,
    timeout: Duration,
) -> Result<(), ClientError> {
    role_of(client, archive, &[Role::Archive], "wait-restorable")?;
    let every = client.options().poll_interval;
    poll_until(Instant::now(), timeout, every, move || async move {
        let list = client.restorable(archive, vol, true).await?;
        if list.iter().any(|s| s.gid == Some(gid)) {
            return Ok(Poll::Ready(()));
        }
        let latest = list
            .iter()
            .filter_map(|s| s.gid)
            .max()
            .map_or("none".to_owned(), |g| g.to_string());
        Ok(Poll::Pending(format!(
            "gid {gid} to be restorable at {archive} {vol} (latest restorable: {latest})"
        )))
    })
    .await
}

/// walblib's blocking `snapshot`: with archives, checks they are active and the storage
/// is Target, takes the snapshot, and waits until it is restorable on each.
pub async fn snapshot(
    client: &Client,
    storage: &str,
    vol: &str,
    archives: &[String],
    timeout: Duration,
) -> Result<u64, ClientError> {
    role_of(client, storage, &[Role::Storage], "snapshot")?;
    for a in archives {
        role_of(client, a, &[Role::Archive], "snapshot")?;
    }
    if !archives.is_empty() {
        for a in archives {
            let st = client.state(a, vol).await?;
            if !A::ACTIVE.contains(&st.as_str()) {
                return Err(ClientError::State(format!(
                    "{a} {vol} is {st}: it cannot receive the snapshot (it needs to be Archived)"
                )));
            }
        }
        let st = client.state(storage, vol).await?;
        if st != S::TARGET {
            let e = ClientError::State(format!(
                "{storage} {vol} is {st}: a snapshot reaches the archives only from Target"
            ));
            return Err(or_overflow_advice(client, storage, vol, e).await);
        }
    }
    let gid = match client.snapshot(storage, vol).await {
        Ok(g) => g,
        Err(e) => return Err(or_overflow_advice(client, storage, vol, e).await),
    };
    let t0 = Instant::now();
    for a in archives {
        let left = timeout.saturating_sub(t0.elapsed());
        wait_for_restorable(client, a, vol, gid, left).await?;
    }
    Ok(gid)
}

/// walblib's `_wait_for_no_action`: until no `action` (Merge, Apply, Restore...) runs on
/// `archive`'s `vol`.
pub async fn wait_for_no_action(
    client: &Client,
    archive: &str,
    vol: &str,
    action: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    let every = client.options().poll_interval;
    poll_until(Instant::now(), timeout, every, move || async move {
        Ok(if client.num_action(archive, vol, action).await? == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("the {action} of {vol} on {archive} to end"))
        })
    })
    .await
}

/// walblib's `merge`: merge the diffs of `vol` from `gid_b` up to where `until` stops
/// (before gid E, or within N MiB: walb-tools' `merge vol gidB size N`) and wait until
/// the merge ends; returns the merged diff.
pub async fn merge(
    client: &Client,
    archive: &str,
    vol: &str,
    gid_b: u64,
    until: MergeUntil,
    timeout: Duration,
) -> Result<walb_wire::msg::MetaDiffDto, ClientError> {
    role_of(client, archive, &[Role::Archive], "merge")?;
    match until {
        MergeUntil::Gid(gid_e) if gid_e <= gid_b => {
            return Err(ClientError::State(format!(
                "merge {vol}: GIDE ({gid_e}) must be larger than GIDB ({gid_b})"
            )))
        }
        MergeUntil::SizeMib(0) => {
            return Err(ClientError::State(format!(
                "merge {vol}: --max-mb must be positive"
            )))
        }
        _ => {}
    }
    let before = client.diffs(archive, vol, None, None, None).await?;
    let watch = FailureWatch::start(client, archive, vol, OP_MERGE).await;
    client.merge(archive, vol, gid_b, until).await?;
    wait_for_no_action(client, archive, vol, "Merge", timeout).await?;
    let after = client.diffs(archive, vol, None, None, None).await?;
    match merged_diff(&before, &after, gid_b) {
        Some(d) => Ok(d),
        None => {
            let fallback = "it ended without merging (the archive's log says why)".to_owned();
            Err(ClientError::State(format!(
                "the merge of {vol} from gid {gid_b} on {archive} failed: {}",
                watch.reason_or(fallback).await
            )))
        }
    }
}

/// The diff a merge from `gid_b` made, if `after` shows one (see [`merged`]).
pub fn merged_diff(
    before: &[walb_wire::msg::MetaDiffDto],
    after: &[walb_wire::msg::MetaDiffDto],
    gid_b: u64,
) -> Option<walb_wire::msg::MetaDiffDto> {
    if !merged(before, after, gid_b) {
        return None;
    }
    let b0 = before
        .iter()
        .map(|d| d.range.snap_b.gid_b)
        .filter(|&g| g >= gid_b)
        .min()?;
    after
        .iter()
        .filter(|d| d.range.snap_b.gid_b == b0)
        .max_by_key(|d| d.range.snap_e.gid_b)
        .cloned()
}

/// True when `after` shows the merge from `gid_b` done: a diff from the first diff's
/// begin at or after `gid_b` reaches further than any diff from there did `before`
/// (diffs arriving meanwhile only add to the end of the chain).
pub fn merged(
    before: &[walb_wire::msg::MetaDiffDto],
    after: &[walb_wire::msg::MetaDiffDto],
    gid_b: u64,
) -> bool {
    let Some(b0) = before
        .iter()
        .map(|d| d.range.snap_b.gid_b)
        .filter(|&g| g >= gid_b)
        .min()
    else {
        return false;
    };
    let reach = |list: &[walb_wire::msg::MetaDiffDto]| {
        list.iter()
            .filter(|d| d.range.snap_b.gid_b == b0)
            .map(|d| d.range.snap_e.gid_b)
            .max()
    };
    match (reach(before), reach(after)) {
        (Some(e0), Some(e1)) => e1 > e0,
        _ => false,
    }
}

/// walblib's `apply`: apply the diffs of `vol` up to `gid` to the base image and wait
/// until the apply ends; returns the base afterwards.
pub async fn apply(
    client: &Client,
    archive: &str,
    vol: &str,
    gid: u64,
    timeout: Duration,
) -> Result<walb_wire::msg::MetaStateDto, ClientError> {
    role_of(client, archive, &[Role::Archive], "apply")?;
    let before = client.base(archive, vol).await?;
    let watch = FailureWatch::start(client, archive, vol, OP_APPLY).await;
    client.apply(archive, vol, gid).await?;
    wait_for_no_action(client, archive, vol, "Apply", timeout).await?;
    let after = client.base(archive, vol).await?;
    if applied(&before, &after) {
        Ok(after)
    } else {
        let fallback =
            "it ended with the base where it was (the archive's log says why)".to_owned();
        Err(ClientError::State(format!(
            "the apply of {vol} up to gid {gid} on {archive} failed: {}",
            watch.reason_or(fallback).await
        )))
    }
}

/// True when an apply moved the base from `before` to `after` (or finished an apply in
/// progress).
pub fn applied(
    before: &walb_wire::msg::MetaStateDto,
    after: &walb_wire::msg::MetaStateDto,
) -> bool {
    after.snap_b.gid_b > before.snap_b.gid_b || (before.snap_e.is_some() && after.snap_e.is_none())
}

/// walblib's `hash_backup`: prepare, hash-bkp, wait until the storage is Target, read the
/// gid the image is clean at (the end of the `<|gidB,gidE|>` the hash backup left the
/// archive in), and (if `wait_restorable`) wait until it is restorable at the primary
/// archive.
pub async fn hash_backup(
    client: &Client,
    storage: &str,
    vol: &str,
    bulk_lb: Option<u64>,
    wait_restorable: bool,
    timeout: Duration,
) -> Result<FullBackupDone, ClientError> {
    let t0 = Instant::now();
    role_of(client, storage, &[Role::Storage], "hash-backup")?;
    let archive = primary_archive(client, storage, "hash-backup")?;
    let before = restorable_gids(client, &archive, vol)
        .await?
        .into_iter()
        .max();
    prepare_backup(client, storage, vol, true, TIMEOUT_SHORT.min(timeout)).await?;
    let watch = FailureWatch::start(client, storage, vol, HASH_BACKUP.op).await;
    client.hash_backup(storage, vol, bulk_lb).await?;
    info!(storage, vol, "hash backup accepted");
    wait_for_sync(client, storage, vol, &HASH_BACKUP, &watch, t0, timeout).await?;
    kick_proxies(client, storage, vol).await?;
    let done = client.meta_state(storage, vol, false, None).await?;
    let gid = done.snap_b.gid_e;
    if done.snap_b.gid_b == 0 || before.is_some_and(|b| gid <= b) {
        return Err(ClientError::State(format!(
            "after the hash backup of {storage} {vol}, the storage reports {} (not a hash \
             backup's snapshot newer than {archive}'s restorable {}): is the storage older \
             than this console?",
            crate::exec::output::meta_state_str(&done),
            before.map_or("none".to_owned(), |g| g.to_string())
        )));
    }
    backup_done(
        client,
        &archive,
        vol,
        gid,
        wait_restorable,
        timeout.saturating_sub(t0.elapsed()),
    )
    .await
}

/// Consecutive polls without a Restore action before a missing image counts as failed.
const RESTORE_IDLE_POLLS: u32 = 3;

/// walblib's `restore`: restore, then wait until the image exists; returns its path.
pub async fn restore(
    client: &Client,
    archive: &str,
    vol: &str,
    gid: u64,
    timeout: Duration,
) -> Result<String, ClientError> {
    role_of(client, archive, &[Role::Archive], "restore")?;
    let watch = FailureWatch::start(client, archive, vol, OP_RESTORE).await;
    client.restore(archive, vol, gid).await?;
    match wait_for_restored(client, archive, vol, gid, timeout).await {
        Err(ClientError::State(fallback)) => {
            let why = watch.reason_or(fallback).await;
            Err(ClientError::State(format!("{archive} {vol}: {why}")))
        }
        r => r,
    }
}

/// walblib's `wait_for_restored`: until `gid` is restored (its path), failing once no
/// Restore action runs and the image is still missing.
pub async fn wait_for_restored(
    client: &Client,
    archive: &str,
    vol: &str,
    gid: u64,
    timeout: Duration,
) -> Result<String, ClientError> {
    let idle = &AtomicU32::new(0);
    let every = client.options().poll_interval;
    poll_until(Instant::now(), timeout, every, move || async move {
        let restored = client.restored(archive, vol).await?;
        if let Some((_, path)) = restored.into_iter().find(|(g, _)| *g == gid) {
            return Ok(Poll::Ready(path));
        }
        if client.num_action(archive, vol, "Restore").await? == 0 {
            if idle.fetch_add(1, Ordering::Relaxed) + 1 >= RESTORE_IDLE_POLLS {
                return Err(ClientError::State(format!(
                    "the restore of {vol} gid {gid} on {archive} ended without an image (see \
                     the archive's log)"
                )));
            }
        } else {
            idle.store(0, Ordering::Relaxed);
        }
        Ok(Poll::Pending(format!(
            "{archive} to restore {vol} gid {gid}"
        )))
    })
    .await
}

/// The path of restored image `gid` (`get_restored_path`).
pub async fn restored_path(
    client: &Client,
    archive: &str,
    vol: &str,
    gid: u64,
) -> Result<String, ClientError> {
    role_of(client, archive, &[Role::Archive], "restored-path")?;
    let restored = client.restored(archive, vol).await?;
    restored
        .into_iter()
        .find(|(g, _)| *g == gid)
        .map(|(_, p)| p)
        .ok_or_else(|| {
            ClientError::State(format!(
                "{archive} {vol}: gid {gid} is not restored (restore {archive} {vol} {gid})"
            ))
        })
}

// ------------------------------------------------------------------------------------
// Replication between archives (walblib's replicate_once, synchronize, replicate,
// start/stop/is_synchronizing).

/// The action a source archive runs while it replicates.
pub const REPL_ACTION: &str = "ReplSyncAsClient";

/// The `op` of a replication's progress and failure events.
pub const REPL_OP: &str = "replicate";

/// What `replicate` was asked besides the source, volume and destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicateOpts {
    /// Replicate up to this gid (default: the source's latest restorable snapshot).
    pub gid: Option<u64>,
    /// Let the destination throw away what it holds when it diverged (another archive
    /// uuid) and take the source's data instead.
    pub do_resync: bool,
    /// Send the diffs one by one instead of merging them.
    pub dont_merge: bool,
    /// Bulk size of a full copy, logical blocks (default: the archive's, 256 KiB).
    pub bulk_lb: Option<u64>,
    /// Compression of a full copy's image (zstd:LEVEL or none; default: the archive's).
    pub compress: Option<CompressOpt>,
    /// Largest merged diff of a round, bytes (default: the archive's).
    pub merge_size_max: Option<u64>,
}

/// What the destination of a replication needs first, by its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaPrep {
    /// It is Clear: `init-vol` (a full replication follows).
    Init,
    /// It is SyncReady: ready for a full replication.
    Ready,
    /// It is Archived: it gets what it lacks (its archive uuid must match the source's
    /// unless resyncing).
    Archived,
}

/// What the destination needs before a replication, from its state (walblib's
/// `replicate_once_nbk`): Clear is initialized, SyncReady and Archived are ready.
pub fn prepare_replica(state: &str) -> Result<ReplicaPrep, String> {
    match state {
        A::CLEAR => Ok(ReplicaPrep::Init),
        A::SYNC_READY => Ok(ReplicaPrep::Ready),
        A::ARCHIVED => Ok(ReplicaPrep::Archived),
        A::STOPPED => Err(
            "it is Stopped; start it first (a replication needs it Archived, \
                           SyncReady or Clear)"
                .into(),
        ),
        other => Err(format!(
            "it is {other}; a replication needs it Clear, SyncReady or Archived (wait for \
             the running operation)"
        )),
    }
}

/// The gid a replication goes up to: `given`, which must be restorable at the source
/// (`src_gids`: its restorable gids, implicit ones included), else the source's latest.
pub fn replicate_gid(given: Option<u64>, src_gids: &[u64]) -> Result<u64, String> {
    let latest = src_gids.iter().copied().max();
    match (given, latest) {
        (_, None) => Err("it has no restorable snapshot to replicate".into()),
        (Some(g), Some(l)) if !src_gids.contains(&g) => Err(format!(
            "gid {g} is not restorable there (the latest is {l})"
        )),
        (Some(g), _) => Ok(g),
        (None, Some(l)) => Ok(l),
    }
}

/// True when a destination whose restorable gids are `dst_gids` holds `gid` or later.
pub fn replica_reaches(dst_gids: &[u64], gid: u64) -> bool {
    dst_gids.iter().any(|g| *g >= gid)
}

/// Whether every proxy has the archive (`Some(true)`), none has (`Some(false)`), or
/// they disagree (`None`; walblib raises then). No proxies: `Some(false)`.
pub fn all_or_none(has: &[bool]) -> Option<bool> {
    match (has.iter().all(|h| *h), has.iter().any(|h| *h)) {
        (true, true) => Some(true),
        (_, false) => Some(false),
        _ => None,
    }
}

/// The proxies that serve volumes (walblib's layout `proxyL`): those of every storage's
/// backup group in the cluster file, in order; every proxy of the file if no storage
/// names one.
pub fn serving_proxies(cluster: &crate::cluster::Cluster) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in cluster.nodes_of(Role::Storage) {
        for p in &s.proxies {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
    }
    if out.is_empty() {
        out = cluster
            .nodes_of(Role::Proxy)
            .map(|p| p.name.clone())
            .collect();
    }
    out
}

/// The restorable gids of `archive`'s `vol`, implicit ones included (empty when it is
/// not Archived).
async fn restorable_gids(
    client: &Client,
    archive: &str,
    vol: &str,
) -> Result<Vec<u64>, ClientError> {
    Ok(client
        .restorable(archive, vol, true)
        .await?
        .iter()
        .filter_map(|s| s.gid)
        .collect())
}

/// Listens to a daemon's events for the failure ([`walb_wire::msg::Event::Failed`]) of
/// operation `op` of `vol` (a replication at its source, a backup at the storage, a
/// restore, merge or apply at the archive), so that the operator hears the daemon's
/// reason (a full disk, ...) rather than "see the log"; ends when dropped.
struct FailureWatch {
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// How long a failure seen by polling waits for its reason to arrive as an event.
const FAILURE_REASON_GRACE: Duration = Duration::from_secs(2);

impl FailureWatch {
    /// Subscribes to `node`'s events of `vol`; call it before sending the command.
    async fn start(client: &Client, node: &str, vol: &str, op: &'static str) -> FailureWatch {
        let error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let task = match client.subscribe(node, vec![vol.to_owned()]).await {
            Ok(mut stream) => {
                let (slot, vol, watched) = (error.clone(), vol.to_owned(), op);
                Some(tokio::spawn(async move {
                    while let Ok(Some(ev)) = stream.next().await {
                        if let walb_wire::msg::Event::Failed { vol: v, op, error } = ev {
                            if v == vol && op == watched {
                                if let Ok(mut s) = slot.lock() {
                                    *s = Some(error);
                                }
                            }
                        }
                    }
                }))
            }
            Err(e) => {
                warn!(
                    node,
                    "no event stream, a failure will be told without its reason: {e}"
                );
                None
            }
        };
        FailureWatch { error, task }
    }

    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// The failure's reason, waiting up to [`FAILURE_REASON_GRACE`] for its event (the
    /// daemon may publish it just after the poll saw the failure); `fallback` if none.
    async fn reason_or(&self, fallback: String) -> String {
        let every = Duration::from_millis(50);
        let reason = poll_until(
            Instant::now(),
            FAILURE_REASON_GRACE,
            every,
            move || async move {
                Ok(match self.error() {
                    Some(e) => Poll::Ready(Some(e)),
                    None if self.task.is_none() => Poll::Ready(None),
                    None => Poll::Pending(String::new()),
                })
            },
        )
        .await;
        reason.ok().flatten().unwrap_or(fallback)
    }
}

impl Drop for FailureWatch {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Consecutive polls without a running replication before a destination short of the
/// gid counts as failed.
const REPL_IDLE_POLLS: u32 = 4;

/// walblib's `replicate_once`: initializes the destination if Clear (checks its archive
/// uuid and size if Archived), sends `replicate` to the source for the gid (default: the
/// source's latest restorable snapshot), and waits until the source's replication ends
/// with the destination holding that gid. Returns the gid.
pub async fn replicate_once(
    client: &Client,
    src: &str,
    vol: &str,
    dst: &str,
    opts: ReplicateOpts,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let t0 = Instant::now();
    role_of(client, src, &[Role::Archive], "replicate")?;
    let dest = client
        .cluster()
        .node_as(dst, &[Role::Archive], "replicate")?
        .addr
        .clone();
    if src == dst {
        return Err(ClientError::State(format!(
            "replicate {vol}: the source and the destination are both {src}"
        )));
    }
    let src_state = client.state(src, vol).await?;
    let gid = replicate_gid(opts.gid, &restorable_gids(client, src, vol).await?).map_err(|m| {
        let hint = if opts.gid.is_some() {
            format!("; `restorable {src} {vol} all` lists them")
        } else {
            String::new()
        };
        ClientError::State(format!("{src} {vol} ({src_state}): {m}{hint}"))
    })?;
    let dst_state = client.state(dst, vol).await?;
    let prep =
        prepare_replica(&dst_state).map_err(|m| ClientError::State(format!("{dst} {vol}: {m}")))?;
    match prep {
        ReplicaPrep::Init => {
            info!(dst, vol, "init-vol before the replication");
            client.init_vol(dst, vol, None).await?;
        }
        ReplicaPrep::Ready => {}
        ReplicaPrep::Archived => {
            if !opts.do_resync {
                let (a, b) = (
                    client.archive_uuid(src, vol).await?,
                    client.archive_uuid(dst, vol).await?,
                );
                if a != b {
                    return Err(ClientError::State(format!(
                        "{dst} {vol} holds another archive's data (archive uuid {} where {src} \
                         has {}); replicate with --resync replaces it with {src}'s",
                        crate::exec::output::uuid_hex(&b),
                        crate::exec::output::uuid_hex(&a)
                    )));
                }
            }
            let (src_lb, dst_lb) = (
                client.vol_size(src, vol).await?,
                client.vol_size(dst, vol).await?,
            );
            if dst_lb < src_lb {
                info!(dst, vol, src_lb, dst_lb, "growing the destination first");
                client.resize(dst, vol, src_lb, false).await?;
            }
        }
    }
    // The destination takes copies of this volume from the source only once told so, and
    // the diffs of the proxies that already send to it (it was synchronizing): without
    // that they could not deliver their queues for it.
    client
        .bind(dst, vol, PeerRole::Archive, &[src.to_owned()], BindHow::Add)
        .await?;
    let mut sending = Vec::new();
    for p in serving_proxies(client.cluster()) {
        if proxy_archives(client, &p, vol)
            .await?
            .iter()
            .any(|a| a == dst)
        {
            sending.push(p);
        }
    }
    if !sending.is_empty() {
        client
            .bind(dst, vol, PeerRole::Proxy, &sending, BindHow::Add)
            .await?;
    }
    let watch = FailureWatch::start(client, src, vol, REPL_OP).await;
    client
        .replicate(
            src,
            ReplicateCommand {
                vol: vol.to_owned(),
                until: MergeUntil::Gid(gid),
                dest,
                dest_id: dst.to_owned(),
                do_resync: opts.do_resync,
                dont_merge: opts.dont_merge,
                compress: opts.compress,
                merge_size_max: opts.merge_size_max,
                bulk_lb: opts.bulk_lb,
            },
        )
        .await?;
    info!(src, vol, dst, gid, "replication accepted");
    let left = timeout.saturating_sub(t0.elapsed());
    wait_for_replicated(client, src, vol, dst, gid, &watch, left).await?;
    Ok(gid)
}

/// walblib's `wait_for_replicated`: until the source runs no replication of `vol` and
/// the destination is Archived holding `gid` or later; a replication that ends short of
/// it fails with the source's reason (its failure event) when there is one.
async fn wait_for_replicated(
    client: &Client,
    src: &str,
    vol: &str,
    dst: &str,
    gid: u64,
    watch: &FailureWatch,
    timeout: Duration,
) -> Result<(), ClientError> {
    let idle = &AtomicU32::new(0);
    let every = client.options().poll_interval;
    poll_until(Instant::now(), timeout, every, move || async move {
        let running = client.num_action(src, vol, REPL_ACTION).await?;
        let st = client.state(dst, vol).await?;
        let gids = if A::ACTIVE.contains(&st.as_str()) {
            restorable_gids(client, dst, vol).await?
        } else {
            Vec::new()
        };
        let reached = replica_reaches(&gids, gid);
        if running == 0 && reached && st == A::ARCHIVED {
            return Ok(Poll::Ready(()));
        }
        if let Some(e) = watch.error() {
            return Err(ClientError::State(format!(
                "the replication of {vol} from {src} to {dst} failed: {e}"
            )));
        }
        if running == 0 {
            if idle.fetch_add(1, Ordering::Relaxed) + 1 >= REPL_IDLE_POLLS {
                let latest = gids
                    .iter()
                    .max()
                    .map_or("nothing restorable".to_owned(), |g| {
                        format!("latest gid {g}")
                    });
                return Err(ClientError::State(format!(
                    "the replication of {vol} from {src} to {dst} ended short of gid {gid}: \
                     {dst} is {st} with {latest} (see {src}'s and {dst}'s logs)"
                )));
            }
        } else {
            idle.store(0, Ordering::Relaxed);
        }
        Ok(Poll::Pending(format!(
            "the replication of {vol} from {src} to {dst} up to gid {gid} ({dst} is {st})"
        )))
    })
    .await
}

/// Kicks every storage of the cluster file (after the proxies changed, their wlog
/// transfers may be in backoff); an unreachable one is only logged.
async fn kick_storages(client: &Client) {
    let names: Vec<String> = client
        .cluster()
        .nodes_of(Role::Storage)
        .map(|n| n.name.clone())
        .collect();
    for s in names {
        if let Err(e) = client.kick(&s, None, None).await {
            warn!(storage = %s, "kick: {e}");
        }
    }
}

/// The archives `proxy` sends `vol` to (none while its volume is Clear).
async fn proxy_archives(
    client: &Client,
    proxy: &str,
    vol: &str,
) -> Result<Vec<String>, ClientError> {
    if client.state(proxy, vol).await? == P::CLEAR {
        return Ok(Vec::new());
    }
    client.archive_info_list(proxy, vol).await
}

/// walblib's `synchronize`: drains every serving proxy (`stop empty`), adds `dst` to
/// their archive-info, replicates once more (the destination then holds everything the
/// proxies delivered), and starts the proxies again: from then on they send every diff
/// to `dst` too. Returns the gid of that last replication. If it fails, an archive-info
/// entry added here is removed again and the proxies are started all the same.
pub async fn synchronize(
    client: &Client,
    src: &str,
    vol: &str,
    dst: &str,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let t0 = Instant::now();
    role_of(client, src, &[Role::Archive], "replicate")?;
    let addr = client
        .cluster()
        .node_as(dst, &[Role::Archive], "replicate")?
        .addr
        .clone();
    let proxies = serving_proxies(client.cluster());
    if proxies.is_empty() {
        return Err(ClientError::State(format!(
            "the cluster file {} has no proxy to send {vol} to {dst}",
            client.cluster().origin
        )));
    }
    let mut stopping = Vec::new();
    for p in &proxies {
        let st = client.state(p, vol).await?;
        if st == P::STARTED || st == P::WLOG_RECV {
            // A destination the proxy gave up on (send error) must be retried, or its
            // queue never empties.
            if let Err(e) = client.kick(p, Some(vol), None).await {
                warn!(proxy = %p, "kick before stop empty: {e}");
            }
            client.stop(p, vol, StopMode::Empty).await?;
            stopping.push((p.clone(), st));
        }
    }
    for (p, prev) in &stopping {
        let left = timeout.saturating_sub(t0.elapsed());
        wait_for_state(client, p, vol, &stop_wait(Role::Proxy, prev), left).await?;
    }
    let mut added = Vec::new();
    for p in &proxies {
        let listed = proxy_archives(client, p, vol).await?;
        let have = listed.iter().any(|a| a == dst);
        if have {
            let info = client.archive_info_get(p, vol, dst).await?;
            if info.split_whitespace().next() == Some(addr.as_str()) {
                continue;
            }
        } else {
            added.push(p.clone());
        }
        let dest = ArchiveDest {
            addr: addr.clone(),
            compress: default_compress(),
            delay_s: 0,
        };
        info!(proxy = %p, vol, archive = dst, update = have, "archive-info");
        client.archive_info_set(p, vol, dst, dest, have).await?;
    }
    let left = timeout.saturating_sub(t0.elapsed());
    // The proxies send to dst now: replicate_once binds them there.
    let r = replicate_once(client, src, vol, dst, ReplicateOpts::default(), left).await;
    if r.is_err() {
        for p in &added {
            if let Err(e) = client.archive_info_delete(p, vol, dst).await {
                warn!(proxy = %p, "taking {dst} out again: {e}");
            }
        }
    }
    for p in &proxies {
        if client.state(p, vol).await? == P::STOPPED {
            start(client, p, vol, None, TIMEOUT_SHORT).await?;
        }
    }
    kick_storages(client).await;
    r
}

/// walblib's `replicate`: [`replicate_once`], then with `sync` [`synchronize`] (the
/// first copy runs while the proxies keep working; they stop only for the catch-up).
/// Returns the last gid replicated.
pub async fn replicate(
    client: &Client,
    src: &str,
    vol: &str,
    dst: &str,
    opts: ReplicateOpts,
    sync: bool,
    timeout: Duration,
) -> Result<u64, ClientError> {
    let t0 = Instant::now();
    let gid = replicate_once(client, src, vol, dst, opts, timeout).await?;
    if !sync {
        return Ok(gid);
    }
    let left = timeout.saturating_sub(t0.elapsed());
    synchronize(client, src, vol, dst, left).await
}

/// walblib's `is_synchronizing`: whether every serving proxy sends `vol` to `archive`
/// (an error when some do and some do not).
pub async fn is_synchronizing(
    client: &Client,
    archive: &str,
    vol: &str,
) -> Result<bool, ClientError> {
    role_of(client, archive, &[Role::Archive], "is-synchronizing")?;
    let proxies = serving_proxies(client.cluster());
    let mut has = Vec::with_capacity(proxies.len());
    for p in &proxies {
        has.push(
            proxy_archives(client, p, vol)
                .await?
                .iter()
                .any(|a| a == archive),
        );
    }
    all_or_none(&has).ok_or_else(|| {
        let yes: Vec<&str> = proxies
            .iter()
            .zip(&has)
            .filter(|(_, h)| **h)
            .map(|(p, _)| p.as_str())
            .collect();
        let no: Vec<&str> = proxies
            .iter()
            .zip(&has)
            .filter(|(_, h)| !**h)
            .map(|(p, _)| p.as_str())
            .collect();
        ClientError::State(format!(
            "the proxies disagree: {} send {vol} to {archive}, {} do not (start-synchronizing \
             or stop-synchronizing {archive} {vol} makes them agree)",
            yes.join(", "),
            no.join(", ")
        ))
    })
}

/// walblib's `start_synchronizing`: every serving proxy sends `vol` to `archive` too
/// (added to its archive-info, proxy started), then the storages are kicked. The archive
/// must already hold everything up to what the proxies will send (see [`synchronize`]).
pub async fn start_synchronizing(
    client: &Client,
    archive: &str,
    vol: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    let addr = client
        .cluster()
        .node_as(archive, &[Role::Archive], "start-synchronizing")?
        .addr
        .clone();
    let proxies = serving_proxies(client.cluster());
    client
        .bind(archive, vol, PeerRole::Proxy, &proxies, BindHow::Add)
        .await?;
    for p in proxies {
        add_archive_to_proxy(client, &p, vol, archive, &addr, timeout).await?;
    }
    kick_storages(client).await;
    Ok(())
}

/// walblib's `stop_synchronizing`: every serving proxy that sends `vol` to `archive` is
/// stopped, forgets the archive (and its queue), and is started again (a proxy volume
/// left without archives is gone: Clear); then the storages are kicked. Like walblib,
/// the primary archive may be taken out too (its backups then stop).
pub async fn stop_synchronizing(
    client: &Client,
    archive: &str,
    vol: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    role_of(client, archive, &[Role::Archive], "stop-synchronizing")?;
    for p in serving_proxies(client.cluster()) {
        if !proxy_archives(client, &p, vol)
            .await?
            .iter()
            .any(|a| a == archive)
        {
            continue;
        }
        let st = client.state(&p, vol).await?;
        if st == P::STARTED || st == P::WLOG_RECV {
            stop(client, &p, vol, StopMode::Graceful, timeout).await?;
        }
        info!(proxy = %p, vol, archive, "archive-info delete");
        client.archive_info_delete(&p, vol, archive).await?;
        if client.state(&p, vol).await? == P::STOPPED {
            start(client, &p, vol, None, timeout).await?;
        }
    }
    kick_storages(client).await;
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn replication_destinations_and_gids_follow_walblib() {
        assert_eq!(prepare_replica("Clear"), Ok(ReplicaPrep::Init));
        assert_eq!(prepare_replica("SyncReady"), Ok(ReplicaPrep::Ready));
        assert_eq!(prepare_replica("Archived"), Ok(ReplicaPrep::Archived));
        assert!(prepare_replica("Stopped").unwrap_err().contains("start it"));
        assert!(prepare_replica("FullSync")
            .unwrap_err()
            .contains("FullSync"));
        assert_eq!(replicate_gid(None, &[3, 8, 5]), Ok(8));
        assert_eq!(replicate_gid(Some(5), &[3, 8, 5]), Ok(5));
        let e = replicate_gid(Some(6), &[3, 8, 5]).unwrap_err();
        assert!(
            e.contains("gid 6 is not restorable") && e.contains("latest is 8"),
            "{e}"
        );
        assert!(replicate_gid(None, &[])
            .unwrap_err()
            .contains("no restorable"));
        assert!(replica_reaches(&[0, 5], 5));
        assert!(replica_reaches(&[0, 9], 5), "later is enough");
        assert!(!replica_reaches(&[0, 4], 5));
        assert!(!replica_reaches(&[], 0));
    }

    #[test]
    fn proxies_agree_or_not_on_an_archive() {
        assert_eq!(all_or_none(&[true, true]), Some(true));
        assert_eq!(all_or_none(&[false, false]), Some(false));
        assert_eq!(all_or_none(&[]), Some(false));
        assert_eq!(all_or_none(&[true, false]), None);
        let text = |storages: &str| {
            format!(
                "name = \"t\"\n[certs]\nca = \"ca\"\ncert = \"c\"\nkey = \"k\"\n{storages}\
                 [[node]]\nname = \"p0\"\nrole = \"proxy\"\naddr = \"1\"\n\
                 [[node]]\nname = \"p1\"\nrole = \"proxy\"\naddr = \"2\"\n\
                 [[node]]\nname = \"a0\"\nrole = \"archive\"\naddr = \"3\"\n"
            )
        };
        let parse =
            |t: &str| crate::cluster::Cluster::parse(t, std::path::Path::new("/"), "t").unwrap();
        let c = parse(&text(
            "[[node]]\nname = \"s0\"\nrole = \"storage\"\naddr = \"4\"\narchive = \"a0\"\nproxies = [\"p1\"]\n",
        ));
        assert_eq!(serving_proxies(&c), ["p1"]);
        assert_eq!(serving_proxies(&parse(&text(""))), ["p0", "p1"]);
    }

    #[test]
    fn a_hash_backup_needs_an_archived_archive() {
        assert!(prepare_archive_hash(A::ARCHIVED).is_ok());
        for st in [A::CLEAR, A::SYNC_READY, A::STOPPED] {
            let e = prepare_archive_hash(st).unwrap_err();
            assert!(e.contains("full backup first"), "{st}: {e}");
        }
    }

    #[test]
    fn merge_and_apply_are_judged_by_their_effect() {
        use walb_wire::msg::{DiffRange, MetaDiffDto, MetaStateDto, SnapDto};
        let d = |b, e| MetaDiffDto {
            range: DiffRange {
                snap_b: SnapDto { gid_b: b, gid_e: b },
                snap_e: SnapDto { gid_b: e, gid_e: e },
            },
            mergeable: true,
            comp_diff: false,
            timestamp_s: 0,
            size: 0,
        };
        let before = [d(0, 1), d(1, 2), d(2, 3), d(3, 4)];
        assert!(merged(&before, &[d(0, 1), d(1, 4)], 1));
        // A new diff at the end does not count as merging; nothing from gid_b either.
        assert!(!merged(
            &before,
            &[d(0, 1), d(1, 2), d(2, 3), d(3, 4), d(4, 5)],
            1
        ));
        assert!(!merged(&before, &before, 9));
        // gid_b between diffs: the first diff after it.
        assert!(merged(&[d(0, 2), d(2, 3), d(3, 4)], &[d(0, 2), d(2, 4)], 1));
        let st = |b: u64, e: Option<u64>| MetaStateDto {
            snap_b: SnapDto { gid_b: b, gid_e: b },
            snap_e: e.map(|e| SnapDto { gid_b: e, gid_e: e }),
            timestamp_s: 0,
        };
        assert!(applied(&st(0, None), &st(3, None)));
        assert!(applied(&st(0, Some(2)), &st(0, None)));
        assert!(!applied(&st(3, None), &st(3, None)));
        assert!(
            !applied(&st(0, None), &st(0, Some(3))),
            "left applying: failed"
        );
    }
    use super::*;

    #[test]
    fn overflow_recovery_names_the_one_command_the_archive_allows() {
        let held = overflow_recovery("s0", "vol", "a0", A::ARCHIVED);
        assert!(held.contains("run `hash-backup s0 vol`"), "{held}");
        assert!(!held.contains("full-backup"), "{held}");
        let empty = overflow_recovery("s0", "vol", "a0", A::CLEAR);
        assert!(empty.contains("run `full-backup s0 vol`"), "{empty}");
        assert!(!empty.contains("hash-backup"), "{empty}");
        let ready = overflow_recovery("s0", "vol", "a0", A::SYNC_READY);
        assert!(ready.contains("`full-backup s0 vol`"), "{ready}");
        let stopped = overflow_recovery("s1", "v2", "a3", A::STOPPED);
        assert!(
            stopped.contains("`hash-backup s1 v2` once a3 v2 is Archived again (it is Stopped)"),
            "{stopped}"
        );
    }

    #[test]
    fn start_chooses_the_storage_mode_like_walblib() {
        let (m, w) = start_plan(Role::Storage, "SyncReady", None).unwrap();
        assert_eq!(m, Some(StartMode::Standby));
        assert_eq!(w.goal, ["Standby"]);
        let (m, w) = start_plan(Role::Storage, "Stopped", None).unwrap();
        assert_eq!(m, Some(StartMode::Target));
        assert_eq!(w.goal, ["Target"]);
        let (m, w) = start_plan(Role::Archive, "Stopped", None).unwrap();
        assert_eq!((m, w.goal), (None, vec!["Archived"]));
        assert!(start_plan(Role::Proxy, "Stopped", Some(StartMode::Target)).is_err());
    }

    #[test]
    fn stop_waits_for_the_state_its_previous_state_leads_to() {
        assert_eq!(stop_wait(Role::Storage, "Standby").goal, ["SyncReady"]);
        assert_eq!(stop_wait(Role::Storage, "Target").goal, ["Stopped"]);
        assert!(stop_wait(Role::Storage, "Target")
            .transient
            .contains(&"Target"));
        assert_eq!(stop_wait(Role::Proxy, "Started").goal, ["Stopped"]);
        assert_eq!(stop_wait(Role::Archive, "Archived").goal, ["Stopped"]);
    }

    #[test]
    fn clear_plans_follow_walblib() {
        use ClearStep::*;
        assert_eq!(clear_plan(Role::Storage, "Clear").unwrap(), []);
        assert_eq!(
            clear_plan(Role::Storage, "Target").unwrap(),
            [StopForce, Reset, ClearVol]
        );
        assert_eq!(
            clear_plan(Role::Storage, "Standby").unwrap(),
            [StopForce, ClearVol]
        );
        assert_eq!(
            clear_plan(Role::Proxy, "Started").unwrap(),
            [StopForce, ClearVol]
        );
        assert_eq!(clear_plan(Role::Archive, "Stopped").unwrap(), [ClearVol]);
        let e = clear_plan(Role::Storage, "FullSync").unwrap_err();
        assert!(e.contains("FullSync"), "{e}");
    }

    #[test]
    fn full_backup_preparation_from_each_state() {
        assert_eq!(prepare_storage("SyncReady").unwrap(), None);
        assert_eq!(
            prepare_storage("Standby").unwrap(),
            Some(ClearStep::StopForce)
        );
        assert_eq!(prepare_storage("Stopped").unwrap(), Some(ClearStep::Reset));
        assert!(prepare_storage("Target").unwrap_err().contains("Target"));
        assert!(prepare_storage("Clear")
            .unwrap_err()
            .contains("init-storage"));
        assert!(prepare_archive("Clear").unwrap());
        assert!(!prepare_archive("SyncReady").unwrap());
        assert!(prepare_archive("Archived")
            .unwrap_err()
            .contains("Archived"));
    }
}
