//! The key bindings, as one table: what each key does in which view, and its help text.
//!
//! [`lookup`] turns a key of the normal mode into an [`Action`] for
//! [`crate::tui::update()`]; the help overlay (`?`) and the footer are generated from the
//! same [`BINDINGS`], so they never disagree with what the keys do. Bindings that change
//! the cluster are marked and hidden in read-only mode.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::model::View;

/// What a key asks for in the normal mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Switch to a view.
    View(View),
    /// The help overlay.
    Help,
    /// The command palette.
    Palette,
    /// Edit the filter of the view.
    Filter,
    /// Leave.
    Quit,
    /// Back out: clear the filter or the mark, leave the Diffs view.
    Back,
    /// Selection up.
    Up,
    /// Selection down.
    Down,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// First row.
    Top,
    /// Last row (Events: follow).
    Bottom,
    /// Volumes: the node column to the left.
    Left,
    /// Volumes: the node column to the right.
    Right,
    /// The actions for the selection.
    Actions,
    /// Volumes: open the Diffs view of the selected volume.
    Diffs,
    /// Diffs: switch between the diff list and the snapshots.
    Focus,
    /// Diffs: mark the start of a range of diffs.
    Mark,
    /// Diffs: the next archive of the volume.
    NextArchive,
    /// Diffs: the next volume.
    NextVol,
    /// Ask the daemons again (the selected node, or the Diffs view's archive).
    Refresh,
}

/// A key: a character, or a special key, optionally with control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character key.
    Char(char),
    /// Control + a character.
    Ctrl(char),
    /// A special key.
    Code(KeyCode),
}

impl Key {
    /// Whether `ev` is this key.
    pub fn matches(self, ev: &KeyEvent) -> bool {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            Key::Char(c) => !ctrl && ev.code == KeyCode::Char(c),
            Key::Ctrl(c) => ctrl && ev.code == KeyCode::Char(c),
            Key::Code(code) => ev.code == code,
        }
    }
}

/// Where a binding works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every view.
    Global,
    /// One view.
    In(View),
}

/// One binding.
#[derive(Debug)]
pub struct Binding {
    /// The keys.
    pub keys: &'static [Key],
    /// How the keys are written in help and footer.
    pub label: &'static str,
    /// What they do.
    pub action: Action,
    /// Where.
    pub scope: Scope,
    /// Help text.
    pub help: &'static str,
    /// Shown in the footer.
    pub footer: bool,
    /// Only offered when actions are allowed (not read-only).
    pub mutates: bool,
    /// Listed in the help (the second key of a pair is not).
    pub in_help: bool,
}

const fn b(
    keys: &'static [Key],
    label: &'static str,
    action: Action,
    scope: Scope,
    help: &'static str,
    footer: bool,
) -> Binding {
    Binding {
        keys,
        label,
        action,
        scope,
        help,
        footer,
        mutates: false,
        in_help: true,
    }
}

/// A binding the help does not list (it is described with its pair).
const fn h(keys: &'static [Key], action: Action, scope: Scope) -> Binding {
    Binding {
        keys,
        label: "",
        action,
        scope,
        help: "",
        footer: false,
        mutates: false,
        in_help: false,
    }
}

use Action as A;
use Key::{Char as C, Code, Ctrl};
use Scope::{Global as G, In};

/// Every binding of the normal mode. View-specific bindings come first so they win.
pub static BINDINGS: &[Binding] = &[
    b(
        &[Code(KeyCode::Enter)],
        "enter",
        A::Actions,
        In(View::Cluster),
        "actions for the node (status, kick, init a volume, shutdown)",
        true,
    ),
    b(
        &[Code(KeyCode::Left), C('h')],
        "←→",
        A::Left,
        In(View::Volumes),
        "move the cursor between nodes (scrolls the node columns)",
        true,
    ),
    h(&[Code(KeyCode::Right), C('l')], A::Right, In(View::Volumes)),
    b(
        &[Code(KeyCode::Enter)],
        "enter",
        A::Actions,
        In(View::Volumes),
        "actions for the volume on the node under the cursor",
        true,
    ),
    b(
        &[C('d')],
        "d",
        A::Diffs,
        In(View::Volumes),
        "diffs and snapshots of the volume",
        true,
    ),
    b(
        &[Code(KeyCode::Tab)],
        "tab",
        A::Focus,
        In(View::Diffs),
        "switch between diffs and snapshots",
        true,
    ),
    b(
        &[C(' ')],
        "space",
        A::Mark,
        In(View::Diffs),
        "mark the start of a range of diffs (then enter: merge)",
        true,
    ),
    b(
        &[Code(KeyCode::Enter)],
        "enter",
        A::Actions,
        In(View::Diffs),
        "actions: merge a range; restore, apply, bhash, replicate, virt-full-scan a gid",
        true,
    ),
    b(
        &[C('a')],
        "a",
        A::NextArchive,
        In(View::Diffs),
        "next archive of the volume",
        true,
    ),
    b(
        &[C('v')],
        "v",
        A::NextVol,
        In(View::Diffs),
        "next volume",
        false,
    ),
    b(
        &[C('f')],
        "f",
        A::Bottom,
        In(View::Events),
        "follow new events",
        true,
    ),
    b(
        &[C('1')],
        "1-5",
        A::View(View::Cluster),
        G,
        "views: Cluster, Volumes, Diffs, Tasks, Events",
        true,
    ),
    h(&[C('2')], A::View(View::Volumes), G),
    h(&[C('3')], A::View(View::Diffs), G),
    h(&[C('4')], A::View(View::Tasks), G),
    h(&[C('5')], A::View(View::Events), G),
    b(
        &[Code(KeyCode::Up), C('k')],
        "↑↓/jk",
        A::Up,
        G,
        "move the selection",
        false,
    ),
    h(&[Code(KeyCode::Down), C('j')], A::Down, G),
    b(
        &[Code(KeyCode::PageUp), Ctrl('b')],
        "pgup/pgdn",
        A::PageUp,
        G,
        "a page up or down",
        false,
    ),
    h(&[Code(KeyCode::PageDown), Ctrl('f')], A::PageDown, G),
    b(
        &[Code(KeyCode::Home), C('g')],
        "g/G",
        A::Top,
        G,
        "first or last row",
        false,
    ),
    h(&[Code(KeyCode::End), C('G')], A::Bottom, G),
    b(
        &[C('/')],
        "/",
        A::Filter,
        G,
        "filter the view (!word inverts)",
        true,
    ),
    b(
        &[C(':')],
        ":",
        A::Palette,
        G,
        "command palette: any --exec command, tab completes",
        true,
    ),
    b(
        &[C('r')],
        "r",
        A::Refresh,
        G,
        "ask the daemons again (selected node, or all)",
        false,
    ),
    b(&[C('?')], "?", A::Help, G, "this help", true),
    b(
        &[Code(KeyCode::Esc)],
        "esc",
        A::Back,
        G,
        "back out (filter, mark, overlay, view)",
        false,
    ),
    b(&[C('q'), Ctrl('c')], "q", A::Quit, G, "quit", true),
];

/// The action of key `ev` in `view`, if any.
pub fn lookup(view: View, ev: &KeyEvent) -> Option<Action> {
    BINDINGS
        .iter()
        .filter(|b| b.scope == Scope::Global || b.scope == Scope::In(view))
        .find(|b| b.keys.iter().any(|k| k.matches(ev)))
        .map(|b| b.action)
}

/// The bindings shown for `view`: its own first, then the global ones.
pub fn bindings_for(view: View, read_only: bool) -> impl Iterator<Item = &'static Binding> {
    let own = BINDINGS.iter().filter(move |b| b.scope == Scope::In(view));
    let global = BINDINGS.iter().filter(|b| b.scope == Scope::Global);
    own.chain(global)
        .filter(move |b| b.in_help && !(read_only && b.mutates))
}

/// The hints for `view`: `key label` pairs, the view's own first.
pub fn footer(view: View, read_only: bool) -> Vec<(&'static str, &'static str)> {
    bindings_for(view, read_only)
        .filter(|b| b.footer)
        .map(|b| (b.label, short(b)))
        .collect()
}

/// The hints of `view`'s own keys (the header shows them).
pub fn view_hints(view: View, read_only: bool) -> Vec<(&'static str, &'static str)> {
    bindings_for(view, read_only)
        .filter(|b| b.footer && b.scope == Scope::In(view))
        .map(|b| (b.label, short(b)))
        .collect()
}

/// The hints of the keys that work everywhere except the view keys (the footer shows
/// them after the views).
pub fn global_hints() -> Vec<(&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| b.footer && b.scope == Scope::Global && !matches!(b.action, A::View(_)))
        .map(|b| (b.label, short(b)))
        .collect()
}

fn short(b: &Binding) -> &'static str {
    match b.action {
        A::View(_) => "views",
        A::Help => "help",
        A::Palette => "cmd",
        A::Filter => "filter",
        A::Quit => "quit",
        A::Actions => "actions",
        A::Left => "nodes",
        A::Diffs => "diffs",
        A::Focus => "focus",
        A::Mark => "mark",
        A::NextArchive => "archive",
        A::Bottom => "follow",
        _ => b.help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn view_bindings_win_over_global_ones() {
        assert_eq!(
            lookup(View::Volumes, &key(KeyCode::Char('d'))),
            Some(Action::Diffs)
        );
        assert_eq!(lookup(View::Cluster, &key(KeyCode::Char('d'))), None);
        assert_eq!(
            lookup(View::Events, &key(KeyCode::Char('f'))),
            Some(Action::Bottom)
        );
        assert_eq!(
            lookup(View::Tasks, &key(KeyCode::Char('3'))),
            Some(Action::View(View::Diffs))
        );
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(View::Tasks, &ctrl_c), Some(Action::Quit));
        assert_eq!(lookup(View::Tasks, &key(KeyCode::Char('c'))), None);
    }

    #[test]
    fn every_view_footer_names_help_command_filter_and_quit() {
        for v in View::ALL {
            let f: Vec<&str> = footer(v, false).iter().map(|(_, l)| *l).collect();
            for want in ["help", "cmd", "filter", "quit", "views"] {
                assert!(f.contains(&want), "{v:?}: {f:?}");
            }
        }
    }
}
