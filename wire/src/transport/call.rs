//! A call's two ends: [`Peer`] (a dialled daemon), [`Call`] with its [`CallSender`] and
//! [`CallReceiver`] (control messages, bulk chunks and bulk ends on one stream, every step
//! under the step timeout), [`EventStream`] (a subscription) and [`IncomingCall`] (what a
//! serving node hands to the daemon).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::admit::Limits;
use crate::config::WireConfig;
use crate::error::TimedOut;
use crate::frame::{
    encode_end, parse_end, ChunkDecoder, ChunkEncoder, FrameError, FrameHeader, FrameKind,
    CHUNK_HEADER_LEN, FRAME_HEADER_LEN,
};
use crate::identity::PeerId;
use crate::msg::{Event, Message, Reply, Request, Step, Subscribe, WireError};
use crate::quota::Slot;
use crate::Error;

use super::{kind_of, Node, READ_BATCH, RESET_ABANDONED};

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
    pub(super) conn: quinn::Connection,
    pub(super) identity: PeerId,
    pub(super) version: u16,
    pub(super) wire: WireConfig,
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
        let mut call = self.call_raw().await?;
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
        Call::new(send, recv, self.identity.clone(), &self.wire, End::Opened)
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
            Reply::Accepted => {
                call.set_step_timeout(None);
                Ok(EventStream { call })
            }
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

/// Which end of a call we are: it decides how large the messages we read may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// We serve a call a peer opened: we read requests and steps
    /// ([`WireConfig::msg_len_max`]).
    Served,
    /// We opened the call: we read replies, steps and events
    /// ([`WireConfig::reply_len_max`]).
    Opened,
}

impl Call {
    pub(super) fn new(
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        peer: PeerId,
        wire: &WireConfig,
        end: End,
    ) -> Result<Call, Error> {
        let msg_len_max = match end {
            End::Served => wire.msg_len_max,
            End::Opened => wire.reply_len_max,
        };
        Ok(Call {
            peer,
            sender: CallSender {
                send,
                encoder: ChunkEncoder::new(wire.zstd_level)?,
                chunks: 0,
                bytes: 0,
                buffers: Recycler::default(),
                step_timeout: wire.step_timeout,
                watchdog: Watchdog::default(),
                _slot: None,
                version: crate::msg::PROTOCOL_VERSION,
            },
            receiver: CallReceiver {
                recv,
                pending: VecDeque::new(),
                batch: vec![Bytes::new(); READ_BATCH],
                finished: false,
                decoder: ChunkDecoder::new(wire.chunk_len_max)?,
                chunk_frame_len_max: wire.chunk_frame_len_max(),
                msg_len_max,
                chunks: 0,
                bytes: 0,
                buffers: Recycler::default(),
                limits: wire.limits.clone(),
                step_timeout: wire.step_timeout,
                watchdog: Watchdog::default(),
                _slot: None,
            },
        })
    }

    /// Keeps a unit of a quota until both halves of the call are dropped.
    pub(super) fn hold(&mut self, slot: Slot) {
        let slot = Arc::new(slot);
        self.sender._slot = Some(slot.clone());
        self.receiver._slot = Some(slot);
    }

    /// Sets the step timeout of both halves ([`WireConfig::step_timeout`]): a protocol
    /// that knows a step may legitimately take longer (the peer syncs a large file before
    /// answering) widens it for that step.
    pub fn set_step_timeout(&mut self, t: Option<Duration>) {
        self.sender.step_timeout = t;
        self.receiver.step_timeout = t;
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
    pub(super) send: quinn::SendStream,
    encoder: ChunkEncoder,
    chunks: u64,
    bytes: u64,
    buffers: Recycler,
    /// A write that makes no progress for this long fails.
    step_timeout: Option<Duration>,
    watchdog: Watchdog,
    /// The quota unit of a served call, shared with the receiver.
    _slot: Option<Arc<Slot>>,
    /// The connection's protocol version: replies are sent in the form it knows
    /// ([`Reply::for_version`]).
    pub(super) version: u16,
}

impl CallSender {
    /// Sends a control message.
    pub async fn send(&mut self, msg: &Message) -> Result<(), Error> {
        self.write_postcard(FrameKind::Msg, msg).await
    }

    /// Sends a reply.
    pub async fn reply(&mut self, reply: Reply) -> Result<(), Error> {
        self.send(&Message::Reply(reply.for_version(self.version)))
            .await
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
        self.write_all_chunks(&mut [frame], "sending a bulk chunk")
            .await?;
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
        self.write_all_chunks(&mut parts, "sending a bulk chunk")
            .await?;
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
        self.write_all_chunks(&mut parts, "sending a bulk chunk")
            .await?;
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

    /// Resolves once the peer will read no more of this call: it stopped or dropped its
    /// end, or the connection closed (a server learns that its caller left).
    pub fn peer_gone(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let stopped = self.send.stopped();
        async move {
            let _ = stopped.await;
        }
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

    pub(super) async fn write_postcard<T: serde::Serialize>(
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
        let what = match kind {
            FrameKind::End => "ending a bulk",
            _ => "sending a message",
        };
        self.write_all(&header, what).await?;
        self.write_all(payload, what).await
    }

    /// `write_all`, failing when no byte leaves for the step timeout.
    async fn write_all(&mut self, mut buf: &[u8], what: &'static str) -> Result<(), Error> {
        let Some(t) = self.step_timeout else {
            return Ok(self.send.write_all(buf).await?);
        };
        while !buf.is_empty() {
            let n = self.watchdog.run(t, what, self.send.write(buf)).await??;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// `write_all_chunks` (no copy), failing when no byte leaves for the step timeout.
    async fn write_all_chunks(
        &mut self,
        mut bufs: &mut [Bytes],
        what: &'static str,
    ) -> Result<(), Error> {
        let Some(t) = self.step_timeout else {
            return Ok(self.send.write_all_chunks(bufs).await?);
        };
        while !bufs.is_empty() {
            let written = self
                .watchdog
                .run(t, what, self.send.write_chunks(bufs))
                .await??;
            bufs = &mut bufs[written.chunks..];
        }
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
    /// An empty buffer of at least `cap` bytes, reused if a kept one is free (the
    /// sender's: it has the bytes in hand).
    fn get(&mut self, cap: usize) -> BytesMut {
        let mut b = self.reuse();
        if b.capacity() < cap {
            b = BytesMut::with_capacity(cap);
        }
        b
    }

    /// The free kept buffer that held the largest frame, emptied; or a new empty one.
    /// Free buffers beyond it and `SPARE_MAX` spares are let go.
    fn reuse(&mut self) -> BytesMut {
        let best = (0..self.held.len())
            .filter(|&i| self.held[i].is_unique())
            .max_by_key(|&i| self.held[i].len());
        let reuse = best.and_then(|i| self.held.remove(i));
        let mut spare = 0;
        self.held.retain(|b| {
            if !b.is_unique() {
                return true;
            }
            spare += 1;
            spare <= SPARE_MAX
        });
        match reuse.map(Bytes::try_into_mut) {
            Some(Ok(mut b)) => {
                b.clear();
                b
            }
            _ => BytesMut::new(),
        }
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
    /// Largest chunk frame payload.
    chunk_frame_len_max: u32,
    /// Largest message frame payload (other kinds than chunks): small on a served call,
    /// larger on a call we opened (replies).
    msg_len_max: u32,
    chunks: u64,
    bytes: u64,
    buffers: Recycler,
    /// The bounds every step we hand over keeps.
    limits: Limits,
    /// A read that makes no progress for this long fails.
    step_timeout: Option<Duration>,
    watchdog: Watchdog,
    /// The quota unit of a served call, shared with the sender.
    _slot: Option<Arc<Slot>>,
}

impl CallReceiver {
    /// The next frame; `None` if the peer finished the stream at a frame boundary. Every
    /// step has been admitted ([`crate::admit::step`]).
    pub async fn next(&mut self) -> Result<Option<Received>, Error> {
        self.next_for("waiting for a message or a bulk chunk").await
    }

    async fn next_for(&mut self, what: &'static str) -> Result<Option<Received>, Error> {
        let Some((kind, payload)) = self.read_frame(what).await? else {
            return Ok(None);
        };
        match kind {
            FrameKind::Msg => {
                let msg = postcard::from_bytes(&payload).map_err(Error::Decode)?;
                if let Message::Step(step) = &msg {
                    crate::admit::step(step, &self.limits).map_err(Error::Refused)?;
                }
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
        self.msg_for("waiting for a message").await
    }

    async fn msg_for(&mut self, what: &'static str) -> Result<Message, Error> {
        match self.next_for(what).await? {
            Some(Received::Msg(Message::Error(e))) => Err(Error::Remote(e)),
            Some(Received::Msg(m)) => Ok(m),
            Some(other) => Err(Error::Unexpected(format!(
                "expected a message, got {}",
                other.describe()
            ))),
            None => Err(Error::StreamEnded("expected a message")),
        }
    }

    /// The next message, which must be a reply (queue notes before it are skipped: see
    /// [`CallReceiver::reply_queued`]).
    pub async fn reply(&mut self) -> Result<Reply, Error> {
        self.reply_queued(|_| ()).await
    }

    /// The next message, which must be a reply; every [`Step::Queued`] before it (the
    /// request waits for a foreground slot) is handed to `queued`.
    pub async fn reply_queued(
        &mut self,
        mut queued: impl FnMut(&crate::msg::QueueNote),
    ) -> Result<Reply, Error> {
        loop {
            match self.msg_for("waiting for a reply").await? {
                Message::Reply(r) => return Ok(r),
                Message::Step(Step::Queued(note)) => queued(&note),
                other => {
                    return Err(Error::Unexpected(format!(
                        "expected a reply, got {}",
                        kind_of(&other)
                    )))
                }
            }
        }
    }

    /// The next message, which must be a reply or a [`Step::Queued`].
    pub async fn reply_or_queued(&mut self) -> Result<Result<Reply, crate::msg::QueueNote>, Error> {
        match self.msg_for("waiting for a reply").await? {
            Message::Reply(r) => Ok(Ok(r)),
            Message::Step(Step::Queued(note)) => Ok(Err(note)),
            other => Err(Error::Unexpected(format!(
                "expected a reply, got {}",
                kind_of(&other)
            ))),
        }
    }

    /// The next message, which must be a step (admitted, see [`CallReceiver::next`]).
    pub async fn step(&mut self) -> Result<Step, Error> {
        match self.msg_for("waiting for a step").await? {
            Message::Step(s) => Ok(s),
            other => Err(Error::Unexpected(format!(
                "expected a step, got {}",
                kind_of(&other)
            ))),
        }
    }

    /// The next bulk chunk; `None` at the bulk's end (whose counts were checked).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        match self.next_for("waiting for a bulk chunk").await? {
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

    /// The payload of a served call's first frame, which must be a message (not decoded:
    /// [`crate::intake::request`] does that).
    pub(super) async fn opening(&mut self) -> Result<Bytes, Error> {
        match self.read_frame("waiting for the request").await? {
            Some((FrameKind::Msg, payload)) => Ok(payload),
            Some((kind, _)) => Err(Error::Unexpected(format!(
                "a call must open with a request message, got a {kind:?} frame"
            ))),
            None => Err(Error::StreamEnded("expected a request")),
        }
    }

    pub(super) async fn read_postcard<T: serde::de::DeserializeOwned>(
        &mut self,
        want: FrameKind,
    ) -> Result<T, Error> {
        match self.read_frame("negotiating").await? {
            Some((kind, payload)) if kind == want => {
                postcard::from_bytes(&payload).map_err(Error::Decode)
            }
            Some((kind, _)) => Err(Error::Unexpected(format!(
                "expected a {want:?} frame, got {kind:?}"
            ))),
            None => Err(Error::StreamEnded("during negotiation")),
        }
    }

    async fn read_frame(
        &mut self,
        what: &'static str,
    ) -> Result<Option<(FrameKind, Bytes)>, Error> {
        tokio::task::consume_budget().await;
        let mut head = [0u8; FRAME_HEADER_LEN];
        match self.take(FRAME_HEADER_LEN, what).await? {
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
        let h = FrameHeader::parse(head, u32::MAX)?;
        let len_max = match h.kind {
            FrameKind::Chunk => self.chunk_frame_len_max,
            _ => self.msg_len_max,
        };
        if h.len > len_max {
            return Err(FrameError::TooLarge {
                len: h.len,
                len_max,
            }
            .into());
        }
        match self.take(h.len as usize, what).await? {
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
    /// is returned without copying; otherwise its pieces are copied into a buffer that
    /// grows with what has arrived — a free recycled one, else a new one (not
    /// zero-filled) — and never from the announced length alone.
    async fn take(&mut self, n: usize, what: &'static str) -> Result<Result<Bytes, usize>, Error> {
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
                    if !self.fill(what).await? {
                        return Ok(Err(0));
                    }
                }
            }
        }
        let mut out = self.buffers.reuse();
        loop {
            let arrived: usize = self.pending.iter().map(Bytes::len).sum();
            grow(&mut out, n, arrived);
            while out.len() < n {
                let Some(front) = self.pending.front_mut() else {
                    break;
                };
                let k = (n - out.len()).min(front.len());
                out.put_slice(&front[..k]);
                front.advance(k);
                if front.is_empty() {
                    self.pending.pop_front();
                }
            }
            if out.len() == n {
                break;
            }
            if !self.fill(what).await? {
                return Ok(Err(out.len()));
            }
        }
        let out = out.freeze();
        self.buffers.keep(&out);
        Ok(Ok(out))
    }

    /// Moves more received pieces from quinn; `false` once the peer finished the stream.
    /// Fails when nothing arrives for the step timeout.
    async fn fill(&mut self, what: &'static str) -> Result<bool, Error> {
        if self.finished {
            return Ok(false);
        }
        let got = match self.step_timeout {
            None => self.recv.read_chunks(&mut self.batch).await?,
            Some(t) => {
                self.watchdog
                    .run(t, what, self.recv.read_chunks(&mut self.batch))
                    .await??
            }
        };
        match got {
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

/// The step timeout of one half of a call, without a timer per read or write: one timer,
/// armed once, that may fire early (it is then moved to the current deadline), so that
/// the timer is touched at most once per timeout period whatever the number of reads.
#[derive(Default)]
struct Watchdog {
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Watchdog {
    /// Runs `fut`; fails if it does not finish within `t` from now.
    async fn run<F: std::future::Future>(
        &mut self,
        t: Duration,
        what: &'static str,
        fut: F,
    ) -> Result<F::Output, Error> {
        let deadline = tokio::time::Instant::now() + t;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = sleep.as_mut() => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::Timeout(TimedOut::inactive(what, t)));
                    }
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// Makes room in `out` (holding part of an `n`-byte frame) for the `arrived` bytes at
/// hand, at least doubling so that a frame costs few reallocations: the capacity stays
/// within twice the bytes of the frame that have arrived.
fn grow(out: &mut BytesMut, n: usize, arrived: usize) {
    let want = (out.len() + arrived).min(n);
    if want <= out.capacity() {
        return;
    }
    let target = want.max(out.capacity().saturating_mul(2)).min(n);
    out.reserve(target - out.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_buffer_grows_with_what_arrived() {
        let n = 8 << 20;
        let mut out = BytesMut::new();
        grow(&mut out, n, 100);
        assert!(
            out.capacity() >= 100 && out.capacity() < 4096,
            "{}",
            out.capacity()
        );
        out.put_slice(&[0; 100]);
        // Each step at least doubles, never past twice what has arrived.
        let mut arrived = 100;
        while out.len() < n {
            let more = 1200.min(n - out.len());
            grow(&mut out, n, more);
            out.put_slice(&vec![0; more]);
            arrived += more;
            assert!(
                out.capacity() <= 2 * arrived,
                "{} for {arrived}",
                out.capacity()
            );
        }
        assert_eq!(out.len(), n);
    }
}
