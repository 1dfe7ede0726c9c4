//! A route's weighted split, laid out once per config generation.
//!
//! # Random draws
//! Backends with weight take cumulative ranges of `0..total_weight` in file order;
//! a uniform draw picks the range it falls in.
//!
//! # Sticky keys: nested decisions over 10,000 buckets
//! The split is decided from the last backend backwards. Level 0 asks "the last
//! backend, or one of those before it?": the last backend with weight `w` out of a
//! total `W` takes the top `round(10_000 · w / W)` of the key's 10,000 level-0
//! buckets. Otherwise level 1 asks the same of the backend before it, among the
//! backends up to it, with the key's level-1 bucket; and so on down to the first.
//!
//! For the usual two-backend canary this is exactly one cumulative layout of 10,000
//! buckets in file order (`[v1 | v2]`, v2 on top). The nesting is what keeps the
//! promise users rely on for any number of backends: **raising the last backend's
//! weight only moves users onto it, never off it, and never between the others** —
//! it only widens level 0, and every other level is untouched. (One flat cumulative
//! layout breaks this from three backends on: growing the last range shifts every
//! boundary below it, so users would slide from v1 to v2.) A level is numbered by
//! its backend's place in the file, so a backend at weight 0 keeps its level free and
//! giving it weight later leaves everyone else's buckets where they were.

use veer_config::{BackendId, WeightedBackend};

use crate::sticky::{self, BUCKETS};

/// A route's split, ready to pick a backend per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Cumulative upper bounds of each weighted backend's range of `0..total`.
    cumulative: Vec<(u64, BackendId)>,
    total: u64,
    /// Sticky decisions in the order they are asked.
    levels: Vec<Level>,
    /// The backend a key lands on when no level claims it.
    first: BackendId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Level {
    level: u32,
    backend: BackendId,
    /// How many of the top buckets pick `backend`, in `1..BUCKETS`.
    buckets: u32,
}

impl Split {
    /// Lays out `entries`; at least one must have a weight above 0 (validation
    /// guarantees it).
    pub fn new(entries: &[WeightedBackend]) -> Split {
        let weighted: Vec<(usize, &WeightedBackend)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.weight > 0)
            .collect();
        let mut total = 0;
        let cumulative = weighted
            .iter()
            .map(|(_, e)| {
                total += e.weight;
                (total, e.backend)
            })
            .collect();
        let mut levels = Vec::new();
        let mut rest = total;
        for &(place, entry) in weighted.iter().skip(1).rev() {
            levels.push(Level {
                level: (entries.len() - 1 - place) as u32,
                backend: entry.backend,
                buckets: share(entry.weight, rest),
            });
            rest -= entry.weight;
        }
        let first = weighted.first().map_or(BackendId(0), |(_, e)| e.backend);
        Split {
            cumulative,
            total,
            levels,
            first,
        }
    }

    /// The sum of the weights: a random draw is taken from `0..total()`.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The backend for a random `draw` in `0..total()`.
    pub fn pick_random(&self, draw: u64) -> BackendId {
        self.cumulative
            .iter()
            .find(|(upper, _)| draw < *upper)
            .map_or(self.first, |(_, b)| *b)
    }

    /// The backend for a user `key` under `seed`: the same for the same inputs, on
    /// every machine.
    pub fn pick_sticky(&self, key: &[u8], seed: u64) -> BackendId {
        self.levels
            .iter()
            .find(|l| sticky::bucket(key, seed, l.level) >= BUCKETS - l.buckets)
            .map_or(self.first, |l| l.backend)
    }
}

/// `weight` out of `rest` in buckets, never 0 (a weighted backend always gets some
/// users) and never all of them (the backends before it have weight too).
fn share(weight: u64, rest: u64) -> u32 {
    let buckets = (weight * u64::from(BUCKETS) + rest / 2) / rest;
    buckets.clamp(1, u64::from(BUCKETS) - 1) as u32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split(weights: &[u64]) -> Split {
        let entries: Vec<WeightedBackend> = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| WeightedBackend {
                backend: BackendId(i),
                weight,
            })
            .collect();
        Split::new(&entries)
    }

    #[test]
    fn two_backends_are_one_cumulative_layout_in_file_order() {
        let s = split(&[95, 5]);
        assert_eq!(
            s.levels,
            vec![Level {
                level: 0,
                backend: BackendId(1),
                buckets: 500
            }]
        );
        for key in 0..2_000u32 {
            let key = key.to_string();
            let want = if sticky::bucket(key.as_bytes(), 3, 0) >= 9_500 {
                1
            } else {
                0
            };
            assert_eq!(s.pick_sticky(key.as_bytes(), 3), BackendId(want));
        }
    }

    #[test]
    fn random_draws_walk_the_cumulative_ranges_skipping_zero_weights() {
        let s = split(&[3, 0, 2]);
        assert_eq!(s.total(), 5);
        let picks: Vec<usize> = (0..5).map(|d| s.pick_random(d).0).collect();
        assert_eq!(picks, [0, 0, 0, 2, 2]);
    }

    #[test]
    fn a_sole_weighted_backend_takes_every_key() {
        let s = split(&[0, 7, 0]);
        assert!((0..500u32).all(|k| s.pick_sticky(&k.to_le_bytes(), 0) == BackendId(1)));
    }

    #[test]
    fn tiny_weights_still_get_a_bucket() {
        assert_eq!(share(1, 1_000_000), 1);
        assert_eq!(share(999_999, 1_000_000), BUCKETS - 1);
    }

    fn shares(s: &Split, n: usize, keys: u32) -> Vec<f64> {
        let mut count = vec![0u32; n];
        for k in 0..keys {
            count[s.pick_sticky(format!("user-{k}").as_bytes(), 11).0] += 1;
        }
        count
            .iter()
            .map(|&c| f64::from(c) / f64::from(keys))
            .collect()
    }

    #[test]
    fn sticky_shares_follow_the_weights() {
        let got = shares(&split(&[50, 30, 20]), 3, 40_000);
        for (g, want) in got.iter().zip([0.5, 0.3, 0.2]) {
            // 40,000 keys: one standard deviation is under 0.0025.
            assert!((g - want).abs() < 0.0125, "got {got:?}");
        }
    }

    proptest! {
        /// The promise of a canary: raising the last backend's weight only moves users
        /// onto it, never off it and never between the others.
        #[test]
        fn raising_the_last_weight_only_moves_users_onto_it(
            mut weights in prop::collection::vec(0u64..1_000, 2..6),
            raise in 1u64..5_000,
            seed in any::<u64>(),
            keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 64),
        ) {
            prop_assume!(weights.iter().sum::<u64>() > 0);
            let last = weights.len() - 1;
            let before = split(&weights);
            weights[last] += raise;
            let after = split(&weights);
            for key in &keys {
                let (was, now) = (before.pick_sticky(key, seed), after.pick_sticky(key, seed));
                prop_assert!(now == was || now == BackendId(last), "{was:?} -> {now:?}");
            }
        }

        /// Lowering the last weight is the same promise run backwards.
        #[test]
        fn lowering_the_last_weight_only_moves_users_off_it(
            mut weights in prop::collection::vec(1u64..1_000, 2..6),
            seed in any::<u64>(),
            keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 64),
        ) {
            let last = weights.len() - 1;
            let before = split(&weights);
            weights[last] /= 2;
            let after = split(&weights);
            for key in &keys {
                let (was, now) = (before.pick_sticky(key, seed), after.pick_sticky(key, seed));
                prop_assert!(now == was || was == BackendId(last), "{was:?} -> {now:?}");
            }
        }

        #[test]
        fn picks_are_always_a_weighted_backend(
            weights in prop::collection::vec(0u64..1_000, 1..6),
            draw in any::<u64>(),
            key in prop::collection::vec(any::<u8>(), 0..32),
        ) {
            prop_assume!(weights.iter().sum::<u64>() > 0);
            let s = split(&weights);
            prop_assert!(weights[s.pick_sticky(&key, 0).0] > 0);
            prop_assert!(weights[s.pick_random(draw % s.total()).0] > 0);
        }
    }
}
