//! Replication between archives: walblib's `replicate_once`, `synchronize`, `replicate`
//! and `start/stop/is_synchronizing`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use walb_wire::msg::{
    ArchiveDest, BindHow, CompressOpt, MergeUntil, PeerRole, ReplicateCommand, StopMode,
    VolumeState,
};
use walb_wire::Role;

use super::proxies::*;
use super::watch::FailureWatch;
use super::*;
use crate::client::{Client, ClientError};
use crate::poll::{poll_until, Poll};

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
pub fn prepare_replica(state: VolumeState) -> Result<ReplicaPrep, String> {
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
        prepare_replica(dst_state).map_err(|m| ClientError::State(format!("{dst} {vol}: {m}")))?;
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
                        walb_wire::msg::text::uuid_hex(&b),
                        walb_wire::msg::text::uuid_hex(&a)
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
        let gids = if A::ACTIVE.contains(&st) {
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
        wait_for_state(client, p, vol, &stop_wait(Role::Proxy, *prev), left).await?;
    }
    let mut added = Vec::new();
    for p in &proxies {
        let listed = proxy_archives(client, p, vol).await?;
        let have = listed.iter().any(|a| a == dst);
        if have {
            let info = client.archive_info_get(p, vol, dst).await?;
            if info.addr == addr {
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
