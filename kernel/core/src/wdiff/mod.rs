//! wdiff files, version 2, byte-compatible with walb-tools 1.0.19.
//!
//! A wdiff holds the blocks changed between two snapshots of a volume, as a set of
//! non-overlapping IOs (address ranges in 512-byte logical blocks) of three kinds: normal
//! (with data, each record compressed on its own, see [`crate::compress`]), all-zero and
//! discard. Every file starts with the 32-byte [`WdiffHeader`] and comes in one of two
//! layouts:
//!
//! - **SORTED** ([`sorted`]): the header, then packs (a 4 KiB pack header with up to
//!   [`MAX_PACK_RECORDS`] 32-byte records, followed by the records' stored data, at most
//!   [`MAX_PACK_DATA`] bytes), then an end pack. Records are address-sorted across the file.
//!   Streams well; written by converters and merges.
//! - **INDEXED** ([`indexed`]): the header, compressed images in arrival order, zero padding
//!   to 8 bytes, an index of 48-byte records sorted by address, and a 24-byte super at EOF.
//!   Written in one pass from unsorted IOs (newest wins), read with random access.
//!
//! # Reading
//!
//! [`WdiffReader::open`] detects the layout from the header and yields the file's IOs in
//! address order, decompressed, as [`DiffIo`]s (an enum over the two readers that is itself
//! an `Iterator<Item = Result<DiffIo>> + Send`); [`open_wdiff`] boxes it. Readers verify
//! every checksum (header, pack or index records, record data) and every structural rule,
//! and report [`Error::Incomplete`] for a truncated file and [`Error::Corrupt`] for a broken
//! rule, naming the byte offset or the record ([`Location::Record`] with `lsid: false`).
//! After an error an iterator yields nothing more.
//!
//! # Writing
//!
//! [`sorted::SortedDiffWriter`] takes IOs in address order; [`indexed::IndexedDiffWriter`]
//! takes them in any order and keeps the newest data for every block. Both compress each
//! normal IO on its own with a [`CompressOpt`](crate::compress::CompressOpt) and store it uncompressed when compression
//! does not shrink it; both can also take records that are already stored ([`StoredIo`]),
//! to copy diffs without recompressing.
//!
//! # Listing
//!
//! [`show`] prints the exact text of walb-tools' `wdiff-show`.

pub mod indexed;
pub mod show;
pub mod sorted;

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use bytes::Bytes;

use crate::block::le;
use crate::checksum::checksum;
use crate::compress::{Codec, Decompressor};
use crate::diff::io::{DiffIo, IoData};
use crate::error::{Error, IoContext, Location, Result};

pub use indexed::{IndexedDiffReader, IndexedDiffWriter, IndexedRecord};
pub use sorted::{SortedDiffReader, SortedDiffWriter, SortedRecord};

/// The wdiff format version this module reads and writes.
pub const WDIFF_VERSION: u16 = 2;
/// Size of the file header.
pub const HEADER_SIZE: usize = 32;
/// Size of a sorted pack header block.
pub const PACK_HEADER_SIZE: usize = 4096;
/// Size of the fixed part of a pack header (before the records).
pub const PACK_FIXED_SIZE: usize = 16;
/// Size of a sorted record.
pub const RECORD_SIZE: usize = 32;
/// Size of an indexed record.
pub const INDEXED_RECORD_SIZE: usize = 48;
/// Size of the index super at the end of an indexed wdiff.
pub const INDEX_SUPER_SIZE: usize = 24;
/// Most records in one sorted pack: `(4096 - 16) / 32`.
pub const MAX_PACK_RECORDS: usize = (PACK_HEADER_SIZE - PACK_FIXED_SIZE) / RECORD_SIZE;
/// Most data bytes in one sorted pack (a single record may exceed it only if alone).
pub const MAX_PACK_DATA: u32 = 32 << 20;
/// Default largest IO, in logical blocks, when producing diffs (1 MiB).
pub const DEFAULT_MAX_IO_BLOCKS: u32 = 2048;
/// Largest normal IO (uncompressed image) a reader accepts and a writer emits, in logical
/// blocks: 32 MiB, what one WalB log record can carry. Writers split larger normal IOs.
/// Discard and all-zero records are not limited (they carry no data).
pub const MAX_NORMAL_IO_BLOCKS: u32 = 65536;

/// Record flag bit: the record exists (walb-tools 1.0.19 no longer sets nor checks it).
pub const FLAG_EXIST: u8 = 1 << 0;
/// Record flag bit: the range reads as zeros.
pub const FLAG_ALLZERO: u8 = 1 << 1;
/// Record flag bit: the range was discarded.
pub const FLAG_DISCARD: u8 = 1 << 2;

/// The layout of a wdiff file (the header's `type` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WdiffKind {
    /// Packs of address-sorted records (type 0).
    Sorted,
    /// Images plus a sorted index at the end (type 1).
    Indexed,
}

impl WdiffKind {
    /// The on-disk type byte.
    pub fn as_u8(self) -> u8 {
        match self {
            WdiffKind::Sorted => 0,
            WdiffKind::Indexed => 1,
        }
    }

    /// The name `wdiff-show` prints: "sorted" or "indexed".
    pub fn name(self) -> &'static str {
        match self {
            WdiffKind::Sorted => "sorted",
            WdiffKind::Indexed => "indexed",
        }
    }
}

/// The 32-byte file header: `u32 checksum` (of the 32 bytes, salt 0), `u16 version` (2),
/// `u8 type`, `u8 reserved`, `u32 reserved` (the former `max_io_blocks`), `u32 reserved`,
/// `u8 uuid[16]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WdiffHeader {
    /// The layout.
    pub kind: WdiffKind,
    /// uuid of the source WalB device.
    pub uuid: [u8; 16],
}

impl WdiffHeader {
    /// A header.
    pub fn new(kind: WdiffKind, uuid: [u8; 16]) -> WdiffHeader {
        WdiffHeader { kind, uuid }
    }

    /// The 32 bytes of this header, checksum included (reserved fields zero).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        le::put_u16(&mut b, 4, WDIFF_VERSION);
        b[6] = self.kind.as_u8();
        b[16..32].copy_from_slice(&self.uuid);
        let c = checksum(&b, 0);
        le::put_u32(&mut b, 0, c);
        b
    }

    /// Parses and verifies a header from the first 32 bytes of `buf`.
    ///
    /// Returns the header and the checksum stored in it. Nonzero reserved fields are
    /// accepted (they are covered by the checksum).
    pub fn parse(buf: &[u8]) -> Result<(WdiffHeader, u32)> {
        const WHAT: &str = "wdiff header";
        let at = Location::Offset(0);
        let Some(b) = buf.get(..HEADER_SIZE) else {
            return Err(Error::incomplete(
                WHAT,
                at,
                HEADER_SIZE as u64,
                buf.len() as u64,
            ));
        };
        if !crate::checksum::verifies(b, 0) {
            return Err(Error::corrupt(WHAT, at, "checksum mismatch"));
        }
        let version = le::u16(b, 4);
        if version != WDIFF_VERSION {
            return Err(Error::corrupt(
                WHAT,
                at,
                format!("version {version}, expected {WDIFF_VERSION}"),
            ));
        }
        let kind = match b[6] {
            0 => WdiffKind::Sorted,
            1 => WdiffKind::Indexed,
            t => return Err(Error::corrupt(WHAT, at, format!("unknown type {t}"))),
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[16..32]);
        Ok((WdiffHeader { kind, uuid }, le::u32(b, 0)))
    }

    /// Reads and verifies the header from the current position of `r` (assumed offset 0).
    pub fn read_from<R: Read>(r: &mut R) -> Result<(WdiffHeader, u32)> {
        let mut b = [0u8; HEADER_SIZE];
        read_full(r, &mut b, "wdiff header", Location::Offset(0))?;
        WdiffHeader::parse(&b)
    }

    /// The uuid as 32 lower-case hex digits (as `wdiff-show` prints it).
    pub fn uuid_hex(&self) -> String {
        self.uuid.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Data blocks.
    Normal,
    /// Zeros.
    AllZero,
    /// Discarded.
    Discard,
}

impl RecordKind {
    /// Decodes the flags byte. Both ALLZERO and DISCARD set is invalid (`None`); the EXIST
    /// bit and unknown bits are ignored, as walb-tools does.
    pub fn from_flags(flags: u8) -> Option<RecordKind> {
        match (flags & FLAG_ALLZERO != 0, flags & FLAG_DISCARD != 0) {
            (false, false) => Some(RecordKind::Normal),
            (true, false) => Some(RecordKind::AllZero),
            (false, true) => Some(RecordKind::Discard),
            (true, true) => None,
        }
    }

    /// The flags byte walb-tools 1.0.19 writes (EXIST not set).
    pub fn flags(self) -> u8 {
        match self {
            RecordKind::Normal => 0,
            RecordKind::AllZero => FLAG_ALLZERO,
            RecordKind::Discard => FLAG_DISCARD,
        }
    }

    /// The two-character flag column of `wdiff-show`: `--`, `Z-` or `-D`.
    pub fn show_flags(self) -> &'static str {
        match self {
            RecordKind::Normal => "--",
            RecordKind::AllZero => "Z-",
            RecordKind::Discard => "-D",
        }
    }

    /// The kind of a [`DiffIo`].
    pub fn of(io: &DiffIo) -> RecordKind {
        match io.data {
            IoData::Normal(_) => RecordKind::Normal,
            IoData::AllZero => RecordKind::AllZero,
            IoData::Discard => RecordKind::Discard,
        }
    }
}

/// A diff IO whose data is kept as stored in a file (possibly compressed).
///
/// Lets diffs be copied between files without recompressing: see
/// [`SortedDiffReader::next_stored`], [`SortedDiffWriter::push_stored`] and
/// [`IndexedDiffWriter::push_stored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIo {
    /// Start address in logical blocks.
    pub addr: u64,
    /// Length in logical blocks (> 0).
    pub blocks: u32,
    /// What the IO is.
    pub kind: RecordKind,
    /// Codec of `data` (`None` for all-zero and discard).
    pub codec: Codec,
    /// The stored bytes: `blocks * 512` bytes for `Codec::None`, compressed otherwise,
    /// empty for all-zero and discard.
    pub data: Bytes,
}

impl StoredIo {
    /// One past the last logical block.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(u64::from(self.blocks))
    }

    /// Decompresses into a [`DiffIo`].
    pub fn decompress(self, dec: &mut Decompressor) -> Result<DiffIo> {
        let data = match self.kind {
            RecordKind::AllZero => IoData::AllZero,
            RecordKind::Discard => IoData::Discard,
            RecordKind::Normal => {
                let len = normal_len(self.blocks)?;
                if self.codec == Codec::None {
                    if self.data.len() != len {
                        return Err(Error::corrupt(
                            "stored IO",
                            Location::None,
                            format!("{} bytes for {} blocks", self.data.len(), self.blocks),
                        ));
                    }
                    IoData::Normal(self.data)
                } else {
                    let mut out = Vec::new();
                    dec.decompress(self.codec, &self.data, len, &mut out)?;
                    IoData::Normal(Bytes::from(out))
                }
            }
        };
        Ok(DiffIo {
            addr: self.addr,
            blocks: self.blocks,
            data,
        })
    }
}

/// Uncompressed byte length of a normal IO of `blocks` blocks, refusing oversized ones.
fn normal_len(blocks: u32) -> Result<usize> {
    if blocks == 0 || blocks > MAX_NORMAL_IO_BLOCKS {
        return Err(Error::corrupt(
            "stored IO",
            Location::None,
            format!("normal IO of {blocks} blocks (1..={MAX_NORMAL_IO_BLOCKS} allowed)"),
        ));
    }
    Ok(blocks as usize * crate::block::LBS_USIZE)
}

/// Checks a [`DiffIo`] handed to a writer: nonzero length, no address overflow, and
/// `blocks * 512` data bytes for a normal IO.
fn check_io(io: &DiffIo) -> Result<()> {
    if io.blocks == 0 {
        return Err(Error::Invalid(format!(
            "diff IO at {} has zero blocks",
            io.addr
        )));
    }
    if io.addr.checked_add(u64::from(io.blocks)).is_none() {
        return Err(Error::Invalid(format!(
            "diff IO at {} of {} blocks overflows the address space",
            io.addr, io.blocks
        )));
    }
    if let IoData::Normal(d) = &io.data {
        if d.len() as u64 != u64::from(io.blocks) * u64::from(crate::block::LBS) {
            return Err(Error::Invalid(format!(
                "diff IO at {} of {} blocks carries {} bytes",
                io.addr,
                io.blocks,
                d.len()
            )));
        }
    }
    Ok(())
}

/// Checks a [`StoredIo`] handed to a writer.
fn check_stored(io: &StoredIo) -> Result<()> {
    if io.blocks == 0 || io.addr.checked_add(u64::from(io.blocks)).is_none() {
        return Err(Error::Invalid(format!(
            "stored IO at {} of {} blocks is empty or overflows",
            io.addr, io.blocks
        )));
    }
    match io.kind {
        RecordKind::Normal => {
            if io.blocks > MAX_NORMAL_IO_BLOCKS {
                return Err(Error::Invalid(format!(
                    "stored normal IO of {} blocks exceeds {MAX_NORMAL_IO_BLOCKS}",
                    io.blocks
                )));
            }
            if io.data.is_empty() || io.data.len() > u32::MAX as usize {
                return Err(Error::Invalid(format!(
                    "stored normal IO at {} has {} data bytes",
                    io.addr,
                    io.data.len()
                )));
            }
            if io.codec == Codec::None && io.data.len() != io.blocks as usize * 512 {
                return Err(Error::Invalid(format!(
                    "uncompressed stored IO at {} of {} blocks has {} bytes",
                    io.addr,
                    io.blocks,
                    io.data.len()
                )));
            }
        }
        RecordKind::AllZero | RecordKind::Discard => {
            if !io.data.is_empty() {
                return Err(Error::Invalid(format!(
                    "{:?} stored IO at {} carries data",
                    io.kind, io.addr
                )));
            }
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes; a short read is [`Error::Incomplete`] at `at`.
pub(crate) fn read_full<R: Read + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
    at: Location,
) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(Error::incomplete(what, at, buf.len() as u64, got as u64)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("reading {what} at {at}"), e)),
        }
    }
    Ok(())
}

/// Reads exactly `len` bytes into a fresh buffer without zero-filling it first.
pub(crate) fn read_vec<R: Read + ?Sized>(
    r: &mut R,
    len: usize,
    what: &'static str,
    at: Location,
) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(len);
    let n = r
        .take(len as u64)
        .read_to_end(&mut v)
        .ctx(|| format!("reading {what} at {at}"))?;
    if n != len {
        return Err(Error::incomplete(what, at, len as u64, n as u64));
    }
    Ok(v)
}

/// Moves an error produced without a position (codec errors) to `at`.
pub(crate) fn relocate(e: Error, what: &'static str, at: Location) -> Error {
    match e {
        Error::Corrupt { detail, .. } => Error::Corrupt { what, at, detail },
        Error::Incomplete { needed, got, .. } => Error::Incomplete {
            what,
            at,
            needed,
            got,
        },
        other => other,
    }
}

/// Reads any wdiff: an address-ordered stream of decompressed [`DiffIo`]s.
///
/// Detects SORTED or INDEXED from the header. Implements
/// `Iterator<Item = Result<DiffIo>>` (and is `Send` when `R` is).
#[derive(Debug)]
pub enum WdiffReader<R: Read + Seek> {
    /// A sorted wdiff.
    Sorted(SortedDiffReader<R>),
    /// An indexed wdiff.
    Indexed(IndexedDiffReader<R>),
}

impl WdiffReader<BufReader<File>> {
    /// Opens the wdiff at `path`.
    ///
    /// The buffer is small on purpose: a sorted reader reads each pack's data in one call,
    /// which bypasses a buffer smaller than it (no copy through the buffer).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f = File::open(path).ctx(|| format!("opening wdiff {}", path.display()))?;
        WdiffReader::new(BufReader::with_capacity(64 << 10, f))
    }
}

impl<R: Read + Seek> WdiffReader<R> {
    /// Reads the header at the start of `r` (which must be positioned at offset 0) and
    /// prepares the matching reader.
    pub fn new(mut r: R) -> Result<Self> {
        let (header, csum) = WdiffHeader::read_from(&mut r)?;
        match header.kind {
            WdiffKind::Sorted => Ok(WdiffReader::Sorted(SortedDiffReader::after_header(
                r, header, csum,
            ))),
            WdiffKind::Indexed => Ok(WdiffReader::Indexed(IndexedDiffReader::new(r)?)),
        }
    }

    /// The file header.
    pub fn header(&self) -> &WdiffHeader {
        match self {
            WdiffReader::Sorted(s) => s.header(),
            WdiffReader::Indexed(i) => i.header(),
        }
    }

    /// The next IO, or `None` at the end.
    pub fn next_io(&mut self) -> Result<Option<DiffIo>> {
        match self {
            WdiffReader::Sorted(s) => s.next_io(),
            WdiffReader::Indexed(i) => i.next_io(),
        }
    }
}

impl<R: Read + Seek> Iterator for WdiffReader<R> {
    type Item = Result<DiffIo>;

    fn next(&mut self) -> Option<Result<DiffIo>> {
        match self {
            WdiffReader::Sorted(s) => s.next(),
            WdiffReader::Indexed(i) => i.next(),
        }
    }
}

/// Opens the wdiff at `path` as a boxed address-ordered stream of decompressed IOs.
pub fn open_wdiff(
    path: impl AsRef<Path>,
) -> Result<Box<dyn Iterator<Item = Result<DiffIo>> + Send>> {
    Ok(Box::new(WdiffReader::open(path)?))
}

/// Statistics of a writer, returned by `finish`-style accessors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Records written (after splitting).
    pub records: u64,
    /// Logical blocks of normal records.
    pub normal_blocks: u64,
    /// Logical blocks of all-zero records.
    pub allzero_blocks: u64,
    /// Logical blocks of discard records.
    pub discard_blocks: u64,
    /// Stored (compressed) data bytes.
    pub data_bytes: u64,
    /// Total bytes written to the file.
    pub file_bytes: u64,
}

impl WriteStats {
    fn count(&mut self, kind: RecordKind, blocks: u32) {
        self.records += 1;
        let b = u64::from(blocks);
        match kind {
            RecordKind::Normal => self.normal_blocks += b,
            RecordKind::AllZero => self.allzero_blocks += b,
            RecordKind::Discard => self.discard_blocks += b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let h = WdiffHeader::new(WdiffKind::Indexed, [7; 16]);
        let b = h.to_bytes();
        let (p, c) = WdiffHeader::parse(&b).unwrap();
        assert_eq!(p, h);
        assert_eq!(c, le::u32(&b, 0));
        assert_eq!(checksum(&b, 0), 0);
        assert!(WdiffHeader::parse(&b[..31]).unwrap_err().is_incomplete());
        for i in 0..HEADER_SIZE {
            let mut f = b;
            f[i] ^= 0x10;
            assert!(WdiffHeader::parse(&f).unwrap_err().is_corrupt());
        }
        // Version and type are checked after the checksum.
        let mut v = b;
        v[4] = 3;
        le::put_u32(&mut v, 0, 0);
        let c = checksum(&v, 0);
        le::put_u32(&mut v, 0, c);
        assert!(WdiffHeader::parse(&v).unwrap_err().is_corrupt());
        assert_eq!(MAX_PACK_RECORDS, 127);
    }

    #[test]
    fn flags() {
        assert_eq!(RecordKind::from_flags(0), Some(RecordKind::Normal));
        assert_eq!(RecordKind::from_flags(FLAG_EXIST), Some(RecordKind::Normal));
        assert_eq!(RecordKind::from_flags(2), Some(RecordKind::AllZero));
        assert_eq!(RecordKind::from_flags(4 | 1), Some(RecordKind::Discard));
        assert_eq!(RecordKind::from_flags(6), None);
    }
}
