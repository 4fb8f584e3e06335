//! [`MetaSnap`]: the gid range an image's blocks come from.
//!
//! `|B,E|` with `B <= E` describes an image whose every block holds its content as of some
//! gid in `[B, E]`. A *clean* snapshot (`B == E`, written `|B|`) is a point-in-time image;
//! a *dirty* one comes from a full/hash copy taken while the volume was being written.
//!
//! Persistent layout (18 bytes): `u16 0x0311`, `u64 gidB`, `u64 gidE`.

use std::fmt;
use std::str::FromStr;

use super::codec::{put_u16, put_u64, Reader};
use crate::error::{Error, Location, Result};

/// A snapshot `|gid_b, gid_e|` (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetaSnap {
    /// First gid any block may come from.
    pub gid_b: u64,
    /// Last gid any block may come from (`gid_b <= gid_e`).
    pub gid_e: u64,
}

const WHAT: &str = "MetaSnap";

impl MetaSnap {
    /// Preamble of the persistent form.
    pub const PREAMBLE: u16 = 0x0311;
    /// Size of the persistent form in bytes.
    pub const ENCODED_LEN: usize = 2 + 8 + 8;
    /// The "no snapshot yet" value `|2^64-1|` written by walb-tools at volume init.
    pub const EMPTY: MetaSnap = MetaSnap {
        gid_b: u64::MAX,
        gid_e: u64::MAX,
    };

    /// The clean snapshot `|gid|`.
    pub const fn clean(gid: u64) -> Self {
        MetaSnap {
            gid_b: gid,
            gid_e: gid,
        }
    }

    /// The snapshot `|gid_b, gid_e|`; [`Error::Invalid`] if `gid_b > gid_e`.
    pub fn new(gid_b: u64, gid_e: u64) -> Result<Self> {
        let s = MetaSnap { gid_b, gid_e };
        s.validate()?;
        Ok(s)
    }

    /// Checks `gid_b <= gid_e`.
    pub fn validate(&self) -> Result<()> {
        if self.gid_b > self.gid_e {
            return Err(Error::Invalid(format!(
                "snapshot needs gidB <= gidE, got |{},{}|",
                self.gid_b, self.gid_e
            )));
        }
        Ok(())
    }

    /// True for a point-in-time image (`gid_b == gid_e`).
    pub const fn is_clean(&self) -> bool {
        self.gid_b == self.gid_e
    }

    /// True for an image mixing several points in time (`gid_b != gid_e`).
    pub const fn is_dirty(&self) -> bool {
        self.gid_b != self.gid_e
    }

    /// True for [`MetaSnap::EMPTY`].
    pub fn is_empty(&self) -> bool {
        *self == Self::EMPTY
    }

    /// Appends the persistent form to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        put_u16(out, Self::PREAMBLE);
        put_u64(out, self.gid_b);
        put_u64(out, self.gid_e);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.need(WHAT, Self::ENCODED_LEN)?;
        let at = r.pos();
        r.preamble(WHAT, Self::PREAMBLE)?;
        let gid_b = r.u64(WHAT)?;
        let gid_e = r.u64(WHAT)?;
        if gid_b > gid_e {
            return Err(Error::corrupt(
                WHAT,
                Location::Offset(at as u64),
                format!("gidB {gid_b} > gidE {gid_e}"),
            ));
        }
        Ok(MetaSnap { gid_b, gid_e })
    }

    /// Parses `|B|` or `|B,E|` at the start of `s`; returns the snapshot and the rest.
    pub(crate) fn parse_prefix(s: &str) -> Result<(Self, &str)> {
        let bad = |why: &str| Error::Invalid(format!("bad snapshot in {s:?}: {why}"));
        let rest = s
            .strip_prefix('|')
            .ok_or_else(|| bad("must start with '|'"))?;
        let (inner, tail) = rest
            .split_once('|')
            .ok_or_else(|| bad("missing closing '|'"))?;
        let (b, e) = match inner.split_once(',') {
            Some((b, e)) => (parse_gid(b, s)?, parse_gid(e, s)?),
            None => {
                let g = parse_gid(inner, s)?;
                (g, g)
            }
        };
        let snap = MetaSnap::new(b, e)?;
        Ok((snap, tail))
    }
}

/// Parses a non-empty decimal gid (digits only).
pub(crate) fn parse_gid(t: &str, ctx: &str) -> Result<u64> {
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "bad gid {t:?} in {ctx:?}: decimal digits expected"
        )));
    }
    t.parse::<u64>()
        .map_err(|_| Error::Invalid(format!("gid {t:?} in {ctx:?} does not fit in 64 bits")))
}

impl Default for MetaSnap {
    /// [`MetaSnap::EMPTY`], as in walb-tools.
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Display for MetaSnap {
    /// `|B|` when clean, `|B,E|` when dirty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            write!(f, "|{}|", self.gid_b)
        } else {
            write!(f, "|{},{}|", self.gid_b, self.gid_e)
        }
    }
}

impl FromStr for MetaSnap {
    type Err = Error;

    /// Parses `|B|` or `|B,E|` (the whole string).
    fn from_str(s: &str) -> Result<Self> {
        let (snap, rest) = MetaSnap::parse_prefix(s)?;
        if !rest.is_empty() {
            return Err(Error::Invalid(format!(
                "bad snapshot {s:?}: trailing {rest:?}"
            )));
        }
        Ok(snap)
    }
}

crate::meta::codec::persistent_record!(MetaSnap);
