//! The Diffs view: for one archive and volume, the base state on top, the diff list (gid
//! range, M/C flags, timestamp, size) and the restorable snapshots (gid, time, explicit,
//! restored image). A range of diffs is marked with `space`; `enter` offers merge for a
//! range and restore / apply / del-restored / disable-snapshot for a gid. The `R` column
//! shows what the archive's retention will do to each diff at its next pass
//! ([`retention_mark`]: `m` merged with its neighbours, `a` applied into the base).
//!
//! Side by side from 100 columns, one above the other below that.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{offset, size, Theme};
use crate::tui::model::{ArchiveVol, DiffsFocus, Model, View};
use walb_wire::msg::text::{meta_state_str, snap_str, time_iso};
use walb_wire::msg::{MetaDiffDto, RetentionReport, VolumeState};

/// What the next retention pass of `r` does to diff `d`: `'a'` applied into the base
/// (it ends at or before the gid the base is applied to), `'m'` merged (inside one of
/// the pass's merges), `' '` nothing (or not known).
pub fn retention_mark(r: Option<&RetentionReport>, d: &MetaDiffDto) -> char {
    let Some(r) = r else { return ' ' };
    let (b, e) = (d.range.snap_b.gid_b, d.range.snap_e.gid_b);
    if r.apply_to.is_some_and(|g| e <= g) {
        'a'
    } else if r.merges.iter().any(|&(mb, me)| mb <= b && e <= me) {
        'm'
    } else {
        ' '
    }
}

/// Draws the view.
pub fn draw(m: &Model, f: &mut Frame, area: Rect) {
    let t = Theme::of(m);
    let Some((archive, vol, av)) = m.diffs_view() else {
        let p = Paragraph::new(vec![
            Line::from("no volume chosen"),
            Line::from("select a volume in the Volumes view (2) and press d"),
        ])
        .block(Block::default().borders(Borders::ALL).title(" diffs "));
        f.render_widget(p, area);
        return;
    };
    let [head, lists] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
    let base = av
        .and_then(|a| a.base)
        .map_or("base: not known yet".to_owned(), |b| {
            format!("base {}", meta_state_str(&b))
        });
    let state = m.vols.get(vol).and_then(|v| v.state(archive));
    let latest = av
        .and_then(|a| a.latest)
        .map_or(String::new(), |l| format!("  latest gid {}", l.gid));
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {archive} / {vol} "), t.title()),
            Span::styled(
                state.map_or("-", VolumeState::name).to_owned(),
                t.state(state),
            ),
            Span::raw(format!("  {base}{latest}")),
        ])),
        head,
    );
    let [left, right] = if lists.width >= 100 {
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(lists)
    } else {
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(lists)
    };
    draw_diff_list(m, &t, av, f, left);
    draw_restorable(m, &t, av, f, right);
}

/// The archive's diffs, the marked range for a merge highlighted.
fn draw_diff_list(m: &Model, t: &Theme, av: Option<&ArchiveVol>, f: &mut Frame, left: Rect) {
    let diffs = av.and_then(|a| a.diffs.as_ref());
    let n = diffs.map_or(0, Vec::len);
    let sel = m.sel[View::Diffs.index()].min(n.saturating_sub(1));
    let focus_d = m.diffs_focus == DiffsFocus::Diffs;
    let (lo, hi) = match m.mark {
        Some(k) => (k.min(sel), k.max(sel)),
        None => (usize::MAX, 0),
    };
    let rows_h = left.height.saturating_sub(3) as usize;
    let plan = av.and_then(|a| a.retention.as_ref());
    let rows: Vec<Row> = diffs
        .map(|d| {
            d.iter()
                .enumerate()
                .skip(offset(sel, rows_h))
                .take(rows_h)
                .map(|(i, d)| {
                    let in_range = i >= lo && i <= hi;
                    let row = Row::new(vec![
                        Cell::from(if in_range { "▌" } else { " " }),
                        Cell::from(format!(
                            "{}-->{}",
                            snap_str(d.range.snap_b),
                            snap_str(d.range.snap_e)
                        )),
                        Cell::from(format!(
                            "{}{}",
                            if d.mergeable { 'M' } else { '-' },
                            if d.comp_diff { 'C' } else { '-' }
                        )),
                        Cell::from(retention_mark(plan, d).to_string()),
                        Cell::from(time_iso(d.timestamp_s)),
                        Cell::from(size(d.size as f64)),
                    ]);
                    if i == sel && focus_d {
                        row.style(t.selected())
                    } else if in_range {
                        row.style(t.marked())
                    } else {
                        row
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let title = match (diffs, m.mark) {
        (None, _) => " diffs (asking...) ".to_owned(),
        (Some(_), Some(_)) => format!(" diffs ({n}), range marked: enter to merge "),
        (Some(_), None) => format!(" diffs ({n}) "),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let block = if focus_d {
        block.border_style(t.key())
    } else {
        block
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Min(12),
            Constraint::Length(2),
            Constraint::Length(1),
            Constraint::Length(19),
            Constraint::Length(7),
        ],
    )
    .header(Row::new(vec!["", "RANGE", "MC", "R", "TIME (UTC)", "SIZE"]).style(t.header()))
    .column_spacing(1)
    .block(block);
    f.render_widget(table, left);
}

/// The archive's restorable snapshots, with the path of each one restored.
fn draw_restorable(m: &Model, t: &Theme, av: Option<&ArchiveVol>, f: &mut Frame, right: Rect) {
    let focus_d = m.diffs_focus == DiffsFocus::Diffs;
    let snaps = av.and_then(|a| a.restorable.as_ref());
    let n = snaps.map_or(0, Vec::len);
    let ssel = m.snap_sel.min(n.saturating_sub(1));
    let rows_h = right.height.saturating_sub(3) as usize;
    let restored = av.map(|a| a.restored.as_slice()).unwrap_or_default();
    let rows: Vec<Row> = snaps
        .map(|s| {
            s.iter()
                .enumerate()
                .skip(offset(ssel, rows_h))
                .take(rows_h)
                .map(|(i, s)| {
                    let path = s
                        .gid
                        .and_then(|g| restored.iter().find(|r| r.gid == g))
                        .map_or(String::new(), |r| r.path.clone());
                    let row = Row::new(vec![
                        Cell::from(s.gid.map_or("-".to_owned(), |g| g.to_string())),
                        Cell::from(time_iso(s.timestamp_s)),
                        Cell::from(if s.explicit { "yes" } else { "no" }),
                        Cell::from(path),
                    ]);
                    if i == ssel && !focus_d {
                        row.style(t.selected())
                    } else {
                        row
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let title = match snaps {
        None => " restorable (asking...) ".to_owned(),
        Some(_) => format!(" restorable ({n}) "),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let block = if focus_d {
        block
    } else {
        block.border_style(t.key())
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(19),
            Constraint::Length(3),
            Constraint::Min(8),
        ],
    )
    .header(Row::new(vec!["GID", "TIME (UTC)", "EXP", "RESTORED"]).style(t.header()))
    .column_spacing(1)
    .block(block);
    f.render_widget(table, right);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_retention_column_marks_applied_and_merged_diffs() {
        let r = RetentionReport {
            merges: vec![(4, 7)],
            apply_to: Some(2),
            ..RetentionReport::default()
        };
        let marks: String = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 7), (7, 8)]
            .iter()
            .map(|&(b, e)| retention_mark(Some(&r), &MetaDiffDto::clean(b, e)))
            .collect();
        assert_eq!(marks, "aa  mm ");
        assert_eq!(retention_mark(None, &MetaDiffDto::clean(0, 1)), ' ');
    }
}
