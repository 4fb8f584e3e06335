//! Feeding the live model from the daemons: [`Feeder`] carries out the fold's effects as
//! tokio tasks that answer through one channel — one task per daemon subscription (events
//! become [`Msg::Event`], its end [`Msg::Disconnected`]; the fold decides when to
//! subscribe again) and one per query ([`Msg::Reply`], at most [`ASKS_IN_FLIGHT`] at
//! once).
//!
//! [`load_snapshot`] drives the model this way without a terminal until every daemon has
//! answered: the one-shot status dump and `--exec metrics` use it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use super::ask::answer;
use super::fold::{init, update, Effect, Msg};
use super::{Live, Ms, Reach};
use crate::client::Client;

/// The clock: milliseconds since the epoch.
pub fn now_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Queries in flight at most (a snapshot of hundreds of volumes asks thousands of
/// questions; they wait their turn instead of opening thousands of streams at once).
pub const ASKS_IN_FLIGHT: usize = 32;

/// Carries out the fold's effects against the cluster, answering with messages `M`.
pub struct Feeder<M> {
    client: Client,
    tx: UnboundedSender<M>,
    subs: HashMap<String, AbortHandle>,
    jobs: Vec<AbortHandle>,
    asks: Arc<Semaphore>,
}

impl<M> std::fmt::Debug for Feeder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder")
            .field("subscriptions", &self.subs.len())
            .finish()
    }
}

impl<M: From<Msg> + Send + 'static> Feeder<M> {
    /// A feeder answering on `tx`.
    pub fn new(client: Client, tx: UnboundedSender<M>) -> Feeder<M> {
        Feeder {
            client,
            tx,
            subs: HashMap::new(),
            jobs: Vec::new(),
            asks: Arc::new(Semaphore::new(ASKS_IN_FLIGHT)),
        }
    }

    /// The client and the channel, for other jobs answering on it.
    pub fn client_and_sender(&self) -> (Client, UnboundedSender<M>) {
        (self.client.clone(), self.tx.clone())
    }

    /// Keeps `h` to abort it with the rest (finished jobs are forgotten).
    pub fn keep(&mut self, h: AbortHandle) {
        self.jobs.retain(|h| !h.is_finished());
        self.jobs.push(h);
    }

    /// Stops every task it started.
    pub fn abort_all(&mut self) {
        for (_, h) in self.subs.drain() {
            h.abort();
        }
        for h in self.jobs.drain(..) {
            h.abort();
        }
    }

    /// Carries out one effect.
    pub fn run(&mut self, e: Effect) {
        let (client, tx) = self.client_and_sender();
        match e {
            Effect::Subscribe { node, delay_ms } => {
                if let Some(old) = self.subs.remove(&node) {
                    old.abort();
                }
                let name = node.clone();
                let h = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    let send = |m: Msg| tx.send(M::from(m)).is_ok();
                    let mut stream = match client.subscribe(&name, Vec::new()).await {
                        Ok(s) => s,
                        Err(e) => {
                            send(Msg::Disconnected {
                                node: name,
                                error: e.to_string(),
                            });
                            return;
                        }
                    };
                    if !send(Msg::Subscribed { node: name.clone() }) {
                        return;
                    }
                    let error = loop {
                        match stream.next().await {
                            Ok(Some(event)) => {
                                if !send(Msg::Event {
                                    node: name.clone(),
                                    event,
                                }) {
                                    return;
                                }
                            }
                            Ok(None) => break "the daemon ended the event stream".to_owned(),
                            Err(e) => break e.to_string(),
                        }
                    };
                    send(Msg::Disconnected { node: name, error });
                });
                self.subs.insert(node, h.abort_handle());
            }
            Effect::Ask { node, seq, ask } => {
                let permits = Arc::clone(&self.asks);
                let h = tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let result = answer(&client, &node, &ask).await;
                    let _ = tx.send(M::from(Msg::Reply {
                        node,
                        seq,
                        ask,
                        result,
                    }));
                });
                self.keep(h.abort_handle());
            }
        }
    }
}

/// How long [`load_snapshot`] waits for the daemons at most.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a model of the cluster without a terminal: subscribes to every daemon, asks
/// what the TUI asks (and more: every archive's restorable snapshots and base), and
/// returns once every node answered or failed. If operations run, it listens `sample`
/// longer so their throughputs are known.
pub async fn load_snapshot(client: &Client, sample: Duration) -> Live {
    let mut m = Live::new(client.cluster());
    m.reconnect = false;
    m.eager = true;
    let (tx, mut rx) = unbounded_channel::<Msg>();
    let mut feeder = Feeder::new(client.clone(), tx);
    m.clock(now_ms());
    for e in init(&mut m) {
        feeder.run(e);
    }
    let t0 = Instant::now();
    let mut settled_at: Option<Instant> = None;
    loop {
        let settled = m.pending == 0 && m.nodes.iter().all(|n| n.reach != Reach::Connecting);
        if settled && settled_at.is_none() {
            settled_at = Some(Instant::now());
        }
        let limit = match settled_at {
            Some(at) if m.tasks.iter().any(|t| t.running()) => at + sample,
            Some(_) => break,
            None => t0 + SNAPSHOT_TIMEOUT,
        };
        let left = limit.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(msg)) => {
                m.clock(now_ms());
                for e in update(&mut m, msg) {
                    feeder.run(e);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    feeder.abort_all();
    m.clock(now_ms());
    m
}
