//! What the proxy saw since the current step began: counts only, the shape every
//! source of them (one process's counters now, Prometheus across replicas later) can
//! fill in the same way.

use serde::{Deserialize, Serialize};

/// Requests (or compared pairs) and how many were bad (failed, slow, diverged, flipped).
///
/// `bad` is at most `total`; the statistics read a larger `bad` as `total` rather than
/// panic, since counts may come from another process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Trials: requests, or compared pairs.
    pub total: u64,
    /// Those of them that were bad.
    pub bad: u64,
}

impl Count {
    /// What was added between `earlier` and `self`, both running totals of one counter.
    ///
    /// Saturating: a counter that went backwards (a replica restarted) gives 0 rather
    /// than a wrapped-around number that would look like a flood of traffic.
    pub fn since(self, earlier: Count) -> Count {
        Count {
            total: self.total.saturating_sub(earlier.total),
            bad: self.bad.saturating_sub(earlier.bad),
        }
    }

    /// The observed share of bad trials, or `None` before the first trial.
    pub fn rate(self) -> Option<f64> {
        (self.total > 0).then(|| self.bad_clamped() as f64 / self.total as f64)
    }

    /// `bad`, never more than `total` (see the type's note).
    pub(crate) fn bad_clamped(self) -> u64 {
        self.bad.min(self.total)
    }
}

/// The same counter for the two versions being compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Arms {
    /// The version serving now (the rest of the split).
    pub baseline: Count,
    /// The version being rolled out.
    pub candidate: Count,
}

/// What was seen since the step began.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observation {
    /// Requests and failures (5xx, timeouts, connect failures) of each arm.
    pub errors: Arms,
    /// Requests and those slower than the baseline's tail quantile, of each arm (see
    /// [`crate::latency::slow`]).
    pub slow: Arms,
    /// Compared live/shadow pairs of the candidate (matched plus diverged) and the
    /// diverged ones. Under a prediction gate the steps are judged on them too, so the
    /// comparisons go on after the shadow phase.
    pub divergence: Count,
    /// Pairs whose label agreement is known, and the disagreements.
    pub label_flips: Count,
    /// Live-vs-live comparisons (the model's own noise floor), when `noise_percent > 0`.
    pub noise: Option<Noise>,
}

/// Live-vs-live comparisons: the same request answered twice by the baseline. What
/// differs there is the model's own noise, which the candidate is not blamed for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Noise {
    /// Compared pairs and the diverged ones.
    pub divergence: Count,
    /// Labelled pairs and the disagreements.
    pub label_flips: Count,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_and_saturates_when_a_counter_went_backwards() {
        let now = Count { total: 10, bad: 3 };
        let then = Count { total: 4, bad: 1 };
        assert_eq!(now.since(then), Count { total: 6, bad: 2 });
        assert_eq!(then.since(now), Count::default());
    }

    #[test]
    fn rate_is_none_before_the_first_trial_and_clamps_bad() {
        assert_eq!(Count::default().rate(), None);
        assert_eq!(Count { total: 4, bad: 1 }.rate(), Some(0.25));
        assert_eq!(Count { total: 2, bad: 5 }.rate(), Some(1.0));
    }
}
