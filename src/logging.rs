//! The node's logging: a `tracing` filter that can be changed while the node runs
//! (`PUT /log-level`, `demls-node log-level LEVEL`), written to stderr as text or as one
//! JSON object a line (`--log-format json`).

use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message`, the event's
    /// fields under `fields`, and the enclosing spans' names under `spans`.
    Json,
}

struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    level: Mutex<String>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// The filter for a configured level: OpenMLS's storage migrations log every step at
/// info, so they are kept out of the story unless the level names them.
fn with_defaults(level: &str) -> String {
    if level.contains("refinery") {
        level.to_string()
    } else {
        format!("{level},refinery_core=warn")
    }
}

/// Installs the process's logger: `RUST_LOG` if set and valid, else `level`, else
/// `info`. Does nothing if a logger is installed already.
pub fn init(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let (filter, text) = match std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(&v).ok().map(|f| (f, v)))
    {
        Some(x) => x,
        None => {
            let wanted = with_defaults(level);
            match EnvFilter::try_new(&wanted) {
                Ok(f) => (f, wanted),
                Err(_) => (EnvFilter::new("info"), "info".to_string()),
            }
        }
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .event_format(JsonLines),
            )
            .try_init(),
    };
    if installed.is_ok() {
        let _ = CONTROL.set(Control {
            handle,
            level: Mutex::new(text),
        });
    }
}

/// The filter in force, if this process installed its logger with [`init`].
pub fn level() -> Option<String> {
    CONTROL
        .get()
        .map(|c| c.level.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// Replaces the filter (`RUST_LOG` syntax: `debug`, `info,demls_node=trace`); returns
/// the filter now in force. A filter that does not parse changes nothing.
pub fn set_level(level: &str) -> Result<String, String> {
    let control = CONTROL
        .get()
        .ok_or_else(|| "this process's logging cannot be changed at run time".to_string())?;
    let level = level.trim();
    if level.is_empty() || level.len() > 1024 {
        return Err("a log level is 1 to 1024 characters, e.g. \"debug\"".into());
    }
    let wanted = with_defaults(level);
    let filter =
        EnvFilter::try_new(&wanted).map_err(|e| format!("invalid log level {level:?}: {e}"))?;
    control
        .handle
        .reload(filter)
        .map_err(|e| format!("could not change the log level: {e}"))?;
    *control.level.lock().unwrap_or_else(|p| p.into_inner()) = wanted.clone();
    tracing::info!(level = %wanted, "log level changed");
    Ok(wanted)
}

/// Collects an event's fields as JSON values.
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}

/// The `--log-format json` line format.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(
                humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ),
        );
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        let message = fields.0.remove("message").unwrap_or(Value::Null);
        line.insert("message".into(), message);
        if !fields.0.is_empty() {
            line.insert("fields".into(), Value::Object(fields.0));
        }
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|s| Value::String(s.name().to_string()))
                .collect();
            if !spans.is_empty() {
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}
