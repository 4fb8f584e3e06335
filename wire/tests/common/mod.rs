//! Helpers of the wire's integration tests: a cluster CA in a temporary directory, nodes
//! on loopback, a trivial daemon loop, and reading a process's memory figures.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use walb_wire::msg::{DiffRange, MetaDiffDto, SnapDto, WdiffTransfer};
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
                Request::Query(Query::State { .. }) => Reply::State(
                    walb_wire::msg::VolumeState::Archive(walb_wire::msg::ArchiveState::Archived),
                ),
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

/// The diff of gid 0 → 1.
pub fn diff_dto() -> MetaDiffDto {
    MetaDiffDto {
        range: DiffRange {
            snap_b: SnapDto { gid_b: 0, gid_e: 0 },
            snap_e: SnapDto { gid_b: 1, gid_e: 1 },
        },
        mergeable: false,
        comp_diff: false,
        timestamp_s: 0,
        size: 0,
    }
}

/// A wdiff transfer of volume v0 of `size_lb` blocks.
pub fn wdiff(size_lb: u64) -> Request {
    Request::WdiffTransfer(WdiffTransfer {
        vol: "v0".into(),
        uuid: [1; 16],
        size_lb,
        diff: diff_dto(),
    })
}

/// A quinn client endpoint trusting `roots`, presenting `auth` (a chain and its key) if
/// given, dialling "localhost" at `addr`; returns how the connection ended, the handshake
/// refusal included (the client's half may finish before the server judged it: the
/// refusal then arrives as the connection's close).
pub async fn bare_client_end(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    auth: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> quinn::ConnectionError {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"walb".to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(qc)));
    let ended = tokio::time::timeout(LIMIT, async {
        let conn = endpoint.connect(addr, "localhost").unwrap().await?;
        Ok::<_, quinn::ConnectionError>(conn.closed().await)
    })
    .await
    .unwrap();
    match ended {
        Ok(e) | Err(e) => e,
    }
}
