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
    /// Most requests waiting for a foreground slot (they are served in order); beyond,
    /// a request is refused busy.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub fg_queue: usize,
    /// Most requests of one peer identity waiting for a foreground slot.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub fg_queue_per_peer: usize,
    /// Longest a request waits for a foreground slot, seconds (its caller may give up
    /// sooner: the console after its --timeout).
    #[arg(long, value_name = "S", default_value_t = 3600)]
    pub fg_queue_wait: u64,
    /// Debug logging.
    #[arg(long)]
    pub debug: bool,
    /// Let the daemon's group read what it creates: directories 0750 and files 0640
    /// (umask 0027) instead of 0700 and 0600 (umask 0077).
    #[arg(long)]
    pub group_access: bool,
    /// What peers may ask for.
    #[command(flatten)]
    pub limits: LimitOpts,
}

impl CommonOpts {
    /// The bounds of the foreground queue these options set.
    pub fn queue_bounds(&self) -> crate::fgq::QueueBounds {
        let d = crate::fgq::QueueBounds::default();
        // A waiter's caller hears from it well within the step timeout.
        let step = std::time::Duration::from_secs(self.limits.step_timeout);
        let heartbeat = if self.limits.step_timeout == 0 {
            d.heartbeat
        } else {
            d.heartbeat.min(step / 4)
        };
        crate::fgq::QueueBounds {
            len_max: self.fg_queue,
            per_peer_max: self.fg_queue_per_peer.max(1),
            wait_max: std::time::Duration::from_secs(self.fg_queue_wait.max(1)),
            heartbeat: heartbeat.max(std::time::Duration::from_millis(100)),
        }
    }
}

/// Bounds of what a peer may ask of a daemon, even one with a valid certificate (see
/// `walb_wire::admit`). Requests beyond them are refused, naming the bound.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits on what peers may ask")]
pub struct LimitOpts {
    /// Largest volume a peer may announce, GiB.
    #[arg(long, value_name = "GIB", default_value_t = 65536)]
    pub max_volume_gb: u64,
    /// Largest bulk of a full, hash or virtual scan, KiB.
    #[arg(long, value_name = "KIB", default_value_t = 8192)]
    pub max_bulk_kb: u64,
    /// Most entries of a list in one request (volume names, gids).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_list: usize,
    /// Largest wlog transfer a storage may announce, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    pub max_wlog_mb: u64,
    /// Largest wdiff a peer may send in one transfer, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16384)]
    pub max_wdiff_mb: u64,
    /// Largest control message (request, protocol step) a peer may send, KiB; bulk data
    /// travels in chunks, never in messages.
    #[arg(long, value_name = "KIB", default_value_t = 64)]
    pub max_request_kb: u32,
    /// A protocol step that makes no progress for this long fails, seconds (0: never):
    /// the peer's slot is freed, temporary files removed, the volume rolled back.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub step_timeout: u64,
    /// Most connections one peer identity may hold open to this daemon.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_conns_per_peer: u32,
    /// Most requests one peer identity may have in progress at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_calls_per_peer: u32,
    /// Most event subscriptions one peer identity may hold.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_subscriptions_per_peer: u32,
    /// Most event subscriptions this daemon serves, all peers together.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_subscriptions: u32,
    /// How often live connections' certificates are checked again (expiry, the CA, the
    /// deny list `revoked.txt` beside `ca.crt`), seconds; also at SIGHUP.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub recheck_interval: u64,
}

impl Default for LimitOpts {
    fn default() -> Self {
        LimitOpts::from_config(&walb_wire::WireConfig::default())
    }
}

impl LimitOpts {
    /// The options that give `w` (rounded down to the options' units).
    pub fn from_config(w: &walb_wire::WireConfig) -> LimitOpts {
        let l = &w.limits;
        LimitOpts {
            max_volume_gb: l.vol_size_lb_max / (2 << 20),
            max_bulk_kb: l.bulk_lb_max / 2,
            max_list: l.list_max,
            max_wlog_mb: l.wlog_len_max >> 20,
            max_wdiff_mb: l.wdiff_len_max >> 20,
            max_request_kb: w.msg_len_max >> 10,
            step_timeout: w.step_timeout.map_or(0, |t| t.as_secs()),
            max_conns_per_peer: w.identity_connections_max,
            max_calls_per_peer: w.identity_calls_max,
            max_subscriptions_per_peer: w.identity_subscriptions_max,
            max_subscriptions: w.subscriptions_max,
            recheck_interval: w.recheck_interval.as_secs(),
        }
    }

    /// A daemon's transport configuration with these options.
    pub fn wire_config(&self) -> walb_wire::WireConfig {
        let secs = std::time::Duration::from_secs;
        walb_wire::WireConfig {
            limits: self.limits(),
            msg_len_max: self.max_request_kb.saturating_mul(1 << 10).max(1 << 10),
            step_timeout: (self.step_timeout > 0).then(|| secs(self.step_timeout)),
            identity_connections_max: self.max_conns_per_peer.max(1),
            identity_calls_max: self.max_calls_per_peer.max(1),
            identity_subscriptions_max: self.max_subscriptions_per_peer,
            subscriptions_max: self.max_subscriptions,
            recheck_interval: secs(self.recheck_interval.max(1)),
            ..walb_wire::WireConfig::default()
        }
    }

    /// The limits these options set.
    pub fn limits(&self) -> walb_wire::Limits {
        walb_wire::Limits {
            vol_size_lb_max: self.max_volume_gb.saturating_mul(2 << 20),
            bulk_lb_max: self.max_bulk_kb.saturating_mul(2).max(1),
            list_max: self.max_list,
            wlog_len_max: self.max_wlog_mb.saturating_mul(1 << 20),
            wdiff_len_max: self.max_wdiff_mb.saturating_mul(1 << 20),
        }
    }
}

/// `walb-storage`: runs beside WalB devices and ships their logs.
#[derive(Debug, Clone, Parser)]
#[command(name = "walb-storage", version, about = "walb storage daemon")]
pub struct StorageOpts {
    /// Common options.
    #[command(flatten)]
    pub common: CommonOpts,
    /// The primary archive (full and hash backups go there), ID@HOST:PORT: its id (as
    /// in its certificate) and address; a daemon answering there with another
    /// certificate is refused.
    #[arg(long, value_name = "ID@HOST:PORT")]
    pub archive: String,
    /// Proxies in priority order, ID@HOST:PORT,ID@HOST:PORT...
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "ID@HOST:PORT"
    )]
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
    /// Period of the ts-delta refresh from the archive, seconds (the first one comes
    /// after 5 s, or after the period if it is shorter).
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
    /// Fault injection for tests: wait this long, ms, before the fsync of each received
    /// wdiff (it is queued, and may be forwarded, meanwhile; the storage has no ack yet).
    #[arg(long, default_value_t = 0, hide = true)]
    pub hold_before_sync_ms: u64,
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
    /// Attach restored images to loop devices (root only) so they can be mounted. The
    /// image files stay private to the daemon's user, but a loop device opens the image to
    /// whoever may open /dev/loopN (root, and usually the disk group).
    #[arg(long)]
    pub restore_loop: bool,
    /// Percentage of time a restore sleeps between writes (0-99), to leave IO to others.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..100))]
    pub apply_sleep_pct: u32,
    /// Maintenance: apply what is older than this (PERIOD: seconds, or with s/m/h/d, or
    /// hh:mm:ss); off if unset.
    #[arg(long, value_name = "PERIOD")]
    pub apply_keep: Option<String>,
    /// Maintenance: least time between two applies of a volume by age.
    #[arg(long, value_name = "PERIOD", default_value = "1d")]
    pub apply_interval: String,
    /// Maintenance: merge a volume holding at least this many diffs; off if unset.
    #[arg(long, value_name = "N")]
    pub merge_threshold: Option<usize>,
    /// Maintenance: merge a volume whose last merge began this long ago; off if unset.
    #[arg(long, value_name = "PERIOD")]
    pub merge_interval: Option<String>,
    /// Maintenance: most diffs in one merge (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub merge_max_nr: usize,
    /// Maintenance: largest diff and largest merge, MiB (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub merge_max_mb: u64,
    /// Maintenance: replicate every volume to the archive ID at HOST:PORT every PERIOD
    /// (`ID@HOST:PORT@PERIOD`; repeatable). Each volume must be bound to this archive
    /// there (`walb-console --exec replicate` does it).
    #[arg(long, value_name = "ID@HOST:PORT@PERIOD")]
    pub replicate_to: Vec<String>,
    /// Maintenance: how many merges, applies and replications may run before the policy
    /// starts no more.
    #[arg(long, default_value_t = 1)]
    pub policy_max_tasks: usize,
    /// Maintenance: how often the policy looks for work, seconds.
    #[arg(long, default_value_t = 1)]
    pub policy_tick_s: u64,
    /// Retention, the cluster default (a volume may have its own: `walb-console --exec
    /// retention ARCHIVE VOL`): snapshots are merged away and applied into the base as
    /// they age, keeping what --keep-* (explicit snapshots) and --keep-grid (all) say;
    /// `off` keeps every snapshot for ever.
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub retention: String,
    /// Retention: keep the newest N explicit snapshots.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub keep_last: u32,
    /// Retention: keep the newest explicit snapshot of each of the N newest hours.
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub keep_hourly: u32,
    /// Retention: ... of each of the N newest days (UTC).
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub keep_daily: u32,
    /// Retention: ... of each of the N newest ISO weeks.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub keep_weekly: u32,
    /// Retention: ... of each of the N newest months.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub keep_monthly: u32,
    /// Retention: ... of each of the N newest years.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Retention: the grid for all snapshots, intervals from now backwards
    /// (`COUNTxLEN[(keep=all|N)] | ...`): by default every snapshot of the last minute,
    /// one a minute for the hour, one an hour for the day.
    #[arg(long, value_name = "GRID", default_value = DEFAULT_KEEP_GRID)]
    pub keep_grid: String,
}

/// The default `--keep-grid`.
pub const DEFAULT_KEEP_GRID: &str = "1x1m(keep=all) | 59x1m | 23x1h";

/// A PERIOD: seconds, `N` with `s`/`m`/`h`/`d`, or `hh:mm:ss`.
pub fn parse_period(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a period (seconds, 30m, 12h, 7d or hh:mm:ss)");
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        let [h, m, sec] = parts[..] else {
            return Err(bad());
        };
        let n = |x: &str| x.parse::<u64>().map_err(|_| bad());
        return Ok(n(h)? * 3600 + n(m)? * 60 + n(sec)?);
    }
    let (num, mul) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        Some((i, 'd')) => (&t[..i], 86400),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_options_default_to_the_wire_defaults() {
        assert_eq!(LimitOpts::default().limits(), walb_wire::Limits::default());
        let (ours, theirs) = (
            LimitOpts::default().wire_config(),
            walb_wire::WireConfig::default(),
        );
        assert_eq!(
            (
                ours.msg_len_max,
                ours.step_timeout,
                ours.identity_connections_max,
                ours.identity_calls_max,
                ours.identity_subscriptions_max,
                ours.subscriptions_max,
                ours.recheck_interval,
            ),
            (
                theirs.msg_len_max,
                theirs.step_timeout,
                theirs.identity_connections_max,
                theirs.identity_calls_max,
                theirs.identity_subscriptions_max,
                theirs.subscriptions_max,
                theirs.recheck_interval,
            )
        );
        let o = StorageOpts::parse_from([
            "walb-storage",
            "-b",
            "x",
            "-p",
            "1",
            "--archive",
            "a0@h:1",
            "--proxy",
            "p0@h:2",
            "--max-volume-gb",
            "1",
            "--max-list",
            "3",
        ]);
        let l = o.common.limits.limits();
        assert_eq!((l.vol_size_lb_max, l.list_max), (2 << 20, 3));
        assert_eq!(l.bulk_lb_max, walb_wire::Limits::default().bulk_lb_max);
    }

    #[test]
    fn periods_parse_in_every_form_and_garbage_is_named() {
        assert_eq!(parse_period("90"), Ok(90));
        assert_eq!(parse_period("30s"), Ok(30));
        assert_eq!(parse_period("10m"), Ok(600));
        assert_eq!(parse_period("12h"), Ok(43200));
        assert_eq!(parse_period("7d"), Ok(604800));
        assert_eq!(parse_period("01:02:03"), Ok(3723));
        for bad in ["", "x", "1w", "1:2", "-3", "99999999999999999999d"] {
            let e = parse_period(bad).unwrap_err();
            assert!(e.contains("period"), "{bad}: {e}");
        }
    }
}
