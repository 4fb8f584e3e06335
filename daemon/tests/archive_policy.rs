//! The built-in maintenance policy on in-process archives over real QUIC: old diffs are
//! applied by themselves, and volumes are replicated to a second archive at an interval.

mod archive_support;

use archive_support::*;
use walb_kernel::wdiff::WdiffKind;
use walb_wire::msg::SnapDto;
use walb_wire::{Query, Reply};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x4d; 16];
/// Long ago: every diff is older than any keep period.
const T0: u64 = 1_600_000_000;
const SIZE_LB: u64 = 2048;

async fn base_of(p: &walb_wire::Peer) -> SnapDto {
    match query(
        p,
        Query::Base {
            vol: Some(VOL.into()),
        },
    )
    .await
    {
        Reply::MetaState(s) => s.snap_b,
        r => panic!("base: {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_diffs_are_applied_and_volumes_replicated_without_an_operator() {
    let c = Cluster::new("policy");
    let (b0, b1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a1 = TestArchive::start_as(&c, opts(b1.path()), "a1").await;
    let mut o = opts(b0.path());
    o.apply_keep = Some("1h".into());
    o.apply_interval = "0".into();
    o.replicate_to = vec![format!("a1@{}@1s", a1.addr)];
    let a0 = TestArchive::start(&c, o).await;
    let p = connect_all(&c, a0.addr).await;
    let n1 = c.client(walb_wire::Role::Operator, "op");
    let op1 = n1.connect(a1.addr).await.unwrap();
    init_vol(&p.op, VOL).await;
    init_vol(&op1, VOL).await;
    let img = make_image(SIZE_LB, 128, 4, 5);
    full_backup(&p.st, VOL, &img, 128, UUID, 0, T0)
        .await
        .unwrap();
    wait_state(&p.op, VOL, "Archived").await;
    let mut wdiffs = Vec::new();
    for i in 0..3u64 {
        let w = make_wdiff(SIZE_LB, 64 << 10, 70 + i, WdiffKind::Sorted);
        send_wdiff(
            &p.px,
            VOL,
            UUID,
            SIZE_LB,
            diff_dto(i, i + 1, false, T0 + i),
            &w,
        )
        .await
        .unwrap();
        wdiffs.push(w);
    }
    // a0 applies everything older than an hour (all of it) by itself...
    let t0 = std::time::Instant::now();
    while base_of(&p.op).await.gid_b != 3 {
        assert!(
            t0.elapsed() < LIMIT,
            "a0's base stays at {:?}",
            base_of(&p.op).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(diffs(&p.op, VOL).await.is_empty());
    // ... and a1 gets the volume (a full copy of the applied base).
    let t0 = std::time::Instant::now();
    loop {
        let r = restorable(&op1, VOL, true).await;
        if r.last().and_then(|s| s.gid) == Some(3) {
            break;
        }
        assert!(t0.elapsed() < LIMIT, "a1 never reached gid 3: {r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let w: Vec<&[u8]> = wdiffs.iter().map(Vec::as_slice).collect();
    let want = apply_all(&img, &w);
    let path = restore(&op1, VOL, 3).await;
    assert!(std::fs::read(path).unwrap() == want, "a1's gid 3");
    a0.stop().await;
    a1.stop().await;
}
