//! veer's automated canary rollout, pure: counts and elapsed time in, a decision and its
//! record out. No clock, no sockets, no threads, no files.
//!
//! This first part holds the counts the proxy hands over ([`Count`], [`Observation`]),
//! the anytime-valid confidence sequences every signal is judged with ([`bound`]), and
//! the slow-request classification of the latency signal ([`latency`]).

pub mod bound;
pub mod latency;
mod observe;

pub use observe::{Arms, Count, Noise, Observation};
