//! What a hostile peer costs a node in memory, measured on this process (its own test
//! binary, one test at a time, so the figures are the node's): frames announced but not
//! sent reserve nothing, oversized subscriptions are not kept, and 60,000 garbage UDP
//! datagrams leave a node serving with its memory unchanged.

mod common;

use std::time::Duration;

use tokio::time::timeout;
use walb_wire::frame::{FrameHeader, FrameKind};
use walb_wire::{Message, Query, Reply, Request, Role, Subscribe, WireConfig};

use common::*;

/// Tests here measure the whole process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announced_but_not_sent_reserve_nothing() {
    let _one = SERIAL.lock().await;
    let c = Cluster::new("reserve");
    let wire = WireConfig {
        identity_calls_max: 1024,
        ..WireConfig::default()
    };
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a0"), wire.clone());
    let _srv = serve_simple(archive);
    // Three peers, 200 streams each (within the 256 a connection may open), every stream
    // opening with a chunk frame that announces the largest payload and sends 100 bytes.
    const STREAMS: u64 = 200;
    let mut peers = Vec::new();
    for id in ["p0", "p1", "p2"] {
        let n = client(c.files(Role::Proxy, id));
        let p = n.connect(addr).await.unwrap();
        // Connected and negotiated (a proxy may not query: refused, which is enough).
        p.request(Request::Query(Query::Version)).await.unwrap_err();
        peers.push((n, p));
    }
    let announced = wire.chunk_frame_len_max();
    let before = status_kib("VmSize");
    let mut streams = Vec::new();
    for (_, p) in &peers {
        for _ in 0..STREAMS {
            let (mut send, recv) = p.connection().open_bi().await.unwrap();
            let mut bytes = FrameHeader {
                kind: FrameKind::Chunk,
                len: announced,
            }
            .encode()
            .to_vec();
            bytes.extend_from_slice(&[0u8; 100]);
            send.write_all(&bytes).await.unwrap();
            streams.push((send, recv));
        }
    }
    // Let the node read every stream's start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = status_kib("VmSize");
    let grown_mib = after.saturating_sub(before) / 1024;
    let claimed_mib = 3 * STREAMS * u64::from(announced) / (1 << 20);
    eprintln!("VmSize {before} -> {after} KiB (+{grown_mib} MiB) for {claimed_mib} MiB announced");
    assert!(
        grown_mib < 256,
        "600 streams announcing {claimed_mib} MiB grew the process by {grown_mib} MiB"
    );
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_subscriptions_are_not_kept() {
    let _one = SERIAL.lock().await;
    let c = Cluster::new("subs-mem");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    let viewer = client(c.files(Role::Viewer, "v"));
    let peer = viewer.connect(addr).await.unwrap();
    // As many empty names as fit the largest message a server reads.
    let sub = Message::Request(Request::Subscribe(Subscribe {
        vols: vec![String::new(); 65_000],
    }));
    let payload = postcard::to_stdvec(&sub).unwrap();
    let mut frame = FrameHeader {
        kind: FrameKind::Msg,
        len: payload.len() as u32,
    }
    .encode()
    .to_vec();
    frame.extend_from_slice(&payload);
    let before = status_kib("VmRSS");
    for round in 0..16 {
        let (mut send, mut recv) = peer.connection().open_bi().await.unwrap();
        send.write_all(&frame).await.unwrap();
        send.finish().unwrap();
        let answer = timeout(LIMIT, recv.read_to_end(1 << 16))
            .await
            .unwrap()
            .unwrap();
        let Message::Error(e) = postcard::from_bytes(&answer[5..]).unwrap() else {
            panic!("round {round}: want a refusal")
        };
        assert!(e.message.contains("at most 4096"), "{e}");
    }
    let after = status_kib("VmRSS");
    eprintln!("VmRSS {before} -> {after} KiB after 16 refused subscriptions");
    assert!(
        after.saturating_sub(before) < 32 << 10,
        "RSS grew from {before} to {after} KiB"
    );
}

/// xorshift: garbage that is the same on every run.
fn garbage(x: &mut u64, buf: &mut [u8]) {
    for b in buf {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *b = *x as u8;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_leave_a_node_serving_with_its_memory() {
    let _one = SERIAL.lock().await;
    let c = Cluster::new("udp");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    let op = client(c.files(Role::Operator, "op"));
    let peer = op.connect(addr).await.unwrap();
    peer.request(Request::Query(Query::Version)).await.unwrap();
    let before = status_kib("VmRSS");
    let sock = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1500];
    for i in 0..60_000u32 {
        let len = 1 + (i as usize * 7919) % 1400;
        garbage(&mut x, &mut buf[..len]);
        if i % 3 == 0 && len > 1200 {
            // Shaped like a QUIC v1 Initial, so that it goes past the first byte.
            buf[0] = 0xc0 | (buf[0] & 0x0f);
            buf[1..5].copy_from_slice(&1u32.to_be_bytes());
            buf[5] = 8;
        }
        sock.send_to(&buf[..len], addr).await.unwrap();
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Live and new connections are served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = timeout(LIMIT, peer.request(Request::Query(Query::Version)))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(reply, Reply::Version { .. }));
    let fresh = client(c.files(Role::Operator, "fresh"));
    timeout(LIMIT, fresh.connect(addr))
        .await
        .unwrap()
        .unwrap()
        .request(Request::Query(Query::Version))
        .await
        .unwrap();
    let after = status_kib("VmRSS");
    eprintln!("VmRSS {before} -> {after} KiB after 60000 garbage datagrams");
    assert!(
        after.saturating_sub(before) < 16 << 10,
        "RSS grew from {before} to {after} KiB"
    );
}
