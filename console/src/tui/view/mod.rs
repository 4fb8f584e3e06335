//! The views: `draw(&Model, &mut Frame)`, pure.
//!
//! The screen is a header (cluster, view tabs, reachability), the current view, a status
//! line and a footer of key hints generated from [`crate::tui::keys::BINDINGS`];
//! overlays (help, palette, confirmation, action menu, command output) are drawn on top.
//! Everything fits 80×24 and uses more room when there is more. [`Theme`] draws without
//! colour when `NO_COLOR` is set: states, gauges and marks stay readable as text and
//! modifiers (bold, reversed).
//!
//! # Layout
//!
//! - [`cluster`], [`volumes`], [`diffs`], [`tasks`], [`events`]: one module per view.
//! - [`overlay`]: help, palette, confirmation, menu, output.
//! - this module: the frame, the theme and the formatting helpers.

pub mod cluster;
pub mod diffs;
pub mod events;
pub mod overlay;
pub mod tasks;
pub mod volumes;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use walb_wire::msg::{ArchiveState, ProxyState, StorageState, VolumeState};

use super::keys;
use super::model::{Level, Mode, Model, Ms, Reach, View};

/// Colours and modifiers, or modifiers only (`NO_COLOR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// No colours.
    pub plain: bool,
}

impl Theme {
    /// The theme of `m`.
    pub fn of(m: &Model) -> Theme {
        Theme { plain: m.plain }
    }

    fn pick(&self, colour: Style, plain: Style) -> Style {
        if self.plain {
            plain
        } else {
            colour
        }
    }

    /// The title in the header.
    pub fn title(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// The active view's tab.
    pub fn tab(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// Table headers.
    pub fn header(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        )
    }

    /// The selected row.
    pub fn selected(&self) -> Style {
        self.pick(
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }

    /// The cursor cell (Volumes).
    pub fn cursor(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// A temporary state (an operation runs).
    pub fn temporary(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// Errors.
    pub fn error(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// Warnings.
    pub fn warn(&self) -> Style {
        self.pick(Style::new().fg(Color::Yellow), Style::new())
    }

    /// Healthy.
    pub fn ok(&self) -> Style {
        self.pick(Style::new().fg(Color::Green), Style::new())
    }

    /// Less important.
    pub fn dim(&self) -> Style {
        self.pick(Style::new().fg(Color::DarkGray), Style::new())
    }

    /// Keys in the footer and help.
    pub fn key(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// A marked range (Diffs).
    pub fn marked(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::UNDERLINED),
        )
    }

    /// A volume state (`None`: not known).
    pub fn state(&self, state: Option<VolumeState>) -> Style {
        match state {
            None => self.dim(),
            Some(s) if s.is_clear() => self.dim(),
            Some(
                VolumeState::Storage(StorageState::Target)
                | VolumeState::Archive(ArchiveState::Archived)
                | VolumeState::Proxy(ProxyState::Started),
            ) => self.ok(),
            Some(s) if !s.is_steady() => self.temporary(),
            Some(_) => Style::new(),
        }
    }

    /// A log level.
    pub fn level(&self, l: Level) -> Style {
        match l {
            Level::Info => Style::new(),
            Level::Warn => self.warn(),
            Level::Error => self.error(),
        }
    }

    /// Reachability.
    pub fn reach(&self, r: &Reach) -> Style {
        match r {
            Reach::Up => self.ok(),
            Reach::Connecting => self.warn(),
            Reach::Down { .. } => self.error(),
        }
    }
}

/// Draws the whole screen.
pub fn draw(m: &Model, f: &mut Frame) {
    let area = f.area();
    let [head, body, status, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    header(m, f, head);
    match m.view {
        View::Cluster => cluster::draw(m, f, body),
        View::Volumes => volumes::draw(m, f, body),
        View::Diffs => diffs::draw(m, f, body),
        View::Tasks => tasks::draw(m, f, body),
        View::Events => events::draw(m, f, body),
    }
    status_line(m, f, status);
    footer(m, f, foot);
    overlay::draw(m, f, area);
}

fn header(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let mut spans = vec![
        Span::styled(" walb ", t.title()),
        Span::raw(format!("{} ", m.cluster)),
        Span::styled(format!("{} ", m.view.title()), t.title()),
    ];
    let down = m.down_nodes();
    let up = m.nodes.iter().filter(|n| n.reach == Reach::Up).count();
    let mut right = vec![Span::styled(
        format!(" {up}/{} up ", m.nodes.len()),
        if down > 0 { t.error() } else { t.ok() },
    )];
    if m.read_only {
        right.push(Span::styled("RO ", t.warn()));
    }
    let right_w: usize = right.iter().map(|s| s.content.chars().count()).sum();
    let width = area.width as usize;
    let mut used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    if m.mode == Mode::Normal {
        for (k, label) in keys::view_hints(m.view, m.read_only) {
            let w = k.chars().count() + label.chars().count() + 3;
            if used + w + right_w > width {
                break;
            }
            spans.push(Span::styled(format!(" {k}"), t.key()));
            spans.push(Span::raw(format!(" {label} ")));
            used += w;
        }
    }
    if used + right_w < width {
        spans.push(Span::raw(" ".repeat(width - used - right_w)));
    }
    spans.extend(right);
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn status_line(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let filter = m.current_filter();
    let line = if m.mode == Mode::Filter {
        Line::from(vec![
            Span::styled("/", t.key()),
            Span::raw(filter.to_owned()),
            Span::styled("█", t.key()),
            Span::styled("  enter keeps, esc clears", t.dim()),
        ])
    } else if let Some((level, msg)) = &m.status {
        Line::from(Span::styled(msg.clone(), t.level(*level)))
    } else if !filter.is_empty() {
        Line::from(vec![
            Span::styled("filter: ", t.dim()),
            Span::raw(filter.to_owned()),
            Span::styled("  (esc clears)", t.dim()),
        ])
    } else {
        Line::default()
    };
    f.render_widget(Paragraph::new(line), area);
}

fn footer(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let mut spans = Vec::new();
    let mut used = 0usize;
    for v in View::ALL {
        let label = format!("{} {}", v.index() + 1, v.title());
        used += label.chars().count() + 1;
        spans.push(if v == m.view {
            Span::styled(label, t.tab())
        } else {
            Span::styled(label, t.dim())
        });
        spans.push(Span::raw(" "));
    }
    let hints: Vec<(&str, &str)> = match &m.mode {
        Mode::Normal => keys::global_hints(),
        Mode::Help => vec![("esc", "close")],
        Mode::Filter => vec![("enter", "keep"), ("esc", "clear")],
        Mode::Palette(_) => vec![("enter", "run"), ("tab", "complete"), ("esc", "close")],
        Mode::Confirm(_) => vec![("y", "yes"), ("n/esc", "no")],
        Mode::Menu(_) => vec![("key/enter", "run"), ("esc", "close")],
        Mode::Prompt(_) => vec![("enter", "run"), ("esc", "cancel")],
        Mode::Output(_) => vec![("↑↓", "scroll"), ("esc", "close")],
    };
    for (k, label) in hints {
        let w = k.chars().count() + label.chars().count() + 3;
        if used + w > area.width as usize {
            break;
        }
        spans.push(Span::styled(format!(" {k}"), t.key()));
        spans.push(Span::raw(format!(" {label} ")));
        used += w;
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

// ----------------------------------------------------------------------------------
// Formatting

/// A text gauge of `width` cells (eighth blocks), `░` for the empty part.
pub fn bar(ratio: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (ratio.clamp(0.0, 1.0) * (width * 8) as f64).round() as usize;
    let full = eighths / 8;
    let mut s: String = "█".repeat(full.min(width));
    if full < width {
        let part = eighths % 8;
        if part > 0 {
            s.push(PARTS[part]);
            s.push_str(&"░".repeat(width - full - 1));
        } else {
            s.push_str(&"░".repeat(width - full));
        }
    }
    s
}

/// `59s`, `12m03s`, `1h02m`, `3d04h`.
pub fn dur(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `512B`, `1.5K`, `12.0M`, `3.2G` (binary units).
pub fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes.max(0.0);
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}", UNITS[u])
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// `hh:mm:ss` (UTC) of a time in milliseconds.
pub fn hms(ms: Ms) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// `state` shortened to `width` characters (walb's long state names have short forms).
pub fn short_state(state: &str, width: usize) -> String {
    if state.chars().count() <= width {
        return state.to_owned();
    }
    const SHORT: &[(&str, &str)] = &[
        ("ReplSyncAsServer", "ReplSrv"),
        ("StartStandby", "StrtStby"),
        ("StopStandby", "StopStby"),
        ("StartTarget", "StrtTgt"),
        ("StopTarget", "StopTgt"),
        ("WaitForEmpty", "WaitEmpt"),
        ("AddArchiveInfo", "AddArInf"),
        ("DeleteArchiveInfo", "DelArInf"),
        ("SyncReady", "SyncRdy"),
        ("WdiffRecv", "WdfRecv"),
        ("Archived", "Archvd"),
    ];
    let s = SHORT
        .iter()
        .find(|(l, _)| *l == state)
        .map_or(state, |(_, s)| *s);
    s.chars().take(width).collect()
}

/// Truncates `s` to `width` characters, marking the cut with `…`.
pub fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else if width == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(width - 1).collect();
        t.push('…');
        t
    }
}

/// A rectangle of `w`×`h` centred in `area` (clamped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The first row to show so that `sel` is visible in `rows` rows.
pub fn offset(sel: usize, rows: usize) -> usize {
    if rows == 0 {
        0
    } else {
        sel.saturating_sub(rows - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_use_eighth_blocks() {
        assert_eq!(bar(0.0, 4), "░░░░");
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(bar(0.5 + 1.0 / 8.0, 4), "██▌░");
        assert_eq!(bar(0.5 + 1.0 / 16.0, 4), "██▎░");
        assert_eq!(bar(2.0, 3), "███");
        assert_eq!(bar(-1.0, 3), "░░░");
        for i in 0..=100 {
            assert_eq!(bar(i as f64 / 100.0, 7).chars().count(), 7);
        }
    }

    #[test]
    fn durations_sizes_and_states_are_short() {
        assert_eq!(dur(59), "59s");
        assert_eq!(dur(723), "12m03s");
        assert_eq!(dur(3720), "1h02m");
        assert_eq!(dur(273_600), "3d04h");
        assert_eq!(size(512.0), "512B");
        assert_eq!(size(1536.0), "1.5K");
        assert_eq!(size(12.0 * 1048576.0), "12.0M");
        assert_eq!(short_state("Archived", 9), "Archived");
        assert_eq!(short_state("ReplSyncAsServer", 9), "ReplSrv");
        assert_eq!(short_state("Whatever-long", 4), "What");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(hms(3_723_000), "01:02:03");
    }
}
