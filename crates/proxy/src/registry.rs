//! The long-lived things routes use, kept across reloads: shadow limiters,
//! divergence-log writers and rates, and telemetry series.
//!
//! Each entry is keyed by its **full settings**. A reload asks for what its routes
//! need: an entry whose settings are unchanged is handed over (mirrors in flight keep
//! counting against the same limiter, a series keeps its last minute), a changed
//! setting makes a new entry, and an entry no snapshot uses any more is released: the
//! registry holds entries weakly, so the last snapshot (or in-flight request) that
//! drops one frees it, and the next reload forgets its key. One exception, on
//! purpose: a divergence log's file writer is keyed by its path alone, because two
//! writers of one file would rotate it under each other; it takes the new size
//! limit, and keeps its rotation state.
//!
//! The registry belongs to [`crate::Routes`] and changes only under its reload lock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Weak};

use std::time::Duration;

use tokio::sync::Semaphore;
use veer_config::{Backend, BackendTls, Outlier, Protocol, Rollout};
use veer_telemetry::{ComparisonSeries, ExchangeSeries, Role, Telemetry};

use crate::divergence::{DivergenceLog, LogRate, LogWriter};
use crate::health::Health;
use crate::rollout::{Identity, RolloutState};
use crate::snapshot::UnusableFile;
use crate::tls::{self, TlsFiles};
use crate::upstream::UpstreamClient;

/// Entries of one kind by their settings, held weakly.
struct Shelf<K, V> {
    entries: HashMap<K, Weak<V>>,
}

impl<K, V> Default for Shelf<K, V> {
    fn default() -> Self {
        Shelf {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V> Shelf<K, V> {
    /// The live entry for `key`, or a new one from `make`.
    fn get_or_make(&mut self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        match self.try_get_or_make(key, || Ok::<V, std::convert::Infallible>(make())) {
            Ok(entry) => entry,
            Err(never) => match never {},
        }
    }

    /// The live entry for `key`, or a new one from `make`, which may fail.
    fn try_get_or_make<E>(
        &mut self,
        key: K,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Some(kept) = self.entries.get(&key).and_then(Weak::upgrade) {
            return Ok(kept);
        }
        let made = Arc::new(make()?);
        self.entries.insert(key, Arc::downgrade(&made));
        Ok(made)
    }

    /// Forgets the keys of entries that were released.
    fn forget_released(&mut self) {
        self.entries.retain(|_, entry| entry.strong_count() > 0);
    }

    fn live(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.strong_count() > 0)
            .count()
    }
}

/// A shadow backend's limits: mirrors in flight, and the bytes of request bodies
/// being read for mirrors.
#[derive(Debug)]
pub(crate) struct ShadowLimiter {
    /// Permits of mirrors in flight, each held until its pair is judged.
    pub(crate) mirrors: Arc<Semaphore>,
    /// Bytes of bodies being read for mirrors, at most `max_in_flight × max_body`:
    /// as much as the mirrors in flight may hold. A chunk that does not fit drops
    /// its mirror; slow uploads hold what they have read, only until their deadline.
    pub(crate) reading: Semaphore,
}

/// Every long-lived entry, by kind.
pub(crate) struct Registry {
    telemetry: Telemetry,
    /// Shadow limits, by (shadow backend, max_in_flight, bytes being read).
    limiters: Shelf<(String, usize, usize), ShadowLimiter>,
    /// Divergence-log file writers, by path.
    log_writers: Shelf<std::path::PathBuf, LogWriter>,
    /// Divergence-log rates, by (path, per_sec).
    log_rates: Shelf<(std::path::PathBuf, u32), LogRate>,
    /// Request series, by (route, backend, role).
    exchanges: Shelf<(String, String, Role), ExchangeSeries>,
    /// Comparison series, by (route, shadow backend).
    comparisons: Shelf<(String, String), ComparisonSeries>,
    /// Noise comparison series, by (route, live backend).
    noise: Shelf<(String, String), ComparisonSeries>,
    /// Upstream clients, by everything that shapes their connections.
    clients: Shelf<ClientSettings, UpstreamClient>,
    /// Backends' permits for requests in flight, by (backend, max_connections).
    backend_permits: Shelf<(String, usize), Semaphore>,
    /// Backends' outlier state, by (backend, url, outlier settings): a backend
    /// pointed somewhere else starts healthy.
    health: Shelf<(String, String, Outlier), Health>,
    /// Rollout progress, by (route, candidate and steps): other settings change in
    /// place and keep it.
    rollouts: Shelf<(String, Identity), RolloutState>,
}

/// What makes two backends' connections interchangeable: where they go (an HTTP/1.1
/// pool is one backend's), protocol, connect timeout, TLS settings, and the bytes of
/// the TLS files they name (a rotated CA or client certificate makes a new client;
/// an unchanged one keeps the pooled connections).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientSettings {
    origin: Option<String>,
    protocol: Protocol,
    connect_timeout: Duration,
    tls: BackendTls,
    files: TlsFiles,
}

/// How many entries of each kind are alive, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySize {
    /// Shadow limiters.
    pub limiters: usize,
    /// Divergence-log file writers.
    pub log_writers: usize,
    /// Divergence-log rates.
    pub log_rates: usize,
    /// Request series.
    pub exchanges: usize,
    /// Comparison series.
    pub comparisons: usize,
}

impl Registry {
    pub(crate) fn new(telemetry: Telemetry) -> Registry {
        Registry {
            telemetry,
            limiters: Shelf::default(),
            log_writers: Shelf::default(),
            log_rates: Shelf::default(),
            exchanges: Shelf::default(),
            comparisons: Shelf::default(),
            noise: Shelf::default(),
            clients: Shelf::default(),
            backend_permits: Shelf::default(),
            health: Shelf::default(),
            rollouts: Shelf::default(),
        }
    }

    /// The progress of `route`'s rollout as `identity`: handed over, or read back
    /// from its state file, or begun.
    pub(crate) fn rollout(
        &mut self,
        route: &str,
        identity: Identity,
        plan: &Rollout,
    ) -> Arc<RolloutState> {
        self.rollouts
            .get_or_make((route.to_owned(), identity.clone()), || {
                RolloutState::new(route, identity, plan)
            })
    }

    /// The permits for requests in flight to `backend`.
    pub(crate) fn backend_permits(&mut self, backend: &Backend) -> Arc<Semaphore> {
        let max = backend.max_connections.min(Semaphore::MAX_PERMITS);
        self.backend_permits
            .get_or_make((backend.name.clone(), max), || Semaphore::new(max))
    }

    /// `backend`'s outlier state.
    pub(crate) fn health(&mut self, backend: &Backend) -> Arc<Health> {
        self.health.get_or_make(
            (
                backend.name.clone(),
                backend.url.to_string(),
                backend.outlier,
            ),
            || Health::new(&backend.name, backend.outlier),
        )
    }

    /// The client for `backend`'s connections. Its TLS files are read each time, so
    /// a rotated file is picked up by the reload that follows.
    pub(crate) fn client(
        &mut self,
        backend: &Backend,
    ) -> Result<Arc<UpstreamClient>, UnusableFile> {
        let files = TlsFiles::read(&backend.tls)?;
        let settings = ClientSettings {
            // An HTTP/2 client keys its connections by authority inside, and is
            // shared by every backend with the same settings.
            origin: (backend.protocol == Protocol::Http1).then(|| backend.url.to_string()),
            protocol: backend.protocol,
            connect_timeout: backend.connect_timeout,
            tls: backend.tls.clone(),
            files: files.clone(),
        };
        self.clients.try_get_or_make(settings, || {
            let config = tls::client_config(&backend.tls, &files)?;
            Ok(UpstreamClient::new(backend, config))
        })
    }

    /// The limits of mirrors to `backend`: at most `max` in flight, and
    /// `reading` bytes of bodies being read for them.
    pub(crate) fn limiter(
        &mut self,
        backend: &str,
        max: usize,
        reading: usize,
    ) -> Arc<ShadowLimiter> {
        let reading = reading.min(Semaphore::MAX_PERMITS);
        self.limiters
            .get_or_make((backend.to_owned(), max, reading), || ShadowLimiter {
                mirrors: Arc::new(Semaphore::new(max)),
                reading: Semaphore::new(reading),
            })
    }

    /// The writer and rate of the divergence log `settings` describe.
    pub(crate) fn divergence_log(
        &mut self,
        settings: &veer_config::DivergenceLog,
    ) -> DivergenceLog {
        let path = &settings.path;
        let writer = self
            .log_writers
            .get_or_make(path.clone(), || LogWriter::open(path, settings.max_bytes));
        writer.set_max_bytes(settings.max_bytes);
        let rate = self
            .log_rates
            .get_or_make((path.clone(), settings.per_sec), || {
                LogRate::new(settings.per_sec)
            });
        DivergenceLog { writer, rate }
    }

    /// The series of `route`'s requests to `backend` in `role`.
    pub(crate) fn exchanges(
        &mut self,
        route: &str,
        backend: &str,
        role: Role,
    ) -> Arc<ExchangeSeries> {
        let telemetry = &self.telemetry;
        self.exchanges
            .get_or_make((route.to_owned(), backend.to_owned(), role), || {
                telemetry.exchange_series(route, backend, role)
            })
    }

    /// The series of `route`'s comparisons with its shadow `backend`.
    pub(crate) fn comparisons(&mut self, route: &str, backend: &str) -> Arc<ComparisonSeries> {
        let telemetry = &self.telemetry;
        self.comparisons
            .get_or_make((route.to_owned(), backend.to_owned()), || {
                telemetry.comparison_series(route, backend)
            })
    }

    /// The series of `route`'s noise comparisons on its live `backend`.
    pub(crate) fn noise(&mut self, route: &str, backend: &str) -> Arc<ComparisonSeries> {
        let telemetry = &self.telemetry;
        self.noise
            .get_or_make((route.to_owned(), backend.to_owned()), || {
                telemetry.noise_series(route, backend)
            })
    }

    /// Forgets the keys of every entry no snapshot holds any more.
    pub(crate) fn forget_released(&mut self) {
        self.limiters.forget_released();
        self.log_writers.forget_released();
        self.log_rates.forget_released();
        self.exchanges.forget_released();
        self.comparisons.forget_released();
        self.noise.forget_released();
        self.rollouts.forget_released();
        self.clients.forget_released();
        self.backend_permits.forget_released();
        self.health.forget_released();
    }

    pub(crate) fn size(&self) -> RegistrySize {
        RegistrySize {
            limiters: self.limiters.live(),
            log_writers: self.log_writers.live(),
            log_rates: self.log_rates.live(),
            exchanges: self.exchanges.live(),
            comparisons: self.comparisons.live(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_settings_are_handed_over_and_changed_ones_replaced() {
        let mut shelf: Shelf<(String, usize), Semaphore> = Shelf::default();
        let first = shelf.get_or_make(("v2".into(), 8), || Semaphore::new(8));
        let again = shelf.get_or_make(("v2".into(), 8), || Semaphore::new(8));
        assert!(Arc::ptr_eq(&first, &again));
        let changed = shelf.get_or_make(("v2".into(), 16), || Semaphore::new(16));
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(shelf.live(), 2);
    }

    #[test]
    fn an_entry_nothing_holds_is_released_and_its_key_forgotten() {
        let mut shelf: Shelf<&str, Semaphore> = Shelf::default();
        let held = shelf.get_or_make("a", || Semaphore::new(1));
        drop(shelf.get_or_make("b", || Semaphore::new(1)));
        assert_eq!(shelf.live(), 1);
        shelf.forget_released();
        assert_eq!(shelf.entries.len(), 1);
        // Held elsewhere (a snapshot, a request in flight), it is handed over again.
        let again = shelf.get_or_make("a", || Semaphore::new(1));
        assert!(Arc::ptr_eq(&held, &again));
    }
}
