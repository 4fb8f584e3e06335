//! walb-console: the operator's console and the client library.
//!
//! # Layout
//!
//! - [`cluster`]: the cluster file (nodes, roles, addresses, backup groups, the console's
//!   certificate) and where it is found.
//! - [`client`]: [`client::Client`], one QUIC endpoint and a typed call for every query
//!   and command of the daemon contract.
//! - [`ops`]: walblib's blocking operations (init-storage, stop, full-backup, snapshot,
//!   restore, waits) on top of the client; their decisions are pure functions.
//! - [`poll`]: the one poll-until-a-deadline loop every wait uses.
//! - [`exec`]: `--exec`: the command table (parsing, running), output formats (text and
//!   JSON), scripts on stdin.
//! - [`lab`]: `lab up|status|down|stop|kill|start`, the tutorial's cluster on one machine.
//! - [`model`]: the live model of the cluster (nodes, volumes, tasks, the log), kept
//!   current by the daemons' events; the TUI, the dump and metrics read it.
//! - [`tui`]: the terminal UI (live views from the daemons' event streams), and the
//!   one-shot status dump when stdout is not a terminal.
//! - [`progress`]: the progress bars of long `--exec` commands on stderr (a terminal only).
//! - [`metrics`]: `--exec metrics`, the same live data in Prometheus text format.
//! - [`cli`]: the command line (clap).
//! - [`ca`]: the `ca` commands, as plain functions over paths.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod ca;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod exec;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod poll;
pub mod procs;
pub mod progress;
pub mod scan;
pub mod tui;
