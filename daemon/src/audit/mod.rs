//! Audit: "who read what, when". Every request that reaches the pipeline is
//! written to the enabled audit devices before it runs, and its response after;
//! values, tokens and accessors appear only as HMACs.
//!
//! - [`Broker`]: the enabled devices and the fail-closed rule: a request runs
//!   only if at least one device wrote its entry (when any device is enabled).
//! - [`device`]: a device's options, salt, and the thread that writes for it;
//!   a device that blocks is skipped after its deadline and reconnects alone.
//! - [`sink`]: files, syslog, TCP, UDP and Unix sockets.
//! - [`entry`]: the entries, in Vault's shape, and their hashing.
//!
//! Devices come from two places: the audit table (`sys/audit`, replicated, so
//! every node writes its own copy of what it serves) and the configuration file
//! (`audit "file" "path" { ... }`, which the API cannot remove). A device's salt
//! is derived from the cluster's secret token salt and the device's path, so it
//! is the same on every node and across restarts and needs no storage.

pub mod device;
pub mod entry;
pub mod sink;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use device::{Device, Options};
pub use entry::{Entry, Hasher};

/// The audit table's storage path (behind the barrier).
pub const TABLE_PATH: &str = "core/audit";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown audit device type {0:?}: coffer has file, syslog and socket")]
    UnknownType(String),
    #[error("audit device option {option:?} {reason}")]
    Option { option: String, reason: String },
    #[error("audit device path {0:?} is not valid: use letters, digits, '-', '_', '.' and '/'")]
    Path(String),
    #[error("audit device {path}: cannot open {target}: {reason}")]
    Open {
        path: String,
        target: String,
        reason: String,
    },
    #[error("cannot start the audit device's thread: {0}")]
    Thread(String),
}

/// The device types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Syslog,
    Socket,
}

impl Kind {
    pub fn parse(text: &str) -> Result<Kind, Error> {
        match text {
            "file" => Ok(Kind::File),
            "syslog" => Ok(Kind::Syslog),
            "socket" => Ok(Kind::Socket),
            other => Err(Error::UnknownType(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Syslog => "syslog",
            Kind::Socket => "socket",
        }
    }
}

/// A device as enabled: what the audit table stores and `sys/audit` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// With a trailing slash: `file/`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub description: String,
    pub options: BTreeMap<String, String>,
    /// Accepted for Vault's clients; every device here is per node anyway.
    pub local: bool,
}

/// A device path as stored: segments of a safe alphabet, with a trailing slash.
pub fn normalize_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_matches('/');
    let valid = !trimmed.is_empty()
        && trimmed.len() <= 128
        && trimmed.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if valid {
        Ok(format!("{trimmed}/"))
    } else {
        Err(Error::Path(path.to_owned()))
    }
}

impl DeviceConfig {
    /// Checks the type and options; the path must already be normalized.
    pub fn options(&self) -> Result<Options, Error> {
        Options::parse(self.kind, &self.options)
    }
}

/// One request's audit: the devices enabled when it began, and its caller's
/// token and accessor hashed once per device for both of its entries.
pub struct Scope {
    devices: Arc<Vec<Arc<Device>>>,
    callers: Vec<Option<entry::HashedCaller>>,
}

impl Scope {
    /// Writes `entry` to every healthy device and waits for them (each up to its
    /// deadline). True when at least one device wrote it; false means the entry
    /// is nowhere.
    pub async fn log(&self, entry: &Entry<'_>) -> bool {
        let start = Instant::now();
        let mut pending = Vec::with_capacity(self.devices.len());
        for (device, caller) in self.devices.iter().zip(&self.callers) {
            if !device.is_healthy() {
                continue;
            }
            if let Some(written) = device.submit(entry.render(device.hasher(), caller.as_ref())) {
                pending.push((device, written));
            }
        }
        let mut accepted = false;
        for (device, written) in pending {
            let deadline = start + device.options.deadline;
            if let device::Outcome::Written = device.wait(written, deadline).await {
                accepted = true;
            }
        }
        accepted
    }

    /// Queues `entry` on every healthy device without waiting (a response: it is
    /// answered whatever the devices do). False when no device took it.
    pub fn log_detached(&self, entry: &Entry<'_>) -> bool {
        let mut taken = false;
        for (device, caller) in self.devices.iter().zip(&self.callers) {
            if device.is_healthy() {
                taken |= device.submit_detached(entry.render(device.hasher(), caller.as_ref()));
            }
        }
        taken
    }
}

/// The enabled devices.
pub struct Broker {
    devices: RwLock<Arc<Vec<Arc<Device>>>>,
    /// Serializes changes to the audit table (read, change, write).
    pub table_lock: tokio::sync::Mutex<()>,
    /// The cluster's secret token salt: device salts are derived from it.
    salt_key: Zeroizing<Vec<u8>>,
    /// Devices declared in the configuration file.
    configured: Vec<DeviceConfig>,
}

impl Broker {
    pub fn new(salt_key: Zeroizing<Vec<u8>>, configured: Vec<DeviceConfig>) -> Broker {
        Broker {
            devices: RwLock::new(Arc::new(Vec::new())),
            table_lock: tokio::sync::Mutex::new(()),
            salt_key,
            configured,
        }
    }

    /// The salt of the device at `path`.
    fn salt(&self, path: &str) -> Zeroizing<Vec<u8>> {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.salt_key);
        let tag = aws_lc_rs::hmac::sign(&key, format!("audit-device-salt:{path}").as_bytes());
        Zeroizing::new(tag.as_ref().to_vec())
    }

    pub fn devices(&self) -> Arc<Vec<Arc<Device>>> {
        self.devices
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn is_empty(&self) -> bool {
        self.devices().is_empty()
    }

    /// Whether `path` is declared in the configuration file.
    pub fn is_configured(&self, path: &str) -> bool {
        self.configured.iter().any(|device| device.path == path)
    }

    /// Runs the configured devices and those of `table`, keeping the threads of
    /// devices that did not change. A device that cannot start is logged and left
    /// out (its options were checked when it was enabled).
    pub fn load(&self, table: &[DeviceConfig]) {
        let current = self.devices();
        let mut next = Vec::new();
        let wanted = self
            .configured
            .iter()
            .map(|config| (config, true))
            .chain(table.iter().map(|config| (config, false)));
        for (config, from_config) in wanted {
            if next
                .iter()
                .any(|device: &Arc<Device>| device.config.path == config.path)
            {
                continue;
            }
            if let Some(existing) = current
                .iter()
                .find(|device| device.config == *config && device.from_config == from_config)
            {
                next.push(existing.clone());
                continue;
            }
            let started = config.options().and_then(|options| {
                Device::start(
                    config.clone(),
                    options,
                    self.salt(&config.path),
                    from_config,
                )
            });
            match started {
                Ok(device) => {
                    tracing::info!(device = %config.path, kind = config.kind.as_str(), "audit device enabled");
                    next.push(Arc::new(device));
                }
                Err(error) => {
                    tracing::error!(device = %config.path, %error, "cannot start an audit device")
                }
            }
        }
        *self
            .devices
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
    }

    /// The audit of one request by `caller`: `None` when no device is enabled.
    pub fn scope(&self, caller: Option<&entry::Caller<'_>>) -> Option<Scope> {
        let devices = self.devices();
        if devices.is_empty() {
            return None;
        }
        let callers = devices
            .iter()
            .map(|device| caller.map(|caller| device.hasher().caller(caller)))
            .collect();
        Some(Scope { devices, callers })
    }

    /// `sys/audit-hash`: `input` hashed as the device at `path` hashes.
    pub fn hash(&self, path: &str, input: &str) -> Option<String> {
        let devices = self.devices();
        let device = devices.iter().find(|device| device.config.path == path)?;
        Some(device.hasher().hash(input))
    }

    /// SIGHUP: every device closes and reopens its sink.
    pub fn reopen(&self) {
        for device in self.devices().iter() {
            device.reopen();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_protocols::{Operation, Request, Transport};

    #[test]
    fn device_paths() {
        assert_eq!(normalize_path("file").unwrap(), "file/");
        assert_eq!(normalize_path("/team/a.b_c-d/").unwrap(), "team/a.b_c-d/");
        for bad in ["", "/", "a//b", "../x", "a b", "a/./b", "ü"] {
            assert!(normalize_path(bad).is_err(), "{bad:?}");
        }
    }

    fn file_device(path: &str, file: &std::path::Path) -> DeviceConfig {
        DeviceConfig {
            path: path.into(),
            kind: Kind::File,
            description: String::new(),
            options: BTreeMap::from([("file_path".into(), file.display().to_string())]),
            local: false,
        }
    }

    #[tokio::test]
    async fn entries_reach_every_device_hashed_with_its_own_salt() {
        let directory = tempfile::tempdir().unwrap();
        let broker = Broker::new(
            Zeroizing::new(b"cluster salt".to_vec()),
            vec![file_device("configured/", &directory.path().join("a.log"))],
        );
        broker.load(&[file_device("file/", &directory.path().join("b.log"))]);
        assert_eq!(broker.devices().len(), 2);
        assert!(broker.is_configured("configured/"));
        let request = Request::new(Operation::Read, "secret/data/x", Transport::Http);
        let entry = Entry {
            kind: "request",
            time: crate::clock::now(),
            request: &request,
            path: "secret/data/x",
            mount: None,
            caller: None,
            outcome: None,
            error: Some("permission denied"),
        };
        assert!(broker.scope(None).unwrap().log(&entry).await);
        let a = std::fs::read_to_string(directory.path().join("a.log")).unwrap();
        let b = std::fs::read_to_string(directory.path().join("b.log")).unwrap();
        assert!(a.contains("permission denied") && b.contains("permission denied"));
        let hash_a = broker.hash("configured/", "value").unwrap();
        let hash_b = broker.hash("file/", "value").unwrap();
        assert_ne!(hash_a, hash_b, "each device has its own salt");
        // The salt is derived: another broker over the same cluster salt agrees.
        let again = Broker::new(Zeroizing::new(b"cluster salt".to_vec()), Vec::new());
        again.load(&[file_device("file/", &directory.path().join("c.log"))]);
        assert_eq!(again.hash("file/", "value").unwrap(), hash_b);

        // Reloading the same table keeps the running device; dropping it from the
        // table stops it, but the configured one stays.
        let before = broker.devices()[1].clone();
        broker.load(&[file_device("file/", &directory.path().join("b.log"))]);
        assert!(Arc::ptr_eq(&before, &broker.devices()[1]));
        broker.load(&[]);
        assert_eq!(broker.devices().len(), 1);
        assert!(broker.hash("file/", "x").is_none());
    }

    #[tokio::test]
    async fn with_every_device_failing_nothing_is_accepted() {
        let broker = Broker::new(Zeroizing::new(b"s".to_vec()), Vec::new());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        broker.load(&[DeviceConfig {
            path: "socket/".into(),
            kind: Kind::Socket,
            description: String::new(),
            options: BTreeMap::from([("address".into(), address)]),
            local: false,
        }]);
        let request = Request::new(Operation::Read, "secret/data/x", Transport::Http);
        let entry = Entry {
            kind: "request",
            time: crate::clock::now(),
            request: &request,
            path: "secret/data/x",
            mount: None,
            caller: None,
            outcome: None,
            error: None,
        };
        // The connection is refused at once; give the thread a moment to say so.
        let mut refused = false;
        for _ in 0..50 {
            if !broker.scope(None).unwrap().log(&entry).await {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(refused, "a dead socket device accepted entries");
        assert!(broker.devices()[0].failures() >= 1);
    }
}
