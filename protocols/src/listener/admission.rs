//! What every listener shares, the client doors' and the cluster's: at most
//! a fixed number of connections at once (a new one waits in the kernel's
//! accept queue for a free slot, rather than being accepted and dropped),
//! transient accept errors retried after a pause, and a drain bounded in time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pause after a transient accept error (out of descriptors, a
/// connection reset before it was accepted).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One accept, as the loop sees it.
pub enum Admitted<T> {
    /// A connection and the slot it holds until it closes.
    Connection(T, OwnedSemaphorePermit),
    /// Shutdown began: stop accepting.
    Shutdown,
    /// Accepting failed in a way waiting will not mend.
    Failed(io::Error),
}

/// The connection slots of one listener.
pub struct Admission {
    slots: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(limit)),
        }
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.slots.available_permits() == 0
    }

    /// Waits for a free slot, then for a connection from `accept`; retries
    /// transient errors after a pause. Ends as soon as `shutdown` does.
    pub async fn admit<T, Accept, Accepting, Shutdown>(
        &self,
        mut accept: Accept,
        shutdown: &mut Pin<&mut Shutdown>,
    ) -> Admitted<T>
    where
        Accept: FnMut() -> Accepting,
        Accepting: Future<Output = io::Result<T>>,
        Shutdown: Future<Output = ()> + ?Sized,
    {
        loop {
            let permit = tokio::select! {
                permit = self.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Admitted::Shutdown,
                },
                () = shutdown.as_mut() => return Admitted::Shutdown,
            };
            let accepted = tokio::select! {
                accepted = accept() => accepted,
                () = shutdown.as_mut() => return Admitted::Shutdown,
            };
            match accepted {
                Ok(connection) => return Admitted::Connection(connection, permit),
                Err(error) if is_transient(&error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    drop(permit);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => return Admitted::Failed(error),
            }
        }
    }
}

/// Lets the connections `graceful` watches finish, for at most `limit`.
pub async fn drain(graceful: GracefulShutdown, limit: Duration) {
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limit) => {
            tracing::warn!("in-flight requests did not finish within {limit:?}; closing");
        }
    }
}

/// Accept errors that pass: the listening socket is still good.
pub fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || error.raw_os_error() == Some(24) // EMFILE: wait for a descriptor to free up
        || error.raw_os_error() == Some(23) // ENFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_listener_waits_for_a_slot_and_transient_errors_are_retried() {
        let admission = Admission::new(1);
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        let mut attempts = 0;
        let first = admission
            .admit(
                || {
                    attempts += 1;
                    let result = if attempts == 1 {
                        Err(io::Error::from(io::ErrorKind::ConnectionAborted))
                    } else {
                        Ok(attempts)
                    };
                    async move { result }
                },
                &mut never,
            )
            .await;
        let Admitted::Connection(2, permit) = first else {
            panic!("the transient error was not retried");
        };
        assert!(admission.is_full());
        // With its one slot held, the next accept is not even attempted
        // until shutdown ends the wait.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::pin!(shutdown);
        let waiting = admission.admit(|| async { Ok::<_, io::Error>(0) }, &mut shutdown);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err(),
            "a connection was accepted beyond the limit"
        );
        let _ = stop.send(());
        assert!(matches!(waiting.await, Admitted::Shutdown));
        drop(permit);
        let failed = admission
            .admit(
                || async { Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied)) },
                &mut std::pin::pin!(std::future::pending::<()>()),
            )
            .await;
        assert!(matches!(failed, Admitted::Failed(_)));
    }
}
