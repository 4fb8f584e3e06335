//! wdiff file names (walb-tools §4.7).
//!
//! The directory listing of an archive volume is its diff metadata store, so a diff's
//! name carries everything but its size:
//!
//! - clean diff: `YYYYMMDDhhmmss-MC-B-E.wdiff`, e.g. `20170524050040-M--2-3.wdiff`;
//! - dirty diff: `YYYYMMDDhhmmss-MC-B0-B1-E0-E1.wdiff`, e.g.
//!   `20170524050040----10-10-11-57.wdiff`.
//!
//! The time is the diff's timestamp in UTC, `M` is `M` or `-` (mergeable), `C` is `C` or
//! `-` (compared diff) and gids are decimal. (The hex/`0|1` format in an old comment of
//! `meta.hpp` is not what walb-tools writes.)

use super::diff::{parse_flags, MetaDiff};
use super::snap::{parse_gid, MetaSnap};
use super::timestamp::{format_compact, parse_compact};
use crate::error::{Error, Result};

/// Suffix of every wdiff file name.
pub const DIFF_FILE_SUFFIX: &str = ".wdiff";

/// The wdiff file name of `diff` (timestamps after year 9999 saturate, see
/// [`timestamp`](super::timestamp)).
pub fn diff_file_name(diff: &MetaDiff) -> String {
    let mut s = format_compact(diff.timestamp);
    s.push('-');
    s.push_str(&diff.flags());
    let (b, e) = (diff.snap_b, diff.snap_e);
    if diff.is_dirty() {
        s.push_str(&format!("-{}-{}-{}-{}", b.gid_b, b.gid_e, e.gid_b, e.gid_e));
    } else {
        s.push_str(&format!("-{}-{}", b.gid_b, e.gid_b));
    }
    s.push_str(DIFF_FILE_SUFFIX);
    s
}

/// Parses a wdiff file name; `data_size` of the result is 0.
/// [`Error::Invalid`] if the name is not exactly of the form above or the diff breaks
/// the progress rule.
pub fn parse_diff_file_name(name: &str) -> Result<MetaDiff> {
    let bad = |why: &str| Error::Invalid(format!("bad wdiff file name {name:?}: {why}"));
    if !name.is_ascii() {
        return Err(bad("non-ASCII characters"));
    }
    let body = name
        .strip_suffix(DIFF_FILE_SUFFIX)
        .ok_or_else(|| bad("missing .wdiff suffix"))?;
    // Everything is ASCII, so byte offsets are char boundaries.
    if body.len() < 14 + 4 + 3 {
        return Err(bad("too short"));
    }
    let (ts, rest) = body.split_at(14);
    let timestamp = parse_compact(ts)?;
    let rest = rest
        .strip_prefix('-')
        .ok_or_else(|| bad("'-' expected after the timestamp"))?;
    let (flags, rest) = rest.split_at(2);
    let (mergeable, comp_diff) = parse_flags(flags).ok_or_else(|| bad("bad MC flags"))?;
    let rest = rest
        .strip_prefix('-')
        .ok_or_else(|| bad("'-' expected after the flags"))?;
    let gids = rest
        .split('-')
        .map(|t| parse_gid(t, name))
        .collect::<Result<Vec<u64>>>()?;
    let (snap_b, snap_e) = match gids[..] {
        [b, e] => (MetaSnap::clean(b), MetaSnap::clean(e)),
        [b0, b1, e0, e1] => (MetaSnap::new(b0, b1)?, MetaSnap::new(e0, e1)?),
        _ => return Err(bad("2 or 4 gids expected")),
    };
    let diff = MetaDiff::new(snap_b, snap_e)?
        .with_mergeable(mergeable)
        .with_comp_diff(comp_diff)
        .with_timestamp(timestamp);
    Ok(diff)
}
