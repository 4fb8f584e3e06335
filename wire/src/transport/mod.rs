//! The QUIC edge: nodes, connections, calls and bulk streams (tokio + quinn).
//!
//! A [`Node`] is one peer's endpoint. Daemons [`Node::bind`] with `listen: true` and take
//! authorized requests from [`Node::accept`]; consoles bind with `listen: false` and only
//! dial. Either side reaches a daemon with [`Node::connect`], which reuses one connection
//! per address and returns a [`Peer`]. Every request runs on its own bidirectional stream
//! as a [`Call`]: a [`CallSender`] and a [`CallReceiver`] that carry control messages,
//! bulk chunks (zstd-compressed and checksummed; QUIC flow control is the backpressure)
//! and bulk ends.
//!
//! What happens on a connection, in order:
//!
//! 1. TLS 1.3 handshake with certificates on both sides ([`crate::tls`]); each side reads
//!    the other's identity from its certificate.
//! 2. Negotiation on the first stream: [`Hello`] → [`Welcome`]. On a version mismatch the
//!    server answers [`Welcome::Reject`] and closes the connection.
//! 3. Calls. The server takes a call only while its peer's identity holds fewer than
//!    [`WireConfig::identity_calls_max`] (else `Busy`), reads the stream's first message
//!    (at most [`WireConfig::msg_len_max`] bytes) and passes it through
//!    [`crate::intake::request`]: the operation class is authorized
//!    ([`crate::auth::authorize`], `Forbidden`) before the body is decoded, then the
//!    request's bounds are admitted ([`crate::admit::request`]). It answers subscriptions
//!    itself from the events the daemon [`Node::publish`]es (within
//!    [`WireConfig::identity_subscriptions_max`] and [`WireConfig::subscriptions_max`]),
//!    and queues every other request for [`Node::accept`].
//!
//! What a peer may hold of a node is bounded: [`WireConfig::identity_connections_max`]
//! connections per identity (the connection over the cap is closed, naming it),
//! [`WireConfig::streams_max`] streams per connection, the calls and subscriptions above.
//! Every step of a call (a read or a write, on both ends; not subscriptions) fails with
//! [`Error::Timeout`] when nothing moves for [`WireConfig::step_timeout`]. Every step a
//! [`CallReceiver`] hands over has been admitted ([`crate::admit::step`]).
//!
//! A frame's buffer grows as its bytes arrive, never reserved from its header: a peer
//! costs the memory of what it sent, which flow control bounds.
//!
//! Live connections are watched: at every TLS reload, at each peer certificate's expiry
//! and every [`WireConfig::recheck_interval`], every peer's certificate chain is checked
//! again against the material in force ([`TlsState::verify_peer`]: trust, validity, the
//! deny list of [`crate::deny`]); a connection whose peer fails is closed with the reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::{broadcast, mpsc, Mutex, Notify};
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::certs::TlsFiles;
use crate::config::WireConfig;
use crate::error::TimedOut;
use crate::frame::FrameKind;
use crate::identity::PeerId;
use crate::msg::{
    negotiate, ErrorCode, Event, Hello, Message, Reply, Request, Subscribe, Welcome, WireError,
    PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};
use crate::quota::{self, Over, Slot};
use crate::tls::{PeerSide, TlsState};
use crate::Error;

mod call;

use call::End;
pub use call::{
    Call, CallReceiver, CallSender, EncodedChunk, EventStream, IncomingCall, Peer, Received,
};

/// Application close code: the peer's certificate carries no usable identity.
const CLOSE_IDENTITY: u32 = 1;
/// Application close code: negotiation failed.
const CLOSE_NEGOTIATION: u32 = 2;
/// Application close code: the node shuts down.
const CLOSE_SHUTDOWN: u32 = 3;
/// Application close code: the peer's identity has too many connections open.
const CLOSE_BUSY: u32 = 4;
/// Application close code: the peer's certificate is no longer accepted (revoked,
/// expired, no longer trusted).
const CLOSE_CERTIFICATE: u32 = 5;
/// Stream reset code: the call was abandoned.
const RESET_ABANDONED: u32 = 1;
/// Received pieces taken from quinn per lock of the connection (`read_chunks`).
const READ_BATCH: usize = 64;

/// How a [`Node`] is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Local address to bind (port 0 for any).
    pub bind: SocketAddr,
    /// Accept connections (daemons) or only dial (consoles).
    pub listen: bool,
    /// Transport tunables.
    pub wire: WireConfig,
    /// Software description sent in negotiation (`walb-daemon 0.1.0`).
    pub software: String,
    /// Protocol versions this node speaks, oldest and newest (pin the newest to an older
    /// version during a rolling upgrade).
    pub versions: (u16, u16),
}

impl NodeConfig {
    /// A configuration with default tunables. A node that only dials (a console) has no
    /// step timeout ([`WireConfig::step_timeout`]): its operations have their own.
    pub fn new(bind: SocketAddr, listen: bool) -> Self {
        let mut wire = WireConfig::default();
        if !listen {
            wire.step_timeout = None;
        }
        Self {
            bind,
            listen,
            wire,
            software: format!("walb {}", env!("CARGO_PKG_VERSION")),
            versions: (PROTOCOL_VERSION_MIN, PROTOCOL_VERSION),
        }
    }
}

/// One peer's endpoint: dials, listens, authorizes, and serves events.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    endpoint: quinn::Endpoint,
    tls: Arc<TlsState>,
    identity: PeerId,
    wire: WireConfig,
    software: String,
    versions: (u16, u16),
    client_config: quinn::ClientConfig,
    pool: Mutex<HashMap<SocketAddr, Peer>>,
    calls: Mutex<mpsc::Receiver<IncomingCall>>,
    events: broadcast::Sender<Event>,
    /// Connections per identity (served connections only).
    conn_quota: quota::Shared,
    /// Calls in progress per identity (served calls only).
    call_quota: quota::Shared,
    /// Event subscriptions per identity and in total.
    sub_quota: quota::Shared,
    /// Live connections whose peer certificates are checked again, by `stable_id`.
    live: std::sync::Mutex<HashMap<usize, Live>>,
    /// Wakes the recheck task (a connection was registered).
    recheck: Arc<Notify>,
}

/// A live connection and the certificate chain its peer presented.
struct Live {
    conn: quinn::Connection,
    peer: PeerId,
    side: PeerSide,
    chain: Vec<CertificateDer<'static>>,
    /// The earliest end of validity in the chain.
    not_after: Option<SystemTime>,
}

impl Node {
    /// Binds a node with TLS material from files (reloadable with [`Node::reload_tls`]).
    pub fn bind(cfg: NodeConfig, files: TlsFiles) -> Result<Node, Error> {
        Self::with_tls(cfg, TlsState::from_files(files)?)
    }

    /// Binds a node with the given TLS state.
    pub fn with_tls(cfg: NodeConfig, tls: Arc<TlsState>) -> Result<Node, Error> {
        let transport = cfg.wire.quinn_transport()?;
        let server_config = if cfg.listen {
            let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_config()?)
                .map_err(|e| Error::Config(e.to_string()))?;
            let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            sc.transport_config(transport.clone());
            Some(sc)
        } else {
            None
        };
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_config()?)
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
        client_config.transport_config(transport);

        let socket = std::net::UdpSocket::bind(cfg.bind)?;
        set_socket_buffers(&socket, cfg.wire.socket_buffer);
        let runtime = quinn::default_runtime()
            .ok_or_else(|| Error::Config("no async runtime (run inside tokio)".into()))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            server_config,
            socket,
            runtime,
        )?;
        let (calls_tx, calls_rx) = mpsc::channel(cfg.wire.incoming_calls_max.max(1));
        let (events, _) = broadcast::channel(cfg.wire.events_queue.max(1));
        let identity = tls.identity();
        let recheck = Arc::new(Notify::new());
        let recheck_interval = cfg.wire.recheck_interval;
        let inner = Arc::new(NodeInner {
            endpoint,
            tls,
            identity,
            wire: cfg.wire,
            software: cfg.software,
            versions: cfg.versions,
            client_config,
            pool: Mutex::new(HashMap::new()),
            calls: Mutex::new(calls_rx),
            events,
            conn_quota: Arc::default(),
            call_quota: Arc::default(),
            sub_quota: Arc::default(),
            live: std::sync::Mutex::new(HashMap::new()),
            recheck: recheck.clone(),
        });
        tokio::spawn(recheck_loop(
            Arc::downgrade(&inner),
            recheck,
            recheck_interval,
        ));
        if cfg.listen {
            tokio::spawn(accept_loop(inner.clone(), calls_tx));
        }
        Ok(Node { inner })
    }

    /// This node's identity (from its certificate).
    pub fn identity(&self) -> &PeerId {
        &self.inner.identity
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.inner.endpoint.local_addr()?)
    }

    /// The transport tunables.
    pub fn wire_config(&self) -> &WireConfig {
        &self.inner.wire
    }

    /// The next authorized request from any peer; `None` once the node is closed.
    pub async fn accept(&self) -> Option<IncomingCall> {
        self.inner.calls.lock().await.recv().await
    }

    /// Sends an event to every subscriber (dropped if there are none).
    pub fn publish(&self, event: Event) {
        let _ = self.inner.events.send(event);
    }

    /// A connection to the daemon at `addr`, reusing a live one.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Peer, Error> {
        {
            let pool = self.inner.pool.lock().await;
            if let Some(p) = pool.get(&addr) {
                if p.conn.close_reason().is_none() {
                    return Ok(p.clone());
                }
            }
        }
        let peer = self.dial(addr).await?;
        let mut pool = self.inner.pool.lock().await;
        if let Some(p) = pool.get(&addr) {
            if p.conn.close_reason().is_none() {
                // Another task dialled at the same time; keep one connection.
                peer.conn.close(0u32.into(), b"duplicate");
                return Ok(p.clone());
            }
        }
        pool.insert(addr, peer.clone());
        Ok(peer)
    }

    /// Like [`Node::connect`], but fails unless the daemon is `expect`.
    pub async fn connect_to(&self, addr: SocketAddr, expect: &PeerId) -> Result<Peer, Error> {
        let peer = self.connect(addr).await?;
        if peer.identity() != expect {
            return Err(Error::UnexpectedPeer {
                want: expect.clone(),
                got: peer.identity().clone(),
            });
        }
        Ok(peer)
    }

    async fn dial(&self, addr: SocketAddr) -> Result<Peer, Error> {
        let inner = &self.inner;
        let connecting = inner
            .endpoint
            .connect_with(inner.client_config.clone(), addr, "walb")
            .map_err(|source| Error::Connect { addr, source })?;
        let handshake = async {
            let conn = connecting.await.map_err(|source| Error::Connection {
                peer: addr.to_string(),
                source,
            })?;
            let (identity, chain) = identity_of(&conn)?;
            inner.watch(&conn, &identity, PeerSide::Server, chain);
            let conn_err = |source| Error::Connection {
                peer: format!("{addr} ({identity})"),
                source,
            };
            let (send, recv) = conn.open_bi().await.map_err(conn_err)?;
            let mut call = Call::new(send, recv, identity.clone(), &inner.wire, End::Opened)?;
            let hello = Hello {
                version_min: inner.versions.0,
                version_max: inner.versions.1,
                ..Hello::ours(&inner.software)
            };
            call.sender.write_postcard(FrameKind::Hello, &hello).await?;
            call.sender.finish()?;
            let welcome: Welcome = call.receiver.read_postcard(FrameKind::Hello).await?;
            match welcome {
                Welcome::Accept { version, software } => {
                    debug!(%addr, %identity, version, %software, "connected");
                    Ok(Peer {
                        conn,
                        identity,
                        version,
                        wire: inner.wire.clone(),
                    })
                }
                Welcome::Reject(e) => Err(Error::Remote(e)),
            }
        };
        match timeout(inner.wire.handshake_timeout, handshake).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(TimedOut::new("handshake and negotiation"))),
        }
    }

    /// Reads the certificate files (and the deny list beside the CA certificate) again;
    /// new handshakes use the new material. Live connections go on unless their peer's
    /// certificate no longer passes (revoked, expired, no longer trusted): those are
    /// closed, with the reason. The identity may not change. Returns how many
    /// connections were closed.
    pub fn reload_tls(&self) -> Result<usize, Error> {
        let identity = self.inner.tls.reload()?;
        let (closed, _) = self.inner.recheck();
        info!(
            %identity,
            denied = self.inner.tls.denied(),
            closed,
            "TLS material reloaded"
        );
        Ok(closed)
    }

    /// Checks every live connection's peer certificate again now (as at a reload);
    /// returns how many connections were closed.
    pub fn recheck_peers(&self) -> usize {
        self.inner.recheck().0
    }

    /// Spawns a task that reloads the TLS material on every SIGHUP (Unix).
    pub fn reload_on_sighup(&self) -> Result<tokio::task::JoinHandle<()>, Error> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let node = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if let Err(e) = node.reload_tls() {
                    warn!("SIGHUP: TLS reload failed, keeping the old material: {e}");
                }
            }
        }))
    }

    /// Closes every connection and stops listening.
    pub async fn close(&self) {
        self.inner
            .endpoint
            .close(CLOSE_SHUTDOWN.into(), b"node shutting down");
        self.inner.pool.lock().await.clear();
        self.inner.endpoint.wait_idle().await;
    }
}

fn set_socket_buffers(socket: &std::net::UdpSocket, size: usize) {
    // Best effort: the OS caps these at net.core.{r,w}mem_max.
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(size) {
        debug!("SO_RCVBUF: {e}");
    }
    if let Err(e) = sock.set_send_buffer_size(size) {
        debug!("SO_SNDBUF: {e}");
    }
}

/// The peer's identity and the certificate chain it presented.
fn identity_of(conn: &quinn::Connection) -> Result<(PeerId, Vec<CertificateDer<'static>>), Error> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(Error::Identity(crate::identity::IdentityError::NoIdentity))?;
    let leaf = certs
        .first()
        .ok_or(Error::Identity(crate::identity::IdentityError::NoIdentity))?;
    Ok((PeerId::from_cert_der(leaf)?, *certs))
}

/// The earliest end of validity of a certificate chain.
fn chain_not_after(chain: &[CertificateDer<'_>]) -> Option<SystemTime> {
    chain
        .iter()
        .filter_map(|c| {
            let (_, cert) = x509_parser::parse_x509_certificate(c).ok()?;
            let t = cert.validity().not_after.timestamp();
            let secs = u64::try_from(t).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        })
        .min()
}

/// Why a live connection's peer certificate is no longer accepted, for its close reason.
fn cert_failure(peer: &PeerId, e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(C::Revoked) => "is revoked (deny list)".to_owned(),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "is not signed by a CA in force".to_owned()
        }
        other => format!("is no longer valid: {other}"),
    };
    format!("the certificate of {peer} {why}")
}

impl NodeInner {
    /// Registers a live connection whose peer certificate is checked again (at reloads,
    /// at its expiry, periodically).
    fn watch(
        &self,
        conn: &quinn::Connection,
        peer: &PeerId,
        side: PeerSide,
        chain: Vec<CertificateDer<'static>>,
    ) {
        let live = Live {
            conn: conn.clone(),
            peer: peer.clone(),
            side,
            not_after: chain_not_after(&chain),
            chain,
        };
        lock(&self.live).insert(conn.stable_id(), live);
        self.recheck.notify_one();
    }

    /// Checks every live connection's peer certificate against the material in force;
    /// closes those that fail, forgets closed ones. Returns how many were closed and the
    /// earliest expiry among those left.
    fn recheck(&self) -> (usize, Option<SystemTime>) {
        let now = UnixTime::now();
        let mut closed = 0;
        let mut live = lock(&self.live);
        live.retain(|_, l| {
            if l.conn.close_reason().is_some() {
                return false;
            }
            match self.tls.verify_peer(&l.chain, l.side, now) {
                Ok(()) => true,
                Err(e) => {
                    let reason = cert_failure(&l.peer, &e);
                    info!(peer = %l.peer, addr = %l.conn.remote_address(), "closing: {reason}");
                    l.conn.close(CLOSE_CERTIFICATE.into(), reason.as_bytes());
                    closed += 1;
                    false
                }
            }
        });
        (closed, live.values().filter_map(|l| l.not_after).min())
    }

    /// The earliest expiry among live connections' peer certificates.
    fn next_expiry(&self) -> Option<SystemTime> {
        lock(&self.live).values().filter_map(|l| l.not_after).min()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks live connections' certificates every `interval` and just after the earliest
/// expiry; a registered connection only moves the next wake-up earlier. Ends with the
/// node.
async fn recheck_loop(node: Weak<NodeInner>, wake: Arc<Notify>, interval: Duration) {
    let mut last_full = tokio::time::Instant::now();
    let mut full = true;
    loop {
        let next = {
            let Some(inner) = node.upgrade() else { return };
            if full {
                last_full = tokio::time::Instant::now();
                inner.recheck().1
            } else {
                inner.next_expiry()
            }
        };
        let mut wait =
            (last_full + interval).saturating_duration_since(tokio::time::Instant::now());
        if let Some(t) = next {
            // webpki refuses a certificate once the time is past its notAfter second.
            let due = t + Duration::from_secs(1);
            let until = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::from_secs(1));
            wait = wait.min(until.max(Duration::from_millis(100)));
        }
        full = tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = wake.notified() => false,
        };
    }
}

async fn accept_loop(inner: Arc<NodeInner>, calls: mpsc::Sender<IncomingCall>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        let inner = inner.clone();
        let calls = calls.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            if let Err(e) = serve_connection(inner, incoming, calls).await {
                debug!(%remote, "connection ended: {e}");
            }
        });
    }
}

async fn serve_connection(
    inner: Arc<NodeInner>,
    incoming: quinn::Incoming,
    calls: mpsc::Sender<IncomingCall>,
) -> Result<(), Error> {
    let remote = incoming.remote_address();
    let conn_err = |source| Error::Connection {
        peer: remote.to_string(),
        source,
    };
    let conn = match timeout(inner.wire.handshake_timeout, incoming).await {
        Ok(r) => r.map_err(conn_err)?,
        Err(_) => return Err(Error::Timeout(TimedOut::new("handshake"))),
    };
    let (peer, chain) = match identity_of(&conn) {
        Ok(p) => p,
        Err(e) => {
            conn.close(CLOSE_IDENTITY.into(), e.to_string().as_bytes());
            return Err(e);
        }
    };
    let _slot = match Slot::take(
        &inner.conn_quota,
        &peer,
        inner.wire.identity_connections_max,
        None,
    ) {
        Ok(s) => s,
        Err(over) => {
            let why = format!(
                "{peer} has {} connections open to {}; at most {} per identity",
                over.max(),
                inner.identity,
                over.max()
            );
            info!(%remote, "refused a connection: {why}");
            conn.close(CLOSE_BUSY.into(), why.as_bytes());
            return Err(Error::Unexpected(why));
        }
    };
    inner.watch(&conn, &peer, PeerSide::Client, chain);
    let version = match timeout(
        inner.wire.handshake_timeout,
        negotiate_server(&inner, &conn, &peer),
    )
    .await
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            // Give the Welcome::Reject a moment to leave before closing.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            conn.close(CLOSE_NEGOTIATION.into(), e.to_string().as_bytes());
            return Err(e);
        }
        Err(_) => {
            conn.close(CLOSE_NEGOTIATION.into(), b"negotiation timed out");
            return Err(Error::Timeout(TimedOut::new("negotiation")));
        }
    };
    debug!(%remote, %peer, version, "peer connected");
    loop {
        let (send, recv) = conn.accept_bi().await.map_err(conn_err)?;
        let mut call = Call::new(send, recv, peer.clone(), &inner.wire, End::Served)?;
        call.sender.version = version;
        tokio::spawn(serve_stream(inner.clone(), call, version, calls.clone()));
    }
}

impl Over {
    /// The cap that was reached.
    fn max(self) -> u32 {
        match self {
            Over::Identity(m) | Over::Total(m) => m,
        }
    }
}

async fn negotiate_server(
    inner: &NodeInner,
    conn: &quinn::Connection,
    peer: &PeerId,
) -> Result<u16, Error> {
    let (send, recv) = conn.accept_bi().await.map_err(|source| Error::Connection {
        peer: peer.to_string(),
        source,
    })?;
    let mut call = Call::new(send, recv, peer.clone(), &inner.wire, End::Served)?;
    let hello: Hello = call.receiver.read_postcard(FrameKind::Hello).await?;
    let result = negotiate(&hello, inner.versions.0, inner.versions.1);
    let welcome = match &result {
        Ok(version) => Welcome::Accept {
            version: *version,
            software: inner.software.clone(),
        },
        Err(e) => Welcome::Reject(e.clone()),
    };
    call.sender
        .write_postcard(FrameKind::Hello, &welcome)
        .await?;
    call.sender.finish()?;
    result.map_err(Error::Remote)
}

async fn serve_stream(
    inner: Arc<NodeInner>,
    mut call: Call,
    version: u16,
    calls: mpsc::Sender<IncomingCall>,
) {
    let peer = call.peer.clone();
    let wire = &inner.wire;
    match Slot::take(&inner.call_quota, &peer, wire.identity_calls_max, None) {
        Ok(slot) => call.hold(slot),
        Err(over) => {
            let why = format!(
                "{peer} has {} calls in progress on {}; at most {} per identity",
                over.max(),
                inner.identity,
                over.max()
            );
            info!("refused a call: {why}");
            call.sender
                .refuse(WireError::new(ErrorCode::Busy, why))
                .await;
            return;
        }
    }
    let request = match call.receiver.opening().await.and_then(|payload| {
        crate::intake::request(&payload, peer.role(), inner.identity.role(), wire)
            .map_err(Error::Refused)
    }) {
        Ok(r) => r,
        Err(e) => {
            let e = e.to_wire();
            if e.code == ErrorCode::Forbidden {
                info!(%peer, "refused: {}", e.message);
            } else {
                debug!(%peer, "bad request stream: {e}");
            }
            call.sender.refuse(e).await;
            return;
        }
    };
    if let Request::Subscribe(sub) = request {
        let slot = match Slot::take(
            &inner.sub_quota,
            &peer,
            wire.identity_subscriptions_max,
            Some(wire.subscriptions_max),
        ) {
            Ok(s) => s,
            Err(over) => {
                let why = match over {
                    Over::Identity(m) => format!(
                        "{peer} holds {m} event subscriptions on {}; at most {m} per identity",
                        inner.identity
                    ),
                    Over::Total(m) => format!(
                        "{} serves {m} event subscriptions; at most {m}",
                        inner.identity
                    ),
                };
                info!("refused a subscription: {why}");
                call.sender
                    .refuse(WireError::new(ErrorCode::Busy, why))
                    .await;
                return;
            }
        };
        let events = inner.events.subscribe();
        if let Err(e) = serve_events(call, sub, events, version).await {
            debug!(%peer, "subscription ended: {e}");
        }
        drop(slot);
        return;
    }
    let incoming = IncomingCall {
        peer,
        version,
        request,
        call,
    };
    if let Err(mpsc::error::SendError(mut lost)) = calls.send(incoming).await {
        lost.call
            .sender
            .refuse(WireError::new(
                ErrorCode::Cancelled,
                "daemon is shutting down",
            ))
            .await;
    }
}

async fn serve_events(
    mut call: Call,
    sub: Subscribe,
    mut events: broadcast::Receiver<Event>,
    version: u16,
) -> Result<(), Error> {
    // Events may be quiet for hours, and a slow viewer only lags.
    call.set_step_timeout(None);
    call.sender.reply(Reply::Accepted).await?;
    let stopped = call.sender.send.stopped();
    tokio::pin!(stopped);
    loop {
        let event = tokio::select! {
            _ = &mut stopped => return Ok(()),
            ev = events.recv() => match ev {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        };
        let wanted = match event.vol() {
            Some(v) => sub.vols.is_empty() || sub.vols.iter().any(|w| w == v),
            None => true,
        };
        if let Some(event) = event.for_version(version).filter(|_| wanted) {
            call.sender.send(&Message::Event(event)).await?;
        }
    }
}

fn kind_of(m: &Message) -> &'static str {
    match m {
        Message::Request(_) => "a request",
        Message::Reply(_) => "a reply",
        Message::Step(_) => "a step",
        Message::Event(_) => "an event",
        Message::Error(_) => "an error",
    }
}
