//! Refusals: a code the caller can act on and a message naming what is wrong.

use serde::{Deserialize, Serialize};

/// A typed error code with a human message; what travels when something is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{code}: {message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

impl WireError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The kinds of failure peers tell each other. Daemons act on the code; humans read the
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ErrorCode {
    /// A request that makes no sense (bad arguments, wrong step).
    BadRequest,
    /// Too many foreground tasks: retry later.
    Busy,
    /// The operation was cancelled (force stop, shutdown).
    Cancelled,
    /// Data failed a checksum or did not decode.
    Corrupt,
    /// Archive: the uuid of the diff differs from the volume's.
    DifferentUuid,
    /// The peer's role may not ask this (see [`crate::auth`]).
    Forbidden,
    /// Something failed inside the peer.
    Internal,
    /// No such volume or object.
    NotFound,
    /// Archive: the base image is smaller than the volume.
    SmallerLvSize,
    /// The volume is stopped.
    Stopped,
    /// The volume is syncing.
    Syncing,
    /// Archive: the diff is older than what the archive has.
    TooOldDiff,
    /// Archive: the diff is newer than the next one the archive can take.
    TooNewDiff,
    /// A frame or message is larger than allowed.
    TooLarge,
    /// A frame or message was cut short.
    Truncated,
    /// The peer does not support this.
    Unsupported,
    /// The protocol versions do not overlap.
    VersionMismatch,
    /// The volume is in a state that forbids this.
    WrongState,
}

impl ErrorCode {
    /// The kebab-case name (walb-tools' reply strings where one existed).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Busy => "busy",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::DifferentUuid => "different-uuid",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not-found",
            ErrorCode::SmallerLvSize => "smaller-lv-size",
            ErrorCode::Stopped => "stopped",
            ErrorCode::Syncing => "syncing",
            ErrorCode::TooOldDiff => "too-old-diff",
            ErrorCode::TooNewDiff => "too-new-diff",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Truncated => "truncated",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::WrongState => "wrong-state",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
