//! veer's observability: every metric name and label of the contract (shared/DESIGN.md,
//! "Metrics contract") lives here; requests and shadow comparisons are recorded
//! through the functions below, once each, when they finish (step 6 of a request's
//! way); [`exporter`] renders them for Prometheus and [`admin`] serves them, with
//! health, config and reload, on the admin listener.
//!
//! Recording goes through the `metrics` facade: with no recorder installed it costs
//! next to nothing; the binary installs the Prometheus recorder. Label values come
//! from config names only (route, backend) and fixed vocabularies (role, outcome,
//! status code), never from request data, so series stay bounded.

pub mod admin;
pub mod exporter;
pub mod stats;

use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

/// Metric names.
pub mod names {
    /// Requests finished, per route, backend, role and status code.
    pub const REQUESTS_TOTAL: &str = "veer_requests_total";
    /// Upstream time: to the response head (live), to the end of the body (shadow).
    pub const REQUEST_DURATION_SECONDS: &str = "veer_request_duration_seconds";
    /// Shadow comparisons by outcome.
    pub const SHADOW_COMPARISONS_TOTAL: &str = "veer_shadow_comparisons_total";
    /// Largest absolute numeric difference per compared pair.
    pub const SHADOW_ABS_DEVIATION: &str = "veer_shadow_abs_deviation";
    /// Classification pairs by whether the predicted class agreed.
    pub const SHADOW_LABEL_AGREEMENTS_TOTAL: &str = "veer_shadow_label_agreements_total";
    /// Divergence-log lines not written, by reason.
    pub const DIVERGENCE_LOG_DROPPED_TOTAL: &str = "veer_divergence_log_dropped_total";
    /// Reloads by result.
    pub const CONFIG_RELOADS_TOTAL: &str = "veer_config_reloads_total";
    /// The serving config's generation.
    pub const CONFIG_GENERATION: &str = "veer_config_generation";
    /// When the config last loaded successfully.
    pub const CONFIG_LAST_RELOAD_SUCCESS: &str =
        "veer_config_last_reload_success_timestamp_seconds";
    /// The live split as configured now.
    pub const ROUTE_WEIGHT: &str = "veer_route_weight";
    /// Requests in flight by role.
    pub const IN_FLIGHT_REQUESTS: &str = "veer_in_flight_requests";
    /// Always 1, labelled with the version.
    pub const BUILD_INFO: &str = "veer_build_info";
}

/// Counts a request in `veer_in_flight_requests{role}` until dropped.
#[derive(Debug)]
pub struct InFlight(Role);

impl InFlight {
    /// Starts counting one request of `role`.
    pub fn start(role: Role) -> InFlight {
        gauge!(names::IN_FLIGHT_REQUESTS, "role" => role.label()).increment(1.0);
        InFlight(role)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(names::IN_FLIGHT_REQUESTS, "role" => self.0.label()).decrement(1.0);
    }
}

/// Records a reload attempt; a successful one also stamps the success time.
pub fn record_reload(ok: bool) {
    counter!(names::CONFIG_RELOADS_TOTAL, "result" => if ok { "ok" } else { "error" }).increment(1);
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        gauge!(names::CONFIG_LAST_RELOAD_SUCCESS).set(now);
    }
}

/// Which side of a shadowed pair a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its answer went to the client.
    Live,
    /// A mirror; its answer was only compared.
    Shadow,
}

impl Role {
    /// The `role` label.
    pub fn label(self) -> &'static str {
        match self {
            Role::Live => "live",
            Role::Shadow => "shadow",
        }
    }
}

/// How one shadow comparison ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// Same prediction within tolerance.
    Match,
    /// Different prediction.
    Diverged,
    /// The shadow failed, or its answer could not be judged.
    ShadowError,
    /// The live answer failed or could not be judged.
    LiveError,
    /// The shadow did not answer within its backend's timeout.
    Timeout,
    /// Not mirrored: the shadow backend had `max_in_flight` mirrors already.
    Dropped,
    /// Not mirrored or not compared: a body was over its size limit.
    Skipped,
}

impl ShadowOutcome {
    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            ShadowOutcome::Match => "match",
            ShadowOutcome::Diverged => "diverged",
            ShadowOutcome::ShadowError => "shadow_error",
            ShadowOutcome::LiveError => "live_error",
            ShadowOutcome::Timeout => "timeout",
            ShadowOutcome::Dropped => "dropped",
            ShadowOutcome::Skipped => "skipped",
        }
    }
}

/// One finished upstream exchange, live or shadow.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord<'a> {
    /// Route name.
    pub route: &'a str,
    /// Backend name.
    pub backend: &'a str,
    /// Live or shadow.
    pub role: Role,
    /// The backend's status code, or `None` when there was no response
    /// (unreachable, reset, timed out): the `code` label is then `error`.
    pub status: Option<u16>,
    /// Time taken.
    pub duration: Duration,
    /// The request id (client's or veer's), for the access log only.
    pub request_id: &'a str,
    /// The backend's `host:port`, for the access log only.
    pub upstream: &'a str,
    /// Response body size when known up front (content-length).
    pub bytes: Option<u64>,
}

/// Records a finished exchange: `veer_requests_total`,
/// `veer_request_duration_seconds`, the dashboard's figures, and one access-log line
/// (target `veer::access`; `RUST_LOG=info,veer::access=off` turns it off).
pub fn record_request(r: &RequestRecord<'_>) {
    tracing::info!(
        target: "veer::access",
        request_id = r.request_id,
        route = r.route,
        backend = r.backend,
        role = r.role.label(),
        status = r.status,
        duration_ms = r.duration.as_secs_f64() * 1000.0,
        bytes = r.bytes,
        upstream = r.upstream,
        "access"
    );
    let code = r
        .status
        .map_or_else(|| "error".to_owned(), |s| s.to_string());
    let labels = [
        ("route", r.route.to_owned()),
        ("backend", r.backend.to_owned()),
        ("role", r.role.label().to_owned()),
    ];
    counter!(
        names::REQUESTS_TOTAL,
        &[&labels[..], &[("code", code)]].concat()
    )
    .increment(1);
    histogram!(names::REQUEST_DURATION_SECONDS, &labels).record(r.duration.as_secs_f64());
    stats::global().request(r);
}

/// One shadow comparison, whatever became of it.
#[derive(Debug, Clone, Copy)]
pub struct ComparisonRecord<'a> {
    /// Route name.
    pub route: &'a str,
    /// Shadow backend name.
    pub backend: &'a str,
    /// How it ended.
    pub outcome: ShadowOutcome,
    /// Largest absolute numeric difference, when numbers were compared.
    pub max_abs_deviation: Option<f64>,
    /// For classification outputs, whether the predicted class agreed.
    pub label_agreement: Option<bool>,
}

/// Records a comparison: `veer_shadow_comparisons_total`, and when known
/// `veer_shadow_abs_deviation` and `veer_shadow_label_agreements_total`.
pub fn record_comparison(r: &ComparisonRecord<'_>) {
    let labels = [
        ("route", r.route.to_owned()),
        ("backend", r.backend.to_owned()),
    ];
    let with_outcome = [&labels[..], &[("outcome", r.outcome.label().to_owned())]].concat();
    counter!(names::SHADOW_COMPARISONS_TOTAL, &with_outcome).increment(1);
    if let Some(deviation) = r.max_abs_deviation {
        histogram!(names::SHADOW_ABS_DEVIATION, &labels).record(deviation);
    }
    if let Some(agree) = r.label_agreement {
        let with_agree = [&labels[..], &[("agree", agree.to_string())]].concat();
        counter!(names::SHADOW_LABEL_AGREEMENTS_TOTAL, &with_agree).increment(1);
    }
    stats::global().comparison(r);
}

/// Lists a divergent pair on the dashboard.
pub fn record_divergence(divergence: stats::Divergence) {
    stats::global().divergence(divergence);
}

/// Records a divergence-log line that was not written (`rate_limited`, `queue_full`,
/// `size_limit`, `write_error`).
pub fn record_divergence_log_drop(route: &str, reason: &'static str) {
    counter!(
        names::DIVERGENCE_LOG_DROPPED_TOTAL,
        "route" => route.to_owned(),
        "reason" => reason
    )
    .increment(1);
}

/// Registers `# HELP` text and units for every metric, once at start-up.
pub fn describe() {
    describe_counter!(names::REQUESTS_TOTAL, Unit::Count, "Upstream exchanges finished, by route, backend, role (live/shadow) and status code (or error).");
    describe_histogram!(names::REQUEST_DURATION_SECONDS, Unit::Seconds, "Upstream exchange duration by route, backend and role: to the response head for live requests, to the end of the body for shadows.");
    describe_counter!(names::SHADOW_COMPARISONS_TOTAL, Unit::Count, "Shadow comparisons by outcome: match, diverged, shadow_error, live_error, timeout, dropped, skipped.");
    describe_histogram!(names::SHADOW_ABS_DEVIATION, "Largest absolute numeric difference between the live and the shadow prediction of one request.");
    describe_counter!(
        names::SHADOW_LABEL_AGREEMENTS_TOTAL,
        Unit::Count,
        "Classification comparisons by whether the live and shadow predicted classes agree."
    );
    describe_counter!(
        names::DIVERGENCE_LOG_DROPPED_TOTAL,
        Unit::Count,
        "Divergent pairs not written to the divergence log, by reason."
    );
    describe_counter!(
        names::CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "Config reloads (SIGHUP or POST /-/reload) by result."
    );
    describe_gauge!(
        names::CONFIG_LAST_RELOAD_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful config load."
    );
    describe_gauge!(
        names::IN_FLIGHT_REQUESTS,
        Unit::Count,
        "Upstream requests in flight, by role."
    );
    // Zero series up front, so dashboards and alerts see them before the first event.
    for role in [Role::Live, Role::Shadow] {
        gauge!(names::IN_FLIGHT_REQUESTS, "role" => role.label()).increment(0.0);
    }
    for result in ["ok", "error"] {
        counter!(names::CONFIG_RELOADS_TOTAL, "result" => result).increment(0);
    }
}
