//! Retention over a virtual day: an in-process archive on a virtual clock receives one
//! diff every `WALB_RET_EVERY_S` seconds (default 60; 10 for the numbers in the report,
//! about 5 minutes) for `WALB_RET_DAY_S` seconds (default a day), one snapshot in
//! `WALB_RET_EXPLICIT` explicit (default 3), with the default retention on and off
//! (about a minute with the defaults).
//! It prints the diff count (peak and at the end), the disk used, and the time to restore
//! the newest and the oldest restorable snapshot; it checks that, on, the count never
//! passes the bound the defaults give and that both snapshots restore to the bytes
//! expected, and that, off, every diff stays.

mod archive_support;

use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use archive_support::*;
use walb_daemon::archive::retention::Retention;
use walb_daemon::clock::Clock;
use walb_daemon::opts::ArchiveOpts;
use walb_kernel::wdiff::WdiffKind;
use walb_wire::msg::RetentionReport;
use walb_wire::{Query, Reply};

const VOL: &str = "vol0";
const UUID: [u8; 16] = [0x5e; 16];
/// Midnight (UTC) of day 20000.
const START: u64 = 20_000 * 86_400;
/// 4 MiB.
const SIZE_LB: u64 = 8192;
/// Data of one diff.
const DIFF_BYTES: u64 = 4096;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes allocated under `dir` (sparse files count what they hold).
fn disk_used(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        total += if m.is_dir() {
            disk_used(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

async fn report(p: &walb_wire::Peer) -> RetentionReport {
    match query(p, Query::Retention { vol: VOL.into() }).await {
        Reply::Retention(r) => r,
        r => panic!("retention: {r:?}"),
    }
}

/// An archive on `clock` with the volume initialized and fully backed up at `START`:
/// the archive, the peers, the image.
async fn backed_up(c: &Cluster, o: ArchiveOpts, clock: Clock) -> (TestArchive, Peers, Vec<u8>) {
    let a0 = TestArchive::start_clocked(c, o, "a0", clock).await;
    let p = connect_all(c, a0.addr).await;
    init_vol(&p.op, VOL).await;
    let img = make_image(SIZE_LB, 128, 4, 5);
    full_backup(&p.st, VOL, &img, 128, UUID, 0, START)
        .await
        .unwrap();
    wait_state(&p.op, VOL, "Archived").await;
    (a0, p, img)
}

/// What one run measured.
#[derive(Debug)]
struct Measured {
    diffs_sent: u64,
    peak: usize,
    at_end: usize,
    disk_mb: f64,
    newest: (u64, Duration),
    oldest: (u64, Duration),
    real: Duration,
}

async fn run(on: bool, day_s: u64, every_s: u64, explicit_every: u64) -> Measured {
    let c = Cluster::new("retention-day");
    let b0 = tempfile::tempdir().unwrap();
    let (clock, hand) = Clock::manual(UNIX_EPOCH + Duration::from_secs(START));
    let mut o = opts(b0.path());
    o.retention = if on { "on" } else { "off" }.into();
    o.policy_tick_s = every_s;
    o.max_open = 256;
    let (a0, p, img) = backed_up(&c, o, clock.clone()).await;
    let vol = a0.archive.vol(VOL).expect("the volume");
    let real = Instant::now();
    let steps = day_s / every_s;
    let mut wdiffs = Vec::new();
    let mut peak = 0;
    for i in 0..steps {
        // Virtual time moves; the policy makes its decision, whose task runs in real time.
        let n = hand.sleeps_begun();
        hand.advance(Duration::from_secs(every_s));
        slept_again(&hand, n).await;
        let t0 = Instant::now();
        while !vol.core.actions().is_idle() {
            assert!(t0.elapsed() < LIMIT, "a retention step never ended");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The next diff, stamped now; the snapshot it leaves is explicit every
        // `explicit_every` snapshots (the full backup's too).
        let w = make_wdiff(SIZE_LB, DIFF_BYTES, 1000 + i, WdiffKind::Sorted);
        let explicit = i % explicit_every == 0;
        let d = diff_dto(i, i + 1, !explicit, clock.now_s());
        send_wdiff(&p.px, VOL, UUID, SIZE_LB, d, &w).await.unwrap();
        wdiffs.push(w);
        peak = peak.max(vol.meta().diffs.len());
    }
    let real = real.elapsed();
    let r = report(&p.op).await;
    let at_end = vol.meta().diffs.len();
    let disk_mb = disk_used(b0.path()) as f64 / (1 << 20) as f64;
    let oldest = r.points.first().map_or(0, |pt| pt.gid);
    let mut timed = Vec::new();
    for gid in [steps, oldest] {
        let t0 = Instant::now();
        let path = restore(&p.op, VOL, gid).await;
        let took = t0.elapsed();
        let w: Vec<&[u8]> = wdiffs[..gid as usize].iter().map(Vec::as_slice).collect();
        assert!(
            std::fs::read(&path).unwrap() == apply_all(&img, &w),
            "snapshot {gid} restores to other bytes"
        );
        cmd(
            &p.op,
            walb_wire::Command::DelRestored {
                vol: VOL.into(),
                gid,
            },
        )
        .await
        .unwrap();
        timed.push((gid, took));
    }
    if on {
        let bound = r.bound.expect("a bound");
        // The bound of the defaults with the diffs of two minutes (both ends counted) in
        // its window.
        let want = Retention::default().bound(120 / every_s + 1, 0, 0).unwrap();
        assert!(bound <= want, "reported bound {bound} > {want}");
        assert!(peak as u64 <= want, "{peak} diffs > the bound {want}");
    } else {
        assert_eq!(at_end as u64, steps, "retention off merged diffs");
    }
    a0.stop().await;
    Measured {
        diffs_sent: steps,
        peak,
        at_end,
        disk_mb,
        newest: timed[0],
        oldest: timed[1],
        real,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_day_with_retention_on_and_off() {
    let day_s = env_u64("WALB_RET_DAY_S", 86_400);
    let every_s = env_u64("WALB_RET_EVERY_S", 60).max(1);
    let explicit = env_u64("WALB_RET_EXPLICIT", 3).max(1);
    for on in [true, false] {
        let m = run(on, day_s, every_s, explicit).await;
        eprintln!(
            "retention {}: {} s of virtual time, a diff every {every_s} s ({} sent, one \
             snapshot in {explicit} explicit) in {:?}: peak {} diffs, {} at the end, {:.1} MiB \
             on disk; restore newest (gid {}) {:?}, oldest restorable (gid {}) {:?}",
            if on { "on" } else { "off" },
            day_s,
            m.diffs_sent,
            m.real,
            m.peak,
            m.at_end,
            m.disk_mb,
            m.newest.0,
            m.newest.1,
            m.oldest.0,
            m.oldest.1,
        );
    }
}

/// The base's snapshot gid.
async fn base_gid(p: &walb_wire::Peer) -> u64 {
    match query(
        p,
        Query::Base {
            vol: Some(VOL.into()),
        },
    )
    .await
    {
        Reply::MetaState(s) => s.snap_b.gid_b,
        r => panic!("base: {r:?}"),
    }
}

/// A retention pass cut short by a crash in its apply (the base persisted as being
/// applied) is finished at the next start, and the pass goes on from what is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_cut_short_is_finished_by_the_next() {
    let c = Cluster::new("retention-crash");
    let b0 = tempfile::tempdir().unwrap();
    // Six diffs a minute apart, two days before the clock: only the newest is kept.
    let (clock, hand) = Clock::manual(UNIX_EPOCH + Duration::from_secs(START + 2 * 86_400));
    let mut o = opts(b0.path());
    o.policy_tick_s = 60;
    let (a0, p, img) = backed_up(&c, o.clone(), clock.clone()).await;
    let mut wdiffs = Vec::new();
    for i in 0..6u64 {
        let w = make_wdiff(SIZE_LB, DIFF_BYTES, 70 + i, WdiffKind::Sorted);
        let d = diff_dto(i, i + 1, i > 0, START + 60 * (i + 1));
        send_wdiff(&p.px, VOL, UUID, SIZE_LB, d, &w).await.unwrap();
        wdiffs.push(w);
    }
    let dir = a0.vol_dir(VOL);
    drop(p);
    a0.stop().await;
    // The crash: a pass's apply up to 3 had persisted `<|0|-->|3|>` and written nothing.
    let applying = walb_kernel::meta::MetaState::new_applying(
        walb_kernel::meta::MetaSnap::clean(0),
        walb_kernel::meta::MetaSnap::clean(3),
        START,
    )
    .unwrap();
    std::fs::write(
        dir.join(walb_daemon::archive::vol::BASE_FILE),
        applying.to_bytes(),
    )
    .unwrap();
    o.retention = "on".into();
    let a0 = TestArchive::start_clocked(&c, o, "a0", clock.clone()).await;
    let p = connect_all(&c, a0.addr).await;
    let vol = a0.archive.vol(VOL).expect("the volume");
    let mut bases = Vec::new();
    for _ in 0..6 {
        let n = hand.sleeps_begun();
        hand.advance(Duration::from_secs(60));
        slept_again(&hand, n).await;
        let t0 = Instant::now();
        while !vol.core.actions().is_idle() {
            assert!(t0.elapsed() < LIMIT, "a step never ended");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bases.push(base_gid(&p.op).await);
    }
    // First the interrupted apply to 3, then the pass's own apply to the newest.
    assert_eq!(&bases[..2], &[3, 6], "bases tick by tick: {bases:?}");
    assert!(diffs(&p.op, VOL).await.is_empty());
    let r = report(&p.op).await;
    assert!(r.apply_to.is_none() && r.merges.is_empty(), "{r:?}");
    let w: Vec<&[u8]> = wdiffs.iter().map(Vec::as_slice).collect();
    let path = restore(&p.op, VOL, 6).await;
    assert!(std::fs::read(path).unwrap() == apply_all(&img, &w));
    a0.stop().await;
}
