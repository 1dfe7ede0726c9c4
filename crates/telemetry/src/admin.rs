//! The admin endpoints: the dashboard (`/`, `/stats`, `/divergences/{request_id}`),
//! `/metrics`, `/livez`, `/readyz`, `/config`, `POST /-/reload`, `GET /rollouts` and
//! `POST /rollouts/ROUTE/{pause,resume,promote,abort,retry}`, served on their own
//! address (loopback by default), never on the client port.
//!
//! What they tell about the running proxy comes through [`AdminHooks`], implemented
//! by the binary, so this crate needs nothing of the proxy's; the binary serves
//! [`Admin::handle`] with the proxy's accept loop.
//!
//! Every request passes the access checks of [`crate::access`] (its `Host`, its
//! `Origin`, the token) before any endpoint runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::access::{self, Refusal};
pub use crate::access::{Access, OPEN_PATHS};
use crate::Telemetry;

/// Why a reload did not apply, as the hooks report it.
#[derive(Debug)]
pub enum ReloadFailure {
    /// The file is at fault (invalid, or a change only a restart makes): 422 with
    /// the message.
    Refused(String),
    /// veer is: 500.
    Failed(String),
}

/// A reload that was applied: the generation now serving, and what it loaded with
/// that is probably a mistake (each warning as `file:line:col: warning: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The generation now serving.
    pub generation: u64,
    /// Warnings about the file, and about traffic the reload took away.
    pub warnings: Vec<String>,
}

/// A reload under way: what was applied, or why not.
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<Reloaded, ReloadFailure>> + Send>>;

/// Why a person's rollout command was not carried out, as the hooks report it.
#[derive(Debug)]
pub enum RolloutFailure {
    /// No rollout on that route, or no such command: 404.
    NotFound(String),
    /// The command does not apply to where the rollout stands: 409.
    Refused(String),
    /// veer failed: 500.
    Failed(String),
}

/// A rollout command under way: its decision line, or why not.
pub type RolloutFuture =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, RolloutFailure>> + Send>>;

/// What the admin endpoints need from the running proxy.
pub trait AdminHooks: Send + Sync + 'static {
    /// Exposition text of the series derived from the serving config (generation,
    /// weights, build info), appended to `/metrics`.
    fn gauges(&self) -> String;
    /// The effective config as JSON, for `/config`.
    fn config(&self) -> serde_json::Value;
    /// The dashboard's figures as JSON, for `/stats`.
    fn stats(&self) -> serde_json::Value;
    /// Reloads the routing file as SIGHUP does, through the same serialised path.
    fn reload(&self) -> ReloadFuture;
    /// Who may use the admin endpoints, as the serving generation says: read for
    /// every request, so a reload that changes the token applies to the next one.
    fn access(&self) -> Access;
    /// Every rollout as it stands and the last recorded actions, for `/rollouts`.
    fn rollouts(&self) -> serde_json::Value;
    /// Carries out `command` (`pause`, `resume`, `promote`, `abort`, `retry`) on
    /// `route`'s rollout as a person's action.
    fn rollout_command(&self, route: &str, command: &str) -> RolloutFuture;
}

/// The admin server's state.
pub struct Admin {
    telemetry: Telemetry,
    hooks: Arc<dyn AdminHooks>,
    draining: AtomicBool,
}

/// The built-in dashboard: one self-contained page (no CDN, no build step) that
/// polls `/stats` and `/config`.
const DASHBOARD: &str = include_str!("dashboard.html");

impl Admin {
    /// Admin endpoints over `telemetry` and `hooks`.
    pub fn new(telemetry: Telemetry, hooks: Arc<dyn AdminHooks>) -> Admin {
        Admin {
            telemetry,
            hooks,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on `/readyz` answers 503: the process is draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Answers one admin request: refused as [`crate::access`] decides, or served.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Full<Bytes>> {
        if let Err(refusal) = access::check(&self.hooks.access(), req.uri(), req.headers()) {
            // The code only: a header value may be a secret, and the log would
            // carry whatever a stranger sends.
            tracing::debug!(refusal = refusal.code(), "admin request refused");
            return refused(refusal);
        }
        self.serve(req).await
    }

    /// Answers an admitted request.
    async fn serve<B>(&self, req: Request<B>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut text = self.telemetry.render();
                text.push_str(&self.hooks.gauges());
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text,
                )
            }
            (&Method::GET, "/") => dashboard(),
            (&Method::GET, "/stats") => json(StatusCode::OK, &self.hooks.stats()),
            (&Method::GET, path) if path.starts_with(DIVERGENCES) => {
                self.divergence(&path[DIVERGENCES.len()..])
            }
            (&Method::GET, "/livez") => respond(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/readyz") => {
                if self.draining.load(Ordering::SeqCst) {
                    respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
                } else {
                    respond(StatusCode::OK, "text/plain", "ready\n")
                }
            }
            (&Method::GET, "/config") => json(StatusCode::OK, &self.hooks.config()),
            (&Method::POST, "/-/reload") => match self.hooks.reload().await {
                Ok(reloaded) => json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "generation": reloaded.generation,
                        "warnings": reloaded.warnings,
                    }),
                ),
                Err(ReloadFailure::Refused(message)) => json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({ "error": "reload_rejected", "message": message }),
                ),
                Err(ReloadFailure::Failed(message)) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({ "error": "reload_failed", "message": message }),
                ),
            },
            (&Method::GET, "/rollouts") => json(StatusCode::OK, &self.hooks.rollouts()),
            (&Method::POST, path) if path.starts_with("/rollouts/") => {
                let Some((route, command)) = path["/rollouts/".len()..].split_once('/') else {
                    return not_found(path);
                };
                match self.hooks.rollout_command(route, command).await {
                    Ok(line) => json(StatusCode::OK, &line),
                    Err(RolloutFailure::NotFound(message)) => json(
                        StatusCode::NOT_FOUND,
                        &serde_json::json!({ "error": "no_such_rollout", "message": message }),
                    ),
                    Err(RolloutFailure::Refused(message)) => json(
                        StatusCode::CONFLICT,
                        &serde_json::json!({ "error": "command_refused", "message": message }),
                    ),
                    Err(RolloutFailure::Failed(message)) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({ "error": "command_failed", "message": message }),
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
            (_, path) => not_found(path),
        }
    }
}

/// Where a kept divergent pair's record is answered, by its request id.
const DIVERGENCES: &str = "/divergences/";

impl Admin {
    /// `GET /divergences/{request_id}`: the full record of the newest kept divergent
    /// pair with that id (percent-encoded in the path), as the divergence log writes
    /// it; 404 once it is no longer kept, or never was.
    fn divergence(&self, encoded: &str) -> Response<Full<Bytes>> {
        let Some(request_id) = percent_decode(encoded) else {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": "bad_request_id", "message": "the request id is not validly percent-encoded" }),
            );
        };
        match self.telemetry.divergence_record(&request_id) {
            Some(record) => respond(StatusCode::OK, "application/json", record),
            None => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({
                    "error": "no_such_divergence",
                    "message": format!(
                        "no divergent pair with this request id is kept; veer keeps the last {} listed (at most {} a second per route)",
                        crate::divergences::KEPT_DIVERGENCES,
                        crate::divergences::LISTED_PER_SECOND
                    ),
                }),
            ),
        }
    }
}

/// `%XX` escapes decoded; `None` for a malformed escape. Bytes that are not UTF-8
/// are read as the kept ids were (lossily).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let digits = bytes.get(i + 1..i + 3)?;
            if !digits.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": "not_found", "message": format!("no admin endpoint {path}") }),
    )
}

/// The dashboard's page, never inside a frame: a page of another site framing it
/// could lure the token out of its field.
fn dashboard() -> Response<Full<Bytes>> {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD);
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The JSON answer to a refused request; a 401 names the scheme it wants.
fn refused(refusal: Refusal) -> Response<Full<Bytes>> {
    let mut response = json(
        refusal.status(),
        &serde_json::json!({ "error": refusal.code(), "message": refusal.message() }),
    );
    if refusal == Refusal::Unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_percent_decoded() {
        assert_eq!(percent_decode("r-1").as_deref(), Some("r-1"));
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF").as_deref(), Some("\u{fffd}"));
        for bad in ["%", "%2", "%zz", "%+1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
