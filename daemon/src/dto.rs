//! Conversions between the kernel's snapshot model and the wire's DTOs.
//!
//! Everything that arrives from a peer is validated on the way in (gid order, the
//! progress rule of diffs), so a malformed DTO becomes a `bad-request` refusal, never a
//! broken invariant inside a daemon.

use walb_kernel::meta::{MetaDiff, MetaSnap, MetaState};
use walb_wire::msg::{DiffRange, ErrorCode, MetaDiffDto, MetaStateDto, SnapDto, WireError};

fn bad(what: &str, e: walb_kernel::Error) -> WireError {
    WireError::new(ErrorCode::BadRequest, format!("invalid {what}: {e}"))
}

/// Kernel snapshot → DTO.
pub fn snap_to_dto(s: MetaSnap) -> SnapDto {
    SnapDto {
        gid_b: s.gid_b,
        gid_e: s.gid_e,
    }
}

/// DTO → kernel snapshot (validated).
pub fn snap_from_dto(d: SnapDto) -> Result<MetaSnap, WireError> {
    MetaSnap::new(d.gid_b, d.gid_e).map_err(|e| bad("snapshot", e))
}

/// Kernel diff → DTO (`size` = the file size).
pub fn diff_to_dto(d: &MetaDiff) -> MetaDiffDto {
    MetaDiffDto {
        range: DiffRange {
            snap_b: snap_to_dto(d.snap_b),
            snap_e: snap_to_dto(d.snap_e),
        },
        mergeable: d.mergeable,
        comp_diff: d.comp_diff,
        timestamp_s: d.timestamp,
        size: d.data_size,
    }
}

/// DTO → kernel diff (validated).
pub fn diff_from_dto(d: &MetaDiffDto) -> Result<MetaDiff, WireError> {
    let b = snap_from_dto(d.range.snap_b)?;
    let e = snap_from_dto(d.range.snap_e)?;
    Ok(MetaDiff::new(b, e)
        .map_err(|err| bad("diff", err))?
        .with_mergeable(d.mergeable)
        .with_comp_diff(d.comp_diff)
        .with_timestamp(d.timestamp_s)
        .with_data_size(d.size))
}

/// Kernel state → DTO (`snap_e` only while applying).
pub fn state_to_dto(s: &MetaState) -> MetaStateDto {
    MetaStateDto {
        snap_b: snap_to_dto(s.snap_b),
        snap_e: s.applying.then(|| snap_to_dto(s.snap_e)),
        timestamp_s: s.timestamp,
    }
}

/// DTO → kernel state (validated).
pub fn state_from_dto(d: &MetaStateDto) -> Result<MetaState, WireError> {
    let b = snap_from_dto(d.snap_b)?;
    match d.snap_e {
        None => Ok(MetaState::new(b, d.timestamp_s)),
        Some(e) => {
            let e = snap_from_dto(e)?;
            let mut st = MetaState::new(b, d.timestamp_s);
            st.snap_e = e;
            st.applying = true;
            Ok(st)
        }
    }
}

/// The stop flag as it travels.
pub fn stop_flag(s: crate::state::StopState) -> walb_wire::msg::StopFlag {
    use crate::state::StopState as S;
    use walb_wire::msg::StopFlag as F;
    match s {
        S::NotStopping => F::NotStopping,
        S::WaitingForEmpty => F::WaitingForEmpty,
        S::Stopping => F::Stopping,
        S::ForceStopping => F::ForceStopping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_gids() {
        let d = MetaDiff::clean(3, 7)
            .unwrap()
            .with_mergeable(true)
            .with_timestamp(42)
            .with_data_size(4128);
        assert_eq!(diff_from_dto(&diff_to_dto(&d)).unwrap(), d);
        let st = MetaState::new(MetaSnap::new(0, 9).unwrap(), 5);
        assert!(state_from_dto(&state_to_dto(&st))
            .unwrap()
            .same_snapshots(&st));
        let bad = SnapDto { gid_b: 5, gid_e: 4 };
        assert_eq!(snap_from_dto(bad).unwrap_err().code, ErrorCode::BadRequest);
        let mut dd = diff_to_dto(&d);
        dd.range.snap_e = SnapDto { gid_b: 1, gid_e: 1 };
        assert!(diff_from_dto(&dd).is_err());
    }
}
