//! Bridges between the synchronous kernel (readers and writers on a blocking thread) and
//! the asynchronous calls (bulk chunks on a QUIC stream), through bounded channels.
//!
//! - [`blocking`] runs blocking work (device calls, fsyncs, kernel readers) off the async
//!   threads.
//! - [`ChannelReader`] is a `Read` over chunks received by an async task. The stream ends
//!   only on an explicit [`Piece::End`]: a channel closed without it (the receiving task
//!   failed or was dropped) is an error, so a cut transfer can never look complete.
//! - [`ChunkWriter`] is a `Write` that cuts what a kernel writer produces into chunks
//!   of at most [`SEND_CHUNK`] bytes and hands them to an async task. It fails with
//!   `BrokenPipe` once that task stopped listening.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;
use walb_wire::msg::{ErrorCode, WireError};

use super::refusal::refuse;

/// Runs blocking work (device calls, fsyncs, kernel readers) on tokio's blocking pool;
/// a worker that panicked is an internal error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| refuse(ErrorCode::Internal, format!("worker thread failed: {e}")))
}

/// Largest chunk sent (the transport accepts 8 MiB; the contract says at most 4 MiB).
pub const SEND_CHUNK: usize = 4 << 20;
/// Chunks buffered between the two sides.
pub const CHANNEL_DEPTH: usize = 4;

/// What the async side feeds a [`ChannelReader`].
#[derive(Debug)]
pub enum Piece {
    /// More bytes.
    Data(Bytes),
    /// The stream ended normally.
    End,
}

/// A blocking `Read` over pieces sent by an async task.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<Piece>,
    cur: Bytes,
    ended: bool,
}

impl ChannelReader {
    /// A reader of `rx`.
    pub fn new(rx: mpsc::Receiver<Piece>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(b)) => self.cur = b,
                Some(Piece::End) => self.ended = true,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the transfer was aborted before its end",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// A blocking `Write` that sends chunks to an async task.
#[derive(Debug)]
pub struct ChunkWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    /// Bytes written in all.
    pub written: u64,
}

impl ChunkWriter {
    /// A writer into `tx`.
    pub fn new(tx: mpsc::Sender<Bytes>) -> ChunkWriter {
        ChunkWriter {
            tx,
            buf: BytesMut::with_capacity(SEND_CHUNK),
            written: 0,
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(SEND_CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the transfer was aborted"))
    }

    /// Sends what is buffered and ends the writer.
    pub fn finish(mut self) -> io::Result<u64> {
        self.send_buf()?;
        Ok(self.written)
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = SEND_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= SEND_CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are cut at SEND_CHUNK; a flush does not force a short chunk.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_needs_an_explicit_end() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Piece::Data(Bytes::from_static(b"abc")))
            .unwrap();
        tx.try_send(Piece::Data(Bytes::from_static(b"de"))).unwrap();
        tx.try_send(Piece::End).unwrap();
        let mut s = String::new();
        ChannelReader::new(rx).read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcde");

        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Piece::Data(Bytes::from_static(b"abc")))
            .unwrap();
        drop(tx);
        let mut v = Vec::new();
        let e = ChannelReader::new(rx).read_to_end(&mut v).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn writer_cuts_chunks_and_fails_when_nobody_listens() {
        let (tx, mut rx) = mpsc::channel(8);
        let t = std::thread::spawn(move || {
            let mut w = ChunkWriter::new(tx);
            w.write_all(&vec![1u8; SEND_CHUNK + 10]).unwrap();
            w.finish().unwrap()
        });
        let mut sizes = Vec::new();
        while let Some(c) = rx.blocking_recv() {
            sizes.push(c.len());
        }
        assert_eq!(t.join().unwrap(), (SEND_CHUNK + 10) as u64);
        assert_eq!(sizes, vec![SEND_CHUNK, 10]);

        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = ChunkWriter::new(tx);
        let e = w.write_all(&vec![0u8; SEND_CHUNK]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
