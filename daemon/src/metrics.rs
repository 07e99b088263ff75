//! Prometheus metrics: requests by transport, method, route and status, a latency
//! histogram per route, failed logins, and the seal state. Route labels come from the core's
//! bounded route names (a mount path or a `sys/` endpoint), never from request
//! paths, so the label set cannot grow with client input.

use std::sync::Mutex;

use coffer_protocols::Observation;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    transport: &'static str,
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    /// `request` (the request was refused) or `response`.
    entry: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    /// The auth method's type.
    method: &'static str,
    /// Its mount (`userpass/`): operators' names, bounded by the mount table.
    mount: String,
    /// The client's address, `local` for a caller on this host, or `other`
    /// past [`LOGIN_SOURCES`] distinct ones.
    source: String,
}

/// Distinct login failure sources labelled at most; later ones count as
/// `other`, so a scan from many addresses cannot grow the label set.
const LOGIN_SOURCES: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    transport: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SealCallLabels {
    /// The auto seal's type.
    seal: &'static str,
    /// `check`, `wrap` or `unwrap`.
    call: &'static str,
    /// `ok` or `error`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SealErrorLabels {
    seal: &'static str,
    /// The last failure's text (names the key, never a value), bounded.
    error: String,
}

/// The auto seal's calls to its KMS: counts, the last call's latency, and
/// the last error (one series, gone once a call succeeds).
#[derive(Clone, Default)]
pub struct SealMetrics {
    calls: Family<SealCallLabels, Counter>,
    last_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_error: Family<SealErrorLabels, Gauge>,
}

/// The longest error text kept as a label.
const SEAL_ERROR_LABEL_LEN: usize = 240;

impl SealMetrics {
    /// Records one call to the seal's KMS.
    pub fn record(
        &self,
        seal: &'static str,
        call: &'static str,
        elapsed: std::time::Duration,
        error: Option<&str>,
    ) {
        self.calls
            .get_or_create(&SealCallLabels {
                seal,
                call,
                outcome: if error.is_some() { "error" } else { "ok" },
            })
            .inc();
        self.last_duration.set(elapsed.as_secs_f64());
        self.last_error.clear();
        if let Some(error) = error {
            let error: String = error.chars().take(SEAL_ERROR_LABEL_LEN).collect();
            self.last_error
                .get_or_create(&SealErrorLabels { seal, error })
                .set(1);
        }
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    sealed: Gauge,
    initialized: Gauge,
    audit_failures: Family<AuditLabels, Counter>,
    login_failures: Family<LoginLabels, Counter>,
    login_sources: Mutex<std::collections::HashSet<String>>,
    seal: SealMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let sealed = Gauge::default();
        let initialized = Gauge::default();
        let audit_failures = Family::<AuditLabels, Counter>::default();
        let login_failures = Family::<LoginLabels, Counter>::default();
        let mut registry = Registry::with_prefix("coffer");
        registry.register(
            "requests",
            "Requests answered, by transport, method, route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by transport and route",
            latency.clone(),
        );
        registry.register("sealed", "1 when the server is sealed", sealed.clone());
        registry.register(
            "initialized",
            "1 when the server has been initialized",
            initialized.clone(),
        );
        registry.register(
            "audit_failures",
            "Audit entries no enabled device wrote (request entries refuse their request)",
            audit_failures.clone(),
        );
        registry.register(
            "login_failures",
            "Failed logins, by auth method, mount and source address",
            login_failures.clone(),
        );
        let seal = SealMetrics::default();
        registry.register(
            "seal_kms_calls",
            "Calls to the auto seal's KMS, by seal type, call and outcome",
            seal.calls.clone(),
        );
        registry.register(
            "seal_kms_last_call_seconds",
            "How long the last call to the auto seal's KMS took",
            seal.last_duration.clone(),
        );
        registry.register(
            "seal_kms_last_error",
            "1, labelled with the error, when the last call to the auto seal's KMS failed",
            seal.last_error.clone(),
        );
        Metrics {
            seal,
            registry: Mutex::new(registry),
            requests,
            latency,
            sealed,
            initialized,
            audit_failures,
            login_failures,
            login_sources: Mutex::default(),
        }
    }

    /// Records one finished request.
    pub fn observe(&self, observation: &Observation<'_>) {
        let route = bounded_route(observation.route);
        self.requests
            .get_or_create(&RequestLabels {
                transport: observation.transport.as_str(),
                method: bounded_method(observation.method).to_owned(),
                route: route.clone(),
                status: observation.status,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                transport: observation.transport.as_str(),
                route,
            })
            .observe(observation.elapsed.as_secs_f64());
    }

    /// Counts a failed login on the mount `mount` of a `method`, from
    /// `source` (an address, or `local`).
    pub fn login_failed(&self, method: &'static str, mount: &str, source: &str) {
        let source = {
            let mut sources = self
                .login_sources
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if sources.contains(source) || sources.len() < LOGIN_SOURCES {
                sources.insert(source.to_owned());
                source.to_owned()
            } else {
                "other".to_owned()
            }
        };
        self.login_failures
            .get_or_create(&LoginLabels {
                method,
                mount: mount.to_owned(),
                source,
            })
            .inc();
    }

    /// The auto seal's metrics, for the wrapper that records its calls.
    pub fn seal(&self) -> SealMetrics {
        self.seal.clone()
    }

    /// Counts an audit entry (`request` or `response`) that no device wrote.
    pub fn audit_failed(&self, entry: &'static str) {
        self.audit_failures
            .get_or_create(&AuditLabels { entry })
            .inc();
    }

    /// The Prometheus text exposition, with the seal state as of now.
    pub fn render(&self, sealed: bool, initialized: bool) -> String {
        self.sealed.set(i64::from(sealed));
        self.initialized.set(i64::from(initialized));
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Doors pass the core's route labels; anything else collapses to `other`.
fn bounded_route(route: &str) -> String {
    if route.len() <= 64 && route.chars().all(|c| c.is_ascii_graphic()) {
        route.to_owned()
    } else {
        "other".to_owned()
    }
}

fn bounded_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "LIST" => method,
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_protocols::Transport;
    use std::time::Duration;

    #[test]
    fn renders_requests_latency_and_seal_state() {
        let metrics = Metrics::new();
        metrics.observe(&Observation {
            transport: Transport::Http,
            route: "secret/",
            method: "GET",
            status: 200,
            elapsed: Duration::from_millis(3),
        });
        metrics.observe(&Observation {
            transport: Transport::Http,
            route: "secret/",
            method: "BREW",
            status: 405,
            elapsed: Duration::from_millis(1),
        });
        let text = metrics.render(true, true);
        assert!(text.contains("coffer_requests_total{transport=\"http\",method=\"GET\",route=\"secret/\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(
            text.contains("coffer_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("coffer_sealed 1"), "{text}");
        metrics.audit_failed("request");
        let text = metrics.render(true, true);
        assert!(
            text.contains("coffer_audit_failures_total{entry=\"request\"} 1"),
            "{text}"
        );
    }
}
