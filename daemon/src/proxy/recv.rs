//! Protocol 1, server side: a storage ships a range of log packs; the proxy turns them
//! into one indexed wdiff and queues it for every archive.
//!
//! The storage sends the packs exactly as they are on its log device (header block, data
//! blocks), in lsid order, as one byte stream cut into chunks anywhere, then ends the bulk
//! and sends the diff's metadata. [`PackStream`] parses that stream with the request's
//! salt and block size: every header and data checksum is verified, lsids must be
//! contiguous, and the stream may not exceed the size the request announced. The kernel
//! converter ([`convert_packs`]) runs on a blocking thread, reading the stream through a
//! [`ChannelReader`] that the async call feeds, and writes an indexed zstd wdiff to a
//! temporary file (direct IO where the file system has it), which is hard-linked into
//! every queue as `<diff name>.unsynced` ([`super::vol::register_received`]); the
//! forwards to the archives may start then, while the file is fsynced, its queue names
//! renamed to the diff's name and the queue directories fsynced
//! ([`super::vol::sync_received`]); only then the storage gets `Step::Ack`. A crash
//! before that leaves only `.unsynced` names, which the proxy deletes when it starts.
//! On any failure the storage gets the error (corrupt, truncated, ...) and nothing is
//! kept.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use walb_kernel::block::Pbs;
use walb_kernel::compress::CompressOpt;
use walb_kernel::diff::convert::{convert_packs, ConvertOpt};
use walb_kernel::logpack::{LogPack, LogPackHeader};
use walb_kernel::meta::{diff_file_name, MetaDiff};
use walb_kernel::wdiff::WdiffKind;
use walb_kernel::{Error as KError, Location};
use walb_wire::msg::{ErrorCode, Reply, Step, WireError, WlogTransfer};
use walb_wire::{Call, PeerId};

use super::vol::{register_received, sync_received, temp_in_received};
use super::Proxy;
use crate::dio::DirectWriter;
use crate::dto::diff_from_dto;
use crate::peers::{Access, VolPeers};
use crate::session::{
    internal, kernel_error, refuse, ChannelReader, Piece, TempFile, CHANNEL_DEPTH,
};
use crate::state::proxy::ProxyState as P;
use crate::state::StopState;

/// The most a pack read reserves before its bytes arrive.
const READ_RESERVE_MAX: usize = 4 << 20;

/// Log packs read from a raw byte stream (no wlog header, no end marker).
pub struct PackStream<R> {
    inner: R,
    pbs: Pbs,
    salt: u32,
    next_lsid: Option<u64>,
    offset: u64,
    limit_pb: u64,
    used_pb: u64,
    done: bool,
}

impl<R: Read> PackStream<R> {
    /// Packs of `inner`, checked with `salt`; at most `limit_pb` physical blocks.
    pub fn new(inner: R, pbs: Pbs, salt: u32, limit_pb: u64) -> PackStream<R> {
        PackStream {
            inner,
            pbs,
            salt,
            next_lsid: None,
            offset: 0,
            limit_pb,
            used_pb: 0,
            done: false,
        }
    }

    /// Physical blocks read so far.
    pub fn used_pb(&self) -> u64 {
        self.used_pb
    }

    /// The lsid after the last pack (None before the first).
    pub fn end_lsid(&self) -> Option<u64> {
        self.next_lsid
    }

    fn read_full(&mut self, n: usize, what: &str) -> walb_kernel::Result<(Vec<u8>, usize)> {
        // The size comes from a header the storage sent: reserve at most
        // `READ_RESERVE_MAX` ahead and grow as the bytes arrive, so a pack that claims
        // gigabytes and never sends them costs nothing. Real packs fit the first
        // reservation and are not copied again.
        let mut buf = Vec::with_capacity(n.min(READ_RESERVE_MAX));
        let got = (&mut self.inner)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| {
                KError::io(
                    format!(
                        "reading {what} at byte offset {} of the stream",
                        self.offset
                    ),
                    e,
                )
            })?;
        Ok((buf, got))
    }

    /// The next pack; `None` at the end of the stream (which must fall between packs).
    pub fn next_pack(&mut self) -> walb_kernel::Result<Option<LogPack>> {
        if self.done {
            return Ok(None);
        }
        let r = self.read_pack();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r
    }

    fn read_pack(&mut self) -> walb_kernel::Result<Option<LogPack>> {
        let pbs = self.pbs.bytes();
        let at = Location::Lsid(self.next_lsid.unwrap_or(0));
        let (block, got) = self.read_full(pbs, "a log pack header")?;
        if got == 0 {
            return Ok(None);
        }
        if got < pbs {
            return Err(KError::incomplete(
                "log pack header",
                at,
                pbs as u64,
                got as u64,
            ));
        }
        let h = LogPackHeader::parse(&block, self.pbs, self.salt, self.next_lsid)?;
        if h.n_records() == 0 {
            return Err(KError::corrupt(
                "log pack header",
                Location::Lsid(h.logpack_lsid),
                format!(
                    "pack at byte offset {} has no records inside the transferred range",
                    self.offset
                ),
            ));
        }
        let pack_pb = h.pack_pb();
        if self.used_pb + pack_pb > self.limit_pb {
            return Err(KError::Invalid(format!(
                "the stream holds more than the announced {} physical blocks (pack at lsid {})",
                self.limit_pb, h.logpack_lsid
            )));
        }
        self.offset += pbs as u64;
        let n = usize::from(h.total_io_size) * pbs;
        let (data, got) = self.read_full(n, "log pack data")?;
        if got < n {
            return Err(KError::incomplete(
                "log pack data",
                Location::Lsid(h.logpack_lsid + 1),
                n as u64,
                got as u64,
            ));
        }
        self.offset += n as u64;
        let pack = LogPack {
            header: h,
            data: Bytes::from(data),
        };
        pack.verify_data()?;
        self.used_pb += pack_pb;
        self.next_lsid = Some(pack.header.next_lsid());
        Ok(Some(pack))
    }
}

impl<R: Read> Iterator for PackStream<R> {
    type Item = walb_kernel::Result<LogPack>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_pack().transpose()
    }
}

/// The conversion options of received wlogs: indexed, zstd.
pub fn convert_opt() -> ConvertOpt {
    ConvertOpt {
        kind: WdiffKind::Indexed,
        compress: CompressOpt::default(),
        ..ConvertOpt::default()
    }
}

/// A wdiff written by [`convert_to_file`], not yet synced.
#[derive(Debug)]
pub struct Converted {
    /// File size, bytes.
    pub size: u64,
    /// The file, for its fsync.
    pub file: std::fs::File,
    /// Whether it was written with direct IO (else through the page cache).
    pub direct: bool,
}

/// Converts the pack stream of `rd` into an indexed wdiff at `tmp` (direct IO where the
/// file system has it), not synced: the caller syncs it, possibly while it is forwarded.
/// Removes `tmp` on failure.
pub fn convert_to_file<R: Read>(
    rd: R,
    pbs: Pbs,
    salt: u32,
    uuid: [u8; 16],
    limit_pb: u64,
    tmp: &Path,
) -> walb_kernel::Result<Converted> {
    let res = (|| {
        let f = crate::persist::create_file(tmp)
            .map_err(|e| KError::io(format!("creating {}", tmp.display()), e))?;
        let packs = PackStream::new(rd, pbs, salt, limit_pb);
        // Direct IO: the data reaches the disk while it is converted, and the fsync has
        // only the metadata left to write.
        let (w, _stats) = convert_packs(
            packs,
            uuid,
            crate::persist::NamedWriter::new(DirectWriter::new(f), tmp),
            &convert_opt(),
        )?;
        let w = w.into_inner();
        let direct = w.is_direct();
        let file = w
            .finish()
            .map_err(|e| KError::io(format!("writing {}", tmp.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| KError::io(format!("reading metadata of {}", tmp.display()), e))?
            .len();
        Ok(Converted { size, file, direct })
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    res
}

/// Free bytes for unprivileged writers in the file system of `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::unnecessary_cast)]
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// Checks the received metadata: a clean, non-compared diff.
fn check_meta(d: &MetaDiff) -> Result<(), WireError> {
    if d.is_dirty() || d.comp_diff {
        return Err(refuse(
            ErrorCode::BadRequest,
            format!("a wlog transfer must carry a clean log diff, got {d:#}"),
        ));
    }
    Ok(())
}

fn forced(v: &super::ProxyVol) -> WireError {
    refuse(
        ErrorCode::Cancelled,
        format!("volume {} is being force-stopped", v.name),
    )
}

/// A wlog received and queued, with where its time went.
struct Received {
    name: String,
    /// The diff's begin and end gids.
    gids: (u64, u64),
    size: u64,
    /// Written with direct IO.
    direct: bool,
    /// From the acceptance to the converted file (written, not synced).
    convert: Duration,
    /// The diff's metadata received, the file renamed and linked into every queue.
    register: Duration,
    /// From the acceptance to the file in the queues (forwarding may start).
    queued: Duration,
    /// The fsync of the file and of the directories it is linked into.
    sync: Duration,
    /// From the acceptance to the ack sent.
    total: Duration,
}

/// What the proxy knows of a volume when a wlog transfer for it arrives.
#[derive(Clone, Debug)]
pub struct WlogView {
    /// This proxy, for messages (`proxy p0`).
    pub me: String,
    /// The volume's state (Clear when unknown).
    pub state: P,
    /// Whether a stop is under way.
    pub stopping: bool,
    /// The peers bound to the volume.
    pub peers: VolPeers,
    /// Whether a foreground slot is free.
    pub fg_free: bool,
    /// The base directory, for messages.
    pub base: std::path::PathBuf,
    /// Free bytes in the base directory's file system.
    pub free_bytes: u64,
    /// Bytes to keep free beyond the transfer (`--min-free-mb`).
    pub min_free: u64,
}

/// The admission of a wlog transfer (Protocol 1), pure: the volume's storage, a Started
/// volume, a slot, room for the announced log; returns the log device's block size.
pub fn admit_wlog(peer: &PeerId, req: &WlogTransfer, v: &WlogView) -> Result<Pbs, WireError> {
    let me = &v.me;
    let vol = &req.vol;
    let pbs = Pbs::new(req.pbs).map_err(|e| refuse(ErrorCode::BadRequest, e.to_string()))?;
    if v.state == P::Clear {
        return Err(refuse(
            ErrorCode::Stopped,
            format!("volume {vol} is Clear on {me}: add an archive-info and start it"),
        ));
    }
    crate::peers::admit(me, vol, &v.peers, peer, Access::Wlog)?;
    match v.state {
        P::Stopped => {
            return Err(refuse(
                ErrorCode::Stopped,
                format!("volume {vol} is Stopped on {me}: start it to receive wlogs"),
            ))
        }
        _ if v.stopping => {
            return Err(refuse(
                ErrorCode::Stopped,
                format!("volume {vol} is stopping on {me}"),
            ))
        }
        P::Started => {}
        P::WlogRecv => {
            return Err(refuse(
                ErrorCode::Busy,
                format!("volume {vol} is receiving another wlog on {me}; retry later"),
            ))
        }
        other => {
            return Err(refuse(
                ErrorCode::WrongState,
                format!(
                    "volume {vol} is {} on {me}; wlogs need Started",
                    other.name()
                ),
            ))
        }
    }
    if !v.fg_free {
        return Err(refuse(
            ErrorCode::Busy,
            format!("{me} runs its maximum of foreground tasks; try again later"),
        ));
    }
    let need = req
        .log_size_pb
        .saturating_mul(u64::from(req.pbs))
        .saturating_add(v.min_free);
    if v.free_bytes < need {
        return Err(refuse(
            ErrorCode::TooLarge,
            format!(
                "no space left on {me} for volume {vol}: {} has {} MiB free, needs {} MiB \
                 for {} log blocks plus --min-free-mb {}",
                v.base.display(),
                v.free_bytes >> 20,
                need.div_ceil(1 << 20),
                req.log_size_pb,
                v.min_free >> 20
            ),
        ));
    }
    Ok(pbs)
}

impl Proxy {
    /// True when running transfers of `v` must abort (force stop or forced shutdown).
    pub(crate) fn is_forced(&self, v: &super::ProxyVol) -> bool {
        v.core.stop_state() == StopState::ForceStopping || self.ctx.is_force_shutdown()
    }

    /// Completes once running transfers of `v` must abort (polled: a peer that stopped
    /// talking must not keep a forced stop waiting).
    pub(crate) async fn until_forced(&self, v: &super::ProxyVol) {
        while !self.is_forced(v) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Answers a [`WlogTransfer`] (Protocol 1).
    pub(super) async fn wlog_transfer(self: &Arc<Self>, req: WlogTransfer, mut call: Call) {
        let vol = req.vol.clone();
        let peer = call.peer.clone();
        match self.receive(req, &mut call).await {
            Ok(r) => info!(
                %vol, %peer, diff = %r.name, bytes = r.size,
                gid_b = r.gids.0, gid_e = r.gids.1, direct = r.direct,
                ms_write = r.convert.as_millis() as u64,
                ms_register = r.register.as_millis() as u64,
                ms_queued = r.queued.as_millis() as u64,
                ms_fsync = r.sync.as_millis() as u64,
                ms_total = r.total.as_millis() as u64,
                "wlog received"
            ),
            Err(e) => {
                warn!(%vol, %peer, "wlog transfer failed: {e}");
                call.receiver.stop();
                call.sender.refuse(e).await;
            }
        }
    }

    /// Receives one wlog (Protocol 1): admission, the packs converted into a temporary
    /// wdiff, the diff's metadata, the file registered in every archive queue, the ack.
    /// On any failure the temporary file is removed ([`TempFile`]).
    async fn receive(
        self: &Arc<Self>,
        req: WlogTransfer,
        call: &mut Call,
    ) -> Result<Received, WireError> {
        let v = self.vol(&req.vol);
        let view = self.wlog_view(&req.vol, v.as_deref())?;
        let pbs = admit_wlog(&call.peer, &req, &view)?;
        let _permit = self.ctx.fg_permit()?;
        let v = v.ok_or_else(|| refuse(ErrorCode::Internal, "volume vanished"))?;
        let txn = v.core.begin(&[P::Started], P::WlogRecv)?;
        call.reply(Reply::Accepted).await.map_err(|e| e.to_wire())?;

        let t_accepted = Instant::now();
        let path = temp_in_received(&v.dir);
        let mut tmp = TempFile::new(path.clone());
        let Converted { size, file, direct } =
            self.receive_packs(&v, &req, pbs, call, &path).await?;
        let convert = t_accepted.elapsed();
        let diff = self.receive_meta(&v, call).await?.with_data_size(size);
        let name = diff_file_name(&diff);

        // The file goes into every queue before its fsync, and the forwards may start at
        // once; the storage hears the ack only once the file and its names are durable
        // (ARCHITECTURE.md, "Acknowledge only what is durable").
        let t_reg = Instant::now();
        let (grow, archives) = self.register(&v, &req, &path, &name).await?;
        let register = t_reg.elapsed();
        let queued = t_accepted.elapsed();
        let delays = self.note_received(&v, grow, &diff);
        let now = self.ctx.clock.instant();
        for (a, delay) in delays {
            self.schedule_soft((req.vol.clone(), a), now + Duration::from_secs(delay));
        }
        let t_sync = Instant::now();
        if self.opts.hold_before_sync_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.opts.hold_before_sync_ms)).await;
        }
        let vd = v.dir.clone();
        let synced =
            tokio::task::spawn_blocking(move || sync_received(&vd, &file, &path, &name, &archives))
                .await
                .map_err(|e| refuse(ErrorCode::Internal, format!("sync thread: {e}")))?;
        let name = synced.map_err(|e| internal(&anyhow::Error::new(e)))?;
        tmp.disarm();
        let sync = t_sync.elapsed();
        txn.commit(P::Started)?;
        debug!(vol = %req.vol, diff = %name, bytes = size, "wdiff queued");
        if let Err(e) = call.sender.step(Step::Ack).await {
            // The diff is durable; a resend is harmless (the archive answers too-old).
            warn!(vol = %req.vol, "cannot send the acknowledgement: {e}");
        }
        let _ = call.sender.finish();
        Ok(Received {
            name,
            gids: (diff.snap_b.gid_b, diff.snap_e.gid_b),
            size,
            direct,
            convert,
            register,
            queued,
            sync,
            total: t_accepted.elapsed(),
        })
    }

    /// What the admission of a wlog transfer to `vol` (`v`, when known) looks at.
    fn wlog_view(&self, vol: &str, v: Option<&super::ProxyVol>) -> Result<WlogView, WireError> {
        let state = v.map_or(P::Clear, |v| v.core.state());
        let base = self.ctx.base.path();
        let free_bytes = if state == P::Clear {
            0
        } else {
            free_bytes(base).map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("cannot read the free space of {}: {e}", base.display()),
                )
            })?
        };
        Ok(WlogView {
            me: crate::peers::me(walb_wire::Role::Proxy, &self.ctx.id),
            state,
            stopping: v.is_some_and(|v| v.core.stop_state().is_stopping()),
            peers: if state == P::Clear {
                VolPeers::default()
            } else {
                self.peers_of(vol)?
            },
            fg_free: self.ctx.fg.free(),
            base: base.to_path_buf(),
            free_bytes,
            min_free: self.opts.min_free_mb.saturating_mul(1 << 20),
        })
    }

    /// The bulk: the packs, fed to the converter thread, which writes the wdiff to `tmp`.
    async fn receive_packs(
        &self,
        v: &super::ProxyVol,
        req: &WlogTransfer,
        pbs: Pbs,
        call: &mut Call,
        tmp: &Path,
    ) -> Result<Converted, WireError> {
        let (tx, rx) = mpsc::channel::<Piece>(CHANNEL_DEPTH);
        let conv = {
            let tmp = tmp.to_path_buf();
            let (salt, uuid, limit) = (req.salt, req.uuid, req.log_size_pb);
            tokio::task::spawn_blocking(move || {
                convert_to_file(ChannelReader::new(rx), pbs, salt, uuid, limit, &tmp)
            })
        };
        let fed = tokio::select! {
            r = self.feed(v, call, tx) => r,
            () = self.until_forced(v) => Err(forced(v)),
        };
        let converted = conv
            .await
            .map_err(|e| refuse(ErrorCode::Internal, format!("converter thread: {e}")));
        match (fed, converted) {
            // The converter's error says more than a closed channel.
            (_, Ok(Err(e))) => Err(kernel_error(&e)),
            (Err(e), _) => Err(e),
            (Ok(()), Ok(Ok(c))) => Ok(c),
            (Ok(()), Err(e)) => Err(e),
        }
    }

    /// The step after the bulk: the diff's metadata, a clean log diff.
    async fn receive_meta(
        &self,
        v: &super::ProxyVol,
        call: &mut Call,
    ) -> Result<MetaDiff, WireError> {
        let step = tokio::select! {
            r = call.receiver.step() => r.map_err(|e| e.to_wire()),
            () = self.until_forced(v) => Err(forced(v)),
        };
        let dto = match step? {
            Step::MetaDiff(d) => d,
            other => {
                return Err(refuse(
                    ErrorCode::BadRequest,
                    format!("expected the diff's metadata after the packs, got {other:?}"),
                ))
            }
        };
        let diff = diff_from_dto(&dto)?;
        check_meta(&diff)?;
        Ok(diff)
    }

    /// Grows the volume if the request says it grew and links the file at `tmp` into
    /// every archive's queue as `<name>.unsynced`; returns the new size, if it grew, and
    /// the archives.
    async fn register(
        &self,
        v: &super::ProxyVol,
        req: &WlogTransfer,
        tmp: &Path,
        name: &str,
    ) -> Result<(Option<u64>, Vec<String>), WireError> {
        let (archives, size_lb) = {
            let m = v.meta();
            (m.archives.keys().cloned().collect::<Vec<_>>(), m.size_lb)
        };
        let vd = v.dir.clone();
        let grow = (req.size_lb > size_lb).then_some(req.size_lb);
        let (tmp, name) = (tmp.to_path_buf(), name.to_owned());
        let a2 = archives.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(s) = grow {
                vd.set_size_lb(s)?;
            }
            register_received(&vd, &tmp, &name, &a2)
        })
        .await
        .map_err(|e| refuse(ErrorCode::Internal, format!("register thread: {e}")))?
        .map_err(|e| internal(&anyhow::Error::new(e)))?;
        Ok((grow, archives))
    }

    /// Notes a registered diff in the volume's memory (size, last wlog, latest snapshot);
    /// returns each archive's delay before its transfer is due.
    fn note_received(
        &self,
        v: &super::ProxyVol,
        grow: Option<u64>,
        diff: &MetaDiff,
    ) -> Vec<(String, u64)> {
        let mut m = v.meta();
        if let Some(s) = grow {
            m.size_lb = s;
        }
        m.last_wlog = self.ctx.clock.instant();
        m.latest = super::newest(m.latest, (diff.snap_e.gid_b, diff.timestamp));
        m.archives
            .iter()
            .map(|(a, i)| (a.clone(), i.delay_s))
            .collect()
    }

    /// Forwards the bulk's chunks to the converter; ends with [`Piece::End`] after the
    /// bulk end. Stops early (without the end piece) if the converter stopped reading or
    /// the volume is force-stopped.
    async fn feed(
        &self,
        v: &super::ProxyVol,
        call: &mut Call,
        tx: mpsc::Sender<Piece>,
    ) -> Result<(), WireError> {
        loop {
            if self.is_forced(v) {
                return Err(forced(v));
            }
            match call.receiver.chunk().await {
                Ok(Some(c)) => {
                    if tx.send(Piece::Data(c)).await.is_err() {
                        // The converter failed; its error is reported.
                        return Ok(());
                    }
                }
                Ok(None) => {
                    let _ = tx.send(Piece::End).await;
                    return Ok(());
                }
                Err(e) => return Err(e.to_wire()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walb_kernel::gen::WlogGen;
    use walb_kernel::wlog::{WlogHeader, WLOG_HEADER_BYTES};

    fn raw_packs() -> (Vec<u8>, WlogHeader, u64) {
        let mut g = WlogGen::new(1 << 14, 2 << 20);
        g.pbs = Pbs::B512;
        g.begin_lsid = 1000;
        g.ring_size = Some(4096);
        let mut w = Vec::new();
        let end = g.write(&mut w).unwrap();
        let h = WlogHeader::parse(&w).unwrap();
        let body = w[WLOG_HEADER_BYTES..w.len() - 512].to_vec();
        (body, h, end)
    }

    fn wlog_view(state: P) -> WlogView {
        let mut peers = VolPeers::default();
        peers
            .bind(&walb_wire::msg::BindCommand {
                vol: "v".into(),
                role: walb_wire::msg::PeerRole::Storage,
                ids: vec!["s0".into()],
                how: walb_wire::msg::BindHow::Set,
            })
            .unwrap();
        WlogView {
            me: "proxy p0".into(),
            state,
            stopping: false,
            peers,
            fg_free: true,
            base: "/srv/walb-proxy".into(),
            free_bytes: 1 << 30,
            min_free: 64 << 20,
        }
    }

    fn wlog_req(log_size_pb: u64) -> WlogTransfer {
        WlogTransfer {
            vol: "v".into(),
            uuid: [0; 16],
            pbs: 4096,
            salt: 0,
            size_lb: 1 << 20,
            log_size_pb,
        }
    }

    /// The admission of a wlog transfer, case by case: the owner, the states in order,
    /// the slot, the room.
    #[test]
    fn wlog_admission_table() {
        let s0 = PeerId::new(walb_wire::Role::Storage, "s0").unwrap();
        let s1 = PeerId::new(walb_wire::Role::Storage, "s1").unwrap();
        let p0 = PeerId::new(walb_wire::Role::Proxy, "s0").unwrap();
        let ok = wlog_view(P::Started);
        let code = |peer: &PeerId, req: &WlogTransfer, v: &WlogView| {
            admit_wlog(peer, req, v).err().map(|e| e.code)
        };
        let cases: Vec<(&str, &PeerId, WlogTransfer, WlogView, Option<ErrorCode>)> = vec![
            ("the owner, started", &s0, wlog_req(100), ok.clone(), None),
            (
                "another storage",
                &s1,
                wlog_req(100),
                ok.clone(),
                Some(ErrorCode::Forbidden),
            ),
            (
                "the owner's id as a proxy",
                &p0,
                wlog_req(100),
                ok.clone(),
                Some(ErrorCode::Forbidden),
            ),
            (
                "a clear volume",
                &s1,
                wlog_req(100),
                wlog_view(P::Clear),
                Some(ErrorCode::Stopped),
            ),
            (
                "stopped",
                &s0,
                wlog_req(100),
                wlog_view(P::Stopped),
                Some(ErrorCode::Stopped),
            ),
            (
                "another stopped storage",
                &s1,
                wlog_req(100),
                wlog_view(P::Stopped),
                Some(ErrorCode::Forbidden),
            ),
            (
                "receiving",
                &s0,
                wlog_req(100),
                wlog_view(P::WlogRecv),
                Some(ErrorCode::Busy),
            ),
            (
                "stopping",
                &s0,
                wlog_req(100),
                WlogView {
                    stopping: true,
                    ..ok.clone()
                },
                Some(ErrorCode::Stopped),
            ),
            (
                "no slot",
                &s0,
                wlog_req(100),
                WlogView {
                    fg_free: false,
                    ..ok.clone()
                },
                Some(ErrorCode::Busy),
            ),
            (
                "no room",
                &s0,
                wlog_req(1 << 18),
                ok.clone(),
                Some(ErrorCode::TooLarge),
            ),
            (
                "no storage bound",
                &s0,
                wlog_req(100),
                WlogView {
                    peers: VolPeers::default(),
                    ..ok.clone()
                },
                Some(ErrorCode::Forbidden),
            ),
        ];
        for (what, peer, req, v, want) in cases {
            assert_eq!(code(peer, &req, &v), want, "{what}");
        }
        // A full disk is named as such, with the volume and the directory.
        let full = WlogView {
            free_bytes: 0,
            ..ok.clone()
        };
        let msg = admit_wlog(&s0, &wlog_req(100), &full)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(
            msg.starts_with("no space left on proxy p0 for volume v: /srv/walb-proxy has 0 MiB"),
            "{msg}"
        );
        let mut bad = wlog_req(100);
        bad.pbs = 1000;
        assert_eq!(code(&s0, &bad, &ok), Some(ErrorCode::BadRequest));
    }

    #[test]
    fn pack_stream_reads_contiguous_packs() {
        let (body, h, end) = raw_packs();
        let mut s = PackStream::new(&body[..], h.pbs, h.salt, end - 1000);
        let mut n = 0;
        while let Some(p) = s.next_pack().unwrap() {
            n += p.header.n_records();
        }
        assert!(n > 10);
        assert_eq!(s.end_lsid(), Some(end));
        assert_eq!(s.used_pb(), end - 1000);
    }

    #[test]
    fn pack_stream_refuses_bad_input() {
        let (body, h, end) = raw_packs();
        let limit = end - 1000;
        let all = |b: &[u8], lim: u64| -> walb_kernel::Result<usize> {
            PackStream::new(b, h.pbs, h.salt, lim).try_fold(0, |n, p| p.map(|_| n + 1))
        };
        // Truncated inside a pack.
        assert!(all(&body[..body.len() - 100], limit)
            .unwrap_err()
            .is_incomplete());
        // A flipped data byte (the first pack's first data block).
        let mut bad = body.clone();
        bad[512 + 3] ^= 1;
        assert!(all(&bad, limit).unwrap_err().is_corrupt());
        // Wrong salt.
        let e = PackStream::new(&body[..], h.pbs, h.salt ^ 1, limit)
            .next()
            .unwrap()
            .unwrap_err();
        assert!(e.is_corrupt());
        // More than announced.
        assert!(matches!(all(&body, limit - 1), Err(KError::Invalid(_))));
        // A gap in lsids: drop the second pack.
        let first = LogPackHeader::parse(&body, h.pbs, h.salt, None).unwrap();
        let a = first.pack_pb() as usize * 512;
        let second = LogPackHeader::parse(&body[a..], h.pbs, h.salt, None).unwrap();
        let b = a + second.pack_pb() as usize * 512;
        let mut gap = body[..a].to_vec();
        gap.extend_from_slice(&body[b..]);
        assert!(all(&gap, limit).unwrap_err().is_corrupt());
        // Empty is fine (an empty range).
        assert_eq!(all(&[], 0).unwrap(), 0);
    }

    #[test]
    fn conversion_writes_an_indexed_wdiff_or_nothing() {
        use walb_kernel::wdiff::WdiffReader;
        let d = tempfile::tempdir().unwrap();
        let (body, h, end) = raw_packs();
        let tmp = d.path().join("x.tmp");
        let n = convert_to_file(&body[..], h.pbs, h.salt, h.uuid, end - 1000, &tmp)
            .unwrap()
            .size;
        assert_eq!(n, std::fs::metadata(&tmp).unwrap().len());
        let rd = WdiffReader::open(&tmp).unwrap();
        assert_eq!(rd.header().kind, WdiffKind::Indexed);
        assert_eq!(rd.header().uuid, h.uuid);
        assert!(rd.count() > 0);
        // An empty range gives an empty diff.
        convert_to_file(&[][..], h.pbs, h.salt, h.uuid, 0, &tmp).unwrap();
        assert_eq!(WdiffReader::open(&tmp).unwrap().count(), 0);
        // A failure leaves no file.
        let e = convert_to_file(&body[..body.len() - 1], h.pbs, h.salt, h.uuid, end, &tmp);
        assert!(e.unwrap_err().is_incomplete());
        assert!(!tmp.exists());
    }
}
