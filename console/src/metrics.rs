//! `walb-console --exec metrics`: the console's live data in the Prometheus text
//! exposition format, for node_exporter's textfile collector.
//!
//! The data are the live model's ([`crate::model::load_snapshot`], the TUI's): states, log usage,
//! overflow and send-error flags, queue lengths, latest snapshots and lag (gids and
//! seconds), running operations with progress and throughput, reachability and errors.
//!
//! The families are one table ([`FAMILIES`]): a name, a help text and how to read the
//! samples out of the model. The text is written by the Prometheus project's client
//! library (`prometheus-client`, OpenMetrics text: `# HELP`, `# TYPE`, samples, a final
//! `# EOF`, which the 0.0.4 text parsers read as a comment). That library writes label
//! values as given, so they are escaped here ([`escape`]). Write it with `--out FILE`
//! (atomically: a temporary file renamed over FILE) so that the collector never reads
//! half a file.

use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use walb_wire::files;

use crate::model::{ArchiveVol, Live, LogUsage, Node, Queue, Reach, Task, Vol};

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

/// A label value, escaped when written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LabelValue(String);

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&escape(&self.0).as_str(), encoder)
    }
}

/// A sample's value: whole numbers are written without a fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    fn count(x: u64) -> Value {
        Value::Int(i64::try_from(x).unwrap_or(i64::MAX))
    }

    fn flag(x: bool) -> Value {
        Value::Int(i64::from(x))
    }

    /// A fraction or a rate; anything not finite is written as NaN.
    fn real(x: f64) -> Value {
        Value::Float(if x.is_finite() { x } else { f64::NAN })
    }
}

type Labels = Vec<(&'static str, LabelValue)>;

/// One sample of a family.
#[derive(Debug, Clone)]
struct Sample {
    labels: Labels,
    value: Value,
}

fn sample(labels: &[(&'static str, &str)], value: Value) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| (*k, LabelValue((*v).to_owned())))
            .collect(),
        value,
    }
}

/// One metric family (all gauges): its name, help and samples read from a model.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: fn(&Live) -> Vec<Sample>,
}

/// Per storage log: labels node, vol.
fn per_log(m: &Live, f: fn(&LogUsage) -> Value) -> Vec<Sample> {
    per_vol(m, |v, out| {
        for (node, l) in &v.log {
            out.push(sample(&[("node", node), ("vol", &v.name)], f(l)));
        }
    })
}

/// Per proxy queue: labels node (the proxy), vol, archive.
fn per_queue(m: &Live, f: fn(&Queue) -> Value) -> Vec<Sample> {
    per_vol(m, |v, out| {
        for ((p, a), q) in &v.queues {
            let labels = [("node", p.as_str()), ("vol", &v.name), ("archive", a)];
            out.push(sample(&labels, f(q)));
        }
    })
}

/// Per archive holding the volume, where `f` has a value: labels node, vol.
fn per_archive(m: &Live, f: fn(&Vol, &str, &ArchiveVol) -> Option<Value>) -> Vec<Sample> {
    per_vol(m, |v, out| {
        for (a, av) in &v.archives {
            if let Some(x) = f(v, a, av) {
                out.push(sample(&[("node", a), ("vol", &v.name)], x));
            }
        }
    })
}

fn per_vol(m: &Live, each: impl Fn(&Vol, &mut Vec<Sample>)) -> Vec<Sample> {
    let mut out = Vec::new();
    for v in m.vols.values() {
        each(v, &mut out);
    }
    out
}

/// Per running operation of a daemon (not the console's own commands), where `f` has a
/// value: labels node, vol, op.
fn per_task(m: &Live, f: fn(&Task) -> Option<Value>) -> Vec<Sample> {
    m.tasks
        .iter()
        .filter(|t| t.running() && t.command.is_none())
        .filter_map(|t| {
            let vol = t.vol.as_deref().unwrap_or("");
            f(t).map(|x| sample(&[("node", &t.node), ("vol", vol), ("op", &t.op)], x))
        })
        .collect()
}

/// Every family, in the order written.
const FAMILIES: &[Family] = &[
    Family {
        name: "walb_node_up",
        help: "Whether the console reached the daemon and subscribed to its events.",
        samples: |m| {
            let up = |n: &Node| Value::flag(n.reach == Reach::Up);
            let l = |n: &Node| {
                sample(
                    &[
                        ("node", &n.name),
                        ("role", n.role.as_str()),
                        ("addr", &n.addr),
                    ],
                    up(n),
                )
            };
            m.nodes.iter().map(l).collect()
        },
    },
    Family {
        name: "walb_node_info",
        help: "The daemon's software version (always 1).",
        samples: |m| {
            let l = |n: &Node| {
                let v = n.version.as_deref()?;
                let labels = [
                    ("node", n.name.as_str()),
                    ("role", n.role.as_str()),
                    ("version", v),
                ];
                Some(sample(&labels, Value::Int(1)))
            };
            m.nodes.iter().filter_map(l).collect()
        },
    },
    Family {
        name: "walb_node_uptime_seconds",
        help: "Seconds since the daemon started, where its status tells.",
        samples: |m| {
            let l = |n: &Node| {
                let u = n.uptime_now(m.now)?;
                Some(sample(&[("node", &n.name)], Value::count(u)))
            };
            m.nodes.iter().filter_map(l).collect()
        },
    },
    Family {
        name: "walb_node_errors",
        help: "Failed queries, refusals and lost connections seen while collecting.",
        samples: |m| {
            let l = |n: &Node| sample(&[("node", &n.name)], Value::count(n.errors));
            m.nodes.iter().map(l).collect()
        },
    },
    Family {
        name: "walb_volume_state",
        help: "The volume's state on a node (1 for the current state).",
        samples: |m| {
            per_vol(m, |v, out| {
                for (node, c) in &v.cells {
                    let role = m.role(node).map_or("?", |r| r.as_str());
                    let labels = [
                        ("node", node.as_str()),
                        ("role", role),
                        ("vol", &v.name),
                        ("state", c.state.name()),
                    ];
                    out.push(sample(&labels, Value::Int(1)));
                }
            })
        },
    },
    Family {
        name: "walb_volume_busy",
        help: "Whether the volume is in a temporary state (an operation runs) on a node.",
        samples: |m| {
            per_vol(m, |v, out| {
                for (node, c) in &v.cells {
                    let busy = Value::flag(!c.state.is_steady());
                    out.push(sample(&[("node", node), ("vol", &v.name)], busy));
                }
            })
        },
    },
    Family {
        name: "walb_log_usage_physical_blocks",
        help: "Storage: physical blocks of the log not yet shipped.",
        samples: |m| per_log(m, |l| Value::count(l.usage_pb)),
    },
    Family {
        name: "walb_log_capacity_physical_blocks",
        help: "Storage: capacity of the log device in physical blocks.",
        samples: |m| per_log(m, |l| Value::count(l.capacity_pb)),
    },
    Family {
        name: "walb_log_usage_ratio",
        help: "Storage: used fraction of the log device.",
        samples: |m| per_log(m, |l| Value::real(l.ratio())),
    },
    Family {
        name: "walb_log_overflow",
        help: "Storage: whether the log overflowed (the archive needs a hash or full backup).",
        samples: |m| {
            per_vol(m, |v, out| {
                for (node, of) in &v.overflow {
                    out.push(sample(
                        &[("node", node), ("vol", &v.name)],
                        Value::flag(*of),
                    ));
                }
            })
        },
    },
    Family {
        name: "walb_storage_latest_gid",
        help: "Storage: gid of the newest snapshot.",
        samples: |m| {
            per_vol(m, |v, out| {
                for (node, s) in &v.storage_latest {
                    out.push(sample(
                        &[("node", node), ("vol", &v.name)],
                        Value::count(s.gid),
                    ));
                }
            })
        },
    },
    Family {
        name: "walb_proxy_queue_diffs",
        help: "Proxy: diffs queued for an archive.",
        samples: |m| per_queue(m, |q| Value::count(q.diffs)),
    },
    Family {
        name: "walb_proxy_queue_bytes",
        help: "Proxy: bytes of the diffs queued for an archive.",
        samples: |m| per_queue(m, |q| Value::count(q.bytes)),
    },
    Family {
        name: "walb_proxy_send_error",
        help: "Proxy: whether sending to the archive gave up (until kick).",
        samples: |m| per_queue(m, |q| Value::flag(q.send_error)),
    },
    Family {
        name: "walb_archive_latest_gid",
        help: "Archive: gid of the latest snapshot.",
        samples: |m| per_archive(m, |_, _, av| Some(Value::count(av.latest?.gid))),
    },
    Family {
        name: "walb_archive_latest_timestamp_seconds",
        help: "Archive: time of the latest snapshot, seconds since the epoch.",
        samples: |m| per_archive(m, |_, _, av| Some(Value::count(av.latest?.timestamp_s))),
    },
    Family {
        name: "walb_archive_lag_gids",
        help: "Archive: gids between the storage's newest snapshot and the archive's latest.",
        samples: |m| per_archive(m, |v, a, _| v.lag(a).map(|l| Value::count(l.gids))),
    },
    Family {
        name: "walb_archive_lag_seconds",
        help: "Archive: seconds between the storage's newest snapshot and the archive's latest.",
        samples: |m| per_archive(m, |v, a, _| v.lag(a).map(|l| Value::count(l.secs))),
    },
    Family {
        name: "walb_archive_diffs",
        help: "Archive: diffs held.",
        samples: |m| {
            per_archive(m, |_, _, av| {
                Some(Value::count(av.diffs.as_ref()?.len() as u64))
            })
        },
    },
    Family {
        name: "walb_archive_diff_bytes",
        help: "Archive: bytes of the diffs held.",
        samples: |m| {
            per_archive(m, |_, _, av| {
                let d = av.diffs.as_ref()?;
                Some(Value::count(d.iter().map(|d| d.size).sum()))
            })
        },
    },
    Family {
        name: "walb_archive_restorable_snapshots",
        help: "Archive: restorable (explicit) snapshots.",
        samples: |m| {
            per_archive(m, |_, _, av| {
                Some(Value::count(av.restorable.as_ref()?.len() as u64))
            })
        },
    },
    Family {
        name: "walb_task_progress_ratio",
        help: "A running operation's done fraction.",
        samples: |m| per_task(m, |t| t.ratio().map(Value::real)),
    },
    Family {
        name: "walb_task_throughput_bytes_per_second",
        help: "A running operation's throughput over the sampling window.",
        // Whole bytes per second: a fraction of a byte tells nothing.
        samples: |m| per_task(m, |t| t.rate_bps.map(|r| Value::count(r.round() as u64))),
    },
    Family {
        name: "walb_task_remaining_seconds",
        help: "A running operation's estimated time left.",
        samples: |m| per_task(m, |t| t.eta_s().map(Value::count)),
    },
    Family {
        name: "walb_console_scrape_timestamp_seconds",
        help: "When these metrics were collected.",
        samples: |m| vec![sample(&[], Value::count(m.now / 1000))],
    },
];

/// The families with their samples, read out of one model: what the registry encodes.
#[derive(Debug)]
struct Collected(Vec<(&'static str, &'static str, Vec<Sample>)>);

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, samples) in &self.0 {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in samples {
                let e = family.encode_family(&s.labels)?;
                match s.value {
                    Value::Int(x) => ConstGauge::new(x).encode(e)?,
                    Value::Float(x) => ConstGauge::new(x).encode(e)?,
                }
            }
        }
        Ok(())
    }
}

/// The metrics of `m`, as exposition text.
pub fn render(m: &Live) -> String {
    let collected = FAMILIES
        .iter()
        .map(|f| (f.name, f.help, (f.samples)(m)))
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collected(collected)));
    let mut text = String::new();
    // Writing into a String cannot fail; an error would come from a label or value the
    // library refuses, and then the text so far is still well-formed lines.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!("encoding the metrics failed: {e}");
    }
    text
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
