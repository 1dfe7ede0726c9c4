//! Shared by the proxy's integration tests: the proxy in-process on a loopback port,
//! serving a routing file of the test's own, recording into telemetry of its own
//! (so tests may share route names).

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use veer_proxy::{server, Proxy, ReloadError, Reloaded, Routes};
use veer_telemetry::Telemetry;
use veer_testkit::TestClient;

/// A proxy serving a routing file on a fresh loopback port; stops (and removes the
/// file) when dropped.
pub struct Harness {
    pub client: TestClient,
    pub routes: Routes,
    pub addr: std::net::SocketAddr,
    /// The HTTPS listener, when the config has `[tls]`.
    pub https: Option<std::net::SocketAddr>,
    pub config_path: PathBuf,
    _stop: oneshot::Sender<()>,
    _stop_https: oneshot::Sender<()>,
}

/// A fresh file name in the temp folder for this test process.
pub fn temp_path(stem: &str, extension: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "veer-{stem}-{}-{}.{extension}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ))
}

/// A routing file with one route `name` on `/NAME/` serving `live` (timeout 5 s),
/// mirroring to `shadow` (timeout `shadow_timeout`) with `extra` lines added to its
/// `[routes.shadow]`, and numbers compared within 0.01.
pub fn shadowed(name: &str, live: &str, shadow: &str, shadow_timeout: &str, extra: &str) -> String {
    format!(
        r#"
[backends.live]
url = "{live}"
timeout = "5s"

[backends.shadow]
url = "{shadow}"
timeout = "{shadow_timeout}"

[[routes]]
name = "{name}"
match = {{ path_prefix = "/{name}/" }}
split = [ {{ backend = "live", weight = 1 }} ]

[routes.shadow]
backend = "shadow"
{extra}

[routes.compare]
abs_tolerance = 0.01
"#
    )
}

pub async fn start(config: &str) -> Harness {
    let config_path = temp_path("proxy-test", "toml");
    std::fs::write(&config_path, config).expect("write the routing file");
    let telemetry = Telemetry::new().expect("a recorder");
    let routes = Routes::open(&config_path, telemetry).expect("test config is valid");
    let listener = server::bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy = std::sync::Arc::new(Proxy::new(routes.clone()));
    let (stop_https, https_stopped) = oneshot::channel::<()>();
    let https = if routes.load().config().tls.is_some() {
        let listener = server::bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let https = listener.local_addr().expect("addr");
        tokio::spawn(server::serve_proxy(
            listener,
            proxy.clone(),
            true,
            async move {
                let _ = https_stopped.await;
            },
        ));
        Some(https)
    } else {
        None
    };
    tokio::spawn(server::serve_proxy(listener, proxy, false, async move {
        let _ = stopped.await;
    }));
    Harness {
        client: TestClient::new(addr),
        routes,
        addr,
        https,
        config_path,
        _stop: stop,
        _stop_https: stop_https,
    }
}

impl Harness {
    /// Rewrites the routing file and reloads it, as SIGHUP does.
    pub async fn reload(&self, config: &str) -> Result<Reloaded, ReloadError> {
        std::fs::write(&self.config_path, config).expect("rewrite the routing file");
        self.routes.reload().await
    }

    /// The value of the series `name` whose labels include all of `labels`, summed
    /// (0 when absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        veer_testkit::metric_value(&self.routes.telemetry().render(), name, labels)
    }

    /// Waits (bounded) until `metric(name, labels)` reaches `at_least`; returns its
    /// value.
    pub async fn metric_reaches(&self, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
        self.metric_until(name, labels, |value| value >= at_least)
            .await
    }

    /// Waits (bounded) until `metric(name, labels)` falls to `at_most`; returns its
    /// value.
    pub async fn metric_falls_to(&self, name: &str, labels: &[(&str, &str)], at_most: f64) -> f64 {
        self.metric_until(name, labels, |value| value <= at_most)
            .await
    }

    /// Waits (up to 20 s) until `metric(name, labels)` is `done`; returns its value.
    async fn metric_until(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        done: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.metric(name, labels);
            if done(value) || Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// A temp file's name alone: routing files sit in the same temp folder, and the
/// files veer writes must be named relative to it.
pub fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A backend of raw bytes: every connection is read once, answered with `answer`
/// whatever was asked, then closed, or held open for 30 s when `hold` (a backend
/// that stalls after what it wrote).
pub async fn raw_backend(answer: &'static [u8], hold: bool) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream.write_all(answer).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}
