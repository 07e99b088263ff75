//! Vault's resource quotas: rate limits per client and lease counts per path.
//!
//! A quota applies to the whole API (`path` empty), to one mount
//! (`secret/`), to one path in a mount (`secret/app`) or to the paths that
//! start with a prefix (`secret/app*`); a request meets only the most specific
//! quota of each type that covers it, as in Vault. Rate limits count each
//! client (its IP address, or its uid on the Unix socket and `/secrets`)
//! separately, in a token bucket of `rate` requests per `interval`; a client
//! over it is refused, and for `block_interval` afterwards if one is set.
//! Lease counts cap the leases alive under a path: a request that would make
//! one more is refused before it runs.
//!
//! The rules are stored at `sys/quotas/` and held here parsed; the bucket of
//! each client lives in the memory of the node that answered it (Vault's
//! quotas are per node too). The check is the first thing a request meets,
//! before its token is looked up, so a client over its quota costs one map
//! lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where quotas are stored.
pub const PREFIX: &str = "sys/quotas/";
pub const CONFIG_PATH: &str = "sys/quotas/config";

/// The paths rate limits never apply to until `sys/quotas/config` says
/// otherwise: what an operator needs to unseal and to see health.
pub const DEFAULT_EXEMPT_PATHS: [&str; 7] = [
    "sys/generate-recovery-token/attempt",
    "sys/generate-recovery-token/update",
    "sys/generate-root/attempt",
    "sys/generate-root/update",
    "sys/health",
    "sys/seal-status",
    "sys/unseal",
];

/// How many clients one rate limit remembers. Past it, clients whose bucket
/// is full again are forgotten; if none is, a new client is refused (the map
/// is memory spent before authentication, so it is bounded).
const MAX_CLIENTS: usize = 65_536;

/// The two kinds of quota, and their names in paths and responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RateLimit,
    LeaseCount,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "rate-limit" => Some(Kind::RateLimit),
            "lease-count" => Some(Kind::LeaseCount),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RateLimit => "rate-limit",
            Kind::LeaseCount => "lease-count",
        }
    }

    /// The storage prefix of this kind's rules.
    pub fn prefix(self) -> String {
        format!("{PREFIX}{}/", self.as_str())
    }
}

/// `sys/quotas/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub enable_rate_limit_audit_logging: bool,
    pub enable_rate_limit_response_headers: bool,
    pub rate_limit_exempt_paths: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enable_rate_limit_audit_logging: false,
            enable_rate_limit_response_headers: false,
            rate_limit_exempt_paths: DEFAULT_EXEMPT_PATHS.map(str::to_owned).to_vec(),
        }
    }
}

impl Config {
    /// Whether `path` is exempt: listed, or under a listed prefix ending in `*`.
    fn exempts(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        self.rate_limit_exempt_paths
            .iter()
            .any(|exempt| match exempt.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => exempt.trim_end_matches('/') == path,
            })
    }
}

/// One stored quota rule of either kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    /// Empty (everything), a mount (`secret/`), a path in a mount
    /// (`secret/app`) or a prefix (`secret/app*`).
    pub path: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub inheritable: bool,
    #[serde(flatten)]
    pub limit: Limit,
}

/// What a rule limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Limit {
    /// `rate` requests per `interval` seconds per client; a client over it is
    /// refused for `block_interval` seconds if that is set.
    RateLimit {
        rate: f64,
        interval: u64,
        block_interval: u64,
    },
    /// At most `max_leases` leases alive under the path.
    LeaseCount { max_leases: u64 },
}

impl Rule {
    pub fn kind(&self) -> Kind {
        match self.limit {
            Limit::RateLimit { .. } => Kind::RateLimit,
            Limit::LeaseCount { .. } => Kind::LeaseCount,
        }
    }

    /// Whether `other` limits the same requests (Vault refuses a second rule
    /// of a kind on the same path and role).
    pub fn overlaps(&self, other: &Rule) -> bool {
        self.kind() == other.kind() && self.path == other.path && self.role == other.role
    }
}

/// Which requests a rule covers, most specific last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Global,
    /// A mount path with its trailing slash.
    Mount(String),
    /// Paths starting with this.
    Prefix(String),
    /// This path, without a trailing slash.
    Exact(String),
}

impl Scope {
    fn of(path: &str) -> Scope {
        if path.is_empty() {
            Scope::Global
        } else if let Some(prefix) = path.strip_suffix('*') {
            Scope::Prefix(prefix.to_owned())
        } else if path.ends_with('/') {
            Scope::Mount(path.to_owned())
        } else {
            Scope::Exact(path.to_owned())
        }
    }

    /// How specifically it covers `path` (higher wins), if it does. A quota
    /// on a mount covers the mounts nested below it too.
    fn covers(&self, path: &str) -> Option<(u8, usize)> {
        match self {
            Scope::Global => Some((0, 0)),
            Scope::Mount(mount) => (path.starts_with(mount.as_str())
                || mount.strip_suffix('/') == Some(path))
            .then_some((1, mount.len())),
            Scope::Prefix(prefix) => path
                .starts_with(prefix.as_str())
                .then_some((2, prefix.len())),
            Scope::Exact(exact) => (path.trim_end_matches('/') == exact).then_some((3, 0)),
        }
    }

    /// The lease ids this scope covers start with this.
    fn lease_prefix(&self) -> String {
        match self {
            Scope::Global => String::new(),
            Scope::Mount(prefix) | Scope::Prefix(prefix) => prefix.clone(),
            Scope::Exact(path) => format!("{path}/"),
        }
    }
}

/// Who a rate limit counts: the address or uid of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Address(IpAddr),
    Uid(u32),
}

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Duration,
    blocked_until: Duration,
}

/// A compiled rate limit with its clients' buckets.
struct RateLimiter {
    rule: Rule,
    scope: Scope,
    /// The bucket's size: `rate`, and at least one request.
    capacity: f64,
    /// Tokens added per second.
    refill: f64,
    block: Duration,
    clients: Mutex<HashMap<Client, Bucket>>,
}

/// What a rate limit says of one request, with the figures its headers show.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Seconds until the client may try again (0 when allowed).
    pub retry_after: u64,
    /// The same, exactly.
    pub wait: Duration,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

/// A non-negative number of seconds as a duration (0 when it is not one).
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or_default()
}

fn ceil_seconds(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        seconds.ceil() as u64
    } else {
        0
    }
}

impl RateLimiter {
    fn new(rule: Rule) -> Option<RateLimiter> {
        let Limit::RateLimit {
            rate,
            interval,
            block_interval,
        } = rule.limit
        else {
            return None;
        };
        let interval = interval.max(1) as f64;
        Some(RateLimiter {
            scope: Scope::of(&rule.path),
            capacity: rate.max(1.0),
            refill: rate / interval,
            block: Duration::from_secs(block_interval),
            clients: Mutex::new(HashMap::new()),
            rule,
        })
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<Client, Bucket>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one request from `client`'s bucket at `now` (time since the
    /// quotas' epoch).
    fn take(&self, client: Client, now: Duration) -> Decision {
        let mut clients = self.clients();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, bucket| !self.is_idle(bucket, now));
            if clients.len() >= MAX_CLIENTS {
                return Decision {
                    allowed: false,
                    retry_after: ceil_seconds(1.0 / self.refill),
                    wait: seconds(1.0 / self.refill),
                    limit: self.capacity as u64,
                    remaining: 0,
                    reset: ceil_seconds(self.capacity / self.refill),
                };
            }
        }
        let bucket = clients.entry(client).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
            blocked_until: Duration::ZERO,
        });
        let elapsed = now.saturating_sub(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.refill).min(self.capacity);
        bucket.updated = now;
        let reset = |tokens: f64| ceil_seconds((self.capacity - tokens) / self.refill);
        if bucket.blocked_until > now {
            return Decision {
                allowed: false,
                retry_after: ceil_seconds((bucket.blocked_until - now).as_secs_f64()),
                wait: bucket.blocked_until - now,
                limit: self.capacity as u64,
                remaining: 0,
                reset: reset(bucket.tokens),
            };
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Decision {
                allowed: true,
                retry_after: 0,
                wait: Duration::ZERO,
                limit: self.capacity as u64,
                remaining: bucket.tokens as u64,
                reset: reset(bucket.tokens),
            };
        }
        let retry_after = if self.block > Duration::ZERO {
            bucket.blocked_until = now + self.block;
            self.block.as_secs_f64()
        } else {
            (1.0 - bucket.tokens) / self.refill
        };
        Decision {
            allowed: false,
            retry_after: ceil_seconds(retry_after).max(1),
            wait: seconds(retry_after),
            limit: self.capacity as u64,
            remaining: 0,
            reset: reset(bucket.tokens),
        }
    }

    /// A bucket that has filled up again and is not blocked: forgetting it
    /// changes nothing.
    fn is_idle(&self, bucket: &Bucket, now: Duration) -> bool {
        let elapsed = now.saturating_sub(bucket.updated).as_secs_f64();
        bucket.blocked_until <= now && bucket.tokens + elapsed * self.refill >= self.capacity
    }
}

/// A compiled lease count with the leases being issued under it right now.
pub struct LeaseCounter {
    rule: Rule,
    scope: Scope,
    max_leases: u64,
    /// Requests admitted that have not finished: counted with the stored
    /// leases, so two requests cannot both take the last lease. Held while
    /// the stored leases are counted.
    pending: Mutex<u64>,
}

/// A lease count's admission of one request; dropping it when the request
/// is done frees its place.
pub struct Reservation {
    counter: Arc<LeaseCounter>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut pending = self.counter.pending();
        *pending = pending.saturating_sub(1);
    }
}

impl LeaseCounter {
    fn pending(&self) -> MutexGuard<'_, u64> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn name(&self) -> &str {
        &self.rule.name
    }

    /// The lease ids this count covers start with this.
    pub fn lease_prefix(&self) -> String {
        self.scope.lease_prefix()
    }

    /// Admits one more lease if the stored ones (`stored()`, counted under
    /// the lock) and those being issued leave room.
    pub fn reserve<E>(
        self: &Arc<Self>,
        stored: impl FnOnce(&str) -> Result<u64, E>,
    ) -> Result<Option<Reservation>, E> {
        let mut pending = self.pending();
        let stored = stored(&self.lease_prefix())?;
        if stored.saturating_add(*pending) >= self.max_leases {
            return Ok(None);
        }
        *pending += 1;
        Ok(Some(Reservation {
            counter: self.clone(),
        }))
    }
}

/// The quotas as this node holds them.
#[derive(Default)]
struct Rules {
    config: Config,
    rate_limits: Vec<Arc<RateLimiter>>,
    lease_counts: Vec<Arc<LeaseCounter>>,
}

/// The quotas of a node: the rules, loaded while unsealed, and their state.
pub struct Quotas {
    rules: RwLock<Arc<Rules>>,
    epoch: Instant,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            rules: RwLock::new(Arc::new(Rules::default())),
            epoch: Instant::now(),
        }
    }
}

/// What a request's rate limit says, if one covers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    /// The quota's name, for logs.
    pub quota: String,
    /// Whether the response shows `X-Ratelimit-*` headers.
    pub headers: bool,
    /// Whether a refusal is audited.
    pub audit: bool,
}

impl Quotas {
    fn current(&self) -> Arc<Rules> {
        self.rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the rules. A rule that did not change keeps its state (its
    /// clients' buckets, its leases being issued).
    pub fn replace(&self, config: Config, rules: Vec<Rule>) {
        let old = self.current();
        let mut next = Rules {
            config,
            ..Rules::default()
        };
        for rule in rules {
            match rule.kind() {
                Kind::RateLimit => {
                    let kept = old.rate_limits.iter().find(|limiter| limiter.rule == rule);
                    match kept {
                        Some(limiter) => next.rate_limits.push(limiter.clone()),
                        None => next
                            .rate_limits
                            .extend(RateLimiter::new(rule).map(Arc::new)),
                    }
                }
                Kind::LeaseCount => {
                    let kept = old.lease_counts.iter().find(|counter| counter.rule == rule);
                    match (kept, &rule.limit) {
                        (Some(counter), _) => next.lease_counts.push(counter.clone()),
                        (None, Limit::LeaseCount { max_leases }) => {
                            next.lease_counts.push(Arc::new(LeaseCounter {
                                scope: Scope::of(&rule.path),
                                max_leases: *max_leases,
                                pending: Mutex::new(0),
                                rule,
                            }));
                        }
                        (None, Limit::RateLimit { .. }) => {}
                    }
                }
            }
        }
        *self
            .rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
    }

    /// Forgets every rule (the node sealed).
    pub fn clear(&self) {
        *self
            .rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(Rules::default());
    }

    /// Takes a request to `path` from `client` through the rate limit that
    /// covers it; `None` when none does (or the path is exempt).
    pub fn rate_limit(&self, path: &str, client: Client) -> Option<Verdict> {
        let rules = self.current();
        if rules.rate_limits.is_empty() || rules.config.exempts(path) {
            return None;
        }
        let limiter = rules
            .rate_limits
            .iter()
            .filter_map(|limiter| Some((limiter.scope.covers(path)?, limiter)))
            .max_by_key(|(specificity, _)| *specificity)?
            .1;
        Some(Verdict {
            decision: limiter.take(client, self.epoch.elapsed()),
            quota: limiter.rule.name.clone(),
            headers: rules.config.enable_rate_limit_response_headers,
            audit: rules.config.enable_rate_limit_audit_logging,
        })
    }

    /// The lease count that covers a request to `path`, if one does.
    pub fn lease_count(&self, path: &str) -> Option<Arc<LeaseCounter>> {
        let rules = self.current();
        rules
            .lease_counts
            .iter()
            .filter_map(|counter| Some((counter.scope.covers(path)?, counter)))
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, counter)| counter.clone())
    }
}

/// The lease ids a rule on `path` covers start with this.
pub fn lease_prefix(path: &str) -> String {
    Scope::of(path).lease_prefix()
}

/// Where `path` (as written to `sys/quotas/...`) is normalized: no leading
/// slash, a mount with its trailing slash.
pub fn normalize_path(path: &str) -> String {
    path.trim().trim_start_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(name: &str, path: &str, rate: f64, interval: u64, block_interval: u64) -> Rule {
        Rule {
            name: name.into(),
            path: path.into(),
            role: String::new(),
            inheritable: path.is_empty(),
            limit: Limit::RateLimit {
                rate,
                interval,
                block_interval,
            },
        }
    }

    const ONE: Client = Client::Uid(1);
    const TWO: Client = Client::Uid(2);

    fn at(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }

    #[test]
    fn a_bucket_holds_rate_requests_and_refills_over_the_interval() {
        let limiter = RateLimiter::new(rate("q", "", 4.0, 2, 0)).unwrap();
        let take = |time: f64, client| limiter.take(client, at(time));
        for remaining in [3, 2, 1, 0] {
            let decision = take(0.0, ONE);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, remaining);
            assert_eq!(decision.limit, 4);
        }
        let refused = take(0.1, ONE);
        assert!(!refused.allowed);
        // One token comes back every half second: 0.2 are there.
        assert_eq!(refused.retry_after, 1);
        assert!(
            (refused.wait.as_secs_f64() - 0.4).abs() < 1e-9,
            "{:?}",
            refused.wait
        );
        assert!(take(0.1, TWO).allowed, "each client has its own bucket");
        assert!(take(0.6, ONE).allowed);
        assert!(!take(0.6, ONE).allowed);
        let full = take(10.0, ONE);
        assert!(full.allowed);
        assert_eq!(full.remaining, 3, "a bucket never holds more than rate");
    }

    #[test]
    fn a_client_over_the_rate_is_blocked_for_the_block_interval() {
        let limiter = RateLimiter::new(rate("q", "", 1.0, 1, 5)).unwrap();
        assert!(limiter.take(ONE, at(0.0)).allowed);
        let refused = limiter.take(ONE, at(0.5));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 5);
        // The bucket has refilled, but the block holds.
        let blocked = limiter.take(ONE, at(3.0));
        assert!(!blocked.allowed);
        assert_eq!(blocked.retry_after, 3);
        assert!(limiter.take(ONE, at(5.6)).allowed);
    }

    #[test]
    fn a_rate_below_one_lets_one_request_through_per_period() {
        let limiter = RateLimiter::new(rate("q", "", 0.5, 1, 0)).unwrap();
        assert!(limiter.take(ONE, at(0.0)).allowed);
        let refused = limiter.take(ONE, at(1.0));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 1);
        assert!(limiter.take(ONE, at(2.0)).allowed);
    }

    #[test]
    fn the_client_map_is_bounded_and_forgets_full_buckets_first() {
        let limiter = RateLimiter::new(rate("q", "", 1.0, 1, 0)).unwrap();
        for uid in 0..MAX_CLIENTS as u32 {
            assert!(limiter.take(Client::Uid(uid), at(0.0)).allowed);
        }
        let newcomer = Client::Uid(u32::MAX);
        assert!(
            !limiter.take(newcomer, at(0.1)).allowed,
            "every remembered client is still within its interval"
        );
        assert!(limiter.take(newcomer, at(2.0)).allowed);
        assert_eq!(limiter.clients().len(), 1);
    }

    fn check(rules: &[(&str, &str)], path: &str, expected: Option<&str>) {
        let quotas = Quotas::default();
        quotas.replace(
            Config::default(),
            rules
                .iter()
                .map(|(name, scope)| rate(name, scope, 100.0, 1, 0))
                .collect(),
        );
        let verdict = quotas.rate_limit(path, ONE);
        assert_eq!(verdict.map(|v| v.quota).as_deref(), expected, "{path}");
    }

    #[test]
    fn the_most_specific_quota_covers_a_request() {
        let all = [
            ("global", ""),
            ("mount", "secret/"),
            ("prefix", "secret/data/app*"),
            ("short-prefix", "secret/data/*"),
            ("exact", "secret/data/app"),
        ];
        check(&all, "secret/data/app", Some("exact"));
        check(&all, "secret/data/app/", Some("exact"));
        check(&all, "secret/data/apples", Some("prefix"));
        check(&all, "secret/data/other", Some("short-prefix"));
        check(&all, "secret/metadata/app", Some("mount"));
        check(&all, "secret", Some("mount"));
        check(&all, "secretive/x", Some("global"));
        check(&all, "sys/health", None);
        check(&all, "sys/unseal", None);
        check(&[("mount", "secret/")], "kv/x", None);
        check(&[], "secret/x", None);
    }

    #[test]
    fn exempt_paths_match_exactly_or_by_a_star_prefix() {
        let config = Config {
            rate_limit_exempt_paths: vec!["sys/health".into(), "secret/data/ci*".into()],
            ..Config::default()
        };
        for (path, exempt) in [
            ("sys/health", true),
            ("sys/health/", true),
            ("sys/healthy", false),
            ("secret/data/ci", true),
            ("secret/data/ci/build", true),
            ("secret/data/c", false),
            ("sys/unseal", false),
        ] {
            assert_eq!(config.exempts(path), exempt, "{path}");
        }
    }

    #[test]
    fn an_unchanged_rule_keeps_its_buckets_across_reloads() {
        let quotas = Quotas::default();
        let rule = rate("q", "", 1.0, 3600, 0);
        quotas.replace(Config::default(), vec![rule.clone()]);
        assert!(quotas.rate_limit("a", ONE).unwrap().decision.allowed);
        quotas.replace(
            Config::default(),
            vec![rule.clone(), rate("r", "b/", 1.0, 1, 0)],
        );
        assert!(!quotas.rate_limit("a", ONE).unwrap().decision.allowed);
        quotas.replace(Config::default(), vec![rate("q", "", 2.0, 3600, 0)]);
        assert!(
            quotas.rate_limit("a", ONE).unwrap().decision.allowed,
            "a changed rule starts afresh"
        );
        quotas.clear();
        assert!(quotas.rate_limit("a", ONE).is_none());
    }

    #[test]
    fn a_lease_count_admits_up_to_its_maximum_counting_pending_requests() {
        let quotas = Quotas::default();
        quotas.replace(
            Config::default(),
            vec![Rule {
                name: "l".into(),
                path: "database/creds/app".into(),
                role: String::new(),
                inheritable: false,
                limit: Limit::LeaseCount { max_leases: 2 },
            }],
        );
        assert!(quotas.lease_count("database/creds/other").is_none());
        let counter = quotas.lease_count("database/creds/app").unwrap();
        let stored = |prefix: &str| {
            assert_eq!(prefix, "database/creds/app/");
            Ok::<_, ()>(1)
        };
        let first = counter.reserve(stored).unwrap();
        assert!(first.is_some());
        assert!(
            counter.reserve(stored).unwrap().is_none(),
            "1 stored + 1 pending"
        );
        drop(first);
        assert!(counter.reserve(stored).unwrap().is_some());
        assert!(counter.reserve(|_| Ok::<_, ()>(2)).unwrap().is_none());
    }
}
