//! The training lab's scripts (`vagrant/`). `driver-check.sh` is what `vagrant up` runs on
//! the WalB kernel driver; here it runs every one of its checks on the userspace emulator
//! (same `wdevc` commands, same daemons), so a broken check or a command that changed
//! under it fails here rather than in a user's VM. `GUIDE.md`'s `sh` blocks, the tutorial,
//! run as they stand on the emulator too. Every script must also parse, and pass
//! shellcheck (a test whose tool is missing says which; see `walb_tests::tools`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use walb_tests::{bin_dir, is_root, lab_port_base, tools};

/// What driver-check.sh and the guide run besides walb's own programs.
const LAB_SCRIPT_TOOLS: &[&str] = &[
    "bash",
    "losetup",
    "mkfs.ext4",
    "mount",
    "umount",
    "truncate",
    "sha256sum",
];

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
    if !tools::require(
        "driver_check_passes_every_check_on_the_emulator",
        LAB_SCRIPT_TOOLS,
    ) {
        return Ok(());
    }
    let port_base = lab_port_base()?;
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
    // Its loop devices are detached and its device deleted when it ends.
    let work = stdout
        .lines()
        .find_map(|l| l.split_once("work directory ").map(|(_, w)| w.trim()))
        .context("driver-check.sh printed no work directory")?;
    let loops = Command::new("losetup").arg("-a").output()?;
    if String::from_utf8_lossy(&loops.stdout).contains(work) {
        bail!("driver-check.sh left loop devices over {work} attached");
    }
    let list = bin_dir().join("wdevc");
    let list = Command::new(list).arg("list").output()?;
    if String::from_utf8_lossy(&list.stdout).contains("walb-check-") {
        bail!("driver-check.sh left its device running");
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
    if tools::require("the_lab_scripts_parse_and_pass_shellcheck", &["shellcheck"]) {
        let out = Command::new("shellcheck").args(&scripts).output()?;
        if !out.status.success() {
            bail!("shellcheck:\n{}", String::from_utf8_lossy(&out.stdout));
        }
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

/// The `sh` blocks of GUIDE.md, in order.
fn guide_blocks() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(vagrant_dir().join("GUIDE.md"))?;
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    Ok(blocks)
}

#[test]
fn the_guide_walks_the_tutorial_on_the_emulator() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: the guide needs root (loop devices, mkfs, mount)");
        return Ok(());
    }
    if !tools::require(
        "the_guide_walks_the_tutorial_on_the_emulator",
        LAB_SCRIPT_TOOLS,
    ) {
        return Ok(());
    }
    let blocks = guide_blocks()?;
    let script = blocks.concat();
    for step in [
        "format-ldev",
        "create-wdev",
        "lab --dir /mnt/tutorial up",
        "init-storage",
        "mkfs.ext4",
        "full-backup",
        "snapshot",
        "restore",
        "del-restored",
        "merge",
        "apply",
        "hash-backup",
        "replicate a0 vol a1",
        "replicate a0 vol a1 --sync",
        "is-synchronizing",
        "stop-synchronizing",
        "down",
    ] {
        if !script.contains(step) {
            bail!("GUIDE.md's sh blocks lack {step:?}");
        }
    }
    let t = tempfile::tempdir()?;
    let dir = t.path();
    let port_base = lab_port_base()?;
    // The VM's LVM volumes, directories and driver become loop devices, temporary
    // directories and the emulator; nothing else of the guide's text changes.
    let script = script
        .replace("/dev/tutorial/wlog", "$WLOG")
        .replace("/dev/tutorial/wdata", "$WDATA")
        .replace("/mnt/tutorial", &format!("{}/lab", dir.display()))
        .replace("/mnt/tmp", &format!("{}/mnt", dir.display()))
        .replace(" --driver", "");
    let prelude = format!(
        r#"set -euo pipefail
export PATH={bin}:$PATH
cd {dir}
truncate -s 64M wdata.img
truncate -s 32M wlog.img
WDATA=$(losetup --find --show wdata.img)
WLOG=$(losetup --find --show wlog.img)
echo "$WLOG $WDATA" > loops
wdevc() {{ if [ "$1" = create-wdev ]; then command wdevc "$@" --emulate; else command wdevc "$@"; fi; }}
walb-console() {{
    if [ "${{1:-}}" = lab ] && [ "${{4:-}}" = up ]; then command walb-console "$@" --port-base {port_base}
    else command walb-console "$@"; fi
}}
set -x
"#,
        bin = bin_dir().display(),
        dir = dir.display(),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .stdin(std::process::Stdio::null())
        .output()
        .context("running the guide")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Whatever happened, leave nothing mounted or attached.
    let _ = Command::new("umount").arg(dir.join("mnt")).output();
    let _ = Command::new(bin_dir().join("walb-console"))
        .args(["lab", "--dir"])
        .arg(dir.join("lab"))
        .args(["down", "--timeout", "10"])
        .output();
    let _ = Command::new(bin_dir().join("wdevc"))
        .args(["delete-wdev", "walb-tutorial-device"])
        .output();
    if let Ok(loops) = std::fs::read_to_string(dir.join("loops")) {
        for l in loops.split_whitespace() {
            let _ = Command::new("losetup").args(["-d", l]).output();
        }
    }
    if !out.status.success() {
        bail!("the guide failed ({}):\n{stdout}\n{stderr}", out.status);
    }
    for want in [
        "storage Standby",
        "storage SyncReady",
        "storage Target",
        "archive Archived",
        "abc",
        "def",
        "ghi",
        "archive SyncReady",
        "identically",
        "<|",
        "device walb-tutorial-device deleted",
    ] {
        if !stdout.contains(want) {
            bail!("the guide's run printed no {want:?}:\n{stdout}\n{stderr}");
        }
    }
    Ok(())
}
