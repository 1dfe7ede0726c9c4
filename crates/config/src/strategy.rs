//! What a route comes to, in the words a user uses: basic or canary, plus shadow.
//!
//! Strategies are not a keyword of the file; they follow from the route: one backend
//! with weight > 0 is basic, several is canary, a `[routes.shadow]` adds shadow, and a
//! `[routes.rollout]` has veer step the canary's last backend up by itself.

use std::fmt;

use crate::{Config, Route, SplitBy};

/// The deployment strategy a route comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy<'a> {
    /// Where live traffic goes.
    pub live: Live<'a>,
    /// The backend mirrored to and the share of requests mirrored, if any.
    pub shadow: Option<(&'a str, f64)>,
    /// The candidate veer rolls out by itself and its steps, if any.
    pub rollout: Option<(&'a str, &'a [u8])>,
}

/// Where a route's live traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live<'a> {
    /// All traffic to one backend.
    Basic {
        /// The one backend with weight.
        backend: &'a str,
    },
    /// Weighted traffic across several backends.
    Canary {
        /// Backends with weight > 0, in file order, with their weights.
        shares: Vec<(&'a str, u64)>,
        /// How each request's share is drawn.
        split_by: &'a SplitBy,
    },
}

impl Route {
    /// The strategy this route comes to under `config`.
    pub fn strategy<'a>(&'a self, config: &'a Config) -> Strategy<'a> {
        let shares: Vec<(&str, u64)> = self
            .split
            .iter()
            .filter(|s| s.weight > 0)
            .map(|s| (config.backend(s.backend).name.as_str(), s.weight))
            .collect();
        let live = match shares.as_slice() {
            [(only, _)] => Live::Basic { backend: only },
            _ => Live::Canary {
                shares,
                split_by: &self.split_by,
            },
        };
        let shadow = self
            .shadow
            .as_ref()
            .map(|s| (config.backend(s.backend).name.as_str(), s.percent));
        let rollout = self.rollout.as_ref().map(|r| {
            (
                config.backend(r.candidate).name.as_str(),
                r.steps.as_slice(),
            )
        });
        Strategy {
            live,
            shadow,
            rollout,
        }
    }
}

/// `basic → v1`, `canary 95/5 by header x-user-id (v1/v2)`, either followed by
/// ` + shadow 100% → v2`.
impl fmt::Display for Strategy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.live {
            Live::Basic { backend } => write!(f, "basic → {backend}")?,
            Live::Canary { shares, split_by } => {
                let join = |part: &dyn Fn(&(&str, u64)) -> String| {
                    shares.iter().map(part).collect::<Vec<_>>().join("/")
                };
                let weights = join(&|(_, w)| w.to_string());
                let names = join(&|(n, _)| (*n).to_owned());
                let by = match split_by {
                    SplitBy::Random => "by random draw".to_owned(),
                    SplitBy::Header(h) => format!("by header {h}"),
                    SplitBy::Cookie(c) => format!("by cookie {c}"),
                };
                write!(f, "canary {weights} {by} ({names})")?;
            }
        }
        if let Some((backend, percent)) = self.shadow {
            write!(f, " + shadow {percent}% → {backend}")?;
        }
        if let Some((candidate, steps)) = self.rollout {
            let steps: Vec<String> = steps.iter().map(u8::to_string).collect();
            write!(f, " + rollout of {candidate} over {}%", steps.join("/"))?;
        }
        Ok(())
    }
}
