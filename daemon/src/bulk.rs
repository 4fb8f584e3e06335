//! Sending an image as bulks, in address order: the storage's full backup (its device)
//! and the archive's full replication (its base image); and comparing an image with a
//! peer's bulk hashes (hash backup, hash replication).
//!
//! Both read an image front to back with [`read_ahead`]: the reading thread only reads
//! (the device's or the disk's time) while a second thread handles what it read (the
//! CPU's time), a few pieces behind, so that the two overlap.
//!
//! [`scan`] reads one bulk at a time; an all-zero bulk becomes [`Bulk::Zero`] (sent as
//! `Step::Zero`), any other is encoded (checksum, compression) on the second thread, so
//! that the next bulk is read while this one is compressed and the one before is sent.
//! [`send_bulks`] sends what was queued. The receiving side is the archive's image
//! writer ([`crate::archive::full`]).
//!
//! [`compare`] reads an image in pieces of several bulks (about 4 MiB: few requests to an
//! emulated device, few direct reads) against the hashes a peer streams and writes the
//! bulks that differ as a sorted wdiff.

use std::sync::atomic::{AtomicBool, Ordering};

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
/// and queues them, encoded on a thread of its own while the next bulks are read
/// ([`read_ahead`]); `after(bytes)` runs after each read (throttling, progress). Returns
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
    let stop = || abort.load(Ordering::Relaxed);
    read_ahead(
        [from_lb, size_lb, bulk_lb.max(1)],
        read,
        after,
        &stop,
        move |mut pieces| {
            while let Some((_, buf)) = pieces.next() {
                let item = if is_all_zero(&buf) {
                    let n = buf.len() as u64 / lbs;
                    pieces.recycle(buf);
                    Bulk::Zero(n)
                } else {
                    let frozen = bytes::Bytes::from(buf);
                    let c = EncodedChunk::encode(&mut encoder, frozen.clone()).map_err(|e| {
                        walb_kernel::Error::io(
                            "encoding a bulk",
                            std::io::Error::other(e.to_string()),
                        )
                    })?;
                    // Unique again unless the chunk is stored raw (then it goes with it).
                    if let Ok(b) = frozen.try_into_mut() {
                        pieces.recycle(b.into());
                    }
                    Bulk::Data(c)
                };
                if tx.blocking_send(item).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        },
    )?
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
        // The records are compressed by the diff codec: the chunks go raw (checksummed),
        // not compressed a second time on the way.
        let mut enc = ChunkEncoder::new(None).map_err(|e| wire(e.into()))?;
        while let Some(c) = crx.recv().await {
            if let Some(e) = cancelled() {
                return Err(e);
            }
            let c = EncodedChunk::encode(&mut enc, c).map_err(wire)?;
            sender.chunk_encoded(c).await.map_err(wire)?;
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

/// Bytes per read of a scan that reads ahead of its hashing ([`read_ahead`]): 4 MiB, the
/// largest bulk (one request to the device, one direct read of a base image).
const PIECE_BYTES: u64 = 4 << 20;
/// Pieces read ahead of the hashing.
const PIECES_AHEAD: usize = 2;

/// Pieces of whole bulks of `bulk_lb` of about 4 MiB: few requests to the device.
pub(crate) fn piece_lb(bulk_lb: u64) -> u64 {
    let bulk_lb = bulk_lb.max(1);
    (PIECE_BYTES / u64::from(LBS) / bulk_lb).max(1) * bulk_lb
}

/// The pieces of an image [`read_ahead`] read, for its consumer.
pub(crate) struct Pieces {
    rx: std::sync::mpsc::Receiver<(u64, Vec<u8>)>,
    free: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Pieces {
    /// The next piece: its first logical block and its bytes (whole bulks but at the
    /// image's end). `None` at the end, or when the reader stopped or failed.
    pub(crate) fn next(&mut self) -> Option<(u64, Vec<u8>)> {
        self.rx.recv().ok()
    }

    /// Gives a piece's buffer back to the reader (no fresh pages per read).
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        let _ = self.free.send(buf);
    }
}

/// Reads `buf.len()` bytes of an image at a byte offset.
pub(crate) type ReadFn<'a, E> = dyn FnMut(u64, &mut [u8]) -> Result<(), E> + 'a;

/// Reads blocks `[from_lb, size_lb)` of an image front to back on the calling thread
/// with `read(byte offset, buf)`, in pieces of `piece_lb` blocks (whole bulks: see
/// [`piece_lb`]), while `consume` handles them on a thread of its own, [`PIECES_AHEAD`]
/// pieces behind: the reading (the device's or the disk's time) and the hashing (the
/// CPU's) overlap. `after(bytes)` runs after each read (throttling, progress); `stop()`
/// is asked before each. Reading stops early when `consume` returns; its result is
/// returned unless a read failed (that error first).
pub(crate) fn read_ahead<E, T: Send>(
    [from_lb, size_lb, piece_lb]: [u64; 3],
    read: &mut ReadFn<'_, E>,
    after: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
    consume: impl FnOnce(Pieces) -> T + Send,
) -> Result<T, E> {
    let lbs = u64::from(LBS);
    let piece_lb = piece_lb.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel(PIECES_AHEAD);
    let (free, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let consumer = s.spawn(move || consume(Pieces { rx, free }));
        let mut failed = None;
        let mut off_lb = from_lb;
        while off_lb < size_lb && !stop() {
            let n = piece_lb.min(size_lb - off_lb);
            let mut buf = free_rx.try_recv().unwrap_or_default();
            // Same length: no zeroing (the read overwrites all of it).
            buf.resize((n * lbs) as usize, 0);
            if let Err(e) = read(off_lb * lbs, &mut buf) {
                failed = Some(e);
                break;
            }
            after(n * lbs);
            if tx.send((off_lb, buf)).is_err() {
                break;
            }
            off_lb += n;
        }
        drop(tx);
        let out = consumer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
}

/// Reads an image bulk by bulk (`read(byte offset, buf)`, in address order, in pieces of
/// several bulks read ahead of the hashing: [`read_ahead`]; `after(bytes)` after each
/// read) against the peer's hashes and writes the differing bulks as a SORTED wdiff into
/// `out` (blocking; all-zero bulks as ALLZERO records). Returns (differing bulks, bytes
/// written).
pub(crate) fn compare(
    read: &mut dyn FnMut(u64, &mut [u8]) -> walb_kernel::Result<()>,
    after: &mut dyn FnMut(u64),
    job: &Compare,
    hashes: mpsc::Receiver<[u8; 16]>,
    out: ChunkWriter,
    abort: &AtomicBool,
) -> walb_kernel::Result<(u64, u64)> {
    read_ahead(
        [0, job.size_lb, piece_lb(job.bulk_lb)],
        read,
        after,
        &|| abort.load(Ordering::Relaxed),
        |pieces| compare_pieces(pieces, job, hashes, out, abort),
    )?
}

/// The hashing side of [`compare`]: the pieces read against the peer's hashes.
fn compare_pieces(
    mut pieces: Pieces,
    job: &Compare,
    mut hashes: mpsc::Receiver<[u8; 16]>,
    out: ChunkWriter,
    abort: &AtomicBool,
) -> walb_kernel::Result<(u64, u64)> {
    let lbs = u64::from(LBS);
    let mut off_lb = 0u64;
    let mut differing = 0u64;
    // The piece holding block `off_lb` and where that block is in it.
    let mut cur: Option<Vec<u8>> = None;
    let mut pos = 0usize;
    let ios = std::iter::from_fn(|| loop {
        if off_lb >= job.size_lb || abort.load(Ordering::Relaxed) {
            return None;
        }
        let want = hashes.blocking_recv()?;
        if cur.as_ref().is_none_or(|b| pos >= b.len()) {
            if let Some(b) = cur.take() {
                pieces.recycle(b);
            }
            // None: the reader stopped (its error is returned by `read_ahead`).
            cur = Some(pieces.next()?.1);
            pos = 0;
        }
        let piece = cur.as_deref()?;
        let n = job.bulk_lb.min(job.size_lb - off_lb);
        let len = (n * lbs) as usize;
        let Some(bulk) = piece.get(pos..pos + len) else {
            return Some(Err(walb_kernel::Error::io(
                "comparing the image",
                std::io::Error::other(format!("a short piece at block {off_lb}")),
            )));
        };
        pos += len;
        let at = off_lb;
        off_lb += n;
        if walb_kernel::hash::bulk_hash(bulk, job.seed) == want {
            continue;
        }
        differing += 1;
        // Bulks are at most 4 MiB (8192 blocks), within a record's u32 block count.
        let io = if is_all_zero(bulk) {
            DiffIo::all_zero(at, n as u32)
        } else {
            DiffIo::normal(at, bytes::Bytes::copy_from_slice(bulk))
        };
        return Some(Ok(io));
    });
    let (w, _) = write_sorted(ios, job.uuid, out, &ConvertOpt::default())?;
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
    use walb_kernel::diff::io::IoData;

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

    /// Runs [`compare`] of `mine` against `hashes` in bulks of `bulk_lb`; `fail_at`: the
    /// first byte offset whose read fails. The result and the wdiff's IOs.
    fn run_compare(
        mine: &[u8],
        hashes: &[[u8; 16]],
        bulk_lb: u64,
        fail_at: u64,
    ) -> (walb_kernel::Result<(u64, u64)>, Vec<DiffIo>) {
        let (htx, hrx) = mpsc::channel(hashes.len().max(1));
        for h in hashes {
            htx.try_send(*h).unwrap();
        }
        drop(htx);
        let (ctx, mut crx) = mpsc::channel(4);
        let job = Compare {
            size_lb: mine.len() as u64 / 512,
            bulk_lb,
            seed: 42,
            uuid: [3; 16],
        };
        let out = std::thread::scope(|s| {
            let t = s.spawn(|| {
                let abort = AtomicBool::new(false);
                let mut read = |off: u64, buf: &mut [u8]| {
                    if off + buf.len() as u64 > fail_at {
                        return Err(walb_kernel::Error::io(
                            "the test's device",
                            std::io::Error::other(format!("bad sector near byte {off}")),
                        ));
                    }
                    let o = off as usize;
                    buf.copy_from_slice(&mine[o..o + buf.len()]);
                    Ok(())
                };
                compare(
                    &mut read,
                    &mut |_| {},
                    &job,
                    hrx,
                    ChunkWriter::new(ctx),
                    &abort,
                )
            });
            let mut wdiff = Vec::new();
            while let Some(c) = crx.blocking_recv() {
                wdiff.extend_from_slice(&c);
            }
            (t.join().unwrap(), wdiff)
        });
        let ios = match &out.0 {
            Ok(_) => walb_kernel::wdiff::WdiffReader::new(std::io::Cursor::new(out.1))
                .unwrap()
                .map(|io| io.unwrap())
                .collect(),
            Err(_) => Vec::new(),
        };
        (out.0, ios)
    }

    #[test]
    fn compare_sends_the_differing_bulks_of_pieces_read_ahead() {
        // 9 MiB and 3 blocks in bulks of 256 KiB: pieces of 16 bulks, a short last bulk.
        let bulk_lb = 512u64;
        let bulk = bulk_lb as usize * 512;
        let size = 9 * (1 << 20) + 3 * 512;
        let theirs: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8 + 1).collect();
        let mut mine = theirs.clone();
        mine[bulk + 7] ^= 1; // bulk 1, first piece
        mine[17 * bulk..18 * bulk].fill(0); // bulk 17, second piece: all zero
        mine[20 * bulk + 100..20 * bulk + 600].fill(9); // bulk 20
        let last = size - 3 * 512;
        mine[last + 1] ^= 0x80; // the short last bulk (block 36 * 512)
        let hashes: Vec<[u8; 16]> = theirs
            .chunks(bulk)
            .map(|b| walb_kernel::hash::bulk_hash(b, 42))
            .collect();
        assert_eq!(hashes.len(), 37);
        let (r, ios) = run_compare(&mine, &hashes, bulk_lb, u64::MAX);
        let (differing, bytes) = r.unwrap();
        assert_eq!(differing, 4);
        // The records are compressed (the test's content compresses well).
        assert!(bytes > 0 && bytes < 3 * bulk as u64, "{bytes}");
        let got: Vec<(u64, u32, bool)> = ios
            .iter()
            .map(|io| (io.addr, io.blocks, matches!(io.data, IoData::AllZero)))
            .collect();
        assert_eq!(
            got,
            [
                (512, 512, false),
                (17 * 512, 512, true),
                (20 * 512, 512, false),
                (36 * 512, 3, false),
            ]
        );
        for io in &ios {
            if let IoData::Normal(d) = &io.data {
                let o = io.addr as usize * 512;
                assert_eq!(
                    &d[..],
                    &mine[o..o + d.len()],
                    "content at block {}",
                    io.addr
                );
            }
        }
        // The same image: nothing differs.
        let (r, ios) = run_compare(&theirs, &hashes, bulk_lb, u64::MAX);
        assert_eq!(r.unwrap().0, 0);
        assert!(ios.is_empty());
    }

    #[test]
    fn compare_fails_clearly_on_missing_hashes_and_on_a_read_error() {
        let bulk_lb = 512u64;
        let size = 9usize << 20;
        let img: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let hashes: Vec<[u8; 16]> = img
            .chunks(bulk_lb as usize * 512)
            .map(|b| walb_kernel::hash::bulk_hash(b, 42))
            .collect();
        // The peer stops after 20 of 36 hashes: named, not a silently short diff.
        let e = run_compare(&img, &hashes[..20], bulk_lb, u64::MAX)
            .0
            .unwrap_err()
            .to_string();
        assert!(e.contains("hashes ended at block 10240 of 18432"), "{e}");
        // A read failing in the third piece (while the hashing is behind it): its error.
        let e = run_compare(&img, &hashes, bulk_lb, 8 << 20)
            .0
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad sector near byte 8388608"), "{e}");
    }

    #[test]
    fn read_ahead_stops_reading_when_its_consumer_is_done() {
        let mut reads = Vec::new();
        let out: Result<Vec<u64>, String> = read_ahead(
            [4, 1000, 8],
            &mut |off, buf: &mut [u8]| {
                reads.push((off / 512, buf.len() / 512));
                Ok(())
            },
            &mut |_| {},
            &|| false,
            |mut p| {
                let mut firsts = Vec::new();
                for _ in 0..3 {
                    let Some((lb, buf)) = p.next() else { break };
                    firsts.push(lb);
                    p.recycle(buf);
                }
                firsts
            },
        );
        assert_eq!(out.unwrap(), [4, 12, 20]);
        // Three handed over, at most the queue's depth and one more read ahead.
        assert!(reads.len() <= 3 + PIECES_AHEAD + 1, "{reads:?}");
        assert_eq!(reads[..3], [(4, 8), (12, 8), (20, 8)]);

        // To the end: the last piece is short.
        let n = std::cell::Cell::new(0u64);
        let last: Result<Option<(u64, usize)>, String> = read_ahead(
            [0, 21, 8],
            &mut |_, _| Ok(()),
            &mut |b| n.set(n.get() + b),
            &|| false,
            |mut p| {
                let mut last = None;
                while let Some((lb, buf)) = p.next() {
                    last = Some((lb, buf.len()));
                }
                last
            },
        );
        assert_eq!(last.unwrap(), Some((16, 5 * 512)));
        assert_eq!(n.get(), 21 * 512);
    }
}
