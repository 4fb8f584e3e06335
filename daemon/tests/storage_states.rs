//! The storage's state machine as operators drive it: init-vol, start target/standby,
//! stop (graceful, force), snapshot, reset-vol, clear-vol, with every refusal's code and
//! message; and a log overflow stopping a Target volume.

mod storage_support;

use std::time::Duration;

use storage_support::*;
use walb_daemon::storage::vol;
use walb_device::WalbDevice;
use walb_kernel::block::Pbs;
use walb_wire::msg::{Command, ErrorCode, Event, Query, Reply, StartMode, StopMode, Subscribe};

fn cmd_start(vol: &str, mode: Option<StartMode>) -> Command {
    Command::Start {
        vol: vol.into(),
        mode,
    }
}

fn cmd_stop(vol: &str, mode: StopMode) -> Command {
    Command::Stop {
        vol: vol.into(),
        mode,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_start_stop_snapshot_reset_clear_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Ack);
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    let files = format_device(tmp.path(), "e0", Pbs::B4096, 4 << 20, 1 << 20);
    let emu = open_emu(&files, "e0");
    devs.add("e0", emu.clone());
    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    let mut events = op
        .peer
        .subscribe(Subscribe {
            vols: vec!["v0".into()],
        })
        .await
        .unwrap();

    // init-vol.
    let init = |vol: &str, path: Option<&str>| Command::InitVol {
        vol: vol.into(),
        wdev_path: path.map(|p| p.to_owned()),
    };
    assert_refused(
        op.cmd(init("v0", None)).await,
        ErrorCode::BadRequest,
        &["init-vol v0", "device path"],
    );
    assert_refused(
        op.cmd(init("bad/name", Some("/dev/walb/e0"))).await,
        ErrorCode::BadRequest,
        &["volume name"],
    );
    assert_refused(
        op.cmd(init("v0", Some("/dev/walb/nosuch"))).await,
        ErrorCode::NotFound,
        &["v0", "nosuch"],
    );
    assert_eq!(op.state("v0").await, "Clear");
    assert!(!base.join("v0").exists());
    assert_eq!(
        op.cmd(init("v0", Some("/dev/walb/e0"))).await,
        Ok(Reply::Done)
    );
    assert_eq!(op.state("v0").await, "SyncReady");
    assert_eq!(
        op.query(Query::Vols).await,
        Ok(Reply::Names(vec!["v0".into()]))
    );
    assert_eq!(
        std::fs::read_to_string(base.join("v0/state")).unwrap(),
        "SyncReady"
    );
    assert_eq!(
        std::fs::read_to_string(base.join("v0/path")).unwrap(),
        "/dev/walb/e0"
    );
    assert_refused(
        op.cmd(init("v0", Some("/dev/walb/e0"))).await,
        ErrorCode::WrongState,
        &["v0", "SyncReady", "Clear"],
    );
    assert_refused(
        op.cmd(init("v9", Some("/dev/walb/e0"))).await,
        ErrorCode::BadRequest,
        &["e0", "already used by volume v0"],
    );
    assert_eq!(op.state("v9").await, "Clear");

    // What SyncReady refuses.
    assert_refused(
        op.cmd(cmd_start("v0", None)).await,
        ErrorCode::BadRequest,
        &["target or standby"],
    );
    assert_refused(
        op.cmd(cmd_start("v0", Some(StartMode::Target))).await,
        ErrorCode::WrongState,
        &["v0", "SyncReady", "Stopped"],
    );
    assert_refused(
        op.cmd(Command::Snapshot { vol: "v0".into() }).await,
        ErrorCode::WrongState,
        &["v0", "SyncReady", "Target or Stopped"],
    );
    assert_refused(
        op.cmd(cmd_stop("v0", StopMode::Graceful)).await,
        ErrorCode::WrongState,
        &["v0 is SyncReady", "Target or Standby"],
    );
    assert_refused(
        op.cmd(cmd_stop("v0", StopMode::Empty)).await,
        ErrorCode::BadRequest,
        &["empty", "proxies"],
    );
    assert_refused(
        op.cmd(Command::ResetVol {
            vol: "v0".into(),
            gid: None,
        })
        .await,
        ErrorCode::WrongState,
        &["v0", "SyncReady", "Stopped"],
    );
    assert_refused(
        op.cmd(Command::Snapshot { vol: "v9".into() }).await,
        ErrorCode::NotFound,
        &["v9"],
    );

    // Standby: logs are freed without being sent.
    assert_eq!(
        op.cmd(cmd_start("v0", Some(StartMode::Standby))).await,
        Ok(Reply::Done)
    );
    assert_eq!(op.state("v0").await, "Standby");
    emu.write(0, &data(64 << 10, 1)).unwrap();
    emu.flush().unwrap();
    let end = lsids(&emu).permanent;
    wait_for("standby to free the log", || lsids(&emu).oldest == end).await;
    assert!(proxy.got().is_empty(), "a standby volume ships nothing");
    assert_refused(
        op.cmd(Command::ClearVol { vol: "v0".into() }).await,
        ErrorCode::WrongState,
        &["v0", "Standby", "SyncReady"],
    );
    assert_eq!(
        op.cmd(cmd_stop("v0", StopMode::Graceful)).await,
        Ok(Reply::Accepted)
    );
    op.wait_state("v0", "SyncReady").await;
    // No longer monitored: the log stays.
    emu.write(0, &data(16 << 10, 2)).unwrap();
    emu.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lsids(&emu).oldest, end);

    // Target, through a full backup.
    full_backup(&op, &archive, "v0").await;
    assert_refused(
        op.cmd(cmd_start("v0", Some(StartMode::Target))).await,
        ErrorCode::WrongState,
        &["v0", "Target", "Stopped"],
    );
    let g1 = match op.cmd(Command::Snapshot { vol: "v0".into() }).await {
        Ok(Reply::Gid(g)) => g,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        op.cmd(cmd_stop("v0", StopMode::Force)).await,
        Ok(Reply::Accepted)
    );
    op.wait_state("v0", "Stopped").await;
    assert_eq!(
        std::fs::read_to_string(base.join("v0/state")).unwrap(),
        "Stopped"
    );
    assert_refused(
        op.cmd(cmd_stop("v0", StopMode::Graceful)).await,
        ErrorCode::WrongState,
        &["v0 is Stopped"],
    );
    // Snapshots are allowed in Stopped; the gids go on.
    let g2 = match op.cmd(Command::Snapshot { vol: "v0".into() }).await {
        Ok(Reply::Gid(g)) => g,
        other => panic!("{other:?}"),
    };
    assert!(g2 > g1);
    assert_refused(
        op.cmd(Command::ClearVol { vol: "v0".into() }).await,
        ErrorCode::WrongState,
        &["v0", "Stopped", "SyncReady"],
    );
    assert_eq!(
        op.cmd(cmd_start("v0", Some(StartMode::Target))).await,
        Ok(Reply::Done)
    );
    assert_eq!(op.state("v0").await, "Target");
    wait_for("the snapshot to be shipped", || {
        vol::load(&base.join("v0")).unwrap().snaps.done.gid >= g2
    })
    .await;
    assert_eq!(
        op.cmd(cmd_stop("v0", StopMode::Graceful)).await,
        Ok(Reply::Accepted)
    );
    op.wait_state("v0", "Stopped").await;

    // reset-vol: a new log epoch at gid 100.
    let uuid_before = emu.superblock().uuid;
    assert_eq!(
        op.cmd(Command::ResetVol {
            vol: "v0".into(),
            gid: Some(100),
        })
        .await,
        Ok(Reply::Done)
    );
    assert_eq!(op.state("v0").await, "SyncReady");
    let m = vol::load(&base.join("v0")).unwrap();
    assert_eq!((m.snaps.done.lsid, m.snaps.done.gid), (0, 100));
    assert!(m.snaps.queue.is_empty());
    let uuid = emu.superblock().uuid;
    assert_ne!(uuid, uuid_before);
    assert_eq!(m.uuid, uuid);
    assert_eq!(lsids(&emu).latest, 0);
    assert!(
        !base.join("v0/reset").exists(),
        "the reset intent is removed"
    );

    // clear-vol.
    assert_eq!(
        op.cmd(Command::ClearVol { vol: "v0".into() }).await,
        Ok(Reply::Done)
    );
    assert_eq!(op.state("v0").await, "Clear");
    assert!(!base.join("v0").exists());
    assert_eq!(op.query(Query::Vols).await, Ok(Reply::Names(vec![])));
    assert_refused(
        op.query(Query::Uuid { vol: "v0".into() }).await,
        ErrorCode::NotFound,
        &["v0"],
    );
    // The device is free again.
    assert_eq!(
        op.cmd(init("v9", Some("/dev/walb/e0"))).await,
        Ok(Reply::Done)
    );

    // Every transition was published, temporary states included.
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("Clear") {
        match tokio::time::timeout(LIMIT, events.next()).await {
            Ok(Ok(Some(Event::VolState { vol, state, .. }))) if vol == "v0" => {
                seen.push(state.name().to_owned())
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("{other:?} after {seen:?}"),
        }
    }
    let want = [
        "InitVol",
        "SyncReady",
        "StartStandby",
        "Standby",
        "StopStandby",
        "SyncReady",
        "FullSync",
        "Stopped",
        "StartTarget",
        "Target",
        "StopTarget",
        "Stopped",
        "StartTarget",
        "Target",
        "StopTarget",
        "Stopped",
        "Reset",
        "SyncReady",
        "ClearVol",
        "Clear",
    ];
    // Refused begins publish nothing; rolled-back ones would show their start state again.
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_stops_a_target_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::new(&tmp.path().join("certs"));
    // The proxy refuses everything: the log fills up.
    let proxy = FakeProxy::start(&certs, "p0", ProxyMode::Refuse(ErrorCode::Stopped));
    let archive = FakeArchive::start(&certs, "a0");
    let devs = TestDevices::default();
    // A ring of 118 blocks of 512 bytes.
    let files = format_device(tmp.path(), "e3", Pbs::B512, 64 << 10, 1 << 20);
    let emu = open_emu(&files, "e3");
    devs.add("e3", emu.clone());
    let base = tmp.path().join("base");
    let d = start_storage(&certs, &base, config(archive.addr, &[proxy.addr]), &devs).await;
    let op = Op::connect(&certs, d.addr).await;
    op.cmd(Command::InitVol {
        vol: "v3".into(),
        wdev_path: Some("/dev/walb/e3".into()),
    })
    .await
    .unwrap();
    full_backup(&op, &archive, "v3").await;
    assert_eq!(
        op.query(Query::IsOverflow { vol: "v3".into() }).await,
        Ok(Reply::Bool(false))
    );
    for i in 0..10u64 {
        emu.write(i * (8 << 10), &data(8 << 10, i)).unwrap();
    }
    emu.flush().unwrap();
    assert!(emu.is_overflow().unwrap());
    op.wait_state("v3", "Stopped").await;
    assert_eq!(
        std::fs::read_to_string(base.join("v3/state")).unwrap(),
        "Stopped"
    );
    assert_eq!(
        op.query(Query::IsOverflow { vol: "v3".into() }).await,
        Ok(Reply::Bool(true))
    );
    assert!(proxy.acked().is_empty());
    assert_refused(
        op.cmd(cmd_start("v3", Some(StartMode::Target))).await,
        ErrorCode::WrongState,
        &[
            "v3",
            "overflowed",
            "`hash-backup` of this volume recovers it",
        ],
    );
    assert_eq!(op.state("v3").await, "Stopped");
    assert_refused(
        op.cmd(Command::Snapshot { vol: "v3".into() }).await,
        ErrorCode::WrongState,
        &["v3", "overflowed"],
    );
    // Recovery starts with reset-vol.
    assert_eq!(
        op.cmd(Command::ResetVol {
            vol: "v3".into(),
            gid: None,
        })
        .await,
        Ok(Reply::Done)
    );
    assert_eq!(
        op.query(Query::IsOverflow { vol: "v3".into() }).await,
        Ok(Reply::Bool(false))
    );
    assert_eq!(op.state("v3").await, "SyncReady");
}
