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
//! [`WireError`] untouched, so the console can print the daemon's message verbatim.
//!
//! The answers are typed (protocol 4: [`walb_wire::msg::VolumeState`], [`Status`], the
//! ts-delta and log-usage rows...); nothing a daemon formats is parsed here. A daemon
//! speaking protocol 2 or 3 answers with text: its state names and lists of names are
//! read as they are, its status lines are shown as they are ([`StatusAnswer::Lines`]),
//! and for the rest the console says it must be upgraded ([`ClientError::Outdated`]). The
//! blocking operations operators know from walblib (wait for a state, full backup,
//! restore...) are in [`crate::ops`], on top of these calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;
use walb_wire::msg::{
    MetaDiffDto, MetaStateDto, QueueNote, SnapshotInfo, Status, Uuid, VolPeers,
    PROTOCOL_VERSION_TYPED,
};
use walb_wire::{
    Command, ErrorCode, EventStream, Node, NodeConfig, Peer, PeerId, Query, Reply, Request,
    Subscribe, WireError,
};

use crate::cluster::{Cluster, ClusterError, NodeEntry};

mod calls;

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
    /// The daemon answered in the text of protocol 3 or older, where this console needs
    /// the typed answer of protocol 4.
    #[error(
        "{node} answered {asked} in the text of an older protocol; upgrade it to a walb \
         that speaks protocol {PROTOCOL_VERSION_TYPED}"
    )]
    Outdated {
        /// The node.
        node: String,
        /// What we asked.
        asked: String,
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
}

/// What `status` answers.
/// In JSON: the typed status, or the old daemon's lines as an array.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum StatusAnswer {
    /// The typed status (protocol 4).
    Typed(Box<Status>),
    /// A daemon speaking protocol 2 or 3: its lines, shown as they are (never parsed).
    Lines(Vec<String>),
}

impl StatusAnswer {
    /// The lines to show.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Typed(s) => s.lines(),
            Self::Lines(l) => l.clone(),
        }
    }

    /// How long the daemon has run, seconds (a summary from a protocol-4 daemon).
    pub fn uptime_s(&self) -> Option<u64> {
        match self {
            Self::Typed(s) => s.uptime_s(),
            Self::Lines(_) => None,
        }
    }
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

fn expect_retention(
    node: &str,
    asked: &str,
    r: Reply,
) -> Result<walb_wire::msg::RetentionReport, ClientError> {
    match r {
        Reply::Retention(p) => Ok(p),
        other => Err(not_typed(node, asked, "a retention report", other)),
    }
}

/// The error for a reply that is not the typed answer `want`: a protocol-3 daemon's text
/// (old-peer fallback: named as such, never parsed) or something the contract does not say.
fn not_typed(node: &str, asked: &str, want: &'static str, r: Reply) -> ClientError {
    match r {
        Reply::Lines(_) | Reply::Text(_) => ClientError::Outdated {
            node: node.to_owned(),
            asked: asked.to_owned(),
        },
        other => unexpected(node, asked, want, &other),
    }
}

/// Names (volumes, archives, cold snapshots): typed, or a protocol-3 daemon's lines, which
/// are the names themselves (old-peer fallback).
fn expect_names(node: &str, asked: &str, r: Reply) -> Result<Vec<String>, ClientError> {
    match r {
        Reply::Names(n) | Reply::Lines(n) => Ok(n),
        other => Err(unexpected(node, asked, "names", &other)),
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
    fn text_where_a_typed_answer_is_due_names_the_upgrade() {
        let e = not_typed("a0", "get ts-delta", "ts-delta rows", Reply::Lines(vec![]));
        assert!(matches!(e, ClientError::Outdated { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "a0 answered get ts-delta in the text of an older protocol; upgrade it to a \
                 walb that speaks protocol {PROTOCOL_VERSION_TYPED}"
            )
        );
        let e = not_typed("a0", "get ts-delta", "ts-delta rows", Reply::Done);
        assert!(matches!(e, ClientError::Unexpected { .. }), "{e:?}");
        let n = expect_names("p0", "get vol", Reply::Lines(vec!["vol".into()]));
        assert_eq!(n.ok(), Some(vec!["vol".to_owned()]));
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
