//! `bench-report`: runs every benchmark of the project, one after the other, and writes
//! `BENCHMARKS.md` at the top of the repository from what they printed.
//!
//! ```text
//! cargo run --release -p walb-tests --bin bench-report [-- --only kernel,wire] [--out FILE]
//! ```
//!
//! The benches, in order: `kernel` and `hash` (walb-kernel: conversion, merge, redo and the
//! block hash, each next to `zstd -1 -T1` or a plain read; next to the original walb-tools
//! too when `WALB_ORIG_BIN` names the folder of their binaries), `device` (walb-device: the
//! emulated device's IO), `wire` (walb-wire: QUIC + mTLS bulk transfer), `restore`
//! (walb-daemon: restores and their clone methods), `pipeline` (walb-tests: full, hash
//! backup, replication and lag with real processes; needs root). `scale` (64 volumes, the
//! TUI at 200) runs only when asked with `--only`. Each bench prints its figures beside the
//! reference they are a ratio to, measured in the same run; the report keeps what each
//! printed, as printed, under the command that gives it, with the machine, the date, the
//! commit and the load average before and after each bench. The benches' own variables
//! (`WALB_BENCH_MB`, `WALB_BENCH_GB`, ...) pass through and are written into the report.
//!
//! A bench's progress goes to the terminal (standard error). A bench that fails is
//! reported as failed (its exit status) and the others still run; the command then exits
//! with status 1.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// One bench of the project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bench {
    /// The name `--only` takes.
    name: &'static str,
    /// Its package.
    package: &'static str,
    /// Its bench target.
    target: &'static str,
    /// Whether it needs root (real block devices).
    root: bool,
    /// Whether it runs without `--only`.
    default: bool,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "kernel",
        package: "walb-kernel",
        target: "kernel",
        root: false,
        default: true,
    },
    Bench {
        name: "hash",
        package: "walb-kernel",
        target: "hash",
        root: false,
        default: true,
    },
    Bench {
        name: "device",
        package: "walb-device",
        target: "device",
        root: false,
        default: true,
    },
    Bench {
        name: "wire",
        package: "walb-wire",
        target: "throughput",
        root: false,
        default: true,
    },
    Bench {
        name: "restore",
        package: "walb-daemon",
        target: "restore",
        root: false,
        default: true,
    },
    Bench {
        name: "pipeline",
        package: "walb-tests",
        target: "pipeline",
        root: true,
        default: true,
    },
    Bench {
        name: "scale",
        package: "walb-tests",
        target: "scale",
        root: true,
        default: false,
    },
];

/// What one bench gave.
#[derive(Clone, Debug, PartialEq)]
struct Outcome {
    bench: Bench,
    /// Its standard output (the figures).
    stdout: String,
    /// Failed: the exit status and the end of its error output.
    failure: Option<String>,
    /// Seconds it took, build included.
    secs: f64,
    /// Load average before and after.
    load: (String, String),
}

impl Bench {
    fn command(&self) -> String {
        let sudo = if self.root { " (as root)" } else { "" };
        format!(
            "cargo bench -p {} --bench {}{sudo}",
            self.package, self.target
        )
    }
}

/// The benches `--only` names (every default one without it).
fn select(only: Option<&str>) -> Result<Vec<Bench>> {
    let Some(list) = only else {
        return Ok(BENCHES.iter().copied().filter(|b| b.default).collect());
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match BENCHES.iter().find(|b| b.name == name) {
            Some(b) => out.push(*b),
            None => bail!(
                "no bench {name:?}: one of {}",
                BENCHES
                    .iter()
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

/// The lines worth keeping of a bench's output: cargo's own lines are dropped.
fn figures(stdout: &str) -> String {
    let keep: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("Compiling ")
                || t.starts_with("Finished ")
                || t.starts_with("Running ")
                || t.starts_with("Executable "))
        })
        .collect();
    let text = keep.join("\n");
    text.trim_matches('\n').to_owned()
}

/// `text` with every folder of this machine in `places` replaced by its label: the report
/// names the repository, the original's binaries and the temporary folder, never where
/// they were on the machine of the run. Longer paths first, so a folder inside another
/// keeps its own label.
fn scrub(text: &str, places: &[(String, &str)]) -> String {
    let mut places: Vec<&(String, &str)> = places.iter().filter(|(p, _)| p.len() > 1).collect();
    places.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let mut out = text.to_owned();
    for (path, label) in places {
        out = out.replace(path.trim_end_matches('/'), label);
    }
    out
}

/// The machine: CPU model, cores, memory, kernel.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("?".to_owned(), |kb| format!("{:.1}", kb as f64 / 1048576.0));
    // The release's numbers only (a build's local tag says nothing about speed).
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or("?".to_owned(), |k| {
            k.trim()
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()
                .unwrap_or("?")
                .to_owned()
        });
    format!("{model}, {cores} cores, {mem_gib} GiB memory, Linux {kernel}")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs one bench with cargo, its figures on standard output.
fn run(root: &Path, b: Bench) -> Outcome {
    let before = load();
    let t0 = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench-report: {} ...", b.command());
    let mut c = Command::new(cargo);
    c.current_dir(root)
        .args(["bench", "-p", b.package, "--bench", b.target])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    walb_tests::without_package_env(&mut c);
    let out = c.output();
    let secs = t0.elapsed().as_secs_f64();
    let (stdout, failure) = match out {
        Ok(o) if o.status.success() => (String::from_utf8_lossy(&o.stdout).into_owned(), None),
        Ok(o) => (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            Some(format!(
                "{}; its error output went to the terminal of the run",
                o.status
            )),
        ),
        Err(e) => (String::new(), Some(format!("cannot run cargo: {e}"))),
    };
    Outcome {
        bench: b,
        stdout,
        failure,
        secs,
        load: (before, load()),
    }
}

/// The report (pure): header, then one section per bench.
fn render(header: &Header, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo run --release -p walb-tests --bin bench-report` on {} (UTC), at \
         commit `{}`.\n",
        header.date, header.commit
    );
    let _ = writeln!(s, "- Machine: {}.", header.machine);
    let _ = writeln!(
        s,
        "- Every figure is printed by its bench beside the reference it is a ratio to \
         (`zstd -1 -T1`, a plain read, the in-process wire, the original walb-tools), \
         measured in the same run; release builds; everything on loopback."
    );
    if header.env.is_empty() {
        let _ = writeln!(s, "- Bench variables: none (the defaults).");
    } else {
        let _ = writeln!(s, "- Bench variables: `{}`.", header.env.join("`, `"));
    }
    for o in outcomes {
        let _ = writeln!(s, "\n## {} — `{}`\n", o.bench.name, o.bench.command());
        let _ = writeln!(
            s,
            "{:.0} s, build included; load average {} before, {} after.\n",
            o.secs, o.load.0, o.load.1
        );
        if let Some(f) = &o.failure {
            let _ = writeln!(s, "**Failed**:\n\n```text\n{f}\n```");
        }
        let fig = figures(&o.stdout);
        if !fig.is_empty() {
            let _ = writeln!(s, "```text\n{fig}\n```");
        }
    }
    s
}

/// The report's first lines.
struct Header {
    date: String,
    commit: String,
    machine: String,
    env: Vec<String>,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut only, mut out) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => only = Some(args.next().context("--only needs a list")?),
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a file")?)),
            "-h" | "--help" => {
                println!(
                    "bench-report [--only NAME,...] [--out FILE]\n\
                     benches: {}",
                    BENCHES
                        .iter()
                        .map(|b| b.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let benches = select(only.as_deref())?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository's folder")?
        .to_path_buf();
    let is_root = nix::unistd::geteuid().is_root();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .ok()
        .map_or("?".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        });
    let mut places = vec![
        (root.display().to_string(), "."),
        (std::env::temp_dir().display().to_string(), "$TMPDIR"),
    ];
    if let Some(orig) = std::env::var_os("WALB_ORIG_BIN") {
        places.push((orig.to_string_lossy().into_owned(), "$WALB_ORIG_BIN"));
    }
    let mut env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("WALB_BENCH") || k == "WALB_ORIG_BIN")
        .map(|(k, v)| match k.as_str() {
            "WALB_ORIG_BIN" => format!("{k} (the original walb-tools 1.0.19 binaries)"),
            _ => scrub(&format!("{k}={v}"), &places),
        })
        .collect();
    env.sort();
    let header = Header {
        date,
        commit: git(&root, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into()),
        machine: machine(),
        env,
    };
    let mut outcomes = Vec::new();
    for b in benches {
        if b.root && !is_root {
            outcomes.push(Outcome {
                bench: b,
                stdout: String::new(),
                failure: Some("not run: it needs root".into()),
                secs: 0.0,
                load: (load(), load()),
            });
            continue;
        }
        outcomes.push(run(&root, b));
    }
    for o in &mut outcomes {
        o.stdout = scrub(&o.stdout, &places);
        o.failure = o.failure.as_deref().map(|f| scrub(f, &places));
    }
    let path = out.unwrap_or_else(|| root.join("BENCHMARKS.md"));
    std::fs::write(&path, render(&header, &outcomes))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench-report: wrote {}", path.display());
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failure.is_some())
        .map(|o| o.bench.name)
        .collect();
    if !failed.is_empty() {
        bail!("these benches failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_and_rendering() {
        let all = select(None).unwrap();
        assert!(all.iter().all(|b| b.default));
        assert!(all.iter().any(|b| b.name == "pipeline"));
        assert!(!all.iter().any(|b| b.name == "scale"));
        let two = select(Some("wire, scale")).unwrap();
        assert_eq!(
            two.iter().map(|b| b.name).collect::<Vec<_>>(),
            ["wire", "scale"]
        );
        assert!(select(Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("kernel"));
        assert_eq!(
            figures("   Compiling x\nrandom: 1 MB/s  2.0x zstd\n    Finished y\n"),
            "random: 1 MB/s  2.0x zstd"
        );
        let h = Header {
            date: "2026-12-07 21:00".into(),
            commit: "abc1234".into(),
            machine: "cpu, 2 cores".into(),
            env: vec!["WALB_BENCH_MB=64".into()],
        };
        let ok = Outcome {
            bench: two[0],
            stdout: "1 stream  700 MB/s".into(),
            failure: None,
            secs: 12.4,
            load: ("0.5".into(), "1.0".into()),
        };
        let bad = Outcome {
            bench: two[1],
            stdout: String::new(),
            failure: Some("not run: it needs root".into()),
            secs: 0.0,
            load: ("1".into(), "1".into()),
        };
        let r = render(&h, &[ok, bad]);
        let places = [
            ("/srv/src/walb".to_owned(), "."),
            ("/srv/src/walb/target/x".to_owned(), "$X"),
            ("/opt/orig/".to_owned(), "$WALB_ORIG_BIN"),
        ];
        assert_eq!(
            scrub(
                "files in /srv/src/walb/kernel/../target, /srv/src/walb/target/x/a and \
                 /opt/orig/wdiff-merge",
                &places
            ),
            "files in ./kernel/../target, $X/a and $WALB_ORIG_BIN/wdiff-merge"
        );
        assert!(r.starts_with("# Benchmarks\n"), "{r}");
        assert!(r.contains("commit `abc1234`"), "{r}");
        assert!(r.contains("`WALB_BENCH_MB=64`"), "{r}");
        assert!(
            r.contains("## wire — `cargo bench -p walb-wire --bench throughput`"),
            "{r}"
        );
        assert!(r.contains("```text\n1 stream  700 MB/s\n```"), "{r}");
        assert!(
            r.contains("## scale — `cargo bench -p walb-tests --bench scale (as root)`"),
            "{r}"
        );
        assert!(
            r.contains("**Failed**:\n\n```text\nnot run: it needs root"),
            "{r}"
        );
    }
}
