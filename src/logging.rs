//! Logging: `tracing` to stderr, text or JSON, level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The level when `RUST_LOG` is not set: commands print their own results,
/// so only warnings and errors are logged.
pub const DEFAULT_FILTER: &str = "warn";

/// Starts logging; `default_filter` applies when `RUST_LOG` is not set
/// (the service logs `info`, commands only warnings).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, not for journald or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // `try_init` fails only if a subscriber is already set (tests).
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
