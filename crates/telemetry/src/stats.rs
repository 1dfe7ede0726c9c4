//! Rolling per-version figures for the built-in dashboard (`GET /stats`): the last
//! minute, in one-second slots ([`crate::window`]), fed by the same handles as the
//! metrics ([`crate::series`]).
//!
//! Prometheus keeps the history; this keeps just enough for a page that needs no
//! Prometheus to answer "is v2 ready?" at a glance. The figures are read from the
//! series the serving routes hold, so a route removed by a reload leaves the page.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Instant;

use serde_json::{json, Value};

use crate::exporter::{DEVIATION_BUCKETS, DURATION_BUCKETS};
use crate::window::{read, zero, Slot, WINDOW};
use crate::{ComparisonSeries, ExchangeSeries, ShadowOutcome, Telemetry};

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
    }
}

/// A divergent pair as the page lists it.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// Seconds since the Unix epoch.
    pub unix_time: f64,
    /// Route name.
    pub route: String,
    /// The shadow backend's name.
    pub shadow_backend: String,
    /// The request id.
    pub request_id: String,
    /// The first differing JSON pointers.
    pub pointers: Vec<String>,
    /// Largest numeric deviation.
    pub max_abs_deviation: Option<f64>,
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
    /// serving routes hold), as `/stats` serves them.
    pub fn stats<'s>(
        &self,
        versions: impl IntoIterator<Item = &'s ExchangeSeries>,
        shadows: impl IntoIterator<Item = &'s ComparisonSeries>,
    ) -> Value {
        let now = self.second(Instant::now());
        let window = WINDOW.as_secs().min(now + 1) as f64;
        let mut versions: Vec<Value> = versions
            .into_iter()
            .filter(|series| series.window.used())
            .map(|series| version(series, now, window))
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
            .map(|series| shadow(series, now))
            .collect();
        shadows.sort_by(|a, b| a["route"].as_str().cmp(&b["route"].as_str()));
        let recent: Vec<Value> = self
            .recent_divergences()
            .into_iter()
            .map(|d| {
                json!({
                    "unix_time": d.unix_time,
                    "route": d.route,
                    "backend": d.shadow_backend,
                    "request_id": d.request_id,
                    "pointers": d.pointers,
                    "max_abs_deviation": d.max_abs_deviation,
                })
            })
            .collect();
        json!({ "window_seconds": window, "versions": versions, "shadows": shadows, "recent_divergences": recent })
    }
}

fn version(series: &ExchangeSeries, now: u64, window: f64) -> Value {
    let (mut count, mut errors) = (0, 0);
    let mut latency = [0u64; DURATION_BUCKETS.len() + 1];
    let mut per_second = vec![0u64; WINDOW.as_secs() as usize];
    let first = (now + 1).saturating_sub(WINDOW.as_secs());
    for (second, slot) in series.window.recent(now) {
        let n = read(&slot.count);
        count += n;
        errors += read(&slot.errors);
        for (total, bucket) in latency.iter_mut().zip(&slot.latency) {
            *total += read(bucket);
        }
        if let Some(at) = per_second.get_mut((second - first) as usize) {
            *at = n;
        }
    }
    // Oldest first, as many seconds as have passed (at most the window).
    let per_second = &per_second[..(now - first + 1) as usize];
    json!({
        "route": series.route(),
        "backend": series.backend(),
        "role": series.role().label(),
        "requests": count,
        "rate": count as f64 / window,
        "error_rate": if count == 0 { 0.0 } else { errors as f64 / count as f64 },
        "p50": quantile(&latency, &DURATION_BUCKETS, 0.50),
        "p95": quantile(&latency, &DURATION_BUCKETS, 0.95),
        "p99": quantile(&latency, &DURATION_BUCKETS, 0.99),
        "per_second": per_second,
    })
}

fn shadow(series: &ComparisonSeries, now: u64) -> Value {
    let mut outcomes = [0u64; ShadowOutcome::ALL.len()];
    let (mut agree, mut disagree) = (0, 0);
    let mut deviation = [0u64; DEVIATION_BUCKETS.len() + 1];
    for (_, slot) in series.window.recent(now) {
        for (total, n) in outcomes.iter_mut().zip(&slot.outcomes) {
            *total += read(n);
        }
        agree += read(&slot.agree);
        disagree += read(&slot.disagree);
        for (total, n) in deviation.iter_mut().zip(&slot.deviation) {
            *total += read(n);
        }
    }
    let by_label: serde_json::Map<String, Value> = ShadowOutcome::ALL
        .iter()
        .map(|o| (o.label().to_owned(), outcomes[o.index()].into()))
        .collect();
    let matched = outcomes[ShadowOutcome::Match.index()];
    let diverged = outcomes[ShadowOutcome::Diverged.index()];
    json!({
        "route": series.route(),
        "backend": series.shadow_backend(),
        "compared": matched + diverged,
        "divergence_rate": ratio(diverged, matched + diverged),
        "label_agreement": ratio(agree, agree + disagree),
        "outcomes": by_label,
        "deviation_buckets": DEVIATION_BUCKETS,
        "deviation_counts": deviation,
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
                outcome,
                max_abs_deviation: Some(0.02),
                label_agreement: Some(outcome == ShadowOutcome::Match),
            });
        }
        let s = telemetry.stats([&live, &idle], [&comparisons]);
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
}
