//! The TUI's messages and effects: the live model's ([`crate::model::Msg`],
//! [`crate::model::Effect`]) plus keys, commands the console runs, and quitting.

use ratatui::crossterm::event::KeyEvent;

use super::model::Model;
use crate::exec::{ExecCmd, Outcome};
use crate::model::fold;
pub use crate::model::fold::{Effect as LiveEffect, Msg as LiveMsg};
use crate::model::{Ask, Live};

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    /// A key.
    Key(KeyEvent),
    /// A daemon's subscription, event or reply, or the clock (for the live model).
    Live(LiveMsg),
    /// A command the console ran ended.
    CommandDone {
        /// Its task id.
        id: u64,
        /// Its outcome, or the error message.
        result: Result<Outcome, String>,
    },
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Subscribe to a daemon or ask it something (for the live model).
    Live(LiveEffect),
    /// Run an exec command; answer with [`Msg::CommandDone`].
    Run {
        /// Its task id.
        id: u64,
        /// The command line.
        line: String,
        /// The command.
        cmd: ExecCmd,
    },
    /// Leave.
    Quit,
}

impl From<LiveEffect> for Effect {
    fn from(e: LiveEffect) -> Effect {
        Effect::Live(e)
    }
}

impl From<LiveMsg> for Msg {
    fn from(m: LiveMsg) -> Msg {
        Msg::Live(m)
    }
}

/// Runs `f` on the live model and hands its effects on to `out`.
pub fn on_live<R>(
    m: &mut Model,
    out: &mut Vec<Effect>,
    f: impl FnOnce(&mut Live, &mut Vec<LiveEffect>) -> R,
) -> R {
    let mut live_out = Vec::new();
    let r = f(&mut m.live, &mut live_out);
    out.extend(live_out.into_iter().map(Effect::from));
    r
}

/// Asks `node` a question (see [`fold::ask`]).
pub fn ask(m: &mut Model, out: &mut Vec<Effect>, node: &str, a: Ask) {
    on_live(m, out, |l, o| fold::ask(l, o, node, a));
}

/// Takes a node's snapshot again (see [`fold::snapshot_node`]).
pub fn snapshot_node(m: &mut Model, node: &str, out: &mut Vec<Effect>) {
    on_live(m, out, |l, o| fold::snapshot_node(l, node, o));
}
