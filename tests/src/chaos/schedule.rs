//! The schedule of a chaos run: a list of timed steps (an operation or a fault, and its
//! target) drawn from a ChaCha RNG seeded with the run's seed alone.
//!
//! [`generate`] is pure: it looks at nothing but its [`Plan`], so the same seed, duration,
//! volume count and fault switch give the same steps whatever happened when they last
//! ran — a failure is replayed by running its seed again. The executor may run a step
//! late (an operation took long) but never skips or reorders one.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::topology::Topology;

/// What a run is made of (the command line of `walb-chaos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The RNG seed.
    pub seed: u64,
    /// How long steps are scheduled for, seconds.
    pub duration_s: u64,
    /// Volumes in all (spread over the storages).
    pub volumes: usize,
    /// Whether faults are injected.
    pub faults: bool,
}

/// An operator's operation on one volume (or node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Quiesce the writer, hash the device, take a snapshot.
    Snapshot { vol: usize },
    /// Restore a sample of the volume's snapshots and compare with the hashes taken.
    Verify { vol: usize },
    /// Merge a run of diffs at a0.
    Merge { vol: usize },
    /// Apply up to a restorable snapshot (both archives when synchronizing).
    Apply { vol: usize },
    /// Stop the storage volume and take a full backup again.
    FullBackup { vol: usize },
    /// Stop the storage volume and take a hash backup.
    HashBackup { vol: usize },
    /// Replicate a0 → a1 (`sync`: and keep synchronizing).
    Replicate { vol: usize, sync: bool },
    /// Stop synchronizing a1.
    StopSync { vol: usize },
    /// Stop and start the volume on one node.
    StopStart { node: String, vol: usize },
    /// Storage to standby (stop force, reset, start standby) and a hash backup back.
    Reset { vol: usize },
    /// Grow the volume by 1 MiB (data device file first, then archive and storage).
    Resize { vol: usize },
    /// Make a restorable snapshot implicit.
    DisableSnapshot { vol: usize },
    /// Make a snapshot disabled earlier restorable again.
    EnableSnapshot { vol: usize },
    /// Kick a storage or proxy.
    Kick { node: String },
}

/// An injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a daemon; restart it after `down_ms`.
    KillDaemon { node: String, down_ms: u64 },
    /// SIGKILL the emulated device process of a volume; restart it after `down_ms`.
    KillDevice { vol: usize, down_ms: u64 },
    /// Drop every datagram on a relayed link.
    Cut { link: String },
    /// Limit a relayed link to `rate` bytes a second.
    Slow { link: String, rate: u64 },
    /// Restore a cut or slowed link.
    Heal { link: String },
    /// Fill the file system of a proxy's or archive's base directory.
    DiskFull { node: String },
    /// Free it again.
    DiskFree { node: String },
    /// Cut the volume's storage from its proxies, write more than the log holds, heal,
    /// and recover as an operator does (stop, hash backup).
    Overflow { vol: usize },
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An operation.
    Op(Op),
    /// A fault.
    Fault(Fault),
}

/// A step due `at_ms` after the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Due time, ms after the start of the run.
    pub at_ms: u64,
    /// What to do.
    pub action: Action,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>7.1}s {}", self.at_ms as f64 / 1000.0, self.action)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Op(o) => write!(f, "op    {o:?}"),
            Action::Fault(x) => write!(f, "fault {x:?}"),
        }
    }
}

impl Op {
    /// The kind, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Snapshot { .. } => "snapshot",
            Op::Verify { .. } => "verify",
            Op::Merge { .. } => "merge",
            Op::Apply { .. } => "apply",
            Op::FullBackup { .. } => "full-backup",
            Op::HashBackup { .. } => "hash-backup",
            Op::Replicate { .. } => "replicate",
            Op::StopSync { .. } => "stop-synchronizing",
            Op::StopStart { .. } => "stop-start",
            Op::Reset { .. } => "reset",
            Op::Resize { .. } => "resize",
            Op::DisableSnapshot { .. } => "disable-snapshot",
            Op::EnableSnapshot { .. } => "enable-snapshot",
            Op::Kick { .. } => "kick",
        }
    }
}

impl Fault {
    /// The kind, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillDaemon { node, .. } => match node.as_bytes().first() {
                Some(b's') => "kill-storage",
                Some(b'p') => "kill-proxy",
                _ => "kill-archive",
            },
            Fault::KillDevice { .. } => "kill-device",
            Fault::Cut { .. } => "link-cut",
            Fault::Slow { .. } => "link-slow",
            Fault::Heal { .. } => "link-heal",
            Fault::DiskFull { .. } => "disk-full",
            Fault::DiskFree { .. } => "disk-free",
            Fault::Overflow { .. } => "log-overflow",
        }
    }

    /// Whether this step only ends an earlier fault (not counted as injected).
    pub fn is_recovery(&self) -> bool {
        matches!(self, Fault::Heal { .. } | Fault::DiskFree { .. })
    }
}

/// Weighted choice: the index of the entry `rng` falls on.
fn pick<R: Rng>(rng: &mut R, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

fn op<R: Rng>(rng: &mut R, topo: &Topology) -> Op {
    let vol = rng.random_range(0..topo.volumes);
    let nodes = topo.nodes();
    match pick(rng, &[30, 12, 5, 4, 2, 3, 4, 2, 5, 2, 2, 3, 3, 6]) {
        0 => Op::Snapshot { vol },
        1 => Op::Verify { vol },
        2 => Op::Merge { vol },
        3 => Op::Apply { vol },
        4 => Op::FullBackup { vol },
        5 => Op::HashBackup { vol },
        6 => Op::Replicate {
            vol,
            sync: rng.random_bool(0.5),
        },
        7 => Op::StopSync { vol },
        8 => Op::StopStart {
            node: nodes[rng.random_range(0..nodes.len())].clone(),
            vol,
        },
        9 => Op::Reset { vol },
        10 => Op::Resize { vol },
        11 => Op::DisableSnapshot { vol },
        12 => Op::EnableSnapshot { vol },
        _ => {
            let kickable: Vec<&String> = nodes.iter().filter(|n| !n.starts_with('a')).collect();
            Op::Kick {
                node: kickable[rng.random_range(0..kickable.len())].clone(),
            }
        }
    }
}

/// The fault and, for faults that last, the step that ends it (`(after_ms, fault)`).
fn fault<R: Rng>(rng: &mut R, topo: &Topology) -> (Fault, Option<(u64, Fault)>) {
    let nodes = topo.nodes();
    let links = topo.links();
    match pick(rng, &[30, 12, 14, 8, 5, 3]) {
        0 => (
            Fault::KillDaemon {
                node: nodes[rng.random_range(0..nodes.len())].clone(),
                down_ms: rng.random_range(0..4000),
            },
            None,
        ),
        1 => (
            Fault::KillDevice {
                vol: rng.random_range(0..topo.volumes),
                down_ms: rng.random_range(0..2000),
            },
            None,
        ),
        2 => {
            let link = links[rng.random_range(0..links.len())].clone();
            let heal = Fault::Heal { link: link.clone() };
            (
                Fault::Cut { link },
                Some((rng.random_range(2000..15000), heal)),
            )
        }
        3 => {
            let link = links[rng.random_range(0..links.len())].clone();
            let heal = Fault::Heal { link: link.clone() };
            let rate = rng.random_range(200_000..2_000_000);
            (
                Fault::Slow { link, rate },
                Some((rng.random_range(3000..20000), heal)),
            )
        }
        4 => {
            let full = topo.disk_nodes();
            let node = full[rng.random_range(0..full.len())].clone();
            let free = Fault::DiskFree { node: node.clone() };
            (
                Fault::DiskFull { node },
                Some((rng.random_range(3000..12000), free)),
            )
        }
        _ => (
            Fault::Overflow {
                vol: rng.random_range(0..topo.volumes),
            },
            None,
        ),
    }
}

/// The steps of `plan`, in due order (pure: the plan alone decides them).
pub fn generate(plan: &Plan) -> Vec<Step> {
    let topo = Topology::new(plan.volumes);
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let end = plan.duration_s * 1000;
    let mut steps: Vec<Step> = Vec::new();
    // A link or a disk is faulted once at a time: until its end step is due.
    let mut busy: Vec<(String, u64)> = Vec::new();
    let mut t = 0u64;
    loop {
        t += rng.random_range(800..3000);
        if t >= end {
            break;
        }
        let action = if plan.faults && rng.random_bool(0.35) {
            let (f, end_step) = fault(&mut rng, &topo);
            let key = match &f {
                Fault::Cut { link } | Fault::Slow { link, .. } => Some(link.clone()),
                Fault::DiskFull { node } => Some(node.clone()),
                _ => None,
            };
            if let Some(k) = &key {
                if busy.iter().any(|(b, until)| b == k && *until > t) {
                    continue;
                }
            }
            if let (Some(k), Some((after, e))) = (key, end_step) {
                let at = (t + after).min(end);
                busy.push((k, at));
                steps.push(Step {
                    at_ms: at,
                    action: Action::Fault(e),
                });
            }
            Action::Fault(f)
        } else {
            Action::Op(op(&mut rng, &topo))
        };
        steps.push(Step { at_ms: t, action });
    }
    // Stable: an end step due at the same time as a later-drawn step keeps its place.
    steps.sort_by_key(|s| s.at_ms);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_follow_their_faults() {
        let plan = Plan {
            seed: 7,
            duration_s: 300,
            volumes: 6,
            faults: true,
        };
        let steps = generate(&plan);
        for (i, s) in steps.iter().enumerate() {
            if let Action::Fault(Fault::Heal { link }) = &s.action {
                let started = steps[..i].iter().any(|p| {
                    matches!(&p.action, Action::Fault(Fault::Cut { link: l } | Fault::Slow { link: l, .. }) if l == link)
                });
                assert!(
                    started,
                    "heal of {link} at {} before any fault on it",
                    s.at_ms
                );
            }
        }
        assert!(steps.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }
}
