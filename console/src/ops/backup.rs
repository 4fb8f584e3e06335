//! Backups and the archive's work: preparing a backup (`_prepare_backup`), full and hash
//! backups, snapshots and their waits, merge, apply and restore.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use walb_wire::msg::{BindHow, MergeUntil, PeerRole, StopMode, VolumeState};
use walb_wire::Role;

use super::proxies::*;
use super::watch::FailureWatch;
use super::*;
use crate::client::{Client, ClientError};
use crate::poll::{poll_until, Poll};

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
        prepare_storage(st).map_err(|m| ClientError::State(format!("{storage} {vol}: {m}")))?
    };
    let a = &group.archive.name;
    let ast = client.state(a, vol).await?;
    let init_archive = if hash {
        prepare_archive_hash(ast).map(|()| false)
    } else {
        prepare_archive(ast)
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
        if kind.during.contains(&st) {
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
    during: [VolumeState; 3],
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
    if !A::ACTIVE.contains(&ast) {
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
            if !A::ACTIVE.contains(&st) {
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
            walb_wire::msg::text::meta_state_str(&done),
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
        if let Some(r) = restored.into_iter().find(|r| r.gid == gid) {
            return Ok(Poll::Ready(r.path));
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
        .find(|r| r.gid == gid)
        .map(|r| r.path)
        .ok_or_else(|| {
            ClientError::State(format!(
                "{archive} {vol}: gid {gid} is not restored (restore {archive} {vol} {gid})"
            ))
        })
}
