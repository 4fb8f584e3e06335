//! A storage killed at any instant restarts consistent from its base directory: a
//! transfer cut before the proxy's ack is sent again from the done record; leftovers of
//! interrupted init-vol, clear-vol and file writes are removed; an interrupted log reset
//! is finished.
//!
//! Each daemon runs in a runtime of its own; dropping that runtime mid-flight
//! (`shutdown_background`) kills the daemon at whatever await point it was.

mod storage_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use storage_support::*;
use walb_daemon::persist::voldir::MARKER;
use walb_daemon::storage::{vol, StorageConfig};
use walb_device::WalbDevice;
use walb_kernel::block::Pbs;
use walb_wire::msg::{Command, Query, Reply, StopMode};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a storage daemon in its own runtime; returns the runtime (the daemon's life).
fn boot(
    certs: &Arc<Certs>,
    base: &std::path::Path,
    cfg: StorageConfig,
    devs: &TestDevices,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = runtime();
    let (tx, rx) = std::sync::mpsc::channel();
    let (certs, base, devs) = (Arc::clone(certs), base.to_path_buf(), devs.clone());
    rt.spawn(async move {
        let d = start_storage(&certs, &base, cfg, &devs).await;
        tx.send(d.addr).unwrap();
        std::future::pending::<()>().await;
        drop(d);
    });
    let addr = rx.recv_timeout(LIMIT).unwrap();
    (rt, addr)
}

struct Setup {
    main: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
    certs: Arc<Certs>,
    proxy: FakeProxy,
    archive: FakeArchive,
    devs: TestDevices,
    files: DevFiles,
    emu: Arc<walb_device::emu::Emulator>,
    base: PathBuf,
}

fn setup(dev: &str) -> Setup {
    let main = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let certs = Arc::new(Certs::new(&tmp.path().join("certs")));
    let (proxy, archive) = main.block_on(async {
        (
            FakeProxy::start(&certs, "p0", ProxyMode::Ack),
            FakeArchive::start(&certs, "a0"),
        )
    });
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), dev, Pbs::B512, 8 << 20, 2 << 20);
    let emu = open_emu(&files, dev);
    devs.add(dev, emu.clone());
    let base = tmp.path().join("base");
    Setup {
        main,
        _tmp: tmp,
        certs,
        proxy,
        archive,
        devs,
        files,
        emu,
        base,
    }
}

#[test]
fn a_crash_mid_transfer_resends_from_the_done_record() {
    let s = setup("e0");
    let cfg = config(s.archive.addr, &[s.proxy.addr]);
    let (rt1, addr) = boot(&s.certs, &s.base, cfg.clone(), &s.devs);
    s.main.block_on(async {
        let op = Op::connect(&s.certs, addr).await;
        op.cmd(Command::InitVol {
            vol: "v0".into(),
            wdev_path: Some("/dev/walb/e0".into()),
        })
        .await
        .unwrap();
        full_backup(&op, &s.archive, "v0").await;
        wait_for("the first transfer", || s.proxy.acked().len() == 1).await;
        s.proxy.set_mode(ProxyMode::Hang);
        for i in 0..12u64 {
            s.emu.write(i * (16 << 10), &data(16 << 10, i)).unwrap();
        }
        s.emu.flush().unwrap();
        wait_for("a transfer waiting for its ack", || {
            s.proxy
                .got()
                .iter()
                .any(|g| g.mode == ProxyMode::Hang && g.diff.is_some())
        })
        .await;
    });
    let done_before = vol::load(&s.base.join("v0")).unwrap().snaps.done;
    let oldest_before = s.emu.lsids().unwrap().oldest;
    let end = s.emu.lsids().unwrap().permanent;
    assert!(done_before.lsid < end);

    // Kill the daemon while the transfer waits for the ack.
    rt1.shutdown_background();

    // Nothing moved: the done record and the log are as before the transfer.
    let dir = s.base.join("v0");
    assert_eq!(
        std::fs::read_to_string(dir.join("state")).unwrap(),
        "Target"
    );
    let m = vol::load(&dir).unwrap();
    assert_eq!(m.snaps.done, done_before);
    assert_eq!(s.emu.lsids().unwrap().oldest, oldest_before);
    let hung = s
        .proxy
        .got()
        .into_iter()
        .find(|g| g.mode == ProxyMode::Hang)
        .unwrap();
    assert_eq!(hung.diff.unwrap().range.snap_b.gid_b, done_before.gid);

    // What other interrupted operations leave behind: an init-vol cut short (marked, no
    // state), a clear-vol cut short (marked, the state already gone), and beside them a
    // directory that is not the daemon's.
    std::fs::write(dir.join("stale.tmp"), b"half a file").unwrap();
    std::fs::create_dir_all(s.base.join("v5")).unwrap();
    std::fs::write(s.base.join("v5").join(MARKER), b"").unwrap();
    std::fs::write(s.base.join("v5/path"), b"/dev/walb/x").unwrap();
    std::fs::create_dir_all(s.base.join("v6")).unwrap();
    std::fs::write(s.base.join("v6").join(MARKER), b"").unwrap();
    std::fs::write(s.base.join("v6/queue"), b"half").unwrap();
    std::fs::create_dir_all(s.base.join("v7")).unwrap();
    std::fs::write(s.base.join("v7/path"), b"not the daemon's").unwrap();

    s.proxy.set_mode(ProxyMode::Ack);
    let n_before = s.proxy.got().len();
    let (_rt2, addr) = boot(&s.certs, &s.base, cfg, &s.devs);
    s.main.block_on(async {
        let op = Op::connect(&s.certs, addr).await;
        assert_eq!(op.state("v0").await, "Target");
        assert_eq!(op.state("v5").await, "Clear");
        assert_eq!(
            op.query(Query::Vols).await,
            Ok(Reply::Names(vec!["v0".into()]))
        );
        assert!(!s.base.join("v5").exists(), "interrupted init-vol removed");
        assert!(!s.base.join("v6").exists(), "interrupted clear-vol removed");
        assert_eq!(
            std::fs::read(s.base.join("v7/path")).unwrap(),
            b"not the daemon's",
            "a directory without marker or state is left alone"
        );
        assert_eq!(op.state("v7").await, "Clear");
        assert!(!dir.join("stale.tmp").exists(), "temporary file removed");
        // Monitoring resumed: the logs go out again, from the done record.
        wait_for("the done record to reach the end", || {
            vol::load(&dir).unwrap().snaps.done.lsid == end
        })
        .await;
        wait_for("the log to be freed", || {
            s.emu.lsids().unwrap().oldest == end
        })
        .await;
    });
    let resent: Vec<Got> = s.proxy.got()[n_before..].to_vec();
    assert!(resent.iter().all(|g| g.acked));
    assert_eq!(
        resent[0].diff.unwrap().range.snap_b,
        hung.diff.unwrap().range.snap_b,
        "the resend starts where the cut transfer started"
    );
    let bytes: Vec<u8> = resent.iter().flat_map(|g| g.bytes.clone()).collect();
    let want = ldev_bytes(&s.files.ldev, done_before.lsid, end);
    assert!(bytes == want, "resent bytes differ from the log");
    assert!(want.starts_with(&hung.bytes));
}

#[test]
fn an_interrupted_log_reset_is_finished_at_boot() {
    let s = setup("e1");
    let cfg = config(s.archive.addr, &[s.proxy.addr]);
    let (rt1, addr) = boot(&s.certs, &s.base, cfg.clone(), &s.devs);
    s.main.block_on(async {
        let op = Op::connect(&s.certs, addr).await;
        op.cmd(Command::InitVol {
            vol: "v1".into(),
            wdev_path: Some("/dev/walb/e1".into()),
        })
        .await
        .unwrap();
        full_backup(&op, &s.archive, "v1").await;
        s.emu.write(0, &data(4 << 10, 1)).unwrap();
        s.emu.flush().unwrap();
        op.cmd(Command::Snapshot { vol: "v1".into() })
            .await
            .unwrap();
        assert_eq!(
            op.cmd(Command::Stop {
                vol: "v1".into(),
                mode: StopMode::Graceful,
            })
            .await,
            Ok(Reply::Accepted)
        );
        op.wait_state("v1", "Stopped").await;
    });
    rt1.shutdown_background();
    // reset-vol 7 was killed after resetting the device, before the records.
    let dir = s.base.join("v1");
    vol::write_reset_intent(&dir, 7).unwrap();
    s.emu.reset_wal().unwrap();
    let uuid = s.emu.superblock().uuid;

    let (_rt2, addr) = boot(&s.certs, &s.base, cfg, &s.devs);
    s.main.block_on(async {
        let op = Op::connect(&s.certs, addr).await;
        assert_eq!(op.state("v1").await, "SyncReady");
        assert_eq!(
            op.query(Query::Uuid { vol: "v1".into() }).await,
            Ok(Reply::Uuid(uuid))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    assert_eq!(
        std::fs::read_to_string(dir.join("state")).unwrap(),
        "SyncReady"
    );
    let m = vol::load(&dir).unwrap();
    assert_eq!((m.snaps.done.lsid, m.snaps.done.gid), (0, 7));
    assert!(m.snaps.queue.is_empty());
    assert_eq!(m.uuid, uuid);
    assert_eq!(vol::read_reset_intent(&dir).unwrap(), None);
}
