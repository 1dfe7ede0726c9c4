//! Loading the routing file into the running proxy: at start, on SIGHUP and on
//! `POST /-/reload`, all the same way.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use veer_config::{Config, Diagnostic, Loaded};
use veer_proxy::{Routes, Source};

/// Reads and validates the routing file, with where it came from.
pub fn load(path: &Path) -> Result<(Loaded, Source), String> {
    let loaded = Config::load(path).map_err(|errors| errors.to_string())?;
    // The bytes validated above; a read error now only blanks the checksum.
    let sha256 = std::fs::read(path)
        .map(|bytes| {
            Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default();
    let source = Source {
        file: path.display().to_string(),
        sha256,
        loaded_at: SystemTime::now(),
    };
    Ok((loaded, source))
}

/// The file a running veer reloads from.
#[derive(Debug, Clone)]
pub struct Reloader {
    path: PathBuf,
    routes: Routes,
}

impl Reloader {
    /// Reloads `routes` from `path`.
    pub fn new(path: PathBuf, routes: Routes) -> Reloader {
        Reloader { path, routes }
    }

    /// Re-reads, validates and swaps in the routing file; on any error the running
    /// routes keep serving. Logged and counted either way.
    pub fn reload(&self) -> Result<u64, String> {
        let outcome = load(&self.path).and_then(|(loaded, source)| {
            log_warnings(&loaded.warnings);
            self.routes
                .reload(loaded.config, source)
                .map_err(|e| e.to_string())
        });
        veer_telemetry::record_reload(outcome.is_ok());
        match &outcome {
            Ok(generation) => {
                tracing::info!(generation, "config reloaded");
                log_routes(&self.routes);
                forget_removed(&self.routes);
            }
            Err(error) => tracing::error!(%error, "config reload rejected"),
        }
        outcome
    }
}

/// Drops the dashboard's figures for routes and backends the new config no longer has.
fn forget_removed(routes: &Routes) {
    let snapshot = routes.load();
    let config = snapshot.table.config();
    veer_telemetry::stats::global().retain(|route, backend| {
        config.routes.iter().any(|r| r.name == route)
            && config.backends.iter().any(|b| b.name == backend)
    });
}

/// Logs each route's strategy as now served.
pub fn log_routes(routes: &Routes) {
    let snapshot = routes.load();
    let config = snapshot.table.config();
    for route in &config.routes {
        tracing::info!(route = %route.name, strategy = %route.strategy(config), generation = snapshot.generation, "route");
    }
}

/// Logs the warnings a loaded file came with.
pub fn log_warnings(warnings: &[Diagnostic]) {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}
