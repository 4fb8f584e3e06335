//! The training lab's scripts (`vagrant/`). `driver-check.sh` is what `vagrant up` runs on
//! the WalB kernel driver; here it runs every one of its checks on the userspace emulator
//! (same `wdevc` commands, same daemons), so a broken check or a command that changed
//! under it fails here rather than in a user's VM. Every script must also parse, and pass
//! shellcheck where it is installed (CI installs it).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use walb_tests::{bin_dir, free_port, is_root};

fn vagrant_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vagrant")
}

fn scripts() -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(vagrant_dir())
        .context("listing vagrant/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    v.sort();
    Ok(v)
}

#[test]
fn driver_check_passes_every_check_on_the_emulator() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: driver-check.sh needs root (loop devices, mkfs, mount)");
        return Ok(());
    }
    // Three ports: base, +100, +200.
    let port_base = (0..50)
        .map(|_| free_port())
        .find(|p| (1024..65000).contains(p))
        .context("no free port")?;
    let out = Command::new("bash")
        .arg(vagrant_dir().join("driver-check.sh"))
        .arg("--emulate")
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--port-base", &port_base.to_string()])
        .output()
        .context("running driver-check.sh")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "driver-check.sh --emulate failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }
    let oks = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    let summary = format!("driver-check: all {oks} checks passed (emulator)");
    if !stdout.contains(&summary) {
        bail!("no {summary:?} in:\n{stdout}");
    }
    // The device commands and the pipeline round trip (lab up, snapshot, restore, down).
    for want in [
        "wlog-redo onto the initial data device reproduces the device",
        "overflow",
        "reset-wal clears",
        "resize grows",
        "restore equals the device and holds the file",
        "lab down",
    ] {
        if !stdout.contains(want) {
            bail!("driver-check.sh skipped the check {want:?}:\n{stdout}");
        }
    }
    Ok(())
}

#[test]
fn the_lab_scripts_parse_and_pass_shellcheck() -> Result<()> {
    let scripts = scripts()?;
    for want in ["driver-check.sh", "lab-disks.sh", "provision.sh"] {
        if !scripts.iter().any(|p| p.ends_with(want)) {
            bail!("vagrant/{want} is missing");
        }
    }
    for s in &scripts {
        let out = Command::new("bash").arg("-n").arg(s).output()?;
        if !out.status.success() {
            bail!(
                "{} does not parse: {}",
                s.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    match Command::new("shellcheck").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let out = Command::new("shellcheck").args(&scripts).output()?;
            if !out.status.success() {
                bail!("shellcheck:\n{}", String::from_utf8_lossy(&out.stdout));
            }
        }
        _ => eprintln!("shellcheck not installed: only bash -n"),
    }
    // What `vagrant up` runs: the Vagrantfile provisions with provision.sh, which installs
    // the other two scripts from the synced checkout and runs the check.
    let vf = std::fs::read_to_string(vagrant_dir().join("Vagrantfile"))?;
    if !vf.contains("path: \"provision.sh\"") {
        bail!("the Vagrantfile does not provision with provision.sh");
    }
    let prov = std::fs::read_to_string(vagrant_dir().join("provision.sh"))?;
    for want in [
        "/vagrant/lab-disks.sh\"",
        "/vagrant/driver-check.sh\"",
        "walb-driver-check --bin-dir",
    ] {
        if !prov.contains(want) {
            bail!("provision.sh lacks {want:?}");
        }
    }
    Ok(())
}
