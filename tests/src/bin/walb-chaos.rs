//! `walb-chaos --seed S --duration D --volumes N [--faults on|off] [--keep]`: one seeded
//! chaos run against a cluster of real processes (see `walb_tests::chaos`). Prints the
//! summary (operations and faults by kind, checks passed; on a violated invariant the
//! seed, the operation log and the daemons' log tails) and exits non-zero when an
//! invariant was violated; `--print-schedule` prints the steps a seed schedules and
//! exits. Needs root for the small file systems of the disk-full fault
//! (skipped otherwise).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use walb_tests::chaos::{generate, run, Options, Plan};

const USAGE: &str = "usage: walb-chaos [--seed S] [--duration SECONDS] [--volumes N] \
[--faults on|off] [--keep] [--rate WRITES_PER_S] [--sample N] [--dir DIR] [--print-schedule]";

fn parse() -> Result<(Plan, Options, bool)> {
    let mut plan = Plan {
        seed: 1,
        duration_s: 60,
        volumes: 6,
        faults: true,
    };
    let mut opts = Options {
        dir: std::env::temp_dir(),
        keep: false,
        rate: 10,
        sample: 2,
    };
    let mut print = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--seed" => plan.seed = val()?.parse().context("--seed")?,
            "--duration" => plan.duration_s = val()?.parse().context("--duration")?,
            "--volumes" => plan.volumes = val()?.parse().context("--volumes")?,
            "--faults" => {
                plan.faults = match val()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => bail!("--faults {v}: on or off"),
                }
            }
            "--keep" => opts.keep = true,
            "--print-schedule" => print = true,
            "--rate" => opts.rate = val()?.parse().context("--rate")?,
            "--sample" => opts.sample = val()?.parse().context("--sample")?,
            "--dir" => opts.dir = PathBuf::from(val()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if plan.volumes < 6 {
        bail!("--volumes: at least 6 (two storages with three volumes each)");
    }
    Ok((plan, opts, print))
}

fn main() -> ExitCode {
    // The harness looks for the daemons beside a test binary (`target/P/deps/`); this one
    // is beside them (`target/P/`).
    if std::env::var_os("WALB_BIN_DIR").is_none() {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(PathBuf::from))
        {
            std::env::set_var("WALB_BIN_DIR", dir);
        }
    }
    let (plan, opts, print) = match parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    if print {
        let plan = Plan {
            volumes: walb_tests::chaos::topology::Topology::new(plan.volumes).volumes,
            ..plan
        };
        for step in generate(&plan) {
            println!("{step}");
        }
        return ExitCode::SUCCESS;
    }
    match run(plan, opts) {
        Ok(report) => {
            println!("{}", report.summary());
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("walb-chaos (seed {}): could not run: {e:#}", plan.seed);
            ExitCode::from(2)
        }
    }
}
