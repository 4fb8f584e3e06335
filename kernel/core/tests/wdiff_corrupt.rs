//! wdiff readers against damaged input, and writer/reader round trips.
//!
//! - a file cut anywhere is `Incomplete`; a flipped byte is `Corrupt` (for INDEXED files a
//!   damaged super reads as `Incomplete`, and bytes no record refers to may change freely);
//! - hand-made files that keep every checksum valid but break a rule are `Corrupt`, and the
//!   error names the record or offset;
//! - nothing panics, whatever the bytes;
//! - property tests: random IO sets round-trip through both formats and every codec, and
//!   the INDEXED writer's newest-wins overlap handling matches a naive block map.

mod common;

use std::io::Cursor;

use bytes::Bytes;
use proptest::prelude::*;
use walb_kernel::checksum::checksum;
use walb_kernel::compress::{Codec, CompressOpt};
use walb_kernel::diff::io::{DiffIo, IoData};
use walb_kernel::wdiff::indexed::{IndexSuper, IndexedRecord};
use walb_kernel::wdiff::{
    IndexedDiffReader, IndexedDiffWriter, RecordKind, SortedDiffReader, SortedDiffWriter,
    SortedRecord, WdiffHeader, WdiffKind, WdiffReader,
};
use walb_kernel::{Error, Location};

fn decode_all(buf: &[u8]) -> Result<Vec<DiffIo>, Error> {
    WdiffReader::new(Cursor::new(buf))?.collect()
}

/// Bytes that compress well but differ per block.
fn pattern(blocks: u32, seed: u32) -> Bytes {
    let mut v = vec![0u8; blocks as usize * 512];
    for (i, b) in v.iter_mut().enumerate() {
        if i % 64 == 0 {
            *b = (seed as usize + i / 512) as u8;
        }
    }
    Bytes::from(v)
}

fn noise(blocks: u32, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Bytes::from(
        (0..blocks as usize * 512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

/// A mixed, address-ordered IO set: compressible and random data, zeros, discards.
fn sample_ios(n: u32) -> Vec<DiffIo> {
    let mut v = Vec::new();
    let mut addr = 7u64;
    for i in 0..n {
        let io = match i % 5 {
            0 => DiffIo::normal(addr, pattern(1 + i % 6, i)),
            1 => DiffIo::discard(addr, 100 + i),
            2 => DiffIo::normal(addr, noise(1 + i % 3, u64::from(i))),
            3 => DiffIo::all_zero(addr, 1 + i % 4),
            _ => DiffIo::normal(addr, pattern(2, i * 3)),
        };
        addr = io.end() + u64::from(i % 2);
        v.push(io);
    }
    v
}

fn header(kind: WdiffKind) -> WdiffHeader {
    WdiffHeader::new(kind, *b"0123456789abcdef")
}

fn write_sorted(ios: &[DiffIo], opt: CompressOpt) -> Vec<u8> {
    let mut w = SortedDiffWriter::new(Vec::new(), &header(WdiffKind::Sorted), opt).unwrap();
    for io in ios {
        w.push(io.clone()).unwrap();
    }
    w.finish().unwrap()
}

fn write_indexed(ios: &[DiffIo], opt: CompressOpt) -> Vec<u8> {
    let mut w = IndexedDiffWriter::new(Vec::new(), &header(WdiffKind::Indexed), opt).unwrap();
    for io in ios {
        w.push(io.clone()).unwrap();
    }
    w.finish().unwrap()
}

/// Cut points: every byte of the first pack header and of the tail, a stride elsewhere.
fn cuts(len: usize, every: usize) -> impl Iterator<Item = usize> {
    (0..len).filter(move |&c| c < 4200 || c % every == 0 || c + 300 > len)
}

#[test]
fn sorted_truncation_is_incomplete_everywhere() {
    // 300 IOs: three packs, several codecs' worth of records.
    let ours = write_sorted(&sample_ios(300), CompressOpt::default());
    let golden = std::fs::read(common::golden("pub-z.zstd.wdiff")).unwrap();
    let small = write_sorted(&sample_ios(12), CompressOpt::default());
    for (name, buf, every) in [
        ("ours-small", &small, 1),
        ("ours", &ours, 31),
        ("pub-z.zstd", &golden, 7),
    ] {
        assert!(decode_all(buf).is_ok());
        for cut in cuts(buf.len(), every) {
            match decode_all(&buf[..cut]) {
                Err(e) if e.is_incomplete() => {}
                other => panic!("{name} cut at {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn indexed_truncation_is_incomplete_everywhere() {
    let ours = write_indexed(&sample_ios(200), CompressOpt::default());
    let golden = std::fs::read(common::golden("pub-512-1.indexed.wdiff")).unwrap();
    for (name, buf, every) in [("ours", &ours, 3), ("pub-512-1.indexed", &golden, 4001)] {
        assert!(decode_all(buf).is_ok());
        for cut in cuts(buf.len(), every) {
            match decode_all(&buf[..cut]) {
                Err(e) if e.is_incomplete() => {}
                other => panic!("{name} cut at {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_flipped_byte_of_a_sorted_wdiff_is_corrupt() {
    let mut files = vec![
        (
            "ours".to_string(),
            write_sorted(&sample_ios(20), CompressOpt::default()),
        ),
        (
            "ours-none".to_string(),
            write_sorted(&sample_ios(10), CompressOpt::NONE),
        ),
    ];
    for c in ["gzip", "lzma", "lz4", "snappy"] {
        let p = common::golden(&format!("pub-z.{c}.wdiff"));
        files.push((c.to_string(), std::fs::read(p).unwrap()));
    }
    for (name, buf) in &files {
        let step = if buf.len() > 16_000 { 13 } else { 1 };
        for i in (0..buf.len()).step_by(step) {
            let mut f = buf.clone();
            f[i] ^= 1 << (i % 8);
            match decode_all(&f) {
                Err(e) if e.is_corrupt() => {}
                other => panic!("{name}: byte {i} flipped: {other:?}"),
            }
        }
    }
}

#[test]
fn flipped_bytes_of_an_indexed_wdiff_are_detected_or_harmless() {
    // Overlapping writes leave images nobody refers to any more.
    let mut ios = sample_ios(25);
    ios.push(DiffIo::normal(10, pattern(40, 99)));
    ios.push(DiffIo::discard(30, 5));
    let buf = write_indexed(&ios, CompressOpt::default());
    let want = decode_all(&buf).unwrap();
    let golden = std::fs::read(common::golden("pub-4096-2.indexed.wdiff")).unwrap();
    let gwant = decode_all(&golden).unwrap();
    let mut harmless = 0;
    // In the golden file: every 5th byte of the index and super, a stride over the images.
    let index_at = golden.len()
        - 24
        - 48 * IndexedDiffReader::new(Cursor::new(&golden))
            .unwrap()
            .records()
            .len();
    let gpos: Vec<usize> = (0..golden.len())
        .filter(|&i| i < 64 || (i >= index_at && i % 5 == 0) || i % 9973 == 0)
        .collect();
    let all: Vec<usize> = (0..buf.len()).collect();
    for (name, b, want, positions) in [
        ("ours", &buf, &want, &all),
        ("golden", &golden, &gwant, &gpos),
    ] {
        for &i in positions {
            let mut f = b.clone();
            f[i] ^= 0x80 >> (i % 8);
            match decode_all(&f) {
                Err(e) if e.is_corrupt() || e.is_incomplete() => {}
                Ok(got) if &got == want => harmless += 1,
                other => panic!("{name}: byte {i} flipped: {other:?}"),
            }
        }
    }
    assert!(
        harmless > 0,
        "some bytes (padding, dead images) are not referenced"
    );
}

#[test]
fn garbage_never_panics() {
    let mut x: u64 = 12345;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let bases = [
        write_sorted(&sample_ios(30), CompressOpt::default()),
        write_indexed(&sample_ios(30), CompressOpt::default()),
        write_sorted(&sample_ios(30), CompressOpt::new(Codec::Lz4, 0).unwrap()),
    ];
    for base in &bases {
        for _ in 0..1500 {
            let mut f = base.clone();
            // Overwrite a few words with random values.
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (f.len() - 4);
                let v = next() as u32;
                f[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            let _ = decode_all(&f);
            let _ = walb_kernel::wdiff::show::show(Cursor::new(&f), &mut Vec::new());
        }
    }
    for n in [0usize, 1, 31, 32, 33, 4096, 4128, 9000] {
        let mut f: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        let _ = decode_all(&f);
        if n >= 32 {
            f[..32].copy_from_slice(&header(WdiffKind::Sorted).to_bytes());
            let _ = decode_all(&f);
            f[..32].copy_from_slice(&header(WdiffKind::Indexed).to_bytes());
            let _ = decode_all(&f);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hand-made files: checksums valid, rules broken.

fn pack(records: &[SortedRecord], total: u32, flags: u8, n_override: Option<u16>) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let n = n_override.unwrap_or(records.len() as u16);
    b[4..6].copy_from_slice(&n.to_le_bytes());
    b[6] = flags;
    b[8..12].copy_from_slice(&total.to_le_bytes());
    for (i, r) in records.iter().enumerate() {
        r.write_to(&mut b[16 + 32 * i..16 + 32 * (i + 1)]);
    }
    let c = checksum(&b, 0);
    b[0..4].copy_from_slice(&c.to_le_bytes());
    b
}

fn rec(addr: u64, blocks: u32, kind: RecordKind) -> SortedRecord {
    SortedRecord {
        addr,
        blocks,
        kind,
        codec: Codec::None,
        data_offset: 0,
        data_size: 0,
        checksum: 0,
    }
}

fn normal_rec(addr: u64, data: &[u8], offset: u32, codec: Codec, blocks: u32) -> SortedRecord {
    SortedRecord {
        addr,
        blocks,
        kind: RecordKind::Normal,
        codec,
        data_offset: offset,
        data_size: data.len() as u32,
        checksum: checksum(data, 0),
    }
}

/// A sorted file of the given packs (each: records, data) plus an end pack.
fn sorted_file(packs: &[(Vec<SortedRecord>, Vec<u8>)]) -> Vec<u8> {
    let mut f = header(WdiffKind::Sorted).to_bytes().to_vec();
    for (recs, data) in packs {
        f.extend(pack(recs, data.len() as u32, 0, None));
        f.extend(data);
    }
    f.extend(pack(&[], 0, 1, None));
    f
}

fn expect_corrupt(buf: &[u8], needle: &str, at: Option<Location>) {
    match decode_all(buf) {
        Err(e @ Error::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
            if let (Some(want), Error::Corrupt { at, .. }) = (at, &e) {
                assert_eq!(*at, want, "{text}");
            }
        }
        other => panic!("expected corrupt ({needle}), got {other:?}"),
    }
}

fn record_at(index: usize, pack: u64) -> Option<Location> {
    Some(Location::Record {
        index,
        pack,
        lsid: false,
    })
}

#[test]
fn sorted_rules_are_enforced() {
    let d512 = vec![1u8; 512];
    // Sanity: a valid hand-made file reads.
    let ok = sorted_file(&[(
        vec![
            normal_rec(0, &d512, 0, Codec::None, 1),
            rec(1, 5, RecordKind::Discard),
        ],
        d512.clone(),
    )]);
    assert_eq!(decode_all(&ok).unwrap().len(), 2);

    // Unsorted across packs: the first record of the second pack.
    let second_pack = 32 + 4096 + 512;
    let f = sorted_file(&[
        (vec![normal_rec(10, &d512, 0, Codec::None, 1)], d512.clone()),
        (vec![rec(3, 1, RecordKind::AllZero)], vec![]),
    ]);
    expect_corrupt(&f, "unsorted or overlapping", record_at(0, second_pack));
    // Overlap inside a pack.
    let f = sorted_file(&[(
        vec![
            rec(0, 10, RecordKind::Discard),
            rec(9, 1, RecordKind::Discard),
        ],
        vec![],
    )]);
    expect_corrupt(&f, "unsorted or overlapping", record_at(1, 32));
    // Data offset not contiguous.
    let f = sorted_file(&[(vec![normal_rec(0, &d512, 4, Codec::None, 1)], d512.clone())]);
    expect_corrupt(&f, "data offset 4", record_at(0, 32));
    // Data past the pack.
    let mut r = normal_rec(0, &d512, 0, Codec::None, 1);
    let mut f = header(WdiffKind::Sorted).to_bytes().to_vec();
    f.extend(pack(&[r], 100, 0, None));
    f.extend(&d512[..100]);
    f.extend(pack(&[], 0, 1, None));
    expect_corrupt(&f, "runs past", record_at(0, 32));
    // Unknown codec.
    r.codec = Codec::None;
    let mut p = pack(&[r], 512, 0, None);
    p[16 + 13] = 6;
    p[0..4].fill(0);
    let c = checksum(&p, 0);
    p[0..4].copy_from_slice(&c.to_le_bytes());
    let mut f = header(WdiffKind::Sorted).to_bytes().to_vec();
    f.extend(p);
    f.extend(&d512);
    f.extend(pack(&[], 0, 1, None));
    expect_corrupt(&f, "unknown compression type 6", record_at(0, 32));
    // Both all-zero and discard.
    let mut p = pack(&[rec(0, 1, RecordKind::AllZero)], 0, 0, None);
    p[16 + 12] = 6;
    p[0..4].fill(0);
    let c = checksum(&p, 0);
    p[0..4].copy_from_slice(&c.to_le_bytes());
    let mut f = header(WdiffKind::Sorted).to_bytes().to_vec();
    f.extend(p);
    f.extend(pack(&[], 0, 1, None));
    expect_corrupt(&f, "both all-zero and discard", record_at(0, 32));
    // Too many records.
    let mut f = header(WdiffKind::Sorted).to_bytes().to_vec();
    f.extend(pack(&[], 0, 0, Some(128)));
    expect_corrupt(&f, "128 records", Some(Location::Offset(32)));
    // Uncompressed size mismatch.
    let f = sorted_file(&[(vec![normal_rec(0, &d512, 0, Codec::None, 2)], d512.clone())]);
    expect_corrupt(&f, "uncompressed record of 2 blocks", record_at(0, 32));
    // Compressed data that decompresses to the wrong size (zstd of 1 block, says 2).
    let mut z = Vec::new();
    walb_kernel::compress::compress(Codec::Zstd, 1, &d512, &mut z).unwrap();
    let f = sorted_file(&[(vec![normal_rec(0, &z, 0, Codec::Zstd, 2)], z.clone())]);
    expect_corrupt(&f, "decompresses to 512 bytes", record_at(0, 32));
    // Compressed data that is not valid for its codec.
    let f = sorted_file(&[(vec![normal_rec(0, &z, 0, Codec::Snappy, 1)], z.clone())]);
    expect_corrupt(&f, "snappy", record_at(0, 32));
    // Zero blocks; data on a discard; an end pack with records; a wrong version.
    let f = sorted_file(&[(vec![rec(0, 0, RecordKind::Discard)], vec![])]);
    expect_corrupt(&f, "zero blocks", record_at(0, 32));
    let mut d = rec(0, 1, RecordKind::Discard);
    d.data_size = 512;
    let f = sorted_file(&[(vec![d], d512.clone())]);
    expect_corrupt(&f, "stores 512 data bytes", record_at(0, 32));
    let mut f = header(WdiffKind::Sorted).to_bytes().to_vec();
    f.extend(pack(&[rec(0, 1, RecordKind::Discard)], 0, 1, None));
    expect_corrupt(&f, "end pack with 1 records", Some(Location::Offset(32)));
    let mut f = ok.clone();
    f[4] = 1;
    f[0..4].fill(0);
    let c = checksum(&f[..32], 0);
    f[0..4].copy_from_slice(&c.to_le_bytes());
    expect_corrupt(&f, "version 1", Some(Location::Offset(0)));
    // A data checksum mismatch names the record.
    let mut f = ok.clone();
    f[32 + 4096 + 100] ^= 1;
    expect_corrupt(&f, "checksum", record_at(0, 32));
    // Trailing pack without its end: incomplete.
    let f = &ok[..ok.len() - 4096];
    assert!(decode_all(f).unwrap_err().is_incomplete());
}

/// An indexed file from raw images and records (records get their checksums here).
fn indexed_file(images: &[u8], recs: &[IndexedRecord], index_offset: Option<u64>) -> Vec<u8> {
    let mut f = header(WdiffKind::Indexed).to_bytes().to_vec();
    f.extend(images);
    while f.len() % 8 != 0 {
        f.push(0);
    }
    let io = f.len() as u64;
    for r in recs {
        f.extend(r.to_bytes());
    }
    let sup = IndexSuper {
        index_offset: index_offset.unwrap_or(io),
        n_records: recs.len() as u32,
        n_data: recs.len() as u32,
    };
    f.extend(sup.to_bytes());
    f
}

fn irec(addr: u64, blocks: u32, img: &[u8], io_offset: u32) -> IndexedRecord {
    IndexedRecord {
        addr,
        blocks,
        kind: RecordKind::Normal,
        codec: Codec::None,
        data_offset: 32,
        data_size: img.len() as u32,
        io_offset,
        orig_blocks: (img.len() / 512) as u32,
        io_checksum: checksum(img, 0),
        rec_checksum: 0,
    }
}

#[test]
fn indexed_rules_are_enforced() {
    let img: Vec<u8> = (0..4 * 512).map(|i| (i / 512) as u8 + 1).collect();
    let ok = indexed_file(&img, &[irec(0, 2, &img, 0), irec(2, 2, &img, 2)], None);
    let ios = decode_all(&ok).unwrap();
    assert_eq!(ios, vec![DiffIo::normal(0, Bytes::from(img.clone()))]);
    let io_at = 32 + img.len() as u64;

    // Outside the image.
    let f = indexed_file(&img, &[irec(0, 2, &img, 3)], None);
    expect_corrupt(&f, "outside the image", record_at(0, io_at));
    // Unsorted / overlapping index.
    let f = indexed_file(&img, &[irec(4, 2, &img, 0), irec(5, 1, &img, 0)], None);
    expect_corrupt(&f, "unsorted or overlapping", record_at(1, io_at));
    // Image beyond the data area.
    let mut r = irec(0, 1, &img, 0);
    r.data_offset = io_at - 100;
    let f = indexed_file(&img, &[r], None);
    expect_corrupt(&f, "outside the data area", record_at(0, io_at));
    // Image checksum mismatch.
    let mut r = irec(0, 1, &img, 0);
    r.io_checksum ^= 1;
    let f = indexed_file(&img, &[r], None);
    expect_corrupt(&f, "checksum", record_at(0, io_at));
    // Record checksum mismatch.
    let mut f = ok.clone();
    f[io_at as usize + 3] ^= 1;
    expect_corrupt(&f, "record checksum", record_at(0, io_at));
    // A super pointing elsewhere is taken for the tail of a truncated file.
    let f = indexed_file(&img, &[irec(0, 1, &img, 0)], Some(40));
    assert!(decode_all(&f).unwrap_err().is_incomplete());
    // Decompressed size mismatch: a zstd image of 4 blocks claimed to hold 8.
    let mut z = Vec::new();
    walb_kernel::compress::compress(Codec::Zstd, 1, &img, &mut z).unwrap();
    let mut r = irec(0, 8, &z, 0);
    r.codec = Codec::Zstd;
    r.orig_blocks = 8;
    let f = indexed_file(&z, &[r], None);
    let zio_at = (32 + z.len() as u64).div_ceil(8) * 8;
    expect_corrupt(&f, "decompresses to 2048 bytes", record_at(0, zio_at));
    // Oversized image.
    let mut r = irec(0, 1, &img, 0);
    r.orig_blocks = 1 << 20;
    let f = indexed_file(&img, &[r], None);
    expect_corrupt(&f, "image of 1048576 blocks", record_at(0, io_at));
    // A damaged super reads as an unfinished file.
    let mut f = ok.clone();
    let n = f.len();
    f[n - 10] ^= 4;
    assert!(decode_all(&f).unwrap_err().is_incomplete());
}

// ---------------------------------------------------------------------------------------
// Property tests.

#[derive(Debug, Clone)]
enum Kind {
    Pattern,
    Noise,
    Zero,
    Discard,
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Pattern),
        2 => Just(Kind::Noise),
        1 => Just(Kind::Zero),
        1 => Just(Kind::Discard),
    ]
}

fn codec_strategy() -> impl Strategy<Value = CompressOpt> {
    prop_oneof![
        Just(CompressOpt::NONE),
        Just(CompressOpt::default()),
        Just(CompressOpt::new(Codec::Snappy, 0).unwrap()),
        Just(CompressOpt::new(Codec::Lz4, 0).unwrap()),
        Just(CompressOpt::new(Codec::Gzip, 1).unwrap()),
        Just(CompressOpt::new(Codec::Lzma, 0).unwrap()),
    ]
}

fn make_io(addr: u64, blocks: u32, kind: &Kind, seed: u32) -> DiffIo {
    match kind {
        Kind::Pattern => DiffIo::normal(addr, pattern(blocks, seed)),
        Kind::Noise => DiffIo::normal(addr, noise(blocks, u64::from(seed))),
        Kind::Zero => DiffIo::all_zero(addr, blocks),
        Kind::Discard => DiffIo::discard(addr, blocks),
    }
}

/// Per-block content: what a reader must show for each block.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Data(Bytes),
    Zero,
    Discard,
}

fn blocks_of(ios: &[DiffIo]) -> std::collections::BTreeMap<u64, Block> {
    let mut m = std::collections::BTreeMap::new();
    for io in ios {
        for i in 0..io.blocks {
            let b = match &io.data {
                IoData::Normal(d) => {
                    let s = i as usize * 512;
                    Block::Data(d.slice(s..s + 512))
                }
                IoData::AllZero => Block::Zero,
                IoData::Discard => Block::Discard,
            };
            m.insert(io.addr + u64::from(i), b);
        }
    }
    m
}

fn assert_sorted_disjoint(ios: &[DiffIo]) {
    for w in ios.windows(2) {
        assert!(w[0].end() <= w[1].addr, "{:?} then {:?}", w[0], w[1]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sorted_round_trip(
        spec in prop::collection::vec((0u64..50, 1u32..40, kind_strategy()), 0..60),
        opt in codec_strategy(),
    ) {
        let mut ios = Vec::new();
        let mut addr = 0u64;
        for (i, (gap, blocks, kind)) in spec.iter().enumerate() {
            addr += gap;
            let io = make_io(addr, *blocks, kind, i as u32);
            addr = io.end();
            ios.push(io);
        }
        let buf = write_sorted(&ios, opt);
        let back = decode_all(&buf).unwrap();
        prop_assert_eq!(&back, &ios);
        // A stored copy is byte-identical.
        let mut r = SortedDiffReader::new(&buf[..]).unwrap();
        let mut w = SortedDiffWriter::new(Vec::new(), r.header(), CompressOpt::NONE).unwrap();
        while let Some(s) = r.next_stored().unwrap() {
            w.push_stored(s).unwrap();
        }
        prop_assert_eq!(w.finish().unwrap(), buf);
    }

    #[test]
    fn indexed_matches_a_block_map(
        spec in prop::collection::vec((0u64..300, 1u32..70, kind_strategy()), 1..50),
        opt in codec_strategy(),
        max_io in prop_oneof![Just(0u32), Just(4), Just(16), Just(100)],
    ) {
        let mut w = IndexedDiffWriter::new(Vec::new(), &header(WdiffKind::Indexed), opt).unwrap();
        w.set_max_io_blocks(max_io);
        let mut model = std::collections::BTreeMap::new();
        for (i, (addr, blocks, kind)) in spec.iter().enumerate() {
            let io = make_io(*addr, *blocks, kind, i as u32 * 7 + 1);
            model.extend(blocks_of(std::slice::from_ref(&io)));
            w.push(io).unwrap();
        }
        let buf = w.finish().unwrap();
        let mut r = IndexedDiffReader::new(Cursor::new(&buf)).unwrap();
        prop_assert_eq!(r.index_super().n_data as usize, spec.len());
        let cap = if max_io == 0 { u32::MAX } else { max_io.next_power_of_two() };
        for rec in r.records() {
            prop_assert!(rec.blocks.is_power_of_two());
            prop_assert_eq!(rec.addr % u64::from(rec.blocks), 0);
            // Only data records are capped; all-zero and discard ones cost nothing per block.
            prop_assert!(rec.kind != RecordKind::Normal || rec.blocks <= cap);
        }
        let back: Vec<DiffIo> = r.by_ref().collect::<Result<_, _>>().unwrap();
        assert_sorted_disjoint(&back);
        prop_assert_eq!(blocks_of(&back), model);
    }

    #[test]
    fn sorted_and_indexed_agree(
        spec in prop::collection::vec((0u64..20, 1u32..30, kind_strategy()), 0..40),
        opt in codec_strategy(),
    ) {
        let mut ios = Vec::new();
        let mut addr = 0u64;
        for (i, (gap, blocks, kind)) in spec.iter().enumerate() {
            addr += gap;
            let io = make_io(addr, *blocks, kind, i as u32);
            addr = io.end();
            ios.push(io);
        }
        let s = decode_all(&write_sorted(&ios, opt)).unwrap();
        // Indexed input in reverse arrival order: no overlap, so the same diff.
        let rev: Vec<DiffIo> = ios.iter().rev().cloned().collect();
        let i = decode_all(&write_indexed(&rev, opt)).unwrap();
        assert_sorted_disjoint(&i);
        prop_assert_eq!(blocks_of(&s), blocks_of(&i));
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..9000),
        indexed in any::<bool>(),
    ) {
        let kind = if indexed { WdiffKind::Indexed } else { WdiffKind::Sorted };
        let mut f = header(kind).to_bytes().to_vec();
        f.extend(body);
        prop_assert!(decode_all(&f).is_err());
    }
}
