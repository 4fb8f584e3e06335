//! walb-tools scenarios n1 to n14 (n11 as n11a and n11b), m1 to m3 and e1 to e17
//! (walb-tools.md §8.3) with real processes on loopback, each ending in the same check: the
//! SHA-256 of the live device equals that of the snapshot restored at the archive (at both
//! archives, with equal bhash, for the replication scenarios n7 to n10, n14, e6, e7 and
//! e14 to e16, which run a second archive a1; n12 runs a second storage s1 on its own
//! device). Network faults (e9 to e16) go through the harness's UDP relay. Elsewhere:
//! r1 to r4 (replacements) in `replacement.rs`, n4a/n4b (volume-level stop/start) and
//! scenario1 in `volumes.rs`.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use walb_tests::{last_number, scenario, wait_until, Cluster, ClusterOpts, VOL};
use walb_wire::msg::{ArchiveState, StorageState, VolumeState};

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
        // go_standby: Target → stop force, stop synchronizing a0, reset, start standby.
        c.go_standby("s0", VOL)?;
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

/// 400 writes of 64 KiB (25 MiB, more than the 16 MiB log), at `rate` writes a second
/// (2.5 MB/s at 40) or as fast as possible.
fn write_25_mib(c: &Cluster, rate: Option<u64>, seed: u64) -> Result<()> {
    let (rate, seed) = (rate.unwrap_or(0).to_string(), seed.to_string());
    let mut w = c.workload(&[
        "--rate",
        &rate,
        "--min-io",
        "64k",
        "--max-io",
        "64k",
        "--count",
        "400",
        "--flush-interval",
        "50",
        "--seed",
        &seed,
    ])?;
    if !w.wait()?.success() {
        bail!("writer failed");
    }
    Ok(())
}

/// The number of diffs a0 holds.
fn diff_count(c: &Cluster) -> Result<usize> {
    Ok(c.exec_ok(&["diff-list", "a0", VOL])?
        .lines()
        .filter(|l| l.contains("-->"))
        .count())
}

/// n5: apply up to a snapshot; it restores the same afterwards, older ones are gone.
#[test]
fn n5_apply() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        let first = c.init_and_full_backup()?;
        c.write(100, "64k", 21)?;
        let gid = c.snapshot()?;
        let before = c.restored_sha256("a0", gid)?;
        c.exec_ok(&["apply", "a0", VOL, &gid.to_string()])?;
        if c.restored_sha256("a0", gid)? != before {
            bail!("gid {gid} restores differently after apply");
        }
        let points = c.exec_ok(&["restorable", "a0", VOL])?;
        if points
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&first.to_string()))
        {
            bail!("gid {first} is older than the base after apply, still listed:\n{points}");
        }
        c.assert_restore_equals_device(gid)
    })
}

/// n6: merge the diffs between two explicit snapshots (at least two: the second batch of
/// writes goes out after the first reached the archive); the later one restores the
/// same, the diff count drops.
#[test]
fn n6_merge() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        let gid_b = c.snapshot()?;
        let n0 = diff_count(c)?;
        c.write(60, "64k", 22)?;
        wait_until(
            60,
            "the first batch reaching a0",
            || Ok(diff_count(c)? > n0),
        )?;
        c.write(60, "64k", 23)?;
        let gid_e = c.snapshot()?;
        let before = c.restored_sha256("a0", gid_e)?;
        let n1 = diff_count(c)?;
        c.exec_ok(&["merge", "a0", VOL, &gid_b.to_string(), &gid_e.to_string()])?;
        let n2 = diff_count(c)?;
        if n2 >= n1 {
            bail!("merge {gid_b}..{gid_e} left {n2} diffs of {n1}");
        }
        if c.restored_sha256("a0", gid_e)? != before {
            bail!("gid {gid_e} restores differently after the merge");
        }
        c.assert_restore_equals_device(gid_e)
    })
}

/// e4: the storage is down while more than the log holds is written: the log overflows;
/// back up, the storage reports the overflow, and a hash backup brings the archive level
/// with the device.
#[test]
fn e4_storage_down_overflow() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.kill_node("s0")?;
        // 400 writes of 64 KiB: 25 MiB into a 16 MiB log nobody drains.
        write_25_mib(c, None, 24)?;
        c.start_node("s0")?;
        wait_until(
            30,
            "s0 reporting the overflow of 25 MiB into a 16 MiB log",
            || {
                let ov = c.exec_ok(&["get", "s0", "is-overflow", VOL])?;
                Ok(ov.trim() == "1" || ov.trim() == "true")
            },
        )?;
        // An overflowed volume stops shipping by itself (walb-tools needs a `stop` here).
        let st = c.state("s0")?;
        if !st.contains("Stopped") {
            bail!("s0 is {st} after the overflow, not Stopped");
        }
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        c.write(20, "16k", 25)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// The gids a0 lists as restorable (explicit snapshots).
fn restorable(c: &Cluster) -> Result<Vec<u64>> {
    Ok(c.exec_ok(&["restorable", "a0", VOL])?
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

/// n13: disable-snapshot makes snapshots implicit (no longer restorable, mergeable);
/// enable-snapshot brings them back; the last one restores as before.
#[test]
fn n13_disable_enable_snapshot() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        let mut gids = Vec::new();
        for seed in 0..5 {
            c.write(20, "16k", 30 + seed)?;
            gids.push(c.snapshot()?);
        }
        let all = restorable(c)?;
        for g in &gids {
            if !all.contains(g) {
                bail!("snapshot {g} is not restorable: {all:?}");
            }
        }
        let first4: Vec<String> = gids[..4].iter().map(u64::to_string).collect();
        let mut args = vec!["disable-snapshot", "a0", VOL];
        args.extend(first4.iter().map(String::as_str));
        c.exec_ok(&args)?;
        let now = restorable(c)?;
        if gids[..4].iter().any(|g| now.contains(g)) || !now.contains(&gids[4]) {
            bail!("after disabling {first4:?}: restorable {now:?}");
        }
        args[0] = "enable-snapshot";
        c.exec_ok(&args)?;
        let out = c.exec(&["disable-snapshot", "a0", VOL, "999999"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("no diff starts at gid 999999") {
            bail!("disabling a gid no diff starts at: {err}");
        }
        if restorable(c)? != all {
            bail!("after enabling again: {:?}, before {all:?}", restorable(c)?);
        }
        c.assert_restore_equals_device(gids[4])
    })
}

/// m1 and m2: a full backup or a hash backup of a Target storage is refused with the
/// reason and changes nothing; a hash backup to an archive that lost its data (reset to
/// SyncReady) is refused before the storage is touched; a full backup recovers.
#[test]
fn m1_m2_backups_refused_in_the_wrong_states() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        for cmd in ["full-backup", "hash-backup"] {
            let out = c.exec(&[cmd, "s0", VOL, "--timeout", "10"])?;
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains("s0 vol: it is Target") {
                bail!("{cmd} of a Target volume: {err}");
            }
            if c.state("s0")? != "Target" {
                bail!("{cmd} refused, yet s0 left Target: {}", c.state("s0")?);
            }
        }
        // m2: the archive loses its data.
        c.exec_ok(&["stop", "a0", VOL])?;
        c.exec_ok(&["reset", "a0", VOL])?;
        c.exec_ok(&["stop", "s0", VOL])?;
        c.write(20, "16k", 50)?;
        let out = c.exec(&["hash-backup", "s0", VOL, "--timeout", "10"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("a0 vol: it is SyncReady") {
            bail!("hash backup to a SyncReady archive: {err}");
        }
        if c.state("s0")? != "Stopped" {
            bail!("the refused hash backup moved s0 to {}", c.state("s0")?);
        }
        let out = c.exec_ok(&["full-backup", "s0", VOL])?;
        let gid = walb_tests::last_number(&out).unwrap_or(0);
        c.assert_restore_equals_device(gid)
    })
}

/// m3: the storage's device grows (data device first, then `resize` of the storage
/// alone); data written past the old end cannot reach the archive (`smaller-lv-size`: the
/// proxy stops retrying and reports a send error) until the archive is resized too and
/// the proxy kicked; then the snapshot is restorable and equals the device.
#[test]
fn m3_resize_storage_before_archive() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.snapshot()?;
        let ddev = std::fs::OpenOptions::new()
            .write(true)
            .open(c.ddev_path())?;
        ddev.set_len(36 << 20)?;
        drop(ddev);
        c.exec_ok(&["resize", "s0", VOL, "36m"])?;
        let dev = std::fs::OpenOptions::new()
            .write(true)
            .open(c.wdev_path())?;
        let size = std::io::Seek::seek(&mut &dev, std::io::SeekFrom::End(0))?;
        if size != 36 << 20 {
            bail!("the device has {size} bytes after resize, not 36 MiB");
        }
        // Past the old end of 32 MiB.
        std::os::unix::fs::FileExt::write_all_at(&dev, &[0x5au8; 65536], 33 << 20)?;
        dev.sync_all()?;
        drop(dev);
        let out = c.exec_ok(&["snapshot", "s0", VOL])?;
        let gid = walb_tests::last_number(&out).unwrap_or(0);
        let g = gid.to_string();
        let waited = c.exec(&["wait-restorable", "a0", VOL, &g, "--timeout", "5"])?;
        if waited.status.success() {
            bail!("gid {gid} became restorable at a0 before a0 was resized");
        }
        let err = c.exec_ok(&["get", "p0", "is-wdiff-send-error", VOL, "a0"])?;
        if !matches!(err.trim(), "1" | "true") {
            bail!("p0 reports no send error to the smaller a0: {err}");
        }
        c.exec_ok(&["resize", "a0", VOL, "36m"])?;
        c.exec_ok(&["kick", "p0", VOL])?;
        c.exec_ok(&["wait-restorable", "a0", VOL, &g, "--timeout", "60"])?;
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
        write_25_mib(c, Some(40), 11)?;
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
        write_25_mib(c, Some(40), 12)?;
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

/// e5: the proxy loses its data (the diffs it held for a stopped archive): what follows
/// cannot reach the archive (the chain has a hole); a hash backup levels the archive with
/// the device, after which shipping resumes.
#[test]
fn e5_proxy_data_lost() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.kill_node("a0")?;
        c.write(100, "64k", 42)?;
        // Until p0 holds diffs for the absent a0.
        wait_until(60, "p0 queueing a diff for a0", || {
            Ok(c.exec_ok(&["get", "p0", "diff", VOL, "a0"])?
                .contains("-->"))
        })?;
        c.kill_node("p0")?;
        std::fs::remove_dir_all(c.path().join("p0"))?;
        c.start_node("a0")?;
        c.start_node("p0")?;
        c.exec_ok(&["archive-info", "p0", "add", VOL, "a0"])?;
        c.exec_ok(&["start", "p0", VOL])?;
        c.exec_ok(&["kick", "s0"])?;
        c.write(20, "16k", 43)?;
        let out = c.exec_ok(&["snapshot", "s0", VOL])?;
        let gid = walb_tests::last_number(&out).unwrap_or(0).to_string();
        let w = c.exec(&["wait-restorable", "a0", VOL, &gid, "--timeout", "5"])?;
        if w.status.success() {
            bail!("gid {gid} became restorable across the diffs p0 lost");
        }
        c.exec_ok(&["stop", "s0", VOL])?;
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        c.write(20, "16k", 44)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// Takes a snapshot at s0 and checks that it does not become restorable at a0 within
/// `secs` seconds (a cut link holds it back); its gid.
fn snapshot_held_back(c: &Cluster, secs: u64) -> Result<String> {
    let out = c.exec_ok(&["snapshot", "s0", VOL])?;
    let gid = last_number(&out)
        .with_context(|| format!("no gid in {out:?}"))?
        .to_string();
    let w = c.exec(&[
        "wait-restorable",
        "a0",
        VOL,
        &gid,
        "--timeout",
        &secs.to_string(),
    ])?;
    if w.status.success() {
        bail!("gid {gid} became restorable across a cut link");
    }
    Ok(gid)
}

/// e9: the network between the storage and the proxy is cut (a relay drops every datagram
/// both ways): writes stay in the log and a snapshot is not restorable; once the link is
/// back, shipping resumes on its own and the device equals the restore.
#[test]
fn e9_storage_proxy_link_cut() -> Result<()> {
    let opts = ClusterOpts {
        repeat_s0_p0: true,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        c.repeater("s0-p0")?.cut(true);
        c.write(200, "64k", 91)?;
        let held = snapshot_held_back(c, 10)?;
        let r = c.repeater("s0-p0")?;
        if r.dropped() == 0 {
            bail!("the relay dropped nothing: s0 did not use it");
        }
        r.cut(false);
        c.exec_ok(&["wait-restorable", "a0", VOL, &held, "--timeout", "120"])?;
        c.write(20, "16k", 92)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// e11: the network between the proxy and the archive is cut while the storage writes:
/// the proxy keeps the diffs; once the link is back and the proxy kicked, the snapshot
/// taken meanwhile becomes restorable and equals the device.
#[test]
fn e11_proxy_archive_link_cut() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        // p0 reaches a0 through a relay from now on.
        let via = c.add_repeater("p0-a0", "a0")?;
        c.exec_ok(&["stop", "p0", VOL])?;
        c.exec_ok(&["archive-info", "p0", "update", VOL, "a0", &via])?;
        c.exec_ok(&["start", "p0", VOL])?;
        c.write(20, "16k", 93)?;
        let gid = c.snapshot()?;
        c.repeater("p0-a0")?.cut(true);
        let w = c.workload(&["--rate", "40", "--duration", "8", "--flush-interval", "100"])?;
        let held = snapshot_held_back(c, 10)?;
        let out = w.wait_with_output()?;
        walb_tests::check(&out, "workload")?;
        let r = c.repeater("p0-a0")?;
        if r.dropped() == 0 {
            bail!("the relay dropped nothing: p0 did not use it");
        }
        r.cut(false);
        c.exec_ok(&["kick", "p0"])?;
        c.exec_ok(&["wait-restorable", "a0", VOL, &held, "--timeout", "120"])?;
        if gid.to_string() == held {
            bail!("the snapshot under the cut is the one before it");
        }
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// e14: a full replication over a slow link is cut in the middle: the source's action
/// ends and the destination falls back to SyncReady; the next replication resumes the
/// copy where it broke, and both archives restore the device.
#[test]
fn e14_full_replication_cut_and_resumed() -> Result<()> {
    use walb_wire::msg::{Command, MergeUntil, ReplicateCommand};
    use walb_wire::{Query, Reply, Request};
    scenario(two_archives(), |c| {
        // Data in the base image (written before the full backup): what a full copy sends.
        let wdev = c.wdev_path().display().to_string();
        c.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
        c.exec_ok(&["stop", "s0", VOL])?;
        c.write(400, "64k", 141)?;
        let out = c.exec_ok(&["full-backup", "s0", VOL])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        c.exec_ok(&["wait-restorable", "a0", VOL, &gid.to_string()])?;
        c.exec_ok(&["init-archive", "a1", VOL])?;
        // The wire command below skips the console's replicate, which binds the source.
        c.exec_ok(&["bind", "a1", VOL, "archive", "a0", "--add"])?;
        // a0 reaches a1 through a slow relay: the copy of ~12 MiB of data takes ~12 s.
        let via = c.add_repeater("a0-a1", "a1")?;
        c.repeater("a0-a1")?.set_rate(1_000_000);
        let op = c.operator()?;
        let r = op.request(
            "a0",
            Request::Command(Command::Replicate(ReplicateCommand {
                vol: VOL.into(),
                until: MergeUntil::Gid(gid),
                dest: via,
                dest_id: "a1".into(),
                do_resync: false,
                dont_merge: false,
                compress: None,
                merge_size_max: None,
                bulk_lb: None,
            })),
        )?;
        if r != Reply::Accepted {
            bail!("replicate answered {r:?}");
        }
        wait_until(30, "a1 in FullSync", || {
            Ok(op.state("a1", VOL)? == VolumeState::Archive(ArchiveState::FullSync))
        })?;
        std::thread::sleep(Duration::from_secs(3));
        c.repeater("a0-a1")?.cut(true);
        let replicating = || {
            op.request(
                "a0",
                Request::Query(Query::NumAction {
                    vol: VOL.into(),
                    action: "ReplSyncAsClient".into(),
                }),
            )
        };
        wait_until(90, "a0's replication to end", || {
            Ok(replicating()? == Reply::Number(0))
        })?;
        wait_until(90, "a1 back to SyncReady", || {
            Ok(op.state("a1", VOL)? == VolumeState::Archive(ArchiveState::SyncReady))
        })?;
        // Again, directly: the copy resumes.
        replicate(c, &["--gid", &gid.to_string()])?;
        let log = std::fs::read_to_string(c.path().join("a1.log"))?;
        if !log.contains("resuming an unfinished copy") {
            bail!("a1 copied the image again from the start");
        }
        assert_replica_equals_device(c, gid)
    })
}

/// e12: a full backup over a slow link to the archive is cut in the middle: the storage
/// and the archive both fall back to SyncReady; once the link is back a new full backup
/// succeeds and the restore equals the device.
#[test]
fn e12_full_backup_cut() -> Result<()> {
    let opts = ClusterOpts {
        repeat_s0_a0: true,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        let wdev = c.wdev_path().display().to_string();
        c.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
        c.exec_ok(&["stop", "s0", VOL])?;
        c.write(400, "64k", 121)?;
        c.repeater("s0-a0")?.set_rate(1_000_000);
        let op = c.operator()?;
        let backup = c.exec_spawn(&["full-backup", "s0", VOL, "--timeout", "300"])?;
        wait_until(30, "a0 in FullSync", || {
            Ok(op.state("a0", VOL)? == VolumeState::Archive(ArchiveState::FullSync))
        })?;
        std::thread::sleep(Duration::from_secs(3));
        c.repeater("s0-a0")?.cut(true);
        let out = backup.wait_with_output()?;
        if out.status.success() {
            bail!("the full backup succeeded across a cut link");
        }
        wait_until(90, "s0 back to SyncReady", || {
            Ok(op.state("s0", VOL)? == VolumeState::Storage(StorageState::SyncReady))
        })?;
        wait_until(90, "a0 back to SyncReady", || {
            Ok(op.state("a0", VOL)? == VolumeState::Archive(ArchiveState::SyncReady))
        })?;
        let r = c.repeater("s0-a0")?;
        r.cut(false);
        r.set_rate(0);
        let out = c.exec_ok(&["full-backup", "s0", VOL])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        c.assert_restore_equals_device(gid)
    })
}

/// e8: the storage loses its metadata: after a new init-storage, a hash backup levels the
/// archive with the device.
#[test]
fn e8_storage_metadata_lost() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 45)?;
        c.kill_node("s0")?;
        std::fs::remove_dir_all(c.path().join("s0"))?;
        c.start_node("s0")?;
        let wdev = c.wdev_path().display().to_string();
        c.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
        c.write(50, "64k", 46)?;
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        c.write(20, "16k", 47)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// A cluster with a second archive a1 (outside s0's backup group).
fn two_archives() -> ClusterOpts {
    ClusterOpts {
        archives: 2,
        ..ClusterOpts::default()
    }
}

/// `replicate a0 vol a1 EXTRA...`; returns the gid it printed.
fn replicate(c: &Cluster, extra: &[&str]) -> Result<u64> {
    let mut args = vec!["replicate", "a0", VOL, "a1", "--timeout", "120"];
    args.extend(extra);
    let out = c.exec_ok(&args)?;
    last_number(&out).with_context(|| format!("replicate printed no gid: {out:?}"))
}

/// a0 and a1 list the same restorable snapshots and share the archive uuid; `gid` has
/// the same bhash on both and restores the same on both, equal to the device.
fn assert_replica_equals_device(c: &Cluster, gid: u64) -> Result<()> {
    let (l0, l1) = (c.restorable_lines("a0")?, c.restorable_lines("a1")?);
    if l0 != l1 {
        bail!(
            "restorable differs:\na0:\n{}\na1:\n{}",
            l0.join("\n"),
            l1.join("\n")
        );
    }
    let uuid = |a: &str| c.exec_ok(&["get", a, "archive-uuid", VOL]);
    if uuid("a0")? != uuid("a1")? {
        bail!("a0 and a1 have different archive uuids after the replication");
    }
    let g = gid.to_string();
    let bhash = |a: &str| c.exec_ok(&["bhash", a, VOL, &g]);
    if bhash("a0")? != bhash("a1")? {
        bail!("bhash of gid {gid} differs between a0 and a1");
    }
    let dev = c.device_sha256()?;
    for a in ["a0", "a1"] {
        let img = c.restored_sha256(a, gid)?;
        if img != dev {
            bail!("gid {gid} restored at {a} differs from the device: {img} != {dev}");
        }
    }
    Ok(())
}

/// n7: a fresh a1 gets a full replication of a0 (init-vol by replicate); both list the
/// same snapshots, and the latest restores the same on both, equal to the device.
#[test]
fn n7_replicate_full() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(100, "64k", 70)?;
        let gid = c.snapshot()?;
        if c.state("a1")? != "Clear" {
            bail!("a1 is {} before the replication, not Clear", c.state("a1")?);
        }
        let r = replicate(c, &[])?;
        if r != gid {
            bail!("replicate printed gid {r}, a0's latest restorable is {gid}");
        }
        c.expect_state("a1", "Archived")
            .context("after the replication")?;
        if c.is_synchronizing("a1", VOL)? {
            bail!("a replication without --sync made the proxy send to a1");
        }
        // The source tells its lag behind a1 (none: a1 holds its latest).
        let delta = c.exec_ok(&["get", "a0", "ts-delta"])?;
        if !delta.contains("a1") && !delta.contains(&c.ports["a1"].to_string()) {
            bail!("get a0 ts-delta names no a1:\n{delta}");
        }
        assert_replica_equals_device(c, gid)
    })
}

/// n8: after a full replication, writes and a snapshot at a0; a second replication
/// brings a1 up by diffs (its base stays); lists and bytes equal.
#[test]
fn n8_replicate_diff() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(100, "64k", 80)?;
        c.snapshot()?;
        replicate(c, &[])?;
        let base = c.exec_ok(&["get", "a1", "base", VOL])?;
        c.write(100, "64k", 81)?;
        let gid = c.snapshot()?;
        let a1_latest = c.restorable_gids("a1")?.into_iter().max().unwrap_or(0);
        if a1_latest >= gid {
            bail!("a1 already holds gid {a1_latest} >= {gid} before the replication");
        }
        let r = replicate(c, &[])?;
        if r != gid {
            bail!("replicate printed gid {r}, not a0's latest {gid}");
        }
        if c.exec_ok(&["get", "a1", "base", VOL])? != base {
            bail!("the second replication replaced a1's base (a full copy, not diffs)");
        }
        let diffs = c.exec_ok(&["diff-list", "a1", VOL])?;
        if !diffs.contains(&format!("-->|{gid}|")) {
            bail!("a1 has no diff up to {gid}:\n{diffs}");
        }
        assert_replica_equals_device(c, gid)
    })
}

/// n10: `replicate --sync` under writes: afterwards the proxy sends every diff to a1
/// too, so a new snapshot becomes restorable on both and restores the same; after
/// stop-synchronizing a1 no longer follows.
#[test]
fn n10_synchronizing() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        let mut w = c.workload(&[
            "--rate",
            "40",
            "--max-io",
            "16k",
            "--duration",
            "8",
            "--flush-interval",
            "50",
            "--seed",
            "100",
        ])?;
        replicate(c, &["--sync"])?;
        if !w.wait()?.success() {
            bail!("background writer failed");
        }
        if !c.is_synchronizing("a1", VOL)? {
            bail!("after replicate --sync, the proxy does not send to a1");
        }
        c.expect_state("p0", "Started")
            .context("after replicate --sync")?;
        let gid = c.snapshot_at(&["a0", "a1"])?;
        let dev = c.device_sha256()?;
        for a in ["a0", "a1"] {
            if c.restored_sha256(a, gid)? != dev {
                bail!("gid {gid} restored at {a} differs from the device");
            }
        }
        c.exec_ok(&["stop-synchronizing", "a1", VOL])?;
        if c.is_synchronizing("a1", VOL)? {
            bail!("still synchronizing after stop-synchronizing");
        }
        c.write(20, "16k", 101)?;
        let gid2 = c.snapshot()?;
        let a1_latest = c.restorable_gids("a1")?.into_iter().max().unwrap_or(0);
        if a1_latest >= gid2 {
            bail!("a1 follows after stop-synchronizing: it holds {a1_latest} >= {gid2}");
        }
        let g = gid2.to_string();
        if c.exec(&["wait-restorable", "a1", VOL, &g, "--timeout", "3"])?
            .status
            .success()
        {
            bail!("gid {gid2} became restorable at a1 after stop-synchronizing");
        }
        c.assert_restore_equals_device(gid2)
    })
}

/// e7: the secondary archive loses its data while synchronizing: new snapshots reach
/// a0 only; `replicate --sync` again rebuilds a1 (full) and it follows again; device, a0
/// and a1 agree; stop-synchronizing ends it.
#[test]
fn e7_secondary_archive_data_lost() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 110)?;
        replicate(c, &["--sync"])?;
        c.kill_node("a1")?;
        std::fs::remove_dir_all(c.path().join("a1"))?;
        c.start_node("a1")?;
        c.write(20, "16k", 111)?;
        let gid = c.snapshot()?;
        let g = gid.to_string();
        if c.exec(&["wait-restorable", "a1", VOL, &g, "--timeout", "3"])?
            .status
            .success()
        {
            bail!("gid {gid} became restorable at a1, which lost its data");
        }
        if c.state("a1")? != "Clear" {
            bail!("a1 is {} after losing its data, not Clear", c.state("a1")?);
        }
        replicate(c, &["--sync"])?;
        c.write(20, "16k", 112)?;
        let gid2 = c.snapshot_at(&["a0", "a1"])?;
        assert_replica_equals_device(c, gid2)?;
        c.exec_ok(&["stop-synchronizing", "a1", VOL])?;
        if c.is_synchronizing("a1", VOL)? {
            bail!("still synchronizing after stop-synchronizing");
        }
        Ok(())
    })
}

/// n9: a1 is behind a0's base (a0 applied the diffs a1 would need): the replication
/// compares the images and sends the differing bulks (a hash round); the latest
/// snapshots agree and restore the same, equal to the device.
#[test]
fn n9_replicate_hash() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 90)?;
        c.snapshot()?;
        replicate(c, &[])?;
        c.write(50, "64k", 91)?;
        let gid0 = c.snapshot()?;
        c.exec_ok(&["apply", "a0", VOL, &gid0.to_string()])?;
        let a0 = c.restorable_gids("a0")?;
        if a0 != [gid0] {
            bail!("a0 lists {a0:?} after applying up to {gid0}");
        }
        c.write(50, "64k", 92)?;
        let gid = c.snapshot()?;
        let r = replicate(c, &[])?;
        if r != gid {
            bail!("replicate printed gid {r}, not a0's latest {gid}");
        }
        let latest =
            |a: &str| -> Result<Option<u64>> { Ok(c.restorable_gids(a)?.into_iter().max()) };
        if latest("a0")? != latest("a1")? {
            bail!(
                "latest restorable: a0 {:?}, a1 {:?}",
                latest("a0")?,
                latest("a1")?
            );
        }
        let dev = c.device_sha256()?;
        for a in ["a0", "a1"] {
            if c.restored_sha256(a, gid)? != dev {
                bail!("gid {gid} restored at {a} differs from the device");
            }
        }
        Ok(())
    })
}

/// n14: a0 starts a new lineage (cleared, new full backup): a replication to a1, which
/// holds the old one, is refused with the reason until `--resync`, which rebuilds a1;
/// both then restore the same, equal to the device.
#[test]
fn n14_resync() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 140)?;
        c.snapshot()?;
        replicate(c, &[])?;
        c.exec_ok(&["clear", "a0", VOL])?;
        c.exec_ok(&["stop", "s0", VOL])?;
        c.write(50, "64k", 141)?;
        c.exec_ok(&["full-backup", "s0", VOL])?;
        c.write(20, "16k", 142)?;
        let gid = c.snapshot()?;
        let out = c.exec(&["replicate", "a0", VOL, "a1", "--timeout", "60"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("--resync") {
            bail!("a replication onto another lineage without --resync: {err}");
        }
        let r = replicate(c, &["--resync"])?;
        if r != gid {
            bail!("replicate --resync printed gid {r}, not a0's latest {gid}");
        }
        assert_replica_equals_device(c, gid)
    })
}

/// The latest restorable gid of `archive`.
fn latest_restorable(c: &Cluster, archive: &str) -> Result<u64> {
    c.restorable_gids(archive)?
        .into_iter()
        .max()
        .with_context(|| format!("{archive} lists no restorable snapshot"))
}

/// Occurrences of `text` in the log of daemon `node`.
fn log_count(c: &Cluster, node: &str, text: &str) -> Result<usize> {
    let log = std::fs::read_to_string(c.path().join(format!("{node}.log")))?;
    Ok(log.matches(text).count())
}

/// e6: the primary archive loses its data (killed, its directory deleted): re-initialised,
/// it receives nothing from the proxy and a snapshot is not restorable; a full backup
/// brings it level with the device again, on a new lineage: the replica a1 then needs
/// `replicate --resync`, after which both archives restore the device.
#[test]
fn e6_primary_archive_data_lost() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 60)?;
        c.snapshot()?;
        replicate(c, &[])?;
        let old_uuid = c.exec_ok(&["get", "a1", "archive-uuid", VOL])?;
        c.kill_node("a0")?;
        std::fs::remove_dir_all(c.path().join("a0"))?;
        c.start_node("a0")?;
        if c.state("a0")? != "Clear" {
            bail!("a0 is {} after losing its data, not Clear", c.state("a0")?);
        }
        c.exec_ok(&["init-archive", "a0", VOL])?;
        c.write(20, "16k", 61)?;
        snapshot_held_back(c, 5)?;
        if c.state("a0")? != "SyncReady" {
            bail!("a0 is {} before its new full backup", c.state("a0")?);
        }
        c.exec_ok(&["stop", "s0", VOL])?;
        c.write(20, "16k", 62)?;
        let out = c.exec_ok(&["full-backup", "s0", VOL])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        c.assert_restore_equals_device(gid)?;
        // a1 still holds the lost lineage: a plain replication is refused.
        let out = c.exec(&["replicate", "a0", VOL, "a1", "--timeout", "60"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("--resync") {
            bail!("a replication onto the lost lineage without --resync: {err}");
        }
        let r = replicate(c, &["--resync"])?;
        if r != gid {
            bail!("replicate --resync printed gid {r}, not a0's latest {gid}");
        }
        if c.exec_ok(&["get", "a1", "archive-uuid", VOL])? == old_uuid {
            bail!("a1 kept the lost lineage's archive uuid after --resync");
        }
        assert_replica_equals_device(c, gid)
    })
}

/// e10: the link between the storage and the proxy is cut while more than the log
/// device holds is written: nothing drains, the log overflows and the storage reports it
/// (and stops the volume); once the link is back, a hash backup levels the archive with
/// the device and shipping resumes.
#[test]
fn e10_storage_proxy_cut_overflow() -> Result<()> {
    let opts = ClusterOpts {
        repeat_s0_p0: true,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        c.repeater("s0-p0")?.cut(true);
        // 25 MiB into a 16 MiB log at a rate it drains at (e1, e2), but it cannot drain:
        // s0 tries to ship all along, into the cut link.
        write_25_mib(c, Some(40), 101)?;
        wait_until(60, "s0 reports the overflow", || {
            let ov = c.exec_ok(&["get", "s0", "is-overflow", VOL])?;
            Ok(matches!(ov.trim(), "1" | "true"))
        })?;
        let r = c.repeater("s0-p0")?;
        if r.dropped() == 0 {
            bail!("the relay dropped nothing: s0 did not use it");
        }
        r.cut(false);
        c.exec_ok(&["stop", "s0", VOL])?;
        if c.state("s0")? != "Stopped" {
            bail!("s0 is {} after the overflow and stop", c.state("s0")?);
        }
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        let ov = c.exec_ok(&["get", "s0", "is-overflow", VOL])?;
        if !matches!(ov.trim(), "0" | "false") {
            bail!("s0 still reports an overflow after the hash backup: {ov}");
        }
        c.write(20, "16k", 102)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// Snapshots taken while the proxy is down and lost in an overflow are never shipped;
/// the hash backup that recovers the volume restarts the gids after it, so its gid never
/// names another image at the archive (walb-tools restarts at the archive's latest gid
/// plus one and would hand the same gid out again).
#[test]
fn a_gid_lost_in_an_overflow_is_not_handed_out_again() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        let shipped = c.init_and_full_backup()?;
        c.kill_node("p0")?;
        let mut lost = 0;
        for seed in 0..3 {
            c.write(20, "16k", 140 + seed)?;
            let out = c.exec_ok(&["snapshot", "s0", VOL])?;
            lost = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        }
        if lost <= shipped {
            bail!("snapshot {lost} is not after the full backup's {shipped}");
        }
        // 25 MiB into a 16 MiB log nobody drains.
        write_25_mib(c, None, 141)?;
        wait_until(60, "s0 reports the overflow", || {
            let ov = c.exec_ok(&["get", "s0", "is-overflow", VOL])?;
            Ok(matches!(ov.trim(), "1" | "true"))
        })?;
        c.start_node("p0")?;
        if c.state("s0")? != "Stopped" {
            c.exec_ok(&["stop", "s0", VOL])?;
        }
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        let mut after = Vec::new();
        for seed in 0..3 {
            c.write(20, "16k", 150 + seed)?;
            after.push(c.snapshot()?);
        }
        if let Some(g) = after.iter().find(|g| **g <= lost) {
            bail!("gid {g} after the hash backup reuses the lost snapshot's range (lost {lost}; after {after:?})");
        }
        let listed = restorable(c)?;
        eprintln!(
            "shipped {shipped}, lost {lost}, after the hash backup {after:?}, a0 lists {listed:?}"
        );
        if listed.contains(&lost) {
            bail!("a0 lists the lost gid {lost} as restorable: {listed:?}");
        }
        let last = after.last().copied().context("no snapshot")?;
        c.assert_restore_equals_device(last)
    })
}

/// e13: a hash backup over a slow link to the archive is cut in the middle: the archive
/// falls back to Archived with the snapshots it had (unchanged while the backup ran), the
/// storage to SyncReady; once the link is back a new hash backup succeeds and the
/// restore equals the device.
#[test]
fn e13_hash_backup_cut() -> Result<()> {
    let opts = ClusterOpts {
        repeat_s0_a0: true,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        c.write(20, "16k", 130)?;
        c.snapshot()?;
        c.exec_ok(&["stop", "s0", VOL])?;
        // ~10 MiB of differences (less than the log holds) for the hash backup to send.
        c.write(200, "64k", 131)?;
        let before = c.restorable_lines("a0")?;
        c.repeater("s0-a0")?.set_rate(1_000_000);
        let op = c.operator()?;
        let backup = c.exec_spawn(&["hash-backup", "s0", VOL, "--timeout", "300"])?;
        wait_until(30, "a0 in HashSync", || {
            Ok(op.state("a0", VOL)? == VolumeState::Archive(ArchiveState::HashSync))
        })?;
        if c.restorable_lines("a0")? != before {
            bail!("a0's restorable list changed while the hash backup ran");
        }
        std::thread::sleep(Duration::from_secs(3));
        c.repeater("s0-a0")?.cut(true);
        let out = backup.wait_with_output()?;
        if out.status.success() {
            bail!("the hash backup succeeded across a cut link");
        }
        wait_until(90, "a0 back to Archived", || {
            Ok(op.state("a0", VOL)? == VolumeState::Archive(ArchiveState::Archived))
        })?;
        wait_until(90, "s0 back to SyncReady", || {
            Ok(op.state("s0", VOL)? == VolumeState::Storage(StorageState::SyncReady))
        })?;
        let r = c.repeater("s0-a0")?;
        if r.dropped() == 0 {
            bail!("the relay dropped nothing: s0 did not use it");
        }
        if c.restorable_lines("a0")? != before {
            bail!("the cut hash backup changed a0's restorable list");
        }
        r.cut(false);
        r.set_rate(0);
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        c.write(20, "16k", 132)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// Starts `replicate a0 vol a1` up to `gid` as a wire command whose destination is the
/// relay `a0-a1` (added here, slowed to 1 MB/s), so that the link can be cut under it.
fn replicate_through_slow_relay(
    c: &mut Cluster,
    op: &walb_tests::Operator,
    gid: u64,
) -> Result<()> {
    use walb_wire::msg::{Command, MergeUntil, ReplicateCommand};
    use walb_wire::{Reply, Request};
    let via = c.add_repeater("a0-a1", "a1")?;
    c.repeater("a0-a1")?.set_rate(1_000_000);
    let r = op.request(
        "a0",
        Request::Command(Command::Replicate(ReplicateCommand {
            vol: VOL.into(),
            until: MergeUntil::Gid(gid),
            dest: via,
            dest_id: "a1".into(),
            do_resync: false,
            dont_merge: false,
            compress: None,
            merge_size_max: None,
            bulk_lb: None,
        })),
    )?;
    if r != Reply::Accepted {
        bail!("replicate answered {r:?}");
    }
    Ok(())
}

/// Cuts the relay `a0-a1` and waits until a0's replication ended and a1 is Archived
/// again; checks the relay dropped datagrams.
fn cut_replication(c: &Cluster, op: &walb_tests::Operator) -> Result<()> {
    use walb_wire::{Query, Reply, Request};
    c.repeater("a0-a1")?.cut(true);
    wait_until(90, "a0's replication to end", || {
        let n = op.request(
            "a0",
            Request::Query(Query::NumAction {
                vol: VOL.into(),
                action: "ReplSyncAsClient".into(),
            }),
        )?;
        Ok(n == Reply::Number(0))
    })?;
    wait_until(90, "a1 back to Archived", || {
        Ok(op.state("a1", VOL)? == VolumeState::Archive(ArchiveState::Archived))
    })?;
    if c.repeater("a0-a1")?.dropped() == 0 {
        bail!("the relay dropped nothing: a0 did not use it");
    }
    Ok(())
}

/// e15: a replication whose hash round (a1 is behind a0's applied base) is cut in the
/// middle: a1 stays Archived with the snapshots it had; the next replication (direct)
/// reaches a0's latest, and both archives restore the device.
#[test]
fn e15_replication_hash_round_cut() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 150)?;
        c.snapshot()?;
        replicate(c, &[])?;
        let a1_before = c.restorable_lines("a1")?;
        // About a third of the device differs between a1's latest and a0's new base.
        c.write(160, "64k", 151)?;
        let gid0 = c.snapshot()?;
        c.exec_ok(&["apply", "a0", VOL, &gid0.to_string()])?;
        c.write(20, "16k", 152)?;
        let gid1 = c.snapshot()?;
        let op = c.operator()?;
        let rounds = log_count(c, "a0", "hash round")?;
        let compared = log_count(c, "a0", "compared image sent")?;
        replicate_through_slow_relay(c, &op, gid1)?;
        wait_until(30, "a0 to start the hash round", || {
            Ok(log_count(c, "a0", "hash round")? > rounds)
        })?;
        std::thread::sleep(Duration::from_secs(2));
        if op.state("a1", VOL)? != VolumeState::Archive(ArchiveState::ReplSyncAsServer) {
            bail!("a1 is {} during the hash round", op.state("a1", VOL)?);
        }
        cut_replication(c, &op)?;
        if log_count(c, "a0", "compared image sent")? != compared {
            bail!("the hash round finished before the cut: the test cut nothing");
        }
        if c.restorable_lines("a1")? != a1_before {
            bail!(
                "the cut hash round changed a1's snapshots: {:?}, before {a1_before:?}",
                c.restorable_lines("a1")?
            );
        }
        let r = replicate(c, &[])?;
        if r != gid1 {
            bail!("replicate printed gid {r}, not a0's latest {gid1}");
        }
        if latest_restorable(c, "a1")? != gid1 {
            bail!(
                "a1's latest is {} after the replication, not {gid1}",
                latest_restorable(c, "a1")?
            );
        }
        let g = gid1.to_string();
        let bhash = |a: &str| c.exec_ok(&["bhash", a, VOL, &g]);
        if bhash("a0")? != bhash("a1")? {
            bail!("bhash of gid {gid1} differs between a0 and a1");
        }
        let dev = c.device_sha256()?;
        for a in ["a0", "a1"] {
            if c.restored_sha256(a, gid1)? != dev {
                bail!("gid {gid1} restored at {a} differs from the device");
            }
        }
        Ok(())
    })
}

/// e16: a replication's diff round is cut in the middle: a1 stays Archived and does not
/// reach the new snapshot; the next replication (direct) does, and both archives list the
/// same snapshots and restore the device.
#[test]
fn e16_replication_diff_round_cut() -> Result<()> {
    scenario(two_archives(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 160)?;
        c.snapshot()?;
        replicate(c, &[])?;
        let a1_before = c.restorable_lines("a1")?;
        // About a third of the device: one diff round of ~9 MiB.
        c.write(160, "64k", 161)?;
        let gid0 = c.snapshot()?;
        let op = c.operator()?;
        let sent = log_count(c, "a0", "diff replicated")?;
        replicate_through_slow_relay(c, &op, gid0)?;
        wait_until(30, "a1 in ReplSyncAsServer", || {
            Ok(op.state("a1", VOL)? == VolumeState::Archive(ArchiveState::ReplSyncAsServer))
        })?;
        std::thread::sleep(Duration::from_secs(3));
        cut_replication(c, &op)?;
        if log_count(c, "a0", "diff replicated")? != sent {
            bail!("the diff round finished before the cut: the test cut nothing");
        }
        if c.restorable_gids("a1")?.contains(&gid0) {
            bail!("a1 reached gid {gid0} across a cut link");
        }
        if c.restorable_lines("a1")? != a1_before {
            bail!(
                "the cut diff round changed a1's snapshots: {:?}, before {a1_before:?}",
                c.restorable_lines("a1")?
            );
        }
        let r = replicate(c, &[])?;
        if r != gid0 {
            bail!("replicate printed gid {r}, not a0's latest {gid0}");
        }
        assert_replica_equals_device(c, gid0)
    })
}

/// e17: the same wdiff sent twice to the archive, as a proxy whose Ack was lost would:
/// the first is accepted and becomes the latest snapshot (restoring to the image with
/// that diff applied), the second is refused as too old and changes nothing; a hash
/// backup then levels the archive with the device.
#[test]
fn e17_duplicate_wdiff() -> Result<()> {
    use sha2::Digest;
    use walb_kernel::diff::apply::{DiscardPolicy, Redo};
    use walb_kernel::diff::convert::{convert_wlog, ConvertOpt};
    use walb_kernel::gen::WlogGen;
    use walb_kernel::wdiff::{WdiffKind, WdiffReader};
    use walb_wire::msg::{DiffRange, MetaDiffDto, Query, SnapDto, WdiffTransfer};
    use walb_wire::{ErrorCode, Reply, Request, Role};
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.write(50, "64k", 170)?;
        c.snapshot()?;
        // Nothing else reaches a0 from now on: s0 stopped, p0's queue empty.
        c.exec_ok(&["stop", "s0", VOL])?;
        wait_until(60, "p0's queue for a0 to empty", || {
            Ok(!c
                .exec_ok(&["get", "p0", "diff", VOL, "a0"])?
                .contains("-->"))
        })?;
        let op = c.operator()?;
        let latest = |op: &walb_tests::Operator| -> Result<u64> {
            match op.request(
                "a0",
                Request::Query(Query::LatestSnap {
                    vol: Some(VOL.into()),
                }),
            )? {
                Reply::Snapshots(s) => s
                    .first()
                    .and_then(|i| i.gid)
                    .context("a0 names no latest snapshot"),
                other => bail!("latest-snap answered {other:?}"),
            }
        };
        let g0 = latest(&op)?;
        let uuid = match op.request("a0", Request::Query(Query::Uuid { vol: VOL.into() }))? {
            Reply::Uuid(u) => u,
            other => bail!("uuid answered {other:?}"),
        };
        let size_lb = match op.request("a0", Request::Query(Query::VolSize { vol: VOL.into() }))? {
            Reply::Number(n) => n,
            other => bail!("vol-size answered {other:?}"),
        };
        // A dummy diff of ~1 MiB (walb-tools: wlog-gen + wlog-to-wdiff), indexed as the
        // proxy's, the explicit snapshot |g0+1| at its end.
        let mut gen = WlogGen::new(size_lb, 1 << 20);
        gen.seed = 17;
        let mut wlog = Vec::new();
        gen.write(&mut wlog)?;
        let opt = ConvertOpt {
            kind: WdiffKind::Indexed,
            threads: 0,
            ..ConvertOpt::default()
        };
        let wdiff = convert_wlog(&wlog[..], Vec::new(), &opt)?.0;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let transfer = WdiffTransfer {
            vol: VOL.into(),
            uuid,
            size_lb,
            diff: MetaDiffDto {
                range: DiffRange {
                    snap_b: SnapDto {
                        gid_b: g0,
                        gid_e: g0,
                    },
                    snap_e: SnapDto {
                        gid_b: g0 + 1,
                        gid_e: g0 + 1,
                    },
                },
                mergeable: false,
                comp_diff: false,
                timestamp_s: now,
                size: wdiff.len() as u64,
            },
        };
        let proxy = c.wire_client(Role::Proxy, "p0")?;
        if let Some(code) = proxy.send_wdiff("a0", transfer.clone(), &wdiff)? {
            bail!(
                "the first send of |{g0}|-->|{}| was refused: {code:?}",
                g0 + 1
            );
        }
        match proxy.send_wdiff("a0", transfer, &wdiff)? {
            Some(ErrorCode::TooOldDiff) => {}
            other => bail!("the second send of the same wdiff: {other:?}, not too-old-diff"),
        }
        if latest(&op)? != g0 + 1 {
            bail!(
                "a0's latest is {} after the duplicate, not {}",
                latest(&op)?,
                g0 + 1
            );
        }
        let diffs = c.exec_ok(&["diff-list", "a0", VOL])?;
        let ending = diffs.matches(&format!("-->|{}|", g0 + 1)).count();
        if ending != 1 {
            bail!("a0 holds {ending} diffs ending at {}:\n{diffs}", g0 + 1);
        }
        // The snapshot is the device (unchanged since s0 stopped) with the diff applied.
        let dev = std::fs::read(c.wdev_path())?;
        let mut redo = Redo::new(dev, DiscardPolicy::Zero)?;
        for io in WdiffReader::new(std::io::Cursor::new(&wdiff[..]))? {
            redo.apply_io(&io?)?;
        }
        let want = hex::encode(sha2::Sha256::digest(redo.finish()?.0));
        let got = c.restored_sha256("a0", g0 + 1)?;
        if got != want {
            bail!(
                "gid {} restores to {got}, not the device with the diff applied ({want})",
                g0 + 1
            );
        }
        // What users rely on: a hash backup brings a0 back to the device.
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        c.write(20, "16k", 171)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// n11: under a background writer, a snapshot; the data device grows from 32 to 36 MiB
/// (its new part zero, or garbage with `garbage`, as an LV that was not zero-filled); the
/// archive and then the storage are resized (`zero_clear` for the archive's new part);
/// the device must have grown; once the writer is done, 64 KiB are written across the
/// old end.
fn resize_under_writes(c: &Cluster, garbage: bool, zero_clear: bool) -> Result<()> {
    const OLD: u64 = 32 << 20;
    const NEW: u64 = 36 << 20;
    let mut w = c.workload(&[
        "--rate",
        "40",
        "--max-io",
        "16k",
        "--duration",
        "6",
        "--flush-interval",
        "50",
        "--seed",
        "110",
    ])?;
    c.snapshot()?;
    let ddev = std::fs::OpenOptions::new()
        .write(true)
        .open(c.ddev_path())?;
    ddev.set_len(NEW)?;
    if garbage {
        let junk: Vec<u8> = (0..NEW - OLD)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
            .collect();
        std::os::unix::fs::FileExt::write_all_at(&ddev, &junk, OLD)?;
    }
    ddev.sync_all()?;
    drop(ddev);
    let mut args = vec!["resize", "a0", VOL, "36m"];
    if zero_clear {
        args.push("--zero-clear");
    }
    c.exec_ok(&args)?;
    c.exec_ok(&["resize", "s0", VOL, "36m"])?;
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(c.wdev_path())?;
    let size = std::io::Seek::seek(&mut &dev, std::io::SeekFrom::End(0))?;
    if size != NEW {
        bail!("the device has {size} bytes after resize, not 36 MiB");
    }
    if !w.wait()?.success() {
        bail!("background writer failed");
    }
    std::os::unix::fs::FileExt::write_all_at(&dev, &[0xa5u8; 65536], OLD - 32768)?;
    dev.sync_all()?;
    Ok(())
}

/// n11a: the device grows under writes (its new part zero, the archive's zero-cleared);
/// a snapshot with data across the old end restores equal to the device.
#[test]
fn n11a_resize_zero_filled() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        resize_under_writes(c, false, true)?;
        let gid = c.snapshot()?;
        let size = c.exec_ok(&["get", "a0", "vol-size", VOL])?;
        if last_number(&size) != Some(36 << 11) {
            bail!("a0's volume has {size} logical blocks, not 36 MiB");
        }
        c.assert_restore_equals_device(gid)
    })
}

/// n11b: the device grows under writes, its new part garbage that never went through
/// the log: a snapshot differs from the device until the storage goes standby and a
/// hash backup brings the new part over; then the restore equals the device.
#[test]
fn n11b_resize_hash_backup() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        resize_under_writes(c, true, false)?;
        let gid = c.snapshot()?;
        if c.restored_sha256("a0", gid)? == c.device_sha256()? {
            bail!("the garbage of the new part reached a0 without a hash backup");
        }
        // go_standby, then the hash backup.
        c.go_standby("s0", VOL)?;
        c.exec_ok(&["hash-backup", "s0", VOL])?;
        c.write(20, "16k", 111)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// n12: two storages of one volume on two devices, written to all along: the Target one
/// goes standby and a hash backup from the other makes it the Target (only one at a
/// time); the restore equals the new Target's device; then back again.
#[test]
fn n12_switch_target() -> Result<()> {
    let opts = ClusterOpts {
        storages: 2,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        let wdev1 = c.wdev_path_of(1).display().to_string();
        c.exec_ok(&["init-storage", "s1", VOL, &wdev1])?;
        let writer = |i: usize, seed: u64| {
            c.workload_on(
                i,
                &[
                    "--rate",
                    "40",
                    "--max-io",
                    "16k",
                    "--duration",
                    "6",
                    "--flush-interval",
                    "50",
                    "--seed",
                    &seed.to_string(),
                ],
            )
        };
        for (from, to, i, seed) in [("s0", "s1", 1, 120), ("s1", "s0", 0, 122)] {
            let mut w0 = writer(0, seed)?;
            let mut w1 = writer(1, seed + 1)?;
            // Both Target at once is refused.
            let out = c.exec(&["hash-backup", to, VOL, "--timeout", "10"])?;
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains(&format!("{from} {VOL} is Target")) {
                bail!("a hash backup of {to} while {from} is Target: {err}");
            }
            // (As walb-tools' _prepare_backup, the console stops `to` before it looks at
            // the other storages: the refused backup leaves `to` SyncReady, from where
            // the next one starts.)
            c.go_standby(from, VOL)?;
            c.exec_ok(&["hash-backup", to, VOL])?;
            for w in [&mut w0, &mut w1] {
                if !w.wait()?.success() {
                    bail!("background writer failed");
                }
            }
            let (sf, st) = (c.state(from)?, c.state(to)?);
            if sf != "Standby" || st != "Target" {
                bail!("after the switch {from} is {sf} and {to} is {st}");
            }
            let out = c.exec_ok(&["snapshot", to, VOL, "a0", "--timeout", "120"])?;
            let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
            let img = c.restored_sha256("a0", gid)?;
            if img != c.device_sha256_of(i)? {
                bail!("gid {gid} restored differs from {to}'s device");
            }
            if img == c.device_sha256_of(1 - i)? {
                bail!("the two devices are equal: the switch to {to} proves nothing");
            }
        }
        Ok(())
    })
}
