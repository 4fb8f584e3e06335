//! Full-backup receive: the archive's side of Protocol 3 (storage → primary archive,
//! walb-tools.md §5.4).
//!
//! `BackupSync::Full(SyncStart{vol, size_lb, time_s, bulk_lb})` needs a SyncReady volume,
//! no running action and a foreground slot; SyncReady → FullSync, `Reply::Accepted`. Then:
//!
//! 1. `Step::Uuid(uuid)` from the storage (its log device's new uuid) → `Step::Ack`.
//! 2. The image in address order: each bulk is a chunk of raw bytes or `Step::Zero{len_lb}`
//!    for an all-zero bulk, then the bulk end. The archive writes chunks at the current
//!    offset of a new sparse image of `size_lb` blocks (zero runs inside chunks are not
//!    written either, so zeros cost nothing), fdatasyncs every `--fsync-interval-mb`,
//!    tracks progress (`Query::Progress`, `Event::Progress{op: "full-sync"}`), and at the
//!    end syncs and answers `Step::Ack`.
//! 3. `Step::MetaSnap(|0,gidE|)` → the archive persists the base state `<|0,gidE|>` with
//!    the timestamp `time_s`, a fresh random archive uuid and the uuid, makes the new image
//!    the base image, commits FullSync → Archived and answers `Step::Ack`.
//!
//! On any error, disconnect or forced shutdown the new image is removed and the volume
//! rolls back to SyncReady; the storage gets `Message::Error` if it is still there.
//!
//! The image (and a received wdiff) is written with direct IO where the file system has it:
//! written once and read later through restores, it has no business in the page cache, and
//! on the machines we measured, filling fresh page-cache pages cost more CPU than
//! decompressing the stream.
//!
//! Received bytes are written by a [`BackgroundWriter`] (also used by the wdiff receive):
//! a blocking thread fed through a short queue, so that receiving goes on while the disk
//! writes, which starts the write-back of each range as soon as it is written
//! (`sync_file_range`), so that the disk works during the whole transfer instead of the
//! whole image waiting in the page cache for the final fsync (or the periodic one, which
//! would stall the receive).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use tracing::{info, warn};
use walb_kernel::block::LBS;
use walb_kernel::meta::{DiffManager, MetaDiff, MetaState};
use walb_wire::msg::{Message, Step, SyncStart, Uuid};
use walb_wire::{Call, ErrorCode, PeerId, Received, WireError};

use super::backend::{for_nonzero, BackendError};
use super::vol::{ArchiveVol, VolMeta};
use super::{backend_error, persist_error, remove_diff_files, Archive};
use crate::dto;
use crate::session::{accept, blocking, refuse};
use crate::state::archive::ArchiveState as A;

/// Name of the operation in progress events.
pub const OP: &str = "full-sync";
/// Least time between two progress events.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Where the next bulk goes, checked against the image size (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Next byte offset.
    pub off: u64,
    /// Image size in bytes.
    pub size: u64,
}

impl Cursor {
    /// Advances over `len` bytes; refuses bulks past the end or not in whole blocks.
    pub fn advance(&mut self, len: u64) -> Result<u64, WireError> {
        if len % u64::from(LBS) != 0 {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!("a bulk of {len} bytes is not a whole number of logical blocks"),
            ));
        }
        match self.off.checked_add(len) {
            Some(end) if end <= self.size => {
                let at = self.off;
                self.off = end;
                Ok(at)
            }
            _ => Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "a bulk of {len} bytes at byte offset {} passes the end of the volume ({} bytes)",
                    self.off, self.size
                ),
            )),
        }
    }

    /// Checks that the whole image arrived.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.off == self.size {
            Ok(())
        } else {
            Err(refuse(
                ErrorCode::Truncated,
                format!(
                    "the image ended at logical block {} of {}",
                    self.off / u64::from(LBS),
                    self.size / u64::from(LBS)
                ),
            ))
        }
    }
}

/// Where a received image starts, and how much of it stays after a failure (a resumable
/// copy: replication).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    /// Continue the unfinished image from this block (0: a new image).
    pub start_lb: u64,
    /// After a failure: the blocks written and synced (0: nothing worth keeping).
    pub kept_lb: u64,
}

/// Bytes written between two write-back starts.
const WRITEBACK_STEP: u64 = 8 << 20;
/// Chunks queued for the writer thread.
const WRITE_QUEUE: usize = 4;

/// Starts the write-back of `[off, off + len)` of `f` without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Best effort: durability still comes from
/// the fsync that follows; this only gets the disk going earlier.
pub(crate) fn start_writeback(f: &File, off: u64, len: u64) {
    let _ = walb_device::sys::start_writeback(f, off, len);
}

/// When the write-back of a file being written should start, and when to fdatasync
/// (pure bookkeeping of [`BackgroundWriter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteCadence {
    /// Start of the range written since the last write-back start.
    pub from: u64,
    /// End of the highest range written.
    pub to: u64,
    /// Bytes written since the last fdatasync.
    pub unsynced: u64,
    /// fdatasync every this many bytes.
    pub sync_every: u64,
}

/// What to do after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CadenceAction {
    /// Start the write-back of this range `(offset, length)`.
    pub writeback: Option<(u64, u64)>,
    /// fdatasync now.
    pub sync: bool,
}

impl WriteCadence {
    /// A cadence with an fdatasync every `sync_every` bytes.
    pub fn new(sync_every: u64) -> WriteCadence {
        WriteCadence {
            from: 0,
            to: 0,
            unsynced: 0,
            sync_every: sync_every.max(1),
        }
    }

    /// Records `len` bytes written at `off` (in increasing offsets).
    pub fn wrote(&mut self, off: u64, len: u64) -> CadenceAction {
        if self.to <= self.from {
            self.from = off;
        }
        self.from = self.from.min(off);
        self.to = self.to.max(off + len);
        self.unsynced += len;
        let sync = self.unsynced >= self.sync_every;
        if sync {
            self.unsynced = 0;
        }
        let writeback = if sync {
            // The fdatasync writes everything.
            self.from = self.to;
            None
        } else if self.to - self.from >= WRITEBACK_STEP {
            let r = (self.from, self.to - self.from);
            self.from = self.to;
            Some(r)
        } else {
            None
        };
        CadenceAction { writeback, sync }
    }
}

/// Writes chunks at their offsets on a blocking thread (see the module documentation).
pub(crate) struct BackgroundWriter {
    /// What is written (a path), for errors.
    what: String,
    tx: Option<mpsc::Sender<(u64, Bytes)>>,
    thread: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl BackgroundWriter {
    /// A writer of `file`; `skip_zeros`: all-zero runs are not written (sparse images).
    /// The data goes to the disk directly ([`crate::dio::DirectIo`]) where the file system
    /// allows it.
    /// `what` names the file in errors (`writing WHAT: No space left on device`).
    pub(crate) fn new(
        file: Arc<File>,
        what: String,
        sync_every: u64,
        skip_zeros: bool,
    ) -> BackgroundWriter {
        let (tx, mut rx) = mpsc::channel::<(u64, Bytes)>(WRITE_QUEUE);
        let thread = tokio::task::spawn_blocking(move || {
            let mut cadence = WriteCadence::new(sync_every);
            let mut direct = crate::dio::DirectIo::new(&file);
            let mut write = |data: &[u8], at: u64| match direct.as_mut() {
                Some(d) => d.write_at(&file, data, at),
                None => file.write_all_at(data, at),
            };
            while let Some((off, data)) = rx.blocking_recv() {
                if skip_zeros {
                    for_nonzero(&data, |s, e| write(&data[s..e], off + s as u64))?;
                } else {
                    write(&data, off)?;
                }
                let act = cadence.wrote(off, data.len() as u64);
                if act.sync {
                    file.sync_data()?;
                } else if let Some((o, l)) = act.writeback {
                    start_writeback(&file, o, l);
                }
            }
            if let Some(d) = direct {
                d.end(&file)?;
            }
            Ok(())
        });
        BackgroundWriter {
            what,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queues `data` for offset `off`; waits while the queue is full. Fails with the
    /// writer's error if it stopped.
    pub(crate) async fn write(&mut self, off: u64, data: Bytes) -> Result<(), WireError> {
        if let Some(tx) = &self.tx {
            if tx.send((off, data)).await.is_ok() {
                return Ok(());
            }
        }
        // The thread ended early: it failed.
        match self.join().await {
            Err(e) => Err(e),
            Ok(()) => Err(refuse(
                ErrorCode::Internal,
                "the image writer stopped early",
            )),
        }
    }

    /// Waits until everything queued is written.
    pub(crate) async fn finish(mut self) -> Result<(), WireError> {
        self.join().await
    }

    async fn join(&mut self) -> Result<(), WireError> {
        self.tx = None;
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        t.await
            .map_err(|e| refuse(ErrorCode::Internal, format!("image writer thread: {e}")))?
            .map_err(|e| refuse(ErrorCode::Internal, format!("writing {}: {e}", self.what)))
    }
}

impl Archive {
    /// Serves one full backup (see the module documentation).
    pub(super) async fn receive_full(
        self: &Arc<Self>,
        peer: PeerId,
        version: u16,
        mut call: Call,
        s: SyncStart,
    ) {
        let admit = || super::admit::full(&peer, &s, &self.view(&s.vol)?);
        let slot = self
            .admitted_slot(&peer, version, &mut call, &s.vol, "full-sync", admit)
            .await;
        let accepted = slot.and_then(|((), permit)| {
            let v = self.sync_vol(&s, "full backup")?;
            let txn = v
                .core
                .begin_exclusive(&[A::SyncReady], A::FullSync, "full backup", None)?;
            Ok((v, txn, permit))
        });
        let Some((mut call, (vol, txn, permit))) =
            accept(call, &s.vol, "full backup", accepted).await
        else {
            return;
        };
        info!(%peer, vol = %s.vol, size_lb = s.size_lb, bulk_lb = s.bulk_lb, "full backup started");
        let res = self.full_body(&vol, &mut call, &s).await;
        vol.set_progress(0);
        match res {
            Ok((base, tm)) => {
                if let Err(e) = txn.commit(A::Archived) {
                    warn!(vol = %vol.name, "{e}");
                    call.sender.refuse(e.into()).await;
                    return;
                }
                drop(permit);
                info!(
                    %peer, vol = %vol.name, base = %base,
                    ms_image = tm.0.as_millis() as u64,
                    ms_fsync = tm.1.as_millis() as u64,
                    "full backup received"
                );
                self.publish_diffs(&vol);
                if let Err(e) = call.sender.step(Step::Ack).await {
                    warn!(%peer, vol = %vol.name, "cannot acknowledge the full backup: {e}");
                }
                let _ = call.sender.finish();
            }
            Err(e) => {
                warn!(%peer, vol = %vol.name, "full backup failed: {e}");
                let (b, n) = (Arc::clone(&self.backend), vol.name.clone());
                if let Ok(Err(e)) = blocking(move || b.abort_base(&n)).await {
                    warn!(vol = %vol.name, "cannot remove the partial image: {e}");
                }
                drop(txn);
                drop(permit);
                call.receiver.stop();
                call.sender.refuse(e).await;
            }
        }
    }

    /// The volume of a full or hash sync opening, after checking its sizes.
    pub(super) fn sync_vol(&self, s: &SyncStart, what: &str) -> Result<Arc<ArchiveVol>, WireError> {
        if s.size_lb == 0 || s.bulk_lb == 0 {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "{what} of {} needs a volume size and a bulk size (got {} and {} blocks)",
                    s.vol, s.size_lb, s.bulk_lb
                ),
            ));
        }
        self.vol(&s.vol).ok_or_else(|| {
            refuse(
                ErrorCode::NotFound,
                format!(
                    "volume {} does not exist on this archive (init-vol first)",
                    s.vol
                ),
            )
        })
    }

    /// Receives an image of `size_lb` blocks in address order (chunks and `Step::Zero`
    /// runs, then the bulk end) into a new base image ([`ImageBackend::create_base`], not
    /// yet committed), syncs it and publishes progress as `op`; returns the time spent
    /// receiving and syncing. The caller commits or aborts the image.
    ///
    /// [`ImageBackend::create_base`]: super::backend::ImageBackend::create_base
    pub(super) async fn receive_image(
        &self,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        size_lb: u64,
        resume: &mut Resume,
        op: &str,
    ) -> Result<(Duration, Duration), WireError> {
        let (b, n) = (Arc::clone(&self.backend), vol.name.clone());
        let size = size_lb
            .checked_mul(u64::from(LBS))
            .ok_or_else(|| refuse(ErrorCode::BadRequest, "volume size overflows"))?;
        let start_lb = resume.start_lb;
        let file: Arc<File> = Arc::new(
            blocking(move || match start_lb {
                0 => b.create_base(&n, size_lb),
                _ => b.resume_base(&n, size_lb).and_then(|f| {
                    f.ok_or_else(|| BackendError::Missing("the unfinished image to resume".into()))
                }),
            })
            .await?
            .map_err(backend_error)?,
        );
        let mut cur = Cursor {
            off: start_lb * u64::from(LBS),
            size,
        };
        let t_image = Instant::now();
        let what = format!("the new base image in {}", vol.dir.display());
        let mut writer = BackgroundWriter::new(Arc::clone(&file), what, self.cfg.fsync_bytes, true);
        let received = self
            .receive_bulks(vol, call, size_lb, &mut cur, &mut writer, op)
            .await;
        if let Err(e) = received {
            // What arrived stays for a resumed copy once it is written and synced.
            let f = Arc::clone(&file);
            if writer.finish().await.is_ok()
                && blocking(move || f.sync_data())
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                resume.kept_lb = cur.off / u64::from(LBS);
            }
            return Err(e);
        }
        writer.finish().await?;
        let ms_image = t_image.elapsed();
        let t_sync = Instant::now();
        let f = Arc::clone(&file);
        blocking(move || f.sync_all())
            .await?
            .map_err(|e| refuse(ErrorCode::Internal, format!("syncing the base image: {e}")))?;
        let ms_sync = t_sync.elapsed();
        self.publish_progress(&vol.name, op, size_lb, size_lb);
        Ok((ms_image, ms_sync))
    }

    /// The bulks of an image, up to the bulk end, handed to `writer` at `cur`.
    async fn receive_bulks(
        &self,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        size_lb: u64,
        cur: &mut Cursor,
        writer: &mut BackgroundWriter,
        op: &str,
    ) -> Result<(), WireError> {
        let mut last_event = Instant::now();
        loop {
            if self.aborting(vol) {
                return Err(refuse(
                    ErrorCode::Cancelled,
                    format!("volume {}: {op} aborted (shutdown)", vol.name),
                ));
            }
            match call.receiver.next().await.map_err(|e| e.to_wire())? {
                Some(Received::Chunk(data)) => {
                    let at = cur.advance(data.len() as u64)?;
                    writer.write(at, data).await?;
                }
                Some(Received::Msg(Message::Step(Step::Zero { len_lb }))) => {
                    let len = len_lb.checked_mul(u64::from(LBS)).ok_or_else(|| {
                        refuse(ErrorCode::BadRequest, "zero bulk length overflows")
                    })?;
                    cur.advance(len)?;
                }
                Some(Received::End { .. }) => break,
                Some(Received::Msg(Message::Error(e))) => return Err(e),
                Some(other) => {
                    return Err(refuse(
                        ErrorCode::BadRequest,
                        format!("{op}: unexpected {other:?} inside the image"),
                    ))
                }
                None => {
                    return Err(refuse(
                        ErrorCode::Truncated,
                        format!("{op}: the sender ended the stream inside the image"),
                    ))
                }
            }
            // Progress counts what was received (the writer is at most a few chunks behind).
            let done_lb = cur.off / u64::from(LBS);
            vol.set_progress(done_lb);
            if last_event.elapsed() >= PROGRESS_EVERY {
                last_event = Instant::now();
                self.publish_progress(&vol.name, op, done_lb, size_lb);
            }
        }
        cur.finish()
    }

    async fn full_body(
        &self,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        s: &SyncStart,
    ) -> Result<(MetaState, (Duration, Duration)), WireError> {
        let uuid: Uuid = match call.receiver.step().await.map_err(|e| e.to_wire())? {
            Step::Uuid(u) => u,
            other => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!("full backup: expected the volume uuid, got {other:?}"),
                ))
            }
        };
        call.sender.step(Step::Ack).await.map_err(|e| e.to_wire())?;

        let (ms_image, ms_sync) = self
            .receive_image(vol, call, s.size_lb, &mut Resume::default(), OP)
            .await?;
        call.sender.step(Step::Ack).await.map_err(|e| e.to_wire())?;

        let snap = match call.receiver.step().await.map_err(|e| e.to_wire())? {
            Step::MetaSnap(snap) => dto::snap_from_dto(snap)?,
            other => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!("full backup: expected the end snapshot, got {other:?}"),
                ))
            }
        };
        let base = MetaState::new(snap, s.time_s);
        let meta = VolMeta {
            uuid,
            archive_uuid: rand::random(),
            base,
            diffs: DiffManager::new(),
        };
        let old: Vec<MetaDiff> = vol.meta().diffs.iter().cloned().collect();
        let (b, n, dir, m2) = (
            Arc::clone(&self.backend),
            vol.name.clone(),
            vol.dir.clone(),
            meta.clone(),
        );
        blocking(move || -> Result<(), WireError> {
            // The metadata first: until the image is renamed into place the volume
            // stays SyncReady whatever the files say (and a SyncReady volume boots clean).
            remove_diff_files(&dir, &old).map_err(persist_error)?;
            m2.save(&dir).map_err(persist_error)?;
            b.commit_base(&n).map_err(backend_error)
        })
        .await??;
        *vol.meta() = meta;
        Ok((base, (ms_image, ms_sync)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadence_starts_writeback_every_step_and_syncs_every_interval() {
        let mib = 1u64 << 20;
        let mut c = WriteCadence::new(64 * mib);
        // Under a step: nothing.
        assert_eq!(
            c.wrote(0, 4 * mib),
            CadenceAction {
                writeback: None,
                sync: false
            }
        );
        // A step reached: the write-back of everything since the last start.
        assert_eq!(c.wrote(4 * mib, 4 * mib).writeback, Some((0, 8 * mib)));
        // Skipped ranges (zeros) still move the window.
        assert_eq!(c.wrote(20 * mib, 4 * mib).writeback, None);
        assert_eq!(
            c.wrote(40 * mib, 4 * mib).writeback,
            Some((20 * mib, 24 * mib))
        );
        // The sync interval: an fdatasync instead of a write-back start.
        let mut c = WriteCadence::new(8 * mib);
        assert!(!c.wrote(0, 4 * mib).sync);
        let a = c.wrote(4 * mib, 4 * mib);
        assert!(a.sync && a.writeback.is_none());
        assert_eq!(c.wrote(8 * mib, 4 * mib).writeback, None);
    }

    #[tokio::test]
    async fn image_writer_handles_unaligned_pieces_and_leaves_the_file_buffered() {
        // Direct IO where the file system has it: aligned pieces go straight to the disk,
        // a piece at an odd offset or of an odd length through the page cache; every byte
        // lands, and the file is back to buffered IO afterwards.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        let f = Arc::new(File::create(&p).unwrap());
        let size = (3 << 20) + 512 * 3;
        f.set_len(size).unwrap();
        let mut w = BackgroundWriter::new(Arc::clone(&f), "img".into(), 1 << 20, true);
        let body: Vec<u8> = (0..(2 << 20) + 512).map(|i| (i % 251 + 1) as u8).collect();
        w.write(512, Bytes::from(body.clone())).await.unwrap();
        w.write((2 << 20) + 1024, Bytes::from(vec![5u8; (1 << 20) + 512]))
            .await
            .unwrap();
        w.finish().await.unwrap();
        let got = std::fs::read(&p).unwrap();
        assert_eq!(got.len() as u64, size);
        assert!(got[..512].iter().all(|&b| b == 0));
        assert!(got[512..512 + body.len()] == body[..]);
        assert!(got[(2 << 20) + 1024..].iter().all(|&b| b == 5));
        let fl = nix::fcntl::fcntl(&*f, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert!(!nix::fcntl::OFlag::from_bits_truncate(fl).contains(nix::fcntl::OFlag::O_DIRECT));
    }

    #[tokio::test]
    async fn background_writer_writes_every_chunk_and_skips_zeros_when_asked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        let f = Arc::new(File::create(&p).unwrap());
        f.set_len(3 << 20).unwrap();
        let mut w = BackgroundWriter::new(Arc::clone(&f), "img".into(), 1 << 20, true);
        w.write(0, Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
        w.write(1 << 20, Bytes::from(vec![0u8; 1 << 20]))
            .await
            .unwrap();
        w.write(2 << 20, Bytes::from(vec![9u8; 1 << 20]))
            .await
            .unwrap();
        w.finish().await.unwrap();
        let got = std::fs::read(&p).unwrap();
        assert!(got[..1 << 20].iter().all(|&b| b == 7));
        assert!(got[1 << 20..2 << 20].iter().all(|&b| b == 0));
        assert!(got[2 << 20..].iter().all(|&b| b == 9));
        // A failing writer (read-only file) reports its error.
        let ro = Arc::new(File::open(&p).unwrap());
        let mut w = BackgroundWriter::new(ro, "img".into(), 1 << 20, false);
        let mut failed = false;
        for i in 0..8u64 {
            if w.write(i << 20, Bytes::from(vec![1u8; 1 << 20]))
                .await
                .is_err()
            {
                failed = true;
                break;
            }
        }
        assert!(failed || w.finish().await.is_err());
    }

    #[test]
    fn cursor_checks_bounds_alignment_and_completeness() {
        let mut c = Cursor { off: 0, size: 4096 };
        assert_eq!(c.advance(1024).unwrap(), 0);
        assert_eq!(c.advance(0).unwrap(), 1024);
        assert_eq!(c.advance(100).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(c.finish().unwrap_err().code, ErrorCode::Truncated);
        assert_eq!(c.advance(4096).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(c.advance(3072).unwrap(), 1024);
        c.finish().unwrap();
        let mut big = Cursor {
            off: u64::MAX - 511,
            size: u64::MAX,
        };
        assert!(big.advance(1024).is_err());
    }
}
