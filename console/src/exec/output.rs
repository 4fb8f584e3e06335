//! What exec commands print: the [`Outcome`] of a command, as text lines in the formats
//! walb-tools operators know, or as JSON.
//!
//! Both come from the typed answers: the text through the wire's renderers
//! (`walb_wire::msg::text` and the reports' `line`/`lines`, the same ones a daemon uses
//! for a protocol-3 peer), the JSON through serde ([`Outcome::typed`]). A state is its
//! name in both.
//!
//! Formats (times are UTC):
//!
//! - state-all: `s0 localhost:10000 storage Target`, one line per node; an unreachable
//!   node says `unreachable: WHY` in place of the state.
//! - diff lists: `|0|-->|1| -- 2017-05-24T04:49:40 4128` (dirty snapshots `|0,5|`; flags
//!   `M`/`-` mergeable, then `C`/`-` compared diff; the size in bytes).
//! - restorable: `8 2017-05-24T05:13:31 1` (gid, time, explicit 0/1).
//! - meta states: `<|0,5|>-20170524044940`, or `<|5|-->|9|>-...` while applying.

use serde_json::{json, Value};
use walb_wire::msg::text::{diff_line, meta_state_str, snap_str, time_compact, time_iso, uuid_hex};
use walb_wire::msg::{MetaDiffDto, MetaStateDto, SnapshotInfo, Uuid, VolumeState};
use walb_wire::Role;

use crate::client::StatusAnswer;

/// One node's line of `state-all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRow {
    /// The node.
    pub node: String,
    /// Its address (as in the cluster file).
    pub addr: String,
    /// Its role.
    pub role: Role,
    /// The state, or why it is unknown.
    pub state: Result<VolumeState, RowError>,
}

/// Why a node's row has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowError {
    /// The node could not be reached.
    Unreachable(String),
    /// The node answered with an error.
    Failed(String),
}

/// One node's part of a multi-node `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusBlock {
    /// The node.
    pub node: String,
    /// Its address.
    pub addr: String,
    /// Its role.
    pub role: Role,
    /// Its status, or why there is none.
    pub status: Result<StatusAnswer, RowError>,
}

/// The result of one exec command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A command that prints nothing on success; JSON tells the volume's state after it.
    Done {
        /// The node.
        node: String,
        /// The volume, if any.
        vol: Option<String>,
        /// The volume's state afterwards, if known.
        state: Option<VolumeState>,
    },
    /// A typed answer: its lines (the wire's renderers) and its JSON (serde).
    Typed {
        /// The text lines.
        lines: Vec<String>,
        /// The JSON value.
        json: Value,
    },
    /// A volume's state (its name in text and JSON).
    State(VolumeState),
    /// One line.
    Text(String),
    /// Lines.
    Lines(Vec<String>),
    /// A gid (snapshot).
    Gid(u64),
    /// The result of a full backup.
    FullBackup {
        /// The gid the image becomes clean at.
        gid: u64,
        /// Whether it was seen restorable at the primary archive.
        restorable: bool,
    },
    /// A restored image.
    Restored {
        /// Its gid.
        gid: u64,
        /// Its path on the archive host.
        path: String,
    },
    /// A number.
    Number(u64),
    /// A yes/no, printed 0/1 as walb-tools.
    Bool(bool),
    /// A uuid, printed as 32 hex digits.
    Uuid(Uuid),
    /// `state-all`.
    StateAll(Vec<StateRow>),
    /// `status` of several nodes.
    Status(Vec<StatusBlock>),
    /// Diff lists.
    Diffs(Vec<MetaDiffDto>),
    /// Restorable snapshots.
    Restorable(Vec<SnapshotInfo>),
    /// Latest snapshots of a node of `role`.
    LatestSnap {
        /// The node's role (the `kind` of the LTSV lines).
        role: Role,
        /// The snapshots.
        snaps: Vec<SnapshotInfo>,
    },
    /// A meta state.
    MetaState(MetaStateDto),
    /// Software and protocol version.
    Version {
        /// Software.
        software: String,
        /// Protocol version.
        protocol: u16,
    },
    /// A report that brings its own text and JSON forms (`retention`).
    Report {
        /// The text lines.
        lines: Vec<String>,
        /// The JSON value.
        json: Value,
    },
}

/// `8 2017-05-24T05:13:31 1`.
pub fn restorable_line(s: &SnapshotInfo) -> String {
    format!(
        "{} {} {}",
        s.gid.map_or("-".to_owned(), |g| g.to_string()),
        time_iso(s.timestamp_s),
        u8::from(s.explicit)
    )
}

/// `name:VOL\tkind:ROLE\tgid:N[\tlsid:N]\ttimestamp:YYYYMMDDhhmmss` (walb-tools' LTSV).
pub fn latest_snap_line(role: Role, s: &SnapshotInfo) -> String {
    let mut l = format!("name:{}\tkind:{role}", s.vol);
    l.push_str(&format!(
        "\tgid:{}",
        s.gid.map_or("-".to_owned(), |g| g.to_string())
    ));
    if let Some(lsid) = s.lsid {
        l.push_str(&format!("\tlsid:{lsid}"));
    }
    l.push_str(&format!("\ttimestamp:{}", time_compact(s.timestamp_s)));
    l
}

/// A `state-all` line.
pub fn state_row_line(r: &StateRow) -> String {
    let state = match &r.state {
        Ok(s) => s.name().to_owned(),
        Err(RowError::Unreachable(m)) => format!("unreachable: {m}"),
        Err(RowError::Failed(m)) => format!("error: {m}"),
    };
    format!("{} {} {} {state}", r.node, r.addr, r.role)
}

impl Outcome {
    /// A typed answer: `lines` (rendered from `value`) and `value`'s JSON.
    pub fn typed<T: serde::Serialize>(value: &T, lines: Vec<String>) -> Outcome {
        Outcome::Typed {
            lines,
            json: serde_json::to_value(value).unwrap_or_else(|e| json!({ "error": e.to_string() })),
        }
    }

    /// A list of typed rows, a line each.
    pub fn rows<T: serde::Serialize>(rows: &[T], line: impl Fn(&T) -> String) -> Outcome {
        Outcome::typed(&rows, rows.iter().map(line).collect())
    }

    /// The text lines to print.
    pub fn text_lines(&self) -> Vec<String> {
        match self {
            Outcome::Done { .. } => Vec::new(),
            Outcome::Text(t) => vec![t.clone()],
            Outcome::Typed { lines, .. } => lines.clone(),
            Outcome::State(s) => vec![s.name().to_owned()],
            Outcome::Lines(l) => l.clone(),
            Outcome::Gid(g) | Outcome::Number(g) => vec![g.to_string()],
            Outcome::FullBackup { gid, .. } => vec![gid.to_string()],
            Outcome::Restored { path, .. } => vec![path.clone()],
            Outcome::Bool(b) => vec![u8::from(*b).to_string()],
            Outcome::Uuid(u) => vec![uuid_hex(u)],
            Outcome::StateAll(rows) => rows.iter().map(state_row_line).collect(),
            Outcome::Status(blocks) => {
                let mut out = Vec::new();
                for b in blocks {
                    out.push(format!("{} {} {}", b.node, b.addr, b.role));
                    match &b.status {
                        Ok(s) => out.extend(s.lines().iter().map(|l| format!("  {l}"))),
                        Err(RowError::Unreachable(m)) => out.push(format!("  unreachable: {m}")),
                        Err(RowError::Failed(m)) => out.push(format!("  error: {m}")),
                    }
                }
                out
            }
            Outcome::Diffs(d) => d.iter().map(diff_line).collect(),
            Outcome::Restorable(s) => s.iter().map(restorable_line).collect(),
            Outcome::LatestSnap { role, snaps } => {
                snaps.iter().map(|s| latest_snap_line(*role, s)).collect()
            }
            Outcome::MetaState(m) => vec![meta_state_str(m)],
            Outcome::Version { software, protocol } => {
                vec![format!("{software} protocol {protocol}")]
            }
            Outcome::Report { lines, .. } => lines.clone(),
        }
    }

    /// The JSON value to print.
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Done { node, vol, state } => {
                let state = state.map(VolumeState::name);
                json!({ "ok": true, "node": node, "vol": vol, "state": state })
            }
            Outcome::Text(t) => json!(t),
            Outcome::Typed { json, .. } => json.clone(),
            Outcome::State(s) => json!(s.name()),
            Outcome::Lines(l) => json!(l),
            Outcome::Gid(g) => json!({ "gid": g }),
            Outcome::FullBackup { gid, restorable } => {
                json!({ "gid": gid, "restorable": restorable })
            }
            Outcome::Restored { gid, path } => json!({ "gid": gid, "path": path }),
            Outcome::Number(n) => json!(n),
            Outcome::Bool(b) => json!(b),
            Outcome::Uuid(u) => json!(uuid_hex(u)),
            Outcome::StateAll(rows) => Value::Array(
                rows.iter()
                    .map(|r| {
                        let mut v = json!({
                            "node": r.node, "addr": r.addr, "role": r.role.as_str(),
                        });
                        match &r.state {
                            Ok(s) => v["state"] = json!(s.name()),
                            Err(RowError::Unreachable(m)) => {
                                v["state"] = Value::Null;
                                v["unreachable"] = json!(m);
                            }
                            Err(RowError::Failed(m)) => {
                                v["state"] = Value::Null;
                                v["error"] = json!(m);
                            }
                        }
                        v
                    })
                    .collect(),
            ),
            Outcome::Status(blocks) => Value::Array(
                blocks
                    .iter()
                    .map(|b| {
                        let mut v = json!({
                            "node": b.node, "addr": b.addr, "role": b.role.as_str(),
                        });
                        match &b.status {
                            Ok(s) => v["status"] = json!(s),
                            Err(RowError::Unreachable(m)) => v["unreachable"] = json!(m),
                            Err(RowError::Failed(m)) => v["error"] = json!(m),
                        }
                        v
                    })
                    .collect(),
            ),
            Outcome::Diffs(d) => Value::Array(d.iter().map(diff_json).collect()),
            Outcome::Restorable(s) => Value::Array(
                s.iter()
                    .map(|s| {
                        json!({
                            "gid": s.gid,
                            "time": time_iso(s.timestamp_s),
                            "timestamp_s": s.timestamp_s,
                            "explicit": s.explicit,
                        })
                    })
                    .collect(),
            ),
            Outcome::LatestSnap { role, snaps } => Value::Array(
                snaps
                    .iter()
                    .map(|s| {
                        json!({
                            "vol": s.vol,
                            "kind": role.as_str(),
                            "gid": s.gid,
                            "lsid": s.lsid,
                            "time": time_iso(s.timestamp_s),
                            "timestamp_s": s.timestamp_s,
                        })
                    })
                    .collect(),
            ),
            Outcome::MetaState(m) => json!({
                "text": meta_state_str(m),
                "b": [m.snap_b.gid_b, m.snap_b.gid_e],
                "e": m.snap_e.map(|e| [e.gid_b, e.gid_e]),
                "applying": m.snap_e.is_some(),
                "time": time_iso(m.timestamp_s),
                "timestamp_s": m.timestamp_s,
            }),
            Outcome::Version { software, protocol } => {
                json!({ "software": software, "protocol": protocol })
            }
            Outcome::Report { json, .. } => json.clone(),
        }
    }
}

fn diff_json(d: &MetaDiffDto) -> Value {
    json!({
        "text": format!("{}-->{}", snap_str(d.range.snap_b), snap_str(d.range.snap_e)),
        "b": [d.range.snap_b.gid_b, d.range.snap_b.gid_e],
        "e": [d.range.snap_e.gid_b, d.range.snap_e.gid_e],
        "mergeable": d.mergeable,
        "comp_diff": d.comp_diff,
        "time": time_iso(d.timestamp_s),
        "timestamp_s": d.timestamp_s,
        "size": d.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use walb_wire::msg::{DiffRange, SnapDto};

    fn diff(b: (u64, u64), e: (u64, u64), m: bool, c: bool, ts: u64, size: u64) -> MetaDiffDto {
        MetaDiffDto {
            range: DiffRange {
                snap_b: SnapDto {
                    gid_b: b.0,
                    gid_e: b.1,
                },
                snap_e: SnapDto {
                    gid_b: e.0,
                    gid_e: e.1,
                },
            },
            mergeable: m,
            comp_diff: c,
            timestamp_s: ts,
            size,
        }
    }

    // 2017-05-24T04:49:40Z, the tutorial's first diff.
    const TS: u64 = 1_495_601_380;

    #[test]
    fn diff_lines_match_the_tutorial() {
        let d = diff((0, 0), (1, 1), false, false, TS, 4128);
        assert_eq!(diff_line(&d), "|0|-->|1| -- 2017-05-24T04:49:40 4128");
        let d = diff((2, 2), (3, 3), true, false, TS + 660, 8280);
        assert_eq!(diff_line(&d), "|2|-->|3| M- 2017-05-24T05:00:40 8280");
        let d = diff((0, 5), (6, 6), false, true, TS, 1);
        assert_eq!(diff_line(&d), "|0,5|-->|6| -C 2017-05-24T04:49:40 1");
        let lines = Outcome::Diffs(vec![d]).text_lines();
        assert_eq!(lines, ["|0,5|-->|6| -C 2017-05-24T04:49:40 1"]);
    }

    #[test]
    fn restorable_and_meta_state_lines() {
        let s = SnapshotInfo {
            vol: "vol".into(),
            gid: Some(8),
            timestamp_s: TS,
            lsid: None,
            explicit: true,
        };
        assert_eq!(restorable_line(&s), "8 2017-05-24T04:49:40 1");
        let m = MetaStateDto {
            snap_b: SnapDto { gid_b: 0, gid_e: 5 },
            snap_e: None,
            timestamp_s: TS,
        };
        assert_eq!(meta_state_str(&m), "<|0,5|>-20170524044940");
        let m = MetaStateDto {
            snap_b: SnapDto { gid_b: 5, gid_e: 5 },
            snap_e: Some(SnapDto { gid_b: 9, gid_e: 9 }),
            timestamp_s: TS,
        };
        assert_eq!(meta_state_str(&m), "<|5|-->|9|>-20170524044940");
        assert_eq!(
            latest_snap_line(Role::Storage, &SnapshotInfo { lsid: Some(7), ..s }),
            "name:vol\tkind:storage\tgid:8\tlsid:7\ttimestamp:20170524044940"
        );
    }

    #[test]
    fn state_all_lines_and_json() {
        let rows = vec![
            StateRow {
                node: "s0".into(),
                addr: "localhost:10000".into(),
                role: Role::Storage,
                state: Ok(VolumeState::Storage(walb_wire::msg::StorageState::Target)),
            },
            StateRow {
                node: "a0".into(),
                addr: "localhost:10200".into(),
                role: Role::Archive,
                state: Err(RowError::Unreachable("no answer in 5 s".into())),
            },
        ];
        let o = Outcome::StateAll(rows);
        assert_eq!(
            o.text_lines(),
            [
                "s0 localhost:10000 storage Target",
                "a0 localhost:10200 archive unreachable: no answer in 5 s"
            ]
        );
        let j = o.to_json();
        assert_eq!(j[0]["state"], "Target");
        assert_eq!(j[1]["state"], Value::Null);
        assert_eq!(j[1]["unreachable"], "no answer in 5 s");
        assert_eq!(j[1]["role"], "archive");
    }

    #[test]
    fn json_of_values() {
        assert_eq!(Outcome::Gid(8).to_json(), json!({"gid": 8}));
        assert_eq!(Outcome::Bool(true).text_lines(), ["1"]);
        assert_eq!(Outcome::Uuid([0xab; 16]).text_lines(), ["ab".repeat(16)]);
        let d = diff((0, 0), (1, 1), true, false, TS, 4128);
        let j = Outcome::Diffs(vec![d]).to_json();
        assert_eq!(j[0]["text"], "|0|-->|1|");
        assert_eq!(j[0]["time"], "2017-05-24T04:49:40");
        assert_eq!(j[0]["mergeable"], true);
        assert_eq!(j[0]["size"], 4128);
        let done = Outcome::Done {
            node: "s0".into(),
            vol: Some("vol".into()),
            state: Some(VolumeState::Storage(walb_wire::msg::StorageState::Stopped)),
        };
        assert!(done.text_lines().is_empty());
        assert_eq!(done.to_json()["state"], "Stopped");
    }
}
