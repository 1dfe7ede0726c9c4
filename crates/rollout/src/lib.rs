//! veer's automated canary rollout, pure: counts and elapsed time in, a decision and its
//! record out. No clock, no sockets, no threads, no files.
//!
//! A route with `[routes.rollout]` has its candidate's weight set by veer, step by step
//! (`steps = [5, 25, 50, 100]`: weights in percent; reaching 100 is the promotion).
//! Off the request path, every 5 seconds and at once on every candidate error, the
//! proxy hands [`judge`] the plan ([`veer_config::Rollout`]), where the rollout stands
//! ([`Progress`], kept in the state file), what was seen since the current step began
//! ([`Observation`]) and the step's age. The [`Decision`] says what to do (advance,
//! hold, pause, roll back, promote) with the numbers behind it; the proxy applies it
//! (weight swap, state file) and appends it to the decision log. People act through
//! [`command`]. Later a multi-replica source (Prometheus counts across replicas) will
//! feed the same functions.
//!
//! Each [`Signal`] (errors, latency, divergence, label flips) is judged PASS, HOLD or
//! FAIL with anytime-valid confidence sequences ([`bound`]): valid however often they
//! are looked at, so a step may stop the moment it is sure. Each stage spends
//! `alpha / K` of each signal's false-rollback budget ([`sequence_delta`]), so a
//! candidate as good as the baseline is rolled back by a given signal with probability
//! at most `alpha` over the whole rollout. The latency signal is reduced to counts of
//! slow requests by [`latency`], whose fixed histogram layout the proxy's counters
//! share. The rules, in plain words, are on [`Signal`] (each signal's verdict) and on
//! [`judge`] (what the verdicts come to) and [`command`] (what people may do when).
//!
//! ```
//! use std::time::Duration;
//! use veer_rollout::{judge, Action, Arms, Count, Observation, Progress};
//! # use veer_config::{BackendId, ErrorGate, Inconclusive, LatencyGate, Rollout};
//! # let plan = Rollout {
//! #     candidate: BackendId(1),
//! #     steps: vec![5, 25, 50, 100],
//! #     min_step: Duration::from_secs(120),
//! #     max_step: Duration::from_secs(1800),
//! #     on_inconclusive: Inconclusive::Pause,
//! #     alpha: 0.01,
//! #     shadow_first: None,
//! #     state_file: None,
//! #     decision_log: None,
//! #     errors: ErrorGate { rel_margin: 0.2, abs_margin: 0.005, hard_max: 0.05 },
//! #     latency: LatencyGate { tail: 0.95, rel_margin: 0.2, abs_margin: 0.01 },
//! #     predictions: None,
//! #     notify: None,
//! # };
//!
//! // The first step (5 %), two minutes in, with plenty of healthy traffic.
//! let progress = Progress::start(&plan);
//! let seen = Observation {
//!     errors: Arms {
//!         baseline: Count { total: 400_000, bad: 4_000 },
//!         candidate: Count { total: 40_000, bad: 400 },
//!     },
//!     slow: Arms {
//!         baseline: Count { total: 400_000, bad: 20_000 },
//!         candidate: Count { total: 40_000, bad: 2_000 },
//!     },
//!     ..Observation::default()
//! };
//! let decision = judge(&plan, &progress, &seen, Duration::from_secs(120));
//! assert_eq!(decision.action, Action::Advance);
//! assert_eq!((decision.from, decision.to), (5, 25));
//! ```

pub mod bound;
mod command;
mod decide;
pub mod latency;
mod observe;
mod progress;
mod reason;
mod signal;
#[cfg(test)]
mod test_plan;

pub use command::{command, Command, Refused, UnknownCommand};
pub use decide::{begin, judge, Action, Actor, Decision};
pub use observe::{Arms, Count, Noise, Observation};
pub use progress::{Phase, Progress};
pub use signal::{judged_stages, sequence_delta, Judged, Signal, Verdict};
