//! The proxy daemon in-process, over real QUIC with cluster certificates: an operator
//! edits archive-info and starts/stops volumes, a fake storage ships log packs
//! (Protocol 1), and a fake archive takes (or refuses) the forwarded wdiffs (Protocol 2).

use std::collections::VecDeque;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::timeout;
use walb_daemon::opts::{CommonOpts, ProxyOpts};
use walb_daemon::persist::BaseDir;
use walb_daemon::proxy::Proxy;
use walb_daemon::server::serve;
use walb_daemon::session::Ctx;
use walb_kernel::block::Pbs;
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::gen::{DataKind, WlogGen};
use walb_kernel::logpack::{AddOutcome, LogPack, LogPackBuilder};
use walb_kernel::meta::{diff_file_name, MetaDiff};
use walb_kernel::wdiff::{WdiffKind, WdiffReader};
use walb_kernel::wlog::{WlogHeader, WlogReader, WLOG_HEADER_BYTES};
use walb_wire::msg::{
    ArchiveDest, ArchiveInfoCommand, BindCommand, BindHow, Codec, CompressOpt, DiffRange,
    MetaDiffDto, PeerRole, SnapDto, StopMode, WdiffTransfer, WireError, WlogTransfer,
};
use walb_wire::{
    ClusterCa, Command, ErrorCode, IssueOptions, Node, NodeConfig, Peer, PeerId, Query, Reply,
    Request, Role, Step, TlsFiles,
};

const LIMIT: Duration = Duration::from_secs(60);
const VOL: &str = "vol0";
const DEV_LB: u64 = 1 << 13; // 4 MiB

// ----------------------------------------------------------------------------------------
// Cluster, proxy, operator

struct Cluster {
    dir: tempfile::TempDir,
    ca: ClusterCa,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            ca: ClusterCa::generate("proxy-test", 1).unwrap(),
        }
    }

    fn files(&self, role: Role, id: &str) -> TlsFiles {
        let dir = self.dir.path().join(format!("certs-{role}-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let peer = PeerId::new(role, id).unwrap();
        let files = self
            .ca
            .issue(&peer, &IssueOptions::default())
            .unwrap()
            .save(&dir, true)
            .unwrap();
        std::fs::write(&files.ca_cert, self.ca.cert_pem()).unwrap();
        files
    }

    fn node(&self, role: Role, id: &str, listen: bool) -> Node {
        let cfg = NodeConfig::new("127.0.0.1:0".parse().unwrap(), listen);
        Node::bind(cfg, self.files(role, id)).unwrap()
    }

    fn base(&self) -> PathBuf {
        self.dir.path().join("proxy-base")
    }
}

fn opts(base: &Path) -> ProxyOpts {
    ProxyOpts {
        common: CommonOpts {
            base_dir: base.to_path_buf(),
            log_file: "-".into(),
            listen: "0".into(),
            id: Some("p0".into()),
            cert_dir: None,
            fg: 2,
            bg: 2,
            fg_queue: 64,
            fg_queue_per_peer: 16,
            fg_queue_wait: 3600,
            debug: false,
            limits: Default::default(),
            group_access: false,
        },
        stopped: false,
        max_wdiff_send_mb: 128,
        max_wdiff_send_nr: 1000,
        delay: 1,
        max_delay: 2,
        retry_timeout: 1800,
        min_free_mb: 0,
        hold_before_sync_ms: 0,
    }
}

struct ProxyUnderTest {
    ctx: Arc<Ctx>,
    addr: SocketAddr,
    base: PathBuf,
    serving: tokio::task::JoinHandle<()>,
}

async fn start_proxy(c: &Cluster, o: ProxyOpts) -> ProxyUnderTest {
    let node = c.node(Role::Proxy, "p0", true);
    let addr = node.local_addr().unwrap();
    let base = o.common.base_dir.clone();
    let lock = BaseDir::lock(&base).unwrap();
    let ctx = Ctx::new(node, lock, Role::Proxy, "p0", o.common.fg, o.common.bg);
    let proxy: Arc<Proxy> = walb_daemon::proxy::start(Arc::clone(&ctx), o)
        .await
        .unwrap();
    let c2 = Arc::clone(&ctx);
    let serving = tokio::spawn(async move {
        serve(c2, proxy).await.unwrap();
    });
    ProxyUnderTest {
        ctx,
        addr,
        base,
        serving,
    }
}

impl ProxyUnderTest {
    fn vol_dir(&self) -> PathBuf {
        self.base.join(VOL)
    }
    fn queue(&self, a: &str) -> PathBuf {
        self.vol_dir().join("sendto").join(a)
    }
    async fn stop(self) {
        self.ctx.begin_shutdown(false);
        let _ = timeout(LIMIT, self.serving).await;
    }
}

struct Op {
    peer: Peer,
    _node: Node,
}

impl Op {
    async fn new(c: &Cluster, addr: SocketAddr) -> Op {
        let node = c.node(Role::Operator, "op", false);
        let peer = node.connect(addr).await.unwrap();
        Op { peer, _node: node }
    }

    async fn req(&self, r: Request) -> Result<Reply, WireError> {
        match timeout(LIMIT, self.peer.request(r)).await.unwrap() {
            Ok(r) => Ok(r),
            Err(walb_wire::Error::Remote(e)) => Err(e),
            Err(e) => panic!("transport error: {e}"),
        }
    }

    async fn cmd(&self, c: Command) -> Result<Reply, WireError> {
        self.req(Request::Command(c)).await
    }

    async fn state(&self) -> String {
        match self
            .req(Request::Query(Query::State { vol: VOL.into() }))
            .await
        {
            Ok(Reply::State(s)) => s.name().to_owned(),
            other => panic!("state: {other:?}"),
        }
    }

    async fn wait_state(&self, want: &str) {
        let t0 = Instant::now();
        while self.state().await != want {
            assert!(t0.elapsed() < LIMIT, "volume never became {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn set_archive(
        &self,
        a: &str,
        addr: &str,
        delay_s: u64,
        update: bool,
    ) -> Result<Reply, WireError> {
        let r = self
            .cmd(Command::ArchiveInfo(ArchiveInfoCommand::Set {
                vol: VOL.into(),
                archive: a.into(),
                dest: ArchiveDest {
                    addr: addr.into(),
                    compress: CompressOpt {
                        codec: Codec::Zstd,
                        level: 1,
                        ncpu: 1,
                    },
                    delay_s,
                },
                update,
            }))
            .await?;
        // The volume takes the test storage's wlogs (walb-console binds it so).
        self.cmd(Command::Bind(BindCommand {
            vol: VOL.into(),
            role: PeerRole::Storage,
            ids: vec!["s0".into()],
            how: BindHow::Set,
        }))
        .await?;
        Ok(r)
    }

    async fn delete_archive(&self, a: &str) -> Result<Reply, WireError> {
        self.cmd(Command::ArchiveInfo(ArchiveInfoCommand::Delete {
            vol: VOL.into(),
            archive: a.into(),
        }))
        .await
    }

    async fn start(&self) -> Result<Reply, WireError> {
        self.cmd(Command::Start {
            vol: VOL.into(),
            mode: None,
        })
        .await
    }

    async fn stop(&self, mode: StopMode) -> Result<Reply, WireError> {
        self.cmd(Command::Stop {
            vol: VOL.into(),
            mode,
        })
        .await
    }

    async fn send_error(&self, a: &str) -> bool {
        match self
            .req(Request::Query(Query::IsWdiffSendError {
                vol: VOL.into(),
                archive: a.into(),
            }))
            .await
        {
            Ok(Reply::Bool(b)) => b,
            other => panic!("is-wdiff-send-error: {other:?}"),
        }
    }

    /// The volume's gid in `latest-snap` (asked for every volume).
    async fn latest_gid(&self) -> Option<u64> {
        match self
            .req(Request::Query(Query::LatestSnap { vol: None }))
            .await
        {
            Ok(Reply::Snapshots(s)) if s.len() == 1 && s[0].vol == VOL => s[0].gid,
            other => panic!("latest-snap answered {other:?}"),
        }
    }

    async fn queued(&self, a: &str) -> Vec<MetaDiffDto> {
        match self
            .req(Request::Query(Query::Diff {
                vol: VOL.into(),
                gid_b: None,
                gid_e: None,
                archive: Some(a.into()),
            }))
            .await
        {
            Ok(Reply::Diffs(d)) => d,
            other => panic!("diff: {other:?}"),
        }
    }
}

fn code(r: Result<Reply, WireError>) -> ErrorCode {
    match r {
        Err(e) => e.code,
        Ok(r) => panic!("expected a refusal, got {r:?}"),
    }
}

// ----------------------------------------------------------------------------------------
// Log packs and the fake storage

/// A pack stream of one transfer, as a storage sends it.
struct Wlog {
    bytes: Vec<u8>,
    pbs: Pbs,
    salt: u32,
    uuid: [u8; 16],
    begin: u64,
    end: u64,
    packs: Vec<LogPack>,
}

const SALT: u32 = 0x5a17_0001;
const UUID: [u8; 16] = [7; 16];

/// Random writes (incompressible) of `n` IOs of `lb` blocks at lsid `begin`.
fn packs(seed: u64, begin: u64, n: usize, lb: usize, uuid: [u8; 16]) -> Wlog {
    let pbs = Pbs::B4096;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = LogPackBuilder::new(pbs, SALT, begin, None);
    let mut out = Vec::new();
    let mut data = vec![0u8; lb * 512];
    for _ in 0..n {
        rng.fill_bytes(&mut data);
        let addr = rng.random_range(0..DEV_LB - lb as u64) & !7;
        while b.add_write(addr, &data).unwrap() == AddOutcome::Full {
            out.push(b.finish());
        }
    }
    if !b.is_empty() {
        out.push(b.finish());
    }
    wlog_of(out, pbs, SALT, uuid, begin)
}

fn wlog_of(packs: Vec<LogPack>, pbs: Pbs, salt: u32, uuid: [u8; 16], begin: u64) -> Wlog {
    let mut bytes = Vec::new();
    let mut end = begin;
    for p in &packs {
        let mut h = p.header.clone();
        bytes.extend_from_slice(&h.to_block());
        bytes.extend_from_slice(&p.data);
        end = p.header.next_lsid();
    }
    Wlog {
        bytes,
        pbs,
        salt,
        uuid,
        begin,
        end,
        packs,
    }
}

/// A generated wlog with discards and zero writes, without its file header and end marker.
fn generated(seed: u64) -> Wlog {
    let mut g = WlogGen::new(DEV_LB, 1 << 20);
    g.seed = seed;
    g.kind = DataKind::Compressible;
    g.discard_pct = 10;
    g.zero_pct = 10;
    g.ring_size = Some(1 << 12);
    g.begin_lsid = 3000;
    let mut w = Vec::new();
    g.write(&mut w).unwrap();
    let h = WlogHeader::parse(&w).unwrap();
    let packs: Vec<LogPack> = WlogReader::new(&w[..])
        .unwrap()
        .map(|p| p.unwrap())
        .collect();
    let body = w[WLOG_HEADER_BYTES..w.len() - h.pbs.bytes()].to_vec();
    let mut wl = wlog_of(packs, h.pbs, h.salt, h.uuid, h.begin_lsid);
    assert_eq!(wl.bytes, body, "re-encoded packs differ from the wlog body");
    wl.bytes = body;
    wl
}

fn meta(b: u64, e: u64, mergeable: bool) -> MetaDiffDto {
    MetaDiffDto {
        range: DiffRange {
            snap_b: SnapDto { gid_b: b, gid_e: b },
            snap_e: SnapDto { gid_b: e, gid_e: e },
        },
        mergeable,
        comp_diff: false,
        timestamp_s: 1_700_000_000 + e,
        size: 0,
    }
}

fn kernel_meta(d: &MetaDiffDto) -> MetaDiff {
    walb_daemon::dto::diff_from_dto(d).unwrap()
}

struct Storage {
    peer: Peer,
    _node: Node,
}

impl Storage {
    async fn new(c: &Cluster, addr: SocketAddr) -> Storage {
        let node = c.node(Role::Storage, "s0", false);
        let peer = node.connect(addr).await.unwrap();
        Storage { peer, _node: node }
    }

    fn request(w: &Wlog) -> WlogTransfer {
        WlogTransfer {
            vol: VOL.into(),
            uuid: w.uuid,
            pbs: w.pbs.get(),
            salt: w.salt,
            size_lb: DEV_LB,
            log_size_pb: w.end - w.begin,
        }
    }

    /// Sends `bytes` under `req` cut in odd chunks; the proxy's final answer.
    async fn send_raw(
        &self,
        req: WlogTransfer,
        bytes: &[u8],
        d: MetaDiffDto,
    ) -> Result<(), WireError> {
        let run = async {
            let mut call = self.peer.call(Request::WlogTransfer(req)).await.unwrap();
            match call.receiver.reply().await {
                Ok(Reply::Accepted) => {}
                Ok(r) => panic!("wlog transfer answered {r:?}"),
                Err(walb_wire::Error::Remote(e)) => return Err(e),
                Err(e) => panic!("{e}"),
            }
            for c in bytes.chunks(300_001) {
                if call.sender.chunk(c).await.is_err() {
                    break;
                }
            }
            let _ = call.sender.end_bulk().await;
            let _ = call.sender.step(Step::MetaDiff(d)).await;
            let _ = call.sender.finish();
            match call.receiver.step().await {
                Ok(Step::Ack) => Ok(()),
                Ok(s) => panic!("expected an ack, got {s:?}"),
                Err(walb_wire::Error::Remote(e)) => Err(e),
                Err(e) => panic!("{e}"),
            }
        };
        timeout(LIMIT, run).await.unwrap()
    }

    async fn send(&self, w: &Wlog, d: MetaDiffDto) -> Result<(), WireError> {
        self.send_raw(Self::request(w), &w.bytes, d).await
    }
}

// ----------------------------------------------------------------------------------------
// The fake archive

#[derive(Clone, Copy, Debug)]
enum Answer {
    Accept,
    /// Take the bytes, never acknowledge.
    Hang,
    Refuse(ErrorCode),
}

struct Got {
    req: WdiffTransfer,
    bytes: Vec<u8>,
    at: Instant,
}

struct Archive {
    addr: String,
    script: Arc<Mutex<VecDeque<Answer>>>,
    got: mpsc::UnboundedReceiver<Got>,
    _node: Node,
}

impl Archive {
    fn start(c: &Cluster, id: &str) -> Archive {
        let node = c.node(Role::Archive, id, true);
        let addr = format!("127.0.0.1:{}", node.local_addr().unwrap().port());
        let script: Arc<Mutex<VecDeque<Answer>>> = Arc::default();
        let (tx, got) = mpsc::unbounded_channel();
        let (n2, s2) = (node.clone(), Arc::clone(&script));
        tokio::spawn(async move {
            while let Some(inc) = n2.accept().await {
                let Request::WdiffTransfer(req) = inc.request else {
                    continue;
                };
                let answer = s2.lock().unwrap().pop_front().unwrap_or(Answer::Accept);
                let tx = tx.clone();
                let mut call = inc.call;
                tokio::spawn(async move {
                    let at = Instant::now();
                    match answer {
                        Answer::Refuse(code) => {
                            let _ = tx.send(Got {
                                req,
                                bytes: Vec::new(),
                                at,
                            });
                            call.refuse(WireError::new(code, "scripted refusal")).await;
                        }
                        Answer::Hang => {
                            call.reply(Reply::Accepted).await.unwrap();
                            let mut bytes = Vec::new();
                            while let Ok(Some(c)) = call.receiver.chunk().await {
                                bytes.extend_from_slice(&c);
                            }
                            let _ = tx.send(Got { req, bytes, at });
                            tokio::time::sleep(LIMIT * 2).await;
                            drop(call);
                        }
                        Answer::Accept => {
                            call.reply(Reply::Accepted).await.unwrap();
                            let mut bytes = Vec::new();
                            while let Some(c) = call.receiver.chunk().await.unwrap() {
                                assert!(c.len() <= 4 << 20, "chunk of {} bytes", c.len());
                                bytes.extend_from_slice(&c);
                            }
                            // Validate the whole file as the archive does.
                            for io in WdiffReader::new(Cursor::new(bytes.clone())).unwrap() {
                                io.unwrap();
                            }
                            let _ = tx.send(Got { req, bytes, at });
                            call.sender.step(Step::Ack).await.unwrap();
                            let _ = call.sender.finish();
                        }
                    }
                });
            }
        });
        Archive {
            addr,
            script,
            got,
            _node: node,
        }
    }

    fn script(&self, answers: &[Answer]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    async fn next(&mut self) -> Got {
        timeout(LIMIT, self.got.recv()).await.unwrap().unwrap()
    }

    /// No transfer arrives within `d`.
    async fn quiet(&mut self, d: Duration) -> bool {
        timeout(d, self.got.recv()).await.is_err()
    }
}

// ----------------------------------------------------------------------------------------
// Images

fn image_of_packs(packs: &[&LogPack]) -> Vec<u8> {
    let mut r = Redo::new(vec![0x33u8; DEV_LB as usize * 512], DiscardPolicy::Zero).unwrap();
    for p in packs {
        r.apply_pack(p).unwrap();
    }
    r.finish().unwrap().0
}

fn image_of_wdiffs(files: &[Vec<u8>]) -> Vec<u8> {
    let mut r = Redo::new(vec![0x33u8; DEV_LB as usize * 512], DiscardPolicy::Zero).unwrap();
    for f in files {
        r.apply_stream(WdiffReader::new(Cursor::new(f.clone())).unwrap())
            .unwrap();
    }
    r.finish().unwrap().0
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

// ----------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_info_lifecycle_and_state_refusals() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await;
    let op = Op::new(&c, p.addr).await;
    let list = Request::Query(Query::ArchiveInfo {
        vol: VOL.into(),
        archive: None,
    });
    let get = |a: &str| {
        Request::Query(Query::ArchiveInfo {
            vol: VOL.into(),
            archive: Some(a.into()),
        })
    };
    assert_eq!(op.state().await, "Clear");
    assert_eq!(op.req(list.clone()).await.unwrap(), Reply::Names(vec![]));
    assert_eq!(code(op.req(get("a0")).await), ErrorCode::NotFound);
    assert_eq!(code(op.delete_archive("a0").await), ErrorCode::NotFound);
    assert_eq!(code(op.start().await), ErrorCode::NotFound);

    // The first add creates the volume: Clear → AddArchiveInfo → Stopped.
    assert_eq!(
        op.set_archive("a0", "127.0.0.1:1", 0, false).await.unwrap(),
        Reply::Done
    );
    assert_eq!(op.state().await, "Stopped");
    assert!(p.queue("a0").is_dir());
    assert!(p.vol_dir().join("received").is_dir());
    assert_eq!(
        std::fs::read_to_string(p.vol_dir().join("a0.archive")).unwrap(),
        "127.0.0.1:1 zstd:1:1 0"
    );
    assert_eq!(
        info_line(op.req(get("a0")).await.unwrap()),
        "127.0.0.1:1 zstd:1:1 0"
    );
    assert_eq!(
        op.req(Request::Query(Query::Vols)).await.unwrap(),
        Reply::Names(vec![VOL.into()])
    );
    // add refuses an existing name; update replaces it.
    assert_eq!(
        code(op.set_archive("a0", "127.0.0.1:2", 0, false).await),
        ErrorCode::BadRequest
    );
    op.set_archive("a0", "127.0.0.1:2", 9, true).await.unwrap();
    assert_eq!(
        info_line(op.req(get("a0")).await.unwrap()),
        "127.0.0.1:2 zstd:1:1 9"
    );
    op.set_archive("a1", "127.0.0.1:3", 0, false).await.unwrap();
    assert_eq!(
        op.req(list.clone()).await.unwrap(),
        Reply::Names(vec!["a0".into(), "a1".into()])
    );
    // Bad destinations and names.
    assert_eq!(
        code(op.set_archive("a2", "nohost", 0, false).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(op.set_archive("../x", "h:1", 0, false).await),
        ErrorCode::BadRequest
    );

    // Started: archive-info editing and clear-vol are refused, get/list still work.
    op.start().await.unwrap();
    assert_eq!(op.state().await, "Started");
    assert_eq!(code(op.start().await), ErrorCode::WrongState);
    assert_eq!(
        code(op.set_archive("a2", "h:1", 0, false).await),
        ErrorCode::WrongState
    );
    assert_eq!(code(op.delete_archive("a1").await), ErrorCode::WrongState);
    assert_eq!(
        code(op.cmd(Command::ClearVol { vol: VOL.into() }).await),
        ErrorCode::WrongState
    );
    assert!(op.req(get("a1")).await.is_ok());
    assert!(!op.send_error("a0").await);

    assert_eq!(op.stop(StopMode::Graceful).await.unwrap(), Reply::Accepted);
    op.wait_state("Stopped").await;
    assert_eq!(
        code(op.stop(StopMode::Graceful).await),
        ErrorCode::WrongState
    );

    // Deleting archives; the last one removes the volume.
    op.delete_archive("a1").await.unwrap();
    assert!(!p.queue("a1").exists() && !p.vol_dir().join("a1.archive").exists());
    assert_eq!(op.state().await, "Stopped");
    assert_eq!(code(op.delete_archive("a1").await), ErrorCode::NotFound);
    op.delete_archive("a0").await.unwrap();
    assert_eq!(op.state().await, "Clear");
    assert!(!p.vol_dir().exists());
    assert_eq!(
        op.req(Request::Query(Query::Vols)).await.unwrap(),
        Reply::Names(vec![])
    );

    // clear-vol from Stopped.
    op.set_archive("a0", "127.0.0.1:1", 0, false).await.unwrap();
    op.cmd(Command::ClearVol { vol: VOL.into() }).await.unwrap();
    assert_eq!(op.state().await, "Clear");
    assert!(!p.vol_dir().exists());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wlog_is_acked_once_queued_for_every_archive_and_redoes_to_the_same_image() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await;
    let op = Op::new(&c, p.addr).await;
    // Long delays: nothing is forwarded during the test.
    op.set_archive("a0", "127.0.0.1:1", 3600, false)
        .await
        .unwrap();
    op.set_archive("a1", "127.0.0.1:2", 3600, false)
        .await
        .unwrap();
    op.start().await.unwrap();
    let st = Storage::new(&c, p.addr).await;

    let w = generated(11);
    let d = meta(0, 1, true);
    assert_eq!(op.latest_gid().await, None, "nothing received yet");
    st.send(&w, d).await.unwrap();
    // latest-snap: the newest snapshot a received wdiff reaches.
    assert_eq!(op.latest_gid().await, Some(d.range.snap_e.gid_b));
    // At the acknowledgement the diff is in both queues, as one file (hard links).
    let name = diff_file_name(&kernel_meta(&d));
    let f0 = p.queue("a0").join(&name);
    let f1 = p.queue("a1").join(&name);
    assert!(
        f0.is_file() && f1.is_file(),
        "{:?}",
        files_in(&p.queue("a0"))
    );
    use std::os::unix::fs::MetadataExt;
    let (m0, m1) = (
        std::fs::metadata(&f0).unwrap(),
        std::fs::metadata(&f1).unwrap(),
    );
    assert_eq!((m0.ino(), m0.nlink()), (m1.ino(), 2));
    assert!(files_in(&p.vol_dir().join("received")).is_empty());
    assert_eq!(
        std::fs::read_to_string(p.vol_dir().join("size")).unwrap(),
        DEV_LB.to_string()
    );
    // An indexed wdiff with the volume's uuid that redoes to the wlog's image.
    let bytes = std::fs::read(&f0).unwrap();
    let rd = WdiffReader::new(Cursor::new(bytes.clone())).unwrap();
    assert_eq!(rd.header().kind, WdiffKind::Indexed);
    assert_eq!(rd.header().uuid, w.uuid);
    let packs: Vec<&LogPack> = w.packs.iter().collect();
    assert!(image_of_wdiffs(std::slice::from_ref(&bytes)) == image_of_packs(&packs));
    // The queue lists it with its file size.
    let q = op.queued("a1").await;
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].range, q[0].size), (d.range, bytes.len() as u64));
    assert_eq!(op.state().await, "Started");

    // A resend of the same diff (a lost ack) replaces it harmlessly.
    st.send(&w, d).await.unwrap();
    assert_eq!(files_in(&p.queue("a0")), vec![f0.clone()]);
    p.stop().await;
}

/// A proxy started with `o`, its operator, the test storage, and archive a0 (no delay)
/// as the destination of the Started volume.
async fn proxy_with_a0(c: &Cluster, o: ProxyOpts) -> (ProxyUnderTest, Op, Storage, Archive) {
    let p = start_proxy(c, o).await;
    let op = Op::new(c, p.addr).await;
    let st = Storage::new(c, p.addr).await;
    let a = Archive::start(c, "a0");
    op.set_archive("a0", &a.addr, 0, false).await.unwrap();
    op.start().await.unwrap();
    (p, op, st, a)
}

/// Forwarding starts before the proxy's own fsync, and the storage's ack waits for that
/// fsync. A storage that never hears the ack (as when the proxy dies before its fsync)
/// still holds the logs and resends them: the proxy acks the resend, and the archive,
/// which holds the diff already, refuses the copy as too old; the proxy drops it. The
/// archive took the diff exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_starts_before_the_proxy_fsync_and_a_resend_is_taken_once() {
    const HOLD: Duration = Duration::from_secs(5);
    let c = Cluster::new();
    let mut o = opts(&c.base());
    o.hold_before_sync_ms = HOLD.as_millis() as u64;
    let (p, op, st, mut a) = proxy_with_a0(&c, o).await;
    let w = packs(1, 0, 4, 8, UUID);
    let d = meta(0, 1, true);

    // The storage's call by hand: it gives up before the ack.
    let t0 = Instant::now();
    let mut call = st
        .peer
        .call(Request::WlogTransfer(Storage::request(&w)))
        .await
        .unwrap();
    assert!(matches!(call.receiver.reply().await, Ok(Reply::Accepted)));
    for c in w.bytes.chunks(300_001) {
        call.sender.chunk(c).await.unwrap();
    }
    call.sender.end_bulk().await.unwrap();
    call.sender.step(Step::MetaDiff(d)).await.unwrap();
    let g = a.next().await;
    let forwarded = t0.elapsed();
    assert!(forwarded < HOLD, "forwarded after {forwarded:?}");
    assert_eq!(g.req.diff.range, d.range);
    assert!(!g.bytes.is_empty());
    // The proxy's copy is not durable yet: no ack.
    assert!(
        timeout(Duration::from_millis(300), call.receiver.step())
            .await
            .is_err(),
        "acknowledged before the proxy's fsync"
    );
    drop(call);

    // The resend: acknowledged only after the proxy's fsync, forwarded, refused as too
    // old (the archive has it), dropped.
    // (Busy while the first receive still holds the volume, as a real storage retries.)
    a.script(&[Answer::Refuse(ErrorCode::TooOldDiff)]);
    let took = loop {
        let t1 = Instant::now();
        match st.send(&w, d).await {
            Ok(()) => break t1.elapsed(),
            Err(e) if e.code == ErrorCode::Busy && t0.elapsed() < LIMIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("resend: {e}"),
        }
    };
    assert!(took >= HOLD, "acked after {took:?}");
    let g = a.next().await;
    assert_eq!(g.req.diff.range, d.range);
    assert!(g.bytes.is_empty(), "the refused copy carried bytes");
    let t2 = Instant::now();
    while !files_in(&p.queue("a0")).is_empty() {
        assert!(t2.elapsed() < LIMIT, "{:?}", files_in(&p.queue("a0")));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!op.send_error("a0").await);
    assert!(a.quiet(Duration::from_millis(500)).await, "sent again");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_cut_streams_are_refused_and_leave_nothing() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await;
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    let w = packs(1, 100, 40, 16, UUID);

    // Refusals before any byte: unknown or stopped volume, no room.
    assert_eq!(
        st.send(&w, meta(0, 1, true)).await.unwrap_err().code,
        ErrorCode::Stopped
    );
    op.set_archive("a0", "127.0.0.1:1", 3600, false)
        .await
        .unwrap();
    assert_eq!(
        st.send(&w, meta(0, 1, true)).await.unwrap_err().code,
        ErrorCode::Stopped
    );
    op.start().await.unwrap();
    let mut huge = Storage::request(&w);
    huge.log_size_pb = 1 << 50;
    assert_eq!(
        st.send_raw(huge, &w.bytes, meta(0, 1, true))
            .await
            .unwrap_err()
            .code,
        ErrorCode::TooLarge
    );
    let mut bad_pbs = Storage::request(&w);
    bad_pbs.pbs = 1000;
    assert_eq!(
        st.send_raw(bad_pbs, &w.bytes, meta(0, 1, true))
            .await
            .unwrap_err()
            .code,
        ErrorCode::BadRequest
    );

    // A flipped data byte in the middle of the stream.
    let mut bad = w.bytes.clone();
    let off = w.bytes.len() / 2;
    bad[off] ^= 0x40;
    let e = st
        .send_raw(Storage::request(&w), &bad, meta(0, 1, true))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Corrupt, "{e}");
    // Wrong salt: the first header does not verify.
    let mut salty = Storage::request(&w);
    salty.salt ^= 1;
    let e = st
        .send_raw(salty, &w.bytes, meta(0, 1, true))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Corrupt, "{e}");
    // Cut inside a pack.
    let e = st
        .send_raw(
            Storage::request(&w),
            &w.bytes[..w.bytes.len() - 1000],
            meta(0, 1, true),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Truncated, "{e}");
    // A dirty diff is not a log diff.
    let mut dirty = meta(0, 1, true);
    dirty.range.snap_e.gid_e = 5;
    let e = st.send(&w, dirty).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest, "{e}");

    assert!(files_in(&p.queue("a0")).is_empty());
    assert!(files_in(&p.vol_dir().join("received")).is_empty());
    assert_eq!(op.state().await, "Started");
    // The volume still takes a good transfer.
    st.send(&w, meta(0, 1, true)).await.unwrap();
    assert_eq!(files_in(&p.queue("a0")).len(), 1);
    p.stop().await;
}

/// Queues `n` diffs |g|-->|g+1| while forwarding is held back (long delay), then lets
/// them go; returns the wlogs and the diffs.
async fn queue_diffs(
    op: &Op,
    st: &Storage,
    archive_addr: &str,
    n: u64,
    explicit: &[u64],
    other_uuid: &[u64],
    io_lb: usize,
) -> (Vec<Wlog>, Vec<MetaDiffDto>) {
    op.set_archive("a0", archive_addr, 3600, false)
        .await
        .unwrap();
    op.start().await.unwrap();
    let mut wl = Vec::new();
    let mut ds = Vec::new();
    let mut lsid = 0;
    for g in 0..n {
        let uuid = if other_uuid.contains(&g) {
            [9; 16]
        } else {
            UUID
        };
        let w = packs(100 + g, lsid, 8, io_lb, uuid);
        lsid = w.end;
        let d = meta(g, g + 1, !explicit.contains(&g));
        st.send(&w, d).await.unwrap();
        wl.push(w);
        ds.push(d);
    }
    op.stop(StopMode::Graceful).await.unwrap();
    op.wait_state("Stopped").await;
    op.set_archive("a0", archive_addr, 0, true).await.unwrap();
    (wl, ds)
}

async fn collect(a: &mut Archive, n_diffs: u64) -> Vec<Got> {
    let mut got = Vec::new();
    let mut covered = 0;
    while covered < n_diffs {
        let g = a.next().await;
        covered += g.req.diff.range.snap_e.gid_b - g.req.diff.range.snap_b.gid_b;
        got.push(g);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_merges_batches_within_the_file_limit_and_cuts_at_explicit_snapshots_and_uuid_changes(
) {
    let c = Cluster::new();
    let mut o = opts(&c.base());
    o.max_wdiff_send_nr = 3;
    let p = start_proxy(&c, o).await;
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    let mut a = Archive::start(&c, "a0");
    // Diff 7 starts at an explicit snapshot; diff 9 comes from a reset device (new uuid).
    let (wl, _) = queue_diffs(&op, &st, &a.addr, 11, &[7], &[9, 10], 8).await;
    op.start().await.unwrap();
    let got = collect(&mut a, 11).await;
    let ranges: Vec<(u64, u64)> = got
        .iter()
        .map(|g| (g.req.diff.range.snap_b.gid_b, g.req.diff.range.snap_e.gid_b))
        .collect();
    assert_eq!(ranges, vec![(0, 3), (3, 6), (6, 7), (7, 9), (9, 11)]);
    // Mergeable flag of a merged diff is the first's; the uuid is the files'.
    assert!(!got[3].req.diff.mergeable);
    assert_eq!(got[4].req.uuid, [9; 16]);
    assert_eq!(got[0].req.uuid, UUID);
    assert_eq!(got[0].req.size_lb, DEV_LB);
    // Merged batches are sorted wdiffs; a single one goes as the queued (indexed) file.
    let kind = |g: &Got| {
        WdiffReader::new(Cursor::new(g.bytes.clone()))
            .unwrap()
            .header()
            .kind
    };
    assert_eq!(kind(&got[0]), WdiffKind::Sorted);
    assert_eq!(kind(&got[2]), WdiffKind::Indexed);
    // Applying what the archive got gives the image of all the logs.
    let files: Vec<Vec<u8>> = got.iter().map(|g| g.bytes.clone()).collect();
    let packs: Vec<&LogPack> = wl.iter().flat_map(|w| w.packs.iter()).collect();
    assert!(image_of_wdiffs(&files) == image_of_packs(&packs));
    // Every acknowledged file is deleted.
    let t0 = Instant::now();
    while !files_in(&p.queue("a0")).is_empty() {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.quiet(Duration::from_millis(300)).await);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_respects_the_size_limit() {
    let c = Cluster::new();
    let mut o = opts(&c.base());
    o.max_wdiff_send_mb = 1;
    let p = start_proxy(&c, o).await;
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    let mut a = Archive::start(&c, "a0");
    // About 300 KiB of incompressible data per diff.
    let (_, _) = queue_diffs(&op, &st, &a.addr, 7, &[], &[], 72).await;
    let sizes: Vec<u64> = op.queued("a0").await.iter().map(|d| d.size).collect();
    assert!(
        sizes.iter().all(|s| *s > 100 << 10 && *s < 600 << 10),
        "{sizes:?}"
    );
    // The greedy partition under 1 MiB (a batch always holds at least one diff).
    let mut want = Vec::new();
    let (mut start, mut total) = (0u64, 0u64);
    for (i, s) in sizes.iter().enumerate() {
        if i as u64 > start && total + s > 1 << 20 {
            want.push((start, i as u64));
            start = i as u64;
            total = 0;
        }
        total += s;
    }
    want.push((start, sizes.len() as u64));
    assert!(want.len() >= 3, "{want:?}");
    op.start().await.unwrap();
    let got = collect(&mut a, 7).await;
    let ranges: Vec<(u64, u64)> = got
        .iter()
        .map(|g| (g.req.diff.range.snap_b.gid_b, g.req.diff.range.snap_e.gid_b))
        .collect();
    assert_eq!(ranges, want);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_drops_and_smaller_lv_size_is_a_send_error_until_kick() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await;
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    let mut a = Archive::start(&c, "a0");
    op.set_archive("a0", &a.addr, 0, false).await.unwrap();
    op.start().await.unwrap();

    // too-old-diff: the file is dropped, no send error.
    a.script(&[Answer::Refuse(ErrorCode::TooOldDiff)]);
    let w0 = packs(1, 0, 4, 8, UUID);
    st.send(&w0, meta(0, 1, true)).await.unwrap();
    let g = a.next().await;
    assert!(g.bytes.is_empty());
    let t0 = Instant::now();
    while !files_in(&p.queue("a0")).is_empty() {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!op.send_error("a0").await);

    // smaller-lv-size: send error, the file stays, no retries until kick.
    a.script(&[Answer::Refuse(ErrorCode::SmallerLvSize)]);
    let w1 = packs(2, w0.end, 4, 8, UUID);
    st.send(&w1, meta(1, 2, true)).await.unwrap();
    let g = a.next().await;
    assert_eq!(g.req.diff.range.snap_b.gid_b, 1);
    let t0 = Instant::now();
    while !op.send_error("a0").await {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        a.quiet(Duration::from_millis(2500)).await,
        "retried despite the send error"
    );
    assert_eq!(files_in(&p.queue("a0")).len(), 1);
    // A new wlog does not restart sending either.
    let w2 = packs(3, w1.end, 4, 8, UUID);
    st.send(&w2, meta(2, 3, true)).await.unwrap();
    assert!(a.quiet(Duration::from_millis(500)).await);

    op.cmd(Command::Kick {
        vol: Some(VOL.into()),
        archive: Some("a0".into()),
    })
    .await
    .unwrap();
    assert!(!op.send_error("a0").await);
    let g = a.next().await;
    assert_eq!(
        (g.req.diff.range.snap_b.gid_b, g.req.diff.range.snap_e.gid_b),
        (1, 3)
    );
    let t0 = Instant::now();
    while !files_in(&p.queue("a0")).is_empty() {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_archive_is_retried_with_doubling_backoff() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await; // --delay 1 --max-delay 2
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    let mut a = Archive::start(&c, "a0");
    op.set_archive("a0", &a.addr, 0, false).await.unwrap();
    op.start().await.unwrap();
    a.script(&[
        Answer::Refuse(ErrorCode::Stopped),
        Answer::Refuse(ErrorCode::Stopped),
        Answer::Refuse(ErrorCode::Busy),
    ]);
    st.send(&packs(1, 0, 4, 8, UUID), meta(0, 1, true))
        .await
        .unwrap();
    let mut at = vec![a.next().await.at];
    // A wlog arriving during the backoff does not cut it short.
    st.send(&packs(2, 1 << 20, 4, 8, UUID), meta(1, 2, true))
        .await
        .unwrap();
    for _ in 0..3 {
        at.push(a.next().await.at);
    }
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    assert!(gaps[0] >= 0.9 && gaps[0] < 1.8, "{gaps:?}");
    assert!(gaps[1] >= 1.9 && gaps[1] < 3.0, "{gaps:?}");
    assert!(gaps[2] >= 1.9 && gaps[2] < 3.0, "max delay: {gaps:?}");
    assert!(!op.send_error("a0").await);
    let t0 = Instant::now();
    while !files_in(&p.queue("a0")).is_empty() {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_empty_waits_until_every_queue_is_delivered() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await;
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    let mut a = Archive::start(&c, "a0");
    // A delay that would hold the diffs for an hour: stop empty sends them now.
    op.set_archive("a0", &a.addr, 3600, false).await.unwrap();
    op.start().await.unwrap();
    let w0 = packs(1, 0, 4, 8, UUID);
    st.send(&w0, meta(0, 1, true)).await.unwrap();
    st.send(&packs(2, w0.end, 4, 8, UUID), meta(1, 2, false))
        .await
        .unwrap();
    assert!(a.quiet(Duration::from_millis(300)).await);
    a.script(&[Answer::Refuse(ErrorCode::Stopped)]);

    assert_eq!(op.stop(StopMode::Empty).await.unwrap(), Reply::Accepted);
    let g = a.next().await; // refused
    assert!(g.bytes.is_empty());
    assert_eq!(op.state().await, "WaitForEmpty");
    assert_eq!(files_in(&p.queue("a0")).len(), 2);
    // No wlog is taken meanwhile.
    let e = st
        .send(&packs(3, 99, 2, 8, UUID), meta(2, 3, true))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Stopped);
    // The retry delivers |0|-->|1|, then |1|-->|2| (explicit: not merged).
    let g1 = a.next().await;
    let g2 = a.next().await;
    assert_eq!(g1.req.diff.range.snap_e.gid_b, 1);
    assert_eq!(g2.req.diff.range.snap_e.gid_b, 2);
    op.wait_state("Stopped").await;
    assert!(files_in(&p.queue("a0")).is_empty());
    // Stopped: nothing more is sent, a wlog is refused.
    assert_eq!(
        st.send(&packs(4, 0, 2, 8, UUID), meta(2, 3, true))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Stopped
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_starts_its_volumes_and_requeues_received_diffs() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await;
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    op.set_archive("a0", "127.0.0.1:1", 3600, false)
        .await
        .unwrap();
    op.set_archive("a1", "127.0.0.1:1", 3600, false)
        .await
        .unwrap();
    op.start().await.unwrap();
    st.send(&packs(1, 0, 4, 8, UUID), meta(0, 1, true))
        .await
        .unwrap();
    let base = p.base.clone();
    drop((op, st));
    p.stop().await;
    // A crash between conversion and linking: a file left in received/, a temp file.
    let vd = base.join(VOL);
    let q0 = files_in(&vd.join("sendto/a0"));
    let name = "20240101000000-M--1-2.wdiff";
    std::fs::copy(&q0[0], vd.join("received").join(name)).unwrap();
    std::fs::write(vd.join("received/recv-1.tmp"), b"half").unwrap();
    let t0 = Instant::now();
    let lock = loop {
        match BaseDir::lock(&base) {
            Ok(l) => break l,
            Err(_) if t0.elapsed() < LIMIT => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    };
    drop(lock);
    let p = start_proxy(&c, opts(&base)).await;
    let op = Op::new(&c, p.addr).await;
    assert_eq!(op.state().await, "Started");
    for a in ["a0", "a1"] {
        let q: Vec<(u64, u64)> = op
            .queued(a)
            .await
            .iter()
            .map(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b))
            .collect();
        assert_eq!(q, vec![(0, 1), (1, 2)], "{a}");
    }
    assert!(files_in(&vd.join("received")).is_empty());
    p.stop().await;

    // With --stopped the volume stays Stopped.
    let t0 = Instant::now();
    while BaseDir::lock(&base).is_err() {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut o = opts(&base);
    o.stopped = true;
    let p = start_proxy(&c, o).await;
    let op = Op::new(&c, p.addr).await;
    assert_eq!(op.state().await, "Stopped");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_stop_aborts_a_send_the_archive_never_acknowledges() {
    let c = Cluster::new();
    let p = start_proxy(&c, opts(&c.base())).await;
    let op = Op::new(&c, p.addr).await;
    let st = Storage::new(&c, p.addr).await;
    let mut a = Archive::start(&c, "a0");
    op.set_archive("a0", &a.addr, 0, false).await.unwrap();
    op.start().await.unwrap();
    a.script(&[Answer::Hang]);
    st.send(&packs(1, 0, 4, 8, UUID), meta(0, 1, true))
        .await
        .unwrap();
    let g = a.next().await;
    assert!(!g.bytes.is_empty());
    // A graceful stop waits for the send; a forced one aborts it.
    op.stop(StopMode::Graceful).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(op.state().await, "Started");
    op.stop(StopMode::Force).await.unwrap();
    let t0 = Instant::now();
    op.wait_state("Stopped").await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Not acknowledged: still queued, and delivered after a restart of the volume.
    assert_eq!(files_in(&p.queue("a0")).len(), 1);
    op.start().await.unwrap();
    let g = a.next().await;
    assert_eq!(g.req.diff.range.snap_e.gid_b, 1);
    let t0 = Instant::now();
    while !files_in(&p.queue("a0")).is_empty() {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wlogs_for_the_retry_timeout_a_refusal_becomes_a_send_error() {
    let c = Cluster::new();
    let mut o = opts(&c.base());
    o.retry_timeout = 0;
    let (p, op, st, mut a) = proxy_with_a0(&c, o).await;
    // too-new-diff (the archive is merely behind) keeps retrying...
    a.script(&[
        Answer::Refuse(ErrorCode::TooNewDiff),
        Answer::Refuse(ErrorCode::Stopped),
    ]);
    st.send(&packs(1, 0, 4, 8, UUID), meta(0, 1, true))
        .await
        .unwrap();
    a.next().await;
    assert!(!op.send_error("a0").await);
    // ...any other refusal gives up.
    a.next().await;
    let t0 = Instant::now();
    while !op.send_error("a0").await {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.quiet(Duration::from_millis(1500)).await);
    p.stop().await;
}

/// The `archive-info get` answer's line.
fn info_line(r: Reply) -> String {
    match r {
        Reply::ArchiveInfo(d) => d.line(),
        other => panic!("archive-info get answered {other:?}"),
    }
}
