//! walb-console: the operator's console.
//!
//! For now it manages cluster certificates (`walb-console ca init`, `ca issue`); the
//! terminal UI, `--exec` scripting and the `lab` commands come later as further
//! subcommands of the same binary.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap), one enum variant per command group.
//! - [`ca`]: the `ca` commands, as plain functions over paths (testable without a
//!   process).

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod ca;
pub mod cli;
