//! Certificates that must not get in, crafted by hand (rcgen) and presented by bare quinn
//! endpoints to real walb nodes over loopback: no walb identity, two identities, an unknown
//! role, a server-auth-only key usage, a chain signed by a leaf. Each is refused at the
//! TLS handshake, by a daemon (client certificates) and by a dialling node (server
//! certificates).

mod common;

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::time::timeout;
use walb_wire::{ClusterCa, IssueOptions, Query, Request, Role};

use common::*;

/// A CA made with rcgen, so that tests can sign anything with it; [`ClusterCa`] issues
/// the well-formed certificates from the same name and key.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    cluster: ClusterCa,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "walb cluster CA handshake");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        let cluster = ClusterCa::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
        TestCa { cert, key, cluster }
    }
}

/// A leaf with these SANs and extended key usages, signed by `issuer`.
fn craft(
    issuer: &rcgen::Certificate,
    issuer_key: &KeyPair,
    sans: &[&str],
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "crafted");
    for s in sans {
        let san = if s.contains("://") {
            SanType::URI(rcgen::Ia5String::try_from(*s).unwrap())
        } else {
            SanType::DnsName(rcgen::Ia5String::try_from(*s).unwrap())
        };
        p.subject_alt_names.push(san);
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = eku;
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, issuer, issuer_key).unwrap();
    (cert, key)
}

fn der(c: &rcgen::Certificate) -> CertificateDer<'static> {
    c.der().clone()
}

fn key_der(k: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Presents `chain` to the daemon at `addr` from a bare quinn client (which trusts the
/// CA and dials "localhost"); returns the close code the daemon closed with.
async fn present_as_client(
    ca: &TestCa,
    addr: std::net::SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> u64 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&ca.cert)).unwrap();
    match bare_client_end(addr, roots, Some((chain, key))).await {
        quinn::ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
        other => panic!("want a TLS refusal, got {other}"),
    }
}

/// A bad certificate to present: what is wrong, its SANs and usages, and whether a
/// (legitimate) leaf signs it instead of the CA.
type Case = (
    &'static str,
    Vec<&'static str>,
    Vec<ExtendedKeyUsagePurpose>,
    bool,
);

/// The chain and key of each case; `usage` is the usage a well-formed peer of that side
/// has (a leaf signing a leaf has it too).
fn chains(
    ca: &TestCa,
    usage: Vec<ExtendedKeyUsagePurpose>,
    cases: Vec<Case>,
) -> Vec<(
    &'static str,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
)> {
    let (legit, legit_key) = craft(&ca.cert, &ca.key, &["walb://archive/legit"], usage);
    let issuer = CertificateParams::from_ca_cert_pem(&legit.pem())
        .unwrap()
        .self_signed(&legit_key)
        .unwrap();
    cases
        .into_iter()
        .map(|(what, sans, eku, leaf_signed)| {
            let (cert, key) = if leaf_signed {
                craft(&issuer, &legit_key, &sans, eku)
            } else {
                craft(&ca.cert, &ca.key, &sans, eku)
            };
            let mut chain = vec![der(&cert)];
            if leaf_signed {
                chain.push(der(&legit));
            }
            (what, chain, key_der(&key))
        })
        .collect()
}

/// Serves `chain` from a bare quinn server; returns its address.
fn present_as_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> (quinn::Endpoint, std::net::SocketAddr) {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"walb".to_vec()];
    let qc = quinn::crypto::rustls::QuicServerConfig::try_from(cfg).unwrap();
    let ep = quinn::Endpoint::server(quinn::ServerConfig::with_crypto(Arc::new(qc)), loopback())
        .unwrap();
    let addr = ep.local_addr().unwrap();
    let accepting = ep.clone();
    tokio::spawn(async move {
        while let Some(inc) = accepting.accept().await {
            tokio::spawn(async move {
                if let Ok(c) = inc.await {
                    c.closed().await;
                }
            });
        }
    });
    (ep, addr)
}

#[tokio::test]
async fn malformed_identities_usages_and_chains_are_refused_at_the_handshake() {
    let ca = TestCa::new();
    let dir = Dir::new("handshake");
    let daemon_files = issue(
        &ca.cluster,
        &dir.0.join("a0"),
        Role::Archive,
        "a0",
        &IssueOptions {
            hosts: vec!["localhost".into()],
            ..IssueOptions::default()
        },
    );
    std::fs::write(&daemon_files.ca_cert, ca.cert.pem()).unwrap();
    let (archive, addr) = daemon(daemon_files);
    let _srv = serve_simple(archive);
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};

    let cases: Vec<Case> = vec![
        ("no walb SAN", vec!["localhost"], vec![ClientAuth], false),
        (
            "two walb SANs",
            vec!["walb://operator/a", "walb://operator/b"],
            vec![ClientAuth],
            false,
        ),
        (
            "unknown role",
            vec!["walb://king/x"],
            vec![ClientAuth],
            false,
        ),
        (
            "server-auth-only usage",
            vec!["walb://operator/srv"],
            vec![ServerAuth],
            false,
        ),
        (
            "signed by a leaf",
            vec!["walb://operator/mallory"],
            vec![ClientAuth],
            true,
        ),
    ];
    for (what, chain, key) in chains(&ca, vec![ClientAuth, ServerAuth], cases) {
        let code = present_as_client(&ca, addr, chain, key).await;
        assert!(
            (0x100..0x200).contains(&code),
            "{what}: want a TLS alert, got close code {code:#x}"
        );
        eprintln!("{what}: refused with TLS alert {}", code - 0x100);
    }
    // The well-formed leaf does get in (so the refusals above are about the certificates).
    let (ok, ok_key) = craft(
        &ca.cert,
        &ca.key,
        &["walb://operator/alice"],
        vec![ClientAuth],
    );
    let tls =
        walb_wire::tls::TlsState::from_der(vec![der(&ca.cert)], vec![der(&ok)], key_der(&ok_key))
            .unwrap();
    let op = walb_wire::Node::with_tls(walb_wire::NodeConfig::new(loopback(), false), tls).unwrap();
    let peer = timeout(LIMIT, op.connect(addr)).await.unwrap().unwrap();
    peer.request(Request::Query(Query::Version)).await.unwrap();
}

#[tokio::test]
async fn a_dialling_node_refuses_daemons_with_bad_certificates() {
    let ca = TestCa::new();
    let c = Cluster::new("hs-client");
    let files = issue(
        &ca.cluster,
        &c.root.join("op"),
        Role::Operator,
        "op",
        &IssueOptions::default(),
    );
    std::fs::write(&files.ca_cert, ca.cert.pem()).unwrap();
    let op = client(files);
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let cases: Vec<Case> = vec![
        ("no walb SAN", vec!["localhost"], vec![ServerAuth], false),
        (
            "two walb SANs",
            vec!["walb://archive/a", "walb://archive/b"],
            vec![ServerAuth],
            false,
        ),
        (
            "unknown role",
            vec!["walb://king/x"],
            vec![ServerAuth],
            false,
        ),
        (
            "client-auth-only usage",
            vec!["walb://archive/cl"],
            vec![ClientAuth],
            false,
        ),
        (
            "signed by a leaf",
            vec!["walb://archive/evil"],
            vec![ServerAuth],
            true,
        ),
    ];
    for (what, chain, key) in chains(&ca, vec![ClientAuth, ServerAuth], cases) {
        let (_ep, addr) = present_as_server(chain, key);
        let e = timeout(LIMIT, op.connect(addr)).await.unwrap().unwrap_err();
        let s = e.to_string();
        assert!(
            matches!(e, walb_wire::Error::Connection { .. }) && s.contains("certificate"),
            "{what}: want a refused certificate, got {s}"
        );
        eprintln!("{what}: {s}");
    }
}
