//! Replication between two in-process archives over real QUIC: a first full copy, diff
//! rounds, a gid bound, a resync of another lineage, the refusals, and a failure that
//! leaves the destination as it was.

mod archive_support;

use archive_support::*;
use walb_kernel::wdiff::WdiffKind;
use walb_wire::msg::{MergeUntil, ReplicateCommand, SnapshotInfo, Subscribe};
use walb_wire::{Command, ErrorCode, Event, EventStream, Peer, Query, Reply, Role};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x3c; 16];
const T0: u64 = 1_700_000_000;
const SIZE_LB: u64 = 4096;

/// Two archives: `a0` (the source, with a full backup and diffs) and `a1`.
struct Two {
    c: Cluster,
    _b0: tempfile::TempDir,
    _b1: tempfile::TempDir,
    a0: TestArchive,
    a1: TestArchive,
    p0: Peers,
    op1: Peer,
    img: Vec<u8>,
    wdiffs: Vec<Vec<u8>>,
    _nodes: Vec<walb_wire::Node>,
}

impl Two {
    /// The image after the first `n` diffs.
    fn expected(&self, n: usize) -> Vec<u8> {
        let w: Vec<&[u8]> = self.wdiffs[..n].iter().map(Vec::as_slice).collect();
        apply_all(&self.img, &w)
    }

    /// Sends diff `i` (`|i|-->|i+1|`, explicit snapshots when `explicit`) to a0.
    async fn send(&mut self, i: usize, explicit: bool) {
        while self.wdiffs.len() <= i {
            let k = [WdiffKind::Sorted, WdiffKind::Indexed][self.wdiffs.len() % 2];
            let seed = 50 + self.wdiffs.len() as u64;
            self.wdiffs.push(make_wdiff(SIZE_LB, 192 << 10, seed, k));
        }
        let g = i as u64;
        let d = diff_dto(g, g + 1, !explicit, T0 + 10 * (g + 1));
        send_wdiff(&self.p0.px, VOL, UUID, SIZE_LB, d, &self.wdiffs[i])
            .await
            .unwrap();
    }

    fn repl(&self, until: MergeUntil, do_resync: bool, dont_merge: bool) -> Command {
        Command::Replicate(ReplicateCommand {
            vol: VOL.into(),
            until,
            dest: self.a1.addr.to_string(),
            dest_id: "a1".into(),
            do_resync,
            dont_merge,
            compress: None,
            merge_size_max: None,
            bulk_lb: Some(64),
        })
    }

    /// Runs a replication to its end; the source's failure message, if any.
    async fn replicate(&self, c: Command) -> Result<(), String> {
        let mut ev = self
            .p0
            .op
            .subscribe(Subscribe {
                vols: vec![VOL.into()],
            })
            .await
            .unwrap();
        let r = cmd(&self.p0.op, c).await.map_err(|e| e.to_string())?;
        assert_eq!(r, Reply::Accepted);
        wait_num_action(&self.p0.op, VOL, "ReplSyncAsClient", 0).await;
        failure(&mut ev).await
    }
}

/// The `replicate` failure published so far, if any (events already sent).
async fn failure(ev: &mut EventStream) -> Result<(), String> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_millis(300), ev.next()).await {
            Ok(Ok(Some(Event::Failed { op, error, .. }))) if op == "replicate" => {
                return Err(error)
            }
            Ok(Ok(Some(Event::Progress {
                op,
                done_lb,
                total_lb,
                ..
            }))) if op == "replicate" && total_lb == 1 && done_lb == 1 => return Ok(()),
            Ok(Ok(Some(_))) => {}
            _ => return Err("no end event".into()),
        }
    }
}

async fn two(name: &str, diffs: usize) -> Two {
    let c = Cluster::new(name);
    let (b0, b1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a0 = TestArchive::start(&c, opts(b0.path())).await;
    let a1 = TestArchive::start_as(&c, opts(b1.path()), "a1").await;
    let p0 = connect_all(&c, a0.addr).await;
    let n1 = c.client(Role::Operator, "op");
    let op1 = n1.connect(a1.addr).await.unwrap();
    init_vol(&p0.op, VOL).await;
    let img = make_image(SIZE_LB, 128, 5, 3);
    full_backup(&p0.st, VOL, &img, 128, UUID, 0, T0)
        .await
        .unwrap();
    wait_state(&p0.op, VOL, "Archived").await;
    let mut t = Two {
        c,
        _b0: b0,
        _b1: b1,
        a0,
        a1,
        p0,
        op1,
        img,
        wdiffs: Vec::new(),
        _nodes: vec![n1],
    };
    for i in 0..diffs {
        t.send(i, i % 2 == 1).await;
    }
    t
}

fn gids(v: &[SnapshotInfo]) -> Vec<u64> {
    v.iter().filter_map(|s| s.gid).collect()
}

async fn restored_bytes(p: &Peer, gid: u64) -> Vec<u8> {
    let path = restore(p, VOL, gid).await;
    let b = std::fs::read(&path).unwrap();
    cmd(
        p,
        Command::DelRestored {
            vol: VOL.into(),
            gid,
        },
    )
    .await
    .unwrap();
    b
}

async fn bhash(p: &Peer, gid: u64) -> Result<Reply, walb_wire::Error> {
    p.request(walb_wire::Request::Query(Query::BlockHash {
        vol: VOL.into(),
        gid,
    }))
    .await
}

async fn archive_uuid(p: &Peer) -> Reply {
    query(p, Query::ArchiveUuid { vol: VOL.into() }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_copy_then_diff_rounds_give_the_destination_the_same_snapshots_and_bytes() {
    let mut t = two("repl-full", 3).await;
    init_vol(&t.op1, VOL).await;
    t.replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap();
    assert_eq!(state(&t.op1, VOL).await, "Archived");
    assert_eq!(archive_uuid(&t.op1).await, archive_uuid(&t.p0.op).await);
    // Explicit snapshots stay restorable on the destination (the implicit ones may be
    // merged away in transit).
    let src = gids(&restorable(&t.p0.op, VOL, false).await);
    assert_eq!(gids(&restorable(&t.op1, VOL, false).await), src);
    assert_eq!(src.last(), Some(&3));
    // a0 tells where a1 stood after it (get ts-delta).
    let Reply::TsDelta(rows) = query(&t.p0.op, Query::TsDelta).await else {
        panic!("ts-delta")
    };
    let l: Vec<String> = rows.iter().map(|r| r.line()).collect();
    assert_eq!(l.len(), 1, "{l:?}");
    for f in ["name:vol0", "gid:3", "dest_gid:3", "ts_delta:0"] {
        assert!(l[0].split('\t').any(|x| x == f), "{f} in {l:?}");
    }
    let want = t.expected(3);
    // bhash: both archives hash their snapshot as the bytes it must hold.
    let mut h = walb_kernel::hash::Murmur3::new(0);
    h.update(&want);
    assert_eq!(bhash(&t.op1, 3).await.unwrap(), Reply::Hash(h.finish()));
    assert_eq!(bhash(&t.p0.op, 3).await.unwrap(), Reply::Hash(h.finish()));
    let e = bhash(&t.op1, 2).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound, "{e}");
    assert!(restored_bytes(&t.op1, 3).await == want, "gid 3 on a1");
    assert!(restored_bytes(&t.p0.op, 3).await == want, "gid 3 on a0");

    // Later diffs go as rounds (the destination stays Archived, its base unchanged).
    for i in 3..6 {
        t.send(i, false).await;
    }
    let before = query(
        &t.op1,
        Query::Base {
            vol: Some(VOL.into()),
        },
    )
    .await;
    t.replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap();
    assert_eq!(
        query(
            &t.op1,
            Query::Base {
                vol: Some(VOL.into())
            }
        )
        .await,
        before
    );
    assert_eq!(
        gids(&restorable(&t.op1, VOL, false).await),
        gids(&restorable(&t.p0.op, VOL, false).await)
    );
    // The three new diffs arrived merged as one.
    let d1 = diffs(&t.op1, VOL).await;
    assert_eq!(
        d1.last()
            .map(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b)),
        Some((3, 6))
    );
    let want = t.expected(6);
    assert!(restored_bytes(&t.op1, 6).await == want, "gid 6 on a1");
    assert!(temp_files(&t.a1.vol_dir(VOL)).is_empty());
    // Nothing new: a round that sends nothing.
    t.replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap();
    assert_eq!(diffs(&t.op1, VOL).await.len(), d1.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gid_bound_and_dont_merge_send_one_diff_per_round_up_to_that_gid() {
    let t = two("repl-gid", 5).await;
    init_vol(&t.op1, VOL).await;
    // The full copy's bulks go uncompressed this time.
    let mut cmd = t.repl(MergeUntil::Gid(3), false, true);
    if let Command::Replicate(r) = &mut cmd {
        r.compress = Some(walb_wire::msg::CompressOpt {
            codec: walb_wire::msg::Codec::None,
            level: 0,
            ncpu: 1,
        });
    }
    t.replicate(cmd).await.unwrap();
    let d = diffs(&t.op1, VOL).await;
    let ranges: Vec<(u64, u64)> = d
        .iter()
        .map(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b))
        .collect();
    assert_eq!(
        ranges,
        [(0, 1), (1, 2), (2, 3)],
        "one diff per round, to gid 3"
    );
    assert!(restored_bytes(&t.op1, 3).await == t.expected(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_reason_and_change_nothing() {
    let t = two("repl-refuse", 2).await;
    // The destination has no such volume.
    let e = cmd(&t.p0.op, t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound, "{e}");
    assert!(e.to_string().contains("init-vol"), "{e}");
    assert_eq!(
        query(
            &t.p0.op,
            Query::NumAction {
                vol: VOL.into(),
                action: "ReplSyncAsClient".into()
            }
        )
        .await,
        Reply::Number(0)
    );
    // Another lineage on the destination: refused without resync.
    init_vol(&t.op1, VOL).await;
    let st1 = t.c.client(Role::Storage, "s0");
    let st1 = st1.connect(t.a1.addr).await.unwrap();
    let other = make_image(SIZE_LB, 128, 7, 11);
    full_backup(&st1, VOL, &other, 128, [9; 16], 0, T0)
        .await
        .unwrap();
    wait_state(&t.op1, VOL, "Archived").await;
    let e = cmd(&t.p0.op, t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::DifferentUuid, "{e}");
    assert!(e.to_string().contains("resync"), "{e}");
    assert!(
        restored_bytes(&t.op1, 0).await == other,
        "a1 kept its own data"
    );
    // A source that is not archived.
    let e = cmd(
        &t.op1,
        Command::Replicate(ReplicateCommand {
            vol: "nosuch".into(),
            until: MergeUntil::SizeMib(0),
            dest: t.a0.addr.to_string(),
            dest_id: "a0".into(),
            do_resync: false,
            dont_merge: false,
            compress: None,
            merge_size_max: None,
            bulk_lb: None,
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongState, "{e}");

    // With resync the destination is rebuilt as the source's.
    t.replicate(t.repl(MergeUntil::SizeMib(0), true, false))
        .await
        .unwrap();
    assert_eq!(archive_uuid(&t.op1).await, archive_uuid(&t.p0.op).await);
    assert_eq!(
        gids(&restorable(&t.op1, VOL, false).await),
        gids(&restorable(&t.p0.op, VOL, false).await)
    );
    assert!(restored_bytes(&t.op1, 2).await == t.expected(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_diff_at_the_source_fails_the_round_and_the_destination_keeps_what_it_had() {
    let mut t = two("repl-corrupt", 2).await;
    init_vol(&t.op1, VOL).await;
    t.replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap();
    let have = diffs(&t.op1, VOL).await;
    t.send(2, true).await;
    // Damage the new diff's data on a0 (its header stays readable).
    let dir = t.a0.vol_dir(VOL);
    let f = files(&dir)
        .into_iter()
        .find(|n| n.contains("-2-3"))
        .expect("diff 2-3 on a0");
    let p = dir.join(f);
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    for x in &mut b[n / 2..n / 2 + 64] {
        *x ^= 0x5a;
    }
    std::fs::write(&p, &b).unwrap();
    let e = t
        .replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap_err();
    assert!(e.contains("replicate"), "{e}");
    assert_eq!(state(&t.op1, VOL).await, "Archived");
    assert_eq!(diffs(&t.op1, VOL).await, have);
    assert!(temp_files(&t.a1.vol_dir(VOL)).is_empty());
    assert!(restored_bytes(&t.op1, 2).await == t.expected(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_behind_the_applied_base_gets_a_hash_round_then_diffs() {
    let mut t = two("repl-hash", 2).await;
    init_vol(&t.op1, VOL).await;
    t.replicate(t.repl(MergeUntil::Gid(1), false, true))
        .await
        .unwrap();
    assert!(restored_bytes(&t.op1, 1).await == t.expected(1));
    // a0 applies past a1's snapshot: the diffs a1 would need are gone.
    t.send(2, true).await;
    let r = cmd(
        &t.p0.op,
        Command::Apply {
            vol: VOL.into(),
            gid: 3,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Reply::Accepted);
    wait_num_action(&t.p0.op, VOL, "Apply", 0).await;
    assert!(
        diffs(&t.p0.op, VOL).await.is_empty(),
        "a0 applied everything"
    );
    t.send(3, true).await;

    t.replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap();
    let d = diffs(&t.op1, VOL).await;
    let comp: Vec<_> = d
        .iter()
        .filter(|d| d.comp_diff)
        .map(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b))
        .collect();
    assert_eq!(
        comp,
        [(1, 3)],
        "a compared diff from a1's snapshot to a0's base"
    );
    assert_eq!(
        d.last()
            .map(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b)),
        Some((3, 4)),
        "then the diff after it"
    );
    assert!(
        restored_bytes(&t.op1, 3).await == t.expected(3),
        "gid 3 on a1"
    );
    assert!(
        restored_bytes(&t.op1, 4).await == t.expected(4),
        "gid 4 on a1"
    );
    assert!(temp_files(&t.a1.vol_dir(VOL)).is_empty());
}

/// A source that breaks off half-way through a full copy to the archive at `dest`: a
/// node with an archive's certificate speaking the protocol with a0's lineage and base.
/// Returns where it broke (blocks), once `op` (an operator of `dest`) sees it SyncReady.
async fn break_off_half_way(t: &Two, dest: std::net::SocketAddr, op: &Peer) -> u64 {
    use walb_wire::msg::{ReplKind, ReplSync};
    use walb_wire::{Request, Step};
    if !t.c.files(Role::Archive, "a9").cert.exists() {
        t.c.issue(Role::Archive, "a9");
    }
    let n9 = t.c.client(Role::Archive, "a9");
    bind(
        op,
        VOL,
        walb_wire::msg::PeerRole::Archive,
        &["a9"],
        walb_wire::msg::BindHow::Add,
    )
    .await
    .unwrap();
    let src = n9.connect(dest).await.unwrap();
    let Reply::Uuid(au) = archive_uuid(&t.p0.op).await else {
        panic!("archive uuid")
    };
    let Reply::MetaState(base) = query(
        &t.p0.op,
        Query::Base {
            vol: Some(VOL.into()),
        },
    )
    .await
    else {
        panic!("base")
    };
    let mut call = src
        .call(Request::Replicate(ReplSync {
            vol: VOL.into(),
            archive_uuid: au,
            do_resync: false,
        }))
        .await
        .unwrap();
    assert_eq!(call.receiver.reply().await.unwrap(), Reply::Accepted);
    assert_eq!(
        call.receiver.step().await.unwrap(),
        Step::ReplKind(ReplKind::Full)
    );
    call.sender
        .step(Step::ReplFull {
            size_lb: SIZE_LB,
            bulk_lb: 64,
            base,
            uuid: UUID,
        })
        .await
        .unwrap();
    assert_eq!(call.receiver.step().await.unwrap(), Step::StartLb(0));
    let half = SIZE_LB / 2;
    for c in t.img[..half as usize * LB].chunks(64 * LB) {
        if c.iter().all(|&b| b == 0) {
            call.sender.step(Step::Zero { len_lb: 64 }).await.unwrap();
        } else {
            call.sender.chunk(c).await.unwrap();
        }
    }
    // Once the destination has it all, the source goes away.
    let t0 = std::time::Instant::now();
    while query(op, Query::Progress { vol: VOL.into() }).await != Reply::Number(half) {
        assert!(
            t0.elapsed() < LIMIT,
            "the destination did not receive half the image"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    call.sender.reset();
    drop(call);
    wait_state(op, VOL, "SyncReady").await;
    half
}

/// The first `replicate` progress `op`'s archive publishes.
async fn first_progress(ev: &mut EventStream) -> u64 {
    loop {
        match ev.next().await.unwrap() {
            Some(Event::Progress { op, done_lb, .. }) if op == "replicate" => return done_lb,
            Some(_) => {}
            None => panic!("no progress from the destination"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_full_copy_resumes_where_it_broke() {
    let t = two("repl-resume", 1).await;
    init_vol(&t.op1, VOL).await;
    let half = break_off_half_way(&t, t.a1.addr, &t.op1).await;
    // The real source: the copy resumes at the half.
    let mut ev = t
        .op1
        .subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await
        .unwrap();
    t.replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap();
    assert_eq!(
        first_progress(&mut ev).await,
        half,
        "the copy resumed where it broke"
    );
    assert!(restored_bytes(&t.op1, 1).await == t.expected(1));
    assert!(!t.a1.vol_dir(VOL).join("full_repl_state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_full_copy_resumes_after_the_destination_restarts() {
    let t = two("repl-resume-restart", 1).await;
    // A third archive, restarted between the break and the next replication.
    let b2 = tempfile::tempdir().unwrap();
    let a2 = TestArchive::start_as(&t.c, opts(b2.path()), "a2").await;
    let n = t.c.client(Role::Operator, "op");
    let op2 = n.connect(a2.addr).await.unwrap();
    init_vol(&op2, VOL).await;
    let half = break_off_half_way(&t, a2.addr, &op2).await;
    a2.stop().await;
    let a2 = TestArchive::start_as(&t.c, opts(b2.path()), "a2").await;
    let op2 = n.connect(a2.addr).await.unwrap();
    assert_eq!(state(&op2, VOL).await, "SyncReady");
    let mut ev = op2
        .subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await
        .unwrap();
    let mut cmd = t.repl(MergeUntil::SizeMib(0), false, false);
    if let Command::Replicate(r) = &mut cmd {
        r.dest = a2.addr.to_string();
        r.dest_id = "a2".into();
    }
    t.replicate(cmd).await.unwrap();
    assert_eq!(
        first_progress(&mut ev).await,
        half,
        "the copy resumed after the restart"
    );
    assert!(restored_bytes(&op2, 1).await == t.expected(1));
    assert!(!a2.vol_dir(VOL).join("full_repl_state").exists());
    a2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_levels_a_diverged_replica_with_the_source() {
    let mut t = two("repl-resync", 2).await;
    init_vol(&t.op1, VOL).await;
    t.replicate(t.repl(MergeUntil::SizeMib(0), false, false))
        .await
        .unwrap();
    // a1 takes a diff a0 never had (it diverged).
    let n = t.c.client(Role::Proxy, "p0");
    let px1 = n.connect(t.a1.addr).await.unwrap();
    let stray = make_wdiff(SIZE_LB, 256 << 10, 999, WdiffKind::Sorted);
    send_wdiff(
        &px1,
        VOL,
        UUID,
        SIZE_LB,
        diff_dto(2, 3, false, T0 + 99),
        &stray,
    )
    .await
    .unwrap();
    assert_eq!(gids(&restorable(&t.op1, VOL, true).await).last(), Some(&3));
    // A later diff of a0 then goes on top of a0's 2, which a1 no longer is at.
    t.send(2, true).await;
    t.replicate(t.repl(MergeUntil::SizeMib(0), true, false))
        .await
        .unwrap();
    assert_eq!(
        gids(&restorable(&t.op1, VOL, true).await),
        gids(&restorable(&t.p0.op, VOL, true).await)
    );
    assert_eq!(archive_uuid(&t.op1).await, archive_uuid(&t.p0.op).await);
    assert!(
        restored_bytes(&t.op1, 3).await == t.expected(3),
        "a0's 3, not the stray one"
    );
    assert!(temp_files(&t.a1.vol_dir(VOL)).is_empty());
}
