//! The divergent pairs kept in memory: the dashboard lists the newest, and
//! `GET /divergences/{request_id}` answers any kept pair's full record (the same JSON
//! as its divergence-log line: the request body, both answers, the differences), so
//! a route without a `divergence_log` can still be looked into.
//!
//! Bounded three ways, each a constant below with its reason: how many pairs a route
//! lists per second ([`LISTED_PER_SECOND`], checked before a record is even made, so
//! a route diverging on every request costs the compare pool nothing more), how many
//! pairs are kept ([`KEPT_DIVERGENCES`]) and how many bytes they hold
//! ([`KEPT_DIVERGENCE_BYTES`]). The oldest pair goes first. The page lists the newest
//! [`RECENT_DIVERGENCES`] of the kept pairs, so every pair it lists has its record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many divergent pairs the dashboard lists.
pub const RECENT_DIVERGENCES: usize = 20;

/// Divergent pairs each route (and shadow backend) lists per second, at most: the
/// page refreshes every 3 s, so a route diverging on every request still shows the
/// last ten seconds or so instead of the last few milliseconds, and a link on a page
/// loaded a minute ago still finds its record among the [`KEPT_DIVERGENCES`].
pub const LISTED_PER_SECOND: u32 = 2;

/// Pairs that could not be judged (a `select` that finds nothing, an answer that is
/// not JSON) each route (and shadow backend) writes to its divergence log per second,
/// at most: one shows what the answers look like, and a route where every pair is
/// such an error neither renders a line per pair nor crowds its divergences out of
/// the log's per-second sample.
pub const UNJUDGED_LOGGED_PER_SECOND: u32 = 1;

/// Divergent pairs kept with their records: 100 seconds of one route listing at
/// [`LISTED_PER_SECOND`].
pub const KEPT_DIVERGENCES: usize = 200;

/// Bytes the kept pairs may hold, 2 MiB: records are cut to 16 KiB lines, so at
/// least 128 of the longest fit, far more than the [`RECENT_DIVERGENCES`] listed.
pub const KEPT_DIVERGENCE_BYTES: usize = 2 * 1024 * 1024;

/// A divergent pair as the page lists it, with its full record.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// Seconds since the Unix epoch.
    pub unix_time: f64,
    /// Route name.
    pub route: String,
    /// The shadow backend's name.
    pub shadow_backend: String,
    /// The request id: the record's key.
    pub request_id: String,
    /// The first differences, each value as the start of its JSON text.
    pub differences: Vec<ShownDifference>,
    /// Largest numeric deviation.
    pub max_abs_deviation: Option<f64>,
    /// For classification outputs, whether the predicted classes agreed: `false` is
    /// a label flip.
    pub label_agreement: Option<bool>,
    /// The whole pair as one JSON object, as the divergence log writes it.
    pub record: String,
}

/// Where two answers differ, shown short: the full values are in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownDifference {
    /// JSON pointer, or `status` / `body`.
    pub pointer: String,
    /// The live value's JSON text (cut, ending in `…`), `None` when absent.
    pub live: Option<String>,
    /// The shadow value's JSON text, likewise.
    pub shadow: Option<String>,
}

impl Divergence {
    /// The heap bytes it holds, about: what counts against [`KEPT_DIVERGENCE_BYTES`].
    fn size(&self) -> usize {
        let shown: usize = self
            .differences
            .iter()
            .map(|d| {
                d.pointer.len()
                    + d.live.as_ref().map_or(0, String::len)
                    + d.shadow.as_ref().map_or(0, String::len)
                    + std::mem::size_of::<ShownDifference>()
            })
            .sum();
        std::mem::size_of::<Divergence>()
            + self.route.len()
            + self.shadow_backend.len()
            + self.request_id.len()
            + self.record.len()
            + shown
    }
}

/// The kept pairs, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    pairs: VecDeque<Divergence>,
    bytes: usize,
}

impl Kept {
    /// Keeps `pair`, letting the oldest go until both bounds hold.
    pub(crate) fn push(&mut self, pair: Divergence) {
        let size = pair.size();
        if size > KEPT_DIVERGENCE_BYTES {
            return;
        }
        while self.pairs.len() >= KEPT_DIVERGENCES || self.bytes + size > KEPT_DIVERGENCE_BYTES {
            match self.pairs.pop_front() {
                Some(oldest) => self.bytes -= oldest.size(),
                None => break,
            }
        }
        self.bytes += size;
        self.pairs.push_back(pair);
    }

    /// The newest `n` pairs, newest first.
    pub(crate) fn newest(&self, n: usize) -> impl Iterator<Item = &Divergence> {
        self.pairs.iter().rev().take(n)
    }

    /// The newest pair with this request id (a client may send one id twice).
    pub(crate) fn find(&self, request_id: &str) -> Option<&Divergence> {
        self.pairs.iter().rev().find(|p| p.request_id == request_id)
    }
}

/// One series' count of pairs taken in the current second, against a per-second
/// allowance ([`LISTED_PER_SECOND`], [`UNJUDGED_LOGGED_PER_SECOND`]): the second and
/// the count packed in one atomic, so taking a place is a single compare-and-swap on
/// the compare pool.
#[derive(Debug, Default)]
pub(crate) struct ListingRate(AtomicU64);

impl ListingRate {
    /// Whether a pair judged in `second` may be taken, `per_second` being allowed;
    /// counts it when so.
    pub(crate) fn admit(&self, second: u64, per_second: u32) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
                next_listing(state, second, per_second)
            })
            .is_ok()
    }
}

/// The state after taking one more pair in `second`, or `None` when the second has
/// had its `per_second`. The state is `second << 32 | count` (seconds since the
/// telemetry started fit 32 bits for a century).
fn next_listing(state: u64, second: u64, per_second: u32) -> Option<u64> {
    let (at, count) = (state >> 32, state & u64::from(u32::MAX));
    let second = second & u64::from(u32::MAX);
    match (at == second, count) {
        (false, _) => Some(second << 32 | 1),
        (true, n) if n < u64::from(per_second) => Some(state + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str, record_bytes: usize) -> Divergence {
        Divergence {
            unix_time: 0.0,
            route: "r".into(),
            shadow_backend: "v2".into(),
            request_id: id.into(),
            differences: vec![ShownDifference {
                pointer: "/predictions/0".into(),
                live: Some("0.1".into()),
                shadow: None,
            }],
            max_abs_deviation: None,
            label_agreement: Some(false),
            record: "x".repeat(record_bytes),
        }
    }

    #[test]
    fn the_oldest_pairs_go_past_the_count() {
        let mut kept = Kept::default();
        for i in 0..KEPT_DIVERGENCES + 5 {
            kept.push(pair(&i.to_string(), 10));
        }
        assert_eq!(kept.pairs.len(), KEPT_DIVERGENCES);
        assert!(kept.find("4").is_none());
        assert!(kept.find("5").is_some());
        let newest: Vec<&str> = kept.newest(2).map(|p| p.request_id.as_str()).collect();
        assert_eq!(
            newest,
            [
                (KEPT_DIVERGENCES + 4).to_string(),
                (KEPT_DIVERGENCES + 3).to_string()
            ]
        );
    }

    #[test]
    fn the_oldest_pairs_go_past_the_bytes() {
        let mut kept = Kept::default();
        let line = 16 * 1024;
        for i in 0..KEPT_DIVERGENCES {
            kept.push(pair(&i.to_string(), line));
        }
        assert!(kept.bytes <= KEPT_DIVERGENCE_BYTES, "{}", kept.bytes);
        assert_eq!(
            kept.bytes,
            kept.pairs.iter().map(Divergence::size).sum::<usize>()
        );
        let held = kept.pairs.len();
        assert!(
            (RECENT_DIVERGENCES..KEPT_DIVERGENCES).contains(&held),
            "{held} of the longest lines kept"
        );
        assert!(kept.find(&(KEPT_DIVERGENCES - 1).to_string()).is_some());
        assert!(kept.find("0").is_none());
        // A record larger than the whole budget is not kept, and evicts nothing.
        kept.push(pair("huge", KEPT_DIVERGENCE_BYTES + 1));
        assert!(kept.find("huge").is_none());
        assert_eq!(kept.pairs.len(), held);
    }

    #[test]
    fn the_newest_pair_of_a_repeated_id_is_found() {
        let mut kept = Kept::default();
        let mut first = pair("same", 1);
        first.route = "first".into();
        kept.push(first);
        kept.push(pair("same", 1));
        assert_eq!(kept.find("same").map(|p| p.route.as_str()), Some("r"));
    }

    #[test]
    fn a_second_lists_its_first_few_pairs_and_the_next_starts_over() {
        let mut state = 0;
        let mut listed = 0;
        for _ in 0..10 {
            if let Some(next) = next_listing(state, 7, LISTED_PER_SECOND) {
                state = next;
                listed += 1;
            }
        }
        assert_eq!(listed, LISTED_PER_SECOND);
        assert_eq!(next_listing(state, 8, LISTED_PER_SECOND), Some(8 << 32 | 1));
        let rate = ListingRate::default();
        let admitted = (0..10).filter(|_| rate.admit(3, 2)).count();
        assert_eq!(admitted, 2);
        assert!(rate.admit(4, 2));
        let once = ListingRate::default();
        assert_eq!((0..10).filter(|_| once.admit(5, 1)).count(), 1);
    }
}
