//! Virtual scans of a snapshot: the base image with the diffs up to the snapshot laid over
//! it on the fly, never written anywhere (walb-tools.md §5.16).
//!
//! `bhash` (`Query::BlockHash{vol, gid}`): MurmurHash3-x64-128 (seed 0) of the whole
//! virtual image of the clean snapshot `gid`, as walb-tools computes it, so that two
//! archives (or an archive and a device) can be compared without restoring anything. The
//! base is read with direct IO and the diffs are opened when the scan starts (a merge may
//! delete them meanwhile); an apply that moves the base during the scan is detected and
//! reported, and the hash is not given.

use std::sync::Arc;

use walb_kernel::block::LBS;
use walb_kernel::diff::merge::DiffMerger;
use walb_kernel::diff::virt::VirtualFullScan;
use walb_kernel::hash::Murmur3;
use walb_kernel::ldev::ReadAt;
use walb_wire::{ErrorCode, Reply, WireError};

use super::restore::open_round;
use super::vol::ArchiveVol;
use super::{backend_error, blocking, Archive};
use crate::server::refuse;
use crate::state::archive::ACTIVE_OR_STOPPED;

/// Bytes read per step of a scan.
const SCAN_CHUNK: usize = 1 << 20;

impl Archive {
    /// `bhash vol gid` (see the module documentation).
    pub(super) async fn block_hash(
        self: &Arc<Self>,
        name: &str,
        gid: u64,
    ) -> Result<Reply, WireError> {
        let v = self.vol(name).ok_or_else(|| {
            refuse(
                ErrorCode::WrongState,
                format!("volume {name} is Clear; bhash needs an archived volume"),
            )
        })?;
        v.core.require(ACTIVE_OR_STOPPED)?;
        let me = Arc::clone(self);
        blocking(move || me.hash_snapshot(&v, gid)).await?
    }

    /// The hash of the virtual image of `gid` (blocking).
    fn hash_snapshot(&self, v: &ArchiveVol, gid: u64) -> Result<Reply, WireError> {
        let (base_st, chain) = {
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
                            "volume {}: snapshot {gid} needs more than --max-open diffs to scan: apply or merge first",
                            v.name
                        ),
                    )
                })?;
            (m.base, chain)
        };
        let kerr = |e: walb_kernel::Error| {
            refuse(
                ErrorCode::Internal,
                format!("reading the image of {}: {e}", v.name),
            )
        };
        let base = walb_kernel::dio::DirectReader::from_file(
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
            if self.aborting(v) {
                return Err(refuse(
                    ErrorCode::Cancelled,
                    format!("volume {}: bhash aborted (force stop or shutdown)", v.name),
                ));
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
