//! walb-tools scenarios n1, n2, n3, n4, e1, e2 and e3 (walb-tools.md §8.3) with real processes
//! on loopback, each ending in the same check: the SHA-256 of the live device equals that
//! of the snapshot restored at the archive.

use std::time::Duration;

use anyhow::{bail, Result};
use walb_tests::{is_root, Cluster, ClusterOpts, VOL};

/// Runs `f` on a fresh cluster; prints the daemons' logs when it fails.
fn scenario(opts: ClusterOpts, f: impl FnOnce(&mut Cluster) -> Result<()>) -> Result<()> {
    if !is_root() {
        eprintln!("skipped: scenarios read the device through its block device (needs root)");
        return Ok(());
    }
    let mut c = Cluster::start(opts)?;
    let r = f(&mut c);
    if r.is_err() {
        eprintln!("{}", c.logs());
    }
    r
}

/// n1: full backup of a written device; the restored clean gid equals the device.
#[test]
fn n1_full_backup() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.write(50, "16k", 1)?;
        let gid = c.init_and_full_backup()?;
        c.assert_restore_equals_device(gid)
    })
}

/// n3: the writes made while the storage was Standby (logged, not shipped) reach the
/// archive by a hash backup alone; only the differing bulks travel; restore equals the
/// device, and the log after the hash backup is shipped as usual.
#[test]
fn n3_hash_backup() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.write(100, "64k", 3)?;
        c.snapshot()?;
        // go_standby: Target → stop force, reset, start standby.
        c.exec_ok(&["stop", "s0", VOL, "force"])?;
        c.exec_ok(&["reset", "s0", VOL])?;
        c.exec_ok(&["start", "s0", VOL, "standby"])?;
        c.write(100, "64k", 4)?;
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        if c.state("s0")? != "Target" {
            bail!("s0 is {} after the hash backup, not Target", c.state("s0")?);
        }
        let diffs = c.exec_ok(&["diff-list", "a0", VOL])?;
        // The hash backup's diff is the dirty one (`|b|-->|gidB,gidE|`): it carries the
        // differing bulks only, far less than the 64 MiB device.
        let hash_diff = diffs
            .lines()
            .find(|l| l.contains(",") && l.contains("-->"))
            .ok_or_else(|| anyhow::anyhow!("no hash-backup diff in:\n{diffs}"))?;
        let size = walb_tests::last_number(hash_diff).unwrap_or(u64::MAX);
        if size >= 16 << 20 {
            bail!("the hash backup sent {size} bytes for 100 writes of at most 64 KiB");
        }
        c.write(20, "16k", 5)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// n2: writes after the full backup, a snapshot, restore equals the device.
#[test]
fn n2_snapshot() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.write(200, "64k", 2)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// n4: servers stopped and started in various orders under a background writer.
#[test]
fn n4_stop_start_under_writes() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        let mut w = c.workload(&[
            "--rate",
            "40",
            "--max-io",
            "16k",
            "--duration",
            "12",
            "--flush-interval",
            "50",
            "--seed",
            "4",
        ])?;
        for (stop, start) in [
            (vec!["s0"], vec!["s0"]),
            (vec!["p0", "a0"], vec!["a0", "p0"]),
            (vec!["a0", "s0", "p0"], vec!["p0", "s0", "a0"]),
        ] {
            for n in &stop {
                c.stop_node(n)?;
            }
            std::thread::sleep(Duration::from_millis(500));
            for n in &start {
                c.start_node(n)?;
            }
            c.exec_ok(&["kick", "s0"])?;
            c.exec_ok(&["kick", "p0", VOL])?;
        }
        if !w.wait()?.success() {
            bail!("background writer failed");
        }
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// e1: the first proxy is down; the storage ships through the second one, the log does not
/// overflow; the first proxy comes back.
#[test]
fn e1_proxy_down() -> Result<()> {
    let opts = ClusterOpts {
        proxies: 2,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        c.kill_node("p0")?;
        // More than the 16 MiB log device (25 MiB), at 2.5 MB/s: the log must drain
        // through p1 while p0 is gone.
        let mut w = c.workload(&[
            "--rate",
            "40",
            "--min-io",
            "64k",
            "--max-io",
            "64k",
            "--count",
            "400",
            "--flush-interval",
            "50",
            "--seed",
            "11",
        ])?;
        if !w.wait()?.success() {
            bail!("writer failed");
        }
        let ov = c.exec_ok(&["get", "s0", "is-overflow", VOL])?;
        if ov.trim() != "0" && ov.trim() != "false" {
            bail!("log overflowed with p0 down: {ov}");
        }
        c.start_node("p0")?;
        c.exec_ok(&["kick", "s0"])?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// e2: the archive is down; the proxy keeps the diffs; nothing overflows; once the archive
/// is back, the snapshot taken meanwhile becomes restorable and equals the device.
#[test]
fn e2_archive_down() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.kill_node("a0")?;
        // More than the 16 MiB log device, at a rate the log drains at.
        let mut w = c.workload(&[
            "--rate",
            "40",
            "--min-io",
            "64k",
            "--max-io",
            "64k",
            "--count",
            "400",
            "--flush-interval",
            "50",
            "--seed",
            "12",
        ])?;
        if !w.wait()?.success() {
            bail!("writer failed");
        }
        let ov = c.exec_ok(&["get", "s0", "is-overflow", VOL])?;
        if ov.trim() != "0" && ov.trim() != "false" {
            bail!("log overflowed with a0 down: {ov}");
        }
        let out = c.exec_ok(&["snapshot", "s0", VOL])?;
        let gid = walb_tests::last_number(&out).unwrap_or(0);
        c.start_node("a0")?;
        c.exec_ok(&["kick", "p0", VOL])?;
        c.exec_ok(&[
            "wait-restorable",
            "a0",
            VOL,
            &gid.to_string(),
            "--timeout",
            "60",
        ])?;
        c.assert_restore_equals_device(gid)
    })
}

/// e3: the storage is killed; writes continue into the log; after its restart it resumes
/// shipping and a new snapshot equals the device.
#[test]
fn e3_storage_down() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.kill_node("s0")?;
        c.write(200, "64k", 13)?;
        c.start_node("s0")?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}
