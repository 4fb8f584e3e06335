//! What can be done to the selection: one table of actions, each an `--exec` command line.
//!
//! Every action builds the words of an exec command, so an action and the same command
//! typed in the palette are the same thing: they go through [`crate::exec::parse_args`],
//! the read-only check and the confirmation of destructive commands ([`loss`]). Adding a
//! command to the console's menus is one row of [`ACTIONS`].

use walb_wire::Role;

use super::model::{Model, Node};
use crate::exec::output::snap_str;
use crate::exec::ExecCmd;

/// What the actions apply to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A node (Cluster view).
    Node {
        /// Its name.
        node: String,
        /// Its role.
        role: Role,
        /// Its primary archive (storage).
        archive: Option<String>,
    },
    /// A volume on a node (Volumes view).
    Cell {
        /// The node.
        node: String,
        /// Its role.
        role: Role,
        /// The volume.
        vol: String,
        /// Its state there.
        state: String,
        /// The storage's primary archive.
        archive: Option<String>,
    },
    /// A snapshot of an archive (Diffs view).
    Gid {
        /// The archive.
        archive: String,
        /// The volume.
        vol: String,
        /// The gid.
        gid: u64,
        /// Whether it is restored.
        restored: bool,
        /// Whether it is explicit.
        explicit: bool,
    },
    /// A range of diffs (Diffs view).
    Range {
        /// The archive.
        archive: String,
        /// The volume.
        vol: String,
        /// First gid.
        gid_b: u64,
        /// Last gid.
        gid_e: u64,
    },
}

impl Target {
    /// A title for the menu.
    pub fn title(&self) -> String {
        match self {
            Target::Node { node, role, .. } => format!("{node} ({role})"),
            Target::Cell {
                node, vol, state, ..
            } => format!("{vol} on {node} ({state})"),
            Target::Gid {
                archive, vol, gid, ..
            } => format!("{vol} gid {gid} on {archive}"),
            Target::Range {
                archive,
                vol,
                gid_b,
                gid_e,
            } => format!("{vol} diffs {gid_b}..{gid_e} on {archive}"),
        }
    }

    /// A node target.
    pub fn of_node(n: &Node) -> Target {
        Target::Node {
            node: n.name.clone(),
            role: n.role,
            archive: n.archive.clone(),
        }
    }
}

/// One action.
pub struct ActionSpec {
    /// Its key in the menu.
    pub key: char,
    /// What it is called.
    pub label: &'static str,
    /// The command line, if it applies to the target.
    pub line: fn(&Target) -> Option<String>,
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionSpec")
            .field("label", &self.label)
            .finish()
    }
}

fn cell(t: &Target, roles: &[Role], f: impl Fn(&str, &str) -> String) -> Option<String> {
    match t {
        Target::Cell {
            node, role, vol, ..
        } if roles.contains(role) => Some(f(node, vol)),
        _ => None,
    }
}

const SPA: &[Role] = &[Role::Storage, Role::Proxy, Role::Archive];
const SA: &[Role] = &[Role::Storage, Role::Archive];

/// Every action, in menu order.
pub static ACTIONS: &[ActionSpec] = &[
    // Nodes.
    ActionSpec {
        key: 's',
        label: "status",
        line: |t| match t {
            Target::Node { node, .. } => Some(format!("status {node}")),
            Target::Cell { node, vol, .. } => Some(format!("status {node} {vol}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'k',
        label: "kick (retry transfers now)",
        line: |t| match t {
            Target::Node { node, role, .. } if *role != Role::Archive => {
                Some(format!("kick {node}"))
            }
            Target::Cell {
                node, role, vol, ..
            } if *role != Role::Archive => Some(format!("kick {node} {vol}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'x',
        label: "shutdown",
        line: |t| match t {
            Target::Node { node, .. } => Some(format!("shutdown {node}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'X',
        label: "shutdown force",
        line: |t| match t {
            Target::Node { node, .. } => Some(format!("shutdown {node} force")),
            _ => None,
        },
    },
    // Volumes on nodes.
    ActionSpec {
        key: 'i',
        label: "init-archive",
        line: |t| match t {
            Target::Cell {
                node,
                role: Role::Archive,
                vol,
                state,
                ..
            } if state == "Clear" => Some(format!("init-archive {node} {vol}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'f',
        label: "full-backup",
        line: |t| cell(t, &[Role::Storage], |n, v| format!("full-backup {n} {v}")),
    },
    ActionSpec {
        key: 'h',
        label: "hash-backup",
        line: |t| cell(t, &[Role::Storage], |n, v| format!("hash-backup {n} {v}")),
    },
    ActionSpec {
        key: 'n',
        label: "snapshot (wait until restorable)",
        line: |t| match t {
            Target::Cell {
                node,
                role: Role::Storage,
                vol,
                archive,
                ..
            } => Some(match archive {
                Some(a) => format!("snapshot {node} {vol} {a}"),
                None => format!("snapshot {node} {vol}"),
            }),
            _ => None,
        },
    },
    ActionSpec {
        key: 'S',
        label: "start",
        line: |t| cell(t, SPA, |n, v| format!("start {n} {v}")),
    },
    ActionSpec {
        key: 'T',
        label: "stop",
        line: |t| cell(t, SPA, |n, v| format!("stop {n} {v}")),
    },
    ActionSpec {
        key: 'E',
        label: "stop empty (deliver the queue first)",
        line: |t| cell(t, &[Role::Proxy], |n, v| format!("stop {n} {v} empty")),
    },
    ActionSpec {
        key: 'F',
        label: "stop force",
        line: |t| cell(t, SPA, |n, v| format!("stop {n} {v} force")),
    },
    ActionSpec {
        key: 'R',
        label: "reset",
        line: |t| cell(t, SA, |n, v| format!("reset {n} {v}")),
    },
    ActionSpec {
        key: 'C',
        label: "clear",
        line: |t| cell(t, SPA, |n, v| format!("clear {n} {v}")),
    },
    ActionSpec {
        key: 'l',
        label: "restorable",
        line: |t| cell(t, &[Role::Archive], |n, v| format!("restorable {n} {v}")),
    },
    // Snapshots.
    ActionSpec {
        key: 'r',
        label: "restore",
        line: |t| match t {
            Target::Gid {
                archive, vol, gid, ..
            } => Some(format!("restore {archive} {vol} {gid}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'p',
        label: "restored-path",
        line: |t| match t {
            Target::Gid {
                archive,
                vol,
                gid,
                restored: true,
                ..
            } => Some(format!("restored-path {archive} {vol} {gid}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'D',
        label: "del-restored",
        line: |t| match t {
            Target::Gid {
                archive,
                vol,
                gid,
                restored: true,
                ..
            } => Some(format!("del-restored {archive} {vol} {gid}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'a',
        label: "apply (fold older diffs into the base)",
        line: |t| match t {
            Target::Gid {
                archive, vol, gid, ..
            } => Some(format!("apply {archive} {vol} {gid}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'd',
        label: "disable-snapshot",
        line: |t| match t {
            Target::Gid {
                archive,
                vol,
                gid,
                explicit: true,
                ..
            } => Some(format!("disable-snapshot {archive} {vol} {gid}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'e',
        label: "enable-snapshot",
        line: |t| match t {
            Target::Gid {
                archive,
                vol,
                gid,
                explicit: false,
                ..
            } => Some(format!("enable-snapshot {archive} {vol} {gid}")),
            _ => None,
        },
    },
    // Ranges of diffs.
    ActionSpec {
        key: 'm',
        label: "merge",
        line: |t| match t {
            Target::Range {
                archive,
                vol,
                gid_b,
                gid_e,
            } => Some(format!("merge {archive} {vol} {gid_b} {gid_e}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'L',
        label: "diff-list of the range",
        line: |t| match t {
            Target::Range {
                archive,
                vol,
                gid_b,
                gid_e,
            } => Some(format!("diff-list {archive} {vol} {gid_b} {gid_e}")),
            _ => None,
        },
    },
];

/// The menu items for `target`: (key, label, command line); commands that change the
/// cluster are left out when `read_only`.
pub fn items(target: &Target, read_only: bool) -> Vec<(char, String, String)> {
    ACTIONS
        .iter()
        .filter_map(|a| {
            let line = (a.line)(target)?;
            let cmd = crate::exec::parse_line(&line).ok().flatten()?;
            if read_only && !cmd.is_read_only() {
                return None;
            }
            Some((a.key, a.label.to_owned(), line))
        })
        .collect()
}

fn mib(bytes: u64) -> String {
    super::view::size(bytes as f64)
}

fn gids(list: &[u64]) -> String {
    const MAX: usize = 8;
    let mut s: Vec<String> = list.iter().take(MAX).map(|g| g.to_string()).collect();
    if list.len() > MAX {
        s.push(format!("... ({} in all)", list.len()));
    }
    s.join(" ")
}

/// What a destructive command loses, from what the console knows, or `None` for a
/// command that destroys nothing. The confirmation shows these lines.
pub fn loss(cmd: &ExecCmd, m: &Model) -> Option<Vec<String>> {
    use walb_wire::msg::StopMode;
    let vol_of = |v: &str| m.vols.get(v);
    let archive_data = |a: &str, v: &str| -> Vec<String> {
        let mut out = Vec::new();
        let Some(av) = vol_of(v).and_then(|x| x.archives.get(a)) else {
            out.push(format!("whatever {a} holds of {v} (not loaded)"));
            return out;
        };
        if let Some(b) = av.base {
            out.push(format!(
                "the base image of {v} on {a} ({})",
                crate::exec::output::meta_state_str(&b)
            ));
        } else {
            out.push(format!("the base image of {v} on {a}"));
        }
        if let Some(d) = &av.diffs {
            let bytes: u64 = d.iter().map(|d| d.size).sum();
            out.push(format!("{} diffs ({})", d.len(), mib(bytes)));
        }
        if let Some(r) = &av.restorable {
            let g: Vec<u64> = r.iter().filter_map(|s| s.gid).collect();
            if !g.is_empty() {
                out.push(format!("restorable snapshots: {}", gids(&g)));
            }
        } else if let Some(l) = av.latest {
            out.push(format!("every snapshot up to the latest, gid {}", l.gid));
        }
        if !av.restored.is_empty() {
            let g: Vec<u64> = av.restored.iter().map(|(g, _)| *g).collect();
            out.push(format!("restored images: {}", gids(&g)));
        }
        out
    };
    let running = |node: &str, vol: &str| -> Vec<String> {
        m.tasks
            .iter()
            .filter(|t| t.running() && t.node == node && t.vol.as_deref() == Some(vol))
            .map(|t| {
                let pct = t
                    .ratio()
                    .map_or(String::new(), |r| format!(" at {:.0}%", r * 100.0));
                format!("the running {}{pct}", t.label())
            })
            .collect()
    };
    match cmd {
        ExecCmd::Clear { node, vol, .. } => {
            let mut out = vec![format!("{node} forgets volume {vol}")];
            match m.role(node) {
                Some(Role::Archive) => out.extend(archive_data(node, vol)),
                Some(Role::Storage) => {
                    if let Some(l) = vol_of(vol).and_then(|v| v.log.get(node.as_str())) {
                        out.push(format!(
                            "its log ({} of {} physical blocks not yet shipped)",
                            l.usage_pb, l.capacity_pb
                        ));
                    }
                    out.push(
                        "its link to the archive: backing up again needs a full backup".into(),
                    );
                }
                _ => {
                    let queued: u64 = vol_of(vol)
                        .map(|v| {
                            v.queues
                                .iter()
                                .filter(|((p, _), _)| p == node)
                                .map(|(_, q)| q.diffs)
                                .sum()
                        })
                        .unwrap_or(0);
                    out.push(format!("{queued} queued diffs not yet delivered"));
                }
            }
            out.extend(running(node, vol));
            Some(out)
        }
        ExecCmd::Reset { node, vol, gid, .. } => {
            let mut out = Vec::new();
            if m.role(node) == Some(Role::Archive) {
                out.extend(archive_data(node, vol));
            } else {
                if let Some(l) = vol_of(vol).and_then(|v| v.log.get(node.as_str())) {
                    out.push(format!(
                        "the log of {vol} on {node} ({} physical blocks not yet shipped)",
                        l.usage_pb
                    ));
                }
                out.push(format!(
                    "the gid epoch (a new one starts at {}); archives need a new full or hash backup",
                    gid.unwrap_or(0)
                ));
            }
            out.extend(running(node, vol));
            Some(out)
        }
        ExecCmd::Apply {
            archive, vol, gid, ..
        } => {
            let av = vol_of(vol).and_then(|v| v.archives.get(archive));
            let mut out = Vec::new();
            if let Some(d) = av.and_then(|a| a.diffs.as_ref()) {
                let folded: Vec<String> = d
                    .iter()
                    .filter(|d| d.range.snap_e.gid_e <= *gid)
                    .map(|d| {
                        format!(
                            "{}-->{}",
                            snap_str(d.range.snap_b),
                            snap_str(d.range.snap_e)
                        )
                    })
                    .collect();
                out.push(format!(
                    "{} diffs up to gid {gid} are folded into the base image",
                    folded.len()
                ));
            }
            let older: Vec<u64> = av
                .and_then(|a| a.restorable.as_ref())
                .map(|r| r.iter().filter_map(|s| s.gid).filter(|g| g < gid).collect())
                .unwrap_or_default();
            if older.is_empty() {
                out.push(format!(
                    "snapshots older than gid {gid} stop being restorable"
                ));
            } else {
                out.push(format!(
                    "these snapshots stop being restorable: {}",
                    gids(&older)
                ));
            }
            Some(out)
        }
        ExecCmd::Replicate {
            src,
            vol,
            dst,
            opts: crate::ops::ReplicateOpts {
                do_resync: true, ..
            },
            ..
        } => {
            let mut out = vec![format!(
                "if {dst} holds {vol} from elsewhere (another archive uuid), {src}'s copy replaces:"
            )];
            out.extend(archive_data(dst, vol));
            Some(out)
        }
        ExecCmd::DelRestored {
            archive, vol, gid, ..
        } => {
            let path = vol_of(vol)
                .and_then(|v| v.archives.get(archive))
                .and_then(|a| a.restored.iter().find(|(g, _)| g == gid))
                .map(|(_, p)| p.clone());
            Some(vec![format!(
                "the restored image of {vol} gid {gid}{} and anything written to it",
                path.map_or(String::new(), |p| format!(" ({p})"))
            )])
        }
        ExecCmd::SetExplicit {
            archive,
            vol,
            gids: g,
            explicit: false,
        } => Some(vec![format!(
            "snapshots {} of {vol} on {archive} stop being restorable, and a merge may remove them",
            gids(g)
        )]),
        ExecCmd::Stop {
            node,
            vol,
            mode: StopMode::Force,
            ..
        } => {
            let mut out = vec![format!(
                "transfers of {vol} running on {node} are aborted and must start over"
            )];
            out.extend(running(node, vol));
            Some(out)
        }
        ExecCmd::Shutdown { node, force } => {
            let mut out = vec![format!(
                "{node} stops{}; it answers nothing until started again",
                if *force { " at once" } else { "" }
            )];
            if *force {
                let r: Vec<String> = m
                    .tasks
                    .iter()
                    .filter(|t| t.running() && &t.node == node)
                    .map(|t| {
                        format!(
                            "the running {} of {}",
                            t.label(),
                            t.vol.as_deref().unwrap_or("-")
                        )
                    })
                    .collect();
                out.extend(r);
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_line_is_an_exec_command() {
        let targets = [
            Target::Node {
                node: "s0".into(),
                role: Role::Storage,
                archive: Some("a0".into()),
            },
            Target::Cell {
                node: "s0".into(),
                role: Role::Storage,
                vol: "vol".into(),
                state: "Target".into(),
                archive: Some("a0".into()),
            },
            Target::Cell {
                node: "p0".into(),
                role: Role::Proxy,
                vol: "vol".into(),
                state: "Started".into(),
                archive: None,
            },
            Target::Cell {
                node: "a0".into(),
                role: Role::Archive,
                vol: "vol".into(),
                state: "Clear".into(),
                archive: None,
            },
            Target::Gid {
                archive: "a0".into(),
                vol: "vol".into(),
                gid: 8,
                restored: true,
                explicit: true,
            },
            Target::Gid {
                archive: "a0".into(),
                vol: "vol".into(),
                gid: 9,
                restored: false,
                explicit: false,
            },
            Target::Range {
                archive: "a0".into(),
                vol: "vol".into(),
                gid_b: 2,
                gid_e: 7,
            },
        ];
        let mut used = std::collections::HashSet::new();
        for t in &targets {
            let items = items(t, false);
            assert!(!items.is_empty(), "{t:?}");
            let mut keys = std::collections::HashSet::new();
            for (k, label, line) in &items {
                assert!(keys.insert(*k), "key {k} twice for {t:?}");
                crate::exec::parse_line(line).unwrap_or_else(|e| panic!("{label}: {line}: {e}"));
                used.insert(label.clone());
            }
        }
        for a in ACTIONS {
            assert!(used.contains(a.label), "{} never offered", a.label);
        }
    }

    #[test]
    fn a_resync_asks_for_confirmation_naming_the_destination() {
        let text = "name = \"t\"\n[certs]\nca = \"ca\"\ncert = \"c\"\nkey = \"k\"\n\
                    [[node]]\nname = \"a0\"\nrole = \"archive\"\naddr = \"1\"\n\
                    [[node]]\nname = \"a1\"\nrole = \"archive\"\naddr = \"2\"\n";
        let c = crate::cluster::Cluster::parse(text, std::path::Path::new("/"), "t").unwrap();
        let m = Model::new(&c);
        let cmd = |l: &str| crate::exec::parse_line(l).unwrap().unwrap();
        assert_eq!(loss(&cmd("replicate a0 vol a1"), &m), None);
        let lines = loss(&cmd("replicate a0 vol a1 --resync"), &m).unwrap();
        assert!(lines[0].contains("a0's copy replaces"), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("a1")), "{lines:?}");
    }

    #[test]
    fn read_only_menus_keep_only_queries() {
        let t = Target::Cell {
            node: "s0".into(),
            role: Role::Storage,
            vol: "vol".into(),
            state: "Target".into(),
            archive: Some("a0".into()),
        };
        let ro: Vec<String> = items(&t, true).into_iter().map(|i| i.2).collect();
        assert_eq!(ro, ["status s0 vol"]);
    }
}
