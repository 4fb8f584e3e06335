//! What keys do: the normal mode's bindings (through [`super::keys`]), the palette, the
//! filter, action menus, prompts for an action's parameter, confirmations and output.
//! Called by [`super::update::update`] for [`super::update::Msg::Key`].

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use walb_wire::msg::VolumeState;
use walb_wire::Role;

use super::actions::{self, Target};
use super::keys::{self, Action};
use super::model::{
    Confirm, DiffsFocus, Level, Menu, MenuItem, Mode, Model, Output, Palette, Prompt, Reach, Task,
    Then, View,
};
use super::msg::{ask, snapshot_node, Effect, LiveEffect};
use super::palette;
use crate::exec::commands::{help_lines, split_words, OverviewCmd};
use crate::exec::{parse_args, ExecCmd};
use crate::model::Ask;
fn is_ctrl(k: &KeyEvent, c: char) -> bool {
    k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char(c)
}

/// Handles a key in whatever mode has the keyboard.
pub fn on_key(m: &mut Model, k: KeyEvent, out: &mut Vec<Effect>) {
    if is_ctrl(&k, 'c') {
        m.quit = true;
        out.push(Effect::Quit);
        return;
    }
    match std::mem::take(&mut m.mode) {
        Mode::Normal => normal_key(m, k, out),
        Mode::Help => {
            if !matches!(
                k.code,
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
            ) {
                m.mode = Mode::Help;
            }
        }
        Mode::Filter => filter_key(m, k),
        Mode::Palette(p) => palette_key(m, p, k, out),
        Mode::Confirm(c) => match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                run_command(m, c.line, c.cmd, out);
            }
            KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Char('q') => {
                m.status = Some((Level::Info, format!("cancelled: {}", c.line)));
            }
            _ => m.mode = Mode::Confirm(c),
        },
        Mode::Menu(mut menu) => match k.code {
            // An item's key wins over j/k (kick is `k`).
            KeyCode::Char(c) if menu.items.iter().any(|i| i.key == c) => {
                if let Some(item) = menu.items.iter().find(|i| i.key == c).cloned() {
                    choose(m, item, out);
                }
            }
            KeyCode::Esc | KeyCode::Char('q') => {}
            KeyCode::Up | KeyCode::Char('k') if menu.sel > 0 => {
                menu.sel -= 1;
                m.mode = Mode::Menu(menu);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                menu.sel = (menu.sel + 1).min(menu.items.len().saturating_sub(1));
                m.mode = Mode::Menu(menu);
            }
            KeyCode::Enter => {
                if let Some(item) = menu.items.get(menu.sel).cloned() {
                    choose(m, item, out);
                }
            }
            _ => m.mode = Mode::Menu(menu),
        },
        Mode::Prompt(p) => prompt_key(m, p, k, out),
        Mode::Output(mut o) => match k.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {}
            KeyCode::Up | KeyCode::Char('k') => {
                o.scroll = o.scroll.saturating_sub(1);
                m.mode = Mode::Output(o);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                o.scroll = (o.scroll + 1).min(o.lines.len().saturating_sub(1));
                m.mode = Mode::Output(o);
            }
            KeyCode::PageUp => {
                o.scroll = o.scroll.saturating_sub(10);
                m.mode = Mode::Output(o);
            }
            KeyCode::PageDown | KeyCode::Char(' ') => {
                o.scroll = (o.scroll + 10).min(o.lines.len().saturating_sub(1));
                m.mode = Mode::Output(o);
            }
            _ => m.mode = Mode::Output(o),
        },
    }
}

/// A menu item chosen: run its line, or ask for what it still needs.
fn choose(m: &mut Model, item: MenuItem, out: &mut Vec<Effect>) {
    match &item.then {
        Then::Run => {
            m.mark = None;
            submit(m, item.line, out);
        }
        Then::Prompt { args, hint } => {
            m.mode = Mode::Prompt(Prompt {
                line: item.line.clone(),
                args: args.clone(),
                hint: hint.clone(),
                ..Prompt::default()
            });
        }
        Then::Choose { .. } => {
            if let Some(menu) = actions::choices(&item) {
                m.mode = Mode::Menu(menu);
            }
        }
    }
}

/// Typing an action's last arguments: enter runs the completed line (a mistake keeps
/// the prompt open with the parser's message), esc cancels.
fn prompt_key(m: &mut Model, mut p: Prompt, k: KeyEvent, out: &mut Vec<Effect>) {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    match k.code {
        KeyCode::Esc => {
            m.status = Some((Level::Info, format!("cancelled: {}", p.line)));
            return;
        }
        KeyCode::Enter => {
            if p.input.trim().is_empty() {
                p.error = Some(format!("{} is needed", p.args));
                m.mode = Mode::Prompt(p);
                return;
            }
            let line = actions::fill(&p.line, &p.input);
            match split_words(&line).and_then(|w| parse_args(&w)) {
                Ok(cmd) => {
                    m.mark = None;
                    submit_parsed(m, line, cmd, out);
                }
                Err(e) => {
                    p.error = Some(e.to_string());
                    m.mode = Mode::Prompt(p);
                }
            }
            return;
        }
        KeyCode::Backspace => {
            p.input.pop();
        }
        KeyCode::Char('u') if ctrl => p.input.clear(),
        KeyCode::Char(c) if !ctrl => p.input.push(c),
        _ => {}
    }
    p.error = None;
    m.mode = Mode::Prompt(p);
}

fn filter_key(m: &mut Model, k: KeyEvent) {
    let i = m.view.index();
    match k.code {
        KeyCode::Esc => {
            m.filter[i].clear();
            m.sel[i] = 0;
        }
        KeyCode::Enter => {}
        KeyCode::Backspace => {
            m.filter[i].pop();
            m.sel[i] = 0;
            m.mode = Mode::Filter;
        }
        KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
            m.filter[i].clear();
            m.mode = Mode::Filter;
        }
        KeyCode::Char(c) => {
            m.filter[i].push(c);
            m.sel[i] = 0;
            m.mode = Mode::Filter;
        }
        _ => m.mode = Mode::Filter,
    }
}

fn palette_key(m: &mut Model, mut p: Palette, k: KeyEvent, out: &mut Vec<Effect>) {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    if k.code != KeyCode::Tab {
        p.cycle = None;
        p.candidates.clear();
    }
    match k.code {
        KeyCode::Esc => return,
        KeyCode::Enter => {
            let line = p.input.trim().to_owned();
            if line.is_empty() {
                return;
            }
            match split_words(&line).and_then(|w| parse_args(&w)) {
                Err(e) => {
                    p.error = Some(e.to_string());
                    m.mode = Mode::Palette(p);
                }
                Ok(cmd) => {
                    if m.history.last() != Some(&line) {
                        m.history.push(line.clone());
                    }
                    submit_parsed(m, line, cmd, out);
                    if let Mode::Palette(ref mut q) = m.mode {
                        // Refused (read-only): keep what was typed.
                        q.input = p.input;
                    }
                }
            }
            return;
        }
        KeyCode::Tab => palette::complete(&mut p, m),
        KeyCode::Backspace => {
            p.input.pop();
        }
        KeyCode::Char('u') if ctrl => p.input.clear(),
        KeyCode::Char('w') if ctrl => {
            let t = p.input.trim_end().len();
            p.input.truncate(t);
            let cut = p.input.rfind(' ').map_or(0, |i| i + 1);
            p.input.truncate(cut);
        }
        KeyCode::Up if !m.history.is_empty() => {
            let pos = match p.history_pos {
                None => m.history.len() - 1,
                Some(i) => i.saturating_sub(1),
            };
            p.history_pos = Some(pos);
            p.input = m.history[pos].clone();
        }
        KeyCode::Down => {
            if let Some(i) = p.history_pos {
                if i + 1 < m.history.len() {
                    p.history_pos = Some(i + 1);
                    p.input = m.history[i + 1].clone();
                } else {
                    p.history_pos = None;
                    p.input.clear();
                }
            }
        }
        KeyCode::Char(c) if !ctrl => p.input.push(c),
        _ => {}
    }
    p.error = None;
    m.mode = Mode::Palette(p);
}

/// Parses `line` as an exec command and goes on as [`submit_parsed`]; a line that does
/// not parse opens the palette with it and the error.
pub fn submit(m: &mut Model, line: String, out: &mut Vec<Effect>) {
    match split_words(&line).and_then(|w| parse_args(&w)) {
        Ok(cmd) => submit_parsed(m, line, cmd, out),
        Err(e) => {
            m.mode = Mode::Palette(Palette {
                input: line,
                error: Some(e.to_string()),
                ..Palette::default()
            });
        }
    }
}

/// Runs a parsed command: help is shown at once, a command that changes the cluster is
/// refused in read-only mode, a destructive one asks first.
pub fn submit_parsed(m: &mut Model, line: String, cmd: ExecCmd, out: &mut Vec<Effect>) {
    if let ExecCmd::Overview(OverviewCmd::Help { command }) = &cmd {
        let lines = help_lines(command.as_deref()).unwrap_or_else(|e| vec![e.to_string()]);
        m.mode = Mode::Output(Output {
            title: line,
            lines,
            scroll: 0,
        });
        return;
    }
    if m.read_only && !cmd.is_read_only() {
        m.mode = Mode::Palette(Palette {
            input: line,
            error: Some(format!(
                "{} changes the cluster; the console is read-only ({})",
                cmd.name(),
                m.read_only_why.as_deref().unwrap_or("--read-only")
            )),
            ..Palette::default()
        });
        return;
    }
    if let Some(loss) = super::loss::loss(&cmd, m) {
        m.mode = Mode::Confirm(Confirm { line, cmd, loss });
        return;
    }
    run_command(m, line, cmd, out);
}

fn run_command(m: &mut Model, line: String, cmd: ExecCmd, out: &mut Vec<Effect>) {
    let id = m.next_id;
    m.next_id += 1;
    let (node, vol) = cmd.target();
    let node = node.unwrap_or("-").to_owned();
    m.live.tasks.push(Task::new(
        id,
        node.clone(),
        vol.map(str::to_owned),
        cmd.name().to_owned(),
        Some(line.clone()),
        m.live.now,
    ));
    let vol = vol.map(str::to_owned);
    m.push_log(
        Level::Info,
        (node != "-").then_some(node.as_str()),
        vol.as_deref(),
        format!("run: {line}"),
    );
    m.status = Some((Level::Info, format!("running: {line}")));
    m.mode = Mode::Normal;
    out.push(Effect::Run { id, line, cmd });
}

fn list_len(m: &Model, view: View) -> usize {
    match view {
        View::Cluster => m.visible_nodes().len(),
        View::Volumes => m.visible_vols().len(),
        View::Diffs => match m.diffs_view() {
            Some((_, _, Some(av))) => match m.diffs_focus {
                DiffsFocus::Diffs => av.diffs.as_ref().map_or(0, Vec::len),
                DiffsFocus::Snapshots => av.restorable.as_ref().map_or(0, Vec::len),
            },
            _ => 0,
        },
        View::Tasks => m.visible_tasks().len(),
        View::Events => m.visible_log().len(),
    }
}

/// Page size used by page up/down (the views are at least this tall at 80×24).
const PAGE: usize = 10;

fn move_sel(m: &mut Model, delta: isize) {
    let len = list_len(m, m.view);
    if m.view == View::Events {
        // Scrolling back from the end; 0 follows.
        let back = m.events_back as isize - delta;
        m.events_back = back.clamp(0, len.saturating_sub(1) as isize) as usize;
        return;
    }
    let cur = if m.view == View::Diffs && m.diffs_focus == DiffsFocus::Snapshots {
        m.snap_sel
    } else {
        m.sel[m.view.index()]
    };
    let next = (cur as isize + delta).clamp(0, len.saturating_sub(1) as isize) as usize;
    if m.view == View::Diffs && m.diffs_focus == DiffsFocus::Snapshots {
        m.snap_sel = next;
    } else {
        m.sel[m.view.index()] = next;
    }
}

/// The archives that hold (or should hold) `vol`: those of the cluster with data of it,
/// else every archive.
fn archives_of(m: &Model, vol: &str) -> Vec<String> {
    let all = m.names_of(Role::Archive);
    let with: Vec<String> = all
        .iter()
        .filter(|a| {
            m.vols.get(vol).is_some_and(|v| {
                v.archives.contains_key(a.as_str())
                    || v.cells.get(a.as_str()).is_some_and(|c| !c.state.is_clear())
            })
        })
        .cloned()
        .collect();
    if with.is_empty() {
        all
    } else {
        with
    }
}

/// Shows the Diffs view of `archive`'s `vol`, asking for what it needs.
pub fn open_diffs(m: &mut Model, archive: String, vol: String, out: &mut Vec<Effect>) {
    m.diffs_target = Some((archive.clone(), vol.clone()));
    m.view = View::Diffs;
    m.sel[View::Diffs.index()] = 0;
    m.snap_sel = 0;
    m.mark = None;
    if matches!(m.node(&archive).map(|n| &n.reach), Some(Reach::Up)) {
        ask(m, out, &archive, Ask::Diffs { vol: vol.clone() });
        ask(m, out, &archive, Ask::Restorable { vol: vol.clone() });
        ask(m, out, &archive, Ask::Base { vol: vol.clone() });
        ask(m, out, &archive, Ask::Retention { vol: vol.clone() });
        ask(m, out, &archive, Ask::Restored { vol });
    }
}

/// The node columns of the Volumes view, in cluster-file order.
pub fn node_columns(m: &Model) -> Vec<&str> {
    m.nodes.iter().map(|n| n.name.as_str()).collect()
}

fn selection_target(m: &Model) -> Option<Target> {
    match m.view {
        View::Cluster => m.selected_node().map(Target::of_node),
        View::Volumes => {
            let vol = m.selected_vol()?;
            let node = m.nodes.get(m.col.min(m.nodes.len().saturating_sub(1)))?;
            let archive = node.archive.clone();
            Some(Target::Cell {
                node: node.name.clone(),
                role: node.role,
                vol: vol.to_owned(),
                // A node that is up and does not list the volume does not hold it.
                state: m
                    .vols
                    .get(vol)
                    .and_then(|v| v.state(&node.name))
                    .or_else(|| VolumeState::clear(node.role).filter(|_| node.reach == Reach::Up)),
                archive,
            })
        }
        View::Diffs => {
            let (a, v, av) = m.diffs_view()?;
            let av = av?;
            match m.diffs_focus {
                DiffsFocus::Diffs => {
                    let d = av.diffs.as_ref()?;
                    let cur = m.sel[View::Diffs.index()].min(d.len().checked_sub(1)?);
                    let start = m.mark.unwrap_or(cur).min(d.len() - 1);
                    let (lo, hi) = (start.min(cur), start.max(cur));
                    Some(Target::Range {
                        archive: a.to_owned(),
                        vol: v.to_owned(),
                        gid_b: d[lo].range.snap_b.gid_b,
                        gid_e: d[hi].range.snap_e.gid_e,
                    })
                }
                DiffsFocus::Snapshots => {
                    let r = av.restorable.as_ref()?;
                    let s = r.get(m.snap_sel.min(r.len().checked_sub(1)?))?;
                    let gid = s.gid?;
                    Some(Target::Gid {
                        archive: a.to_owned(),
                        vol: v.to_owned(),
                        gid,
                        restored: av.restored.iter().any(|r| r.gid == gid),
                        explicit: s.explicit,
                    })
                }
            }
        }
        View::Tasks | View::Events => None,
    }
}

fn normal_key(m: &mut Model, k: KeyEvent, out: &mut Vec<Effect>) {
    let Some(action) = keys::lookup(m.view, &k) else {
        return;
    };
    match action {
        Action::View(v) => {
            if v == View::Diffs && m.diffs_target.is_none() {
                if let Some(vol) = m.selected_vol().map(str::to_owned) {
                    if let Some(a) = archives_of(m, &vol).into_iter().next() {
                        open_diffs(m, a, vol, out);
                        return;
                    }
                }
            }
            m.view = v;
        }
        Action::Help => m.mode = Mode::Help,
        Action::Palette => m.mode = Mode::Palette(Palette::default()),
        Action::Filter => m.mode = Mode::Filter,
        Action::Quit => {
            m.quit = true;
            out.push(Effect::Quit);
        }
        Action::Actions => {
            if let Some(t) = selection_target(m) {
                let items = actions::items(&t, m);
                if items.is_empty() {
                    m.status = Some((Level::Info, format!("no actions for {}", t.title())));
                } else {
                    m.mode = Mode::Menu(Menu {
                        title: t.title(),
                        items,
                        sel: 0,
                    });
                }
            }
        }
        a @ (Action::Back
        | Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Top
        | Action::Bottom
        | Action::Left
        | Action::Right) => navigate(m, a),
        a @ (Action::Diffs
        | Action::Focus
        | Action::Mark
        | Action::NextArchive
        | Action::NextVol) => diffs_key(m, a, out),
        Action::Refresh => match m.view {
            View::Diffs => {
                if let Some((a, v)) = m.diffs_target.clone() {
                    open_diffs(m, a, v, out);
                }
            }
            View::Cluster => {
                if let Some(n) = m.selected_node().map(|n| n.name.clone()) {
                    resubscribe_or_snapshot(m, &n, out);
                }
            }
            _ => {
                let names: Vec<String> = m.nodes.iter().map(|n| n.name.clone()).collect();
                for n in names {
                    resubscribe_or_snapshot(m, &n, out);
                }
            }
        },
    }
}

/// Moves the selection, the column or back out of a filter, mark or view.
fn navigate(m: &mut Model, action: Action) {
    match action {
        Action::Back => {
            let i = m.view.index();
            if !m.filter[i].is_empty() {
                m.filter[i].clear();
            } else if m.mark.is_some() && m.view == View::Diffs {
                m.mark = None;
            } else if m.view == View::Diffs {
                m.view = View::Volumes;
            } else if m.status.is_some() {
                m.status = None;
            }
        }
        Action::Up => move_sel(m, -1),
        Action::Down => move_sel(m, 1),
        Action::PageUp => move_sel(m, -(PAGE as isize)),
        Action::PageDown => move_sel(m, PAGE as isize),
        Action::Top => move_sel(m, -(isize::MAX / 2)),
        Action::Bottom => {
            if m.view == View::Events {
                m.events_back = 0;
            } else {
                move_sel(m, isize::MAX / 2);
            }
        }
        Action::Left => m.col = m.col.saturating_sub(1),
        Action::Right => m.col = (m.col + 1).min(m.nodes.len().saturating_sub(1)),
        _ => {}
    }
}

/// The Diffs view's keys: open it, switch focus, mark a range, the next archive or volume.
fn diffs_key(m: &mut Model, action: Action, out: &mut Vec<Effect>) {
    match action {
        Action::Diffs => {
            if let Some(vol) = m.selected_vol().map(str::to_owned) {
                let cursor = m.nodes.get(m.col).filter(|n| n.role == Role::Archive);
                let archive = match cursor {
                    Some(n) => Some(n.name.clone()),
                    None => archives_of(m, &vol).into_iter().next(),
                };
                match archive {
                    Some(a) => open_diffs(m, a, vol, out),
                    None => {
                        m.status = Some((Level::Warn, "the cluster file has no archive".into()))
                    }
                }
            }
        }
        Action::Focus => {
            m.diffs_focus = match m.diffs_focus {
                DiffsFocus::Diffs => DiffsFocus::Snapshots,
                DiffsFocus::Snapshots => DiffsFocus::Diffs,
            };
        }
        Action::Mark if m.diffs_focus == DiffsFocus::Diffs => {
            let cur = m.sel[View::Diffs.index()];
            m.mark = if m.mark == Some(cur) { None } else { Some(cur) };
        }
        Action::NextArchive => {
            if let Some((a, v)) = m.diffs_target.clone() {
                let list = archives_of(m, &v);
                let i = list.iter().position(|x| *x == a).map_or(0, |i| i + 1);
                if let Some(next) = list.get(i % list.len().max(1)).cloned() {
                    open_diffs(m, next, v, out);
                }
            }
        }
        Action::NextVol => {
            if let Some((a, v)) = m.diffs_target.clone() {
                let vols: Vec<String> = m.vols.keys().cloned().collect();
                let i = vols.iter().position(|x| *x == v).map_or(0, |i| i + 1);
                if let Some(next) = vols.get(i % vols.len().max(1)).cloned() {
                    open_diffs(m, a, next, out);
                }
            }
        }
        _ => {}
    }
}

fn resubscribe_or_snapshot(m: &mut Model, node: &str, out: &mut Vec<Effect>) {
    match m.node(node).map(|n| n.reach.clone()) {
        Some(Reach::Up) => snapshot_node(m, node, out),
        Some(Reach::Down { .. }) => out.push(Effect::Live(LiveEffect::Subscribe {
            node: node.to_owned(),
            delay_ms: 0,
        })),
        _ => {}
    }
}
