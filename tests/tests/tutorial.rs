//! The tutorial, end to end with real processes: format and create the device, init,
//! full backup, mkfs and mount, write a file, umount, snapshot, restore, compare the
//! restored image with the device, read the file back from the mounted restore, delete
//! the restore; then its replication part: a second archive a1 initialized, a
//! replication once (the gid restores the same on a0 and a1), `replicate --sync` (a1 is
//! synchronizing: a file written afterwards reaches it through the proxy), and
//! stop-synchronizing.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use walb_tests::{check, is_root, last_number, sha256_file, Cluster, ClusterOpts, VOL};

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    check(&out, what)
}

fn mount(dev: &Path, at: &Path, ro: bool) -> Result<()> {
    let mut c = Command::new("mount");
    if dev.is_file() {
        c.args(["-o", if ro { "loop,ro" } else { "loop" }]);
    } else if ro {
        c.args(["-o", "ro"]);
    }
    run(c.arg(dev).arg(at), "mount")
}

fn tutorial(c: &Cluster) -> Result<()> {
    let wdev = c.wdev_path();
    c.exec_ok(&["init-storage", "s0", VOL, &wdev.display().to_string()])?;
    let states = c.exec_ok(&["state-all", VOL])?;
    for want in [
        "s0",
        "storage Standby",
        "p0",
        "proxy Clear",
        "a0",
        "archive Clear",
    ] {
        if !states.contains(want) {
            bail!("state-all after init-storage lacks {want:?}:\n{states}");
        }
    }

    run(
        Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&wdev),
        "mkfs.ext4",
    )?;
    let mnt = c.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    mount(&wdev, &mnt, false)?;

    c.exec_ok(&["stop", "s0", VOL])?;
    let states = c.exec_ok(&["state-all", VOL])?;
    if !states.contains("storage SyncReady") {
        bail!("after stop, s0 should be SyncReady:\n{states}");
    }
    let out = c.exec_ok(&["full-backup", "s0", VOL])?;
    let clean = last_number(&out).context("full-backup printed no gid")?;
    let states = c.exec_ok(&["state-all", VOL])?;
    for want in ["storage Target", "proxy Started", "archive Archived"] {
        if !states.contains(want) {
            bail!("state-all after full-backup lacks {want:?}:\n{states}");
        }
    }

    std::fs::write(mnt.join("test.txt"), "abc\n")?;
    run(Command::new("umount").arg(&mnt), "umount")?;

    let out = c.exec_ok(&["snapshot", "s0", VOL, "a0"])?;
    let gid = last_number(&out).context("snapshot printed no gid")?;
    if gid <= clean {
        bail!("snapshot gid {gid} is not after the full backup's {clean}");
    }
    let restorable = c.exec_ok(&["restorable", "a0", VOL])?;
    if !restorable
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&gid.to_string()))
    {
        bail!("gid {gid} missing from restorable:\n{restorable}");
    }
    let diffs = c.exec_ok(&["diff-list", "a0", VOL])?;
    if !diffs.contains("-->") {
        bail!("diff-list shows no diff:\n{diffs}");
    }

    let dev_sha = sha256_file(&wdev)?;
    let g = gid.to_string();
    c.exec_ok(&["restore", "a0", VOL, &g])?;
    let path = c.exec_ok(&["restored-path", "a0", VOL, &g])?;
    let path = Path::new(path.trim()).to_path_buf();
    let img_sha = sha256_file(&path)?;
    if img_sha != dev_sha {
        bail!("restored image of gid {gid} differs from the device");
    }
    mount(&path, &mnt, true)?;
    let text = std::fs::read_to_string(mnt.join("test.txt"));
    run(Command::new("umount").arg(&mnt), "umount restore")?;
    if text.context("reading test.txt from the restore")? != "abc\n" {
        bail!("test.txt in the restore has the wrong content");
    }
    c.exec_ok(&["del-restored", "a0", VOL, &g])?;
    let restored = c.exec_ok(&["get", "a0", "restored", VOL])?;
    if restored
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&g))
    {
        bail!("gid {gid} still restored after del-restored:\n{restored}");
    }
    if path.exists() && path.is_file() {
        bail!("{} still exists after del-restored", path.display());
    }
    // The same snapshot exported without a restore: the same bytes, written whole.
    let out = c.path().join("export.img");
    c.exec_ok(&["virt-full-scan", "a0", VOL, &g, &out.display().to_string()])?;
    if sha256_file(&out)? != dev_sha {
        bail!("virt-full-scan of gid {gid} differs from the device");
    }
    let e = c.exec(&[
        "virt-full-scan",
        "a0",
        VOL,
        "999999",
        &out.display().to_string(),
    ])?;
    if e.status.success() || sha256_file(&out)? != dev_sha {
        bail!("a refused virt-full-scan succeeded or touched the existing file");
    }
    std::fs::remove_file(&out)?;
    replication(c, &mnt)
}

/// `is-synchronizing a1 vol` as a boolean.
fn a1_synchronizing(c: &Cluster) -> Result<bool> {
    Ok(c.exec_ok(&["is-synchronizing", "a1", VOL])?.trim() == "1")
}

/// The tutorial's "Replication" part, with the cluster's second archive a1.
fn replication(c: &Cluster, mnt: &Path) -> Result<()> {
    let states = c.exec_ok(&["state-all", VOL])?;
    if !states
        .lines()
        .any(|l| l.starts_with("a1 ") && l.ends_with("archive Clear"))
    {
        bail!("a1 should be Clear before the replication:\n{states}");
    }
    c.exec_ok(&["init-archive", "a1", VOL])?;
    if c.exec_ok(&["get", "a1", "state", VOL])?.trim() != "SyncReady" {
        bail!("init-archive left a1 not SyncReady");
    }
    let out = c.exec_ok(&["replicate", "a0", VOL, "a1", "--timeout", "120"])?;
    let gid = last_number(&out).context("replicate printed no gid")?;
    let g = gid.to_string();
    let mut sums = Vec::new();
    for a in ["a0", "a1"] {
        let img = c.exec_ok(&["restore", a, VOL, &g])?;
        sums.push(sha256_file(Path::new(img.trim()))?);
        c.exec_ok(&["del-restored", a, VOL, &g])?;
    }
    if sums[0] != sums[1] {
        bail!("gid {gid} restores differently on a0 and a1");
    }
    if a1_synchronizing(c)? {
        bail!("a1 is synchronizing after a replication without --sync");
    }
    c.exec_ok(&["replicate", "a0", VOL, "a1", "--sync", "--timeout", "120"])?;
    if !a1_synchronizing(c)? {
        bail!("a1 is not synchronizing after replicate --sync");
    }
    let wdev = c.wdev_path();
    mount(&wdev, mnt, false)?;
    std::fs::write(mnt.join("test3.txt"), "ghi\n")?;
    run(Command::new("umount").arg(mnt), "umount")?;
    let out = c.exec_ok(&["snapshot", "s0", VOL, "a0", "a1", "--timeout", "120"])?;
    let gid = last_number(&out).context("snapshot printed no gid")?;
    let g = gid.to_string();
    let img = c.exec_ok(&["restore", "a1", VOL, &g])?;
    let img = Path::new(img.trim()).to_path_buf();
    if sha256_file(&img)? != sha256_file(&wdev)? {
        bail!("gid {gid} restored at a1 differs from the device");
    }
    mount(&img, mnt, true)?;
    let text = std::fs::read_to_string(mnt.join("test3.txt"));
    run(Command::new("umount").arg(mnt), "umount restore")?;
    if text.context("reading test3.txt from a1's restore")? != "ghi\n" {
        bail!("test3.txt in a1's restore has the wrong content");
    }
    c.exec_ok(&["del-restored", "a1", VOL, &g])?;
    c.exec_ok(&["stop-synchronizing", "a1", VOL])?;
    if a1_synchronizing(c)? {
        bail!("a1 is still synchronizing after stop-synchronizing");
    }
    Ok(())
}

#[test]
fn tutorial_up_to_delete_the_snapshot_then_replication() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: the tutorial needs root (block device, mkfs, mount)");
        return Ok(());
    }
    if !walb_tests::tools::require(
        "tutorial_up_to_delete_the_snapshot_then_replication",
        &["mkfs.ext4", "mount", "umount"],
    ) {
        return Ok(());
    }
    let c = Cluster::start(ClusterOpts {
        archives: 2,
        ..ClusterOpts::default()
    })?;
    let r = tutorial(&c);
    if r.is_err() {
        let _ = Command::new("umount").arg(c.path().join("mnt")).output();
        eprintln!("{}", c.logs());
    }
    r
}
