//! The Events view: the log of state changes, transfers, commands and errors, newest at
//! the bottom, following new lines unless scrolled back; `/` filters it.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::{clip, hms, Theme};
use crate::tui::model::Model;

/// Draws the view.
pub fn draw(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let lines = m.visible_log();
    let rows = area.height.saturating_sub(2) as usize;
    let end = lines.len().saturating_sub(m.events_back);
    let start = end.saturating_sub(rows);
    let width = area.width.saturating_sub(2) as usize;
    let text: Vec<Line> = lines[start..end]
        .iter()
        .map(|l| {
            let head = format!(
                "{} {:<5} {:<6} {:<8} ",
                hms(l.at),
                l.level.as_str(),
                l.node.as_deref().unwrap_or("-"),
                clip(l.vol.as_deref().unwrap_or("-"), 8)
            );
            let rest = width.saturating_sub(head.chars().count());
            Line::from(vec![
                Span::styled(head, t.level(l.level)),
                Span::styled(clip(&l.text, rest), t.level(l.level)),
            ])
        })
        .collect();
    let title = if m.events_back > 0 {
        format!(
            " events (UTC; {} of {}), scrolled back {}: f follows ",
            lines.len(),
            m.log.len(),
            m.events_back
        )
    } else {
        format!(
            " events (UTC; {} of {}), following ",
            lines.len(),
            m.log.len()
        )
    };
    f.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}
