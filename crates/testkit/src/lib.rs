//! Test-only helpers for veer: real HTTP backends on `127.0.0.1:0`, a plain client,
//! and a launcher for the built `veer` binary. Nothing here is mocked: every byte
//! crosses a loopback socket.
//!
//! - [`backend`]: hyper servers that answer in a chosen way (fixed, echo, inspect,
//!   slow, failing, closing the connection, hanging).
//! - [`client`]: a pooled hyper client and one-call helpers for tests.
//! - [`tls`]: a throwaway certificate authority, clients that trust it, and the
//!   PEM files veer's `[tls]` and backend settings name.
//! - [`process`]: runs `veer run` on a config, waits on its readiness line (never a
//!   sleep), sends it signals and reads its log.

pub mod backend;
pub mod client;
pub mod process;
pub mod tls;

use std::path::Path;
use std::time::{Duration, Instant};

pub use backend::{Behavior, Received, TestBackend};
pub use client::{metric_value, Answer, TestClient};
pub use process::VeerProcess;
pub use tls::{TestPki, TlsClient};

/// The start of the line [`skipped`] prints: `.ci/run` counts these lines, so a
/// skipped test is reported as skipped, never as passed.
pub const SKIP_MARKER: &str = "SKIPPED: ";

/// Says why a test did not run, on the real stderr: the test harness captures
/// `println!` and `eprintln!` of a passing test, and a skip must not pass silently.
/// The test then returns; cargo counts it as passed, and `.ci/run` moves it to the
/// skipped count.
pub fn skipped(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{SKIP_MARKER}{reason}");
}

/// Waits (up to 20 s) until the JSON-lines file at `path` holds at least `n` parsable
/// lines, and returns them (possibly fewer, when the time ran out).
pub async fn wait_for_json_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
