//! Rolling per-version figures for the built-in dashboard (`GET /stats`): the last
//! minute, in one-second slots, fed by the same two recording calls as the metrics.
//!
//! Prometheus keeps the history; this keeps just enough for a page that needs no
//! Prometheus to answer "is v2 ready?" at a glance.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::exporter::{DEVIATION_BUCKETS, DURATION_BUCKETS};
use crate::{ComparisonRecord, RequestRecord, Role, ShadowOutcome};

/// How far back the figures reach.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How many divergent pairs the page lists.
pub const RECENT_DIVERGENCES: usize = 20;

/// Requests of one (route, backend, role) in one second.
#[derive(Debug, Clone, Default)]
struct RequestSlot {
    second: u64,
    count: u64,
    errors: u64,
    /// Counts per `DURATION_BUCKETS` upper bound, plus one overflow slot.
    latency: [u64; DURATION_BUCKETS.len() + 1],
}

/// Comparisons of one (route, shadow backend) in one second.
#[derive(Debug, Clone, Default)]
struct ComparisonSlot {
    second: u64,
    outcomes: [u64; 7],
    agree: u64,
    disagree: u64,
    deviation: [u64; DEVIATION_BUCKETS.len() + 1],
}

/// A divergent pair as the page lists it.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// Seconds since the Unix epoch.
    pub unix_time: f64,
    /// Route name.
    pub route: String,
    /// Shadow backend name.
    pub backend: String,
    /// The request id.
    pub request_id: String,
    /// The first differing JSON pointers.
    pub pointers: Vec<String>,
    /// Largest numeric deviation.
    pub max_abs_deviation: Option<f64>,
}

/// Slots by route, then backend: looked up with borrowed names, so a request that
/// finds its series allocates nothing.
type ByVersion<T> = HashMap<String, HashMap<String, T>>;

#[derive(Default)]
struct Store {
    /// Live slots and shadow slots.
    requests: ByVersion<[VecDeque<RequestSlot>; 2]>,
    comparisons: ByVersion<VecDeque<ComparisonSlot>>,
    divergences: VecDeque<Divergence>,
}

fn series<'s, T: Default>(map: &'s mut ByVersion<T>, route: &str, backend: &str) -> &'s mut T {
    if !map.contains_key(route) {
        map.insert(route.to_owned(), HashMap::new());
    }
    let backends = map.get_mut(route).expect("inserted above");
    if !backends.contains_key(backend) {
        backends.insert(backend.to_owned(), T::default());
    }
    backends.get_mut(backend).expect("inserted above")
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Live => 0,
        Role::Shadow => 1,
    }
}

/// The process's rolling figures.
pub struct Stats {
    started: Instant,
    store: Mutex<Store>,
}

/// The one instance the recording calls feed.
pub fn global() -> &'static Stats {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS.get_or_init(|| Stats {
        started: Instant::now(),
        store: Mutex::new(Store::default()),
    })
}

const OUTCOMES: [ShadowOutcome; 7] = [
    ShadowOutcome::Match,
    ShadowOutcome::Diverged,
    ShadowOutcome::ShadowError,
    ShadowOutcome::LiveError,
    ShadowOutcome::Timeout,
    ShadowOutcome::Dropped,
    ShadowOutcome::Skipped,
];

fn bucket_of(value: f64, bounds: &[f64]) -> usize {
    bounds
        .iter()
        .position(|b| value <= *b)
        .unwrap_or(bounds.len())
}

/// The slot for `second` at the back of `slots`, dropping slots older than the window.
fn slot<T: Default + Clone>(
    slots: &mut VecDeque<T>,
    second: u64,
    second_of: fn(&T) -> u64,
    init: fn(u64) -> T,
) -> &mut T {
    while slots
        .front()
        .is_some_and(|s| second_of(s) + WINDOW.as_secs() <= second)
    {
        slots.pop_front();
    }
    if slots.back().is_none_or(|s| second_of(s) != second) {
        slots.push_back(init(second));
    }
    let last = slots.len() - 1;
    &mut slots[last]
}

impl Stats {
    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Adds a finished exchange.
    pub fn request(&self, r: &RequestRecord<'_>) {
        let second = self.second();
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        let slots = &mut series(&mut store.requests, r.route, r.backend)[role_index(r.role)];
        let s = slot(
            slots,
            second,
            |s: &RequestSlot| s.second,
            |second| RequestSlot {
                second,
                ..RequestSlot::default()
            },
        );
        s.count += 1;
        if r.status.is_none_or(|code| code >= 500) {
            s.errors += 1;
        }
        s.latency[bucket_of(r.duration.as_secs_f64(), &DURATION_BUCKETS)] += 1;
    }

    /// Adds a comparison.
    pub fn comparison(&self, r: &ComparisonRecord<'_>) {
        let second = self.second();
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        let slots = series(&mut store.comparisons, r.route, r.backend);
        let s = slot(
            slots,
            second,
            |s: &ComparisonSlot| s.second,
            |second| ComparisonSlot {
                second,
                ..ComparisonSlot::default()
            },
        );
        if let Some(i) = OUTCOMES.iter().position(|o| *o == r.outcome) {
            s.outcomes[i] += 1;
        }
        match r.label_agreement {
            Some(true) => s.agree += 1,
            Some(false) => s.disagree += 1,
            None => {}
        }
        if let Some(d) = r.max_abs_deviation {
            s.deviation[bucket_of(d, &DEVIATION_BUCKETS)] += 1;
        }
    }

    /// Adds a divergent pair to the recent list.
    pub fn divergence(&self, d: Divergence) {
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        if store.divergences.len() == RECENT_DIVERGENCES {
            store.divergences.pop_front();
        }
        store.divergences.push_back(d);
    }

    /// Forgets routes and backends that are no longer configured.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        for (route, backends) in store.requests.iter_mut() {
            backends.retain(|backend, _| keep(route, backend));
        }
        for (route, backends) in store.comparisons.iter_mut() {
            backends.retain(|backend, _| keep(route, backend));
        }
        store.requests.retain(|_, backends| !backends.is_empty());
        store.comparisons.retain(|_, backends| !backends.is_empty());
    }

    /// The figures of the last [`WINDOW`], as `/stats` serves them.
    pub fn snapshot(&self) -> Value {
        let now = self.second();
        let window = WINDOW.as_secs().min(now + 1) as f64;
        let Ok(store) = self.store.lock() else {
            return json!({});
        };
        let live_slots = |slots: &VecDeque<RequestSlot>| -> Vec<RequestSlot> {
            slots
                .iter()
                .filter(|s| s.second + WINDOW.as_secs() > now)
                .cloned()
                .collect()
        };
        let mut versions = Vec::new();
        let requests = store.requests.iter().flat_map(|(route, backends)| {
            backends.iter().flat_map(move |(backend, by_role)| {
                [Role::Live, Role::Shadow]
                    .into_iter()
                    .map(move |role| (route, backend, role, &by_role[role_index(role)]))
            })
        });
        for (route, backend, role, slots) in requests {
            if slots.is_empty() {
                continue;
            }
            let slots = live_slots(slots);
            let count: u64 = slots.iter().map(|s| s.count).sum();
            let errors: u64 = slots.iter().map(|s| s.errors).sum();
            let mut latency = [0u64; DURATION_BUCKETS.len() + 1];
            for s in &slots {
                for (total, n) in latency.iter_mut().zip(s.latency) {
                    *total += n;
                }
            }
            let per_second: Vec<u64> = (now.saturating_sub(WINDOW.as_secs() - 1)..=now)
                .map(|sec| {
                    slots
                        .iter()
                        .find(|s| s.second == sec)
                        .map_or(0, |s| s.count)
                })
                .collect();
            versions.push(json!({
                "route": route,
                "backend": backend,
                "role": role.label(),
                "requests": count,
                "rate": count as f64 / window,
                "error_rate": if count == 0 { 0.0 } else { errors as f64 / count as f64 },
                "p50": quantile(&latency, &DURATION_BUCKETS, 0.50),
                "p95": quantile(&latency, &DURATION_BUCKETS, 0.95),
                "p99": quantile(&latency, &DURATION_BUCKETS, 0.99),
                "per_second": per_second,
            }));
        }
        versions.sort_by(|a, b| {
            (
                a["route"].as_str(),
                a["role"].as_str(),
                a["backend"].as_str(),
            )
                .cmp(&(
                    b["route"].as_str(),
                    b["role"].as_str(),
                    b["backend"].as_str(),
                ))
        });
        let mut shadows = Vec::new();
        let comparisons = store
            .comparisons
            .iter()
            .flat_map(|(route, backends)| backends.iter().map(move |(b, slots)| (route, b, slots)));
        for (route, backend, slots) in comparisons {
            let slots: Vec<&ComparisonSlot> = slots
                .iter()
                .filter(|s| s.second + WINDOW.as_secs() > now)
                .collect();
            let mut outcomes = serde_json::Map::new();
            for (i, o) in OUTCOMES.iter().enumerate() {
                outcomes.insert(
                    o.label().to_owned(),
                    slots.iter().map(|s| s.outcomes[i]).sum::<u64>().into(),
                );
            }
            let (matched, diverged) = (
                outcomes["match"].as_u64().unwrap_or(0),
                outcomes["diverged"].as_u64().unwrap_or(0),
            );
            let (agree, disagree): (u64, u64) = (
                slots.iter().map(|s| s.agree).sum(),
                slots.iter().map(|s| s.disagree).sum(),
            );
            let mut deviation = vec![0u64; DEVIATION_BUCKETS.len() + 1];
            for s in &slots {
                for (total, n) in deviation.iter_mut().zip(s.deviation) {
                    *total += n;
                }
            }
            shadows.push(json!({
                "route": route,
                "backend": backend,
                "compared": matched + diverged,
                "divergence_rate": ratio(diverged, matched + diverged),
                "label_agreement": ratio(agree, agree + disagree),
                "outcomes": outcomes,
                "deviation_buckets": DEVIATION_BUCKETS,
                "deviation_counts": deviation,
            }));
        }
        shadows.sort_by(|a, b| a["route"].as_str().cmp(&b["route"].as_str()));
        let recent: Vec<Value> = store
            .divergences
            .iter()
            .rev()
            .map(|d| {
                json!({
                    "unix_time": d.unix_time,
                    "route": d.route,
                    "backend": d.backend,
                    "request_id": d.request_id,
                    "pointers": d.pointers,
                    "max_abs_deviation": d.max_abs_deviation,
                })
            })
            .collect();
        json!({ "window_seconds": window, "versions": versions, "shadows": shadows, "recent_divergences": recent })
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The `q` quantile of a bucketed distribution, interpolated linearly inside the
/// bucket it falls in (as Prometheus's `histogram_quantile` does).
fn quantile(counts: &[u64], bounds: &[f64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, &n) in counts.iter().enumerate() {
        let next = seen + n as f64;
        if next >= rank && n > 0 {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let upper = bounds.get(i).copied().unwrap_or(bounds[bounds.len() - 1]);
            return Some(lower + (upper - lower) * ((rank - seen) / n as f64));
        }
        seen = next;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let bounds = [0.1, 0.2, 0.4];
        let median = quantile(&[0, 10, 0, 0], &bounds, 0.5).unwrap();
        assert!((median - 0.15).abs() < 1e-12, "{median}");
        assert_eq!(quantile(&[10, 0, 0, 0], &bounds, 1.0), Some(0.1));
        assert_eq!(quantile(&[0, 0, 0, 0], &bounds, 0.5), None);
        assert_eq!(quantile(&[0, 0, 0, 4], &bounds, 0.99), Some(0.4));
    }

    #[test]
    fn requests_and_comparisons_roll_up_per_version() {
        let stats = Stats {
            started: Instant::now(),
            store: Mutex::new(Store::default()),
        };
        for status in [Some(200), Some(200), Some(503), None] {
            stats.request(&RequestRecord {
                route: "r",
                backend: "v1",
                role: Role::Live,
                status,
                duration: Duration::from_millis(3),
                request_id: "id",
                upstream: "127.0.0.1:1",
                bytes: None,
            });
        }
        for outcome in [
            ShadowOutcome::Match,
            ShadowOutcome::Diverged,
            ShadowOutcome::Diverged,
            ShadowOutcome::Dropped,
        ] {
            stats.comparison(&ComparisonRecord {
                route: "r",
                backend: "v2",
                outcome,
                max_abs_deviation: Some(0.02),
                label_agreement: Some(outcome == ShadowOutcome::Match),
            });
        }
        let s = stats.snapshot();
        let v = &s["versions"][0];
        assert_eq!(
            (v["requests"].as_u64(), v["error_rate"].as_f64()),
            (Some(4), Some(0.5))
        );
        assert!(
            v["p50"].as_f64().is_some_and(|p| p > 0.0025 && p <= 0.005),
            "{v}"
        );
        let sh = &s["shadows"][0];
        assert_eq!(sh["compared"], 3);
        assert!((sh["divergence_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(sh["label_agreement"], 0.25);
        assert_eq!(sh["outcomes"]["dropped"], 1);
        stats.retain(|_, _| false);
        assert_eq!(stats.snapshot()["versions"], json!([]));
    }
}
