//! Real quinn on loopback: mutual TLS refusals, authorization, framing abuse, bulk
//! transfers, events, version negotiation and TLS reload. Every test is bounded in time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;
use walb_wire::certs::{load_certs, load_key};
use walb_wire::frame::{FrameHeader, FrameKind};
use walb_wire::tls::TlsState;
use walb_wire::{
    ClusterCa, Command, EncodedChunk, Error, ErrorCode, Event, IssueOptions, Message, Node,
    NodeConfig, PeerId, Query, Reply, Request, Role, Step, Subscribe,
};

use common::*;

#[tokio::test]
async fn request_reply_over_mutual_tls_with_identities() {
    let c = Cluster::new("rr");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    assert_eq!(archive.identity().to_string(), "archive/a0");
    let _srv = serve_simple(archive);
    let op = client(c.files(Role::Operator, "alice"));
    let peer = timeout(LIMIT, op.connect(addr)).await.unwrap().unwrap();
    assert_eq!(peer.identity().to_string(), "archive/a0");
    let reply = peer.request(Request::Query(Query::Version)).await.unwrap();
    assert_eq!(
        reply,
        Reply::Version {
            software: "test".into(),
            protocol: walb_wire::msg::PROTOCOL_VERSION
        }
    );
    // The connection is reused.
    let again = op.connect(addr).await.unwrap();
    assert_eq!(
        again.connection().stable_id(),
        peer.connection().stable_id()
    );
    let r = op
        .connect_to(addr, &"archive/a1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(r, Error::UnexpectedPeer { .. }), "{r}");
}

#[tokio::test]
async fn missing_client_certificate_is_refused() {
    let c = Cluster::new("nocert");
    let server_files = issue(
        &c.ca,
        &c.root.join("a"),
        Role::Archive,
        "a0",
        &IssueOptions {
            hosts: vec!["localhost".into()],
            ..IssueOptions::default()
        },
    );
    let (archive, addr) = daemon(server_files.clone());
    let _srv = serve_simple(archive);

    // A bare quinn client that trusts the CA but presents no certificate.
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&server_files.ca_cert).unwrap() {
        roots.add(cert).unwrap();
    }
    let e = bare_client_end(addr, roots, None).await;
    match &e {
        quinn::ConnectionError::ConnectionClosed(c) => {
            // TLS alert 116, certificate_required, as a QUIC crypto error.
            assert_eq!(u64::from(c.error_code), 0x100 + 116, "{e}");
        }
        other => panic!("want a TLS refusal, got {other}"),
    }
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let c = Cluster::new("otherca");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    // A rogue operator: its own CA signed its certificate; it trusts the real CA.
    let rogue_ca = ClusterCa::generate("rogue", 1).unwrap();
    let rogue = rogue_ca
        .issue(
            &PeerId::new(Role::Operator, "mallory").unwrap(),
            &IssueOptions::default(),
        )
        .unwrap();
    let tls = TlsState::from_der(
        vec![c.ca.cert_der()],
        rogue.cert_chain().unwrap(),
        rogue.key_der().unwrap(),
    )
    .unwrap();
    let node = Node::with_tls(NodeConfig::new(loopback(), false), tls).unwrap();
    let e = timeout(LIMIT, node.connect(addr))
        .await
        .unwrap()
        .unwrap_err();
    assert_refused_by_tls(&e);
    assert!(
        e.to_string().contains("unknown CA") || e.to_string().contains("UnknownIssuer"),
        "{e}"
    );

    // And a daemon with a foreign certificate is refused by a client.
    let rogue_archive = rogue_ca
        .issue(
            &PeerId::new(Role::Archive, "evil").unwrap(),
            &IssueOptions::default(),
        )
        .unwrap();
    let tls = TlsState::from_der(
        vec![rogue_ca.cert_der()],
        rogue_archive.cert_chain().unwrap(),
        rogue_archive.key_der().unwrap(),
    )
    .unwrap();
    let evil = Node::with_tls(NodeConfig::new(loopback(), true), tls).unwrap();
    let evil_addr = evil.local_addr().unwrap();
    let op = client(c.files(Role::Operator, "alice"));
    let e = timeout(LIMIT, op.connect(evil_addr))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string().contains("UnknownIssuer") || e.to_string().contains("unknown"),
        "{e}"
    );
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let c = Cluster::new("expired");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    let old = IssueOptions {
        not_before: Some(time::OffsetDateTime::now_utc() - time::Duration::days(10)),
        days: 2,
        ..IssueOptions::default()
    };
    let files = issue(&c.ca, &c.root.join("old"), Role::Operator, "old", &old);
    let op = client(files);
    let e = timeout(LIMIT, op.connect(addr)).await.unwrap().unwrap_err();
    assert_refused_by_tls(&e);
    assert!(
        e.to_string().contains("expired") || e.to_string().contains("Expired"),
        "{e}"
    );
}

#[tokio::test]
async fn roles_asking_for_what_they_may_not_are_refused() {
    let c = Cluster::new("authz");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);

    let viewer = client(c.files(Role::Viewer, "v"));
    let peer = viewer.connect(addr).await.unwrap();
    // Allowed: a query.
    peer.request(Request::Query(Query::Version)).await.unwrap();
    // Refused: a command.
    let e = peer
        .request(Request::Command(Command::GcDiff { vol: "v0".into() }))
        .await
        .unwrap_err();
    assert_eq!(e.remote_code(), Some(ErrorCode::Forbidden), "{e}");
    assert!(
        e.to_string()
            .contains("viewer may not send control commands to archive (only operator may)"),
        "{e}"
    );

    // A storage may not send wdiffs (only proxies may).
    let storage = client(c.files(Role::Storage, "s0"));
    let peer = storage.connect(addr).await.unwrap();
    let e = peer.request(wdiff(8)).await.unwrap_err();
    assert_eq!(e.remote_code(), Some(ErrorCode::Forbidden), "{e}");
    assert!(
        e.to_string()
            .contains("storage may not transfer wdiffs to archive (only proxy may)"),
        "{e}"
    );
    // The connection survives a refusal.
    peer.request(Request::BackupSync(
        walb_wire::msg::BackupSync::GatherLatestSnap { vols: vec![] },
    ))
    .await
    .unwrap();
}

/// Opens a raw stream, writes `bytes`, finishes, and decodes the server's answer.
async fn raw_exchange(peer: &walb_wire::Peer, bytes: &[u8]) -> Message {
    let (mut send, mut recv) = peer.connection().open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    let answer = timeout(LIMIT, recv.read_to_end(1 << 20))
        .await
        .unwrap()
        .unwrap();
    let mut head = [0u8; 5];
    head.copy_from_slice(&answer[..5]);
    let h = FrameHeader::parse(head, 1 << 20).unwrap();
    assert_eq!(h.kind, FrameKind::Msg);
    postcard::from_bytes(&answer[5..]).unwrap()
}

fn remote_error(m: Message) -> walb_wire::WireError {
    match m {
        Message::Error(e) => e,
        other => panic!("want an error, got {other:?}"),
    }
}

#[tokio::test]
async fn truncated_oversized_and_garbage_frames_are_refused() {
    let c = Cluster::new("frames");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    let op = client(c.files(Role::Operator, "alice"));
    let peer = op.connect(addr).await.unwrap();

    // Truncated: the header announces 100 bytes, 10 arrive.
    let mut bytes = FrameHeader {
        kind: FrameKind::Msg,
        len: 100,
    }
    .encode()
    .to_vec();
    bytes.extend_from_slice(&[0u8; 10]);
    let e = remote_error(raw_exchange(&peer, &bytes).await);
    assert_eq!(e.code, ErrorCode::Truncated, "{e}");
    assert!(e.message.contains("10 of 100"), "{e}");

    // A truncated header.
    let e = remote_error(raw_exchange(&peer, &[1, 0]).await);
    assert_eq!(e.code, ErrorCode::Truncated, "{e}");

    // Oversized: 1 GiB announced.
    let bytes = FrameHeader {
        kind: FrameKind::Msg,
        len: 1 << 30,
    }
    .encode();
    let e = remote_error(raw_exchange(&peer, &bytes).await);
    assert_eq!(e.code, ErrorCode::TooLarge, "{e}");

    // Garbage inside a well-formed frame.
    let mut bytes = FrameHeader {
        kind: FrameKind::Msg,
        len: 16,
    }
    .encode()
    .to_vec();
    bytes.extend_from_slice(&[0xff; 16]);
    let e = remote_error(raw_exchange(&peer, &bytes).await);
    assert_eq!(e.code, ErrorCode::BadRequest, "{e}");
    assert!(e.message.contains("cannot decode"), "{e}");

    // An unknown frame kind.
    let e = remote_error(raw_exchange(&peer, &[77, 0, 0, 0, 0]).await);
    assert_eq!(e.code, ErrorCode::Corrupt, "{e}");

    // A stream that starts with something other than a request.
    let payload = postcard::to_stdvec(&Message::Reply(Reply::Done)).unwrap();
    let mut bytes = FrameHeader {
        kind: FrameKind::Msg,
        len: payload.len() as u32,
    }
    .encode()
    .to_vec();
    bytes.extend_from_slice(&payload);
    let e = remote_error(raw_exchange(&peer, &bytes).await);
    assert_eq!(e.code, ErrorCode::BadRequest, "{e}");

    // After all that, the connection still serves requests.
    peer.request(Request::Query(Query::Version)).await.unwrap();
}

/// A proxy streams a wdiff; the archive checks it and acknowledges.
#[tokio::test]
async fn bulk_transfer_round_trips_with_compression_and_checksums() {
    let c = Cluster::new("bulk");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let srv = tokio::spawn(async move {
        let mut inc = archive.accept().await.unwrap();
        assert_eq!(inc.peer.to_string(), "proxy/p0");
        assert!(matches!(inc.request, Request::WdiffTransfer(_)));
        inc.call.reply(Reply::Accepted).await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = inc.call.receiver.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        inc.call.sender.step(Step::Ack).await.unwrap();
        inc.call.sender.finish().unwrap();
        got
    });
    let proxy = client(c.files(Role::Proxy, "p0"));
    let peer = proxy.connect(addr).await.unwrap();
    let mut call = peer.call(wdiff(1 << 20)).await.unwrap();
    assert_eq!(call.receiver.reply().await.unwrap(), Reply::Accepted);
    let mut sent = Vec::new();
    let mut x: u64 = 1;
    for i in 0..24usize {
        // Alternate compressible and incompressible chunks of varying size.
        let len = 1000 + i * 37_000;
        let chunk: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|j| (j % 7) as u8).collect()
        } else {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        sent.extend_from_slice(&chunk);
        if i % 3 == 0 {
            // Encoded ahead (as a reader thread does), compressible and not.
            let mut enc = call.sender.encoder().unwrap();
            let e = EncodedChunk::encode(&mut enc, chunk.into()).unwrap();
            assert_eq!(e.raw_len(), len as u64);
            assert_eq!(e.wire_len() < len, i % 2 == 0, "chunk {i}");
            call.sender.chunk_encoded(e).await.unwrap();
        } else {
            call.sender.chunk(&chunk).await.unwrap();
        }
    }
    call.sender.end_bulk().await.unwrap();
    assert_eq!(call.receiver.step().await.unwrap(), Step::Ack);
    let got = timeout(LIMIT, srv).await.unwrap().unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent);
}

#[tokio::test]
async fn peer_vanishing_mid_transfer_ends_with_an_error() {
    let c = Cluster::new("vanish");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _srv = tokio::spawn(async move {
        let mut inc = archive.accept().await.unwrap();
        inc.call.reply(Reply::Accepted).await.unwrap();
        let mut n = 0;
        let result = loop {
            match inc.call.receiver.chunk().await {
                Ok(Some(_)) => n += 1,
                Ok(None) => break Ok(n),
                Err(e) => break Err(e.to_string()),
            }
        };
        let _ = tx.send(result);
    });
    let proxy = client(c.files(Role::Proxy, "p0"));
    let peer = proxy.connect(addr).await.unwrap();
    let mut call = peer.call(wdiff(8)).await.unwrap();
    call.receiver.reply().await.unwrap();
    for _ in 0..3 {
        call.sender.chunk(&[5u8; 65536]).await.unwrap();
    }
    // The proxy vanishes: its whole endpoint goes away without ending the bulk.
    let t0 = std::time::Instant::now();
    proxy.close().await;
    eprintln!("proxy closed after {:?}", t0.elapsed());
    let result = timeout(LIMIT, rx).await.unwrap().unwrap();
    eprintln!("archive saw the end after {:?}", t0.elapsed());
    let e = result.unwrap_err();
    assert!(
        e.contains("closed") || e.contains("reset") || e.contains("lost"),
        "{e}"
    );

    // And the other way round: the archive vanishes while a proxy sends.
    let (archive, addr) = daemon(c.files(Role::Archive, "a1"));
    let archive2 = archive.clone();
    let _srv = tokio::spawn(async move {
        let mut inc = archive.accept().await.unwrap();
        inc.call.reply(Reply::Accepted).await.unwrap();
        let _ = inc.call.receiver.chunk().await;
        archive.close().await;
    });
    let proxy = client(c.files(Role::Proxy, "p1"));
    let peer = proxy.connect(addr).await.unwrap();
    let mut call = peer.call(wdiff(8)).await.unwrap();
    call.receiver.reply().await.unwrap();
    let t0 = std::time::Instant::now();
    let sent = timeout(LIMIT, async {
        loop {
            if let Err(e) = call.sender.chunk(&[9u8; 1 << 20]).await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(sent, Error::Connection { .. }), "{sent}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    drop(archive2);
}

#[tokio::test]
async fn events_reach_subscribers_filtered_by_volume() {
    let c = Cluster::new("events");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let viewer = client(c.files(Role::Viewer, "v"));
    let peer = viewer.connect(addr).await.unwrap();
    let mut events = peer
        .subscribe(Subscribe {
            vols: vec!["v0".into()],
        })
        .await
        .unwrap();
    let state = |vol: &str| Event::State {
        vol: vol.into(),
        state: "Archived".into(),
        at_s: 1,
    };
    archive.publish(state("v1"));
    archive.publish(state("v0"));
    archive.publish(Event::Progress {
        vol: "v0".into(),
        op: "apply".into(),
        done_lb: 5,
        total_lb: 10,
    });
    let first = timeout(LIMIT, events.next()).await.unwrap().unwrap();
    assert_eq!(first, Some(state("v0")));
    let second = timeout(LIMIT, events.next()).await.unwrap().unwrap();
    assert!(matches!(second, Some(Event::Progress { done_lb: 5, .. })));

    // A storage may not subscribe.
    let storage = client(c.files(Role::Storage, "s0"));
    let e = storage
        .connect(addr)
        .await
        .unwrap()
        .subscribe(Subscribe::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.remote_code(), Some(ErrorCode::Forbidden), "{e}");
}

#[tokio::test]
async fn version_mismatch_fails_with_a_clear_message() {
    let c = Cluster::new("version");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    let mut cfg = NodeConfig::new(loopback(), false);
    cfg.versions = (7, 9);
    cfg.software = "walb-from-the-future".into();
    let op = Node::bind(cfg, c.files(Role::Operator, "alice")).unwrap();
    let e = timeout(LIMIT, op.connect(addr)).await.unwrap().unwrap_err();
    assert_eq!(e.remote_code(), Some(ErrorCode::VersionMismatch), "{e}");
    let s = e.to_string();
    let ours = format!(
        "{}..={}",
        walb_wire::msg::PROTOCOL_VERSION_MIN,
        walb_wire::msg::PROTOCOL_VERSION
    );
    assert!(s.contains("7..=9") && s.contains(&ours), "{s}");
}

/// A typed answer (protocol 4) reaches a client that speaks 4 as it is, and one that
/// speaks only 2..=3 as the text it renders to: the transport sends each peer the form
/// it knows.
#[tokio::test]
async fn typed_answers_reach_older_clients_as_their_text() {
    let c = Cluster::new("typed");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive);
    let state = || Request::Query(Query::State { vol: "v".into() });
    let new = client(c.files(Role::Operator, "new"));
    let peer = timeout(LIMIT, new.connect(addr)).await.unwrap().unwrap();
    assert_eq!(peer.version(), walb_wire::msg::PROTOCOL_VERSION);
    assert_eq!(
        peer.request(state()).await.unwrap(),
        Reply::State(walb_wire::msg::VolumeState::Archive(
            walb_wire::msg::ArchiveState::Archived
        ))
    );
    let mut cfg = NodeConfig::new(loopback(), false);
    cfg.versions = (
        walb_wire::msg::PROTOCOL_VERSION_MIN,
        walb_wire::msg::PROTOCOL_VERSION_TYPED - 1,
    );
    let old = Node::bind(cfg, c.files(Role::Operator, "old")).unwrap();
    let peer = timeout(LIMIT, old.connect(addr)).await.unwrap().unwrap();
    assert_eq!(peer.version(), walb_wire::msg::PROTOCOL_VERSION_TYPED - 1);
    assert_eq!(
        peer.request(state()).await.unwrap(),
        Reply::Text("Archived".into())
    );
}

/// A typed state change reaches a subscriber that speaks 4 as it is, and one that speaks
/// only 2..=3 as the named [`Event::State`].
#[tokio::test]
async fn typed_state_events_reach_older_subscribers_by_name() {
    use walb_wire::msg::{StorageState, VolumeState};
    let c = Cluster::new("typed-ev");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let new = client(c.files(Role::Viewer, "new"));
    let mut cfg = NodeConfig::new(loopback(), false);
    cfg.versions = (
        walb_wire::msg::PROTOCOL_VERSION_MIN,
        walb_wire::msg::PROTOCOL_VERSION_TYPED - 1,
    );
    let old = Node::bind(cfg, c.files(Role::Viewer, "old")).unwrap();
    let sub = || Subscribe { vols: vec![] };
    let mut new_events = new
        .connect(addr)
        .await
        .unwrap()
        .subscribe(sub())
        .await
        .unwrap();
    let mut old_events = old
        .connect(addr)
        .await
        .unwrap()
        .subscribe(sub())
        .await
        .unwrap();
    let typed = Event::VolState {
        vol: "v0".into(),
        state: VolumeState::Storage(StorageState::Target),
        at_s: 3,
    };
    archive.publish(typed.clone());
    let got = timeout(LIMIT, new_events.next()).await.unwrap().unwrap();
    assert_eq!(got, Some(typed));
    let got = timeout(LIMIT, old_events.next()).await.unwrap().unwrap();
    assert_eq!(
        got,
        Some(Event::State {
            vol: "v0".into(),
            state: "Target".into(),
            at_s: 3
        })
    );
}

/// The server trusts CA 1 only; a client of CA 2 is refused. After the server's CA file
/// gains CA 2 and the node reloads on SIGHUP, the client gets in, and a connection made
/// before the reload keeps working.
#[tokio::test]
async fn sighup_reloads_trust_without_dropping_live_connections() {
    let c = Cluster::new("reload");
    let server_files = c.files(Role::Archive, "a0");
    let (archive, addr) = daemon(server_files.clone());
    let _hup = archive.reload_on_sighup().unwrap();
    let _srv = serve_simple(archive.clone());

    let op1 = client(c.files(Role::Operator, "one"));
    let live = op1.connect(addr).await.unwrap();

    let ca2 = ClusterCa::generate("second", 1).unwrap();
    let dir2 = c.root.join("ca2-op");
    let files2 = issue(&ca2, &dir2, Role::Operator, "two", &IssueOptions::default());
    // The new operator trusts both CAs, so only the server's trust decides.
    std::fs::write(
        &files2.ca_cert,
        format!("{}{}", c.ca.cert_pem(), ca2.cert_pem()),
    )
    .unwrap();
    let op2 = client(files2);
    let e = op2.connect(addr).await.unwrap_err();
    assert_refused_by_tls(&e);

    std::fs::write(
        &server_files.ca_cert,
        format!("{}{}", c.ca.cert_pem(), ca2.cert_pem()),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let peer2 = timeout(LIMIT, async {
        loop {
            match op2.connect(addr).await {
                Ok(p) => return p,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .unwrap();
    peer2.request(Request::Query(Query::Version)).await.unwrap();
    live.request(Request::Query(Query::Version)).await.unwrap();

    // A reload to another identity is refused, and the old material stays.
    let other = c.files(Role::Archive, "a9");
    std::fs::copy(&other.cert, &server_files.cert).unwrap();
    std::fs::copy(&other.key, &server_files.key).unwrap();
    let e = archive.reload_tls().unwrap_err();
    assert!(e.to_string().contains("restart to change identity"), "{e}");
    let fresh = client(c.files(Role::Operator, "three"));
    let p = fresh.connect(addr).await.unwrap();
    assert_eq!(p.identity().to_string(), "archive/a0");
    let _ = (load_key(&server_files.key), Bytes::new());
}

/// A proxy sends a zstd chunk whose header lies about its size: the archive's read fails
/// with a corruption error naming the lengths, and the proxy is told.
#[tokio::test]
async fn zstd_chunks_lying_about_their_size_are_refused() {
    use walb_wire::frame::{ChunkCodec, ChunkHeader};
    let c = Cluster::new("zlie");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let srv = tokio::spawn(async move {
        let mut inc = archive.accept().await.unwrap();
        inc.call.reply(Reply::Accepted).await.unwrap();
        let e = inc.call.receiver.chunk().await.unwrap_err();
        inc.call.sender.refuse(e.to_wire()).await;
        e
    });
    let proxy = client(c.files(Role::Proxy, "p0"));
    let peer = proxy.connect(addr).await.unwrap();
    let mut call = peer.call(wdiff(8)).await.unwrap();
    call.receiver.reply().await.unwrap();
    let data = vec![4u8; 100_000];
    let stored = zstd::bulk::compress(&data, 1).unwrap();
    let head = ChunkHeader {
        codec: ChunkCodec::Zstd,
        raw_len: 4096,
        checksum: walb_wire::frame::checksum(&data),
    };
    let mut bytes = FrameHeader {
        kind: FrameKind::Chunk,
        len: (16 + stored.len()) as u32,
    }
    .encode()
    .to_vec();
    bytes.extend_from_slice(&head.encode());
    bytes.extend_from_slice(&stored);
    call.sender.write_raw(&bytes).await.unwrap();
    let e = timeout(LIMIT, srv).await.unwrap().unwrap();
    assert!(
        e.to_string().contains("header says 4096 bytes, got 100000"),
        "{e}"
    );
    let told = call.receiver.step().await.unwrap_err();
    assert_eq!(told.remote_code(), Some(ErrorCode::Corrupt), "{told}");
}
