//! Overlays drawn over the view: the help of the current view (`?`), the command
//! palette (`:`), the confirmation of a destructive command, an action menu, the prompt
//! for an action's last arguments and a command's output. Each one says how to back out (`esc`).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, clip, Theme};
use crate::tui::keys;
use crate::tui::model::{Confirm, Menu, Mode, Model, Palette};
use crate::tui::palette;

/// Draws the overlay of the current mode, if any.
pub fn draw(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    match &m.mode {
        Mode::Normal | Mode::Filter => {}
        Mode::Help => draw_help(m, &t, f, area),
        Mode::Palette(p) => draw_palette(p, &t, f, area),
        Mode::Confirm(c) => draw_confirm(c, &t, f, area),
        Mode::Menu(menu) => draw_menu(menu, &t, f, area),
        Mode::Prompt(p) => {
            let width = area.width.saturating_sub(2) as usize;
            let lines = vec![
                Line::from(vec![
                    Span::styled(format!("{} ", p.line), t.title()),
                    Span::raw(p.input.clone()),
                    Span::styled("█", t.key()),
                ]),
                match &p.error {
                    Some(e) => Line::from(Span::styled(clip(e, width), t.error())),
                    None => Line::from(Span::styled(clip(&p.hint, width), t.dim())),
                },
            ];
            input_box(f, area, lines, format!(" {} ", p.args), &t);
        }
        Mode::Output(o) => {
            let w = area.width.saturating_sub(4).max(20);
            let h = area.height.saturating_sub(4).max(5);
            let r = centered(area, w, h);
            let rows = r.height.saturating_sub(2) as usize;
            let lines: Vec<Line> = o
                .lines
                .iter()
                .skip(o.scroll)
                .take(rows)
                .map(|l| Line::from(clip(l, r.width.saturating_sub(2) as usize)))
                .collect();
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(format!(
                    " {} ({} lines) ",
                    clip(&o.title, w.saturating_sub(16) as usize),
                    o.lines.len()
                ))),
                r,
            );
        }
    }
}

/// The key bindings of the current view and of the palette.
fn draw_help(m: &Model, t: &Theme, f: &mut Frame, area: Rect) {
    let mut lines = vec![Line::from(Span::styled(
        format!("{} view", m.view.title()),
        t.title(),
    ))];
    for b in keys::bindings_for(m.view, m.read_only) {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>10}  ", b.label), t.key()),
            Span::raw(b.help),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("palette", t.title())));
    for (k, h) in [
        ("tab", "complete the word (again: next candidate)"),
        ("↑↓", "history"),
        ("enter", "run (destructive commands ask first)"),
        ("esc", "close"),
    ] {
        lines.push(Line::from(vec![
            Span::styled(format!("{k:>10}  "), t.key()),
            Span::raw(h),
        ]));
    }
    if m.read_only {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            format!(
                "read-only ({}): only queries run",
                m.read_only_why.as_deref().unwrap_or("--read-only")
            ),
            t.warn(),
        )));
    }
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = centered(area, 76, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" help (esc closes) "),
        ),
        r,
    );
}

/// The command palette: the line typed, its error or hint, the completions.
fn draw_palette(p: &Palette, t: &Theme, f: &mut Frame, area: Rect) {
    let width = area.width.saturating_sub(2) as usize;
    let mut lines = vec![Line::from(vec![
        Span::styled(":", t.key()),
        Span::raw(p.input.clone()),
        Span::styled("█", t.key()),
    ])];
    if let Some(e) = &p.error {
        lines.push(Line::from(Span::styled(clip(e, width), t.error())));
    } else if let Some(h) = palette::hint(&p.input) {
        lines.push(Line::from(Span::styled(clip(&h, width), t.dim())));
    } else {
        lines.push(Line::from(Span::styled(
            "an --exec command (help lists them); tab completes",
            t.dim(),
        )));
    }
    if !p.candidates.is_empty() {
        let mut row = String::new();
        for c in &p.candidates {
            if row.chars().count() + c.chars().count() + 2 > width {
                lines.push(Line::from(row.clone()));
                row.clear();
                if lines.len() >= 6 {
                    break;
                }
            }
            row.push_str(c);
            row.push_str("  ");
        }
        if !row.is_empty() && lines.len() < 7 {
            lines.push(Line::from(row));
        }
    }
    input_box(f, area, lines, " command ".into(), t);
}

/// The confirmation of a command that loses something, with what it loses.
fn draw_confirm(c: &Confirm, t: &Theme, f: &mut Frame, area: Rect) {
    let mut lines = vec![
        Line::from(vec![
            Span::raw("run "),
            Span::styled(c.line.clone(), t.title()),
        ]),
        Line::from(Span::styled("this loses:", t.error())),
    ];
    for l in &c.loss {
        lines.push(Line::from(format!("  • {l}")));
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::styled(" y ", t.key()),
        Span::raw("yes, run it   "),
        Span::styled(" n / esc ", t.key()),
        Span::raw("no"),
    ]));
    let h = (lines.len() as u16 + 3).min(area.height);
    let r = centered(area, 76, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" confirm ")
                .border_style(t.error()),
        ),
        r,
    );
}

/// A menu of actions, scrolled to keep the highlighted one shown.
fn draw_menu(menu: &Menu, t: &Theme, f: &mut Frame, area: Rect) {
    let width = (area.width.saturating_sub(4) as usize).clamp(20, 76);
    let lw = menu
        .items
        .iter()
        .map(|i| i.label.chars().count())
        .max()
        .unwrap_or(0);
    // A menu taller than the screen scrolls to keep the highlighted item shown.
    let first = super::offset(menu.sel, area.height.saturating_sub(2) as usize);
    let mut lines = Vec::new();
    for (i, item) in menu.items.iter().enumerate().skip(first) {
        let text = clip(&format!("{:<lw$}  {}", item.label, item.shown()), width - 5);
        let l = Line::from(vec![
            Span::styled(format!(" {} ", item.key), t.key()),
            Span::raw(text),
        ]);
        lines.push(if i == menu.sel {
            l.style(t.selected())
        } else {
            l
        });
    }
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = centered(area, width as u16, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {} ", menu.title)),
        ),
        r,
    );
}

/// A box over the bottom of `area` for typing (the palette, a prompt).
fn input_box(f: &mut Frame, area: Rect, lines: Vec<Line>, title: String, t: &Theme) {
    let h = lines.len() as u16 + 2;
    let r = Rect {
        x: area.x,
        y: area.y + area.height.saturating_sub(h + 1),
        width: area.width,
        height: h.min(area.height),
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .border_style(t.key()),
        ),
        r,
    );
}
