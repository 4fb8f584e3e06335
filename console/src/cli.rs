//! The command line of `walb-console`.
//!
//! Console-wide options (`--cluster`, `--json`, `--quiet`, `--debug`) come first; then either
//! `--exec CMD ARGS...` (everything after `--exec` belongs to the command, see
//! [`crate::exec`]) or one subcommand per command group: `ca`, `lab`. With neither, the
//! terminal UI opens on the cluster file (`--read-only`, `--log FILE`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use walb_wire::Role;

/// walb operations console.
#[derive(Debug, Parser)]
#[command(
    name = "walb-console",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Cluster file [default: $WALB_CLUSTER, else ~/.config/walb/cluster.toml, else the
    /// lab's].
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Print machine-readable results (JSON; one object per line for scripts).
    #[arg(long)]
    pub json: bool,
    /// `--exec`: draw no progress bars (they are drawn on stderr only when it is a
    /// terminal; standard output is the same either way).
    #[arg(long, short)]
    pub quiet: bool,
    /// Debug logging (on stderr; the terminal UI logs only to --log).
    #[arg(long)]
    pub debug: bool,
    /// Terminal UI: hide every action, run only queries (a viewer certificate forces it).
    #[arg(long)]
    pub read_only: bool,
    /// Terminal UI: write the log to this file (the terminal UI never logs to the
    /// terminal; without this it logs nowhere).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Run one command (`--exec help` lists them); `--exec -` runs a script from stdin,
    /// one command per line. Everything after --exec belongs to the command.
    #[arg(
        long,
        num_args = 1..,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub exec: Option<Vec<String>>,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the cluster CA and peer certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Run the tutorial's cluster (s0, p0, a0, a1 and an emulated device) on this machine.
    Lab(LabArgs),
}

/// `walb-console lab ...`
#[derive(Debug, Args)]
pub struct LabArgs {
    /// The lab directory [default: ~/.local/share/walb/lab].
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// Where walb-storage, walb-proxy, walb-archive and wdevc are [default: next to
    /// walb-console, then PATH]; `up` remembers it for the other lab commands.
    #[arg(long, global = true)]
    pub bin_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// Lab commands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create (or resume) the lab: certificates, device, daemons, init-storage, full-backup.
    Up(LabUpArgs),
    /// Pids and volume states of the daemons, and the device.
    Status,
    /// Shut the daemons down (SIGKILL after --timeout) and delete the device.
    Down {
        /// Seconds to wait for a graceful shutdown.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Remove the lab directory too.
        #[arg(long)]
        purge: bool,
    },
    /// Stop one daemon with SIGTERM.
    Stop {
        /// s0, p0, a0 or a1.
        node: String,
        /// Seconds to wait for it to exit.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Kill one daemon with SIGKILL.
    Kill {
        /// s0, p0, a0 or a1.
        node: String,
    },
    /// Start one daemon again (same arguments as up).
    Start {
        /// s0, p0, a0 or a1.
        node: String,
    },
    /// Grow the running lab by one daemon: its certificate, its cluster-file entry, the
    /// daemon started (a storage backs up to a0 through the lab's proxies; a proxy joins
    /// s0's proxies; an archive is a replication target).
    AddNode {
        /// storage, proxy or archive.
        role: String,
        /// Its id (s1, p1, a2, ...).
        name: String,
    },
}

/// `lab up` options (a lab that exists keeps its own settings).
#[derive(Debug, Args)]
pub struct LabUpArgs {
    /// Storage port; the proxy listens on +100, the archives on +200 (a0) and +201 (a1).
    #[arg(long, default_value_t = 10000)]
    pub port_base: u16,
    /// The volume.
    #[arg(long, default_value = "vol")]
    pub vol: String,
    /// The WalB device's name.
    #[arg(long, default_value = "walb-lab")]
    pub device: String,
    /// Data device size, MiB.
    #[arg(long, default_value_t = 64)]
    pub size_mb: u64,
    /// Log device size, MiB [default: the data device and half again, at least 16, so that
    /// a burst rewriting the whole device fits before anything is shipped].
    #[arg(long)]
    pub log_mb: Option<u64>,
    /// Emulate the device without a block device or FUSE file (control socket only).
    #[arg(long)]
    pub no_block: bool,
    /// Run the device on the WalB kernel driver (root, walb module loaded) instead of the
    /// userspace emulator.
    #[arg(long, conflicts_with = "no_block")]
    pub driver: bool,
    /// Log device to use instead of an image in the lab directory (e.g. an LVM volume);
    /// formatted with format-ldev when it has no WalB superblock.
    #[arg(long, requires = "ddev")]
    pub ldev: Option<PathBuf>,
    /// Data device to use instead of an image in the lab directory.
    #[arg(long, requires = "ldev")]
    pub ddev: Option<PathBuf>,
    /// Only start things: no init-storage, no full backup.
    #[arg(long)]
    pub no_backup: bool,
    /// Seconds the full backup may take.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
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
    /// Revoke a certificate: add it to the deny list (revoked.txt) beside the CA
    /// certificate, and beside the ca.crt of each --out-dir. Daemons read it at start and
    /// on SIGHUP: they refuse the certificate's handshakes and close its connections.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["id", "serial"])))]
    Revoke {
        /// Every certificate of this identity, ROLE/ID (for example operator/alice).
        #[arg(long, value_name = "ROLE/ID")]
        id: Option<String>,
        /// The certificate of this serial number, hex (`ca issue` prints it).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// Directory of the CA [default: $XDG_CONFIG_HOME/walb/certs].
        #[arg(long)]
        ca_dir: Option<PathBuf>,
        /// A daemon's certificate directory (holding its ca.crt) to write the deny list
        /// into as well (repeatable).
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dirs: Vec<PathBuf>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: walb_wire::identity::IdentityError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn everything_after_exec_belongs_to_the_command() {
        let c = Cli::try_parse_from([
            "walb-console",
            "--json",
            "--cluster",
            "c.toml",
            "--exec",
            "restore",
            "a0",
            "vol",
            "8",
            "--timeout",
            "30",
        ])
        .unwrap();
        assert!(c.json);
        assert_eq!(c.cluster.as_deref(), Some(std::path::Path::new("c.toml")));
        assert_eq!(
            c.exec.unwrap(),
            ["restore", "a0", "vol", "8", "--timeout", "30"]
        );
        let c = Cli::try_parse_from(["walb-console", "--exec", "-"]).unwrap();
        assert_eq!(c.exec.unwrap(), ["-"]);
        assert!(Cli::try_parse_from(["walb-console", "--exec"]).is_err());
    }

    #[test]
    fn lab_commands_parse() {
        let c = Cli::try_parse_from([
            "walb-console",
            "lab",
            "--dir",
            "/tmp/l",
            "up",
            "--port-base",
            "20000",
        ])
        .unwrap();
        match c.command {
            Some(Command::Lab(LabArgs {
                dir,
                command: LabCommand::Up(a),
                ..
            })) => {
                assert_eq!(dir.as_deref(), Some(std::path::Path::new("/tmp/l")));
                assert_eq!(a.port_base, 20000);
                assert_eq!(a.vol, "vol");
                assert_eq!(a.log_mb, None, "sized against the device unless given");
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["walb-console", "lab", "add-node", "archive", "a2"]).unwrap();
        match c.command {
            Some(Command::Lab(LabArgs {
                command: LabCommand::AddNode { role, name },
                ..
            })) => assert_eq!((role.as_str(), name.as_str()), ("archive", "a2")),
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["walb-console", "lab", "kill", "s0", "--dir", "d"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Lab(LabArgs {
                command: LabCommand::Kill { .. },
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["walb-console", "lab", "stop"]).is_err());
    }

    #[test]
    fn revoke_takes_an_id_or_a_serial() {
        let c = Cli::try_parse_from([
            "walb-console",
            "ca",
            "revoke",
            "--id",
            "operator/alice",
            "--out-dir",
            "a",
            "--out-dir",
            "b",
        ])
        .unwrap();
        match c.command {
            Some(Command::Ca(CaCommand::Revoke { id, out_dirs, .. })) => {
                assert_eq!(id.as_deref(), Some("operator/alice"));
                assert_eq!(out_dirs.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["walb-console", "ca", "revoke"]).is_err());
        assert!(Cli::try_parse_from([
            "walb-console",
            "ca",
            "revoke",
            "--id",
            "operator/a",
            "--serial",
            "01"
        ])
        .is_err());
    }
}
