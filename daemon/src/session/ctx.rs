//! What every role's calls run in: the daemon's context ([`Ctx`]: node, base directory,
//! foreground slots, clock, shutdown), the caller a queued task serves ([`Caller`]), the
//! calls a daemon makes to its peers ([`Ctx::call_first_reply`], [`Ctx::connect`]), and
//! the [`Handler`] a role plugs into the server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use walb_wire::msg::{
    ErrorCode, Event, QueueNote, Reply, Request, Step, WireError, PROTOCOL_VERSION_QUEUE,
};
use walb_wire::{Call, CallSender, IncomingCall, Node, Peer, PeerId, Role};

use crate::clock::Clock;
use crate::fgq::{Admission, FgSlots, QueueBounds, Turn};
use crate::peers::PeerAddr;
use crate::persist::BaseDir;
use crate::vol::Publish;

/// What every role's handler gets: the node, the base directory, limits, shutdown.
pub struct Ctx {
    /// The QUIC node (dials peers, publishes events).
    pub node: Node,
    /// The locked base directory.
    pub base: BaseDir,
    /// This daemon's role.
    pub role: Role,
    /// This daemon's id.
    pub id: String,
    /// Foreground task slots (`--fg`) and their queue.
    pub fg: Arc<FgSlots>,
    /// Background workers (`--bg`).
    pub bg: usize,
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
    force: AtomicBool,
    /// When the daemon started (on [`Ctx::clock`]).
    pub started: Instant,
    /// The clock every timer, backoff, policy and snapshot timestamp reads.
    pub clock: Clock,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("role", &self.role)
            .field("id", &self.id)
            .finish()
    }
}

impl Ctx {
    /// A context around an already bound node (tests build daemons in-process this way).
    pub fn new(node: Node, base: BaseDir, role: Role, id: &str, fg: usize, bg: usize) -> Arc<Ctx> {
        Ctx::with_clock(node, base, role, id, fg, bg, Clock::real())
    }

    /// A context reading `clock` (a test's [`Clock::manual`]).
    pub fn with_clock(
        node: Node,
        base: BaseDir,
        role: Role,
        id: &str,
        fg: usize,
        bg: usize,
        clock: Clock,
    ) -> Arc<Ctx> {
        let slots = FgSlots::new(&format!("{role} {id}"), fg, QueueBounds::default());
        Ctx::make(node, base, role, id, slots, bg, clock)
    }

    /// A context whose foreground queue has `bounds`.
    pub fn with_queue(
        node: Node,
        base: BaseDir,
        role: Role,
        id: &str,
        fg: usize,
        bg: usize,
        bounds: QueueBounds,
    ) -> Arc<Ctx> {
        let slots = FgSlots::new(&format!("{role} {id}"), fg, bounds);
        Ctx::make(node, base, role, id, slots, bg, Clock::real())
    }

    fn make(
        node: Node,
        base: BaseDir,
        role: Role,
        id: &str,
        fg: Arc<FgSlots>,
        bg: usize,
        clock: Clock,
    ) -> Arc<Ctx> {
        Arc::new(Ctx {
            fg,
            node,
            base,
            role,
            id: id.to_owned(),
            bg: bg.max(1),
            shutdown: CancellationToken::new(),
            force: AtomicBool::new(false),
            started: clock.instant(),
            clock,
        })
    }

    /// How long the daemon has been running (on [`Ctx::clock`]).
    pub fn uptime(&self) -> Duration {
        self.clock.instant().saturating_duration_since(self.started)
    }

    /// A publisher of events to this node's subscribers.
    pub fn publisher(&self) -> Publish {
        let node = self.node.clone();
        Arc::new(move |e: Event| node.publish(e))
    }

    /// What peers may ask for ([`walb_wire::Limits`], from the options).
    pub fn limits(&self) -> &walb_wire::Limits {
        &self.node.wire_config().limits
    }

    /// How long a call waits for a peer's acknowledgement of a bulk it sent: the peer
    /// answers only once what it received is validated and durable, which takes longer
    /// than a step (the step timeout, at least [`ACK_WAIT`]); `None`: for ever.
    pub fn ack_timeout(&self) -> Option<Duration> {
        self.node
            .wire_config()
            .step_timeout
            .map(|t| t.max(ACK_WAIT))
    }

    /// The step timeout of this daemon's calls (`--step-timeout`).
    pub fn step_timeout(&self) -> Option<Duration> {
        self.node.wire_config().step_timeout
    }

    /// Takes a foreground slot or refuses with `busy` (work that is retried on its own).
    pub fn fg_permit(&self) -> Result<OwnedSemaphorePermit, WireError> {
        self.fg.try_take()
    }

    /// The foreground slots and the requests in line, for the status.
    pub fn fg_status(&self) -> walb_wire::msg::FgStatus {
        walb_wire::msg::FgStatus {
            running: self.fg.running(),
            slots: self.fg.slots(),
            queued: self.fg.waiting(),
        }
    }

    /// A foreground slot for `op` of `vol`. With a `caller` (a request an operator's
    /// command is waiting on), a task that finds every slot taken waits its turn in the
    /// queue ([`crate::fgq`]): the caller is sent [`Step::Queued`] notes (protocol 3) and
    /// subscribers [`Event::Queue`]; a caller that leaves leaves the queue. Without one
    /// (background work, which is retried on its own), it is a slot now or `busy`.
    pub async fn fg_slot(
        &self,
        caller: Option<&mut Caller<'_>>,
        vol: &str,
        op: &str,
    ) -> Result<OwnedSemaphorePermit, WireError> {
        let Some(caller) = caller else {
            return self.fg_permit();
        };
        let mut w = match self.fg.enter(&caller.peer.to_string(), vol, op)? {
            Admission::Now(p) => return Ok(p),
            Admission::Wait(w) => w,
        };
        let first = w.note();
        info!(
            peer = %caller.peer,
            vol,
            op,
            ahead = first.ahead,
            "every foreground slot is taken: queued"
        );
        let publish = |ahead: Option<u32>, n: &QueueNote| {
            self.node.publish(Event::Queue {
                vol: vol.to_owned(),
                op: op.to_owned(),
                ahead,
                running: n.running,
                slots: n.slots,
            })
        };
        let failed = |error: &WireError| {
            self.node.publish(Event::Failed {
                vol: vol.to_owned(),
                op: op.to_owned(),
                error: error.message.clone(),
            })
        };
        let gone = caller.call.peer_gone();
        tokio::pin!(gone);
        let mut note = Ok(first);
        loop {
            let r = match note {
                Ok(n) => {
                    publish(Some(n.ahead), &n);
                    caller.note(n).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                failed(&e);
                return Err(e);
            }
            let turn = tokio::select! {
                t = w.next() => t,
                _ = &mut gone => Err(WireError::new(
                    ErrorCode::Cancelled,
                    format!("{} left the queue of {} {}", caller.peer, self.role, self.id),
                )),
                _ = self.shutdown.cancelled() => Err(WireError::new(
                    ErrorCode::Cancelled,
                    format!("{} {} is shutting down", self.role, self.id),
                )),
            };
            note = match turn {
                Ok(Turn::Granted(p)) => {
                    info!(peer = %caller.peer, vol, op, "left the queue with a slot");
                    publish(None, &w.note());
                    return Ok(p);
                }
                Ok(Turn::Waiting(n)) => Ok(n),
                Err(e) => Err(e),
            };
        }
    }

    /// True once shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// True when shutdown was forced (running transfers abort).
    pub fn is_force_shutdown(&self) -> bool {
        self.force.load(Ordering::Relaxed)
    }

    /// Starts a shutdown (`force`: abort running work).
    pub fn begin_shutdown(&self, force: bool) {
        if force {
            self.force.store(true, Ordering::Relaxed);
        }
        self.shutdown.cancel();
    }

    /// Opens `request` on the daemon `to` (its id pinned) and waits for its reply: the
    /// first answer (the reply, or a note that the request waits in the peer's queue for a
    /// foreground slot) within `limit`; then, while it waits there, for as long as the
    /// peer keeps it (its `--fg-queue-wait`) and the `caller` we serve stays. The peer's
    /// queue notes go on to that caller, so that an operator sees where the request
    /// stands.
    ///
    /// A pooled connection may lead to a daemon that was killed since: QUIC notices only at
    /// the idle timeout, and a call on it would hang that long. So when the pooled
    /// connection fails or gives no answer within [`STALE_PROBE`], it is closed and the
    /// call made once more on a fresh connection. (A daemon answers at once; only a dead
    /// one is that slow.)
    pub async fn call_first_reply(
        &self,
        to: &PeerAddr,
        request: Request,
        limit: Duration,
        mut caller: Option<&mut Caller<'_>>,
    ) -> Result<(Call, Reply), CallError> {
        let addr = &to.addr;
        let attempt = |peer: Peer, request: Request| async move {
            let mut call = peer.call(request).await?;
            let first = call.receiver.reply_or_queued().await?;
            Ok::<_, walb_wire::Error>((call, first))
        };
        let connect = || async {
            tokio::time::timeout(limit, self.connect(to))
                .await
                .map_err(|_| CallError::Unreachable("timed out".into()))?
                .map_err(|e| CallError::Unreachable(format!("{e:#}")))
        };
        let peer = connect().await?;
        let first = match tokio::time::timeout(
            STALE_PROBE.min(limit),
            attempt(peer.clone(), request.clone()),
        )
        .await
        {
            Ok(Ok(r)) => Some(r),
            Ok(Err(walb_wire::Error::Remote(e))) => {
                return Err(CallError::Wire(walb_wire::Error::Remote(e)))
            }
            Ok(Err(e)) => {
                warn!(%addr, "connection broken ({e}): dialling again");
                None
            }
            Err(_) => {
                warn!(%addr, "no answer in {STALE_PROBE:?}: dialling again");
                None
            }
        };
        let (mut call, mut first) = match first {
            Some(r) => r,
            None => {
                peer.close();
                let peer = connect().await?;
                match tokio::time::timeout(limit, attempt(peer, request)).await {
                    Ok(r) => r.map_err(CallError::Wire)?,
                    Err(_) => return Err(CallError::Unreachable("no answer".into())),
                }
            }
        };
        loop {
            let note = match first {
                Ok(reply) => return Ok((call, reply)),
                Err(note) => note,
            };
            debug!(%addr, ahead = note.ahead, "waiting in the queue of {}", note.queue);
            if let Some(c) = caller.as_deref_mut() {
                c.note(note)
                    .await
                    .map_err(|e| CallError::Wire(walb_wire::Error::Remote(e)))?;
            }
            let gone = async {
                match caller.as_deref() {
                    Some(c) => c.call.peer_gone().await,
                    None => std::future::pending().await,
                }
            };
            first = tokio::select! {
                r = call.receiver.reply_or_queued() => r.map_err(CallError::Wire)?,
                _ = gone => {
                    call.sender.reset();
                    return Err(CallError::Wire(walb_wire::Error::Remote(WireError::new(
                        ErrorCode::Cancelled,
                        format!("our caller left while we waited in the queue of {}", to.id),
                    ))));
                }
            };
        }
    }

    /// Connects to the daemon `to` and checks that its certificate carries the id
    /// expected: a daemon never talks to whoever happens to answer at an address.
    pub async fn connect(&self, to: &PeerAddr) -> Result<Peer> {
        let addr = &to.addr;
        let sa = resolve(addr).await?;
        let peer = self
            .node
            .connect(sa)
            .await
            .with_context(|| format!("connecting to {to}"))?;
        if peer.identity() != &to.id {
            bail!(
                "{addr} is {}, expected {} (check the address and the id)",
                peer.identity(),
                to.id
            );
        }
        Ok(peer)
    }
}

/// Whom a task waiting for a foreground slot serves: the peer of the call it answers,
/// told where it stands in the queue.
pub struct Caller<'a> {
    /// Who asked.
    pub peer: &'a PeerId,
    /// The protocol version of its connection (notes need [`PROTOCOL_VERSION_QUEUE`]).
    pub version: u16,
    /// Our half of its call.
    pub call: &'a mut CallSender,
}

impl Caller<'_> {
    /// Tells the caller where its request stands (a version-2 caller is told nothing; it
    /// waits in silence, within its own step timeout).
    pub async fn note(&mut self, n: QueueNote) -> Result<(), WireError> {
        if self.version < PROTOCOL_VERSION_QUEUE {
            return Ok(());
        }
        self.call
            .step(Step::Queued(n))
            .await
            .map_err(|e| e.to_wire())
    }
}

/// The least time a peer is given to acknowledge a bulk (validate, sync) before the call
/// fails ([`Ctx::ack_timeout`]).
pub const ACK_WAIT: Duration = Duration::from_secs(600);

/// How long a pooled connection may take to answer a call before it is taken for dead.
pub const STALE_PROBE: Duration = Duration::from_secs(5);

/// Why [`Ctx::call_first_reply`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection, or no answer on a fresh one.
    #[error("{0}")]
    Unreachable(String),
    /// The call failed (a refusal is [`walb_wire::Error::Remote`]).
    #[error(transparent)]
    Wire(walb_wire::Error),
}

/// Resolves HOST:PORT (or a bare port, on localhost) to one socket address.
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    let full = if addr.parse::<u16>().is_ok() {
        format!("127.0.0.1:{addr}")
    } else {
        addr.to_owned()
    };
    let mut addrs = tokio::net::lookup_host(&full)
        .await
        .with_context(|| format!("resolving {addr}"))?;
    addrs
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

/// What a role plugs into the server.
pub trait Handler: Send + Sync + 'static {
    /// Answers one authorized call (everything but host-type, pid, version and shutdown).
    fn handle(self: Arc<Self>, call: IncomingCall) -> impl Future<Output = ()> + Send;
    /// Stops background work at shutdown (`force`: abort running transfers).
    fn shutdown(self: Arc<Self>, force: bool) -> impl Future<Output = ()> + Send;
}
