//! The device commands of wdevc, for the real driver and the userspace emulator alike.
//!
//! A `WDEV` argument is a device name or its path (`/dev/walb/NAME`); when an emulated
//! device of that name runs (its control socket exists), the command goes to it, otherwise
//! to the kernel driver. `create-wdev --emulate` starts an emulated device process (this
//! binary, detached) that serves the control socket and, as root, exposes the device
//! through FUSE and a loop device linked at `/dev/walb/NAME` (`$WALB_DEV_DIR/NAME`).

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use tracing::{info, warn};
use walb_device::control::{
    dev_dir, emu_dir, list_emulated, serve, socket_path, DeviceClient, ServerHooks,
};
use walb_device::driver::{self, WalbStartParam};
use walb_device::emu::{EmuConfig, Emulator};
use walb_device::{check_name, version_string, WalbDevice};

use crate::files::parse_size;

/// A usage error of a device command (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeviceUsageError(String);

fn usage(msg: impl Into<String>) -> anyhow::Error {
    DeviceUsageError(msg.into()).into()
}

fn name_of(wdev: &str) -> Result<String> {
    Ok(walb_device::name_of(wdev)?)
}

/// Opens the device `wdev` (name or path) on whichever backend has it.
pub fn open_device(wdev: &str) -> Result<Box<dyn WalbDevice>> {
    Ok(walb_device::open(wdev)?)
}

/// A command taking only a device.
#[derive(Args, Debug)]
pub struct Wdev {
    /// Device name or path (/dev/walb/NAME).
    wdev: String,
}

/// What a one-device command prints.
#[derive(Debug, Clone, Copy)]
pub enum Query {
    Oldest,
    Written,
    Permanent,
    Completed,
    Lsids,
    Usage,
    Capacity,
    Overflow,
    Frozen,
    FlushCapable,
    CheckpointInterval,
    ForceCheckpoint,
    ResetWal,
    Melt,
}

impl Wdev {
    pub fn run(self, q: Query) -> Result<()> {
        let d = open_device(&self.wdev)?;
        let out = match q {
            Query::Oldest => d.lsids()?.oldest.to_string(),
            Query::Written => d.lsids()?.written.to_string(),
            Query::Permanent => d.lsids()?.permanent.to_string(),
            Query::Completed => d.lsids()?.completed.to_string(),
            Query::Lsids => d.lsids()?.to_string().trim_end().to_string(),
            Query::Usage => d.log_usage()?.to_string(),
            Query::Capacity => d.log_capacity()?.to_string(),
            Query::Overflow => u8::from(d.is_overflow()?).to_string(),
            Query::Frozen => u8::from(d.is_frozen()?).to_string(),
            Query::FlushCapable => u8::from(d.is_flush_capable()?).to_string(),
            Query::CheckpointInterval => d.checkpoint_interval_ms()?.to_string(),
            Query::ForceCheckpoint => return Ok(d.take_checkpoint()?),
            Query::ResetWal => return Ok(d.reset_wal()?),
            Query::Melt => return Ok(d.melt()?),
        };
        println!("{out}");
        Ok(())
    }
}

/// `set-oldest-lsid WDEV LSID`.
#[derive(Args, Debug)]
pub struct SetOldestLsid {
    /// Device name or path.
    wdev: String,
    /// New oldest lsid (at most prev_written).
    lsid: u64,
}

impl SetOldestLsid {
    pub fn run(self) -> Result<()> {
        Ok(open_device(&self.wdev)?.set_oldest_lsid(self.lsid)?)
    }
}

/// `set-checkpoint-interval WDEV MS`.
#[derive(Args, Debug)]
pub struct SetCheckpointInterval {
    /// Device name or path.
    wdev: String,
    /// Interval in milliseconds (0 disables).
    ms: u32,
}

impl SetCheckpointInterval {
    pub fn run(self) -> Result<()> {
        Ok(open_device(&self.wdev)?.set_checkpoint_interval_ms(self.ms)?)
    }
}

/// `freeze WDEV [TIMEOUT]`.
#[derive(Args, Debug)]
pub struct Freeze {
    /// Device name or path.
    wdev: String,
    /// Melt automatically after this many seconds (0: never).
    #[arg(default_value_t = 0)]
    timeout: u32,
}

impl Freeze {
    pub fn run(self) -> Result<()> {
        Ok(open_device(&self.wdev)?.freeze(self.timeout)?)
    }
}

/// `resize WDEV [SIZE]`.
#[derive(Args, Debug)]
pub struct Resize {
    /// Device name or path.
    wdev: String,
    /// New size in logical blocks (512 bytes), or with a k/m/g/t suffix in bytes; 0 or
    /// absent: the data device's size.
    #[arg(default_value = "0")]
    size: String,
}

impl Resize {
    pub fn run(self) -> Result<()> {
        let lb = if self
            .size
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphabetic())
        {
            parse_size(&self.size).map_err(usage)? / 512
        } else {
            self.size
                .parse()
                .map_err(|_| usage(format!("{:?} is not a size", self.size)))?
        };
        Ok(open_device(&self.wdev)?.resize(lb)?)
    }
}

/// `get-version`.
#[derive(Args, Debug)]
pub struct GetVersion {
    /// Ask this device (emulated or not) instead of the driver's control device.
    wdev: Option<String>,
}

impl GetVersion {
    pub fn run(self) -> Result<()> {
        let v = match self.wdev {
            Some(w) => open_device(&w)?.version()?,
            None if driver::control_path().exists() => driver::driver_version()?,
            None => walb_device::WALB_VERSION,
        };
        println!("{}", version_string(v));
        Ok(())
    }
}

/// `list`.
#[derive(Args, Debug)]
pub struct List {}

impl List {
    pub fn run(self) -> Result<()> {
        let mut out = std::io::stdout().lock();
        for n in list_emulated() {
            let path = DeviceClient::connect_name(&n)
                .and_then(|c| c.info())
                .ok()
                .and_then(|i| i.wdev_path)
                .map_or("-".to_string(), |p| p.display().to_string());
            writeln!(out, "{n} emulated {path}")?;
        }
        if driver::control_path().exists() {
            for (n, maj, min) in driver::list_devs()? {
                writeln!(out, "{n} {maj}:{min} {}", dev_dir().join(&n).display())?;
            }
        }
        Ok(())
    }
}

/// `create-wdev LDEV DDEV [-n NAME] [--emulate]`.
#[derive(Args, Debug)]
pub struct CreateWdev {
    /// Log device (formatted with format-ldev).
    ldev: PathBuf,
    /// Data device.
    ddev: PathBuf,
    /// Device name (default: the name in the superblock; required with --emulate).
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// Run the userspace emulator instead of the kernel driver.
    #[arg(long)]
    emulate: bool,
    /// Emulator: run in the foreground instead of detaching.
    #[arg(long, requires = "emulate")]
    foreground: bool,
    /// Emulator: serve only the control socket (no FUSE file, no loop device).
    #[arg(long, requires = "emulate")]
    no_block: bool,
    /// Fail writes instead of overflowing the log (the driver's module parameter).
    #[arg(long)]
    error_before_overflow: bool,
    /// Checkpoint interval in ms.
    #[arg(long, default_value_t = 10_000)]
    checkpoint_interval: u32,
    /// Max log pack size in KiB (driver and emulator; 0: no limit).
    #[arg(long = "maxl", default_value_t = 32)]
    max_logpack_kb: u32,
    /// Max pending MiB (driver).
    #[arg(long = "maxp", default_value_t = 32)]
    max_pending_mb: u32,
    /// Min pending MiB (driver).
    #[arg(long = "minp", default_value_t = 16)]
    min_pending_mb: u32,
    /// Log flush interval in MiB.
    #[arg(long = "fs", default_value_t = 16)]
    flush_mb: u32,
    /// Log flush interval in ms.
    #[arg(long = "fp", default_value_t = 100)]
    flush_ms: u32,
}

impl CreateWdev {
    pub fn run(self) -> Result<()> {
        if !self.emulate {
            let name = self.name.clone().unwrap_or_default();
            let mut p = WalbStartParam {
                max_logpack_kb: self.max_logpack_kb,
                max_pending_mb: self.max_pending_mb,
                min_pending_mb: self.min_pending_mb,
                log_flush_interval_mb: self.flush_mb,
                log_flush_interval_ms: self.flush_ms,
                ..Default::default()
            };
            if !name.is_empty() {
                p.name = driver::name_bytes(&name)?;
            }
            let (n, maj, min) = driver::start_dev(&self.ldev, &self.ddev, p)?;
            println!("{n} {maj} {min}");
            return Ok(());
        }
        let name = self
            .name
            .clone()
            .ok_or_else(|| usage("--emulate needs -n NAME"))?;
        check_name(&name)?;
        if self.foreground {
            return run_device(self, name);
        }
        spawn_device(&name)?;
        println!("{name}");
        Ok(())
    }
}

/// Starts this binary again in the foreground, detached, and waits for its socket.
fn spawn_device(name: &str) -> Result<()> {
    let dir = emu_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sock = socket_path(name);
    if DeviceClient::connect(&sock).is_ok() {
        bail!("emulated device {name} is already running");
    }
    let log = dir.join(format!("{name}.log"));
    let logf =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let exe = std::env::current_exe().context("locating wdevc")?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--foreground".into());
    let mut child = Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .process_group(0)
        .spawn()
        .context("starting the emulated device process")?;
    let t0 = Instant::now();
    loop {
        if DeviceClient::connect(&sock).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the emulated device process exited ({st}): {}", text.trim());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!(
                "the emulated device did not come up in 60 s (log: {})",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Hooks {
    stop: Mutex<bool>,
    cond: Condvar,
    loop_dev: Option<PathBuf>,
}

impl Hooks {
    fn request_stop(&self) {
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_all();
    }
}

impl ServerHooks for Hooks {
    fn stop(&self, force: bool) -> walb_kernel::Result<()> {
        if let (Some(l), false) = (&self.loop_dev, force) {
            // Like STOP_DEV: refuse while a file system (or anyone) holds the device.
            use std::os::unix::fs::OpenOptionsExt;
            if let Err(e) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_EXCL)
                .open(l)
            {
                return Err(walb_kernel::Error::Invalid(format!(
                    "device {} is in use ({e}); unmount it or force",
                    l.display()
                )));
            }
        }
        self.request_stop();
        Ok(())
    }
    fn resized(&self) {
        if let Some(l) = &self.loop_dev {
            if let Err(e) = Command::new("losetup").arg("-c").arg(l).status() {
                warn!("losetup -c {}: {e}", l.display());
            }
        }
    }
}

/// Undoes the set-up of the device process, in reverse order, on every exit path.
#[derive(Default)]
struct Cleanup {
    link: Option<PathBuf>,
    loop_dev: Option<PathBuf>,
    fuse: Option<walb_device::fuse::FuseMount>,
    mnt: Option<PathBuf>,
    sock: Option<PathBuf>,
    pid: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(s) = self.sock.take() {
            let _ = std::fs::remove_file(s);
        }
        if let Some(l) = self.link.take() {
            let _ = std::fs::remove_file(l);
        }
        if let Some(l) = self.loop_dev.take() {
            match Command::new("losetup").arg("-d").arg(&l).status() {
                Ok(s) if s.success() => {}
                r => warn!("losetup -d {}: {r:?}", l.display()),
            }
            // The loop driver releases its backing file after losetup returns.
            if let Some(n) = l.file_name().and_then(|n| n.to_str()) {
                let f = PathBuf::from(format!("/sys/block/{n}/loop/backing_file"));
                let t0 = Instant::now();
                while f.exists() && t0.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        if let Some(f) = self.fuse.take() {
            if let Err(e) = f.unmount() {
                warn!("unmounting the FUSE file: {e}; detaching lazily");
                if let Some(m) = &self.mnt {
                    let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
        if let Some(m) = self.mnt.take() {
            let _ = std::fs::remove_dir(m);
        }
    }
}

/// The device file in the FUSE mount of emulated device `name`.
fn mnt_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.mnt"))
        .join(walb_device::fuse::FILE_NAME)
}

fn run_device(a: CreateWdev, name: String) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    // Signals are taken by one thread with sigwait; block them before any thread starts.
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    sigs.thread_block().context("blocking signals")?;
    let dir = emu_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sock = socket_path(&name);
    if sock.exists() {
        if DeviceClient::connect(&sock).is_ok() {
            bail!("emulated device {name} is already running");
        }
        std::fs::remove_file(&sock).ok();
    }
    let cfg = EmuConfig {
        error_before_overflow: a.error_before_overflow,
        checkpoint_interval_ms: a.checkpoint_interval,
        log_flush_interval_ms: a.flush_ms,
        log_flush_interval_mb: a.flush_mb,
        max_logpack_kb: a.max_logpack_kb,
        background: true,
        name: Some(name.clone()),
    };
    let emu = Arc::new(Emulator::open(&a.ldev, &a.ddev, cfg)?);
    let mut clean = Cleanup::default();
    let pidf = pid_path(&name);
    std::fs::write(&pidf, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pidf.display()))?;
    clean.pid = Some(pidf);
    let mut info = emu.info()?;
    if let Some(path) = expose(&emu, &dir, &name, a.no_block, &mut clean)? {
        info.wdev_path = Some(path);
    }
    let hooks = Arc::new(Hooks {
        stop: Mutex::new(false),
        cond: Condvar::new(),
        loop_dev: clean.loop_dev.clone(),
    });
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    clean.sock = Some(sock.clone());
    {
        let (emu, info, hooks) = (emu.clone(), info.clone(), hooks.clone());
        std::thread::Builder::new()
            .name("walb-emu-server".into())
            .spawn(move || serve(listener, emu, info, hooks))?;
    }
    {
        let hooks = hooks.clone();
        std::thread::Builder::new()
            .name("walb-emu-signals".into())
            .spawn(move || {
                if let Ok(s) = sigs.wait() {
                    info!("signal {s:?}: stopping");
                }
                hooks.request_stop();
            })?;
    }
    info!(
        "emulated walb device {name} up: socket {}, block device {}",
        sock.display(),
        info.wdev_path
            .as_ref()
            .map_or("none".to_string(), |p| p.display().to_string())
    );
    let mut stop = hooks.stop.lock().unwrap_or_else(|p| p.into_inner());
    while !*stop {
        stop = hooks.cond.wait(stop).unwrap_or_else(|p| p.into_inner());
    }
    drop(stop);
    // Remove the socket first so that no new client connects, then the block device.
    let pidf = clean.pid.take();
    drop(clean);
    let r = emu.shutdown();
    if let Some(p) = pidf {
        let _ = std::fs::remove_file(p);
    }
    r?;
    info!("emulated walb device {name} stopped");
    Ok(())
}

/// Makes the emulated device a file (its FUSE mount) and, as root, a loop device on it
/// linked under the devices' folder; `None` when it is served through its control socket
/// only. What it creates is recorded in `clean`, to be undone at the end.
fn expose(
    emu: &Arc<Emulator>,
    dir: &Path,
    name: &str,
    no_block: bool,
    clean: &mut Cleanup,
) -> Result<Option<PathBuf>> {
    let root = nix::unistd::getuid().is_root();
    if !no_block {
        let mnt = dir.join(format!("{name}.mnt"));
        std::fs::create_dir_all(&mnt).with_context(|| format!("creating {}", mnt.display()))?;
        clean.mnt = Some(mnt.clone());
        match walb_device::fuse::mount(emu.clone(), &mnt, 4) {
            Ok(s) => clean.fuse = Some(s),
            Err(e) if !root => warn!(
                "not root and the FUSE file could not be mounted (is fusermount3, package \
                 fuse3, installed?): {e}; the emulated device {name} is served through its \
                 control socket only"
            ),
            Err(e) => return Err(e.into()),
        }
    }
    if clean.fuse.is_none() {
        return Ok(None);
    }
    if !root {
        // Without root there is no loop device: the FUSE file is the device.
        return Ok(Some(mnt_file(dir, name)));
    }
    let file = mnt_file(dir, name);
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&file)
        .output()
        .context("running losetup")?;
    if !out.status.success() {
        bail!(
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let lo = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    clean.loop_dev = Some(lo.clone());
    let dd = dev_dir();
    std::fs::create_dir_all(&dd).with_context(|| format!("creating {}", dd.display()))?;
    let link = dd.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lo, &link)
        .with_context(|| format!("linking {} to {}", link.display(), lo.display()))?;
    clean.link = Some(link.clone());
    Ok(Some(link))
}

/// `delete-wdev WDEV [-f]`.
#[derive(Args, Debug)]
pub struct DeleteWdev {
    /// Device name or path.
    wdev: String,
    /// Stop even while the device is in use.
    #[arg(short = 'f', long)]
    force: bool,
}

impl DeleteWdev {
    pub fn run(self) -> Result<()> {
        let name = name_of(&self.wdev)?;
        let sock = socket_path(&name);
        if sock.exists() {
            let pid = std::fs::read_to_string(pid_path(&name))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|&p| p > 0);
            DeviceClient::connect(&sock)?.stop(self.force)?;
            // The process removes its socket once its block device is gone; its exit
            // follows after the final checkpoint.
            let t0 = Instant::now();
            while sock.exists() {
                if t0.elapsed() > Duration::from_secs(60) {
                    bail!("emulated device {name} did not stop in 60 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            wait_exit(pid, &name)?;
            return Ok(());
        }
        driver::stop_dev(&dev_dir().join(&name), self.force)?;
        Ok(())
    }
}

fn pid_path(name: &str) -> PathBuf {
    emu_dir().join(format!("{name}.pid"))
}

/// Waits until the device process (whose pid it wrote) has exited.
fn wait_exit(pid: Option<i32>, name: &str) -> Result<()> {
    let Some(pid) = pid else { return Ok(()) };
    let t0 = Instant::now();
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(anyhow!(
                "the process of emulated device {name} did not exit in 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

type WriteFn = Box<dyn Fn(u64, &[u8]) -> Result<()> + Send + Sync>;
type FlushFn = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// `workload WDEV ...`: writes through an emulated device's socket, or a driver device.
#[derive(Args, Debug)]
pub struct Workload {
    /// Device name or path.
    wdev: String,
    /// Writes per second, over all writers (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Smallest IO (bytes, multiple of 512; k/m suffixes).
    #[arg(long, default_value = "4k", value_parser = parse_size)]
    min_io: u64,
    /// Largest IO.
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    max_io: u64,
    /// Address pattern.
    #[arg(long, default_value = "random", value_parser = ["random", "seq"])]
    pattern: String,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many writes (over all writers).
    #[arg(long)]
    count: Option<u64>,
    /// Flush every this many ms (0: only at the end).
    #[arg(long, default_value_t = 0)]
    flush_interval: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Queue depth: this many writers submit concurrently (each with its own connection
    /// to an emulated device).
    #[arg(long = "qd", visible_alias = "queue-depth", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    qd: u64,
}

/// How one writer of a workload reaches the device.
fn workload_sink(name: &str) -> Result<(WriteFn, FlushFn, u64)> {
    if socket_path(name).exists() {
        let c = Arc::new(DeviceClient::connect_name(name)?);
        let size = c.info()?.size_lb * 512;
        let c2 = c.clone();
        let write: WriteFn = Box::new(move |o, d| Ok(c.write(o, d, false)?));
        let flush: FlushFn = Box::new(move || Ok(c2.flush()?));
        return Ok((write, flush, size));
    }
    use std::os::unix::fs::FileExt;
    let p = dev_dir().join(name);
    let f = Arc::new(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?,
    );
    let size = walb_kernel::ldev::ReadAt::size(&*f)?;
    let f2 = f.clone();
    let write: WriteFn = Box::new(move |o, d| Ok(f.write_all_at(d, o)?));
    let flush: FlushFn = Box::new(move || Ok(f2.sync_data()?));
    Ok((write, flush, size))
}

/// What the writers of a workload share.
struct WorkloadShared {
    t0: Instant,
    /// Writes claimed so far (a writer claims one before doing it).
    claimed: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
    /// Next offset of the sequential pattern.
    pos: Mutex<u64>,
    last_flush: Mutex<Instant>,
    failed: std::sync::atomic::AtomicBool,
}

impl Workload {
    pub fn run(self) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.min_io == 0
            || self.min_io % 512 != 0
            || self.max_io % 512 != 0
            || self.max_io < self.min_io
        {
            return Err(usage(
                "IO sizes must be multiples of 512 with 0 < min-io <= max-io",
            ));
        }
        if self.duration.is_none() && self.count.is_none() {
            return Err(usage("give --duration or --count"));
        }
        let name = name_of(&self.wdev)?;
        let mut sinks = Vec::new();
        for _ in 0..self.qd {
            sinks.push(workload_sink(&name)?);
        }
        let size = sinks[0].2;
        if self.max_io > size {
            return Err(usage(format!(
                "max-io {} is larger than the device ({size} bytes)",
                self.max_io
            )));
        }
        let now = Instant::now();
        let sh = WorkloadShared {
            t0: now,
            claimed: Default::default(),
            bytes: Default::default(),
            pos: Mutex::new(0),
            last_flush: Mutex::new(now),
            failed: Default::default(),
        };
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let hs: Vec<_> = sinks
                .iter()
                .enumerate()
                .map(|(i, (write, flush, _))| {
                    let (a, sh) = (&self, &sh);
                    s.spawn(move || {
                        let r = a.writer(i as u64, size, write, flush, sh);
                        if r.is_err() {
                            sh.failed.store(true, Relaxed);
                        }
                        r
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a workload writer panicked")))
                })
                .collect()
        });
        for r in results {
            r?;
        }
        (sinks[0].1)()?;
        let s = sh.t0.elapsed().as_secs_f64();
        let n = sh.claimed.load(Relaxed).min(self.count.unwrap_or(u64::MAX));
        let bytes = sh.bytes.load(Relaxed);
        println!(
            "writes {n} bytes {bytes} seconds {s:.3} MB/s {:.1} IOPS {:.0} qd {}",
            bytes as f64 / s / 1e6,
            n as f64 / s,
            self.qd
        );
        Ok(())
    }

    /// One writer: claims writes until the count or the duration is reached.
    fn writer(
        &self,
        index: u64,
        size: u64,
        write: &WriteFn,
        flush: &FlushFn,
        sh: &WorkloadShared,
    ) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut rng =
            SmallRng::seed_from_u64(self.seed.wrapping_add(index.wrapping_mul(0x9E37_79B9)));
        let mut buf = vec![0u8; self.max_io as usize];
        loop {
            if sh.failed.load(Relaxed)
                || self
                    .duration
                    .is_some_and(|d| sh.t0.elapsed().as_secs_f64() >= d)
            {
                return Ok(());
            }
            let i = sh.claimed.fetch_add(1, Relaxed);
            if self.count.is_some_and(|c| i >= c) {
                return Ok(());
            }
            if self.rate > 0 {
                let due = sh.t0 + Duration::from_secs_f64(i as f64 / self.rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            let len = rng.random_range(self.min_io / 512..=self.max_io / 512) * 512;
            let off = if self.pattern == "seq" {
                let mut pos = sh.pos.lock().unwrap_or_else(|p| p.into_inner());
                if *pos + len > size {
                    *pos = 0;
                }
                let o = *pos;
                *pos += len;
                o
            } else {
                rng.random_range(0..=(size - len) / 512) * 512
            };
            rng.fill_bytes(&mut buf[..len as usize]);
            write(off, &buf[..len as usize])?;
            sh.bytes.fetch_add(len, Relaxed);
            if self.flush_interval > 0 {
                let due = {
                    let mut last = sh.last_flush.lock().unwrap_or_else(|p| p.into_inner());
                    let due = last.elapsed() >= Duration::from_millis(self.flush_interval);
                    if due {
                        *last = Instant::now();
                    }
                    due
                };
                if due {
                    flush()?;
                }
            }
        }
    }
}
