//! [`DiffManager`]: all diffs of one volume and the archive's queries over them.
//!
//! Diffs are kept in a map keyed by `snap_b.gid_b`; a diff is identified by its two ends
//! ([`MetaDiff::key`]). Together with the largest gid span of any stored diff this finds
//! the diffs covering a gid without scanning the whole set.
//!
//! Queries (walb-tools `MetaDiffManager`):
//! - **applicable chain** from a snapshot: repeatedly take, among the applicable diffs, the
//!   one with the largest `E.gidB` (tie: largest `B.gidB`), apply it and go on, optionally
//!   bounded by a gid or a timestamp ([`ChainBound`]);
//! - **latest snapshot/state** = base + the whole chain; **oldest clean state** = finish an
//!   apply in progress, then apply until the image is clean;
//! - **restorable** points: every clean state on the chain; a point is *explicit* if it is
//!   the last one or the next diff is not mergeable;
//! - **mergeable run** from a gid, **gc** of everything off the chain, **gc_range** after
//!   receiving a merged diff, **erase_before_gid** after an apply;
//! - diff lists to **restore** or **scan** a gid and to **apply** up to a gid, which always
//!   start with the *minimum list* that finishes an apply in progress.
//!
//! Ties the C++ leaves to insertion order are broken deterministically: among diffs with
//! the same `E.gidB` and `B.gidB`, the one with the smaller `E.gidE`, then smaller `B.gidE`
//! wins.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

use super::diff::MetaDiff;
use super::snap::MetaSnap;
use super::state::MetaState;
use super::timestamp::format_pretty;
use crate::error::{Error, Result};

/// Bounds of an applicable chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainBound {
    /// Stop before a diff whose result has `gid_b` greater than this.
    pub max_gid: Option<u64>,
    /// Stop before a diff whose timestamp is greater than this.
    pub max_timestamp: Option<u64>,
}

impl ChainBound {
    /// No bound: the whole chain.
    pub const NONE: ChainBound = ChainBound {
        max_gid: None,
        max_timestamp: None,
    };

    /// Bounded by the resulting snapshot's `gid_b`.
    pub const fn gid(max_gid: u64) -> Self {
        ChainBound {
            max_gid: Some(max_gid),
            max_timestamp: None,
        }
    }

    /// Bounded by the diffs' timestamps.
    pub const fn time(max_timestamp: u64) -> Self {
        ChainBound {
            max_gid: None,
            max_timestamp: Some(max_timestamp),
        }
    }

    fn allows(&self, diff: &MetaDiff, result: &MetaSnap) -> bool {
        self.max_gid.is_none_or(|g| result.gid_b <= g)
            && self.max_timestamp.is_none_or(|t| diff.timestamp <= t)
    }
}

/// Truncation limits of a merge or send list (walb-tools applies them after choosing the
/// greedy list; each keeps a prefix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeLimits {
    /// Cut the list at the first diff with `snap_b.gid_b >= before_gid` (may empty it).
    pub before_gid: Option<u64>,
    /// Keep the first diff, then further diffs while the total `data_size` stays within.
    pub max_total_size: Option<u64>,
    /// Keep at most this many diffs.
    pub max_count: Option<usize>,
}

impl MergeLimits {
    fn truncate(&self, v: &mut Vec<MetaDiff>) {
        if let Some(g) = self.before_gid {
            if let Some(i) = v.iter().position(|d| d.snap_b.gid_b >= g) {
                v.truncate(i);
            }
        }
        if let Some(max) = self.max_total_size {
            let mut keep = v.len().min(1);
            let mut total = v.first().map_or(0, |d| d.data_size);
            for d in v.iter().skip(1) {
                match total.checked_add(d.data_size) {
                    Some(t) if t <= max => {
                        total = t;
                        keep += 1;
                    }
                    _ => break,
                }
            }
            v.truncate(keep);
        }
        if let Some(n) = self.max_count {
            v.truncate(n);
        }
    }
}

/// One restorable point of a volume (`get restorable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestorePoint {
    /// The clean snapshot's gid.
    pub gid: u64,
    /// Unix time (seconds) of the snapshot.
    pub timestamp: u64,
    /// True if the point cannot be merged away (last point, or the next diff is not
    /// mergeable).
    pub explicit: bool,
}

impl fmt::Display for RestorePoint {
    /// `gid YYYY-MM-DDThh:mm:ss 0|1` (UTC).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.gid,
            format_pretty(self.timestamp),
            u8::from(self.explicit)
        )
    }
}

/// The diffs of one volume (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct DiffManager {
    /// Diffs by `snap_b.gid_b`; each bucket sorted by key.
    by_begin: BTreeMap<u64, Vec<MetaDiff>>,
    /// Multiset of `E.gidB - B.gidB` over all diffs.
    spans: BTreeMap<u64, usize>,
    len: usize,
}

/// Progress order of the greedy choice: larger `E.gidB`, then larger `B.gidB`, then
/// smaller `E.gidE`, then smaller `B.gidE`.
fn progress_key(d: &MetaDiff) -> (u64, u64, Reverse<u64>, Reverse<u64>) {
    (
        d.snap_e.gid_b,
        d.snap_b.gid_b,
        Reverse(d.snap_e.gid_e),
        Reverse(d.snap_b.gid_e),
    )
}

fn max_progress<'a>(it: impl Iterator<Item = &'a MetaDiff>) -> Option<&'a MetaDiff> {
    it.max_by_key(|d| progress_key(d))
}

fn span(d: &MetaDiff) -> u64 {
    d.snap_e.gid_b.saturating_sub(d.snap_b.gid_b)
}

impl DiffManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// A manager holding `diffs`; fails like [`DiffManager::add`].
    pub fn from_diffs(diffs: impl IntoIterator<Item = MetaDiff>) -> Result<Self> {
        let mut m = Self::new();
        for d in diffs {
            m.add(d)?;
        }
        Ok(m)
    }

    /// Number of diffs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no diffs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every diff.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// All diffs sorted by `(snap_b, snap_e)`.
    pub fn iter(&self) -> impl Iterator<Item = &MetaDiff> + '_ {
        self.by_begin.values().flatten()
    }

    /// Adds a diff. [`Error::Invalid`] if it breaks the progress rule or a diff with the
    /// same ends is already present.
    pub fn add(&mut self, diff: MetaDiff) -> Result<()> {
        diff.validate()?;
        let bucket = self.by_begin.entry(diff.snap_b.gid_b).or_default();
        match bucket.binary_search_by_key(&diff.key(), MetaDiff::key) {
            Ok(_) => Err(Error::Invalid(format!("diff {diff:#} already exists"))),
            Err(i) => {
                *self.spans.entry(span(&diff)).or_default() += 1;
                bucket.insert(i, diff);
                self.len += 1;
                Ok(())
            }
        }
    }

    /// Removes the diff with the ends of `diff`; returns the stored diff if it existed.
    pub fn remove(&mut self, diff: &MetaDiff) -> Option<MetaDiff> {
        let gid = diff.snap_b.gid_b;
        let bucket = self.by_begin.get_mut(&gid)?;
        let i = bucket
            .binary_search_by_key(&diff.key(), MetaDiff::key)
            .ok()?;
        let removed = bucket.remove(i);
        if bucket.is_empty() {
            self.by_begin.remove(&gid);
        }
        let s = span(&removed);
        if let Some(n) = self.spans.get_mut(&s) {
            *n -= 1;
            if *n == 0 {
                self.spans.remove(&s);
            }
        }
        self.len -= 1;
        Some(removed)
    }

    /// Removes every diff of `diffs` that is present; returns how many were removed.
    pub fn remove_all(&mut self, diffs: &[MetaDiff]) -> usize {
        diffs.iter().filter(|d| self.remove(d).is_some()).count()
    }

    /// The stored diff `snap_b-->snap_e`, if any.
    pub fn get(&self, snap_b: MetaSnap, snap_e: MetaSnap) -> Option<&MetaDiff> {
        let bucket = self.by_begin.get(&snap_b.gid_b)?;
        let i = bucket
            .binary_search_by_key(&(snap_b, snap_e), MetaDiff::key)
            .ok()?;
        bucket.get(i)
    }

    /// True if a diff with the ends of `diff` is stored (`get exists-diff`).
    pub fn exists(&self, diff: &MetaDiff) -> bool {
        self.get(diff.snap_b, diff.snap_e).is_some()
    }

    /// Smallest `snap_b.gid_b` and largest `snap_e.gid_b` over all diffs.
    pub fn min_max_gid(&self) -> Option<(u64, u64)> {
        let min = *self.by_begin.keys().next()?;
        let max = self.iter().map(|d| d.snap_e.gid_b).max()?;
        Some((min, max))
    }

    /// Sets the `mergeable` flag of every diff starting at `gid`
    /// (`disable-snapshot` sets it, `enable-snapshot` clears it). Returns the diffs whose
    /// flag changed, as they are now, or `None` if no diff starts at `gid`.
    pub fn set_mergeable_at(&mut self, gid: u64, mergeable: bool) -> Option<Vec<MetaDiff>> {
        let bucket = self.by_begin.get_mut(&gid)?;
        let mut changed = Vec::new();
        for d in bucket.iter_mut() {
            if d.mergeable != mergeable {
                d.mergeable = mergeable;
                changed.push(d.clone());
            }
        }
        Some(changed)
    }

    /// Diffs with `snap_b.gid_b <= gid < snap_e.gid_b`.
    fn covering(&self, gid: u64) -> impl Iterator<Item = &MetaDiff> + '_ {
        let max_span = self.spans.keys().next_back().copied().unwrap_or(0);
        // A covering diff has gid_b > gid - span >= gid - max_span.
        let lo = gid.saturating_add(1).saturating_sub(max_span);
        let range = if max_span == 0 {
            self.by_begin.range(1..1)
        } else {
            self.by_begin.range(lo..=gid)
        };
        range
            .flat_map(|(_, v)| v.iter())
            .filter(move |d| d.snap_e.gid_b > gid)
    }

    /// Every diff applicable to `snap`, sorted by key.
    pub fn applicable_candidates(&self, snap: MetaSnap) -> Vec<MetaDiff> {
        self.covering(snap.gid_b)
            .filter(|d| snap.can_apply(d))
            .cloned()
            .collect()
    }

    /// The diff the greedy chain takes next from `snap`.
    pub fn next_applicable(&self, snap: MetaSnap) -> Option<&MetaDiff> {
        max_progress(self.covering(snap.gid_b).filter(|d| snap.can_apply(d)))
    }

    /// The greedy applicable chain from `snap`, continuing while `keep(diff, result)`.
    pub fn applicable_chain_while(
        &self,
        snap: MetaSnap,
        mut keep: impl FnMut(&MetaDiff, &MetaSnap) -> bool,
    ) -> Vec<MetaDiff> {
        let mut s = snap;
        let mut v = Vec::new();
        while let Some(d) = self.next_applicable(s) {
            let next = s.applied(d);
            if !keep(d, &next) {
                break;
            }
            v.push(d.clone());
            s = next;
        }
        v
    }

    /// The greedy applicable chain from `snap` within `bound`.
    pub fn applicable_chain(&self, snap: MetaSnap, bound: ChainBound) -> Vec<MetaDiff> {
        self.applicable_chain_while(snap, |d, s| bound.allows(d, s))
    }

    /// The shortest prefix of the chain from `st.snap_b` that finishes the apply in
    /// progress (empty for a settled state, or if the chain cannot finish it).
    ///
    /// walb-tools takes the chain prefix whose results stay `<= st.snap_e.gid_b`; that is
    /// the same list whenever it can finish the apply, and too short otherwise (when a
    /// merged diff jumps over `snap_e.gid_b`), in which case one more diff is taken here.
    pub fn minimum_applicable(&self, st: &MetaState) -> Vec<MetaDiff> {
        if !st.applying {
            return Vec::new();
        }
        let target = st.snap_e.gid_b;
        let mut reached = false;
        let v = self.applicable_chain_while(st.snap_b, |_, s| {
            if reached {
                return false;
            }
            reached = s.gid_b >= target;
            true
        });
        if reached {
            v
        } else {
            Vec::new()
        }
    }

    /// The snapshot reached by the whole chain from `st.snap_b`.
    pub fn latest_snapshot(&self, st: &MetaState) -> MetaSnap {
        self.chain_snapshot(st, ChainBound::NONE)
    }

    /// The state reached by the whole chain; [`Error::Invalid`] if it cannot finish the
    /// apply in progress.
    pub fn latest_state(&self, st: &MetaState) -> Result<MetaState> {
        let v = self.applicable_chain(st.snap_b, ChainBound::NONE);
        st.apply_all(&v)
    }

    /// `st` with its apply in progress finished by the minimum list, and that list's
    /// length.
    fn settled(&self, st: &MetaState) -> Result<(MetaState, usize)> {
        let min = self.minimum_applicable(st);
        let s = st.apply_all(&min)?;
        Ok((s, min.len()))
    }

    /// The oldest settled state: `st` itself, or `st` with its apply in progress finished
    /// by [`DiffManager::minimum_applicable`]. [`Error::Invalid`] if it cannot be finished.
    pub fn settled_state(&self, st: &MetaState) -> Result<MetaState> {
        Ok(self.settled(st)?.0)
    }

    /// The state reached by the chain from `st.snap_b` within `bound` (`get meta-state`):
    /// settled, or in its applying form `<B-->E>` when `applying` (unchanged if the chain
    /// is empty). [`Error::Invalid`] if the chain cannot finish an apply in progress.
    pub fn chain_state(
        &self,
        st: &MetaState,
        bound: ChainBound,
        applying: bool,
    ) -> Result<MetaState> {
        let v = self.applicable_chain(st.snap_b, bound);
        if applying {
            st.begin_applying(&v)
        } else {
            st.end_applying(&v)
        }
    }

    /// The snapshot reached by the chain from `st.snap_b` within `bound`
    /// (`get meta-snap`).
    pub fn chain_snapshot(&self, st: &MetaState, bound: ChainBound) -> MetaSnap {
        let v = self.applicable_chain(st.snap_b, bound);
        st.snap_b.apply_all(&v).unwrap_or(st.snap_b)
    }

    /// The first clean state on the chain (after finishing an apply in progress);
    /// [`Error::Invalid`] if there is none.
    pub fn oldest_clean_state(&self, st: &MetaState) -> Result<MetaState> {
        let (mut s, _) = self.settled(st)?;
        while s.snap_b.is_dirty() {
            let d = self
                .next_applicable(s.snap_b)
                .ok_or_else(|| Error::Invalid(format!("no clean snapshot reachable from {st}")))?;
            s = s.apply(d)?;
        }
        Ok(s)
    }

    /// Restorable points from the base state `st`, oldest first: the settled base if it is
    /// clean, then every clean state on the chain that is explicit (or all of them when
    /// `all`). Empty if the apply in progress cannot be finished.
    pub fn restorable(&self, st: &MetaState, all: bool) -> Vec<RestorePoint> {
        let chain = self.applicable_chain(st.snap_b, ChainBound::NONE);
        let Ok((mut s, start)) = self.settled(st) else {
            return Vec::new();
        };
        let explicit_at = |i: usize| chain.get(i).is_none_or(|d| !d.mergeable);
        let mut out = Vec::new();
        if s.snap_b.is_clean() {
            out.push(RestorePoint {
                gid: s.snap_b.gid_b,
                timestamp: s.timestamp,
                explicit: explicit_at(start),
            });
        }
        for (i, d) in chain.iter().enumerate().skip(start) {
            let Ok(next) = s.apply(d) else {
                break;
            };
            s = next;
            let explicit = explicit_at(i + 1);
            if s.snap_b.is_clean() && (all || explicit) {
                out.push(RestorePoint {
                    gid: s.snap_b.gid_b,
                    timestamp: s.timestamp,
                    explicit,
                });
            }
        }
        out
    }

    /// Gids of all clean snapshots on the chain (`restorable(st, true)`).
    pub fn clean_snapshots(&self, st: &MetaState) -> Vec<u64> {
        self.restorable(st, true).iter().map(|p| p.gid).collect()
    }

    /// The oldest clean snapshot's gid; [`Error::Invalid`] if there is none.
    pub fn oldest_clean_snapshot(&self, st: &MetaState) -> Result<u64> {
        self.clean_snapshots(st)
            .first()
            .copied()
            .ok_or_else(|| Error::Invalid(format!("no clean snapshot reachable from {st}")))
    }

    /// The greedy mergeable run starting at the first diffs with `snap_b.gid_b >= gid`,
    /// extended while `keep(candidate)` (the first diff is not tested).
    pub fn mergeable_from_while(
        &self,
        gid: u64,
        mut keep: impl FnMut(&MetaDiff) -> bool,
    ) -> Vec<MetaDiff> {
        let Some((_, first)) = self.by_begin.range(gid..).next() else {
            return Vec::new();
        };
        let Some(first) = max_progress(first.iter()) else {
            return Vec::new();
        };
        let mut merged = first.clone();
        let mut v = vec![first.clone()];
        loop {
            let next = max_progress(
                self.covering(merged.snap_e.gid_b)
                    .filter(|d| !d.same_range(&merged) && merged.can_merge(d)),
            );
            let Some(d) = next else { break };
            if !keep(d) {
                break;
            }
            merged = merged.merged(d);
            v.push(d.clone());
        }
        v
    }

    /// The mergeable run from `gid` (`merge vol gidB ...`), truncated by `limits`.
    pub fn mergeable_from(&self, gid: u64, limits: &MergeLimits) -> Vec<MetaDiff> {
        let mut v = self.mergeable_from_while(gid, |_| true);
        limits.truncate(&mut v);
        v
    }

    /// The prefix of the chain from `snap` that can be merged into one diff, truncated by
    /// `limits` (what replication sends).
    pub fn applicable_mergeable(&self, snap: MetaSnap, limits: &MergeLimits) -> Vec<MetaDiff> {
        let mut v = self.applicable_chain(snap, ChainBound::NONE);
        let mut keep = v.len().min(1);
        if let Some(first) = v.first() {
            let mut merged = first.clone();
            for d in v.iter().skip(1) {
                if !merged.can_merge(d) {
                    break;
                }
                merged = merged.merged(d);
                keep += 1;
            }
        }
        v.truncate(keep);
        limits.truncate(&mut v);
        v
    }

    /// Removes every diff not on the applicable chain from `base`; returns them, sorted.
    pub fn gc(&mut self, base: MetaSnap) -> Vec<MetaDiff> {
        let chain: HashSet<(MetaSnap, MetaSnap)> = self
            .applicable_chain(base, ChainBound::NONE)
            .iter()
            .map(MetaDiff::key)
            .collect();
        let garbage: Vec<MetaDiff> = self
            .iter()
            .filter(|d| !chain.contains(&d.key()))
            .cloned()
            .collect();
        self.remove_all(&garbage);
        garbage
    }

    /// Removes diffs lying inside `[gid_b, gid_e]` other than `|gid_b|-->|gid_e|`-ranged
    /// ones (used after receiving a merged diff); returns them, sorted.
    pub fn gc_range(&mut self, gid_b: u64, gid_e: u64) -> Vec<MetaDiff> {
        let garbage: Vec<MetaDiff> = self
            .by_begin
            .range(gid_b..gid_e.max(gid_b))
            .flat_map(|(_, v)| v.iter())
            .filter(|d| {
                d.snap_e.gid_b <= gid_e && !(d.snap_b.gid_b == gid_b && d.snap_e.gid_b == gid_e)
            })
            .cloned()
            .collect();
        self.remove_all(&garbage);
        garbage
    }

    /// Removes diffs with `snap_e.gid_b <= gid` (after an apply reached `gid`); returns
    /// them, sorted.
    pub fn erase_before_gid(&mut self, gid: u64) -> Vec<MetaDiff> {
        let garbage: Vec<MetaDiff> = self
            .by_begin
            .range(..gid)
            .flat_map(|(_, v)| v.iter())
            .filter(|d| d.snap_e.gid_b <= gid)
            .cloned()
            .collect();
        self.remove_all(&garbage);
        garbage
    }

    /// The chain that turns the base `st` into exactly `gid` (clean if `must_be_clean`).
    fn materialize(&self, st: &MetaState, gid: u64, must_be_clean: bool) -> Option<Vec<MetaDiff>> {
        let v = self.applicable_chain(st.snap_b, ChainBound::gid(gid));
        if self.minimum_applicable(st).len() > v.len() {
            return None;
        }
        let reached = st.apply_all(&v).ok()?;
        let ok = !reached.applying
            && reached.snap_b.gid_b == gid
            && (!must_be_clean || reached.snap_b.is_clean());
        ok.then_some(v)
    }

    /// Diffs to restore the clean snapshot `|gid|` from the base `st`, at most `max_nr`
    /// of them (0 = no limit; a restore may proceed in several rounds). `None` if `|gid|`
    /// is not restorable.
    pub fn diffs_to_restore(
        &self,
        st: &MetaState,
        gid: u64,
        max_nr: usize,
    ) -> Option<Vec<MetaDiff>> {
        let mut v = self.materialize(st, gid, true)?;
        if max_nr > 0 {
            v.truncate(max_nr);
        }
        Some(v)
    }

    /// Diffs to scan the snapshot with `gid_b == gid` (clean or dirty) from the base `st`.
    /// `None` if it is not reachable or needs more than `max_nr` diffs (0 = no limit).
    pub fn diffs_to_scan(&self, st: &MetaState, gid: u64, max_nr: usize) -> Option<Vec<MetaDiff>> {
        let v = self.materialize(st, gid, false)?;
        (max_nr == 0 || v.len() <= max_nr).then_some(v)
    }

    /// Diffs to apply to the base `st` up to `gid`, at most `max_nr` (0 = no limit) but
    /// never fewer than the minimum list of an apply in progress. May be empty.
    pub fn diffs_to_apply(&self, st: &MetaState, gid: u64, max_nr: usize) -> Vec<MetaDiff> {
        let mut v = self.applicable_chain(st.snap_b, ChainBound::gid(gid));
        if max_nr > 0 {
            v.truncate(max_nr);
        }
        let min = self.minimum_applicable(st);
        if min.len() > v.len() {
            min
        } else {
            v
        }
    }

    /// Diffs that turn the base `st` into exactly `snap` (replication's sync check).
    pub fn diffs_to_reach(&self, st: &MetaState, snap: MetaSnap) -> Option<Vec<MetaDiff>> {
        let v = self.applicable_chain(st.snap_b, ChainBound::gid(snap.gid_b));
        if self.minimum_applicable(st).len() > v.len() {
            return None;
        }
        let reached = st.apply_all(&v).ok()?;
        (!reached.applying && reached.snap_b == snap).then_some(v)
    }

    fn range_iter(&self, gid_b: u64, gid_e: u64) -> Result<impl Iterator<Item = &MetaDiff> + '_> {
        if gid_b >= gid_e {
            return Err(Error::Invalid(format!(
                "diff range needs gidB < gidE, got {gid_b} >= {gid_e}"
            )));
        }
        Ok(self
            .by_begin
            .range(gid_b..gid_e)
            .flat_map(|(_, v)| v.iter()))
    }

    /// Diffs with `gid_b <= snap_b.gid_b < gid_e`, sorted (`get diff vol gidB gidE`).
    /// [`Error::Invalid`] if `gid_b >= gid_e`.
    pub fn range(&self, gid_b: u64, gid_e: u64) -> Result<Vec<MetaDiff>> {
        Ok(self.range_iter(gid_b, gid_e)?.cloned().collect())
    }

    /// Number of diffs in the range of [`DiffManager::range`] (`get num-diff`).
    pub fn count_range(&self, gid_b: u64, gid_e: u64) -> Result<usize> {
        Ok(self.range_iter(gid_b, gid_e)?.count())
    }

    /// Sum of `data_size` in the range of [`DiffManager::range`] (`get total-diff-size`),
    /// saturating.
    pub fn total_size_range(&self, gid_b: u64, gid_e: u64) -> Result<u64> {
        Ok(self
            .range_iter(gid_b, gid_e)?
            .fold(0u64, |acc, d| acc.saturating_add(d.data_size)))
    }
}
