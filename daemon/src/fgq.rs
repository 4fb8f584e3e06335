//! Foreground slots (`--fg`) and the queue of the tasks waiting for one.
//!
//! A heavy task (a backup, a restore, a replication, a scan) runs in one of a daemon's
//! `--fg` slots. A task that finds them all taken waits in a FIFO queue instead of being
//! refused: an operator starting more backups at once than slots sees them run in turn.
//! The queue is bounded every way a peer could stretch it:
//!
//! - its length (`--fg-queue`), and per peer identity (`--fg-queue-per-peer`): past them a
//!   request is refused `busy`, naming the bound;
//! - the wait (`--fg-queue-wait`), and the caller's own patience: a caller that leaves
//!   (closes its call) leaves the queue at once;
//! - a waiter holds nothing but its place: no volume state, no file, no dialled peer. It
//!   takes those once it has its slot.
//!
//! Order: a tokio [`Semaphore`] is fair, and a waiter registers with it while it enters
//! the line (under the line's lock), so the position a waiter is told is the order in
//! which slots are handed out.
//!
//! [`FgSlots::enter`] admits a task at once or puts it in line ([`Waiter`]);
//! [`Waiter::next`] says when the line moved (or, as a heartbeat, that it did not) and
//! ends with the slot or with the daemon's wait bound. The server side of a call
//! (`crate::session::Ctx::fg_wait`) forwards those notes to the caller and watches it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{watch, AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use walb_wire::msg::QueueNote;
use walb_wire::{ErrorCode, WireError};

/// Bounds of the queue (options `--fg-queue`, `--fg-queue-per-peer`, `--fg-queue-wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueBounds {
    /// Most tasks waiting, all callers together.
    pub len_max: usize,
    /// Most tasks waiting for one peer identity.
    pub per_peer_max: usize,
    /// Longest a task waits.
    pub wait_max: Duration,
    /// Longest a waiter goes without a note to its caller.
    pub heartbeat: Duration,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds {
            len_max: 64,
            per_peer_max: 16,
            wait_max: Duration::from_secs(3600),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// One task in line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its ticket (arrival order).
    pub ticket: u64,
    /// Who asked (a peer identity).
    pub peer: String,
    /// The volume.
    pub vol: String,
    /// The operation (as in its progress events: `full-sync`, `restore`...).
    pub op: String,
    /// When it entered.
    pub since: Instant,
}

#[derive(Debug, Default)]
struct Line {
    next: u64,
    waiting: VecDeque<Queued>,
}

/// A daemon's foreground slots and their queue.
#[derive(Debug)]
pub struct FgSlots {
    sem: Arc<Semaphore>,
    slots: u32,
    bounds: QueueBounds,
    /// `storage s0`, for messages.
    who: String,
    line: Mutex<Line>,
    /// Bumped whenever the line changes.
    moved: watch::Sender<u64>,
}

/// The answer to [`FgSlots::enter`].
#[derive(Debug)]
pub enum Admission {
    /// A slot was free.
    Now(OwnedSemaphorePermit),
    /// In line.
    Wait(Waiter),
}

/// What a waiter learns from [`Waiter::next`].
#[derive(Debug)]
pub enum Turn {
    /// Its slot.
    Granted(OwnedSemaphorePermit),
    /// Still waiting: where it stands.
    Waiting(QueueNote),
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A task in line; dropping it leaves the line.
pub struct Waiter {
    slots: Arc<FgSlots>,
    ticket: u64,
    acquire: Acquire,
    moved: watch::Receiver<u64>,
    deadline: Instant,
    last: Option<QueueNote>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl FgSlots {
    /// `slots` foreground slots of the daemon `who` (`storage s0`).
    pub fn new(who: &str, slots: usize, bounds: QueueBounds) -> Arc<FgSlots> {
        let slots = slots.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Arc::new(FgSlots {
            sem: Arc::new(Semaphore::new(slots)),
            slots: u32::try_from(slots).unwrap_or(u32::MAX),
            bounds,
            who: who.to_owned(),
            line: Mutex::new(Line::default()),
            moved: watch::Sender::new(0),
        })
    }

    /// The queue's bounds.
    pub fn bounds(&self) -> &QueueBounds {
        &self.bounds
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Foreground slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Foreground tasks running.
    pub fn running(&self) -> u32 {
        let free = u32::try_from(self.sem.available_permits()).unwrap_or(u32::MAX);
        self.slots.saturating_sub(free)
    }

    /// Free slots.
    pub fn free_slots(&self) -> u32 {
        self.slots - self.running()
    }

    /// The tasks in line for the status, first first.
    pub fn waiting(&self) -> Vec<walb_wire::msg::FgWaiting> {
        self.line()
            .waiting
            .iter()
            .map(|q| walb_wire::msg::FgWaiting {
                vol: q.vol.clone(),
                op: q.op.clone(),
                peer: q.peer.clone(),
                waiting_s: q.since.elapsed().as_secs(),
            })
            .collect()
    }

    /// Whether a slot is free now.
    pub fn free(&self) -> bool {
        self.sem.available_permits() > 0
    }

    /// The tasks in line, first first.
    pub fn queued(&self) -> Vec<Queued> {
        self.line().waiting.iter().cloned().collect()
    }

    /// A slot now or `busy` (work that is retried on its own, like a proxy's wdiff sends,
    /// does not queue).
    pub fn try_take(&self) -> Result<OwnedSemaphorePermit, WireError> {
        Arc::clone(&self.sem).try_acquire_owned().map_err(|_| {
            WireError::new(
                ErrorCode::Busy,
                format!(
                    "{} runs its maximum of foreground tasks ({}); try again later",
                    self.who, self.slots
                ),
            )
        })
    }

    /// A slot for `op` of `vol` asked by `peer`: at once if one is free, else a place in
    /// line, or `busy` when the line (or the peer's share of it) is full.
    pub fn enter(
        self: &Arc<Self>,
        peer: &str,
        vol: &str,
        op: &str,
    ) -> Result<Admission, WireError> {
        if let Ok(p) = Arc::clone(&self.sem).try_acquire_owned() {
            return Ok(Admission::Now(p));
        }
        let mut line = self.line();
        if line.waiting.len() >= self.bounds.len_max {
            return Err(WireError::new(
                ErrorCode::Busy,
                format!(
                    "{} runs its maximum of foreground tasks ({}) and its queue is full ({} \
                     waiting, --fg-queue); try again later",
                    self.who,
                    self.slots,
                    line.waiting.len()
                ),
            ));
        }
        let mine = line.waiting.iter().filter(|q| q.peer == peer).count();
        if mine >= self.bounds.per_peer_max {
            return Err(WireError::new(
                ErrorCode::Busy,
                format!(
                    "{peer} has {mine} tasks waiting for a foreground slot of {}; at most {} \
                     per peer (--fg-queue-per-peer)",
                    self.who, self.bounds.per_peer_max
                ),
            ));
        }
        let mut acquire: Acquire = Box::pin(Arc::clone(&self.sem).acquire_owned());
        // Register with the semaphore now, in line order.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(r) = acquire.as_mut().poll(&mut cx) {
            drop(line);
            return r.map(Admission::Now).map_err(|_| self.closed());
        }
        let ticket = line.next;
        line.next += 1;
        line.waiting.push_back(Queued {
            ticket,
            peer: peer.to_owned(),
            vol: vol.to_owned(),
            op: op.to_owned(),
            since: Instant::now(),
        });
        drop(line);
        self.moved.send_modify(|n| *n += 1);
        Ok(Admission::Wait(Waiter {
            slots: Arc::clone(self),
            ticket,
            acquire,
            moved: self.moved.subscribe(),
            deadline: Instant::now() + self.bounds.wait_max,
            last: None,
        }))
    }

    fn closed(&self) -> WireError {
        WireError::new(
            ErrorCode::Cancelled,
            format!("{} is shutting down", self.who),
        )
    }

    fn leave(&self, ticket: u64) {
        let mut line = self.line();
        let before = line.waiting.len();
        line.waiting.retain(|q| q.ticket != ticket);
        let changed = line.waiting.len() != before;
        drop(line);
        if changed {
            self.moved.send_modify(|n| *n += 1);
        }
    }

    /// Where the task `ticket` stands, `deadline` its wait bound.
    fn note(&self, ticket: u64, deadline: Instant) -> QueueNote {
        let ahead = self
            .line()
            .waiting
            .iter()
            .take_while(|q| q.ticket != ticket)
            .count();
        QueueNote {
            queue: self.who.clone(),
            ahead: u32::try_from(ahead).unwrap_or(u32::MAX),
            running: self.running(),
            slots: self.slots,
            wait_left_s: deadline.saturating_duration_since(Instant::now()).as_secs(),
        }
    }

    /// The refusal of a task that waited its whole bound.
    fn waited_too_long(&self, note: &QueueNote) -> WireError {
        WireError::new(
            ErrorCode::Busy,
            format!(
                "waited {} s in the queue of {} for a foreground slot (--fg-queue-wait); \
                 it runs {} of {} foreground tasks, {} ahead",
                self.bounds.wait_max.as_secs(),
                self.who,
                note.running,
                note.slots,
                note.ahead
            ),
        )
    }
}

impl Waiter {
    /// Where it stands now.
    pub fn note(&self) -> QueueNote {
        self.slots.note(self.ticket, self.deadline)
    }

    /// Its slot, a note when the line moved or every heartbeat, or the daemon's refusal
    /// once it waited `--fg-queue-wait`.
    pub async fn next(&mut self) -> Result<Turn, WireError> {
        let heartbeat = tokio::time::sleep(self.slots.bounds.heartbeat);
        tokio::pin!(heartbeat);
        loop {
            tokio::select! {
                biased;
                r = &mut self.acquire => {
                    let p = r.map_err(|_| self.slots.closed())?;
                    self.slots.leave(self.ticket);
                    return Ok(Turn::Granted(p));
                }
                _ = tokio::time::sleep_until(self.deadline) => {
                    let note = self.note();
                    self.slots.leave(self.ticket);
                    return Err(self.slots.waited_too_long(&note));
                }
                r = self.moved.changed() => {
                    let note = self.note();
                    let place = Some((note.ahead, note.running));
                    if r.is_ok() && self.last.as_ref().map(|l| (l.ahead, l.running)) != place {
                        self.last = Some(note.clone());
                        return Ok(Turn::Waiting(note));
                    }
                }
                _ = &mut heartbeat => {
                    let note = self.note();
                    self.last = Some(note.clone());
                    return Ok(Turn::Waiting(note));
                }
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.slots.leave(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(len_max: usize, per_peer_max: usize, wait_s: u64) -> QueueBounds {
        QueueBounds {
            len_max,
            per_peer_max,
            wait_max: Duration::from_secs(wait_s),
            heartbeat: Duration::from_secs(1),
        }
    }

    fn waiter(a: Admission) -> Waiter {
        match a {
            Admission::Wait(w) => w,
            Admission::Now(_) => panic!("expected to wait"),
        }
    }

    /// Waits until `w` has its slot, skipping notes.
    async fn granted(w: &mut Waiter) -> OwnedSemaphorePermit {
        loop {
            match w.next().await {
                Ok(Turn::Granted(p)) => return p,
                Ok(Turn::Waiting(_)) => {}
                Err(e) => panic!("refused: {e}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_handed_out_in_arrival_order() {
        let q = FgSlots::new("archive a0", 2, bounds(8, 8, 600));
        let Admission::Now(p1) = q.enter("s0", "v1", "full-sync").unwrap() else {
            panic!("a slot was free")
        };
        let Admission::Now(p2) = q.enter("s1", "v2", "full-sync").unwrap() else {
            panic!("a slot was free")
        };
        assert_eq!(q.running(), 2);
        let mut w3 = waiter(q.enter("s2", "v3", "full-sync").unwrap());
        let mut w4 = waiter(q.enter("s3", "v4", "hash-sync").unwrap());
        let mut w5 = waiter(q.enter("s4", "v5", "restore").unwrap());
        assert_eq!(
            (w3.note().ahead, w4.note().ahead, w5.note().ahead),
            (0, 1, 2)
        );
        assert_eq!(w5.note().running, 2);
        assert_eq!(w5.note().slots, 2);
        let vols: Vec<String> = q.queued().into_iter().map(|x| x.vol).collect();
        assert_eq!(vols, ["v3", "v4", "v5"]);
        // A try from outside the line never jumps it.
        drop(p1);
        assert!(
            q.try_take().is_err(),
            "a freed slot goes to the line's head"
        );
        let p3 = granted(&mut w3).await;
        drop(w3);
        assert_eq!((w4.note().ahead, w5.note().ahead), (0, 1));
        drop(p2);
        let _p4 = granted(&mut w4).await;
        drop(w4);
        assert_eq!(w5.note().ahead, 0);
        drop(p3);
        let _p5 = granted(&mut w5).await;
        drop(w5);
        assert!(q.queued().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_gives_its_place_to_the_next() {
        let q = FgSlots::new("storage s0", 1, bounds(8, 8, 600));
        let Admission::Now(p) = q.enter("op", "v1", "full-sync").unwrap() else {
            panic!("a slot was free")
        };
        let w2 = waiter(q.enter("op", "v2", "full-sync").unwrap());
        let mut w3 = waiter(q.enter("op", "v3", "full-sync").unwrap());
        assert_eq!(w3.note().ahead, 1);
        drop(w2);
        // The line moved: w3 is told so.
        match w3.next().await.unwrap() {
            Turn::Waiting(n) => assert_eq!(n.ahead, 0),
            Turn::Granted(_) => panic!("no slot is free"),
        }
        drop(p);
        let _p3 = granted(&mut w3).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_and_each_peers_share_are_bounded() {
        let q = FgSlots::new("archive a0", 1, bounds(3, 2, 600));
        let _p = q.enter("s0", "v0", "full-sync").unwrap();
        let _a = waiter(q.enter("s1", "v1", "full-sync").unwrap());
        let _b = waiter(q.enter("s1", "v2", "full-sync").unwrap());
        let e = q.enter("s1", "v3", "full-sync").unwrap_err();
        assert_eq!(e.code, ErrorCode::Busy);
        assert!(e.message.contains("--fg-queue-per-peer"), "{}", e.message);
        let _c = waiter(q.enter("s2", "v4", "full-sync").unwrap());
        let e = q.enter("s3", "v5", "full-sync").unwrap_err();
        assert_eq!(e.code, ErrorCode::Busy);
        assert!(e.message.contains("queue is full"), "{}", e.message);
        drop(_a);
        assert!(matches!(
            q.enter("s3", "v5", "full-sync"),
            Ok(Admission::Wait(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_bounded_and_notes_keep_coming() {
        let q = FgSlots::new("archive a0", 1, bounds(8, 8, 5));
        let _p = q.enter("s0", "v0", "full-sync").unwrap();
        let mut w = waiter(q.enter("s1", "v1", "full-sync").unwrap());
        let t0 = Instant::now();
        let mut notes = 0;
        let e = loop {
            match w.next().await {
                Ok(Turn::Waiting(n)) => {
                    notes += 1;
                    assert_eq!((n.ahead, n.running, n.slots), (0, 1, 1));
                    assert!(n.wait_left_s <= 5);
                }
                Ok(Turn::Granted(_)) => panic!("no slot is free"),
                Err(e) => break e,
            }
        };
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
        assert!(notes >= 4, "a note at least every heartbeat: {notes}");
        assert_eq!(e.code, ErrorCode::Busy);
        assert!(e.message.contains("queue of archive a0"), "{}", e.message);
        assert!(q.queued().is_empty(), "a waiter that gave up left the line");
    }
}
