//! The daemon's clock: wall time for snapshot timestamps and policies, monotonic time and
//! sleeps for timers and backoffs.
//!
//! Every role reads time through the [`Clock`] in its context ([`crate::session::Ctx`])
//! instead of `SystemTime::now`, `Instant::now` or `tokio::time::sleep`, so that a test can
//! run the daemon's timed decisions (the archive's maintenance policy, the proxy's send
//! retries, the storage's monitor and ts-delta gathers) through hours of virtual time in a
//! fraction of a second. [`Clock::real`] (the default) reads the system clocks and sleeps
//! on tokio's timer; [`Clock::manual`] returns a clock that only moves when its
//! [`ManualClock`] handle is advanced, waking every sleeper whose deadline has passed.
//!
//! What stays on the real clocks: the network's own deadlines (QUIC, step, connect and
//! gather timeouts), the foreground queue's wait, IO throttles that measure real work,
//! the short polls that wait for another task, durations measured for logs, and the
//! stamps of state events and action starts ([`crate::vol`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A clock shared by a daemon's tasks (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

/// A virtual clock's time: wall and monotonic move together.
#[derive(Debug)]
struct Manual {
    at: Mutex<(SystemTime, Instant)>,
    moved: watch::Sender<u64>,
    naps: AtomicU64,
}

impl Manual {
    fn at(&self) -> (SystemTime, Instant) {
        // Both fields change in one assignment, so a poisoned lock is still consistent.
        *self.at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle that moves a [`Clock::manual`] clock.
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Manual>,
}

impl ManualClock {
    /// Moves wall and monotonic time forward by `d` and wakes the sleepers now due.
    pub fn advance(&self, d: Duration) {
        {
            let mut at = self.inner.at.lock().unwrap_or_else(|p| p.into_inner());
            *at = (at.0 + d, at.1 + d);
        }
        self.inner.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The current wall time.
    pub fn now(&self) -> SystemTime {
        self.inner.at().0
    }

    /// How many sleeps have begun on the clock: a test that advances the clock waits for
    /// this to grow to know that a timed loop made its decision and sleeps again.
    pub fn sleeps_begun(&self) -> u64 {
        self.inner.naps.load(Ordering::SeqCst)
    }
}

impl Clock {
    /// The system clocks and tokio's timer.
    pub fn real() -> Clock {
        Clock::default()
    }

    /// A virtual clock starting at wall time `start`, moved only through the returned
    /// handle.
    pub fn manual(start: SystemTime) -> (Clock, ManualClock) {
        let inner = Arc::new(Manual {
            at: Mutex::new((start, Instant::now())),
            moved: watch::channel(0).0,
            naps: AtomicU64::new(0),
        });
        let handle = ManualClock {
            inner: Arc::clone(&inner),
        };
        (
            Clock {
                manual: Some(inner),
            },
            handle,
        )
    }

    /// Wall time (snapshot timestamps, ages).
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => m.at().0,
        }
    }

    /// Wall time in seconds since the epoch (0 before it).
    pub fn now_s(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Monotonic time (timers, backoffs, intervals).
    pub fn instant(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.at().1,
        }
    }

    /// Sleeps until monotonic time `at`.
    pub async fn sleep_until(&self, at: Instant) {
        match &self.manual {
            None => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            Some(m) => {
                let mut moved = m.moved.subscribe();
                m.naps.fetch_add(1, Ordering::SeqCst);
                while m.at().1 < at {
                    if moved.changed().await.is_err() {
                        // The sender lives in `m`: not reached while `m` is borrowed.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Sleeps for `d` of this clock's time.
    pub async fn sleep(&self, d: Duration) {
        self.sleep_until(self.instant() + d).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_advanced_past_their_deadline() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (clock, hand) = Clock::manual(start);
        let t0 = clock.instant();
        let c2 = clock.clone();
        let sleeper = tokio::spawn(async move { c2.sleep(Duration::from_secs(3600)).await });
        while hand.sleeps_begun() == 0 {
            tokio::task::yield_now().await;
        }
        hand.advance(Duration::from_secs(3599));
        // Still asleep after the sleeper saw the move (it is not due yet).
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        hand.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("the sleeper woke")
            .expect("the sleeper ran");
        assert_eq!(clock.instant() - t0, Duration::from_secs(3600));
        assert_eq!(clock.now_s(), 1_700_003_600);
        assert_eq!(hand.now(), clock.now());
    }

    #[tokio::test]
    async fn the_real_clock_follows_the_system_clocks() {
        let c = Clock::real();
        let (w0, m0) = (SystemTime::now(), Instant::now());
        c.sleep(Duration::from_millis(5)).await;
        assert!(c.instant() >= m0 + Duration::from_millis(5));
        assert!(c.now() >= w0);
    }
}
