//! wdevc: the WalB device and file tool.
//!
//! File tools (this module and [`files`]): format a log device, show, extract, generate and
//! redo wlogs, convert wlogs to wdiffs, show, merge and redo wdiffs, and stream the full
//! image of a snapshot from a base image and diffs. Device commands ([`device`]): create,
//! delete and list WalB devices (kernel driver or userspace emulator), read their lsids,
//! checkpoint, release logs, reset, freeze, resize, and generate write workloads.
//!
//! Exit codes: 0 success, 1 runtime or I/O error, 2 usage error or invalid argument,
//! 3 corrupt input, 4 truncated (incomplete) input.

#![forbid(unsafe_code)]

mod device;
mod files;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// WalB device control and log/diff file tools.
#[derive(Parser, Debug)]
// The first line of `wdevc --help`, spelled out so that it does not follow a package
// description.
#[command(
    name = "wdevc",
    version,
    about = "The walb data kernel: WalB log and diff formats, diff engine, snapshot model, device backends",
    long_about = None,
    after_help = EXIT_CODES
)]
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
    /// Start a WalB device (kernel driver, or the userspace emulator with --emulate).
    CreateWdev(device::CreateWdev),
    /// Stop a WalB device.
    DeleteWdev(device::DeleteWdev),
    /// List WalB devices: `NAME emulated PATH` (PATH `-` without a block device or FUSE
    /// file), then the driver's `NAME MAJOR:MINOR PATH`.
    List(device::List),
    /// Print the oldest lsid.
    GetOldestLsid(device::Wdev),
    /// Release logs before LSID (at most prev_written).
    SetOldestLsid(device::SetOldestLsid),
    /// Print the written lsid.
    GetWrittenLsid(device::Wdev),
    /// Print the permanent lsid.
    GetPermanentLsid(device::Wdev),
    /// Print the completed lsid.
    GetCompletedLsid(device::Wdev),
    /// Print all seven lsids (the sysfs lsids text).
    GetLsids(device::Wdev),
    /// Take a checkpoint now.
    ForceCheckpoint(device::Wdev),
    /// Print the checkpoint interval (ms).
    GetCheckpointInterval(device::Wdev),
    /// Set the checkpoint interval (ms).
    SetCheckpointInterval(device::SetCheckpointInterval),
    /// Print the log usage (physical blocks).
    GetLogUsage(device::Wdev),
    /// Print the log capacity (physical blocks).
    GetLogCapacity(device::Wdev),
    /// Print 1 when the log has overflowed.
    IsLogOverflow(device::Wdev),
    /// Clear the log: lsids to 0, new uuid and salt, overflow cleared.
    ResetWal(device::Wdev),
    /// Freeze writes (optionally melting after TIMEOUT seconds).
    Freeze(device::Freeze),
    /// Melt a frozen device.
    Melt(device::Wdev),
    /// Print 1 when frozen.
    IsFrozen(device::Wdev),
    /// Grow the device (to the data device size by default).
    Resize(device::Resize),
    /// Print 1 when the log device supports flush.
    IsFlushCapable(device::Wdev),
    /// Print the WalB driver version.
    GetVersion(device::GetVersion),
    /// Write a synthetic workload through a device.
    Workload(device::Workload),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WALB_LOG")
                .unwrap_or_else(|_| "warn,fuser=error".into()),
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
        Cmd::CreateWdev(a) => a.run(),
        Cmd::DeleteWdev(a) => a.run(),
        Cmd::List(a) => a.run(),
        Cmd::GetOldestLsid(a) => a.run(device::Query::Oldest),
        Cmd::SetOldestLsid(a) => a.run(),
        Cmd::GetWrittenLsid(a) => a.run(device::Query::Written),
        Cmd::GetPermanentLsid(a) => a.run(device::Query::Permanent),
        Cmd::GetCompletedLsid(a) => a.run(device::Query::Completed),
        Cmd::GetLsids(a) => a.run(device::Query::Lsids),
        Cmd::ForceCheckpoint(a) => a.run(device::Query::ForceCheckpoint),
        Cmd::GetCheckpointInterval(a) => a.run(device::Query::CheckpointInterval),
        Cmd::SetCheckpointInterval(a) => a.run(),
        Cmd::GetLogUsage(a) => a.run(device::Query::Usage),
        Cmd::GetLogCapacity(a) => a.run(device::Query::Capacity),
        Cmd::IsLogOverflow(a) => a.run(device::Query::Overflow),
        Cmd::ResetWal(a) => a.run(device::Query::ResetWal),
        Cmd::Freeze(a) => a.run(),
        Cmd::Melt(a) => a.run(device::Query::Melt),
        Cmd::IsFrozen(a) => a.run(device::Query::Frozen),
        Cmd::Resize(a) => a.run(),
        Cmd::IsFlushCapable(a) => a.run(device::Query::FlushCapable),
        Cmd::GetVersion(a) => a.run(),
        Cmd::Workload(a) => a.run(),
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
        if c.downcast_ref::<files::UsageError>().is_some()
            || c.downcast_ref::<device::DeviceUsageError>().is_some()
        {
            return 2;
        }
    }
    1
}
