//! Backups, snapshots and restores: `full-backup`, `snapshot`, `hash-backup`,
//! `wait-restorable`, `restore`, `restored-path`, `del-restored`, `resize`, `restorable`,
//! `diff-list`.

use std::time::Duration;

use walb_wire::Role;

use super::spec::*;
use super::ExecCmd;
use crate::client::{Client, ClientError};
use crate::exec::output::Outcome;
use crate::ops::{self, TIMEOUT_LONG};
use crate::procs;

/// A parsed command of this family (a backup, snapshot or restore).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupCmd {
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
    /// `del-restored ARCHIVE VOL GID`.
    DelRestored {
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
}

/// This family's rows of the command table, in help order.
pub(super) const ROWS: &[CommandSpec] = &[
    CommandSpec {
        name: "full-backup",
        args: "NODE VOL",
        about: "prepare storage, archive and proxies, full backup, wait for Target; print the gid it is clean at and wait until restorable",
        options: &[OPT_BULK, OPT_NO_WAIT, OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::FullBackup {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                bulk_lb: a.value_num("--bulk")?,
                wait: !a.flag("--no-wait"),
                timeout: a.timeout(TIMEOUT_LONG)?,
            }))
        },
    },
    CommandSpec {
        name: "snapshot",
        args: "NODE VOL [ARCHIVE...]",
        about: "take a snapshot, print its gid; with archives, wait until it is restorable there",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::Snapshot {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                archives: a.rest(),
                timeout: a.timeout(TIMEOUT_LONG)?,
            }))
        },
    },
    CommandSpec {
        name: "hash-backup",
        args: "NODE VOL",
        about: "hash backup of a Stopped storage volume to its archive (only the differences travel); wait for Target, print the gid it is clean at and wait until restorable",
        options: &[OPT_BULK, OPT_NO_WAIT, OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::HashBackup {
                node: a.req("NODE")?,
                vol: a.req("VOL")?,
                bulk_lb: a.value_num("--bulk")?,
                wait: !a.flag("--no-wait"),
                timeout: a.timeout(TIMEOUT_LONG)?,
            }))
        },
    },
    CommandSpec {
        name: "wait-restorable",
        args: "ARCHIVE VOL GID",
        about: "wait until GID is restorable at the archive",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::WaitRestorable {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                timeout: a.timeout(TIMEOUT_LONG)?,
            }))
        },
    },
    CommandSpec {
        name: "restore",
        args: "ARCHIVE VOL GID",
        about: "restore snapshot GID and wait until the image exists; print its path",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::Restore {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                timeout: a.timeout(TIMEOUT_LONG)?,
            }))
        },
    },
    CommandSpec {
        name: "restored-path",
        args: "ARCHIVE VOL GID",
        about: "the path of a restored image",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::RestoredPath {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
            }))
        },
    },
    CommandSpec {
        name: "del-restored",
        args: "ARCHIVE VOL GID",
        about: "delete a restored image",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::DelRestored {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
            }))
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
            Ok(ExecCmd::Backup(BackupCmd::Resize {
                node,
                vol,
                size_lb: size_lb(&size)?,
                zero_clear: a.flag("--zero-clear"),
            }))
        },
    },
    CommandSpec {
        name: "restorable",
        args: "ARCHIVE VOL [all]",
        about: "restorable snapshots: gid, time (UTC), explicit 0/1",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::Restorable {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                all: a.keyword("all")?,
            }))
        },
    },
    CommandSpec {
        name: "diff-list",
        args: "ARCHIVE VOL [GIDB [GIDE]]",
        about: "the archive's diffs: |B|-->|E| flags(M/-,C/-) time(UTC) size",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Backup(BackupCmd::DiffList {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid_b: a.opt_num("GIDB")?,
                gid_e: a.opt_num("GIDE")?,
            }))
        },
    },
];

impl BackupCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FullBackup { .. } => "full-backup",
            Self::Snapshot { .. } => "snapshot",
            Self::HashBackup { .. } => "hash-backup",
            Self::WaitRestorable { .. } => "wait-restorable",
            Self::Restore { .. } => "restore",
            Self::RestoredPath { .. } => "restored-path",
            Self::DelRestored { .. } => "del-restored",
            Self::Resize { .. } => "resize",
            Self::Restorable { .. } => "restorable",
            Self::DiffList { .. } => "diff-list",
        }
    }

    /// Whether the command only reads.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Self::WaitRestorable { .. }
                | Self::RestoredPath { .. }
                | Self::Restorable { .. }
                | Self::DiffList { .. }
        )
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::FullBackup { node, vol, .. }
            | Self::HashBackup { node, vol, .. }
            | Self::Snapshot { node, vol, .. } => (Some(node), Some(vol)),
            Self::WaitRestorable { archive, vol, .. }
            | Self::Restore { archive, vol, .. }
            | Self::RestoredPath { archive, vol, .. }
            | Self::DelRestored { archive, vol, .. }
            | Self::Restorable { archive, vol, .. }
            | Self::DiffList { archive, vol, .. } => (Some(archive), Some(vol)),
            Self::Resize { node, vol, .. } => (node.as_deref(), Some(vol)),
        }
    }

    /// The command's `--timeout` (its default when not given), for those that take one.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Self::FullBackup { timeout, .. }
            | Self::Snapshot { timeout, .. }
            | Self::HashBackup { timeout, .. }
            | Self::WaitRestorable { timeout, .. }
            | Self::Restore { timeout, .. } => Some(*timeout),
            _ => None,
        }
    }

    /// Runs the command.
    pub async fn run(&self, client: &Client) -> Result<Outcome, ClientError> {
        let cl = client.cluster();
        match self {
            Self::FullBackup {
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
            Self::Snapshot {
                node,
                vol,
                archives,
                timeout,
            } => Ok(Outcome::Gid(
                ops::snapshot(client, node, vol, archives, *timeout).await?,
            )),
            Self::HashBackup {
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
            Self::WaitRestorable {
                archive,
                vol,
                gid,
                timeout,
            } => {
                ops::wait_for_restorable(client, archive, vol, *gid, *timeout).await?;
                Ok(Outcome::Gid(*gid))
            }
            Self::Restore {
                archive,
                vol,
                gid,
                timeout,
            } => {
                let path = ops::restore(client, archive, vol, *gid, *timeout).await?;
                Ok(Outcome::Restored { gid: *gid, path })
            }
            Self::RestoredPath { archive, vol, gid } => Ok(Outcome::Text(
                ops::restored_path(client, archive, vol, *gid).await?,
            )),
            Self::DelRestored { archive, vol, gid } => {
                cl.node_as(archive, &[Role::Archive], "del-restored")?;
                client.del_restored(archive, vol, *gid).await?;
                Ok(changed(archive, Some(vol)))
            }
            Self::Resize {
                node: Some(node),
                vol,
                size_lb,
                zero_clear,
            } => {
                cl.node(node)?;
                client.resize(node, vol, *size_lb, *zero_clear).await?;
                Ok(changed(node, Some(vol)))
            }
            Self::Resize {
                node: None,
                vol,
                size_lb,
                zero_clear,
            } => Ok(Outcome::Lines(
                procs::resize_cluster(client, vol, *size_lb, *zero_clear).await?,
            )),
            Self::Restorable { archive, vol, all } => {
                cl.node_as(archive, &[Role::Archive], "restorable")?;
                Ok(Outcome::Restorable(
                    client.restorable(archive, vol, *all).await?,
                ))
            }
            Self::DiffList {
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
        }
    }
}
