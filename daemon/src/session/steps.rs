//! Step expectation: a call's next step must be the one the protocol expects there, or
//! the call is refused; a bulk's acknowledgement is awaited with the ack timeout (the
//! peer validates and syncs first) and may be cut short by a forced stop.

use std::future::Future;

use walb_wire::msg::{ErrorCode, Step, WireError};
use walb_wire::Call;

use super::ctx::Ctx;
use super::refusal::refuse;

/// The peer's next step, taken by `pick`; any other step is refused as `{op}: expected
/// {what}, got ...`.
pub async fn expect<T>(
    call: &mut Call,
    op: &str,
    what: &str,
    pick: impl FnOnce(Step) -> Result<T, Step>,
) -> Result<T, WireError> {
    let step = call.receiver.step().await.map_err(|e| e.to_wire())?;
    pick(step).map_err(|other| {
        refuse(
            ErrorCode::BadRequest,
            format!("{op}: expected {what}, got {other:?}"),
        )
    })
}

/// The peer's step after a bulk it acknowledges once what it got is durable: awaited
/// with [`Ctx::ack_timeout`] (longer than a step), then the step timeout is back. `abort`
/// (a forced stop) ends the wait with its own error.
pub async fn ack_step<E>(
    ctx: &Ctx,
    call: &mut Call,
    abort: impl Future<Output = E>,
) -> Result<Result<Step, walb_wire::Error>, E> {
    call.set_step_timeout(ctx.ack_timeout());
    let r = tokio::select! {
        r = call.receiver.step() => r,
        e = abort => return Err(e),
    };
    call.set_step_timeout(ctx.step_timeout());
    Ok(r)
}
