//! Local safety of the daemons: what they create is private to their user whatever the
//! umask they were started with, and they remove only what they created.
//!
//! - The three daemons, in-process over real QUIC, started with umask 000: a full backup
//!   (storage → archive), log transfers (storage → proxy → archive, a wdiff transfer) and
//!   a restore; then every entry under their base directories is 0700 / 0600 (0750 /
//!   0640 with group access).
//! - A real `walb-archive` process started with umask 000 and `--group-access` over a
//!   0777 base directory: the directory is tightened (and the log says so), and what a
//!   full backup, a wdiff transfer and a restore create is 0750 / 0640.
//! - A base directory holding a directory of files that are not a daemon's and a file at
//!   the top survives each daemon's start, init-vol of other volumes, a refused init-vol
//!   of its name and a clear-vol, byte for byte; an interrupted init-vol (marker, no
//!   state) is removed at start.

mod archive_support;
mod storage_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use storage_support::{Certs, Op, TestDevices};
use walb_daemon::archive;
use walb_daemon::opts::ProxyOpts;
use walb_daemon::persist::{self, voldir::MARKER, BaseDir};
use walb_daemon::proxy;
use walb_daemon::server::serve;
use walb_daemon::session::{Ctx, Handler};
use walb_kernel::block::Pbs;
use walb_kernel::wdiff::WdiffKind;
use walb_wire::msg::{
    ArchiveDest, ArchiveInfoCommand, BindCommand, BindHow, Codec, CompressOpt, PeerRole,
};
use walb_wire::{Command, ErrorCode, Reply, Role, WireError};

const VOL: &str = "vol0";

/// The tests of this file change process-wide things (the umask, group access): one at a
/// time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn set_umask(bits: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(bits));
}

/// Every entry under `dir` (itself included) whose mode is not `dirs` (directories) or
/// `files` (regular files), or that is neither.
fn wrong_modes(dir: &Path, dirs: u32, files: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        if m.is_dir() {
            if mode != dirs {
                bad.push(format!("{} directory {mode:04o}", p.display()));
            }
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if m.is_file() {
            if mode != files {
                bad.push(format!("{} file {mode:04o}", p.display()));
            }
        } else {
            bad.push(format!("{} is {:?}", p.display(), m.file_type()));
        }
    }
    bad
}

/// Entries by relative path: bytes (of files) and mode.
type Tree = BTreeMap<PathBuf, (Option<Vec<u8>>, u32)>;

/// Every entry under `dir` by relative path: its bytes (files) and mode.
fn snapshot(dir: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(dir).unwrap().to_path_buf();
        if m.is_dir() {
            out.insert(rel, (None, m.permissions().mode()));
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else {
            out.insert(
                rel,
                (Some(std::fs::read(&p).unwrap()), m.permissions().mode()),
            );
        }
    }
    out
}

fn proxy_opts(base: &Path) -> ProxyOpts {
    let base = base.to_string_lossy();
    ProxyOpts::parse_from(["walb-proxy", "-b", &base, "-p", "0", "--id", "p0"])
}

/// A daemon of this process: its context (the base directory's lock) and its server.
struct Running {
    ctx: Arc<Ctx>,
    addr: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The context of a daemon of `role` on `base` (locked, waiting for a stopped daemon of
    /// this process to let it go), and its address.
    async fn ctx(certs: &Certs, role: Role, id: &str, base: &Path) -> (Arc<Ctx>, SocketAddr) {
        let node = certs.node(role, id, true);
        let addr = node.local_addr().unwrap();
        let t0 = std::time::Instant::now();
        let lock = loop {
            match BaseDir::lock(base) {
                Ok(l) => break l,
                Err(e) => assert!(t0.elapsed() < archive_support::LIMIT, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        (Ctx::new(node, lock, role, id, 2, 1), addr)
    }

    /// Serves `handler` on `ctx`.
    fn serve<H: Handler>(ctx: Arc<Ctx>, addr: SocketAddr, handler: Arc<H>) -> Running {
        let c2 = Arc::clone(&ctx);
        let serving = tokio::spawn(async move {
            let _ = serve(c2, handler).await;
        });
        Running { ctx, addr, serving }
    }

    async fn stop(self) {
        self.ctx.begin_shutdown(false);
        let _ = tokio::time::timeout(Duration::from_secs(60), self.serving).await;
    }
}

async fn start_archive(certs: &Certs, base: &Path) -> Running {
    let (ctx, addr) = Running::ctx(certs, Role::Archive, "a0", base).await;
    let a = archive::start(Arc::clone(&ctx), archive_support::opts(base)).await;
    Running::serve(ctx, addr, a.unwrap())
}

async fn start_proxy(certs: &Certs, base: &Path) -> Running {
    let (ctx, addr) = Running::ctx(certs, Role::Proxy, "p0", base).await;
    let p = proxy::start(Arc::clone(&ctx), proxy_opts(base)).await;
    Running::serve(ctx, addr, p.unwrap())
}

fn archive_dest(addr: SocketAddr) -> ArchiveDest {
    ArchiveDest {
        addr: addr.to_string(),
        compress: CompressOpt {
            codec: Codec::Zstd,
            level: 1,
            ncpu: 1,
        },
        delay_s: 0,
    }
}

fn add_archive(vol: &str, addr: SocketAddr) -> Command {
    Command::ArchiveInfo(ArchiveInfoCommand::Set {
        vol: vol.into(),
        archive: "a0".into(),
        dest: archive_dest(addr),
        update: false,
    })
}

fn bind(vol: &str, role: PeerRole, id: &str) -> Command {
    Command::Bind(BindCommand {
        vol: vol.into(),
        role,
        ids: vec![id.into()],
        how: BindHow::Add,
    })
}

fn init_vol(vol: &str, wdev: Option<&str>) -> Command {
    Command::InitVol {
        vol: vol.into(),
        wdev_path: wdev.map(str::to_owned),
    }
}

/// A refusal of `code` whose message names `what`.
fn assert_refused(r: Result<Reply, WireError>, code: ErrorCode, what: &Path) {
    match r {
        Err(e) => {
            assert_eq!(e.code, code, "{e}");
            assert!(
                e.message.contains(&what.display().to_string()),
                "{what:?} not named in {:?}",
                e.message
            );
        }
        Ok(r) => panic!("expected a {code} refusal, got {r:?}"),
    }
}

/// Backup, log transfers through the proxy and a restore with the three daemons of this
/// process, everything created under umask 000; returns the three base directories.
async fn full_cycle(tmp: &Path) -> [PathBuf; 3] {
    let certs = Certs::new(&tmp.join("certs"));
    let (base_s, base_p, base_a) = (tmp.join("s0"), tmp.join("p0"), tmp.join("a0"));
    let a = start_archive(&certs, &base_a).await;
    let p = start_proxy(&certs, &base_p).await;
    let devs = TestDevices::default();
    let files = storage_support::format_device(tmp, "e0", Pbs::B4096, 16 << 20, 8 << 20);
    let emu = storage_support::open_emu(&files, "e0");
    devs.add("e0", emu.clone());
    emu.write(0, &storage_support::data(256 << 10, 1)).unwrap();
    emu.flush().unwrap();
    let s = storage_support::start_storage(
        &certs,
        &base_s,
        storage_support::config(a.addr, &[p.addr]),
        &devs,
    )
    .await;
    let (op_s, op_p, op_a) = (
        Op::connect(&certs, s.addr).await,
        Op::connect(&certs, p.addr).await,
        Op::connect(&certs, a.addr).await,
    );
    assert_eq!(op_a.cmd(init_vol(VOL, None)).await, Ok(Reply::Done));
    assert_eq!(op_p.cmd(add_archive(VOL, a.addr)).await, Ok(Reply::Done));
    // The backup group, bound as walb-console binds it.
    for (op, role, id) in [
        (&op_a, PeerRole::Storage, "s0"),
        (&op_a, PeerRole::Proxy, "p0"),
        (&op_p, PeerRole::Storage, "s0"),
    ] {
        assert!(op.cmd(bind(VOL, role, id)).await.is_ok());
    }
    assert_eq!(
        op_p.cmd(Command::Start {
            vol: VOL.into(),
            mode: None
        })
        .await,
        Ok(Reply::Done)
    );
    assert_eq!(
        op_s.cmd(init_vol(VOL, Some("/dev/walb/e0"))).await,
        Ok(Reply::Done)
    );
    assert_eq!(
        op_s.cmd(Command::FullBackup {
            vol: VOL.into(),
            bulk_lb: Some(64),
        })
        .await,
        Ok(Reply::Accepted)
    );
    op_s.wait_state(VOL, "Target").await;
    op_a.wait_state(VOL, "Archived").await;
    for i in 0..8u64 {
        emu.write(i * (320 << 10), &storage_support::data(64 << 10, 10 + i))
            .unwrap();
    }
    emu.flush().unwrap();
    let gid = match op_s.cmd(Command::Snapshot { vol: VOL.into() }).await {
        Ok(Reply::Gid(g)) => g,
        other => panic!("snapshot: {other:?}"),
    };
    let t0 = std::time::Instant::now();
    while !archive_support::restorable(&op_a.peer, VOL, false)
        .await
        .iter()
        .any(|s| s.gid == Some(gid))
    {
        assert!(
            t0.elapsed() < archive_support::LIMIT,
            "snapshot {gid} never became restorable at the archive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        std::fs::read_dir(base_a.join(VOL)).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".wdiff")),
        "a wdiff came through the proxy"
    );
    let img = archive_support::restore(&op_a.peer, VOL, gid).await;
    let mut dev = vec![0u8; 8 << 20];
    emu.read(0, &mut dev).unwrap();
    assert!(
        std::fs::read(&img).unwrap() == dev,
        "the restored image is the device"
    );
    s.ctx.begin_shutdown(false);
    p.stop().await;
    a.stop().await;
    [base_s, base_p, base_a]
}

async fn modes_after_a_full_cycle(group: bool) {
    let _g = SERIAL.lock().await;
    set_umask(0);
    persist::set_group_access(group);
    /// Group access off again, even when the cycle panics.
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            persist::set_group_access(false);
        }
    }
    let off = Off;
    let tmp = tempfile::tempdir().unwrap();
    let bases = full_cycle(tmp.path()).await;
    drop(off);
    let (dirs, files) = if group {
        (0o750, 0o640)
    } else {
        (0o700, 0o600)
    };
    for b in &bases {
        let bad = wrong_modes(b, dirs, files);
        assert!(bad.is_empty(), "under umask 000: {bad:#?}");
    }
    // The archive holds what the brief names: a base image, wdiffs, a restored image.
    let a = bases[2].join(VOL);
    assert!(a.join("base.img").is_file());
    assert_eq!(std::fs::read_dir(a.join("restored")).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_umask_000_everything_the_daemons_create_is_0700_or_0600() {
    modes_after_a_full_cycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_group_access_everything_the_daemons_create_is_0750_or_0640() {
    modes_after_a_full_cycle(true).await;
}

// ----------------------------------------------------------------------------------------
// A real process

/// A free UDP port on loopback (bound and released).
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_archive_sets_its_umask_and_tightens_its_base_directory() {
    use archive_support::{Cluster, LB};
    use std::os::unix::process::CommandExt;
    let _g = SERIAL.lock().await;
    let c = Cluster::new("process");
    let base = c.dir.path().join("a0");
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(base.join("notes")).unwrap();
    std::fs::write(base.join("notes/todo"), b"not the archive's").unwrap();
    let notes = snapshot(&base.join("notes"));
    let port = free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_walb-archive"));
    cmd.arg("-b")
        .arg(&base)
        .args(["-l", "archive.log", "-p", &format!("127.0.0.1:{port}")])
        .args(["--id", "a0", "--group-access", "--cert-dir"])
        .arg(c.cert_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: umask is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let node = c.client(Role::Operator, "op");
    let t0 = std::time::Instant::now();
    let op = loop {
        match node.connect(addr).await {
            Ok(p) => break p,
            Err(e) => {
                assert!(
                    t0.elapsed() < archive_support::LIMIT,
                    "the archive does not answer: {e}"
                );
                assert!(child.try_wait().unwrap().is_none(), "the archive exited");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let peers = archive_support::connect_all(&c, addr).await;
    archive_support::init_vol(&op, VOL).await;
    let (size_lb, uuid) = (4096u64, [7u8; 16]);
    let img = archive_support::make_image(size_lb, 64, 3, 5);
    archive_support::full_backup(&peers.st, VOL, &img, 64, uuid, 2, 1_700_000_000)
        .await
        .unwrap();
    let w = archive_support::make_wdiff(size_lb, 64 * LB as u64, 9, WdiffKind::Sorted);
    archive_support::send_wdiff(
        &peers.px,
        VOL,
        uuid,
        size_lb,
        archive_support::diff_dto(0, 5, false, 1_700_000_100),
        &w,
    )
    .await
    .unwrap();
    let restored = archive_support::restore(&op, VOL, 5).await;
    assert!(std::fs::read(&restored).unwrap() == archive_support::apply_all(&img, &[&w]));
    let _ = archive_support::cmd(&op, Command::Shutdown { force: false }).await;
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < archive_support::LIMIT,
            "the archive did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let log = std::fs::read_to_string(base.join("archive.log")).unwrap();
    assert!(
        log.contains("base directory was mode 0777") && log.contains("tightened to 0750"),
        "{log}"
    );
    assert!(log.contains("notes") && log.contains("left alone"), "{log}");
    assert_eq!(
        std::fs::metadata(&base).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    assert_eq!(snapshot(&base.join("notes")), notes, "not the archive's");
    std::fs::remove_dir_all(base.join("notes")).unwrap();
    let bad = wrong_modes(&base, 0o750, 0o640);
    assert!(bad.is_empty(), "{bad:#?}");
}

// ----------------------------------------------------------------------------------------
// What the daemons remove

/// A temporary directory, certificates in it, and the path of an empty base directory
/// `name` in it.
fn fixture(name: &str) -> (tempfile::TempDir, Certs, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let base = tmp.path().join(name);
    std::fs::create_dir(&base).unwrap();
    (tmp, certs, base)
}

/// A base directory with a directory of files that are not the daemon's (named `data`,
/// a valid volume name), a file at the top, and an interrupted init-vol `half`.
fn seeded_base(base: &Path) -> Tree {
    std::fs::create_dir_all(base.join("data/deeper")).unwrap();
    std::fs::write(base.join("data/state.txt"), b"precious").unwrap();
    std::fs::write(base.join("data/deeper/x.tmp"), b"also precious").unwrap();
    std::fs::write(base.join("data/y.tmp"), b"and this").unwrap();
    std::fs::write(base.join("top.tmp"), b"a file at the top").unwrap();
    std::fs::create_dir(base.join("half")).unwrap();
    std::fs::write(base.join("half").join(MARKER), b"").unwrap();
    std::fs::write(base.join("half/path"), b"/dev/walb/x").unwrap();
    foreign(base)
}

/// What is not the daemon's in a seeded base directory.
fn foreign(base: &Path) -> Tree {
    let mut m = snapshot(&base.join("data"));
    let top = std::fs::read(base.join("top.tmp")).unwrap();
    m.insert("../top.tmp".into(), (Some(top), 0));
    m
}

/// Through `op`: creates volume [`VOL`] (`create`), is refused `data` (a directory that
/// is not the daemon's, named in the refusal), removes [`VOL`] (`remove`); what is not the
/// daemon's stays as `before`.
async fn create_refused_remove(
    op: &Op,
    base: &Path,
    before: &Tree,
    create: impl Fn(&str) -> Command,
    remove: Command,
) {
    assert_eq!(op.cmd(create(VOL)).await, Ok(Reply::Done));
    assert!(base.join(VOL).is_dir());
    assert!(!base.join(VOL).join(MARKER).exists(), "unmarked once whole");
    assert_refused(
        op.cmd(create("data")).await,
        ErrorCode::WrongState,
        &base.join("data"),
    );
    assert_eq!(op.state("data").await, "Clear");
    assert_eq!(op.cmd(remove).await, Ok(Reply::Done));
    assert!(!base.join(VOL).exists());
    assert_eq!(&foreign(base), before);
}

/// Stops `r`, starts the daemon again (`start`), checks that what is not the daemon's is
/// still `before`, and stops it.
async fn restart_keeps(
    r: Running,
    start: impl std::future::Future<Output = Running>,
    base: &Path,
    before: &Tree,
) {
    r.stop().await;
    let r = start.await;
    assert_eq!(&foreign(base), before, "a second start");
    r.stop().await;
}

/// Starts a storage in a runtime of its own (dropped, it kills the daemon).
fn boot_storage(
    certs: &Arc<Certs>,
    base: &Path,
    devs: &TestDevices,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The peers are never reached: nothing here ships.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cfg = storage_support::config(nowhere, &[nowhere]);
    let (tx, rx) = std::sync::mpsc::channel();
    let (certs, base, devs) = (Arc::clone(certs), base.to_path_buf(), devs.clone());
    rt.spawn(async move {
        let d = storage_support::start_storage(&certs, &base, cfg, &devs).await;
        tx.send(d.addr).unwrap();
        std::future::pending::<()>().await;
        drop(d);
    });
    let addr = rx.recv_timeout(archive_support::LIMIT).unwrap();
    (rt, addr)
}

#[test]
fn a_storage_removes_only_what_it_created() {
    let _g = SERIAL.blocking_lock();
    let main = tokio::runtime::Runtime::new().unwrap();
    let (tmp, certs, base) = fixture("s0");
    let certs = Arc::new(certs);
    let before = seeded_base(&base);
    let devs = TestDevices::default();
    for d in ["e0", "e1"] {
        let f = storage_support::format_device(tmp.path(), d, Pbs::B512, 4 << 20, 1 << 20);
        devs.add(d, storage_support::open_emu(&f, d));
    }
    let (rt, addr) = boot_storage(&certs, &base, &devs);
    assert!(
        !base.join("half").exists(),
        "an interrupted init-vol is removed"
    );
    assert_eq!(foreign(&base), before);
    main.block_on(async {
        let op = Op::connect(&certs, addr).await;
        // Each volume its own device.
        let dev = |v: &str| {
            init_vol(
                v,
                Some(if v == VOL {
                    "/dev/walb/e0"
                } else {
                    "/dev/walb/e1"
                }),
            )
        };
        let clear = Command::ClearVol { vol: VOL.into() };
        create_refused_remove(&op, &base, &before, dev, clear).await;
    });
    rt.shutdown_background();
    let (rt, _) = boot_storage(&certs, &base, &devs);
    assert_eq!(foreign(&base), before, "a second start");
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["daemon.lock", "data", "top.tmp"]);
    rt.shutdown_background();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_removes_only_what_it_created() {
    let _g = SERIAL.lock().await;
    let (_tmp, certs, base) = fixture("a0");
    let before = seeded_base(&base);
    // An interrupted clear-vol: marked, its state gone, its image still there.
    std::fs::create_dir(base.join("gone")).unwrap();
    std::fs::write(base.join("gone").join(MARKER), b"").unwrap();
    std::fs::write(base.join("gone/base.img"), vec![1u8; 4096]).unwrap();
    let a = start_archive(&certs, &base).await;
    assert!(
        !base.join("half").exists(),
        "an interrupted init-vol is removed"
    );
    assert!(
        !base.join("gone").exists(),
        "an interrupted clear-vol is removed"
    );
    assert_eq!(foreign(&base), before);
    let op = Op::connect(&certs, a.addr).await;
    let clear = Command::ClearVol { vol: VOL.into() };
    create_refused_remove(&op, &base, &before, |v| init_vol(v, None), clear).await;
    drop(op);
    restart_keeps(a, start_archive(&certs, &base), &base, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_removes_only_what_it_created() {
    let _g = SERIAL.lock().await;
    let (_tmp, certs, base) = fixture("p0");
    // What the proxy's start used to take for a volume: received/ and sendto/ inside.
    std::fs::create_dir_all(base.join("data/sendto/old")).unwrap();
    std::fs::write(base.join("data/sendto/old/q"), b"queued by someone else").unwrap();
    let before = seeded_base(&base);
    let p = start_proxy(&certs, &base).await;
    assert!(
        !base.join("half").exists(),
        "an interrupted creation is removed"
    );
    assert_eq!(foreign(&base), before);
    let op = Op::connect(&certs, p.addr).await;
    let archive: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // Deleting the last destination removes the volume's directory, and only that.
    let delete = Command::ArchiveInfo(ArchiveInfoCommand::Delete {
        vol: VOL.into(),
        archive: "a0".into(),
    });
    create_refused_remove(&op, &base, &before, |v| add_archive(v, archive), delete).await;
    drop(op);
    restart_keeps(p, start_proxy(&certs, &base), &base, &before).await;
}
