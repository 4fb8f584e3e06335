//! The text forms of what travels: the walb-tools formats operators read and scripts
//! match (times are UTC).
//!
//! - snapshots: `|5|` (clean) or `|0,5|` (dirty);
//! - diff lists: `|0|-->|1| -- 2017-05-24T04:49:40 4128` (flags `M`/`-` mergeable, then
//!   `C`/`-` compared diff; the size in bytes);
//! - meta states: `<|0,5|>-20170524044940`, or `<|5|-->|9|>-...` while applying;
//! - uuids: 32 lowercase hex digits.
//!
//! Both ends use them: the console prints typed replies through them, and a daemon
//! answering a protocol-3 peer turns its typed replies into these lines
//! ([`super::Reply::for_version`]), so the two can never drift apart.

use super::{MetaDiffDto, MetaStateDto, SnapDto, Uuid};

/// `YYYY-MM-DDThh:mm:ss` in UTC (the raw number if out of range).
pub fn time_iso(ts: u64) -> String {
    utc_with(ts, "-", "T", ":")
}

/// `YYYYMMDDhhmmss` in UTC (walb-tools' meta-state timestamps).
pub fn time_compact(ts: u64) -> String {
    utc_with(ts, "", "", "")
}

/// `ts` in UTC with `date` between the date's fields, `mid` between date and time and
/// `clock` between the time's; the raw number if out of range.
fn utc_with(ts: u64, date: &str, mid: &str, clock: &str) -> String {
    match utc(ts) {
        Some(t) => format!(
            "{:04}{date}{:02}{date}{:02}{mid}{:02}{clock}{:02}{clock}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => ts.to_string(),
    }
}

fn utc(ts: u64) -> Option<time::OffsetDateTime> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(ts).ok()?).ok()?;
    (t.year() <= 9999).then_some(t)
}

/// `|5|` (clean) or `|0,5|` (dirty).
pub fn snap_str(s: SnapDto) -> String {
    if s.gid_b == s.gid_e {
        format!("|{}|", s.gid_b)
    } else {
        format!("|{},{}|", s.gid_b, s.gid_e)
    }
}

/// `|0|-->|1| -- 2017-05-24T04:49:40 4128`.
pub fn diff_line(d: &MetaDiffDto) -> String {
    format!(
        "{}-->{} {}{} {} {}",
        snap_str(d.range.snap_b),
        snap_str(d.range.snap_e),
        if d.mergeable { 'M' } else { '-' },
        if d.comp_diff { 'C' } else { '-' },
        time_iso(d.timestamp_s),
        d.size
    )
}

/// `<|0,5|>-20170524044940`, or `<|5|-->|9|>-...` while applying.
pub fn meta_state_str(m: &MetaStateDto) -> String {
    let inner = match m.snap_e {
        Some(e) => format!("{}-->{}", snap_str(m.snap_b), snap_str(e)),
        None => snap_str(m.snap_b),
    };
    format!("<{inner}>-{}", time_compact(m.timestamp_s))
}

/// 32 lowercase hex digits.
pub fn uuid_hex(u: &Uuid) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

/// A gid, or `-` for none.
pub fn gid_or_dash(g: Option<u64>) -> String {
    g.map_or("-".to_owned(), |g| g.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walb_tools_forms() {
        let s = |b, e| SnapDto { gid_b: b, gid_e: e };
        let d = MetaDiffDto {
            range: super::super::DiffRange {
                snap_b: s(0, 0),
                snap_e: s(1, 1),
            },
            mergeable: false,
            comp_diff: false,
            timestamp_s: 1_495_601_380,
            size: 4128,
        };
        assert_eq!(diff_line(&d), "|0|-->|1| -- 2017-05-24T04:49:40 4128");
        let m = MetaStateDto {
            snap_b: s(0, 5),
            snap_e: None,
            timestamp_s: 1_495_601_380,
        };
        assert_eq!(meta_state_str(&m), "<|0,5|>-20170524044940");
        let applying = MetaStateDto {
            snap_e: Some(s(9, 9)),
            ..m
        };
        assert_eq!(meta_state_str(&applying), "<|0,5|-->|9|>-20170524044940");
        assert_eq!(time_iso(u64::MAX), u64::MAX.to_string());
        assert_eq!(uuid_hex(&[0xab; 16]), "ab".repeat(16));
        assert_eq!(gid_or_dash(None), "-");
    }
}
