//! UTC text forms of unix timestamps used by the snapshot model.
//!
//! walb-tools prints unix seconds in two UTC forms:
//! - *compact* `YYYYMMDDhhmmss`: wdiff file names and base states (`<|5|>-20170524044940`);
//! - *pretty* `YYYY-MM-DDThh:mm:ss`: diff-list lines and the restorable list.
//!
//! Only years 1970..=9999 are representable in these fixed-width forms. Formatting a later
//! timestamp saturates to `9999-12-31T23:59:59` (never a panic); parsing rejects anything
//! that is not exactly the form above with [`Error::Invalid`].

use ::time::format_description::BorrowedFormatItem;
use ::time::macros::format_description;
use ::time::{OffsetDateTime, PrimitiveDateTime};

use crate::error::{Error, Result};

/// The largest timestamp that has a four-digit-year text form (9999-12-31T23:59:59 UTC).
pub const MAX_TIMESTAMP: u64 = 253_402_300_799;

const COMPACT: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]");
const PRETTY: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// Broken-down UTC time; `None` never happens for timestamps up to [`MAX_TIMESTAMP`].
fn parts(ts: u64) -> Option<(i32, u8, u8, u8, u8, u8)> {
    let ts = i64::try_from(ts.min(MAX_TIMESTAMP)).ok()?;
    let t = OffsetDateTime::from_unix_timestamp(ts).ok()?;
    Some((
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    ))
}

/// Formats `ts` as `YYYYMMDDhhmmss` (UTC).
pub fn format_compact(ts: u64) -> String {
    match parts(ts) {
        Some((y, mo, d, h, mi, s)) => format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}"),
        None => "99991231235959".to_string(),
    }
}

/// Formats `ts` as `YYYY-MM-DDThh:mm:ss` (UTC).
pub fn format_pretty(ts: u64) -> String {
    match parts(ts) {
        Some((y, mo, d, h, mi, s)) => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"),
        None => "9999-12-31T23:59:59".to_string(),
    }
}

fn parse_with(s: &str, form: &[BorrowedFormatItem<'_>], shape: &str) -> Result<u64> {
    let bad = |why: &str| Error::Invalid(format!("timestamp {s:?} is not {shape} UTC: {why}"));
    // Check the shape byte by byte first: the `time` parser alone would accept signs.
    if s.len() != shape.len() {
        return Err(bad("wrong length"));
    }
    for (c, p) in s.bytes().zip(shape.bytes()) {
        let ok = if b"YMDhms".contains(&p) {
            c.is_ascii_digit()
        } else {
            c == p
        };
        if !ok {
            return Err(bad("unexpected character"));
        }
    }
    let t = PrimitiveDateTime::parse(s, form).map_err(|e| bad(&e.to_string()))?;
    let secs = t.assume_utc().unix_timestamp();
    u64::try_from(secs).map_err(|_| bad("before 1970"))
}

/// Parses `YYYYMMDDhhmmss` (UTC) into unix seconds.
pub fn parse_compact(s: &str) -> Result<u64> {
    parse_with(s, COMPACT, "YYYYMMDDhhmmss")
}

/// Parses `YYYY-MM-DDThh:mm:ss` (UTC) into unix seconds.
pub fn parse_pretty(s: &str) -> Result<u64> {
    parse_with(s, PRETTY, "YYYY-MM-DDThh:mm:ss")
}
