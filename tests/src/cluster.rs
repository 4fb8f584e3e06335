//! A test cluster's making and its daemons: certificates, devices, the cluster file,
//! relays and small file systems, and each daemon's start, stop, kill and restart (built
//! through the lab's launcher, [`walb_console::lab::launch`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{bin, check, free_port, repeater, smallfs};
use anyhow::{bail, Context, Result};
use walb_console::cluster::{CertsSection, ClusterFile, NodeSection};
use walb_console::lab::launch::{self, DaemonSpec, DeviceSpec};
use walb_wire::{PeerId, Role};

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
    /// Run the archives' default retention. Off unless asked (`--retention off`): the
    /// scenarios check walb-tools' behaviour, where nothing merges or applies by itself
    /// (`tests/retention.rs` runs it).
    pub retention: bool,
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

impl ClusterOpts {
    /// Every node with its role, in the cluster file's order: storages, archives,
    /// proxies, then the spares.
    fn nodes(&self) -> Result<Vec<(Role, String)>> {
        let names =
            |prefix: &'static str, n: usize| (0..n.max(1)).map(move |i| format!("{prefix}{i}"));
        let mut nodes: Vec<(Role, String)> = Vec::new();
        nodes.extend(names("s", self.storages).map(|s| (Role::Storage, s)));
        nodes.extend(names("a", self.archives).map(|a| (Role::Archive, a)));
        nodes.extend(names("p", self.proxies).map(|p| (Role::Proxy, p)));
        for s in &self.spares {
            if nodes.iter().any(|(_, n)| n == s) {
                bail!("spare {s} is already a node of the cluster");
            }
            nodes.push((role_of_name(s)?, s.clone()));
        }
        Ok(nodes)
    }
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
            retention: false,
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
pub(crate) struct Daemon {
    bin: &'static str,
    args: Vec<OsString>,
    pub(crate) child: Option<Child>,
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
    pub(crate) daemons: BTreeMap<String, Daemon>,
    /// Node name → port.
    pub ports: BTreeMap<String, u16>,
    device_up: bool,
    /// Relays between nodes, by link name (`s0-p0`).
    repeaters: BTreeMap<String, repeater::Repeater>,
    /// Small file systems under base directories, by node ([`Cluster::put_on_small_fs`]).
    pub(crate) small_fs: BTreeMap<String, smallfs::SmallFs>,
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
pub(crate) fn role_of_name(name: &str) -> Result<Role> {
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
        let nodes = opts.nodes()?;
        let peers = nodes
            .iter()
            .chain(std::iter::once(&(Role::Operator, "console".to_string())))
            .map(|(role, id)| PeerId::new(*role, id))
            .collect::<Result<Vec<_>, _>>()?;
        launch::ensure_certs(&d.join("certs"), "walb-e2e", &peers)?;
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
            wdevs: (0..opts.storages.max(1).max(opts.devices))
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
                proxies: (0..opts.proxies.max(1)).map(|i| format!("p{i}")).collect(),
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
        c.launch_all(&opts)?;
        Ok(c)
    }

    /// Defines every daemon and starts those that are not spares: archives first, then
    /// proxies, then storages, so that each finds what it dials running.
    fn launch_all(&mut self, opts: &ClusterOpts) -> Result<()> {
        let c = self;
        let rank = |r: Role| match r {
            Role::Archive => 0,
            Role::Proxy => 1,
            _ => 2,
        };
        let mut order = c.nodes.clone();
        order.sort_by_key(|(r, _)| rank(*r));
        for (role, name) in order {
            let args = match role {
                Role::Archive => {
                    let off = ["--retention", "off"];
                    let off: &[&str] = if opts.retention { &[] } else { &off };
                    c.daemon(&name, role)
                        .with(off.iter().copied())
                        .with(&opts.archive_args)
                        .args()
                }
                Role::Proxy => c.daemon(&name, role).with(&opts.proxy_args).args(),
                _ => c.storage_args(&name),
            };
            let bin = launch::binary_of(role);
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
        Ok(())
    }

    /// `127.0.0.1:PORT` of node `n`.
    fn addr(&self, n: &str) -> String {
        format!("127.0.0.1:{}", self.ports.get(n).copied().unwrap_or(0))
    }

    /// Daemon `id` of `role` as the lab launches it, in this cluster's directory.
    fn daemon(&self, id: &str, role: Role) -> DaemonSpec {
        DaemonSpec::in_dir(self.path(), id, role, &self.addr(id))
    }

    /// The command line of storage `id` under the current layout: the archive and
    /// proxies it dials as `ID@HOST:PORT` (s0 through its relays, if any).
    fn storage_args(&self, id: &str) -> Vec<OsString> {
        let dial = |n: &str| {
            let via = (id == "s0").then(|| self.s0_via.get(n)).flatten();
            format!("{n}@{}", via.cloned().unwrap_or_else(|| self.addr(n)))
        };
        let proxies: Vec<String> = self.layout.proxies.iter().map(|p| dial(p)).collect();
        self.daemon(id, Role::Storage)
            .dialling(dial(&self.layout.archive), proxies)
            .with(&self.storage_extra)
            .args()
    }

    /// Writes the cluster file: the nodes deployed so far, every storage in the layout's
    /// backup group.
    fn write_cluster_file(&self) -> Result<()> {
        let nodes = self
            .nodes
            .iter()
            .filter(|(_, n)| self.in_file.contains(n))
            .map(|(role, n)| {
                let node = NodeSection::new(n, *role, &self.addr(n));
                match role {
                    Role::Storage => node.backing_up_to(&self.layout.archive, &self.layout.proxies),
                    _ => node,
                }
            })
            .collect();
        ClusterFile {
            name: "e2e".into(),
            certs: CertsSection::in_dir(Path::new("certs"), "console"),
            nodes,
        }
        .save(&self.path().join("cluster.toml"))?;
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
        let dev = DeviceSpec {
            name: self.wdevs[i].clone(),
            ldev,
            ddev,
            emulate: true,
            no_block: false,
        };
        check(&self.wdevc(&dev.format_args())?, "wdevc format-ldev")?;
        check(&self.wdevc(&dev.create_args())?, "wdevc create-wdev")?;
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
    pub fn wdevc<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Output> {
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
