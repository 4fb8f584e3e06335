//! The client library: one QUIC endpoint for the console, one connection per daemon, and
//! a typed call for every query and command of the daemon contract.
//!
//! A [`Client`] holds a validated [`Cluster`] and a `walb_wire::Node` bound with
//! `listen: false` and the console's certificate. Daemons are named as in the cluster
//! file; [`Client::peer`] resolves the name, dials (the node keeps one connection per
//! address and re-dials a dead one) and checks that the certificate it reached is the one
//! the file promises (`walb://ROLE/NAME`). Every request is bounded in time.
//!
//! A daemon's refusal comes back as [`ClientError::Refused`] carrying its
//! [`WireError`] untouched, so the console can print the daemon's message verbatim. The
//! blocking operations operators know from walblib (wait for a state, full backup,
//! restore...) are in [`crate::ops`], on top of these calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;
use walb_wire::msg::{
    ArchiveDest, ArchiveInfoCommand, BindCommand, BindHow, MergeUntil, MetaDiffDto, MetaStateDto,
    PeerRole, QueueNote, ReplicateCommand, SnapshotInfo, StartMode, StopMode, Uuid, VolPeers,
};
use walb_wire::{
    Command, ErrorCode, EventStream, Node, NodeConfig, Peer, PeerId, Query, Reply, Request,
    Subscribe, WireError,
};

use crate::cluster::{Cluster, ClusterError, NodeEntry};

/// Tunables of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Dialling (QUIC and TLS handshake, version negotiation) must finish within this.
    pub connect_timeout: Duration,
    /// One request must be answered within this.
    pub request_timeout: Duration,
    /// How often blocking operations poll (walblib polls every 0.3 s).
    pub poll_interval: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(300),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster file does not allow it (unknown node, wrong role...).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The console's own endpoint could not be set up (certificate files).
    #[error("cannot set up the console's endpoint with {}: {source}", .cert.display())]
    Setup {
        /// The console's certificate.
        cert: std::path::PathBuf,
        /// Why.
        source: walb_wire::Error,
    },
    /// A node's address does not resolve.
    #[error("cannot resolve {node}'s address {addr}: {message}")]
    Resolve {
        /// The node.
        node: String,
        /// Its address.
        addr: String,
        /// Why.
        message: String,
    },
    /// A node cannot be reached.
    #[error("cannot reach {node} at {addr}: {message}")]
    Unreachable {
        /// The node.
        node: String,
        /// Its address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The daemon at a node's address is not the one the cluster file names.
    #[error("{node} at {addr} is {got}, but the cluster file says {want} (check the address)")]
    WrongPeer {
        /// The node.
        node: String,
        /// Its address.
        addr: String,
        /// The identity in the cluster file.
        want: PeerId,
        /// The identity in the certificate reached.
        got: PeerId,
    },
    /// The daemon refused or failed the request; its message, verbatim.
    #[error("{node}: {}", .error.message)]
    Refused {
        /// The node.
        node: String,
        /// The daemon's code and message.
        error: WireError,
    },
    /// The conversation broke (connection lost, protocol violation).
    #[error("{node}: {source}")]
    Transport {
        /// The node.
        node: String,
        /// Why.
        source: walb_wire::Error,
    },
    /// The daemon answered with something the contract does not say.
    #[error("{node} answered {asked} with {got}; expected {want}")]
    Unexpected {
        /// The node.
        node: String,
        /// What we asked.
        asked: String,
        /// What we expected.
        want: &'static str,
        /// What came.
        got: String,
    },
    /// Waiting took too long.
    #[error("timed out after {} s waiting for {what}", .after.as_secs_f64())]
    Timeout {
        /// What we waited for (and what we last saw).
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A volume is (or went) where the operation cannot go on.
    #[error("{0}")]
    State(String),
}

impl ClientError {
    /// The daemon's error code, if it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// True for failures to reach a node (as opposed to its answers).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Resolve { .. }
        )
    }
}

/// A console's connection to a cluster. Cheap to clone; must be made inside a tokio
/// runtime.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    patience: Patience,
}

/// Told each time a request waits in a daemon's queue for a foreground slot: the node,
/// where the request stands, and how long this client waits in all.
pub type QueueReport = Arc<dyn Fn(&str, &QueueNote, Duration) + Send + Sync>;

/// How long a request may wait in a daemon's queue, and who hears about it.
#[derive(Clone, Default)]
struct Patience {
    /// `None`: the request timeout.
    wait: Option<Duration>,
    report: Option<QueueReport>,
}

struct Inner {
    cluster: Cluster,
    node: Node,
    opts: ClientOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cluster", &self.inner.cluster.name)
            .field("identity", self.inner.node.identity())
            .finish()
    }
}

/// Resolves `HOST:PORT` (or a bare port, on localhost) to one socket address.
pub async fn resolve(addr: &str) -> std::io::Result<SocketAddr> {
    let full = if addr.parse::<u16>().is_ok() {
        format!("127.0.0.1:{addr}")
    } else {
        addr.to_owned()
    };
    let mut addrs = tokio::net::lookup_host(&full).await?;
    addrs
        .next()
        .ok_or_else(|| std::io::Error::other("resolves to no address"))
}

impl Client {
    /// Binds the console's endpoint with the cluster's certificate.
    pub fn new(cluster: Cluster, opts: ClientOptions) -> Result<Client, ClientError> {
        let v6 = cluster.nodes.iter().any(|n| n.addr.starts_with('['));
        let bind: SocketAddr = if v6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let mut cfg = NodeConfig::new(bind, false);
        cfg.software = format!("walb-console {}", env!("CARGO_PKG_VERSION"));
        cfg.wire.handshake_timeout = opts.connect_timeout;
        let node = Node::bind(cfg, cluster.tls.clone()).map_err(|source| ClientError::Setup {
            cert: cluster.tls.cert.clone(),
            source,
        })?;
        debug!(identity = %node.identity(), cluster = %cluster.name, "console endpoint up");
        Ok(Client {
            inner: Arc::new(Inner {
                cluster,
                node,
                opts,
            }),
            patience: Patience::default(),
        })
    }

    /// This client, its requests waiting at most `wait` in a daemon's queue for a
    /// foreground slot (a daemon that runs its `--fg` tasks queues heavy requests: full
    /// and hash backups, restores, replications, scans), each queue note handed to
    /// `report`. A request that waited `wait` leaves the queue and fails with
    /// [`ClientError::Timeout`] naming the queue.
    pub fn with_queue_patience(&self, wait: Duration, report: Option<QueueReport>) -> Client {
        Client {
            inner: Arc::clone(&self.inner),
            patience: Patience {
                wait: Some(wait),
                report,
            },
        }
    }

    /// The reply to the request on `call` (sent to `node`): each message within the
    /// request timeout; while the request waits in the daemon's queue for a foreground
    /// slot (its notes keep coming), at most the queue patience in all
    /// ([`Client::with_queue_patience`]).
    pub async fn await_reply(
        &self,
        node: &str,
        call: &mut walb_wire::Call,
    ) -> Result<Reply, ClientError> {
        let per_msg = self.inner.opts.request_timeout;
        let patience = self.patience.wait.unwrap_or(per_msg);
        let t0 = tokio::time::Instant::now();
        let mut last: Option<QueueNote> = None;
        loop {
            let limit = match last {
                None => per_msg,
                Some(_) => per_msg.min(patience.saturating_sub(t0.elapsed())),
            };
            let r = tokio::time::timeout(limit, call.receiver.reply_or_queued()).await;
            let msg = match r {
                Ok(m) => m,
                Err(_) => {
                    call.sender.reset();
                    call.receiver.stop();
                    return Err(match last {
                        Some(n) => ClientError::Timeout {
                            what: format!(
                                "a foreground slot in the queue of {} (asked {node}; it runs \
                                 {} of {} foreground tasks, {} ahead)",
                                n.queue, n.running, n.slots, n.ahead
                            ),
                            after: patience,
                        },
                        None => ClientError::Timeout {
                            what: format!("{node} to answer"),
                            after: per_msg,
                        },
                    });
                }
            };
            match msg {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(note)) => {
                    debug!(node, ?note, "queued");
                    if let Some(report) = &self.patience.report {
                        report(node, &note, patience);
                    }
                    last = Some(note);
                }
                Err(walb_wire::Error::Remote(error)) => {
                    return Err(ClientError::Refused {
                        node: node.to_owned(),
                        error,
                    })
                }
                Err(source) => {
                    return Err(ClientError::Transport {
                        node: node.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// Closes every connection of this console (the daemons are told at once), waiting
    /// briefly for them to be acknowledged.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.node.close()).await;
    }

    /// The cluster this client talks to.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The tunables.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The console's identity (from its certificate).
    pub fn identity(&self) -> &PeerId {
        self.inner.node.identity()
    }

    /// A live connection to node `name`, checked to be who the cluster file says.
    pub async fn peer(&self, name: &str) -> Result<Peer, ClientError> {
        let n = self.cluster().node(name)?;
        self.peer_of(n).await
    }

    async fn peer_of(&self, n: &NodeEntry) -> Result<Peer, ClientError> {
        let addr = resolve(&n.addr).await.map_err(|e| ClientError::Resolve {
            node: n.name.clone(),
            addr: n.addr.clone(),
            message: e.to_string(),
        })?;
        let unreachable = |message: String| ClientError::Unreachable {
            node: n.name.clone(),
            addr: n.addr.clone(),
            message,
        };
        let peer = match tokio::time::timeout(
            self.inner.opts.connect_timeout,
            self.inner.node.connect(addr),
        )
        .await
        {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer in {} s (is the daemon running?)",
                    self.inner.opts.connect_timeout.as_secs_f64()
                )))
            }
            Ok(Err(walb_wire::Error::Timeout(_))) => {
                return Err(unreachable(format!(
                    "no answer in {} s (is the daemon running?)",
                    self.inner.opts.connect_timeout.as_secs_f64()
                )))
            }
            Ok(Err(walb_wire::Error::Remote(error))) => {
                return Err(ClientError::Refused {
                    node: n.name.clone(),
                    error,
                })
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(p)) => p,
        };
        let want = PeerId::new(n.role, &n.name).map_err(|e| {
            ClientError::Cluster(ClusterError::Invalid {
                origin: self.cluster().origin.clone(),
                message: format!("node {}: {e}", n.name),
            })
        })?;
        if peer.identity() != &want {
            return Err(ClientError::WrongPeer {
                node: n.name.clone(),
                addr: n.addr.clone(),
                want,
                got: peer.identity().clone(),
            });
        }
        Ok(peer)
    }

    /// Sends one request to node `name` and waits for its reply.
    pub async fn request(&self, name: &str, request: Request) -> Result<Reply, ClientError> {
        let peer = self.peer(name).await?;
        debug!(node = name, ?request, "request");
        let opened = tokio::time::timeout(self.inner.opts.request_timeout, async {
            let mut call = peer.call(request).await?;
            call.sender.finish()?;
            Ok::<_, walb_wire::Error>(call)
        })
        .await
        .map_err(|_| ClientError::Timeout {
            what: format!("{name} to answer"),
            after: self.inner.opts.request_timeout,
        })?;
        let mut call = match opened {
            Ok(c) => c,
            Err(walb_wire::Error::Remote(error)) => {
                return Err(ClientError::Refused {
                    node: name.to_owned(),
                    error,
                })
            }
            Err(source) => {
                return Err(ClientError::Transport {
                    node: name.to_owned(),
                    source,
                })
            }
        };
        self.await_reply(name, &mut call).await
    }

    /// Sends a query.
    pub async fn query(&self, name: &str, q: Query) -> Result<Reply, ClientError> {
        self.request(name, Request::Query(q)).await
    }

    /// Sends a command.
    pub async fn command(&self, name: &str, c: Command) -> Result<Reply, ClientError> {
        self.request(name, Request::Command(c)).await
    }

    /// Subscribes to node `name`'s events (of `vols`, or all).
    pub async fn subscribe(
        &self,
        name: &str,
        vols: Vec<String>,
    ) -> Result<EventStream, ClientError> {
        let peer = self.peer(name).await?;
        peer.subscribe(Subscribe { vols })
            .await
            .map_err(|e| match e {
                walb_wire::Error::Remote(error) => ClientError::Refused {
                    node: name.to_owned(),
                    error,
                },
                source => ClientError::Transport {
                    node: name.to_owned(),
                    source,
                },
            })
    }

    // ------------------------------------------------------------------------------
    // Queries of every role

    /// `get state`: the volume's state name ("Clear" for an unknown volume).
    pub async fn state(&self, node: &str, vol: &str) -> Result<String, ClientError> {
        let r = self.query(node, Query::State { vol: vol.into() }).await?;
        expect_text(node, "get state", r)
    }

    /// `get vol`: the volume names.
    pub async fn vols(&self, node: &str) -> Result<Vec<String>, ClientError> {
        let r = self.query(node, Query::Vols).await?;
        expect_lines(node, "get vol", r)
    }

    /// `status [VOL]`: human-readable lines.
    pub async fn status(&self, node: &str, vol: Option<&str>) -> Result<Vec<String>, ClientError> {
        let r = self
            .query(
                node,
                Query::Status {
                    vol: vol.map(str::to_owned),
                },
            )
            .await?;
        expect_lines(node, "status", r)
    }

    /// `get host-type`.
    pub async fn host_type(&self, node: &str) -> Result<String, ClientError> {
        let r = self.query(node, Query::HostType).await?;
        expect_text(node, "get host-type", r)
    }

    /// `get pid`.
    pub async fn pid(&self, node: &str) -> Result<u64, ClientError> {
        let r = self.query(node, Query::Pid).await?;
        expect_number(node, "get pid", r)
    }

    /// `version`: software and protocol version.
    pub async fn version(&self, node: &str) -> Result<(String, u16), ClientError> {
        match self.query(node, Query::Version).await? {
            Reply::Version { software, protocol } => Ok((software, protocol)),
            other => Err(unexpected(node, "version", "a version", &other)),
        }
    }

    /// `get latest-snap [VOL]`.
    pub async fn latest_snap(
        &self,
        node: &str,
        vol: Option<&str>,
    ) -> Result<Vec<SnapshotInfo>, ClientError> {
        let r = self
            .query(
                node,
                Query::LatestSnap {
                    vol: vol.map(str::to_owned),
                },
            )
            .await?;
        expect_snapshots(node, "get latest-snap", r)
    }

    // ------------------------------------------------------------------------------
    // Storage

    /// `get log-usage [VOL]`: `name:VOL\tusage_pb:N\tcapacity_pb:N\tpbs:N` lines.
    pub async fn log_usage(
        &self,
        node: &str,
        vol: Option<&str>,
    ) -> Result<Vec<String>, ClientError> {
        let r = self
            .query(
                node,
                Query::LogUsage {
                    vol: vol.map(str::to_owned),
                },
            )
            .await?;
        expect_lines(node, "get log-usage", r)
    }

    /// `get is-overflow VOL`.
    pub async fn is_overflow(&self, node: &str, vol: &str) -> Result<bool, ClientError> {
        let r = self
            .query(node, Query::IsOverflow { vol: vol.into() })
            .await?;
        expect_bool(node, "get is-overflow", r)
    }

    /// `get uuid VOL`.
    pub async fn uuid(&self, node: &str, vol: &str) -> Result<Uuid, ClientError> {
        let r = self.query(node, Query::Uuid { vol: vol.into() }).await?;
        expect_uuid(node, "get uuid", r)
    }

    /// `get meta-state VOL [0|1] [GID]` (storage: the base its last full backup made).
    pub async fn meta_state(
        &self,
        node: &str,
        vol: &str,
        applying: bool,
        gid: Option<u64>,
    ) -> Result<MetaStateDto, ClientError> {
        let r = self
            .query(
                node,
                Query::MetaState {
                    vol: vol.into(),
                    applying,
                    gid,
                },
            )
            .await?;
        expect_meta_state(node, "get meta-state", r)
    }

    /// `init-vol VOL [WDEV]`.
    pub async fn init_vol(
        &self,
        node: &str,
        vol: &str,
        wdev_path: Option<&str>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::InitVol {
                    vol: vol.into(),
                    wdev_path: wdev_path.map(str::to_owned),
                },
            )
            .await?;
        expect_ack(node, "init-vol", r)
    }

    /// `clear-vol VOL`.
    pub async fn clear_vol(&self, node: &str, vol: &str) -> Result<(), ClientError> {
        let r = self
            .command(node, Command::ClearVol { vol: vol.into() })
            .await?;
        expect_ack(node, "clear-vol", r)
    }

    /// `reset-vol VOL [GID]`.
    pub async fn reset_vol(
        &self,
        node: &str,
        vol: &str,
        gid: Option<u64>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::ResetVol {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "reset-vol", r)
    }

    /// `start VOL [target|standby]`.
    pub async fn start(
        &self,
        node: &str,
        vol: &str,
        mode: Option<StartMode>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Start {
                    vol: vol.into(),
                    mode,
                },
            )
            .await?;
        expect_ack(node, "start", r)
    }

    /// `stop VOL MODE` (asynchronous: returns once accepted).
    pub async fn stop(&self, node: &str, vol: &str, mode: StopMode) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Stop {
                    vol: vol.into(),
                    mode,
                },
            )
            .await?;
        expect_ack(node, "stop", r)
    }

    /// `snapshot VOL`: the new gid.
    pub async fn snapshot(&self, node: &str, vol: &str) -> Result<u64, ClientError> {
        match self
            .command(node, Command::Snapshot { vol: vol.into() })
            .await?
        {
            Reply::Gid(g) => Ok(g),
            other => Err(unexpected(node, "snapshot", "a gid", &other)),
        }
    }

    /// `full-bkp VOL [BULK]` (asynchronous: returns once the archive accepted).
    pub async fn full_backup(
        &self,
        node: &str,
        vol: &str,
        bulk_lb: Option<u64>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::FullBackup {
                    vol: vol.into(),
                    bulk_lb,
                },
            )
            .await?;
        expect_ack(node, "full-bkp", r)
    }

    /// `hash-bkp VOL [BULK]` (asynchronous).
    pub async fn hash_backup(
        &self,
        node: &str,
        vol: &str,
        bulk_lb: Option<u64>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::HashBackup {
                    vol: vol.into(),
                    bulk_lb,
                },
            )
            .await?;
        expect_ack(node, "hash-bkp", r)
    }

    /// `kick [VOL [ARCHIVE]]`.
    pub async fn kick(
        &self,
        node: &str,
        vol: Option<&str>,
        archive: Option<&str>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Kick {
                    vol: vol.map(str::to_owned),
                    archive: archive.map(str::to_owned),
                },
            )
            .await?;
        expect_ack(node, "kick", r)
    }

    /// `set-full-scan-bps BPS`.
    pub async fn set_full_scan_bps(&self, node: &str, bps: u64) -> Result<(), ClientError> {
        let r = self.command(node, Command::SetFullScanBps(bps)).await?;
        expect_ack(node, "set-full-scan-bps", r)
    }

    /// `shutdown [force]`.
    pub async fn shutdown(&self, node: &str, force: bool) -> Result<(), ClientError> {
        let r = self.command(node, Command::Shutdown { force }).await?;
        expect_ack(node, "shutdown", r)
    }

    // ------------------------------------------------------------------------------
    // Proxy

    /// `archive-info add|update VOL ARCHIVE ADDR [CMPR] [DELAY]`.
    pub async fn archive_info_set(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
        dest: ArchiveDest,
        update: bool,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::ArchiveInfo(ArchiveInfoCommand::Set {
                    vol: vol.into(),
                    archive: archive.into(),
                    dest,
                    update,
                }),
            )
            .await?;
        expect_ack(node, "archive-info", r)
    }

    /// `archive-info delete VOL ARCHIVE`.
    pub async fn archive_info_delete(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::ArchiveInfo(ArchiveInfoCommand::Delete {
                    vol: vol.into(),
                    archive: archive.into(),
                }),
            )
            .await?;
        expect_ack(node, "archive-info delete", r)
    }

    /// `archive-info get VOL ARCHIVE`: `HOST:PORT CODEC:LEVEL:NCPU DELAY`.
    pub async fn archive_info_get(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
    ) -> Result<String, ClientError> {
        let r = self
            .query(
                node,
                Query::ArchiveInfo {
                    vol: vol.into(),
                    archive: Some(archive.into()),
                },
            )
            .await?;
        expect_text(node, "archive-info get", r)
    }

    /// `archive-info list VOL`: archive names.
    pub async fn archive_info_list(
        &self,
        node: &str,
        vol: &str,
    ) -> Result<Vec<String>, ClientError> {
        let r = self
            .query(
                node,
                Query::ArchiveInfo {
                    vol: vol.into(),
                    archive: None,
                },
            )
            .await?;
        expect_lines(node, "archive-info list", r)
    }

    /// `get is-wdiff-send-error VOL ARCHIVE`.
    pub async fn is_wdiff_send_error(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
    ) -> Result<bool, ClientError> {
        let r = self
            .query(
                node,
                Query::IsWdiffSendError {
                    vol: vol.into(),
                    archive: archive.into(),
                },
            )
            .await?;
        expect_bool(node, "get is-wdiff-send-error", r)
    }

    /// `get diff`: an archive's stored diffs in a gid range, or a proxy's queue (of
    /// `archive`, else its received diffs).
    pub async fn diffs(
        &self,
        node: &str,
        vol: &str,
        gid_b: Option<u64>,
        gid_e: Option<u64>,
        archive: Option<&str>,
    ) -> Result<Vec<MetaDiffDto>, ClientError> {
        let r = self
            .query(
                node,
                Query::Diff {
                    vol: vol.into(),
                    gid_b,
                    gid_e,
                    archive: archive.map(str::to_owned),
                },
            )
            .await?;
        expect_diffs(node, "get diff", r)
    }

    // ------------------------------------------------------------------------------
    // Archive

    /// `get applicable-diff VOL [MAXGID]`.
    pub async fn applicable_diff(
        &self,
        node: &str,
        vol: &str,
        gid_max: Option<u64>,
    ) -> Result<Vec<MetaDiffDto>, ClientError> {
        let r = self
            .query(
                node,
                Query::ApplicableDiff {
                    vol: vol.into(),
                    gid_max,
                },
            )
            .await?;
        expect_diffs(node, "get applicable-diff", r)
    }

    /// `get restorable VOL [all]`.
    pub async fn restorable(
        &self,
        node: &str,
        vol: &str,
        all: bool,
    ) -> Result<Vec<SnapshotInfo>, ClientError> {
        let r = self
            .query(
                node,
                Query::Restorable {
                    vol: vol.into(),
                    all,
                },
            )
            .await?;
        expect_snapshots(node, "get restorable", r)
    }

    /// `get restored VOL`: (gid, path) of each restored image.
    pub async fn restored(&self, node: &str, vol: &str) -> Result<Vec<(u64, String)>, ClientError> {
        let r = self
            .query(node, Query::Restored { vol: vol.into() })
            .await?;
        let lines = expect_lines(node, "get restored", r)?;
        lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                parse_restored_line(l).ok_or_else(|| ClientError::Unexpected {
                    node: node.to_owned(),
                    asked: "get restored".into(),
                    want: "lines of GID PATH",
                    got: format!("{l:?}"),
                })
            })
            .collect()
    }

    /// `get base VOL`.
    pub async fn base(&self, node: &str, vol: &str) -> Result<MetaStateDto, ClientError> {
        let r = self
            .query(
                node,
                Query::Base {
                    vol: Some(vol.into()),
                },
            )
            .await?;
        expect_meta_state(node, "get base", r)
    }

    /// `get archive-uuid VOL`.
    pub async fn archive_uuid(&self, node: &str, vol: &str) -> Result<Uuid, ClientError> {
        let r = self
            .query(node, Query::ArchiveUuid { vol: vol.into() })
            .await?;
        expect_uuid(node, "get archive-uuid", r)
    }

    /// `get ts-delta`: a storage's lag behind its primary archive, or a source archive's
    /// behind each replication destination (walb-tools' LTSV lines).
    pub async fn ts_delta(&self, node: &str) -> Result<Vec<String>, ClientError> {
        let r = self.query(node, Query::TsDelta).await?;
        expect_lines(node, "get ts-delta", r)
    }

    /// `bhash VOL GID`: the MurmurHash3 of snapshot `gid`'s image (restorable snapshots
    /// only), equal on two archives holding the same bytes.
    pub async fn block_hash(
        &self,
        node: &str,
        vol: &str,
        gid: u64,
    ) -> Result<[u8; 16], ClientError> {
        let r = self
            .query(
                node,
                Query::BlockHash {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        match r {
            Reply::Hash(h) => Ok(h),
            other => Err(unexpected(node, "bhash", "a hash", &other)),
        }
    }

    /// `get vol-size VOL` (logical blocks).
    pub async fn vol_size(&self, node: &str, vol: &str) -> Result<u64, ClientError> {
        let r = self.query(node, Query::VolSize { vol: vol.into() }).await?;
        expect_number(node, "get vol-size", r)
    }

    /// `get progress VOL` (logical blocks done).
    pub async fn progress(&self, node: &str, vol: &str) -> Result<u64, ClientError> {
        let r = self
            .query(node, Query::Progress { vol: vol.into() })
            .await?;
        expect_number(node, "get progress", r)
    }

    /// `get exists-base-image VOL`.
    pub async fn exists_base_image(&self, node: &str, vol: &str) -> Result<bool, ClientError> {
        let r = self
            .query(node, Query::ExistsBaseImage { vol: vol.into() })
            .await?;
        expect_bool(node, "get exists-base-image", r)
    }

    /// `get num-action VOL ACTION`.
    pub async fn num_action(
        &self,
        node: &str,
        vol: &str,
        action: &str,
    ) -> Result<u64, ClientError> {
        let r = self
            .query(
                node,
                Query::NumAction {
                    vol: vol.into(),
                    action: action.into(),
                },
            )
            .await?;
        expect_number(node, "get num-action", r)
    }

    /// `get num-diff` and `get total-diff-size VOL [GIDB [GIDE]]` at once: the number
    /// of diffs whose first gid is in the range, and the sum of their file sizes.
    pub async fn diff_stats(
        &self,
        node: &str,
        vol: &str,
        gid_b: Option<u64>,
        gid_e: Option<u64>,
    ) -> Result<(u64, u64), ClientError> {
        let asked = "get num-diff";
        let r = self
            .query(
                node,
                Query::DiffStats {
                    vol: vol.into(),
                    gid_b,
                    gid_e,
                },
            )
            .await?;
        let lines = expect_lines(node, asked, r)?;
        let field = |key: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.parse().ok())
        };
        match (field("num_diff"), field("total_diff_size")) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(unexpected(
                node,
                asked,
                "num_diff and total_diff_size",
                &Reply::Lines(lines),
            )),
        }
    }

    /// `get exists-diff VOL G0 G1 G2 G3`: whether the archive holds `|G0,G1|-->|G2,G3|`.
    pub async fn exists_diff(
        &self,
        node: &str,
        vol: &str,
        g: [u64; 4],
    ) -> Result<bool, ClientError> {
        let diff = walb_wire::msg::DiffRange {
            snap_b: walb_wire::msg::SnapDto {
                gid_b: g[0],
                gid_e: g[1],
            },
            snap_e: walb_wire::msg::SnapDto {
                gid_b: g[2],
                gid_e: g[3],
            },
        };
        let r = self
            .query(
                node,
                Query::ExistsDiff {
                    vol: vol.into(),
                    diff,
                },
            )
            .await?;
        expect_bool(node, "get exists-diff", r)
    }

    /// `get all-actions`: per active volume, each action's running count and last start.
    pub async fn all_actions(&self, node: &str) -> Result<Vec<String>, ClientError> {
        let r = self.query(node, Query::AllActions).await?;
        expect_lines(node, "get all-actions", r)
    }

    /// `get base-all`: `name:VOL\tmetastate:STATE` per active volume.
    pub async fn base_all(&self, node: &str) -> Result<Vec<String>, ClientError> {
        let r = self.query(node, Query::Base { vol: None }).await?;
        expect_lines(node, "get base-all", r)
    }

    /// `get meta-snap VOL [GID]`: the snapshot the applicable chain reaches up to `gid`
    /// (the latest if `None`), as a meta state with its timestamp.
    pub async fn meta_snap(
        &self,
        node: &str,
        vol: &str,
        gid: Option<u64>,
    ) -> Result<MetaStateDto, ClientError> {
        let r = self
            .query(
                node,
                Query::MetaSnap {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_meta_state(node, "get meta-snap", r)
    }

    /// `gc-diff VOL`: deletes the diffs unreachable from the base.
    pub async fn gc_diff(&self, node: &str, vol: &str) -> Result<(), ClientError> {
        let r = self
            .command(node, Command::GcDiff { vol: vol.into() })
            .await?;
        expect_ack(node, "gc-diff", r)
    }

    /// `restore VOL GID` (asynchronous).
    pub async fn restore(&self, node: &str, vol: &str, gid: u64) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Restore {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "restore", r)
    }

    /// `merge VOL GIDB GIDE` (asynchronous: the archive merges the chain of diffs from
    /// `gid_b` up to where `until` stops it).
    pub async fn merge(
        &self,
        node: &str,
        vol: &str,
        gid_b: u64,
        until: MergeUntil,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Merge {
                    vol: vol.into(),
                    gid_b,
                    until,
                },
            )
            .await?;
        expect_ack(node, "merge", r)
    }

    /// `apply VOL GID` (asynchronous: the archive applies its diffs up to `gid` to the base
    /// image).
    pub async fn apply(&self, node: &str, vol: &str, gid: u64) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Apply {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "apply", r)
    }

    /// `enable-snapshot` / `disable-snapshot VOL GID...`: make snapshots explicit
    /// (restorable, never merged away) or implicit.
    pub async fn set_snapshots_explicit(
        &self,
        node: &str,
        vol: &str,
        gids: &[u64],
        explicit: bool,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::SetSnapshotsExplicit {
                    vol: vol.into(),
                    gids: gids.to_vec(),
                    explicit,
                },
            )
            .await?;
        expect_ack(
            node,
            if explicit {
                "enable-snapshot"
            } else {
                "disable-snapshot"
            },
            r,
        )
    }

    /// `resize VOL SIZE_LB [zeroclear]` on any node.
    pub async fn resize(
        &self,
        node: &str,
        vol: &str,
        size_lb: u64,
        zero_clear: bool,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Resize {
                    vol: vol.into(),
                    size_lb,
                    zero_clear,
                },
            )
            .await?;
        expect_ack(node, "resize", r)
    }

    /// `replicate VOL ...` to the source archive `node` (asynchronous: `Accepted` once
    /// the destination accepted the session; the source then runs it as its
    /// `ReplSyncAsClient` action).
    pub async fn replicate(&self, node: &str, cmd: ReplicateCommand) -> Result<(), ClientError> {
        let r = self.command(node, Command::Replicate(cmd)).await?;
        expect_ack(node, "replicate", r)
    }

    /// `bind VOL ROLE IDS`: changes the peers of `role` bound to `vol` on `node`; returns
    /// the volume's peers after the change.
    pub async fn bind(
        &self,
        node: &str,
        vol: &str,
        role: PeerRole,
        ids: &[String],
        how: BindHow,
    ) -> Result<VolPeers, ClientError> {
        let r = self
            .command(
                node,
                Command::Bind(BindCommand {
                    vol: vol.into(),
                    role,
                    ids: ids.to_vec(),
                    how,
                }),
            )
            .await?;
        expect_peers(node, "bind", r)
    }

    /// `peers VOL`: the peers bound to `vol` on `node`.
    pub async fn peers(&self, node: &str, vol: &str) -> Result<VolPeers, ClientError> {
        let r = self.query(node, Query::Peers { vol: vol.into() }).await?;
        expect_peers(node, "peers", r)
    }

    /// `del-restored VOL GID`.
    pub async fn del_restored(&self, node: &str, vol: &str, gid: u64) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::DelRestored {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "del-restored", r)
    }
}

/// Parses a `GID PATH` line of `get restored`.
pub fn parse_restored_line(line: &str) -> Option<(u64, String)> {
    let (gid, path) = line.trim().split_once(char::is_whitespace)?;
    Some((gid.parse().ok()?, path.trim().to_owned()))
}

/// A short description of a reply, for messages.
pub fn describe_reply(r: &Reply) -> String {
    let s = format!("{r:?}");
    if s.len() > 120 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn unexpected(node: &str, asked: &str, want: &'static str, got: &Reply) -> ClientError {
    ClientError::Unexpected {
        node: node.to_owned(),
        asked: asked.to_owned(),
        want,
        got: describe_reply(got),
    }
}

/// `Done` or `Accepted`.
pub fn expect_ack(node: &str, asked: &str, r: Reply) -> Result<(), ClientError> {
    match r {
        Reply::Done | Reply::Accepted => Ok(()),
        other => Err(unexpected(node, asked, "done", &other)),
    }
}

fn expect_peers(node: &str, asked: &str, r: Reply) -> Result<VolPeers, ClientError> {
    match r {
        Reply::Peers(p) => Ok(p),
        other => Err(unexpected(node, asked, "peers", &other)),
    }
}

fn expect_text(node: &str, asked: &str, r: Reply) -> Result<String, ClientError> {
    match r {
        Reply::Text(t) => Ok(t),
        other => Err(unexpected(node, asked, "a text", &other)),
    }
}

fn expect_lines(node: &str, asked: &str, r: Reply) -> Result<Vec<String>, ClientError> {
    match r {
        Reply::Lines(l) => Ok(l),
        other => Err(unexpected(node, asked, "lines", &other)),
    }
}

fn expect_number(node: &str, asked: &str, r: Reply) -> Result<u64, ClientError> {
    match r {
        Reply::Number(n) => Ok(n),
        other => Err(unexpected(node, asked, "a number", &other)),
    }
}

fn expect_bool(node: &str, asked: &str, r: Reply) -> Result<bool, ClientError> {
    match r {
        Reply::Bool(b) => Ok(b),
        other => Err(unexpected(node, asked, "a yes/no", &other)),
    }
}

fn expect_uuid(node: &str, asked: &str, r: Reply) -> Result<Uuid, ClientError> {
    match r {
        Reply::Uuid(u) => Ok(u),
        other => Err(unexpected(node, asked, "a uuid", &other)),
    }
}

fn expect_diffs(node: &str, asked: &str, r: Reply) -> Result<Vec<MetaDiffDto>, ClientError> {
    match r {
        Reply::Diffs(d) => Ok(d),
        other => Err(unexpected(node, asked, "diffs", &other)),
    }
}

fn expect_snapshots(node: &str, asked: &str, r: Reply) -> Result<Vec<SnapshotInfo>, ClientError> {
    match r {
        Reply::Snapshots(s) => Ok(s),
        other => Err(unexpected(node, asked, "snapshots", &other)),
    }
}

fn expect_meta_state(node: &str, asked: &str, r: Reply) -> Result<MetaStateDto, ClientError> {
    match r {
        Reply::MetaState(m) => Ok(m),
        other => Err(unexpected(node, asked, "a meta state", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_lines_parse() {
        assert_eq!(
            parse_restored_line("8 /var/walb/a0/vol/restored/8.img"),
            Some((8, "/var/walb/a0/vol/restored/8.img".into()))
        );
        assert_eq!(parse_restored_line("x /p"), None);
        assert_eq!(parse_restored_line("8"), None);
    }

    #[test]
    fn refusal_shows_the_daemon_message_verbatim() {
        let e = ClientError::Refused {
            node: "a0".into(),
            error: WireError::new(ErrorCode::WrongState, "volume vol is Clear: init it"),
        };
        assert_eq!(e.to_string(), "a0: volume vol is Clear: init it");
        assert_eq!(e.code(), Some(ErrorCode::WrongState));
    }
}
