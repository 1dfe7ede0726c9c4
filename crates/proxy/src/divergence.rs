//! The divergence log: one JSON line per sampled divergent pair, written by a thread
//! of its own so neither the live path nor the shadow tasks ever wait on a disk.
//!
//! Bounded three ways: a per-second rate (`divergence_log_per_sec`), a queue of
//! [`QUEUE`] lines (full: dropped), and a size (`divergence_log_max`: the file rotates
//! to `FILE.1`, keeping one previous file). A write error (full disk, unwritable
//! path) is logged once and counted; lines are dropped until writes succeed again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use veer_telemetry::record_divergence_log_drop;

/// Lines waiting for the writer: a burst beyond this is dropped, never queued.
const QUEUE: usize = 1024;

/// Each body in a line is cut to this many bytes: enough to see the prediction.
pub const BODY_EXCERPT: usize = 4 * 1024;

/// A divergence log file and its writer thread.
#[derive(Debug)]
pub struct DivergenceLog {
    path: PathBuf,
    per_sec: u32,
    window: Mutex<(Instant, u32)>,
    lines: SyncSender<(String, String)>,
}

impl DivergenceLog {
    /// Starts the writer for `config`'s file (created on the first line).
    pub fn open(config: &veer_config::DivergenceLog) -> DivergenceLog {
        let (lines, queue) = sync_channel(QUEUE);
        let writer = Writer {
            path: config.path.clone(),
            max_bytes: config.max_bytes,
            file: None,
            size: 0,
            failing: false,
        };
        let spawned = std::thread::Builder::new()
            .name("veer-divergence-log".to_owned())
            .spawn(move || writer.run(queue));
        if let Err(e) = spawned {
            tracing::warn!(path = %config.path.display(), error = %e, "cannot start the divergence log writer; divergent pairs will not be logged");
        }
        DivergenceLog {
            path: config.path.clone(),
            per_sec: config.per_sec,
            window: Mutex::new((Instant::now(), 0)),
            lines,
        }
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one line for `route`, unless this second's quota is spent or the queue
    /// is full (counted either way). Never blocks.
    pub fn submit(&self, route: &str, line: serde_json::Value) {
        if !self.take_quota() {
            record_divergence_log_drop(route, "rate_limited");
            return;
        }
        match self.lines.try_send((route.to_owned(), line.to_string())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => record_divergence_log_drop(route, "queue_full"),
            Err(TrySendError::Disconnected(_)) => record_divergence_log_drop(route, "write_error"),
        }
    }

    fn take_quota(&self) -> bool {
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        let (started, used) = &mut *window;
        if started.elapsed() >= Duration::from_secs(1) {
            (*started, *used) = (Instant::now(), 0);
        }
        if *used >= self.per_sec {
            return false;
        }
        *used += 1;
        true
    }
}

struct Writer {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
    failing: bool,
}

impl Writer {
    fn run(mut self, queue: Receiver<(String, String)>) {
        while let Ok((route, line)) = queue.recv() {
            match self.write(&line) {
                Ok(()) => {
                    if self.failing {
                        tracing::info!(path = %self.path.display(), "divergence log writable again");
                        self.failing = false;
                    }
                }
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(path = %self.path.display(), error = %e, "cannot write the divergence log; dropping lines until it works again");
                        self.failing = true;
                    }
                    self.file = None;
                    record_divergence_log_drop(&route, "write_error");
                }
            }
        }
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        let needed = line.len() as u64 + 1;
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + needed > self.max_bytes {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            self.file = None;
            std::fs::rename(&self.path, rotated)?;
            self.reopen()?;
        }
        let file = self.file.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
        file.write_all(format!("{line}\n").as_bytes())?;
        self.size += needed;
        Ok(())
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }
}

/// The first [`BODY_EXCERPT`] bytes of a body as text.
pub fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(BODY_EXCERPT)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > BODY_EXCERPT {
        text.push('…');
    }
    text
}
