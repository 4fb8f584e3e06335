//! The SORTED wdiff layout: header, packs, end pack.
//!
//! ```text
//! [32 B file header, type 0]
//! [4 KiB pack header][stored data of its records] ...
//! [4 KiB end pack header (flags bit 0 set, no records)]
//! ```
//!
//! Pack header (`walb_diff_pack`, checksum over the whole 4 KiB block, salt 0):
//! `u32 checksum`, `u16 n_records` (≤ 127), `u8 flags` (bit 0 = END), `u8 reserved`,
//! `u32 total_size` (data bytes after the block), `u32 reserved`, then the records.
//!
//! Record (`walb_diff_record`, 32 bytes): `u64 io_address`, `u32 io_blocks`, `u8 flags`,
//! `u8 compression_type`, `u16 reserved`, `u32 data_offset` (inside the pack's data area),
//! `u32 data_size`, `u32 checksum` (of the stored bytes, salt 0), `u32 reserved`.
//!
//! Rules this reader enforces (each breach is [`Error::Corrupt`]): checksums of header,
//! pack headers and record data; `n_records ≤ 127`; an end pack has no records and no data;
//! records are address-sorted and never overlap across the whole file; normal records have
//! data laid out back to back from offset 0 filling exactly `total_size`, a known codec, at
//! most [`MAX_NORMAL_IO_BLOCKS`] blocks, and `blocks * 512` bytes when uncompressed;
//! all-zero and discard records carry no data; no record is empty. A file that ends early
//! is [`Error::Incomplete`].

use std::io::{IoSlice, Read, Write};

use bytes::Bytes;

use super::{
    check_io, check_stored, read_full, relocate, RecordKind, StoredIo, WdiffHeader, WdiffKind,
    WriteStats, HEADER_SIZE, MAX_NORMAL_IO_BLOCKS, MAX_PACK_DATA, MAX_PACK_RECORDS,
    PACK_FIXED_SIZE, PACK_HEADER_SIZE, RECORD_SIZE,
};
use crate::block::{le, LBS_USIZE};
use crate::checksum::checksum;
use crate::compress::{Codec, CompressOpt, Compressor, Decompressor};
use crate::diff::io::{DiffIo, IoData};
use crate::error::{Error, IoContext, Location, Result};

/// Largest `total_size` a reader accepts: [`MAX_PACK_DATA`] plus slack for a lone record
/// whose compressed form is slightly larger than its data.
const MAX_PACK_READ: u32 = MAX_PACK_DATA + (1 << 20);

const PACK_FLAG_END: u8 = 1;

/// A pack whose data area is at most this large is read in one call and its records' data
/// handed out as slices of that buffer (no copy through the caller's buffered reader, one
/// read per pack); larger packs are read record by record.
const PACK_READ_AHEAD: u64 = 8 << 20;

/// One record of a sorted pack, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortedRecord {
    /// Start address in logical blocks.
    pub addr: u64,
    /// Length in logical blocks.
    pub blocks: u32,
    /// What the record is.
    pub kind: RecordKind,
    /// Codec of the stored data.
    pub codec: Codec,
    /// Offset of the stored data inside the pack's data area.
    pub data_offset: u32,
    /// Stored (compressed) bytes; 0 for all-zero and discard.
    pub data_size: u32,
    /// Checksum of the stored bytes (salt 0); 0 for all-zero and discard.
    pub checksum: u32,
}

impl SortedRecord {
    /// One past the last logical block.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(u64::from(self.blocks))
    }

    /// Serializes into the first 32 bytes of `b` (which must hold at least 32 bytes).
    pub fn write_to(&self, b: &mut [u8]) {
        b[..RECORD_SIZE].fill(0);
        le::put_u64(b, 0, self.addr);
        le::put_u32(b, 8, self.blocks);
        b[12] = self.kind.flags();
        b[13] = self.codec.as_u8();
        le::put_u32(b, 16, self.data_offset);
        le::put_u32(b, 20, self.data_size);
        le::put_u32(b, 24, self.checksum);
    }

    /// Parses the 32 bytes at the start of `b` (which must hold them), checking the rules
    /// that concern the record alone. The error is the broken rule.
    pub fn parse(b: &[u8]) -> std::result::Result<SortedRecord, String> {
        if b.len() < RECORD_SIZE {
            return Err(format!("{} bytes, a record has {RECORD_SIZE}", b.len()));
        }
        let addr = le::u64(b, 0);
        let blocks = le::u32(b, 8);
        let flags = b[12];
        let kind = RecordKind::from_flags(flags)
            .ok_or_else(|| format!("flags {flags:#04x} mark it both all-zero and discard"))?;
        let codec =
            Codec::from_u8(b[13]).ok_or_else(|| format!("unknown compression type {}", b[13]))?;
        let rec = SortedRecord {
            addr,
            blocks,
            kind,
            codec,
            data_offset: le::u32(b, 16),
            data_size: le::u32(b, 20),
            checksum: le::u32(b, 24),
        };
        if blocks == 0 {
            return Err(format!("record at address {addr} has zero blocks"));
        }
        if addr.checked_add(u64::from(blocks)).is_none() {
            return Err(format!("address {addr} + {blocks} blocks overflows"));
        }
        match kind {
            RecordKind::Normal => {
                if blocks > MAX_NORMAL_IO_BLOCKS {
                    return Err(format!(
                        "normal record of {blocks} blocks (at most {MAX_NORMAL_IO_BLOCKS})"
                    ));
                }
                if rec.data_size == 0 {
                    return Err("normal record without data".into());
                }
                if codec == Codec::None && u64::from(rec.data_size) != u64::from(blocks) * 512 {
                    return Err(format!(
                        "uncompressed record of {blocks} blocks stores {} bytes",
                        rec.data_size
                    ));
                }
            }
            RecordKind::AllZero | RecordKind::Discard => {
                if rec.data_size != 0 {
                    return Err(format!(
                        "{:?} record stores {} data bytes",
                        kind, rec.data_size
                    ));
                }
            }
        }
        Ok(rec)
    }

    fn to_stored(self, data: Bytes) -> StoredIo {
        StoredIo {
            addr: self.addr,
            blocks: self.blocks,
            kind: self.kind,
            codec: if self.kind == RecordKind::Normal {
                self.codec
            } else {
                Codec::None
            },
            data,
        }
    }
}

/// A parsed, verified pack header.
#[derive(Debug, Clone)]
struct Pack {
    records: Vec<SortedRecord>,
    end: bool,
}

/// Parses a 4 KiB pack header at byte offset `at`. `prev_end` is the end address of the
/// last record before this pack (updated).
fn parse_pack(b: &[u8], at: u64, prev_end: &mut Option<u64>) -> Result<Pack> {
    const WHAT: &str = "wdiff pack header";
    let loc = Location::Offset(at);
    if b.len() < PACK_HEADER_SIZE {
        return Err(Error::incomplete(
            WHAT,
            loc,
            PACK_HEADER_SIZE as u64,
            b.len() as u64,
        ));
    }
    let b = &b[..PACK_HEADER_SIZE];
    if !crate::checksum::verifies(b, 0) {
        return Err(Error::corrupt(WHAT, loc, "checksum mismatch"));
    }
    let n = usize::from(le::u16(b, 4));
    let flags = b[6];
    let total_size = le::u32(b, 8);
    if n > MAX_PACK_RECORDS {
        return Err(Error::corrupt(
            WHAT,
            loc,
            format!("{n} records (at most {MAX_PACK_RECORDS})"),
        ));
    }
    let end = flags & PACK_FLAG_END != 0;
    if end {
        if n != 0 || total_size != 0 {
            return Err(Error::corrupt(
                WHAT,
                loc,
                format!("end pack with {n} records and {total_size} data bytes"),
            ));
        }
        return Ok(Pack {
            records: Vec::new(),
            end,
        });
    }
    if total_size > MAX_PACK_READ {
        return Err(Error::corrupt(
            WHAT,
            loc,
            format!("{total_size} data bytes (at most {MAX_PACK_READ})"),
        ));
    }
    let mut records = Vec::with_capacity(n);
    let mut running: u64 = 0;
    for i in 0..n {
        let off = PACK_FIXED_SIZE + i * RECORD_SIZE;
        let rec = check_record(
            &b[off..off + RECORD_SIZE],
            i,
            at,
            total_size,
            &mut running,
            *prev_end,
        )?;
        *prev_end = Some(rec.end());
        records.push(rec);
    }
    if running != u64::from(total_size) {
        return Err(Error::corrupt(
            WHAT,
            loc,
            format!("records hold {running} data bytes, the pack says {total_size}"),
        ));
    }
    Ok(Pack { records, end })
}

/// Parses and checks record `i` of the pack at `at`: its data follows the previous
/// record's (`running` bytes into the pack's `total_size`, updated) and its address is
/// not below `prev_end`.
#[inline]
fn check_record(
    raw: &[u8],
    i: usize,
    at: u64,
    total_size: u32,
    running: &mut u64,
    prev_end: Option<u64>,
) -> Result<SortedRecord> {
    let rloc = Location::Record {
        index: i,
        pack: at,
        lsid: false,
    };
    let rec = SortedRecord::parse(raw).map_err(|d| Error::corrupt("wdiff record", rloc, d))?;
    if rec.kind == RecordKind::Normal {
        if u64::from(rec.data_offset) != *running {
            return Err(Error::corrupt(
                "wdiff record",
                rloc,
                format!(
                    "data offset {} where {} was expected",
                    rec.data_offset, *running
                ),
            ));
        }
        *running += u64::from(rec.data_size);
        if *running > u64::from(total_size) {
            return Err(Error::corrupt(
                "wdiff record",
                rloc,
                format!(
                    "data {}+{} runs past the pack's {total_size} data bytes",
                    rec.data_offset, rec.data_size
                ),
            ));
        }
    }
    if let Some(pe) = prev_end {
        if rec.addr < pe {
            return Err(Error::corrupt(
                "wdiff record",
                rloc,
                format!(
                    "address {} is below the end {pe} of the previous record \
                     (records unsorted or overlapping)",
                    rec.addr
                ),
            ));
        }
    }
    Ok(rec)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    Failed,
}

/// Reads a sorted wdiff from a stream.
///
/// [`SortedDiffReader::next_raw`] yields records with their stored bytes (data checksum
/// verified), [`SortedDiffReader::next_io`] and the `Iterator` implementation yield
/// decompressed [`DiffIo`]s. The data area of a pack of at most 8 MiB is read in one call
/// and uncompressed records keep slices of it (a larger pack is read record by record);
/// a pack that ends early fails at its first record whose data is missing, as when reading
/// record by record. The end pack is required: a stream that stops before it is
/// [`Error::Incomplete`].
pub struct SortedDiffReader<R: Read> {
    r: R,
    header: WdiffHeader,
    header_checksum: u32,
    offset: u64,
    pack_offset: u64,
    data_base: u64,
    records: Vec<SortedRecord>,
    idx: usize,
    prev_end: Option<u64>,
    state: State,
    /// The current pack's data area when it was read ahead (what the stream held of it).
    ahead: Option<Bytes>,
    /// An earlier pack's buffer, reused once the IOs that slice it are gone.
    spare: Option<Bytes>,
    dec: Decompressor,
    hdr_buf: Vec<u8>,
    packs: u64,
}

impl<R: Read> std::fmt::Debug for SortedDiffReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedDiffReader")
            .field("header", &self.header)
            .field("offset", &self.offset)
            .field("packs", &self.packs)
            .finish_non_exhaustive()
    }
}

impl<R: Read> SortedDiffReader<R> {
    /// Reads and verifies the file header from `r` (positioned at the start of the file).
    ///
    /// An INDEXED file is refused with [`Error::Invalid`].
    pub fn new(mut r: R) -> Result<Self> {
        let (header, csum) = WdiffHeader::read_from(&mut r)?;
        if header.kind != WdiffKind::Sorted {
            return Err(Error::Invalid(
                "the wdiff is INDEXED, not SORTED (use IndexedDiffReader or WdiffReader)".into(),
            ));
        }
        Ok(Self::after_header(r, header, csum))
    }

    /// A reader for a stream whose header (`header`, with stored checksum `header_checksum`)
    /// was already consumed; `r` is positioned just after it.
    pub fn after_header(r: R, header: WdiffHeader, header_checksum: u32) -> Self {
        SortedDiffReader {
            r,
            header,
            header_checksum,
            offset: HEADER_SIZE as u64,
            pack_offset: HEADER_SIZE as u64,
            data_base: HEADER_SIZE as u64,
            records: Vec::new(),
            idx: 0,
            ahead: None,
            spare: None,
            prev_end: None,
            state: State::Reading,
            dec: Decompressor::new(),
            hdr_buf: vec![0u8; PACK_HEADER_SIZE],
            packs: 0,
        }
    }

    /// The file header.
    pub fn header(&self) -> &WdiffHeader {
        &self.header
    }

    /// The checksum stored in the file header.
    pub fn header_checksum(&self) -> u32 {
        self.header_checksum
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Data packs read so far (the end pack not counted).
    pub fn packs(&self) -> u64 {
        self.packs
    }

    /// Whether the end pack was reached.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Gives the underlying stream back.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// The next record and its stored bytes (empty for all-zero and discard), with the data
    /// checksum verified; `None` after the end pack.
    pub fn next_raw(&mut self) -> Result<Option<(SortedRecord, Bytes)>> {
        self.guarded(Self::next_raw_inner)
    }

    /// Runs one read step unless the reader is done or failed; a failing step fails the
    /// reader for good.
    fn guarded<T>(
        &mut self,
        step: impl FnOnce(&mut Self) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => {
                return Err(Error::Invalid(
                    "the sorted wdiff reader stopped at an earlier error".into(),
                ))
            }
            State::Reading => {}
        }
        let r = step(self);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn next_raw_inner(&mut self) -> Result<Option<(SortedRecord, Bytes)>> {
        let Some((rec, loc)) = self.next_record()? else {
            return Ok(None);
        };
        if rec.kind != RecordKind::Normal {
            return Ok(Some((rec, Bytes::new())));
        }
        let data = self.read_data(&rec, loc)?;
        Ok(Some((rec, data)))
    }

    /// The next record (its data not read yet), loading packs as needed.
    fn next_record(&mut self) -> Result<Option<(SortedRecord, Location)>> {
        loop {
            if let Some(&rec) = self.records.get(self.idx) {
                let loc = Location::Record {
                    index: self.idx,
                    pack: self.pack_offset,
                    lsid: false,
                };
                self.idx += 1;
                return Ok(Some((rec, loc)));
            }
            if !self.load_pack()? {
                return Ok(None);
            }
        }
    }

    /// The stored data of normal record `rec`, its checksum verified.
    ///
    /// `parse_pack` guaranteed that normal records' data follow one another from the start
    /// of the pack's data area, in record order, so the data is the next bytes of the stream
    /// (or of the pack's data read ahead).
    fn read_data(&mut self, rec: &SortedRecord, loc: Location) -> Result<Bytes> {
        let at = self.data_base + u64::from(rec.data_offset);
        let size = rec.data_size as usize;
        let buf = match &self.ahead {
            Some(ahead) => {
                let start = rec.data_offset as usize;
                let n = ahead.len().saturating_sub(start).min(size);
                ahead.slice(start..start + n)
            }
            None => {
                let mut buf = Vec::with_capacity(size);
                (&mut self.r)
                    .take(u64::from(rec.data_size))
                    .read_to_end(&mut buf)
                    .ctx(|| format!("reading wdiff record data at byte offset {at}"))?;
                Bytes::from(buf)
            }
        };
        if buf.len() != size {
            return Err(Error::incomplete(
                "wdiff record data",
                Location::Offset(at),
                u64::from(rec.data_size),
                buf.len() as u64,
            ));
        }
        self.offset += size as u64;
        let c = checksum(&buf, 0);
        if c != rec.checksum && !cfg!(fuzzing) {
            return Err(Error::corrupt(
                "wdiff record data",
                loc,
                format!(
                    "checksum {c:08x} of the stored data, the record says {:08x}",
                    rec.checksum
                ),
            ));
        }
        Ok(buf)
    }

    /// Reads the next pack header; false at the end pack.
    fn load_pack(&mut self) -> Result<bool> {
        let at = self.offset;
        read_full(
            &mut self.r,
            &mut self.hdr_buf,
            "wdiff pack header",
            Location::Offset(at),
        )?;
        self.offset += PACK_HEADER_SIZE as u64;
        let pack = parse_pack(&self.hdr_buf, at, &mut self.prev_end)?;
        let mut buf = self.reusable_buffer();
        if pack.end {
            self.state = State::Done;
            self.records.clear();
            return Ok(false);
        }
        self.pack_offset = at;
        self.data_base = self.offset;
        // parse_pack checked that the records' data fill the data area exactly.
        let total: u64 = pack.records.iter().map(|r| u64::from(r.data_size)).sum();
        if total > 0 && total <= PACK_READ_AHEAD {
            buf.clear();
            buf.reserve_exact(total as usize);
            (&mut self.r)
                .take(total)
                .read_to_end(&mut buf)
                .ctx(|| format!("reading wdiff pack data at byte offset {}", self.offset))?;
            self.ahead = Some(Bytes::from(buf));
        }
        self.records = pack.records;
        self.idx = 0;
        self.packs += 1;
        Ok(true)
    }

    /// A buffer for the next pack's data: the buffer of an earlier pack when no IO slices it
    /// any more (no allocation, and no page faults of fresh memory, per pack), else a new one.
    /// The previous pack's buffer is kept for a later try.
    fn reusable_buffer(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut keep = None;
        for b in [self.spare.take(), self.ahead.take()].into_iter().flatten() {
            if out.capacity() > 0 {
                keep = Some(b);
                continue;
            }
            match b.try_into_mut() {
                Ok(mut m) => {
                    m.clear(); // nothing to move when it becomes a vector
                    out = m.into();
                }
                Err(b) => keep = Some(b),
            }
        }
        self.spare = keep;
        out
    }

    /// The next record as a [`StoredIo`] (compressed data as stored).
    pub fn next_stored(&mut self) -> Result<Option<StoredIo>> {
        Ok(self.next_raw()?.map(|(rec, data)| rec.to_stored(data)))
    }

    /// The next IO, decompressed.
    pub fn next_io(&mut self) -> Result<Option<DiffIo>> {
        self.guarded(Self::next_io_inner)
    }

    fn next_io_inner(&mut self) -> Result<Option<DiffIo>> {
        let Some((rec, loc)) = self.next_record()? else {
            return Ok(None);
        };
        let data = match rec.kind {
            RecordKind::AllZero => IoData::AllZero,
            RecordKind::Discard => IoData::Discard,
            RecordKind::Normal if rec.codec == Codec::None => {
                IoData::Normal(self.read_data(&rec, loc)?)
            }
            RecordKind::Normal => {
                let stored = self.read_data(&rec, loc)?;
                let len = rec.blocks as usize * LBS_USIZE;
                let mut out = Vec::new();
                self.dec
                    .decompress(rec.codec, &stored, len, &mut out)
                    .map_err(|e| relocate(e, "wdiff record data", loc))?;
                IoData::Normal(Bytes::from(out))
            }
        };
        Ok(Some(DiffIo {
            addr: rec.addr,
            blocks: rec.blocks,
            data,
        }))
    }
}

impl<R: Read> Iterator for SortedDiffReader<R> {
    type Item = Result<DiffIo>;

    /// The next decompressed IO; after an error, `None`.
    fn next(&mut self) -> Option<Result<DiffIo>> {
        if self.state == State::Failed {
            return None;
        }
        self.next_io().transpose()
    }
}

/// Writes all of `bufs` with `write_vectored` (the standard `write_all_vectored` is not
/// stable).
fn write_all_vectored<W: Write>(w: &mut W, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The data area of the pack being built: the stored bytes of its records, in order.
#[derive(Default)]
struct PackData {
    chunks: Vec<Bytes>,
    len: usize,
}

/// Writes a sorted wdiff.
///
/// IOs must come in address order without overlap ([`Error::Invalid`] otherwise). Each
/// normal IO is compressed on its own (stored as `none` when that does not shrink it) and
/// split when longer than [`MAX_NORMAL_IO_BLOCKS`]; records are grouped into packs of at
/// most [`MAX_PACK_RECORDS`] records and [`MAX_PACK_DATA`] data bytes.
/// [`SortedDiffWriter::finish`] writes the end pack; a writer dropped without it leaves a
/// file that readers report as [`Error::Incomplete`]. After an I/O error the writer refuses
/// further use.
pub struct SortedDiffWriter<W: Write> {
    w: W,
    comp: Compressor,
    recs: Vec<SortedRecord>,
    data: PackData,
    scratch: Vec<u8>,
    prev_end: Option<u64>,
    stats: WriteStats,
    broken: bool,
}

impl<W: Write> std::fmt::Debug for SortedDiffWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedDiffWriter")
            .field("opt", &self.comp.opt())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<W: Write> SortedDiffWriter<W> {
    /// Writes the file header (with type SORTED, whatever `header.kind` says) and returns a
    /// writer that compresses normal IOs with `opt`.
    pub fn new(mut w: W, header: &WdiffHeader, opt: CompressOpt) -> Result<Self> {
        let comp = Compressor::new(opt)?;
        let h = WdiffHeader::new(WdiffKind::Sorted, header.uuid);
        w.write_all(&h.to_bytes())
            .ctx(|| "writing the sorted wdiff header".to_string())?;
        Ok(SortedDiffWriter {
            w,
            comp,
            recs: Vec::with_capacity(MAX_PACK_RECORDS),
            data: PackData::default(),
            scratch: Vec::new(),
            prev_end: None,
            stats: WriteStats {
                file_bytes: HEADER_SIZE as u64,
                ..WriteStats::default()
            },
            broken: false,
        })
    }

    /// Statistics so far.
    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(Error::Invalid(
                "the sorted wdiff writer failed earlier".into(),
            ));
        }
        Ok(())
    }

    fn check_order(&self, addr: u64) -> Result<()> {
        if let Some(pe) = self.prev_end {
            if addr < pe {
                return Err(Error::Invalid(format!(
                    "IO at {addr} is below the end {pe} of the previous IO \
                     (a sorted wdiff needs sorted, non-overlapping IOs)"
                )));
            }
        }
        Ok(())
    }

    /// Appends an IO (address order, no overlap with earlier ones).
    pub fn push(&mut self, io: DiffIo) -> Result<()> {
        self.check_usable()?;
        check_io(&io)?;
        self.check_order(io.addr)?;
        let r = self.push_inner(io);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn push_inner(&mut self, io: DiffIo) -> Result<()> {
        let kind = super::RecordKind::of(&io);
        let end = io.end();
        match io.data {
            IoData::Normal(ref d) => {
                let mut off = 0u32;
                while off < io.blocks {
                    let n = (io.blocks - off).min(MAX_NORMAL_IO_BLOCKS);
                    let s = off as usize * LBS_USIZE;
                    let chunk = &d[s..s + n as usize * LBS_USIZE];
                    let codec = self.comp.compress_or_store(chunk, &mut self.scratch)?;
                    let stored = if codec == Codec::None {
                        d.slice(s..s + chunk.len())
                    } else {
                        Bytes::copy_from_slice(&self.scratch)
                    };
                    let addr = io.addr + u64::from(off);
                    Self::add_record(
                        &mut self.w,
                        &mut self.recs,
                        &mut self.data,
                        &mut self.stats,
                        (addr, n, RecordKind::Normal, codec),
                        stored,
                    )?;
                    off += n;
                }
            }
            IoData::AllZero | IoData::Discard => {
                Self::add_record(
                    &mut self.w,
                    &mut self.recs,
                    &mut self.data,
                    &mut self.stats,
                    (io.addr, io.blocks, kind, Codec::None),
                    Bytes::new(),
                )?;
            }
        }
        self.prev_end = Some(end);
        Ok(())
    }

    /// Appends a record whose data is already stored (compressed or not); the data is
    /// written as is, its checksum computed here. Same order rules as [`Self::push`].
    pub fn push_stored(&mut self, io: StoredIo) -> Result<()> {
        self.check_usable()?;
        check_stored(&io)?;
        if io.data.len() > MAX_PACK_READ as usize {
            return Err(Error::Invalid(format!(
                "stored IO of {} bytes exceeds a pack",
                io.data.len()
            )));
        }
        self.check_order(io.addr)?;
        let codec = if io.kind == RecordKind::Normal {
            io.codec
        } else {
            Codec::None
        };
        let r = Self::add_record(
            &mut self.w,
            &mut self.recs,
            &mut self.data,
            &mut self.stats,
            (io.addr, io.blocks, io.kind, codec),
            io.data.clone(),
        );
        if r.is_err() {
            self.broken = true;
        }
        r?;
        self.prev_end = Some(io.end());
        Ok(())
    }

    /// Adds one record, flushing the current pack first when it is full.
    fn add_record(
        w: &mut W,
        recs: &mut Vec<SortedRecord>,
        data: &mut PackData,
        stats: &mut WriteStats,
        (addr, blocks, kind, codec): (u64, u32, RecordKind, Codec),
        stored: Bytes,
    ) -> Result<()> {
        let size = stored.len();
        if recs.len() >= MAX_PACK_RECORDS
            || (!recs.is_empty() && data.len + size > MAX_PACK_DATA as usize)
        {
            Self::write_pack(w, recs, data, stats)?;
        }
        let rec = SortedRecord {
            addr,
            blocks,
            kind,
            codec,
            data_offset: data.len as u32,
            data_size: size as u32,
            checksum: if kind == RecordKind::Normal {
                checksum(&stored, 0)
            } else {
                0
            },
        };
        data.len += size;
        if size > 0 {
            data.chunks.push(stored);
        }
        recs.push(rec);
        stats.count(kind, blocks);
        stats.data_bytes += size as u64;
        Ok(())
    }

    fn pack_header(recs: &[SortedRecord], total: u32, flags: u8) -> Vec<u8> {
        let mut b = vec![0u8; PACK_HEADER_SIZE];
        le::put_u16(&mut b, 4, recs.len() as u16);
        b[6] = flags;
        le::put_u32(&mut b, 8, total);
        for (i, r) in recs.iter().enumerate() {
            let off = PACK_FIXED_SIZE + i * RECORD_SIZE;
            r.write_to(&mut b[off..off + RECORD_SIZE]);
        }
        let c = checksum(&b, 0);
        le::put_u32(&mut b, 0, c);
        b
    }

    fn write_pack(
        w: &mut W,
        recs: &mut Vec<SortedRecord>,
        data: &mut PackData,
        stats: &mut WriteStats,
    ) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let hdr = Self::pack_header(recs, data.len as u32, 0);
        // The header and the records' bytes go out as they are, in vectored writes: no copy
        // into a pack buffer, nor into the caller's buffered writer when the pack is larger
        // than its buffer.
        let mut slices: Vec<IoSlice<'_>> = std::iter::once(&hdr[..])
            .chain(data.chunks.iter().map(|c| &c[..]))
            .map(IoSlice::new)
            .collect();
        write_all_vectored(w, &mut slices).ctx(|| "writing a sorted wdiff pack".to_string())?;
        stats.file_bytes += (PACK_HEADER_SIZE + data.len) as u64;
        recs.clear();
        data.chunks.clear();
        data.len = 0;
        Ok(())
    }

    /// Writes the pending pack and the end pack, flushes, and returns the stream.
    pub fn finish(self) -> Result<W> {
        self.finish_with_stats().map(|(w, _)| w)
    }

    /// Like [`Self::finish`], also returning the statistics.
    pub fn finish_with_stats(mut self) -> Result<(W, WriteStats)> {
        self.check_usable()?;
        Self::write_pack(&mut self.w, &mut self.recs, &mut self.data, &mut self.stats)?;
        let end = Self::pack_header(&[], 0, PACK_FLAG_END);
        self.w
            .write_all(&end)
            .ctx(|| "writing the sorted wdiff end pack".to_string())?;
        self.stats.file_bytes += PACK_HEADER_SIZE as u64;
        self.w
            .flush()
            .ctx(|| "flushing the sorted wdiff".to_string())?;
        Ok((self.w, self.stats))
    }
}

#[cfg(test)]
mod tests;
