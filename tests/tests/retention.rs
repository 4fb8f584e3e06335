//! Retention on by default, end to end: the archive runs with the lab's defaults (no
//! retention option: `--keep-grid '1x1m(keep=all) | 59x1m | 23x1h'`, keep-last 8 ...)
//! while a writer writes through the device and the storage makes an implicit snapshot
//! every second. Every few seconds the diff count stays under the bound the archive
//! reports, merges and an apply run by themselves; then, with a volume policy of
//! keep-last 2 (shown with `--dry-run` first, which changes nothing) and the first
//! explicit snapshot pinned, the explicit snapshots outside the counts are folded, and
//! every snapshot still restorable restores to the bytes the device held when it was
//! taken. About three and a half minutes (most of it writing).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use walb_tests::{scenario, wait_until, Cluster, ClusterOpts, Writer, VOL};

/// The volume's retention report on a0 (`retention a0 vol --json`, with `extra` options).
fn report(c: &Cluster, extra: &[&str]) -> Result<Value> {
    let mut args = vec!["retention", "a0", VOL];
    args.extend(extra);
    let out = c.exec_json_ok(&args)?;
    serde_json::from_str(&out).with_context(|| format!("retention --json printed {out:?}"))
}

fn num(v: &Value, key: &str) -> Result<u64> {
    v[key]
        .as_u64()
        .with_context(|| format!("no number {key} in {v}"))
}

/// Gid → fate (`keep ...`, `fold`, `apply`) of every restorable point of a report.
fn fates(r: &Value) -> BTreeMap<u64, String> {
    r["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let gid = p["gid"].as_u64()?;
            let fate = match &p["fate"] {
                Value::String(s) => s.to_lowercase(),
                Value::Object(o) => o.keys().next()?.to_lowercase(),
                _ => return None,
            };
            Some((gid, fate))
        })
        .collect()
}

/// The pass has nothing left to do.
fn idle(r: &Value) -> bool {
    r["apply_to"].is_null()
        && r["merges"].as_array().is_some_and(Vec::is_empty)
        && r["demote"].as_array().is_some_and(Vec::is_empty)
}

/// Stops the writer, takes an explicit snapshot (restorable on a0) and hashes the
/// device at it; returns the gid, the hash and a new writer.
fn quiet_snapshot(c: &Cluster, w: Writer, seed: u64) -> Result<(u64, String, Writer)> {
    w.stop()?;
    let gid = c.snapshot()?;
    let sha = c.device_sha256()?;
    Ok((gid, sha, c.writer(0, seed)?))
}

/// Checks the count against the bound; returns the count.
fn check_bound(c: &Cluster) -> Result<u64> {
    let r = report(c, &[])?;
    let (diffs, bound) = (num(&r, "diffs")?, num(&r, "bound")?);
    if diffs > bound {
        bail!("{diffs} diffs > the bound {bound}: {r}");
    }
    Ok(diffs)
}

#[test]
fn retention_bounds_the_diffs_and_kept_snapshots_restore() -> Result<()> {
    let opts = ClusterOpts {
        // The lab's archive: no option at all, retention by its defaults.
        retention: true,
        ..ClusterOpts::default()
    };
    scenario(opts, |c| {
        let t0 = Instant::now();
        c.init_and_full_backup()?;
        let r = report(c, &[])?;
        if r["policy"]["on"] != Value::Bool(true) || r["own"] != Value::Bool(false) {
            bail!("retention is not on by default: {r}");
        }
        let mut w = c.writer(0, 1)?;
        let mut taken: Vec<(u64, String)> = Vec::new();
        let mut peak = 0;
        // Six explicit snapshots 20 s apart, then a minute more of writes: the count is
        // checked against the bound every two seconds.
        let mut next_snap = Instant::now() + Duration::from_secs(20);
        let end = Instant::now() + Duration::from_secs(6 * 20 + 60);
        while Instant::now() < end {
            if taken.len() < 6 && Instant::now() >= next_snap {
                let (gid, sha, w2) = quiet_snapshot(c, w, 10 + taken.len() as u64)?;
                w = w2;
                taken.push((gid, sha));
                next_snap = Instant::now() + Duration::from_secs(20);
            }
            peak = peak.max(check_bound(c)?);
            std::thread::sleep(Duration::from_secs(2));
        }
        w.stop()?;
        let a0_log = std::fs::read_to_string(c.path().join("a0.log"))?;
        let passes: Vec<&str> = a0_log
            .lines()
            .filter(|l| l.contains("retention pass"))
            .collect();
        let merged = passes.iter().filter(|l| l.contains("merge")).count();
        let applied = passes.iter().filter(|l| l.contains("apply")).count();
        if merged == 0 || applied == 0 {
            bail!("a0 ran {merged} merges and {applied} applies by itself:\n{passes:?}");
        }
        // A change shown with --dry-run changes nothing.
        let first = taken[0].0;
        let dry = report(c, &["--keep-last", "2", "--dry-run"])?;
        if dry["dry_run"] != Value::Bool(true) || report(c, &[])?["own"] != Value::Bool(false) {
            bail!("--dry-run changed the volume's settings: {dry}");
        }
        // keep-last 2 and the first explicit snapshot pinned.
        let set = report(c, &["--keep-last", "2", "--pin", &first.to_string()])?;
        if set["own"] != Value::Bool(true) || set["pinned"] != serde_json::json!([first]) {
            bail!("the volume's policy was not set: {set}");
        }
        let mut last = Value::Null;
        wait_until(120, "the retention pass to finish", || {
            last = report(c, &[])?;
            Ok(idle(&last))
        })
        .with_context(|| format!("last report: {last}"))?;
        let fates = fates(&last);
        let kept: Vec<u64> = taken
            .iter()
            .map(|(g, _)| *g)
            .filter(|g| fates.contains_key(g))
            .collect();
        // The pinned one, the newest two; the rest folded (the grid keeps none of them:
        // each is older than the newer implicit snapshots of its minute).
        let n = taken.len();
        for g in [first, taken[n - 2].0, taken[n - 1].0] {
            if !kept.contains(&g) {
                bail!("snapshot {g} is gone: kept {kept:?} of {taken:?}; {last}");
            }
        }
        if kept.len() == n {
            bail!("keep-last 2 folded none of {taken:?}: {last}");
        }
        let diffs = check_bound(c)?;
        for (gid, sha) in taken.iter().filter(|(g, _)| kept.contains(g)) {
            let got = c.restored_sha256("a0", *gid)?;
            if &got != sha {
                bail!("snapshot {gid} restores to {got}, the device held {sha}");
            }
        }
        let text = c.exec_ok(&["retention", "a0", VOL])?;
        let head: Vec<&str> = text.lines().take(4).collect();
        let reasons: BTreeMap<&str, usize> =
            text.lines().skip(4).fold(BTreeMap::new(), |mut m, l| {
                *m.entry(l.split(' ').nth(3).unwrap_or("?")).or_default() += 1;
                m
            });
        eprintln!(
            "retention e2e: {head:?}; points by fate: {reasons:?}; {} points",
            fates.len()
        );
        let latest = c.snapshot()?;
        c.assert_restore_equals_device(latest)?;
        eprintln!(
            "retention e2e: peak {peak} diffs, {diffs} at the end, {merged} merges and {applied} \
             applies by the policy, explicit kept {kept:?} of {:?}, {:?}",
            taken.iter().map(|(g, _)| *g).collect::<Vec<_>>(),
            t0.elapsed()
        );
        Ok(())
    })
}
