//! Shared harness of the storage tests: emulated WalB devices on temporary files, a fake
//! proxy and a fake archive (walb_wire nodes whose calls the test answers), and a storage
//! daemon built in-process around them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use walb_daemon::peers::PeerAddr;
use walb_daemon::persist::BaseDir;
use walb_daemon::server::serve;
use walb_daemon::session::Ctx;
use walb_daemon::storage::{self, DataRead, Device, DeviceAccess, Storage, StorageConfig};
use walb_device::emu::{EmuConfig, Emulator};
use walb_device::WalbDevice;
use walb_kernel::block::Pbs;
use walb_kernel::ldev::{SuperBlock, SUPER_OFFSET};
use walb_wire::msg::{BackupSync, MetaDiffDto, SnapDto, SnapshotInfo, Uuid, WlogTransfer};
use walb_wire::{
    ClusterCa, Command, ErrorCode, IssueOptions, Message, Node, NodeConfig, Peer, PeerId, Query,
    Received, Reply, Request, Role, Step, TlsFiles, WireError,
};

/// Test time limit for waits.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A cluster CA with certificates issued into a temporary directory.
pub struct Certs {
    pub ca: ClusterCa,
    pub dir: PathBuf,
}

impl Certs {
    pub fn new(dir: &Path) -> Certs {
        Certs {
            ca: ClusterCa::generate("storage-test", 1).unwrap(),
            dir: dir.to_path_buf(),
        }
    }

    pub fn files(&self, role: Role, id: &str) -> TlsFiles {
        let d = self.dir.join(format!("{role}-{id}"));
        std::fs::create_dir_all(&d).unwrap();
        let peer = PeerId::new(role, id).unwrap();
        let files = self
            .ca
            .issue(&peer, &IssueOptions::default())
            .unwrap()
            .save(&d, true)
            .unwrap();
        std::fs::write(&files.ca_cert, self.ca.cert_pem()).unwrap();
        files
    }

    pub fn node(&self, role: Role, id: &str, listen: bool) -> Node {
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Node::bind(NodeConfig::new(bind, listen), self.files(role, id)).unwrap()
    }
}

/// Emulated devices by name.
#[derive(Default, Clone)]
pub struct TestDevices {
    pub map: Arc<Mutex<HashMap<String, Arc<Emulator>>>>,
}

struct EmuData(Arc<Emulator>);

impl DataRead for EmuData {
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> walb_kernel::Result<()> {
        self.0.read(off, buf)
    }
}

impl TestDevices {
    fn get(&self, wdev: &str) -> walb_kernel::Result<Arc<Emulator>> {
        let name = walb_device::name_of(wdev)?;
        self.map.lock().unwrap().get(&name).cloned().ok_or_else(|| {
            walb_kernel::Error::io(
                format!("opening {wdev}"),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such device"),
            )
        })
    }

    pub fn add(&self, name: &str, emu: Arc<Emulator>) {
        self.map.lock().unwrap().insert(name.to_owned(), emu);
    }
}

impl DeviceAccess for TestDevices {
    fn open(&self, wdev: &str) -> walb_kernel::Result<Device> {
        let e: Device = self.get(wdev)?;
        Ok(e)
    }
    fn open_data(&self, wdev: &str) -> walb_kernel::Result<Box<dyn DataRead>> {
        Ok(Box::new(EmuData(self.get(wdev)?)))
    }
}

/// Files of an emulated device.
pub struct DevFiles {
    pub ldev: PathBuf,
    pub ddev: PathBuf,
}

/// Formats a log device file (as `wdevc format-ldev`) and creates a data device file.
pub fn format_device(
    dir: &Path,
    name: &str,
    pbs: Pbs,
    ldev_bytes: u64,
    ddev_bytes: u64,
) -> DevFiles {
    let ldev = dir.join(format!("{name}.ldev"));
    let ddev = dir.join(format!("{name}.ddev"));
    let l = std::fs::File::create(&ldev).unwrap();
    l.set_len(ldev_bytes).unwrap();
    std::fs::File::create(&ddev)
        .unwrap()
        .set_len(ddev_bytes)
        .unwrap();
    let mut sb = SuperBlock::format(pbs, ldev_bytes, ddev_bytes / 512, name).unwrap();
    l.write_all_at(&sb.to_block(), SUPER_OFFSET).unwrap();
    l.write_all_at(&vec![0u8; pbs.bytes()], sb.offset_of_lsid(0))
        .unwrap();
    l.sync_all().unwrap();
    DevFiles { ldev, ddev }
}

/// Opens an emulated device without background timers (tests flush by hand).
pub fn open_emu(f: &DevFiles, name: &str) -> Arc<Emulator> {
    let cfg = EmuConfig {
        background: false,
        checkpoint_interval_ms: 0,
        log_flush_interval_ms: 0,
        name: Some(name.to_owned()),
        ..EmuConfig::default()
    };
    Arc::new(Emulator::open(&f.ldev, &f.ddev, cfg).unwrap())
}

/// The raw bytes of the log ring for `[from, to)`.
pub fn ldev_bytes(ldev: &Path, from: u64, to: u64) -> Vec<u8> {
    let f = std::fs::File::open(ldev).unwrap();
    let sb = SuperBlock::read(&f).unwrap();
    let pbs = sb.pbs.bytes();
    let mut out = vec![0u8; ((to - from) as usize) * pbs];
    for (i, l) in (from..to).enumerate() {
        f.read_exact_at(&mut out[i * pbs..(i + 1) * pbs], sb.offset_of_lsid(l))
            .unwrap();
    }
    out
}

/// Deterministic test data.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

// ---------------------------------------------------------------------------------------
// Fake proxy

/// How the fake proxy treats wlog transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Accept, receive, ack.
    Ack,
    /// Refuse at once with this code.
    Refuse(ErrorCode),
    /// Accept, then reset the stream after the first chunk (or the end of the bulk).
    Drop,
    /// Accept, receive everything, answer an error instead of the ack.
    Fail,
    /// Accept, receive everything, never answer.
    Hang,
}

/// One transfer the fake proxy saw.
#[derive(Debug, Clone)]
pub struct Got {
    pub req: WlogTransfer,
    pub bytes: Vec<u8>,
    pub diff: Option<MetaDiffDto>,
    pub acked: bool,
    pub mode: ProxyMode,
}

/// A proxy node answering host type and wlog transfers.
#[derive(Clone)]
pub struct FakeProxy {
    pub addr: SocketAddr,
    pub mode: Arc<Mutex<ProxyMode>>,
    pub got: Arc<Mutex<Vec<Got>>>,
}

impl FakeProxy {
    pub fn start(certs: &Certs, id: &str, mode: ProxyMode) -> FakeProxy {
        let node = certs.node(Role::Proxy, id, true);
        let fp = FakeProxy {
            addr: node.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            got: Arc::new(Mutex::new(Vec::new())),
        };
        let me = fp.clone();
        tokio::spawn(async move {
            while let Some(inc) = node.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.serve(inc).await });
            }
        });
        fp
    }

    pub fn set_mode(&self, m: ProxyMode) {
        *self.mode.lock().unwrap() = m;
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Transfers that were acknowledged.
    pub fn acked(&self) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.acked).collect()
    }

    pub fn attempts(&self, mode: ProxyMode) -> usize {
        self.got().iter().filter(|g| g.mode == mode).count()
    }

    async fn serve(&self, inc: walb_wire::IncomingCall) {
        let mut call = inc.call;
        let req = match inc.request {
            Request::Query(Query::HostType) => {
                let _ = call.reply(Reply::HostType(walb_wire::Role::Proxy)).await;
                let _ = call.sender.finish();
                return;
            }
            Request::WlogTransfer(w) => w,
            _ => {
                call.refuse(WireError::new(ErrorCode::Unsupported, "fake proxy"))
                    .await;
                return;
            }
        };
        let mode = *self.mode.lock().unwrap();
        let idx = {
            let mut g = self.got.lock().unwrap();
            g.push(Got {
                req,
                bytes: Vec::new(),
                diff: None,
                acked: false,
                mode,
            });
            g.len() - 1
        };
        if let ProxyMode::Refuse(code) = mode {
            call.refuse(WireError::new(code, "fake proxy refuses"))
                .await;
            return;
        }
        if call.reply(Reply::Accepted).await.is_err() {
            return;
        }
        loop {
            match call.receiver.chunk().await {
                Ok(Some(b)) => {
                    self.got.lock().unwrap()[idx].bytes.extend_from_slice(&b);
                    if mode == ProxyMode::Drop {
                        call.sender.reset();
                        call.receiver.stop();
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if mode == ProxyMode::Drop {
            call.sender.reset();
            call.receiver.stop();
            return;
        }
        let diff = match call.receiver.step().await {
            Ok(Step::MetaDiff(d)) => d,
            _ => return,
        };
        self.got.lock().unwrap()[idx].diff = Some(diff);
        match mode {
            ProxyMode::Ack => {
                if call.sender.step(Step::Ack).await.is_ok() {
                    self.got.lock().unwrap()[idx].acked = true;
                }
                let _ = call.sender.finish();
            }
            ProxyMode::Fail => {
                call.sender
                    .refuse(WireError::new(ErrorCode::Corrupt, "fake proxy: bad pack"))
                    .await;
            }
            ProxyMode::Hang => {
                // Keep the call open until the peer goes away.
                let _ = call.receiver.next().await;
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fake archive

/// What the fake archive received in a full backup.
#[derive(Debug, Clone, Default)]
pub struct FullGot {
    pub vol: String,
    pub size_lb: u64,
    pub bulk_lb: u64,
    pub uuid: Option<Uuid>,
    pub image: Vec<u8>,
    pub chunks: usize,
    pub zeros: usize,
    pub snap: Option<SnapDto>,
    pub done: bool,
}

/// An archive node answering full backups.
#[derive(Clone)]
pub struct FakeArchive {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<FullGot>>>,
    pub refuse: Arc<Mutex<Option<ErrorCode>>>,
    /// What it answers to `gather-latest-snap` per volume (gid, timestamp); unknown
    /// volumes get `gid: None`.
    pub latest: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    /// The volume lists of the gathers asked, in order.
    pub gathers: Arc<Mutex<Vec<Vec<String>>>>,
    /// Gathers are answered only after this long (a hung archive).
    pub gather_delay: Arc<Mutex<Duration>>,
}

impl FakeArchive {
    pub fn start(certs: &Certs, id: &str) -> FakeArchive {
        let node = certs.node(Role::Archive, id, true);
        let fa = FakeArchive {
            addr: node.local_addr().unwrap(),
            got: Arc::new(Mutex::new(Vec::new())),
            refuse: Arc::new(Mutex::new(None)),
            latest: Arc::new(Mutex::new(HashMap::new())),
            gathers: Arc::new(Mutex::new(Vec::new())),
            gather_delay: Arc::new(Mutex::new(Duration::ZERO)),
        };
        let me = fa.clone();
        tokio::spawn(async move {
            while let Some(inc) = node.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.serve(inc).await });
            }
        });
        fa
    }

    pub fn last(&self) -> Option<FullGot> {
        self.got.lock().unwrap().last().cloned()
    }

    async fn serve(&self, inc: walb_wire::IncomingCall) {
        let mut call = inc.call;
        let s = match inc.request {
            Request::BackupSync(BackupSync::Full(s)) => s,
            Request::BackupSync(BackupSync::GatherLatestSnap { vols }) => {
                self.gathers.lock().unwrap().push(vols.clone());
                let delay = *self.gather_delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                let latest = self.latest.lock().unwrap().clone();
                let snaps = vols
                    .into_iter()
                    .map(|vol| {
                        let l = latest.get(&vol).copied();
                        SnapshotInfo {
                            gid: l.map(|l| l.0),
                            timestamp_s: l.map_or(0, |l| l.1),
                            lsid: None,
                            explicit: true,
                            vol,
                        }
                    })
                    .collect();
                let _ = call.reply(Reply::Snapshots(snaps)).await;
                let _ = call.sender.finish();
                return;
            }
            _ => {
                call.refuse(WireError::new(ErrorCode::Unsupported, "fake archive"))
                    .await;
                return;
            }
        };
        let refuse = *self.refuse.lock().unwrap();
        if let Some(code) = refuse {
            call.refuse(WireError::new(code, "fake archive: not SyncReady"))
                .await;
            return;
        }
        let idx = {
            let mut g = self.got.lock().unwrap();
            g.push(FullGot {
                vol: s.vol.clone(),
                size_lb: s.size_lb,
                bulk_lb: s.bulk_lb,
                image: vec![0u8; (s.size_lb * 512) as usize],
                ..FullGot::default()
            });
            g.len() - 1
        };
        let set = |f: &dyn Fn(&mut FullGot)| f(&mut self.got.lock().unwrap()[idx]);
        if call.reply(Reply::Accepted).await.is_err() {
            return;
        }
        match call.receiver.step().await {
            Ok(Step::Uuid(u)) => set(&|g| g.uuid = Some(u)),
            _ => return,
        }
        if call.sender.step(Step::Ack).await.is_err() {
            return;
        }
        let mut off = 0usize;
        loop {
            match call.receiver.next().await {
                Ok(Some(Received::Chunk(b))) => {
                    set(&|g| {
                        g.image[off..off + b.len()].copy_from_slice(&b);
                        g.chunks += 1;
                    });
                    off += b.len();
                }
                Ok(Some(Received::Msg(Message::Step(Step::Zero { len_lb })))) => {
                    set(&|g| g.zeros += 1);
                    off += (len_lb * 512) as usize;
                }
                Ok(Some(Received::End { .. })) => break,
                _ => return,
            }
        }
        if call.sender.step(Step::Ack).await.is_err() {
            return;
        }
        match call.receiver.step().await {
            Ok(Step::MetaSnap(sn)) => set(&|g| g.snap = Some(sn)),
            _ => return,
        }
        set(&|g| g.done = true);
        let _ = call.sender.step(Step::Ack).await;
        let _ = call.sender.finish();
    }
}

// ---------------------------------------------------------------------------------------
// The storage and an operator

/// A test configuration talking to `proxies` (ids `p0`, `p1`, ... in order) and the
/// archive `a0` at `archive`.
pub fn config(archive: SocketAddr, proxies: &[SocketAddr]) -> StorageConfig {
    let to = |role, id: String, addr: &SocketAddr| PeerAddr {
        id: PeerId::new(role, &id).unwrap(),
        addr: addr.to_string(),
    };
    StorageConfig {
        archive: to(Role::Archive, "a0".into(), &archive),
        proxies: proxies
            .iter()
            .enumerate()
            .map(|(i, a)| to(Role::Proxy, format!("p{i}"), a))
            .collect(),
        max_wlog_send_mb: 1,
        snapshot_interval_s: 10,
        delay: Duration::from_millis(200),
        max_delay: Duration::from_millis(400),
        full_scan_bps: 0,
        proxy_check_interval: Duration::from_secs(1),
        stop_timeout: Duration::from_secs(10),
        sync_level: Some(1),
        ts_delta_interval: Duration::from_millis(300),
    }
}

/// A running in-process storage daemon.
pub struct Daemon {
    pub addr: SocketAddr,
    pub ctx: Arc<Ctx>,
    pub storage: Arc<Storage>,
}

/// Starts a storage daemon on `base` with test devices (call inside a tokio runtime).
pub async fn start_storage(
    certs: &Certs,
    base: &Path,
    cfg: StorageConfig,
    devs: &TestDevices,
) -> Daemon {
    start_storage_with(certs, base, cfg, Arc::new(devs.clone())).await
}

/// Starts a storage daemon on `base` with any device access.
pub async fn start_storage_with(
    certs: &Certs,
    base: &Path,
    cfg: StorageConfig,
    devs: Arc<dyn DeviceAccess>,
) -> Daemon {
    let node = certs.node(Role::Storage, "s0", true);
    let addr = node.local_addr().unwrap();
    let mut lock = BaseDir::lock(base);
    for _ in 0..100 {
        if lock.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        lock = BaseDir::lock(base);
    }
    let ctx = Ctx::new(node, lock.unwrap(), Role::Storage, "s0", 2, 1);
    let st = storage::start_with(Arc::clone(&ctx), cfg, devs)
        .await
        .unwrap();
    tokio::spawn(serve(Arc::clone(&ctx), Arc::clone(&st)));
    Daemon {
        addr,
        ctx,
        storage: st,
    }
}

/// An operator connected to a daemon.
pub struct Op {
    pub node: Node,
    pub peer: Peer,
}

impl Op {
    pub async fn connect(certs: &Certs, addr: SocketAddr) -> Op {
        let node = certs.node(Role::Operator, "op", false);
        let peer = node.connect(addr).await.unwrap();
        Op { node, peer }
    }

    pub async fn cmd(&self, c: Command) -> Result<Reply, WireError> {
        self.peer
            .request(Request::Command(c))
            .await
            .map_err(|e| e.to_wire())
    }

    pub async fn query(&self, q: Query) -> Result<Reply, WireError> {
        self.peer
            .request(Request::Query(q))
            .await
            .map_err(|e| e.to_wire())
    }

    /// `init-vol` of `vol` on the test device `dev`, which must succeed.
    pub async fn init(&self, vol: &str, dev: &str) {
        assert_eq!(
            self.cmd(Command::InitVol {
                vol: vol.into(),
                wdev_path: Some(format!("/dev/walb/{dev}")),
            })
            .await,
            Ok(Reply::Done)
        );
    }

    pub async fn state(&self, vol: &str) -> String {
        match self.query(Query::State { vol: vol.into() }).await.unwrap() {
            Reply::State(s) => s.name().to_owned(),
            other => panic!("state answered {other:?}"),
        }
    }

    /// Waits until `vol` is in `state`.
    pub async fn wait_state(&self, vol: &str, state: &str) {
        let t0 = std::time::Instant::now();
        loop {
            let s = self.state(vol).await;
            if s == state {
                return;
            }
            assert!(
                t0.elapsed() < LIMIT,
                "volume {vol} stayed {s}, expected {state}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `cond` until it holds (panics with `what` after [`LIMIT`]).
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts a refusal's code and that its message contains every `words`.
pub fn assert_refused(r: Result<Reply, WireError>, code: ErrorCode, words: &[&str]) {
    match r {
        Err(e) => {
            assert_eq!(e.code, code, "{e}");
            for w in words {
                assert!(e.message.contains(w), "{w:?} not in {:?}", e.message);
            }
        }
        Ok(r) => panic!("expected a {code} refusal, got {r:?}"),
    }
}

/// The device's lsids.
pub fn lsids(e: &Emulator) -> walb_device::LsidSet {
    e.lsids().unwrap()
}

/// Runs the full backup of `vol` against the fake archive and waits for Target.
pub async fn full_backup(op: &Op, archive: &FakeArchive, vol: &str) -> FullGot {
    let n0 = archive.got.lock().unwrap().len();
    let r = op
        .cmd(Command::FullBackup {
            vol: vol.into(),
            bulk_lb: Some(64),
        })
        .await;
    assert_eq!(r, Ok(Reply::Accepted));
    op.wait_state(vol, "Target").await;
    let g = archive.got.lock().unwrap()[n0].clone();
    assert!(g.done, "{g:?}");
    g
}
