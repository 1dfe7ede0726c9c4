//! Passive outlier detection: a backend that fails `consecutive_failures` live
//! requests in a row (5xx answers, connect failures, timeouts) is ejected for a
//! while, and the routes that split to it send its share to their other backends.
//!
//! The first ejection lasts `outlier.ejection`; each further one before a success
//! doubles it, up to [`OUTLIER_MAX_EJECTION`]. The backend is back when the time is
//! up: its sticky users return with the next request, and failing again ejects it
//! again, for longer. A success resets both counts. Nothing here waits or
//! takes a lock; the state is three atomics per backend, kept across reloads while
//! the backend's outlier settings are unchanged.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use veer_config::defaults::OUTLIER_MAX_EJECTION;
use veer_config::Outlier;

/// One backend's recent failures and ejection.
#[derive(Debug)]
pub(crate) struct Health {
    name: String,
    settings: Outlier,
    /// What `ejected_until` counts from.
    epoch: Instant,
    failures: AtomicU32,
    /// Ejections in a row, for the back-off.
    ejections: AtomicU32,
    /// Milliseconds after `epoch` until which the backend is out; 0 when never.
    ejected_until: AtomicU64,
}

impl Health {
    pub(crate) fn new(name: &str, settings: Outlier) -> Health {
        Health {
            name: name.to_owned(),
            settings,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// True while the backend is out of rotation.
    pub(crate) fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Records the outcome of one live exchange with the backend.
    pub(crate) fn record(&self, ok: bool) {
        if ok {
            // Loads first: the common case (healthy, nothing to reset) writes nothing.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            if self.ejections.load(Ordering::Relaxed) != 0 && !self.is_ejected() {
                self.ejections.store(0, Ordering::Relaxed);
                tracing::info!(backend = %self.name, "backend healthy again");
            }
            return;
        }
        let previous = self.ejected_until.load(Ordering::Acquire);
        if previous != 0 && self.now_ms() < previous {
            // Failures of requests sent before the ejection: already acted on.
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.settings.consecutive_failures {
            return;
        }
        let ejections = self.ejections.load(Ordering::Relaxed);
        let ejection = self
            .settings
            .ejection
            .saturating_mul(1 << ejections.min(16))
            .min(OUTLIER_MAX_EJECTION.max(self.settings.ejection));
        let until = self
            .now_ms()
            .saturating_add(ejection.as_millis() as u64)
            .max(1);
        // Exactly one of the threads that reached the threshold ejects: the one that
        // replaces the state they all saw.
        let claimed = self.ejected_until.compare_exchange(
            previous,
            until,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if claimed.is_err() {
            return;
        }
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            backend = %self.name,
            failures,
            for_seconds = ejection.as_secs_f64(),
            "backend ejected after failures in a row; its share goes to the other backends"
        );
    }

    /// How long the current ejection has left (zero when not ejected).
    #[cfg(test)]
    fn remaining(&self) -> Duration {
        let until = self.ejected_until.load(Ordering::Relaxed);
        Duration::from_millis(until.saturating_sub(self.now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(failures: u32, ejection_ms: u64) -> Health {
        Health::new(
            "v2",
            Outlier {
                consecutive_failures: failures,
                ejection: Duration::from_millis(ejection_ms),
            },
        )
    }

    #[test]
    fn failures_in_a_row_eject_and_a_success_in_between_does_not() {
        let h = health(3, 60_000);
        h.record(false);
        h.record(false);
        h.record(true);
        h.record(false);
        h.record(false);
        assert!(!h.is_ejected(), "two in a row since the success");
        h.record(false);
        assert!(h.is_ejected());
        assert!(h.remaining() > Duration::from_secs(59));
    }

    #[test]
    fn failures_at_once_eject_once() {
        let h = std::sync::Arc::new(health(4, 60_000));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..50).for_each(|_| h.record(false)))
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(h.is_ejected());
        assert_eq!(
            h.ejections.load(Ordering::Relaxed),
            1,
            "one ejection, one back-off step"
        );
        assert!(h.remaining() <= Duration::from_secs(60));
    }

    #[test]
    fn an_ejection_ends_and_the_next_one_in_a_row_lasts_twice_as_long() {
        let h = health(1, 200);
        h.record(false);
        assert!(h.is_ejected());
        std::thread::sleep(Duration::from_millis(210));
        assert!(!h.is_ejected(), "back after its time");
        h.record(false);
        let second = h.remaining();
        assert!(second > Duration::from_millis(250), "doubled: {second:?}");
        std::thread::sleep(Duration::from_millis(410));
        h.record(true);
        h.record(false);
        assert!(
            h.remaining() <= Duration::from_millis(200),
            "a success reset the back-off"
        );
    }
}
