//! `walb-console --exec metrics`: the console's live data in the Prometheus text
//! exposition format (version 0.0.4), for node_exporter's textfile collector.
//!
//! The data are the TUI's ([`crate::tui::app::load_snapshot`]): states, log usage,
//! overflow and send-error flags, queue lengths, latest snapshots and lag (gids and
//! seconds), running operations with progress and throughput, reachability and errors.
//! Every metric has `# HELP` and `# TYPE`; label values are escaped. Write it with
//! `--out FILE` (atomically: a temporary file renamed over FILE) so that the collector
//! never reads half a file.

use std::fmt::Write as _;
use std::path::Path;

use walb_wire::files;

use crate::tui::model::{is_temporary, Model, Reach};

/// Escapes a label value (backslash, double quote, newline).
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let v = if value.is_finite() {
            format!("{value}")
        } else {
            "NaN".to_owned()
        };
        if l.is_empty() {
            let _ = writeln!(self.text, "{name} {v}");
        } else {
            let _ = writeln!(self.text, "{name}{{{}}} {v}", l.join(","));
        }
    }
}

fn b(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// The metrics of `m`, as exposition text.
pub fn render(m: &Model) -> String {
    let mut o = Out {
        text: String::new(),
    };
    o.family(
        "walb_node_up",
        "gauge",
        "Whether the console reached the daemon and subscribed to its events.",
    );
    for n in &m.nodes {
        o.sample(
            "walb_node_up",
            &[
                ("node", &n.name),
                ("role", n.role.as_str()),
                ("addr", &n.addr),
            ],
            b(n.reach == Reach::Up),
        );
    }
    o.family(
        "walb_node_info",
        "gauge",
        "The daemon's software version (always 1).",
    );
    for n in &m.nodes {
        if let Some(v) = &n.version {
            o.sample(
                "walb_node_info",
                &[("node", &n.name), ("role", n.role.as_str()), ("version", v)],
                1.0,
            );
        }
    }
    o.family(
        "walb_node_uptime_seconds",
        "gauge",
        "Seconds since the daemon started, where its status tells.",
    );
    for n in &m.nodes {
        if let Some(u) = n.uptime_now(m.now) {
            o.sample("walb_node_uptime_seconds", &[("node", &n.name)], u as f64);
        }
    }
    o.family(
        "walb_node_errors",
        "gauge",
        "Failed queries, refusals and lost connections seen while collecting.",
    );
    for n in &m.nodes {
        o.sample("walb_node_errors", &[("node", &n.name)], n.errors as f64);
    }
    o.family(
        "walb_volume_state",
        "gauge",
        "The volume's state on a node (1 for the current state).",
    );
    for v in m.vols.values() {
        for (node, c) in &v.cells {
            let role = m.role(node).map_or("?", |r| r.as_str());
            o.sample(
                "walb_volume_state",
                &[
                    ("node", node),
                    ("role", role),
                    ("vol", &v.name),
                    ("state", &c.state),
                ],
                1.0,
            );
        }
    }
    o.family(
        "walb_volume_busy",
        "gauge",
        "Whether the volume is in a temporary state (an operation runs) on a node.",
    );
    for v in m.vols.values() {
        for (node, c) in &v.cells {
            o.sample(
                "walb_volume_busy",
                &[("node", node), ("vol", &v.name)],
                b(is_temporary(&c.state)),
            );
        }
    }
    o.family(
        "walb_log_usage_physical_blocks",
        "gauge",
        "Storage: physical blocks of the log not yet shipped.",
    );
    for v in m.vols.values() {
        for (node, l) in &v.log {
            o.sample(
                "walb_log_usage_physical_blocks",
                &[("node", node), ("vol", &v.name)],
                l.usage_pb as f64,
            );
        }
    }
    o.family(
        "walb_log_capacity_physical_blocks",
        "gauge",
        "Storage: capacity of the log device in physical blocks.",
    );
    for v in m.vols.values() {
        for (node, l) in &v.log {
            o.sample(
                "walb_log_capacity_physical_blocks",
                &[("node", node), ("vol", &v.name)],
                l.capacity_pb as f64,
            );
        }
    }
    o.family(
        "walb_log_usage_ratio",
        "gauge",
        "Storage: used fraction of the log device.",
    );
    for v in m.vols.values() {
        for (node, l) in &v.log {
            o.sample(
                "walb_log_usage_ratio",
                &[("node", node), ("vol", &v.name)],
                l.ratio(),
            );
        }
    }
    o.family(
        "walb_log_overflow",
        "gauge",
        "Storage: whether the log overflowed (the archive needs a hash or full backup).",
    );
    for v in m.vols.values() {
        for (node, of) in &v.overflow {
            o.sample(
                "walb_log_overflow",
                &[("node", node), ("vol", &v.name)],
                b(*of),
            );
        }
    }
    o.family(
        "walb_storage_latest_gid",
        "gauge",
        "Storage: gid of the newest snapshot.",
    );
    for v in m.vols.values() {
        for (node, s) in &v.storage_latest {
            o.sample(
                "walb_storage_latest_gid",
                &[("node", node), ("vol", &v.name)],
                s.gid as f64,
            );
        }
    }
    o.family(
        "walb_proxy_queue_diffs",
        "gauge",
        "Proxy: diffs queued for an archive.",
    );
    for v in m.vols.values() {
        for ((p, a), q) in &v.queues {
            o.sample(
                "walb_proxy_queue_diffs",
                &[("node", p), ("vol", &v.name), ("archive", a)],
                q.diffs as f64,
            );
        }
    }
    o.family(
        "walb_proxy_queue_bytes",
        "gauge",
        "Proxy: bytes of the diffs queued for an archive.",
    );
    for v in m.vols.values() {
        for ((p, a), q) in &v.queues {
            o.sample(
                "walb_proxy_queue_bytes",
                &[("node", p), ("vol", &v.name), ("archive", a)],
                q.bytes as f64,
            );
        }
    }
    o.family(
        "walb_proxy_send_error",
        "gauge",
        "Proxy: whether sending to the archive gave up (until kick).",
    );
    for v in m.vols.values() {
        for ((p, a), q) in &v.queues {
            o.sample(
                "walb_proxy_send_error",
                &[("node", p), ("vol", &v.name), ("archive", a)],
                b(q.send_error),
            );
        }
    }
    o.family(
        "walb_archive_latest_gid",
        "gauge",
        "Archive: gid of the latest snapshot.",
    );
    for v in m.vols.values() {
        for (a, av) in &v.archives {
            if let Some(l) = av.latest {
                o.sample(
                    "walb_archive_latest_gid",
                    &[("node", a), ("vol", &v.name)],
                    l.gid as f64,
                );
            }
        }
    }
    o.family(
        "walb_archive_latest_timestamp_seconds",
        "gauge",
        "Archive: time of the latest snapshot, seconds since the epoch.",
    );
    for v in m.vols.values() {
        for (a, av) in &v.archives {
            if let Some(l) = av.latest {
                o.sample(
                    "walb_archive_latest_timestamp_seconds",
                    &[("node", a), ("vol", &v.name)],
                    l.timestamp_s as f64,
                );
            }
        }
    }
    o.family(
        "walb_archive_lag_gids",
        "gauge",
        "Archive: gids between the storage's newest snapshot and the archive's latest.",
    );
    for v in m.vols.values() {
        for a in v.archives.keys() {
            if let Some(l) = v.lag(a) {
                o.sample(
                    "walb_archive_lag_gids",
                    &[("node", a), ("vol", &v.name)],
                    l.gids as f64,
                );
            }
        }
    }
    o.family(
        "walb_archive_lag_seconds",
        "gauge",
        "Archive: seconds between the storage's newest snapshot and the archive's latest.",
    );
    for v in m.vols.values() {
        for a in v.archives.keys() {
            if let Some(l) = v.lag(a) {
                o.sample(
                    "walb_archive_lag_seconds",
                    &[("node", a), ("vol", &v.name)],
                    l.secs as f64,
                );
            }
        }
    }
    o.family("walb_archive_diffs", "gauge", "Archive: diffs held.");
    for v in m.vols.values() {
        for (a, av) in &v.archives {
            if let Some(d) = &av.diffs {
                o.sample(
                    "walb_archive_diffs",
                    &[("node", a), ("vol", &v.name)],
                    d.len() as f64,
                );
            }
        }
    }
    o.family(
        "walb_archive_diff_bytes",
        "gauge",
        "Archive: bytes of the diffs held.",
    );
    for v in m.vols.values() {
        for (a, av) in &v.archives {
            if let Some(d) = &av.diffs {
                o.sample(
                    "walb_archive_diff_bytes",
                    &[("node", a), ("vol", &v.name)],
                    d.iter().map(|d| d.size).sum::<u64>() as f64,
                );
            }
        }
    }
    o.family(
        "walb_archive_restorable_snapshots",
        "gauge",
        "Archive: restorable (explicit) snapshots.",
    );
    for v in m.vols.values() {
        for (a, av) in &v.archives {
            if let Some(r) = &av.restorable {
                o.sample(
                    "walb_archive_restorable_snapshots",
                    &[("node", a), ("vol", &v.name)],
                    r.len() as f64,
                );
            }
        }
    }
    let running: Vec<_> = m
        .tasks
        .iter()
        .filter(|t| t.running() && t.command.is_none())
        .collect();
    o.family(
        "walb_task_progress_ratio",
        "gauge",
        "A running operation's done fraction.",
    );
    for t in &running {
        if let Some(r) = t.ratio() {
            let vol = t.vol.as_deref().unwrap_or("");
            o.sample(
                "walb_task_progress_ratio",
                &[("node", &t.node), ("vol", vol), ("op", &t.op)],
                r,
            );
        }
    }
    o.family(
        "walb_task_throughput_bytes_per_second",
        "gauge",
        "A running operation's throughput over the sampling window.",
    );
    for t in &running {
        if let Some(r) = t.rate_bps {
            let vol = t.vol.as_deref().unwrap_or("");
            o.sample(
                "walb_task_throughput_bytes_per_second",
                &[("node", &t.node), ("vol", vol), ("op", &t.op)],
                r,
            );
        }
    }
    o.family(
        "walb_task_remaining_seconds",
        "gauge",
        "A running operation's estimated time left.",
    );
    for t in &running {
        if let Some(s) = t.eta_s() {
            let vol = t.vol.as_deref().unwrap_or("");
            o.sample(
                "walb_task_remaining_seconds",
                &[("node", &t.node), ("vol", vol), ("op", &t.op)],
                s as f64,
            );
        }
    }
    o.family(
        "walb_console_scrape_timestamp_seconds",
        "gauge",
        "When these metrics were collected.",
    );
    o.sample(
        "walb_console_scrape_timestamp_seconds",
        &[],
        (m.now / 1000) as f64,
    );
    o.text
}

/// Writes `text` to `path` atomically, mode 0644 (a textfile collector runs as another
/// user): an exclusive temporary file in the same directory, synced and renamed over it,
/// never written through a link ([`walb_wire::files`]).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    files::write_file(
        path,
        text.as_bytes(),
        files::MODE_PUBLIC,
        files::Place::Replace,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
