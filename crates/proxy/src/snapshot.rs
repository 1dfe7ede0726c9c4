//! One config generation, swapped whole: routes, splits and upstreams together.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use http::HeaderValue;
use tokio::sync::Semaphore;
use veer_config::{Backend, BackendId, Config};
use veer_route::{RouteId, RouteTable};

use crate::divergence::DivergenceLog;

/// Where a config came from, for `/config` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The routing file as named on the command line.
    pub file: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            file: String::new(),
            sha256: String::new(),
            loaded_at: SystemTime::UNIX_EPOCH,
        }
    }
}

/// Everything a request needs from the config, as of one generation. Requests hold
/// an `Arc<Snapshot>` from arrival to end, so weights and backends can never be
/// seen half-updated.
#[derive(Debug)]
pub struct Snapshot {
    /// 1 for the config veer started with, +1 per successful reload.
    pub generation: u64,
    /// Where this generation's config came from.
    pub source: Source,
    /// The compiled routes.
    pub table: RouteTable,
    /// Forwarding details per backend, indexed like `table.config().backends`.
    pub upstreams: Vec<Upstream>,
    /// Per route: what its shadow needs at run time, if it has one.
    shadows: Vec<Option<ShadowResources>>,
    /// Shadow in-flight limits by backend name, handed on to the next generation.
    limiters: HashMap<String, (usize, Arc<Semaphore>)>,
    /// Divergence logs by path, handed on to the next generation.
    logs: HashMap<PathBuf, Arc<DivergenceLog>>,
}

/// The run-time parts of a route's shadow, shared across generations: mirrors still
/// in flight from the previous config count against the same limit, and a log file
/// keeps its writer (and its rotation state) across reloads.
#[derive(Debug, Clone)]
pub struct ShadowResources {
    /// Permits for mirrors in flight to the shadow backend.
    pub limiter: Arc<Semaphore>,
    /// Where divergent pairs go, if anywhere.
    pub log: Option<Arc<DivergenceLog>>,
}

/// A backend as the forwarder needs it, prepared once per generation.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Config name, for logs and errors.
    pub name: String,
    /// The name as a ready `x-veer-backend` header value.
    pub name_header: HeaderValue,
    /// `http`.
    pub scheme: Scheme,
    /// `host:port` requests are sent to.
    pub authority: Authority,
    /// The authority as a ready `Host` header value.
    pub host_header: HeaderValue,
    /// Budget for the upstream exchange.
    pub timeout: Duration,
}

impl Snapshot {
    /// Compiles `config` as generation `generation`, taking over the shadow limits
    /// and divergence logs of `previous` that the new config still uses.
    pub fn new(
        config: Config,
        source: Source,
        generation: u64,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let upstreams = config.backends.iter().map(Upstream::new).collect();
        // One limit per shadow backend; where routes disagree the smallest applies.
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for shadow in config.routes.iter().filter_map(|r| r.shadow.as_ref()) {
            let name = config.backend(shadow.backend).name.clone();
            let max = wanted.entry(name).or_insert(shadow.max_in_flight);
            *max = (*max).min(shadow.max_in_flight);
        }
        let limiters: HashMap<String, (usize, Arc<Semaphore>)> = wanted
            .into_iter()
            .map(|(name, max)| {
                let kept = previous
                    .and_then(|p| p.limiters.get(&name))
                    .filter(|(old_max, _)| *old_max == max)
                    .map(|(_, s)| s.clone());
                let limiter = kept.unwrap_or_else(|| Arc::new(Semaphore::new(max)));
                (name, (max, limiter))
            })
            .collect();
        let mut logs: HashMap<PathBuf, Arc<DivergenceLog>> = HashMap::new();
        let shadows = config
            .routes
            .iter()
            .map(|route| {
                let shadow = route.shadow.as_ref()?;
                let (_, limiter) = limiters.get(&config.backend(shadow.backend).name)?;
                let log = shadow.divergence_log.as_ref().map(|c| {
                    logs.entry(c.path.clone())
                        .or_insert_with(|| {
                            previous
                                .and_then(|p| p.logs.get(&c.path).cloned())
                                .unwrap_or_else(|| Arc::new(DivergenceLog::open(c)))
                        })
                        .clone()
                });
                Some(ShadowResources {
                    limiter: limiter.clone(),
                    log,
                })
            })
            .collect();
        Snapshot {
            generation,
            source,
            table: RouteTable::new(config),
            upstreams,
            shadows,
            limiters,
            logs,
        }
    }

    /// The run-time parts of a route's shadow.
    pub fn shadow(&self, route: RouteId) -> Option<&ShadowResources> {
        self.shadows.get(route.0)?.as_ref()
    }

    /// The upstream behind a backend id of this snapshot.
    pub fn upstream(&self, id: BackendId) -> &Upstream {
        &self.upstreams[id.0]
    }
}

impl Upstream {
    fn new(backend: &Backend) -> Upstream {
        // Validation guarantees a header-safe name and an http URL with an authority;
        // the fallbacks only keep this function total.
        let authority = backend
            .url
            .authority()
            .cloned()
            .unwrap_or(Authority::from_static("invalid"));
        Upstream {
            name: backend.name.clone(),
            name_header: HeaderValue::from_str(&backend.name)
                .unwrap_or(HeaderValue::from_static("invalid")),
            scheme: backend.url.scheme().cloned().unwrap_or(Scheme::HTTP),
            host_header: HeaderValue::from_str(authority.as_str())
                .unwrap_or(HeaderValue::from_static("invalid")),
            authority,
            timeout: backend.timeout,
        }
    }
}

/// Why a reload was refused; the running snapshot keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// Listeners are bound once; a new address needs a restart.
    #[error("listen.{which} changed from {from} to {to}; listeners change only on restart, so the whole reload was rejected")]
    ListenChanged {
        /// `http` or `admin`.
        which: &'static str,
        /// The running address.
        from: std::net::SocketAddr,
        /// The address in the new file.
        to: std::net::SocketAddr,
    },
}

/// The current snapshot behind one [`ArcSwap`], shared by every connection.
#[derive(Debug, Clone)]
pub struct Routes {
    current: Arc<ArcSwap<Snapshot>>,
}

impl Routes {
    /// Serves `config` (from `source`) as generation 1.
    pub fn new(config: Config, source: Source) -> Routes {
        let first = Snapshot::new(config, source, 1, None);
        Routes {
            current: Arc::new(ArcSwap::from_pointee(first)),
        }
    }

    /// The snapshot to serve one request with.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in `config` as the next generation, unless it moves a listener. Requests
    /// already in flight finish on the snapshot they loaded.
    pub fn reload(&self, config: Config, source: Source) -> Result<u64, ReloadError> {
        let running = self.current.load();
        let (old, new) = (running.table.config().listen, config.listen);
        for (which, from, to) in [
            ("http", old.http, new.http),
            ("admin", old.admin, new.admin),
        ] {
            if from != to {
                return Err(ReloadError::ListenChanged { which, from, to });
            }
        }
        // Reloads come one at a time (the signal loop), so generation+1 is not raced.
        let generation = running.generation + 1;
        let next = Snapshot::new(config, source, generation, Some(&running));
        self.current.store(Arc::new(next));
        Ok(generation)
    }
}
