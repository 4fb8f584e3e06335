//! `walb-console lab add-node ROLE NAME`: grows a running lab by one daemon.
//!
//! The new node gets, in this order: a port of its role's band (storages from the base
//! port on, proxies from +100, archives from +200: the first one no node uses), an entry
//! in `lab.toml` (so that `up`, `start`, `stop`, `status` and `down` know it), its
//! certificate from the lab's CA, its `[[node]]` in the cluster file (written through
//! [`crate::cluster::Cluster`], as every other entry), then its daemon, started and
//! waited for until it answers.
//!
//! An archive is then a replication target (`replicate a0 vol NAME`). A proxy joins s0's
//! proxy list, after p0: in the cluster file, and when s0 backs the lab's volume up, at
//! once — a0 takes its diffs, it sends the volume to a0, and s0 is restarted gracefully to
//! dial it — so that it takes over when p0 is down. A storage backs up to a0 through the
//! lab's proxies once it has a WalB device of its own and `init-storage` (the operator's
//! business, as in a real cluster).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use walb_wire::{PeerId, Role, TlsFiles};

use crate::client::Client;
use crate::ops;

use super::{
    find_binary, lab_client, live_pid, refresh_cluster, spawn_daemon, wait_answering, LabConfig,
    LabError, LabLayout, LabNode,
};

/// A node added with `add-node`, as `lab.toml` keeps it (`[[node]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddedNode {
    /// Its id.
    pub name: String,
    /// `storage`, `proxy` or `archive`.
    pub role: String,
    /// Its port's offset from the lab's base port.
    pub port_offset: u16,
}

impl AddedNode {
    /// The node as the lab runs it.
    pub fn lab_node(&self) -> Result<LabNode, LabError> {
        Ok(LabNode {
            name: self.name.clone(),
            role: server_role(&self.role)?,
            port_offset: self.port_offset,
        })
    }
}

/// Names a node may not take: they are the lab directory's own entries.
const RESERVED: [&str; 2] = ["certs", "dev"];

/// Width of each role's port band.
const BAND: u16 = 100;

fn server_role(role: &str) -> Result<Role, LabError> {
    role.parse::<Role>()
        .ok()
        .filter(|r| r.is_server())
        .ok_or_else(|| {
            LabError::Other(format!(
                "unknown role {role:?}: a lab node is a storage, a proxy or an archive"
            ))
        })
}

/// The first port offset of `role`'s band that no node of `cfg` uses.
fn free_offset(cfg: &LabConfig, role: Role) -> Result<u16, LabError> {
    let band = match role {
        Role::Storage => 0,
        Role::Proxy => BAND,
        _ => 2 * BAND,
    };
    let used: Vec<u16> = cfg.listing().iter().map(|n| n.port_offset).collect();
    (band..band + BAND)
        .find(|o| !used.contains(o))
        .ok_or_else(|| LabError::Other(format!("the lab has no free {role} port left")))
}

/// The entry `add-node ROLE NAME` adds to `cfg`: refused when the name is taken, not a
/// valid id, or one of the lab directory's own names.
pub fn plan(cfg: &LabConfig, role: &str, name: &str) -> Result<AddedNode, LabError> {
    let role = server_role(role)?;
    walb_wire::identity::validate_id(name).map_err(|e| LabError::Other(e.to_string()))?;
    if RESERVED.contains(&name) {
        return Err(LabError::Other(format!(
            "{name:?} is the name of a lab directory entry: choose another node name"
        )));
    }
    if let Some(n) = cfg.listing().iter().find(|n| n.name == name) {
        return Err(LabError::Other(format!(
            "the lab already has {} {name} (on port offset {})",
            crate::cluster::article(n.role),
            n.port_offset
        )));
    }
    Ok(AddedNode {
        name: name.to_owned(),
        role: role.to_string(),
        port_offset: free_offset(cfg, role)?,
    })
}

/// What to do with the new node.
pub fn next_steps(cfg: &LabConfig, n: &LabNode, console: &str, lab: &str) -> Vec<String> {
    let vol = &cfg.vol;
    let name = &n.name;
    match n.role {
        Role::Archive => vec![
            "next:".into(),
            format!("  {console} --exec replicate a0 {vol} {name}          # a copy on {name}"),
            format!("  {console} --exec replicate a0 {vol} {name} --sync   # ... kept up to date by the proxies"),
        ],
        Role::Proxy => vec![
            format!("the cluster file lists {name} among s0's proxies, after p0; s0 dials it once (re)started,"),
            format!("and the next backup of a volume makes it one of its ways to a0:  {lab} start s0"),
        ],
        _ => vec![
            format!("{name} backs up to a0 through the lab's proxies; give it a WalB device and a volume:"),
            format!("  wdevc format-ldev LDEV DDEV -n {name}-dev && wdevc create-wdev LDEV DDEV -n {name}-dev --emulate"),
            format!("  {console} --exec init-storage {name} VOL /dev/walb/{name}-dev && {console} --exec full-backup {name} VOL"),
        ],
    }
}

/// `lab add-node ROLE NAME`: adds the node to the running lab and starts it; returns
/// what to print.
pub async fn add_node(
    layout: &LabLayout,
    role: &str,
    name: &str,
    bin_dir: Option<&Path>,
) -> Result<Vec<String>, LabError> {
    let mut cfg = layout.load_config()?;
    let added = plan(&cfg, role, name)?;
    let n = added.lab_node()?;
    let bin_dir = bin_dir.map(Path::to_owned).or_else(|| cfg.bin_dir.clone());
    find_binary(n.binary(), bin_dir.as_deref())?;
    if layout.base(&n).exists() || live_pid(layout, &n).is_some() {
        return Err(LabError::Other(format!(
            "{} already exists: a node of that name ran here before (remove it first)",
            layout.base(&n).display()
        )));
    }
    cfg.added.push(added);
    layout.save_config(&cfg)?;
    refresh_cluster(layout, &cfg)?;
    let pid = spawn_daemon(layout, &cfg, &n, bin_dir.as_deref())?;
    let client = lab_client(layout)?;
    wait_answering(&client, layout, &n, Duration::from_secs(30)).await?;
    let mut joined = Vec::new();
    if n.role == Role::Proxy {
        joined = join_proxy(layout, &cfg, &client, &n.name, bin_dir.as_deref()).await?;
    }
    let peer = PeerId::new(n.role, &n.name).map_err(|e| LabError::Other(e.to_string()))?;
    let mut lines = vec![format!(
        "{} {} started (pid {pid}) on {}; certificate {}, cluster file {}",
        n.name,
        n.binary(),
        n.addr(&cfg),
        TlsFiles::in_dir(&layout.certs(), &peer).cert.display(),
        layout.cluster_file().display()
    )];
    if joined.is_empty() {
        lines.extend(next_steps(
            &cfg,
            &n,
            &super::console_invocation(layout),
            &super::lab_invocation(layout),
        ));
    } else {
        lines.extend(joined);
    }
    Ok(lines)
}

/// A new proxy joins s0's backup group while the lab runs: when s0 backs the lab's
/// volume up, the proxy is made one of its ways to a0 ([`ops::serve_through_proxy`]) and
/// s0 restarted (gracefully) so that it dials it. Returns what was done (nothing while s0
/// is down or the volume not backed up: the next backup takes the proxy in).
async fn join_proxy(
    layout: &LabLayout,
    cfg: &LabConfig,
    client: &Client,
    proxy: &str,
    bin_dir: Option<&Path>,
) -> Result<Vec<String>, LabError> {
    let s0 = cfg.node("s0")?;
    if live_pid(layout, &s0).is_none() {
        return Ok(Vec::new());
    }
    let vol = &cfg.vol;
    let st = client.state("s0", vol).await?;
    if st != ops::states::storage::TARGET {
        return Ok(Vec::new());
    }
    ops::serve_through_proxy(client, "s0", vol, proxy, ops::TIMEOUT_SHORT).await?;
    let stopped = super::stop_node(layout, "s0", false, Duration::from_secs(30)).await?;
    let started = super::start_node(layout, "s0", bin_dir).await?;
    Ok(vec![
        format!("{proxy} sends {vol} to a0 and takes s0's wlogs of it"),
        format!("s0 restarted to dial {proxy} after p0: {stopped}; {started}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;

    #[test]
    fn nodes_get_the_first_free_port_of_their_role() {
        let mut cfg = LabConfig::default();
        let a2 = plan(&cfg, "archive", "a2").unwrap();
        assert_eq!(a2.port_offset, 202, "a0 and a1 hold 200 and 201");
        cfg.added.push(a2);
        assert_eq!(plan(&cfg, "archive", "a3").unwrap().port_offset, 203);
        assert_eq!(plan(&cfg, "proxy", "p1").unwrap().port_offset, 101);
        assert_eq!(plan(&cfg, "storage", "s1").unwrap().port_offset, 1);
    }

    #[test]
    fn taken_reserved_and_invalid_names_and_roles_are_refused() {
        let mut cfg = LabConfig::default();
        cfg.added.push(plan(&cfg, "archive", "a2").unwrap());
        for (role, name, want) in [
            ("archive", "a0", "already has an archive a0"),
            ("proxy", "a2", "already has an archive a2"),
            ("archive", "dev", "lab directory entry"),
            ("archive", "a/2", "a/2"),
            ("operator", "o1", "unknown role"),
            ("disk", "d1", "unknown role"),
        ] {
            let e = plan(&cfg, role, name).unwrap_err().to_string();
            assert!(e.contains(want), "{role} {name}: {e}");
        }
    }

    #[test]
    fn added_nodes_reach_the_cluster_file_the_storage_and_lab_toml() {
        let mut cfg = LabConfig::default();
        cfg.added.push(plan(&cfg, "proxy", "p1").unwrap());
        cfg.added.push(plan(&cfg, "archive", "a2").unwrap());
        let file = super::super::lab_cluster_file(&cfg);
        let c = Cluster::from_file(file, Path::new("/lab"), "lab").unwrap();
        let g = c.group("s0", "full-backup").unwrap();
        let proxies: Vec<&str> = g.proxies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(proxies, ["p0", "p1"]);
        assert_eq!(g.archive.name, "a0");
        assert_eq!(c.node("a2").unwrap().addr, "127.0.0.1:10202");
        assert_eq!(c.node("p1").unwrap().role, Role::Proxy);
        // Start order: archives, proxies, storages.
        let order: Vec<String> = cfg.nodes().into_iter().map(|n| n.name).collect();
        assert_eq!(order, ["a0", "a1", "a2", "p0", "p1", "s0"]);
        // s0 dials both proxies, in priority order.
        let layout = LabLayout { dir: "/lab".into() };
        let s0 = cfg.node("s0").unwrap();
        let args: Vec<String> = super::super::daemon_args(&layout, &cfg, &s0)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let i = args.iter().position(|a| a == "--proxy").unwrap();
        assert_eq!(args[i + 1], "p0@127.0.0.1:10100,p1@127.0.0.1:10101");
        // lab.toml keeps them.
        let text = toml::to_string(&cfg).unwrap();
        let back: LabConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        assert!(text.contains("[[node]]"), "{text}");
    }
}
