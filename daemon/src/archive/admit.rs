//! The archive's admission: for each protocol a peer can open here, one pure function of
//! the request and what the volume holds ([`View`]) that returns the plan or a typed
//! refusal. It runs before the protocol takes a slot, allocates or touches a file.
//!
//! The transport has already bounded every field of the request
//! ([`walb_wire::admit::request`]); here the peer is checked against the peers bound to the
//! volume ([`crate::peers`]) and the request against the volume's state and image. The
//! order of the checks is part of the protocol: a volume that does not exist is
//! `not-found` for anyone (it has nobody bound and nothing to hide), then the peer must be
//! bound (`forbidden`), then come the refusals the protocol's sender reacts to, in
//! walb-tools' order.
//!
//! | protocol | from | admission |
//! |---|---|---|
//! | full backup | storage | [`full`] |
//! | hash backup | storage | [`hash`] |
//! | latest snapshots | storage | [`gather`] |
//! | wdiff transfer | proxy | [`wdiff`] |
//! | replication | archive | [`repl`] |

use walb_kernel::meta::{MetaDiff, MetaSnap, Relation};
use walb_kernel::wlog::uuid_hex as hex;
use walb_wire::msg::{ReplKind, ReplSync, SyncStart, Uuid, WdiffTransfer};
use walb_wire::{ErrorCode, PeerId, WireError};

use crate::dto;
use crate::peers::{self, Access, VolPeers};
use crate::session::refuse;
use crate::state::archive::ArchiveState as A;

/// What the archive knows of one volume when a request for it arrives.
#[derive(Clone, Debug)]
pub struct View {
    /// This archive, for messages (`archive a0`).
    pub me: String,
    /// The volume.
    pub vol: String,
    /// Its state (Clear when unknown).
    pub state: A,
    /// Whether a stop is under way.
    pub stopping: bool,
    /// The peers bound to it.
    pub peers: VolPeers,
    /// Whether a foreground slot is free (a wdiff transfer does not queue for one: the
    /// proxy retries it).
    pub fg_free: bool,
    /// The base image's size, logical blocks (`None`: no image).
    pub base_lb: Option<u64>,
    /// Its uuid, lineage (archive uuid) and latest snapshot.
    pub holding: Option<Holding>,
    /// The archive uuid (the lineage of its base image).
    pub archive_uuid: Uuid,
}

fn not_found(v: &View, what: &str) -> WireError {
    refuse(
        ErrorCode::NotFound,
        format!("volume {} does not exist on {} ({what})", v.vol, v.me),
    )
}

fn stopping(v: &View) -> Option<WireError> {
    v.stopping
        .then(|| refuse(ErrorCode::Stopped, format!("volume {} is stopping", v.vol)))
}

fn wrong_state(v: &View, what: &str, want: A) -> Option<WireError> {
    (v.state != want).then(|| {
        refuse(
            ErrorCode::WrongState,
            format!(
                "volume {} is {} on {}: {what} needs {}",
                v.vol,
                v.state.name(),
                v.me,
                want.name()
            ),
        )
    })
}

fn first(checks: impl IntoIterator<Item = Option<WireError>>) -> Result<(), WireError> {
    match checks.into_iter().flatten().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A full backup (`BackupSync::Full`): the volume's storage, a SyncReady volume. (With
/// every foreground slot taken, the request then waits in the queue: `crate::fgq`.)
pub fn full(peer: &PeerId, _s: &SyncStart, v: &View) -> Result<(), WireError> {
    if v.state == A::Clear {
        return Err(not_found(v, "init-vol first"));
    }
    peers::admit(&v.me, &v.vol, &v.peers, peer, Access::Backup)?;
    first([stopping(v), wrong_state(v, "a full backup", A::SyncReady)])
}

/// A hash backup (`BackupSync::Hash`): the volume's storage, an Archived volume whose
/// image has the device's size (then the queue for a slot).
pub fn hash(peer: &PeerId, s: &SyncStart, v: &View) -> Result<(), WireError> {
    if v.state == A::Clear {
        return Err(not_found(v, "init-vol and a full backup first"));
    }
    peers::admit(&v.me, &v.vol, &v.peers, peer, Access::Backup)?;
    first([stopping(v), wrong_state(v, "a hash backup", A::Archived)])?;
    if v.base_lb != Some(s.size_lb) {
        // The image's own size is not the peer's business.
        return Err(refuse(
            ErrorCode::SmallerLvSize,
            format!(
                "volume {}: the device's size ({} blocks) is not the archive image's (resize \
                 the archive first)",
                v.vol, s.size_lb
            ),
        ));
    }
    Ok(())
}

/// Latest snapshots (`BackupSync::GatherLatestSnap`): every volume named that exists here
/// must be the peer's.
pub fn gather(peer: &PeerId, vols: &[View]) -> Result<(), WireError> {
    vols.iter()
        .filter(|v| v.state != A::Clear)
        .try_for_each(|v| peers::admit(&v.me, &v.vol, &v.peers, peer, Access::Backup))
}

/// What an admitted wdiff transfer does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WdiffPlan {
    /// The diff announced.
    pub diff: MetaDiff,
    /// Grow the base image to this size first (`--auto-resize`).
    pub grow_to: Option<u64>,
}

/// A wdiff transfer (`WdiffTransfer`): one of the volume's proxies, then walb-tools'
/// refusals in their order ([`refusal_for_state`], [`check_diff`]).
pub fn wdiff(
    peer: &PeerId,
    t: &WdiffTransfer,
    v: &View,
    auto_resize: bool,
) -> Result<WdiffPlan, WireError> {
    let diff = dto::diff_from_dto(&t.diff)?;
    if v.state != A::Clear {
        peers::admit(&v.me, &v.vol, &v.peers, peer, Access::Wdiff)?;
    }
    if let Some(e) = refusal_for_state(&v.vol, v.state, v.stopping, v.fg_free) {
        return Err(e);
    }
    let (Some(have), Some(_)) = (&v.holding, v.base_lb) else {
        return Err(refuse(
            ErrorCode::Internal,
            format!("volume {} is Archived but has no base image", v.vol),
        ));
    };
    check_diff(&v.vol, have, &t.uuid, t.size_lb, &diff, auto_resize)?;
    Ok(WdiffPlan {
        diff,
        grow_to: (t.size_lb > have.size_lb).then_some(t.size_lb),
    })
}

/// A replication into this archive (`Replicate`): one of the volume's source archives;
/// the kind follows from the state and the lineages ([`choose_kind`]) (then the queue for
/// a slot).
pub fn repl(peer: &PeerId, r: &ReplSync, v: &View) -> Result<ReplKind, WireError> {
    if v.state == A::Clear {
        return Err(not_found(v, "init-vol first"));
    }
    peers::admit(&v.me, &v.vol, &v.peers, peer, Access::Replicate)?;
    first([stopping(v)])?;
    let kind = choose_kind(
        &v.vol,
        v.state,
        &v.archive_uuid,
        &r.archive_uuid,
        r.do_resync,
    )?;
    Ok(kind)
}

/// The refusal a wdiff transfer gets from a volume in `state` (`None`: Archived, go on).
/// `stopping` is the volume's stop flag; `fg_free` whether a foreground slot is free.
pub fn refusal_for_state(vol: &str, state: A, stopping: bool, fg_free: bool) -> Option<WireError> {
    let msg = |what: &str| format!("volume {vol} is {}: {what}", state.name());
    match state {
        A::Stopped | A::Start | A::Stop => Some(refuse(
            ErrorCode::Stopped,
            msg("wdiffs are refused until start"),
        )),
        A::FullSync | A::HashSync | A::Resync => Some(refuse(
            ErrorCode::Syncing,
            msg("a backup is being received; retry later"),
        )),
        A::WdiffRecv => Some(refuse(
            ErrorCode::Busy,
            msg("another wdiff is being received; retry later"),
        )),
        _ if !fg_free => Some(refuse(
            ErrorCode::Busy,
            format!("archive runs its maximum of foreground tasks; retry later (volume {vol})"),
        )),
        A::Clear => Some(refuse(
            ErrorCode::NotFound,
            format!("archive-not-found: volume {vol} does not exist on this archive (init-vol and a full backup first)"),
        )),
        A::Archived if stopping => Some(refuse(
            ErrorCode::Stopped,
            format!("volume {vol} is stopping: wdiffs are refused until start"),
        )),
        A::Archived => None,
        _ => Some(refuse(
            ErrorCode::WrongState,
            msg("wdiffs need Archived (a full backup first)"),
        )),
    }
}

/// What the volume holds, for the checks of one incoming diff.
#[derive(Clone, Copy, Debug)]
pub struct Holding {
    /// The volume uuid.
    pub uuid: Uuid,
    /// The base image size, logical blocks.
    pub size_lb: u64,
    /// The latest snapshot (base + chain).
    pub latest: MetaSnap,
}

/// Checks an incoming diff against what the volume holds: uuid, size (unless it will be
/// grown), relation to the latest snapshot.
pub fn check_diff(
    vol: &str,
    have: &Holding,
    uuid: &Uuid,
    size_lb: u64,
    diff: &MetaDiff,
    auto_resize: bool,
) -> Result<(), WireError> {
    if *uuid != have.uuid {
        return Err(refuse(
            ErrorCode::DifferentUuid,
            format!(
                "volume {vol}: the diff's uuid {} differs from the volume's {} (the storage was reset; a new full or hash backup is needed)",
                hex(uuid),
                hex(&have.uuid)
            ),
        ));
    }
    if size_lb > have.size_lb && !auto_resize {
        return Err(refuse(
            ErrorCode::SmallerLvSize,
            format!(
                "volume {vol}: the base image has {} logical blocks, the volume {size_lb}; resize the archive (or run it with --auto-resize)",
                have.size_lb
            ),
        ));
    }
    match have.latest.relation(diff) {
        Relation::Applicable => Ok(()),
        Relation::TooOld => Err(refuse(
            ErrorCode::TooOldDiff,
            format!(
                "volume {vol}: diff {diff} is already contained in the latest snapshot {}",
                have.latest
            ),
        )),
        Relation::TooNew => Err(refuse(
            ErrorCode::TooNewDiff,
            format!(
                "volume {vol}: diff {diff} starts after the latest snapshot {}; earlier diffs are missing",
                have.latest
            ),
        )),
        Relation::NotApplicable => Err(refuse(
            ErrorCode::BadRequest,
            format!(
                "volume {vol}: not-applicable-diff: compared diff {diff} does not start at the latest snapshot {}",
                have.latest
            ),
        )),
    }
}

/// The kind a destination in `state`, of lineage `mine`, chooses for a source of lineage
/// `theirs` (pure; `Err` is the refusal).
pub fn choose_kind(
    vol: &str,
    state: A,
    mine: &Uuid,
    theirs: &Uuid,
    do_resync: bool,
) -> Result<ReplKind, WireError> {
    match state {
        A::SyncReady => Ok(ReplKind::Full),
        A::Archived if mine != theirs && !do_resync => Err(refuse(
            ErrorCode::DifferentUuid,
            format!(
                "volume {vol}: this archive holds another lineage (archive uuid {} here, {} at the source): replicate with resync to rebuild it",
                hex(mine),
                hex(theirs)
            ),
        )),
        A::Archived if do_resync || mine != theirs => Ok(ReplKind::Resync),
        A::Archived => Ok(ReplKind::HashOrDiff),
        A::Clear => Err(refuse(
            ErrorCode::NotFound,
            format!("volume {vol} does not exist on the destination archive (init-vol first)"),
        )),
        s => Err(refuse(
            ErrorCode::WrongState,
            format!(
                "volume {vol} is {} on the destination: replication needs SyncReady or Archived",
                s.name()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walb_wire::msg::{BindCommand, BindHow, DiffRange, MetaDiffDto, PeerRole, SnapDto};
    use walb_wire::Role;

    fn view(state: A) -> View {
        let mut peers = VolPeers::default();
        for (role, id) in [
            (PeerRole::Storage, "s0"),
            (PeerRole::Proxy, "p0"),
            (PeerRole::Archive, "a0"),
        ] {
            peers
                .bind(&BindCommand {
                    vol: "v".into(),
                    role,
                    ids: vec![id.into()],
                    how: BindHow::Add,
                })
                .unwrap();
        }
        View {
            me: "archive a1".into(),
            vol: "v".into(),
            state,
            stopping: false,
            peers,
            fg_free: true,
            base_lb: Some(1000),
            holding: Some(Holding {
                uuid: [1; 16],
                size_lb: 1000,
                latest: MetaSnap::clean(5),
            }),
            archive_uuid: [7; 16],
        }
    }

    fn p(role: Role, id: &str) -> PeerId {
        PeerId::new(role, id).unwrap()
    }

    fn sync(size_lb: u64) -> SyncStart {
        SyncStart {
            vol: "v".into(),
            size_lb,
            time_s: 0,
            bulk_lb: 128,
        }
    }

    fn code<T>(r: Result<T, WireError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn full_backup_table() {
        let s0 = p(Role::Storage, "s0");
        let s9 = p(Role::Storage, "s9");
        let ok = view(A::SyncReady);
        let cases: Vec<(&str, &PeerId, View, Option<ErrorCode>)> = vec![
            ("bound storage, SyncReady", &s0, ok.clone(), None),
            (
                "another storage",
                &s9,
                ok.clone(),
                Some(ErrorCode::Forbidden),
            ),
            (
                "clear volume",
                &s9,
                view(A::Clear),
                Some(ErrorCode::NotFound),
            ),
            (
                "archived already",
                &s0,
                view(A::Archived),
                Some(ErrorCode::WrongState),
            ),
            (
                "another storage on an archived volume",
                &s9,
                view(A::Archived),
                Some(ErrorCode::Forbidden),
            ),
            (
                "stopping",
                &s0,
                View {
                    stopping: true,
                    ..ok.clone()
                },
                Some(ErrorCode::Stopped),
            ),
            (
                "no slot: admitted, it queues for one",
                &s0,
                View {
                    fg_free: false,
                    ..ok.clone()
                },
                None,
            ),
            (
                "no storage bound",
                &s0,
                View {
                    peers: VolPeers::default(),
                    ..ok.clone()
                },
                Some(ErrorCode::Forbidden),
            ),
        ];
        for (what, peer, v, want) in cases {
            assert_eq!(code(full(peer, &sync(1000), &v)), want, "{what}");
        }
    }

    #[test]
    fn hash_backup_table() {
        let s0 = p(Role::Storage, "s0");
        let archived = view(A::Archived);
        assert_eq!(code(hash(&s0, &sync(1000), &archived)), None);
        let e = hash(&s0, &sync(999), &archived).unwrap_err();
        assert_eq!(e.code, ErrorCode::SmallerLvSize);
        assert!(
            !e.message.contains("1000"),
            "the refusal does not tell the image's size: {e}"
        );
        assert_eq!(
            code(hash(&p(Role::Storage, "s1"), &sync(1000), &archived)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(hash(&s0, &sync(1000), &view(A::SyncReady))),
            Some(ErrorCode::WrongState)
        );
        assert_eq!(
            code(hash(&s0, &sync(1000), &view(A::Clear))),
            Some(ErrorCode::NotFound)
        );
    }

    fn wdiff_req(b: u64, e: u64) -> WdiffTransfer {
        let snap = |g| SnapDto { gid_b: g, gid_e: g };
        WdiffTransfer {
            vol: "v".into(),
            uuid: [1; 16],
            size_lb: 1000,
            diff: MetaDiffDto {
                range: DiffRange {
                    snap_b: snap(b),
                    snap_e: snap(e),
                },
                mergeable: false,
                comp_diff: false,
                timestamp_s: 0,
                size: 0,
            },
        }
    }

    #[test]
    fn wdiff_table() {
        let p0 = p(Role::Proxy, "p0");
        let v = view(A::Archived);
        assert_eq!(
            wdiff(&p0, &wdiff_req(5, 6), &v, false).unwrap().grow_to,
            None
        );
        let cases = [
            (
                "another proxy",
                p(Role::Proxy, "p1"),
                wdiff_req(5, 6),
                A::Archived,
                ErrorCode::Forbidden,
            ),
            (
                "too old",
                p0.clone(),
                wdiff_req(3, 4),
                A::Archived,
                ErrorCode::TooOldDiff,
            ),
            (
                "too new",
                p0.clone(),
                wdiff_req(7, 8),
                A::Archived,
                ErrorCode::TooNewDiff,
            ),
            (
                "stopped",
                p0.clone(),
                wdiff_req(5, 6),
                A::Stopped,
                ErrorCode::Stopped,
            ),
            (
                "syncing",
                p0.clone(),
                wdiff_req(5, 6),
                A::HashSync,
                ErrorCode::Syncing,
            ),
            (
                "clear",
                p(Role::Proxy, "p9"),
                wdiff_req(5, 6),
                A::Clear,
                ErrorCode::NotFound,
            ),
            (
                "the bound storage is not a proxy",
                p(Role::Storage, "s0"),
                wdiff_req(5, 6),
                A::Archived,
                ErrorCode::Forbidden,
            ),
        ];
        for (what, peer, req, state, want) in cases {
            assert_eq!(
                code(wdiff(&peer, &req, &view(state), false)),
                Some(want),
                "{what}"
            );
        }
        let mut bigger = wdiff_req(5, 6);
        bigger.size_lb = 2000;
        assert_eq!(
            code(wdiff(&p0, &bigger, &v, false)),
            Some(ErrorCode::SmallerLvSize)
        );
        assert_eq!(wdiff(&p0, &bigger, &v, true).unwrap().grow_to, Some(2000));
    }

    #[test]
    fn replication_table() {
        let a0 = p(Role::Archive, "a0");
        let req = |uuid, do_resync| ReplSync {
            vol: "v".into(),
            archive_uuid: uuid,
            do_resync,
        };
        assert_eq!(
            repl(&a0, &req([0; 16], false), &view(A::SyncReady)),
            Ok(ReplKind::Full)
        );
        assert_eq!(
            repl(&a0, &req([7; 16], false), &view(A::Archived)),
            Ok(ReplKind::HashOrDiff)
        );
        // The audit's attack: an archive nobody set up asks for a resync.
        let e = repl(
            &p(Role::Archive, "a9"),
            &req([9; 16], true),
            &view(A::Archived),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(
            e.message.contains("archive/a9") && e.message.contains("volume v"),
            "{e}"
        );
        assert_eq!(
            code(repl(&a0, &req([9; 16], false), &view(A::Archived))),
            Some(ErrorCode::DifferentUuid)
        );
        assert_eq!(
            code(repl(&a0, &req([0; 16], false), &view(A::Clear))),
            Some(ErrorCode::NotFound)
        );
    }

    #[test]
    fn gathering_latest_snapshots_needs_every_existing_volume_bound() {
        let s0 = p(Role::Storage, "s0");
        let other = View {
            vol: "w".into(),
            peers: VolPeers::default(),
            ..view(A::Archived)
        };
        let absent = View {
            vol: "x".into(),
            ..view(A::Clear)
        };
        assert_eq!(gather(&s0, &[view(A::Archived), absent.clone()]), Ok(()));
        let e = gather(&s0, &[view(A::Archived), other]).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(e.message.contains("volume w"), "{e}");
        assert_eq!(
            code(gather(&p(Role::Storage, "s1"), &[view(A::Archived)])),
            Some(ErrorCode::Forbidden)
        );
    }

    #[test]
    fn state_refusals_come_in_the_protocol_order() {
        let code = |s, stopping, fg| refusal_for_state("v", s, stopping, fg).map(|e| e.code);
        assert_eq!(code(A::Stopped, false, false), Some(ErrorCode::Stopped));
        assert_eq!(code(A::Start, false, true), Some(ErrorCode::Stopped));
        assert_eq!(code(A::FullSync, false, false), Some(ErrorCode::Syncing));
        assert_eq!(code(A::HashSync, false, true), Some(ErrorCode::Syncing));
        assert_eq!(code(A::WdiffRecv, false, true), Some(ErrorCode::Busy));
        assert_eq!(code(A::Archived, false, false), Some(ErrorCode::Busy));
        assert_eq!(code(A::Clear, false, true), Some(ErrorCode::NotFound));
        assert_eq!(code(A::SyncReady, false, true), Some(ErrorCode::WrongState));
        assert_eq!(code(A::Archived, true, true), Some(ErrorCode::Stopped));
        assert_eq!(code(A::Archived, false, true), None);
        let e = refusal_for_state("vol7", A::SyncReady, false, true).unwrap();
        assert!(
            e.message.contains("vol7") && e.message.contains("SyncReady"),
            "{e}"
        );
    }

    #[test]
    fn diff_checks_uuid_size_then_relation() {
        let have = Holding {
            uuid: [1; 16],
            size_lb: 100,
            latest: MetaSnap::clean(5),
        };
        let d = |b, e| MetaDiff::clean(b, e).unwrap();
        let code = |uuid: &Uuid, size, diff: &MetaDiff, auto| {
            check_diff("v", &have, uuid, size, diff, auto)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(
            code(&[2; 16], 200, &d(9, 10), false),
            Some(ErrorCode::DifferentUuid)
        );
        assert_eq!(
            code(&[1; 16], 200, &d(5, 6), false),
            Some(ErrorCode::SmallerLvSize)
        );
        assert_eq!(code(&[1; 16], 200, &d(5, 6), true), None);
        assert_eq!(
            code(&[1; 16], 100, &d(3, 5), false),
            Some(ErrorCode::TooOldDiff)
        );
        assert_eq!(
            code(&[1; 16], 100, &d(6, 7), false),
            Some(ErrorCode::TooNewDiff)
        );
        assert_eq!(code(&[1; 16], 100, &d(5, 6), false), None);
        // A diff overlapping the latest snapshot is applicable too.
        assert_eq!(code(&[1; 16], 100, &d(3, 8), false), None);
        let comp = d(4, 8).with_comp_diff(true);
        assert_eq!(
            code(&[1; 16], 100, &comp, false),
            Some(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn the_destination_chooses_full_resync_or_rounds_and_refuses_the_rest() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        assert_eq!(
            choose_kind("v", A::SyncReady, &a, &b, false).unwrap(),
            ReplKind::Full
        );
        assert_eq!(
            choose_kind("v", A::Archived, &a, &a, false).unwrap(),
            ReplKind::HashOrDiff
        );
        assert_eq!(
            choose_kind("v", A::Archived, &a, &a, true).unwrap(),
            ReplKind::Resync
        );
        assert_eq!(
            choose_kind("v", A::Archived, &a, &b, true).unwrap(),
            ReplKind::Resync
        );
        let e = choose_kind("v", A::Archived, &a, &b, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::DifferentUuid);
        assert!(e.message.contains("resync"), "{e}");
        let e = choose_kind("v", A::Clear, &a, &a, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("init-vol"), "{e}");
        for s in [A::Stopped, A::FullSync, A::HashSync, A::WdiffRecv] {
            assert_eq!(
                choose_kind("v", s, &a, &a, false).unwrap_err().code,
                ErrorCode::WrongState
            );
        }
    }
}
