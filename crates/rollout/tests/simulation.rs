//! Whole rollouts, simulated: does the state machine, fed the way the proxy feeds it,
//! keep its promises?
//!
//! Every 5-second tick draws each arm's request, error and slow counts binomially from
//! a request rate and the candidate's weight (one draw per count per tick, not per
//! request, to keep thousands of runs cheap in a debug build), hands [`judge`] the
//! counts since the step began and the step's age, and applies the decision as the
//! proxy does: the new progress, and fresh counts and clock when a new step starts.
//! Every run is seeded, so a failure reproduces exactly.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution};
use veer_config::{BackendId, ErrorGate, Inconclusive, LatencyGate, PredictionGate, Rollout};
use veer_rollout::{judge, Action, Count, Decision, Noise, Observation, Phase, Progress, Verdict};

/// How often the proxy judges.
const TICK: Duration = Duration::from_secs(5);

/// The plan of every simulation: steps 5, 25, 50, 100; 2 to 30 minutes a step;
/// alpha 0.01; errors within 20 % + 0.005 of the baseline and never above 5 %; the
/// share above the baseline's p95 within 20 % + 0.01; undecided steps pause.
fn plan() -> Rollout {
    Rollout {
        candidate: BackendId(1),
        steps: vec![5, 25, 50, 100],
        min_step: Duration::from_secs(120),
        max_step: Duration::from_secs(1800),
        on_inconclusive: Inconclusive::Pause,
        alpha: 0.01,
        shadow_first: None,
        state_file: None,
        decision_log: None,
        errors: ErrorGate {
            rel_margin: 0.2,
            abs_margin: 0.005,
            hard_max: 0.05,
        },
        latency: LatencyGate {
            tail: 0.95,
            rel_margin: 0.2,
            abs_margin: 0.01,
        },
        predictions: None,
        notify: None,
    }
}

/// One version's behaviour: the chance a request fails, and that it is slow.
#[derive(Clone, Copy)]
struct Behaviour {
    errors: f64,
    slow: f64,
}

/// The baseline of every simulation: 1 % errors, 5 % slow.
const BASELINE: Behaviour = Behaviour {
    errors: 0.01,
    slow: 0.05,
};

/// Mirrored traffic: every request's answer compared live against shadow.
#[derive(Clone, Copy)]
struct Mirroring {
    /// Chance a live/shadow pair diverges.
    divergence: f64,
    /// Chance a labelled pair's labels differ; `None` for answers without labels.
    label_flip: Option<f64>,
    /// Live-vs-live comparisons, when the route measures the noise floor.
    noise: Option<NoiseFloor>,
}

/// The model's own noise: what two answers of the live version to one request do.
#[derive(Clone, Copy)]
struct NoiseFloor {
    /// Share of requests answered twice by the live version (`noise_percent / 100`).
    share: f64,
    /// Chance such a pair diverges.
    divergence: f64,
    /// Chance such a pair's labels differ.
    label_flip: f64,
}

/// The world a run lives in.
#[derive(Clone, Copy)]
struct World {
    requests_per_second: f64,
    baseline: Behaviour,
    candidate: Behaviour,
    mirroring: Option<Mirroring>,
}

/// How a run ended.
#[derive(Debug)]
struct Run {
    progress: Progress,
    /// Time simulated.
    elapsed: Duration,
    /// The highest weight the candidate reached.
    highest_weight: u8,
    /// Every decision, in order.
    decisions: Vec<Decision>,
}

/// `n` trials with chance `p` each.
fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    match Binomial::new(n, p) {
        Ok(distribution) => distribution.sample(rng),
        Err(error) => panic!("binomial({n}, {p}): {error}"),
    }
}

fn add(count: &mut Count, total: u64, bad: u64) {
    count.total += total;
    count.bad += bad;
}

/// One tick's traffic added to what was seen since the step began.
fn tick(rng: &mut StdRng, world: &World, weight: u8, seen: &mut Observation) {
    let requests = (world.requests_per_second * TICK.as_secs_f64()).round() as u64;
    let candidate = binomial(rng, requests, f64::from(weight) / 100.0);
    let baseline = requests - candidate;
    for (arm, served, behaviour) in [
        (&mut seen.errors.candidate, candidate, world.candidate),
        (&mut seen.errors.baseline, baseline, world.baseline),
    ] {
        let failed = binomial(rng, served, behaviour.errors);
        add(arm, served, failed);
    }
    for (arm, served, behaviour) in [
        (&mut seen.slow.candidate, candidate, world.candidate),
        (&mut seen.slow.baseline, baseline, world.baseline),
    ] {
        let slow = binomial(rng, served, behaviour.slow);
        add(arm, served, slow);
    }
    if let Some(mirroring) = world.mirroring {
        let diverged = binomial(rng, requests, mirroring.divergence);
        add(&mut seen.divergence, requests, diverged);
        if let Some(flip) = mirroring.label_flip {
            let flipped = binomial(rng, requests, flip);
            add(&mut seen.label_flips, requests, flipped);
        }
        if let Some(floor) = mirroring.noise {
            let pairs = binomial(rng, requests, floor.share);
            let noise = seen.noise.get_or_insert_with(Noise::default);
            let diverged = binomial(rng, pairs, floor.divergence);
            add(&mut noise.divergence, pairs, diverged);
            if mirroring.label_flip.is_some() {
                let flipped = binomial(rng, pairs, floor.label_flip);
                add(&mut noise.label_flips, pairs, flipped);
            }
        }
    }
}

/// The phases a run ends in: the rollout is settled, or waits for a person.
fn settled(phase: Phase) -> bool {
    matches!(phase, Phase::Promoted | Phase::RolledBack | Phase::Paused)
}

/// Runs a rollout from its start until `stop` says its phase ends the run, or `cap`
/// of simulated time has passed.
fn run(
    plan: &Rollout,
    world: &World,
    rng: &mut StdRng,
    cap: Duration,
    stop: fn(Phase) -> bool,
) -> Run {
    let mut progress = Progress::start(plan);
    let mut seen = Observation::default();
    let mut age = Duration::ZERO;
    let mut elapsed = Duration::ZERO;
    let mut highest_weight = progress.weight;
    let mut decisions = Vec::new();
    while elapsed < cap {
        tick(rng, world, progress.weight, &mut seen);
        age += TICK;
        elapsed += TICK;
        let decision = judge(plan, &progress, &seen, age);
        progress = decision.progress;
        highest_weight = highest_weight.max(progress.weight);
        if decision.new_step {
            seen = Observation::default();
            age = Duration::ZERO;
        }
        decisions.push(decision);
        if stop(progress.phase) {
            break;
        }
    }
    Run {
        progress,
        elapsed,
        highest_weight,
        decisions,
    }
}

/// Simulated time after which a run is cut short: longer than three steps that each
/// reach `max_step`, so a run that hits it has stalled.
const CAP: Duration = Duration::from_secs(3 * 1800 + 600);

/// Share of `part` in `whole`.
fn share(part: usize, whole: usize) -> f64 {
    part as f64 / whole as f64
}

/// Enough traffic for a healthy candidate to clear the 5 % step well inside
/// `max_step`: 50 requests a second on the candidate there.
const STEADY_TRAFFIC: f64 = 1000.0;

/// A candidate that behaves exactly like the baseline.
fn identical() -> World {
    World {
        requests_per_second: STEADY_TRAFFIC,
        baseline: BASELINE,
        candidate: BASELINE,
        mirroring: None,
    }
}

/// Claim 1: a candidate as good as the baseline is rolled back by a signal with
/// probability at most alpha (0.01) per signal, so at most 2 % with two signals.
#[test]
fn a_candidate_identical_to_the_baseline_is_rarely_rolled_back() {
    const RUNS: usize = 2_000;
    let plan = plan();
    let world = identical();
    let mut rng = StdRng::seed_from_u64(1);
    let (mut rolled_back, mut promoted) = (0, 0);
    for _ in 0..RUNS {
        match run(&plan, &world, &mut rng, CAP, settled).progress.phase {
            Phase::RolledBack => rolled_back += 1,
            Phase::Promoted => promoted += 1,
            _ => {}
        }
    }
    let rate = share(rolled_back, RUNS);
    assert!(
        rate <= 0.02,
        "an identical candidate was rolled back in {rate} of {RUNS} runs ({rolled_back})"
    );
    // Not passed by stalling: the runs that were not rolled back went all the way.
    let promoted_rate = share(promoted, RUNS);
    assert!(
        promoted_rate >= 0.9,
        "an identical candidate was promoted in only {promoted_rate} of {RUNS} runs"
    );
}

/// Claim 5, first half: the same identical candidate, with steady traffic, gets all
/// the way to 100 %.
#[test]
fn a_good_candidate_with_steady_traffic_is_promoted() {
    const RUNS: usize = 200;
    let plan = plan();
    let world = identical();
    let mut rng = StdRng::seed_from_u64(5);
    let mut promoted = 0;
    let mut minutes = Vec::new();
    for _ in 0..RUNS {
        let run = run(&plan, &world, &mut rng, CAP, settled);
        if run.progress.phase == Phase::Promoted {
            promoted += 1;
            minutes.push(run.elapsed.as_secs() / 60);
            assert_eq!(
                run.decisions.last().map(|decision| decision.action),
                Some(Action::Promote)
            );
        }
    }
    minutes.sort_unstable();
    let rate = share(promoted, RUNS);
    assert!(
        rate >= 0.9,
        "a good candidate was promoted in only {rate} of {RUNS} runs (median {:?} minutes)",
        minutes.get(minutes.len() / 2)
    );
}

/// Claim 2: a candidate failing half its requests is caught within a few hundred
/// requests. Judged after every candidate request, as the proxy judges at once on
/// every candidate error; at the 5 % step 19 baseline requests arrive per candidate
/// request (100 requests a second in all).
#[test]
fn a_candidate_failing_half_its_requests_is_rolled_back_within_300_requests() {
    const RUNS: usize = 2_000;
    const BUDGET: u64 = 300;
    let plan = plan();
    let mut rng = StdRng::seed_from_u64(2);
    let mut caught_after = Vec::new();
    for _ in 0..RUNS {
        let progress = Progress::start(&plan);
        assert_eq!(progress.weight, 5);
        let mut seen = Observation::default();
        for request in 1..=BUDGET {
            let failed = binomial(&mut rng, 19, BASELINE.errors);
            add(&mut seen.errors.baseline, 19, failed);
            let slow = binomial(&mut rng, 19, BASELINE.slow);
            add(&mut seen.slow.baseline, 19, slow);
            add(
                &mut seen.errors.candidate,
                1,
                u64::from(rng.random_bool(0.5)),
            );
            add(
                &mut seen.slow.candidate,
                1,
                u64::from(rng.random_bool(BASELINE.slow)),
            );
            // 5 candidate requests a second.
            let age = Duration::from_millis(200 * request);
            let decision = judge(&plan, &progress, &seen, age);
            match decision.action {
                Action::Hold => {}
                Action::Rollback => {
                    caught_after.push(request);
                    break;
                }
                other => panic!("{other:?} after {request} requests: {}", decision.reason),
            }
        }
    }
    caught_after.sort_unstable();
    let rate = share(caught_after.len(), RUNS);
    assert!(
        rate >= 0.99,
        "rolled back within {BUDGET} candidate requests in only {rate} of {RUNS} runs \
         (median {:?}, slowest {:?} requests)",
        caught_after.get(caught_after.len() / 2),
        caught_after.last()
    );
}

/// Claim 3: three times the baseline's error rate (3 % against 1 %) is caught before
/// the candidate reaches half the traffic, given enough traffic: 200 requests a second,
/// so 10 a second on the candidate at the 5 % step.
#[test]
fn a_candidate_with_three_times_the_errors_is_rolled_back_before_half_the_traffic() {
    const RUNS: usize = 2_000;
    let plan = plan();
    let world = World {
        requests_per_second: 200.0,
        baseline: BASELINE,
        candidate: Behaviour {
            errors: 0.03,
            ..BASELINE
        },
        mirroring: None,
    };
    let mut rng = StdRng::seed_from_u64(3);
    let caught = (0..RUNS)
        .filter(|_| {
            let run = run(&plan, &world, &mut rng, CAP, settled);
            run.progress.phase == Phase::RolledBack && run.highest_weight < 50
        })
        .count();
    let rate = share(caught, RUNS);
    assert!(
        rate >= 0.95,
        "rolled back before 50 % in only {rate} of {RUNS} runs"
    );
}

/// Claim 4: with no traffic at all nothing is proven either way: every verdict holds,
/// nothing fails, and at `max_step` the undecided step gets `on_inconclusive`.
#[test]
fn without_traffic_every_verdict_holds_until_max_step() {
    let silent = World {
        requests_per_second: 0.0,
        baseline: BASELINE,
        candidate: BASELINE,
        mirroring: None,
    };
    for (on_inconclusive, expected) in [
        (Inconclusive::Pause, Action::Pause),
        (Inconclusive::Rollback, Action::Rollback),
    ] {
        let plan = Rollout {
            on_inconclusive,
            ..plan()
        };
        let mut rng = StdRng::seed_from_u64(0);
        let run = run(&plan, &silent, &mut rng, CAP, settled);
        let (last, before) = run.decisions.split_last().expect("at least one decision");
        for decision in before {
            assert_eq!(decision.action, Action::Hold, "{}", decision.reason);
        }
        for decision in &run.decisions {
            assert_eq!(decision.signals.len(), 2);
            for judged in &decision.signals {
                assert_eq!(judged.verdict, Verdict::Hold, "{judged:?}");
            }
        }
        assert_eq!(last.action, expected, "{}", last.reason);
        assert_eq!(run.elapsed, plan.max_step);
        if on_inconclusive == Inconclusive::Pause {
            assert_eq!(run.progress.phase, Phase::Paused);
            assert_eq!(run.progress.weight, 5);
        }
    }
}

/// The plan with a shadow phase of at least 5 minutes first, and a critical
/// prediction gate: at most 5 points of divergence (and of label flips) above the noise
/// floor.
fn shadow_plan() -> Rollout {
    Rollout {
        shadow_first: Some(Duration::from_secs(300)),
        predictions: Some(PredictionGate {
            max_divergence: 0.05,
            max_label_flip: 0.05,
            critical: true,
        }),
        ..plan()
    }
}

/// A candidate mirrored at 100 requests a second, 10 % of them also compared live
/// against live: a noise floor of 10 % divergence and 2 % label flips.
fn mirrored(divergence: f64, label_flip: f64) -> World {
    World {
        requests_per_second: 100.0,
        baseline: BASELINE,
        candidate: BASELINE,
        mirroring: Some(Mirroring {
            divergence,
            label_flip: Some(label_flip),
            noise: Some(NoiseFloor {
                share: 0.1,
                divergence: 0.1,
                label_flip: 0.02,
            }),
        }),
    }
}

/// Claim 5, second half: 40 % divergence against a 10 % noise floor, with critical
/// predictions, is rolled back by the shadow gate alone: the candidate never serves.
#[test]
fn the_shadow_gate_alone_rolls_back_a_candidate_that_diverges() {
    const RUNS: usize = 200;
    let plan = shadow_plan();
    let world = mirrored(0.4, 0.02);
    let mut rng = StdRng::seed_from_u64(51);
    for _ in 0..RUNS {
        let run = run(&plan, &world, &mut rng, CAP, settled);
        assert_eq!(
            run.progress.phase,
            Phase::RolledBack,
            "{:?}",
            run.decisions.last()
        );
        assert_eq!(run.progress.step, None);
        assert_eq!(run.highest_weight, 0);
        let last = run.decisions.last().expect("a decision");
        assert!(last.reason.starts_with("divergence: "), "{}", last.reason);
    }
}

/// Claim 5, last: a candidate that diverges no more than the model does from itself
/// passes the shadow gate, after `shadow_first`, to the first step.
#[test]
fn the_shadow_gate_passes_a_candidate_at_the_noise_floor() {
    const RUNS: usize = 200;
    let plan = shadow_plan();
    let world = mirrored(0.1, 0.02);
    let mut rng = StdRng::seed_from_u64(52);
    let mut passed = 0;
    for _ in 0..RUNS {
        let run = run(&plan, &world, &mut rng, CAP, |phase| phase != Phase::Shadow);
        if run.progress.phase == Phase::Progressing {
            passed += 1;
            assert_eq!(run.progress.weight, 5);
            assert!(run.elapsed >= Duration::from_secs(300));
        }
    }
    let rate = share(passed, RUNS);
    assert!(
        rate >= 0.95,
        "a candidate at the noise floor passed the shadow gate in only {rate} of {RUNS} runs"
    );
}

/// The latency signal as the proxy feeds it: every request's latency lands in the
/// log-scale buckets, the step's "slow" cutoff is fixed from the baseline's first
/// requests ([`veer_rollout::latency::cutoff`]) and kept, and both arms' shares
/// above it are judged. A candidate as fast as the baseline (both log-normal around
/// 5 ms) is rolled back in at most 2 % of runs and promoted in most.
#[test]
fn a_candidate_as_fast_as_the_baseline_passes_latency_judged_from_histograms() {
    use rand_distr::LogNormal;
    use veer_rollout::latency;

    let plan = Rollout {
        errors: ErrorGate {
            rel_margin: 0.2,
            abs_margin: 0.05,
            hard_max: 0.05,
        },
        ..plan()
    };
    let latency_of = LogNormal::new((0.005_f64).ln(), 0.5).expect("a log-normal");
    let runs = 100;
    let (mut rolled_back, mut promoted) = (0, 0);
    for seed in 0..runs {
        let mut rng = StdRng::seed_from_u64(7_000 + seed);
        let mut progress = Progress::start(&plan);
        let (mut baseline, mut candidate) =
            (vec![0_u64; latency::BUCKETS], vec![0_u64; latency::BUCKETS]);
        let mut cutoff = None;
        let mut age = Duration::ZERO;
        let mut elapsed = Duration::ZERO;
        while elapsed < Duration::from_secs(3 * 3600) && !settled(progress.phase) {
            // 100 requests a second: at the 5 % step, enough candidate requests to
            // tell a share of 3.5 % from the limit of about 5 % within 30 minutes.
            for _ in 0..500 {
                let seconds: f64 = latency_of.sample(&mut rng);
                let arm = if rng.random_range(0..100) < progress.weight {
                    &mut candidate
                } else {
                    &mut baseline
                };
                arm[latency::bucket_of(seconds)] += 1;
            }
            age += TICK;
            elapsed += TICK;
            if cutoff.is_none() {
                cutoff = latency::cutoff(&baseline, plan.latency.tail);
            }
            let slow = latency::slow_above(&baseline, &candidate, cutoff);
            let seen = Observation {
                errors: veer_rollout::Arms {
                    baseline: Count {
                        total: slow.baseline.total,
                        bad: 0,
                    },
                    candidate: Count {
                        total: slow.candidate.total,
                        bad: 0,
                    },
                },
                slow,
                ..Observation::default()
            };
            let decision = judge(&plan, &progress, &seen, age);
            progress = decision.progress;
            if decision.new_step {
                baseline.fill(0);
                candidate.fill(0);
                cutoff = None;
                age = Duration::ZERO;
            }
        }
        rolled_back += u32::from(progress.phase == Phase::RolledBack);
        promoted += u32::from(progress.phase == Phase::Promoted);
    }
    let share = f64::from(rolled_back) / runs as f64;
    assert!(share <= 0.02, "rolled back in {rolled_back} of {runs} runs");
    assert!(
        promoted >= runs as u32 * 9 / 10,
        "promoted in {promoted} of {runs} runs"
    );
}
