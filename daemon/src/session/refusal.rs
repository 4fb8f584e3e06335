//! Refusals and answers: how a call is answered, and how the daemon's errors (volume,
//! kernel, internal) become the wire's errors.

use tracing::{info, warn};
use walb_wire::msg::{ErrorCode, Reply, WireError};
use walb_wire::Call;

use crate::vol::VolError;

/// Opens a protocol's session after its admission (`admitted`): a refusal answers the
/// call, which ends (`None`); else the peer is told `Accepted` and the call goes on.
/// `what` names the protocol in the log (`full backup refused: ...`).
pub async fn accept<T>(
    mut call: Call,
    vol: &str,
    what: &str,
    admitted: Result<T, WireError>,
) -> Option<(Call, T)> {
    let peer = call.peer.clone();
    let x = match admitted {
        Ok(x) => x,
        Err(e) => {
            info!(%peer, vol = %vol, "{what} refused: {e}");
            answer(call, Err(e)).await;
            return None;
        }
    };
    if let Err(e) = call.reply(Reply::Accepted).await {
        warn!(%peer, vol = %vol, "cannot accept the {what}: {e}");
        return None;
    }
    Some((call, x))
}

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
