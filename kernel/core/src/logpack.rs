//! Log packs: the unit of the WalB log.
//!
//! A log pack is one header block (one physical block) followed by the data blocks of its
//! records. The header holds up to `(pbs - 24) / 32` records (15 for pbs 512, 127 for 4096):
//!
//! ```text
//! header (24 bytes): u32 checksum | u16 sector_type=3 | u16 total_io_size (pb)
//!                    | u64 logpack_lsid | u16 n_records | u16 n_padding | u32 reserved
//! record (32 bytes): u32 checksum | u32 flags | u64 offset (lb) | u32 io_size (lb)
//!                    | u16 lsid_local | u16 reserved | u64 lsid
//! ```
//!
//! The header checksum covers the whole block with the device salt; a normal record's
//! checksum covers exactly `io_size * 512` bytes of its data with the same salt. Discard
//! records carry no data; a padding record fills the ring up to its end so that no record's
//! data wraps. Parsing enforces every rule of walb-driver.md §7.2 (item 4) plus the data
//! contiguity rule, and names the lsid and record of the first violation.

use bytes::Bytes;

use crate::block::{le, Pbs, LBS_USIZE};
use crate::checksum::checksum;
use crate::error::{Error, Location, Result};

/// Sector type of a log pack header.
pub const SECTOR_TYPE_LOGPACK: u16 = 0x0003;
/// The invalid lsid (u64::MAX); also the lsid of the end marker of wlog files.
pub const INVALID_LSID: u64 = u64::MAX;
/// The largest valid lsid.
pub const MAX_LSID: u64 = u64::MAX - 1;
/// Largest `total_io_size` of a pack, in physical blocks.
pub const MAX_TOTAL_IO_SIZE: u32 = 65535;
/// Largest normal IO, in logical blocks.
pub const MAX_NORMAL_IO_LB: u32 = 65535;
/// Size of the fixed part of the header.
pub const HEADER_FIXED_BYTES: usize = 24;
/// Size of one record.
pub const RECORD_BYTES: usize = 32;

/// Record flag: the record exists.
pub const FLAG_EXIST: u32 = 1 << 0;
/// Record flag: padding.
pub const FLAG_PADDING: u32 = 1 << 1;
/// Record flag: discard.
pub const FLAG_DISCARD: u32 = 1 << 2;

/// Records a header block of `pbs` bytes can hold.
#[inline]
pub fn max_records(pbs: Pbs) -> usize {
    (pbs.bytes() - HEADER_FIXED_BYTES) / RECORD_BYTES
}

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A write with data.
    Normal,
    /// A discard (no data).
    Discard,
    /// Padding up to the end of the ring (data blocks are garbage).
    Padding,
}

/// One log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord {
    /// Checksum of the IO data (0 for padding and discard).
    pub checksum: u32,
    /// Raw flags (`FLAG_*`).
    pub flags: u32,
    /// Target address on the device, in logical blocks (0 for padding).
    pub offset: u64,
    /// Size in logical blocks.
    pub io_size: u32,
    /// `lsid - logpack_lsid`, at least 1.
    pub lsid_local: u16,
    /// lsid where the data starts.
    pub lsid: u64,
}

impl LogRecord {
    /// The kind of this record (padding wins over discard, as in walb-tools).
    #[inline]
    pub fn kind(&self) -> RecordKind {
        if self.flags & FLAG_PADDING != 0 {
            RecordKind::Padding
        } else if self.flags & FLAG_DISCARD != 0 {
            RecordKind::Discard
        } else {
            RecordKind::Normal
        }
    }

    /// True for a normal (data-carrying, checksummed) record.
    #[inline]
    pub fn is_normal(&self) -> bool {
        self.kind() == RecordKind::Normal
    }

    /// Physical blocks of data this record occupies in the log (0 for discards).
    #[inline]
    pub fn data_pb(&self, pbs: Pbs) -> u64 {
        match self.kind() {
            RecordKind::Discard => 0,
            _ => pbs.capacity_pb(u64::from(self.io_size)),
        }
    }

    /// `E`/`P`/`D` flag letters as walb-tools prints them (`EP-`, `E-D`, ...).
    pub fn flag_letters(&self) -> String {
        let f = |bit, c| if self.flags & bit != 0 { c } else { '-' };
        [
            f(FLAG_EXIST, 'E'),
            f(FLAG_PADDING, 'P'),
            f(FLAG_DISCARD, 'D'),
        ]
        .iter()
        .collect()
    }

    fn parse(b: &[u8]) -> LogRecord {
        LogRecord {
            checksum: le::u32(b, 0),
            flags: le::u32(b, 4),
            offset: le::u64(b, 8),
            io_size: le::u32(b, 16),
            lsid_local: le::u16(b, 20),
            lsid: le::u64(b, 24),
        }
    }

    fn write(&self, b: &mut [u8]) {
        le::put_u32(b, 0, self.checksum);
        le::put_u32(b, 4, self.flags);
        le::put_u64(b, 8, self.offset);
        le::put_u32(b, 16, self.io_size);
        le::put_u16(b, 20, self.lsid_local);
        le::put_u16(b, 22, 0);
        le::put_u64(b, 24, self.lsid);
    }
}

/// A parsed and validated log pack header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPackHeader {
    /// Physical block size of the log.
    pub pbs: Pbs,
    /// Checksum salt of the log.
    pub salt: u32,
    /// Stored header checksum.
    pub checksum: u32,
    /// Physical blocks of data after the header (padding included, discards excluded).
    pub total_io_size: u16,
    /// lsid of the header block.
    pub logpack_lsid: u64,
    /// Number of padding records (0 or 1).
    pub n_padding: u16,
    /// The records.
    pub records: Vec<LogRecord>,
}

impl LogPackHeader {
    /// An empty header at `lsid`.
    pub fn new(pbs: Pbs, salt: u32, lsid: u64) -> LogPackHeader {
        LogPackHeader {
            pbs,
            salt,
            checksum: 0,
            total_io_size: 0,
            logpack_lsid: lsid,
            n_padding: 0,
            records: Vec::new(),
        }
    }

    /// The end marker of wlog files.
    pub fn end_marker(pbs: Pbs, salt: u32) -> LogPackHeader {
        LogPackHeader::new(pbs, salt, INVALID_LSID)
    }

    /// True for the wlog end marker (no records, lsid u64::MAX).
    #[inline]
    pub fn is_end(&self) -> bool {
        self.records.is_empty() && self.logpack_lsid == INVALID_LSID
    }

    /// Number of records.
    #[inline]
    pub fn n_records(&self) -> usize {
        self.records.len()
    }

    /// lsid of the next pack.
    #[inline]
    pub fn next_lsid(&self) -> u64 {
        if self.records.is_empty() {
            self.logpack_lsid
        } else {
            self.logpack_lsid + 1 + u64::from(self.total_io_size)
        }
    }

    /// Physical blocks the pack occupies in the log (header + data), 0 for an empty pack.
    #[inline]
    pub fn pack_pb(&self) -> u64 {
        if self.records.is_empty() {
            0
        } else {
            1 + u64::from(self.total_io_size)
        }
    }

    /// Parses and validates a header block.
    ///
    /// `expected_lsid`, when given, must equal `logpack_lsid` (this is how stale packs left
    /// in the ring from an earlier lap are told apart). The end marker and zero-flush packs
    /// (no records) are accepted; their checksum is not verified, as in the driver.
    pub fn parse(
        block: &[u8],
        pbs: Pbs,
        salt: u32,
        expected_lsid: Option<u64>,
    ) -> Result<LogPackHeader> {
        const WHAT: &str = "log pack header";
        let at = Location::Lsid(expected_lsid.unwrap_or(INVALID_LSID));
        if block.len() < pbs.bytes() {
            return Err(Error::incomplete(
                WHAT,
                at,
                pbs.bytes() as u64,
                block.len() as u64,
            ));
        }
        let block = &block[..pbs.bytes()];
        let sector_type = le::u16(block, 4);
        if sector_type != SECTOR_TYPE_LOGPACK {
            return Err(Error::corrupt(
                WHAT,
                at,
                format!("sector type {sector_type:#06x}, expected {SECTOR_TYPE_LOGPACK:#06x}"),
            ));
        }
        let total_io_size = le::u16(block, 6);
        let logpack_lsid = le::u64(block, 8);
        let n_records = le::u16(block, 16) as usize;
        let n_padding = le::u16(block, 18);
        let at = Location::Lsid(expected_lsid.unwrap_or(logpack_lsid));
        let corrupt = |d: String| Error::corrupt(WHAT, at, d);
        if let Some(exp) = expected_lsid {
            if logpack_lsid != exp {
                return Err(corrupt(format!(
                    "logpack_lsid is {logpack_lsid}, expected {exp}"
                )));
            }
        }
        let stored = le::u32(block, 0);
        let mut h = LogPackHeader {
            pbs,
            salt,
            checksum: stored,
            total_io_size,
            logpack_lsid,
            n_padding,
            records: Vec::new(),
        };
        if n_records == 0 {
            if total_io_size != 0 || n_padding != 0 {
                return Err(corrupt(format!(
                    "no records but total_io_size {total_io_size} and n_padding {n_padding}"
                )));
            }
            return Ok(h);
        }
        if !crate::checksum::verifies(block, salt) {
            return Err(corrupt(format!(
                "header checksum {stored:08x} does not verify with salt {salt:08x}"
            )));
        }
        check_counts(pbs, logpack_lsid, total_io_size, n_records, n_padding).map_err(corrupt)?;
        let mut data_pb: u64 = 0;
        let mut paddings = 0u16;
        h.records.reserve_exact(n_records);
        for i in 0..n_records {
            let off = HEADER_FIXED_BYTES + i * RECORD_BYTES;
            let r = LogRecord::parse(&block[off..off + RECORD_BYTES]);
            check_record(&r, i, logpack_lsid, pbs, data_pb)?;
            let padding = r.flags & FLAG_PADDING != 0;
            if padding {
                paddings += 1;
            }
            data_pb += r.data_pb(pbs);
            h.records.push(r);
        }
        if paddings != n_padding {
            return Err(corrupt(format!(
                "n_padding {n_padding} but {paddings} padding records"
            )));
        }
        if data_pb != u64::from(total_io_size) {
            return Err(corrupt(format!(
                "total_io_size {total_io_size} but the records hold {data_pb} blocks"
            )));
        }
        Ok(h)
    }

    /// Serialises into a `pbs`-byte block with a fresh checksum (also stored in `self`).
    pub fn to_block(&mut self) -> Vec<u8> {
        let mut b = vec![0u8; self.pbs.bytes()];
        le::put_u16(&mut b, 4, SECTOR_TYPE_LOGPACK);
        le::put_u16(&mut b, 6, self.total_io_size);
        le::put_u64(&mut b, 8, self.logpack_lsid);
        le::put_u16(&mut b, 16, self.records.len() as u16);
        le::put_u16(&mut b, 18, self.n_padding);
        for (i, r) in self.records.iter().enumerate() {
            let off = HEADER_FIXED_BYTES + i * RECORD_BYTES;
            r.write(&mut b[off..off + RECORD_BYTES]);
        }
        self.checksum = checksum(&b, self.salt);
        le::put_u32(&mut b, 0, self.checksum);
        b
    }

    /// Byte range of record `i`'s data inside the pack's data area.
    ///
    /// Normal records: `io_size * 512` bytes; padding: its whole blocks; discard: `None`.
    pub fn data_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let r = self.records.get(i)?;
        let start = (usize::from(r.lsid_local) - 1) * self.pbs.bytes();
        match r.kind() {
            RecordKind::Discard => None,
            RecordKind::Normal => Some(start..start + r.io_size as usize * LBS_USIZE),
            RecordKind::Padding => {
                Some(start..start + r.data_pb(self.pbs) as usize * self.pbs.bytes())
            }
        }
    }

    /// Drops records from `i` on and recomputes sizes (used to cut a torn pack).
    pub fn shrink(&mut self, i: usize) {
        self.records.truncate(i);
        self.total_io_size = self
            .records
            .iter()
            .map(|r| r.data_pb(self.pbs))
            .sum::<u64>() as u16;
        self.n_padding = self
            .records
            .iter()
            .filter(|r| r.kind() == RecordKind::Padding)
            .count() as u16;
    }
}

/// Checks a pack header's counts: records that fit the block, at most one padding, an
/// end that does not overflow. The error says what is wrong.
#[inline]
fn check_counts(
    pbs: Pbs,
    logpack_lsid: u64,
    total_io_size: u16,
    n_records: usize,
    n_padding: u16,
) -> std::result::Result<(), String> {
    if n_records > max_records(pbs) {
        return Err(format!(
            "{n_records} records, at most {} fit a {pbs}-byte block",
            max_records(pbs)
        ));
    }
    if n_padding > 1 || usize::from(n_padding) > n_records {
        return Err(format!("n_padding {n_padding} with {n_records} records"));
    }
    if logpack_lsid
        .checked_add(1 + u64::from(total_io_size))
        .is_none()
    {
        return Err(format!(
            "pack end overflows: lsid {logpack_lsid} + {total_io_size}"
        ));
    }
    Ok(())
}

/// Checks record `i` of the pack at `logpack_lsid`, whose data starts `data_pb` blocks
/// into the pack: flags, sizes and lsids as the driver writes them.
#[inline]
fn check_record(r: &LogRecord, i: usize, logpack_lsid: u64, pbs: Pbs, data_pb: u64) -> Result<()> {
    let rat = Location::Record {
        index: i,
        pack: logpack_lsid,
        lsid: true,
    };
    let bad = |d: String| Error::corrupt("log record", rat, d);
    if r.flags & FLAG_EXIST == 0 {
        return Err(bad(format!("EXIST flag missing (flags {:#x})", r.flags)));
    }
    let padding = r.flags & FLAG_PADDING != 0;
    let discard = r.flags & FLAG_DISCARD != 0;
    if padding && discard {
        return Err(bad("both PADDING and DISCARD are set".into()));
    }
    if !padding && r.io_size == 0 {
        return Err(bad("io_size is 0".into()));
    }
    if !discard && r.io_size > MAX_NORMAL_IO_LB * if padding { pbs.lb_per_pb() } else { 1 } {
        return Err(bad(format!(
            "io_size {} exceeds the maximum of a normal IO",
            r.io_size
        )));
    }
    if r.lsid_local == 0 {
        return Err(bad("lsid_local is 0".into()));
    }
    if r.lsid > MAX_LSID || r.lsid.wrapping_sub(u64::from(r.lsid_local)) != logpack_lsid {
        return Err(bad(format!(
            "lsid {} - lsid_local {} != logpack_lsid {logpack_lsid}",
            r.lsid, r.lsid_local
        )));
    }
    if u64::from(r.lsid_local) != 1 + data_pb {
        return Err(bad(format!(
            "data not contiguous: lsid_local {}, expected {}",
            r.lsid_local,
            1 + data_pb
        )));
    }
    Ok(())
}

/// A log pack with its data area (`total_io_size` physical blocks).
#[derive(Debug, Clone)]
pub struct LogPack {
    /// The header.
    pub header: LogPackHeader,
    /// The data blocks that follow the header.
    pub data: Bytes,
}

impl LogPack {
    /// Data of record `i`: `io_size * 512` bytes for a normal record, the whole blocks of a
    /// padding record, `None` for a discard.
    pub fn record_data(&self, i: usize) -> Option<Bytes> {
        let r = self.header.data_range(i)?;
        (r.end <= self.data.len()).then(|| self.data.slice(r))
    }

    /// Index of the first normal record whose data checksum does not verify.
    pub fn first_invalid_record(&self) -> Option<usize> {
        let h = &self.header;
        (0..h.records.len()).find(|&i| {
            let r = &h.records[i];
            if !r.is_normal() {
                return false;
            }
            match h.data_range(i) {
                Some(range) if range.end <= self.data.len() => {
                    !crate::checksum::matches(&self.data[range], h.salt, r.checksum)
                }
                _ => true,
            }
        })
    }

    /// Verifies every normal record's data checksum.
    pub fn verify_data(&self) -> Result<()> {
        let need = u64::from(self.header.total_io_size) * self.header.pbs.bytes() as u64;
        if (self.data.len() as u64) < need {
            return Err(Error::incomplete(
                "log pack data",
                Location::Lsid(self.header.logpack_lsid + 1),
                need,
                self.data.len() as u64,
            ));
        }
        if let Some(i) = self.first_invalid_record() {
            let r = &self.header.records[i];
            return Err(Error::corrupt(
                "log record data",
                Location::Record {
                    index: i,
                    pack: self.header.logpack_lsid,
                    lsid: true,
                },
                format!(
                    "checksum of {} blocks at lsid {} does not match {:08x}",
                    r.io_size, r.lsid, r.checksum
                ),
            ));
        }
        Ok(())
    }

    /// Cuts the pack before its first record whose data is invalid (a torn write).
    /// Returns true when something was cut.
    pub fn shrink_to_valid(&mut self) -> bool {
        match self.first_invalid_record() {
            Some(i) => {
                self.header.shrink(i);
                let keep = self.header.total_io_size as usize * self.header.pbs.bytes();
                self.data.truncate(keep);
                true
            }
            None => false,
        }
    }
}

/// Builds log packs record by record, the way the driver does (§1.7, §1.8).
///
/// With a ring size, a write whose data would cross the ring end is preceded by a padding
/// record. Call [`LogPackBuilder::finish`] to take the pack and start the next one.
#[derive(Debug)]
pub struct LogPackBuilder {
    header: LogPackHeader,
    data: Vec<u8>,
    ring_size: Option<u64>,
}

/// Why a record did not fit the current pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// The record was added.
    Added,
    /// The pack is full; finish it and add the record to a new pack.
    Full,
}

impl LogPackBuilder {
    /// Starts a pack at `lsid`. `ring_size` (pb) enables padding at the ring end.
    pub fn new(pbs: Pbs, salt: u32, lsid: u64, ring_size: Option<u64>) -> LogPackBuilder {
        LogPackBuilder {
            header: LogPackHeader::new(pbs, salt, lsid),
            data: Vec::new(),
            ring_size,
        }
    }

    /// The header built so far.
    pub fn header(&self) -> &LogPackHeader {
        &self.header
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.header.records.is_empty()
    }

    fn next_data_lsid(&self) -> u64 {
        self.header.logpack_lsid + 1 + u64::from(self.header.total_io_size)
    }

    fn push(&mut self, flags: u32, offset: u64, io_size: u32, csum: u32) {
        let lsid_local = (1 + self.header.total_io_size as u64) as u16;
        let r = LogRecord {
            checksum: csum,
            flags: FLAG_EXIST | flags,
            offset,
            io_size,
            lsid_local,
            lsid: self.header.logpack_lsid + u64::from(lsid_local),
        };
        self.header.total_io_size += r.data_pb(self.header.pbs) as u16;
        if flags & FLAG_PADDING != 0 {
            self.header.n_padding += 1;
        }
        self.header.records.push(r);
    }

    /// Adds a write of `data` (a non-empty multiple of 512 bytes, at most 65535 lb) at
    /// logical block `offset`.
    pub fn add_write(&mut self, offset: u64, data: &[u8]) -> Result<AddOutcome> {
        if data.is_empty()
            || data.len() % LBS_USIZE != 0
            || data.len() / LBS_USIZE > MAX_NORMAL_IO_LB as usize
        {
            return Err(Error::Invalid(format!(
                "write of {} bytes is not 1..=65535 logical blocks",
                data.len()
            )));
        }
        let pbs = self.header.pbs;
        let io_size = (data.len() / LBS_USIZE) as u32;
        let n = pbs.capacity_pb(u64::from(io_size));
        let max = max_records(pbs);
        if self.header.records.len() >= max {
            return Ok(AddOutcome::Full);
        }
        let mut pad = 0u64;
        if let Some(ring) = self.ring_size {
            let room = ring - self.next_data_lsid() % ring;
            if room < n {
                pad = room;
            }
        }
        if pad > 0 && self.header.n_padding > 0 {
            // A pack holds at most one padding record: on a ring smaller than a pack's
            // data, the write that would need a second one starts the next pack.
            return Ok(AddOutcome::Full);
        }
        let records = self.header.records.len();
        let total = u64::from(self.header.total_io_size);
        let limit = u64::from(MAX_TOTAL_IO_SIZE);
        let fits = records + usize::from(pad > 0) < max && total + pad + n <= limit;
        if !fits {
            // As the driver does: a padding that still fits closes this pack, so the write
            // starts the next pack with its header at ring position 0.
            if pad > 0 && records < max && total + pad <= limit {
                self.add_padding(pad);
            }
            return Ok(AddOutcome::Full);
        }
        if pad > 0 {
            self.add_padding(pad);
        }
        let csum = checksum(data, self.header.salt);
        self.push(0, offset, io_size, csum);
        self.data.extend_from_slice(data);
        self.data
            .resize(self.data.len() + (n as usize * pbs.bytes() - data.len()), 0);
        Ok(AddOutcome::Added)
    }

    fn add_padding(&mut self, pad: u64) {
        let pbs = self.header.pbs;
        self.push(FLAG_PADDING, 0, pbs.pb_to_lb(pad) as u32, 0);
        self.data
            .resize(self.data.len() + pad as usize * pbs.bytes(), 0);
    }

    /// Adds a discard of `io_size` logical blocks at `offset`.
    pub fn add_discard(&mut self, offset: u64, io_size: u32) -> Result<AddOutcome> {
        if io_size == 0 {
            return Err(Error::Invalid("discard of 0 blocks".into()));
        }
        if self.header.records.len() >= max_records(self.header.pbs) {
            return Ok(AddOutcome::Full);
        }
        self.push(FLAG_DISCARD, offset, io_size, 0);
        Ok(AddOutcome::Added)
    }

    /// Takes the finished pack and starts the next one at its end lsid.
    pub fn finish(&mut self) -> LogPack {
        let next = self.header.next_lsid();
        let fresh = LogPackHeader::new(self.header.pbs, self.header.salt, next);
        let mut header = std::mem::replace(&mut self.header, fresh);
        header.to_block();
        LogPack {
            header,
            data: Bytes::from(std::mem::take(&mut self.data)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n_lb: usize, seed: u8) -> Vec<u8> {
        (0..n_lb * 512)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn build_parse_round_trip_both_pbs() {
        for pbs in [Pbs::B512, Pbs::B4096] {
            let mut b = LogPackBuilder::new(pbs, 0xabcd, 100, None);
            assert_eq!(b.add_write(8, &data(3, 1)).unwrap(), AddOutcome::Added);
            assert_eq!(b.add_discard(1000, 70000).unwrap(), AddOutcome::Added);
            assert_eq!(b.add_write(64, &data(8, 2)).unwrap(), AddOutcome::Added);
            let mut pack = b.finish();
            let block = pack.header.to_block();
            let h = LogPackHeader::parse(&block, pbs, 0xabcd, Some(100)).unwrap();
            assert_eq!(h, pack.header);
            pack.verify_data().unwrap();
            assert_eq!(pack.record_data(0).unwrap().len(), 3 * 512);
            assert!(pack.record_data(1).is_none());
            assert_eq!(
                h.next_lsid(),
                100 + 1 + pbs.capacity_pb(3) + pbs.capacity_pb(8)
            );
            // Wrong expected lsid, wrong salt, flipped byte.
            assert!(LogPackHeader::parse(&block, pbs, 0xabcd, Some(101))
                .unwrap_err()
                .is_corrupt());
            assert!(LogPackHeader::parse(&block, pbs, 0xabce, Some(100))
                .unwrap_err()
                .is_corrupt());
            let mut bad = block.clone();
            bad[30] ^= 4;
            assert!(LogPackHeader::parse(&bad, pbs, 0xabcd, Some(100))
                .unwrap_err()
                .is_corrupt());
            assert!(LogPackHeader::parse(&block[..100], pbs, 0xabcd, Some(100))
                .unwrap_err()
                .is_incomplete());
            // Torn data.
            let mut torn = pack.clone();
            let mut d = torn.data.to_vec();
            let last = d.len() - 1; // the last data byte belongs to record 2
            d[last] ^= 1;
            torn.data = Bytes::from(d);
            assert_eq!(torn.first_invalid_record(), Some(2));
            assert!(torn.shrink_to_valid());
            assert_eq!(torn.header.n_records(), 2);
            torn.verify_data().unwrap();
        }
    }

    #[test]
    fn record_limits() {
        let mut b = LogPackBuilder::new(Pbs::B512, 1, 0, None);
        for i in 0..15 {
            assert_eq!(b.add_write(i, &data(1, 0)).unwrap(), AddOutcome::Added);
        }
        assert_eq!(b.add_write(99, &data(1, 0)).unwrap(), AddOutcome::Full);
        let mut p = b.finish();
        let blk = p.header.to_block();
        assert_eq!(
            LogPackHeader::parse(&blk, Pbs::B512, 1, Some(0))
                .unwrap()
                .n_records(),
            15
        );
        assert_eq!(max_records(Pbs::B4096), 127);
    }

    #[test]
    fn padding_at_ring_end() {
        // pbs 4096, ring 1000 pb, pack at 1998 (ring pos 998), a 16 KiB write.
        let mut b = LogPackBuilder::new(Pbs::B4096, 9, 1998, Some(1000));
        assert_eq!(b.add_write(0, &data(32, 3)).unwrap(), AddOutcome::Added);
        let mut p = b.finish();
        let h = &p.header;
        assert_eq!(h.records[0].kind(), RecordKind::Padding);
        assert_eq!(
            (
                h.records[0].lsid,
                h.records[0].lsid_local,
                h.records[0].io_size
            ),
            (1999, 1, 8)
        );
        assert_eq!(
            (
                h.records[1].lsid,
                h.records[1].lsid_local,
                h.records[1].io_size
            ),
            (2000, 2, 32)
        );
        assert_eq!(h.total_io_size, 5);
        assert_eq!(h.next_lsid(), 2004);
        let blk = p.header.to_block();
        LogPackHeader::parse(&blk, Pbs::B4096, 9, Some(1998)).unwrap();
        p.verify_data().unwrap();
    }

    #[test]
    fn small_ring_never_gets_two_paddings_in_one_pack() {
        // A ring of 700 pb with 64 KiB writes wraps twice within what one pack could hold.
        let mut b = LogPackBuilder::new(Pbs::B512, 7, 0, Some(700));
        let mut packs = 0;
        for i in 0..200u64 {
            loop {
                match b.add_write(i * 128, &data(128, i as u8)).unwrap() {
                    AddOutcome::Added => break,
                    AddOutcome::Full => {
                        let mut p = b.finish();
                        let lsid = p.header.logpack_lsid;
                        let blk = p.header.to_block();
                        let h = LogPackHeader::parse(&blk, Pbs::B512, 7, Some(lsid)).unwrap();
                        assert!(h.n_padding <= 1);
                        p.verify_data().unwrap();
                        packs += 1;
                    }
                }
            }
        }
        assert!(packs > 10, "{packs}");
    }

    #[test]
    fn empty_and_end_marker() {
        let mut e = LogPackHeader::end_marker(Pbs::B512, 5);
        let blk = e.to_block();
        let h = LogPackHeader::parse(&blk, Pbs::B512, 5, None).unwrap();
        assert!(h.is_end());
        let mut bad = blk.clone();
        bad[6] = 1; // total_io_size with no records
        assert!(LogPackHeader::parse(&bad, Pbs::B512, 5, None)
            .unwrap_err()
            .is_corrupt());
    }
}
