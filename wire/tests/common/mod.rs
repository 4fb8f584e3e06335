//! Helpers of the wire's integration tests: a cluster CA in a temporary directory, nodes
//! on loopback, a trivial daemon loop, and reading a process's memory figures.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use walb_wire::{
    ClusterCa, Error, IssueOptions, Node, NodeConfig, PeerId, Query, Reply, Request, Role,
    TlsFiles, WireConfig,
};

/// Every wait of a test is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A temporary directory, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("walb-mesh-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Issues a certificate for `role/id` into `dir`, with a copy of the CA certificate.
pub fn issue(ca: &ClusterCa, dir: &Path, role: Role, id: &str, opts: &IssueOptions) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let peer = PeerId::new(role, id).unwrap();
    let files = ca.issue(&peer, opts).unwrap().save(dir, true).unwrap();
    std::fs::write(&files.ca_cert, ca.cert_pem()).unwrap();
    files
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A listening node with default settings.
pub fn daemon(files: TlsFiles) -> (Node, SocketAddr) {
    daemon_with(files, WireConfig::default())
}

/// A listening node with these transport settings.
pub fn daemon_with(files: TlsFiles, wire: WireConfig) -> (Node, SocketAddr) {
    let mut cfg = NodeConfig::new(loopback(), true);
    cfg.wire = wire;
    let node = Node::bind(cfg, files).unwrap();
    let addr = node.local_addr().unwrap();
    (node, addr)
}

/// A node that only dials, with default settings.
pub fn client(files: TlsFiles) -> Node {
    Node::bind(NodeConfig::new(loopback(), false), files).unwrap()
}

/// A node that only dials, with these transport settings.
pub fn client_with(files: TlsFiles, wire: WireConfig) -> Node {
    let mut cfg = NodeConfig::new(loopback(), false);
    cfg.wire = wire;
    Node::bind(cfg, files).unwrap()
}

/// Answers `Query::Version` with a version reply and every command with `Done`.
pub fn serve_simple(node: Node) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(mut inc) = node.accept().await {
            let reply = match inc.request {
                Request::Query(Query::Version) => Reply::Version {
                    software: "test".into(),
                    protocol: inc.version,
                },
                _ => Reply::Done,
            };
            let _ = inc.call.reply(reply).await;
        }
    })
}

/// A cluster CA and a directory for its peers' files.
pub struct Cluster {
    _dir: Dir,
    pub ca: ClusterCa,
    pub root: PathBuf,
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        let dir = Dir::new(name);
        let root = dir.0.clone();
        Cluster {
            _dir: dir,
            ca: ClusterCa::generate(name, 1).unwrap(),
            root,
        }
    }

    /// The files of `role/id` (a certificate directory of its own).
    pub fn files(&self, role: Role, id: &str) -> TlsFiles {
        self.files_with(role, id, &IssueOptions::default())
    }

    pub fn files_with(&self, role: Role, id: &str, opts: &IssueOptions) -> TlsFiles {
        issue(
            &self.ca,
            &self.root.join(format!("{role}-{id}")),
            role,
            id,
            opts,
        )
    }
}

pub fn assert_refused_by_tls(e: &Error) {
    let s = e.to_string();
    assert!(
        matches!(e, Error::Connection { .. }) && s.contains("TLS handshake refused"),
        "want a TLS refusal, got: {s}"
    );
}

/// A field of /proc/self/status in KiB (`VmRSS`, `VmSize`).
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}
