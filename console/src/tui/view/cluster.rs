//! The Cluster view: every node of the cluster file with its role, id, address,
//! reachability, version, uptime and running tasks; below, the selected node's details
//! and summary status.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{clip, dur, offset, Theme};
use crate::tui::model::{Model, Reach, View};

/// The reachability word.
pub fn reach_word(r: &Reach) -> &'static str {
    match r {
        Reach::Up => "up",
        Reach::Connecting => "connecting",
        Reach::Down { .. } => "down",
    }
}

/// The version to show: the software's version number (`walb-storage 0.1.0` → `0.1.0`).
pub fn version_word(v: Option<&str>) -> String {
    v.and_then(|v| v.split_whitespace().last())
        .unwrap_or("-")
        .to_owned()
}

/// Draws the view.
pub fn draw(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let visible = m.visible_nodes();
    let table_h = (visible.len() as u16 + 3).clamp(4, area.height.saturating_sub(4).max(4));
    let [top, bottom] =
        Layout::vertical([Constraint::Length(table_h), Constraint::Min(0)]).areas(area);
    draw_nodes(m, &t, &visible, f, top);
    draw_details(m, &t, f, bottom);
}

/// The nodes' table, the selected one highlighted.
fn draw_nodes(m: &Model, t: &Theme, visible: &[usize], f: &mut Frame, top: Rect) {
    let sel = m.sel[View::Cluster.index()].min(visible.len().saturating_sub(1));
    let rows_h = top.height.saturating_sub(3) as usize;
    let first = offset(sel, rows_h);
    let rows: Vec<Row> = visible
        .iter()
        .enumerate()
        .skip(first)
        .take(rows_h)
        .filter_map(|(i, ni)| {
            let n = m.nodes.get(*ni)?;
            let tasks = m.running_tasks(&n.name);
            let row = Row::new(vec![
                Cell::from(n.name.clone()),
                Cell::from(n.role.as_str()),
                Cell::from(n.addr.clone()),
                Cell::from(Span::styled(reach_word(&n.reach), t.reach(&n.reach))),
                Cell::from(version_word(n.version.as_deref())),
                Cell::from(n.uptime_now(m.now).map_or("-".to_owned(), dur)),
                Cell::from(tasks.to_string()),
                Cell::from(if n.errors > 0 {
                    Span::styled(n.errors.to_string(), t.warn())
                } else {
                    Span::raw("0")
                }),
            ]);
            Some(if i == sel {
                row.style(t.selected())
            } else {
                row
            })
        })
        .collect();
    let header = Row::new(vec![
        "NODE", "ROLE", "ADDRESS", "REACH", "VERSION", "UPTIME", "TASKS", "ERRORS",
    ])
    .style(t.header());
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Min(12),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .column_spacing(1)
    .block(Block::default().borders(Borders::ALL).title(format!(
        " nodes ({}) ",
        if m.current_filter().is_empty() {
            m.nodes.len().to_string()
        } else {
            format!("{} of {}", visible.len(), m.nodes.len())
        }
    )));
    f.render_widget(table, top);
}

/// The selected node: its address, reach, backup group and status lines.
fn draw_details(m: &Model, t: &Theme, f: &mut Frame, bottom: Rect) {
    let Some(n) = m.selected_node() else { return };
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{} ", n.name), t.title()),
        Span::raw(format!("{} at {} ", n.role, n.addr)),
        Span::styled(reach_word(&n.reach), t.reach(&n.reach)),
        Span::raw(match (n.pid, &n.version) {
            (Some(p), Some(v)) => format!(", pid {p}, {v}"),
            _ => String::new(),
        }),
    ])];
    if let Reach::Down { error } = &n.reach {
        lines.push(Line::from(Span::styled(
            format!("unreachable: {error} (retrying)"),
            t.error(),
        )));
    }
    if let Some(a) = &n.archive {
        let proxies = if n.proxies.is_empty() {
            "none".to_owned()
        } else {
            n.proxies.join(", ")
        };
        lines.push(Line::from(format!(
            "backup group: archive {a}, proxies {proxies}"
        )));
    }
    let width = bottom.width.saturating_sub(2) as usize;
    for s in &n.status {
        lines.push(Line::from(Span::styled(clip(s, width), t.dim())));
    }
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::default().borders(Borders::ALL).title(" details "));
    f.render_widget(p, bottom);
}
