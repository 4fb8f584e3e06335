//! Benchmark of the emulated WalB device (prints numbers; `harness = false`).
//!
//! Random writes of 4 KiB and 64 KiB at queue depth 1 and 16 (16 threads), each case
//! ending with a flush that makes every write durable, on:
//! - `plain file`: `pwrite` to a file on the same disk, then `fdatasync` (the reference);
//! - `emu library`: [`Emulator::write`] (log pack to the ldev file, data to the ddev file),
//!   then [`Emulator::flush`];
//! - as root, `O_DIRECT` writes to a loop device on a FUSE file, then `fsync`:
//!   `bare fuse+loop` passes the writes to a plain file (no logging: the ceiling of the
//!   FUSE path), `emu fuse+loop` is the emulated device as `create-wdev --emulate` serves it.
//!
//! A case writes `WALB_BENCH_MB` MiB (default 128; the address sequence is a permutation
//! of the blocks, so no block is written twice up to 256 MiB), then flushes; MB/s counts
//! the flush. The data files (plain, passthrough, ddev) are sparse files of 256 MiB; the
//! log device is a 512 MiB file written through once (a log device is a block device in
//! practice, so the file system's allocation of a sparse file is no cost of a deployment)
//! and formatted afresh for each emulator.
//!
//! The two targets of a pair (plain file and emu library; bare and emu fuse+loop) run one
//! after the other, the order flipping every round; after each run, what it left dirty
//! (the emulator's log and data files) is synced, untimed, so that its write-back does not
//! slow the next run down (`WALB_BENCH_SETTLE_TIMED` counts that sync in the emulator's
//! time: the full cost, data device included, rather than what a writer waits for).
//! `WALB_BENCH_ROUNDS` rounds (default 5); the table shows the medians and the median of
//! the per-round ratios, then each round's ratio.
//!
//! `WALB_BENCH_DIR` sets the directory (default: a temporary directory under the target
//! directory); `WALB_BENCH_IO` (KiB, default `4,64`), `WALB_BENCH_QD` (default `1,16`) and
//! `WALB_BENCH_PAIRS` (default `lib,fuse`) select cases; `WALB_BENCH_STATS` prints the
//! emulator's writer counters.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request,
    SessionACL, WriteFlags,
};
use walb_device::emu::{EmuConfig, Emulator};
use walb_kernel::block::Pbs;
use walb_kernel::ldev::{SuperBlock, SUPER_OFFSET};

const DEV_BYTES: u64 = 256 << 20;

trait Target: Send + Sync {
    fn write(&self, off: u64, data: &[u8]);
    fn flush(&self);
}

struct PlainFile(File);
impl Target for PlainFile {
    fn write(&self, off: u64, data: &[u8]) {
        self.0.write_all_at(data, off).expect("write");
    }
    fn flush(&self) {
        self.0.sync_data().expect("fdatasync");
    }
}

struct Lib(Arc<Emulator>);
impl Target for Lib {
    fn write(&self, off: u64, data: &[u8]) {
        self.0.write(off, data).expect("emu write");
    }
    fn flush(&self) {
        self.0.flush().expect("emu flush");
    }
}

struct Result {
    mbps: f64,
    p50: Duration,
    p99: Duration,
}

/// An aligned buffer for O_DIRECT.
fn aligned(len: usize) -> (Vec<u8>, usize) {
    let v = vec![0x5au8; len + 4096];
    let off = v.as_ptr().align_offset(4096);
    (v, off)
}

/// What one target accumulated over the chunks of a round.
#[derive(Default)]
struct Acc {
    secs: f64,
    ops: u64,
    lats: Vec<Duration>,
}

/// Writes ops `first..first + n` of the address sequence with `qd` threads; adds the time
/// from the first submission to the last completion.
fn run_chunk(t: &dyn Target, io: usize, qd: usize, first: u64, n: u64, acc: &mut Acc) {
    let next = AtomicU64::new(first);
    let end = first + n;
    let slots = DEV_BYTES / io as u64;
    let t0 = Instant::now();
    let lats: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..qd)
            .map(|_| {
                s.spawn(|| {
                    let (buf, a) = aligned(io);
                    let data = &buf[a..a + io];
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            return lat;
                        }
                        // An odd multiplier modulo a power of two: a permutation of the
                        // blocks, each written at most once per pass over the device.
                        let slot = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % slots;
                        let st = Instant::now();
                        t.write(slot * io as u64, data);
                        lat.push(st.elapsed());
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    acc.secs += t0.elapsed().as_secs_f64();
    acc.ops += n;
    acc.lats.extend(lats.into_iter().flatten());
}

/// The final flush of a target, timed; the result of its round.
fn finish(t: &dyn Target, io: usize, mut acc: Acc) -> Result {
    let t0 = Instant::now();
    t.flush();
    acc.secs += t0.elapsed().as_secs_f64();
    acc.lats.sort();
    let all = &acc.lats;
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Result {
        mbps: acc.ops as f64 * io as f64 / acc.secs / 1e6,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// Writes `total` bytes to `t`, then flushes it.
fn run(t: &dyn Target, io: usize, qd: usize, total: u64) -> Result {
    let ops = (total / io as u64).max(qd as u64);
    let mut acc = Acc::default();
    run_chunk(t, io, qd, 0, ops, &mut acc);
    finish(t, io, acc)
}

/// Syncs files a target left dirty (untimed), so that its deferred write-back does not
/// run into the next measurement.
fn settle(files: &[PathBuf]) {
    for f in files {
        if let Ok(f) = File::open(f) {
            let _ = f.sync_all();
        }
    }
}

/// A target and the files it may leave dirty.
type Side<'a> = (&'a dyn Target, &'a [PathBuf]);

/// One round of a pair: `a` (the reference) and `b` one after the other, each settled
/// afterwards; the order flips every round.
fn pair_round(
    a: Side<'_>,
    b: Side<'_>,
    io: usize,
    qd: usize,
    total: u64,
    round: usize,
) -> (Result, Result) {
    let timed = std::env::var_os("WALB_BENCH_SETTLE_TIMED").is_some();
    let one = |(t, files): Side<'_>| {
        let mut r = run(t, io, qd, total);
        let t0 = Instant::now();
        settle(files);
        if timed {
            // Charge the write-back of the data device too.
            let ops = (total / io as u64).max(qd as u64);
            let secs = ops as f64 * io as f64 / 1e6 / r.mbps + t0.elapsed().as_secs_f64();
            r.mbps = ops as f64 * io as f64 / 1e6 / secs;
        }
        r
    };
    if round % 2 == 0 {
        let x = one(a);
        (x, one(b))
    } else {
        let y = one(b);
        (one(a), y)
    }
}

/// Size of the log device: the ring holds the log of a whole case.
const LDEV_BYTES: u64 = 512 << 20;

/// The log device file, written through once (as a block device is allocated): a log
/// device is a block device in practice, so the file system's block allocation for a
/// sparse file would be a cost no deployment has. Each emulator formats it afresh.
fn ldev_path(dir: &Path) -> PathBuf {
    let p = dir.join("ldev.img");
    if !p.exists() {
        let f = File::create(&p).expect("ldev");
        let zero = vec![0u8; 4 << 20];
        for i in 0..LDEV_BYTES / zero.len() as u64 {
            f.write_all_at(&zero, i * zero.len() as u64)
                .expect("ldev fill");
        }
        f.sync_all().expect("ldev sync");
    }
    p
}

fn make_emu(dir: &Path, tag: &str) -> Arc<Emulator> {
    let l = ldev_path(dir);
    let d = dir.join(format!("{tag}.ddev"));
    let f = OpenOptions::new().write(true).open(&l).expect("ldev");
    let mut sb = SuperBlock::format(Pbs::B4096, LDEV_BYTES, DEV_BYTES / 512, tag).expect("format");
    f.write_all_at(&sb.to_block(), SUPER_OFFSET)
        .expect("superblock");
    f.sync_all().expect("ldev sync");
    File::create(&d)
        .expect("ddev")
        .set_len(DEV_BYTES)
        .expect("ddev size");
    Arc::new(Emulator::open(&l, &d, EmuConfig::default()).expect("open emulator"))
}

// ---- a bare passthrough FUSE file (no logging) ----

struct PassFs {
    file: File,
}

fn attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: if ino == 2 { DEV_BYTES } else { 0 },
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: if ino == 2 {
            FileType::RegularFile
        } else {
            FileType::Directory
        },
        perm: 0o600,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

impl Filesystem for PassFs {
    fn init(&mut self, _r: &Request, c: &mut fuser::KernelConfig) -> std::io::Result<()> {
        let _ = c.set_max_write(1 << 20);
        Ok(())
    }
    fn lookup(&self, _r: &Request, _p: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if name == "wdev" {
            reply.entry(&Duration::ZERO, &attr(2), fuser::Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }
    fn getattr(&self, _r: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply.attr(&Duration::ZERO, &attr(ino.into()));
    }
    fn open(&self, _r: &Request, _i: INodeNo, _f: OpenFlags, reply: ReplyOpen) {
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
        );
    }
    fn read(
        &self,
        _r: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        off: u64,
        size: u32,
        _f: OpenFlags,
        _l: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let n = (DEV_BYTES.saturating_sub(off)).min(size.into()) as usize;
        let mut b = vec![0u8; n];
        match self.file.read_exact_at(&mut b, off) {
            Ok(()) => reply.data(&b),
            Err(_) => reply.error(Errno::EIO),
        }
    }
    fn write(
        &self,
        _r: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        off: u64,
        data: &[u8],
        _wf: WriteFlags,
        _f: OpenFlags,
        _l: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.file.write_all_at(data, off) {
            Ok(()) => reply.written(data.len() as u32),
            Err(_) => reply.error(Errno::EIO),
        }
    }
    fn flush(&self, _r: &Request, _i: INodeNo, _fh: FileHandle, _l: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }
    fn fsync(&self, _r: &Request, _i: INodeNo, _fh: FileHandle, _d: bool, reply: ReplyEmpty) {
        match self.file.sync_data() {
            Ok(()) => reply.ok(),
            Err(_) => reply.error(Errno::EIO),
        }
    }
}

/// A loop device on `file`, opened O_DIRECT; detached and unmounted on drop.
/// The FUSE mount under a loop device (kept until the loop device is gone).
enum Mounted {
    Bare(fuser::BackgroundSession),
    Emu(walb_device::fuse::FuseMount),
}

impl Mounted {
    fn umount_and_join(self) {
        let _ = match self {
            Mounted::Bare(s) => s.umount_and_join().map_err(|e| e.to_string()),
            Mounted::Emu(m) => m.unmount().map_err(|e| e.to_string()),
        };
    }
}

struct LoopTarget {
    dev: File,
    lo: String,
    file: PathBuf,
    _session: Option<Mounted>,
}

impl LoopTarget {
    fn new(file: &Path, session: Mounted) -> LoopTarget {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lo = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(&lo)
            .expect("open loop device");
        LoopTarget {
            dev,
            lo,
            file: file.to_path_buf(),
            _session: Some(session),
        }
    }
}

impl Target for LoopTarget {
    fn write(&self, off: u64, data: &[u8]) {
        self.dev.write_all_at(data, off).expect("loop write");
    }
    fn flush(&self) {
        self.dev.sync_all().expect("loop fsync");
    }
}

impl Drop for LoopTarget {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.lo]).status();
        wait_loop_released(&self.lo);
        if let Some(s) = self._session.take() {
            s.umount_and_join();
        }
        // Make sure the mount is gone before the next case mounts on the same directory.
        if let Some(m) = Path::new(&self.file).parent() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// `losetup -d` returns before the loop driver lets go of its backing file; unmounting
/// the FUSE file system before that fails with EBUSY.
fn wait_loop_released(lo: &str) {
    let name = lo.rsplit('/').next().unwrap_or(lo);
    let f = PathBuf::from(format!("/sys/block/{name}/loop/backing_file"));
    let t0 = Instant::now();
    while f.exists() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn fuse_cfg() -> Config {
    let mut c = Config::default();
    c.acl = SessionACL::RootAndOwner;
    c.n_threads = Some(4);
    c
}

/// Comma-separated values of an environment variable, or the default.
fn env_list(name: &str, default: &[&str]) -> Vec<String> {
    std::env::var(name)
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn plain_target(dir: &Path) -> PlainFile {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("plain"))
        .expect("plain");
    f.set_len(DEV_BYTES).expect("size");
    PlainFile(f)
}

fn bare_fuse_target(dir: &Path) -> LoopTarget {
    let mnt = dir.join("mnt-bare");
    std::fs::create_dir_all(&mnt).expect("mnt");
    let back = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("pass"))
        .expect("pass");
    back.set_len(DEV_BYTES).expect("size");
    let s =
        fuser::spawn_mount(PassFs { file: back }, &mnt, &fuse_cfg()).expect("mount passthrough");
    LoopTarget::new(&mnt.join("wdev"), Mounted::Bare(s))
}

fn emu_fuse_target(dir: &Path, emu: &Arc<Emulator>) -> LoopTarget {
    let mnt = dir.join("mnt-emu");
    std::fs::create_dir_all(&mnt).expect("mnt");
    let s = walb_device::fuse::mount(emu.clone(), &mnt, 4).expect("mount emu");
    LoopTarget::new(&mnt.join("wdev"), Mounted::Emu(s))
}

fn stats(emu: &Emulator, r: &Result) {
    if std::env::var_os("WALB_BENCH_STATS").is_some() {
        eprintln!("  {:?} {:.0} MB/s", emu.write_stats(), r.mbps);
    }
}

fn cleanup(dir: &Path) {
    for f in ["lib.ddev", "fuse.ddev", "plain", "pass"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn main() {
    // Warnings of the emulator (a background flush that failed, ...) go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WALB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error")),
        )
        .init();
    let mb: u64 = std::env::var("WALB_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128);
    let rounds: usize = std::env::var("WALB_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let ios: Vec<usize> = env_list("WALB_BENCH_IO", &["4", "64"])
        .iter()
        .filter_map(|s| s.parse::<usize>().ok())
        .map(|k| k * 1024)
        .collect();
    let qds: Vec<usize> = env_list("WALB_BENCH_QD", &["1", "16"])
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let pairs = env_list("WALB_BENCH_PAIRS", &["lib", "fuse"]);
    let base = std::env::var_os("WALB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    std::fs::create_dir_all(&base).expect("bench dir");
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let dir = tmp.path();
    let root = nix::unistd::getuid().is_root();
    let total = mb << 20;
    println!(
        "walb device benchmark: {mb} MiB of random writes (each block at most once) per case, \
         then a flush; {rounds} rounds (the order of a pair flips every round; what a run left \
         dirty is synced before the next); device {} MiB, dir {}",
        DEV_BYTES >> 20,
        dir.display()
    );
    println!(
        "{:<16} {:>6} {:>3} {:>10} {:>10} {:>10} {:>8}  ratio per round",
        "path", "io", "qd", "MB/s", "p50 us", "p99 us", "ratio"
    );
    let show = |path: &str, io: usize, qd: usize, rs: &[Result], ratios: Option<&[f64]>| {
        let mbps = median(rs.iter().map(|r| r.mbps).collect());
        let p50 = median(rs.iter().map(|r| r.p50.as_secs_f64()).collect());
        let p99 = median(rs.iter().map(|r| r.p99.as_secs_f64()).collect());
        let (ratio, each) = match ratios {
            Some(v) => (
                format!("{:.2}", median(v.to_vec())),
                v.iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "{:<16} {:>5}k {:>3} {:>10.1} {:>10.1} {:>10.1} {:>8}  {}",
            path,
            io / 1024,
            qd,
            mbps,
            p50 * 1e6,
            p99 * 1e6,
            ratio,
            each
        );
    };
    for &io in &ios {
        for &qd in &qds {
            if pairs.iter().any(|p| p == "lib") {
                let (mut refs, mut subs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
                for round in 0..rounds {
                    let plain = plain_target(dir);
                    let emu = make_emu(dir, "lib");
                    let files = [dir.join("ldev.img"), dir.join("lib.ddev")];
                    let lib = Lib(emu.clone());
                    let (p, l) = pair_round((&plain, &[]), (&lib, &files), io, qd, total, round);
                    drop(lib);
                    stats(&emu, &l);
                    drop(emu);
                    drop(plain);
                    cleanup(dir);
                    ratios.push(l.mbps / p.mbps);
                    refs.push(p);
                    subs.push(l);
                }
                show("plain file", io, qd, &refs, None);
                show("emu library", io, qd, &subs, Some(&ratios));
            }
            if root && pairs.iter().any(|p| p == "fuse") {
                let (mut refs, mut subs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
                for round in 0..rounds {
                    let bare = bare_fuse_target(dir);
                    let emu = make_emu(dir, "fuse");
                    let fuse = emu_fuse_target(dir, &emu);
                    let files = [dir.join("ldev.img"), dir.join("fuse.ddev")];
                    let (b, f) = pair_round((&bare, &[]), (&fuse, &files), io, qd, total, round);
                    drop(fuse);
                    drop(bare);
                    stats(&emu, &f);
                    drop(emu);
                    cleanup(dir);
                    ratios.push(f.mbps / b.mbps);
                    refs.push(b);
                    subs.push(f);
                }
                show("bare fuse+loop", io, qd, &refs, None);
                show("emu fuse+loop", io, qd, &subs, Some(&ratios));
            }
        }
    }
    if root {
        // Anything left mounted (a failed unmount) is detached lazily.
        for m in ["mnt-bare", "mnt-emu"] {
            let _ = nix::mount::umount2(&dir.join(m), nix::mount::MntFlags::MNT_DETACH);
        }
    } else {
        println!("(FUSE + loop cases skipped: not root)");
    }
    println!(
        "ratio: median over the rounds of emu library / plain file and emu fuse+loop / bare \
         fuse+loop"
    );
}
