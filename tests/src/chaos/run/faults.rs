//! The faults of a schedule: a daemon or device killed and restarted, a link cut,
//! slowed or healed, a disk filled or freed, a log overflowed (and levelled); and the
//! wait for a restarted daemon's steady state.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::super::schedule::Fault;
use super::super::topology::LDEV_MB;
use super::{Chaos, ARCHIVE_STEADY, PROXY_STEADY, STORAGE_STEADY};

impl Chaos {
    pub(super) fn fault(&mut self, f: &Fault) -> Result<String> {
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
    pub(super) fn overflow(&mut self, i: usize) -> Result<String> {
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

    pub(super) fn steady_set(node: &str) -> &'static [&'static str] {
        match node.as_bytes().first() {
            Some(b's') => STORAGE_STEADY,
            Some(b'p') => PROXY_STEADY,
            _ => ARCHIVE_STEADY,
        }
    }

    /// Waits until every volume of `node` is seen in a steady state; the ones never seen
    /// steady within `secs` (with the last state seen).
    pub(super) fn wait_steady(&self, node: &str, secs: u64) -> Vec<(String, String)> {
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
}
