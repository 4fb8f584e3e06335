//! Restore benchmark of the archive (`cargo bench -p walb-daemon --bench restore`).
//!
//! Builds one volume the way the archive tests do, through the real protocols against an
//! in-process archive daemon started with `walb-archive`'s own defaults: a full backup
//! (Protocol 3, streamed bulk by bulk) of a `WALB_BENCH_GB` GiB image whose every 4 KiB
//! block holds data (512 random bytes then zeros: it compresses on the wire but has no
//! holes), then ~10 INDEXED zstd wdiffs made by the kernel engine (`WlogGen` +
//! `convert_wlog`: 4–64 KiB writes at random 512-byte addresses over the whole volume, 2%
//! discards, 2% zero writes; `WALB_BENCH_DIFF_MB` MiB of write data in all) sent by
//! Protocol 2. It then times `restore` of the newest snapshot through the daemon, from
//! the command to the restore's last progress event (sent once the image is fsynced and
//! renamed into place), and prints the daemon's own breakdown (clone, diffs, final sync,
//! CPU time, time spent waiting for a CPU):
//!
//! 1. **reflink**: the archive's base directory on a loop-mounted XFS (`mkfs.xfs -m
//!    reflink=1`, loop device with direct IO so the host page cache does not serve its
//!    reads) made in `WALB_BENCH_DIR` (root and mkfs.xfs needed, else skipped);
//! 2. **sparse copy**: the same volume built again by a second daemon in `WALB_BENCH_DIR`
//!    itself (the normal disk: ext4/overlay, no reflink), once the XFS is gone.
//!
//! Next to each, in the same run and on the same file system, a plain sequential copy of
//! the base image (`cp --sparse=never --reflink=never` + fsync), before and after the
//! restores. Inputs are synced and
//! dropped from the page cache (`posix_fadvise(DONTNEED)`) before each timed step. Each
//! restored image is checked against base + merged diffs unless `WALB_BENCH_VERIFY=0`.
//!
//! Knobs: `WALB_BENCH_GB` (default 4), `WALB_BENCH_DIFF_MB` (default 100),
//! `WALB_BENCH_DIR` (default the temp dir), `WALB_BENCH_VERIFY` (default 1),
//! `WALB_BENCH_REPEAT` (restores per case, default 1), `WALB_BENCH_ONLY` (`reflink` or
//! `sparse`: one case only), `RUST_LOG` (daemon logs on stderr). Mounts and loop devices
//! are removed on every exit path, Ctrl-C included. Run without `--bench` (as
//! `cargo test --benches` does) it only prints how to run it.

#[path = "../tests/archive_support/mod.rs"]
mod archive_support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Cursor;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use archive_support::{
    cmd, diff_dto, init_vol, query, send_wdiff, status, wait_num_action, Cluster, TestArchive, LB,
};
use clap::Parser;
use rand::{RngCore, SeedableRng};
use walb_daemon::opts::ArchiveOpts;
use walb_kernel::diff::convert::{convert_wlog, ConvertOpt};
use walb_kernel::diff::io::IoData;
use walb_kernel::diff::merge::{DiffMerger, DiffStream};
use walb_kernel::gen::{DataKind, WlogGen};
use walb_kernel::wdiff::{WdiffKind, WdiffReader};
use walb_wire::msg::{BackupSync, SnapDto, Step, SyncStart, Uuid};
use walb_wire::{Command, Event, Peer, Query, Reply, Request, Role, Subscribe};

const VOL: &str = "bench";
const UUID: Uuid = [0x5a; 16];
const T0: u64 = 1_700_000_000;
/// Bulk of the full backup (what the storage would send as one chunk).
const BULK: usize = 1 << 20;
/// Blocks per bulk.
const BULK_LB: u64 = (BULK / LB) as u64;
/// Seed of the base image content.
const BASE_SEED: u64 = 0xba5e;
/// gid of the full backup's snapshot; the diffs are |0|->|1|, |1|->|3|, |3|->|4|, ...
const FULL_GID: u64 = 2;
const MB: f64 = 1e6;

struct Knobs {
    gib: u64,
    diff_mb: u64,
    dir: PathBuf,
    verify: bool,
    repeat: u64,
    only: Option<String>,
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

impl Knobs {
    fn from_env() -> Result<Knobs> {
        let gib = env_u64("WALB_BENCH_GB", 4)?;
        let diff_mb = env_u64("WALB_BENCH_DIFF_MB", 100)?;
        ensure!(gib >= 1, "WALB_BENCH_GB must be at least 1");
        ensure!(diff_mb >= 1, "WALB_BENCH_DIFF_MB must be at least 1");
        let dir = std::env::var_os("WALB_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let verify = env_u64("WALB_BENCH_VERIFY", 1)? != 0;
        let repeat = env_u64("WALB_BENCH_REPEAT", 1)?.max(1);
        let only = std::env::var("WALB_BENCH_ONLY")
            .ok()
            .filter(|s| !s.is_empty());
        if let Some(o) = &only {
            ensure!(
                o == "reflink" || o == "sparse",
                "WALB_BENCH_ONLY={o:?}: expected reflink or sparse"
            );
        }
        Ok(Knobs {
            gib,
            diff_mb,
            dir,
            verify,
            repeat,
            only,
        })
    }

    fn runs(&self, case: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == case)
    }

    fn size_bytes(&self) -> u64 {
        self.gib << 30
    }

    fn size_lb(&self) -> u64 {
        self.size_bytes() / LB as u64
    }
}

// ------------------------------------------------------------------------------------
// The volume

/// Bulk `i` of the base image: every 4 KiB block holds 512 random bytes, then zeros.
fn base_bulk(i: u64, buf: &mut [u8]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(BASE_SEED ^ i.wrapping_mul(0x9e37_79b9));
    for blk in buf.chunks_mut(4096) {
        let n = blk.len().min(512);
        rng.fill_bytes(&mut blk[..n]);
        blk[n..].fill(0);
    }
}

/// A full backup as the storage runs it (Protocol 3), the image generated bulk by bulk.
async fn full_backup(p: &Peer, size_lb: u64) -> Result<()> {
    let mut call = p
        .call(Request::BackupSync(BackupSync::Full(SyncStart {
            vol: VOL.into(),
            size_lb,
            time_s: T0,
            bulk_lb: BULK_LB,
        })))
        .await?;
    ensure!(call.receiver.reply().await? == Reply::Accepted);
    call.sender.step(Step::Uuid(UUID)).await?;
    ensure!(call.receiver.step().await? == Step::Ack);
    let bulks = (size_lb * LB as u64).div_ceil(BULK as u64);
    let mut buf = vec![0u8; BULK];
    for i in 0..bulks {
        let len = ((size_lb * LB as u64) - i * BULK as u64).min(BULK as u64) as usize;
        base_bulk(i, &mut buf[..len]);
        call.sender.chunk(&buf[..len]).await?;
    }
    call.sender.end_bulk().await?;
    ensure!(call.receiver.step().await? == Step::Ack);
    call.sender
        .step(Step::MetaSnap(SnapDto {
            gid_b: 0,
            gid_e: FULL_GID,
        }))
        .await?;
    ensure!(call.receiver.step().await? == Step::Ack);
    call.sender.finish()?;
    Ok(())
}

/// The wdiffs: `n` INDEXED zstd wdiffs of `per` bytes of write data each, made by the
/// kernel engine from generated wlogs (random addresses over the whole volume).
fn make_wdiffs(size_lb: u64, total: u64) -> Result<Vec<Vec<u8>>> {
    let n = total.div_ceil(10 << 20).clamp(1, 10);
    let per = total / n;
    (0..n)
        .map(|i| {
            let mut g = WlogGen::new(size_lb, per);
            g.seed = 1000 + i;
            g.kind = DataKind::Compressible;
            let mut wlog = Vec::new();
            g.write(&mut wlog).context("generating a wlog")?;
            let opt = ConvertOpt {
                kind: WdiffKind::Indexed,
                ..Default::default()
            };
            Ok(convert_wlog(&wlog[..], Vec::new(), &opt)
                .context("converting a wlog")?
                .0)
        })
        .collect()
}

/// The gids of the diff chain: |0|->|1|, |1|->|3|, |3|->|4|, ... (the base is <|0,2|>).
fn chain(n: usize) -> Vec<(u64, u64)> {
    let mut v = vec![(0, 1), (1, 3)];
    while v.len() < n {
        let e = v[v.len() - 1].1;
        v.push((e, e + 1));
    }
    v.truncate(n.max(1));
    v
}

/// Full backup and diffs into the daemon `a`; returns the gid to restore.
async fn build_volume(c: &Cluster, a: &TestArchive, k: &Knobs, w: &[Vec<u8>]) -> Result<u64> {
    let nodes = [
        c.client(Role::Operator, "op"),
        c.client(Role::Storage, "s0"),
        c.client(Role::Proxy, "p0"),
    ];
    let op = nodes[0].connect(a.addr).await?;
    let st = nodes[1].connect(a.addr).await?;
    let px = nodes[2].connect(a.addr).await?;
    init_vol(&op, VOL).await;
    let t = Instant::now();
    full_backup(&st, k.size_lb()).await.context("full backup")?;
    println!(
        "  full backup of {} GiB through Protocol 3: {:.1} s",
        k.gib,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut last = 0;
    for (i, ((b, e), bytes)) in chain(w.len()).into_iter().zip(w).enumerate() {
        send_wdiff(
            &px,
            VOL,
            UUID,
            k.size_lb(),
            diff_dto(b, e, false, T0 + 1 + i as u64),
            bytes,
        )
        .await
        .with_context(|| format!("sending wdiff |{b}|-->|{e}|"))?;
        last = e;
    }
    println!(
        "  {} wdiffs through Protocol 2: {:.1} s",
        w.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(last)
}

/// The archive's options as `walb-archive --base-dir BASE` gets them: the daemon's own
/// defaults (`--fsync-interval-mb 1024`, `--discard punch`, `--max-open 0`, ...), not the
/// tests' (which sync every MiB).
fn daemon_opts(base: &Path) -> Result<ArchiveOpts> {
    let base = base.to_str().context("base directory is not UTF-8")?;
    Ok(ArchiveOpts::try_parse_from([
        "walb-archive",
        "--base-dir",
        base,
        "--listen",
        "127.0.0.1:0",
        "--id",
        "a0",
    ])?)
}

// ------------------------------------------------------------------------------------
// The daemon's own account of each restore (its `restored` log event)

/// Numeric fields of the archive's `restored` events, oldest first.
static RESTORED_EVENTS: Mutex<Vec<BTreeMap<String, f64>>> = Mutex::new(Vec::new());

struct CaptureRestored;

struct Fields(BTreeMap<String, f64>, bool);

impl tracing::field::Visit for Fields {
    fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
        self.0.insert(f.name().to_owned(), v);
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().to_owned(), v as f64);
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        if f.name() == "message" && format!("{v:?}") == "restored" {
            self.1 = true;
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureRestored {
    fn on_event(&self, ev: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut f = Fields(BTreeMap::new(), false);
        ev.record(&mut f);
        if f.1 {
            RESTORED_EVENTS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(f.0);
        }
    }
}

/// The daemon's breakdown of its last restore, if it logged one.
fn last_restored_event() -> Option<BTreeMap<String, f64>> {
    RESTORED_EVENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
}

fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let capture = CaptureRestored.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("walb_daemon::archive::restore", tracing::Level::INFO),
    );
    let fmt = std::env::var_os("RUST_LOG").map(|_| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::from_default_env())
    });
    tracing_subscriber::registry()
        .with(capture)
        .with(fmt)
        .init();
}

// ------------------------------------------------------------------------------------
// Page cache and timing helpers

/// Syncs `path` and drops its pages from the page cache.
fn evict(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    ensure!(r == 0, "posix_fadvise {}: error {r}", path.display());
    Ok(())
}

/// Evicts the base image and every wdiff of the volume directory.
fn evict_volume(vdir: &Path) -> Result<()> {
    for e in std::fs::read_dir(vdir).with_context(|| format!("listing {}", vdir.display()))? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "base.img" || name.ends_with(".wdiff") {
            evict(&p)?;
        }
    }
    Ok(())
}

fn wdiff_bytes(vdir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(vdir)? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(".wdiff") {
            n += e.metadata()?.len();
        }
    }
    Ok(n)
}

fn run(cmd: &mut Proc) -> Result<String> {
    let line = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {line}"))?;
    if !out.status.success() {
        bail!(
            "{line}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(tool: &str) -> bool {
    Proc::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn free_bytes(dir: &Path) -> Result<u64> {
    let s =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// `cp --sparse=never --reflink=never src dst` and an fsync of `dst`, cold source;
/// seconds. `dst` is removed afterwards.
fn timed_copy(src: &Path, dst: &Path) -> Result<f64> {
    evict(src)?;
    let t = Instant::now();
    run(Proc::new("cp")
        .args(["--sparse=never", "--reflink=never"])
        .arg(src)
        .arg(dst))?;
    File::open(dst)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dst.display()))?;
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(dst).with_context(|| format!("removing {}", dst.display()))?;
    Ok(secs)
}

struct Restored {
    secs: f64,
    method: String,
    path: PathBuf,
    /// The daemon's breakdown (`clone_s`, `apply_s`, `sync_s`, `cpu_s`, `cpu_wait_s`, ...).
    parts: BTreeMap<String, f64>,
}

impl Restored {
    fn parts(&self) -> String {
        let g = |k: &str| self.parts.get(k).copied().unwrap_or(f64::NAN);
        format!(
            "clone {:.3} s, diffs {:.3} s, final sync {:.3} s; CPU {:.3} s, waiting for a CPU {:.3} s",
            g("clone_s"),
            g("apply_s"),
            g("sync_s"),
            g("cpu_s"),
            g("cpu_wait_s")
        )
    }
}

/// Whether `gid` is listed as restored; its path.
async fn restored_path(op: &Peer, gid: u64) -> Result<Option<PathBuf>> {
    match query(op, Query::Restored { vol: VOL.into() }).await {
        Reply::Restored(l) => Ok(l
            .iter()
            .find(|r| r.gid == gid)
            .map(|r| PathBuf::from(&r.path))),
        r => bail!("restored: {r:?}"),
    }
}

/// Runs `restore VOL gid` on `a`; the time from the command to the restore's last
/// progress event (published once the image is synced and renamed into place). Events,
/// not polling, so that the measurement takes no CPU from the restore; a check every
/// second notices a restore that failed.
async fn timed_restore(c: &Cluster, a: &TestArchive, gid: u64) -> Result<Restored> {
    let node = c.client(Role::Operator, "op");
    let op = node.connect(a.addr).await?;
    let mut events = op
        .subscribe(Subscribe {
            vols: vec![VOL.into()],
        })
        .await?;
    evict_volume(&a.vol_dir(VOL))?;
    let t = Instant::now();
    let r = cmd(
        &op,
        Command::Restore {
            vol: VOL.into(),
            gid,
        },
    )
    .await
    .context("restore")?;
    ensure!(r == Reply::Accepted, "restore answered {r:?}");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (secs, path) = loop {
        tokio::select! {
            ev = events.next() => match ev? {
                Some(Event::Progress { op: o, done_lb, total_lb, .. })
                    if o == "restore" && total_lb > 0 && done_lb == total_lb =>
                {
                    let secs = t.elapsed().as_secs_f64();
                    if let Some(p) = restored_path(&op, gid).await? {
                        break (secs, p);
                    }
                }
                Some(_) => {}
                None => bail!("the event subscription ended"),
            },
            _ = tick.tick() => {
                let running = query(
                    &op,
                    Query::NumAction {
                        vol: VOL.into(),
                        action: "Restore".into(),
                    },
                )
                .await;
                if running == Reply::Number(0) {
                    match restored_path(&op, gid).await? {
                        Some(p) => break (t.elapsed().as_secs_f64(), p),
                        None => bail!("the restore of gid {gid} failed (see RUST_LOG=info)"),
                    }
                }
                ensure!(
                    t.elapsed() < Duration::from_secs(3600),
                    "restore takes over an hour"
                );
            }
        }
    };
    wait_num_action(&op, VOL, "Restore", 0).await;
    let st = status(&op, VOL).await;
    let method = st
        .iter()
        .find(|l| l.starts_with(&format!("restored:{gid} ")))
        .and_then(|l| {
            l.rsplit_once('(')
                .map(|(_, m)| m.trim_end_matches(')').to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let parts = last_restored_event().unwrap_or_default();
    Ok(Restored {
        secs,
        method,
        path,
        parts,
    })
}

async fn del_restored(c: &Cluster, a: &TestArchive, gid: u64) -> Result<()> {
    let node = c.client(Role::Operator, "op");
    let op = node.connect(a.addr).await?;
    let r = cmd(
        &op,
        Command::DelRestored {
            vol: VOL.into(),
            gid,
        },
    )
    .await?;
    ensure!(r == Reply::Done, "del-restored answered {r:?}");
    Ok(())
}

/// Checks the restored image against the base content with the merged diffs on top
/// (discards and zero writes read as zeros).
fn verify(path: &Path, size: u64, w: &[Vec<u8>]) -> Result<()> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let streams: Vec<DiffStream<'static>> = w
        .iter()
        .map(|b| -> Result<DiffStream<'static>> {
            Ok(Box::new(WdiffReader::new(Cursor::new(b.clone()))?))
        })
        .collect::<Result<_>>()?;
    let mut ios = DiffMerger::new(streams).peekable();
    let (mut want, mut got) = (vec![0u8; BULK], vec![0u8; BULK]);
    let lbs = LB as u64;
    for i in 0..size.div_ceil(BULK as u64) {
        let off = i * BULK as u64;
        let len = (size - off).min(BULK as u64) as usize;
        base_bulk(i, &mut want[..len]);
        let (b_lo, b_hi) = (off / lbs, (off + len as u64) / lbs);
        loop {
            if matches!(ios.peek(), Some(Err(_))) {
                if let Some(Err(e)) = ios.next() {
                    return Err(e.into());
                }
            }
            let Some(Ok(io)) = ios.peek() else { break };
            if io.addr >= b_hi {
                break;
            }
            let (lo, hi) = (io.addr.max(b_lo), io.end().min(b_hi));
            let dst = &mut want[((lo - b_lo) * lbs) as usize..((hi - b_lo) * lbs) as usize];
            match &io.data {
                IoData::Normal(d) => {
                    let s = ((lo - io.addr) * lbs) as usize;
                    dst.copy_from_slice(&d[s..s + dst.len()]);
                }
                IoData::AllZero | IoData::Discard => dst.fill(0),
            }
            if io.end() > b_hi {
                break;
            }
            ios.next();
        }
        f.read_exact_at(&mut got[..len], off)
            .with_context(|| format!("reading {} at {off}", path.display()))?;
        if want[..len] != got[..len] {
            let at = want[..len]
                .iter()
                .zip(&got[..len])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            bail!(
                "{}: content differs at byte {}",
                path.display(),
                off + at as u64
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------
// The loop-mounted XFS

/// An XFS with reflink on a loop device (direct IO) over a sparse file; unmounted,
/// detached and removed when dropped.
struct Xfs {
    img: PathBuf,
    dev: Option<String>,
    mnt: PathBuf,
    mounted: bool,
}

impl Xfs {
    fn new(dir: &Path, bytes: u64) -> Result<Xfs> {
        if !nix::unistd::geteuid().is_root() {
            bail!("not root");
        }
        for t in ["mkfs.xfs", "losetup", "mount", "umount"] {
            ensure!(have(t), "{t} is not installed");
        }
        let mut x = Xfs {
            img: dir.join("xfs.img"),
            dev: None,
            mnt: dir.join("xfs"),
            mounted: false,
        };
        File::create(&x.img)
            .and_then(|f| f.set_len(bytes))
            .with_context(|| format!("creating {}", x.img.display()))?;
        let dev = run(Proc::new("losetup")
            .args(["--find", "--show", "--direct-io=on"])
            .arg(&x.img))?;
        x.dev = Some(dev.trim().to_owned());
        let dev = dev.trim();
        run(Proc::new("mkfs.xfs").args(["-q", "-f", "-m", "reflink=1", dev]))?;
        std::fs::create_dir_all(&x.mnt)?;
        run(Proc::new("mount").arg(dev).arg(&x.mnt))?;
        x.mounted = true;
        Ok(x)
    }

    fn dio(&self) -> String {
        let Some(dev) = &self.dev else {
            return "?".into();
        };
        let name = dev.trim_start_matches("/dev/");
        std::fs::read_to_string(format!("/sys/block/{name}/loop/dio"))
            .map(|s| if s.trim() == "1" { "on" } else { "off" }.to_owned())
            .unwrap_or_else(|_| "?".into())
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        if self.mounted {
            let mut ok = false;
            for _ in 0..50 {
                if Proc::new("umount")
                    .arg(&self.mnt)
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !ok {
                eprintln!("umount {} failed; lazy unmount", self.mnt.display());
                let _ = Proc::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
        if let Some(dev) = &self.dev {
            if let Err(e) = run(Proc::new("losetup").arg("-d").arg(dev)) {
                eprintln!("{e}");
            }
        }
        let _ = std::fs::remove_dir(&self.mnt);
        let _ = std::fs::remove_file(&self.img);
    }
}

// ------------------------------------------------------------------------------------
// Cases

struct Case {
    label: &'static str,
    fs: String,
    restores: Vec<Restored>,
    /// The copy before and after the restores (the second finds the page cache warm from
    /// the deleted restored image, on this VM a visible difference).
    cp_secs: [f64; 2],
}

impl Case {
    /// The slowest restore of the case.
    fn worst(&self) -> f64 {
        self.restores.iter().map(|r| r.secs).fold(0.0, f64::max)
    }

    fn print(&self, k: &Knobs, wdiff_on_disk: u64) {
        let size = k.size_bytes() as f64;
        let method = self.restores.first().map_or("?", |r| r.method.as_str());
        println!(
            "{:<8} fs={} volume={} GiB diffs={} MiB ({:.1} MiB of wdiff files) reflink={} ({})",
            self.label,
            self.fs,
            k.gib,
            k.diff_mb,
            wdiff_on_disk as f64 / f64::from(1u32 << 20),
            if method == "reflink" { "yes" } else { "no" },
            method,
        );
        for r in &self.restores {
            println!(
                "         restore: {:.3} s {:.0} MB/s ({})",
                r.secs,
                size / r.secs / MB,
                r.parts()
            );
        }
        for (when, secs) in ["before", "after"].iter().zip(self.cp_secs) {
            println!(
                "         cp --sparse=never --reflink=never + fsync ({when} the restores): \
                 {secs:.3} s {:.0} MB/s",
                size / secs / MB,
            );
        }
    }
}

/// A timed copy of the base image, the restores (timed, verified, deleted), the copy again.
async fn run_case(
    label: &'static str,
    fs: String,
    c: &Cluster,
    a: &TestArchive,
    k: &Knobs,
    gid: u64,
    w: &[Vec<u8>],
) -> Result<Case> {
    println!("[{label}] restoring gid {gid} on {fs}");
    let vdir = a.vol_dir(VOL);
    let copy = || {
        let (src, dst) = (vdir.join("base.img"), vdir.join("cp-bench.img"));
        async move {
            let secs = tokio::task::spawn_blocking(move || timed_copy(&src, &dst)).await??;
            println!("  cp --sparse=never --reflink=never base.img + fsync: {secs:.3} s");
            Ok::<_, anyhow::Error>(secs)
        }
    };
    let cp_before = copy().await?;
    let mut restores = Vec::new();
    for i in 0..k.repeat {
        let r = timed_restore(c, a, gid).await?;
        println!("  restore: {:.3} s ({}; {})", r.secs, r.method, r.parts());
        if k.verify && i == 0 {
            let t = Instant::now();
            let (p, size, w2) = (r.path.clone(), k.size_bytes(), w.to_vec());
            tokio::task::spawn_blocking(move || verify(&p, size, &w2)).await??;
            println!(
                "  restored image verified against base + merged diffs ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
        }
        del_restored(c, a, gid).await?;
        restores.push(r);
    }
    let cp_after = copy().await?;
    Ok(Case {
        label,
        fs,
        restores,
        cp_secs: [cp_before, cp_after],
    })
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn fs_type(p: &Path) -> String {
    run(Proc::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "--target"])
        .arg(p))
    .or_else(|_| run(Proc::new("stat").args(["-f", "-c", "%T"]).arg(p)))
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|_| "?".into())
}

async fn bench(k: &Knobs) -> Result<Vec<(Case, u64)>> {
    std::fs::create_dir_all(&k.dir)?;
    let work = tempfile::Builder::new()
        .prefix("walb-restore-bench.")
        .tempdir_in(&k.dir)
        .with_context(|| format!("creating a directory in {}", k.dir.display()))?;
    // At most a base image and one copy of it (restored, or cp's) at a time, plus diffs.
    let need = 2 * k.size_bytes() + (1 << 30);
    let free = free_bytes(work.path())?;
    ensure!(
        free >= need,
        "{} has {} GiB free; the benchmark needs about {} GiB (WALB_BENCH_GB={})",
        k.dir.display(),
        free >> 30,
        need >> 30,
        k.gib
    );
    let c = Cluster::new("bench");
    let t = Instant::now();
    let (size_lb, diff_total) = (k.size_lb(), k.diff_mb << 20);
    let w = tokio::task::spawn_blocking(move || make_wdiffs(size_lb, diff_total)).await??;
    println!(
        "  {} wdiffs generated by the kernel engine ({:.1} s)",
        w.len(),
        t.elapsed().as_secs_f64()
    );
    let mut cases = Vec::new();
    let ext_base = work.path().join("archive");

    let xfs = if k.runs("reflink") {
        Xfs::new(work.path(), 2 * k.size_bytes() + (2 << 30))
    } else {
        Err(anyhow::anyhow!("WALB_BENCH_ONLY=sparse"))
    };
    match xfs {
        Err(why) => println!("[reflink] SKIPPED: no loop-mounted XFS ({why:#})"),
        Ok(x) => {
            let base = x.mnt.join("archive");
            let a = TestArchive::start(&c, daemon_opts(&base)?).await;
            let res = async {
                println!(
                    "[reflink] building the volume on XFS (loop dio={})",
                    x.dio()
                );
                let g = build_volume(&c, &a, k, &w).await?;
                let on_disk = wdiff_bytes(&a.vol_dir(VOL))?;
                let fs = format!("xfs(loop, dio={})", x.dio());
                let case = run_case("reflink", fs, &c, &a, k, g, &w).await?;
                Ok::<_, anyhow::Error>((case, on_disk))
            }
            .await;
            a.stop().await;
            cases.push(res?);
            // Unmounted and its file removed before the next case takes the disk.
            drop(x);
        }
    }
    if !k.runs("sparse") {
        return Ok(cases);
    }

    // The same volume (same content, same diffs) built again on the normal disk.
    let a = TestArchive::start(&c, daemon_opts(&ext_base)?).await;
    let res = async {
        println!("[sparse] building the volume on the normal disk");
        let g = build_volume(&c, &a, k, &w).await?;
        let on_disk = wdiff_bytes(&a.vol_dir(VOL))?;
        let fs = fs_type(&ext_base);
        let case = run_case("sparse", fs, &c, &a, k, g, &w).await?;
        Ok::<_, anyhow::Error>((case, on_disk))
    }
    .await;
    a.stop().await;
    cases.push(res?);
    Ok(cases)
}

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("restore bench: run with `cargo bench -p walb-daemon --bench restore`");
        return Ok(());
    }
    init_logging();
    let k = Knobs::from_env()?;
    let load0 = loadavg();
    println!(
        "restore bench: volume {} GiB, {} MiB of diffs, in {}",
        k.gib,
        k.diff_mb,
        k.dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cases = rt.block_on(async {
        tokio::select! {
            r = bench(&k) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })?;
    println!("---- results (MB = 10^6 bytes; MB/s = logical volume size / time) ----");
    println!(
        "load average: {} at the start, {} at the end",
        load0,
        loadavg()
    );
    for (c, on_disk) in &cases {
        c.print(&k, *on_disk);
    }
    if let Some((c, _)) = cases.iter().find(|(c, _)| c.label == "reflink") {
        println!(
            "reflink restore of {} GiB + {} MiB diffs: {:.3} s (target <= 2 s: {})",
            k.gib,
            k.diff_mb,
            c.worst(),
            if c.worst() <= 2.0 { "met" } else { "MISSED" }
        );
    }
    Ok(())
}
