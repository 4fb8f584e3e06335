//! [`MetaDiff`], the relation of a diff to a snapshot, apply and merge.
//!
//! A diff `snap_b-->snap_e` turns an image at `snap_b` into one at `snap_e`. It must make
//! progress: `snap_b.gid_b < snap_e.gid_b` and `snap_b.gid_e <= snap_e.gid_e`.
//!
//! - [`relation`]: a compared diff (`comp_diff`, from hash replication) is applicable only
//!   to a snapshot with the same `gid_b`; any other diff is too new if it starts after the
//!   snapshot, too old if it ends at or before it, else applicable.
//! - [`MetaSnap::apply`]: a clean diff gives `|E.gidB, max(E.gidB, s.gidE)|`, a dirty diff
//!   gives `E` (theorem b3: a dirty image becomes clean once the diffs pass its `gidE`).
//! - [`MetaDiff::can_merge`]/[`MetaDiff::merge`]: `d0 ++ d1` needs `d1.mergeable`, no
//!   compared diff and `d0.B.gidB <= d1.B.gidB <= d0.E.gidB < d1.E.gidB`; the result starts
//!   at `d0.B`, ends like an apply, keeps `d0.mergeable` and takes `d1.timestamp`.
//!
//! Persistent layout (56 bytes): `u16 0x0312`, `bool mergeable`, `bool compDiff`,
//! `u64 timestamp`, `MetaSnap B`, `MetaSnap E`, `u64 dataSize`.
//!
//! Text form (the controller's diff-list line): `|B|-->|E| MC YYYY-MM-DDThh:mm:ss SIZE`,
//! where `M`/`C` are `-` when the flag is off and the time is UTC.

use std::fmt;
use std::str::FromStr;

use super::codec::{put_bool, put_u16, put_u64, Reader};
use super::snap::MetaSnap;
use super::timestamp::{format_pretty, parse_pretty};
use crate::error::{Error, Location, Result};

/// How a diff relates to a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// The diff ends at or before the snapshot: it is already contained in it.
    TooOld,
    /// The diff starts after the snapshot: diffs in between are missing.
    TooNew,
    /// The diff can be applied to the snapshot.
    Applicable,
    /// A compared diff whose source snapshot is not this one.
    NotApplicable,
}

impl Relation {
    /// The walb-tools protocol word: `too-old-diff`, `too-new-diff`, `applicable-diff`,
    /// `not-applicable-diff`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Relation::TooOld => "too-old-diff",
            Relation::TooNew => "too-new-diff",
            Relation::Applicable => "applicable-diff",
            Relation::NotApplicable => "not-applicable-diff",
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The relation of `diff` to `snap` (see the module documentation).
pub fn relation(snap: &MetaSnap, diff: &MetaDiff) -> Relation {
    let b = diff.snap_b.gid_b;
    let e = diff.snap_e.gid_b;
    let s = snap.gid_b;
    if b > s {
        Relation::TooNew
    } else if e <= s {
        Relation::TooOld
    } else if diff.comp_diff && b != s {
        Relation::NotApplicable
    } else {
        Relation::Applicable
    }
}

impl MetaSnap {
    /// The relation of `diff` to this snapshot.
    pub fn relation(&self, diff: &MetaDiff) -> Relation {
        relation(self, diff)
    }

    /// True if `diff` is applicable to this snapshot.
    pub fn can_apply(&self, diff: &MetaDiff) -> bool {
        relation(self, diff) == Relation::Applicable
    }

    /// The snapshot after applying `diff`, without checking applicability.
    pub(crate) fn applied(&self, diff: &MetaDiff) -> MetaSnap {
        if diff.is_clean() {
            let g = diff.snap_e.gid_b;
            MetaSnap {
                gid_b: g,
                gid_e: g.max(self.gid_e),
            }
        } else {
            diff.snap_e
        }
    }

    /// The snapshot after applying `diff`; [`Error::Invalid`] if it is not applicable.
    pub fn apply(&self, diff: &MetaDiff) -> Result<MetaSnap> {
        match relation(self, diff) {
            Relation::Applicable => Ok(self.applied(diff)),
            r => Err(Error::Invalid(format!(
                "cannot apply {diff:#} to {self}: {r}"
            ))),
        }
    }

    /// True if `diffs` can be applied one after the other, starting from this snapshot.
    pub fn can_apply_all(&self, diffs: &[MetaDiff]) -> bool {
        self.apply_all(diffs).is_ok()
    }

    /// The snapshot after applying `diffs` in order.
    pub fn apply_all(&self, diffs: &[MetaDiff]) -> Result<MetaSnap> {
        diffs.iter().try_fold(*self, |s, d| s.apply(d))
    }
}

/// One diff (one wdiff file) with its flags (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetaDiff {
    /// Snapshot the diff applies to.
    pub snap_b: MetaSnap,
    /// Snapshot the diff produces.
    pub snap_e: MetaSnap,
    /// The snapshot at `snap_b` is implicit: this diff may be merged into its predecessor.
    pub mergeable: bool,
    /// A compared diff (hash replication): never merged, applicable to `|snap_b.gid_b|` only.
    pub comp_diff: bool,
    /// Unix time (seconds) of the snapshot after applying the diff.
    pub timestamp: u64,
    /// Size of the wdiff file in bytes (not part of the file name; 0 if unknown).
    pub data_size: u64,
}

const WHAT: &str = "MetaDiff";

impl MetaDiff {
    /// Preamble of the persistent form.
    pub const PREAMBLE: u16 = 0x0312;
    /// Size of the persistent form in bytes.
    pub const ENCODED_LEN: usize = 2 + 1 + 1 + 8 + MetaSnap::ENCODED_LEN * 2 + 8;

    /// A diff `snap_b-->snap_e` with all flags off, timestamp 0 and size 0.
    /// [`Error::Invalid`] if it breaks the progress rule.
    pub fn new(snap_b: MetaSnap, snap_e: MetaSnap) -> Result<Self> {
        let d = MetaDiff {
            snap_b,
            snap_e,
            mergeable: false,
            comp_diff: false,
            timestamp: 0,
            data_size: 0,
        };
        d.validate()?;
        Ok(d)
    }

    /// The clean diff `|gid_b|-->|gid_e|`.
    pub fn clean(gid_b: u64, gid_e: u64) -> Result<Self> {
        Self::new(MetaSnap::clean(gid_b), MetaSnap::clean(gid_e))
    }

    /// Sets [`MetaDiff::mergeable`].
    pub fn with_mergeable(mut self, mergeable: bool) -> Self {
        self.mergeable = mergeable;
        self
    }

    /// Sets [`MetaDiff::comp_diff`].
    pub fn with_comp_diff(mut self, comp_diff: bool) -> Self {
        self.comp_diff = comp_diff;
        self
    }

    /// Sets [`MetaDiff::timestamp`].
    pub fn with_timestamp(mut self, timestamp: u64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Sets [`MetaDiff::data_size`].
    pub fn with_data_size(mut self, data_size: u64) -> Self {
        self.data_size = data_size;
        self
    }

    /// Checks both snapshots and the progress rule
    /// (`B.gidB < E.gidB` and `B.gidE <= E.gidE`).
    pub fn validate(&self) -> Result<()> {
        self.snap_b.validate()?;
        self.snap_e.validate()?;
        if self.snap_b.gid_b >= self.snap_e.gid_b {
            return Err(Error::Invalid(format!(
                "diff {self:#} breaks the progress rule: B.gidB must be < E.gidB"
            )));
        }
        if self.snap_b.gid_e > self.snap_e.gid_e {
            return Err(Error::Invalid(format!(
                "diff {self:#} breaks the progress rule: B.gidE must be <= E.gidE"
            )));
        }
        Ok(())
    }

    /// True if both ends are clean.
    pub const fn is_clean(&self) -> bool {
        self.snap_b.is_clean() && self.snap_e.is_clean()
    }

    /// True if either end is dirty.
    pub const fn is_dirty(&self) -> bool {
        !self.is_clean()
    }

    /// The identity of the diff inside a [`DiffManager`](super::DiffManager): its two ends.
    pub const fn key(&self) -> (MetaSnap, MetaSnap) {
        (self.snap_b, self.snap_e)
    }

    /// True if both diffs have the same ends (flags, time and size aside).
    pub fn same_range(&self, other: &MetaDiff) -> bool {
        self.key() == other.key()
    }

    /// True if `self` covers `other`'s gid range, so `other` is redundant next to `self`.
    pub fn contains(&self, other: &MetaDiff) -> bool {
        self.snap_b.gid_b <= other.snap_b.gid_b && other.snap_e.gid_b <= self.snap_e.gid_b
    }

    /// True if `next` may be merged after `self` (`self ++ next`).
    pub fn can_merge(&self, next: &MetaDiff) -> bool {
        next.mergeable
            && !self.comp_diff
            && !next.comp_diff
            && self.snap_b.gid_b <= next.snap_b.gid_b
            && next.snap_b.gid_b <= self.snap_e.gid_b
            && self.snap_e.gid_b < next.snap_e.gid_b
    }

    /// The merged diff without checking [`MetaDiff::can_merge`].
    pub(crate) fn merged(&self, next: &MetaDiff) -> MetaDiff {
        MetaDiff {
            snap_b: self.snap_b,
            snap_e: self.snap_e.applied(next),
            mergeable: self.mergeable,
            comp_diff: false,
            timestamp: next.timestamp,
            // The size of a merged file is only known once it is written.
            data_size: 0,
        }
    }

    /// `self ++ next`; [`Error::Invalid`] unless [`MetaDiff::can_merge`] holds.
    /// The result's `data_size` is 0 (unknown until the merged file exists).
    pub fn merge(&self, next: &MetaDiff) -> Result<MetaDiff> {
        if !self.can_merge(next) {
            return Err(Error::Invalid(format!(
                "cannot merge {self:#} (flags {}) with {next:#} (flags {})",
                self.flags(),
                next.flags()
            )));
        }
        Ok(self.merged(next))
    }

    /// True if `diffs` is non-empty and can be merged left to right.
    pub fn can_merge_all(diffs: &[MetaDiff]) -> bool {
        Self::merge_all(diffs).is_ok()
    }

    /// Merges `diffs` left to right; [`Error::Invalid`] if empty or not mergeable.
    pub fn merge_all(diffs: &[MetaDiff]) -> Result<MetaDiff> {
        let (first, rest) = diffs
            .split_first()
            .ok_or_else(|| Error::Invalid("cannot merge an empty diff list".to_string()))?;
        rest.iter().try_fold(first.clone(), |acc, d| acc.merge(d))
    }

    /// The two-letter flag field: `M` or `-`, then `C` or `-`.
    pub fn flags(&self) -> String {
        let m = if self.mergeable { 'M' } else { '-' };
        let c = if self.comp_diff { 'C' } else { '-' };
        format!("{m}{c}")
    }

    /// Appends the persistent form to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        put_u16(out, Self::PREAMBLE);
        put_bool(out, self.mergeable);
        put_bool(out, self.comp_diff);
        put_u64(out, self.timestamp);
        self.snap_b.write_bytes(out);
        self.snap_e.write_bytes(out);
        put_u64(out, self.data_size);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.need(WHAT, Self::ENCODED_LEN)?;
        let at = r.pos();
        r.preamble(WHAT, Self::PREAMBLE)?;
        let mergeable = r.bool(WHAT)?;
        let comp_diff = r.bool(WHAT)?;
        let timestamp = r.u64(WHAT)?;
        let snap_b = MetaSnap::read(r)?;
        let snap_e = MetaSnap::read(r)?;
        let data_size = r.u64(WHAT)?;
        let d = MetaDiff {
            snap_b,
            snap_e,
            mergeable,
            comp_diff,
            timestamp,
            data_size,
        };
        d.validate()
            .map_err(|e| Error::corrupt(WHAT, Location::Offset(at as u64), e.to_string()))?;
        Ok(d)
    }

    /// Parses `|B|-->|E|` at the start of `s`; returns both ends and the rest.
    pub(crate) fn parse_range_prefix(s: &str) -> Result<(MetaSnap, MetaSnap, &str)> {
        let (b, rest) = MetaSnap::parse_prefix(s)?;
        let rest = rest
            .strip_prefix("-->")
            .ok_or_else(|| Error::Invalid(format!("bad diff {s:?}: '-->' expected")))?;
        let (e, rest) = MetaSnap::parse_prefix(rest)?;
        Ok((b, e, rest))
    }
}

impl fmt::Display for MetaDiff {
    /// The diff-list line `|B|-->|E| MC YYYY-MM-DDThh:mm:ss SIZE`;
    /// with `{:#}` only the range `|B|-->|E|`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-->{}", self.snap_b, self.snap_e)?;
        if !f.alternate() {
            write!(
                f,
                " {} {} {}",
                self.flags(),
                format_pretty(self.timestamp),
                self.data_size
            )?;
        }
        Ok(())
    }
}

impl FromStr for MetaDiff {
    type Err = Error;

    /// Parses the diff-list line `|B|-->|E| MC YYYY-MM-DDThh:mm:ss SIZE`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Invalid(format!("bad diff line {s:?}: {why}"));
        let mut it = s.split_whitespace();
        let (Some(range), Some(flags), Some(ts), Some(size), None) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad("expected 4 fields"));
        };
        let (snap_b, snap_e, rest) = MetaDiff::parse_range_prefix(range)?;
        if !rest.is_empty() {
            return Err(bad("trailing text after the range"));
        }
        let (mergeable, comp_diff) = parse_flags(flags).ok_or_else(|| bad("flags"))?;
        let timestamp = parse_pretty(ts)?;
        let data_size = size
            .parse::<u64>()
            .ok()
            .filter(|_| size.bytes().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| bad("size"))?;
        let d = MetaDiff {
            snap_b,
            snap_e,
            mergeable,
            comp_diff,
            timestamp,
            data_size,
        };
        d.validate()?;
        Ok(d)
    }
}

/// Parses the `MC` flag field (`M` or `-`, then `C` or `-`).
pub(crate) fn parse_flags(s: &str) -> Option<(bool, bool)> {
    match s.as_bytes() {
        [m, c] => {
            let m = match m {
                b'M' => true,
                b'-' => false,
                _ => return None,
            };
            let c = match c {
                b'C' => true,
                b'-' => false,
                _ => return None,
            };
            Some((m, c))
        }
        _ => None,
    }
}

crate::meta::codec::persistent_record!(MetaDiff);
