//! wdevc: the WalB device and file tool.
//!
//! File tools (this module and [`files`]): format a log device, show, extract, generate and
//! redo wlogs, convert wlogs to wdiffs, show, merge and redo wdiffs, and stream the full
//! image of a snapshot from a base image and diffs. Device-control commands arrive with the
//! device backends.
//!
//! Exit codes: 0 success, 1 runtime or I/O error, 2 usage error or invalid argument,
//! 3 corrupt input, 4 truncated (incomplete) input.

mod files;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// WalB device control and log/diff file tools.
#[derive(Parser, Debug)]
#[command(name = "wdevc", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const EXIT_CODES: &str =
    "Exit codes: 0 success, 1 runtime or I/O error, 2 usage error or invalid argument, \
3 corrupt input, 4 truncated input.\nSizes accept k, m, g, t suffixes (powers of 1024).";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write a fresh superblock (new uuid and salt) to a log device for a data device.
    FormatLdev(files::FormatLdev),
    /// Show the superblock of a log device.
    LdevInfo(files::LdevInfo),
    /// List the packs and records of a wlog file, with totals (as walb-tools' wlog-show).
    WlogShow(files::WlogShow),
    /// Extract a wlog file from a log device for an lsid range.
    WlogCat(files::WlogCat),
    /// Generate a synthetic wlog of random writes (for tests and benchmarks).
    WlogGen(files::WlogGen),
    /// Convert a wlog into a wdiff (sorted by default, or indexed).
    WlogToWdiff(files::WlogToWdiff),
    /// List the records of a wdiff file (as walb-tools' wdiff-show).
    WdiffShow(files::WdiffShow),
    /// Merge wdiffs, given oldest first, into one sorted wdiff (newest data wins).
    WdiffMerge(files::WdiffMerge),
    /// Apply wlogs, in order, to an image file or block device.
    WlogRedo(files::WlogRedo),
    /// Apply wdiffs, in order, to an image file or block device.
    WdiffRedo(files::WdiffRedo),
    /// Write the full image of base + wdiffs (oldest first) without touching the base.
    VirtFullCat(files::VirtFullCat),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WALB_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let r = match cli.cmd {
        Cmd::FormatLdev(a) => a.run(),
        Cmd::LdevInfo(a) => a.run(),
        Cmd::WlogShow(a) => a.run(),
        Cmd::WlogCat(a) => a.run(),
        Cmd::WlogGen(a) => a.run(),
        Cmd::WlogToWdiff(a) => a.run(),
        Cmd::WdiffShow(a) => a.run(),
        Cmd::WdiffMerge(a) => a.run(),
        Cmd::WlogRedo(a) => a.run(),
        Cmd::WdiffRedo(a) => a.run(),
        Cmd::VirtFullCat(a) => a.run(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wdevc: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io = c.downcast_ref::<std::io::Error>().or_else(|| {
            match c.downcast_ref::<walb_kernel::Error>() {
                Some(walb_kernel::Error::Io { cause, .. }) => Some(cause),
                _ => None,
            }
        });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for c in e.chain() {
        if let Some(k) = c.downcast_ref::<walb_kernel::Error>() {
            return match k {
                walb_kernel::Error::Corrupt { .. } => 3,
                walb_kernel::Error::Incomplete { .. } => 4,
                walb_kernel::Error::Invalid(_) => 2,
                walb_kernel::Error::Io { .. } | walb_kernel::Error::Unsupported(_) => 1,
            };
        }
        if c.downcast_ref::<files::UsageError>().is_some() {
            return 2;
        }
    }
    1
}
