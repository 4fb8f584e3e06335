//! The storage role (placeholder until its implementation lands).

use std::sync::Arc;

use anyhow::Result;
use walb_wire::msg::ErrorCode;
use walb_wire::IncomingCall;

use crate::opts::StorageOpts;
use crate::server::{answer, refuse, Ctx, Handler};

/// The storage daemon.
#[derive(Debug)]
pub struct Storage {
    _ctx: Arc<Ctx>,
    _opts: StorageOpts,
}

/// Starts the storage role.
pub async fn start(ctx: Arc<Ctx>, opts: StorageOpts) -> Result<Arc<Storage>> {
    Ok(Arc::new(Storage {
        _ctx: ctx,
        _opts: opts,
    }))
}

impl Handler for Storage {
    async fn handle(self: Arc<Self>, call: IncomingCall) {
        answer(
            call.call,
            Err(refuse(ErrorCode::Unsupported, "not implemented yet")),
        )
        .await;
    }

    async fn shutdown(self: Arc<Self>, _force: bool) {}
}
