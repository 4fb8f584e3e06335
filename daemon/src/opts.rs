//! Command-line options of the three daemons, modelled on walb-tools' (§1).
//!
//! [`CommonOpts`] are shared; each role adds its own. Durations are whole seconds, sizes
//! MiB, as in walb-tools, with long option names an operator can read
//! (`--max-wlog-send-mb` for `-wl`).

use std::path::PathBuf;

use clap::{Args, Parser};

/// Options every daemon takes.
#[derive(Debug, Clone, Args)]
pub struct CommonOpts {
    /// Base directory: every piece of persistent state lives here.
    #[arg(short = 'b', long)]
    pub base_dir: PathBuf,
    /// Log file ("-" = stderr; a relative path is put under the base directory).
    #[arg(short = 'l', long, default_value = "-")]
    pub log_file: PathBuf,
    /// Address to listen on: HOST:PORT, or a port on all addresses.
    #[arg(short = 'p', long)]
    pub listen: String,
    /// Node id (in this daemon's certificate) [default: the host name].
    #[arg(long)]
    pub id: Option<String>,
    /// Directory of ca.crt and ROLE-ID.crt/.key [default: $XDG_CONFIG_HOME/walb/certs].
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Most heavy foreground tasks (transfers, backups, restores) at once.
    #[arg(long = "fg", default_value_t = 2)]
    pub fg: usize,
    /// Background workers (storage: wlog transfers; proxy: wdiff sends).
    #[arg(long = "bg", default_value_t = 1)]
    pub bg: usize,
    /// Debug logging.
    #[arg(long)]
    pub debug: bool,
}

/// `walb-storage`: runs beside WalB devices and ships their logs.
#[derive(Debug, Clone, Parser)]
#[command(name = "walb-storage", version, about = "walb storage daemon")]
pub struct StorageOpts {
    /// Common options.
    #[command(flatten)]
    pub common: CommonOpts,
    /// The primary archive, HOST:PORT (full and hash backups go there).
    #[arg(long)]
    pub archive: String,
    /// Proxies in priority order, HOST:PORT,HOST:PORT...
    #[arg(long, value_delimiter = ',', required = true)]
    pub proxy: Vec<String>,
    /// Most wlog MiB sent per transfer (also the gid spacing of snapshots).
    #[arg(long, default_value_t = 128)]
    pub max_wlog_send_mb: u64,
    /// Implicit snapshot interval, seconds.
    #[arg(long, default_value_t = 10)]
    pub snapshot_interval: u64,
    /// First retry delay of a failed transfer, seconds.
    #[arg(long, default_value_t = 1)]
    pub delay: u64,
    /// Longest retry delay, seconds.
    #[arg(long, default_value_t = 300)]
    pub max_delay: u64,
    /// Full-scan read limit for full and hash backups, bytes per second (0 = none).
    #[arg(long, default_value_t = 0)]
    pub full_scan_bps: u64,
    /// Compression of full and hash sync chunks, CODEC:LEVEL:THREADS.
    #[arg(long, default_value = "zstd:1:1")]
    pub sync_compress: String,
    /// Period of the ts-delta refresh from the archive, seconds.
    #[arg(long, default_value_t = 60)]
    pub ts_delta_interval: u64,
}

/// `walb-proxy`: turns wlogs into wdiffs and forwards them to archives.
#[derive(Debug, Clone, Parser)]
#[command(name = "walb-proxy", version, about = "walb proxy daemon")]
pub struct ProxyOpts {
    /// Common options.
    #[command(flatten)]
    pub common: CommonOpts,
    /// Leave every volume Stopped at start (default: start them).
    #[arg(long)]
    pub stopped: bool,
    /// Most wdiff MiB merged into one transfer.
    #[arg(long, default_value_t = 128)]
    pub max_wdiff_send_mb: u64,
    /// Most wdiff files merged into one transfer.
    #[arg(long, default_value_t = 1000)]
    pub max_wdiff_send_nr: usize,
    /// First retry delay, seconds.
    #[arg(long, default_value_t = 1)]
    pub delay: u64,
    /// Longest retry delay, seconds.
    #[arg(long, default_value_t = 300)]
    pub max_delay: u64,
    /// Give up retrying (send error until kick) when no wlog arrived for this long,
    /// seconds.
    #[arg(long, default_value_t = 1800)]
    pub retry_timeout: u64,
    /// Refuse wlog transfers when the base directory's file system has less free space,
    /// MiB (in addition to the transfer's own size).
    #[arg(long, default_value_t = 64)]
    pub min_free_mb: u64,
}

/// `walb-archive`: keeps base images and diffs; restores snapshots.
#[derive(Debug, Clone, Parser)]
#[command(name = "walb-archive", version, about = "walb archive daemon")]
pub struct ArchiveOpts {
    /// Common options.
    #[command(flatten)]
    pub common: CommonOpts,
    /// How discards are applied to images: ignore, zero, or punch (holes).
    #[arg(long, default_value = "punch")]
    pub discard: String,
    /// fdatasync interval while writing images and wdiffs, MiB.
    #[arg(long, default_value_t = 1024)]
    pub fsync_interval_mb: u64,
    /// Most wdiffs opened at once for restore and apply (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub max_open: usize,
    /// Grow the base image automatically when a larger volume size arrives.
    #[arg(long)]
    pub auto_resize: bool,
    /// Most wdiffs merged per diff-replication round.
    #[arg(long, default_value_t = 1000)]
    pub max_wdiff_send_nr: usize,
    /// Compression of replication chunks as a client, CODEC:LEVEL:THREADS.
    #[arg(long, default_value = "zstd:1:1")]
    pub sync_compress: String,
    /// Attach restored images to loop devices (root only) so they can be mounted.
    #[arg(long)]
    pub restore_loop: bool,
    /// Percentage of time a restore sleeps between writes (0-99), to leave IO to others.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..100))]
    pub apply_sleep_pct: u32,
}
