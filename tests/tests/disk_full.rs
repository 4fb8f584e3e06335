//! Disk-full drills: the proxy's and the archive's base directories on small ext4 file
//! systems of their own ([`Cluster::put_on_small_fs`]), filled with a filler file while
//! data flows, then freed. Each drill asserts what operators rely on:
//!
//! - the error is clear: the refusal, the console's command error, the proxy's status or
//!   the daemon's log says "no space left" and names the volume or the path;
//! - nothing acknowledged is lost: the storage keeps its log while the proxy cannot store
//!   wdiffs, the proxy keeps its wdiffs while the archive cannot take them;
//! - nothing stored is damaged: the SHA-256 of the archive's base image and diff files is
//!   unchanged, no temporary file is left, a snapshot restorable before restores to the
//!   same SHA-256;
//! - once the filler is deleted, everything goes on without restarting a daemon (at most
//!   a `kick`, as the error tells) and a new snapshot restores equal to the device;
//! - a daemon restarted while its disk is full starts and answers.
//!
//! Needs root (loop mounts, the device's block device); skipped otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use walb_tests::{is_root, last_number, sha256_file, wait_until, Cluster, ClusterOpts, VOL};

/// Size of the small file systems, MiB (the device is 32 MiB).
const PROXY_FS_MIB: u64 = 32;
const ARCHIVE_FS_MIB: u64 = 96;

/// A cluster whose `nodes` have their base directories on small file systems; the proxy
/// keeps 1 MiB free for itself instead of 64 (its file system is smaller than that).
fn drill(nodes: &[(&str, u64)], f: impl FnOnce(&mut Cluster) -> Result<()>) -> Result<()> {
    if !is_root() {
        eprintln!("skipped: disk-full drills mount small file systems (needs root)");
        return Ok(());
    }
    let opts = ClusterOpts {
        proxy_args: vec!["--min-free-mb".into(), "1".into()],
        ..ClusterOpts::default()
    };
    let mut c = Cluster::start(opts)?;
    for (node, mib) in nodes {
        c.put_on_small_fs(node, *mib)?;
    }
    let t0 = Instant::now();
    let r = f(&mut c);
    eprintln!("drill took {:.1} s", t0.elapsed().as_secs_f64());
    if r.is_err() {
        eprintln!("{}", c.logs());
    }
    r
}

/// The whole log of daemon `node`.
fn log_of(c: &Cluster, node: &str) -> String {
    std::fs::read_to_string(c.path().join(format!("{node}.log"))).unwrap_or_default()
}

/// True when `text` says the disk is full.
fn says_no_space(text: &str) -> bool {
    text.to_lowercase().contains("no space left")
}

/// Fails when `node` logged the full disk more than a retry with backoff would in the
/// drill's seconds (a hot loop logs hundreds); prints the count.
fn assert_no_flood(c: &Cluster, node: &str) -> Result<()> {
    let n = log_of(c, node).lines().filter(|l| says_no_space(l)).count();
    eprintln!("{node} logged the full disk {n} times");
    if n > 40 {
        bail!("{node} logged the full disk {n} times: no backoff");
    }
    Ok(())
}

/// SHA-256 of every file of the archive's volume directory but its small state files
/// (the base image, the diffs), by name.
fn stored(c: &Cluster) -> Result<BTreeMap<String, String>> {
    let dir = c.base_of("a0").join(VOL);
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_file() && (name.ends_with(".wdiff") || name == "base.img") {
            m.insert(name, sha256_file(&e.path())?);
        }
    }
    Ok(m)
}

/// Temporary files left anywhere under `dir` (`*.tmp`, partial images).
fn temporaries(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type()?.is_dir() {
                todo.push(e.path());
            } else if name.contains(".tmp") || name.ends_with(".partial") {
                out.push(e.path().display().to_string());
            }
        }
    }
    Ok(out)
}

/// Fails unless every file of `before` is still stored with the same SHA-256.
fn assert_intact(c: &Cluster, before: &BTreeMap<String, String>) -> Result<()> {
    let now = stored(c)?;
    for (name, sha) in before {
        match now.get(name) {
            Some(s) if s == sha => {}
            Some(s) => bail!("{name} changed on the full disk: {s} != {sha}"),
            None => bail!("{name} vanished on the full disk"),
        }
    }
    let tmp = temporaries(&c.base_of("a0"))?;
    if !tmp.is_empty() {
        bail!("temporaries left on a0: {tmp:?}");
    }
    Ok(())
}

/// A snapshot at s0 that must not become restorable at a0 within `secs` seconds.
fn snapshot_held_back(c: &Cluster, secs: u64) -> Result<u64> {
    let out = c.exec_ok(&["snapshot", "s0", VOL])?;
    let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
    let w = c.exec(&[
        "wait-restorable",
        "a0",
        VOL,
        &gid.to_string(),
        "--timeout",
        &secs.to_string(),
    ])?;
    if w.status.success() {
        bail!("gid {gid} became restorable although a disk was full");
    }
    Ok(gid)
}

/// The proxy's status line of the volume's archive a0.
fn proxy_archive_line(c: &Cluster) -> Result<String> {
    let out = c.exec_ok(&["status", "p0", VOL])?;
    out.lines()
        .find(|l| l.contains("archive:a0"))
        .map(str::to_owned)
        .with_context(|| format!("no archive line in p0's status: {out}"))
}

/// The number of wdiffs p0 holds for a0.
fn proxy_queued(c: &Cluster) -> Result<u64> {
    let l = proxy_archive_line(c)?;
    l.split('\t')
        .find_map(|f| f.strip_prefix("queued:"))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no queue length in {l:?}"))
}

/// What a drill checks again after the full disk: a snapshot restorable before it.
struct Before {
    gid: u64,
    sha: String,
    stored: BTreeMap<String, String>,
}

/// A full backup, writes (workload seed `seed`) and a snapshot restorable at a0.
fn backed_up(c: &Cluster, seed: u64) -> Result<Before> {
    c.init_and_full_backup()?;
    c.write(50, "16k", seed)?;
    let gid = c.snapshot()?;
    Ok(Before {
        sha: c.restored_sha256("a0", gid)?,
        stored: stored(c)?,
        gid,
    })
}

/// 5: `node` restarted on its full disk starts, answers, and its volume is `state`.
fn restart_while_full(c: &mut Cluster, node: &str, state: &str) -> Result<()> {
    c.stop_node(node)?;
    c.start_node(node)?;
    let st = c.state(node)?;
    if st != state {
        bail!("{node} restarted on a full disk is {st}, not {state}");
    }
    Ok(())
}

/// Frees `node`'s disk and kicks `kick` (no daemon restarted): the snapshot `held` back
/// by the full disk becomes restorable, the one restorable before restores the same,
/// and a new one equals the device.
fn recovers(c: &Cluster, node: &str, kick: &str, held: u64, before: &Before) -> Result<()> {
    c.small_fs(node)?.free()?;
    c.exec_ok(&["kick", kick])?;
    let held = held.to_string();
    c.exec_ok(&["wait-restorable", "a0", VOL, &held, "--timeout", "120"])?;
    if c.restored_sha256("a0", before.gid)? != before.sha {
        bail!(
            "gid {} restores differently after the full disk",
            before.gid
        );
    }
    goes_on(c, 100)
}

/// Runs `walb-console --exec ARGS`, which must fail with an error saying the disk is
/// full; then waits until a0's volume is back in `state`.
fn fails_on_full_disk(c: &Cluster, args: &[&str], state: &str) -> Result<()> {
    let out = c.exec(args)?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{} on a full disk: {err}", args[0]);
    if out.status.success() {
        bail!("{} succeeded on a full disk", args[0]);
    }
    if !says_no_space(&err) {
        bail!("{}'s error does not say the disk is full: {err}", args[0]);
    }
    wait_until(30, &format!("a0 back in {state}"), || {
        Ok(c.state("a0")? == state)
    })
}

/// Writes go on (workload seed `seed`) and a new snapshot restores equal to the device.
fn goes_on(c: &Cluster, seed: u64) -> Result<()> {
    c.write(20, "16k", seed)?;
    let gid = c.snapshot()?;
    c.assert_restore_equals_device(gid)
}

/// 1 and 5: the proxy's disk is full while wlogs come in. The proxy refuses the
/// transfers saying so, the storage keeps its log, nothing reaches the archive; a proxy
/// restarted on the full disk starts and answers; once space is freed the storage ships
/// again by itself (a `kick` cuts its backoff short) and a new snapshot equals the device.
#[test]
fn proxy_disk_full() -> Result<()> {
    drill(&[("p0", PROXY_FS_MIB)], |c| {
        let before = backed_up(c, 1)?;
        let fs = c.small_fs("p0")?;
        let took = fs.fill(0)?;
        eprintln!(
            "p0: filler {} MiB, {} bytes free",
            took >> 20,
            fs.free_bytes()?
        );
        c.write(100, "64k", 2)?;
        let held = snapshot_held_back(c, 8)?;
        // The storage's log says why, naming the proxy and the volume.
        wait_until(30, "s0 reports p0's full disk", || {
            Ok(log_of(c, "s0")
                .lines()
                .any(|l| says_no_space(l) && l.contains("p0") && l.contains(VOL)))
        })?;
        assert_intact(c, &before.stored)?;
        let tmp = temporaries(&c.base_of("p0"))?;
        if !tmp.is_empty() {
            bail!("temporaries left on p0: {tmp:?}");
        }
        assert_no_flood(c, "s0")?;
        assert_no_flood(c, "p0")?;

        // 5: restarted on its full disk, the proxy starts, answers, and still refuses.
        restart_while_full(c, "p0", "Started")?;
        snapshot_held_back(c, 3)?;
        recovers(c, "p0", "s0", held, &before)
    })
}

/// 2 and 5: the archive's disk is full while wdiffs arrive. The archive refuses each
/// one naming the path and the full disk, removes its temporary file, and keeps what it
/// stored; the proxy keeps the wdiffs and shows the error in its status; an archive
/// restarted on the full disk starts and answers; once space is freed, a `kick` of the
/// proxy delivers everything and a new snapshot equals the device.
#[test]
fn archive_disk_full_under_wdiffs() -> Result<()> {
    drill(&[("a0", ARCHIVE_FS_MIB)], |c| {
        let before = backed_up(c, 11)?;
        c.small_fs("a0")?.fill(0)?;
        c.write(100, "64k", 12)?;
        let held = snapshot_held_back(c, 8)?;
        wait_until(30, "p0's status shows the archive's full disk", || {
            Ok(says_no_space(&proxy_archive_line(c)?))
        })?;
        let line = proxy_archive_line(c)?;
        eprintln!("p0 status while a0 is full: {line}");
        if proxy_queued(c)? == 0 {
            bail!("p0 holds no wdiff for a0 while a0 cannot take them: {line}");
        }
        let a0_log = log_of(c, "a0");
        if !a0_log
            .lines()
            .any(|l| says_no_space(l) && l.contains(&c.base_of("a0").display().to_string()))
        {
            bail!("a0's log does not name the full path");
        }
        assert_no_flood(c, "a0")?;
        assert_no_flood(c, "p0")?;
        assert_intact(c, &before.stored)?;

        // 5: restarted on the full disk, the archive starts and still serves its data.
        restart_while_full(c, "a0", "Archived")?;
        assert_intact(c, &before.stored)?;
        recovers(c, "a0", "p0", held, &before)
    })
}

/// 3: the archive's disk fills during a full backup. The backup fails with an error
/// naming the full disk, the archive removes the partial image and is back in SyncReady;
/// once space is freed the same full backup succeeds and restores equal to the device.
#[test]
fn archive_disk_full_during_full_backup() -> Result<()> {
    drill(&[("a0", ARCHIVE_FS_MIB)], |c| {
        // 24 MiB of the 32 MiB device written: the image needs that much room.
        c.write(400, "64k", 21)?;
        let wdev = c.wdev_path().display().to_string();
        c.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
        c.exec_ok(&["stop", "s0", VOL])?;
        c.small_fs("a0")?.fill(12 << 20)?;
        fails_on_full_disk(c, &["full-backup", "s0", VOL], "SyncReady")?;
        let tmp = temporaries(&c.base_of("a0"))?;
        if !tmp.is_empty() {
            bail!("the failed full backup left {tmp:?}");
        }
        if c.base_of("a0").join(VOL).join("base.img").exists() {
            bail!("the failed full backup left a base image");
        }

        c.small_fs("a0")?.free()?;
        let out = c.exec_ok(&["full-backup", "s0", VOL])?;
        let gid = last_number(&out).with_context(|| format!("no gid in {out:?}"))?;
        c.assert_restore_equals_device(gid)?;
        goes_on(c, 22)
    })
}

/// 4: the archive's disk is full during restore, merge and apply. Each fails with an
/// error naming the full disk, leaves no temporary file, and the base image and diffs keep
/// their SHA-256; once space is freed each succeeds and the snapshots restore as before.
#[test]
fn archive_disk_full_during_restore_merge_apply() -> Result<()> {
    drill(&[("a0", ARCHIVE_FS_MIB)], |c| {
        c.write(200, "64k", 31)?;
        c.init_and_full_backup()?;
        let gid_b = c.snapshot()?;
        let mut gids = vec![gid_b];
        for seed in 32..35 {
            let n = c.exec_ok(&["diff-list", "a0", VOL])?.lines().count();
            c.write(60, "64k", seed)?;
            // Each batch in its own diff: wait until it arrived before the next.
            wait_until(60, "the batch reached a0", || {
                Ok(c.exec_ok(&["diff-list", "a0", VOL])?.lines().count() > n)
            })?;
            gids.push(c.snapshot()?);
        }
        let gid_e = *gids.last().unwrap_or(&gid_b);
        let sha_e = c.restored_sha256("a0", gid_e)?;
        let sha_b = c.restored_sha256("a0", gid_b)?;
        let before = stored(c)?;
        let (b, e) = (gid_b.to_string(), gid_e.to_string());

        c.small_fs("a0")?.fill(0)?;
        for args in [
            vec!["restore", "a0", VOL, &e],
            vec!["merge", "a0", VOL, &b, &e],
            vec!["apply", "a0", VOL, &e],
        ] {
            fails_on_full_disk(c, &args, "Archived")?;
            assert_intact(c, &before)?;
        }

        c.small_fs("a0")?.free()?;
        if c.restored_sha256("a0", gid_b)? != sha_b {
            bail!("gid {gid_b} restores differently after the full disk");
        }
        c.exec_ok(&["merge", "a0", VOL, &b, &e])?;
        if c.restored_sha256("a0", gid_e)? != sha_e {
            bail!("gid {gid_e} restores differently after the merge");
        }
        c.exec_ok(&["apply", "a0", VOL, &e])?;
        if c.restored_sha256("a0", gid_e)? != sha_e {
            bail!("gid {gid_e} restores differently after the apply");
        }
        goes_on(c, 39)
    })
}
