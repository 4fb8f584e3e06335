//! The chaos cluster: who exists ([`Topology`], pure) and the running processes
//! ([`World`]).
//!
//! Storages s0, s1... (at least two, at least three volumes each), proxies p0 and p1,
//! archives a0 (every storage's) and a1 (the replication target). Every volume `vI` has
//! its own emulated device `cwI` (a device process serving its control socket only: no
//! FUSE file, no loop device, so a SIGKILLed device process is restarted by running
//! `create-wdev` again). Relays ([`Repeater`]) sit on every storage → proxy link
//! (`sI-pJ`), in front of a0 (`to-a0`: the proxies' and the storages' link to it) and in
//! front of a1 (`to-a1`: a0's replication to it and the proxies' synchronization). The
//! console reaches every daemon directly (`cluster.toml`), except for the operations that
//! hand an archive's address to a peer (full and hash backups, replication,
//! synchronization), which read `peers.toml`, where the archives are their relays: so
//! whatever the console configures, peers talk through the relays. As root, the base
//! directories of the proxies and archives are small ext4 file systems on loop devices,
//! which a fault fills.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use walb_console::cluster::{CertsSection, ClusterFile, NodeSection};
use walb_console::lab::launch::{self, DaemonSpec, DeviceSpec};
use walb_device::control::DeviceClient;
use walb_wire::{PeerId, Role};

use crate::cluster::role_of_name;
use crate::repeater::Repeater;
use crate::{bin, check, free_port};

/// Data device size of each volume, MiB.
pub const DDEV_MB: u64 = 16;
/// Log device size of each volume, MiB.
pub const LDEV_MB: u64 = 8;

/// The archives' maintenance policy: apply what is older than five minutes, every minute
/// (and no retention: the model expects every explicit snapshot of the last five minutes).
pub const APPLY_POLICY: &[&str] = &[
    "--apply-keep",
    "5m",
    "--apply-interval",
    "1m",
    "--retention",
    "off",
];

/// The names of a run's nodes, volumes and links (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Volumes in all.
    pub volumes: usize,
    /// Storages (volume `i` lives on storage `i % storages`).
    pub storages: usize,
}

impl Topology {
    /// At least two storages with at least three volumes each (`volumes` is raised to 6).
    pub fn new(volumes: usize) -> Topology {
        let volumes = volumes.max(6);
        Topology {
            volumes,
            storages: (volumes / 5).max(2),
        }
    }

    /// Volume `i`'s name.
    pub fn vol(&self, i: usize) -> String {
        format!("v{i}")
    }

    /// Volume `i`'s device name.
    pub fn dev(&self, i: usize) -> String {
        format!("cw{i}")
    }

    /// The storage of volume `i`.
    pub fn storage_of(&self, i: usize) -> String {
        format!("s{}", i % self.storages)
    }

    /// Proxies, in every storage's priority order.
    pub fn proxies(&self) -> Vec<String> {
        vec!["p0".into(), "p1".into()]
    }

    /// Archives: a0 (primary), a1 (replica).
    pub fn archives(&self) -> Vec<String> {
        vec!["a0".into(), "a1".into()]
    }

    /// Every daemon.
    pub fn nodes(&self) -> Vec<String> {
        let mut n: Vec<String> = (0..self.storages).map(|i| format!("s{i}")).collect();
        n.extend(self.proxies());
        n.extend(self.archives());
        n
    }

    /// Every relayed link.
    pub fn links(&self) -> Vec<String> {
        let mut l = Vec::new();
        for s in 0..self.storages {
            for p in self.proxies() {
                l.push(format!("s{s}-{p}"));
            }
        }
        l.push("to-a0".into());
        l.push("to-a1".into());
        l
    }

    /// The links from storage `s` to its proxies.
    pub fn storage_links(&self, s: &str) -> Vec<String> {
        self.proxies().iter().map(|p| format!("{s}-{p}")).collect()
    }

    /// Nodes whose base directory is a small file system of its own (root only).
    pub fn disk_nodes(&self) -> Vec<String> {
        let mut n = self.proxies();
        n.extend(self.archives());
        n
    }
}

/// One daemon process.
#[derive(Debug)]
struct Daemon {
    bin: &'static str,
    args: Vec<OsString>,
    child: Option<Child>,
}

/// A small loop-mounted ext4 file system holding one node's base directory.
#[derive(Debug)]
struct SmallFs {
    mnt: PathBuf,
    loop_dev: String,
}

/// The running cluster (torn down on drop unless kept).
pub struct World {
    /// The names.
    pub topo: Topology,
    dir: PathBuf,
    keep: bool,
    ports: BTreeMap<String, u16>,
    daemons: BTreeMap<String, Daemon>,
    relays: BTreeMap<String, Repeater>,
    disks: BTreeMap<String, SmallFs>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("dir", &self.dir)
            .field("ports", &self.ports)
            .finish()
    }
}

impl World {
    /// Certificates, devices, file systems, relays and daemons in `dir` (created).
    pub fn start(topo: Topology, dir: PathBuf) -> Result<World> {
        std::fs::create_dir_all(&dir)?;
        let mut w = World {
            topo,
            dir,
            keep: false,
            ports: BTreeMap::new(),
            daemons: BTreeMap::new(),
            relays: BTreeMap::new(),
            disks: BTreeMap::new(),
        };
        w.certs()?;
        for n in w.topo.nodes() {
            w.ports.insert(n, free_port());
        }
        for link in w.topo.links() {
            let target = match link.as_str() {
                "to-a0" => "a0".to_string(),
                "to-a1" => "a1".to_string(),
                l => l.rsplit('-').next().unwrap_or("p0").to_string(),
            };
            let port = w.ports.get(&target).copied().unwrap_or(0);
            let r = Repeater::start(format!("127.0.0.1:{port}").parse()?)?;
            w.relays.insert(link, r);
        }
        w.cluster_files()?;
        for i in 0..w.topo.volumes {
            w.create_device(i)?;
        }
        if crate::is_root() {
            for n in w.topo.disk_nodes() {
                // Sized for the volumes: an archive holds each base image, a restore at
                // a time and the diffs of [`APPLY_POLICY`]'s window (the writers send about
                // 14 MB a minute per volume at their default rate: six minutes of it).
                let per_vol = if n.starts_with('a') { 256 } else { 40 };
                let mb = (w.topo.volumes as u64 * per_vol).max(256);
                w.small_fs(&n, mb)?;
            }
        }
        w.define_daemons();
        let order: Vec<String> = {
            let mut o = w.topo.archives();
            o.extend(w.topo.proxies());
            o.extend((0..w.topo.storages).map(|i| format!("s{i}")));
            o
        };
        for n in order {
            w.start_node(&n)?;
        }
        Ok(w)
    }

    /// Keeps the directory (and leaves it) when dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The run's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn certs(&self) -> Result<()> {
        let certs = self.dir.join("certs");
        std::fs::create_dir_all(&certs)?;
        let mut peers = vec![PeerId::new(Role::Operator, "console")?];
        for n in self.topo.nodes() {
            peers.push(PeerId::new(role_of_name(&n)?, &n)?);
        }
        launch::ensure_certs(&certs, "walb-chaos", &peers)?;
        Ok(())
    }

    fn addr(&self, node: &str) -> String {
        format!("127.0.0.1:{}", self.ports.get(node).copied().unwrap_or(0))
    }

    fn relay_addr(&self, link: &str) -> String {
        self.relays
            .get(link)
            .map(|r| r.addr().to_string())
            .unwrap_or_default()
    }

    /// `cluster.toml` (direct) and `peers.toml` (archives through their relays).
    fn cluster_files(&self) -> Result<()> {
        let proxies = self.topo.proxies();
        for (file, relayed) in [("cluster.toml", false), ("peers.toml", true)] {
            let mut nodes = Vec::new();
            for s in 0..self.topo.storages {
                let s = format!("s{s}");
                nodes.push(
                    NodeSection::new(&s, Role::Storage, &self.addr(&s))
                        .backing_up_to("a0", &proxies),
                );
            }
            for p in &proxies {
                nodes.push(NodeSection::new(p, Role::Proxy, &self.addr(p)));
            }
            for a in self.topo.archives() {
                let addr = if relayed {
                    self.relay_addr(&format!("to-{a}"))
                } else {
                    self.addr(&a)
                };
                nodes.push(NodeSection::new(&a, Role::Archive, &addr));
            }
            ClusterFile {
                name: "chaos".into(),
                certs: CertsSection::in_dir(Path::new("certs"), "console"),
                nodes,
            }
            .save(&self.dir.join(file))?;
        }
        Ok(())
    }

    fn define_daemons(&mut self) {
        // Each base directory is on the node's own small file system, mounted at NAME/.
        let spec = |w: &World, id: &str, role: Role| {
            let mut d = DaemonSpec::in_dir(&w.dir, id, role, &w.addr(id));
            d.base = w.dir.join(id).join("base");
            d.with(["--step-timeout", "20"])
        };
        let mut defs = Vec::new();
        for a in self.topo.archives() {
            // As an operator runs them: diffs older than five minutes applied into the base,
            // so an hour of writes fits the archives' small file systems (without it a0's
            // filled in 35 minutes and every volume stopped behind it).
            defs.push(spec(self, &a, Role::Archive).with(APPLY_POLICY));
        }
        for p in self.topo.proxies() {
            defs.push(spec(self, &p, Role::Proxy));
        }
        for s in 0..self.topo.storages {
            let s = format!("s{s}");
            let proxies: Vec<String> = self
                .topo
                .proxies()
                .iter()
                .map(|p| format!("{p}@{}", self.relay_addr(&format!("{s}-{p}"))))
                .collect();
            let archive = format!("a0@{}", self.relay_addr("to-a0"));
            defs.push(
                spec(self, &s, Role::Storage)
                    .dialling(archive, proxies)
                    .with(["--snapshot-interval", "1"]),
            );
        }
        for d in defs {
            self.daemons.insert(
                d.name.clone(),
                Daemon {
                    bin: d.binary(),
                    args: d.args(),
                    child: None,
                },
            );
        }
    }

    /// Environment of every process of the run.
    fn env(&self, c: &mut Command) {
        c.env("WALB_EMU_DIR", self.dir.join("emu"))
            .env("WALB_DEV_DIR", self.dir.join("dev"))
            .env("WALB_LOG", "info");
    }

    /// Runs `wdevc ARGS`.
    pub fn wdevc<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Output> {
        let mut c = bin("wdevc");
        self.env(&mut c);
        Ok(c.args(args).output()?)
    }

    /// Runs `walb-console --exec ARGS` with the direct cluster file (`peers`: the one
    /// whose archives are their relays).
    pub fn console(&self, peers: bool, args: &[&str]) -> Result<Output> {
        let mut c = bin("walb-console");
        self.env(&mut c);
        let file = if peers { "peers.toml" } else { "cluster.toml" };
        c.arg("--cluster")
            .arg(self.dir.join(file))
            .arg("--exec")
            .args(args)
            .stdin(Stdio::null());
        Ok(c.output()?)
    }

    /// [`World::console`] that fails with the command's output unless it succeeded.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        self.exec_with(false, args)
    }

    /// [`World::exec`] through `peers.toml`.
    pub fn exec_peers(&self, args: &[&str]) -> Result<String> {
        self.exec_with(true, args)
    }

    fn exec_with(&self, peers: bool, args: &[&str]) -> Result<String> {
        let out = self.console(peers, args)?;
        check(&out, &args.join(" "))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    // ---- devices

    fn dev_files(&self, i: usize) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("ldev{i}")),
            self.dir.join(format!("ddev{i}")),
        )
    }

    /// Volume `i`'s emulated device: its control socket only.
    fn device_spec(&self, i: usize) -> DeviceSpec {
        let (ldev, ddev) = self.dev_files(i);
        DeviceSpec {
            name: self.topo.dev(i),
            ldev,
            ddev,
            emulate: true,
            no_block: true,
        }
    }

    fn create_device(&self, i: usize) -> Result<()> {
        let dev = self.device_spec(i);
        for (f, mb) in [(&dev.ldev, LDEV_MB), (&dev.ddev, DDEV_MB)] {
            std::fs::File::create(f)?.set_len(mb << 20)?;
        }
        check(&self.wdevc(&dev.format_args())?, "wdevc format-ldev")?;
        self.start_device(i)
    }

    /// Starts (or restarts, redoing its log) the device process of volume `i`.
    pub fn start_device(&self, i: usize) -> Result<()> {
        let out = self.wdevc(&self.device_spec(i).create_args())?;
        check(&out, "wdevc create-wdev")
    }

    /// The control socket of volume `i`'s device.
    pub fn device_socket(&self, i: usize) -> PathBuf {
        self.dir
            .join("emu")
            .join(format!("{}.sock", self.topo.dev(i)))
    }

    /// A control connection to volume `i`'s device.
    pub fn device(&self, i: usize) -> Result<DeviceClient> {
        Ok(DeviceClient::connect(&self.device_socket(i))?)
    }

    /// The process id of volume `i`'s device process.
    pub fn device_pid(&self, i: usize) -> Option<i32> {
        let p = self
            .dir
            .join("emu")
            .join(format!("{}.pid", self.topo.dev(i)));
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// SIGKILLs volume `i`'s device process and waits until it is gone.
    pub fn kill_device(&self, i: usize) -> Result<()> {
        let pid = self.device_pid(i).context("no pid file of the device")?;
        kill_and_wait(pid)
    }

    /// Grows volume `i`'s data device file to `bytes`.
    pub fn grow_ddev(&self, i: usize, bytes: u64) -> Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dev_files(i).1)?;
        if f.metadata()?.len() < bytes {
            f.set_len(bytes)?;
        }
        Ok(())
    }

    // ---- daemons

    /// (Re)starts daemon `name` and waits until it answers.
    pub fn start_node(&mut self, name: &str) -> Result<()> {
        let d = self.daemons.get(name).context("no such node")?;
        let mut cmd = bin(d.bin);
        cmd.args(&d.args).stdin(Stdio::null());
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        self.env(&mut cmd);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.daemons
            .entry(name.into())
            .and_modify(|d| d.child = Some(child));
        let t0 = Instant::now();
        while !self
            .console(false, &["get", name, "host-type"])?
            .status
            .success()
        {
            if !self.is_up(name) {
                bail!("{name} exited at start:\n{}", self.log_tail(name, 30));
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("{name} does not answer 60 s after its start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGKILLs daemon `name` and reaps it.
    pub fn kill_node(&mut self, name: &str) -> Result<()> {
        let d = self.daemons.get_mut(name).context("no such node")?;
        if let Some(mut c) = d.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Whether daemon `name` runs.
    pub fn is_up(&mut self, name: &str) -> bool {
        self.daemons
            .get_mut(name)
            .and_then(|d| d.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The base directory of `node`.
    pub fn base_of(&self, node: &str) -> PathBuf {
        self.dir.join(node).join("base")
    }

    /// The last `n` lines of daemon `name`'s log.
    pub fn log_tail(&self, name: &str, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    // ---- links

    /// The relay of `link`.
    pub fn relay(&self, link: &str) -> Result<&Repeater> {
        self.relays
            .get(link)
            .with_context(|| format!("no relay on {link}"))
    }

    /// Every link back to full speed.
    pub fn heal_all(&self) {
        for r in self.relays.values() {
            r.cut(false);
            r.set_rate(0);
        }
    }

    // ---- small file systems

    fn small_fs(&mut self, node: &str, mb: u64) -> Result<()> {
        let tools = ["mkfs.ext4", "losetup", "mount", "umount", "fallocate"];
        if !crate::tools::require("a chaos run's full disks", &tools) {
            bail!("full disks need {}", tools.join(", "));
        }
        let img = self.dir.join(format!("fs-{node}.img"));
        std::fs::File::create(&img)?.set_len(mb << 20)?;
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&img)
            .output()?;
        check(&out, "mkfs.ext4")?;
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img)
            .output()?;
        check(&out, "losetup")?;
        let loop_dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mnt = self.dir.join(node);
        std::fs::create_dir_all(&mnt)?;
        let out = Command::new("mount").arg(&loop_dev).arg(&mnt).output()?;
        if let Err(e) = check(&out, "mount") {
            let _ = Command::new("losetup").arg("-d").arg(&loop_dev).output();
            return Err(e);
        }
        self.disks.insert(node.into(), SmallFs { mnt, loop_dev });
        Ok(())
    }

    /// Whether `node`'s base directory is on a small file system of its own.
    pub fn has_small_fs(&self, node: &str) -> bool {
        self.disks.contains_key(node)
    }

    fn filler(&self, node: &str) -> Option<PathBuf> {
        self.disks.get(node).map(|d| d.mnt.join("filler"))
    }

    /// Fills `node`'s file system but for a few blocks; the bytes allocated.
    pub fn fill_disk(&self, node: &str) -> Result<u64> {
        let d = self.disks.get(node).context("no small file system")?;
        let st = nix::sys::statvfs::statvfs(&d.mnt)?;
        let free = st.blocks_available() * st.fragment_size();
        let len = free.saturating_sub(64 << 10);
        let f = self.filler(node).context("no filler")?;
        let out = Command::new("fallocate")
            .args(["-l", &len.to_string()])
            .arg(&f)
            .output()?;
        check(&out, "fallocate")?;
        Ok(len)
    }

    /// Removes the filler of `node`'s file system.
    pub fn free_disk(&self, node: &str) -> Result<()> {
        if let Some(f) = self.filler(node) {
            if f.exists() {
                std::fs::remove_file(f)?;
            }
        }
        Ok(())
    }
}

/// SIGKILLs a process that is not our child and waits until it is gone (or a zombie).
fn kill_and_wait(pid: i32) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    kill(p, Signal::SIGKILL)?;
    let t0 = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("process {pid} still runs 30 s after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for d in self.daemons.values_mut() {
            if let Some(c) = d.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for i in 0..self.topo.volumes {
            if let Some(pid) = self.device_pid(i) {
                let _ = kill_and_wait(pid);
            }
        }
        for d in self.disks.values() {
            let _ = Command::new("umount").arg(&d.mnt).output();
            let _ = Command::new("losetup").arg("-d").arg(&d.loop_dev).output();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
