//! A chain of wdiff files sent as the bytes of one transfer: the file itself for one
//! diff, else the sorted merge of all ([`merge_to_sorted`]), written on a blocking thread
//! into the chunks an async call sends ([`ChunkWriter`]). The proxy's wdiff transfers and
//! the archives' replication rounds send diffs this way.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use walb_kernel::diff::convert::{merge_to_sorted, ConvertOpt};
use walb_kernel::diff::merge::DiffStream;
use walb_kernel::wdiff::WdiffReader;
use walb_kernel::Error as KError;

use crate::session::{ChunkWriter, SEND_CHUNK};

/// Decompressed-image cache shared by the readers of one merge (walb-tools: 32 MiB).
const MERGE_CACHE_BYTES: usize = 32 << 20;

/// Opens a queued wdiff for merging, with a bounded image cache.
fn open_for_merge(path: &Path, cache: usize) -> walb_kernel::Result<DiffStream<'static>> {
    let f = crate::persist::open_durable_or_not(path)
        .map_err(|e| KError::io(format!("opening {}", path.display()), e))?;
    let mut r = WdiffReader::new(BufReader::with_capacity(256 << 10, f))?;
    if let WdiffReader::Indexed(ir) = &mut r {
        ir.set_cache_cap(cache);
    }
    Ok(Box::new(r))
}

/// Produces the bytes of one transfer into `tx` (blocking): the file itself for one
/// diff, else the sorted merge of all, oldest first. Returns the bytes produced.
pub fn produce(
    paths: Vec<PathBuf>,
    uuid: [u8; 16],
    opt: ConvertOpt,
    tx: mpsc::Sender<Bytes>,
    spare: std::sync::mpsc::Receiver<BytesMut>,
) -> walb_kernel::Result<u64> {
    let aborted = || {
        KError::io(
            "sending chunks",
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the transfer was aborted"),
        )
    };
    if let [path] = &paths[..] {
        let mut f = crate::persist::open_durable_or_not(path)
            .map_err(|e| KError::io(format!("opening {}", path.display()), e))?;
        let mut total = 0u64;
        loop {
            // A buffer the transport is done with, else a new one.
            let mut buf = spare.try_recv().unwrap_or_default();
            buf.resize(SEND_CHUNK, 0);
            let mut n = 0;
            while n < SEND_CHUNK {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(KError::io(format!("reading {}", path.display()), e)),
                }
            }
            if n == 0 {
                return Ok(total);
            }
            buf.truncate(n);
            total += n as u64;
            tx.blocking_send(buf.freeze()).map_err(|_| aborted())?;
        }
    }
    let cache = (MERGE_CACHE_BYTES / paths.len().max(1)).max(1 << 20);
    let streams = paths
        .iter()
        .map(|p| open_for_merge(p, cache))
        .collect::<walb_kernel::Result<Vec<_>>>()?;
    let (w, _stats) = merge_to_sorted(streams, uuid, ChunkWriter::new(tx), &opt)?;
    w.finish().map_err(|e| KError::io("sending chunks", e))
}
