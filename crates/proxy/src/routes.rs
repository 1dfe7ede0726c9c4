//! The routes every connection serves from: the current [`Snapshot`] behind one
//! [`ArcSwap`], and the one serialised path that replaces it.
//!
//! Every reload trigger (SIGHUP, `POST /-/reload`, and later the file watch) comes
//! through [`Routes::reload`]: it takes the reload lock, reads the routing file once,
//! validates, hashes and compiles those same bytes off the async workers, swaps the
//! new snapshot in with the generation one above the running one, and lets the
//! registry forget what nothing uses any more. Two triggers at once are two reloads
//! in a row, never two "generation N+1".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use veer_config::{Config, Diagnostic, Diagnostics, Listen, Live, Loaded};
use veer_telemetry::Telemetry;

use crate::registry::{Registry, RegistrySize};
use crate::rollout::DecisionBook;
use crate::snapshot::{Snapshot, Source, UnusableFile};

/// The current snapshot and what replaces it, shared by every connection.
#[derive(Clone)]
pub struct Routes {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Snapshot>,
    /// The routing file every reload reads.
    path: PathBuf,
    /// The reload lock: one reload at a time, and the only way to the registry.
    reload: Mutex<Registry>,
    telemetry: Telemetry,
    /// Where rollout decisions are recorded.
    decisions: DecisionBook,
    /// `[runtime]` as the first load had it: the runtime veer actually runs on.
    runtime_at_start: veer_config::Runtime,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("path", &self.shared.path)
            .field("generation", &self.load().generation())
            .finish_non_exhaustive()
    }
}

/// Why a reload was refused; the running snapshot keeps serving either way.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read, or did not validate: every finding, each with
    /// `file:line:col`.
    #[error(transparent)]
    InvalidConfig(#[from] Diagnostics),
    /// The file is valid, but asks for a change a reload cannot make.
    #[error(transparent)]
    RejectedChange(#[from] RejectedChange),
    /// A file the config names (certificate, key, token) cannot be used.
    #[error(transparent)]
    Unusable(#[from] UnusableFile),
    /// The reload itself failed (it panicked): a bug, not the file's fault. Nothing
    /// was swapped.
    #[error("the reload did not finish")]
    Interrupted(#[source] tokio::task::JoinError),
}

impl ReloadError {
    /// True when the file is at fault (invalid, or a change only a restart makes),
    /// false when veer is.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ReloadError::Interrupted(_))
    }
}

/// A change to a valid file that only a restart can make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectedChange {
    /// Listeners are bound once.
    #[error("listen.{which} changed from {from} to {to}; listeners change only on restart, so the whole reload was rejected")]
    ListenChanged {
        /// `http`, `https` or `admin`.
        which: &'static str,
        /// The running address (or "none").
        from: String,
        /// The address in the new file (or "none").
        to: String,
    },
}

/// A reload that was applied.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The generation now serving.
    pub generation: u64,
    /// What the file loaded with that is probably a mistake.
    pub warnings: Vec<Diagnostic>,
}

impl Routes {
    /// Loads the routing file at `path` as generation 1, recording into `telemetry`.
    pub fn open(path: &Path, telemetry: Telemetry) -> Result<Routes, ReloadError> {
        let started = Instant::now();
        let (loaded, source) = read(path)?;
        let mut registry = Registry::new(telemetry.clone());
        let runtime_at_start = loaded.config.runtime;
        let first = Snapshot::compile(loaded.config, source, 1, &mut registry)?;
        let took = started.elapsed();
        telemetry.record_reload(true, took);
        log_applied("config loaded", &first, &loaded.warnings, took);
        Ok(Routes {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(first),
                path: path.to_owned(),
                reload: Mutex::new(registry),
                decisions: DecisionBook::new(telemetry.clone()),
                telemetry,
                runtime_at_start,
            }),
        })
    }

    /// The snapshot to serve one request with.
    pub fn load(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// What requests and comparisons record into.
    pub fn telemetry(&self) -> &Telemetry {
        &self.shared.telemetry
    }

    /// Re-reads the routing file and swaps it in as the next generation, unless it
    /// is invalid or moves a listener. Runs on a blocking thread, one reload at a
    /// time; requests in flight finish on the snapshot they loaded. Logged and
    /// counted either way.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let routes = self.clone();
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || routes.reload_serialised()).await {
            Ok(outcome) => outcome,
            Err(panicked) => {
                let error = ReloadError::Interrupted(panicked);
                self.shared
                    .telemetry
                    .record_reload(false, started.elapsed());
                tracing::error!(%error, "config reload failed");
                Err(error)
            }
        }
    }

    fn reload_serialised(&self) -> Result<Reloaded, ReloadError> {
        let mut registry = self
            .shared
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let outcome = self.swap_in(&mut registry);
        let took = started.elapsed();
        // The new generation serves: letting go of the one it replaced (freed now
        // unless a request still holds it) and of what only that one used is
        // cleanup, no part of the reload's time.
        let outcome = outcome.map(|(reloaded, replaced)| {
            drop(replaced);
            registry.forget_released();
            reloaded
        });
        drop(registry);
        self.shared.telemetry.record_reload(outcome.is_ok(), took);
        match &outcome {
            Ok(reloaded) => log_applied("config reloaded", &self.load(), &reloaded.warnings, took),
            Err(error) => tracing::error!(%error, "config reload rejected"),
        }
        outcome
    }

    /// Reads, validates, compiles and swaps; the caller holds the reload lock. Hands
    /// back the generation it replaced, for the caller to let go of (and then of the
    /// registry entries only it used).
    fn swap_in(&self, registry: &mut Registry) -> Result<(Reloaded, Arc<Snapshot>), ReloadError> {
        let (loaded, source) = read(&self.shared.path)?;
        let running = self.shared.current.load_full();
        unchanged_listeners(running.config().listen, loaded.config.listen)?;
        let generation = running.generation() + 1;
        let mut warnings = loaded.warnings;
        warnings.extend(
            running
                .traffic_taken_by(&loaded.config)
                .into_iter()
                .map(|taken| Diagnostic::warning_about(&source.file, taken)),
        );
        let (was, now) = (self.shared.runtime_at_start, loaded.config.runtime);
        if was != now {
            warnings.push(Diagnostic::warning_about(
                &source.file,
                format!(
                    "runtime.workers is {} in the file but veer runs on {}; the runtime is built at start, so it takes effect on restart",
                    describe_workers(now),
                    describe_workers(was)
                ),
            ));
        }
        drop(running);
        let next = Snapshot::compile(loaded.config, source, generation, registry)?;
        let replaced = self.shared.current.swap(Arc::new(next));
        Ok((
            Reloaded {
                generation,
                warnings,
            },
            replaced,
        ))
    }

    /// Swaps in the serving snapshot with its rollouts' weights as they stand now,
    /// under the reload lock, so a reload under way is never overwritten by an older
    /// generation.
    pub(crate) fn reweigh(&self) {
        let _registry = self
            .shared
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = self.load().reweighed();
        self.shared.current.store(Arc::new(next));
    }

    /// Where rollout decisions are recorded.
    pub(crate) fn decisions(&self) -> &DecisionBook {
        &self.shared.decisions
    }

    /// The dashboard's figures for the serving routes.
    pub fn stats(&self) -> serde_json::Value {
        let snapshot = self.load();
        self.shared.telemetry.stats(
            snapshot.exchange_series(),
            snapshot.comparison_series(),
            &snapshot.budgets(),
        )
    }

    /// How many registry entries are alive (waits for a reload under way).
    pub fn registry_size(&self) -> RegistrySize {
        self.shared
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size()
    }
}

/// Reads the routing file once; validation and the checksum both use those bytes.
fn read(path: &Path) -> Result<(Loaded, Source), ReloadError> {
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::whole_file(
            &path.display().to_string(),
            format!("cannot read the routing file: {e}"),
        )])
    })?;
    let loaded = Config::from_file_bytes(path, &bytes)?;
    let source = Source {
        file: path.display().to_string(),
        sha256: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        loaded_at: SystemTime::now(),
    };
    Ok((loaded, source))
}

/// `[runtime] workers` as a person would say it.
fn describe_workers(runtime: veer_config::Runtime) -> String {
    runtime
        .workers
        .map_or_else(|| "one per core".to_owned(), |n| n.to_string())
}

fn unchanged_listeners(running: Listen, next: Listen) -> Result<(), RejectedChange> {
    let shown = |a: Option<std::net::SocketAddr>| a.map_or("none".to_owned(), |a| a.to_string());
    for (which, from, to) in [
        ("http", Some(running.http), Some(next.http)),
        ("https", running.https, next.https),
        ("admin", Some(running.admin), Some(next.admin)),
    ] {
        if from != to {
            return Err(RejectedChange::ListenChanged {
                which,
                from: shown(from),
                to: shown(to),
            });
        }
    }
    Ok(())
}

/// One line for a config put in service, however many routes it has (`message` is
/// "config loaded" or "config reloaded"), and one for all its warnings, if any.
fn log_applied(message: &str, snapshot: &Snapshot, warnings: &[Diagnostic], took: Duration) {
    tracing::info!(
        generation = snapshot.generation(),
        routes = snapshot.config().routes.len(),
        strategies = %summary(snapshot.config()),
        warnings = warnings.len(),
        took_ms = took.as_secs_f64() * 1000.0,
        "{message}"
    );
    if !warnings.is_empty() {
        let all: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        tracing::warn!(count = warnings.len(), "{}", all.join("\n"));
    }
}

/// What the routes come to, in one phrase for the reload log line
/// ("3 basic, 1 canary, 2 shadowed"), however many routes there are.
fn summary(config: &Config) -> String {
    let (mut basic, mut canary, mut shadowed) = (0, 0, 0);
    for route in &config.routes {
        let strategy = route.strategy(config);
        match strategy.live {
            Live::Basic { .. } => basic += 1,
            Live::Canary { .. } => canary += 1,
        }
        shadowed += usize::from(strategy.shadow.is_some());
    }
    format!("{basic} basic, {canary} canary, {shadowed} shadowed")
}
