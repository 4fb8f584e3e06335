//! The error type of the data kernel.
//!
//! Readers keep two failure classes apart, because callers react differently:
//! - [`Error::Incomplete`]: the input ended early (a truncated file, a log still being
//!   written). More bytes might make it valid.
//! - [`Error::Corrupt`]: the bytes present break a rule of the format (bad checksum, bad
//!   sector type, an impossible size). More bytes cannot help.
//!
//! Every variant names *where* through a [`Location`].

use std::fmt;

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in an input a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A log sequence id (in physical blocks).
    Lsid(u64),
    /// A byte offset in a file or device.
    Offset(u64),
    /// A record of a pack: its index and the byte offset of the pack header.
    Record {
        /// Index of the record inside its pack.
        index: usize,
        /// Byte offset of the pack (or lsid of the log pack when `lsid` is set).
        pack: u64,
        /// Whether `pack` is an lsid (log packs) rather than a byte offset (diff packs).
        lsid: bool,
    },
    /// No useful position (e.g. a command-line argument).
    None,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Location::Lsid(l) => write!(f, "lsid {l}"),
            Location::Offset(o) => write!(f, "byte offset {o}"),
            Location::Record {
                index,
                pack,
                lsid: true,
            } => {
                write!(f, "record {index} of the log pack at lsid {pack}")
            }
            Location::Record {
                index,
                pack,
                lsid: false,
            } => {
                write!(f, "record {index} of the pack at byte offset {pack}")
            }
            Location::None => write!(f, "(no position)"),
        }
    }
}

/// The error of every kernel operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes break a rule of the format.
    #[error("corrupt {what} at {at}: {detail}")]
    Corrupt {
        /// What structure was being read ("log pack header", "wdiff record", ...).
        what: &'static str,
        /// Where.
        at: Location,
        /// Which rule was broken, with the values seen.
        detail: String,
    },
    /// The input ended before the structure was complete.
    #[error("incomplete {what} at {at}: needed {needed} bytes, only {got} available")]
    Incomplete {
        /// What structure was being read.
        what: &'static str,
        /// Where it starts.
        at: Location,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        got: u64,
    },
    /// An operating-system I/O error, with what was being done.
    ///
    /// The OS error is part of the message and deliberately not exposed as `source()`, so
    /// that error chains do not print it twice.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done ("reading wlog file x", ...).
        context: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A caller-supplied argument or combination of inputs is not acceptable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A valid input uses a feature this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(what: &'static str, at: Location, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            what,
            at,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`Error::Incomplete`].
    pub fn incomplete(what: &'static str, at: Location, needed: u64, got: u64) -> Self {
        Error::Incomplete {
            what,
            at,
            needed,
            got,
        }
    }

    /// Wraps an I/O error with a description of the operation.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            cause: source,
        }
    }

    /// True for [`Error::Incomplete`].
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Error::Incomplete { .. })
    }

    /// True for [`Error::Corrupt`].
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }
}

/// Adds context to `std::io::Result`s.
pub trait IoContext<T> {
    /// Converts an I/O error into [`Error::Io`] with the context produced by `f`.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
