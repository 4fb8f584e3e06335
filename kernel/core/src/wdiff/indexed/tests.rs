//! The indexed wdiff's unit tests (the golden and corruption tests are in `tests/`).

use super::*;
use std::io::Cursor;

#[test]
fn aligned_split_matches_walb_tools() {
    assert_eq!(split_aligned(0, 1, 0), vec![1]);
    assert_eq!(split_aligned(0, 32, 0), vec![32]);
    assert_eq!(split_aligned(1, 31, 0), vec![1, 2, 4, 8, 16]);
    assert_eq!(split_aligned(0, 31, 0), vec![16, 8, 4, 2, 1]);
    assert_eq!(split_aligned(0, 31, 8), vec![8, 8, 8, 4, 2, 1]);
    assert_eq!(split_aligned(0, 31, 4), vec![4, 4, 4, 4, 4, 4, 4, 2, 1]);
    assert_eq!(split_aligned(0, 16, 4), vec![4, 4, 4, 4]);
    assert_eq!(split_aligned(4, 32, 8), vec![4, 8, 8, 8, 4]);
    // The golden discard at 815+186.
    assert_eq!(split_aligned(815, 186, 0), vec![1, 16, 64, 64, 32, 8, 1]);
    assert_eq!(split_aligned(u64::MAX - 3, 3, 0), vec![2, 1]);
    assert_eq!(split_aligned(0, u32::MAX, 0).len(), 32);
}

fn blocks(n: u32, v: u8) -> Bytes {
    Bytes::from(vec![v; n as usize * 512])
}

#[test]
fn newest_wins_and_image_shared() {
    let h = WdiffHeader::new(WdiffKind::Indexed, [3; 16]);
    let mut w = IndexedDiffWriter::new(Vec::new(), &h, CompressOpt::NONE).unwrap();
    w.push(DiffIo::normal(0, blocks(16, 1))).unwrap();
    w.push(DiffIo::discard(5, 2)).unwrap(); // hole in the middle
    w.push(DiffIo::all_zero(15, 4)).unwrap();
    let buf = w.finish().unwrap();
    let mut r = IndexedDiffReader::new(Cursor::new(buf)).unwrap();
    assert_eq!(r.index_super().n_data, 3);
    for rec in r.records() {
        assert!(rec.blocks.is_power_of_two() && rec.addr % u64::from(rec.blocks) == 0);
    }
    let got: Vec<DiffIo> = r.by_ref().collect::<Result<_>>().unwrap();
    assert_eq!(
        got,
        vec![
            DiffIo::normal(0, blocks(5, 1)),
            DiffIo::discard(5, 2),
            DiffIo::normal(7, blocks(8, 1)),
            DiffIo::all_zero(15, 4),
        ]
    );
    assert_eq!(r.images_loaded(), 1);
}

#[test]
fn truncation_is_incomplete() {
    let h = WdiffHeader::new(WdiffKind::Indexed, [3; 16]);
    let mut w = IndexedDiffWriter::new(Vec::new(), &h, CompressOpt::default()).unwrap();
    w.push(DiffIo::normal(3, blocks(5, 7))).unwrap();
    w.push(DiffIo::discard(100, 7)).unwrap();
    let buf = w.finish().unwrap();
    assert_eq!(buf.len() % 8, 0);
    for cut in 0..buf.len() {
        let e = IndexedDiffReader::new(Cursor::new(&buf[..cut])).unwrap_err();
        assert!(e.is_incomplete(), "cut {cut}: {e}");
    }
}
