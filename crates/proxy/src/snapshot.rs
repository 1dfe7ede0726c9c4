//! One config generation, compiled and swapped whole: a set of [`CompiledRoute`]s,
//! one struct per route, each holding what a request on it needs (its rule, its
//! compare and shadow settings) and handles to everything it records into.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::uri::{Authority, Scheme};
use http::HeaderValue;
use tokio::sync::Semaphore;
use veer_config::{Backend, BackendId, Compare, Config, Route, WeightedBackend};
use veer_route::{Decision, RequestHead, RouteId, Rule};
use veer_telemetry::stats::{Budget, ErrorBudget, RouteBudget};
use veer_telemetry::{ComparisonSeries, ExchangeSeries, Role};

use crate::divergence::DivergenceLog;
use crate::health::Health;
use crate::registry::{Registry, ShadowLimiter};
use crate::rollout::{effective_split, CompiledRollout, Identity};
use crate::tls;
use crate::upstream::UpstreamClient;

/// How recent a backend's traffic must be for a reload that takes it away to be
/// worth a warning: 5 minutes, longer than any scrape or dashboard refresh, so a
/// backend someone is looking at counts.
pub(crate) const RECENTLY: Duration = Duration::from_secs(5 * 60);

/// Where a config came from, for `/config` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The routing file as named on the command line.
    pub file: String,
    /// SHA-256 of the bytes that were validated and compiled, hex.
    pub sha256: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

/// Everything a request needs from the config, as of one generation. Requests hold
/// an `Arc<Snapshot>` from arrival to end, so weights, backends and handles can never
/// be seen half-updated.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    source: Source,
    config: Config,
    routes: Vec<CompiledRoute>,
    /// Forwarding details per backend, indexed by [`BackendId`].
    upstreams: Vec<Upstream>,
    /// The bearer token the admin listener asks for, read from `[admin] token_file`.
    admin_token: Option<String>,
    /// The HTTPS listener's certificate, read from `[tls]` for this generation.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A file the config names that cannot be used; the reload that met it is refused
/// and the running generation keeps serving.
#[derive(Debug, thiserror::Error)]
#[error("{what} \"{}\" cannot be used: {problem}", path.display())]
pub struct UnusableFile {
    /// The setting naming it (`tls.cert`, `admin.token_file`, ...).
    pub what: &'static str,
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl UnusableFile {
    pub(crate) fn new(what: &'static str, path: &Path, problem: impl ToString) -> UnusableFile {
        UnusableFile {
            what,
            path: path.to_owned(),
            problem: problem.to_string(),
        }
    }
}

/// The admin token: the file's first line, which must not be empty.
fn read_token(path: &Path) -> Result<String, UnusableFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UnusableFile::new("admin.token_file", path, e))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(UnusableFile::new(
            "admin.token_file",
            path,
            "it is empty; put the token on its first line",
        ));
    }
    Ok(token.to_owned())
}

/// A route as requests meet it.
#[derive(Clone)]
pub(crate) struct CompiledRoute {
    /// The route's name: its metric label.
    pub(crate) name: String,
    /// Match, split and shadow sample: the pure decision.
    rule: Rule,
    /// The split requests see now: the file's, or the rollout's weights.
    split: Vec<WeightedBackend>,
    /// The series of each backend of the split, in split order.
    live: Vec<(BackendId, Arc<ExchangeSeries>)>,
    /// How live and shadow answers are judged.
    pub(crate) compare: Compare,
    /// Largest request body accepted on this route.
    pub(crate) max_request_body: u64,
    /// Mirroring, when the route has a `[routes.shadow]`.
    pub(crate) shadow: Option<ShadowPlan>,
    /// The noise floor (`compare.noise_percent`): a second request to the live
    /// backend, per backend of the split.
    pub(crate) noise: Vec<(BackendId, ShadowPlan)>,
    /// The rollout that sets the candidate's weight, when the route has one.
    pub(crate) rollout: Option<CompiledRollout>,
}

/// A route's shadow as requests meet it.
#[derive(Clone)]
pub(crate) struct ShadowPlan {
    /// Largest request body mirrored.
    pub(crate) max_body: u64,
    /// Permits for mirrors in flight to the shadow backend, and for bodies being
    /// read for them (shared by every route that shadows to it).
    pub(crate) limiter: Arc<ShadowLimiter>,
    /// Where divergent pairs go, if anywhere.
    pub(crate) log: Option<DivergenceLog>,
    /// The mirrors' own requests (not recorded for the noise floor's second
    /// requests, which are veer's own, not a version's traffic).
    pub(crate) exchanges: Option<Arc<ExchangeSeries>>,
    /// Their comparisons.
    pub(crate) comparisons: Arc<ComparisonSeries>,
}

/// A backend as the forwarder needs it, prepared once per generation.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    /// Config name, for logs and errors.
    pub(crate) name: String,
    /// The name as a ready `x-veer-backend` header value.
    pub(crate) name_header: HeaderValue,
    /// `http`.
    pub(crate) scheme: Scheme,
    /// `host:port` requests are sent to.
    pub(crate) authority: Authority,
    /// The authority as a ready `Host` header value.
    pub(crate) host_header: HeaderValue,
    /// Budget for the upstream exchange.
    pub(crate) timeout: Duration,
    /// The connections it is reached over.
    pub(crate) client: Arc<UpstreamClient>,
    /// Permits for requests in flight to it (`max_connections`).
    pub(crate) permits: Arc<Semaphore>,
    /// Its recent failures and ejection.
    pub(crate) health: Arc<Health>,
    /// Retry an idempotent request that failed before any answer.
    pub(crate) retry: bool,
}

impl Snapshot {
    /// Compiles `config` as generation `generation`, taking what its routes use from
    /// `registry` (handed over when the settings are unchanged, made when not).
    pub(crate) fn compile(
        config: Config,
        source: Source,
        generation: u64,
        registry: &mut Registry,
    ) -> Result<Snapshot, UnusableFile> {
        let admin_token = config
            .admin
            .token_file
            .as_deref()
            .map(read_token)
            .transpose()?;
        let upstreams = config
            .backends
            .iter()
            .map(|b| {
                Ok(Upstream::new(
                    b,
                    registry.client(b)?,
                    registry.backend_permits(b),
                    registry.health(b),
                ))
            })
            .collect::<Result<_, UnusableFile>>()?;
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        // One limit per shadow backend; where routes disagree the smallest applies,
        // and the reading budget is the largest body times that limit.
        let mut limits: HashMap<BackendId, (usize, u64)> = HashMap::new();
        for shadow in config.routes.iter().filter_map(|r| r.shadow.as_ref()) {
            let (max, body) = limits
                .entry(shadow.backend)
                .or_insert((shadow.max_in_flight, shadow.max_body));
            *max = (*max).min(shadow.max_in_flight);
            *body = (*body).max(shadow.max_body);
        }
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let backend = |id: BackendId| config.backend(id).name.as_str();
                let live: Vec<(BackendId, Arc<ExchangeSeries>)> = route
                    .split
                    .iter()
                    .map(|s| {
                        let series =
                            registry.exchanges(&route.name, backend(s.backend), Role::Live);
                        (s.backend, series)
                    })
                    .collect();
                let shadow = route.shadow.as_ref().map(|s| {
                    let name = backend(s.backend);
                    ShadowPlan {
                        max_body: s.max_body,
                        limiter: {
                            let (max, body) = limits
                                .get(&s.backend)
                                .copied()
                                .unwrap_or((s.max_in_flight, s.max_body));
                            let body = usize::try_from(body).unwrap_or(usize::MAX);
                            registry.limiter(name, max, max.saturating_mul(body))
                        },
                        log: s
                            .divergence_log
                            .as_ref()
                            .map(|l| registry.divergence_log(l)),
                        exchanges: Some(registry.exchanges(&route.name, name, Role::Shadow)),
                        comparisons: registry.comparisons(&route.name, name),
                    }
                });
                let noise: Vec<(BackendId, ShadowPlan)> = if route.compare.noise_percent > 0.0 {
                    route
                        .split
                        .iter()
                        .map(|s| {
                            let name = backend(s.backend);
                            let max = veer_config::defaults::SHADOW_MAX_IN_FLIGHT;
                            let body = route
                                .shadow
                                .as_ref()
                                .map_or(veer_config::defaults::SHADOW_MAX_BODY, |shadow| {
                                    shadow.max_body
                                });
                            let reading = usize::try_from(body).unwrap_or(usize::MAX);
                            let plan = ShadowPlan {
                                max_body: body,
                                limiter: registry.limiter(
                                    &format!("noise:{name}"),
                                    max,
                                    max.saturating_mul(reading),
                                ),
                                log: None,
                                exchanges: None,
                                comparisons: registry.noise(&route.name, name),
                            };
                            (s.backend, plan)
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let rollout = route.rollout.as_ref().map(|plan| {
                    let state = registry.rollout(&route.name, Identity::of(&config, plan), plan);
                    let series =
                        |id: BackendId| live.iter().find(|(b, _)| *b == id).map(|(_, s)| s.clone());
                    let total: u64 = route.split.iter().map(|s| s.weight).sum();
                    let candidate_weight = route
                        .split
                        .iter()
                        .find(|s| s.backend == plan.candidate)
                        .map_or(0, |s| s.weight);
                    let file_weight = (candidate_weight * 100)
                        .checked_div(total)
                        .map_or(0, |p| u8::try_from(p).unwrap_or(100));
                    CompiledRollout {
                        file_weight,
                        candidate: series(plan.candidate).unwrap_or_else(|| {
                            registry.exchanges(&route.name, backend(plan.candidate), Role::Live)
                        }),
                        baseline: route
                            .split
                            .iter()
                            .filter(|s| s.backend != plan.candidate)
                            .filter_map(|s| series(s.backend))
                            .collect(),
                        shadow: shadow
                            .as_ref()
                            .zip(route.shadow.as_ref())
                            .filter(|(_, s)| s.backend == plan.candidate)
                            .map(|(plan, _)| plan.comparisons.clone()),
                        noise: noise
                            .iter()
                            .filter(|(b, _)| *b != plan.candidate)
                            .map(|(_, p)| p.comparisons.clone())
                            .collect(),
                        state,
                        plan: plan.clone(),
                    }
                });
                let mut compiled = CompiledRoute {
                    name: route.name.clone(),
                    rule: Rule::new(route),
                    split: route.split.clone(),
                    live,
                    compare: route.compare.clone(),
                    max_request_body: route.max_request_body,
                    shadow,
                    noise,
                    rollout,
                };
                compiled.follow_rollout(route);
                compiled
            })
            .collect();
        Ok(Snapshot {
            generation,
            source,
            config,
            routes,
            upstreams,
            admin_token,
            tls,
        })
    }

    /// This snapshot with each rollout route's split (and shadow share) as its
    /// rollout stands now; everything else is shared. How a rollout decision is
    /// swapped in: nothing is re-read, so it cannot fail.
    pub(crate) fn reweighed(&self) -> Snapshot {
        let routes = self
            .routes
            .iter()
            .zip(&self.config.routes)
            .map(|(compiled, route)| {
                let mut compiled = compiled.clone();
                compiled.follow_rollout(route);
                compiled
            })
            .collect();
        Snapshot {
            generation: self.generation,
            source: self.source.clone(),
            config: self.config.clone(),
            routes,
            upstreams: self.upstreams.clone(),
            admin_token: self.admin_token.clone(),
            tls: self.tls.clone(),
        }
    }

    /// What serving `next` instead of this snapshot takes away from traffic that is
    /// flowing: each route it removes, and each backend that served a route within
    /// [`RECENTLY`] and gets no share of it in `next` (a rollout's candidate is the
    /// rollout's to move, not the file's). Applied all the same, but said.
    pub(crate) fn traffic_taken_by(&self, next: &Config) -> Vec<String> {
        let mut taken = Vec::new();
        let by_name: std::collections::HashMap<&str, &veer_config::Route> =
            next.routes.iter().map(|r| (r.name.as_str(), r)).collect();
        for route in &self.routes {
            let Some(kept) = by_name.get(route.name.as_str()) else {
                taken.push(format!(
                    "route \"{}\" was removed: the requests it took now go to the next route that matches, or get 404",
                    route.name
                ));
                continue;
            };
            for (backend, series) in &route.live {
                let name = &self.config.backend(*backend).name;
                let share = kept
                    .split
                    .iter()
                    .find(|s| next.backend(s.backend).name == *name)
                    .map_or(0, |s| s.weight);
                let moved_by_rollout = kept
                    .rollout
                    .as_ref()
                    .is_some_and(|r| next.backend(r.candidate).name == *name);
                if share == 0 && !moved_by_rollout && series.served_within(RECENTLY) {
                    taken.push(format!(
                        "backend \"{name}\" served route \"{}\" in the last {} minutes and gets no share of it now",
                        route.name,
                        RECENTLY.as_secs() / 60
                    ));
                }
            }
        }
        taken
    }

    /// Every route's rollout, by route name.
    pub(crate) fn rollouts(&self) -> impl Iterator<Item = (&str, &CompiledRollout)> {
        self.routes
            .iter()
            .filter_map(|r| r.rollout.as_ref().map(|rollout| (r.name.as_str(), rollout)))
    }

    /// True when some route has a rollout.
    pub(crate) fn has_rollouts(&self) -> bool {
        self.routes.iter().any(|r| r.rollout.is_some())
    }

    /// Each (route, backend, weight) of the splits requests see now: the file's, or
    /// a rollout's.
    pub fn weights(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.routes.iter().flat_map(move |route| {
            route.split.iter().map(move |entry| {
                let backend = self.config.backend(entry.backend).name.as_str();
                (route.name.as_str(), backend, entry.weight)
            })
        })
    }

    /// What the HTTPS listener hands new handshakes, when `[tls]` is set.
    pub(crate) fn tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.tls.as_ref()
    }

    /// The token every protected admin path asks for, when `[admin] token_file` is set.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// 1 for the config veer started with, +1 per successful reload.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Where this generation's config came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The validated config this generation was compiled from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The first route `head` matches and the backend its split picks; when that
    /// backend is ejected, the pick among the route's others (unless all are out:
    /// then the ejected one still gets the request, rather than nobody).
    pub(crate) fn decide(&self, head: &RequestHead<'_>) -> Option<Decision> {
        let rng = &mut rand::rng();
        let mut decision = veer_route::decide(&self.routes, head, rng)?;
        if self.upstreams[decision.backend.0].health.is_ejected() {
            let rule = &self.routes[decision.route.0].rule;
            let usable = |b: BackendId| !self.upstreams[b.0].health.is_ejected();
            if let Some(other) = rule.pick_among(head, rng, usable) {
                decision.backend = other;
                decision.shadow = decision.shadow.filter(|s| *s != other);
            }
        }
        Some(decision)
    }

    /// Each backend's name and whether it is ejected now, for `veer_backend_ejected`.
    pub fn ejections(&self) -> impl Iterator<Item = (&str, bool)> {
        self.upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.health.is_ejected()))
    }

    /// The route behind an id from this snapshot.
    pub(crate) fn route(&self, id: RouteId) -> &CompiledRoute {
        &self.routes[id.0]
    }

    /// The upstream behind a backend id of this snapshot.
    pub(crate) fn upstream(&self, id: BackendId) -> &Upstream {
        &self.upstreams[id.0]
    }

    /// Every request series this generation records into.
    pub(crate) fn exchange_series(&self) -> impl Iterator<Item = &ExchangeSeries> {
        self.routes.iter().flat_map(|route| {
            let live = route.live.iter().map(|(_, series)| &**series);
            live.chain(route.shadow.iter().filter_map(|s| s.exchanges.as_deref()))
        })
    }

    /// What the dashboard judges each route's figures by: its baseline (a rollout's
    /// every backend but the candidate, else the split's first) and its budgets (a
    /// rollout's gates when it judges the shadow's backend, else
    /// `compare.alert_divergence` for a shadowed route).
    pub(crate) fn budgets(&self) -> Vec<RouteBudget<'_>> {
        self.routes
            .iter()
            .zip(&self.config.routes)
            .map(|(compiled, route)| {
                let name = |id: BackendId| self.config.backend(id).name.as_str();
                let rollout = route.rollout.as_ref();
                let baseline: Vec<BackendId> = match rollout {
                    Some(r) => route
                        .split
                        .iter()
                        .map(|s| s.backend)
                        .filter(|b| *b != r.candidate)
                        .collect(),
                    None => route.split.iter().map(|s| s.backend).take(1).collect(),
                };
                // A rollout's prediction gate judges mirrors to its candidate only.
                let gate = rollout
                    .filter(|r| route.shadow.as_ref().map(|s| s.backend) == Some(r.candidate))
                    .and_then(|r| r.predictions);
                let above_noise = |limit, setting| Budget {
                    limit,
                    setting,
                    above_noise: true,
                };
                let divergence = match (gate, &route.shadow) {
                    (Some(gate), _) => Some(above_noise(
                        gate.max_divergence,
                        "rollout predictions.max_divergence",
                    )),
                    (None, Some(_)) => Some(Budget {
                        limit: route.compare.alert_divergence,
                        setting: "compare.alert_divergence",
                        above_noise: false,
                    }),
                    (None, None) => None,
                };
                RouteBudget {
                    route: &compiled.name,
                    baseline: baseline.iter().map(|b| name(*b)).collect(),
                    errors: rollout.map(|r| ErrorBudget {
                        rel_margin: r.errors.rel_margin,
                        abs_margin: r.errors.abs_margin,
                        hard_max: r.errors.hard_max,
                    }),
                    divergence,
                    label_flip: gate.map(|gate| {
                        above_noise(gate.max_label_flip, "rollout predictions.max_label_flip")
                    }),
                    noise: compiled
                        .noise
                        .iter()
                        .filter(|(b, _)| baseline.contains(b))
                        .map(|(_, plan)| &*plan.comparisons)
                        .collect(),
                }
            })
            .collect()
    }

    /// Every comparison series this generation records into.
    pub(crate) fn comparison_series(&self) -> impl Iterator<Item = &ComparisonSeries> {
        self.routes
            .iter()
            .filter_map(|route| route.shadow.as_ref().map(|s| &*s.comparisons))
    }
}

impl CompiledRoute {
    /// Takes the split (and, in the shadow phase, a shadow share of 100 %) from the
    /// route's rollout as it stands now; a route without one keeps the file's.
    fn follow_rollout(&mut self, route: &Route) {
        let Some(rollout) = &self.rollout else { return };
        let (weight, shadow_phase) = rollout.state.serving();
        let mut effective = route.clone();
        effective.split = effective_split(&route.split, weight);
        if let (true, Some(shadow)) = (shadow_phase, effective.shadow.as_mut()) {
            shadow.percent = 100.0;
        }
        self.rule = Rule::new(&effective);
        self.split = effective.split;
    }

    /// The noise floor's plan for requests live on `backend`, when this request is
    /// sampled for it (`compare.noise_percent`, a fresh draw per request).
    pub(crate) fn noise_sample(&self, backend: BackendId) -> Option<&ShadowPlan> {
        let plan = self.noise.iter().find(|(b, _)| *b == backend)?;
        (rand::random::<f64>() * 100.0 < self.compare.noise_percent).then_some(&plan.1)
    }

    /// The noise floor's plan for requests live on `backend`.
    pub(crate) fn noise_plan(&self, backend: BackendId) -> Option<&ShadowPlan> {
        self.noise
            .iter()
            .find(|(b, _)| *b == backend)
            .map(|(_, plan)| plan)
    }

    /// The series of requests this route sends to `backend`.
    pub(crate) fn live_series(&self, backend: BackendId) -> Option<&Arc<ExchangeSeries>> {
        self.live
            .iter()
            .find(|(id, _)| *id == backend)
            .map(|(_, series)| series)
    }
}

impl AsRef<Rule> for CompiledRoute {
    fn as_ref(&self) -> &Rule {
        &self.rule
    }
}

impl std::fmt::Debug for CompiledRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRoute")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .field("shadowed", &self.shadow.is_some())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    fn new(
        backend: &Backend,
        client: Arc<UpstreamClient>,
        permits: Arc<Semaphore>,
        health: Arc<Health>,
    ) -> Upstream {
        // Validation guarantees a header-safe name and an http URL with an authority;
        // the fallbacks only keep this function total.
        let authority = backend
            .url
            .authority()
            .cloned()
            .unwrap_or(Authority::from_static("invalid"));
        Upstream {
            name: backend.name.clone(),
            name_header: HeaderValue::from_str(&backend.name)
                .unwrap_or(HeaderValue::from_static("invalid")),
            scheme: backend.url.scheme().cloned().unwrap_or(Scheme::HTTP),
            host_header: HeaderValue::from_str(authority.as_str())
                .unwrap_or(HeaderValue::from_static("invalid")),
            authority,
            timeout: backend.timeout,
            client,
            permits,
            health,
            retry: backend.retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(toml: &str) -> Snapshot {
        let loaded = Config::from_toml("veer.toml", toml).expect("a valid routing file");
        let telemetry = veer_telemetry::Telemetry::new().expect("a recorder");
        let source = Source {
            file: "veer.toml".into(),
            sha256: String::new(),
            loaded_at: SystemTime::UNIX_EPOCH,
        };
        Snapshot::compile(loaded.config, source, 1, &mut Registry::new(telemetry))
            .expect("compiles")
    }

    #[test]
    fn a_rollout_sets_the_budgets_else_alert_divergence_does() {
        let snapshot = compiled(
            r#"
[backends.v1]
url = "http://127.0.0.1:9"
[backends.v2]
url = "http://127.0.0.1:9"
[backends.v3]
url = "http://127.0.0.1:9"

[[routes]]
name = "rolled"
match = { path_prefix = "/rolled/" }
split = [ { backend = "v1", weight = 90 }, { backend = "v3", weight = 0 }, { backend = "v2", weight = 10 } ]
shadow = { backend = "v2" }
compare = { noise_percent = 5, alert_divergence = 0.5 }
[routes.rollout]
candidate = "v2"
steps = [10, 100]
errors = { rel_margin = 0.1, abs_margin = 0.01, hard_max = 0.2 }
predictions = { max_divergence = 0.04, max_label_flip = 0.02 }

[[routes]]
name = "shadowed"
match = { path_prefix = "/shadowed/" }
split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]
shadow = { backend = "v3" }
compare = { alert_divergence = 0.25 }

[[routes]]
name = "plain"
split = [ { backend = "v1", weight = 1 } ]
"#,
        );
        let budgets = snapshot.budgets();
        let [rolled, shadowed, plain] = &budgets[..] else {
            panic!("one budget per route");
        };
        assert_eq!(rolled.route, "rolled");
        assert_eq!(
            rolled.baseline,
            ["v1", "v3"],
            "every backend but the candidate"
        );
        assert_eq!(
            rolled.errors,
            Some(ErrorBudget {
                rel_margin: 0.1,
                abs_margin: 0.01,
                hard_max: 0.2
            })
        );
        assert_eq!(
            rolled.divergence,
            Some(Budget {
                limit: 0.04,
                setting: "rollout predictions.max_divergence",
                above_noise: true
            }),
            "the gate, not alert_divergence"
        );
        assert_eq!(rolled.label_flip.map(|b| b.limit), Some(0.02));
        assert_eq!(rolled.noise.len(), 2, "the baseline's noise series");

        assert_eq!(shadowed.baseline, ["v1"], "the split's first");
        assert_eq!(shadowed.errors, None);
        assert_eq!(
            shadowed.divergence,
            Some(Budget {
                limit: 0.25,
                setting: "compare.alert_divergence",
                above_noise: false
            })
        );
        assert_eq!(shadowed.label_flip, None);

        assert_eq!((plain.divergence, plain.label_flip), (None, None));
    }
}
