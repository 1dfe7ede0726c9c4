//! `veer run`: bind, serve, reload on SIGHUP, drain on SIGTERM/SIGINT.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use veer_config::{defaults, Config, Diagnostic};
use veer_proxy::{server, Proxy, Routes};

/// Loads the routing file and serves it until told to stop.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let loaded = Config::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    log_warnings(&loaded.warnings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(serve(path.to_owned(), loaded.config))
}

async fn serve(path: PathBuf, config: Config) -> anyhow::Result<()> {
    let http = config.listen.http;
    let listener = TcpListener::bind(http)
        .await
        .with_context(|| format!("bind the client listener on {http}"))?;
    let addr = listener.local_addr().context("read the bound address")?;
    let routes = Routes::new(config);
    log_routes(&routes);
    let proxy = std::sync::Arc::new(Proxy::new(routes.clone()));
    let mut hangups = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reload(&path, &routes);
        }
    });
    let shutdown = shutdown_signal()?;
    tracing::info!(%addr, "listening");
    let drained = server::serve(listener, proxy, shutdown, defaults::DRAIN_TIMEOUT).await;
    if drained {
        tracing::info!("drained, exiting");
    } else {
        tracing::warn!(timeout = ?defaults::DRAIN_TIMEOUT, "drain timed out; exiting with requests still in flight");
    }
    Ok(())
}

/// Re-reads, validates and swaps in the routing file; on any error the running
/// routes keep serving.
fn reload(path: &Path, routes: &Routes) {
    let outcome = Config::load(path)
        .map_err(|errors| errors.to_string())
        .and_then(|loaded| {
            log_warnings(&loaded.warnings);
            routes.reload(loaded.config).map_err(|e| e.to_string())
        });
    match outcome {
        Ok(generation) => {
            tracing::info!(generation, "config reloaded");
            log_routes(routes);
        }
        Err(error) => tracing::error!(%error, "config reload rejected"),
    }
}

fn log_routes(routes: &Routes) {
    let snapshot = routes.load();
    let config = snapshot.table.config();
    for route in &config.routes {
        tracing::info!(route = %route.name, strategy = %route.strategy(config), generation = snapshot.generation, "route");
    }
}

fn log_warnings(warnings: &[Diagnostic]) {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
