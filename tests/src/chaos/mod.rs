//! `walb-chaos`: a seeded chaos harness for whole clusters.
//!
//! A run starts at least two storages with at least three volumes each on emulated
//! devices, two proxies and two archives ([`topology`]), a tagged random writer per
//! volume ([`writer`]), and executes a schedule drawn from the seed alone
//! ([`schedule`]): operations from the whole command set and faults (SIGKILL and restart
//! of any daemon or device process, links cut or slowed through relays, a proxy's or an
//! archive's disk filled, log overflows). The executor ([`run`]) checks the invariants
//! against the model of what each volume should hold ([`model`]) while it runs and once
//! the faults stopped, and keeps an operation log that a failure prints with its seed:
//! the same seed replays the same schedule.

pub mod model;
pub mod run;
pub mod schedule;
pub mod topology;
pub mod writer;

pub use run::{run, Options, Report};
pub use schedule::{generate, Plan};
