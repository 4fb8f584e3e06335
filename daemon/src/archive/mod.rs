//! The archive role (placeholder until its implementation lands).

use std::sync::Arc;

use anyhow::Result;
use walb_wire::msg::ErrorCode;
use walb_wire::IncomingCall;

use crate::opts::ArchiveOpts;
use crate::server::{answer, refuse, Ctx, Handler};

/// The archive daemon.
#[derive(Debug)]
pub struct Archive {
    _ctx: Arc<Ctx>,
    _opts: ArchiveOpts,
}

/// Starts the archive role.
pub async fn start(ctx: Arc<Ctx>, opts: ArchiveOpts) -> Result<Arc<Archive>> {
    Ok(Arc::new(Archive {
        _ctx: ctx,
        _opts: opts,
    }))
}

impl Handler for Archive {
    async fn handle(self: Arc<Self>, call: IncomingCall) {
        answer(
            call.call,
            Err(refuse(ErrorCode::Unsupported, "not implemented yet")),
        )
        .await;
    }

    async fn shutdown(self: Arc<Self>, _force: bool) {}
}
