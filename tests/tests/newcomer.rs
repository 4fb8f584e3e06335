//! What a newcomer does with the lab, as they do it: `walb-console lab up` with its
//! defaults, `mkfs.ext4` on the device, mount, copy ~100 MB of files into the 64 MiB file
//! system (the copy fills it), umount. The log must not overflow, and a snapshot taken
//! afterwards must restore to the device's exact bytes; so must one after a longer burst of
//! twice the log, which the storage ships while it is written. The lab then grows by an
//! archive (`lab add-node archive a2`), which a replication fills with the same image, and
//! by a proxy (`lab add-node proxy p1`), which carries the logs while p0 is down.
//!
//! The second test forces an overflow (a 2 MiB log under a 16 MiB burst) and checks that
//! `lab status` and the storage's refusal name the one command that recovers given what
//! the archive holds — `hash-backup`, since a0 holds the volume — and that this command
//! brings the volume back.
//!
//! Both need root (the device's block device, mkfs, mount) and skip otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use walb_tests::{bin, bin_dir, check, is_root, lab_port_base, last_number, sha256_file, VOL};

/// A lab in its own directory, brought down (and the mount point unmounted) when dropped.
struct Lab {
    dir: tempfile::TempDir,
    port_base: u16,
}

impl Lab {
    /// `lab up` with the defaults but the port base and device name (a test must not
    /// take the user's lab's), plus `extra`.
    fn up(device: &str, extra: &[&str]) -> Result<(Lab, String)> {
        let lab = Lab {
            dir: tempfile::Builder::new()
                .prefix("walb-newcomer-")
                .tempdir()?,
            port_base: lab_port_base()?,
        };
        let port = lab.port_base.to_string();
        let mut args = vec!["up", "--port-base", &port, "--device", device];
        args.extend_from_slice(extra);
        let out = lab.lab(&args)?;
        // "device NAME (/dev/walb/NAME)"
        let wdev = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("device {device} (")))
            .and_then(|r| r.strip_suffix(')'))
            .with_context(|| format!("lab up named no device:\n{out}"))?
            .to_owned();
        if !out.contains("restorable at gid") {
            bail!("lab up made no full backup:\n{out}");
        }
        Ok((lab, wdev))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run_lab(&self, args: &[&str]) -> Result<Output> {
        bin("walb-console")
            .arg("lab")
            .arg("--dir")
            .arg(self.path())
            .arg("--bin-dir")
            .arg(bin_dir())
            .args(args)
            .output()
            .context("running walb-console lab")
    }

    /// `walb-console lab ARGS`, which must succeed; its stdout.
    fn lab(&self, args: &[&str]) -> Result<String> {
        self.stdout(self.run_lab(args)?, &format!("lab {args:?}"))
    }

    /// The stdout of a console command that must have succeeded.
    fn stdout(&self, out: Output, what: &str) -> Result<String> {
        check(&out, what).with_context(|| self.logs())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn exec(&self, args: &[&str]) -> Result<Output> {
        bin("walb-console")
            .arg("--cluster")
            .arg(self.path().join("cluster.toml"))
            .arg("--exec")
            .args(args)
            .output()
            .context("running walb-console --exec")
    }

    /// `walb-console --exec ARGS`, which must succeed; its stdout.
    fn exec_ok(&self, args: &[&str]) -> Result<String> {
        self.stdout(self.exec(args)?, &format!("--exec {args:?}"))
    }

    /// The tails of the daemons' logs, for a failure's message.
    fn logs(&self) -> String {
        let mut s = String::new();
        for n in ["s0", "p0", "p1", "a0", "a2"] {
            let text =
                std::fs::read_to_string(self.path().join(format!("{n}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!("--- {n}.log\n"));
            s.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
            s.push('\n');
        }
        s
    }

    fn mnt(&self) -> PathBuf {
        self.path().join("mnt")
    }

    /// A snapshot of s0 restorable at `archive`, restored there: its image's SHA-256.
    fn restored_sha(&self, archive: &str, gid: u64) -> Result<String> {
        let g = gid.to_string();
        let img = self.exec_ok(&["restore", archive, VOL, &g, "--timeout", "300"])?;
        let sha = sha256_file(Path::new(img.trim()))?;
        self.exec_ok(&["del-restored", archive, VOL, &g])?;
        Ok(sha)
    }

    /// `snapshot s0 vol a0`: its gid once restorable.
    fn snapshot(&self) -> Result<u64> {
        let out = self.exec_ok(&["snapshot", "s0", VOL, "a0", "--timeout", "300"])?;
        last_number(&out).context("snapshot printed no gid")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt()).output();
        let _ = self.run_lab(&["down", "--purge", "--timeout", "20"]);
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    check(
        &cmd.output().with_context(|| format!("running {what}"))?,
        what,
    )
}

/// `n` files of `mib` MiB of pseudo-random bytes (a xorshift stream: incompressible, as
/// photos or archives a newcomer would copy are) in `dir`.
fn make_files(dir: &Path, n: u64, mib: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; (mib << 20) as usize];
    for i in 0..n {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        std::fs::write(dir.join(format!("file{i:02}.bin")), &buf)?;
    }
    Ok(())
}

fn storage_is_fine(lab: &Lab) -> Result<()> {
    let of = lab.exec_ok(&["get", "s0", "is-overflow", VOL])?;
    let state = lab.exec_ok(&["get", "s0", "state", VOL])?;
    if of.trim() != "0" || state.trim() != "Target" {
        bail!(
            "after the copy s0 {VOL} is {} with is-overflow {}:\n{}",
            state.trim(),
            of.trim(),
            lab.logs()
        );
    }
    Ok(())
}

/// A lab up with `extra` options and its device's block device, or `None` (said on
/// stderr) when not root.
fn lab_as_root(tag: &str, extra: &[&str]) -> Result<Option<(Lab, String)>> {
    if !is_root() {
        eprintln!("skipped: the newcomer's steps need root (block device, mkfs, mount)");
        return Ok(None);
    }
    Lab::up(&format!("walb-{tag}{}", std::process::id()), extra).map(Some)
}

#[test]
fn a_copy_that_fills_the_new_file_system_is_backed_up_then_the_lab_grows() -> Result<()> {
    let t0 = Instant::now();
    let Some((lab, wdev)) = lab_as_root("nc", &[])? else {
        return Ok(());
    };
    let cfg = std::fs::read_to_string(lab.path().join("lab.toml"))?;
    if !cfg.contains("log_mb = 96") {
        bail!("the default log is not sized against the 64 MiB device:\n{cfg}");
    }
    let src = lab.path().join("src");
    make_files(&src, 25, 4)?;
    eprintln!(
        "lab up and 100 MiB of files: {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let t1 = Instant::now();
    run(
        Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&wdev),
        "mkfs.ext4",
    )?;
    let mnt = lab.mnt();
    std::fs::create_dir_all(&mnt)?;
    run(Command::new("mount").arg(&wdev).arg(&mnt), "mount")?;
    let cp = Command::new("cp").arg("-r").arg(&src).arg(&mnt).output()?;
    let cp_err = String::from_utf8_lossy(&cp.stderr);
    if cp.status.success() || !cp_err.contains("No space left") {
        bail!("the copy should fill the 64 MiB file system: {cp_err}");
    }
    run(Command::new("umount").arg(&mnt), "umount")?;
    eprintln!(
        "mkfs, mount, copy until full, umount: {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    storage_is_fine(&lab)?;

    let t2 = Instant::now();
    let gid = lab.snapshot()?;
    let dev_sha = sha256_file(Path::new(&wdev))?;
    if lab.restored_sha("a0", gid)? != dev_sha {
        bail!("gid {gid} restored at a0 differs from the device");
    }
    eprintln!(
        "snapshot {gid} restorable and equal to the device: {:.1} s",
        t2.elapsed().as_secs_f64()
    );

    // A longer burst: twice the 96 MiB log at ~20 MB/s for 10 s. The storage must ship
    // while it is being written (a quarter of the log per transfer) or the log overflows.
    let t_burst = Instant::now();
    let w = bin("wdevc")
        .args([
            "workload", &wdev, "--rate", "300", "--min-io", "64k", "--max-io", "64k",
        ])
        .args(["--duration", "10", "--flush-interval", "100"])
        .output()?;
    check(&w, "wdevc workload")?;
    storage_is_fine(&lab)?;
    let acked = std::fs::read_to_string(lab.path().join("s0.log"))?
        .matches("wlog transfer acknowledged")
        .count();
    if acked < 4 {
        bail!(
            "only {acked} transfers for 200 MB written: the storage did not ship during the burst"
        );
    }
    let gid = lab.snapshot()?;
    let dev_sha = sha256_file(Path::new(&wdev))?;
    eprintln!(
        "{} and {acked} transfers in all; snapshot {gid}: {:.1} s",
        String::from_utf8_lossy(&w.stdout).trim(),
        t_burst.elapsed().as_secs_f64()
    );

    // The lab grows by an archive, which replication fills.
    let t3 = Instant::now();
    let out = lab.lab(&["add-node", "archive", "a2"])?;
    let a2_addr = format!("127.0.0.1:{}", lab.port_base + 202);
    if !out.contains("a2 walb-archive started") || !out.contains(&a2_addr) {
        bail!("add-node printed:\n{out}");
    }
    let cluster = walb_console::cluster::Cluster::load(&lab.path().join("cluster.toml"))?;
    let a2 = cluster.node("a2")?;
    if a2.addr != a2_addr || a2.role != walb_wire::Role::Archive {
        bail!("the cluster file's a2 is {a2:?}");
    }
    let again = lab.run_lab(&["add-node", "archive", "a2"])?;
    if again.status.success() || !String::from_utf8_lossy(&again.stderr).contains("already has") {
        bail!("a second add-node a2 was not refused");
    }
    let out = lab.exec_ok(&["replicate", "a0", VOL, "a2", "--timeout", "300"])?;
    let rgid = last_number(&out).context("replicate printed no gid")?;
    if rgid < gid {
        bail!("replicate reached gid {rgid}, before the snapshot's {gid}");
    }
    if lab.restored_sha("a2", rgid)? != dev_sha {
        bail!("gid {rgid} restored at a2 differs from the device");
    }
    // The added node is the lab's like the others: listed, stopped and started again.
    lab.lab(&["stop", "a2"])?;
    let status = lab
        .lab(&["start", "a2"])
        .and_then(|_| lab.lab(&["status"]))?;
    if !status.lines().any(|l| {
        l.starts_with(&format!("a2 {a2_addr} walb-archive pid")) && l.ends_with("Archived")
    }) {
        bail!("lab status does not list a2 running and Archived:\n{status}");
    }
    eprintln!(
        "add-node a2, replicate, restore, stop and start a2: {:.1} s",
        t3.elapsed().as_secs_f64()
    );

    // And by a proxy, which takes over when p0 is down.
    let t4 = Instant::now();
    let out = lab.lab(&["add-node", "proxy", "p1"])?;
    if !out.contains("p1 sends vol to a0") || !out.contains("s0 restarted") {
        bail!("add-node proxy printed:\n{out}");
    }
    lab.lab(&["kill", "p0"])?;
    let w = bin("wdevc")
        .args([
            "workload", &wdev, "--count", "300", "--max-io", "64k", "--seed", "7",
        ])
        .output()?;
    check(&w, "wdevc workload")?;
    let gid = lab.snapshot()?;
    if lab.restored_sha("a0", gid)? != sha256_file(Path::new(&wdev))? {
        bail!("gid {gid}, shipped through p1, restores differently from the device");
    }
    let p1_log = std::fs::read_to_string(lab.path().join("p1.log"))?;
    if !p1_log.contains("wlog received") {
        bail!("p1 received no wlog while p0 was down:\n{}", lab.logs());
    }
    lab.lab(&["start", "p0"])?;
    eprintln!(
        "add-node p1, p0 killed, write, snapshot through p1: {:.1} s",
        t4.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn an_overflow_names_hash_backup_which_recovers_the_volume() -> Result<()> {
    let t0 = Instant::now();
    let Some((lab, wdev)) = lab_as_root("of", &["--size-mb", "16", "--log-mb", "2"])? else {
        return Ok(());
    };
    // 16 MiB at once through the block device into a 2 MiB log: faster than any shipping.
    run(
        Command::new("dd")
            .arg("if=/dev/urandom")
            .arg(format!("of={wdev}"))
            .args(["bs=1M", "count=16", "oflag=direct", "status=none"]),
        "dd",
    )?;
    let want = format!("run `hash-backup s0 {VOL}`");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = lab.lab(&["status"])?;
        if status.contains(&want) {
            break status;
        }
        if Instant::now() > deadline {
            bail!("lab status never named {want:?}:\n{status}\n{}", lab.logs());
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    if status.contains("full-backup") {
        bail!("a0 holds the volume: full-backup is not the command to name:\n{status}");
    }
    // What the newcomer tries next, a snapshot, names it too.
    let snap = lab.exec(&["snapshot", "s0", VOL, "a0", "--timeout", "10"])?;
    let err = String::from_utf8_lossy(&snap.stderr);
    if snap.status.success() || !err.contains(&want) || err.contains("full-backup") {
        bail!("snapshot after the overflow: {err}");
    }
    // The storage's own word, for those who read its log or ask it directly (its monitor
    // logs it when it next looks at the volume, which may come after the device's flag
    // that `status` reads).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(lab.path().join("s0.log"))?
        .contains("`hash-backup` of this volume recovers it")
    {
        if Instant::now() > deadline {
            bail!("s0's log does not name hash-backup:\n{}", lab.logs());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // And the one command does recover it.
    lab.exec_ok(&["hash-backup", "s0", VOL, "--timeout", "300"])?;
    storage_is_fine(&lab)?;
    let gid = lab.snapshot()?;
    if lab.restored_sha("a0", gid)? != sha256_file(Path::new(&wdev))? {
        bail!("gid {gid} after the hash backup differs from the device");
    }
    eprintln!("overflow drill: {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
