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

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use walb_kernel::block::LBS;
use walb_kernel::meta::{DiffManager, MetaDiff, MetaState};
use walb_wire::msg::{Message, Step, SyncStart, Uuid};
use walb_wire::{Call, ErrorCode, Event, PeerId, Received, Reply, WireError};

use super::backend::write_nonzero;
use super::vol::{ArchiveVol, VolMeta};
use super::{backend_error, blocking, persist_error, remove_diff_files, Archive};
use crate::dto;
use crate::server::{answer, refuse};
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

impl Archive {
    /// Serves one full backup (see the module documentation).
    pub(super) async fn receive_full(self: &Arc<Self>, peer: PeerId, mut call: Call, s: SyncStart) {
        let permit = match self.ctx.fg_permit() {
            Ok(p) => p,
            Err(e) => return answer(call, Err(e)).await,
        };
        let accepted = (|| {
            if s.size_lb == 0 || s.bulk_lb == 0 {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!(
                        "full backup of {} needs a volume size and a bulk size (got {} and {} blocks)",
                        s.vol, s.size_lb, s.bulk_lb
                    ),
                ));
            }
            let v = self.vol(&s.vol).ok_or_else(|| {
                refuse(
                    ErrorCode::NotFound,
                    format!(
                        "volume {} does not exist on this archive (init-vol first)",
                        s.vol
                    ),
                )
            })?;
            let txn = v
                .core
                .begin_exclusive(&[A::SyncReady], A::FullSync, "full backup", None)?;
            Ok((v, txn))
        })();
        let (vol, txn) = match accepted {
            Ok(x) => x,
            Err(e) => {
                info!(%peer, vol = %s.vol, "full backup refused: {e}");
                return answer(call, Err(e)).await;
            }
        };
        if let Err(e) = call.reply(Reply::Accepted).await {
            warn!(%peer, vol = %s.vol, "cannot accept the full backup: {e}");
            return;
        }
        info!(%peer, vol = %s.vol, size_lb = s.size_lb, bulk_lb = s.bulk_lb, "full backup started");
        let res = self.full_body(&vol, &mut call, &s).await;
        vol.set_progress(0);
        match res {
            Ok(base) => {
                if let Err(e) = txn.commit(A::Archived) {
                    warn!(vol = %vol.name, "{e}");
                    call.sender.refuse(e.into()).await;
                    return;
                }
                drop(permit);
                info!(%peer, vol = %vol.name, base = %base, "full backup received");
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

    async fn full_body(
        &self,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        s: &SyncStart,
    ) -> Result<MetaState, WireError> {
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

        let (b, n, size_lb) = (Arc::clone(&self.backend), vol.name.clone(), s.size_lb);
        let size = size_lb
            .checked_mul(u64::from(LBS))
            .ok_or_else(|| refuse(ErrorCode::BadRequest, "volume size overflows"))?;
        let file: Arc<File> = Arc::new(
            blocking(move || b.create_base(&n, size_lb))
                .await?
                .map_err(backend_error)?,
        );
        let mut cur = Cursor { off: 0, size };
        let mut unsynced = 0u64;
        let mut last_event = Instant::now();
        loop {
            if self.aborting(vol) {
                return Err(refuse(
                    ErrorCode::Cancelled,
                    format!("volume {}: full backup aborted (shutdown)", vol.name),
                ));
            }
            match call.receiver.next().await.map_err(|e| e.to_wire())? {
                Some(Received::Chunk(data)) => {
                    let at = cur.advance(data.len() as u64)?;
                    unsynced += data.len() as u64;
                    let sync = unsynced >= self.cfg.fsync_bytes;
                    if sync {
                        unsynced = 0;
                    }
                    let f = Arc::clone(&file);
                    blocking(move || {
                        write_nonzero(&f, &data, at)?;
                        if sync {
                            f.sync_data()?;
                        }
                        Ok::<_, std::io::Error>(())
                    })
                    .await?
                    .map_err(|e| {
                        refuse(ErrorCode::Internal, format!("writing the base image: {e}"))
                    })?;
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
                        format!("full backup: unexpected {other:?} inside the image"),
                    ))
                }
                None => {
                    return Err(refuse(
                        ErrorCode::Truncated,
                        "full backup: the storage ended the stream inside the image",
                    ))
                }
            }
            let done_lb = cur.off / u64::from(LBS);
            vol.set_progress(done_lb);
            if last_event.elapsed() >= PROGRESS_EVERY {
                last_event = Instant::now();
                self.publish(Event::Progress {
                    vol: vol.name.clone(),
                    op: OP.into(),
                    done_lb,
                    total_lb: size_lb,
                });
            }
        }
        cur.finish()?;
        let f = Arc::clone(&file);
        blocking(move || f.sync_all())
            .await?
            .map_err(|e| refuse(ErrorCode::Internal, format!("syncing the base image: {e}")))?;
        self.publish(Event::Progress {
            vol: vol.name.clone(),
            op: OP.into(),
            done_lb: size_lb,
            total_lb: size_lb,
        });
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
        Ok(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
