//! The proxy role (placeholder until its implementation lands).

use std::sync::Arc;

use anyhow::Result;
use walb_wire::msg::ErrorCode;
use walb_wire::IncomingCall;

use crate::opts::ProxyOpts;
use crate::server::{answer, refuse, Ctx, Handler};

/// The proxy daemon.
#[derive(Debug)]
pub struct Proxy {
    _ctx: Arc<Ctx>,
    _opts: ProxyOpts,
}

/// Starts the proxy role.
pub async fn start(ctx: Arc<Ctx>, opts: ProxyOpts) -> Result<Arc<Proxy>> {
    Ok(Arc::new(Proxy {
        _ctx: ctx,
        _opts: opts,
    }))
}

impl Handler for Proxy {
    async fn handle(self: Arc<Self>, call: IncomingCall) {
        answer(
            call.call,
            Err(refuse(ErrorCode::Unsupported, "not implemented yet")),
        )
        .await;
    }

    async fn shutdown(self: Arc<Self>, _force: bool) {}
}
