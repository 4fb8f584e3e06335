//! The log device (ldev): superblock, ring buffer layout, and reading packs from the ring.
//!
//! ```text
//! bytes [0, 4096)            reserved
//! byte 4096                  superblock (one physical block, checksum with salt 0)
//! next pb                    superblock 1 slot (never used)
//! pb 4096/pbs + 2 onwards    ring buffer of ring_buffer_size physical blocks
//! ```
//!
//! The ring position of an lsid is arithmetic: `ring_offset + lsid % ring_buffer_size`. No
//! record's data wraps around the ring end (the driver pads), but a pack as a whole can
//! (its header in the last block, its data from block 0), so every block position is
//! computed on its own. [`LdevReader`] walks packs from a start lsid, verifying everything of
//! walb-driver.md §7.2, either up to a known end (`permanent`: any invalid pack is an error)
//! or, as redo does, until the first invalid pack (a torn last pack is cut at its first
//! invalid record).

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use crate::block::{le, Pbs, LBS, PAGE_SIZE};
use crate::checksum::checksum;
use crate::error::{Error, IoContext, Location, Result};
use crate::logpack::{LogPack, LogPackHeader, INVALID_LSID};
use crate::wlog::WALB_LOG_VERSION;

/// Sector type of the superblock.
pub const SECTOR_TYPE_SUPER: u16 = 0x0001;
/// Byte offset of superblock 0.
pub const SUPER_OFFSET: u64 = PAGE_SIZE;
/// Length of the device name field.
pub const DISK_NAME_LEN: usize = 32;
/// Bytes of the superblock structure (the rest of its block is zero).
pub const SUPER_BYTES: usize = 104;

/// Random-access reads, implemented for files, block devices and in-memory images.
pub trait ReadAt {
    /// Fills `buf` from byte offset `off`; a short device is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()>;
    /// Size in bytes.
    fn size(&self) -> std::io::Result<u64>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, off)
    }
    fn size(&self) -> std::io::Result<u64> {
        // Works for block devices too, whose metadata length is 0.
        let mut f = self;
        f.seek(SeekFrom::End(0))
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len() as u64);
        match end {
            Some(e) => {
                buf.copy_from_slice(&self[off as usize..e as usize]);
                Ok(())
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the image",
            )),
        }
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        self.as_slice().read_exact_at(buf, off)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// The superblock of a log device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperBlock {
    /// Physical block size.
    pub pbs: Pbs,
    /// Stored checksum.
    pub checksum: u32,
    /// Salt of log pack and IO checksums.
    pub salt: u32,
    /// uuid of the log sequence.
    pub uuid: [u8; 16],
    /// Device name (up to 31 bytes).
    pub name: String,
    /// Ring buffer size in physical blocks.
    pub ring_buffer_size: u64,
    /// Logs before this lsid may be overwritten.
    pub oldest_lsid: u64,
    /// Redo starts here: everything before it is on the data device.
    pub written_lsid: u64,
    /// Size of the WalB device in logical blocks.
    pub device_size: u64,
}

impl SuperBlock {
    /// Physical block index of the first ring block.
    #[inline]
    pub fn ring_offset_pb(&self) -> u64 {
        ring_offset_pb(self.pbs)
    }

    /// Byte offset on the ldev of the block holding `lsid`.
    #[inline]
    pub fn offset_of_lsid(&self, lsid: u64) -> u64 {
        (self.ring_offset_pb() + lsid % self.ring_buffer_size) * u64::from(self.pbs.get())
    }

    /// Creates a fresh superblock for an ldev of `ldev_bytes` bytes, with a random salt and
    /// uuid, as `format-ldev` does.
    pub fn format(
        pbs: Pbs,
        ldev_bytes: u64,
        device_size_lb: u64,
        name: &str,
    ) -> Result<SuperBlock> {
        if name.len() >= DISK_NAME_LEN || name.bytes().any(|b| b == 0) {
            return Err(Error::Invalid(format!(
                "device name {name:?} must be at most {} bytes without NUL",
                DISK_NAME_LEN - 1
            )));
        }
        let total_pb = ldev_bytes / u64::from(pbs.get());
        let off = ring_offset_pb(pbs);
        if total_pb <= off {
            return Err(Error::Invalid(format!(
                "log device of {ldev_bytes} bytes is too small for pbs {pbs}"
            )));
        }
        Ok(SuperBlock {
            pbs,
            checksum: 0,
            salt: rand::random(),
            uuid: rand::random(),
            name: name.to_string(),
            ring_buffer_size: total_pb - off,
            oldest_lsid: 0,
            written_lsid: 0,
            device_size: device_size_lb,
        })
    }

    /// Parses and validates a superblock block (walb-driver.md §7.2, item 1).
    ///
    /// The physical block size is taken from the block itself; pass `expected_pbs` to
    /// require a value (the medium's).
    pub fn parse(b: &[u8], expected_pbs: Option<Pbs>) -> Result<SuperBlock> {
        const WHAT: &str = "superblock";
        let at = Location::Offset(SUPER_OFFSET);
        if b.len() < SUPER_BYTES.max(512) {
            return Err(Error::incomplete(WHAT, at, 512, b.len() as u64));
        }
        let bad = |d: String| Error::corrupt(WHAT, at, d);
        let st = le::u16(b, 0);
        if st != SECTOR_TYPE_SUPER {
            return Err(bad(format!(
                "sector type {st:#06x}, expected {SECTOR_TYPE_SUPER:#06x}"
            )));
        }
        let ver = le::u16(b, 2);
        if ver != WALB_LOG_VERSION {
            return Err(bad(format!("version {ver}, expected {WALB_LOG_VERSION}")));
        }
        let lbs = le::u32(b, 8);
        if lbs != LBS {
            return Err(bad(format!("logical block size {lbs}, expected {LBS}")));
        }
        let pbs = Pbs::new(le::u32(b, 12)).map_err(|e| bad(e.to_string()))?;
        if let Some(e) = expected_pbs {
            if e != pbs {
                return Err(bad(format!(
                    "physical block size {pbs}, the device has {e}"
                )));
            }
        }
        if b.len() < pbs.bytes() {
            return Err(Error::incomplete(
                WHAT,
                at,
                pbs.bytes() as u64,
                b.len() as u64,
            ));
        }
        let block = &b[..pbs.bytes()];
        if !crate::checksum::verifies(block, 0) {
            return Err(bad(format!(
                "checksum {:08x} does not verify",
                le::u32(b, 4)
            )));
        }
        let metadata_size = le::u32(b, 16);
        if metadata_size != 0 {
            return Err(bad(format!(
                "metadata_size {metadata_size} (deprecated snapshot area) is not supported"
            )));
        }
        let name_raw = &b[40..40 + DISK_NAME_LEN];
        let Some(nul) = name_raw.iter().position(|&c| c == 0) else {
            return Err(bad("device name is not NUL-terminated".into()));
        };
        let name = String::from_utf8_lossy(&name_raw[..nul]).into_owned();
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[24..40]);
        let sb = SuperBlock {
            pbs,
            checksum: le::u32(b, 4),
            salt: le::u32(b, 20),
            uuid,
            name,
            ring_buffer_size: le::u64(b, 72),
            oldest_lsid: le::u64(b, 80),
            written_lsid: le::u64(b, 88),
            device_size: le::u64(b, 96),
        };
        if sb.ring_buffer_size == 0 {
            return Err(bad("ring buffer size is 0".into()));
        }
        if sb.oldest_lsid == INVALID_LSID || sb.written_lsid == INVALID_LSID {
            return Err(bad("an lsid is the invalid value u64::MAX".into()));
        }
        if sb.oldest_lsid > sb.written_lsid {
            return Err(bad(format!(
                "oldest lsid {} is after written lsid {}",
                sb.oldest_lsid, sb.written_lsid
            )));
        }
        Ok(sb)
    }

    /// Serialises into a physical block with a fresh checksum (also stored in `self`).
    pub fn to_block(&mut self) -> Vec<u8> {
        let mut b = vec![0u8; self.pbs.bytes()];
        le::put_u16(&mut b, 0, SECTOR_TYPE_SUPER);
        le::put_u16(&mut b, 2, WALB_LOG_VERSION);
        le::put_u32(&mut b, 8, LBS);
        le::put_u32(&mut b, 12, self.pbs.get());
        le::put_u32(&mut b, 20, self.salt);
        b[24..40].copy_from_slice(&self.uuid);
        let n = self.name.len().min(DISK_NAME_LEN - 1);
        b[40..40 + n].copy_from_slice(&self.name.as_bytes()[..n]);
        le::put_u64(&mut b, 72, self.ring_buffer_size);
        le::put_u64(&mut b, 80, self.oldest_lsid);
        le::put_u64(&mut b, 88, self.written_lsid);
        le::put_u64(&mut b, 96, self.device_size);
        self.checksum = checksum(&b, 0);
        le::put_u32(&mut b, 4, self.checksum);
        b
    }

    /// Reads and validates the superblock of an ldev.
    pub fn read<D: ReadAt + ?Sized>(dev: &D) -> Result<SuperBlock> {
        let size = dev.size().ctx(|| "sizing the log device".into())?;
        let avail = size.saturating_sub(SUPER_OFFSET).min(65536) as usize;
        if avail < 512 {
            return Err(Error::incomplete(
                "superblock",
                Location::Offset(SUPER_OFFSET),
                512,
                avail as u64,
            ));
        }
        let mut b = vec![0u8; avail];
        dev.read_exact_at(&mut b, SUPER_OFFSET)
            .ctx(|| "reading the superblock".into())?;
        let sb = SuperBlock::parse(&b, None)?;
        let ring_end =
            (sb.ring_offset_pb() + sb.ring_buffer_size).checked_mul(u64::from(sb.pbs.get()));
        if ring_end.is_none_or(|e| e > size) {
            return Err(Error::corrupt(
                "superblock",
                Location::Offset(SUPER_OFFSET),
                format!(
                    "ring buffer of {} blocks does not fit a {size}-byte device",
                    sb.ring_buffer_size
                ),
            ));
        }
        Ok(sb)
    }

    /// The `wldev-info`-style description.
    pub fn describe(&self) -> String {
        format!(
            "sectorType: {SECTOR_TYPE_SUPER}\nversion: {WALB_LOG_VERSION}\nchecksum: {}\nlbs: {LBS}\npbs: {}\nmetadataSize: 0\nsalt: {}\nname: {}\nringBufferSize: {}\noldestLsid: {}\nwrittenLsid: {}\ndeviceSize: {}\nringBufferOffset: {}\nuuid: {}\n",
            self.checksum,
            self.pbs,
            self.salt,
            self.name,
            self.ring_buffer_size,
            self.oldest_lsid,
            self.written_lsid,
            self.device_size,
            self.ring_offset_pb(),
            crate::wlog::uuid_hex(&self.uuid),
        )
    }
}

/// First ring block for `pbs` (no metadata area).
#[inline]
pub fn ring_offset_pb(pbs: Pbs) -> u64 {
    SUPER_OFFSET / u64::from(pbs.get()) + 2
}

/// How [`LdevReader`] treats the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdevEnd {
    /// Read up to this lsid (e.g. `permanent`); any invalid pack before it is an error.
    Known(u64),
    /// Read until the first invalid pack, as redo does; a torn last pack is cut at its first
    /// invalid record. Reading never goes further than one ring's worth of blocks.
    Scan,
}

/// Walks the log packs stored in an ldev's ring.
pub struct LdevReader<'a, D: ReadAt + ?Sized> {
    dev: &'a D,
    sb: SuperBlock,
    lsid: u64,
    start: u64,
    end: LdevEnd,
    done: bool,
}

impl<'a, D: ReadAt + ?Sized> LdevReader<'a, D> {
    /// Starts at `start` (at least the superblock's oldest lsid unless `allow_before_oldest`).
    pub fn new(
        dev: &'a D,
        sb: SuperBlock,
        start: u64,
        end: LdevEnd,
        allow_before_oldest: bool,
    ) -> Result<Self> {
        if !allow_before_oldest && start < sb.oldest_lsid {
            return Err(Error::Invalid(format!(
                "start lsid {start} is before the oldest lsid {}: those logs may be overwritten",
                sb.oldest_lsid
            )));
        }
        if let LdevEnd::Known(e) = end {
            if e < start {
                return Err(Error::Invalid(format!(
                    "end lsid {e} is before start lsid {start}"
                )));
            }
            if e - start > sb.ring_buffer_size {
                return Err(Error::Invalid(format!(
                    "lsid range [{start}, {e}) is longer than the ring buffer ({} blocks): its start was overwritten",
                    sb.ring_buffer_size
                )));
            }
        }
        Ok(LdevReader {
            dev,
            sb,
            lsid: start,
            start,
            end,
            done: false,
        })
    }

    /// The superblock.
    pub fn superblock(&self) -> &SuperBlock {
        &self.sb
    }

    /// lsid after the last pack returned.
    pub fn end_lsid(&self) -> u64 {
        self.lsid
    }

    fn read_blocks(&self, lsid: u64, n: u64) -> Result<Vec<u8>> {
        let pbs = u64::from(self.sb.pbs.get());
        let mut buf = vec![0u8; (n * pbs) as usize];
        let mut done = 0u64;
        while done < n {
            let l = lsid + done;
            let pos = l % self.sb.ring_buffer_size;
            let run = (self.sb.ring_buffer_size - pos).min(n - done);
            let off = self.sb.offset_of_lsid(l);
            let s = (done * pbs) as usize;
            let e = ((done + run) * pbs) as usize;
            self.dev
                .read_exact_at(&mut buf[s..e], off)
                .ctx(|| format!("reading lsid {l} at byte offset {off} of the log device"))?;
            done += run;
        }
        Ok(buf)
    }

    /// Reads the next pack, or `None` at the end of the range / log.
    pub fn next_pack(&mut self) -> Result<Option<LogPack>> {
        if self.done {
            return Ok(None);
        }
        let lsid = self.lsid;
        let scan = self.end == LdevEnd::Scan;
        if let LdevEnd::Known(e) = self.end {
            if lsid >= e {
                self.done = true;
                return Ok(None);
            }
        }
        if lsid - self.start >= self.sb.ring_buffer_size {
            self.done = true;
            return Ok(None);
        }
        let block = self.read_blocks(lsid, 1)?;
        let header = match LogPackHeader::parse(&block, self.sb.pbs, self.sb.salt, Some(lsid)) {
            Ok(h) if h.n_records() > 0 => h,
            Ok(_) if scan => {
                self.done = true;
                return Ok(None);
            }
            Ok(_) => {
                self.done = true;
                return Err(Error::corrupt(
                    "log pack header",
                    Location::Lsid(lsid),
                    "pack has no records inside the log range",
                ));
            }
            Err(_) if scan => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        let next = header.next_lsid();
        let limit = match self.end {
            LdevEnd::Known(e) => e,
            LdevEnd::Scan => self.start + self.sb.ring_buffer_size,
        };
        if next > limit {
            self.done = true;
            if scan {
                return Ok(None);
            }
            return Err(Error::corrupt(
                "log pack header",
                Location::Lsid(lsid),
                format!("pack ends at lsid {next}, past the end of the range {limit}"),
            ));
        }
        let data = self.read_blocks(lsid + 1, u64::from(header.total_io_size))?;
        let mut pack = LogPack {
            header,
            data: Bytes::from(data),
        };
        if scan {
            if pack.shrink_to_valid() {
                self.done = true;
                if pack.header.n_records() == 0 {
                    return Ok(None);
                }
                // Refresh the checksum of the cut header.
                pack.header.to_block();
            }
        } else if let Err(e) = pack.verify_data() {
            self.done = true;
            return Err(e);
        }
        self.lsid = pack.header.next_lsid();
        Ok(Some(pack))
    }
}

impl<D: ReadAt + ?Sized> Iterator for LdevReader<'_, D> {
    type Item = Result<LogPack>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_pack().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logpack::{AddOutcome, LogPackBuilder};

    /// Builds an ldev image holding `writes` starting at `start` lsid.
    fn image(
        pbs: Pbs,
        ring_pb: u64,
        start: u64,
        writes: &[(u64, usize)],
    ) -> (Vec<u8>, SuperBlock, u64) {
        let size = (ring_offset_pb(pbs) + ring_pb) * u64::from(pbs.get());
        let mut img = vec![0u8; size as usize];
        let mut sb = SuperBlock::format(pbs, size, 1 << 20, "t").unwrap();
        sb.oldest_lsid = start;
        sb.written_lsid = start;
        let blk = sb.to_block();
        img[SUPER_OFFSET as usize..SUPER_OFFSET as usize + blk.len()].copy_from_slice(&blk);
        let mut b = LogPackBuilder::new(pbs, sb.salt, start, Some(sb.ring_buffer_size));
        let mut packs = Vec::new();
        for &(off, lb) in writes {
            let data: Vec<u8> = (0..lb * 512).map(|i| (i as u64 ^ off) as u8).collect();
            loop {
                match b.add_write(off, &data).unwrap() {
                    AddOutcome::Added => break,
                    AddOutcome::Full => packs.push(b.finish()),
                }
            }
            if b.header().n_records() >= 3 {
                packs.push(b.finish());
            }
        }
        if !b.is_empty() {
            packs.push(b.finish());
        }
        let mut end = start;
        for mut p in packs {
            let l = p.header.logpack_lsid;
            let hb = p.header.to_block();
            let put = |img: &mut Vec<u8>, lsid: u64, bytes: &[u8]| {
                let o = sb.offset_of_lsid(lsid) as usize;
                img[o..o + bytes.len()].copy_from_slice(bytes);
            };
            put(&mut img, l, &hb);
            for i in 0..u64::from(p.header.total_io_size) {
                let s = (i * u64::from(pbs.get())) as usize;
                put(&mut img, l + 1 + i, &p.data[s..s + pbs.bytes()]);
            }
            end = p.header.next_lsid();
        }
        (img, sb, end)
    }

    #[test]
    fn superblock_round_trip_and_checks() {
        for pbs in [Pbs::B512, Pbs::B4096] {
            let mut sb = SuperBlock::format(pbs, 1 << 30, 12345, "vol").unwrap();
            let blk = sb.to_block();
            assert_eq!(checksum(&blk, 0), 0);
            let back = SuperBlock::parse(&blk, Some(pbs)).unwrap();
            assert_eq!(back, sb);
            let expected_ring = (1u64 << 30) / u64::from(pbs.get()) - ring_offset_pb(pbs);
            assert_eq!(sb.ring_buffer_size, expected_ring);
            let mut bad = blk.clone();
            bad[50] ^= 1;
            assert!(SuperBlock::parse(&bad, None).unwrap_err().is_corrupt());
        }
        assert_eq!(ring_offset_pb(Pbs::B512), 10);
        assert_eq!(ring_offset_pb(Pbs::B4096), 3);
    }

    #[test]
    fn reads_across_ring_wrap() {
        for pbs in [Pbs::B512, Pbs::B4096] {
            let ring = 64;
            let writes: Vec<(u64, usize)> = (0..30)
                .map(|i| (i * 16, 1 + (i as usize * 5) % 9))
                .collect();
            let (img, sb, end) = image(pbs, ring, 1000 - 7, &writes[..12]);
            let rd = LdevReader::new(&img, sb.clone(), sb.oldest_lsid, LdevEnd::Known(end), false)
                .unwrap();
            let packs: Vec<_> = rd.collect::<Result<Vec<_>>>().unwrap();
            let normal: Vec<_> = packs
                .iter()
                .flat_map(|p| {
                    p.header
                        .records
                        .iter()
                        .filter(|r| r.is_normal())
                        .map(|r| (r.offset, r.io_size as usize))
                })
                .collect();
            assert_eq!(
                normal,
                writes[..12]
                    .iter()
                    .map(|&(o, l)| (o, l))
                    .collect::<Vec<_>>()
            );
            // Scan mode finds the same end.
            let mut rd =
                LdevReader::new(&img, sb.clone(), sb.oldest_lsid, LdevEnd::Scan, false).unwrap();
            while rd.next_pack().unwrap().is_some() {}
            assert_eq!(rd.end_lsid(), end);
            // A range longer than the ring is refused.
            assert!(LdevReader::new(
                &img,
                sb.clone(),
                sb.oldest_lsid,
                LdevEnd::Known(sb.oldest_lsid + ring + 1),
                false
            )
            .is_err());
        }
    }

    #[test]
    fn torn_last_pack_is_cut_in_scan_mode_and_an_error_in_range_mode() {
        let pbs = Pbs::B512;
        let (mut img, sb, end) = image(pbs, 256, 0, &[(0, 2), (8, 3), (16, 4), (32, 2)]);
        // Corrupt the data of the last record.
        let off = sb.offset_of_lsid(end - 1) as usize;
        img[off] ^= 0xff;
        let rd = LdevReader::new(&img, sb.clone(), 0, LdevEnd::Known(end), false).unwrap();
        let err = rd.collect::<Result<Vec<_>>>().unwrap_err();
        assert!(err.is_corrupt(), "{err}");
        let mut rd = LdevReader::new(&img, sb.clone(), 0, LdevEnd::Scan, false).unwrap();
        let mut n = 0;
        while let Some(p) = rd.next_pack().unwrap() {
            p.verify_data().unwrap();
            n += p.header.n_records();
        }
        assert_eq!(n, 3);
        assert!(rd.end_lsid() < end);
    }
}
