//! Revocation over real QUIC: the deny list beside `ca.crt` refuses handshakes on both
//! sides, and a reload closes the live connections of revoked peers (and only theirs);
//! certificates that expire, or whose CA is no longer trusted, while connected are
//! disconnected too.

mod common;

use std::time::Duration;

use tokio::time::timeout;
use walb_wire::deny::{self, Entry, Serial};
use walb_wire::{Error, IssueOptions, Peer, Query, Request, Role, TlsFiles};

use common::*;

/// Appends `entry` to the deny list beside `files.ca_cert`.
fn deny(files: &TlsFiles, entry: &str) {
    let path = deny::path_beside(&files.ca_cert);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let entry: Entry = entry.parse().unwrap();
    let new = deny::append(&text, &entry, "test").unwrap().unwrap();
    std::fs::write(path, new).unwrap();
}

/// Waits for the connection of `peer` to close; returns the reason it was closed with.
async fn closed_reason(peer: &Peer) -> String {
    let e = timeout(LIMIT, peer.connection().closed()).await.unwrap();
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            format!(
                "code {}: {}",
                c.error_code,
                String::from_utf8_lossy(&c.reason)
            )
        }
        other => other.to_string(),
    }
}

async fn version(peer: &Peer) -> Result<walb_wire::Reply, Error> {
    peer.request(Request::Query(Query::Version)).await
}

#[tokio::test]
async fn a_revoked_id_is_refused_and_its_live_connection_closed_at_reload() {
    let c = Cluster::new("rv-id");
    let server_files = c.files(Role::Archive, "a0");
    let (archive, addr) = daemon(server_files.clone());
    let _srv = serve_simple(archive.clone());
    let alice_files = c.files(Role::Operator, "alice");
    let alice = client(alice_files.clone());
    let bob = client(c.files(Role::Operator, "bob"));
    let alice_live = alice.connect(addr).await.unwrap();
    let bob_live = bob.connect(addr).await.unwrap();
    version(&alice_live).await.unwrap();

    deny(&server_files, "id operator/alice");
    assert_eq!(archive.reload_tls().unwrap(), 1, "one connection closed");
    let reason = closed_reason(&alice_live).await;
    assert!(
        reason.contains("operator/alice") && reason.contains("revoked"),
        "{reason}"
    );
    // Bob's connection stays.
    version(&bob_live).await.unwrap();
    assert!(bob_live.connection().close_reason().is_none());

    // Alice's next handshake is refused: from the same endpoint (no session resumption
    // skips the check) and from a new one, as after a restart.
    let e = timeout(LIMIT, alice.connect(addr))
        .await
        .unwrap()
        .unwrap_err();
    assert_refused_by_tls(&e);
    let again = client(alice_files);
    let e = timeout(LIMIT, again.connect(addr))
        .await
        .unwrap()
        .unwrap_err();
    assert_refused_by_tls(&e);
    assert!(e.to_string().contains("certificate revoked"), "{e}");

    // And the other way: a node whose deny list names the daemon refuses to dial it.
    let carol_files = c.files(Role::Operator, "carol");
    deny(&carol_files, "id archive/a0");
    let carol = client(carol_files);
    let e = timeout(LIMIT, carol.connect(addr))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(e, Error::Connection { .. }) && e.to_string().contains("Revoked"),
        "{e}"
    );
}

#[tokio::test]
async fn revoking_by_serial_refuses_that_certificate_only() {
    let c = Cluster::new("rv-serial");
    let server_files = c.files(Role::Archive, "a0");
    let (archive, addr) = daemon(server_files.clone());
    let _srv = serve_simple(archive.clone());
    // Two certificates of the same identity: only the revoked serial is refused.
    let old = c.files(Role::Operator, "dave");
    let old_live = client(old.clone()).connect(addr).await.unwrap();
    let new_dir = c.root.join("dave-new");
    let new = issue(
        &c.ca,
        &new_dir,
        Role::Operator,
        "dave",
        &IssueOptions::default(),
    );
    let chain = walb_wire::certs::load_certs(&old.cert).unwrap();
    let serial = Serial::of_cert(&chain[0]).unwrap();
    deny(
        &server_files,
        &format!("serial {}", serial.colons().to_uppercase()),
    );
    assert_eq!(archive.reload_tls().unwrap(), 1);
    let reason = closed_reason(&old_live).await;
    assert!(reason.contains("revoked"), "{reason}");
    let e = timeout(LIMIT, client(old).connect(addr))
        .await
        .unwrap()
        .unwrap_err();
    assert_refused_by_tls(&e);
    let p = timeout(LIMIT, client(new).connect(addr))
        .await
        .unwrap()
        .unwrap();
    version(&p).await.unwrap();
    // A deny list that does not parse fails the reload, and the old material stays.
    std::fs::write(deny::path_beside(&server_files.ca_cert), "serial zz\n").unwrap();
    let e = archive.reload_tls().unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    version(&p).await.unwrap();
}

/// Valid for 3 more seconds: the library counts validity in days, so start a day ago.
fn valid_for_3s() -> IssueOptions {
    IssueOptions {
        not_before: Some(
            time::OffsetDateTime::now_utc() - time::Duration::days(1) + time::Duration::seconds(3),
        ),
        days: 1,
        ..IssueOptions::default()
    }
}

#[tokio::test]
async fn certificates_that_expire_while_connected_are_disconnected() {
    let c = Cluster::new("rv-expiry");
    let (archive, addr) = daemon(c.files(Role::Archive, "a0"));
    let _srv = serve_simple(archive.clone());
    let brief = client(c.files_with(Role::Operator, "brief", &valid_for_3s()));
    let steady = client(c.files(Role::Operator, "steady"));
    let t0 = std::time::Instant::now();
    let brief_live = brief.connect(addr).await.unwrap();
    let steady_live = steady.connect(addr).await.unwrap();
    version(&brief_live).await.unwrap();
    let reason = closed_reason(&brief_live).await;
    eprintln!("closed after {:?}: {reason}", t0.elapsed());
    assert!(
        reason.contains("operator/brief") && reason.contains("expired"),
        "{reason}"
    );
    version(&steady_live).await.unwrap();

    // A daemon whose certificate expires is disconnected by the node that dialled it.
    let (short_archive, short_addr) = daemon(c.files_with(Role::Archive, "a1", &valid_for_3s()));
    let _srv2 = serve_simple(short_archive);
    let live = steady.connect(short_addr).await.unwrap();
    version(&live).await.unwrap();
    let e = timeout(LIMIT, live.connection().closed()).await.unwrap();
    assert!(
        matches!(e, quinn::ConnectionError::LocallyClosed),
        "closed by our side: {e}"
    );
    // The pool dials again, and the handshake says why.
    let e = timeout(LIMIT, steady.connect(short_addr))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test]
async fn connections_of_a_ca_no_longer_trusted_are_closed_at_reload() {
    let c = Cluster::new("rv-rotate");
    let server_files = c.files(Role::Archive, "a0");
    let (archive, addr) = daemon(server_files.clone());
    let _srv = serve_simple(archive.clone());
    let old = client(c.files(Role::Operator, "old"));
    let live = old.connect(addr).await.unwrap();
    // The daemon's CA file now holds the new CA beside... nothing of the old one: its
    // own certificate is re-issued by the new CA.
    let ca2 = walb_wire::ClusterCa::generate("rotated", 1).unwrap();
    let renewed = issue(
        &ca2,
        &c.root.join("a0-new"),
        Role::Archive,
        "a0",
        &IssueOptions::default(),
    );
    std::fs::copy(&renewed.cert, &server_files.cert).unwrap();
    std::fs::copy(&renewed.key, &server_files.key).unwrap();
    std::fs::write(&server_files.ca_cert, ca2.cert_pem()).unwrap();
    assert_eq!(archive.reload_tls().unwrap(), 1);
    let reason = closed_reason(&live).await;
    assert!(reason.contains("not signed by a CA in force"), "{reason}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
