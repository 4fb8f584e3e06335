//! Responsiveness of the terminal UI with 200 volumes on 10 nodes (6 storages, a proxy,
//! 3 archives): redraw time, event-to-screen latency, and CPU while idle.
//!
//! - redraw: one full frame of each view into a `TestBackend` (ratatui diffs frames, so
//!   this is the cost of a redraw without the terminal's own).
//! - event → screen, direct: one synthetic daemon event through `update`, then a frame.
//! - event → screen, through the shell: an event sent on the shell's channel until the
//!   frame that shows it is flushed (`run_loop`, a recording backend), one at a time.
//! - burst: 1000 events queued at once, handled and drawn as the shell does.
//! - idle: the shell with nothing happening for a few seconds (redraws on its 1 s clock
//!   only), CPU time over wall time of the process.
//!
//! Run: `cargo bench -p walb-console --bench tui` (WALB_BENCH_SECONDS sets the idle
//! window, default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::Terminal;
use walb_console::tui::app::{run_loop, EffectRunner};
use walb_console::tui::model::{Model, View};
use walb_console::tui::update::{update, Answer, Ask, Effect, LiveMsg, Msg};
use walb_console::tui::view;
use walb_wire::Event;

const VOLS: usize = 200;

fn cpu_time() -> Duration {
    let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    match r {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

fn model() -> Model {
    let c = big_cluster(6, 3);
    let mut m = Model::new(&c);
    m.clock(T0);
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    for n in &names {
        update(&mut m, Msg::Live(LiveMsg::Subscribed { node: n.clone() }));
    }
    for i in 0..VOLS {
        let vol = format!("vol{i:03}");
        let owner = format!("s{}", i % 6);
        for n in &names {
            let st = if *n == owner {
                "Target"
            } else if n.starts_with('s') {
                "Clear"
            } else if n.starts_with('p') {
                "Started"
            } else {
                "Archived"
            };
            reply(
                &mut m,
                n,
                Ask::State { vol: vol.clone() },
                Answer::State(vstate(n, st)),
            );
        }
        reply(
            &mut m,
            &owner,
            Ask::LogUsage,
            Answer::LogUsage(vec![walb_wire::msg::LogUsageRow {
                vol: vol.clone(),
                usage_pb: (i as u64 * 37) % 8192,
                capacity_pb: 8192,
                pbs: 4096,
            }]),
        );
        reply(
            &mut m,
            &owner,
            Ask::LatestSnap { vol: None },
            Answer::Snaps(vec![snap(&vol, 100 + i as u64, TS, true)]),
        );
        for a in ["a0", "a1", "a2"] {
            reply(
                &mut m,
                a,
                Ask::LatestSnap { vol: None },
                Answer::Snaps(vec![snap(&vol, 98 + i as u64, TS - 30, true)]),
            );
            reply(
                &mut m,
                a,
                Ask::Diffs { vol: vol.clone() },
                Answer::Diffs(
                    (0..20)
                        .map(|g| diff(g, g + 1, g % 3 != 0, TS, 4096))
                        .collect(),
                ),
            );
        }
    }
    m
}

/// A synthetic event, a realistic mix: state changes, progress, log usage, diff lists.
fn synthetic(i: usize) -> (String, Event) {
    let vol = format!("vol{:03}", i % VOLS);
    match i % 10 {
        0..=4 => (
            format!("s{}", (i % VOLS) % 6),
            Event::VolState {
                vol,
                state: walb_wire::msg::VolumeState::Storage(if i % 2 == 0 {
                    walb_wire::msg::StorageState::StopTarget
                } else {
                    walb_wire::msg::StorageState::Target
                }),
                at_s: TS,
            },
        ),
        5 | 6 => (
            "a1".into(),
            Event::Progress {
                vol,
                op: "restore".into(),
                done_lb: (i as u64 * 977) % 100_000,
                total_lb: 100_000,
            },
        ),
        7 | 8 => (
            format!("s{}", (i % VOLS) % 6),
            Event::LogUsage {
                vol,
                usage_pb: (i as u64 * 31) % 8192,
                capacity_pb: 8192,
            },
        ),
        _ => (
            "a0".into(),
            Event::DiffList {
                vol,
                diffs: (0..20).map(|g| diff(g, g + 1, true, TS, 4096)).collect(),
            },
        ),
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn report(name: &str, mut v: Vec<Duration>) {
    let n = v.len();
    let p50 = pct(&mut v, 0.50);
    let p99 = pct(&mut v, 0.99);
    let max = pct(&mut v, 1.0);
    println!(
        "{name:<44} n={n:<5} p50 {:>10}  p99 {:>10}  max {:>10}",
        ms(p50),
        ms(p99),
        ms(max)
    );
}

/// A backend that counts flushes (frames on screen).
struct Recording {
    inner: TestBackend,
    flushes: Arc<AtomicU64>,
}

impl Backend for Recording {
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
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.inner.flush()
    }
}

struct NoRunner;

impl EffectRunner for NoRunner {
    fn run(&mut self, _e: Effect) {}
}

fn main() {
    let idle_s: u64 = std::env::var("WALB_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let base = model();
    println!(
        "walb-console TUI: {} volumes, {} nodes, {} diffs held",
        base.vols.len(),
        base.nodes.len(),
        base.vols
            .values()
            .flat_map(|v| v.archives.values())
            .filter_map(|a| a.diffs.as_ref().map(Vec::len))
            .sum::<usize>()
    );

    // Redraw.
    for (w, h) in [(80u16, 24u16), (120, 40), (200, 60)] {
        for v in [View::Cluster, View::Volumes, View::Tasks, View::Events] {
            let mut m = base.clone();
            m.view = v;
            let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
            let mut times = Vec::new();
            for i in 0..200 {
                // Change something each frame so the diff is never empty.
                m.sel[v.index()] = i % 50;
                let t0 = Instant::now();
                t.draw(|f| view::draw(&m, f)).expect("draw");
                times.push(t0.elapsed());
            }
            report(&format!("redraw {:?} {w}x{h}", v), times);
        }
    }

    // Event → screen, direct.
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        let mut m = base.clone();
        m.view = View::Volumes;
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        let mut times = Vec::new();
        for i in 0..2000 {
            let (node, event) = synthetic(i);
            m.clock(T0 + i as u64 * 10);
            let t0 = Instant::now();
            let _ = update(&mut m, Msg::Live(LiveMsg::Event { node, event }));
            t.draw(|f| view::draw(&m, f)).expect("draw");
            times.push(t0.elapsed());
        }
        report(&format!("event -> screen (update + draw) {w}x{h}"), times);
    }

    // Burst.
    {
        let mut m = base.clone();
        m.view = View::Volumes;
        let mut t = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
        let mut times = Vec::new();
        for round in 0..20 {
            let t0 = Instant::now();
            for i in 0..1000 {
                let (node, event) = synthetic(round * 1000 + i);
                let _ = update(&mut m, Msg::Live(LiveMsg::Event { node, event }));
            }
            t.draw(|f| view::draw(&m, f)).expect("draw");
            times.push(t0.elapsed());
        }
        report("burst of 1000 events -> screen 120x40", times);
    }

    // Through the shell, and idle.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let flushes = Arc::new(AtomicU64::new(0));
        let backend = Recording {
            inner: TestBackend::new(120, 40),
            flushes: Arc::clone(&flushes),
        };
        let mut terminal = Terminal::new(backend).expect("terminal");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (_keys_tx, keys_rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
        let keys = tokio_stream(keys_rx);
        let mut m = base.clone();
        m.view = View::Volumes;
        let shell = async {
            let mut runner = NoRunner;
            let _ = run_loop(
                &mut terminal,
                &mut m,
                &mut rx,
                keys,
                &mut runner,
                Duration::from_secs(1),
            )
            .await;
        };
        let driver = async {
            // Let the first frame out.
            while flushes.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
            let mut times = Vec::new();
            for i in 0..1000 {
                let (node, event) = synthetic(i);
                let before = flushes.load(Ordering::SeqCst);
                let t0 = Instant::now();
                if tx.send(Msg::Live(LiveMsg::Event { node, event })).is_err() {
                    break;
                }
                while flushes.load(Ordering::SeqCst) == before {
                    tokio::task::yield_now().await;
                }
                times.push(t0.elapsed());
            }
            report("event -> screen through the shell 120x40", times);
            // Idle.
            let frames0 = flushes.load(Ordering::SeqCst);
            let (c0, w0) = (cpu_time(), Instant::now());
            tokio::time::sleep(Duration::from_secs(idle_s)).await;
            let (cpu, wall) = (cpu_time() - c0, w0.elapsed());
            let frames = flushes.load(Ordering::SeqCst) - frames0;
            println!(
                "idle {:.1} s: {frames} frames (clock ticks only), CPU {:.3} ms = {:.3}% of one core",
                wall.as_secs_f64(),
                cpu.as_secs_f64() * 1000.0,
                cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
            );
            let _ = tx.send(Msg::Key(ratatui::crossterm::event::KeyEvent::from(
                ratatui::crossterm::event::KeyCode::Char('q'),
            )));
        };
        tokio::join!(shell, driver);
    });
}

/// An unbounded receiver as a stream.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Msg>,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Msg>>> {
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
