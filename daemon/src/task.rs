//! Delayed background tasks with retry backoff (walb-tools.md §5.1), as pure data.
//!
//! A [`TaskQueue`] holds at most one entry per key (a volume, or a volume and an archive)
//! with the instant it becomes due. [`TaskQueue::push`] keeps an earlier due time,
//! [`TaskQueue::push_force`] overwrites it (a `kick`). [`Backoff`] doubles a retry delay
//! from its minimum up to its maximum and resets on success. Time is a parameter, so both
//! are tested without sleeping; the daemons' dispatchers own the clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Keys scheduled at instants; one entry per key.
#[derive(Debug, Clone)]
pub struct TaskQueue<K: Ord + Clone> {
    due: BTreeMap<K, Instant>,
}

impl<K: Ord + Clone> Default for TaskQueue<K> {
    fn default() -> Self {
        Self {
            due: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> TaskQueue<K> {
    /// Schedules `key` at `at`, keeping an earlier existing time.
    pub fn push(&mut self, key: K, at: Instant) {
        let e = self.due.entry(key).or_insert(at);
        if at < *e {
            *e = at;
        }
    }

    /// Schedules `key` at `at`, overwriting an existing time.
    pub fn push_force(&mut self, key: K, at: Instant) {
        self.due.insert(key, at);
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) {
        self.due.remove(key);
    }

    /// Removes every key matching `pred`.
    pub fn remove_if(&mut self, mut pred: impl FnMut(&K) -> bool) {
        self.due.retain(|k, _| !pred(k));
    }

    /// Makes every entry due at `now` (kick).
    pub fn make_all_due(&mut self, now: Instant) {
        for v in self.due.values_mut() {
            if *v > now {
                *v = now;
            }
        }
    }

    /// Takes the key due earliest if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (k, _) = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .min_by_key(|(_, at)| **at)?;
        let k = k.clone();
        self.due.remove(&k);
        Some(k)
    }

    /// The earliest due instant.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// Number of scheduled keys.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// True when `key` is scheduled.
    pub fn contains(&self, key: &K) -> bool {
        self.due.contains_key(key)
    }
}

/// A doubling retry delay: `min`, `2·min`, … up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    cur: Option<Duration>,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            cur: None,
        }
    }

    /// The delay before the next retry (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let d = match self.cur {
            None => self.min,
            Some(c) => (c * 2).min(self.max),
        };
        self.cur = Some(d);
        d
    }

    /// Forgets the failures (after a success or a kick).
    pub fn reset(&mut self) {
        self.cur = None;
    }

    /// The current delay, if retrying.
    pub fn current(&self) -> Option<Duration> {
        self.cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_keeps_earlier_force_overwrites() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TaskQueue::default();
        q.push("a", t0 + 5 * s);
        q.push("a", t0 + 9 * s);
        assert_eq!(q.next_due(), Some(t0 + 5 * s));
        q.push("a", t0 + 2 * s);
        assert_eq!(q.next_due(), Some(t0 + 2 * s));
        q.push_force("a", t0 + 7 * s);
        assert_eq!(q.next_due(), Some(t0 + 7 * s));
        assert_eq!(q.pop_due(t0 + 6 * s), None);
        assert_eq!(q.pop_due(t0 + 7 * s), Some("a"));
        assert!(q.is_empty());
    }

    #[test]
    fn pops_earliest_first_and_kick_makes_due() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = TaskQueue::default();
        q.push("late", t0 + 100 * s);
        q.push("b", t0 + 2 * s);
        q.push("a", t0 + s);
        assert_eq!(q.pop_due(t0 + 3 * s), Some("a"));
        assert_eq!(q.pop_due(t0 + 3 * s), Some("b"));
        assert_eq!(q.pop_due(t0 + 3 * s), None);
        q.make_all_due(t0 + 3 * s);
        assert_eq!(q.pop_due(t0 + 3 * s), Some("late"));
    }

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let v: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(v, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay().as_secs(), 1);
    }
}
