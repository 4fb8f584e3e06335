//! An operator's connection to the cluster's daemons through the wire library: one QUIC
//! connection per daemon, reused, for polls too fast for a console process each time.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// An operator's connection to the cluster's daemons (one QUIC connection per daemon,
/// reused), for fast polls.
pub struct Operator {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) node: walb_wire::Node,
    pub(crate) ports: BTreeMap<String, u16>,
}

impl Operator {
    /// Sends `req` to daemon `name` and returns its reply (a refusal is an error).
    pub fn request(&self, name: &str, req: walb_wire::Request) -> Result<walb_wire::Reply> {
        let port = *self
            .ports
            .get(name)
            .with_context(|| format!("no node {name}"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        self.rt.block_on(async {
            let peer = self.node.connect(addr).await?;
            let r = tokio::time::timeout(Duration::from_secs(30), peer.request(req))
                .await
                .context("no answer within 30 s")??;
            anyhow::Ok(r)
        })
    }

    /// Sends one wdiff file to archive `name` as a proxy does (wdiff transfer: the
    /// request, the file as chunks, the end of the bulk, the archive's `Ack`). `None` once
    /// the archive acknowledged it, the code of its refusal of the request otherwise.
    pub fn send_wdiff(
        &self,
        name: &str,
        transfer: walb_wire::msg::WdiffTransfer,
        wdiff: &[u8],
    ) -> Result<Option<walb_wire::ErrorCode>> {
        let port = *self
            .ports
            .get(name)
            .with_context(|| format!("no node {name}"))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        self.rt.block_on(async {
            let peer = self.node.connect(addr).await?;
            let send = async {
                let mut call = peer
                    .call(walb_wire::Request::WdiffTransfer(transfer))
                    .await?;
                match call.receiver.reply().await {
                    Ok(walb_wire::Reply::Accepted) => {}
                    Ok(other) => bail!("the wdiff transfer was answered {other:?}"),
                    Err(e) => match e.remote_code() {
                        Some(code) => return Ok(Some(code)),
                        None => return Err(e.into()),
                    },
                }
                for c in wdiff.chunks(1 << 20) {
                    call.sender.chunk(c).await?;
                }
                call.sender.end_bulk().await?;
                let step = call.receiver.step().await?;
                if step != walb_wire::Step::Ack {
                    bail!("the archive answered the wdiff with {step:?}, not Ack");
                }
                call.sender.finish()?;
                anyhow::Ok(None)
            };
            tokio::time::timeout(Duration::from_secs(60), send)
                .await
                .context("the wdiff transfer did not end within 60 s")?
        })
    }

    /// The state of `vol` on daemon `name`.
    pub fn state(&self, name: &str, vol: &str) -> Result<walb_wire::msg::VolumeState> {
        let q = walb_wire::Request::Query(walb_wire::msg::Query::State { vol: vol.into() });
        match self.request(name, q)? {
            walb_wire::Reply::State(s) => Ok(s),
            other => bail!("state of {vol} on {name}: unexpected reply {other:?}"),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.rt.block_on(self.node.close());
    }
}
