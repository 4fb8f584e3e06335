//! Virtual scans of a snapshot: the base image with the diffs up to the snapshot laid over
//! it on the fly, never written anywhere (walb-tools.md §5.16).
//!
//! `bhash` (`Query::BlockHash{vol, gid}`): MurmurHash3-x64-128 (seed 0) of the whole
//! virtual image of the clean snapshot `gid`, as walb-tools computes it, so that two
//! archives (or an archive and a device) can be compared without restoring anything. The
//! base is read with direct IO and the diffs are opened when the scan starts (a merge may
//! delete them meanwhile); an apply that moves the base during the scan is detected and
//! reported, and the hash is not given.
//!
//! `virt-full-scan` (`Command::VirtFullScan{vol, gid, bulk_lb}`, an operator's call): the
//! same image streamed to the caller. After `Reply::Accepted` the archive sends
//! `Step::Progress{done_lb: 0, total_lb: size}` (the image size), then the image in bulks
//! (all-zero bulks as `Step::Zero`, [`crate::bulk`]) and the bulk end; the caller writes
//! it, syncs and answers `Step::Ack`; the archive ends the call (or refuses it if an apply
//! moved the base meanwhile: the bytes sent are then not the snapshot). Progress:
//! `Event::Progress{op: "virt-full-scan"}`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};
use walb_kernel::block::LBS;
use walb_kernel::diff::merge::DiffMerger;
use walb_kernel::diff::virt::VirtualFullScan;
use walb_kernel::hash::Murmur3;
use walb_kernel::ldev::ReadAt;
use walb_kernel::meta::{MetaDiff, MetaState};
use walb_wire::{Call, ErrorCode, PeerId, Reply, Step, WireError};

use super::restore::open_round;
use super::vol::ArchiveVol;
use super::{backend_error, Archive};
use crate::bulk::{self, Bulk, ScanIo, READ_AHEAD};
use crate::session::{answer, blocking, refuse, Caller};
use crate::state::archive::ACTIVE_OR_STOPPED;

/// Bytes read per step of a scan.
const SCAN_CHUNK: usize = 1 << 20;
/// Name of the operation in events.
pub const OP_VIRT: &str = "virt-full-scan";
/// Default bulk of a virtual full scan: 1 MiB.
const VIRT_BULK_LB: u64 = 2048;

/// A virtual image read front to back, as `read(byte offset, buf)` for
/// [`crate::bulk::scan`] and [`crate::bulk::compare`] (offsets must follow each other).
pub(super) struct SeqRead<'a> {
    scan: VirtualFullScan<'a>,
    pos: u64,
}

impl<'a> SeqRead<'a> {
    pub(super) fn new(scan: VirtualFullScan<'a>) -> SeqRead<'a> {
        SeqRead { scan, pos: 0 }
    }

    /// Fills `buf` from byte `off`, which must be where the last read ended.
    pub(super) fn read(&mut self, off: u64, buf: &mut [u8]) -> walb_kernel::Result<()> {
        if off != self.pos {
            return Err(walb_kernel::Error::io(
                "reading the image",
                std::io::Error::other(format!("read at byte {off}, the scan is at {}", self.pos)),
            ));
        }
        let mut got = 0;
        while got < buf.len() {
            let k = self.scan.read_chunk(&mut buf[got..])?;
            if k == 0 {
                return Err(walb_kernel::Error::io(
                    "reading the image",
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the image ended at byte {}", self.pos + got as u64),
                    ),
                ));
            }
            got += k;
        }
        self.pos += got as u64;
        Ok(())
    }
}

impl Archive {
    /// `bhash vol gid` (see the module documentation).
    pub(super) async fn block_hash(
        self: &Arc<Self>,
        name: &str,
        gid: u64,
        caller: Option<&mut Caller<'_>>,
    ) -> Result<Reply, WireError> {
        let v = self.vol_in(name, ACTIVE_OR_STOPPED, "bhash")?;
        // The whole image is read: a foreground task like any other.
        let permit = self.ctx().fg_slot(caller, name, "bhash").await?;
        let me = Arc::clone(self);
        let r = blocking(move || me.hash_snapshot(&v, gid)).await?;
        drop(permit);
        r
    }

    /// The chain to scan snapshot `gid` of `v` and the base it starts from, refused
    /// unless `gid` is restorable.
    fn scan_chain(
        &self,
        v: &ArchiveVol,
        gid: u64,
        what: &str,
    ) -> Result<(MetaState, Vec<MetaDiff>), WireError> {
        let m = v.meta();
        if !m.diffs.clean_snapshots(&m.base).contains(&gid) {
            return Err(refuse(
                ErrorCode::NotFound,
                format!(
                    "volume {}: {gid} is not a restorable snapshot (see restorable {} all)",
                    v.name, v.name
                ),
            ));
        }
        let chain = m
            .diffs
            .diffs_to_scan(&m.base, gid, self.config().max_open)
            .ok_or_else(|| {
                refuse(
                    ErrorCode::Internal,
                    format!(
                        "volume {}: {what} of snapshot {gid} needs more than --max-open diffs: apply or merge first",
                        v.name
                    ),
                )
            })?;
        Ok((m.base, chain))
    }

    /// `virt-full-scan vol gid` (see the module documentation).
    pub(super) async fn virt_full_scan(
        self: &Arc<Self>,
        peer: PeerId,
        version: u16,
        mut call: Call,
        vol: String,
        gid: u64,
        bulk_lb: Option<u64>,
    ) {
        let bulk_lb = bulk_lb.unwrap_or(VIRT_BULK_LB);
        let accepted = (|| {
            if bulk_lb == 0 || bulk_lb > crate::bulk::MAX_BULK_LB {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!(
                        "bulk size {bulk_lb} blocks: it must be 1 to {}",
                        crate::bulk::MAX_BULK_LB
                    ),
                ));
            }
            let v = self.vol_in(&vol, ACTIVE_OR_STOPPED, "virt-full-scan")?;
            let (base, chain) = self.scan_chain(&v, gid, "a virtual full scan")?;
            let file = self.backend().open_base(&v.name).map_err(backend_error)?;
            Ok((v, base, chain, file))
        })();
        let (v, base_st, chain, file) = match accepted {
            Ok(x) => x,
            Err(e) => return answer(call, Err(e)).await,
        };
        // The whole image is read and sent: a foreground task like any other.
        let mut caller = Caller {
            peer: &peer,
            version,
            call: &mut call.sender,
        };
        let slot = self
            .ctx()
            .fg_slot(Some(&mut caller), &vol, "virt-full-scan")
            .await;
        let _permit = match slot {
            Ok(p) => p,
            Err(e) => return answer(call, Err(e)).await,
        };
        if call.reply(Reply::Accepted).await.is_err() {
            return;
        }
        let r = self
            .virt_body(&v, &mut call, gid, bulk_lb, chain, file)
            .await;
        v.set_progress(0);
        let r = r
            .and_then(|()| {
                if v.meta().base == base_st {
                    Ok(())
                } else {
                    Err(refuse(
                        ErrorCode::Busy,
                        format!(
                            "volume {}: the base moved during the scan (an apply ran): the image sent is not snapshot {gid}; scan again",
                            v.name
                        ),
                    ))
                }
            });
        match r {
            Ok(()) => {
                info!(%peer, vol = %v.name, gid, "virtual full scan sent");
                let _ = call.sender.finish();
            }
            Err(e) => {
                warn!(%peer, vol = %v.name, gid, "virtual full scan failed: {e}");
                call.receiver.stop();
                call.sender.refuse(e).await;
            }
        }
    }

    async fn virt_body(
        self: &Arc<Self>,
        v: &Arc<ArchiveVol>,
        call: &mut Call,
        gid: u64,
        bulk_lb: u64,
        chain: Vec<MetaDiff>,
        file: std::fs::File,
    ) -> Result<(), WireError> {
        let wire = |e: walb_wire::Error| e.to_wire();
        let base = walb_device::dio::DirectReader::from_file(file);
        let size_lb = ReadAt::size(&base)
            .map_err(|e| refuse(ErrorCode::Internal, format!("sizing the base image: {e}")))?
            / u64::from(LBS);
        call.sender
            .step(Step::Progress {
                done_lb: 0,
                total_lb: size_lb,
            })
            .await
            .map_err(wire)?;
        let (tx, rx) = mpsc::channel::<Bulk>(READ_AHEAD);
        let encoder = call.sender.encoder().map_err(wire)?;
        let abort = Arc::new(AtomicBool::new(false));
        let reader = {
            let (abort, me, v2) = (Arc::clone(&abort), Arc::clone(self), Arc::clone(v));
            tokio::task::spawn_blocking(move || -> Result<(), WireError> {
                let kerr = |e: walb_kernel::Error| {
                    refuse(
                        ErrorCode::Internal,
                        format!("reading the image of {}: {e}", v2.name),
                    )
                };
                let streams = open_round(&v2.dir, &chain)
                    .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
                let base_ref: &dyn ReadAt = &base;
                let scan = VirtualFullScan::new(
                    Some(base_ref),
                    size_lb,
                    Box::new(DiffMerger::new(streams)),
                )
                .map_err(kerr)?;
                let mut rd = SeqRead::new(scan);
                let io = ScanIo {
                    tx: &tx,
                    encoder,
                    abort: &abort,
                };
                let mut tick = super::Ticker::new(&me, &v2, OP_VIRT, 0, size_lb);
                bulk::scan(
                    &mut |off, buf| rd.read(off, buf),
                    0,
                    size_lb,
                    bulk_lb,
                    io,
                    &mut |bytes| tick.add_bytes(bytes),
                )
                .map_err(kerr)
            })
        };
        let cancelled = || self.cancel_error(v, "virt-full-scan");
        bulk::send_bulks(
            rx,
            reader,
            &abort,
            &mut call.sender,
            &cancelled,
            "image reader",
        )
        .await?;
        match call.receiver.step().await.map_err(wire)? {
            Step::Ack => Ok(()),
            other => Err(refuse(
                ErrorCode::BadRequest,
                format!(
                    "virt-full-scan of {gid}: expected the caller's acknowledgement, got {other:?}"
                ),
            )),
        }
    }

    /// The hash of the virtual image of `gid` (blocking).
    fn hash_snapshot(&self, v: &ArchiveVol, gid: u64) -> Result<Reply, WireError> {
        let (base_st, chain) = self.scan_chain(v, gid, "bhash")?;
        let kerr = |e: walb_kernel::Error| {
            refuse(
                ErrorCode::Internal,
                format!("reading the image of {}: {e}", v.name),
            )
        };
        let base = walb_device::dio::DirectReader::from_file(
            self.backend().open_base(&v.name).map_err(backend_error)?,
        );
        let size_lb = ReadAt::size(&base)
            .map_err(|e| refuse(ErrorCode::Internal, format!("sizing the base image: {e}")))?
            / u64::from(LBS);
        let streams =
            open_round(&v.dir, &chain).map_err(|e| refuse(ErrorCode::Internal, e.to_string()))?;
        let base_ref: &dyn ReadAt = &base;
        let mut scan =
            VirtualFullScan::new(Some(base_ref), size_lb, Box::new(DiffMerger::new(streams)))
                .map_err(kerr)?;
        let mut h = Murmur3::new(0);
        let mut buf = vec![0u8; SCAN_CHUNK];
        loop {
            if let Some(e) = self.cancel_error(v, "bhash") {
                return Err(e);
            }
            let n = scan.read_chunk(&mut buf).map_err(kerr)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        if v.meta().base != base_st {
            return Err(refuse(
                ErrorCode::Busy,
                format!(
                    "volume {}: the base moved during the scan (an apply ran); run bhash again",
                    v.name
                ),
            ));
        }
        Ok(Reply::Hash(h.finish()))
    }
}
