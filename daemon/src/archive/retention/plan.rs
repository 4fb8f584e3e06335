//! The pure selection of a retention pass: from a volume's base, its applicable chain,
//! the time, its pins and where its replication destinations are, which snapshots stay
//! ([`Why`]), which are folded into merges and which are applied into the base.
//!
//! The rules are in the parent module's documentation; here, in order: the restorable
//! points ([`points`]), the reasons to keep each, the oldest kept point (everything
//! before it is applied), and the runs of diffs between two consecutive kept points,
//! each merged into one (split where a compared diff or a dirty snapshot forbids a
//! merge, and in pieces of at most [`MAX_RUN`] diffs; a later pass merges the pieces).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use walb_kernel::meta::{MetaDiff, MetaState};

use super::calendar::{bucket, Unit};
use super::{Counts, Grid, Keep, Retention};

/// Most diffs one merge of a pass takes.
pub(super) const MAX_RUN: usize = 128;

/// A restorable point: a clean snapshot on the chain (or the base's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Its gid.
    pub gid: u64,
    /// Its timestamp, seconds since the epoch.
    pub ts: u64,
    /// Explicit: the diff after it is not mergeable (the newest point, with no diff
    /// after it yet, counts as implicit).
    pub explicit: bool,
}

/// Why a point is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// The newest point.
    Newest,
    /// Pinned by the operator.
    Pinned,
    /// A replication destination is at it.
    Replica,
    /// In a keep-all interval of the grid (its index).
    Window(u8),
    /// In a bucket of the grid's interval (its index) that is still filling.
    Filling(u8),
    /// The newest of its bucket in the grid's interval (its index).
    Grid(u8),
    /// `keep-last`.
    Last,
    /// `keep-hourly`.
    Hourly,
    /// `keep-daily`.
    Daily,
    /// `keep-weekly`.
    Weekly,
    /// `keep-monthly`.
    Monthly,
    /// `keep-yearly`.
    Yearly,
    /// Not kept by a rule, but no merge can take it (a compared diff or a dirty snapshot
    /// next to it).
    Unmergeable,
    /// The policy is off.
    Off,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Newest => f.write_str("newest"),
            Why::Pinned => f.write_str("pinned"),
            Why::Replica => f.write_str("replica"),
            Why::Window(i) => write!(f, "grid{i}:all"),
            Why::Filling(i) => write!(f, "grid{i}:filling"),
            Why::Grid(i) => write!(f, "grid{i}"),
            Why::Last => f.write_str("last"),
            Why::Hourly => f.write_str("hourly"),
            Why::Daily => f.write_str("daily"),
            Why::Weekly => f.write_str("weekly"),
            Why::Monthly => f.write_str("monthly"),
            Why::Yearly => f.write_str("yearly"),
            Why::Unmergeable => f.write_str("unmergeable"),
            Why::Off => f.write_str("off"),
        }
    }
}

/// What a pass does to a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Stays restorable, for these reasons.
    Keep(Vec<Why>),
    /// Merged away (made implicit first if it is explicit).
    Fold,
    /// Applied into the base (older than the oldest kept point).
    Apply,
}

/// One point and its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The point.
    pub point: Point,
    /// What the pass does to it.
    pub fate: Fate,
}

/// What a pass does (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every point, oldest first, with its fate.
    pub verdicts: Vec<Verdict>,
    /// Explicit snapshots to make implicit first (folded ones inside a merge).
    pub demote: Vec<u64>,
    /// Merges `(gid_b, gid_e)`: the run from `gid_b` up to the snapshot `gid_e`, oldest
    /// first.
    pub merges: Vec<(u64, u64)>,
    /// Apply the base up to this gid (the oldest kept point).
    pub apply_to: Option<u64>,
}

impl Plan {
    /// Whether the pass has nothing to do.
    pub fn is_idle(&self) -> bool {
        self.demote.is_empty() && self.merges.is_empty() && self.apply_to.is_none()
    }

    /// How many points it keeps.
    pub fn kept(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|v| matches!(v.fate, Fate::Keep(_)))
            .count()
    }
}

/// The restorable points of a volume, oldest first: the base's snapshot if it is clean,
/// then every clean snapshot the chain reaches. None while the base is being applied
/// (that apply is finished first).
pub fn points(base: &MetaState, chain: &[MetaDiff]) -> Vec<Point> {
    if base.applying {
        return Vec::new();
    }
    let explicit_after = |i: usize| chain.get(i).is_some_and(|d| !d.mergeable);
    let mut out = Vec::new();
    if base.snap_b.is_clean() {
        out.push(Point {
            gid: base.snap_b.gid_b,
            ts: base.timestamp,
            explicit: explicit_after(0),
        });
    }
    for (i, d) in chain.iter().enumerate() {
        if d.snap_e.is_clean() {
            out.push(Point {
                gid: d.snap_e.gid_b,
                ts: d.timestamp,
                explicit: explicit_after(i + 1),
            });
        }
    }
    out
}

/// The plan of a pass of `r` over a volume (see the module documentation).
pub fn plan(
    r: &Retention,
    base: &MetaState,
    chain: &[MetaDiff],
    now: u64,
    pinned: &BTreeSet<u64>,
    replicas: &[u64],
) -> Plan {
    let pts = points(base, chain);
    let mut why: Vec<Vec<Why>> = vec![Vec::new(); pts.len()];
    if !r.on {
        return Plan {
            verdicts: pts
                .into_iter()
                .map(|point| Verdict {
                    point,
                    fate: Fate::Keep(vec![Why::Off]),
                })
                .collect(),
            ..Plan::default()
        };
    }
    if let Some(w) = why.last_mut() {
        w.push(Why::Newest);
    }
    for (p, w) in pts.iter().zip(why.iter_mut()) {
        if pinned.contains(&p.gid) {
            w.push(Why::Pinned);
        }
        if replicas.contains(&p.gid) {
            w.push(Why::Replica);
        }
    }
    by_grid(&r.grid, &pts, now, &mut why);
    by_counts(&r.counts, &pts, pinned, &mut why);
    let Some(oldest) = why.iter().position(|w| !w.is_empty()) else {
        return Plan::default();
    };
    let floor = pts[oldest].gid;
    let base_kept = base.snap_b.is_clean() && floor == base.snap_b.gid_b;
    let apply_to = (!base_kept).then_some(floor);
    let kept: BTreeSet<u64> = pts
        .iter()
        .zip(&why)
        .filter(|(_, w)| !w.is_empty())
        .map(|(p, _)| p.gid)
        .collect();
    let unkept_explicit: HashSet<u64> = pts
        .iter()
        .zip(&why)
        .filter(|(p, w)| w.is_empty() && p.explicit)
        .map(|(p, _)| p.gid)
        .collect();
    let Runs {
        merges,
        demote,
        folded,
    } = runs(chain, floor, &kept, &unkept_explicit);
    let verdicts = pts
        .into_iter()
        .zip(why)
        .map(|(point, mut w)| {
            let fate = if !w.is_empty() {
                w.sort();
                Fate::Keep(w)
            } else if point.gid < floor {
                Fate::Apply
            } else if folded.contains(&point.gid) {
                Fate::Fold
            } else {
                Fate::Keep(vec![Why::Unmergeable])
            };
            Verdict { point, fate }
        })
        .collect();
    Plan {
        verdicts,
        demote,
        merges,
        apply_to,
    }
}

/// The grid's reasons (see the parent module's documentation).
fn by_grid(g: &Grid, pts: &[Point], now: u64, why: &mut [Vec<Why>]) {
    let mut groups: BTreeMap<(usize, u64), Vec<usize>> = BTreeMap::new();
    for (i, p) in pts.iter().enumerate() {
        let age = now.saturating_sub(p.ts);
        let mut start = 0u64;
        for (k, iv) in g.0.iter().enumerate() {
            let end = start.saturating_add(iv.span_s());
            if age < end {
                let idx = u8::try_from(k).unwrap_or(u8::MAX);
                match iv.keep {
                    Keep::All => why[i].push(Why::Window(idx)),
                    Keep::Newest(_) => {
                        let b = p.ts / iv.len_s.max(1);
                        let bucket_end = b.saturating_add(1).saturating_mul(iv.len_s);
                        if bucket_end > now.saturating_sub(start) {
                            why[i].push(Why::Filling(idx));
                        } else {
                            groups.entry((k, b)).or_default().push(i);
                        }
                    }
                }
                break;
            }
            start = end;
        }
    }
    for ((k, _), mut members) in groups {
        let Keep::Newest(n) = g.0[k].keep else {
            continue;
        };
        members.sort_by_key(|&i| Reverse((pts[i].ts, pts[i].gid)));
        let idx = u8::try_from(k).unwrap_or(u8::MAX);
        for &i in members.iter().take(n as usize) {
            why[i].push(Why::Grid(idx));
        }
    }
}

/// The counts' reasons, as PBS's prune marks them: per rule, explicit points newest
/// first, skipping those an earlier rule marked; a bucket already holding a kept point
/// is skipped; the first point of a new bucket is kept, until N buckets; later points
/// of a kept bucket are marked dropped. Pinned points are not counted.
fn by_counts(c: &Counts, pts: &[Point], pinned: &BTreeSet<u64>, why: &mut [Vec<Why>]) {
    let mut list: Vec<usize> = (0..pts.len())
        .filter(|&i| pts[i].explicit && !pinned.contains(&pts[i].gid))
        .collect();
    list.sort_by_key(|&i| Reverse((pts[i].ts, pts[i].gid)));
    let rules = [
        (c.last, Why::Last, None),
        (c.hourly, Why::Hourly, Some(Unit::Hour)),
        (c.daily, Why::Daily, Some(Unit::Day)),
        (c.weekly, Why::Weekly, Some(Unit::Week)),
        (c.monthly, Why::Monthly, Some(Unit::Month)),
        (c.yearly, Why::Yearly, Some(Unit::Year)),
    ];
    let mut mark: HashMap<usize, bool> = HashMap::new();
    for (n, w, unit) in rules {
        if n == 0 {
            continue;
        }
        let sel = |i: usize| -> i128 {
            match unit {
                None => i128::from(pts[i].gid),
                Some(u) => i128::from(bucket(pts[i].ts, u)),
            }
        };
        let already: HashSet<i128> = list
            .iter()
            .filter(|&&i| mark.get(&i) == Some(&true))
            .map(|&i| sel(i))
            .collect();
        let mut include: HashSet<i128> = HashSet::new();
        for &i in &list {
            if mark.contains_key(&i) {
                continue;
            }
            let id = sel(i);
            if already.contains(&id) {
                continue;
            }
            if include.contains(&id) {
                mark.insert(i, false);
            } else {
                if include.len() >= n as usize {
                    break;
                }
                include.insert(id);
                mark.insert(i, true);
                why[i].push(w);
            }
        }
    }
}

/// What the merges of a pass are.
struct Runs {
    /// `(gid_b, gid_e)`, oldest first.
    merges: Vec<(u64, u64)>,
    /// Explicit snapshots inside them.
    demote: Vec<u64>,
    /// The snapshots they swallow, now or (between two pieces of a long run) at a later
    /// pass.
    folded: HashSet<u64>,
}

/// The merges between consecutive kept points from `floor` on.
fn runs(
    chain: &[MetaDiff],
    floor: u64,
    kept: &BTreeSet<u64>,
    unkept_explicit: &HashSet<u64>,
) -> Runs {
    let is_kept = |s: &walb_kernel::meta::MetaSnap| s.is_clean() && kept.contains(&s.gid_b);
    // Runs of diffs from one kept point to the next.
    let mut runs: Vec<Vec<&MetaDiff>> = Vec::new();
    let mut cur: Option<Vec<&MetaDiff>> = None;
    for d in chain {
        if d.snap_b.gid_b < floor {
            continue;
        }
        if is_kept(&d.snap_b) {
            cur = Some(Vec::new());
        }
        let Some(run) = cur.as_mut() else {
            continue;
        };
        run.push(d);
        if is_kept(&d.snap_e) {
            runs.extend(cur.take());
        }
    }
    let mut out = Runs {
        merges: Vec::new(),
        demote: Vec::new(),
        folded: HashSet::new(),
    };
    for run in runs {
        // Split where the next diff cannot follow.
        let mut pieces: Vec<Vec<&MetaDiff>> = vec![Vec::new()];
        for d in run {
            let follows = pieces.last().and_then(|p| p.last()).is_some_and(|prev| {
                !prev.comp_diff
                    && !d.comp_diff
                    && (d.mergeable
                        || (d.snap_b.is_clean() && unkept_explicit.contains(&d.snap_b.gid_b)))
            });
            if !follows {
                pieces.push(Vec::new());
            }
            if let Some(p) = pieces.last_mut() {
                p.push(d);
            }
        }
        for piece in pieces {
            let chunks: Vec<&[&MetaDiff]> = piece.chunks(MAX_RUN).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
                if i + 1 < chunks.len() {
                    // A later pass merges the pieces.
                    out.folded.insert(last.snap_e.gid_b);
                }
                if chunk.len() < 2 {
                    continue;
                }
                out.merges.push((first.snap_b.gid_b, last.snap_e.gid_b));
                for d in &chunk[1..] {
                    out.folded.insert(d.snap_b.gid_b);
                    if !d.mergeable {
                        out.demote.push(d.snap_b.gid_b);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
