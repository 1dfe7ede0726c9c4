//! The step state machine: what the verdicts of the signals come to.
//!
//! The rules are documented on [`judge`], where a reader of the public API finds them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use veer_config::{Inconclusive, Rollout};

use crate::reason::{self, duration};
use crate::signal::{judge_signal, sequence_delta};
use crate::{Judged, Observation, Phase, Progress, Signal, Verdict};

/// What a decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The rollout begins (see [`begin`]).
    Start,
    /// On to the next step (or out of the shadow phase to the first step).
    Advance,
    /// Nothing changes yet.
    Hold,
    /// The weight is held until a person decides.
    Pause,
    /// A person lifted a pause; the step starts over.
    Resume,
    /// The candidate's weight is set to 0: proven worse, or undecided under
    /// `on_inconclusive = "rollback"`.
    Rollback,
    /// The candidate takes 100 %.
    Promote,
    /// A person set the candidate to 0.
    Abort,
    /// A person started the rollout over from the beginning.
    Retry,
}

impl Action {
    /// The name in records: `start`, `advance`, `hold`, `pause`, `resume`, `rollback`,
    /// `promote`, `abort`, `retry`.
    pub fn label(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Advance => "advance",
            Action::Hold => "hold",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Rollback => "rollback",
            Action::Promote => "promote",
            Action::Abort => "abort",
            Action::Retry => "retry",
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// veer itself, from the statistics ([`judge`]).
    Veer,
    /// A person, through a command ([`crate::command`]).
    Operator,
}

impl Actor {
    /// The name in records: `veer`, `operator`.
    pub fn label(self) -> &'static str {
        match self {
            Actor::Veer => "veer",
            Actor::Operator => "operator",
        }
    }
}

/// What to do now, with the numbers that led to it: the body of one decision-log line.
///
/// Serialised with the resulting [`Progress`] flattened in, so a line reads
/// `{"action", "actor", "from", "to", "phase", "step", "weight", ["resume_to",]
/// "new_step", "reason", "signals"}`; the proxy adds the route and the time around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// What happens.
    pub action: Action,
    /// Who decided it.
    pub actor: Actor,
    /// The candidate's weight before, in percent.
    pub from: u8,
    /// The candidate's weight after, in percent.
    pub to: u8,
    /// Where the rollout stands after; the proxy stores it in the state file.
    #[serde(flatten)]
    pub progress: Progress,
    /// The stage restarts, with fresh counts and a fresh clock: true for start, advance
    /// (including out of the shadow phase), resume and retry. Not for promote, rollback,
    /// abort or pause, which end or suspend judging (a pause keeps counting, so the
    /// record it shows stays whole).
    pub new_step: bool,
    /// The decision in plain words, naming the signal, the numbers and the setting.
    pub reason: String,
    /// Every signal judged for this decision; empty when none was (a settled rollout,
    /// a command).
    pub signals: Vec<Judged>,
}

/// The decision that begins a rollout: the progress of [`Progress::start`], from the
/// candidate's weight before veer took it over (`weight_before`, the config's).
pub fn begin(plan: &Rollout, weight_before: u8) -> Decision {
    let start = Progress::start(plan);
    let reason = match plan.shadow_first {
        Some(minimum) => format!(
            "the rollout begins in shadow: weight 0, requests mirrored to the candidate for at least {} and until the prediction gate passes",
            duration(minimum)
        ),
        None => format!("the rollout begins at {}%", start.weight),
    };
    record(
        Actor::Veer,
        weight_before,
        Outcome {
            action: Action::Start,
            to: start,
            new_step: true,
            reason,
        },
        Vec::new(),
    )
}

/// Judges the current step from what was seen since it began, and says what to do.
///
/// `seen` holds the counts since the step began (since the last decision with
/// `new_step`), `step_age` the time since then. The proxy applies the decision (weight
/// swap, state file, decision log). The rules, in plain words:
///
/// * **Which signals.** While progressing: errors and latency, plus divergence and label
///   flips when the plan has a prediction gate. In the shadow phase: divergence and
///   label flips only (the candidate serves no one, so it has no errors of its own to
///   judge). While paused: those of the phase a resume returns to.
/// * **A step** (progressing at step `i`, weight `steps[i]`):
///   1. an errors or latency FAIL rolls back (weight 0): the candidate is proven worse
///      for the users it serves;
///   2. a divergence or label-flip FAIL rolls back when the prediction gate is
///      `critical`, else pauses with the weight kept, for a person to decide;
///   3. when every signal passes and the step has lasted `min_step`, the rollout
///      advances to step `i + 1`; a next step of 100 % is the promotion;
///   4. a step still undecided at `max_step` gets `on_inconclusive` (pause with the
///      weight kept, or roll back);
///   5. otherwise it holds, and the reason says what it waits for (with, for a signal
///      short of data, how many more candidate requests would settle it at the rates
///      seen so far).
/// * **The shadow phase** is a step at weight 0: a prediction FAIL rolls back
///   (critical) or pauses; when the prediction gate passes (or there is none) and
///   `shadow_first` has elapsed, the rollout advances to the first step; `max_step` and
///   holding are as for a step.
/// * **Paused**, the signals are judged for the record only, with one exception: an
///   errors or latency FAIL while the candidate still has weight rolls back. A pause is
///   a person's hold on the weight, not a shield for a candidate proven to hurt users.
/// * **Promoted and rolled back** are settled: every call holds, with no signals judged
///   (there is no step and nothing at stake until a person retries).
///
/// These decisions carry [`Actor::Veer`]; a person's commands go through
/// [`crate::command`].
pub fn judge(
    plan: &Rollout,
    progress: &Progress,
    seen: &Observation,
    step_age: Duration,
) -> Decision {
    let (outcome, signals) = match progress.phase {
        Phase::Progressing => {
            let signals = judge_all(plan, Phase::Progressing, seen);
            (step_outcome(plan, progress, &signals, step_age), signals)
        }
        Phase::Shadow => {
            let signals = judge_all(plan, Phase::Shadow, seen);
            (shadow_outcome(plan, progress, &signals, step_age), signals)
        }
        Phase::Paused => {
            let signals = judge_all(plan, progress.resumes_to(), seen);
            (paused_outcome(plan, progress, &signals), signals)
        }
        Phase::Promoted => (
            hold(progress, "promoted: nothing left to judge".to_owned()),
            Vec::new(),
        ),
        Phase::RolledBack => (
            hold(
                progress,
                "rolled back: nothing left to judge until a retry".to_owned(),
            ),
            Vec::new(),
        ),
    };
    record(Actor::Veer, progress.weight, outcome, signals)
}

/// A change of progress (or none), before it becomes a [`Decision`].
pub(crate) struct Outcome {
    pub(crate) action: Action,
    pub(crate) to: Progress,
    pub(crate) new_step: bool,
    pub(crate) reason: String,
}

/// The decision record of an outcome.
pub(crate) fn record(actor: Actor, from: u8, outcome: Outcome, signals: Vec<Judged>) -> Decision {
    Decision {
        action: outcome.action,
        actor,
        from,
        to: outcome.to.weight,
        progress: outcome.to,
        new_step: outcome.new_step,
        reason: outcome.reason,
        signals,
    }
}

/// The signals judged in `phase`, each at the plan's level.
fn judge_all(plan: &Rollout, phase: Phase, seen: &Observation) -> Vec<Judged> {
    let delta = sequence_delta(plan);
    let signals: &[Signal] = match phase {
        Phase::Progressing => &Signal::ALL,
        Phase::Shadow => &[Signal::Divergence, Signal::LabelFlip],
        Phase::Paused | Phase::Promoted | Phase::RolledBack => &[],
    };
    signals
        .iter()
        .filter_map(|&signal| judge_signal(plan, signal, seen, delta))
        .collect()
}

/// Rules 1 to 5 of a step (see [`judge`]).
fn step_outcome(plan: &Rollout, progress: &Progress, signals: &[Judged], age: Duration) -> Outcome {
    let Some(index) = progress.step.filter(|&index| index < plan.steps.len()) else {
        // A state file from another plan; the proxy restarts a rollout whose steps
        // changed, so this is a hand edit. Holding harms no one.
        return hold(
            progress,
            format!(
                "the progress (step {:?}) does not fit the plan's {} steps: waiting for an operator",
                progress.step,
                plan.steps.len()
            ),
        );
    };
    if let Some(words) = failures(plan, signals, is_traffic) {
        return rollback(progress, words);
    }
    if let Some(words) = failures(plan, signals, is_prediction) {
        return prediction_breach(plan, progress, Phase::Progressing, words);
    }
    if all_pass(signals) {
        if age >= plan.min_step {
            let head = format!("every signal passed after {}", duration(age));
            return advance(plan, progress, index + 1, head);
        }
        return hold(
            progress,
            format!(
                "every signal passed; the step has run {} of its minimum {}",
                duration(age),
                duration(plan.min_step)
            ),
        );
    }
    if age >= plan.max_step {
        return inconclusive(plan, progress, Phase::Progressing, signals, age);
    }
    hold(progress, waiting(signals))
}

/// The shadow phase's rules (see [`judge`]).
fn shadow_outcome(
    plan: &Rollout,
    progress: &Progress,
    signals: &[Judged],
    age: Duration,
) -> Outcome {
    if let Some(words) = failures(plan, signals, is_prediction) {
        return prediction_breach(plan, progress, Phase::Shadow, words);
    }
    // In the shadow phase without `shadow_first` (a hand-edited state file), there is
    // no minimum to wait for.
    let minimum = plan.shadow_first.unwrap_or(Duration::ZERO);
    let gate = match plan.predictions {
        Some(_) => "the prediction gate passed",
        None => "there is no prediction gate",
    };
    if all_pass(signals) {
        if age >= minimum {
            let head = format!("{gate} after {} in shadow", duration(age));
            return advance(plan, progress, 0, head);
        }
        return hold(
            progress,
            format!(
                "{gate}; the shadow phase has run {} of its minimum {}",
                duration(age),
                duration(minimum)
            ),
        );
    }
    if age >= plan.max_step {
        return inconclusive(plan, progress, Phase::Shadow, signals, age);
    }
    hold(progress, waiting(signals))
}

/// Paused: hold, unless the candidate still serves users and is proven worse for them.
fn paused_outcome(plan: &Rollout, progress: &Progress, signals: &[Judged]) -> Outcome {
    if progress.weight > 0 {
        if let Some(words) = failures(plan, signals, is_traffic) {
            return rollback(
                progress,
                format!(
                    "{words} (while paused at {}%: a pause holds the weight, it does not shield a candidate proven worse)",
                    progress.weight
                ),
            );
        }
    }
    hold(
        progress,
        format!(
            "paused at {}%: waiting for an operator to resume, promote, abort or retry",
            progress.weight
        ),
    )
}

/// Errors and latency: what the candidate's users feel.
fn is_traffic(signal: Signal) -> bool {
    matches!(signal, Signal::Errors | Signal::Latency)
}

/// Divergence and label flips: what the candidate would answer.
fn is_prediction(signal: Signal) -> bool {
    !is_traffic(signal)
}

/// The words of every FAIL among the signals `which` selects, or `None` without one.
fn failures(plan: &Rollout, signals: &[Judged], which: fn(Signal) -> bool) -> Option<String> {
    let words: Vec<String> = signals
        .iter()
        .filter(|judged| which(judged.signal) && judged.verdict == Verdict::Fail)
        .map(|judged| reason::failure(plan, judged))
        .collect();
    (!words.is_empty()).then(|| reason::joined(words))
}

/// Every signal passed (vacuously, when none is judged).
fn all_pass(signals: &[Judged]) -> bool {
    signals.iter().all(|judged| judged.verdict == Verdict::Pass)
}

/// What the holding signals wait for.
fn waiting(signals: &[Judged]) -> String {
    let words: Vec<String> = signals
        .iter()
        .filter(|judged| judged.verdict == Verdict::Hold)
        .map(reason::awaited)
        .collect();
    if words.is_empty() {
        return "no signal is settled yet".to_owned();
    }
    reason::joined(words)
}

/// A proven prediction breach: roll back when predictions are critical, else pause for
/// a person, returning to `resume_to`.
fn prediction_breach(
    plan: &Rollout,
    progress: &Progress,
    resume_to: Phase,
    words: String,
) -> Outcome {
    // Without a gate no prediction signal is judged; critical is then moot.
    let critical = plan.predictions.is_none_or(|gate| gate.critical);
    if critical {
        rollback(progress, format!("{words} (predictions are critical)"))
    } else {
        pause(
            progress,
            resume_to,
            format!("{words} (predictions are not critical: paused for a person to decide)"),
        )
    }
}

/// A stage undecided at `max_step`: what `on_inconclusive` says.
fn inconclusive(
    plan: &Rollout,
    progress: &Progress,
    resume_to: Phase,
    signals: &[Judged],
    age: Duration,
) -> Outcome {
    let head = format!(
        "undecided after {} (max_step {}): {}",
        duration(age),
        duration(plan.max_step),
        waiting(signals)
    );
    match plan.on_inconclusive {
        Inconclusive::Pause => pause(
            progress,
            resume_to,
            format!("{head}; on_inconclusive = pause"),
        ),
        Inconclusive::Rollback => rollback(progress, format!("{head}; on_inconclusive = rollback")),
    }
}

/// On to step `next` (from the step before it, or from the shadow phase to step 0);
/// a step of 100 %, or the end of the steps, is the promotion.
fn advance(plan: &Rollout, progress: &Progress, next: usize, head: String) -> Outcome {
    match plan.steps.get(next) {
        Some(&weight) if weight < 100 => Outcome {
            action: Action::Advance,
            to: Progress {
                phase: Phase::Progressing,
                step: Some(next),
                weight,
                resume_to: None,
            },
            new_step: true,
            reason: format!("{head}; on to {weight}%"),
        },
        Some(_) => promote(
            Some(next),
            format!("{head}; the next step is 100%: promoted"),
        ),
        None if plan.steps.is_empty() => hold(
            progress,
            format!("{head}, but the plan has no steps: waiting for an operator"),
        ),
        None => promote(progress.step, format!("{head} at the last step: promoted")),
    }
}

/// The candidate takes 100 %.
fn promote(step: Option<usize>, reason: String) -> Outcome {
    Outcome {
        action: Action::Promote,
        to: Progress {
            phase: Phase::Promoted,
            step,
            weight: 100,
            resume_to: None,
        },
        new_step: false,
        reason,
    }
}

/// No change.
pub(crate) fn hold(progress: &Progress, reason: String) -> Outcome {
    Outcome {
        action: Action::Hold,
        to: *progress,
        new_step: false,
        reason,
    }
}

/// The candidate to 0; the step it ended at is kept for the record.
fn rollback(progress: &Progress, reason: String) -> Outcome {
    Outcome {
        action: Action::Rollback,
        to: Progress {
            phase: Phase::RolledBack,
            step: progress.step,
            weight: 0,
            resume_to: None,
        },
        new_step: false,
        reason,
    }
}

/// The weight held, until a person resumes to `resume_to` (or decides otherwise).
fn pause(progress: &Progress, resume_to: Phase, reason: String) -> Outcome {
    Outcome {
        action: Action::Pause,
        to: Progress {
            phase: Phase::Paused,
            resume_to: Some(resume_to),
            ..*progress
        },
        new_step: false,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_plan::plan;
    use crate::{Arms, Count, Noise};
    use veer_config::PredictionGate;

    const MINUTE: Duration = Duration::from_secs(60);

    fn count(total: u64, bad: u64) -> Count {
        Count { total, bad }
    }

    fn at_step(step: usize) -> Progress {
        Progress {
            phase: Phase::Progressing,
            step: Some(step),
            weight: plan().steps[step],
            resume_to: None,
        }
    }

    fn in_shadow() -> Progress {
        Progress {
            phase: Phase::Shadow,
            step: None,
            weight: 0,
            resume_to: None,
        }
    }

    /// Plenty of traffic with every signal well within its limits: errors 1 % on both
    /// arms, 5 % slow on both, 0.1 % divergence, and answers without labels.
    fn healthy() -> Observation {
        Observation {
            errors: Arms {
                baseline: count(400_000, 4_000),
                candidate: count(40_000, 400),
            },
            slow: Arms {
                baseline: count(400_000, 20_000),
                candidate: count(40_000, 2_000),
            },
            divergence: count(20_000, 20),
            label_flips: Count::default(),
            noise: None,
        }
    }

    fn verdict_of(decision: &Decision, signal: Signal) -> Option<Verdict> {
        decision
            .signals
            .iter()
            .find(|judged| judged.signal == signal)
            .map(|judged| judged.verdict)
    }

    #[test]
    fn every_signal_passing_after_min_step_advances() {
        let decision = judge(
            &plan(),
            &at_step(0),
            &healthy(),
            2 * MINUTE + Duration::from_secs(5),
        );
        assert_eq!(decision.action, Action::Advance);
        assert_eq!(decision.actor, Actor::Veer);
        assert_eq!((decision.from, decision.to), (5, 25));
        assert_eq!(decision.progress, at_step(1));
        assert!(decision.new_step);
        assert_eq!(
            decision.reason,
            "every signal passed after 2m 5s; on to 25%"
        );
        assert_eq!(decision.signals.len(), 4);
    }

    #[test]
    fn passing_before_min_step_holds() {
        let decision = judge(&plan(), &at_step(0), &healthy(), MINUTE);
        assert_eq!(decision.action, Action::Hold);
        assert_eq!(decision.progress, at_step(0));
        assert!(!decision.new_step);
        assert_eq!(
            decision.reason,
            "every signal passed; the step has run 1m of its minimum 2m"
        );
    }

    #[test]
    fn passing_the_step_before_100_promotes() {
        let decision = judge(&plan(), &at_step(2), &healthy(), 3 * MINUTE);
        assert_eq!(decision.action, Action::Promote);
        assert_eq!((decision.from, decision.to), (50, 100));
        assert_eq!(decision.progress.phase, Phase::Promoted);
        assert_eq!(decision.progress.step, Some(3));
        assert!(decision.reason.ends_with("the next step is 100%: promoted"));
    }

    #[test]
    fn an_errors_failure_rolls_back_at_once() {
        let mut seen = healthy();
        seen.errors.candidate = count(200, 40);
        let decision = judge(&plan(), &at_step(1), &seen, Duration::from_secs(10));
        assert_eq!(decision.action, Action::Rollback);
        assert_eq!((decision.from, decision.to), (25, 0));
        assert_eq!(decision.progress.phase, Phase::RolledBack);
        assert_eq!(decision.progress.step, Some(1));
        assert_eq!(verdict_of(&decision, Signal::Errors), Some(Verdict::Fail));
        // The baseline's 1 % allows at most 0.0108 × 1.2 + 0.005, below hard_max.
        assert_eq!(
            decision.reason,
            "errors: the candidate's rate is at least 0.0983, above 0.018: the baseline's at most 0.0108 with rel_margin 0.2 and abs_margin 0.005"
        );
    }

    #[test]
    fn hard_max_caps_what_a_bad_baseline_allows() {
        let mut seen = healthy();
        seen.errors.baseline = count(400_000, 16_000);
        seen.errors.candidate = count(200, 40);
        let decision = judge(&plan(), &at_step(1), &seen, Duration::from_secs(10));
        assert_eq!(decision.action, Action::Rollback);
        assert_eq!(
            decision.reason,
            "errors: the candidate's rate is at least 0.0983, above hard_max 0.05"
        );
    }

    #[test]
    fn a_latency_failure_rolls_back() {
        let mut seen = healthy();
        seen.slow.candidate = count(40_000, 8_000);
        let decision = judge(&plan(), &at_step(0), &seen, 5 * MINUTE);
        assert_eq!(decision.action, Action::Rollback);
        assert!(
            decision.reason.starts_with("latency: "),
            "{}",
            decision.reason
        );
        assert!(decision
            .reason
            .contains("rel_margin 0.2 and abs_margin 0.01"));
    }

    #[test]
    fn a_critical_prediction_failure_rolls_back_and_a_mild_one_pauses() {
        let mut seen = healthy();
        seen.divergence = count(5_000, 2_000);
        let decision = judge(&plan(), &at_step(1), &seen, MINUTE);
        assert_eq!(decision.action, Action::Rollback);
        assert!(decision.reason.contains("above max_divergence 0.05"));
        assert!(decision.reason.ends_with("(predictions are critical)"));

        let mut mild = plan();
        mild.predictions = Some(PredictionGate {
            critical: false,
            ..mild.predictions.expect("the test plan has a gate")
        });
        let decision = judge(&mild, &at_step(1), &seen, MINUTE);
        assert_eq!(decision.action, Action::Pause);
        assert_eq!((decision.from, decision.to), (25, 25));
        assert_eq!(decision.progress.phase, Phase::Paused);
        assert_eq!(decision.progress.resume_to, Some(Phase::Progressing));
        assert!(!decision.new_step);
    }

    #[test]
    fn traffic_failures_win_over_prediction_failures() {
        let mut mild = plan();
        mild.predictions = mild.predictions.map(|gate| PredictionGate {
            critical: false,
            ..gate
        });
        let mut seen = healthy();
        seen.divergence = count(5_000, 2_000);
        seen.errors.candidate = count(200, 40);
        let decision = judge(&mild, &at_step(0), &seen, MINUTE);
        assert_eq!(decision.action, Action::Rollback);
    }

    #[test]
    fn undecided_at_max_step_gets_on_inconclusive() {
        let mut seen = healthy();
        seen.errors.candidate = count(300, 4);
        let decision = judge(&plan(), &at_step(0), &seen, 30 * MINUTE);
        assert_eq!(decision.action, Action::Pause);
        assert_eq!(decision.progress.weight, 5);
        assert_eq!(decision.progress.resume_to, Some(Phase::Progressing));
        assert!(decision
            .reason
            .starts_with("undecided after 30m (max_step 30m): errors:"));
        assert!(decision.reason.ends_with("on_inconclusive = pause"));

        let mut strict = plan();
        strict.on_inconclusive = Inconclusive::Rollback;
        let decision = judge(&strict, &at_step(0), &seen, 30 * MINUTE);
        assert_eq!(decision.action, Action::Rollback);
        assert_eq!(decision.to, 0);
    }

    #[test]
    fn holding_says_what_it_waits_for() {
        let mut seen = healthy();
        seen.errors.candidate = Count::default();
        seen.slow.candidate = Count::default();
        let decision = judge(&plan(), &at_step(0), &seen, MINUTE);
        assert_eq!(decision.action, Action::Hold);
        assert_eq!(verdict_of(&decision, Signal::Errors), Some(Verdict::Hold));
        let needed = decision.signals[0]
            .needed
            .expect("guessed from the baseline");
        assert!(
            decision.reason.starts_with(&format!(
                "no data yet: {needed} more candidate requests would be needed to pass errors at the current rates"
            )),
            "{}",
            decision.reason
        );

        seen.errors.candidate = count(500, 5);
        let decision = judge(&plan(), &at_step(0), &seen, MINUTE);
        assert!(
            decision
                .reason
                .starts_with("errors: the candidate's rate is at most"),
            "{}",
            decision.reason
        );
        assert!(decision
            .reason
            .contains("more candidate requests would be needed at the current rates"));
    }

    #[test]
    fn without_a_prediction_gate_only_traffic_is_judged() {
        let mut plan = plan();
        plan.predictions = None;
        let decision = judge(&plan, &at_step(0), &healthy(), 3 * MINUTE);
        let judged: Vec<Signal> = decision.signals.iter().map(|j| j.signal).collect();
        assert_eq!(judged, [Signal::Errors, Signal::Latency]);
        assert_eq!(decision.action, Action::Advance);
    }

    fn shadow_plan() -> Rollout {
        let mut plan = plan();
        plan.shadow_first = Some(5 * MINUTE);
        plan
    }

    /// Mirrored traffic at the noise floor: 10 % divergence on both live-vs-shadow and
    /// live-vs-live pairs.
    fn shadow_at_noise_floor() -> Observation {
        Observation {
            divergence: count(60_000, 6_000),
            noise: Some(Noise {
                divergence: count(60_000, 6_000),
                label_flips: Count::default(),
            }),
            ..Observation::default()
        }
    }

    #[test]
    fn the_shadow_phase_judges_predictions_only_and_advances_after_shadow_first() {
        let plan = shadow_plan();
        let seen = shadow_at_noise_floor();
        let early = judge(&plan, &in_shadow(), &seen, MINUTE);
        assert_eq!(early.action, Action::Hold);
        let judged: Vec<Signal> = early.signals.iter().map(|j| j.signal).collect();
        assert_eq!(judged, [Signal::Divergence, Signal::LabelFlip]);
        assert_eq!(
            early.reason,
            "the prediction gate passed; the shadow phase has run 1m of its minimum 5m"
        );

        let decision = judge(&plan, &in_shadow(), &seen, 5 * MINUTE);
        assert_eq!(decision.action, Action::Advance);
        assert_eq!((decision.from, decision.to), (0, 5));
        assert_eq!(
            decision.progress,
            Progress {
                phase: Phase::Progressing,
                step: Some(0),
                weight: 5,
                resume_to: None
            }
        );
        assert!(decision.new_step);
    }

    #[test]
    fn a_shadow_failure_rolls_back_or_pauses_back_to_shadow() {
        let mut plan = shadow_plan();
        let mut seen = shadow_at_noise_floor();
        seen.divergence = count(2_000, 800);
        let decision = judge(&plan, &in_shadow(), &seen, MINUTE);
        assert_eq!(decision.action, Action::Rollback);
        assert_eq!(decision.progress.step, None);
        assert!(decision.reason.contains("the noise floor's at most"));

        plan.predictions = plan.predictions.map(|gate| PredictionGate {
            critical: false,
            ..gate
        });
        let decision = judge(&plan, &in_shadow(), &seen, MINUTE);
        assert_eq!(decision.action, Action::Pause);
        assert_eq!(decision.progress.resume_to, Some(Phase::Shadow));
        assert_eq!(decision.to, 0);
    }

    #[test]
    fn an_undecided_shadow_phase_gets_on_inconclusive() {
        let decision = judge(
            &shadow_plan(),
            &in_shadow(),
            &Observation::default(),
            30 * MINUTE,
        );
        assert_eq!(decision.action, Action::Pause);
        assert_eq!(decision.progress.resume_to, Some(Phase::Shadow));
    }

    #[test]
    fn a_shadow_phase_without_a_prediction_gate_waits_out_shadow_first() {
        let mut plan = shadow_plan();
        plan.predictions = None;
        let early = judge(&plan, &in_shadow(), &Observation::default(), MINUTE);
        assert_eq!(early.action, Action::Hold);
        assert!(early.signals.is_empty());
        let decision = judge(&plan, &in_shadow(), &Observation::default(), 5 * MINUTE);
        assert_eq!(decision.action, Action::Advance);
        assert!(decision
            .reason
            .starts_with("there is no prediction gate after 5m in shadow"));
    }

    fn paused_at(step: usize, from: Phase) -> Progress {
        Progress {
            phase: Phase::Paused,
            resume_to: Some(from),
            ..at_step(step)
        }
    }

    #[test]
    fn a_pause_holds_and_still_judges_for_the_record() {
        let decision = judge(
            &plan(),
            &paused_at(1, Phase::Progressing),
            &healthy(),
            40 * MINUTE,
        );
        assert_eq!(decision.action, Action::Hold);
        assert_eq!(decision.progress, paused_at(1, Phase::Progressing));
        assert_eq!(decision.signals.len(), 4);
        assert!(decision.reason.starts_with("paused at 25%"));
    }

    #[test]
    fn a_pause_does_not_shield_a_candidate_proven_worse() {
        let mut seen = healthy();
        seen.errors.candidate = count(200, 40);
        let decision = judge(&plan(), &paused_at(1, Phase::Progressing), &seen, MINUTE);
        assert_eq!(decision.action, Action::Rollback);
        assert_eq!((decision.from, decision.to), (25, 0));
        assert!(decision.reason.contains("does not shield"));
    }

    #[test]
    fn a_pause_of_the_shadow_phase_never_rolls_back_on_predictions() {
        let progress = Progress {
            phase: Phase::Paused,
            step: None,
            weight: 0,
            resume_to: Some(Phase::Shadow),
        };
        let seen = Observation {
            divergence: count(2_000, 800),
            ..Observation::default()
        };
        let decision = judge(&shadow_plan(), &progress, &seen, MINUTE);
        assert_eq!(decision.action, Action::Hold);
        assert_eq!(
            verdict_of(&decision, Signal::Divergence),
            Some(Verdict::Fail)
        );
        assert_eq!(verdict_of(&decision, Signal::Errors), None);
    }

    #[test]
    fn settled_rollouts_hold_without_judging() {
        for (phase, weight) in [(Phase::Promoted, 100), (Phase::RolledBack, 0)] {
            let progress = Progress {
                phase,
                step: Some(1),
                weight,
                resume_to: None,
            };
            let decision = judge(&plan(), &progress, &healthy(), 90 * MINUTE);
            assert_eq!(decision.action, Action::Hold);
            assert_eq!(decision.progress, progress);
            assert!(decision.signals.is_empty());
        }
    }

    #[test]
    fn progress_that_does_not_fit_the_plan_holds_without_panicking() {
        let mut progress = at_step(0);
        progress.step = Some(9);
        let decision = judge(&plan(), &progress, &healthy(), 3 * MINUTE);
        assert_eq!(decision.action, Action::Hold);
        progress.step = None;
        assert_eq!(
            judge(&plan(), &progress, &healthy(), 3 * MINUTE).action,
            Action::Hold
        );

        let mut empty = plan();
        empty.steps.clear();
        assert_eq!(Progress::start(&empty).weight, 0);
        let decision = judge(&empty, &in_shadow(), &shadow_at_noise_floor(), 10 * MINUTE);
        assert_eq!(decision.action, Action::Hold);
        assert_eq!(decision.to, 0);
    }

    #[test]
    fn a_plan_of_one_full_step_promotes_when_it_passes() {
        let mut whole = plan();
        whole.steps = vec![100];
        let progress = Progress::start(&whole);
        let decision = judge(&whole, &progress, &healthy(), 3 * MINUTE);
        assert_eq!(decision.action, Action::Promote);
        assert_eq!(decision.progress.step, Some(0));
    }

    #[test]
    fn begin_records_the_start() {
        let decision = begin(&plan(), 0);
        assert_eq!(decision.action, Action::Start);
        assert_eq!((decision.from, decision.to), (0, 5));
        assert!(decision.new_step);
        assert_eq!(decision.reason, "the rollout begins at 5%");

        let decision = begin(&shadow_plan(), 10);
        assert_eq!((decision.from, decision.to), (10, 0));
        assert_eq!(decision.progress.phase, Phase::Shadow);
    }

    /// The decision-log line is a contract with whoever reads the log: pin its shape.
    #[test]
    fn a_decision_serialises_to_the_log_line_shape() {
        let mut seen = healthy();
        seen.errors.candidate = Count::default();
        let decision = judge(&plan(), &at_step(0), &seen, MINUTE);
        let text = serde_json::to_string(&decision).expect("serialises");
        assert!(
            text.starts_with(
                r#"{"action":"hold","actor":"veer","from":5,"to":5,"phase":"progressing","step":0,"weight":5,"new_step":false,"reason":"#
            ),
            "{text}"
        );
        let line: serde_json::Value = serde_json::from_str(&text).expect("parses");
        // Nothing else at the top: `resume_to` is left out unless paused.
        assert_eq!(line.as_object().map(|object| object.len()), Some(10));
        assert_eq!(line["action"], "hold");
        assert_eq!(line["actor"], "veer");
        assert_eq!(line["from"], 5);
        assert_eq!(line["to"], 5);
        assert_eq!(line["phase"], "progressing");
        assert_eq!(line["step"], 0);
        assert_eq!(line["new_step"], false);

        let errors = &line["signals"][0];
        let mut keys: Vec<&str> = errors
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "baseline",
                "baseline_interval",
                "candidate",
                "delta",
                "fail_above",
                "limit",
                "lower",
                "needed",
                "note",
                "rate",
                "signal",
                "upper",
                "verdict"
            ]
        );
        assert_eq!(errors["signal"], "errors");
        assert_eq!(errors["verdict"], "hold");
        assert_eq!(
            errors["candidate"],
            serde_json::json!({"total": 0, "bad": 0})
        );
        assert_eq!(
            errors["baseline"],
            serde_json::json!({"total": 400_000, "bad": 4_000})
        );
        assert_eq!(errors["rate"], serde_json::Value::Null);
        assert_eq!(
            (errors["lower"].as_f64(), errors["upper"].as_f64()),
            (Some(0.0), Some(1.0))
        );
        assert!(errors["limit"].as_f64().is_some_and(|limit| limit > 0.01));
        assert!(errors["needed"].as_u64().is_some());
        assert_eq!(errors["note"], "no candidate requests yet");

        // A pause also carries where a resume returns to.
        let paused = Decision {
            progress: paused_at(0, Phase::Progressing),
            ..decision
        };
        let line = serde_json::to_value(&paused).expect("serialises");
        assert_eq!(line["resume_to"], "progressing");
    }

    #[test]
    fn labels_are_the_serialised_names() {
        for action in [
            Action::Start,
            Action::Advance,
            Action::Hold,
            Action::Pause,
            Action::Resume,
            Action::Rollback,
            Action::Promote,
            Action::Abort,
            Action::Retry,
        ] {
            let json = serde_json::to_string(&action).expect("serialises");
            assert_eq!(json, format!("\"{}\"", action.label()));
        }
        for actor in [Actor::Veer, Actor::Operator] {
            let json = serde_json::to_string(&actor).expect("serialises");
            assert_eq!(json, format!("\"{}\"", actor.label()));
        }
    }
}
