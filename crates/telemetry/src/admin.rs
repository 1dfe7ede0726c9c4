//! The admin listener: the dashboard (`/`, `/stats`), `/metrics`, `/livez`, `/readyz`,
//! `/config` and `POST /-/reload`,
//! on its own address (loopback by default), never on the client port.
//!
//! What it serves about the running proxy comes through [`AdminHooks`], implemented by
//! the binary, so this crate needs nothing of the proxy's.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// What the admin endpoints need from the running proxy.
pub trait AdminHooks: Send + Sync + 'static {
    /// Exposition text of the series derived from the serving config (generation,
    /// weights, build info), appended to `/metrics`.
    fn gauges(&self) -> String;
    /// The effective config as JSON, for `/config`.
    fn config(&self) -> serde_json::Value;
    /// Reloads the routing file as SIGHUP does: the new generation, or why not.
    fn reload(&self) -> Result<u64, String>;
}

/// The admin server's state.
pub struct Admin {
    metrics: PrometheusHandle,
    hooks: Arc<dyn AdminHooks>,
    draining: AtomicBool,
}

/// The built-in dashboard: one self-contained page (no CDN, no build step) that
/// polls `/stats` and `/config`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// After a failed accept, wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

impl Admin {
    /// Admin endpoints over `metrics` and `hooks`.
    pub fn new(metrics: PrometheusHandle, hooks: Arc<dyn AdminHooks>) -> Admin {
        Admin {
            metrics,
            hooks,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on `/readyz` answers 503: the process is draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Answers one admin request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut text = self.metrics.render();
                text.push_str(&self.hooks.gauges());
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text,
                )
            }
            (&Method::GET, "/") => respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD),
            (&Method::GET, "/stats") => json(StatusCode::OK, &crate::stats::global().snapshot()),
            (&Method::GET, "/livez") => respond(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/readyz") => {
                if self.draining.load(Ordering::SeqCst) {
                    respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
                } else {
                    respond(StatusCode::OK, "text/plain", "ready\n")
                }
            }
            (&Method::GET, "/config") => json(StatusCode::OK, &self.hooks.config()),
            (&Method::POST, "/-/reload") => {
                let hooks = self.hooks.clone();
                let outcome = tokio::task::spawn_blocking(move || hooks.reload()).await;
                match outcome {
                    Ok(Ok(generation)) => json(
                        StatusCode::OK,
                        &serde_json::json!({ "generation": generation }),
                    ),
                    Ok(Err(error)) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &serde_json::json!({ "error": "reload_rejected", "message": error }),
                    ),
                    Err(e) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({ "error": "reload_failed", "message": e.to_string() }),
                    ),
                }
            }
            (_, "/-/reload") => {
                let mut response = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &serde_json::json!({ "error": "method_not_allowed", "message": "reload with POST" }),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                response
            }
            (_, path) => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "not_found", "message": format!("no admin endpoint {path}") }),
            ),
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", body.to_string())
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let admin = admin.clone();
                    let service = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { Ok::<_, Infallible>(admin.handle(req).await) }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "admin connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
}
