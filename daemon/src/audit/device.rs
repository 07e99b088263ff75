//! One audit device: its parsed options, its salt, and the thread that owns its
//! sink.
//!
//! Requests hand lines to the thread through a bounded queue and wait (up to the
//! device's deadline) for the write to be done; they never block on the queue or
//! on I/O themselves. The thread writes whatever has queued up in one go. When a
//! write fails, or the broker gives up waiting for one, the device is *failing*:
//! requests skip it, and the thread reconnects in the background with a growing
//! backoff (1 s doubling to 30 s, reset after a minute of health), so a peer that
//! accepts connections but never reads costs one deadline per attempt, not one
//! per request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::entry::Hasher;
use super::sink::{Sink, SocketType, Target};
use super::{DeviceConfig, Error, Kind};

/// Lines waiting for a device's thread; beyond this the device is failing.
const QUEUE_LEN: usize = 4096;
/// At most this many lines go into one write.
const BATCH_LEN: usize = 512;
const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// While lines keep coming, the thread looks for more this often instead of
/// being woken for each.
const POLL_INTERVAL: Duration = Duration::from_micros(500);
/// Healthy this long, a device's next failure starts the backoff over.
const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// A device's options, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub target: Target,
    /// `hmac_accessor` (default true): accessors are hashed like tokens.
    pub hmac_accessor: bool,
    /// `log_raw` (default false): nothing is hashed. For debugging only.
    pub log_raw: bool,
    /// `hmac_all_values` (default false, coffer's own): numbers and booleans in
    /// request and response data are hashed too, not only strings.
    pub hmac_all_values: bool,
    /// `write_timeout` (default 2s): how long a request waits for this device.
    pub deadline: Duration,
}

fn option_error(option: &str, reason: impl Into<String>) -> Error {
    Error::Option {
        option: option.to_owned(),
        reason: reason.into(),
    }
}

fn flag(options: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool, Error> {
    match options.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
        Some(_) => Err(option_error(key, "must be true or false")),
    }
}

fn socket_type(
    options: &BTreeMap<String, String>,
    default: SocketType,
) -> Result<SocketType, Error> {
    match options.get("socket_type").map(String::as_str) {
        None | Some("") => Ok(default),
        Some("tcp") => Ok(SocketType::Tcp),
        Some("udp") => Ok(SocketType::Udp),
        Some("unix") => Ok(SocketType::Unix),
        Some(other) => Err(option_error(
            "socket_type",
            format!("must be tcp, udp or unix, not {other:?}"),
        )),
    }
}

fn facility(name: &str) -> Result<String, Error> {
    super::sink::facility(name)
        .map(|_| name.to_ascii_uppercase())
        .ok_or_else(|| {
            option_error(
                "facility",
                format!("{name:?} is not a syslog facility (AUTH, DAEMON, LOCAL0..LOCAL7, ...)"),
            )
        })
}

impl Options {
    /// Checks the options of a device of `kind`; unknown options are refused.
    pub fn parse(kind: Kind, options: &BTreeMap<String, String>) -> Result<Options, Error> {
        let common = [
            "hmac_accessor",
            "hmac_all_values",
            "log_raw",
            "write_timeout",
            "format",
        ];
        let own: &[&str] = match kind {
            Kind::File => &["file_path", "path", "mode"],
            Kind::Syslog => &["facility", "tag", "address", "socket_type"],
            Kind::Socket => &["address", "socket_type"],
        };
        if let Some(unknown) = options
            .keys()
            .find(|key| !common.contains(&key.as_str()) && !own.contains(&key.as_str()))
        {
            return Err(option_error(
                unknown,
                format!("is not an option of the {} device", kind.as_str()),
            ));
        }
        if let Some(format) = options.get("format")
            && format != "json"
        {
            return Err(option_error("format", "coffer writes json only"));
        }
        let deadline = match options.get("write_timeout") {
            None => DEFAULT_DEADLINE,
            Some(text) => humantime::parse_duration(text)
                .ok()
                .or_else(|| text.parse::<u64>().ok().map(Duration::from_secs))
                .filter(|deadline| {
                    (Duration::from_millis(10)..=Duration::from_secs(60)).contains(deadline)
                })
                .ok_or_else(|| {
                    option_error("write_timeout", "must be a duration from 10ms to 60s")
                })?,
        };
        let target = match kind {
            Kind::File => {
                let path = options
                    .get("file_path")
                    .or_else(|| options.get("path"))
                    .filter(|path| !path.is_empty())
                    .ok_or_else(|| option_error("file_path", "is required"))?;
                match path.as_str() {
                    "stdout" => Target::Stdout,
                    "discard" => Target::Discard,
                    _ if !path.starts_with('/') => {
                        return Err(option_error("file_path", "must be an absolute path"));
                    }
                    _ => {
                        let mode = match options.get("mode").map(String::as_str) {
                            None => Some(0o600),
                            // Vault's "0000": leave the file's mode alone.
                            Some("0000") => None,
                            Some(text) => Some(
                                u32::from_str_radix(text, 8)
                                    .ok()
                                    .filter(|mode| *mode <= 0o777 && *mode & 0o111 == 0)
                                    .ok_or_else(|| {
                                        option_error(
                                            "mode",
                                            "must be an octal mode without execute bits, such as 0600",
                                        )
                                    })?,
                            ),
                        };
                        Target::File {
                            path: PathBuf::from(path),
                            mode,
                        }
                    }
                }
            }
            Kind::Syslog => {
                let remote = match options.get("address").filter(|address| !address.is_empty()) {
                    None => None,
                    Some(address) => {
                        Some((socket_type(options, SocketType::Udp)?, address.clone()))
                    }
                };
                Target::Syslog {
                    facility: facility(options.get("facility").map_or("AUTH", String::as_str))?,
                    tag: options
                        .get("tag")
                        .cloned()
                        .unwrap_or_else(|| "coffer".into()),
                    remote,
                }
            }
            Kind::Socket => {
                let address = options
                    .get("address")
                    .filter(|address| !address.is_empty())
                    .ok_or_else(|| option_error("address", "is required"))?
                    .clone();
                let socket_type = socket_type(options, SocketType::Tcp)?;
                if socket_type != SocketType::Unix && !address.contains(':') {
                    return Err(option_error(
                        "address",
                        format!("{address:?} is not a host:port"),
                    ));
                }
                Target::Socket {
                    socket_type,
                    address,
                }
            }
        };
        Ok(Options {
            target,
            hmac_accessor: flag(options, "hmac_accessor", true)?,
            log_raw: flag(options, "log_raw", false)?,
            hmac_all_values: flag(options, "hmac_all_values", false)?,
            deadline,
        })
    }
}

enum Job {
    Write {
        line: Vec<u8>,
        /// Told whether the line was written; `None` when nobody waits.
        done: Option<oneshot::Sender<bool>>,
    },
    /// Close and open the sink again (SIGHUP, for logrotate).
    Reopen,
}

/// State the thread and the broker share.
struct Health {
    healthy: AtomicBool,
    failures: AtomicU64,
    /// Lines that could not be written.
    lost: AtomicU64,
    last_error: Mutex<String>,
}

/// A running device.
pub struct Device {
    pub config: DeviceConfig,
    /// Declared in the configuration file (it cannot be disabled through the API).
    pub from_config: bool,
    pub options: Options,
    hasher: Hasher,
    queue: SyncSender<Job>,
    health: Arc<Health>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Device")
            .field("path", &self.config.path)
            .field("target", &self.options.target.describe())
            .finish_non_exhaustive()
    }
}

/// What a request's wait on a device came to.
pub enum Outcome {
    Written,
    Failed,
    /// The deadline passed; the device is now failing.
    TimedOut,
}

impl Device {
    /// Starts the device's thread. The sink is opened there; a device that cannot
    /// open starts failing and keeps trying.
    pub fn start(
        config: DeviceConfig,
        options: Options,
        salt: Zeroizing<Vec<u8>>,
        from_config: bool,
    ) -> Result<Device, Error> {
        let (queue, jobs) = sync_channel(QUEUE_LEN);
        let health = Arc::new(Health {
            healthy: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
        });
        let worker = Worker {
            name: config.path.clone(),
            target: options.target.clone(),
            timeout: options.deadline,
            health: health.clone(),
        };
        std::thread::Builder::new()
            .name(format!("audit-{}", config.path.trim_end_matches('/')))
            .spawn(move || worker.run(&jobs))
            .map_err(|error| Error::Thread(error.to_string()))?;
        Ok(Device {
            config,
            from_config,
            hasher: Hasher::new(&salt, options.hmac_accessor, options.log_raw)
                .hashing_all_values(options.hmac_all_values),
            options,
            queue,
            health,
        })
    }

    /// How this device hashes (its salt and options).
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    pub fn is_healthy(&self) -> bool {
        self.health.healthy.load(Ordering::Acquire)
    }

    /// How many times the device started failing.
    pub fn failures(&self) -> u64 {
        self.health.failures.load(Ordering::Relaxed)
    }

    /// Lines the device could not write.
    pub fn lost(&self) -> u64 {
        self.health.lost.load(Ordering::Relaxed)
    }

    fn mark_failing(&self, reason: &str) {
        if self.health.healthy.swap(false, Ordering::AcqRel) {
            self.health.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %self.config.path, reason, "audit device is failing; skipping it");
        }
    }

    /// Queues `line` (without waiting); `None` when the device cannot take it now
    /// (failing, or its queue is full, which makes it failing).
    pub fn submit(&self, line: Vec<u8>) -> Option<oneshot::Receiver<bool>> {
        if !self.is_healthy() {
            return None;
        }
        let (done, written) = oneshot::channel();
        self.enqueue(Job::Write {
            line,
            done: Some(done),
        })
        .then_some(written)
    }

    /// Queues `line` for writing without anyone waiting for it; false when the
    /// device cannot take it now.
    pub fn submit_detached(&self, line: Vec<u8>) -> bool {
        self.is_healthy() && self.enqueue(Job::Write { line, done: None })
    }

    fn enqueue(&self, job: Job) -> bool {
        match self.queue.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.mark_failing("its queue is full");
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.mark_failing("its thread has stopped");
                false
            }
        }
    }

    /// Waits for a submitted line until `deadline`.
    pub async fn wait(&self, written: oneshot::Receiver<bool>, deadline: Instant) -> Outcome {
        match tokio::time::timeout_at(deadline.into(), written).await {
            Ok(Ok(true)) => Outcome::Written,
            Ok(_) => Outcome::Failed,
            Err(_) => {
                self.mark_failing("a write took longer than its deadline");
                Outcome::TimedOut
            }
        }
    }

    /// Closes and reopens the sink (files: logrotate moved them).
    pub fn reopen(&self) {
        let _ = self.queue.try_send(Job::Reopen);
    }

    /// The last error, for `sys/audit` and logs.
    pub fn last_error(&self) -> String {
        self.health
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

struct Worker {
    name: String,
    target: Target,
    timeout: Duration,
    health: Arc<Health>,
}

impl Worker {
    fn failed(&self, error: &std::io::Error) {
        *self
            .health
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = error.to_string();
        if self.health.healthy.swap(false, Ordering::AcqRel) {
            self.health.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %self.name, target = %self.target.describe(), %error, "audit device is failing; reconnecting in the background");
        }
    }

    fn run(self, jobs: &Receiver<Job>) {
        let mut sink: Option<Box<dyn Sink>> = None;
        let mut retry_at = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut healthy_since = Instant::now();
        let mut busy = false;
        loop {
            if sink.is_none() && Instant::now() >= retry_at {
                match self.target.open(self.timeout) {
                    Ok(opened) => {
                        sink = Some(opened);
                        healthy_since = Instant::now();
                        if !self.health.healthy.swap(true, Ordering::AcqRel) {
                            tracing::info!(device = %self.name, "audit device is writing again");
                        }
                    }
                    Err(error) => {
                        self.failed(&error);
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            let wait = if sink.is_some() {
                Duration::from_secs(3600)
            } else {
                retry_at.saturating_duration_since(Instant::now())
            };
            // Under load, poll: sleep a little and take what came meanwhile, so
            // requests queue lines without waking this thread each time and a
            // write carries many of them. Idle, block until the next line.
            let first = if busy {
                std::thread::sleep(POLL_INTERVAL);
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => {
                        busy = false;
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match jobs.recv_timeout(wait) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            busy = true;
            let mut lines = Vec::new();
            let mut waiting = Vec::new();
            let mut reopen = false;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Write { line, done } => {
                        lines.push(line);
                        waiting.push(done);
                    }
                    Job::Reopen => reopen = true,
                }
                if lines.len() < BATCH_LEN {
                    next = jobs.try_recv().ok();
                }
            }
            if reopen {
                sink = None;
                retry_at = Instant::now();
                backoff = FIRST_BACKOFF;
                if let Ok(opened) = self.target.open(self.timeout) {
                    sink = Some(opened);
                    self.health.healthy.store(true, Ordering::Release);
                    tracing::info!(device = %self.name, "audit device reopened");
                }
            }
            if lines.is_empty() {
                continue;
            }
            let written = match sink.as_mut() {
                Some(open) => match open.write(&lines) {
                    Ok(()) => true,
                    Err(error) => {
                        self.failed(&error);
                        sink = None;
                        if healthy_since.elapsed() > HEALTHY_RESET {
                            backoff = FIRST_BACKOFF;
                        }
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        false
                    }
                },
                None => false,
            };
            if written && !self.health.healthy.swap(true, Ordering::AcqRel) {
                // The broker gave up on a slow write that has now gone through.
                tracing::info!(device = %self.name, "audit device is writing again");
            }
            if !written {
                self.health
                    .lost
                    .fetch_add(waiting.len() as u64, Ordering::Relaxed);
            }
            for done in waiting.into_iter().flatten() {
                let _ = done.send(written);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn check(kind: Kind, pairs: &[(&str, &str)], expected: Result<Target, &str>) {
        match (Options::parse(kind, &options(pairs)), expected) {
            (Ok(parsed), Ok(target)) => assert_eq!(parsed.target, target, "{pairs:?}"),
            (Err(error), Err(message)) => {
                assert!(error.to_string().contains(message), "{pairs:?}: {error}")
            }
            (got, want) => panic!("{pairs:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn options_are_checked() {
        check(
            Kind::File,
            &[("file_path", "/var/log/a.log")],
            Ok(Target::File {
                path: "/var/log/a.log".into(),
                mode: Some(0o600),
            }),
        );
        check(
            Kind::File,
            &[("file_path", "/a.log"), ("mode", "0000")],
            Ok(Target::File {
                path: "/a.log".into(),
                mode: None,
            }),
        );
        check(Kind::File, &[("file_path", "stdout")], Ok(Target::Stdout));
        check(Kind::File, &[], Err("file_path"));
        check(
            Kind::File,
            &[("file_path", "relative.log")],
            Err("absolute"),
        );
        check(
            Kind::File,
            &[("file_path", "/a"), ("mode", "999")],
            Err("octal"),
        );
        for mode in ["0755", "0700", "4600", "2640", "0640"] {
            let expected = if mode == "0640" {
                Ok(Target::File {
                    path: "/a".into(),
                    mode: Some(0o640),
                })
            } else {
                Err("without execute bits")
            };
            check(Kind::File, &[("file_path", "/a"), ("mode", mode)], expected);
        }
        check(
            Kind::File,
            &[("file_path", "/a"), ("colour", "red")],
            Err("colour"),
        );
        check(
            Kind::Socket,
            &[("address", "127.0.0.1:9090")],
            Ok(Target::Socket {
                socket_type: SocketType::Tcp,
                address: "127.0.0.1:9090".into(),
            }),
        );
        check(Kind::Socket, &[("address", "nowhere")], Err("host:port"));
        check(
            Kind::Socket,
            &[("address", "/run/a.sock"), ("socket_type", "unix")],
            Ok(Target::Socket {
                socket_type: SocketType::Unix,
                address: "/run/a.sock".into(),
            }),
        );
        check(
            Kind::Socket,
            &[("address", "a:1"), ("socket_type", "sctp")],
            Err("tcp, udp or unix"),
        );
        check(
            Kind::Syslog,
            &[("facility", "local3"), ("tag", "vaultish")],
            Ok(Target::Syslog {
                facility: "LOCAL3".into(),
                tag: "vaultish".into(),
                remote: None,
            }),
        );
        check(Kind::Syslog, &[("facility", "NOPE")], Err("facility"));
        check(
            Kind::File,
            &[("file_path", "/a"), ("write_timeout", "forever")],
            Err("write_timeout"),
        );
        check(
            Kind::File,
            &[("file_path", "/a"), ("format", "jsonx")],
            Err("json only"),
        );
        let parsed = Options::parse(
            Kind::File,
            &options(&[
                ("file_path", "/a"),
                ("write_timeout", "500ms"),
                ("hmac_accessor", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(parsed.deadline, Duration::from_millis(500));
        assert!(!parsed.hmac_accessor);
        assert!(!parsed.log_raw);
    }
}
