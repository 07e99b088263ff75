//! Dynamic credentials behind `/secrets/<mount>/creds/<role>/`: one lease per
//! (caller uid and gid, role), shared by the role's files, so `username` and
//! `password` read by two `cat`s are one user.
//!
//! A held lease is checked with the core at every open (an operator may have
//! revoked it), renewed at about 2/3 of its TTL while it is in use (opened within
//! the last 2/3 of its TTL, or held open), and replaced by a new lease once less than a
//! third of its TTL is left before its max TTL. A lease no longer in use is
//! forgotten and left to expire, or revoked when the filesystem is configured so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coffer_protocols::{Handler, LocalPeer, Operation};
use fuser::Errno;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::client::{Client, Who};
use crate::lock;

/// How often the renewer looks at the held leases.
pub const RENEW_ROUND: Duration = Duration::from_millis(500);

/// The filesystem's clock, for file times and lease countdowns (this crate
/// does not depend on the daemon's `clock`).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

pub(crate) fn now_seconds() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// One lease and the credential it stands for. The password is wiped when the
/// lease is dropped.
pub struct Held {
    pub lease_id: String,
    pub username: String,
    pub password: Zeroizing<String>,
    /// The TTL the lease was issued with, in seconds.
    pub ttl: u64,
    pub renewable: bool,
    /// Unix seconds.
    pub expire_time: u64,
    /// Unix seconds; `u64::MAX` until the core has told.
    pub max_expire_time: u64,
    last_renewed: Instant,
    last_used: Instant,
    /// Open file handles on this lease's files.
    pub open_handles: usize,
    /// Who took the lease, as the core saw them then (supplementary groups and
    /// unit included, pid 0): renewals and revocation run as them, so a role
    /// bound by group or unit keeps its lease alive.
    owner: LocalPeer,
}

impl Held {
    /// Less than a third of the TTL is left before the max TTL: the next open
    /// takes a new lease.
    fn replace_due(&self, now: u64) -> bool {
        now >= self.expire_time
            || self.max_expire_time.saturating_sub(now).saturating_mul(3) <= self.ttl
    }

    /// Opened within the last 2/3 of the TTL, or held open.
    fn in_use(&self) -> bool {
        let window = (Duration::from_secs(self.ttl) * 2 / 3).max(Duration::from_secs(1));
        self.open_handles > 0 || self.last_used.elapsed() < window
    }

    /// At about 2/3 of the TTL; a second earlier for short TTLs, whose expiry
    /// the core counts in whole seconds (never before half the TTL).
    fn renew_due(&self) -> bool {
        let ttl = Duration::from_secs(self.ttl);
        let due = (ttl * 2 / 3)
            .saturating_sub(Duration::from_secs(1))
            .max(ttl / 2);
        self.renewable && self.last_renewed.elapsed() >= due
    }

    fn update(&mut self, lease: &Value) {
        if let Some(expire) = lease.get("expire_time").and_then(Value::as_u64) {
            self.expire_time = expire;
        }
        if let Some(max) = lease.get("max_expire_time").and_then(Value::as_u64) {
            self.max_expire_time = max;
        }
    }
}

type Key = (u32, u32, String);
type Slot = Arc<Mutex<Option<Held>>>;

/// The held leases, one slot per (uid, gid, credential directory).
#[derive(Default)]
pub struct Leases {
    slots: Mutex<HashMap<Key, Slot>>,
    /// Revoke a lease when it falls out of use instead of letting it expire.
    pub revoke_unused: bool,
}

impl Leases {
    pub fn new(revoke_unused: bool) -> Self {
        Leases {
            slots: Mutex::new(HashMap::new()),
            revoke_unused,
        }
    }

    fn slot(&self, who: Who, directory: &str) -> Slot {
        lock(&self.slots)
            .entry((who.uid, who.gid, directory.to_owned()))
            .or_default()
            .clone()
    }

    /// The credential `who` reads at `directory` (the filesystem path of
    /// `<mount>/creds/<role>`), reading `read_path` for a new lease when none is
    /// held or the held one is gone or near its max TTL. Calls `snapshot` with
    /// the lease while it is locked, and counts an open handle on it.
    pub fn open<H: Handler, T>(
        &self,
        client: &Client<H>,
        who: Who,
        directory: &str,
        read_path: &str,
        snapshot: impl FnOnce(&Held) -> T,
    ) -> Result<T, Errno> {
        let slot = self.slot(who, directory);
        let mut held = lock(&slot);
        if let Some(current) = held.as_mut() {
            if current.replace_due(now_seconds()) {
                *held = None;
            } else {
                let mut data = Map::new();
                data.insert("lease_id".into(), json!(current.lease_id));
                match client.call(who, Operation::Read, fs_path(directory), data) {
                    Ok(response) => {
                        if let Some(lease) =
                            response.data.as_ref().and_then(|data| data.get("lease"))
                        {
                            current.update(lease);
                        }
                        if current.replace_due(now_seconds()) {
                            *held = None;
                        }
                    }
                    // Revoked or expired meanwhile: lease anew.
                    Err(error) if error == Errno::ENOENT => *held = None,
                    Err(error) => return Err(error),
                }
            }
        }
        if held.is_none() {
            // The caller is blocked in its open: its pid is still its own.
            let mut owner = LocalPeer::from_kernel(who.uid, who.gid, who.pid);
            owner.describe();
            let response = client.block_on(client.call_as(
                owner.clone(),
                Operation::Read,
                read_path.to_owned(),
                Map::new(),
            ))?;
            owner.pid = 0;
            let data = response.data.as_ref().ok_or(Errno::EIO)?;
            let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
            let (Some(username), Some(password)) = (text("username"), text("password")) else {
                return Err(Errno::EIO);
            };
            let now = Instant::now();
            *held = Some(Held {
                lease_id: response.lease_id.clone(),
                username,
                password: Zeroizing::new(password),
                ttl: response.lease_duration,
                renewable: response.renewable,
                expire_time: now_seconds() + response.lease_duration,
                max_expire_time: u64::MAX,
                last_renewed: now,
                last_used: now,
                open_handles: 0,
                owner,
            });
        }
        let current = held.as_mut().ok_or(Errno::EIO)?;
        current.last_used = Instant::now();
        current.open_handles += 1;
        Ok(snapshot(current))
    }

    /// A handle on `lease_id`'s files was released.
    pub fn release(&self, who: Who, directory: &str, lease_id: &str) {
        let slot = lock(&self.slots)
            .get(&(who.uid, who.gid, directory.to_owned()))
            .cloned();
        if let Some(slot) = slot
            && let Some(held) = lock(&slot).as_mut()
            && held.lease_id == lease_id
        {
            held.open_handles = held.open_handles.saturating_sub(1);
        }
    }

    /// One renewal round: renews what is in use and due, forgets (or revokes)
    /// what fell out of use.
    pub async fn renew_round<H: Handler>(&self, client: &Client<H>) {
        let slots: Vec<(Key, Slot)> = lock(&self.slots)
            .iter()
            .map(|(key, slot)| (key.clone(), slot.clone()))
            .collect();
        for ((_, _, directory), slot) in slots {
            let work = {
                let Ok(mut held) = slot.try_lock() else {
                    continue; // an open is using it
                };
                match held.as_mut() {
                    None => None,
                    Some(current) if !current.in_use() => {
                        let work = ("revoke", current.lease_id.clone(), current.owner.clone());
                        *held = None;
                        Some(work).filter(|_| self.revoke_unused)
                    }
                    Some(current) if current.renew_due() && !current.replace_due(now_seconds()) => {
                        Some(("renew", current.lease_id.clone(), current.owner.clone()))
                    }
                    Some(_) => None,
                }
            };
            let Some((action, lease_id, owner)) = work else {
                continue;
            };
            let mut data = Map::new();
            data.insert("lease_id".into(), json!(lease_id));
            data.insert("action".into(), json!(action));
            let result = client
                .call_as(owner, Operation::Write, fs_path(&directory), data)
                .await;
            if action != "renew" {
                if let Err(error) = result {
                    tracing::warn!(?error, "could not revoke an unused lease; it will expire");
                }
                continue;
            }
            let mut held = lock(&slot);
            let Some(current) = held.as_mut().filter(|held| held.lease_id == lease_id) else {
                continue;
            };
            match result {
                Ok(response) => {
                    if let Some(lease) = response
                        .data
                        .as_ref()
                        .map(|data| Value::Object(data.clone()))
                    {
                        current.update(&lease);
                    }
                    current.last_renewed = Instant::now();
                }
                Err(error) if error == Errno::ENOENT => *held = None,
                Err(error) => {
                    tracing::warn!(?error, "could not renew a lease; retrying next round");
                }
            }
        }
        // A slot someone else holds or has locked is kept; empty ones go.
        lock(&self.slots).retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |held| held.is_some())
        });
    }
}

/// The core's filesystem view of `directory`.
pub fn fs_path(directory: &str) -> String {
    format!("sys/internal/fs/{directory}")
}
