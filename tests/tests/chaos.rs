//! The short form of `walb-chaos` for CI: three fixed seeds, 45 s of scheduled steps
//! each with faults on, on six volumes (two storages, two proxies, two archives), each
//! run ending in the harness's final checks; and the schedule's replay property (pure,
//! no root needed). Each run takes about two minutes on two cores (set-up, the steps
//! running late behind slow operations, the settling and every outstanding restore);
//! the runs go one at a time.

use std::sync::Mutex;

use anyhow::{bail, Result};
use walb_tests::chaos::{generate, run, Options, Plan};
use walb_tests::is_root;

/// One cluster at a time: the runs share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn plan(seed: u64) -> Plan {
    Plan {
        seed,
        duration_s: 45,
        volumes: 6,
        faults: true,
    }
}

/// Runs one seed; fails with the summary (seed, violations, operation log, log tails)
/// when an invariant was violated or the run exercised too little to mean anything.
fn chaos(seed: u64) -> Result<()> {
    if !is_root() {
        eprintln!("skipped: the chaos runs need root (small file systems, loop devices)");
        return Ok(());
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let report = run(
        plan(seed),
        Options {
            dir: std::env::temp_dir(),
            keep: false,
            rate: 10,
            sample: 2,
        },
    )?;
    let summary = report.summary();
    eprintln!("{summary}");
    if !report.violations.is_empty() {
        bail!("seed {seed} violated invariants:\n{summary}");
    }
    let c = &report.counts;
    if c.total_faults() == 0 || c.snapshots == 0 || c.final_restores == 0 || c.writes == 0 {
        bail!("seed {seed} exercised nothing worth checking:\n{summary}");
    }
    Ok(())
}

#[test]
fn chaos_seed_11() -> Result<()> {
    chaos(11)
}

#[test]
fn chaos_seed_12() -> Result<()> {
    chaos(12)
}

#[test]
fn chaos_seed_13() -> Result<()> {
    chaos(13)
}

/// The same seed gives the same schedule; other seeds, other schedules; the fault switch
/// leaves no fault in; every seed schedules both operations and faults over the run.
#[test]
fn the_seed_alone_decides_the_schedule() {
    let a = generate(&plan(11));
    assert_eq!(a, generate(&plan(11)));
    assert!(!a.is_empty());
    for other in [12, 13, 1 << 40] {
        assert_ne!(
            a,
            generate(&plan(other)),
            "seed {other} gave seed 11's schedule"
        );
    }
    let quiet = generate(&Plan {
        faults: false,
        ..plan(11)
    });
    assert!(quiet
        .iter()
        .all(|s| matches!(s.action, walb_tests::chaos::schedule::Action::Op(_))));
    let long = generate(&Plan {
        duration_s: 3600,
        ..plan(5)
    });
    let faults = long
        .iter()
        .filter(|s| matches!(s.action, walb_tests::chaos::schedule::Action::Fault(_)))
        .count();
    assert!(faults > 200, "an hour schedules {faults} fault steps");
    assert!(
        long.len() - faults > 600,
        "an hour schedules {} operations",
        long.len() - faults
    );
    assert!(long.last().is_some_and(|s| s.at_ms <= 3_600_000));
}
