//! The command palette (`:`): exactly the `--exec` commands, parsed by the exec parser,
//! with completion of command names, node names (by the role the argument wants),
//! volumes, gids and keywords.
//!
//! Completion reads the argument placeholders of the exec command table
//! ([`crate::exec::COMMANDS`]): `ARCHIVE` completes archive names, `VOL` volume names,
//! `GID`s the restorable snapshots and diff boundaries of the archive and volume typed
//! before, `a|b|c` the keywords. A new command in the table completes without any change
//! here.

use walb_wire::Role;

use super::model::{Model, Palette};
use crate::exec::commands::{spec, split_words, GET_TARGETS};
use crate::exec::COMMANDS;

/// The argument placeholders of an `args` usage string, in order: `[GIDB [GIDE]]` gives
/// `GIDB`, `GIDE`; a trailing `...` repeats.
pub fn slots(args: &str) -> Vec<String> {
    args.split_whitespace()
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

fn slot_at(slots: &[String], i: usize) -> Option<String> {
    match slots.get(i) {
        Some(s) => Some(s.trim_end_matches("...").to_owned()),
        None => slots
            .last()
            .filter(|s| s.ends_with("..."))
            .map(|s| s.trim_end_matches("...").to_owned()),
    }
}

/// The placeholder of argument `i` (0 = the first after the command name) of the command
/// in `words`.
fn placeholder(words: &[String], i: usize) -> Option<String> {
    let name = words.first()?;
    let spec = spec(name)?;
    if spec.name == "get" && i >= 2 {
        let target = words.get(2)?;
        let (_, args, _) = GET_TARGETS.iter().find(|t| t.0 == target)?;
        // Only the form before a `|` alternative of whole forms (diff has two).
        let args = args.split(" | ").next().unwrap_or("");
        return slot_at(&slots(args), i - 2);
    }
    slot_at(&slots(spec.args), i)
}

fn gids(words: &[String], m: &Model) -> Vec<String> {
    let archive = words
        .iter()
        .skip(1)
        .find(|w| m.role(w) == Some(Role::Archive));
    let vol = words
        .iter()
        .skip(1)
        .find(|w| m.vols.contains_key(w.as_str()));
    let (Some(a), Some(v)) = (archive, vol) else {
        return Vec::new();
    };
    let Some(av) = m
        .vols
        .get(v.as_str())
        .and_then(|x| x.archives.get(a.as_str()))
    else {
        return Vec::new();
    };
    let mut g: Vec<u64> = Vec::new();
    if let Some(r) = &av.restorable {
        g.extend(r.iter().filter_map(|s| s.gid));
    }
    if let Some(d) = &av.diffs {
        for d in d {
            g.push(d.range.snap_b.gid_b);
            g.push(d.range.snap_e.gid_e);
        }
    }
    g.extend(av.restored.iter().map(|r| r.gid));
    if let Some(l) = av.latest {
        g.push(l.gid);
    }
    g.sort_unstable();
    g.dedup();
    g.into_iter().map(|g| g.to_string()).collect()
}

/// Commands whose `NODE` must be of certain roles (the exec table checks roles when a
/// command runs; completion offers only the nodes that can answer).
const NODE_ROLES: &[(&str, &[Role])] = &[
    ("init-storage", &[Role::Storage]),
    ("full-backup", &[Role::Storage]),
    ("hash-backup", &[Role::Storage]),
    ("snapshot", &[Role::Storage]),
    ("init-archive", &[Role::Archive]),
    ("reset", &[Role::Storage, Role::Archive]),
    ("kick", &[Role::Storage, Role::Proxy]),
];

fn values_for(slot: &str, words: &[String], m: &Model) -> Vec<String> {
    if slot == "NODE" {
        if let Some((_, roles)) = NODE_ROLES
            .iter()
            .find(|(c, _)| Some(*c) == words.first().map(String::as_str))
        {
            return m
                .nodes
                .iter()
                .filter(|n| roles.contains(&n.role))
                .map(|n| n.name.clone())
                .collect();
        }
    }
    let nodes = |role: Option<Role>| -> Vec<String> {
        m.nodes
            .iter()
            .filter(|n| role.is_none_or(|r| n.role == r))
            .map(|n| n.name.clone())
            .collect()
    };
    match slot {
        "NODE" => nodes(None),
        "ARCHIVE" | "SRC" | "DST" => nodes(Some(Role::Archive)),
        "PROXY" | "SRC_PROXY" | "DST_PROXY" => nodes(Some(Role::Proxy)),
        "STORAGE" => nodes(Some(Role::Storage)),
        "VOL" => m.vols.keys().cloned().collect(),
        "GID" | "GIDB" | "GIDE" | "MAXGID" => gids(words, m),
        "COMMAND" => COMMANDS.iter().map(|c| c.name.to_owned()).collect(),
        "TARGET" => GET_TARGETS.iter().map(|t| t.0.to_owned()).collect(),
        s if s.contains('|') => s.split('|').map(str::to_owned).collect(),
        s if s.chars().all(|c| c.is_ascii_lowercase() || c == '-') => vec![s.to_owned()],
        _ => Vec::new(),
    }
}

/// The completion candidates of the last word of `input` (an empty word after a
/// space): the start of that word in `input`, and the candidates.
pub fn candidates(input: &str, m: &Model) -> (usize, Vec<String>) {
    let Ok(mut words) = split_words(input) else {
        return (input.len(), Vec::new());
    };
    let at_new_word = input.is_empty() || input.ends_with(char::is_whitespace);
    let current = if at_new_word {
        String::new()
    } else {
        words.pop().unwrap_or_default()
    };
    let start = input.len() - current.len();
    let all: Vec<String> = if words.is_empty() {
        COMMANDS.iter().map(|c| c.name.to_owned()).collect()
    } else if current.starts_with("--") {
        spec(&words[0])
            .map(|s| s.options.iter().map(|o| o.name.to_owned()).collect())
            .unwrap_or_default()
    } else {
        let positional: Vec<String> = words
            .iter()
            .filter(|w| !w.starts_with("--"))
            .cloned()
            .collect();
        match placeholder(&positional, positional.len() - 1) {
            Some(slot) => values_for(&slot, &positional, m),
            None => Vec::new(),
        }
    };
    let c: Vec<String> = all
        .into_iter()
        .filter(|c| c.starts_with(&current))
        .collect();
    (start, c)
}

fn common_prefix(c: &[String]) -> String {
    let Some(first) = c.first() else {
        return String::new();
    };
    let mut n = first.len();
    for s in &c[1..] {
        n = n.min(
            first
                .char_indices()
                .zip(s.chars())
                .take_while(|((_, a), b)| a == b)
                .count(),
        );
    }
    first.chars().take(n).collect()
}

/// Tab: completes the word being typed. One candidate is taken with a space after it;
/// several extend the word to their common prefix, and further Tabs cycle through them.
pub fn complete(p: &mut Palette, m: &Model) {
    if let Some(i) = p.cycle {
        // Cycling: replace the candidate put in last by the next.
        if !p.candidates.is_empty() {
            let prev = &p.candidates[i % p.candidates.len()];
            let base = p.input.len().saturating_sub(prev.len());
            let next = (i + 1) % p.candidates.len();
            p.input.truncate(base);
            p.input.push_str(&p.candidates[next]);
            p.cycle = Some(next);
            return;
        }
    }
    let (start, c) = candidates(&p.input, m);
    let current = p.input[start..].to_owned();
    p.candidates = c.clone();
    match c.len() {
        0 => {}
        1 => {
            p.input.truncate(start);
            p.input.push_str(&c[0]);
            p.input.push(' ');
            p.candidates.clear();
        }
        _ => {
            let prefix = common_prefix(&c);
            if prefix.len() > current.len() {
                p.input.truncate(start);
                p.input.push_str(&prefix);
            } else {
                p.input.truncate(start);
                p.input.push_str(&c[0]);
                p.cycle = Some(0);
            }
        }
    }
}

/// A line under the input: the usage and summary of the command being typed.
pub fn hint(input: &str) -> Option<String> {
    let words = split_words(input).ok()?;
    let s = spec(words.first()?)?;
    Some(format!("{} — {}", s.usage(), s.about))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::model::ArchiveVol;
    use walb_wire::msg::SnapshotInfo;

    fn model() -> Model {
        let c = crate::cluster::test_cluster();
        let mut m = Model::new(&c);
        m.vol_mut("vol");
        m.vol_mut("data").archives.insert(
            "a0".into(),
            ArchiveVol {
                restorable: Some(
                    [8, 12]
                        .iter()
                        .map(|g| SnapshotInfo {
                            vol: "data".into(),
                            gid: Some(*g),
                            timestamp_s: 0,
                            lsid: None,
                            explicit: true,
                        })
                        .collect(),
                ),
                ..ArchiveVol::default()
            },
        );
        m
    }

    fn cands(input: &str) -> Vec<String> {
        candidates(input, &model()).1
    }

    #[test]
    fn completes_commands_nodes_by_role_volumes_gids_and_keywords() {
        assert_eq!(
            cands("res"),
            ["reset", "restore", "restored-path", "resize", "restorable"]
        );
        assert_eq!(cands("restore "), ["a0", "a1"]);
        assert_eq!(cands("restore a0 "), ["data", "vol"]);
        assert_eq!(cands("restore a0 data "), ["8", "12"]);
        assert_eq!(cands("restore a0 data 1"), ["12"]);
        assert_eq!(cands("stop s0 vol "), ["graceful", "force", "empty"]);
        assert_eq!(cands("archive-info "), ["p0"]);
        assert_eq!(cands("get a0 rest"), ["restorable", "restored"]);
        assert_eq!(cands("get a0 restorable "), ["data", "vol"]);
        assert_eq!(cands("snapshot s0 vol a0 "), ["a0", "a1"]);
        assert_eq!(cands("replicate "), ["a0", "a1"]);
        assert_eq!(cands("replicate a0 vol "), ["a0", "a1"]);
        assert_eq!(
            cands("replicate a0 vol a1 --"),
            [
                "--gid",
                "--resync",
                "--dont-merge",
                "--sync",
                "--bulk",
                "--compress",
                "--max-merge-mb",
                "--timeout"
            ]
        );
        assert_eq!(cands("copy-archive-info "), ["p0"]);
        assert_eq!(cands("copy-archive-info p0 vol "), ["p0"]);
        assert_eq!(cands("is-synchronizing a"), ["a0", "a1"]);
        assert_eq!(
            cands("full-backup s0 vol --"),
            ["--bulk", "--no-wait", "--timeout"]
        );
        assert_eq!(cands("help sn"), ["snapshot"]);
        assert!(cands("restore a0 data 8 ").is_empty());
    }

    #[test]
    fn tab_takes_one_candidate_extends_a_prefix_then_cycles() {
        let m = model();
        let mut p = Palette {
            input: "full-b".into(),
            ..Palette::default()
        };
        complete(&mut p, &m);
        assert_eq!(p.input, "full-backup ");
        complete(&mut p, &m);
        assert_eq!(p.input, "full-backup s0 ");
        let mut p = Palette {
            input: "restore ".into(),
            ..Palette::default()
        };
        complete(&mut p, &m);
        assert_eq!(p.input, "restore a");
        complete(&mut p, &m);
        assert_eq!(p.input, "restore a0");
        complete(&mut p, &m);
        assert_eq!(p.input, "restore a1");
        complete(&mut p, &m);
        assert_eq!(p.input, "restore a0");
    }

    #[test]
    fn hint_shows_the_usage_of_the_command_typed() {
        let h = hint("restore a0").unwrap();
        assert!(h.starts_with("restore ARCHIVE VOL GID"), "{h}");
        assert_eq!(hint("nonsense"), None);
    }
}
