//! Tunables of the transport: flow-control windows, timeouts, chunk sizes, compression.
//!
//! The defaults aim at high bandwidth-delay paths: quinn's own defaults are sized for about
//! 100 Mbit/s × 100 ms, ours for about 1 Gbit/s × 100 ms (a 12.5 MB bandwidth-delay product,
//! with a 16 MiB stream window and 64 MiB for the connection). Memory per connection is
//! bounded by the connection window.
//!
//! What a peer may hold of a node is bounded too, per identity (from its certificate):
//! connections, concurrent calls and event subscriptions, and subscriptions per node;
//! control messages a server reads are small ([`WireConfig::msg_len_max`]), bulk bytes
//! travel only in chunk frames; a call that makes no progress for
//! [`WireConfig::step_timeout`] fails.

use std::sync::Arc;
use std::time::Duration;

/// Transport settings of a [`crate::transport::Node`].
#[derive(Clone, Debug)]
pub struct WireConfig {
    /// Bytes a peer may send on one stream beyond what we have read.
    pub stream_receive_window: u32,
    /// Bytes a peer may send on all streams of a connection beyond what we have read.
    pub receive_window: u32,
    /// Bytes we keep unacknowledged in flight on a connection.
    pub send_window: u64,
    /// A connection with no traffic for this long is dead.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this much silence; kept well inside the idle timeout.
    pub keep_alive: Duration,
    /// Handshake and negotiation must finish within this.
    pub handshake_timeout: Duration,
    /// Largest control message (request, step, negotiation) a server reads on a call it
    /// serves, bytes. Bulk bytes travel in chunk frames, never in messages.
    pub msg_len_max: u32,
    /// Largest message (reply, step, event) a client reads on a call it opened, bytes: a
    /// status reply or a diff list may be large.
    pub reply_len_max: u32,
    /// Largest (uncompressed) bulk chunk accepted.
    pub chunk_len_max: u32,
    /// zstd level of bulk chunks (`None`: no compression).
    pub zstd_level: Option<i32>,
    /// Most streams a peer may have open on one connection at once.
    pub streams_max: u32,
    /// Most connections one identity may have open to this node at once; a connection
    /// over the cap is closed with a reason naming it.
    pub identity_connections_max: u32,
    /// Most calls one identity may have in progress on this node at once, across its
    /// connections (subscriptions included); a call over the cap is refused `Busy`.
    pub identity_calls_max: u32,
    /// Most event subscriptions one identity may hold on this node at once.
    pub identity_subscriptions_max: u32,
    /// Most event subscriptions this node serves at once, all peers together.
    pub subscriptions_max: u32,
    /// A read or a write on a call that makes no progress for this long fails
    /// ([`crate::Error::Timeout`]); `None`: wait for ever. Applies to both ends of every
    /// call except event subscriptions. A write waiting for flow-control credit makes
    /// progress when credit comes.
    pub step_timeout: Option<Duration>,
    /// How often live connections' peer certificates are checked again (expiry, trust,
    /// deny list), besides at every TLS reload and at each certificate's expiry.
    pub recheck_interval: Duration,
    /// Use UDP segmentation offload (GSO) when the OS has it.
    pub gso: bool,
    /// UDP socket send and receive buffer size to ask the OS for.
    pub socket_buffer: usize,
    /// Incoming calls queued for the daemon before new streams wait.
    pub incoming_calls_max: usize,
    /// Events queued per subscriber before it is told it lagged.
    pub events_queue: usize,
    /// What a peer may ask for: sizes, counts, lists, step timeout ([`crate::admit`]).
    pub limits: crate::admit::Limits,
}

impl Default for WireConfig {
    fn default() -> Self {
        Self {
            stream_receive_window: 16 << 20,
            receive_window: 64 << 20,
            send_window: 64 << 20,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            msg_len_max: 64 << 10,
            reply_len_max: 16 << 20,
            chunk_len_max: 8 << 20,
            zstd_level: Some(1),
            streams_max: 256,
            identity_connections_max: 64,
            identity_calls_max: 256,
            identity_subscriptions_max: 8,
            subscriptions_max: 128,
            step_timeout: Some(Duration::from_secs(60)),
            recheck_interval: Duration::from_secs(60),
            gso: true,
            socket_buffer: 8 << 20,
            incoming_calls_max: 64,
            events_queue: 1024,
            limits: crate::admit::Limits::default(),
        }
    }
}

impl WireConfig {
    /// The effective keep-alive interval: the configured one, but at most a third of the
    /// idle timeout (quinn negotiates the smaller idle timeout of both peers; ours is
    /// the same everywhere in a cluster).
    pub fn keep_alive_effective(&self) -> Duration {
        self.keep_alive.min(self.idle_timeout / 3)
    }

    /// The largest chunk frame payload accepted: a chunk header and at most the zstd
    /// bound of [`WireConfig::chunk_len_max`] bytes.
    pub fn chunk_frame_len_max(&self) -> u32 {
        let chunk = zstd::zstd_safe::compress_bound(self.chunk_len_max as usize)
            .saturating_add(crate::frame::CHUNK_HEADER_LEN);
        u32::try_from(chunk).unwrap_or(u32::MAX)
    }

    /// The quinn transport configuration.
    pub fn quinn_transport(&self) -> Result<Arc<quinn::TransportConfig>, crate::Error> {
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(self.stream_receive_window.into())
            .receive_window(self.receive_window.into())
            .send_window(self.send_window)
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(self.idle_timeout)
                    .map_err(|_| crate::Error::Config("idle timeout too large".into()))?,
            ))
            .keep_alive_interval(Some(self.keep_alive_effective()))
            .max_concurrent_bidi_streams(self.streams_max.into())
            .max_concurrent_uni_streams(0u32.into())
            .enable_segmentation_offload(self.gso);
        Ok(Arc::new(t))
    }
}
