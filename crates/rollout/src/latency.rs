//! Which requests were slow: the latency signal reduced to counts, so it is judged the
//! way errors are.
//!
//! The proxy counts each arm's request durations in one fixed histogram layout (this
//! module's [`BUCKETS`]); with a fixed layout, counts from several replicas add up
//! bucket by bucket. Over the step so far, the baseline's `tail` quantile falls in some
//! bucket `q`; a request of either arm is *slow* when it landed in a bucket above `q`.
//! The candidate's share of slow requests is then compared with the baseline's, with
//! the same confidence sequences as errors. Comparing shares rather than quantile
//! estimates keeps the statistics exact (counts are binomial) and needs no assumption
//! about the shape of the latency distribution.

use crate::{Arms, Count};

/// Lower edge of bucket 1, in seconds: 50 µs, below any model-serving round trip, so
/// bucket 0 ("faster than that") stays nearly empty.
pub const SMALLEST_SECONDS: f64 = 50e-6;

/// Buckets per doubling of latency: each bucket spans a factor 2^(1/8) ≈ 1.09, so a
/// quantile is placed within 9 %, finer than the margins the gate works with.
pub const PER_OCTAVE: usize = 8;

/// Doublings covered: 50 µs · 2^22 ≈ 210 s, past any sensible backend timeout.
pub const OCTAVES: usize = 22;

/// Buckets in the layout: one for everything below [`SMALLEST_SECONDS`], eight per
/// octave, and one for everything above the last octave (≈ 210 s).
pub const BUCKETS: usize = OCTAVES * PER_OCTAVE + 2;

/// The bucket a request that took `seconds` falls in: `0` below 50 µs (and for NaN or
/// negative durations), `BUCKETS − 1` at or above ≈ 210 s, else the `k` with
/// `upper_edge(k − 1) ≤ seconds < upper_edge(k)`.
///
/// Computed, not searched: the logarithm gives the index, and one comparison with each
/// neighbouring edge corrects a rounding error at an edge, so this always agrees with
/// [`upper_edge`].
pub fn bucket_of(seconds: f64) -> usize {
    if seconds.is_nan() || seconds < SMALLEST_SECONDS {
        return 0;
    }
    let steps = ((seconds / SMALLEST_SECONDS).log2() * PER_OCTAVE as f64).floor();
    // `as` saturates for huge values and infinity; `min` then makes it the last bucket.
    let mut bucket = (steps as usize).saturating_add(1).min(BUCKETS - 1);
    if seconds >= upper_edge(bucket) {
        bucket = (bucket + 1).min(BUCKETS - 1);
    } else if bucket > 1 && seconds < upper_edge(bucket - 1) {
        bucket -= 1;
    }
    bucket
}

/// The upper edge of `bucket` in seconds (exclusive): `50 µs · 2^(bucket / 8)`, and
/// infinity for the last bucket (and any index past it). What a Prometheus histogram of
/// this layout would label `le`.
pub fn upper_edge(bucket: usize) -> f64 {
    if bucket >= BUCKETS - 1 {
        return f64::INFINITY;
    }
    SMALLEST_SECONDS * (bucket as f64 / PER_OCTAVE as f64).exp2()
}

/// Baseline requests a step's cutoff is taken from: enough that its p95 bucket is
/// not one request's whim (10 requests above it), few enough to be there within
/// seconds on any route worth rolling out.
pub const CUTOFF_FROM: u64 = 200;

/// The step's "slow" cutoff: the bucket holding the baseline's `tail` quantile, once
/// the baseline has at least [`CUTOFF_FROM`] requests in the step; `None` before.
///
/// The caller fixes it for the rest of the step. A confidence sequence is
/// anytime-valid for one fixed event; a cutoff re-estimated at every look would
/// test a different event each time (and the baseline's share above its own
/// moving quantile is biased low), so it is taken once and kept.
pub fn cutoff(baseline: &[u64], tail: f64) -> Option<usize> {
    let total: u64 = baseline.iter().sum();
    (total >= CUTOFF_FROM)
        .then(|| quantile_bucket(baseline, total, tail))
        .flatten()
}

/// Each arm's requests and how many of them were slow, from the two arms' histograms
/// (counts per bucket of this module's layout) over the step so far.
///
/// The baseline's `tail` quantile bucket `q` is the smallest index whose cumulative
/// count reaches `tail ×` the baseline's total; a request is slow when it is in a bucket
/// above `q`. Requests in `q` itself are not slow, for either arm, so the bucket's
/// width never counts against the candidate. With no baseline requests there is no
/// quantile and nothing is slow for either arm; the totals are still counted. `tail`
/// is clamped to `[0, 1]`; histograms of other lengths than [`BUCKETS`] are read as
/// they are. The proxy fixes the quantile once per step ([`cutoff`], [`slow_above`]);
/// this form re-estimates it, for a one-off reading.
pub fn slow(baseline: &[u64], candidate: &[u64], tail: f64) -> Arms {
    let total: u64 = baseline.iter().sum();
    slow_above(baseline, candidate, quantile_bucket(baseline, total, tail))
}

/// Each arm's requests and how many were in a bucket above `cutoff` (see
/// [`cutoff`]); with no cutoff yet, nothing is slow and the totals are still
/// counted.
pub fn slow_above(baseline: &[u64], candidate: &[u64], cutoff: Option<usize>) -> Arms {
    let count = |histogram: &[u64]| Count {
        total: histogram.iter().sum(),
        bad: cutoff.map_or(0, |q| histogram.iter().skip(q + 1).sum()),
    };
    Arms {
        baseline: count(baseline),
        candidate: count(candidate),
    }
}

/// The bucket holding the baseline's `tail` quantile, or `None` with no requests.
fn quantile_bucket(histogram: &[u64], total: u64, tail: f64) -> Option<usize> {
    if total == 0 {
        return None;
    }
    // NaN clamps to NaN; read it as the highest quantile, which calls nothing slow.
    let tail = if tail.is_nan() {
        1.0
    } else {
        tail.clamp(0.0, 1.0)
    };
    let reach = tail * total as f64;
    let mut cumulative = 0_u64;
    for (bucket, &count) in histogram.iter().enumerate() {
        cumulative += count;
        if cumulative as f64 >= reach {
            return Some(bucket);
        }
    }
    // Rounding in `tail × total` can leave the last non-empty bucket just short.
    histogram.len().checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A histogram with `count` requests at each of `seconds`.
    fn histogram(entries: &[(f64, u64)]) -> Vec<u64> {
        let mut buckets = vec![0; BUCKETS];
        for &(seconds, count) in entries {
            buckets[bucket_of(seconds)] += count;
        }
        buckets
    }

    #[test]
    fn the_layout_spans_50_microseconds_to_about_210_seconds() {
        assert_eq!(BUCKETS, 178);
        assert_eq!(upper_edge(0), SMALLEST_SECONDS);
        assert!((upper_edge(BUCKETS - 2) - 209.7152).abs() < 1e-9);
        assert_eq!(upper_edge(BUCKETS - 1), f64::INFINITY);
    }

    #[test]
    fn outliers_go_to_the_first_and_last_buckets() {
        for below in [0.0, 1e-9, 49e-6, -1.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(bucket_of(below), 0, "{below}");
        }
        for above in [210.0, 1e6, f64::INFINITY] {
            assert_eq!(bucket_of(above), BUCKETS - 1, "{above}");
        }
        assert_eq!(bucket_of(50e-6), 1);
    }

    #[test]
    fn eight_buckets_per_doubling() {
        assert_eq!(bucket_of(0.1) + 8, bucket_of(0.2));
        assert_eq!(bucket_of(0.001) + 16, bucket_of(0.004));
    }

    #[test]
    fn every_edge_starts_its_own_bucket() {
        for bucket in 1..BUCKETS - 1 {
            let edge = upper_edge(bucket);
            assert_eq!(bucket_of(edge), bucket + 1, "edge {edge}");
            assert_eq!(bucket_of(edge * (1.0 - 1e-12)), bucket, "below {edge}");
        }
    }

    proptest! {
        #[test]
        fn a_duration_lies_between_its_buckets_edges(seconds in 50e-6_f64..200.0) {
            let bucket = bucket_of(seconds);
            prop_assert!(upper_edge(bucket - 1) <= seconds && seconds < upper_edge(bucket));
        }
    }

    #[test]
    fn slow_means_above_the_baselines_tail_bucket() {
        // Baseline: 95 requests at 10 ms, 5 at 100 ms; its p95 is in the 10 ms bucket.
        let baseline = histogram(&[(0.010, 95), (0.100, 5)]);
        // Candidate: 80 at 10 ms, 20 at 50 ms.
        let candidate = histogram(&[(0.010, 80), (0.050, 20)]);
        let arms = slow(&baseline, &candidate, 0.95);
        assert_eq!(arms.baseline, Count { total: 100, bad: 5 });
        assert_eq!(
            arms.candidate,
            Count {
                total: 100,
                bad: 20
            }
        );
    }

    #[test]
    fn the_quantile_bucket_is_the_first_whose_cumulative_count_reaches_the_tail() {
        // 94 fast, 6 slow: 95 % is only reached in the slow bucket, so nothing of the
        // baseline is above it and only slower candidate requests count.
        let baseline = histogram(&[(0.010, 94), (0.100, 6)]);
        let candidate = histogram(&[(0.100, 3), (1.0, 2)]);
        let arms = slow(&baseline, &candidate, 0.95);
        assert_eq!(arms.baseline, Count { total: 100, bad: 0 });
        assert_eq!(arms.candidate, Count { total: 5, bad: 2 });
    }

    #[test]
    fn with_no_baseline_requests_nothing_is_slow() {
        let candidate = histogram(&[(0.010, 7), (30.0, 3)]);
        let arms = slow(&vec![0; BUCKETS], &candidate, 0.95);
        assert_eq!(arms.baseline, Count::default());
        assert_eq!(arms.candidate, Count { total: 10, bad: 0 });
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let baseline = histogram(&[(0.010, 10)]);
        assert_eq!(slow(&baseline, &[], 0.9).candidate, Count::default());
        assert_eq!(
            slow(&[3], &[1, 2, 3], 0.5).candidate,
            Count { total: 6, bad: 5 }
        );
        assert_eq!(slow(&baseline, &baseline, f64::NAN).baseline.bad, 0);
        assert_eq!(slow(&baseline, &baseline, 7.0).baseline.bad, 0);
    }

    #[test]
    fn the_cutoff_waits_for_enough_baseline_requests_then_holds_still() {
        let mut baseline = vec![0_u64; BUCKETS];
        baseline[10] = 150;
        assert_eq!(cutoff(&baseline, 0.95), None, "150 requests are too few");
        baseline[10] = 190;
        baseline[30] = 10;
        let fixed = cutoff(&baseline, 0.95);
        assert_eq!(fixed, Some(10));
        // Later the baseline slows down: the fixed cutoff keeps judging the same event.
        baseline[30] += 1_000;
        let mut candidate = vec![0_u64; BUCKETS];
        candidate[10] = 90;
        candidate[20] = 10;
        let arms = slow_above(&baseline, &candidate, fixed);
        assert_eq!(
            arms.candidate,
            Count {
                total: 100,
                bad: 10
            }
        );
        assert_eq!(
            arms.baseline,
            Count {
                total: 1_200,
                bad: 1_010
            }
        );
        let none = slow_above(&baseline, &candidate, None);
        assert_eq!((none.candidate.bad, none.candidate.total), (0, 100));
    }
}
