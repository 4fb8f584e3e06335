//! The one poll-until loop: ask, and if it is not done yet, wait and ask again until a
//! deadline. Every wait of [`crate::ops`] is a step function over it; the step decides
//! what is done, what is a failure (its error ends the wait at once) and what the wait
//! was for (the timeout's text, from the last poll).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::client::ClientError;

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    /// Done, with the result.
    Ready(T),
    /// Not yet; what the wait is for, as a timeout would say it.
    Pending(String),
}

/// Runs `step` every `every` until it is [`Poll::Ready`] or fails. Once `timeout` has
/// passed since `t0` after a pending poll, fails with [`ClientError::Timeout`] naming what
/// that poll said it waits for.
///
/// The step is a closure returning a future (`move || async move { ... }` over
/// references); state it keeps between polls lives in atomics, so the wait stays `Send`.
pub async fn poll_until<T, F, Fut>(
    t0: Instant,
    timeout: Duration,
    every: Duration,
    mut step: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, ClientError>>,
{
    loop {
        match step().await? {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(what) => {
                if t0.elapsed() >= timeout {
                    return Err(ClientError::Timeout {
                        what,
                        after: timeout,
                    });
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn ready_after_some_polls_and_a_timeout_names_the_last_poll() {
        let n = &AtomicU32::new(0);
        let got = poll_until(
            Instant::now(),
            Duration::from_secs(60),
            Duration::from_millis(1),
            move || async move {
                let n = n.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(if n == 3 {
                    Poll::Ready(n)
                } else {
                    Poll::Pending(format!("poll {n}"))
                })
            },
        )
        .await;
        assert_eq!(got.ok(), Some(3));

        let n = &AtomicU32::new(0);
        let got: Result<(), ClientError> = poll_until(
            Instant::now(),
            Duration::from_millis(30),
            Duration::from_millis(5),
            move || async move {
                let n = n.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(Poll::Pending(format!("poll {n}")))
            },
        )
        .await;
        let n = n.load(Ordering::Relaxed);
        match got {
            Err(ClientError::Timeout { what, after }) => {
                assert_eq!(what, format!("poll {n}"));
                assert!(n >= 2, "polled {n} times");
                assert_eq!(after, Duration::from_millis(30));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }

        let got: Result<(), ClientError> = poll_until(
            Instant::now(),
            Duration::from_secs(60),
            Duration::from_millis(1),
            || async { Err(ClientError::State("refused".into())) },
        )
        .await;
        assert!(matches!(got, Err(ClientError::State(m)) if m == "refused"));
    }
}
