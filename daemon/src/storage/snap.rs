//! Snapshot gids and wlog-transfer planning (walb-tools.md §5.2), as pure functions.
//!
//! A storage volume keeps a *done* record (the last snapshot whose logs reached a proxy)
//! and a queue of snapshot records not yet shipped, oldest first ([`Snaps`]). Each record
//! ties a gid to the lsid it was taken at.
//!
//! - **gid allocation** ([`next_gid`]): a snapshot at `lsid` after the newest record `pre`
//!   gets `pre.gid + 1 + (lsid - pre.lsid) / max_pb`, where `max_pb` is the most log sent
//!   in one transfer. The skipped gids are reserved so that a long log range can later be
//!   cut into several transfers, each ending at its own intermediate gid.
//! - **planning** ([`Snaps::plan`]): a transfer starts at the done record. It ends at the
//!   oldest queued record, extended over newer records while the current end is an
//!   implicit (mergeable) snapshot, the next one lies within `max_pb` of the start and is
//!   permanent; so an explicit snapshot always ends a batch and stays a diff boundary. The
//!   lsid limit is the end record's lsid when that record is the very next gid, else at
//!   most `max_pb` after the start. A transfer whose limit is not yet permanent waits.
//! - **finishing** ([`Snaps::finish`]): after the proxy's ack the done record moves to
//!   the end of what was sent: the end record, or — when cut short — the reserved gid
//!   right after the start (implicit, with the start's time), and records at or before it
//!   leave the queue.
//!
//! Nothing here does IO or reads a clock: lsids, times and limits are parameters.

use walb_kernel::meta::{MetaDiff, MetaLsidGid};

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// What recovers a volume whose log overflowed, or was reset outside walb. The volume is
/// Target or Stopped only after a full or hash backup completed, so its archive holds a
/// copy: a hash backup (walb-console's `hash-backup` resets the volume first) sends only
/// the blocks that differ, and a full backup would be refused by that archive.
pub const OVERFLOW_RECOVERY: &str = "`hash-backup` of this volume recovers it (it resets the \
     volume and sends only the blocks that differ from the archive's copy; `full-backup` only \
     if the archive no longer holds the volume)";

/// Why a snapshot or a plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapError {
    /// The device's log overflowed.
    #[error("the log has overflowed: {}", OVERFLOW_RECOVERY)]
    Overflow,
    /// The volume has no valid done record yet (never backed up).
    #[error("the volume has no snapshot record yet: it needs a full backup (or reset-vol)")]
    NoRecord,
    /// The log position went backwards.
    #[error("snapshot at lsid {lsid} is before the previous snapshot's lsid {pre}")]
    LsidBackwards {
        /// The newest record's lsid.
        pre: u64,
        /// The requested lsid.
        lsid: u64,
    },
    /// gids ran out.
    #[error("gid overflow after gid {0}")]
    GidOverflow(u64),
    /// The records contradict each other (a bug or edited files).
    #[error("inconsistent snapshot records: {0}")]
    Inconsistent(String),
    /// The transfer size limit is zero blocks.
    #[error("the most wlog sent at once is 0 physical blocks; raise --max-wlog-send-mb")]
    ZeroMax,
}

/// Physical blocks of `mb` MiB for block size `pbs`.
pub fn max_wlog_send_pb(mb: u64, pbs: u32) -> u64 {
    mb.saturating_mul(MIB / u64::from(pbs.max(1)))
}

/// The gid of a snapshot taken at `lsid` after the newest record `pre`.
pub fn next_gid(pre: &MetaLsidGid, lsid: u64, max_pb: u64) -> Result<u64, SnapError> {
    if max_pb == 0 {
        return Err(SnapError::ZeroMax);
    }
    if !is_valid(pre) {
        return Err(SnapError::NoRecord);
    }
    if pre.lsid > lsid {
        return Err(SnapError::LsidBackwards {
            pre: pre.lsid,
            lsid,
        });
    }
    let skip = (lsid - pre.lsid) / max_pb;
    pre.gid
        .checked_add(1)
        .and_then(|g| g.checked_add(skip))
        .filter(|g| *g != u64::MAX)
        .ok_or(SnapError::GidOverflow(pre.gid))
}

/// True unless the record is the "unknown" record of a fresh volume (lsid or gid 2^64-1).
pub fn is_valid(rec: &MetaLsidGid) -> bool {
    rec.lsid != u64::MAX && rec.gid != u64::MAX
}

/// A planned transfer: the logs `[rec_b.lsid, lsid_limit)` (cut at a pack boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Where it starts: the done record.
    pub rec_b: MetaLsidGid,
    /// The snapshot it ends at, if the whole range fits.
    pub rec_e: MetaLsidGid,
    /// No pack ending after this lsid is sent.
    pub lsid_limit: u64,
    /// The limit is not permanent yet: try again later.
    pub later: bool,
    /// An implicit snapshot was taken while planning (the queue changed).
    pub implicit_taken: bool,
}

/// The snapshot records of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snaps {
    /// The last snapshot whose logs were acknowledged by a proxy.
    pub done: MetaLsidGid,
    /// Snapshots not yet shipped, oldest first.
    pub queue: Vec<MetaLsidGid>,
}

impl Snaps {
    /// Records of a fresh volume: an unknown done record and an empty queue.
    pub fn unknown(now: u64) -> Snaps {
        Snaps {
            done: MetaLsidGid::new(u64::MAX, u64::MAX, false, now),
            queue: Vec::new(),
        }
    }

    /// Records after a log reset at gid `gid`.
    pub fn reset(gid: u64, now: u64) -> Snaps {
        Snaps {
            done: MetaLsidGid::new(0, gid, false, now),
            queue: Vec::new(),
        }
    }

    /// The newest snapshot: the newest queued record, else the done record.
    pub fn latest(&self) -> &MetaLsidGid {
        self.queue.last().unwrap_or(&self.done)
    }

    /// Takes a snapshot at `lsid` (explicit unless `mergeable`) and queues it.
    pub fn take(
        &mut self,
        lsid: u64,
        mergeable: bool,
        now: u64,
        max_pb: u64,
        overflow: bool,
    ) -> Result<MetaLsidGid, SnapError> {
        if overflow {
            return Err(SnapError::Overflow);
        }
        let gid = next_gid(self.latest(), lsid, max_pb)?;
        let rec = MetaLsidGid::new(lsid, gid, mergeable, now);
        self.queue.push(rec);
        Ok(rec)
    }

    /// Drops queued records at or before the done record. Returns whether any was dropped.
    pub fn remove_old(&mut self) -> bool {
        let b = self.done;
        let n = self
            .queue
            .iter()
            .take_while(|r| r.lsid < b.lsid || (r.lsid == b.lsid && r.gid <= b.gid))
            .count();
        self.queue.drain(..n);
        n > 0
    }

    /// Whether there is something to ship now: permanent logs after the done record, or a
    /// queued snapshot.
    pub fn transfer_needed(&self, permanent: u64) -> bool {
        self.done.lsid < permanent || !self.queue.is_empty()
    }

    /// Plans the next transfer (may take an implicit snapshot at `latest`: when the queue
    /// is empty, or when its newest record is at least `interval_s` old and newer logs
    /// exist).
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &mut self,
        latest: u64,
        permanent: u64,
        now: u64,
        interval_s: u64,
        max_pb: u64,
        overflow: bool,
    ) -> Result<Plan, SnapError> {
        if !is_valid(&self.done) {
            return Err(SnapError::NoRecord);
        }
        if max_pb == 0 {
            return Err(SnapError::ZeroMax);
        }
        self.remove_old();
        let need_implicit = match self.queue.last() {
            None => true,
            Some(n) => n.lsid < latest && n.timestamp.saturating_add(interval_s) <= now,
        };
        if need_implicit {
            self.take(latest, true, now, max_pb, overflow)?;
        }
        let (rec_e, lsid_limit) = end_snapshot(&self.queue, &self.done, max_pb, permanent)?;
        Ok(Plan {
            rec_b: self.done,
            rec_e,
            lsid_limit,
            later: permanent < lsid_limit,
            implicit_taken: need_implicit,
        })
    }

    /// Records the end of an acknowledged transfer of `[plan.rec_b.lsid, lsid_e)`; returns
    /// the new done record.
    pub fn finish(&mut self, plan: &Plan, lsid_e: u64) -> Result<MetaLsidGid, SnapError> {
        let (b, e) = (plan.rec_b, plan.rec_e);
        if self.done != b {
            return Err(SnapError::Inconsistent(format!(
                "done record changed during the transfer: planned from {b}, now {}",
                self.done
            )));
        }
        if !(b.lsid <= lsid_e && lsid_e <= e.lsid) {
            return Err(SnapError::Inconsistent(format!(
                "transfer ended at lsid {lsid_e}, outside [{}, {}]",
                b.lsid, e.lsid
            )));
        }
        let done = if lsid_e == e.lsid {
            e
        } else {
            if b.gid.saturating_add(1) >= e.gid {
                return Err(SnapError::Inconsistent(format!(
                    "transfer cut short at lsid {lsid_e} but no gid is reserved between {} and {}",
                    b.gid, e.gid
                )));
            }
            // The gid moves on, the time does not.
            MetaLsidGid::new(lsid_e, b.gid.saturating_add(1), true, b.timestamp)
        };
        self.done = done;
        self.remove_old();
        Ok(done)
    }
}

/// The end record of the next transfer and its lsid limit (walb-tools' `getEndSnapshot`).
pub fn end_snapshot(
    queue: &[MetaLsidGid],
    rec_b: &MetaLsidGid,
    max_pb: u64,
    permanent: u64,
) -> Result<(MetaLsidGid, u64), SnapError> {
    let mut it = queue.iter();
    let Some(first) = it.next() else {
        return Err(SnapError::Inconsistent(
            "no queued snapshot to end a transfer at".into(),
        ));
    };
    let mut rec_e = *first;
    let mut nr = 1;
    let reach = rec_b.lsid.saturating_add(max_pb);
    for rec in it {
        if !rec_e.mergeable || rec.lsid > reach || rec.lsid > permanent {
            break;
        }
        rec_e = *rec;
        nr += 1;
    }
    if rec_b.lsid > rec_e.lsid || rec_b.gid >= rec_e.gid {
        return Err(SnapError::Inconsistent(format!(
            "transfer from {rec_b} cannot end at {rec_e}"
        )));
    }
    let limit = if nr == 1 && rec_e.gid == rec_b.gid.saturating_add(1) {
        rec_e.lsid
    } else {
        reach.min(rec_e.lsid)
    };
    Ok((rec_e, limit))
}

/// The diff a transfer of `[rec_b.lsid, lsid_e)` makes: `|b|-->|e|`, or `|b|-->|b+1|`
/// when cut short; mergeable iff its start is an implicit snapshot.
pub fn transfer_diff(
    rec_b: &MetaLsidGid,
    rec_e: &MetaLsidGid,
    lsid_e: u64,
) -> Result<MetaDiff, SnapError> {
    let gid_e = if lsid_e == rec_e.lsid {
        rec_e.gid
    } else {
        rec_b.gid.saturating_add(1)
    };
    let d = MetaDiff::clean(rec_b.gid, gid_e)
        .map_err(|e| SnapError::Inconsistent(format!("diff {} -> {gid_e}: {e}", rec_b.gid)))?;
    Ok(d.with_mergeable(rec_b.mergeable)
        .with_timestamp(rec_e.timestamp))
}

/// MiB (rounded up, at least 1) of logs in `[from, to)`; 0 when empty.
pub fn remaining_mb(from: u64, to: u64, pbs: u32) -> u64 {
    if to <= from {
        0
    } else {
        (to - from).saturating_mul(u64::from(pbs)) / MIB + 1
    }
}

/// How long to wait before looking again when `remaining_mb` MiB of logs are not yet
/// permanent: 100 ms when at least half a transfer waits, 1 s under a tenth, linear
/// between (walb-tools' `calcDelayMsWithRemainingMb`).
pub fn wait_delay_ms(remaining_mb: u64, max_mb: u64) -> u64 {
    const MIN: u64 = 100;
    const MAX: u64 = 1000;
    let max_mb = max_mb.max(1);
    if remaining_mb.saturating_mul(2) >= max_mb {
        return MIN;
    }
    if remaining_mb.saturating_mul(10) <= max_mb {
        return MAX;
    }
    MAX - (MAX - MIN) * (remaining_mb * 10 - max_mb) / (max_mb * 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(lsid: u64, gid: u64, mergeable: bool, ts: u64) -> MetaLsidGid {
        MetaLsidGid::new(lsid, gid, mergeable, ts)
    }

    #[test]
    fn gids_reserve_a_gap_per_max_transfer() {
        let pre = rec(1000, 5, false, 0);
        assert_eq!(next_gid(&pre, 1000, 100).unwrap(), 6);
        assert_eq!(next_gid(&pre, 1099, 100).unwrap(), 6);
        assert_eq!(next_gid(&pre, 1100, 100).unwrap(), 7);
        assert_eq!(next_gid(&pre, 1350, 100).unwrap(), 9);
        assert_eq!(
            next_gid(&pre, 999, 100),
            Err(SnapError::LsidBackwards {
                pre: 1000,
                lsid: 999
            })
        );
        assert_eq!(next_gid(&pre, 2000, 0), Err(SnapError::ZeroMax));
        let unknown = Snaps::unknown(0).done;
        assert_eq!(next_gid(&unknown, 5, 100), Err(SnapError::NoRecord));
        // 128 MiB of 4 KiB blocks.
        assert_eq!(max_wlog_send_pb(128, 4096), 32768);
        assert_eq!(max_wlog_send_pb(1, 512), 2048);
    }

    #[test]
    fn snapshots_chain_from_the_newest_record_and_refuse_overflow() {
        let mut s = Snaps::reset(10, 0);
        let a = s.take(50, false, 1, 100, false).unwrap();
        assert_eq!(a.gid, 11);
        // Same lsid again: an empty diff, allowed for explicit snapshots.
        let b = s.take(50, false, 2, 100, false).unwrap();
        assert_eq!(b.gid, 12);
        let c = s.take(260, true, 3, 100, false).unwrap();
        assert_eq!(c.gid, 12 + 1 + 2);
        assert_eq!(s.latest(), &c);
        assert_eq!(s.take(300, false, 4, 100, true), Err(SnapError::Overflow));
        assert_eq!(s.queue.len(), 3);
    }

    #[test]
    fn an_explicit_snapshot_ends_a_batch() {
        // done |0| at 0; implicit 1 at 10, explicit 2 at 20, implicit 3 at 30.
        let mut s = Snaps::reset(0, 0);
        s.take(10, true, 0, 1000, false).unwrap();
        s.take(20, false, 0, 1000, false).unwrap();
        s.take(30, true, 0, 1000, false).unwrap();
        let p = s.plan(30, 30, 0, 10, 1000, false).unwrap();
        assert!(!p.implicit_taken, "the newest record is recent");
        assert_eq!((p.rec_e.gid, p.lsid_limit, p.later), (2, 20, false));
        let d = transfer_diff(&p.rec_b, &p.rec_e, 20).unwrap();
        assert_eq!((d.snap_b.gid_b, d.snap_e.gid_b, d.mergeable), (0, 2, false));
        assert_eq!(s.finish(&p, 20).unwrap(), rec(20, 2, false, 0));
        assert_eq!(s.queue.len(), 1);
        // The next diff starts at the explicit snapshot: not mergeable.
        let p = s.plan(30, 30, 0, 10, 1000, false).unwrap();
        assert_eq!((p.rec_e.gid, p.lsid_limit), (3, 30));
        let d = transfer_diff(&p.rec_b, &p.rec_e, 30).unwrap();
        assert!(!d.mergeable);
        s.finish(&p, 30).unwrap();
        assert!(s.queue.is_empty());
        // The diff after an implicit start is mergeable.
        let p = s.plan(40, 40, 0, 10, 1000, false).unwrap();
        assert!(p.implicit_taken);
        let d = transfer_diff(&p.rec_b, &p.rec_e, p.lsid_limit).unwrap();
        assert!(d.mergeable);
        assert_eq!((d.snap_b.gid_b, d.snap_e.gid_b), (3, 4));
    }

    #[test]
    fn implicit_records_merge_until_max_or_permanent() {
        let mut s = Snaps::reset(0, 0);
        for l in [10, 20, 30, 150] {
            s.take(l, true, 0, 100, false).unwrap();
        }
        // gids: 10→1, 20→2, 30→3, 150→4+1=5 (one reserved gap: 150-30 ≥ 100).
        let gids: Vec<u64> = s.queue.iter().map(|r| r.gid).collect();
        assert_eq!(gids, [1, 2, 3, 5]);
        // permanent 25: only 10 and 20 can be merged.
        let p = s.plan(150, 25, 0, 10, 100, false).unwrap();
        assert_eq!((p.rec_e.gid, p.lsid_limit, p.later), (2, 20, false));
        s.finish(&p, 20).unwrap();
        // permanent 150: 30 within reach, 150 beyond 20+100.
        let p = s.plan(150, 150, 0, 10, 100, false).unwrap();
        assert_eq!((p.rec_e.gid, p.lsid_limit), (3, 30));
        s.finish(&p, 30).unwrap();
        // 150 is gid 5 (two gids after 3): cut at most 100 after 30.
        let p = s.plan(150, 150, 0, 10, 100, false).unwrap();
        assert_eq!((p.rec_e.gid, p.lsid_limit), (5, 130));
        // The packs ended at 125: |3|-->|4|, done (125, 4) implicit with the start's time.
        let d = transfer_diff(&p.rec_b, &p.rec_e, 125).unwrap();
        assert_eq!((d.snap_b.gid_b, d.snap_e.gid_b), (3, 4));
        assert_eq!(s.finish(&p, 125).unwrap(), rec(125, 4, true, 0));
        let p = s.plan(150, 150, 0, 10, 100, false).unwrap();
        assert_eq!((p.rec_e.gid, p.lsid_limit), (5, 150));
        s.finish(&p, 150).unwrap();
        assert_eq!(s.done.gid, 5);
    }

    #[test]
    fn a_transfer_waits_for_permanent_logs() {
        let mut s = Snaps::reset(0, 0);
        s.take(40, false, 0, 100, false).unwrap();
        let p = s.plan(40, 30, 0, 10, 100, false).unwrap();
        assert!(p.later);
        assert_eq!(p.lsid_limit, 40);
        // Once permanent, it goes.
        let p = s.plan(40, 40, 0, 10, 100, false).unwrap();
        assert!(!p.later);
        // An empty queue takes an implicit snapshot at latest; it waits if not permanent.
        let mut s = Snaps::reset(7, 0);
        let p = s.plan(60, 50, 5, 10, 100, false).unwrap();
        assert!(p.implicit_taken && p.later);
        assert_eq!(p.rec_e, rec(60, 8, true, 5));
    }

    #[test]
    fn implicit_snapshot_only_after_the_interval_with_new_logs() {
        let mut s = Snaps::reset(0, 0);
        s.take(10, true, 100, 1000, false).unwrap();
        let p = s.plan(20, 20, 105, 10, 1000, false).unwrap();
        assert!(!p.implicit_taken);
        let p = s.plan(20, 20, 110, 10, 1000, false).unwrap();
        assert!(p.implicit_taken);
        assert_eq!(s.queue.len(), 2);
        // No newer logs: no snapshot however old.
        let mut s = Snaps::reset(0, 0);
        s.take(10, true, 100, 1000, false).unwrap();
        assert!(!s.plan(10, 10, 999, 10, 1000, false).unwrap().implicit_taken);
    }

    #[test]
    fn finishing_checks_the_plan_and_drops_old_records() {
        let mut s = Snaps::reset(0, 0);
        s.take(10, true, 0, 100, false).unwrap();
        let p = s.plan(10, 10, 0, 10, 100, false).unwrap();
        let mut other = s.clone();
        other.done = rec(5, 0, false, 0);
        assert!(matches!(
            other.finish(&p, 10),
            Err(SnapError::Inconsistent(_))
        ));
        assert!(s.finish(&p, 11).is_err());
        // Cut short without a reserved gid is refused.
        assert!(s.clone().finish(&p, 5).is_err());
        s.finish(&p, 10).unwrap();
        assert!(s.queue.is_empty());
        // Unknown done record: nothing can be planned.
        assert_eq!(
            Snaps::unknown(0).plan(0, 0, 0, 1, 1, false),
            Err(SnapError::NoRecord)
        );
    }

    #[test]
    fn wait_delays() {
        assert_eq!(wait_delay_ms(64, 128), 100);
        assert_eq!(wait_delay_ms(12, 128), 1000);
        let mid = wait_delay_ms(40, 128);
        assert!(100 < mid && mid < 1000, "{mid}");
        assert_eq!(remaining_mb(5, 5, 4096), 0);
        assert_eq!(remaining_mb(0, 256, 4096), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Logs appended (blocks).
        Write(u64),
        /// Some of the written logs become permanent.
        Flush,
        /// An explicit snapshot.
        Snapshot,
        /// A transfer; the packs are cut at a boundary this many blocks before the limit.
        Transfer(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..300).prop_map(Op::Write),
            Just(Op::Flush),
            Just(Op::Snapshot),
            (0u64..3).prop_map(Op::Transfer),
        ]
    }

    proptest! {
        /// Any interleaving of writes, snapshots and transfers ships a contiguous chain of
        /// clean diffs that ends at every explicit snapshot, whose diffs are mergeable iff
        /// they start at an implicit snapshot, and never ships a non-permanent log.
        #[test]
        fn transfers_make_a_contiguous_chain(ops in proptest::collection::vec(op(), 1..80)) {
            let max_pb = 100;
            let mut s = Snaps::reset(0, 0);
            let (mut latest, mut permanent) = (0u64, 0u64);
            let mut explicit = Vec::new();
            let mut diffs: Vec<MetaDiff> = Vec::new();
            let mut shipped = 0u64;
            for (t, o) in ops.into_iter().enumerate() {
                let now = t as u64;
                match o {
                    Op::Write(n) => latest += n,
                    Op::Flush => permanent = latest,
                    Op::Snapshot => explicit.push(s.take(latest, false, now, max_pb, false).unwrap().gid),
                    Op::Transfer(cut) => {
                        if !s.transfer_needed(permanent) { continue; }
                        let p = s.plan(latest, permanent, now, 3, max_pb, false).unwrap();
                        if p.later { continue; }
                        prop_assert!(p.lsid_limit <= permanent);
                        // A cut short transfer ends before the limit, but only when a gid
                        // is reserved for it.
                        let lsid_e = if p.rec_e.lsid == p.lsid_limit || p.rec_b.gid + 1 >= p.rec_e.gid {
                            p.lsid_limit
                        } else {
                            p.lsid_limit.saturating_sub(cut).max(p.rec_b.lsid + 1)
                        };
                        prop_assert_eq!(p.rec_b.lsid, shipped);
                        let d = transfer_diff(&p.rec_b, &p.rec_e, lsid_e).unwrap();
                        prop_assert_eq!(d.mergeable, p.rec_b.mergeable);
                        s.finish(&p, lsid_e).unwrap();
                        shipped = lsid_e;
                        diffs.push(d);
                    }
                }
            }
            for w in diffs.windows(2) {
                prop_assert_eq!(w[0].snap_e.gid_b, w[1].snap_b.gid_b);
                prop_assert!(w[0].snap_b.gid_b < w[0].snap_e.gid_b);
            }
            for g in &explicit {
                if *g <= s.done.gid {
                    prop_assert!(diffs.iter().any(|d| d.snap_e.gid_b == *g), "explicit {} not a boundary", g);
                    prop_assert!(diffs.iter().filter(|d| d.snap_b.gid_b == *g).all(|d| !d.mergeable));
                }
            }
        }
    }
}
