//! Handles to everything one route records into, made when the route is compiled
//! (step 6 of a request's way): recording a request is a few atomic increments on
//! handles already in hand, with no label built, no map looked up and no lock taken.
//!
//! A series registers each of its Prometheus metrics the first time it is used, not
//! when it is made, so a backend that never sees traffic adds no empty series to
//! `/metrics`. That first time builds the labels and takes the recorder's lock, once
//! per metric and series; so does every request with a status code beyond the
//! [`CACHED_CODES`] distinct ones a series keeps at hand (backends answer with a few).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, Key, Label, Recorder};

use crate::divergences::{Divergence, ListingRate, LISTED_PER_SECOND, UNJUDGED_LOGGED_PER_SECOND};
use crate::float_counters::{add_float, FloatCounter};
use crate::stats::{ComparisonSlot, RequestSlot};
use crate::totals::{ComparisonCounts, ComparisonTotals, ExchangeCounts, ExchangeTotals};
use crate::window::{bump, Window};
use crate::{names, Role, ShadowOutcome, Telemetry};

/// Distinct status codes whose counters a series keeps at hand. A backend answers
/// with a few (200, 400, 404, 422, 429, 500, 503...); a code past these is counted
/// too, through a lookup in the recorder.
pub const CACHED_CODES: usize = 16;

/// Requests of one (route, backend, role): `veer_requests_total`,
/// `veer_request_duration_seconds`, the dashboard's figures and the access log.
pub struct ExchangeSeries {
    telemetry: Telemetry,
    route: String,
    backend: String,
    role: Role,
    codes: [OnceLock<(u16, Counter)>; CACHED_CODES],
    /// gRPC error statuses 1 to 16 at their index, `grpc_other` at 0.
    grpc_codes: [OnceLock<Counter>; 17],
    failed: OnceLock<Counter>,
    duration: OnceLock<Histogram>,
    pub(crate) window: Window<RequestSlot>,
    totals: ExchangeTotals,
    /// The second (since the recorder's epoch) of the last request, plus one; 0
    /// before the first.
    last_second: AtomicU64,
}

/// One finished upstream exchange, as its series records it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The backend's status code, or `None` when there was no response
    /// (unreachable, reset, timed out): the `code` label is then `error`.
    pub status: Option<u16>,
    /// When the exchange started; it ends now.
    pub started: Instant,
    /// The request id (client's or veer's), for the access log only.
    pub request_id: &'a str,
    /// The backend's `host:port`, for the access log only.
    pub upstream: &'a str,
    /// Response body size when known (content-length, or read whole).
    pub bytes: Option<u64>,
    /// For a gRPC call, its `grpc-status` (from the trailers, or the head of a
    /// trailers-only answer): a non-zero one is the `code` label as `grpc_<n>`.
    pub grpc_status: Option<u16>,
}

/// gRPC statuses that are the server's fault, as 5xx are for HTTP (UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS); the others
/// (CANCELLED, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED like 429, ...) are
/// the caller's, like 4xx.
pub const GRPC_SERVER_FAULTS: [u16; 6] = [2, 4, 12, 13, 14, 15];

impl Exchange<'_> {
    /// True when the backend failed: no answer, a 5xx, or a gRPC server fault.
    pub fn failed(&self) -> bool {
        self.status.is_none_or(|code| code >= 500)
            || self
                .grpc_status
                .is_some_and(|code| GRPC_SERVER_FAULTS.contains(&code))
    }
}

impl ExchangeSeries {
    pub(crate) fn new(
        telemetry: Telemetry,
        route: &str,
        backend: &str,
        role: Role,
    ) -> ExchangeSeries {
        ExchangeSeries {
            telemetry,
            route: route.to_owned(),
            backend: backend.to_owned(),
            role,
            codes: Default::default(),
            grpc_codes: Default::default(),
            failed: OnceLock::new(),
            duration: OnceLock::new(),
            window: Window::default(),
            totals: ExchangeTotals::default(),
            last_second: AtomicU64::new(0),
        }
    }

    /// True when a request of this series finished within the last `window`: what
    /// a reload that takes its traffic away warns about.
    pub fn served_within(&self, window: Duration) -> bool {
        match self.last_second.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now = self.telemetry.second(Instant::now());
                now.saturating_sub(last - 1) <= window.as_secs()
            }
        }
    }

    /// Route name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Everything this series recorded since it was made.
    pub fn totals(&self) -> ExchangeCounts {
        self.totals.read()
    }

    /// Backend name.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Live or shadow.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Counts one request of this series' role in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.telemetry.in_flight(self.role)
    }

    /// Records a finished exchange: the counter of its status code, its duration,
    /// its second on the dashboard, and one access-log line (target `veer::access`;
    /// `RUST_LOG=info,veer::access=off` turns it off).
    pub fn record(&self, exchange: &Exchange<'_>) {
        let now = Instant::now();
        let duration = now.saturating_duration_since(exchange.started);
        tracing::info!(
            target: "veer::access",
            request_id = exchange.request_id,
            route = self.route,
            backend = self.backend,
            role = self.role.label(),
            status = exchange.status,
            grpc_status = exchange.grpc_status,
            duration_ms = duration.as_secs_f64() * 1000.0,
            bytes = exchange.bytes,
            upstream = exchange.upstream,
            "access"
        );
        match exchange.grpc_status {
            Some(grpc) if grpc != 0 => self.count_grpc(grpc),
            _ => self.count_code(exchange.status),
        }
        self.duration
            .get_or_init(|| {
                self.telemetry
                    .histogram(names::REQUEST_DURATION_SECONDS, self.labels(&[]))
            })
            .record(duration.as_secs_f64());
        let failed = exchange.failed();
        self.totals.record(duration, failed);
        let second = self.telemetry.second(now);
        self.last_second.store(second + 1, Ordering::Relaxed);
        let slot = self.window.at(second);
        bump(&slot.count);
        if failed {
            bump(&slot.errors);
        }
        bump(
            &slot.latency[crate::stats::bucket_of(
                duration.as_secs_f64(),
                &crate::exporter::DURATION_BUCKETS,
            )],
        );
    }

    /// Counts a gRPC error status under `grpc_<status>`. gRPC defines 0 to 16;
    /// anything else is one label, `grpc_other`, not many.
    fn count_grpc(&self, grpc: u16) {
        let index = if (1..=16).contains(&grpc) {
            usize::from(grpc)
        } else {
            0
        };
        self.grpc_codes[index]
            .get_or_init(|| match index {
                0 => self.code_counter("grpc_other"),
                known => self.code_counter(&format!("grpc_{known}")),
            })
            .increment(1);
    }

    fn count_code(&self, status: Option<u16>) {
        let Some(code) = status else {
            let failed = self.failed.get_or_init(|| self.code_counter("error"));
            return failed.increment(1);
        };
        for slot in &self.codes {
            let (cached, counter) =
                slot.get_or_init(|| (code, self.code_counter(&code.to_string())));
            if *cached == code {
                return counter.increment(1);
            }
        }
        self.code_counter(&code.to_string()).increment(1);
    }

    fn code_counter(&self, code: &str) -> Counter {
        self.telemetry.counter(
            names::REQUESTS_TOTAL,
            self.labels(&[("code", code.to_owned())]),
        )
    }

    fn labels(&self, extra: &[(&'static str, String)]) -> Vec<Label> {
        let mut labels = vec![
            Label::new("route", self.route.clone()),
            Label::new("backend", self.backend.clone()),
            Label::new("role", self.role.label()),
        ];
        labels.extend(extra.iter().map(|(k, v)| Label::new(*k, v.clone())));
        labels
    }
}

/// Why a divergent pair was not written to the divergence log: the `reason` label of
/// `veer_divergence_log_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDrop {
    /// Over `divergence_log_per_sec`.
    RateLimited,
    /// The writer's queue is full.
    QueueFull,
    /// Writing failed (full disk, unwritable path).
    WriteError,
}

impl LogDrop {
    const ALL: [LogDrop; 3] = [
        LogDrop::RateLimited,
        LogDrop::QueueFull,
        LogDrop::WriteError,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            LogDrop::RateLimited => "rate_limited",
            LogDrop::QueueFull => "queue_full",
            LogDrop::WriteError => "write_error",
        }
    }
}

/// Comparisons of one (route, shadow backend): `veer_shadow_comparisons_total`,
/// `veer_shadow_abs_deviation`, `veer_shadow_label_agreements_total`, the signed
/// deviation (`veer_shadow_deviation_{up,down,numbers}_total`), the route's
/// `veer_divergence_log_dropped_total`, and the dashboard's figures and listed
/// divergent pairs. A noise series (a route's second answers from its live backend,
/// compared with the first) records the same under the `veer_noise_*` names instead,
/// except the signed deviation: a backend against itself moves no way.
pub struct ComparisonSeries {
    telemetry: Telemetry,
    kind: ComparisonKind,
    route: String,
    shadow_backend: String,
    outcomes: [OnceLock<Counter>; ShadowOutcome::ALL.len()],
    agreements: [OnceLock<Counter>; 2],
    deviation: OnceLock<Histogram>,
    shift: OnceLock<ShiftCounters>,
    log_drops: [OnceLock<Counter>; LogDrop::ALL.len()],
    pub(crate) window: Window<ComparisonSlot>,
    totals: ComparisonTotals,
    listing: ListingRate,
    unjudged: ListingRate,
}

/// The signed deviation's counters of one series: up, down, and numbers compared.
struct ShiftCounters {
    up: FloatCounter,
    down: FloatCounter,
    numbers: Counter,
}

/// What a [`ComparisonSeries`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComparisonKind {
    /// The shadow's answer with the live one.
    Shadow,
    /// A second answer of the live backend with the first: the model's own noise.
    Noise,
}

impl ComparisonKind {
    /// Its (comparisons, deviation, label agreements) metric names.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ComparisonKind::Shadow => (
                names::SHADOW_COMPARISONS_TOTAL,
                names::SHADOW_ABS_DEVIATION,
                names::SHADOW_LABEL_AGREEMENTS_TOTAL,
            ),
            ComparisonKind::Noise => (
                names::NOISE_COMPARISONS_TOTAL,
                names::NOISE_ABS_DEVIATION,
                names::NOISE_LABEL_AGREEMENTS_TOTAL,
            ),
        }
    }
}

/// How one shadow comparison ended, as its series records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    /// How it ended.
    pub outcome: ShadowOutcome,
    /// Largest absolute numeric difference, when numbers were compared.
    pub max_abs_deviation: Option<f64>,
    /// For classification outputs, whether the predicted class agreed.
    pub label_agreement: Option<bool>,
    /// `shadow - live` summed over the compared pairs of numbers where the shadow's
    /// is higher.
    pub shift_up: f64,
    /// `live - shadow` summed over the pairs where the shadow's is lower.
    pub shift_down: f64,
    /// Pairs of numbers compared.
    pub numbers: u64,
}

impl Judged {
    /// An outcome with nothing compared (dropped, skipped, timeout, an error).
    pub fn only(outcome: ShadowOutcome) -> Judged {
        Judged {
            outcome,
            max_abs_deviation: None,
            label_agreement: None,
            shift_up: 0.0,
            shift_down: 0.0,
            numbers: 0,
        }
    }
}

impl ComparisonSeries {
    pub(crate) fn new(
        telemetry: Telemetry,
        kind: ComparisonKind,
        route: &str,
        shadow_backend: &str,
    ) -> ComparisonSeries {
        ComparisonSeries {
            telemetry,
            kind,
            route: route.to_owned(),
            shadow_backend: shadow_backend.to_owned(),
            outcomes: Default::default(),
            agreements: Default::default(),
            deviation: OnceLock::new(),
            shift: OnceLock::new(),
            log_drops: Default::default(),
            window: Window::default(),
            totals: ComparisonTotals::default(),
            listing: ListingRate::default(),
            unjudged: ListingRate::default(),
        }
    }

    /// The pairs judged since the series was made.
    pub fn totals(&self) -> ComparisonCounts {
        self.totals.read()
    }

    /// Route name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The shadow backend's name.
    pub fn shadow_backend(&self) -> &str {
        &self.shadow_backend
    }

    /// Records a comparison, whatever became of it.
    pub fn record(&self, judged: &Judged) {
        let outcome = judged.outcome;
        let (comparisons, deviations, agreements) = self.kind.names();
        if matches!(outcome, ShadowOutcome::Match | ShadowOutcome::Diverged) {
            self.totals
                .record(outcome == ShadowOutcome::Diverged, judged.label_agreement);
        }
        self.outcomes[outcome.index()]
            .get_or_init(|| {
                self.telemetry
                    .counter(comparisons, self.labels(Some(("outcome", outcome.label()))))
            })
            .increment(1);
        let slot = self.window.at(self.telemetry.second(Instant::now()));
        bump(&slot.outcomes[outcome.index()]);
        if let Some(deviation) = judged.max_abs_deviation {
            self.deviation
                .get_or_init(|| self.telemetry.histogram(deviations, self.labels(None)))
                .record(deviation);
            bump(
                &slot.deviation
                    [crate::stats::bucket_of(deviation, &crate::exporter::DEVIATION_BUCKETS)],
            );
        }
        if let Some(agree) = judged.label_agreement {
            self.agreements[usize::from(agree)]
                .get_or_init(|| {
                    self.telemetry.counter(
                        agreements,
                        self.labels(Some(("agree", if agree { "true" } else { "false" }))),
                    )
                })
                .increment(1);
            bump(if agree { &slot.agree } else { &slot.disagree });
        }
        if judged.numbers > 0 && self.kind == ComparisonKind::Shadow {
            let counters = self.shift.get_or_init(|| {
                let labels = || {
                    vec![
                        ("route", self.route.clone()),
                        ("backend", self.shadow_backend.clone()),
                    ]
                };
                ShiftCounters {
                    up: self
                        .telemetry
                        .float_counter(names::SHADOW_DEVIATION_UP_TOTAL, labels()),
                    down: self
                        .telemetry
                        .float_counter(names::SHADOW_DEVIATION_DOWN_TOTAL, labels()),
                    numbers: self
                        .telemetry
                        .counter(names::SHADOW_DEVIATION_NUMBERS_TOTAL, self.labels(None)),
                }
            });
            counters.up.add(judged.shift_up);
            counters.down.add(judged.shift_down);
            counters.numbers.increment(judged.numbers);
            if judged.shift_up.is_finite() && judged.shift_down.is_finite() {
                add_float(&slot.shift_up, judged.shift_up);
                add_float(&slot.shift_down, judged.shift_down);
                slot.numbers.fetch_add(judged.numbers, Ordering::Relaxed);
            }
        }
    }

    /// Whether a divergent pair judged now may be listed on the dashboard: at most
    /// two of this series' pairs a second are (`LISTED_PER_SECOND`). Asked before
    /// the pair's record is made, so pairs past the rate cost nothing.
    pub fn lists_divergence_now(&self) -> bool {
        self.listing
            .admit(self.telemetry.second(Instant::now()), LISTED_PER_SECOND)
    }

    /// Whether a pair that could not be judged now may be written to the divergence
    /// log: at most [`UNJUDGED_LOGGED_PER_SECOND`] of this series' a second. Asked
    /// before its line is made.
    pub fn logs_unjudged_now(&self) -> bool {
        self.unjudged.admit(
            self.telemetry.second(Instant::now()),
            UNJUDGED_LOGGED_PER_SECOND,
        )
    }

    /// Keeps a divergent pair (admitted by [`Self::lists_divergence_now`]): listed
    /// on the dashboard, its record answered by `/divergences/{request_id}`.
    pub fn record_divergence(&self, divergence: Divergence) {
        self.telemetry.record_divergence(divergence);
    }

    /// Counts a divergence-log line that was not written.
    pub fn record_log_drop(&self, reason: LogDrop) {
        let index = LogDrop::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.log_drops[index]
            .get_or_init(|| {
                self.telemetry.counter(
                    names::DIVERGENCE_LOG_DROPPED_TOTAL,
                    vec![
                        Label::new("route", self.route.clone()),
                        Label::new("reason", reason.label()),
                    ],
                )
            })
            .increment(1);
    }

    fn labels(&self, extra: Option<(&'static str, &'static str)>) -> Vec<Label> {
        let mut labels = vec![
            Label::new("route", self.route.clone()),
            Label::new("backend", self.shadow_backend.clone()),
        ];
        labels.extend(extra.map(|(k, v)| Label::new(k, v)));
        labels
    }
}

/// Counts one upstream request in `veer_in_flight_requests{role}` until dropped.
#[derive(Debug)]
pub struct InFlight(metrics::Gauge);

impl InFlight {
    pub(crate) fn start(gauge: &metrics::Gauge) -> InFlight {
        gauge.increment(1.0);
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Registers a counter on `recorder` under `name` and `labels`.
pub(crate) fn register_counter(
    recorder: &impl Recorder,
    name: &'static str,
    labels: Vec<Label>,
) -> Counter {
    recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
}

/// Registers a histogram on `recorder` under `name` and `labels`.
pub(crate) fn register_histogram(
    recorder: &impl Recorder,
    name: &'static str,
    labels: Vec<Label>,
) -> Histogram {
    recorder.register_histogram(&Key::from_parts(name, labels), &METADATA)
}

/// Registers a gauge on `recorder` under `name` and `labels`.
pub(crate) fn register_gauge(
    recorder: &impl Recorder,
    name: &'static str,
    labels: Vec<Label>,
) -> metrics::Gauge {
    recorder.register_gauge(&Key::from_parts(name, labels), &METADATA)
}

static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new("veer", metrics::Level::INFO, Some(module_path!()));

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::{Exchange, Role, Telemetry};

    #[test]
    fn grpc_errors_are_counted_by_status_and_unknown_ones_together() {
        let telemetry = Telemetry::new().expect("recorder");
        let series = telemetry.exchange_series("r", "v1", Role::Live);
        for grpc in [14, 14, 5, 99, 0] {
            series.record(&Exchange {
                status: Some(200),
                started: Instant::now(),
                request_id: "id",
                upstream: "u",
                bytes: None,
                grpc_status: Some(grpc),
            });
        }
        let text = telemetry.render();
        for (code, n) in [("grpc_14", 2), ("grpc_5", 1), ("grpc_other", 1), ("200", 1)] {
            let line = format!(
                "veer_requests_total{{route=\"r\",backend=\"v1\",role=\"live\",code=\"{code}\"}} {n}\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}
