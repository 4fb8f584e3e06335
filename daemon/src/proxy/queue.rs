//! Pure decisions of wdiff forwarding: which queued diffs go in the next transfer, and
//! what to do with the archive's answer (walb-tools.md §5.3).
//!
//! [`select_batch`] takes the mergeable chain from the oldest queued diff (the diff with
//! the smallest begin gid and the most progress, then greedily every diff that can be
//! merged after it), keeps only diffs that waited the destination's delay, and truncates it
//! to `--max-wdiff-send-mb` (at least one diff) and `--max-wdiff-send-nr`. A diff that
//! is not mergeable starts a new batch, so explicit snapshots survive at the archive.
//! [`cut_at_uuid_change`] then ends the batch before the first file whose header carries
//! another uuid (a storage reset between them). [`react`] maps the archive's answer to
//! an action. No IO, no clock: time is a parameter.

use std::time::{Duration, SystemTime};

use walb_kernel::meta::{DiffManager, MergeLimits, MetaDiff};
use walb_wire::msg::ErrorCode;

/// Limits of one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Total file bytes merged into one transfer (the first diff always goes).
    pub max_bytes: u64,
    /// Files merged into one transfer.
    pub max_files: usize,
}

/// The next batch: indices into the queue, in merge order (oldest first). Empty when
/// nothing is queued or nothing waited long enough; then `wait_until` says when the
/// oldest diff becomes eligible, if any is queued.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Indices into the queue, oldest first.
    pub files: Vec<usize>,
    /// When to look again if nothing is eligible yet.
    pub wait_until: Option<SystemTime>,
}

/// Chooses the next batch among `queue` (each diff's `data_size` is its file size, its
/// time the file's mtime), sending only diffs older than `delay` at `now`.
pub fn select_batch(
    queue: &[(MetaDiff, SystemTime)],
    limits: BatchLimits,
    delay: Duration,
    now: SystemTime,
) -> Batch {
    let ripe = |t: SystemTime| t + delay <= now;
    let eligible: Vec<usize> = (0..queue.len()).filter(|&i| ripe(queue[i].1)).collect();
    let wait_until = queue
        .iter()
        .filter(|(_, t)| !ripe(*t))
        .map(|(_, t)| *t + delay)
        .min();
    // Same ranges collapse in the manager; keep the first file of each range.
    let mut mgr = DiffManager::new();
    for &i in &eligible {
        // A diff breaking the model cannot be in a queue (names are parsed and validated),
        // and a duplicate range is simply not added twice.
        let _ = mgr.add(queue[i].0.clone());
    }
    let chain = mgr.mergeable_from(
        0,
        &MergeLimits {
            before_gid: None,
            max_total_size: Some(limits.max_bytes),
            max_count: Some(limits.max_files.max(1)),
        },
    );
    let files = chain
        .iter()
        .filter_map(|d| eligible.iter().copied().find(|&i| queue[i].0.same_range(d)))
        .collect::<Vec<_>>();
    Batch {
        wait_until: if files.is_empty() { wait_until } else { None },
        files,
    }
}

/// The length of the prefix of a batch whose files all carry the first file's uuid.
pub fn cut_at_uuid_change(uuids: &[[u8; 16]]) -> usize {
    match uuids.first() {
        None => 0,
        Some(first) => uuids.iter().take_while(|u| *u == first).count(),
    }
}

/// What to do after a transfer attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Delivered: delete the files, send the next batch at once.
    Delivered,
    /// The archive will never take these files (different uuid, too old): delete them
    /// and go on.
    Drop,
    /// Stop retrying until `kick` (send error).
    GiveUp,
    /// Retry after the backoff delay.
    Retry,
}

/// Maps the archive's answer (`None` = acknowledged) to a reaction. `since_wlog` is the
/// time since the volume last received a wlog; past `retry_timeout` a retryable failure
/// becomes a send error, unless the archive is merely behind (too new) or syncing.
pub fn react(answer: Option<ErrorCode>, since_wlog: Duration, retry_timeout: Duration) -> Reaction {
    match answer {
        None => Reaction::Delivered,
        Some(ErrorCode::DifferentUuid | ErrorCode::TooOldDiff) => Reaction::Drop,
        Some(ErrorCode::SmallerLvSize | ErrorCode::NotFound) => Reaction::GiveUp,
        Some(ErrorCode::TooNewDiff | ErrorCode::Syncing) => Reaction::Retry,
        Some(_) if since_wlog > retry_timeout => Reaction::GiveUp,
        Some(_) => Reaction::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u64, e: u64, mergeable: bool, size: u64) -> MetaDiff {
        MetaDiff::clean(b, e)
            .unwrap()
            .with_mergeable(mergeable)
            .with_data_size(size)
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    const BIG: BatchLimits = BatchLimits {
        max_bytes: u64::MAX,
        max_files: 1000,
    };

    #[test]
    fn merges_the_mergeable_chain_and_stops_at_an_explicit_snapshot() {
        let q = vec![
            (d(2, 3, true, 10), at(0)),
            (d(0, 1, false, 10), at(0)),
            (d(1, 2, true, 10), at(0)),
            (d(3, 4, false, 10), at(0)),
            (d(4, 5, true, 10), at(0)),
        ];
        let b = select_batch(&q, BIG, Duration::ZERO, at(100));
        assert_eq!(b.files, vec![1, 2, 0]);
        // Once those are delivered, the explicit |3| starts the next batch.
        let rest = vec![q[3].clone(), q[4].clone()];
        assert_eq!(
            select_batch(&rest, BIG, Duration::ZERO, at(100)).files,
            vec![0, 1]
        );
    }

    #[test]
    fn limits_truncate_but_keep_one() {
        let q: Vec<_> = (0..10).map(|g| (d(g, g + 1, true, 100), at(0))).collect();
        let lim = BatchLimits {
            max_bytes: 350,
            max_files: 1000,
        };
        assert_eq!(select_batch(&q, lim, Duration::ZERO, at(1)).files.len(), 3);
        let lim = BatchLimits {
            max_bytes: 1,
            max_files: 1000,
        };
        assert_eq!(select_batch(&q, lim, Duration::ZERO, at(1)).files, vec![0]);
        let lim = BatchLimits {
            max_bytes: u64::MAX,
            max_files: 4,
        };
        assert_eq!(
            select_batch(&q, lim, Duration::ZERO, at(1)).files,
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn delay_holds_young_diffs_back() {
        let q = vec![(d(0, 1, true, 1), at(10)), (d(1, 2, true, 1), at(20))];
        let b = select_batch(&q, BIG, Duration::from_secs(30), at(15));
        assert!(b.files.is_empty());
        assert_eq!(b.wait_until, Some(at(40)));
        let b = select_batch(&q, BIG, Duration::from_secs(30), at(45));
        assert_eq!(b.files, vec![0]);
        let b = select_batch(&q, BIG, Duration::from_secs(30), at(50));
        assert_eq!(b.files, vec![0, 1]);
        assert_eq!(
            select_batch(&[], BIG, Duration::ZERO, at(0)),
            Batch::default()
        );
    }

    #[test]
    fn uuid_change_cuts_the_batch() {
        assert_eq!(cut_at_uuid_change(&[]), 0);
        assert_eq!(cut_at_uuid_change(&[[1; 16], [1; 16], [2; 16], [1; 16]]), 2);
    }

    #[test]
    fn reactions() {
        let s = Duration::from_secs;
        let rto = s(100);
        assert_eq!(react(None, s(0), rto), Reaction::Delivered);
        assert_eq!(
            react(Some(ErrorCode::TooOldDiff), s(0), rto),
            Reaction::Drop
        );
        assert_eq!(
            react(Some(ErrorCode::DifferentUuid), s(0), rto),
            Reaction::Drop
        );
        assert_eq!(
            react(Some(ErrorCode::SmallerLvSize), s(0), rto),
            Reaction::GiveUp
        );
        assert_eq!(
            react(Some(ErrorCode::NotFound), s(0), rto),
            Reaction::GiveUp
        );
        assert_eq!(react(Some(ErrorCode::Stopped), s(0), rto), Reaction::Retry);
        assert_eq!(
            react(Some(ErrorCode::Stopped), s(101), rto),
            Reaction::GiveUp
        );
        assert_eq!(
            react(Some(ErrorCode::TooNewDiff), s(101), rto),
            Reaction::Retry
        );
        assert_eq!(
            react(Some(ErrorCode::Syncing), s(101), rto),
            Reaction::Retry
        );
    }
}
