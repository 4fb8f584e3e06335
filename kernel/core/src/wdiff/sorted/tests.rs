//! The sorted wdiff's unit tests (the golden and corruption tests are in `tests/`).

use super::*;

fn hdr() -> WdiffHeader {
    WdiffHeader::new(WdiffKind::Sorted, [1; 16])
}

fn data(blocks: u32, seed: u8) -> Bytes {
    Bytes::from(
        (0..blocks as usize * 512)
            .map(|i| if i % 7 == 0 { seed } else { (i / 512) as u8 })
            .collect::<Vec<u8>>(),
    )
}

fn write(ios: &[DiffIo], opt: CompressOpt) -> Vec<u8> {
    let mut w = SortedDiffWriter::new(Vec::new(), &hdr(), opt).unwrap();
    for io in ios {
        w.push(io.clone()).unwrap();
    }
    w.finish().unwrap()
}

fn read(buf: &[u8]) -> Result<Vec<DiffIo>> {
    SortedDiffReader::new(buf)?.collect()
}

#[test]
fn round_trip_many_packs() {
    let mut ios = Vec::new();
    let mut addr = 0;
    for i in 0..400u32 {
        let io = match i % 4 {
            0 => DiffIo::all_zero(addr, 3),
            1 => DiffIo::discard(addr, 1000),
            _ => DiffIo::normal(addr, data(1 + i % 9, i as u8)),
        };
        addr = io.end() + u64::from(i % 3);
        ios.push(io);
    }
    for opt in [CompressOpt::NONE, CompressOpt::default()] {
        let buf = write(&ios, opt);
        assert_eq!(read(&buf).unwrap(), ios);
        let mut r = SortedDiffReader::new(&buf[..]).unwrap();
        while r.next_raw().unwrap().is_some() {}
        assert_eq!(r.packs(), 4); // 400 records / 127
        assert!(r.is_done());
    }
}

#[test]
fn large_ios_split_and_data_limit() {
    // 3 IOs of 40000 blocks (~19.5 MiB each, incompressible-ish as NONE).
    let ios: Vec<DiffIo> = (0..3u64)
        .map(|i| DiffIo::normal(i * 100_000, data(40_000, i as u8)))
        .collect();
    let buf = write(&ios, CompressOpt::NONE);
    let mut r = SortedDiffReader::new(&buf[..]).unwrap();
    let mut n = 0;
    while r.next_raw().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(r.packs(), 3);
    // Packs this large are read record by record, not ahead: same IOs.
    assert_eq!(read(&buf).unwrap(), ios);
    // One IO larger than MAX_NORMAL_IO_BLOCKS is split.
    let big = DiffIo::normal(0, data(MAX_NORMAL_IO_BLOCKS + 10, 9));
    let buf = write(std::slice::from_ref(&big), CompressOpt::NONE);
    let got = read(&buf).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].blocks, MAX_NORMAL_IO_BLOCKS);
    assert_eq!(got[1].slice(0, 10), big.slice(MAX_NORMAL_IO_BLOCKS, 10));
}

#[test]
fn writer_refuses_unsorted() {
    let mut w = SortedDiffWriter::new(Vec::new(), &hdr(), CompressOpt::NONE).unwrap();
    w.push(DiffIo::discard(10, 10)).unwrap();
    assert!(matches!(
        w.push(DiffIo::discard(19, 1)),
        Err(Error::Invalid(_))
    ));
    w.push(DiffIo::discard(20, 1)).unwrap();
    assert!(matches!(
        w.push(DiffIo::all_zero(30, 0)),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn stored_copy_round_trip() {
    let ios = vec![
        DiffIo::normal(5, data(8, 1)),
        DiffIo::discard(13, 4),
        DiffIo::normal(100, data(2, 2)),
    ];
    let buf = write(&ios, CompressOpt::default());
    let mut r = SortedDiffReader::new(&buf[..]).unwrap();
    let mut w = SortedDiffWriter::new(Vec::new(), r.header(), CompressOpt::NONE).unwrap();
    while let Some(s) = r.next_stored().unwrap() {
        w.push_stored(s).unwrap();
    }
    let copy = w.finish().unwrap();
    assert_eq!(copy, buf);
}

#[test]
fn a_pack_cut_in_its_data_yields_its_whole_records_first() {
    let ios: Vec<DiffIo> = (0..3u8)
        .map(|i| DiffIo::normal(u64::from(i) * 10, data(2, i)))
        .collect();
    let buf = write(&ios, CompressOpt::NONE);
    // File header, pack header, two records' data and half of the third's.
    let cut = HEADER_SIZE + PACK_HEADER_SIZE + 2 * 1024 + 512;
    let mut r = SortedDiffReader::new(&buf[..cut]).unwrap();
    assert_eq!(r.next_io().unwrap(), Some(ios[0].clone()));
    assert_eq!(r.next_io().unwrap(), Some(ios[1].clone()));
    assert!(r.next_io().unwrap_err().is_incomplete());
}

#[test]
fn pack_buffers_are_reused_only_once_no_io_holds_them() {
    // Eight packs; the IOs of every third pack are kept, the others dropped at once, so
    // the reader reuses some buffers and must not reuse the kept ones.
    let ios: Vec<DiffIo> = (0..1000u32)
        .map(|i| DiffIo::normal(u64::from(i) * 4, data(3, i as u8)))
        .collect();
    let buf = write(&ios, CompressOpt::NONE);
    let mut kept = Vec::new();
    for (i, io) in SortedDiffReader::new(&buf[..]).unwrap().enumerate() {
        let io = io.unwrap();
        if (i / MAX_PACK_RECORDS) % 3 == 0 {
            kept.push((i, io));
        }
    }
    assert_eq!(kept.len(), 127 * 3);
    for (i, io) in kept {
        assert_eq!(io, ios[i], "IO {i}");
    }
}

#[test]
fn reader_rules() {
    let ios = vec![DiffIo::normal(5, data(8, 1)), DiffIo::discard(13, 4)];
    let buf = write(&ios, CompressOpt::NONE);
    // Truncations are incomplete.
    for cut in [0, 10, 32, 100, 4128, 4129, 4128 + 4096, buf.len() - 1] {
        let e = read(&buf[..cut]).unwrap_err();
        assert!(e.is_incomplete(), "cut {cut}: {e}");
    }
    // An unsorted pair (hand-made pack) is corrupt.
    let mut recs = vec![
        SortedRecord {
            addr: 10,
            blocks: 5,
            kind: RecordKind::Discard,
            codec: Codec::None,
            data_offset: 0,
            data_size: 0,
            checksum: 0,
        };
        2
    ];
    recs[1].addr = 12;
    let mut f = hdr().to_bytes().to_vec();
    f.extend(SortedDiffWriter::<Vec<u8>>::pack_header(&recs, 0, 0));
    f.extend(SortedDiffWriter::<Vec<u8>>::pack_header(&[], 0, 1));
    let e = read(&f).unwrap_err();
    assert!(e.is_corrupt(), "{e}");
    assert!(e
        .to_string()
        .contains("record 1 of the pack at byte offset 32"));
    // Too many records.
    let mut p = SortedDiffWriter::<Vec<u8>>::pack_header(&[], 0, 0);
    le::put_u16(&mut p, 4, 128);
    le::put_u32(&mut p, 0, 0);
    let c = checksum(&p, 0);
    le::put_u32(&mut p, 0, c);
    let mut f = hdr().to_bytes().to_vec();
    f.extend(p);
    assert!(read(&f).unwrap_err().is_corrupt());
}
