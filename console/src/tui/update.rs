//! The update function: `update(&mut Model, Msg) -> Vec<Effect>`, pure.
//!
//! A [`Msg`] is a key, a daemon's event, a query's reply, a command's end, or a clock
//! tick. The update changes the model and returns [`Effect`]s for the shell to carry out:
//! subscribe to a daemon (again, after a backoff), ask it something, run an exec command,
//! quit. Queries are only sent in answer to something: a subscription starting (the
//! snapshot the events then keep current), an event whose consequences no event carries
//! (a new diff list means a new latest snapshot), a command ending, or the operator's `r`.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use walb_wire::msg::{MetaDiffDto, MetaStateDto, SnapshotInfo};
use walb_wire::{ErrorCode, Event, Role};

use super::actions::{self, Target};
use super::keys::{self, Action};
use super::model::{
    is_temporary, CellState, Confirm, DiffsFocus, Level, LogUsage, Menu, Mode, Model, Ms, Output,
    Palette, Queue, QueuePos, Reach, Snap, Task, TaskEnd, TsDelta, View, ENDED_TASKS_MAX,
    TASK_KINDS,
};
use super::palette;
use crate::exec::commands::{help_lines, split_words};
use crate::exec::{parse_args, ExecCmd, Outcome};

/// A question for one daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Version, pid and summary status.
    Hello,
    /// Volume names.
    Vols,
    /// A volume's state.
    State {
        /// Volume.
        vol: String,
    },
    /// Storage: log usage of every volume.
    LogUsage,
    /// Storage: its lag behind its primary archive, per volume.
    TsDelta,
    /// Latest snapshot of one volume, or all.
    LatestSnap {
        /// Volume.
        vol: Option<String>,
    },
    /// Storage: the overflow flag.
    Overflow {
        /// Volume.
        vol: String,
    },
    /// Proxy: the archives of a volume.
    ArchiveList {
        /// Volume.
        vol: String,
    },
    /// Proxy: the queue towards one archive, and its send-error flag.
    Queue {
        /// Volume.
        vol: String,
        /// Archive.
        archive: String,
    },
    /// Archive: the diff list.
    Diffs {
        /// Volume.
        vol: String,
    },
    /// Archive: restorable snapshots (all).
    Restorable {
        /// Volume.
        vol: String,
    },
    /// Archive: the base state.
    Base {
        /// Volume.
        vol: String,
    },
    /// Archive: restored images.
    Restored {
        /// Volume.
        vol: String,
    },
}

/// A reply to an [`Ask`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// To [`Ask::Hello`].
    Hello {
        /// Software version.
        version: String,
        /// Process id.
        pid: u64,
        /// Summary status lines.
        status: Vec<String>,
    },
    /// Names (volumes, archives).
    Names(Vec<String>),
    /// A state name.
    State(String),
    /// Lines (log usage).
    Lines(Vec<String>),
    /// Snapshots (latest, restorable).
    Snaps(Vec<SnapshotInfo>),
    /// A flag.
    Bool(bool),
    /// A queue.
    Queue {
        /// Its diffs.
        diffs: Vec<MetaDiffDto>,
        /// The send-error flag.
        send_error: bool,
    },
    /// A diff list.
    Diffs(Vec<MetaDiffDto>),
    /// A meta state.
    Base(MetaStateDto),
    /// Restored images.
    Restored(Vec<(u64, String)>),
}

/// Why an [`Ask`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AskError {
    /// The daemon's code, if it refused.
    pub code: Option<ErrorCode>,
    /// The message.
    pub message: String,
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    /// A key.
    Key(KeyEvent),
    /// A daemon's subscription started.
    Subscribed {
        /// The node.
        node: String,
    },
    /// A daemon's subscription failed or ended.
    Disconnected {
        /// The node.
        node: String,
        /// Why.
        error: String,
    },
    /// A daemon's event.
    Event {
        /// The node.
        node: String,
        /// The event.
        event: Event,
    },
    /// A reply to an [`Effect::Ask`].
    Reply {
        /// The node.
        node: String,
        /// The model's sequence number when it was asked.
        seq: u64,
        /// The question.
        ask: Ask,
        /// The answer.
        result: Result<Answer, AskError>,
    },
    /// A command the console ran ended.
    CommandDone {
        /// Its task id.
        id: u64,
        /// Its outcome, or the error message.
        result: Result<Outcome, String>,
    },
    /// The clock (once a second; the model's clock is set before every message).
    Tick,
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Subscribe to `node`'s events after `delay_ms`.
    Subscribe {
        /// The node.
        node: String,
        /// Wait this long first.
        delay_ms: u64,
    },
    /// Ask `node` something; answer with [`Msg::Reply`].
    Ask {
        /// The node.
        node: String,
        /// The model's sequence number now.
        seq: u64,
        /// The question.
        ask: Ask,
    },
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

/// The longest wait between two subscription attempts.
pub const BACKOFF_MAX_MS: u64 = 30_000;

/// The delay before subscription attempt number `failures + 1`.
pub fn backoff_ms(failures: u32) -> u64 {
    let exp = failures.saturating_sub(1).min(16);
    (1000u64 << exp).min(BACKOFF_MAX_MS)
}

/// The effects that start the console: a subscription to every node.
pub fn init(m: &mut Model) -> Vec<Effect> {
    m.push_log(
        Level::Info,
        None,
        None,
        format!(
            "cluster {} ({}): {} nodes",
            m.cluster,
            m.origin,
            m.nodes.len()
        ),
    );
    if let Some(why) = m.read_only_why.clone() {
        m.push_log(Level::Info, None, None, format!("read-only: {why}"));
    }
    m.nodes
        .iter()
        .map(|n| Effect::Subscribe {
            node: n.name.clone(),
            delay_ms: 0,
        })
        .collect()
}

fn ask(m: &mut Model, out: &mut Vec<Effect>, node: &str, a: Ask) {
    m.pending += 1;
    out.push(Effect::Ask {
        node: node.to_owned(),
        seq: m.seq,
        ask: a,
    });
}

/// Handles one message.
pub fn update(m: &mut Model, msg: Msg) -> Vec<Effect> {
    let mut out = Vec::new();
    match msg {
        Msg::Key(k) => on_key(m, k, &mut out),
        Msg::Subscribed { node } => on_subscribed(m, &node, &mut out),
        Msg::Disconnected { node, error } => on_disconnected(m, &node, error, &mut out),
        Msg::Event { node, event } => {
            m.seq += 1;
            on_event(m, &node, event, &mut out);
        }
        Msg::Reply {
            node,
            seq,
            ask,
            result,
        } => {
            m.pending = m.pending.saturating_sub(1);
            on_reply(m, &node, seq, ask, result, &mut out);
        }
        Msg::CommandDone { id, result } => on_command_done(m, id, result, &mut out),
        Msg::Tick => {
            prune_tasks(m);
            refresh_ts_delta(m, &mut out);
        }
    }
    out
}

// ----------------------------------------------------------------------------------
// Daemons

fn snapshot_node(m: &mut Model, node: &str, out: &mut Vec<Effect>) {
    let Some(role) = m.role(node) else { return };
    ask(m, out, node, Ask::Hello);
    ask(m, out, node, Ask::Vols);
    match role {
        Role::Storage => {
            ask(m, out, node, Ask::LogUsage);
            ask(m, out, node, Ask::LatestSnap { vol: None });
            ask(m, out, node, Ask::TsDelta);
        }
        Role::Archive => ask(m, out, node, Ask::LatestSnap { vol: None }),
        _ => {}
    }
}

fn on_subscribed(m: &mut Model, node: &str, out: &mut Vec<Effect>) {
    let Some(n) = m.node_mut(node) else { return };
    n.reach = Reach::Up;
    n.failures = 0;
    let addr = n.addr.clone();
    m.push_log(Level::Info, Some(node), None, format!("connected ({addr})"));
    snapshot_node(m, node, out);
}

fn on_disconnected(m: &mut Model, node: &str, error: String, out: &mut Vec<Effect>) {
    let reconnect = m.reconnect;
    let Some(n) = m.node_mut(node) else { return };
    let was_down = matches!(n.reach, Reach::Down { .. });
    n.reach = Reach::Down {
        error: error.clone(),
    };
    n.failures = n.failures.saturating_add(1);
    n.errors += 1;
    let delay_ms = backoff_ms(n.failures);
    if !was_down {
        m.push_log(
            Level::Error,
            Some(node),
            None,
            format!("unreachable: {error}"),
        );
    }
    if reconnect {
        out.push(Effect::Subscribe {
            node: node.to_owned(),
            delay_ms,
        });
    }
}

/// The queries that bring `vol` on `node` up to date after a change no event describes.
fn refresh_vol(m: &mut Model, node: &str, vol: &str, out: &mut Vec<Effect>) {
    let Some(role) = m.role(node) else { return };
    let v = vol.to_owned();
    ask(m, out, node, Ask::State { vol: v.clone() });
    match role {
        Role::Storage => {
            ask(
                m,
                out,
                node,
                Ask::LatestSnap {
                    vol: Some(v.clone()),
                },
            );
            ask(m, out, node, Ask::LogUsage);
            ask(m, out, node, Ask::TsDelta);
            ask(m, out, node, Ask::Overflow { vol: v });
        }
        Role::Proxy => ask(m, out, node, Ask::ArchiveList { vol: v }),
        _ => {
            ask(
                m,
                out,
                node,
                Ask::LatestSnap {
                    vol: Some(v.clone()),
                },
            );
            ask(m, out, node, Ask::Diffs { vol: v.clone() });
            ask(m, out, node, Ask::Restorable { vol: v.clone() });
            ask(m, out, node, Ask::Restored { vol: v.clone() });
            ask(m, out, node, Ask::Base { vol: v });
        }
    }
}

fn start_task(m: &mut Model, node: &str, vol: &str, op: &str) -> usize {
    if let Some(i) = m.tasks.iter().position(|t| {
        t.running()
            && t.command.is_none()
            && t.node == node
            && t.vol.as_deref() == Some(vol)
            && t.op == op
    }) {
        return i;
    }
    let id = m.next_id;
    m.next_id += 1;
    m.tasks.push(Task {
        id,
        node: node.to_owned(),
        vol: Some(vol.to_owned()),
        op: op.to_owned(),
        command: None,
        done_lb: 0,
        total_lb: 0,
        started: m.now,
        updated: m.now,
        sample: None,
        rate_bps: None,
        end: None,
        queued: None,
    });
    let label = super::model::task_label(op);
    m.push_log(
        Level::Info,
        Some(node),
        Some(vol),
        format!("{label} started"),
    );
    m.tasks.len() - 1
}

fn end_task(m: &mut Model, i: usize, ok: bool, message: String) {
    let now = m.now;
    let Some(t) = m.tasks.get_mut(i) else { return };
    if t.end.is_some() {
        return;
    }
    t.end = Some(TaskEnd {
        at: now,
        ok,
        message: message.clone(),
    });
    let (node, vol, label) = (t.node.clone(), t.vol.clone(), t.label());
    let level = if ok { Level::Info } else { Level::Error };
    m.push_log(
        level,
        Some(&node),
        vol.as_deref(),
        format!("{label}: {message}"),
    );
    prune_tasks(m);
}

/// How often the storages' `ts-delta` is asked again (no event says it changed).
pub const TS_DELTA_REFRESH_MS: Ms = 10_000;

/// Asks every reachable storage for its `ts-delta` when the last ask is old enough.
fn refresh_ts_delta(m: &mut Model, out: &mut Vec<Effect>) {
    if m.now.saturating_sub(m.ts_delta_asked) < TS_DELTA_REFRESH_MS {
        return;
    }
    m.ts_delta_asked = m.now;
    let up: Vec<String> = m
        .nodes
        .iter()
        .filter(|n| n.role == Role::Storage && matches!(n.reach, Reach::Up))
        .map(|n| n.name.clone())
        .collect();
    for node in up {
        ask(m, out, &node, Ask::TsDelta);
    }
}

fn prune_tasks(m: &mut Model) {
    let ended = m.tasks.iter().filter(|t| !t.running()).count();
    if ended > ENDED_TASKS_MAX {
        let mut drop = ended - ENDED_TASKS_MAX;
        m.tasks.retain(|t| {
            if drop > 0 && !t.running() {
                drop -= 1;
                false
            } else {
                true
            }
        });
    }
}

fn on_event(m: &mut Model, node: &str, event: Event, out: &mut Vec<Effect>) {
    let Some(role) = m.role(node) else { return };
    match event {
        Event::State { vol, state, .. } => {
            let (now, seq) = (m.now, m.seq);
            let v = m.vol_mut(&vol);
            let prev = v.cells.get(node).map(|c| c.state.clone());
            v.cells.insert(
                node.to_owned(),
                CellState {
                    state: state.clone(),
                    since: now,
                    seq,
                },
            );
            if state == "Clear" {
                match role {
                    Role::Storage => {
                        v.log.remove(node);
                        v.overflow.remove(node);
                        v.storage_latest.remove(node);
                    }
                    Role::Proxy => v.queues.retain(|(p, _), _| p != node),
                    _ => {
                        v.archives.remove(node);
                    }
                }
            }
            m.push_log(
                Level::Info,
                Some(node),
                Some(&vol),
                format!("{} → {state}", prev.as_deref().unwrap_or("?")),
            );
            // Tasks bound to archive states.
            if role == Role::Archive {
                if let Some(k) = TASK_KINDS
                    .iter()
                    .find(|k| k.states.contains(&state.as_str()))
                {
                    start_task(m, node, &vol, k.op);
                }
            }
            if !is_temporary(&state) {
                let bound: Vec<usize> = m
                    .tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| {
                        t.running()
                            && t.command.is_none()
                            && t.node == node
                            && t.vol.as_deref() == Some(vol.as_str())
                            && TASK_KINDS
                                .iter()
                                .any(|k| k.op == t.op && !k.states.is_empty())
                    })
                    .map(|(i, _)| i)
                    .collect();
                for i in bound {
                    let (ok, msg) = match m.tasks[i].ratio() {
                        Some(r) if r >= 1.0 => (true, format!("done ({state})")),
                        Some(r) => (false, format!("ended in {state} at {:.0}%", r * 100.0)),
                        None => (true, format!("ended ({state})")),
                    };
                    end_task(m, i, ok, msg);
                }
                // What the new state changes beyond the state.
                if state != "Clear" {
                    match role {
                        Role::Storage => {
                            ask(
                                m,
                                out,
                                node,
                                Ask::LatestSnap {
                                    vol: Some(vol.clone()),
                                },
                            );
                            ask(m, out, node, Ask::Overflow { vol: vol.clone() });
                        }
                        Role::Proxy => ask(m, out, node, Ask::ArchiveList { vol: vol.clone() }),
                        _ => {
                            ask(
                                m,
                                out,
                                node,
                                Ask::LatestSnap {
                                    vol: Some(vol.clone()),
                                },
                            );
                            if prev.as_deref() != Some("WdiffRecv") {
                                ask(m, out, node, Ask::Diffs { vol: vol.clone() });
                            }
                        }
                    }
                }
            }
        }
        Event::LogUsage {
            vol,
            usage_pb,
            capacity_pb,
        } => {
            let v = m.vol_mut(&vol);
            let pbs = v.log.get(node).and_then(|l| l.pbs);
            v.log.insert(
                node.to_owned(),
                LogUsage {
                    usage_pb,
                    capacity_pb,
                    pbs,
                },
            );
            // A transfer happened: the storage's latest snapshot moved, the proxies'
            // queues grew.
            ask(
                m,
                out,
                node,
                Ask::LatestSnap {
                    vol: Some(vol.clone()),
                },
            );
            if capacity_pb > 0 && usage_pb.saturating_mul(10) >= capacity_pb.saturating_mul(9) {
                ask(m, out, node, Ask::Overflow { vol: vol.clone() });
            }
            let proxies = m.node(node).map(|n| n.proxies.clone()).unwrap_or_default();
            let queues: Vec<(String, String)> = m
                .vols
                .get(&vol)
                .map(|v| {
                    v.queues
                        .keys()
                        .filter(|(p, _)| proxies.contains(p))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for (p, a) in queues {
                ask(
                    m,
                    out,
                    &p,
                    Ask::Queue {
                        vol: vol.clone(),
                        archive: a,
                    },
                );
            }
        }
        Event::DiffList { vol, diffs } => {
            let n = diffs.len();
            let top = diffs.iter().map(|d| d.range.snap_e.gid_e).max();
            let v = m.vol_mut(&vol);
            v.archives.entry(node.to_owned()).or_default().diffs = Some(diffs);
            let queues: Vec<String> = v
                .queues
                .keys()
                .filter(|(_, a)| a == node)
                .map(|(p, _)| p.clone())
                .collect();
            m.push_log(
                Level::Info,
                Some(node),
                Some(&vol),
                format!(
                    "diff list: {n} diffs{}",
                    top.map_or(String::new(), |g| format!(", up to gid {g}"))
                ),
            );
            ask(
                m,
                out,
                node,
                Ask::LatestSnap {
                    vol: Some(vol.clone()),
                },
            );
            if m.diffs_target.as_ref() == Some(&(node.to_owned(), vol.clone())) || m.eager {
                ask(m, out, node, Ask::Restorable { vol: vol.clone() });
                ask(m, out, node, Ask::Base { vol: vol.clone() });
            }
            for p in queues {
                ask(
                    m,
                    out,
                    &p,
                    Ask::Queue {
                        vol: vol.clone(),
                        archive: node.to_owned(),
                    },
                );
            }
        }
        Event::Progress {
            vol,
            op,
            done_lb,
            total_lb,
        } => {
            let i = start_task(m, node, &vol, &op);
            let now = m.now;
            if let Some(t) = m.tasks.get_mut(i) {
                t.progress(now, done_lb, total_lb);
            }
            if total_lb > 0 && done_lb >= total_lb {
                let bound = TASK_KINDS
                    .iter()
                    .any(|k| k.op == op && !k.states.is_empty());
                if !bound || role != Role::Archive {
                    end_task(m, i, true, "done".into());
                    if op == "restore" {
                        ask(m, out, node, Ask::Restored { vol });
                    }
                }
            }
        }
        Event::Failed { vol, op, error } => {
            let i = start_task(m, node, &vol, &op);
            end_task(m, i, false, error);
        }
        Event::Queue {
            vol,
            op,
            ahead,
            running,
            slots,
        } => {
            let i = start_task(m, node, &vol, &op);
            let now = m.now;
            if let Some(t) = m.tasks.get_mut(i) {
                t.updated = now;
                t.queued = ahead.map(|ahead| QueuePos {
                    ahead,
                    running,
                    slots,
                });
            }
        }
        Event::Lagged { missed } => {
            m.push_log(
                Level::Warn,
                Some(node),
                None,
                format!("{missed} events missed (the console was slow); asking again"),
            );
            snapshot_node(m, node, out);
        }
    }
}

fn quiet(code: Option<ErrorCode>) -> bool {
    matches!(
        code,
        Some(ErrorCode::WrongState | ErrorCode::NotFound | ErrorCode::Unsupported)
    )
}

/// Parses a storage's `get ts-delta` line (`name:VOL\tdest:ARCHIVE\t...\tgid:N\t...
/// \tdest_gid:N\t...\tts_delta:N...`); `None` for a line whose archive side is not
/// known yet (`-`).
pub fn parse_ts_delta(line: &str) -> Option<(String, String, TsDelta)> {
    let (mut name, mut dest, mut gid, mut dest_gid, mut secs) = (None, None, None, None, None);
    for field in line.split('\t') {
        let Some((k, v)) = field.split_once(':') else {
            continue;
        };
        match k {
            "name" => name = Some(v.to_owned()),
            "dest" => dest = Some(v.to_owned()),
            "gid" => gid = v.parse().ok(),
            "dest_gid" => dest_gid = v.parse().ok(),
            "ts_delta" => secs = v.parse().ok(),
            _ => {}
        }
    }
    Some((
        name?,
        dest?,
        TsDelta {
            gid: gid?,
            dest_gid: dest_gid?,
            secs: secs?,
        },
    ))
}

/// Parses a `name:VOL\tusage_pb:N\tcapacity_pb:N\tpbs:N` line.
pub fn parse_log_usage(line: &str) -> Option<(String, LogUsage)> {
    let mut name = None;
    let mut u = LogUsage::default();
    let (mut has_u, mut has_c) = (false, false);
    for field in line.split('\t') {
        let (k, v) = field.split_once(':')?;
        match k {
            "name" => name = Some(v.to_owned()),
            "usage_pb" => {
                u.usage_pb = v.parse().ok()?;
                has_u = true;
            }
            "capacity_pb" => {
                u.capacity_pb = v.parse().ok()?;
                has_c = true;
            }
            "pbs" => u.pbs = v.parse().ok(),
            _ => {}
        }
    }
    (has_u && has_c).then_some((name?, u))
}

/// Finds an uptime in status lines: `uptime 12s`, `uptime:12` or `uptime_s:12`.
pub fn parse_uptime(lines: &[String]) -> Option<u64> {
    for l in lines {
        let words: Vec<&str> = l.split(|c: char| c.is_whitespace() || c == '\t').collect();
        for (i, w) in words.iter().enumerate() {
            let value = if *w == "uptime" {
                words.get(i + 1).copied()
            } else {
                w.strip_prefix("uptime:")
                    .or_else(|| w.strip_prefix("uptime_s:"))
            };
            if let Some(n) = value.and_then(|v| v.trim_end_matches('s').parse().ok()) {
                return Some(n);
            }
        }
    }
    None
}

fn on_reply(
    m: &mut Model,
    node: &str,
    seq: u64,
    ask_: Ask,
    result: Result<Answer, AskError>,
    out: &mut Vec<Effect>,
) {
    let Some(role) = m.role(node) else { return };
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            if let Some(n) = m.node_mut(node) {
                n.errors += 1;
            }
            if !quiet(e.code) {
                m.push_log(
                    Level::Warn,
                    Some(node),
                    None,
                    format!("asking {ask_:?} failed: {}", e.message),
                );
            }
            return;
        }
    };
    let now = m.now;
    match (ask_, answer) {
        (
            Ask::Hello,
            Answer::Hello {
                version,
                pid,
                status,
            },
        ) => {
            if let Some(n) = m.node_mut(node) {
                n.version = Some(version);
                n.pid = Some(pid);
                n.uptime_s = parse_uptime(&status);
                n.uptime_at = now;
                n.status = status;
            }
        }
        (Ask::Vols, Answer::Names(names)) => {
            // Volumes this node no longer has are Clear there.
            let gone: Vec<String> = m
                .vols
                .values()
                .filter(|v| v.cells.contains_key(node) && !names.contains(&v.name))
                .map(|v| v.name.clone())
                .collect();
            for g in gone {
                if let Some(c) = m.vols.get_mut(&g).and_then(|v| v.cells.get_mut(node)) {
                    if c.seq <= seq {
                        c.state = "Clear".into();
                    }
                }
            }
            for vol in names {
                m.vol_mut(&vol);
                ask(m, out, node, Ask::State { vol: vol.clone() });
                match role {
                    Role::Storage => ask(m, out, node, Ask::Overflow { vol }),
                    Role::Proxy => ask(m, out, node, Ask::ArchiveList { vol }),
                    _ => {
                        ask(m, out, node, Ask::Diffs { vol: vol.clone() });
                        let shown =
                            m.diffs_target.as_ref() == Some(&(node.to_owned(), vol.clone()));
                        if m.eager || shown {
                            ask(m, out, node, Ask::Restorable { vol: vol.clone() });
                            ask(m, out, node, Ask::Base { vol: vol.clone() });
                            ask(m, out, node, Ask::Restored { vol });
                        }
                    }
                }
            }
        }
        (Ask::State { vol }, Answer::State(state)) => {
            let v = m.vol_mut(&vol);
            let stale = v.cells.get(node).is_some_and(|c| c.seq > seq);
            if !stale {
                let changed = v.cells.get(node).map(|c| c.state != state).unwrap_or(true);
                if changed {
                    v.cells.insert(
                        node.to_owned(),
                        CellState {
                            state,
                            since: now,
                            seq,
                        },
                    );
                }
            }
        }
        (Ask::TsDelta, Answer::Lines(lines)) => {
            for l in lines {
                if let Some((vol, archive, t)) = parse_ts_delta(&l) {
                    m.vol_mut(&vol)
                        .ts_delta
                        .insert((node.to_owned(), archive), t);
                }
            }
        }
        (Ask::LogUsage, Answer::Lines(lines)) => {
            for l in lines {
                if let Some((vol, u)) = parse_log_usage(&l) {
                    m.vol_mut(&vol).log.insert(node.to_owned(), u);
                }
            }
        }
        (Ask::LatestSnap { .. }, Answer::Snaps(snaps)) => {
            for s in snaps {
                let Some(gid) = s.gid else { continue };
                let snap = Snap {
                    gid,
                    timestamp_s: s.timestamp_s,
                };
                let v = m.vol_mut(&s.vol);
                if role == Role::Storage {
                    v.storage_latest.insert(node.to_owned(), snap);
                } else if role == Role::Archive {
                    v.archives.entry(node.to_owned()).or_default().latest = Some(snap);
                }
            }
        }
        (Ask::Overflow { vol }, Answer::Bool(b)) => {
            let was = m.vol_mut(&vol).overflow.insert(node.to_owned(), b);
            if b && was != Some(true) {
                m.push_log(
                    Level::Error,
                    Some(node),
                    Some(&vol),
                    "the log overflowed: the archive needs a hash or full backup",
                );
            }
        }
        (Ask::ArchiveList { vol }, Answer::Names(archives)) => {
            m.vol_mut(&vol)
                .queues
                .retain(|(p, a), _| p != node || archives.contains(a));
            for a in archives {
                ask(
                    m,
                    out,
                    node,
                    Ask::Queue {
                        vol: vol.clone(),
                        archive: a,
                    },
                );
            }
        }
        (Ask::Queue { vol, archive }, Answer::Queue { diffs, send_error }) => {
            let q = Queue {
                diffs: diffs.len() as u64,
                bytes: diffs.iter().map(|d| d.size).sum(),
                send_error,
            };
            let was = m
                .vol_mut(&vol)
                .queues
                .insert((node.to_owned(), archive.clone()), q);
            if send_error && was.is_none_or(|w| !w.send_error) {
                m.push_log(
                    Level::Error,
                    Some(node),
                    Some(&vol),
                    format!("sending to {archive} gave up (kick {node} {vol} {archive} retries)"),
                );
            }
        }
        (Ask::Diffs { vol }, Answer::Diffs(d)) => {
            m.vol_mut(&vol)
                .archives
                .entry(node.to_owned())
                .or_default()
                .diffs = Some(d);
        }
        (Ask::Restorable { vol }, Answer::Snaps(s)) => {
            m.vol_mut(&vol)
                .archives
                .entry(node.to_owned())
                .or_default()
                .restorable = Some(s);
        }
        (Ask::Base { vol }, Answer::Base(b)) => {
            m.vol_mut(&vol)
                .archives
                .entry(node.to_owned())
                .or_default()
                .base = Some(b);
        }
        (Ask::Restored { vol }, Answer::Restored(r)) => {
            m.vol_mut(&vol)
                .archives
                .entry(node.to_owned())
                .or_default()
                .restored = r;
        }
        (a, other) => m.push_log(
            Level::Warn,
            Some(node),
            None,
            format!("unexpected answer to {a:?}: {other:?}"),
        ),
    }
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
            end_task(m, i, true, summary.clone());
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
            end_task(m, i, false, e.clone());
            m.status = Some((Level::Error, format!("{line}: {e}")));
        }
    }
    // Bring what the command touched up to date (not everything it changes has events).
    if let Some(cmd) = cmd.filter(|c| !c.is_read_only()) {
        match cmd.target() {
            (Some(node), Some(vol)) => refresh_vol(m, node, vol, out),
            (Some(node), None) if m.role(node).is_some() => {
                if matches!(m.node(node).map(|n| &n.reach), Some(Reach::Up)) {
                    snapshot_node(m, node, out);
                }
            }
            (None, Some(vol)) => {
                let names: Vec<String> = m.nodes.iter().map(|n| n.name.clone()).collect();
                for n in names {
                    refresh_vol(m, &n, vol, out);
                }
            }
            _ => {}
        }
    }
}

// ----------------------------------------------------------------------------------
// Keys

fn is_ctrl(k: &KeyEvent, c: char) -> bool {
    k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char(c)
}

fn on_key(m: &mut Model, k: KeyEvent, out: &mut Vec<Effect>) {
    if is_ctrl(&k, 'c') {
        m.quit = true;
        out.push(Effect::Quit);
        return;
    }
    match std::mem::take(&mut m.mode) {
        Mode::Normal => normal_key(m, k, out),
        Mode::Help => {
            if !matches!(
                k.code,
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
            ) {
                m.mode = Mode::Help;
            }
        }
        Mode::Filter => filter_key(m, k),
        Mode::Palette(p) => palette_key(m, p, k, out),
        Mode::Confirm(c) => match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                run_command(m, c.line, c.cmd, out);
            }
            KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Char('q') => {
                m.status = Some((Level::Info, format!("cancelled: {}", c.line)));
            }
            _ => m.mode = Mode::Confirm(c),
        },
        Mode::Menu(mut menu) => match k.code {
            KeyCode::Esc | KeyCode::Char('q') => {}
            KeyCode::Up | KeyCode::Char('k') if menu.sel > 0 => {
                menu.sel -= 1;
                m.mode = Mode::Menu(menu);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                menu.sel = (menu.sel + 1).min(menu.items.len().saturating_sub(1));
                m.mode = Mode::Menu(menu);
            }
            KeyCode::Enter => {
                if let Some((_, _, line)) = menu.items.get(menu.sel).cloned() {
                    m.mark = None;
                    submit(m, line, out);
                }
            }
            KeyCode::Char(c) => match menu.items.iter().find(|i| i.0 == c).cloned() {
                Some((_, _, line)) => {
                    m.mark = None;
                    submit(m, line, out);
                }
                None => m.mode = Mode::Menu(menu),
            },
            _ => m.mode = Mode::Menu(menu),
        },
        Mode::Output(mut o) => match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {}
            KeyCode::Up | KeyCode::Char('k') => {
                o.scroll = o.scroll.saturating_sub(1);
                m.mode = Mode::Output(o);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                o.scroll = (o.scroll + 1).min(o.lines.len().saturating_sub(1));
                m.mode = Mode::Output(o);
            }
            KeyCode::PageUp => {
                o.scroll = o.scroll.saturating_sub(10);
                m.mode = Mode::Output(o);
            }
            KeyCode::PageDown | KeyCode::Char(' ') => {
                o.scroll = (o.scroll + 10).min(o.lines.len().saturating_sub(1));
                m.mode = Mode::Output(o);
            }
            _ => m.mode = Mode::Output(o),
        },
    }
}

fn filter_key(m: &mut Model, k: KeyEvent) {
    let i = m.view.index();
    match k.code {
        KeyCode::Esc => {
            m.filter[i].clear();
            m.sel[i] = 0;
        }
        KeyCode::Enter => {}
        KeyCode::Backspace => {
            m.filter[i].pop();
            m.sel[i] = 0;
            m.mode = Mode::Filter;
        }
        KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
            m.filter[i].clear();
            m.mode = Mode::Filter;
        }
        KeyCode::Char(c) => {
            m.filter[i].push(c);
            m.sel[i] = 0;
            m.mode = Mode::Filter;
        }
        _ => m.mode = Mode::Filter,
    }
}

fn palette_key(m: &mut Model, mut p: Palette, k: KeyEvent, out: &mut Vec<Effect>) {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    if k.code != KeyCode::Tab {
        p.cycle = None;
        p.candidates.clear();
    }
    match k.code {
        KeyCode::Esc => return,
        KeyCode::Enter => {
            let line = p.input.trim().to_owned();
            if line.is_empty() {
                return;
            }
            match split_words(&line).and_then(|w| parse_args(&w)) {
                Err(e) => {
                    p.error = Some(e.to_string());
                    m.mode = Mode::Palette(p);
                }
                Ok(cmd) => {
                    if m.history.last() != Some(&line) {
                        m.history.push(line.clone());
                    }
                    submit_parsed(m, line, cmd, out);
                    if let Mode::Palette(ref mut q) = m.mode {
                        // Refused (read-only): keep what was typed.
                        q.input = p.input;
                    }
                }
            }
            return;
        }
        KeyCode::Tab => palette::complete(&mut p, m),
        KeyCode::Backspace => {
            p.input.pop();
        }
        KeyCode::Char('u') if ctrl => p.input.clear(),
        KeyCode::Char('w') if ctrl => {
            let t = p.input.trim_end().len();
            p.input.truncate(t);
            let cut = p.input.rfind(' ').map_or(0, |i| i + 1);
            p.input.truncate(cut);
        }
        KeyCode::Up if !m.history.is_empty() => {
            let pos = match p.history_pos {
                None => m.history.len() - 1,
                Some(i) => i.saturating_sub(1),
            };
            p.history_pos = Some(pos);
            p.input = m.history[pos].clone();
        }
        KeyCode::Down => {
            if let Some(i) = p.history_pos {
                if i + 1 < m.history.len() {
                    p.history_pos = Some(i + 1);
                    p.input = m.history[i + 1].clone();
                } else {
                    p.history_pos = None;
                    p.input.clear();
                }
            }
        }
        KeyCode::Char(c) if !ctrl => p.input.push(c),
        _ => {}
    }
    p.error = None;
    m.mode = Mode::Palette(p);
}

/// Parses `line` as an exec command and goes on as [`submit_parsed`]; a line that does
/// not parse opens the palette with it and the error.
pub fn submit(m: &mut Model, line: String, out: &mut Vec<Effect>) {
    match split_words(&line).and_then(|w| parse_args(&w)) {
        Ok(cmd) => submit_parsed(m, line, cmd, out),
        Err(e) => {
            m.mode = Mode::Palette(Palette {
                input: line,
                error: Some(e.to_string()),
                ..Palette::default()
            });
        }
    }
}

/// Runs a parsed command: help is shown at once, a command that changes the cluster is
/// refused in read-only mode, a destructive one asks first.
pub fn submit_parsed(m: &mut Model, line: String, cmd: ExecCmd, out: &mut Vec<Effect>) {
    if let ExecCmd::Help { command } = &cmd {
        let lines = help_lines(command.as_deref()).unwrap_or_else(|e| vec![e.to_string()]);
        m.mode = Mode::Output(Output {
            title: line,
            lines,
            scroll: 0,
        });
        return;
    }
    if m.read_only && !cmd.is_read_only() {
        m.mode = Mode::Palette(Palette {
            input: line,
            error: Some(format!(
                "{} changes the cluster; the console is read-only ({})",
                cmd.name(),
                m.read_only_why.as_deref().unwrap_or("--read-only")
            )),
            ..Palette::default()
        });
        return;
    }
    if let Some(loss) = actions::loss(&cmd, m) {
        m.mode = Mode::Confirm(Confirm { line, cmd, loss });
        return;
    }
    run_command(m, line, cmd, out);
}

fn run_command(m: &mut Model, line: String, cmd: ExecCmd, out: &mut Vec<Effect>) {
    let id = m.next_id;
    m.next_id += 1;
    let (node, vol) = cmd.target();
    let node = node.unwrap_or("-").to_owned();
    m.tasks.push(Task {
        id,
        node: node.clone(),
        vol: vol.map(str::to_owned),
        op: cmd.name().to_owned(),
        command: Some(line.clone()),
        done_lb: 0,
        total_lb: 0,
        started: m.now,
        updated: m.now,
        sample: None,
        rate_bps: None,
        end: None,
        queued: None,
    });
    let vol = vol.map(str::to_owned);
    m.push_log(
        Level::Info,
        (node != "-").then_some(node.as_str()),
        vol.as_deref(),
        format!("run: {line}"),
    );
    m.status = Some((Level::Info, format!("running: {line}")));
    m.mode = Mode::Normal;
    out.push(Effect::Run { id, line, cmd });
}

fn list_len(m: &Model, view: View) -> usize {
    match view {
        View::Cluster => m.visible_nodes().len(),
        View::Volumes => m.visible_vols().len(),
        View::Diffs => match m.diffs_view() {
            Some((_, _, Some(av))) => match m.diffs_focus {
                DiffsFocus::Diffs => av.diffs.as_ref().map_or(0, Vec::len),
                DiffsFocus::Snapshots => av.restorable.as_ref().map_or(0, Vec::len),
            },
            _ => 0,
        },
        View::Tasks => m.visible_tasks().len(),
        View::Events => m.visible_log().len(),
    }
}

/// Page size used by page up/down (the views are at least this tall at 80×24).
const PAGE: usize = 10;

fn move_sel(m: &mut Model, delta: isize) {
    let len = list_len(m, m.view);
    if m.view == View::Events {
        // Scrolling back from the end; 0 follows.
        let back = m.events_back as isize - delta;
        m.events_back = back.clamp(0, len.saturating_sub(1) as isize) as usize;
        return;
    }
    let cur = if m.view == View::Diffs && m.diffs_focus == DiffsFocus::Snapshots {
        m.snap_sel
    } else {
        m.sel[m.view.index()]
    };
    let next = (cur as isize + delta).clamp(0, len.saturating_sub(1) as isize) as usize;
    if m.view == View::Diffs && m.diffs_focus == DiffsFocus::Snapshots {
        m.snap_sel = next;
    } else {
        m.sel[m.view.index()] = next;
    }
}

/// The archives that hold (or should hold) `vol`: those of the cluster with data of it,
/// else every archive.
fn archives_of(m: &Model, vol: &str) -> Vec<String> {
    let all = m.names_of(Role::Archive);
    let with: Vec<String> = all
        .iter()
        .filter(|a| {
            m.vols.get(vol).is_some_and(|v| {
                v.archives.contains_key(a.as_str())
                    || v.cells.get(a.as_str()).is_some_and(|c| c.state != "Clear")
            })
        })
        .cloned()
        .collect();
    if with.is_empty() {
        all
    } else {
        with
    }
}

/// Shows the Diffs view of `archive`'s `vol`, asking for what it needs.
pub fn open_diffs(m: &mut Model, archive: String, vol: String, out: &mut Vec<Effect>) {
    m.diffs_target = Some((archive.clone(), vol.clone()));
    m.view = View::Diffs;
    m.sel[View::Diffs.index()] = 0;
    m.snap_sel = 0;
    m.mark = None;
    if matches!(m.node(&archive).map(|n| &n.reach), Some(Reach::Up)) {
        ask(m, out, &archive, Ask::Diffs { vol: vol.clone() });
        ask(m, out, &archive, Ask::Restorable { vol: vol.clone() });
        ask(m, out, &archive, Ask::Base { vol: vol.clone() });
        ask(m, out, &archive, Ask::Restored { vol });
    }
}

/// The node columns of the Volumes view, in cluster-file order.
pub fn node_columns(m: &Model) -> Vec<&str> {
    m.nodes.iter().map(|n| n.name.as_str()).collect()
}

fn selection_target(m: &Model) -> Option<Target> {
    match m.view {
        View::Cluster => m.selected_node().map(Target::of_node),
        View::Volumes => {
            let vol = m.selected_vol()?;
            let node = m.nodes.get(m.col.min(m.nodes.len().saturating_sub(1)))?;
            let archive = node.archive.clone();
            Some(Target::Cell {
                node: node.name.clone(),
                role: node.role,
                vol: vol.to_owned(),
                state: m
                    .vols
                    .get(vol)
                    .and_then(|v| v.state(&node.name))
                    .unwrap_or("?")
                    .to_owned(),
                archive,
            })
        }
        View::Diffs => {
            let (a, v, av) = m.diffs_view()?;
            let av = av?;
            match m.diffs_focus {
                DiffsFocus::Diffs => {
                    let d = av.diffs.as_ref()?;
                    let cur = m.sel[View::Diffs.index()].min(d.len().checked_sub(1)?);
                    let start = m.mark.unwrap_or(cur).min(d.len() - 1);
                    let (lo, hi) = (start.min(cur), start.max(cur));
                    Some(Target::Range {
                        archive: a.to_owned(),
                        vol: v.to_owned(),
                        gid_b: d[lo].range.snap_b.gid_b,
                        gid_e: d[hi].range.snap_e.gid_e,
                    })
                }
                DiffsFocus::Snapshots => {
                    let r = av.restorable.as_ref()?;
                    let s = r.get(m.snap_sel.min(r.len().checked_sub(1)?))?;
                    let gid = s.gid?;
                    Some(Target::Gid {
                        archive: a.to_owned(),
                        vol: v.to_owned(),
                        gid,
                        restored: av.restored.iter().any(|(g, _)| *g == gid),
                        explicit: s.explicit,
                    })
                }
            }
        }
        View::Tasks | View::Events => None,
    }
}

fn normal_key(m: &mut Model, k: KeyEvent, out: &mut Vec<Effect>) {
    let Some(action) = keys::lookup(m.view, &k) else {
        return;
    };
    match action {
        Action::View(v) => {
            if v == View::Diffs && m.diffs_target.is_none() {
                if let Some(vol) = m.selected_vol().map(str::to_owned) {
                    if let Some(a) = archives_of(m, &vol).into_iter().next() {
                        open_diffs(m, a, vol, out);
                        return;
                    }
                }
            }
            m.view = v;
        }
        Action::Help => m.mode = Mode::Help,
        Action::Palette => m.mode = Mode::Palette(Palette::default()),
        Action::Filter => m.mode = Mode::Filter,
        Action::Quit => {
            m.quit = true;
            out.push(Effect::Quit);
        }
        Action::Back => {
            let i = m.view.index();
            if !m.filter[i].is_empty() {
                m.filter[i].clear();
            } else if m.mark.is_some() && m.view == View::Diffs {
                m.mark = None;
            } else if m.view == View::Diffs {
                m.view = View::Volumes;
            } else if m.status.is_some() {
                m.status = None;
            }
        }
        Action::Up => move_sel(m, -1),
        Action::Down => move_sel(m, 1),
        Action::PageUp => move_sel(m, -(PAGE as isize)),
        Action::PageDown => move_sel(m, PAGE as isize),
        Action::Top => move_sel(m, -(isize::MAX / 2)),
        Action::Bottom => {
            if m.view == View::Events {
                m.events_back = 0;
            } else {
                move_sel(m, isize::MAX / 2);
            }
        }
        Action::Left => m.col = m.col.saturating_sub(1),
        Action::Right => m.col = (m.col + 1).min(m.nodes.len().saturating_sub(1)),
        Action::Actions => {
            if let Some(t) = selection_target(m) {
                let items = actions::items(&t, m.read_only);
                if items.is_empty() {
                    m.status = Some((Level::Info, format!("no actions for {}", t.title())));
                } else {
                    m.mode = Mode::Menu(Menu {
                        title: t.title(),
                        items,
                        sel: 0,
                    });
                }
            }
        }
        Action::Diffs => {
            if let Some(vol) = m.selected_vol().map(str::to_owned) {
                let cursor = m.nodes.get(m.col).filter(|n| n.role == Role::Archive);
                let archive = match cursor {
                    Some(n) => Some(n.name.clone()),
                    None => archives_of(m, &vol).into_iter().next(),
                };
                match archive {
                    Some(a) => open_diffs(m, a, vol, out),
                    None => {
                        m.status = Some((Level::Warn, "the cluster file has no archive".into()))
                    }
                }
            }
        }
        Action::Focus => {
            m.diffs_focus = match m.diffs_focus {
                DiffsFocus::Diffs => DiffsFocus::Snapshots,
                DiffsFocus::Snapshots => DiffsFocus::Diffs,
            };
        }
        Action::Mark => {
            if m.diffs_focus == DiffsFocus::Diffs {
                let cur = m.sel[View::Diffs.index()];
                m.mark = if m.mark == Some(cur) { None } else { Some(cur) };
            }
        }
        Action::NextArchive => {
            if let Some((a, v)) = m.diffs_target.clone() {
                let list = archives_of(m, &v);
                let i = list.iter().position(|x| *x == a).map_or(0, |i| i + 1);
                if let Some(next) = list.get(i % list.len().max(1)).cloned() {
                    open_diffs(m, next, v, out);
                }
            }
        }
        Action::NextVol => {
            if let Some((a, v)) = m.diffs_target.clone() {
                let vols: Vec<String> = m.vols.keys().cloned().collect();
                let i = vols.iter().position(|x| *x == v).map_or(0, |i| i + 1);
                if let Some(next) = vols.get(i % vols.len().max(1)).cloned() {
                    open_diffs(m, a, next, out);
                }
            }
        }
        Action::Refresh => match m.view {
            View::Diffs => {
                if let Some((a, v)) = m.diffs_target.clone() {
                    open_diffs(m, a, v, out);
                }
            }
            View::Cluster => {
                if let Some(n) = m.selected_node().map(|n| n.name.clone()) {
                    resubscribe_or_snapshot(m, &n, out);
                }
            }
            _ => {
                let names: Vec<String> = m.nodes.iter().map(|n| n.name.clone()).collect();
                for n in names {
                    resubscribe_or_snapshot(m, &n, out);
                }
            }
        },
    }
}

fn resubscribe_or_snapshot(m: &mut Model, node: &str, out: &mut Vec<Effect>) {
    match m.node(node).map(|n| n.reach.clone()) {
        Some(Reach::Up) => snapshot_node(m, node, out),
        Some(Reach::Down { .. }) => out.push(Effect::Subscribe {
            node: node.to_owned(),
            delay_ms: 0,
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(6), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
    }

    #[test]
    fn log_usage_lines_and_uptimes_parse() {
        let (v, u) = parse_log_usage("name:vol\tusage_pb:10\tcapacity_pb:100\tpbs:4096").unwrap();
        assert_eq!(v, "vol");
        assert_eq!((u.usage_pb, u.capacity_pb, u.pbs), (10, 100, Some(4096)));
        assert_eq!(parse_log_usage("name:vol\tusage_pb:x\tcapacity_pb:1"), None);
        assert_eq!(parse_log_usage("garbage"), None);
        let t = "name:v\tdest:a0\tkind:storage\tdest_kind:archive\tgid:9\tts:x\tdest_gid:7\t\
                 dest_ts:y\tts_delta:12\tage:1";
        assert_eq!(
            parse_ts_delta(t),
            Some((
                "v".into(),
                "a0".into(),
                TsDelta {
                    gid: 9,
                    dest_gid: 7,
                    secs: 12
                }
            ))
        );
        assert_eq!(parse_ts_delta(&t.replace("dest_gid:7", "dest_gid:-")), None);
        let l = |s: &str| vec![s.to_owned()];
        assert_eq!(
            parse_uptime(&l("proxy p0 uptime 42s bg 1 fg-free 2")),
            Some(42)
        );
        assert_eq!(parse_uptime(&l("storage s0\tuptime:7")), Some(7));
        assert_eq!(parse_uptime(&l("archive a0 (file backend)")), None);
    }
}
