//! Pipeline benchmarks with real processes on loopback (needs root: the device is read
//! through its block device).
//!
//! `cargo bench -p walb-tests --bench pipeline` builds the release binaries, then:
//!
//! 1. **Full backup.** A data device of `WALB_BENCH_GB` GiB (default 4) is filled before
//!    the device starts with realistic content in 32 MiB extents: half random bytes, a
//!    quarter text-like (compresses about 3x), a quarter zeros (written: the device files
//!    are not sparse, like the disks they stand for; the log device is zeroed). Printed
//!    next to each other, all in the same run: a plain sequential read of the device (its
//!    block device, the bulk size per read), the same read through the emulated device's
//!    control socket (the storage's data path for an emulated device), the full backup (`full-backup s0 vol`: MB/s
//!    over the copy, from the archive entering FullSync to it being Archived, and end to
//!    end as the console sees it), and the wire's single-connection figure: one
//!    `walb_wire` call in this process streaming the same number of bytes of the same
//!    kinds of data with `chunk_bytes`, in bulk-sized chunks, with the daemons' transport
//!    settings. Target: full backup ≥ 0.8× the wire. Then, on the same cluster:
//!    `replicate a0 vol a1` to a second archive (the full copy of a0's base image: MB/s
//!    end to end against the wire figure; target: its copy ≥ 0.85× the wire); a hash
//!    backup after 1000 scattered writes made while the storage was stopped (scan rate,
//!    bulks differing, bytes sent), against reads of the same device made just before it:
//!    through the emulator's socket with the emulator's file cold (cache dropped) and
//!    warm (as the scan finds it), and a direct read of a0's base image (the archive's
//!    end reads around the cache, from the disk). Target: the scan ≥ 0.8× the warm read
//!    (same cache state). Then `replicate a0 vol a1` again (its diff rounds: time, bytes
//!    sent). Cache states: the "plain sequential read" drops the loop device's cache, not
//!    the emulator's file behind it, which stays warm for the copies; the wire is in
//!    memory.
//! 2. **Replication lag**, on a fresh cluster with a device of `WALB_BENCH_LAG_GB` GiB
//!    (default 1) after its full backup, under `WALB_BENCH_MBPS` MB/s (default 50) of
//!    random writes (`wdevc workload`, 16-112 KiB IOs, flushed every 10 ms) for
//!    `WALB_BENCH_LAG_S` seconds (default 60): every second a snapshot is taken at s0 (it
//!    covers every write flushed before it) and the time until a0 lists it as restorable
//!    is measured (polled every 20 ms over one QUIC connection). p50/p99 over the samples
//!    and the rate the writer reached (4 writers in parallel). Then the critical path of
//!    the samples from the daemons' logs: p50/p99 of every hop (`pipeline/lag_path.rs`).
//!    Target: p99 ≤ 0.5 s.
//!
//! Each phase also prints the CPU seconds per GB of every daemon and of the emulated
//! device's process, and the load average: the machine may be shared.
//!
//! Also: `WALB_BENCH_BULK_LB` (the full backup's bulk size in logical blocks, default
//! 8192 = 4 MiB), `WALB_BENCH_RING_MB` (the log device of the lag run, default 1024),
//! `WALB_BENCH_VERIFY=1` (after the lag run, restore a last snapshot and compare it with
//! the device), `WALB_BENCH_ONLY` (`full`, `lag`, or both comma-separated),
//! `WALB_BENCH_LOGS=DIR` (copy the daemons' logs of each phase to DIR/PHASE/),
//! `WALB_BENCH_PERF=DIR` (`perf record -e cpu-clock` of every daemon and the device
//! process during each phase, into DIR/PHASE-NAME.data; `WALB_BENCH_PERF_ARGS` adds
//! options, e.g. `--call-graph dwarf`; threads started after it attached are missed).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[path = "pipeline/lag_path.rs"]
mod lag_path;
use bytes::Bytes;
use walb_device::control::DeviceClient;
use walb_tests::{
    bench_wanted, build_bins, env_u64, is_root, last_number, proc_cpu_seconds, Cluster,
    ClusterOpts, Operator, VOL,
};
use walb_wire::msg::{
    ArchiveState, Command as Cmd, DiffRange, MetaDiffDto, Query, SnapDto, VolumeState,
    WdiffTransfer,
};
use walb_wire::tls::TlsState;
use walb_wire::{ClusterCa, IssueOptions, Node, NodeConfig, PeerId, Reply, Request, Role, Step};

/// Extent size of the device content.
const EXTENT: u64 = 32 << 20;
/// Size of the pieces content is generated in.
const PIECE: usize = 1 << 20;
/// Smallest and largest IO of the lag workload (mean 64 KiB).
const LAG_MIN_IO: u64 = 16 << 10;
const LAG_MAX_IO: u64 = 112 << 10;
/// The log device of the full-backup phase, MiB.
const FULL_RING_MB: u64 = 256;
/// Lag poll period.
const POLL: Duration = Duration::from_millis(20);
/// Writers of the lag workload.
const LAG_QD: u64 = 4;

/// The kinds of content, extent by extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Random,
    Text,
    Zero,
}

/// The kind of the extent holding byte `off`: R T R Z repeated.
fn kind_at(off: u64) -> Kind {
    match (off / EXTENT) % 4 {
        0 | 2 => Kind::Random,
        1 => Kind::Text,
        _ => Kind::Zero,
    }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Text-like bytes: words of a small vocabulary, spaces, punctuation and newlines
/// (zstd -1 makes about a third of it).
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: [&str; 48] = [
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
        "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
        "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
        "been", "if", "more", "when", "will", "would", "who", "so", "block",
    ];
    let mut v = Vec::with_capacity(len + 16);
    let mut n = 0u32;
    while v.len() < len {
        let r = rng.next();
        let w = WORDS[(r % WORDS.len() as u64) as usize];
        v.extend_from_slice(w.as_bytes());
        n += 1;
        match (r >> 32) % 23 {
            0 => v.extend_from_slice(b". "),
            1 => v.extend_from_slice(b", "),
            2 if n > 12 => {
                v.extend_from_slice(format!(" {}\n", r % 100_000).as_bytes());
                n = 0;
            }
            _ => v.push(b' '),
        }
    }
    v.truncate(len);
    v
}

/// Pools of content pieces to stream in the wire benchmark (generating gigabytes again
/// would only measure the generator).
struct Pools {
    random: Vec<Bytes>,
    text: Vec<Bytes>,
    zero: Bytes,
}

impl Pools {
    fn new(piece: usize) -> Pools {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let random = (0..16)
            .map(|_| {
                let mut b = vec![0u8; piece];
                rng.fill(&mut b);
                Bytes::from(b)
            })
            .collect();
        let text = (0..16)
            .map(|_| Bytes::from(text(&mut rng, piece)))
            .collect();
        Pools {
            random,
            text,
            zero: Bytes::from(vec![0u8; piece]),
        }
    }

    fn piece(&self, kind: Kind, i: usize) -> Bytes {
        match kind {
            Kind::Random => self.random[i % self.random.len()].clone(),
            Kind::Text => self.text[i % self.text.len()].clone(),
            Kind::Zero => self.zero.clone(),
        }
    }
}

/// Fills the device files: the data device with its content (zero extents too), the log
/// device with zeros. Both are written in full, as a disk is: writes into holes of sparse
/// files make the file system allocate, and every fsync on the machine then waits for
/// the data of those allocations (ext4 ordered mode); a block device has no such cost.
fn fill(ldev: &Path, ddev: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(ldev)?;
    let size = f.metadata()?.len();
    let zero = vec![0u8; PIECE];
    let mut off = 0u64;
    while off < size {
        let n = (PIECE as u64).min(size - off) as usize;
        f.write_all_at(&zero[..n], off)?;
        off += n as u64;
    }
    f.sync_all()?;
    fill_ddev(ddev)
}

/// Fills the data device file with its content; fsyncs it.
fn fill_ddev(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let size = f.metadata()?.len();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let texts: Vec<Vec<u8>> = (0..16).map(|_| text(&mut rng, PIECE)).collect();
    let mut buf = vec![0u8; PIECE];
    let mut off = 0u64;
    let mut i = 0usize;
    while off < size {
        let n = (PIECE as u64).min(size - off) as usize;
        match kind_at(off) {
            Kind::Random => {
                rng.fill(&mut buf[..n]);
                f.write_all_at(&buf[..n], off)?;
            }
            Kind::Text => {
                // Rotate so that no two pieces are equal.
                let t = &texts[i % texts.len()];
                let k = (i * 4099) % PIECE;
                buf[..PIECE - k].copy_from_slice(&t[k..]);
                buf[PIECE - k..].copy_from_slice(&t[..k]);
                f.write_all_at(&buf[..n], off)?;
            }
            Kind::Zero => {
                buf[..n].fill(0);
                f.write_all_at(&buf[..n], off)?;
            }
        }
        off += n as u64;
        i += 1;
    }
    f.sync_all()?;
    Ok(())
}

/// Drops the page cache of a file or block device (best effort).
fn drop_cache(path: &Path) {
    if let Ok(f) = File::open(path) {
        let _ = nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
    }
}

/// The machine's load averages (the benchmark shares the CPUs with whatever runs).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds per GB of `bytes` used by each process between two samples.
fn cpu_line(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    after
        .iter()
        .map(|(n, a)| {
            format!(
                "{n} {:.2}",
                (a - before.get(n).copied().unwrap_or(0.0)) / gb
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `perf record` of every cluster process while a phase runs (`WALB_BENCH_PERF=DIR`).
struct Perf(Vec<std::process::Child>);

impl Perf {
    fn start(c: &Cluster, phase: &str) -> Perf {
        let Ok(dir) = std::env::var("WALB_BENCH_PERF") else {
            return Perf(Vec::new());
        };
        let _ = std::fs::create_dir_all(&dir);
        let kids = c
            .pids()
            .into_iter()
            .filter_map(|(n, pid)| {
                let extra = std::env::var("WALB_BENCH_PERF_ARGS").unwrap_or_default();
                std::process::Command::new("perf")
                    .args(["record", "-q", "-e", "cpu-clock", "-F", "499"])
                    .args(extra.split_whitespace())
                    .arg("-p")
                    .arg(pid.to_string())
                    .arg("-o")
                    .arg(Path::new(&dir).join(format!("{phase}-{n}.data")))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        Perf(kids)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        for k in &mut self.0 {
            let pid = nix::unistd::Pid::from_raw(k.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = k.wait();
        }
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Reads `path` sequentially in pieces of `piece` bytes; returns the bytes read.
fn seq_read(path: &Path, piece: usize) -> Result<(u64, Duration)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; piece];
    let t0 = Instant::now();
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        n += r as u64;
    }
    Ok((n, t0.elapsed()))
}

/// Reads `size` bytes of emulated device `name` through its control socket (the way the
/// storage reads an emulated device for a full backup), in pieces of `piece` bytes.
fn socket_read(c: &Cluster, name: &str, size: u64, piece: usize) -> Result<Duration> {
    let sock = c.path().join("emu").join(format!("{name}.sock"));
    let dev = DeviceClient::connect(&sock)?;
    let mut buf = vec![0u8; piece];
    let t0 = Instant::now();
    let mut off = 0u64;
    while off < size {
        let n = piece.min((size - off) as usize);
        dev.read(off, &mut buf[..n])?;
        off += n as u64;
    }
    Ok(t0.elapsed())
}

fn tls(ca: &ClusterCa, role: Role, id: &str) -> Result<Arc<TlsState>> {
    let issued = ca.issue(&PeerId::new(role, id)?, &IssueOptions::default())?;
    Ok(TlsState::from_der(
        vec![ca.cert_der()],
        issued.cert_chain()?,
        issued.key_der()?,
    )?)
}

/// One walb_wire call in this process streaming `total` bytes laid out like the device
/// (same extent kinds) in chunks of `chunk` bytes with `chunk_bytes`; default transport
/// settings (those of the daemons). Returns the elapsed time.
fn wire_single(total: u64, chunk: usize) -> Result<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pools = Pools::new(chunk);
    rt.block_on(async {
        let ca = ClusterCa::generate("bench", 1)?;
        let loopback = "127.0.0.1:0".parse()?;
        let mut cfg = NodeConfig::new(loopback, true);
        let archive = Node::with_tls(cfg.clone(), tls(&ca, Role::Archive, "a0")?)?;
        let addr = archive.local_addr()?;
        cfg.listen = false;
        let storage = Node::with_tls(cfg, tls(&ca, Role::Proxy, "p0")?)?;
        let server = archive.clone();
        let srv = tokio::spawn(async move {
            let Some(mut inc) = server.accept().await else {
                bail!("no call");
            };
            inc.call.reply(Reply::Accepted).await?;
            let mut n = 0u64;
            while let Some(c) = inc.call.receiver.chunk().await? {
                n += c.len() as u64;
            }
            inc.call.sender.step(Step::Ack).await?;
            let _ = inc.call.sender.finish();
            anyhow::Ok(n)
        });
        let peer = storage.connect(addr).await?;
        let s = SnapDto { gid_b: 0, gid_e: 0 };
        let req = Request::WdiffTransfer(WdiffTransfer {
            vol: "bench".into(),
            uuid: [0; 16],
            size_lb: total.div_ceil(512).max(1),
            diff: MetaDiffDto {
                range: DiffRange {
                    snap_b: s,
                    snap_e: s,
                },
                mergeable: false,
                comp_diff: false,
                timestamp_s: 0,
                size: 0,
            },
        });
        let t0 = Instant::now();
        let mut call = peer.call(req).await?;
        call.receiver.reply().await?;
        let mut off = 0u64;
        let mut i = 0usize;
        while off < total {
            let n = (chunk as u64).min(total - off) as usize;
            let p = pools.piece(kind_at(off), i).slice(..n);
            call.sender.chunk_bytes(p).await?;
            off += n as u64;
            i += 1;
        }
        call.sender.end_bulk().await?;
        call.receiver.step().await?;
        let d = t0.elapsed();
        let got = srv.await??;
        anyhow::ensure!(got == total, "the wire run received {got} of {total} bytes");
        storage.close().await;
        archive.close().await;
        Ok(d)
    })
}

struct FullResult {
    copy: Duration,
    e2e: Duration,
    gid: u64,
}

/// `init-storage`, `stop`, then `full-backup` with the console in a thread while the
/// archive's state is polled.
fn full_backup(c: &Cluster, op: &Operator, bulk_lb: u64) -> Result<FullResult> {
    let wdev = c.wdev_path().display().to_string();
    c.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
    c.exec_ok(&["stop", "s0", VOL])?;
    drop_cache(&c.wdev_path());
    let bulk = bulk_lb.to_string();
    let t0 = Instant::now();
    let (copy, out) = std::thread::scope(|s| {
        let h = s.spawn(|| c.exec_ok(&["full-backup", "s0", VOL, "--bulk", &bulk]));
        let mut began = None;
        let mut ended = None;
        while !h.is_finished() {
            let st = op.state("a0", VOL).ok();
            if st == Some(VolumeState::Archive(ArchiveState::FullSync)) && began.is_none() {
                began = Some(Instant::now());
            }
            if st == Some(VolumeState::Archive(ArchiveState::Archived))
                && began.is_some()
                && ended.is_none()
            {
                ended = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = h
            .join()
            .map_err(|_| anyhow::anyhow!("console thread panicked"));
        let copy = match (began, ended) {
            (Some(b), Some(e)) => Ok(e - b),
            _ => Err(anyhow::anyhow!(
                "the archive was not seen in FullSync then Archived"
            )),
        };
        (copy, out)
    });
    let e2e = t0.elapsed();
    let out = out??;
    let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
    Ok(FullResult {
        copy: copy?,
        e2e,
        gid,
    })
}

struct LagResult {
    samples: Vec<Duration>,
    /// Each sample's gid and wall-clock times, for the critical path in the logs.
    path: Vec<lag_path::Sample>,
    write_line: String,
}

fn restorable_gids(op: &Operator) -> Result<Vec<u64>> {
    let r = op.request(
        "a0",
        Request::Query(Query::Restorable {
            vol: VOL.into(),
            all: false,
        }),
    )?;
    match r {
        Reply::Snapshots(s) => Ok(s.iter().filter_map(|s| s.gid).collect()),
        other => bail!("restorable: unexpected reply {other:?}"),
    }
}

fn lag(c: &Cluster, op: &Operator, seconds: u64, rate_mbps: u64) -> Result<LagResult> {
    let mean_io = (LAG_MIN_IO + LAG_MAX_IO) / 2;
    let iops = (rate_mbps * 1_000_000).div_ceil(mean_io);
    let mut w = c.workload(&[
        "--rate",
        &iops.to_string(),
        "--min-io",
        &LAG_MIN_IO.to_string(),
        "--max-io",
        &LAG_MAX_IO.to_string(),
        "--flush-interval",
        "10",
        // Writers in parallel, each on its own connection to the device: one writer
        // waits a round trip per IO and falls short of the rate on a busy machine.
        "--qd",
        &LAG_QD.to_string(),
        "--duration",
        &(seconds + 3).to_string(),
        "--seed",
        "7",
    ])?;
    std::thread::sleep(Duration::from_secs(1));
    let mut pending: Vec<(u64, Instant, std::time::SystemTime)> = Vec::new();
    let mut samples = Vec::new();
    let mut path = Vec::new();
    let start = Instant::now();
    let mut taken = 0u64;
    let deadline = start + Duration::from_secs(seconds + 60);
    while taken < seconds || !pending.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "{} snapshots not restorable 60 s after the last one:\n{}",
                pending.len(),
                c.logs()
            );
        }
        if taken < seconds && start.elapsed() >= Duration::from_secs(taken) {
            let (t0, asked) = (Instant::now(), std::time::SystemTime::now());
            let r = op.request("s0", Request::Command(Cmd::Snapshot { vol: VOL.into() }))?;
            let Reply::Gid(g) = r else {
                bail!("snapshot: unexpected reply {r:?}");
            };
            pending.push((g, t0, asked));
            taken += 1;
        }
        let gids = restorable_gids(op)?;
        let (now, seen) = (Instant::now(), std::time::SystemTime::now());
        pending.retain(|&(gid, t0, asked)| {
            if gids.contains(&gid) {
                samples.push(now - t0);
                path.push(lag_path::Sample { gid, asked, seen });
                false
            } else {
                true
            }
        });
        std::thread::sleep(POLL);
    }
    let st = w.wait()?;
    let mut out = String::new();
    if let Some(mut o) = w.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if !st.success() {
        let mut err = String::new();
        if let Some(mut e) = w.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!("wdevc workload failed ({st}): {err}");
    }
    Ok(LagResult {
        samples,
        path,
        write_line: out.trim().to_owned(),
    })
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Knobs of one run.
struct Knobs {
    gb: u64,
    lag_gb: u64,
    lag_s: u64,
    rate: u64,
    bulk_lb: u64,
    ring_mb: u64,
    verify: bool,
}

/// Runs `f` on a fresh cluster with a device of `gb` GiB; prints the logs if it fails and
/// copies them to `WALB_BENCH_LOGS/PHASE/` when asked.
fn with_cluster(
    gb: u64,
    ring_mb: u64,
    need_mb: u64,
    phase: &str,
    f: impl FnOnce(&Cluster, &Operator) -> Result<()>,
) -> Result<()> {
    let tmp = std::env::temp_dir();
    let free_mb = nix::sys::statvfs::statvfs(&tmp)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()) >> 20)
        .unwrap_or(u64::MAX);
    if free_mb < need_mb {
        bail!(
            "[{phase}] needs about {need_mb} MiB free in {} (device, log, image, diffs), has {free_mb} MiB: \
             lower WALB_BENCH_GB / WALB_BENCH_LAG_GB / WALB_BENCH_LAG_S or set TMPDIR",
            tmp.display()
        );
    }
    let opts = ClusterOpts {
        ddev_mb: gb << 10,
        ldev_mb: ring_mb,
        snapshot_interval: 1,
        fill: Some(fill),
        // The full phase also replicates to a second archive.
        archives: if phase == "full" { 2 } else { 1 },
        ..ClusterOpts::default()
    };
    let t = Instant::now();
    let c = Cluster::start(opts)?;
    println!(
        "[{phase}] setup (write the {gb} GiB device and its {ring_mb} MiB log, start it and the daemons): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let op = c.operator()?;
    let r = f(&c, &op);
    drop(op);
    std::io::stdout().flush()?;
    if let Ok(dir) = std::env::var("WALB_BENCH_LOGS") {
        let dir = Path::new(&dir).join(phase);
        std::fs::create_dir_all(&dir)?;
        for n in ["s0", "p0", "a0", "a1"] {
            let log = format!("{n}.log");
            let _ = std::fs::copy(c.path().join(&log), dir.join(&log));
        }
    }
    if r.is_err() {
        eprintln!("{}", c.logs());
    }
    r
}

fn full_phase(k: &Knobs, c: &Cluster, op: &Operator) -> Result<()> {
    let gb = k.gb;
    let size = gb << 30;
    let bulk = (k.bulk_lb * 512) as usize;
    drop_cache(&c.wdev_path());
    let (n, d) = seq_read(&c.wdev_path(), bulk)?;
    anyhow::ensure!(n == size, "read {n} bytes of the {size}-byte device");
    let read = mbps(n, d);
    let sock_d = socket_read(c, &c.wdev_name(), size, bulk)?;
    let me = std::process::id();
    let cpu0 = proc_cpu_seconds(me).unwrap_or(0.0);
    let wire_d = wire_single(size, bulk)?;
    let wire_cpu = proc_cpu_seconds(me).unwrap_or(0.0) - cpu0;
    let load = loadavg();
    let cpu0 = c.cpu_seconds();
    let wire = mbps(size, wire_d);
    let perf = Perf::start(c, "full");
    let f = full_backup(c, op, k.bulk_lb)?;
    let cpu1 = c.cpu_seconds();
    drop(perf);
    let full = mbps(size, f.copy);
    println!("-- full backup of {gb} GiB (load average before: {load})");
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s)",
        format!(
            "plain sequential read of the device ({} KiB reads)",
            bulk >> 10
        ),
        read,
        d.as_secs_f64()
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s)",
        "read through the emulator's socket (what the storage does)",
        mbps(size, sock_d),
        sock_d.as_secs_f64()
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s, {:.2} CPU s/GB both ends)",
        "wire, 1 connection, 1 call, chunk_bytes, in-process",
        wire,
        wire_d.as_secs_f64(),
        wire_cpu / (size as f64 / 1e9)
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s)  {:.2}x wire, {:.2}x read",
        "full backup, copy (archive FullSync -> Archived)",
        full,
        f.copy.as_secs_f64(),
        full / wire,
        full / read
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s, clean at gid {})",
        "full backup, end to end (console full-backup)",
        mbps(size, f.e2e),
        f.e2e.as_secs_f64(),
        f.gid
    );
    println!(
        "full backup CPU s/GB (whole command): {}",
        cpu_line(&cpu0, &cpu1, size)
    );
    println!(
        "target full backup >= 0.8x wire: {}",
        if full >= 0.8 * wire { "met" } else { "MISSED" }
    );
    let wire_s = wire_d.as_secs_f64();
    let bulk_arg = k.bulk_lb.to_string();
    replicate_timed(
        c,
        op,
        "replication a0 -> a1, first: full copy of the base image",
        size,
        wire_s,
        &["--bulk", &bulk_arg],
    )?;
    hash_after_changes(c, size, bulk, f.copy)?;
    replicate_timed(
        c,
        op,
        "replication a0 -> a1, then: the hash backup's diff",
        size,
        wire_s,
        &[],
    )
}

/// `replicate a0 vol a1` end to end (the console's command, until a1 holds the gid); what
/// a0 sent (its log's last rounds) and the daemons' CPU.
fn replicate_timed(
    c: &Cluster,
    op: &Operator,
    what: &str,
    size: u64,
    wire_s: f64,
    extra: &[&str],
) -> Result<()> {
    let a0_log = c.path().join("a0.log");
    let log_len = std::fs::metadata(&a0_log).map(|m| m.len()).unwrap_or(0);
    let cpu0 = c.cpu_seconds();
    let perf = Perf::start(c, "repl");
    let t = Instant::now();
    // The copy: a1 in FullSync (polled while the console runs).
    let (copy, out) = std::thread::scope(|s| {
        let mut args = vec!["replicate", "a0", VOL, "a1"];
        args.extend(extra);
        let h = s.spawn(move || c.exec_ok(&args));
        let (mut began, mut ended) = (None, None);
        while !h.is_finished() {
            let full =
                op.state("a1", VOL).ok() == Some(VolumeState::Archive(ArchiveState::FullSync));
            if full && began.is_none() {
                began = Some(Instant::now());
            }
            if !full && began.is_some() && ended.is_none() {
                ended = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = h
            .join()
            .map_err(|_| anyhow::anyhow!("console thread panicked"));
        let copy = match (began, ended) {
            (Some(b), Some(e)) => Some(e - b),
            _ => None,
        };
        (copy, out)
    });
    let out = out??;
    let d = t.elapsed();
    let cpu1 = c.cpu_seconds();
    drop(perf);
    let log = std::fs::read(&a0_log).unwrap_or_default();
    let new = String::from_utf8_lossy(log.get(log_len as usize..).unwrap_or_default());
    let diff_bytes: u64 = new
        .lines()
        .filter(|l| l.contains("diff replicated"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("bytes="))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum();
    let full = new.contains("sending the base image");
    println!("-- {what} (to gid {})", last_number(&out).unwrap_or(0));
    if full {
        if let Some(copy) = copy {
            println!(
                "{:<58} {:>8.1} MB/s ({:.2} s)  {:.2}x wire",
                "replicate, copy (a1 FullSync -> Archived), bulk of the full backup",
                mbps(size, copy),
                copy.as_secs_f64(),
                wire_s / copy.as_secs_f64()
            );
        }
        println!(
            "{:<58} {:>8.1} MB/s ({:.2} s)  {:.2}x wire",
            "replicate, end to end (console replicate)",
            mbps(size, d),
            d.as_secs_f64(),
            wire_s / d.as_secs_f64()
        );
        // The copy's window when it was seen, else the whole command (which includes it).
        let copy_s = copy.unwrap_or(d).as_secs_f64();
        println!(
            "target replication full copy >= 0.85x wire: {}",
            if wire_s / copy_s >= 0.85 {
                "met"
            } else {
                "MISSED"
            }
        );
    } else {
        println!(
            "{:<58} {:>8.2} s, {:.1} MB of diffs sent ({:.2}% of the device)",
            "replicate, end to end (console replicate)",
            d.as_secs_f64(),
            diff_bytes as f64 / 1e6,
            diff_bytes as f64 * 100.0 / size as f64
        );
    }
    println!(
        "replication CPU s/GB of device: {}",
        cpu_line(&cpu0, &cpu1, size)
    );
    Ok(())
}

/// Reads `path` front to back with direct IO where the file system has it (the way the
/// archive reads its base image), in pieces of `piece` bytes.
fn direct_read(path: &Path, piece: usize) -> Result<(u64, Duration)> {
    use walb_kernel::ldev::ReadAt;
    let r = walb_device::dio::DirectReader::open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let size = r.size()?;
    let mut buf = vec![0u8; piece];
    let t0 = Instant::now();
    let mut off = 0u64;
    while off < size {
        let n = piece.min((size - off) as usize);
        r.read_exact_at(&mut buf[..n], off)?;
        off += n as u64;
    }
    Ok((size, t0.elapsed()))
}

/// Hash backup of the same device after scattered writes made while the storage was
/// stopped: the scan rate against reads of the same device just before it, in the same
/// cache state, what differed and what was sent.
///
/// Cache states: the emulated device's content is a file of the emulator's; a read
/// through its socket with that file's cache dropped is the cold figure, the next one
/// (the first read brought the file back) the warm one, which is how the scan finds the
/// device. The archive reads its base image with direct IO (around the cache, always
/// from the disk): its own reference is a direct read of that image.
fn hash_after_changes(c: &Cluster, size: u64, piece: usize, full_copy: Duration) -> Result<()> {
    const WRITES: u64 = 1000;
    c.exec_ok(&["stop", "s0", VOL])?;
    c.write(WRITES, "64k", 7)?;
    drop_cache(&c.path().join("ddev"));
    let cold = socket_read(c, &c.wdev_name(), size, piece)?;
    let warm = socket_read(c, &c.wdev_name(), size, piece)?;
    let (base_n, base_d) = direct_read(&c.base_of("a0").join(VOL).join("base.img"), piece)?;
    let load = loadavg();
    let cpu0 = c.cpu_seconds();
    let perf = Perf::start(c, "hash");
    let t = Instant::now();
    c.exec_ok(&["hash-backup", "s0", VOL])?;
    let d = t.elapsed();
    let cpu1 = c.cpu_seconds();
    drop(perf);
    // A snapshot after it, restorable at a0 (what the replication then carries).
    c.exec_ok(&["snapshot", "s0", VOL, "a0"])?;
    let log = std::fs::read_to_string(c.path().join("s0.log")).unwrap_or_default();
    let field = |k: &str| -> Option<u64> {
        let l = log.lines().rev().find(|l| l.contains("hash scan done"))?;
        let v = l.split_whitespace().find_map(|w| w.strip_prefix(k))?;
        v.parse().ok()
    };
    let (bulks, differing, sent) = (
        field("bulks=").unwrap_or(0),
        field("differing=").unwrap_or(0),
        field("bytes_sent=").unwrap_or(0),
    );
    let (scan, warm_r) = (mbps(size, d), mbps(size, warm));
    println!(
        "-- hash backup after {WRITES} random writes of 4-64 KiB while stopped (load average before: {load})"
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s)",
        "device read through the emulator's socket, cold",
        mbps(size, cold),
        cold.as_secs_f64()
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s)",
        "device read through the emulator's socket, warm (as scanned)",
        warm_r,
        warm.as_secs_f64()
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s, direct IO, disk)",
        "a0's base image read as the archive reads it",
        mbps(base_n, base_d),
        base_d.as_secs_f64()
    );
    println!(
        "{:<58} {:>8.1} MB/s ({:.2} s)  {:.2}x warm read, {:.2}x cold read, {:.2}x base read; {:.2}x the full backup's copy time",
        "hash backup, end to end (console hash-backup), device scanned",
        scan,
        d.as_secs_f64(),
        scan / warm_r,
        scan / mbps(size, cold),
        scan / mbps(base_n, base_d),
        d.as_secs_f64() / full_copy.as_secs_f64()
    );
    println!(
        "bulks differing: {differing} of {bulks}; sent {:.1} MB ({:.2}% of the device)",
        sent as f64 / 1e6,
        sent as f64 * 100.0 / size as f64
    );
    println!(
        "hash backup CPU s/GB of device: {}",
        cpu_line(&cpu0, &cpu1, size)
    );
    println!(
        "target hash backup >= 0.8x read (the warm read, as the device is scanned): {}",
        if scan >= 0.8 * warm_r {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

fn lag_phase(k: &Knobs, c: &Cluster, op: &Operator) -> Result<()> {
    let gid = c.init_and_full_backup()?;
    println!(
        "[lag] full backup of the {} GiB device done (clean at gid {gid})",
        k.lag_gb
    );
    let load = loadavg();
    let cpu0 = c.cpu_seconds();
    let perf = Perf::start(c, "lag");
    let l = lag(c, op, k.lag_s, k.rate)?;
    let cpu1 = c.cpu_seconds();
    drop(perf);
    let mut s = l.samples.clone();
    s.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "-- replication lag (snapshot at s0 -> restorable at a0; load average before: {load})"
    );
    println!("writer: {}", l.write_line);
    let field = |name: &str| {
        l.write_line
            .split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|b| b.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let written = field("bytes") as u64;
    println!(
        "writer reached {:.1} MB/s of the {} MB/s asked ({LAG_QD} writers, flushed every 10 ms)",
        field("MB/s"),
        k.rate
    );
    println!(
        "CPU s/GB written: {}",
        cpu_line(&cpu0, &cpu1, written.max(1))
    );
    println!(
        "samples {}  p50 {:.0} ms  p99 {:.0} ms  min {:.0} ms  max {:.0} ms",
        s.len(),
        ms(pct(&s, 50.0)),
        ms(pct(&s, 99.0)),
        ms(pct(&s, 0.0)),
        ms(pct(&s, 100.0))
    );
    lag_path::breakdown(c.path(), &l.path);
    println!(
        "target lag p99 <= 0.5 s: {}",
        if pct(&s, 99.0) <= Duration::from_millis(500) {
            "met"
        } else {
            "MISSED"
        }
    );
    if k.verify {
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)?;
        println!("verified: restored gid {gid} equals the device");
    }
    Ok(())
}

fn main() -> Result<()> {
    if !is_root() {
        eprintln!(
            "skipped: the pipeline benchmark reads the device through its block device (needs root)"
        );
        return Ok(());
    }
    let k = Knobs {
        gb: env_u64("WALB_BENCH_GB", 4),
        lag_gb: env_u64("WALB_BENCH_LAG_GB", 1),
        lag_s: env_u64("WALB_BENCH_LAG_S", 60),
        rate: env_u64("WALB_BENCH_MBPS", 50),
        bulk_lb: env_u64("WALB_BENCH_BULK_LB", 8192),
        ring_mb: env_u64("WALB_BENCH_RING_MB", 1024),
        verify: env_u64("WALB_BENCH_VERIFY", 0) != 0,
    };
    build_bins()?;
    println!(
        "walb pipeline benchmark (release binaries, loopback, {} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "knobs: full-backup device {} GiB (WALB_BENCH_GB; 32 MiB extents: 50% random, 25% text-like, \
         25% zeros), full-backup bulk {} LB = {} KiB (WALB_BENCH_BULK_LB), lag device {} GiB \
         (WALB_BENCH_LAG_GB), lag run {} s (WALB_BENCH_LAG_S) at {} MB/s (WALB_BENCH_MBPS), \
         ring (log device) {} MiB for the lag run (WALB_BENCH_RING_MB), {FULL_RING_MB} MiB for \
         the full backup",
        k.gb,
        k.bulk_lb,
        k.bulk_lb / 2,
        k.lag_gb,
        k.lag_s,
        k.rate,
        k.ring_mb
    );
    println!(
        "daemons: walb-storage --snapshot-interval 1, walb-proxy, walb-archive; other options \
         at their defaults (--fg 2 --bg 1, --max-wlog-send-mb 128, --max-wdiff-send-mb 128, \
         --fsync-interval-mb 1024, transport zstd level 1)"
    );
    // One cluster per phase: the lag run keeps every diff it makes (3 GB at 50 MB/s for a
    // minute), which should not come on top of the full backup's device and image.
    if bench_wanted("full") {
        // The device, the log (nothing is logged during the copy: a small one), the images
        // of a0 and a1 (their non-zero three quarters).
        let need = (k.gb << 10) + FULL_RING_MB + (k.gb << 10) * 3 / 2 + 256;
        with_cluster(k.gb, FULL_RING_MB, need, "full", |c, op| {
            full_phase(&k, c, op)
        })?;
    }
    if bench_wanted("lag") {
        // The device, the log, the image, every diff of the run (kept by the archive), a
        // restored image when verifying.
        let dev = k.lag_gb << 10;
        let diffs = k.lag_s * k.rate * 1_000_000 / (1 << 20) * 11 / 10;
        let need = dev + k.ring_mb + dev + diffs + if k.verify { dev } else { 0 } + 256;
        with_cluster(k.lag_gb, k.ring_mb, need, "lag", |c, op| {
            lag_phase(&k, c, op)
        })?;
    }
    Ok(())
}
