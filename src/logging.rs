//! Logs go to stderr, as text for people or JSON lines for collectors.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Log lines waiting for the writer thread, at most; beyond them lines are dropped
/// rather than slowing requests. tracing-appender's default, 128,000, allocates
/// (and touches) its whole queue at start: 4 MiB, a third of veer's idle RSS.
/// 8,192 lines is a burst of 0.4 s of access log at 20,000 requests/s.
const BUFFERED_LINES: usize = 8_192;

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
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(std::io::stderr());
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
