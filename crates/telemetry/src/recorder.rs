//! [`Telemetry`]: the Prometheus recorder every handle is registered on, the clock
//! the dashboard's seconds are counted from, and the few process-level series
//! (in-flight requests, reloads), the float counters the recorder cannot hold
//! ([`crate::float_counters`]) and the kept divergent pairs ([`crate::divergences`]).
//!
//! It is a value, not a global: the binary makes one and hands it to the routes and
//! the admin server, and each test makes its own, so tests may share route names.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use metrics::{Counter, Gauge, Histogram, KeyName, Label, Recorder, Unit};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::divergences::{Divergence, Kept};
use crate::exporter::{DEVIATION_BUCKETS, DURATION_BUCKETS, RELOAD_BUCKETS};
use crate::float_counters::{FloatCounter, FloatCounters};
use crate::series::{register_counter, register_gauge, register_histogram};
use crate::{names, ComparisonKind, ComparisonSeries, ExchangeSeries, InFlight, Role};

/// veer's metrics and dashboard figures; cheap to clone (one shared inside).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    epoch: Instant,
    in_flight: [Gauge; 2],
    reloads_ok: Counter,
    reloads_error: Counter,
    reload_duration: Histogram,
    last_success: Gauge,
    /// Sums of real numbers, rendered after the recorder's families.
    float_counters: FloatCounters,
    /// Appended to by the compare pool, read by `/stats` and `/divergences/{id}`:
    /// never on a request's path.
    kept: Mutex<Kept>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// A fresh recorder with veer's histogram buckets and every metric described.
    pub fn new() -> Result<Telemetry, BuildError> {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&DURATION_BUCKETS)?
            .set_buckets_for_metric(
                Matcher::Full(names::SHADOW_ABS_DEVIATION.to_owned()),
                &DEVIATION_BUCKETS,
            )?
            .set_buckets_for_metric(
                Matcher::Full(names::NOISE_ABS_DEVIATION.to_owned()),
                &DEVIATION_BUCKETS,
            )?
            .set_buckets_for_metric(
                Matcher::Full(names::CONFIG_RELOAD_DURATION_SECONDS.to_owned()),
                &RELOAD_BUCKETS,
            )?
            .build_recorder();
        describe(&recorder);
        let in_flight = [Role::Live, Role::Shadow].map(|role| {
            let gauge = register_gauge(
                &recorder,
                names::IN_FLIGHT_REQUESTS,
                vec![Label::new("role", role.label())],
            );
            // Zero series up front, so dashboards and alerts see them before traffic.
            gauge.increment(0.0);
            gauge
        });
        let reloads = |result: &'static str| {
            let counter = register_counter(
                &recorder,
                names::CONFIG_RELOADS_TOTAL,
                vec![Label::new("result", result)],
            );
            counter.increment(0);
            counter
        };
        let (reloads_ok, reloads_error) = (reloads("ok"), reloads("error"));
        let reload_duration =
            register_histogram(&recorder, names::CONFIG_RELOAD_DURATION_SECONDS, vec![]);
        let last_success = register_gauge(&recorder, names::CONFIG_LAST_RELOAD_SUCCESS, vec![]);
        Ok(Telemetry {
            inner: Arc::new(Inner {
                handle: recorder.handle(),
                recorder,
                epoch: Instant::now(),
                in_flight,
                reloads_ok,
                reloads_error,
                reload_duration,
                last_success,
                float_counters: FloatCounters::default(),
                kept: Mutex::new(Kept::default()),
            }),
        })
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let mut text = self.inner.handle.render();
        text.push_str(&self.inner.float_counters.render(float_help));
        text
    }

    /// Histogram upkeep; run it every few seconds (rendering does it too).
    pub fn run_upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// The handles for requests of `route` to `backend` in `role`.
    pub fn exchange_series(&self, route: &str, backend: &str, role: Role) -> ExchangeSeries {
        ExchangeSeries::new(self.clone(), route, backend, role)
    }

    /// The handles for comparisons of `route` with its shadow `backend`.
    pub fn comparison_series(&self, route: &str, backend: &str) -> ComparisonSeries {
        ComparisonSeries::new(self.clone(), ComparisonKind::Shadow, route, backend)
    }

    /// The handles of one route's noise comparisons: second answers of its live
    /// `backend` compared with the first.
    pub fn noise_series(&self, route: &str, backend: &str) -> ComparisonSeries {
        ComparisonSeries::new(self.clone(), ComparisonKind::Noise, route, backend)
    }

    /// Counts one rollout decision in `veer_rollout_decisions_total`: a few a minute
    /// at most, so the handle is looked up each time.
    pub fn record_rollout_decision(&self, route: &str, action: &'static str, actor: &'static str) {
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("action", action),
            Label::new("actor", actor),
        ];
        self.counter(names::ROLLOUT_DECISIONS_TOTAL, labels)
            .increment(1);
    }

    /// Counts a decision notification that could not be delivered.
    pub fn record_notify_failure(&self, route: &str) {
        let labels = vec![Label::new("route", route.to_owned())];
        self.counter(names::ROLLOUT_NOTIFY_FAILURES_TOTAL, labels)
            .increment(1);
    }

    /// Counts one request of `role` in flight until the guard drops.
    pub fn in_flight(&self, role: Role) -> InFlight {
        InFlight::start(&self.inner.in_flight[role.index()])
    }

    /// Records a reload attempt and how long it took; a successful one also stamps
    /// the success time. The first load counts as a successful reload.
    pub fn record_reload(&self, ok: bool, took: Duration) {
        let inner = &self.inner;
        inner.reload_duration.record(took.as_secs_f64());
        if ok {
            inner.reloads_ok.increment(1);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            inner.last_success.set(now);
        } else {
            inner.reloads_error.increment(1);
        }
    }

    /// Counts a request refused because of the client (bad framing, stalled or
    /// oversized upload, no route...), by the `error` code it was answered with.
    /// Off the hot path: only refused requests register their handle.
    pub fn record_client_error(&self, reason: &'static str) {
        register_counter(
            &self.inner.recorder,
            names::CLIENT_ERRORS_TOTAL,
            vec![Label::new("reason", reason)],
        )
        .increment(1);
    }

    /// Counts a request or connection refused at a limit (overload), by reason.
    /// Off the hot path: only refusals register their handle.
    pub fn record_refusal(&self, reason: &'static str) {
        register_counter(
            &self.inner.recorder,
            names::REFUSED_TOTAL,
            vec![Label::new("reason", reason)],
        )
        .increment(1);
    }

    /// Keeps a divergent pair: listed on the dashboard while among the newest, its
    /// record answered by `/divergences/{request_id}` while kept.
    pub fn record_divergence(&self, divergence: Divergence) {
        self.kept().push(divergence);
    }

    /// What `f` makes of the kept divergent pairs, under their lock (so the page's
    /// listing copies no record).
    pub(crate) fn with_kept<R>(&self, f: impl FnOnce(&Kept) -> R) -> R {
        f(&self.kept())
    }

    /// The full record of the newest kept pair with `request_id`, as JSON text.
    pub fn divergence_record(&self, request_id: &str) -> Option<String> {
        self.kept().find(request_id).map(|pair| pair.record.clone())
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while pushing leaves the queue whole (it is only pushed to and
        // popped): carry on with it.
        self.inner
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whole seconds from this telemetry's start to `at`: the dashboard's clock.
    pub(crate) fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.epoch).as_secs()
    }

    pub(crate) fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        register_counter(&self.inner.recorder, name, labels)
    }

    pub(crate) fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        register_histogram(&self.inner.recorder, name, labels)
    }

    pub(crate) fn float_counter(
        &self,
        name: &'static str,
        labels: Vec<(&'static str, String)>,
    ) -> FloatCounter {
        self.inner.float_counters.counter(name, labels)
    }
}

/// `# HELP` text of the float counters.
fn float_help(name: &str) -> &'static str {
    match name {
        names::SHADOW_DEVIATION_UP_TOTAL => "Sum of (shadow - live) over the compared pairs of numbers where the shadow's number is higher. With the down and numbers counters: mean signed deviation = (rate(up) - rate(down)) / rate(numbers), positive when the shadow answers higher.",
        names::SHADOW_DEVIATION_DOWN_TOTAL => "Sum of (live - shadow) over the compared pairs of numbers where the shadow's number is lower.",
        _ => "A sum.",
    }
}

/// `# HELP` text and units for every metric the recorder holds.
fn describe(recorder: &PrometheusRecorder) {
    let counters: [(&'static str, &'static str); 12] = [
        (names::SHADOW_DEVIATION_NUMBERS_TOTAL, "Pairs of numbers compared between the live and the shadow answers (within the compared part, ignores left out): the denominator of the mean signed deviation."),
        (names::NOISE_COMPARISONS_TOTAL, "Noise comparisons (compare.noise_percent: a second answer of the live backend compared with the first), by route, live backend and outcome."),
        (names::NOISE_LABEL_AGREEMENTS_TOTAL, "Noise classification pairs by whether the live backend's two answers predicted the same class."),
        (names::ROLLOUT_DECISIONS_TOTAL, "Rollout decisions by route, action (start, advance, hold, pause, resume, rollback, promote, abort, retry) and actor (veer or operator)."),
        (names::ROLLOUT_NOTIFY_FAILURES_TOTAL, "Rollout decision notifications ([routes.rollout.hooks] notify) that could not be delivered."),
        (names::REFUSED_TOTAL, "Requests and connections refused at a limit, by reason: too_many_connections (the listener's max_connections), backend_saturated (a backend's max_connections), out_of_sockets (no file descriptor left)."),
        (names::CLIENT_ERRORS_TOTAL, "Requests refused because of the client, by reason (the error code answered): request_header_timeout, request_body_timeout, request_body_too_large, bad_request_body, no_route, duplicate_host, ...; never counted against a backend."),
        (names::REQUESTS_TOTAL, "Upstream exchanges finished, by route, backend, role (live/shadow) and status code (or error)."),
        (names::SHADOW_COMPARISONS_TOTAL, "Shadow comparisons by outcome: match, diverged, shadow_error, live_error, timeout, dropped, skipped."),
        (names::SHADOW_LABEL_AGREEMENTS_TOTAL, "Classification comparisons by whether the live and shadow predicted classes agree."),
        (names::DIVERGENCE_LOG_DROPPED_TOTAL, "Divergent pairs not written to the divergence log, by reason."),
        (names::CONFIG_RELOADS_TOTAL, "Config loads by result (the first load at start counts as ok; then SIGHUP and POST /-/reload)."),
    ];
    for (name, help) in counters {
        recorder.describe_counter(KeyName::from(name), Some(Unit::Count), help.into());
    }
    let histograms: [(&'static str, Option<Unit>, &'static str); 4] = [
        (names::NOISE_ABS_DEVIATION, None, "Largest absolute numeric difference between two answers of the live backend to one request (the noise floor)."),
        (names::REQUEST_DURATION_SECONDS, Some(Unit::Seconds), "Upstream exchange duration by route, backend and role: to the response head for live requests, to the end of the body for shadows."),
        (names::SHADOW_ABS_DEVIATION, None, "Largest absolute numeric difference between the live and the shadow prediction of one request."),
        (names::CONFIG_RELOAD_DURATION_SECONDS, Some(Unit::Seconds), "Time to read, validate, compile and swap in the routing file."),
    ];
    for (name, unit, help) in histograms {
        recorder.describe_histogram(KeyName::from(name), unit, help.into());
    }
    recorder.describe_gauge(
        KeyName::from(names::CONFIG_LAST_RELOAD_SUCCESS),
        Some(Unit::Seconds),
        "Unix time of the last successful config load.".into(),
    );
    recorder.describe_gauge(
        KeyName::from(names::IN_FLIGHT_REQUESTS),
        Some(Unit::Count),
        "Upstream requests in flight, by role.".into(),
    );
}
