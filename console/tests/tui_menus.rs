//! Every operator action from the TUI's menus: each action that changes the cluster is
//! offered on the target it applies to, produces exactly the exec command the palette
//! would run, asks for what the target does not give (a prompt, or a choice from the
//! model), and asks first when it is destructive. Pure updates plus `TestBackend` frames.

mod common;

use common::*;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::Terminal;
use walb_console::cluster::Cluster;
use walb_console::exec::commands::BackupCmd;
use walb_console::exec::{parse_line, ExecCmd};
use walb_console::tui::model::{Menu, Mode, Model, Then, View};
use walb_console::tui::update::{update, Answer, Ask, Effect, LiveMsg, Msg};
use walb_console::tui::view;

/// The tutorial's cluster with a second archive, a1, that does not hold `vol` yet.
fn two_archives() -> Model {
    let text = format!(
        "{CLUSTER}\n[[node]]\nname = \"a1\"\nrole = \"archive\"\naddr = \"localhost:10300\"\n"
    );
    let c = Cluster::parse(&text, std::path::Path::new("/etc/walb"), "cluster.toml").unwrap();
    let mut m = tutorial_on(&c);
    update(&mut m, Msg::Live(LiveMsg::Subscribed { node: "a1".into() }));
    reply(&mut m, "a1", Ask::Vols, Answer::Names(vec![]));
    m
}

fn screen(m: &Model) -> String {
    let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
    t.draw(|f| view::draw(m, f)).unwrap();
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn runs(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Run { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect()
}

/// Opens the menu of `vol` on the node in column `col` of the Volumes view (s0, p0, a0,
/// a1), with the keys an operator presses.
fn cell_menu(m: &mut Model, col: usize) -> Menu {
    key(m, KeyCode::Char('2'));
    key(m, KeyCode::Char('g'));
    key(m, KeyCode::Down); // db, vol
    assert_eq!(m.selected_vol(), Some("vol"));
    for _ in 0..4 {
        key(m, KeyCode::Char('h'));
    }
    for _ in 0..col {
        key(m, KeyCode::Char('l'));
    }
    key(m, KeyCode::Enter);
    match &m.mode {
        Mode::Menu(menu) => menu.clone(),
        other => panic!("{other:?}"),
    }
}

fn shown(menu: &Menu) -> Vec<String> {
    menu.items.iter().map(|i| i.shown()).collect()
}

/// Runs `keys` in the open menu and checks the command it runs, or the confirmation it
/// asks (then `y` runs it).
fn expect_run(m: &mut Model, keys: &str, want: &str, asks_first: bool) {
    let e = chars(m, keys);
    if asks_first {
        assert!(runs(&e).is_empty(), "{want} ran without asking");
        let Mode::Confirm(c) = &m.mode else {
            panic!("{want}: {:?}", m.mode)
        };
        assert_eq!(c.line, want);
        assert!(screen(m).contains("this loses:"), "{}", screen(m));
        let e = key(m, KeyCode::Char('y'));
        assert_eq!(runs(&e), [want]);
    } else {
        assert_eq!(runs(&e), [want], "{:?}", m.mode);
    }
    let cmd = parse_line(want).unwrap().unwrap();
    let ran = m.tasks.last().unwrap();
    assert_eq!(ran.command.as_deref(), Some(want));
    assert_eq!(ran.op, cmd.name());
    assert_eq!(m.mode, Mode::Normal);
}

#[test]
fn each_node_and_volume_menu_offers_the_actions_that_apply_to_it() {
    let mut m = two_archives();
    let storage = shown(&cell_menu(&mut m, 0));
    key(&mut m, KeyCode::Esc);
    let proxy = shown(&cell_menu(&mut m, 1));
    key(&mut m, KeyCode::Esc);
    let archive_menu = cell_menu(&mut m, 2);
    let frame = screen(&m);
    let archive = shown(&archive_menu);
    key(&mut m, KeyCode::Esc);
    let clear_archive = shown(&cell_menu(&mut m, 3));
    for (menu, want) in [
        (&storage, "resize s0 vol SIZE"),
        (&storage, "stop s0 vol"),
        (&storage, "hash-backup s0 vol"),
        (&proxy, "kick p0 vol ARCHIVE"),
        (&proxy, "archive-info p0 add vol ARCHIVE"),
        (&proxy, "archive-info p0 delete vol ARCHIVE"),
        (
            &proxy,
            "bind p0 vol storage|proxy|archive [ID...] [--add|--remove]",
        ),
        (&archive, "replicate a0 vol DST"),
        (&archive, "replicate a0 vol --sync DST"),
        (&archive, "replicate a0 vol --resync DST"),
        (&archive, "start-synchronizing a0 vol"),
        (&archive, "stop-synchronizing a0 vol"),
        (&archive, "is-synchronizing a0 vol"),
        (&archive, "bhash a0 vol GID"),
        (&archive, "resize a0 vol SIZE"),
        (&clear_archive, "init-archive a1 vol"),
    ] {
        assert!(menu.iter().any(|l| l == want), "{want} in {menu:?}");
    }
    // Actions stay on their own kind of node.
    for (menu, not) in [
        (&storage, "replicate"),
        (&storage, "kick s0 vol ARCHIVE"),
        (&proxy, "resize"),
        (&proxy, "replicate"),
        (&archive, "kick"),
        (&clear_archive, "replicate"),
        (&clear_archive, "stop"),
        (&clear_archive, "bhash"),
    ] {
        assert!(
            !menu.iter().any(|l| l.starts_with(not)),
            "{not} in {menu:?}"
        );
    }
    // The frame shows the archive's menu with its keys.
    for want in [
        "replicate a0 vol DST",
        "stop-synchronizing a0 vol",
        " b bhash of a snapshot",
    ] {
        assert!(frame.contains(want), "{want}:\n{frame}");
    }
    // A node: init a new volume.
    key(&mut m, KeyCode::Esc);
    key(&mut m, KeyCode::Char('1'));
    key(&mut m, KeyCode::Enter);
    let Mode::Menu(menu) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert!(shown(menu).contains(&"init-storage s0 VOL WDEV".to_owned()));
}

#[test]
fn replicate_offers_the_other_archives_and_runs_the_chosen_one() {
    let mut m = two_archives();
    cell_menu(&mut m, 2);
    key(&mut m, KeyCode::Char('P'));
    let Mode::Menu(choice) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert_eq!(shown(choice), ["replicate a0 vol a1"]);
    assert!(screen(&m).contains("replicate to: DST"), "{}", screen(&m));
    expect_run(&mut m, "1", "replicate a0 vol a1", false);
    // --resync replaces what the destination holds: it asks.
    cell_menu(&mut m, 2);
    expect_run(&mut m, "W1", "replicate a0 vol --resync a1", true);
    cell_menu(&mut m, 2);
    expect_run(&mut m, "Y1", "replicate a0 vol --sync a1", false);
}

#[test]
fn synchronizing_is_started_at_once_and_stopped_after_a_confirmation() {
    let mut m = two_archives();
    cell_menu(&mut m, 2);
    expect_run(&mut m, "y", "start-synchronizing a0 vol", false);
    cell_menu(&mut m, 2);
    expect_run(&mut m, "g", "is-synchronizing a0 vol", false);
    cell_menu(&mut m, 2);
    chars(&mut m, "u");
    let Mode::Confirm(c) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    // p0 holds two diffs of vol for a0 in the tutorial.
    assert!(
        c.loss[0].contains("drops its queue of vol towards a0 (2 diffs"),
        "{:?}",
        c.loss
    );
    key(&mut m, KeyCode::Esc);
    cell_menu(&mut m, 2);
    expect_run(&mut m, "u", "stop-synchronizing a0 vol", true);
}

#[test]
fn resize_prompts_for_the_size_and_asks_before_growing() {
    let mut m = two_archives();
    cell_menu(&mut m, 0);
    key(&mut m, KeyCode::Char('z'));
    let Mode::Prompt(p) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert_eq!(
        (p.line.as_str(), p.args.as_str()),
        ("resize s0 vol", "SIZE")
    );
    let frame = screen(&m);
    assert!(frame.contains("resize s0 vol █"), "{frame}");
    assert!(frame.contains("k/m/g/t suffixes"), "{frame}");
    // A mistake keeps the prompt open with the exec parser's words.
    chars(&mut m, "lots");
    assert!(key(&mut m, KeyCode::Enter).is_empty());
    let Mode::Prompt(p) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert!(p.error.as_deref().unwrap().contains("resize"), "{p:?}");
    let shown_error: String = p.error.as_deref().unwrap().chars().take(40).collect();
    assert!(screen(&m).contains(&shown_error), "{}", screen(&m));
    for _ in 0..4 {
        key(&mut m, KeyCode::Backspace);
    }
    chars(&mut m, "2g");
    assert!(key(&mut m, KeyCode::Enter).is_empty());
    let Mode::Confirm(c) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert_eq!(c.line, "resize s0 vol 2g");
    assert!(c.loss[0].contains("never shrinks"), "{:?}", c.loss);
    let e = key(&mut m, KeyCode::Char('y'));
    let want = parse_line("resize s0 vol 2g").unwrap().unwrap();
    assert!(matches!(
        want,
        ExecCmd::Backup(BackupCmd::Resize {
            size_lb: 4_194_304,
            ..
        })
    ));
    assert!(e
        .iter()
        .any(|x| matches!(x, Effect::Run { cmd, .. } if *cmd == want)));
    // esc in the prompt cancels.
    cell_menu(&mut m, 2);
    key(&mut m, KeyCode::Char('z'));
    chars(&mut m, "1g");
    assert!(key(&mut m, KeyCode::Esc).is_empty());
    assert_eq!(m.mode, Mode::Normal);
}

#[test]
fn a_proxy_kicks_and_sends_to_one_archive_chosen_from_its_list() {
    let mut m = two_archives();
    let menu = cell_menu(&mut m, 1);
    let kick = menu.items.iter().find(|i| i.key == 'K').unwrap();
    assert_eq!(
        kick.then,
        Then::Choose {
            args: "ARCHIVE".into(),
            values: vec!["a0".into()]
        }
    );
    expect_run(&mut m, "K1", "kick p0 vol a0", false);
    cell_menu(&mut m, 1);
    expect_run(&mut m, "A1", "archive-info p0 add vol a1", false);
    cell_menu(&mut m, 1);
    expect_run(&mut m, "O1", "archive-info p0 delete vol a0", true);
    cell_menu(&mut m, 1);
    key(&mut m, KeyCode::Char('B'));
    chars(&mut m, "storage s0 --add");
    let e = key(&mut m, KeyCode::Enter);
    assert_eq!(runs(&e), ["bind p0 vol storage s0 --add"]);
}

#[test]
fn a_snapshot_offers_bhash_virt_full_scan_and_replicate_up_to_it() {
    let mut m = two_archives();
    key(&mut m, KeyCode::Char('2'));
    key(&mut m, KeyCode::Down);
    key(&mut m, KeyCode::Char('d'));
    assert_eq!(m.view, View::Diffs);
    key(&mut m, KeyCode::Tab);
    key(&mut m, KeyCode::Char('G')); // gid 8
    key(&mut m, KeyCode::Enter);
    expect_run(&mut m, "b", "bhash a0 vol 8", false);
    key(&mut m, KeyCode::Enter);
    expect_run(&mut m, "P1", "replicate a0 vol --gid 8 a1", false);
    key(&mut m, KeyCode::Enter);
    key(&mut m, KeyCode::Char('v'));
    assert!(screen(&m).contains("virt-full-scan a0 vol 8 █"));
    chars(&mut m, "vol-8.img");
    key(&mut m, KeyCode::Enter);
    let Mode::Confirm(c) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert!(
        c.loss[0].contains("whatever vol-8.img holds"),
        "{:?}",
        c.loss
    );
    let e = key(&mut m, KeyCode::Char('y'));
    assert_eq!(runs(&e), ["virt-full-scan a0 vol 8 vol-8.img"]);
    // From the archive's cell, bhash offers the restorable gids, newest first.
    cell_menu(&mut m, 2);
    key(&mut m, KeyCode::Char('b'));
    let Mode::Menu(choice) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert_eq!(
        shown(choice),
        [
            "bhash a0 vol 8",
            "bhash a0 vol 7",
            "bhash a0 vol 2",
            "bhash a0 vol 1"
        ]
    );
    expect_run(&mut m, "2", "bhash a0 vol 7", false);
}

#[test]
fn init_prompts_for_a_new_volume_and_a_graceful_stop_asks_first() {
    let mut m = two_archives();
    key(&mut m, KeyCode::Char('1'));
    key(&mut m, KeyCode::Enter); // s0
    key(&mut m, KeyCode::Char('I'));
    chars(&mut m, "vol2 /dev/walb/vol2");
    let e = key(&mut m, KeyCode::Enter);
    assert_eq!(runs(&e), ["init-storage s0 vol2 /dev/walb/vol2"]);
    // An empty answer is not a command.
    key(&mut m, KeyCode::Enter);
    key(&mut m, KeyCode::Char('I'));
    assert!(key(&mut m, KeyCode::Enter).is_empty());
    let Mode::Prompt(p) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert_eq!(p.error.as_deref(), Some("VOL WDEV is needed"));
    key(&mut m, KeyCode::Esc);
    // The clear archive a1 offers init-archive.
    cell_menu(&mut m, 3);
    expect_run(&mut m, "i", "init-archive a1 vol", false);
    // A graceful stop of the storage says the backup stops and where the log stands.
    cell_menu(&mut m, 0);
    chars(&mut m, "T");
    let Mode::Confirm(c) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    let text = c.loss.join("\n");
    assert!(text.contains("the backup of vol from s0"), "{text}");
    assert!(text.contains("1536 of 8192 physical blocks"), "{text}");
    key(&mut m, KeyCode::Esc);
    cell_menu(&mut m, 0);
    expect_run(&mut m, "T", "stop s0 vol", true);
}

#[test]
fn a_read_only_console_keeps_only_the_queries_of_the_new_actions() {
    let mut m = two_archives();
    m.set_read_only("--read-only");
    let menu = cell_menu(&mut m, 2);
    assert_eq!(
        shown(&menu),
        [
            "status a0 vol",
            "restorable a0 vol",
            "is-synchronizing a0 vol",
            "bhash a0 vol GID"
        ]
    );
}

#[test]
fn the_walblib_procedures_are_in_the_menus() {
    let mut m = two_archives();
    // go-standby leaves the primary archive behind: it asks first.
    cell_menu(&mut m, 0);
    expect_run(&mut m, "G", "go-standby s0 vol", true);
    // The cluster-wide resize: a prompt, then a confirmation naming every node.
    cell_menu(&mut m, 0);
    key(&mut m, KeyCode::Char('Z'));
    let Mode::Prompt(p) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert_eq!(p.line, "resize vol");
    chars(&mut m, "1g");
    assert!(key(&mut m, KeyCode::Enter).is_empty());
    let Mode::Confirm(c) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert!(
        c.loss[0].contains("every archive and storage"),
        "{:?}",
        c.loss
    );
    let e = key(&mut m, KeyCode::Char('y'));
    assert_eq!(runs(&e), ["resize vol 1g"]);
    // gc-diff on the archive's cell runs at once.
    cell_menu(&mut m, 2);
    expect_run(&mut m, "c", "gc-diff a0 vol", false);
    // copy-archive-info needs another proxy: the tutorial has one, so it is not offered.
    let proxy = shown(&cell_menu(&mut m, 1));
    assert!(
        !proxy.iter().any(|l| l.starts_with("copy-archive-info")),
        "{proxy:?}"
    );
    key(&mut m, KeyCode::Esc);
    // set-full-scan-bps on the storage node: a prompt for the rate.
    key(&mut m, KeyCode::Char('1'));
    key(&mut m, KeyCode::Enter);
    key(&mut m, KeyCode::Char('w'));
    let Mode::Prompt(p) = &m.mode else {
        panic!("{:?}", m.mode)
    };
    assert_eq!(p.line, "set-full-scan-bps s0");
    chars(&mut m, "100m");
    let e = key(&mut m, KeyCode::Enter);
    assert_eq!(runs(&e), ["set-full-scan-bps s0 100m"]);
}
