//! Retention over a virtual day: an in-process archive on a virtual clock receives one
//! diff every `WALB_RET_EVERY_MS` milliseconds of virtual time for `WALB_RET_DAY_S`
//! seconds, one snapshot in `WALB_RET_EXPLICIT` explicit, with the default retention on
//! and off (`WALB_RET_MODES`, `on,off`), its policy looking every second (or every
//! interval, if longer). Each diff is `WALB_RET_DIFF_KB` KiB of writes of 0.5-32 KiB
//! (`WALB_RET_DATA`: `compressible`, or `random` for 4-32 KiB writes of random data) over
//! a volume of `WALB_RET_VOL_MB` MiB.
//!
//! The defaults (a diff a minute, a day: 1,440 diffs, 4 KiB over 4 MiB, 1 in 3 explicit)
//! take about a minute. The soak's rate (a writer at 100 IOPS, a snapshot every 30 s,
//! about 80 diffs a minute):
//! - a day of small diffs: `WALB_RET_EVERY_MS=750 WALB_RET_EXPLICIT=40 WALB_RET_DIFF_KB=32
//!   WALB_RET_DATA=random` (115,200 diffs);
//! - the soak's data rate (3.5 MB/s, 2.6 MB a diff) for as long as the disk allows:
//!   `WALB_RET_EVERY_MS=750 WALB_RET_EXPLICIT=40 WALB_RET_DIFF_KB=2600 WALB_RET_DATA=random
//!   WALB_RET_VOL_MB=256 WALB_RET_DAY_S=600`.
//!
//! It prints the diff count (peak and at the end), the disk used, the time to restore the
//! newest and the oldest restorable snapshot, the wall time and the process's CPU time
//! per diff admitted (the in-process sender's share included) and per policy look (the
//! retention pass's planning and its step, if any); it checks that, on, the count never
//! passes the bound the defaults give and that both snapshots restore to the bytes
//! expected (the diffs are made again from their seeds to compute them), and that, off,
//! every diff stays.
//!
//! The other tests: a pass cut short by a crash in its apply, or in its merge, is
//! finished or cleaned with no snapshot lost; a corrupt `retention` file stops the
//! volume's retention and says why. The whole binary takes about a minute (debug build).

mod archive_support;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use archive_support::*;
use walb_daemon::archive::retention::{self, Retention};
use walb_daemon::archive::vol::ArchiveVol;
use walb_daemon::clock::{Clock, ManualClock};
use walb_daemon::opts::ArchiveOpts;
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::gen::DataKind;
use walb_kernel::wdiff::{WdiffKind, WdiffReader};
use walb_wire::msg::{RetentionReport, RetentionSet, Subscribe};
use walb_wire::{Command, Event, Query, Reply, Request};

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

/// CPU time (user and system) of this process so far.
fn cpu() -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given; it is zeroed, so valid either way.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

async fn report(p: &walb_wire::Peer) -> RetentionReport {
    match query(p, Query::Retention { vol: VOL.into() }).await {
        Reply::Retention(r) => r,
        r => panic!("retention: {r:?}"),
    }
}

/// An archive on `clock` with a volume of `size_lb` initialized and fully backed up at
/// `START`: the archive, the peers, the image.
async fn backed_up_lb(
    c: &Cluster,
    o: ArchiveOpts,
    clock: Clock,
    size_lb: u64,
) -> (TestArchive, Peers, Vec<u8>) {
    let a0 = TestArchive::start_clocked(c, o, "a0", clock).await;
    let p = connect_all(c, a0.addr).await;
    init_vol(&p.op, VOL).await;
    let img = make_image(size_lb, 128, 4, 5);
    full_backup(&p.st, VOL, &img, 128, UUID, 0, START)
        .await
        .unwrap();
    wait_state(&p.op, VOL, "Archived").await;
    (a0, p, img)
}

/// [`backed_up_lb`] with the 4 MiB volume.
async fn backed_up(c: &Cluster, o: ArchiveOpts, clock: Clock) -> (TestArchive, Peers, Vec<u8>) {
    backed_up_lb(c, o, clock, SIZE_LB).await
}

/// What a run does (see the module documentation).
#[derive(Debug, Clone, Copy)]
struct Setup {
    on: bool,
    day_s: u64,
    every_ms: u64,
    explicit_every: u64,
    size_lb: u64,
    diff_bytes: u64,
    random: bool,
}

impl Setup {
    fn from_env(on: bool) -> Setup {
        Setup {
            on,
            day_s: env_u64("WALB_RET_DAY_S", 86_400),
            every_ms: env_u64("WALB_RET_EVERY_MS", 60_000).max(1),
            explicit_every: env_u64("WALB_RET_EXPLICIT", 3).max(1),
            size_lb: env_u64("WALB_RET_VOL_MB", SIZE_LB / 2048).max(1) * 2048,
            diff_bytes: env_u64("WALB_RET_DIFF_KB", DIFF_BYTES / 1024).max(1) * 1024,
            random: std::env::var("WALB_RET_DATA").is_ok_and(|v| v == "random"),
        }
    }

    fn steps(&self) -> u64 {
        self.day_s * 1000 / self.every_ms
    }

    /// The `i`th diff (made again from its seed when the expected images are computed).
    fn wdiff(&self, i: u64) -> Vec<u8> {
        if self.random {
            make_wdiff_of(
                self.size_lb,
                self.diff_bytes,
                1000 + i,
                DataKind::Random,
                (8, 64),
            )
        } else {
            make_wdiff(self.size_lb, self.diff_bytes, 1000 + i, WdiffKind::Sorted)
        }
    }

    /// `img` at each of `gids` (ascending): the first `gid` diffs applied.
    fn images_at(&self, img: &[u8], gids: &[u64]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut redo = Redo::new(img.to_vec(), DiscardPolicy::Zero).unwrap();
        let mut done = 0;
        for &gid in gids {
            while done < gid {
                let w = self.wdiff(done);
                for io in WdiffReader::new(std::io::Cursor::new(w)).unwrap() {
                    redo.apply_io(&io.unwrap()).unwrap();
                }
                done += 1;
            }
            let now = redo.finish().unwrap().0;
            redo = Redo::new(now.clone(), DiscardPolicy::Zero).unwrap();
            out.push(now);
        }
        out
    }
}

/// Whether the file at `path` holds exactly `want`.
fn file_is(path: &Path, want: &[u8]) -> bool {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return at == want.len();
        }
        if at + n > want.len() || buf[..n] != want[at..at + n] {
            return false;
        }
        at += n;
    }
}

/// What one run measured.
#[derive(Debug)]
struct Measured {
    diffs_sent: u64,
    peak: usize,
    at_end: usize,
    bound: Option<u64>,
    disk_mb: f64,
    newest: (u64, Duration),
    oldest: (u64, Duration),
    real: Duration,
    /// CPU per diff admitted, per policy look; looks.
    cpu_diff: Duration,
    cpu_look: Duration,
    looks: u64,
    /// Wall time making the diffs, sending them, and in the policy's looks.
    wall_make: Duration,
    wall_send: Duration,
    wall_look: Duration,
    /// At the end, what admitting a diff costs per diff held: the walk of the chain to
    /// the latest snapshot, and the diff list published after it.
    walk: Duration,
    list: Duration,
}

async fn run(s: Setup) -> Measured {
    let c = Cluster::new("retention-day");
    let b0 = tempfile::tempdir().unwrap();
    let (clock, hand) = Clock::manual(UNIX_EPOCH + Duration::from_secs(START));
    let mut o = opts(b0.path());
    o.retention = if s.on { "on" } else { "off" }.into();
    o.policy_tick_s = (s.every_ms / 1000).max(1);
    o.max_open = 256;
    let tick_ms = o.policy_tick_s * 1000;
    let (a0, p, img) = backed_up_lb(&c, o, clock.clone(), s.size_lb).await;
    let vol = a0.archive.vol(VOL).expect("the volume");
    let real = Instant::now();
    let steps = s.steps();
    let every = Duration::from_millis(s.every_ms);
    let (mut peak, mut virt_ms, mut next_look) = (0, 0, tick_ms);
    let (mut cpu_diffs, mut cpu_looks, mut looks) = (Duration::ZERO, Duration::ZERO, 0);
    let (mut wall_make, mut wall_send, mut wall_look) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for i in 0..steps {
        // Virtual time moves; when the policy's tick is due, it makes its decision, whose
        // task runs in real time.
        let n = hand.sleeps_begun();
        hand.advance(every);
        virt_ms += s.every_ms;
        if virt_ms >= next_look {
            let (c0, w0) = (cpu(), Instant::now());
            slept_again(&hand, n).await;
            let t0 = Instant::now();
            while !vol.core.actions().is_idle() {
                assert!(t0.elapsed() < LIMIT, "a retention step never ended");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            cpu_looks += cpu() - c0;
            wall_look += w0.elapsed();
            looks += 1;
            next_look = virt_ms + tick_ms;
        }
        // The next diff, stamped now; the snapshot it leaves is explicit every
        // `explicit_every` snapshots (the full backup's too).
        let w0 = Instant::now();
        let w = s.wdiff(i);
        wall_make += w0.elapsed();
        let explicit = i % s.explicit_every == 0;
        let d = diff_dto(i, i + 1, !explicit, clock.now_s());
        let (c0, w0) = (cpu(), Instant::now());
        send_wdiff(&p.px, VOL, UUID, s.size_lb, d, &w)
            .await
            .unwrap();
        cpu_diffs += cpu() - c0;
        wall_send += w0.elapsed();
        peak = peak.max(vol.meta().diffs.len());
    }
    let real = real.elapsed();
    let (walk, list) = {
        let m = vol.meta();
        let t0 = Instant::now();
        std::hint::black_box(m.latest_snapshot());
        let walk = t0.elapsed();
        let t0 = Instant::now();
        let l: Vec<_> = m.diffs.iter().map(walb_daemon::dto::diff_to_dto).collect();
        std::hint::black_box(l);
        (walk, t0.elapsed())
    };
    let r = report(&p.op).await;
    let at_end = vol.meta().diffs.len();
    let disk_mb = disk_used(b0.path()) as f64 / (1 << 20) as f64;
    let oldest = r.points.first().map_or(0, |pt| pt.gid);
    let want = s.images_at(&img, &[oldest, steps]);
    let mut timed = Vec::new();
    for (gid, want) in [(steps, &want[1]), (oldest, &want[0])] {
        let t0 = Instant::now();
        let path = restore(&p.op, VOL, gid).await;
        let took = t0.elapsed();
        assert!(
            file_is(&path, want),
            "snapshot {gid} restores to other bytes"
        );
        cmd(
            &p.op,
            Command::DelRestored {
                vol: VOL.into(),
                gid,
            },
        )
        .await
        .unwrap();
        timed.push((gid, took));
    }
    if s.on {
        let bound = r.bound.expect("a bound");
        // The bound of the defaults with the diffs of two minutes (both ends counted) in
        // its window.
        let want = Retention::default()
            .bound(120_000 / s.every_ms + 1, 0, 0)
            .unwrap();
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
        bound: r.bound,
        disk_mb,
        newest: timed[0],
        oldest: timed[1],
        real,
        cpu_diff: cpu_diffs / steps.max(1) as u32,
        cpu_look: cpu_looks / looks.max(1) as u32,
        looks,
        wall_make,
        wall_send,
        wall_look,
        walk,
        list,
    }
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_day_with_retention_on_and_off() {
    let modes = std::env::var("WALB_RET_MODES").unwrap_or_else(|_| "on,off".into());
    for on in [true, false] {
        if !modes
            .split(',')
            .any(|m| m.trim() == if on { "on" } else { "off" })
        {
            continue;
        }
        let s = Setup::from_env(on);
        let m = run(s).await;
        eprintln!(
            "retention {}: {} s of virtual time, a diff every {} ms ({} sent, {} KiB of {} \
             data each over {} MiB, one snapshot in {} explicit) in {:?} (load {}): peak {} \
             diffs, {} at the end (bound {:?}), {:.1} MiB on disk; restore newest (gid {}) \
             {:?}, oldest restorable (gid {}) {:?}; CPU {:?} per diff admitted, {:?} per \
             policy look ({} looks); wall: {:?} making the diffs, {:?} sending them, {:?} \
             in the looks; at the end, per diff admitted: {:?} walking the chain, {:?} \
             listing the diffs",
            if on { "on" } else { "off" },
            s.day_s,
            s.every_ms,
            m.diffs_sent,
            s.diff_bytes / 1024,
            if s.random { "random" } else { "compressible" },
            s.size_lb / 2048,
            s.explicit_every,
            m.real,
            load_avg(),
            m.peak,
            m.at_end,
            m.bound,
            m.disk_mb,
            m.newest.0,
            m.newest.1,
            m.oldest.0,
            m.oldest.1,
            m.cpu_diff,
            m.cpu_look,
            m.looks,
            m.wall_make,
            m.wall_send,
            m.wall_look,
            m.walk,
            m.list,
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

/// Moves `hand` one policy tick of `tick_s` on and waits until the policy looked and
/// what it started on `vol` ended.
async fn look(hand: &ManualClock, vol: &ArchiveVol, tick_s: u64) {
    let n = hand.sleeps_begun();
    hand.advance(Duration::from_secs(tick_s));
    slept_again(hand, n).await;
    let t0 = Instant::now();
    while !vol.core.actions().is_idle() {
        assert!(t0.elapsed() < LIMIT, "a step never ended");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A stopped archive (a tick a minute) whose volume holds six diffs a minute apart, two
/// days before the clock (only the newest is kept once retention is on).
struct SixOld {
    c: Cluster,
    _b0: tempfile::TempDir,
    o: ArchiveOpts,
    clock: Clock,
    hand: ManualClock,
    dir: std::path::PathBuf,
    img: Vec<u8>,
    wdiffs: Vec<Vec<u8>>,
}

async fn six_old_diffs(name: &str) -> SixOld {
    let c = Cluster::new(name);
    let b0 = tempfile::tempdir().unwrap();
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
    SixOld {
        c,
        _b0: b0,
        o,
        clock,
        hand,
        dir,
        img,
        wdiffs,
    }
}

impl SixOld {
    /// The archive started again with retention on: it, its peers and the volume.
    async fn restart(&self) -> (TestArchive, Peers, Arc<ArchiveVol>) {
        let mut o = self.o.clone();
        o.retention = "on".into();
        let a0 = TestArchive::start_clocked(&self.c, o, "a0", self.clock.clone()).await;
        let p = connect_all(&self.c, a0.addr).await;
        let vol = a0.archive.vol(VOL).expect("the volume");
        (a0, p, vol)
    }

    /// Checks that no pass step is left and that each of `gids` restores to its bytes.
    async fn passed_and_restores(&self, p: &walb_wire::Peer, gids: &[u64]) {
        let r = report(p).await;
        assert!(r.apply_to.is_none() && r.merges.is_empty(), "{r:?}");
        for &gid in gids {
            restores_to(p, gid, &self.img, &self.wdiffs).await;
        }
    }
}

/// The volume's diffs as `(gid_b of its start, gid_b of its end)`.
async fn gid_pairs(p: &walb_wire::Peer) -> Vec<(u64, u64)> {
    diffs(p, VOL)
        .await
        .iter()
        .map(|d| (d.range.snap_b.gid_b, d.range.snap_e.gid_b))
        .collect()
}

/// Restores `gid` and checks it holds `img` with the first `gid` of `wdiffs` applied.
async fn restores_to(p: &walb_wire::Peer, gid: u64, img: &[u8], wdiffs: &[Vec<u8>]) {
    let w: Vec<&[u8]> = wdiffs[..gid as usize].iter().map(Vec::as_slice).collect();
    let path = restore(p, VOL, gid).await;
    assert!(
        std::fs::read(path).unwrap() == apply_all(img, &w),
        "snapshot {gid} restores to other bytes"
    );
}

/// A retention pass cut short by a crash in its apply (the base persisted as being
/// applied) is finished at the next start, and the pass goes on from what is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_cut_short_is_finished_by_the_next() {
    let six = six_old_diffs("retention-crash").await;
    // The crash: a pass's apply up to 3 had persisted `<|0|-->|3|>` and written nothing.
    let applying = walb_kernel::meta::MetaState::new_applying(
        walb_kernel::meta::MetaSnap::clean(0),
        walb_kernel::meta::MetaSnap::clean(3),
        START,
    )
    .unwrap();
    std::fs::write(
        six.dir.join(walb_daemon::archive::vol::BASE_FILE),
        applying.to_bytes(),
    )
    .unwrap();
    let (a0, p, vol) = six.restart().await;
    let mut bases = Vec::new();
    for _ in 0..6 {
        look(&six.hand, &vol, 60).await;
        bases.push(base_gid(&p.op).await);
    }
    // First the interrupted apply to 3, then the pass's own apply to the newest.
    assert_eq!(&bases[..2], &[3, 6], "bases tick by tick: {bases:?}");
    assert!(diffs(&p.op, VOL).await.is_empty());
    six.passed_and_restores(&p.op, &[6]).await;
    a0.stop().await;
}

/// A volume's `retention` file that cannot be parsed stops its retention (its pins are
/// not taken for none): no pass runs, a `Retention` event says why, naming the file,
/// the query and the command are refused with the same reason, and nothing stored
/// changes; once the file is fixed, the pass runs and spares the pinned snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_retention_file_stops_retention_and_says_why() {
    let six = six_old_diffs("retention-corrupt").await;
    let file = six.dir.join(retention::FILE);
    // A pin, then a line that does not parse.
    let text = "pin=2\nkeep-last=lots\n";
    std::fs::write(&file, text).unwrap();
    let (a0, p, vol) = six.restart().await;
    let mut events =
        p.op.subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await
        .unwrap();
    for _ in 0..3 {
        look(&six.hand, &vol, 60).await;
    }
    let why = |e: &str| {
        e.contains(&file.display().to_string()) && e.contains("line 2") && e.contains("keep-last")
    };
    let refused = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(ev)) = events.next().await {
            if let Event::Retention(pass) = ev {
                return pass.step;
            }
        }
        String::new()
    })
    .await
    .expect("no retention event");
    assert!(
        refused.starts_with("refused: ") && why(&refused),
        "{refused}"
    );
    // Nothing was merged or applied; the file is as it was.
    assert_eq!(diffs(&p.op, VOL).await.len(), 6);
    assert_eq!(base_gid(&p.op).await, 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    // The query and the command say why; the command changes nothing.
    let e =
        p.op.request(Request::Query(Query::Retention { vol: VOL.into() }))
            .await
            .unwrap_err();
    assert!(why(&e.to_string()), "{e}");
    let set = RetentionSet {
        vol: VOL.into(),
        default: false,
        set: Vec::new(),
        pin: vec![4],
        unpin: Vec::new(),
        dry_run: false,
    };
    let e = cmd(&p.op, Command::SetRetention(set)).await.unwrap_err();
    assert!(why(&e.to_string()), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    // Fixed: the pass folds every snapshot but the pinned one, the explicit one (the
    // base's, kept by keep-last) and the newest.
    std::fs::write(&file, "pin=2\n").unwrap();
    for _ in 0..4 {
        look(&six.hand, &vol, 60).await;
    }
    assert_eq!(
        gid_pairs(&p.op).await,
        vec![(0, 2), (2, 6)],
        "the diffs left"
    );
    six.passed_and_restores(&p.op, &[2, 6]).await;
    a0.stop().await;
}

/// A retention merge cut short by a crash after its output was written (the inputs
/// still there) and another one before (its temporary file left) are cleaned at the
/// next start, and the pass goes on from what is on disk with no snapshot lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_cut_short_is_cleaned_and_the_pass_goes_on() {
    let six = six_old_diffs("retention-merge-crash").await;
    let dir = &six.dir;
    // Snapshots 1 and 4 pinned (0, explicit, kept by keep-last): the pass merges 1..4 and
    // 4..6. The crash
    // left the merge 1..4 written with its inputs, and a temporary file of the merge 4..6.
    std::fs::write(dir.join(retention::FILE), "pin=1\npin=4\n").unwrap();
    let (listed, _) = walb_daemon::archive::vol::scan_diffs(dir).unwrap();
    let all: Vec<_> = listed.iter().cloned().collect();
    let run = |b: u64, e: u64| -> Vec<_> {
        all.iter()
            .filter(|d| d.snap_b.gid_b >= b && d.snap_e.gid_b <= e)
            .cloned()
            .collect()
    };
    let merged = walb_daemon::archive::maint::merge_files(dir, &run(1, 4), &|| false).unwrap();
    let later = walb_kernel::meta::MetaDiff::merge_all(&run(4, 6)).unwrap();
    let tmp = walb_daemon::persist::tmp_path(&walb_daemon::archive::vol::diff_path(dir, &later));
    std::fs::write(&tmp, b"half a merge").unwrap();
    let (a0, p, vol) = six.restart().await;
    assert!(!tmp.exists(), "the temporary file stayed");
    for _ in 0..4 {
        look(&six.hand, &vol, 60).await;
    }
    let left = gid_pairs(&p.op).await;
    assert_eq!(left, vec![(0, 1), (1, 4), (4, 6)], "the diffs left");
    assert!(vol.meta().diffs.exists(&merged));
    six.passed_and_restores(&p.op, &[0, 1, 4, 6]).await;
    a0.stop().await;
}
