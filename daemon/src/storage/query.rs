//! The storage's queries (walb-tools.md §2.2): state, volumes, status, latest snapshot,
//! log usage, overflow, uuid, and the meta state of the last full backup.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use walb_wire::msg::{
    DeviceStatus, ErrorCode, LogUsageRow, LsidsDto, Query, Reply, SnapRecord, SnapshotInfo, Status,
    StopFlag, StorageSummary, StorageVolLine, StorageVolMeta, StorageVolStatus, VolumeState,
    WireError,
};

use crate::dto::{state_to_dto, stop_flag};
use crate::session::{blocking, refuse};
use crate::state::storage::StorageState as S;

use super::{dev_error, snap, Storage, Vol};

impl Storage {
    /// Answers a query.
    pub(crate) async fn query(self: &Arc<Self>, q: Query) -> Result<Reply, WireError> {
        match q {
            Query::State { vol } => Ok(Reply::State(VolumeState::Storage(
                self.get_vol(&vol)
                    .map(|v| v.core.state())
                    .unwrap_or(S::Clear),
            ))),
            Query::Vols => Ok(Reply::Names(
                self.all_vols()
                    .iter()
                    .filter(|v| v.core.state() != S::Clear)
                    .map(|v| v.name.clone())
                    .collect(),
            )),
            Query::Status { vol: None } => {
                Ok(Reply::Status(Box::new(Status::Storage(self.summary()))))
            }
            Query::Status { vol: Some(vol) } => self.vol_status_reply(vol).await,
            Query::LatestSnap { vol: Some(vol) } => {
                let v = self.existing_vol(&vol)?;
                let m = v.meta_copy()?;
                Ok(Reply::Snapshots(vec![snap_info(&vol, m.snaps.latest())]))
            }
            Query::LatestSnap { vol: None } => Ok(Reply::Snapshots(
                self.all_vols()
                    .iter()
                    .filter(|v| v.core.state() == S::Target)
                    .filter_map(|v| {
                        v.meta()
                            .as_ref()
                            .map(|m| snap_info(&v.name, m.snaps.latest()))
                    })
                    .collect(),
            )),
            Query::LogUsage { vol } => self.log_usage(vol).await,
            Query::IsOverflow { vol } => {
                let v = self.existing_vol(&vol)?;
                let path = v.meta_copy()?.wdev_path;
                let devs = Arc::clone(&self.devices);
                blocking(move || {
                    devs.open(&path)
                        .and_then(|d| d.is_overflow())
                        .map(Reply::Bool)
                        .map_err(|e| dev_error(&v.name, &path, &e))
                })
                .await?
            }
            Query::Uuid { vol } => {
                let v = self.existing_vol(&vol)?;
                Ok(Reply::Uuid(v.meta_copy()?.uuid))
            }
            Query::MetaState { vol, .. } => {
                let v = self.existing_vol(&vol)?;
                match v.meta_copy()?.fullsync {
                    Some(st) => Ok(Reply::MetaState(state_to_dto(&st))),
                    None => Err(refuse(
                        ErrorCode::NotFound,
                        format!("volume {vol}: no full or hash backup has completed yet"),
                    )),
                }
            }
            Query::TsDelta => Ok(Reply::TsDelta(self.ts_delta_rows())),
            // What a storage sends to: the same for every volume (its options).
            Query::Peers { .. } => Ok(Reply::Peers(walb_wire::msg::VolPeers {
                storage: Some(self.ctx.id.clone()),
                proxies: self
                    .cfg
                    .proxies
                    .iter()
                    .map(|p| p.id.id().to_owned())
                    .collect(),
                archives: vec![self.cfg.archive.id.id().to_owned()],
            })),
            other => Err(refuse(
                ErrorCode::Unsupported,
                format!("the storage does not answer {other:?}"),
            )),
        }
    }

    /// `status VOL`: a Clear volume's three lines, or what its metadata and device say.
    async fn vol_status_reply(self: &Arc<Self>, vol: String) -> Result<Reply, WireError> {
        let status = match self.get_vol(&vol) {
            Some(v) if v.core.state() != S::Clear => {
                let s2 = Arc::clone(self);
                blocking(move || s2.vol_status(&v)).await?
            }
            _ => StorageVolStatus {
                vol,
                state: S::Clear,
                stop: StopFlag::NotStopping,
                actions: Vec::new(),
                monitored: false,
                meta: None,
            },
        };
        Ok(Reply::Status(Box::new(Status::StorageVol(status))))
    }

    /// `get log-usage [VOL]`: one volume (its error refuses), or every volume that is not
    /// Clear (a device that cannot be read is left out).
    async fn log_usage(self: &Arc<Self>, vol: Option<String>) -> Result<Reply, WireError> {
        let vols = match vol {
            Some(name) => vec![self.existing_vol(&name)?],
            None => self
                .all_vols()
                .into_iter()
                .filter(|v| v.core.state() != S::Clear)
                .collect(),
        };
        let single = vols.len() == 1;
        let s2 = Arc::clone(self);
        let rows = blocking(move || {
            let mut out = Vec::new();
            for v in &vols {
                match s2.log_usage_row(v) {
                    Ok(l) => out.push(l),
                    Err(e) if single => return Err(e),
                    Err(_) => {}
                }
            }
            Ok(out)
        })
        .await??;
        Ok(Reply::LogUsage(rows))
    }

    fn log_usage_row(&self, v: &Vol) -> Result<LogUsageRow, WireError> {
        let path = v.meta_copy()?.wdev_path;
        let de = |e: walb_kernel::Error| dev_error(&v.name, &path, &e);
        let dev = self.devices.open(&path).map_err(de)?;
        Ok(LogUsageRow {
            vol: v.name.clone(),
            usage_pb: dev.log_usage().map_err(de)?,
            capacity_pb: dev.log_capacity().map_err(de)?,
            pbs: dev.info().map_err(de)?.pbs,
        })
    }

    fn summary(&self) -> StorageSummary {
        let vols = self
            .all_vols()
            .iter()
            .filter(|vol| vol.core.state() != S::Clear)
            .map(|vol| {
                let (oldest, latest) = vol
                    .meta()
                    .as_ref()
                    .map(|m| (m.snaps.done.gid, m.snaps.latest().gid))
                    .unwrap_or((u64::MAX, u64::MAX));
                let known = |g: u64| (g != u64::MAX).then_some(g);
                StorageVolLine {
                    vol: vol.name.clone(),
                    state: vol.core.state(),
                    oldest_gid: known(oldest),
                    latest_gid: known(latest),
                }
            })
            .collect();
        StorageSummary {
            node_id: self.ctx.id.to_string(),
            uptime_s: self.ctx.uptime().as_secs(),
            base_dir: self.ctx.base.path().display().to_string(),
            archive: self.cfg.archive.to_string(),
            proxies: self.proxies.links(),
            max_wlog_send_mb: self.cfg.max_wlog_send_mb,
            snapshot_interval_s: self.cfg.snapshot_interval_s,
            full_scan_bps: self.full_scan_bps.load(Ordering::Relaxed),
            scheduled_tasks: self.monitor.scheduled() as u64,
            ts_delta: self
                .ts_delta
                .status(self.cfg.ts_delta_interval, self.ctx.clock.instant()),
            fg: self.ctx.fg_status(),
            vols,
        }
    }

    /// One volume's status (blocking: asks the device).
    fn vol_status(&self, v: &Vol) -> StorageVolStatus {
        let meta = v.meta_copy().map_err(|e| e.message).map(|meta| {
            let device = self
                .devices
                .open(&meta.wdev_path)
                .and_then(|d| {
                    let info = d.info()?;
                    let l = d.lsids()?;
                    Ok(DeviceStatus {
                        size_lb: info.size_lb,
                        overflow: d.is_overflow()?,
                        log_usage_pb: d.log_usage()?,
                        log_capacity_pb: d.log_capacity()?,
                        pbs: info.pbs,
                        lsids: LsidsDto {
                            oldest: l.oldest,
                            prev_written: l.prev_written,
                            written: l.written,
                            permanent: l.permanent,
                            latest: l.latest,
                        },
                    })
                })
                .map_err(|e| e.to_string());
            StorageVolMeta {
                wdev_path: meta.wdev_path.clone(),
                uuid: meta.uuid,
                device,
                full_sync_base: meta.fullsync.as_ref().map(state_to_dto),
                done: snap_record(&meta.snaps.done),
                queue: meta.snaps.queue.iter().map(snap_record).collect(),
            }
        });
        StorageVolStatus {
            vol: v.name.clone(),
            state: v.core.state(),
            stop: stop_flag(v.core.stop_state()),
            actions: v
                .core
                .actions()
                .running()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            monitored: self.monitor.is_monitored(&v.name),
            meta: Some(meta),
        }
    }
}

fn snap_record(r: &walb_kernel::meta::MetaLsidGid) -> SnapRecord {
    SnapRecord {
        gid: r.gid,
        lsid: r.lsid,
        explicit: !r.mergeable,
        timestamp_s: r.timestamp,
    }
}

fn snap_info(vol: &str, r: &walb_kernel::meta::MetaLsidGid) -> SnapshotInfo {
    let valid = snap::is_valid(r);
    SnapshotInfo {
        vol: vol.to_owned(),
        gid: valid.then_some(r.gid),
        timestamp_s: r.timestamp,
        lsid: valid.then_some(r.lsid),
        explicit: !r.mergeable,
    }
}
