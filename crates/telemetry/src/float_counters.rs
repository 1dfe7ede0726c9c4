//! Counters of real numbers: sums a Prometheus counter may carry but the `metrics`
//! facade cannot (its counters count in whole numbers). veer's are the shadow's
//! signed deviation, split by direction (`veer_shadow_deviation_up_total`,
//! `veer_shadow_deviation_down_total`), so each only grows and `rate()` works on it.
//!
//! A counter is one atomic holding an `f64`'s bits, added to with a compare-and-swap:
//! no lock on the compare pool. The set of counters is behind a mutex taken only to
//! register one (once per series) and to render a scrape. Like the recorder's own
//! series, a counter outlives the series that registered it: a reload that makes the
//! series anew finds the same counter under the same labels, so nothing resets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::exporter::escape;

/// One counter's handle; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct FloatCounter(Arc<AtomicU64>);

impl FloatCounter {
    /// Adds `amount`; anything but a finite positive number is left out (a counter
    /// never goes down, and an infinity would stay for good).
    pub(crate) fn add(&self, amount: f64) {
        if amount.is_finite() && amount > 0.0 {
            add_float(&self.0, amount);
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self) -> f64 {
        read_float(&self.0)
    }
}

/// Adds `amount` to the `f64` whose bits `total` holds.
pub(crate) fn add_float(total: &AtomicU64, amount: f64) {
    // `fetch_update` retries until no other thread added in between; the closure
    // always answers, so it cannot fail.
    let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + amount).to_bits())
    });
}

/// The `f64` whose bits `total` holds.
pub(crate) fn read_float(total: &AtomicU64) -> f64 {
    f64::from_bits(total.load(Ordering::Relaxed))
}

/// A counter's name and labels, in the order they are rendered.
type Key = (&'static str, Vec<(&'static str, String)>);

/// Every float counter registered, by name and labels, with each name's help text.
#[derive(Debug, Default)]
pub(crate) struct FloatCounters {
    counters: Mutex<BTreeMap<Key, FloatCounter>>,
}

impl FloatCounters {
    /// The counter of `name` with `labels`, registered on first use.
    pub(crate) fn counter(
        &self,
        name: &'static str,
        labels: Vec<(&'static str, String)>,
    ) -> FloatCounter {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counters
            .entry((name, labels))
            .or_insert_with(|| FloatCounter(Arc::new(AtomicU64::new(0f64.to_bits()))))
            .clone()
    }

    /// The text exposition of every counter registered: one family per name (with
    /// `help` from `describe`), its series in label order.
    pub(crate) fn render(&self, describe: impl Fn(&str) -> &'static str) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = String::new();
        let mut family = None;
        for ((name, labels), counter) in counters.iter() {
            if family != Some(*name) {
                family = Some(*name);
                let _ = write!(
                    text,
                    "# HELP {name} {}\n# TYPE {name} counter\n",
                    describe(name)
                );
            }
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let value = read_float(&counter.0);
            let _ = writeln!(text, "{name}{{{}}} {value}", labels.join(","));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(route: &str) -> Vec<(&'static str, String)> {
        vec![("route", route.to_owned()), ("backend", "v2".to_owned())]
    }

    #[test]
    fn a_counter_adds_positive_amounts_and_is_shared_by_its_labels() {
        let counters = FloatCounters::default();
        let up = counters.counter("veer_x_total", labels("r"));
        for amount in [0.25, -1.0, f64::INFINITY, f64::NAN, 0.5] {
            up.add(amount);
        }
        assert_eq!(up.get(), 0.75);
        // Registered again (a series made anew by a reload): the same counter.
        counters.counter("veer_x_total", labels("r")).add(1.0);
        assert_eq!(up.get(), 1.75);
        assert_eq!(counters.counter("veer_x_total", labels("s")).get(), 0.0);
    }

    #[test]
    fn counters_render_as_counter_families() {
        let counters = FloatCounters::default();
        counters.counter("veer_b_total", labels("r")).add(2.5);
        counters.counter("veer_a_total", labels("r\"1")).add(0.125);
        counters.counter("veer_a_total", labels("r2")).add(3.0);
        assert_eq!(
            counters.render(|name| if name == "veer_a_total" { "A." } else { "B." }),
            "# HELP veer_a_total A.\n# TYPE veer_a_total counter\n\
             veer_a_total{route=\"r\\\"1\",backend=\"v2\"} 0.125\n\
             veer_a_total{route=\"r2\",backend=\"v2\"} 3\n\
             # HELP veer_b_total B.\n# TYPE veer_b_total counter\n\
             veer_b_total{route=\"r\",backend=\"v2\"} 2.5\n"
        );
    }

    #[test]
    fn concurrent_adds_lose_nothing() {
        let counters = FloatCounters::default();
        let counter = counters.counter("veer_x_total", labels("r"));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..10_000).for_each(|_| counter.add(0.5)));
            }
        });
        assert_eq!(counter.get(), 20_000.0);
    }
}
