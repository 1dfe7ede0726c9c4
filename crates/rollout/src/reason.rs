//! The plain words of a decision's reason: what a person reading the decision log (or
//! a notification) sees first, so it names the signal, the numbers and the setting.

use std::time::Duration;

use veer_config::Rollout;

use crate::{Count, Judged, Signal};

/// A duration as people write it: `2m 5s`, `1h 30m`, `45s`, `750ms`.
pub(crate) fn duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds == 0 {
        return format!("{}ms", elapsed.as_millis());
    }
    let parts = [
        (seconds / 3600, "h"),
        (seconds / 60 % 60, "m"),
        (seconds % 60, "s"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(amount, _)| *amount > 0)
        .map(|(amount, unit)| format!("{amount}{unit}"))
        .collect();
    words.join(" ")
}

/// A rate or setting: up to four decimals without trailing zeros (`0.05`, `0.0146`),
/// and scientific below 0.001, where four decimals would round it away.
pub(crate) fn share(value: f64) -> String {
    if value == 0.0 || value.abs() >= 0.001 || !value.is_finite() {
        let fixed = format!("{value:.4}");
        let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
        trimmed.to_owned()
    } else {
        format!("{value:.2e}")
    }
}

/// Why a signal FAILed: its proven lower bound and the limit it crossed, by name.
pub(crate) fn failure(plan: &Rollout, judged: &Judged) -> String {
    let head = format!(
        "{}: the candidate's rate is at least {}",
        judged.signal.label(),
        share(judged.lower)
    );
    let reference_upper = judged
        .baseline_interval
        .map_or(0.0, |interval| interval.upper);
    match judged.signal {
        Signal::Errors if judged.fail_above >= plan.errors.hard_max => {
            format!("{head}, above hard_max {}", share(plan.errors.hard_max))
        }
        Signal::Errors | Signal::Latency => {
            let (relative, absolute) = match judged.signal {
                Signal::Errors => (plan.errors.rel_margin, plan.errors.abs_margin),
                _ => (plan.latency.rel_margin, plan.latency.abs_margin),
            };
            format!(
                "{head}, above {}: the baseline's at most {} with rel_margin {} and abs_margin {}",
                share(judged.fail_above),
                share(reference_upper),
                share(relative),
                share(absolute),
            )
        }
        Signal::Divergence | Signal::LabelFlip => {
            // Prediction signals are judged only under a prediction gate.
            let Some(gate) = plan.predictions else {
                return format!("{head}, above {}", share(judged.fail_above));
            };
            let (setting, allowed) = match judged.signal {
                Signal::Divergence => ("max_divergence", gate.max_divergence),
                _ => ("max_label_flip", gate.max_label_flip),
            };
            match judged.baseline_interval {
                Some(_) => format!(
                    "{head}, above {}: the noise floor's at most {} plus {setting} {}",
                    share(judged.fail_above),
                    share(reference_upper),
                    share(allowed),
                ),
                None => format!("{head}, above {setting} {}", share(allowed)),
            }
        }
    }
}

/// What a HOLDing signal waits for, with the estimate of how much more it needs.
pub(crate) fn awaited(judged: &Judged) -> String {
    let label = judged.signal.label();
    let trials = judged.signal.trials();
    if judged.candidate.total == 0 {
        let guessed = judged.baseline.and_then(Count::rate).is_some();
        return match judged.needed {
            Some(more) if guessed => format!(
                "no data yet: {more} more {trials} would be needed to pass {label} at the current rates"
            ),
            Some(more) => format!(
                "no data yet: {more} more {trials} would be needed to pass {label} if none failed"
            ),
            None => format!("{label}: no {trials} yet"),
        };
    }
    let head = format!(
        "{label}: the candidate's rate is at most {}, not yet proven within {}",
        share(judged.upper),
        share(judged.limit)
    );
    match (judged.needed, judged.rate) {
        (Some(more), _) => {
            format!("{head}; {more} more {trials} would be needed at the current rates")
        }
        (None, Some(rate)) if rate >= judged.limit => {
            format!("{head}; it cannot pass at its current rate {}", share(rate))
        }
        (None, _) => {
            format!("{head}; at its current rate it would need over a billion more {trials}")
        }
    }
}

/// Several signals' words in one line.
pub(crate) fn joined(parts: impl IntoIterator<Item = String>) -> String {
    parts.into_iter().collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(Duration::from_secs(125)), "2m 5s");
        assert_eq!(duration(Duration::from_secs(120)), "2m");
        assert_eq!(duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_millis(750)), "750ms");
    }

    #[test]
    fn shares_keep_what_matters() {
        assert_eq!(share(0.05), "0.05");
        assert_eq!(share(0.014_63), "0.0146");
        assert_eq!(share(0.0), "0");
        assert_eq!(share(1.0), "1");
        assert_eq!(share(0.000_12), "1.20e-4");
    }
}
