//! What an operator asks the cluster, end to end with real processes on loopback: the
//! storage's ts-delta (its lag behind the primary archive, gathered every
//! `--ts-delta-interval`), the proxy's latest snapshot, the archive's `get` targets
//! (num-diff, total-diff-size, exists-diff, all-actions, base-all, meta-snap), `gc-diff`
//! and `set-full-scan-bps` with their refusals, and `hash-backup`, which prints the gid it
//! is clean at and waits until that snapshot is restorable.

use anyhow::{bail, ensure, Context, Result};
use walb_tests::{last_number, scenario, Cluster, ClusterOpts, VOL};

/// The value of `key` in an LTSV line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split('\t')
        .find_map(|f| f.strip_prefix(key)?.strip_prefix(':'))
}

/// The number `key` holds in an LTSV line.
fn num(line: &str, key: &str) -> Result<u64> {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no number {key} in {line:?}"))
}

/// The gids of a snapshot as printed (`|3|` or `|3,5|`).
fn snap_gids(s: &str) -> Result<(u64, u64)> {
    let inner = s
        .strip_prefix('|')
        .and_then(|s| s.strip_suffix('|'))
        .with_context(|| format!("not a snapshot: {s:?}"))?;
    let mut it = inner.split(',').map(str::parse::<u64>);
    let b = it.next().context("empty snapshot")??;
    let e = it.next().transpose()?.unwrap_or(b);
    Ok((b, e))
}

/// The stderr of a console command that must fail.
fn refused(c: &Cluster, args: &[&str]) -> Result<String> {
    let out = c.exec(args)?;
    ensure!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `get s0 ts-delta` shows the volume at the archive's restorable gid (with a 1 s
/// interval); the proxy's latest-snap reaches it; the archive's counts agree with its diff
/// list; exists-diff, all-actions, base-all and meta-snap answer what the archive holds;
/// gc-diff and set-full-scan-bps work and are refused where they do not apply.
#[test]
fn storage_ts_delta_proxy_latest_snap_and_the_archive_targets() -> Result<()> {
    let opts = ClusterOpts {
        storage_args: vec!["--ts-delta-interval".into(), "1".into()],
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        c.init_and_full_backup()?;
        c.write(40, "16k", 1)?;
        let gid = c.snapshot()?;

        // The storage's ts-delta reaches the archive's gid within a few intervals.
        let t0 = std::time::Instant::now();
        let line = loop {
            let out = c.exec_ok(&["get", "s0", "ts-delta"])?;
            if let Some(l) = out
                .lines()
                .find(|l| field(l, "name") == Some(VOL))
                .filter(|l| num(l, "dest_gid").is_ok_and(|g| g >= gid))
            {
                break l.to_owned();
            }
            if t0.elapsed() > std::time::Duration::from_secs(30) {
                bail!("s0's ts-delta never showed a0 at gid {gid}: {out:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        };
        eprintln!("ts-delta after {:.1}s: {line}", t0.elapsed().as_secs_f64());
        ensure!(field(&line, "dest") == Some("a0"), "{line}");
        ensure!(field(&line, "kind") == Some("storage"), "{line}");
        ensure!(field(&line, "dest_kind") == Some("archive"), "{line}");
        let latest = c.exec_ok(&["get", "a0", "latest-snap", VOL])?;
        let a_gid = num(latest.trim(), "gid")?;
        ensure!(
            num(&line, "dest_gid")? <= a_gid,
            "ts-delta's archive side {line} is ahead of a0's latest-snap {latest}"
        );
        ensure!(num(&line, "gid")? >= num(&line, "dest_gid")?, "{line}");
        ensure!(
            num(&line, "age")? <= 10,
            "a stale answer at 1 s intervals: {line}"
        );
        num(&line, "ts_delta")?;
        let json: serde_json::Value =
            serde_json::from_str(&c.exec_json_ok(&["get", "s0", "ts-delta"])?)?;
        ensure!(
            json.as_array().is_some_and(|a| a
                .iter()
                .any(|r| r["kind"] == "Storage" && r["dest"] == "a0")),
            "{json}"
        );
        let status = c.exec_ok(&["status", "s0"])?;
        ensure!(
            status.contains("tsDelta intervalS 1 ") && status.contains("lastError -"),
            "{status}"
        );

        // The proxy's latest snapshot: what it received reaches the snapshot.
        let p = c.exec_ok(&["get", "p0", "latest-snap", VOL])?;
        ensure!(field(p.trim(), "kind") == Some("proxy"), "{p}");
        ensure!(
            num(p.trim(), "gid")? >= gid,
            "p0's latest-snap {p} is before {gid}"
        );

        // The archive's counts agree with its diff list.
        let diffs = c.exec_ok(&["diff-list", "a0", VOL])?;
        let lines: Vec<&str> = diffs.lines().collect();
        ensure!(!lines.is_empty(), "no diffs at a0");
        let n = c.exec_ok(&["get", "a0", "num-diff", VOL])?;
        ensure!(
            n.trim() == lines.len().to_string(),
            "num-diff {n} for {diffs}"
        );
        let total: u64 = lines.iter().filter_map(|l| last_number(l)).sum();
        let size = c.exec_ok(&["get", "a0", "total-diff-size", VOL])?;
        ensure!(
            size.trim() == total.to_string(),
            "total-diff-size {size} for {diffs}"
        );
        // A range: the diffs from the last one's first gid on.
        let last = lines[lines.len() - 1];
        let (from, to) = last.split_once("-->").context("a diff line")?;
        let (b0, b1) = snap_gids(from)?;
        let (e0, e1) = snap_gids(to.split_whitespace().next().context("a diff line")?)?;
        let n = c.exec_ok(&["get", "a0", "num-diff", VOL, &b0.to_string()])?;
        ensure!(n.trim() == "1", "num-diff from {b0}: {n} ({diffs})");
        let g: Vec<String> = [b0, b1, e0, e1].iter().map(u64::to_string).collect();
        let exists = |g: &[String]| -> Result<String> {
            let mut args = vec!["get", "a0", "exists-diff", VOL];
            args.extend(g.iter().map(String::as_str));
            Ok(c.exec_ok(&args)?.trim().to_owned())
        };
        ensure!(exists(&g)? == "1", "exists-diff {g:?}");
        let mut other = g.clone();
        other[3] = (e1 + 1000).to_string();
        ensure!(exists(&other)? == "0", "exists-diff {other:?}");

        let acts = c.exec_ok(&["get", "a0", "all-actions"])?;
        ensure!(
            acts.lines()
                .any(|l| l.starts_with(&format!("{VOL} Merge 0 ")) && l.contains(" Apply 0 ")),
            "{acts}"
        );
        let base = c.exec_ok(&["get", "a0", "base", VOL])?;
        let base_all = c.exec_ok(&["get", "a0", "base-all"])?;
        ensure!(
            base_all.contains(&format!("name:{VOL}\tmetastate:{}", base.trim())),
            "base-all {base_all:?} vs base {base:?}"
        );
        let snap = c.exec_ok(&["get", "a0", "meta-snap", VOL])?;
        ensure!(
            snap.trim().starts_with(&format!("<|{a_gid}|>-")),
            "meta-snap {snap} vs latest {a_gid}"
        );
        let snap = c.exec_ok(&["get", "a0", "meta-snap", VOL, &gid.to_string()])?;
        ensure!(
            snap.trim().starts_with(&format!("<|{gid}|>-")),
            "meta-snap {snap} at {gid}"
        );

        // gc-diff keeps what the restorable snapshots need.
        c.exec_ok(&["gc-diff", "a0", VOL])?;
        ensure!(
            c.restorable_gids("a0")?.contains(&gid),
            "gc-diff lost {gid}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&c.exec_json_ok(&["gc-diff", "a0", VOL])?)?;
        ensure!(json["ok"] == true && json["node"] == "a0", "{json}");
        let e = refused(c, &["gc-diff", "s0", VOL])?;
        ensure!(e.contains("archive"), "gc-diff on a storage: {e}");
        let e = refused(c, &["gc-diff", "a0", "nosuch"])?;
        ensure!(e.contains("nosuch") && e.contains("Clear"), "{e}");

        // set-full-scan-bps: the storage's status shows it.
        c.exec_ok(&["set-full-scan-bps", "s0", "3m"])?;
        let status = c.exec_ok(&["status", "s0"])?;
        ensure!(
            status.contains(&format!("fullScanBps {}", 3 << 20)),
            "{status}"
        );
        c.exec_ok(&["set-full-scan-bps", "s0", "0"])?;
        let e = refused(c, &["set-full-scan-bps", "a0", "1m"])?;
        ensure!(
            e.contains("storage"),
            "set-full-scan-bps on an archive: {e}"
        );
        let e = refused(c, &["get", "s0", "num-diff", VOL])?;
        ensure!(e.contains("archive"), "num-diff on a storage: {e}");
        Ok(())
    })
}

/// `hash-backup` prints the gid the image is clean at, which is restorable when it
/// returns and equals the device; with `--no-wait --json` it says so and the gid becomes
/// restorable later.
#[test]
fn hash_backup_prints_the_gid_it_is_clean_at_and_waits_for_it() -> Result<()> {
    scenario(ClusterOpts::default(), |c| {
        c.init_and_full_backup()?;
        c.go_standby("s0", VOL)?;
        c.write(60, "32k", 2)?;
        let before = c.restorable_gids("a0")?.into_iter().max().unwrap_or(0);
        let out = c.exec_ok(&["hash-backup", "s0", VOL])?;
        let gid: u64 = out
            .trim()
            .parse()
            .with_context(|| format!("hash-backup printed {out:?}, not one gid"))?;
        ensure!(
            gid > before,
            "hash-backup's gid {gid} is not after {before}"
        );
        ensure!(
            c.restorable_gids("a0")?.contains(&gid),
            "gid {gid} is not restorable when hash-backup returns"
        );
        c.assert_restore_equals_device(gid)?;

        c.go_standby("s0", VOL)?;
        c.write(30, "32k", 3)?;
        let json: serde_json::Value =
            serde_json::from_str(&c.exec_json_ok(&["hash-backup", "s0", VOL, "--no-wait"])?)?;
        let gid2 = json["gid"].as_u64().with_context(|| format!("{json}"))?;
        ensure!(json["restorable"] == false && gid2 > gid, "{json}");
        c.exec_ok(&["wait-restorable", "a0", VOL, &gid2.to_string()])?;
        c.assert_restore_equals_device(gid2)?;
        // Refused from Target, naming the way out.
        let e = refused(c, &["hash-backup", "s0", VOL, "--timeout", "10"])?;
        ensure!(e.contains("Target"), "{e}");
        Ok(())
    })
}
