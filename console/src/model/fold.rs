//! The fold: `update(&mut Live, Msg) -> Vec<Effect>`, pure.
//!
//! A [`Msg`] is a daemon's subscription starting or ending, one of its events, a query's
//! reply, or a clock tick. The fold changes the model and returns [`Effect`]s to carry
//! out: subscribe to a daemon (again, after a backoff) or ask it something. Queries are
//! only sent in answer to something: a subscription starting (the snapshot the events
//! then keep current), an event whose consequences no event carries (a new diff list
//! means a new latest snapshot), a command ending ([`refresh_vol`], [`snapshot_node`]).

use walb_wire::{ErrorCode, Event, Role};

use super::ask::{Answer, Ask, AskError};
use super::{
    is_temporary, CellState, Level, Live, LogUsage, Ms, Queue, QueuePos, Reach, Snap, Task,
    TaskEnd, TsDelta, ENDED_TASKS_MAX, TASK_KINDS,
};

/// What happened at a daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
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
    /// The clock (once a second; the model's clock is set before every message).
    Tick,
}

/// What must be done at a daemon.
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
}

/// The longest wait between two subscription attempts.
pub const BACKOFF_MAX_MS: u64 = 30_000;

/// The delay before subscription attempt number `failures + 1`.
pub fn backoff_ms(failures: u32) -> u64 {
    let exp = failures.saturating_sub(1).min(16);
    (1000u64 << exp).min(BACKOFF_MAX_MS)
}

/// The effects that start the console: a subscription to every node.
pub fn init(m: &mut Live) -> Vec<Effect> {
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

/// Asks `node` a question (counted as pending until its reply).
pub fn ask(m: &mut Live, out: &mut Vec<Effect>, node: &str, a: Ask) {
    m.pending += 1;
    out.push(Effect::Ask {
        node: node.to_owned(),
        seq: m.seq,
        ask: a,
    });
}

/// Folds one message into the model.
pub fn update(m: &mut Live, msg: Msg) -> Vec<Effect> {
    let mut out = Vec::new();
    match msg {
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
        Msg::Tick => {
            prune_tasks(m);
            refresh_ts_delta(m, &mut out);
        }
    }
    out
}

/// Asks a node what the events then keep current (its hello, volumes, and by role its
/// log usage, latest snapshots, lag).
pub fn snapshot_node(m: &mut Live, node: &str, out: &mut Vec<Effect>) {
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

fn on_subscribed(m: &mut Live, node: &str, out: &mut Vec<Effect>) {
    let Some(n) = m.node_mut(node) else { return };
    n.reach = Reach::Up;
    n.failures = 0;
    let addr = n.addr.clone();
    m.push_log(Level::Info, Some(node), None, format!("connected ({addr})"));
    snapshot_node(m, node, out);
}

fn on_disconnected(m: &mut Live, node: &str, error: String, out: &mut Vec<Effect>) {
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
pub fn refresh_vol(m: &mut Live, node: &str, vol: &str, out: &mut Vec<Effect>) {
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

fn start_task(m: &mut Live, node: &str, vol: &str, op: &str) -> usize {
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
    m.tasks.push(Task::new(
        id,
        node.to_owned(),
        Some(vol.to_owned()),
        op.to_owned(),
        None,
        m.now,
    ));
    let label = super::task_label(op);
    m.push_log(
        Level::Info,
        Some(node),
        Some(vol),
        format!("{label} started"),
    );
    m.tasks.len() - 1
}

/// Ends task number `i`, successful or not, with its message.
pub fn end_task(m: &mut Live, i: usize, ok: bool, message: String) {
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
fn refresh_ts_delta(m: &mut Live, out: &mut Vec<Effect>) {
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

fn prune_tasks(m: &mut Live) {
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

fn on_event(m: &mut Live, node: &str, event: Event, out: &mut Vec<Effect>) {
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
    m: &mut Live,
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
                // The one command that recovers, from what the primary archive holds.
                let archive = m
                    .nodes
                    .iter()
                    .find(|n| n.name == node)
                    .and_then(|n| n.archive.clone());
                let text = match archive {
                    Some(a) => {
                        let ast = m.vol_mut(&vol).state(&a).unwrap_or("Archived").to_owned();
                        crate::ops::overflow_recovery(node, &vol, &a, &ast)
                    }
                    None => format!(
                        "the log of {node} {vol} overflowed: run `hash-backup {node} {vol}`"
                    ),
                };
                m.push_log(Level::Error, Some(node), Some(&vol), &text);
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
