//! The archive's side of a hash backup over real QUIC, driven by a fake storage: the
//! hashes it sends are those of its image of the latest snapshot, the differences it gets
//! become a restorable dirty diff with the new uuid, and a corrupt diff or a wrong size is
//! refused with everything stored left as it was.

mod archive_support;

use archive_support::*;
use bytes::Bytes;
use walb_kernel::diff::convert::{write_sorted, ConvertOpt};
use walb_kernel::diff::io::DiffIo;
use walb_kernel::hash::bulk_hash;
use walb_kernel::wdiff::WdiffKind;
use walb_wire::msg::{BackupSync, SnapDto, Step, Subscribe, SyncStart};
use walb_wire::{ErrorCode, Event, Peer, Query, Reply, Request};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x21; 16];
const NEW_UUID: [u8; 16] = [0x42; 16];
const T0: u64 = 1_700_000_000;
const SIZE_LB: u64 = 4096;
const BULK_LB: u64 = 128;
const BULK: usize = BULK_LB as usize * LB;

/// An archived volume: full backup at |0| (clean), then diffs 0->1 and 1->2. Returns the
/// image of snapshot 2.
async fn archived(p: &Peers) -> Vec<u8> {
    init_vol(&p.op, VOL).await;
    let img = make_image(SIZE_LB, BULK_LB, 4, 3);
    full_backup(&p.st, VOL, &img, BULK_LB, UUID, 0, T0)
        .await
        .unwrap();
    let w: Vec<Vec<u8>> = (0..2)
        .map(|i| make_wdiff(SIZE_LB, 128 << 10, 50 + i, WdiffKind::Sorted))
        .collect();
    for (i, wd) in w.iter().enumerate() {
        let (b, e) = (i as u64, i as u64 + 1);
        send_wdiff(&p.px, VOL, UUID, SIZE_LB, diff_dto(b, e, false, T0 + e), wd)
            .await
            .unwrap();
    }
    apply_all(&img, &[&w[0], &w[1]])
}

/// The SORTED wdiff of the bulks of `new` whose hash differs from `hashes`.
fn differences(new: &[u8], hashes: &[[u8; 16]], seed: u64) -> Vec<u8> {
    let ios: Vec<walb_kernel::Result<DiffIo>> = new
        .chunks(BULK)
        .zip(hashes)
        .enumerate()
        .filter(|(_, (b, h))| bulk_hash(b, seed) != **h)
        .map(|(i, (b, _))| {
            Ok(DiffIo::normal(
                i as u64 * BULK_LB,
                Bytes::copy_from_slice(b),
            ))
        })
        .collect();
    let opt = ConvertOpt {
        threads: 0,
        ..ConvertOpt::default()
    };
    write_sorted(ios, NEW_UUID, Vec::new(), &opt).unwrap().0
}

/// Runs a hash sync as the storage does, sending `body(hashes)` as the diff; returns the
/// archive's snapshot and hashes, or the archive's error.
async fn hash_sync(
    st: &Peer,
    size_lb: u64,
    body: impl FnOnce(&[[u8; 16]]) -> Vec<u8>,
    end: SnapDto,
) -> Result<(SnapDto, Vec<[u8; 16]>), walb_wire::Error> {
    let mut call = st
        .call(Request::BackupSync(BackupSync::Hash(SyncStart {
            vol: VOL.into(),
            size_lb,
            time_s: T0 + 100,
            bulk_lb: BULK_LB,
        })))
        .await?;
    assert_eq!(call.receiver.reply().await?, Reply::Accepted);
    let Step::MetaSnap(from) = call.receiver.step().await? else {
        panic!("no snapshot first")
    };
    call.sender.step(Step::Uuid(NEW_UUID)).await?;
    assert_eq!(call.receiver.step().await?, Step::Ack);
    let mut hashes = Vec::new();
    for _ in 0..size_lb.div_ceil(BULK_LB) {
        match call.receiver.step().await? {
            Step::Hash(h) => hashes.push(h),
            other => panic!("expected a hash, got {other:?}"),
        }
    }
    for c in body(&hashes).chunks(1 << 20) {
        call.sender.chunk(c).await?;
    }
    call.sender.end_bulk().await?;
    assert_eq!(call.receiver.step().await?, Step::Ack);
    call.sender.step(Step::MetaSnap(end)).await?;
    assert_eq!(call.receiver.step().await?, Step::Ack);
    call.sender.finish()?;
    Ok((from, hashes))
}

async fn uuid(p: &Peer) -> [u8; 16] {
    match query(p, Query::Uuid { vol: VOL.into() }).await {
        Reply::Uuid(u) => u,
        r => panic!("uuid: {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_hashes_its_latest_image_and_stores_the_differences_as_a_dirty_diff() {
    let c = Cluster::new("hash");
    let base = tempfile::tempdir().unwrap();
    let a = TestArchive::start(&c, opts(base.path())).await;
    let p = connect_all(&c, a.addr).await;
    let img2 = archived(&p).await;
    let mut events =
        p.op.subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await
        .unwrap();
    // The device changed in three bulks since snapshot 2 (one of them now all zero).
    let mut dev = img2.clone();
    dev[5 * BULK..5 * BULK + 100].fill(0xee);
    dev[20 * BULK + 4096..20 * BULK + 8192].fill(0x11);
    dev[31 * BULK..32 * BULK].fill(0);
    let seed = T0 + 100;
    let mut sent = 0;
    let (from, hashes) = hash_sync(
        &p.st,
        SIZE_LB,
        |h| {
            let d = differences(&dev, h, seed);
            sent = d.len();
            d
        },
        SnapDto { gid_b: 3, gid_e: 4 },
    )
    .await
    .unwrap();
    assert_eq!(from, SnapDto { gid_b: 2, gid_e: 2 }, "the latest snapshot");
    // The scan's progress reaches the whole image (the console's hash-backup task).
    let done = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(ev)) = events.next().await {
            if let Event::Progress {
                op,
                done_lb,
                total_lb,
                ..
            } = ev
            {
                if op == "hash-sync" && done_lb == total_lb && total_lb == SIZE_LB {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(done, Ok(true), "no complete hash-sync progress event");
    let want: Vec<[u8; 16]> = img2.chunks(BULK).map(|b| bulk_hash(b, seed)).collect();
    assert_eq!(hashes, want, "the hashes of the image of snapshot 2");
    let changed = img2
        .chunks(BULK)
        .zip(dev.chunks(BULK))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 3);
    assert!(
        sent < 4 * BULK,
        "only the differences travel ({sent} bytes)"
    );

    let d = diffs(&p.op, VOL).await;
    let last = d.last().unwrap();
    assert_eq!(
        (last.range.snap_b, last.range.snap_e),
        (
            SnapDto { gid_b: 2, gid_e: 2 },
            SnapDto { gid_b: 3, gid_e: 4 }
        )
    );
    assert!(!last.mergeable, "snapshot 2 was clean: it stays restorable");
    assert_eq!(uuid(&p.op).await, NEW_UUID);
    assert!(temp_files(&a.vol_dir(VOL)).is_empty());
    // Snapshot 4 becomes clean once the log from 3 arrives: |3| --> |4|.
    send_wdiff(
        &p.px,
        VOL,
        NEW_UUID,
        SIZE_LB,
        diff_dto(3, 4, false, T0 + 200),
        &{
            let ios: Vec<walb_kernel::Result<DiffIo>> = Vec::new();
            write_sorted(ios, NEW_UUID, Vec::new(), &ConvertOpt::default())
                .unwrap()
                .0
        },
    )
    .await
    .unwrap();
    let path = restore(&p.op, VOL, 4).await;
    assert_eq!(std::fs::read(path).unwrap(), dev);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_diff_or_a_wrong_size_is_refused_and_nothing_changes() {
    let c = Cluster::new("hash-bad");
    let base = tempfile::tempdir().unwrap();
    let a = TestArchive::start(&c, opts(base.path())).await;
    let p = connect_all(&c, a.addr).await;
    archived(&p).await;
    let before = diffs(&p.op, VOL).await;

    let e = hash_sync(
        &p.st,
        SIZE_LB * 2,
        |_| Vec::new(),
        SnapDto { gid_b: 3, gid_e: 4 },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), ErrorCode::SmallerLvSize, "{e}");

    let e = hash_sync(
        &p.st,
        SIZE_LB,
        |_| b"not a wdiff at all, just bytes".repeat(100),
        SnapDto { gid_b: 3, gid_e: 4 },
    )
    .await
    .unwrap_err();
    assert!(code(&e) != ErrorCode::SmallerLvSize, "{e}");
    assert_eq!(state(&p.op, VOL).await, "Archived");
    assert_eq!(diffs(&p.op, VOL).await, before);
    assert_eq!(uuid(&p.op).await, UUID, "the uuid is kept");
    assert!(
        temp_files(&a.vol_dir(VOL)).is_empty(),
        "no temporary file left"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_diff_in_the_chain_ends_the_sync_with_an_error_not_a_hang() {
    let c = Cluster::new("hash-unreadable");
    let base = tempfile::tempdir().unwrap();
    let a = TestArchive::start(&c, opts(base.path())).await;
    let p = connect_all(&c, a.addr).await;
    archived(&p).await;
    let dir = a.vol_dir(VOL);
    let wdiff = files(&dir)
        .into_iter()
        .find(|f| f.ends_with(".wdiff"))
        .expect("a wdiff");
    std::fs::write(dir.join(&wdiff), b"this is no longer a wdiff").unwrap();
    let r = tokio::time::timeout(
        LIMIT,
        hash_sync(
            &p.st,
            SIZE_LB,
            |_| Vec::new(),
            SnapDto { gid_b: 3, gid_e: 4 },
        ),
    )
    .await
    .expect("the sync hung");
    let e = r.unwrap_err();
    assert!(e.to_string().contains("wdiff"), "{e}");
    assert_eq!(state(&p.op, VOL).await, "Archived");
    assert_eq!(uuid(&p.op).await, UUID);
    a.stop().await;
}
