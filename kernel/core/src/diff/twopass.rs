//! Two-pass wlog → wdiff (SORTED or INDEXED) conversion for inputs that can be read at any offset.
//!
//! The streaming conversion ([`convert_packs`](super::convert::convert_packs)) compresses
//! every IO as the log goes by and can write nothing before the whole log was seen, so its
//! write phase runs alone at the end and overwritten data is compressed for nothing. When
//! the wlog is a file, two passes do better:
//!
//! ```text
//! pass 1: wlog --WlogReader (every checksum verified)--> WlogIndex
//!         addr -> (blocks, Data(file offset) | AllZero | Discard), newest wins, no data kept
//! pass 2: WlogIndex in address order --read (adjacent ranges joined)--> DiffIo
//!         --split_data_ios--> compress_ordered (parallel, order kept) --> push_stored
//! ```
//!
//! Pass 1 reads the log through the same [`WlogReader`] as the streaming path, so a corrupt
//! or truncated log fails with the same typed error before any output is written. All-zero
//! detection happens in pass 1, while the record's data is in memory. Pass 2 reads only
//! the surviving data, in address order: address-adjacent data extents are gathered into one
//! IO of at most the maximum IO size (reads of file-contiguous pieces are joined into one
//! read), adjacent all-zero or discard extents into one record. Reading, compressing and
//! writing then overlap as in [`write_sorted`].
//!
//! Memory holds the index only (a few dozen bytes per surviving extent) plus the pipeline's
//! bounded batches. The file must not change between the two passes: pass 2 reads the
//! offsets that pass 1 verified, and reports a file that became shorter as
//! [`Error::Incomplete`].

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::iter::Peekable;

use bytes::Bytes;

use super::convert::{write_indexed, write_sorted, ConvertOpt};
use super::io::DiffIo;
use crate::block::{is_all_zero, LBS_USIZE};
use crate::error::{Error, IoContext, Location, Result};
use crate::logpack::{LogPack, RecordKind};
use crate::wdiff::{WdiffKind, WriteStats, MAX_NORMAL_IO_BLOCKS};
use crate::wlog::{WlogHeader, WlogReader, WLOG_HEADER_BYTES};

/// Bytes of the buffered reader of pass 1. Small on purpose: the reader reads pack data in
/// growing chunks, and chunks at least this large bypass the buffer (one copy less); a 64 KiB
/// buffer took a fifth less CPU than a 1 MiB one on 4 MiB packs.
const PASS1_BUFFER: usize = 64 << 10;

/// Where the content of an extent comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Data blocks stored in the wlog file from this byte offset on.
    Data(u64),
    /// The range reads as zeros (a write whose data was all zero).
    AllZero,
    /// The range was discarded.
    Discard,
}

impl Source {
    /// The source of the same extent `blocks` logical blocks further on.
    fn skip(self, blocks: u32) -> Source {
        match self {
            Source::Data(off) => Source::Data(off + u64::from(blocks) * LBS_USIZE as u64),
            s => s,
        }
    }
}

/// `blocks` logical blocks of one source (the key of the map is the start address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    blocks: u32,
    source: Source,
}

/// The newest-wins address index of a wlog: for every block written, where its newest
/// content lies in the wlog file.
#[derive(Debug, Clone)]
pub struct WlogIndex {
    header: WlogHeader,
    map: BTreeMap<u64, Extent>,
    data_bytes: u64,
}

impl WlogIndex {
    /// An empty index of a wlog with `header`.
    pub(crate) fn new(header: WlogHeader) -> WlogIndex {
        WlogIndex {
            header,
            map: BTreeMap::new(),
            data_bytes: 0,
        }
    }

    /// Pass 1: reads the wlog (from its first byte) with every checksum verified and
    /// indexes its records. Corrupt or truncated logs give the reader's errors.
    pub fn build<R: Read>(wlog: R) -> Result<WlogIndex> {
        let mut rd = WlogReader::new(wlog)?;
        let mut index = WlogIndex::new(rd.header().clone());
        // The reader checked that every pack continues the previous one, so the byte offset
        // of a pack is the header plus the sizes of the packs before it.
        let pbs = rd.header().pbs.bytes() as u64;
        let mut offset = WLOG_HEADER_BYTES as u64;
        while let Some(pack) = rd.next_pack()? {
            let data_base = offset + pbs;
            index.add_pack(&pack, data_base)?;
            offset = data_base + u64::from(pack.header.total_io_size) * pbs;
            rd.recycle(pack);
        }
        Ok(index)
    }

    /// Indexes the records of `pack`, whose data area starts at byte `data_base` of the file.
    fn add_pack(&mut self, pack: &LogPack, data_base: u64) -> Result<()> {
        let h = &pack.header;
        for (i, r) in h.records.iter().enumerate() {
            let kind = r.kind();
            if kind == RecordKind::Padding {
                continue;
            }
            if r.offset.checked_add(u64::from(r.io_size)).is_none() {
                return Err(Error::corrupt(
                    "log record",
                    Location::Record {
                        index: i,
                        pack: h.logpack_lsid,
                        lsid: true,
                    },
                    format!("address {} + {} blocks overflows", r.offset, r.io_size),
                ));
            }
            let source = match kind {
                RecordKind::Discard => Source::Discard,
                _ => {
                    // As in the streaming path: a record without its data is skipped (the
                    // reader's data verification makes this unreachable).
                    let Some(range) = h.data_range(i).filter(|d| d.end <= pack.data.len()) else {
                        continue;
                    };
                    if is_all_zero(&pack.data[range.clone()]) {
                        Source::AllZero
                    } else {
                        Source::Data(data_base + range.start as u64)
                    }
                }
            };
            self.add(r.offset, r.io_size, source);
        }
        Ok(())
    }

    /// Adds an extent, newer than everything already indexed. `addr + blocks` must not
    /// overflow ([`WlogIndex::build`] checks it).
    pub(crate) fn add(&mut self, addr: u64, blocks: u32, source: Source) {
        if blocks == 0 {
            return;
        }
        let end = addr + u64::from(blocks);
        // Overlapped extents are contiguous: walk back from the last one starting before `end`.
        while let Some((&a, &old)) = self.map.range(..end).next_back() {
            let old_end = a + u64::from(old.blocks);
            if old_end <= addr {
                break;
            }
            self.map.remove(&a);
            self.account(old, false);
            if a < addr {
                self.insert((a, (addr - a) as u32, old.source));
            }
            if old_end > end {
                let cut = (end - a) as u32;
                self.insert((end, old.blocks - cut, old.source.skip(cut)));
            }
            if a <= addr {
                break;
            }
        }
        self.insert((addr, blocks, source));
    }

    fn insert(&mut self, (addr, blocks, source): (u64, u32, Source)) {
        let e = Extent { blocks, source };
        self.account(e, true);
        self.map.insert(addr, e);
    }

    fn account(&mut self, e: Extent, add: bool) {
        if let Source::Data(_) = e.source {
            let b = u64::from(e.blocks) * LBS_USIZE as u64;
            if add {
                self.data_bytes += b;
            } else {
                self.data_bytes -= b;
            }
        }
    }

    /// The wlog's file header.
    pub fn header(&self) -> &WlogHeader {
        &self.header
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of data that survive (what pass 2 reads).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The extents in address order: `(addr, blocks, source)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32, Source)> + '_ {
        self.map.iter().map(|(&a, e)| (a, e.blocks, e.source))
    }

    /// Pass 2's IOs: the extents in address order with their data read from `file`
    /// (adjacent extents of one kind joined, data IOs at most `max_blocks` long and never
    /// longer than a wdiff record may be, [`MAX_NORMAL_IO_BLOCKS`]). The reads move the
    /// file's cursor.
    pub fn into_ios(self, file: &File, max_blocks: u32) -> IndexedIos<'_> {
        IndexedIos {
            file,
            extents: self.map.into_iter().peekable(),
            rest: None,
            max: max_blocks.clamp(1, MAX_NORMAL_IO_BLOCKS),
            reads: Vec::new(),
        }
    }
}

/// The IOs of a [`WlogIndex`] in address order, data read from the wlog file
/// ([`WlogIndex::into_ios`]).
pub struct IndexedIos<'a> {
    file: &'a File,
    extents: Peekable<btree_map::IntoIter<u64, Extent>>,
    /// What is left of an extent cut at the maximum IO size.
    rest: Option<(u64, Extent)>,
    max: u32,
    /// `(file offset, bytes)` of the reads of the IO being built.
    reads: Vec<(u64, usize)>,
}

impl IndexedIos<'_> {
    fn next_extent(&mut self) -> Option<(u64, Extent)> {
        self.rest.take().or_else(|| self.extents.next())
    }

    /// The next extent if it starts at `addr` and satisfies `f`.
    fn next_adjacent(&mut self, addr: u64, f: impl Fn(&Extent) -> bool) -> Option<Extent> {
        if let Some((a, e)) = self.rest {
            return (a == addr && f(&e)).then(|| {
                self.rest = None;
                e
            });
        }
        self.extents
            .next_if(|(a, e)| *a == addr && f(e))
            .map(|(_, e)| e)
    }

    /// Gathers the data extents that start at `addr` with `first`, up to the maximum IO size.
    fn data_io(&mut self, addr: u64, first: Extent) -> Result<DiffIo> {
        self.reads.clear();
        let mut blocks = 0u32;
        let mut next = Some(first);
        while let Some(e) = next {
            let Source::Data(off) = e.source else {
                break; // next_adjacent only returns data extents
            };
            let take = e.blocks.min(self.max - blocks);
            if take < e.blocks {
                let at = addr + u64::from(blocks) + u64::from(take);
                self.rest = Some((
                    at,
                    Extent {
                        blocks: e.blocks - take,
                        source: e.source.skip(take),
                    },
                ));
            }
            let len = take as usize * LBS_USIZE;
            match self.reads.last_mut() {
                Some((o, n)) if *o + *n as u64 == off => *n += len,
                _ => self.reads.push((off, len)),
            }
            blocks += take;
            if blocks >= self.max {
                break;
            }
            next = self.next_adjacent(addr + u64::from(blocks), |e| {
                matches!(e.source, Source::Data(_))
            });
        }
        let mut buf = Vec::with_capacity(blocks as usize * LBS_USIZE);
        for &(off, n) in &self.reads {
            read_fully(self.file, &mut buf, off, n)?;
        }
        Ok(DiffIo::normal(addr, Bytes::from(buf)))
    }
}

/// Appends `n` bytes from byte `off` of `file` to `buf`; a file that ends first is
/// [`Error::Incomplete`]. The file's cursor is moved (the caller restores it): a read
/// through the cursor fills `buf`'s spare capacity as it is, where a positional read would
/// need it zeroed first.
fn read_fully(mut file: &File, buf: &mut Vec<u8>, off: u64, n: usize) -> Result<()> {
    let ctx = || format!("reading wlog data at byte offset {off}");
    file.seek(SeekFrom::Start(off)).ctx(ctx)?;
    let got = file.take(n as u64).read_to_end(buf).ctx(ctx)?;
    if got < n {
        return Err(Error::incomplete(
            "wlog record data (the file shrank after it was indexed)",
            Location::Offset(off),
            n as u64,
            got as u64,
        ));
    }
    Ok(())
}

impl Iterator for IndexedIos<'_> {
    type Item = Result<DiffIo>;

    fn next(&mut self) -> Option<Result<DiffIo>> {
        let (addr, first) = self.next_extent()?;
        match first.source {
            Source::Data(_) => Some(self.data_io(addr, first)),
            kind => {
                let mut blocks = first.blocks;
                while let Some(e) = self.next_adjacent(addr + u64::from(blocks), |e| {
                    e.source == kind && e.blocks <= u32::MAX - blocks
                }) {
                    blocks += e.blocks;
                }
                Some(Ok(if kind == Source::AllZero {
                    DiffIo::all_zero(addr, blocks)
                } else {
                    DiffIo::discard(addr, blocks)
                }))
            }
        }
    }
}

/// Converts the wlog file `wlog` into a wdiff of `opt.kind` written to `out` in two passes
/// (see the module docs), reading the file from its first byte whatever its cursor (which
/// is restored at the end). The uuid is the wlog header's; errors are those of
/// [`convert_wlog`](super::convert::convert_wlog) on the same bytes. The file must not
/// change during the conversion.
///
/// INDEXED output gets the same address-ordered, overlap-free IOs as SORTED output (an
/// indexed wdiff may hold its images in any order): nothing overwritten is compressed or
/// stored, where the streaming conversion appends every write of the log.
pub fn convert_wlog_file<W: Write + Send>(
    wlog: &File,
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)> {
    let mut f = wlog;
    let cursor = f
        .stream_position()
        .ctx(|| "reading the wlog file's position".to_string())?;
    let done = convert_from_start(wlog, out, opt);
    let restored = f
        .seek(SeekFrom::Start(cursor))
        .ctx(|| "restoring the wlog file's position".to_string());
    let done = done?;
    restored?;
    Ok(done)
}

/// [`convert_wlog_file`] without the cursor's restoration. Both passes read through the
/// file's cursor: `std`'s reads of a `File` fill a buffer's spare capacity without zeroing it
/// first, positional reads cannot.
fn convert_from_start<W: Write + Send>(
    wlog: &File,
    out: W,
    opt: &ConvertOpt,
) -> Result<(W, WriteStats)> {
    let mut f = wlog;
    f.seek(SeekFrom::Start(0))
        .ctx(|| "seeking to the start of the wlog file".to_string())?;
    let index = WlogIndex::build(BufReader::with_capacity(PASS1_BUFFER, wlog))?;
    let uuid = index.header().uuid;
    let ios = index.into_ios(wlog, opt.max_io_blocks);
    match opt.kind {
        WdiffKind::Sorted => write_sorted(ios, uuid, out, opt),
        WdiffKind::Indexed => write_indexed(ios, uuid, out, opt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Pbs;
    use crate::diff::io::IoData;
    use crate::diff::mem::DiffMemory;
    use crate::wlog::NO_END_LSID;
    use proptest::prelude::*;

    fn header() -> WlogHeader {
        WlogHeader {
            salt: 0,
            pbs: Pbs::B512,
            uuid: [0; 16],
            begin_lsid: 0,
            end_lsid: NO_END_LSID,
        }
    }

    /// The data of a block at file offset `off`: its offset, so that every block differs.
    fn tag(off: u64) -> u8 {
        (off / 512 % 251) as u8
    }

    proptest! {
        /// The index agrees with [`DiffMemory`] fed the same IOs, offsets standing for data.
        #[test]
        fn index_is_newest_wins_like_diff_memory(
            ios in proptest::collection::vec((0u64..300, 1u32..80, 0u8..6), 1..60)
        ) {
            let mut idx = WlogIndex::new(header());
            let mut mem = DiffMemory::new();
            let mut off = 0u64;
            for &(a, n, t) in &ios {
                let (src, io) = match t {
                    0 => (Source::Discard, DiffIo::discard(a, n)),
                    1 => (Source::AllZero, DiffIo::all_zero(a, n)),
                    _ => {
                        let data: Vec<u8> = (0..u64::from(n))
                            .flat_map(|b| [tag(off + b * 512); 512])
                            .collect();
                        (Source::Data(off), DiffIo::normal(a, Bytes::from(data)))
                    }
                };
                off += u64::from(n) * 512;
                idx.add(a, n, src);
                mem.add(io);
            }
            prop_assert_eq!(idx.data_bytes(), mem.data_bytes());
            let got: Vec<(u64, u32, Source)> = idx.iter().collect();
            prop_assert_eq!(got.len(), mem.len());
            for ((a, n, s), io) in got.into_iter().zip(mem.iter()) {
                prop_assert_eq!((a, n), (io.addr, io.blocks));
                match (s, &io.data) {
                    (Source::Discard, IoData::Discard) | (Source::AllZero, IoData::AllZero) => {}
                    (Source::Data(o), IoData::Normal(d)) => {
                        for b in 0..n as usize {
                            prop_assert_eq!(d[b * 512], tag(o + b as u64 * 512));
                        }
                    }
                    other => prop_assert!(false, "{other:?}"),
                }
            }
        }
    }

    #[test]
    fn pass_two_joins_adjacent_extents_and_cuts_at_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let bytes: Vec<u8> = (0..64u64).flat_map(|b| [b as u8; 512]).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut idx = WlogIndex::new(header());
        // Blocks 100..110 from file blocks 0..10, 110..113 from 20..23 (adjacent address,
        // not adjacent in the file), a zero run split in two, a discard, a lone data extent.
        idx.add(100, 10, Source::Data(0));
        idx.add(110, 3, Source::Data(20 * 512));
        idx.add(113, 2, Source::AllZero);
        idx.add(115, 2, Source::AllZero);
        idx.add(117, 1, Source::Discard);
        idx.add(200, 1, Source::Data(40 * 512));
        let ios: Vec<DiffIo> = idx.into_ios(&file, 8).collect::<Result<Vec<_>>>().unwrap();
        let shape: Vec<(u64, u32, bool)> = ios
            .iter()
            .map(|i| (i.addr, i.blocks, i.is_normal()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (100, 8, true),
                (108, 5, true),
                (113, 4, false),
                (117, 1, false),
                (200, 1, true)
            ]
        );
        let IoData::Normal(d) = &ios[1].data else {
            panic!("data expected")
        };
        let firsts: Vec<u8> = d.chunks(512).map(|c| c[0]).collect();
        assert_eq!(firsts, vec![8, 9, 20, 21, 22]);
        assert_eq!(ios[2].data, IoData::AllZero);
        assert_eq!(ios[3].data, IoData::Discard);
        // A file shorter than the index says: incomplete.
        let mut idx = WlogIndex::new(header());
        idx.add(0, 4, Source::Data(62 * 512));
        let err = idx.into_ios(&file, 8).next().unwrap().unwrap_err();
        assert!(err.is_incomplete(), "{err}");
    }

    #[test]
    fn the_file_is_read_from_its_start_and_its_cursor_restored() {
        use crate::gen::WlogGen;
        use std::io::{Seek, Write};
        let mut file = tempfile::tempfile().unwrap();
        let mut g = WlogGen::new(4096, 1 << 20);
        g.zero_pct = 10;
        g.write(&mut file).unwrap();
        file.flush().unwrap();
        let opt = ConvertOpt::default();
        file.seek(SeekFrom::Start(0)).unwrap();
        let (from_start, _) = convert_wlog_file(&file, Vec::new(), &opt).unwrap();
        assert_eq!(file.stream_position().unwrap(), 0);
        file.seek(SeekFrom::Start(12345)).unwrap();
        let (elsewhere, _) = convert_wlog_file(&file, Vec::new(), &opt).unwrap();
        assert_eq!(file.stream_position().unwrap(), 12345);
        assert!(elsewhere == from_start);
        assert!(from_start.len() > 4096);
    }

    #[test]
    fn joined_data_ios_never_exceed_a_wdiff_record() {
        // Log records are at most 65535 blocks, so the streaming path never needs more than
        // a wdiff record holds, whatever the maximum IO size; joined extents must not either.
        let file = tempfile::tempfile().unwrap();
        file.set_len(80_000 * 512).unwrap();
        let mut idx = WlogIndex::new(header());
        idx.add(0, 40_000, Source::Data(0));
        idx.add(40_000, 40_000, Source::Data(40_000 * 512));
        let sizes: Vec<u32> = idx
            .into_ios(&file, u32::MAX)
            .map(|io| io.unwrap().blocks)
            .collect();
        assert_eq!(
            sizes,
            vec![MAX_NORMAL_IO_BLOCKS, 80_000 - MAX_NORMAL_IO_BLOCKS]
        );
    }
}
