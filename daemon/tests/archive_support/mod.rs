//! Test nodes for the archive tests: a cluster CA, an in-process archive daemon, and fake
//! storage, proxy and operator nodes that speak the protocols the way the real daemons do.

#![allow(dead_code)]

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use walb_daemon::archive::{self, Archive};
use walb_daemon::clock::Clock;
use walb_daemon::dto;
use walb_daemon::opts::{ArchiveOpts, CommonOpts};
use walb_daemon::persist::BaseDir;
use walb_daemon::server;
use walb_daemon::session::Ctx;
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::diff::convert::{convert_wlog, ConvertOpt};
use walb_kernel::gen::{DataKind, WlogGen};
use walb_kernel::meta::MetaDiff;
use walb_kernel::wdiff::{WdiffKind, WdiffReader};
use walb_wire::msg::{
    BackupSync, BindCommand, BindHow, MetaDiffDto, PeerRole, SnapDto, SnapshotInfo, Step,
    SyncStart, Uuid, WdiffTransfer,
};
use walb_wire::{
    ClusterCa, Command, Error, IssueOptions, Node, NodeConfig, Peer, PeerId, Query, Reply, Request,
    Role, TlsFiles,
};

/// Upper bound of every test.
pub const LIMIT: Duration = Duration::from_secs(120);
/// Logical block size.
pub const LB: usize = 512;

/// A cluster CA with every certificate the tests need in one directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ca: ClusterCa,
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate(name, 1).unwrap();
        ca.save(&dir.path().join("certs"), true).unwrap();
        let c = Cluster { dir, ca };
        for (role, id) in [
            (Role::Archive, "a0"),
            (Role::Storage, "s0"),
            (Role::Proxy, "p0"),
            (Role::Operator, "op"),
        ] {
            c.issue(role, id);
        }
        c
    }

    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn issue(&self, role: Role, id: &str) -> TlsFiles {
        let peer = PeerId::new(role, id).unwrap();
        self.ca
            .issue(&peer, &IssueOptions::default())
            .unwrap()
            .save(&self.cert_dir(), true)
            .unwrap()
    }

    pub fn files(&self, role: Role, id: &str) -> TlsFiles {
        TlsFiles::in_dir(&self.cert_dir(), &PeerId::new(role, id).unwrap())
    }

    /// A dialing node of `role`.
    pub fn client(&self, role: Role, id: &str) -> Node {
        Node::bind(
            NodeConfig::new("127.0.0.1:0".parse().unwrap(), false),
            self.files(role, id),
        )
        .unwrap()
    }
}

/// Archive options for tests.
pub fn opts(base: &Path) -> ArchiveOpts {
    ArchiveOpts {
        common: CommonOpts {
            base_dir: base.to_path_buf(),
            log_file: "-".into(),
            listen: "127.0.0.1:0".into(),
            id: Some("a0".into()),
            cert_dir: None,
            fg: 2,
            bg: 1,
            fg_queue: 64,
            fg_queue_per_peer: 16,
            fg_queue_wait: 3600,
            debug: false,
            limits: Default::default(),
            group_access: false,
        },
        discard: "punch".into(),
        fsync_interval_mb: 1,
        max_open: 0,
        auto_resize: false,
        max_wdiff_send_nr: 1000,
        sync_compress: "zstd:1:1".into(),
        restore_loop: false,
        apply_sleep_pct: 0,
        apply_keep: None,
        apply_interval: "1d".into(),
        merge_threshold: None,
        merge_interval: None,
        merge_max_nr: 0,
        merge_max_mb: 0,
        replicate_to: Vec::new(),
        policy_max_tasks: 1,
        policy_tick_s: 1,
        // The tests send diffs stamped long ago: retention would apply them at once.
        retention: "off".into(),
        keep_last: 8,
        keep_hourly: 24,
        keep_daily: 7,
        keep_weekly: 4,
        keep_monthly: 6,
        keep_yearly: 0,
        keep_grid: walb_daemon::opts::DEFAULT_KEEP_GRID.into(),
    }
}

/// An archive daemon running in this process.
pub struct TestArchive {
    pub ctx: Arc<Ctx>,
    pub archive: Arc<Archive>,
    pub addr: SocketAddr,
    serve: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestArchive {
    pub async fn start(c: &Cluster, o: ArchiveOpts) -> TestArchive {
        TestArchive::start_as(c, o, "a0").await
    }

    /// An archive with the certificate of `id` (issued if needed).
    pub async fn start_as(c: &Cluster, o: ArchiveOpts, id: &str) -> TestArchive {
        TestArchive::start_clocked(c, o, id, Clock::real()).await
    }

    /// An archive reading `clock` (a virtual one: [`Clock::manual`]).
    pub async fn start_clocked(c: &Cluster, o: ArchiveOpts, id: &str, clock: Clock) -> TestArchive {
        if !c.files(Role::Archive, id).cert.exists() {
            c.issue(Role::Archive, id);
        }
        let node = Node::bind(
            NodeConfig::new("127.0.0.1:0".parse().unwrap(), true),
            c.files(Role::Archive, id),
        )
        .unwrap();
        let addr = node.local_addr().unwrap();
        let base = BaseDir::lock(&o.common.base_dir).unwrap();
        let ctx = Ctx::with_clock(node, base, Role::Archive, id, o.common.fg, 1, clock);
        let archive = archive::start(Arc::clone(&ctx), o).await.unwrap();
        let serve = tokio::spawn(server::serve(Arc::clone(&ctx), Arc::clone(&archive)));
        TestArchive {
            ctx,
            archive,
            addr,
            serve,
        }
    }

    /// Shuts the daemon down and waits until its base directory is free again.
    pub async fn stop(self) {
        self.ctx.begin_shutdown(false);
        let _ = self.serve.await;
        drop(self.archive);
        drop(self.ctx);
    }

    pub fn vol_dir(&self, vol: &str) -> PathBuf {
        self.ctx.base.vol_dir(vol)
    }
}

/// Connections of the operator, the storage and the proxy to the archive at `addr`;
/// keep the nodes (the first element) alive while the peers are used.
pub struct Peers {
    pub nodes: Vec<Node>,
    pub op: Peer,
    pub st: Peer,
    pub px: Peer,
}

pub async fn connect_all(c: &Cluster, addr: SocketAddr) -> Peers {
    let nodes = vec![
        c.client(Role::Operator, "op"),
        c.client(Role::Storage, "s0"),
        c.client(Role::Proxy, "p0"),
    ];
    let op = nodes[0].connect(addr).await.unwrap();
    let st = nodes[1].connect(addr).await.unwrap();
    let px = nodes[2].connect(addr).await.unwrap();
    Peers { nodes, op, st, px }
}

/// Sends a command; the reply or the error.
pub async fn cmd(p: &Peer, c: Command) -> Result<Reply, Error> {
    p.request(Request::Command(c)).await
}

pub async fn query(p: &Peer, q: Query) -> Reply {
    p.request(Request::Query(q)).await.unwrap()
}

pub async fn state(p: &Peer, vol: &str) -> String {
    match query(p, Query::State { vol: vol.into() }).await {
        Reply::State(s) => s.name().to_owned(),
        r => panic!("state: {r:?}"),
    }
}

/// Waits until `vol` is in `want`.
pub async fn wait_state(p: &Peer, vol: &str, want: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let s = state(p, vol).await;
        if s == want {
            return;
        }
        assert!(t0.elapsed() < LIMIT, "{vol} stays {s}, want {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `init-vol`, then binds the test peers to the volume: storage `s0`, proxy `p0` and
/// archive `a0` (a replication source), as walb-console does from the cluster's backup
/// groups.
pub async fn init_vol(p: &Peer, vol: &str) {
    let r = cmd(
        p,
        Command::InitVol {
            vol: vol.into(),
            wdev_path: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Reply::Done);
    for (role, id) in [
        (PeerRole::Storage, "s0"),
        (PeerRole::Proxy, "p0"),
        (PeerRole::Archive, "a0"),
    ] {
        bind(p, vol, role, &[id], BindHow::Add).await.unwrap();
    }
}

/// `bind vol role ids`.
pub async fn bind(
    p: &Peer,
    vol: &str,
    role: PeerRole,
    ids: &[&str],
    how: BindHow,
) -> Result<Reply, Error> {
    cmd(
        p,
        Command::Bind(BindCommand {
            vol: vol.into(),
            role,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            how,
        }),
    )
    .await
}

/// Waits (in real time) until the virtual clock's sleepers have begun more than `n`
/// sleeps: a timed loop made its decision and sleeps again.
pub async fn slept_again(hand: &walb_daemon::clock::ManualClock, n: u64) {
    let t0 = std::time::Instant::now();
    while hand.sleeps_begun() <= n {
        assert!(t0.elapsed() < LIMIT, "the policy never went back to sleep");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The error code of a refused request.
pub fn code(e: &Error) -> walb_wire::ErrorCode {
    e.remote_code()
        .unwrap_or_else(|| panic!("not a refusal: {e}"))
}

/// A reproducible image of `size_lb` blocks: every `zero_every`-th bulk of `bulk_lb` is
/// all zero, the others random with a zero tail.
pub fn make_image(size_lb: u64, bulk_lb: u64, zero_every: u64, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bulk = bulk_lb as usize * LB;
    let mut img = vec![0u8; size_lb as usize * LB];
    for (i, chunk) in img.chunks_mut(bulk).enumerate() {
        if (i as u64) % zero_every != 0 {
            let n = chunk.len() * 3 / 4;
            rng.fill_bytes(&mut chunk[..n]);
        }
    }
    img
}

/// Offsets of the all-zero bulks of `img`.
pub fn zero_bulks(img: &[u8], bulk_lb: u64) -> Vec<(u64, u64)> {
    let bulk = bulk_lb as usize * LB;
    img.chunks(bulk)
        .enumerate()
        .filter(|(_, c)| c.iter().all(|&b| b == 0))
        .map(|(i, c)| ((i * bulk) as u64, c.len() as u64))
        .collect()
}

/// A full backup as the storage runs it (Protocol 3); the error of the first refusal.
pub async fn full_backup(
    p: &Peer,
    vol: &str,
    img: &[u8],
    bulk_lb: u64,
    uuid: Uuid,
    gid_e: u64,
    time_s: u64,
) -> Result<(), Error> {
    let size_lb = (img.len() / LB) as u64;
    let mut call = p
        .call(Request::BackupSync(BackupSync::Full(SyncStart {
            vol: vol.into(),
            size_lb,
            time_s,
            bulk_lb,
        })))
        .await?;
    assert_eq!(call.receiver.reply().await?, Reply::Accepted);
    call.sender.step(Step::Uuid(uuid)).await?;
    assert_eq!(call.receiver.step().await?, Step::Ack);
    for chunk in img.chunks(bulk_lb as usize * LB) {
        if chunk.iter().all(|&b| b == 0) {
            call.sender
                .step(Step::Zero {
                    len_lb: (chunk.len() / LB) as u64,
                })
                .await?;
        } else {
            call.sender.chunk(chunk).await?;
        }
    }
    call.sender.end_bulk().await?;
    assert_eq!(call.receiver.step().await?, Step::Ack);
    call.sender
        .step(Step::MetaSnap(SnapDto { gid_b: 0, gid_e }))
        .await?;
    assert_eq!(call.receiver.step().await?, Step::Ack);
    call.sender.finish()?;
    Ok(())
}

/// A wdiff made by the kernel engine from a generated wlog (indexed or sorted, zstd).
pub fn make_wdiff(size_lb: u64, data_bytes: u64, seed: u64, kind: WdiffKind) -> Vec<u8> {
    let mut g = WlogGen::new(size_lb, data_bytes);
    g.seed = seed;
    g.kind = DataKind::Compressible;
    g.discard_pct = 10;
    g.zero_pct = 10;
    g.min_io_lb = 1;
    g.max_io_lb = 64;
    wlog_to_wdiff(&g, kind)
}

/// A sorted wdiff of `data_bytes` of writes of `data` over a volume of `size_lb`, each
/// of `io_lb.0..=io_lb.1` logical blocks (2% discards, 2% zero writes).
pub fn make_wdiff_of(
    size_lb: u64,
    data_bytes: u64,
    seed: u64,
    data: DataKind,
    io_lb: (u32, u32),
) -> Vec<u8> {
    let mut g = WlogGen::new(size_lb, data_bytes);
    g.seed = seed;
    g.kind = data;
    (g.min_io_lb, g.max_io_lb) = io_lb;
    wlog_to_wdiff(&g, WdiffKind::Sorted)
}

fn wlog_to_wdiff(g: &WlogGen, kind: WdiffKind) -> Vec<u8> {
    let mut wlog = Vec::new();
    g.write(&mut wlog).unwrap();
    let opt = ConvertOpt {
        kind,
        threads: 0,
        ..Default::default()
    };
    convert_wlog(&wlog[..], Vec::new(), &opt).unwrap().0
}

/// `img` with `wdiffs` applied in order, by the kernel (discards read as zeros).
pub fn apply_all(img: &[u8], wdiffs: &[&[u8]]) -> Vec<u8> {
    let mut redo = Redo::new(img.to_vec(), DiscardPolicy::Zero).unwrap();
    for w in wdiffs {
        for io in WdiffReader::new(Cursor::new(w.to_vec())).unwrap() {
            redo.apply_io(&io.unwrap()).unwrap();
        }
    }
    redo.finish().unwrap().0
}

/// The DTO of the clean diff `|b|-->|e|`.
pub fn diff_dto(b: u64, e: u64, mergeable: bool, ts: u64) -> MetaDiffDto {
    dto::diff_to_dto(
        &MetaDiff::clean(b, e)
            .unwrap()
            .with_mergeable(mergeable)
            .with_timestamp(ts),
    )
}

/// A wdiff transfer as the proxy runs it (Protocol 2): the error of a refusal.
pub async fn send_wdiff(
    p: &Peer,
    vol: &str,
    uuid: Uuid,
    size_lb: u64,
    diff: MetaDiffDto,
    bytes: &[u8],
) -> Result<(), Error> {
    let mut call = p
        .call(Request::WdiffTransfer(WdiffTransfer {
            vol: vol.into(),
            uuid,
            size_lb,
            diff,
        }))
        .await?;
    assert_eq!(call.receiver.reply().await?, Reply::Accepted);
    for c in bytes.chunks(1 << 20) {
        call.sender.chunk(c).await?;
    }
    call.sender.end_bulk().await?;
    assert_eq!(call.receiver.step().await?, Step::Ack);
    call.sender.finish()?;
    Ok(())
}

pub async fn diffs(p: &Peer, vol: &str) -> Vec<MetaDiffDto> {
    match query(
        p,
        Query::Diff {
            vol: vol.into(),
            gid_b: None,
            gid_e: None,
            archive: None,
        },
    )
    .await
    {
        Reply::Diffs(d) => d,
        r => panic!("diff: {r:?}"),
    }
}

pub async fn restorable(p: &Peer, vol: &str, all: bool) -> Vec<SnapshotInfo> {
    match query(
        p,
        Query::Restorable {
            vol: vol.into(),
            all,
        },
    )
    .await
    {
        Reply::Snapshots(s) => s,
        r => panic!("restorable: {r:?}"),
    }
}

/// `(gid, path)` of the restored images.
pub async fn restored(p: &Peer, vol: &str) -> Vec<(u64, PathBuf)> {
    match query(p, Query::Restored { vol: vol.into() }).await {
        Reply::Restored(l) => l.iter().map(|r| (r.gid, PathBuf::from(&r.path))).collect(),
        r => panic!("restored: {r:?}"),
    }
}

/// Restores `gid` and waits until it is listed; its path.
pub async fn restore(p: &Peer, vol: &str, gid: u64) -> PathBuf {
    let r = cmd(
        p,
        Command::Restore {
            vol: vol.into(),
            gid,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Reply::Accepted);
    let t0 = std::time::Instant::now();
    loop {
        if restored(p, vol).await.iter().any(|(g, _)| *g == gid) {
            // The restore is done when its action ends (after attaching a loop device).
            wait_num_action(p, vol, "Restore", 0).await;
            let list = restored(p, vol).await;
            return list.into_iter().find(|(g, _)| *g == gid).unwrap().1;
        }
        assert!(t0.elapsed() < LIMIT, "restore of {gid} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_num_action(p: &Peer, vol: &str, action: &str, n: u64) {
    let t0 = std::time::Instant::now();
    loop {
        let r = query(
            p,
            Query::NumAction {
                vol: vol.into(),
                action: action.into(),
            },
        )
        .await;
        if r == Reply::Number(n) {
            return;
        }
        assert!(t0.elapsed() < LIMIT, "{action} count stays {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn status(p: &Peer, vol: &str) -> Vec<String> {
    match query(
        p,
        Query::Status {
            vol: Some(vol.into()),
        },
    )
    .await
    {
        Reply::Status(s) => s.lines(),
        r => panic!("status: {r:?}"),
    }
}

/// Files in `dir` (names), sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file under `dir` whose name ends in `.tmp` (recursively).
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            if p.to_string_lossy().ends_with(".tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// True if `[off, off+len)` of `f` is a hole (no data per SEEK_DATA).
pub fn is_hole(f: &std::fs::File, off: u64, len: u64) -> bool {
    use nix::unistd::{lseek, Whence};
    match lseek(f, off as i64, Whence::SeekData) {
        Ok(d) => d as u64 >= off + len,
        Err(nix::errno::Errno::ENXIO) => true,
        Err(e) => panic!("SEEK_DATA: {e}"),
    }
}
