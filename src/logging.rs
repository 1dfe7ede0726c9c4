//! Logs go to stderr, as text for people or JSON lines for collectors.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; `RUST_LOG` filters (default `info`, which
/// includes the access log, target `veer::access`). Lines are written by a thread of
/// their own, so a request never waits on stderr; keep the guard until exit so the
/// last lines are flushed.
pub fn init(format: Format) -> WorkerGuard {
    init_with_default(format, "info")
}

/// [`init`] with another default filter when `RUST_LOG` is unset.
pub fn init_with_default(format: Format, default: &str) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    // Colour only for a person at a terminal: stderr sent to a file or a collector
    // gets plain text, not escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().init(),
    }
    guard
}
