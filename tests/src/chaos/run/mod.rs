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
use super::schedule::{generate, Action, Plan, Step};
use super::topology::{Topology, World, DDEV_MB};
use super::writer::Writer;
use crate::last_number;

mod faults;
mod ops;
mod settle;

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

/// How an operator's step went, for the log: `ok WHAT`, or `failed: ERROR` on one line.
fn outcome(r: &Result<String>) -> String {
    match r {
        Ok(how) => format!("ok {how}"),
        Err(e) => format!("failed: {}", format!("{e:#}").replace('\n', " | ")),
    }
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
            self.note(format!("watch: {v} overflowed at {s}: {}", outcome(&r)));
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

    fn state(&self, node: &str, v: &str) -> String {
        self.world
            .exec(&["get", node, "state", v])
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }
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
