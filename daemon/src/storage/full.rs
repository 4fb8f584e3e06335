//! The full backup client (Protocol 3, walb-tools.md §5.4).
//!
//! `full-bkp` takes a foreground slot (waiting its turn in the queue when every slot is
//! taken, the controller told where it stands: [`crate::fgq`]), moves the volume SyncReady → FullSync and asks the
//! primary archive (`BackupSync::Full`). The controller gets `Accepted` once the archive
//! accepted (or the archive's refusal; while the request waits in the archive's queue,
//! the archive's notes go on to the controller). Then, with the volume in FullSync:
//!
//! 1. the log is reset (device `reset_wal`; done record `(0, 0)`; uuid from the new
//!    superblock), the uuid is sent (`Step::Uuid`) and acknowledged, and log monitoring
//!    starts: logs written during the copy are kept and shipped by the worker;
//! 2. the device is read in address order in bulks of `bulk_lb` blocks, throttled to
//!    `--full-scan-bps` (changeable with `set-full-scan-bps`); an all-zero bulk is sent as
//!    `Step::Zero`, any other as one chunk; then the bulk ends and the archive acks;
//! 3. an explicit snapshot `gidE` is taken and sent (`Step::MetaSnap(|0,gidE|)`); after
//!    the archive's ack the base `<|0,gidE|>` is recorded (`fullsync`) and the volume goes
//!    FullSync → Stopped → StartTarget → Target.
//!
//! Any error, a forced stop or a shutdown rolls the volume back to SyncReady (the
//! transaction guard) and stops the monitoring; the archive call is reset.
//!
//! The hash backup ([`super::hash`]) is run the same way ([`run`] with
//! [`SyncKind::Hash`]: opened by [`begin`], concluded by [`conclude`]); what both share
//! (the session, the acks, the read throttle) is [`super::backup`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info};
use walb_wire::frame::ChunkEncoder;
use walb_wire::msg::{
    BackupSync, ErrorCode, Event, Reply, Request, SnapDto, Step, SyncStart, WireError,
};
use walb_wire::Call;

use crate::bulk::{self, Bulk, ScanIo, DEFAULT_BULK_LB, MAX_BULK_LB, READ_AHEAD};
use crate::session::{answer, blocking, refuse, CallError, Caller};
use crate::state::storage::StorageState as S;

use super::backup::{expect_ack, record_backup, ScanThrottle, Session};
use super::Storage;

/// How long the archive may take to accept.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The operation of a failed full backup's [`Event::Failed`] (the console waits for it).
pub(crate) const OP_FULL: &str = "full-backup";
/// The operation of a failed hash backup's [`Event::Failed`].
pub(crate) const OP_HASH: &str = "hash-backup";

/// Which backup a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncKind {
    /// Every block (SyncReady → FullSync).
    Full,
    /// The blocks whose hash differs from the archive's (SyncReady → HashSync).
    Hash,
}

impl SyncKind {
    fn state(self) -> S {
        match self {
            SyncKind::Full => S::FullSync,
            SyncKind::Hash => S::HashSync,
        }
    }

    /// The operation's name in progress and queue events.
    fn op(self) -> &'static str {
        match self {
            SyncKind::Full => "full-sync",
            SyncKind::Hash => "hash-sync",
        }
    }

    fn name(self) -> &'static str {
        match self {
            SyncKind::Full => "full backup",
            SyncKind::Hash => "hash backup",
        }
    }

    /// The operation named in its failure event ([`Event::Failed`]).
    pub(crate) fn failed_op(self) -> &'static str {
        match self {
            SyncKind::Full => OP_FULL,
            SyncKind::Hash => OP_HASH,
        }
    }
}

/// Runs `full-bkp` or `hash-bkp`: answers the controller, then copies (or compares, in
/// [`super::hash`]) in the background of this call.
pub(crate) async fn run(
    st: Arc<Storage>,
    inc: walb_wire::IncomingCall,
    vol: String,
    bulk_lb: Option<u64>,
    kind: SyncKind,
) {
    let walb_wire::IncomingCall {
        peer,
        version,
        mut call,
        ..
    } = inc;
    let mut caller = Caller {
        peer: &peer,
        version,
        call: &mut call.sender,
    };
    let began = begin(&st, &vol, bulk_lb, kind, &mut caller).await;
    let mut sess = match began {
        Ok(s) => s,
        Err(e) => {
            info!(vol = %vol, "{} refused: {e}", kind.name());
            answer(call, Err(e)).await;
            return;
        }
    };
    answer(call, Ok(Reply::Accepted)).await;
    let name = sess.vol.name.clone();
    let r = match kind {
        SyncKind::Full => copy(&st, &mut sess).await,
        SyncKind::Hash => super::hash::sync(&st, &mut sess).await,
    };
    match conclude(&st, sess, r).await {
        Ok(gid) => info!(vol = %name, gid, "{} done; volume is Target", kind.name()),
        Err(e) => {
            error!(
                vol = %name,
                "{} failed, volume back to SyncReady: {e}",
                kind.name()
            );
            // The console waiting for the backup tells the operator why.
            st.ctx.node.publish(Event::Failed {
                vol: name,
                op: kind.failed_op().into(),
                error: format!("{} failed: {e}", kind.name()),
            });
        }
    }
}

/// Opens a full or hash backup: checks, SyncReady → FullSync/HashSync, the archive's
/// acceptance.
async fn begin(
    st: &Arc<Storage>,
    name: &str,
    bulk_lb: Option<u64>,
    kind: SyncKind,
    caller: &mut Caller<'_>,
) -> Result<Session, WireError> {
    let bulk_lb = bulk_lb.unwrap_or(DEFAULT_BULK_LB);
    if bulk_lb == 0 || bulk_lb > MAX_BULK_LB {
        return Err(refuse(
            ErrorCode::BadRequest,
            format!("bulk size {bulk_lb} blocks: it must be 1 to {MAX_BULK_LB} (4 MiB)"),
        ));
    }
    let vol = st.vol_or_clear(name)?;
    let permit = st.ctx.fg_slot(Some(&mut *caller), name, kind.op()).await?;
    if vol.core.stop_state().is_stopping() {
        return Err(crate::vol::VolError::Stopping {
            vol: name.to_owned(),
        }
        .into());
    }
    let txn = vol.core.begin(&[S::SyncReady], kind.state())?;
    let path = vol.meta_copy()?.wdev_path;
    let (s2, v2, p2) = (Arc::clone(st), Arc::clone(&vol), path.clone());
    let size_lb = blocking(move || {
        s2.open_dev(&v2, &p2).and_then(|d| {
            d.info()
                .map(|i| i.size_lb)
                .map_err(|e| super::dev_error(&v2.name, &p2, &e))
        })
    })
    .await??;
    let time_s = st.ctx.clock.now_s();
    let archive = st.cfg.archive.clone();
    let unreachable = |e: String| {
        refuse(
            ErrorCode::Internal,
            format!("volume {name}: cannot reach the archive {archive}: {e}"),
        )
    };
    let start = SyncStart {
        vol: name.to_owned(),
        size_lb,
        time_s,
        bulk_lb,
    };
    let req = Request::BackupSync(match kind {
        SyncKind::Full => BackupSync::Full(start),
        SyncKind::Hash => BackupSync::Hash(start),
    });
    let r = match st
        .ctx
        .call_first_reply(&archive, req, ACCEPT_TIMEOUT, Some(caller))
        .await
    {
        Ok(x) => Ok(x),
        Err(CallError::Wire(e)) => Err(e),
        Err(CallError::Unreachable(why)) => return Err(unreachable(why)),
    };
    match r {
        Ok((call, Reply::Accepted)) => Ok(Session {
            vol,
            txn,
            _permit: permit,
            call,
            size_lb,
            bulk_lb,
            time_s,
            path,
        }),
        Ok((mut call, other)) => {
            call.sender.reset();
            Err(refuse(
                ErrorCode::Internal,
                format!("volume {name}: the archive {archive} answered {other:?}"),
            ))
        }
        Err(walb_wire::Error::Remote(e)) => Err(WireError::new(
            e.code,
            format!(
                "volume {name}: the archive {archive} refused the {}: {}",
                kind.name(),
                e.message
            ),
        )),
        Err(e) => Err(unreachable(e.to_string())),
    }
}

/// Ends a session: after a failure the call is reset and monitoring stops (the
/// transaction rolls the volume back to SyncReady); after success the volume goes
/// FullSync/HashSync → Stopped → StartTarget → Target.
async fn conclude(
    st: &Arc<Storage>,
    s: Session,
    r: Result<u64, WireError>,
) -> Result<u64, WireError> {
    let Session { vol, txn, call, .. } = s;
    let mut call = call;
    let gid_e = match r {
        Ok(g) => g,
        Err(e) => {
            let e = archive_reason(&mut call, e).await;
            call.sender.reset();
            call.receiver.stop();
            st.stop_monitoring(&vol.name);
            return Err(e);
        }
    };
    let r = (|| -> Result<(), WireError> {
        txn.commit(S::Stopped)?;
        vol.core
            .begin(&[S::Stopped], S::StartTarget)?
            .commit(S::Target)?;
        Ok(())
    })();
    if r.is_err() {
        st.stop_monitoring(&vol.name);
    }
    r.map(|()| gid_e)
}

/// How long a failed backup waits for the archive's own error.
const REASON_WAIT: Duration = Duration::from_secs(1);

/// The archive's reason for a failure seen on our side of the call: an archive that
/// fails (its disk full, ...) stops our sending and answers with its error, which says
/// more than "sending stopped by peer". `e` itself when the archive said nothing more
/// within [`REASON_WAIT`], or when the failure is ours (a forced stop).
async fn archive_reason(call: &mut Call, e: WireError) -> WireError {
    if e.code == ErrorCode::Cancelled {
        return e;
    }
    match tokio::time::timeout(REASON_WAIT, call.receiver.step()).await {
        Ok(Err(walb_wire::Error::Remote(w))) if w != e => {
            WireError::new(w.code, format!("the archive: {}", w.message))
        }
        _ => e,
    }
}

async fn copy(st: &Arc<Storage>, s: &mut Session) -> Result<u64, WireError> {
    let vol = Arc::clone(&s.vol);
    // 1. Reset the log; the uuid goes to the archive.
    let (s2, v2) = (Arc::clone(st), Arc::clone(&vol));
    let uuid = blocking(move || s2.reset_wlog(&v2, 0, false)).await??;
    let wire = |e: walb_wire::Error| e.to_wire();
    s.call.sender.step(Step::Uuid(uuid)).await.map_err(wire)?;
    expect_ack(st, &vol, &mut s.call, "the uuid").await?;
    st.start_monitoring(&vol)?;
    // 2. The image.
    let data = {
        let (s2, p2) = (Arc::clone(st), s.path.clone());
        let v2 = Arc::clone(&vol);
        blocking(move || {
            s2.devices
                .open_data(&p2)
                .map_err(|e| super::dev_error(&v2.name, &p2, &e))
        })
        .await??
    };
    let (tx, rx) = mpsc::channel::<Bulk>(READ_AHEAD);
    // The reader thread also encodes (checksum, compression): the next bulk is read and
    // compressed while this one is sent.
    let encoder = ChunkEncoder::new(st.cfg.sync_level)
        .map_err(|e| refuse(ErrorCode::Internal, format!("the chunk encoder: {e}")))?;
    let abort = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (abort, st2) = (Arc::clone(&abort), Arc::clone(st));
        let (size_lb, bulk_lb, name, path) =
            (s.size_lb, s.bulk_lb, vol.name.clone(), s.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut data = data;
            let io = ScanIo {
                tx: &tx,
                encoder,
                abort: &abort,
            };
            let mut throttle = ScanThrottle::new(&st2);
            bulk::scan(
                &mut |off, buf| data.read_at(off, buf),
                0,
                size_lb,
                bulk_lb,
                io,
                &mut |bytes| throttle.read(&st2, bytes),
            )
            .map_err(|e| super::dev_error(&name, &path, &e))
        })
    };
    let cancelled = || {
        (vol.core.stop_state().is_force() || st.ctx.is_force_shutdown()).then(|| {
            refuse(
                ErrorCode::Cancelled,
                format!("volume {}: full backup aborted by a forced stop", vol.name),
            )
        })
    };
    bulk::send_bulks(
        rx,
        scanner,
        &abort,
        &mut s.call.sender,
        &cancelled,
        "device reader failed",
    )
    .await?;
    expect_ack(st, &vol, &mut s.call, "the image").await?;
    // 3. The end snapshot.
    let (s2, v2) = (Arc::clone(st), Arc::clone(&vol));
    let gid_e = blocking(move || s2.take_snapshot(&v2)).await??;
    st.monitor.push(&vol.name, Duration::ZERO);
    s.call
        .sender
        .step(Step::MetaSnap(SnapDto { gid_b: 0, gid_e }))
        .await
        .map_err(wire)?;
    expect_ack(st, &vol, &mut s.call, "the end snapshot").await?;
    let _ = s.call.sender.finish();
    record_backup(&vol, 0, gid_e, s.time_s)?;
    Ok(gid_e)
}
