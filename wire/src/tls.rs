//! TLS 1.3 with mutual authentication, and reloading of certificates without a restart.
//!
//! [`TlsState`] holds a peer's TLS material (the trusted CA, its own certificate and key)
//! behind an [`ArcSwap`]. The rustls configurations built from it never hold the
//! material itself: they hold resolvers and verifiers that read the current material on
//! every handshake. So [`TlsState::reload`] (run on SIGHUP) changes what new handshakes
//! present and trust, while live connections, whose handshakes are done, go on untouched.
//!
//! Both sides verify the other's certificate chain against the cluster CA. Servers are not
//! verified by name: peers are identified by the `walb://ROLE/ID` in their certificates
//! (see [`crate::identity`]). The handshake also fails, on either side, for a certificate
//! without exactly one valid identity, and for one the deny list ([`crate::deny`], read
//! beside the CA certificate at every load) revokes. [`TlsState::verify_peer`] runs the
//! same checks again on a live connection's certificate, against the material in force:
//! [`crate::transport`] closes connections whose peer was revoked, expired or is no longer
//! trusted since.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::certs::{load_certs, load_key, CertError, TlsFiles};
use crate::deny::{self, DenyError, DenyList, Serial};
use crate::identity::PeerId;

/// The ALPN protocol name of walb connections.
pub const ALPN: &[u8] = b"walb";

/// The TLS material in force: trusted CA, own identity, certificate and key.
struct Material {
    identity: PeerId,
    certified: Arc<CertifiedKey>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
    deny: DenyList,
}

/// Which end of a connection a peer is, for [`TlsState::verify_peer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSide {
    /// The peer dialled us: its certificate must allow client authentication.
    Client,
    /// We dialled the peer: its certificate must allow server authentication.
    Server,
}

/// A peer's reloadable TLS material.
pub struct TlsState {
    files: Option<TlsFiles>,
    provider: Arc<CryptoProvider>,
    material: ArcSwap<Material>,
}

impl fmt::Debug for TlsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsState")
            .field("files", &self.files)
            .field("identity", &self.identity())
            .finish()
    }
}

impl TlsState {
    /// Loads the material from files; [`TlsState::reload`] reads them again.
    pub fn from_files(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let material = load_material(&files, &provider)?;
        Ok(Arc::new(Self {
            files: Some(files),
            provider,
            material: ArcSwap::from_pointee(material),
        }))
    }

    /// Builds the material from memory (tests; such a state cannot reload).
    pub fn from_der(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let material = build_material(ca, chain, key, DenyList::default(), &provider)?;
        Ok(Arc::new(Self {
            files: None,
            provider,
            material: ArcSwap::from_pointee(material),
        }))
    }

    /// Reads the files again and, if they hold valid material, uses it for every new
    /// handshake. On failure the old material stays in force.
    pub fn reload(&self) -> Result<PeerId, TlsError> {
        let files = self.files.as_ref().ok_or(TlsError::NotReloadable)?;
        let material = load_material(files, &self.provider)?;
        let identity = material.identity.clone();
        let current = self.identity();
        if identity != current {
            return Err(TlsError::IdentityChanged {
                from: current,
                to: identity,
            });
        }
        self.material.store(Arc::new(material));
        Ok(identity)
    }

    /// The identity in the current certificate.
    pub fn identity(&self) -> PeerId {
        self.material.load().identity.clone()
    }

    /// Entries of the deny list in force.
    pub fn denied(&self) -> usize {
        self.material.load().deny.len()
    }

    /// Checks a live connection's peer certificate chain (leaf first) as its handshake
    /// would now: chain to the CA in force, validity at `now`, key usage for `side`, one
    /// valid identity, not denied.
    pub fn verify_peer(
        &self,
        chain: &[CertificateDer<'static>],
        side: PeerSide,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        let m = self.material.load();
        match side {
            PeerSide::Client => check_client(&m, leaf, intermediates, now),
            PeerSide::Server => {
                let name = ServerName::try_from("walb")
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                check_server(&m, leaf, intermediates, &name, &[], now)
            }
        }
    }

    /// A server configuration that requires client certificates from the cluster CA.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(ReloadingClientVerifier(self.clone())))
            .with_cert_resolver(Arc::new(ReloadingCert(self.clone())));
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.max_early_data_size = 0;
        // No session resumption: a resumed session skips certificate verification, so a
        // revoked or expired client could come back on an old session.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(cfg)
    }

    /// A client configuration that presents our certificate and trusts the cluster CA.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, TlsError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(ReloadingCert(self.clone())));
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.enable_early_data = false;
        // No session resumption (see the server's configuration): every handshake
        // verifies the daemon's certificate against the material in force.
        cfg.resumption = rustls::client::Resumption::disabled();
        Ok(cfg)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_material(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Material, TlsError> {
    let ca = load_certs(&files.ca_cert)?;
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let deny = DenyList::load(&deny::path_beside(&files.ca_cert))?;
    build_material(ca, chain, key, deny, provider)
}

fn build_material(
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    deny: DenyList,
    provider: &Arc<CryptoProvider>,
) -> Result<Material, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c)?;
    }
    let roots = Arc::new(roots);
    let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
    let identity = PeerId::from_cert_der(leaf).map_err(CertError::from)?;
    let certified = Arc::new(CertifiedKey::from_der(chain, key, provider)?);
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    Ok(Material {
        identity,
        certified,
        client_verifier,
        server_verifier,
        deny,
    })
}

/// A peer's certificate as a client: the chain (webpki: trust, validity, client usage),
/// then identity and deny list.
fn check_client(
    m: &Material,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), rustls::Error> {
    m.client_verifier
        .verify_client_cert(leaf, intermediates, now)?;
    check_identity(m, leaf)
}

/// A peer's certificate as a server: the chain only (webpki checks trust, validity and
/// usage before the name, so a name error means the chain is good), then identity and
/// deny list.
fn check_server(
    m: &Material,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
) -> Result<(), rustls::Error> {
    match m
        .server_verifier
        .verify_server_cert(leaf, intermediates, server_name, ocsp_response, now)
    {
        Ok(_)
        | Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => {}
        Err(e) => return Err(e),
    }
    check_identity(m, leaf)
}

/// Exactly one valid `walb://ROLE/ID`, and not in the deny list.
fn check_identity(m: &Material, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let bad = |e: crate::identity::IdentityError| {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
    };
    let peer = PeerId::from_cert_der(leaf).map_err(bad)?;
    let serial = Serial::of_cert(leaf).map_err(bad)?;
    if let Some(why) = m.deny.denies(&peer, &serial) {
        tracing::info!("refusing a certificate: {why}");
        return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
    }
    Ok(())
}

/// Presents the current certificate, as a server and as a client.
#[derive(Debug)]
struct ReloadingCert(Arc<TlsState>);

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material.load().certified.clone())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material.load().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Handshake signature checks, shared by both verifiers: the same algorithms of this
/// peer's crypto provider that its webpki verifiers are built with.
impl TlsState {
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies client certificates against the current CA; a certificate is mandatory.
#[derive(Debug)]
struct ReloadingClientVerifier(Arc<TlsState>);

impl ClientCertVerifier for ReloadingClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would borrow from the swappable material; our clients present their one
        // certificate whatever the hints, so none are sent.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_client(&self.0.material.load(), end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Verifies server certificates against the current CA, by chain only: the name the
/// client dialled does not matter, the identity in the certificate does.
#[derive(Debug)]
struct ClusterServerVerifier(Arc<TlsState>);

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_server(
            &self.0.material.load(),
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Why TLS material could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file or the identity in it is bad.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A reload would change who this peer is.
    #[error("reloaded certificate is for {to}, not {from}: restart to change identity")]
    IdentityChanged {
        /// The identity in force.
        from: PeerId,
        /// The identity in the new files.
        to: PeerId,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in the certificate file")]
    NoCertificate,
    /// Material built from memory has no files to reload.
    #[error("TLS material was not loaded from files and cannot be reloaded")]
    NotReloadable,
    /// The deny list beside the CA certificate is unusable.
    #[error(transparent)]
    Deny(#[from] DenyError),
    /// rustls refused the material.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// A verifier could not be built (e.g. no usable CA certificate).
    #[error("TLS verifier: {0}")]
    Verifier(String),
}
