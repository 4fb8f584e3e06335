//! The snapshot model: which image states exist, which diffs lead from one to another, and
//! which of them may be merged, applied, restored or garbage-collected.
//!
//! This is the metadata half of walb-tools' archive (`meta.hpp`/`meta.cpp` and the formal
//! write-up `doc/apply-merge-model.md`). It never touches block data, files or the clock:
//! every operation is a pure function of its arguments, and time is always a parameter.
//!
//! # Vocabulary
//!
//! - A **generation id** (gid) numbers the points in time at which storage took a snapshot.
//! - [`MetaSnap`] `|B,E|` is an image whose every block comes from some gid in `[B, E]`:
//!   *clean* (`|B|`, a point-in-time image) when `B == E`, *dirty* otherwise (a full copy
//!   taken while the volume was being written).
//! - [`MetaDiff`] `|B|-->|E|` is one wdiff file: it turns an image at `snap_b` into one at
//!   `snap_e`. Its `mergeable` flag says whether the snapshot it starts at is *implicit*
//!   (may disappear by merging) and `comp_diff` marks a "compared diff" from hash
//!   replication, which is only valid against exactly one source snapshot.
//! - [`MetaState`] is the archive's base image: `<|B|>`, or `<|B|-->|E|>` while an apply
//!   is half done.
//! - [`MetaLsidGid`] ties a storage-side lsid to a gid.
//! - [`DiffManager`] holds every diff of a volume and answers the archive's queries:
//!   the greedy applicable chain, restorable snapshots, mergeable runs, garbage, and the
//!   diff lists needed to restore, scan or apply up to a gid.
//! - [`diff_file_name`]/[`parse_diff_file_name`] map a diff to its wdiff file name.
//!
//! # Rules (walb-tools §4.6)
//!
//! - Relation of a diff `d` to a snapshot `s` ([`relation`]): a compared diff is applicable
//!   iff `d.B.gidB == s.gidB`; any other diff is too new if `d.B.gidB > s.gidB`, too old if
//!   `d.E.gidB <= s.gidB`, else applicable.
//! - Applying a clean diff gives `|d.E.gidB, max(d.E.gidB, s.gidE)|`; a dirty diff gives
//!   `d.E`. So a dirty image `|0,x|` stays dirty until the applied diffs pass `x`.
//! - `d0 ++ d1` is allowed iff `d1.mergeable`, neither is a compared diff and
//!   `d0.B.gidB <= d1.B.gidB <= d0.E.gidB < d1.E.gidB`; merge is associative and applying a
//!   merged diff equals applying its parts in order.
//!
//! # Text and byte forms
//!
//! `Display`/`FromStr` give the forms printed by walb-tools' controller (`|5|`, `|5,9|`,
//! the diff-list line `|0|-->|1| -- 2017-05-24T04:49:40 4128`, the state
//! `<|5|>-20170524044940`). `to_bytes`/`from_bytes` give the persistent layout of §4.6:
//! a fixed `u16` preamble (0x0311..0x0314), then the fields with `bool` as one byte and
//! `u64` as eight little-endian bytes. All timestamps are unix seconds printed in UTC.

mod codec;
mod diff;
mod lsidgid;
mod manager;
mod name;
mod snap;
mod state;
pub mod timestamp;

#[cfg(test)]
mod tests;

pub use diff::{relation, MetaDiff, Relation};
pub use lsidgid::MetaLsidGid;
pub use manager::{ChainBound, DiffManager, MergeLimits, RestorePoint};
pub use name::{diff_file_name, parse_diff_file_name, DIFF_FILE_SUFFIX};
pub use snap::MetaSnap;
pub use state::MetaState;
