//! The divergence log: one JSON line per sampled divergent pair, written by a thread
//! of its own so neither the live path nor the compare pool ever waits on a disk.
//! A pair both sides answered that could not be judged (a `select` that finds
//! nothing, an answer that is not JSON) gets a line too, with its outcome
//! (`live_error`, `shadow_error`) and the reason, so a route whose every pair is an
//! error can be diagnosed from the file.
//!
//! The same line is a pair's record on the dashboard: a few pairs a second per route
//! are kept in memory with it ([`veer_telemetry::Divergence`]), so
//! `GET /divergences/{request_id}` answers it whether or not the route writes a log.
//!
//! Bounded every way a user can be hurt by it:
//! - a line is at most [`MAX_LINE`] bytes: bodies, difference values and pointers are
//!   cut (and the cut is marked) before it is written;
//! - a per-second rate (`divergence_log_per_sec`), sampled uniformly over each
//!   second: the writer keeps a reservoir of at most that many of the second's
//!   lines and writes it when the second ends (so a line is written up to a second
//!   late, and the first pairs of a second are no likelier than the last); pairs not
//!   judged come at most one a second per route
//!   (`UNJUDGED_LOGGED_PER_SECOND` in veer-telemetry), so they never crowd out the
//!   divergences;
//! - the writer's queue holds at most [`QUEUE_BYTES`] (full: the line is dropped);
//! - a size (`divergence_log_max`): the file rotates to `FILE.1`, keeping one previous
//!   file.
//!
//! Every line not written is counted in `veer_divergence_log_dropped_total` with its
//! reason. A write error (full disk, unwritable path) is logged once; lines are
//! dropped until writes succeed again.
//!
//! A file has one writer ([`LogWriter`], a registry entry keyed by its path, so two
//! writers never rotate one file under each other); its size limit follows the
//! latest config. The rate ([`LogRate`]) is keyed by path and `per_sec`, so a reload
//! that changes the rate gets a new one; the writer samples by the rate each line
//! came with.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use veer_compare::{Comparison, Difference, Outcome};
use veer_telemetry::{ComparisonSeries, LogDrop, ShownDifference};

/// Longest line written: a few divergent pairs a second stay cheap to write, ship and
/// read, whatever the model answered.
pub const MAX_LINE: usize = 16 * 1024;

/// Bytes waiting for the writer, at most: 64 lines of the longest kind, several
/// seconds of the default rate. A stuck disk costs this much memory, no more.
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// What a line keeps of each part, before any further cut for [`MAX_LINE`]: enough of
/// a body to see the prediction, of a value to see its start, of a pointer to find it.
const BODY_EXCERPT: usize = 4 * 1024;
const VALUE_EXCERPT: usize = 512;
const POINTER_EXCERPT: usize = 256;
const ID_EXCERPT: usize = 256;

/// What the dashboard's list shows of a differing value: a number, a label or the
/// start of a row fits in a table cell; the whole value is one click away, in the
/// pair's record.
const SHOWN_VALUE: usize = 80;

/// A divergence log as a route's shadow uses it: the file's writer and the rate.
#[derive(Debug, Clone)]
pub(crate) struct DivergenceLog {
    pub(crate) writer: Arc<LogWriter>,
    pub(crate) rate: Arc<LogRate>,
}

impl DivergenceLog {
    /// Queues `line` (at most [`MAX_LINE`] bytes, see [`line`]) for this second's
    /// sample, unless the queue is full; a drop (here, or a line the sample leaves
    /// out) is counted in `series`. Never blocks.
    pub(crate) fn submit(&self, line: String, series: &Arc<ComparisonSeries>) {
        self.writer.submit(line, self.rate.per_sec, series);
    }
}

/// One divergence log file and its writer thread.
#[derive(Debug)]
pub(crate) struct LogWriter {
    max_bytes: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    lines: Sender<Queued>,
}

/// A line on its way to the writer, with the series its drops are counted in and
/// the rate its route samples at.
struct Queued {
    line: String,
    series: Arc<ComparisonSeries>,
    per_sec: u32,
}

impl LogWriter {
    /// Starts the writer of the file at `path` (created on the first line), which
    /// rotates past `max_bytes`.
    pub(crate) fn open(path: &Path, max_bytes: u64) -> LogWriter {
        let (lines, queue) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let max_bytes = Arc::new(AtomicU64::new(max_bytes));
        let writer = Writer {
            path: path.to_owned(),
            max_bytes: max_bytes.clone(),
            file: None,
            size: 0,
            failing: false,
            queued: queued.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("veer-divergence-log".to_owned())
            .spawn(move || writer.run(queue));
        if let Err(e) = spawned {
            tracing::warn!(path = %path.display(), error = %e, "cannot start the divergence log writer; divergent pairs will not be logged");
        }
        LogWriter {
            max_bytes,
            queued,
            lines,
        }
    }

    /// The size past which the file rotates, from now on.
    pub(crate) fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    /// Queues `line` unless the queue is full (counted in `series`). Lines the writer
    /// holds in its sample count against the queue until written.
    fn submit(&self, line: String, per_sec: u32, series: &Arc<ComparisonSeries>) {
        // What the line holds on the heap, not only its length.
        let size = line.capacity();
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + size <= QUEUE_BYTES).then_some(queued + size)
            });
        if admitted.is_err() {
            return series.record_log_drop(LogDrop::QueueFull);
        }
        let queued = Queued {
            line,
            series: series.clone(),
            per_sec,
        };
        if let Err(unsent) = self.lines.send(queued) {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            unsent.0.series.record_log_drop(LogDrop::WriteError);
        }
    }
}

/// A route's `divergence_log_per_sec`: the most lines of one second's divergent
/// pairs the log keeps, sampled uniformly ([`Sample`]).
#[derive(Debug)]
pub(crate) struct LogRate {
    per_sec: u32,
}

impl LogRate {
    pub(crate) fn new(per_sec: u32) -> LogRate {
        LogRate { per_sec }
    }
}

/// One second's divergent pairs, sampled uniformly (reservoir sampling, Vitter's
/// algorithm R): the k-th line offered replaces a kept one with chance `per_sec / k`,
/// so every line of the second is kept with the same chance, whenever it came.
#[derive(Default)]
struct Sample {
    /// The second (since the writer started) the sample is of.
    second: u64,
    /// Lines offered this second.
    seen: u64,
    /// Lines kept, with the order they came in.
    kept: Vec<(u64, Queued)>,
}

impl Sample {
    /// Offers `line`; the one it displaces (or itself), if any, is returned to be
    /// counted as left out.
    fn offer(&mut self, line: Queued, draw: impl FnOnce(u64) -> u64) -> Option<Queued> {
        let order = self.seen;
        self.seen += 1;
        let room = line.per_sec as usize;
        if self.kept.len() < room {
            self.kept.push((order, line));
            return None;
        }
        let slot = draw(self.seen);
        match self.kept.get_mut(slot as usize) {
            Some(kept) => Some(std::mem::replace(kept, (order, line)).1),
            None => Some(line),
        }
    }

    /// The kept lines in the order they came, leaving the sample empty for `second`.
    fn take(&mut self, second: u64) -> Vec<Queued> {
        let mut kept = std::mem::take(&mut self.kept);
        kept.sort_unstable_by_key(|(order, _)| *order);
        self.second = second;
        self.seen = 0;
        kept.into_iter().map(|(_, line)| line).collect()
    }
}

struct Writer {
    path: PathBuf,
    max_bytes: Arc<AtomicU64>,
    file: Option<File>,
    size: u64,
    failing: bool,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    /// Samples each second's lines and writes the sample when the second ends, until
    /// every sender is gone (the log was released).
    fn run(mut self, queue: Receiver<Queued>) {
        let started = Instant::now();
        let mut sample = Sample::default();
        loop {
            let elapsed = started.elapsed();
            let second_ends = Duration::from_secs(sample.second + 1).saturating_sub(elapsed);
            // With nothing kept there is nothing to write at the second's end.
            let wait = if sample.kept.is_empty() {
                Duration::from_secs(3600)
            } else {
                second_ends
            };
            let received = queue.recv_timeout(wait);
            let now = started.elapsed().as_secs();
            if now != sample.second {
                for line in sample.take(now) {
                    self.write_queued(line);
                }
            }
            match received {
                Ok(line) => {
                    let left_out = sample.offer(line, |seen| rand::random_range(0..seen));
                    if let Some(left_out) = left_out {
                        self.queued
                            .fetch_sub(left_out.line.capacity(), Ordering::AcqRel);
                        left_out.series.record_log_drop(LogDrop::RateLimited);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    for line in sample.take(now) {
                        self.write_queued(line);
                    }
                    return;
                }
            }
        }
    }

    /// Writes one line taken from the queue, counting a failure against its series.
    fn write_queued(&mut self, Queued { line, series, .. }: Queued) {
        let written = self.write(&line);
        self.queued.fetch_sub(line.capacity(), Ordering::AcqRel);
        match written {
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
                series.record_log_drop(LogDrop::WriteError);
            }
        }
    }

    fn write(&mut self, line: &str) -> std::io::Result<()> {
        let needed = line.len() as u64 + 1;
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + needed > self.max_bytes.load(Ordering::Relaxed) {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            self.file = None;
            std::fs::rename(&self.path, rotated)?;
            self.reopen()?;
        }
        let file = self.file.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        self.size += needed;
        Ok(())
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        // Readable by veer alone (the lines hold model inputs and answers), and never
        // through a symlink planted where the log should be.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }
}

/// Who a logged pair (divergent, or not judged) belongs to and what each side
/// answered, for its line.
pub(crate) struct LoggedPair<'a> {
    pub(crate) request_id: &'a [u8],
    pub(crate) route: &'a str,
    pub(crate) live_backend: &'a str,
    pub(crate) shadow_backend: &'a str,
    /// The request body both sides were sent: which input diverged. `None`: held
    /// back from this copy of the record ([`REQUEST_WITHHELD`] says why).
    pub(crate) request: Option<&'a [u8]>,
    /// Status and body, when the live side answered.
    pub(crate) live: Option<(u16, &'a [u8])>,
    /// Status and body, when the shadow side answered.
    pub(crate) shadow: Option<(u16, &'a [u8])>,
}

/// Why a record the admin listener keeps has no request body: model inputs are
/// only kept in memory where a token guards who may read them.
pub(crate) const REQUEST_WITHHELD: &str =
    "model inputs are kept in memory only behind an admin token: set [admin] token_file (the divergence log, if any, has them)";

/// The log line of a pair: time, request id, route, both backends and statuses, the
/// outcome (and, for a pair that could not be judged, the reason), the largest
/// deviation, label agreement, the first differences (pointer and both values), the
/// request body and both answers' bodies, each part cut so the line stays within
/// [`MAX_LINE`] bytes. A cut value becomes the start of its JSON text ending in `…`
/// with `"cut": true` beside it; a cut body ends in `…`, and `*_body_bytes` gives
/// its whole size.
pub(crate) fn line(pair: &LoggedPair<'_>, comparison: &Comparison, at: SystemTime) -> String {
    let differences: Vec<Prepared<'_>> = comparison
        .differences
        .iter()
        .map(|d| Prepared {
            pointer: &d.pointer,
            live: d.live.as_ref().map(|v| (v, v.to_string())),
            shadow: d.shadow.as_ref().map(|v| (v, v.to_string())),
        })
        .collect();
    let mut limits = Limits {
        body: BODY_EXCERPT,
        value: VALUE_EXCERPT,
        pointer: POINTER_EXCERPT,
    };
    // Escaping can grow a cut part (quotes, control bytes): halve the parts until
    // the line fits. With every part cut to nothing, what is left (names of at most
    // 64 bytes, a request id of at most 256 before escaping, eight "…" pointers) is
    // far below the limit.
    loop {
        let text = render(pair, comparison, &differences, at, &limits).to_string();
        if text.len() <= MAX_LINE || limits.body + limits.value + limits.pointer == 0 {
            debug_assert!(text.len() <= MAX_LINE, "{} bytes", text.len());
            return text;
        }
        limits = Limits {
            body: limits.body / 2,
            value: limits.value / 2,
            pointer: limits.pointer / 2,
        };
    }
}

/// The differences as the dashboard lists them: each pointer (cut like the log's)
/// with both values' JSON text cut to [`SHOWN_VALUE`] bytes.
pub(crate) fn shown(differences: &[Difference]) -> Vec<ShownDifference> {
    let text = |value: &Option<Value>| {
        value
            .as_ref()
            .map(|v| excerpt(v.to_string().as_bytes(), SHOWN_VALUE))
    };
    differences
        .iter()
        .map(|d| ShownDifference {
            pointer: excerpt(d.pointer.as_bytes(), POINTER_EXCERPT),
            live: text(&d.live),
            shadow: text(&d.shadow),
        })
        .collect()
}

/// A difference with its values' JSON text, rendered once however often the line is.
struct Prepared<'c> {
    pointer: &'c str,
    live: Option<(&'c Value, String)>,
    shadow: Option<(&'c Value, String)>,
}

struct Limits {
    body: usize,
    value: usize,
    pointer: usize,
}

fn render(
    pair: &LoggedPair<'_>,
    comparison: &Comparison,
    differences: &[Prepared<'_>],
    at: SystemTime,
    limits: &Limits,
) -> Value {
    let differences: Vec<Value> = differences
        .iter()
        .map(|d| {
            let (live, live_cut) = value_excerpt(d.live.as_ref(), limits.value);
            let (shadow, shadow_cut) = value_excerpt(d.shadow.as_ref(), limits.value);
            let mut entry = json!({
                "pointer": excerpt(d.pointer.as_bytes(), limits.pointer),
                "live": live,
                "shadow": shadow,
            });
            if live_cut || shadow_cut {
                entry["cut"] = true.into();
            }
            entry
        })
        .collect();
    let body = |side: Option<(u16, &[u8])>| side.map(|(_, b)| excerpt(b, limits.body));
    let mut line = json!({
        "time": humantime::format_rfc3339_millis(at).to_string(),
        "request_id": excerpt(pair.request_id, ID_EXCERPT),
        "route": pair.route,
        "live_backend": pair.live_backend,
        "shadow_backend": pair.shadow_backend,
        "live_status": pair.live.map(|(s, _)| s),
        "shadow_status": pair.shadow.map(|(s, _)| s),
        "outcome": comparison.outcome.label(),
        "max_abs_deviation": comparison.max_abs_deviation,
        "label_agreement": comparison.label_agreement,
        "differences": differences,
        "request_body": pair.request.map(|r| excerpt(r, limits.body)),
        "request_body_bytes": pair.request.map(<[u8]>::len),
        "live_body": body(pair.live).unwrap_or_default(),
        "live_body_bytes": pair.live.map(|(_, b)| b.len()),
        "shadow_body": body(pair.shadow).unwrap_or_default(),
        "shadow_body_bytes": pair.shadow.map(|(_, b)| b.len()),
    });
    if pair.request.is_none() {
        line["request_body_withheld"] = REQUEST_WITHHELD.into();
    }
    if let Outcome::LiveError(reason) | Outcome::ShadowError(reason) = &comparison.outcome {
        line["reason"] = excerpt(reason.as_bytes(), limits.value).into();
    }
    line
}

/// A differing value as the line shows it: whole when its JSON text fits `limit`,
/// else the start of that text as a string ending in `…`. Whether it was cut.
fn value_excerpt(value: Option<&(&Value, String)>, limit: usize) -> (Value, bool) {
    match value {
        None => (Value::Null, false),
        Some((value, text)) if text.len() <= limit => ((*value).clone(), false),
        Some((_, text)) => (Value::String(excerpt(text.as_bytes(), limit)), true),
    }
}

/// The first `limit` bytes of `bytes` as text (cut on a character boundary when the
/// bytes are UTF-8), ending in `…` when anything was left out.
pub(crate) fn excerpt(bytes: &[u8], limit: usize) -> String {
    if bytes.len() <= limit {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut end = limit;
    // Back off to the start of a UTF-8 character (continuation bytes are 0b10xxxxxx).
    while end > 0 && bytes.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    let mut text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn comparison(differences: Vec<Difference>) -> Comparison {
        Comparison {
            outcome: Outcome::Diverged,
            max_abs_deviation: Some(0.5),
            shift: veer_compare::Shift::default(),
            differences,
            label_agreement: Some(false),
        }
    }

    fn pair<'a>(live: &'a [u8], shadow: &'a [u8]) -> LoggedPair<'a> {
        LoggedPair {
            request_id: b"r-1",
            route: "churn",
            live_backend: "v1",
            shadow_backend: "v2",
            request: Some(br#"{"instances": [[12, 70.5, 846.0, 5]]}"#),
            live: Some((200, live)),
            shadow: Some((200, shadow)),
        }
    }

    fn writer(path: &Path) -> Writer {
        Writer {
            path: path.to_owned(),
            max_bytes: Arc::new(AtomicU64::new(1024)),
            file: None,
            size: 0,
            failing: false,
            queued: Arc::default(),
        }
    }

    #[test]
    fn the_log_is_private_and_never_written_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("veer-log-perm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("d.jsonl");
        writer(&log).reopen().expect("a plain file opens");
        let mode = std::fs::metadata(&log)
            .expect("created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");

        let target = dir.join("elsewhere");
        std::fs::write(&target, "").expect("target");
        let planted = dir.join("planted.jsonl");
        std::os::unix::fs::symlink(&target, &planted).expect("symlink");
        assert!(
            writer(&planted).reopen().is_err(),
            "a symlink is not followed"
        );
        assert_eq!(std::fs::read(&target).expect("target").len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_megabyte_differing_value_gives_a_line_of_at_most_16_kib() {
        let big = "x".repeat(1024 * 1024);
        let (live, shadow) = (
            format!(r#"{{"predictions":"{big}"}}"#),
            format!(r#"{{"predictions":"{big}y"}}"#),
        );
        let c = comparison(vec![Difference {
            pointer: "/predictions".into(),
            live: Some(Value::String(big.clone())),
            shadow: Some(Value::String(format!("{big}y"))),
        }]);
        let text = line(
            &pair(live.as_bytes(), shadow.as_bytes()),
            &c,
            SystemTime::now(),
        );
        assert!(text.len() <= MAX_LINE, "{} bytes", text.len());
        let v: Value = serde_json::from_str(&text).expect("a JSON line");
        assert_eq!(v["differences"][0]["cut"], true);
        assert!(v["differences"][0]["live"]
            .as_str()
            .is_some_and(|s| s.ends_with('…')));
        assert!(v["live_body"].as_str().is_some_and(|s| s.ends_with('…')));
        assert_eq!(v["live_body_bytes"], live.len());
        assert_eq!(v["shadow_status"], 200);
    }

    #[test]
    fn escaping_cannot_push_a_line_past_16_kib() {
        // Control bytes escape to six characters each: the cut parts shrink until
        // the line fits.
        let nasty = vec![1u8; 64 * 1024];
        let pointer = "/\u{1}".repeat(10_000);
        let differences = (0..8)
            .map(|_| Difference {
                pointer: pointer.clone(),
                live: Some(Value::String("\u{1}".repeat(10_000))),
                shadow: None,
            })
            .collect();
        let text = line(
            &pair(&nasty, &nasty),
            &comparison(differences),
            SystemTime::now(),
        );
        assert!(text.len() <= MAX_LINE, "{} bytes", text.len());
        assert!(serde_json::from_str::<Value>(&text).is_ok());
    }

    #[test]
    fn small_pairs_are_written_whole() {
        let c = comparison(vec![Difference {
            pointer: "/predictions/0".into(),
            live: Some(json!(0.1)),
            shadow: Some(json!(0.7)),
        }]);
        let v: Value = serde_json::from_str(&line(
            &pair(b"{\"predictions\":[0.1]}", b"{\"predictions\":[0.7]}"),
            &c,
            SystemTime::now(),
        ))
        .expect("json");
        assert_eq!(
            v["differences"][0],
            json!({"pointer": "/predictions/0", "live": 0.1, "shadow": 0.7})
        );
        assert_eq!(v["live_body"], "{\"predictions\":[0.1]}");
        assert_eq!(
            v["request_body"], "{\"instances\": [[12, 70.5, 846.0, 5]]}",
            "the input that diverged"
        );
        assert_eq!(v["request_body_bytes"], 37);
    }

    #[test]
    fn the_page_shows_values_short_and_absent_ones_as_none() {
        let long = "x".repeat(1000);
        let shown = shown(&[
            Difference {
                pointer: "/predictions/0".into(),
                live: Some(json!(0.1)),
                shadow: Some(json!(long)),
            },
            Difference {
                pointer: "/label".into(),
                live: None,
                shadow: Some(json!("cat")),
            },
        ]);
        assert_eq!(shown[0].live.as_deref(), Some("0.1"));
        let cut = shown[0].shadow.as_deref().expect("a value");
        assert!(cut.starts_with("\"xxx") && cut.ends_with('…'), "{cut}");
        assert_eq!(cut.len(), SHOWN_VALUE + '…'.len_utf8());
        assert_eq!(
            (shown[1].live.as_deref(), shown[1].shadow.as_deref()),
            (None, Some("\"cat\""))
        );
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        assert_eq!(excerpt("héllo".as_bytes(), 2), "h…");
        assert_eq!(excerpt(b"abc", 3), "abc");
        assert_eq!(excerpt(b"abcd", 0), "…");
    }

    #[test]
    fn the_worst_line_a_config_allows_stays_within_16_kib() {
        // Longest names (64 bytes), an id of quotes, eight long differences, bodies
        // of control bytes: every part escapes to several times its size.
        let name = "n".repeat(64);
        let id = "\"".repeat(8 * 1024);
        let nasty = vec![0u8; 1 << 20];
        let differences = (0..8)
            .map(|i| Difference {
                pointer: format!("/{}{i}", "\"".repeat(4096)),
                live: Some(Value::String("\u{0}".repeat(4096))),
                shadow: Some(json!({ "k": "\"".repeat(4096) })),
            })
            .collect();
        let pair = LoggedPair {
            request_id: id.as_bytes(),
            route: &name,
            live_backend: &name,
            shadow_backend: &name,
            request: Some(&nasty),
            live: Some((200, &nasty)),
            shadow: Some((599, &nasty)),
        };
        let text = line(&pair, &comparison(differences), SystemTime::now());
        assert!(text.len() <= MAX_LINE, "{} bytes", text.len());
        assert!(serde_json::from_str::<Value>(&text).is_ok());
    }

    #[test]
    fn a_writer_that_falls_behind_holds_at_most_queue_bytes() {
        let telemetry = veer_telemetry::Telemetry::new().expect("telemetry");
        let series = Arc::new(telemetry.comparison_series("r", "v2"));
        // No thread drains this queue: a stuck disk.
        let (lines, _stuck) = channel();
        let log = LogWriter {
            max_bytes: Arc::default(),
            queued: Arc::default(),
            lines,
        };
        for _ in 0..100 {
            log.submit("x".repeat(MAX_LINE), 10, &series);
        }
        let held = log.queued.load(Ordering::Acquire);
        assert_eq!(held, QUEUE_BYTES, "64 lines of 16 KiB fill the queue");
        let dropped = veer_testkit::metric_value(
            &telemetry.render(),
            "veer_divergence_log_dropped_total",
            &[("reason", "queue_full")],
        );
        assert_eq!(dropped, 36.0, "the other 36 are dropped and counted");
    }

    fn queued(n: usize, per_sec: u32, series: &Arc<ComparisonSeries>) -> Queued {
        Queued {
            line: n.to_string(),
            series: series.clone(),
            per_sec,
        }
    }

    #[test]
    fn a_second_keeps_per_sec_lines_in_the_order_they_came() {
        let telemetry = veer_telemetry::Telemetry::new().expect("telemetry");
        let series = Arc::new(telemetry.comparison_series("r", "v2"));
        let mut sample = Sample::default();
        let mut left_out = 0;
        for n in 0..100 {
            left_out += usize::from(
                sample
                    .offer(queued(n, 3, &series), |seen| seen - 1)
                    .is_some(),
            );
        }
        assert_eq!(left_out, 97);
        // A draw past the kept slots never displaces one: the first three stay.
        let kept: Vec<String> = sample.take(1).into_iter().map(|q| q.line).collect();
        assert_eq!(kept, ["0", "1", "2"]);
        assert_eq!((sample.second, sample.seen), (1, 0));
    }

    #[test]
    fn every_line_of_a_second_is_kept_with_the_same_chance() {
        let telemetry = veer_telemetry::Telemetry::new().expect("telemetry");
        let series = Arc::new(telemetry.comparison_series("r", "v2"));
        // 20 lines a second, 2 kept: each is kept in about a tenth of 4,000 seconds,
        // the last ones as often as the first (a first-N rate kept only 0 and 1).
        let mut kept = [0_u32; 20];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..4_000 {
            let mut sample = Sample::default();
            for n in 0..20 {
                sample.offer(queued(n, 2, &series), |seen| rng.random_range(0..seen));
            }
            for line in sample.take(1) {
                kept[line.line.parse::<usize>().expect("a number")] += 1;
            }
        }
        for (n, times) in kept.iter().enumerate() {
            assert!(
                (300..=500).contains(times),
                "line {n} kept {times} times of 4,000: {kept:?}"
            );
        }
    }
}
