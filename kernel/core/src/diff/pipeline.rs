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
//! The items are anything that can [`Encode`] itself into a stored record: a [`DiffIo`]
//! is compressed; a merge input's record kept as stored
//! ([`SourceIo`](super::source::SourceIo)) is copied, or decompressed, cut and compressed
//! again, on the workers too.
//!
//! Every channel is bounded, so memory stays at a few batches per thread whatever the size
//! of the input. The first error (from the producer, a worker or the sink) stops the
//! pipeline and is returned.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::io::{DiffIo, IoData};
use crate::compress::{Codec, CompressOpt, Compressor, Decompressor};
use crate::error::{Error, Result};
use crate::wdiff::{RecordKind, StoredIo};

/// Uncompressed bytes per batch handed to a worker.
const BATCH_BYTES: usize = 2 << 20;
/// IOs per batch at most.
const BATCH_IOS: usize = 512;

/// IOs at least this large are probed before being compressed whole.
const PROBE_MIN_BYTES: usize = 16 << 10;
/// The probe: this many slices of `PROBE_SLICE` bytes spread evenly over the IO.
const PROBE_SLICES: usize = 8;
const PROBE_SLICE: usize = 512;

/// True when a sample of `data` compresses to less than 97% of its size.
///
/// Compressing incompressible data (already compressed or encrypted blocks) costs as much
/// as compressing anything else and saves nothing; like the compression heuristics of
/// btrfs and ZFS, a large IO is first probed with a strided sample of 4 KiB, and stored
/// as is when the sample does not shrink. Mostly-zero or repetitive IOs pass the probe.
fn worth_compressing(comp: &mut Compressor, scratch: &mut Vec<u8>, data: &[u8]) -> Result<bool> {
    if data.len() < PROBE_MIN_BYTES || comp.opt().codec == Codec::None {
        return Ok(true);
    }
    let stride = data.len() / PROBE_SLICES;
    let mut sample = Vec::with_capacity(PROBE_SLICES * PROBE_SLICE);
    for i in 0..PROBE_SLICES {
        // Vary where in a 4 KiB block each slice falls (0, 1536, 3072, 512, ...), so that
        // data laid out per block (a header, then free space) is not sampled at one phase.
        let phase = ((i * 1536) % 4096).min(stride - PROBE_SLICE);
        let off = i * stride + phase;
        sample.extend_from_slice(&data[off..off + PROBE_SLICE]);
    }
    let codec = comp.compress_or_store(&sample, scratch)?;
    Ok(codec != Codec::None && scratch.len() * 100 < sample.len() * 97)
}

/// Compresses one IO (data that does not shrink, or whose probe does not, is stored as is).
pub fn compress_io(comp: &mut Compressor, scratch: &mut Vec<u8>, io: DiffIo) -> Result<StoredIo> {
    let (kind, codec, data) = match io.data {
        IoData::Normal(d) => {
            if !worth_compressing(comp, scratch, &d)? {
                (RecordKind::Normal, Codec::None, d)
            } else {
                match comp.compress_or_store(&d, scratch)? {
                    Codec::None => (RecordKind::Normal, Codec::None, d),
                    c => (RecordKind::Normal, c, Bytes::copy_from_slice(scratch)),
                }
            }
        }
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

/// A worker's codec state: the compressor of the output's option, a scratch buffer and a
/// decompressor (for stored records that must be re-encoded).
#[derive(Debug)]
pub struct Coder {
    /// Compresses with the output's option.
    pub comp: Compressor,
    /// Scratch space of the compressor.
    pub scratch: Vec<u8>,
    /// Decompresses stored records.
    pub dec: Decompressor,
}

impl Coder {
    /// A coder for the output option `opt`.
    pub fn new(opt: CompressOpt) -> Result<Coder> {
        Ok(Coder {
            comp: Compressor::new(opt)?,
            scratch: Vec::new(),
            dec: Decompressor::new(),
        })
    }

    /// Compresses `io` (see [`compress_io`]).
    pub fn compress(&mut self, io: DiffIo) -> Result<StoredIo> {
        compress_io(&mut self.comp, &mut self.scratch, io)
    }
}

/// An item the pipeline turns into a stored record on a worker.
pub trait Encode: Send {
    /// Bytes of work it stands for (to size the batches).
    fn weight(&self) -> usize;
    /// The stored record, encoded with `coder`'s option.
    fn encode(self, coder: &mut Coder) -> Result<StoredIo>;
}

impl Encode for DiffIo {
    fn weight(&self) -> usize {
        match &self.data {
            IoData::Normal(d) => d.len(),
            _ => 0,
        }
    }
    fn encode(self, coder: &mut Coder) -> Result<StoredIo> {
        coder.compress(self)
    }
}

/// Number of compression threads to use by default: the available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

type Batch<T> = (u64, Vec<T>);
type Done = (u64, Result<Vec<StoredIo>>);

/// Encodes `ios` with `opt` on `threads` workers and feeds `sink` in input order.
///
/// With `threads == 0` everything runs on the calling thread.
pub fn compress_ordered<I, T, F>(
    ios: I,
    opt: CompressOpt,
    threads: usize,
    mut sink: F,
) -> Result<()>
where
    I: IntoIterator<Item = Result<T>>,
    T: Encode,
    F: FnMut(StoredIo) -> Result<()> + Send,
{
    if threads == 0 {
        let mut coder = Coder::new(opt)?;
        for io in ios {
            sink(io?.encode(&mut coder)?)?;
        }
        return Ok(());
    }
    let failed = AtomicBool::new(false);
    let (job_tx, job_rx) = sync_channel::<Batch<T>>(threads * 2);
    let job_rx: Arc<Mutex<Receiver<Batch<T>>>> = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Done>(threads * 2 + 2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = done_tx.clone();
            let failed = &failed;
            s.spawn(move || compress_worker(opt, &rx, &tx, failed));
        }
        // Only the workers hold the job receiver now: if they all stop, sends fail.
        drop(job_rx);
        drop(done_tx);
        let failed_w = &failed;
        let writer = s.spawn(move || write_in_order(done_rx, &mut sink, failed_w));
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
            bytes += io.weight();
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

/// A compression worker: takes batches until the job channel closes, sends each batch's
/// compressed IOs (or its error) back with its sequence number.
fn compress_worker<T: Encode>(
    opt: CompressOpt,
    rx: &Mutex<Receiver<Batch<T>>>,
    tx: &SyncSender<Done>,
    failed: &AtomicBool,
) {
    let mut coder = match Coder::new(opt) {
        Ok(c) => c,
        Err(e) => {
            failed.store(true, Ordering::Relaxed);
            let _ = tx.send((u64::MAX, Err(e)));
            return;
        }
    };
    loop {
        let job = match rx.lock() {
            Ok(g) => g.recv(),
            Err(_) => return,
        };
        let Ok((seq, batch)) = job else { return };
        let out: Result<Vec<StoredIo>> =
            batch.into_iter().map(|io| io.encode(&mut coder)).collect();
        if tx.send((seq, out)).is_err() {
            return;
        }
    }
}

/// The writer: hands the workers' results to `sink` in sequence order; after the first
/// error it keeps draining (so that no worker blocks) and returns that error.
fn write_in_order<F>(done_rx: Receiver<Done>, sink: &mut F, failed: &AtomicBool) -> Result<()>
where
    F: FnMut(StoredIo) -> Result<()>,
{
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
                failed.store(true, Ordering::Relaxed);
                first_err = Some(e);
                continue;
            }
        }
        while let Some(v) = pending.remove(&next) {
            next += 1;
            for st in v {
                if let Err(e) = sink(st) {
                    failed.store(true, Ordering::Relaxed);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_stores_incompressible_ios_and_compresses_sparse_ones() {
        let mut comp = Compressor::new(CompressOpt::default()).unwrap();
        let mut scratch = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..64 << 10)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let st = compress_io(
            &mut comp,
            &mut scratch,
            DiffIo::normal(0, Bytes::from(random.clone())),
        )
        .unwrap();
        assert_eq!(st.codec, Codec::None);
        // Random head, zero tail: the strided probe sees the zeros.
        let mut sparse = random.clone();
        sparse[8 << 10..].fill(0);
        let st = compress_io(
            &mut comp,
            &mut scratch,
            DiffIo::normal(0, Bytes::from(sparse)),
        )
        .unwrap();
        assert_eq!(st.codec, Codec::Zstd);
        assert!(st.data.len() < 10 << 10);
        // Per-block layout: 512 random bytes, then zeros, in every 4 KiB block.
        let mut blocks = random;
        for b in blocks.chunks_mut(4096) {
            b[512..].fill(0);
        }
        let st = compress_io(
            &mut comp,
            &mut scratch,
            DiffIo::normal(0, Bytes::from(blocks)),
        )
        .unwrap();
        assert_eq!(
            st.codec,
            Codec::Zstd,
            "block-structured data must pass the probe"
        );
    }

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
