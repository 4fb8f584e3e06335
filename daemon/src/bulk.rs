//! Sending an image as bulks, in address order: the storage's full backup (its device)
//! and the archive's full replication (its base image); and comparing an image with a
//! peer's bulk hashes (hash backup, hash replication).
//!
//! A reader thread ([`scan`]) reads one bulk at a time; an all-zero bulk becomes
//! [`Bulk::Zero`] (sent as `Step::Zero`), any other is encoded (checksum, compression) on
//! that thread, so that the next bulk is read and compressed while this one is sent.
//! [`send_bulks`] sends what the thread queued. The receiving side is the archive's image
//! writer ([`crate::archive::full`]).
//!
//! [`compare`] reads an image bulk by bulk against the hashes a peer streams and writes
//! the bulks that differ as a sorted wdiff.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use tokio::sync::mpsc;
use walb_kernel::block::{is_all_zero, LBS};
use walb_kernel::diff::convert::{write_sorted, ConvertOpt};
use walb_kernel::diff::io::DiffIo;
use walb_wire::frame::ChunkEncoder;
use walb_wire::msg::{Step, WireError};
use walb_wire::{CallSender, EncodedChunk};

use crate::session::ChunkWriter;

/// Default bulk size of a full copy (backup or replication): 256 KiB.
pub const DEFAULT_BULK_LB: u64 = 512;
/// Largest bulk: 4 MiB (one chunk).
pub const MAX_BULK_LB: u64 = 8192;

/// The zstd level of an image's bulks from a `--sync-compress` value `CODEC[:LEVEL[:THREADS]]`:
/// `zstd` (level 1 unless given) or `none` (`None`: checksummed, stored raw). The transport
/// compresses with zstd or not at all, so walb-tools' other codecs are refused by name.
pub fn sync_level(spec: &str) -> Result<Option<i32>, String> {
    let mut parts = spec.split(':');
    let codec = parts.next().unwrap_or_default().trim();
    let level = parts.next().map(str::trim).filter(|l| !l.is_empty());
    match codec {
        "none" => Ok(None),
        "zstd" => match level {
            None => Ok(Some(1)),
            Some(l) => l
                .parse::<i32>()
                .ok()
                .filter(|l| (1..=19).contains(l))
                .map(Some)
                .ok_or_else(|| format!("{spec:?}: the zstd level must be 1 to 19")),
        },
        other => Err(format!(
            "{spec:?}: images travel compressed with zstd or not at all (none), not {other:?}"
        )),
    }
}

/// Bulks read ahead of the sender.
pub(crate) const READ_AHEAD: usize = 4;

/// One bulk of the image.
#[derive(Debug)]
pub(crate) enum Bulk {
    /// A chunk encoded (checksummed, compressed) by the reader thread.
    Data(EncodedChunk),
    /// This many all-zero logical blocks.
    Zero(u64),
}

/// Where the reader thread sends its bulks, and when it must stop.
pub(crate) struct ScanIo<'a> {
    /// The queue to the sender.
    pub(crate) tx: &'a mpsc::Sender<Bulk>,
    /// The call's chunk encoder.
    pub(crate) encoder: ChunkEncoder,
    /// Set when the sender gave up.
    pub(crate) abort: &'a AtomicBool,
}

/// Reads blocks `[from_lb, size_lb)` in bulks of `bulk_lb` with `read(byte offset, buf)`
/// and queues them; `after(bytes)` runs after each read (throttling, progress). Returns
/// early, without error, when the sender is gone or `abort` is set.
pub(crate) fn scan(
    read: &mut dyn FnMut(u64, &mut [u8]) -> walb_kernel::Result<()>,
    from_lb: u64,
    size_lb: u64,
    bulk_lb: u64,
    io: ScanIo<'_>,
    after: &mut dyn FnMut(u64),
) -> walb_kernel::Result<()> {
    let ScanIo {
        tx,
        mut encoder,
        abort,
    } = io;
    let lbs = u64::from(LBS);
    // The read buffer, reused unless a bulk sent raw keeps it (until the peer has it).
    let mut idle: Option<BytesMut> = None;
    let mut off_lb = from_lb;
    while off_lb < size_lb {
        if abort.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = bulk_lb.max(1).min(size_lb - off_lb);
        let len = (n * lbs) as usize;
        let mut buf = idle.take().unwrap_or_default();
        // Same length: no zeroing (the read overwrites all of it).
        buf.resize(len, 0);
        read(off_lb * lbs, &mut buf)?;
        let item = if is_all_zero(&buf) {
            idle = Some(buf);
            Bulk::Zero(n)
        } else {
            let frozen = buf.freeze();
            let c = EncodedChunk::encode(&mut encoder, frozen.clone()).map_err(|e| {
                walb_kernel::Error::io("encoding a bulk", std::io::Error::other(e.to_string()))
            })?;
            // Unique again unless the chunk is stored raw (then it goes with the chunk).
            idle = frozen.try_into_mut().ok();
            Bulk::Data(c)
        };
        if tx.blocking_send(item).is_err() {
            return Ok(());
        }
        off_lb += n;
        after(n * lbs);
    }
    Ok(())
}

/// Sends the queued bulks until the reader ends the queue; `cancelled()` is asked before
/// each bulk and ends the copy with its error.
async fn forward(
    rx: &mut mpsc::Receiver<Bulk>,
    sender: &mut CallSender,
    cancelled: &(dyn Fn() -> Option<WireError> + Sync),
) -> Result<(), WireError> {
    let wire = |e: walb_wire::Error| e.to_wire();
    while let Some(b) = rx.recv().await {
        if let Some(e) = cancelled() {
            return Err(e);
        }
        match b {
            Bulk::Data(c) => sender.chunk_encoded(c).await.map_err(wire)?,
            Bulk::Zero(len_lb) => sender.step(Step::Zero { len_lb }).await.map_err(wire)?,
        }
    }
    Ok(())
}

/// Sends an image its reader thread queues ([`scan`] in `reader`) until the queue ends,
/// then waits for the reader and ends the bulk. On a failure to send (or `cancelled()`)
/// the reader is told to stop (`abort`) and the error returned; a failed reader's error
/// is returned as is, a panicked one named `what`.
pub(crate) async fn send_bulks(
    mut rx: mpsc::Receiver<Bulk>,
    reader: tokio::task::JoinHandle<Result<(), WireError>>,
    abort: &AtomicBool,
    sender: &mut CallSender,
    cancelled: &(dyn Fn() -> Option<WireError> + Sync),
    what: &str,
) -> Result<(), WireError> {
    if let Err(e) = forward(&mut rx, sender, cancelled).await {
        abort.store(true, Ordering::Relaxed);
        drop(rx);
        return Err(e);
    }
    reader
        .await
        .map_err(|e| WireError::new(walb_wire::ErrorCode::Internal, format!("{what}: {e}")))??;
    sender.end_bulk().await.map_err(|e| e.to_wire())
}

/// The comparing side of a hash sync on the network: `bulks` hashes from the peer go to
/// the comparison (`htx`) while the wdiff chunks it writes (`crx`) go to the peer, both at
/// once; the first failure ends both (the other may be waiting on a full queue).
/// `cancelled()` is asked before each chunk; `what` names the operation in errors.
pub(crate) async fn hashes_in_diff_out(
    call: &mut walb_wire::Call,
    bulks: u64,
    htx: mpsc::Sender<[u8; 16]>,
    crx: &mut mpsc::Receiver<bytes::Bytes>,
    cancelled: &(dyn Fn() -> Option<WireError> + Sync),
    what: &str,
) -> Result<(), WireError> {
    let wire = |e: walb_wire::Error| e.to_wire();
    let walb_wire::Call {
        sender, receiver, ..
    } = call;
    let hashes_in = async {
        for _ in 0..bulks {
            let h = match receiver.step().await.map_err(wire)? {
                Step::Hash(h) => h,
                other => {
                    return Err(WireError::new(
                        walb_wire::ErrorCode::BadRequest,
                        format!("{what}: expected a bulk hash, got {other:?}"),
                    ))
                }
            };
            if htx.send(h).await.is_err() {
                break;
            }
        }
        Ok(())
    };
    let diff_out = async {
        while let Some(c) = crx.recv().await {
            if let Some(e) = cancelled() {
                return Err(e);
            }
            sender.chunk(&c).await.map_err(wire)?;
        }
        Ok(())
    };
    tokio::try_join!(hashes_in, diff_out).map(|_| ())
}

/// Hashes queued between the network and the image reader of a comparison.
pub(crate) const HASH_QUEUE: usize = 64;

/// The parameters of one comparison.
pub(crate) struct Compare {
    /// Image size, logical blocks.
    pub(crate) size_lb: u64,
    /// Bulk size, logical blocks.
    pub(crate) bulk_lb: u64,
    /// Hash seed.
    pub(crate) seed: u64,
    /// Uuid written in the wdiff's header.
    pub(crate) uuid: [u8; 16],
}

/// Reads an image bulk by bulk (`read(byte offset, buf)`, in address order; `after(bytes)`
/// after each read) against the peer's hashes and writes the differing bulks as a SORTED
/// wdiff into `out` (blocking; all-zero bulks as ALLZERO records). Returns (differing
/// bulks, bytes written).
pub(crate) fn compare(
    read: &mut dyn FnMut(u64, &mut [u8]) -> walb_kernel::Result<()>,
    after: &mut dyn FnMut(u64),
    job: &Compare,
    mut hashes: mpsc::Receiver<[u8; 16]>,
    out: ChunkWriter,
    abort: &AtomicBool,
) -> walb_kernel::Result<(u64, u64)> {
    let mut off_lb = 0u64;
    let mut differing = 0u64;
    let mut failed: Option<walb_kernel::Error> = None;
    let ios = std::iter::from_fn(|| loop {
        if off_lb >= job.size_lb || abort.load(Ordering::Relaxed) || failed.is_some() {
            return None;
        }
        let want = hashes.blocking_recv()?;
        let n = job.bulk_lb.min(job.size_lb - off_lb);
        let mut buf = BytesMut::zeroed((n * 512) as usize);
        if let Err(e) = read(off_lb * 512, &mut buf) {
            failed = Some(e);
            return None;
        }
        after(n * 512);
        let at = off_lb;
        off_lb += n;
        if walb_kernel::hash::bulk_hash(&buf, job.seed) == want {
            continue;
        }
        differing += 1;
        // Bulks are at most 4 MiB (8192 blocks), within a record's u32 block count.
        let io = if is_all_zero(&buf) {
            DiffIo::all_zero(at, n as u32)
        } else {
            DiffIo::normal(at, buf.freeze())
        };
        return Some(Ok(io));
    });
    let (w, _) = write_sorted(ios, job.uuid, out, &ConvertOpt::default())?;
    if let Some(e) = failed {
        return Err(e);
    }
    if abort.load(Ordering::Relaxed) {
        return Err(walb_kernel::Error::io(
            "comparing the image",
            std::io::Error::other("aborted"),
        ));
    }
    if off_lb < job.size_lb {
        return Err(walb_kernel::Error::io(
            "comparing the image",
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive's hashes ended at block {off_lb} of {}",
                    job.size_lb
                ),
            ),
        ));
    }
    let bytes = w
        .finish()
        .map_err(|e| walb_kernel::Error::io("sending the diff", e))?;
    Ok((differing, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_compression_is_zstd_at_a_level_or_none() {
        assert_eq!(sync_level("zstd:1:1"), Ok(Some(1)));
        assert_eq!(sync_level("zstd:3"), Ok(Some(3)));
        assert_eq!(sync_level("zstd"), Ok(Some(1)));
        assert_eq!(sync_level("none:0:1"), Ok(None));
        for bad in ["snappy:0:1", "zstd:0", "zstd:x", "gzip", ""] {
            assert!(sync_level(bad).is_err(), "{bad}");
        }
        assert!(sync_level("snappy:0:1").unwrap_err().contains("snappy"));
    }

    #[test]
    fn scan_sends_zero_bulks_as_lengths_and_stops_when_aborted() {
        let img: Vec<u8> = (0..10 * 512)
            .map(|i| if (2048..3072).contains(&i) { 0 } else { 7 })
            .collect();
        let (tx, mut rx) = mpsc::channel(16);
        let abort = AtomicBool::new(false);
        let mut read = |off: u64, buf: &mut [u8]| {
            let o = off as usize;
            buf.copy_from_slice(&img[o..o + buf.len()]);
            Ok(())
        };
        let mut bytes = 0;
        let io = ScanIo {
            tx: &tx,
            encoder: ChunkEncoder::new(None).unwrap(),
            abort: &abort,
        };
        // From block 2, bulks of 2: [2,4) data, [4,6) zero, [6,8) data, [8,10) data.
        scan(&mut read, 2, 10, 2, io, &mut |b| bytes += b).unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Ok(b) = rx.try_recv() {
            got.push(match b {
                Bulk::Data(c) => format!("d{}", c.raw_len()),
                Bulk::Zero(n) => format!("z{n}"),
            });
        }
        assert_eq!(got, ["d1024", "z2", "d1024", "d1024"]);
        assert_eq!(bytes, 8 * 512);

        let (tx, mut rx) = mpsc::channel(16);
        let abort = AtomicBool::new(true);
        let io = ScanIo {
            tx: &tx,
            encoder: ChunkEncoder::new(None).unwrap(),
            abort: &abort,
        };
        scan(&mut read, 0, 10, 2, io, &mut |_| {}).unwrap();
        assert!(rx.try_recv().is_err());
    }
}
