//! What a peer may hold of a node, over real QUIC: connections, calls and subscriptions
//! per identity (and subscriptions per node); the size of control messages on each end of
//! a call; authorization before decoding; admission of every step; the step timeout on
//! reads and writes of both ends, and its exceptions (slow progress, subscriptions).

mod common;

use std::time::Duration;

use tokio::time::timeout;
use walb_wire::frame::{FrameHeader, FrameKind};
use walb_wire::{
    Error, ErrorCode, Event, Message, Node, Peer, Query, Reply, Request, Role, Step, Subscribe,
    WireConfig, WireError,
};

use common::*;

fn version() -> Request {
    Request::Query(Query::Version)
}

/// Opens a raw stream, writes `bytes`, finishes, and returns the server's error.
async fn raw_refusal(peer: &Peer, bytes: &[u8]) -> WireError {
    let (mut send, mut recv) = peer.connection().open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    let answer = timeout(LIMIT, recv.read_to_end(1 << 20))
        .await
        .unwrap()
        .unwrap();
    match postcard::from_bytes(&answer[5..]).unwrap() {
        Message::Error(e) => e,
        other => panic!("want an error, got {other:?}"),
    }
}

fn msg_frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = FrameHeader {
        kind: FrameKind::Msg,
        len: payload.len() as u32,
    }
    .encode()
    .to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test]
async fn connections_per_identity_are_capped() {
    let c = Cluster::new("cap-conns");
    let wire = WireConfig {
        identity_connections_max: 2,
        ..WireConfig::default()
    };
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a0"), wire);
    let _srv = serve_simple(archive);
    let alice = c.files(Role::Operator, "alice");
    // Each node is one endpoint with one connection per address.
    let nodes: Vec<Node> = (0..3).map(|_| client(alice.clone())).collect();
    let p0 = nodes[0].connect(addr).await.unwrap();
    let p1 = nodes[1].connect(addr).await.unwrap();
    p0.request(version()).await.unwrap();
    p1.request(version()).await.unwrap();
    let third = timeout(LIMIT, async {
        let p = nodes[2].connect(addr).await?;
        p.request(version()).await
    })
    .await
    .unwrap()
    .unwrap_err();
    let s = third.to_string();
    assert!(
        s.contains("operator/alice has 2 connections open") && s.contains("at most 2 per identity"),
        "{s}"
    );
    // Another identity is not affected.
    let bob = client(c.files(Role::Operator, "bob"));
    bob.connect(addr)
        .await
        .unwrap()
        .request(version())
        .await
        .unwrap();
    // Once a connection closes, its slot is free again.
    nodes[0].close().await;
    timeout(LIMIT, async {
        loop {
            if let Ok(p) = nodes[2].connect(addr).await {
                if p.request(version()).await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn calls_per_identity_are_capped_across_connections() {
    let c = Cluster::new("cap-calls");
    let wire = WireConfig {
        identity_calls_max: 3,
        ..WireConfig::default()
    };
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a0"), wire);
    // The daemon holds every call without answering, until told to let one go.
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel(16);
    let node = archive.clone();
    tokio::spawn(async move {
        while let Some(inc) = node.accept().await {
            if held_tx.send(inc).await.is_err() {
                return;
            }
        }
    });
    let alice = c.files(Role::Proxy, "p0");
    let (n1, n2) = (client(alice.clone()), client(alice));
    let (p1, p2) = (
        n1.connect(addr).await.unwrap(),
        n2.connect(addr).await.unwrap(),
    );
    let mut calls = Vec::new();
    for p in [&p1, &p2, &p1] {
        calls.push(p.call(wdiff(1 << 20)).await.unwrap());
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(timeout(LIMIT, held_rx.recv()).await.unwrap().unwrap());
    }
    let e = timeout(LIMIT, p2.request(wdiff(1 << 20)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.remote_code(), Some(ErrorCode::Busy), "{e}");
    assert!(
        e.to_string()
            .contains("proxy/p0 has 3 calls in progress on archive/a0; at most 3 per identity"),
        "{e}"
    );
    // Another identity still gets in.
    let other = client(c.files(Role::Operator, "op"));
    let op = other.connect(addr).await.unwrap();
    let mut op_call = op.call(version()).await.unwrap();
    let mut inc = timeout(LIMIT, held_rx.recv()).await.unwrap().unwrap();
    inc.call.reply(Reply::Done).await.unwrap();
    assert_eq!(op_call.receiver.reply().await.unwrap(), Reply::Done);
    // The daemon ends a call: its slot is free.
    drop(held.pop());
    let mut next = p2.call(wdiff(1 << 20)).await.unwrap();
    let mut inc = timeout(LIMIT, held_rx.recv()).await.unwrap().unwrap();
    inc.call.reply(Reply::Accepted).await.unwrap();
    assert_eq!(next.receiver.reply().await.unwrap(), Reply::Accepted);
}

#[tokio::test]
async fn subscriptions_are_capped_per_identity_and_per_node() {
    let c = Cluster::new("cap-subs");
    let wire = WireConfig {
        identity_subscriptions_max: 1,
        subscriptions_max: 2,
        ..WireConfig::default()
    };
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a0"), wire);
    let v1 = client(c.files(Role::Viewer, "v1"))
        .connect(addr)
        .await
        .unwrap();
    let _s1 = v1.subscribe(Subscribe::default()).await.unwrap();
    let e = v1.subscribe(Subscribe::default()).await.err().unwrap();
    assert_eq!(e.remote_code(), Some(ErrorCode::Busy), "{e}");
    assert!(e.to_string().contains("at most 1 per identity"), "{e}");
    let v2 = client(c.files(Role::Viewer, "v2"))
        .connect(addr)
        .await
        .unwrap();
    let mut s2 = v2.subscribe(Subscribe::default()).await.unwrap();
    let v3 = client(c.files(Role::Viewer, "v3"))
        .connect(addr)
        .await
        .unwrap();
    let e = v3.subscribe(Subscribe::default()).await.err().unwrap();
    assert_eq!(e.remote_code(), Some(ErrorCode::Busy), "{e}");
    assert!(
        e.to_string()
            .contains("archive/a0 serves 2 event subscriptions; at most 2"),
        "{e}"
    );
    // The held subscriptions still work.
    archive.publish(Event::Lagged { missed: 0 });
    let ev = timeout(LIMIT, s2.next()).await.unwrap().unwrap();
    assert_eq!(ev, Some(Event::Lagged { missed: 0 }));
}

#[tokio::test]
async fn a_server_reads_small_messages_a_client_takes_large_replies() {
    let c = Cluster::new("sizes");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let node = archive.clone();
    // A status reply of ~2 MiB, far above the 64 KiB a server reads.
    let big = vec!["x".repeat(1000); 2000];
    let lines = big.clone();
    tokio::spawn(async move {
        while let Some(mut inc) = node.accept().await {
            let _ = inc.call.reply(Reply::Lines(lines.clone())).await;
        }
    });
    let op = client(c.files(Role::Operator, "op"));
    let peer = op.connect(addr).await.unwrap();
    assert_eq!(peer.request(version()).await.unwrap(), Reply::Lines(big));

    let w = WireConfig::default();
    assert_eq!(w.msg_len_max, 64 << 10);
    // A message frame one byte over the server's maximum is refused from its header.
    let mut head = FrameHeader {
        kind: FrameKind::Msg,
        len: w.msg_len_max + 1,
    }
    .encode()
    .to_vec();
    head.extend_from_slice(&[0; 16]);
    let e = raw_refusal(&peer, &head).await;
    assert_eq!(e.code, ErrorCode::TooLarge, "{e}");
    assert!(e.message.contains("maximum 65536"), "{e}");
}

#[tokio::test]
async fn requests_are_authorized_before_they_are_decoded() {
    let c = Cluster::new("peek");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    let storage = client(c.files(Role::Storage, "s0"));
    let peer = storage.connect(addr).await.unwrap();
    // A subscription (which a storage may not ask) whose body is garbage: refused for
    // who asks, not for what follows.
    let mut payload = vec![0u8, 2];
    payload.extend_from_slice(&[0xff; 60_000]);
    let e = raw_refusal(&peer, &msg_frame(&payload)).await;
    assert_eq!(e.code, ErrorCode::Forbidden, "{e}");
    assert!(e.message.contains("storage may not subscribe"), "{e}");
    // A viewer may subscribe; 64 KiB of empty names decode, then admission refuses them.
    let viewer = client(c.files(Role::Viewer, "v"));
    let vpeer = viewer.connect(addr).await.unwrap();
    let sub = Message::Request(Request::Subscribe(Subscribe {
        vols: vec![String::new(); 60_000],
    }));
    let e = raw_refusal(&vpeer, &msg_frame(&postcard::to_stdvec(&sub).unwrap())).await;
    assert_eq!(e.code, ErrorCode::TooLarge, "{e}");
    assert!(e.message.contains("60000 entries; at most 4096"), "{e}");
    peer.request(Request::BackupSync(
        walb_wire::msg::BackupSync::GatherLatestSnap { vols: vec![] },
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn every_step_is_admitted_before_protocol_code_sees_it() {
    let c = Cluster::new("steps");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut inc = archive.accept().await.unwrap();
        inc.call.reply(Reply::Accepted).await.unwrap();
        let first = inc.call.receiver.step().await;
        let second = inc.call.receiver.next().await;
        let _ = tx.send((
            first.map_err(|e| e.to_wire()),
            second.map_err(|e| e.to_wire()),
        ));
    });
    let proxy = client(c.files(Role::Proxy, "p0"));
    let peer = proxy.connect(addr).await.unwrap();
    let mut call = peer.call(wdiff(1 << 20)).await.unwrap();
    call.receiver.reply().await.unwrap();
    call.sender.step(Step::Zero { len_lb: 0 }).await.unwrap();
    call.sender
        .step(Step::Progress {
            done_lb: 9,
            total_lb: 1,
        })
        .await
        .unwrap();
    let (first, second) = timeout(LIMIT, rx).await.unwrap().unwrap();
    let e = first.unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("a zero run of 0 logical blocks"), "{e}");
    let e = second.unwrap_err();
    assert!(e.message.contains("progress 9 of 1"), "{e}");
}

fn short(t: Duration) -> WireConfig {
    WireConfig {
        step_timeout: Some(t),
        ..WireConfig::default()
    }
}

#[tokio::test]
async fn a_silent_peer_times_out_on_either_end() {
    let t = Duration::from_millis(300);
    let c = Cluster::new("silent");
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a0"), short(t));
    // The daemon takes calls and never answers.
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel(16);
    let node = archive.clone();
    tokio::spawn(async move {
        while let Some(inc) = node.accept().await {
            let _ = held_tx.send(inc).await;
        }
    });
    // A console (no step timeout by default) opens a stream and says nothing: the
    // server gives up waiting for the request.
    let op = client(c.files(Role::Operator, "op"));
    assert_eq!(op.wire_config().step_timeout, None);
    let peer = op.connect(addr).await.unwrap();
    let (mut send, mut recv) = peer.connection().open_bi().await.unwrap();
    send.write_all(&[1, 0]).await.unwrap();
    let t0 = std::time::Instant::now();
    let answer = timeout(LIMIT, recv.read_to_end(1 << 16))
        .await
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() >= t, "{:?}", t0.elapsed());
    let Message::Error(e) = postcard::from_bytes(&answer[5..]).unwrap() else {
        panic!("want an error")
    };
    assert!(
        e.message
            .contains("no progress for 0.300 s while waiting for the request"),
        "{e}"
    );

    // A client with a step timeout waits for a reply that never comes.
    let proxy = client_with(c.files(Role::Proxy, "p0"), short(t));
    let ppeer = proxy.connect(addr).await.unwrap();
    let e = timeout(LIMIT, ppeer.request(wdiff(1 << 20)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    assert!(
        e.to_string()
            .contains("no progress for 0.300 s while waiting for a reply"),
        "{e}"
    );

    // The daemon waits for a step that never comes.
    let _unanswered = timeout(LIMIT, held_rx.recv()).await.unwrap().unwrap();
    let mut call = ppeer.call(wdiff(1 << 20)).await.unwrap();
    let mut inc = timeout(LIMIT, held_rx.recv()).await.unwrap().unwrap();
    inc.call.reply(Reply::Accepted).await.unwrap();
    call.receiver.reply().await.unwrap();
    let e = timeout(LIMIT, inc.call.receiver.step())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no progress for 0.300 s while waiting for a step"),
        "{e}"
    );
    assert_eq!(e.to_wire().code, ErrorCode::Cancelled);
}

/// A daemon that accepts one wdiff transfer and reads a chunk every `pause`.
fn slow_reader(node: Node, pause: Duration) -> tokio::task::JoinHandle<Result<u64, Error>> {
    tokio::spawn(async move {
        let mut inc = node.accept().await.unwrap();
        inc.call.reply(Reply::Accepted).await?;
        let mut n = 0;
        while let Some(c) = inc.call.receiver.chunk().await? {
            n += c.len() as u64;
            tokio::time::sleep(pause).await;
        }
        inc.call.sender.step(Step::Ack).await?;
        Ok(n)
    })
}

/// Windows of 64 KiB: a sender of 32 KiB chunks waits for credit after two of them.
fn small_windows(t: Duration) -> WireConfig {
    WireConfig {
        stream_receive_window: 64 << 10,
        receive_window: 64 << 10,
        zstd_level: None,
        ..short(t)
    }
}

#[tokio::test]
async fn a_writer_blocked_by_flow_control_times_out_only_without_credit() {
    let t = Duration::from_millis(500);
    let c = Cluster::new("credit");
    // Slow but steady: the reader takes a chunk every 50 ms, so credit keeps coming;
    // the whole transfer takes longer than the step timeout and succeeds (what the
    // receiver holds when the last chunk leaves, a few chunks, takes less than it).
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a0"), small_windows(t));
    let srv = slow_reader(archive, Duration::from_millis(50));
    let proxy = client_with(c.files(Role::Proxy, "p0"), small_windows(t));
    let peer = proxy.connect(addr).await.unwrap();
    let mut call = peer.call(wdiff(1 << 20)).await.unwrap();
    call.receiver.reply().await.unwrap();
    let t0 = std::time::Instant::now();
    for _ in 0..16 {
        call.sender.chunk(&[7u8; 32 << 10]).await.unwrap();
    }
    call.sender.end_bulk().await.unwrap();
    assert_eq!(call.receiver.step().await.unwrap(), Step::Ack);
    assert!(t0.elapsed() > t, "{:?}", t0.elapsed());
    assert_eq!(
        timeout(LIMIT, srv).await.unwrap().unwrap().unwrap(),
        16 << 15
    );

    // A reader that stops reading: the writer fails once no credit came for the timeout.
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a1"), small_windows(t));
    let _srv = slow_reader(archive, Duration::from_secs(3600));
    let peer = proxy.connect(addr).await.unwrap();
    let mut call = peer.call(wdiff(1 << 20)).await.unwrap();
    call.receiver.reply().await.unwrap();
    let e = timeout(LIMIT, async {
        loop {
            if let Err(e) = call.sender.chunk(&[7u8; 32 << 10]).await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        e.to_string()
            .contains("no progress for 0.500 s while sending a bulk chunk"),
        "{e}"
    );
}

#[tokio::test]
async fn subscriptions_do_not_time_out() {
    let t = Duration::from_millis(200);
    let c = Cluster::new("quiet");
    let (archive, addr) = daemon_with(c.files(Role::Archive, "a0"), short(t));
    let viewer = client_with(c.files(Role::Viewer, "v"), short(t));
    let peer = viewer.connect(addr).await.unwrap();
    let mut events = peer.subscribe(Subscribe::default()).await.unwrap();
    tokio::time::sleep(t * 4).await;
    archive.publish(Event::Lagged { missed: 3 });
    let ev = timeout(LIMIT, events.next()).await.unwrap().unwrap();
    assert_eq!(ev, Some(Event::Lagged { missed: 3 }));
}
