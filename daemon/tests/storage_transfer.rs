//! The storage's data paths against an emulated device, a fake archive and a fake proxy:
//! the full backup copies the device and resets the log; the wlog transfers carry exactly
//! the log device's bytes with a contiguous chain of diffs; the log is freed only after
//! the proxy's ack, never when the proxy refuses, drops the stream or fails.

mod storage_support;

use std::time::Duration;

use storage_support::*;
use walb_daemon::storage::vol;
use walb_kernel::block::Pbs;
use walb_wire::msg::{Command, ErrorCode, LogUsageRow, Query, Reply, SnapDto};

fn done_of(base: &std::path::Path, vol: &str) -> walb_kernel::meta::MetaLsidGid {
    vol::load(&base.join(vol)).unwrap().snaps.done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backup_then_transfers_carry_the_ldev_bytes_and_free_after_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), "e0", Pbs::B4096, 16 << 20, 8 << 20);
    let emu = open_emu(&files, "e0");
    devs.add("e0", emu.clone());
    // Data before the backup: some blocks written, the rest zero.
    emu.write(0, &data(64 << 10, 1)).unwrap();
    emu.write(4 << 20, &data(128 << 10, 2)).unwrap();
    emu.flush().unwrap();
    let uuid_before = emu.superblock().uuid;

    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    assert_eq!(
        op.cmd(Command::InitVol {
            vol: "v0".into(),
            wdev_path: Some("/dev/walb/e0".into()),
        })
        .await,
        Ok(Reply::Done)
    );
    let g = full_backup(&op, &archive, "v0").await;

    // The archive got the device's image, zero bulks as steps.
    let mut img = vec![0u8; 8 << 20];
    emu.read(0, &mut img).unwrap();
    assert_eq!((g.size_lb, g.bulk_lb), (16384, 64));
    assert!(g.image == img, "the image differs from the device");
    assert!(
        g.zeros > 100 && g.chunks >= 3,
        "{} zero, {} data",
        g.zeros,
        g.chunks
    );
    // The log was reset: new uuid, the archive and the volume have it.
    let sb = emu.superblock();
    assert_ne!(sb.uuid, uuid_before);
    assert_eq!(g.uuid, Some(sb.uuid));
    assert_eq!(
        op.query(Query::Uuid { vol: "v0".into() }).await,
        Ok(Reply::Uuid(sb.uuid))
    );
    let snap = g.snap.unwrap();
    assert_eq!(snap.gid_b, 0);
    let gid_e = snap.gid_e;
    match op
        .query(Query::MetaState {
            vol: "v0".into(),
            applying: false,
            gid: None,
        })
        .await
        .unwrap()
    {
        Reply::MetaState(m) => {
            assert_eq!(m.snap_b, SnapDto { gid_b: 0, gid_e });
            assert_eq!(m.snap_e, None);
        }
        other => panic!("{other:?}"),
    }
    // The end snapshot is shipped (no logs yet): |0|-->|gidE|.
    wait_for("the first transfer", || !proxy.acked().is_empty()).await;

    // Writes, an explicit snapshot, more writes.
    for i in 0..20u64 {
        emu.write(i * (96 << 10), &data(96 << 10, 10 + i)).unwrap();
    }
    emu.flush().unwrap();
    let snap_gid = match op.cmd(Command::Snapshot { vol: "v0".into() }).await {
        Ok(Reply::Gid(g)) => g,
        other => panic!("{other:?}"),
    };
    for i in 0..20u64 {
        emu.write((i + 30) * (96 << 10), &data(96 << 10, 40 + i))
            .unwrap();
    }
    emu.flush().unwrap();
    let end = lsids(&emu).permanent;
    assert!(end > 2 * 256, "a few transfers' worth: {end}");
    wait_for("the done record to reach the end", || {
        done_of(&base, "v0").lsid == end
    })
    .await;
    wait_for("the log to be freed", || lsids(&emu).oldest == end).await;

    let acked = proxy.acked();
    assert_eq!(proxy.got().len(), acked.len(), "no failed attempt");
    // Exactly the log device's bytes, in order, across transfers.
    let all: Vec<u8> = acked.iter().flat_map(|g| g.bytes.clone()).collect();
    assert!(
        all == ldev_bytes(&files.ldev, 0, end),
        "streamed bytes differ from the ldev"
    );
    assert!(acked.len() >= 4, "1 MiB transfers: {}", acked.len());
    for g in &acked {
        assert_eq!(g.req.vol, "v0");
        assert_eq!(g.req.uuid, sb.uuid);
        assert_eq!((g.req.pbs, g.req.salt), (4096, sb.salt));
        assert_eq!(g.req.size_lb, 16384);
        assert!(g.req.log_size_pb * 4096 >= g.bytes.len() as u64);
        assert!(g.req.log_size_pb <= 256 + 25, "{}", g.req.log_size_pb);
        assert!(g.bytes.len() <= 256 * 4096 || g.req.log_size_pb > 256);
    }
    // The diffs chain from |0|, the first one to the full backup's snapshot.
    let diffs: Vec<_> = acked.iter().map(|g| g.diff.unwrap()).collect();
    assert_eq!(diffs[0].range.snap_b, SnapDto { gid_b: 0, gid_e: 0 });
    assert_eq!(diffs[0].range.snap_e.gid_b, gid_e);
    assert!(!diffs[0].mergeable);
    for w in diffs.windows(2) {
        assert_eq!(w[0].range.snap_e, w[1].range.snap_b, "{diffs:?}");
    }
    for d in &diffs {
        assert_eq!(d.range.snap_b.gid_b, d.range.snap_b.gid_e, "clean");
        assert!(d.range.snap_b.gid_b < d.range.snap_e.gid_b);
    }
    // The explicit snapshot is a diff boundary, and the diff after it is not mergeable.
    assert!(diffs.iter().any(|d| d.range.snap_e.gid_b == snap_gid));
    let after = diffs
        .iter()
        .find(|d| d.range.snap_b.gid_b == snap_gid)
        .expect("a diff starts at the explicit snapshot");
    assert!(!after.mergeable);
    assert_eq!(
        done_of(&base, "v0").gid,
        diffs.last().unwrap().range.snap_e.gid_b
    );

    match op
        .query(Query::LogUsage {
            vol: Some("v0".into()),
        })
        .await
    {
        Ok(Reply::LogUsage(l)) => assert_eq!(
            l.iter().map(LogUsageRow::line).collect::<Vec<_>>(),
            [format!(
                "name:v0\tusage_pb:0\tcapacity_pb:{}\tpbs:4096",
                sb.ring_buffer_size
            )]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        op.query(Query::IsOverflow { vol: "v0".into() }).await,
        Ok(Reply::Bool(false))
    );
    match op
        .query(Query::LatestSnap {
            vol: Some("v0".into()),
        })
        .await
    {
        Ok(Reply::Snapshots(s)) => {
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].gid, Some(done_of(&base, "v0").gid));
            assert_eq!(s[0].lsid, Some(end));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_kept_when_the_proxy_refuses_drops_or_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), "e1", Pbs::B512, 8 << 20, 4 << 20);
    let emu = open_emu(&files, "e1");
    devs.add("e1", emu.clone());
    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    op.cmd(Command::InitVol {
        vol: "v1".into(),
        wdev_path: Some("/dev/walb/e1".into()),
    })
    .await
    .unwrap();
    full_backup(&op, &archive, "v1").await;
    wait_for("the first transfer", || proxy.acked().len() == 1).await;
    // The storage persists its done record just after the ack arrives.
    wait_for("the done record of the first transfer", || {
        done_of(&base, "v1").gid > 0
    })
    .await;
    let done0 = done_of(&base, "v1");

    proxy.set_mode(ProxyMode::Refuse(ErrorCode::Stopped));
    for i in 0..8u64 {
        emu.write(i * (32 << 10), &data(32 << 10, i)).unwrap();
    }
    emu.flush().unwrap();
    let end = lsids(&emu).permanent;
    for mode in [
        ProxyMode::Refuse(ErrorCode::Stopped),
        ProxyMode::Drop,
        ProxyMode::Fail,
    ] {
        proxy.set_mode(mode);
        op.cmd(Command::Kick {
            vol: None,
            archive: None,
        })
        .await
        .unwrap();
        wait_for(&format!("two {mode:?} attempts"), || {
            proxy.attempts(mode) >= 2
        })
        .await;
        assert_eq!(done_of(&base, "v1"), done0, "{mode:?}");
        assert_eq!(lsids(&emu).oldest, done0.lsid, "{mode:?}");
        assert_eq!(op.state("v1").await, "Target");
    }
    // The failed attempts carried the right range (the proxy just did not ack it).
    let failed: Vec<_> = proxy
        .got()
        .into_iter()
        .filter(|g| g.mode == ProxyMode::Fail && g.diff.is_some())
        .collect();
    // (The latest attempt may still be under way.)
    assert!(!failed.is_empty());
    for g in &failed {
        let n = g.bytes.len() as u64 / 512;
        assert_eq!(g.bytes, ldev_bytes(&files.ldev, done0.lsid, done0.lsid + n));
    }

    proxy.set_mode(ProxyMode::Ack);
    op.cmd(Command::Kick {
        vol: None,
        archive: None,
    })
    .await
    .unwrap();
    wait_for("the done record to reach the end", || {
        done_of(&base, "v1").lsid == end
    })
    .await;
    wait_for("the log to be freed", || lsids(&emu).oldest == end).await;
    let acked = proxy.acked();
    let after: Vec<u8> = acked[1..].iter().flat_map(|g| g.bytes.clone()).collect();
    assert!(after == ldev_bytes(&files.ldev, done0.lsid, end));
    let first = acked[1].diff.unwrap();
    assert_eq!(first.range.snap_b.gid_b, done0.gid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.acked().len(), acked.len(), "nothing more to send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_go_to_the_first_proxy_that_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let p0 = FakeProxy::start(&certs, "p0", ProxyMode::Refuse(ErrorCode::Busy));
    let p1 = FakeProxy::start(&certs, "p1", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), "e2", Pbs::B4096, 4 << 20, 1 << 20);
    let emu = open_emu(&files, "e2");
    devs.add("e2", emu.clone());
    let base = tmp.path().join("base");
    let d = start_storage(
        &certs,
        &base,
        config(archive.addr, &[p0.addr, p1.addr]),
        &devs,
    )
    .await;
    let op = Op::connect(&certs, d.addr).await;
    op.cmd(Command::InitVol {
        vol: "v2".into(),
        wdev_path: Some("/dev/walb/e2".into()),
    })
    .await
    .unwrap();
    full_backup(&op, &archive, "v2").await;
    emu.write(0, &data(8 << 10, 5)).unwrap();
    emu.flush().unwrap();
    let end = lsids(&emu).permanent;
    wait_for("the done record to reach the end", || {
        done_of(&base, "v2").lsid == end
    })
    .await;
    assert!(p0.attempts(ProxyMode::Refuse(ErrorCode::Busy)) >= 1);
    assert!(p0.acked().is_empty());
    assert_eq!(p1.acked().len(), 2);
    // Once p0 accepts, it gets the next transfer (priority order).
    p0.set_mode(ProxyMode::Ack);
    emu.write(0, &data(8 << 10, 6)).unwrap();
    emu.flush().unwrap();
    let end = lsids(&emu).permanent;
    wait_for("the second batch", || done_of(&base, "v2").lsid == end).await;
    assert_eq!(p0.acked().len(), 1);
    assert_eq!(p1.acked().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_stop_aborts_a_transfer_waiting_for_its_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), "e4", Pbs::B512, 4 << 20, 1 << 20);
    let emu = open_emu(&files, "e4");
    devs.add("e4", emu.clone());
    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    op.cmd(Command::InitVol {
        vol: "v4".into(),
        wdev_path: Some("/dev/walb/e4".into()),
    })
    .await
    .unwrap();
    full_backup(&op, &archive, "v4").await;
    wait_for("the first transfer", || proxy.acked().len() == 1).await;
    // The storage persists its done record just after the ack arrives.
    wait_for("the done record of the first transfer", || {
        done_of(&base, "v4").gid > 0
    })
    .await;
    let done0 = done_of(&base, "v4");
    proxy.set_mode(ProxyMode::Hang);
    emu.write(0, &data(32 << 10, 7)).unwrap();
    emu.flush().unwrap();
    let end = lsids(&emu).permanent;
    wait_for("a transfer waiting for its ack", || {
        proxy
            .got()
            .iter()
            .any(|g| g.mode == ProxyMode::Hang && g.diff.is_some())
    })
    .await;
    assert_eq!(
        op.cmd(Command::Stop {
            vol: "v4".into(),
            mode: walb_wire::msg::StopMode::Force,
        })
        .await,
        Ok(Reply::Accepted)
    );
    op.wait_state("v4", "Stopped").await;
    assert_eq!(done_of(&base, "v4"), done0);
    assert_eq!(lsids(&emu).oldest, done0.lsid);
    // Started again, the range goes out again.
    proxy.set_mode(ProxyMode::Ack);
    assert_eq!(
        op.cmd(Command::Start {
            vol: "v4".into(),
            mode: Some(walb_wire::msg::StartMode::Target),
        })
        .await,
        Ok(Reply::Done)
    );
    wait_for("the log to be shipped", || done_of(&base, "v4").lsid == end).await;
    let last = proxy.acked().pop().unwrap();
    assert_eq!(last.bytes, ldev_bytes(&files.ldev, done0.lsid, end));
}
