//! The update function: `update(&mut Model, Msg) -> Vec<Effect>`, pure.
//!
//! A [`Msg`] is a key, a daemon's event, a query's reply, a command's end, or a clock
//! tick. The daemons' messages are folded into the live model by
//! [`crate::model::fold`]; keys go to [`super::input`]; a command's end is handled here.
//! The update returns [`Effect`]s for the shell to carry out: subscribe to a daemon
//! (again, after a backoff), ask it something, run an exec command, quit.

use super::model::{Level, Mode, Model, Output, Reach};
pub use super::msg::{ask, on_live, snapshot_node, Effect, LiveEffect, LiveMsg, Msg};
use crate::exec::commands::split_words;
use crate::exec::{parse_args, Outcome};
use crate::model::fold::{self, end_task, refresh_vol};
pub use crate::model::fold::{backoff_ms, BACKOFF_MAX_MS, TS_DELTA_REFRESH_MS};
pub use crate::model::{Answer, Ask, AskError};

/// The effects that start the console: a subscription to every node.
pub fn init(m: &mut Model) -> Vec<Effect> {
    let before = m.live.logged;
    let out = fold::init(&mut m.live)
        .into_iter()
        .map(Effect::from)
        .collect();
    m.follow_log(m.live.logged - before);
    out
}

/// Handles one message.
pub fn update(m: &mut Model, msg: Msg) -> Vec<Effect> {
    let before = m.live.logged;
    let mut out = Vec::new();
    match msg {
        Msg::Key(k) => super::input::on_key(m, k, &mut out),
        Msg::CommandDone { id, result } => on_command_done(m, id, result, &mut out),
        Msg::Live(msg) => {
            out.extend(fold::update(&mut m.live, msg).into_iter().map(Effect::from));
        }
    }
    m.follow_log(m.live.logged - before);
    out
}

fn on_command_done(m: &mut Model, id: u64, result: Result<Outcome, String>, out: &mut Vec<Effect>) {
    let Some(i) = m.tasks.iter().position(|t| t.id == id) else {
        return;
    };
    let line = m.tasks[i].command.clone().unwrap_or_default();
    let cmd = split_words(&line).ok().and_then(|w| parse_args(&w).ok());
    match result {
        Ok(outcome) => {
            let lines = outcome.text_lines();
            let summary = match lines.len() {
                0 => match &outcome {
                    Outcome::Done { state: Some(s), .. } => format!("done ({s})"),
                    _ => "done".to_owned(),
                },
                1 => lines[0].clone(),
                n => format!("{n} lines"),
            };
            end_task(&mut m.live, i, true, summary.clone());
            m.status = Some((Level::Info, format!("{line}: {summary}")));
            if lines.len() > 1 && m.mode == Mode::Normal {
                m.mode = Mode::Output(Output {
                    title: line.clone(),
                    lines,
                    scroll: 0,
                });
            }
        }
        Err(e) => {
            let node = m.tasks[i].node.clone();
            if let Some(n) = m.node_mut(&node) {
                n.errors += 1;
            }
            end_task(&mut m.live, i, false, e.clone());
            m.status = Some((Level::Error, format!("{line}: {e}")));
        }
    }
    // Bring what the command touched up to date (not everything it changes has events).
    if let Some(cmd) = cmd.filter(|c| !c.is_read_only()) {
        match cmd.target() {
            (Some(node), Some(vol)) => on_live(m, out, |l, o| refresh_vol(l, node, vol, o)),
            (Some(node), None) if m.role(node).is_some() => {
                if matches!(m.node(node).map(|n| &n.reach), Some(Reach::Up)) {
                    snapshot_node(m, node, out);
                }
            }
            (None, Some(vol)) => {
                let names: Vec<String> = m.nodes.iter().map(|n| n.name.clone()).collect();
                for n in names {
                    on_live(m, out, |l, o| refresh_vol(l, &n, vol, o));
                }
            }
            _ => {}
        }
    }
}
