//! A hostile peer: a client built on `walb-wire`'s framing with any certificate of the
//! cluster (or one issued for an id nobody bound), that sends what a well-behaved client
//! never would — requests the console would refuse to send, raw bytes on a stream, calls
//! it opens and then leaves silent — and what the daemon did about it: its refusal, its
//! memory, whether it still serves, and whether anything it stored changed.
//!
//! The console's client validates for itself, so the attacks go through [`Hostile`]
//! instead. [`Stored`] fingerprints a daemon's base directory (SHA-256 of every file), so
//! a test shows that a refused attack left images, diffs and metadata byte for byte as
//! they were.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use walb_wire::msg::{Query, QueueNote, Reply, Request};
use walb_wire::{Call, Node, NodeConfig, Peer, PeerId, Role, TlsFiles, WireError};

use crate::{sha256_file, Cluster};

/// How long any one exchange of an attack may take before the test fails.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// A client with the certificate of one identity, speaking to the cluster's daemons.
pub struct Hostile {
    rt: tokio::runtime::Runtime,
    node: Node,
    ports: BTreeMap<String, u16>,
    files: TlsFiles,
    /// Who this client is.
    pub me: PeerId,
}

impl Hostile {
    /// A client with the certificate of `role`/`id` in the cluster's certificate directory
    /// ([`Cluster::issue`] makes one for an id the cluster does not have).
    pub fn new(c: &Cluster, role: Role, id: &str) -> Result<Hostile> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let me = PeerId::new(role, id)?;
        let files = TlsFiles::in_dir(&c.path().join("certs"), &me);
        let cfg = NodeConfig::new("127.0.0.1:0".parse()?, false);
        let node = {
            let _g = rt.enter();
            Node::bind(cfg, files.clone()).with_context(|| format!("a client as {me}"))?
        };
        Ok(Hostile {
            rt,
            node,
            ports: c.ports.clone(),
            files,
            me,
        })
    }

    /// The loopback address of daemon `name`.
    pub fn addr(&self, name: &str) -> Result<SocketAddr> {
        let port = *self
            .ports
            .get(name)
            .with_context(|| format!("no node {name}"))?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Runs `f` on this client's runtime, within [`EXCHANGE_LIMIT`].
    pub fn run<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.rt.block_on(async {
            tokio::time::timeout(EXCHANGE_LIMIT, f)
                .await
                .context("the exchange did not end in time")?
        })
    }

    /// A connection to daemon `name`.
    pub fn peer(&self, name: &str) -> Result<Peer> {
        let addr = self.addr(name)?;
        self.run(async { Ok(self.node.connect(addr).await?) })
    }

    /// Opens `req` on `name` and reads the first answer: the reply and the open call, or
    /// the daemon's refusal.
    pub fn open(&self, name: &str, req: Request) -> Result<Result<(Call, Reply), WireError>> {
        let peer = self.peer(name)?;
        self.run(async {
            let mut call = peer.call(req).await?;
            match call.receiver.reply().await {
                Ok(r) => Ok(Ok((call, r))),
                Err(walb_wire::Error::Remote(e)) => Ok(Err(e)),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Sends `req` and expects it to wait for a foreground slot: the call and the
    /// daemon's first queue note (or its refusal). The call stays in line until it is
    /// dropped; [`walb_wire::CallReceiver::reply`] waits for the slot.
    pub fn queued(&self, name: &str, req: Request) -> Result<Result<(Call, QueueNote), WireError>> {
        let peer = self.peer(name)?;
        self.run(async {
            let mut call = peer.call(req).await?;
            match call.receiver.reply_or_queued().await {
                Ok(Err(note)) => Ok(Ok((call, note))),
                Ok(Ok(r)) => bail!("{name} answered at once instead of queueing: {r:?}"),
                Err(walb_wire::Error::Remote(e)) => Ok(Err(e)),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Sends `req` and expects a refusal, which it returns.
    pub fn refusal(&self, name: &str, req: Request) -> Result<WireError> {
        match self.open(name, req)? {
            Err(e) => Ok(e),
            Ok((_, r)) => bail!("{} accepted the request of {}: {r:?}", name, self.me),
        }
    }

    /// Writes `bytes` raw on a new stream of `name` (whatever framing they carry) and
    /// returns what the daemon answered: its refusal, or `None` if it closed the stream
    /// without one.
    pub fn raw(&self, name: &str, bytes: &[u8]) -> Result<Option<WireError>> {
        let peer = self.peer(name)?;
        self.run(async {
            let mut call = peer.call_raw().await?;
            // The daemon may refuse and stop reading before all of it is sent.
            if call.sender.write_raw(bytes).await.is_ok() {
                let _ = call.sender.finish();
            }
            match call.receiver.msg().await {
                Err(walb_wire::Error::Remote(e)) => Ok(Some(e)),
                Ok(m) => bail!("{name} answered raw bytes with {m:?}"),
                Err(_) => Ok(None),
            }
        })
    }

    /// A new connection to `name` from a fresh endpoint (not the pooled one), kept open
    /// by the caller; the daemon's refusal of it, if it closes it at once.
    pub fn fresh_connection(&self, name: &str) -> Result<(Node, Peer)> {
        let addr = self.addr(name)?;
        self.run(async {
            let node = Node::bind(
                NodeConfig::new("127.0.0.1:0".parse()?, false),
                self.files.clone(),
            )?;
            let peer = node.connect(addr).await?;
            Ok((node, peer))
        })
    }

    /// Whether daemon `name` still answers a query, on a fresh connection.
    pub fn serves(&self, name: &str) -> bool {
        let Ok(addr) = self.addr(name) else {
            return false;
        };
        self.rt.block_on(async {
            let fresh = async {
                let node = Node::bind(
                    NodeConfig::new("127.0.0.1:0".parse().ok()?, false),
                    self.files.clone(),
                )
                .ok()?;
                let peer = node.connect(addr).await.ok()?;
                // A query answered, or refused because this role may not ask it: either
                // way the daemon serves.
                let r = match peer.request(Request::Query(Query::Version)).await {
                    Ok(Reply::Version { .. }) => Some(true),
                    Err(walb_wire::Error::Remote(e)) => {
                        Some(e.code == walb_wire::ErrorCode::Forbidden)
                    }
                    _ => None,
                };
                node.close().await;
                r
            };
            matches!(
                tokio::time::timeout(EXCHANGE_LIMIT, fresh).await,
                Ok(Some(true))
            )
        })
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.rt.block_on(self.node.close());
    }
}

/// The resident and virtual memory of process `pid`, KiB (`VmRSS`, `VmSize`).
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmSize:")?))
}

/// SHA-256 of every file under a daemon's base directory (the lock file aside), by
/// relative path: images, diffs, metadata and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored(pub BTreeMap<String, String>);

impl Stored {
    /// Fingerprints `base`.
    pub fn of(base: &Path) -> Result<Stored> {
        let mut out = BTreeMap::new();
        let mut dirs = vec![base.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for ent in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
                let ent = ent?;
                let p = ent.path();
                let ty = ent.file_type()?;
                if ty.is_dir() {
                    dirs.push(p);
                } else if ty.is_file() && ent.file_name() != "daemon.lock" {
                    let rel = p.strip_prefix(base)?.display().to_string();
                    out.insert(rel, sha256_file(&p)?);
                }
            }
        }
        Ok(Stored(out))
    }

    /// Fails naming what differs from `before`.
    pub fn same_as(&self, before: &Stored) -> Result<()> {
        let mut diff = Vec::new();
        for (k, v) in &before.0 {
            match self.0.get(k) {
                None => diff.push(format!("{k} removed")),
                Some(w) if w != v => diff.push(format!("{k} changed")),
                _ => {}
            }
        }
        for k in self.0.keys() {
            if !before.0.contains_key(k) {
                diff.push(format!("{k} added"));
            }
        }
        if diff.is_empty() {
            Ok(())
        } else {
            bail!("what was stored changed: {}", diff.join(", "))
        }
    }
}
