//! The IO shell around the pure model: terminal, keys, daemons.
//!
//! [`run`] sets up the terminal (raw mode, alternate screen, restored on exit and on
//! panic), then [`run_loop`] waits for the next message — a key from crossterm's event
//! stream, a message from the tasks below, or a clock tick every second — hands it and
//! every message already queued to [`update`], carries out the effects with a [`Runner`]
//! and redraws once. Nothing redraws without a message, so an idle console costs a
//! redraw a second.
//!
//! [`Runner`] carries out effects as tokio tasks that answer through one channel: the
//! live model's subscriptions and queries through a [`Feeder`], and one task per command
//! ([`Msg::CommandDone`], running the exec command exactly as `--exec` does).
//!
//! [`load_snapshot`] is the live model's snapshot ([`crate::model::load_snapshot`])
//! under a screen, for the one-shot status dump.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use ratatui::Terminal;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::debug;
use walb_wire::Role;

use super::model::Model;
use super::update::{init, update, Effect, LiveMsg, Msg};
use super::view;
use crate::client::Client;
use crate::model::feed::Feeder;
pub use crate::model::feed::{now_ms, ASKS_IN_FLIGHT, SNAPSHOT_TIMEOUT};

/// Something that carries out effects (the real [`Runner`], or a test's recorder).
pub trait EffectRunner {
    /// Carries out one effect (never [`Effect::Quit`]).
    fn run(&mut self, e: Effect);
}

/// Carries out effects against the cluster: the live model's through a
/// [`Feeder`], commands as tasks of their own.
pub struct Runner {
    feeder: Feeder<Msg>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("feeder", &self.feeder)
            .finish()
    }
}

impl Runner {
    /// A runner answering on `tx`.
    pub fn new(client: Client, tx: UnboundedSender<Msg>) -> Runner {
        Runner {
            feeder: Feeder::new(client, tx),
        }
    }

    /// Stops every task it started.
    pub fn abort_all(&mut self) {
        self.feeder.abort_all();
    }
}

impl EffectRunner for Runner {
    fn run(&mut self, e: Effect) {
        match e {
            Effect::Live(e) => self.feeder.run(e),
            Effect::Run { id, line, cmd } => {
                let (client, tx) = self.feeder.client_and_sender();
                let h = tokio::spawn(async move {
                    debug!(%line, "running");
                    let result = cmd.run(&client).await.map_err(|e| e.to_string());
                    let _ = tx.send(Msg::CommandDone { id, result });
                });
                self.feeder.keep(h.abort_handle());
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
            Ok(TermEvent::Resize(..)) => Some(Msg::Live(LiveMsg::Tick)),
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
            _ = ticker.tick() => Msg::Live(LiveMsg::Tick),
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

/// The live model of the cluster without a terminal ([`crate::model::load_snapshot`]),
/// under a screen for the status dump.
pub async fn load_snapshot(client: &Client, sample: Duration) -> Model {
    Model::of(crate::model::load_snapshot(client, sample).await)
}
