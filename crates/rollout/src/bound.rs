//! Anytime-valid confidence sequences for a Bernoulli rate: how sure veer may be of a
//! version's error (or slow, or diverged) rate after any number of looks.
//!
//! The proxy looks at the counts every 5 seconds and at once on every candidate error.
//! A classical confidence interval is valid for one look at a fixed sample size; looked
//! at again and again, it is crossed by chance sooner or later. A *confidence sequence*
//! holds at every sample size at once, so a step may stop the moment it is sure, and
//! the false-alarm rate is still the one promised.
//!
//! The sequence used is the beta-binomial mixture martingale (Robbins, "Statistical
//! methods related to the law of the iterated logarithm", Ann. Math. Statist. 1970),
//! as presented in Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric,
//! nonasymptotic confidence sequences", Ann. Statist. 49(2), 2021. For `n` trials of
//! which `x` were bad, and a hypothesised rate `p0`, the mixture e-value with a
//! Beta(a, b) prior is
//!
//! ```text
//! M(p0) = B(a + x, b + n − x) / B(a, b) / ( p0^x (1 − p0)^(n − x) ),   a = b = 1/2
//! ```
//!
//! (the prior's mixture of likelihoods over the likelihood at `p0`). Under the true
//! rate `M` is a nonnegative martingale starting at 1, so by Ville's inequality
//! `P(∃ n: M_n(p) ≥ 1/δ) ≤ δ`: the set `{ p0 : M(p0) < 1/δ }` contains the true rate at
//! every `n` at once with probability at least `1 − δ`. The Jeffreys prior `a = b = 1/2`
//! is symmetric and puts enough weight near 0 and 1 to stay tight for rates of a few
//! percent, where errors live.
//!
//! `ln M` is convex in `p0` with its minimum (at most 0) at `x/n`, so the set is an
//! interval around `x/n`; its ends are found by Newton's method on the convex function
//! `ln M(e^u)` (convex in `u = ln p0` too), started outside the interval. Newton's
//! steps on a convex function never cross the root from outside, so every iterate is
//! a valid, slightly wider bound, and the result errs on the safe side (when rounding
//! puts a step a hair inside, bisection closes in from the outside instead).

use serde::Serialize;

use crate::Count;

/// The Beta prior's parameters `a = b`: Jeffreys' prior (see the module's note).
const PRIOR: f64 = 0.5;

/// `ln B(1/2, 1/2) = ln π`, the prior's normalising constant, written out because it
/// is needed on every evaluation and `lgamma` is the costly part of one.
const LN_BETA_OF_PRIOR: f64 = 1.144_729_885_849_400_2;

/// Newton's method stops when a step moves the end by less than this, in `ln p0`
/// (relative to `|ln p0|` below 1, where the end is near 1 and its distance from 1 is
/// what matters): a relative precision of 1e-12 in the end or in its distance from 1,
/// well inside the 1e-9 the decisions need.
const STEP_PRECISION: f64 = 1e-12;

/// Newton converges in a handful of steps; the cap only bounds pathological inputs
/// (a level `δ` so close to 1 that the interval collapses onto `x/n`).
const MAX_NEWTON_STEPS: usize = 100;

/// A confidence interval for a rate, both ends in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// No rate below this is plausible.
    pub lower: f64,
    /// No rate above this is plausible.
    pub upper: f64,
}

impl Interval {
    /// The interval that claims nothing: every rate is plausible.
    pub const EVERYTHING: Interval = Interval {
        lower: 0.0,
        upper: 1.0,
    };

    /// Whether `rate` is inside (ends included).
    pub fn contains(self, rate: f64) -> bool {
        self.lower <= rate && rate <= self.upper
    }
}

/// The confidence sequence at level `delta` after `count`: the rates `p0` whose e-value
/// [`log_e_value`] is below `ln(1/delta)`.
///
/// With no trials it is `[0, 1]`. With no bad trials the lower end is exactly 0, with
/// all trials bad the upper end exactly 1. A `delta` outside `(0, 1)` (or NaN) gives
/// [`Interval::EVERYTHING`]: without a usable level nothing may be claimed.
pub fn interval(count: Count, delta: f64) -> Interval {
    if count.total == 0 || !(delta > 0.0 && delta < 1.0) {
        return Interval::EVERYTHING;
    }
    let threshold = -delta.ln();
    let (n, x) = (count.total, count.bad_clamped());
    // The prior is symmetric, so the upper end for `x` bad is one minus the lower end
    // for `n − x` bad (the rate of good trials): one root finder serves both ends. It
    // answers in logs, so `1 − e^u` keeps its precision when the upper end is tiny.
    Interval {
        lower: log_lower_end(n, x, threshold).exp(),
        upper: -log_lower_end(n, n - x, threshold).exp_m1(),
    }
}

/// The natural log of the mixture e-value `M(p0)` after `count` (see the module's note):
/// the evidence against the rate being `p0`. 0 with no trials, `+∞` for a rate the
/// counts rule out entirely (`p0 = 0` after a bad trial). `p0` is clamped to `[0, 1]`;
/// a NaN `p0` gives NaN.
pub fn log_e_value(count: Count, p0: f64) -> f64 {
    if count.total == 0 {
        return 0.0;
    }
    let p0 = p0.clamp(0.0, 1.0);
    let (n, x) = (count.total, count.bad_clamped());
    let good = (n - x) as f64;
    let bad = x as f64;
    // 0·ln 0 is 0 here (a term with no trials contributes nothing), so each term is
    // taken only when its count is positive.
    let bad_term = if x > 0 { bad * p0.ln() } else { 0.0 };
    let good_term = if n > x { good * (-p0).ln_1p() } else { 0.0 };
    log_mixture(n, x) - bad_term - good_term
}

/// Whether the sequence's upper end after `count` is at most `limit`, without finding
/// the end: the interval lies around `x/n`, so its upper end is at most `limit` exactly
/// when `x/n` is below `limit` and `limit` itself is ruled out. One e-value instead of a
/// root search; used where many hypothetical counts are tried.
pub(crate) fn upper_at_most(count: Count, delta: f64, limit: f64) -> bool {
    if limit >= 1.0 {
        return true;
    }
    if count.total == 0 || !(delta > 0.0 && delta < 1.0) {
        return false;
    }
    let observed = count.bad_clamped() as f64 / count.total as f64;
    observed < limit && log_e_value(count, limit) >= -delta.ln()
}

/// `ln B(a + x, b + n − x) − ln B(a, b)`: the log of the prior's mixture of likelihoods,
/// the part of `ln M` that does not depend on `p0`.
fn log_mixture(n: u64, x: u64) -> f64 {
    let (n, x) = (n as f64, x as f64);
    ln_beta(PRIOR + x, PRIOR + n - x) - LN_BETA_OF_PRIOR
}

fn ln_beta(a: f64, b: f64) -> f64 {
    libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b)
}

/// The natural log of the lower end of `{ p0 : ln M(p0) < threshold }` after `n`
/// trials, `x` bad (`threshold > 0`, `n > 0`); `−∞` when the end is 0.
///
/// In `u = ln p0`, `h(u) = ln M(e^u) − threshold = C − x·u − (n − x)·ln(1 − e^u) −
/// threshold` is convex (a line plus `−ln(1 − e^u)`, which is convex), decreasing up to
/// its minimum at `ln(x/n)`, where it is below 0. Newton's method from a point left of
/// the root climbs towards it without ever crossing it (a convex function lies above
/// its tangents), so the answer is never inside the interval.
fn log_lower_end(n: u64, x: u64, threshold: f64) -> f64 {
    if x == 0 {
        // ln M(0) = C − n·ln 1 = C ≤ 0 < threshold: 0 itself is plausible.
        return f64::NEG_INFINITY;
    }
    let mixture = log_mixture(n, x);
    let bad = x as f64;
    let good = (n - x) as f64;
    let h = |u: f64| {
        let good_term = if good > 0.0 {
            good * (-u.exp()).ln_1p()
        } else {
            0.0
        };
        mixture - bad * u - good_term - threshold
    };
    let slope = |u: f64| {
        // d/du of −(n − x)·ln(1 − e^u) is (n − x)·e^u / (1 − e^u) = (n − x) / (e^−u − 1).
        let good_slope = if good > 0.0 {
            good / (-u).exp_m1()
        } else {
            0.0
        };
        good_slope - bad
    };

    // A start outside the interval. A normal approximation puts the end about
    // √(2·threshold·(n − x)/(n·x)) below ln(x/n); the mixture's interval is wider
    // than that, so start at twice it (at most 1), and double until outside. h grows
    // at least as fast as x·(distance) far out, so few doublings are ever needed.
    let centre = (bad / n as f64).ln();
    let normal_guess = (2.0 * threshold * good / (n as f64 * bad)).sqrt();
    let mut distance = (2.0 * normal_guess).clamp(1e-3, 1.0);
    let mut u = centre - distance;
    let mut level = h(u);
    while !is_outside(level) {
        distance *= 2.0;
        if distance > 4096.0 {
            // e^(−4096) is 0 in f64: no representable rate above 0 is ruled out.
            return f64::NEG_INFINITY;
        }
        u = centre - distance;
        level = h(u);
    }

    for _ in 0..MAX_NEWTON_STEPS {
        let next = u - level / slope(u);
        let climbed = next > u;
        if !climbed {
            break;
        }
        let next_level = h(next);
        if !is_outside(next_level) {
            // Rounding put a step that reached the root a hair past it (h is nearly a
            // line near a sharp end, so Newton lands right on the root). The root is
            // in (u, next]: close in by bisection, keeping the end known to be outside.
            return bisect_outside(&h, u, next);
        }
        let moved = next - u;
        u = next;
        level = next_level;
        if moved < tolerance(u) {
            break;
        }
    }
    u
}

/// How close in `u = ln p0` is close enough (see [`STEP_PRECISION`]).
fn tolerance(u: f64) -> f64 {
    STEP_PRECISION * u.abs().min(1.0)
}

/// The outside end of `[outside, inside]` narrowed to [`tolerance`], for `h` ruling
/// out `outside` and not `inside`.
fn bisect_outside(h: &impl Fn(f64) -> f64, mut outside: f64, mut inside: f64) -> f64 {
    // Each halving gains a bit; 64 take any bracket far below the tolerance.
    for _ in 0..64 {
        if inside - outside < tolerance(outside) {
            break;
        }
        let middle = outside + (inside - outside) / 2.0;
        if is_outside(h(middle)) {
            outside = middle;
        } else {
            inside = middle;
        }
    }
    outside
}

/// Whether `h(u) = ln M(e^u) − threshold` says `e^u` is outside the interval (ruled
/// out). NaN, which well-formed counts never produce, is not outside, so the search
/// errs towards a wider interval.
fn is_outside(level: f64) -> bool {
    level >= 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn count(total: u64, bad: u64) -> Count {
        Count { total, bad }
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn the_prior_constant_is_ln_beta_of_the_prior() {
        assert!(close(LN_BETA_OF_PRIOR, ln_beta(PRIOR, PRIOR), 1e-15));
        assert!(close(LN_BETA_OF_PRIOR, std::f64::consts::PI.ln(), 1e-15));
    }

    #[test]
    fn no_trials_claim_nothing() {
        assert_eq!(interval(count(0, 0), 0.05), Interval::EVERYTHING);
        assert_eq!(log_e_value(count(0, 0), 0.3), 0.0);
    }

    #[test]
    fn a_level_outside_zero_to_one_claims_nothing() {
        for delta in [0.0, -1.0, 1.0, 2.0, f64::NAN] {
            assert_eq!(interval(count(100, 3), delta), Interval::EVERYTHING);
        }
    }

    #[test]
    fn one_good_trial_matches_the_closed_form() {
        // n = 1, x = 0: B(1/2, 3/2) / B(1/2, 1/2) = 1/2, so M(p) = 1 / (2 (1 − p)) and
        // M = 1/δ at p = 1 − δ/2.
        let delta = 0.05;
        let bound = interval(count(1, 0), delta);
        assert_eq!(bound.lower, 0.0);
        assert!(close(bound.upper, 1.0 - delta / 2.0, 1e-9), "{bound:?}");
        assert!(close(log_e_value(count(1, 0), 0.5), (1.0_f64).ln(), 1e-12));
    }

    #[test]
    fn one_good_one_bad_matches_the_closed_form() {
        // n = 2, x = 1: B(3/2, 3/2) / B(1/2, 1/2) = 1/8, so M(p) = 1 / (8 p (1 − p)) and
        // the ends solve p (1 − p) = δ/8.
        let delta = 0.1;
        let bound = interval(count(2, 1), delta);
        let half_width = (1.0 - delta / 2.0).sqrt() / 2.0;
        assert!(close(bound.lower, 0.5 - half_width, 1e-9), "{bound:?}");
        assert!(close(bound.upper, 0.5 + half_width, 1e-9), "{bound:?}");
    }

    #[test]
    fn all_good_trials_match_the_closed_form_and_start_at_zero() {
        // x = 0: M(p) = e^C / (1 − p)^n, so the upper end is 1 − (δ e^C)^(1/n), that is
        // −expm1((ln δ + C) / n). Checked relative to the end, which gets tiny.
        let delta: f64 = 0.01;
        for n in [
            1_u64,
            2,
            10,
            37,
            1000,
            123_457,
            1_000_000,
            1_000_000_000_000,
        ] {
            let bound = interval(count(n, 0), delta);
            let expected = -((delta.ln() + log_mixture(n, 0)) / n as f64).exp_m1();
            assert_eq!(bound.lower, 0.0);
            assert!(
                close(bound.upper / expected, 1.0, 1e-9),
                "n={n}: {bound:?} vs {expected}"
            );
        }
    }

    #[test]
    fn all_bad_trials_end_at_one() {
        for n in [1_u64, 7, 5000] {
            let bound = interval(count(n, n), 0.01);
            assert_eq!(bound.upper, 1.0);
            assert!(bound.lower > 0.0 && bound.lower < 1.0);
            // The mirror image of all good trials.
            assert!(close(
                bound.lower,
                1.0 - interval(count(n, 0), 0.01).upper,
                1e-12
            ));
        }
    }

    #[test]
    fn more_bad_than_total_reads_as_all_bad() {
        assert_eq!(interval(count(5, 9), 0.05), interval(count(5, 5), 0.05));
    }

    #[test]
    fn narrows_as_trials_accumulate_at_the_same_rate() {
        let mut previous = Interval::EVERYTHING;
        for n in [10_u64, 100, 1000, 10_000, 100_000] {
            let bound = interval(count(n, n / 10), 0.01);
            assert!(bound.contains(0.1), "{bound:?}");
            assert!(bound.lower > previous.lower && bound.upper < previous.upper);
            previous = bound;
        }
        // Around ±0.003 at 100,000 trials of a 10 % rate.
        assert!(previous.upper - previous.lower < 0.01, "{previous:?}");
    }

    #[test]
    fn widens_as_the_level_gets_stricter() {
        let loose = interval(count(500, 20), 0.1);
        let strict = interval(count(500, 20), 0.001);
        assert!(strict.lower < loose.lower && strict.upper > loose.upper);
    }

    #[test]
    fn upper_at_most_agrees_with_the_interval() {
        let delta = 0.002;
        for (n, x) in [(10, 0), (300, 2), (5000, 40), (20_000, 150), (3, 3)] {
            let upper = interval(count(n, x), delta).upper;
            for limit in [0.001, 0.01, 0.02, 0.05, 0.2, 0.999, 1.0] {
                if (upper - limit).abs() > 1e-9 {
                    assert_eq!(
                        upper_at_most(count(n, x), delta, limit),
                        upper <= limit,
                        "n={n} x={x} limit={limit} upper={upper}"
                    );
                }
            }
        }
        assert!(!upper_at_most(count(0, 0), delta, 0.5));
        assert!(upper_at_most(count(0, 0), delta, 1.0));
    }

    proptest! {
        #[test]
        fn the_ends_are_where_the_e_value_crosses_the_level(
            n in 1_u64..2_000_000,
            share in 0.0_f64..=1.0,
            delta in 1e-6_f64..0.5,
        ) {
            let x = ((n as f64) * share).round() as u64;
            let threshold = -delta.ln();
            let observed = x as f64 / n as f64;
            let bound = interval(count(n, x), delta);
            prop_assert!(0.0 <= bound.lower && bound.lower <= observed, "{:?}", bound);
            prop_assert!(observed <= bound.upper && bound.upper <= 1.0, "{:?}", bound);
            for end in [bound.lower, bound.upper] {
                if end == 0.0 || end == 1.0 {
                    continue;
                }
                // On or just outside the end the e-value reaches the level…
                prop_assert!(log_e_value(count(n, x), end) >= threshold - 1e-6);
                // …and a little way in, it does not: the end is not loose.
                let inside = end + (observed - end) * 1e-4;
                prop_assert!(log_e_value(count(n, x), inside) < threshold);
            }
        }
    }

    /// Monte Carlo check of the promise itself: watched after every draw, the sequence
    /// at level δ should ever exclude the true rate in at most a share δ of runs.
    ///
    /// Excluding the truth is by definition `M(truth) ≥ 1/δ` (the interval's ends are
    /// checked against that in the property test above). One draw raises `ln M(p)` by
    /// at most `max(−ln p, −ln(1 − p))` (the mixture's predictive probability of the
    /// draw is at most 1), so after a look at level `L` no crossing is possible for the
    /// next `(ln(1/δ) − L) / that` draws: skipping those looks is exact, not a sample.
    ///
    /// Eight million draws: `SmallRng` (xoshiro) rather than `StdRng` (ChaCha), which is
    /// some thirty times slower in a debug build and no better for this purpose.
    #[test]
    fn excludes_the_true_rate_at_any_time_in_at_most_delta_of_runs() {
        const RUNS: usize = 2_000;
        const DRAWS: u64 = 2_000;
        let delta: f64 = 0.05;
        let threshold = -delta.ln();
        let mut rng = SmallRng::seed_from_u64(0x5eed_c0de);
        for truth in [0.02_f64, 0.3] {
            let max_rise = (-truth.ln()).max(-(-truth).ln_1p());
            let mut crossed = 0;
            for _ in 0..RUNS {
                let mut seen = count(0, 0);
                let mut next_look = 1;
                for draw in 1..=DRAWS {
                    seen.total += 1;
                    seen.bad += u64::from(rng.random_bool(truth));
                    if draw < next_look {
                        continue;
                    }
                    let level = log_e_value(seen, truth);
                    if level >= threshold {
                        crossed += 1;
                        break;
                    }
                    next_look = draw + (((threshold - level) / max_rise).ceil() as u64).max(1);
                }
            }
            let share = crossed as f64 / RUNS as f64;
            assert!(share <= delta, "p = {truth}: excluded in {share} of runs");
        }
    }

    /// The coverage check above would pass for a sequence that is merely wide; this one
    /// shows it has power: a rate 0.05 away from the truth is excluded within the same
    /// 2,000 draws in nearly every run.
    #[test]
    fn excludes_a_wrong_rate_within_a_few_thousand_draws() {
        let mut rng = SmallRng::seed_from_u64(7);
        let (truth, wrong, delta) = (0.02, 0.07, 0.05);
        let runs = 200;
        let excluded = (0..runs)
            .filter(|_| {
                let mut seen = count(0, 0);
                (0..2_000).any(|_| {
                    seen.total += 1;
                    seen.bad += u64::from(rng.random_bool(truth));
                    !interval(seen, delta).contains(wrong)
                })
            })
            .count();
        assert!(excluded >= runs * 99 / 100, "{excluded} of {runs}");
    }
}
