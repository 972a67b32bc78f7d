//! Structured logs to stderr: text or JSON, at a chosen level.

use tracing_subscriber::EnvFilter;

/// Installs the global logger. `level` is debug, info, warn (or warning) or error; anything else
/// means info. `format` is `json` or text. `RUST_LOG`, when set, overrides the level.
pub fn init(level: &str, format: &str) {
    let level = match level.to_ascii_lowercase().as_str() {
        "debug" => "debug",
        "warn" | "warning" => "warn",
        "error" => "error",
        "trace" => "trace",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first logger.
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
