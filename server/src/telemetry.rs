//! Tracing set-up: human-readable or JSON lines on stdout, filtered by `LOG_LEVEL`.
//!
//! Nothing secret is ever put in a span or event: request spans carry the path without the
//! query string, and config values that are secrets print as `[redacted]`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), so
/// tests can call it freely.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
