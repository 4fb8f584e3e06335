//! The action table's tests: every row's target, roles, parameters and confirmation.

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
        state: walb_wire::msg::VolumeState::parse(role, state),
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
        ("retention", "retention a0 vol"),
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
    let find = |m: &Model, t: &Target, key: char| items(t, m).into_iter().find(|i| i.key == key);
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
