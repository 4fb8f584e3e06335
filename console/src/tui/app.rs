//! The IO shell around the pure model: terminal, keys, daemons.
//!
//! [`run`] sets up the terminal (raw mode, alternate screen, restored on exit and on
//! panic), then [`run_loop`] waits for the next message — a key from crossterm's event
//! stream, a message from the tasks below, or a clock tick every second — hands it and
//! every message already queued to [`update`], carries out the effects with a [`Runner`]
//! and redraws once. Nothing redraws without a message, so an idle console costs a
//! redraw a second.
//!
//! [`Runner`] carries out effects as tokio tasks that answer through one channel: one
//! task per daemon subscription (events become [`Msg::Event`], its end
//! [`Msg::Disconnected`]; the model decides when to subscribe again), one per query
//! ([`Msg::Reply`]) and one per command ([`Msg::CommandDone`], running the exec command
//! exactly as `--exec` does).
//!
//! [`load_snapshot`] drives the same model without a terminal until every daemon has
//! answered: the one-shot status dump and `--exec metrics` use it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use ratatui::Terminal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tracing::debug;
use walb_wire::Role;

use super::model::{Model, Ms, Reach};
use super::update::{init, update, Answer, Ask, AskError, Effect, Msg};
use super::view;
use crate::client::{Client, ClientError};

/// The clock: milliseconds since the epoch.
pub fn now_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Something that carries out effects (the real [`Runner`], or a test's recorder).
pub trait EffectRunner {
    /// Carries out one effect (never [`Effect::Quit`]).
    fn run(&mut self, e: Effect);
}

/// Queries in flight at most (a snapshot of hundreds of volumes asks thousands of
/// questions; they wait their turn instead of opening thousands of streams at once).
pub const ASKS_IN_FLIGHT: usize = 32;

/// Carries out effects against the cluster.
pub struct Runner {
    client: Client,
    tx: UnboundedSender<Msg>,
    subs: HashMap<String, AbortHandle>,
    jobs: Vec<AbortHandle>,
    asks: Arc<Semaphore>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("subscriptions", &self.subs.len())
            .finish()
    }
}

fn ask_error(e: ClientError) -> AskError {
    AskError {
        code: e.code(),
        message: e.to_string(),
    }
}

/// Answers one [`Ask`] with the client.
pub async fn answer(client: &Client, node: &str, ask: &Ask) -> Result<Answer, AskError> {
    let r = match ask {
        Ask::Hello => {
            let (software, _) = client.version(node).await.map_err(ask_error)?;
            let pid = client.pid(node).await.map_err(ask_error)?;
            let status = client.status(node, None).await.unwrap_or_default();
            Answer::Hello {
                version: software,
                pid,
                status,
            }
        }
        Ask::Vols => Answer::Names(client.vols(node).await.map_err(ask_error)?),
        Ask::State { vol } => Answer::State(client.state(node, vol).await.map_err(ask_error)?),
        Ask::LogUsage => Answer::Lines(client.log_usage(node, None).await.map_err(ask_error)?),
        Ask::TsDelta => Answer::Lines(client.ts_delta(node).await.map_err(ask_error)?),
        Ask::LatestSnap { vol } => Answer::Snaps(
            client
                .latest_snap(node, vol.as_deref())
                .await
                .map_err(ask_error)?,
        ),
        Ask::Overflow { vol } => {
            Answer::Bool(client.is_overflow(node, vol).await.map_err(ask_error)?)
        }
        Ask::ArchiveList { vol } => Answer::Names(
            client
                .archive_info_list(node, vol)
                .await
                .map_err(ask_error)?,
        ),
        Ask::Queue { vol, archive } => {
            let diffs = client
                .diffs(node, vol, None, None, Some(archive))
                .await
                .map_err(ask_error)?;
            let send_error = client
                .is_wdiff_send_error(node, vol, archive)
                .await
                .map_err(ask_error)?;
            Answer::Queue { diffs, send_error }
        }
        Ask::Diffs { vol } => Answer::Diffs(
            client
                .diffs(node, vol, None, None, None)
                .await
                .map_err(ask_error)?,
        ),
        Ask::Restorable { vol } => Answer::Snaps(
            client
                .restorable(node, vol, false)
                .await
                .map_err(ask_error)?,
        ),
        Ask::Base { vol } => Answer::Base(client.base(node, vol).await.map_err(ask_error)?),
        Ask::Restored { vol } => {
            Answer::Restored(client.restored(node, vol).await.map_err(ask_error)?)
        }
    };
    Ok(r)
}

impl Runner {
    /// A runner answering on `tx`.
    pub fn new(client: Client, tx: UnboundedSender<Msg>) -> Runner {
        Runner {
            client,
            tx,
            subs: HashMap::new(),
            jobs: Vec::new(),
            asks: Arc::new(Semaphore::new(ASKS_IN_FLIGHT)),
        }
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
}

impl EffectRunner for Runner {
    fn run(&mut self, e: Effect) {
        self.jobs.retain(|h| !h.is_finished());
        let (client, tx) = (self.client.clone(), self.tx.clone());
        match e {
            Effect::Subscribe { node, delay_ms } => {
                if let Some(old) = self.subs.remove(&node) {
                    old.abort();
                }
                let name = node.clone();
                let h = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    let mut stream = match client.subscribe(&name, Vec::new()).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Msg::Disconnected {
                                node: name,
                                error: e.to_string(),
                            });
                            return;
                        }
                    };
                    if tx.send(Msg::Subscribed { node: name.clone() }).is_err() {
                        return;
                    }
                    let error = loop {
                        match stream.next().await {
                            Ok(Some(event)) => {
                                if tx
                                    .send(Msg::Event {
                                        node: name.clone(),
                                        event,
                                    })
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Ok(None) => break "the daemon ended the event stream".to_owned(),
                            Err(e) => break e.to_string(),
                        }
                    };
                    let _ = tx.send(Msg::Disconnected { node: name, error });
                });
                self.subs.insert(node, h.abort_handle());
            }
            Effect::Ask { node, seq, ask } => {
                let permits = Arc::clone(&self.asks);
                let h = tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let result = answer(&client, &node, &ask).await;
                    let _ = tx.send(Msg::Reply {
                        node,
                        seq,
                        ask,
                        result,
                    });
                });
                self.jobs.push(h.abort_handle());
            }
            Effect::Run { id, line, cmd } => {
                let h = tokio::spawn(async move {
                    debug!(%line, "running");
                    let result = cmd.run(&client).await.map_err(|e| e.to_string());
                    let _ = tx.send(Msg::CommandDone { id, result });
                });
                self.jobs.push(h.abort_handle());
            }
            Effect::Quit => {}
        }
    }
}

/// Why the terminal UI stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// How the terminal UI starts.
#[derive(Clone, Debug, Default)]
pub struct TuiConfig {
    /// Read-only, and why (`--read-only`).
    pub read_only: Option<String>,
    /// No colours (`NO_COLOR`).
    pub plain: bool,
}

/// True when `NO_COLOR` asks for no colours (set and not empty).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// A model for `client`'s cluster, read-only if asked or if the console's certificate is
/// a viewer's.
pub fn model_for(client: &Client, cfg: &TuiConfig) -> Model {
    let mut m = Model::new(client.cluster());
    m.plain = cfg.plain;
    if client.identity().role() == Role::Viewer {
        m.set_read_only(format!("{} is a viewer certificate", client.identity()));
    } else if let Some(why) = &cfg.read_only {
        m.set_read_only(why.clone());
    }
    m
}

/// Runs the terminal UI until `q`.
pub async fn run(client: Client, cfg: TuiConfig) -> Result<(), TuiError> {
    let mut m = model_for(&client, &cfg);
    let (tx, mut rx) = unbounded_channel();
    let mut runner = Runner::new(client, tx);
    let mut terminal = ratatui::try_init()?;
    let keys = EventStream::new().filter_map(|ev| {
        std::future::ready(match ev {
            Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Some(Msg::Key(k)),
            Ok(TermEvent::Resize(..)) => Some(Msg::Tick),
            _ => None,
        })
    });
    let res = run_loop(
        &mut terminal,
        &mut m,
        &mut rx,
        Box::pin(keys),
        &mut runner,
        Duration::from_secs(1),
    )
    .await;
    ratatui::restore();
    runner.abort_all();
    res.map_err(TuiError::from)
}

/// The most messages handled before a redraw (keeps the screen moving under a flood).
pub const BATCH_MAX: usize = 1024;

/// The loop: wait for a message, update, carry out effects, redraw. Returns after
/// [`Effect::Quit`].
pub async fn run_loop<B: Backend, K: Stream<Item = Msg> + Unpin>(
    terminal: &mut Terminal<B>,
    m: &mut Model,
    rx: &mut UnboundedReceiver<Msg>,
    mut keys: K,
    runner: &mut dyn EffectRunner,
    tick: Duration,
) -> std::io::Result<()> {
    m.clock(now_ms());
    for e in init(m) {
        runner.run(e);
    }
    terminal.draw(|f| view::draw(m, f))?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            biased;
            Some(k) = keys.next() => k,
            Some(msg) = rx.recv() => msg,
            _ = ticker.tick() => Msg::Tick,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        for msg in batch {
            m.clock(now_ms());
            for e in update(m, msg) {
                match e {
                    Effect::Quit => m.quit = true,
                    e => runner.run(e),
                }
            }
        }
        if m.quit {
            return Ok(());
        }
        terminal.draw(|f| view::draw(m, f))?;
    }
}

/// How long [`load_snapshot`] waits for the daemons at most.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a model of the cluster without a terminal: subscribes to every daemon, asks
/// what the TUI asks (and more: every archive's restorable snapshots and base), and
/// returns once every node answered or failed. If operations run, it listens `sample`
/// longer so their throughputs are known.
pub async fn load_snapshot(client: &Client, sample: Duration) -> Model {
    let mut m = Model::new(client.cluster());
    m.reconnect = false;
    m.eager = true;
    let (tx, mut rx) = unbounded_channel();
    let mut runner = Runner::new(client.clone(), tx);
    m.clock(now_ms());
    for e in init(&mut m) {
        runner.run(e);
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
                    if !matches!(e, Effect::Quit | Effect::Run { .. }) {
                        runner.run(e);
                    }
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    runner.abort_all();
    m.clock(now_ms());
    m
}
