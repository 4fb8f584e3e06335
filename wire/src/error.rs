//! The error type of the transport.

use std::net::SocketAddr;
use std::time::Duration;

use crate::frame::FrameError;
use crate::identity::{IdentityError, PeerId};
use crate::msg::{ErrorCode, WireError};
use crate::tls::TlsError;

/// Why a connection, a call or a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is unusable.
    #[error("bad configuration: {0}")]
    Config(String),
    /// Dialing failed before any packet was sent.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// The connection failed or was closed (TLS refusals arrive here).
    #[error("connection {}: {}", .peer, describe_close(.source))]
    Connection {
        /// The peer's address or identity.
        peer: String,
        /// Why.
        source: quinn::ConnectionError,
    },
    /// A message did not decode.
    #[error("cannot decode message: {0}")]
    Decode(postcard::Error),
    /// A message did not encode.
    #[error("cannot encode message: {0}")]
    Encode(postcard::Error),
    /// A frame broke the framing rules.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer's certificate carries no usable identity.
    #[error("peer identity: {0}")]
    Identity(#[from] IdentityError),
    /// An IO error (sockets).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Reading a stream failed (the peer reset or stopped it).
    #[error("read: {0}")]
    Read(quinn::ReadError),
    /// The peer refused or failed the request; its code and message.
    #[error("peer refused: {0}")]
    Remote(WireError),
    /// The peer ended the stream where the protocol wants more.
    #[error("peer ended the stream early: {0}")]
    StreamEnded(&'static str),
    /// Something took too long.
    #[error("timed out: {0}")]
    Timeout(TimedOut),
    /// What the peer sent is out of bounds or not allowed ([`crate::admit`],
    /// [`crate::auth`]); the error told to the peer.
    #[error("refused: {0}")]
    Refused(WireError),
    /// TLS material problem.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The peer sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Unexpected(String),
    /// The peer is not who we meant to reach.
    #[error("expected peer {want}, reached {got}")]
    UnexpectedPeer {
        /// Whom we dialled.
        want: PeerId,
        /// Who answered.
        got: PeerId,
    },
    /// Writing a stream failed (the peer stopped it).
    #[error("write: {0}")]
    Write(quinn::WriteError),
    /// The stream was already finished or reset.
    #[error("stream closed: {0}")]
    ClosedStream(#[from] quinn::ClosedStream),
    /// The node is shutting down.
    #[error("node is shutting down")]
    Shutdown,
}

impl From<quinn::ReadError> for Error {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(source) => Error::Connection {
                peer: "lost".into(),
                source,
            },
            other => Error::Read(other),
        }
    }
}

impl From<quinn::WriteError> for Error {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(source) => Error::Connection {
                peer: "lost".into(),
                source,
            },
            other => Error::Write(other),
        }
    }
}

impl Error {
    /// The error as told to a peer.
    pub fn to_wire(&self) -> WireError {
        let code = match self {
            Error::Remote(e) | Error::Refused(e) => return e.clone(),
            Error::Decode(_) | Error::Unexpected(_) => ErrorCode::BadRequest,
            Error::Frame(FrameError::TooLarge { .. }) => ErrorCode::TooLarge,
            Error::Frame(FrameError::Truncated { .. }) | Error::StreamEnded(_) => {
                ErrorCode::Truncated
            }
            Error::Frame(_) => ErrorCode::Corrupt,
            Error::Shutdown | Error::Timeout(_) => ErrorCode::Cancelled,
            _ => ErrorCode::Internal,
        };
        WireError::new(code, self.to_string())
    }

    /// The remote error code, if the peer refused.
    pub fn remote_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Remote(e) => Some(e.code),
            _ => None,
        }
    }
}

/// What timed out, and after how long without progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut {
    /// What was being done ("waiting for a step", "handshake").
    pub what: &'static str,
    /// How long nothing moved, when it is an inactivity timeout.
    pub after: Option<Duration>,
}

impl TimedOut {
    /// A deadline for `what` passed.
    pub fn new(what: &'static str) -> Self {
        Self { what, after: None }
    }

    /// Nothing moved for `after` while doing `what`.
    pub fn inactive(what: &'static str, after: Duration) -> Self {
        Self {
            what,
            after: Some(after),
        }
    }
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.after {
            Some(d) => write!(
                f,
                "no progress for {} while {} (step timeout)",
                show_duration(d),
                self.what
            ),
            None => f.write_str(self.what),
        }
    }
}

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

/// Makes quinn's close reasons readable, naming TLS alerts.
fn describe_close(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason);
            let code = u64::from(c.error_code);
            if (0x100..0x200).contains(&code) {
                let alert = match code - 0x100 {
                    42 => "bad certificate",
                    44 => "certificate revoked",
                    45 => "certificate expired",
                    46 => "certificate unknown",
                    48 => "unknown CA",
                    49 => "access denied",
                    116 => "certificate required",
                    120 => "no application protocol",
                    _ => "handshake failure",
                };
                format!("TLS handshake refused ({alert}): {reason}")
            } else {
                format!("closed by peer: {e}")
            }
        }
        quinn::ConnectionError::ApplicationClosed(c) => {
            format!(
                "closed by peer (code {}): {}",
                c.error_code,
                String::from_utf8_lossy(&c.reason)
            )
        }
        other => other.to_string(),
    }
}
