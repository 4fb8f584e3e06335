//! The end-to-end harness: a real walb cluster of processes on loopback.
//!
//! A [`Cluster`] lives in a temporary directory: a cluster CA with certificates for s0
//! (storage; with [`ClusterOpts::storages`] also s1, s2..., each with its own device, in
//! the same backup group), p0 (proxy), a0 (archive; with [`ClusterOpts::archives`] also
//! a1, a2... outside s0's backup group, for replication) and an operator console, an
//! emulated WalB device on two files (`wdevc create-wdev --emulate`, which as root also exposes a loop
//! block device), the daemons on free loopback ports, and a cluster file for
//! `walb-console`. With [`ClusterOpts::devices`] there are more devices than storages
//! (several volumes on one storage), with [`ClusterOpts::spares`] nodes ready to replace
//! others, and [`Cluster::set_layout`] moves the storages to another archive or other
//! proxies. Tests drive it exactly as operators do: `walb-console --exec`,
//! `wdevc`, `mkfs`, `mount`, and SIGTERM/SIGKILL for failure drills. Everything is torn
//! down when the [`Cluster`] drops.
//!
//! Binaries are taken from the cargo target directory this test runs from (or
//! `$WALB_BIN_DIR`); if one is missing the harness builds them once with `cargo build
//! --bins` ([`build_bins`] builds them unconditionally, for benchmarks that must not run
//! stale binaries). An [`Operator`] talks to the daemons through the wire library, for
//! polls too fast for a console process each time.

#![forbid(unsafe_code)]

pub mod chaos;
mod cluster;
mod drive;
pub mod hostile;
pub mod house;
mod operator;
pub mod repeater;
pub mod smallfs;
pub mod tools;

pub use cluster::{Cluster, ClusterOpts, Layout};
pub use drive::Writer;
pub use operator::Operator;

use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The volume name the tutorial uses.
pub const VOL: &str = "vol";

/// The binaries a cluster needs.
const BINS: [&str; 5] = [
    "walb-storage",
    "walb-proxy",
    "walb-archive",
    "walb-console",
    "wdevc",
];

/// The directory of the running executable's cargo profile (`target/<profile>`).
fn profile_dir() -> PathBuf {
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the cluster's binaries for the running executable's profile (release under
/// `cargo bench`); cargo does nothing when they are up to date.
pub fn build_bins() -> Result<()> {
    if std::env::var_os("WALB_BIN_DIR").is_some() {
        return Ok(());
    }
    let dir = profile_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = dir.file_name().is_some_and(|n| n == "release");
    let mut c = Command::new(cargo);
    c.args(["build", "--bins", "-p", "walb-daemon", "-p", "walb-console"])
        .args(["-p", "wdevc"]);
    without_package_env(&mut c);
    if release {
        c.arg("--release");
    }
    let st = c.status().context("running cargo build")?;
    if !st.success() {
        bail!("building the walb binaries failed: {st}");
    }
    Ok(())
}

/// Removes from `c` the variables cargo sets for the running package: cargo runs tests,
/// benches and `cargo run` binaries with them, and a cargo started from there would see
/// build scripts watching them (ring's) rebuild, and rebuild again under the next plain
/// build.
pub fn without_package_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let leaked = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*k);
        if leaked {
            c.env_remove(&*k);
        }
    }
}

/// The directory holding the workspace's binaries: `$WALB_BIN_DIR` if set (binaries built
/// elsewhere, e.g. an older version to compare with; nothing is built then), else the
/// running executable's profile directory.
pub fn bin_dir() -> PathBuf {
    static BUILD: Once = Once::new();
    if let Some(d) = std::env::var_os("WALB_BIN_DIR") {
        return PathBuf::from(d);
    }
    let dir = profile_dir();
    BUILD.call_once(|| {
        if BINS.iter().any(|b| !dir.join(b).exists()) {
            let r = build_bins();
            assert!(r.is_ok(), "{r:?}");
        }
    });
    dir
}

/// A command for one of the workspace's binaries.
pub fn bin(name: &str) -> Command {
    Command::new(bin_dir().join(name))
}

/// A benchmark knob: environment variable `name` as a number, `default` when unset or not
/// a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether a benchmark runs phase `case`: `WALB_BENCH_ONLY` (comma-separated phases) names
/// it, or is unset.
pub fn bench_wanted(case: &str) -> bool {
    match std::env::var("WALB_BENCH_ONLY") {
        Ok(only) => only.split(',').any(|c| c.trim() == case),
        Err(_) => true,
    }
}

/// True when running as root (block devices, mount).
pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// A free UDP port on loopback (QUIC listens on UDP).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A base port for a `walb-console lab` (which listens on base, +100, +200 and +201, and
/// on the next ports of each band for nodes it adds): every one of them free now, and
/// apart from the bases this process handed out before (tests run labs side by side).
pub fn lab_port_base() -> Result<u16> {
    const OFFSETS: [u16; 8] = [0, 1, 100, 101, 200, 201, 202, 203];
    /// Two labs whose bases are this far apart share no port.
    const APART: u16 = 300;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..200 {
        let base = free_port();
        if !(1024..65000).contains(&base) || given.iter().any(|g| g.abs_diff(base) < APART) {
            continue;
        }
        let all_free = OFFSETS
            .iter()
            .all(|o| UdpSocket::bind(("127.0.0.1", base + o)).is_ok());
        if all_free {
            given.push(base);
            return Ok(base);
        }
    }
    bail!("no base port with its lab's ports free")
}

/// SHA-256 of a file or block device, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
/// CPU seconds (user + system) of process `pid`, from /proc.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|s| s.parse::<f64>().ok());
    // Fields 14 and 15 of stat(5), counted after the command name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Runs `f` on a fresh cluster started with `opts`; prints the daemons' logs when it
/// fails. Skipped (Ok) unless root: scenarios read the device through its block device.
pub fn scenario(opts: ClusterOpts, f: impl FnOnce(&mut Cluster) -> Result<()>) -> Result<()> {
    if !is_root() {
        eprintln!("skipped: scenarios read the device through its block device (needs root)");
        return Ok(());
    }
    let mut c = Cluster::start(opts)?;
    let r = f(&mut c);
    if let Err(e) = &r {
        // The error first: a CI log cut to its head and tail still shows it.
        eprintln!("scenario failed: {e:#}");
        eprintln!("{}", c.logs());
        eprintln!("scenario failed: {e:#}");
    }
    r
}

/// Polls `f` every 100 ms until it holds, for at most `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let t0 = Instant::now();
    while !f()? {
        if t0.elapsed() > Duration::from_secs(secs) {
            bail!("{what}: not within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Fails with the command's stderr unless it succeeded.
pub fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

/// The last unsigned integer in `text` (a gid printed by a command).
pub fn last_number(text: &str) -> Option<u64> {
    text.rsplit(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .find_map(|t| t.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_number_takes_the_last_integer() {
        assert_eq!(super::last_number("gid 8\n"), Some(8));
        assert_eq!(super::last_number("clean at 12 (restorable 15)"), Some(15));
        assert_eq!(super::last_number("none"), None);
    }
}
