//! A volume's writer: random writes through the device's control socket, every 4 KiB
//! block tagged with (volume, block, sequence), and the model of what a crash may leave.
//!
//! Per block the writer keeps the sequence last made durable by a flush that returned
//! and the sequences written (or attempted) since. After the device process dies the
//! writer reconnects once it is back and reads every block: each must hold its durable
//! tag or one written after it (never an older one, another block's or another volume's,
//! and zeros only where nothing was ever flushed) — no acknowledged write is lost. What
//! it found becomes the new durable state. While running it also reads back a random
//! block now and then. The executor pauses the writer (it flushes, then idles) to take a
//! snapshot of a quiet device.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use walb_device::control::DeviceClient;

/// Tagged block size.
pub const BLOCK: usize = 4096;
const MAGIC: &[u8; 8] = b"WALBCHAO";
/// Largest write, blocks.
const MAX_BLOCKS: u64 = 16;
/// Flush at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The content of block `block` written as sequence `seq` of volume `vol`.
pub fn tagged(vol: u32, block: u64, seq: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..8].copy_from_slice(MAGIC);
    b[8..12].copy_from_slice(&vol.to_le_bytes());
    b[12..20].copy_from_slice(&block.to_le_bytes());
    b[20..28].copy_from_slice(&seq.to_le_bytes());
    // The rest: a cheap pseudo-random pattern, so that blocks do not compress to nothing.
    let mut x = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ block ^ (u64::from(vol) << 48)) | 1;
    for c in b[32..].chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    b
}

/// What a block holds: `Ok(None)` zeros, `Ok(Some((vol, block, seq)))` a tag, `Err` a
/// description of anything else.
fn parse(b: &[u8]) -> std::result::Result<Option<(u32, u64, u64)>, String> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    if &b[..8] != MAGIC {
        return Err("neither zeros nor a tag".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let (vol, block, seq) = (u32_at(8), u64_at(12), u64_at(20));
    if tagged(vol, block, seq) != b {
        return Err(format!("a torn or corrupt tag ({vol}, {block}, {seq})"));
    }
    Ok(Some((vol, block, seq)))
}

/// One block's durable tag (0: none) and the tags written since.
#[derive(Debug, Clone, Default)]
struct BlockModel {
    durable: u64,
    since: Vec<u64>,
}

/// Checks one block read from the device against the model; the sequence it holds.
fn check_block(
    vol: u32,
    block: u64,
    m: &BlockModel,
    data: &[u8],
) -> std::result::Result<u64, String> {
    let what = match parse(data) {
        Ok(None) if m.durable == 0 => return Ok(0),
        Ok(None) => "zeros".to_string(),
        Ok(Some((v, b, s))) if v == vol && b == block => {
            if s == m.durable || m.since.contains(&s) {
                return Ok(s);
            }
            format!("tag seq {s}")
        }
        Ok(Some((v, b, s))) => format!("the tag of volume {v} block {b} seq {s}"),
        Err(e) => e,
    };
    Err(format!(
        "block {block}: {what}, but seq {} was flushed (written since: {:?})",
        m.durable, m.since
    ))
}

#[derive(Debug, Default)]
struct Ctl {
    stop: bool,
    pause_req: bool,
    paused: bool,
    /// Bytes to write as fast as possible (a log overflow).
    burst: u64,
}

/// Counters of a writer.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Writes acknowledged.
    pub writes: AtomicU64,
    /// Flushes acknowledged.
    pub flushes: AtomicU64,
    /// Writes or flushes that failed (device gone).
    pub errors: AtomicU64,
    /// Whole-device checks after a reconnection.
    pub crash_checks: AtomicU64,
    /// Blocks read back while running.
    pub readbacks: AtomicU64,
}

struct Shared {
    vol: u32,
    sock: PathBuf,
    blocks: u64,
    rate: u64,
    ctl: Mutex<Ctl>,
    cv: Condvar,
    stats: WriterStats,
    violations: Mutex<Vec<String>>,
}

/// A running writer (stopped on drop).
pub struct Writer {
    sh: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts writing `rate` writes a second to the first `bytes` of the device at `sock`.
    pub fn start(vol: u32, sock: PathBuf, bytes: u64, rate: u64, seed: u64) -> Writer {
        let sh = Arc::new(Shared {
            vol,
            sock,
            blocks: bytes / BLOCK as u64,
            rate: rate.max(1),
            ctl: Mutex::new(Ctl::default()),
            cv: Condvar::new(),
            stats: WriterStats::default(),
            violations: Mutex::new(Vec::new()),
        });
        let s2 = sh.clone();
        let thread = std::thread::Builder::new()
            .name(format!("writer-{vol}"))
            .spawn(move || run(&s2, seed))
            .ok();
        Writer { sh, thread }
    }

    fn ctl(&self) -> std::sync::MutexGuard<'_, Ctl> {
        self.sh.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the writer to flush and idle; waits until it does (fails after `limit`, e.g.
    /// while its device is down; the writer resumes then).
    pub fn pause(&self, limit: Duration) -> Result<()> {
        let mut c = self.ctl();
        c.pause_req = true;
        self.sh.cv.notify_all();
        let t0 = Instant::now();
        while !c.paused {
            let left = limit.saturating_sub(t0.elapsed());
            if left.is_zero() {
                c.pause_req = false;
                self.sh.cv.notify_all();
                bail!("the writer of volume {} did not quiesce", self.sh.vol);
            }
            c = self
                .sh
                .cv
                .wait_timeout(c, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(())
    }

    /// Lets a paused writer go on.
    pub fn resume(&self) {
        let mut c = self.ctl();
        c.pause_req = false;
        self.sh.cv.notify_all();
    }

    /// Writes `bytes` as fast as it can from now on; waits until done (or `limit`).
    pub fn burst(&self, bytes: u64, limit: Duration) -> Result<()> {
        self.ctl().burst = bytes;
        let t0 = Instant::now();
        while self.ctl().burst > 0 {
            if t0.elapsed() > limit {
                self.ctl().burst = 0;
                bail!("the burst of volume {} did not finish", self.sh.vol);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> &WriterStats {
        &self.sh.stats
    }

    /// Violations found so far (drained).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut *self.sh.violations.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.ctl().stop = true;
        self.sh.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn violation(sh: &Shared, what: String) {
    sh.violations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("volume {}: {what}", sh.vol));
}

/// The writer's state between iterations.
struct Run {
    model: Vec<BlockModel>,
    dirty: Vec<u64>,
    seq: u64,
    client: Option<DeviceClient>,
    /// The device went away since the last whole check.
    lost: bool,
    last_flush: Instant,
}

impl Run {
    fn flush(&mut self, sh: &Shared) -> bool {
        let Some(c) = &self.client else { return false };
        match c.flush() {
            Ok(()) => {
                sh.stats.flushes.fetch_add(1, Ordering::Relaxed);
                for b in self.dirty.drain(..) {
                    let m = &mut self.model[b as usize];
                    if let Some(&s) = m.since.last() {
                        m.durable = s;
                        m.since.clear();
                    }
                }
                self.last_flush = Instant::now();
                true
            }
            Err(_) => {
                self.drop_client(sh);
                false
            }
        }
    }

    fn drop_client(&mut self, sh: &Shared) {
        sh.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.client = None;
        self.lost = true;
    }

    /// Reads the whole device back after a loss; true when it could.
    fn check_all(&mut self, sh: &Shared) -> bool {
        let Some(c) = &self.client else { return false };
        let mut buf = vec![0u8; 64 * BLOCK];
        let mut bad = 0usize;
        let mut first = Vec::new();
        for start in (0..sh.blocks).step_by(64) {
            let n = (sh.blocks - start).min(64) as usize;
            if c.read(start * BLOCK as u64, &mut buf[..n * BLOCK]).is_err() {
                self.drop_client(sh);
                return false;
            }
            for i in 0..n {
                let b = start + i as u64;
                let m = &mut self.model[b as usize];
                match check_block(sh.vol, b, m, &buf[i * BLOCK..(i + 1) * BLOCK]) {
                    Ok(s) => {
                        m.durable = s;
                        m.since.clear();
                    }
                    Err(e) => {
                        bad += 1;
                        if first.len() < 5 {
                            first.push(e);
                        }
                    }
                }
            }
        }
        sh.stats.crash_checks.fetch_add(1, Ordering::Relaxed);
        if bad > 0 {
            violation(
                sh,
                format!(
                    "after the device restarted, {bad} blocks lost acknowledged writes: {}",
                    first.join("; ")
                ),
            );
        }
        self.dirty.clear();
        self.lost = false;
        true
    }

    fn readback(&mut self, sh: &Shared, block: u64) {
        let Some(c) = &self.client else { return };
        let mut buf = vec![0u8; BLOCK];
        if c.read(block * BLOCK as u64, &mut buf).is_err() {
            self.drop_client(sh);
            return;
        }
        sh.stats.readbacks.fetch_add(1, Ordering::Relaxed);
        // Without a crash the block holds the last write exactly.
        let m = &self.model[block as usize];
        let want = m.since.last().copied().unwrap_or(m.durable);
        match parse(&buf) {
            Ok(Some((v, b, s))) if v == sh.vol && b == block && s == want => {}
            Ok(None) if want == 0 => {}
            other => violation(
                sh,
                format!("block {block} reads back as {other:?}, the last write was seq {want}"),
            ),
        }
    }
}

fn run(sh: &Shared, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(sh.vol) << 32));
    let mut r = Run {
        model: vec![BlockModel::default(); sh.blocks as usize],
        dirty: Vec::new(),
        seq: 0,
        client: None,
        lost: false,
        last_flush: Instant::now(),
    };
    let interval = Duration::from_micros(1_000_000 / sh.rate);
    loop {
        let burst;
        {
            let mut c = sh.ctl.lock().unwrap_or_else(|p| p.into_inner());
            if c.stop {
                return;
            }
            if c.pause_req && r.client.is_some() && !r.lost {
                drop(c);
                let flushed = r.flush(sh);
                c = sh.ctl.lock().unwrap_or_else(|p| p.into_inner());
                if flushed {
                    c.paused = true;
                    sh.cv.notify_all();
                    while c.pause_req && !c.stop {
                        c = sh.cv.wait(c).unwrap_or_else(|p| p.into_inner());
                    }
                    c.paused = false;
                }
                continue;
            }
            burst = c.burst;
        }
        if r.client.is_none() {
            match DeviceClient::connect(&sh.sock) {
                Ok(c) => r.client = Some(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        if r.lost && !r.check_all(sh) {
            continue;
        }
        let n = rng.random_range(1..=MAX_BLOCKS.min(sh.blocks));
        let start = rng.random_range(0..=sh.blocks - n);
        r.seq += 1;
        let mut data = Vec::with_capacity(n as usize * BLOCK);
        for b in start..start + n {
            data.extend_from_slice(&tagged(sh.vol, b, r.seq));
            r.model[b as usize].since.push(r.seq);
            r.dirty.push(b);
        }
        let ok = r
            .client
            .as_ref()
            .is_some_and(|c| c.write(start * BLOCK as u64, &data, false).is_ok());
        if !ok {
            r.drop_client(sh);
            continue;
        }
        sh.stats.writes.fetch_add(1, Ordering::Relaxed);
        if burst > 0 {
            let mut c = sh.ctl.lock().unwrap_or_else(|p| p.into_inner());
            c.burst = c.burst.saturating_sub(data.len() as u64);
            if c.burst == 0 {
                drop(c);
                r.flush(sh);
            }
            continue;
        }
        if r.last_flush.elapsed() >= FLUSH_EVERY {
            r.flush(sh);
        }
        if r.seq % 25 == 0 {
            let b = rng.random_range(0..sh.blocks);
            r.readback(sh, b);
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_may_hold_its_durable_tag_or_a_later_one_only() {
        let m = BlockModel {
            durable: 5,
            since: vec![7, 9],
        };
        assert_eq!(check_block(1, 3, &m, &tagged(1, 3, 5)), Ok(5));
        assert_eq!(check_block(1, 3, &m, &tagged(1, 3, 9)), Ok(9));
        assert!(check_block(1, 3, &m, &tagged(1, 3, 4)).is_err());
        assert!(check_block(1, 3, &m, &tagged(2, 3, 5)).is_err());
        assert!(check_block(1, 3, &m, &tagged(1, 4, 5)).is_err());
        assert!(check_block(1, 3, &m, &[0u8; BLOCK]).is_err());
        let mut torn = tagged(1, 3, 7);
        torn[BLOCK - 1] ^= 1;
        assert!(check_block(1, 3, &m, &torn).is_err());
        let fresh = BlockModel::default();
        assert_eq!(check_block(1, 3, &fresh, &[0u8; BLOCK]), Ok(0));
        assert_eq!(check_block(1, 3, &fresh, &[0u8; BLOCK]), Ok(0));
    }
}
