//! Running totals of one series since it was made: what a rollout judges. The
//! dashboard's window forgets after a minute and Prometheus' counters live in the
//! exporter; a rollout needs exact counts since its step began, so each series also
//! keeps these few atomics, and the rollout subtracts the totals it saw when its step
//! began ([`ExchangeCounts::since`]).
//!
//! Latency is kept in the rollout crate's fine log-scale buckets, so "slower than the
//! baseline's p95" is judged from counts, with no sample kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use veer_rollout::{latency, Count};

/// Adds one to a total.
fn bump(total: &AtomicU64) {
    total.fetch_add(1, Ordering::Relaxed);
}

/// Requests of one series: how many, how many failed, and how long they took.
pub(crate) struct ExchangeTotals {
    requests: AtomicU64,
    failed: AtomicU64,
    latency: [AtomicU64; latency::BUCKETS],
}

impl Default for ExchangeTotals {
    fn default() -> Self {
        ExchangeTotals {
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ExchangeTotals {
    pub(crate) fn record(&self, took: Duration, failed: bool) {
        bump(&self.requests);
        if failed {
            bump(&self.failed);
        }
        bump(&self.latency[latency::bucket_of(took.as_secs_f64())]);
    }

    pub(crate) fn read(&self) -> ExchangeCounts {
        ExchangeCounts {
            requests: self.requests.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// A reading of [`ExchangeTotals`] (or the sum of several series' readings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeCounts {
    /// Requests finished.
    pub requests: u64,
    /// Of which failed: no answer, a 5xx, or a gRPC server fault.
    pub failed: u64,
    /// Requests per bucket of [`veer_rollout::latency`].
    pub latency: Vec<u64>,
}

impl Default for ExchangeCounts {
    fn default() -> Self {
        ExchangeCounts {
            requests: 0,
            failed: 0,
            latency: vec![0; latency::BUCKETS],
        }
    }
}

impl ExchangeCounts {
    /// What happened after `earlier`, a reading of the same series.
    pub fn since(&self, earlier: &ExchangeCounts) -> ExchangeCounts {
        ExchangeCounts {
            requests: self.requests.saturating_sub(earlier.requests),
            failed: self.failed.saturating_sub(earlier.failed),
            latency: self
                .latency
                .iter()
                .zip(earlier.latency.iter().chain(std::iter::repeat(&0)))
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// Adds another series' reading (the baseline of a rollout may be several
    /// backends).
    pub fn add(&mut self, other: &ExchangeCounts) {
        self.requests += other.requests;
        self.failed += other.failed;
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine += theirs;
        }
    }

    /// Requests, and those that failed.
    pub fn errors(&self) -> Count {
        Count {
            total: self.requests,
            bad: self.failed,
        }
    }
}

/// Comparisons of one series that were judged: how many, how many diverged, and of
/// the classification pairs, how many flipped their label.
#[derive(Default)]
pub(crate) struct ComparisonTotals {
    compared: AtomicU64,
    diverged: AtomicU64,
    labelled: AtomicU64,
    flipped: AtomicU64,
}

impl ComparisonTotals {
    /// Counts a pair judged as `diverged` or not; `label_agreement` when known.
    pub(crate) fn record(&self, diverged: bool, label_agreement: Option<bool>) {
        bump(&self.compared);
        if diverged {
            bump(&self.diverged);
        }
        if let Some(agree) = label_agreement {
            bump(&self.labelled);
            if !agree {
                bump(&self.flipped);
            }
        }
    }

    pub(crate) fn read(&self) -> ComparisonCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ComparisonCounts {
            divergence: Count {
                total: load(&self.compared),
                bad: load(&self.diverged),
            },
            label_flips: Count {
                total: load(&self.labelled),
                bad: load(&self.flipped),
            },
        }
    }
}

/// A reading of [`ComparisonTotals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComparisonCounts {
    /// Pairs judged (matched or diverged), and those that diverged.
    pub divergence: Count,
    /// Pairs whose label agreement is known, and those whose labels differ.
    pub label_flips: Count,
}

impl ComparisonCounts {
    /// Both readings together (several series' pairs).
    pub fn plus(&self, other: &ComparisonCounts) -> ComparisonCounts {
        let add = |a: Count, b: Count| Count {
            total: a.total + b.total,
            bad: a.bad + b.bad,
        };
        ComparisonCounts {
            divergence: add(self.divergence, other.divergence),
            label_flips: add(self.label_flips, other.label_flips),
        }
    }

    /// What happened after `earlier`, a reading of the same series.
    pub fn since(&self, earlier: &ComparisonCounts) -> ComparisonCounts {
        ComparisonCounts {
            divergence: self.divergence.since(earlier.divergence),
            label_flips: self.label_flips.since(earlier.label_flips),
        }
    }
}
