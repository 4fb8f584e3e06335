//! UTC calendar buckets of a Unix time for the PBS-style counts: hour, day, ISO week
//! (Monday to Sunday), month and year, each as one number that grows with time.

/// The civil date `(year, month 1-12, day 1-31)` of day `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub(super) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A calendar unit of the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    /// Hour.
    Hour,
    /// Day.
    Day,
    /// ISO week, Monday first.
    Week,
    /// Month.
    Month,
    /// Year.
    Year,
}

/// The bucket of `ts` (seconds since the epoch, UTC) in `unit`.
pub(super) fn bucket(ts: u64, unit: Unit) -> i64 {
    let days = (ts / 86_400) as i64;
    match unit {
        Unit::Hour => (ts / 3600) as i64,
        Unit::Day => days,
        // 1970-01-01 was a Thursday: Monday 1969-12-29 is day -3.
        Unit::Week => (days + 3).div_euclid(7),
        Unit::Month => {
            let (y, m, _) = civil(days);
            y * 12 + i64::from(m) - 1
        }
        Unit::Year => civil(days).0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_buckets_match_the_calendar() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(59), (1970, 3, 1));
        // 2000-02-29 (a leap day of a century leap year) is day 11016.
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(11_017), (2000, 3, 1));
        // 2026-12-07 is day 20794.
        assert_eq!(civil(20_794), (2026, 12, 7));
        let day = |d: i64| d as u64 * 86_400;
        // Sunday 1970-01-04 and Monday 1970-01-05 are in different ISO weeks.
        assert_eq!(bucket(day(3), Unit::Week) + 1, bucket(day(4), Unit::Week));
        // Thursday 1970-01-01 .. Sunday 1970-01-04 are one week.
        assert_eq!(bucket(0, Unit::Week), bucket(day(3) + 86_399, Unit::Week));
        assert_eq!(bucket(day(30), Unit::Month), bucket(0, Unit::Month));
        assert_eq!(bucket(day(31), Unit::Month), bucket(0, Unit::Month) + 1);
        assert_eq!(bucket(day(364), Unit::Year), 1970);
        assert_eq!(bucket(day(365), Unit::Year), 1971);
        assert_eq!(bucket(7199, Unit::Hour), 1);
    }
}
