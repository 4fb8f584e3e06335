//! Chunk encoding off the sending task: a blocking thread between a producer of raw chunks
//! (a device or log reader, a diff producer) and the call that sends them.
//!
//! ```text
//! producer --Bytes--> encoder thread (checksum, compression: EncodedChunk) --> send task
//!    ^                    |
//!    +---- BytesMut ------+  buffers that are unique again after encoding
//! ```
//!
//! Reading, encoding and sending then overlap on different threads instead of taking
//! turns on one; on two cores this is what lets a transfer approach the wire's speed.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use walb_wire::frame::ChunkEncoder;
use walb_wire::EncodedChunk;

/// Starts the encoder thread: chunks from `rx` are encoded with `enc` and come out of the
/// returned receiver in order; a buffer no longer referenced once encoded (compressed
/// chunks) goes back to the producer through `back` (best effort). The thread ends when
/// `rx` is closed or the returned receiver is dropped; its handle gives an encoding error.
pub fn spawn_encoder(
    mut rx: mpsc::Receiver<Bytes>,
    back: std::sync::mpsc::SyncSender<BytesMut>,
    mut enc: ChunkEncoder,
    depth: usize,
) -> (
    mpsc::Receiver<EncodedChunk>,
    JoinHandle<Result<(), walb_wire::Error>>,
) {
    let (tx, out) = mpsc::channel::<EncodedChunk>(depth.max(1));
    let h = tokio::task::spawn_blocking(move || {
        while let Some(b) = rx.blocking_recv() {
            let c = EncodedChunk::encode(&mut enc, b.clone())?;
            // Unique again unless stored raw (then the chunk keeps it until acknowledged).
            if let Ok(m) = b.try_into_mut() {
                let _ = back.try_send(m);
            }
            if tx.blocking_send(c).is_err() {
                break;
            }
        }
        Ok(())
    });
    (out, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_come_out_in_order_and_compressed_buffers_come_back() {
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<BytesMut>(8);
        let (mut out, h) = spawn_encoder(rx, back_tx, ChunkEncoder::new(Some(1)).unwrap(), 2);
        let feed = tokio::spawn(async move {
            for i in 0..6u8 {
                // Even chunks compress, odd ones do not.
                let mut x = u64::from(i) + 0x9e37_79b9_7f4a_7c15;
                let b: Vec<u8> = if i % 2 == 0 {
                    vec![i; 65536]
                } else {
                    (0..65536)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            (x >> 24) as u8
                        })
                        .collect()
                };
                tx.send(Bytes::from(b)).await.unwrap();
            }
        });
        let mut n = 0;
        while let Some(c) = out.recv().await {
            assert_eq!(c.raw_len(), 65536);
            assert_eq!(c.wire_len() < 65536, n % 2 == 0, "chunk {n}");
            n += 1;
        }
        feed.await.unwrap();
        h.await.unwrap().unwrap();
        assert_eq!(n, 6);
        // The three compressed chunks' buffers came back.
        assert_eq!(back_rx.try_iter().count(), 3);
    }
}
