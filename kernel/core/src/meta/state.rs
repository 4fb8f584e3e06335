//! [`MetaState`]: the metadata of an archive's base image.
//!
//! `<B>` is an image at snapshot `B`. While diffs are being written into the base image,
//! the archive persists `<B-->E>` (`applying`): the image is somewhere between `B` and
//! `E`, so the next apply must use diffs that reach at least `E.gidB`. The timestamp is
//! that of the last applied diff.
//!
//! - [`MetaState::can_apply`]: the diff must be applicable to `B` and, when applying, end
//!   at or after `E.gidB`.
//! - [`MetaState::begin_applying`] gives `<B --> apply(B, diffs)>`;
//!   [`MetaState::end_applying`] (= [`MetaState::apply_all`]) gives `<apply(B, diffs)>`,
//!   both with the last diff's timestamp.
//!
//! Text form: `<|5|>-20170524044940` or `<|5|-->|9|>-20170524044940` (UTC).
//! Persistent layout (47 bytes): `u16 0x0313`, `bool applying`, `u64 timestamp`,
//! `MetaSnap B`, `MetaSnap E` (E equals B when not applying).

use std::fmt;
use std::str::FromStr;

use super::codec::{put_bool, put_u16, put_u64, Reader};
use super::diff::MetaDiff;
use super::snap::MetaSnap;
use super::timestamp::{format_compact, parse_compact};
use crate::error::{Error, Location, Result};

/// A base image state (see the module documentation).
///
/// Equality compares `applying`, `snap_b`, `snap_e` only while applying, and `timestamp`;
/// use [`MetaState::same_snapshots`] to ignore the timestamp.
#[derive(Debug, Clone, Copy, Eq)]
pub struct MetaState {
    /// Snapshot the image is (or was, before the apply in progress) at.
    pub snap_b: MetaSnap,
    /// Target snapshot of the apply in progress; equals `snap_b` when not applying.
    pub snap_e: MetaSnap,
    /// True while an apply is in progress.
    pub applying: bool,
    /// Unix time (seconds) of the image's snapshot.
    pub timestamp: u64,
}

const WHAT: &str = "MetaState";

impl MetaState {
    /// Preamble of the persistent form.
    pub const PREAMBLE: u16 = 0x0313;
    /// Size of the persistent form in bytes.
    pub const ENCODED_LEN: usize = 2 + 1 + 8 + MetaSnap::ENCODED_LEN * 2;

    /// The settled state `<snap>`.
    pub const fn new(snap: MetaSnap, timestamp: u64) -> Self {
        MetaState {
            snap_b: snap,
            snap_e: snap,
            applying: false,
            timestamp,
        }
    }

    /// The in-progress state `<snap_b-->snap_e>`; [`Error::Invalid`] unless
    /// `snap_b.gid_b < snap_e.gid_b`.
    pub fn new_applying(snap_b: MetaSnap, snap_e: MetaSnap, timestamp: u64) -> Result<Self> {
        let st = MetaState {
            snap_b,
            snap_e,
            applying: true,
            timestamp,
        };
        st.validate()?;
        Ok(st)
    }

    /// The state written at archive volume init: `<|2^64-1|>` at time 0.
    pub const fn empty() -> Self {
        Self::new(MetaSnap::EMPTY, 0)
    }

    /// True for [`MetaState::empty`] (any timestamp).
    pub fn is_empty(&self) -> bool {
        !self.applying && self.snap_b.is_empty()
    }

    /// Checks the snapshots and, when applying, `snap_b.gid_b < snap_e.gid_b`.
    pub fn validate(&self) -> Result<()> {
        self.snap_b.validate()?;
        self.snap_e.validate()?;
        if self.applying && self.snap_b.gid_b >= self.snap_e.gid_b {
            return Err(Error::Invalid(format!(
                "applying state {} needs B.gidB < E.gidB",
                self.snapshots_string()
            )));
        }
        Ok(())
    }

    /// True if both states describe the same snapshots (timestamps aside).
    pub fn same_snapshots(&self, other: &MetaState) -> bool {
        self.applying == other.applying
            && self.snap_b == other.snap_b
            && (!self.applying || self.snap_e == other.snap_e)
    }

    /// True if `diff` can be applied to this state.
    pub fn can_apply(&self, diff: &MetaDiff) -> bool {
        self.snap_b.can_apply(diff) && (!self.applying || self.snap_e.gid_b <= diff.snap_e.gid_b)
    }

    /// True if `diffs` can be applied in order and, when applying, reach `snap_e.gid_b`.
    /// An empty list never finishes an apply in progress.
    pub fn can_apply_all(&self, diffs: &[MetaDiff]) -> bool {
        self.target(diffs).is_ok()
    }

    /// The snapshot reached by `diffs`, checked against the apply in progress.
    fn target(&self, diffs: &[MetaDiff]) -> Result<MetaSnap> {
        let s = self.snap_b.apply_all(diffs)?;
        if self.applying && self.snap_e.gid_b > s.gid_b {
            return Err(Error::Invalid(format!(
                "diffs reaching {s} cannot finish the apply in progress {}",
                self.snapshots_string()
            )));
        }
        Ok(s)
    }

    /// `<B --> apply(B, diffs)>` with the last diff's timestamp (unchanged if empty).
    pub fn begin_applying(&self, diffs: &[MetaDiff]) -> Result<MetaState> {
        let s = self.target(diffs)?;
        match diffs.last() {
            None => Ok(*self),
            Some(last) => Ok(MetaState {
                snap_b: self.snap_b,
                snap_e: s,
                applying: true,
                timestamp: last.timestamp,
            }),
        }
    }

    /// `<apply(B, diffs)>` with the last diff's timestamp (unchanged if empty).
    pub fn end_applying(&self, diffs: &[MetaDiff]) -> Result<MetaState> {
        let s = self.target(diffs)?;
        match diffs.last() {
            None => Ok(*self),
            Some(last) => Ok(MetaState::new(s, last.timestamp)),
        }
    }

    /// The settled state after applying one diff.
    pub fn apply(&self, diff: &MetaDiff) -> Result<MetaState> {
        self.end_applying(std::slice::from_ref(diff))
    }

    /// The settled state after applying `diffs` (same as [`MetaState::end_applying`]).
    pub fn apply_all(&self, diffs: &[MetaDiff]) -> Result<MetaState> {
        self.end_applying(diffs)
    }

    /// `<|B|>` or `<|B|-->|E|>` without the timestamp.
    pub fn snapshots_string(&self) -> String {
        if self.applying {
            format!("<{}-->{}>", self.snap_b, self.snap_e)
        } else {
            format!("<{}>", self.snap_b)
        }
    }

    /// Parses `<...>-YYYYMMDDhhmmss`, or `<...>` alone with `default_timestamp`
    /// (walb-tools uses the current time there; pass it in).
    pub fn parse_with_default_timestamp(s: &str, default_timestamp: u64) -> Result<Self> {
        parse_state(s, Some(default_timestamp))
    }

    /// Appends the persistent form to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        put_u16(out, Self::PREAMBLE);
        put_bool(out, self.applying);
        put_u64(out, self.timestamp);
        self.snap_b.write_bytes(out);
        self.snap_e.write_bytes(out);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.need(WHAT, Self::ENCODED_LEN)?;
        let at = r.pos();
        r.preamble(WHAT, Self::PREAMBLE)?;
        let applying = r.bool(WHAT)?;
        let timestamp = r.u64(WHAT)?;
        let snap_b = MetaSnap::read(r)?;
        let snap_e = MetaSnap::read(r)?;
        let st = MetaState {
            snap_b,
            snap_e,
            applying,
            timestamp,
        };
        st.validate()
            .map_err(|e| Error::corrupt(WHAT, Location::Offset(at as u64), e.to_string()))?;
        Ok(st)
    }
}

impl PartialEq for MetaState {
    fn eq(&self, other: &Self) -> bool {
        self.same_snapshots(other) && self.timestamp == other.timestamp
    }
}

impl Default for MetaState {
    /// [`MetaState::empty`].
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Display for MetaState {
    /// `<|B|>-YYYYMMDDhhmmss` or `<|B|-->|E|>-YYYYMMDDhhmmss` (UTC).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.snapshots_string(),
            format_compact(self.timestamp)
        )
    }
}

impl FromStr for MetaState {
    type Err = Error;

    /// Parses `<|B|>-YYYYMMDDhhmmss` or `<|B|-->|E|>-YYYYMMDDhhmmss`; the timestamp is
    /// required (see [`MetaState::parse_with_default_timestamp`]).
    fn from_str(s: &str) -> Result<Self> {
        parse_state(s, None)
    }
}

fn parse_state(s: &str, default_ts: Option<u64>) -> Result<MetaState> {
    let bad = |why: &str| Error::Invalid(format!("bad meta state {s:?}: {why}"));
    let rest = s
        .strip_prefix('<')
        .ok_or_else(|| bad("must start with '<'"))?;
    let (snap_b, rest) = MetaSnap::parse_prefix(rest)?;
    let (snap_e, applying, rest) = match rest.strip_prefix("-->") {
        Some(r) => {
            let (e, r) = MetaSnap::parse_prefix(r)?;
            (e, true, r)
        }
        None => (snap_b, false, rest),
    };
    let rest = rest.strip_prefix('>').ok_or_else(|| bad("'>' expected"))?;
    let timestamp = if rest.is_empty() {
        default_ts.ok_or_else(|| bad("missing -YYYYMMDDhhmmss timestamp"))?
    } else {
        let ts = rest
            .strip_prefix('-')
            .ok_or_else(|| bad("'-' expected before the timestamp"))?;
        parse_compact(ts)?
    };
    let st = MetaState {
        snap_b,
        snap_e,
        applying,
        timestamp,
    };
    st.validate()?;
    Ok(st)
}

crate::meta::codec::persistent_record!(MetaState);
