//! The typed calls: one method per query and command of the daemon contract, each
//! sending its request and decoding the reply it expects.

use walb_wire::msg::{
    ArchiveDest, ArchiveInfoCommand, BindCommand, BindHow, DiffStats, LogUsageRow, MergeUntil,
    MetaDiffDto, MetaStateDto, PeerRole, ReplicateCommand, RestoredImage, RetentionReport,
    RetentionSet, SnapshotInfo, StartMode, StopMode, TsDeltaRow, Uuid, VolActions, VolBase,
    VolPeers, VolumeState,
};
use walb_wire::{Command, Query, Reply, Role};

use super::{
    expect_ack, expect_bool, expect_diffs, expect_meta_state, expect_names, expect_number,
    expect_peers, expect_snapshots, expect_uuid, not_typed, unexpected, Client, ClientError,
    StatusAnswer,
};

impl Client {
    // ------------------------------------------------------------------------------
    // Queries of every role

    /// `get state`: the volume's state (Clear for an unknown volume). A protocol-3 daemon
    /// answers with the state's name, read as a state of the node's role.
    pub async fn state(&self, node: &str, vol: &str) -> Result<VolumeState, ClientError> {
        let role = self.cluster().node(node)?.role;
        match self.query(node, Query::State { vol: vol.into() }).await? {
            Reply::State(s) => Ok(s),
            Reply::Text(name) => VolumeState::parse(role, &name).ok_or_else(|| {
                unexpected(node, "get state", "a state", &Reply::Text(name.clone()))
            }),
            other => Err(unexpected(node, "get state", "a state", &other)),
        }
    }

    /// `get vol`: the volume names.
    pub async fn vols(&self, node: &str) -> Result<Vec<String>, ClientError> {
        let r = self.query(node, Query::Vols).await?;
        expect_names(node, "get vol", r)
    }

    /// `status [VOL]`: the typed status, or a protocol-3 daemon's lines.
    pub async fn status(&self, node: &str, vol: Option<&str>) -> Result<StatusAnswer, ClientError> {
        let r = self
            .query(
                node,
                Query::Status {
                    vol: vol.map(str::to_owned),
                },
            )
            .await?;
        match r {
            Reply::Status(s) => Ok(StatusAnswer::Typed(s)),
            Reply::Lines(l) => Ok(StatusAnswer::Lines(l)),
            other => Err(unexpected(node, "status", "a status", &other)),
        }
    }

    /// `get host-type`: the daemon's role (a protocol-3 daemon answers with its name).
    pub async fn host_type(&self, node: &str) -> Result<Role, ClientError> {
        match self.query(node, Query::HostType).await? {
            Reply::HostType(r) => Ok(r),
            Reply::Text(name) => name.parse::<Role>().map_err(|_| {
                unexpected(node, "get host-type", "a role", &Reply::Text(name.clone()))
            }),
            other => Err(unexpected(node, "get host-type", "a role", &other)),
        }
    }

    /// `get pid`.
    pub async fn pid(&self, node: &str) -> Result<u64, ClientError> {
        let r = self.query(node, Query::Pid).await?;
        expect_number(node, "get pid", r)
    }

    /// `version`: software and protocol version.
    pub async fn version(&self, node: &str) -> Result<(String, u16), ClientError> {
        match self.query(node, Query::Version).await? {
            Reply::Version { software, protocol } => Ok((software, protocol)),
            other => Err(unexpected(node, "version", "a version", &other)),
        }
    }

    /// `get latest-snap [VOL]`.
    pub async fn latest_snap(
        &self,
        node: &str,
        vol: Option<&str>,
    ) -> Result<Vec<SnapshotInfo>, ClientError> {
        let r = self
            .query(
                node,
                Query::LatestSnap {
                    vol: vol.map(str::to_owned),
                },
            )
            .await?;
        expect_snapshots(node, "get latest-snap", r)
    }

    // ------------------------------------------------------------------------------
    // Storage

    /// `get log-usage [VOL]`: each volume's log usage.
    pub async fn log_usage(
        &self,
        node: &str,
        vol: Option<&str>,
    ) -> Result<Vec<LogUsageRow>, ClientError> {
        let r = self
            .query(
                node,
                Query::LogUsage {
                    vol: vol.map(str::to_owned),
                },
            )
            .await?;
        match r {
            Reply::LogUsage(rows) => Ok(rows),
            other => Err(not_typed(node, "get log-usage", "log usage", other)),
        }
    }

    /// `get is-overflow VOL`.
    pub async fn is_overflow(&self, node: &str, vol: &str) -> Result<bool, ClientError> {
        let r = self
            .query(node, Query::IsOverflow { vol: vol.into() })
            .await?;
        expect_bool(node, "get is-overflow", r)
    }

    /// `get uuid VOL`.
    pub async fn uuid(&self, node: &str, vol: &str) -> Result<Uuid, ClientError> {
        let r = self.query(node, Query::Uuid { vol: vol.into() }).await?;
        expect_uuid(node, "get uuid", r)
    }

    /// `get meta-state VOL [0|1] [GID]` (storage: the base its last full backup made).
    pub async fn meta_state(
        &self,
        node: &str,
        vol: &str,
        applying: bool,
        gid: Option<u64>,
    ) -> Result<MetaStateDto, ClientError> {
        let r = self
            .query(
                node,
                Query::MetaState {
                    vol: vol.into(),
                    applying,
                    gid,
                },
            )
            .await?;
        expect_meta_state(node, "get meta-state", r)
    }

    /// `init-vol VOL [WDEV]`.
    pub async fn init_vol(
        &self,
        node: &str,
        vol: &str,
        wdev_path: Option<&str>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::InitVol {
                    vol: vol.into(),
                    wdev_path: wdev_path.map(str::to_owned),
                },
            )
            .await?;
        expect_ack(node, "init-vol", r)
    }

    /// `clear-vol VOL`.
    pub async fn clear_vol(&self, node: &str, vol: &str) -> Result<(), ClientError> {
        let r = self
            .command(node, Command::ClearVol { vol: vol.into() })
            .await?;
        expect_ack(node, "clear-vol", r)
    }

    /// `reset-vol VOL [GID]`.
    pub async fn reset_vol(
        &self,
        node: &str,
        vol: &str,
        gid: Option<u64>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::ResetVol {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "reset-vol", r)
    }

    /// `start VOL [target|standby]`.
    pub async fn start(
        &self,
        node: &str,
        vol: &str,
        mode: Option<StartMode>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Start {
                    vol: vol.into(),
                    mode,
                },
            )
            .await?;
        expect_ack(node, "start", r)
    }

    /// `stop VOL MODE` (asynchronous: returns once accepted).
    pub async fn stop(&self, node: &str, vol: &str, mode: StopMode) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Stop {
                    vol: vol.into(),
                    mode,
                },
            )
            .await?;
        expect_ack(node, "stop", r)
    }

    /// `snapshot VOL`: the new gid.
    pub async fn snapshot(&self, node: &str, vol: &str) -> Result<u64, ClientError> {
        match self
            .command(node, Command::Snapshot { vol: vol.into() })
            .await?
        {
            Reply::Gid(g) => Ok(g),
            other => Err(unexpected(node, "snapshot", "a gid", &other)),
        }
    }

    /// `full-bkp VOL [BULK]` (asynchronous: returns once the archive accepted).
    pub async fn full_backup(
        &self,
        node: &str,
        vol: &str,
        bulk_lb: Option<u64>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::FullBackup {
                    vol: vol.into(),
                    bulk_lb,
                },
            )
            .await?;
        expect_ack(node, "full-bkp", r)
    }

    /// `hash-bkp VOL [BULK]` (asynchronous).
    pub async fn hash_backup(
        &self,
        node: &str,
        vol: &str,
        bulk_lb: Option<u64>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::HashBackup {
                    vol: vol.into(),
                    bulk_lb,
                },
            )
            .await?;
        expect_ack(node, "hash-bkp", r)
    }

    /// `kick [VOL [ARCHIVE]]`.
    pub async fn kick(
        &self,
        node: &str,
        vol: Option<&str>,
        archive: Option<&str>,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Kick {
                    vol: vol.map(str::to_owned),
                    archive: archive.map(str::to_owned),
                },
            )
            .await?;
        expect_ack(node, "kick", r)
    }

    /// `set-full-scan-bps BPS`.
    pub async fn set_full_scan_bps(&self, node: &str, bps: u64) -> Result<(), ClientError> {
        let r = self.command(node, Command::SetFullScanBps(bps)).await?;
        expect_ack(node, "set-full-scan-bps", r)
    }

    /// `shutdown [force]`.
    pub async fn shutdown(&self, node: &str, force: bool) -> Result<(), ClientError> {
        let r = self.command(node, Command::Shutdown { force }).await?;
        expect_ack(node, "shutdown", r)
    }

    // ------------------------------------------------------------------------------
    // Proxy

    /// `archive-info add|update VOL ARCHIVE ADDR [CMPR] [DELAY]`.
    pub async fn archive_info_set(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
        dest: ArchiveDest,
        update: bool,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::ArchiveInfo(ArchiveInfoCommand::Set {
                    vol: vol.into(),
                    archive: archive.into(),
                    dest,
                    update,
                }),
            )
            .await?;
        expect_ack(node, "archive-info", r)
    }

    /// `archive-info delete VOL ARCHIVE`.
    pub async fn archive_info_delete(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::ArchiveInfo(ArchiveInfoCommand::Delete {
                    vol: vol.into(),
                    archive: archive.into(),
                }),
            )
            .await?;
        expect_ack(node, "archive-info delete", r)
    }

    /// `archive-info get VOL ARCHIVE`: where and how the proxy sends to the archive.
    pub async fn archive_info_get(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
    ) -> Result<ArchiveDest, ClientError> {
        let r = self
            .query(
                node,
                Query::ArchiveInfo {
                    vol: vol.into(),
                    archive: Some(archive.into()),
                },
            )
            .await?;
        match r {
            Reply::ArchiveInfo(d) => Ok(d),
            other => Err(not_typed(node, "archive-info get", "archive info", other)),
        }
    }

    /// `archive-info list VOL`: archive names.
    pub async fn archive_info_list(
        &self,
        node: &str,
        vol: &str,
    ) -> Result<Vec<String>, ClientError> {
        let r = self
            .query(
                node,
                Query::ArchiveInfo {
                    vol: vol.into(),
                    archive: None,
                },
            )
            .await?;
        expect_names(node, "archive-info list", r)
    }

    /// `get is-wdiff-send-error VOL ARCHIVE`.
    pub async fn is_wdiff_send_error(
        &self,
        node: &str,
        vol: &str,
        archive: &str,
    ) -> Result<bool, ClientError> {
        let r = self
            .query(
                node,
                Query::IsWdiffSendError {
                    vol: vol.into(),
                    archive: archive.into(),
                },
            )
            .await?;
        expect_bool(node, "get is-wdiff-send-error", r)
    }

    /// `get diff`: an archive's stored diffs in a gid range, or a proxy's queue (of
    /// `archive`, else its received diffs).
    pub async fn diffs(
        &self,
        node: &str,
        vol: &str,
        gid_b: Option<u64>,
        gid_e: Option<u64>,
        archive: Option<&str>,
    ) -> Result<Vec<MetaDiffDto>, ClientError> {
        let r = self
            .query(
                node,
                Query::Diff {
                    vol: vol.into(),
                    gid_b,
                    gid_e,
                    archive: archive.map(str::to_owned),
                },
            )
            .await?;
        expect_diffs(node, "get diff", r)
    }

    // ------------------------------------------------------------------------------
    // Archive

    /// `get applicable-diff VOL [MAXGID]`.
    pub async fn applicable_diff(
        &self,
        node: &str,
        vol: &str,
        gid_max: Option<u64>,
    ) -> Result<Vec<MetaDiffDto>, ClientError> {
        let r = self
            .query(
                node,
                Query::ApplicableDiff {
                    vol: vol.into(),
                    gid_max,
                },
            )
            .await?;
        expect_diffs(node, "get applicable-diff", r)
    }

    /// `get restorable VOL [all]`.
    pub async fn restorable(
        &self,
        node: &str,
        vol: &str,
        all: bool,
    ) -> Result<Vec<SnapshotInfo>, ClientError> {
        let r = self
            .query(
                node,
                Query::Restorable {
                    vol: vol.into(),
                    all,
                },
            )
            .await?;
        expect_snapshots(node, "get restorable", r)
    }

    /// `get restored VOL`: the restored images.
    pub async fn restored(&self, node: &str, vol: &str) -> Result<Vec<RestoredImage>, ClientError> {
        match self
            .query(node, Query::Restored { vol: vol.into() })
            .await?
        {
            Reply::Restored(r) => Ok(r),
            other => Err(not_typed(node, "get restored", "restored images", other)),
        }
    }

    /// `get base VOL`.
    pub async fn base(&self, node: &str, vol: &str) -> Result<MetaStateDto, ClientError> {
        let r = self
            .query(
                node,
                Query::Base {
                    vol: Some(vol.into()),
                },
            )
            .await?;
        expect_meta_state(node, "get base", r)
    }

    /// `get archive-uuid VOL`.
    pub async fn archive_uuid(&self, node: &str, vol: &str) -> Result<Uuid, ClientError> {
        let r = self
            .query(node, Query::ArchiveUuid { vol: vol.into() })
            .await?;
        expect_uuid(node, "get archive-uuid", r)
    }

    /// `get ts-delta`: a storage's lag behind its primary archive, or a source archive's
    /// behind each replication destination.
    pub async fn ts_delta(&self, node: &str) -> Result<Vec<TsDeltaRow>, ClientError> {
        match self.query(node, Query::TsDelta).await? {
            Reply::TsDelta(rows) => Ok(rows),
            other => Err(not_typed(node, "get ts-delta", "ts-delta rows", other)),
        }
    }

    /// `bhash VOL GID`: the MurmurHash3 of snapshot `gid`'s image (restorable snapshots
    /// only), equal on two archives holding the same bytes.
    pub async fn block_hash(
        &self,
        node: &str,
        vol: &str,
        gid: u64,
    ) -> Result<[u8; 16], ClientError> {
        let r = self
            .query(
                node,
                Query::BlockHash {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        match r {
            Reply::Hash(h) => Ok(h),
            other => Err(unexpected(node, "bhash", "a hash", &other)),
        }
    }

    /// `get vol-size VOL` (logical blocks).
    pub async fn vol_size(&self, node: &str, vol: &str) -> Result<u64, ClientError> {
        let r = self.query(node, Query::VolSize { vol: vol.into() }).await?;
        expect_number(node, "get vol-size", r)
    }

    /// `get progress VOL` (logical blocks done).
    pub async fn progress(&self, node: &str, vol: &str) -> Result<u64, ClientError> {
        let r = self
            .query(node, Query::Progress { vol: vol.into() })
            .await?;
        expect_number(node, "get progress", r)
    }

    /// `get exists-base-image VOL`.
    pub async fn exists_base_image(&self, node: &str, vol: &str) -> Result<bool, ClientError> {
        let r = self
            .query(node, Query::ExistsBaseImage { vol: vol.into() })
            .await?;
        expect_bool(node, "get exists-base-image", r)
    }

    /// `get num-action VOL ACTION`.
    pub async fn num_action(
        &self,
        node: &str,
        vol: &str,
        action: &str,
    ) -> Result<u64, ClientError> {
        let r = self
            .query(
                node,
                Query::NumAction {
                    vol: vol.into(),
                    action: action.into(),
                },
            )
            .await?;
        expect_number(node, "get num-action", r)
    }

    /// `get num-diff` and `get total-diff-size VOL [GIDB [GIDE]]` at once: the number
    /// of diffs whose first gid is in the range, and the sum of their file sizes.
    pub async fn diff_stats(
        &self,
        node: &str,
        vol: &str,
        gid_b: Option<u64>,
        gid_e: Option<u64>,
    ) -> Result<DiffStats, ClientError> {
        let r = self
            .query(
                node,
                Query::DiffStats {
                    vol: vol.into(),
                    gid_b,
                    gid_e,
                },
            )
            .await?;
        match r {
            Reply::DiffStats(d) => Ok(d),
            other => Err(not_typed(node, "get num-diff", "diff statistics", other)),
        }
    }

    /// `get exists-diff VOL G0 G1 G2 G3`: whether the archive holds `|G0,G1|-->|G2,G3|`.
    pub async fn exists_diff(
        &self,
        node: &str,
        vol: &str,
        g: [u64; 4],
    ) -> Result<bool, ClientError> {
        let diff = walb_wire::msg::DiffRange {
            snap_b: walb_wire::msg::SnapDto {
                gid_b: g[0],
                gid_e: g[1],
            },
            snap_e: walb_wire::msg::SnapDto {
                gid_b: g[2],
                gid_e: g[3],
            },
        };
        let r = self
            .query(
                node,
                Query::ExistsDiff {
                    vol: vol.into(),
                    diff,
                },
            )
            .await?;
        expect_bool(node, "get exists-diff", r)
    }

    /// `get all-actions`: per active volume, each action's running count and last start.
    pub async fn all_actions(&self, node: &str) -> Result<Vec<VolActions>, ClientError> {
        match self.query(node, Query::AllActions).await? {
            Reply::Actions(a) => Ok(a),
            other => Err(not_typed(node, "get all-actions", "actions", other)),
        }
    }

    /// `get base-all`: each active volume's base meta state.
    pub async fn base_all(&self, node: &str) -> Result<Vec<VolBase>, ClientError> {
        match self.query(node, Query::Base { vol: None }).await? {
            Reply::Bases(b) => Ok(b),
            other => Err(not_typed(node, "get base-all", "bases", other)),
        }
    }

    /// `get meta-snap VOL [GID]`: the snapshot the applicable chain reaches up to `gid`
    /// (the latest if `None`), as a meta state with its timestamp.
    pub async fn meta_snap(
        &self,
        node: &str,
        vol: &str,
        gid: Option<u64>,
    ) -> Result<MetaStateDto, ClientError> {
        let r = self
            .query(
                node,
                Query::MetaSnap {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_meta_state(node, "get meta-snap", r)
    }

    /// `gc-diff VOL`: deletes the diffs unreachable from the base.
    pub async fn gc_diff(&self, node: &str, vol: &str) -> Result<(), ClientError> {
        let r = self
            .command(node, Command::GcDiff { vol: vol.into() })
            .await?;
        expect_ack(node, "gc-diff", r)
    }

    /// `restore VOL GID` (asynchronous).
    pub async fn restore(&self, node: &str, vol: &str, gid: u64) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Restore {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "restore", r)
    }

    /// `merge VOL GIDB GIDE` (asynchronous: the archive merges the chain of diffs from
    /// `gid_b` up to where `until` stops it).
    pub async fn merge(
        &self,
        node: &str,
        vol: &str,
        gid_b: u64,
        until: MergeUntil,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Merge {
                    vol: vol.into(),
                    gid_b,
                    until,
                },
            )
            .await?;
        expect_ack(node, "merge", r)
    }

    /// `apply VOL GID` (asynchronous: the archive applies its diffs up to `gid` to the base
    /// image).
    pub async fn apply(&self, node: &str, vol: &str, gid: u64) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Apply {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "apply", r)
    }

    /// `enable-snapshot` / `disable-snapshot VOL GID...`: make snapshots explicit
    /// (restorable, never merged away) or implicit.
    pub async fn set_snapshots_explicit(
        &self,
        node: &str,
        vol: &str,
        gids: &[u64],
        explicit: bool,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::SetSnapshotsExplicit {
                    vol: vol.into(),
                    gids: gids.to_vec(),
                    explicit,
                },
            )
            .await?;
        expect_ack(
            node,
            if explicit {
                "enable-snapshot"
            } else {
                "disable-snapshot"
            },
            r,
        )
    }

    /// `resize VOL SIZE_LB [zeroclear]` on any node.
    pub async fn resize(
        &self,
        node: &str,
        vol: &str,
        size_lb: u64,
        zero_clear: bool,
    ) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::Resize {
                    vol: vol.into(),
                    size_lb,
                    zero_clear,
                },
            )
            .await?;
        expect_ack(node, "resize", r)
    }

    /// `replicate VOL ...` to the source archive `node` (asynchronous: `Accepted` once
    /// the destination accepted the session; the source then runs it as its
    /// `ReplSyncAsClient` action).
    pub async fn replicate(&self, node: &str, cmd: ReplicateCommand) -> Result<(), ClientError> {
        let r = self.command(node, Command::Replicate(cmd)).await?;
        expect_ack(node, "replicate", r)
    }

    /// `bind VOL ROLE IDS`: changes the peers of `role` bound to `vol` on `node`; returns
    /// the volume's peers after the change.
    pub async fn bind(
        &self,
        node: &str,
        vol: &str,
        role: PeerRole,
        ids: &[String],
        how: BindHow,
    ) -> Result<VolPeers, ClientError> {
        let r = self
            .command(
                node,
                Command::Bind(BindCommand {
                    vol: vol.into(),
                    role,
                    ids: ids.to_vec(),
                    how,
                }),
            )
            .await?;
        expect_peers(node, "bind", r)
    }

    /// `peers VOL`: the peers bound to `vol` on `node`.
    pub async fn peers(&self, node: &str, vol: &str) -> Result<VolPeers, ClientError> {
        let r = self.query(node, Query::Peers { vol: vol.into() }).await?;
        expect_peers(node, "peers", r)
    }

    /// `del-restored VOL GID`.
    pub async fn del_restored(&self, node: &str, vol: &str, gid: u64) -> Result<(), ClientError> {
        let r = self
            .command(
                node,
                Command::DelRestored {
                    vol: vol.into(),
                    gid,
                },
            )
            .await?;
        expect_ack(node, "del-restored", r)
    }

    /// `retention VOL`: the volume's retention policy and what its next pass would do.
    pub async fn retention(&self, node: &str, vol: &str) -> Result<RetentionReport, ClientError> {
        let r = self
            .query(node, Query::Retention { vol: vol.into() })
            .await?;
        super::expect_retention(node, "retention", r)
    }

    /// Changes a volume's retention policy or pins (or, `dry_run`, shows the next pass
    /// under the change); the report under the new settings.
    pub async fn set_retention(
        &self,
        node: &str,
        set: RetentionSet,
    ) -> Result<RetentionReport, ClientError> {
        let r = self.command(node, Command::SetRetention(set)).await?;
        super::expect_retention(node, "retention", r)
    }
}
