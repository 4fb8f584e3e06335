//! The hash backup client (walb-tools.md §5.5): only the blocks that differ from the
//! archive's latest snapshot cross the network.
//!
//! `hash-bkp` runs like a full backup ([`super::full::run`] with `SyncKind::Hash`: a
//! foreground slot, SyncReady → HashSync, `BackupSync::Hash` accepted by the primary
//! archive). Then:
//!
//! 1. the archive sends its latest snapshot `snapFrom`; the log is reset to start at
//!    `gidB = snapFrom.gidE + 1`, or after the newest gid this volume handed out if that
//!    is later (a gid is never given to two images), its new uuid is sent and acknowledged, and log
//!    monitoring starts (writes during the scan are shipped afterwards);
//! 2. the archive streams the hash of each bulk of its image of `snapFrom`; a blocking
//!    thread reads the same bulk of the device (throttled to `--full-scan-bps`), hashes it
//!    ([`walb_kernel::hash::bulk_hash`], seed = the session's start time) and, where they
//!    differ, adds the bulk to a SORTED wdiff (all-zero bulks as ALLZERO records) that
//!    streams to the archive as it is written; the bulk ends and the archive acks;
//! 3. an explicit snapshot `gidE` is taken and sent (`Step::MetaSnap(|gidB,gidE|)`); after
//!    the archive's ack the volume goes HashSync → Stopped → StartTarget → Target.
//!
//! The wdiff is a valid image of `snapFrom → |gidB,gidE|` because every block that may
//! differ is in it, read from the device after the log reset: writes made during the scan
//! are in it or in the log after `gidB` (both, at worst), and the log is applied after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::info;
use walb_wire::msg::{ErrorCode, SnapDto, Step, WireError};

use super::backup::{expect_ack, record_backup, ScanThrottle, Session};
use super::Storage;
use crate::bulk::{compare, Compare};
use crate::session::{blocking, expect, refuse, ChunkWriter, CHANNEL_DEPTH};

use crate::bulk::HASH_QUEUE;

/// The comparison of an accepted session (steps 1 to 3 above); the end snapshot's gid.
pub(super) async fn sync(st: &Arc<Storage>, s: &mut Session) -> Result<u64, WireError> {
    let vol = Arc::clone(&s.vol);
    // 1. The archive's latest snapshot; the log restarts after it.
    let (uuid, gid_b) = restart_log(st, s).await?;
    // 2. Hashes in, differences out.
    send_differences(st, s, uuid).await?;
    // 3. The end snapshot.
    let (s2, v2) = (Arc::clone(st), Arc::clone(&vol));
    let gid_e = blocking(move || s2.take_snapshot(&v2)).await??;
    st.monitor.push(&vol.name, Duration::ZERO);
    s.call
        .sender
        .step(Step::MetaSnap(SnapDto { gid_b, gid_e }))
        .await
        .map_err(|e| e.to_wire())?;
    expect_ack(st, &vol, &mut s.call, "the end snapshot").await?;
    let _ = s.call.sender.finish();
    record_backup(&vol, gid_b, gid_e, s.time_s)?;
    Ok(gid_e)
}

/// Takes the archive's latest snapshot, restarts the log after it (the new uuid is sent
/// and acknowledged) and starts the log monitoring; returns the uuid and the gid the
/// backup starts at.
async fn restart_log(st: &Arc<Storage>, s: &mut Session) -> Result<([u8; 16], u64), WireError> {
    let vol = Arc::clone(&s.vol);
    let snap_from = expect(
        &mut s.call,
        "hash backup",
        "the archive's latest snapshot",
        |step| match step {
            Step::MetaSnap(snap) => Ok(snap),
            other => Err(other),
        },
    )
    .await?;
    let floor = snap_from.gid_e.checked_add(1).ok_or_else(|| {
        refuse(
            ErrorCode::BadRequest,
            "hash backup: the archive's snapshot is at the last gid",
        )
    })?;
    let (s2, v2) = (Arc::clone(st), Arc::clone(&vol));
    let (uuid, gid_b) = blocking(move || {
        let gid_b = v2.meta().as_ref().map_or(floor, |m| m.restart_gid(floor));
        s2.reset_wlog(&v2, gid_b, false).map(|u| (u, gid_b))
    })
    .await??;
    s.call
        .sender
        .step(Step::Uuid(uuid))
        .await
        .map_err(|e| e.to_wire())?;
    expect_ack(st, &vol, &mut s.call, "the uuid").await?;
    st.start_monitoring(&vol)?;
    Ok((uuid, gid_b))
}

/// The exchange: the archive's bulk hashes in, the device's differing bulks out (a
/// sorted wdiff), read at `--full-scan-bps`; acknowledged.
async fn send_differences(
    st: &Arc<Storage>,
    s: &mut Session,
    uuid: [u8; 16],
) -> Result<(), WireError> {
    let vol = Arc::clone(&s.vol);
    let data = {
        let (s2, p2, v2) = (Arc::clone(st), s.path.clone(), Arc::clone(&vol));
        blocking(move || {
            s2.devices
                .open_data(&p2)
                .map_err(|e| super::dev_error(&v2.name, &p2, &e))
        })
        .await??
    };
    let bulks = s.size_lb.div_ceil(s.bulk_lb);
    let (htx, hrx) = mpsc::channel::<[u8; 16]>(HASH_QUEUE);
    let (ctx, mut crx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let abort = Arc::new(AtomicBool::new(false));
    let comparer = {
        let (st2, abort) = (Arc::clone(st), Arc::clone(&abort));
        let job = Compare {
            size_lb: s.size_lb,
            bulk_lb: s.bulk_lb,
            seed: s.time_s,
            uuid,
        };
        let (name, path) = (vol.name.clone(), s.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut data = data;
            let mut throttle = ScanThrottle::new(&st2);
            compare(
                &mut |off, buf| data.read_at(off, buf),
                &mut |bytes| throttle.read(&st2, bytes),
                &job,
                hrx,
                ChunkWriter::new(ctx),
                &abort,
            )
            .map_err(|e| super::dev_error(&name, &path, &e))
        })
    };
    let cancelled = || {
        (vol.core.stop_state().is_force() || st.ctx.is_force_shutdown()).then(|| {
            refuse(
                ErrorCode::Cancelled,
                format!("volume {}: hash backup aborted by a forced stop", vol.name),
            )
        })
    };
    // Returning drops the channels, which ends the device reader.
    let exchanged = crate::bulk::hashes_in_diff_out(
        &mut s.call,
        bulks,
        htx,
        &mut crx,
        &cancelled,
        "hash backup",
    )
    .await;
    if let Err(e) = exchanged {
        abort.store(true, Ordering::Relaxed);
        return Err(e);
    }
    let stats = comparer
        .await
        .map_err(|e| refuse(ErrorCode::Internal, format!("device reader failed: {e}")))??;
    s.call.sender.end_bulk().await.map_err(|e| e.to_wire())?;
    expect_ack(st, &vol, &mut s.call, "the diff").await?;
    info!(
        vol = %vol.name,
        bulks,
        differing = stats.0,
        bytes_sent = stats.1,
        "hash scan done"
    );
    Ok(())
}
