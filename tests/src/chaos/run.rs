//! The executor: sets the cluster up, runs the schedule's steps in order (late when an
//! operation took long, never skipped), checks the invariants while it runs and once the
//! faults stopped, and keeps the operation log.
//!
//! Invariants:
//! - every gid an archive lists as restorable, among the snapshots taken on a quiet
//!   device, restores to exactly the bytes hashed then (a sample after each snapshot and
//!   verify step; every outstanding one at the end, at a0 and at a1 for replicas);
//! - no acknowledged (flushed) write is lost across a device crash (the writers);
//! - a killed daemon restarts into a steady state for every volume;
//! - once faults stop: every volume reaches a steady state (Target at the storage, an
//!   operator's repair counted when it needs one), a new snapshot becomes restorable, no
//!   temporary file is left in any base directory, and synchronized archives list the
//!   same restorable snapshots from the last replication on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::model::{Counts, Snap, VolModel};
use super::schedule::{generate, Action, Fault, Op, Plan, Step};
use super::topology::{Topology, World, DDEV_MB, LDEV_MB};
use super::writer::Writer;
use crate::last_number;

const STORAGE_STEADY: &[&str] = &["Clear", "SyncReady", "Stopped", "Target", "Standby"];
const PROXY_STEADY: &[&str] = &["Clear", "Stopped", "Started"];
/// How often the operator's watch looks for overflowed volumes during the run.
const WATCH_EVERY: Duration = Duration::from_secs(60);

const ARCHIVE_STEADY: &[&str] = &["Clear", "SyncReady", "Archived", "Stopped"];

/// How a run goes, beyond its plan.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the run's directory is made.
    pub dir: PathBuf,
    /// Keep the directory when an invariant was violated.
    pub keep: bool,
    /// Writes a second per volume.
    pub rate: u64,
    /// Restores compared per verify step.
    pub sample: usize,
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The plan run.
    pub plan: Option<Plan>,
    /// Steps scheduled.
    pub steps: usize,
    /// Counters.
    pub counts: Counts,
    /// Violated invariants.
    pub violations: Vec<String>,
    /// The operation log.
    pub log: Vec<String>,
    /// Daemon log tails (filled on failure).
    pub tails: String,
    /// The kept directory, if any.
    pub kept: Option<PathBuf>,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

impl Report {
    /// The summary: counts, and on failure the seed, the violations, the operation log
    /// and the daemons' log tails.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mut s = String::new();
        if let Some(p) = &self.plan {
            s += &format!(
                "walb-chaos --seed {} --duration {} --volumes {} --faults {}\n",
                p.seed,
                p.duration_s,
                p.volumes,
                if p.faults { "on" } else { "off" }
            );
        }
        s += &format!(
            "{} steps, {:.0} s; {} operations, {} faults, {} writes acknowledged\n",
            self.steps,
            self.elapsed_s,
            c.total_ops(),
            c.total_faults(),
            c.writes
        );
        s += "operations (ok/failed or refused):\n";
        for (k, (ok, bad)) in &c.ops {
            s += &format!("  {k:<20} {ok:>5} / {bad}\n");
        }
        s += "faults:\n";
        for (k, n) in &c.faults {
            s += &format!("  {k:<20} {n:>5}\n");
        }
        for (k, n) in &c.skipped {
            s += &format!("  {k:<20} {n:>5} skipped\n");
        }
        s += &format!(
            "checks passed: {} restores sampled during the run, {} restores of every \
             outstanding snapshot at the end, {} steady-state checks, {} whole-device checks \
             after device crashes, {} blocks read back; {} quiet snapshots; {} overflowed \
             volumes levelled by the operator's watch during the run; {} repairs at the end\n",
            c.sampled_restores,
            c.final_restores,
            c.steady_checks,
            c.crash_checks,
            c.readbacks,
            c.snapshots,
            c.watched,
            c.repairs
        );
        if self.violations.is_empty() {
            s += "no invariant violated\n";
            return s;
        }
        s += &format!("{} VIOLATIONS:\n", self.violations.len());
        for v in &self.violations {
            s += &format!("  {v}\n");
        }
        if let Some(p) = &self.plan {
            s += &format!(
                "seed {} (replay: the same seed, duration and volumes)\n",
                p.seed
            );
        }
        s += "operation log:\n";
        for l in &self.log {
            s += &format!("  {l}\n");
        }
        s += &self.tails;
        if let Some(k) = &self.kept {
            s += &format!("kept: {}\n", k.display());
        }
        s
    }
}

struct Chaos {
    plan: Plan,
    opts: Options,
    world: World,
    writers: Vec<Writer>,
    vols: Vec<VolModel>,
    counts: Counts,
    violations: Vec<String>,
    log: Vec<String>,
    t0: Instant,
    /// The writers stay paused (the final checks).
    quiet: bool,
}

/// Runs `plan`: the whole run, from the cluster's set-up to the final checks.
pub fn run(plan: Plan, opts: Options) -> Result<Report> {
    let topo = Topology::new(plan.volumes);
    let plan = Plan {
        volumes: topo.volumes,
        ..plan
    };
    let steps = generate(&plan);
    let dir = opts
        .dir
        .join(format!("walb-chaos-{}-{}", plan.seed, std::process::id()));
    let world = World::start(topo, dir)?;
    let mut c = Chaos {
        plan,
        opts,
        world,
        writers: Vec::new(),
        vols: Vec::new(),
        counts: Counts::default(),
        violations: Vec::new(),
        log: Vec::new(),
        t0: Instant::now(),
        quiet: false,
    };
    let r = c.drive(&steps);
    if let Err(e) = r {
        c.violations.push(format!("the run stopped: {e:#}"));
    }
    let mut report = Report {
        plan: Some(c.plan),
        steps: steps.len(),
        elapsed_s: c.t0.elapsed().as_secs_f64(),
        ..Report::default()
    };
    for w in &c.writers {
        let s = w.stats();
        use std::sync::atomic::Ordering::Relaxed;
        c.counts.writes += s.writes.load(Relaxed);
        c.counts.crash_checks += s.crash_checks.load(Relaxed);
        c.counts.readbacks += s.readbacks.load(Relaxed);
    }
    if !c.violations.is_empty() {
        let mut tails = String::new();
        for n in c.world.topo.nodes() {
            tails += &format!("--- {n}.log (tail)\n{}\n", c.world.log_tail(&n, 25));
        }
        report.tails = tails;
        if c.opts.keep {
            c.world.keep();
            report.kept = Some(c.world.path().to_path_buf());
        }
    }
    report.counts = std::mem::take(&mut c.counts);
    report.violations = std::mem::take(&mut c.violations);
    report.log = std::mem::take(&mut c.log);
    Ok(report)
}

fn sha256_prefix(path: &Path, size: u64) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = f.take(size);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        n_total += n as u64;
        h.update(&buf[..n]);
    }
    if n_total != size {
        bail!(
            "{} holds {n_total} bytes, fewer than {size}",
            path.display()
        );
    }
    Ok(hex::encode(h.finalize()))
}

/// The gids of `restorable` output (first column).
fn gids(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// `(B, E)` of every diff-list line `|B|-->|E| ...` (`|B,x|` for dirty ones).
fn diff_ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let (b, e) = l.split_once("-->")?;
            let num = |s: &str| -> Option<u64> {
                s.trim_start_matches('|')
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            };
            Some((num(b)?, num(e)?))
        })
        .collect()
}

impl Chaos {
    fn note(&mut self, line: String) {
        let l = format!("{:>7.1}s {line}", self.t0.elapsed().as_secs_f64());
        self.log.push(l);
    }

    fn violation(&mut self, what: String) {
        self.note(format!("VIOLATION {what}"));
        self.violations.push(what);
    }

    fn vol(&self, i: usize) -> String {
        self.world.topo.vol(i)
    }

    fn storage(&self, i: usize) -> String {
        self.world.topo.storage_of(i)
    }

    fn drive(&mut self, steps: &[Step]) -> Result<()> {
        self.setup()?;
        self.note(format!("set up; {} steps scheduled", steps.len()));
        let start = Instant::now();
        let mut watched = start;
        for (n, step) in steps.iter().enumerate() {
            if watched.elapsed() >= WATCH_EVERY {
                self.watch();
                watched = Instant::now();
            }
            let due = start + Duration::from_millis(step.at_ms);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let mut rng = ChaCha8Rng::seed_from_u64(self.plan.seed ^ ((n as u64) << 20));
            let r = match &step.action {
                Action::Op(op) => {
                    let r = self.op(op, &mut rng);
                    self.counts.op(op.kind(), r.is_ok());
                    r
                }
                Action::Fault(f) => {
                    let r = self.fault(f);
                    if r.is_ok() && !f.is_recovery() {
                        *self.counts.faults.entry(f.kind().into()).or_default() += 1;
                    }
                    r
                }
            };
            match r {
                Ok(d) => self.note(format!("#{n} {} -> ok {d}", step.action)),
                Err(e) => self.note(format!(
                    "#{n} {} -> failed: {}",
                    step.action,
                    format!("{e:#}").replace('\n', " | ")
                )),
            }
            self.collect_writer_violations();
        }
        self.note("faults stop; settling".into());
        self.settle()?;
        self.collect_writer_violations();
        Ok(())
    }

    /// The operator's watch: an operator alerted to an overflow levels the volume (a hash
    /// backup, or a full one when the archive has no base) instead of leaving it stopped
    /// until a scheduled backup happens to pick it. Not part of the seeded schedule: it
    /// answers what the faults did.
    fn watch(&mut self) {
        for i in 0..self.world.topo.volumes {
            let (v, s) = (self.vol(i), self.storage(i));
            if self.state(&s, &v) != "Stopped" {
                continue;
            }
            if !self.overflowed(&s, &v) {
                continue;
            }
            let r = self.level(i);
            if r.is_ok() {
                self.counts.watched += 1;
            }
            let what = match r {
                Ok(how) => format!("ok {how}"),
                Err(e) => format!("failed: {}", format!("{e:#}").replace('\n', " | ")),
            };
            self.note(format!("watch: {v} overflowed at {s}: {what}"));
        }
        self.kick_all();
    }

    fn collect_writer_violations(&mut self) {
        let found: Vec<String> = self
            .writers
            .iter()
            .flat_map(|w| w.take_violations())
            .collect();
        for v in found {
            self.violation(v);
        }
    }

    fn setup(&mut self) -> Result<()> {
        for i in 0..self.world.topo.volumes {
            let (v, s, dev) = (self.vol(i), self.storage(i), self.world.topo.dev(i));
            self.world.exec(&["init-storage", &s, &v, &dev])?;
            self.world.exec(&["stop", &s, &v])?;
            let out = self
                .world
                .exec_peers(&["full-backup", &s, &v, "--timeout", "300"])?;
            let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
            let size = DDEV_MB << 20;
            let sha = self.device_sha(i, size)?;
            self.vols.push(VolModel {
                snaps: vec![Snap {
                    gid,
                    sha,
                    size,
                    verified: 0,
                }],
                size,
                ..VolModel::default()
            });
            self.note(format!("{v} on {s}: full backup clean at gid {gid}"));
        }
        for i in 0..self.world.topo.volumes {
            let w = Writer::start(
                i as u32,
                self.world.device_socket(i),
                DDEV_MB << 20,
                self.opts.rate,
                self.plan.seed,
            );
            self.writers.push(w);
        }
        Ok(())
    }

    /// SHA-256 of the first `size` bytes of volume `i`'s device.
    fn device_sha(&self, i: usize, size: u64) -> Result<String> {
        let d = self.world.device(i)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            d.read(off, &mut buf[..n])?;
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok(hex::encode(h.finalize()))
    }

    /// A snapshot of a quiet device: the writer paused and flushed, the device hashed,
    /// the snapshot taken, the writer resumed.
    fn quiet_snapshot(&mut self, i: usize) -> Result<u64> {
        let (v, s) = (self.vol(i), self.storage(i));
        self.writers[i].pause(Duration::from_secs(30))?;
        let r = (|| {
            let size = self.vols[i].size;
            let sha = self.device_sha(i, size)?;
            let out = self.world.exec(&["snapshot", &s, &v])?;
            let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
            anyhow::Ok((gid, sha, size))
        })();
        if !self.quiet {
            self.writers[i].resume();
        }
        let (gid, sha, size) = r?;
        self.vols[i].snaps.push(Snap {
            gid,
            sha,
            size,
            verified: 0,
        });
        self.counts.snapshots += 1;
        Ok(gid)
    }

    fn restorable(&self, archive: &str, i: usize) -> Result<Vec<u64>> {
        Ok(gids(&self.world.exec(&[
            "restorable",
            archive,
            &self.vol(i),
        ])?))
    }

    /// Restores `gid` at `archive` and compares it with the model. `Ok(false)` when the
    /// restore itself failed (not a wrong image: that is a violation).
    fn check_restore(&mut self, archive: &str, i: usize, gid: u64) -> Result<()> {
        let v = self.vol(i);
        let Some(snap) = self.vols[i].snap(gid).cloned() else {
            return Ok(());
        };
        let g = gid.to_string();
        let out = match self
            .world
            .exec(&["restore", archive, &v, &g, "--timeout", "180"])
        {
            Ok(o) => o,
            // The archives' apply policy may have folded it into the base since it was
            // listed: no longer restorable is not a wrong restore.
            Err(_) if self.restorable(archive, i).is_ok_and(|l| !l.contains(&gid)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let path = match out.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(p) => PathBuf::from(p.trim()),
            None => bail!("restore printed no path"),
        };
        let sha = sha256_prefix(&path, snap.size);
        let del = self.world.exec(&["del-restored", archive, &v, &g]);
        let sha = sha?;
        if sha != snap.sha {
            self.violation(format!(
                "{v} gid {gid} restored at {archive} differs from the device when the \
                 snapshot was taken ({sha} != {})",
                snap.sha
            ));
        } else if let Some(s) = self.vols[i].snaps.iter_mut().find(|s| s.gid == gid) {
            s.verified += 1;
        }
        del?;
        Ok(())
    }

    fn verify_sample(&mut self, i: usize, rng: &mut ChaCha8Rng) -> Result<String> {
        let mut archives = vec!["a0"];
        if self.vols[i].replicated {
            archives.push("a1");
        }
        let a = archives[rng.random_range(0..archives.len())];
        let listed = self.restorable(a, i)?;
        let known: Vec<u64> = listed
            .iter()
            .copied()
            .filter(|g| self.vols[i].snap(*g).is_some())
            .collect();
        if known.is_empty() {
            return Ok(format!("{a}: none of the quiet snapshots is restorable"));
        }
        // The newest never checked first, then random ones.
        let mut pick: Vec<u64> = known
            .iter()
            .rev()
            .copied()
            .filter(|g| self.vols[i].snap(*g).is_some_and(|s| s.verified == 0))
            .take(1)
            .collect();
        while pick.len() < self.opts.sample.min(known.len()) {
            let g = known[rng.random_range(0..known.len())];
            if !pick.contains(&g) {
                pick.push(g);
            }
        }
        for g in &pick {
            self.check_restore(a, i, *g)?;
            self.counts.sampled_restores += 1;
        }
        Ok(format!("{a}: restored {pick:?} of {} listed", listed.len()))
    }

    fn op(&mut self, op: &Op, rng: &mut ChaCha8Rng) -> Result<String> {
        let w = &self.world;
        match op {
            Op::Snapshot { vol } => {
                let gid = self.quiet_snapshot(*vol)?;
                Ok(format!("gid {gid}"))
            }
            Op::Verify { vol } => self.verify_sample(*vol, rng),
            Op::Merge { vol } => {
                let v = self.vol(*vol);
                let ranges = diff_ranges(&w.exec(&["diff-list", "a0", &v])?);
                if ranges.len() < 2 {
                    return Ok("fewer than two diffs".into());
                }
                let a = rng.random_range(0..ranges.len() - 1);
                let b = rng.random_range(a + 1..ranges.len().min(a + 8));
                let (gb, ge) = (ranges[a].0.to_string(), ranges[b].1.to_string());
                w.exec(&["merge", "a0", &v, &gb, &ge, "--timeout", "120"])?;
                Ok(format!("{gb}..{ge}"))
            }
            Op::Apply { vol } => {
                let v = self.vol(*vol);
                let listed = self.restorable("a0", *vol)?;
                if listed.len() < 3 {
                    return Ok("too few snapshots to apply".into());
                }
                // Not the newest two: something stays to restore.
                let g = listed[rng.random_range(0..listed.len() - 2)].to_string();
                w.exec(&["apply", "a0", &v, &g, "--timeout", "120"])?;
                if self.vols[*vol].syncing {
                    w.exec(&["apply", "a1", &v, &g, "--timeout", "120"])?;
                }
                Ok(format!("up to {g}"))
            }
            Op::FullBackup { vol } => {
                // A full backup starts over: the archive reset (its backups dropped),
                // the storage stopped (walb-tools' m1). Earlier faults may have done part
                // of it (an archive a cut-short backup left SyncReady, a storage its log
                // overflow stopped): only what is still needed is done.
                let (v, s) = (self.vol(*vol), self.storage(*vol));
                match self.state("a0", &v).as_str() {
                    "SyncReady" | "Clear" => {}
                    "Stopped" => w.exec(&["reset", "a0", &v]).map(drop)?,
                    _ => {
                        w.exec(&["stop", "a0", &v, "--timeout", "120"])?;
                        w.exec(&["reset", "a0", &v])?;
                    }
                }
                self.restarted_gids(*vol);
                self.stop_storage_if_running(*vol)?;
                let out = self
                    .world
                    .exec_peers(&["full-backup", &s, &v, "--timeout", "300"]);
                self.backed_up(*vol);
                Ok(out?.trim().to_string())
            }
            Op::HashBackup { vol } => self.level(*vol),
            Op::Replicate { vol, sync } => {
                let v = self.vol(*vol);
                let mut args = vec!["replicate", "a0", &v, "a1", "--timeout", "300"];
                if *sync {
                    args.push("--sync");
                }
                let out = w.exec_peers(&args)?;
                let gid = last_number(&out).unwrap_or(0);
                let m = &mut self.vols[*vol];
                m.replicated = true;
                m.syncing |= *sync;
                m.replicated_at = gid;
                Ok(format!("gid {gid}"))
            }
            Op::StopSync { vol } => {
                if !self.vols[*vol].syncing {
                    return Ok("not synchronizing".into());
                }
                w.exec_peers(&["stop-synchronizing", "a1", &self.vol(*vol)])?;
                self.vols[*vol].syncing = false;
                Ok(String::new())
            }
            Op::StopStart { node, vol } => {
                let v = self.vol(*vol);
                let node = if node.starts_with('s') {
                    self.storage(*vol)
                } else {
                    node.clone()
                };
                w.exec(&["stop", &node, &v, "--timeout", "120"])?;
                w.exec(&["start", &node, &v, "--timeout", "120"])?;
                Ok(node)
            }
            Op::Reset { vol } => {
                let (v, s) = (self.vol(*vol), self.storage(*vol));
                w.exec(&["stop", &s, &v, "force"])?;
                w.exec(&["reset", &s, &v])?;
                w.exec(&["start", &s, &v, "standby"])?;
                let r = w.exec_peers(&["hash-backup", &s, &v, "--timeout", "300"]);
                self.backed_up(*vol);
                r.map(|_| String::new())
            }
            Op::Resize { vol } => {
                let (v, s) = (self.vol(*vol), self.storage(*vol));
                let size = self.vols[*vol].size + (1 << 20);
                if size > (DDEV_MB + 8) << 20 {
                    return Ok("grown enough".into());
                }
                w.grow_ddev(*vol, size)?;
                let sz = size.to_string();
                // The archives' images first: a proxy refuses to send a diff of a
                // volume larger than the archive's image (smaller-lv-size).
                w.exec(&["resize", "a0", &v, &sz])?;
                if self.vols[*vol].replicated {
                    w.exec(&["resize", "a1", &v, &sz])?;
                }
                w.exec(&["resize", &s, &v, &sz])?;
                self.vols[*vol].size = size;
                Ok(format!("to {size}"))
            }
            Op::DisableSnapshot { vol } => {
                let v = self.vol(*vol);
                let listed = self.restorable("a0", *vol)?;
                if listed.len() < 2 {
                    return Ok("too few snapshots".into());
                }
                let g = listed[rng.random_range(0..listed.len() - 1)];
                let gs = g.to_string();
                w.exec(&["disable-snapshot", "a0", &v, &gs])?;
                if self.vols[*vol].syncing && self.restorable("a1", *vol)?.contains(&g) {
                    w.exec(&["disable-snapshot", "a1", &v, &gs])?;
                }
                self.vols[*vol].disabled.push(g);
                Ok(format!("gid {g}"))
            }
            Op::EnableSnapshot { vol } => {
                let v = self.vol(*vol);
                let Some(g) = self.vols[*vol].disabled.pop() else {
                    return Ok("none disabled".into());
                };
                let gs = g.to_string();
                w.exec(&["enable-snapshot", "a0", &v, &gs])?;
                if self.vols[*vol].syncing {
                    let _ = w.exec(&["enable-snapshot", "a1", &v, &gs]);
                }
                Ok(format!("gid {g}"))
            }
            Op::Kick { node } => {
                w.exec(&["kick", node])?;
                Ok(String::new())
            }
        }
    }

    /// A full or hash backup (even one that failed after its preparation) stops the
    /// synchronizing of the secondary archive, as walblib's does.
    fn backed_up(&mut self, i: usize) {
        self.vols[i].syncing = false;
    }

    /// The archive dropped its backups for a new full backup, which numbers its gids
    /// from the start again: the snapshots taken so far no longer name those bytes, and
    /// a1's replica is of another lineage.
    fn restarted_gids(&mut self, i: usize) {
        let m = &mut self.vols[i];
        m.snaps.clear();
        m.disabled.clear();
        m.replicated = false;
        m.syncing = false;
    }

    fn kick_all(&self) {
        for n in self.world.topo.nodes() {
            if !n.starts_with('a') {
                let _ = self.world.console(false, &["kick", &n]);
            }
        }
    }

    fn steady_set(node: &str) -> &'static [&'static str] {
        match node.as_bytes().first() {
            Some(b's') => STORAGE_STEADY,
            Some(b'p') => PROXY_STEADY,
            _ => ARCHIVE_STEADY,
        }
    }

    /// Waits until every volume of `node` is seen in a steady state; the ones never seen
    /// steady within `secs` (with the last state seen).
    fn wait_steady(&self, node: &str, secs: u64) -> Vec<(String, String)> {
        let steady = Self::steady_set(node);
        let vols: Vec<usize> = (0..self.world.topo.volumes)
            .filter(|i| !node.starts_with('s') || self.storage(*i) == node)
            .collect();
        let mut left: Vec<(usize, String)> = vols.iter().map(|i| (*i, String::new())).collect();
        let t0 = Instant::now();
        while !left.is_empty() && t0.elapsed() < Duration::from_secs(secs) {
            left.retain_mut(|(i, last)| {
                let out = self
                    .world
                    .console(false, &["get", node, "state", &self.vol(*i)]);
                match out {
                    Ok(o) if o.status.success() => {
                        let st = String::from_utf8_lossy(&o.stdout).trim().to_string();
                        let keep = !steady.contains(&st.as_str());
                        *last = st;
                        keep
                    }
                    // A volume the node does not know is steady (Clear).
                    Ok(o) if String::from_utf8_lossy(&o.stderr).contains("not found") => false,
                    _ => true,
                }
            });
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        left.into_iter()
            .map(|(i, last)| (self.vol(i), last))
            .collect()
    }

    fn fault(&mut self, f: &Fault) -> Result<String> {
        match f {
            Fault::KillDaemon { node, down_ms } => {
                self.world.kill_node(node)?;
                std::thread::sleep(Duration::from_millis(*down_ms));
                self.world.start_node(node)?;
                let bad = self.wait_steady(node, 60);
                if bad.is_empty() {
                    self.counts.steady_checks += 1;
                } else {
                    self.violation(format!(
                        "{node} restarted after SIGKILL and stays in a temporary state: {bad:?}"
                    ));
                }
                Ok(format!("down {down_ms} ms"))
            }
            Fault::KillDevice { vol, down_ms } => {
                self.world.kill_device(*vol)?;
                std::thread::sleep(Duration::from_millis(*down_ms));
                self.world.start_device(*vol)?;
                Ok(format!("down {down_ms} ms"))
            }
            Fault::Cut { link } => {
                self.world.relay(link)?.cut(true);
                Ok(String::new())
            }
            Fault::Slow { link, rate } => {
                self.world.relay(link)?.set_rate(*rate);
                Ok(String::new())
            }
            Fault::Heal { link } => {
                let r = self.world.relay(link)?;
                r.cut(false);
                r.set_rate(0);
                self.kick_all();
                Ok(String::new())
            }
            Fault::DiskFull { node } => {
                if !self.world.has_small_fs(node) {
                    *self.counts.skipped.entry(f.kind().into()).or_default() += 1;
                    bail!("no small file system for {node} (needs root)");
                }
                let n = self.world.fill_disk(node)?;
                Ok(format!("{} MiB filler", n >> 20))
            }
            Fault::DiskFree { node } => {
                self.world.free_disk(node)?;
                self.kick_all();
                Ok(String::new())
            }
            Fault::Overflow { vol } => self.overflow(*vol),
        }
    }

    /// Cuts the storage from its proxies, writes more than the log holds, heals, and
    /// recovers the volume (stop, hash backup).
    fn overflow(&mut self, i: usize) -> Result<String> {
        let (v, s) = (self.vol(i), self.storage(i));
        let links = self.world.topo.storage_links(&s);
        for l in &links {
            self.world.relay(l)?.cut(true);
        }
        let burst = self.writers[i].burst((LDEV_MB + 4) << 20, Duration::from_secs(120));
        let t0 = Instant::now();
        let mut over = false;
        while burst.is_ok() && t0.elapsed() < Duration::from_secs(30) {
            let o = self.world.console(false, &["get", &s, "is-overflow", &v])?;
            if String::from_utf8_lossy(&o.stdout).trim() == "1" {
                over = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        for l in &links {
            self.world.relay(l)?.cut(false);
        }
        burst?;
        if !over {
            bail!("{v} did not overflow after writing past its log");
        }
        let how = self.level(i)?;
        self.kick_all();
        Ok(format!("overflowed, recovered by {how}"))
    }

    /// Brings volume `i`'s archive level with its device as an operator would: a hash
    /// backup when a0 has a base, the full backup an operator runs when it has none (a
    /// full backup cut short leaves it SyncReady); the storage stopped first when it runs.
    fn level(&mut self, i: usize) -> Result<String> {
        let (v, s) = (self.vol(i), self.storage(i));
        let base = self.state("a0", &v) == "Archived";
        self.stop_storage_if_running(i)?;
        if !base {
            self.restarted_gids(i);
        }
        let cmd = if base { "hash-backup" } else { "full-backup" };
        let r = self.world.exec_peers(&[cmd, &s, &v, "--timeout", "300"]);
        self.backed_up(i);
        r.map(|_| cmd.to_string())
    }

    /// Whether `v`'s log overflowed at storage `s` (false when the storage does not say).
    fn overflowed(&self, s: &str, v: &str) -> bool {
        self.world
            .exec(&["get", s, "is-overflow", v])
            .is_ok_and(|o| o.trim() == "1")
    }

    /// Stops volume `i` at its storage unless it is stopped already (an overflow stops
    /// it) or not running (SyncReady, Clear).
    fn stop_storage_if_running(&self, i: usize) -> Result<()> {
        let (v, s) = (self.vol(i), self.storage(i));
        if matches!(self.state(&s, &v).as_str(), "Target" | "Standby") {
            self.world.exec(&["stop", &s, &v])?;
        }
        Ok(())
    }

    fn state(&self, node: &str, v: &str) -> String {
        self.world
            .exec(&["get", node, "state", v])
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// Brings volume `i` back to Target (storage), Archived (a0) and Started (proxies)
    /// as an operator would; the repairs it made.
    fn repair(&mut self, i: usize) -> Result<u64> {
        let (v, s) = (self.vol(i), self.storage(i));
        let mut repairs = 0;
        let t0 = Instant::now();
        loop {
            for p in self.world.topo.proxies() {
                if self.state(&p, &v) == "Stopped" {
                    self.note(format!("repair: start {p} {v}"));
                    let _ = self.world.exec(&["start", &p, &v]);
                    repairs += 1;
                }
            }
            for a in self.world.topo.archives() {
                if self.state(&a, &v) == "Stopped" {
                    self.note(format!("repair: start {a} {v}"));
                    let _ = self.world.exec(&["start", &a, &v]);
                    repairs += 1;
                }
            }
            let st = self.state(&s, &v);
            let a0 = self.state("a0", &v);
            if st == "Target" && a0 == "Archived" {
                return Ok(repairs);
            }
            if t0.elapsed() > Duration::from_secs(300) {
                bail!("{v} is {st} at {s} and {a0} at a0 after 300 s of repairs");
            }
            let over = self.overflowed(&s, &v);
            // An overflowed or reset storage needs a backup (a backup whose preparation
            // reset the storage and which the archive then refused leaves it SyncReady):
            // a hash backup levels an archive that has a base; one that has none (a full
            // backup cut short leaves it SyncReady) needs a full one.
            let backup = match st.as_str() {
                "Stopped" => over,
                "Standby" | "SyncReady" => true,
                _ => false,
            };
            // A running storage whose archive lost track (reset, or a backup cut short)
            // is levelled too.
            let lost = st == "Target" && ARCHIVE_STEADY.contains(&a0.as_str());
            let r = if backup || lost {
                self.level(i)
            } else if st == "Stopped" {
                self.world.exec(&["start", &s, &v])
            } else {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            };
            repairs += 1;
            let what = match &r {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{e:#}").replace('\n', " | "),
            };
            self.note(format!("repair: {v} was {st} at {s}, {a0} at a0: {what}"));
            if r.is_err() {
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }

    /// Ends every fault and checks the end-state invariants.
    fn settle(&mut self) -> Result<()> {
        self.world.heal_all();
        for n in self.world.topo.disk_nodes() {
            self.world.free_disk(&n)?;
        }
        for n in self.world.topo.nodes() {
            if !self.world.is_up(&n) {
                self.world.start_node(&n)?;
            }
        }
        for i in 0..self.world.topo.volumes {
            if self.world.device(i).is_err() {
                self.world.start_device(i)?;
            }
        }
        self.kick_all();
        for i in 0..self.world.topo.volumes {
            match self.repair(i) {
                Ok(n) => self.counts.repairs += n,
                Err(e) => self.violation(format!("{e:#}")),
            }
        }
        // From here on the devices are quiet: what is in flight drains.
        self.quiet = true;
        for i in 0..self.writers.len() {
            if let Err(e) = self.writers[i].pause(Duration::from_secs(60)) {
                self.violation(format!("{e:#}"));
            }
        }
        for n in self.world.topo.nodes() {
            let bad = self.wait_steady(&n, 120);
            if bad.is_empty() {
                self.counts.steady_checks += 1;
            } else {
                self.violation(format!("{n}: no steady state once faults stopped: {bad:?}"));
            }
        }
        // A new snapshot reaches the archives; then every outstanding one restores.
        for i in 0..self.world.topo.volumes {
            let v = self.vol(i);
            let gid = match self.quiet_snapshot(i) {
                Ok(g) => g,
                Err(e) => {
                    self.violation(format!("{v}: no snapshot once faults stopped: {e:#}"));
                    continue;
                }
            };
            let mut archives = vec!["a0"];
            if self.vols[i].syncing {
                archives.push("a1");
            }
            for a in &archives {
                let g = gid.to_string();
                if let Err(e) = self
                    .world
                    .exec(&["wait-restorable", a, &v, &g, "--timeout", "240"])
                {
                    self.violation(format!(
                        "{v}: gid {gid} not restorable at {a} once faults stopped: {e:#}"
                    ));
                }
            }
            let mut archives = vec!["a0"];
            if self.vols[i].replicated {
                archives.push("a1");
            }
            for a in archives {
                let listed = match self.restorable(a, i) {
                    Ok(l) => l,
                    Err(e) => {
                        self.violation(format!("{v}: restorable at {a}: {e:#}"));
                        continue;
                    }
                };
                let outstanding: Vec<u64> = listed
                    .iter()
                    .copied()
                    .filter(|g| self.vols[i].snap(*g).is_some())
                    .collect();
                for g in outstanding {
                    if let Err(e) = self.check_restore(a, i, g) {
                        self.violation(format!(
                            "{v}: gid {g} is listed restorable at {a} but its restore failed: \
                             {e:#}"
                        ));
                    } else {
                        self.counts.final_restores += 1;
                    }
                }
            }
            if self.vols[i].syncing {
                self.compare_archives(i)?;
            }
        }
        self.note("final restores done".into());
        let left = temp_files(&self.world, &self.world.topo.nodes());
        if !left.is_empty() {
            self.violation(format!(
                "temporary files left once faults stopped: {left:?}"
            ));
        }
        Ok(())
    }

    /// a0 and a1 list the same restorable snapshots from the last replication on (given
    /// a minute to agree: the last diffs may still travel to one of them).
    fn compare_archives(&mut self, i: usize) -> Result<()> {
        let from = self.vols[i].replicated_at;
        let t0 = Instant::now();
        let (l0, l1) = loop {
            let list = |a: &str| -> Result<Vec<u64>> {
                Ok(self
                    .restorable(a, i)?
                    .into_iter()
                    .filter(|g| *g >= from)
                    .collect())
            };
            let (l0, l1) = (list("a0")?, list("a1")?);
            if l0 == l1 || t0.elapsed() > Duration::from_secs(60) {
                break (l0, l1);
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        if l0 != l1 {
            let v = self.vol(i);
            self.violation(format!(
                "{v}: synchronized archives disagree from gid {from} on: a0 {l0:?}, a1 {l1:?}"
            ));
        }
        Ok(())
    }
}

/// Files named `*.tmp` under the base directories of `nodes`.
fn temp_files(world: &World, nodes: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = nodes.iter().map(|n| world.base_of(n)).collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tmp") {
                found.push(p);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_list_lines_parse() {
        let t = "|0|-->|1| -- 2017-05-24T04:49:40 4128\n|0,5|-->|6| -C 2017-05-24T04:49:40 1\n";
        assert_eq!(diff_ranges(t), vec![(0, 1), (0, 6)]);
        assert_eq!(gids("3 2017-05-24T04:49:40 1\n9 x 0\n"), vec![3, 9]);
    }
}
