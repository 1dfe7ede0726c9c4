//! A person's say over a rollout: pause, resume, promote, abort, retry.
//!
//! The rules are on [`command`], where a reader of the public API finds them.

use std::str::FromStr;

use veer_config::Rollout;

use crate::decide::{record, Outcome};
use crate::{Action, Actor, Decision, Phase, Progress};

/// What an operator may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Hold the weight until told otherwise.
    Pause,
    /// Lift a pause; the stage starts over.
    Resume,
    /// Give the candidate 100 % now.
    Promote,
    /// Give the candidate 0 now.
    Abort,
    /// Start the rollout over from its beginning.
    Retry,
}

impl Command {
    /// Every command.
    pub const ALL: [Command; 5] = [
        Command::Pause,
        Command::Resume,
        Command::Promote,
        Command::Abort,
        Command::Retry,
    ];

    /// The name operators type: `pause`, `resume`, `promote`, `abort`, `retry`.
    pub fn label(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Abort => "abort",
            Command::Retry => "retry",
        }
    }
}

/// A word that names no [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown command {0:?}: expected pause, resume, promote, abort or retry")]
pub struct UnknownCommand(pub String);

impl FromStr for Command {
    type Err = UnknownCommand;

    /// A command by its [`Command::label`], ignoring case and surrounding blanks.
    fn from_str(word: &str) -> Result<Command, UnknownCommand> {
        let wanted = word.trim();
        Command::ALL
            .into_iter()
            .find(|command| command.label().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownCommand(word.to_owned()))
    }
}

/// Why a command does not apply now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The rollout is in a phase the command does not apply in.
    #[error("{}: the rollout of this route is {}, not {}", .command.label(), .phase.words(), .applies_in)]
    WrongPhase {
        /// The command asked for.
        command: Command,
        /// The phase the rollout is in.
        phase: Phase,
        /// Where the command applies, in words.
        applies_in: &'static str,
    },
    /// Promote when the candidate already has 100 %.
    #[error("promote: the rollout of this route is promoted already")]
    AlreadyPromoted,
}

/// A person's command (actor [`Actor::Operator`]), or why it does not apply now.
///
/// Each command applies in some phases only; anywhere else it is [`Refused`] with a
/// message that names the phase, so an operator learns why at once. Which phases:
///
/// * **pause** in the shadow phase or a step: the weight is kept, and a resume returns
///   to that phase;
/// * **resume** while paused: back to the phase paused from, and the stage starts over
///   (fresh counts and clock), since what was seen before the pause may no longer hold;
/// * **promote** in any phase but promoted: the candidate takes 100 %;
/// * **abort** in the shadow phase, a step or a pause: the candidate goes to 0;
/// * **retry** after a rollback or while paused: the rollout starts over from its
///   beginning ([`Progress::start`]).
pub fn command(plan: &Rollout, progress: &Progress, command: Command) -> Result<Decision, Refused> {
    let phase = progress.phase;
    let wrong_phase = |applies_in| Refused::WrongPhase {
        command,
        phase,
        applies_in,
    };
    let outcome = match command {
        Command::Pause => match phase {
            Phase::Shadow | Phase::Progressing => Outcome {
                action: Action::Pause,
                to: Progress {
                    phase: Phase::Paused,
                    resume_to: Some(phase),
                    ..*progress
                },
                new_step: false,
                reason: format!("paused by an operator at {}%", progress.weight),
            },
            _ => return Err(wrong_phase("in shadow or progressing")),
        },
        Command::Resume => match phase {
            Phase::Paused => {
                let resume_to = progress.resumes_to();
                Outcome {
                    action: Action::Resume,
                    to: Progress {
                        phase: resume_to,
                        resume_to: None,
                        ..*progress
                    },
                    new_step: true,
                    reason: format!(
                        "resumed by an operator: {} starts over at {}%",
                        match resume_to {
                            Phase::Shadow => "the shadow phase",
                            _ => "the step",
                        },
                        progress.weight
                    ),
                }
            }
            _ => return Err(wrong_phase("paused")),
        },
        Command::Promote => match phase {
            Phase::Promoted => return Err(Refused::AlreadyPromoted),
            _ => Outcome {
                action: Action::Promote,
                to: Progress {
                    phase: Phase::Promoted,
                    step: plan.steps.len().checked_sub(1),
                    weight: 100,
                    resume_to: None,
                },
                new_step: false,
                reason: format!("promoted by an operator from {}%", progress.weight),
            },
        },
        Command::Abort => match phase {
            Phase::Shadow | Phase::Progressing | Phase::Paused => Outcome {
                action: Action::Abort,
                to: Progress {
                    phase: Phase::RolledBack,
                    step: progress.step,
                    weight: 0,
                    resume_to: None,
                },
                new_step: false,
                reason: format!("aborted by an operator at {}%", progress.weight),
            },
            _ => return Err(wrong_phase("in shadow, progressing or paused")),
        },
        Command::Retry => match phase {
            Phase::RolledBack | Phase::Paused => {
                let start = Progress::start(plan);
                Outcome {
                    action: Action::Retry,
                    to: start,
                    new_step: true,
                    reason: match start.phase {
                        Phase::Shadow => {
                            "retried by an operator: the rollout starts over in shadow".to_owned()
                        }
                        _ => format!(
                            "retried by an operator: the rollout starts over at {}%",
                            start.weight
                        ),
                    },
                }
            }
            _ => return Err(wrong_phase("rolled back or paused")),
        },
    };
    Ok(record(
        Actor::Operator,
        progress.weight,
        outcome,
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_plan::plan;
    use std::time::Duration;

    fn progress(phase: Phase, step: Option<usize>, weight: u8) -> Progress {
        Progress {
            phase,
            step,
            weight,
            resume_to: None,
        }
    }

    fn at_step(step: usize) -> Progress {
        progress(Phase::Progressing, Some(step), plan().steps[step])
    }

    #[test]
    fn commands_parse_from_their_labels() {
        for command in Command::ALL {
            assert_eq!(command.label().parse(), Ok(command));
        }
        assert_eq!(" Resume\n".parse(), Ok(Command::Resume));
        let unknown = "rollback".parse::<Command>().expect_err("not a command");
        assert_eq!(
            unknown.to_string(),
            "unknown command \"rollback\": expected pause, resume, promote, abort or retry"
        );
    }

    #[test]
    fn pause_keeps_the_weight_and_remembers_the_phase() {
        let decision = command(&plan(), &at_step(1), Command::Pause).expect("applies");
        assert_eq!(decision.action, Action::Pause);
        assert_eq!(decision.actor, Actor::Operator);
        assert_eq!((decision.from, decision.to), (25, 25));
        assert_eq!(decision.progress.phase, Phase::Paused);
        assert_eq!(decision.progress.resume_to, Some(Phase::Progressing));
        assert!(!decision.new_step);
        assert!(decision.signals.is_empty());

        let shadow = progress(Phase::Shadow, None, 0);
        let decision = command(&plan(), &shadow, Command::Pause).expect("applies");
        assert_eq!(decision.progress.resume_to, Some(Phase::Shadow));
    }

    #[test]
    fn resume_returns_to_the_paused_phase_and_restarts_the_step() {
        let paused = command(&plan(), &at_step(2), Command::Pause)
            .expect("applies")
            .progress;
        let decision = command(&plan(), &paused, Command::Resume).expect("applies");
        assert_eq!(decision.action, Action::Resume);
        assert_eq!(decision.progress, at_step(2));
        assert!(decision.new_step);
        assert_eq!(
            decision.reason,
            "resumed by an operator: the step starts over at 50%"
        );
    }

    #[test]
    fn promote_applies_anywhere_but_promoted() {
        for from in [
            progress(Phase::Shadow, None, 0),
            at_step(0),
            progress(Phase::Paused, Some(1), 25),
            progress(Phase::RolledBack, Some(1), 0),
        ] {
            let decision = command(&plan(), &from, Command::Promote).expect("applies");
            assert_eq!(decision.action, Action::Promote);
            assert_eq!(
                decision.progress,
                progress(Phase::Promoted, Some(3), 100),
                "from {from:?}"
            );
        }
        let promoted = progress(Phase::Promoted, Some(3), 100);
        let refused = command(&plan(), &promoted, Command::Promote).expect_err("refused");
        assert_eq!(refused, Refused::AlreadyPromoted);
        assert_eq!(
            refused.to_string(),
            "promote: the rollout of this route is promoted already"
        );
    }

    #[test]
    fn abort_sets_the_candidate_to_zero() {
        for from in [
            progress(Phase::Shadow, None, 0),
            at_step(2),
            progress(Phase::Paused, Some(1), 25),
        ] {
            let decision = command(&plan(), &from, Command::Abort).expect("applies");
            assert_eq!(decision.action, Action::Abort);
            assert_eq!(decision.to, 0);
            assert_eq!(decision.progress.phase, Phase::RolledBack);
            assert_eq!(decision.progress.step, from.step);
        }
    }

    #[test]
    fn retry_starts_over_from_the_beginning() {
        let mut plan = plan();
        let rolled_back = progress(Phase::RolledBack, Some(2), 0);
        let decision = command(&plan, &rolled_back, Command::Retry).expect("applies");
        assert_eq!(decision.action, Action::Retry);
        assert_eq!(decision.progress, Progress::start(&plan));
        assert!(decision.new_step);

        plan.shadow_first = Some(Duration::from_secs(300));
        let paused = progress(Phase::Paused, Some(1), 25);
        let decision = command(&plan, &paused, Command::Retry).expect("applies");
        assert_eq!(decision.progress.phase, Phase::Shadow);
        assert_eq!((decision.from, decision.to), (25, 0));
    }

    #[test]
    fn commands_out_of_place_are_refused_with_the_phase_named() {
        let cases = [
            (at_step(0), Command::Resume, "resume: the rollout of this route is progressing, not paused"),
            (
                progress(Phase::Shadow, None, 0),
                Command::Retry,
                "retry: the rollout of this route is in shadow, not rolled back or paused",
            ),
            (
                progress(Phase::Paused, Some(0), 5),
                Command::Pause,
                "pause: the rollout of this route is paused, not in shadow or progressing",
            ),
            (
                progress(Phase::RolledBack, Some(0), 0),
                Command::Abort,
                "abort: the rollout of this route is rolled back, not in shadow, progressing or paused",
            ),
            (
                progress(Phase::Promoted, Some(3), 100),
                Command::Retry,
                "retry: the rollout of this route is promoted, not rolled back or paused",
            ),
            (
                progress(Phase::Promoted, Some(3), 100),
                Command::Resume,
                "resume: the rollout of this route is promoted, not paused",
            ),
        ];
        for (from, asked, message) in cases {
            let refused = command(&plan(), &from, asked).expect_err("refused");
            assert_eq!(refused.to_string(), message);
        }
    }
}
