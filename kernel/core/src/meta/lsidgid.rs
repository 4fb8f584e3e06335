//! [`MetaLsidGid`]: the storage daemon's link between a log position and a gid.
//!
//! Storage records one per snapshot (the `done` file and the snapshot queue): the lsid
//! the snapshot was taken at, its gid, its time and whether it is implicit (`mergeable`,
//! which becomes the `M` flag of the diff starting there).
//!
//! Persistent layout (27 bytes): `u16 0x0314`, `bool mergeable`, `u64 timestamp`,
//! `u64 lsid`, `u64 gid`.

use std::fmt;

use super::codec::{put_bool, put_u16, put_u64, Reader};
use super::timestamp::format_pretty;
use crate::error::Result;

/// An (lsid, gid) pair with the snapshot's flags (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetaLsidGid {
    /// Log sequence id (physical blocks) the snapshot was taken at.
    pub lsid: u64,
    /// Generation id of the snapshot.
    pub gid: u64,
    /// The snapshot is implicit (may be merged away).
    pub mergeable: bool,
    /// Unix time (seconds) of the snapshot.
    pub timestamp: u64,
}

const WHAT: &str = "MetaLsidGid";

impl MetaLsidGid {
    /// Preamble of the persistent form.
    pub const PREAMBLE: u16 = 0x0314;
    /// Size of the persistent form in bytes.
    pub const ENCODED_LEN: usize = 2 + 1 + 8 + 8 + 8;

    /// A record for `gid` taken at `lsid`.
    pub const fn new(lsid: u64, gid: u64, mergeable: bool, timestamp: u64) -> Self {
        MetaLsidGid {
            lsid,
            gid,
            mergeable,
            timestamp,
        }
    }

    /// Appends the persistent form to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        put_u16(out, Self::PREAMBLE);
        put_bool(out, self.mergeable);
        put_u64(out, self.timestamp);
        put_u64(out, self.lsid);
        put_u64(out, self.gid);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.need(WHAT, Self::ENCODED_LEN)?;
        r.preamble(WHAT, Self::PREAMBLE)?;
        let mergeable = r.bool(WHAT)?;
        let timestamp = r.u64(WHAT)?;
        let lsid = r.u64(WHAT)?;
        let gid = r.u64(WHAT)?;
        Ok(MetaLsidGid {
            lsid,
            gid,
            mergeable,
            timestamp,
        })
    }
}

impl Default for MetaLsidGid {
    /// lsid and gid `2^64-1` (unknown), not mergeable, time 0, as in walb-tools.
    fn default() -> Self {
        Self::new(u64::MAX, u64::MAX, false, 0)
    }
}

impl fmt::Display for MetaLsidGid {
    /// `LsidGid timestamp YYYY-MM-DDThh:mm:ss isMergeable 0|1 lsid N gid N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LsidGid timestamp {} isMergeable {} lsid {} gid {}",
            format_pretty(self.timestamp),
            u8::from(self.mergeable),
            self.lsid,
            self.gid
        )
    }
}

crate::meta::codec::persistent_record!(MetaLsidGid);
