//! Who ships to whom: `bind`, `peers`, `archive-info`, `kick`.

use std::time::Duration;

use walb_wire::msg::{ArchiveDest, BindHow, CompressOpt, PeerRole, VolPeers};
use walb_wire::Role;

use super::spec::*;
use super::ExecCmd;
use crate::client::{Client, ClientError};
use crate::exec::output::Outcome;
use crate::ops::parse_compress;
use crate::ops::{self};

/// A parsed command of this family (who ships to whom).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutingCmd {
    /// `bind NODE VOL ROLE [ID...] [--add|--remove]`.
    Bind {
        /// Proxy or archive.
        node: String,
        /// Volume.
        vol: String,
        /// The role bound.
        role: PeerRole,
        /// Peer ids.
        ids: Vec<String>,
        /// Set, add or remove.
        how: BindHow,
    },
    /// `peers NODE VOL`.
    Peers {
        /// Any daemon.
        node: String,
        /// Volume.
        vol: String,
    },
    /// `archive-info PROXY ...`.
    ArchiveInfo {
        /// Proxy.
        proxy: String,
        /// Sub-command.
        op: ArchiveInfoOp,
    },
    /// `kick NODE [VOL [ARCHIVE]]`.
    Kick {
        /// Storage or proxy.
        node: String,
        /// Volume.
        vol: Option<String>,
        /// Archive (proxy).
        archive: Option<String>,
    },
}

/// This family's rows of the command table, in help order.
pub(super) const ROWS: &[CommandSpec] = &[
    CommandSpec {
        name: "bind",
        args: "NODE VOL storage|proxy|archive [ID...]",
        about: "who may touch the volume on a proxy or archive: its storage (wlogs, backups), proxies (wdiffs), archives (replication sources); sets the role's list (--add, --remove change it); init-storage, full-backup, hash-backup, replicate and start-synchronizing bind the cluster's backup groups",
        options: &[OPT_ADD, OPT_REMOVE],
        parse: |a| {
            let node = a.req("NODE")?;
            let vol = a.req("VOL")?;
            let role = match a.req("ROLE")?.as_str() {
                "storage" => PeerRole::Storage,
                "proxy" => PeerRole::Proxy,
                "archive" => PeerRole::Archive,
                r => return Err(format!("role {r:?}: want storage, proxy or archive")),
            };
            let how = match (a.flag("--add"), a.flag("--remove")) {
                (false, false) => BindHow::Set,
                (true, false) => BindHow::Add,
                (false, true) => BindHow::Remove,
                (true, true) => return Err("--add or --remove, not both".into()),
            };
            Ok(ExecCmd::Routing(RoutingCmd::Bind {
                node,
                vol,
                role,
                ids: a.rest(),
                how,
            }))
        },
    },
    CommandSpec {
        name: "peers",
        args: "NODE VOL",
        about: "the peers bound to the volume on the node (see bind)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Routing(RoutingCmd::Peers {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
            }))
        },
    },
    CommandSpec {
        name: "archive-info",
        args: "PROXY add|update|get|delete|list VOL [ARCHIVE [ADDR] [CODEC:LEVEL:NCPU] [DELAY]]",
        about: "a proxy's archive destinations (ADDR defaults to the archive's in the cluster file)",
        options: &[],
        parse: parse_archive_info,
    },
    CommandSpec {
        name: "kick",
        args: "NODE [VOL [ARCHIVE]]",
        about: "retry delayed transfers now (storage, proxy)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Routing(RoutingCmd::Kick {
                node: a.req("NODE")?,
                vol: a.opt(),
                archive: a.opt(),
            }))
        },
    },
];

fn parse_archive_info(a: &mut Args) -> Result<ExecCmd, String> {
    let proxy = a.req("PROXY")?;
    let sub = a.req("add|update|get|delete|list")?;
    let vol = a.req("VOL")?;
    let op = match sub.as_str() {
        "add" | "update" => {
            let archive = a.req("ARCHIVE")?;
            let (mut addr, mut compress, mut delay_s) = (None, None, None);
            for x in a.rest() {
                if x.bytes().all(|b| b.is_ascii_digit()) && !x.is_empty() {
                    if delay_s.replace(number(&x, "DELAY")?).is_some() {
                        return Err(format!("two delays given ({x})"));
                    }
                } else if let Some(c) = parse_compress(&x) {
                    if compress.replace(c).is_some() {
                        return Err(format!("two compressions given ({x})"));
                    }
                } else if x.contains(':') {
                    if addr.replace(x.clone()).is_some() {
                        return Err(format!("two addresses given ({x})"));
                    }
                } else {
                    return Err(format!(
                        "{x:?} is none of HOST:PORT, CODEC:LEVEL:NCPU (codecs: none, snappy, \
                         gzip, lzma, lz4, zstd) or a DELAY in seconds"
                    ));
                }
            }
            ArchiveInfoOp::Set {
                vol,
                archive,
                addr,
                compress,
                delay_s,
                update: sub == "update",
            }
        }
        "get" => ArchiveInfoOp::Get {
            vol,
            archive: a.req("ARCHIVE")?,
        },
        "delete" => ArchiveInfoOp::Delete {
            vol,
            archive: a.req("ARCHIVE")?,
        },
        "list" => ArchiveInfoOp::List { vol },
        other => {
            return Err(format!(
                "unknown archive-info sub-command {other:?} (add, update, get, delete or list)"
            ))
        }
    };
    Ok(ExecCmd::Routing(RoutingCmd::ArchiveInfo { proxy, op }))
}

/// `archive-info` sub-commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveInfoOp {
    /// `add` or `update`.
    Set {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
        /// Its address (default: the cluster file's).
        addr: Option<String>,
        /// Compression (default snappy:0:1).
        compress: Option<CompressOpt>,
        /// Delay, seconds (default 0).
        delay_s: Option<u64>,
        /// `update` rather than `add`.
        update: bool,
    },
    /// `get`.
    Get {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
    },
    /// `delete`.
    Delete {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
    },
    /// `list`.
    List {
        /// Volume.
        vol: String,
    },
}

async fn run_archive_info(
    client: &Client,
    proxy: &str,
    op: &ArchiveInfoOp,
) -> Result<Outcome, ClientError> {
    match op {
        ArchiveInfoOp::Set {
            vol,
            archive,
            addr,
            compress,
            delay_s,
            update,
        } => {
            let addr = match addr {
                Some(a) => a.clone(),
                None => client
                    .cluster()
                    .node_as(archive, &[Role::Archive], "archive-info")?
                    .addr
                    .clone(),
            };
            let dest = ArchiveDest {
                addr,
                compress: compress.unwrap_or_else(ops::default_compress),
                delay_s: delay_s.unwrap_or(0),
            };
            client
                .archive_info_set(proxy, vol, archive, dest, *update)
                .await?;
            Ok(changed(proxy, Some(vol)))
        }
        ArchiveInfoOp::Get { vol, archive } => {
            let d = client.archive_info_get(proxy, vol, archive).await?;
            Ok(Outcome::typed(&d, vec![d.line()]))
        }
        ArchiveInfoOp::Delete { vol, archive } => {
            client.archive_info_delete(proxy, vol, archive).await?;
            Ok(changed(proxy, Some(vol)))
        }
        ArchiveInfoOp::List { vol } => {
            Ok(Outcome::Lines(client.archive_info_list(proxy, vol).await?))
        }
    }
}

/// `peers`'s lines: `storage ID`, `proxies ID...`, `archives ID...` (`-` for none).
pub fn peers_lines(p: &VolPeers) -> Vec<String> {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(" ")
        }
    };
    vec![
        format!("storage {}", p.storage.as_deref().unwrap_or("-")),
        format!("proxies {}", list(&p.proxies)),
        format!("archives {}", list(&p.archives)),
    ]
}

impl RoutingCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "bind",
            Self::Peers { .. } => "peers",
            Self::ArchiveInfo { .. } => "archive-info",
            Self::Kick { .. } => "kick",
        }
    }

    /// Whether the command only reads.
    pub fn is_read_only(&self) -> bool {
        match self {
            Self::Peers { .. } => true,
            Self::ArchiveInfo { op, .. } => {
                matches!(op, ArchiveInfoOp::Get { .. } | ArchiveInfoOp::List { .. })
            }
            _ => false,
        }
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::ArchiveInfo { proxy, op } => (
                Some(proxy),
                Some(match op {
                    ArchiveInfoOp::Set { vol, .. }
                    | ArchiveInfoOp::Get { vol, .. }
                    | ArchiveInfoOp::Delete { vol, .. }
                    | ArchiveInfoOp::List { vol } => vol,
                }),
            ),
            Self::Kick { node, vol, .. } => (Some(node), vol.as_deref()),
            Self::Bind { node, vol, .. } | Self::Peers { node, vol } => (Some(node), Some(vol)),
        }
    }

    /// The command's `--timeout` (its default when not given), for those that take one.
    pub fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Runs the command.
    pub async fn run(&self, client: &Client) -> Result<Outcome, ClientError> {
        let cl = client.cluster();
        match self {
            Self::Bind {
                node,
                vol,
                role,
                ids,
                how,
            } => {
                cl.node_as(node, &[Role::Proxy, Role::Archive], "bind")?;
                let p = client.bind(node, vol, *role, ids, *how).await?;
                Ok(Outcome::Lines(peers_lines(&p)))
            }
            Self::Peers { node, vol } => {
                let p = client.peers(node, vol).await?;
                Ok(Outcome::Lines(peers_lines(&p)))
            }
            Self::ArchiveInfo { proxy, op } => {
                cl.node_as(proxy, &[Role::Proxy], "archive-info")?;
                run_archive_info(client, proxy, op).await
            }
            Self::Kick { node, vol, archive } => {
                cl.node_as(node, &[Role::Storage, Role::Proxy], "kick")?;
                client
                    .kick(node, vol.as_deref(), archive.as_deref())
                    .await?;
                Ok(changed(node, vol.as_deref()))
            }
        }
    }
}
