//! Replication between archives (walb-tools.md §5.6): `replicate` on the source archive
//! (action `ReplSyncAsClient`), the session served by the destination archive.
//!
//! The source opens `Request::Replicate(ReplSync{vol, archive_uuid, do_resync})` on the
//! destination and answers the operator `Reply::Accepted` once the destination accepted
//! (or passes on its refusal). The destination needs a volume in SyncReady or Archived,
//! no running action and a foreground slot, and chooses the kind ([`super::admit::choose_kind`]):
//! `Full` for a SyncReady volume, `Resync` for an Archived one of another lineage
//! (archive uuid) when the source allows it (refused otherwise), else `HashOrDiff`. It
//! answers `Reply::Accepted` and `Step::ReplKind`. Then:
//!
//! 1. `Full` and `Resync`: the source sends `Step::ReplFull{size_lb, bulk_lb, base,
//!    uuid}`; the destination answers `Step::StartLb(0)`; the source sends its base image
//!    in bulks (all-zero ones as `Step::Zero`, [`crate::bulk`]) and ends the bulk; the
//!    destination writes a new image, syncs it and acks; it then takes the source's base
//!    state, volume uuid and archive uuid, drops every diff it held and commits the image
//!    (crash-safe order: an empty base first, so that an interruption boots SyncReady).
//!    A `Resync` instead compares: the source sends `Step::ReplResync{size_lb, bulk_lb,
//!    base, uuid, hash_seed}`, the destination streams the bulk hashes of its own base
//!    image and the source the sorted wdiff of its base's differing bulks, which the
//!    destination writes into its image (after an empty base state is saved, and the
//!    diffs it held are deleted) before taking the source's base, uuids and archive
//!    uuid; acked. Only what differs travels (walb-tools' resync).
//! 2. Rounds: the destination sends `Step::MetaState` of its latest snapshot; the source
//!    decides ([`plan_round`]): `Done`, or `Diff` followed by `Step::Uuid` (the volume's
//!    uuid), `Step::MetaDiff` and the bytes of one sorted wdiff, the applicable and
//!    mergeable chain from the destination's snapshot merged on the fly (cut at
//!    `merge_size_max` bytes and `--max-wdiff-send-nr` files; one diff per round with
//!    `dont_merge`), then the bulk end. The destination validates and stores it like a
//!    proxy's wdiff, removes the diffs it made redundant, takes the uuid and acks.
//! 3. `Done`: the destination acks and the session ends.
//!
//! The destination is in FullSync (then Archived) during a full replication and in
//! ReplSyncAsServer during rounds and resyncs. Any failure rolls back what was not
//! committed (a partial image is removed; received diffs are kept, they are valid); the
//! source publishes `Event::Failed{op: "replicate"}` and its volume's progress
//! (`Event::Progress{op: "replicate"}`, `Query::Progress`) counts the blocks of a full copy.
//!
//! A destination older than every diff the source holds (the diffs between were applied
//! away) gets a hash round instead of a diff: `Step::ReplDecision(Hash)` and
//! `Step::ReplResync{size_lb, bulk_lb, oldest: the source's first clean snapshot after the
//! destination's, uuid, hash_seed}`; the destination streams the bulk hashes of its
//! virtual image of its latest snapshot while the source streams back a sorted wdiff of
//! the bulks of its own virtual image that differ ([`crate::bulk::compare`]); stored as
//! the compared diff `latest --> oldest` (walb-tools' compDiff), acked; rounds go on.
//!
//! A full copy that breaks (network, source stopped) keeps what was written and synced,
//! with a [`FullReplState`]; the next full copy of the same lineage and base resumes there
//! (`Step::StartLb`), also after a restart of the destination (the kept image is not one
//! of the temporaries a start removes).
//!
//! The source half is [`source`] (the archive that sends), the destination half [`dest`]
//! (the one that receives); what both use is here.

mod dest;
mod source;

pub use dest::{FullReplState, FULL_REPL_FILE};
pub use source::{plan_round, ts_delta_row, RoundPlan, DEFAULT_MERGE_MAX};

use walb_wire::WireError;

/// Name of the operation in events.
pub const OP: &str = "replicate";

fn wire(e: walb_wire::Error) -> WireError {
    e.to_wire()
}
