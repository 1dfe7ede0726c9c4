//! Where a rollout stands: the small value the proxy keeps in the state file and
//! hands back to [`crate::judge`] and [`crate::command`].

use serde::{Deserialize, Serialize};
use veer_config::Rollout;

/// The stage a rollout is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first step: weight 0, requests mirrored to the candidate, until the
    /// prediction gate passes.
    Shadow,
    /// A step is under way: the candidate takes its weight and is judged.
    Progressing,
    /// Held by a person or by an undecided step; judged for the record only.
    Paused,
    /// The candidate took 100 %. Nothing is left to judge.
    Promoted,
    /// The candidate was set to 0. Nothing is left to judge until a retry.
    RolledBack,
}

impl Phase {
    /// Every phase, for metrics that export one series per phase.
    pub const ALL: [Phase; 5] = [
        Phase::Shadow,
        Phase::Progressing,
        Phase::Paused,
        Phase::Promoted,
        Phase::RolledBack,
    ];

    /// The name in records, the state file and metrics: `shadow`, `progressing`,
    /// `paused`, `promoted`, `rolled_back`.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Shadow => "shadow",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled_back",
        }
    }

    /// The phase in a sentence: "the rollout is {words}".
    pub(crate) fn words(self) -> &'static str {
        match self {
            Phase::Shadow => "in shadow",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled back",
        }
    }
}

/// Where a rollout stands; serialisable, the proxy keeps it in the state file.
///
/// The state file is read back after a restart, possibly by a newer veer, so
/// `resume_to` may be absent (it is omitted when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The stage.
    pub phase: Phase,
    /// Index into the plan's `steps` of the step under way or held (or where it
    /// ended); `None` in the shadow phase and before.
    pub step: Option<usize>,
    /// The candidate's weight now, in percent.
    pub weight: u8,
    /// While paused: the phase a resume returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_to: Option<Phase>,
}

impl Progress {
    /// A rollout's beginning: the shadow phase at weight 0 when `shadow_first` is set,
    /// else the first step at its weight.
    pub fn start(plan: &Rollout) -> Progress {
        match plan.shadow_first {
            Some(_) => Progress {
                phase: Phase::Shadow,
                step: None,
                weight: 0,
                resume_to: None,
            },
            None => Progress {
                phase: Phase::Progressing,
                step: Some(0),
                // A validated plan has steps; without any, weight 0 is the safe read.
                weight: plan.steps.first().copied().unwrap_or(0),
                resume_to: None,
            },
        }
    }

    /// The phase a paused rollout returns to: `resume_to`, or, when a hand-edited state
    /// file lost it, the shadow phase before the first step and the step otherwise.
    pub(crate) fn resumes_to(&self) -> Phase {
        match self.resume_to {
            Some(phase @ (Phase::Shadow | Phase::Progressing)) => phase,
            _ if self.step.is_none() => Phase::Shadow,
            _ => Phase::Progressing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_plan::plan;
    use std::time::Duration;

    #[test]
    fn a_rollout_starts_at_the_first_step_or_in_shadow() {
        let mut plan = plan();
        let start = Progress::start(&plan);
        assert_eq!(
            start,
            Progress {
                phase: Phase::Progressing,
                step: Some(0),
                weight: 5,
                resume_to: None
            }
        );
        plan.shadow_first = Some(Duration::from_secs(300));
        let start = Progress::start(&plan);
        assert_eq!(
            (start.phase, start.step, start.weight),
            (Phase::Shadow, None, 0)
        );
    }

    #[test]
    fn progress_round_trips_through_json() {
        let paused = Progress {
            phase: Phase::Paused,
            step: Some(2),
            weight: 50,
            resume_to: Some(Phase::Progressing),
        };
        let json = serde_json::to_string(&paused).expect("serialises");
        assert_eq!(
            json,
            r#"{"phase":"paused","step":2,"weight":50,"resume_to":"progressing"}"#
        );
        let back: Progress = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, paused);

        let shadow: Progress = serde_json::from_str(r#"{"phase":"shadow","step":null,"weight":0}"#)
            .expect("resume_to may be absent");
        assert_eq!(shadow.resume_to, None);
        assert_eq!(
            serde_json::to_string(&shadow).expect("serialises"),
            r#"{"phase":"shadow","step":null,"weight":0}"#
        );
    }

    #[test]
    fn labels_are_the_serialised_names() {
        for phase in Phase::ALL {
            let json = serde_json::to_string(&phase).expect("serialises");
            assert_eq!(json, format!("\"{}\"", phase.label()));
        }
    }

    #[test]
    fn a_pause_without_resume_to_returns_where_it_came_from() {
        let mut paused = Progress {
            phase: Phase::Paused,
            step: None,
            weight: 0,
            resume_to: None,
        };
        assert_eq!(paused.resumes_to(), Phase::Shadow);
        paused.step = Some(1);
        assert_eq!(paused.resumes_to(), Phase::Progressing);
        paused.resume_to = Some(Phase::Shadow);
        assert_eq!(paused.resumes_to(), Phase::Shadow);
    }
}
