//! walb-tools' volume-level scenarios (walb-tools.md §8.3) with real processes on
//! loopback: n4a (every stop/start pattern of the original's list, the volume stopped
//! and started on s0, p0, a0 with the console's `stop`/`start` under a background
//! writer), n4b (patterns drawn at random from the same list) and scenario1 (three
//! volumes on three devices of one storage, one thread each, a full backup then random
//! actions). Each check ends in SHA-256 of the restored snapshot = SHA-256 of the device.
//!
//! The random ones print their seed and replay it from `WALB_SEED`; scenario1 runs
//! `WALB_SCENARIO1_COUNT` actions per volume (default 5).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use walb_tests::{scenario, Cluster, ClusterOpts};

/// The volume of n4a/n4b.
const VOL: &str = walb_tests::VOL;

/// A small deterministic generator (splitmix64): the scenarios replay from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The seed of a random scenario: `WALB_SEED`, else the clock; printed so that a failure
/// can be replayed.
fn seed(what: &str) -> Result<u64> {
    let seed = match std::env::var("WALB_SEED") {
        Ok(s) => s
            .parse()
            .with_context(|| format!("WALB_SEED={s:?} is not a number"))?,
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    eprintln!("{what}: seed {seed} (replay with WALB_SEED={seed})");
    Ok(seed)
}

/// Every permutation of `items`, in lexicographic order of positions.
fn permutations(items: &[&'static str]) -> Vec<Vec<&'static str>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            out.push(p);
        }
    }
    out
}

/// One n4 pattern: the order the volume is stopped on its servers, and the order it is
/// started again.
type Pattern = (Vec<&'static str>, Vec<&'static str>);

/// walb-tools' n4a list: for each non-empty subset of {s0, p0, a0}, every stop order
/// with every start order (3 + 12 + 36 = 51 patterns).
fn n4_patterns() -> Vec<Pattern> {
    let subsets: [&[&'static str]; 7] = [
        &["s0"],
        &["p0"],
        &["a0"],
        &["s0", "p0"],
        &["s0", "a0"],
        &["p0", "a0"],
        &["s0", "p0", "a0"],
    ];
    let mut out = Vec::new();
    for set in subsets {
        for stop in permutations(set) {
            for start in permutations(&stop) {
                out.push((stop.clone(), start));
            }
        }
    }
    out
}

/// One pattern (walb-tools' `test_stop`): under a background writer, the volume is
/// stopped (graceful) on each server of `stop` in order, left 0.5 s, started on each of
/// `start` in order; then the writer stops, a snapshot becomes restorable at a0, and
/// its restored image equals the device.
fn stop_start(c: &Cluster, (stop, start): &Pattern, seed: u64) -> Result<()> {
    let t0 = std::time::Instant::now();
    let w = c.writer(0, seed)?;
    for n in stop {
        c.exec_ok(&["stop", n, VOL])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    for n in start {
        c.exec_ok(&["start", n, VOL])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    w.stop()?;
    for n in stop {
        // The steady state; a transfer still in flight shows its temporary state
        // (WlogRecv at a proxy, WdiffRecv at an archive) for a moment.
        let want = match n.as_bytes().first() {
            Some(b's') => "Target",
            Some(b'a') => "Archived",
            _ => "Started",
        };
        c.expect_state(n, want).context("after start")?;
    }
    let dev = c.device_sha256()?;
    let gid = c.snapshot()?;
    let img = c.restored_sha256("a0", gid)?;
    if img != dev {
        bail!(
            "pattern stop {stop:?} start {start:?}: gid {gid} restores {img}, the device is {dev}"
        );
    }
    eprintln!(
        "stop {stop:?} start {start:?}: gid {gid} equal ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A small device: each pattern restores and hashes it.
fn n4_opts() -> ClusterOpts {
    ClusterOpts {
        ddev_mb: 8,
        ldev_mb: 8,
        ..ClusterOpts::default()
    }
}

/// n4a: all 51 patterns in order, each ending in restored = device.
#[test]
fn n4a_every_stop_start_order() -> Result<()> {
    scenario(n4_opts(), |c| {
        c.init_and_full_backup()?;
        let patterns = n4_patterns();
        if patterns.len() != 51 {
            bail!("{} patterns, walb-tools' list has 51", patterns.len());
        }
        for (i, p) in patterns.iter().enumerate() {
            stop_start(c, p, 400 + i as u64).with_context(|| format!("pattern {i}"))?;
        }
        Ok(())
    })
}

/// n4b: 5 patterns drawn at random (seeded, replayable) from n4a's list.
#[test]
fn n4b_random_stop_start_orders() -> Result<()> {
    scenario(n4_opts(), |c| {
        let seed = seed("n4b")?;
        let mut rng = Rng(seed);
        c.init_and_full_backup()?;
        let mut patterns = n4_patterns();
        for k in 0..5 {
            let p = patterns.swap_remove(rng.below(patterns.len()));
            stop_start(c, &p, rng.next()).with_context(|| format!("pattern {k} of seed {seed}"))?;
        }
        Ok(())
    })
}

/// The number of random actions per volume in scenario1 (`WALB_SCENARIO1_COUNT`).
fn scenario1_count() -> Result<usize> {
    match std::env::var("WALB_SCENARIO1_COUNT") {
        Ok(s) => s
            .parse()
            .with_context(|| format!("WALB_SCENARIO1_COUNT={s:?} is not a number")),
        Err(_) => Ok(5),
    }
}

/// One volume of scenario1: its name, its device, its random source.
struct Vol<'a> {
    c: &'a Cluster,
    name: String,
    dev: usize,
    rng: Rng,
}

impl Vol<'_> {
    fn exec(&self, args: &[&str]) -> Result<String> {
        self.c.exec_ok(args)
    }

    /// Writes a few random blocks through the volume's device.
    fn write(&mut self) -> Result<()> {
        let seed = self.rng.next();
        self.c.write_on(self.dev, 20, "16k", seed)
    }

    /// The device equals `gid` restored at a0.
    fn check(&self, gid: u64, what: &str) -> Result<()> {
        let dev = self.c.device_sha256_of(self.dev)?;
        self.check_sha(gid, &dev, what)
    }

    /// `gid` restored at a0 hashes to `sha`.
    fn check_sha(&self, gid: u64, sha: &str, what: &str) -> Result<()> {
        let img = self.c.restored_sha256_vol("a0", &self.name, gid)?;
        if img != sha {
            bail!(
                "{} {what}: gid {gid} restores {img}, expected {sha}",
                self.name
            );
        }
        eprintln!("{} {what}: gid {gid} equal", self.name);
        Ok(())
    }

    fn snapshot(&self) -> Result<u64> {
        self.c.snapshot_vol("s0", &self.name, &["a0"])
    }

    /// Full backup: the volume initialized on s0 the first time, else stopped and
    /// cleared at a0; a full backup; its gid restores equal to the device.
    fn full_backup(&mut self) -> Result<()> {
        let v = self.name.clone();
        if self.c.state_of("s0", &v)? == "Clear" {
            let wdev = self.c.wdev_path_of(self.dev).display().to_string();
            self.exec(&["init-storage", "s0", &v, &wdev])?;
        } else {
            self.exec(&["stop", "s0", &v])?;
            if self.c.state_of("a0", &v)? != "Clear" {
                self.exec(&["clear", "a0", &v])?;
            }
        }
        self.write()?;
        let out = self.exec(&["full-backup", "s0", &v, "--timeout", "120"])?;
        let gid = walb_tests::last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        self.check(gid, "full backup")
    }

    /// Snapshot: writes, a snapshot restorable at a0, equal to the device.
    fn continuous(&mut self) -> Result<()> {
        self.write()?;
        let gid = self.snapshot()?;
        self.check(gid, "snapshot")
    }

    /// Hash backup: s0 goes Standby (stop force, reset, start standby), writes, a hash
    /// backup; equal to the device.
    fn hash_backup(&mut self) -> Result<()> {
        let v = self.name.clone();
        self.c.go_standby("s0", &v)?;
        self.write()?;
        let out = self.exec(&["hash-backup", "s0", &v, "--timeout", "120"])?;
        let gid = walb_tests::last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        self.check(gid, "hash backup")
    }

    /// Merge: under a writer three snapshots, the middle one disabled (at least two
    /// entries from the first to the last); merging first..last leaves the last
    /// restoring the same.
    fn merge(&mut self) -> Result<()> {
        let v = self.name.clone();
        let w = self.c.writer(self.dev, self.rng.next())?;
        std::thread::sleep(Duration::from_millis(500));
        let gid_b = self.snapshot()?;
        std::thread::sleep(Duration::from_secs(1));
        let gid_m = self.snapshot()?;
        std::thread::sleep(Duration::from_secs(1));
        let gid_e = self.snapshot()?;
        self.exec(&["disable-snapshot", "a0", &v, &gid_m.to_string()])?;
        let all: Vec<u64> = self
            .exec(&["restorable", "a0", &v, "all"])?
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        let pos = |g: u64| all.iter().position(|x| *x == g);
        match (pos(gid_b), pos(gid_e)) {
            (Some(b), Some(e)) if e >= b + 2 => {}
            _ => bail!("{v}: gids {gid_b}..{gid_e} are not two entries apart in {all:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
        w.stop()?;
        let before = self.c.restored_sha256_vol("a0", &v, gid_e)?;
        let (b, e) = (gid_b.to_string(), gid_e.to_string());
        self.exec(&["merge", "a0", &v, &b, &e, "--timeout", "120"])?;
        if self.c.restorable_gids_vol("a0", &v)?.contains(&gid_m) {
            bail!("{v}: disabled gid {gid_m} is restorable after the merge");
        }
        self.check_sha(gid_e, &before, "merge")
    }

    /// Apply: a snapshot under a writer; applied up to it, it restores the same.
    fn apply(&mut self) -> Result<()> {
        let v = self.name.clone();
        let w = self.c.writer(self.dev, self.rng.next())?;
        std::thread::sleep(Duration::from_millis(500));
        let gid = self.snapshot()?;
        std::thread::sleep(Duration::from_millis(500));
        w.stop()?;
        let before = self.c.restored_sha256_vol("a0", &v, gid)?;
        self.exec(&["apply", "a0", &v, &gid.to_string(), "--timeout", "120"])?;
        self.check_sha(gid, &before, "apply")
    }

    /// Stop/start: the volume stopped and started again on a random server; then
    /// writes reach a0 as before.
    fn stop_start(&mut self) -> Result<()> {
        let v = self.name.clone();
        let node = ["s0", "p0", "a0"][self.rng.below(3)];
        self.exec(&["stop", node, &v])?;
        std::thread::sleep(Duration::from_millis(500));
        self.exec(&["start", node, &v])?;
        self.write()?;
        let gid = self.snapshot()?;
        self.check(gid, &format!("stop/start {node}"))
    }

    /// A full backup, then `count` random actions.
    fn run(&mut self, count: usize) -> Result<()> {
        self.full_backup().context("the first full backup")?;
        for i in 0..count {
            let k = self.rng.below(6);
            let name = [
                "full backup",
                "snapshot",
                "hash backup",
                "merge",
                "apply",
                "stop/start",
            ][k];
            eprintln!("{} action {i}: {name}", self.name);
            match k {
                0 => self.full_backup(),
                1 => self.continuous(),
                2 => self.hash_backup(),
                3 => self.merge(),
                4 => self.apply(),
                _ => self.stop_start(),
            }
            .with_context(|| format!("{} action {i} ({name})", self.name))?;
        }
        Ok(())
    }
}

/// scenario1: one storage with three volumes on three devices (all daemons `--fg 6
/// --bg 3`), one thread per volume: a full backup, then random actions (full backup,
/// snapshot, hash backup, merge, apply, stop/start a random server), each verified by
/// SHA-256; seeded and replayable.
#[test]
fn scenario1_three_volumes_random_actions() -> Result<()> {
    let tasks: Vec<String> = ["--fg", "6", "--bg", "3"].map(String::from).to_vec();
    let opts = ClusterOpts {
        ddev_mb: 8,
        ldev_mb: 8,
        devices: 3,
        storage_args: tasks.clone(),
        proxy_args: tasks.clone(),
        archive_args: tasks,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        let seed = seed("scenario1")?;
        let count = scenario1_count()?;
        let c: &Cluster = c;
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    s.spawn(move || {
                        let mut v = Vol {
                            c,
                            name: format!("vol{i}"),
                            dev: i,
                            rng: Rng(seed.wrapping_add(i as u64)),
                        };
                        v.run(count)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a volume's thread panicked"))
                })
                .collect()
        });
        for r in results {
            r.with_context(|| format!("scenario1 seed {seed} (replay with WALB_SEED={seed})"))?;
        }
        Ok(())
    })
}
