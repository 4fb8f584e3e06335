//! Revocation: the deny list, certificates no walb peer accepts any more.
//!
//! `walb-console ca revoke` writes the list as a text file named [`DENY_FILE`]
//! (`revoked.txt`) beside the CA certificate, and copies it beside the `ca.crt` of
//! daemons' certificate directories. A node reads the one beside its `ca.crt` at start and
//! at every TLS reload (SIGHUP, [`crate::Node::reload_tls`]): a handshake with a denied
//! certificate fails on both sides, and live connections whose peer is now denied are
//! closed. A missing file denies nothing; a file that does not parse stops the start (or
//! the reload, which then keeps the material in force).
//!
//! The format, one entry a line; `#` starts a comment, blank lines are ignored:
//!
//! ```text
//! # walb deny list
//! id operator/mallory        # every certificate carrying walb://operator/mallory
//! serial 5e:1f:0a:93:...     # one certificate, by its serial number (hex)
//! ```
//!
//! `id ROLE/ID` denies every certificate of that identity, past and future: let the peer
//! back in with a certificate for a new id, or by removing the line. `serial HEX` denies
//! one certificate (`ca issue` prints it); colons and case do not matter, leading zeros
//! neither. The list is not signed: whoever may write beside `ca.crt` may replace the CA
//! itself.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::identity::{IdentityError, PeerId};

/// File name of the deny list, beside the CA certificate.
pub const DENY_FILE: &str = "revoked.txt";

/// Longest serial number, bytes (RFC 5280: at most 20 octets).
const SERIAL_LEN_MAX: usize = 20;

/// The deny list of `ca_cert`: [`DENY_FILE`] in the same directory.
pub fn path_beside(ca_cert: &Path) -> PathBuf {
    match ca_cert.parent() {
        Some(d) => d.join(DENY_FILE),
        None => PathBuf::from(DENY_FILE),
    }
}

/// A certificate serial number, as lowercase hex without leading zeros.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(String);

impl Serial {
    /// The serial of a certificate's big-endian serial bytes.
    pub fn from_bytes(bytes: &[u8]) -> Serial {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Serial::normalize(&hex)
    }

    /// The serial number of a DER certificate.
    pub fn of_cert(der: &[u8]) -> Result<Serial, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        Ok(Serial::from_bytes(cert.raw_serial()))
    }

    fn normalize(hex: &str) -> Serial {
        let t = hex.trim_start_matches('0');
        Serial(if t.is_empty() { "0".into() } else { t.into() })
    }

    /// The serial as colon-separated byte pairs, as `openssl x509 -serial` and most tools
    /// show it.
    pub fn colons(&self) -> String {
        let padded = if self.0.len() % 2 == 1 {
            format!("0{}", self.0)
        } else {
            self.0.clone()
        };
        let pairs: Vec<&str> = padded
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap_or("??"))
            .collect();
        pairs.join(":")
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Serial {
    type Err = DenyError;

    /// Parses hex digits, optionally separated by colons (`5e:1f:0a`) and prefixed `0x`.
    fn from_str(s: &str) -> Result<Serial, DenyError> {
        let bad = |why: &str| DenyError::BadSerial(s.to_owned(), why.to_owned());
        let t = s.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let hex: String = t.chars().filter(|&c| c != ':').collect();
        if hex.is_empty() {
            return Err(bad("no digits"));
        }
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("want hexadecimal digits, optionally separated by ':'"));
        }
        let serial = Serial::normalize(&hex.to_ascii_lowercase());
        if serial.0.len() > 2 * SERIAL_LEN_MAX {
            return Err(bad("longer than 20 bytes"));
        }
        Ok(serial)
    }
}

/// One line of the deny list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    /// Every certificate carrying this identity.
    Id(PeerId),
    /// The certificate of this serial number.
    Serial(Serial),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Id(p) => write!(f, "id {p}"),
            Entry::Serial(s) => write!(f, "serial {}", s.colons()),
        }
    }
}

impl FromStr for Entry {
    type Err = DenyError;

    /// Parses `id ROLE/ID` or `serial HEX` (no comment).
    fn from_str(s: &str) -> Result<Entry, DenyError> {
        let mut words = s.split_whitespace();
        let (Some(kind), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(DenyError::Syntax(s.trim().to_owned()));
        };
        match kind {
            "id" => Ok(Entry::Id(value.parse().map_err(DenyError::BadId)?)),
            "serial" => Ok(Entry::Serial(value.parse()?)),
            _ => Err(DenyError::Syntax(s.trim().to_owned())),
        }
    }
}

/// The certificates no peer accepts: by identity and by serial number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyList {
    ids: BTreeSet<PeerId>,
    serials: BTreeSet<Serial>,
}

impl DenyList {
    /// Parses the text of a deny list (see the module doc).
    pub fn parse(text: &str) -> Result<DenyList, DenyError> {
        let mut list = DenyList::default();
        for (i, line) in text.lines().enumerate() {
            let content = line.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let entry = content.parse().map_err(|e| DenyError::Line {
                line: i + 1,
                source: Box::new(e),
            })?;
            list.insert(entry);
        }
        Ok(list)
    }

    /// Reads the deny list at `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<DenyList, DenyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => DenyList::parse(&text).map_err(|e| DenyError::File {
                path: path.to_owned(),
                source: Box::new(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DenyList::default()),
            Err(e) => Err(DenyError::Io {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    /// Adds an entry; `false` if it was there already.
    pub fn insert(&mut self, entry: Entry) -> bool {
        match entry {
            Entry::Id(p) => self.ids.insert(p),
            Entry::Serial(s) => self.serials.insert(s),
        }
    }

    /// Whether the list holds `entry`.
    pub fn contains(&self, entry: &Entry) -> bool {
        match entry {
            Entry::Id(p) => self.ids.contains(p),
            Entry::Serial(s) => self.serials.contains(s),
        }
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.ids.len() + self.serials.len()
    }

    /// Whether the list denies nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why the certificate of `peer` with `serial` is denied, or `None` if it is not.
    pub fn denies(&self, peer: &PeerId, serial: &Serial) -> Option<String> {
        if self.ids.contains(peer) {
            return Some(format!("{peer} is revoked (deny list: id {peer})"));
        }
        if self.serials.contains(serial) {
            return Some(format!(
                "the certificate of {peer} is revoked (deny list: serial {})",
                serial.colons()
            ));
        }
        None
    }
}

/// The text of a deny list with `entry` added: `text` (which must parse) with one line
/// appended, so that the operator's comments stay. `None` if `text` has the entry already.
pub fn append(text: &str, entry: &Entry, note: &str) -> Result<Option<String>, DenyError> {
    let list = DenyList::parse(text)?;
    if list.contains(entry) {
        return Ok(None);
    }
    let mut out = if text.trim().is_empty() {
        String::from(
            "# walb deny list: certificates no walb peer accepts.\n\
             # One entry a line: `id ROLE/ID` (every certificate of that identity) or\n\
             # `serial HEX` (one certificate); '#' starts a comment.\n",
        )
    } else {
        text.to_owned()
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let note = note.replace(['\n', '\r'], " ");
    if note.is_empty() {
        out.push_str(&format!("{entry}\n"));
    } else {
        out.push_str(&format!("{entry}    # {note}\n"));
    }
    Ok(Some(out))
}

/// Why a deny list or an entry is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DenyError {
    /// A serial number that is not one.
    #[error("bad serial number {0:?}: {1}")]
    BadSerial(String, String),
    /// An identity that is not one.
    #[error("bad identity: {0}")]
    BadId(IdentityError),
    /// A line that is neither `id ROLE/ID` nor `serial HEX`.
    #[error("cannot read {0:?}: want `id ROLE/ID` or `serial HEX`")]
    Syntax(String),
    /// An error on a line of the list.
    #[error("line {line}: {source}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        source: Box<DenyError>,
    },
    /// An error in a deny list file.
    #[error("deny list {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: Box<DenyError>,
    },
    /// The file could not be read.
    #[error("deny list {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    fn peer(s: &str) -> PeerId {
        s.parse().unwrap()
    }

    #[test]
    fn serials_compare_whatever_their_spelling() {
        let a: Serial = "5E:1F:0A".parse().unwrap();
        let b: Serial = "0x005e1f0a".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Serial::from_bytes(&[0, 0x5e, 0x1f, 0x0a]));
        assert_eq!(a.to_string(), "5e1f0a");
        assert_eq!(a.colons(), "5e:1f:0a");
        assert_eq!("0".parse::<Serial>().unwrap().colons(), "00");
        for bad in ["", "xyz", "12 34", "5e-1f", &"ab".repeat(21)] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?}");
        }
        assert!(format!("{}", "zz".parse::<Serial>().unwrap_err()).contains("hexadecimal"));
    }

    #[test]
    fn a_list_parses_with_comments_and_denies_by_id_and_serial() {
        let text = "# header\n\n  id operator/mallory   # gone\nserial 0a:ff\n";
        let list = DenyList::parse(text).unwrap();
        assert_eq!(list.len(), 2);
        let s1: Serial = "1".parse().unwrap();
        let why = list.denies(&peer("operator/mallory"), &s1).unwrap();
        assert!(why.contains("operator/mallory"), "{why}");
        assert!(list.denies(&peer("operator/alice"), &s1).is_none());
        let why = list
            .denies(&peer("operator/alice"), &"aff".parse().unwrap())
            .unwrap();
        assert!(why.contains("serial 0a:ff"), "{why}");
        assert!(DenyList::parse("").unwrap().is_empty());
    }

    #[test]
    fn nonsense_is_refused_naming_the_line() {
        for (text, want) in [
            ("id king/x\n", "unknown role"),
            ("\nserial xyz\n", "line 2"),
            ("deny operator/a\n", "want `id ROLE/ID` or `serial HEX`"),
            ("id operator/a extra\n", "want `id"),
            ("id\n", "want `id"),
            ("id operator/bad id\n", "want `id"),
        ] {
            let e = DenyList::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn append_keeps_the_text_and_is_idempotent() {
        let e = Entry::Id(PeerId::new(Role::Viewer, "v").unwrap());
        let first = append("", &e, "by test").unwrap().unwrap();
        assert!(first.starts_with("# walb deny list"), "{first}");
        assert!(first.ends_with("id viewer/v    # by test\n"), "{first}");
        assert_eq!(append(&first, &e, "again").unwrap(), None);
        let s = Entry::Serial("abc".parse().unwrap());
        let second = append("# mine\nid viewer/v", &s, "").unwrap().unwrap();
        assert_eq!(second, "# mine\nid viewer/v\nserial 0a:bc\n");
        let list = DenyList::parse(&second).unwrap();
        assert!(list.contains(&e) && list.contains(&s));
        assert!(append("garbage here\n", &s, "").is_err());
    }

    #[test]
    fn a_missing_file_denies_nothing() {
        let p = std::env::temp_dir().join(format!("walb-deny-none-{}", std::process::id()));
        assert!(DenyList::load(&p).unwrap().is_empty());
        assert_eq!(
            path_beside(Path::new("/etc/walb/ca.crt")),
            Path::new("/etc/walb/revoked.txt")
        );
    }
}
