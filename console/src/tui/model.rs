//! The TUI's model: the live model of the cluster ([`crate::model::Live`]) and the state
//! of the screen (view, selections, filters, overlays).
//!
//! The part about the screen is plain data that [`crate::tui::update()`] changes on keys
//! and [`crate::tui::view`] reads; [`Model`] dereferences to the live model, so views read
//! `m.nodes` and `m.vols` directly.

use std::ops::{Deref, DerefMut};

pub use super::mode::{Confirm, Menu, MenuItem, Mode, Output, Palette, Prompt, Then};
use crate::cluster::Cluster;
pub use crate::model::{
    task_label, ArchiveVol, CellState, Lag, Level, Live, LogLine, LogUsage, Ms, Node, Queue,
    QueuePos, Reach, Snap, Task, TaskEnd, TaskKind, TsDelta, Vol, ENDED_TASKS_MAX, EVENT_LOG_MAX,
    STALLED_MS, TASK_KINDS,
};

/// The views, in key order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// Every node.
    Cluster,
    /// Volumes × nodes.
    Volumes,
    /// One archive's diffs and snapshots of one volume.
    Diffs,
    /// Long operations.
    Tasks,
    /// The log.
    Events,
}

impl View {
    /// Every view, in key order (`1`..`5`).
    pub const ALL: [View; 5] = [
        View::Cluster,
        View::Volumes,
        View::Diffs,
        View::Tasks,
        View::Events,
    ];

    /// The view's title.
    pub fn title(self) -> &'static str {
        match self {
            View::Cluster => "Cluster",
            View::Volumes => "Volumes",
            View::Diffs => "Diffs",
            View::Tasks => "Tasks",
            View::Events => "Events",
        }
    }

    /// Its index in [`View::ALL`].
    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// Which list of the Diffs view has the focus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiffsFocus {
    /// The diff list.
    #[default]
    Diffs,
    /// The restorable snapshots.
    Snapshots,
}

/// The whole model: the live one and the screen.
#[derive(Clone, Debug)]
pub struct Model {
    /// What the console knows about the cluster.
    pub live: Live,
    /// Draw without colour.
    pub plain: bool,
    /// The current view.
    pub view: View,
    /// What has the keyboard.
    pub mode: Mode,
    /// Selected row per view.
    pub sel: [usize; 5],
    /// Filter per view.
    pub filter: [String; 5],
    /// Volumes view: the node column of the cursor.
    pub col: usize,
    /// Diffs view: focus.
    pub diffs_focus: DiffsFocus,
    /// Diffs view: selected snapshot.
    pub snap_sel: usize,
    /// Diffs view: start of a marked range of diffs.
    pub mark: Option<usize>,
    /// Events view: lines scrolled back from the end (0 = follow).
    pub events_back: usize,
    /// The last message for the status line.
    pub status: Option<(Level, String)>,
    /// Palette history, oldest first.
    pub history: Vec<String>,
    /// Set by `q`.
    pub quit: bool,
}

impl Deref for Model {
    type Target = Live;

    fn deref(&self) -> &Live {
        &self.live
    }
}

impl DerefMut for Model {
    fn deref_mut(&mut self) -> &mut Live {
        &mut self.live
    }
}

impl Model {
    /// A model of `cluster`'s nodes, nothing known yet.
    pub fn new(cluster: &Cluster) -> Model {
        Model::of(Live::new(cluster))
    }

    /// The screen over a live model.
    pub fn of(live: Live) -> Model {
        Model {
            live,
            plain: false,
            view: View::Cluster,
            mode: Mode::Normal,
            sel: [0; 5],
            filter: Default::default(),
            col: 0,
            diffs_focus: DiffsFocus::Diffs,
            snap_sel: 0,
            mark: None,
            events_back: 0,
            status: None,
            history: Vec::new(),
            quit: false,
        }
    }

    /// Keeps the lines the operator scrolled to in place after `new` lines were appended
    /// to the log.
    pub fn follow_log(&mut self, new: u64) {
        if self.events_back > 0 && new > 0 {
            let new = usize::try_from(new).unwrap_or(usize::MAX);
            self.events_back = self.events_back.saturating_add(new).min(self.log.len());
        }
    }

    /// The current view's filter.
    pub fn current_filter(&self) -> &str {
        &self.filter[self.view.index()]
    }

    /// Node indexes shown by the Cluster view (filtered).
    pub fn visible_nodes(&self) -> Vec<usize> {
        let f = &self.filter[View::Cluster.index()];
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches(f, &format!("{} {} {}", n.name, n.role.as_str(), n.addr)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Volume names shown by the Volumes view (filtered).
    pub fn visible_vols(&self) -> Vec<&str> {
        let f = &self.filter[View::Volumes.index()];
        self.vols
            .values()
            .filter(|v| {
                let states: Vec<&str> = v.cells.values().map(|c| c.state.name()).collect();
                matches(f, &format!("{} {}", v.name, states.join(" ")))
            })
            .map(|v| v.name.as_str())
            .collect()
    }

    /// Tasks shown by the Tasks view: running first (newest first), then ended.
    pub fn visible_tasks(&self) -> Vec<&Task> {
        let f = &self.filter[View::Tasks.index()];
        let mut v: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| {
                matches(
                    f,
                    &format!(
                        "{} {} {} {}",
                        t.label(),
                        t.node,
                        t.vol.as_deref().unwrap_or(""),
                        t.command.as_deref().unwrap_or("")
                    ),
                )
            })
            .collect();
        v.sort_by_key(|t| (!t.running(), std::cmp::Reverse(t.started), t.id));
        v
    }

    /// Log lines shown by the Events view (filtered), oldest first.
    pub fn visible_log(&self) -> Vec<&LogLine> {
        let f = &self.filter[View::Events.index()];
        self.log
            .iter()
            .filter(|l| matches(f, &l.haystack()))
            .collect()
    }

    /// The volume selected in the Volumes view.
    pub fn selected_vol(&self) -> Option<&str> {
        let vols = self.visible_vols();
        vols.get(self.sel[View::Volumes.index()].min(vols.len().saturating_sub(1)))
            .copied()
    }

    /// The node selected in the Cluster view.
    pub fn selected_node(&self) -> Option<&Node> {
        let nodes = self.visible_nodes();
        nodes
            .get(self.sel[View::Cluster.index()].min(nodes.len().saturating_sub(1)))
            .and_then(|i| self.nodes.get(*i))
    }

    /// The archive and volume of the Diffs view, and what the archive holds.
    pub fn diffs_view(&self) -> Option<(&str, &str, Option<&ArchiveVol>)> {
        let (a, v) = self.diffs_target.as_ref()?;
        let av = self.vols.get(v).and_then(|vol| vol.archives.get(a));
        Some((a.as_str(), v.as_str(), av))
    }
}

/// The filter language: words separated by spaces must all occur (case-insensitive); a
/// filter starting with `!` inverts.
pub fn matches(filter: &str, haystack: &str) -> bool {
    let f = filter.trim();
    if f.is_empty() {
        return true;
    }
    let (invert, f) = match f.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, f),
    };
    let hay = haystack.to_lowercase();
    let all = f
        .split_whitespace()
        .all(|w| hay.contains(&w.to_lowercase()));
    all != invert
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_words_case_insensitive_and_invertible() {
        assert!(matches("", "anything"));
        assert!(matches("VOL a0", "a0 archive vol1"));
        assert!(!matches("vol a9", "a0 archive vol1"));
        assert!(matches("!error", "info s0 vol started"));
        assert!(!matches("!error", "error s0 vol refused"));
    }
}
