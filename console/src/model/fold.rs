//! The fold: `update(&mut Live, Msg) -> Vec<Effect>`, pure.
//!
//! A [`Msg`] is a daemon's subscription starting or ending, one of its events, a query's
//! reply, or a clock tick. The fold changes the model and returns [`Effect`]s to carry
//! out: subscribe to a daemon (again, after a backoff) or ask it something. Queries are
//! only sent in answer to something: a subscription starting (the snapshot the events
//! then keep current), an event whose consequences no event carries (a new diff list
//! means a new latest snapshot), a command ending ([`refresh_vol`], [`snapshot_node`]).

use walb_wire::msg::{
    ArchiveState, LogUsageRow, MetaDiffDto, SnapshotInfo, TsDeltaRow, VolumeState,
};
use walb_wire::{ErrorCode, Event, Role};

use super::ask::{Answer, Ask, AskError};
use super::{
    ArchiveVol, CellState, Level, Live, LogUsage, Ms, Queue, QueuePos, Reach, Snap, Task, TaskEnd,
    TsDelta, ENDED_TASKS_MAX, TASK_KINDS,
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

/// Asks `node` for its latest snapshot of `vol`.
fn ask_latest(m: &mut Live, out: &mut Vec<Effect>, node: &str, vol: &str) {
    ask(
        m,
        out,
        node,
        Ask::LatestSnap {
            vol: Some(vol.to_owned()),
        },
    );
}

/// The queries that bring `vol` on `node` up to date after a change no event describes.
pub fn refresh_vol(m: &mut Live, node: &str, vol: &str, out: &mut Vec<Effect>) {
    let Some(role) = m.role(node) else { return };
    let v = vol.to_owned();
    ask(m, out, node, Ask::State { vol: v.clone() });
    match role {
        Role::Storage => {
            ask_latest(m, out, node, &v);
            ask(m, out, node, Ask::LogUsage);
            ask(m, out, node, Ask::TsDelta);
            ask(m, out, node, Ask::Overflow { vol: v });
        }
        Role::Proxy => ask(m, out, node, Ask::ArchiveList { vol: v }),
        _ => {
            ask_latest(m, out, node, &v);
            ask(m, out, node, Ask::Diffs { vol: v.clone() });
            ask(m, out, node, Ask::Restorable { vol: v.clone() });
            ask(m, out, node, Ask::Restored { vol: v.clone() });
            ask(m, out, node, Ask::Retention { vol: v.clone() });
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

/// A volume's state changed at `node`: the cell, the log, the tasks bound to archive
/// states, and what the new state changes beyond the state.
fn on_state(
    m: &mut Live,
    node: &str,
    role: Role,
    vol: String,
    state: VolumeState,
    out: &mut Vec<Effect>,
) {
    let (now, seq) = (m.now, m.seq);
    let v = m.vol_mut(&vol);
    let prev = v.cells.get(node).map(|c| c.state);
    v.cells.insert(
        node.to_owned(),
        CellState {
            state,
            since: now,
            seq,
        },
    );
    if state.is_clear() {
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
        format!("{} → {state}", prev.map_or("?", VolumeState::name)),
    );
    // Tasks bound to archive states.
    if let VolumeState::Archive(a) = state {
        if let Some(k) = TASK_KINDS.iter().find(|k| k.states.contains(&a)) {
            start_task(m, node, &vol, k.op);
        }
    }
    if state.is_steady() {
        end_bound_tasks(m, node, &vol, state);
        if !state.is_clear() {
            ask_after_state(m, node, role, &vol, prev, out);
        }
    }
}

/// A steady `state` ends the running tasks of `node`'s `vol` that archive states bound.
fn end_bound_tasks(m: &mut Live, node: &str, vol: &str, state: VolumeState) {
    let bound: Vec<usize> = m
        .tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.running()
                && t.command.is_none()
                && t.node == node
                && t.vol.as_deref() == Some(vol)
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
}

/// What a new steady state (not Clear) changes beyond the state: the storage's latest
/// snapshot and overflow flag, the proxy's archives, the archive's latest snapshot and
/// diffs (not after receiving a diff: its event brings the list).
fn ask_after_state(
    m: &mut Live,
    node: &str,
    role: Role,
    vol: &str,
    prev: Option<VolumeState>,
    out: &mut Vec<Effect>,
) {
    match role {
        Role::Storage => {
            ask_latest(m, out, node, vol);
            ask(
                m,
                out,
                node,
                Ask::Overflow {
                    vol: vol.to_owned(),
                },
            );
        }
        Role::Proxy => ask(
            m,
            out,
            node,
            Ask::ArchiveList {
                vol: vol.to_owned(),
            },
        ),
        _ => {
            ask_latest(m, out, node, vol);
            if prev != Some(VolumeState::Archive(ArchiveState::WdiffRecv)) {
                ask(
                    m,
                    out,
                    node,
                    Ask::Diffs {
                        vol: vol.to_owned(),
                    },
                );
            }
        }
    }
}

/// A storage's log usage of `vol` changed: a transfer happened, so its latest snapshot
/// moved and the queues of its proxies grew.
fn on_log_usage(
    m: &mut Live,
    node: &str,
    vol: String,
    usage_pb: u64,
    capacity_pb: u64,
    out: &mut Vec<Effect>,
) {
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
    ask_latest(m, out, node, &vol);
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

/// An archive's diff list of `vol` changed: its latest snapshot, and what the Diffs view
/// (or a snapshot) shows, and the queues towards it.
fn on_diff_list(
    m: &mut Live,
    node: &str,
    vol: String,
    diffs: Vec<MetaDiffDto>,
    out: &mut Vec<Effect>,
) {
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
    ask_latest(m, out, node, &vol);
    if m.diffs_target.as_ref() == Some(&(node.to_owned(), vol.clone())) || m.eager {
        ask(m, out, node, Ask::Restorable { vol: vol.clone() });
        ask(m, out, node, Ask::Base { vol: vol.clone() });
        ask(m, out, node, Ask::Retention { vol: vol.clone() });
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

/// The latest snapshots `node` reports, per volume.
fn on_latest_snaps(m: &mut Live, node: &str, role: Role, snaps: Vec<SnapshotInfo>) {
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

/// The archives a proxy sends `vol` to: queues towards others are forgotten, each one's
/// is asked.
fn on_archive_list(
    m: &mut Live,
    node: &str,
    vol: String,
    archives: Vec<String>,
    out: &mut Vec<Effect>,
) {
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

fn on_event(m: &mut Live, node: &str, event: Event, out: &mut Vec<Effect>) {
    let Some(role) = m.role(node) else { return };
    match event {
        Event::VolState { vol, state, .. } if state.role() == role => {
            on_state(m, node, role, vol, state, out)
        }
        Event::VolState { vol, state, .. } => m.push_log(
            Level::Warn,
            Some(node),
            Some(&vol),
            format!(
                "a {} state from a {role} node: {state} (ignored)",
                state.role()
            ),
        ),
        // A protocol-3 daemon names the state.
        Event::State { vol, state, .. } => match VolumeState::parse(role, &state) {
            Some(s) => on_state(m, node, role, vol, s, out),
            None => m.push_log(
                Level::Warn,
                Some(node),
                Some(&vol),
                format!("a state this console does not know: {state} (upgrade the console)"),
            ),
        },
        Event::LogUsage {
            vol,
            usage_pb,
            capacity_pb,
        } => on_log_usage(m, node, vol, usage_pb, capacity_pb, out),
        Event::DiffList { vol, diffs } => on_diff_list(m, node, vol, diffs, out),
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
        Event::Retention(p) => {
            m.push_log(
                Level::Info,
                Some(node),
                Some(&p.vol),
                format!("retention: {} ({} kept, {} diffs)", p.step, p.kept, p.diffs),
            );
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

/// `node`'s volumes: those it no longer has are Clear there (unless an event since said
/// otherwise); each one's state and what the role shows are asked.
fn on_vols(
    m: &mut Live,
    node: &str,
    role: Role,
    seq: u64,
    names: Vec<String>,
    out: &mut Vec<Effect>,
) {
    // Volumes this node no longer has are Clear there.
    let gone: Vec<String> = m
        .vols
        .values()
        .filter(|v| v.cells.contains_key(node) && !names.contains(&v.name))
        .map(|v| v.name.clone())
        .collect();
    for g in gone {
        if let Some(c) = m.vols.get_mut(&g).and_then(|v| v.cells.get_mut(node)) {
            if let Some(clear) = VolumeState::clear(role).filter(|_| c.seq <= seq) {
                c.state = clear;
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
                let shown = m.diffs_target.as_ref() == Some(&(node.to_owned(), vol.clone()));
                if m.eager || shown {
                    ask(m, out, node, Ask::Restorable { vol: vol.clone() });
                    ask(m, out, node, Ask::Base { vol: vol.clone() });
                    ask(m, out, node, Ask::Retention { vol: vol.clone() });
                    ask(m, out, node, Ask::Restored { vol });
                }
            }
        }
    }
}

/// A volume's state as asked at sequence `seq` (an event seen since wins).
fn on_state_reply(m: &mut Live, node: &str, seq: u64, vol: &str, state: VolumeState) {
    let now = m.now;
    let v = m.vol_mut(vol);
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

/// `node`'s overflow flag of `vol`; a new overflow logs the one command that recovers.
fn on_overflow(m: &mut Live, node: &str, vol: &str, b: bool) {
    let was = m.vol_mut(vol).overflow.insert(node.to_owned(), b);
    if b && was != Some(true) {
        // The one command that recovers, from what the primary archive holds.
        let archive = m
            .nodes
            .iter()
            .find(|n| n.name == node)
            .and_then(|n| n.archive.clone());
        let text = match archive {
            Some(a) => {
                let ast = m
                    .vol_mut(vol)
                    .state(&a)
                    .unwrap_or(VolumeState::Archive(ArchiveState::Archived));
                crate::ops::overflow_recovery(node, vol, &a, ast)
            }
            None => format!("the log of {node} {vol} overflowed: run `hash-backup {node} {vol}`"),
        };
        m.push_log(Level::Error, Some(node), Some(vol), &text);
    }
}

/// A proxy's queue of `vol` towards `archive`; a new send error is logged.
fn on_queue(
    m: &mut Live,
    node: &str,
    vol: &str,
    archive: String,
    diffs: &[MetaDiffDto],
    send_error: bool,
) {
    let q = Queue {
        diffs: diffs.len() as u64,
        bytes: diffs.iter().map(|d| d.size).sum(),
        send_error,
    };
    let was = m
        .vol_mut(vol)
        .queues
        .insert((node.to_owned(), archive.clone()), q);
    if send_error && was.is_none_or(|w| !w.send_error) {
        m.push_log(
            Level::Error,
            Some(node),
            Some(vol),
            format!("sending to {archive} gave up (kick {node} {vol} {archive} retries)"),
        );
    }
}

/// A storage's ts-delta rows: its measure of each archive's lag (rows whose archive
/// side is not known yet are skipped).
fn on_ts_delta(m: &mut Live, node: &str, rows: Vec<TsDeltaRow>) {
    for r in rows {
        let Some((dest_gid, _)) = r.dest_snap else {
            continue;
        };
        let t = TsDelta {
            gid: r.gid,
            dest_gid,
            secs: r.delta_s().unwrap_or(0),
        };
        m.vol_mut(&r.vol)
            .ts_delta
            .insert((node.to_owned(), r.dest), t);
    }
}

/// A storage's log usage of every volume.
fn on_log_usage_rows(m: &mut Live, node: &str, rows: Vec<LogUsageRow>) {
    for r in rows {
        let u = LogUsage {
            usage_pb: r.usage_pb,
            capacity_pb: r.capacity_pb,
            pbs: Some(u64::from(r.pbs)),
        };
        m.vol_mut(&r.vol).log.insert(node.to_owned(), u);
    }
}

/// What `node` holds of `vol` as an archive (created if new).
fn archive_at<'a>(m: &'a mut Live, vol: &str, node: &str) -> &'a mut ArchiveVol {
    m.vol_mut(vol).archives.entry(node.to_owned()).or_default()
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
                n.uptime_s = status.as_ref().and_then(|s| s.uptime_s());
                n.uptime_at = now;
                n.status = status.map(|s| s.lines()).unwrap_or_default();
            }
        }
        (Ask::Vols, Answer::Names(names)) => on_vols(m, node, role, seq, names, out),
        (Ask::State { vol }, Answer::State(state)) => on_state_reply(m, node, seq, &vol, state),
        (Ask::TsDelta, Answer::TsDelta(rows)) => on_ts_delta(m, node, rows),
        (Ask::LogUsage, Answer::LogUsage(rows)) => on_log_usage_rows(m, node, rows),
        (Ask::LatestSnap { .. }, Answer::Snaps(snaps)) => on_latest_snaps(m, node, role, snaps),
        (Ask::Overflow { vol }, Answer::Bool(b)) => on_overflow(m, node, &vol, b),
        (Ask::ArchiveList { vol }, Answer::Names(archives)) => {
            on_archive_list(m, node, vol, archives, out)
        }
        (Ask::Queue { vol, archive }, Answer::Queue { diffs, send_error }) => {
            on_queue(m, node, &vol, archive, &diffs, send_error)
        }
        (Ask::Diffs { vol }, Answer::Diffs(d)) => archive_at(m, &vol, node).diffs = Some(d),
        (Ask::Restorable { vol }, Answer::Snaps(s)) => {
            archive_at(m, &vol, node).restorable = Some(s)
        }
        (Ask::Base { vol }, Answer::Base(b)) => archive_at(m, &vol, node).base = Some(b),
        (Ask::Restored { vol }, Answer::Restored(r)) => archive_at(m, &vol, node).restored = r,
        (Ask::Retention { vol }, Answer::Retention(r)) => {
            archive_at(m, &vol, node).retention = Some(*r)
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
}
