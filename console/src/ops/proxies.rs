//! The proxies' archive-info as walblib manages it: which proxies serve a volume, making one
//! send to an archive (`add_archive_to_proxy`), and `start/stop/is_synchronizing` (every
//! serving proxy sends a volume to an archive, or none does).

use std::time::Duration;

use tracing::{info, warn};
use walb_wire::msg::{ArchiveDest, BindHow, PeerRole, StopMode};
use walb_wire::Role;

use super::*;
use crate::client::{Client, ClientError};

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
        if info.addr == addr {
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

/// Whether every proxy has the archive (`Some(true)`), none has (`Some(false)`), or
/// they disagree (`None`; walblib raises then). No proxies: `Some(false)`.
pub fn all_or_none(has: &[bool]) -> Option<bool> {
    match (has.iter().all(|h| *h), has.iter().any(|h| *h)) {
        (true, true) => Some(true),
        (_, false) => Some(false),
        _ => None,
    }
}

/// Kicks every storage of the cluster file (after the proxies changed, their wlog
/// transfers may be in backoff); an unreachable one is only logged.
pub(super) async fn kick_storages(client: &Client) {
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
pub(super) async fn proxy_archives(
    client: &Client,
    proxy: &str,
    vol: &str,
) -> Result<Vec<String>, ClientError> {
    if client.state(proxy, vol).await? == P::CLEAR {
        return Ok(Vec::new());
    }
    client.archive_info_list(proxy, vol).await
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
