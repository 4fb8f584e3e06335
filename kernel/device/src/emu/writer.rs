//! The emulator's write path: a group-commit writer that packs queued IOs like the driver.
//!
//! Writers do not write their own log packs. Each IO is cut into *items* (a write chunk of
//! at most [`MAX_CHUNK_LB`] blocks, a discard piece, or a flush marker) that join one
//! queue in arrival order, which is lsid order. The first writer that finds no leader
//! becomes the leader: it takes the queued items as a batch (at most [`N_IO_BULK`] items
//! and a bounded number of blocks), builds their log packs the way the driver does
//! (walb-driver.md §1.7, §1.8: a pack holds up to `max_logpack_kb` of data, up to 15/127
//! records, at most 65535 blocks; a flush starts a new pack; padding at the ring end),
//! admits them with [`DeviceState::admit`], writes them to the ring with one vectored
//! write, and completes them. Items queued meanwhile form the next batch, written by the
//! same leader or by the next one. So writes that arrive while a batch is being written
//! share packs, as concurrently submitted bios do in the driver.
//!
//! A batch never lets the log run more than [`stale_window_pb`] blocks ahead of
//! `permanent`: the leader flushes first when it would. Redo relies on that bound to wipe
//! packs that were written but never flushed before a crash.

use std::collections::{HashMap, VecDeque};
use std::sync::MutexGuard;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::lsids::Admit;
use walb_kernel::block::{Pbs, LBS, LBS_USIZE};
use walb_kernel::checksum::checksum;
use walb_kernel::error::{Error, IoContext, Result};
use walb_kernel::ldev::SuperBlock;
use walb_kernel::logpack::{
    max_records, LogPackHeader, LogRecord, FLAG_DISCARD, FLAG_EXIST, FLAG_PADDING,
    MAX_TOTAL_IO_SIZE,
};

use super::disk::Disk;
use super::{Inner, Pending, PendingIo, Shared};

/// Largest chunk of one write put in one record (bounds the unflushed log, see redo).
pub(super) const MAX_CHUNK_LB: u32 = 2048;
/// Largest discard record.
pub(super) const MAX_DISCARD_LB: u64 = u32::MAX as u64;
/// Most items in one batch (the driver's `n_io_bulk`, wdevc's default 1024).
pub(super) const N_IO_BULK: usize = 1024;

/// How far, in blocks, the log may run ahead of `permanent` (written but not flushed):
/// twice the size-based flush limit (one flush being synced while the next one's logs
/// accumulate, as in the driver) plus two largest records and two headers. Redo zeroes
/// that many blocks after the end of the log it found.
pub(super) fn stale_window_pb(limit_pb: u64, pbs: Pbs) -> u64 {
    2 * limit_pb + 2 * pbs.capacity_pb(u64::from(MAX_CHUNK_LB)) + 2
}

/// One queued piece of an IO.
#[derive(Debug)]
pub(super) enum ItemIo {
    /// A write chunk at logical block `lb`, with the checksum of its data under salt
    /// `salt` (computed by the writer; recomputed if reset-wal changed the salt).
    Write {
        lb: u64,
        data: Bytes,
        salt: u32,
        csum: u32,
    },
    /// A discard of `n` blocks at `lb`.
    Discard { lb: u64, n: u32 },
    /// A flush: the next item starts a new pack (REQ_PREFLUSH comes first in its pack).
    Flush,
}

#[derive(Debug)]
pub(super) struct Item {
    /// Position in the queue (items complete in this order).
    id: u64,
    /// The id of the last item of the IO this item belongs to (the IO's key).
    req: u64,
    io: ItemIo,
}

/// The write queue and the state of its leader, kept in [`Inner`].
#[derive(Debug, Default)]
pub(super) struct WriteQueue {
    items: VecDeque<Item>,
    next_id: u64,
    /// Every item with a smaller id has finished (written or failed).
    done: u64,
    /// Errors of failed IOs, by key; each is taken by its writer.
    failed: HashMap<u64, Error>,
    /// A writer is leading (taking, packing and writing batches).
    leader: bool,
    /// A batch is admitted (lsids allocated) and being written without the lock.
    pub(super) in_flight: bool,
    /// Threads waiting on `wq_cond` (no wake-up call without them).
    waiters: usize,
    /// Counters.
    pub(super) stats: WriteStats,
}

/// Counters of the group-commit writer (see [`super::Emulator::write_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Batches written to the log.
    pub batches: u64,
    /// Log packs written.
    pub packs: u64,
    /// Records written (padding included).
    pub records: u64,
    /// Times a leader had to wait for a log flush to keep the unflushed log within the
    /// window redo wipes.
    pub window_waits: u64,
    /// Items (write chunks, discards, flushes) waiting in the queue now.
    pub queued: u64,
}

impl WriteQueue {
    /// Items waiting.
    pub(super) fn queued(&self) -> usize {
        self.items.len()
    }
}

/// A copy of an error for each IO of a failed batch.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Invalid(s) => Error::Invalid(s.clone()),
        Error::Unsupported(s) => Error::Unsupported(s.clone()),
        Error::Io { context, cause } => Error::io(
            context.clone(),
            std::io::Error::new(cause.kind(), cause.to_string()),
        ),
        Error::Corrupt { what, at, detail } => Error::corrupt(what, *at, detail.clone()),
        Error::Incomplete {
            what,
            at,
            needed,
            got,
        } => Error::incomplete(what, *at, *needed, *got),
    }
}

fn closed() -> Error {
    Error::Invalid("the device is closed".into())
}

/// Blocks a batch item adds to the log at most, without padding (for the batch budget).
fn estimate_pb(pbs: Pbs, io: &ItemIo) -> u64 {
    match io {
        ItemIo::Write { data, .. } => 1 + pbs.capacity_pb((data.len() / LBS_USIZE) as u64),
        ItemIo::Discard { .. } => 1,
        ItemIo::Flush => 0,
    }
}

/// Zeros for padding blocks and the tails of partial blocks.
static ZEROS: [u8; 65536] = [0u8; 65536];

/// The data area of a pack, piece by piece: the writers' own buffers and zeros.
#[derive(Debug)]
enum Seg {
    Data(Bytes),
    Zeros(usize),
}

/// One log pack laid out over the items' buffers (nothing copied).
#[derive(Debug)]
pub(super) struct PackPlan {
    pub(super) header: LogPackHeader,
    block: Vec<u8>,
    segs: Vec<Seg>,
    /// The IOs of its records, for the pending data.
    ios: Vec<PendingIo>,
}

impl PackPlan {
    /// The pack's bytes in ring order: header block, then the data area.
    fn bufs<'a>(&'a self, out: &mut Vec<&'a [u8]>) {
        out.push(&self.block);
        for s in &self.segs {
            match s {
                Seg::Data(d) => out.push(d),
                Seg::Zeros(mut n) => {
                    while n > 0 {
                        let k = n.min(ZEROS.len());
                        out.push(&ZEROS[..k]);
                        n -= k;
                    }
                }
            }
        }
    }
}

/// Lays out log packs from `lsid` on exactly as [`walb_kernel::logpack::LogPackBuilder`] does
/// (walb-driver.md §1.7, §1.8), plus the driver's `max_logpack_kb` rule, without copying
/// the data.
struct Planner {
    pbs: Pbs,
    ring: u64,
    max_pb: u64,
    cur: LogPackHeader,
    segs: Vec<Seg>,
    ios: Vec<PendingIo>,
    packs: Vec<PackPlan>,
}

impl Planner {
    fn new(pbs: Pbs, salt: u32, lsid: u64, ring: u64, max_pb: u64) -> Planner {
        Planner {
            pbs,
            ring,
            max_pb,
            cur: LogPackHeader::new(pbs, salt, lsid),
            segs: Vec::new(),
            ios: Vec::new(),
            packs: Vec::new(),
        }
    }

    fn finish(&mut self) {
        if self.cur.records.is_empty() {
            return;
        }
        let next = LogPackHeader::new(self.pbs, self.cur.salt, self.cur.next_lsid());
        let mut header = std::mem::replace(&mut self.cur, next);
        let block = header.to_block();
        self.packs.push(PackPlan {
            header,
            block,
            segs: std::mem::take(&mut self.segs),
            ios: std::mem::take(&mut self.ios),
        });
    }

    fn push(&mut self, flags: u32, offset: u64, io_size: u32, csum: u32) {
        let h = &mut self.cur;
        let lsid_local = (1 + u64::from(h.total_io_size)) as u16;
        let r = LogRecord {
            checksum: csum,
            flags: FLAG_EXIST | flags,
            offset,
            io_size,
            lsid_local,
            lsid: h.logpack_lsid + u64::from(lsid_local),
        };
        h.total_io_size += r.data_pb(self.pbs) as u16;
        if flags & FLAG_PADDING != 0 {
            h.n_padding += 1;
        }
        h.records.push(r);
    }

    fn add_padding(&mut self, pad: u64) {
        self.push(FLAG_PADDING, 0, self.pbs.pb_to_lb(pad) as u32, 0);
        self.segs.push(Seg::Zeros(pad as usize * self.pbs.bytes()));
    }

    /// One attempt to add a write to the current pack; false when it is full.
    fn try_write(&mut self, lb: u64, data: &Bytes, csum: u32) -> bool {
        let pbs = self.pbs;
        let io_size = (data.len() / LBS_USIZE) as u32;
        let n = pbs.capacity_pb(u64::from(io_size));
        let max = max_records(pbs);
        let records = self.cur.records.len();
        if records >= max {
            return false;
        }
        let next = self.cur.logpack_lsid + 1 + u64::from(self.cur.total_io_size);
        let room = self.ring - next % self.ring;
        let pad = if room < n { room } else { 0 };
        if pad > 0 && self.cur.n_padding > 0 {
            // At most one padding record per pack: on a ring smaller than a pack's data,
            // the write that would need a second one starts the next pack.
            return false;
        }
        let total = u64::from(self.cur.total_io_size);
        let limit = u64::from(MAX_TOTAL_IO_SIZE);
        if !(records + usize::from(pad > 0) < max && total + pad + n <= limit) {
            // A padding that still fits closes this pack, so that the write starts the
            // next pack with its header at ring position 0.
            if pad > 0 && records < max && total + pad <= limit {
                self.add_padding(pad);
            }
            return false;
        }
        if pad > 0 {
            self.add_padding(pad);
        }
        self.push(0, lb, io_size, csum);
        self.segs.push(Seg::Data(data.clone()));
        let tail = n as usize * pbs.bytes() - data.len();
        if tail > 0 {
            self.segs.push(Seg::Zeros(tail));
        }
        self.ios.push(PendingIo::Write {
            off: lb * u64::from(LBS),
            data: data.clone(),
        });
        true
    }

    fn add(&mut self, io: &ItemIo) -> Result<()> {
        match io {
            ItemIo::Flush => self.finish(),
            ItemIo::Write {
                lb,
                data,
                salt,
                csum,
            } => {
                if data.is_empty() || data.len() % LBS_USIZE != 0 || data.len() / LBS_USIZE > 65535
                {
                    return Err(Error::Invalid(format!(
                        "write of {} bytes is not 1..=65535 logical blocks",
                        data.len()
                    )));
                }
                let csum = if *salt == self.cur.salt {
                    *csum
                } else {
                    checksum(data, self.cur.salt)
                };
                let n = self.pbs.capacity_pb((data.len() / LBS_USIZE) as u64);
                // max_logpack_kb: a write that would make the pack's data exceed it starts
                // a new pack (a larger single write still gets one).
                if self.max_pb > 0
                    && !self.cur.records.is_empty()
                    && u64::from(self.cur.total_io_size) + n > self.max_pb
                {
                    self.finish();
                }
                while !self.try_write(*lb, data, csum) {
                    if self.cur.records.is_empty() {
                        return Err(Error::Invalid(
                            "an IO does not fit an empty log pack".into(),
                        ));
                    }
                    self.finish();
                }
            }
            ItemIo::Discard { lb, n } => {
                if *n == 0 {
                    return Err(Error::Invalid("discard of 0 blocks".into()));
                }
                if self.cur.records.len() >= max_records(self.pbs) {
                    self.finish();
                }
                self.push(FLAG_DISCARD, *lb, *n, 0);
                self.ios.push(PendingIo::Discard {
                    off: lb * u64::from(LBS),
                    len: u64::from(*n) * u64::from(LBS),
                });
            }
        }
        Ok(())
    }
}

/// Lays out the packs of `items` from `lsid` on (walb-driver.md §1.7, §1.8); `max_pb` is
/// `max_logpack_kb` in blocks (0: no limit).
pub(super) fn plan_packs<'a>(
    pbs: Pbs,
    salt: u32,
    lsid: u64,
    ring: u64,
    max_pb: u64,
    items: impl IntoIterator<Item = &'a ItemIo>,
) -> Result<Vec<PackPlan>> {
    let mut p = Planner::new(pbs, salt, lsid, ring, max_pb);
    for io in items {
        p.add(io)?;
    }
    p.finish();
    Ok(p.packs)
}

/// A batch's packs, planned for one starting lsid.
pub(super) struct Built {
    /// `(latest, salt, ring size)` the packs were planned for.
    key: (u64, u32, u64),
    packs: Vec<PackPlan>,
    total: u64,
}

/// Writes `bufs` one after the other to the ring from `lsid` on (the whole is a number of
/// blocks; a buffer may end inside a block), splitting at the ring end.
pub(super) fn write_ring_vectored(
    ldev: &dyn Disk,
    sb: &SuperBlock,
    lsid: u64,
    bufs: &[&[u8]],
) -> Result<()> {
    let pbs = sb.pbs.bytes() as u64;
    let ring = sb.ring_buffer_size;
    let mut pos = 0u64;
    let mut start = lsid;
    let mut group: Vec<&[u8]> = Vec::new();
    let put = |start: u64, group: &mut Vec<&[u8]>| -> Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        let off = sb.offset_of_lsid(start);
        ldev.write_vectored_at(group, off)
            .ctx(|| format!("writing lsid {start} at byte offset {off} of the log device"))?;
        group.clear();
        Ok(())
    };
    for buf in bufs {
        let mut rest: &[u8] = buf;
        while !rest.is_empty() {
            let l = lsid + pos / pbs;
            let to_end = (ring - l % ring) * pbs - pos % pbs;
            let n = to_end.min(rest.len() as u64) as usize;
            group.push(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
            if pos % pbs == 0 && (lsid + pos / pbs) % ring == 0 {
                put(start, &mut group)?;
                start = lsid + pos / pbs;
            }
        }
    }
    put(start, &mut group)
}

impl Shared {
    /// Waits on `wq_cond` (batch completions, leader hand-over, melt, close).
    pub(super) fn wq_wait<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        g.wq.waiters += 1;
        let mut g = self.wq_cond.wait(g).unwrap_or_else(|p| p.into_inner());
        g.wq.waiters -= 1;
        g
    }

    /// Wakes the threads waiting on `wq_cond`, if any.
    fn wq_notify(&self, g: &Inner) {
        if g.wq.waiters > 0 {
            self.wq_cond.notify_all();
        }
    }

    /// Queues the items of one IO and returns once they are written to the log (not yet
    /// durable), leading batches when no other writer does.
    pub(super) fn submit(&self, ios: Vec<ItemIo>) -> Result<()> {
        let mut g = self.lock();
        if g.closed {
            return Err(closed());
        }
        if ios.is_empty() {
            return Ok(());
        }
        let q = &mut g.wq;
        let key = q.next_id + ios.len() as u64 - 1;
        for io in ios {
            let id = q.next_id;
            q.next_id += 1;
            q.items.push_back(Item { id, req: key, io });
        }
        while g.wq.done <= key {
            if g.wq.leader {
                g = self.wq_wait(g);
                continue;
            }
            g.wq.leader = true;
            g = self.lead(g, key);
            g.wq.leader = false;
            // Whoever still has items queued takes over.
            self.wq_notify(&g);
        }
        match g.wq.failed.remove(&key) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes batches until item `key` is done.
    fn lead<'a>(&'a self, mut g: MutexGuard<'a, Inner>, key: u64) -> MutexGuard<'a, Inner> {
        while g.wq.done <= key {
            if g.closed {
                let batch: Vec<Item> = g.wq.items.drain(..).collect();
                self.fail_batch(&mut g, &batch, &closed());
                self.wq_notify(&g);
                break;
            }
            let pbs = g.sb.pbs;
            let budget = (self.limit_pb / 2).min(g.sb.ring_buffer_size / 4).max(1);
            let mut n = 0usize;
            let mut est = 0u64;
            for it in &g.wq.items {
                let e = estimate_pb(pbs, &it.io);
                if n > 0 && (n == N_IO_BULK || est + e > budget) {
                    break;
                }
                n += 1;
                est += e;
            }
            let batch: Vec<Item> = g.wq.items.drain(..n).collect();
            g = self.write_batch(g, batch);
            self.wq_notify(&g);
            if !self.background && g.st.poll_flush(Instant::now()) {
                // Without a ticker the writers run the size- and time-based log flush.
                drop(g);
                if let Err(e) = self.flush_unlocked() {
                    debug!("{}: log flush after a batch failed: {e}", self.name);
                }
                g = self.lock();
            }
        }
        g
    }

    /// Records the failure of every IO that has an item in `batch` and marks the items done.
    fn fail_batch(&self, g: &mut Inner, batch: &[Item], e: &Error) {
        for it in batch {
            g.wq.failed.entry(it.req).or_insert_with(|| copy_error(e));
        }
        if let Some(last) = batch.last() {
            g.wq.done = g.wq.done.max(last.id + 1);
        }
    }

    /// Packs, admits, writes and completes one batch (non-empty, taken from the queue).
    fn write_batch<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        batch: Vec<Item>,
    ) -> MutexGuard<'a, Inner> {
        let mut built: Option<Built> = None;
        loop {
            if g.closed {
                self.fail_batch(&mut g, &batch, &closed());
                return g;
            }
            let key = (g.st.lsids().latest, g.sb.salt, g.sb.ring_buffer_size);
            if built.as_ref().is_none_or(|b| b.key != key) {
                // Checksums and copies without the lock; rebuilt if reset-wal moved latest.
                let pbs = g.sb.pbs;
                drop(g);
                let r = plan_packs(
                    pbs,
                    key.1,
                    key.0,
                    key.2,
                    self.max_logpack_pb,
                    batch.iter().map(|it| &it.io),
                );
                g = self.lock();
                match r {
                    Ok(packs) => {
                        let total = packs.iter().map(|p| p.header.pack_pb()).sum();
                        built = Some(Built { key, packs, total });
                    }
                    Err(e) => {
                        self.fail_batch(&mut g, &batch, &e);
                        return g;
                    }
                }
                continue;
            }
            let Some(b) = built.as_ref() else { continue };
            if b.total == 0 {
                // Only flush markers: nothing to log.
                if let Some(last) = batch.last() {
                    g.wq.done = g.wq.done.max(last.id + 1);
                }
                return g;
            }
            let l = g.st.lsids();
            if l.latest + b.total - l.permanent > self.window_pb && l.completed > l.permanent {
                // Keep the unflushed log within redo's window: flush first.
                g.wq.stats.window_waits += 1;
                drop(g);
                let r = self.flush_unlocked();
                g = self.lock();
                if let Err(e) = r {
                    self.fail_batch(&mut g, &batch, &e);
                    return g;
                }
                continue;
            }
            match g.st.admit(b.total) {
                Err(e) => {
                    self.fail_batch(&mut g, &batch, &e);
                    return g;
                }
                Ok(Admit::Frozen) => {
                    g = self.wq_wait(g);
                }
                Ok(Admit::NeedCheckpoint) => {
                    let r;
                    (g, r) = self.make_room(g);
                    if let Err(e) = r {
                        self.fail_batch(&mut g, &batch, &e);
                        return g;
                    }
                }
                Ok(Admit::Go { lsid, overflowed }) => {
                    let Some(b) = built.take() else { continue };
                    return self.write_built(g, b, &batch, lsid, overflowed);
                }
            }
        }
    }

    /// The ring is full up to `prev_written`: flushes and takes a checkpoint so that a
    /// batch can be admitted; fails if the checkpoint did not free the ring.
    fn make_room<'a>(&'a self, g: MutexGuard<'a, Inner>) -> (MutexGuard<'a, Inner>, Result<()>) {
        debug!("ring full up to prev_written: checkpoint before writing");
        drop(g);
        let r = self.flush_unlocked();
        let mut g = self.lock();
        let r = r.and_then(|_| self.checkpoint(&mut g, true));
        let l = g.st.lsids();
        let r = r.and_then(|_| {
            if l.prev_written == l.latest {
                Ok(())
            } else {
                Err(Error::Invalid("checkpoint did not advance".into()))
            }
        });
        (g, r)
    }

    /// Writes an admitted batch's packs at `lsid` (without the lock) and completes it.
    fn write_built<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        b: Built,
        batch: &[Item],
        lsid: u64,
        overflowed: bool,
    ) -> MutexGuard<'a, Inner> {
        if overflowed {
            warn!(
                "log of {} overflowed: logs before {} were overwritten before being released",
                self.name,
                lsid + b.total - g.st.capacity()
            );
        }
        g.wq.in_flight = true;
        let sb = g.sb.clone();
        drop(g);
        let mut bufs: Vec<&[u8]> = Vec::with_capacity(4 * b.packs.len());
        for p in &b.packs {
            p.bufs(&mut bufs);
        }
        let r = write_ring_vectored(&*self.ldev, &sb, lsid, &bufs);
        drop(bufs);
        g = self.lock();
        g.wq.in_flight = false;
        if let Err(e) = r {
            g.st.handle_io_error();
            self.fail_batch(&mut g, batch, &e);
            return g;
        }
        self.complete(&mut g, b);
        if let Some(last) = batch.last() {
            g.wq.done = g.wq.done.max(last.id + 1);
        }
        if self.background && g.st.poll_flush(Instant::now()) {
            self.tick_cond.notify_all();
        }
        g
    }

    /// The packs of a batch are on the log device: `completed` moves and their IOs become
    /// pending data (visible to reads, applied to the data device once permanent).
    fn complete(&self, g: &mut Inner, b: Built) {
        g.wq.stats.batches += 1;
        for p in b.packs {
            g.wq.stats.packs += 1;
            g.wq.stats.records += p.header.n_records() as u64;
            let end = p.header.next_lsid();
            g.st.handle_log_completed(end);
            for io in p.ios {
                g.pending.push_back(Pending { end, io });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, RngCore, SeedableRng};
    use walb_kernel::logpack::{AddOutcome, LogPack, LogPackBuilder};

    fn write(lb: u64, len: usize, salt: u32, seed: u8) -> ItemIo {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let csum = checksum(&data, salt);
        ItemIo::Write {
            lb,
            data: Bytes::from(data),
            salt,
            csum,
        }
    }

    fn w(lb: u64, kib: usize) -> ItemIo {
        write(lb, kib << 10, 1, lb as u8)
    }

    /// The reference: the same items through [`LogPackBuilder`].
    fn reference(
        pbs: Pbs,
        salt: u32,
        lsid: u64,
        ring: u64,
        max_pb: u64,
        items: &[ItemIo],
    ) -> Vec<LogPack> {
        let mut b = LogPackBuilder::new(pbs, salt, lsid, Some(ring));
        let mut packs = Vec::new();
        for io in items {
            match io {
                ItemIo::Flush => {
                    if !b.is_empty() {
                        packs.push(b.finish());
                    }
                }
                ItemIo::Write { lb, data, .. } => {
                    let n = pbs.capacity_pb((data.len() / LBS_USIZE) as u64);
                    if max_pb > 0
                        && !b.is_empty()
                        && u64::from(b.header().total_io_size) + n > max_pb
                    {
                        packs.push(b.finish());
                    }
                    while b.add_write(*lb, data).unwrap() == AddOutcome::Full {
                        assert!(!b.is_empty());
                        packs.push(b.finish());
                    }
                }
                ItemIo::Discard { lb, n } => {
                    while b.add_discard(*lb, *n).unwrap() == AddOutcome::Full {
                        packs.push(b.finish());
                    }
                }
            }
        }
        if !b.is_empty() {
            packs.push(b.finish());
        }
        packs
    }

    fn plan_bytes(p: &PackPlan) -> (Vec<u8>, Vec<u8>) {
        let mut bufs = Vec::new();
        p.bufs(&mut bufs);
        let data: Vec<u8> = bufs[1..].concat();
        (bufs[0].to_vec(), data)
    }

    #[test]
    fn plans_match_the_log_pack_builder_byte_for_byte() {
        let mut rng = SmallRng::seed_from_u64(5);
        for round in 0..400 {
            let pbs = if round % 2 == 0 {
                Pbs::B512
            } else {
                Pbs::B4096
            };
            let ring = rng.random_range(20..3000u64);
            let lsid = rng.random_range(0..10 * ring);
            let max_pb = [0u64, 1, 8, 64][rng.random_range(0..4)];
            let salt = rng.next_u32();
            let items: Vec<ItemIo> = (0..rng.random_range(1..200))
                .map(|_| match rng.random_range(0..20) {
                    0 => ItemIo::Flush,
                    1 | 2 => ItemIo::Discard {
                        lb: rng.random_range(0..1 << 20),
                        n: rng.random_range(1..100_000),
                    },
                    k => {
                        let lb = rng.random_range(1..=24usize.min(ring as usize));
                        // An older salt now and then: the plan recomputes the checksum.
                        let s = if k == 3 { salt ^ 1 } else { salt };
                        write(rng.random_range(0..1 << 20), lb * 512, s, k as u8)
                    }
                })
                .collect();
            let want = reference(pbs, salt, lsid, ring, max_pb, &items);
            let got = plan_packs(pbs, salt, lsid, ring, max_pb, &items).unwrap();
            assert_eq!(got.len(), want.len(), "round {round}");
            for (g, w) in got.iter().zip(want) {
                let mut wh = w.header.clone();
                let (gb, gd) = plan_bytes(g);
                assert_eq!(gb, wh.to_block(), "round {round}: header");
                assert_eq!(gd, &w.data[..], "round {round}: data");
                assert_eq!(g.header, wh);
            }
        }
    }

    #[test]
    fn packs_follow_max_logpack_kb_records_and_flushes() {
        let pbs = Pbs::B4096;
        let n_records = |packs: &[PackPlan]| -> Vec<usize> {
            packs.iter().map(|p| p.header.n_records()).collect()
        };
        // 32 KiB packs: eight 4 KiB writes each.
        let items: Vec<ItemIo> = (0..20).map(|i| w(i * 8, 4)).collect();
        let packs = plan_packs(pbs, 1, 0, 1 << 20, 8, &items).unwrap();
        assert_eq!(n_records(&packs), [8, 8, 4]);
        // A larger single write still gets its pack.
        let packs = plan_packs(pbs, 1, 0, 1 << 20, 8, &[w(0, 4), w(8, 64), w(200, 4)]).unwrap();
        let t: Vec<u16> = packs.iter().map(|p| p.header.total_io_size).collect();
        assert_eq!(t, [1, 16, 1]);
        // No limit: up to 127 records per 4 KiB header.
        let items: Vec<ItemIo> = (0..300).map(|i| w(i * 8, 4)).collect();
        let packs = plan_packs(pbs, 1, 0, 1 << 20, 0, &items).unwrap();
        assert_eq!(n_records(&packs), [127, 127, 46]);
        // A flush starts a new pack; discards take no data blocks.
        let items = [
            w(0, 4),
            ItemIo::Discard { lb: 64, n: 100 },
            ItemIo::Flush,
            w(8, 4),
        ];
        let packs = plan_packs(pbs, 1, 10, 1 << 20, 0, &items).unwrap();
        assert_eq!(n_records(&packs), [2, 1]);
        assert_eq!(packs[0].header.total_io_size, 1);
        assert_eq!(packs[1].header.logpack_lsid, 12);
        // Only flushes: no pack.
        assert!(plan_packs(pbs, 1, 0, 100, 0, &[ItemIo::Flush])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn packs_pad_at_the_ring_end() {
        // Ring of 1000 blocks, batch from lsid 1995: the second 16 KiB write would cross
        // the end and is preceded by padding (walb-driver.md §1.8's example, shifted).
        let pbs = Pbs::B4096;
        let packs = plan_packs(pbs, 1, 1995, 1000, 0, &[w(0, 4), w(8, 16)]).unwrap();
        assert_eq!(packs.len(), 1);
        let h = &packs[0].header;
        assert_eq!(h.n_records(), 3);
        assert_eq!(h.n_padding, 1);
        assert_eq!(h.records[2].lsid, 2000);
        assert_eq!(h.next_lsid(), 2004);
    }
}
