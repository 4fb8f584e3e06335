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
//! 3. Calls. The server reads each stream's [`Request`], checks it against the
//!    authorization table ([`crate::auth::authorize`]) and refuses it with a
//!    [`ErrorCode::Forbidden`] error, answers subscriptions itself from the events the
//!    daemon [`Node::publish`]es, and queues every other request for [`Node::accept`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc, Mutex};
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::auth::authorize;
use crate::certs::TlsFiles;
use crate::config::WireConfig;
use crate::frame::{
    encode_end, parse_end, ChunkDecoder, ChunkEncoder, FrameError, FrameHeader, FrameKind,
    CHUNK_HEADER_LEN, FRAME_HEADER_LEN,
};
use crate::identity::PeerId;
use crate::msg::{
    negotiate, ErrorCode, Event, Hello, Message, Reply, Request, Step, Subscribe, Welcome,
    WireError, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};
use crate::tls::TlsState;
use crate::Error;

/// Application close code: the peer's certificate carries no usable identity.
const CLOSE_IDENTITY: u32 = 1;
/// Application close code: negotiation failed.
const CLOSE_NEGOTIATION: u32 = 2;
/// Application close code: the node shuts down.
const CLOSE_SHUTDOWN: u32 = 3;
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
    /// A configuration with default tunables.
    pub fn new(bind: SocketAddr, listen: bool) -> Self {
        Self {
            bind,
            listen,
            wire: WireConfig::default(),
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
        });
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
            let identity = identity_of(&conn)?;
            let conn_err = |source| Error::Connection {
                peer: format!("{addr} ({identity})"),
                source,
            };
            let (send, recv) = conn.open_bi().await.map_err(conn_err)?;
            let mut call = Call::new(send, recv, identity.clone(), &inner.wire)?;
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
            Err(_) => Err(Error::Timeout("handshake and negotiation")),
        }
    }

    /// Reads the certificate files again; new handshakes use the new material, live
    /// connections go on. The identity may not change.
    pub fn reload_tls(&self) -> Result<(), Error> {
        let identity = self.inner.tls.reload()?;
        info!(%identity, "TLS material reloaded");
        Ok(())
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

fn identity_of(conn: &quinn::Connection) -> Result<PeerId, Error> {
    let certs = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(Error::Identity(crate::identity::IdentityError::NoIdentity))?;
    let leaf = certs
        .first()
        .ok_or(Error::Identity(crate::identity::IdentityError::NoIdentity))?;
    Ok(PeerId::from_cert_der(leaf)?)
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
        Err(_) => return Err(Error::Timeout("handshake")),
    };
    let peer = match identity_of(&conn) {
        Ok(p) => p,
        Err(e) => {
            conn.close(CLOSE_IDENTITY.into(), e.to_string().as_bytes());
            return Err(e);
        }
    };
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
            return Err(Error::Timeout("negotiation"));
        }
    };
    debug!(%remote, %peer, version, "peer connected");
    loop {
        let (send, recv) = conn.accept_bi().await.map_err(conn_err)?;
        let call = Call::new(send, recv, peer.clone(), &inner.wire)?;
        tokio::spawn(serve_stream(inner.clone(), call, version, calls.clone()));
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
    let mut call = Call::new(send, recv, peer.clone(), &inner.wire)?;
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
    let request = match call.receiver.msg().await {
        Ok(Message::Request(r)) => r,
        Ok(other) => {
            let e = WireError::new(
                ErrorCode::BadRequest,
                format!(
                    "a stream must start with a request, got {}",
                    kind_of(&other)
                ),
            );
            call.sender.refuse(e).await;
            return;
        }
        Err(e) => {
            debug!(%peer, "bad request stream: {e}");
            call.sender.refuse(e.to_wire()).await;
            return;
        }
    };
    if let Err(denied) = authorize(peer.role(), inner.identity.role(), request.op_class()) {
        info!(%peer, "refused: {denied}");
        call.sender
            .refuse(WireError::new(ErrorCode::Forbidden, denied.to_string()))
            .await;
        return;
    }
    if let Err(e) = crate::admit::request(&request, &inner.wire.limits) {
        info!(%peer, "refused: {e}");
        call.sender.refuse(e).await;
        return;
    }
    if let Request::Subscribe(sub) = request {
        let events = inner.events.subscribe();
        if let Err(e) = serve_events(call, sub, events).await {
            debug!(%peer, "subscription ended: {e}");
        }
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
) -> Result<(), Error> {
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
        if wanted {
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

/// An authorized request, waiting for the daemon to answer it on its call.
pub struct IncomingCall {
    /// Who asks (from its certificate).
    pub peer: PeerId,
    /// The protocol version of the connection.
    pub version: u16,
    /// What it asks.
    pub request: Request,
    /// Where to answer, and to continue multi-step protocols.
    pub call: Call,
}

/// A live, negotiated connection to a daemon. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    conn: quinn::Connection,
    identity: PeerId,
    version: u16,
    wire: WireConfig,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("identity", &self.identity)
            .field("addr", &self.conn.remote_address())
            .field("version", &self.version)
            .finish()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("identity", &self.inner.identity)
            .field("addr", &self.inner.endpoint.local_addr().ok())
            .finish()
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("peer", &self.peer).finish()
    }
}

impl Peer {
    /// The daemon's identity (from its certificate).
    pub fn identity(&self) -> &PeerId {
        &self.identity
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The daemon's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Opens a stream and sends `request`; the returned call carries the rest.
    pub async fn call(&self, request: Request) -> Result<Call, Error> {
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|source| Error::Connection {
                peer: self.identity.to_string(),
                source,
            })?;
        let mut call = Call::new(send, recv, self.identity.clone(), &self.wire)?;
        call.sender.send(&Message::Request(request)).await?;
        Ok(call)
    }

    /// Opens a stream and sends nothing: the caller writes raw bytes on it (tests of what
    /// a daemon does with malformed or hostile input).
    #[doc(hidden)]
    pub async fn call_raw(&self) -> Result<Call, Error> {
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|source| Error::Connection {
                peer: self.identity.to_string(),
                source,
            })?;
        Call::new(send, recv, self.identity.clone(), &self.wire)
    }

    /// Sends a one-shot request and waits for its reply.
    pub async fn request(&self, request: Request) -> Result<Reply, Error> {
        let mut call = self.call(request).await?;
        call.sender.finish()?;
        call.receiver.reply().await
    }

    /// Subscribes to the daemon's events.
    pub async fn subscribe(&self, sub: Subscribe) -> Result<EventStream, Error> {
        let mut call = self.call(Request::Subscribe(sub)).await?;
        match call.receiver.reply().await? {
            Reply::Accepted => Ok(EventStream { call }),
            other => Err(Error::Unexpected(format!(
                "subscription answered with {other:?}"
            ))),
        }
    }

    /// Closes the connection (other clones see it closed).
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"closed");
    }

    /// The underlying quinn connection (statistics, tests).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

/// A subscription's events, until either side drops it.
pub struct EventStream {
    call: Call,
}

impl EventStream {
    /// The next event; `None` when the daemon ended the subscription.
    pub async fn next(&mut self) -> Result<Option<Event>, Error> {
        match self.call.receiver.next().await? {
            None => Ok(None),
            Some(Received::Msg(Message::Event(e))) => Ok(Some(e)),
            Some(Received::Msg(Message::Error(e))) => Err(Error::Remote(e)),
            Some(other) => Err(Error::Unexpected(format!(
                "expected an event, got {}",
                other.describe()
            ))),
        }
    }
}

/// One request's stream, both directions.
pub struct Call {
    /// The peer at the other end.
    pub peer: PeerId,
    /// Our half.
    pub sender: CallSender,
    /// Their half.
    pub receiver: CallReceiver,
}

impl Call {
    fn new(
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        peer: PeerId,
        wire: &WireConfig,
    ) -> Result<Call, Error> {
        Ok(Call {
            peer,
            sender: CallSender {
                send,
                encoder: ChunkEncoder::new(wire.zstd_level)?,
                chunks: 0,
                bytes: 0,
                buffers: Recycler::default(),
            },
            receiver: CallReceiver {
                recv,
                pending: VecDeque::new(),
                batch: vec![Bytes::new(); READ_BATCH],
                finished: false,
                decoder: ChunkDecoder::new(wire.chunk_len_max)?,
                frame_len_max: wire.frame_len_max(),
                msg_len_max: wire.msg_len_max,
                chunks: 0,
                bytes: 0,
                buffers: Recycler::default(),
            },
        })
    }

    /// Answers with a reply (server side).
    pub async fn reply(&mut self, reply: Reply) -> Result<(), Error> {
        self.sender.reply(reply).await
    }

    /// Answers with an error and finishes our half (server side).
    pub async fn refuse(mut self, error: WireError) {
        self.sender.refuse(error).await;
    }
}

/// What arrived on a stream.
#[derive(Debug)]
pub enum Received {
    /// A control message.
    Msg(Message),
    /// A bulk chunk, decompressed and checked.
    Chunk(Bytes),
    /// The end of a bulk: its chunk and byte counts matched what arrived.
    End {
        /// Chunks in the bulk.
        chunks: u64,
        /// Uncompressed bytes in the bulk.
        bytes: u64,
    },
}

impl Received {
    fn describe(&self) -> String {
        match self {
            Received::Msg(m) => kind_of(m).to_owned(),
            Received::Chunk(_) => "a bulk chunk".to_owned(),
            Received::End { .. } => "a bulk end".to_owned(),
        }
    }
}

/// Our half of a call: messages and bulk chunks to the peer.
pub struct CallSender {
    send: quinn::SendStream,
    encoder: ChunkEncoder,
    chunks: u64,
    bytes: u64,
    buffers: Recycler,
}

impl CallSender {
    /// Sends a control message.
    pub async fn send(&mut self, msg: &Message) -> Result<(), Error> {
        self.write_postcard(FrameKind::Msg, msg).await
    }

    /// Sends a reply.
    pub async fn reply(&mut self, reply: Reply) -> Result<(), Error> {
        self.send(&Message::Reply(reply)).await
    }

    /// Sends a protocol step.
    pub async fn step(&mut self, step: Step) -> Result<(), Error> {
        self.send(&Message::Step(step)).await
    }

    /// Sends an error and finishes the stream; failures to send are ignored (the peer may
    /// be gone, and there is nothing more to tell it).
    pub async fn refuse(&mut self, error: WireError) {
        let _ = self.send(&Message::Error(error)).await;
        let _ = self.send.finish();
    }

    /// Sends one bulk chunk (compressed if configured, always checksummed). Waits while
    /// the peer's flow-control window is full.
    pub async fn chunk(&mut self, data: &[u8]) -> Result<(), Error> {
        // quinn accepts writes without yielding while its buffers have room; take part in
        // tokio's cooperative budget so a sender loop cannot starve its runtime thread.
        tokio::task::consume_budget().await;
        let (header, stored) = self.encoder.encode(data)?;
        // One copy into a buffer of our own, made here rather than inside quinn's
        // `write_all`, which copies while holding the connection's lock and so stalls the
        // connection driver (packet building, acknowledgements) for the whole memcpy.
        let head = chunk_frame_head(&header, stored.len())?;
        let mut frame = self.buffers.get(head.len() + stored.len());
        frame.put_slice(&head);
        frame.put_slice(stored);
        let frame = frame.freeze();
        self.buffers.keep(&frame);
        self.send.write_chunk(frame).await?;
        self.chunks += 1;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// A new encoder with this call's compression settings, for [`EncodedChunk::encode`]
    /// on another thread.
    pub fn encoder(&self) -> Result<ChunkEncoder, Error> {
        Ok(ChunkEncoder::new(self.encoder.level())?)
    }

    /// Sends a chunk encoded ahead ([`EncodedChunk::encode`]), without a copy. Waits while
    /// the peer's flow-control window is full.
    pub async fn chunk_encoded(&mut self, chunk: EncodedChunk) -> Result<(), Error> {
        tokio::task::consume_budget().await;
        let mut parts = [chunk.head, chunk.stored];
        self.send.write_all_chunks(&mut parts).await?;
        self.chunks += 1;
        self.bytes += chunk.raw_len;
        Ok(())
    }

    /// Like [`CallSender::chunk`], for data already in [`Bytes`]: uncompressed chunks
    /// are handed to quinn without any copy.
    pub async fn chunk_bytes(&mut self, data: Bytes) -> Result<(), Error> {
        if self.encoder.level().is_some() {
            return self.chunk(&data).await;
        }
        tokio::task::consume_budget().await;
        let (header, stored) = self.encoder.encode(&data)?;
        debug_assert_eq!(stored.len(), data.len());
        let head = chunk_frame_head(&header, data.len())?;
        let raw_len = data.len() as u64;
        let mut parts = [Bytes::copy_from_slice(&head), data];
        self.send.write_all_chunks(&mut parts).await?;
        self.chunks += 1;
        self.bytes += raw_len;
        Ok(())
    }

    /// Ends the current bulk (the receiver checks the counts).
    pub async fn end_bulk(&mut self) -> Result<(), Error> {
        let payload = encode_end(self.chunks, self.bytes);
        self.chunks = 0;
        self.bytes = 0;
        self.buffers.clear();
        self.write_frame(FrameKind::End, &payload).await
    }

    /// Finishes our half of the stream: nothing more will be sent.
    pub fn finish(&mut self) -> Result<(), Error> {
        Ok(self.send.finish()?)
    }

    /// Abandons the call: the peer's reads fail.
    pub fn reset(&mut self) {
        let _ = self.send.reset(RESET_ABANDONED.into());
    }

    /// Writes raw bytes on the stream, bypassing framing (tests of malformed input).
    #[doc(hidden)]
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        Ok(self.send.write_all(bytes).await?)
    }

    async fn write_postcard<T: serde::Serialize>(
        &mut self,
        kind: FrameKind,
        value: &T,
    ) -> Result<(), Error> {
        let payload = postcard::to_stdvec(value).map_err(Error::Encode)?;
        self.write_frame(kind, &payload).await
    }

    async fn write_frame(&mut self, kind: FrameKind, payload: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
            len: u32::MAX,
            len_max: u32::MAX - 1,
        })?;
        let header = FrameHeader { kind, len }.encode();
        self.send.write_all(&header).await?;
        self.send.write_all(payload).await?;
        Ok(())
    }
}

/// Frame buffers of a bulk transfer, reused once nobody else holds them.
///
/// A chunk frame's buffer is as large as the chunk (a MiB by default): allocating a fresh
/// one per chunk costs an `mmap`, a page fault per page and an `munmap` each time (perf:
/// 10-15% of the CPU in page faults, half of them in the sender's buffer). Sent frames
/// come back once quinn dropped them (acknowledged, which may be a whole stream window
/// later); received frames once the caller dropped the chunk. We keep a handle on the
/// last `RECYCLE_MAX` buffers, but at most `SPARE_MAX` that only we hold, so the memory
/// beyond what quinn and the caller hold is a few chunks; all is released at the end of
/// each bulk.
#[derive(Default)]
struct Recycler {
    held: VecDeque<Bytes>,
}

/// Buffers a [`Recycler`] keeps a handle on (covers a 16 MiB window of 1 MiB chunks).
const RECYCLE_MAX: usize = 24;
/// Free buffers a [`Recycler`] keeps beyond the one it reuses.
const SPARE_MAX: usize = 2;

impl Recycler {
    /// An empty buffer of at least `cap` bytes, reused if a kept one is free.
    fn get(&mut self, cap: usize) -> BytesMut {
        let mut reuse = None;
        let mut spare = 0;
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].is_unique() {
                if reuse.is_none() {
                    reuse = self.held.remove(i);
                    continue;
                }
                spare += 1;
                if spare > SPARE_MAX {
                    self.held.remove(i);
                    continue;
                }
            }
            i += 1;
        }
        if let Some(Ok(mut b)) = reuse.map(Bytes::try_into_mut) {
            if b.capacity() >= cap {
                b.clear();
                return b;
            }
        }
        BytesMut::with_capacity(cap)
    }

    /// Keeps a handle on a buffer handed out, to reuse it once it is free.
    fn keep(&mut self, b: &Bytes) {
        if self.held.len() >= RECYCLE_MAX {
            self.held.pop_front();
        }
        self.held.push_back(b.clone());
    }

    fn clear(&mut self) {
        self.held.clear();
    }
}

/// The frame and chunk headers of a chunk frame carrying `stored_len` bytes.
/// A bulk chunk framed ahead of sending: what [`CallSender::chunk`] does (checksum,
/// compression) done wherever the caller likes, typically on the thread that produced the
/// data, so that encoding the next chunk overlaps sending this one. Sent with
/// [`CallSender::chunk_encoded`]; the receiver cannot tell it from any other chunk.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    head: Bytes,
    stored: Bytes,
    raw_len: u64,
}

impl EncodedChunk {
    /// Encodes `data` with `enc` (see [`CallSender::encoder`]). Data stored raw is kept
    /// by reference, not copied.
    pub fn encode(enc: &mut ChunkEncoder, data: Bytes) -> Result<EncodedChunk, Error> {
        let (header, stored) = enc.encode(&data)?;
        let head = chunk_frame_head(&header, stored.len())?;
        let raw = std::ptr::eq(stored.as_ptr(), data.as_ptr()) && stored.len() == data.len();
        let stored = if raw {
            data.clone()
        } else {
            Bytes::copy_from_slice(stored)
        };
        Ok(EncodedChunk {
            head: Bytes::copy_from_slice(&head),
            stored,
            raw_len: data.len() as u64,
        })
    }

    /// Uncompressed bytes.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Bytes on the wire (frame header included).
    pub fn wire_len(&self) -> usize {
        self.head.len() + self.stored.len()
    }
}

fn chunk_frame_head(
    header: &[u8; CHUNK_HEADER_LEN],
    stored_len: usize,
) -> Result<[u8; FRAME_HEADER_LEN + CHUNK_HEADER_LEN], FrameError> {
    let len = u32::try_from(CHUNK_HEADER_LEN + stored_len).map_err(|_| FrameError::TooLarge {
        len: u32::MAX,
        len_max: u32::MAX - 1,
    })?;
    let fh = FrameHeader {
        kind: FrameKind::Chunk,
        len,
    };
    let mut head = [0u8; FRAME_HEADER_LEN + CHUNK_HEADER_LEN];
    head[..FRAME_HEADER_LEN].copy_from_slice(&fh.encode());
    head[FRAME_HEADER_LEN..].copy_from_slice(header);
    Ok(head)
}

/// Their half of a call: messages and bulk chunks from the peer.
pub struct CallReceiver {
    recv: quinn::RecvStream,
    /// Received bytes not yet consumed, in order (pieces as quinn handed them over).
    pending: VecDeque<Bytes>,
    /// Scratch slots for `read_chunks`.
    batch: Vec<Bytes>,
    /// The peer finished the stream and everything was taken from quinn.
    finished: bool,
    decoder: ChunkDecoder,
    frame_len_max: u32,
    msg_len_max: u32,
    chunks: u64,
    bytes: u64,
    buffers: Recycler,
}

impl CallReceiver {
    /// The next frame; `None` if the peer finished the stream at a frame boundary.
    pub async fn next(&mut self) -> Result<Option<Received>, Error> {
        let Some((kind, payload)) = self.read_frame().await? else {
            return Ok(None);
        };
        match kind {
            FrameKind::Msg => {
                let msg = postcard::from_bytes(&payload).map_err(Error::Decode)?;
                Ok(Some(Received::Msg(msg)))
            }
            FrameKind::Chunk => {
                let data = self.decoder.decode(payload)?;
                self.chunks += 1;
                self.bytes += data.len() as u64;
                Ok(Some(Received::Chunk(data)))
            }
            FrameKind::End => {
                let (chunks, bytes) = parse_end(&payload)?;
                let got = (self.chunks, self.bytes);
                self.chunks = 0;
                self.bytes = 0;
                self.buffers.clear();
                if (chunks, bytes) != got {
                    return Err(Error::Unexpected(format!(
                        "bulk end announces {chunks} chunks of {bytes} bytes, \
                         received {} chunks of {} bytes",
                        got.0, got.1
                    )));
                }
                Ok(Some(Received::End { chunks, bytes }))
            }
            FrameKind::Hello => Err(Error::Unexpected(
                "negotiation frame outside negotiation".into(),
            )),
        }
    }

    /// The next control message; a peer's error message becomes [`Error::Remote`].
    pub async fn msg(&mut self) -> Result<Message, Error> {
        match self.next().await? {
            Some(Received::Msg(Message::Error(e))) => Err(Error::Remote(e)),
            Some(Received::Msg(m)) => Ok(m),
            Some(other) => Err(Error::Unexpected(format!(
                "expected a message, got {}",
                other.describe()
            ))),
            None => Err(Error::StreamEnded("expected a message")),
        }
    }

    /// The next message, which must be a reply.
    pub async fn reply(&mut self) -> Result<Reply, Error> {
        match self.msg().await? {
            Message::Reply(r) => Ok(r),
            other => Err(Error::Unexpected(format!(
                "expected a reply, got {}",
                kind_of(&other)
            ))),
        }
    }

    /// The next message, which must be a step.
    pub async fn step(&mut self) -> Result<Step, Error> {
        match self.msg().await? {
            Message::Step(s) => Ok(s),
            other => Err(Error::Unexpected(format!(
                "expected a step, got {}",
                kind_of(&other)
            ))),
        }
    }

    /// The next bulk chunk; `None` at the bulk's end (whose counts were checked).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        match self.next().await? {
            Some(Received::Chunk(c)) => Ok(Some(c)),
            Some(Received::End { .. }) => Ok(None),
            Some(Received::Msg(Message::Error(e))) => Err(Error::Remote(e)),
            Some(other) => Err(Error::Unexpected(format!(
                "expected a bulk chunk, got {}",
                other.describe()
            ))),
            None => Err(Error::StreamEnded("inside a bulk transfer")),
        }
    }

    /// Tells the peer to stop sending (we will not read more).
    pub fn stop(&mut self) {
        let _ = self.recv.stop(RESET_ABANDONED.into());
    }

    async fn read_postcard<T: serde::de::DeserializeOwned>(
        &mut self,
        want: FrameKind,
    ) -> Result<T, Error> {
        match self.read_frame().await? {
            Some((kind, payload)) if kind == want => {
                postcard::from_bytes(&payload).map_err(Error::Decode)
            }
            Some((kind, _)) => Err(Error::Unexpected(format!(
                "expected a {want:?} frame, got {kind:?}"
            ))),
            None => Err(Error::StreamEnded("during negotiation")),
        }
    }

    async fn read_frame(&mut self) -> Result<Option<(FrameKind, Bytes)>, Error> {
        tokio::task::consume_budget().await;
        let mut head = [0u8; FRAME_HEADER_LEN];
        match self.take(FRAME_HEADER_LEN).await? {
            Ok(b) => head.copy_from_slice(&b),
            Err(0) => return Ok(None),
            Err(got) => {
                return Err(FrameError::Truncated {
                    want: FRAME_HEADER_LEN,
                    got,
                }
                .into())
            }
        }
        let h = FrameHeader::parse(head, self.frame_len_max)?;
        if h.kind != FrameKind::Chunk && h.len > self.msg_len_max {
            return Err(FrameError::TooLarge {
                len: h.len,
                len_max: self.msg_len_max,
            }
            .into());
        }
        match self.take(h.len as usize).await? {
            Ok(payload) => Ok(Some((h.kind, payload))),
            Err(got) => Err(FrameError::Truncated {
                want: h.len as usize,
                got,
            }
            .into()),
        }
    }

    /// Takes the next `n` bytes of the stream: `Ok(Err(got))` if it ends after `got`.
    ///
    /// quinn hands received data over as the pieces it arrived in (`read_chunks`, which
    /// moves them out under one short lock of the connection). A frame inside one piece
    /// is returned without copying; otherwise its pieces are copied once into a buffer
    /// allocated for it (not zero-filled first).
    async fn take(&mut self, n: usize) -> Result<Result<Bytes, usize>, Error> {
        loop {
            match self.pending.front_mut() {
                Some(front) if front.is_empty() => {
                    self.pending.pop_front();
                }
                Some(front) if front.len() >= n => {
                    let out = front.split_to(n);
                    if front.is_empty() {
                        self.pending.pop_front();
                    }
                    return Ok(Ok(out));
                }
                Some(_) => break,
                None if n == 0 => return Ok(Ok(Bytes::new())),
                None => {
                    if !self.fill().await? {
                        return Ok(Err(0));
                    }
                }
            }
        }
        let mut out = self.buffers.get(n);
        while out.len() < n {
            let Some(front) = self.pending.front_mut() else {
                if !self.fill().await? {
                    return Ok(Err(out.len()));
                }
                continue;
            };
            let k = (n - out.len()).min(front.len());
            out.put_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.pending.pop_front();
            }
        }
        let out = out.freeze();
        self.buffers.keep(&out);
        Ok(Ok(out))
    }

    /// Moves more received pieces from quinn; `false` once the peer finished the stream.
    async fn fill(&mut self) -> Result<bool, Error> {
        if self.finished {
            return Ok(false);
        }
        match self.recv.read_chunks(&mut self.batch).await? {
            Some(n) => {
                for b in self.batch.iter_mut().take(n) {
                    self.pending.push_back(std::mem::take(b));
                }
                Ok(true)
            }
            None => {
                self.finished = true;
                Ok(false)
            }
        }
    }
}
