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
pub mod hostile;
pub mod house;
pub mod repeater;
pub mod smallfs;
pub mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use walb_wire::{ClusterCa, IssueOptions, PeerId, Role};

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
    // Cargo runs tests and benches with their package's variables set; build scripts
    // watching them (ring's) would rebuild, and rebuild again under the next plain build.
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
    if release {
        c.arg("--release");
    }
    let st = c.status().context("running cargo build")?;
    if !st.success() {
        bail!("building the walb binaries failed: {st}");
    }
    Ok(())
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

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// Data device size, MiB.
    pub ddev_mb: u64,
    /// Log device size, MiB.
    pub ldev_mb: u64,
    /// Implicit snapshot interval of the storage, seconds.
    pub snapshot_interval: u64,
    /// Extra storage options.
    pub storage_args: Vec<String>,
    /// Extra proxy options.
    pub proxy_args: Vec<String>,
    /// Extra archive options.
    pub archive_args: Vec<String>,
    /// Number of proxies (p0, p1, ...), in the storage's priority order.
    pub proxies: usize,
    /// Number of archives: a0 (the storage's) and a1, a2... (replication targets, in the
    /// cluster file but in no backup group).
    pub archives: usize,
    /// Writes the initial content of the log and data device files (`(ldev, ddev)`,
    /// already of their sizes, sparse) before the device is formatted and started.
    pub fill: Option<fn(&Path, &Path) -> Result<()>>,
    /// Number of storages: s0, and s1, s2... (walb-tools' n12), each with its own
    /// emulated device ([`Cluster::wdev_path_of`]), all in s0's backup group (a0 and the
    /// proxies, reached directly).
    pub storages: usize,
    /// s0 reaches p0 through a [`repeater::Repeater`] (`Cluster::repeater("s0-p0")`), whose
    /// link a test can cut.
    pub repeat_s0_p0: bool,
    /// s0 reaches a0 (its archive) through a relay (`Cluster::repeater("s0-a0")`).
    pub repeat_s0_a0: bool,
    /// Number of emulated devices, at least one per storage: device `i < storages` is
    /// storage `i`'s, the others are free for any storage to `init-storage` (scenario1's
    /// three volumes on s0, a spare storage's device).
    pub devices: usize,
    /// Spare nodes (walb-tools' s2, p2, a2; the role from the name's first letter):
    /// certificates issued, ports reserved, daemons ready but not started, and not in
    /// the cluster file until [`Cluster::start_node`] deploys them. A spare storage runs
    /// in the current [`Layout`].
    pub spares: Vec<String>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        Self {
            ddev_mb: 32,
            ldev_mb: 16,
            snapshot_interval: 1,
            storage_args: Vec::new(),
            proxy_args: Vec::new(),
            archive_args: Vec::new(),
            proxies: 1,
            archives: 1,
            storages: 1,
            fill: None,
            repeat_s0_p0: false,
            repeat_s0_a0: false,
            devices: 1,
            spares: Vec::new(),
        }
    }
}

/// One daemon of the cluster.
#[derive(Debug)]
struct Daemon {
    bin: &'static str,
    args: Vec<String>,
    child: Option<Child>,
}

/// Clusters of one test binary run one at a time: each is several processes, and timing
/// assertions (a snapshot becomes restorable) should not depend on the neighbours.
static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running test cluster (see the module documentation).
pub struct Cluster {
    _serial: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    /// The emulated device's name (s0's).
    pub wdev: String,
    /// The emulated devices: s0's, s1's... then the extra ones of [`ClusterOpts::devices`].
    wdevs: Vec<String>,
    daemons: BTreeMap<String, Daemon>,
    /// Node name → port.
    pub ports: BTreeMap<String, u16>,
    device_up: bool,
    /// Relays between nodes, by link name (`s0-p0`).
    repeaters: BTreeMap<String, repeater::Repeater>,
    /// Small file systems under base directories, by node ([`Cluster::put_on_small_fs`]).
    small_fs: BTreeMap<String, smallfs::SmallFs>,
    /// Every node (spares too) with its role, in the cluster file's order.
    nodes: Vec<(Role, String)>,
    /// The nodes written into the cluster file (a spare joins at its first start).
    in_file: BTreeSet<String>,
    /// The backup group every storage belongs to: its archive and proxies in order.
    layout: Layout,
    /// Addresses s0 dials instead of a node's own (its relays).
    s0_via: BTreeMap<String, String>,
    /// Options every storage runs with beyond its layout.
    storage_extra: Vec<String>,
}

/// The backup group of the cluster's storages (walb-tools' server layout): the primary
/// archive and the proxies in priority order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The archive full and hash backups go to.
    pub archive: String,
    /// The proxies, in the storages' priority order.
    pub proxies: Vec<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir.path())
            .field("ports", &self.ports)
            .finish()
    }
}

/// The role a node's name gives (`s2` storage, `p2` proxy, `a2` archive).
fn role_of_name(name: &str) -> Result<Role> {
    match name.chars().next() {
        Some('s') => Ok(Role::Storage),
        Some('p') => Ok(Role::Proxy),
        Some('a') => Ok(Role::Archive),
        _ => bail!("a node name starts with s, p or a: {name:?}"),
    }
}

impl Cluster {
    /// Builds certificates, the device and the cluster file, and starts the daemons.
    pub fn start(opts: ClusterOpts) -> Result<Cluster> {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::Builder::new().prefix("walb-e2e-").tempdir()?;
        let d = dir.path();
        let certs = d.join("certs");
        std::fs::create_dir_all(&certs)?;
        let ca = ClusterCa::generate("walb-e2e", 30)?;
        ca.save(&certs, false)?;
        let proxies: Vec<String> = (0..opts.proxies.max(1)).map(|i| format!("p{i}")).collect();
        let archives: Vec<String> = (0..opts.archives.max(1)).map(|i| format!("a{i}")).collect();
        let storages: Vec<String> = (0..opts.storages.max(1)).map(|i| format!("s{i}")).collect();
        let mut nodes: Vec<(Role, String)> = Vec::new();
        nodes.extend(storages.iter().map(|s| (Role::Storage, s.clone())));
        nodes.extend(archives.iter().map(|a| (Role::Archive, a.clone())));
        nodes.extend(proxies.iter().map(|p| (Role::Proxy, p.clone())));
        for s in &opts.spares {
            if nodes.iter().any(|(_, n)| n == s) {
                bail!("spare {s} is already a node of the cluster");
            }
            nodes.push((role_of_name(s)?, s.clone()));
        }
        for (role, id) in nodes
            .iter()
            .chain(std::iter::once(&(Role::Operator, "console".to_string())))
        {
            let peer = PeerId::new(*role, id)?;
            let opts = IssueOptions {
                hosts: vec!["localhost".into(), "127.0.0.1".into()],
                ..IssueOptions::default()
            };
            ca.issue(&peer, &opts)?.save(&certs, false)?;
        }
        let wdev = format!(
            "e2e{}-{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ports: BTreeMap<String, u16> = nodes
            .iter()
            .map(|(_, id)| (id.clone(), free_port()))
            .collect();
        let in_file = nodes
            .iter()
            .filter(|(_, n)| !opts.spares.contains(n))
            .map(|(_, n)| n.clone())
            .collect();
        let mut c = Cluster {
            _serial: serial,
            dir,
            wdevs: (0..storages.len().max(opts.devices))
                .map(|i| match i {
                    0 => wdev.clone(),
                    i => format!("{wdev}s{i}"),
                })
                .collect(),
            wdev,
            daemons: BTreeMap::new(),
            ports,
            device_up: false,
            repeaters: BTreeMap::new(),
            small_fs: BTreeMap::new(),
            nodes: nodes.clone(),
            in_file,
            layout: Layout {
                archive: "a0".into(),
                proxies: proxies.clone(),
            },
            s0_via: BTreeMap::new(),
            storage_extra: opts.storage_args.clone(),
        };
        c.storage_extra.extend([
            "--snapshot-interval".into(),
            opts.snapshot_interval.to_string(),
        ]);
        c.write_cluster_file()?;
        for i in 0..c.wdevs.len() {
            c.create_device(&opts, i)?;
        }
        if opts.repeat_s0_p0 {
            let a = c.add_repeater("s0-p0", "p0")?;
            c.s0_via.insert("p0".into(), a);
        }
        if opts.repeat_s0_a0 {
            let a = c.add_repeater("s0-a0", "a0")?;
            c.s0_via.insert("a0".into(), a);
        }
        // Archives first, then proxies, then storages: each finds what it dials running.
        let rank = |r: Role| match r {
            Role::Archive => 0,
            Role::Proxy => 1,
            _ => 2,
        };
        let mut order = nodes.clone();
        order.sort_by_key(|(r, _)| rank(*r));
        for (role, name) in order {
            let (bin, args) = match role {
                Role::Archive => ("walb-archive", c.daemon_args(&name, &opts.archive_args)),
                Role::Proxy => ("walb-proxy", c.daemon_args(&name, &opts.proxy_args)),
                _ => ("walb-storage", c.storage_args(&name)),
            };
            c.daemons.insert(
                name.clone(),
                Daemon {
                    bin,
                    args,
                    child: None,
                },
            );
            if !opts.spares.contains(&name) {
                c.start_node(&name)?;
            }
        }
        Ok(c)
    }

    /// `127.0.0.1:PORT` of node `n`.
    fn addr(&self, n: &str) -> String {
        format!("127.0.0.1:{}", self.ports.get(n).copied().unwrap_or(0))
    }

    /// The options every daemon `id` runs with, then `extra`.
    fn daemon_args(&self, id: &str, extra: &[String]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-b".into(),
            self.path().join(id).display().to_string(),
            "-l".into(),
            self.path().join(format!("{id}.log")).display().to_string(),
            "-p".into(),
            self.addr(id),
            "--id".into(),
            id.into(),
            "--cert-dir".into(),
            self.path().join("certs").display().to_string(),
        ];
        a.extend(extra.iter().cloned());
        a
    }

    /// The options of storage `id` under the current layout: the archive and proxies it
    /// dials as `ID@HOST:PORT` (s0 through its relays, if any).
    fn storage_args(&self, id: &str) -> Vec<String> {
        let dial = |n: &str| {
            let via = (id == "s0").then(|| self.s0_via.get(n)).flatten();
            format!("{n}@{}", via.cloned().unwrap_or_else(|| self.addr(n)))
        };
        let proxies: Vec<String> = self.layout.proxies.iter().map(|p| dial(p)).collect();
        let mut s = vec![
            "--archive".to_string(),
            dial(&self.layout.archive),
            "--proxy".into(),
            proxies.join(","),
        ];
        s.extend(self.storage_extra.iter().cloned());
        self.daemon_args(id, &s)
    }

    /// Writes the cluster file: the nodes deployed so far, every storage in the layout's
    /// backup group.
    fn write_cluster_file(&self) -> Result<()> {
        let quoted: Vec<String> = self
            .layout
            .proxies
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect();
        let mut text = "name = \"e2e\"\n\n[certs]\nca = \"certs/ca.crt\"\n\
             cert = \"certs/operator-console.crt\"\nkey = \"certs/operator-console.key\"\n\n"
            .to_string();
        for (role, n) in self.nodes.iter().filter(|(_, n)| self.in_file.contains(n)) {
            let kind = match role {
                Role::Storage => "storage",
                Role::Proxy => "proxy",
                _ => "archive",
            };
            text += &format!(
                "[[node]]\nname = \"{n}\"\nrole = \"{kind}\"\naddr = \"{}\"\n",
                self.addr(n)
            );
            if *role == Role::Storage {
                text += &format!(
                    "archive = \"{}\"\nproxies = [{}]\n",
                    self.layout.archive,
                    quoted.join(", ")
                );
            }
            text += "\n";
        }
        std::fs::write(self.path().join("cluster.toml"), text)?;
        Ok(())
    }

    /// The current backup group of the storages.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Changes the storages' backup group as an operator does (walb-tools'
    /// `set_server_layout` and restart of the storages): the cluster file names the new
    /// archive and proxies, and every running storage is restarted (SIGTERM) with them as
    /// its `--archive` and `--proxy`.
    pub fn set_layout(&mut self, archive: &str, proxies: &[&str]) -> Result<()> {
        self.layout = Layout {
            archive: archive.into(),
            proxies: proxies.iter().map(|p| p.to_string()).collect(),
        };
        self.write_cluster_file()?;
        let storages: Vec<String> = self
            .nodes
            .iter()
            .filter(|(r, _)| *r == Role::Storage)
            .map(|(_, n)| n.clone())
            .collect();
        for s in storages {
            let args = self.storage_args(&s);
            let running = match self.daemons.get_mut(&s) {
                Some(d) => {
                    d.args = args;
                    d.child.is_some()
                }
                None => false,
            };
            if running {
                self.stop_node(&s)?;
                self.start_node(&s)?;
            }
        }
        Ok(())
    }

    /// Takes daemon `name` out of service: stopped (SIGTERM) and removed from the cluster
    /// file, as an operator decommissions a replaced node. [`Cluster::start_node`] deploys
    /// it again.
    pub fn retire(&mut self, name: &str) -> Result<()> {
        self.stop_node(name)?;
        self.in_file.remove(name);
        self.write_cluster_file()
    }

    /// A relay between two nodes (`s0-p0`, or one added by [`Cluster::add_repeater`]).
    pub fn repeater(&self, link: &str) -> Result<&repeater::Repeater> {
        self.repeaters
            .get(link)
            .ok_or_else(|| anyhow::anyhow!("no repeater on the link {link}"))
    }

    /// Starts a relay to `node` under the name `link`; its address.
    pub fn add_repeater(&mut self, link: &str, node: &str) -> Result<String> {
        let port = self
            .ports
            .get(node)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("no node {node}"))?;
        let r = repeater::Repeater::start(format!("127.0.0.1:{port}").parse()?)?;
        let a = r.addr().to_string();
        self.repeaters.insert(link.into(), r);
        Ok(a)
    }

    /// The cluster's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Environment every process of this cluster runs with.
    fn env(&self, c: &mut Command) {
        c.env("WALB_EMU_DIR", self.path().join("emu"))
            .env("WALB_DEV_DIR", self.path().join("dev"))
            .env("WALB_CLUSTER", self.path().join("cluster.toml"))
            .env("WALB_LOG", "info");
    }

    /// Creates the device of storage `i` (s0: files `ldev` and `ddev`, s1: `ldev1`...).
    fn create_device(&mut self, opts: &ClusterOpts, i: usize) -> Result<()> {
        let d = self.path().to_path_buf();
        let n = if i == 0 { String::new() } else { i.to_string() };
        let (ldev, ddev) = (d.join(format!("ldev{n}")), d.join(format!("ddev{n}")));
        std::fs::File::create(&ldev)?.set_len(opts.ldev_mb << 20)?;
        std::fs::File::create(&ddev)?.set_len(opts.ddev_mb << 20)?;
        if let Some(fill) = opts.fill {
            fill(&ldev, &ddev).context("filling the device files")?;
        }
        let out = self.wdevc(&[
            "format-ldev",
            &ldev.display().to_string(),
            &ddev.display().to_string(),
        ])?;
        check(&out, "wdevc format-ldev")?;
        let out = self.wdevc(&[
            "create-wdev",
            &ldev.display().to_string(),
            &ddev.display().to_string(),
            "-n",
            &self.wdevs[i].clone(),
            "--emulate",
        ])?;
        check(&out, "wdevc create-wdev")?;
        self.device_up = true;
        Ok(())
    }

    /// The WalB device's name.
    pub fn wdev_name(&self) -> String {
        self.wdev.clone()
    }

    /// The device as operators name it: the block device link (root) or its name.
    pub fn wdev_path(&self) -> PathBuf {
        self.wdev_path_of(0)
    }

    /// The device of storage `i` (s0, s1...) as operators name it.
    pub fn wdev_path_of(&self, i: usize) -> PathBuf {
        let name = self.wdevs.get(i).unwrap_or(&self.wdev);
        let link = self.path().join("dev").join(name);
        if link.exists() {
            link
        } else {
            PathBuf::from(name)
        }
    }

    /// Runs `wdevc ARGS` in this cluster's environment.
    pub fn wdevc(&self, args: &[&str]) -> Result<Output> {
        let mut c = bin("wdevc");
        self.env(&mut c);
        Ok(c.args(args).output()?)
    }

    /// `walb-console --cluster FILE` in this cluster's environment, for the caller to add
    /// `--exec ARGS` (or options first).
    pub fn console(&self) -> Command {
        let mut c = bin("walb-console");
        self.env(&mut c);
        c.arg("--cluster").arg(self.path().join("cluster.toml"));
        c
    }

    /// Runs `walb-console --exec ARGS`.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        Ok(self.console().arg("--exec").args(args).output()?)
    }

    /// Runs `walb-console --json --exec ARGS` (stdout: one JSON value, or an `error`
    /// object).
    pub fn exec_json(&self, args: &[&str]) -> Result<Output> {
        Ok(self
            .console()
            .arg("--json")
            .arg("--exec")
            .args(args)
            .output()?)
    }

    /// Starts `walb-console --exec ARGS` without waiting (output piped).
    pub fn exec_spawn(&self, args: &[&str]) -> Result<Child> {
        let mut c = self.console();
        c.arg("--exec")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(c.spawn()?)
    }

    /// Runs `walb-console --exec ARGS` and returns its stdout; fails with its stderr.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.exec(args)?;
        check(&out, &format!("walb-console --exec {}", args.join(" ")))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `walb-console --json --exec ARGS` and returns its stdout (JSON); fails with
    /// its stderr.
    pub fn exec_json_ok(&self, args: &[&str]) -> Result<String> {
        let mut c = bin("walb-console");
        self.env(&mut c);
        let out = c
            .arg("--cluster")
            .arg(self.path().join("cluster.toml"))
            .arg("--json")
            .arg("--exec")
            .args(args)
            .output()?;
        check(
            &out,
            &format!("walb-console --json --exec {}", args.join(" ")),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// (Re)starts daemon `name` and waits until it answers; a spare not yet in the
    /// cluster file is added to it first.
    pub fn start_node(&mut self, name: &str) -> Result<()> {
        if self.in_file.insert(name.to_owned()) {
            self.write_cluster_file()?;
        }
        let mut cmd = {
            let d = self.daemons.get(name).context("no such node")?;
            let mut c = bin(d.bin);
            c.args(&d.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        };
        self.env(&mut cmd);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        if let Some(d) = self.daemons.get_mut(name) {
            d.child = Some(child);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.exec(&["get", name, "host-type"])?;
            if out.status.success() {
                return Ok(());
            }
            if let Some(Some(c)) = self.daemons.get_mut(name).map(|d| d.child.as_mut()) {
                if let Ok(Some(st)) = c.try_wait() {
                    bail!(
                        "{name} exited at start ({st}); log:\n{}",
                        self.log_tail(name)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} does not answer: {}\nlog:\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log_tail(name)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&mut self, name: &str, sig: nix::sys::signal::Signal) -> Result<()> {
        let d = self.daemons.get_mut(name).context("no such node")?;
        if let Some(mut c) = d.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, sig);
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if c.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    bail!("{name} did not exit after {sig}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Stops daemon `name` gracefully (SIGTERM) and waits for it.
    pub fn stop_node(&mut self, name: &str) -> Result<()> {
        self.signal(name, nix::sys::signal::Signal::SIGTERM)
    }

    /// Kills daemon `name` (SIGKILL), as a crash.
    pub fn kill_node(&mut self, name: &str) -> Result<()> {
        self.signal(name, nix::sys::signal::Signal::SIGKILL)
    }

    /// The last lines of a daemon's log.
    pub fn log_tail(&self, name: &str) -> String {
        let log =
            std::fs::read_to_string(self.path().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Every daemon's log tail, for failure messages.
    pub fn logs(&self) -> String {
        self.daemons
            .keys()
            .map(|n| format!("--- {n}.log\n{}", self.log_tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes through the device without root: `wdevc workload` with `args` (its one
    /// line of statistics on stdout, errors on stderr).
    pub fn workload(&self, args: &[&str]) -> Result<Child> {
        self.workload_on(0, args)
    }

    /// [`Cluster::workload`] on the device of storage `i`.
    pub fn workload_on(&self, i: usize, args: &[&str]) -> Result<Child> {
        let mut c = bin("wdevc");
        self.env(&mut c);
        c.arg("workload")
            .arg(self.wdevs.get(i).unwrap_or(&self.wdev))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(c.spawn()?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in self.daemons.values_mut() {
            if let Some(c) = d.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Unmounted once no daemon holds them, before the directory goes.
        self.small_fs.clear();
        if self.device_up {
            for wdev in self.wdevs.clone() {
                let _ = self.wdevc(&["delete-wdev", &wdev, "--force"]);
            }
        }
    }
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

impl Cluster {
    /// SHA-256 of the live device (root: through its block device).
    pub fn device_sha256(&self) -> Result<String> {
        self.device_sha256_of(0)
    }

    /// SHA-256 of the live device of storage `i`.
    pub fn device_sha256_of(&self, i: usize) -> Result<String> {
        let p = self.wdev_path_of(i);
        if !p.exists() {
            bail!("the device has no block device here (needs root)");
        }
        sha256_file(&p)
    }

    /// Restores `gid` on `archive`, hashes the restored image, deletes it.
    pub fn restored_sha256(&self, archive: &str, gid: u64) -> Result<String> {
        self.restored_sha256_vol(archive, VOL, gid)
    }

    /// [`Cluster::restored_sha256`] of volume `vol`.
    pub fn restored_sha256_vol(&self, archive: &str, vol: &str, gid: u64) -> Result<String> {
        let g = gid.to_string();
        self.exec_ok(&["restore", archive, vol, &g])?;
        let path = self.exec_ok(&["restored-path", archive, vol, &g])?;
        let path = PathBuf::from(path.trim());
        let sha = sha256_file(&path)?;
        self.exec_ok(&["del-restored", archive, vol, &g])?;
        Ok(sha)
    }

    /// Takes a snapshot that must become restorable on a0; returns its gid.
    pub fn snapshot(&self) -> Result<u64> {
        self.snapshot_at(&["a0"])
    }

    /// Takes a snapshot that must become restorable on each of `archives`; returns its
    /// gid.
    pub fn snapshot_at(&self, archives: &[&str]) -> Result<u64> {
        self.snapshot_vol("s0", VOL, archives)
    }

    /// Takes a snapshot of `vol` on `storage` that must become restorable on each of
    /// `archives`; returns its gid.
    pub fn snapshot_vol(&self, storage: &str, vol: &str, archives: &[&str]) -> Result<u64> {
        let mut args = vec!["snapshot", storage, vol, "--timeout", "120"];
        args.extend(archives);
        let out = self.exec_ok(&args)?;
        last_number(&out).with_context(|| format!("no gid in {out:?}"))
    }

    /// `restorable ARCHIVE vol`: its lines (gid, time, explicit).
    pub fn restorable_lines(&self, archive: &str) -> Result<Vec<String>> {
        Ok(self
            .exec_ok(&["restorable", archive, VOL])?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// The gids `archive` lists as restorable (explicit snapshots).
    pub fn restorable_gids(&self, archive: &str) -> Result<Vec<u64>> {
        self.restorable_gids_vol(archive, VOL)
    }

    /// The gids `archive` lists as restorable for `vol` (explicit snapshots).
    pub fn restorable_gids_vol(&self, archive: &str, vol: &str) -> Result<Vec<u64>> {
        Ok(self
            .exec_ok(&["restorable", archive, vol])?
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect())
    }

    /// The device equals the restored image of `gid` at a0.
    pub fn assert_restore_equals_device(&self, gid: u64) -> Result<()> {
        let dev = self.device_sha256()?;
        let img = self.restored_sha256("a0", gid)?;
        if dev != img {
            bail!("restored gid {gid} differs from the device: {img} != {dev}");
        }
        Ok(())
    }

    /// `init-storage` and a full backup, as the tutorial does; returns the gid the
    /// backup is clean at.
    pub fn init_and_full_backup(&self) -> Result<u64> {
        let wdev = self.wdev_path().display().to_string();
        self.exec_ok(&["init-storage", "s0", VOL, &wdev])?;
        self.exec_ok(&["stop", "s0", VOL])?;
        let out = self.exec_ok(&["full-backup", "s0", VOL])?;
        last_number(&out).with_context(|| format!("no gid in {out:?}"))
    }

    /// Writes `count` random IOs of up to `max_io` through the device, flushing every
    /// 50 ms, and waits for them.
    pub fn write(&self, count: u64, max_io: &str, seed: u64) -> Result<()> {
        self.write_on(0, count, max_io, seed)
    }

    /// [`Cluster::write`] on device `i`.
    pub fn write_on(&self, i: usize, count: u64, max_io: &str, seed: u64) -> Result<()> {
        let mut w = self.workload_on(
            i,
            &[
                "--count",
                &count.to_string(),
                "--max-io",
                max_io,
                "--flush-interval",
                "50",
                "--seed",
                &seed.to_string(),
            ],
        )?;
        let st = w.wait()?;
        if !st.success() {
            let mut err = String::new();
            if let Some(mut e) = w.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("wdevc workload failed ({st}): {err}");
        }
        Ok(())
    }

    /// The state line of `node` in `state-all`.
    pub fn state(&self, node: &str) -> Result<String> {
        self.state_of(node, VOL)
    }

    /// The state of `vol` on `node`.
    pub fn state_of(&self, node: &str, vol: &str) -> Result<String> {
        let out = self.exec_ok(&["get", node, "state", vol])?;
        Ok(out.trim().to_owned())
    }

    /// walblib's `go_standby` (`go-standby`): from Target, `storage` stops `vol` (force),
    /// its primary archive stops being synchronized, its log is reset and it starts
    /// Standby; it must end Standby.
    pub fn go_standby(&self, storage: &str, vol: &str) -> Result<()> {
        self.exec_ok(&["go-standby", storage, vol])?;
        let st = self.state_of(storage, vol)?;
        if st != "Standby" {
            bail!("{storage} {vol} is {st} after go-standby");
        }
        Ok(())
    }

    /// Whether every serving proxy sends `vol` to `archive` (`is-synchronizing`).
    pub fn is_synchronizing(&self, archive: &str, vol: &str) -> Result<bool> {
        let out = self.exec_ok(&["is-synchronizing", archive, vol])?;
        match out.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            other => bail!("is-synchronizing printed {other:?}"),
        }
    }

    /// Starts a background writer on device `i` as walb-tools' `RandomWriter`: one
    /// random 512-byte block every 50 ms, each flushed, until [`Writer::stop`].
    pub fn writer(&self, i: usize, seed: u64) -> Result<Writer> {
        let child = self.workload_on(
            i,
            &[
                "--rate",
                "20",
                "--min-io",
                "512",
                "--max-io",
                "512",
                "--flush-interval",
                "50",
                "--duration",
                "86400",
                "--seed",
                &seed.to_string(),
            ],
        )?;
        Ok(Writer {
            child: Some(child),
            dev: self.wdev_path_of(i),
        })
    }
}

/// A background writer ([`Cluster::writer`]); killed if dropped unstopped.
#[derive(Debug)]
pub struct Writer {
    child: Option<Child>,
    /// The device it writes to.
    dev: PathBuf,
}

impl Writer {
    /// Stops the writer and flushes the device (fsync of its block device, as root);
    /// fails if the writer had failed on its own (a write refused by the device). Every
    /// write it had acknowledged is on the device and permanent afterwards.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        if let Some(st) = c.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("the background writer ended on its own ({st}): {err}");
        }
        let _ = c.kill();
        c.wait()?;
        if self.dev.is_absolute() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.dev)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("flushing {}", self.dev.display()))?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {}

impl Cluster {
    /// The data device's file (the emulated device's data lives there).
    pub fn ddev_path(&self) -> PathBuf {
        self.path().join("ddev")
    }

    /// CPU seconds (user + system) used so far by each daemon and by the emulated
    /// device's process (`dev`).
    pub fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        self.pids()
            .into_iter()
            .filter_map(|(n, pid)| proc_cpu_seconds(pid).map(|s| (n, s)))
            .collect()
    }

    /// Process ids of the running daemons and of the emulated device's process (`dev`).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = self
            .daemons
            .iter()
            .filter_map(|(n, d)| d.child.as_ref().map(|c| (n.clone(), c.id())))
            .collect();
        let pidf = self.path().join("emu").join(format!("{}.pid", self.wdev));
        if let Some(p) = std::fs::read_to_string(pidf)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            pids.push(("dev".into(), p));
        }
        pids
    }

    /// The process id of daemon `name`, while it runs.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        self.pids()
            .into_iter()
            .find_map(|(n, p)| (n == name).then_some(p))
    }

    /// Moves daemon `name`'s base directory onto an ext4 of `mib` MiB of its own (stopped,
    /// mounted, restarted; needs root), for disk-full drills ([`Cluster::small_fs`]).
    pub fn put_on_small_fs(&mut self, name: &str, mib: u64) -> Result<()> {
        self.stop_node(name)?;
        let image = self.path().join(format!("{name}.ext4"));
        let fs = smallfs::SmallFs::mount(&self.base_of(name), &image, mib)?;
        self.small_fs.insert(name.into(), fs);
        self.start_node(name)
    }

    /// The small file system under daemon `name`'s base directory.
    pub fn small_fs(&self, name: &str) -> Result<&smallfs::SmallFs> {
        self.small_fs
            .get(name)
            .with_context(|| format!("{name} is not on a small file system"))
    }

    /// The base directory of daemon `name`.
    pub fn base_of(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// Issues a certificate for `role`/`id` with the cluster's CA into its certificate
    /// directory (an identity the cluster file does not know, for hostile peers).
    pub fn issue(&self, role: Role, id: &str) -> Result<()> {
        let certs = self.path().join("certs");
        let ca = ClusterCa::load(&certs)?;
        let peer = PeerId::new(role, id)?;
        ca.issue(&peer, &IssueOptions::default())?
            .save(&certs, false)?;
        Ok(())
    }

    /// A client with the operator's certificate.
    pub fn operator(&self) -> Result<Operator> {
        self.wire_client(Role::Operator, "console")
    }

    /// A client with the certificate of `role` `id` from the cluster's certificate
    /// directory (a proxy's, to speak to an archive as that proxy does).
    pub fn wire_client(&self, role: Role, id: &str) -> Result<Operator> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let me = PeerId::new(role, id)?;
        let files = walb_wire::TlsFiles::in_dir(&self.path().join("certs"), &me);
        let cfg = walb_wire::NodeConfig::new("127.0.0.1:0".parse()?, false);
        let node = {
            let _g = rt.enter();
            walb_wire::Node::bind(cfg, files)?
        };
        Ok(Operator {
            rt,
            node,
            ports: self.ports.clone(),
        })
    }
}

/// An operator's connection to the cluster's daemons (one QUIC connection per daemon,
/// reused), for fast polls.
pub struct Operator {
    rt: tokio::runtime::Runtime,
    node: walb_wire::Node,
    ports: BTreeMap<String, u16>,
}

impl Operator {
    /// Sends `req` to daemon `name` and returns its reply (a refusal is an error).
    pub fn request(&self, name: &str, req: walb_wire::Request) -> Result<walb_wire::Reply> {
        let port = *self
            .ports
            .get(name)
            .with_context(|| format!("no node {name}"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        self.rt.block_on(async {
            let peer = self.node.connect(addr).await?;
            let r = tokio::time::timeout(Duration::from_secs(30), peer.request(req))
                .await
                .context("no answer within 30 s")??;
            anyhow::Ok(r)
        })
    }

    /// Sends one wdiff file to archive `name` as a proxy does (wdiff transfer: the
    /// request, the file as chunks, the end of the bulk, the archive's `Ack`). `None` once
    /// the archive acknowledged it, the code of its refusal of the request otherwise.
    pub fn send_wdiff(
        &self,
        name: &str,
        transfer: walb_wire::msg::WdiffTransfer,
        wdiff: &[u8],
    ) -> Result<Option<walb_wire::ErrorCode>> {
        let port = *self
            .ports
            .get(name)
            .with_context(|| format!("no node {name}"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        self.rt.block_on(async {
            let peer = self.node.connect(addr).await?;
            let send = async {
                let mut call = peer
                    .call(walb_wire::Request::WdiffTransfer(transfer))
                    .await?;
                match call.receiver.reply().await {
                    Ok(walb_wire::Reply::Accepted) => {}
                    Ok(other) => bail!("the wdiff transfer was answered {other:?}"),
                    Err(e) => match e.remote_code() {
                        Some(code) => return Ok(Some(code)),
                        None => return Err(e.into()),
                    },
                }
                for c in wdiff.chunks(1 << 20) {
                    call.sender.chunk(c).await?;
                }
                call.sender.end_bulk().await?;
                let step = call.receiver.step().await?;
                if step != walb_wire::Step::Ack {
                    bail!("the archive answered the wdiff with {step:?}, not Ack");
                }
                call.sender.finish()?;
                anyhow::Ok(None)
            };
            tokio::time::timeout(Duration::from_secs(60), send)
                .await
                .context("the wdiff transfer did not end within 60 s")?
        })
    }

    /// The state of `vol` on daemon `name`.
    pub fn state(&self, name: &str, vol: &str) -> Result<String> {
        let q = walb_wire::Request::Query(walb_wire::msg::Query::State { vol: vol.into() });
        match self.request(name, q)? {
            walb_wire::Reply::Text(t) => Ok(t),
            other => bail!("state of {vol} on {name}: unexpected reply {other:?}"),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.rt.block_on(self.node.close());
    }
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
