//! Progress bars of long `--exec` commands, on standard error.
//!
//! A full or hash backup, a restore, a replication, a virt-full-scan, a merge or an apply
//! can run for hours; the archive that does the work publishes
//! [`Event::Progress`] (blocks done of blocks in all) as it goes. While such a command
//! waits, `walb-console --exec` follows those events and draws an `indicatif` bar on
//! stderr: bytes done of the total, the rate and the time left (a spinner with the elapsed
//! time until the first event, and for a merge, whose archive publishes none).
//!
//! - [`wanted`] decides whether to draw at all: only when stderr is a terminal and
//!   `--quiet` was not given. Otherwise nothing is subscribed and nothing is written, so
//!   logs and scripts see exactly what they saw before. Standard output is never touched.
//! - [`watches`] says whose events a command follows (a pure function of the command and
//!   the cluster file).
//! - [`Bar`] subscribes before the command is sent and draws until dropped; lines that
//!   must reach stderr meanwhile (`queued: ...`) go through [`Bar::println`], so they
//!   are printed above the bar instead of through it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::debug;
use walb_wire::msg::Event;
use walb_wire::Role;

use crate::client::Client;
use crate::cluster::Cluster;
use crate::exec::commands::{ArchiveCmd, BackupCmd, ExecCmd};
use crate::ops;

/// The `op` of the archive's progress while it receives a full backup.
pub const OP_FULL_SYNC: &str = "full-sync";
/// ... a hash backup.
pub const OP_HASH_SYNC: &str = "hash-sync";
/// ... while it sends an image to `virt-full-scan`.
pub const OP_VIRT_FULL_SCAN: &str = "virt-full-scan";

/// Logical block size of the blocks progress events count.
const LBS: u64 = 512;
/// How often the spinner and the elapsed time move between events.
const TICK: Duration = Duration::from_millis(200);

/// Whether `--exec` draws progress bars: stderr is a terminal and `--quiet` was not given.
pub fn wanted(stderr_is_terminal: bool, quiet: bool) -> bool {
    stderr_is_terminal && !quiet
}

/// One stream of progress events a command follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The daemon that publishes them.
    pub node: String,
    /// The volume.
    pub vol: String,
    /// The operation, as the events name it.
    pub op: &'static str,
}

/// The progress a command follows; empty for the commands that do not wait long (and for
/// a backup of a storage the cluster file gives no archive: the command fails anyway).
pub fn watches(cmd: &ExecCmd, cluster: &Cluster) -> Vec<Watch> {
    let at = |node: &str, vol: &str, op: &'static str| Watch {
        node: node.to_owned(),
        vol: vol.to_owned(),
        op,
    };
    let primary = |storage: &str, what: &str| {
        cluster
            .group(storage, what)
            .ok()
            .map(|g| g.archive.name.clone())
    };
    match cmd {
        ExecCmd::Backup(BackupCmd::FullBackup { node, vol, .. }) => primary(node, "full-backup")
            .map(|a| vec![at(&a, vol, OP_FULL_SYNC)])
            .unwrap_or_default(),
        ExecCmd::Backup(BackupCmd::HashBackup { node, vol, .. }) => primary(node, "hash-backup")
            .map(|a| vec![at(&a, vol, OP_HASH_SYNC)])
            .unwrap_or_default(),
        ExecCmd::Backup(BackupCmd::Restore { archive, vol, .. }) => {
            vec![at(archive, vol, ops::OP_RESTORE)]
        }
        ExecCmd::Archive(ArchiveCmd::Merge { archive, vol, .. }) => {
            vec![at(archive, vol, ops::OP_MERGE)]
        }
        ExecCmd::Archive(ArchiveCmd::Apply { archive, vol, .. }) => {
            vec![at(archive, vol, ops::OP_APPLY)]
        }
        ExecCmd::Archive(ArchiveCmd::VirtFullScan { archive, vol, .. }) => {
            vec![at(archive, vol, OP_VIRT_FULL_SCAN)]
        }
        // The destination counts the blocks of a full copy as they arrive and those of its
        // image as it hashes them for a hash round (the source counts a full copy too:
        // following both would draw two counts on one bar).
        ExecCmd::Archive(ArchiveCmd::Replicate { vol, dst, .. }) => {
            vec![at(dst, vol, ops::REPL_OP)]
        }
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|w| {
        cluster
            .node_as(&w.node, &[Role::Archive], "progress")
            .is_ok()
    })
    .collect()
}

/// What a progress event does to the bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The first event, or a new phase (another total, or a count that went back, as when
    /// a replication starts its copy over): start measuring the rate afresh from `done`.
    Start {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// More of the same phase done.
    Advance {
        /// Bytes done.
        done: u64,
    },
    /// A phase ended (`done == total`): the bar is full if it was drawn, and nothing is
    /// drawn for a phase it never saw run (a replication's source ends with "1 of 1").
    Complete,
}

/// The step of an event of `done_lb` of `total_lb` blocks, the bar being at `pos` of
/// `len` bytes (`len` `None` before the first event).
pub fn step(len: Option<u64>, pos: u64, done_lb: u64, total_lb: u64) -> Step {
    if done_lb >= total_lb {
        return Step::Complete;
    }
    let (done, total) = (done_lb.saturating_mul(LBS), total_lb.saturating_mul(LBS));
    if len != Some(total) || done < pos {
        Step::Start { done, total }
    } else {
        Step::Advance { done }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} \
         {percent}% {elapsed}, {eta} left",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Applies one event to the bar.
fn show(bar: &ProgressBar, done_lb: u64, total_lb: u64) {
    match step(bar.length(), bar.position(), done_lb, total_lb) {
        Step::Start { done, total } => {
            bar.set_style(bar_style());
            bar.set_length(total);
            bar.set_position(done);
            // The rate counts from here, not from the jump to `done`.
            bar.reset_eta();
        }
        Step::Advance { done } => bar.set_position(done),
        Step::Complete => {
            if let Some(len) = bar.length() {
                bar.set_position(len);
            }
        }
    }
}

/// A progress bar on stderr that follows a command's [`Watch`]es until dropped.
#[derive(Clone, Default)]
pub struct Bar {
    inner: Arc<Mutex<Option<Live>>>,
}

struct Live {
    bar: ProgressBar,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bar {
    /// Starts following `watches` (subscribing to each node's events of the volume; call
    /// it before sending the command) and draws `label` with a spinner meanwhile. Nothing
    /// happens without watches.
    pub async fn start(&self, client: &Client, label: String, watches: Vec<Watch>) {
        self.finish();
        if watches.is_empty() {
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(spinner_style());
        bar.set_prefix(label);
        bar.enable_steady_tick(TICK);
        let mut tasks = Vec::new();
        for w in watches {
            let mut stream = match client.subscribe(&w.node, vec![w.vol.clone()]).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(node = %w.node, "no progress events: {e}");
                    continue;
                }
            };
            let bar = bar.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(ev)) = stream.next().await {
                    if let Event::Progress {
                        vol,
                        op,
                        done_lb,
                        total_lb,
                    } = ev
                    {
                        if vol == w.vol && op == w.op {
                            show(&bar, done_lb, total_lb);
                        }
                    }
                }
            }));
        }
        if let Ok(mut live) = self.inner.lock() {
            *live = Some(Live { bar, tasks });
        }
    }

    /// Stops following and leaves the bar's last state on the terminal (a spinner that
    /// never got an event is cleared).
    pub fn finish(&self) {
        let live = self.inner.lock().ok().and_then(|mut l| l.take());
        // Dropping `Live` ends the event tasks.
        if let Some(live) = live {
            if live.bar.length().is_some() {
                live.bar.abandon();
            } else {
                live.bar.finish_and_clear();
            }
        }
    }

    /// Prints `line` on stderr, above the bar while one is drawn.
    pub fn println(&self, line: &str) {
        let bar = self
            .inner
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|l| l.bar.clone()));
        match bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_and_never_with_quiet() {
        assert!(wanted(true, false));
        assert!(!wanted(true, true));
        assert!(!wanted(false, false));
        assert!(!wanted(false, true));
    }

    fn cmd(line: &str) -> ExecCmd {
        crate::exec::parse_line(line)
            .expect("a valid command")
            .expect("not a blank line")
    }

    #[test]
    fn long_commands_follow_the_archive_that_does_the_work() {
        let cl = crate::cluster::test_cluster();
        let w = |n: &str, op: &'static str| Watch {
            node: n.into(),
            vol: "vol".into(),
            op,
        };
        assert_eq!(
            watches(&cmd("full-backup s0 vol"), &cl),
            [w("a0", "full-sync")]
        );
        assert_eq!(
            watches(&cmd("hash-backup s0 vol"), &cl),
            [w("a0", "hash-sync")]
        );
        assert_eq!(watches(&cmd("restore a1 vol 5"), &cl), [w("a1", "restore")]);
        assert_eq!(watches(&cmd("apply a0 vol 5"), &cl), [w("a0", "apply")]);
        assert_eq!(watches(&cmd("merge a0 vol 1 5"), &cl), [w("a0", "merge")]);
        assert_eq!(
            watches(&cmd("virt-full-scan a0 vol 5 out.img"), &cl),
            [w("a0", "virt-full-scan")]
        );
        assert_eq!(
            watches(&cmd("replicate a0 vol a1"), &cl),
            [w("a1", "replicate")]
        );
        // Quick commands draw nothing; a node that is no archive is not followed.
        assert!(watches(&cmd("state-all vol"), &cl).is_empty());
        assert!(watches(&cmd("snapshot s0 vol a0"), &cl).is_empty());
        assert!(watches(&cmd("restore s0 vol 5"), &cl).is_empty());
        assert!(watches(&cmd("full-backup p0 vol"), &cl).is_empty());
    }

    #[test]
    fn a_new_total_or_a_count_going_back_starts_a_phase() {
        assert_eq!(
            step(None, 0, 8, 16),
            Step::Start {
                done: 4096,
                total: 8192
            }
        );
        assert_eq!(step(Some(8192), 4096, 12, 16), Step::Advance { done: 6144 });
        // A replication that starts its copy over.
        assert_eq!(
            step(Some(8192), 6144, 2, 16),
            Step::Start {
                done: 1024,
                total: 8192
            }
        );
        // A restore after a full sync on the same bar: another size.
        assert_eq!(
            step(Some(8192), 8192, 0, 32),
            Step::Start {
                done: 0,
                total: 16384
            }
        );
        // The end of a phase fills the bar; a replication's "1 of 1" at its source (or a
        // count beyond the total) does not start a bar of one block.
        assert_eq!(step(Some(8192), 6144, 16, 16), Step::Complete);
        assert_eq!(step(Some(8192), 6144, 1, 1), Step::Complete);
        assert_eq!(step(None, 0, 1, 1), Step::Complete);
        assert_eq!(step(None, 0, 20, 16), Step::Complete);
    }
}
