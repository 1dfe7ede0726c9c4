//! How numbers are judged, in one place for both the fast ([`crate::lockstep`]) and
//! the full ([`crate::json`]) comparison: equality within tolerance, and what a row of
//! numbers says about a predicted class (the argmax of class probabilities, or a
//! binary score against `compare.threshold`).

/// Two paired numbers under the tolerances: whether they are equal, and their
/// absolute and signed difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// `|a - b| <= abs` OR `|a - b| <= rel · max(|a|, |b|)` (or simply `a == b`).
    pub equal: bool,
    /// `|a - b|`.
    pub deviation: f64,
    /// `b - a`: with `a` the live number and `b` the shadow's, positive when the
    /// shadow says more.
    pub shift: f64,
}

/// The tolerances of one comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Numbers this close are equal.
    pub abs: f64,
    /// Numbers this close relative to the larger magnitude are equal.
    pub rel: f64,
}

impl Tolerance {
    /// Two integers, compared as integers so ids above 2^53 are not rounded into
    /// equality (JSON integers fit `i128`: they are `i64` or `u64`).
    #[inline]
    pub fn integers(self, a: i128, b: i128) -> Verdict {
        let deviation = (a - b).unsigned_abs() as f64;
        let scale = a.unsigned_abs().max(b.unsigned_abs()) as f64;
        Verdict {
            equal: a == b || self.within(deviation, scale),
            deviation,
            shift: (b - a) as f64,
        }
    }

    /// Two floats.
    #[inline]
    pub fn floats(self, a: f64, b: f64) -> Verdict {
        let deviation = (a - b).abs();
        Verdict {
            equal: a == b || self.within(deviation, a.abs().max(b.abs())),
            deviation,
            shift: b - a,
        }
    }

    #[inline]
    fn within(self, deviation: f64, scale: f64) -> bool {
        deviation <= self.abs || deviation <= self.rel * scale
    }
}

/// Which way the shadow's numbers moved from the live ones, over the pairs of one
/// comparison: the positive shifts (`shadow - live > 0`) summed, the negative ones'
/// magnitudes summed, and how many pairs were counted. Kept as two sums of
/// magnitudes rather than one signed sum so each only grows, as a Prometheus counter
/// must: the mean signed shift is `(up - down) / numbers`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shift {
    /// Sum of `shadow - live` over the pairs where the shadow is higher.
    pub up: f64,
    /// Sum of `live - shadow` over the pairs where the shadow is lower.
    pub down: f64,
    /// Pairs of numbers counted (equal ones included).
    pub numbers: u64,
}

impl Shift {
    /// Counts one pair's signed shift (`shadow - live`). A shift beyond `f64`
    /// (`1e308` against `-1e308`) is left out, pair and all: one such pair would
    /// make the sums infinite for good.
    #[inline]
    pub fn add(&mut self, shift: f64) {
        if !shift.is_finite() {
            return;
        }
        if shift > 0.0 {
            self.up += shift;
        } else {
            self.down -= shift;
        }
        self.numbers += 1;
    }

    /// The mean signed shift, when any pair was counted.
    pub fn mean(&self) -> Option<f64> {
        (self.numbers > 0).then(|| (self.up - self.down) / self.numbers as f64)
    }
}

/// The index of the first largest of at least two values (ties go to the lower
/// class); `None` for fewer than two.
pub fn argmax(values: impl IntoIterator<Item = f64>) -> Option<usize> {
    let mut argmax = Argmax::default();
    values.into_iter().for_each(|v| argmax.push(v));
    argmax.finish()
}

/// [`argmax`] fed one value at a time, for walks that cannot hold the row.
#[derive(Debug, Clone, Copy)]
pub struct Argmax {
    best: usize,
    best_value: f64,
    count: usize,
}

impl Default for Argmax {
    fn default() -> Self {
        Argmax {
            best: 0,
            best_value: f64::NEG_INFINITY,
            count: 0,
        }
    }
}

impl Argmax {
    /// The next value of the row.
    #[inline]
    pub fn push(&mut self, value: f64) {
        if value > self.best_value {
            (self.best, self.best_value) = (self.count, value);
        }
        self.count += 1;
    }

    /// The index of the first largest value, when there were at least two.
    #[inline]
    pub fn finish(self) -> Option<usize> {
        (self.count >= 2).then_some(self.best)
    }

    /// The row's predicted class: the argmax of two or more class probabilities
    /// (whatever `threshold`), or, for a row of one binary score, its
    /// [`score_class`] when there is a threshold. A lone score without a threshold
    /// has no class: it is as likely a regression output.
    #[inline]
    pub fn class(self, threshold: Option<f64>) -> Option<usize> {
        match self.count {
            0 => None,
            // The one value pushed is `best_value` (a NaN, which JSON cannot carry,
            // would leave -inf there: class 0 either way).
            1 => threshold.map(|t| score_class(self.best_value, t)),
            _ => Some(self.best),
        }
    }
}

/// A binary score's class: 1 at or above `threshold`, 0 below. The threshold itself
/// is on the positive side: `threshold = 0.5` reads "0.5 and up is class 1". (Tools
/// differ here, some use `>`; a score exactly at the threshold is rare in float
/// output, and what matters is that both sides are read the same way.)
/// Numbered like class indices, so a model that moves from one score per row to two
/// class probabilities per row is still compared class for class.
#[inline]
pub fn score_class(score: f64, threshold: f64) -> usize {
    usize::from(score >= threshold)
}

/// How far from 1 the sum of a probability row may be: float32 softmax outputs
/// printed with a few digits do not sum to exactly 1.
const DISTRIBUTION_SLACK: f64 = 1e-3;

/// True when a flat row looks like one vector of class probabilities: at least two
/// values, each in `0..=1`, summing to 1. Anything else is as likely a list of
/// regression outputs, which have no classes.
pub fn is_distribution(values: impl IntoIterator<Item = f64>) -> bool {
    let (mut sum, mut count, mut in_unit_range) = (0.0, 0, true);
    for v in values {
        sum += v;
        count += 1;
        in_unit_range &= (0.0..=1.0).contains(&v);
    }
    count >= 2 && in_unit_range && (sum - 1.0).abs() <= DISTRIBUTION_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    #[test]
    fn tolerance_edges_are_inclusive() {
        let half = Tolerance { abs: 0.5, rel: 0.0 };
        assert_eq!(
            half.floats(1.0, 1.5),
            Verdict {
                equal: true,
                deviation: 0.5,
                shift: 0.5,
            }
        );
        assert!(!half.floats(1.0, 1.5000001).equal);
        let tenth = Tolerance { abs: 0.0, rel: 0.1 };
        assert!(tenth.integers(100, 110).equal);
        assert!(!tenth.integers(100, 112).equal);
        assert!(EXACT.floats(0.0, -0.0).equal);
    }

    #[test]
    fn the_shift_is_shadow_minus_live() {
        assert_eq!(EXACT.floats(0.25, 0.75).shift, 0.5);
        assert_eq!(EXACT.floats(0.75, 0.25).shift, -0.5);
        assert_eq!(EXACT.integers(10, 7).shift, -3.0);
    }

    #[test]
    fn shifts_add_up_by_direction_and_skip_overflow() {
        let mut shift = Shift::default();
        for s in [0.5, -0.25, 0.0, f64::INFINITY, -0.25] {
            shift.add(s);
        }
        assert_eq!(
            shift,
            Shift {
                up: 0.5,
                down: 0.5,
                numbers: 4
            }
        );
        assert_eq!(shift.mean(), Some(0.0));
        assert_eq!(Shift::default().mean(), None);
    }

    #[test]
    fn big_integers_compare_exactly() {
        let v = EXACT.integers(9_007_199_254_740_993, 9_007_199_254_740_992);
        assert_eq!((v.equal, v.deviation), (false, 1.0));
        let v = EXACT.integers(i128::from(u64::MAX), i128::from(u64::MAX) - 1);
        assert_eq!((v.equal, v.deviation), (false, 1.0));
        assert!(
            !EXACT
                .integers(i128::from(i64::MIN), i128::from(u64::MAX))
                .equal
        );
    }

    #[test]
    fn argmax_takes_the_first_largest_of_two_or_more() {
        assert_eq!(argmax([0.1, 0.9, 0.9]), Some(1));
        assert_eq!(argmax([0.7, 0.3]), Some(0));
        assert_eq!(argmax([0.9]), None);
        assert_eq!(argmax([]), None);
    }

    #[test]
    fn a_row_of_one_is_a_class_only_under_a_threshold() {
        let row = |values: &[f64]| {
            let mut argmax = Argmax::default();
            values.iter().for_each(|v| argmax.push(*v));
            argmax
        };
        assert_eq!(row(&[0.83]).class(None), None);
        assert_eq!(row(&[0.83]).class(Some(0.5)), Some(1));
        assert_eq!(row(&[0.12]).class(Some(0.5)), Some(0));
        assert_eq!(
            row(&[0.5]).class(Some(0.5)),
            Some(1),
            "t itself is positive"
        );
        assert_eq!(row(&[-3.0]).class(Some(-3.5)), Some(1), "any number scores");
        assert_eq!(
            row(&[0.3, 0.7]).class(Some(0.9)),
            Some(1),
            "rows use argmax"
        );
        assert_eq!(row(&[]).class(Some(0.5)), None);
    }

    #[test]
    fn distributions_sum_to_one_inside_the_unit_range() {
        assert!(is_distribution([0.2, 0.8]));
        assert!(is_distribution([0.3333, 0.3333, 0.3334]));
        assert!(!is_distribution([3.5, 7.25]));
        assert!(!is_distribution([1.0]));
        assert!(!is_distribution([1.5, -0.5]));
    }
}
