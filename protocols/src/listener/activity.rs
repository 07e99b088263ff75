//! What each connection is doing, for the limits on connections that do
//! nothing: a connection that has sent no request within the header deadline,
//! or has had none in flight for its idle limit, is closed; and when every
//! connection slot of a listener is taken, the one idle the longest is closed
//! to make room, so idle connections cannot keep a new client out.
//!
//! A request counts as in flight from its start until its response body is
//! done or dropped (a gRPC watch stays in flight while it streams).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// One connection's activity, shared by its task and its requests.
pub struct Activity {
    opened: Instant,
    /// When a request last started or ended, in milliseconds after `opened`.
    last_active_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether a request was ever made on it (before that, the header
    /// deadline applies instead of the idle limit).
    used: AtomicBool,
    /// Asks the connection's task to close it.
    close: Notify,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            close: Notify::new(),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(now, Ordering::Relaxed);
    }

    /// A request starts; it is in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.used.store(true, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(last))
    }

    /// Resolves once the connection has been idle past its limit (`handshake`
    /// until a first request, `idle` after), or the listener asked it to
    /// close to make room.
    pub async fn until_idle(&self, handshake: Duration, idle: Duration) {
        loop {
            let limit = if self.used.load(Ordering::Relaxed) {
                idle
            } else {
                handshake
            };
            let wait = match self.idle_for() {
                Some(idle_for) if idle_for >= limit => return,
                Some(idle_for) => limit - idle_for,
                None => limit,
            };
            tokio::select! {
                () = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
                () = self.close.notified() => return,
            }
        }
    }
}

/// A request in flight on a connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request in flight until it is done.
pub struct Tracked {
    pub body: axum::body::Body,
    pub _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A listener's open connections, to pick one to close when all slots are
/// taken.
#[derive(Default)]
pub struct Registry {
    connections: Mutex<Vec<Weak<Activity>>>,
}

impl Registry {
    /// A new connection's activity, registered.
    pub fn open(&self) -> Arc<Activity> {
        let activity = Activity::new();
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget closed connections now and then (amortized: once the list
        // has doubled since the last sweep).
        if connections.len() >= 64 && connections.len().is_power_of_two() {
            connections.retain(|connection| connection.strong_count() > 0);
        }
        connections.push(Arc::downgrade(&activity));
        activity
    }

    /// Asks the connection idle the longest (none in flight) to close;
    /// whether there was one.
    pub fn close_idlest(&self) -> bool {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connections.retain(|connection| connection.strong_count() > 0);
        let idlest = connections
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|activity| activity.idle_for().map(|idle_for| (idle_for, activity)))
            .max_by_key(|(idle_for, _)| *idle_for);
        match idlest {
            Some((_, activity)) => {
                activity.close.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_closes_after_its_handshake_then_idle_limits() {
        let handshake = Duration::from_millis(200);
        let idle = Duration::from_millis(400);
        let registry = Registry::default();
        let activity = registry.open();
        let started = Instant::now();
        activity.until_idle(handshake, idle).await;
        assert!(started.elapsed() >= handshake);
        assert!(started.elapsed() < idle, "no request: the handshake limit");

        // In flight, it never counts as idle; once done, the idle limit runs.
        let activity = registry.open();
        let in_flight = activity.start();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.until_idle(handshake, idle).await }
        });
        tokio::time::sleep(idle * 2).await;
        assert!(
            !waiting.is_finished(),
            "closed while a request was in flight"
        );
        drop(in_flight);
        let done = Instant::now();
        waiting.await.unwrap();
        assert!(done.elapsed() >= idle - Duration::from_millis(60));
    }

    #[tokio::test]
    async fn the_idlest_connection_is_closed_to_make_room() {
        let registry = Registry::default();
        let busy = registry.open();
        let _in_flight = busy.start();
        let idle = registry.open();
        assert!(registry.close_idlest());
        // The idle one was asked to close: its wait ends at once.
        tokio::time::timeout(
            Duration::from_secs(1),
            idle.until_idle(Duration::from_secs(60), Duration::from_secs(60)),
        )
        .await
        .unwrap();
        drop(idle);
        assert!(!registry.close_idlest(), "only a busy connection is left");
    }
}
