//! `veer run`: bind, serve, reload on SIGHUP, drain on SIGTERM/SIGINT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use veer_proxy::server::{self, ListenerLimits, Serving};
use veer_proxy::{Proxy, Routes};
use veer_telemetry::admin::Admin;
use veer_telemetry::Telemetry;

use crate::admin::Hooks;

/// How often histogram upkeep runs (the recorder's own default is 5 s too).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Loads the routing file and serves it until SIGTERM or SIGINT, with as many
/// workers as its `[runtime] workers` says, else one per core (a file that does not
/// load is reported by `serve`, with every error). One worker is one event loop on
/// the main thread, as nginx's `worker_processes 1`: no work-stealing scheduler, no
/// wake-ups handed between threads.
pub fn run(path: &Path) -> anyhow::Result<()> {
    let workers = veer_config::Config::load(path)
        .ok()
        .and_then(|loaded| loaded.config.runtime.workers)
        .or_else(|| std::thread::available_parallelism().ok());
    let mut builder = match workers {
        Some(workers) if workers.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = workers {
                builder.worker_threads(workers.get());
            }
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let stop = shutdown_signal()?;
        serve(path, stop, |_| {}).await
    })
}

/// A started veer: where it listens, and the routes it serves.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Client traffic.
    pub http: SocketAddr,
    /// Admin endpoints and the dashboard.
    pub admin: SocketAddr,
    /// The serving routes (their figures, for the demo's summaries).
    pub routes: Routes,
}

/// Serves the routing file at `path` until `stop` resolves, then drains. `bound` is
/// told the listening addresses once both listeners are up.
pub async fn serve(
    path: &Path,
    stop: impl std::future::Future<Output = ()>,
    bound: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let telemetry = Telemetry::new().context("build the metrics recorder")?;
    let routes = Routes::open(path, telemetry.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listen = routes.load().config().listen;
    let listener = server::bind(listen.http)
        .with_context(|| format!("bind the client listener on {}", listen.http))?;
    let admin_listener = server::bind(listen.admin)
        .with_context(|| format!("bind the admin listener on {}", listen.admin))?;
    let https_listener = match listen.https {
        Some(https) => Some(
            server::bind(https).with_context(|| format!("bind the https listener on {https}"))?,
        ),
        None => None,
    };
    tokio::spawn(veer_proxy::drive_rollouts(routes.clone()));
    tokio::spawn({
        let telemetry = telemetry.clone();
        async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                telemetry.run_upkeep();
            }
        }
    });

    let admin = Arc::new(Admin::new(telemetry, Arc::new(Hooks::new(routes.clone()))));
    let (stop_admin, admin_stopped) = watch::channel(false);
    let admin_addr = admin_listener
        .local_addr()
        .context("read the admin address")?;
    let admin_service = {
        let admin = admin.clone();
        move |_peer| {
            let admin = admin.clone();
            service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            })
        }
    };
    let admin_stopped = async move {
        let mut stopped = admin_stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::spawn(server::serve(
        admin_listener,
        admin_service,
        Serving::fixed(ListenerLimits::admin()),
        admin_stopped,
        || Duration::ZERO,
    ));

    // Kept for as long as veer serves: dropping it ends the watch.
    let _watcher = if routes.load().config().watch {
        Some(crate::watch::start(path, routes.clone())?)
    } else {
        None
    };
    let mut hangups = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    tokio::spawn({
        let routes = routes.clone();
        async move {
            while hangups.recv().await.is_some() {
                // Logged and counted by the reload itself; the old routes keep
                // serving when it is refused.
                let _ = routes.reload().await;
            }
        }
    });
    // The client listener waits for `stop`; the https one for the token it cancels.
    let draining = CancellationToken::new();
    let stopped = {
        let (admin, draining) = (admin.clone(), draining.clone());
        async move {
            stop.await;
            admin.set_draining();
            draining.cancel();
        }
    };

    let proxy = Arc::new(Proxy::new(routes.clone()));
    let addr = listener.local_addr().context("read the bound address")?;
    tracing::info!(%addr, "listening");
    let https = match https_listener {
        Some(https_listener) => {
            let https = https_listener
                .local_addr()
                .context("read the https address")?;
            tracing::info!(addr = %https, "https listening");
            let stopped = draining.clone().cancelled_owned();
            let serving = server::serve_proxy(https_listener, proxy.clone(), true, stopped);
            Some((https, tokio::spawn(serving)))
        }
        None => None,
    };
    tracing::info!(addr = %admin_addr, "admin listening");
    bound(Bound {
        http: addr,
        admin: admin_addr,
        routes,
    });
    let mut drained = server::serve_proxy(listener, proxy, false, stopped).await;
    if let Some((_, serving)) = https {
        drained &= serving.await.unwrap_or(false);
    }
    let _ = stop_admin.send(true);
    if drained {
        tracing::info!("drained, exiting");
    } else {
        tracing::warn!("drain timed out; exiting with requests still in flight");
    }
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits the process at once,
/// without waiting for the drain.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting now, without waiting for the drain");
            std::process::exit(0);
        });
    })
}
