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
//! (see [`crate::identity`]), which [`crate::transport`] reads once the handshake is done.

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
use crate::identity::PeerId;

/// The ALPN protocol name of walb connections.
pub const ALPN: &[u8] = b"walb";

/// The TLS material in force: trusted CA, own identity, certificate and key.
struct Material {
    identity: PeerId,
    certified: Arc<CertifiedKey>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
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
        let material = build_material(ca, chain, key, &provider)?;
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

    /// A server configuration that requires client certificates from the cluster CA.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(ReloadingClientVerifier(self.clone())))
            .with_cert_resolver(Arc::new(ReloadingCert(self.clone())));
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.max_early_data_size = 0;
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
    build_material(ca, chain, key, provider)
}

fn build_material(
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
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
    })
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
        self.0
            .material
            .load()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
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
        let verifier = self.0.material.load().server_verifier.clone();
        // webpki checks the chain (trust, validity, usage) before the name, so a name
        // error means the chain is good.
        match verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
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
    /// rustls refused the material.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// A verifier could not be built (e.g. no usable CA certificate).
    #[error("TLS verifier: {0}")]
    Verifier(String),
}
