//! `walb-console lab`: the tutorial's cluster on one machine, in one command.
//!
//! `lab up` makes a directory (default `~/.local/share/walb/lab`) holding everything:
//!
//! ```text
//! lab.toml            the lab's settings (ports, volume, device), reused by later commands
//! cluster.toml        the cluster file (the console finds it when no other exists)
//! certs/              cluster CA, storage-s0, proxy-p0, archive-a0, archive-a1, operator-console
//! dev/ldev.img        the WalB log device image      dev/ddev.img  the data device image
//! s0/ p0/ a0/ a1/     the daemons' base directories
//! NODE.log NODE.out   each daemon's log, and its stdout/stderr
//! NODE.pid            each daemon's pid
//! ```
//!
//! The log device is sized against the data device ([`log_mb_for`]): by default it holds
//! the whole device and half again, so that a first burst which rewrites every block
//! (`mkfs`, then a copy that fills the file system, with the journal's second copy of the
//! metadata) fits in the log even before the storage has shipped any of it.
//!
//! s0 sends at most a quarter of the log per transfer ([`send_mb_for`]), so that a longer
//! burst frees the log in steps while it is still being written.
//!
//! `add-node ROLE NAME` ([`add`]) grows the running lab by one daemon; the nodes it added
//! are kept in `lab.toml` and come back with `up`, `start` and `status` like the others.
//!
//! It formats the device images with `wdevc format-ldev`, runs an emulated WalB device
//! (`wdevc create-wdev --emulate`; as root it appears as `/dev/walb/NAME`, otherwise only
//! its control socket, written to with `wdevc workload`), starts walb-storage s0 on
//! 127.0.0.1:10000, walb-proxy p0 on :10100, walb-archive a0 on :10200 and a second
//! walb-archive a1 on :10201 (the tutorial's replication target: in the cluster file, not
//! in s0's backup group), waits until each answers, then runs init-storage and
//! full-backup of volume `vol` like the tutorial.
//! Running `up` again resumes whatever is missing (a stopped daemon, the device, the
//! backup). `down` shuts the daemons down (SIGKILL after a timeout) and deletes the
//! device; `--purge` removes the directory.
//!
//! Binaries (walb-storage, walb-proxy, walb-archive, wdevc) are found next to the
//! walb-console executable first, then on `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;
use walb_wire::files::{self, Place};
use walb_wire::{PeerId, Role};

use crate::client::{Client, ClientError, ClientOptions};
use crate::cluster::{self, CertsSection, Cluster, ClusterFile, NodeSection};
use crate::ops;

pub mod add;
mod daemons;
mod device;
pub mod launch;

use daemons::signal;
use daemons::wait_exit;
pub use daemons::{find_binary, live_pid, spawn_daemon, start_node, stop_node, wait_answering};
pub use device::ensure_device;
use device::loops_of;
use device::run;
use device::running_devices;

/// Why a lab command failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file or directory operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A program is nowhere to be found.
    #[error("cannot find {name} next to walb-console ({}) nor on PATH (build the workspace, or pass --bin-dir)", .beside.display())]
    NoBinary {
        /// The program.
        name: String,
        /// Where walb-console is.
        beside: PathBuf,
    },
    /// A program failed.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// A daemon did not come up.
    #[error("{node} did not come up: {why} (log: {})", .log.display())]
    NotUp {
        /// The node.
        node: String,
        /// What happened.
        why: String,
        /// Its log.
        log: PathBuf,
    },
    /// A talk with a daemon failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A cluster-file problem.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// Certificates could not be made.
    #[error("certificates: {0}")]
    Certs(#[from] walb_wire::certs::CertError),
    /// Anything else, explained.
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// The lab's settings, kept in `lab.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// Address the daemons listen on.
    pub host: String,
    /// Storage port; the proxy listens on +100, the archives on +200 (a0) and +201 (a1).
    pub port_base: u16,
    /// The volume.
    pub vol: String,
    /// The WalB device's name.
    pub device: String,
    /// Data device size, MiB.
    pub size_mb: u64,
    /// Log device size, MiB (by default [`log_mb_for`] the data device).
    pub log_mb: u64,
    /// Emulated device without a block device or FUSE file (control socket only).
    pub no_block: bool,
    /// Run the device on the WalB kernel driver (root, module loaded) instead of the
    /// userspace emulator.
    #[serde(default)]
    pub driver: bool,
    /// Log device to use instead of `dev/ldev.img` (a block device such as an LVM volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldev: Option<PathBuf>,
    /// Data device to use instead of `dev/ddev.img`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddev: Option<PathBuf>,
    /// Where the programs are (`--bin-dir` of `up`), if not beside walb-console or on
    /// PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// Daemons added to the running lab with `lab add-node`, in the order added.
    #[serde(default, rename = "node", skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<add::AddedNode>,
}

/// The lab's log device size for a data device of `size_mb` MiB: the whole device and
/// half again (at least 16 MiB). A burst that rewrites the device once — `mkfs`, a copy
/// that fills the file system, ext4's journal writing its metadata a second time — then
/// fits in the log even if nothing has been shipped yet; the storage ships while the
/// burst goes on, so longer bursts are survived as long as the proxy keeps up.
pub fn log_mb_for(size_mb: u64) -> u64 {
    size_mb.saturating_add(size_mb / 2).max(16)
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port_base: 10000,
            vol: "vol".into(),
            device: "walb-lab".into(),
            size_mb: 64,
            log_mb: log_mb_for(64),
            no_block: false,
            driver: false,
            ldev: None,
            ddev: None,
            bin_dir: None,
            added: Vec::new(),
        }
    }
}

/// One daemon of the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabNode {
    /// Its id.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its port's offset from the base port.
    pub port_offset: u16,
}

/// The daemons every lab has (name, role, port offset), in start order.
const BASE_NODES: [(&str, Role, u16); 4] = [
    ("a0", Role::Archive, 200),
    ("a1", Role::Archive, 201),
    ("p0", Role::Proxy, 100),
    ("s0", Role::Storage, 0),
];

/// The lab's own nodes in the order operators list them (the cluster file, `lab status`);
/// added nodes follow.
pub const LAB_LISTING: [&str; 4] = ["s0", "p0", "a0", "a1"];

/// The lab's primary archive (s0's backup group); a1 is only a replication target.
pub const LAB_PRIMARY_ARCHIVE: &str = "a0";

/// The console's certificate id in the lab.
pub const CONSOLE_ID: &str = "console";

impl LabNode {
    /// The lab's own node called `name` (s0, p0, a0 or a1).
    pub fn by_name(name: &str) -> Result<LabNode, LabError> {
        LabConfig::default().node(name)
    }

    /// The daemon's program name.
    pub fn binary(&self) -> &'static str {
        launch::binary_of(self.role)
    }

    /// `HOST:PORT`.
    pub fn addr(&self, cfg: &LabConfig) -> String {
        format!(
            "{}:{}",
            cfg.host,
            cfg.port_base.saturating_add(self.port_offset)
        )
    }
}

impl LabConfig {
    /// Every daemon of this lab in start order: archives, proxies, storages (a storage
    /// dials its archive and proxies), the lab's own before the added ones of each role.
    pub fn nodes(&self) -> Vec<LabNode> {
        let mut v = self.listing();
        let rank = |r: Role| match r {
            Role::Archive => 0,
            Role::Proxy => 1,
            _ => 2,
        };
        v.sort_by_key(|n| rank(n.role));
        v
    }

    /// Every daemon of this lab in listing order: s0, p0, a0, a1, then the added ones.
    pub fn listing(&self) -> Vec<LabNode> {
        let base = LAB_LISTING.iter().filter_map(|name| {
            BASE_NODES
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(n, role, port_offset)| LabNode {
                    name: (*n).to_owned(),
                    role: *role,
                    port_offset: *port_offset,
                })
        });
        let added = self.added.iter().filter_map(|a| a.lab_node().ok());
        base.chain(added).collect()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<LabNode, LabError> {
        let all = self.listing();
        let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
        let known = names.join(", ");
        all.iter()
            .find(|n| n.name == name)
            .cloned()
            .ok_or_else(|| LabError::Other(format!("the lab has no node {name:?} ({known})")))
    }
}

/// Paths inside a lab directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabLayout {
    /// The lab directory.
    pub dir: PathBuf,
}

impl LabLayout {
    /// The lab in `dir`, else the default directory.
    pub fn new(dir: Option<PathBuf>) -> Result<LabLayout, LabError> {
        let dir = match dir {
            Some(d) => d,
            None => cluster::default_lab_dir()
                .ok_or_else(|| LabError::Other("no home directory: pass --dir".into()))?,
        };
        let dir = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir()
                .map_err(io("finding the working directory"))?
                .join(dir)
        };
        Ok(LabLayout { dir })
    }
    /// `lab.toml`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("lab.toml")
    }
    /// `cluster.toml`.
    pub fn cluster_file(&self) -> PathBuf {
        self.dir.join(cluster::CLUSTER_FILE_NAME)
    }
    /// `certs/`.
    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }
    /// `dev/ldev.img`.
    pub fn ldev(&self) -> PathBuf {
        self.dir.join("dev").join("ldev.img")
    }
    /// `dev/ddev.img`.
    pub fn ddev(&self) -> PathBuf {
        self.dir.join("dev").join("ddev.img")
    }
    /// A daemon's base directory.
    pub fn base(&self, n: &LabNode) -> PathBuf {
        self.dir.join(&n.name)
    }
    /// A daemon's log file.
    pub fn log(&self, n: &LabNode) -> PathBuf {
        self.dir.join(format!("{}.log", n.name))
    }
    /// A daemon's stdout/stderr.
    pub fn out(&self, n: &LabNode) -> PathBuf {
        self.dir.join(format!("{}.out", n.name))
    }
    /// A daemon's pid file.
    pub fn pid(&self, n: &LabNode) -> PathBuf {
        self.dir.join(format!("{}.pid", n.name))
    }

    /// Reads `lab.toml`.
    pub fn load_config(&self) -> Result<LabConfig, LabError> {
        let p = self.config();
        let text = std::fs::read_to_string(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LabError::Other(format!(
                    "no lab in {} (run `walb-console lab up` first)",
                    self.dir.display()
                ))
            } else {
                LabError::Io {
                    what: format!("reading {}", p.display()),
                    source: e,
                }
            }
        })?;
        toml::from_str(&text).map_err(|e| LabError::Other(format!("{}: {e}", p.display())))
    }

    /// Writes `lab.toml` (0644, atomically, never through a link).
    pub fn save_config(&self, cfg: &LabConfig) -> Result<(), LabError> {
        let text = toml::to_string(cfg).map_err(|e| LabError::Other(e.to_string()))?;
        let text = format!("# walb lab settings\n{text}");
        files::write_file(
            &self.config(),
            text.as_bytes(),
            files::MODE_PUBLIC,
            Place::Replace,
        )
        .map_err(io(format!("writing {}", self.config().display())))
    }
}

/// The lab's cluster file (paths relative to the lab directory).
pub fn lab_cluster_file(cfg: &LabConfig) -> ClusterFile {
    let proxies: Vec<String> = lab_proxies(cfg).into_iter().map(|p| p.name).collect();
    ClusterFile {
        name: "lab".into(),
        certs: CertsSection::in_dir(Path::new("certs"), CONSOLE_ID),
        nodes: cfg
            .listing()
            .into_iter()
            .map(|n| {
                let node = NodeSection::new(&n.name, n.role, &n.addr(cfg));
                match n.role {
                    Role::Storage => node.backing_up_to(LAB_PRIMARY_ARCHIVE, &proxies),
                    _ => node,
                }
            })
            .collect(),
    }
}

/// The most log s0 sends in one transfer when the lab made its log: a quarter of its
/// `log_mb` (at least 1 MiB).
/// A transfer frees its part of the log only once the proxy acknowledged all of it, and
/// the storage waits longer for logs not yet permanent when they are a small part of a
/// transfer; the daemon's default (128 MiB) is larger than the lab's whole log.
pub fn send_mb_for(log_mb: u64) -> u64 {
    (log_mb / 4).max(1)
}

/// The lab's proxies in priority order: p0, then the added ones.
fn lab_proxies(cfg: &LabConfig) -> Vec<LabNode> {
    cfg.listing()
        .into_iter()
        .filter(|n| n.role == Role::Proxy)
        .collect()
}

/// The command line of a lab daemon ([`launch::DaemonSpec`]).
pub fn daemon_args(layout: &LabLayout, cfg: &LabConfig, n: &LabNode) -> Vec<OsString> {
    let spec = launch::DaemonSpec::in_dir(&layout.dir, &n.name, n.role, &n.addr(cfg));
    if n.role != Role::Storage {
        return spec.args();
    }
    // ID@HOST:PORT: the storage pins the id of each daemon it dials.
    let addr = |x: &LabNode| format!("{}@{}", x.name, x.addr(cfg));
    let archive = cfg
        .node(LAB_PRIMARY_ARCHIVE)
        .map_or_else(|_| String::new(), |x| addr(&x));
    let proxies: Vec<String> = lab_proxies(cfg).iter().map(addr).collect();
    let spec = spec.dialling(archive, proxies);
    if cfg.ldev.is_some() {
        return spec.args();
    }
    // Transfers of a quarter of the lab's log: a burst frees the log in steps as the proxy
    // acknowledges them. (A log given with --ldev keeps the daemon's default.)
    spec.with([
        "--max-wlog-send-mb".to_string(),
        send_mb_for(cfg.log_mb).to_string(),
    ])
    .args()
}

/// Creates the cluster CA and the certificates of the lab's nodes that are missing.
pub fn ensure_certs(layout: &LabLayout, cfg: &LabConfig) -> Result<(), LabError> {
    let peers = cfg
        .nodes()
        .into_iter()
        .map(|n| (n.role, n.name))
        .chain([(Role::Operator, CONSOLE_ID.to_owned())])
        .map(|(role, id)| PeerId::new(role, &id).map_err(|e| LabError::Other(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    launch::ensure_certs(&layout.certs(), "lab", &peers)
}

/// Makes the certificates that are missing and writes the cluster file: a lab made by an
/// older walb-console (before a1) gets a1's certificate and entry this way.
pub fn refresh_cluster(layout: &LabLayout, cfg: &LabConfig) -> Result<(), LabError> {
    ensure_certs(layout, cfg)?;
    let cl = Cluster::from_file(lab_cluster_file(cfg), &layout.dir, "lab")?;
    cl.save(&layout.cluster_file())?;
    Ok(())
}

fn lab_client(layout: &LabLayout) -> Result<Client, LabError> {
    let cl = Cluster::load(&layout.cluster_file())?;
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    };
    Ok(Client::new(cl, opts)?)
}

/// What `lab up` was asked.
#[derive(Clone, Debug)]
pub struct UpRequest {
    /// Settings of a new lab (an existing lab keeps its own, but takes a new `bin_dir`).
    pub config: LabConfig,
    /// Only start things; no init-storage or full backup.
    pub no_backup: bool,
    /// Limit of the full backup.
    pub timeout: Duration,
}

/// `lab up`: brings the lab to the tutorial's state; prints progress and next steps.
pub async fn up(
    layout: &LabLayout,
    req: &UpRequest,
    out: &mut dyn std::io::Write,
) -> Result<(), LabError> {
    let w = |out: &mut dyn std::io::Write, s: String| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    std::fs::create_dir_all(&layout.dir)
        .map_err(io(format!("creating {}", layout.dir.display())))?;
    let cfg = if layout.config().exists() {
        let mut cfg = layout.load_config()?;
        w(out, format!("reusing the lab in {}", layout.dir.display()));
        if req.config.bin_dir.is_some() && req.config.bin_dir != cfg.bin_dir {
            cfg.bin_dir = req.config.bin_dir.clone();
            layout.save_config(&cfg)?;
        }
        cfg
    } else {
        layout.save_config(&req.config)?;
        req.config.clone()
    };
    let bin_dir = cfg.bin_dir.as_deref();
    let wdevc = find_binary("wdevc", bin_dir)?;
    let nodes = cfg.nodes();
    for n in &nodes {
        find_binary(n.binary(), bin_dir)?;
    }
    refresh_cluster(layout, &cfg)?;
    let wdev = ensure_device(layout, &cfg, &wdevc)?;
    w(out, format!("device {} ({wdev})", cfg.device));
    let client = lab_client(layout)?;
    for n in &nodes {
        match live_pid(layout, n) {
            Some(pid) => w(out, format!("{} already running (pid {pid})", n.name)),
            None => {
                let pid = spawn_daemon(layout, &cfg, n, bin_dir)?;
                w(
                    out,
                    format!(
                        "{} {} started (pid {pid}) on {}",
                        n.name,
                        n.binary(),
                        n.addr(&cfg)
                    ),
                );
            }
        }
    }
    for n in &nodes {
        wait_answering(&client, layout, n, Duration::from_secs(30)).await?;
    }
    let names: Vec<String> = cfg.listing().into_iter().map(|n| n.name).collect();
    w(out, format!("{} answer", names.join(", ")));
    let vol = cfg.vol.as_str();
    let mut gid = None;
    if !req.no_backup {
        if client.state("s0", vol).await? == ops::states::storage::CLEAR {
            ops::init_storage(&client, "s0", vol, &wdev, ops::TIMEOUT_SHORT).await?;
            w(out, format!("init-storage s0 {vol} {wdev}: done"));
        }
        if client.state("s0", vol).await? != ops::states::storage::TARGET {
            w(out, format!("full-backup s0 {vol} ..."));
            let r = ops::full_backup(&client, "s0", vol, None, true, req.timeout).await?;
            w(
                out,
                format!(
                    "full-backup s0 {vol}: clean and restorable at gid {}",
                    r.gid
                ),
            );
            gid = Some(r.gid);
        }
    }
    let rows = crate::exec::commands::state_all(&client, vol).await;
    for l in crate::exec::Outcome::StateAll(rows).text_lines() {
        w(out, l);
    }
    for l in next_steps(layout, &cfg, &wdev, gid) {
        w(out, l);
    }
    Ok(())
}

/// The console's invocation for this lab: plain if it finds the lab's cluster file by
/// default, else with `--cluster`.
pub fn console_invocation(layout: &LabLayout) -> String {
    let default = cluster::locate(None).ok();
    if default.as_deref() == Some(layout.cluster_file().as_path()) {
        "walb-console".into()
    } else {
        format!("walb-console --cluster {}", layout.cluster_file().display())
    }
}

/// `walb-console lab`, with `--dir` unless the lab is in the default directory.
pub fn lab_invocation(layout: &LabLayout) -> String {
    if cluster::default_lab_dir().as_deref() == Some(layout.dir.as_path()) {
        "walb-console lab".into()
    } else {
        format!("walb-console lab --dir {}", layout.dir.display())
    }
}

/// What to do once the lab is up.
pub fn next_steps(
    layout: &LabLayout,
    cfg: &LabConfig,
    wdev: &str,
    gid: Option<u64>,
) -> Vec<String> {
    let c = console_invocation(layout);
    let vol = &cfg.vol;
    let block = Path::new(wdev).is_absolute();
    let mut v = vec![String::new(), "next:".to_owned()];
    if block {
        v.push(format!(
            "  mkfs.ext4 {wdev} && mount {wdev} /mnt   # write something, then umount"
        ));
    } else {
        v.push(format!(
            "  wdevc workload {} --rate 100 --duration 10 --flush-interval 100   # ~3 MB/s through the device's socket",
            cfg.device
        ));
    }
    v.extend([
        format!("  {c}                                   # the terminal UI (? for help)"),
        format!("  {c} --exec snapshot s0 {vol} a0             # prints the gid, waits until restorable"),
        format!("  {c} --exec restore a0 {vol} GID             # prints the restored image"),
        format!("  {c} --exec restorable a0 {vol}"),
        format!("  {c} --exec diff-list a0 {vol}"),
        format!("  {c} --exec state-all {vol}"),
        format!("  {c} --exec replicate a0 {vol} a1 [--sync]   # the second archive a1 gets a copy"),
        format!(
            "  {} status | stop|kill|start NODE | add-node ROLE NAME | down [--purge]",
            lab_invocation(layout)
        ),
    ]);
    if let Some(g) = gid {
        v.insert(1, format!("the backup of {vol} is restorable at gid {g}"));
    }
    v
}

/// `lab status`: one line per daemon (pid, state of the volume) and the device.
pub async fn status(
    layout: &LabLayout,
    bin_dir: Option<&Path>,
    out: &mut dyn std::io::Write,
) -> Result<(), LabError> {
    let cfg = layout.load_config()?;
    let bin_dir = bin_dir.or(cfg.bin_dir.as_deref());
    let client = lab_client(layout)?;
    for n in cfg.listing() {
        let pid = live_pid(layout, &n);
        let state = match pid {
            None => "-".to_owned(),
            Some(_) => match client.state(&n.name, &cfg.vol).await {
                Ok(s) => s.name().to_owned(),
                Err(e) => format!("({e})"),
            },
        };
        let _ = writeln!(
            out,
            "{} {} {} {} {}",
            n.name,
            n.addr(&cfg),
            n.binary(),
            pid.map_or("stopped".to_owned(), |p| format!("pid {p}")),
            state
        );
    }
    for n in cfg.listing() {
        if n.role != Role::Storage || live_pid(layout, &n).is_none() {
            continue;
        }
        match ops::overflow_advice(&client, &n.name, &cfg.vol).await {
            Ok(Some(advice)) => {
                let _ = writeln!(out, "{advice}");
            }
            Ok(None) => {}
            Err(e) => warn!(node = %n.name, "is-overflow: {e}"),
        }
    }
    let dev = match find_binary("wdevc", bin_dir).and_then(|w| running_devices(&w)) {
        Ok(list) => match list.into_iter().find(|(n, _)| *n == cfg.device) {
            Some((_, p)) => format!("running ({p})"),
            None => "not running".into(),
        },
        Err(e) => format!("unknown ({e})"),
    };
    let _ = writeln!(out, "device {} {dev}", cfg.device);
    let _ = writeln!(out, "dir {}", layout.dir.display());
    Ok(())
}

/// `lab down`: graceful shutdown of each daemon (SIGKILL after `timeout`), device
/// deleted; with `purge`, the directory removed.
pub async fn down(
    layout: &LabLayout,
    bin_dir: Option<&Path>,
    timeout: Duration,
    purge: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), LabError> {
    let cfg = layout.load_config()?;
    let bin_dir = bin_dir.or(cfg.bin_dir.as_deref());
    let client = lab_client(layout).ok();
    for n in &cfg.nodes() {
        let Some(pid) = live_pid(layout, n) else {
            continue;
        };
        let asked = match &client {
            Some(c) => c.shutdown(&n.name, false).await.is_ok(),
            None => false,
        };
        if !asked {
            signal(pid, nix::sys::signal::Signal::SIGTERM)?;
        }
        if wait_exit(layout, n, timeout).await {
            let _ = writeln!(out, "{} (pid {pid}) shut down", n.name);
        } else {
            warn!(
                node = %n.name,
                pid,
                "no exit after {} s: SIGKILL",
                timeout.as_secs()
            );
            signal(pid, nix::sys::signal::Signal::SIGKILL)?;
            wait_exit(layout, n, Duration::from_secs(5)).await;
            let _ = writeln!(
                out,
                "{} (pid {pid}) killed after {} s",
                n.name,
                timeout.as_secs()
            );
        }
        let _ = std::fs::remove_file(layout.pid(n));
    }
    // The device must be gone before its images may be removed.
    let wdevc = find_binary("wdevc", bin_dir)?;
    if running_devices(&wdevc)?
        .iter()
        .any(|(n, _)| *n == cfg.device)
    {
        run(Command::new(&wdevc).args(["delete-wdev", &cfg.device]))?;
        let _ = writeln!(out, "device {} deleted", cfg.device);
    }
    if cfg.driver && cfg.ldev.is_none() {
        for image in [layout.ldev(), layout.ddev()] {
            for d in loops_of(&image)? {
                run(Command::new("losetup").arg("-d").arg(&d))?;
                let _ = writeln!(out, "{} detached", d.display());
            }
        }
    }
    if purge {
        std::fs::remove_dir_all(&layout.dir)
            .map_err(io(format!("removing {}", layout.dir.display())))?;
        let _ = writeln!(out, "removed {}", layout.dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::device::parse_device_list;
    use super::*;

    fn tmp(name: &str) -> LabLayout {
        let dir = std::env::temp_dir().join(format!("walb-lab-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        LabLayout { dir }
    }

    #[test]
    fn lab_cluster_file_is_the_tutorial_layout() {
        let cfg = LabConfig::default();
        let l = tmp("cluster");
        let c = Cluster::from_file(lab_cluster_file(&cfg), &l.dir, "lab").unwrap();
        let g = c.group("s0", "full-backup").unwrap();
        assert_eq!(g.storage.addr, "127.0.0.1:10000");
        assert_eq!(g.proxies[0].addr, "127.0.0.1:10100");
        assert_eq!(g.archive.addr, "127.0.0.1:10200");
        assert_eq!(c.tls.cert, l.dir.join("certs/operator-console.crt"));
        // The second archive is a replication target, outside s0's backup group.
        assert_eq!(c.node("a1").unwrap().addr, "127.0.0.1:10201");
        assert_eq!(c.node("a1").unwrap().role, Role::Archive);
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["s0", "p0", "a0", "a1"]);
    }

    #[test]
    fn daemon_arguments_use_the_daemons_options() {
        let cfg = LabConfig {
            port_base: 20000,
            ..LabConfig::default()
        };
        let l = tmp("args");
        let s0 = LabNode::by_name("s0").unwrap();
        let args: Vec<String> = daemon_args(&l, &cfg, &s0)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let pos = |k: &str| args.iter().position(|a| a == k).unwrap();
        assert_eq!(args[pos("--listen") + 1], "127.0.0.1:20000");
        assert_eq!(args[pos("--archive") + 1], "a0@127.0.0.1:20200");
        assert_eq!(args[pos("--proxy") + 1], "p0@127.0.0.1:20100");
        assert_eq!(args[pos("--id") + 1], "s0");
        assert_eq!(
            args[pos("--max-wlog-send-mb") + 1],
            "24",
            "a quarter of the 96 MiB log"
        );
        let given = LabConfig {
            ldev: Some("/dev/vg/wlog".into()),
            ddev: Some("/dev/vg/wdata".into()),
            ..cfg.clone()
        };
        let given_args = daemon_args(&l, &given, &s0);
        assert!(
            !given_args.iter().any(|a| a == "--max-wlog-send-mb"),
            "{given_args:?}"
        );
        // Every long option given exists in the daemons' option structs (daemon/src/opts.rs):
        // a renamed option there fails here instead of at `lab up`.
        let opts = include_str!("../../../daemon/src/opts.rs");
        for a in args.iter().filter(|a| a.starts_with("--")) {
            let field = format!("pub {}:", a.trim_start_matches("--").replace('-', "_"));
            assert!(opts.contains(&field), "{a} is not a daemon option");
        }
        let a0 = LabNode::by_name("a0").unwrap();
        let args = daemon_args(&l, &cfg, &a0);
        assert!(!args.iter().any(|a| a == "--archive"));
        let a1 = LabNode::by_name("a1").unwrap();
        let args: Vec<String> = daemon_args(&l, &cfg, &a1)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args[args.iter().position(|a| a == "--listen").unwrap() + 1],
            "127.0.0.1:20201"
        );
        assert_eq!(a1.binary(), "walb-archive");
        let e = LabNode::by_name("x9").unwrap_err().to_string();
        assert!(e.contains("(s0, p0, a0, a1)"), "{e}");
    }

    #[test]
    fn the_log_holds_the_device_and_half_again() {
        assert_eq!(LabConfig::default().log_mb, 96, "64 MiB device");
        assert_eq!(log_mb_for(64), 96);
        assert_eq!(log_mb_for(1024), 1536);
        assert_eq!(log_mb_for(4), 16, "at least 16 MiB");
        assert_eq!(log_mb_for(u64::MAX), u64::MAX, "no overflow");
        assert_eq!(send_mb_for(96), 24);
        assert_eq!(send_mb_for(2), 1, "at least 1 MiB");
    }

    #[test]
    fn certificates_are_made_once_and_kept() {
        let l = tmp("certs");
        ensure_certs(&l, &LabConfig::default()).unwrap();
        let ca = std::fs::read(l.certs().join("ca.crt")).unwrap();
        let s0 = l.certs().join("storage-s0.crt");
        let chain = walb_wire::certs::load_certs(&s0).unwrap();
        assert_eq!(
            PeerId::from_cert_der(&chain[0]).unwrap().to_string(),
            "storage/s0"
        );
        assert!(l.certs().join("operator-console.key").exists());
        assert!(l.certs().join("archive-a1.crt").exists());
        std::fs::remove_file(l.certs().join("archive-a0.crt")).unwrap();
        ensure_certs(&l, &LabConfig::default()).unwrap();
        assert_eq!(
            std::fs::read(l.certs().join("ca.crt")).unwrap(),
            ca,
            "CA kept"
        );
        assert!(
            l.certs().join("archive-a0.crt").exists(),
            "missing one reissued"
        );
        let _ = std::fs::remove_dir_all(&l.dir);
    }

    #[test]
    fn config_round_trips_and_a_missing_lab_is_explained() {
        let l = tmp("config");
        let e = l.load_config().unwrap_err().to_string();
        assert!(e.contains("lab up"), "{e}");
        std::fs::create_dir_all(&l.dir).unwrap();
        let cfg = LabConfig {
            vol: "v1".into(),
            ..LabConfig::default()
        };
        l.save_config(&cfg).unwrap();
        assert_eq!(l.load_config().unwrap(), cfg);
        let _ = std::fs::remove_dir_all(&l.dir);
    }

    #[test]
    fn a_lab_from_before_a1_gets_its_certificate_and_entry() {
        let l = tmp("refresh");
        std::fs::create_dir_all(&l.dir).unwrap();
        let cfg = LabConfig::default();
        ensure_certs(&l, &LabConfig::default()).unwrap();
        let mut old = lab_cluster_file(&cfg);
        old.nodes.retain(|n| n.name != "a1");
        Cluster::from_file(old, &l.dir, "lab")
            .unwrap()
            .save(&l.cluster_file())
            .unwrap();
        std::fs::remove_file(l.certs().join("archive-a1.crt")).unwrap();
        assert!(Cluster::load(&l.cluster_file())
            .unwrap()
            .node("a1")
            .is_err());
        refresh_cluster(&l, &cfg).unwrap();
        assert!(Cluster::load(&l.cluster_file()).unwrap().node("a1").is_ok());
        assert!(l.certs().join("archive-a1.crt").exists());
        let _ = std::fs::remove_dir_all(&l.dir);
    }

    #[test]
    fn pid_files_of_other_processes_are_not_ours() {
        let l = tmp("pid");
        std::fs::create_dir_all(&l.dir).unwrap();
        let s0 = LabNode::by_name("s0").unwrap();
        assert_eq!(live_pid(&l, &s0), None);
        // This test process is alive but is not walb-storage --id s0.
        std::fs::write(l.pid(&s0), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(live_pid(&l, &s0), None);
        std::fs::write(l.pid(&s0), "garbage").unwrap();
        assert_eq!(live_pid(&l, &s0), None);
        let _ = std::fs::remove_dir_all(&l.dir);
    }

    #[test]
    fn device_lists_of_both_backends_parse() {
        let text = "walb-lab emulated /dev/walb/walb-lab\nsock-only emulated -\n\
                    tut 252:0 /dev/walb/tut\nnoise line here too\n";
        assert_eq!(
            parse_device_list(text),
            [
                ("walb-lab", "/dev/walb/walb-lab"),
                ("sock-only", "-"),
                ("tut", "/dev/walb/tut")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn an_older_lab_file_loads_with_the_emulator() {
        let cfg: LabConfig = toml::from_str(
            "host = \"127.0.0.1\"\nport_base = 10000\nvol = \"vol\"\ndevice = \"d\"\n\
             size_mb = 64\nlog_mb = 32\nno_block = false\n",
        )
        .unwrap();
        assert!(!cfg.driver);
        assert_eq!(cfg.ldev, None);
    }

    #[test]
    fn next_steps_name_the_commands() {
        let l = tmp("next");
        let cfg = LabConfig::default();
        let text = next_steps(&l, &cfg, "walb-lab", Some(5)).join("\n");
        assert!(text.contains("wdevc workload walb-lab"), "{text}");
        assert!(text.contains("--exec snapshot s0 vol a0"), "{text}");
        assert!(text.contains("restorable at gid 5"), "{text}");
        assert!(text.contains("# the terminal UI"), "{text}");
        assert!(text.contains("--exec replicate a0 vol a1"), "{text}");
        let text = next_steps(&l, &cfg, "/dev/walb/walb-lab", None).join("\n");
        assert!(text.contains("mkfs.ext4 /dev/walb/walb-lab"), "{text}");
    }
}
