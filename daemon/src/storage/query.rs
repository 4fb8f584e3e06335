//! The storage's queries (walb-tools.md §2.2): state, volumes, status, latest snapshot,
//! log usage, overflow, uuid, and the meta state of the last full backup.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use walb_wire::msg::{ErrorCode, Query, Reply, SnapshotInfo, WireError};

use crate::dto::state_to_dto;
use crate::session::{blocking, refuse};
use crate::state::storage::StorageState as S;
use crate::state::VolState;

use super::{dev_error, rec_line, snap, Storage, Vol};

impl Storage {
    /// Answers a query.
    pub(crate) async fn query(self: &Arc<Self>, q: Query) -> Result<Reply, WireError> {
        match q {
            Query::State { vol } => Ok(Reply::Text(
                self.get_vol(&vol)
                    .map(|v| v.core.state())
                    .unwrap_or(S::Clear)
                    .name()
                    .to_owned(),
            )),
            Query::Vols => Ok(Reply::Lines(
                self.all_vols()
                    .iter()
                    .filter(|v| v.core.state() != S::Clear)
                    .map(|v| v.name.clone())
                    .collect(),
            )),
            Query::Status { vol: None } => Ok(Reply::Lines(self.global_status())),
            Query::Status { vol: Some(vol) } => {
                let v = self.get_vol(&vol);
                match v {
                    Some(v) if v.core.state() != S::Clear => {
                        let s2 = Arc::clone(self);
                        Ok(Reply::Lines(blocking(move || s2.vol_status(&v)).await?))
                    }
                    _ => Ok(Reply::Lines(vec![
                        "hostType storage".into(),
                        format!("volId {vol}"),
                        "state Clear".into(),
                    ])),
                }
            }
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
            Query::LogUsage { vol } => {
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
                let lines = blocking(move || {
                    let mut out = Vec::new();
                    for v in &vols {
                        match s2.log_usage_line(v) {
                            Ok(l) => out.push(l),
                            Err(e) if single => return Err(e),
                            Err(_) => {}
                        }
                    }
                    Ok(out)
                })
                .await??;
                Ok(Reply::Lines(lines))
            }
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
            Query::TsDelta => Ok(Reply::Lines(self.ts_delta_lines())),
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

    fn log_usage_line(&self, v: &Vol) -> Result<String, WireError> {
        let path = v.meta_copy()?.wdev_path;
        let de = |e: walb_kernel::Error| dev_error(&v.name, &path, &e);
        let dev = self.devices.open(&path).map_err(de)?;
        let usage = dev.log_usage().map_err(de)?;
        let cap = dev.log_capacity().map_err(de)?;
        let pbs = dev.info().map_err(de)?.pbs;
        Ok(format!(
            "name:{}\tusage_pb:{usage}\tcapacity_pb:{cap}\tpbs:{pbs}",
            v.name
        ))
    }

    fn global_status(&self) -> Vec<String> {
        let mut v = vec![
            "hostType storage".to_owned(),
            format!("nodeId {}", self.ctx.id),
            format!("uptime {}s", self.ctx.uptime().as_secs()),
            format!("baseDir {}", self.ctx.base.path().display()),
            format!("archive {}", self.cfg.archive),
        ];
        v.extend(self.proxies.lines());
        v.push(format!("maxWlogSendMb {}", self.cfg.max_wlog_send_mb));
        v.push(format!(
            "snapshotIntervalS {}",
            self.cfg.snapshot_interval_s
        ));
        v.push(format!(
            "fullScanBps {}",
            self.full_scan_bps.load(Ordering::Relaxed)
        ));
        v.push(format!("scheduledTasks {}", self.monitor.scheduled()));
        v.push(
            self.ts_delta
                .status_line(self.cfg.ts_delta_interval, self.ctx.clock.instant()),
        );
        v.extend(self.ctx.fg_status());
        for vol in self.all_vols() {
            let st = vol.core.state();
            if st == S::Clear {
                continue;
            }
            let (oldest, latest) = vol
                .meta()
                .as_ref()
                .map(|m| (m.snaps.done.gid, m.snaps.latest().gid))
                .unwrap_or((u64::MAX, u64::MAX));
            v.push(format!(
                "volume {} state {} oldestGid {} latestGid {}",
                vol.name,
                st.name(),
                gid_text(oldest),
                gid_text(latest)
            ));
        }
        v
    }

    /// Status lines of one volume (blocking: asks the device).
    fn vol_status(&self, v: &Vol) -> Vec<String> {
        let mut out = vec![
            "hostType storage".to_owned(),
            format!("volId {}", v.name),
            format!("state {}", v.core.state().name()),
            format!("stopState {:?}", v.core.stop_state()),
            format!("actions {:?}", v.core.actions().running()),
            format!(
                "isUnderMonitoring {}",
                u8::from(self.monitor.is_monitored(&v.name))
            ),
        ];
        let meta = match v.meta_copy() {
            Ok(m) => m,
            Err(e) => {
                out.push(format!("error {}", e.message));
                return out;
            }
        };
        out.push(format!("wdevPath {}", meta.wdev_path));
        out.push(format!("uuid {}", walb_kernel::wlog::uuid_hex(&meta.uuid)));
        match self.devices.open(&meta.wdev_path).and_then(|d| {
            let info = d.info()?;
            let l = d.lsids()?;
            Ok(vec![
                format!("sizeLb {}", info.size_lb),
                format!("isOverflow {}", u8::from(d.is_overflow()?)),
                format!("logUsagePb {}", d.log_usage()?),
                format!("logCapacityPb {}", d.log_capacity()?),
                format!("pbs {}", info.pbs),
                format!(
                    "lsids oldest {} prevWritten {} written {} permanent {} latest {}",
                    l.oldest, l.prev_written, l.written, l.permanent, l.latest
                ),
            ])
        }) {
            Ok(lines) => out.extend(lines),
            Err(e) => out.push(format!("deviceError {e}")),
        }
        if let Some(st) = &meta.fullsync {
            out.push(format!("fullSyncBase {st}"));
        }
        out.push(format!("done {}", rec_line(&meta.snaps.done)));
        out.push(format!("queue {}", meta.snaps.queue.len()));
        out.extend(
            meta.snaps
                .queue
                .iter()
                .map(|r| format!("queued {}", rec_line(r))),
        );
        out
    }
}

fn gid_text(g: u64) -> String {
    if g == u64::MAX {
        "-".to_owned()
    } else {
        g.to_string()
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
