//! wlog files: a WalB log extracted from a log device.
//!
//! ```text
//! header (4096 bytes, checksum over all of it with salt 0):
//!   u16 sector_type=4 | u16 version=2 | u16 header_size=4096 | u16 reserved
//!   | u32 checksum | u32 log_checksum_salt | u32 logical_bs=512 | u32 physical_bs
//!   | u8 uuid[16] | u64 begin_lsid | u64 end_lsid
//! then log packs exactly as on the device (header block + data blocks, lsids contiguous
//! from begin_lsid), then an end marker block (no records, lsid u64::MAX).
//! ```
//!
//! [`WlogReader`] streams packs with every header and data checksum verified; a file that
//! stops before its end marker yields [`Error::Incomplete`].
//! [`WlogWriter`] produces the same format. [`write_listing`] prints the listing of
//! walb-tools' `wlog-show`.

use std::io::{Read, Write};

use bytes::Bytes;

use crate::block::{le, Pbs, LBS};
use crate::checksum::checksum;
use crate::error::{Error, IoContext, Location, Result};
use crate::logpack::{LogPack, LogPackHeader, RecordKind, INVALID_LSID};

/// Sector type of the wlog file header.
pub const SECTOR_TYPE_WALBLOG_HEADER: u16 = 0x0004;
/// Log format version.
pub const WALB_LOG_VERSION: u16 = 2;
/// Size of the wlog file header.
pub const WLOG_HEADER_BYTES: usize = 4096;

/// The wlog file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WlogHeader {
    /// Checksum salt of the log (from the device superblock).
    pub salt: u32,
    /// Physical block size of the log.
    pub pbs: Pbs,
    /// uuid of the log sequence (from the device superblock).
    pub uuid: [u8; 16],
    /// lsid of the first pack.
    pub begin_lsid: u64,
    /// End lsid as requested at extraction (may be past the real end, often u64::MAX).
    pub end_lsid: u64,
}

impl WlogHeader {
    /// Parses and validates the 4096-byte header.
    pub fn parse(b: &[u8]) -> Result<WlogHeader> {
        const WHAT: &str = "wlog file header";
        let at = Location::Offset(0);
        if b.len() < WLOG_HEADER_BYTES {
            return Err(Error::incomplete(
                WHAT,
                at,
                WLOG_HEADER_BYTES as u64,
                b.len() as u64,
            ));
        }
        let b = &b[..WLOG_HEADER_BYTES];
        let bad = |d: String| Error::corrupt(WHAT, at, d);
        let st = le::u16(b, 0);
        if st != SECTOR_TYPE_WALBLOG_HEADER {
            return Err(bad(format!(
                "sector type {st:#06x}, expected {SECTOR_TYPE_WALBLOG_HEADER:#06x}"
            )));
        }
        let ver = le::u16(b, 2);
        if ver != WALB_LOG_VERSION {
            return Err(bad(format!("version {ver}, expected {WALB_LOG_VERSION}")));
        }
        let hs = le::u16(b, 4);
        if usize::from(hs) != WLOG_HEADER_BYTES {
            return Err(bad(format!(
                "header size {hs}, expected {WLOG_HEADER_BYTES}"
            )));
        }
        if !crate::checksum::verifies(b, 0) {
            return Err(bad(format!(
                "checksum {:08x} does not verify",
                le::u32(b, 8)
            )));
        }
        let lbs = le::u32(b, 16);
        if lbs != LBS {
            return Err(bad(format!("logical block size {lbs}, expected {LBS}")));
        }
        let pbs = Pbs::new(le::u32(b, 20)).map_err(|e| bad(e.to_string()))?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[24..40]);
        let begin_lsid = le::u64(b, 40);
        let end_lsid = le::u64(b, 48);
        if begin_lsid > end_lsid {
            return Err(bad(format!(
                "begin lsid {begin_lsid} is after end lsid {end_lsid}"
            )));
        }
        Ok(WlogHeader {
            salt: le::u32(b, 12),
            pbs,
            uuid,
            begin_lsid,
            end_lsid,
        })
    }

    /// Serialises into the 4096-byte header with its checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; WLOG_HEADER_BYTES];
        le::put_u16(&mut b, 0, SECTOR_TYPE_WALBLOG_HEADER);
        le::put_u16(&mut b, 2, WALB_LOG_VERSION);
        le::put_u16(&mut b, 4, WLOG_HEADER_BYTES as u16);
        le::put_u32(&mut b, 12, self.salt);
        le::put_u32(&mut b, 16, LBS);
        le::put_u32(&mut b, 20, self.pbs.get());
        b[24..40].copy_from_slice(&self.uuid);
        le::put_u64(&mut b, 40, self.begin_lsid);
        le::put_u64(&mut b, 48, self.end_lsid);
        let c = checksum(&b, 0);
        le::put_u32(&mut b, 8, c);
        b
    }
}

/// Bytes [`read_exact_or_short`] reserves at most before reading.
const READ_RESERVE_MAX: usize = 16 << 20;

/// Reads exactly `n` bytes or reports how many were there.
pub(crate) fn read_exact_or_short<R: Read>(
    r: &mut R,
    buf: &mut Vec<u8>,
    n: usize,
) -> std::io::Result<usize> {
    buf.clear();
    // Reserve what the header announces up to a bound, and beyond it grow as bytes arrive:
    // a corrupt size cannot make us allocate much more than the input holds, and a valid
    // pack is read without the copies of a growing buffer.
    buf.reserve_exact(n.min(READ_RESERVE_MAX));
    let got = r.take(n as u64).read_to_end(buf)?;
    Ok(got)
}

/// Totals of a wlog, as `wlog-show` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WlogStats {
    /// lsid after the last pack.
    pub end_lsid: u64,
    /// Number of packs (end marker excluded).
    pub n_packs: u64,
    /// Logical blocks of normal IOs.
    pub normal_lb: u64,
    /// Logical blocks of discards.
    pub discard_lb: u64,
    /// Physical blocks of padding.
    pub padding_pb: u64,
}

impl WlogStats {
    /// Accounts one pack.
    pub fn add(&mut self, h: &LogPackHeader) {
        self.n_packs += 1;
        self.end_lsid = h.next_lsid();
        for r in &h.records {
            match r.kind() {
                RecordKind::Normal => self.normal_lb += u64::from(r.io_size),
                RecordKind::Discard => self.discard_lb += u64::from(r.io_size),
                RecordKind::Padding => self.padding_pb += r.data_pb(h.pbs),
            }
        }
    }
}

/// Streams the packs of a wlog file.
pub struct WlogReader<R> {
    inner: R,
    header: WlogHeader,
    next_lsid: u64,
    offset: u64,
    done: bool,
    verify_data: bool,
    buf: Vec<u8>,
    /// A pack data buffer given back ([`WlogReader::recycle`]), for the next pack.
    spare: Vec<u8>,
}

impl<R: Read> WlogReader<R> {
    /// Reads and validates the file header.
    pub fn new(mut inner: R) -> Result<WlogReader<R>> {
        let mut buf = Vec::with_capacity(WLOG_HEADER_BYTES);
        let got = read_exact_or_short(&mut inner, &mut buf, WLOG_HEADER_BYTES)
            .ctx(|| "reading wlog header".into())?;
        if got < WLOG_HEADER_BYTES {
            return Err(Error::incomplete(
                "wlog file header",
                Location::Offset(0),
                WLOG_HEADER_BYTES as u64,
                got as u64,
            ));
        }
        let header = WlogHeader::parse(&buf)?;
        Ok(WlogReader {
            inner,
            next_lsid: header.begin_lsid,
            header,
            offset: WLOG_HEADER_BYTES as u64,
            done: false,
            verify_data: true,
            buf,
            spare: Vec::new(),
        })
    }

    /// Whether data checksums are verified (default true).
    pub fn verify_data(mut self, on: bool) -> Self {
        self.verify_data = on;
        self
    }

    /// The file header.
    pub fn header(&self) -> &WlogHeader {
        &self.header
    }

    /// lsid of the next pack (after the last one returned).
    pub fn next_lsid(&self) -> u64 {
        self.next_lsid
    }

    /// Gives back a pack read from this reader: when nothing else holds its data, the next
    /// pack is read into the same buffer. A caller that looks at one pack at a time saves an
    /// allocation, and the page faults of fresh memory, per pack.
    pub fn recycle(&mut self, pack: LogPack) {
        if let Ok(mut data) = pack.data.try_into_mut() {
            data.clear(); // nothing to move when it becomes a vector
            self.spare = data.into();
        }
    }

    /// Reads the next pack; `None` after the end marker.
    pub fn next_pack(&mut self) -> Result<Option<LogPack>> {
        if self.done {
            return Ok(None);
        }
        let pbs = self.header.pbs;
        let lsid = self.next_lsid;
        let got = read_exact_or_short(&mut self.inner, &mut self.buf, pbs.bytes())
            .ctx(|| format!("reading wlog pack header at byte offset {}", self.offset))?;
        if got < pbs.bytes() {
            self.done = true;
            return Err(Error::incomplete(
                "wlog pack header (the end marker is missing)",
                Location::Lsid(lsid),
                pbs.bytes() as u64,
                got as u64,
            ));
        }
        let h = LogPackHeader::parse(&self.buf, pbs, self.header.salt, None)?;
        if h.is_end() {
            self.done = true;
            return Ok(None);
        }
        if h.logpack_lsid != lsid {
            self.done = true;
            return Err(Error::corrupt(
                "wlog pack header",
                Location::Lsid(lsid),
                format!(
                    "logpack_lsid is {}, expected {lsid} (byte offset {})",
                    h.logpack_lsid, self.offset
                ),
            ));
        }
        self.offset += pbs.bytes() as u64;
        let n = h.total_io_size as usize * pbs.bytes();
        let mut data = std::mem::take(&mut self.spare);
        let got = read_exact_or_short(&mut self.inner, &mut data, n)
            .ctx(|| format!("reading wlog pack data at byte offset {}", self.offset))?;
        if got < n {
            self.done = true;
            return Err(Error::incomplete(
                "wlog pack data",
                Location::Lsid(lsid + 1),
                n as u64,
                got as u64,
            ));
        }
        self.offset += n as u64;
        let pack = LogPack {
            header: h,
            data: Bytes::from(data),
        };
        if self.verify_data {
            if let Err(e) = pack.verify_data() {
                self.done = true;
                return Err(e);
            }
        }
        self.next_lsid = pack.header.next_lsid();
        Ok(Some(pack))
    }
}

impl<R: Read> Iterator for WlogReader<R> {
    type Item = Result<LogPack>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_pack().transpose()
    }
}

/// Writes a wlog file.
pub struct WlogWriter<W: Write> {
    inner: W,
    header: WlogHeader,
    next_lsid: u64,
}

impl<W: Write> WlogWriter<W> {
    /// Writes the file header.
    pub fn new(mut inner: W, header: WlogHeader) -> Result<WlogWriter<W>> {
        inner
            .write_all(&header.to_bytes())
            .ctx(|| "writing wlog header".into())?;
        Ok(WlogWriter {
            inner,
            next_lsid: header.begin_lsid,
            header,
        })
    }

    /// lsid the next pack must have.
    pub fn next_lsid(&self) -> u64 {
        self.next_lsid
    }

    /// Appends a pack; its lsid must continue the file and its salt/pbs match the header.
    pub fn write_pack(&mut self, pack: &LogPack) -> Result<()> {
        let h = &pack.header;
        if h.records.is_empty() {
            return Ok(());
        }
        if h.logpack_lsid != self.next_lsid
            || h.pbs != self.header.pbs
            || h.salt != self.header.salt
        {
            return Err(Error::Invalid(format!(
                "pack at lsid {} (pbs {}, salt {:08x}) does not continue the wlog at lsid {}",
                h.logpack_lsid, h.pbs, h.salt, self.next_lsid
            )));
        }
        let need = h.total_io_size as usize * h.pbs.bytes();
        if pack.data.len() < need {
            return Err(Error::Invalid(format!(
                "pack at lsid {} has {} data bytes, needs {need}",
                h.logpack_lsid,
                pack.data.len()
            )));
        }
        let mut hc = h.clone();
        let block = hc.to_block();
        self.inner.write_all(&block).ctx(|| "writing wlog".into())?;
        self.inner
            .write_all(&pack.data[..need])
            .ctx(|| "writing wlog".into())?;
        self.next_lsid = h.next_lsid();
        Ok(())
    }

    /// Writes the end marker and returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        let block = LogPackHeader::end_marker(self.header.pbs, self.header.salt).to_block();
        self.inner
            .write_all(&block)
            .ctx(|| "writing wlog end marker".into())?;
        self.inner.flush().ctx(|| "flushing wlog".into())?;
        Ok(self.inner)
    }
}

/// Lower-case hex of a uuid, as walb-tools prints it.
pub fn uuid_hex(uuid: &[u8; 16]) -> String {
    uuid.iter().map(|b| format!("{b:02x}")).collect()
}

/// Prints the `wlog_h:` line of `wlog-show`.
pub fn write_header_line(out: &mut impl Write, h: &WlogHeader) -> std::io::Result<()> {
    writeln!(
        out,
        "wlog_h: ver {:3} pbs {:4} salt {:08x} uuid {} lsid {} {}",
        WALB_LOG_VERSION,
        h.pbs.get(),
        h.salt,
        uuid_hex(&h.uuid),
        h.begin_lsid,
        h.end_lsid
    )
}

/// Prints the `wlog_p:` and `wlog_r:` lines of one pack, as `wlog-show` does.
pub fn write_pack_lines(out: &mut impl Write, h: &LogPackHeader) -> std::io::Result<()> {
    writeln!(
        out,
        "wlog_p: lsid {:10} total {:4} n_rec {:2} n_pad {:2} csum {:08x}",
        h.logpack_lsid,
        h.total_io_size,
        h.n_records(),
        h.n_padding,
        h.checksum
    )?;
    for r in &h.records {
        writeln!(
            out,
            "wlog_r: lsid {:10} {:4} io {:10} {:4} flags {} csum {:08x}",
            r.lsid,
            r.lsid_local,
            r.offset,
            r.io_size,
            r.flag_letters(),
            r.checksum
        )?;
    }
    Ok(())
}

/// Prints the totals of `wlog-show`.
pub fn write_stats(out: &mut impl Write, h: &WlogHeader, s: &WlogStats) -> std::io::Result<()> {
    writeln!(out, "bgnLsid {}", h.begin_lsid)?;
    writeln!(out, "endLsid {}", h.end_lsid)?;
    writeln!(out, "reallyEndLsid {}", s.end_lsid)?;
    writeln!(out, "nrPacks {}", s.n_packs)?;
    writeln!(out, "normalLb {}", s.normal_lb)?;
    writeln!(out, "discardLb {}", s.discard_lb)?;
    writeln!(out, "paddingPb {}", s.padding_pb)
}

/// Prints the whole `wlog-show` listing of a wlog stream.
///
/// Returns the totals. On a read error the lines printed so far stay printed and the error
/// is returned.
pub fn write_listing<R: Read>(input: R, out: &mut impl Write) -> Result<WlogStats> {
    let mut rd = WlogReader::new(input)?;
    let header = rd.header().clone();
    let io = |e| Error::io("writing listing", e);
    write_header_line(out, &header).map_err(io)?;
    let mut stats = WlogStats {
        end_lsid: header.begin_lsid,
        ..Default::default()
    };
    while let Some(p) = rd.next_pack()? {
        write_pack_lines(out, &p.header).map_err(io)?;
        stats.add(&p.header);
    }
    write_stats(out, &header, &stats).map_err(io)?;
    Ok(stats)
}

/// The lsid value that marks "no end" in headers and ranges.
pub const NO_END_LSID: u64 = INVALID_LSID;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logpack::LogPackBuilder;

    fn sample(pbs: Pbs) -> Vec<u8> {
        let header = WlogHeader {
            salt: 77,
            pbs,
            uuid: [7; 16],
            begin_lsid: 10,
            end_lsid: NO_END_LSID,
        };
        let mut w = WlogWriter::new(Vec::new(), header).unwrap();
        let mut b = LogPackBuilder::new(pbs, 77, 10, None);
        b.add_write(0, &vec![1u8; 1024]).unwrap();
        b.add_discard(50, 9).unwrap();
        w.write_pack(&b.finish()).unwrap();
        b.add_write(5, &vec![2u8; 4096]).unwrap();
        w.write_pack(&b.finish()).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_recycled_buffer_is_reused_only_when_free() {
        let bytes = sample(Pbs::B512);
        // A pack still held elsewhere is not reused: its data survives the next read.
        let mut rd = WlogReader::new(&bytes[..]).unwrap();
        let first = rd.next_pack().unwrap().unwrap();
        let held = first.data.clone();
        let want = held.to_vec();
        rd.recycle(first);
        assert_eq!(rd.spare.capacity(), 0, "a held buffer is not taken back");
        let second = rd.next_pack().unwrap().unwrap();
        assert_eq!(held.to_vec(), want);
        assert_eq!(second.record_data(0).unwrap()[..], [2u8; 4096][..]);
        // A free one is, and the next pack read into it reads right.
        let mut rd = WlogReader::new(&bytes[..]).unwrap();
        let first = rd.next_pack().unwrap().unwrap();
        let len = first.data.len();
        rd.recycle(first);
        assert!(rd.spare.capacity() >= len);
        let second = rd.next_pack().unwrap().unwrap();
        assert_eq!(second.record_data(0).unwrap()[..], [2u8; 4096][..]);
        assert!(rd.next_pack().unwrap().is_none());
    }

    #[test]
    fn round_trip_and_listing() {
        for pbs in [Pbs::B512, Pbs::B4096] {
            let bytes = sample(pbs);
            let mut out = Vec::new();
            let stats = write_listing(&bytes[..], &mut out).unwrap();
            assert_eq!(stats.n_packs, 2);
            assert_eq!(stats.normal_lb, 2 + 8);
            assert_eq!(stats.discard_lb, 9);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("wlog_h: ver   2"));
            assert!(text.contains("flags E-D"));
        }
    }

    #[test]
    fn truncation_is_incomplete_and_flips_are_corrupt() {
        let bytes = sample(Pbs::B512);
        for cut in [0, 100, 4096, 4096 + 511, 4096 + 512, bytes.len() - 1] {
            let r = WlogReader::new(&bytes[..cut]).and_then(|r| r.collect::<Result<Vec<_>>>());
            assert!(r.unwrap_err().is_incomplete(), "cut {cut}");
        }
        for pos in [8usize, 4096 + 4, 4096 + 24 + 3, 4096 + 512 + 7] {
            let mut b = bytes.clone();
            b[pos] ^= 0x10;
            let r = WlogReader::new(&b[..]).and_then(|r| r.collect::<Result<Vec<_>>>());
            assert!(r.unwrap_err().is_corrupt(), "flip at {pos}");
        }
    }
}
