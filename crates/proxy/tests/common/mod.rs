//! Shared by the proxy's integration tests: the proxy in-process on a loopback port,
//! and the Prometheus recorder its metrics go to.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use veer_config::Config;
use veer_proxy::{server, Proxy, Routes, Source};
use veer_testkit::TestClient;

/// A proxy serving `config` on a fresh loopback port; stops when dropped.
pub struct Harness {
    pub client: TestClient,
    pub routes: Routes,
    pub addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub async fn start(config: &str) -> Harness {
    let loaded = Config::from_toml("test.toml", config).expect("test config is valid");
    let routes = Routes::new(loaded.config, Source::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy = std::sync::Arc::new(Proxy::new(routes.clone()));
    tokio::spawn(server::serve(
        listener,
        proxy,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    Harness {
        client: TestClient::new(addr),
        routes,
        addr,
        _stop: stop,
    }
}

/// The process-wide recorder (tests in one binary share it: give each test its own
/// route names).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder once per test binary")
    })
}

/// The value of the series `name` whose labels include all of `labels` (0 when
/// absent).
pub fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = metrics().render();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Waits (bounded) until `metric(name, labels)` reaches `at_least`; returns its value.
pub async fn metric_reaches(name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = metric(name, labels);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
