//! The Volumes view: one row per volume, one column per node with the volume's state
//! there (temporary states highlighted, the cursor cell reversed), the fullest log as a
//! gauge, overflow and send-error flags, and the worst lag of the archives; below, the
//! selected volume on each node: log usage, queues, each archive's latest snapshot and
//! lag in gids and seconds.
//!
//! When the nodes do not fit, the node columns scroll with the cursor (`←`/`→`).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use walb_wire::Role;

use super::{bar, clip, dur, offset, short_state, size, Theme};
use crate::tui::model::{Model, View, Vol};
use walb_wire::msg::text::time_iso;
use walb_wire::msg::VolumeState;

/// Width of one node column.
pub const NODE_COL: u16 = 9;
const LOG_W: u16 = 11;
const FLAGS_W: u16 = 2;
const LAG_W: u16 = 9;

/// The node columns that fit in `width` given the volume column's width, and the first
/// one shown so that the cursor column is visible.
pub fn node_window(m: &Model, width: u16, vol_w: u16) -> (usize, usize) {
    let fixed = vol_w + 1 + LOG_W + 1 + FLAGS_W + 1 + LAG_W;
    let fit = (width.saturating_sub(fixed + 2) / (NODE_COL + 1)).max(1) as usize;
    let n = m.nodes.len();
    let fit = fit.min(n.max(1));
    let cursor = m.col.min(n.saturating_sub(1));
    let first = cursor.saturating_sub(fit - 1);
    (first, fit)
}

/// The flags of a volume: `O` a log overflowed, `E` a proxy gave up sending.
pub fn flags(v: &Vol) -> String {
    let mut s = String::new();
    if v.any_overflow() {
        s.push('O');
    }
    if v.any_send_error() {
        s.push('E');
    }
    s
}

/// `4g/35s`, `0`, or `-`.
pub fn lag_text(v: &Vol) -> String {
    match v.worst_lag() {
        None => "-".to_owned(),
        Some((_, l)) if l.gids == 0 => "0".to_owned(),
        Some((_, l)) => format!("{}g/{}", l.gids, dur(l.secs)),
    }
}

/// `██▌░░ 45%`, or `-`.
pub fn log_text(v: &Vol) -> String {
    match v.fullest_log() {
        None => "-".to_owned(),
        Some((_, l)) => format!("{} {:>3.0}%", bar(l.ratio(), 6), l.ratio() * 100.0),
    }
}

/// Draws the view.
pub fn draw(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let vols = m.visible_vols();
    let sel = m.sel[View::Volumes.index()].min(vols.len().saturating_sub(1));
    let detail_lines = m.nodes.len() as u16 + 1;
    let detail_h = (detail_lines + 2).min(area.height / 2).max(3);
    let [top, bottom] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(detail_h)]).areas(area);
    let vol_w = vols
        .iter()
        .map(|v| v.chars().count() as u16)
        .max()
        .unwrap_or(3)
        .clamp(6, 20);
    let (first_col, ncols) = node_window(m, top.width, vol_w);
    let shown: Vec<usize> = (first_col..(first_col + ncols).min(m.nodes.len())).collect();
    let mut widths = vec![Constraint::Length(vol_w)];
    widths.extend(shown.iter().map(|_| Constraint::Length(NODE_COL)));
    widths.extend([
        Constraint::Length(LOG_W),
        Constraint::Length(FLAGS_W),
        Constraint::Min(LAG_W),
    ]);
    let head = header(m, &t, &shown, first_col, ncols);
    let rows_h = top.height.saturating_sub(3) as usize;
    let start = offset(sel, rows_h);
    let rows: Vec<Row> = vols
        .iter()
        .enumerate()
        .skip(start)
        .take(rows_h)
        .filter_map(|(r, name)| {
            let v = m.vols.get(*name)?;
            let mut cells = vec![Cell::from(clip(name, vol_w as usize))];
            for i in &shown {
                let node = &m.nodes[*i];
                let state = v.state(&node.name);
                let name = state.map_or("-", VolumeState::name);
                let mut text = short_state(name, NODE_COL as usize);
                if m.plain && state.is_some_and(|s| !s.is_steady()) {
                    text = format!("{}*", short_state(name, NODE_COL as usize - 1));
                }
                let style = if r == sel && *i == m.col {
                    t.cursor()
                } else {
                    t.state(state)
                };
                cells.push(Cell::from(Span::styled(text, style)));
            }
            let flags = flags(v);
            cells.push(Cell::from(log_text(v)));
            cells.push(Cell::from(Span::styled(
                if flags.is_empty() {
                    "-".into()
                } else {
                    flags.clone()
                },
                if flags.is_empty() { t.dim() } else { t.error() },
            )));
            let lag = lag_text(v);
            cells.push(Cell::from(Span::styled(
                lag.clone(),
                if lag == "0" || lag == "-" {
                    Style::new()
                } else {
                    t.warn()
                },
            )));
            let row = Row::new(cells);
            Some(if r == sel {
                row.style(t.selected())
            } else {
                row
            })
        })
        .collect();
    let title = if m.current_filter().is_empty() {
        format!(" volumes ({}) ", vols.len())
    } else {
        format!(" volumes ({} of {}) ", vols.len(), m.vols.len())
    };
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(t.header()))
        .column_spacing(1)
        .block(Block::default().borders(Borders::ALL).title(title));
    f.render_widget(table, top);
    draw_detail(m, &t, &vols, sel, f, bottom);
}

/// The selected volume's detail lines, one per node that has something to say.
fn draw_detail(m: &Model, t: &Theme, vols: &[&str], sel: usize, f: &mut Frame, bottom: Rect) {
    let Some(name) = vols.get(sel) else {
        let p = Paragraph::new("no volumes known yet")
            .block(Block::default().borders(Borders::ALL).title(" volume "));
        f.render_widget(p, bottom);
        return;
    };
    let Some(v) = m.vols.get(*name) else { return };
    let width = bottom.width.saturating_sub(2) as usize;
    let lines: Vec<Line> = detail(m, v)
        .into_iter()
        .map(|(style, s)| Line::from(Span::styled(clip(&s, width), style.unwrap_or(t.warn()))))
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::from("nothing known of this volume yet")]
    } else {
        lines
    };
    let p = Paragraph::new(lines).block(
        Block::default()
            .borders(Borders::ALL)
            .title(format!(" {name} ")),
    );
    f.render_widget(p, bottom);
}

/// The header row: VOL, the nodes shown (arrows where more are off screen; the cursor's
/// column marked), LOG, flags and LAG.
fn header<'a>(
    m: &'a Model,
    t: &Theme,
    shown: &[usize],
    first_col: usize,
    ncols: usize,
) -> Vec<Cell<'a>> {
    let mut head: Vec<Cell> = vec![Cell::from("VOL")];
    for (k, i) in shown.iter().enumerate() {
        let n = &m.nodes[*i];
        let mut name = clip(&n.name, NODE_COL as usize - 1);
        if k == 0 && first_col > 0 {
            name = format!("◀{}", clip(&n.name, NODE_COL as usize - 2));
        }
        if k + 1 == shown.len() && first_col + ncols < m.nodes.len() {
            name = format!("{}▶", clip(&n.name, NODE_COL as usize - 2));
        }
        let style = if *i == m.col { t.cursor() } else { t.header() };
        head.push(Cell::from(Span::styled(name, style)));
    }
    head.extend([Cell::from("LOG"), Cell::from("!"), Cell::from("LAG")]);
    head
}

/// The detail lines of a volume: one per node that has something to say. Lines with a
/// style of `None` need attention (drawn in the warning style).
pub fn detail(m: &Model, v: &Vol) -> Vec<(Option<Style>, String)> {
    let mut out = Vec::new();
    for n in &m.nodes {
        let state = v.state(&n.name).map_or("-", VolumeState::name);
        match n.role {
            Role::Storage => {
                let mut s = format!("{:<6} {state}", n.name);
                let mut warn = false;
                if let Some(l) = v.log.get(&n.name) {
                    s.push_str(&format!(
                        "  log {} {:.0}% {}/{} pb",
                        bar(l.ratio(), 8),
                        l.ratio() * 100.0,
                        l.usage_pb,
                        l.capacity_pb
                    ));
                    warn |= l.ratio() >= 0.9;
                }
                if v.overflow.get(&n.name) == Some(&true) {
                    s.push_str("  OVERFLOW");
                    warn = true;
                }
                if let Some(sn) = v.storage_latest.get(&n.name) {
                    s.push_str(&format!("  latest gid {}", sn.gid));
                }
                if state != "-" && state != "Clear" || v.log.contains_key(&n.name) {
                    out.push(((!warn).then(Style::new), s));
                }
            }
            Role::Proxy => {
                let queues: Vec<String> = v
                    .queues
                    .iter()
                    .filter(|((p, _), _)| *p == n.name)
                    .map(|((_, a), q)| {
                        format!(
                            "→{a} {} diffs {}{}",
                            q.diffs,
                            size(q.bytes as f64),
                            if q.send_error { " SEND-ERROR" } else { "" }
                        )
                    })
                    .collect();
                let warn = v
                    .queues
                    .iter()
                    .any(|((p, _), q)| *p == n.name && q.send_error);
                if state != "-" && state != "Clear" || !queues.is_empty() {
                    out.push((
                        (!warn).then(Style::new),
                        format!("{:<6} {state}  {}", n.name, queues.join("  "))
                            .trim_end()
                            .to_owned(),
                    ));
                }
            }
            _ => {
                let Some(av) = v.archives.get(&n.name) else {
                    if state != "-" && state != "Clear" {
                        out.push((Some(Style::new()), format!("{:<6} {state}", n.name)));
                    }
                    continue;
                };
                let mut s = format!("{:<6} {state}", n.name);
                if let Some(l) = av.latest {
                    s.push_str(&format!(
                        "  latest gid {} {}",
                        l.gid,
                        time_iso(l.timestamp_s)
                    ));
                }
                let mut warn = false;
                if let Some(lag) = v.lag(&n.name) {
                    s.push_str(&format!("  lag {} gids {} s", lag.gids, lag.secs));
                    warn = lag.gids > 0;
                }
                if let Some(d) = &av.diffs {
                    let bytes: u64 = d.iter().map(|d| d.size).sum();
                    s.push_str(&format!("  {} diffs {}", d.len(), size(bytes as f64)));
                }
                if !av.restored.is_empty() {
                    let g: Vec<String> = av.restored.iter().map(|r| r.gid.to_string()).collect();
                    s.push_str(&format!("  restored {}", g.join(",")));
                }
                out.push(((!warn).then(Style::new), s));
            }
        }
    }
    out
}
