//! The archive's answers to queries (walb-tools.md §2.2) and its status lines.
//!
//! Answers are read from the volume's metadata under its lock (a consistent snapshot);
//! nothing here changes state. Unknown volumes are `Clear`. Queries about data
//! (restorable, base, uuids, sizes) need an active volume (or Stopped where walb-tools
//! allows it) and are refused with `wrong-state` otherwise, naming the state.

use std::sync::Arc;

use walb_kernel::meta::{ChainBound, MetaDiff, MetaSnap};
use walb_wire::msg::{Query, SnapshotInfo};
use walb_wire::{ErrorCode, Reply, WireError};

use super::vol::ArchiveVol;
use super::{backend_error, Archive};
use crate::dto;
use crate::session::{blocking, refuse, Caller};
use crate::state::archive::{action, ArchiveState as A, ACTIVE, ACTIVE_OR_STOPPED};
use crate::state::VolState;
use walb_kernel::wlog::uuid_hex as hex;

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
        Query::State { vol } => Ok(Reply::Text(a.state_of(&vol).name().to_owned())),
        Query::Peers { vol } => Ok(Reply::Peers(a.peers_of(&vol)?.to_dto())),
        Query::Vols => Ok(Reply::Lines(
            a.live_vols().iter().map(|v| v.name.clone()).collect(),
        )),
        Query::Status { vol: None } => Ok(Reply::Lines(summary(a))),
        Query::Status { vol: Some(vol) } => status(a, &vol).await.map(Reply::Lines),
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
        Query::AllActions => Ok(Reply::Lines(
            a.live_vols()
                .iter()
                .filter(|v| ACTIVE.contains(&v.state()))
                .map(|v| {
                    let acts = v.core.actions();
                    let mut line = v.name.clone();
                    for name in action::ALL {
                        let ts = acts.last_start(name).map_or(
                            "---".to_owned(),
                            walb_kernel::meta::timestamp::format_compact,
                        );
                        line.push_str(&format!(" {name} {} {ts}", acts.count(name)));
                    }
                    line
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
        Query::TsDelta => Ok(Reply::Lines(a.ts_delta_lines())),
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
            Ok(Reply::Lines(vec![
                format!("num_diff:{n}"),
                format!("total_diff_size:{size}"),
            ]))
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
            Ok(Reply::Lines(
                list.iter()
                    .map(|r| format!("{} {}", r.gid, r.path.display()))
                    .collect(),
            ))
        }
        Query::Cold { vol } => {
            a.vol_in(&vol, ACTIVE_OR_STOPPED, "cold")?;
            Ok(Reply::Lines(Vec::new()))
        }
        Query::Base { vol: Some(vol) } => {
            let v = a.vol_in(&vol, ACTIVE_OR_STOPPED, "base")?;
            let base = v.meta().base;
            Ok(Reply::MetaState(dto::state_to_dto(&base)))
        }
        Query::Base { vol: None } => Ok(Reply::Lines(
            a.live_vols()
                .iter()
                .filter(|v| ACTIVE.contains(&v.state()))
                .map(|v| format!("name:{}\tmetastate:{}", v.name, v.meta().base))
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

fn summary(a: &Archive) -> Vec<String> {
    let vols = a.live_vols();
    let mut out = vec![format!(
        "archive {} ({} backend): {} volume(s), uptime {}s",
        a.ctx().id,
        a.backend().kind(),
        vols.len(),
        a.ctx().uptime().as_secs()
    )];
    for v in vols {
        let m = v.meta();
        out.push(format!(
            "{} {} base:{} latest:{} diffs:{}",
            v.name,
            v.state().name(),
            m.base,
            m.latest_snapshot(),
            m.diffs.len()
        ));
    }
    out.extend(a.ctx().fg_status());
    out
}

fn diffs_total(diffs: &[MetaDiff]) -> u64 {
    diffs
        .iter()
        .fold(0u64, |s, d| s.saturating_add(d.data_size))
}

async fn status(a: &Arc<Archive>, name: &str) -> Result<Vec<String>, WireError> {
    let Some(v) = a.vol(name) else {
        return Ok(vec![format!("name:{name}"), "state:Clear".into()]);
    };
    let state = v.state();
    let mut out = vec![format!("name:{name}"), format!("state:{}", state.name())];
    if state == A::Clear {
        return Ok(out);
    }
    let (b, n) = (Arc::clone(a.backend()), name.to_owned());
    let (size, restored) = blocking(move || {
        let size = b.base_size_lb(&n)?;
        let restored = b.restored(&n)?;
        Ok::<_, super::backend::BackendError>((size, restored))
    })
    .await?
    .map_err(backend_error)?;
    {
        let m = v.meta();
        let diffs: Vec<MetaDiff> = m.diffs.iter().cloned().collect();
        out.push(format!("uuid:{}", hex(&m.uuid)));
        out.push(format!("archive_uuid:{}", hex(&m.archive_uuid)));
        out.push(format!("base:{}", m.base));
        let latest: MetaSnap = m.latest_snapshot();
        if !m.base.is_empty() {
            out.push(format!("latest:{latest}"));
        }
        out.push(match size {
            Some(s) => format!("base_image:{} size_lb:{s}", a.backend().kind()),
            None => "base_image:none".into(),
        });
        out.push(format!(
            "diffs:{} total_size:{}",
            diffs.len(),
            diffs_total(&diffs)
        ));
        for d in &diffs {
            out.push(format!("diff:{d}"));
        }
        let points = m.diffs.restorable(&m.base, false);
        let gids: Vec<String> = points.iter().map(|p| p.gid.to_string()).collect();
        out.push(format!("restorable:{}", gids.join(" ")));
    }
    for r in restored {
        let how = v
            .clone_method(r.gid)
            .map_or(String::new(), |h| format!(" ({h})"));
        out.push(format!("restored:{} {}{how}", r.gid, r.path.display()));
    }
    let acts = v.core.actions();
    let running = acts.running();
    if !running.is_empty() {
        out.push(format!("actions:{}", running.join(" ")));
    }
    if v.progress() > 0 {
        out.push(format!("progress_lb:{}", v.progress()));
    }
    if v.core.stop_state().is_stopping() {
        out.push("stopping:yes".into());
    }
    Ok(out)
}
