//! Full backup (Protocol 3): logs written during the copy are kept and shipped, the scan
//! follows `set-full-scan-bps`, a forced stop aborts it back to SyncReady, and an archive's
//! refusal reaches the operator with its code.

mod storage_support;

use std::time::{Duration, Instant};

use storage_support::*;
use walb_daemon::storage::vol;
use walb_kernel::block::Pbs;
use walb_wire::msg::{Command, ErrorCode, Query, Reply, Status, StopMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_throttled_full_backup_are_shipped() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), "e0", Pbs::B4096, 8 << 20, 2 << 20);
    let emu = open_emu(&files, "e0");
    devs.add("e0", emu.clone());
    emu.write(0, &data(2 << 20, 9)).unwrap();
    emu.flush().unwrap();
    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    op.init("v0", "e0").await;
    // 2 MiB at 1 MiB/s: about two seconds.
    assert_eq!(
        op.cmd(Command::SetFullScanBps(1 << 20)).await,
        Ok(Reply::Done)
    );
    let t0 = Instant::now();
    assert_eq!(
        op.cmd(Command::FullBackup {
            vol: "v0".into(),
            bulk_lb: None,
        })
        .await,
        Ok(Reply::Accepted)
    );
    op.wait_state("v0", "FullSync").await;
    // Writes during the copy (the log was reset at its start).
    wait_for("the log reset", || {
        archive.last().is_some_and(|g| g.uuid.is_some())
    })
    .await;
    let mut n = 0u64;
    while op.state("v0").await == "FullSync" {
        emu.write((n % 64) * (16 << 10), &data(16 << 10, 100 + n))
            .unwrap();
        emu.flush().unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    op.wait_state("v0", "Target").await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "throttled scan took {took:?}"
    );
    assert!(n >= 5, "{n} writes during the copy");
    let g = archive.last().unwrap();
    assert_eq!(g.bulk_lb, 512, "default bulk of 256 KiB");
    let gid_e = g.snap.unwrap().gid_e;

    let end = emu_permanent(&emu);
    wait_for("every log to be shipped", || {
        vol::load(&base.join("v0")).unwrap().snaps.done.lsid == end
    })
    .await;
    let acked = proxy.acked();
    let all: Vec<u8> = acked.iter().flat_map(|g| g.bytes.clone()).collect();
    assert!(
        all == ldev_bytes(&files.ldev, 0, end),
        "logs of the copy differ"
    );
    let diffs: Vec<_> = acked.iter().map(|g| g.diff.unwrap()).collect();
    assert_eq!(diffs[0].range.snap_b.gid_b, 0);
    for w in diffs.windows(2) {
        assert_eq!(w[0].range.snap_e, w[1].range.snap_b);
    }
    // The full backup's snapshot is a boundary: the base <|0,gidE|> becomes clean there.
    assert!(
        diffs.iter().any(|d| d.range.snap_e.gid_b == gid_e),
        "{diffs:?}"
    );
}

fn emu_permanent(e: &walb_device::emu::Emulator) -> u64 {
    lsids(e).permanent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_stop_aborts_a_full_backup_and_refusals_pass_through() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), "e1", Pbs::B512, 4 << 20, 4 << 20);
    let emu = open_emu(&files, "e1");
    devs.add("e1", emu.clone());
    emu.write(0, &data(4 << 20, 1)).unwrap();
    emu.flush().unwrap();
    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    op.init("v1", "e1").await;

    // The archive refuses: its code reaches the operator, the volume stays SyncReady.
    *archive.refuse.lock().unwrap() = Some(ErrorCode::WrongState);
    assert_refused(
        op.cmd(Command::FullBackup {
            vol: "v1".into(),
            bulk_lb: None,
        })
        .await,
        ErrorCode::WrongState,
        &["v1", "archive", "refused", "not SyncReady"],
    );
    assert_eq!(op.state("v1").await, "SyncReady");
    *archive.refuse.lock().unwrap() = None;
    assert_refused(
        op.cmd(Command::FullBackup {
            vol: "v1".into(),
            bulk_lb: Some(0),
        })
        .await,
        ErrorCode::BadRequest,
        &["bulk"],
    );

    // A slow copy, stopped by force.
    op.cmd(Command::SetFullScanBps(512 << 10)).await.unwrap();
    assert_eq!(
        op.cmd(Command::FullBackup {
            vol: "v1".into(),
            bulk_lb: Some(128),
        })
        .await,
        Ok(Reply::Accepted)
    );
    op.wait_state("v1", "FullSync").await;
    assert_refused(
        op.cmd(Command::FullBackup {
            vol: "v1".into(),
            bulk_lb: None,
        })
        .await,
        ErrorCode::Busy,
        &["v1", "busy", "FullSync"],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        op.cmd(Command::Stop {
            vol: "v1".into(),
            mode: StopMode::Force,
        })
        .await,
        Ok(Reply::Accepted)
    );
    op.wait_state("v1", "SyncReady").await;
    let g = archive.last().unwrap();
    assert!(!g.done, "the archive never saw the end");
    match op
        .query(Query::Status {
            vol: Some("v1".into()),
        })
        .await
    {
        Ok(Reply::Status(s)) => match *s {
            Status::StorageVol(s) => assert!(!s.monitored, "{s:?}"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // It can run again, to the end.
    op.cmd(Command::SetFullScanBps(0)).await.unwrap();
    full_backup(&op, &archive, "v1").await;
    let mut img = vec![0u8; 4 << 20];
    emu.read(0, &mut img).unwrap();
    assert!(archive.last().unwrap().image == img);
}
