//! Progress bars of long `--exec` commands: a full backup run with stderr a pipe prints
//! the gid on stdout and writes no bar to stderr; the same command on a terminal (a
//! pseudo-terminal made by `script`) draws a bar with a rate and the time left on
//! stderr, and its stdout is the same gid line; with `--quiet` it draws none.
//!
//! The storage reads its device at 16 MB/s (`--full-scan-bps`), so that a 48 MiB backup
//! lasts about 3 s and the archive publishes several progress events meanwhile. Root
//! only (the emulated block device). About 20 s.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use walb_tests::{check, is_root, tools, Cluster, ClusterOpts};

const TEST: &str = "a_full_backup_draws_a_bar_on_a_terminal_and_nothing_on_a_pipe";

/// The line a full backup prints on stdout: the gid the image is clean at.
fn gid_line(stdout: &str) -> Result<u64> {
    let lines: Vec<&str> = stdout.lines().collect();
    match lines.as_slice() {
        [l] => l
            .trim()
            .parse()
            .with_context(|| format!("stdout is not a gid: {stdout:?}")),
        _ => bail!("stdout is not one gid line: {stdout:?}"),
    }
}

/// Fails unless `gid` (what a full backup printed) is restorable at a0.
fn restorable_at_a0(c: &Cluster, vol: &str, gid: u64) -> Result<()> {
    let list = c.exec_ok(&["restorable", "a0", vol])?;
    let gid_s = gid.to_string();
    if !list
        .lines()
        .any(|l| l.split_whitespace().next() == Some(gid_s.as_str()))
    {
        bail!("gid {gid} printed by the full backup of {vol} is not restorable at a0: {list}");
    }
    Ok(())
}

/// Quotes `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The rates (`12.5 MiB/s`) drawn in `screen`, in bytes per second.
fn rates(screen: &str) -> Vec<f64> {
    let words: Vec<&str> = screen.split([' ', '\r', '\n', '\x1b']).collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        let unit = match pair[1] {
            "B/s" => 1.0,
            "KiB/s" => 1024.0,
            "MiB/s" => 1024.0 * 1024.0,
            "GiB/s" => 1024.0 * 1024.0 * 1024.0,
            _ => continue,
        };
        if let Ok(v) = pair[0].parse::<f64>() {
            out.push(v * unit);
        }
    }
    out
}

/// Runs `console ARGS` under a pseudo-terminal: stderr is the terminal (returned, as
/// `script` saw it), stdout goes to `stdout_file`.
fn on_a_terminal(console: &Command, args: &[&str], stdout_file: &Path) -> Result<String> {
    let mut line: Vec<String> = vec![sh_quote(&console.get_program().to_string_lossy())];
    line.extend(console.get_args().map(|a| sh_quote(&a.to_string_lossy())));
    line.extend(args.iter().map(|a| sh_quote(a)));
    let cmd = format!(
        "stty cols 160 rows 40; {} >{}",
        line.join(" "),
        sh_quote(&stdout_file.display().to_string())
    );
    let mut script = Command::new("script");
    for (k, v) in console.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let out = script
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .context("running script")?;
    check(&out, "walb-console under script")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_full_backup_draws_a_bar_on_a_terminal_and_nothing_on_a_pipe() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: {TEST} needs root (block devices)");
        return Ok(());
    }
    if !tools::require(TEST, &["script", "stty"]) {
        return Ok(());
    }
    let c = Cluster::start(ClusterOpts {
        ddev_mb: 48,
        devices: 3,
        storage_args: vec!["--full-scan-bps".into(), "16000000".into()],
        ..ClusterOpts::default()
    })?;
    let (vol0, vol1, vol2) = ("vol", "vol1", "vol2");
    for (i, vol) in [vol0, vol1, vol2].into_iter().enumerate() {
        let wdev = c.wdev_path_of(i).display().to_string();
        c.exec_ok(&["init-storage", "s0", vol, &wdev])?;
        c.exec_ok(&["stop", "s0", vol])?;
    }

    // Stderr a pipe: the gid on stdout, and no bar on stderr.
    let out = c.exec(&["full-backup", "s0", vol0])?;
    check(&out, "full-backup with stderr a pipe")?;
    let gid = gid_line(&String::from_utf8_lossy(&out.stdout))?;
    let err = String::from_utf8_lossy(&out.stderr);
    for bar in ["\r", "\x1b", "B/s", " left", "full-backup s0 vol"] {
        if err.contains(bar) {
            bail!("stderr, a pipe, got bar output ({bar:?}): {err:?}");
        }
    }
    restorable_at_a0(&c, vol0, gid)?;

    // Stderr a terminal: a bar with a rate and the time left; stdout the same gid line.
    let stdout_file = c.path().join("full-backup.out");
    let t0 = std::time::Instant::now();
    let screen = on_a_terminal(
        &c.console(),
        &["--exec", "full-backup", "s0", vol1],
        &stdout_file,
    )?;
    let took = t0.elapsed();
    let gid1 = gid_line(&std::fs::read_to_string(&stdout_file)?)?;
    restorable_at_a0(&c, vol1, gid1)?;
    if !screen.contains("full-backup s0 vol1 [") {
        bail!("no bar on the terminal: {screen:?}");
    }
    let r = rates(&screen);
    let mut live: Vec<f64> = r.iter().copied().filter(|v| *v > 0.0).collect();
    live.sort_by(f64::total_cmp);
    let median = live.get(live.len() / 2).copied().unwrap_or(0.0);
    // The rate moves as the backup goes, and is of the order of the 16 MB/s the device
    // is read at (the estimate is smoothed; events may arrive bunched).
    if live.len() < 3 || !(2e6..=100e6).contains(&median) {
        bail!("the bar's rates {r:?} are not those of a 16 MB/s backup: {screen:?}");
    }
    if !screen.contains(" left") || !screen.contains("48.00 MiB") {
        bail!("the bar shows no time left or no total: {screen:?}");
    }

    // On a terminal with --quiet: no bar, the same gid line.
    let quiet_out = c.path().join("quiet.out");
    let screen = on_a_terminal(
        &c.console(),
        &["--quiet", "--exec", "full-backup", "s0", vol2],
        &quiet_out,
    )?;
    restorable_at_a0(&c, vol2, gid_line(&std::fs::read_to_string(&quiet_out)?)?)?;
    if screen.contains("full-backup s0 vol2") || !rates(&screen).is_empty() {
        bail!("--quiet drew a bar: {screen:?}");
    }
    eprintln!(
        "terminal run: {:.1} s, {} rates drawn, median {:.1} MB/s",
        took.as_secs_f64(),
        live.len(),
        median / 1e6
    );
    Ok(())
}
