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
//!
//! Here: the timeouts, the state tables and plans, the state waits and the lifecycle
//! (init, start, stop, reset, clear); `backup`'s backups, snapshots, merge, apply and
//! restore; `repl`'s replication; `proxies`' archive-info and synchronizing; and
//! `watch`, which hears an operation's failure event while it is polled for.

use std::time::{Duration, Instant};

use walb_wire::msg::{Codec, CompressOpt, StartMode, StopMode, VolumeState};
use walb_wire::Role;

use crate::client::{Client, ClientError};
use crate::poll::{poll_until, Poll};

mod backup;
mod proxies;
mod repl;
mod watch;

pub use backup::*;
pub use proxies::*;
pub use repl::*;

/// walblib's `TIMEOUT_SEC`: long operations (backups, restores, restorable waits).
pub const TIMEOUT_LONG: Duration = Duration::from_secs(86_400);
/// walblib's `SHORT_TIMEOUT_SEC`: state changes.
pub const TIMEOUT_SHORT: Duration = Duration::from_secs(100);

/// The states the operations name, typed (walb-tools' names are their `Display`).
pub mod states {
    /// Storage steady and temporary states.
    pub mod storage {
        #![allow(missing_docs)]
        use walb_wire::msg::{StorageState, VolumeState};
        pub const CLEAR: VolumeState = VolumeState::Storage(StorageState::Clear);
        pub const SYNC_READY: VolumeState = VolumeState::Storage(StorageState::SyncReady);
        pub const STOPPED: VolumeState = VolumeState::Storage(StorageState::Stopped);
        pub const TARGET: VolumeState = VolumeState::Storage(StorageState::Target);
        pub const STANDBY: VolumeState = VolumeState::Storage(StorageState::Standby);
        pub const START_STANDBY: VolumeState = VolumeState::Storage(StorageState::StartStandby);
        pub const STOP_STANDBY: VolumeState = VolumeState::Storage(StorageState::StopStandby);
        pub const START_TARGET: VolumeState = VolumeState::Storage(StorageState::StartTarget);
        pub const STOP_TARGET: VolumeState = VolumeState::Storage(StorageState::StopTarget);
        pub const FULL_SYNC: VolumeState = VolumeState::Storage(StorageState::FullSync);
        pub const HASH_SYNC: VolumeState = VolumeState::Storage(StorageState::HashSync);
        pub const RESET: VolumeState = VolumeState::Storage(StorageState::Reset);
        pub const INIT_VOL: VolumeState = VolumeState::Storage(StorageState::InitVol);
        pub const CLEAR_VOL: VolumeState = VolumeState::Storage(StorageState::ClearVol);
    }
    /// Proxy steady and temporary states.
    pub mod proxy {
        #![allow(missing_docs)]
        use walb_wire::msg::{ProxyState, VolumeState};
        pub const CLEAR: VolumeState = VolumeState::Proxy(ProxyState::Clear);
        pub const STOPPED: VolumeState = VolumeState::Proxy(ProxyState::Stopped);
        pub const STARTED: VolumeState = VolumeState::Proxy(ProxyState::Started);
        pub const START: VolumeState = VolumeState::Proxy(ProxyState::Start);
        pub const STOP: VolumeState = VolumeState::Proxy(ProxyState::Stop);
        pub const WLOG_RECV: VolumeState = VolumeState::Proxy(ProxyState::WlogRecv);
        pub const WAIT_FOR_EMPTY: VolumeState = VolumeState::Proxy(ProxyState::WaitForEmpty);
    }
    /// Archive steady and temporary states.
    pub mod archive {
        #![allow(missing_docs)]
        use walb_wire::msg::{ArchiveState, VolumeState};
        pub const CLEAR: VolumeState = VolumeState::Archive(ArchiveState::Clear);
        pub const SYNC_READY: VolumeState = VolumeState::Archive(ArchiveState::SyncReady);
        pub const ARCHIVED: VolumeState = VolumeState::Archive(ArchiveState::Archived);
        pub const STOPPED: VolumeState = VolumeState::Archive(ArchiveState::Stopped);
        pub const START: VolumeState = VolumeState::Archive(ArchiveState::Start);
        pub const STOP: VolumeState = VolumeState::Archive(ArchiveState::Stop);
        pub const RESET_VOL: VolumeState = VolumeState::Archive(ArchiveState::ResetVol);
        pub const FULL_SYNC: VolumeState = VolumeState::Archive(ArchiveState::FullSync);
        pub const HASH_SYNC: VolumeState = VolumeState::Archive(ArchiveState::HashSync);
        pub const WDIFF_RECV: VolumeState = VolumeState::Archive(ArchiveState::WdiffRecv);
        pub const REPL_SYNC_AS_SERVER: VolumeState =
            VolumeState::Archive(ArchiveState::ReplSyncAsServer);
        pub const RESYNC: VolumeState = VolumeState::Archive(ArchiveState::Resync);
        /// walblib's `aActive`: states in which an archive volume holds a usable backup.
        pub const ACTIVE: [VolumeState; 4] = [ARCHIVED, HASH_SYNC, WDIFF_RECV, REPL_SYNC_AS_SERVER];
    }
}

use states::{archive as A, proxy as P, storage as S};

/// A wait for a state change: the states it may pass through, and where it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateWait {
    /// States the volume may be in on the way.
    pub transient: Vec<VolumeState>,
    /// States that end the wait.
    pub goal: Vec<VolumeState>,
}

impl StateWait {
    fn new(transient: &[VolumeState], goal: &[VolumeState]) -> Self {
        Self {
            transient: transient.to_vec(),
            goal: goal.to_vec(),
        }
    }
}

/// `A/B/C`: the names of `states`.
pub fn state_names(states: &[VolumeState]) -> String {
    let names: Vec<&str> = states.iter().map(|s| s.name()).collect();
    names.join("/")
}

/// What `start` does on a node of `role` whose volume is in `state` (walblib's `start`):
/// the storage mode to send and the wait. Without a mode, a storage in SyncReady goes
/// Standby and any other goes Target.
pub fn start_plan(
    role: Role,
    state: VolumeState,
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
pub fn stop_wait(role: Role, prev: VolumeState) -> StateWait {
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
pub fn clear_plan(role: Role, state: VolumeState) -> Result<Vec<ClearStep>, String> {
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
pub fn prepare_storage(state: VolumeState) -> Result<Option<ClearStep>, String> {
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
pub fn prepare_archive(state: VolumeState) -> Result<bool, String> {
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
pub fn overflow_recovery(
    storage: &str,
    vol: &str,
    archive: &str,
    archive_state: VolumeState,
) -> String {
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
    Ok(Some(overflow_recovery(storage, vol, &archive, ast)))
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
pub fn prepare_archive_hash(state: VolumeState) -> Result<(), String> {
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
) -> Result<VolumeState, ClientError> {
    let every = client.options().poll_interval;
    poll_until(Instant::now(), timeout, every, move || async move {
        let st = client.state(node, vol).await?;
        if wait.goal.contains(&st) {
            return Ok(Poll::Ready(st));
        }
        if !wait.transient.contains(&st) {
            return Err(ClientError::State(format!(
                "{node} {vol} is {st}, expected {} on the way to {}",
                state_names(&wait.transient),
                state_names(&wait.goal)
            )));
        }
        Ok(Poll::Pending(format!(
            "{node} {vol} to be {} (it is {st})",
            state_names(&wait.goal)
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
) -> Result<VolumeState, ClientError> {
    role_of(client, node, &[Role::Storage], "init-storage")?;
    client.init_vol(node, vol, Some(wdev)).await?;
    client.start(node, vol, Some(StartMode::Standby)).await?;
    let (_, wait) = start_plan(Role::Storage, S::SYNC_READY, Some(StartMode::Standby))
        .map_err(ClientError::State)?;
    wait_for_state(client, node, vol, &wait, timeout).await
}

/// `init-vol` on an archive (Clear → SyncReady).
pub async fn init_archive(
    client: &Client,
    node: &str,
    vol: &str,
) -> Result<VolumeState, ClientError> {
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
) -> Result<VolumeState, ClientError> {
    let role = role_of(
        client,
        node,
        &[Role::Storage, Role::Proxy, Role::Archive],
        "start",
    )?;
    let st = client.state(node, vol).await?;
    let (mode, wait) = start_plan(role, st, mode).map_err(ClientError::State)?;
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
) -> Result<VolumeState, ClientError> {
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
    wait_for_state(client, node, vol, &stop_wait(role, prev), timeout).await
}

/// walblib's `reset`: reset-vol and wait for SyncReady.
pub async fn reset(
    client: &Client,
    node: &str,
    vol: &str,
    gid: Option<u64>,
    timeout: Duration,
) -> Result<VolumeState, ClientError> {
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
) -> Result<VolumeState, ClientError> {
    let role = role_of(
        client,
        node,
        &[Role::Storage, Role::Proxy, Role::Archive],
        "clear",
    )?;
    let st = client.state(node, vol).await?;
    let plan =
        clear_plan(role, st).map_err(|m| ClientError::State(format!("{node} {vol}: {m}")))?;
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

#[cfg(test)]
mod tests {

    #[test]
    fn replication_destinations_and_gids_follow_walblib() {
        assert_eq!(prepare_replica(A::CLEAR), Ok(ReplicaPrep::Init));
        assert_eq!(prepare_replica(A::SYNC_READY), Ok(ReplicaPrep::Ready));
        assert_eq!(prepare_replica(A::ARCHIVED), Ok(ReplicaPrep::Archived));
        assert!(prepare_replica(A::STOPPED)
            .unwrap_err()
            .contains("start it"));
        assert!(prepare_replica(A::FULL_SYNC)
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
        use walb_wire::msg::{MetaDiffDto, MetaStateDto, SnapDto};
        let d = MetaDiffDto::clean;
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
        let (m, w) = start_plan(Role::Storage, S::SYNC_READY, None).unwrap();
        assert_eq!(m, Some(StartMode::Standby));
        assert_eq!(w.goal, [S::STANDBY]);
        let (m, w) = start_plan(Role::Storage, S::STOPPED, None).unwrap();
        assert_eq!(m, Some(StartMode::Target));
        assert_eq!(w.goal, [S::TARGET]);
        let (m, w) = start_plan(Role::Archive, A::STOPPED, None).unwrap();
        assert_eq!((m, w.goal), (None, vec![A::ARCHIVED]));
        assert!(start_plan(Role::Proxy, P::STOPPED, Some(StartMode::Target)).is_err());
    }

    #[test]
    fn stop_waits_for_the_state_its_previous_state_leads_to() {
        assert_eq!(stop_wait(Role::Storage, S::STANDBY).goal, [S::SYNC_READY]);
        assert_eq!(stop_wait(Role::Storage, S::TARGET).goal, [S::STOPPED]);
        assert!(stop_wait(Role::Storage, S::TARGET)
            .transient
            .contains(&S::TARGET));
        assert_eq!(stop_wait(Role::Proxy, P::STARTED).goal, [P::STOPPED]);
        assert_eq!(stop_wait(Role::Archive, A::ARCHIVED).goal, [A::STOPPED]);
    }

    #[test]
    fn clear_plans_follow_walblib() {
        use ClearStep::*;
        assert_eq!(clear_plan(Role::Storage, S::CLEAR).unwrap(), []);
        assert_eq!(
            clear_plan(Role::Storage, S::TARGET).unwrap(),
            [StopForce, Reset, ClearVol]
        );
        assert_eq!(
            clear_plan(Role::Storage, S::STANDBY).unwrap(),
            [StopForce, ClearVol]
        );
        assert_eq!(
            clear_plan(Role::Proxy, P::STARTED).unwrap(),
            [StopForce, ClearVol]
        );
        assert_eq!(clear_plan(Role::Archive, A::STOPPED).unwrap(), [ClearVol]);
        let e = clear_plan(Role::Storage, S::FULL_SYNC).unwrap_err();
        assert!(e.contains("FullSync"), "{e}");
    }

    #[test]
    fn full_backup_preparation_from_each_state() {
        assert_eq!(prepare_storage(S::SYNC_READY).unwrap(), None);
        assert_eq!(
            prepare_storage(S::STANDBY).unwrap(),
            Some(ClearStep::StopForce)
        );
        assert_eq!(prepare_storage(S::STOPPED).unwrap(), Some(ClearStep::Reset));
        assert!(prepare_storage(S::TARGET).unwrap_err().contains("Target"));
        assert!(prepare_storage(S::CLEAR)
            .unwrap_err()
            .contains("init-storage"));
        assert!(prepare_archive(A::CLEAR).unwrap());
        assert!(!prepare_archive(A::SYNC_READY).unwrap());
        assert!(prepare_archive(A::ARCHIVED)
            .unwrap_err()
            .contains("Archived"));
    }
}
