//! What a destructive command loses, told from what the console knows: the lines of the
//! confirmation that the TUI shows before it runs such a command (from a menu or the
//! palette alike). A command that loses nothing runs at once.

use walb_wire::Role;

use super::model::Model;
use crate::exec::commands::{
    AdminCmd, ArchiveCmd, ArchiveInfoOp, BackupCmd, LifecycleCmd, RoutingCmd,
};
use crate::exec::ExecCmd;
use walb_wire::msg::text::snap_str;

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
                walb_wire::msg::text::meta_state_str(&b)
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
            let g: Vec<u64> = av.restored.iter().map(|r| r.gid).collect();
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
    // What the proxies (or one) hold of the command's volume towards `archive`.
    let vol_of_cmd = cmd.target().1.and_then(vol_of);
    let queued = |archive: &str, proxy: Option<&str>| -> String {
        let Some(v) = vol_of_cmd else {
            return String::new();
        };
        let (n, bytes) = v
            .queues
            .iter()
            .filter(|((p, a), _)| a == archive && proxy.is_none_or(|x| x == p))
            .fold((0, 0), |(n, b), (_, q)| (n + q.diffs, b + q.bytes));
        format!(" ({n} diffs, {})", mib(bytes))
    };
    match cmd {
        ExecCmd::Lifecycle(LifecycleCmd::Clear { node, vol, .. }) => {
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
        ExecCmd::Lifecycle(LifecycleCmd::Reset { node, vol, gid, .. }) => {
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
        ExecCmd::Archive(ArchiveCmd::Apply {
            archive, vol, gid, ..
        }) => {
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
        ExecCmd::Archive(ArchiveCmd::Replicate {
            src,
            vol,
            dst,
            opts: crate::ops::ReplicateOpts {
                do_resync: true, ..
            },
            ..
        }) => {
            let mut out = vec![format!(
                "if {dst} holds {vol} from elsewhere (another archive uuid), {src}'s copy replaces:"
            )];
            out.extend(archive_data(dst, vol));
            Some(out)
        }
        ExecCmd::Backup(BackupCmd::DelRestored {
            archive, vol, gid, ..
        }) => {
            let path = vol_of(vol)
                .and_then(|v| v.archives.get(archive))
                .and_then(|a| a.restored.iter().find(|r| r.gid == *gid))
                .map(|r| r.path.clone());
            Some(vec![format!(
                "the restored image of {vol} gid {gid}{} and anything written to it",
                path.map_or(String::new(), |p| format!(" ({p})"))
            )])
        }
        ExecCmd::Archive(ArchiveCmd::SetExplicit {
            archive,
            vol,
            gids: g,
            explicit: false,
        }) => Some(vec![format!(
            "snapshots {} of {vol} on {archive} stop being restorable, and a merge may remove them",
            gids(g)
        )]),
        ExecCmd::Lifecycle(LifecycleCmd::Stop {
            node,
            vol,
            mode: StopMode::Force,
            ..
        }) => {
            let mut out = vec![format!(
                "transfers of {vol} running on {node} are aborted and must start over"
            )];
            out.extend(running(node, vol));
            Some(out)
        }
        ExecCmd::Lifecycle(LifecycleCmd::Stop {
            node, vol, mode, ..
        }) => {
            let mut out = vec![match (m.role(node), mode) {
                (Some(Role::Storage), _) => format!(
                    "the backup of {vol} from {node} until it starts again: writes go on into its log, unshipped (a full log overflows, then only a hash backup recovers)"
                ),
                (Some(Role::Proxy), StopMode::Empty) => format!(
                    "{node} delivers its queue of {vol}, then takes no more wlogs of it until started (they wait in the storage's log)"
                ),
                (Some(Role::Proxy), _) => format!(
                    "{node} forwards nothing of {vol} until started (wlogs wait in the storage's log, diffs in its queue)"
                ),
                _ => format!(
                    "{node} takes no diffs of {vol} until started (they wait in the proxies' queues)"
                ),
            }];
            if let Some(l) = vol_of(vol).and_then(|v| v.log.get(node.as_str())) {
                out.push(format!(
                    "its log is at {} of {} physical blocks",
                    l.usage_pb, l.capacity_pb
                ));
            }
            out.extend(running(node, vol));
            Some(out)
        }
        ExecCmd::Backup(BackupCmd::Resize {
            node, vol, size_lb, ..
        }) => Some(vec![format!(
            "the size of {vol} {}: it grows to {} for good (a volume never shrinks back)",
            node.as_ref()
                .map_or_else(|| "on every archive and storage".to_string(), |n| format!("on {n}")),
            mib(size_lb.saturating_mul(512))
        )]),
        ExecCmd::Archive(ArchiveCmd::GoStandby { node, vol, .. }) => Some(vec![
            format!("{node} stops sending {vol} to its primary archive and resets its log"),
            "the archive catches up only through a hash backup".to_string(),
        ]),
        ExecCmd::Archive(ArchiveCmd::Synchronizing {
            archive,
            vol,
            start: false,
            ..
        }) => Some(vec![
            format!("every proxy drops its queue of {vol} towards {archive}{}", queued(archive, None)),
            format!("{archive} then catches up only by replicate"),
        ]),
        ExecCmd::Routing(RoutingCmd::ArchiveInfo {
            proxy,
            op: ArchiveInfoOp::Delete { vol, archive },
        }) => Some(vec![format!(
            "{proxy} forgets {archive} as a destination of {vol}, and drops its queue towards it{}",
            queued(archive, Some(proxy))
        )]),
        ExecCmd::Archive(ArchiveCmd::VirtFullScan {
            archive,
            vol,
            gid,
            out,
            ..
        }) => Some(vec![format!(
            "whatever {} holds: the image of {vol} gid {gid} from {archive} replaces it (a block device is overwritten)",
            out.display()
        )]),
        ExecCmd::Admin(AdminCmd::Shutdown { node, force }) => {
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
}
