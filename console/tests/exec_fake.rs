//! `--exec` through the real client over QUIC on loopback, against fake daemons: walb-wire
//! nodes with storage/proxy/archive certificates from one cluster CA that answer from a
//! small shared model of the cluster. Checks printed output, exit codes, refusals passed
//! through verbatim, walblib's blocking semantics, and scripts. Every test is bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use walb_console::client::ClientOptions;
use walb_console::exec::{exec_main, ExecRequest, EXIT_FAILED, EXIT_USAGE};
use walb_wire::msg::{
    ArchiveDest, ArchiveInfoCommand, ArchiveSummary, ArchiveVolStatus, BindHow, DiffRange,
    FgStatus, MetaDiffDto, MetaStateDto, PeerRole, ProxySummary, ProxyVolStatus, RestoredImage,
    SnapDto, SnapshotInfo, Status, StopFlag, StorageVolStatus, TsDeltaRow, VolPeers, VolumeState,
};
use walb_wire::msg::{PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use walb_wire::{
    ClusterCa, Command, ErrorCode, IssueOptions, Node, NodeConfig, PeerId, Query, Reply, Request,
    Role, WireError,
};

const LIMIT: Duration = Duration::from_secs(60);
// 2017-05-24T04:49:40Z.
const TS: u64 = 1_495_601_380;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("walb-exec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake cluster's state, shared by the three fake daemons.
#[derive(Default)]
struct World {
    /// (node, vol) → state.
    states: HashMap<(String, String), String>,
    /// Every request, as `node Request-debug`.
    log: Vec<String>,
    /// Polls left before a running full backup reaches Target.
    full_sync_polls: u32,
    /// Polls of restorable left before the pending gid shows.
    restorable_polls: u32,
    /// The gid that becomes restorable.
    pending_gid: Option<u64>,
    restorable: Vec<u64>,
    next_gid: u64,
    /// Polls of restored left before the image shows.
    restore_polls: u32,
    restored: Vec<u64>,
    /// Archives set on the proxy: (name, addr).
    archive_info: Vec<(String, String)>,
    /// A refusal the archive gives to restore.
    refuse_restore: Option<WireError>,
    /// a1's restorable gids (a0's are `restorable`).
    a1_restorable: Vec<u64>,
    /// A running replication: polls of num-action left, its gid.
    repl_polls: u32,
    repl_gid: u64,
    /// The running replication fails (a1 keeps what it had).
    repl_fails: bool,
    /// a1 holds another archive's data (a different archive uuid).
    a1_foreign: bool,
    /// (node, vol) → the peers bound there.
    peers: HashMap<(String, String), VolPeers>,
}

type Shared = Arc<Mutex<World>>;

impl World {
    fn state(&self, node: &str, vol: &str) -> String {
        self.states
            .get(&(node.to_owned(), vol.to_owned()))
            .cloned()
            .unwrap_or_else(|| "Clear".into())
    }
    fn set(&mut self, node: &str, vol: &str, st: &str) {
        self.states
            .insert((node.to_owned(), vol.to_owned()), st.to_owned());
    }
    fn count(&self, needle: &str) -> usize {
        self.log.iter().filter(|l| l.contains(needle)).count()
    }
}

fn diff(b: u64, e: u64, mergeable: bool, ts: u64, size: u64) -> MetaDiffDto {
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

fn snap(vol: &str, gid: u64, explicit: bool) -> SnapshotInfo {
    SnapshotInfo {
        vol: vol.into(),
        gid: Some(gid),
        timestamp_s: TS + gid,
        lsid: None,
        explicit,
    }
}

/// A fake daemon's typed status: one volume's (its state) or a summary.
fn fake_status(w: &World, me: &str, role: Role, vol: Option<&str>) -> Status {
    let state = |v: &str| VolumeState::parse(role, &w.state(me, v));
    match (role, vol, vol.and_then(state)) {
        (_, Some(v), Some(VolumeState::Storage(st))) => Status::StorageVol(StorageVolStatus {
            vol: v.into(),
            state: st,
            stop: StopFlag::NotStopping,
            actions: vec![],
            monitored: false,
            meta: None,
        }),
        (_, Some(v), Some(VolumeState::Proxy(st))) => Status::ProxyVol(ProxyVolStatus {
            vol: v.into(),
            state: st,
            stop: StopFlag::NotStopping,
            size_lb: 65536,
            last_wlog_s_ago: 3,
            queues: vec![],
        }),
        (_, Some(v), Some(VolumeState::Archive(st))) => Status::ArchiveVol(ArchiveVolStatus {
            vol: v.into(),
            state: st,
            data: None,
        }),
        (Role::Proxy, ..) => Status::Proxy(ProxySummary {
            node_id: me.into(),
            uptime_s: 42,
            bg: 0,
            fg_free: 2,
            vols: vec![],
        }),
        _ => Status::Archive(ArchiveSummary {
            node_id: me.into(),
            backend: "file".into(),
            uptime_s: 42,
            vols: vec![],
            fg: FgStatus::default(),
        }),
    }
}

/// The fake daemons' behaviour: a tiny model of walb's state machines.
fn answer(w: &mut World, me: &str, role: Role, req: &Request) -> Result<Reply, WireError> {
    w.log.push(format!("{me} {req:?}"));
    let refuse = |m: &str| Err(WireError::new(ErrorCode::WrongState, m));
    match req {
        Request::Query(Query::State { vol }) => {
            // A running full backup finishes after a few polls.
            if role == Role::Storage && w.state(me, vol) == "FullSync" {
                if w.full_sync_polls == 0 {
                    w.set(me, vol, "Target");
                    w.set("a0", vol, "Archived");
                    w.pending_gid = Some(7);
                    w.restorable_polls = 2;
                } else {
                    w.full_sync_polls -= 1;
                }
            }
            VolumeState::parse(role, &w.state(me, vol))
                .map(Reply::State)
                .ok_or_else(|| WireError::new(ErrorCode::Internal, "the fake's state"))
        }
        Request::Query(Query::HostType) => Ok(Reply::HostType(role)),
        Request::Query(Query::Status { vol }) => Ok(Reply::Status(Box::new(fake_status(
            w,
            me,
            role,
            vol.as_deref(),
        )))),
        Request::Query(Query::TsDelta) => Ok(Reply::TsDelta(vec![TsDeltaRow {
            vol: "vol".into(),
            dest: "a0".into(),
            kind: role,
            dest_kind: Role::Archive,
            gid: 9,
            ts_s: TS + 60,
            dest_snap: Some((7, TS)),
            age_s: (role == Role::Storage).then_some(1),
        }])),
        Request::Query(Query::IsOverflow { .. }) => Ok(Reply::Bool(false)),
        Request::Query(Query::MetaState { .. }) | Request::Query(Query::Base { .. }) => {
            Ok(Reply::MetaState(MetaStateDto {
                snap_b: SnapDto { gid_b: 0, gid_e: 7 },
                snap_e: None,
                timestamp_s: TS,
            }))
        }
        Request::Query(Query::Restorable { vol, all }) if me == "a1" => Ok(Reply::Snapshots(
            w.a1_restorable
                .iter()
                .map(|g| snap(vol, *g, !*all || *g % 2 == 0))
                .collect(),
        )),
        Request::Query(Query::Restorable { vol, all }) => {
            if let Some(g) = w.pending_gid {
                if w.restorable_polls == 0 {
                    w.restorable.push(g);
                    w.pending_gid = None;
                } else {
                    w.restorable_polls -= 1;
                }
            }
            Ok(Reply::Snapshots(
                w.restorable
                    .iter()
                    .map(|g| snap(vol, *g, !*all || *g % 2 == 0))
                    .collect(),
            ))
        }
        Request::Query(Query::Diff { .. }) => Ok(Reply::Diffs(vec![
            diff(0, 1, false, TS, 4128),
            diff(1, 2, true, TS + 635, 9427),
        ])),
        Request::Query(Query::Restored { .. }) => {
            if w.restore_polls > 0 {
                w.restore_polls -= 1;
                if w.restore_polls == 0 {
                    w.restored.push(8);
                }
            }
            Ok(Reply::Restored(
                w.restored
                    .iter()
                    .map(|g| RestoredImage {
                        gid: *g,
                        path: format!("/lab/a0/vol/restored/{g}.img"),
                        how: None,
                    })
                    .collect(),
            ))
        }
        Request::Query(Query::NumAction { vol, action }) if action == "ReplSyncAsClient" => {
            // The replication ends after a few polls: a1 then holds a0's snapshots up to
            // the gid (unless it fails).
            if w.repl_polls > 0 {
                w.repl_polls -= 1;
                if w.repl_polls == 0 && !w.repl_fails {
                    let g = w.repl_gid;
                    w.a1_restorable = w.restorable.iter().copied().filter(|x| *x <= g).collect();
                    w.set("a1", vol, "Archived");
                }
            }
            Ok(Reply::Number(u64::from(w.repl_polls > 0)))
        }
        Request::Query(Query::NumAction { .. }) => {
            Ok(Reply::Number(u64::from(w.restore_polls > 0)))
        }
        Request::Query(Query::ArchiveUuid { .. }) => {
            Ok(Reply::Uuid(if me == "a1" && w.a1_foreign {
                [2; 16]
            } else {
                [1; 16]
            }))
        }
        Request::Query(Query::VolSize { .. }) => Ok(Reply::Number(65536)),
        Request::Command(Command::Replicate(cmd)) => {
            if w.state(me, &cmd.vol) != "Archived" {
                return refuse(&format!("volume {} is not Archived", cmd.vol));
            }
            w.repl_polls = 3;
            w.repl_gid = match cmd.until {
                walb_wire::msg::MergeUntil::Gid(g) => g,
                walb_wire::msg::MergeUntil::SizeMib(_) => u64::MAX,
            };
            Ok(Reply::Accepted)
        }
        Request::Command(Command::ArchiveInfo(ArchiveInfoCommand::Delete { vol, archive })) => {
            w.archive_info.retain(|(a, _)| a != archive);
            if w.archive_info.is_empty() {
                w.set(me, vol, "Clear");
            }
            Ok(Reply::Done)
        }
        Request::Query(Query::ArchiveInfo { archive: None, .. }) => Ok(Reply::Names(
            w.archive_info.iter().map(|(a, _)| a.clone()).collect(),
        )),
        Request::Query(Query::ArchiveInfo {
            archive: Some(a), ..
        }) => match w.archive_info.iter().find(|(n, _)| n == a) {
            Some((_, addr)) => Ok(Reply::ArchiveInfo(ArchiveDest {
                addr: addr.clone(),
                compress: walb_console::ops::default_compress(),
                delay_s: 0,
            })),
            None => Err(WireError::new(ErrorCode::NotFound, "no such archive")),
        },
        Request::Command(Command::InitVol { vol, .. }) => {
            if w.state(me, vol) != "Clear" {
                return refuse(&format!(
                    "volume {vol} is {}: init-vol needs Clear",
                    w.state(me, vol)
                ));
            }
            w.set(me, vol, "SyncReady");
            Ok(Reply::Done)
        }
        Request::Command(Command::Start { vol, mode }) => {
            let to = match (role, mode) {
                (Role::Storage, Some(walb_wire::msg::StartMode::Standby)) => "Standby",
                (Role::Storage, _) => "Target",
                (Role::Proxy, _) => "Started",
                _ => "Archived",
            };
            w.set(me, vol, to);
            Ok(Reply::Done)
        }
        Request::Command(Command::Stop { vol, .. }) => {
            let to = match (role, w.state(me, vol).as_str()) {
                (Role::Storage, "Standby") => "SyncReady",
                _ => "Stopped",
            };
            w.set(me, vol, to);
            Ok(Reply::Accepted)
        }
        Request::Command(Command::ArchiveInfo(ArchiveInfoCommand::Set {
            vol,
            archive,
            dest,
            ..
        })) => {
            w.archive_info.retain(|(a, _)| a != archive);
            w.archive_info.push((archive.clone(), dest.addr.clone()));
            if w.state(me, vol) == "Clear" {
                w.set(me, vol, "Stopped");
            }
            Ok(Reply::Done)
        }
        Request::Command(Command::FullBackup { vol, .. }) => {
            if w.state(me, vol) != "SyncReady" {
                return refuse(&format!(
                    "volume {vol} is {}: full-bkp needs SyncReady",
                    w.state(me, vol)
                ));
            }
            w.set(me, vol, "FullSync");
            w.full_sync_polls = 2;
            Ok(Reply::Accepted)
        }
        Request::Command(Command::Snapshot { .. }) => {
            w.next_gid += 1;
            let g = w.next_gid;
            w.pending_gid = Some(g);
            w.restorable_polls = 3;
            Ok(Reply::Gid(g))
        }
        Request::Command(Command::Restore { gid, .. }) => {
            if let Some(e) = w.refuse_restore.clone() {
                return Err(e);
            }
            if *gid != 8 {
                return Err(WireError::new(
                    ErrorCode::NotFound,
                    format!("gid {gid} is not restorable"),
                ));
            }
            w.restore_polls = 3;
            Ok(Reply::Accepted)
        }
        Request::Command(Command::Kick { .. }) => Ok(Reply::Done),
        Request::Command(Command::Bind(b)) => {
            if role == Role::Storage || w.state(me, &b.vol) == "Clear" {
                return Err(WireError::new(
                    ErrorCode::NotFound,
                    format!("{me}: no volume {} to bind", b.vol),
                ));
            }
            let p = w.peers.entry((me.to_owned(), b.vol.clone())).or_default();
            let set = match b.role {
                PeerRole::Storage => {
                    p.storage = b.ids.first().cloned();
                    return Ok(Reply::Peers(p.clone()));
                }
                PeerRole::Proxy => &mut p.proxies,
                PeerRole::Archive => &mut p.archives,
            };
            match b.how {
                BindHow::Set => *set = b.ids.clone(),
                BindHow::Add => set.extend(
                    b.ids
                        .iter()
                        .filter(|i| !set.contains(i))
                        .cloned()
                        .collect::<Vec<_>>(),
                ),
                BindHow::Remove => set.retain(|i| !b.ids.contains(i)),
            }
            Ok(Reply::Peers(p.clone()))
        }
        Request::Query(Query::Peers { vol }) => Ok(Reply::Peers(
            w.peers
                .get(&(me.to_owned(), vol.clone()))
                .cloned()
                .unwrap_or_default(),
        )),
        Request::Query(Query::Vols) => {
            let mut v: Vec<String> = w
                .states
                .keys()
                .filter(|(n, _)| n == me)
                .map(|(_, v)| v.clone())
                .collect();
            v.sort();
            Ok(Reply::Names(v))
        }
        Request::Query(Query::Version) => Ok(Reply::Version {
            software: format!("fake-{role} 0.0.1"),
            protocol: 1,
        }),
        Request::Query(Query::Pid) => Ok(Reply::Number(4242)),
        other => Err(WireError::new(
            ErrorCode::Unsupported,
            format!("the fake does not know {other:?}"),
        )),
    }
}

struct Cluster {
    dir: Dir,
    world: Shared,
    _nodes: Vec<Node>,
    cluster_file: PathBuf,
}

fn issue(ca: &ClusterCa, dir: &Path, role: Role, id: &str) -> walb_wire::TlsFiles {
    let peer = PeerId::new(role, id).unwrap();
    let files = ca
        .issue(&peer, &IssueOptions::default())
        .unwrap()
        .save(dir, true)
        .unwrap();
    std::fs::write(&files.ca_cert, ca.cert_pem()).unwrap();
    files
}

/// A fake daemon speaking protocols `versions` (a daemon of an older walb speaks 3 at
/// most: the transport turns its typed answers into the text of then).
fn fake_daemon(
    files: walb_wire::TlsFiles,
    role: Role,
    id: &str,
    world: Shared,
    versions: (u16, u16),
) -> (Node, SocketAddr) {
    let mut cfg = NodeConfig::new("127.0.0.1:0".parse().unwrap(), true);
    cfg.versions = versions;
    let node = Node::bind(cfg, files).unwrap();
    let addr = node.local_addr().unwrap();
    let (n, me) = (node.clone(), id.to_owned());
    tokio::spawn(async move {
        while let Some(mut inc) = n.accept().await {
            let r = {
                let mut w = world.lock().unwrap();
                answer(&mut w, &me, role, &inc.request)
            };
            match r {
                Ok(reply) => {
                    let _ = inc.call.reply(reply).await;
                    let _ = inc.call.sender.finish();
                }
                Err(e) => inc.call.refuse(e).await,
            }
        }
    });
    (node, addr)
}

/// s0, p0, a0 as fakes (a0 optionally at a dead address), and a cluster file for them.
/// `swap` puts a0's address on s0's entry (a wrong peer).
fn cluster(name: &str, a0_dead: bool, swap: bool) -> Cluster {
    cluster_of(name, a0_dead, swap, false, PROTOCOLS)
}

/// The protocols the fakes speak: this walb's.
const PROTOCOLS: (u16, u16) = (PROTOCOL_VERSION_MIN, PROTOCOL_VERSION);

/// [`cluster`], with a second archive a1 (outside s0's backup group) if `a1`, and a0
/// speaking `a0_versions`.
fn cluster_of(name: &str, a0_dead: bool, swap: bool, a1: bool, a0_versions: (u16, u16)) -> Cluster {
    let dir = Dir::new(name);
    let ca = ClusterCa::generate("test", 1).unwrap();
    let certs = dir.0.join("certs");
    let world: Shared = Arc::new(Mutex::new(World::default()));
    let mut nodes = Vec::new();
    let mut addrs = HashMap::new();
    let mut ids = vec![
        (Role::Storage, "s0"),
        (Role::Proxy, "p0"),
        (Role::Archive, "a0"),
    ];
    if a1 {
        ids.push((Role::Archive, "a1"));
    }
    for (role, id) in ids {
        let files = issue(&ca, &certs, role, id);
        if id == "a0" && a0_dead {
            // A port nobody answers on.
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            addrs.insert(id, s.local_addr().unwrap().to_string());
            continue;
        }
        let versions = if id == "a0" { a0_versions } else { PROTOCOLS };
        let (node, addr) = fake_daemon(files, role, id, world.clone(), versions);
        nodes.push(node);
        addrs.insert(id, addr.to_string());
    }
    issue(&ca, &certs, Role::Operator, "console");
    let s0_addr = if swap { &addrs["a0"] } else { &addrs["s0"] };
    let mut text = format!(
        r#"name = "test"
[certs]
ca = "certs/ca.crt"
cert = "certs/operator-console.crt"
key = "certs/operator-console.key"

[[node]]
name = "s0"
role = "storage"
addr = "{s0_addr}"
archive = "a0"
proxies = ["p0"]

[[node]]
name = "p0"
role = "proxy"
addr = "{}"

[[node]]
name = "a0"
role = "archive"
addr = "{}"
"#,
        addrs["p0"], addrs["a0"]
    );
    if let Some(a) = addrs.get("a1") {
        text += &format!("\n[[node]]\nname = \"a1\"\nrole = \"archive\"\naddr = \"{a}\"\n");
    }
    let cluster_file = dir.0.join("cluster.toml");
    std::fs::write(&cluster_file, text).unwrap();
    Cluster {
        dir,
        world,
        _nodes: nodes,
        cluster_file,
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

async fn exec(c: &Cluster, json: bool, args: &[&str], stdin: &str) -> Run {
    let req = ExecRequest {
        cluster: Some(c.cluster_file.clone()),
        json,
        args: args.iter().map(|s| s.to_string()).collect(),
        client: ClientOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(20),
        },
        progress: false,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = stdin.as_bytes();
    let code = tokio::time::timeout(LIMIT, exec_main(req, &mut input, &mut out, &mut err))
        .await
        .expect("exec took too long");
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn addr_of(c: &Cluster, node: &str) -> String {
    let cl = walb_console::cluster::Cluster::load(&c.cluster_file).unwrap();
    cl.node(node).unwrap().addr.clone()
}

#[tokio::test]
async fn state_all_prints_every_node_and_names_the_unreachable_one() {
    let c = cluster("state-all", true, false);
    {
        let mut w = c.world.lock().unwrap();
        w.set("s0", "vol", "Target");
        w.set("p0", "vol", "Started");
    }
    let r = exec(&c, false, &["state-all", "vol"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.out);
    assert_eq!(lines[0], format!("s0 {} storage Target", addr_of(&c, "s0")));
    assert_eq!(lines[1], format!("p0 {} proxy Started", addr_of(&c, "p0")));
    assert!(
        lines[2].starts_with(&format!("a0 {} archive unreachable: ", addr_of(&c, "a0"))),
        "{}",
        lines[2]
    );
    let r = exec(&c, true, &["state-all", "vol"], "").await;
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v[0]["state"], "Target");
    assert_eq!(v[2]["state"], serde_json::Value::Null);
    assert!(v[2]["unreachable"].is_string());
}

#[tokio::test]
async fn a_refusal_is_printed_verbatim_with_exit_code_1() {
    let c = cluster("refusal", false, false);
    let msg = "volume vol is SyncReady: restore needs Archived (run full-backup first)";
    c.world.lock().unwrap().refuse_restore = Some(WireError::new(ErrorCode::WrongState, msg));
    let r = exec(&c, false, &["restore", "a0", "vol", "8"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(r.out.is_empty(), "{}", r.out);
    assert_eq!(r.err.trim(), format!("error: a0: {msg}"));
    let r = exec(&c, true, &["restore", "a0", "vol", "8"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v["code"], "wrong-state");
    assert_eq!(v["message"], msg);
    assert_eq!(v["node"], "a0");
}

#[tokio::test]
async fn a_command_on_a_node_of_the_wrong_role_is_refused_before_sending() {
    let c = cluster("role", false, false);
    let r = exec(&c, false, &["restore", "s0", "vol", "8"], "").await;
    assert_eq!(r.code, EXIT_USAGE);
    assert_eq!(
        r.err.trim(),
        "error: s0 is a storage, restore needs an archive"
    );
    let r = exec(&c, false, &["get", "p0", "is-overflow", "vol"], "").await;
    assert_eq!(r.code, EXIT_USAGE);
    assert!(
        r.err
            .contains("p0 is a proxy, get is-overflow needs a storage"),
        "{}",
        r.err
    );
    let r = exec(&c, false, &["snapshot", "s9", "vol"], "").await;
    assert_eq!(r.code, EXIT_USAGE);
    assert!(r.err.contains("unknown node \"s9\""), "{}", r.err);
    assert!(c.world.lock().unwrap().log.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_daemon_that_is_not_who_the_file_says_is_refused() {
    let c = cluster("swap", false, true);
    let r = exec(&c, false, &["get", "s0", "state", "vol"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(
        r.err
            .contains("is archive/a0, but the cluster file says storage/s0"),
        "{}",
        r.err
    );
}

#[tokio::test]
async fn full_backup_prepares_like_walblib_then_prints_the_clean_gid() {
    let c = cluster("full-backup", false, false);
    c.world.lock().unwrap().set("s0", "vol", "Standby");
    let r = exec(&c, false, &["full-backup", "s0", "vol"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "7\n");
    let a0_addr = addr_of(&c, "a0");
    {
        let w = c.world.lock().unwrap();
        let order = |needle: &str| {
            w.log
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} never sent: {:#?}", w.log))
        };
        // Storage Standby → stop → SyncReady; archive Clear → init; proxy archive-info add
        // with the archive's address from the cluster file, then start; then the backup.
        assert!(order("s0 Command(Stop") < order("s0 Command(FullBackup"));
        assert!(order("a0 Command(InitVol") < order("s0 Command(FullBackup"));
        assert!(order(&format!("addr: \"{a0_addr}\"")) < order("p0 Command(Start"));
        assert!(order("p0 Command(Start") < order("s0 Command(FullBackup"));
        assert!(order("s0 Command(FullBackup") < order("s0 Query(MetaState"));
        assert!(order("s0 Query(MetaState") < order("a0 Query(Restorable"));
        assert_eq!(w.state("s0", "vol"), "Target");
        assert_eq!(w.state("p0", "vol"), "Started");
        // The backup group is bound: a0 takes s0's backups and p0's diffs, p0 s0's wlogs.
        let peers = |n: &str| w.peers.get(&(n.to_owned(), "vol".to_owned())).cloned();
        let a0 = peers("a0").expect("a0 bound");
        assert_eq!(
            (a0.storage.as_deref(), a0.proxies.as_slice()),
            (Some("s0"), &["p0".to_owned()][..])
        );
        assert_eq!(peers("p0").and_then(|p| p.storage).as_deref(), Some("s0"));
        assert!(order("a0 Command(Bind") < order("s0 Command(FullBackup"));
    }
    // From Target it is refused with the reason, and nothing is sent but queries.
    let r = exec(&c, false, &["full-backup", "s0", "vol", "--no-wait"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(r.err.contains("s0 vol: it is Target"), "{}", r.err);
    assert_eq!(c.world.lock().unwrap().count("FullBackup"), 1);
}

/// a0 Archived with restorable 5 and 8, p0 Started sending to a0, a1 Clear.
fn replication_cluster(name: &str) -> Cluster {
    let c = cluster_of(name, false, false, true, PROTOCOLS);
    {
        let mut w = c.world.lock().unwrap();
        w.set("s0", "vol", "Target");
        w.set("p0", "vol", "Started");
        w.set("a0", "vol", "Archived");
        w.restorable = vec![5, 8];
        let a0 = addr_of(&c, "a0");
        w.archive_info.push(("a0".into(), a0));
    }
    c
}

#[tokio::test]
async fn replicate_inits_the_destination_and_waits_until_it_holds_the_gid() {
    let c = replication_cluster("replicate");
    let r = exec(&c, false, &["replicate", "a0", "vol", "a1"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "8\n", "the source's latest restorable");
    let a1_addr = addr_of(&c, "a1");
    {
        let w = c.world.lock().unwrap();
        let order = |needle: &str| {
            w.log
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} never sent: {:#?}", w.log))
        };
        assert!(order("a1 Command(InitVol") < order("a0 Command(Replicate"));
        // a1 takes copies of vol from a0, and a0 dials a1 by its id.
        assert!(order("a1 Command(Bind") < order("a0 Command(Replicate"));
        let a1 = w.peers.get(&("a1".to_owned(), "vol".to_owned())).unwrap();
        assert_eq!(a1.archives, ["a0"]);
        let sent = &w.log[order("a0 Command(Replicate")];
        assert!(sent.contains(&format!("dest: \"{a1_addr}\"")), "{sent}");
        assert!(sent.contains("until: Gid(8)"), "{sent}");
        assert!(sent.contains("dest_id: \"a1\""), "{sent}");
        assert!(sent.contains("do_resync: false"), "{sent}");
        assert_eq!(w.a1_restorable, [5, 8]);
        assert_eq!(w.state("a1", "vol"), "Archived");
        // Not synchronizing: the proxy was left alone.
        assert_eq!(w.count("p0 Command"), 0);
    }
    // Again, to an older gid a0 holds: a1 (Archived, same archive uuid) already has it.
    let r = exec(
        &c,
        true,
        &["replicate", "a0", "vol", "a1", "--gid", "5"],
        "",
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out.trim(), r#"{"gid":5}"#);
    // A gid a0 cannot restore is refused before anything is sent.
    let r = exec(
        &c,
        false,
        &["replicate", "a0", "vol", "a1", "--gid", "6"],
        "",
    )
    .await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(r.err.contains("gid 6 is not restorable"), "{}", r.err);
    assert_eq!(c.world.lock().unwrap().count("Command(Replicate"), 2);
    // Archives only, and two of them.
    let r = exec(&c, false, &["replicate", "a0", "vol", "p0"], "").await;
    assert_eq!(r.code, EXIT_USAGE, "{}", r.err);
    assert!(
        r.err.contains("p0 is a proxy, replicate needs an archive"),
        "{}",
        r.err
    );
    let r = exec(&c, false, &["replicate", "a0", "vol", "a0"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(r.err.contains("both a0"), "{}", r.err);
}

#[tokio::test]
async fn replicate_to_a_diverged_destination_needs_resync_and_a_failure_is_reported() {
    let c = replication_cluster("replicate-resync");
    {
        let mut w = c.world.lock().unwrap();
        w.set("a1", "vol", "Archived");
        w.a1_restorable = vec![3];
        w.a1_foreign = true;
    }
    let r = exec(&c, false, &["replicate", "a0", "vol", "a1"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(r.err.contains("another archive's data"), "{}", r.err);
    assert!(r.err.contains("--resync"), "{}", r.err);
    assert_eq!(c.world.lock().unwrap().count("Command(Replicate"), 0);
    let r = exec(&c, false, &["replicate", "a0", "vol", "a1", "--resync"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(c.world.lock().unwrap().count("do_resync: true") == 1);
    // A replication that ends without a1 reaching the gid fails, naming where a1 is.
    {
        let mut w = c.world.lock().unwrap();
        w.a1_restorable = vec![3];
        w.repl_fails = true;
    }
    let r = exec(&c, false, &["replicate", "a0", "vol", "a1", "--resync"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(
        r.err.contains("ended short of gid 8") && r.err.contains("latest gid 3"),
        "{}",
        r.err
    );
}

#[tokio::test]
async fn replicate_sync_makes_the_proxies_send_to_the_destination_too() {
    let c = replication_cluster("replicate-sync");
    let r = exec(&c, false, &["is-synchronizing", "a1", "vol"], "").await;
    assert_eq!((r.code, r.out.as_str()), (0, "0\n"), "{}", r.err);
    let r = exec(&c, false, &["replicate", "a0", "vol", "a1", "--sync"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "8\n");
    let a1_addr = addr_of(&c, "a1");
    {
        let w = c.world.lock().unwrap();
        let all = |needle: &str| -> Vec<usize> {
            w.log
                .iter()
                .enumerate()
                .filter(|(_, l)| l.contains(needle))
                .map(|(i, _)| i)
                .collect()
        };
        // Once while the proxy works, once more after it was drained and told about a1.
        let repl = all("a0 Command(Replicate");
        assert_eq!(repl.len(), 2, "{:#?}", w.log);
        let stop = all("p0 Command(Stop { vol: \"vol\", mode: Empty");
        let add = all(&format!("addr: \"{a1_addr}\""));
        let start = all("p0 Command(Start");
        let kick = all("s0 Command(Kick");
        assert_eq!(
            (stop.len(), add.len(), start.len()),
            (1, 1, 1),
            "{:#?}",
            w.log
        );
        assert!(
            repl[0] < stop[0] && stop[0] < add[0] && add[0] < repl[1],
            "{:#?}",
            w.log
        );
        assert!(repl[1] < start[0] && start[0] < kick[0], "{:#?}", w.log);
        // a1 takes p0's diffs once p0 sends to it, before the last replication.
        let bound = all("a1 Command(Bind(BindCommand { vol: \"vol\", role: Proxy");
        assert!(
            bound.len() == 1 && add[0] < bound[0] && bound[0] < repl[1],
            "{:#?}",
            w.log
        );
        let a1 = w.peers.get(&("a1".to_owned(), "vol".to_owned())).unwrap();
        assert_eq!(
            (a1.proxies.as_slice(), a1.archives.as_slice()),
            (&["p0".to_owned()][..], &["a0".to_owned()][..])
        );
        assert_eq!(w.state("p0", "vol"), "Started");
        let names: Vec<&str> = w.archive_info.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["a0", "a1"]);
    }
    let r = exec(&c, false, &["is-synchronizing", "a1", "vol"], "").await;
    assert_eq!((r.code, r.out.as_str()), (0, "1\n"), "{}", r.err);
    let r = exec(&c, false, &["stop-synchronizing", "a1", "vol"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    {
        let w = c.world.lock().unwrap();
        let names: Vec<&str> = w.archive_info.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["a0"]);
        assert_eq!(w.state("p0", "vol"), "Started");
    }
    let r = exec(&c, false, &["is-synchronizing", "a1", "vol"], "").await;
    assert_eq!((r.code, r.out.as_str()), (0, "0\n"), "{}", r.err);
    // Stopping again touches nothing; starting adds it back.
    let before = c.world.lock().unwrap().count("p0 Command");
    let r = exec(&c, false, &["stop-synchronizing", "a1", "vol"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(c.world.lock().unwrap().count("p0 Command"), before);
    let r = exec(&c, false, &["start-synchronizing", "a1", "vol"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    let r = exec(&c, false, &["is-synchronizing", "a1", "vol"], "").await;
    assert_eq!((r.code, r.out.as_str()), (0, "1\n"), "{}", r.err);
}

/// A backup gives the volume a new uuid at the primary: as walblib's `_prepare_backup`,
/// the console first stops synchronizing every other archive (the proxies would feed it
/// diffs it refuses for good), and keeps the primary.
#[tokio::test]
async fn a_backup_stops_synchronizing_the_secondary_archives() {
    let c = replication_cluster("backup-stops-sync");
    let r = exec(&c, false, &["replicate", "a0", "vol", "a1", "--sync"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    let r = exec(&c, false, &["is-synchronizing", "a1", "vol"], "").await;
    assert_eq!((r.code, r.out.as_str()), (0, "1\n"), "{}", r.err);
    {
        let mut w = c.world.lock().unwrap();
        w.set("s0", "vol", "Standby");
        w.set("a0", "vol", "SyncReady");
    }
    let r = exec(&c, false, &["full-backup", "s0", "vol"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    let w = c.world.lock().unwrap();
    let names: Vec<&str> = w.archive_info.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(names, ["a0"], "{:#?}", w.log);
    let deleted = w
        .log
        .iter()
        .position(|l| l.contains("p0 Command(ArchiveInfo(Delete"))
        .unwrap_or_else(|| panic!("a1 never taken out: {:#?}", w.log));
    let backup = w
        .log
        .iter()
        .position(|l| l.contains("s0 Command(FullBackup"));
    assert!(backup.is_some_and(|b| deleted < b), "{:#?}", w.log);
}

#[tokio::test]
async fn snapshot_with_archives_waits_until_restorable() {
    let c = cluster("snapshot", false, false);
    {
        let mut w = c.world.lock().unwrap();
        w.set("s0", "vol", "Target");
        w.set("a0", "vol", "Archived");
        w.next_gid = 8;
    }
    let r = exec(&c, false, &["snapshot", "s0", "vol", "a0"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "9\n");
    {
        let w = c.world.lock().unwrap();
        assert!(w.restorable.contains(&9));
        assert!(
            w.count("a0 Query(Restorable") >= 4,
            "it polled until restorable"
        );
    }
    // A timeout names what it waited for.
    let r = exec(
        &c,
        false,
        &["snapshot", "s0", "vol", "a0", "--timeout", "0"],
        "",
    )
    .await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(
        r.err.contains("gid 10 to be restorable at a0 vol"),
        "{}",
        r.err
    );
}

#[tokio::test]
async fn restore_waits_for_the_image_and_prints_its_path() {
    let c = cluster("restore", false, false);
    c.world.lock().unwrap().set("a0", "vol", "Archived");
    let r = exec(&c, false, &["restore", "a0", "vol", "8"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "/lab/a0/vol/restored/8.img\n");
    let r = exec(&c, false, &["restored-path", "a0", "vol", "8"], "").await;
    assert_eq!(r.out, "/lab/a0/vol/restored/8.img\n");
    let r = exec(&c, false, &["restored-path", "a0", "vol", "9"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(r.err.contains("gid 9 is not restored"), "{}", r.err);
}

#[tokio::test]
async fn listings_print_in_the_tutorial_formats() {
    let c = cluster("listings", false, false);
    c.world.lock().unwrap().restorable = vec![3, 4];
    let r = exec(&c, false, &["diff-list", "a0", "vol"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "|0|-->|1| -- 2017-05-24T04:49:40 4128\n|1|-->|2| M- 2017-05-24T05:00:15 9427\n"
    );
    let r = exec(&c, false, &["restorable", "a0", "vol", "all"], "").await;
    assert_eq!(r.out, "3 2017-05-24T04:49:43 0\n4 2017-05-24T04:49:44 1\n");
    let r = exec(&c, true, &["restorable", "a0", "vol"], "").await;
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v[1]["gid"], 4);
    assert_eq!(v[1]["time"], "2017-05-24T04:49:44");
    let r = exec(&c, false, &["get", "s0", "is-overflow", "vol"], "").await;
    assert_eq!(r.out, "0\n");
    let r = exec(&c, false, &["get", "a0", "base", "vol"], "").await;
    assert_eq!(r.out, "<|0,7|>-20170524044940\n");
    let r = exec(&c, false, &["get", "p0", "host-type"], "").await;
    assert_eq!(r.out, "proxy\n");
    let r = exec(&c, false, &["status", "s0", "vol"], "").await;
    assert_eq!(r.out, "hostType storage\nvolId vol\nstate Clear\n");
    let r = exec(&c, false, &["status", "vol"], "").await;
    assert!(r.out.contains("  name:vol\n  state:Clear\n"), "{}", r.out);
    let r = exec(&c, false, &["get", "s0", "ts-delta"], "").await;
    assert_eq!(
        r.out,
        "name:vol\tdest:a0\tkind:storage\tdest_kind:archive\tgid:9\t\
         ts:2017-05-24T04:50:40\tdest_gid:7\tdest_ts:2017-05-24T04:49:40\tts_delta:60\tage:1\n"
    );
    // JSON from the typed answers.
    let r = exec(&c, true, &["get", "s0", "ts-delta"], "").await;
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v[0]["dest_snap"], serde_json::json!([7, TS]));
    assert_eq!(v[0]["kind"], "Storage");
    let r = exec(&c, true, &["status", "p0"], "").await;
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v["Proxy"]["uptime_s"], 42, "{v}");
}

/// A daemon of an older walb (protocol 3) answers with text: the console shows its status
/// lines and reads its state names as they are, and for an answer it would have to parse
/// it names the upgrade instead.
#[tokio::test]
async fn an_older_daemons_text_is_shown_never_parsed() {
    let c = cluster_of("old", false, false, false, (PROTOCOL_VERSION_MIN, 3));
    c.world.lock().unwrap().set("a0", "vol", "Archived");
    let r = exec(&c, false, &["status", "a0"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "archive a0 (file backend): 0 volume(s), uptime 42s\nforeground 0/0 running, 0 queued\n"
    );
    let r = exec(&c, true, &["status", "a0"], "").await;
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert!(
        v[0].as_str().is_some_and(|l| l.starts_with("archive a0")),
        "{v}"
    );
    let r = exec(&c, false, &["get", "a0", "state", "vol"], "").await;
    assert_eq!(r.out, "Archived\n", "{}", r.err);
    let r = exec(&c, false, &["get", "a0", "host-type"], "").await;
    assert_eq!(r.out, "archive\n", "{}", r.err);
    let r = exec(&c, false, &["get", "a0", "ts-delta"], "").await;
    assert_eq!(r.code, EXIT_FAILED);
    assert!(
        r.err
            .contains("a0 answered get ts-delta in the text of an older protocol")
            && r.err.contains("protocol 4"),
        "{}",
        r.err
    );
    // The same request to a daemon of this walb is answered.
    let r = exec(&c, false, &["get", "s0", "ts-delta"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
}

#[tokio::test]
async fn a_script_stops_at_its_first_failing_line() {
    let c = cluster("script", false, false);
    {
        let mut w = c.world.lock().unwrap();
        w.set("s0", "vol", "Target");
        w.refuse_restore = Some(WireError::new(
            ErrorCode::NotFound,
            "gid 8 is not restorable",
        ));
    }
    let script = "# the tutorial, abridged\nstate-all vol\n\nsnapshot s0 vol\nrestore a0 vol 8\nsnapshot s0 vol\n";
    let r = exec(&c, false, &["-"], script).await;
    assert_eq!(r.code, EXIT_FAILED);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.out);
    assert!(lines[0].starts_with("s0 ") && lines[0].ends_with(" Target"));
    assert_eq!(lines[3], "1");
    assert_eq!(
        r.err.trim(),
        "error: line 5 (restore a0 vol 8): a0: gid 8 is not restorable"
    );
    assert_eq!(
        c.world.lock().unwrap().count("Snapshot"),
        1,
        "line 6 never ran"
    );
    // JSON lines name each line.
    let r = exec(&c, true, &["-"], "get s0 state vol\nget p0 host-type\n").await;
    assert_eq!(r.code, 0, "{}", r.err);
    let v: Vec<serde_json::Value> = r
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["line"], 1);
    assert_eq!(v[0]["result"], "Target");
    assert_eq!(v[1]["command"], "get p0 host-type");
}

#[tokio::test]
async fn the_binary_runs_a_script_from_stdin_and_exits_non_zero() {
    let c = cluster("binary", false, false);
    c.world.lock().unwrap().set("s0", "vol", "Target");
    let file = c.cluster_file.clone();
    let dir = c.dir.0.clone();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_walb-console"))
            .args(["--cluster"])
            .arg(&file)
            .args(["--exec", "-"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"get s0 state vol\nget s0 nonsense\n")
            .unwrap();
        child.wait_with_output().unwrap()
    });
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(out.stdout.is_empty(), "a bad line runs nothing");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: get: unknown get target \"nonsense\""),
        "{err}"
    );

    let file = c.cluster_file.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_walb-console"))
            .arg("--cluster")
            .arg(&file)
            .args(["--exec", "get", "s0", "state", "vol"])
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Target\n");
}

/// Checks the exposition format: every line a comment or `name{labels} value`, and the
/// OpenMetrics end marker last.
fn check_exposition(text: &str) {
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    for l in text.lines().filter(|l| *l != "# EOF") {
        if l.starts_with("# HELP ") || l.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
        assert!(value.parse::<f64>().is_ok() || value == "NaN", "{l}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("walb_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{l}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "{l}");
        }
    }
}

#[tokio::test]
async fn metrics_print_the_live_data_in_prometheus_text_format() {
    let c = cluster("metrics", true, false);
    {
        let mut w = c.world.lock().unwrap();
        w.set("s0", "vol", "Target");
        w.set("p0", "vol", "Started");
    }
    let r = exec(&c, false, &["metrics", "--sample", "0"], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    check_exposition(&r.out);
    let s0 = addr_of(&c, "s0");
    let a0 = addr_of(&c, "a0");
    for want in [
        format!("walb_node_up{{node=\"s0\",role=\"storage\",addr=\"{s0}\"}} 1"),
        format!("walb_node_up{{node=\"a0\",role=\"archive\",addr=\"{a0}\"}} 0"),
        "walb_node_info{node=\"s0\",role=\"storage\",version=\"fake-storage 0.0.1\"} 1".into(),
        "walb_volume_state{node=\"s0\",role=\"storage\",vol=\"vol\",state=\"Target\"} 1".into(),
        "walb_volume_state{node=\"p0\",role=\"proxy\",vol=\"vol\",state=\"Started\"} 1".into(),
        "walb_log_overflow{node=\"s0\",vol=\"vol\"} 0".into(),
        "# TYPE walb_archive_lag_gids gauge".into(),
    ] {
        assert!(r.out.contains(&want), "{want} in\n{}", r.out);
    }
    // --out writes the file atomically and prints nothing.
    let file = c.dir.0.join("walb.prom");
    let arg = file.to_string_lossy().into_owned();
    let r = exec(&c, false, &["metrics", "--sample", "0", "--out", &arg], "").await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.is_empty());
    let text = std::fs::read_to_string(&file).unwrap();
    check_exposition(&text);
    assert!(text.contains("walb_node_up"));
}

#[tokio::test]
async fn without_a_terminal_the_binary_prints_one_status_dump() {
    let c = cluster("dump", true, false);
    {
        let mut w = c.world.lock().unwrap();
        w.set("s0", "vol", "Target");
        w.set("p0", "vol", "Started");
    }
    let file = c.cluster_file.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_walb-console"))
            .arg("--cluster")
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(LIMIT, out).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("cluster test ("), "{text}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .copied()
            .unwrap_or_default()
    };
    assert!(row("s0 ").contains(" up "), "{text}");
    assert!(row("a0 ").contains("down: "), "{text}");
    let vol = row("vol ");
    assert!(vol.contains("Target") && vol.contains("Started"), "{text}");
    assert!(!text.contains('\u{1b}'), "no escape codes in a dump");
}

#[tokio::test]
async fn a_viewer_certificate_makes_the_terminal_ui_read_only() {
    use walb_console::tui::app::{model_for, TuiConfig};
    let c = cluster("viewer", false, false);
    // The console's endpoint binds without talking to anyone: any CA will do.
    let ca = ClusterCa::generate("viewer-test", 1).unwrap();
    let files = issue(&ca, &c.dir.0.join("viewer"), Role::Viewer, "watcher");
    let mut cl = walb_console::cluster::Cluster::load(&c.cluster_file).unwrap();
    cl.tls = files;
    let client = walb_console::client::Client::new(cl.clone(), ClientOptions::default()).unwrap();
    let m = model_for(&client, &TuiConfig::default());
    assert!(m.read_only);
    assert!(
        m.read_only_why.as_deref().unwrap().contains("viewer"),
        "{m:?}"
    );
    cl.tls = issue(&ca, &c.dir.0.join("op"), Role::Operator, "op");
    let client = walb_console::client::Client::new(cl, ClientOptions::default()).unwrap();
    assert!(!model_for(&client, &TuiConfig::default()).read_only);
    let cfg = TuiConfig {
        read_only: Some("--read-only".into()),
        plain: true,
    };
    let m = model_for(&client, &cfg);
    assert!(m.read_only && m.plain);
}
