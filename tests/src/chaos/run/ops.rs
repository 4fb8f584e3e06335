//! The operations of a schedule, each as an operator runs it, and the model's
//! bookkeeping of what they change (backups restart or stop synchronizing, a full backup
//! renumbers the gids).

use anyhow::Result;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::super::schedule::Op;
use super::super::topology::DDEV_MB;
use super::{diff_ranges, Chaos};
use crate::last_number;

impl Chaos {
    /// Runs one operation as an operator would; what it did, for the log.
    pub(super) fn op(&mut self, op: &Op, rng: &mut ChaCha8Rng) -> Result<String> {
        let w = &self.world;
        match op {
            Op::Snapshot { vol } => {
                let gid = self.quiet_snapshot(*vol)?;
                Ok(format!("gid {gid}"))
            }
            Op::Verify { vol } => self.verify_sample(*vol, rng),
            Op::Merge { vol } => self.op_merge(*vol, rng),
            Op::Apply { vol } => self.op_apply(*vol, rng),
            Op::FullBackup { vol } => self.op_full_backup(*vol),
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
            Op::Resize { vol } => self.op_resize(*vol),
            Op::DisableSnapshot { vol } => self.op_disable(*vol, rng),
            Op::EnableSnapshot { vol } => self.op_enable(*vol),
            Op::Kick { node } => {
                w.exec(&["kick", node])?;
                Ok(String::new())
            }
        }
    }

    /// A full or hash backup (even one that failed after its preparation) stops the
    /// synchronizing of the secondary archive, as walblib's does.
    pub(super) fn backed_up(&mut self, i: usize) {
        self.vols[i].syncing = false;
    }

    /// The archive dropped its backups for a new full backup, which numbers its gids
    /// from the start again: the snapshots taken so far no longer name those bytes, and
    /// a1's replica is of another lineage.
    pub(super) fn restarted_gids(&mut self, i: usize) {
        let m = &mut self.vols[i];
        m.snaps.clear();
        m.disabled.clear();
        m.replicated = false;
        m.syncing = false;
    }

    pub(super) fn kick_all(&self) {
        for n in self.world.topo.nodes() {
            if !n.starts_with('a') {
                let _ = self.world.console(false, &["kick", &n]);
            }
        }
    }

    /// Brings volume `i`'s archive level with its device as an operator would: a hash
    /// backup when a0 has a base, the full backup an operator runs when it has none (a
    /// full backup cut short leaves it SyncReady); the storage stopped first when it runs.
    pub(super) fn level(&mut self, i: usize) -> Result<String> {
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
    pub(super) fn overflowed(&self, s: &str, v: &str) -> bool {
        self.world
            .exec(&["get", s, "is-overflow", v])
            .is_ok_and(|o| o.trim() == "1")
    }

    /// Stops volume `i` at its storage unless it is stopped already (an overflow stops
    /// it) or not running (SyncReady, Clear).
    pub(super) fn stop_storage_if_running(&self, i: usize) -> Result<()> {
        let (v, s) = (self.vol(i), self.storage(i));
        if matches!(self.state(&s, &v).as_str(), "Target" | "Standby") {
            self.world.exec(&["stop", &s, &v])?;
        }
        Ok(())
    }

    /// Merges a random run of up to eight of volume `i`'s diffs at a0.
    fn op_merge(&mut self, i: usize, rng: &mut ChaCha8Rng) -> Result<String> {
        let w = &self.world;
        let v = self.vol(i);
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

    /// Applies a0 (and a1 when synchronizing) up to a listed snapshot, never the newest two.
    fn op_apply(&mut self, i: usize, rng: &mut ChaCha8Rng) -> Result<String> {
        let w = &self.world;
        let v = self.vol(i);
        let listed = self.restorable("a0", i)?;
        if listed.len() < 3 {
            return Ok("too few snapshots to apply".into());
        }
        // Not the newest two: something stays to restore.
        let g = listed[rng.random_range(0..listed.len() - 2)].to_string();
        w.exec(&["apply", "a0", &v, &g, "--timeout", "120"])?;
        if self.vols[i].syncing {
            w.exec(&["apply", "a1", &v, &g, "--timeout", "120"])?;
        }
        Ok(format!("up to {g}"))
    }

    /// A full backup: the archive reset, the storage stopped, only what is still needed done.
    fn op_full_backup(&mut self, i: usize) -> Result<String> {
        let w = &self.world;
        // A full backup starts over: the archive reset (its backups dropped),
        // the storage stopped (walb-tools' m1). Earlier faults may have done part
        // of it (an archive a cut-short backup left SyncReady, a storage its log
        // overflow stopped): only what is still needed is done.
        let (v, s) = (self.vol(i), self.storage(i));
        match self.state("a0", &v).as_str() {
            "SyncReady" | "Clear" => {}
            "Stopped" => w.exec(&["reset", "a0", &v]).map(drop)?,
            _ => {
                w.exec(&["stop", "a0", &v, "--timeout", "120"])?;
                w.exec(&["reset", "a0", &v])?;
            }
        }
        self.restarted_gids(i);
        self.stop_storage_if_running(i)?;
        let out = self
            .world
            .exec_peers(&["full-backup", &s, &v, "--timeout", "300"]);
        self.backed_up(i);
        Ok(out?.trim().to_string())
    }

    /// Grows volume `i` by 1 MiB: the archives' images first, then the storage.
    fn op_resize(&mut self, i: usize) -> Result<String> {
        let w = &self.world;
        let (v, s) = (self.vol(i), self.storage(i));
        let size = self.vols[i].size + (1 << 20);
        if size > (DDEV_MB + 8) << 20 {
            return Ok("grown enough".into());
        }
        w.grow_ddev(i, size)?;
        let sz = size.to_string();
        // The archives' images first: a proxy refuses to send a diff of a
        // volume larger than the archive's image (smaller-lv-size).
        w.exec(&["resize", "a0", &v, &sz])?;
        if self.vols[i].replicated {
            w.exec(&["resize", "a1", &v, &sz])?;
        }
        w.exec(&["resize", &s, &v, &sz])?;
        self.vols[i].size = size;
        Ok(format!("to {size}"))
    }

    /// Disables a listed snapshot at a0 (and at a1 when it has it).
    fn op_disable(&mut self, i: usize, rng: &mut ChaCha8Rng) -> Result<String> {
        let w = &self.world;
        let v = self.vol(i);
        let listed = self.restorable("a0", i)?;
        if listed.len() < 2 {
            return Ok("too few snapshots".into());
        }
        let g = listed[rng.random_range(0..listed.len() - 1)];
        let gs = g.to_string();
        w.exec(&["disable-snapshot", "a0", &v, &gs])?;
        if self.vols[i].syncing && self.restorable("a1", i)?.contains(&g) {
            w.exec(&["disable-snapshot", "a1", &v, &gs])?;
        }
        self.vols[i].disabled.push(g);
        Ok(format!("gid {g}"))
    }

    /// Enables the last disabled snapshot again.
    fn op_enable(&mut self, i: usize) -> Result<String> {
        let w = &self.world;
        let v = self.vol(i);
        let Some(g) = self.vols[i].disabled.pop() else {
            return Ok("none disabled".into());
        };
        let gs = g.to_string();
        w.exec(&["enable-snapshot", "a0", &v, &gs])?;
        if self.vols[i].syncing {
            let _ = w.exec(&["enable-snapshot", "a1", &v, &gs]);
        }
        Ok(format!("gid {g}"))
    }
}
