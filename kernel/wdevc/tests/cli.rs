//! The `wdevc` file tools as an operator runs them: outputs, errors and exit codes.

#[path = "../../core/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn wdevc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wdevc"))
        .args(args)
        .output()
        .expect("run wdevc")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn wlog_show_and_wdiff_show_print_the_reference_listings() {
    let o = wdevc(&["wlog-show", p(&common::golden("pub-4096-2.wlog"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        o.stdout,
        std::fs::read(common::golden("pub-4096-2.wlog.show.txt")).unwrap()
    );
    let o = wdevc(&["wdiff-show", p(&common::golden("pub-512-3.indexed.wdiff"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        o.stdout,
        std::fs::read(common::golden("pub-512-3.indexed.wdiff.show.txt")).unwrap()
    );
}

#[test]
fn convert_merge_redo_and_virt_full_cat_reproduce_the_reference_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let mut diffs = Vec::new();
    for n in 1..=3 {
        let out = d(&format!("{n}.wdiff"));
        let mut args = vec!["wlog-to-wdiff", "-i"];
        let input = common::golden(&format!("pub-512-{n}.wlog"));
        args.push(p(&input));
        args.extend(["-o", p(&out)]);
        if n == 2 {
            args.push("--indexed");
        }
        let o = wdevc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        diffs.push(out);
    }
    let merged = d("m.wdiff");
    let o = wdevc(&[
        "wdiff-merge",
        "-o",
        p(&merged),
        "-c",
        "snappy",
        p(&diffs[0]),
        p(&diffs[1]),
        p(&diffs[2]),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = d("img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(common::GOLDEN_DEVICE_BYTES)
        .unwrap();
    let o = wdevc(&["wdiff-redo", p(&img), p(&merged)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = common::golden_image_sha256("pub-512-after-3.img");
    assert_eq!(common::sha256_hex(&std::fs::read(&img).unwrap()), want);
    // The inputs were converted with the default compression: declared, their records are
    // copied as stored, and the file is the one the recompressing merge writes.
    let merge = |out: &Path, extra: &[&str]| {
        let mut args = vec!["wdiff-merge", "-o", p(out)];
        args.extend(extra);
        args.extend(diffs.iter().map(|d| p(d)));
        let o = wdevc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out).unwrap()
    };
    let recompressed = merge(&d("r.wdiff"), &[]);
    let copied = merge(&d("c.wdiff"), &["--inputs-compress", "zstd:1"]);
    assert!(copied == recompressed, "the merges differ");
    let img_c = d("img-c");
    std::fs::File::create(&img_c)
        .unwrap()
        .set_len(common::GOLDEN_DEVICE_BYTES)
        .unwrap();
    let o = wdevc(&["wdiff-redo", p(&img_c), p(&d("c.wdiff"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(common::sha256_hex(&std::fs::read(&img_c).unwrap()), want);
    let o = wdevc(&[
        "virt-full-cat",
        "-s",
        "16m",
        "-o",
        "-",
        p(&diffs[0]),
        p(&diffs[1]),
        p(&diffs[2]),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(common::sha256_hex(&o.stdout), want);
    // wlog-redo of the three wlogs, discards written as zeros.
    let img2 = d("img2");
    std::fs::File::create(&img2)
        .unwrap()
        .set_len(common::GOLDEN_DEVICE_BYTES)
        .unwrap();
    let wl: Vec<_> = (1..=3)
        .map(|n| common::golden(&format!("pub-512-{n}.wlog")))
        .collect();
    let o = wdevc(&["wlog-redo", p(&img2), p(&wl[0]), p(&wl[1]), p(&wl[2])]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(common::sha256_hex(&std::fs::read(&img2).unwrap()), want);
}

#[test]
fn format_ldev_then_wlog_cat_of_the_golden_ldev() {
    let dir = tempfile::tempdir().unwrap();
    let ldev = dir.path().join("ldev");
    std::fs::copy(common::golden("pub-512.ldev"), &ldev).unwrap();
    let out = dir.path().join("x.wlog");
    let o = wdevc(&["wlog-cat", p(&ldev), "-o", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("[6136, 10446)"), "{}", stderr(&o));
    let o = wdevc(&["wlog-show", p(&out)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("reallyEndLsid 10446"));
    // A fresh format: new uuid, empty log.
    let ddev = dir.path().join("ddev");
    std::fs::File::create(&ddev)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let o = wdevc(&["format-ldev", p(&ldev), p(&ddev), "-n", "vol0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = String::from_utf8_lossy(&wdevc(&["ldev-info", p(&ldev)]).stdout).into_owned();
    assert!(
        info.contains("name: vol0") && info.contains("deviceSize: 16384"),
        "{info}"
    );
    assert!(
        !info.contains("f9e2cec9bb71e9a4f3f898b654ea6cb9"),
        "the uuid must be new"
    );
    let o = wdevc(&["wlog-cat", p(&ldev), "-o", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("[0, 0)"),
        "a fresh log is empty: {}",
        stderr(&o)
    );
}

#[test]
fn bad_input_gives_a_clear_error_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let wlog = std::fs::read(common::golden("pub-512-1.wlog")).unwrap();
    // Truncated: exit 4, names the lsid.
    let t = dir.path().join("t.wlog");
    std::fs::write(&t, &wlog[..100_000]).unwrap();
    let o = wdevc(&["wlog-show", p(&t)]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("incomplete") && stderr(&o).contains("lsid"),
        "{}",
        stderr(&o)
    );
    // Corrupt data of a normal record (pack at lsid 329, its first record's data): exit 3.
    let c = dir.path().join("c.wlog");
    let mut bad = wlog.clone();
    bad[4096 + 330 * 512 + 17] ^= 0x40;
    std::fs::write(&c, &bad).unwrap();
    let o = wdevc(&[
        "wlog-to-wdiff",
        "-i",
        p(&c),
        "-o",
        p(&dir.path().join("c.wdiff")),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("record 0 of the log pack at lsid 329"),
        "{}",
        stderr(&o)
    );
    // No partial output is left behind, under its name or as a temporary file.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().contains("c.wdiff")),
        "{left:?}"
    );
    // An existing output survives a failed run untouched.
    let keep = dir.path().join("keep.wdiff");
    std::fs::write(&keep, b"precious").unwrap();
    let o = wdevc(&["wlog-to-wdiff", "-i", p(&c), "-o", p(&keep)]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(std::fs::read(&keep).unwrap(), b"precious");
    // A corrupt wdiff pack header: exit 3, names the file.
    let w = dir.path().join("w.wdiff");
    let mut wd = std::fs::read(common::golden("pub-512-1.sorted.wdiff")).unwrap();
    wd[40] ^= 1;
    std::fs::write(&w, &wd).unwrap();
    let img = dir.path().join("img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(common::GOLDEN_DEVICE_BYTES)
        .unwrap();
    let o = wdevc(&["wdiff-redo", p(&img), p(&w)]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("w.wdiff"), "{}", stderr(&o));
    // Not a wlog at all.
    let o = wdevc(&["wlog-show", p(&common::golden("pub-512-1.sorted.wdiff"))]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Missing file: exit 1; bad arguments: exit 2.
    let o = wdevc(&["wdiff-show", p(&dir.path().join("nope"))]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = wdevc(&["wlog-to-wdiff", "-x", "1000"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = wdevc(&["wdiff-merge"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // An image too small for the diff: exit 2, nothing written past the end.
    let small = dir.path().join("small");
    std::fs::File::create(&small)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let o = wdevc(&[
        "wdiff-redo",
        p(&small),
        p(&common::golden("pub-512-1.sorted.wdiff")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("beyond the end of the image"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::metadata(&small).unwrap().len(), 1 << 20);
}
