//! Each signal judged on its own: PASS, HOLD or FAIL, with the numbers behind it.
//!
//! The rules are documented on [`Signal`], where a reader of the public API finds them.

use serde::Serialize;
use veer_config::{PredictionGate, Rollout};

use crate::bound::{self, Interval};
use crate::{Count, Observation};

/// Largest extra sample [`Judged::needed`] looks for: a billion requests is more than
/// any step sees, so beyond it "cannot pass" is the honest answer.
const NEEDED_CAP: u64 = 1_000_000_000;

/// What is judged.
///
/// Every signal is a rate (failed, slow, diverged or flipped out of all trials) judged
/// with the confidence sequences of [`crate::bound`], each at level
/// [`sequence_delta`]. The rules, in plain words:
///
/// * **Errors** compare the candidate's failure rate with the baseline's. PASS when the
///   candidate's rate is proven at most `baseline's lower bound × (1 + rel_margin) +
///   abs_margin`: the candidate must be within the margin of what the baseline is *at
///   least*, so an unlucky baseline cannot wave a bad candidate through. FAIL when the
///   candidate's rate is proven above the smaller of `hard_max` and `baseline's upper
///   bound × (1 + rel_margin) + abs_margin`. Otherwise HOLD. FAIL is checked first.
/// * **Latency** is the same rule on the share of slow requests (see
///   [`crate::latency`]), with the latency gate's margins and no `hard_max`.
/// * **Divergence** compares the share of the candidate's shadow pairs that diverged
///   with the noise floor: the share of live-vs-live pairs that diverged, when the
///   route measures it, else exactly 0. PASS when the candidate's rate is proven at most
///   `floor's lower bound + max_divergence`, FAIL when proven above `floor's upper bound
///   + max_divergence`.
/// * **Label flips**, the same with labelled pairs and `max_label_flip`. When pairs were
///   compared but none carried a label, the model does not answer with labels and the
///   signal does not apply: PASS, with a note.
///
/// With no candidate trials a signal HOLDs (never FAILs). A HOLD says how many more
/// candidate trials would settle it if the rates seen so far held ([`Judged::needed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Failures (5xx, timeouts, connect failures), candidate against baseline.
    Errors,
    /// Slow requests, candidate against baseline.
    Latency,
    /// Shadow pairs whose answers diverged, against the noise floor.
    Divergence,
    /// Labelled pairs whose labels differ, against the noise floor.
    LabelFlip,
}

impl Signal {
    /// Every signal, in the order decisions list them.
    pub const ALL: [Signal; 4] = [
        Signal::Errors,
        Signal::Latency,
        Signal::Divergence,
        Signal::LabelFlip,
    ];

    /// The name in records and metrics: `errors`, `latency`, `divergence`, `label_flip`.
    pub fn label(self) -> &'static str {
        match self {
            Signal::Errors => "errors",
            Signal::Latency => "latency",
            Signal::Divergence => "divergence",
            Signal::LabelFlip => "label_flip",
        }
    }

    /// What one trial of this signal is, in a sentence about the candidate.
    /// The rate to estimate with before any trial, from either arm: a clean
    /// candidate's, where one exists. Errors and divergence can be 0; "slow" is
    /// relative to the baseline's tail (about 5 % even for its twin), and a model
    /// without labels never has a labelled pair, so those have none.
    pub(crate) fn clean_rate(self) -> Option<f64> {
        match self {
            Signal::Errors | Signal::Divergence => Some(0.0),
            Signal::Latency | Signal::LabelFlip => None,
        }
    }

    pub(crate) fn trials(self) -> &'static str {
        match self {
            Signal::Errors | Signal::Latency => "candidate requests",
            Signal::Divergence => "compared pairs",
            Signal::LabelFlip => "labelled pairs",
        }
    }
}

/// One signal's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Proven within its limit.
    Pass,
    /// Not proven either way yet.
    Hold,
    /// Proven beyond its limit.
    Fail,
}

impl Verdict {
    /// The name in records: `pass`, `hold`, `fail`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Hold => "hold",
            Verdict::Fail => "fail",
        }
    }
}

/// One signal's verdict and the numbers behind it (a field of the decision record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    /// What was judged.
    pub signal: Signal,
    /// PASS, HOLD or FAIL.
    pub verdict: Verdict,
    /// The candidate's trials and bad ones since the step began.
    pub candidate: Count,
    /// Errors and latency: the baseline arm. Predictions: the noise floor's counts, when
    /// the route measures one.
    pub baseline: Option<Count>,
    /// The baseline's (or noise floor's) confidence sequence now; `None` when the floor
    /// is exactly 0 (no noise measured).
    pub baseline_interval: Option<Interval>,
    /// The candidate's observed rate, once it has trials.
    pub rate: Option<f64>,
    /// The candidate's confidence sequence now: lower end.
    pub lower: f64,
    /// The candidate's confidence sequence now: upper end.
    pub upper: f64,
    /// PASS needs `upper <= limit`.
    pub limit: f64,
    /// FAIL when `lower > fail_above`.
    pub fail_above: f64,
    /// The level each sequence is at ([`sequence_delta`]).
    pub delta: f64,
    /// More candidate trials needed to PASS if the current rates held, with `limit`
    /// held fixed; `None` when it passes or fails already, or cannot pass at the
    /// current rate. With no rate known from either side, errors and divergence are
    /// estimated as if every trial were good; the others have no estimate.
    pub needed: Option<u64>,
    /// Why the numbers are what they are, when that is not plain from them.
    pub note: Option<String>,
}

/// The number of judged stages `K` of a rollout: the steps below 100 %, plus the shadow
/// phase when `shadow_first` is set; at least 1. Each stage's tests start afresh.
pub fn judged_stages(plan: &Rollout) -> usize {
    let steps = plan.steps.iter().filter(|&&weight| weight < 100).count();
    let shadow = usize::from(plan.shadow_first.is_some());
    (steps + shadow).max(1)
}

/// The level `δ = alpha / (2K)` of every confidence sequence in a stage.
///
/// Why: `alpha` is the false-rollback budget of each signal over the whole rollout.
/// A signal that compares two arms uses two sequences (candidate and baseline, or
/// candidate and noise floor); it can wrongly FAIL only if one of them misses its true
/// rate, which happens with probability at most `2δ = alpha / K` in a stage (Ville's
/// inequality, at any number of looks), so at most `alpha` over the `K` stages of
/// [`judged_stages`] (a union bound).
pub fn sequence_delta(plan: &Rollout) -> f64 {
    plan.alpha / (2.0 * judged_stages(plan) as f64)
}

/// Judges `signal` on what was seen, at level `delta`. `None` for a prediction signal
/// when the plan has no prediction gate.
pub(crate) fn judge_signal(
    plan: &Rollout,
    signal: Signal,
    seen: &Observation,
    delta: f64,
) -> Option<Judged> {
    match signal {
        Signal::Errors => Some(against_baseline(
            signal,
            seen.errors.candidate,
            seen.errors.baseline,
            Margins {
                relative: plan.errors.rel_margin,
                absolute: plan.errors.abs_margin,
                hard_max: Some(plan.errors.hard_max),
            },
            delta,
        )),
        Signal::Latency => Some(against_baseline(
            signal,
            seen.slow.candidate,
            seen.slow.baseline,
            Margins {
                relative: plan.latency.rel_margin,
                absolute: plan.latency.abs_margin,
                hard_max: None,
            },
            delta,
        )),
        Signal::Divergence => plan.predictions.map(|gate| {
            let floor = seen.noise.map(|noise| noise.divergence);
            against_floor(signal, seen.divergence, floor, gate.max_divergence, delta)
        }),
        Signal::LabelFlip => plan
            .predictions
            .map(|gate| judge_label_flips(gate, seen, delta)),
    }
}

/// A relative gate's margins over the baseline.
struct Margins {
    relative: f64,
    absolute: f64,
    hard_max: Option<f64>,
}

/// The errors and latency rule (see [`Signal`]).
fn against_baseline(
    signal: Signal,
    candidate: Count,
    baseline: Count,
    margins: Margins,
    delta: f64,
) -> Judged {
    let own = bound::interval(candidate, delta);
    let reference = bound::interval(baseline, delta);
    let allowed = |baseline_rate: f64| baseline_rate * (1.0 + margins.relative) + margins.absolute;
    let limit = allowed(reference.lower);
    let relative_fail = allowed(reference.upper);
    let fail_above = margins
        .hard_max
        .map_or(relative_fail, |hard_max| hard_max.min(relative_fail));
    let note = if candidate.total == 0 {
        Some("no candidate requests yet".to_owned())
    } else if baseline.total == 0 {
        Some(
            "no baseline requests yet: the candidate must prove itself under abs_margin alone"
                .to_owned(),
        )
    } else {
        None
    };
    settle(Settling {
        signal,
        candidate,
        own,
        baseline: Some(baseline),
        baseline_interval: Some(reference),
        limit,
        fail_above,
        delta,
        note,
    })
}

/// The divergence and label-flip rule (see [`Signal`]). `floor` is the noise
/// comparisons' counts; `None` means no noise is measured and the floor is exactly 0.
fn against_floor(
    signal: Signal,
    candidate: Count,
    floor: Option<Count>,
    max_share: f64,
    delta: f64,
) -> Judged {
    let own = bound::interval(candidate, delta);
    let reference = floor.map(|counts| bound::interval(counts, delta));
    let (floor_lower, floor_upper) =
        reference.map_or((0.0, 0.0), |interval| (interval.lower, interval.upper));
    let note = if candidate.total == 0 {
        Some(format!("no {} yet", signal.trials()))
    } else if floor.is_some_and(|counts| counts.total == 0) {
        Some("no live-vs-live pairs yet: the noise floor is unknown".to_owned())
    } else {
        None
    };
    settle(Settling {
        signal,
        candidate,
        own,
        baseline: floor,
        baseline_interval: reference,
        limit: floor_lower + max_share,
        fail_above: floor_upper + max_share,
        delta,
        note,
    })
}

/// Label flips, or PASS when pairs were compared but none carried a label: a model
/// that answers without labels would otherwise hold the rollout forever.
fn judge_label_flips(gate: PredictionGate, seen: &Observation, delta: f64) -> Judged {
    if seen.label_flips.total == 0 && seen.divergence.total > 0 {
        return Judged {
            signal: Signal::LabelFlip,
            verdict: Verdict::Pass,
            candidate: seen.label_flips,
            baseline: seen.noise.map(|noise| noise.label_flips),
            baseline_interval: None,
            rate: None,
            lower: 0.0,
            upper: 1.0,
            limit: gate.max_label_flip,
            fail_above: 1.0,
            delta,
            needed: None,
            note: Some("no labelled pairs: the model's answers carry no labels".to_owned()),
        };
    }
    let floor = seen.noise.map(|noise| noise.label_flips);
    against_floor(
        Signal::LabelFlip,
        seen.label_flips,
        floor,
        gate.max_label_flip,
        delta,
    )
}

/// Everything a verdict is drawn from.
struct Settling {
    signal: Signal,
    candidate: Count,
    own: Interval,
    baseline: Option<Count>,
    baseline_interval: Option<Interval>,
    limit: f64,
    fail_above: f64,
    delta: f64,
    note: Option<String>,
}

/// The verdict: HOLD without candidate trials, then FAIL before PASS, so a candidate
/// proven bad is never passed by a generous limit.
fn settle(s: Settling) -> Judged {
    let verdict = if s.candidate.total == 0 {
        Verdict::Hold
    } else if s.own.lower > s.fail_above {
        Verdict::Fail
    } else if s.own.upper <= s.limit {
        Verdict::Pass
    } else {
        Verdict::Hold
    };
    let needed = match verdict {
        Verdict::Hold => needed(
            s.candidate,
            s.baseline,
            s.signal.clean_rate(),
            s.limit,
            s.delta,
        ),
        Verdict::Pass | Verdict::Fail => None,
    };
    Judged {
        signal: s.signal,
        verdict,
        candidate: s.candidate,
        baseline: s.baseline,
        baseline_interval: s.baseline_interval,
        rate: s.candidate.rate(),
        lower: s.own.lower,
        upper: s.own.upper,
        limit: s.limit,
        fail_above: s.fail_above,
        delta: s.delta,
        needed,
        note: s.note,
    }
}

/// How many more candidate trials would PASS if the rates held: the smallest `more`
/// such that `total + more` trials with `round(rate × (total + more))` bad have an upper
/// bound at most `limit`, with `limit` held fixed (in truth it moves a little as the
/// baseline's bound tightens, so this is an estimate for people, not a promise).
///
/// The rate is the candidate's, or the baseline's (noise floor's) as a guess before the
/// candidate has any trials, or `clean` with neither (no traffic at all); `None`
/// without any of them, when the rate is not below `limit`, or beyond [`NEEDED_CAP`]. Found by doubling, then bisection: the upper bound shrinks
/// as trials grow at a fixed rate (up to the rounding of `bad`).
fn needed(
    candidate: Count,
    baseline: Option<Count>,
    clean: Option<f64>,
    limit: f64,
    delta: f64,
) -> Option<u64> {
    let rate = candidate
        .rate()
        .or_else(|| baseline.and_then(Count::rate))
        .or(clean)?;
    let below_limit = rate < limit;
    if !below_limit {
        return None;
    }
    let passes_with = |more: u64| {
        let total = candidate.total.saturating_add(more);
        let bad = (rate * total as f64).round() as u64;
        bound::upper_at_most(Count { total, bad }, delta, limit)
    };
    let mut enough = 1_u64;
    while !passes_with(enough) {
        if enough >= NEEDED_CAP {
            return None;
        }
        enough = enough.saturating_mul(2).min(NEEDED_CAP);
    }
    // `enough / 2` did not pass (or is 0); the answer is in (enough / 2, enough].
    let mut short = enough / 2;
    while enough - short > 1 {
        let middle = short + (enough - short) / 2;
        if passes_with(middle) {
            enough = middle;
        } else {
            short = middle;
        }
    }
    Some(enough)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_plan::plan;
    use crate::{Arms, Noise};
    use std::time::Duration;

    fn count(total: u64, bad: u64) -> Count {
        Count { total, bad }
    }

    fn errors_seen(baseline: Count, candidate: Count) -> Observation {
        Observation {
            errors: Arms {
                baseline,
                candidate,
            },
            ..Observation::default()
        }
    }

    fn judged(signal: Signal, seen: &Observation) -> Judged {
        let plan = plan();
        judge_signal(&plan, signal, seen, sequence_delta(&plan)).expect("signal applies")
    }

    #[test]
    fn stages_count_steps_below_100_and_the_shadow_phase() {
        let mut plan = plan();
        assert_eq!(judged_stages(&plan), 3);
        assert!((sequence_delta(&plan) - 0.01 / 6.0).abs() < 1e-15);
        plan.shadow_first = Some(Duration::from_secs(60));
        assert_eq!(judged_stages(&plan), 4);
        plan.steps = vec![100];
        plan.shadow_first = None;
        assert_eq!(judged_stages(&plan), 1);
    }

    #[test]
    fn errors_without_candidate_requests_hold_and_say_so() {
        let judged = judged(
            Signal::Errors,
            &errors_seen(count(10_000, 100), count(0, 0)),
        );
        assert_eq!(judged.verdict, Verdict::Hold);
        assert_eq!(judged.note.as_deref(), Some("no candidate requests yet"));
        assert_eq!((judged.lower, judged.upper), (0.0, 1.0));
        // Guessed from the baseline's 1 %: thousands of requests, not none.
        let needed = judged.needed.expect("a guess from the baseline's rate");
        assert!((1_000..100_000).contains(&needed), "{needed}");
    }

    #[test]
    fn without_any_traffic_errors_name_the_fewest_requests_that_could_pass() {
        let errors = judged(Signal::Errors, &errors_seen(count(0, 0), count(0, 0)));
        assert_eq!(errors.verdict, Verdict::Hold);
        let needed = errors.needed.expect("a count even with no rate to go by");
        // All good, the upper bound must come under abs_margin (0.005) alone.
        let passes = |total| bound::upper_at_most(count(total, 0), errors.delta, errors.limit);
        assert!(passes(needed) && !passes(needed - 1), "{needed}");
        assert!((500..10_000).contains(&needed), "{needed}");
        let said = crate::reason::awaited(&errors);
        assert!(
            said.starts_with(&format!(
                "no data yet: {needed} more candidate requests would be needed to pass errors if none failed"
            )),
            "{said}"
        );
        // "Slow" is relative to the baseline's tail: no clean rate to assume.
        let latency = judged(Signal::Latency, &Observation::default());
        assert_eq!((latency.verdict, latency.needed), (Verdict::Hold, None));
    }

    #[test]
    fn errors_pass_when_proven_within_the_baselines_lower_bound_plus_margins() {
        let judged = judged(
            Signal::Errors,
            &errors_seen(count(200_000, 2_000), count(40_000, 400)),
        );
        assert_eq!(judged.verdict, Verdict::Pass, "{judged:?}");
        let baseline = judged.baseline_interval.expect("baseline bound");
        assert!((judged.limit - (baseline.lower * 1.2 + 0.005)).abs() < 1e-15);
        assert!(judged.upper <= judged.limit);
        assert_eq!(judged.needed, None);
    }

    #[test]
    fn errors_fail_at_hard_max_even_when_the_baseline_is_as_bad() {
        // Both arms at 20 %: within the relative rule, but above hard_max 0.05.
        let judged = judged(
            Signal::Errors,
            &errors_seen(count(10_000, 2_000), count(1_000, 200)),
        );
        assert_eq!(judged.verdict, Verdict::Fail);
        assert_eq!(judged.fail_above, 0.05);
    }

    #[test]
    fn errors_fail_on_the_relative_rule_below_hard_max() {
        // Baseline 0.5 %, candidate 3 %: below hard_max, far above 0.005 × 1.2 + 0.005.
        let judged = judged(
            Signal::Errors,
            &errors_seen(count(100_000, 500), count(10_000, 300)),
        );
        assert_eq!(judged.verdict, Verdict::Fail, "{judged:?}");
        assert!(judged.fail_above < 0.05);
    }

    #[test]
    fn errors_hold_while_unproven_and_estimate_what_is_needed() {
        let judged = judged(
            Signal::Errors,
            &errors_seen(count(20_000, 200), count(500, 5)),
        );
        assert_eq!(judged.verdict, Verdict::Hold);
        let needed = judged.needed.expect("passes eventually at 1 %");
        // Feeding the candidate that many more at its rate passes; fewer does not.
        let plan = plan();
        let delta = sequence_delta(&plan);
        let at = |more: u64| {
            let total = 500 + more;
            Count {
                total,
                bad: (0.01 * total as f64).round() as u64,
            }
        };
        assert!(bound::interval(at(needed), delta).upper <= judged.limit);
        assert!(bound::interval(at(needed - 1), delta).upper > judged.limit);
    }

    #[test]
    fn a_candidate_at_or_above_the_limit_can_never_pass() {
        let judged = judged(
            Signal::Errors,
            &errors_seen(count(20_000, 200), count(300, 6)),
        );
        assert_eq!(judged.verdict, Verdict::Hold);
        assert_eq!(judged.needed, None);
    }

    #[test]
    fn latency_has_no_hard_max() {
        let seen = Observation {
            slow: Arms {
                baseline: count(10_000, 2_000),
                candidate: count(1_000, 200),
            },
            ..Observation::default()
        };
        let judged = judged(Signal::Latency, &seen);
        assert_ne!(judged.verdict, Verdict::Fail);
        assert!(judged.fail_above > 0.2);
    }

    #[test]
    fn divergence_without_noise_is_judged_against_exactly_zero() {
        let seen = Observation {
            divergence: count(10_000, 100),
            ..Observation::default()
        };
        let judged = judged(Signal::Divergence, &seen);
        assert_eq!(judged.baseline, None);
        assert_eq!(judged.baseline_interval, None);
        assert_eq!((judged.limit, judged.fail_above), (0.05, 0.05));
        assert_eq!(judged.verdict, Verdict::Pass);

        let seen = Observation {
            divergence: count(1_000, 400),
            ..Observation::default()
        };
        assert_eq!(
            judged_signal_verdict(&seen, Signal::Divergence),
            Verdict::Fail
        );
    }

    fn judged_signal_verdict(seen: &Observation, signal: Signal) -> Verdict {
        judged(signal, seen).verdict
    }

    #[test]
    fn divergence_is_judged_above_the_noise_floor() {
        // 20 % divergence is fine when the model disagrees with itself 20 % of the time.
        let seen = Observation {
            divergence: count(20_000, 4_000),
            noise: Some(Noise {
                divergence: count(20_000, 4_000),
                label_flips: Count::default(),
            }),
            ..Observation::default()
        };
        let judged = judged(Signal::Divergence, &seen);
        assert_eq!(judged.verdict, Verdict::Pass, "{judged:?}");
        assert_eq!(judged.baseline, Some(count(20_000, 4_000)));
        let floor = judged.baseline_interval.expect("noise bound");
        assert!((judged.limit - (floor.lower + 0.05)).abs() < 1e-15);
        assert!((judged.fail_above - (floor.upper + 0.05)).abs() < 1e-15);
    }

    #[test]
    fn an_unmeasured_noise_floor_cannot_fail_a_candidate() {
        let seen = Observation {
            divergence: count(1_000, 900),
            noise: Some(Noise::default()),
            ..Observation::default()
        };
        let judged = judged(Signal::Divergence, &seen);
        assert_eq!(judged.verdict, Verdict::Hold);
        assert!(judged
            .note
            .as_deref()
            .is_some_and(|n| n.contains("noise floor")));
    }

    #[test]
    fn no_compared_pairs_hold() {
        let judged = judged(Signal::Divergence, &Observation::default());
        assert_eq!(judged.verdict, Verdict::Hold);
        assert_eq!(judged.note.as_deref(), Some("no compared pairs yet"));
        assert!(judged.needed.is_some_and(|n| n > 0), "{judged:?}");
    }

    #[test]
    fn label_flips_do_not_apply_to_answers_without_labels() {
        let seen = Observation {
            divergence: count(300, 3),
            ..Observation::default()
        };
        let judged = judged(Signal::LabelFlip, &seen);
        assert_eq!(judged.verdict, Verdict::Pass);
        assert!(judged
            .note
            .as_deref()
            .is_some_and(|n| n.contains("carry no labels")));

        // Before any pair at all, it holds like the rest.
        let judged = self::judged(Signal::LabelFlip, &Observation::default());
        assert_eq!(judged.verdict, Verdict::Hold);
    }

    #[test]
    fn label_flips_fail_when_proven_above_the_limit() {
        let seen = Observation {
            divergence: count(2_000, 400),
            label_flips: count(2_000, 400),
            ..Observation::default()
        };
        assert_eq!(
            judged_signal_verdict(&seen, Signal::LabelFlip),
            Verdict::Fail
        );
    }

    #[test]
    fn prediction_signals_need_a_prediction_gate() {
        let mut plan = plan();
        plan.predictions = None;
        let seen = Observation::default();
        assert_eq!(judge_signal(&plan, Signal::Divergence, &seen, 0.01), None);
        assert_eq!(judge_signal(&plan, Signal::LabelFlip, &seen, 0.01), None);
    }

    #[test]
    fn needed_without_any_rate_takes_the_clean_rate_if_there_is_one() {
        let clean = Some(0.0);
        let fewest = needed(Count::default(), None, clean, 0.05, 0.001).expect("a count");
        let passes = |total| bound::upper_at_most(count(total, 0), 0.001, 0.05);
        assert!(passes(fewest) && !passes(fewest - 1), "{fewest}");
        assert_eq!(
            needed(Count::default(), Some(Count::default()), clean, 0.05, 0.001),
            Some(fewest)
        );
        assert_eq!(needed(Count::default(), None, None, 0.05, 0.001), None);
        // A limit of 0 cannot be passed at any rate.
        assert_eq!(needed(count(10, 0), None, clean, 0.0, 0.001), None);
    }

    #[test]
    fn labels_are_the_record_names() {
        let labels: Vec<_> = Signal::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(labels, ["errors", "latency", "divergence", "label_flip"]);
        for signal in Signal::ALL {
            let json = serde_json::to_string(&signal).expect("serialises");
            assert_eq!(json, format!("\"{}\"", signal.label()));
        }
        for verdict in [Verdict::Pass, Verdict::Hold, Verdict::Fail] {
            let json = serde_json::to_string(&verdict).expect("serialises");
            assert_eq!(json, format!("\"{}\"", verdict.label()));
        }
    }
}
