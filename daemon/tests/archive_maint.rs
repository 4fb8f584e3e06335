//! Merge and apply on an in-process archive over real QUIC: what stays restorable, the
//! bytes of every restore, the files left, the refusals, and an apply cut short.

mod archive_support;

use std::path::{Path, PathBuf};

use archive_support::*;
use walb_daemon::archive::backend::FileBackend;
use walb_daemon::archive::vol::BASE_FILE;
use walb_kernel::meta::{MetaSnap, MetaState};
use walb_kernel::wdiff::WdiffKind;
use walb_wire::msg::{MergeUntil, SnapDto};
use walb_wire::{Command, ErrorCode, Peer, Query, Reply, Role};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x5a; 16];
const T0: u64 = 1_700_000_000;
const SIZE_LB: u64 = 4096;
/// The diffs sent after the full backup: (gid_b, gid_e, mergeable). Snapshots 1 and 4
/// are explicit (their diffs start not mergeable), 2, 3 and 5 implicit.
const CHAIN: [(u64, u64, bool); 5] = [
    (0, 1, false),
    (1, 2, false),
    (2, 3, true),
    (3, 4, true),
    (4, 5, false),
];

struct Setup {
    _c: Cluster,
    base: tempfile::TempDir,
    a: TestArchive,
    op: Peer,
    img: Vec<u8>,
    wdiffs: Vec<Vec<u8>>,
    _nodes: Vec<walb_wire::Node>,
}

impl Setup {
    /// The image after the first `n` diffs of [`CHAIN`].
    fn expected(&self, n: usize) -> Vec<u8> {
        let w: Vec<&[u8]> = self.wdiffs[..n].iter().map(Vec::as_slice).collect();
        apply_all(&self.img, &w)
    }

    fn dir(&self) -> PathBuf {
        self.a.vol_dir(VOL)
    }

    fn base_image(&self) -> PathBuf {
        FileBackend::new(self.base.path(), false).base_path(VOL)
    }
}

async fn setup() -> Setup {
    let c = Cluster::new("maint");
    let base = tempfile::tempdir().unwrap();
    let a = TestArchive::start(&c, opts(base.path())).await;
    let Peers { nodes, op, st, px } = connect_all(&c, a.addr).await;
    init_vol(&op, VOL).await;
    let img = make_image(SIZE_LB, 128, 5, 9);
    full_backup(&st, VOL, &img, 128, UUID, 0, T0).await.unwrap();
    wait_state(&op, VOL, "Archived").await;
    let kinds = [WdiffKind::Indexed, WdiffKind::Sorted];
    let wdiffs: Vec<Vec<u8>> = (0..CHAIN.len())
        .map(|i| make_wdiff(SIZE_LB, 256 << 10, 100 + i as u64, kinds[i % 2]))
        .collect();
    for (i, (b, e, m)) in CHAIN.into_iter().enumerate() {
        let d = diff_dto(b, e, m, T0 + 10 * (i as u64 + 1));
        send_wdiff(&px, VOL, UUID, SIZE_LB, d, &wdiffs[i])
            .await
            .unwrap();
    }
    Setup {
        _c: c,
        base,
        a,
        op,
        img,
        wdiffs,
        _nodes: nodes,
    }
}

fn ranges(d: &[walb_wire::msg::MetaDiffDto]) -> Vec<(u64, u64)> {
    d.iter()
        .map(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b))
        .collect()
}

async fn merge(p: &Peer, gid_b: u64, gid_e: u64) -> Result<Reply, walb_wire::Error> {
    cmd(
        p,
        Command::Merge {
            vol: VOL.into(),
            gid_b,
            until: MergeUntil::Gid(gid_e),
        },
    )
    .await
}

async fn apply(p: &Peer, gid: u64) -> Result<Reply, walb_wire::Error> {
    cmd(
        p,
        Command::Apply {
            vol: VOL.into(),
            gid,
        },
    )
    .await
}

async fn base_of(p: &Peer) -> (SnapDto, Option<SnapDto>) {
    match query(
        p,
        Query::Base {
            vol: Some(VOL.into()),
        },
    )
    .await
    {
        Reply::MetaState(s) => (s.snap_b, s.snap_e),
        r => panic!("base: {r:?}"),
    }
}

async fn restored_bytes(p: &Peer, gid: u64) -> Vec<u8> {
    let path = restore(p, VOL, gid).await;
    let b = std::fs::read(&path).unwrap();
    let r = cmd(
        p,
        Command::DelRestored {
            vol: VOL.into(),
            gid,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Reply::Done);
    b
}

fn wdiff_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.contains(".wdiff"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_replaces_a_mergeable_run_and_every_explicit_snapshot_still_restores() {
    let s = setup().await;
    let before: u64 = diffs(&s.op, VOL).await.iter().map(|d| d.size).sum();
    let r = merge(&s.op, 1, 10).await.unwrap();
    assert_eq!(r, Reply::Accepted);
    wait_num_action(&s.op, VOL, "Merge", 0).await;
    let d = diffs(&s.op, VOL).await;
    // 1->2, 2->3, 3->4 merged (2 and 3 implicit); 4->5 starts at explicit 4.
    assert_eq!(ranges(&d), vec![(0, 1), (1, 4), (4, 5)]);
    assert!(!d[1].mergeable, "the merged diff starts at explicit 1");
    let after: u64 = d.iter().map(|d| d.size).sum();
    assert!(
        after <= before,
        "merging saved nothing: {before} -> {after}"
    );
    let names = wdiff_files(&s.dir());
    assert_eq!(
        names.len(),
        3,
        "inputs deleted, nothing temporary: {names:?}"
    );
    assert!(temp_files(&s.dir()).is_empty());
    let points: Vec<u64> = restorable(&s.op, VOL, false)
        .await
        .iter()
        .filter_map(|p| p.gid)
        .collect();
    for g in [0, 1, 4, 5] {
        assert!(points.contains(&g), "explicit {g} lost: {points:?}");
    }
    assert_eq!(restored_bytes(&s.op, 4).await, s.expected(4));
    assert_eq!(restored_bytes(&s.op, 5).await, s.expected(5));

    // Refusals: a run of one diff, a volume that is not archived.
    let e = merge(&s.op, 4, 10).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    assert!(e.to_string().contains("at least two"), "{e}");
    let e = cmd(
        &s.op,
        Command::Merge {
            vol: "nope".into(),
            gid_b: 0,
            until: MergeUntil::SizeMib(10),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongState);
    s.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_moves_the_base_frees_the_diffs_and_later_snapshots_still_restore() {
    let s = setup().await;
    let r = apply(&s.op, 3).await.unwrap();
    assert_eq!(r, Reply::Accepted);
    wait_num_action(&s.op, VOL, "Apply", 0).await;
    assert_eq!(base_of(&s.op).await, (SnapDto { gid_b: 3, gid_e: 3 }, None));
    assert_eq!(ranges(&diffs(&s.op, VOL).await), vec![(3, 4), (4, 5)]);
    assert_eq!(wdiff_files(&s.dir()).len(), 2);
    assert_eq!(std::fs::read(s.base_image()).unwrap(), s.expected(3));
    let points: Vec<u64> = restorable(&s.op, VOL, true)
        .await
        .iter()
        .filter_map(|p| p.gid)
        .collect();
    assert!(
        !points.contains(&1),
        "1 is older than the base now: {points:?}"
    );
    assert_eq!(restored_bytes(&s.op, 5).await, s.expected(5));
    // Nothing left to apply up to 3.
    let e = apply(&s.op, 3).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    assert!(e.to_string().contains("no diff applies"), "{e}");
    s.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_cut_short_restores_correctly_refuses_merge_and_is_finished_by_the_next() {
    let Setup {
        _c: c,
        base,
        a,
        op,
        img,
        wdiffs,
        _nodes,
    } = setup().await;
    let dir = a.vol_dir(VOL);
    a.stop().await;
    // As if an apply of 0->1, 1->2 died after writing only the first diff: the base
    // image holds 0->1, the base state says <|0|-->|2|>.
    let s_img = apply_all(&img, &[&wdiffs[0]]);
    let bp = FileBackend::new(base.path(), false).base_path(VOL);
    std::fs::write(&bp, &s_img).unwrap();
    let applying = MetaState::new_applying(MetaSnap::clean(0), MetaSnap::clean(2), T0).unwrap();
    std::fs::write(dir.join(BASE_FILE), applying.to_bytes()).unwrap();

    let a = TestArchive::start(&c, opts(base.path())).await;
    let node = c.client(Role::Operator, "op");
    let op2 = node.connect(a.addr).await.unwrap();
    drop(op);
    let s = Setup {
        _c: c,
        base,
        a,
        op: op2,
        img,
        wdiffs,
        _nodes,
    };
    assert_eq!(
        base_of(&s.op).await,
        (
            SnapDto { gid_b: 0, gid_e: 0 },
            Some(SnapDto { gid_b: 2, gid_e: 2 })
        )
    );
    assert_eq!(restored_bytes(&s.op, 4).await, s.expected(4));
    let e = merge(&s.op, 2, 10).await.unwrap_err();
    assert!(e.to_string().contains("being applied"), "{e}");
    apply(&s.op, 4).await.unwrap();
    wait_num_action(&s.op, VOL, "Apply", 0).await;
    assert_eq!(base_of(&s.op).await, (SnapDto { gid_b: 4, gid_e: 4 }, None));
    assert_eq!(std::fs::read(s.base_image()).unwrap(), s.expected(4));
    assert_eq!(ranges(&diffs(&s.op, VOL).await), vec![(4, 5)]);
    drop(node);
    s.a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_grows_the_image_only() {
    let s = setup().await;
    let resize = |size_lb| Command::Resize {
        vol: VOL.into(),
        size_lb,
        zero_clear: false,
    };
    let e = cmd(&s.op, resize(SIZE_LB - 8)).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::BadRequest);
    assert!(e.to_string().contains("grow only"), "{e}");
    assert_eq!(cmd(&s.op, resize(SIZE_LB * 2)).await.unwrap(), Reply::Done);
    let img = std::fs::read(s.base_image()).unwrap();
    assert_eq!(img.len() as u64, SIZE_LB * 2 * 512);
    assert_eq!(&img[..s.img.len()], &s.img[..], "the old part is kept");
    assert!(
        img[s.img.len()..].iter().all(|&b| b == 0),
        "the new part reads as zeros"
    );
    // Snapshots from before still restore, at the new size (zeros past the old end).
    let mut want = s.expected(5);
    want.resize(img.len(), 0);
    assert_eq!(restored_bytes(&s.op, 5).await, want);
    let e = cmd(
        &s.op,
        Command::Resize {
            vol: "nope".into(),
            size_lb: 1 << 20,
            zero_clear: false,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongState);
    s.a.stop().await;
}
