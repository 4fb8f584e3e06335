//! Framing: how messages and bulk chunks are laid on a QUIC stream. Pure, no IO.
//!
//! Every frame is a 5-byte header, `kind: u8` then `len: u32` little-endian, followed by
//! `len` payload bytes. Lengths are checked against a configured maximum *before* anything
//! is allocated, so a peer cannot make us reserve memory it never sends.
//!
//! | kind | payload |
//! |---|---|
//! | 0 `Hello` | postcard [`crate::msg::Hello`] or [`crate::msg::Welcome`] (first stream only) |
//! | 1 `Msg` | postcard [`crate::msg::Message`] |
//! | 2 `Chunk` | [`ChunkHeader`] (16 bytes) then the chunk's bytes, zstd-compressed or raw |
//! | 3 `End` | end of a bulk: `chunks: u64`, `bytes: u64` (raw), little-endian |
//!
//! A chunk header is `codec: u8` (0 raw, 1 zstd), three zero bytes, `raw_len: u32` and
//! `checksum: u64`, the XXH3-64 of the *uncompressed* bytes, so the check covers the
//! decompressor too. The `End` frame's counts catch lost or extra chunks.

use bytes::Bytes;

/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 5;
/// Length of a chunk header inside a chunk frame.
pub const CHUNK_HEADER_LEN: usize = 16;
/// Length of an `End` frame's payload.
pub const END_LEN: usize = 16;

/// The kinds of frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Negotiation (first stream of a connection).
    Hello = 0,
    /// A control message.
    Msg = 1,
    /// A bulk chunk.
    Chunk = 2,
    /// The end of a bulk.
    End = 3,
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: FrameKind,
    /// Payload length.
    pub len: u32,
}

impl FrameHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0] = self.kind as u8;
        b[1..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Parses a header, refusing unknown kinds and payloads longer than `len_max`.
    pub fn parse(b: [u8; FRAME_HEADER_LEN], len_max: u32) -> Result<Self, FrameError> {
        let kind = match b[0] {
            0 => FrameKind::Hello,
            1 => FrameKind::Msg,
            2 => FrameKind::Chunk,
            3 => FrameKind::End,
            k => return Err(FrameError::UnknownKind(k)),
        };
        let len = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        if len > len_max {
            return Err(FrameError::TooLarge { len, len_max });
        }
        Ok(Self { kind, len })
    }
}

/// How a chunk's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkCodec {
    /// As is.
    Raw = 0,
    /// zstd.
    Zstd = 1,
}

/// The header of a chunk frame's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// How the bytes are stored.
    pub codec: ChunkCodec,
    /// Uncompressed length.
    pub raw_len: u32,
    /// XXH3-64 of the uncompressed bytes.
    pub checksum: u64,
}

impl ChunkHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[0] = self.codec as u8;
        b[4..8].copy_from_slice(&self.raw_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// Parses the header at the start of a chunk payload; `raw_len_max` bounds the
    /// uncompressed size.
    pub fn parse(payload: &[u8], raw_len_max: u32) -> Result<Self, FrameError> {
        let b = payload
            .get(..CHUNK_HEADER_LEN)
            .ok_or(FrameError::ShortChunk(payload.len()))?;
        let codec = match b[0] {
            0 => ChunkCodec::Raw,
            1 => ChunkCodec::Zstd,
            c => return Err(FrameError::UnknownCodec(c)),
        };
        if b[1..4] != [0, 0, 0] {
            return Err(FrameError::UnknownCodec(b[0]));
        }
        let raw_len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if raw_len > raw_len_max {
            return Err(FrameError::TooLarge {
                len: raw_len,
                len_max: raw_len_max,
            });
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[8..16]);
        Ok(Self {
            codec,
            raw_len,
            checksum: u64::from_le_bytes(c),
        })
    }
}

/// The checksum of chunk data.
pub fn checksum(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// Reusable compression state for chunks.
pub struct ChunkEncoder {
    level: Option<i32>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    buf: Vec<u8>,
}

impl ChunkEncoder {
    /// An encoder compressing at zstd `level`, or storing raw if `None`.
    pub fn new(level: Option<i32>) -> Result<Self, FrameError> {
        let zstd = match level {
            Some(l) => Some(zstd::bulk::Compressor::new(l).map_err(FrameError::Compress)?),
            None => None,
        };
        Ok(Self {
            level,
            zstd,
            buf: Vec::new(),
        })
    }

    /// The zstd level, if compressing.
    pub fn level(&self) -> Option<i32> {
        self.level
    }

    /// Encodes one chunk; returns the whole frame payload's two parts: the chunk header
    /// and the stored bytes (borrowed from `data` when raw, from the encoder otherwise).
    /// Data that does not shrink is stored raw.
    pub fn encode<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> Result<([u8; CHUNK_HEADER_LEN], &'a [u8]), FrameError> {
        let raw_len = u32::try_from(data.len()).map_err(|_| FrameError::TooLarge {
            len: u32::MAX,
            len_max: u32::MAX - 1,
        })?;
        let sum = checksum(data);
        if let Some(z) = self.zstd.as_mut() {
            self.buf.clear();
            self.buf
                .reserve(zstd::zstd_safe::compress_bound(data.len()));
            let n = z
                .compress_to_buffer(data, &mut self.buf)
                .map_err(FrameError::Compress)?;
            if n < data.len() {
                let h = ChunkHeader {
                    codec: ChunkCodec::Zstd,
                    raw_len,
                    checksum: sum,
                };
                return Ok((h.encode(), &self.buf[..n]));
            }
        }
        let h = ChunkHeader {
            codec: ChunkCodec::Raw,
            raw_len,
            checksum: sum,
        };
        Ok((h.encode(), data))
    }
}

/// Reusable decompression state for chunks.
pub struct ChunkDecoder {
    zstd: zstd::bulk::Decompressor<'static>,
    raw_len_max: u32,
}

impl ChunkDecoder {
    /// A decoder accepting chunks of at most `raw_len_max` uncompressed bytes.
    pub fn new(raw_len_max: u32) -> Result<Self, FrameError> {
        Ok(Self {
            zstd: zstd::bulk::Decompressor::new().map_err(FrameError::Compress)?,
            raw_len_max,
        })
    }

    /// Decodes a chunk frame's payload (header and stored bytes), checking sizes and the
    /// checksum.
    pub fn decode(&mut self, payload: Bytes) -> Result<Bytes, FrameError> {
        let h = ChunkHeader::parse(&payload, self.raw_len_max)?;
        let stored = payload.slice(CHUNK_HEADER_LEN..);
        let data = match h.codec {
            ChunkCodec::Raw => {
                if stored.len() != h.raw_len as usize {
                    return Err(FrameError::BadLength {
                        want: h.raw_len,
                        got: stored.len(),
                    });
                }
                stored
            }
            ChunkCodec::Zstd => {
                // A zstd frame that states its size must state ours: a lie is refused
                // before the output is allocated.
                if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&stored) {
                    if size != u64::from(h.raw_len) {
                        return Err(FrameError::BadLength {
                            want: h.raw_len,
                            got: usize::try_from(size).unwrap_or(usize::MAX),
                        });
                    }
                }
                let mut out = Vec::with_capacity(h.raw_len as usize);
                let n = self
                    .zstd
                    .decompress_to_buffer(&stored, &mut out)
                    .map_err(|e| FrameError::Decompress(e.to_string()))?;
                if n != h.raw_len as usize {
                    return Err(FrameError::BadLength {
                        want: h.raw_len,
                        got: n,
                    });
                }
                Bytes::from(out)
            }
        };
        if checksum(&data) != h.checksum {
            return Err(FrameError::Checksum);
        }
        Ok(data)
    }
}

/// Encodes an `End` frame's payload.
pub fn encode_end(chunks: u64, bytes: u64) -> [u8; END_LEN] {
    let mut b = [0u8; END_LEN];
    b[..8].copy_from_slice(&chunks.to_le_bytes());
    b[8..].copy_from_slice(&bytes.to_le_bytes());
    b
}

/// Parses an `End` frame's payload into `(chunks, bytes)`.
pub fn parse_end(payload: &[u8]) -> Result<(u64, u64), FrameError> {
    if payload.len() != END_LEN {
        return Err(FrameError::BadLength {
            want: END_LEN as u32,
            got: payload.len(),
        });
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&payload[..8]);
    b.copy_from_slice(&payload[8..]);
    Ok((u64::from_le_bytes(a), u64::from_le_bytes(b)))
}

/// A frame that breaks the rules.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A length disagrees with the data.
    #[error("bad length: header says {want} bytes, got {got}")]
    BadLength {
        /// Announced.
        want: u32,
        /// Found.
        got: usize,
    },
    /// A chunk's checksum does not match its data.
    #[error("chunk checksum mismatch")]
    Checksum,
    /// The compressor failed.
    #[error("compression failed: {0}")]
    Compress(std::io::Error),
    /// A chunk does not decompress.
    #[error("chunk does not decompress: {0}")]
    Decompress(String),
    /// A chunk payload shorter than its header.
    #[error("chunk payload of {0} bytes is shorter than its header")]
    ShortChunk(usize),
    /// A frame or chunk larger than allowed.
    #[error("frame of {len} bytes is larger than the maximum {len_max}")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// Allowed maximum.
        len_max: u32,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({got} of {want} bytes)")]
    Truncated {
        /// Expected bytes.
        want: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// An unknown chunk codec.
    #[error("unknown chunk codec {0}")]
    UnknownCodec(u8),
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trips(kind in 0u8..4, len in 0u32..1000) {
            let h = FrameHeader::parse([kind, 0, 0, 0, 0], 10).unwrap();
            let h = FrameHeader { len, ..h };
            prop_assert_eq!(FrameHeader::parse(h.encode(), 1000).unwrap(), h);
        }

        #[test]
        fn chunks_round_trip(data in proptest::collection::vec(0u8..4, 0..5000), level in proptest::option::of(-5i32..4)) {
            let mut enc = ChunkEncoder::new(level).unwrap();
            let (h, stored) = enc.encode(&data).unwrap();
            let mut payload = h.to_vec();
            payload.extend_from_slice(stored);
            let mut dec = ChunkDecoder::new(1 << 20).unwrap();
            prop_assert_eq!(&dec.decode(Bytes::from(payload)).unwrap()[..], &data[..]);
        }

        #[test]
        fn garbage_chunks_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut dec = ChunkDecoder::new(1 << 16).unwrap();
            let _ = dec.decode(Bytes::from(payload));
        }
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let h = FrameHeader {
            kind: FrameKind::Msg,
            len: 1001,
        };
        assert!(matches!(
            FrameHeader::parse(h.encode(), 1000),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            FrameHeader::parse([9, 0, 0, 0, 0], 1000),
            Err(FrameError::UnknownKind(9))
        ));
    }

    /// A zstd chunk whose header states another size than its data: larger (with or
    /// without the size in the zstd frame), smaller.
    #[test]
    fn zstd_chunks_lying_about_their_size_are_refused() {
        let data = vec![3u8; 10_000];
        let mut enc = ChunkEncoder::new(Some(1)).unwrap();
        let (h, stored) = enc.encode(&data).unwrap();
        let stored = stored.to_vec();
        let mut dec = ChunkDecoder::new(1 << 20).unwrap();
        for lie in [9_999u32, 10_001, 1 << 20] {
            let mut head = ChunkHeader::parse(&h, 1 << 20).unwrap();
            head.raw_len = lie;
            let mut payload = head.encode().to_vec();
            payload.extend_from_slice(&stored);
            let e = dec.decode(Bytes::from(payload)).unwrap_err();
            assert!(
                matches!(e, FrameError::BadLength { want, got: 10_000 } if want == lie),
                "{lie}: {e}"
            );
        }
        // A zstd frame that does not state its size is checked after decompression.
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        z.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
            .unwrap();
        let bare = z.compress(&data).unwrap();
        let head = ChunkHeader {
            codec: ChunkCodec::Zstd,
            raw_len: 20_000,
            checksum: checksum(&data),
        };
        let mut payload = head.encode().to_vec();
        payload.extend_from_slice(&bare);
        let e = dec.decode(Bytes::from(payload)).unwrap_err();
        assert!(matches!(e, FrameError::BadLength { .. }), "{e}");
    }

    #[test]
    fn flipped_chunk_is_refused() {
        let data = vec![7u8; 4096];
        let mut enc = ChunkEncoder::new(None).unwrap();
        let (h, stored) = enc.encode(&data).unwrap();
        let mut payload = h.to_vec();
        payload.extend_from_slice(stored);
        payload[100] ^= 1;
        let mut dec = ChunkDecoder::new(1 << 20).unwrap();
        assert!(matches!(
            dec.decode(Bytes::from(payload)),
            Err(FrameError::Checksum)
        ));
        // A compressed chunk announcing more than the maximum is refused before work.
        let mut enc = ChunkEncoder::new(Some(1)).unwrap();
        let (h, stored) = enc.encode(&data).unwrap();
        let mut payload = h.to_vec();
        payload.extend_from_slice(stored);
        let mut dec = ChunkDecoder::new(1024).unwrap();
        assert!(matches!(
            dec.decode(Bytes::from(payload)),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
