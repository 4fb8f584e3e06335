//! The daemons' text lines the fold reads: `ts-delta` and `log-usage` lines, and the
//! uptime in status lines. `None` for what does not parse (a line of another version).

use super::{LogUsage, TsDelta};

/// Parses a storage's `get ts-delta` line (`name:VOL\tdest:ARCHIVE\t...\tgid:N\t...
/// \tdest_gid:N\t...\tts_delta:N...`); `None` for a line whose archive side is not
/// known yet (`-`).
pub fn parse_ts_delta(line: &str) -> Option<(String, String, TsDelta)> {
    let (mut name, mut dest, mut gid, mut dest_gid, mut secs) = (None, None, None, None, None);
    for field in line.split('\t') {
        let Some((k, v)) = field.split_once(':') else {
            continue;
        };
        match k {
            "name" => name = Some(v.to_owned()),
            "dest" => dest = Some(v.to_owned()),
            "gid" => gid = v.parse().ok(),
            "dest_gid" => dest_gid = v.parse().ok(),
            "ts_delta" => secs = v.parse().ok(),
            _ => {}
        }
    }
    Some((
        name?,
        dest?,
        TsDelta {
            gid: gid?,
            dest_gid: dest_gid?,
            secs: secs?,
        },
    ))
}

/// Parses a `name:VOL\tusage_pb:N\tcapacity_pb:N\tpbs:N` line.
pub fn parse_log_usage(line: &str) -> Option<(String, LogUsage)> {
    let mut name = None;
    let mut u = LogUsage::default();
    let (mut has_u, mut has_c) = (false, false);
    for field in line.split('\t') {
        let (k, v) = field.split_once(':')?;
        match k {
            "name" => name = Some(v.to_owned()),
            "usage_pb" => {
                u.usage_pb = v.parse().ok()?;
                has_u = true;
            }
            "capacity_pb" => {
                u.capacity_pb = v.parse().ok()?;
                has_c = true;
            }
            "pbs" => u.pbs = v.parse().ok(),
            _ => {}
        }
    }
    (has_u && has_c).then_some((name?, u))
}

/// Finds an uptime in status lines: `uptime 12s`, `uptime:12` or `uptime_s:12`.
pub fn parse_uptime(lines: &[String]) -> Option<u64> {
    for l in lines {
        let words: Vec<&str> = l.split(|c: char| c.is_whitespace() || c == '\t').collect();
        for (i, w) in words.iter().enumerate() {
            let value = if *w == "uptime" {
                words.get(i + 1).copied()
            } else {
                w.strip_prefix("uptime:")
                    .or_else(|| w.strip_prefix("uptime_s:"))
            };
            if let Some(n) = value.and_then(|v| v.trim_end_matches('s').parse().ok()) {
                return Some(n);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_usage_lines_and_uptimes_parse() {
        let (v, u) = parse_log_usage("name:vol\tusage_pb:10\tcapacity_pb:100\tpbs:4096").unwrap();
        assert_eq!(v, "vol");
        assert_eq!((u.usage_pb, u.capacity_pb, u.pbs), (10, 100, Some(4096)));
        assert_eq!(parse_log_usage("name:vol\tusage_pb:x\tcapacity_pb:1"), None);
        assert_eq!(parse_log_usage("garbage"), None);
        let t = "name:v\tdest:a0\tkind:storage\tdest_kind:archive\tgid:9\tts:x\tdest_gid:7\t\
                 dest_ts:y\tts_delta:12\tage:1";
        assert_eq!(
            parse_ts_delta(t),
            Some((
                "v".into(),
                "a0".into(),
                TsDelta {
                    gid: 9,
                    dest_gid: 7,
                    secs: 12
                }
            ))
        );
        assert_eq!(parse_ts_delta(&t.replace("dest_gid:7", "dest_gid:-")), None);
        let l = |s: &str| vec![s.to_owned()];
        assert_eq!(
            parse_uptime(&l("proxy p0 uptime 42s bg 1 fg-free 2")),
            Some(42)
        );
        assert_eq!(parse_uptime(&l("storage s0\tuptime:7")), Some(7));
        assert_eq!(parse_uptime(&l("archive a0 (file backend)")), None);
    }
}
