//! Restore: materializing a clean snapshot as an image, and deleting it again
//! (walb-tools.md §5.7).
//!
//! `restore vol gid` needs an active volume (Archived and its receive states), no running
//! Restore or Resize (the `Restore` action's deny list), a gid that is not restored yet
//! and that the diff chain can make exactly clean (`DiffManager::diffs_to_restore`), and a
//! foreground slot; it answers `Accepted` and goes on in the background:
//!
//! 1. the backend starts `restored/<gid>.img.tmp` as a copy of the base image (reflink or
//!    sparse copy);
//! 2. the diff chain is applied in rounds of at most `--max-open` wdiffs
//!    ([`plan_restore`]): each round's wdiffs are merged (`DiffMerger`, newest wins) and
//!    written with `Redo` under the `--discard` policy, fdatasync every
//!    `--fsync-interval-mb`, throttled by `--apply-sleep-pct`, with `Event::Progress{op:
//!    "restore"}`. Reading, decompressing and merging run on a second thread, which also
//!    reads ahead the image blocks the writes cover only in part (`EdgePrefetch`: else
//!    each such write waits for a disk read); INDEXED wdiffs are read without a buffer
//!    ([`open_diff`]);
//! 3. the image is synced and renamed to `restored/<gid>.img` (and attached to a loop
//!    device with `--restore-loop`).
//!
//! A failure, a force stop or a forced shutdown removes the temporary image; a daemon
//! killed half-way removes it at its next start. `del-restored` detaches and deletes a
//! restored image (active or Stopped volume, no Restore/Resize running).

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use walb_device::image::FileTarget;
use walb_kernel::block::LBS;
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::diff::io::{DiffIo, IoData};
use walb_kernel::diff::merge::{DiffMerger, DiffStream};
use walb_kernel::ldev::ReadAt;
use walb_kernel::meta::{DiffManager, MetaDiff, MetaSnap, MetaState};
use walb_kernel::wdiff::{WdiffHeader, WdiffKind, WdiffReader};
use walb_wire::{ErrorCode, Reply, WireError};

use super::backend::{BackendError, CloneMethod, ImageBackend};
use super::vol::diff_path;
use super::{backend_error, Archive};
use crate::session::{blocking, refuse, Caller};
use crate::state::archive::{action, deny_list, ACTIVE, ACTIVE_OR_STOPPED};

/// Name of the operation in progress events.
pub const OP: &str = "restore";
/// Least time between two progress events.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Work between two throttling sleeps.
const THROTTLE_SLICE: Duration = Duration::from_millis(20);

/// The rounds of diffs that turn the base `base` into the clean snapshot `|gid|`, each of
/// at most `max_open` diffs (0 = one round); `None` if `|gid|` is not restorable. No
/// rounds at all when the base is `|gid|` itself.
pub fn plan_restore(
    diffs: &DiffManager,
    base: &MetaState,
    gid: u64,
    max_open: usize,
) -> Option<Vec<Vec<MetaDiff>>> {
    let mut st = *base;
    let mut rounds = Vec::new();
    loop {
        let v = diffs.diffs_to_restore(&st, gid, max_open)?;
        if v.is_empty() {
            break;
        }
        st = st.apply_all(&v).ok()?;
        rounds.push(v);
    }
    let done = !st.applying && st.snap_b == MetaSnap::clean(gid);
    done.then_some(rounds)
}

/// Why building a restored image failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The image backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Reading a wdiff or writing the image failed.
    #[error(transparent)]
    Kernel(#[from] walb_kernel::Error),
    /// A force stop or shutdown asked to stop.
    #[error("cancelled")]
    Cancelled,
}

/// One restore, as the blocking worker sees it.
#[derive(Debug, Clone)]
pub struct RestoreJob {
    /// Volume.
    pub vol: String,
    /// Snapshot gid.
    pub gid: u64,
    /// Volume directory (where the wdiffs are).
    pub dir: PathBuf,
    /// The diffs to apply, in rounds ([`plan_restore`]).
    pub rounds: Vec<Vec<MetaDiff>>,
    /// Discard policy.
    pub discard: DiscardPolicy,
    /// fdatasync interval, bytes.
    pub fsync_bytes: u64,
    /// Sleep percentage (0–99).
    pub sleep_pct: u32,
}

/// A finished restore: where the image is, how it was started, where the time went.
#[derive(Debug, Clone)]
pub struct RestoreOutcome {
    /// Where to use the image.
    pub path: PathBuf,
    /// How the base was copied.
    pub how: CloneMethod,
    /// Copying the base ([`ImageBackend::begin_restore`]).
    pub clone_time: Duration,
    /// Reading, merging and writing the diffs.
    pub apply_time: Duration,
    /// The final sync of the image.
    pub sync_time: Duration,
    /// Committing (rename, directory sync, loop attach).
    pub commit_time: Duration,
    /// IOs written (after merging).
    pub ios: u64,
    /// CPU use of the restore's threads (writing, and reading the diffs).
    pub times: ThreadTimes,
}

/// CPU time of a thread, and time it was runnable but waited for a CPU (Linux
/// `/proc/thread-self/schedstat`; zeros where that is not available). A restore slower
/// than its CPU time and disk explain is often just waiting for a CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadTimes {
    /// On a CPU.
    pub cpu: Duration,
    /// Runnable, waiting for a CPU.
    pub cpu_wait: Duration,
}

impl ThreadTimes {
    /// The calling thread's totals so far.
    pub fn now() -> ThreadTimes {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        ThreadTimes {
            cpu: Duration::from_nanos(f.next().unwrap_or(0)),
            cpu_wait: Duration::from_nanos(f.next().unwrap_or(0)),
        }
    }

    /// The calling thread's use since `self` was taken ([`ThreadTimes::now`]).
    pub fn elapsed(self) -> ThreadTimes {
        let n = ThreadTimes::now();
        ThreadTimes {
            cpu: n.cpu.saturating_sub(self.cpu),
            cpu_wait: n.cpu_wait.saturating_sub(self.cpu_wait),
        }
    }
}

impl std::ops::AddAssign for ThreadTimes {
    fn add_assign(&mut self, o: ThreadTimes) {
        self.cpu += o.cpu;
        self.cpu_wait += o.cpu_wait;
    }
}

/// Batches of merged IOs queued between the thread reading the diffs and the one writing
/// the image.
const QUEUE_BATCHES: usize = 4;
/// A batch closes at this much data or this many IOs (fewer thread handoffs than one IO
/// at a time: each is a wake-up, and on a busy host a wait for a CPU).
const BATCH_BYTES: usize = 4 << 20;
const BATCH_IOS: usize = 1024;

/// Builds the restored image of `job` through `backend` (blocking): copy of the base,
/// diffs applied, committed. Calls `progress(done_lb, total_lb)` now and then and stops
/// with [`RestoreError::Cancelled`] once `abort()` is true. The temporary image is removed
/// on every failure.
///
/// Each round's diffs are read, decompressed and merged on a second thread while this one
/// writes. No sync between rounds (an unfinished image is thrown away anyway);
/// `--fsync-interval-mb` bounds the data written between two fdatasyncs, and one fsync
/// at the end makes the image durable (starting writeback along the way with
/// `sync_file_range` was measured slower: the writes then wait for the disk).
pub fn build_restored(
    backend: &dyn ImageBackend,
    job: &RestoreJob,
    abort: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RestoreOutcome, RestoreError> {
    let res = (|| {
        let (t0, times0) = (Instant::now(), ThreadTimes::now());
        let (file, how) = backend.begin_restore(&job.vol, job.gid)?;
        let clone_time = t0.elapsed();
        let size_lb = ReadAt::size(&file)
            .map_err(|e| walb_kernel::Error::io("sizing the restored image", e))?
            / u64::from(LBS);
        let total = size_lb.saturating_mul(job.rounds.len().max(1) as u64);
        let mut w = ImageWriter::new(&file, job.discard, job.fsync_bytes)?;
        let mut reader_times = ThreadTimes::default();
        let mut last = Instant::now();
        let mut throttle = Throttle::new(job.sleep_pct);
        progress(0, total);
        for (r, round) in job.rounds.iter().enumerate() {
            let streams = open_round(&job.dir, round)?;
            let done_before = size_lb.saturating_mul(r as u64);
            let mut on_io = |end_lb: u64| -> Result<(), RestoreError> {
                if abort() {
                    return Err(RestoreError::Cancelled);
                }
                if last.elapsed() >= PROGRESS_EVERY {
                    last = Instant::now();
                    progress(done_before + end_lb.min(size_lb), total);
                }
                throttle.tick();
                Ok(())
            };
            let prefetch = EdgePrefetch::new(&file, job.discard);
            reader_times += apply_round(streams, &mut w, prefetch, &mut on_io)?;
        }
        let ios = w.ios;
        drop(w);
        let t1 = Instant::now();
        let apply_time = t1 - t0 - clone_time;
        file.sync_all()
            .map_err(|e| walb_kernel::Error::io("syncing the restored image", e))?;
        let sync_time = t1.elapsed();
        if abort() {
            return Err(RestoreError::Cancelled);
        }
        let t2 = Instant::now();
        let path = backend.commit_restore(&job.vol, job.gid)?;
        progress(total, total);
        let mut times = times0.elapsed();
        times += reader_times;
        Ok(RestoreOutcome {
            path,
            how,
            clone_time,
            apply_time,
            sync_time,
            commit_time: t2.elapsed(),
            ios,
            times,
        })
    })();
    if res.is_err() {
        if let Err(e) = backend.abort_restore(&job.vol, job.gid) {
            warn!(vol = %job.vol, gid = job.gid, "cannot remove the unfinished image: {e}");
        }
    }
    res
}

/// Writes merged IOs to an image (a restored image, or the base for apply).
pub(super) struct ImageWriter<'a> {
    redo: Redo<FileTarget>,
    file: &'a File,
    fsync_bytes: u64,
    /// Data written since the last fdatasync.
    unsynced: u64,
    /// IOs written.
    pub(super) ios: u64,
}

impl<'a> ImageWriter<'a> {
    /// Writes to `file` under `discard`, with an fdatasync every `fsync_bytes` of data.
    pub(super) fn new(
        file: &'a File,
        discard: DiscardPolicy,
        fsync_bytes: u64,
    ) -> Result<ImageWriter<'a>, RestoreError> {
        let dup = file
            .try_clone()
            .map_err(|e| walb_kernel::Error::io("duplicating the image handle", e))?;
        Ok(ImageWriter {
            redo: Redo::new(FileTarget::new(dup)?, discard)?,
            file,
            fsync_bytes,
            unsynced: 0,
            ios: 0,
        })
    }

    fn apply(&mut self, io: &DiffIo) -> Result<(), RestoreError> {
        self.redo.apply_io(io)?;
        self.ios += 1;
        if !io.is_normal() {
            return Ok(());
        }
        self.unsynced += u64::from(io.blocks) * u64::from(LBS);
        if self.unsynced >= self.fsync_bytes {
            self.unsynced = 0;
            self.file
                .sync_data()
                .map_err(|e| walb_kernel::Error::io("syncing the restored image", e))?;
        }
        Ok(())
    }
}

/// Reads ahead the file-system blocks that the coming writes cover only in part.
///
/// A write that does not cover a whole block makes the file system read the block first,
/// synchronously; diffs of small IOs at 512-byte addresses would wait for the disk about
/// twice per IO (a reflinked image reads them from the base's extents). Asking for those
/// blocks (`POSIX_FADV_WILLNEED`) as soon as the IOs are known, on the reading thread,
/// lets the reads run ahead of the writes, many at once.
pub(super) struct EdgePrefetch {
    file: File,
    block: u64,
    discards: bool,
    last: u64,
}

impl EdgePrefetch {
    /// For writes to `image` under `policy` (ignored discards write nothing); `None` if
    /// the image cannot be duplicated (no read-ahead then, only slower).
    pub(super) fn new(image: &File, policy: DiscardPolicy) -> Option<EdgePrefetch> {
        use std::os::unix::fs::MetadataExt;
        let file = image.try_clone().ok()?;
        let block = file
            .metadata()
            .map(|m| m.blksize())
            .unwrap_or(4096)
            .clamp(u64::from(LBS), 1 << 20);
        Some(EdgePrefetch {
            file,
            block,
            discards: policy != DiscardPolicy::Ignore,
            last: u64::MAX,
        })
    }

    fn io(&mut self, io: &DiffIo) {
        if !self.discards && matches!(io.data, IoData::Discard) {
            return;
        }
        let (start, end) = (io.addr * u64::from(LBS), io.end() * u64::from(LBS));
        if start % self.block != 0 {
            self.ask(start / self.block);
        }
        if end % self.block != 0 {
            self.ask(end / self.block);
        }
    }

    fn ask(&mut self, blk: u64) {
        use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
        if blk == self.last {
            return;
        }
        self.last = blk;
        let (Ok(off), Ok(len)) = (i64::try_from(blk * self.block), i64::try_from(self.block))
        else {
            return;
        };
        // Only a hint: without it the write reads the block itself.
        let _ = posix_fadvise(
            &self.file,
            off,
            len,
            PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        );
    }
}

/// Applies one round: its diffs are read and merged on a scoped thread (which also asks
/// for the blocks of `prefetch`) and written here in batches; `on_io(end_lb)` after each
/// IO may stop the round with an error. Returns the reading thread's CPU use.
pub(super) fn apply_round(
    streams: Vec<DiffStream<'static>>,
    w: &mut ImageWriter<'_>,
    mut prefetch: Option<EdgePrefetch>,
    on_io: &mut dyn FnMut(u64) -> Result<(), RestoreError>,
) -> Result<ThreadTimes, RestoreError> {
    let (tx, rx) = mpsc::sync_channel::<walb_kernel::Result<Vec<DiffIo>>>(QUEUE_BATCHES);
    std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("restore-read".into())
            .spawn_scoped(s, move || {
                let t = ThreadTimes::now();
                let mut batch = Vec::new();
                let mut bytes = 0;
                for io in DiffMerger::new(streams) {
                    let io = match io {
                        Ok(io) => io,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return t.elapsed();
                        }
                    };
                    if let Some(p) = &mut prefetch {
                        p.io(&io);
                    }
                    if io.is_normal() {
                        bytes += io.blocks as usize * LBS as usize;
                    }
                    batch.push(io);
                    if bytes >= BATCH_BYTES || batch.len() >= BATCH_IOS {
                        bytes = 0;
                        // A closed channel means the writer stopped: stop too.
                        if tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                            return t.elapsed();
                        }
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(Ok(batch));
                }
                t.elapsed()
            })
            .map_err(|e| walb_kernel::Error::io("starting the diff reader thread", e))?;
        // `rx` is dropped when this returns, which stops a reader blocked on a full queue.
        let written = (move || {
            for batch in rx {
                for io in batch? {
                    w.apply(&io)?;
                    on_io(io.end())?;
                }
            }
            Ok::<_, RestoreError>(())
        })();
        let read = reader.join().map_err(|_| {
            walb_kernel::Error::io(
                "reading the diffs",
                std::io::Error::other("the diff reader thread panicked"),
            )
        });
        written?;
        Ok(read?)
    })
}

pub(super) fn open_round(
    dir: &Path,
    round: &[MetaDiff],
) -> Result<Vec<DiffStream<'static>>, RestoreError> {
    round
        .iter()
        .map(|d| open_diff(&diff_path(dir, d)).map_err(RestoreError::from))
        .collect()
}

/// Opens a wdiff as an address-ordered stream of IOs. An INDEXED wdiff is read without a
/// buffer: its reader seeks to every image, and a `BufReader` drops its buffer on each
/// seek and refills all of it (1 MiB per image of a few KiB), so one positioned read per
/// image is far cheaper; as those reads jump around the file, the whole file is asked
/// for ahead (`POSIX_FADV_WILLNEED`) so that they do not each wait for the disk. A SORTED
/// wdiff is read front to back through a 1 MiB buffer.
pub fn open_diff(path: &Path) -> Result<DiffStream<'static>, walb_kernel::Error> {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let ctx = |what: &str| format!("{what} wdiff {}", path.display());
    let mut f = File::open(path).map_err(|e| walb_kernel::Error::io(ctx("opening"), e))?;
    let (header, _) = WdiffHeader::read_from(&mut f)?;
    let advice = match header.kind {
        WdiffKind::Indexed => PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        WdiffKind::Sorted => PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    };
    if let Err(e) = posix_fadvise(&f, 0, 0, advice) {
        debug!(path = %path.display(), "posix_fadvise: {e}");
    }
    f.seek(SeekFrom::Start(0))
        .map_err(|e| walb_kernel::Error::io(ctx("rewinding"), e))?;
    Ok(match header.kind {
        WdiffKind::Indexed => Box::new(WdiffReader::new(f)?),
        WdiffKind::Sorted => Box::new(WdiffReader::new(BufReader::with_capacity(1 << 20, f))?),
    })
}

/// Sleeps `pct`% of the time: after each slice of work, a proportional pause.
pub(super) struct Throttle {
    pct: u32,
    since: Instant,
}

impl Throttle {
    pub(super) fn new(pct: u32) -> Throttle {
        Throttle {
            pct: pct.min(99),
            since: Instant::now(),
        }
    }

    pub(super) fn tick(&mut self) {
        if self.pct == 0 {
            return;
        }
        let busy = self.since.elapsed();
        if busy >= THROTTLE_SLICE {
            let pause = busy * self.pct / (100 - self.pct);
            std::thread::sleep(pause);
            self.since = Instant::now();
        }
    }
}

impl Archive {
    /// `restore vol gid` (see the module documentation).
    pub(super) async fn restore(
        self: &Arc<Self>,
        name: &str,
        gid: u64,
        caller: Option<&mut Caller<'_>>,
    ) -> Result<Reply, WireError> {
        let v = self.vol_for_action(name, "restore")?;
        let permit = self.ctx.fg_slot(caller, name, "restore").await?;
        let guard = v
            .core
            .begin_action(ACTIVE, action::RESTORE, deny_list(action::RESTORE))?;
        let (b, n) = (Arc::clone(&self.backend), name.to_owned());
        let restored = blocking(move || b.restored(&n))
            .await?
            .map_err(backend_error)?;
        if let Some(r) = restored.iter().find(|r| r.gid == gid) {
            return Err(refuse(
                ErrorCode::WrongState,
                format!(
                    "snapshot {gid} of volume {name} is already restored at {} (del-restored it first)",
                    r.path.display()
                ),
            ));
        }
        let rounds = {
            let m = v.meta();
            plan_restore(&m.diffs, &m.base, gid, self.cfg.max_open).ok_or_else(|| {
                let points: Vec<String> = m
                    .diffs
                    .restorable(&m.base, true)
                    .iter()
                    .map(|p| p.gid.to_string())
                    .collect();
                refuse(
                    ErrorCode::NotFound,
                    format!(
                        "volume {name}: gid {gid} is not a restorable clean snapshot (restorable: {})",
                        if points.is_empty() { "none".to_owned() } else { points.join(" ") }
                    ),
                )
            })?
        };
        let job = RestoreJob {
            vol: name.to_owned(),
            gid,
            dir: v.dir.clone(),
            rounds,
            discard: self.cfg.discard,
            fsync_bytes: self.cfg.fsync_bytes,
            sleep_pct: self.cfg.apply_sleep_pct,
        };
        info!(
            vol = name,
            gid,
            diffs = job.rounds.iter().map(Vec::len).sum::<usize>(),
            "restore started"
        );
        let me = Arc::clone(self);
        self.tasks.spawn(async move {
            let (b, v2, me2) = (Arc::clone(&me.backend), Arc::clone(&v), Arc::clone(&me));
            let res = blocking(move || {
                let abort = || me2.aborting(&v2);
                let mut progress =
                    |done_lb, total_lb| me2.publish_progress(&v2.name, OP, done_lb, total_lb);
                build_restored(b.as_ref(), &job, &abort, &mut progress)
            })
            .await;
            match res {
                Ok(Ok(o)) => {
                    v.set_clone_method(gid, Some(o.how));
                    info!(
                        vol = %v.name,
                        gid,
                        path = %o.path.display(),
                        method = %o.how,
                        clone_s = o.clone_time.as_secs_f64(),
                        apply_s = o.apply_time.as_secs_f64(),
                        sync_s = o.sync_time.as_secs_f64(),
                        commit_s = o.commit_time.as_secs_f64(),
                        ios = o.ios,
                        cpu_s = o.times.cpu.as_secs_f64(),
                        cpu_wait_s = o.times.cpu_wait.as_secs_f64(),
                        "restored"
                    );
                }
                Ok(Err(e)) => me.restore_failed(&v.name, gid, &e.to_string()),
                Err(e) => me.restore_failed(&v.name, gid, &e.to_string()),
            }
            drop(permit);
            drop(guard);
        });
        Ok(Reply::Accepted)
    }

    /// Logs and publishes ([`Event::Failed`]) a restore that failed.
    fn restore_failed(&self, vol: &str, gid: u64, error: &str) {
        self.op_failed(vol, OP, &format!("restore of gid {gid}: {error}"));
    }

    /// `del-restored vol gid`.
    pub(super) async fn del_restored(
        self: &Arc<Self>,
        name: &str,
        gid: u64,
    ) -> Result<Reply, WireError> {
        let v = self.vol(name).ok_or_else(|| {
            refuse(
                ErrorCode::WrongState,
                format!("volume {name} is Clear; del-restored needs an archived or stopped volume"),
            )
        })?;
        v.core.require(ACTIVE_OR_STOPPED)?;
        v.core
            .actions()
            .check_none("del-restored", deny_list("del-restored"))
            .map_err(|e| refuse(ErrorCode::Busy, format!("volume {name}: {e}")))?;
        let (b, n) = (Arc::clone(&self.backend), name.to_owned());
        let removed = blocking(move || b.remove_restored(&n, gid))
            .await?
            .map_err(backend_error)?;
        if !removed {
            return Err(refuse(
                ErrorCode::NotFound,
                format!("snapshot {gid} of volume {name} is not restored"),
            ));
        }
        v.set_clone_method(gid, None);
        info!(vol = name, gid, "restored image deleted");
        Ok(Reply::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr(diffs: &[MetaDiff]) -> DiffManager {
        DiffManager::from_diffs(diffs.iter().cloned()).unwrap()
    }

    #[test]
    fn plans_rounds_of_at_most_max_open() {
        let base = MetaState::new(MetaSnap::new(0, 2).unwrap(), 10);
        let d = |b, e, m| MetaDiff::clean(b, e).unwrap().with_mergeable(m);
        let m = mgr(&[d(0, 1, false), d(1, 2, true), d(2, 3, true), d(3, 5, false)]);
        // |0,2| becomes clean at 2; 1 is still dirty, so not restorable.
        assert_eq!(plan_restore(&m, &base, 1, 0), None);
        assert_eq!(
            plan_restore(&m, &base, 2, 0).unwrap(),
            vec![vec![d(0, 1, false), d(1, 2, true)]]
        );
        let rounds = plan_restore(&m, &base, 5, 3).unwrap();
        assert_eq!(rounds.len(), 2);
        assert_eq!(rounds.concat().len(), 4);
        assert!(rounds.iter().all(|r| r.len() <= 3));
        assert_eq!(plan_restore(&m, &base, 4, 0), None);
        assert_eq!(plan_restore(&m, &base, 9, 0), None);
        // The base itself, when clean.
        let clean = MetaState::new(MetaSnap::clean(3), 10);
        assert_eq!(
            plan_restore(&mgr(&[]), &clean, 3, 0).unwrap(),
            Vec::<Vec<MetaDiff>>::new()
        );
    }

    use super::super::backend::FileBackend;
    use std::io::Cursor;
    use walb_kernel::diff::convert::{convert_wlog, ConvertOpt};
    use walb_kernel::gen::WlogGen;

    fn wdiff(size_lb: u64, bytes: u64, seed: u64, kind: WdiffKind) -> Vec<u8> {
        let mut g = WlogGen::new(size_lb, bytes);
        g.seed = seed;
        g.min_io_lb = 1;
        g.max_io_lb = 64;
        g.discard_pct = 5;
        g.zero_pct = 5;
        let mut wlog = Vec::new();
        g.write(&mut wlog).unwrap();
        let opt = ConvertOpt {
            kind,
            threads: 0,
            ..Default::default()
        };
        convert_wlog(&wlog[..], Vec::new(), &opt).unwrap().0
    }

    fn ios(s: impl Iterator<Item = walb_kernel::Result<DiffIo>>) -> Vec<DiffIo> {
        s.map(|io| io.unwrap()).collect()
    }

    #[test]
    fn open_diff_reads_both_kinds_like_the_kernel_reader() {
        let d = tempfile::tempdir().unwrap();
        for (i, kind) in [WdiffKind::Indexed, WdiffKind::Sorted]
            .into_iter()
            .enumerate()
        {
            let p = d.path().join(format!("{i}.wdiff"));
            std::fs::write(&p, wdiff(8192, 1 << 20, 7 + i as u64, kind)).unwrap();
            let want = ios(WdiffReader::open(&p).unwrap());
            assert!(want.len() > 50);
            assert_eq!(ios(open_diff(&p).unwrap()), want, "{kind:?}");
        }
        assert!(open_diff(&d.path().join("none.wdiff")).is_err());
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        backend: FileBackend,
        job: RestoreJob,
        want: Vec<u8>,
    }

    /// A 16 MiB base and three diffs of 6 MiB each in two rounds: more than one batch of
    /// IOs, and fdatasyncs along the way (every 8 MiB).
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::new(dir.path(), false);
        let vdir = dir.path().join("v");
        std::fs::create_dir_all(&vdir).unwrap();
        let size_lb = 32768u64;
        let mut base = vec![0u8; size_lb as usize * 512];
        for (i, c) in base.chunks_mut(4096).enumerate() {
            c[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        }
        let f = backend.create_base("v", size_lb).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &base, 0).unwrap();
        backend.commit_base("v").unwrap();
        let diffs: Vec<MetaDiff> = [(0, 1), (1, 2), (2, 3)]
            .iter()
            .map(|&(b, e)| MetaDiff::clean(b, e).unwrap().with_timestamp(100 + e))
            .collect();
        let mut redo = Redo::new(base, DiscardPolicy::Zero).unwrap();
        for (i, d) in diffs.iter().enumerate() {
            let kind = if i == 1 {
                WdiffKind::Sorted
            } else {
                WdiffKind::Indexed
            };
            let bytes = wdiff(size_lb, 6 << 20, 30 + i as u64, kind);
            redo.apply_stream(WdiffReader::new(Cursor::new(bytes.clone())).unwrap())
                .unwrap();
            std::fs::write(diff_path(&vdir, d), bytes).unwrap();
        }
        let want = redo.finish().unwrap().0;
        let job = RestoreJob {
            vol: "v".into(),
            gid: 3,
            dir: vdir,
            rounds: vec![diffs[..2].to_vec(), diffs[2..].to_vec()],
            discard: DiscardPolicy::Punch,
            fsync_bytes: 8 << 20,
            sleep_pct: 0,
        };
        Fixture {
            _dir: dir,
            backend,
            job,
            want,
        }
    }

    #[test]
    fn build_restored_writes_the_base_with_every_round_applied() {
        let f = fixture();
        let mut seen = Vec::new();
        let o =
            build_restored(&f.backend, &f.job, &|| false, &mut |d, t| seen.push((d, t))).unwrap();
        assert_eq!(o.path, f.backend.restored_path("v", 3));
        assert!(std::fs::read(&o.path).unwrap() == f.want, "content differs");
        assert!(o.ios > BATCH_IOS as u64, "{} IOs: one batch only", o.ios);
        let total = 2 * 32768;
        assert_eq!(seen.first(), Some(&(0, total)));
        assert_eq!(seen.last(), Some(&(total, total)));
    }

    #[test]
    fn a_corrupt_diff_or_an_abort_leaves_no_image() {
        let f = fixture();
        let cancelled = build_restored(&f.backend, &f.job, &|| true, &mut |_, _| {});
        assert!(
            matches!(cancelled, Err(RestoreError::Cancelled)),
            "{cancelled:?}"
        );
        // The last round's diff, damaged in its data area.
        let p = diff_path(&f.job.dir, &f.job.rounds[1][0]);
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&p, bytes).unwrap();
        let err = build_restored(&f.backend, &f.job, &|| false, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, RestoreError::Kernel(_)), "{err:?}");
        let rdir = f.job.dir.join("restored");
        let left: Vec<_> = std::fs::read_dir(&rdir).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
