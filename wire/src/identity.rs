//! Who a peer is: a [`Role`] and an id, carried in its certificate.
//!
//! Every walb certificate carries exactly one identity as a subject alternative name URI of
//! the form `walb://ROLE/ID` (for example `walb://storage/s0`). Peers are identified and
//! authorized by that identity, never by their address. This module is pure: it formats and
//! parses identities and reads them out of DER certificates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The URI scheme of identity SANs.
pub const IDENTITY_SCHEME: &str = "walb://";

/// The longest id a peer may have, in bytes.
pub const ID_LEN_MAX: usize = 64;

/// What a peer is in the cluster; decides what it may ask (see [`crate::auth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Role {
    /// An archive server: keeps base images and diffs, replicates to other archives.
    Archive,
    /// A human or script with full control: every command.
    Operator,
    /// A proxy server: turns wlogs into wdiffs and forwards them to archives.
    Proxy,
    /// A storage server: runs beside the WalB devices and ships their logs.
    Storage,
    /// A read-only console: queries and event subscriptions only.
    Viewer,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 5] = [
        Role::Storage,
        Role::Proxy,
        Role::Archive,
        Role::Operator,
        Role::Viewer,
    ];

    /// The lowercase name used in SANs, on command lines and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Archive => "archive",
            Role::Operator => "operator",
            Role::Proxy => "proxy",
            Role::Storage => "storage",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role runs as a daemon (and so accepts connections).
    pub fn is_server(self) -> bool {
        matches!(self, Role::Storage | Role::Proxy | Role::Archive)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownRole(s.to_owned()))
    }
}

/// A validated peer identity: a role and an id of 1 to 64 characters of `[0-9A-Za-z._-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId {
    role: Role,
    id: String,
}

impl PeerId {
    /// Builds an identity, checking the id's syntax.
    pub fn new(role: Role, id: &str) -> Result<Self, IdentityError> {
        validate_id(id)?;
        Ok(Self {
            role,
            id: id.to_owned(),
        })
    }

    /// The peer's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer's id (unique among peers of the same role).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The SAN URI carrying this identity, `walb://ROLE/ID`.
    pub fn to_uri(&self) -> String {
        format!("{IDENTITY_SCHEME}{}/{}", self.role, self.id)
    }

    /// Parses a SAN URI of the form `walb://ROLE/ID`.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri
            .strip_prefix(IDENTITY_SCHEME)
            .ok_or_else(|| IdentityError::NotIdentityUri(uri.to_owned()))?;
        let (role, id) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::NotIdentityUri(uri.to_owned()))?;
        PeerId::new(role.parse()?, id)
    }

    /// Reads the one identity out of a DER certificate's subject alternative names.
    ///
    /// Fails if the certificate does not parse, has no `walb://` URI, or has more than one.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let mut found = None;
        if let Some(san) = san {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(uri) = name {
                    if uri.starts_with(IDENTITY_SCHEME) {
                        if found.is_some() {
                            return Err(IdentityError::SeveralIdentities);
                        }
                        found = Some(PeerId::from_uri(uri)?);
                    }
                }
            }
        }
        found.ok_or(IdentityError::NoIdentity)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role, self.id)
    }
}

impl FromStr for PeerId {
    type Err = IdentityError;

    /// Parses `ROLE/ID` or `walb://ROLE/ID`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with(IDENTITY_SCHEME) {
            return PeerId::from_uri(s);
        }
        let (role, id) = s
            .split_once('/')
            .ok_or_else(|| IdentityError::NotIdentityUri(s.to_owned()))?;
        PeerId::new(role.parse()?, id)
    }
}

/// Checks an id: 1 to [`ID_LEN_MAX`] bytes of `[0-9A-Za-z._-]`, not starting with a dot.
pub fn validate_id(id: &str) -> Result<(), IdentityError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > ID_LEN_MAX || id.starts_with('.') || !id.chars().all(ok_char) {
        return Err(IdentityError::BadId(id.to_owned()));
    }
    Ok(())
}

/// Why an identity could not be formed or found.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The id has a bad length or characters.
    #[error("bad peer id {0:?}: want 1 to 64 characters of [0-9A-Za-z._-], not starting with '.'")]
    BadId(String),
    /// The certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    BadCertificate(String),
    /// The certificate carries no `walb://ROLE/ID` URI.
    #[error("certificate carries no walb identity (no walb://ROLE/ID subject alternative name)")]
    NoIdentity,
    /// The string is not of the form `walb://ROLE/ID`.
    #[error("not a walb identity: {0:?} (want walb://ROLE/ID)")]
    NotIdentityUri(String),
    /// The certificate carries more than one identity.
    #[error("certificate carries more than one walb identity")]
    SeveralIdentities,
    /// The role name is none of storage, proxy, archive, operator, viewer.
    #[error("unknown role {0:?} (want storage, proxy, archive, operator or viewer)")]
    UnknownRole(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        for role in Role::ALL {
            let p = PeerId::new(role, "node-1.a_b").unwrap();
            assert_eq!(PeerId::from_uri(&p.to_uri()).unwrap(), p);
            assert_eq!(p.to_string().parse::<PeerId>().unwrap(), p);
        }
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(PeerId::new(Role::Storage, bad).is_err(), "{bad:?}");
        }
        assert!(PeerId::from_uri("walb://king/x").is_err());
        assert!(PeerId::from_uri("http://storage/x").is_err());
        assert!(PeerId::from_uri("walb://storage").is_err());
    }
}
