//! The plan the unit tests judge against: the simulation's plan, with a prediction
//! gate, built in one place so each test changes only what it is about.

use std::time::Duration;

use veer_config::{BackendId, ErrorGate, Inconclusive, LatencyGate, PredictionGate, Rollout};

/// Steps 5, 25, 50, 100; steps last 2 to 30 minutes; alpha 0.01; errors within 20 % +
/// 0.005 of the baseline and never above 5 %; latency p95 within 20 % + 0.01;
/// predictions within 5 % of the noise floor, critical; undecided steps pause.
pub(crate) fn plan() -> Rollout {
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
        predictions: Some(PredictionGate {
            max_divergence: 0.05,
            max_label_flip: 0.05,
            critical: true,
        }),
        notify: None,
    }
}
