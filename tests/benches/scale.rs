//! Scale benchmarks with real processes on loopback (needs root: devices are read through
//! their block devices).
//!
//! `cargo bench -p walb-tests --bench scale` builds the release binaries, then:
//!
//! 1. **Idle with 64 volumes** (`WALB_BENCH_VOLS`, default 64): one storage holding that many
//!    volumes, each on its own emulated device, all backed up (full backup) through one
//!    proxy to one archive; then nothing happens for `WALB_BENCH_IDLE_S` seconds (default
//!    30). Printed: each daemon's CPU (percent of one core over the window) and resident
//!    memory, the same summed over the emulated devices' processes, and the console's: the
//!    real `walb-console` terminal UI in a `tmux` pane on the Volumes view, watching the
//!    same cluster.
//! 2. **wlog shipping, 8 volumes against 1**: with the proxy stopped, `WALB_BENCH_SHIP_MB`
//!    MiB (default 128) are written sequentially to each of N volumes (their logs fill);
//!    the proxy is started and the storage kicked, and the time until every one of those
//!    logs is empty again (every wlog shipped and acknowledged durable by the proxy) gives
//!    the shipping throughput, for N = 1 and N = 8 on the same cluster.
//! 3. **Event to screen with 200 volumes** (`WALB_BENCH_TUI_VOLS`): that many volumes on
//!    the archive (`init-vol`), the console's terminal UI (its real `run_loop`, its real
//!    client subscribed to every daemon) drawing into an in-memory terminal tall enough
//!    for every row; `WALB_BENCH_TUI_EVENTS` times (default 100) one more volume is
//!    initialised at the archive and the time from sending `init-vol` to the first frame
//!    that shows its row as SyncReady is taken. p50, p99 and max. The event crosses the
//!    daemon's state machine, its event stream over QUIC, the console's model and a frame.
//!
//! `WALB_BENCH_ONLY` (`idle`, `ship`, `tui`, comma-separated) picks phases.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::Terminal;
use walb_console::client::{Client, ClientOptions};
use walb_console::tui::app::{model_for, run_loop, Runner, TuiConfig};
use walb_console::tui::model::View;
use walb_tests::hostile::memory_kib;
use walb_tests::{
    bench_wanted, bin_dir, build_bins, check, env_u64, is_root, proc_cpu_seconds, Cluster,
    ClusterOpts,
};

/// A cluster with extra emulated devices (beyond the harness's own), deleted before the
/// cluster goes.
struct Devices {
    c: Cluster,
    names: Vec<String>,
}

impl Devices {
    /// Creates device `name` on files of `ddev_mb`/`ldev_mb` MiB (sparse); its path as
    /// operators name it.
    fn create(&mut self, name: &str, ddev_mb: u64, ldev_mb: u64) -> Result<PathBuf> {
        let d = self.c.path().to_path_buf();
        let (ldev, ddev) = (
            d.join(format!("{name}.ldev")),
            d.join(format!("{name}.ddev")),
        );
        std::fs::File::create(&ldev)?.set_len(ldev_mb << 20)?;
        std::fs::File::create(&ddev)?.set_len(ddev_mb << 20)?;
        let (l, dd) = (ldev.display().to_string(), ddev.display().to_string());
        check(&self.c.wdevc(&["format-ldev", &l, &dd])?, "format-ldev")?;
        check(
            &self
                .c
                .wdevc(&["create-wdev", &l, &dd, "-n", name, "--emulate"])?,
            "create-wdev",
        )?;
        self.names.push(name.to_owned());
        let link = d.join("dev").join(name);
        Ok(if link.exists() {
            link
        } else {
            PathBuf::from(name)
        })
    }

    /// Process ids of the devices' processes.
    fn pids(&self) -> Vec<u32> {
        self.names
            .iter()
            .filter_map(|n| {
                let f = self.c.path().join("emu").join(format!("{n}.pid"));
                std::fs::read_to_string(f).ok()?.trim().parse().ok()
            })
            .collect()
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.c.wdevc(&["delete-wdev", n, "--force"]);
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn client(c: &Cluster) -> Result<Client> {
    let cl = walb_console::cluster::Cluster::load(&c.path().join("cluster.toml"))?;
    Ok(Client::new(
        cl,
        ClientOptions {
            request_timeout: Duration::from_secs(60),
            ..ClientOptions::default()
        },
    )?)
}

fn vol_name(i: usize) -> String {
    format!("v{i:03}")
}

/// `init-storage`, `stop` and `full-backup` of `vol` on `dev`.
fn back_up(c: &Cluster, vol: &str, dev: &Path) -> Result<()> {
    let dev = dev.display().to_string();
    c.exec_ok(&["init-storage", "s0", vol, &dev])?;
    c.exec_ok(&["stop", "s0", vol])?;
    c.exec_ok(&["full-backup", "s0", vol, "--timeout", "300"])?;
    Ok(())
}

/// Phases 1 and 2 on one cluster.
fn storage_scale() -> Result<()> {
    let vols = env_u64("WALB_BENCH_VOLS", 64) as usize;
    let idle_s = env_u64("WALB_BENCH_IDLE_S", 30);
    let ship_mb = env_u64("WALB_BENCH_SHIP_MB", 128);
    let shippers = 8.min(vols);
    let c = Cluster::start(ClusterOpts {
        ddev_mb: 8,
        ldev_mb: 8,
        ..ClusterOpts::default()
    })?;
    let mut devs = Devices {
        c,
        names: Vec::new(),
    };
    let t = Instant::now();
    let mut paths = Vec::new();
    for i in 0..vols {
        // The first volumes take the shipping phase's writes.
        let (d, l) = if i < shippers {
            (ship_mb, ship_mb + 64)
        } else {
            (16, 16)
        };
        let name = format!("{}x{i}", devs.c.wdev_name());
        paths.push(devs.create(&name, d, l)?);
    }
    for (i, p) in paths.iter().enumerate() {
        back_up(&devs.c, &vol_name(i), p)?;
    }
    println!(
        "[scale] {vols} volumes on s0 created and backed up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if bench_wanted("idle") {
        idle(&devs, idle_s)?;
    }
    if bench_wanted("ship") {
        let rt = runtime()?;
        let cl = {
            let _g = rt.enter();
            client(&devs.c)?
        };
        for n in [1, shippers] {
            ship(&mut devs, &rt, &cl, n, ship_mb)?;
        }
    }
    Ok(())
}

fn idle(devs: &Devices, idle_s: u64) -> Result<()> {
    let c = &devs.c;
    // The console: the real terminal UI in a tmux pane, on the Volumes view.
    let session = format!("walb-scale-{}", std::process::id());
    let console = bin_dir().join("walb-console");
    let cmd = format!(
        "WALB_CLUSTER={} exec {}",
        c.path().join("cluster.toml").display(),
        console.display()
    );
    let tmux = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "200",
            "-y",
            "80",
            &cmd,
        ])
        .status();
    let console_pid: Option<u32> = match tmux {
        Ok(st) if st.success() => {
            std::thread::sleep(Duration::from_secs(1));
            let _ = Command::new("tmux")
                .args(["send-keys", "-t", &session, "2"])
                .status();
            Command::new("tmux")
                .args(["display", "-p", "-t", &session, "#{pane_pid}"])
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .filter(|p: &u32| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "walb-console")
                })
        }
        _ => {
            println!("(tmux not found: the console's idle cost is not measured)");
            None
        }
    };
    // Settle: the console loads every volume, the daemons finish their start-up work.
    std::thread::sleep(Duration::from_secs(10));
    let mut who: Vec<(String, Vec<u32>)> = c
        .pids()
        .into_iter()
        .filter(|(n, _)| n != "dev")
        .map(|(n, p)| (n, vec![p]))
        .collect();
    who.push((format!("devices ({})", devs.names.len()), devs.pids()));
    if let Some(p) = console_pid {
        who.push(("walb-console (TUI)".into(), vec![p]));
    }
    let cpu = |pids: &[u32]| -> f64 { pids.iter().filter_map(|p| proc_cpu_seconds(*p)).sum() };
    let before: Vec<f64> = who.iter().map(|(_, p)| cpu(p)).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_s));
    let wall = t.elapsed().as_secs_f64();
    println!(
        "-- idle, {} volumes on one storage, {idle_s} s window",
        devs.names.len()
    );
    for ((name, pids), b) in who.iter().zip(before) {
        let pct = (cpu(pids) - b) / wall * 100.0;
        let rss: u64 = pids
            .iter()
            .filter_map(|p| memory_kib(*p))
            .map(|(rss, _)| rss)
            .sum();
        println!(
            "{name:<28} CPU {pct:6.2} % of a core   RSS {:8.1} MiB",
            rss as f64 / 1024.0
        );
    }
    if console_pid.is_some() {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &session])
            .status();
    }
    Ok(())
}

/// Sum of the log usage (bytes) of `vols` at s0.
async fn log_usage(cl: &Client, vols: &[String]) -> Result<u64> {
    let mut sum = 0;
    for v in vols {
        for r in cl.log_usage("s0", Some(v)).await? {
            sum += r.usage_pb * u64::from(r.pbs);
        }
    }
    Ok(sum)
}

fn ship(
    devs: &mut Devices,
    rt: &tokio::runtime::Runtime,
    cl: &Client,
    n: usize,
    mb: u64,
) -> Result<()> {
    let vols: Vec<String> = (0..n).map(vol_name).collect();
    rt.block_on(async {
        // Every earlier write shipped first.
        while log_usage(cl, &vols).await? > (n as u64) << 16 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    })?;
    devs.c.stop_node("p0")?;
    let ios = (mb << 20) / (256 << 10);
    let writers: Vec<_> = devs.names[..n]
        .iter()
        .map(|name| {
            let mut w = Command::new(bin_dir().join("wdevc"));
            w.env("WALB_EMU_DIR", devs.c.path().join("emu"))
                .env("WALB_DEV_DIR", devs.c.path().join("dev"))
                .args(["workload", name, "--pattern", "seq", "--min-io", "256k"])
                .args(["--max-io", "256k", "--count", &ios.to_string()])
                .stdout(std::process::Stdio::null());
            w.spawn()
        })
        .collect::<std::io::Result<_>>()?;
    for mut w in writers {
        if !w.wait()?.success() {
            bail!("a writer failed");
        }
    }
    let queued = rt.block_on(log_usage(cl, &vols))?;
    devs.c.start_node("p0")?;
    let t = Instant::now();
    devs.c.exec_ok(&["kick", "s0"])?;
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(600);
        while log_usage(cl, &vols).await? > (n as u64) << 16 {
            if Instant::now() > deadline {
                bail!("the logs did not drain within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    })?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "wlog shipping, {n} volume(s) at once: {:.0} MiB of logs in {s:.2} s = {:.1} MB/s",
        queued as f64 / (1 << 20) as f64,
        queued as f64 / s / 1e6
    );
    Ok(())
}

/// A terminal that remembers the time of each finished frame and checks it for rows.
struct Watching {
    inner: TestBackend,
    want: Arc<Mutex<Want>>,
}

/// The row a driver waits for, and when it showed; the last frame's rows.
#[derive(Default)]
struct Want {
    row: Option<String>,
    seen: Option<Instant>,
    last: Vec<String>,
}

impl Backend for Watching {
    fn draw<'a, I>(&mut self, content: I) -> std::io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }
    fn hide_cursor(&mut self) -> std::io::Result<()> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> std::io::Result<()> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> std::io::Result<Position> {
        self.inner.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> std::io::Result<()> {
        self.inner.set_cursor_position(position)
    }
    fn clear(&mut self) -> std::io::Result<()> {
        self.inner.clear()
    }
    fn clear_region(&mut self, clear_type: ClearType) -> std::io::Result<()> {
        self.inner.clear_region(clear_type)
    }
    fn size(&self) -> std::io::Result<Size> {
        self.inner.size()
    }
    fn window_size(&mut self) -> std::io::Result<WindowSize> {
        self.inner.window_size()
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()?;
        let now = Instant::now();
        let mut w = self.want.lock().unwrap_or_else(|p| p.into_inner());
        if w.seen.is_none() {
            if let Some(vol) = w.row.clone() {
                let buf = self.inner.buffer();
                let width = buf.area.width as usize;
                let rows: Vec<String> = buf
                    .content
                    .chunks(width.max(1))
                    .map(|r| r.iter().map(|c| c.symbol()).collect())
                    .collect();
                let shows = rows
                    .iter()
                    .any(|r| r.contains(&vol) && r.contains("SyncReady"));
                w.last = rows;
                if shows {
                    w.seen = Some(now);
                }
            }
        }
        Ok(())
    }
}

fn tui_latency() -> Result<()> {
    let vols = env_u64("WALB_BENCH_TUI_VOLS", 200) as usize;
    let events = env_u64("WALB_BENCH_TUI_EVENTS", 100) as usize;
    let c = Cluster::start(ClusterOpts::default())?;
    let rt = runtime()?;
    let cl = {
        let _g = rt.enter();
        client(&c)?
    };
    rt.block_on(async {
        for i in 0..vols {
            cl.init_vol("a0", &format!("t{i:03}"), None).await?;
        }
        anyhow::Ok(())
    })?;
    let tui_client = {
        let _g = rt.enter();
        client(&c)?
    };
    let want = Arc::new(Mutex::new(Want::default()));
    let backend = Watching {
        // Rows for every volume and the frame around them; only ASCII-wide names are
        // matched, so one cell is one byte of the rows the check reads.
        inner: TestBackend::new(160, (vols + events + 40) as u16),
        want: Arc::clone(&want),
    };
    let lat = rt.block_on(async {
        let mut terminal = Terminal::new(backend)?;
        let mut m = model_for(&tui_client, &TuiConfig::default());
        m.plain = true;
        m.view = View::Volumes;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut runner = Runner::new(tui_client, tx);
        let keys = futures_util::stream::pending();
        let shell = run_loop(
            &mut terminal,
            &mut m,
            &mut rx,
            keys,
            &mut runner,
            Duration::from_secs(1),
        );
        let driver = async {
            // Until the UI shows the last of the volumes made before it started.
            let last = format!("t{:03}", vols - 1);
            {
                let mut w = want.lock().unwrap_or_else(|p| p.into_inner());
                w.row = Some(last);
            }
            let t = Instant::now();
            while want
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .seen
                .is_none()
            {
                if t.elapsed() > Duration::from_secs(60) {
                    let w = want.lock().unwrap_or_else(|p| p.into_inner());
                    let shown: Vec<&String> =
                        w.last.iter().filter(|r| !r.trim().is_empty()).collect();
                    bail!(
                        "the UI did not show {vols} volumes within 60 s; its last frame:\n{}",
                        shown
                            .iter()
                            .map(|r| r.trim_end())
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            println!(
                "-- console, {vols} volumes: first full screen after {:.2} s",
                t.elapsed().as_secs_f64()
            );
            let mut lat = Vec::new();
            for i in 0..events {
                let vol = format!("u{i:03}");
                let t0 = Instant::now();
                {
                    let mut w = want.lock().unwrap_or_else(|p| p.into_inner());
                    w.row = Some(vol.clone());
                    w.seen = None;
                }
                cl.init_vol("a0", &vol, None).await?;
                loop {
                    let seen = want.lock().unwrap_or_else(|p| p.into_inner()).seen;
                    if let Some(s) = seen {
                        lat.push(s.duration_since(t0));
                        break;
                    }
                    if t0.elapsed() > Duration::from_secs(30) {
                        bail!("volume {vol} did not show within 30 s");
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            anyhow::Ok(lat)
        };
        tokio::select! {
            r = shell => { r?; bail!("the UI ended") }
            r = driver => r,
        }
    })?;
    let mut ms: Vec<f64> = lat.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "event to screen (init-vol sent -> frame with the row SyncReady), {} events: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    drop(c);
    Ok(())
}

fn main() -> Result<()> {
    if !is_root() {
        println!("skipped: the scale bench reads devices through their block devices (root)");
        return Ok(());
    }
    build_bins()?;
    println!(
        "walb scale benchmark (release binaries, loopback, {} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let t = Instant::now();
    if bench_wanted("idle") || bench_wanted("ship") {
        storage_scale()?;
    }
    if bench_wanted("tui") {
        tui_latency()?;
    }
    println!("done in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}
