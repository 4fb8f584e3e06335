//! The lsid bookkeeping of a WalB device as a pure state machine (walb-driver.md §2, §5.5).
//!
//! [`DeviceState`] holds the seven lsids, the ring size, the sticky overflow flag, the
//! freeze state and the flush/checkpoint timers. It does no IO and reads no clock: the
//! emulator calls `admit` before writing a pack, `handle_*` when an IO finished, and the
//! `poll_*` methods with the current time to learn what to do next (flush the log,
//! checkpoint, melt). Every transition keeps
//! `oldest <= prev_written <= written <= permanent <= flush <= completed <= latest`.

use std::fmt;
use std::time::{Duration, Instant};

use walb_kernel::error::{Error, Result};

/// The seven lsid indicators (all in physical blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsidSet {
    /// Next lsid to allocate.
    pub latest: u64,
    /// Every pack before it was written to the ldev.
    pub completed: u64,
    /// The last issued ldev flush covers lsids before it.
    pub flush: u64,
    /// Every log before it is durable.
    pub permanent: u64,
    /// Every log before it is also on the data device.
    pub written: u64,
    /// `written` at the last superblock sync.
    pub prev_written: u64,
    /// Logs before it may be overwritten.
    pub oldest: u64,
}

const KEYS: [&str; 7] = [
    "latest",
    "completed",
    "flush",
    "permanent",
    "written",
    "prev_written",
    "oldest",
];

impl LsidSet {
    /// `oldest` and every other indicator at `lsid` (the state after start/redo).
    pub fn at(oldest: u64, lsid: u64) -> LsidSet {
        LsidSet {
            latest: lsid,
            completed: lsid,
            flush: lsid,
            permanent: lsid,
            written: lsid,
            prev_written: lsid,
            oldest,
        }
    }

    /// The values in sysfs order: latest, completed, flush, permanent, written,
    /// prev_written, oldest.
    pub fn to_array(&self) -> [u64; 7] {
        [
            self.latest,
            self.completed,
            self.flush,
            self.permanent,
            self.written,
            self.prev_written,
            self.oldest,
        ]
    }

    /// The inverse of [`LsidSet::to_array`].
    pub fn from_array(a: [u64; 7]) -> LsidSet {
        LsidSet {
            latest: a[0],
            completed: a[1],
            flush: a[2],
            permanent: a[3],
            written: a[4],
            prev_written: a[5],
            oldest: a[6],
        }
    }

    /// The driver's invariant (`lsid_set_is_valid`).
    pub fn is_valid(&self) -> bool {
        self.oldest <= self.prev_written
            && self.prev_written <= self.written
            && self.written <= self.permanent
            && self.permanent <= self.flush
            && self.flush <= self.completed
            && self.completed <= self.latest
    }

    /// Parses the sysfs `lsids` text (keys in any order; `submitted` and unknown keys are
    /// ignored, as walb-tools does; all seven keys are required).
    pub fn parse_sysfs(text: &str) -> Result<LsidSet> {
        let mut vals: [Option<u64>; 7] = [None; 7];
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            if let Some(i) = KEYS.iter().position(|&key| key == k) {
                vals[i] = Some(v.parse().map_err(|_| {
                    Error::Invalid(format!("lsids: value {v:?} of {k} is not a number"))
                })?);
            }
        }
        let mut a = [0u64; 7];
        for (i, v) in vals.iter().enumerate() {
            a[i] = v.ok_or_else(|| Error::Invalid(format!("lsids: key {} missing", KEYS[i])))?;
        }
        Ok(LsidSet::from_array(a))
    }
}

/// The sysfs `lsids` text: seven `key value` lines in the driver's order.
impl fmt::Display for LsidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in KEYS.iter().zip(self.to_array()) {
            writeln!(f, "{k:<13}{v}")?;
        }
        Ok(())
    }
}

/// Freeze states (walb-driver.md §5.5: `FRZ_MELTED`, `FRZ_FROZEN`, `FRZ_FROZEN_TIMEO`,
/// `FRZ_CANCELING`, `FRZ_FROZEN_DEEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freeze {
    /// Writes flow.
    Melted,
    /// Writes wait.
    Frozen,
    /// Frozen with an automatic melt at the given time (`FRZ_FROZEN_TIMEO`).
    FrozenUntil(Instant),
    /// Frozen while a freeze or melt cancels the pending automatic melt (transient,
    /// `FRZ_CANCELING`): the auto-melt does nothing, a concurrent freeze or melt fails.
    Canceling,
    /// Frozen by reset-wal.
    Deep,
}

/// Tunables of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunables {
    /// Fail writes that would overflow instead of overwriting unreleased logs.
    pub error_before_overflow: bool,
    /// Checkpoint interval (zero disables periodic checkpoints).
    pub checkpoint_interval: Duration,
    /// Flush the log at least this often while there are unflushed logs (zero: never by time).
    pub log_flush_interval: Duration,
    /// Flush the log when this many physical blocks are unflushed (zero: never by size).
    pub log_flush_interval_pb: u64,
}

/// What [`DeviceState::admit`] decided for a pack of logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write the pack at this lsid (`latest` already advanced). `overflowed` is true when
    /// this pack made the log overflow for the first time.
    Go {
        /// lsid of the pack.
        lsid: u64,
        /// First overflow.
        overflowed: bool,
    },
    /// The device is frozen: wait for a melt and ask again.
    Frozen,
    /// Writing would overwrite logs needed for redo: flush the log, write pending data to
    /// the data device, checkpoint, and ask again.
    NeedCheckpoint,
}

/// The lsid state machine of one device.
#[derive(Debug, Clone)]
pub struct DeviceState {
    lsids: LsidSet,
    ring: u64,
    overflow: bool,
    read_only: bool,
    freeze: Freeze,
    tun: Tunables,
    last_flush: Instant,
    last_checkpoint: Instant,
}

impl DeviceState {
    /// A device whose log holds `lsids` (after redo), with a ring of `ring` blocks.
    pub fn new(lsids: LsidSet, ring: u64, overflow: bool, tun: Tunables, now: Instant) -> Self {
        DeviceState {
            lsids,
            ring,
            overflow,
            read_only: false,
            freeze: Freeze::Melted,
            tun,
            last_flush: now,
            last_checkpoint: now,
        }
    }

    /// The lsids.
    pub fn lsids(&self) -> LsidSet {
        self.lsids
    }
    /// Ring size (log capacity).
    pub fn capacity(&self) -> u64 {
        self.ring
    }
    /// Log usage: `latest - oldest`.
    pub fn usage(&self) -> u64 {
        self.lsids.latest - self.lsids.oldest
    }
    /// The sticky overflow flag.
    pub fn is_overflow(&self) -> bool {
        self.overflow
    }
    /// Read-only after an IO error.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
    /// The freeze state.
    pub fn freeze_state(&self) -> Freeze {
        self.freeze
    }
    /// True unless melted.
    pub fn is_frozen(&self) -> bool {
        self.freeze != Freeze::Melted
    }
    /// The tunables.
    pub fn tunables(&self) -> Tunables {
        self.tun
    }
    /// Changes the checkpoint interval (restarts the timer).
    pub fn set_checkpoint_interval(&mut self, d: Duration, now: Instant) -> Result<()> {
        if d > Duration::from_millis(86_400_000) {
            return Err(Error::Invalid(format!(
                "checkpoint interval {} ms is above 86400000",
                d.as_millis()
            )));
        }
        self.tun.checkpoint_interval = d;
        self.last_checkpoint = now;
        Ok(())
    }

    /// Decides whether a pack of `pb` blocks may be written now (walb-driver.md §2.4).
    pub fn admit(&mut self, pb: u64) -> Result<Admit> {
        if self.read_only {
            return Err(Error::io(
                "write refused",
                std::io::Error::other("the device is read-only after an IO error"),
            ));
        }
        if self.is_frozen() {
            return Ok(Admit::Frozen);
        }
        if pb > self.ring {
            return Err(Error::Invalid(format!(
                "a log pack of {pb} blocks does not fit the ring buffer of {} blocks",
                self.ring
            )));
        }
        let l = &self.lsids;
        let end = l.latest + pb;
        if end - l.prev_written > self.ring {
            return Ok(Admit::NeedCheckpoint);
        }
        let mut overflowed = false;
        if end - l.oldest > self.ring {
            if self.tun.error_before_overflow {
                return Err(Error::io(
                    "write refused",
                    std::io::Error::new(
                        std::io::ErrorKind::StorageFull,
                        format!(
                            "the log would overflow (usage {} + {pb} > capacity {}; error_before_overflow)",
                            l.latest - l.oldest,
                            self.ring
                        ),
                    ),
                ));
            }
            overflowed = !self.overflow;
            self.overflow = true;
        }
        let lsid = self.lsids.latest;
        self.lsids.latest = end;
        Ok(Admit::Go { lsid, overflowed })
    }

    /// Packs up to `end` were written to the ldev (not yet durable).
    pub fn handle_log_completed(&mut self, end: u64) {
        debug_assert!(end <= self.lsids.latest);
        self.lsids.completed = self.lsids.completed.max(end.min(self.lsids.latest));
    }

    /// An ldev flush is being issued; returns the lsid it will make permanent.
    pub fn handle_flush_issued(&mut self, now: Instant) -> u64 {
        self.lsids.flush = self.lsids.completed;
        self.last_flush = now;
        self.lsids.flush
    }

    /// The flush issued for `upto` finished. Returns true on the driver's notify edge
    /// (permanent moved away from `permanent == oldest`).
    pub fn handle_flush_done(&mut self, upto: u64) -> bool {
        let l = &mut self.lsids;
        let upto = upto.min(l.flush);
        if upto <= l.permanent {
            return false;
        }
        let notify = l.permanent == l.oldest;
        l.permanent = upto;
        notify
    }

    /// Data of every log before `upto` is on the data device.
    pub fn handle_data_written(&mut self, upto: u64) {
        let l = &mut self.lsids;
        l.written = l.written.max(upto.min(l.permanent));
    }

    /// A superblock sync recorded `written`; `prev_written` follows.
    pub fn handle_checkpoint_done(&mut self, written: u64, now: Instant) {
        let l = &mut self.lsids;
        l.prev_written = l.prev_written.max(written.min(l.written));
        self.last_checkpoint = now;
    }

    /// An IO error: the device goes read-only.
    pub fn handle_io_error(&mut self) {
        self.read_only = true;
    }

    /// True when the log should be flushed now (size or time since the last flush); never
    /// once read-only.
    pub fn poll_flush(&self, now: Instant) -> bool {
        let l = &self.lsids;
        if l.completed == l.permanent || self.read_only {
            return false;
        }
        let by_size = self.tun.log_flush_interval_pb > 0
            && l.completed - l.flush >= self.tun.log_flush_interval_pb;
        let by_time = !self.tun.log_flush_interval.is_zero()
            && now.saturating_duration_since(self.last_flush) >= self.tun.log_flush_interval;
        by_size || by_time
    }

    /// True when a periodic checkpoint is due (never while frozen or read-only).
    pub fn poll_checkpoint(&self, now: Instant) -> bool {
        !self.is_frozen()
            && !self.read_only
            && !self.tun.checkpoint_interval.is_zero()
            && now.saturating_duration_since(self.last_checkpoint) >= self.tun.checkpoint_interval
    }

    /// Melts automatically when a freeze timeout passed; returns true when it melted.
    /// While the timer is being cancelled ([`Freeze::Canceling`]) it does nothing, as the
    /// driver's melt work does.
    pub fn poll_melt(&mut self, now: Instant) -> bool {
        match self.freeze {
            Freeze::FrozenUntil(t) if now >= t => {
                self.freeze = Freeze::Melted;
                self.last_checkpoint = now;
                true
            }
            _ => false,
        }
    }

    /// First step of cancelling a pending automatic melt (the driver's `cancel_melt_work`):
    /// `FrozenUntil` becomes [`Freeze::Canceling`] and true is returned; the caller then
    /// waits until a running melt work has finished and calls
    /// [`DeviceState::end_cancel_melt`]. In any other state: false, nothing to cancel.
    pub fn begin_cancel_melt(&mut self) -> bool {
        if matches!(self.freeze, Freeze::FrozenUntil(_)) {
            self.freeze = Freeze::Canceling;
            true
        } else {
            false
        }
    }

    /// Second step of cancelling the automatic melt: `Canceling` becomes `Frozen`.
    pub fn end_cancel_melt(&mut self) {
        if self.freeze == Freeze::Canceling {
            self.freeze = Freeze::Frozen;
        }
    }

    /// When the next timer fires (for a ticker to sleep until).
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut add = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        if !self.tun.log_flush_interval.is_zero() && self.lsids.completed > self.lsids.permanent {
            add(self.last_flush + self.tun.log_flush_interval);
        }
        if !self.is_frozen() && !self.tun.checkpoint_interval.is_zero() {
            add(self.last_checkpoint + self.tun.checkpoint_interval);
        }
        if let Freeze::FrozenUntil(t) = self.freeze {
            add(t);
        }
        d
    }

    /// FREEZE, once a pending automatic melt was cancelled
    /// ([`DeviceState::begin_cancel_melt`]): from melted, writes wait from now on (the
    /// caller must drain in-flight writes so that `latest == written`); frozen stays
    /// frozen; `timeout > 0` (clipped to a day) schedules an automatic melt. Refused during
    /// reset-wal, and while another freeze or melt races with this one (the auto-melt is
    /// being cancelled, or was re-armed meanwhile), as the driver does (`-EFAULT`).
    pub fn freeze(&mut self, timeout: Duration, now: Instant) -> Result<()> {
        match self.freeze {
            Freeze::Deep => {
                return Err(Error::Invalid(
                    "the device is being reset (reset-wal)".into(),
                ))
            }
            Freeze::Canceling | Freeze::FrozenUntil(_) => return Err(race()),
            Freeze::Melted | Freeze::Frozen => {}
        }
        let timeout = timeout.min(Duration::from_secs(86_400));
        self.freeze = if timeout.is_zero() {
            Freeze::Frozen
        } else {
            Freeze::FrozenUntil(now + timeout)
        };
        Ok(())
    }

    /// MELT, once a pending automatic melt was cancelled (a no-op when melted). Refused
    /// during reset-wal and while racing with another freeze or melt.
    pub fn melt(&mut self, now: Instant) -> Result<()> {
        match self.freeze {
            Freeze::Deep => Err(Error::Invalid(
                "the device is being reset (reset-wal)".into(),
            )),
            Freeze::Canceling | Freeze::FrozenUntil(_) => Err(race()),
            Freeze::Melted => Ok(()),
            Freeze::Frozen => {
                self.freeze = Freeze::Melted;
                self.last_checkpoint = now;
                Ok(())
            }
        }
    }

    /// Checks SET_OLDEST_LSID's range; returns true when the caller must also check that a
    /// valid pack header starts at `lsid` (it is below `permanent`).
    pub fn check_set_oldest(&self, lsid: u64) -> Result<bool> {
        let l = &self.lsids;
        if lsid < l.oldest || lsid > l.prev_written {
            return Err(Error::Invalid(format!(
                "set-oldest-lsid {lsid}: must be in [oldest {}, prev_written {}]",
                l.oldest, l.prev_written
            )));
        }
        Ok(lsid < l.permanent)
    }

    /// Sets `oldest` (after [`DeviceState::check_set_oldest`] and the header check).
    pub fn set_oldest(&mut self, lsid: u64) {
        let l = &mut self.lsids;
        l.oldest = lsid.clamp(l.oldest, l.prev_written);
    }

    /// Begins reset-wal: requires melted; freezes deeply.
    pub fn begin_reset(&mut self) -> Result<()> {
        if self.freeze != Freeze::Melted {
            return Err(Error::Invalid(
                "reset-wal needs a melted device (melt it first)".into(),
            ));
        }
        self.freeze = Freeze::Deep;
        Ok(())
    }

    /// Ends reset-wal: on success every lsid is 0, the ring has `ring` blocks and the
    /// overflow flag is clear; on failure nothing changed. Melts.
    pub fn end_reset(&mut self, ok: Option<u64>, now: Instant) {
        if let Some(ring) = ok {
            self.lsids = LsidSet::at(0, 0);
            self.ring = ring;
            self.overflow = false;
            self.last_flush = now;
        }
        self.last_checkpoint = now;
        self.freeze = Freeze::Melted;
    }
}

fn race() -> Error {
    Error::Invalid(
        "another freeze or melt is cancelling the automatic melt (canceling); try again".into(),
    )
}

/// Recomputes the overflow flag at start (walb-driver.md §2.4): usage above capacity, or
/// logs exist but no valid pack starts at `oldest`.
pub fn overflow_at_start(l: &LsidSet, ring: u64, header_at_oldest_valid: bool) -> bool {
    l.latest - l.oldest > ring || (l.latest > l.oldest && !header_at_oldest_valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tun() -> Tunables {
        Tunables {
            error_before_overflow: false,
            checkpoint_interval: Duration::from_secs(10),
            log_flush_interval: Duration::from_millis(100),
            log_flush_interval_pb: 64,
        }
    }

    /// Writes a pack of `pb`, makes it durable and applies it.
    fn cycle(s: &mut DeviceState, pb: u64, now: Instant) -> Admit {
        let a = s.admit(pb).unwrap();
        if let Admit::Go { lsid, .. } = a {
            s.handle_log_completed(lsid + pb);
            let up = s.handle_flush_issued(now);
            s.handle_flush_done(up);
            s.handle_data_written(up);
            assert!(s.lsids().is_valid(), "{:?}", s.lsids());
        }
        a
    }

    #[test]
    fn sysfs_text_round_trip() {
        let l = LsidSet::from_array([7, 6, 5, 4, 3, 2, 1]);
        let t = l.to_string();
        assert!(t.starts_with("latest       7\ncompleted    6\n"), "{t}");
        assert_eq!(LsidSet::parse_sysfs(&t).unwrap(), l);
        let with_extra = format!("submitted 9\n{t}unknown 3\n");
        assert_eq!(LsidSet::parse_sysfs(&with_extra).unwrap(), l);
        assert!(LsidSet::parse_sysfs("latest 1\n").is_err());
        assert!(LsidSet::parse_sysfs(&t.replace('7', "x")).is_err());
    }

    #[test]
    fn lsids_advance_in_order_and_notify_once() {
        let now = Instant::now();
        let mut s = DeviceState::new(LsidSet::at(0, 0), 100, false, tun(), now);
        let Admit::Go { lsid, overflowed } = s.admit(3).unwrap() else {
            panic!()
        };
        assert_eq!((lsid, overflowed), (0, false));
        assert_eq!(s.lsids().latest, 3);
        s.handle_log_completed(3);
        assert!(s.poll_flush(now + Duration::from_millis(100)));
        assert!(!s.poll_flush(now));
        let up = s.handle_flush_issued(now);
        assert!(s.handle_flush_done(up), "first permanent log notifies");
        let Admit::Go { lsid, .. } = s.admit(2).unwrap() else {
            panic!()
        };
        assert_eq!(lsid, 3);
        s.handle_log_completed(5);
        let up = s.handle_flush_issued(now);
        assert!(!s.handle_flush_done(up), "no edge while logs exist");
        s.handle_data_written(5);
        s.handle_checkpoint_done(5, now);
        assert_eq!(s.lsids(), LsidSet::from_array([5, 5, 5, 5, 5, 5, 0]));
        // Releasing everything, then a new log notifies again.
        assert!(!s.check_set_oldest(5).unwrap());
        s.set_oldest(5);
        cycle(&mut s, 1, now);
        assert_eq!(s.lsids().permanent, 6);
    }

    #[test]
    fn size_based_flush() {
        let now = Instant::now();
        let mut s = DeviceState::new(LsidSet::at(0, 0), 1000, false, tun(), now);
        s.admit(63).unwrap();
        s.handle_log_completed(63);
        assert!(!s.poll_flush(now));
        s.admit(1).unwrap();
        s.handle_log_completed(64);
        assert!(s.poll_flush(now));
    }

    #[test]
    fn prev_written_guard_then_overflow_is_sticky() {
        let now = Instant::now();
        let mut s = DeviceState::new(LsidSet::at(0, 0), 10, false, tun(), now);
        for _ in 0..5 {
            assert!(matches!(cycle(&mut s, 2, now), Admit::Go { .. }));
        }
        // latest 10 = ring; prev_written 0: the next pack would overwrite redo logs.
        assert_eq!(s.admit(1).unwrap(), Admit::NeedCheckpoint);
        s.handle_checkpoint_done(s.lsids().written, now);
        assert_eq!(s.lsids().prev_written, 10);
        assert_eq!(
            s.admit(1).unwrap(),
            Admit::Go {
                lsid: 10,
                overflowed: true
            }
        );
        assert!(s.is_overflow());
        assert!(s.usage() > s.capacity());
        s.handle_log_completed(11);
        // Sticky: releasing logs does not clear it.
        let up = s.handle_flush_issued(now);
        s.handle_flush_done(up);
        s.handle_data_written(up);
        s.handle_checkpoint_done(up, now);
        s.set_oldest(11);
        assert!(s.is_overflow());
        assert_eq!(
            s.admit(1).unwrap(),
            Admit::Go {
                lsid: 11,
                overflowed: false
            }
        );
        s.handle_log_completed(12);
        s.begin_reset().unwrap();
        s.end_reset(Some(10), now);
        assert!(!s.is_overflow());
        assert_eq!(s.lsids(), LsidSet::at(0, 0));
    }

    #[test]
    fn error_before_overflow_refuses_and_recovers() {
        let now = Instant::now();
        let mut t = tun();
        t.error_before_overflow = true;
        let mut s = DeviceState::new(LsidSet::at(0, 0), 10, false, t, now);
        for _ in 0..5 {
            cycle(&mut s, 2, now);
        }
        s.handle_checkpoint_done(10, now);
        let before = s.lsids();
        let e = s.admit(1).unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
        assert_eq!(s.lsids(), before, "latest does not move");
        assert!(!s.is_overflow());
        assert!(s.check_set_oldest(4).unwrap());
        s.set_oldest(4);
        assert!(matches!(s.admit(1).unwrap(), Admit::Go { lsid: 10, .. }));
    }

    #[test]
    fn set_oldest_range() {
        let now = Instant::now();
        let mut s = DeviceState::new(LsidSet::at(2, 2), 100, false, tun(), now);
        cycle(&mut s, 4, now);
        assert!(s.check_set_oldest(1).is_err(), "below oldest");
        assert!(s.check_set_oldest(3).is_err(), "above prev_written");
        s.handle_checkpoint_done(6, now);
        assert!(s.check_set_oldest(6).is_ok());
        assert!(s.check_set_oldest(7).is_err());
    }

    #[test]
    fn freeze_melt_and_timeout() {
        let now = Instant::now();
        let mut s = DeviceState::new(LsidSet::at(0, 0), 100, false, tun(), now);
        s.freeze(Duration::ZERO, now).unwrap();
        assert_eq!(s.admit(1).unwrap(), Admit::Frozen);
        assert!(!s.poll_checkpoint(now + Duration::from_secs(100)));
        s.melt(now).unwrap();
        s.melt(now).unwrap();
        assert!(!s.is_frozen());
        s.freeze(Duration::from_secs(5), now).unwrap();
        assert!(!s.poll_melt(now + Duration::from_secs(4)));
        assert_eq!(s.next_deadline(), Some(now + Duration::from_secs(5)));
        assert!(s.poll_melt(now + Duration::from_secs(5)));
        assert!(!s.is_frozen());
        s.begin_reset().unwrap();
        assert!(s.freeze(Duration::ZERO, now).is_err());
        assert!(s.melt(now).is_err());
        s.end_reset(None, now);
        assert!(!s.is_frozen());
        s.freeze(Duration::ZERO, now).unwrap();
        assert!(s.begin_reset().is_err());
    }

    #[test]
    fn canceling_the_auto_melt_is_a_transient_state() {
        let now = Instant::now();
        let mut s = DeviceState::new(LsidSet::at(0, 0), 100, false, tun(), now);
        assert!(!s.begin_cancel_melt(), "nothing to cancel while melted");
        s.freeze(Duration::from_secs(5), now).unwrap();
        // A second freeze or a melt that did not cancel first races with the timer.
        assert!(s.freeze(Duration::ZERO, now).is_err());
        assert!(s.melt(now).is_err());
        assert!(s.begin_cancel_melt());
        assert_eq!(s.freeze_state(), Freeze::Canceling);
        assert!(s.is_frozen());
        assert_eq!(s.admit(1).unwrap(), Admit::Frozen, "writes still wait");
        assert!(
            !s.poll_melt(now + Duration::from_secs(10)),
            "the timer does nothing"
        );
        let e = s.melt(now).unwrap_err();
        assert!(e.to_string().contains("canceling"), "{e}");
        assert!(s.freeze(Duration::from_secs(1), now).is_err());
        assert!(s.begin_reset().is_err());
        assert!(!s.begin_cancel_melt(), "one cancel at a time");
        assert_eq!(
            s.next_deadline(),
            None,
            "no auto-melt deadline while canceling"
        );
        s.end_cancel_melt();
        assert_eq!(s.freeze_state(), Freeze::Frozen);
        // Re-arm, cancel, melt: the FREEZE/MELT sequences of the driver.
        s.freeze(Duration::from_secs(5), now).unwrap();
        assert!(s.begin_cancel_melt());
        s.end_cancel_melt();
        s.melt(now).unwrap();
        assert_eq!(s.freeze_state(), Freeze::Melted);
    }

    #[test]
    fn read_only_refuses_writes() {
        let now = Instant::now();
        let mut s = DeviceState::new(LsidSet::at(0, 0), 100, false, tun(), now);
        s.handle_io_error();
        assert!(s.admit(1).is_err());
    }

    #[test]
    fn overflow_recomputed_at_start() {
        let l = LsidSet::at(0, 20);
        assert!(overflow_at_start(&l, 10, true));
        assert!(!overflow_at_start(&l, 30, true));
        assert!(overflow_at_start(&l, 30, false));
        assert!(!overflow_at_start(&LsidSet::at(5, 5), 30, false));
    }
}
