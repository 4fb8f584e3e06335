//! Retention: which snapshots of a volume an archive keeps, by default and per volume.
//!
//! Left alone, a volume's diff list grows by one diff per wlog transfer. The retention
//! policy bounds it: every snapshot is kept or dropped by rules (PBS's prune counts for
//! explicit snapshots, a zrepl-style grid for all of them); the diffs between two kept
//! snapshots are merged into one, and everything older than the oldest kept snapshot is
//! applied into the base image. [`plan`] is the pure selection; the archive's policy loop
//! ([`super::policy`]) carries a plan out one task per tick through the `merge`, `apply`
//! and `disable-snapshot` paths, with their checks, events and crash recovery.
//!
//! A snapshot is **kept** when any of these keeps it:
//! - it is the newest restorable snapshot;
//! - the operator **pinned** it (`retention ARCHIVE VOL --pin GID`; never touched, like a
//!   PBS *protected* backup);
//! - a replication destination is at it (it is spared until the destination moves on);
//! - the **grid** keeps it: intervals laid out from now backwards (`1x1m(keep=all) |
//!   59x1m | 23x1h`: the last minute all of them, then one per minute for the rest of
//!   the hour, then one per hour for 23 hours); in an interval of `N x LEN`, snapshots are
//!   grouped by LEN-aligned buckets of the epoch and the newest `keep` (default 1) of a
//!   bucket are kept, once the whole bucket lies in the interval (a bucket still filling
//!   keeps all of its snapshots, so that a bucket is thinned once, not at every arrival);
//!   older than the grid, none;
//! - it is **explicit** and a PBS count keeps it: `keep-last N` the newest N, then
//!   `keep-hourly/daily/weekly/monthly/yearly N` the newest snapshot of each of the N
//!   newest hours (days, ISO weeks, months, years; UTC) not already covered, in that
//!   order, as `proxmox-backup`'s prune does.
//!
//! A snapshot that is not kept is **folded** (merged into the diff that ends at the next
//! kept snapshot; an explicit one is made implicit first) or, older than the oldest kept
//! snapshot, **applied** into the base.
//!
//! The bound this gives: a volume holds at most `W + G + E + P + D + 1` diffs, where `W`
//! is the number of diffs that arrive within the keep-all interval (and the bucket of the
//! next interval that is still filling), `G` the grid's buckets (`Σ (N+1)·keep` over the
//! thinned intervals, plus, per interval, the previous interval's points in its
//! youngest, still filling bucket), `E` the explicit snapshots the counts keep (at most
//! their sum), `P` the pinned snapshots and `D` the replication destinations
//! ([`Retention::bound`]).
//!
//! Settings: the archive's options are the cluster default (`--retention`,
//! `--keep-last`..., `--keep-grid`); a volume may have its own in the `retention` file
//! of its directory ([`VolRetention`], written whole and durably), which also holds its
//! pins.

mod calendar;
mod plan;
pub mod serve;

use std::collections::BTreeSet;
use std::fmt;

pub use plan::{plan, points, Fate, Plan, Point, Verdict, Why};

use crate::opts::{parse_period, ArchiveOpts};

/// The name of a volume's retention file.
pub const FILE: &str = "retention";

/// Most intervals in a grid.
pub const GRID_MAX: usize = 32;
/// Most pins of a volume.
pub const PINS_MAX: usize = 4096;

/// The default grid of the cluster (`--keep-grid`).
pub use crate::opts::DEFAULT_KEEP_GRID as DEFAULT_GRID;

/// PBS-style counts, for explicit snapshots (0: the rule keeps none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// The newest N.
    pub last: u32,
    /// The newest of each of the N newest hours.
    pub hourly: u32,
    /// Days.
    pub daily: u32,
    /// ISO weeks (Monday to Sunday).
    pub weekly: u32,
    /// Months.
    pub monthly: u32,
    /// Years.
    pub yearly: u32,
}

impl Default for Counts {
    /// `keep-last 8, keep-hourly 24, keep-daily 7, keep-weekly 4, keep-monthly 6`.
    fn default() -> Self {
        Counts {
            last: 8,
            hourly: 24,
            daily: 7,
            weekly: 4,
            monthly: 6,
            yearly: 0,
        }
    }
}

impl Counts {
    /// The counts with their option names, in the order they are applied.
    pub fn named(&self) -> [(&'static str, u32); 6] {
        [
            ("keep-last", self.last),
            ("keep-hourly", self.hourly),
            ("keep-daily", self.daily),
            ("keep-weekly", self.weekly),
            ("keep-monthly", self.monthly),
            ("keep-yearly", self.yearly),
        ]
    }

    /// Sets the count named `name` (`keep-last`...); false if there is none of that name.
    pub fn set(&mut self, name: &str, n: u32) -> bool {
        let slot = match name {
            "keep-last" => &mut self.last,
            "keep-hourly" => &mut self.hourly,
            "keep-daily" => &mut self.daily,
            "keep-weekly" => &mut self.weekly,
            "keep-monthly" => &mut self.monthly,
            "keep-yearly" => &mut self.yearly,
            _ => return false,
        };
        *slot = n;
        true
    }

    /// The most explicit snapshots the counts keep.
    pub fn total(&self) -> u64 {
        self.named().iter().map(|(_, n)| u64::from(*n)).sum()
    }
}

/// How many snapshots of a bucket an interval keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// All of them (the interval is not cut into buckets).
    All,
    /// The newest N of each bucket.
    Newest(u32),
}

/// One interval of a grid: `COUNT x LEN`, `(keep=all)` or `(keep=N)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Buckets in the interval.
    pub count: u32,
    /// Length of a bucket, seconds.
    pub len_s: u64,
    /// What a bucket keeps.
    pub keep: Keep,
}

impl Interval {
    /// The interval's length, seconds.
    pub fn span_s(&self) -> u64 {
        self.len_s.saturating_mul(u64::from(self.count))
    }
}

/// A zrepl-style grid: intervals from now backwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid(pub Vec<Interval>);

/// A period in the largest unit that divides it (`90s`, `5m`, `2h`, `7d`).
fn fmt_period(s: u64) -> String {
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl fmt::Display for Grid {
    /// `1x1m(keep=all) | 59x1m | 23x1h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, iv) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{}x{}", iv.count, fmt_period(iv.len_s))?;
            match iv.keep {
                Keep::All => f.write_str("(keep=all)")?,
                Keep::Newest(1) => {}
                Keep::Newest(n) => write!(f, "(keep={n})")?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Grid {
    type Err = String;

    /// `COUNTxLEN[(keep=all|N)] | ...`; empty or `none` for no grid.
    fn from_str(s: &str) -> Result<Grid, String> {
        let t = s.trim();
        if t.is_empty() || t == "none" {
            return Ok(Grid(Vec::new()));
        }
        let mut out = Vec::new();
        for part in t.split('|') {
            let p = part.trim();
            let bad = |why: &str| {
                format!("grid interval {p:?}: {why} (want COUNTxLEN[(keep=all|N)], e.g. 24x1h)")
            };
            let (body, keep) = match p.split_once('(') {
                None => (p, Keep::Newest(1)),
                Some((body, rest)) => {
                    let arg = rest
                        .strip_suffix(')')
                        .and_then(|a| a.trim().strip_prefix("keep="))
                        .ok_or_else(|| bad("a bad (keep=...)"))?;
                    let keep = match arg.trim() {
                        "all" => Keep::All,
                        n => match n.parse::<u32>() {
                            Ok(n) if n > 0 => Keep::Newest(n),
                            _ => return Err(bad("keep must be all or a positive count")),
                        },
                    };
                    (body.trim(), keep)
                }
            };
            let (count, len) = body.split_once('x').ok_or_else(|| bad("no x"))?;
            let count = match count.trim().parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("the count must be a positive number")),
            };
            let len_s = parse_period(len).map_err(|e| bad(&e))?;
            if len_s == 0 {
                return Err(bad("the length must not be 0"));
            }
            out.push(Interval { count, len_s, keep });
        }
        if out.len() > GRID_MAX {
            return Err(format!("a grid has at most {GRID_MAX} intervals"));
        }
        let g = Grid(out);
        g.span_s()
            .ok_or_else(|| format!("the grid {s:?} spans more time than can be counted"))?;
        Ok(g)
    }
}

impl Grid {
    /// The time the grid covers, seconds (`None` if it overflows).
    pub fn span_s(&self) -> Option<u64> {
        self.0.iter().try_fold(0u64, |acc, iv| {
            u64::from(iv.count)
                .checked_mul(iv.len_s)
                .and_then(|s| acc.checked_add(s))
        })
    }
}

/// A retention policy (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Whether the policy runs at all.
    pub on: bool,
    /// Counts for explicit snapshots.
    pub counts: Counts,
    /// The grid, for all snapshots.
    pub grid: Grid,
}

impl Default for Retention {
    /// On, [`Counts::default`], [`DEFAULT_GRID`].
    fn default() -> Self {
        Retention {
            on: true,
            counts: Counts::default(),
            grid: DEFAULT_GRID.parse().unwrap_or(Grid(Vec::new())),
        }
    }
}

impl Retention {
    /// The policy off.
    pub fn off() -> Retention {
        Retention {
            on: false,
            ..Retention::default()
        }
    }

    /// The most diffs a volume holds under this policy, given `window` diffs arriving
    /// within the keep-all interval (and the young, still filling bucket after it),
    /// `pins` pinned snapshots and `dests` replication destinations (see the module
    /// documentation). `None` when the policy is off or keeps everything for ever.
    pub fn bound(&self, window: u64, pins: u64, dests: u64) -> Option<u64> {
        if !self.on {
            return None;
        }
        let mut total = window.saturating_add(self.counts.total());
        let mut prev_per_bucket: Option<(u64, u64)> = None; // (len, kept per bucket)
        for iv in &self.grid.0 {
            match iv.keep {
                Keep::All => {}
                Keep::Newest(k) => {
                    let buckets = u64::from(iv.count) + 1;
                    total = total.saturating_add(buckets.saturating_mul(u64::from(k)));
                    // The youngest bucket, still filling, keeps the previous interval's
                    // points in it.
                    if let Some((len, kept)) = prev_per_bucket {
                        let spill = (iv.len_s / len.max(1) + 1).saturating_mul(kept);
                        total = total.saturating_add(spill);
                    }
                }
            }
            prev_per_bucket = match iv.keep {
                Keep::All => None,
                Keep::Newest(k) => Some((iv.len_s, u64::from(k))),
            };
        }
        Some(
            total
                .saturating_add(pins)
                .saturating_add(dests)
                .saturating_add(1),
        )
    }

    /// The cluster default of an archive's options (`--retention`, `--keep-*`).
    pub fn from_opts(o: &ArchiveOpts) -> Result<Retention, String> {
        let mut r = Retention::default();
        r.set("retention", &o.retention)
            .map_err(|e| format!("--{e}"))?;
        r.counts = Counts {
            last: o.keep_last,
            hourly: o.keep_hourly,
            daily: o.keep_daily,
            weekly: o.keep_weekly,
            monthly: o.keep_monthly,
            yearly: o.keep_yearly,
        };
        r.grid = o
            .keep_grid
            .parse()
            .map_err(|e| format!("--keep-grid: {e}"))?;
        Ok(r)
    }

    /// The text form: one `key=value` line each (`retention=on`, `keep-last=8`...,
    /// `keep-grid=...`).
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!("retention={}", if self.on { "on" } else { "off" })];
        v.extend(self.counts.named().iter().map(|(k, n)| format!("{k}={n}")));
        v.push(format!("keep-grid={}", self.grid));
        v
    }

    /// Sets `key` (as in [`Retention::lines`]) to `value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "retention" => {
                self.on = match value.trim() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("retention={v:?}: want on or off")),
                }
            }
            "keep-grid" => self.grid = value.parse()?,
            k => {
                let n = value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{k}={value:?}: want a count"))?;
                if !self.counts.set(k, n) {
                    return Err(format!("{k:?} is not a retention setting"));
                }
            }
        }
        Ok(())
    }
}

/// A volume's own settings: its policy (`None`: the cluster default) and its pins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolRetention {
    /// The volume's policy, if it has its own.
    pub policy: Option<Retention>,
    /// Gids of pinned snapshots.
    pub pinned: BTreeSet<u64>,
}

impl VolRetention {
    /// The policy in force: the volume's, or `default`.
    pub fn effective<'a>(&'a self, default: &'a Retention) -> &'a Retention {
        self.policy.as_ref().unwrap_or(default)
    }

    /// The file form: a comment, the policy's lines if the volume has its own, then
    /// `pin=GID` lines.
    pub fn encode(&self) -> String {
        let mut s = String::from(
            "# walb: this volume's retention (walb-console --exec retention ARCHIVE VOL)\n",
        );
        for l in self.policy.iter().flat_map(Retention::lines) {
            s.push_str(&l);
            s.push('\n');
        }
        for g in &self.pinned {
            s.push_str(&format!("pin={g}\n"));
        }
        s
    }

    /// Parses [`VolRetention::encode`]'s form (a policy's missing keys take the
    /// defaults); a bad line is named.
    pub fn parse(text: &str) -> Result<VolRetention, String> {
        let mut v = VolRetention::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", i + 1);
            let (k, val) = line
                .split_once('=')
                .ok_or_else(|| at(format!("{line:?} (want KEY=VALUE)")))?;
            if k.trim() == "pin" {
                let g = val
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| at(format!("pin={val:?}: want a gid")))?;
                if v.pinned.len() >= PINS_MAX {
                    return Err(at(format!("more than {PINS_MAX} pins")));
                }
                v.pinned.insert(g);
            } else {
                v.policy
                    .get_or_insert_with(Retention::default)
                    .set(k.trim(), val)
                    .map_err(at)?;
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse_and_print_in_zrepl_form() {
        let g: Grid = DEFAULT_GRID.parse().unwrap();
        assert_eq!(
            g.0,
            vec![
                Interval {
                    count: 1,
                    len_s: 60,
                    keep: Keep::All
                },
                Interval {
                    count: 59,
                    len_s: 60,
                    keep: Keep::Newest(1)
                },
                Interval {
                    count: 23,
                    len_s: 3600,
                    keep: Keep::Newest(1)
                },
            ]
        );
        assert_eq!(g.to_string(), DEFAULT_GRID);
        assert_eq!(g.span_s(), Some(24 * 3600));
        let g: Grid = "1x1h(keep=all)|24x1h| 14x1d (keep=2)".parse().unwrap();
        assert_eq!(g.to_string(), "1x1h(keep=all) | 24x1h | 14x1d(keep=2)");
        assert_eq!("none".parse::<Grid>().unwrap(), Grid(Vec::new()));
        for bad in [
            "x1h",
            "0x1h",
            "3x0s",
            "3x1h(keep=0)",
            "3x1h(keep=some)",
            "3x1h(kept=1)",
            "3y1h",
            "3xsoon",
            "4294967295x213503982334601d",
        ] {
            assert!(bad.parse::<Grid>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn volume_settings_round_trip_and_bad_lines_are_named() {
        let mut v = VolRetention::default();
        assert_eq!(VolRetention::parse(&v.encode()).unwrap(), v);
        v.pinned.extend([7, 3]);
        assert_eq!(VolRetention::parse(&v.encode()).unwrap(), v);
        let mut r = Retention::default();
        r.counts.last = 2;
        r.grid = "1x10m(keep=all) | 6x10m".parse().unwrap();
        r.on = false;
        v.policy = Some(r.clone());
        let back = VolRetention::parse(&v.encode()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.effective(&Retention::default()), &r);
        // Keys left out take the defaults.
        let p = VolRetention::parse("keep-last=3\n").unwrap();
        let want = Retention {
            counts: Counts {
                last: 3,
                ..Counts::default()
            },
            ..Retention::default()
        };
        assert_eq!(p.policy, Some(want));
        let e = VolRetention::parse("# c\nkeep-last=3\nkeep-hourlyy=2\n").unwrap_err();
        assert!(
            e.starts_with("line 3:") && e.contains("keep-hourlyy"),
            "{e}"
        );
        assert!(VolRetention::parse("pin=x").is_err());
        assert!(VolRetention::parse("retention=maybe").is_err());
        assert!(VolRetention::parse("keep-last").is_err());
    }

    #[test]
    fn the_default_bound_follows_from_the_grid_and_the_counts() {
        let r = Retention::default();
        // W diffs in the last minute (and the filling minute after it); 60 minute
        // buckets; 24 hour buckets plus the 61 minute points of the filling hour; the
        // counts' 49; the newest.
        assert_eq!(r.bound(100, 0, 0), Some(100 + 60 + (24 + 61) + 49 + 1));
        assert_eq!(r.bound(100, 2, 1), Some(100 + 60 + 85 + 49 + 1 + 3));
        assert_eq!(Retention::off().bound(100, 0, 0), None);
    }
}
