//! walb-wire: how walb peers talk to each other.
//!
//! walb-tools spoke plain TCP without authentication. walb peers speak QUIC (quinn +
//! rustls, TLS 1.3) with certificates on both sides, issued by one cluster CA; each
//! certificate names its peer's role and id, and that identity alone decides what the peer
//! may ask.
//!
//! # Layout
//!
//! Pure (no IO, no quinn):
//!
//! - [`identity`]: [`Role`], [`PeerId`], the `walb://ROLE/ID` SAN and reading it from a
//!   certificate.
//! - [`auth`]: [`OpClass`] and [`authorize`], the one authorization table.
//! - [`msg`]: the versioned postcard messages ([`Request`], [`Reply`], [`Step`],
//!   [`Event`], [`WireError`]) and version negotiation.
//! - [`frame`]: framing on a stream, bulk chunks (zstd + XXH3 checksum).
//! - [`admit`]: [`Limits`] and the bounds every request and step keeps (sizes, counts,
//!   names, lists), checked before anything is allocated.
//! - [`intake`]: the gate of a served call, from its first message's bytes to an
//!   authorized and admitted [`Request`] (authorized before it is decoded).
//! - [`deny`]: the deny list of revoked certificates (`revoked.txt` beside `ca.crt`).
//!
//! At the edges:
//!
//! - [`certs`]: the cluster CA and certificate issuing (rcgen), PEM files.
//! - [`files`]: files written whole or not at all, created exclusively with their mode.
//! - [`tls`]: rustls configurations with reloadable material.
//! - [`config`]: transport tunables ([`WireConfig`]).
//! - [`transport`]: [`Node`], [`Peer`], [`Call`], [`EventStream`] over quinn and tokio.
//!
//! # Using it
//!
//! A daemon:
//!
//! ```no_run
//! # async fn f(files: walb_wire::TlsFiles) -> Result<(), walb_wire::Error> {
//! use walb_wire::{Node, NodeConfig, Reply};
//! let node = Node::bind(NodeConfig::new("0.0.0.0:5000".parse().unwrap(), true), files)?;
//! node.reload_on_sighup()?;
//! while let Some(mut incoming) = node.accept().await {
//!     // incoming.request is authorized already; answer on incoming.call.
//!     incoming.call.reply(Reply::Done).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! A client: `node.connect(addr).await?.request(Request::Query(Query::Version)).await?`.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod admit;
pub mod auth;
pub mod certs;
pub mod config;
pub mod deny;
mod error;
pub mod files;
pub mod frame;
pub mod identity;
pub mod intake;
pub mod msg;
mod quota;
pub mod tls;
pub mod transport;

pub use admit::Limits;
pub use auth::{authorize, Denied, OpClass};
pub use certs::{ClusterCa, IssueOptions, IssuedCert, TlsFiles};
pub use config::WireConfig;
pub use error::{Error, TimedOut};
pub use identity::{PeerId, Role};
pub use msg::{
    Command, ErrorCode, Event, Message, Query, Reply, Request, Step, Subscribe, WireError,
};
pub use transport::{
    Call, CallReceiver, CallSender, EncodedChunk, EventStream, IncomingCall, Node, NodeConfig,
    Peer, Received,
};
