//! The virtual full scan: the image of a snapshot, streamed from a base image and a diff.
//!
//! [`VirtualFullScan`] reads the base image (or zeros when there is none) and overlays an
//! address-ordered diff stream (typically a [`DiffMerger`](super::merge::DiffMerger) over the
//! diff chain of the snapshot) on the fly; all-zero and discarded ranges read as zeros.
//! Nothing is written anywhere: it implements [`std::io::Read`], so it can feed a hash, a
//! network stream or a file.

use std::io::Read;

use super::io::{DiffIo, IoData};
use super::merge::DiffStream;
use crate::block::LBS;
use crate::error::{Error, IoContext, Result};
use crate::ldev::ReadAt;

/// Streams the full image of `base` + `diff`, `size_lb` logical blocks long.
pub struct VirtualFullScan<'a> {
    base: Option<&'a dyn ReadAt>,
    base_bytes: u64,
    diff: DiffStream<'a>,
    head: Option<DiffIo>,
    size: u64,
    pos: u64,
}

impl<'a> VirtualFullScan<'a> {
    /// `base` may be `None` (an all-zero base). A base shorter than the image reads as zeros
    /// past its end.
    pub fn new(
        base: Option<&'a dyn ReadAt>,
        size_lb: u64,
        diff: DiffStream<'a>,
    ) -> Result<VirtualFullScan<'a>> {
        let base_bytes = match base {
            Some(b) => b.size().ctx(|| "sizing the base image".into())?,
            None => 0,
        };
        Ok(VirtualFullScan {
            base,
            base_bytes,
            diff,
            head: None,
            size: size_lb * u64::from(LBS),
            pos: 0,
        })
    }

    /// Bytes produced so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Total bytes of the image.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn advance_head(&mut self) -> Result<()> {
        let lb = self.pos / u64::from(LBS);
        loop {
            if let Some(h) = &self.head {
                if h.end() > lb {
                    return Ok(());
                }
            }
            match self.diff.next().transpose()? {
                Some(io) => {
                    if io.end() * u64::from(LBS) > self.size {
                        return Err(Error::Invalid(format!(
                            "diff IO at logical block {} of {} blocks lies beyond the image size of {} blocks",
                            io.addr,
                            io.blocks,
                            self.size / u64::from(LBS)
                        )));
                    }
                    self.head = Some(io);
                }
                None => {
                    self.head = None;
                    return Ok(());
                }
            }
        }
    }

    fn fill_from_base(&self, buf: &mut [u8], off: u64) -> Result<()> {
        let avail = self.base_bytes.saturating_sub(off).min(buf.len() as u64) as usize;
        if let (Some(b), true) = (self.base, avail > 0) {
            b.read_exact_at(&mut buf[..avail], off)
                .ctx(|| format!("reading the base image at byte offset {off}"))?;
        }
        buf[avail..].fill(0);
        Ok(())
    }

    /// Fills `buf` with the next bytes of the image; returns how many (0 at the end).
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = (buf.len() as u64).min(self.size - self.pos) as usize;
        let mut done = 0usize;
        while done < want {
            self.advance_head()?;
            let pos = self.pos;
            let rest = (want - done) as u64;
            let out = &mut buf[done..];
            let n = match &self.head {
                Some(h) if h.addr * u64::from(LBS) <= pos => {
                    let end = h.end() * u64::from(LBS);
                    let n = (end - pos).min(rest) as usize;
                    match &h.data {
                        IoData::Normal(d) => {
                            let s = (pos - h.addr * u64::from(LBS)) as usize;
                            out[..n].copy_from_slice(&d[s..s + n]);
                        }
                        IoData::AllZero | IoData::Discard => out[..n].fill(0),
                    }
                    n
                }
                other => {
                    let limit = other
                        .as_ref()
                        .map_or(self.size, |h| h.addr * u64::from(LBS));
                    let n = (limit - pos).min(rest) as usize;
                    self.fill_from_base(&mut out[..n], pos)?;
                    n
                }
            };
            done += n;
            self.pos += n as u64;
        }
        Ok(done)
    }
}

impl Read for VirtualFullScan<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read_chunk(buf).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn overlays_diff_on_base() {
        let base: Vec<u8> = (0..16 * 512).map(|i| (i / 512) as u8 + 1).collect();
        let diff: Vec<DiffIo> = vec![
            DiffIo::normal(2, Bytes::from(vec![0xaa; 1024])),
            DiffIo::all_zero(5, 1),
            DiffIo::discard(7, 2),
            DiffIo::normal(15, Bytes::from(vec![0xbb; 512])),
        ];
        let mut expect = base.clone();
        expect[2 * 512..4 * 512].fill(0xaa);
        expect[5 * 512..6 * 512].fill(0);
        expect[7 * 512..9 * 512].fill(0);
        expect[15 * 512..].fill(0xbb);
        expect.resize(20 * 512, 0); // image larger than the base
        for chunk in [1usize, 100, 512, 4096, 1 << 20] {
            let b: &dyn ReadAt = &base;
            let mut s =
                VirtualFullScan::new(Some(b), 20, Box::new(diff.clone().into_iter().map(Ok)))
                    .unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, expect, "chunk {chunk}");
        }
    }

    #[test]
    fn diff_beyond_size_is_an_error() {
        let mut s = VirtualFullScan::new(
            None,
            4,
            Box::new(vec![Ok(DiffIo::discard(3, 2))].into_iter()),
        )
        .unwrap();
        let mut buf = vec![0u8; 4096];
        assert!(s.read_chunk(&mut buf).is_err());
    }
}
