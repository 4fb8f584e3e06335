//! What can be done to the selection: one table of actions, each an `--exec` command line.
//!
//! Every action builds the words of an exec command, so an action and the same command
//! typed in the palette are the same thing: they go through [`crate::exec::parse_args`],
//! the read-only check and the confirmation of destructive commands
//! ([`super::loss::loss`]). Adding a command to the console's menus is one row of
//! [`ACTIONS`].
//!
//! An action whose command needs more than the target gives (a size, a destination
//! archive, a path) has a [`Param`]: the line is complete but for its last arguments,
//! which the operator types in a prompt ([`Param::Text`]) or picks from a list the model
//! gives ([`Param::Choice`], e.g. the other archives).

use walb_wire::msg::VolumeState;
use walb_wire::Role;

use super::model::{MenuItem, Model, Node, Then};

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
        /// Its state there (`None`: not known).
        state: Option<VolumeState>,
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
            } => format!("{vol} on {node} ({})", state.map_or("?", VolumeState::name)),
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
    /// The command line, if it applies to the target (without the words [`Param`] asks
    /// for).
    pub line: fn(&Target) -> Option<String>,
    /// What else the command needs.
    pub param: Param,
}

/// The last arguments of an action's command, when the target does not give them.
#[derive(Clone, Copy)]
pub enum Param {
    /// None: the line is the whole command.
    None,
    /// Typed in a prompt.
    Text {
        /// The arguments' names, as the menu shows them (`SIZE`).
        args: &'static str,
        /// What to type.
        hint: &'static str,
        /// A value that parses (it decides whether a read-only console offers it).
        example: &'static str,
    },
    /// Picked from a list; the action is offered only when the list is not empty.
    Choice {
        /// The argument's name, as the menu shows it (`DST`).
        args: &'static str,
        /// The values, from what the console knows.
        list: fn(&Target, &Model) -> Vec<String>,
    },
}

/// The line with the words the operator gave after it.
pub fn fill(line: &str, words: &str) -> String {
    format!("{line} {}", words.trim())
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionSpec")
            .field("label", &self.label)
            .finish()
    }
}

/// The line of an action on a volume that a node of `roles` holds (not Clear there: a
/// Clear volume only offers its status and init).
fn cell(t: &Target, roles: &[Role], f: impl Fn(&str, &str) -> String) -> Option<String> {
    match t {
        Target::Cell {
            node,
            role,
            vol,
            state,
            ..
        } if roles.contains(role) && !state.is_some_and(VolumeState::is_clear) => {
            Some(f(node, vol))
        }
        _ => None,
    }
}

const SPA: &[Role] = &[Role::Storage, Role::Proxy, Role::Archive];
const SA: &[Role] = &[Role::Storage, Role::Archive];
const PA: &[Role] = &[Role::Proxy, Role::Archive];

/// The archive and volume of an archive cell or of a snapshot.
fn archive_vol(t: &Target) -> Option<(&str, &str)> {
    match t {
        Target::Cell {
            node,
            role: Role::Archive,
            vol,
            ..
        } => Some((node, vol)),
        Target::Gid { archive, vol, .. } => Some((archive, vol)),
        _ => None,
    }
}

/// Choice: the archives of the cluster but the target's.
fn other_archives(t: &Target, m: &Model) -> Vec<String> {
    let Some((a, _)) = archive_vol(t) else {
        return Vec::new();
    };
    let mut all = m.names_of(Role::Archive);
    all.retain(|x| x != a);
    all
}

/// Choice: the archive's restorable snapshots of the volume, newest first (its latest
/// snapshot when the list is not loaded).
fn restorable_gids(t: &Target, m: &Model) -> Vec<String> {
    const MAX: usize = 32;
    let Some(av) = archive_vol(t).and_then(|(a, v)| m.vols.get(v)?.archives.get(a)) else {
        return Vec::new();
    };
    let gids: Vec<u64> = match &av.restorable {
        Some(r) => r.iter().rev().filter_map(|s| s.gid).take(MAX).collect(),
        None => av.latest.iter().map(|s| s.gid).collect(),
    };
    gids.iter().map(u64::to_string).collect()
}

/// Choice: the proxies other than a proxy cell's own.
fn other_proxies(t: &Target, m: &Model) -> Vec<String> {
    let Target::Cell {
        node,
        role: Role::Proxy,
        ..
    } = t
    else {
        return Vec::new();
    };
    let mut all = m.names_of(Role::Proxy);
    all.retain(|x| x != node);
    all
}

/// Choice: the archives a proxy cell sends the volume to (its archive-info list).
fn proxy_archives(t: &Target, m: &Model) -> Vec<String> {
    match t {
        Target::Cell {
            node,
            role: Role::Proxy,
            vol,
            ..
        } => m.vols.get(vol).map_or_else(Vec::new, |v| {
            v.queues
                .keys()
                .filter(|(p, _)| p == node)
                .map(|(_, a)| a.clone())
                .collect()
        }),
        _ => Vec::new(),
    }
}

/// Choice: the archives of the cluster a proxy cell does not send the volume to.
fn unlisted_archives(t: &Target, m: &Model) -> Vec<String> {
    let listed = proxy_archives(t, m);
    let mut all = m.names_of(Role::Archive);
    all.retain(|a| !listed.contains(a));
    all
}

/// Every action, in menu order.
pub static ACTIONS: &[ActionSpec] = &[
    // Nodes.
    ActionSpec {
        key: 's',
        label: "status",
        param: Param::None,
        line: |t| match t {
            Target::Node { node, .. } => Some(format!("status {node}")),
            Target::Cell { node, vol, .. } => Some(format!("status {node} {vol}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'k',
        label: "kick (retry transfers now)",
        param: Param::None,
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
        param: Param::None,
        line: |t| match t {
            Target::Node { node, .. } => Some(format!("shutdown {node}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'X',
        label: "shutdown force",
        param: Param::None,
        line: |t| match t {
            Target::Node { node, .. } => Some(format!("shutdown {node} force")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'w',
        label: "set-full-scan-bps",
        param: Param::Text {
            args: "BPS",
            hint: "bytes per second, k/m/g suffixes; 0 for no limit",
            example: "100m",
        },
        line: |t| match t {
            Target::Node {
                node,
                role: Role::Storage,
                ..
            } => Some(format!("set-full-scan-bps {node}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'I',
        label: "init a volume (init-storage)",
        param: Param::Text {
            args: "VOL WDEV",
            hint: "the new volume's name and its WalB device",
            example: "vol /dev/walb/vol",
        },
        line: |t| match t {
            Target::Node {
                node,
                role: Role::Storage,
                ..
            } => Some(format!("init-storage {node}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'I',
        label: "init a volume (init-archive)",
        param: Param::Text {
            args: "VOL",
            hint: "the new volume's name",
            example: "vol",
        },
        line: |t| match t {
            Target::Node {
                node,
                role: Role::Archive,
                ..
            } => Some(format!("init-archive {node}")),
            _ => None,
        },
    },
    // Volumes on nodes.
    ActionSpec {
        key: 'i',
        label: "init-archive",
        param: Param::None,
        line: |t| match t {
            Target::Cell {
                node,
                role: Role::Archive,
                vol,
                state,
                ..
            } if state.is_some_and(VolumeState::is_clear) => {
                Some(format!("init-archive {node} {vol}"))
            }
            _ => None,
        },
    },
    ActionSpec {
        key: 'I',
        label: "init-storage (then standby)",
        param: Param::Text {
            args: "WDEV",
            hint: "the volume's WalB device",
            example: "/dev/walb/vol",
        },
        line: |t| match t {
            Target::Cell {
                node,
                role: Role::Storage,
                vol,
                state,
                ..
            } if state.is_some_and(VolumeState::is_clear) => {
                Some(format!("init-storage {node} {vol}"))
            }
            _ => None,
        },
    },
    ActionSpec {
        key: 'f',
        label: "full-backup",
        param: Param::None,
        line: |t| cell(t, &[Role::Storage], |n, v| format!("full-backup {n} {v}")),
    },
    ActionSpec {
        key: 'h',
        label: "hash-backup",
        param: Param::None,
        line: |t| cell(t, &[Role::Storage], |n, v| format!("hash-backup {n} {v}")),
    },
    ActionSpec {
        key: 'n',
        label: "snapshot (wait until restorable)",
        param: Param::None,
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
        param: Param::None,
        line: |t| cell(t, SPA, |n, v| format!("start {n} {v}")),
    },
    ActionSpec {
        key: 'T',
        label: "stop",
        param: Param::None,
        line: |t| cell(t, SPA, |n, v| format!("stop {n} {v}")),
    },
    ActionSpec {
        key: 'E',
        label: "stop empty (deliver the queue first)",
        param: Param::None,
        line: |t| cell(t, &[Role::Proxy], |n, v| format!("stop {n} {v} empty")),
    },
    ActionSpec {
        key: 'F',
        label: "stop force",
        param: Param::None,
        line: |t| cell(t, SPA, |n, v| format!("stop {n} {v} force")),
    },
    ActionSpec {
        key: 'G',
        label: "go-standby",
        param: Param::None,
        line: |t| cell(t, &[Role::Storage], |n, v| format!("go-standby {n} {v}")),
    },
    ActionSpec {
        key: 'R',
        label: "reset",
        param: Param::None,
        line: |t| cell(t, SA, |n, v| format!("reset {n} {v}")),
    },
    ActionSpec {
        key: 'C',
        label: "clear",
        param: Param::None,
        line: |t| cell(t, SPA, |n, v| format!("clear {n} {v}")),
    },
    ActionSpec {
        key: 'l',
        label: "restorable",
        param: Param::None,
        line: |t| cell(t, &[Role::Archive], |n, v| format!("restorable {n} {v}")),
    },
    ActionSpec {
        key: 'z',
        label: "resize (grow)",
        param: Param::Text {
            args: "SIZE",
            hint: "the new size in bytes, k/m/g/t suffixes (volumes only grow; the archive first, then the storage; an archive takes --zero-clear)",
            example: "1g",
        },
        line: |t| cell(t, SA, |n, v| format!("resize {n} {v}")),
    },
    ActionSpec {
        key: 'Z',
        label: "resize everywhere (grow)",
        param: Param::Text {
            args: "SIZE",
            hint: "the new size in bytes, k/m/g/t suffixes: every archive's image grows, then every storage's device (grow each data device first)",
            example: "1g",
        },
        line: |t| cell(t, SA, |_, v| format!("resize {v}")),
    },
    ActionSpec {
        key: 'K',
        label: "kick towards one archive",
        param: Param::Choice {
            args: "ARCHIVE",
            list: proxy_archives,
        },
        line: |t| cell(t, &[Role::Proxy], |n, v| format!("kick {n} {v}")),
    },
    ActionSpec {
        key: 'A',
        label: "archive-info add (send to it too)",
        param: Param::Choice {
            args: "ARCHIVE",
            list: unlisted_archives,
        },
        line: |t| cell(t, &[Role::Proxy], |n, v| format!("archive-info {n} add {v}")),
    },
    ActionSpec {
        key: 'U',
        label: "archive-info update",
        param: Param::Text {
            args: "ARCHIVE [ADDR] [CODEC:LEVEL:NCPU] [DELAY]",
            hint: "the archive, then what changes: its address, compression, delay in seconds",
            example: "a0",
        },
        line: |t| cell(t, &[Role::Proxy], |n, v| format!("archive-info {n} update {v}")),
    },
    ActionSpec {
        key: 'O',
        label: "archive-info delete (drop its queue)",
        param: Param::Choice {
            args: "ARCHIVE",
            list: proxy_archives,
        },
        line: |t| cell(t, &[Role::Proxy], |n, v| format!("archive-info {n} delete {v}")),
    },
    ActionSpec {
        key: 'c',
        label: "copy-archive-info to",
        param: Param::Choice {
            args: "DST_PROXY",
            list: other_proxies,
        },
        line: |t| cell(t, &[Role::Proxy], |n, v| format!("copy-archive-info {n} {v}")),
    },
    ActionSpec {
        key: 'P',
        label: "replicate to",
        param: Param::Choice {
            args: "DST",
            list: other_archives,
        },
        line: |t| cell(t, &[Role::Archive], |n, v| format!("replicate {n} {v}")),
    },
    ActionSpec {
        key: 'Y',
        label: "replicate, then synchronize",
        param: Param::Choice {
            args: "DST",
            list: other_archives,
        },
        line: |t| cell(t, &[Role::Archive], |n, v| format!("replicate {n} {v} --sync")),
    },
    ActionSpec {
        key: 'W',
        label: "replicate, replacing its copy",
        param: Param::Choice {
            args: "DST",
            list: other_archives,
        },
        line: |t| cell(t, &[Role::Archive], |n, v| format!("replicate {n} {v} --resync")),
    },
    ActionSpec {
        key: 'y',
        label: "start-synchronizing",
        param: Param::None,
        line: |t| cell(t, &[Role::Archive], |n, v| format!("start-synchronizing {n} {v}")),
    },
    ActionSpec {
        key: 'u',
        label: "stop-synchronizing",
        param: Param::None,
        line: |t| cell(t, &[Role::Archive], |n, v| format!("stop-synchronizing {n} {v}")),
    },
    ActionSpec {
        key: 'g',
        label: "is-synchronizing",
        param: Param::None,
        line: |t| cell(t, &[Role::Archive], |n, v| format!("is-synchronizing {n} {v}")),
    },
    ActionSpec {
        key: 'b',
        label: "bhash of a snapshot",
        param: Param::Choice {
            args: "GID",
            list: restorable_gids,
        },
        line: |t| cell(t, &[Role::Archive], |n, v| format!("bhash {n} {v}")),
    },
    ActionSpec {
        key: 'c',
        label: "gc-diff",
        param: Param::None,
        line: |t| cell(t, &[Role::Archive], |n, v| format!("gc-diff {n} {v}")),
    },
    ActionSpec {
        key: 'B',
        label: "bind (who may send)",
        param: Param::Text {
            args: "storage|proxy|archive [ID...] [--add|--remove]",
            hint: "the role, then the peers of the volume it may hear from (--add, --remove change the list)",
            example: "storage s0 --add",
        },
        line: |t| cell(t, PA, |n, v| format!("bind {n} {v}")),
    },
    // Snapshots.
    ActionSpec {
        key: 'r',
        label: "restore",
        param: Param::None,
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
        param: Param::None,
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
        param: Param::None,
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
        param: Param::None,
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
        param: Param::None,
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
        param: Param::None,
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
    ActionSpec {
        key: 'b',
        label: "bhash",
        param: Param::None,
        line: |t| match t {
            Target::Gid {
                archive, vol, gid, ..
            } => Some(format!("bhash {archive} {vol} {gid}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'v',
        label: "virt-full-scan to a file or device",
        param: Param::Text {
            args: "OUT",
            hint: "where the image goes: a file (written whole or not at all) or a block device",
            example: "vol.img",
        },
        line: |t| match t {
            Target::Gid {
                archive, vol, gid, ..
            } => Some(format!("virt-full-scan {archive} {vol} {gid}")),
            _ => None,
        },
    },
    ActionSpec {
        key: 'P',
        label: "replicate up to this gid to",
        param: Param::Choice {
            args: "DST",
            list: other_archives,
        },
        line: |t| match t {
            Target::Gid {
                archive, vol, gid, ..
            } => Some(format!("replicate {archive} {vol} --gid {gid}")),
            _ => None,
        },
    },
    // Ranges of diffs.
    ActionSpec {
        key: 'm',
        label: "merge",
        param: Param::None,
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
        param: Param::None,
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

/// The menu items for `target`; commands that change the cluster are left out when the
/// console is read-only, and choices with nothing to choose from are left out.
pub fn items(target: &Target, m: &Model) -> Vec<MenuItem> {
    ACTIONS
        .iter()
        .filter_map(|a| {
            let line = (a.line)(target)?;
            let (then, sample) = match a.param {
                Param::None => (Then::Run, line.clone()),
                Param::Text {
                    args,
                    hint,
                    example,
                } => (
                    Then::Prompt {
                        args: args.to_owned(),
                        hint: hint.to_owned(),
                    },
                    fill(&line, example),
                ),
                Param::Choice { args, list } => {
                    let values = list(target, m);
                    let first = fill(&line, values.first()?);
                    (
                        Then::Choose {
                            args: args.to_owned(),
                            values,
                        },
                        first,
                    )
                }
            };
            let cmd = crate::exec::parse_line(&sample).ok().flatten()?;
            if m.read_only && !cmd.is_read_only() {
                return None;
            }
            Some(MenuItem {
                key: a.key,
                label: a.label.to_owned(),
                line,
                then,
            })
        })
        .collect()
}

/// The key of the `i`th value of a choice menu: 1-9, then letters (not j, k, q: they
/// move and close).
pub fn choice_key(i: usize) -> char {
    const KEYS: &[u8] = b"123456789abcdefghilmnoprstuvwxyz";
    KEYS.get(i).map_or(' ', |k| char::from(*k))
}

/// The menu that a [`Then::Choose`] item opens: its line completed with each value.
pub fn choices(item: &MenuItem) -> Option<super::model::Menu> {
    let Then::Choose { args, values } = &item.then else {
        return None;
    };
    Some(super::model::Menu {
        title: format!("{}: {args}", item.label),
        items: values
            .iter()
            .enumerate()
            .map(|(i, v)| MenuItem {
                key: choice_key(i),
                label: v.clone(),
                line: fill(&item.line, v),
                then: Then::Run,
            })
            .collect(),
        sel: 0,
    })
}

#[cfg(test)]
mod tests;
