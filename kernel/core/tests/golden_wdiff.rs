//! wdiff compatibility with walb-tools 1.0.19, proven on its golden files.
//!
//! - every golden wdiff parses with all checksums verified, and our listing equals the
//!   reference `wdiff-show` output byte for byte;
//! - the six `pub-z.<codec>.wdiff` files decode to the same IO sequence;
//! - applying wdiffs to a zero 16 MiB image gives the reference image checksums;
//! - re-writing every golden wdiff with our writers (sorted zstd, sorted none, indexed)
//!   gives files that read back to the same image, and re-writing an uncompressed sorted
//!   golden file with our sorted writer reproduces it byte for byte.

mod common;

use std::io::Cursor;
use std::path::PathBuf;

use walb_kernel::compress::{Codec, CompressOpt};
use walb_kernel::diff::io::{DiffIo, IoData};
use walb_kernel::wdiff::show::write_listing;
use walb_kernel::wdiff::{
    IndexedDiffReader, IndexedDiffWriter, SortedDiffReader, SortedDiffWriter, WdiffKind,
    WdiffReader,
};

fn golden_wdiffs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::golden_dir())
        .expect("golden dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wdiff"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 20,
        "expected the golden wdiffs, found {}",
        v.len()
    );
    v
}

fn name(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn read_ios(path: &std::path::Path) -> Vec<DiffIo> {
    WdiffReader::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_ios_mem(buf: Vec<u8>) -> Vec<DiffIo> {
    WdiffReader::new(Cursor::new(buf))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Applies IOs to an image: data written, all-zero and discard ranges zeroed.
fn apply(img: &mut [u8], ios: &[DiffIo]) {
    for io in ios {
        let s = usize::try_from(io.addr).unwrap() * 512;
        let e = s + io.blocks as usize * 512;
        assert!(
            e <= img.len(),
            "IO {}+{} beyond the image",
            io.addr,
            io.blocks
        );
        match &io.data {
            IoData::Normal(d) => img[s..e].copy_from_slice(d),
            IoData::AllZero | IoData::Discard => img[s..e].fill(0),
        }
    }
}

fn image_of(ios: &[DiffIo]) -> String {
    let mut img = vec![0u8; common::GOLDEN_DEVICE_BYTES as usize];
    apply(&mut img, ios);
    common::sha256_hex(&img)
}

#[test]
fn listings_match_wdiff_show() {
    for p in golden_wdiffs() {
        let expected = std::fs::read_to_string(format!("{}.show.txt", p.display()))
            .unwrap_or_else(|e| panic!("{}.show.txt: {e}", p.display()));
        let mut out = Vec::new();
        write_listing(&p, &mut out).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let got = String::from_utf8(out).unwrap();
        if got != expected {
            let line = got
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(got.lines().count().min(expected.lines().count()));
            panic!(
                "{}: listing differs at line {}:\n ours: {:?}\n ref:  {:?}",
                name(&p),
                line + 1,
                got.lines().nth(line),
                expected.lines().nth(line)
            );
        }
    }
}

#[test]
fn the_six_codecs_decode_identically() {
    let reference = read_ios(&common::golden("pub-z.none.wdiff"));
    assert!(reference.len() > 100);
    for codec in Codec::ALL {
        let p = common::golden(&format!("pub-z.{}.wdiff", codec.name()));
        // The file really uses the codec.
        let mut r = SortedDiffReader::new(std::fs::File::open(&p).unwrap()).unwrap();
        let mut used = 0;
        while let Some((rec, _)) = r.next_raw().unwrap() {
            if rec.codec == codec {
                used += 1;
            } else {
                assert_eq!(rec.codec, Codec::None);
            }
        }
        assert!(used > 50, "{codec}: only {used} records use it");
        assert_eq!(read_ios(&p), reference, "{codec}");
    }
}

#[test]
fn applied_images_match_the_reference() {
    let z = common::golden_image_sha256("pub-z-after.img");
    for codec in Codec::ALL {
        let ios = read_ios(&common::golden(&format!("pub-z.{}.wdiff", codec.name())));
        assert_eq!(image_of(&ios), z, "pub-z.{codec}.wdiff");
    }
    for pbs in [512, 4096] {
        let merged = read_ios(&common::golden(&format!("pub-{pbs}-merged.wdiff")));
        assert_eq!(
            image_of(&merged),
            common::golden_image_sha256(&format!("pub-{pbs}-after-3.img")),
            "pub-{pbs}-merged.wdiff"
        );
        for kind in ["sorted", "indexed"] {
            let mut img = vec![0u8; common::GOLDEN_DEVICE_BYTES as usize];
            for n in 1..=3 {
                let ios = read_ios(&common::golden(&format!("pub-{pbs}-{n}.{kind}.wdiff")));
                apply(&mut img, &ios);
                assert_eq!(
                    common::sha256_hex(&img),
                    common::golden_image_sha256(&format!("pub-{pbs}-after-{n}.img")),
                    "pub-{pbs}-{n}.{kind}.wdiff"
                );
            }
        }
    }
}

#[test]
fn indexed_reader_decompresses_each_image_once() {
    for pbs in [512, 4096] {
        let p = common::golden(&format!("pub-{pbs}-1.indexed.wdiff"));
        let mut r = IndexedDiffReader::new(std::fs::File::open(&p).unwrap()).unwrap();
        let mut images: Vec<u64> = r
            .records()
            .iter()
            .filter(|rec| rec.data_size > 0)
            .map(|rec| rec.data_offset)
            .collect();
        images.sort_unstable();
        images.dedup();
        assert!(r.records().len() > images.len());
        let n = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap().len();
        assert!(n < r.records().len(), "pieces of one image are merged back");
        assert_eq!(r.images_loaded(), images.len() as u64);
    }
}

fn rewrite(ios: &[DiffIo], kind: WdiffKind, opt: CompressOpt) -> Vec<u8> {
    let h = walb_kernel::wdiff::WdiffHeader::new(kind, [0x5a; 16]);
    match kind {
        WdiffKind::Sorted => {
            let mut w = SortedDiffWriter::new(Vec::new(), &h, opt).unwrap();
            for io in ios {
                w.push(io.clone()).unwrap();
            }
            w.finish().unwrap()
        }
        WdiffKind::Indexed => {
            let mut w = IndexedDiffWriter::new(Vec::new(), &h, opt).unwrap();
            // Non-overlapping, so any arrival order gives the same diff: use reverse order.
            for io in ios.iter().rev() {
                w.push(io.clone()).unwrap();
            }
            w.finish().unwrap()
        }
    }
}

#[test]
fn rewritten_wdiffs_give_the_same_image() {
    let zstd = CompressOpt::new(Codec::Zstd, 3).unwrap();
    for p in golden_wdiffs() {
        let ios = read_ios(&p);
        let want = image_of(&ios);
        for (kind, opt) in [
            (WdiffKind::Sorted, zstd),
            (WdiffKind::Sorted, CompressOpt::NONE),
            (WdiffKind::Indexed, zstd),
        ] {
            let buf = rewrite(&ios, kind, opt);
            let back = read_ios_mem(buf);
            assert_eq!(image_of(&back), want, "{} as {kind:?} {opt}", name(&p));
            if kind == WdiffKind::Sorted {
                assert_eq!(back, ios, "{} as {kind:?} {opt}", name(&p));
            }
        }
    }
}

#[test]
fn uncompressed_sorted_golden_files_are_reproduced_byte_for_byte() {
    let mut checked = 0;
    for p in golden_wdiffs() {
        let original = std::fs::read(&p).unwrap();
        let mut r = match SortedDiffReader::new(Cursor::new(&original)) {
            Ok(r) => r,
            Err(_) => continue, // indexed
        };
        let header = *r.header();
        let mut ios = Vec::new();
        let mut all_none = true;
        while let Some((rec, _)) = r.next_raw().unwrap() {
            all_none &= rec.codec == Codec::None;
        }
        if !all_none {
            continue;
        }
        for io in SortedDiffReader::new(Cursor::new(&original)).unwrap() {
            ios.push(io.unwrap());
        }
        let mut w = SortedDiffWriter::new(Vec::new(), &header, CompressOpt::NONE).unwrap();
        for io in ios {
            w.push(io).unwrap();
        }
        let ours = w.finish().unwrap();
        assert!(ours == original, "{}: our re-write differs", name(&p));
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} uncompressed sorted golden files"
    );
}

#[test]
fn stored_records_copy_without_recompression() {
    // Copy pub-z.gzip.wdiff record by record into both formats; the data is not touched.
    let p = common::golden("pub-z.gzip.wdiff");
    let original = std::fs::read(&p).unwrap();
    let want = read_ios(&p);
    let mut r = SortedDiffReader::new(Cursor::new(&original)).unwrap();
    let h = *r.header();
    let mut s = SortedDiffWriter::new(Vec::new(), &h, CompressOpt::NONE).unwrap();
    let mut i = IndexedDiffWriter::new(Vec::new(), &h, CompressOpt::NONE).unwrap();
    while let Some(st) = r.next_stored().unwrap() {
        s.push_stored(st.clone()).unwrap();
        i.push_stored(st).unwrap();
    }
    let sorted = s.finish().unwrap();
    assert_eq!(sorted, original, "copying a sorted wdiff reproduces it");
    let indexed = i.finish().unwrap();
    let back = read_ios_mem(indexed);
    assert_eq!(image_of(&back), image_of(&want));
    // Every normal IO of the indexed copy is one untouched image (adjacent all-zero or
    // discard IOs may come back merged).
    let normal = |v: &[DiffIo]| {
        v.iter()
            .filter(|io| io.is_normal())
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(normal(&back), normal(&want));
}
