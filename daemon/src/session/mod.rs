//! The daemon session layer: what every role's calls run in, below the roles and above
//! the kernel and the wire. The roles (`storage`, `proxy`, `archive`) import from here;
//! nothing here imports a role, and [`crate::server`] only starts and runs the server.
//!
//! - [`ctx`]: the daemon's context ([`Ctx`]), the caller a queued task serves
//!   ([`Caller`]), calls to peers ([`CallError`]) and the role's [`Handler`].
//! - [`refusal`]: answers and refusals, and the mapping of errors to wire errors.
//! - [`bridge`]: the sync/async bridge — [`blocking`] work, [`ChannelReader`] and
//!   [`ChunkWriter`] between kernel readers/writers and bulk chunks.
//! - [`steps`]: step expectation ([`expect`], [`ack_step`]).
//! - [`guard`]: the temporary file of a transfer ([`TempFile`]).

pub mod bridge;
pub mod ctx;
pub mod guard;
pub mod refusal;
pub mod steps;

pub use bridge::{blocking, ChannelReader, ChunkWriter, Piece, CHANNEL_DEPTH, SEND_CHUNK};
pub use ctx::{resolve, CallError, Caller, Ctx, Handler, ACK_WAIT, STALE_PROBE};
pub use guard::TempFile;
pub use refusal::{accept, answer, internal, kernel_error, refuse};
pub use steps::{ack_step, expect};
