//! The validated configuration: what veer serves. Built only by [`Config::from_toml`],
//! so holding one means every name resolved and every value was in range.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};

use crate::Diagnostic;

/// A routing file that passed validation, ready to be compiled into a route table.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the listeners bind; changes only on restart.
    pub listen: Listen,
    /// The certificate the HTTPS listener serves, when there is one.
    pub tls: Option<Tls>,
    /// Connection and request limits of the client listeners.
    pub limits: Limits,
    /// Who may use the admin listener.
    pub admin: AdminAccess,
    /// Reload the file when it changes on disk.
    pub watch: bool,
    /// The async runtime veer serves on; read at start only.
    pub runtime: Runtime,
    /// The folder every file veer writes is kept inside (divergence logs).
    pub log_dir: PathBuf,
    /// Every upstream a route may send to, indexed by [`BackendId`], sorted by name.
    pub backends: Vec<Backend>,
    /// Routes in file order; the first that matches a request wins.
    pub routes: Vec<Route>,
}

/// The async runtime: how many threads serve connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Runtime {
    /// Worker threads; `None`: one per core (as nginx's `worker_processes auto`);
    /// one is a single-threaded event loop on the main thread.
    pub workers: Option<std::num::NonZeroUsize>,
}

/// A loaded file: the config, plus warnings worth showing the user.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The config to serve.
    pub config: Config,
    /// Things that load but are probably mistakes (an unreachable route, say).
    pub warnings: Vec<Diagnostic>,
}

/// Listener addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Client traffic.
    pub http: SocketAddr,
    /// Client traffic over TLS (needs [`Config::tls`]).
    pub https: Option<SocketAddr>,
    /// Metrics, health and reload.
    pub admin: SocketAddr,
}

/// Index of a backend in [`Config::backends`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub usize);

/// One upstream: a version of the model's serving backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// The name routes use, and the label its metrics carry.
    pub name: String,
    /// `http://host:port`: scheme and authority only.
    pub url: Uri,
    /// Budget for the response head of one upstream exchange.
    pub timeout: Duration,
    /// Budget for connecting (TCP and, for `https`, the TLS handshake).
    pub connect_timeout: Duration,
    /// Requests in flight to this backend before further ones get 503.
    pub max_connections: usize,
    /// HTTP/1.1 or HTTP/2 to this backend.
    pub protocol: Protocol,
    /// Trust roots and client certificate for an `https` backend.
    pub tls: BackendTls,
    /// Retry once a request that failed before any byte was sent, when idempotent.
    pub retry: bool,
    /// When this backend is taken out of rotation after failures.
    pub outlier: Outlier,
}

/// The HTTP version spoken to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2: prior knowledge (h2c) on `http://`, ALPN on `https://`; for gRPC.
    H2,
}

/// TLS settings of an `https` backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BackendTls {
    /// PEM trust roots; the webpki roots when absent.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain and key veer presents (mutual TLS), when set.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Passive outlier detection of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outlier {
    /// Failures in a row (5xx, connect failures, timeouts) that eject the backend.
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each one in a row doubles it.
    pub ejection: Duration,
}

/// The HTTPS listener's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain, resolved against the config file's folder.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Limits of the client listeners (see `defaults` for each value's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client connections open at once.
    pub max_connections: usize,
    /// A request head must be complete this long after its first byte: else 408.
    pub header_read_timeout: Duration,
    /// A keep-alive connection idle this long is closed.
    pub idle_timeout: Duration,
    /// A request body that stalls this long: 408.
    pub body_read_timeout: Duration,
    /// Largest request body: larger gets 413 (a route may set its own).
    pub max_request_body: u64,
    /// How long in-flight requests may finish after SIGTERM.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        use crate::defaults as d;
        Limits {
            max_connections: d::MAX_CONNECTIONS,
            header_read_timeout: d::HEADER_READ_TIMEOUT,
            idle_timeout: d::IDLE_TIMEOUT,
            body_read_timeout: d::BODY_READ_TIMEOUT,
            max_request_body: d::MAX_REQUEST_BODY,
            drain_timeout: d::DRAIN_TIMEOUT,
        }
    }
}

/// Who may use the admin listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminAccess {
    /// A file holding the bearer token every admin path but `/livez`, `/readyz` and
    /// `/metrics` requires, resolved against the config file's folder.
    pub token_file: Option<PathBuf>,
    /// `Host` names accepted besides IP literals and `localhost`, lowercase.
    pub hosts: Vec<String>,
}

/// A route: which requests it takes and how it splits them between backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Unique name; the label its metrics carry.
    pub name: String,
    /// Conditions a request must meet, all of them.
    pub matcher: Match,
    /// The weighted backends in file order; weights sum to more than 0.
    pub split: Vec<WeightedBackend>,
    /// How a request's share is drawn.
    pub split_by: SplitBy,
    /// Seed of the sticky hash; change it to re-shuffle users.
    pub hash_seed: u64,
    /// Largest request body on this route, in bytes.
    pub max_request_body: u64,
    /// Mirroring to a shadow backend, if any.
    pub shadow: Option<Shadow>,
    /// How a live and a shadow answer are judged.
    pub compare: Compare,
    /// The candidate's weight stepped up, held or rolled back by veer, if asked.
    pub rollout: Option<Rollout>,
}

/// `[routes.rollout]`: veer sets the candidate's share itself, step by step, from
/// anytime-valid statistics of each signal (see the `veer-rollout` crate).
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// The backend being rolled out: the last of the route's split.
    pub candidate: BackendId,
    /// Candidate weights in percent, rising, the last one 100 (promoted).
    pub steps: Vec<u8>,
    /// A step lasts at least this long before it may advance.
    pub min_step: Duration,
    /// A step still undecided after this long gets [`Rollout::on_inconclusive`].
    pub max_step: Duration,
    /// What an undecided step comes to at `max_step`.
    pub on_inconclusive: Inconclusive,
    /// False-rollback budget of each signal over the whole rollout.
    pub alpha: f64,
    /// Before the first step: weight 0, every request mirrored to the candidate, for
    /// at least this long and until the prediction gate passes.
    pub shadow_first: Option<Duration>,
    /// Where progress is kept across restarts (inside `log_dir`), if anywhere.
    pub state_file: Option<PathBuf>,
    /// Where every decision is appended as a JSON line (inside `log_dir`), if anywhere.
    pub decision_log: Option<PathBuf>,
    /// The candidate's 5xx, timeouts and connect failures against the baseline's.
    pub errors: ErrorGate,
    /// The candidate's share of slow requests against the baseline's.
    pub latency: LatencyGate,
    /// The shadow's divergence and label flips, when judged.
    pub predictions: Option<PredictionGate>,
    /// Each decision line is POSTed here, if set (`[routes.rollout.hooks] notify`).
    pub notify: Option<Uri>,
}

/// `on_inconclusive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inconclusive {
    /// Hold the weight; a person decides.
    Pause,
    /// Set the candidate to 0.
    Rollback,
}

/// `[routes.rollout.errors]`. PASS needs the candidate's error rate (upper bound) at
/// most `baseline × (1 + rel_margin) + abs_margin`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorGate {
    /// Relative margin over the baseline's rate.
    pub rel_margin: f64,
    /// Absolute margin over the baseline's rate.
    pub abs_margin: f64,
    /// A candidate rate proven above this rolls back at once.
    pub hard_max: f64,
}

/// `[routes.rollout.latency]`: a request is slow when it took longer than the
/// baseline's `tail` quantile over the step so far; the candidate's share of slow
/// requests is judged as errors are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyGate {
    /// The baseline's quantile that makes a request slow (0.95: its p95).
    pub tail: f64,
    /// Relative margin over the baseline's share of slow requests.
    pub rel_margin: f64,
    /// Absolute margin over it.
    pub abs_margin: f64,
}

/// `[routes.rollout.predictions]`: judged on mirrored traffic to the candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionGate {
    /// Largest share of compared pairs that may diverge (above the noise floor).
    pub max_divergence: f64,
    /// Largest share of classification pairs whose label may differ.
    pub max_label_flip: f64,
    /// A proven breach rolls back (true) or pauses (false).
    pub critical: bool,
}

/// Mirroring of a route's requests to a backend whose answers never reach clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// The backend mirrored to.
    pub backend: BackendId,
    /// Share of requests mirrored, 0 to 100 (sticky per user when the split is).
    pub percent: f64,
    /// Mirrors in flight to this backend before further ones are dropped.
    pub max_in_flight: usize,
    /// Largest request body mirrored, in bytes.
    pub max_body: u64,
    /// Where divergent pairs are written, if anywhere.
    pub divergence_log: Option<DivergenceLog>,
}

/// The JSON-lines file of sampled divergent pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DivergenceLog {
    /// File path: inside `log_dir` once loaded from a file.
    pub path: PathBuf,
    /// Lines written per second at most.
    pub per_sec: u32,
    /// Size at which the file rotates.
    pub max_bytes: u64,
}

/// How a live and a shadow answer are judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    /// What is compared.
    pub mode: CompareMode,
    /// JSON pointers of the parts of the body compared (`json` mode); empty: the
    /// whole body. Several parts are compared together (one verdict over them all),
    /// and a segment names a V2 output as `ignore` does (`/outputs/label`).
    pub select: Vec<String>,
    /// Numbers this close are equal.
    pub abs_tolerance: f64,
    /// Numbers this close relative to the larger magnitude are equal.
    pub rel_tolerance: f64,
    /// JSON pointers left out of the comparison.
    pub ignore: Vec<String>,
    /// Largest response body kept for comparison, in bytes.
    pub max_body: u64,
    /// Binary scores: a single probability on either side of this is a label, so
    /// label agreement is judged for models that answer one score per row.
    pub threshold: Option<f64>,
    /// Share of requests (0 to 100) sent a second time to the live backend and
    /// compared with the first answer: the model's own noise floor.
    pub noise_percent: f64,
    /// Share of compared pairs (0 to 1) above which the dashboard shows the route's
    /// divergence as bad, when no rollout's prediction gate sets the budget.
    pub alert_divergence: f64,
}

impl Default for Compare {
    fn default() -> Self {
        Compare {
            mode: CompareMode::Json,
            select: Vec::new(),
            abs_tolerance: crate::defaults::ABS_TOLERANCE,
            rel_tolerance: crate::defaults::REL_TOLERANCE,
            ignore: Vec::new(),
            max_body: crate::defaults::COMPARE_MAX_BODY,
            threshold: None,
            noise_percent: 0.0,
            alert_divergence: crate::defaults::COMPARE_ALERT_DIVERGENCE,
        }
    }
}

/// `[routes.compare] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareMode {
    /// Status codes equal.
    Status,
    /// Status and body bytes equal.
    Exact,
    /// Status equal and the JSON bodies equal structurally, numbers within tolerance.
    Json,
}

/// One entry of a route's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightedBackend {
    /// The backend.
    pub backend: BackendId,
    /// Its relative weight (0 takes no traffic).
    pub weight: u64,
}

/// How a route decides which backend takes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitBy {
    /// A fresh random draw per request.
    Random,
    /// A stable hash of this header's value: a user stays on one version.
    Header(HeaderName),
    /// A stable hash of this cookie's value.
    Cookie(String),
}

/// Conditions on a request; a request matches when all present ones hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Match {
    /// The path starts with this string (a plain prefix, as Envoy's `prefix`).
    pub path_prefix: Option<String>,
    /// The path is exactly this.
    pub path: Option<String>,
    /// The Host (without port), compared case-insensitively; stored lowercase.
    pub host: Option<String>,
    /// The method.
    pub method: Option<Method>,
    /// Each header is present with exactly this value.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Match {
    /// True when every request `later` matches is also matched by `self`, so a route
    /// with `later` placed after one with `self` can never be reached.
    pub fn covers(&self, later: &Match) -> bool {
        let path_covered = match (&self.path, &self.path_prefix) {
            (Some(p), _) => later.path.as_ref() == Some(p),
            (None, Some(prefix)) => [&later.path, &later.path_prefix]
                .into_iter()
                .flatten()
                .any(|lp| lp.starts_with(prefix.as_str())),
            (None, None) => true,
        };
        path_covered
            && same_or_any(&self.host, &later.host)
            && same_or_any(&self.method, &later.method)
            && self.headers.iter().all(|h| later.headers.contains(h))
    }

    /// For each of `matchers`, in order, the first earlier one that [covers](Match::covers)
    /// it, among those `may_cover` allows. Earlier matchers are indexed by their path
    /// (exact paths by value, prefixes by value, pathless ones apart), so each is
    /// tried only against the few that could cover it: 1,000 routes told apart by
    /// path are checked in about 1,000 lookups per path length, not in 500,000
    /// comparisons. Routes with no path condition are still tried against every
    /// later one.
    pub fn first_covering(
        matchers: &[&Match],
        may_cover: impl Fn(usize) -> bool,
    ) -> Vec<Option<usize>> {
        let mut exact: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        let mut prefixes: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        let mut pathless: Vec<usize> = Vec::new();
        let mut found = Vec::with_capacity(matchers.len());
        for (i, later) in matchers.iter().enumerate() {
            let mut candidates = pathless.clone();
            if let Some(path) = &later.path {
                candidates.extend(exact.get(path.as_str()).into_iter().flatten());
            }
            for text in [&later.path, &later.path_prefix].into_iter().flatten() {
                let ends = text.char_indices().map(|(at, _)| at).chain([text.len()]);
                for end in ends {
                    candidates.extend(prefixes.get(&text[..end]).into_iter().flatten());
                }
            }
            candidates.sort_unstable();
            found.push(candidates.into_iter().find(|&j| matchers[j].covers(later)));
            if may_cover(i) {
                match (&later.path, &later.path_prefix) {
                    (Some(path), _) => exact.entry(path).or_default().push(i),
                    (None, Some(prefix)) => prefixes.entry(prefix).or_default().push(i),
                    (None, None) => pathless.push(i),
                }
            }
        }
        found
    }
}

impl Config {
    /// The backend behind an id from this config.
    pub fn backend(&self, id: BackendId) -> &Backend {
        &self.backends[id.0]
    }

    /// The id of the backend with this name, if there is one.
    pub fn backend_id(&self, name: &str) -> Option<BackendId> {
        self.backends
            .binary_search_by(|b| b.name.as_str().cmp(name))
            .ok()
            .map(BackendId)
    }
}

/// An absent condition matches anything; a present one only the same condition.
fn same_or_any<T: PartialEq>(mine: &Option<T>, theirs: &Option<T>) -> bool {
    mine.is_none() || mine == theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Match {
        Match {
            path_prefix: Some(p.into()),
            ..Match::default()
        }
    }

    #[test]
    fn catch_all_covers_everything() {
        assert!(Match::default().covers(&prefix("/v1")));
        assert!(!prefix("/v1").covers(&Match::default()));
    }

    #[test]
    fn shorter_prefix_covers_longer_prefix_and_exact_paths_under_it() {
        assert!(prefix("/v1/models").covers(&prefix("/v1/models/churn")));
        let exact = Match {
            path: Some("/v1/models/churn:predict".into()),
            ..Match::default()
        };
        assert!(prefix("/v1/models/churn").covers(&exact));
        assert!(!prefix("/v2").covers(&exact));
    }

    #[test]
    fn extra_conditions_on_the_earlier_route_leave_the_later_reachable() {
        let with_header = Match {
            headers: vec![(
                HeaderName::from_static("x-ab"),
                HeaderValue::from_static("b"),
            )],
            ..prefix("/")
        };
        assert!(!with_header.covers(&prefix("/v1")));
        let later = Match {
            method: Some(Method::POST),
            ..with_header.clone()
        };
        assert!(with_header.covers(&later));
    }

    /// A small world of matchers, so that covering is common: paths and prefixes
    /// over "/", "/a", "/ab", "/b", a host or none, a method or none.
    fn matcher() -> impl proptest::strategy::Strategy<Value = Match> {
        use proptest::prelude::*;
        let text = || prop::option::of(prop::sample::select(vec!["/", "/a", "/ab", "/b", "/é"]));
        (
            text(),
            text(),
            prop::option::of(Just("models.example")),
            prop::option::of(Just(Method::POST)),
        )
            .prop_map(|(path, path_prefix, host, method)| Match {
                path: path.map(str::to_owned),
                path_prefix: path_prefix.map(str::to_owned),
                host: host.map(str::to_owned),
                method,
                headers: Vec::new(),
            })
    }

    proptest::proptest! {
        /// The index finds what trying every earlier matcher finds.
        #[test]
        fn first_covering_is_the_first_earlier_matcher_that_covers(
            matchers in proptest::collection::vec(matcher(), 0..24),
            barred in proptest::collection::vec(proptest::bool::ANY, 24),
        ) {
            let refs: Vec<&Match> = matchers.iter().collect();
            let indexed = Match::first_covering(&refs, |j| !barred[j]);
            let tried: Vec<Option<usize>> = (0..matchers.len())
                .map(|i| (0..i).find(|&j| !barred[j] && matchers[j].covers(&matchers[i])))
                .collect();
            proptest::prop_assert_eq!(indexed, tried);
        }
    }
}
