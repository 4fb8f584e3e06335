//! The archive daemon in-process, driven by fake storage, proxy and operator nodes with
//! their own certificates: full-backup receive (Protocol 3), wdiff receive (Protocol 2)
//! with every refusal, restore and del-restored, the volume life cycle, and recovery at
//! start.

mod archive_support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use archive_support::*;
use walb_kernel::meta::{diff_file_name, MetaDiff};
use walb_kernel::wdiff::WdiffKind;
use walb_wire::msg::{BackupSync, MetaStateDto, SnapDto, Step, StopMode, Subscribe, SyncStart};
use walb_wire::{Command, ErrorCode, Event, Node, Peer, Query, Reply, Request, Role};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x5a; 16];
const T0: u64 = 1_700_000_000;

struct Env {
    c: Cluster,
    base: tempfile::TempDir,
    a: TestArchive,
    _nodes: Vec<Node>,
    op: Peer,
    st: Peer,
    px: Peer,
}

async fn env(name: &str, tweak: impl FnOnce(&mut walb_daemon::opts::ArchiveOpts)) -> Env {
    let c = Cluster::new(name);
    let base = tempfile::tempdir().unwrap();
    let mut o = opts(base.path());
    tweak(&mut o);
    let a = TestArchive::start(&c, o).await;
    let Peers { nodes, op, st, px } = connect_all(&c, a.addr).await;
    Env {
        c,
        base,
        a,
        _nodes: nodes,
        op,
        st,
        px,
    }
}

/// The four diffs of the chain tests: base `<|0,2|>`, then `|0|-->|1|`, `|1|-->|3|` (M),
/// `|3|-->|4|`, `|4|-->|6|` (M). Clean points: 3 (explicit), 4 (implicit), 6 (explicit).
fn chain() -> Vec<(u64, u64, bool, u64)> {
    vec![
        (0, 1, false, T0 + 10),
        (1, 3, true, T0 + 20),
        (3, 4, false, T0 + 30),
        (4, 6, true, T0 + 40),
    ]
}

fn chain_wdiffs(size_lb: u64) -> Vec<Vec<u8>> {
    (0..4)
        .map(|i| {
            let kind = if i % 2 == 0 {
                WdiffKind::Indexed
            } else {
                WdiffKind::Sorted
            };
            make_wdiff(size_lb, 192 << 10, 100 + i as u64, kind)
        })
        .collect()
}

/// A volume archived from `img` (base `<|0,2|>`), with the first `n` diffs of [`chain`].
async fn archived(e: &Env, img: &[u8], wdiffs: &[Vec<u8>], n: usize) {
    init_vol(&e.op, VOL).await;
    full_backup(&e.st, VOL, img, 64, UUID, 2, T0).await.unwrap();
    let size_lb = (img.len() / LB) as u64;
    for (i, (b, en, m, ts)) in chain().into_iter().take(n).enumerate() {
        send_wdiff(
            &e.px,
            VOL,
            UUID,
            size_lb,
            diff_dto(b, en, m, ts),
            &wdiffs[i],
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backup_makes_a_sparse_base_equal_to_the_source() {
    let e = env("full", |_| {}).await;
    let (size_lb, bulk_lb) = (16384u64, 128u64);
    let img = make_image(size_lb, bulk_lb, 3, 1);
    let zeros = zero_bulks(&img, bulk_lb);
    assert!(zeros.len() > 10);

    let mut events =
        e.op.subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await
        .unwrap();
    assert_eq!(state(&e.op, VOL).await, "Clear");
    init_vol(&e.op, VOL).await;
    assert_eq!(state(&e.op, VOL).await, "SyncReady");
    assert_eq!(
        query(&e.op, Query::ExistsBaseImage { vol: VOL.into() }).await,
        Reply::Bool(false)
    );
    full_backup(&e.st, VOL, &img, bulk_lb, UUID, 7, T0)
        .await
        .unwrap();

    assert_eq!(state(&e.op, VOL).await, "Archived");
    let path = e.a.vol_dir(VOL).join("base.img");
    let got = std::fs::read(&path).unwrap();
    assert!(got == img, "base image differs from the source");
    let f = std::fs::File::open(&path).unwrap();
    for (off, len) in &zeros {
        assert!(is_hole(&f, *off, *len), "zero bulk at {off} was written");
    }
    let used = f.metadata().unwrap().blocks() * 512;
    let zero_bytes: u64 = zeros.iter().map(|z| z.1).sum();
    assert!(
        used <= (img.len() as u64 - zero_bytes) * 101 / 100,
        "{used} bytes allocated for {} bytes of non-zero bulks",
        img.len() as u64 - zero_bytes
    );

    assert_eq!(
        query(
            &e.op,
            Query::Base {
                vol: Some(VOL.into())
            }
        )
        .await,
        Reply::MetaState(MetaStateDto {
            snap_b: SnapDto { gid_b: 0, gid_e: 7 },
            snap_e: None,
            timestamp_s: T0,
        })
    );
    assert_eq!(
        query(&e.op, Query::Uuid { vol: VOL.into() }).await,
        Reply::Uuid(UUID)
    );
    let Reply::Uuid(au) = query(&e.op, Query::ArchiveUuid { vol: VOL.into() }).await else {
        panic!()
    };
    assert_ne!(au, [0; 16], "a full backup makes a fresh archive uuid");
    assert_eq!(
        query(&e.op, Query::VolSize { vol: VOL.into() }).await,
        Reply::Number(size_lb)
    );
    assert_eq!(
        query(&e.op, Query::ExistsBaseImage { vol: VOL.into() }).await,
        Reply::Bool(true)
    );
    assert_eq!(
        query(&e.op, Query::Progress { vol: VOL.into() }).await,
        Reply::Number(0)
    );
    // A dirty base with no diffs has nothing restorable yet.
    assert!(restorable(&e.op, VOL, true).await.is_empty());
    let Reply::Snapshots(latest) = query(
        &e.op,
        Query::LatestSnap {
            vol: Some(VOL.into()),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(latest[0].gid, Some(0));
    assert_eq!(
        query(&e.op, Query::Vols).await,
        Reply::Names(vec![VOL.to_owned()])
    );

    // A second full backup needs SyncReady.
    let err = full_backup(&e.st, VOL, &img, bulk_lb, UUID, 9, T0)
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::WrongState);

    // Events: states, the final progress, an (empty) diff list.
    let mut saw = (false, false, false);
    while !(saw.0 && saw.1 && saw.2) {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("events stop")
            .unwrap()
            .unwrap();
        match ev {
            Event::VolState { state, .. } if state.name() == "FullSync" => saw.0 = true,
            Event::Progress {
                op,
                done_lb,
                total_lb,
                ..
            } if op == "full-sync" && done_lb == total_lb => {
                assert_eq!(total_lb, size_lb);
                saw.1 = true
            }
            Event::VolState { state, .. } if state.name() == "Archived" => saw.2 = true,
            _ => {}
        }
    }
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_full_backup_rolls_back_to_sync_ready_without_an_image() {
    let e = env("fullcut", |_| {}).await;
    let (size_lb, bulk_lb) = (8192u64, 64u64);
    let img = make_image(size_lb, bulk_lb, 4, 2);
    init_vol(&e.op, VOL).await;
    let dir = e.a.vol_dir(VOL);

    // 1. The storage goes away half-way.
    let mut call =
        e.st.call(Request::BackupSync(BackupSync::Full(SyncStart {
            vol: VOL.into(),
            size_lb,
            time_s: T0,
            bulk_lb,
        })))
        .await
        .unwrap();
    assert_eq!(call.receiver.reply().await.unwrap(), Reply::Accepted);
    call.sender.step(Step::Uuid(UUID)).await.unwrap();
    assert_eq!(call.receiver.step().await.unwrap(), Step::Ack);
    for c in img.chunks(bulk_lb as usize * LB).take(40) {
        call.sender.chunk(c).await.unwrap();
    }
    wait_state(&e.op, VOL, "FullSync").await;
    // The partial image exists while the transfer runs...
    let t0 = std::time::Instant::now();
    while !dir.join("base.img.tmp").exists() {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    e.st.close();
    wait_state(&e.op, VOL, "SyncReady").await;
    // ... and is gone after the rollback.
    let names = files(&dir);
    assert!(
        !names.iter().any(|n| n.starts_with("base.img")),
        "partial image left: {names:?}"
    );
    assert_eq!(
        query(&e.op, Query::ExistsBaseImage { vol: VOL.into() }).await,
        Reply::Bool(false)
    );

    // 2. The image ends short: truncated, rolled back.
    let st = e._nodes[1].connect(e.a.addr).await.unwrap();
    let mut call = st
        .call(Request::BackupSync(BackupSync::Full(SyncStart {
            vol: VOL.into(),
            size_lb,
            time_s: T0,
            bulk_lb,
        })))
        .await
        .unwrap();
    assert_eq!(call.receiver.reply().await.unwrap(), Reply::Accepted);
    call.sender.step(Step::Uuid(UUID)).await.unwrap();
    assert_eq!(call.receiver.step().await.unwrap(), Step::Ack);
    for c in img.chunks(bulk_lb as usize * LB).take(10) {
        call.sender.chunk(c).await.unwrap();
    }
    call.sender.end_bulk().await.unwrap();
    let err = call.receiver.step().await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::Truncated, "{err}");
    wait_state(&e.op, VOL, "SyncReady").await;
    assert!(!files(&dir).iter().any(|n| n.starts_with("base.img")));

    // 3. A bulk past the end of the volume is refused.
    let mut call = st
        .call(Request::BackupSync(BackupSync::Full(SyncStart {
            vol: VOL.into(),
            size_lb: 64,
            time_s: T0,
            bulk_lb: 64,
        })))
        .await
        .unwrap();
    assert_eq!(call.receiver.reply().await.unwrap(), Reply::Accepted);
    call.sender.step(Step::Uuid(UUID)).await.unwrap();
    assert_eq!(call.receiver.step().await.unwrap(), Step::Ack);
    call.sender.step(Step::Zero { len_lb: 128 }).await.unwrap();
    let err = call.receiver.step().await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadRequest, "{err}");
    wait_state(&e.op, VOL, "SyncReady").await;

    // A complete full backup still works.
    full_backup(&st, VOL, &img, bulk_lb, UUID, 3, T0)
        .await
        .unwrap();
    assert_eq!(state(&e.op, VOL).await, "Archived");
    assert!(std::fs::read(dir.join("base.img")).unwrap() == img);
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wdiffs_from_the_kernel_engine_make_the_diff_and_restorable_lists() {
    let e = env("chain", |_| {}).await;
    let size_lb = 4096u64;
    let img = make_image(size_lb, 64, 5, 3);
    let w = chain_wdiffs(size_lb);
    let mut events =
        e.op.subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await
        .unwrap();
    archived(&e, &img, &w, 4).await;

    let got = diffs(&e.op, VOL).await;
    let want: Vec<_> = chain()
        .into_iter()
        .zip(&w)
        .map(|((b, en, m, ts), bytes)| {
            let mut d = diff_dto(b, en, m, ts);
            d.size = bytes.len() as u64;
            d
        })
        .collect();
    assert_eq!(got, want);
    // The listing is the metadata: one file per diff, named by the kernel.
    let names = files(&e.a.vol_dir(VOL));
    for (b, en, m, ts) in chain() {
        let d = MetaDiff::clean(b, en)
            .unwrap()
            .with_mergeable(m)
            .with_timestamp(ts);
        assert!(names.contains(&diff_file_name(&d)), "{names:?}");
    }
    let pts = |v: Vec<walb_wire::msg::SnapshotInfo>| -> Vec<(u64, u64, bool)> {
        v.iter()
            .map(|s| (s.gid.unwrap(), s.timestamp_s, s.explicit))
            .collect()
    };
    assert_eq!(
        pts(restorable(&e.op, VOL, true).await),
        vec![(3, T0 + 20, true), (4, T0 + 30, false), (6, T0 + 40, true)]
    );
    assert_eq!(
        pts(restorable(&e.op, VOL, false).await),
        vec![(3, T0 + 20, true), (6, T0 + 40, true)]
    );
    let Reply::Diffs(app) = query(
        &e.op,
        Query::ApplicableDiff {
            vol: VOL.into(),
            gid_max: Some(4),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(app.len(), 3);
    let Reply::Snapshots(latest) = query(
        &e.op,
        Query::LatestSnap {
            vol: Some(VOL.into()),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!((latest[0].gid, latest[0].timestamp_s), (Some(6), T0 + 40));
    let st = status(&e.op, VOL).await;
    assert!(st.contains(&"restorable:3 6".to_owned()), "{st:?}");

    // A DiffList event follows every receive; the last one holds the whole chain.
    let mut last = None;
    while last.as_ref().map(Vec::len) != Some(4) {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no DiffList event")
            .unwrap()
            .unwrap();
        if let Event::DiffList { diffs, .. } = ev {
            last = Some(diffs);
        }
    }
    assert_eq!(last.unwrap(), want);
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wdiff_refusal_has_its_code_and_keeps_nothing() {
    let e = env("refuse", |o| o.common.fg = 1).await;
    let size_lb = 2048u64;
    let img = make_image(size_lb, 64, 4, 4);
    let w = chain_wdiffs(size_lb);
    let send =
        |vol: &'static str, uuid, size, (b, en, m, ts): (u64, u64, bool, u64), bytes: &[u8]| {
            let px = e.px.clone();
            let bytes = bytes.to_vec();
            async move { send_wdiff(&px, vol, uuid, size, diff_dto(b, en, m, ts), &bytes).await }
        };
    let ch = chain();

    // archive-not-found, then a volume not archived yet.
    let err = send("nosuch", UUID, size_lb, ch[0], &w[0])
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::NotFound, "{err}");
    init_vol(&e.op, "v1").await;
    let err = send("v1", UUID, size_lb, ch[0], &w[0]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::WrongState, "{err}");
    assert!(err.to_string().contains("SyncReady"), "{err}");

    archived(&e, &img, &w, 1).await;
    let dir = e.a.vol_dir(VOL);
    let before = files(&dir);

    let err = send(VOL, [1; 16], size_lb, ch[1], &w[1]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::DifferentUuid, "{err}");
    let err = send(VOL, UUID, size_lb + 8, ch[1], &w[1])
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::SmallerLvSize, "{err}");
    let err = send(VOL, UUID, size_lb, ch[0], &w[0]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::TooOldDiff, "{err}");
    let err = send(VOL, UUID, size_lb, ch[2], &w[2]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::TooNewDiff, "{err}");

    // Busy while another wdiff of the volume is being received.
    let (b, en, m, ts) = ch[1];
    let mut held =
        e.px.call(Request::WdiffTransfer(walb_wire::msg::WdiffTransfer {
            vol: VOL.into(),
            uuid: UUID,
            size_lb,
            diff: diff_dto(b, en, m, ts),
        }))
        .await
        .unwrap();
    assert_eq!(held.receiver.reply().await.unwrap(), Reply::Accepted);
    held.sender.chunk(&w[1][..1000]).await.unwrap();
    wait_state(&e.op, VOL, "WdiffRecv").await;
    let err = send(VOL, UUID, size_lb, ch[1], &w[1]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::Busy, "{err}");
    held.sender.chunk(&w[1][1000..]).await.unwrap();
    held.sender.end_bulk().await.unwrap();
    assert_eq!(held.receiver.step().await.unwrap(), Step::Ack);
    wait_state(&e.op, VOL, "Archived").await;

    // Syncing while a full backup of the volume runs; Busy when it takes the only
    // foreground slot.
    let mut full =
        e.st.call(Request::BackupSync(BackupSync::Full(SyncStart {
            vol: "v1".into(),
            size_lb,
            time_s: T0,
            bulk_lb: 64,
        })))
        .await
        .unwrap();
    assert_eq!(full.receiver.reply().await.unwrap(), Reply::Accepted);
    wait_state(&e.op, "v1", "FullSync").await;
    let err = send("v1", UUID, size_lb, ch[0], &w[0]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::Syncing, "{err}");
    let err = send(VOL, UUID, size_lb, ch[2], &w[2]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::Busy, "{err}");
    full.sender.reset();
    wait_state(&e.op, "v1", "SyncReady").await;

    // Stopped until start.
    let r = cmd(
        &e.op,
        Command::Stop {
            vol: VOL.into(),
            mode: StopMode::Graceful,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Reply::Accepted);
    wait_state(&e.op, VOL, "Stopped").await;
    let err = send(VOL, UUID, size_lb, ch[2], &w[2]).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::Stopped, "{err}");
    cmd(
        &e.op,
        Command::Start {
            vol: VOL.into(),
            mode: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(state(&e.op, VOL).await, "Archived");

    // Nothing but the one accepted diff was kept.
    let mut after = files(&dir);
    let d1 = MetaDiff::clean(1, 3)
        .unwrap()
        .with_mergeable(true)
        .with_timestamp(T0 + 20);
    after.retain(|n| *n != diff_file_name(&d1));
    assert_eq!(after, before);
    assert!(temp_files(e.base.path()).is_empty());
    send(VOL, UUID, size_lb, ch[2], &w[2]).await.unwrap();
    assert_eq!(diffs(&e.op, VOL).await.len(), 3);
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_truncated_or_oversized_wdiffs_are_refused_and_leave_no_file() {
    let e = env("corrupt", |_| {}).await;
    let size_lb = 2048u64;
    let img = make_image(size_lb, 64, 4, 5);
    let w = chain_wdiffs(size_lb);
    archived(&e, &img, &w, 1).await;
    let dir = e.a.vol_dir(VOL);
    let before = files(&dir);
    let (b, en, m, ts) = chain()[1];
    let dto = diff_dto(b, en, m, ts);

    let sorted = make_wdiff(size_lb, 192 << 10, 7, WdiffKind::Sorted);
    let indexed = make_wdiff(size_lb, 192 << 10, 8, WdiffKind::Indexed);
    let flip = |v: &[u8]| {
        let mut v = v.to_vec();
        let i = v.len() / 2;
        v[i] ^= 0x40;
        v
    };
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("sorted, flipped byte", flip(&sorted), ErrorCode::Corrupt),
        ("indexed, flipped byte", flip(&indexed), ErrorCode::Corrupt),
        (
            "sorted, cut short",
            sorted[..sorted.len() - 100].to_vec(),
            ErrorCode::Truncated,
        ),
        ("empty", Vec::new(), ErrorCode::Truncated),
        (
            "IOs beyond the volume",
            make_wdiff(size_lb * 4, 512 << 10, 9, WdiffKind::Sorted),
            ErrorCode::BadRequest,
        ),
    ];
    for (what, bytes, want) in cases {
        let err = send_wdiff(&e.px, VOL, UUID, size_lb, dto, &bytes)
            .await
            .unwrap_err();
        assert_eq!(code(&err), want, "{what}: {err}");
        wait_state(&e.op, VOL, "Archived").await;
        assert_eq!(files(&dir), before, "{what} left a file");
        assert_eq!(diffs(&e.op, VOL).await.len(), 1, "{what}");
    }
    // The intact diff is accepted.
    send_wdiff(&e.px, VOL, UUID, size_lb, dto, &sorted)
        .await
        .unwrap();
    assert_eq!(diffs(&e.op, VOL).await.len(), 2);
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_equals_the_base_with_the_diffs_applied_in_order() {
    // Rounds of at most two wdiffs.
    let e = env("restore", |o| o.max_open = 2).await;
    let size_lb = 4096u64;
    let img = make_image(size_lb, 64, 5, 6);
    let w = chain_wdiffs(size_lb);
    archived(&e, &img, &w, 4).await;
    let mut events =
        e.op.subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await
        .unwrap();

    let p3 = restore(&e.op, VOL, 3).await;
    assert!(
        std::fs::read(&p3).unwrap() == apply_all(&img, &[&w[0], &w[1]]),
        "image of 3 differs"
    );
    let p6 = restore(&e.op, VOL, 6).await;
    let all: Vec<&[u8]> = w.iter().map(|v| &v[..]).collect();
    assert!(
        std::fs::read(&p6).unwrap() == apply_all(&img, &all),
        "image of 6 differs"
    );
    // The implicit snapshot 4 is restorable too.
    let p4 = restore(&e.op, VOL, 4).await;
    assert!(std::fs::read(&p4).unwrap() == apply_all(&img, &all[..3]));
    assert_eq!(
        restored(&e.op, VOL)
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![3, 4, 6]
    );
    assert_eq!(p3, e.a.vol_dir(VOL).join("restored/3.img"));
    let st = status(&e.op, VOL).await;
    assert!(
        st.iter()
            .any(|l| l.starts_with("restored:6 ") && l.ends_with("(sparse copy)"))
            || st
                .iter()
                .any(|l| l.starts_with("restored:6 ") && l.ends_with("(reflink)")),
        "{st:?}"
    );

    // Refusals: dirty, unknown, already restored.
    for (gid, want) in [
        (1, ErrorCode::NotFound),
        (5, ErrorCode::NotFound),
        (3, ErrorCode::WrongState),
    ] {
        let err = cmd(
            &e.op,
            Command::Restore {
                vol: VOL.into(),
                gid,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(code(&err), want, "restore {gid}: {err}");
    }
    // The progress of a restore ends at its total.
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no restore progress")
            .unwrap()
            .unwrap();
        if let Event::Progress {
            op,
            done_lb,
            total_lb,
            ..
        } = ev
        {
            if op == "restore" && done_lb == total_lb {
                assert!(total_lb >= size_lb);
                break;
            }
        }
    }

    // del-restored.
    assert_eq!(
        cmd(
            &e.op,
            Command::DelRestored {
                vol: VOL.into(),
                gid: 3
            }
        )
        .await
        .unwrap(),
        Reply::Done
    );
    assert!(!p3.exists());
    assert_eq!(
        restored(&e.op, VOL)
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![4, 6]
    );
    let err = cmd(
        &e.op,
        Command::DelRestored {
            vol: VOL.into(),
            gid: 3,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), ErrorCode::NotFound);
    assert!(temp_files(e.base.path()).is_empty());
    assert_eq!(
        query(
            &e.op,
            Query::NumAction {
                vol: VOL.into(),
                action: "Restore".into()
            }
        )
        .await,
        Reply::Number(0)
    );
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_reset_and_clear_follow_the_state_machine() {
    let e = env("cycle", |_| {}).await;
    let size_lb = 2048u64;
    let img = make_image(size_lb, 64, 4, 7);
    let w = chain_wdiffs(size_lb);
    archived(&e, &img, &w, 2).await;
    let dir = e.a.vol_dir(VOL);
    let stop = |mode| Command::Stop {
        vol: VOL.into(),
        mode,
    };

    let err = cmd(&e.op, stop(StopMode::Empty)).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadRequest);
    let err = cmd(&e.op, Command::ClearVol { vol: VOL.into() })
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        ErrorCode::WrongState,
        "clear-vol needs SyncReady or Stopped"
    );
    let err = cmd(
        &e.op,
        Command::ResetVol {
            vol: VOL.into(),
            gid: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), ErrorCode::WrongState);
    let err = cmd(
        &e.op,
        Command::InitVol {
            vol: VOL.into(),
            wdev_path: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), ErrorCode::WrongState);

    assert_eq!(
        cmd(&e.op, stop(StopMode::Force)).await.unwrap(),
        Reply::Accepted
    );
    wait_state(&e.op, VOL, "Stopped").await;
    let err = cmd(&e.op, stop(StopMode::Graceful)).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::WrongState);
    // Stopped volumes still answer data queries and keep their restored images.
    assert_eq!(diffs(&e.op, VOL).await.len(), 2);
    // Restore needs an active volume.
    let err = cmd(
        &e.op,
        Command::Restore {
            vol: VOL.into(),
            gid: 3,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), ErrorCode::WrongState);

    // reset-vol: everything goes, the volume is SyncReady again.
    assert_eq!(
        cmd(
            &e.op,
            Command::ResetVol {
                vol: VOL.into(),
                gid: None
            }
        )
        .await
        .unwrap(),
        Reply::Done
    );
    assert_eq!(state(&e.op, VOL).await, "SyncReady");
    let left = files(&dir);
    assert!(
        !left
            .iter()
            .any(|n| n.ends_with(".wdiff") || n.starts_with("base.img")),
        "{left:?}"
    );
    assert_eq!(
        query(&e.op, Query::ExistsBaseImage { vol: VOL.into() }).await,
        Reply::Bool(false)
    );
    full_backup(&e.st, VOL, &img, 64, UUID, 2, T0)
        .await
        .unwrap();
    assert!(diffs(&e.op, VOL).await.is_empty());

    // clear-vol: the volume and its directory are gone; init-vol works again.
    assert_eq!(
        cmd(&e.op, stop(StopMode::Graceful)).await.unwrap(),
        Reply::Accepted
    );
    wait_state(&e.op, VOL, "Stopped").await;
    assert_eq!(
        cmd(&e.op, Command::ClearVol { vol: VOL.into() })
            .await
            .unwrap(),
        Reply::Done
    );
    assert_eq!(state(&e.op, VOL).await, "Clear");
    assert!(!dir.exists());
    assert_eq!(query(&e.op, Query::Vols).await, Reply::Names(vec![]));
    init_vol(&e.op, VOL).await;
    assert_eq!(state(&e.op, VOL).await, "SyncReady");
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_recovers_unfinished_files_states_and_garbage_diffs() {
    let c = Cluster::new("boot");
    let base = tempfile::tempdir().unwrap();
    let size_lb = 2048u64;
    let img = make_image(size_lb, 64, 4, 8);
    let w = chain_wdiffs(size_lb);
    {
        let a = TestArchive::start(&c, opts(base.path())).await;
        let node = c.client(Role::Operator, "op");
        let op = node.connect(a.addr).await.unwrap();
        let sn = c.client(Role::Storage, "s0");
        let st = sn.connect(a.addr).await.unwrap();
        let pn = c.client(Role::Proxy, "p0");
        let px = pn.connect(a.addr).await.unwrap();
        init_vol(&op, VOL).await;
        full_backup(&st, VOL, &img, 64, UUID, 2, T0).await.unwrap();
        for (i, (b, en, m, ts)) in chain().into_iter().take(2).enumerate() {
            send_wdiff(&px, VOL, UUID, size_lb, diff_dto(b, en, m, ts), &w[i])
                .await
                .unwrap();
        }
        restore(&op, VOL, 3).await;
        for v in ["v2", "v3"] {
            init_vol(&op, v).await;
        }
        full_backup(&st, "v3", &img, 64, UUID, 2, T0).await.unwrap();
        a.stop().await;
    }
    let dir = base.path().join(VOL);
    // What a killed daemon may leave: unfinished images and wdiffs, a diff off the chain.
    std::fs::write(dir.join("restored/5.img.tmp"), b"half").unwrap();
    std::fs::write(dir.join("base.img.tmp"), b"half").unwrap();
    std::fs::write(dir.join("20240101000000----3-4.wdiff.tmp"), b"half").unwrap();
    let off_chain = MetaDiff::clean(7, 9).unwrap().with_timestamp(T0);
    std::fs::write(dir.join(diff_file_name(&off_chain)), b"garbage").unwrap();
    // A temporary state (not written by this daemon) and an Archived volume without image.
    std::fs::write(base.path().join("v2/state"), b"FullSync").unwrap();
    std::fs::remove_file(base.path().join("v3/base.img")).unwrap();

    let a = TestArchive::start(&c, opts(base.path())).await;
    let node = c.client(Role::Operator, "op");
    let op = node.connect(a.addr).await.unwrap();
    assert!(
        temp_files(base.path()).is_empty(),
        "{:?}",
        temp_files(base.path())
    );
    assert!(
        !dir.join(diff_file_name(&off_chain)).exists(),
        "garbage diff kept"
    );
    assert_eq!(state(&op, VOL).await, "Archived");
    assert_eq!(diffs(&op, VOL).await.len(), 2);
    assert_eq!(
        restored(&op, VOL)
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(state(&op, "v2").await, "SyncReady");
    assert_eq!(state(&op, "v3").await, "SyncReady");
    assert_eq!(
        std::fs::read_to_string(base.path().join("v3/state")).unwrap(),
        "SyncReady"
    );
    // The recovered volume serves as before.
    cmd(
        &op,
        Command::DelRestored {
            vol: VOL.into(),
            gid: 3,
        },
    )
    .await
    .unwrap();
    let p = restore(&op, VOL, 3).await;
    assert!(std::fs::read(p).unwrap() == apply_all(&img, &[&w[0], &w[1]]));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_may_only_do_what_their_role_allows() {
    let e = env("auth", |_| {}).await;
    // A proxy may not run a full backup, a storage may not send wdiffs.
    let err = full_backup(&e.px, VOL, &[0u8; 4096], 8, UUID, 1, T0)
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::Forbidden);
    let err = send_wdiff(&e.st, VOL, UUID, 8, diff_dto(0, 1, false, T0), &[])
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::Forbidden);
    let _ = &e.c;
    e.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_gone_mid_wdiff_leaves_no_file_and_auto_resize_grows_the_base() {
    let e = env("wcut", |o| o.auto_resize = true).await;
    let size_lb = 2048u64;
    let img = make_image(size_lb, 64, 4, 9);
    let w = chain_wdiffs(size_lb);
    archived(&e, &img, &w, 1).await;
    let dir = e.a.vol_dir(VOL);
    let before = files(&dir);
    let (b, en, m, ts) = chain()[1];

    let mut call =
        e.px.call(Request::WdiffTransfer(walb_wire::msg::WdiffTransfer {
            vol: VOL.into(),
            uuid: UUID,
            size_lb,
            diff: diff_dto(b, en, m, ts),
        }))
        .await
        .unwrap();
    assert_eq!(call.receiver.reply().await.unwrap(), Reply::Accepted);
    call.sender.chunk(&w[1][..w[1].len() / 2]).await.unwrap();
    wait_state(&e.op, VOL, "WdiffRecv").await;
    e.px.close();
    wait_state(&e.op, VOL, "Archived").await;
    assert_eq!(files(&dir), before, "a partial wdiff was kept");
    assert_eq!(diffs(&e.op, VOL).await.len(), 1);

    // A larger volume: the base image grows instead of refusing (--auto-resize).
    let px = e._nodes[2].connect(e.a.addr).await.unwrap();
    send_wdiff(&px, VOL, UUID, size_lb * 2, diff_dto(b, en, m, ts), &w[1])
        .await
        .unwrap();
    assert_eq!(
        query(&e.op, Query::VolSize { vol: VOL.into() }).await,
        Reply::Number(size_lb * 2)
    );
    let base = std::fs::read(dir.join("base.img")).unwrap();
    assert!(base[..img.len()] == img[..] && base[img.len()..].iter().all(|&x| x == 0));
    e.a.stop().await;
}
