//! The command line of `walb-console`.
//!
//! One top-level subcommand per command group: `ca` now; the TUI, `exec` and `lab` join
//! as further variants of [`Command`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use walb_wire::Role;

/// walb operations console.
#[derive(Debug, Parser)]
#[command(name = "walb-console", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the cluster CA and peer certificates.
    #[command(subcommand)]
    Ca(CaCommand),
}

/// `walb-console ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the cluster CA (ca.crt, ca.key).
    Init {
        /// Directory of the CA [default: $XDG_CONFIG_HOME/walb/certs].
        #[arg(long)]
        ca_dir: Option<PathBuf>,
        /// Name of the cluster, in the CA's common name.
        #[arg(long, default_value = "walb")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = walb_wire::certs::CA_DAYS_DEFAULT)]
        days: i64,
        /// Overwrite an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate and key for one peer.
    Issue {
        /// The peer's role.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The peer's id (1-64 of [0-9A-Za-z._-]).
        #[arg(long)]
        id: String,
        /// A host name or address to add to the certificate (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Directory of the CA [default: $XDG_CONFIG_HOME/walb/certs].
        #[arg(long)]
        ca_dir: Option<PathBuf>,
        /// Where to write ROLE-ID.crt, ROLE-ID.key and a copy of ca.crt [default: the CA
        /// directory].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = walb_wire::certs::CERT_DAYS_DEFAULT)]
        days: i64,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: walb_wire::identity::IdentityError| e.to_string())
}
