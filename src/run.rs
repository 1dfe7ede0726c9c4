//! `veer run`: bind, serve, reload on SIGHUP, drain on SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use veer_config::defaults;
use veer_proxy::{server, Proxy, Routes};
use veer_telemetry::admin::{self, Admin};

use crate::admin::Hooks;
use crate::reload::{self, Reloader};

/// Loads the routing file and serves it until SIGTERM or SIGINT.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let stop = shutdown_signal()?;
        serve(path, stop, |_| {}).await
    })
}

/// Where a started veer listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Client traffic.
    pub http: std::net::SocketAddr,
    /// Admin endpoints and the dashboard.
    pub admin: std::net::SocketAddr,
}

/// Serves the routing file at `path` until `stop` resolves, then drains. `bound` is
/// told the listening addresses once both listeners are up.
pub async fn serve(
    path: &Path,
    stop: impl std::future::Future<Output = ()>,
    bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let (loaded, source) = reload::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    reload::log_warnings(&loaded.warnings);
    let (config, path) = (loaded.config, path.to_owned());
    let metrics = veer_telemetry::exporter::install().context("install the metrics recorder")?;
    veer_telemetry::exporter::spawn_upkeep(metrics.clone());
    veer_telemetry::record_reload(true);

    let (http, admin_addr) = (config.listen.http, config.listen.admin);
    let listener = TcpListener::bind(http)
        .await
        .with_context(|| format!("bind the client listener on {http}"))?;
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("bind the admin listener on {admin_addr}"))?;
    let routes = Routes::new(config, source);
    reload::log_routes(&routes);
    let reloader = Reloader::new(path, routes.clone());

    let admin = Arc::new(Admin::new(
        metrics,
        Arc::new(Hooks::new(routes.clone(), reloader.clone())),
    ));
    let (stop_admin, admin_stopped) = watch::channel(false);
    let admin_addr = admin_listener
        .local_addr()
        .context("read the admin address")?;
    tokio::spawn(admin::serve(admin_listener, admin.clone(), async move {
        let mut stopped = admin_stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    }));

    let mut hangups = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // Reading a small file: brief enough to do on the signal task.
            let _ = reloader.reload();
        }
    });
    let draining = {
        let admin = admin.clone();
        async move {
            stop.await;
            admin.set_draining();
        }
    };

    let proxy = Arc::new(Proxy::new(routes));
    let addr = listener.local_addr().context("read the bound address")?;
    tracing::info!(%addr, "listening");
    tracing::info!(addr = %admin_addr, "admin listening");
    bound(Bound {
        http: addr,
        admin: admin_addr,
    });
    let drained = server::serve(listener, proxy, draining, defaults::DRAIN_TIMEOUT).await;
    let _ = stop_admin.send(true);
    if drained {
        tracing::info!("drained, exiting");
    } else {
        tracing::warn!(timeout = ?defaults::DRAIN_TIMEOUT, "drain timed out; exiting with requests still in flight");
    }
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
