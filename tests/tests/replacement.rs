//! walb-tools' replacement scenarios r1 to r4 (walb-tools.md §8.3) with real processes on
//! loopback: a storage, a proxy, the primary archive and a secondary archive are each
//! replaced by a spare node (s2, p2, a2) and then put back, the way an operator does it
//! with `walb-console --exec` (binding the new node to the volume, changing the cluster
//! file and restarting the storages with their new `--archive`/`--proxy`). Each half
//! ends in SHA-256 of the restored snapshot = SHA-256 of the device.

use anyhow::{bail, Context, Result};
use walb_tests::{last_number, scenario, Cluster, ClusterOpts, VOL};

/// Device `dev` equals snapshot `gid` restored at `archive`.
fn assert_equal(c: &Cluster, dev: usize, archive: &str, gid: u64, what: &str) -> Result<()> {
    let d = c.device_sha256_of(dev)?;
    let img = c.restored_sha256(archive, gid)?;
    if d != img {
        bail!("{what}: gid {gid} restored at {archive} is {img}, device {dev} is {d}");
    }
    eprintln!("{what}: gid {gid} at {archive} equals device {dev}");
    Ok(())
}

/// r1: s2 (a spare with its own device) takes over the volume from s0 by a hash backup
/// while s0 goes Standby and is cleared; then s0 takes it back the same way and s2 is
/// retired. The archive's owner follows the hash backups.
#[test]
fn r1_replace_storage() -> Result<()> {
    let opts = ClusterOpts {
        devices: 2,
        spares: vec!["s2".into()],
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.write(50, "16k", 10)?;
        c.init_and_full_backup()?;
        c.start_node("s2")?;
        let wdev2 = c.wdev_path_of(1).display().to_string();
        c.exec_ok(&["init-storage", "s2", VOL, &wdev2])?;
        c.go_standby("s0", VOL)?;
        c.write_on(1, 50, "16k", 11)?;
        let out = c.exec_ok(&["hash-backup", "s2", VOL])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        assert_equal(c, 1, "a0", gid, "s2 replaced s0")?;
        let owner = c.exec_ok(&["peers", "a0", VOL])?;
        if !owner.contains("s2") || owner.contains("s0") {
            bail!("a0's peers after s2's hash backup:\n{owner}");
        }
        c.exec_ok(&["clear", "s0", VOL])?;
        // s2 keeps shipping: a snapshot of its writes reaches a0.
        c.write_on(1, 30, "16k", 12)?;
        let gid = c.snapshot_vol("s2", VOL, &["a0"])?;
        assert_equal(c, 1, "a0", gid, "s2 ships")?;

        // Back to s0.
        let wdev0 = c.wdev_path().display().to_string();
        c.exec_ok(&["init-storage", "s0", VOL, &wdev0])?;
        c.go_standby("s2", VOL)?;
        c.write(50, "16k", 13)?;
        let out = c.exec_ok(&["hash-backup", "s0", VOL])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        assert_equal(c, 0, "a0", gid, "s0 back")?;
        c.exec_ok(&["clear", "s2", VOL])?;
        c.retire("s2")?;
        c.write(30, "16k", 14)?;
        let gid = c.snapshot()?;
        assert_equal(c, 0, "a0", gid, "s0 ships")
    })
}

/// walblib's `copy_archive_info` (`copy-archive-info`): `dst` sends the volume to every
/// archive `src` does, the archives take `dst`'s diffs, `dst` takes the storage's wlogs;
/// `dst` ends Started.
fn copy_archive_info(c: &Cluster, src: &str, dst: &str) -> Result<()> {
    let out = c.exec_ok(&["copy-archive-info", src, VOL, dst])?;
    if !out.lines().any(|l| l.starts_with("storage s")) {
        bail!("copy-archive-info {src} -> {dst} bound no storage:\n{out}");
    }
    c.expect_state(dst, "Started")
        .context("after copy-archive-info")
}

/// walb-tools' `replace_proxy`: `add` (a spare, or a retired proxy) gets `del`'s
/// archive-info and starts; `del` drains (`stop empty`), is cleared, unbound from the
/// archives and retired; the storages restart with `proxies` as their proxies.
fn replace_proxy(c: &mut Cluster, del: &str, add: &str, proxies: &[&str]) -> Result<()> {
    c.start_node(add)?;
    copy_archive_info(c, del, add)?;
    let archives = c.exec_ok(&["archive-info", del, "list", VOL])?;
    c.exec_ok(&["stop", del, VOL, "empty"])?;
    c.exec_ok(&["clear", del, VOL])?;
    for a in archives.split_whitespace() {
        c.exec_ok(&["bind", a, VOL, "proxy", del, "--remove"])?;
    }
    c.retire(del)?;
    let archive = c.layout().archive.clone();
    c.set_layout(&archive, proxies)
}

/// r2: p0 is replaced by the spare p2 (layout [p2, p1]), then p2 by p0 again; after
/// each swap writes reach a0 and restore equal to the device.
#[test]
fn r2_replace_proxy() -> Result<()> {
    let opts = ClusterOpts {
        proxies: 2,
        spares: vec!["p2".into()],
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        c.write(50, "16k", 20)?;
        replace_proxy(c, "p0", "p2", &["p2", "p1"])?;
        c.write(50, "16k", 21)?;
        let gid = c.snapshot()?;
        assert_equal(c, 0, "a0", gid, "p2 replaced p0")?;
        let log = std::fs::read_to_string(c.path().join("p2.log"))?;
        if !log.contains("wlog received") {
            bail!("p2 received no wlog: the storage did not use it");
        }
        replace_proxy(c, "p2", "p0", &["p0", "p1"])?;
        c.write(50, "16k", 22)?;
        let gid = c.snapshot()?;
        assert_equal(c, 0, "a0", gid, "p0 back")
    })
}

/// The latest restorable gid at `archive`.
fn latest(c: &Cluster, archive: &str) -> Result<u64> {
    c.restorable_gids(archive)?
        .into_iter()
        .max()
        .with_context(|| format!("{archive} lists no restorable snapshot"))
}

/// walb-tools' `replace_archive`: `add` gets the volume from `del` by replication
/// (synchronizing if `del` was: the proxies then send to `add`, and no longer to
/// `del`); `del` is cleared and retired; the storages restart with `primary` as
/// their archive.
fn replace_archive(c: &mut Cluster, del: &str, add: &str, primary: &str) -> Result<()> {
    let sync = c.is_synchronizing(del, VOL)?;
    c.start_node(add)?;
    let mut args = vec!["replicate", del, VOL, add, "--timeout", "120"];
    if sync {
        args.push("--sync");
    }
    c.exec_ok(&args)?;
    if sync {
        c.exec_ok(&["stop-synchronizing", del, VOL])?;
    }
    c.exec_ok(&["clear", del, VOL])?;
    c.retire(del)?;
    let proxies: Vec<String> = c.layout().proxies.clone();
    let proxies: Vec<&str> = proxies.iter().map(String::as_str).collect();
    c.set_layout(primary, &proxies)
}

/// walb-tools' archives a0 (primary) and a1 (secondary), and a spare a2.
fn archives_and_spare() -> ClusterOpts {
    ClusterOpts {
        archives: 2,
        spares: vec!["a2".into()],
        ..ClusterOpts::default()
    }
}

/// r3: the primary archive a0 (synchronizing: the proxies send to it) is replaced by
/// the spare a2 through a synchronizing replication; the storages move to a2, whose
/// snapshots the proxies deliver; then a0 takes over again the same way.
#[test]
fn r3_replace_primary_archive() -> Result<()> {
    scenario(archives_and_spare(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "16k", 30)?;
        c.snapshot()?;
        for (del, add) in [("a0", "a2"), ("a2", "a0")] {
            if !c.is_synchronizing(del, VOL)? {
                bail!("{del}, the primary archive, is not synchronizing");
            }
            replace_archive(c, del, add, add)?;
            let sends = c.exec_ok(&["archive-info", "p0", "list", VOL])?;
            if sends.split_whitespace().collect::<Vec<_>>() != [add] {
                bail!("after the replacement p0 sends to {sends:?}, not to {add} alone");
            }
            c.write(50, "16k", 31)?;
            let gid = c.snapshot_vol("s0", VOL, &[add])?;
            assert_equal(c, 0, add, gid, &format!("{add} replaced {del}"))?;
        }
        Ok(())
    })
}

/// r4: the secondary archive a1 (not synchronizing) holds a replica of a0; it is
/// replaced by the spare a2 by replicating a1 to a2, then a2 by a1 again; the replica's
/// latest snapshot survives each move, equal to the device.
#[test]
fn r4_replace_secondary_archive() -> Result<()> {
    scenario(archives_and_spare(), |c| {
        c.init_and_full_backup()?;
        if c.is_synchronizing("a1", VOL)? {
            bail!("a1 is synchronizing before r4");
        }
        for (i, (del, add)) in [("a1", "a2"), ("a2", "a1")].into_iter().enumerate() {
            c.write(50, "16k", 40 + i as u64)?;
            let gid = c.snapshot()?;
            let out = c.exec_ok(&["replicate", "a0", VOL, del, "--timeout", "120"])?;
            if last_number(&out) != Some(gid) {
                bail!("replicate a0 -> {del} printed {out:?}, a0's latest is {gid}");
            }
            let before = c.restored_sha256(del, latest(c, del)?)?;
            replace_archive(c, del, add, "a0")?;
            if c.is_synchronizing(add, VOL)? {
                bail!("{add} is synchronizing after a replication without --sync");
            }
            if latest(c, add)? != gid {
                bail!(
                    "{add}'s latest is {} after the move, not {gid}",
                    latest(c, add)?
                );
            }
            if c.restored_sha256(add, gid)? != before {
                bail!("gid {gid} restores differently at {add} than it did at {del}");
            }
            assert_equal(c, 0, add, gid, &format!("{add} replaced {del}"))?;
        }
        Ok(())
    })
}
