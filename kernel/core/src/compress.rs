//! The six record codecs of walb-tools, byte-compatible with its wdiff files.
//!
//! Every normal record of a wdiff is compressed on its own, with the codec named by the
//! record's `compression_type` byte. The stream formats are exactly those walb-tools writes
//! and reads:
//!
//! | id | name     | stream format                                                    |
//! |----|----------|------------------------------------------------------------------|
//! | 0  | `none`   | the data as is                                                   |
//! | 1  | `gzip`   | a **zlib** stream (RFC 1950 wrapper, adler32), not a gzip file   |
//! | 2  | `snappy` | raw snappy (no framing), the length varint first                 |
//! | 3  | `lzma`   | an **xz** container (one stream, CRC64 check when walb-tools writes) |
//! | 4  | `lz4`    | one raw LZ4 block (no frame, no size prefix)                     |
//! | 5  | `zstd`   | one zstd frame                                                   |
//!
//! Levels follow walb-tools: `0` means "the codec's default" (zlib 6, xz 6, zstd 3); snappy
//! and lz4 have no level.
//!
//! Writing: every codec can be written. `lzma` is written through liblzma (its bundled
//! source, built static): an xz stream with one LZMA2 filter and a CRC64 check, its
//! dictionary sized to the record; records it does not shrink are stored as `none`, like
//! every codec's.
//!
//! [`Compressor`] and [`Decompressor`] keep per-codec contexts (zstd, zlib, snappy) alive
//! between calls, so the per-record cost of the hot path is the codec work itself.
//! The free functions [`compress`] and [`decompress`] are one-shot conveniences.
//!
//! Decompression never trusts the input: the output is bounded by the expected length,
//! any difference between the decompressed length and the expected one is
//! [`Error::Corrupt`], and no input can make these functions panic.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Location, Result};

/// A record codec, numbered as walb-tools' `WALB_DIFF_CMPR_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// zlib stream (walb-tools calls it "gzip").
    Gzip = 1,
    /// Raw snappy.
    Snappy = 2,
    /// xz container (walb-tools calls it "lzma").
    Lzma = 3,
    /// Raw LZ4 block.
    Lz4 = 4,
    /// zstd frame.
    Zstd = 5,
}

impl Codec {
    /// All codecs, by id.
    pub const ALL: [Codec; 6] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lzma,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec with on-disk id `v`, if any.
    pub fn from_u8(v: u8) -> Option<Codec> {
        Codec::ALL.get(usize::from(v)).copied()
    }

    /// The on-disk id.
    #[inline]
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The walb-tools name: "none", "gzip", "snappy", "lzma", "lz4" or "zstd".
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lzma => "lzma",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The highest level accepted for this codec (0 for codecs without levels).
    pub fn max_level(self) -> u32 {
        match self {
            Codec::Gzip | Codec::Lzma => 9,
            Codec::Zstd => 22,
            Codec::None | Codec::Snappy | Codec::Lz4 => 0,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Codec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Codec> {
        Codec::ALL
            .iter()
            .copied()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown compression type {s:?} (expected none, gzip, snappy, lzma, lz4 or zstd)"
                ))
            })
    }
}

/// A codec with its level: what a writer compresses records with.
///
/// Parses `"zstd"`, `"zstd:3"` and walb-tools' `"type:level:ncpu"` form (the cpu count is
/// validated and ignored here; see [`CompressOpt::parse_with_ncpu`]). Level `0` means the
/// codec's default. Displays as `"type:level"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompressOpt {
    /// The codec.
    pub codec: Codec,
    /// The level (0 = codec default).
    pub level: u32,
}

impl Default for CompressOpt {
    /// zstd at level 1: ours is a throughput-first default (walb-tools' converter uses
    /// snappy; walb-tools itself also compresses zstd at level 1 whatever level is asked).
    fn default() -> Self {
        CompressOpt {
            codec: Codec::Zstd,
            level: 1,
        }
    }
}

impl CompressOpt {
    /// A validated option.
    pub fn new(codec: Codec, level: u32) -> Result<CompressOpt> {
        if level > codec.max_level() {
            return Err(Error::Invalid(format!(
                "compression level {level} is out of range for {codec} (0..={})",
                codec.max_level()
            )));
        }
        Ok(CompressOpt { codec, level })
    }

    /// Stores records uncompressed.
    pub const NONE: CompressOpt = CompressOpt {
        codec: Codec::None,
        level: 0,
    };

    /// Parses `type[:level[:ncpu]]` and also returns the cpu count (default 1, must be > 0).
    pub fn parse_with_ncpu(s: &str) -> Result<(CompressOpt, u32)> {
        let mut it = s.split(':');
        let codec: Codec = it.next().unwrap_or("").parse()?;
        let num = |what: &str, v: Option<&str>| -> Result<Option<u32>> {
            match v {
                None => Ok(None),
                Some(t) => t.parse::<u32>().map(Some).map_err(|_| {
                    Error::Invalid(format!("bad {what} {t:?} in compression option {s:?}"))
                }),
            }
        };
        let level = num("level", it.next())?.unwrap_or(0);
        let ncpu = num("cpu count", it.next())?.unwrap_or(1);
        if it.next().is_some() {
            return Err(Error::Invalid(format!(
                "compression option {s:?} has more than type:level:ncpu"
            )));
        }
        if ncpu == 0 {
            return Err(Error::Invalid(format!(
                "cpu count must be positive in compression option {s:?}"
            )));
        }
        Ok((CompressOpt::new(codec, level)?, ncpu))
    }
}

impl fmt::Display for CompressOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.codec, self.level)
    }
}

impl FromStr for CompressOpt {
    type Err = Error;

    fn from_str(s: &str) -> Result<CompressOpt> {
        CompressOpt::parse_with_ncpu(s).map(|(o, _)| o)
    }
}

const WHAT: &str = "compressed record data";

fn corrupt(detail: impl Into<String>) -> Error {
    Error::corrupt(WHAT, Location::None, detail)
}

fn size_mismatch(codec: Codec, got: usize, want: usize) -> Error {
    corrupt(format!(
        "{codec} data decompresses to {got} bytes, the record says {want}"
    ))
}

/// A reusable compressor for one [`CompressOpt`].
///
/// Holds the zstd and zlib contexts and the snappy encoder between calls.
pub struct Compressor {
    opt: CompressOpt,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    zlib: Option<flate2::Compress>,
    snappy: snap::raw::Encoder,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("opt", &self.opt)
            .finish()
    }
}

impl Compressor {
    /// A compressor for `opt` (the level is validated).
    pub fn new(opt: CompressOpt) -> Result<Compressor> {
        let opt = CompressOpt::new(opt.codec, opt.level)?;
        Ok(Compressor {
            opt,
            zstd: None,
            zlib: None,
            snappy: snap::raw::Encoder::new(),
        })
    }

    /// The option this compressor applies.
    pub fn opt(&self) -> CompressOpt {
        self.opt
    }

    /// Compresses `src` with the configured codec, replacing the contents of `out`.
    pub fn compress(&mut self, src: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        match self.opt.codec {
            Codec::None => out.extend_from_slice(src),
            Codec::Gzip => self.zlib_compress(src, out, usize::MAX)?,
            Codec::Snappy => {
                out.resize(snap::raw::max_compress_len(src.len()), 0);
                let n = self
                    .snappy
                    .compress(src, out)
                    .map_err(|e| Error::Invalid(format!("snappy compression failed: {e}")))?;
                out.truncate(n);
            }
            Codec::Lzma => xz_compress(src, self.opt.level, out)?,
            Codec::Lz4 => {
                out.resize(lz4_flex::block::get_maximum_output_size(src.len()), 0);
                let n = lz4_flex::block::compress_into(src, out)
                    .map_err(|e| Error::Invalid(format!("lz4 compression failed: {e}")))?;
                out.truncate(n);
            }
            Codec::Zstd => {
                let z = self.zstd_ctx()?;
                out.reserve(zstd::zstd_safe::compress_bound(src.len()));
                z.compress_to_buffer(src, out)
                    .map_err(|e| Error::io("zstd compression", e))?;
            }
        }
        Ok(())
    }

    /// Compresses `src` unless that does not make it smaller.
    ///
    /// Returns the codec to record: the configured one with the compressed bytes in `out`,
    /// or [`Codec::None`] with `out` left empty, in which case the caller stores `src`
    /// itself (walb-tools' rule: data that does not shrink is stored uncompressed).
    pub fn compress_or_store(&mut self, src: &[u8], out: &mut Vec<u8>) -> Result<Codec> {
        out.clear();
        let codec = self.opt.codec;
        let fits = match codec {
            Codec::None => false,
            Codec::Lzma => {
                xz_compress(src, self.opt.level, out)?;
                out.len() < src.len()
            }
            Codec::Gzip => {
                // Stop as soon as the output would not be smaller than the input.
                self.zlib_compress(src, out, src.len().saturating_sub(1))?;
                !out.is_empty()
            }
            Codec::Zstd => {
                let limit = src.len().saturating_sub(1);
                let z = self.zstd_ctx()?;
                out.reserve_exact(limit);
                // A too-small destination is zstd's way of saying "does not shrink".
                z.compress_to_buffer(src, out).is_ok() && out.len() < src.len()
            }
            Codec::Snappy | Codec::Lz4 => {
                self.compress(src, out)?;
                out.len() < src.len()
            }
        };
        if fits {
            Ok(codec)
        } else {
            out.clear();
            Ok(Codec::None)
        }
    }

    fn zstd_ctx(&mut self) -> Result<&mut zstd::bulk::Compressor<'static>> {
        if self.zstd.is_none() {
            let level = i32::try_from(self.opt.level).unwrap_or(0);
            let c = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::io("creating a zstd compression context", e))?;
            self.zstd = Some(c);
        }
        self.zstd
            .as_mut()
            .ok_or_else(|| Error::Invalid("zstd context missing".into()))
    }

    /// zlib-compresses into `out`; with a `limit`, leaves `out` empty when the complete
    /// stream would exceed `limit` bytes.
    fn zlib_compress(&mut self, src: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<()> {
        let level = if self.opt.level == 0 {
            6
        } else {
            self.opt.level
        };
        let z = self
            .zlib
            .get_or_insert_with(|| flate2::Compress::new(flate2::Compression::new(level), true));
        z.reset();
        out.clear();
        let bound = src.len() + src.len() / 1000 + 64;
        out.reserve_exact(bound.min(limit));
        loop {
            let before = z.total_in();
            let consumed = usize::try_from(before).unwrap_or(usize::MAX);
            let rest = src.get(consumed..).unwrap_or(&[]);
            let st = z
                .compress_vec(rest, out, flate2::FlushCompress::Finish)
                .map_err(|e| Error::Invalid(format!("zlib compression failed: {e}")))?;
            if st == flate2::Status::StreamEnd {
                if out.len() > limit {
                    out.clear();
                }
                return Ok(());
            }
            if out.len() >= limit {
                out.clear();
                return Ok(());
            }
            let more = (out.capacity() + 4096).min(limit.saturating_sub(out.len()).max(1));
            out.reserve(more);
        }
    }
}

/// A reusable decompressor for every codec.
pub struct Decompressor {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    zlib: Option<flate2::Decompress>,
    snappy: snap::raw::Decoder,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Decompressor::new()
    }
}

impl Decompressor {
    /// A decompressor; codec contexts are created on first use.
    pub fn new() -> Decompressor {
        Decompressor {
            zstd: None,
            zlib: None,
            snappy: snap::raw::Decoder::new(),
        }
    }

    /// Decompresses `src` (stored with `codec`) into `out`, replacing its contents.
    ///
    /// The result must be exactly `orig_len` bytes, otherwise [`Error::Corrupt`] (with
    /// [`Location::None`]; callers re-locate it).
    pub fn decompress(
        &mut self,
        codec: Codec,
        src: &[u8],
        orig_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        out.clear();
        match codec {
            Codec::None => {
                if src.len() != orig_len {
                    return Err(size_mismatch(codec, src.len(), orig_len));
                }
                out.extend_from_slice(src);
            }
            Codec::Gzip => {
                let z = self
                    .zlib
                    .get_or_insert_with(|| flate2::Decompress::new(true));
                z.reset(true);
                out.reserve_exact(orig_len);
                let st = z
                    .decompress_vec(src, out, flate2::FlushDecompress::Finish)
                    .map_err(|e| corrupt(format!("bad zlib stream: {e}")))?;
                if st != flate2::Status::StreamEnd {
                    return Err(corrupt(format!(
                        "zlib stream does not end within {orig_len} bytes of output \
                         ({} of {} input bytes used)",
                        z.total_in(),
                        src.len()
                    )));
                }
                if out.len() != orig_len {
                    return Err(size_mismatch(codec, out.len(), orig_len));
                }
            }
            Codec::Snappy => {
                let n = snap::raw::decompress_len(src)
                    .map_err(|e| corrupt(format!("bad snappy data: {e}")))?;
                if n != orig_len {
                    return Err(size_mismatch(codec, n, orig_len));
                }
                out.resize(orig_len, 0);
                let got = self
                    .snappy
                    .decompress(src, out)
                    .map_err(|e| corrupt(format!("bad snappy data: {e}")))?;
                if got != orig_len {
                    return Err(size_mismatch(codec, got, orig_len));
                }
            }
            Codec::Lzma => xz_decompress(src, orig_len, out)?,
            Codec::Lz4 => {
                out.resize(orig_len, 0);
                let got = lz4_flex::block::decompress_into(src, out)
                    .map_err(|e| corrupt(format!("bad lz4 block: {e}")))?;
                if got != orig_len {
                    return Err(size_mismatch(codec, got, orig_len));
                }
            }
            Codec::Zstd => {
                if self.zstd.is_none() {
                    let d = zstd::bulk::Decompressor::new()
                        .map_err(|e| Error::io("creating a zstd decompression context", e))?;
                    self.zstd = Some(d);
                }
                let Some(z) = self.zstd.as_mut() else {
                    return Err(Error::Invalid("zstd context missing".into()));
                };
                out.reserve_exact(orig_len);
                z.decompress_to_buffer(src, out)
                    .map_err(|e| corrupt(format!("bad zstd frame: {e}")))?;
                if out.len() != orig_len {
                    return Err(size_mismatch(codec, out.len(), orig_len));
                }
            }
        }
        Ok(())
    }
}

/// One-shot compression of `src` with `codec` at `level`, replacing the contents of `out`.
///
/// Prefer a [`Compressor`] in loops.
pub fn compress(codec: Codec, level: u32, src: &[u8], out: &mut Vec<u8>) -> Result<()> {
    Compressor::new(CompressOpt { codec, level })?.compress(src, out)
}

/// One-shot decompression; the result must be exactly `orig_len` bytes.
///
/// Prefer a [`Decompressor`] in loops.
pub fn decompress(codec: Codec, src: &[u8], orig_len: usize, out: &mut Vec<u8>) -> Result<()> {
    Decompressor::new().decompress(codec, src, orig_len, out)
}

/// The xz dictionary for a record of `len` bytes: the record rounded up to a power of
/// two, between 4 KiB and 64 MiB (a preset's 8 MiB dictionary costs its set-up on every
/// record and gains nothing on a smaller one).
fn xz_dict_size(len: usize) -> u32 {
    let want = len.clamp(4 << 10, 64 << 20).next_power_of_two();
    u32::try_from(want).unwrap_or(64 << 20)
}

/// One record as an xz stream (LZMA2, CRC64 check, as walb-tools writes), into `out`.
fn xz_compress(src: &[u8], level: u32, out: &mut Vec<u8>) -> Result<()> {
    use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};
    let fail = |e: liblzma::stream::Error| Error::Invalid(format!("lzma (xz) compression: {e}"));
    let preset = if level == 0 { 6 } else { level.min(9) };
    let mut opts = LzmaOptions::new_preset(preset).map_err(fail)?;
    opts.dict_size(xz_dict_size(src.len()));
    let mut filters = Filters::new();
    filters.lzma2(&opts);
    let mut s = Stream::new_stream_encoder(&filters, Check::Crc64).map_err(fail)?;
    out.clear();
    out.reserve(src.len() / 2 + 256);
    loop {
        let done = usize::try_from(s.total_in())
            .unwrap_or(src.len())
            .min(src.len());
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        match s
            .process_vec(&src[done..], out, Action::Finish)
            .map_err(fail)?
        {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::GetCheck => {}
            Status::MemNeeded => {
                return Err(Error::Invalid("lzma (xz) compression: memory limit".into()))
            }
        }
    }
}

/// One xz record back into exactly `orig_len` bytes: more, fewer, a truncated or a bad
/// stream are corrupt data, never a panic (the C decoder checks its own input).
fn xz_decompress(src: &[u8], orig_len: usize, out: &mut Vec<u8>) -> Result<()> {
    use liblzma::stream::{Action, Status, Stream};
    /// Enough for any dictionary walb-tools or this writer uses; a stream asking for
    /// more is refused, not obeyed.
    const MEMLIMIT: u64 = 256 << 20;
    let bad = |e: String| corrupt(format!("bad xz (lzma) stream: {e}"));
    let mut s = Stream::new_stream_decoder(MEMLIMIT, 0).map_err(|e| bad(e.to_string()))?;
    out.clear();
    // One byte of room past the record shows an overlong stream.
    out.reserve_exact(orig_len + 1);
    loop {
        let done = usize::try_from(s.total_in())
            .unwrap_or(src.len())
            .min(src.len());
        let before = (s.total_in(), s.total_out());
        if out.len() > orig_len {
            return Err(size_mismatch(Codec::Lzma, out.len(), orig_len));
        }
        match s
            .process_vec(&src[done..], out, Action::Finish)
            .map_err(|e| bad(e.to_string()))?
        {
            Status::StreamEnd => break,
            Status::MemNeeded => return Err(bad("it needs more memory than allowed".into())),
            Status::Ok | Status::GetCheck => {
                if (s.total_in(), s.total_out()) == before {
                    if out.len() == out.capacity() {
                        return Err(size_mismatch(Codec::Lzma, out.len(), orig_len));
                    }
                    return Err(bad("truncated".into()));
                }
            }
        }
    }
    if out.len() != orig_len {
        return Err(size_mismatch(Codec::Lzma, out.len(), orig_len));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible: runs of a few values with some noise.
        (0..n)
            .map(|i| {
                if (i / 512) % 3 == 0 {
                    0
                } else {
                    ((i * 7) % 13) as u8
                }
            })
            .collect()
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn names_ids_and_parsing() {
        for (i, c) in Codec::ALL.iter().enumerate() {
            assert_eq!(Codec::from_u8(i as u8), Some(*c));
            assert_eq!(c.as_u8() as usize, i);
            assert_eq!(c.name().parse::<Codec>().unwrap(), *c);
        }
        assert_eq!(Codec::from_u8(6), None);
        assert!("xz".parse::<Codec>().is_err());

        let o: CompressOpt = "zstd:3".parse().unwrap();
        assert_eq!(
            o,
            CompressOpt {
                codec: Codec::Zstd,
                level: 3
            }
        );
        assert_eq!(o.to_string(), "zstd:3");
        let (o, n) = CompressOpt::parse_with_ncpu("snappy:0:4").unwrap();
        assert_eq!((o.codec, o.level, n), (Codec::Snappy, 0, 4));
        let o: CompressOpt = "gzip".parse().unwrap();
        assert_eq!((o.codec, o.level), (Codec::Gzip, 0));
        assert!("gzip:10".parse::<CompressOpt>().is_err());
        assert!("snappy:1".parse::<CompressOpt>().is_err());
        assert!("zstd:x".parse::<CompressOpt>().is_err());
        assert!("zstd:1:0".parse::<CompressOpt>().is_err());
        assert!("zstd:1:1:1".parse::<CompressOpt>().is_err());
        assert!("".parse::<CompressOpt>().is_err());
        assert_eq!(CompressOpt::default().codec, Codec::Zstd);
    }

    #[test]
    fn every_codec_round_trips() {
        let mut dec = Decompressor::new();
        for codec in Codec::ALL {
            let mut c = Compressor::new(CompressOpt { codec, level: 0 }).unwrap();
            for data in [
                sample(512),
                sample(64 * 1024),
                noise(4096),
                vec![0u8; 1 << 20],
            ] {
                let mut z = Vec::new();
                c.compress(&data, &mut z).unwrap();
                let mut back = Vec::new();
                dec.decompress(codec, &z, data.len(), &mut back).unwrap();
                assert_eq!(back, data, "{codec}");
                // Wrong expected length is corrupt, both ways.
                let e = dec
                    .decompress(codec, &z, data.len() + 512, &mut back)
                    .unwrap_err();
                assert!(e.is_corrupt(), "{codec}: {e}");
                let e = dec
                    .decompress(codec, &z, data.len() - 1, &mut back)
                    .unwrap_err();
                assert!(e.is_corrupt(), "{codec}: {e}");
            }
        }
    }

    #[test]
    fn xz_records_are_compressed_and_come_back() {
        let s = sample(64 << 10);
        let mut c = Compressor::new(CompressOpt {
            codec: Codec::Lzma,
            level: 0,
        })
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(c.compress_or_store(&s, &mut out).unwrap(), Codec::Lzma);
        assert!(out.len() < s.len() / 2, "{} of {}", out.len(), s.len());
        let mut back = Vec::new();
        decompress(Codec::Lzma, &out, s.len(), &mut back).unwrap();
        assert_eq!(back, s);
        // A record size it does not match is corrupt, both ways.
        assert!(decompress(Codec::Lzma, &out, s.len() - 1, &mut back).is_err());
        assert!(decompress(Codec::Lzma, &out, s.len() + 1, &mut back).is_err());
        assert!(decompress(Codec::Lzma, &out[..out.len() / 2], s.len(), &mut back).is_err());
    }

    #[test]
    fn compress_or_store_falls_back_to_none() {
        for codec in Codec::ALL {
            let mut c = Compressor::new(CompressOpt { codec, level: 0 }).unwrap();
            let mut out = Vec::new();
            let n = noise(8192);
            assert_eq!(c.compress_or_store(&n, &mut out).unwrap(), Codec::None);
            assert!(out.is_empty());
            let s = sample(8192);
            let got = c.compress_or_store(&s, &mut out).unwrap();
            if codec == Codec::None {
                assert_eq!(got, Codec::None);
            } else {
                assert_eq!(got, codec);
                assert!(out.len() < s.len());
                let mut back = Vec::new();
                decompress(codec, &out, s.len(), &mut back).unwrap();
                assert_eq!(back, s);
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut dec = Decompressor::new();
        let mut out = Vec::new();
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0xff; 7], noise(300)];
        // Truncated and bit-flipped versions of valid streams.
        for codec in Codec::ALL {
            let mut z = Vec::new();
            compress(codec, 0, &sample(4096), &mut z).unwrap();
            for cut in [0, 1, z.len() / 2, z.len().saturating_sub(1)] {
                inputs.push(z[..cut].to_vec());
            }
            for i in (0..z.len()).step_by(3) {
                let mut f = z.clone();
                f[i] ^= 0x5a;
                inputs.push(f);
            }
        }
        for input in &inputs {
            for codec in Codec::ALL {
                for len in [0, 512, 4096] {
                    let _ = dec.decompress(codec, input, len, &mut out);
                }
            }
        }
    }

    #[test]
    fn levels_are_honoured() {
        let data = sample(1 << 16);
        for (codec, level) in [(Codec::Gzip, 1), (Codec::Gzip, 9), (Codec::Zstd, 19)] {
            let mut z = Vec::new();
            compress(codec, level, &data, &mut z).unwrap();
            let mut back = Vec::new();
            decompress(codec, &z, data.len(), &mut back).unwrap();
            assert_eq!(back, data);
        }
    }
}
