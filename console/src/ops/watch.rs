//! Listening for an operation's failure event while polling for its end, so that a
//! failed operation is reported with the daemon's reason.

use std::time::{Duration, Instant};

use tracing::warn;

use crate::client::Client;
use crate::poll::{poll_until, Poll};

/// Listens to a daemon's events for the failure ([`walb_wire::msg::Event::Failed`]) of
/// operation `op` of `vol` (a replication at its source, a backup at the storage, a
/// restore, merge or apply at the archive), so that the operator hears the daemon's
/// reason (a full disk, ...) rather than "see the log"; ends when dropped.
pub(super) struct FailureWatch {
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// How long a failure seen by polling waits for its reason to arrive as an event.
const FAILURE_REASON_GRACE: Duration = Duration::from_secs(2);

impl FailureWatch {
    /// Subscribes to `node`'s events of `vol`; call it before sending the command.
    pub(super) async fn start(
        client: &Client,
        node: &str,
        vol: &str,
        op: &'static str,
    ) -> FailureWatch {
        let error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let task = match client.subscribe(node, vec![vol.to_owned()]).await {
            Ok(mut stream) => {
                let (slot, vol, watched) = (error.clone(), vol.to_owned(), op);
                Some(tokio::spawn(async move {
                    while let Ok(Some(ev)) = stream.next().await {
                        if let walb_wire::msg::Event::Failed { vol: v, op, error } = ev {
                            if v == vol && op == watched {
                                if let Ok(mut s) = slot.lock() {
                                    *s = Some(error);
                                }
                            }
                        }
                    }
                }))
            }
            Err(e) => {
                warn!(
                    node,
                    "no event stream, a failure will be told without its reason: {e}"
                );
                None
            }
        };
        FailureWatch { error, task }
    }

    pub(super) fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// The failure's reason, waiting up to [`FAILURE_REASON_GRACE`] for its event (the
    /// daemon may publish it just after the poll saw the failure); `fallback` if none.
    pub(super) async fn reason_or(&self, fallback: String) -> String {
        let every = Duration::from_millis(50);
        let reason = poll_until(
            Instant::now(),
            FAILURE_REASON_GRACE,
            every,
            move || async move {
                Ok(match self.error() {
                    Some(e) => Poll::Ready(Some(e)),
                    None if self.task.is_none() => Poll::Ready(None),
                    None => Poll::Pending(String::new()),
                })
            },
        )
        .await;
        reason.ok().flatten().unwrap_or(fallback)
    }
}

impl Drop for FailureWatch {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
