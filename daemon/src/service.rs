//! What systemd sees of a running server (`Type=notify`): `READY=1` once it
//! serves, a `STATUS=` line with its seal state, leader and mount, `WATCHDOG=1`
//! while its runtime answers, and `STOPPING=1` at shutdown. Outside a unit
//! (`NOTIFY_SOCKET` unset) nothing is sent. The same watch logs the server's
//! changes of leader as one line each.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::core::Core;
use crate::raft::cluster::Cluster;

/// How long readiness waits for an auto seal to unseal an initialized node
/// (one KMS call, ~100 ms normally) before saying ready while sealed.
const AUTO_UNSEAL_GRACE: Duration = Duration::from_secs(10);
/// How often the state is looked at while waiting to be ready.
const READY_POLL: Duration = Duration::from_millis(20);
/// How often the status line is brought up to date.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// The `/secrets` filesystem, as readiness needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// No `fuse` block.
    Unconfigured,
    /// Configured; mounted once the server is unsealed.
    Waiting,
    /// Mounted, and its root answered a `stat`.
    Answering,
    /// The mount failed: the API serves, the files do not.
    Failed(String),
}

/// Sends `states` to the service manager; a failure is logged (the first
/// one: the watchdog would repeat it twice per period), never fatal.
fn notify(states: &[NotifyState]) {
    static FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Err(error) = sd_notify::notify(states)
        && !FAILED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Tells the service manager the server is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// What the status line is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    initialized: bool,
    sealed: bool,
    seal_type: String,
    /// `Some(true)`: this node leads; `Some(false)`: another node does.
    leading: Option<bool>,
    leader: Option<String>,
    mount: Mount,
}

impl Snapshot {
    fn take(core: &Core, cluster: &Cluster, mount: &Mount) -> Snapshot {
        let status = core.status();
        let leader = cluster.leader();
        Snapshot {
            initialized: status.initialized,
            sealed: status.sealed,
            seal_type: status.seal_type,
            leading: leader.as_ref().map(|_| cluster.is_leader()),
            leader: leader.map(|(_, node)| node.name),
            mount: mount.clone(),
        }
    }

    /// The line `systemctl status` shows.
    fn line(&self) -> String {
        let mut line = if !self.initialized {
            "uninitialized: run `coffer operator init` (or join through retry_join)".to_owned()
        } else if self.sealed {
            match self.seal_type.as_str() {
                crate::seal::SHAMIR => "sealed: run `coffer operator unseal`".to_owned(),
                kind => format!("sealed: waiting for the {kind} seal"),
            }
        } else {
            match (self.leading, &self.leader) {
                (Some(true), _) => "unsealed, active node".to_owned(),
                (Some(false), Some(leader)) => format!("unsealed, standby (active node: {leader})"),
                _ => "unsealed, no active node (no Raft leader)".to_owned(),
            }
        };
        match &self.mount {
            Mount::Unconfigured | Mount::Waiting => {}
            Mount::Answering => line.push_str("; /secrets mounted"),
            Mount::Failed(error) => {
                line.push_str("; /secrets NOT mounted: ");
                line.push_str(error);
            }
        }
        line
    }

    /// Serving as far as it can: sealed (an operator must reach it to unseal)
    /// or unsealed with its mount answering (or failed: it will not answer).
    fn ready(&self, auto_unseal_pending: bool) -> bool {
        if self.sealed {
            return !auto_unseal_pending;
        }
        !matches!(self.mount, Mount::Waiting)
    }
}

/// Watches the server for the service manager from the moment its listeners
/// are bound until shutdown.
pub struct Watch {
    pub core: Arc<Core>,
    pub cluster: Arc<Cluster>,
    pub mount: watch::Receiver<Mount>,
}

impl Watch {
    /// Sends `READY=1` once the server is ready (see [`Snapshot::ready`]),
    /// then keeps `STATUS=` true and feeds the watchdog when `WatchdogSec=`
    /// asks for it. Runs until aborted.
    pub async fn run(self) {
        let started = Instant::now();
        // An initialized node with an auto seal unseals itself at once:
        // readiness waits a little for it, and for its mount.
        let auto_unseal = self.core.settings().seal.is_some() && self.core.status().initialized;
        let mut snapshot = self.snapshot();
        while !snapshot.ready(auto_unseal && started.elapsed() < AUTO_UNSEAL_GRACE) {
            tokio::time::sleep(READY_POLL).await;
            snapshot = self.snapshot();
        }
        let line = snapshot.line();
        notify(&[NotifyState::Ready, NotifyState::Status(&line)]);
        tracing::info!(
            status = %line,
            after_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "ready"
        );

        let mut status = tokio::time::interval(STATUS_POLL);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Twice per period, as sd_watchdog_enabled(3) advises.
        let period = sd_notify::watchdog_enabled().map(|period| period / 2);
        let mut watchdog = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                _ = status.tick() => {
                    let next = self.snapshot();
                    if next != snapshot {
                        log_change(&snapshot, &next);
                        let line = next.line();
                        notify(&[NotifyState::Status(&line)]);
                        snapshot = next;
                    }
                }
                _ = watchdog.tick(), if period.is_some() => notify(&[NotifyState::Watchdog]),
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.core, &self.cluster, &self.mount.borrow())
    }
}

/// One line for a change of leader while unsealed; seal changes and the mount
/// log themselves where they happen.
fn log_change(before: &Snapshot, after: &Snapshot) {
    if after.sealed || (before.leading, &before.leader) == (after.leading, &after.leader) {
        return;
    }
    match (after.leading, &after.leader) {
        (Some(true), _) => tracing::info!("this node is now the active node (Raft leader)"),
        (Some(false), Some(leader)) => tracing::info!(%leader, "following the active node"),
        _ => tracing::warn!("the cluster has no active node (no Raft leader)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            initialized: true,
            sealed: false,
            seal_type: "shamir".into(),
            leading: Some(true),
            leader: Some("n1".into()),
            mount: Mount::Unconfigured,
        }
    }

    #[test]
    fn sealed_is_ready_unless_an_auto_seal_is_about_to_unseal() {
        let sealed = Snapshot {
            sealed: true,
            ..snapshot()
        };
        assert!(sealed.ready(false));
        assert!(!sealed.ready(true));
        assert_eq!(sealed.line(), "sealed: run `coffer operator unseal`");
        let auto = Snapshot {
            seal_type: "awskms".into(),
            ..sealed
        };
        assert_eq!(auto.line(), "sealed: waiting for the awskms seal");
    }

    #[test]
    fn unsealed_is_ready_once_the_mount_answers_or_failed() {
        let waiting = Snapshot {
            mount: Mount::Waiting,
            ..snapshot()
        };
        assert!(!waiting.ready(false));
        let answering = Snapshot {
            mount: Mount::Answering,
            ..snapshot()
        };
        assert!(answering.ready(false));
        assert_eq!(answering.line(), "unsealed, active node; /secrets mounted");
        let failed = Snapshot {
            mount: Mount::Failed("EPERM".into()),
            leading: Some(false),
            leader: Some("n2".into()),
            ..snapshot()
        };
        assert!(failed.ready(false));
        assert_eq!(
            failed.line(),
            "unsealed, standby (active node: n2); /secrets NOT mounted: EPERM"
        );
    }
}
