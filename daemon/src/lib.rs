//! The walb daemons: `walb-storage`, `walb-proxy` and `walb-archive`.
//!
//! One crate, one shared main ([`server::main_for`]). The layers, from pure to IO:
//!
//! - [`state`]: the volume state machines of each role, as transition tables (pure).
//! - [`task`]: delayed task queues and retry backoff (pure, time is a parameter).
//! - [`clock`]: the daemon's clock (real, or virtual in tests) for timers, backoffs,
//!   policies and snapshot timestamps.
//! - [`persist`]: atomic, durable small files and the base-directory lock.
//! - [`vol`]: a volume's live state shared by tokio tasks (transactions that roll back
//!   when dropped, actions, stop flag, state events).
//! - [`dto`]: kernel snapshot model ↔ wire DTOs, validated on the way in.
//! - [`peers`]: who may touch a volume (the peers bound to it) and the admission check.
//! - [`bulk`]: an image sent as bulks in address order (full backup, full replication).
//! - `dio`: direct-IO writes of files written once (images, wdiffs), with a page-cache
//!   fallback.
//! - [`diffsend`]: a chain of wdiffs sent as one (proxy transfers, replication rounds).
//! - [`fgq`]: foreground slots and the fair, bounded queue of the tasks waiting for one.
//! - [`session`]: what the roles' calls run in: context, refusals and the mapping of
//!   errors to wire errors, the sync/async bridge and blocking work, step expectation,
//!   temporary-file guards.
//! - [`server`]: the QUIC node, the accept loop, signals, shutdown, and the answers every
//!   role gives (host type, pid, version).
//! - [`storage`], [`proxy`], [`archive`]: the roles.
//! - [`opts`]: command-line options.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod archive;
pub mod bulk;
pub mod clock;
pub mod diffsend;
mod dio;
pub mod dto;
pub mod encode;
pub mod fgq;
pub mod opts;
pub mod peers;
pub mod persist;
pub mod proxy;
pub mod server;
pub mod session;
pub mod state;
pub mod storage;
pub mod task;
pub mod vol;
