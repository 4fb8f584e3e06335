//! The end of a run: every fault ended, every volume repaired as an operator would,
//! the devices quiet, and the end-state invariants checked (steady states, a new
//! snapshot restorable, every outstanding snapshot restoring to its bytes, no temporary
//! file left, synchronized archives agreeing).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::super::topology::World;
use super::{outcome, Chaos, ARCHIVE_STEADY};

impl Chaos {
    /// Brings volume `i` back to Target (storage), Archived (a0) and Started (proxies)
    /// as an operator would; the repairs it made.
    pub(super) fn repair(&mut self, i: usize) -> Result<u64> {
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
    pub(super) fn settle(&mut self) -> Result<()> {
        self.end_faults()?;
        for i in 0..self.world.topo.volumes {
            match self.repair(i) {
                Ok(n) => self.counts.repairs += n,
                Err(e) => self.violation(format!("{e:#}")),
            }
        }
        self.quiet_down();
        // A new snapshot reaches the archives; then every outstanding one restores.
        for i in 0..self.world.topo.volumes {
            self.final_restores(i)?;
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

    /// Heals every link, frees every disk, restarts every daemon and device that is down.
    fn end_faults(&mut self) -> Result<()> {
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
        Ok(())
    }

    /// From here on the devices are quiet: what is in flight drains, and every node
    /// reaches a steady state.
    fn quiet_down(&mut self) {
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
    }

    /// A new snapshot of volume `i` becomes restorable, every outstanding one restores to
    /// its bytes, and synchronized archives agree.
    fn final_restores(&mut self, i: usize) -> Result<()> {
        let v = self.vol(i);
        let gid = match self.final_snapshot(i) {
            Ok(g) => g,
            Err(e) => {
                self.violation(format!("{v}: no snapshot once faults stopped: {e:#}"));
                return Ok(());
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
        Ok(())
    }

    /// The snapshot that proves volume `i` ships again. The writers ran on while the
    /// other volumes were repaired, and a small log can overflow then (the seed-20261209
    /// hour run: three of s1's volumes, between their repair and this snapshot): that is
    /// a volume the operator levels, once, as the watch does during the run; the snapshot
    /// after it must still become restorable, so a pipeline that does not ship is caught.
    fn final_snapshot(&mut self, i: usize) -> Result<u64> {
        let first = self.quiet_snapshot(i);
        let (v, s) = (self.vol(i), self.storage(i));
        match first {
            Err(e) if self.overflowed(&s, &v) => {
                let how = self.level(i);
                self.counts.repairs += 1;
                self.note(format!(
                    "repair: {v} overflowed at {s} after the faults stopped ({e:#}): {}",
                    outcome(&how)
                ));
                how?;
                self.kick_all();
                self.quiet_snapshot(i)
            }
            other => other,
        }
    }

    /// a0 and a1 list the same restorable snapshots from the last replication on (given
    /// a minute to agree: the last diffs may still travel to one of them).
    pub(super) fn compare_archives(&mut self, i: usize) -> Result<()> {
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
pub(super) fn temp_files(world: &World, nodes: &[String]) -> Vec<PathBuf> {
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
