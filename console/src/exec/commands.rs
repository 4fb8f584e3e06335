//! The exec command table: names, usage, parsing and what each command does.
//!
//! Every command is one row of [`COMMANDS`] (name, usage, one-line help, its `--options`
//! and a parse function) and one variant of [`ExecCmd`] with its arm in
//! [`ExecCmd::run`]. Parsing is pure (no cluster file, no network), so the TUI's command
//! palette and scripts accept exactly the same commands, and errors name the command and
//! show its usage. Roles are checked when a command runs, against the cluster file.
//!
//! Adding a command (like hash-backup, merge, apply or replicate) is one row, one variant and
//! one arm; nothing else changes.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::task::JoinSet;
use walb_wire::msg::{
    ArchiveDest, BindHow, Codec, CompressOpt, MergeUntil, PeerRole, StartMode, StopMode, VolPeers,
};
use walb_wire::Role;

use crate::client::{Client, ClientError};
use crate::exec::output::{Outcome, RowError, StateRow, StatusBlock};
pub use crate::ops::parse_compress;
use crate::ops::{self, TIMEOUT_LONG, TIMEOUT_SHORT};
use crate::procs;

/// A command-line mistake: what is wrong and the command's usage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}{}", .command.as_ref().map(|c| format!("{c}: ")).unwrap_or_default(), .usage.as_ref().map(|u| format!(" (usage: {u})")).unwrap_or_default())]
pub struct UsageError {
    /// The command, if known.
    pub command: Option<String>,
    /// What is wrong.
    pub message: String,
    /// `NAME ARGS...`, if the command is known.
    pub usage: Option<String>,
}

impl UsageError {
    fn plain(message: impl Into<String>) -> Self {
        Self {
            command: None,
            message: message.into(),
            usage: None,
        }
    }
}

/// An `--option` a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptSpec {
    /// `--name`.
    pub name: &'static str,
    /// The value's placeholder, or `None` for a flag.
    pub value: Option<&'static str>,
}

const OPT_ZERO_CLEAR: OptSpec = OptSpec {
    name: "--zero-clear",
    value: None,
};
const OPT_TIMEOUT: OptSpec = OptSpec {
    name: "--timeout",
    value: Some("S"),
};
const OPT_NO_WAIT: OptSpec = OptSpec {
    name: "--no-wait",
    value: None,
};
const OPT_BULK: OptSpec = OptSpec {
    name: "--bulk",
    value: Some("LB"),
};
const OPT_OUT: OptSpec = OptSpec {
    name: "--out",
    value: Some("FILE"),
};
const OPT_SAMPLE: OptSpec = OptSpec {
    name: "--sample",
    value: Some("S"),
};
const OPT_GID: OptSpec = OptSpec {
    name: "--gid",
    value: Some("GID"),
};
const OPT_RESYNC: OptSpec = OptSpec {
    name: "--resync",
    value: None,
};
const OPT_DONT_MERGE: OptSpec = OptSpec {
    name: "--dont-merge",
    value: None,
};
const OPT_SYNC: OptSpec = OptSpec {
    name: "--sync",
    value: None,
};
const OPT_ADD: OptSpec = OptSpec {
    name: "--add",
    value: None,
};
const OPT_REMOVE: OptSpec = OptSpec {
    name: "--remove",
    value: None,
};

// Options of the walblib procedures (go-standby, copy-archive-info, cluster resize, merge
// by size, replicate's compression and merge size, latest-clean).
const OPT_MAX_MB: OptSpec = OptSpec {
    name: "--max-mb",
    value: Some("N"),
};
const OPT_COMPRESS: OptSpec = OptSpec {
    name: "--compress",
    value: Some("CODEC:LEVEL"),
};
const OPT_MAX_MERGE_MB: OptSpec = OptSpec {
    name: "--max-merge-mb",
    value: Some("N"),
};

type ParseFn = fn(&mut Args) -> Result<ExecCmd, String>;

/// One row of the command table.
pub struct CommandSpec {
    /// The command's name.
    pub name: &'static str,
    /// Its arguments, after the name.
    pub args: &'static str,
    /// One line of help.
    pub about: &'static str,
    /// The `--options` it accepts.
    pub options: &'static [OptSpec],
    parse: ParseFn,
}

impl CommandSpec {
    /// `NAME ARGS [--options]`.
    pub fn usage(&self) -> String {
        let mut u = self.name.to_owned();
        if !self.args.is_empty() {
            u.push(' ');
            u.push_str(self.args);
        }
        for o in self.options {
            match o.value {
                Some(v) => u.push_str(&format!(" [{} {v}]", o.name)),
                None => u.push_str(&format!(" [{}]", o.name)),
            }
        }
        u
    }
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// Every exec command, in help order.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "help",
        args: "[COMMAND]",
        about: "list the commands, or show one's usage",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Help {
                command: a.opt(),
            })
        },
    },
    CommandSpec {
        name: "state-all",
        args: "VOL",
        about: "the volume's state on every node of the cluster file",
        options: &[],
        parse: |a| Ok(ExecCmd::StateAll { vol: a.req("VOL")? }),
    },
    CommandSpec {
        name: "status",
        args: "[NODE] [VOL]",
        about: "status lines of one node, or of every node (of one volume)",
        options: &[],
        parse: |a| {
            let first = a.opt();
            let second = a.opt();
            Ok(ExecCmd::Status { first, second })
        },
    },
    CommandSpec {
        name: "init-storage",
        args: "NODE VOL WDEV",
        about: "init-vol on a storage with its WalB device, then start it standby",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::InitStorage {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                wdev: a.req("WDEV")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "init-archive",
        args: "NODE VOL",
        about: "init-vol on an archive (Clear -> SyncReady)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::InitArchive {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
            })
        },
    },
    CommandSpec {
        name: "start",
        args: "NODE VOL [target|standby]",
        about: "start a volume and wait until it runs (storage default: standby from SyncReady, else target)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            let node = a.req("NODE")?;
            let vol = a.req("VOL")?;
            let mode = match a.opt().as_deref() {
                None => None,
                Some("target") => Some(StartMode::Target),
                Some("standby") => Some(StartMode::Standby),
                Some(m) => return Err(format!("unknown start mode {m:?} (target or standby)")),
            };
            Ok(ExecCmd::Start {
                node,
                vol,
                mode,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "stop",
        args: "NODE VOL [graceful|force|empty]",
        about: "stop a volume and wait until it is stopped",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            let node = a.req("NODE")?;
            let vol = a.req("VOL")?;
            let mode = match a.opt().as_deref() {
                None | Some("graceful") => StopMode::Graceful,
                Some("force") => StopMode::Force,
                Some("empty") => StopMode::Empty,
                Some(m) => {
                    return Err(format!(
                        "unknown stop mode {m:?} (graceful, force or empty)"
                    ))
                }
            };
            Ok(ExecCmd::Stop {
                node,
                vol,
                mode,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "reset",
        args: "NODE VOL [GID]",
        about: "reset-vol and wait for SyncReady (storage: a new gid epoch from GID, default 0)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Reset {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                gid: a.opt_num("GID")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "clear",
        args: "NODE VOL",
        about: "stop/reset as needed, then clear-vol (forgets the volume on that node)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Clear {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "full-backup",
        args: "NODE VOL",
        about: "prepare storage, archive and proxies, full backup, wait for Target; print the gid it is clean at and wait until restorable",
        options: &[OPT_BULK, OPT_NO_WAIT, OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::FullBackup {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                bulk_lb: a.value_num("--bulk")?,
                wait: !a.flag("--no-wait"),
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "snapshot",
        args: "NODE VOL [ARCHIVE...]",
        about: "take a snapshot, print its gid; with archives, wait until it is restorable there",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Snapshot {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                archives: a.rest(),
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "hash-backup",
        args: "NODE VOL",
        about: "hash backup of a Stopped storage volume to its archive (only the differences travel); wait for Target, print the gid it is clean at and wait until restorable",
        options: &[OPT_BULK, OPT_NO_WAIT, OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::HashBackup {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                bulk_lb: a.value_num("--bulk")?,
                wait: !a.flag("--no-wait"),
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "wait-restorable",
        args: "ARCHIVE VOL GID",
        about: "wait until GID is restorable at the archive",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::WaitRestorable {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "restore",
        args: "ARCHIVE VOL GID",
        about: "restore snapshot GID and wait until the image exists; print its path",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Restore {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "restored-path",
        args: "ARCHIVE VOL GID",
        about: "the path of a restored image",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::RestoredPath {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
            })
        },
    },
    CommandSpec {
        name: "del-restored",
        args: "ARCHIVE VOL GID",
        about: "delete a restored image",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::DelRestored {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
            })
        },
    },
    CommandSpec {
        name: "resize",
        args: "[NODE] VOL SIZE",
        about: "grow a volume to SIZE bytes (k/m/g/t suffixes); without NODE across the cluster: every archive's image, then every storage's device (data devices grown beforehand); prints the nodes grown",
        options: &[OPT_ZERO_CLEAR],
        parse: |a| {
            let first = a.req("VOL")?;
            let second = a.req("SIZE")?;
            let (node, vol, size) = match a.opt() {
                Some(size) => (Some(first), second, size),
                None => (None, first, second),
            };
            Ok(ExecCmd::Resize {
                node,
                vol,
                size_lb: size_lb(&size)?,
                zero_clear: a.flag("--zero-clear"),
            })
        },
    },
    CommandSpec {
        name: "restorable",
        args: "ARCHIVE VOL [all]",
        about: "restorable snapshots: gid, time (UTC), explicit 0/1",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Restorable {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                all: a.keyword("all")?,
            })
        },
    },
    CommandSpec {
        name: "diff-list",
        args: "ARCHIVE VOL [GIDB [GIDE]]",
        about: "the archive's diffs: |B|-->|E| flags(M/-,C/-) time(UTC) size",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::DiffList {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid_b: a.opt_num("GIDB")?,
                gid_e: a.opt_num("GIDE")?,
            })
        },
    },
    CommandSpec {
        name: "merge",
        args: "ARCHIVE VOL GIDB [GIDE]",
        about: "merge the mergeable diffs from GIDB up to GIDE, or (--max-mb) as far as they total at most N MiB, into one; wait until done; print the merged diff",
        options: &[OPT_MAX_MB, OPT_TIMEOUT],
        parse: |a| {
            let archive = a.req("ARCHIVE")?;
            let vol = a.req("VOL")?;
            let gid_b = a.req_num("GIDB")?;
            let until = match (a.opt_num("GIDE")?, a.value_num("--max-mb")?) {
                (Some(e), None) => MergeUntil::Gid(e),
                (None, Some(0)) => return Err("--max-mb must be positive".into()),
                (None, Some(mb)) => MergeUntil::SizeMib(mb),
                (Some(_), Some(_)) => return Err("GIDE or --max-mb, not both".into()),
                (None, None) => return Err("missing GIDE (or --max-mb N)".into()),
            };
            Ok(ExecCmd::Merge {
                archive,
                vol,
                gid_b,
                until,
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "apply",
        args: "ARCHIVE VOL GID",
        about: "apply the diffs up to GID to the base image (older snapshots stop being restorable); wait until done",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Apply {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "disable-snapshot",
        args: "ARCHIVE VOL GID...",
        about: "make snapshots implicit: no longer restorable, their diffs may be merged",
        options: &[],
        parse: |a| parse_set_explicit(a, false),
    },
    CommandSpec {
        name: "enable-snapshot",
        args: "ARCHIVE VOL GID...",
        about: "make snapshots explicit (restorable) again",
        options: &[],
        parse: |a| parse_set_explicit(a, true),
    },
    CommandSpec {
        name: "replicate",
        args: "SRC VOL DST",
        about: "replicate the volume from archive SRC to archive DST (init DST if Clear) up to --gid (default: SRC's latest restorable); wait, print the gid; --sync: DST then receives every diff from the proxies; --bulk: a full copy's bulk size (logical blocks), --compress: its image's compression (zstd:LEVEL or none), --max-merge-mb: the largest diff a round merges",
        options: &[
            OPT_GID,
            OPT_RESYNC,
            OPT_DONT_MERGE,
            OPT_SYNC,
            OPT_BULK,
            OPT_COMPRESS,
            OPT_MAX_MERGE_MB,
            OPT_TIMEOUT,
        ],
        parse: |a| {
            Ok(ExecCmd::Replicate {
                src: a.req("SRC")?,
                vol: a.req("VOL")?,
                dst: a.req("DST")?,
                opts: ops::ReplicateOpts {
                    gid: a.value_num("--gid")?,
                    do_resync: a.flag("--resync"),
                    dont_merge: a.flag("--dont-merge"),
                    bulk_lb: a.value_num("--bulk")?,
                    compress: a.value_str("--compress").map(|c| image_compress(&c)).transpose()?,
                    merge_size_max: match a.value_num("--max-merge-mb")? {
                        Some(0) => return Err("--max-merge-mb must be positive".into()),
                        Some(mb) => Some(
                            mb.checked_mul(1 << 20)
                                .ok_or("--max-merge-mb is too large")?,
                        ),
                        None => None,
                    },
                },
                sync: a.flag("--sync"),
                timeout: a.timeout(TIMEOUT_LONG)?,
            })
        },
    },
    CommandSpec {
        name: "bhash",
        args: "ARCHIVE VOL GID",
        about: "hash of snapshot GID's image (restorable snapshots): equal on two archives that hold the same bytes",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::BlockHash {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
            })
        },
    },
    CommandSpec {
        name: "virt-full-scan",
        args: "ARCHIVE VOL GID OUT",
        about: "write snapshot GID's image from the archive into OUT (a file, written whole or not at all, or a block device), without a restore",
        options: &[OPT_BULK],
        parse: |a| {
            Ok(ExecCmd::VirtFullScan {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                out: a.req("OUT")?.into(),
                bulk_lb: a.value_num("--bulk")?,
            })
        },
    },
    CommandSpec {
        name: "start-synchronizing",
        args: "ARCHIVE VOL",
        about: "make every proxy send the volume's diffs to the archive too (it must hold the latest snapshot: replicate --sync does both)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Synchronizing {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                start: true,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "stop-synchronizing",
        args: "ARCHIVE VOL",
        about: "the proxies stop sending the volume's diffs to the archive (their queue for it is dropped)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Synchronizing {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                start: false,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "is-synchronizing",
        args: "ARCHIVE VOL",
        about: "1 if every proxy sends the volume's diffs to the archive, 0 if none does",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::IsSynchronizing {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
            })
        },
    },
    // walblib procedures: go-standby, copy-archive-info, latest-clean.
    CommandSpec {
        name: "go-standby",
        args: "STORAGE VOL",
        about: "make a storage replica Standby (walblib go_standby): from Target stop force, stop synchronizing its primary archive, reset, start standby (from Stopped the same without the stop); from SyncReady start standby; Standby stays",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::GoStandby {
                node: a.req("STORAGE")?,
                vol: a.req("VOL")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "copy-archive-info",
        args: "SRC_PROXY VOL DST_PROXY",
        about: "DST_PROXY sends the volume to every archive SRC_PROXY does (same address, compression, delay), the archives take its diffs and it takes the storage's wlogs (bind); then it starts; storages ship to it once it is among their proxies; prints the archives and the storage",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::CopyArchiveInfo {
                src: a.req("SRC_PROXY")?,
                vol: a.req("VOL")?,
                dst: a.req("DST_PROXY")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            })
        },
    },
    CommandSpec {
        name: "latest-clean",
        args: "ARCHIVE VOL",
        about: "the latest restorable gid (walblib get_latest_clean_snapshot; the last line of `restorable ARCHIVE VOL all`)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::LatestClean {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
            })
        },
    },
    CommandSpec {
        name: "bind",
        args: "NODE VOL storage|proxy|archive [ID...]",
        about: "who may touch the volume on a proxy or archive: its storage (wlogs, backups), proxies (wdiffs), archives (replication sources); sets the role's list (--add, --remove change it); init-storage, full-backup, hash-backup, replicate and start-synchronizing bind the cluster's backup groups",
        options: &[OPT_ADD, OPT_REMOVE],
        parse: |a| {
            let node = a.req("NODE")?;
            let vol = a.req("VOL")?;
            let role = match a.req("ROLE")?.as_str() {
                "storage" => PeerRole::Storage,
                "proxy" => PeerRole::Proxy,
                "archive" => PeerRole::Archive,
                r => return Err(format!("role {r:?}: want storage, proxy or archive")),
            };
            let how = match (a.flag("--add"), a.flag("--remove")) {
                (false, false) => BindHow::Set,
                (true, false) => BindHow::Add,
                (false, true) => BindHow::Remove,
                (true, true) => return Err("--add or --remove, not both".into()),
            };
            Ok(ExecCmd::Bind {
                node,
                vol,
                role,
                ids: a.rest(),
                how,
            })
        },
    },
    CommandSpec {
        name: "peers",
        args: "NODE VOL",
        about: "the peers bound to the volume on the node (see bind)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Peers {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
            })
        },
    },
    CommandSpec {
        name: "archive-info",
        args: "PROXY add|update|get|delete|list VOL [ARCHIVE [ADDR] [CODEC:LEVEL:NCPU] [DELAY]]",
        about: "a proxy's archive destinations (ADDR defaults to the archive's in the cluster file)",
        options: &[],
        parse: parse_archive_info,
    },
    CommandSpec {
        name: "kick",
        args: "NODE [VOL [ARCHIVE]]",
        about: "retry delayed transfers now (storage, proxy)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Kick {
                node: a.req("NODE")?,
                vol: a.opt(),
                archive: a.opt(),
            })
        },
    },
    // gc-diff and set-full-scan-bps.
    CommandSpec {
        name: "gc-diff",
        args: "ARCHIVE VOL",
        about: "delete the diffs no restorable snapshot needs any more (unreachable from the base)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::GcDiff {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
            })
        },
    },
    CommandSpec {
        name: "set-full-scan-bps",
        args: "STORAGE BPS",
        about: "limit the device reads of full and hash backups, bytes per second (k, m, g suffixes; 0 = no limit), until the daemon restarts",
        options: &[],
        parse: |a| {
            let node = a.req("STORAGE")?;
            let bps = a.req("BPS")?;
            Ok(ExecCmd::SetFullScanBps {
                node,
                bps: bytes_per_second(&bps)?,
            })
        },
    },
    CommandSpec {
        name: "get",
        args: "NODE TARGET [ARGS...]",
        about: "one query (walbc get targets; `help get` lists them)",
        options: &[],
        parse: |a| {
            let node = a.req("NODE")?;
            let target = a.req("TARGET")?;
            let target = GetTarget::parse(&target, a)?;
            Ok(ExecCmd::Get { node, target })
        },
    },
    CommandSpec {
        name: "metrics",
        args: "",
        about: "the cluster's live data in Prometheus text format (for node_exporter's textfile collector)",
        options: &[OPT_OUT, OPT_SAMPLE],
        parse: |a| {
            Ok(ExecCmd::Metrics {
                out: a.value_str("--out").map(std::path::PathBuf::from),
                sample: a.seconds("--sample", Duration::from_secs(2))?,
            })
        },
    },
    CommandSpec {
        name: "shutdown",
        args: "NODE [graceful|force]",
        about: "stop a daemon",
        options: &[],
        parse: |a| {
            let node = a.req("NODE")?;
            let force = match a.opt().as_deref() {
                None | Some("graceful") => false,
                Some("force") => true,
                Some(m) => return Err(format!("unknown shutdown mode {m:?} (graceful or force)")),
            };
            Ok(ExecCmd::Shutdown { node, force })
        },
    },
];

/// The spec of command `name`.
pub fn spec(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The arguments of one command: positionals in order, and its `--options`.
pub struct Args {
    pos: VecDeque<String>,
    opts: Vec<(&'static str, Option<String>)>,
}

impl Args {
    fn new(spec: &CommandSpec, raw: &[String]) -> Result<Args, String> {
        let mut pos = VecDeque::new();
        let mut opts = Vec::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if !(a.starts_with("--") && a.len() > 2) {
                pos.push_back(a.clone());
                continue;
            }
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (a.as_str(), None),
            };
            let o = spec
                .options
                .iter()
                .find(|o| o.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = spec.options.iter().map(|o| o.name).collect();
                    format!(
                        "unknown option {name}{} (console options such as --json go before --exec)",
                        if known.is_empty() {
                            String::new()
                        } else {
                            format!("; it takes {}", known.join(", "))
                        }
                    )
                })?;
            let value = match (o.value, inline) {
                (None, None) => None,
                (None, Some(_)) => return Err(format!("{name} takes no value")),
                (Some(_), Some(v)) => Some(v),
                (Some(ph), None) => Some(
                    it.next()
                        .cloned()
                        .ok_or_else(|| format!("{name} needs a value {ph}"))?,
                ),
            };
            if opts.iter().any(|(n, _)| *n == o.name) {
                return Err(format!("{name} given twice"));
            }
            opts.push((o.name, value));
        }
        Ok(Args { pos, opts })
    }

    /// The next positional argument, required.
    pub fn req(&mut self, what: &str) -> Result<String, String> {
        self.pos
            .pop_front()
            .ok_or_else(|| format!("missing {what}"))
    }

    /// The next positional argument, if any.
    pub fn opt(&mut self) -> Option<String> {
        self.pos.pop_front()
    }

    /// Every remaining positional argument.
    pub fn rest(&mut self) -> Vec<String> {
        self.pos.drain(..).collect()
    }

    /// The next positional argument as a number, required.
    pub fn req_num(&mut self, what: &str) -> Result<u64, String> {
        let s = self.req(what)?;
        number(&s, what)
    }

    /// The next positional argument as a number, if any.
    pub fn opt_num(&mut self, what: &str) -> Result<Option<u64>, String> {
        self.opt().map(|s| number(&s, what)).transpose()
    }

    /// An optional keyword (`all`): true if present.
    pub fn keyword(&mut self, word: &str) -> Result<bool, String> {
        match self.pos.front() {
            Some(w) if w == word => {
                self.pos.pop_front();
                Ok(true)
            }
            Some(w) if w == "0" || w == "1" => {
                let yes = w == "1";
                self.pos.pop_front();
                Ok(yes)
            }
            _ => Ok(false),
        }
    }

    /// Whether flag `name` was given.
    pub fn flag(&mut self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == name)
    }

    /// The value of option `name`, as a number.
    pub fn value_num(&mut self, name: &str) -> Result<Option<u64>, String> {
        self.opts
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| number(v, name))
            .transpose()
    }

    /// `--timeout S` (whole or fractional seconds), else `default`.
    pub fn timeout(&mut self, default: Duration) -> Result<Duration, String> {
        self.seconds("--timeout", default)
    }

    /// Option `name` as whole or fractional seconds, else `default`.
    pub fn seconds(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.value_str(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{name} wants seconds, got {v:?}")),
        }
    }

    /// The value of option `name`, as given.
    pub fn value_str(&mut self, name: &str) -> Option<String> {
        self.opts
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    }

    fn finish(self) -> Result<(), String> {
        match self.pos.front() {
            None => Ok(()),
            Some(x) => Err(format!("unexpected argument {x:?}")),
        }
    }
}

fn number(s: &str, what: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("{what} must be a number, got {s:?}"))
}

/// A size in bytes (`k`, `m`, `g`, `t` suffixes, powers of 1024) as logical blocks; it
/// must be a positive multiple of 512.
/// A rate in bytes per second: a number with an optional k, m or g suffix (powers of
/// 1024).
fn bytes_per_second(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                _ => return Err(format!("BPS {s:?}: the suffix is k, m or g")),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    number(num, "BPS")?
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("BPS {s:?} is too large"))
}

fn size_lb(s: &str) -> Result<u64, String> {
    let bad = || format!("SIZE must be bytes with an optional k/m/g/t suffix, got {s:?}");
    let t = s.trim().to_ascii_lowercase();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 10),
        Some((i, 'm')) => (&t[..i], 20),
        Some((i, 'g')) => (&t[..i], 30),
        Some((i, 't')) => (&t[..i], 40),
        _ => (&t[..], 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if bytes == 0 || bytes % 512 != 0 {
        return Err(format!("SIZE {s} is not a positive multiple of 512 bytes"));
    }
    Ok(bytes / 512)
}

/// A replication's image compression: `zstd[:LEVEL[:NCPU]]` or `none` (what a full copy's
/// bulks travel with).
fn image_compress(s: &str) -> Result<CompressOpt, String> {
    match parse_compress(s) {
        Some(c) if matches!(c.codec, Codec::Zstd | Codec::None) => Ok(c),
        _ => Err(format!(
            "--compress {s:?}: a replicated image travels as zstd[:LEVEL] or none"
        )),
    }
}

fn parse_set_explicit(a: &mut Args, explicit: bool) -> Result<ExecCmd, String> {
    let archive = a.req("ARCHIVE")?;
    let vol = a.req("VOL")?;
    let mut gids = vec![a.req_num("GID")?];
    for g in a.rest() {
        gids.push(number(&g, "GID")?);
    }
    Ok(ExecCmd::SetExplicit {
        archive,
        vol,
        gids,
        explicit,
    })
}

fn parse_archive_info(a: &mut Args) -> Result<ExecCmd, String> {
    let proxy = a.req("PROXY")?;
    let sub = a.req("add|update|get|delete|list")?;
    let vol = a.req("VOL")?;
    let op = match sub.as_str() {
        "add" | "update" => {
            let archive = a.req("ARCHIVE")?;
            let (mut addr, mut compress, mut delay_s) = (None, None, None);
            for x in a.rest() {
                if x.bytes().all(|b| b.is_ascii_digit()) && !x.is_empty() {
                    if delay_s.replace(number(&x, "DELAY")?).is_some() {
                        return Err(format!("two delays given ({x})"));
                    }
                } else if let Some(c) = parse_compress(&x) {
                    if compress.replace(c).is_some() {
                        return Err(format!("two compressions given ({x})"));
                    }
                } else if x.contains(':') {
                    if addr.replace(x.clone()).is_some() {
                        return Err(format!("two addresses given ({x})"));
                    }
                } else {
                    return Err(format!(
                        "{x:?} is none of HOST:PORT, CODEC:LEVEL:NCPU (codecs: none, snappy, \
                         gzip, lzma, lz4, zstd) or a DELAY in seconds"
                    ));
                }
            }
            ArchiveInfoOp::Set {
                vol,
                archive,
                addr,
                compress,
                delay_s,
                update: sub == "update",
            }
        }
        "get" => ArchiveInfoOp::Get {
            vol,
            archive: a.req("ARCHIVE")?,
        },
        "delete" => ArchiveInfoOp::Delete {
            vol,
            archive: a.req("ARCHIVE")?,
        },
        "list" => ArchiveInfoOp::List { vol },
        other => {
            return Err(format!(
                "unknown archive-info sub-command {other:?} (add, update, get, delete or list)"
            ))
        }
    };
    Ok(ExecCmd::ArchiveInfo { proxy, op })
}

/// `archive-info` sub-commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveInfoOp {
    /// `add` or `update`.
    Set {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
        /// Its address (default: the cluster file's).
        addr: Option<String>,
        /// Compression (default snappy:0:1).
        compress: Option<CompressOpt>,
        /// Delay, seconds (default 0).
        delay_s: Option<u64>,
        /// `update` rather than `add`.
        update: bool,
    },
    /// `get`.
    Get {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
    },
    /// `delete`.
    Delete {
        /// Volume.
        vol: String,
        /// Archive name.
        archive: String,
    },
    /// `list`.
    List {
        /// Volume.
        vol: String,
    },
}

/// A `get` target (walbc's §2.2 targets the daemons answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetTarget {
    /// `state VOL`.
    State(String),
    /// `host-type`.
    HostType,
    /// `vol`.
    Vol,
    /// `pid`.
    Pid,
    /// `version`.
    Version,
    /// `latest-snap [VOL]`.
    LatestSnap(Option<String>),
    /// `log-usage [VOL]`.
    LogUsage(Option<String>),
    /// `is-overflow VOL`.
    IsOverflow(String),
    /// `uuid VOL`.
    Uuid(String),
    /// `is-wdiff-send-error VOL ARCHIVE`.
    IsWdiffSendError(String, String),
    /// `diff VOL [GIDB [GIDE]]` (archive) or `diff VOL [ARCHIVE]` (proxy queue).
    Diff(String, Vec<String>),
    /// `applicable-diff VOL [MAXGID]`.
    ApplicableDiff(String, Option<u64>),
    /// `restorable VOL [all]`.
    Restorable(String, bool),
    /// `restored VOL`.
    Restored(String),
    /// `base VOL`.
    Base(String),
    /// `vol-size VOL`.
    VolSize(String),
    /// `progress VOL`.
    Progress(String),
    /// `exists-base-image VOL`.
    ExistsBaseImage(String),
    /// `num-action VOL ACTION`.
    NumAction(String, String),
    /// `archive-uuid VOL`.
    ArchiveUuid(String),
    /// `meta-state VOL [0|1 [GID]]`.
    MetaState(String, bool, Option<u64>),
    /// `ts-delta`.
    TsDelta,
    /// `num-diff VOL [GIDB [GIDE]]`.
    NumDiff(String, Option<u64>, Option<u64>),
    /// `total-diff-size VOL [GIDB [GIDE]]`.
    TotalDiffSize(String, Option<u64>, Option<u64>),
    /// `exists-diff VOL G0 G1 G2 G3`: the diff `|G0,G1|-->|G2,G3|`.
    ExistsDiff(String, [u64; 4]),
    /// `all-actions`.
    AllActions,
    /// `base-all`.
    BaseAll,
    /// `meta-snap VOL [GID]`.
    MetaSnap(String, Option<u64>),
}

const SPA: &[Role] = &[Role::Storage, Role::Proxy, Role::Archive];
const S: &[Role] = &[Role::Storage];
const P: &[Role] = &[Role::Proxy];
const A: &[Role] = &[Role::Archive];
const SA: &[Role] = &[Role::Storage, Role::Archive];
const PA: &[Role] = &[Role::Proxy, Role::Archive];

/// The `get` targets: name, arguments, the roles that answer it.
pub static GET_TARGETS: &[(&str, &str, &[Role])] = &[
    ("state", "VOL", SPA),
    ("host-type", "", SPA),
    ("vol", "", SPA),
    ("pid", "", SPA),
    ("version", "", SPA),
    ("latest-snap", "[VOL]", SPA),
    ("log-usage", "[VOL]", S),
    ("is-overflow", "VOL", S),
    ("uuid", "VOL", SA),
    ("is-wdiff-send-error", "VOL ARCHIVE", P),
    (
        "diff",
        "VOL [GIDB [GIDE]] (archive) | VOL [ARCHIVE] (proxy)",
        PA,
    ),
    ("applicable-diff", "VOL [MAXGID]", A),
    ("restorable", "VOL [all]", A),
    ("restored", "VOL", A),
    ("base", "VOL", A),
    ("vol-size", "VOL", A),
    ("progress", "VOL", A),
    ("exists-base-image", "VOL", A),
    (
        "num-action",
        "VOL Merge|Apply|Restore|ReplSyncAsClient|Resize",
        A,
    ),
    ("archive-uuid", "VOL", A),
    ("meta-state", "VOL [0|1 [GID]]", SA),
    ("ts-delta", "", SA),
    ("num-diff", "VOL [GIDB [GIDE]]", A),
    ("total-diff-size", "VOL [GIDB [GIDE]]", A),
    ("exists-diff", "VOL G0 G1 G2 G3", A),
    ("all-actions", "", A),
    ("base-all", "", A),
    ("meta-snap", "VOL [GID]", A),
];

impl GetTarget {
    fn parse(name: &str, a: &mut Args) -> Result<GetTarget, String> {
        use GetTarget as G;
        let t = match name {
            "state" => G::State(a.req("VOL")?),
            "host-type" => G::HostType,
            "vol" => G::Vol,
            "pid" => G::Pid,
            "version" => G::Version,
            "latest-snap" => G::LatestSnap(a.opt()),
            "log-usage" => G::LogUsage(a.opt()),
            "is-overflow" => G::IsOverflow(a.req("VOL")?),
            "uuid" => G::Uuid(a.req("VOL")?),
            "is-wdiff-send-error" => G::IsWdiffSendError(a.req("VOL")?, a.req("ARCHIVE")?),
            "diff" => {
                let vol = a.req("VOL")?;
                let rest = a.rest();
                if rest.len() > 2 {
                    return Err(format!("unexpected argument {:?}", rest[2]));
                }
                G::Diff(vol, rest)
            }
            "applicable-diff" => G::ApplicableDiff(a.req("VOL")?, a.opt_num("MAXGID")?),
            "restorable" => G::Restorable(a.req("VOL")?, a.keyword("all")?),
            "restored" => G::Restored(a.req("VOL")?),
            "base" => G::Base(a.req("VOL")?),
            "vol-size" => G::VolSize(a.req("VOL")?),
            "progress" => G::Progress(a.req("VOL")?),
            "exists-base-image" => G::ExistsBaseImage(a.req("VOL")?),
            "num-action" => G::NumAction(a.req("VOL")?, a.req("ACTION")?),
            "archive-uuid" => G::ArchiveUuid(a.req("VOL")?),
            "ts-delta" => G::TsDelta,
            "num-diff" => G::NumDiff(a.req("VOL")?, a.opt_num("GIDB")?, a.opt_num("GIDE")?),
            "total-diff-size" => {
                G::TotalDiffSize(a.req("VOL")?, a.opt_num("GIDB")?, a.opt_num("GIDE")?)
            }
            "exists-diff" => G::ExistsDiff(
                a.req("VOL")?,
                [
                    a.req_num("G0")?,
                    a.req_num("G1")?,
                    a.req_num("G2")?,
                    a.req_num("G3")?,
                ],
            ),
            "all-actions" => G::AllActions,
            "base-all" => G::BaseAll,
            "meta-snap" => G::MetaSnap(a.req("VOL")?, a.opt_num("GID")?),
            "meta-state" => {
                let vol = a.req("VOL")?;
                let applying = match a.opt().as_deref() {
                    None | Some("0") => false,
                    Some("1") => true,
                    Some(x) => return Err(format!("meta-state wants 0 or 1, got {x:?}")),
                };
                G::MetaState(vol, applying, a.opt_num("GID")?)
            }
            other => {
                let names: Vec<&str> = GET_TARGETS.iter().map(|t| t.0).collect();
                return Err(format!(
                    "unknown get target {other:?} (one of {})",
                    names.join(", ")
                ));
            }
        };
        Ok(t)
    }

    /// The target's name.
    pub fn name(&self) -> &'static str {
        use GetTarget as G;
        match self {
            G::State(_) => "state",
            G::HostType => "host-type",
            G::Vol => "vol",
            G::Pid => "pid",
            G::Version => "version",
            G::LatestSnap(_) => "latest-snap",
            G::LogUsage(_) => "log-usage",
            G::IsOverflow(_) => "is-overflow",
            G::Uuid(_) => "uuid",
            G::IsWdiffSendError(..) => "is-wdiff-send-error",
            G::Diff(..) => "diff",
            G::ApplicableDiff(..) => "applicable-diff",
            G::Restorable(..) => "restorable",
            G::Restored(_) => "restored",
            G::Base(_) => "base",
            G::VolSize(_) => "vol-size",
            G::Progress(_) => "progress",
            G::ExistsBaseImage(_) => "exists-base-image",
            G::NumAction(..) => "num-action",
            G::ArchiveUuid(_) => "archive-uuid",
            G::MetaState(..) => "meta-state",
            G::TsDelta => "ts-delta",
            G::NumDiff(..) => "num-diff",
            G::TotalDiffSize(..) => "total-diff-size",
            G::ExistsDiff(..) => "exists-diff",
            G::AllActions => "all-actions",
            G::BaseAll => "base-all",
            G::MetaSnap(..) => "meta-snap",
        }
    }

    /// The roles that answer this target.
    pub fn roles(&self) -> &'static [Role] {
        GET_TARGETS
            .iter()
            .find(|t| t.0 == self.name())
            .map_or(SPA, |t| t.2)
    }
}

/// A parsed exec command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecCmd {
    /// `help [COMMAND]`.
    Help {
        /// One command's usage, or all.
        command: Option<String>,
    },
    /// `state-all VOL`.
    StateAll {
        /// Volume.
        vol: String,
    },
    /// `status [NODE] [VOL]`: a known node name first is the node, else the volume.
    Status {
        /// Node or volume.
        first: Option<String>,
        /// Volume.
        second: Option<String>,
    },
    /// `init-storage NODE VOL WDEV`.
    InitStorage {
        /// Storage.
        node: String,
        /// Volume.
        vol: String,
        /// WalB device (path or name).
        wdev: String,
        /// Wait limit.
        timeout: Duration,
    },
    /// `init-archive NODE VOL`.
    InitArchive {
        /// Archive.
        node: String,
        /// Volume.
        vol: String,
    },
    /// `start NODE VOL [target|standby]`.
    Start {
        /// Node.
        node: String,
        /// Volume.
        vol: String,
        /// Storage mode.
        mode: Option<StartMode>,
        /// Wait limit.
        timeout: Duration,
    },
    /// `stop NODE VOL [graceful|force|empty]`.
    Stop {
        /// Node.
        node: String,
        /// Volume.
        vol: String,
        /// How.
        mode: StopMode,
        /// Wait limit.
        timeout: Duration,
    },
    /// `reset NODE VOL [GID]`.
    Reset {
        /// Storage or archive.
        node: String,
        /// Volume.
        vol: String,
        /// Storage: first gid of the new epoch.
        gid: Option<u64>,
        /// Wait limit.
        timeout: Duration,
    },
    /// `clear NODE VOL`.
    Clear {
        /// Node.
        node: String,
        /// Volume.
        vol: String,
        /// Wait limit of each step.
        timeout: Duration,
    },
    /// `full-backup NODE VOL`.
    FullBackup {
        /// Storage.
        node: String,
        /// Volume.
        vol: String,
        /// Bulk size, logical blocks.
        bulk_lb: Option<u64>,
        /// Wait until restorable at the primary archive.
        wait: bool,
        /// Wait limit.
        timeout: Duration,
    },
    /// `snapshot NODE VOL [ARCHIVE...]`.
    Snapshot {
        /// Storage.
        node: String,
        /// Volume.
        vol: String,
        /// Archives to wait for.
        archives: Vec<String>,
        /// Wait limit.
        timeout: Duration,
    },
    /// `hash-backup NODE VOL`.
    HashBackup {
        /// Storage.
        node: String,
        /// Volume.
        vol: String,
        /// Bulk size, logical blocks.
        bulk_lb: Option<u64>,
        /// Wait until the gid it is clean at is restorable.
        wait: bool,
        /// Wait limit.
        timeout: Duration,
    },
    /// `merge ARCHIVE VOL GIDB (GIDE | --max-mb N)`.
    Merge {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// First gid of the chain.
        gid_b: u64,
        /// Where the chain ends (before a gid, or within a size).
        until: MergeUntil,
        /// Wait limit.
        timeout: Duration,
    },
    /// `apply ARCHIVE VOL GID`.
    Apply {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Apply up to this gid.
        gid: u64,
        /// Wait limit.
        timeout: Duration,
    },
    /// `enable-snapshot|disable-snapshot ARCHIVE VOL GID...`.
    SetExplicit {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Snapshot gids.
        gids: Vec<u64>,
        /// `true` for enable-snapshot.
        explicit: bool,
    },
    /// `replicate SRC VOL DST [--gid GID] [--resync] [--dont-merge] [--sync]`.
    Replicate {
        /// Source archive.
        src: String,
        /// Volume.
        vol: String,
        /// Destination archive.
        dst: String,
        /// Gid, resync, merging.
        opts: ops::ReplicateOpts,
        /// Synchronize afterwards (the proxies send to DST too).
        sync: bool,
        /// Wait limit.
        timeout: Duration,
    },
    /// `start-synchronizing|stop-synchronizing ARCHIVE VOL`.
    Synchronizing {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// `true` for start-synchronizing.
        start: bool,
        /// Wait limit of each proxy's stop and start.
        timeout: Duration,
    },
    /// `virt-full-scan ARCHIVE VOL GID OUT`.
    VirtFullScan {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
        /// Where the image goes.
        out: std::path::PathBuf,
        /// Bulk size, logical blocks.
        bulk_lb: Option<u64>,
    },
    /// `bind NODE VOL ROLE [ID...] [--add|--remove]`.
    Bind {
        /// Proxy or archive.
        node: String,
        /// Volume.
        vol: String,
        /// The role bound.
        role: PeerRole,
        /// Peer ids.
        ids: Vec<String>,
        /// Set, add or remove.
        how: BindHow,
    },
    /// `peers NODE VOL`.
    Peers {
        /// Any daemon.
        node: String,
        /// Volume.
        vol: String,
    },
    /// `bhash ARCHIVE VOL GID`.
    BlockHash {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
    },
    /// `is-synchronizing ARCHIVE VOL`.
    IsSynchronizing {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
    },
    /// `metrics [--out FILE] [--sample S]`.
    Metrics {
        /// Write the text atomically to this file instead of stdout.
        out: Option<std::path::PathBuf>,
        /// How long to listen to the event streams for throughputs.
        sample: Duration,
    },
    /// `wait-restorable ARCHIVE VOL GID`.
    WaitRestorable {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Gid.
        gid: u64,
        /// Wait limit.
        timeout: Duration,
    },
    /// `restore ARCHIVE VOL GID`.
    Restore {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Gid.
        gid: u64,
        /// Wait limit.
        timeout: Duration,
    },
    /// `restored-path ARCHIVE VOL GID`.
    RestoredPath {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Gid.
        gid: u64,
    },
    /// `resize [NODE] VOL SIZE [--zero-clear]`.
    Resize {
        /// Storage, proxy or archive; `None`: the whole cluster, archives first.
        node: Option<String>,
        /// Volume.
        vol: String,
        /// New size, logical blocks.
        size_lb: u64,
        /// Zero-fill the grown part (archive).
        zero_clear: bool,
    },
    /// `del-restored ARCHIVE VOL GID`.
    DelRestored {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Gid.
        gid: u64,
    },
    /// `restorable ARCHIVE VOL [all]`.
    Restorable {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Implicit snapshots too.
        all: bool,
    },
    /// `diff-list ARCHIVE VOL [GIDB [GIDE]]`.
    DiffList {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Lower gid bound.
        gid_b: Option<u64>,
        /// Upper gid bound.
        gid_e: Option<u64>,
    },
    /// `archive-info PROXY ...`.
    ArchiveInfo {
        /// Proxy.
        proxy: String,
        /// Sub-command.
        op: ArchiveInfoOp,
    },
    /// `kick NODE [VOL [ARCHIVE]]`.
    Kick {
        /// Storage or proxy.
        node: String,
        /// Volume.
        vol: Option<String>,
        /// Archive (proxy).
        archive: Option<String>,
    },
    /// `gc-diff ARCHIVE VOL`.
    GcDiff {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
    },
    /// `set-full-scan-bps STORAGE BPS`.
    SetFullScanBps {
        /// Storage.
        node: String,
        /// Bytes per second, 0 = no limit.
        bps: u64,
    },
    /// `get NODE TARGET [ARGS]`.
    Get {
        /// Node.
        node: String,
        /// Target.
        target: GetTarget,
    },
    // walblib procedures.
    /// `go-standby STORAGE VOL`.
    GoStandby {
        /// Storage.
        node: String,
        /// Volume.
        vol: String,
        /// Wait limit of each step.
        timeout: Duration,
    },
    /// `copy-archive-info SRC_PROXY VOL DST_PROXY`.
    CopyArchiveInfo {
        /// The proxy copied from.
        src: String,
        /// Volume.
        vol: String,
        /// The proxy copied to.
        dst: String,
        /// Wait limit of its stop and start.
        timeout: Duration,
    },
    /// `latest-clean ARCHIVE VOL`.
    LatestClean {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
    },
    /// `shutdown NODE [graceful|force]`.
    Shutdown {
        /// Node.
        node: String,
        /// Abort running work.
        force: bool,
    },
}

/// Parses one command from its words (`["restore", "a0", "vol", "8"]`).
pub fn parse_args(words: &[String]) -> Result<ExecCmd, UsageError> {
    let (name, rest) = words
        .split_first()
        .ok_or_else(|| UsageError::plain("no command given (try: help)"))?;
    let spec = spec(name).ok_or_else(|| {
        UsageError::plain(format!(
            "unknown command {name:?} (`walb-console --exec help` lists the commands)"
        ))
    })?;
    let fail = |message: String| UsageError {
        command: Some(spec.name.to_owned()),
        message,
        usage: Some(spec.usage()),
    };
    let mut args = Args::new(spec, rest).map_err(fail)?;
    let cmd = (spec.parse)(&mut args).map_err(fail)?;
    args.finish().map_err(fail)?;
    Ok(cmd)
}

/// Splits a script line into words: whitespace separates, `'...'` and `"..."` quote, `#`
/// at the start of a word begins a comment. `Ok(empty)` for blank and comment lines.
pub fn split_words(line: &str) -> Result<Vec<String>, UsageError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(e) => cur.push(e),
                            None => return Err(UsageError::plain("unterminated quote")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(UsageError::plain("unterminated quote")),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parses a script line; `None` for blank and comment lines.
pub fn parse_line(line: &str) -> Result<Option<ExecCmd>, UsageError> {
    let words = split_words(line)?;
    if words.is_empty() {
        return Ok(None);
    }
    parse_args(&words).map(Some)
}

/// The help text: every command's usage and summary, or one command's.
pub fn help_lines(command: Option<&str>) -> Result<Vec<String>, UsageError> {
    match command {
        None => {
            let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
            let mut out = vec![
                "commands (walb-console --exec COMMAND ARGS..., or one per line with --exec -):"
                    .to_owned(),
            ];
            for c in COMMANDS {
                out.push(format!("  {:width$}  {}", c.name, c.about));
            }
            out.push("`help COMMAND` shows a command's arguments.".to_owned());
            Ok(out)
        }
        Some(name) => {
            let c =
                spec(name).ok_or_else(|| UsageError::plain(format!("unknown command {name:?}")))?;
            let mut out = vec![format!("usage: {}", c.usage()), format!("  {}", c.about)];
            if c.name == "get" {
                out.push("targets:".to_owned());
                for (t, args, roles) in GET_TARGETS {
                    let r: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                    out.push(format!("  {t} {args}  ({})", r.join(", ")));
                }
            }
            Ok(out)
        }
    }
}

impl ExecCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            ExecCmd::Help { .. } => "help",
            ExecCmd::StateAll { .. } => "state-all",
            ExecCmd::Status { .. } => "status",
            ExecCmd::InitStorage { .. } => "init-storage",
            ExecCmd::InitArchive { .. } => "init-archive",
            ExecCmd::Start { .. } => "start",
            ExecCmd::Stop { .. } => "stop",
            ExecCmd::Reset { .. } => "reset",
            ExecCmd::Clear { .. } => "clear",
            ExecCmd::FullBackup { .. } => "full-backup",
            ExecCmd::Snapshot { .. } => "snapshot",
            ExecCmd::WaitRestorable { .. } => "wait-restorable",
            ExecCmd::Restore { .. } => "restore",
            ExecCmd::RestoredPath { .. } => "restored-path",
            ExecCmd::DelRestored { .. } => "del-restored",
            ExecCmd::Resize { .. } => "resize",
            ExecCmd::Restorable { .. } => "restorable",
            ExecCmd::DiffList { .. } => "diff-list",
            ExecCmd::ArchiveInfo { .. } => "archive-info",
            ExecCmd::Kick { .. } => "kick",
            ExecCmd::GcDiff { .. } => "gc-diff",
            ExecCmd::SetFullScanBps { .. } => "set-full-scan-bps",
            ExecCmd::Get { .. } => "get",
            ExecCmd::Shutdown { .. } => "shutdown",
            ExecCmd::HashBackup { .. } => "hash-backup",
            ExecCmd::Merge { .. } => "merge",
            ExecCmd::Apply { .. } => "apply",
            ExecCmd::SetExplicit { explicit: true, .. } => "enable-snapshot",
            ExecCmd::SetExplicit {
                explicit: false, ..
            } => "disable-snapshot",
            ExecCmd::Metrics { .. } => "metrics",
            ExecCmd::Replicate { .. } => "replicate",
            ExecCmd::Synchronizing { start: true, .. } => "start-synchronizing",
            ExecCmd::Synchronizing { start: false, .. } => "stop-synchronizing",
            ExecCmd::IsSynchronizing { .. } => "is-synchronizing",
            ExecCmd::BlockHash { .. } => "bhash",
            ExecCmd::VirtFullScan { .. } => "virt-full-scan",
            ExecCmd::Bind { .. } => "bind",
            ExecCmd::Peers { .. } => "peers",
            ExecCmd::GoStandby { .. } => "go-standby",
            ExecCmd::CopyArchiveInfo { .. } => "copy-archive-info",
            ExecCmd::LatestClean { .. } => "latest-clean",
        }
    }

    /// Whether the command only reads (a viewer certificate, or `--read-only`, may run
    /// it).
    pub fn is_read_only(&self) -> bool {
        match self {
            ExecCmd::Help { .. }
            | ExecCmd::StateAll { .. }
            | ExecCmd::Status { .. }
            | ExecCmd::WaitRestorable { .. }
            | ExecCmd::RestoredPath { .. }
            | ExecCmd::Restorable { .. }
            | ExecCmd::DiffList { .. }
            | ExecCmd::Get { .. }
            | ExecCmd::IsSynchronizing { .. }
            | ExecCmd::BlockHash { .. }
            | ExecCmd::Peers { .. }
            | ExecCmd::LatestClean { .. }
            | ExecCmd::Metrics { .. } => true,
            ExecCmd::ArchiveInfo { op, .. } => {
                matches!(op, ArchiveInfoOp::Get { .. } | ArchiveInfoOp::List { .. })
            }
            _ => false,
        }
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            ExecCmd::Help { .. } | ExecCmd::Metrics { .. } => (None, None),
            ExecCmd::StateAll { vol } => (None, Some(vol)),
            ExecCmd::Status { first, second } => (first.as_deref(), second.as_deref()),
            ExecCmd::InitStorage { node, vol, .. }
            | ExecCmd::InitArchive { node, vol }
            | ExecCmd::Start { node, vol, .. }
            | ExecCmd::Stop { node, vol, .. }
            | ExecCmd::Reset { node, vol, .. }
            | ExecCmd::Clear { node, vol, .. }
            | ExecCmd::FullBackup { node, vol, .. }
            | ExecCmd::HashBackup { node, vol, .. }
            | ExecCmd::Snapshot { node, vol, .. } => (Some(node), Some(vol)),
            ExecCmd::WaitRestorable { archive, vol, .. }
            | ExecCmd::Restore { archive, vol, .. }
            | ExecCmd::RestoredPath { archive, vol, .. }
            | ExecCmd::DelRestored { archive, vol, .. }
            | ExecCmd::Restorable { archive, vol, .. }
            | ExecCmd::DiffList { archive, vol, .. }
            | ExecCmd::Merge { archive, vol, .. }
            | ExecCmd::Apply { archive, vol, .. }
            | ExecCmd::SetExplicit { archive, vol, .. }
            | ExecCmd::Synchronizing { archive, vol, .. }
            | ExecCmd::IsSynchronizing { archive, vol }
            | ExecCmd::BlockHash { archive, vol, .. }
            | ExecCmd::VirtFullScan { archive, vol, .. }
            | ExecCmd::LatestClean { archive, vol } => (Some(archive), Some(vol)),
            ExecCmd::Replicate { src, vol, .. } => (Some(src), Some(vol)),
            ExecCmd::GoStandby { node, vol, .. } => (Some(node), Some(vol)),
            ExecCmd::CopyArchiveInfo { src, vol, .. } => (Some(src), Some(vol)),
            ExecCmd::ArchiveInfo { proxy, op } => (
                Some(proxy),
                Some(match op {
                    ArchiveInfoOp::Set { vol, .. }
                    | ArchiveInfoOp::Get { vol, .. }
                    | ArchiveInfoOp::Delete { vol, .. }
                    | ArchiveInfoOp::List { vol } => vol,
                }),
            ),
            ExecCmd::Kick { node, vol, .. } => (Some(node), vol.as_deref()),
            ExecCmd::Bind { node, vol, .. } | ExecCmd::Peers { node, vol } => {
                (Some(node), Some(vol))
            }
            ExecCmd::Resize { node, vol, .. } => (node.as_deref(), Some(vol)),
            ExecCmd::GcDiff { archive, vol } => (Some(archive), Some(vol)),
            ExecCmd::SetFullScanBps { node, .. } => (Some(node), None),
            ExecCmd::Get { node, .. } => (Some(node), None),
            ExecCmd::Shutdown { node, .. } => (Some(node), None),
        }
    }

    /// The command's `--timeout` (its default when not given), for those that take one.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            ExecCmd::InitStorage { timeout, .. }
            | ExecCmd::Start { timeout, .. }
            | ExecCmd::Stop { timeout, .. }
            | ExecCmd::Reset { timeout, .. }
            | ExecCmd::Clear { timeout, .. }
            | ExecCmd::FullBackup { timeout, .. }
            | ExecCmd::Snapshot { timeout, .. }
            | ExecCmd::HashBackup { timeout, .. }
            | ExecCmd::Merge { timeout, .. }
            | ExecCmd::Apply { timeout, .. }
            | ExecCmd::Replicate { timeout, .. }
            | ExecCmd::Synchronizing { timeout, .. }
            | ExecCmd::WaitRestorable { timeout, .. }
            | ExecCmd::Restore { timeout, .. }
            | ExecCmd::GoStandby { timeout, .. }
            | ExecCmd::CopyArchiveInfo { timeout, .. } => Some(*timeout),
            _ => None,
        }
    }

    /// Whether the command talks to daemons (and so needs a cluster file).
    pub fn needs_cluster(&self) -> bool {
        !matches!(self, ExecCmd::Help { .. })
    }

    /// Runs the command (help runs without a client: see [`help_lines`]).
    pub async fn run(&self, client: &Client) -> Result<Outcome, ClientError> {
        let done = |node: &str, vol: &str, state: String| Outcome::Done {
            node: node.to_owned(),
            vol: Some(vol.to_owned()),
            state: Some(state),
        };
        let cl = client.cluster();
        match self {
            ExecCmd::Help { command } => help_lines(command.as_deref())
                .map(Outcome::Lines)
                .map_err(|e| ClientError::State(e.to_string())),
            ExecCmd::StateAll { vol } => Ok(Outcome::StateAll(state_all(client, vol).await)),
            ExecCmd::Status { first, second } => {
                if let Some(f) = first {
                    if second.is_some() || cl.node(f).is_ok() {
                        cl.node(f)?;
                        return Ok(Outcome::Lines(client.status(f, second.as_deref()).await?));
                    }
                }
                Ok(Outcome::Status(status_all(client, first.as_deref()).await))
            }
            ExecCmd::InitStorage {
                node,
                vol,
                wdev,
                timeout,
            } => {
                let st = ops::init_storage(client, node, vol, wdev, *timeout).await?;
                Ok(done(node, vol, st))
            }
            ExecCmd::InitArchive { node, vol } => {
                let st = ops::init_archive(client, node, vol).await?;
                Ok(done(node, vol, st))
            }
            ExecCmd::Start {
                node,
                vol,
                mode,
                timeout,
            } => {
                let st = ops::start(client, node, vol, *mode, *timeout).await?;
                Ok(done(node, vol, st))
            }
            ExecCmd::Stop {
                node,
                vol,
                mode,
                timeout,
            } => {
                let st = ops::stop(client, node, vol, *mode, *timeout).await?;
                Ok(done(node, vol, st))
            }
            ExecCmd::Reset {
                node,
                vol,
                gid,
                timeout,
            } => {
                let st = ops::reset(client, node, vol, *gid, *timeout).await?;
                Ok(done(node, vol, st))
            }
            ExecCmd::Clear { node, vol, timeout } => {
                let st = ops::clear(client, node, vol, *timeout).await?;
                Ok(done(node, vol, st))
            }
            ExecCmd::FullBackup {
                node,
                vol,
                bulk_lb,
                wait,
                timeout,
            } => {
                let r = ops::full_backup(client, node, vol, *bulk_lb, *wait, *timeout).await?;
                Ok(Outcome::FullBackup {
                    gid: r.gid,
                    restorable: r.restorable,
                })
            }
            ExecCmd::Snapshot {
                node,
                vol,
                archives,
                timeout,
            } => Ok(Outcome::Gid(
                ops::snapshot(client, node, vol, archives, *timeout).await?,
            )),
            ExecCmd::HashBackup {
                node,
                vol,
                bulk_lb,
                wait,
                timeout,
            } => {
                let r = ops::hash_backup(client, node, vol, *bulk_lb, *wait, *timeout).await?;
                Ok(Outcome::FullBackup {
                    gid: r.gid,
                    restorable: r.restorable,
                })
            }
            ExecCmd::Merge {
                archive,
                vol,
                gid_b,
                until,
                timeout,
            } => Ok(Outcome::Diffs(vec![
                ops::merge(client, archive, vol, *gid_b, *until, *timeout).await?,
            ])),
            ExecCmd::Apply {
                archive,
                vol,
                gid,
                timeout,
            } => Ok(Outcome::MetaState(
                ops::apply(client, archive, vol, *gid, *timeout).await?,
            )),
            ExecCmd::SetExplicit {
                archive,
                vol,
                gids,
                explicit,
            } => {
                cl.node_as(archive, &[Role::Archive], self.name())?;
                client
                    .set_snapshots_explicit(archive, vol, gids, *explicit)
                    .await?;
                Ok(Outcome::Done {
                    node: archive.clone(),
                    vol: Some(vol.clone()),
                    state: None,
                })
            }
            ExecCmd::Replicate {
                src,
                vol,
                dst,
                opts,
                sync,
                timeout,
            } => Ok(Outcome::Gid(
                ops::replicate(client, src, vol, dst, *opts, *sync, *timeout).await?,
            )),
            ExecCmd::Synchronizing {
                archive,
                vol,
                start,
                timeout,
            } => {
                if *start {
                    ops::start_synchronizing(client, archive, vol, *timeout).await?;
                } else {
                    ops::stop_synchronizing(client, archive, vol, *timeout).await?;
                }
                Ok(Outcome::Done {
                    node: archive.clone(),
                    vol: Some(vol.clone()),
                    state: None,
                })
            }
            ExecCmd::VirtFullScan {
                archive,
                vol,
                gid,
                out,
                bulk_lb,
            } => {
                cl.node_as(archive, &[Role::Archive], "virt-full-scan")?;
                let s =
                    crate::scan::virt_full_scan(client, archive, vol, *gid, *bulk_lb, out).await?;
                Ok(Outcome::Text(format!(
                    "{} bytes ({} of data) written to {}",
                    s.bytes,
                    s.data_bytes,
                    out.display()
                )))
            }
            ExecCmd::Bind {
                node,
                vol,
                role,
                ids,
                how,
            } => {
                cl.node_as(node, &[Role::Proxy, Role::Archive], "bind")?;
                let p = client.bind(node, vol, *role, ids, *how).await?;
                Ok(Outcome::Lines(peers_lines(&p)))
            }
            ExecCmd::Peers { node, vol } => {
                let p = client.peers(node, vol).await?;
                Ok(Outcome::Lines(peers_lines(&p)))
            }
            ExecCmd::BlockHash { archive, vol, gid } => {
                cl.node_as(archive, &[Role::Archive], "bhash")?;
                let h = client.block_hash(archive, vol, *gid).await?;
                Ok(Outcome::Text(
                    h.iter().map(|b| format!("{b:02x}")).collect(),
                ))
            }
            ExecCmd::IsSynchronizing { archive, vol } => Ok(Outcome::Bool(
                ops::is_synchronizing(client, archive, vol).await?,
            )),
            ExecCmd::Metrics { out, sample } => {
                let model = crate::model::load_snapshot(client, *sample).await;
                let text = crate::metrics::render(&model);
                match out {
                    None => Ok(Outcome::Text(text.trim_end().to_owned())),
                    Some(path) => {
                        crate::metrics::write_atomically(path, &text).map_err(|e| {
                            ClientError::State(format!("writing {}: {e}", path.display()))
                        })?;
                        Ok(Outcome::Done {
                            node: String::new(),
                            vol: None,
                            state: None,
                        })
                    }
                }
            }
            ExecCmd::WaitRestorable {
                archive,
                vol,
                gid,
                timeout,
            } => {
                ops::wait_for_restorable(client, archive, vol, *gid, *timeout).await?;
                Ok(Outcome::Gid(*gid))
            }
            ExecCmd::Restore {
                archive,
                vol,
                gid,
                timeout,
            } => {
                let path = ops::restore(client, archive, vol, *gid, *timeout).await?;
                Ok(Outcome::Restored { gid: *gid, path })
            }
            ExecCmd::RestoredPath { archive, vol, gid } => Ok(Outcome::Text(
                ops::restored_path(client, archive, vol, *gid).await?,
            )),
            ExecCmd::Resize {
                node: Some(node),
                vol,
                size_lb,
                zero_clear,
            } => {
                cl.node(node)?;
                client.resize(node, vol, *size_lb, *zero_clear).await?;
                Ok(Outcome::Done {
                    node: node.clone(),
                    vol: Some(vol.clone()),
                    state: None,
                })
            }
            ExecCmd::Resize {
                node: None,
                vol,
                size_lb,
                zero_clear,
            } => Ok(Outcome::Lines(
                procs::resize_cluster(client, vol, *size_lb, *zero_clear).await?,
            )),
            ExecCmd::DelRestored { archive, vol, gid } => {
                cl.node_as(archive, &[Role::Archive], "del-restored")?;
                client.del_restored(archive, vol, *gid).await?;
                Ok(Outcome::Done {
                    node: archive.clone(),
                    vol: Some(vol.clone()),
                    state: None,
                })
            }
            ExecCmd::Restorable { archive, vol, all } => {
                cl.node_as(archive, &[Role::Archive], "restorable")?;
                Ok(Outcome::Restorable(
                    client.restorable(archive, vol, *all).await?,
                ))
            }
            ExecCmd::DiffList {
                archive,
                vol,
                gid_b,
                gid_e,
            } => {
                cl.node_as(archive, &[Role::Archive], "diff-list")?;
                Ok(Outcome::Diffs(
                    client.diffs(archive, vol, *gid_b, *gid_e, None).await?,
                ))
            }
            ExecCmd::ArchiveInfo { proxy, op } => {
                cl.node_as(proxy, &[Role::Proxy], "archive-info")?;
                run_archive_info(client, proxy, op).await
            }
            ExecCmd::Kick { node, vol, archive } => {
                cl.node_as(node, &[Role::Storage, Role::Proxy], "kick")?;
                client
                    .kick(node, vol.as_deref(), archive.as_deref())
                    .await?;
                Ok(Outcome::Done {
                    node: node.clone(),
                    vol: vol.clone(),
                    state: None,
                })
            }
            ExecCmd::GcDiff { archive, vol } => {
                cl.node_as(archive, &[Role::Archive], "gc-diff")?;
                client.gc_diff(archive, vol).await?;
                Ok(Outcome::Done {
                    node: archive.clone(),
                    vol: Some(vol.clone()),
                    state: None,
                })
            }
            ExecCmd::SetFullScanBps { node, bps } => {
                cl.node_as(node, &[Role::Storage], "set-full-scan-bps")?;
                client.set_full_scan_bps(node, *bps).await?;
                Ok(Outcome::Done {
                    node: node.clone(),
                    vol: None,
                    state: None,
                })
            }
            ExecCmd::Get { node, target } => {
                let n = cl.node_as(node, target.roles(), &format!("get {}", target.name()))?;
                run_get(client, node, n.role, target).await
            }
            // walblib procedures.
            ExecCmd::GoStandby { node, vol, timeout } => {
                let st = procs::go_standby(client, node, vol, *timeout).await?;
                Ok(done(node, vol, st))
            }
            ExecCmd::CopyArchiveInfo {
                src,
                vol,
                dst,
                timeout,
            } => {
                let r = procs::copy_archive_info(client, src, vol, dst, *timeout).await?;
                Ok(Outcome::Lines(copy_lines(src, dst, vol, &r)))
            }
            ExecCmd::LatestClean { archive, vol } => Ok(Outcome::Gid(
                procs::latest_clean(client, archive, vol).await?,
            )),
            ExecCmd::Shutdown { node, force } => {
                cl.node(node)?;
                client.shutdown(node, *force).await?;
                Ok(Outcome::Done {
                    node: node.clone(),
                    vol: None,
                    state: None,
                })
            }
        }
    }
}

fn row_error(e: ClientError) -> RowError {
    if e.is_unreachable() {
        match e {
            ClientError::Unreachable { message, .. } | ClientError::Resolve { message, .. } => {
                RowError::Unreachable(message)
            }
            other => RowError::Unreachable(other.to_string()),
        }
    } else {
        RowError::Failed(e.to_string())
    }
}

/// `state-all`: every node's state of `vol`, asked at once.
pub async fn state_all(client: &Client, vol: &str) -> Vec<StateRow> {
    let mut set = JoinSet::new();
    for (i, n) in client.cluster().nodes.iter().enumerate() {
        let (c, name, vol) = (client.clone(), n.name.clone(), vol.to_owned());
        set.spawn(async move { (i, c.state(&name, &vol).await) });
    }
    let mut results: Vec<Option<Result<String, ClientError>>> =
        client.cluster().nodes.iter().map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
    }
    client
        .cluster()
        .nodes
        .iter()
        .zip(results)
        .map(|(n, r)| StateRow {
            node: n.name.clone(),
            addr: n.addr.clone(),
            role: n.role,
            state: match r {
                Some(Ok(s)) => Ok(s),
                Some(Err(e)) => Err(row_error(e)),
                None => Err(RowError::Failed("the query task failed".into())),
            },
        })
        .collect()
}

/// `status` of every node (of one volume).
pub async fn status_all(client: &Client, vol: Option<&str>) -> Vec<StatusBlock> {
    let mut set = JoinSet::new();
    for (i, n) in client.cluster().nodes.iter().enumerate() {
        let (c, name, vol) = (client.clone(), n.name.clone(), vol.map(str::to_owned));
        set.spawn(async move { (i, c.status(&name, vol.as_deref()).await) });
    }
    let mut results: Vec<Option<Result<Vec<String>, ClientError>>> =
        client.cluster().nodes.iter().map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, r)) = r {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
    }
    client
        .cluster()
        .nodes
        .iter()
        .zip(results)
        .map(|(n, r)| StatusBlock {
            node: n.name.clone(),
            addr: n.addr.clone(),
            role: n.role,
            lines: match r {
                Some(Ok(l)) => Ok(l),
                Some(Err(e)) => Err(row_error(e)),
                None => Err(RowError::Failed("the query task failed".into())),
            },
        })
        .collect()
}

async fn run_archive_info(
    client: &Client,
    proxy: &str,
    op: &ArchiveInfoOp,
) -> Result<Outcome, ClientError> {
    match op {
        ArchiveInfoOp::Set {
            vol,
            archive,
            addr,
            compress,
            delay_s,
            update,
        } => {
            let addr = match addr {
                Some(a) => a.clone(),
                None => client
                    .cluster()
                    .node_as(archive, &[Role::Archive], "archive-info")?
                    .addr
                    .clone(),
            };
            let dest = ArchiveDest {
                addr,
                compress: compress.unwrap_or_else(ops::default_compress),
                delay_s: delay_s.unwrap_or(0),
            };
            client
                .archive_info_set(proxy, vol, archive, dest, *update)
                .await?;
            Ok(Outcome::Done {
                node: proxy.to_owned(),
                vol: Some(vol.clone()),
                state: None,
            })
        }
        ArchiveInfoOp::Get { vol, archive } => Ok(Outcome::Text(
            client.archive_info_get(proxy, vol, archive).await?,
        )),
        ArchiveInfoOp::Delete { vol, archive } => {
            client.archive_info_delete(proxy, vol, archive).await?;
            Ok(Outcome::Done {
                node: proxy.to_owned(),
                vol: Some(vol.clone()),
                state: None,
            })
        }
        ArchiveInfoOp::List { vol } => {
            Ok(Outcome::Lines(client.archive_info_list(proxy, vol).await?))
        }
    }
}

async fn run_get(
    client: &Client,
    node: &str,
    role: Role,
    target: &GetTarget,
) -> Result<Outcome, ClientError> {
    use GetTarget as G;
    let bad = |m: String| ClientError::State(format!("get {}: {m}", target.name()));
    Ok(match target {
        G::State(vol) => Outcome::Text(client.state(node, vol).await?),
        G::HostType => Outcome::Text(client.host_type(node).await?),
        G::Vol => Outcome::Lines(client.vols(node).await?),
        G::Pid => Outcome::Number(client.pid(node).await?),
        G::Version => {
            let (software, protocol) = client.version(node).await?;
            Outcome::Version { software, protocol }
        }
        G::LatestSnap(vol) => Outcome::LatestSnap {
            role,
            snaps: client.latest_snap(node, vol.as_deref()).await?,
        },
        G::LogUsage(vol) => Outcome::Lines(client.log_usage(node, vol.as_deref()).await?),
        G::IsOverflow(vol) => Outcome::Bool(client.is_overflow(node, vol).await?),
        G::Uuid(vol) => Outcome::Uuid(client.uuid(node, vol).await?),
        G::IsWdiffSendError(vol, a) => {
            Outcome::Bool(client.is_wdiff_send_error(node, vol, a).await?)
        }
        G::Diff(vol, rest) => {
            if role == Role::Proxy {
                if rest.len() > 1 {
                    return Err(bad("on a proxy it takes VOL [ARCHIVE]".into()));
                }
                Outcome::Diffs(
                    client
                        .diffs(node, vol, None, None, rest.first().map(String::as_str))
                        .await?,
                )
            } else {
                let nums = rest
                    .iter()
                    .map(|s| number(s, "GID"))
                    .collect::<Result<Vec<u64>, String>>()
                    .map_err(bad)?;
                Outcome::Diffs(
                    client
                        .diffs(node, vol, nums.first().copied(), nums.get(1).copied(), None)
                        .await?,
                )
            }
        }
        G::ApplicableDiff(vol, g) => Outcome::Diffs(client.applicable_diff(node, vol, *g).await?),
        G::Restorable(vol, all) => Outcome::Restorable(client.restorable(node, vol, *all).await?),
        G::Restored(vol) => Outcome::Lines(
            client
                .restored(node, vol)
                .await?
                .into_iter()
                .map(|(g, p)| format!("{g} {p}"))
                .collect(),
        ),
        G::Base(vol) => Outcome::MetaState(client.base(node, vol).await?),
        G::VolSize(vol) => Outcome::Number(client.vol_size(node, vol).await?),
        G::Progress(vol) => Outcome::Number(client.progress(node, vol).await?),
        G::ExistsBaseImage(vol) => Outcome::Bool(client.exists_base_image(node, vol).await?),
        G::NumAction(vol, action) => Outcome::Number(client.num_action(node, vol, action).await?),
        G::ArchiveUuid(vol) => Outcome::Uuid(client.archive_uuid(node, vol).await?),
        G::MetaState(vol, applying, gid) => {
            Outcome::MetaState(client.meta_state(node, vol, *applying, *gid).await?)
        }
        G::TsDelta => Outcome::Lines(client.ts_delta(node).await?),
        G::NumDiff(vol, b, e) => Outcome::Number(client.diff_stats(node, vol, *b, *e).await?.0),
        G::TotalDiffSize(vol, b, e) => {
            Outcome::Number(client.diff_stats(node, vol, *b, *e).await?.1)
        }
        G::ExistsDiff(vol, g) => Outcome::Bool(client.exists_diff(node, vol, *g).await?),
        G::AllActions => Outcome::Lines(client.all_actions(node).await?),
        G::BaseAll => Outcome::Lines(client.base_all(node).await?),
        G::MetaSnap(vol, gid) => Outcome::MetaState(client.meta_snap(node, vol, *gid).await?),
    })
}

/// `copy-archive-info`'s lines: `archive NAME HOST:PORT CODEC:LEVEL:NCPU DELAY` per
/// archive, then `storage ID` (or what to bind when the source proxy binds none).
pub fn copy_lines(src: &str, dst: &str, vol: &str, r: &procs::CopyDone) -> Vec<String> {
    let mut out: Vec<String> = r
        .archives
        .iter()
        .map(|(a, info)| format!("archive {a} {info}"))
        .collect();
    out.push(match &r.storage {
        Some(s) => format!("storage {s}"),
        None => format!(
            "storage - ({src} binds none for {vol}: `bind {dst} {vol} storage ID` lets a storage ship to {dst})"
        ),
    });
    out
}

/// `peers`'s lines: `storage ID`, `proxies ID...`, `archives ID...` (`-` for none).
pub fn peers_lines(p: &VolPeers) -> Vec<String> {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(" ")
        }
    };
    vec![
        format!("storage {}", p.storage.as_deref().unwrap_or("-")),
        format!("proxies {}", list(&p.proxies)),
        format!("archives {}", list(&p.archives)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    fn parse(s: &str) -> Result<ExecCmd, UsageError> {
        parse_args(&words(s))
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn resize_sizes_take_suffixes_and_whole_blocks() {
        assert_eq!(size_lb("36m"), Ok(36 << 11));
        assert_eq!(size_lb("4K"), Ok(8));
        assert_eq!(size_lb("1024"), Ok(2));
        assert!(size_lb("1000").unwrap_err().contains("multiple of 512"));
        assert!(size_lb("0").is_err());
        assert!(size_lb("12q").unwrap_err().contains("suffix"));
        assert!(size_lb("99999999999t").is_err(), "overflow");
        let c = parse_line("resize a0 vol 1g --zero-clear")
            .unwrap()
            .unwrap();
        assert!(matches!(
            c,
            ExecCmd::Resize {
                size_lb: 2_097_152,
                zero_clear: true,
                ..
            }
        ));
    }

    #[test]
    fn every_command_parses_its_documented_form() {
        let ok = [
            "help",
            "help restore",
            "state-all vol",
            "status",
            "status s0",
            "status s0 vol",
            "init-storage s0 vol /dev/walb/walb-tutorial-device",
            "init-archive a0 vol",
            "start s0 vol",
            "start s0 vol target --timeout 5",
            "start s0 vol standby",
            "stop s0 vol",
            "stop p0 vol empty",
            "stop s0 vol force --timeout=1.5",
            "reset s0 vol",
            "reset s0 vol 100",
            "clear a0 vol",
            "full-backup s0 vol",
            "full-backup s0 vol --no-wait --bulk 512 --timeout 60",
            "snapshot s0 vol",
            "snapshot s0 vol a0 a1",
            "wait-restorable a0 vol 8 --timeout 30",
            "restore a0 vol 8",
            "restored-path a0 vol 8",
            "del-restored a0 vol 8",
            "restorable a0 vol",
            "restorable a0 vol all",
            "diff-list a0 vol",
            "diff-list a0 vol 2 8",
            "archive-info p0 add vol a0",
            "archive-info p0 add vol a0 localhost:10200 snappy:0:1 3",
            "archive-info p0 update vol a0 zstd:3:2",
            "archive-info p0 get vol a0",
            "archive-info p0 delete vol a0",
            "archive-info p0 list vol",
            "kick s0",
            "kick p0 vol a0",
            "get s0 state vol",
            "get s0 host-type",
            "get s0 vol",
            "get s0 pid",
            "get s0 version",
            "get s0 latest-snap",
            "get s0 latest-snap vol",
            "get s0 log-usage vol",
            "get s0 is-overflow vol",
            "get s0 uuid vol",
            "get p0 is-wdiff-send-error vol a0",
            "get a0 diff vol 0 10",
            "get p0 diff vol a0",
            "get a0 applicable-diff vol 10",
            "get a0 restorable vol all",
            "get a0 restored vol",
            "get a0 base vol",
            "get a0 vol-size vol",
            "get a0 progress vol",
            "get a0 exists-base-image vol",
            "get a0 num-action vol Restore",
            "get a0 archive-uuid vol",
            "get s0 meta-state vol",
            "get a0 meta-state vol 1 20",
            "shutdown s0",
            "shutdown s0 force",
            "hash-backup s0 vol --bulk 64 --timeout 9",
            "merge a0 vol 2 7",
            "apply a0 vol 8",
            "resize s0 vol 64m",
            "resize a0 vol 1g --zero-clear",
            "disable-snapshot a0 vol 3 4",
            "enable-snapshot a0 vol 3",
            "metrics",
            "metrics --out /tmp/walb.prom --sample 0.5",
            "replicate a0 vol a1",
            "replicate a0 vol a1 --gid 8 --resync --dont-merge --sync --timeout 60",
            "start-synchronizing a1 vol",
            "stop-synchronizing a1 vol --timeout 30",
            "is-synchronizing a1 vol",
            "bhash a0 vol 8",
            "virt-full-scan a0 vol 8 /tmp/img",
            "virt-full-scan a0 vol 8 /dev/loop9 --bulk 4096",
            "get a0 ts-delta",
            "get s0 ts-delta",
            "get a0 num-diff vol",
            "get a0 total-diff-size vol 2 8",
            "get a0 exists-diff vol 2 2 3 3",
            "get a0 all-actions",
            "get a0 base-all",
            "get a0 meta-snap vol 8",
            "gc-diff a0 vol",
            "set-full-scan-bps s0 10m",
            "hash-backup s0 vol --no-wait",
            "bind a0 vol storage s0",
            "bind a0 vol proxy p0 p1 --add",
            "bind p0 vol storage --remove s1",
            "peers a0 vol",
            "go-standby s0 vol --timeout 30",
            "copy-archive-info p0 vol p2",
            "resize vol 36m --zero-clear",
            "merge a0 vol 2 --max-mb 4",
            "replicate a0 vol a1 --compress zstd:3 --max-merge-mb 64 --bulk 1024",
            "latest-clean a0 vol",
        ];
        for line in ok {
            let c = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(c.name(), line.split_whitespace().next().unwrap(), "{line}");
        }
        // Every command of the table is exercised above.
        for spec in COMMANDS {
            assert!(
                ok.iter()
                    .any(|l| l.split_whitespace().next() == Some(spec.name)),
                "{} untested",
                spec.name
            );
        }
        for (t, _, _) in GET_TARGETS {
            assert!(
                ok.iter().any(|l| l.split_whitespace().nth(2) == Some(*t)),
                "get {t} untested"
            );
        }
    }

    #[test]
    fn status_targets_and_small_commands_parse_their_values() {
        assert_eq!(
            parse("get a0 exists-diff vol 2 2 3 4").unwrap(),
            ExecCmd::Get {
                node: "a0".into(),
                target: GetTarget::ExistsDiff("vol".into(), [2, 2, 3, 4]),
            }
        );
        assert!(err("get a0 exists-diff vol 2 2 3").contains("G3"));
        assert_eq!(
            parse("get a0 num-diff vol 5").unwrap(),
            ExecCmd::Get {
                node: "a0".into(),
                target: GetTarget::NumDiff("vol".into(), Some(5), None),
            }
        );
        assert!(err("get a0 total-diff-size vol x").contains("GIDB"));
        assert!(err("get a0 all-actions vol").contains("unexpected"));
        assert_eq!(
            parse("get a0 meta-snap vol").unwrap(),
            ExecCmd::Get {
                node: "a0".into(),
                target: GetTarget::MetaSnap("vol".into(), None),
            }
        );
        assert_eq!(
            parse("gc-diff a0 vol").unwrap(),
            ExecCmd::GcDiff {
                archive: "a0".into(),
                vol: "vol".into(),
            }
        );
        assert!(err("gc-diff a0").contains("VOL"));
        for (arg, bps) in [
            ("0", 0),
            ("1000", 1000),
            ("4k", 4096),
            ("10M", 10 << 20),
            ("1g", 1 << 30),
        ] {
            assert_eq!(
                parse(&format!("set-full-scan-bps s0 {arg}")).unwrap(),
                ExecCmd::SetFullScanBps {
                    node: "s0".into(),
                    bps,
                },
                "{arg}"
            );
        }
        assert!(err("set-full-scan-bps s0 12q").contains("suffix"));
        assert!(err("set-full-scan-bps s0 99999999999g").contains("too large"));
        assert!(err("set-full-scan-bps s0").contains("BPS"));
        assert!(matches!(
            parse("hash-backup s0 vol --no-wait").unwrap(),
            ExecCmd::HashBackup { wait: false, .. }
        ));
        assert!(matches!(
            parse("hash-backup s0 vol").unwrap(),
            ExecCmd::HashBackup { wait: true, .. }
        ));
        // Storages answer ts-delta now; meta-snap and the diff counts are the archive's.
        let roles = |t: &str| GET_TARGETS.iter().find(|g| g.0 == t).unwrap().2;
        assert_eq!(roles("ts-delta"), &[Role::Storage, Role::Archive]);
        assert_eq!(roles("num-diff"), &[Role::Archive]);
        let help = help_lines(Some("get")).unwrap().join("\n");
        for t in [
            "num-diff VOL [GIDB [GIDE]]",
            "exists-diff VOL G0 G1 G2 G3",
            "base-all",
            "meta-snap VOL [GID]",
        ] {
            assert!(help.contains(t), "{t} not in {help}");
        }
        let help = help_lines(Some("set-full-scan-bps")).unwrap().join("\n");
        assert!(
            help.contains("usage: set-full-scan-bps STORAGE BPS"),
            "{help}"
        );
    }

    #[test]
    fn parsed_values() {
        assert_eq!(
            parse("stop s0 vol force --timeout=1.5").unwrap(),
            ExecCmd::Stop {
                node: "s0".into(),
                vol: "vol".into(),
                mode: StopMode::Force,
                timeout: Duration::from_millis(1500),
            }
        );
        assert_eq!(
            parse("full-backup s0 vol --no-wait --bulk 512").unwrap(),
            ExecCmd::FullBackup {
                node: "s0".into(),
                vol: "vol".into(),
                bulk_lb: Some(512),
                wait: false,
                timeout: TIMEOUT_LONG,
            }
        );
        assert_eq!(
            parse("archive-info p0 add vol a0 3 lzma:9:2 host:1").unwrap(),
            ExecCmd::ArchiveInfo {
                proxy: "p0".into(),
                op: ArchiveInfoOp::Set {
                    vol: "vol".into(),
                    archive: "a0".into(),
                    addr: Some("host:1".into()),
                    compress: Some(CompressOpt {
                        codec: Codec::Lzma,
                        level: 9,
                        ncpu: 2
                    }),
                    delay_s: Some(3),
                    update: false,
                }
            }
        );
        assert_eq!(
            parse("snapshot s0 vol a0 a1").unwrap(),
            ExecCmd::Snapshot {
                node: "s0".into(),
                vol: "vol".into(),
                archives: vec!["a0".into(), "a1".into()],
                timeout: TIMEOUT_LONG,
            }
        );
        assert_eq!(
            parse("replicate a0 vol a1 --gid 8 --sync").unwrap(),
            ExecCmd::Replicate {
                src: "a0".into(),
                vol: "vol".into(),
                dst: "a1".into(),
                opts: ops::ReplicateOpts {
                    gid: Some(8),
                    do_resync: false,
                    dont_merge: false,
                    bulk_lb: None,
                    compress: None,
                    merge_size_max: None,
                },
                sync: true,
                timeout: TIMEOUT_LONG,
            }
        );
        assert_eq!(
            parse("stop-synchronizing a1 vol").unwrap(),
            ExecCmd::Synchronizing {
                archive: "a1".into(),
                vol: "vol".into(),
                start: false,
                timeout: TIMEOUT_SHORT,
            }
        );
        assert!(parse("is-synchronizing a1 vol").unwrap().is_read_only());
        assert!(!parse("replicate a0 vol a1").unwrap().is_read_only());
        assert_eq!(
            parse("get a0 meta-state vol 1 20").unwrap(),
            ExecCmd::Get {
                node: "a0".into(),
                target: GetTarget::MetaState("vol".into(), true, Some(20)),
            }
        );
    }

    #[test]
    fn procedure_commands_parse_their_forms() {
        assert_eq!(
            parse("resize vol 36m").unwrap(),
            ExecCmd::Resize {
                node: None,
                vol: "vol".into(),
                size_lb: 36 << 11,
                zero_clear: false,
            }
        );
        assert!(matches!(
            parse("resize a0 vol 36m").unwrap(),
            ExecCmd::Resize { node: Some(n), .. } if n == "a0"
        ));
        assert!(err("resize vol").contains("missing SIZE"));
        assert!(err("resize a0 vol 36m 1").contains("unexpected argument"));
        assert!(err("resize vol 1000").contains("multiple of 512"));
        assert!(matches!(
            parse("merge a0 vol 2 --max-mb 4").unwrap(),
            ExecCmd::Merge {
                gid_b: 2,
                until: MergeUntil::SizeMib(4),
                ..
            }
        ));
        assert!(matches!(
            parse("merge a0 vol 2 7").unwrap(),
            ExecCmd::Merge {
                until: MergeUntil::Gid(7),
                ..
            }
        ));
        assert!(err("merge a0 vol 2").contains("missing GIDE (or --max-mb N)"));
        assert!(err("merge a0 vol 2 7 --max-mb 4").contains("not both"));
        assert!(err("merge a0 vol 2 --max-mb 0").contains("positive"));
        let ExecCmd::Replicate { opts, .. } =
            parse("replicate a0 vol a1 --compress zstd:3 --max-merge-mb 64 --bulk 1024").unwrap()
        else {
            panic!("not a replicate");
        };
        assert_eq!(
            opts.compress,
            Some(CompressOpt {
                codec: Codec::Zstd,
                level: 3,
                ncpu: 1
            })
        );
        assert_eq!(opts.merge_size_max, Some(64 << 20));
        assert_eq!(opts.bulk_lb, Some(1024));
        assert!(err("replicate a0 vol a1 --compress snappy").contains("zstd[:LEVEL] or none"));
        assert!(err("replicate a0 vol a1 --max-merge-mb 0").contains("positive"));
        assert!(err("replicate a0 vol a1 --max-merge-mb 99999999999999").contains("too large"));
        assert_eq!(
            parse("go-standby s0 vol").unwrap(),
            ExecCmd::GoStandby {
                node: "s0".into(),
                vol: "vol".into(),
                timeout: TIMEOUT_SHORT,
            }
        );
        assert!(err("go-standby s0").contains("missing VOL"));
        assert!(err("copy-archive-info p0 vol").contains("missing DST_PROXY"));
        assert!(parse("latest-clean a0 vol").unwrap().is_read_only());
        assert!(!parse("go-standby s0 vol").unwrap().is_read_only());
        let help = help_lines(Some("latest-clean")).unwrap().join("\n");
        assert!(help.contains("restorable ARCHIVE VOL all"), "{help}");
    }

    #[test]
    fn copy_archive_info_says_what_to_bind() {
        let r = procs::CopyDone {
            archives: vec![("a0".into(), "localhost:1 snappy:0:1 0".into())],
            storage: None,
        };
        let l = copy_lines("p0", "p2", "vol", &r);
        assert_eq!(l[0], "archive a0 localhost:1 snappy:0:1 0");
        assert!(l[1].contains("bind p2 vol storage ID"), "{}", l[1]);
        let r = procs::CopyDone {
            storage: Some("s0".into()),
            ..r
        };
        assert_eq!(copy_lines("p0", "p2", "vol", &r)[1], "storage s0");
    }

    #[test]
    fn mistakes_name_the_command_and_show_usage() {
        assert_eq!(
            err("restore a0 vol"),
            "restore: missing GID (usage: restore ARCHIVE VOL GID [--timeout S])"
        );
        assert!(err("restore a0 vol x").contains("GID must be a number, got \"x\""));
        assert!(err("restore a0 vol 8 9").contains("unexpected argument \"9\""));
        assert!(err("frobnicate x").contains("unknown command \"frobnicate\""));
        assert!(err("state-all vol --json").contains("unknown option --json"));
        assert!(err("state-all vol --json").contains("before --exec"));
        assert!(err("stop s0 vol nicely").contains("unknown stop mode \"nicely\""));
        assert!(err("start s0 vol up").contains("unknown start mode"));
        assert!(err("restore a0 vol 8 --timeout").contains("--timeout needs a value S"));
        assert!(err("restore a0 vol 8 --timeout soon").contains("--timeout wants seconds"));
        assert!(err("full-backup s0 vol --no-wait=1").contains("takes no value"));
        assert!(err("archive-info p0 add vol").contains("missing ARCHIVE"));
        assert!(err("archive-info p0 add vol a0 bogus").contains("is none of HOST:PORT"));
        assert!(err("archive-info p0 add vol a0 1 2").contains("two delays"));
        assert!(err("archive-info p0 rename vol").contains("unknown archive-info sub-command"));
        assert!(err("get s0 nonsense").contains("unknown get target \"nonsense\""));
        assert!(err("get s0 state").contains("missing VOL"));
        assert!(err("get a0 meta-state vol 2").contains("wants 0 or 1"));
        assert!(err("shutdown s0 now").contains("unknown shutdown mode"));
        assert!(err("kick p0 vol a0 extra").contains("unexpected argument"));
        assert!(err("replicate a0 vol").contains("missing DST"));
        assert!(err("replicate a0 vol a1 --gid x").contains("--gid must be a number"));
        assert!(err("replicate a0 vol a1 --sync=1").contains("takes no value"));
        assert_eq!(
            parse_args(&[]).unwrap_err().to_string(),
            "no command given (try: help)"
        );
    }

    #[test]
    fn script_lines_split_with_quotes_and_comments() {
        assert_eq!(words("  # a comment"), Vec::<String>::new());
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(
            words("init-storage s0 vol '/dev/walb/my dev' # tail"),
            ["init-storage", "s0", "vol", "/dev/walb/my dev"]
        );
        assert_eq!(words(r#"a "b \" c" d#e"#), ["a", "b \" c", "d#e"]);
        assert!(split_words("a 'b").is_err());
        assert_eq!(parse_line("# only").unwrap(), None);
        assert!(parse_line("restore a0").is_err());
    }

    #[test]
    fn compress_options() {
        assert_eq!(
            parse_compress("snappy:0:1"),
            Some(CompressOpt {
                codec: Codec::Snappy,
                level: 0,
                ncpu: 1
            })
        );
        assert_eq!(parse_compress("zstd").map(|c| c.codec), Some(Codec::Zstd));
        assert_eq!(parse_compress("zstd:x"), None);
        assert_eq!(parse_compress("brotli:1:1"), None);
        assert_eq!(parse_compress("zstd:1:1:1"), None);
    }

    #[test]
    fn help_lists_every_command_and_get_targets() {
        let all = help_lines(None).unwrap().join("\n");
        for c in COMMANDS {
            assert!(all.contains(c.name), "{}", c.name);
        }
        let get = help_lines(Some("get")).unwrap().join("\n");
        assert!(
            get.contains("is-wdiff-send-error VOL ARCHIVE  (proxy)"),
            "{get}"
        );
        assert!(help_lines(Some("nope")).is_err());
    }
}
