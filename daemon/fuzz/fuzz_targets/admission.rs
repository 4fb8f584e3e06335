//! A daemon's admission of whatever a peer sends: the request decoded from the bytes,
//! authorized by role, bounded by `walb_wire::admit`, then admitted by the archive's and
//! the proxy's per-protocol functions against a volume state chosen by the input. Nothing
//! may panic, and nothing admitted may break the bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walb_daemon::archive::admit::{self, View};
use walb_daemon::peers::VolPeers;
use walb_daemon::proxy::recv::{admit_wlog, WlogView};
use walb_daemon::state::archive::ArchiveState;
use walb_daemon::state::proxy::ProxyState;
use walb_daemon::state::VolState;
use walb_wire::msg::{BackupSync, BindCommand, BindHow, PeerRole, Request};
use walb_wire::{authorize, Limits, PeerId, Role};

fn peers(bits: u8) -> VolPeers {
    let mut p = VolPeers::default();
    for (bit, role, id) in [
        (1, PeerRole::Storage, "s0"),
        (2, PeerRole::Proxy, "p0"),
        (4, PeerRole::Archive, "a0"),
    ] {
        if bits & bit != 0 {
            let _ = p.bind(&BindCommand {
                vol: "v".into(),
                role,
                ids: vec![id.into()],
                how: BindHow::Add,
            });
        }
    }
    p
}

fuzz_target!(|data: &[u8]| {
    let [r, s, bits, flags, rest @ ..] = data else {
        return;
    };
    let from = Role::ALL[usize::from(*r) % Role::ALL.len()];
    let id = ["s0", "s9", "p0", "a0", "a9"][usize::from(*s) % 5];
    let Ok(peer) = PeerId::new(from, id) else {
        return;
    };
    let Ok(req) = postcard::from_bytes::<Request>(rest) else {
        return;
    };
    let lim = Limits::default();
    let vol = |name: &str, state: ArchiveState| View {
        me: "archive a1".into(),
        vol: name.to_owned(),
        state,
        stopping: flags & 1 != 0,
        peers: peers(*bits),
        fg_free: flags & 2 != 0,
        base_lb: (flags & 4 != 0).then_some(u64::from(*bits) << 20),
        holding: None,
        archive_uuid: [*bits; 16],
    };
    let astate = ArchiveState::ALL[usize::from(*bits) % ArchiveState::ALL.len()];
    if authorize(from, Role::Archive, req.op_class()).is_ok()
        && walb_wire::admit::request(&req, &lim).is_ok()
    {
        let _ = match &req {
            Request::BackupSync(BackupSync::Full(st)) => {
                admit::full(&peer, st, &vol(&st.vol, astate)).map(|_| ())
            }
            Request::BackupSync(BackupSync::Hash(st)) => {
                admit::hash(&peer, st, &vol(&st.vol, astate)).map(|_| ())
            }
            Request::BackupSync(BackupSync::GatherLatestSnap { vols }) => {
                let views: Vec<View> = vols.iter().map(|v| vol(v, astate)).collect();
                admit::gather(&peer, &views)
            }
            Request::WdiffTransfer(t) => {
                admit::wdiff(&peer, t, &vol(&t.vol, astate), flags & 8 != 0).map(|_| ())
            }
            Request::Replicate(rs) => admit::repl(&peer, rs, &vol(&rs.vol, astate)).map(|_| ()),
            _ => Ok(()),
        };
    }
    if let Request::WlogTransfer(t) = &req {
        if authorize(from, Role::Proxy, req.op_class()).is_ok()
            && walb_wire::admit::request(&req, &lim).is_ok()
        {
            let pstate = ProxyState::ALL[usize::from(*bits) % ProxyState::ALL.len()];
            let v = WlogView {
                me: "proxy p0".into(),
                state: pstate,
                stopping: flags & 1 != 0,
                peers: peers(*bits),
                fg_free: flags & 2 != 0,
                free_bytes: u64::from(*bits) << 24,
                min_free: 64 << 20,
            };
            if admit_wlog(&peer, t, &v).is_ok() {
                assert!(t.log_size_pb.saturating_mul(u64::from(t.pbs)) <= lim.wlog_len_max);
            }
        }
    }
});
