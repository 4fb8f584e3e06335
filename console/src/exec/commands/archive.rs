//! The archives' work: `merge`, `apply`, `disable-snapshot`/`enable-snapshot`, `replicate`,
//! `bhash`, `virt-full-scan`, `start-synchronizing`/`stop-synchronizing`/`is-synchronizing`,
//! and walblib's procedures `go-standby`, `copy-archive-info`, `latest-clean`; `retention`
//! ([`super::retention`]).

use std::time::Duration;

use walb_wire::msg::{Codec, CompressOpt, MergeUntil};
use walb_wire::Role;

use super::spec::*;
use super::ExecCmd;
use crate::client::{Client, ClientError};
use crate::exec::output::Outcome;
use crate::ops::parse_compress;
use crate::ops::{self, TIMEOUT_LONG, TIMEOUT_SHORT};
use crate::procs;

/// A parsed command of this family (an archive's work).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveCmd {
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
    /// `bhash ARCHIVE VOL GID`.
    BlockHash {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// Snapshot gid.
        gid: u64,
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
    /// `is-synchronizing ARCHIVE VOL`.
    IsSynchronizing {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
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
    /// `retention ARCHIVE VOL [--keep-* N] [--keep-grid G] [--on|--off] [--default]
    /// [--pin GIDS] [--unpin GIDS] [--dry-run]` ([`super::retention`]).
    Retention {
        /// Archive.
        archive: String,
        /// Volume.
        vol: String,
        /// The change asked for, if any.
        change: Option<walb_wire::msg::RetentionSet>,
    },
}

/// This family's rows of the command table, in help order.
pub(super) const ROWS: &[CommandSpec] = &[
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
            Ok(ExecCmd::Archive(ArchiveCmd::Merge {
                archive,
                vol,
                gid_b,
                until,
                timeout: a.timeout(TIMEOUT_LONG)?,
            }))
        },
    },
    CommandSpec {
        name: "apply",
        args: "ARCHIVE VOL GID",
        about: "apply the diffs up to GID to the base image (older snapshots stop being restorable); wait until done",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::Apply {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                timeout: a.timeout(TIMEOUT_LONG)?,
            }))
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
            Ok(ExecCmd::Archive(ArchiveCmd::Replicate {
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
            }))
        },
    },
    CommandSpec {
        name: "bhash",
        args: "ARCHIVE VOL GID",
        about: "hash of snapshot GID's image (restorable snapshots): equal on two archives that hold the same bytes",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::BlockHash {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
            }))
        },
    },
    CommandSpec {
        name: "virt-full-scan",
        args: "ARCHIVE VOL GID OUT",
        about: "write snapshot GID's image from the archive into OUT (a file, written whole or not at all, or a block device), without a restore",
        options: &[OPT_BULK],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::VirtFullScan {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                gid: a.req_num("GID")?,
                out: a.req("OUT")?.into(),
                bulk_lb: a.value_num("--bulk")?,
            }))
        },
    },
    CommandSpec {
        name: "start-synchronizing",
        args: "ARCHIVE VOL",
        about: "make every proxy send the volume's diffs to the archive too (it must hold the latest snapshot: replicate --sync does both)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::Synchronizing {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                start: true,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "stop-synchronizing",
        args: "ARCHIVE VOL",
        about: "the proxies stop sending the volume's diffs to the archive (their queue for it is dropped)",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::Synchronizing {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
                start: false,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "is-synchronizing",
        args: "ARCHIVE VOL",
        about: "1 if every proxy sends the volume's diffs to the archive, 0 if none does",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::IsSynchronizing {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
            }))
        },
    },
    // walblib procedures: go-standby, copy-archive-info, latest-clean.
    CommandSpec {
        name: "go-standby",
        args: "STORAGE VOL",
        about: "make a storage replica Standby (walblib go_standby): from Target stop force, stop synchronizing its primary archive, reset, start standby (from Stopped the same without the stop); from SyncReady start standby; Standby stays",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::GoStandby {
                node: a.req("STORAGE")?,
                vol: a.req("VOL")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "copy-archive-info",
        args: "SRC_PROXY VOL DST_PROXY",
        about: "DST_PROXY sends the volume to every archive SRC_PROXY does (same address, compression, delay), the archives take its diffs and it takes the storage's wlogs (bind); then it starts; storages ship to it once it is among their proxies; prints the archives and the storage",
        options: &[OPT_TIMEOUT],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::CopyArchiveInfo {
                src: a.req("SRC_PROXY")?,
                vol: a.req("VOL")?,
                dst: a.req("DST_PROXY")?,
                timeout: a.timeout(TIMEOUT_SHORT)?,
            }))
        },
    },
    CommandSpec {
        name: "latest-clean",
        args: "ARCHIVE VOL",
        about: "the latest restorable gid (walblib get_latest_clean_snapshot; the last line of `restorable ARCHIVE VOL all`)",
        options: &[],
        parse: |a| {
            Ok(ExecCmd::Archive(ArchiveCmd::LatestClean {
                archive: a.req("ARCHIVE")?,
                vol: a.req("VOL")?,
            }))
        },
    },
    super::retention::ROW,
];

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
    Ok(ExecCmd::Archive(ArchiveCmd::SetExplicit {
        archive,
        vol,
        gids,
        explicit,
    }))
}

/// `copy-archive-info`'s lines: `archive NAME HOST:PORT CODEC:LEVEL:NCPU DELAY` per
/// archive, then `storage ID` (or what to bind when the source proxy binds none).
pub fn copy_lines(src: &str, dst: &str, vol: &str, r: &procs::CopyDone) -> Vec<String> {
    let mut out: Vec<String> = r
        .archives
        .iter()
        .map(|(a, info)| format!("archive {a} {}", info.line()))
        .collect();
    out.push(match &r.storage {
        Some(s) => format!("storage {s}"),
        None => format!(
            "storage - ({src} binds none for {vol}: `bind {dst} {vol} storage ID` lets a storage ship to {dst})"
        ),
    });
    out
}

/// `virt-full-scan`: the image into `out`; what was written.
async fn virt_full_scan(
    client: &Client,
    archive: &str,
    vol: &str,
    gid: u64,
    bulk_lb: Option<u64>,
    out: &std::path::Path,
) -> Result<Outcome, ClientError> {
    client
        .cluster()
        .node_as(archive, &[Role::Archive], "virt-full-scan")?;
    let s = crate::scan::virt_full_scan(client, archive, vol, gid, bulk_lb, out).await?;
    Ok(Outcome::Text(format!(
        "{} bytes ({} of data) written to {}",
        s.bytes,
        s.data_bytes,
        out.display()
    )))
}

impl ArchiveCmd {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Merge { .. } => "merge",
            Self::Apply { .. } => "apply",
            Self::SetExplicit { explicit: true, .. } => "enable-snapshot",
            Self::SetExplicit {
                explicit: false, ..
            } => "disable-snapshot",
            Self::Replicate { .. } => "replicate",
            Self::BlockHash { .. } => "bhash",
            Self::VirtFullScan { .. } => "virt-full-scan",
            Self::Synchronizing { start: true, .. } => "start-synchronizing",
            Self::Synchronizing { start: false, .. } => "stop-synchronizing",
            Self::IsSynchronizing { .. } => "is-synchronizing",
            Self::GoStandby { .. } => "go-standby",
            Self::CopyArchiveInfo { .. } => "copy-archive-info",
            Self::LatestClean { .. } => "latest-clean",
            Self::Retention { .. } => "retention",
        }
    }

    /// Whether the command only reads.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Self::IsSynchronizing { .. }
                | Self::BlockHash { .. }
                | Self::LatestClean { .. }
                | Self::Retention { change: None, .. }
        )
    }

    /// The node and volume the command is about, if it names them.
    pub fn target(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::Merge { archive, vol, .. }
            | Self::Apply { archive, vol, .. }
            | Self::SetExplicit { archive, vol, .. }
            | Self::Synchronizing { archive, vol, .. }
            | Self::IsSynchronizing { archive, vol }
            | Self::BlockHash { archive, vol, .. }
            | Self::VirtFullScan { archive, vol, .. }
            | Self::LatestClean { archive, vol }
            | Self::Retention { archive, vol, .. } => (Some(archive), Some(vol)),
            Self::Replicate { src, vol, .. } => (Some(src), Some(vol)),
            Self::GoStandby { node, vol, .. } => (Some(node), Some(vol)),
            Self::CopyArchiveInfo { src, vol, .. } => (Some(src), Some(vol)),
        }
    }

    /// The command's `--timeout` (its default when not given), for those that take one.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Self::Merge { timeout, .. }
            | Self::Apply { timeout, .. }
            | Self::Replicate { timeout, .. }
            | Self::Synchronizing { timeout, .. }
            | Self::GoStandby { timeout, .. }
            | Self::CopyArchiveInfo { timeout, .. } => Some(*timeout),
            _ => None,
        }
    }

    /// Runs the command.
    pub async fn run(&self, client: &Client) -> Result<Outcome, ClientError> {
        let cl = client.cluster();
        match self {
            Self::Merge {
                archive,
                vol,
                gid_b,
                until,
                timeout,
            } => Ok(Outcome::Diffs(vec![
                ops::merge(client, archive, vol, *gid_b, *until, *timeout).await?,
            ])),
            Self::Apply {
                archive,
                vol,
                gid,
                timeout,
            } => Ok(Outcome::MetaState(
                ops::apply(client, archive, vol, *gid, *timeout).await?,
            )),
            Self::SetExplicit {
                archive,
                vol,
                gids,
                explicit,
            } => {
                cl.node_as(archive, &[Role::Archive], self.name())?;
                client
                    .set_snapshots_explicit(archive, vol, gids, *explicit)
                    .await?;
                Ok(changed(archive, Some(vol)))
            }
            Self::Replicate {
                src,
                vol,
                dst,
                opts,
                sync,
                timeout,
            } => Ok(Outcome::Gid(
                ops::replicate(client, src, vol, dst, *opts, *sync, *timeout).await?,
            )),
            Self::BlockHash { archive, vol, gid } => {
                cl.node_as(archive, &[Role::Archive], "bhash")?;
                let h = client.block_hash(archive, vol, *gid).await?;
                Ok(Outcome::Text(
                    h.iter().map(|b| format!("{b:02x}")).collect(),
                ))
            }
            Self::VirtFullScan {
                archive,
                vol,
                gid,
                out,
                bulk_lb,
            } => virt_full_scan(client, archive, vol, *gid, *bulk_lb, out).await,
            Self::Synchronizing {
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
                Ok(changed(archive, Some(vol)))
            }
            Self::IsSynchronizing { archive, vol } => Ok(Outcome::Bool(
                ops::is_synchronizing(client, archive, vol).await?,
            )),
            Self::GoStandby { node, vol, timeout } => {
                let st = procs::go_standby(client, node, vol, *timeout).await?;
                Ok(done(node, vol, st))
            }
            Self::CopyArchiveInfo {
                src,
                vol,
                dst,
                timeout,
            } => {
                let r = procs::copy_archive_info(client, src, vol, dst, *timeout).await?;
                Ok(Outcome::Lines(copy_lines(src, dst, vol, &r)))
            }
            Self::LatestClean { archive, vol } => Ok(Outcome::Gid(
                procs::latest_clean(client, archive, vol).await?,
            )),
            Self::Retention {
                archive,
                vol,
                change,
            } => super::retention::run(client, archive, vol, change.as_ref()).await,
        }
    }
}
