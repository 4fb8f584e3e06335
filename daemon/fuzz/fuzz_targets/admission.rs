//! A daemon's admission of whatever a peer sends: the bytes go through the transport's
//! intake (size, operation class, authorization, decode, bounds: `walb_wire::intake`) as
//! an archive and as a proxy, then through the archive's and the proxy's per-protocol
//! admission against a volume state chosen by the input. Nothing may panic, and nothing
//! admitted may break the bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walb_daemon::archive::admit::{self, View};
use walb_daemon::peers::VolPeers;
use walb_daemon::proxy::recv::{admit_wlog, WlogView};
use walb_daemon::state::archive::ArchiveState;
use walb_daemon::state::proxy::ProxyState;
use walb_daemon::state::VolState;
use walb_wire::msg::{BackupSync, BindCommand, BindHow, PeerRole, Request};
use walb_wire::{PeerId, Role};

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
    let wire = walb_wire::WireConfig::default();
    let lim = &wire.limits;
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
    // The transport's intake (size, class, authorization, decode, bounds), as an archive.
    if let Ok(req) = walb_wire::intake::request(rest, from, Role::Archive, &wire) {
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
    // As a proxy.
    if let Ok(Request::WlogTransfer(t)) = walb_wire::intake::request(rest, from, Role::Proxy, &wire)
    {
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
            if admit_wlog(&peer, &t, &v).is_ok() {
                assert!(t.log_size_pb.saturating_mul(u64::from(t.pbs)) <= lim.wlog_len_max);
            }
        }
    }
});
