//! Parallel, order-preserving compression of diff IOs.
//!
//! Producing diff IOs (parsing a log, merging diffs) and writing a wdiff are sequential, but
//! compressing each IO is independent. [`compress_ordered`] runs the producer on the
//! calling thread, compresses batches of IOs on worker threads, and hands the stored IOs to
//! a sink on a writer thread in their original order:
//!
//! ```text
//! caller: ios -> batches --> workers: compress --> writer: reorder -> sink (file writes)
//! ```
//!
//! Every channel is bounded, so memory stays at a few batches per thread whatever the size
//! of the input. The first error (from the producer, a worker or the sink) stops the
//! pipeline and is returned.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::io::{DiffIo, IoData};
use crate::compress::{Codec, CompressOpt, Compressor};
use crate::error::{Error, Result};
use crate::wdiff::{RecordKind, StoredIo};

/// Uncompressed bytes per batch handed to a worker.
const BATCH_BYTES: usize = 2 << 20;
/// IOs per batch at most.
const BATCH_IOS: usize = 512;

/// Compresses one IO (data that does not shrink is stored as is).
pub fn compress_io(comp: &mut Compressor, scratch: &mut Vec<u8>, io: DiffIo) -> Result<StoredIo> {
    let (kind, codec, data) = match io.data {
        IoData::Normal(d) => match comp.compress_or_store(&d, scratch)? {
            Codec::None => (RecordKind::Normal, Codec::None, d),
            c => (RecordKind::Normal, c, Bytes::copy_from_slice(scratch)),
        },
        IoData::AllZero => (RecordKind::AllZero, Codec::None, Bytes::new()),
        IoData::Discard => (RecordKind::Discard, Codec::None, Bytes::new()),
    };
    Ok(StoredIo {
        addr: io.addr,
        blocks: io.blocks,
        kind,
        codec,
        data,
    })
}

/// Number of compression threads to use by default: the available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

type Batch = (u64, Vec<DiffIo>);
type Done = (u64, Result<Vec<StoredIo>>);

/// Compresses `ios` with `opt` on `threads` workers and feeds `sink` in input order.
///
/// With `threads == 0` everything runs on the calling thread.
pub fn compress_ordered<I, F>(ios: I, opt: CompressOpt, threads: usize, mut sink: F) -> Result<()>
where
    I: IntoIterator<Item = Result<DiffIo>>,
    F: FnMut(StoredIo) -> Result<()> + Send,
{
    if threads == 0 {
        let mut comp = Compressor::new(opt)?;
        let mut scratch = Vec::new();
        for io in ios {
            sink(compress_io(&mut comp, &mut scratch, io?)?)?;
        }
        return Ok(());
    }
    let failed = AtomicBool::new(false);
    let (job_tx, job_rx) = sync_channel::<Batch>(threads * 2);
    let job_rx: Arc<Mutex<Receiver<Batch>>> = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Done>(threads * 2 + 2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let failed = &failed;
            s.spawn(move || {
                let mut comp = match Compressor::new(opt) {
                    Ok(c) => c,
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        let _ = tx.send((u64::MAX, Err(e)));
                        return;
                    }
                };
                let mut scratch = Vec::new();
                loop {
                    let job = match rx.lock() {
                        Ok(g) => g.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, batch)) = job else { return };
                    let out: Result<Vec<StoredIo>> = batch
                        .into_iter()
                        .map(|io| compress_io(&mut comp, &mut scratch, io))
                        .collect();
                    if tx.send((seq, out)).is_err() {
                        return;
                    }
                }
            });
        }
        // Only the workers hold the job receiver now: if they all stop, sends fail.
        drop(job_rx);
        drop(done_tx);
        let failed_w = &failed;
        let writer = s.spawn(move || -> Result<()> {
            let mut next = 0u64;
            let mut pending: BTreeMap<u64, Vec<StoredIo>> = BTreeMap::new();
            let mut first_err = None;
            for (seq, r) in done_rx {
                if first_err.is_some() {
                    continue; // keep draining so that workers never block
                }
                match r {
                    Ok(v) => {
                        pending.insert(seq, v);
                    }
                    Err(e) => {
                        failed_w.store(true, Ordering::Relaxed);
                        first_err = Some(e);
                        continue;
                    }
                }
                while let Some(v) = pending.remove(&next) {
                    next += 1;
                    for st in v {
                        if let Err(e) = sink(st) {
                            failed_w.store(true, Ordering::Relaxed);
                            first_err = Some(e);
                            break;
                        }
                    }
                    if first_err.is_some() {
                        break;
                    }
                }
            }
            first_err.map_or(Ok(()), Err)
        });
        // Producer: the calling thread.
        let mut produced: Result<()> = Ok(());
        let mut seq = 0u64;
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for io in ios {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            let io = match io {
                Ok(io) => io,
                Err(e) => {
                    produced = Err(e);
                    break;
                }
            };
            if let IoData::Normal(d) = &io.data {
                bytes += d.len();
            }
            batch.push(io);
            if bytes >= BATCH_BYTES || batch.len() >= BATCH_IOS {
                if job_tx.send((seq, std::mem::take(&mut batch))).is_err() {
                    break;
                }
                seq += 1;
                bytes = 0;
            }
        }
        if produced.is_ok() && !batch.is_empty() {
            let _ = job_tx.send((seq, batch));
        }
        drop(job_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("the writer thread panicked".into())));
        produced.and(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_preserved_and_errors_propagate() {
        let ios: Vec<DiffIo> = (0..2000u64)
            .map(|i| match i % 3 {
                0 => DiffIo::discard(i * 10, 5),
                1 => DiffIo::normal(
                    i * 10,
                    Bytes::from(vec![(i % 251) as u8; 512 * (1 + (i % 7) as usize)]),
                ),
                _ => DiffIo::all_zero(i * 10, 3),
            })
            .collect();
        for threads in [0, 1, 3] {
            let mut got = Vec::new();
            compress_ordered(
                ios.iter().cloned().map(Ok),
                CompressOpt::default(),
                threads,
                |s| {
                    got.push(s);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(got.len(), ios.len());
            let mut dec = crate::compress::Decompressor::new();
            for (s, io) in got.into_iter().zip(&ios) {
                assert_eq!(&s.decompress(&mut dec).unwrap(), io);
            }
            // A failing sink stops the pipeline with its error.
            let mut n = 0;
            let r = compress_ordered(
                ios.iter().cloned().map(Ok),
                CompressOpt::default(),
                threads,
                |_| {
                    n += 1;
                    if n == 700 {
                        Err(Error::Invalid("disk full".into()))
                    } else {
                        Ok(())
                    }
                },
            );
            assert!(matches!(r, Err(Error::Invalid(m)) if m == "disk full"));
            // A failing producer too.
            let bad = ios
                .iter()
                .cloned()
                .map(Ok)
                .take(900)
                .chain([Err(Error::corrupt("x", crate::Location::None, "y"))]);
            assert!(
                compress_ordered(bad, CompressOpt::default(), threads, |_| Ok(()))
                    .unwrap_err()
                    .is_corrupt()
            );
        }
    }
}
