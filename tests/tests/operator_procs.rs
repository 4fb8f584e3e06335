//! walblib's procedures as console commands, against real processes on loopback:
//! `go-standby` (then a hash backup), `resize VOL SIZE` across the cluster (archives
//! first, then the storage), `copy-archive-info` (a new proxy takes over the old one's
//! archives), `merge ... --max-mb N` (a merge cut by size), `replicate` with its
//! compression, bulk and merge-size options, and `latest-clean`. Each ends with a restore
//! equal to the device, and each checks the refusals an operator meets first.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use walb_tests::{last_number, scenario, Cluster, ClusterOpts, VOL};

/// `walb-console --json --exec ARGS`, which must succeed: its JSON value.
fn json_ok(c: &Cluster, args: &[&str]) -> Result<Value> {
    let out = c.exec_json(args)?;
    walb_tests::check(&out, &format!("--json {}", args.join(" ")))?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "{}: not JSON: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `walb-console --exec ARGS`, which must fail saying `want` (and what it said).
fn refused(c: &Cluster, args: &[&str], want: &str) -> Result<()> {
    let out = c.exec(args)?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains(want) {
        bail!(
            "`{}` should fail saying {want:?}; it {} with: {err}",
            args.join(" "),
            if out.status.success() {
                "succeeded"
            } else {
                "failed"
            }
        );
    }
    Ok(())
}

/// go-standby refuses what is no storage replica, is idempotent, leaves s0 Standby with
/// a0 no longer fed by the proxy; writes made meanwhile reach a0 by the hash backup,
/// whose snapshot restores equal to the device.
#[test]
fn go_standby_then_hash_backup_restores_the_device() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.write(60, "64k", 1)?;
        c.snapshot()?;
        refused(c, &["go-standby", "a0", VOL], "a0 is an archive")?;
        refused(c, &["go-standby", "s0", "nosuchvol"], "init-storage")?;
        let v = json_ok(c, &["go-standby", "s0", VOL])?;
        if v["state"] != "Standby" || v["node"] != "s0" {
            bail!("go-standby printed {v}");
        }
        if c.is_synchronizing("a0", VOL)? {
            bail!("the proxy still sends {VOL} to a0 after go-standby");
        }
        // Standby already: nothing to do.
        c.go_standby("s0", VOL)?;
        c.write(60, "64k", 2)?;
        let out = c.exec_ok(&["hash-backup", "s0", VOL])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        if c.state("s0")? != "Target" || !c.is_synchronizing("a0", VOL)? {
            bail!("after the hash backup s0 is {}", c.state("s0")?);
        }
        c.assert_restore_equals_device(gid)
    })
}

/// `resize VOL SIZE` refuses to shrink and an unknown volume, then grows a0's image and
/// then s0's device (in that order), and a second time nothing; data written across the
/// old end restores equal.
#[test]
fn cluster_resize_grows_archive_then_storage() -> Result<()> {
    const OLD: u64 = 32 << 20;
    const NEW: u64 = 36 << 20;
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.write(40, "16k", 3)?;
        refused(c, &["resize", VOL, "16m"], "only grows")?;
        refused(c, &["resize", "nosuchvol", "36m"], "holds it")?;
        let size = |c: &Cluster| -> Result<Option<u64>> {
            Ok(last_number(&c.exec_ok(&["get", "a0", "vol-size", VOL])?))
        };
        if size(c)? != Some(OLD / 512) {
            bail!("a0 changed size after refused resizes: {:?}", size(c)?);
        }
        let ddev = std::fs::OpenOptions::new()
            .write(true)
            .open(c.ddev_path())?;
        ddev.set_len(NEW)?;
        ddev.sync_all()?;
        drop(ddev);
        let v = json_ok(c, &["resize", VOL, "36m", "--zero-clear"])?;
        if v != serde_json::json!(["a0", "s0"]) {
            bail!("resize grew {v}, expected a0 then s0");
        }
        if size(c)? != Some(NEW / 512) {
            bail!("a0 has {:?} blocks after the resize", size(c)?);
        }
        let dev = std::fs::OpenOptions::new()
            .write(true)
            .open(c.wdev_path())?;
        let have = std::io::Seek::seek(&mut &dev, std::io::SeekFrom::End(0))?;
        if have != NEW {
            bail!("the device has {have} bytes after the resize, not {NEW}");
        }
        std::os::unix::fs::FileExt::write_all_at(&dev, &[0xa5u8; 65536], OLD - 32768)?;
        dev.sync_all()?;
        drop(dev);
        // Again: every node has the size already, nothing is grown.
        let again = json_ok(c, &["resize", VOL, "36m"])?;
        if again != serde_json::json!([]) {
            bail!("a second resize to the same size grew {again}");
        }
        // The one-node form still works (the size is reached already: nothing changes).
        c.exec_ok(&["resize", "s0", VOL, "36m"])?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)
    })
}

/// copy-archive-info refuses a copy onto itself and a non-proxy; p2 gets p0's archive
/// entry, a0 takes p2's diffs and p2 takes s0's wlogs; once s0 ships to p2 and p0 is
/// drained and stopped, a snapshot reaches a0 through p2 and restores equal.
#[test]
fn copy_archive_info_lets_a_new_proxy_take_over() -> Result<()> {
    let opts = ClusterOpts {
        spares: vec!["p2".into()],
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        c.write(40, "16k", 4)?;
        c.start_node("p2")?;
        refused(c, &["copy-archive-info", "p0", VOL, "p0"], "both p0")?;
        refused(
            c,
            &["copy-archive-info", "p0", VOL, "a0"],
            "a0 is an archive",
        )?;
        refused(
            c,
            &["copy-archive-info", "p2", VOL, "p0"],
            "p2 vol is Clear",
        )?;
        let v = json_ok(c, &["copy-archive-info", "p0", VOL, "p2"])?;
        let want_info = c.exec_ok(&["archive-info", "p0", "get", VOL, "a0"])?;
        let got_info = c.exec_ok(&["archive-info", "p2", "get", VOL, "a0"])?;
        if want_info != got_info {
            bail!("p2's a0 entry {got_info:?} differs from p0's {want_info:?}");
        }
        let want = serde_json::json!([format!("archive a0 {}", want_info.trim()), "storage s0"]);
        if v != want {
            bail!("copy-archive-info printed {v}, expected {want}");
        }
        let peers = c.exec_ok(&["peers", "a0", VOL])?;
        if !peers
            .lines()
            .any(|l| l.starts_with("proxies") && l.contains("p2"))
        {
            bail!("a0 does not take p2's diffs:\n{peers}");
        }
        if !c.exec_ok(&["peers", "p2", VOL])?.contains("storage s0") {
            bail!("p2 does not take s0's wlogs");
        }
        c.expect_state("p2", "Started")
            .context("after copy-archive-info")?;
        c.set_layout("a0", &["p2"])?;
        c.exec_ok(&["stop", "p0", VOL, "empty"])?;
        c.stop_node("p0")?;
        c.write(40, "16k", 5)?;
        let gid = c.snapshot()?;
        c.assert_restore_equals_device(gid)?;
        let log = std::fs::read_to_string(c.path().join("p2.log"))?;
        if !log.contains("wlog received") {
            bail!("p2 received no wlog");
        }
        Ok(())
    })
}

/// One diff of a `diff-list` line: (begin gid, end gid, mergeable, size).
fn diff_of(line: &str) -> Option<(u64, u64, bool, u64)> {
    let mut w = line.split_whitespace();
    let range = w.next()?;
    let flags = w.next()?;
    let size = w.nth(1)?.parse().ok()?;
    let (b, e) = range.split_once("-->")?;
    let gid = |s: &str| -> Option<u64> { s.trim_matches('|').split(',').next()?.parse().ok() };
    Some((gid(b)?, gid(e)?, flags.starts_with('M'), size))
}

/// The mergeable run from the first diff at or after `gid_b` (as the archive walks it).
fn run_from(diffs: &[(u64, u64, bool, u64)], gid_b: u64) -> Vec<(u64, u64, bool, u64)> {
    let mut run = Vec::new();
    let Some(first) = diffs.iter().filter(|d| d.0 >= gid_b).min_by_key(|d| d.0) else {
        return run;
    };
    run.push(*first);
    while let Some(next) = diffs
        .iter()
        .find(|d| d.0 == run[run.len() - 1].1 && d.2 && d.1 > d.0)
    {
        run.push(*next);
    }
    run
}

/// Four snapshots, the three middle ones disabled: one mergeable run. `merge --max-mb N`
/// (N the whole MiB the first two diffs need) merges only the diffs that fit in N MiB and
/// leaves the rest; the latest snapshot still restores equal. Then a replication to a1
/// with `--compress`, `--bulk` and `--max-merge-mb` reaches the same latest clean gid.
#[test]
fn merge_max_mb_merges_only_up_to_the_size() -> Result<()> {
    const MIB: u64 = 1 << 20;
    let opts = ClusterOpts {
        archives: 2,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        let g0 = c.init_and_full_backup()?;
        let mut gids = Vec::new();
        for seed in 10..14 {
            c.write(80, "64k", seed)?;
            gids.push(c.snapshot()?);
        }
        let middle: Vec<String> = gids[..3].iter().map(u64::to_string).collect();
        let mut args = vec!["disable-snapshot", "a0", VOL];
        args.extend(middle.iter().map(String::as_str));
        c.exec_ok(&args)?;
        let list = |c: &Cluster| -> Result<Vec<(u64, u64, bool, u64)>> {
            Ok(c.exec_ok(&["diff-list", "a0", VOL])?
                .lines()
                .filter_map(diff_of)
                .collect())
        };
        let before = list(c)?;
        let run = run_from(&before, g0);
        if run.len() < 3 {
            bail!("a run of {} diffs from gid {g0}: {before:?}", run.len());
        }
        let max_mb = (run[0].3 + run[1].3).div_ceil(MIB);
        let mut total = 0;
        let fit = run
            .iter()
            .take_while(|d| {
                total += d.3;
                total <= max_mb * MIB
            })
            .count();
        if fit >= run.len() {
            bail!("the diffs are too small to cut the run at {max_mb} MiB: {run:?}");
        }
        let (b, e) = (run[0].0, run[fit - 1].1);
        refused(
            c,
            &["merge", "a0", VOL, &gids[3].to_string(), "--max-mb", "1"],
            "mergeable diff",
        )?;
        let m = json_ok(
            c,
            &[
                "merge",
                "a0",
                VOL,
                &g0.to_string(),
                "--max-mb",
                &max_mb.to_string(),
            ],
        )?;
        if m[0]["b"][0] != b || m[0]["e"][0] != e {
            bail!("merge --max-mb {max_mb} made {m}, expected |{b}|-->|{e}| ({fit} diffs)");
        }
        let after = list(c)?;
        let untouched: Vec<_> = before.iter().filter(|d| d.0 >= e).collect();
        for d in &untouched {
            if !after.contains(d) {
                bail!("the diff {d:?} after the cut changed: {after:?}");
            }
        }
        if after.iter().any(|d| d.0 > b && d.1 <= e) {
            bail!("merged diffs are still listed: {after:?}");
        }
        eprintln!(
            "merge --max-mb {max_mb}: {fit} of {} diffs ({:?} bytes) into |{b}|-->|{e}|",
            run.len(),
            run.iter().map(|d| d.3).collect::<Vec<_>>()
        );
        c.assert_restore_equals_device(gids[3])?;

        refused(
            c,
            &["replicate", "a0", VOL, "a1", "--compress", "lz4"],
            "zstd[:LEVEL] or none",
        )?;
        let out = c.exec_ok(&[
            "replicate",
            "a0",
            VOL,
            "a1",
            "--compress",
            "zstd:3",
            "--bulk",
            "512",
            "--max-merge-mb",
            "1",
        ])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        let latest = |a: &str| -> Result<Option<u64>> {
            Ok(last_number(&c.exec_ok(&["latest-clean", a, VOL])?))
        };
        if latest("a0")? != Some(gid) || latest("a1")? != Some(gid) {
            bail!(
                "latest-clean after replicating gid {gid}: a0 {:?}, a1 {:?}",
                latest("a0")?,
                latest("a1")?
            );
        }
        // --max-merge-mb 1 reached a0: every round carried one diff (of about 2.8 MB),
        // where the default (1 GiB) merges the whole run of three into one round.
        let log = std::fs::read_to_string(c.path().join("a0.log"))?;
        let rounds: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("diff replicated"))
            .collect();
        if rounds.len() < 3 || rounds.iter().any(|l| !l.contains("files=1")) {
            bail!(
                "replicate --max-merge-mb 1 sent these rounds:\n{}",
                rounds.join("\n")
            );
        }
        refused(c, &["latest-clean", "s0", VOL], "s0 is a storage")?;
        Ok(())
    })
}
