//! Data-kernel benchmark: prints MB/s, next to single-core `zstd -1` and a sequential read
//! of the same bytes, measured in the same run.
//!
//! Run: `cargo bench -p walb-kernel --bench kernel`. Environment:
//! - `WALB_BENCH_MB` (default 512): MiB of write data per data kind;
//! - `WALB_BENCH_RUNS` (default 3): runs per measurement, the fastest is printed
//!   (the median where the original is compared, see `WALB_ORIG_BIN`);
//! - `WALB_BENCH_DIR` (default: a temporary directory under `target/`): where files go;
//! - `WALB_BENCH_ONLY` (default: all): comma-separated steps to measure among `read`,
//!   `copy`, `libzstd`, `parse`, `stream`, `sorted`, `indexed`, `redo`, `merge` (the
//!   `zstd -1` command, the reference, always runs);
//! - `WALB_ORIG_BIN` (default: unset): a folder holding the original walb-tools' binaries
//!   `wlog-to-wdiff` and `wdiff-merge`. When set, the `sorted` and `merge` steps also run
//!   the original on the same input files, alternating with ours (ours, original, ours,
//!   ...), and print the ratio of the medians (ours / original throughput) as `x orig`.
//!   The original's converter syncs its output (`fdatasync`), so our compared conversion
//!   does too (`+sync` in its line), its output written as `wdevc wlog-to-wdiff` writes it
//!   (write-back started as it goes); the original's merger does not sync, nor does ours. Both run with their
//!   default options (the original compresses with snappy, ours with zstd level 1). Put
//!   `WALB_BENCH_DIR` on a tmpfs to compare computation rather than the disk.
//!
//! For each data kind (random, compressible) it generates a wlog of that much write data
//! (pbs 4096, 4–64 KiB writes over a 4 GiB device), then measures:
//! - sequential read of the wlog file (page cache);
//! - `zstd -1 -T1` (the command, when installed: the reference rate) and libzstd level 1 on
//!   one thread in-process, both writing their output next to ours;
//! - a sequential copy of the wlog (write bandwidth of the same directory);
//! - wlog parse + every checksum verified;
//! - wlog → sorted wdiff from a stream (one pass, the standard-input path), from the file
//!   (two passes, the file path) and wlog → indexed wdiff (zstd:1; proxies write indexed
//!   ones);
//! - a 10-way merge of ten wdiffs converted from ten wlogs of a tenth of the size each
//!   (their records read as stored, those that survive whole copied without recompressing:
//!   the parts were written with the merge's own option, see `diff::source`);
//! - redo of the wlog and of the wdiff onto an image file.
//!
//! MB/s are in 10^6 bytes per second of *uncompressed log bytes* (the wlog file size) unless
//! a line says otherwise, so that every line is comparable with the zstd line.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use walb_device::image::FileTarget;
use walb_device::writeback::WritebackFile;
use walb_kernel::block::Pbs;
use walb_kernel::diff::apply::{DiscardPolicy, Redo};
use walb_kernel::diff::convert::{convert_wlog, merge_stored_to_sorted, ConvertOpt};
use walb_kernel::diff::source::source_stream;
use walb_kernel::diff::twopass::convert_wlog_file;
use walb_kernel::gen::{DataKind, WlogGen};
use walb_kernel::wdiff::{WdiffKind, WdiffReader};
use walb_kernel::wlog::WlogReader;

const DEVICE_BYTES: u64 = 4 << 30;

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn line(name: &str, bytes: u64, secs: f64, zstd: Option<f64>) {
    line_vs(name, bytes, secs, zstd, None);
}

/// A line with, when `orig` (the original's seconds on the same input) is given, the ratio
/// of our throughput to the original's.
fn line_vs(name: &str, bytes: u64, secs: f64, zstd: Option<f64>, orig: Option<f64>) {
    let rate = mbps(bytes, secs);
    let rel = zstd
        .map(|z| format!("{:5.2}x zstd", rate / z))
        .unwrap_or_default();
    let vs = orig
        .map(|o| format!("  {:5.2}x orig", o / secs))
        .unwrap_or_default();
    println!("  {name:<44} {:8.3} s {:9.1} MB/s  {rel}{vs}", secs, rate);
}

/// The folder of the original walb-tools' binaries (`WALB_ORIG_BIN`), when it holds both
/// compared binaries.
fn orig_bin() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("WALB_ORIG_BIN")?);
    let missing: Vec<&str> = ORIG_BINS
        .into_iter()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if missing.is_empty() {
        Some(dir)
    } else {
        println!(
            "WALB_ORIG_BIN={}: no {} there, the original is not compared",
            dir.display(),
            missing.join(", ")
        );
        None
    }
}

const ORIG_BINS: [&str; 2] = ["wlog-to-wdiff", "wdiff-merge"];

/// Runs the original's `bin` with `args` (its output shown only when it fails); a failure
/// stops the bench.
fn run_orig(dir: &Path, bin: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(dir.join(bin))
        .args(args)
        .output()
        .expect("run the original");
    assert!(
        out.status.success(),
        "the original's {bin} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `ours` (writing `out`) and `orig` (writing `orig_out`) alternately, `runs()` times
/// each, settling before every run with the previous output removed, and returns our last
/// result and the median seconds of each: `(result, ours, orig)`.
fn versus<T>(
    (out, orig_out): (&Path, &Path),
    mut ours: impl FnMut() -> T,
    mut orig: impl FnMut(),
) -> (T, f64, f64) {
    let (mut a, mut b, mut last) = (Vec::new(), Vec::new(), None);
    for _ in 0..runs() {
        let _ = std::fs::remove_file(out);
        settle();
        let t = Instant::now();
        last = Some(ours());
        a.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(orig_out);
        settle();
        let t = Instant::now();
        orig();
        b.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(orig_out);
    (last.expect("at least one run"), median(a), median(b))
}

/// Runs `f` `RUNS` times (settling the page cache before each run) and keeps the fastest:
/// page-cache writes on virtual machines vary a lot from run to run.
fn time<T>(f: impl FnMut() -> T) -> (T, f64) {
    time_into(None, f)
}

/// Like [`time`] for a step that writes `out`: every run, ours and the `zstd` command's
/// alike, writes a new file. The previous run's output is removed before the untimed
/// settle, so that freeing (and discarding) its blocks is billed to no run.
fn time_into<T>(out: Option<&Path>, mut f: impl FnMut() -> T) -> (T, f64) {
    let mut best: Option<(T, f64)> = None;
    for _ in 0..runs() {
        if let Some(o) = out {
            let _ = std::fs::remove_file(o);
        }
        settle();
        let t = Instant::now();
        let r = f();
        let s = t.elapsed().as_secs_f64();
        if best.as_ref().is_none_or(|(_, b)| s < *b) {
            best = Some((r, s));
        }
    }
    best.expect("at least one run")
}

/// Whether `step` is measured (`WALB_BENCH_ONLY`).
fn enabled(step: &str) -> bool {
    match std::env::var("WALB_BENCH_ONLY") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|s| s.trim() == step),
        _ => true,
    }
}

fn runs() -> usize {
    std::env::var("WALB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

fn gen_wlog(path: &Path, kind: DataKind, data_bytes: u64, seed: u64) -> u64 {
    let mut g = WlogGen::new(DEVICE_BYTES / 512, data_bytes);
    g.pbs = Pbs::B4096;
    g.kind = kind;
    g.seed = seed;
    let f = File::create(path).expect("create wlog");
    let mut w = BufWriter::with_capacity(4 << 20, f);
    g.write(&mut w).expect("generate wlog");
    w.flush().expect("flush");
    std::fs::metadata(path).expect("stat").len()
}

fn seq_read(path: &Path) -> u64 {
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    let mut x = 0u8;
    loop {
        let k = f.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        x ^= buf[k - 1];
        n += k as u64;
    }
    std::hint::black_box(x);
    n
}

fn zstd1(path: &Path, out: &Path) -> u64 {
    let f = File::open(path).expect("open");
    let o = BufWriter::with_capacity(1 << 20, File::create(out).expect("create"));
    let mut enc = zstd::stream::Encoder::new(o, 1).expect("zstd");
    std::io::copy(&mut BufReader::with_capacity(1 << 20, f), &mut enc).expect("compress");
    enc.finish().expect("finish").flush().expect("flush");
    0
}

fn seq_write(path: &Path, out: &Path) {
    let mut f = File::open(path).expect("open");
    let mut o = File::create(out).expect("create");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        o.write_all(&buf[..k]).expect("write");
    }
}

/// Flushes dirty pages and settles, so that one phase's writeback does not bill the next.
fn settle() {
    nix::unistd::sync();
    std::thread::sleep(std::time::Duration::from_millis(300));
}

fn zstd_cli(path: &Path, out: &Path) -> Option<f64> {
    let ok = std::process::Command::new("zstd")
        .arg("--version")
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    let (st, secs) = time_into(Some(out), || {
        std::process::Command::new("zstd")
            .args(["-1", "-T1", "-q", "-f", "-o"])
            .arg(out)
            .arg(path)
            .status()
    });
    st.ok()?.success().then_some(secs)
}

fn parse(path: &Path) -> u64 {
    let f = File::open(path).expect("open");
    let mut rd = WlogReader::new(BufReader::with_capacity(4 << 20, f)).expect("header");
    let mut n = 0u64;
    while let Some(p) = rd.next_pack().expect("pack") {
        n += p.header.records.len() as u64;
    }
    n
}

/// Sorted conversion of a wlog file (two passes, as `wdevc wlog-to-wdiff` does for files).
fn convert(wlog: &Path, out: &Path) -> u64 {
    convert_to(wlog, out, WdiffKind::Sorted)
}

/// Conversion of a wlog file, as `wdevc wlog-to-wdiff -i FILE` does it.
fn convert_to(wlog: &Path, out: &Path, kind: WdiffKind) -> u64 {
    let f = File::open(wlog).expect("open");
    let o = BufWriter::with_capacity(4 << 20, File::create(out).expect("create"));
    let opt = ConvertOpt {
        kind,
        ..ConvertOpt::default()
    };
    let (mut w, _) = convert_wlog_file(&f, o, &opt).expect("convert");
    w.flush().expect("flush");
    std::fs::metadata(out).expect("stat").len()
}

/// [`convert`] with the output synced to its disk, as the original's converter and
/// `wdevc wlog-to-wdiff` do; like `wdevc`, the output starts its write-back as it is written.
fn convert_synced(wlog: &Path, out: &Path) -> u64 {
    let f = File::open(wlog).expect("open");
    let o = WritebackFile::new(File::create(out).expect("create")).expect("writer");
    let (w, _) = convert_wlog_file(
        &f,
        BufWriter::with_capacity(4 << 20, o),
        &ConvertOpt::default(),
    )
    .expect("convert");
    let o = w.into_inner().expect("flush");
    o.get_ref().sync_data().expect("sync");
    std::fs::metadata(out).expect("stat").len()
}

/// Sorted conversion of a wlog stream (one pass, as for standard input).
fn convert_stream(wlog: &Path, out: &Path) -> u64 {
    let f = File::open(wlog).expect("open");
    let o = BufWriter::with_capacity(4 << 20, File::create(out).expect("create"));
    let (mut w, _) = convert_wlog(
        BufReader::with_capacity(4 << 20, f),
        o,
        &ConvertOpt::default(),
    )
    .expect("convert");
    w.flush().expect("flush");
    std::fs::metadata(out).expect("stat").len()
}

/// The merge of the parts, their records read as stored: the parts were converted with
/// the default option, the merge's own, so records that survive whole are copied.
fn merge(inputs: &[PathBuf], out: &Path) -> u64 {
    let opt = ConvertOpt::default();
    let streams = inputs
        .iter()
        .map(|p| source_stream(WdiffReader::open(p).expect("open"), Some(opt.compress)))
        .collect();
    let o = BufWriter::with_capacity(4 << 20, File::create(out).expect("create"));
    let (mut o, _) = merge_stored_to_sorted(streams, [0; 16], o, &opt).expect("merge");
    o.flush().expect("flush");
    std::fs::metadata(out).expect("stat").len()
}

/// A fresh sparse image under a new name: truncating or unlinking a large written file
/// costs the file system time that would otherwise be billed to the run.
fn image(path: &Path) -> FileTarget {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path.with_extension(format!("img{n}")))
        .expect("image");
    f.set_len(DEVICE_BYTES).expect("size image");
    FileTarget::new(f).expect("target")
}

fn remove_images(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path()
            .extension()
            .is_some_and(|x| x.to_string_lossy().starts_with("img"))
        {
            std::fs::remove_file(e.path()).ok();
        }
    }
}

fn redo_wlog(wlog: &Path, img: &Path) {
    let mut r = Redo::new(image(img), DiscardPolicy::Zero).expect("redo");
    let f = File::open(wlog).expect("open");
    for p in WlogReader::new(BufReader::with_capacity(4 << 20, f)).expect("wlog") {
        r.apply_pack(&p.expect("pack")).expect("apply");
    }
    r.finish().expect("finish");
}

fn redo_wdiff(wdiff: &Path, img: &Path) {
    let mut r = Redo::new(image(img), DiscardPolicy::Zero).expect("redo");
    r.apply_stream(WdiffReader::open(wdiff).expect("open"))
        .expect("apply");
    r.finish().expect("finish");
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let mb: u64 = std::env::var("WALB_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dir = match std::env::var_os("WALB_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/walb-bench"),
    };
    std::fs::create_dir_all(&dir).expect("bench dir");
    remove_images(&dir);
    let data = mb << 20;
    let orig = orig_bin();
    println!(
        "walb-kernel benchmark: {mb} MiB of write data per kind, files in {}",
        dir.display()
    );
    for (kind, tag) in [
        (DataKind::Random, "random"),
        (DataKind::Compressible, "compressible"),
    ] {
        let wlog = dir.join(format!("{tag}.wlog"));
        let bytes = gen_wlog(&wlog, kind, data, 7);
        println!("\n{tag} data: wlog of {:.1} MB", bytes as f64 / 1e6);
        let scratch = dir.join(format!("{tag}.scratch"));
        seq_read(&wlog); // warm the page cache
        if enabled("read") {
            let (_, s) = time(|| seq_read(&wlog));
            line("sequential read (page cache)", bytes, s, None);
        }
        if enabled("copy") {
            let (_, s) = time_into(Some(&scratch), || seq_write(&wlog, &scratch));
            line("sequential write of the same bytes (copy)", bytes, s, None);
        }
        let mut zrate = match zstd_cli(&wlog, &scratch) {
            Some(c) => {
                let r = mbps(bytes, c);
                line("zstd -1 -T1 command (the reference)", bytes, c, Some(r));
                r
            }
            None => 0.0,
        };
        if enabled("libzstd") || zrate == 0.0 {
            let (_, z) = time_into(Some(&scratch), || zstd1(&wlog, &scratch));
            if zrate == 0.0 {
                zrate = mbps(bytes, z);
            }
            line(
                "zstd level 1, one thread, in-process (libzstd)",
                bytes,
                z,
                Some(zrate),
            );
        }
        if enabled("parse") {
            let (_, s) = time(|| parse(&wlog));
            line("wlog parse + checksums", bytes, s, Some(zrate));
        }
        let wdiff = dir.join(format!("{tag}.wdiff"));
        if enabled("stream") {
            let (out, s) = time_into(Some(&wdiff), || convert_stream(&wlog, &wdiff));
            line(
                &format!("wlog -> sorted wdiff, stream ({:.0} MB)", out as f64 / 1e6),
                bytes,
                s,
                Some(zrate),
            );
        }
        if enabled("sorted") {
            match &orig {
                None => {
                    let (out, s) = time_into(Some(&wdiff), || convert(&wlog, &wdiff));
                    line(
                        &format!("wlog -> sorted wdiff zstd:1 ({:.0} MB)", out as f64 / 1e6),
                        bytes,
                        s,
                        Some(zrate),
                    );
                }
                Some(bin) => {
                    let theirs = dir.join(format!("{tag}.orig.wdiff"));
                    let (out, s, o) = versus(
                        (&wdiff, &theirs),
                        || convert_synced(&wlog, &wdiff),
                        || {
                            run_orig(
                                bin,
                                "wlog-to-wdiff",
                                &[
                                    "-i".as_ref(),
                                    wlog.as_os_str(),
                                    "-o".as_ref(),
                                    theirs.as_os_str(),
                                ],
                            )
                        },
                    );
                    line_vs(
                        &format!("wlog -> sorted wdiff +sync ({:.0} MB)", out as f64 / 1e6),
                        bytes,
                        s,
                        Some(zrate),
                        Some(o),
                    );
                    line("original wlog-to-wdiff (median)", bytes, o, Some(zrate));
                }
            }
        }
        if enabled("indexed") {
            let indexed = dir.join(format!("{tag}.indexed.wdiff"));
            let (out, s) = time_into(Some(&indexed), || {
                convert_to(&wlog, &indexed, WdiffKind::Indexed)
            });
            line(
                &format!("wlog -> indexed wdiff zstd:1 ({:.0} MB)", out as f64 / 1e6),
                bytes,
                s,
                Some(zrate),
            );
            std::fs::remove_file(&indexed).ok();
        }
        if enabled("redo") {
            if !wdiff.exists() {
                convert(&wlog, &wdiff);
            }
            let img = dir.join(format!("{tag}.img"));
            let (_, s) = time(|| redo_wlog(&wlog, &img));
            line(
                "wlog redo to image file (+fdatasync)",
                bytes,
                s,
                Some(zrate),
            );
            let (_, s) = time(|| redo_wdiff(&wdiff, &img));
            line(
                "wdiff redo to image file (+fdatasync)",
                bytes,
                s,
                Some(zrate),
            );
            remove_images(&dir);
        }
        // Ten smaller wdiffs for the merge.
        let mut parts = Vec::new();
        let merged = dir.join(format!("{tag}-merged.wdiff"));
        if enabled("merge") {
            let mut part_bytes = 0;
            for i in 0..10 {
                let w = dir.join(format!("{tag}-part{i}.wlog"));
                part_bytes += gen_wlog(&w, kind, data / 10, 100 + i);
                let d = dir.join(format!("{tag}-part{i}.wdiff"));
                convert(&w, &d);
                std::fs::remove_file(&w).ok();
                parts.push(d);
            }
            let part_files: u64 = parts
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum();
            let name = |out: u64| {
                format!(
                    "10-way merge ({:.0} MB in, {:.0} MB out)",
                    part_files as f64 / 1e6,
                    out as f64 / 1e6
                )
            };
            match &orig {
                None => {
                    let (out, s) = time_into(Some(&merged), || merge(&parts, &merged));
                    line(&name(out), part_bytes, s, Some(zrate));
                }
                Some(bin) => {
                    let theirs = dir.join(format!("{tag}-merged.orig.wdiff"));
                    let mut args = vec!["-i".as_ref()];
                    args.extend(parts.iter().map(|p| p.as_os_str()));
                    args.extend(["-o".as_ref(), theirs.as_os_str()]);
                    let (out, s, o) = versus(
                        (&merged, &theirs),
                        || merge(&parts, &merged),
                        || run_orig(bin, "wdiff-merge", &args),
                    );
                    line_vs(&name(out), part_bytes, s, Some(zrate), Some(o));
                    line("original wdiff-merge (median)", part_bytes, o, Some(zrate));
                }
            }
        }
        for p in parts.iter().chain([&merged, &wdiff, &wlog, &scratch]) {
            std::fs::remove_file(p).ok();
        }
    }
}
