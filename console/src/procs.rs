//! walblib's procedures that span several daemons, on top of [`crate::ops`]:
//!
//! - [`go_standby`]: a storage replica made Standby (walblib's `go_standby`): from Target
//!   it stops (force), its primary archive stops being synchronized (the proxies drop their
//!   queue of diffs of the old lineage, which the archive would refuse once the next hash
//!   backup gives the volume a new uuid), its log is reset and it starts Standby.
//! - [`copy_archive_info`]: every archive a proxy sends a volume to is given to another
//!   proxy with the same address, compression and delay (walblib's `copy_archive_info`),
//!   with the bindings the trust rules need (the archives take the new proxy's diffs, the
//!   new proxy takes the storage's wlogs), and the new proxy is started.
//! - [`resize_cluster`]: a volume grown everywhere in walb-tools' order (§5.11): every
//!   archive's image first, then every storage's device, so that no diff of the larger
//!   device ever meets a smaller archive (`smaller-lv-size`).
//! - [`latest_clean`]: walblib's `get_latest_clean_snapshot`.
//!
//! The decisions (what go-standby does from a state, which nodes a resize touches and
//! whether it may) are pure functions, unit-tested without daemons; every refusal is made
//! before anything changes.

use std::time::Duration;

use tracing::{info, warn};
use walb_wire::msg::{ArchiveDest, BindHow, PeerRole, StartMode, Status, StopMode, VolumeState};
use walb_wire::Role;

use crate::client::{Client, ClientError, StatusAnswer};
use crate::ops::{self, role_of, states};

use states::{archive as A, proxy as P, storage as S};

/// One step of [`go_standby`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandbyStep {
    /// `stop force` and wait for Stopped.
    StopForce,
    /// Stop synchronizing the storage's primary archive (the proxies forget it).
    StopSynchronizing,
    /// `reset-vol` and wait for SyncReady.
    Reset,
    /// `start standby` and wait for Standby.
    StartStandby,
}

/// What `go-standby` does from the storage volume's `state`: nothing from Standby, a
/// start from SyncReady, and from Target (or Stopped, where a stop left it) the primary's
/// synchronization stopped and the log reset first.
pub fn standby_plan(state: VolumeState) -> Result<Vec<StandbyStep>, String> {
    use StandbyStep::*;
    match state {
        S::STANDBY => Ok(vec![]),
        S::SYNC_READY => Ok(vec![StartStandby]),
        S::TARGET => Ok(vec![StopForce, StopSynchronizing, Reset, StartStandby]),
        S::STOPPED => Ok(vec![StopSynchronizing, Reset, StartStandby]),
        S::CLEAR => Err("it is Clear; init-storage NODE VOL WDEV makes it Standby".into()),
        other => Err(format!(
            "it is {other}; go-standby needs it Target, Stopped, SyncReady or Standby (wait \
             for the running operation)"
        )),
    }
}

/// walblib's `go_standby`: makes `storage`'s `vol` Standby (see [`standby_plan`]);
/// returns the state reached.
pub async fn go_standby(
    client: &Client,
    storage: &str,
    vol: &str,
    timeout: Duration,
) -> Result<VolumeState, ClientError> {
    role_of(client, storage, &[Role::Storage], "go-standby")?;
    let st = client.state(storage, vol).await?;
    let plan = standby_plan(st).map_err(|m| ClientError::State(format!("{storage} {vol}: {m}")))?;
    let primary = if plan.contains(&StandbyStep::StopSynchronizing) {
        Some(
            client
                .cluster()
                .group(storage, "go-standby")?
                .archive
                .name
                .clone(),
        )
    } else {
        None
    };
    for step in plan {
        info!(storage, vol, ?step, "go-standby");
        match step {
            StandbyStep::StopForce => {
                ops::stop(client, storage, vol, StopMode::Force, timeout).await?;
            }
            StandbyStep::StopSynchronizing => {
                if let Some(a) = &primary {
                    ops::stop_synchronizing(client, a, vol, timeout).await?;
                }
            }
            StandbyStep::Reset => {
                ops::reset(client, storage, vol, None, timeout).await?;
            }
            StandbyStep::StartStandby => {
                ops::start(client, storage, vol, Some(StartMode::Standby), timeout).await?;
            }
        }
    }
    client.state(storage, vol).await
}

/// What [`copy_archive_info`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyDone {
    /// The archives the new proxy sends the volume to, with where and how it sends.
    pub archives: Vec<(String, ArchiveDest)>,
    /// The storage bound on the new proxy (the one bound on the old), if any.
    pub storage: Option<String>,
}

/// walblib's `copy_archive_info`: `dst` sends `vol` to every archive `src` sends it to
/// (same address, compression and delay; an entry `dst` already has is updated); each
/// archive takes `dst`'s diffs and `dst` takes the wlogs of the storage bound on `src`;
/// `dst` is started. Storages ship to `dst` only if it is among their proxies.
pub async fn copy_archive_info(
    client: &Client,
    src: &str,
    vol: &str,
    dst: &str,
    timeout: Duration,
) -> Result<CopyDone, ClientError> {
    role_of(client, src, &[Role::Proxy], "copy-archive-info")?;
    role_of(client, dst, &[Role::Proxy], "copy-archive-info")?;
    if src == dst {
        return Err(ClientError::State(format!(
            "copy-archive-info {vol}: the source and the destination are both {src}"
        )));
    }
    let src_st = client.state(src, vol).await?;
    if src_st == P::CLEAR {
        return Err(ClientError::State(format!(
            "{src} {vol} is Clear: it sends the volume to no archive"
        )));
    }
    let mut archives = Vec::new();
    for a in client.archive_info_list(src, vol).await? {
        let dest = client.archive_info_get(src, vol, &a).await?;
        archives.push((a, dest));
    }
    let dst_st = client.state(dst, vol).await?;
    if ![P::CLEAR, P::STOPPED, P::STARTED, P::WLOG_RECV].contains(&dst_st) {
        return Err(ClientError::State(format!(
            "{dst} {vol} is {dst_st}; copy-archive-info needs it Clear, Stopped or Started \
             (wait for the running operation)"
        )));
    }
    let storage = client.peers(src, vol).await?.storage;
    let have = if dst_st == P::CLEAR {
        Vec::new()
    } else {
        client.archive_info_list(dst, vol).await?
    };
    if dst_st == P::STARTED || dst_st == P::WLOG_RECV {
        ops::stop(client, dst, vol, StopMode::Force, timeout).await?;
    }
    let mut done = Vec::new();
    for (a, dest) in archives {
        let update = have.contains(&a);
        info!(src, dst, vol, archive = %a, update, "copy archive-info");
        client
            .archive_info_set(dst, vol, &a, dest.clone(), update)
            .await?;
        client
            .bind(&a, vol, PeerRole::Proxy, &[dst.to_owned()], BindHow::Add)
            .await?;
        done.push((a, dest));
    }
    if let Some(s) = &storage {
        client
            .bind(
                dst,
                vol,
                PeerRole::Storage,
                std::slice::from_ref(s),
                BindHow::Set,
            )
            .await?;
    } else {
        warn!(src, dst, vol, "no storage bound on the source proxy");
    }
    if client.state(dst, vol).await? == P::STOPPED {
        ops::start(client, dst, vol, None, timeout).await?;
    }
    Ok(CopyDone {
        archives: done,
        storage,
    })
}

/// One node's part of a cluster-wide resize.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResizeNode {
    /// The node.
    pub name: String,
    /// Storage or archive.
    pub role: Role,
    /// The volume's state there.
    pub state: VolumeState,
    /// The archive's image or the storage's device size, logical blocks (`None`: no
    /// image yet, or the storage did not say).
    pub size_lb: Option<u64>,
}

/// The nodes a resize of a volume to `size_lb` grows, in order (archives first, then
/// storages), or why it may not run: a node in a state that refuses it, an image or a
/// device larger than `size_lb` (grow only), or no node holding the volume. Clear volumes
/// are skipped, and so are archives without an image (a full backup brings the new size)
/// and nodes already of that size.
pub fn resize_plan(nodes: &[ResizeNode], size_lb: u64) -> Result<Vec<String>, String> {
    const ARCHIVE_OK: [VolumeState; 6] = [
        A::ARCHIVED,
        A::HASH_SYNC,
        A::WDIFF_RECV,
        A::REPL_SYNC_AS_SERVER,
        A::STOPPED,
        A::SYNC_READY,
    ];
    const STORAGE_OK: [VolumeState; 4] = [S::SYNC_READY, S::STOPPED, S::TARGET, S::STANDBY];
    let mut held = false;
    let (mut archives, mut storages) = (Vec::new(), Vec::new());
    for n in nodes {
        if n.state.is_clear() {
            continue;
        }
        held = true;
        match n.role {
            Role::Archive => {
                if !ARCHIVE_OK.contains(&n.state) {
                    return Err(format!(
                        "{} is {}; an archive grows in Archived, Stopped or SyncReady (wait \
                         for the running operation)",
                        n.name, n.state
                    ));
                }
                shrinks(n, size_lb)?;
                if n.size_lb.is_some_and(|have| have < size_lb) {
                    archives.push(n.name.clone());
                }
            }
            Role::Storage => {
                if !STORAGE_OK.contains(&n.state) {
                    return Err(format!(
                        "{} is {}; a storage grows in Target, Standby, Stopped or SyncReady \
                         (wait for the running operation)",
                        n.name, n.state
                    ));
                }
                shrinks(n, size_lb)?;
                if n.size_lb != Some(size_lb) {
                    storages.push(n.name.clone());
                }
            }
            _ => {}
        }
    }
    if !held {
        return Err("no storage or archive of the cluster file holds it".into());
    }
    archives.extend(storages);
    Ok(archives)
}

/// An error if node `n` holds more than `size_lb` (resize only grows).
fn shrinks(n: &ResizeNode, size_lb: u64) -> Result<(), String> {
    match n.size_lb {
        Some(have) if have > size_lb => Err(format!(
            "{} holds {} bytes, more than {} (resize only grows)",
            n.name,
            have.saturating_mul(512),
            size_lb.saturating_mul(512)
        )),
        _ => Ok(()),
    }
}

/// The device size in a storage volume's status, if its device could be read.
pub fn status_size_lb(status: &Status) -> Option<u64> {
    match status {
        Status::StorageVol(v) => match v.meta.as_ref()?.as_ref().ok()?.device.as_ref() {
            Ok(d) => Some(d.size_lb),
            Err(_) => None,
        },
        _ => None,
    }
}

/// walblib's `resize(vol, size)`: every archive of the cluster file holding `vol` grows
/// its image to `size_lb` (`zero_clear`: its new part written with zeros), then every
/// storage grows its device (whose data device must have grown already); the proxies are
/// kicked (a diff refused as too large for an archive is retried). Everything is judged
/// before anything changes. Returns the nodes grown, in order.
pub async fn resize_cluster(
    client: &Client,
    vol: &str,
    size_lb: u64,
    zero_clear: bool,
) -> Result<Vec<String>, ClientError> {
    let cluster = client.cluster().clone();
    let mut nodes = Vec::new();
    for n in cluster
        .nodes_of(Role::Archive)
        .chain(cluster.nodes_of(Role::Storage))
    {
        let state = client.state(&n.name, vol).await?;
        let size_lb = if state.is_clear() {
            None
        } else if n.role == Role::Storage {
            match client.status(&n.name, Some(vol)).await? {
                StatusAnswer::Typed(s) => status_size_lb(&s),
                StatusAnswer::Lines(_) => {
                    return Err(ClientError::Outdated {
                        node: n.name.clone(),
                        asked: format!("status {vol}"),
                    })
                }
            }
        } else if client.exists_base_image(&n.name, vol).await? {
            Some(client.vol_size(&n.name, vol).await?)
        } else {
            None
        };
        nodes.push(ResizeNode {
            name: n.name.clone(),
            role: n.role,
            state,
            size_lb,
        });
    }
    let plan = resize_plan(&nodes, size_lb)
        .map_err(|m| ClientError::State(format!("resize {vol}: {m}")))?;
    for name in &plan {
        info!(node = %name, vol, size_lb, "resize");
        client.resize(name, vol, size_lb, zero_clear).await?;
    }
    for p in ops::serving_proxies(&cluster) {
        if let Err(e) = client.kick(&p, Some(vol), None).await {
            warn!(proxy = %p, "kick after the resize: {e}");
        }
    }
    Ok(plan)
}

/// walblib's `get_latest_clean_snapshot`: the latest restorable gid of `vol` at
/// `archive` (implicit snapshots included).
pub async fn latest_clean(client: &Client, archive: &str, vol: &str) -> Result<u64, ClientError> {
    role_of(client, archive, &[Role::Archive], "latest-clean")?;
    let list = client.restorable(archive, vol, true).await?;
    match list.iter().filter_map(|s| s.gid).max() {
        Some(g) => Ok(g),
        None => {
            let st = client.state(archive, vol).await?;
            Err(ClientError::State(format!(
                "{archive} {vol} ({st}) has no restorable snapshot"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_standby_from_each_state() {
        use StandbyStep::*;
        assert_eq!(standby_plan(S::STANDBY).unwrap(), []);
        assert_eq!(standby_plan(S::SYNC_READY).unwrap(), [StartStandby]);
        assert_eq!(
            standby_plan(S::TARGET).unwrap(),
            [StopForce, StopSynchronizing, Reset, StartStandby]
        );
        assert_eq!(
            standby_plan(S::STOPPED).unwrap(),
            [StopSynchronizing, Reset, StartStandby]
        );
        assert!(standby_plan(S::CLEAR).unwrap_err().contains("init-storage"));
        let e = standby_plan(S::FULL_SYNC).unwrap_err();
        assert!(e.contains("FullSync") && e.contains("wait"), "{e}");
    }

    fn node(name: &str, role: Role, state: &str, size_lb: Option<u64>) -> ResizeNode {
        ResizeNode {
            name: name.into(),
            role,
            state: VolumeState::parse(role, state).unwrap(),
            size_lb,
        }
    }

    /// The device size a resize compares with is read from the typed status of a storage
    /// volume; without a readable device (or metadata) there is none.
    #[test]
    fn the_device_size_comes_from_the_typed_status() {
        use walb_wire::msg::{
            DeviceStatus, LsidsDto, SnapRecord, StopFlag, StorageState, StorageVolMeta,
            StorageVolStatus,
        };
        let device = DeviceStatus {
            size_lb: 65536,
            overflow: false,
            log_usage_pb: 0,
            log_capacity_pb: 8192,
            pbs: 4096,
            lsids: LsidsDto {
                oldest: 0,
                prev_written: 0,
                written: 0,
                permanent: 0,
                latest: 0,
            },
        };
        let meta = StorageVolMeta {
            wdev_path: "/dev/walb/vol".into(),
            uuid: [1; 16],
            device: Ok(device),
            full_sync_base: None,
            done: SnapRecord {
                gid: 0,
                lsid: 0,
                explicit: false,
                timestamp_s: 0,
            },
            queue: vec![],
        };
        let status = |meta| {
            Status::StorageVol(StorageVolStatus {
                vol: "vol".into(),
                state: StorageState::Target,
                stop: StopFlag::NotStopping,
                actions: vec![],
                monitored: true,
                meta,
            })
        };
        assert_eq!(status_size_lb(&status(Some(Ok(meta.clone())))), Some(65536));
        let gone = StorageVolMeta {
            device: Err("no such device".into()),
            ..meta
        };
        assert_eq!(status_size_lb(&status(Some(Ok(gone)))), None);
        assert_eq!(
            status_size_lb(&status(Some(Err("unreadable".into())))),
            None
        );
        assert_eq!(status_size_lb(&status(None)), None);
    }

    #[test]
    fn resize_grows_archives_then_storages() {
        let nodes = [
            node("s0", Role::Storage, "Target", Some(100)),
            node("s1", Role::Storage, "Clear", None),
            node("s2", Role::Storage, "Standby", Some(200)),
            node("a0", Role::Archive, "Archived", Some(100)),
            node("a1", Role::Archive, "Archived", Some(200)),
            node("a2", Role::Archive, "SyncReady", None),
        ];
        assert_eq!(resize_plan(&nodes, 200).unwrap(), ["a0", "s0"]);
        let e = resize_plan(&nodes, 150).unwrap_err();
        assert!(e.contains("s2 holds") && e.contains("only grows"), "{e}");
        let busy = [
            node("a0", Role::Archive, "FullSync", Some(100)),
            node("s0", Role::Storage, "Target", None),
        ];
        assert!(resize_plan(&busy, 200)
            .unwrap_err()
            .contains("a0 is FullSync"));
        let busy = [node("s0", Role::Storage, "HashSync", None)];
        assert!(resize_plan(&busy, 200)
            .unwrap_err()
            .contains("s0 is HashSync"));
        let big = [node("s0", Role::Storage, "Standby", Some(300))];
        let e = resize_plan(&big, 200).unwrap_err();
        assert!(e.contains("s0 holds 153600 bytes"), "{e}");
        let none = [node("s0", Role::Storage, "Clear", None)];
        assert!(resize_plan(&none, 200).unwrap_err().contains("holds it"));
    }
}
