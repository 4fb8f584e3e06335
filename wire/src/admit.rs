//! Admission: the bounds every request and step keeps before a daemon acts on it. Pure.
//!
//! A peer with a valid certificate is still hostile until proven otherwise. Whatever it
//! sends that carries a size, a count, a range, a name or a list is checked here against
//! [`Limits`] — with checked arithmetic, before any allocation or IO — and refused with a
//! [`WireError`] that names the field and the bound. The transport runs [`request`] on
//! every request after [`crate::auth::authorize`] and before the daemon sees it; protocol
//! code runs [`step`] on every step it receives. What depends on a daemon's own state (is
//! this peer bound to this volume, does the size match the image) is the daemons'
//! admission, which runs after this one.

use crate::identity::validate_id;
use crate::msg::{
    ArchiveDest, ArchiveInfoCommand, BackupSync, BindCommand, Command, CompressOpt, ErrorCode,
    MergeUntil, PeerRole, Query, ReplicateCommand, Request, Step, SyncStart, WireError,
};

/// Logical block size, bytes (the kernel's `LBS`; the wire does not depend on the kernel).
pub const LBS: u64 = 512;
/// Longest volume name, bytes.
pub const VOL_NAME_MAX: usize = 64;
/// Longest path a peer may send (a WalB device path), bytes.
pub const PATH_MAX: usize = 4096;
/// Longest address (`HOST:PORT`) or other short text a peer may send, bytes.
pub const TEXT_MAX: usize = 256;

/// The bounds of what a peer may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest volume a peer may announce, logical blocks.
    pub vol_size_lb_max: u64,
    /// Largest bulk of a full, hash or virtual scan, logical blocks.
    pub bulk_lb_max: u64,
    /// Most entries of a list in one message (volume names, gids).
    pub list_max: usize,
    /// Largest wlog transfer a storage may announce, bytes.
    pub wlog_len_max: u64,
    /// Largest wdiff a peer may send in one transfer, bytes.
    pub wdiff_len_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // 64 TiB: beyond any device walb-tools was run on; an option raises it.
            vol_size_lb_max: 64 << 31,
            // 8 MiB, the largest chunk the transport takes (`WireConfig::chunk_len_max`).
            bulk_lb_max: (8 << 20) / LBS,
            list_max: 4096,
            wlog_len_max: 4 << 30,
            wdiff_len_max: 16 << 30,
        }
    }
}

fn bad(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, msg)
}

fn too_large(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::TooLarge, msg)
}

/// Checks a volume name: 1 to 64 characters of `[0-9A-Za-z._-]`, not `.` or `..`, not
/// ending in `.tmp` (walb-tools' rule, with `_` and `.` accepted too).
pub fn vol_name(vol: &str) -> Result<(), WireError> {
    let ok = !vol.is_empty()
        && vol.len() <= VOL_NAME_MAX
        && vol != "."
        && vol != ".."
        && vol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !vol.ends_with(".tmp");
    if ok {
        Ok(())
    } else {
        let shown: String = vol.chars().take(VOL_NAME_MAX + 8).collect();
        Err(bad(format!(
            "volume name {shown:?} must be 1 to {VOL_NAME_MAX} characters of letters, digits, \
             '-', '_', '.' (not '.' or '..', not ending in .tmp)"
        )))
    }
}

/// Checks a node name (a peer id: an archive of a proxy's archive-info, a replication
/// destination).
pub fn node_name(what: &str, name: &str) -> Result<(), WireError> {
    validate_id(name).map_err(|e| bad(format!("{what}: {e}")))
}

fn text(what: &str, s: &str, max: usize) -> Result<(), WireError> {
    if s.len() > max {
        return Err(too_large(format!(
            "{what} is {} bytes; at most {max}",
            s.len()
        )));
    }
    Ok(())
}

fn list(what: &str, n: usize, lim: &Limits) -> Result<(), WireError> {
    if n > lim.list_max {
        return Err(too_large(format!(
            "{what} has {n} entries; at most {}",
            lim.list_max
        )));
    }
    Ok(())
}

/// Checks a volume size announced by a peer: 1 block up to the limit.
pub fn vol_size(what: &str, size_lb: u64, lim: &Limits) -> Result<(), WireError> {
    if size_lb == 0 {
        return Err(bad(format!("{what}: a volume of 0 blocks")));
    }
    if size_lb > lim.vol_size_lb_max {
        return Err(too_large(format!(
            "{what}: a volume of {size_lb} logical blocks; at most {} (raise --max-volume-gb)",
            lim.vol_size_lb_max
        )));
    }
    Ok(())
}

/// Checks a bulk size: 1 block up to the limit.
pub fn bulk(what: &str, bulk_lb: u64, lim: &Limits) -> Result<(), WireError> {
    if bulk_lb == 0 || bulk_lb > lim.bulk_lb_max {
        return Err(bad(format!(
            "{what}: a bulk of {bulk_lb} logical blocks; want 1 to {}",
            lim.bulk_lb_max
        )));
    }
    Ok(())
}

fn bulk_opt(what: &str, bulk_lb: Option<u64>, lim: &Limits) -> Result<(), WireError> {
    bulk_lb.map_or(Ok(()), |b| bulk(what, b, lim))
}

fn compress(c: &CompressOpt) -> Result<(), WireError> {
    if !(-131072..=22).contains(&c.level) || c.ncpu > 1024 {
        return Err(bad(format!(
            "compression level {} or {} threads out of range",
            c.level, c.ncpu
        )));
    }
    Ok(())
}

fn dest(d: &ArchiveDest) -> Result<(), WireError> {
    text("archive address", &d.addr, TEXT_MAX)?;
    compress(&d.compress)?;
    if d.delay_s > 365 * 86400 {
        return Err(bad(format!("a delay of {} s", d.delay_s)));
    }
    Ok(())
}

fn sync_start(what: &str, s: &SyncStart, lim: &Limits) -> Result<(), WireError> {
    vol_name(&s.vol)?;
    vol_size(what, s.size_lb, lim)?;
    bulk(what, s.bulk_lb, lim)
}

/// Checks every bound of a request (see the module doc).
pub fn request(req: &Request, lim: &Limits) -> Result<(), WireError> {
    match req {
        Request::Command(c) => command(c, lim),
        Request::Query(q) => query(q, lim),
        Request::Subscribe(s) => {
            list("a subscription", s.vols.len(), lim)?;
            s.vols.iter().try_for_each(|v| vol_name(v))
        }
        Request::WlogTransfer(t) => {
            vol_name(&t.vol)?;
            vol_size("wlog transfer", t.size_lb, lim)?;
            if !(512..=65536).contains(&t.pbs) || !t.pbs.is_power_of_two() {
                return Err(bad(format!(
                    "wlog transfer of {}: a physical block size of {} bytes",
                    t.vol, t.pbs
                )));
            }
            match t.log_size_pb.checked_mul(u64::from(t.pbs)) {
                Some(len) if len <= lim.wlog_len_max => Ok(()),
                _ => Err(too_large(format!(
                    "wlog transfer of {}: {} physical blocks of {} bytes; at most {} bytes",
                    t.vol, t.log_size_pb, t.pbs, lim.wlog_len_max
                ))),
            }
        }
        Request::WdiffTransfer(t) => {
            vol_name(&t.vol)?;
            vol_size("wdiff transfer", t.size_lb, lim)
        }
        Request::BackupSync(BackupSync::Full(s)) => sync_start("full backup", s, lim),
        Request::BackupSync(BackupSync::Hash(s)) => sync_start("hash backup", s, lim),
        Request::BackupSync(BackupSync::GatherLatestSnap { vols }) => {
            list("gather-latest-snap", vols.len(), lim)?;
            vols.iter().try_for_each(|v| vol_name(v))
        }
        Request::Replicate(r) => vol_name(&r.vol),
    }
}

fn command(c: &Command, lim: &Limits) -> Result<(), WireError> {
    match c {
        Command::ArchiveInfo(ArchiveInfoCommand::Set {
            vol,
            archive,
            dest: d,
            ..
        }) => {
            vol_name(vol)?;
            node_name("archive", archive)?;
            dest(d)
        }
        Command::ArchiveInfo(ArchiveInfoCommand::Delete { vol, archive }) => {
            vol_name(vol)?;
            node_name("archive", archive)
        }
        Command::Bind(b) => bind(b, lim),
        Command::Apply { vol, .. }
        | Command::ClearVol { vol }
        | Command::DelCold { vol, .. }
        | Command::DelRestored { vol, .. }
        | Command::GcDiff { vol }
        | Command::ResetVol { vol, .. }
        | Command::Restore { vol, .. }
        | Command::Snapshot { vol }
        | Command::Start { vol, .. }
        | Command::Stop { vol, .. } => vol_name(vol),
        Command::Merge { vol, until, .. } => {
            vol_name(vol)?;
            match until {
                MergeUntil::Gid(_) => Ok(()),
                MergeUntil::SizeMib(mib) if *mib > 0 => Ok(()),
                MergeUntil::SizeMib(_) => Err(bad("merge up to 0 MiB")),
            }
        }
        Command::SetSnapshotsExplicit { vol, gids, .. } => {
            vol_name(vol)?;
            list("enable/disable-snapshot", gids.len(), lim)
        }
        Command::FullBackup { vol, bulk_lb } | Command::HashBackup { vol, bulk_lb } => {
            vol_name(vol)?;
            bulk_opt("backup", *bulk_lb, lim)
        }
        Command::VirtFullScan { vol, bulk_lb, .. } => {
            vol_name(vol)?;
            bulk_opt("virt-full-scan", *bulk_lb, lim)
        }
        Command::InitVol { vol, wdev_path } => {
            vol_name(vol)?;
            wdev_path
                .as_deref()
                .map_or(Ok(()), |p| text("device path", p, PATH_MAX))
        }
        Command::Kick { vol, archive } => {
            vol.as_deref().map_or(Ok(()), vol_name)?;
            archive
                .as_deref()
                .map_or(Ok(()), |a| node_name("archive", a))
        }
        Command::Replicate(r) => replicate(r, lim),
        Command::Resize { vol, size_lb, .. } => {
            vol_name(vol)?;
            vol_size("resize", *size_lb, lim)
        }
        Command::SetFullScanBps(_) | Command::Shutdown { .. } => Ok(()),
        Command::SetRetention(r) => {
            vol_name(&r.vol)?;
            list("retention settings", r.set.len(), lim)?;
            for (k, v) in &r.set {
                text("a retention key", k, 64)?;
                text("a retention value", v, 1024)?;
            }
            list(
                "retention pins",
                r.pin.len().saturating_add(r.unpin.len()),
                lim,
            )
        }
    }
}

fn bind(b: &BindCommand, lim: &Limits) -> Result<(), WireError> {
    vol_name(&b.vol)?;
    list("bind", b.ids.len(), lim)?;
    b.ids
        .iter()
        .try_for_each(|id| node_name(b.role.as_str(), id))?;
    if b.role == PeerRole::Storage && b.ids.len() > 1 {
        return Err(bad(format!(
            "volume {}: one storage owns a volume, {} were named",
            b.vol,
            b.ids.len()
        )));
    }
    Ok(())
}

fn replicate(r: &ReplicateCommand, lim: &Limits) -> Result<(), WireError> {
    vol_name(&r.vol)?;
    text("destination address", &r.dest, TEXT_MAX)?;
    node_name("destination archive", &r.dest_id)?;
    if let Some(c) = &r.compress {
        compress(c)?;
    }
    bulk_opt("replicate", r.bulk_lb, lim)
}

fn query(q: &Query, _lim: &Limits) -> Result<(), WireError> {
    let opt = |v: &Option<String>| v.as_deref().map_or(Ok(()), vol_name);
    match q {
        Query::ApplicableDiff { vol, .. }
        | Query::ArchiveUuid { vol }
        | Query::BlockHash { vol, .. }
        | Query::Cold { vol }
        | Query::DiffStats { vol, .. }
        | Query::ExistsBaseImage { vol }
        | Query::ExistsDiff { vol, .. }
        | Query::IsOverflow { vol }
        | Query::MetaSnap { vol, .. }
        | Query::MetaState { vol, .. }
        | Query::Peers { vol }
        | Query::Progress { vol }
        | Query::Restorable { vol, .. }
        | Query::Restored { vol }
        | Query::State { vol }
        | Query::Uuid { vol }
        | Query::VolSize { vol }
        | Query::Retention { vol } => vol_name(vol),
        Query::ArchiveInfo { vol, archive } | Query::Diff { vol, archive, .. } => {
            vol_name(vol)?;
            archive
                .as_deref()
                .map_or(Ok(()), |a| node_name("archive", a))
        }
        Query::IsWdiffSendError { vol, archive } => {
            vol_name(vol)?;
            node_name("archive", archive)
        }
        Query::NumAction { vol, action } => {
            vol_name(vol)?;
            text("action name", action, VOL_NAME_MAX)
        }
        Query::Base { vol }
        | Query::LatestSnap { vol }
        | Query::LogUsage { vol }
        | Query::Status { vol } => opt(vol),
        Query::AllActions
        | Query::HandlerStat
        | Query::HostType
        | Query::Pid
        | Query::TsDelta
        | Query::Version
        | Query::Vols
        | Query::VolumeGroup => Ok(()),
    }
}

/// Longest queue name in a [`Step::Queued`] (`archive ID`).
const NOTE_QUEUE_LEN_MAX: usize = 512;

/// Checks every bound of a step received inside a protocol.
pub fn step(s: &Step, lim: &Limits) -> Result<(), WireError> {
    match s {
        Step::Zero { len_lb } => {
            if *len_lb == 0 || *len_lb > lim.vol_size_lb_max {
                return Err(bad(format!("a zero run of {len_lb} logical blocks")));
            }
            Ok(())
        }
        Step::ReplFull {
            size_lb, bulk_lb, ..
        } => {
            vol_size("full replication", *size_lb, lim)?;
            bulk("full replication", *bulk_lb, lim)
        }
        Step::ReplResync {
            size_lb, bulk_lb, ..
        } => {
            vol_size("hash round", *size_lb, lim)?;
            bulk("hash round", *bulk_lb, lim)
        }
        Step::StartLb(lb) => {
            if *lb > lim.vol_size_lb_max {
                return Err(bad(format!("a start at logical block {lb}")));
            }
            Ok(())
        }
        Step::Progress { done_lb, total_lb } => {
            if done_lb > total_lb {
                return Err(bad(format!("progress {done_lb} of {total_lb}")));
            }
            Ok(())
        }
        Step::Queued(q) => {
            if q.queue.len() > NOTE_QUEUE_LEN_MAX {
                return Err(bad(format!(
                    "a queue note naming a queue of {} bytes",
                    q.queue.len()
                )));
            }
            if q.running > q.slots {
                return Err(bad(format!(
                    "a queue note of {} running tasks in {} slots",
                    q.running, q.slots
                )));
            }
            Ok(())
        }
        Step::Ack
        | Step::Hash(_)
        | Step::MetaDiff(_)
        | Step::MetaSnap(_)
        | Step::MetaState(_)
        | Step::ReplDecision(_)
        | Step::ReplKind(_)
        | Step::Uuid(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Subscribe, WlogTransfer};

    fn code(r: Result<(), WireError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn volume_names_follow_walb_tools_rule() {
        for ok in ["vol0", "a", "v-1_x.y", &"x".repeat(64)] {
            assert!(vol_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../../etc",
            "/etc",
            "a/b",
            "a b",
            "x.tmp",
            &"x".repeat(65),
        ] {
            let e = vol_name(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
            assert!(e.message.contains("volume name"), "{e}");
        }
    }

    #[test]
    fn sizes_and_bulks_are_bounded() {
        let lim = Limits::default();
        let full = |size_lb, bulk_lb| {
            request(
                &Request::BackupSync(BackupSync::Hash(SyncStart {
                    vol: "v".into(),
                    size_lb,
                    time_s: 0,
                    bulk_lb,
                })),
                &lim,
            )
        };
        assert_eq!(code(full(1 << 20, 128)), None);
        assert_eq!(code(full(0, 128)), Some(ErrorCode::BadRequest));
        assert_eq!(code(full(1 << 20, 0)), Some(ErrorCode::BadRequest));
        // The abort walb-archive once died of: a bulk of 2^40 blocks.
        let e = full(1 << 20, 1 << 40).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("1 to 16384"), "{e}");
        assert_eq!(
            code(full(lim.vol_size_lb_max + 1, 128)),
            Some(ErrorCode::TooLarge)
        );
        assert_eq!(code(full(u64::MAX, 128)), Some(ErrorCode::TooLarge));
    }

    #[test]
    fn lists_are_bounded_and_every_name_checked() {
        let lim = Limits::default();
        let sub = |vols: Vec<String>| request(&Request::Subscribe(Subscribe { vols }), &lim);
        assert_eq!(code(sub(vec![])), None);
        assert_eq!(code(sub(vec!["a".into(); 10])), None);
        assert_eq!(
            code(sub(vec!["a".into(); lim.list_max + 1])),
            Some(ErrorCode::TooLarge)
        );
        assert_eq!(code(sub(vec!["".into()])), Some(ErrorCode::BadRequest));
        let gids = Command::SetSnapshotsExplicit {
            vol: "v".into(),
            gids: vec![1; lim.list_max + 1],
            explicit: true,
        };
        assert_eq!(
            code(request(&Request::Command(gids), &lim)),
            Some(ErrorCode::TooLarge)
        );
    }

    #[test]
    fn a_wlog_transfer_announces_a_sane_block_size_and_length() {
        let lim = Limits::default();
        let t = |pbs, log_size_pb| {
            request(
                &Request::WlogTransfer(WlogTransfer {
                    vol: "v".into(),
                    uuid: [0; 16],
                    pbs,
                    salt: 0,
                    size_lb: 1 << 20,
                    log_size_pb,
                }),
                &lim,
            )
        };
        assert_eq!(code(t(4096, 1000)), None);
        assert_eq!(code(t(4095, 1000)), Some(ErrorCode::BadRequest));
        assert_eq!(code(t(0, 1000)), Some(ErrorCode::BadRequest));
        assert_eq!(code(t(4096, u64::MAX)), Some(ErrorCode::TooLarge));
        assert_eq!(
            code(t(4096, lim.wlog_len_max / 4096 + 1)),
            Some(ErrorCode::TooLarge)
        );
    }

    #[test]
    fn steps_are_bounded() {
        let lim = Limits::default();
        assert_eq!(code(step(&Step::Zero { len_lb: 8 }, &lim)), None);
        assert_eq!(
            code(step(&Step::Zero { len_lb: 0 }, &lim)),
            Some(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(step(&Step::Zero { len_lb: u64::MAX }, &lim)),
            Some(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(step(
                &Step::Progress {
                    done_lb: 2,
                    total_lb: 1
                },
                &lim
            )),
            Some(ErrorCode::BadRequest)
        );
        let note = |queue: String, running: u32| {
            Step::Queued(crate::msg::QueueNote {
                queue,
                ahead: 3,
                running,
                slots: 2,
                wait_left_s: 60,
            })
        };
        assert_eq!(code(step(&note("archive a0".into(), 2), &lim)), None);
        assert_eq!(
            code(step(&note("archive a0".into(), 3), &lim)),
            Some(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(step(&note("x".repeat(NOTE_QUEUE_LEN_MAX + 1), 1), &lim)),
            Some(ErrorCode::BadRequest)
        );
    }
}
