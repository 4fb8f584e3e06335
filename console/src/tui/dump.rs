//! The one-shot status dump: what the console shows, as plain text, for a stdout that is
//! not a terminal (`walb-console | less`, cron mails, `watch`).

use super::model::{Model, Reach};
use super::view::cluster::{reach_word, version_word};
use super::view::volumes::{detail, flags, lag_text};
use super::view::{dur, size};

fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// The dump's lines.
pub fn lines(m: &Model) -> Vec<String> {
    let mut out = vec![
        format!("cluster {} ({})", m.cluster, m.origin),
        String::new(),
    ];
    let mut rows = vec![vec![
        "NODE".to_owned(),
        "ROLE".into(),
        "ADDRESS".into(),
        "REACH".into(),
        "VERSION".into(),
        "UPTIME".into(),
        "TASKS".into(),
    ]];
    for n in &m.nodes {
        rows.push(vec![
            n.name.clone(),
            n.role.as_str().to_owned(),
            n.addr.clone(),
            match &n.reach {
                Reach::Down { error } => format!("down: {error}"),
                r => reach_word(r).to_owned(),
            },
            version_word(n.version.as_deref()),
            n.uptime_now(m.now).map_or("-".to_owned(), dur),
            m.running_tasks(&n.name).to_string(),
        ]);
    }
    out.extend(table(&rows));
    out.push(String::new());
    let mut head = vec!["VOL".to_owned()];
    head.extend(m.nodes.iter().map(|n| n.name.clone()));
    head.extend(["LOG".to_owned(), "FLAGS".into(), "LAG".into()]);
    let mut rows = vec![head];
    for v in m.vols.values() {
        let mut r = vec![v.name.clone()];
        r.extend(
            m.nodes
                .iter()
                .map(|n| v.state(&n.name).map_or("-", |s| s.name()).to_owned()),
        );
        r.push(v.fullest_log().map_or("-".to_owned(), |(_, l)| {
            format!("{:.0}%", l.ratio() * 100.0)
        }));
        let f = flags(v);
        r.push(if f.is_empty() { "-".into() } else { f });
        r.push(lag_text(v));
        rows.push(r);
    }
    if m.vols.is_empty() {
        out.push("no volumes".into());
    } else {
        out.extend(table(&rows));
        for v in m.vols.values() {
            let d = detail(m, v);
            if d.is_empty() {
                continue;
            }
            out.push(String::new());
            out.push(format!("{}:", v.name));
            out.extend(d.into_iter().map(|(_, l)| format!("  {l}")));
        }
    }
    out.extend(task_lines(m));
    out
}

/// The running tasks' table (nothing when none runs), then the warnings and errors of the
/// log.
fn task_lines(m: &Model) -> Vec<String> {
    let mut out = Vec::new();
    let tasks: Vec<_> = m.tasks.iter().filter(|t| t.running()).collect();
    if !tasks.is_empty() {
        out.push(String::new());
        let mut rows = vec![vec![
            "TASK".to_owned(),
            "NODE".into(),
            "VOL".into(),
            "DONE".into(),
            "RATE".into(),
            "LEFT".into(),
        ]];
        for t in tasks {
            rows.push(vec![
                t.label(),
                t.node.clone(),
                t.vol.clone().unwrap_or_else(|| "-".into()),
                t.ratio()
                    .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
                t.rate_bps
                    .map_or("-".to_owned(), |r| format!("{}/s", size(r))),
                t.eta_s().map_or("-".to_owned(), dur),
            ]);
        }
        out.extend(table(&rows));
    }
    let errors: Vec<_> = m
        .log
        .iter()
        .filter(|l| l.level >= super::model::Level::Warn)
        .collect();
    if !errors.is_empty() {
        out.push(String::new());
        for l in errors {
            out.push(format!(
                "{}: {}{}{}",
                l.level.as_str(),
                l.node.as_deref().map_or(String::new(), |n| format!("{n} ")),
                l.vol.as_deref().map_or(String::new(), |v| format!("{v} ")),
                l.text
            ));
        }
    }
    out
}
