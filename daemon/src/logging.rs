//! The server's log: coffer's own events at `log_level` (default info), its
//! dependencies at `warn` unless `log_level` is debug or trace (`RUST_LOG`,
//! when set, decides alone). Written to the journal with structured fields
//! when stderr is the journal (`JOURNAL_STREAM`), else to stderr as text, or
//! as one JSON object per line with Vault's keys (`log_format = "json"`).

use std::fmt;
use std::io::IsTerminal as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry};

/// `log_format`: Vault's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Text lines on stderr, or the journal's fields under systemd.
    #[default]
    Standard,
    /// One JSON object per line on stderr, wherever stderr goes.
    Json,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "standard" => Some(Format::Standard),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// The crates whose events are coffer's own.
const OWN: [&str; 4] = ["coffer", "coffer_daemon", "coffer_protocols", "coffer_fuse"];

/// The filter directive for `level`: ours at it, dependencies at `warn` (or
/// at `level` when it is quieter, or asks for debugging).
pub fn directive(level: &str) -> String {
    let dependencies = match level {
        "trace" | "debug" | "error" => level,
        _ => "warn",
    };
    let mut directive = dependencies.to_owned();
    for own in OWN {
        directive.push_str(&format!(",{own}={level}"));
    }
    directive
}

/// Whether stderr is the journal: `JOURNAL_STREAM` names its device and inode
/// (systemd.exec(5)), so a redirected stderr is not mistaken for it.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_str() == Some(&format!("{}:{}", stat.st_dev, stat.st_ino))
}

/// Installs the process's logger. Call once, before the first event.
pub fn init(level: Option<&str>, format: Format) {
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(directive(level.unwrap_or("info"))))
    };
    if format == Format::Json {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .event_format(VaultJson)
            .init();
        return;
    }
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                Registry::default()
                    .with(filter())
                    .with(
                        journal
                            .with_syslog_identifier("coffer".to_owned())
                            .with_field_prefix(Some("COFFER".to_owned())),
                    )
                    .init();
                return;
            }
            Err(error) => {
                eprintln!("cannot write to the journal's socket ({error}): logging to stderr")
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// hclog's JSON lines, as Vault writes them: `@level`, `@message`, `@module`,
/// `@timestamp`, then the event's fields.
struct VaultJson;

impl<S, N> FormatEvent<S, N> for VaultJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writeln!(writer, "{}", json_line(event, crate::clock::now()))
    }
}

fn json_line(event: &Event<'_>, now: std::time::SystemTime) -> Value {
    let mut fields = JsonFields(Map::new());
    event.record(&mut fields);
    let mut line = Map::new();
    let metadata = event.metadata();
    line.insert(
        "@level".into(),
        metadata.level().as_str().to_ascii_lowercase().into(),
    );
    line.insert(
        "@message".into(),
        fields.0.remove("message").unwrap_or_default(),
    );
    line.insert("@module".into(), metadata.target().into());
    line.insert(
        "@timestamp".into(),
        humantime::format_rfc3339_micros(now).to_string().into(),
    );
    line.extend(fields.0);
    Value::Object(line)
}

/// An event's fields as JSON values.
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(
            field.name().to_owned(),
            crate::error_chain::describe(value).into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn dependencies_stay_at_warn_unless_debugging() {
        assert_eq!(
            directive("info"),
            "warn,coffer=info,coffer_daemon=info,coffer_protocols=info,coffer_fuse=info"
        );
        assert!(directive("debug").starts_with("debug,"));
        assert!(directive("error").starts_with("error,"));
        assert!(directive("warn").starts_with("warn,coffer=warn"));
    }

    /// Records the JSON line of each event it sees.
    struct Capture(Arc<Mutex<Vec<Value>>>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
            self.0.lock().unwrap().push(json_line(event, now));
        }
    }

    #[test]
    fn json_lines_have_vaults_keys_and_the_events_fields() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = Registry::default().with(Capture(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(node = "n2", term = 7_u64, "following the active node");
        });
        let lines = lines.lock().unwrap();
        let line = &lines[0];
        assert_eq!(line["@level"], "warn");
        assert_eq!(line["@message"], "following the active node");
        assert_eq!(line["@module"], "coffer_daemon::logging::tests");
        assert_eq!(line["@timestamp"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(line["node"], "n2");
        assert_eq!(line["term"], 7);
    }
}
