//! wdiff receive: the archive's side of Protocol 2 (proxy → archive, walb-tools.md §5.3).
//!
//! The request `WdiffTransfer{vol, uuid, size_lb, diff}` is checked in this order, each
//! refusal with its code: `stopped` (Stopped, Start, Stop, or stopping), `syncing`
//! (FullSync, HashSync, Resync), `busy` (a wdiff receive runs, or no foreground slot),
//! `not-found` (no such volume: "archive-not-found"), `wrong-state` (any other state but
//! Archived), `different-uuid`, `smaller-lv-size` (base image smaller than `size_lb`
//! without `--auto-resize`), `too-old-diff` / `too-new-diff` (the diff's relation to the
//! latest snapshot). The pure part is [`super::admit::wdiff`] (with
//! [`super::admit::refusal_for_state`] and [`super::admit::check_diff`]).
//!
//! Accepted: Archived → WdiffRecv; the bytes of one wdiff file arrive as bulk chunks and
//! go to `<name>.tmp` in the volume directory (through the background writer of
//! [`super::full`], which starts the write-back as it goes); at the bulk's end the whole
//! file is validated (every checksum, every IO inside the volume; from the received
//! chunks up to 64 MiB, else read back) while it is synced, then renamed to
//! `meta::diff_file_name(diff)` and registered; WdiffRecv → Archived; then `Step::Ack`.
//! Any failure (corrupt or truncated file, disconnect, force stop) removes the temporary
//! file and rolls the state back; the sender gets `Message::Error`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn};
use walb_kernel::meta::{diff_file_name, MetaDiff};
use walb_kernel::wdiff::WdiffReader;
use walb_wire::msg::{Step, WdiffTransfer};
use walb_wire::{Call, ErrorCode, PeerId, Reply, WireError};

use super::full::BackgroundWriter;
use super::vol::ArchiveVol;
use super::{backend_error, Archive};
use crate::persist;
use crate::session::{answer, blocking, kernel_error, refuse, TempFile};
use crate::state::archive::ArchiveState as A;
use crate::vol::Txn;

/// Reads the whole wdiff at `path`: every checksum, every IO inside `size_lb`.
pub fn validate_wdiff(path: &Path, size_lb: u64) -> Result<u64, WireError> {
    let rd = WdiffReader::open(path).map_err(|e| kernel_error(&e))?;
    validate_ios(rd, size_lb)
}

/// Like [`validate_wdiff`], for a wdiff held in memory as the chunks it arrived in.
pub fn validate_chunks(chunks: Vec<Bytes>, size_lb: u64) -> Result<u64, WireError> {
    let rd = WdiffReader::new(ChunkCursor::new(chunks)).map_err(|e| kernel_error(&e))?;
    validate_ios(rd, size_lb)
}

/// Received wdiffs up to this size are validated from the received chunks, larger ones
/// by reading the file back.
const VALIDATE_IN_MEMORY_MAX: u64 = 64 << 20;

/// A `Read + Seek` over a byte sequence held as consecutive chunks.
#[derive(Debug)]
pub struct ChunkCursor {
    chunks: Vec<Bytes>,
    /// End offset of each chunk.
    ends: Vec<u64>,
    pos: u64,
}

impl ChunkCursor {
    /// The concatenation of `chunks`, positioned at its start.
    pub fn new(chunks: Vec<Bytes>) -> ChunkCursor {
        let mut end = 0u64;
        let ends = chunks
            .iter()
            .map(|c| {
                end += c.len() as u64;
                end
            })
            .collect();
        ChunkCursor {
            chunks,
            ends,
            pos: 0,
        }
    }

    fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }
}

impl Read for ChunkCursor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // The chunk holding `pos`: the first whose end is past it.
        let i = self.ends.partition_point(|&e| e <= self.pos);
        let Some(c) = self.chunks.get(i) else {
            return Ok(0);
        };
        let start = self.ends[i] - c.len() as u64;
        let at = (self.pos - start) as usize;
        let n = buf.len().min(c.len() - at);
        buf[..n].copy_from_slice(&c[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ChunkCursor {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let base = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match base {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}

fn validate_ios<R: Read + Seek>(rd: WdiffReader<R>, size_lb: u64) -> Result<u64, WireError> {
    let mut ios = 0u64;
    for io in rd {
        let io = io.map_err(|e| kernel_error(&e))?;
        if io.end() > size_lb {
            return Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "wdiff IO at logical block {} of {} blocks lies beyond the volume ({size_lb} blocks)",
                    io.addr, io.blocks
                ),
            ));
        }
        ios += 1;
    }
    Ok(ios)
}

struct Accepted {
    vol: Arc<ArchiveVol>,
    txn: Txn<A>,
    permit: OwnedSemaphorePermit,
    diff: MetaDiff,
    size_lb: u64,
}

impl Archive {
    fn accept_wdiff(&self, peer: &PeerId, t: &WdiffTransfer) -> Result<Accepted, WireError> {
        let view = self.view(&t.vol)?;
        let plan = super::admit::wdiff(peer, t, &view, self.cfg.auto_resize)?;
        let permit = self.ctx.fg_permit()?;
        let v = self
            .vol(&t.vol)
            .ok_or_else(|| refuse(ErrorCode::Internal, "volume vanished"))?;
        let txn = v.core.begin(&[A::Archived], A::WdiffRecv)?;
        let size_lb = match plan.grow_to {
            Some(s) => {
                self.backend.grow_base(&v.name, s).map_err(backend_error)?;
                s
            }
            None => view.base_lb.unwrap_or(0),
        };
        Ok(Accepted {
            vol: v,
            txn,
            permit,
            diff: plan.diff,
            size_lb,
        })
    }

    /// Serves one wdiff transfer (see the module documentation).
    pub(super) async fn receive_wdiff(
        self: &Arc<Self>,
        peer: PeerId,
        mut call: Call,
        t: WdiffTransfer,
    ) {
        let acc = match self.accept_wdiff(&peer, &t) {
            Ok(a) => a,
            Err(e) => {
                debug!(%peer, vol = %t.vol, "wdiff refused: {e}");
                answer(call, Err(e)).await;
                return;
            }
        };
        if let Err(e) = call.reply(Reply::Accepted).await {
            warn!(%peer, vol = %t.vol, "cannot accept the wdiff: {e}");
            return;
        }
        let Accepted {
            vol,
            txn,
            permit,
            diff,
            size_lb,
        } = acc;
        match self.wdiff_body(&vol, &mut call, &diff, size_lb).await {
            Ok((stored, tm)) => {
                if let Err(e) = txn.commit(A::Archived) {
                    // The diff is durable and registered; the state is Archived either way.
                    warn!(vol = %vol.name, "{e}");
                }
                // The slot is free before the sender hears of it (it may send the next one
                // at once).
                drop(permit);
                info!(
                    %peer, vol = %vol.name, diff = %stored, size = stored.data_size,
                    gid_b = stored.snap_b.gid_b, gid_e = stored.snap_e.gid_b,
                    ms_recv = tm.recv.as_millis() as u64,
                    ms_fsync = tm.sync.as_millis() as u64,
                    ms_validate = tm.validate.as_millis() as u64,
                    ms_commit = tm.commit.as_millis() as u64,
                    "wdiff received"
                );
                self.publish_diffs(&vol);
                if let Err(e) = call.sender.step(Step::Ack).await {
                    warn!(%peer, vol = %vol.name, "cannot acknowledge the wdiff (the sender will resend; it is too old then): {e}");
                }
                let _ = call.sender.finish();
            }
            Err(e) => {
                warn!(%peer, vol = %vol.name, %diff, "wdiff receive failed: {e}");
                drop(txn);
                drop(permit);
                call.receiver.stop();
                call.sender.refuse(e).await;
            }
        }
    }

    pub(super) async fn wdiff_body(
        &self,
        vol: &Arc<ArchiveVol>,
        call: &mut Call,
        diff: &MetaDiff,
        size_lb: u64,
    ) -> Result<(MetaDiff, Timing), WireError> {
        let t0 = Instant::now();
        let name = diff_file_name(diff);
        let dst = vol.dir.join(&name);
        let tmp = persist::tmp_path(&dst);
        let mut guard = TempFile::new(tmp.clone());
        let t2 = tmp.clone();
        let file: Arc<File> = Arc::new(
            blocking(move || persist::create_file(&t2))
                .await?
                .map_err(|e| {
                    refuse(
                        ErrorCode::Internal,
                        format!("creating {}: {e}", tmp.display()),
                    )
                })?,
        );
        let what = tmp.display().to_string();
        let writer = BackgroundWriter::new(Arc::clone(&file), what, self.cfg.fsync_bytes, false);
        let (off, kept) = self.receive_chunks(vol, call, writer).await?;
        let recv = t0.elapsed();
        let t1 = Instant::now();
        let (sync, validate) = sync_validate_rename(vol, file, &tmp, &dst, kept, size_lb).await?;
        let commit = t1.elapsed();
        guard.disarm();
        let stored = diff.clone().with_data_size(off);
        {
            let mut m = vol.meta();
            m.diffs.remove(&stored);
            if let Err(e) = m.diffs.add(stored.clone()) {
                return Err(refuse(ErrorCode::Internal, e.to_string()));
            }
        }
        Ok((
            stored,
            Timing {
                recv,
                sync,
                validate,
                commit,
            },
        ))
    }

    /// The bulk: chunks written to the file through `writer`, within the wdiff size limit;
    /// returns the size and, for a small file, the chunks (validated without reading the
    /// file back).
    async fn receive_chunks(
        &self,
        vol: &ArchiveVol,
        call: &mut Call,
        mut writer: BackgroundWriter,
    ) -> Result<(u64, Option<Vec<Bytes>>), WireError> {
        let mut off = 0u64;
        let mut kept: Option<Vec<Bytes>> = Some(Vec::new());
        loop {
            if self.aborting(vol) {
                return Err(refuse(
                    ErrorCode::Cancelled,
                    format!("volume {}: wdiff receive aborted (force stop)", vol.name),
                ));
            }
            let chunk = call.receiver.chunk().await.map_err(|e| e.to_wire())?;
            let Some(data) = chunk else { break };
            let len = data.len() as u64;
            let wdiff_len_max = self.ctx.limits().wdiff_len_max;
            if off.saturating_add(len) > wdiff_len_max {
                return Err(refuse(
                    ErrorCode::TooLarge,
                    format!(
                        "volume {}: the wdiff passes {wdiff_len_max} bytes (--max-wdiff-mb)",
                        vol.name
                    ),
                ));
            }
            if off + len > VALIDATE_IN_MEMORY_MAX {
                kept = None;
            }
            if let Some(k) = kept.as_mut() {
                k.push(data.clone());
            }
            writer
                .write(off, data)
                .await
                .map_err(|e| refuse(e.code, format!("volume {}: {}", vol.name, e.message)))?;
            off += len;
        }
        writer
            .finish()
            .await
            .map_err(|e| refuse(e.code, format!("volume {}: {}", vol.name, e.message)))?;
        Ok((off, kept))
    }
}

/// Syncs the received file at `tmp` while validating it (from the `kept` chunks, else read
/// back), then renames it to `dst` durably; returns the time of the fsync and of the
/// validation.
async fn sync_validate_rename(
    vol: &ArchiveVol,
    file: Arc<File>,
    tmp: &Path,
    dst: &Path,
    kept: Option<Vec<Bytes>>,
    size_lb: u64,
) -> Result<(Duration, Duration), WireError> {
    // The fsync and the validation (a disk wait and a computation) at once.
    let (f, t2) = (file, tmp.to_path_buf());
    let syncing = blocking(move || {
        let t = Instant::now();
        f.sync_all().map(|()| t.elapsed()).map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!("syncing {}: {e}", t2.display()),
            )
        })
    });
    let t2 = tmp.to_path_buf();
    let validating = blocking(move || {
        let t = Instant::now();
        match kept {
            Some(chunks) => validate_chunks(chunks, size_lb),
            None => validate_wdiff(&t2, size_lb),
        }
        .map(|_| t.elapsed())
    });
    let (synced, validated) = tokio::join!(syncing, validating);
    let (sync, validate) = (synced??, validated??);
    let (t2, d2) = (tmp.to_path_buf(), dst.to_path_buf());
    let dir = vol.dir.clone();
    blocking(move || -> Result<(), WireError> {
        std::fs::rename(&t2, &d2).map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!("renaming {}: {e}", d2.display()),
            )
        })?;
        persist::sync_dir(&dir).map_err(super::persist_error)
    })
    .await??;
    Ok((sync, validate))
}

/// Where the time of a wdiff receive went (logged).
pub(super) struct Timing {
    /// Acceptance to the bulk's end (bytes received and written).
    recv: Duration,
    /// The final fsync.
    sync: Duration,
    /// The validation (at the same time as the fsync).
    validate: Duration,
    /// The fsync, the validation and the rename (the directory synced).
    commit: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_cursor_reads_and_seeks_across_chunks() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let chunks = vec![
            Bytes::copy_from_slice(&data[..10]),
            Bytes::new(),
            Bytes::copy_from_slice(&data[10..700]),
            Bytes::copy_from_slice(&data[700..]),
        ];
        let mut c = ChunkCursor::new(chunks);
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        assert_eq!(c.seek(SeekFrom::End(-300)).unwrap(), 700);
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, &data[700..705]);
        assert_eq!(c.seek(SeekFrom::Current(-698)).unwrap(), 7);
        let mut b = [0u8; 6];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, &data[7..13]);
        assert!(c.seek(SeekFrom::Current(-100)).is_err());
        c.seek(SeekFrom::Start(5000)).unwrap();
        assert_eq!(c.read(&mut b).unwrap(), 0);
    }
}
