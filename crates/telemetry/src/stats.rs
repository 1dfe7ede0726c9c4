//! Rolling per-version figures for the built-in dashboard (`GET /stats`): the last
//! minute, in one-second slots ([`crate::window`]), fed by the same handles as the
//! metrics ([`crate::series`]).
//!
//! Prometheus keeps the history; this keeps just enough for a page that needs no
//! Prometheus to answer "is v2 ready?" at a glance. The figures are read from the
//! series the serving routes hold, so a route removed by a reload leaves the page.
//!
//! Besides each version's own figures, `/stats` says how each compares with its
//! route's baseline (the differences in error rate and latency) and, where the
//! route's config sets a budget ([`RouteBudget`]), whether a figure is over it: the
//! page colours a figure only when there is a budget behind the colour.
//!
//! What the latencies measure (see `veer_request_duration_seconds`): a live
//! request from sending it upstream (after veer read a body it mirrors; connecting
//! and a retry included) to the response head, or for a gRPC call whose status
//! comes in trailers to the end of the response; a shadow from sending the copy to
//! the end of its body. So a shadow's latency includes its body's transfer and a
//! live one does not: their difference is not like for like, and says so.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{json, Value};

use crate::exporter::{DEVIATION_BUCKETS, DURATION_BUCKETS};
use crate::float_counters::read_float;
use crate::window::{read, zero, Slot, WINDOW};
use crate::{ComparisonSeries, ExchangeSeries, Role, ShadowOutcome, Telemetry, RECENT_DIVERGENCES};

/// Requests of one series in one second.
#[derive(Default)]
pub(crate) struct RequestSlot {
    tag: AtomicU64,
    pub(crate) count: AtomicU32,
    pub(crate) errors: AtomicU32,
    /// Counts per `DURATION_BUCKETS` upper bound, plus one overflow slot.
    pub(crate) latency: [AtomicU32; DURATION_BUCKETS.len() + 1],
}

impl Slot for RequestSlot {
    fn tag(&self) -> &AtomicU64 {
        &self.tag
    }

    fn clear(&self) {
        zero([&self.count, &self.errors].into_iter().chain(&self.latency));
    }
}

/// Comparisons of one series in one second.
#[derive(Default)]
pub(crate) struct ComparisonSlot {
    tag: AtomicU64,
    pub(crate) outcomes: [AtomicU32; ShadowOutcome::ALL.len()],
    pub(crate) agree: AtomicU32,
    pub(crate) disagree: AtomicU32,
    pub(crate) deviation: [AtomicU32; DEVIATION_BUCKETS.len() + 1],
    /// The signed deviation's sums (`f64` bits) and the pairs of numbers counted.
    pub(crate) shift_up: AtomicU64,
    pub(crate) shift_down: AtomicU64,
    pub(crate) numbers: AtomicU64,
}

impl Slot for ComparisonSlot {
    fn tag(&self) -> &AtomicU64 {
        &self.tag
    }

    fn clear(&self) {
        zero(
            self.outcomes
                .iter()
                .chain([&self.agree, &self.disagree])
                .chain(&self.deviation),
        );
        for total in [&self.shift_up, &self.shift_down] {
            total.store(0f64.to_bits(), Ordering::Relaxed);
        }
        self.numbers.store(0, Ordering::Relaxed);
    }
}

/// What the page compares one route's figures with, from the route's config.
#[derive(Clone, Default)]
pub struct RouteBudget<'s> {
    /// The route's name.
    pub route: &'s str,
    /// The live backends every other version of the route is compared with: for a
    /// rollout every backend but the candidate (as its gates judge), else the first
    /// backend of the split.
    pub baseline: Vec<&'s str>,
    /// The rollout's error budget for a candidate, when the route has a rollout.
    pub errors: Option<ErrorBudget>,
    /// The share of compared pairs that may diverge.
    pub divergence: Option<Budget>,
    /// The share of labelled pairs whose label may flip.
    pub label_flip: Option<Budget>,
    /// The route's noise comparisons (live against live) of its baseline backends:
    /// a rollout's prediction budgets are above this floor.
    pub noise: Vec<&'s ComparisonSeries>,
}

/// A rollout's `[errors]` gate: a candidate's error rate may be at most
/// `baseline × (1 + rel_margin) + abs_margin`, and never above `hard_max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorBudget {
    /// Relative margin over the baseline's rate.
    pub rel_margin: f64,
    /// Absolute margin over it.
    pub abs_margin: f64,
    /// The rate that rolls back whatever the baseline does.
    pub hard_max: f64,
}

impl ErrorBudget {
    /// The highest error rate within budget, given the baseline's.
    pub fn limit(&self, baseline_rate: f64) -> f64 {
        (baseline_rate * (1.0 + self.rel_margin) + self.abs_margin).min(self.hard_max)
    }
}

/// A share (0 to 1) a figure may reach, and the setting it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// The share.
    pub limit: f64,
    /// Where it is set, as the page names it (`compare.alert_divergence`,
    /// `rollout predictions.max_divergence`).
    pub setting: &'static str,
    /// True when the budget is above the noise floor: the route's own
    /// live-against-live rate is added to it, as the rollout's gate does.
    pub above_noise: bool,
}

/// The index of the bucket `value` falls in: the first upper bound at or above it,
/// or the overflow slot past the last.
pub(crate) fn bucket_of(value: f64, bounds: &[f64]) -> usize {
    bounds
        .iter()
        .position(|b| value <= *b)
        .unwrap_or(bounds.len())
}

impl Telemetry {
    /// The figures of the last minute for `versions` and `shadows` (the series the
    /// serving routes hold), judged against each route's `budgets`, and the newest
    /// divergent pairs, as `/stats` serves them.
    pub fn stats<'s>(
        &self,
        versions: impl IntoIterator<Item = &'s ExchangeSeries>,
        shadows: impl IntoIterator<Item = &'s ComparisonSeries>,
        budgets: &[RouteBudget<'_>],
    ) -> Value {
        let now = self.second(Instant::now());
        let window = WINDOW.as_secs().min(now + 1) as f64;
        let read_versions: Vec<(&ExchangeSeries, Requests)> = versions
            .into_iter()
            .filter(|series| series.window.used())
            .map(|series| (series, Requests::read(series, now)))
            .collect();
        let budget_of = |route: &str| budgets.iter().find(|b| b.route == route);
        let mut versions: Vec<Value> = read_versions
            .iter()
            .map(|(series, figures)| {
                let mut row = figures.json(series, window);
                if let Some(budget) = budget_of(series.route()) {
                    judge_version(&mut row, series, figures, budget, &read_versions);
                }
                row
            })
            .collect();
        versions.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["route"].as_str().map(str::to_owned),
                    v["role"].as_str().map(str::to_owned),
                    v["backend"].as_str().map(str::to_owned),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut shadows: Vec<Value> = shadows
            .into_iter()
            .filter(|series| series.window.used())
            .map(|series| {
                let figures = Comparisons::read(series, now);
                let mut row = figures.json(series);
                if let Some(budget) = budget_of(series.route()) {
                    judge_shadow(&mut row, &figures, budget, now);
                }
                row
            })
            .collect();
        shadows.sort_by(|a, b| a["route"].as_str().cmp(&b["route"].as_str()));
        let recent: Vec<Value> = self.with_kept(|kept| {
            kept.newest(RECENT_DIVERGENCES)
                .map(|d| {
                    let differences: Vec<Value> = d
                        .differences
                        .iter()
                        .map(
                            |x| json!({ "pointer": x.pointer, "live": x.live, "shadow": x.shadow }),
                        )
                        .collect();
                    json!({
                        "unix_time": d.unix_time,
                        "route": d.route,
                        "backend": d.shadow_backend,
                        "request_id": d.request_id,
                        "differences": differences,
                        "max_abs_deviation": d.max_abs_deviation,
                        "label_agreement": d.label_agreement,
                        "label_flip": d.label_agreement == Some(false),
                    })
                })
                .collect()
        });
        json!({
            "window_seconds": window,
            "versions": versions,
            "shadows": shadows,
            "recent_divergences": recent,
        })
    }
}

/// One request series' last minute.
#[derive(Debug, Clone, Default)]
struct Requests {
    count: u64,
    errors: u64,
    latency: [u64; DURATION_BUCKETS.len() + 1],
    /// Requests per second, oldest first, as many seconds as have passed (at most
    /// the window).
    per_second: Vec<u64>,
}

impl Requests {
    fn read(series: &ExchangeSeries, now: u64) -> Requests {
        let mut figures = Requests::default();
        let mut per_second = vec![0u64; WINDOW.as_secs() as usize];
        let first = (now + 1).saturating_sub(WINDOW.as_secs());
        for (second, slot) in series.window.recent(now) {
            let n = read(&slot.count);
            figures.count += n;
            figures.errors += read(&slot.errors);
            for (total, bucket) in figures.latency.iter_mut().zip(&slot.latency) {
                *total += read(bucket);
            }
            if let Some(at) = per_second.get_mut((second - first) as usize) {
                *at = n;
            }
        }
        per_second.truncate((now - first + 1) as usize);
        figures.per_second = per_second;
        figures
    }

    /// Adds `other`'s counts (several baseline backends judged as one).
    fn merge(&mut self, other: &Requests) {
        self.count += other.count;
        self.errors += other.errors;
        for (total, n) in self.latency.iter_mut().zip(&other.latency) {
            *total += n;
        }
    }

    fn error_rate(&self) -> Option<f64> {
        ratio(self.errors, self.count)
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        quantile(&self.latency, &DURATION_BUCKETS, q)
    }

    fn json(&self, series: &ExchangeSeries, window: f64) -> Value {
        json!({
            "route": series.route(),
            "backend": series.backend(),
            "role": series.role().label(),
            "requests": self.count,
            "rate": self.count as f64 / window,
            "error_rate": self.error_rate().unwrap_or(0.0),
            "p50": self.quantile(0.50),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
            "per_second": self.per_second,
        })
    }
}

/// Adds to a version's row how it compares with its route's baseline (unless it is
/// part of the baseline), and for a rollout's live candidate whether its error rate
/// is over the rollout's budget.
fn judge_version(
    row: &mut Value,
    series: &ExchangeSeries,
    figures: &Requests,
    budget: &RouteBudget<'_>,
    all: &[(&ExchangeSeries, Requests)],
) {
    let live = series.role() == Role::Live;
    let in_baseline = |backend: &str| budget.baseline.contains(&backend);
    if live && in_baseline(series.backend()) {
        row["baseline"] = true.into();
        return;
    }
    let mut baseline = Requests::default();
    for (other, counts) in all {
        if other.route() == series.route()
            && other.role() == Role::Live
            && in_baseline(other.backend())
        {
            baseline.merge(counts);
        }
    }
    let Some(base_rate) = baseline.error_rate() else {
        return;
    };
    let difference = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let rate = figures.error_rate();
    row["against_baseline"] = json!({
        "backends": budget.baseline,
        "error_rate": difference(rate, Some(base_rate)),
        "p50": difference(figures.quantile(0.50), baseline.quantile(0.50)),
        "p95": difference(figures.quantile(0.95), baseline.quantile(0.95)),
        // A shadow's latency runs to the end of its body, a live one's to the head.
        "same_measure": live,
    });
    if let (true, Some(errors), Some(rate)) = (live, budget.errors, rate) {
        let limit = errors.limit(base_rate);
        row["error_budget"] = json!({
            "limit": limit,
            "over": rate > limit,
            "setting": "rollout errors (baseline × (1 + rel_margin) + abs_margin, at most hard_max)",
        });
    }
}

/// One comparison series' last minute.
#[derive(Debug, Clone, Default)]
struct Comparisons {
    outcomes: [u64; ShadowOutcome::ALL.len()],
    agree: u64,
    disagree: u64,
    deviation: [u64; DEVIATION_BUCKETS.len() + 1],
    shift_up: f64,
    shift_down: f64,
    numbers: u64,
}

impl Comparisons {
    fn read(series: &ComparisonSeries, now: u64) -> Comparisons {
        let mut figures = Comparisons::default();
        for (_, slot) in series.window.recent(now) {
            for (total, n) in figures.outcomes.iter_mut().zip(&slot.outcomes) {
                *total += read(n);
            }
            figures.agree += read(&slot.agree);
            figures.disagree += read(&slot.disagree);
            for (total, n) in figures.deviation.iter_mut().zip(&slot.deviation) {
                *total += read(n);
            }
            figures.shift_up += read_float(&slot.shift_up);
            figures.shift_down += read_float(&slot.shift_down);
            figures.numbers += slot.numbers.load(Ordering::Relaxed);
        }
        figures
    }

    fn merge(&mut self, other: &Comparisons) {
        for (total, n) in self.outcomes.iter_mut().zip(&other.outcomes) {
            *total += n;
        }
        self.agree += other.agree;
        self.disagree += other.disagree;
    }

    fn compared(&self) -> u64 {
        self.outcomes[ShadowOutcome::Match.index()] + self.diverged()
    }

    fn diverged(&self) -> u64 {
        self.outcomes[ShadowOutcome::Diverged.index()]
    }

    fn divergence_rate(&self) -> Option<f64> {
        ratio(self.diverged(), self.compared())
    }

    fn label_flip_rate(&self) -> Option<f64> {
        ratio(self.disagree, self.agree + self.disagree)
    }

    fn json(&self, series: &ComparisonSeries) -> Value {
        let by_label: serde_json::Map<String, Value> = ShadowOutcome::ALL
            .iter()
            .map(|o| (o.label().to_owned(), self.outcomes[o.index()].into()))
            .collect();
        json!({
            "route": series.route(),
            "backend": series.shadow_backend(),
            "compared": self.compared(),
            "divergence_rate": self.divergence_rate(),
            "label_agreement": ratio(self.agree, self.agree + self.disagree),
            "label_flip_rate": self.label_flip_rate(),
            "outcomes": by_label,
            "deviation_buckets": DEVIATION_BUCKETS,
            "deviation_counts": self.deviation,
            "shift": {
                "up": self.shift_up,
                "down": self.shift_down,
                "numbers": self.numbers,
                "mean": (self.numbers > 0).then(|| (self.shift_up - self.shift_down) / self.numbers as f64),
                "direction": direction(self.shift_up, self.shift_down, self.numbers),
            },
        })
    }
}

/// Adds to a shadow's row whether its divergence and label flips are over the
/// route's budgets: the budget plus, when it is above the noise floor, the route's
/// own live-against-live rate over the same minute.
fn judge_shadow(row: &mut Value, figures: &Comparisons, budget: &RouteBudget<'_>, now: u64) {
    let mut noise = Comparisons::default();
    for series in &budget.noise {
        noise.merge(&Comparisons::read(series, now));
    }
    let judged = |rate: Option<f64>, budget: Budget, floor: Option<f64>| {
        let floor = if budget.above_noise { floor } else { None };
        let limit = budget.limit + floor.unwrap_or(0.0);
        json!({
            "limit": limit,
            "over": rate.map(|r| r > limit),
            "setting": budget.setting,
            "noise_floor": floor,
        })
    };
    if let Some(b) = budget.divergence {
        row["divergence_budget"] = judged(figures.divergence_rate(), b, noise.divergence_rate());
    }
    if let Some(b) = budget.label_flip {
        row["label_flip_budget"] = judged(figures.label_flip_rate(), b, noise.label_flip_rate());
    }
}

/// Which way the shadow's numbers moved on the whole: `higher`, `lower`, or `even`
/// when the two sums differ by no more than their rounding (a row of class
/// probabilities that sums to 1 on both sides always comes out even); `None` with
/// no numbers compared.
fn direction(up: f64, down: f64, numbers: u64) -> Option<&'static str> {
    if numbers == 0 {
        return None;
    }
    let net = up - down;
    Some(if net.abs() <= 1e-9 * (up + down) {
        "even"
    } else if net > 0.0 {
        "higher"
    } else {
        "lower"
    })
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
    use crate::Role;

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
        let telemetry = Telemetry::new().expect("recorder");
        let live = telemetry.exchange_series("r", "v1", Role::Live);
        let idle = telemetry.exchange_series("r", "v2", Role::Live);
        let started = Instant::now() - std::time::Duration::from_millis(3);
        for status in [Some(200), Some(200), Some(503), None] {
            live.record(&crate::Exchange {
                status,
                started,
                request_id: "id",
                upstream: "127.0.0.1:1",
                bytes: None,
                grpc_status: None,
            });
        }
        let comparisons = telemetry.comparison_series("r", "v2");
        for outcome in [
            ShadowOutcome::Match,
            ShadowOutcome::Diverged,
            ShadowOutcome::Diverged,
            ShadowOutcome::Dropped,
        ] {
            comparisons.record(&crate::Judged {
                max_abs_deviation: Some(0.02),
                label_agreement: Some(outcome == ShadowOutcome::Match),
                ..crate::Judged::only(outcome)
            });
        }
        let s = telemetry.stats([&live, &idle], [&comparisons], &[]);
        assert_eq!(s["versions"].as_array().map(Vec::len), Some(1), "{s}");
        let v = &s["versions"][0];
        assert_eq!(
            (v["requests"].as_u64(), v["error_rate"].as_f64()),
            (Some(4), Some(0.5))
        );
        assert!(
            v["p50"].as_f64().is_some_and(|p| p > 0.0025 && p <= 0.005),
            "{v}"
        );
        assert_eq!(
            v["per_second"].as_array().and_then(|p| p.last()),
            Some(&json!(4))
        );
        let sh = &s["shadows"][0];
        assert_eq!(sh["compared"], 3);
        assert!((sh["divergence_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(sh["label_agreement"], 0.25);
        assert_eq!(sh["outcomes"]["dropped"], 1);
        let text = telemetry.render();
        assert!(
            text.contains(
                r#"veer_requests_total{route="r",backend="v1",role="live",code="503"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"veer_requests_total{route="r",backend="v1",role="live",code="error"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"backend="v2",role="live""#),
            "idle series stay out: {text}"
        );
    }

    #[test]
    fn a_series_keeps_eight_codes_at_hand_and_counts_the_rest_too() {
        let telemetry = Telemetry::new().expect("recorder");
        let series = telemetry.exchange_series("r", "v1", Role::Shadow);
        let codes: Vec<u16> = (200..212).collect();
        for code in &codes {
            for _ in 0..2 {
                series.record(&crate::Exchange {
                    status: Some(*code),
                    started: Instant::now(),
                    request_id: "id",
                    upstream: "u",
                    bytes: None,
                    grpc_status: None,
                });
            }
        }
        let text = telemetry.render();
        for code in codes {
            let line = format!(
                r#"veer_requests_total{{route="r",backend="v1",role="shadow",code="{code}"}} 2"#
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    fn exchange(status: u16) -> crate::Exchange<'static> {
        crate::Exchange {
            status: Some(status),
            started: Instant::now(),
            request_id: "id",
            upstream: "u",
            bytes: None,
            grpc_status: None,
        }
    }

    #[test]
    fn versions_are_compared_with_the_baseline_and_its_error_budget() {
        let telemetry = Telemetry::new().expect("recorder");
        let v1 = telemetry.exchange_series("r", "v1", Role::Live);
        let v2 = telemetry.exchange_series("r", "v2", Role::Live);
        let v2_shadow = telemetry.exchange_series("r", "v2", Role::Shadow);
        // v1: 1 error in 100; v2: 2 in 20.
        for i in 0..100 {
            v1.record(&exchange(if i == 0 { 500 } else { 200 }));
        }
        for i in 0..20 {
            v2.record(&exchange(if i < 2 { 503 } else { 200 }));
            v2_shadow.record(&exchange(200));
        }
        let errors = ErrorBudget {
            rel_margin: 0.2,
            abs_margin: 0.005,
            hard_max: 0.05,
        };
        let budget = RouteBudget {
            route: "r",
            baseline: vec!["v1"],
            errors: Some(errors),
            ..RouteBudget::default()
        };
        let s = telemetry.stats([&v1, &v2, &v2_shadow], [], &[budget]);
        let row = |backend: &str, role: &str| {
            s["versions"]
                .as_array()
                .and_then(|v| {
                    v.iter()
                        .find(|v| v["backend"] == backend && v["role"] == role)
                })
                .cloned()
                .unwrap_or_else(|| panic!("{backend} {role} in {s}"))
        };
        assert_eq!(row("v1", "live")["baseline"], true);
        let v2_row = row("v2", "live");
        let against = &v2_row["against_baseline"];
        assert_eq!(against["backends"], json!(["v1"]));
        assert!((against["error_rate"].as_f64().unwrap() - (0.1 - 0.01)).abs() < 1e-12);
        assert_eq!(against["same_measure"], true);
        assert!(against["p50"].is_number() && against["p95"].is_number());
        // 1 % × 1.2 + 0.5 % = 1.7 %: 10 % is over it.
        let budget = &v2_row["error_budget"];
        assert!(
            (budget["limit"].as_f64().unwrap() - 0.017).abs() < 1e-12,
            "{budget}"
        );
        assert_eq!(budget["over"], true);
        // A shadow row is compared too, but its latency is not like for like, and the
        // rollout's error budget is for live traffic.
        let shadow_row = row("v2", "shadow");
        assert_eq!(shadow_row["against_baseline"]["same_measure"], false);
        assert!(shadow_row.get("error_budget").is_none());
    }

    #[test]
    fn a_shift_lost_in_rounding_is_even() {
        assert_eq!(direction(0.0, 0.0, 0), None);
        assert_eq!(direction(0.3, 0.1, 2), Some("higher"));
        assert_eq!(direction(0.1, 0.3, 2), Some("lower"));
        // [0.2, 0.8] against [0.35, 0.65]: +0.15 and -0.15, as floats.
        let (up, down) = (0.35 - 0.2, 0.8 - 0.65);
        assert_ne!(up, down);
        assert_eq!(direction(up, down, 2), Some("even"));
        assert_eq!(direction(0.0, 0.0, 3), Some("even"));
    }

    #[test]
    fn the_error_budget_is_the_margins_over_the_baseline_capped_by_hard_max() {
        let errors = ErrorBudget {
            rel_margin: 0.2,
            abs_margin: 0.005,
            hard_max: 0.05,
        };
        assert!((errors.limit(0.0) - 0.005).abs() < 1e-12);
        assert!((errors.limit(0.1) - 0.05).abs() < 1e-12, "hard_max caps it");
    }

    fn judged(outcome: ShadowOutcome, agree: Option<bool>) -> crate::Judged {
        crate::Judged {
            label_agreement: agree,
            ..crate::Judged::only(outcome)
        }
    }

    #[test]
    fn divergence_is_judged_against_its_budget_above_the_noise_floor() {
        let telemetry = Telemetry::new().expect("recorder");
        let under = telemetry.comparison_series("calm", "v2");
        let over = telemetry.comparison_series("busy", "v2");
        let noise = telemetry.noise_series("busy", "v1");
        // calm: 1 of 20 diverged (5 %); busy: 6 of 20 (30 %), with a noise floor of
        // 10 % (2 of 20 live-vs-live pairs).
        for i in 0..20 {
            let outcome = |diverged| {
                if diverged {
                    ShadowOutcome::Diverged
                } else {
                    ShadowOutcome::Match
                }
            };
            under.record(&judged(outcome(i < 1), Some(true)));
            over.record(&judged(outcome(i < 6), Some(i >= 6)));
            noise.record(&judged(outcome(i < 2), Some(true)));
        }
        let alert = Budget {
            limit: 0.1,
            setting: "compare.alert_divergence",
            above_noise: false,
        };
        let rollout = Budget {
            limit: 0.1,
            setting: "rollout predictions.max_divergence",
            above_noise: true,
        };
        let budgets = [
            RouteBudget {
                route: "calm",
                divergence: Some(alert),
                ..RouteBudget::default()
            },
            RouteBudget {
                route: "busy",
                divergence: Some(rollout),
                label_flip: Some(Budget {
                    limit: 0.03,
                    ..rollout
                }),
                noise: vec![&noise],
                ..RouteBudget::default()
            },
        ];
        let s = telemetry.stats([], [&under, &over], &budgets);
        let shadow = |route: &str| {
            s["shadows"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["route"] == route))
                .cloned()
                .expect("a shadow row")
        };
        let calm = &shadow("calm")["divergence_budget"];
        assert_eq!(
            (calm["limit"].as_f64(), &calm["over"], &calm["noise_floor"]),
            (Some(0.1), &json!(false), &Value::Null),
            "{calm}"
        );
        assert_eq!(calm["setting"], "compare.alert_divergence");
        let busy = shadow("busy");
        let divergence = &busy["divergence_budget"];
        assert!(
            (divergence["limit"].as_f64().unwrap() - 0.2).abs() < 1e-12,
            "{divergence}"
        );
        assert_eq!(divergence["over"], true);
        assert_eq!(divergence["noise_floor"], 0.1);
        let flips = &busy["label_flip_budget"];
        assert!((busy["label_flip_rate"].as_f64().unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(
            (flips["limit"].as_f64(), &flips["over"]),
            (Some(0.03), &json!(true))
        );
    }

    #[test]
    fn the_signed_deviation_is_shown_and_exported_by_direction() {
        let telemetry = Telemetry::new().expect("recorder");
        let comparisons = telemetry.comparison_series("r", "v2");
        // v2 scores higher: +0.3 and +0.1 against -0.05, over 4 numbers.
        comparisons.record(&crate::Judged {
            shift_up: 0.4,
            shift_down: 0.05,
            numbers: 4,
            ..crate::Judged::only(ShadowOutcome::Diverged)
        });
        let shift = &telemetry.stats([], [&comparisons], &[])["shadows"][0]["shift"];
        assert_eq!(shift["numbers"], 4);
        assert_eq!(shift["direction"], "higher");
        assert!(
            (shift["mean"].as_f64().unwrap() - 0.0875).abs() < 1e-12,
            "{shift}"
        );
        let text = telemetry.render();
        for line in [
            "# TYPE veer_shadow_deviation_up_total counter",
            r#"veer_shadow_deviation_up_total{route="r",backend="v2"} 0.4"#,
            r#"veer_shadow_deviation_down_total{route="r",backend="v2"} 0.05"#,
            r#"veer_shadow_deviation_numbers_total{route="r",backend="v2"} 4"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // A noise series compares a backend with itself: no direction to export.
        let noise = telemetry.noise_series("r", "v1");
        noise.record(&crate::Judged {
            shift_up: 0.1,
            numbers: 1,
            ..crate::Judged::only(ShadowOutcome::Match)
        });
        assert!(!telemetry.render().contains("backend=\"v1\"} 0.1"));
    }

    #[test]
    fn kept_divergences_are_listed_newest_first_and_answered_by_request_id() {
        let telemetry = Telemetry::new().expect("recorder");
        for id in ["a", "b"] {
            telemetry.record_divergence(crate::Divergence {
                unix_time: 1.0,
                route: "r".into(),
                shadow_backend: "v2".into(),
                request_id: id.into(),
                differences: vec![crate::ShownDifference {
                    pointer: "/predictions/0".into(),
                    live: Some("0.1".into()),
                    shadow: Some("0.9".into()),
                }],
                max_abs_deviation: Some(0.8),
                label_agreement: Some(false),
                record: format!(r#"{{"request_id":"{id}"}}"#),
            });
        }
        let recent = &telemetry.stats([], [], &[])["recent_divergences"];
        assert_eq!(recent[0]["request_id"], "b");
        assert_eq!(recent[1]["request_id"], "a");
        assert_eq!(
            recent[0]["differences"][0],
            json!({"pointer": "/predictions/0", "live": "0.1", "shadow": "0.9"})
        );
        assert_eq!(recent[0]["label_flip"], true);
        assert_eq!(
            telemetry.divergence_record("a").as_deref(),
            Some(r#"{"request_id":"a"}"#)
        );
        assert_eq!(telemetry.divergence_record("c"), None);
    }
}
