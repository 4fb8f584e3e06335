//! What the full and the hash backup ([`super::full`], [`super::hash`]) share: the
//! session the archive accepted, the wait for the archive's acknowledgements, the record
//! of the base a backup left, and the throttle of device reads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use walb_kernel::meta::{MetaSnap, MetaState};
use walb_wire::msg::{ErrorCode, Step, WireError};
use walb_wire::Call;

use super::{meta_error, Storage, Vol};
use crate::session::{ack_step, refuse};
use crate::state::storage::StorageState as S;
use crate::vol::Txn;

/// A full or hash backup the archive accepted.
pub(crate) struct Session {
    pub(crate) vol: Arc<Vol>,
    pub(super) txn: Txn<S>,
    pub(super) _permit: OwnedSemaphorePermit,
    pub(crate) call: Call,
    pub(crate) size_lb: u64,
    pub(crate) bulk_lb: u64,
    pub(crate) time_s: u64,
    pub(crate) path: String,
}

/// The archive's next step, which must be an ack of `what`.
pub(crate) async fn expect_ack(
    st: &Storage,
    vol: &Vol,
    call: &mut Call,
    what: &str,
) -> Result<(), WireError> {
    // The archive acknowledges once what it got is durable: longer than a step.
    let forced = async {
        st.forced(vol).await;
        refuse(
            ErrorCode::Cancelled,
            format!("volume {}: backup aborted by a forced stop", vol.name),
        )
    };
    let r = ack_step(&st.ctx, call, forced).await?;
    match r {
        Ok(Step::Ack) => Ok(()),
        Ok(other) => Err(refuse(
            ErrorCode::BadRequest,
            format!("the archive answered {other:?} to {what}, expected an ack"),
        )),
        Err(e) => Err(e.to_wire()),
    }
}

/// Records the meta state a full (`<|0,gidE|>`) or hash (`<|gidB,gidE|>`) backup left the
/// archive in: `get meta-state` on the storage answers it, and the console reads the gid
/// the image is clean at from it.
pub(crate) fn record_backup(
    vol: &Vol,
    gid_b: u64,
    gid_e: u64,
    time_s: u64,
) -> Result<(), WireError> {
    let base = MetaState::new(
        MetaSnap::new(gid_b, gid_e).map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?,
        time_s,
    );
    let mut g = vol.meta();
    if let Some(m) = g.as_mut() {
        super::vol::save_fullsync(&vol.dir, &base).map_err(|e| meta_error(&vol.name, &e))?;
        m.fullsync = Some(base);
    }
    Ok(())
}

/// Holds device reads to `--full-scan-bps` (changeable while a scan runs).
pub(crate) struct ScanThrottle {
    t0: Instant,
    since: u64,
    bps_seen: u64,
}

impl ScanThrottle {
    pub(crate) fn new(st: &Storage) -> ScanThrottle {
        ScanThrottle {
            t0: Instant::now(),
            since: 0,
            bps_seen: st.full_scan_bps.load(Ordering::Relaxed),
        }
    }

    /// After reading `bytes`: sleeps as long as the limit asks.
    pub(crate) fn read(&mut self, st: &Storage, bytes: u64) {
        // Restart the budget when the limit changes.
        let bps = st.full_scan_bps.load(Ordering::Relaxed);
        if bps != self.bps_seen {
            self.bps_seen = bps;
            self.t0 = Instant::now();
            self.since = 0;
        }
        self.since += bytes;
        if bps > 0 {
            let due = self.t0 + Duration::from_secs_f64(self.since as f64 / bps as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}
