//! The last minute of one series, in one-second slots, updated with atomics only: a
//! request adds to its second's slot with a few relaxed increments, never a lock.
//!
//! A slot is tagged with the second it holds. The first writer of a new second claims
//! the slot (compare-and-swap on the tag) and clears it; a count that lands in the
//! instant between the claim and the clear may be lost. That is the price of no lock,
//! and a fair one for a page read at a glance: Prometheus keeps the exact counts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How far back the figures reach.
pub const WINDOW: Duration = Duration::from_secs(60);
const SLOTS: usize = WINDOW.as_secs() as usize;

/// What a window's slots hold: counters plus the tag of the second they count.
pub(crate) trait Slot: Default {
    /// The second held, plus one (0: never used).
    fn tag(&self) -> &AtomicU64;
    /// Zeroes every counter.
    fn clear(&self);
}

/// A minute of one series. The slots are allocated on the first count, so a series
/// that never sees traffic (a backend at weight 0, say) costs one pointer.
pub(crate) struct Window<S> {
    slots: OnceLock<Box<[S; SLOTS]>>,
}

impl<S> Default for Window<S> {
    fn default() -> Self {
        Window {
            slots: OnceLock::new(),
        }
    }
}

impl<S: Slot> Window<S> {
    /// The slot to count into for `second` (seconds since the telemetry started).
    pub(crate) fn at(&self, second: u64) -> &S {
        let slots = self
            .slots
            .get_or_init(|| Box::new(std::array::from_fn(|_| S::default())));
        let slot = &slots[(second % SLOTS as u64) as usize];
        let tag = second + 1;
        let seen = slot.tag().load(Ordering::Acquire);
        if seen < tag
            && slot
                .tag()
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.clear();
        }
        slot
    }

    /// Whether anything was ever counted.
    pub(crate) fn used(&self) -> bool {
        self.slots.get().is_some()
    }

    /// The slots of the minute up to `now`, each with its second.
    pub(crate) fn recent(&self, now: u64) -> impl Iterator<Item = (u64, &S)> {
        let oldest = (now + 1).saturating_sub(SLOTS as u64);
        self.slots
            .get()
            .into_iter()
            .flat_map(|slots| slots.iter())
            .filter_map(move |slot| {
                let second = slot.tag().load(Ordering::Acquire).checked_sub(1)?;
                (oldest..=now).contains(&second).then_some((second, slot))
            })
    }
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU32) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn read(counter: &AtomicU32) -> u64 {
    u64::from(counter.load(Ordering::Relaxed))
}

/// Zeroes counters.
pub(crate) fn zero<'a>(counters: impl IntoIterator<Item = &'a AtomicU32>) {
    for c in counters {
        c.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count {
        tag: AtomicU64,
        n: AtomicU32,
    }

    impl Slot for Count {
        fn tag(&self) -> &AtomicU64 {
            &self.tag
        }
        fn clear(&self) {
            zero([&self.n]);
        }
    }

    fn total(w: &Window<Count>, now: u64) -> u64 {
        w.recent(now).map(|(_, s)| read(&s.n)).sum()
    }

    #[test]
    fn counts_stay_a_minute_and_a_reused_slot_starts_from_zero() {
        let w = Window::<Count>::default();
        assert!(!w.used());
        bump(&w.at(0).n);
        bump(&w.at(0).n);
        bump(&w.at(59).n);
        assert!(w.used());
        assert_eq!(total(&w, 59), 3);
        // Second 60 reuses second 0's slot: those two are past the window anyway.
        bump(&w.at(60).n);
        assert_eq!(total(&w, 60), 2);
        assert_eq!(total(&w, 200), 0);
        let seconds: Vec<u64> = w.recent(60).map(|(s, _)| s).collect();
        assert_eq!(seconds.len(), 2);
        assert!(seconds.contains(&59) && seconds.contains(&60));
    }

    #[test]
    fn many_threads_counting_a_claimed_second_lose_nothing() {
        let w = Window::<Count>::default();
        w.at(5);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..10_000).for_each(|_| bump(&w.at(5).n)));
            }
        });
        assert_eq!(total(&w, 5), 40_000);
    }
}
