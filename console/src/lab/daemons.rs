//! The lab's daemon processes: the programs found, started detached with a pid file,
//! waited for until they answer, signalled, stopped and started again.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::info;
use walb_wire::files::{self, Place};

use crate::client::Client;

use super::{
    daemon_args, io, lab_client, refresh_cluster, LabConfig, LabError, LabLayout, LabNode,
};

/// Finds program `name`: in `bin_dir`, else next to this executable, else on `PATH`.
pub fn find_binary(name: &str, bin_dir: Option<&Path>) -> Result<PathBuf, LabError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_default();
    let mut dirs: Vec<PathBuf> = bin_dir.into_iter().map(Path::to_owned).collect();
    dirs.push(beside.clone());
    // Test binaries live in target/debug/deps; the programs are one level up.
    if beside.file_name().is_some_and(|n| n == "deps") {
        if let Some(p) = beside.parent() {
            dirs.push(p.to_owned());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(LabError::NoBinary {
            name: name.to_owned(),
            beside,
        })
}

/// The pid in a daemon's pid file, if that process still runs this daemon.
pub fn live_pid(layout: &LabLayout, n: &LabNode) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(layout.pid(n))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_our_daemon(pid, n).then_some(pid)
}

fn is_our_daemon(pid: i32, n: &LabNode) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesized command name; a zombie has exited.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    if state.is_none() || state == Some("Z") {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let prog_ok = args
        .first()
        .and_then(|a| {
            Path::new(std::str::from_utf8(a).ok()?)
                .file_name()
                .map(|f| f == n.binary())
        })
        .unwrap_or(false);
    let id_ok = args
        .windows(2)
        .any(|w| w[0] == b"--id" && w[1] == n.name.as_bytes());
    prog_ok && id_ok
}

/// Starts a daemon detached (its own process group), writes its pid file.
pub fn spawn_daemon(
    layout: &LabLayout,
    cfg: &LabConfig,
    n: &LabNode,
    bin_dir: Option<&Path>,
) -> Result<i32, LabError> {
    let exe = find_binary(n.binary(), bin_dir)?;
    // Private, as the daemon would make it (it tightens a looser one, with a warning).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(layout.base(n))
        .map_err(io(format!("creating {}", layout.base(n).display())))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(files::MODE_PRIVATE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(layout.out(n))
        .map_err(io(format!("opening {}", layout.out(n).display())))?;
    let err = out
        .try_clone()
        .map_err(io(format!("opening {}", layout.out(n).display())))?;
    use std::os::unix::process::CommandExt;
    let child = Command::new(&exe)
        .args(daemon_args(layout, cfg, n))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io(format!("starting {}", exe.display())))?;
    let pid = i32::try_from(child.id()).map_err(|_| LabError::Other("pid out of range".into()))?;
    files::write_file(
        &layout.pid(n),
        format!("{pid}\n").as_bytes(),
        files::MODE_PUBLIC,
        Place::Replace,
    )
    .map_err(io(format!("writing {}", layout.pid(n).display())))?;
    info!(node = %n.name, pid, "started {}", exe.display());
    // The child is not waited for: it outlives this command.
    drop(child);
    Ok(pid)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Waits until a daemon answers `get host-type`, failing early if its process exits.
pub async fn wait_answering(
    client: &Client,
    layout: &LabLayout,
    n: &LabNode,
    timeout: Duration,
) -> Result<(), LabError> {
    let t0 = Instant::now();
    loop {
        match client.host_type(&n.name).await {
            Ok(_) => return Ok(()),
            Err(e) if t0.elapsed() >= timeout => {
                return Err(LabError::NotUp {
                    node: n.name.clone(),
                    why: format!("no answer in {} s: {e}", timeout.as_secs()),
                    log: layout.log(n),
                })
            }
            Err(_) => {}
        }
        if live_pid(layout, n).is_none() {
            let mut why = tail(&layout.out(n), 5);
            if why.trim().is_empty() {
                why = tail(&layout.log(n), 5);
            }
            return Err(LabError::NotUp {
                node: n.name.clone(),
                why: format!("the process exited: {}", why.trim()),
                log: layout.log(n),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(super) fn signal(pid: i32, sig: nix::sys::signal::Signal) -> Result<(), LabError> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .map_err(|e| LabError::Other(format!("sending {sig} to {pid}: {e}")))
}

pub(super) async fn wait_exit(layout: &LabLayout, n: &LabNode, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while live_pid(layout, n).is_some() {
        if t0.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// `lab stop NODE` (SIGTERM, wait) or `lab kill NODE` (SIGKILL).
pub async fn stop_node(
    layout: &LabLayout,
    name: &str,
    kill: bool,
    timeout: Duration,
) -> Result<String, LabError> {
    let n = layout.load_config()?.node(name)?;
    let Some(pid) = live_pid(layout, &n) else {
        return Ok(format!("{name} is not running"));
    };
    let sig = if kill {
        nix::sys::signal::Signal::SIGKILL
    } else {
        nix::sys::signal::Signal::SIGTERM
    };
    signal(pid, sig)?;
    if wait_exit(layout, &n, timeout).await {
        Ok(format!("{name} (pid {pid}) stopped by {sig}"))
    } else {
        Err(LabError::Other(format!(
            "{name} (pid {pid}) still runs {} s after {sig} (lab kill {name})",
            timeout.as_secs()
        )))
    }
}

/// `lab start NODE`: starts a daemon with the lab's arguments and waits until it answers.
pub async fn start_node(
    layout: &LabLayout,
    name: &str,
    bin_dir: Option<&Path>,
) -> Result<String, LabError> {
    let cfg = layout.load_config()?;
    let n = cfg.node(name)?;
    if let Some(pid) = live_pid(layout, &n) {
        return Ok(format!("{name} already running (pid {pid})"));
    }
    refresh_cluster(layout, &cfg)?;
    let pid = spawn_daemon(layout, &cfg, &n, bin_dir.or(cfg.bin_dir.as_deref()))?;
    let client = lab_client(layout)?;
    wait_answering(&client, layout, &n, Duration::from_secs(30)).await?;
    Ok(format!("{name} started (pid {pid}) on {}", n.addr(&cfg)))
}
