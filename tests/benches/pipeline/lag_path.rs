//! The critical path of the lag samples, read from the daemons' logs.
//!
//! Every hop of a snapshot's way from the storage to the archive writes one `INFO` line
//! with a timestamp (the `tracing` format: `2026-12-07T23:55:11.123456Z  INFO target:
//! message key=value ...`) and the gid range it carries (`gid_b`, `gid_e`):
//!
//! | daemon | line | when |
//! |---|---|---|
//! | storage | `snapshot taken gid=G` | the snapshot command took it |
//! | storage | `wlog transfer started` | the transfer was accepted by a proxy |
//! | proxy | `wlog received` (`ms_total` since the acceptance, `ms_write`, `ms_queued`, `ms_fsync`) | the wdiff is durable, the ack sent |
//! | storage | `wlog transfer acknowledged` | the storage heard the ack |
//! | proxy | `wdiff send started` | a forward to the archive began |
//! | archive | `wdiff received` (`ms_recv`, `ms_commit`: fsync, validation, rename) | validated, durable, restorable |
//!
//! A sample is the snapshot's gid G with the bench's own times of the command and of the
//! first poll that listed G as restorable; each hop is the first line whose range
//! `(gid_b, gid_e]` holds G (a start line: the last one before its end line, in case of
//! a retry). [`breakdown`] prints p50/p99 of every hop over the samples. Logs of a proxy
//! that fsynced before queueing (`ms_convert` with the fsync inside, no `ms_write`) are
//! read too, so that the same table compares the two orders.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One lag sample: the snapshot's gid, when the bench asked for it and when it saw it
/// restorable.
pub struct Sample {
    pub gid: u64,
    pub asked: SystemTime,
    pub seen: SystemTime,
}

/// One log line of a hop.
#[derive(Debug, Clone, Default)]
struct Line {
    /// Seconds since the epoch.
    t: f64,
    gid_b: u64,
    gid_e: u64,
    /// Its `ms_*` fields, by name.
    ms: Vec<(String, f64)>,
}

impl Line {
    /// The `ms_*` field `key`, in seconds.
    fn get(&self, key: &str) -> Option<f64> {
        self.ms
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v / 1e3)
    }

    fn ms(&self, key: &str) -> f64 {
        self.get(key).unwrap_or(0.0)
    }

    fn covers(&self, gid: u64) -> bool {
        self.gid_b < gid && gid <= self.gid_e
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of an RFC 3339 UTC stamp `YYYY-MM-DDThh:mm:ss.ffffffZ`.
fn parse_stamp(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    Some(days_from_civil(y, m, dd) as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec)
}

/// The lines of `log` whose message contains `msg`, with their fields.
fn lines(log: &str, msg: &str) -> Vec<Line> {
    log.lines()
        .filter(|l| l.contains(msg))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let t = parse_stamp(words.next()?)?;
            let mut line = Line {
                t,
                ..Line::default()
            };
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    continue;
                };
                let Ok(n) = v.parse::<u64>() else { continue };
                match k {
                    "gid_b" => line.gid_b = n,
                    "gid_e" => line.gid_e = n,
                    // The snapshot's own gid: a range of one.
                    "gid" => (line.gid_b, line.gid_e) = (n.saturating_sub(1), n),
                    k if k.starts_with("ms_") => line.ms.push((k.to_owned(), n as f64)),
                    _ => {}
                }
            }
            Some(line)
        })
        .collect()
}

fn first(ls: &[Line], gid: u64) -> Option<&Line> {
    ls.iter().find(|l| l.covers(gid))
}

/// The last line covering `gid` at or before `t`.
fn last_before(ls: &[Line], gid: u64, t: f64) -> Option<&Line> {
    ls.iter().rev().find(|l| l.covers(gid) && l.t <= t)
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The hops, in path order, and each one's duration for a sample (seconds).
const HOPS: [&str; 10] = [
    "snapshot asked -> taken (storage)",
    "taken -> wlog transfer accepted by the proxy",
    "proxy: packs received, converted, written",
    "proxy: metadata, file linked into the queues",
    "proxy: fsync (file, directories), ack sent",
    "ack sent -> storage heard it",
    "proxy: queued -> forward started",
    "forward: archive received the bytes",
    "archive: fsync + validation, rename",
    "archive: restorable -> seen by the poll",
];

/// The hop durations of one sample, or why they cannot be told.
fn hops(s: &Sample, logs: &Logs) -> Result<[f64; 10], String> {
    let g = s.gid;
    let miss = |what: &str| format!("gid {g}: no {what} line");
    let snap = first(&logs.snap, g).ok_or_else(|| miss("snapshot taken"))?;
    let precv = first(&logs.precv, g).ok_or_else(|| miss("wlog received"))?;
    let sack = first(&logs.sack, g).ok_or_else(|| miss("wlog transfer acknowledged"))?;
    let ship = last_before(&logs.ship, g, sack.t).ok_or_else(|| miss("wlog transfer started"))?;
    let arecv = first(&logs.arecv, g).ok_or_else(|| miss("wdiff received"))?;
    let fwd = last_before(&logs.fwd, g, arecv.t).ok_or_else(|| miss("wdiff send started"))?;
    let total = precv.ms("ms_total");
    let accepted = precv.t - total;
    // Since the acceptance: written, queued, and the end (the ack sent).
    let (write, queued) = match precv.get("ms_write") {
        // The file is queued before its fsync.
        Some(w) => (w, precv.ms("ms_queued")),
        // The older order: converted and fsynced (`ms_convert`), then queued, then the ack.
        None => (precv.ms("ms_convert") - precv.ms("ms_fsync"), total),
    };
    let sync_and_ack = match precv.get("ms_write") {
        Some(_) => total - queued,
        None => precv.ms("ms_fsync"),
    };
    let commit = arecv.ms("ms_commit");
    Ok([
        snap.t - secs(s.asked),
        ship.t - snap.t,
        write,
        total - write - sync_and_ack,
        sync_and_ack,
        sack.t - precv.t,
        fwd.t - (accepted + queued),
        arecv.t - commit - fwd.t,
        commit,
        secs(s.seen) - arecv.t,
    ])
}

/// The hop lines of the three daemons' logs.
struct Logs {
    snap: Vec<Line>,
    ship: Vec<Line>,
    sack: Vec<Line>,
    precv: Vec<Line>,
    fwd: Vec<Line>,
    arecv: Vec<Line>,
}

/// Prints p50/p99 of every hop over `samples`, from the logs in `dir` (`s0.log`,
/// `p0.log`, `a0.log`).
pub fn breakdown(dir: &Path, samples: &[Sample]) {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    let (s, p, a) = (read("s0.log"), read("p0.log"), read("a0.log"));
    let logs = Logs {
        snap: lines(&s, "snapshot taken"),
        ship: lines(&s, "wlog transfer started"),
        sack: lines(&s, "wlog transfer acknowledged"),
        precv: lines(&p, "wlog received"),
        fwd: lines(&p, "wdiff send started"),
        arecv: lines(&a, "wdiff received"),
    };
    let mut per_hop: Vec<Vec<f64>> = vec![Vec::new(); HOPS.len()];
    let mut missing = Vec::new();
    for smp in samples {
        match hops(smp, &logs) {
            Ok(h) => {
                for (i, d) in h.iter().enumerate() {
                    per_hop[i].push(*d);
                }
            }
            Err(e) => missing.push(e),
        }
    }
    println!(
        "critical path from the logs ({} of {} samples; ms, nearest rank):",
        per_hop[0].len(),
        samples.len()
    );
    println!("  {:<48} {:>7} {:>7}", "hop", "p50", "p99");
    for (name, v) in HOPS.iter().zip(per_hop.iter_mut()) {
        v.sort_by(f64::total_cmp);
        let p = |q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((q / 100.0) * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1] * 1e3
        };
        println!("  {name:<48} {:>7.0} {:>7.0}", p(50.0), p(99.0));
    }
    if let Some(e) = missing.first() {
        println!("  ({} samples without every line, e.g. {e})", missing.len());
    }
}
