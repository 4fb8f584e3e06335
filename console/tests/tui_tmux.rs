//! The real `walb-console` terminal UI in tmux, driven by keys against the lab: init the
//! volume, full backup, snapshot, restore and del-restored, each result read from the
//! screen (`tmux capture-pane`) and checked on disk.
//!
//! Runs as root (the lab's emulated device is a block device only for root); otherwise it
//! prints why it skipped. Without `tmux` it fails naming the package (see
//! `tests/src/tools.rs`). The daemons and
//! `wdevc` are taken from `$WALB_BIN_DIR`, else next to the walb-console under test (built
//! with `cargo build --bins` once if missing). It also skips, saying so, while the
//! storage daemon answers "not implemented" (its implementation is landing separately).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/src/tools.rs"]
mod tools;

const CONSOLE: &str = env!("CARGO_BIN_EXE_walb-console");
const BINS: [&str; 4] = ["walb-storage", "walb-proxy", "walb-archive", "wdevc"];

fn skip(why: &str) {
    eprintln!("skipped: {why}");
}

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WALB_BIN_DIR") {
        return PathBuf::from(d);
    }
    let dir = Path::new(CONSOLE)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if BINS.iter().any(|b| !dir.join(b).exists()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut c = Command::new(cargo);
        c.args(["build", "--bins", "-p", "walb-daemon", "-p", "wdevc"]);
        if release {
            c.arg("--release");
        }
        let st = c.status();
        assert!(
            matches!(st, Ok(s) if s.success()),
            "building the daemons failed: {st:?}"
        );
    }
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A free base port: the lab uses it, +100 and +200 (UDP).
fn free_base() -> u16 {
    let seed = std::process::id() as u16;
    for i in 0..200u16 {
        let base = 30_000 + (seed.wrapping_add(i * 7) % 9_000);
        let ok = [0u16, 100, 200]
            .iter()
            .all(|o| std::net::UdpSocket::bind(("127.0.0.1", base + o)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no free ports");
}

/// Tears down the tmux server and the lab, whatever happened.
struct Guard {
    socket: String,
    lab: PathBuf,
    bins: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new(CONSOLE)
            .arg("lab")
            .arg("--dir")
            .arg(&self.lab)
            .arg("--bin-dir")
            .arg(&self.bins)
            .args(["down", "--purge", "--timeout", "10"])
            .output();
        let _ = std::fs::remove_dir_all(&self.lab);
    }
}

struct Tmux<'a> {
    socket: &'a str,
}

impl Tmux<'_> {
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", self.socket]);
        c
    }

    fn screen(&self) -> String {
        let o = run(self.tmux().args(["capture-pane", "-p", "-t", "tui"]));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Types literal text.
    fn typ(&self, s: &str) {
        run(self.tmux().args(["send-keys", "-t", "tui", "-l", s]));
    }

    /// Presses a named key (Enter, Escape, Tab).
    fn press(&self, key: &str) {
        run(self.tmux().args(["send-keys", "-t", "tui", key]));
    }

    fn alive(&self) -> bool {
        self.tmux()
            .args(["has-session", "-t", "tui"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until `find` finds something on the screen; panics with the screen after
    /// `limit`.
    fn wait<T>(&self, what: &str, limit: Duration, find: impl Fn(&str) -> Option<T>) -> T {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if let Some(t) = find(&s) {
                return t;
            }
            if t0.elapsed() > limit || !self.alive() {
                panic!("waited {limit:?} for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The text after `prefix` on the line that has it, up to the end of the line.
fn after<'a>(screen: &'a str, prefix: &str) -> Option<&'a str> {
    screen
        .lines()
        .find_map(|l| l.find(prefix).map(|i| l[i + prefix.len()..].trim_end()))
}

#[test]
fn the_tui_takes_the_lab_through_backup_snapshot_restore_and_del_restored() {
    if !nix::unistd::geteuid().is_root() {
        return skip("the lab's block device needs root");
    }
    if !tools::require(
        "the_tui_takes_the_lab_through_backup_snapshot_restore_and_del_restored",
        &["tmux", "mkfs.ext4", "mount", "umount"],
    ) {
        return;
    }
    let bins = bin_dir();
    let lab = std::env::temp_dir().join(format!("walb-tui-tmux-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&lab);
    let socket = format!("walb-tui-{}", std::process::id());
    let _guard = Guard {
        socket: socket.clone(),
        lab: lab.clone(),
        bins: bins.clone(),
    };
    let base = free_base();
    let up = run(Command::new(CONSOLE)
        .arg("lab")
        .arg("--dir")
        .arg(&lab)
        .arg("--bin-dir")
        .arg(&bins)
        .args(["up", "--no-backup", "--size-mb", "16", "--log-mb", "8"])
        .args(["--port-base", &base.to_string(), "--device"])
        .arg(format!("walb-tui-{}", std::process::id())));
    let up_text = text(&up);
    assert!(up.status.success(), "lab up failed:\n{up_text}");
    let wdev = up_text
        .lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("device ")?;
            let (_, path) = rest.split_once(" (")?;
            Some(path.trim_end_matches(')').to_owned())
        })
        .unwrap_or_else(|| panic!("no device line in:\n{up_text}"));
    let cluster = lab.join("cluster.toml");
    // The storage daemon may still be the placeholder.
    let probe = run(Command::new(CONSOLE)
        .arg("--cluster")
        .arg(&cluster)
        .args(["--exec", "get", "s0", "vol"]));
    if text(&probe).contains("not implemented") {
        return skip("the storage daemon is still a placeholder (answers \"not implemented\")");
    }

    let t = Tmux { socket: &socket };
    let cmd = format!(
        "env NO_COLOR=1 TERM=xterm-256color {CONSOLE} --cluster {}",
        cluster.display()
    );
    run(t.tmux().args([
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]));
    let long = Duration::from_secs(300);
    t.wait("every daemon up", Duration::from_secs(60), |s| {
        s.contains("4/4 up").then_some(())
    });

    // init-storage from the palette.
    t.typ(&format!(":init-storage s0 vol {wdev}"));
    t.press("Enter");
    t.wait("init-storage to end", long, |s| {
        after(s, &format!("init-storage s0 vol {wdev}: ")).map(|_| ())
    });
    let done = after(&t.screen(), &format!("init-storage s0 vol {wdev}: "))
        .unwrap_or_default()
        .to_owned();
    assert!(done.contains("Standby"), "init-storage: {done}");

    // Full backup from the Volumes view's action menu (cursor on s0, the first column).
    t.typ("2");
    t.wait("vol in the grid", long, |s| {
        s.lines().any(|l| l.contains("│vol ")).then_some(())
    });
    t.press("Enter");
    t.wait("the action menu", long, |s| {
        s.contains("full-backup s0 vol").then_some(())
    });
    t.typ("f");
    let gid = t.wait("the full backup", long, |s| {
        after(s, "full-backup s0 vol: ")
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
    });
    let s = t.screen();
    let row = s.lines().find(|l| l.contains("│vol ")).unwrap_or_default();
    assert!(
        row.contains("Target") && row.contains("Archived"),
        "after the full backup: {row}\n{s}"
    );
    eprintln!("full backup clean at gid {gid}");

    // Snapshot, waiting until a0 can restore it.
    t.press("Enter");
    t.wait("the action menu", long, |s| {
        s.contains("snapshot s0 vol a0").then_some(())
    });
    t.typ("n");
    let snap = t.wait("the snapshot", long, |s| {
        after(s, "snapshot s0 vol a0: ")
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
    });
    assert!(snap >= gid, "snapshot {snap} before the backup's gid {gid}");

    // Restore it from the Diffs view's snapshot list.
    t.typ("d");
    t.press("Tab");
    t.wait("the snapshot in the restorable list", long, |s| {
        s.lines()
            .any(|l| l.contains(&format!("│{snap} ")))
            .then_some(())
    });
    t.typ("G");
    t.press("Enter");
    t.wait("the gid's menu", long, |s| {
        s.contains(&format!("restore a0 vol {snap}")).then_some(())
    });
    t.typ("r");
    let path = t.wait("the restore", long, |s| {
        after(s, &format!("restore a0 vol {snap}: "))
            .filter(|p| p.starts_with('/'))
            .map(str::to_owned)
    });
    assert!(Path::new(&path).exists(), "restored image {path} missing");

    // del-restored asks first, naming the image.
    t.press("Enter");
    t.wait("the gid's menu", long, |s| {
        s.contains(&format!("del-restored a0 vol {snap}"))
            .then_some(())
    });
    t.typ("D");
    t.wait("the confirmation", long, |s| {
        (s.contains("this loses:") && s.contains(&format!("restored image of vol gid {snap}")))
            .then_some(())
    });
    t.typ("y");
    t.wait("del-restored", long, |s| {
        after(s, &format!("del-restored a0 vol {snap}: "))
            .filter(|r| r.starts_with("done"))
            .map(|_| ())
    });
    assert!(!Path::new(&path).exists(), "{path} still there");

    t.typ("q");
    let t0 = Instant::now();
    while t.alive() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!t.alive(), "q did not quit");
}
