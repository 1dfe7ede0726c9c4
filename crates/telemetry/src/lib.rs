//! veer's observability: every metric name and label of the contract (shared/DESIGN.md,
//! "Metrics contract") lives here, and so do the handles requests and comparisons are
//! recorded through (step 6 of a request's way).
//!
//! - [`Telemetry`] is the recorder: a Prometheus recorder of veer's own (not the
//!   process-global one of the `metrics` facade), the dashboard's clock, and the
//!   process-level series. The binary makes one; each test makes its own.
//! - [`ExchangeSeries`] and [`ComparisonSeries`] are the handles one route records
//!   into, made when the route is compiled and kept across reloads by the proxy's
//!   registry. Recording on them allocates nothing and takes no lock: metric handles
//!   are resolved once, and the dashboard's last minute ([`stats`]) is counted in
//!   atomic one-second slots.
//! - [`exporter`] renders for Prometheus, [`admin`] answers the admin endpoints once
//!   the access checks (`Host`, `Origin`, token) have let a request through.
//! - A few [`Divergence`]s a second per route are kept, each with its full record,
//!   for the dashboard's list and `GET /divergences/{request_id}`; [`stats`] judges
//!   each route's figures against the budgets its config sets.
//!
//! Label values come from config names only (route, backend) and fixed vocabularies
//! (role, outcome, status code), never from request data, so series stay bounded.

mod access;
pub mod admin;
mod divergences;
pub mod exporter;
mod float_counters;
mod recorder;
mod series;
pub mod stats;
mod totals;
mod window;

pub use divergences::{Divergence, ShownDifference, RECENT_DIVERGENCES};
pub use recorder::Telemetry;
pub use series::{
    ComparisonKind, ComparisonSeries, Exchange, ExchangeSeries, InFlight, Judged, LogDrop,
    CACHED_CODES, GRPC_SERVER_FAULTS,
};
pub use totals::{ComparisonCounts, ExchangeCounts};

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
    /// Counter of real numbers: `shadow - live` summed over the compared pairs of
    /// numbers where the shadow's is higher (labels: route, backend).
    pub const SHADOW_DEVIATION_UP_TOTAL: &str = "veer_shadow_deviation_up_total";
    /// Counter of real numbers: `live - shadow` summed over the compared pairs of
    /// numbers where the shadow's is lower (labels: route, backend).
    pub const SHADOW_DEVIATION_DOWN_TOTAL: &str = "veer_shadow_deviation_down_total";
    /// Counter: pairs of numbers compared, the denominator of the mean signed
    /// deviation `(rate(up) - rate(down)) / rate(numbers)` (labels: route, backend).
    pub const SHADOW_DEVIATION_NUMBERS_TOTAL: &str = "veer_shadow_deviation_numbers_total";
    /// Classification pairs by whether the predicted class agreed.
    pub const SHADOW_LABEL_AGREEMENTS_TOTAL: &str = "veer_shadow_label_agreements_total";
    /// Noise comparisons (a second answer of the live backend against the first) by
    /// outcome; labels route, backend (the live one), outcome.
    pub const NOISE_COMPARISONS_TOTAL: &str = "veer_noise_comparisons_total";
    /// Largest absolute numeric difference per noise pair.
    pub const NOISE_ABS_DEVIATION: &str = "veer_noise_abs_deviation";
    /// Noise classification pairs by whether the predicted class agreed.
    pub const NOISE_LABEL_AGREEMENTS_TOTAL: &str = "veer_noise_label_agreements_total";
    /// Gauge: the rollout candidate's weight now, in percent (label: route).
    pub const ROLLOUT_WEIGHT: &str = "veer_rollout_weight";
    /// Gauge: 1 for the rollout's current state, 0 for the others (labels: route,
    /// state).
    pub const ROLLOUT_STATE: &str = "veer_rollout_state";
    /// Counter: rollout decisions (labels: route, action, actor).
    pub const ROLLOUT_DECISIONS_TOTAL: &str = "veer_rollout_decisions_total";
    /// Gauge: 1 for each signal's current verdict (labels: route, signal, verdict).
    pub const ROLLOUT_SIGNAL: &str = "veer_rollout_signal";
    /// Counter: decision notifications that could not be delivered (label: route).
    pub const ROLLOUT_NOTIFY_FAILURES_TOTAL: &str = "veer_rollout_notify_failures_total";
    /// Divergence-log lines not written, by reason.
    pub const DIVERGENCE_LOG_DROPPED_TOTAL: &str = "veer_divergence_log_dropped_total";
    /// Reloads by result.
    pub const CONFIG_RELOADS_TOTAL: &str = "veer_config_reloads_total";
    /// Time taken by each config load.
    pub const CONFIG_RELOAD_DURATION_SECONDS: &str = "veer_config_reload_duration_seconds";
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
    /// Gauge: 1 while a backend is ejected by outlier detection, else 0 (label:
    /// backend).
    pub const BACKEND_EJECTED: &str = "veer_backend_ejected";
    /// Counter: requests refused because of the client (label: reason, the `error`
    /// code of the answer); never counted against a backend.
    pub const CLIENT_ERRORS_TOTAL: &str = "veer_client_errors_total";
    /// Counter: requests and connections refused at a limit (label: reason,
    /// `too_many_connections`, `backend_saturated`, `out_of_sockets`).
    pub const REFUSED_TOTAL: &str = "veer_refused_total";
}

/// Which side of a shadowed pair a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Its answer went to the client.
    Live,
    /// A mirror; its answer was only compared.
    Shadow,
}

impl Role {
    pub(crate) fn index(self) -> usize {
        match self {
            Role::Live => 0,
            Role::Shadow => 1,
        }
    }

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
    /// The shadow failed (unreachable, reset, 5xx), or its answer could not be
    /// judged (not JSON, no value at `select`).
    ShadowError,
    /// The live answer failed or could not be judged.
    LiveError,
    /// The shadow did not answer within its backend's timeout, or the live answer
    /// did not come within that time after it.
    Timeout,
    /// Not mirrored, or not judged: the shadow backend had `max_in_flight` mirrors
    /// (or as many bodies being read for mirrors) already, or the compare pool's
    /// queue was full.
    Dropped,
    /// Not mirrored or not compared: a body was over its size limit, or the request
    /// body did not arrive within the shadow backend's timeout.
    Skipped,
}

impl ShadowOutcome {
    /// Every outcome, in the order of [`Self::index`].
    pub const ALL: [ShadowOutcome; 7] = [
        ShadowOutcome::Match,
        ShadowOutcome::Diverged,
        ShadowOutcome::ShadowError,
        ShadowOutcome::LiveError,
        ShadowOutcome::Timeout,
        ShadowOutcome::Dropped,
        ShadowOutcome::Skipped,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

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
