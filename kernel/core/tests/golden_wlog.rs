//! Interop with walb-tools 1.0.19: wlog files and log device images.
//!
//! - every golden wlog parses with all checksums verified and lists exactly as `wlog-show`;
//! - redoing wlogs 1..n onto a zero 16 MiB image reproduces the reference SHA-256s;
//! - both ldev images (the pbs-512 one wraps around its ring) show the reference superblock,
//!   and extracting from them yields the records and data of wlog 1 and the reference lsids.

mod common;

use std::fs::File;

use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::ldev::{LdevEnd, LdevReader, SuperBlock};
use walb_kernel::logpack::{LogPack, RecordKind};
use walb_kernel::wlog::{write_listing, WlogReader};

fn read_packs(name: &str) -> Vec<LogPack> {
    let f = File::open(common::golden(name)).unwrap();
    WlogReader::new(std::io::BufReader::new(f))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn listings_match_wlog_show() {
    for name in [
        "pub-512-1",
        "pub-512-2",
        "pub-512-3",
        "pub-4096-1",
        "pub-4096-2",
        "pub-4096-3",
        "pub-z",
    ] {
        let f = File::open(common::golden(&format!("{name}.wlog"))).unwrap();
        let mut out = Vec::new();
        write_listing(std::io::BufReader::new(f), &mut out).unwrap();
        let expect =
            std::fs::read_to_string(common::golden(&format!("{name}.wlog.show.txt"))).unwrap();
        let got = String::from_utf8(out).unwrap();
        if got != expect {
            let line = got.lines().zip(expect.lines()).position(|(a, b)| a != b);
            panic!("{name}: listing differs at line {line:?}\n");
        }
    }
}

#[test]
fn redo_of_wlogs_reproduces_reference_images() {
    for pbs in [512, 4096] {
        let mut redo = Redo::new(
            vec![0u8; common::GOLDEN_DEVICE_BYTES as usize],
            DiscardPolicy::Zero,
        )
        .unwrap();
        for n in 1..=3 {
            for p in read_packs(&format!("pub-{pbs}-{n}.wlog")) {
                redo.apply_pack(&p).unwrap();
            }
            let (img, _) = redo.finish().unwrap();
            assert_eq!(
                common::sha256_hex(&img),
                common::golden_image_sha256(&format!("pub-{pbs}-after-{n}.img")),
                "pbs {pbs} after wlog {n}"
            );
            redo = Redo::new(img, DiscardPolicy::Zero).unwrap();
        }
    }
    let mut redo = Redo::new(
        vec![0u8; common::GOLDEN_DEVICE_BYTES as usize],
        DiscardPolicy::Zero,
    )
    .unwrap();
    for p in read_packs("pub-z.wlog") {
        redo.apply_pack(&p).unwrap();
    }
    let (img, _) = redo.finish().unwrap();
    assert_eq!(
        common::sha256_hex(&img),
        common::golden_image_sha256("pub-z-after.img")
    );
}

/// (kind, offset, io_size, data) of every non-padding record.
fn io_list(packs: &[LogPack]) -> Vec<(RecordKind, u64, u32, Option<Vec<u8>>)> {
    let mut v = Vec::new();
    for p in packs {
        for (i, r) in p.header.records.iter().enumerate() {
            if r.kind() != RecordKind::Padding {
                v.push((
                    r.kind(),
                    r.offset,
                    r.io_size,
                    p.record_data(i).map(|b| b.to_vec()),
                ));
            }
        }
    }
    v
}

#[test]
fn ldev_images_hold_wlog_1() {
    for pbs in [512, 4096] {
        let f = File::open(common::golden(&format!("pub-{pbs}.ldev"))).unwrap();
        let sb = SuperBlock::read(&f).unwrap();
        let info =
            std::fs::read_to_string(common::golden(&format!("pub-{pbs}.ldev.info.txt"))).unwrap();
        assert_eq!(sb.describe(), info, "superblock of pub-{pbs}.ldev");
        let restore =
            std::fs::read_to_string(common::golden(&format!("pub-{pbs}.ldev.restore.txt")))
                .unwrap();
        let mut rd = LdevReader::new(&f, sb.clone(), sb.oldest_lsid, LdevEnd::Scan, false).unwrap();
        let mut packs = Vec::new();
        while let Some(p) = rd.next_pack().unwrap() {
            packs.push(p);
        }
        let range = format!(
            "Restored lsid range [{}, {}]",
            sb.oldest_lsid,
            rd.end_lsid()
        );
        assert!(
            restore.contains(&range),
            "pub-{pbs}: expected {range:?} in {restore:?}"
        );
        let wrapped =
            sb.oldest_lsid / sb.ring_buffer_size != (rd.end_lsid() - 1) / sb.ring_buffer_size;
        assert_eq!(
            wrapped,
            pbs == 512,
            "pub-{pbs}: the 512 image wraps, the 4096 one does not"
        );
        assert_eq!(
            io_list(&packs),
            io_list(&read_packs(&format!("pub-{pbs}-1.wlog")))
        );
        // A known end (permanent) gives the same result, strictly verified.
        let strict: Vec<_> = LdevReader::new(
            &f,
            sb.clone(),
            sb.oldest_lsid,
            LdevEnd::Known(rd.end_lsid()),
            false,
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
        assert_eq!(strict.len(), packs.len());
    }
}
