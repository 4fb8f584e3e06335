//! `retention ARCHIVE VOL`: a volume's retention policy on an archive and what the next
//! pass would merge, apply or keep; with options, the change of its own policy (counts,
//! grid, on/off, back to the archive's default) and of its pins, made or (`--dry-run`)
//! only shown. One row of the archive family ([`super::archive`]).

use walb_wire::msg::{RetentionFate, RetentionReport, RetentionSet};

use super::spec::*;
use super::ExecCmd;
use crate::client::{Client, ClientError};
use crate::exec::output::Outcome;
use walb_wire::msg::text::time_iso;
use walb_wire::Role;

/// Shows the report of `vol` on `archive`, after `change` if any.
pub(super) async fn run(
    client: &Client,
    archive: &str,
    vol: &str,
    change: Option<&RetentionSet>,
) -> Result<Outcome, ClientError> {
    client
        .cluster()
        .node_as(archive, &[Role::Archive], "retention")?;
    let r = match change {
        None => client.retention(archive, vol).await?,
        Some(s) => client.set_retention(archive, s.clone()).await?,
    };
    Ok(Outcome::Report {
        lines: lines(&r),
        json: serde_json::to_value(&r).unwrap_or_default(),
    })
}

const OPT_KEEP: [OptSpec; 6] = [
    OptSpec {
        name: "--keep-last",
        value: Some("N"),
    },
    OptSpec {
        name: "--keep-hourly",
        value: Some("N"),
    },
    OptSpec {
        name: "--keep-daily",
        value: Some("N"),
    },
    OptSpec {
        name: "--keep-weekly",
        value: Some("N"),
    },
    OptSpec {
        name: "--keep-monthly",
        value: Some("N"),
    },
    OptSpec {
        name: "--keep-yearly",
        value: Some("N"),
    },
];

/// The row of the command table.
pub(super) const ROW: CommandSpec = CommandSpec {
    name: "retention",
    args: "ARCHIVE VOL",
    about: "show the volume's retention policy and what the next pass would do to each restorable snapshot (keep and why, fold into a merge, apply into the base); --keep-* N, --keep-grid GRID (zrepl form: '1x1m(keep=all) | 59x1m | 23x1h'), --on, --off give the volume its own policy, --default returns it to the archive's; --pin/--unpin GID,... pin snapshots (never merged or applied); --dry-run shows the pass under a change without making it",
    options: &[
        OPT_KEEP[0],
        OPT_KEEP[1],
        OPT_KEEP[2],
        OPT_KEEP[3],
        OPT_KEEP[4],
        OPT_KEEP[5],
        OptSpec {
            name: "--keep-grid",
            value: Some("GRID"),
        },
        OptSpec {
            name: "--on",
            value: None,
        },
        OptSpec {
            name: "--off",
            value: None,
        },
        OptSpec {
            name: "--default",
            value: None,
        },
        OptSpec {
            name: "--pin",
            value: Some("GID,..."),
        },
        OptSpec {
            name: "--unpin",
            value: Some("GID,..."),
        },
        OptSpec {
            name: "--dry-run",
            value: None,
        },
    ],
    parse: |a| {
        let archive = a.req("ARCHIVE")?;
        let vol = a.req("VOL")?;
        Ok(ExecCmd::Archive(super::ArchiveCmd::Retention {
            archive,
            change: change(a, &vol)?,
            vol,
        }))
    },
};

fn gids(a: &mut Args, name: &str) -> Result<Vec<u64>, String> {
    match a.value_str(name) {
        None => Ok(Vec::new()),
        Some(v) => v.split(',').map(|g| number(g.trim(), name)).collect(),
    }
}

/// The change the options ask for (`None`: only show).
fn change(a: &mut Args, vol: &str) -> Result<Option<RetentionSet>, String> {
    let mut set = Vec::new();
    for o in OPT_KEEP {
        if let Some(n) = a.value_num(o.name)? {
            let n = u32::try_from(n).map_err(|_| format!("{} {n} is too large", o.name))?;
            set.push((o.name.trim_start_matches("--").to_owned(), n.to_string()));
        }
    }
    if let Some(g) = a.value_str("--keep-grid") {
        set.push(("keep-grid".to_owned(), g));
    }
    match (a.flag("--on"), a.flag("--off")) {
        (true, true) => return Err("--on or --off, not both".into()),
        (true, false) => set.push(("retention".into(), "on".into())),
        (false, true) => set.push(("retention".into(), "off".into())),
        (false, false) => {}
    }
    let s = RetentionSet {
        vol: vol.to_owned(),
        default: a.flag("--default"),
        set,
        pin: gids(a, "--pin")?,
        unpin: gids(a, "--unpin")?,
        dry_run: a.flag("--dry-run"),
    };
    let asks = s.default || !s.set.is_empty() || !s.pin.is_empty() || !s.unpin.is_empty();
    match (asks, s.dry_run) {
        (false, true) => Err("--dry-run shows a change: give one (--keep-*, --pin...)".into()),
        (false, false) => Ok(None),
        (true, _) => Ok(Some(s)),
    }
}

fn list(g: &[u64]) -> String {
    if g.is_empty() {
        "-".into()
    } else {
        g.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }
}

/// The text form of a report: the policy, the pins, the count and its bound, the next
/// pass, then one line per restorable snapshot (`GID TIME EXPLICIT FATE`).
pub fn lines(r: &RetentionReport) -> Vec<String> {
    let p = &r.policy;
    let mut out = vec![
        format!(
            "policy {} ({}): keep-last={} keep-hourly={} keep-daily={} keep-weekly={} keep-monthly={} keep-yearly={} keep-grid={}",
            if p.on { "on" } else { "off" },
            if r.own { "the volume's own" } else { "the archive's default" },
            p.keep_last,
            p.keep_hourly,
            p.keep_daily,
            p.keep_weekly,
            p.keep_monthly,
            p.keep_yearly,
            p.grid
        ),
        format!("pinned {}", list(&r.pinned)),
        format!(
            "diffs {} bound {}",
            r.diffs,
            r.bound.map_or("-".to_owned(), |b| b.to_string())
        ),
    ];
    let mut next = Vec::new();
    if !r.demote.is_empty() {
        next.push(format!("make implicit {}", list(&r.demote)));
    }
    if let Some(g) = r.apply_to {
        next.push(format!("apply up to {g}"));
    }
    if !r.merges.is_empty() {
        let m: Vec<String> = r.merges.iter().map(|(b, e)| format!("{b}..{e}")).collect();
        next.push(format!("merge {}", m.join(" ")));
    }
    out.push(format!(
        "next pass {}",
        if next.is_empty() {
            "nothing".to_owned()
        } else {
            next.join("; ")
        }
    ));
    for pt in &r.points {
        let fate = match &pt.fate {
            RetentionFate::Keep(w) => format!("keep {}", w.join(",")),
            RetentionFate::Fold => "fold".into(),
            RetentionFate::Apply => "apply".into(),
        };
        out.push(format!(
            "{} {} {} {fate}",
            pt.gid,
            time_iso(pt.timestamp),
            u8::from(pt.explicit)
        ));
    }
    if r.dry_run {
        out.push("dry run: nothing changed".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{parse_args, ArchiveCmd};
    use super::*;
    use walb_wire::msg::{RetentionPoint, RetentionPolicy};

    fn parse(line: &str) -> Result<ExecCmd, String> {
        let words: Vec<String> = line.split(' ').map(str::to_owned).collect();
        parse_args(&words).map_err(|e| e.message)
    }

    #[test]
    fn options_make_a_change_and_none_only_shows() {
        assert_eq!(
            parse("retention a0 v").unwrap(),
            ExecCmd::Archive(ArchiveCmd::Retention {
                archive: "a0".into(),
                vol: "v".into(),
                change: None
            })
        );
        let ExecCmd::Archive(ArchiveCmd::Retention {
            change: Some(s), ..
        }) = parse("retention a0 v --keep-last 3 --off --pin 4,9 --keep-grid=1x1h --dry-run")
            .unwrap()
        else {
            panic!("no change");
        };
        assert_eq!(
            s.set,
            vec![
                ("keep-last".to_owned(), "3".to_owned()),
                ("keep-grid".to_owned(), "1x1h".to_owned()),
                ("retention".to_owned(), "off".to_owned()),
            ]
        );
        assert_eq!((s.pin, s.dry_run, s.default), (vec![4, 9], true, false));
        assert!(parse("retention a0 v --dry-run").is_err());
        assert!(parse("retention a0 v --on --off").is_err());
        assert!(parse("retention a0 v --pin 4,x").is_err());
        assert!(parse("retention a0 v --keep-last 99999999999").is_err());
    }

    #[test]
    fn a_report_prints_the_pass_and_every_point() {
        let r = RetentionReport {
            policy: RetentionPolicy {
                on: true,
                keep_last: 8,
                grid: "1x1m(keep=all)".into(),
                ..RetentionPolicy::default()
            },
            pinned: vec![3],
            points: vec![
                RetentionPoint {
                    gid: 2,
                    timestamp: 0,
                    explicit: true,
                    fate: RetentionFate::Apply,
                },
                RetentionPoint {
                    gid: 3,
                    timestamp: 60,
                    explicit: false,
                    fate: RetentionFate::Keep(vec!["pinned".into(), "newest".into()]),
                },
            ],
            merges: vec![(3, 5)],
            apply_to: Some(3),
            diffs: 2,
            bound: Some(10),
            dry_run: true,
            ..RetentionReport::default()
        };
        let l = lines(&r);
        assert!(
            l[0].starts_with("policy on (the archive's default): keep-last=8 keep-hourly=0"),
            "{}",
            l[0]
        );
        assert_eq!(l[1], "pinned 3");
        assert_eq!(l[2], "diffs 2 bound 10");
        assert_eq!(l[3], "next pass apply up to 3; merge 3..5");
        assert_eq!(l[4], "2 1970-01-01T00:00:00 1 apply");
        assert_eq!(l[5], "3 1970-01-01T00:01:00 0 keep pinned,newest");
        assert_eq!(l[6], "dry run: nothing changed");
    }
}
