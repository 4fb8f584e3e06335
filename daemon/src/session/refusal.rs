//! Refusals and answers: how a call is answered, and how the daemon's errors (volume,
//! kernel, internal) become the wire's errors.

use tracing::warn;
use walb_wire::msg::{ErrorCode, Reply, WireError};
use walb_wire::Call;

use crate::vol::VolError;

/// Answers a call with `result` and finishes our half of the stream.
pub async fn answer(mut call: Call, result: Result<Reply, WireError>) {
    match result {
        Ok(reply) => {
            if let Err(e) = call.reply(reply).await {
                warn!(peer = %call.peer, "cannot send reply: {e}");
            }
            let _ = call.sender.finish();
        }
        Err(e) => call.refuse(e).await,
    }
}

impl From<VolError> for WireError {
    fn from(e: VolError) -> Self {
        let code = match &e {
            VolError::State {
                source: crate::state::StateError::Busy { .. },
                ..
            }
            | VolError::Action { .. } => ErrorCode::Busy,
            VolError::State { .. } => ErrorCode::WrongState,
            VolError::Stopping { .. } => ErrorCode::Stopped,
            VolError::Persist(_) => ErrorCode::Internal,
        };
        WireError::new(code, e.to_string())
    }
}

/// Maps a kernel error to a wire error (corrupt, truncated, bad request, internal).
pub fn kernel_error(e: &walb_kernel::Error) -> WireError {
    let code = match e {
        walb_kernel::Error::Corrupt { .. } => ErrorCode::Corrupt,
        walb_kernel::Error::Incomplete { .. } => ErrorCode::Truncated,
        walb_kernel::Error::Invalid(_) => ErrorCode::BadRequest,
        walb_kernel::Error::Unsupported(_) => ErrorCode::Unsupported,
        walb_kernel::Error::Io { .. } => ErrorCode::Internal,
    };
    WireError::new(code, e.to_string())
}

/// An internal failure, with its whole cause chain.
pub fn internal(e: &anyhow::Error) -> WireError {
    WireError::new(ErrorCode::Internal, format!("{e:#}"))
}

/// A refusal with `code`.
pub fn refuse(code: ErrorCode, msg: impl Into<String>) -> WireError {
    WireError::new(code, msg)
}
