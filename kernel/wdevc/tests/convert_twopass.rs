//! The two-pass conversion of wlog files (sorted and indexed) against the streaming one and the truth.
//!
//! Both conversions must describe the same blocks: the same content and the same kind
//! (data, all-zero, discard) for every block, computed independently from the wlog's
//! records. Their IO lists may differ (the two-pass path joins adjacent extents), so the
//! comparison is block by block. On the golden wlogs the two-pass diffs reproduce the
//! reference images; on damaged wlogs both paths fail with the same typed error, and
//! `wdevc wlog-to-wdiff` leaves no output behind.

#[path = "../../core/tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{Cursor, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use walb_kernel::block::Pbs;
use walb_kernel::compress::{Codec, CompressOpt};
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::diff::convert::{convert_wlog, ConvertOpt};
use walb_kernel::diff::twopass::convert_wlog_file;
use walb_kernel::diff::IoData;
use walb_kernel::error::Result;
use walb_kernel::gen::{DataKind, WlogGen};
use walb_kernel::logpack::RecordKind;
use walb_kernel::wdiff::{WdiffKind, WdiffReader, WriteStats};
use walb_kernel::wlog::{WlogReader, WLOG_HEADER_BYTES};

/// Block kinds of a block map.
const UNTOUCHED: u8 = 0;
const DATA: u8 = 1;
const ZERO: u8 = 2;
const DISCARD: u8 = 3;

/// What a diff (or a log) says about every block of a device: its kind, and its content
/// on an image that starts filled with 0x55 (discarded blocks read 0x55, so that a discard
/// confused with an all-zero write shows in the image too).
#[derive(PartialEq, Eq)]
struct Blocks {
    kind: Vec<u8>,
    img: Vec<u8>,
}

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = |k| self.kind.iter().filter(|&&x| x == k).count();
        write!(
            f,
            "Blocks {{ data {}, zero {}, discard {} }}",
            count(DATA),
            count(ZERO),
            count(DISCARD)
        )
    }
}

impl Blocks {
    fn new(lb: usize) -> Blocks {
        Blocks {
            kind: vec![UNTOUCHED; lb],
            img: vec![0x55; lb * 512],
        }
    }

    fn set(&mut self, addr: u64, blocks: u32, kind: u8, data: Option<&[u8]>) {
        let a = addr as usize;
        let n = blocks as usize;
        self.kind[a..a + n].fill(kind);
        match (kind, data) {
            (DATA, Some(d)) => self.img[a * 512..(a + n) * 512].copy_from_slice(d),
            (ZERO, _) => self.img[a * 512..(a + n) * 512].fill(0),
            _ => self.img[a * 512..(a + n) * 512].fill(0x55),
        }
    }

    /// The first block where two maps differ.
    fn first_difference(&self, other: &Blocks) -> Option<usize> {
        (0..self.kind.len()).find(|&b| {
            self.kind[b] != other.kind[b]
                || self.img[b * 512..(b + 1) * 512] != other.img[b * 512..(b + 1) * 512]
        })
    }
}

/// The truth, from the wlog's records themselves (newest record wins).
fn truth(wlog: &[u8], lb: usize) -> Blocks {
    let mut m = Blocks::new(lb);
    for p in WlogReader::new(wlog).unwrap() {
        let p = p.unwrap();
        for (i, r) in p.header.records.iter().enumerate() {
            match r.kind() {
                RecordKind::Padding => {}
                RecordKind::Discard => m.set(r.offset, r.io_size, DISCARD, None),
                RecordKind::Normal => {
                    let d = p.record_data(i).unwrap();
                    if d.iter().all(|&b| b == 0) {
                        m.set(r.offset, r.io_size, ZERO, None);
                    } else {
                        m.set(r.offset, r.io_size, DATA, Some(&d));
                    }
                }
            }
        }
    }
    m
}

/// The block map of a sorted wdiff, checking order, overlap and the maximum IO size.
fn blocks_of(wdiff: &[u8], lb: usize, max_io: u32) -> Blocks {
    let mut m = Blocks::new(lb);
    let mut prev_end = 0;
    for io in WdiffReader::new(Cursor::new(wdiff)).unwrap() {
        let io = io.unwrap();
        assert!(io.addr >= prev_end, "{io:?} overlaps or is out of order");
        prev_end = io.end();
        match &io.data {
            IoData::Normal(d) => {
                assert!(io.blocks <= max_io, "{io:?} exceeds {max_io} blocks");
                m.set(io.addr, io.blocks, DATA, Some(d));
            }
            IoData::AllZero => m.set(io.addr, io.blocks, ZERO, None),
            IoData::Discard => m.set(io.addr, io.blocks, DISCARD, None),
        }
    }
    m
}

fn stream(wlog: &[u8], opt: &ConvertOpt) -> Result<(Vec<u8>, WriteStats)> {
    convert_wlog(wlog, Vec::new(), opt)
}

fn two_pass(path: &Path, opt: &ConvertOpt) -> Result<(Vec<u8>, WriteStats)> {
    let f = File::open(path).unwrap();
    convert_wlog_file(&f, Vec::new(), opt)
}

fn sorted(max_io_blocks: u32, threads: usize) -> ConvertOpt {
    ConvertOpt {
        kind: WdiffKind::Sorted,
        max_io_blocks,
        threads,
        ..Default::default()
    }
}

/// Generated wlogs with overlapping writes, discards, all-zero writes and varied sizes.
fn generated() -> Vec<(&'static str, WlogGen)> {
    let mut out = Vec::new();
    // Small device, small IOs, many overlaps, padding at the ring end.
    let mut g = WlogGen::new(4096, 1 << 20);
    g.pbs = Pbs::B512;
    g.min_io_lb = 1;
    g.max_io_lb = 64;
    g.discard_pct = 15;
    g.zero_pct = 15;
    g.kind = DataKind::Compressible;
    g.ring_size = Some(1000);
    g.seed = 11;
    out.push(("pbs 512, overlapping small IOs", g));
    // Random data, larger IOs.
    let mut g = WlogGen::new(8192, 2 << 20);
    g.min_io_lb = 8;
    g.max_io_lb = 256;
    g.discard_pct = 10;
    g.zero_pct = 10;
    g.seed = 12;
    out.push(("pbs 4096, random data", g));
    // Tiny device: nearly every write overwrites earlier ones, IOs up to the device size.
    let mut g = WlogGen::new(1024, 1 << 20);
    g.min_io_lb = 1;
    g.max_io_lb = 1024;
    g.discard_pct = 20;
    g.zero_pct = 20;
    g.kind = DataKind::Compressible;
    g.seed = 13;
    out.push(("pbs 4096, tiny device", g));
    // IOs longer than the maximum IO size of the diff.
    let mut g = WlogGen::new(1 << 16, 4 << 20);
    g.min_io_lb = 512;
    g.max_io_lb = 4096;
    g.discard_pct = 5;
    g.zero_pct = 5;
    g.seed = 14;
    out.push(("pbs 4096, large IOs", g));
    out
}

#[test]
fn two_pass_and_streaming_give_the_same_blocks_on_generated_wlogs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, g) in generated() {
        let mut wlog = Vec::new();
        g.write(&mut wlog).unwrap();
        let path = dir.path().join("g.wlog");
        std::fs::write(&path, &wlog).unwrap();
        let lb = g.device_lb as usize;
        let want = truth(&wlog, lb);
        for (kind, max_io, threads) in [
            (WdiffKind::Sorted, 8, 0),
            (WdiffKind::Sorted, 2048, 2),
            (WdiffKind::Sorted, 100, 1),
            (WdiffKind::Indexed, 8, 0),
            (WdiffKind::Indexed, 2048, 2),
        ] {
            let opt = ConvertOpt {
                kind,
                ..sorted(max_io, threads)
            };
            let name = format!("{name}, {kind:?}");
            let (s, s_stats) = stream(&wlog, &opt).unwrap();
            let (t, t_stats) = two_pass(&path, &opt).unwrap();
            // The indexed reader joins adjacent pieces of one image: no size bound to check.
            let bound = if kind == WdiffKind::Sorted {
                max_io
            } else {
                u32::MAX
            };
            let sb = blocks_of(&s, lb, bound);
            let tb = blocks_of(&t, lb, bound);
            assert_eq!(
                sb.first_difference(&want),
                None,
                "{name}, max_io {max_io}: streaming"
            );
            assert_eq!(
                tb.first_difference(&want),
                None,
                "{name}, max_io {max_io}: two-pass {tb:?}, want {want:?}"
            );
            assert_eq!(
                (
                    t_stats.normal_blocks,
                    t_stats.allzero_blocks,
                    t_stats.discard_blocks
                ),
                (
                    s_stats.normal_blocks,
                    s_stats.allzero_blocks,
                    s_stats.discard_blocks
                ),
                "{name}, max_io {max_io}: block counts"
            );
            assert_eq!(t_stats.file_bytes, t.len() as u64);
            // The redone image (discards zeroed) is the one of the wlog redone.
            let mut r = Redo::new(vec![0x55u8; lb * 512], DiscardPolicy::Zero).unwrap();
            for p in WlogReader::new(&wlog[..]).unwrap() {
                r.apply_pack(&p.unwrap()).unwrap();
            }
            let from_wlog = r.finish().unwrap().0;
            let mut r = Redo::new(vec![0x55u8; lb * 512], DiscardPolicy::Zero).unwrap();
            r.apply_stream(WdiffReader::new(Cursor::new(&t)).unwrap())
                .unwrap();
            assert!(
                r.finish().unwrap().0 == from_wlog,
                "{name}, max_io {max_io}: redo"
            );
        }
    }
}

#[test]
fn two_pass_reproduces_the_golden_images() {
    const SIZE: usize = common::GOLDEN_DEVICE_BYTES as usize;
    let lb = SIZE / 512;
    let redo = |img: Vec<u8>, wdiff: &[u8]| {
        let mut r = Redo::new(img, DiscardPolicy::Zero).unwrap();
        r.apply_stream(WdiffReader::new(Cursor::new(wdiff)).unwrap())
            .unwrap();
        r.finish().unwrap().0
    };
    for pbs in [512, 4096] {
        let mut img = vec![0u8; SIZE];
        for n in 1..=3 {
            let name = format!("pub-{pbs}-{n}.wlog");
            let path = common::golden(&name);
            let opt = ConvertOpt::default();
            let (t, _) = two_pass(&path, &opt).unwrap();
            let wlog = std::fs::read(&path).unwrap();
            let (s, _) = stream(&wlog, &opt).unwrap();
            assert_eq!(
                blocks_of(&t, lb, opt.max_io_blocks).first_difference(&blocks_of(
                    &s,
                    lb,
                    opt.max_io_blocks
                )),
                None,
                "{name}"
            );
            img = redo(img, &t);
            assert_eq!(
                common::sha256_hex(&img),
                common::golden_image_sha256(&format!("pub-{pbs}-after-{n}.img")),
                "{name}"
            );
        }
    }
    let want = common::golden_image_sha256("pub-z-after.img");
    for codec in [
        Codec::None,
        Codec::Snappy,
        Codec::Zstd,
        Codec::Gzip,
        Codec::Lz4,
        Codec::Lzma,
    ] {
        let opt = ConvertOpt {
            compress: CompressOpt::new(codec, 0).unwrap(),
            ..Default::default()
        };
        let (t, _) = two_pass(&common::golden("pub-z.wlog"), &opt).unwrap();
        assert_eq!(
            common::sha256_hex(&redo(vec![0u8; SIZE], &t)),
            want,
            "{codec}"
        );
    }
}

/// A small wlog with several packs, discards and zero writes.
fn small_wlog() -> (Vec<u8>, usize) {
    let mut g = WlogGen::new(2048, 48 << 10);
    g.pbs = Pbs::B512;
    g.min_io_lb = 1;
    g.max_io_lb = 16;
    g.discard_pct = 15;
    g.zero_pct = 15;
    g.kind = DataKind::Compressible;
    g.seed = 21;
    let mut wlog = Vec::new();
    g.write(&mut wlog).unwrap();
    (wlog, g.device_lb as usize)
}

/// Runs both conversions on `bytes`; they must agree: both fail with the same error (kind and
/// message) or both succeed with the same blocks. Returns the two-pass outcome.
fn both_agree(dir: &Path, bytes: &[u8], lb: usize, what: &str) -> Result<Vec<u8>> {
    let path = dir.join("x.wlog");
    std::fs::write(&path, bytes).unwrap();
    let opt = sorted(8, 0);
    let s = stream(bytes, &opt);
    let t = two_pass(&path, &opt);
    match (s, t) {
        (Ok((s, _)), Ok((t, _))) => {
            assert_eq!(
                blocks_of(&t, lb, 8).first_difference(&blocks_of(&s, lb, 8)),
                None,
                "{what}"
            );
            Ok(t)
        }
        (Err(se), Err(te)) => {
            assert_eq!(
                (se.is_corrupt(), se.is_incomplete(), se.to_string()),
                (te.is_corrupt(), te.is_incomplete(), te.to_string()),
                "{what}"
            );
            Err(te)
        }
        (s, t) => panic!(
            "{what}: streaming {:?}, two-pass {:?}",
            s.map(|_| ()),
            t.map(|_| ())
        ),
    }
}

#[test]
fn corrupt_and_truncated_wlogs_fail_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (wlog, lb) = small_wlog();
    // Flips: the file header, the first pack header, the first record's data.
    for pos in [8, WLOG_HEADER_BYTES + 4, WLOG_HEADER_BYTES + 512 + 3] {
        let mut b = wlog.clone();
        b[pos] ^= 0x20;
        let e = both_agree(dir.path(), &b, lb, &format!("flip at {pos}")).unwrap_err();
        assert!(e.is_corrupt(), "flip at {pos}: {e}");
    }
    // A sweep of flips over the whole file (padding data is not checksummed: such flips
    // convert, identically).
    let mut corrupt = 0;
    for pos in (0..wlog.len()).step_by(211) {
        let mut b = wlog.clone();
        b[pos] ^= 0x01;
        if let Err(e) = both_agree(dir.path(), &b, lb, &format!("flip at {pos}")) {
            assert!(e.is_corrupt() || e.is_incomplete(), "flip at {pos}: {e}");
            corrupt += 1;
        }
    }
    assert!(corrupt > 100, "only {corrupt} flips were detected");
    // Truncations, including inside the end marker: incomplete.
    for cut in [
        0,
        100,
        WLOG_HEADER_BYTES,
        WLOG_HEADER_BYTES + 511,
        WLOG_HEADER_BYTES + 512 + 7,
        wlog.len() / 2,
        wlog.len() - 512,
        wlog.len() - 1,
    ] {
        let e = both_agree(dir.path(), &wlog[..cut], lb, &format!("cut at {cut}")).unwrap_err();
        assert!(e.is_incomplete(), "cut at {cut}: {e}");
    }
}

fn wdevc(args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wdevc"));
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run wdevc");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(input).unwrap();
    }
    child.wait_with_output().expect("wait for wdevc")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn wdevc_converts_files_and_standard_input_alike_and_leaves_nothing_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let (wlog, lb) = small_wlog();
    std::fs::write(d("in.wlog"), &wlog).unwrap();
    let o = wdevc(
        &[
            "wlog-to-wdiff",
            "-i",
            p(&d("in.wlog")),
            "-o",
            p(&d("file.wdiff")),
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = wdevc(&["wlog-to-wdiff", "-o", p(&d("stdin.wdiff"))], Some(&wlog));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let max = walb_kernel::diff::convert::DEFAULT_MAX_IO_BLOCKS;
    let file = blocks_of(&std::fs::read(d("file.wdiff")).unwrap(), lb, max);
    let stdin = blocks_of(&std::fs::read(d("stdin.wdiff")).unwrap(), lb, max);
    assert_eq!(file.first_difference(&truth(&wlog, lb)), None);
    assert_eq!(stdin.first_difference(&file), None);
    // A file redirected to standard input (converted in two passes, like a named one), and
    // a corrupt one (refused alike).
    let redirected = |input: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_wdevc"))
            .args(["wlog-to-wdiff", "-o", p(&d(out))])
            .stdin(File::open(d(input)).unwrap())
            .output()
            .unwrap()
    };
    let o = redirected("in.wlog", "redirected.wdiff");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let redir = blocks_of(&std::fs::read(d("redirected.wdiff")).unwrap(), lb, max);
    assert_eq!(redir.first_difference(&file), None);
    // Corrupt record data: exit 3; truncated: exit 4; neither leaves a file.
    let mut bad = wlog.clone();
    bad[WLOG_HEADER_BYTES + 512 + 3] ^= 0x20;
    std::fs::write(d("corrupt.wlog"), &bad).unwrap();
    std::fs::write(d("cut.wlog"), &wlog[..wlog.len() / 2]).unwrap();
    for (input, code) in [("corrupt.wlog", 3), ("cut.wlog", 4)] {
        let o = redirected(input, "out.wdiff");
        assert_eq!(o.status.code(), Some(code), "{input} on standard input");
        assert!(!d("out.wdiff").exists());
        let o = wdevc(
            &[
                "wlog-to-wdiff",
                "-i",
                p(&d(input)),
                "-o",
                p(&d("out.wdiff")),
            ],
            None,
        );
        assert_eq!(
            o.status.code(),
            Some(code),
            "{input}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("out.wdiff"))
            .collect();
        assert!(left.is_empty(), "{input}: {left:?}");
    }
}
