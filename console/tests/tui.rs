//! The terminal UI without a terminal: pure updates (a key or an event in, the model and
//! the effects out), views against ratatui's `Buffer`, and whole-screen snapshots at
//! fixed sizes (insta + `TestBackend`).

mod common;

use common::*;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use walb_console::client::StatusAnswer;
use walb_console::exec::{parse_line, ExecCmd};
use walb_console::tui::model::{DiffsFocus, Lag, Level, Mode, Model, Reach, View};
use walb_console::tui::update::{init, update, Answer, Ask, Effect, LiveEffect, LiveMsg, Msg};
use walb_console::tui::view;
use walb_wire::msg::{TsDeltaRow, VolumeState};
use walb_wire::{Event, Role};

fn palette(m: &mut Model, line: &str) -> Vec<Effect> {
    key(m, KeyCode::Char(':'));
    chars(m, line);
    key(m, KeyCode::Enter)
}

fn render(m: &Model, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(m, f)).unwrap();
    t
}

fn row(buf: &Buffer, y: u16) -> String {
    (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol().to_owned())
        .collect::<String>()
}

fn screen(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| row(buf, y))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The position of the first occurrence of `s` on the screen.
fn find(buf: &Buffer, s: &str) -> Option<(u16, u16)> {
    for y in 0..buf.area.height {
        let r: Vec<String> = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_owned())
            .collect();
        let line: String = r.concat();
        if let Some(byte) = line.find(s) {
            let x = line[..byte].chars().count() as u16;
            return Some((x, y));
        }
    }
    None
}

fn runs(effects: &[Effect]) -> Vec<&ExecCmd> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Run { cmd, .. } => Some(cmd),
            _ => None,
        })
        .collect()
}

fn asks<'a>(effects: &'a [Effect], node: &str) -> Vec<&'a Ask> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Live(LiveEffect::Ask { node: n, ask, .. }) if n == node => Some(ask),
            _ => None,
        })
        .collect()
}

// ----------------------------------------------------------------------------------
// Updates

#[test]
fn start_subscribes_to_every_node_and_a_subscription_asks_for_a_snapshot() {
    let mut m = Model::new(&cluster());
    let e = init(&mut m);
    let subs: Vec<&str> = e
        .iter()
        .filter_map(|e| match e {
            Effect::Live(LiveEffect::Subscribe { node, delay_ms: 0 }) => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(subs, ["s0", "p0", "a0"]);
    let e = update(&mut m, Msg::Live(LiveMsg::Subscribed { node: "s0".into() }));
    let a = asks(&e, "s0");
    assert!(a.contains(&&Ask::Hello) && a.contains(&&Ask::Vols), "{a:?}");
    assert!(a.contains(&&Ask::LogUsage), "{a:?}");
    assert!(a.contains(&&Ask::TsDelta), "{a:?}");
    assert_eq!(m.node("s0").unwrap().reach, Reach::Up);
    // The volume list asks each volume's state and what the role has of it.
    let e = reply(&mut m, "s0", Ask::Vols, Answer::Names(vec!["vol".into()]));
    let a = asks(&e, "s0");
    assert!(a.contains(&&Ask::State { vol: "vol".into() }), "{a:?}");
    assert!(a.contains(&&Ask::Overflow { vol: "vol".into() }), "{a:?}");
    assert!(m.vols.contains_key("vol"));
}

#[test]
fn events_update_the_grid_and_the_log_and_older_replies_do_not_undo_them() {
    let mut m = tutorial();
    let seq_before = m.seq;
    state(&mut m, "s0", "vol", "StopTarget");
    assert_eq!(
        m.vols["vol"].state("s0").map(VolumeState::name),
        Some("StopTarget")
    );
    let last = m.log.back().unwrap();
    assert_eq!(last.text, "Target → StopTarget");
    assert_eq!(last.node.as_deref(), Some("s0"));
    // A reply to a question asked before the event is older than it.
    update(
        &mut m,
        Msg::Live(LiveMsg::Reply {
            node: "s0".into(),
            seq: seq_before,
            ask: Ask::State { vol: "vol".into() },
            result: Ok(Answer::State(vstate("s0", "Target"))),
        }),
    );
    assert_eq!(
        m.vols["vol"].state("s0").map(VolumeState::name),
        Some("StopTarget")
    );
    // A new volume appears with its first event.
    state(&mut m, "a0", "new", "SyncReady");
    assert_eq!(
        m.vols["new"].state("a0").map(VolumeState::name),
        Some("SyncReady")
    );
}

/// A state name the console does not know (a newer daemon's, or another role's) changes
/// no cell: it is logged as a warning that names it.
#[test]
fn an_unknown_state_name_changes_nothing_and_is_logged() {
    let mut m = tutorial();
    let before = m.vols["vol"].cells.clone();
    state(&mut m, "p0", "vol", "Archived");
    state(&mut m, "s0", "vol", "Hibernating");
    assert_eq!(m.vols["vol"].cells, before);
    let warned: Vec<&str> = m
        .log
        .iter()
        .filter(|l| l.level == Level::Warn)
        .map(|l| l.text.as_str())
        .collect();
    assert!(
        warned.iter().any(|t| t.contains("Archived"))
            && warned.iter().any(|t| t.contains("Hibernating")),
        "{warned:?}"
    );
}

/// An older daemon's status lines are shown as they are, and no uptime is read from them.
#[test]
fn an_older_daemons_status_lines_are_shown_not_parsed() {
    let mut m = tutorial();
    let lines = vec!["proxy p0 uptime 3500s bg 0 fg-free 2".to_owned()];
    reply(
        &mut m,
        "p0",
        Ask::Hello,
        Answer::Hello {
            version: "walb-proxy 0.0.9".into(),
            pid: 7,
            status: Some(StatusAnswer::Lines(lines.clone())),
        },
    );
    let p0 = m.node("p0").unwrap();
    assert_eq!(p0.status, lines);
    assert_eq!(p0.uptime_s, None);
    // A typed summary gives the uptime.
    assert_eq!(m.node("a0").unwrap().uptime_s, Some(93_000));
}

#[test]
fn the_storages_ts_delta_gives_the_lag_and_ticks_ask_for_it_again() {
    let mut m = tutorial();
    // Seen from here: s0 at gid 10, a0 at 8, 35 s apart.
    assert_eq!(m.vols["vol"].lag("a0"), Some(Lag { gids: 2, secs: 35 }));
    // s0 has moved on since, and measured a0 behind it.
    let row = |vol: &str, gid, dest_snap| TsDeltaRow {
        vol: vol.into(),
        dest: "a0".into(),
        kind: Role::Storage,
        dest_kind: Role::Archive,
        gid,
        ts_s: TS,
        dest_snap,
        age_s: Some(4),
    };
    let rows = vec![row("vol", 12, Some((8, TS - 60))), row("db", 3, None)];
    reply(&mut m, "s0", Ask::TsDelta, Answer::TsDelta(rows));
    assert_eq!(m.vols["vol"].lag("a0"), Some(Lag { gids: 4, secs: 60 }));
    // An archive side not gathered yet is no measure.
    assert!(m.vols["db"].ts_delta.is_empty());
    // No event says it changed: ticks ask again, at most every 10 s.
    m.clock(T0 + 20_000);
    let e = update(&mut m, Msg::Live(LiveMsg::Tick));
    assert!(asks(&e, "s0").contains(&&Ask::TsDelta), "{e:?}");
    assert!(asks(&e, "a0").is_empty(), "{e:?}");
    let e = update(&mut m, Msg::Live(LiveMsg::Tick));
    assert!(asks(&e, "s0").is_empty(), "{e:?}");
    m.clock(T0 + 29_000);
    let e = update(&mut m, Msg::Live(LiveMsg::Tick));
    assert!(asks(&e, "s0").is_empty(), "{e:?}");
    m.clock(T0 + 30_000);
    let e = update(&mut m, Msg::Live(LiveMsg::Tick));
    assert!(asks(&e, "s0").contains(&&Ask::TsDelta), "{e:?}");
}

#[test]
fn progress_makes_a_task_with_throughput_and_time_left() {
    let m = tutorial();
    let t = m
        .tasks
        .iter()
        .find(|t| t.op == "full-sync")
        .expect("a full-sync task");
    assert_eq!(t.node, "a0");
    assert!(t.running());
    // 40960 lb (20 MiB) in 4 s.
    assert_eq!(t.rate_bps, Some(5.0 * 1024.0 * 1024.0));
    // 90112 lb (44 MiB) left at 5 MiB/s.
    assert_eq!(t.eta_s(), Some(9));
    assert_eq!(m.running_tasks("a0"), 1);
}

#[test]
fn a_state_bound_task_ends_when_the_archive_leaves_its_state() {
    let mut m = tutorial();
    event(
        &mut m,
        "a0",
        Event::Progress {
            vol: "db".into(),
            op: "full-sync".into(),
            done_lb: 131_072,
            total_lb: 131_072,
        },
    );
    assert!(m.tasks.iter().any(|t| t.op == "full-sync" && t.running()));
    let e = state(&mut m, "a0", "db", "Archived");
    let t = m.tasks.iter().find(|t| t.op == "full-sync").unwrap();
    let end = t.end.as_ref().expect("ended");
    assert!(end.ok, "{end:?}");
    assert!(asks(&e, "a0").contains(&&Ask::LatestSnap {
        vol: Some("db".into())
    }));
    // A rollback at 30% is a failure.
    state(&mut m, "a0", "db", "FullSync");
    event(
        &mut m,
        "a0",
        Event::Progress {
            vol: "db".into(),
            op: "full-sync".into(),
            done_lb: 39_321,
            total_lb: 131_072,
        },
    );
    state(&mut m, "a0", "db", "SyncReady");
    let t = m.tasks.iter().rev().find(|t| t.op == "full-sync").unwrap();
    let end = t.end.as_ref().unwrap();
    assert!(!end.ok);
    assert_eq!(end.message, "ended in SyncReady at 30%");
}

#[test]
fn a_failed_restore_ends_its_task_with_the_daemons_error() {
    let mut m = tutorial();
    let restore = |vol: &str, done_lb| Event::Progress {
        vol: vol.into(),
        op: "restore".into(),
        done_lb,
        total_lb: 100,
    };
    event(&mut m, "a0", restore("vol", 40));
    assert!(m.tasks.iter().any(|t| t.op == "restore" && t.running()));
    event(
        &mut m,
        "a0",
        Event::Failed {
            vol: "vol".into(),
            op: "restore".into(),
            error: "restore of gid 7: no space left on device".into(),
        },
    );
    let t = m.tasks.iter().find(|t| t.op == "restore").unwrap();
    let end = t.end.as_ref().expect("the failure ends the task");
    assert!(!end.ok);
    assert!(end.message.contains("no space left"), "{end:?}");
    assert_eq!(m.running_tasks("a0"), 1, "the full-sync is still running");
    assert!(m
        .log
        .iter()
        .any(|l| l.level == Level::Error && l.text.contains("no space left")));
}

#[test]
fn queued_operations_show_their_place_until_they_run() {
    let mut m = tutorial();
    let queue = |vol: &str, ahead| Event::Queue {
        vol: vol.into(),
        op: "restore".into(),
        ahead,
        running: 2,
        slots: 2,
    };
    event(&mut m, "a0", queue("vol", Some(1)));
    event(&mut m, "a0", queue("db", Some(0)));
    let waiting = |m: &Model, vol: &str| {
        m.tasks
            .iter()
            .find(|t| t.op == "restore" && t.vol.as_deref() == Some(vol))
            .and_then(|t| t.queued)
            .map(|q| q.ahead)
    };
    assert_eq!(waiting(&m, "vol"), Some(1));
    assert_eq!(waiting(&m, "db"), Some(0));
    m.view = View::Tasks;
    let screen = snap_at(&m, 100, 24);
    assert!(screen.contains("queued #2"), "{screen}");
    assert!(screen.contains("waiting: 2/2 slots busy"), "{screen}");
    assert!(
        screen.contains("(1 running, 2 queued, 3 in all)"),
        "{screen}"
    );
    // The line moves, then the task gets its slot and reports progress.
    event(&mut m, "a0", queue("vol", Some(0)));
    assert_eq!(waiting(&m, "vol"), Some(0));
    event(&mut m, "a0", queue("vol", None));
    assert_eq!(waiting(&m, "vol"), None);
    assert!(m
        .tasks
        .iter()
        .any(|t| t.op == "restore" && t.vol.as_deref() == Some("vol") && t.running()));
    event(
        &mut m,
        "a0",
        Event::Progress {
            vol: "db".into(),
            op: "restore".into(),
            done_lb: 10,
            total_lb: 100,
        },
    );
    assert_eq!(waiting(&m, "db"), None, "progress means it runs");
    let screen = snap_at(&m, 100, 24);
    assert!(!screen.contains("queued"), "{screen}");
}

#[test]
fn unknown_operations_still_become_tasks() {
    let mut m = tutorial();
    event(
        &mut m,
        "a0",
        Event::Progress {
            vol: "vol".into(),
            op: "resize".into(),
            done_lb: 5,
            total_lb: 10,
        },
    );
    let t = m.tasks.iter().find(|t| t.op == "resize").unwrap();
    assert_eq!(t.label(), "resize");
    assert_eq!(t.ratio(), Some(0.5));
}

#[test]
fn a_lost_daemon_is_retried_with_backoff_and_logged_once() {
    let mut m = tutorial();
    let e = update(
        &mut m,
        Msg::Live(LiveMsg::Disconnected {
            node: "p0".into(),
            error: "connection lost".into(),
        }),
    );
    assert_eq!(
        e,
        [Effect::Live(LiveEffect::Subscribe {
            node: "p0".into(),
            delay_ms: 1000
        })]
    );
    let e = update(
        &mut m,
        Msg::Live(LiveMsg::Disconnected {
            node: "p0".into(),
            error: "no answer".into(),
        }),
    );
    assert_eq!(
        e,
        [Effect::Live(LiveEffect::Subscribe {
            node: "p0".into(),
            delay_ms: 2000
        })]
    );
    let errors = m
        .log
        .iter()
        .filter(|l| l.level == Level::Error && l.node.as_deref() == Some("p0"))
        .count();
    assert_eq!(errors, 1);
    update(&mut m, Msg::Live(LiveMsg::Subscribed { node: "p0".into() }));
    assert_eq!(m.node("p0").unwrap().failures, 0);
}

#[test]
fn a_diff_list_event_asks_for_the_latest_snapshot_and_the_proxy_queues() {
    let mut m = tutorial();
    let e = event(
        &mut m,
        "a0",
        Event::DiffList {
            vol: "vol".into(),
            diffs: vec![diff(0, 10, false, TS, 1)],
        },
    );
    assert!(asks(&e, "a0").contains(&&Ask::LatestSnap {
        vol: Some("vol".into())
    }));
    assert!(asks(&e, "p0").contains(&&Ask::Queue {
        vol: "vol".into(),
        archive: "a0".into()
    }));
    assert_eq!(
        m.vols["vol"].archives["a0"].diffs.as_ref().map(Vec::len),
        Some(1)
    );
}

#[test]
fn keys_switch_views_and_q_quits() {
    let mut m = tutorial();
    for (k, v) in [
        ('2', View::Volumes),
        ('4', View::Tasks),
        ('5', View::Events),
        ('1', View::Cluster),
    ] {
        key(&mut m, KeyCode::Char(k));
        assert_eq!(m.view, v);
    }
    assert_eq!(key(&mut m, KeyCode::Char('q')), [Effect::Quit]);
    assert!(m.quit);
}

#[test]
fn the_palette_runs_exactly_the_exec_commands() {
    let mut m = tutorial();
    let e = palette(&mut m, "restore a0 vol 8");
    let want = parse_line("restore a0 vol 8").unwrap().unwrap();
    assert_eq!(runs(&e), [&want]);
    assert_eq!(m.mode, Mode::Normal);
    let t = m.tasks.last().unwrap();
    assert_eq!(t.command.as_deref(), Some("restore a0 vol 8"));
    assert_eq!(m.history, ["restore a0 vol 8"]);
    // A mistake keeps the palette open with the exec parser's message.
    let e = palette(&mut m, "restore a0 vol");
    assert!(e.is_empty());
    match &m.mode {
        Mode::Palette(p) => {
            assert_eq!(p.input, "restore a0 vol");
            assert_eq!(
                p.error.as_deref(),
                Some("restore: missing GID (usage: restore ARCHIVE VOL GID [--timeout S])")
            );
        }
        other => panic!("{other:?}"),
    }
    key(&mut m, KeyCode::Esc);
    assert_eq!(m.mode, Mode::Normal);
    // Tab completes from the model; up recalls history.
    key(&mut m, KeyCode::Char(':'));
    chars(&mut m, "del-r");
    key(&mut m, KeyCode::Tab);
    chars(&mut m, "a");
    key(&mut m, KeyCode::Tab); // the only archive
    key(&mut m, KeyCode::Tab); // db
    key(&mut m, KeyCode::Tab); // vol
    match &m.mode {
        Mode::Palette(p) => assert_eq!(p.input, "del-restored a0 vol"),
        other => panic!("{other:?}"),
    }
    chars(&mut m, " ");
    key(&mut m, KeyCode::Tab);
    match &m.mode {
        Mode::Palette(p) => {
            assert_eq!(p.input, "del-restored a0 vol 0");
            assert_eq!(p.candidates, ["0", "1", "2", "3", "4", "5", "6", "7", "8"]);
        }
        other => panic!("{other:?}"),
    }
    key(&mut m, KeyCode::Char('u'));
    update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    );
    key(&mut m, KeyCode::Up);
    match &m.mode {
        Mode::Palette(p) => assert_eq!(p.input, "restore a0 vol 8"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn destructive_commands_ask_first_and_name_what_is_lost() {
    let mut m = tutorial();
    let e = palette(&mut m, "clear a0 vol");
    assert!(runs(&e).is_empty());
    let Mode::Confirm(c) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    let text = c.loss.join("\n");
    for want in [
        "a0 forgets volume vol",
        "base image of vol on a0 (<|0|>-",
        "8 diffs",
        "restorable snapshots: 1 2 7 8",
        "restored images: 8",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    assert!(key(&mut m, KeyCode::Char('n')).is_empty());
    assert_eq!(m.mode, Mode::Normal);
    palette(&mut m, "clear a0 vol");
    let e = key(&mut m, KeyCode::Char('y'));
    assert_eq!(runs(&e).len(), 1);
    // Every destructive command of the issue asks.
    for line in [
        "reset s0 vol",
        "apply a0 vol 7",
        "del-restored a0 vol 8",
        "stop s0 vol force",
        "disable-snapshot a0 vol 7",
        "shutdown a0 force",
    ] {
        let mut m = tutorial();
        let e = palette(&mut m, line);
        assert!(runs(&e).is_empty(), "{line} ran without asking");
        let Mode::Confirm(c) = &m.mode else {
            panic!("{line}: {:?}", m.mode)
        };
        assert!(!c.loss.is_empty());
        if line.starts_with("apply") {
            let t = c.loss.join(" ");
            assert!(t.contains("7 diffs up to gid 7"), "{t}");
            assert!(t.contains("stop being restorable: 1 2"), "{t}");
        }
        if line.starts_with("del-restored") {
            assert!(c.loss[0].contains("/var/walb/a0/vol/restored/8.img"));
        }
        assert!(key(&mut m, KeyCode::Esc).is_empty());
    }
    // Harmless commands run at once.
    let mut m = tutorial();
    assert_eq!(runs(&palette(&mut m, "snapshot s0 vol a0")).len(), 1);
}

#[test]
fn read_only_hides_actions_and_refuses_commands_that_change_the_cluster() {
    let mut m = tutorial();
    m.set_read_only("--read-only");
    let e = palette(&mut m, "stop s0 vol");
    assert!(e.is_empty());
    let Mode::Palette(p) = &m.mode else { panic!() };
    assert!(p.error.as_deref().unwrap().contains("read-only"), "{p:?}");
    key(&mut m, KeyCode::Esc);
    assert_eq!(runs(&palette(&mut m, "restorable a0 vol")).len(), 1);
    key(&mut m, KeyCode::Char('2'));
    key(&mut m, KeyCode::Enter);
    let Mode::Menu(menu) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    for item in &menu.items {
        let c = parse_line(&item.line).unwrap().unwrap();
        assert!(c.is_read_only(), "{}", item.line);
    }
    let t = render(&m, 80, 24);
    assert!(screen(&t).contains(" RO"), "{}", screen(&t));
}

#[test]
fn the_diffs_view_offers_merge_for_a_range_and_restore_apply_for_a_gid() {
    let mut m = tutorial();
    key(&mut m, KeyCode::Char('2'));
    key(&mut m, KeyCode::Down); // db, vol → vol
    assert_eq!(m.selected_vol(), Some("vol"));
    let e = key(&mut m, KeyCode::Char('d'));
    assert_eq!(m.view, View::Diffs);
    assert_eq!(m.diffs_target, Some(("a0".into(), "vol".into())));
    assert!(asks(&e, "a0").contains(&&Ask::Restorable { vol: "vol".into() }));
    // The tutorial's merge: diffs 2 to 7.
    key(&mut m, KeyCode::Down);
    key(&mut m, KeyCode::Down);
    key(&mut m, KeyCode::Char(' '));
    for _ in 0..4 {
        key(&mut m, KeyCode::Down);
    }
    key(&mut m, KeyCode::Enter);
    let Mode::Menu(menu) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    let lines: Vec<&str> = menu.items.iter().map(|i| i.line.as_str()).collect();
    assert!(lines.contains(&"merge a0 vol 2 7"), "{lines:?}");
    let e = key(&mut m, KeyCode::Char('m'));
    assert_eq!(
        runs(&e),
        [&parse_line("merge a0 vol 2 7").unwrap().unwrap()]
    );
    // A gid.
    key(&mut m, KeyCode::Tab);
    assert_eq!(m.diffs_focus, DiffsFocus::Snapshots);
    key(&mut m, KeyCode::Char('G'));
    key(&mut m, KeyCode::Enter);
    let Mode::Menu(menu) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    let lines: Vec<&str> = menu.items.iter().map(|i| i.line.as_str()).collect();
    for want in [
        "restore a0 vol 8",
        "apply a0 vol 8",
        "del-restored a0 vol 8",
        "disable-snapshot a0 vol 8",
    ] {
        assert!(lines.contains(&want), "{want} in {lines:?}");
    }
    // esc backs out of the menu, then out of the view.
    key(&mut m, KeyCode::Esc);
    assert_eq!(m.mode, Mode::Normal);
    key(&mut m, KeyCode::Esc);
    assert_eq!(m.view, View::Volumes);
}

#[test]
fn esc_always_backs_out() {
    let mut m = tutorial();
    for open in [
        vec![KeyCode::Char('?')],
        vec![KeyCode::Char(':')],
        vec![KeyCode::Char('/'), KeyCode::Char('x')],
        vec![KeyCode::Enter],
    ] {
        for k in open {
            key(&mut m, k);
        }
        assert_ne!(m.mode, Mode::Normal);
        key(&mut m, KeyCode::Esc);
        assert_eq!(m.mode, Mode::Normal);
        assert_eq!(m.current_filter(), "");
    }
}

#[test]
fn the_filter_narrows_the_view() {
    let mut m = tutorial();
    key(&mut m, KeyCode::Char('2'));
    key(&mut m, KeyCode::Char('/'));
    chars(&mut m, "full");
    assert_eq!(m.visible_vols(), ["db"]);
    key(&mut m, KeyCode::Enter);
    assert_eq!(m.mode, Mode::Normal);
    assert_eq!(m.visible_vols(), ["db"]);
    key(&mut m, KeyCode::Char('/'));
    key(&mut m, KeyCode::Esc);
    assert_eq!(m.visible_vols(), ["db", "vol"]);
    // Events: inverted.
    key(&mut m, KeyCode::Char('5'));
    key(&mut m, KeyCode::Char('/'));
    chars(&mut m, "!info");
    assert!(m.visible_log().iter().all(|l| l.level != Level::Info));
}

#[test]
fn a_finished_command_reports_and_refreshes_what_it_touched() {
    let mut m = tutorial();
    let e = palette(&mut m, "restorable a0 vol");
    let Effect::Run { id, .. } = e[0].clone() else {
        panic!()
    };
    let outcome = walb_console::exec::Outcome::Lines(vec!["1 x 1".into(), "2 y 1".into()]);
    update(
        &mut m,
        Msg::CommandDone {
            id,
            result: Ok(outcome),
        },
    );
    assert!(matches!(&m.mode, Mode::Output(o) if o.lines.len() == 2));
    key(&mut m, KeyCode::Esc);
    // A failed del-restored says so and asks the archive again.
    palette(&mut m, "del-restored a0 vol 8");
    let e = key(&mut m, KeyCode::Char('y'));
    let Effect::Run { id, .. } = e[0].clone() else {
        panic!()
    };
    let e = update(
        &mut m,
        Msg::CommandDone {
            id,
            result: Err("a0: volume vol has no restored image 8".into()),
        },
    );
    assert!(asks(&e, "a0").contains(&&Ask::Restored { vol: "vol".into() }));
    let (lvl, msg) = m.status.clone().unwrap();
    assert_eq!(lvl, Level::Error);
    assert!(msg.contains("no restored image 8"), "{msg}");
    let t = m.tasks.iter().find(|t| t.id == id).unwrap();
    assert!(!t.end.as_ref().unwrap().ok);
}

// ----------------------------------------------------------------------------------
// Views against the buffer

#[test]
fn the_volume_grid_highlights_temporary_states_and_shows_the_log_gauge() {
    let mut m = tutorial();
    m.view = View::Volumes;
    m.col = 2;
    let t = render(&m, 80, 24);
    let buf = t.backend().buffer();
    let (x, y) = find(buf, "FullSync").expect("FullSync on screen");
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
    let (x, y) = find(buf, "Target").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Green);
    // vol's log is 1536 of 8192 pb: 19%.
    assert!(find(buf, "█▏░░░░  19%").is_some(), "{}", screen(&t));
    // Lag: storage at gid 10, archive at 8, 35 s apart.
    assert!(find(buf, "2g/35s").is_some(), "{}", screen(&t));
    // The detail pane of the selected volume (db).
    assert!(find(buf, " db ").is_some());
    // The footer lists every view and the cursor node column is reversed.
    let foot = row(buf, 23);
    for v in View::ALL {
        assert!(foot.contains(v.title()), "{foot}");
    }
    let (x, y) = find(buf, "a0").unwrap();
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn without_colour_nothing_is_coloured_and_states_stay_readable() {
    let mut m = tutorial();
    m.plain = true;
    for v in View::ALL {
        m.view = v;
        let t = render(&m, 80, 24);
        let buf = t.backend().buffer();
        for c in buf.content() {
            assert_eq!(c.fg, Color::Reset, "{v:?}: {c:?}");
            assert_eq!(c.bg, Color::Reset, "{v:?}: {c:?}");
        }
    }
    m.view = View::Volumes;
    let t = render(&m, 80, 24);
    assert!(find(t.backend().buffer(), "FullSync*").is_some());
}

#[test]
fn header_and_footer_list_the_views_and_keys() {
    let mut m = tutorial();
    m.view = View::Diffs;
    let t = render(&m, 80, 24);
    let buf = t.backend().buffer();
    let head = row(buf, 0);
    for want in ["tab focus", "space mark", "enter actions", "a archive"] {
        assert!(head.contains(want), "{want} in {head}");
    }
    let foot = row(buf, 23);
    for want in [
        "1 Cluster",
        "2 Volumes",
        "3 Diffs",
        "4 Tasks",
        "5 Events",
        "? help",
        ": cmd",
        "/ filter",
        "q quit",
    ] {
        assert!(foot.contains(want), "{want} in {foot}");
    }
    let (x, y) = find(buf, "3 Diffs").unwrap();
    assert!(buf[(x, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn a_busy_cluster_fits_80x24_and_scrolls_node_columns() {
    let c = big_cluster(8, 1);
    let mut m = Model::new(&c);
    m.clock(T0);
    for i in 0..40 {
        for n in &c.nodes {
            reply(
                &mut m,
                &n.name,
                Ask::State {
                    vol: format!("vol{i:03}"),
                },
                Answer::State(vstate(&n.name, "Clear")),
            );
        }
    }
    m.view = View::Volumes;
    m.col = 9; // a0, the last column
    let t = render(&m, 80, 24);
    let s = screen(&t);
    assert!(s.contains("a0"), "{s}");
    assert!(s.contains('◀'), "{s}");
    assert!(!s.contains(" s0 "), "{s}");
    // The selection stays visible when it moves past the screen.
    for _ in 0..30 {
        key(&mut m, KeyCode::Down);
    }
    let t = render(&m, 80, 24);
    assert!(screen(&t).contains("vol030"));
}

// ----------------------------------------------------------------------------------
// Whole screens

fn snap_at(m: &Model, w: u16, h: u16) -> String {
    let t = render(m, w, h);
    format!("{}", t.backend())
}

#[test]
fn screens_at_80x24() {
    let mut m = tutorial();
    for v in View::ALL {
        m.view = v;
        if v == View::Diffs {
            m.diffs_target = Some(("a0".into(), "vol".into()));
        }
        insta::assert_snapshot!(format!("80x24_{}", v.title()), snap_at(&m, 80, 24));
    }
}

#[test]
fn screens_at_120x40() {
    let mut m = tutorial();
    m.diffs_target = Some(("a0".into(), "vol".into()));
    for v in View::ALL {
        m.view = v;
        insta::assert_snapshot!(format!("120x40_{}", v.title()), snap_at(&m, 120, 40));
    }
}

#[test]
fn overlays_at_80x24() {
    let mut m = tutorial();
    m.view = View::Volumes;
    key(&mut m, KeyCode::Char('?'));
    insta::assert_snapshot!("80x24_help", snap_at(&m, 80, 24));
    key(&mut m, KeyCode::Esc);
    key(&mut m, KeyCode::Char(':'));
    chars(&mut m, "restore a0 vol ");
    key(&mut m, KeyCode::Tab);
    insta::assert_snapshot!("80x24_palette", snap_at(&m, 80, 24));
    key(&mut m, KeyCode::Esc);
    palette(&mut m, "clear a0 vol");
    insta::assert_snapshot!("80x24_confirm", snap_at(&m, 80, 24));
    key(&mut m, KeyCode::Esc);
    key(&mut m, KeyCode::Down);
    m.col = 0;
    key(&mut m, KeyCode::Enter);
    insta::assert_snapshot!("80x24_menu", snap_at(&m, 80, 24));
}

// ----------------------------------------------------------------------------------
// The dump and the metrics of the same model

#[test]
fn the_dump_shows_nodes_volumes_lag_and_tasks_as_plain_text() {
    let m = tutorial();
    let text = walb_console::tui::dump::lines(&m).join("\n");
    for want in [
        "cluster tutorial (cluster.toml)",
        "a0    archive  localhost:10200  up     0.1.0    1d01h   1",
        "vol  Target    Started  Archived  19%  -      2g/35s",
        "lag 2 gids 35 s",
        "full backup  a0    db   31%   5.0M/s  9s",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

#[test]
fn metrics_carry_states_lag_queues_and_throughput() {
    let m = tutorial();
    let text = walb_console::metrics::render(&m);
    for want in [
        "walb_volume_state{node=\"a0\",role=\"archive\",vol=\"db\",state=\"FullSync\"} 1",
        "walb_volume_busy{node=\"a0\",vol=\"db\"} 1",
        "walb_archive_lag_gids{node=\"a0\",vol=\"vol\"} 2",
        "walb_archive_lag_seconds{node=\"a0\",vol=\"vol\"} 35",
        "walb_archive_latest_gid{node=\"a0\",vol=\"vol\"} 8",
        "walb_proxy_queue_diffs{node=\"p0\",vol=\"vol\",archive=\"a0\"} 2",
        "walb_proxy_queue_bytes{node=\"p0\",vol=\"vol\",archive=\"a0\"} 12408",
        "walb_log_usage_ratio{node=\"s0\",vol=\"vol\"} 0.1875",
        "walb_task_throughput_bytes_per_second{node=\"a0\",vol=\"db\",op=\"full-sync\"} 5242880",
        "walb_task_remaining_seconds{node=\"a0\",vol=\"db\",op=\"full-sync\"} 9",
        "walb_node_uptime_seconds{node=\"s0\"} 3606",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    // Every family is announced once, before its samples.
    let mut seen = std::collections::HashSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(seen.insert(l.to_owned()), "{l} twice");
    }
}

#[test]
fn an_overflow_names_the_one_command_that_recovers_given_the_archive() {
    // s0 reports an overflow while a0 is in `a0_state`: the error line the log shows.
    let overflow_line = |a0_state: &str| {
        let mut m = tutorial();
        state(&mut m, "a0", "vol", a0_state);
        let overflow = Ask::Overflow { vol: "vol".into() };
        reply(&mut m, "s0", overflow, Answer::Bool(true));
        let last = m.log.back().unwrap();
        assert_eq!(last.level, Level::Error);
        last.text.clone()
    };
    // a0 holds the volume: hash-backup, never full-backup (a0 would refuse it).
    let held = overflow_line("Archived");
    assert!(held.contains("run `hash-backup s0 vol`"), "{held}");
    assert!(!held.contains("full-backup"), "{held}");
    // a0 holds nothing: the full backup is the one.
    let empty = overflow_line("Clear");
    assert!(empty.contains("run `full-backup s0 vol`"), "{empty}");
}
