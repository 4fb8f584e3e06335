//! Cluster certificates: a cluster CA, and the certificates it issues to peers.
//!
//! A walb cluster has one CA. `walb-console ca init` creates its key and certificate; `ca
//! issue` signs a key pair for one peer, with the peer's identity (`walb://ROLE/ID`, see
//! [`crate::identity`]) and any host names or addresses as subject alternative names.
//! Daemons only ever hold the CA *certificate* (to verify others) and their own key and
//! certificate; the CA key stays with the operator.
//!
//! # Files
//!
//! In a certificate directory (default: the XDG config directory, `~/.config/walb/certs`):
//!
//! ```text
//! ca.crt              the cluster CA certificate (PEM), handed to every peer
//! ca.key              the CA key (PEM, mode 0600), kept by the operator only
//! ROLE-ID.crt         an issued certificate (PEM)
//! ROLE-ID.key         its key (PEM, mode 0600)
//! ```

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::files::{NewFile, Place, MODE_PRIVATE, MODE_PUBLIC};
use crate::identity::PeerId;
#[cfg(test)]
use crate::identity::Role;

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA key in a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Default validity of a new CA, in days (ten years).
pub const CA_DAYS_DEFAULT: i64 = 3650;
/// Default validity of an issued certificate, in days (two years).
pub const CERT_DAYS_DEFAULT: i64 = 730;

/// The default certificate directory: `$XDG_CONFIG_HOME/walb/certs` (or the platform's
/// equivalent). `None` when no home directory is known.
pub fn default_cert_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "walb").map(|d| d.config_dir().join("certs"))
}

/// Where one peer's TLS material lives: the CA certificate to trust, and its own
/// certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the trusted CA certificate(s).
    pub ca_cert: PathBuf,
    /// PEM file with this peer's certificate (chain).
    pub cert: PathBuf,
    /// PEM file with this peer's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files of `peer` in certificate directory `dir`, as `ca issue` writes them.
    pub fn in_dir(dir: &Path, peer: &PeerId) -> Self {
        let stem = format!("{}-{}", peer.role(), peer.id());
        Self {
            ca_cert: dir.join(CA_CERT_FILE),
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// Options of a new certificate.
#[derive(Clone, Debug)]
pub struct IssueOptions {
    /// DNS names or IP addresses to add as subject alternative names (informational:
    /// walb authorizes by identity, not by address).
    pub hosts: Vec<String>,
    /// Start of validity (default: now minus one hour, to absorb clock skew).
    pub not_before: Option<OffsetDateTime>,
    /// Length of validity in days.
    pub days: i64,
}

impl Default for IssueOptions {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            not_before: None,
            days: CERT_DAYS_DEFAULT,
        }
    }
}

/// A cluster CA in memory: its certificate and key.
pub struct ClusterCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl ClusterCa {
    /// Creates a new CA named `name` (its common name becomes `walb cluster CA NAME`).
    pub fn generate(name: &str, days: i64) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("walb cluster CA {name}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "walb");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days);
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Re-signing the parsed parameters gives a certificate with the same subject,
        // key identifier and key as the one on disk, which is all that issuing needs.
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// Loads the CA of certificate directory `dir`.
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert = read_to_string(&dir.join(CA_CERT_FILE))?;
        let key = read_to_string(&dir.join(CA_KEY_FILE))?;
        Self::from_pem(&cert, &key)
    }

    /// Writes `ca.crt` (0644) and `ca.key` (0600) into `dir` (created if needed), each
    /// whole or not at all and never through a link ([`crate::files`]). Refuses to
    /// overwrite an existing CA unless `overwrite`, which replaces both atomically.
    pub fn save(&self, dir: &Path, overwrite: bool) -> Result<(), CertError> {
        fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))?;
        write_pair(
            (&dir.join(CA_KEY_FILE), &self.key.serialize_pem()),
            (&dir.join(CA_CERT_FILE), &self.cert.pem()),
            overwrite,
        )
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Issues a certificate for `peer` with a fresh key.
    pub fn issue(&self, peer: &PeerId, opts: &IssueOptions) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, peer.to_string());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "walb");
        let uri = rcgen::Ia5String::try_from(peer.to_uri())?;
        params.subject_alt_names.push(SanType::URI(uri));
        for host in &opts.hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(rcgen::Ia5String::try_from(host.as_str())?),
            };
            params.subject_alt_names.push(san);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if peer.role().is_server() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.use_authority_key_identifier_extension = true;
        let not_before = opts
            .not_before
            .unwrap_or_else(|| OffsetDateTime::now_utc() - Duration::hours(1));
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(opts.days);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(IssuedCert {
            peer: peer.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A certificate issued for one peer, with its key.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The identity in the certificate.
    pub peer: PeerId,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

impl IssuedCert {
    /// Writes `ROLE-ID.crt` (0644) and `ROLE-ID.key` (0600) into `dir`, as
    /// [`ClusterCa::save`] writes its pair; returns the files of this peer (with `ca_cert`
    /// pointing at `dir/ca.crt`).
    pub fn save(&self, dir: &Path, overwrite: bool) -> Result<TlsFiles, CertError> {
        fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))?;
        let files = TlsFiles::in_dir(dir, &self.peer);
        write_pair(
            (&files.key, &self.key_pem),
            (&files.cert, &self.cert_pem),
            overwrite,
        )?;
        Ok(files)
    }

    /// The certificate chain, DER.
    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, CertError> {
        parse_certs(self.cert_pem.as_bytes(), Path::new("<memory>"))
    }

    /// The private key, DER.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, CertError> {
        parse_key(self.key_pem.as_bytes(), Path::new("<memory>"))
    }
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = fs::read(path).map_err(|e| CertError::io(path, e))?;
    parse_certs(&pem, path)
}

/// Reads the private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = fs::read(path).map_err(|e| CertError::io(path, e))?;
    parse_key(&pem, path)
}

fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(path.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::Pem(path.to_owned(), "no certificate".into()));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| CertError::Pem(path.to_owned(), e.to_string()))
}

fn read_to_string(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io(path, e))
}

/// Writes a key (0600) and its certificate (0644) through [`crate::files`]: both are
/// written and synced under temporary names first, then moved into place, the
/// certificate first (a failure there replaces nothing). Without `overwrite`, an existing
/// file (or link) of either name is refused and nothing is written; with it, each is
/// replaced atomically (a link is replaced, not followed; a replaced key becomes 0600).
fn write_pair(
    (key, key_pem): (&Path, &str),
    (cert, cert_pem): (&Path, &str),
    overwrite: bool,
) -> Result<(), CertError> {
    if !overwrite {
        for p in [key, cert] {
            if fs::symlink_metadata(p).is_ok() {
                return Err(CertError::Exists(p.to_owned()));
            }
        }
    }
    let stage = |path: &Path, text: &str, mode: u32| {
        let mut f = NewFile::create(path, mode).map_err(|e| CertError::io(path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| CertError::io(path, e))?;
        Ok::<_, CertError>(f)
    };
    let key_file = stage(key, key_pem, MODE_PRIVATE)?;
    let cert_file = stage(cert, cert_pem, MODE_PUBLIC)?;
    let place = if overwrite {
        Place::Replace
    } else {
        Place::New
    };
    for (f, path) in [(cert_file, cert), (key_file, key)] {
        f.commit(place).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CertError::Exists(path.to_owned())
            } else {
                CertError::io(path, e)
            }
        })?;
    }
    Ok(())
}

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen could not build or sign a certificate.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file would be overwritten.
    #[error("{0} exists (pass --force to overwrite)")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{0}: bad PEM: {1}")]
    Pem(PathBuf, String),
    /// A certificate carries a bad identity.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}

impl CertError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        CertError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_cert_carries_identity_and_survives_reload_of_ca() {
        let ca = ClusterCa::generate("test", 1).unwrap();
        let key_pem = ca.key.serialize_pem();
        let ca2 = ClusterCa::from_pem(&ca.cert_pem(), &key_pem).unwrap();
        let peer = PeerId::new(Role::Storage, "s0").unwrap();
        let opts = IssueOptions {
            hosts: vec!["127.0.0.1".into(), "node1.example".into()],
            ..IssueOptions::default()
        };
        let issued = ca2.issue(&peer, &opts).unwrap();
        let chain = issued.cert_chain().unwrap();
        assert_eq!(PeerId::from_cert_der(&chain[0]).unwrap(), peer);
    }

    #[test]
    fn save_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("walb-certs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ca = ClusterCa::generate("t", 1).unwrap();
        ca.save(&dir, false).unwrap();
        assert!(matches!(ca.save(&dir, false), Err(CertError::Exists(_))));
        ca.save(&dir, true).unwrap();
        let loaded = ClusterCa::load(&dir).unwrap();
        let peer = PeerId::new(Role::Viewer, "v").unwrap();
        let files = loaded
            .issue(&peer, &IssueOptions::default())
            .unwrap()
            .save(&dir, false)
            .unwrap();
        assert_eq!(load_certs(&files.cert).unwrap().len(), 1);
        load_key(&files.key).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }
}
