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
        } if roles.contains(role) && state != "Clear" => Some(f(node, vol)),
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
            } if state == "Clear" => Some(format!("init-archive {node} {vol}")),
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
            } if state == "Clear" => Some(format!("init-storage {node} {vol}")),
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
mod tests {
    use super::*;

    /// s0, p0, p1, a0 and a1; p0 sends vol to a0, a0 holds restorable snapshots 3 and 8.
    fn model() -> Model {
        let text = "name = \"t\"\n[certs]\nca = \"ca\"\ncert = \"c\"\nkey = \"k\"\n\
                    [[node]]\nname = \"s0\"\nrole = \"storage\"\naddr = \"1\"\narchive = \"a0\"\n\
                    [[node]]\nname = \"p0\"\nrole = \"proxy\"\naddr = \"2\"\n\
                    [[node]]\nname = \"p1\"\nrole = \"proxy\"\naddr = \"5\"\n\
                    [[node]]\nname = \"a0\"\nrole = \"archive\"\naddr = \"3\"\n\
                    [[node]]\nname = \"a1\"\nrole = \"archive\"\naddr = \"4\"\n";
        let c = crate::cluster::Cluster::parse(text, std::path::Path::new("/"), "t").unwrap();
        let mut m = Model::new(&c);
        let v = m.vol_mut("vol");
        v.queues.insert(
            ("p0".into(), "a0".into()),
            super::super::model::Queue::default(),
        );
        let snap = |gid| walb_wire::msg::SnapshotInfo {
            vol: "vol".into(),
            gid: Some(gid),
            timestamp_s: 0,
            lsid: None,
            explicit: true,
        };
        v.archives.entry("a0".into()).or_default().restorable = Some(vec![snap(3), snap(8)]);
        m
    }

    fn cell(node: &str, role: Role, state: &str) -> Target {
        Target::Cell {
            node: node.into(),
            role,
            vol: "vol".into(),
            state: state.into(),
            archive: (role == Role::Storage).then(|| "a0".into()),
        }
    }

    /// Every line a menu item can end in: as it is, with the prompt's example, or with
    /// each choice.
    fn completed(item: &MenuItem) -> Vec<String> {
        match &item.then {
            Then::Run => vec![item.line.clone()],
            Then::Prompt { .. } => {
                let a = ACTIONS.iter().find(|a| a.label == item.label).unwrap();
                let Param::Text { example, .. } = a.param else {
                    panic!("{}", item.label)
                };
                vec![fill(&item.line, example)]
            }
            Then::Choose { values, .. } => values.iter().map(|v| fill(&item.line, v)).collect(),
        }
    }

    #[test]
    fn every_action_is_an_exec_command_and_every_change_is_in_a_menu() {
        let m = model();
        let node = |n: &str, role| Target::Node {
            node: n.into(),
            role,
            archive: None,
        };
        let targets = [
            node("s0", Role::Storage),
            node("p0", Role::Proxy),
            node("a0", Role::Archive),
            cell("s0", Role::Storage, "Target"),
            cell("s0", Role::Storage, "Clear"),
            cell("p0", Role::Proxy, "Started"),
            cell("a0", Role::Archive, "Clear"),
            cell("a0", Role::Archive, "Archived"),
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
        let mut lines = Vec::new();
        for t in &targets {
            let items = items(t, &m);
            assert!(!items.is_empty(), "{t:?}");
            let mut keys = std::collections::HashSet::new();
            for item in &items {
                assert!(keys.insert(item.key), "key {} twice for {t:?}", item.key);
                for line in completed(item) {
                    crate::exec::parse_line(&line)
                        .unwrap_or_else(|e| panic!("{}: {line}: {e}", item.label));
                    lines.push(line);
                }
                used.insert(item.label.clone());
            }
        }
        for a in ACTIONS {
            assert!(used.contains(a.label), "{} never offered", a.label);
        }
        // Every exec command that changes the cluster is in some menu; what no menu
        // offers only reads (or is the palette's own help).
        let offered: std::collections::HashSet<&str> =
            lines.iter().filter_map(|l| l.split(' ').next()).collect();
        let queries = [
            ("help", "help"),
            ("state-all", "state-all vol"),
            ("wait-restorable", "wait-restorable a0 vol 8"),
            ("get", "get s0 vol"),
            ("peers", "peers a0 vol"),
            ("metrics", "metrics"),
            ("latest-clean", "latest-clean a0 vol"),
        ];
        for c in crate::exec::COMMANDS {
            assert!(
                offered.contains(c.name) || queries.iter().any(|q| q.0 == c.name),
                "{} is in no menu",
                c.name
            );
        }
        for (_, q) in queries {
            let cmd = crate::exec::parse_line(q).unwrap().unwrap();
            assert!(cmd.is_read_only(), "{q}");
        }
    }

    #[test]
    fn choices_come_from_the_model_and_an_empty_choice_is_not_offered() {
        let mut m = model();
        let a0 = cell("a0", Role::Archive, "Archived");
        let find =
            |m: &Model, t: &Target, key: char| items(t, m).into_iter().find(|i| i.key == key);
        let values = |i: Option<MenuItem>| match i.map(|i| i.then) {
            Some(Then::Choose { values, .. }) => values,
            other => panic!("{other:?}"),
        };
        assert_eq!(values(find(&m, &a0, 'P')), ["a1"]);
        assert_eq!(values(find(&m, &a0, 'b')), ["8", "3"]);
        let p0 = cell("p0", Role::Proxy, "Started");
        assert_eq!(values(find(&m, &p0, 'K')), ["a0"]);
        assert_eq!(values(find(&m, &p0, 'A')), ["a1"]);
        assert_eq!(values(find(&m, &p0, 'c')), ["p1"]);
        // With a0 the only archive there is nothing to replicate to.
        m.nodes.retain(|n| n.name != "a1");
        assert!(find(&m, &a0, 'P').is_none());
        assert!(find(&m, &p0, 'A').is_none());
        let menu = choices(&find(&m, &a0, 'b').unwrap()).unwrap();
        let lines: Vec<(char, &str)> = menu
            .items
            .iter()
            .map(|i| (i.key, i.line.as_str()))
            .collect();
        assert_eq!(lines, [('1', "bhash a0 vol 8"), ('2', "bhash a0 vol 3")]);
    }

    #[test]
    fn read_only_menus_keep_only_queries() {
        let mut m = model();
        m.set_read_only("--read-only");
        let ro: Vec<String> = items(&cell("s0", Role::Storage, "Target"), &m)
            .into_iter()
            .map(|i| i.line)
            .collect();
        assert_eq!(ro, ["status s0 vol"]);
        let ro: Vec<String> = items(&cell("a0", Role::Archive, "Archived"), &m)
            .into_iter()
            .map(|i| i.shown())
            .collect();
        assert_eq!(
            ro,
            [
                "status a0 vol",
                "restorable a0 vol",
                "is-synchronizing a0 vol",
                "bhash a0 vol GID"
            ]
        );
    }
}
