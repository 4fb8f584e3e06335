//! The INDEXED wdiff layout: images in arrival order, an address-sorted index at the end.
//!
//! ```text
//! [32 B file header, type 1]
//! [compressed image][compressed image]...      (arrival order, overwritten ones kept)
//! [zero padding to a multiple of 8 bytes]
//! [48 B index record] x n_records               (sorted by address, non-overlapping)
//! [24 B index super]                            (at EOF)
//! ```
//!
//! Index record (`walb_indexed_diff_record`): `u64 io_address`, `u32 io_blocks`, `u8 flags`,
//! `u8 compression_type`, `u16 reserved`, `u64 data_offset` (absolute file offset of the
//! image), `u32 data_size` (stored bytes of the image), `u32 io_offset` (blocks into the
//! decompressed image), `u32 orig_blocks` (blocks of the decompressed image), `u32 reserved`,
//! `u32 io_checksum` (of the stored image, salt 0), `u32 rec_checksum` (makes the checksum
//! of the 48 bytes zero). Super (`walb_diff_index_super`): `u64 index_offset`,
//! `u32 n_records`, `u32 n_data` (images and data-less IOs written, overwritten ones
//! included), `u32 reserved`, `u32 checksum` (self).
//!
//! The writer keeps walb-tools' index shape: every record is a power-of-two number of
//! blocks aligned on its own size ([`split_aligned`], walb-tools' `splitIoToAligned`), so a
//! newer IO either covers an older record or punches a hole in it. Several records may
//! point into one image; the reader decompresses each image once (it keeps an image until
//! the last record that uses it, within a memory cap) and merges records that continue
//! one another into one [`DiffIo`].
//!
//! Because the super is at the end, a truncated indexed wdiff (or one whose writer did not
//! finish) has no valid super: a super whose checksum fails, that is all zeros, or whose
//! index does not end exactly where the super starts is reported as
//! [`Error::Incomplete`] (a damaged super therefore also reads as incomplete).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};

use bytes::Bytes;

use super::{
    check_io, check_stored, read_full, read_vec, relocate, RecordKind, StoredIo, WdiffHeader,
    WdiffKind, WriteStats, HEADER_SIZE, INDEXED_RECORD_SIZE, INDEX_SUPER_SIZE,
    MAX_NORMAL_IO_BLOCKS,
};
use crate::block::{le, LBS_USIZE};
use crate::checksum::checksum;
use crate::compress::{Codec, CompressOpt, Compressor, Decompressor};
use crate::diff::io::{DiffIo, IoData};
use crate::error::{Error, IoContext, Location, Result};

/// Decompressed images kept by a reader at most (bytes); beyond this the image needed
/// farthest ahead is dropped and decompressed again when its turn comes.
pub const IMAGE_CACHE_BYTES: usize = 256 << 20;

/// walb-tools' `getAlignedSize`: the largest power of two dividing `addr` (2^31 at most).
fn aligned_size(addr: u64) -> u32 {
    1u32 << addr.trailing_zeros().min(31)
}

/// walb-tools' `getMaxAlignedSize`: the largest power of two not above `s` (0 for 0).
fn max_aligned_size(s: u32) -> u32 {
    if s == 0 {
        0
    } else {
        1u32 << (31 - s.leading_zeros())
    }
}

/// Splits `[addr, addr + blocks)` into naturally aligned power-of-two pieces, in address
/// order (walb-tools' `splitIoToAligned`). `max_blocks` caps the piece size (rounded down
/// to a power of two); 0 means no cap.
///
/// `split_aligned(1, 31, 0) == [1, 2, 4, 8, 16]`, `split_aligned(4, 32, 8) == [4, 8, 8, 8, 4]`.
pub fn split_aligned(addr: u64, blocks: u32, max_blocks: u32) -> Vec<u32> {
    let cap = max_aligned_size(max_blocks);
    let mut v = Vec::new();
    let (mut a, mut left) = (addr, blocks);
    while left > 0 {
        let mut s = aligned_size(a);
        if s > left {
            s = max_aligned_size(left);
        }
        if cap > 0 {
            s = s.min(cap);
        }
        v.push(s);
        a = a.wrapping_add(u64::from(s));
        left -= s;
    }
    v
}

/// One record of the index, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedRecord {
    /// Start address in logical blocks.
    pub addr: u64,
    /// Length in logical blocks.
    pub blocks: u32,
    /// What the record is.
    pub kind: RecordKind,
    /// Codec of the image.
    pub codec: Codec,
    /// Absolute file offset of the image (for data-less records: where the writer was).
    pub data_offset: u64,
    /// Stored bytes of the image (0 for all-zero and discard).
    pub data_size: u32,
    /// Offset of this record inside the decompressed image, in blocks.
    pub io_offset: u32,
    /// Blocks of the decompressed image (0 for all-zero and discard).
    pub orig_blocks: u32,
    /// Checksum of the stored image (salt 0).
    pub io_checksum: u32,
    /// The record's self checksum as stored (recomputed by [`Self::to_bytes`]).
    pub rec_checksum: u32,
}

impl IndexedRecord {
    /// One past the last logical block.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(u64::from(self.blocks))
    }

    /// The 48 stored bytes, with `rec_checksum` computed.
    pub fn to_bytes(&self) -> [u8; INDEXED_RECORD_SIZE] {
        let mut b = [0u8; INDEXED_RECORD_SIZE];
        le::put_u64(&mut b, 0, self.addr);
        le::put_u32(&mut b, 8, self.blocks);
        b[12] = self.kind.flags();
        b[13] = self.codec.as_u8();
        le::put_u64(&mut b, 16, self.data_offset);
        le::put_u32(&mut b, 24, self.data_size);
        le::put_u32(&mut b, 28, self.io_offset);
        le::put_u32(&mut b, 32, self.orig_blocks);
        le::put_u32(&mut b, 40, self.io_checksum);
        let c = checksum(&b, 0);
        le::put_u32(&mut b, 44, c);
        b
    }

    /// Parses and verifies the 48 bytes at the start of `b`, checking the rules that
    /// concern the record alone. The error is the broken rule.
    pub fn parse(b: &[u8]) -> std::result::Result<IndexedRecord, String> {
        let Some(b) = b.get(..INDEXED_RECORD_SIZE) else {
            return Err(format!(
                "{} bytes, a record has {INDEXED_RECORD_SIZE}",
                b.len()
            ));
        };
        if !crate::checksum::verifies(b, 0) {
            return Err("record checksum mismatch".into());
        }
        let flags = b[12];
        let kind = RecordKind::from_flags(flags)
            .ok_or_else(|| format!("flags {flags:#04x} mark it both all-zero and discard"))?;
        let codec =
            Codec::from_u8(b[13]).ok_or_else(|| format!("unknown compression type {}", b[13]))?;
        let rec = IndexedRecord {
            addr: le::u64(b, 0),
            blocks: le::u32(b, 8),
            kind,
            codec,
            data_offset: le::u64(b, 16),
            data_size: le::u32(b, 24),
            io_offset: le::u32(b, 28),
            orig_blocks: le::u32(b, 32),
            io_checksum: le::u32(b, 40),
            rec_checksum: le::u32(b, 44),
        };
        if rec.blocks == 0 {
            return Err(format!("record at address {} has zero blocks", rec.addr));
        }
        if rec.addr.checked_add(u64::from(rec.blocks)).is_none() {
            return Err(format!(
                "address {} + {} blocks overflows",
                rec.addr, rec.blocks
            ));
        }
        match kind {
            RecordKind::Normal => {
                if rec.orig_blocks == 0 || rec.orig_blocks > MAX_NORMAL_IO_BLOCKS {
                    return Err(format!(
                        "image of {} blocks (1..={MAX_NORMAL_IO_BLOCKS} allowed)",
                        rec.orig_blocks
                    ));
                }
                match rec.io_offset.checked_add(rec.blocks) {
                    Some(e) if e <= rec.orig_blocks => {}
                    _ => {
                        return Err(format!(
                            "blocks {}+{} lie outside the image of {} blocks",
                            rec.io_offset, rec.blocks, rec.orig_blocks
                        ))
                    }
                }
                if rec.data_size == 0 {
                    return Err("normal record without data".into());
                }
                if codec == Codec::None
                    && u64::from(rec.data_size) != u64::from(rec.orig_blocks) * 512
                {
                    return Err(format!(
                        "uncompressed image of {} blocks stores {} bytes",
                        rec.orig_blocks, rec.data_size
                    ));
                }
            }
            RecordKind::AllZero | RecordKind::Discard => {
                if rec.data_size != 0 {
                    return Err(format!(
                        "{kind:?} record stores {} data bytes",
                        rec.data_size
                    ));
                }
            }
        }
        Ok(rec)
    }

    fn image_key(&self) -> ImageKey {
        ImageKey {
            offset: self.data_offset,
            size: self.data_size,
            codec: self.codec,
            orig_blocks: self.orig_blocks,
            checksum: self.io_checksum,
        }
    }
}

/// The index super at the end of an indexed wdiff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSuper {
    /// Byte offset of the first index record.
    pub index_offset: u64,
    /// Index records.
    pub n_records: u32,
    /// IOs written (images and data-less IOs, overwritten ones included).
    pub n_data: u32,
}

impl IndexSuper {
    /// The 24 stored bytes, checksum included.
    pub fn to_bytes(&self) -> [u8; INDEX_SUPER_SIZE] {
        let mut b = [0u8; INDEX_SUPER_SIZE];
        le::put_u64(&mut b, 0, self.index_offset);
        le::put_u32(&mut b, 8, self.n_records);
        le::put_u32(&mut b, 12, self.n_data);
        let c = checksum(&b, 0);
        le::put_u32(&mut b, 20, c);
        b
    }
}

/// Identifies one stored image (records sharing it agree on all of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ImageKey {
    offset: u64,
    size: u32,
    codec: Codec,
    orig_blocks: u32,
    checksum: u32,
}

struct Cached {
    data: Bytes,
    next_use: usize,
}

const NO_USE: usize = usize::MAX;

/// Reads an indexed wdiff (random access).
///
/// [`IndexedDiffReader::new`] verifies the header, the super and every index record
/// (checksum, rules, address order, image ranges inside the data area). Iterating yields
/// decompressed [`DiffIo`]s in address order; each image's checksum is verified when it is
/// read. [`IndexedDiffReader::records`] gives the raw index.
pub struct IndexedDiffReader<R: Read + Seek> {
    r: R,
    header: WdiffHeader,
    header_checksum: u32,
    sup: IndexSuper,
    records: Vec<IndexedRecord>,
    next_use: Vec<usize>,
    pos: usize,
    cache: HashMap<ImageKey, Cached>,
    cache_bytes: usize,
    cache_cap: usize,
    dec: Decompressor,
    failed: bool,
    images_loaded: u64,
}

impl<R: Read + Seek> std::fmt::Debug for IndexedDiffReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedDiffReader")
            .field("header", &self.header)
            .field("super", &self.sup)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<R: Read + Seek> IndexedDiffReader<R> {
    /// Opens an indexed wdiff held by `r` (the whole stream is the file).
    ///
    /// A SORTED file is refused with [`Error::Invalid`].
    pub fn new(mut r: R) -> Result<Self> {
        let len = r
            .seek(SeekFrom::End(0))
            .ctx(|| "finding the size of the indexed wdiff".to_string())?;
        r.seek(SeekFrom::Start(0))
            .ctx(|| "seeking in the indexed wdiff".to_string())?;
        let (header, header_checksum) = WdiffHeader::read_from(&mut r)?;
        if header.kind != WdiffKind::Indexed {
            return Err(Error::Invalid(
                "the wdiff is SORTED, not INDEXED (use SortedDiffReader or WdiffReader)".into(),
            ));
        }
        let sup = read_super(&mut r, len)?;
        let idx_bytes = u64::from(sup.n_records) * INDEXED_RECORD_SIZE as u64;
        r.seek(SeekFrom::Start(sup.index_offset))
            .ctx(|| "seeking to the indexed wdiff index".to_string())?;
        // Bounded by the file size (checked above).
        let idx = read_vec(
            &mut r,
            idx_bytes as usize,
            "indexed wdiff index",
            Location::Offset(sup.index_offset),
        )?;
        let records = parse_index(&idx, &sup)?;
        let mut next_use = vec![NO_USE; records.len()];
        let mut last: HashMap<ImageKey, usize> = HashMap::new();
        for (i, rec) in records.iter().enumerate().rev() {
            if rec.kind == RecordKind::Normal {
                if let Some(j) = last.insert(rec.image_key(), i) {
                    next_use[i] = j;
                }
            }
        }
        Ok(IndexedDiffReader {
            r,
            header,
            header_checksum,
            sup,
            records,
            next_use,
            pos: 0,
            cache: HashMap::new(),
            cache_bytes: 0,
            cache_cap: IMAGE_CACHE_BYTES,
            dec: Decompressor::new(),
            failed: false,
            images_loaded: 0,
        })
    }

    /// The file header.
    pub fn header(&self) -> &WdiffHeader {
        &self.header
    }

    /// The checksum stored in the file header.
    pub fn header_checksum(&self) -> u32 {
        self.header_checksum
    }

    /// The index super.
    pub fn index_super(&self) -> IndexSuper {
        self.sup
    }

    /// The index, in address order.
    pub fn records(&self) -> &[IndexedRecord] {
        &self.records
    }

    /// Images read and decompressed so far.
    pub fn images_loaded(&self) -> u64 {
        self.images_loaded
    }

    /// Sets the image cache cap in bytes (default [`IMAGE_CACHE_BYTES`]).
    pub fn set_cache_cap(&mut self, bytes: usize) {
        self.cache_cap = bytes;
    }

    /// Gives the underlying stream back.
    pub fn into_inner(self) -> R {
        self.r
    }

    fn loc(&self, i: usize) -> Location {
        Location::Record {
            index: i,
            pack: self.sup.index_offset,
            lsid: false,
        }
    }

    /// Reads the stored image of record `i` and verifies its checksum.
    fn read_image(&mut self, i: usize) -> Result<Vec<u8>> {
        let rec = self.records[i];
        let loc = self.loc(i);
        self.r
            .seek(SeekFrom::Start(rec.data_offset))
            .ctx(|| format!("seeking to the image of {loc}"))?;
        let stored = read_vec(
            &mut self.r,
            rec.data_size as usize,
            "indexed wdiff image",
            Location::Offset(rec.data_offset),
        )?;
        let c = checksum(&stored, 0);
        if c != rec.io_checksum && !cfg!(fuzzing) {
            return Err(Error::corrupt(
                "indexed wdiff image",
                loc,
                format!(
                    "checksum {c:08x} of the image at byte offset {}, the record says {:08x}",
                    rec.data_offset, rec.io_checksum
                ),
            ));
        }
        Ok(stored)
    }

    /// Verifies the checksum of every image the index refers to (each read once), without
    /// decompressing. Does not move the IO iterator.
    pub fn verify_images(&mut self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for i in 0..self.records.len() {
            let rec = self.records[i];
            if rec.kind == RecordKind::Normal && seen.insert(rec.image_key()) {
                self.read_image(i)?;
            }
        }
        Ok(())
    }

    /// The decompressed image of normal record `i`, through the cache.
    fn image(&mut self, i: usize) -> Result<Bytes> {
        let rec = self.records[i];
        let key = rec.image_key();
        let next = self.next_use[i];
        if let Some(c) = self.cache.get_mut(&key) {
            let data = c.data.clone();
            if next == NO_USE {
                self.cache_bytes -= data.len();
                self.cache.remove(&key);
            } else {
                c.next_use = next;
            }
            return Ok(data);
        }
        let stored = self.read_image(i)?;
        let len = rec.orig_blocks as usize * LBS_USIZE;
        let data = if rec.codec == Codec::None {
            Bytes::from(stored)
        } else {
            let mut out = Vec::new();
            self.dec
                .decompress(rec.codec, &stored, len, &mut out)
                .map_err(|e| relocate(e, "indexed wdiff image", self.loc(i)))?;
            Bytes::from(out)
        };
        self.images_loaded += 1;
        if next != NO_USE {
            self.cache_bytes += data.len();
            self.cache.insert(
                key,
                Cached {
                    data: data.clone(),
                    next_use: next,
                },
            );
            // Belady: drop the images needed farthest ahead.
            while self.cache_bytes > self.cache_cap {
                let Some((&k, _)) = self.cache.iter().max_by_key(|(_, c)| c.next_use) else {
                    break;
                };
                if let Some(c) = self.cache.remove(&k) {
                    self.cache_bytes -= c.data.len();
                }
            }
        }
        Ok(data)
    }

    /// Whether record `j` continues the IO made of records `i..j` (`blocks` so far).
    fn continues(&self, i: usize, j: usize, blocks: u32) -> bool {
        let (a, b) = (&self.records[i], &self.records[j]);
        if b.kind != a.kind || Some(b.addr) != a.addr.checked_add(u64::from(blocks)) {
            return false;
        }
        if blocks.checked_add(b.blocks).is_none() {
            return false;
        }
        match a.kind {
            RecordKind::Normal => {
                a.image_key() == b.image_key()
                    && a.io_offset.checked_add(blocks) == Some(b.io_offset)
            }
            RecordKind::AllZero | RecordKind::Discard => true,
        }
    }

    /// The next IO in address order, decompressed. Consecutive records that continue one
    /// another (same image and contiguous, or both all-zero / both discard) come as one IO.
    pub fn next_io(&mut self) -> Result<Option<DiffIo>> {
        if self.failed {
            return Err(Error::Invalid(
                "the indexed wdiff reader stopped at an earlier error".into(),
            ));
        }
        let r = self.next_io_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn next_io_inner(&mut self) -> Result<Option<DiffIo>> {
        let i = self.pos;
        let Some(&rec) = self.records.get(i) else {
            return Ok(None);
        };
        let mut j = i + 1;
        let mut blocks = rec.blocks;
        while j < self.records.len() && self.continues(i, j, blocks) {
            blocks += self.records[j].blocks;
            j += 1;
        }
        let data = match rec.kind {
            RecordKind::AllZero => IoData::AllZero,
            RecordKind::Discard => IoData::Discard,
            RecordKind::Normal => {
                let img = self.image(i)?;
                for k in i + 1..j {
                    self.image(k)?;
                }
                let s = rec.io_offset as usize * LBS_USIZE;
                let e = s + blocks as usize * LBS_USIZE;
                if e > img.len() {
                    return Err(Error::corrupt(
                        "indexed wdiff record",
                        self.loc(i),
                        "record outside its image",
                    ));
                }
                IoData::Normal(img.slice(s..e))
            }
        };
        self.pos = j;
        Ok(Some(DiffIo {
            addr: rec.addr,
            blocks,
            data,
        }))
    }
}

/// Reads and checks the index super at the end of a file of `len` bytes: a missing,
/// zeroed or inconsistent one means the file is truncated or unfinished.
fn read_super<R: Read + Seek>(r: &mut R, len: u64) -> Result<IndexSuper> {
    const SWHAT: &str = "indexed wdiff super";
    let min = (HEADER_SIZE + INDEX_SUPER_SIZE) as u64;
    if len < min {
        return Err(Error::incomplete(SWHAT, Location::Offset(0), min, len));
    }
    let sup_at = len - INDEX_SUPER_SIZE as u64;
    let sloc = Location::Offset(sup_at);
    r.seek(SeekFrom::Start(sup_at))
        .ctx(|| "seeking to the indexed wdiff super".to_string())?;
    let mut sb = [0u8; INDEX_SUPER_SIZE];
    read_full(r, &mut sb, SWHAT, sloc)?;
    if !crate::checksum::verifies(&sb, 0) || sb.iter().all(|&b| b == 0) {
        // The super is the last thing written: without it the file is most likely
        // truncated or unfinished (zeros, which checksum to zero, are no super either).
        return Err(Error::Incomplete {
            what: "indexed wdiff super (no valid super at the end: truncated or unfinished)",
            at: sloc,
            needed: len + 1,
            got: len,
        });
    }
    let sup = IndexSuper {
        index_offset: le::u64(&sb, 0),
        n_records: le::u32(&sb, 8),
        n_data: le::u32(&sb, 12),
    };
    let idx_bytes = u64::from(sup.n_records) * INDEXED_RECORD_SIZE as u64;
    if sup.index_offset < HEADER_SIZE as u64
        || sup.index_offset.checked_add(idx_bytes) != Some(sup_at)
    {
        // A checksum-valid super that does not describe this file is, far more likely
        // than a corrupt super, 24 bytes of a truncated file that happen to checksum
        // to zero: treat it as "no super".
        return Err(Error::Incomplete {
            what: "indexed wdiff super (the super at the end does not describe this \
                   file: truncated or unfinished)",
            at: sloc,
            needed: sup
                .index_offset
                .saturating_add(idx_bytes)
                .saturating_add(INDEX_SUPER_SIZE as u64)
                .max(len + 1),
            got: len,
        });
    }
    Ok(sup)
}

/// Parses the index's records: each image within the data area, addresses sorted and
/// not overlapping.
fn parse_index(idx: &[u8], sup: &IndexSuper) -> Result<Vec<IndexedRecord>> {
    let mut records = Vec::with_capacity(sup.n_records as usize);
    let mut prev_end: Option<u64> = None;
    for (i, b) in idx.chunks_exact(INDEXED_RECORD_SIZE).enumerate() {
        let loc = Location::Record {
            index: i,
            pack: sup.index_offset,
            lsid: false,
        };
        let rec =
            IndexedRecord::parse(b).map_err(|d| Error::corrupt("indexed wdiff record", loc, d))?;
        if rec.kind == RecordKind::Normal {
            let end = rec.data_offset.checked_add(u64::from(rec.data_size));
            if rec.data_offset < HEADER_SIZE as u64 || end.is_none_or(|e| e > sup.index_offset) {
                return Err(Error::corrupt(
                    "indexed wdiff record",
                    loc,
                    format!(
                        "image {}+{} lies outside the data area [{HEADER_SIZE}, {})",
                        rec.data_offset, rec.data_size, sup.index_offset
                    ),
                ));
            }
        }
        if let Some(pe) = prev_end {
            if rec.addr < pe {
                return Err(Error::corrupt(
                    "indexed wdiff record",
                    loc,
                    format!(
                        "address {} is below the end {pe} of the previous record \
                         (index unsorted or overlapping)",
                        rec.addr
                    ),
                ));
            }
        }
        prev_end = Some(rec.end());
        records.push(rec);
    }
    Ok(records)
}

impl<R: Read + Seek> Iterator for IndexedDiffReader<R> {
    type Item = Result<DiffIo>;

    /// The next decompressed IO; after an error, `None`.
    fn next(&mut self) -> Option<Result<DiffIo>> {
        if self.failed {
            return None;
        }
        self.next_io().transpose()
    }
}

/// An index entry of the writer (the address is the map key).
#[derive(Debug, Clone, Copy)]
struct Entry {
    blocks: u32,
    kind: RecordKind,
    codec: Codec,
    data_offset: u64,
    data_size: u32,
    io_offset: u32,
    orig_blocks: u32,
    io_checksum: u32,
}

impl Entry {
    /// The part `[off, off + len)` of this entry.
    fn slice(&self, off: u32, len: u32) -> Entry {
        Entry {
            blocks: len,
            io_offset: self.io_offset.wrapping_add(off),
            ..*self
        }
    }
}

/// Writes an indexed wdiff from IOs in arrival order; for every block the newest IO wins.
///
/// Each normal IO is compressed on its own (stored as `none` when that does not shrink it;
/// split when longer than [`MAX_NORMAL_IO_BLOCKS`]) and appended as an image right away;
/// the index (kept in memory, about 60 bytes per record) is written by
/// [`IndexedDiffWriter::finish`]. Only `Write` is needed: offsets are counted from the
/// first byte written, so the stream must start at the beginning of the file.
pub struct IndexedDiffWriter<W: Write> {
    w: W,
    comp: Compressor,
    scratch: Vec<u8>,
    offset: u64,
    n_data: u64,
    index: BTreeMap<u64, Entry>,
    max_io_blocks: u32,
    data_bytes: u64,
    broken: bool,
}

impl<W: Write> std::fmt::Debug for IndexedDiffWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedDiffWriter")
            .field("opt", &self.comp.opt())
            .field("offset", &self.offset)
            .field("records", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> IndexedDiffWriter<W> {
    /// Writes the file header (type INDEXED, whatever `header.kind` says) and returns a
    /// writer that compresses normal IOs with `opt`.
    pub fn new(mut w: W, header: &WdiffHeader, opt: CompressOpt) -> Result<Self> {
        let comp = Compressor::new(opt)?;
        let h = WdiffHeader::new(WdiffKind::Indexed, header.uuid);
        w.write_all(&h.to_bytes())
            .ctx(|| "writing the indexed wdiff header".to_string())?;
        Ok(IndexedDiffWriter {
            w,
            comp,
            scratch: Vec::new(),
            offset: HEADER_SIZE as u64,
            n_data: 0,
            index: BTreeMap::new(),
            max_io_blocks: 0,
            data_bytes: 0,
            broken: false,
        })
    }

    /// Caps index records at `max_blocks` blocks (rounded down to a power of two); 0, the
    /// default (as in walb-tools), means no cap beyond the alignment rule.
    pub fn set_max_io_blocks(&mut self, max_blocks: u32) {
        self.max_io_blocks = max_blocks;
    }

    /// Index records so far.
    pub fn records(&self) -> usize {
        self.index.len()
    }

    fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(Error::Invalid(
                "the indexed wdiff writer failed earlier".into(),
            ));
        }
        Ok(())
    }

    /// Adds an IO; it overrides every older IO where they overlap.
    pub fn push(&mut self, io: DiffIo) -> Result<()> {
        self.check_usable()?;
        check_io(&io)?;
        let r = self.push_inner(io);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn push_inner(&mut self, io: DiffIo) -> Result<()> {
        match &io.data {
            IoData::Normal(d) => {
                let mut off = 0u32;
                while off < io.blocks {
                    let n = (io.blocks - off).min(MAX_NORMAL_IO_BLOCKS);
                    let s = off as usize * LBS_USIZE;
                    let chunk = &d[s..s + n as usize * LBS_USIZE];
                    let codec = self.comp.compress_or_store(chunk, &mut self.scratch)?;
                    let stored: &[u8] = if codec == Codec::None {
                        chunk
                    } else {
                        &self.scratch
                    };
                    let e = Self::append_image(
                        &mut self.w,
                        &mut self.offset,
                        &mut self.data_bytes,
                        stored,
                        codec,
                        n,
                    )?;
                    self.n_data += 1;
                    self.insert(io.addr + u64::from(off), e);
                    off += n;
                }
            }
            IoData::AllZero | IoData::Discard => {
                let e = self.dataless(RecordKind::of(&io), io.blocks);
                self.n_data += 1;
                self.insert(io.addr, e);
            }
        }
        Ok(())
    }

    fn dataless(&self, kind: RecordKind, blocks: u32) -> Entry {
        Entry {
            blocks,
            kind,
            codec: Codec::None,
            data_offset: self.offset,
            data_size: 0,
            io_offset: 0,
            orig_blocks: 0,
            io_checksum: 0,
        }
    }

    fn append_image(
        w: &mut W,
        offset: &mut u64,
        data_bytes: &mut u64,
        stored: &[u8],
        codec: Codec,
        blocks: u32,
    ) -> Result<Entry> {
        let e = Entry {
            blocks,
            kind: RecordKind::Normal,
            codec,
            data_offset: *offset,
            data_size: stored.len() as u32,
            io_offset: 0,
            orig_blocks: blocks,
            io_checksum: checksum(stored, 0),
        };
        w.write_all(stored)
            .ctx(|| format!("writing an indexed wdiff image at byte offset {offset}"))?;
        *offset += stored.len() as u64;
        *data_bytes += stored.len() as u64;
        Ok(e)
    }

    /// Adds an IO whose data is already stored (compressed or not), written as is.
    pub fn push_stored(&mut self, io: StoredIo) -> Result<()> {
        self.check_usable()?;
        check_stored(&io)?;
        let r = (|| {
            let e = match io.kind {
                RecordKind::Normal => Self::append_image(
                    &mut self.w,
                    &mut self.offset,
                    &mut self.data_bytes,
                    &io.data,
                    io.codec,
                    io.blocks,
                )?,
                kind => self.dataless(kind, io.blocks),
            };
            self.n_data += 1;
            self.insert(io.addr, e);
            Ok(())
        })();
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Inserts an entry, split into aligned pieces, over the older ones.
    ///
    /// Only data IOs are capped at the maximum IO size: an all-zero or discard record costs
    /// nothing per block, and capping a discard of 2^32 blocks would make millions of
    /// records (the aligned split alone yields at most two per bit of the address).
    fn insert(&mut self, addr: u64, e: Entry) {
        let cap = if e.kind == RecordKind::Normal {
            self.max_io_blocks
        } else {
            0
        };
        let mut off = 0u32;
        for s in split_aligned(addr, e.blocks, cap) {
            self.insert_piece(addr + u64::from(off), e.slice(off, s));
            off += s;
        }
    }

    /// Inserts one piece, cutting away whatever older entries it overlaps.
    fn insert_piece(&mut self, addr: u64, e: Entry) {
        let end = addr + u64::from(e.blocks);
        let mut overlapped = Vec::new();
        if let Some((&k, old)) = self.index.range(..addr).next_back() {
            if k + u64::from(old.blocks) > addr {
                overlapped.push(k);
            }
        }
        overlapped.extend(self.index.range(addr..end).map(|(&k, _)| k));
        for k in overlapped {
            let Some(old) = self.index.remove(&k) else {
                continue;
            };
            let old_end = k + u64::from(old.blocks);
            if k < addr {
                let left = (addr - k) as u32;
                self.reinsert(k, old.slice(0, left));
            }
            if old_end > end {
                let skip = (end - k) as u32;
                self.reinsert(end, old.slice(skip, (old_end - end) as u32));
            }
        }
        self.index.insert(addr, e);
    }

    /// Puts back a remainder of an older entry (it overlaps nothing), aligned.
    fn reinsert(&mut self, addr: u64, e: Entry) {
        let mut off = 0u32;
        for s in split_aligned(addr, e.blocks, self.max_io_blocks) {
            self.index.insert(addr + u64::from(off), e.slice(off, s));
            off += s;
        }
    }

    /// Writes the padding, the index and the super, flushes, and returns the stream.
    pub fn finish(self) -> Result<W> {
        self.finish_with_stats().map(|(w, _)| w)
    }

    /// Like [`Self::finish`], also returning the statistics.
    pub fn finish_with_stats(mut self) -> Result<(W, WriteStats)> {
        self.check_usable()?;
        let n_records = u32::try_from(self.index.len()).map_err(|_| {
            Error::Invalid(format!(
                "{} index records do not fit an indexed wdiff",
                self.index.len()
            ))
        })?;
        let pad = (8 - (self.offset % 8) as usize) % 8;
        self.w
            .write_all(&[0u8; 8][..pad])
            .ctx(|| "writing the indexed wdiff padding".to_string())?;
        let index_offset = self.offset + pad as u64;
        let mut stats = WriteStats {
            data_bytes: self.data_bytes,
            ..WriteStats::default()
        };
        let mut buf = Vec::with_capacity(self.index.len().min(1 << 16) * INDEXED_RECORD_SIZE);
        for (&addr, e) in &self.index {
            let rec = IndexedRecord {
                addr,
                blocks: e.blocks,
                kind: e.kind,
                codec: e.codec,
                data_offset: e.data_offset,
                data_size: e.data_size,
                io_offset: e.io_offset,
                orig_blocks: e.orig_blocks,
                io_checksum: e.io_checksum,
                rec_checksum: 0,
            };
            buf.extend_from_slice(&rec.to_bytes());
            stats.count(e.kind, e.blocks);
            if buf.len() >= (1 << 20) {
                self.w
                    .write_all(&buf)
                    .ctx(|| "writing the indexed wdiff index".to_string())?;
                buf.clear();
            }
        }
        self.w
            .write_all(&buf)
            .ctx(|| "writing the indexed wdiff index".to_string())?;
        let sup = IndexSuper {
            index_offset,
            n_records,
            n_data: u32::try_from(self.n_data).unwrap_or(u32::MAX),
        };
        self.w
            .write_all(&sup.to_bytes())
            .ctx(|| "writing the indexed wdiff super".to_string())?;
        self.w
            .flush()
            .ctx(|| "flushing the indexed wdiff".to_string())?;
        stats.file_bytes = index_offset
            + u64::from(n_records) * INDEXED_RECORD_SIZE as u64
            + INDEX_SUPER_SIZE as u64;
        Ok((self.w, stats))
    }
}

#[cfg(test)]
mod tests;
