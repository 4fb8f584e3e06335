//! The archive's answers to queries (walb-tools.md §2.2) and its status lines.
//!
//! Answers are read from the volume's metadata under its lock (a consistent snapshot);
//! nothing here changes state. Unknown volumes are `Clear`. Queries about data
//! (restorable, base, uuids, sizes) need an active volume (or Stopped where walb-tools
//! allows it) and are refused with `wrong-state` otherwise, naming the state.

use std::sync::Arc;

use walb_kernel::meta::ChainBound;
use walb_wire::msg::{
    ActionCount, ArchiveSummary, ArchiveVolData, ArchiveVolLine, ArchiveVolStatus, DiffStats,
    Query, RestoredImage, SnapshotInfo, Status, VolActions, VolBase, VolumeState,
};
use walb_wire::{ErrorCode, Reply, WireError};

use super::vol::ArchiveVol;
use super::{backend_error, Archive};
use crate::dto;
use crate::session::{blocking, refuse, Caller};
use crate::state::archive::{action, ArchiveState as A, ACTIVE, ACTIVE_OR_STOPPED};

fn clear(vol: &str, what: &str) -> WireError {
    refuse(
        ErrorCode::WrongState,
        format!("volume {vol} is Clear; {what} needs an archived volume"),
    )
}

impl Archive {
    pub(super) fn vol_in(
        &self,
        name: &str,
        states: &[A],
        what: &str,
    ) -> Result<Arc<ArchiveVol>, WireError> {
        let v = self.vol(name).ok_or_else(|| clear(name, what))?;
        v.core.require(states)?;
        Ok(v)
    }

    /// Latest snapshots of `vols` (every active or stopped volume if `None`); unknown or
    /// inactive volumes get `gid: None`.
    pub fn latest_snaps(&self, vols: Option<&[String]>) -> Vec<SnapshotInfo> {
        let names: Vec<String> = match vols {
            Some(v) => v.to_vec(),
            None => self
                .live_vols()
                .iter()
                .filter(|v| ACTIVE_OR_STOPPED.contains(&v.state()))
                .map(|v| v.name.clone())
                .collect(),
        };
        names
            .into_iter()
            .map(|name| {
                let latest = self
                    .vol(&name)
                    .filter(|v| ACTIVE_OR_STOPPED.contains(&v.state()))
                    .map(|v| v.meta().latest_state());
                SnapshotInfo {
                    gid: latest.map(|s| s.snap_b.gid_b),
                    timestamp_s: latest.map_or(0, |s| s.timestamp),
                    lsid: None,
                    explicit: latest.is_some_and(|s| s.snap_b.is_clean()),
                    vol: name,
                }
            })
            .collect()
    }
}

/// Answers one query.
pub(super) async fn answer_query(
    a: &Arc<Archive>,
    q: Query,
    caller: Option<&mut Caller<'_>>,
) -> Result<Reply, WireError> {
    match q {
        Query::State { vol } => Ok(Reply::State(VolumeState::Archive(a.state_of(&vol)))),
        Query::Peers { vol } => Ok(Reply::Peers(a.peers_of(&vol)?.to_dto())),
        Query::Vols => Ok(Reply::Names(
            a.live_vols().iter().map(|v| v.name.clone()).collect(),
        )),
        Query::Status { vol: None } => Ok(Reply::Status(Box::new(Status::Archive(summary(a))))),
        Query::Status { vol: Some(vol) } => status(a, &vol)
            .await
            .map(|s| Reply::Status(Box::new(Status::ArchiveVol(s)))),
        Query::Progress { vol } => Ok(Reply::Number(a.vol(&vol).map_or(0, |v| v.progress()))),
        Query::NumAction { vol, action: name } => {
            if !action::ALL.contains(&name.as_str()) {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!("unknown action {name:?}: one of {}", action::ALL.join(", ")),
                ));
            }
            let v = a
                .vol(&vol)
                .filter(|v| v.state() != A::Clear)
                .ok_or_else(|| clear(&vol, "num-action"))?;
            Ok(Reply::Number(u64::from(v.core.actions().count(&name))))
        }
        Query::AllActions => Ok(Reply::Actions(
            a.live_vols()
                .iter()
                .filter(|v| ACTIVE.contains(&v.state()))
                .map(|v| {
                    let acts = v.core.actions();
                    VolActions {
                        vol: v.name.clone(),
                        actions: action::ALL
                            .iter()
                            .map(|name| ActionCount {
                                action: (*name).to_owned(),
                                running: acts.count(name),
                                last_start_s: acts.last_start(name),
                            })
                            .collect(),
                    }
                })
                .collect(),
        )),
        Query::LatestSnap { vol } => {
            if let Some(name) = &vol {
                a.vol_in(name, ACTIVE_OR_STOPPED, "latest-snap")?;
            }
            let vols = vol.map(|v| vec![v]);
            Ok(Reply::Snapshots(a.latest_snaps(vols.as_deref())))
        }
        Query::TsDelta => Ok(Reply::TsDelta(a.ts_delta_rows())),
        Query::Retention { vol } => a.retention(&vol),
        Query::BlockHash { vol, gid } => a.block_hash(&vol, gid, caller).await,
        Query::HostType | Query::Pid | Query::Version => {
            Err(refuse(ErrorCode::Internal, "answered by the server core"))
        }
        q @ (Query::Diff { .. }
        | Query::DiffStats { .. }
        | Query::ExistsDiff { .. }
        | Query::ApplicableDiff { .. }
        | Query::MetaState { .. }
        | Query::MetaSnap { .. }) => diff_query(a, q),
        q @ (Query::Restorable { .. }
        | Query::Restored { .. }
        | Query::Cold { .. }
        | Query::Base { .. }
        | Query::Uuid { .. }
        | Query::ArchiveUuid { .. }
        | Query::VolSize { .. }
        | Query::ExistsBaseImage { .. }) => image_query(a, q).await,
        other => Err(refuse(
            ErrorCode::Unsupported,
            format!("an archive does not answer {other:?}"),
        )),
    }
}

/// The queries about a volume's diffs and the snapshots they reach.
fn diff_query(a: &Archive, q: Query) -> Result<Reply, WireError> {
    match q {
        Query::Diff {
            vol, gid_b, gid_e, ..
        } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "diff")?;
            let m = v.meta();
            let diffs = m
                .diffs
                .range(gid_b.unwrap_or(0), gid_e.unwrap_or(u64::MAX))
                .map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
            Ok(Reply::Diffs(diffs.iter().map(dto::diff_to_dto).collect()))
        }
        Query::DiffStats { vol, gid_b, gid_e } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "diff stats")?;
            let m = v.meta();
            let (b, e) = (gid_b.unwrap_or(0), gid_e.unwrap_or(u64::MAX));
            let bad = |e: walb_kernel::Error| refuse(ErrorCode::BadRequest, e.to_string());
            let n = m.diffs.count_range(b, e).map_err(bad)?;
            let size = m.diffs.total_size_range(b, e).map_err(bad)?;
            Ok(Reply::DiffStats(DiffStats {
                num: n as u64,
                total_size: size,
            }))
        }
        Query::ExistsDiff { vol, diff } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "exists-diff")?;
            let b = dto::snap_from_dto(diff.snap_b)?;
            let e = dto::snap_from_dto(diff.snap_e)?;
            let exists = v.meta().diffs.get(b, e).is_some();
            Ok(Reply::Bool(exists))
        }
        Query::ApplicableDiff { vol, gid_max } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "applicable-diff")?;
            let m = v.meta();
            let bound = gid_max.map_or(ChainBound::NONE, ChainBound::gid);
            let chain = m.diffs.applicable_chain(m.base.snap_b, bound);
            Ok(Reply::Diffs(chain.iter().map(dto::diff_to_dto).collect()))
        }
        Query::MetaState { vol, applying, gid } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "meta-state")?;
            let m = v.meta();
            let bound = gid.map_or(ChainBound::NONE, ChainBound::gid);
            let st = m
                .diffs
                .chain_state(&m.base, bound, applying)
                .map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
            Ok(Reply::MetaState(dto::state_to_dto(&st)))
        }
        Query::MetaSnap { vol, gid } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "meta-snap")?;
            let m = v.meta();
            let bound = gid.map_or(ChainBound::NONE, ChainBound::gid);
            let snap = m.diffs.chain_snapshot(&m.base, bound);
            let st = m.diffs.chain_state(&m.base, bound, false).unwrap_or(m.base);
            Ok(Reply::MetaState(dto::state_to_dto(
                &walb_kernel::meta::MetaState::new(snap, st.timestamp),
            )))
        }
        other => Err(refuse(
            ErrorCode::Internal,
            format!("not a diff query: {other:?}"),
        )),
    }
}

/// The queries about a volume's base image, its uuids and the restored images.
async fn image_query(a: &Arc<Archive>, q: Query) -> Result<Reply, WireError> {
    match q {
        Query::Restorable { vol, all } => {
            let Some(v) = a.vol(&vol).filter(|v| ACTIVE.contains(&v.state())) else {
                return Ok(Reply::Snapshots(Vec::new()));
            };
            let m = v.meta();
            let points = m.diffs.restorable(&m.base, all);
            Ok(Reply::Snapshots(
                points
                    .iter()
                    .map(|p| SnapshotInfo {
                        vol: vol.clone(),
                        gid: Some(p.gid),
                        timestamp_s: p.timestamp,
                        lsid: None,
                        explicit: p.explicit,
                    })
                    .collect(),
            ))
        }
        Query::Restored { vol } => {
            a.vol_in(&vol, ACTIVE_OR_STOPPED, "restored")?;
            let (b, n) = (Arc::clone(a.backend()), vol.clone());
            let list = blocking(move || b.restored(&n))
                .await?
                .map_err(backend_error)?;
            let v = a.vol(&vol);
            Ok(Reply::Restored(
                list.iter().map(|r| restored(v.as_deref(), r)).collect(),
            ))
        }
        Query::Cold { vol } => {
            a.vol_in(&vol, ACTIVE_OR_STOPPED, "cold")?;
            Ok(Reply::Names(Vec::new()))
        }
        Query::Base { vol: Some(vol) } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "base")?;
            let base = v.meta().base;
            Ok(Reply::MetaState(dto::state_to_dto(&base)))
        }
        Query::Base { vol: None } => Ok(Reply::Bases(
            a.live_vols()
                .iter()
                .filter(|v| ACTIVE.contains(&v.state()))
                .map(|v| VolBase {
                    vol: v.name.clone(),
                    base: dto::state_to_dto(&v.meta().base),
                })
                .collect(),
        )),
        Query::Uuid { vol } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "uuid")?;
            let u = v.meta().uuid;
            Ok(Reply::Uuid(u))
        }
        Query::ArchiveUuid { vol } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "archive-uuid")?;
            let u = v.meta().archive_uuid;
            Ok(Reply::Uuid(u))
        }
        Query::VolSize { vol } => {
            a.vol_in(&vol, ACTIVE_OR_STOPPED, "vol-size")?;
            let size = a
                .backend()
                .base_size_lb(&vol)
                .map_err(backend_error)?
                .ok_or_else(|| {
                    refuse(
                        ErrorCode::NotFound,
                        format!("volume {vol} has no base image"),
                    )
                })?;
            Ok(Reply::Number(size))
        }
        Query::ExistsBaseImage { vol } => {
            let exists = a.state_of(&vol) != A::Clear
                && a.backend()
                    .base_size_lb(&vol)
                    .map_err(backend_error)?
                    .is_some();
            Ok(Reply::Bool(exists))
        }
        other => Err(refuse(
            ErrorCode::Internal,
            format!("not an image query: {other:?}"),
        )),
    }
}

fn summary(a: &Archive) -> ArchiveSummary {
    let vols = a
        .live_vols()
        .iter()
        .map(|v| {
            let m = v.meta();
            ArchiveVolLine {
                vol: v.name.clone(),
                state: v.state(),
                base: dto::state_to_dto(&m.base),
                latest: dto::snap_to_dto(m.latest_snapshot()),
                diffs: m.diffs.len() as u64,
            }
        })
        .collect();
    ArchiveSummary {
        node_id: a.ctx().id.to_string(),
        backend: a.backend().kind().to_string(),
        uptime_s: a.ctx().uptime().as_secs(),
        vols,
        fg: a.ctx().fg_status(),
    }
}

/// A restored image as it travels (`v`: its volume, for how it was made).
fn restored(v: Option<&ArchiveVol>, r: &super::backend::RestoredImage) -> RestoredImage {
    RestoredImage {
        gid: r.gid,
        path: r.path.display().to_string(),
        how: v.and_then(|v| v.clone_method(r.gid)).map(|h| h.to_string()),
    }
}

async fn status(a: &Arc<Archive>, name: &str) -> Result<ArchiveVolStatus, WireError> {
    let Some(v) = a.vol(name) else {
        return Ok(ArchiveVolStatus {
            vol: name.to_owned(),
            state: A::Clear,
            data: None,
        });
    };
    let state = v.state();
    if state == A::Clear {
        return Ok(ArchiveVolStatus {
            vol: name.to_owned(),
            state,
            data: None,
        });
    }
    let (b, n) = (Arc::clone(a.backend()), name.to_owned());
    let (size, restored_list) = blocking(move || {
        let size = b.base_size_lb(&n)?;
        let restored = b.restored(&n)?;
        Ok::<_, super::backend::BackendError>((size, restored))
    })
    .await?
    .map_err(backend_error)?;
    let m = v.meta();
    let data = ArchiveVolData {
        uuid: m.uuid,
        archive_uuid: m.archive_uuid,
        base: dto::state_to_dto(&m.base),
        latest: (!m.base.is_empty()).then(|| dto::snap_to_dto(m.latest_snapshot())),
        base_image: size.map(|s| (a.backend().kind().to_string(), s)),
        diffs: m.diffs.iter().map(dto::diff_to_dto).collect(),
        restorable: m
            .diffs
            .restorable(&m.base, false)
            .iter()
            .map(|p| p.gid)
            .collect(),
        restored: restored_list
            .iter()
            .map(|r| restored(Some(&v), r))
            .collect(),
        actions: v
            .core
            .actions()
            .running()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        progress_lb: v.progress(),
        stopping: v.core.stop_state().is_stopping(),
    };
    drop(m);
    Ok(ArchiveVolStatus {
        vol: name.to_owned(),
        state,
        data: Some(data),
    })
}
