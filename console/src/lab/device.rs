//! The lab's WalB device: its images (new sparse files, loop devices for the driver, or
//! the `--ldev/--ddev` given), formatted once, and the device process run by `wdevc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tracing::info;
use walb_wire::files::{self, NewFile, Place};

use super::{io, launch, LabConfig, LabError, LabLayout};

pub(super) fn run(cmd: &mut Command) -> Result<String, LabError> {
    let line = format!("{cmd:?}");
    info!("running {line}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running {line}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(LabError::Command {
            command: line,
            status: out.status.to_string(),
            output: text.trim().to_owned(),
        });
    }
    Ok(text)
}

/// The devices `wdevc list` reports: (name, path or `-`). Emulated devices are listed
/// as `NAME emulated PATH|-`, the driver's as `NAME MAJOR:MINOR PATH`.
pub(super) fn running_devices(wdevc: &Path) -> Result<Vec<(String, String)>, LabError> {
    let text = run(Command::new(wdevc).arg("list"))?;
    Ok(parse_device_list(&text))
}

pub(super) fn parse_device_list(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [name, "emulated", path, ..] => Some(((*name).to_owned(), (*path).to_owned())),
                [name, majmin, path] if majmin.contains(':') => {
                    Some(((*name).to_owned(), (*path).to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

/// The loop devices attached to `image` (`losetup -j`).
pub(super) fn loops_of(image: &Path) -> Result<Vec<PathBuf>, LabError> {
    let text = run(Command::new("losetup").arg("-j").arg(image))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(d, _)| PathBuf::from(d)))
        .collect())
}

/// The block device over `image`: the loop device already attached to it, else a new one.
fn loop_for(image: &Path) -> Result<PathBuf, LabError> {
    if let Some(d) = loops_of(image)?.into_iter().next() {
        return Ok(d);
    }
    let text = run(Command::new("losetup")
        .args(["--find", "--show", "--direct-io=on"])
        .arg(image))?;
    Ok(PathBuf::from(text.trim()))
}

/// The log and data devices the lab's WalB device runs on: the configured ones, else the
/// images in `dev/` (created when missing), through loop devices for the driver. A log
/// device without a WalB superblock is formatted (only then: its logs are kept).
fn lab_devices(
    layout: &LabLayout,
    cfg: &LabConfig,
    wdevc: &Path,
) -> Result<(PathBuf, PathBuf), LabError> {
    let (ldev, ddev) = match (&cfg.ldev, &cfg.ddev) {
        (Some(l), Some(d)) => (l.clone(), d.clone()),
        (None, None) => {
            let dev = layout.dir.join("dev");
            std::fs::create_dir_all(&dev).map_err(io(format!("creating {}", dev.display())))?;
            for (p, mb) in [(layout.ddev(), cfg.size_mb), (layout.ldev(), cfg.log_mb)] {
                if std::fs::symlink_metadata(&p).is_err() {
                    new_image(&p, mb << 20)?;
                }
            }
            if cfg.driver {
                (loop_for(&layout.ldev())?, loop_for(&layout.ddev())?)
            } else {
                (layout.ldev(), layout.ddev())
            }
        }
        _ => {
            return Err(LabError::Other(
                "give both --ldev and --ddev, or neither".into(),
            ))
        }
    };
    let formatted = Command::new(wdevc)
        .arg("ldev-info")
        .arg(&ldev)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io(format!("running {} ldev-info", wdevc.display())))?
        .success();
    if !formatted {
        run(Command::new(wdevc).args(lab_device(cfg, &ldev, &ddev).format_args()))?;
    }
    Ok((ldev, ddev))
}

/// The lab's WalB device on `ldev` and `ddev`.
fn lab_device(cfg: &LabConfig, ldev: &Path, ddev: &Path) -> launch::DeviceSpec {
    launch::DeviceSpec {
        name: cfg.device.clone(),
        ldev: ldev.to_owned(),
        ddev: ddev.to_owned(),
        emulate: !cfg.driver,
        no_block: cfg.no_block,
    }
}

/// Makes the device images (formatting a new log device) and runs the WalB device:
/// emulated, or on the kernel driver with `driver`. Returns the WalB device to give
/// init-storage: its path, else its name.
pub fn ensure_device(
    layout: &LabLayout,
    cfg: &LabConfig,
    wdevc: &Path,
) -> Result<String, LabError> {
    if cfg.driver && !nix::unistd::geteuid().is_root() {
        return Err(LabError::Other(
            "the lab on the WalB driver needs root (loop devices, /dev/walb/control)".into(),
        ));
    }
    let find = |list: Vec<(String, String)>| list.into_iter().find(|(n, _)| *n == cfg.device);
    if find(running_devices(wdevc)?).is_none() {
        let (ldev, ddev) = lab_devices(layout, cfg, wdevc)?;
        run(Command::new(wdevc).args(lab_device(cfg, &ldev, &ddev).create_args()))?;
    }
    match find(running_devices(wdevc)?) {
        Some((_, path)) if path != "-" => Ok(path),
        Some((name, _)) => Ok(name),
        None => Err(LabError::Other(format!(
            "the WalB device {} is not running after create-wdev",
            cfg.device
        ))),
    }
}

/// Creates the sparse image `p` of `bytes` (0600), which must not exist yet: written under
/// a temporary name and linked into place ([`walb_wire::files`]).
fn new_image(p: &Path, bytes: u64) -> Result<(), LabError> {
    let mut f =
        NewFile::create(p, files::MODE_PRIVATE).map_err(io(format!("creating {}", p.display())))?;
    f.file()
        .set_len(bytes)
        .map_err(io(format!("sizing {}", p.display())))?;
    f.commit(Place::New)
        .map_err(io(format!("creating {}", p.display())))
}
