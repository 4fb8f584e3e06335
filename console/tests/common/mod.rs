//! A fixture for the TUI tests and the bench: the tutorial's cluster (s0, p0, a0) and a
//! model filled through the real update function, with a fixed clock.

#![allow(dead_code)]

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use walb_console::client::StatusAnswer;
use walb_console::cluster::Cluster;
use walb_console::tui::model::Model;
use walb_console::tui::update::{init, update, Answer, Ask, Effect, LiveMsg, Msg};
use walb_wire::msg::{
    ArchiveSummary, DiffRange, FgStatus, GatherStatus, LogUsageRow, MetaDiffDto, MetaStateDto,
    ProxyLink, ProxySummary, RestoredImage, SnapDto, SnapshotInfo, Status, StorageSummary,
    VolumeState,
};
use walb_wire::Event;
use walb_wire::Role;

/// 2017-05-24T05:13:31Z, the tutorial's last diff, in ms.
pub const T0: u64 = 1_495_602_811_000;
/// In seconds.
pub const TS: u64 = T0 / 1000;

pub const CLUSTER: &str = r#"
name = "tutorial"
[certs]
ca = "certs/ca.crt"
cert = "certs/operator-console.crt"
key = "certs/operator-console.key"

[[node]]
name = "s0"
role = "storage"
addr = "localhost:10000"
archive = "a0"
proxies = ["p0"]

[[node]]
name = "p0"
role = "proxy"
addr = "localhost:10100"

[[node]]
name = "a0"
role = "archive"
addr = "localhost:10200"
"#;

pub fn cluster() -> Cluster {
    Cluster::parse(CLUSTER, std::path::Path::new("/etc/walb"), "cluster.toml").unwrap()
}

/// A cluster file with `storages` storages, one proxy and `archives` archives.
pub fn big_cluster(storages: usize, archives: usize) -> Cluster {
    let mut t = String::from(
        "name = \"big\"\n[certs]\nca = \"ca.crt\"\ncert = \"c.crt\"\nkey = \"c.key\"\n",
    );
    for i in 0..storages {
        t.push_str(&format!(
            "[[node]]\nname = \"s{i}\"\nrole = \"storage\"\naddr = \"10.0.0.{i}:10000\"\narchive = \"a0\"\nproxies = [\"p0\"]\n"
        ));
    }
    t.push_str("[[node]]\nname = \"p0\"\nrole = \"proxy\"\naddr = \"10.0.1.0:10100\"\n");
    for i in 0..archives {
        t.push_str(&format!(
            "[[node]]\nname = \"a{i}\"\nrole = \"archive\"\naddr = \"10.0.2.{i}:10200\"\n"
        ));
    }
    Cluster::parse(&t, std::path::Path::new("/"), "big.toml").unwrap()
}

pub fn diff(b: u64, e: u64, mergeable: bool, ts: u64, size: u64) -> MetaDiffDto {
    MetaDiffDto {
        range: DiffRange {
            snap_b: SnapDto { gid_b: b, gid_e: b },
            snap_e: SnapDto { gid_b: e, gid_e: e },
        },
        mergeable,
        comp_diff: false,
        timestamp_s: ts,
        size,
    }
}

pub fn snap(vol: &str, gid: u64, ts: u64, explicit: bool) -> SnapshotInfo {
    SnapshotInfo {
        vol: vol.into(),
        gid: Some(gid),
        timestamp_s: ts,
        lsid: None,
        explicit,
    }
}

/// Presses a key.
pub fn key(m: &mut Model, code: KeyCode) -> Vec<Effect> {
    update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

/// Types the characters of `s`.
pub fn chars(m: &mut Model, s: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    for c in s.chars() {
        out.extend(key(m, KeyCode::Char(c)));
    }
    out
}

/// Feeds a reply as the shell would.
pub fn reply(m: &mut Model, node: &str, ask: Ask, answer: Answer) -> Vec<Effect> {
    let seq = m.seq;
    update(
        m,
        Msg::Live(LiveMsg::Reply {
            node: node.into(),
            seq,
            ask,
            result: Ok(answer),
        }),
    )
}

pub fn event(m: &mut Model, node: &str, event: Event) -> Vec<Effect> {
    update(
        m,
        Msg::Live(LiveMsg::Event {
            node: node.into(),
            event,
        }),
    )
}

/// The state named `s` of the tutorial's node `node` (its role by its first letter).
pub fn vstate(node: &str, s: &str) -> VolumeState {
    let role = match node.as_bytes().first() {
        Some(b's') => Role::Storage,
        Some(b'p') => Role::Proxy,
        _ => Role::Archive,
    };
    VolumeState::parse(role, s).unwrap_or_else(|| panic!("{s} is no state of {node}"))
}

/// The typed summary status of the tutorial's node `node`, up `up` seconds.
pub fn summary(node: &str, up: u64) -> Status {
    match vstate(node, "Clear").role() {
        Role::Storage => Status::Storage(StorageSummary {
            node_id: node.into(),
            uptime_s: up,
            base_dir: "/var/walb/s0".into(),
            archive: "a0@localhost:10200".into(),
            proxies: vec![ProxyLink {
                addr: "p0@localhost:10100".into(),
                available: true,
            }],
            max_wlog_send_mb: 128,
            snapshot_interval_s: 0,
            full_scan_bps: 0,
            scheduled_tasks: 1,
            ts_delta: GatherStatus {
                interval_s: 10,
                gathers: 360,
                last_ok_ago_s: Some(4),
                last_error: None,
            },
            fg: FgStatus::default(),
            vols: vec![],
        }),
        Role::Proxy => Status::Proxy(ProxySummary {
            node_id: node.into(),
            uptime_s: up,
            bg: 0,
            fg_free: 2,
            vols: vec![],
        }),
        _ => Status::Archive(ArchiveSummary {
            node_id: node.into(),
            backend: "file".into(),
            uptime_s: up,
            vols: vec![],
            fg: FgStatus::default(),
        }),
    }
}

/// A state change as a protocol-4 daemon sends it (typed); a name the node's role does
/// not have goes as a protocol-3 daemon would send it.
pub fn state(m: &mut Model, node: &str, vol: &str, s: &str) -> Vec<Effect> {
    let at_s = m.now / 1000;
    let typed = m
        .live
        .role(node)
        .and_then(|r| walb_wire::msg::VolumeState::parse(r, s));
    let ev = match typed {
        Some(state) => Event::VolState {
            vol: vol.into(),
            state,
            at_s,
        },
        None => Event::State {
            vol: vol.into(),
            state: s.into(),
            at_s,
        },
    };
    event(m, node, ev)
}

/// The tutorial after a full backup and snapshots: `vol` Target/Started/Archived with
/// the tutorial's diff list, `db` being fully backed up.
pub fn tutorial() -> Model {
    tutorial_on(&cluster())
}

/// [`tutorial`] on another cluster file that has the tutorial's s0, p0 and a0.
pub fn tutorial_on(c: &Cluster) -> Model {
    let mut m = Model::new(c);
    m.clock(T0);
    init(&mut m);
    for (n, sw, up) in [
        ("s0", "walb-storage 0.1.0", 3600),
        ("p0", "walb-proxy 0.1.0", 3500),
        ("a0", "walb-archive 0.1.0", 93_000),
    ] {
        update(&mut m, Msg::Live(LiveMsg::Subscribed { node: n.into() }));
        reply(
            &mut m,
            n,
            Ask::Hello,
            Answer::Hello {
                version: sw.into(),
                pid: 4242,
                status: Some(StatusAnswer::Typed(Box::new(summary(n, up)))),
            },
        );
        reply(
            &mut m,
            n,
            Ask::Vols,
            Answer::Names(vec!["vol".into(), "db".into()]),
        );
    }
    for (n, v, s) in [
        ("s0", "vol", "Target"),
        ("p0", "vol", "Started"),
        ("a0", "vol", "Archived"),
        ("s0", "db", "SyncReady"),
        ("p0", "db", "Started"),
        ("a0", "db", "SyncReady"),
    ] {
        reply(
            &mut m,
            n,
            Ask::State { vol: v.into() },
            Answer::State(vstate(n, s)),
        );
    }
    reply(
        &mut m,
        "s0",
        Ask::LogUsage,
        Answer::LogUsage(vec![
            LogUsageRow {
                vol: "vol".into(),
                usage_pb: 1536,
                capacity_pb: 8192,
                pbs: 4096,
            },
            LogUsageRow {
                vol: "db".into(),
                usage_pb: 0,
                capacity_pb: 8192,
                pbs: 4096,
            },
        ]),
    );
    reply(
        &mut m,
        "s0",
        Ask::LatestSnap { vol: None },
        Answer::Snaps(vec![snap("vol", 10, TS - 5, true)]),
    );
    reply(
        &mut m,
        "a0",
        Ask::LatestSnap { vol: None },
        Answer::Snaps(vec![snap("vol", 8, TS - 40, true)]),
    );
    reply(
        &mut m,
        "p0",
        Ask::ArchiveList { vol: "vol".into() },
        Answer::Names(vec!["a0".into()]),
    );
    reply(
        &mut m,
        "p0",
        Ask::Queue {
            vol: "vol".into(),
            archive: "a0".into(),
        },
        Answer::Queue {
            diffs: vec![
                diff(8, 9, true, TS - 20, 4128),
                diff(9, 10, false, TS - 5, 8280),
            ],
            send_error: false,
        },
    );
    let tut = [
        (0, 1, false, 1_495_601_380, 4128),
        (1, 2, false, 1_495_602_015, 9427),
        (2, 3, true, 1_495_602_040, 8280),
        (3, 4, true, 1_495_602_045, 8688),
        (4, 5, true, 1_495_602_049, 9309),
        (5, 6, true, 1_495_602_096, 8567),
        (6, 7, true, 1_495_602_130, 4128),
        (7, 8, false, 1_495_602_811, 4128),
    ];
    reply(
        &mut m,
        "a0",
        Ask::Diffs { vol: "vol".into() },
        Answer::Diffs(
            tut.iter()
                .map(|(b, e, mg, ts, sz)| diff(*b, *e, *mg, *ts, *sz))
                .collect(),
        ),
    );
    reply(
        &mut m,
        "a0",
        Ask::Restorable { vol: "vol".into() },
        Answer::Snaps(vec![
            snap("vol", 1, 1_495_601_380, true),
            snap("vol", 2, 1_495_602_015, true),
            snap("vol", 7, 1_495_602_130, true),
            snap("vol", 8, 1_495_602_811, true),
        ]),
    );
    reply(
        &mut m,
        "a0",
        Ask::Base { vol: "vol".into() },
        Answer::Base(MetaStateDto {
            snap_b: SnapDto { gid_b: 0, gid_e: 0 },
            snap_e: None,
            timestamp_s: 1_495_601_380,
        }),
    );
    reply(
        &mut m,
        "a0",
        Ask::Restored { vol: "vol".into() },
        Answer::Restored(vec![RestoredImage {
            gid: 8,
            path: "/var/walb/a0/vol/restored/8.img".into(),
            how: None,
        }]),
    );
    // A full backup of db is running.
    m.clock(T0 + 1000);
    state(&mut m, "s0", "db", "FullSync");
    state(&mut m, "a0", "db", "FullSync");
    event(
        &mut m,
        "a0",
        Event::Progress {
            vol: "db".into(),
            op: "full-sync".into(),
            done_lb: 0,
            total_lb: 131_072,
        },
    );
    m.clock(T0 + 5000);
    event(
        &mut m,
        "a0",
        Event::Progress {
            vol: "db".into(),
            op: "full-sync".into(),
            done_lb: 40_960,
            total_lb: 131_072,
        },
    );
    m.clock(T0 + 6000);
    m
}
