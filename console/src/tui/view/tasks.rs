//! The Tasks view: every long operation (full and hash backup, restore, merge, apply,
//! replication, and the commands the console runs) with a progress bar, throughput,
//! elapsed time and time left; running ones first. A task waiting in its daemon's queue for
//! a foreground slot shows `queued #N` (its place) and how many run.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table};
use ratatui::Frame;

use super::{bar, clip, dur, offset, size, Theme};
use crate::tui::model::{Model, View, STALLED_MS};

/// Draws the view.
pub fn draw(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let tasks = m.visible_tasks();
    let sel = m.sel[View::Tasks.index()].min(tasks.len().saturating_sub(1));
    let rows_h = area.height.saturating_sub(3) as usize;
    let status_w = area
        .width
        .saturating_sub(2 + 11 + 6 + 9 + 14 + 9 + 7 + 7 + 8) as usize;
    let rows: Vec<Row> = tasks
        .iter()
        .enumerate()
        .skip(offset(sel, rows_h))
        .take(rows_h)
        .map(|(i, task)| {
            let end = task.end.as_ref().map_or(m.now, |e| e.at);
            let elapsed = end.saturating_sub(task.started) / 1000;
            let progress = match (task.ratio(), task.queued.filter(|_| task.running())) {
                (_, Some(q)) => format!("queued #{}", q.ahead + 1),
                (Some(r), None) => format!("{} {:>3.0}%", bar(r, 8), r * 100.0),
                (None, None) if task.running() => "running".to_owned(),
                (None, None) => String::new(),
            };
            let rate = task
                .rate_bps
                .filter(|_| task.running())
                .map_or("-".to_owned(), |r| format!("{}/s", size(r)));
            let left = task.eta_s().map_or("-".to_owned(), dur);
            let (status, style) = match &task.end {
                None if task.queued.is_some() => (
                    task.queued.map(|q| q.describe()).unwrap_or_default(),
                    t.temporary(),
                ),
                None if task.command.is_none()
                    && m.now.saturating_sub(task.updated) > STALLED_MS =>
                {
                    ("no progress".to_owned(), t.warn())
                }
                None => (
                    task.command.clone().unwrap_or_else(|| "running".into()),
                    t.temporary(),
                ),
                Some(e) if e.ok => (e.message.clone(), t.ok()),
                Some(e) => (e.message.clone(), t.error()),
            };
            let row = Row::new(vec![
                Cell::from(clip(&task.label(), 11)),
                Cell::from(clip(&task.node, 6)),
                Cell::from(clip(task.vol.as_deref().unwrap_or("-"), 9)),
                Cell::from(progress),
                Cell::from(rate),
                Cell::from(dur(elapsed)),
                Cell::from(left),
                Cell::from(Span::styled(clip(&status, status_w.max(8)), style)),
            ]);
            if i == sel {
                row.style(t.selected())
            } else {
                row
            }
        })
        .collect();
    let queued = tasks
        .iter()
        .filter(|t| t.running() && t.queued.is_some())
        .count();
    let running = tasks.iter().filter(|t| t.running()).count() - queued;
    let queued = if queued > 0 {
        format!(", {queued} queued")
    } else {
        String::new()
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(13),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new(vec![
            "TASK", "NODE", "VOL", "PROGRESS", "RATE", "TIME", "LEFT", "STATUS",
        ])
        .style(t.header()),
    )
    .column_spacing(1)
    .block(Block::default().borders(Borders::ALL).title(format!(
        " tasks ({running} running{queued}, {} in all) ",
        tasks.len()
    )));
    f.render_widget(table, area);
}
