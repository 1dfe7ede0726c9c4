//! Mirroring a request to its route's shadow backend, and judging the answer.
//!
//! [`prepare`] runs on the live path and never waits on the shadow: it takes an
//! in-flight permit without waiting (none left: the mirror is dropped and counted),
//! buffers the request body up to `shadow.max_body` (larger: the body goes live,
//! streaming, and the mirror is skipped and counted) and builds the copy. The
//! [`Mirror`] then runs as a detached task: it sends the copy at once, reads the
//! shadow's answer, releases its permit, waits for the live answer's capture (sent
//! by the [`Tee`](crate::body::Tee) when the live response ends), and compares.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited as LimitedBody};
use hyper::body::Incoming;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use veer_compare::{Comparison, Outcome};
use veer_config::{BackendId, Route};
use veer_route::{Decision, RouteId};
use veer_telemetry::stats::Divergence;
use veer_telemetry::{
    record_comparison, record_divergence, record_request, ComparisonRecord, InFlight,
    RequestRecord, Role, ShadowOutcome,
};

use crate::body::{read_limited, Limited, LiveCapture, RequestBody};
use crate::divergence::excerpt;
use crate::forward::UpstreamClient;
use crate::{ProxyError, Snapshot, Upstream};

/// `x-veer-shadow: 1` on every mirrored request, so a backend can skip side effects.
pub static VEER_SHADOW: HeaderName = HeaderName::from_static("x-veer-shadow");

/// A mirrored request, ready to run.
pub struct Mirror {
    pair: Pair,
    request: Request<RequestBody>,
    permit: OwnedSemaphorePermit,
    client: UpstreamClient,
}

/// Who a live/shadow pair belongs to, for its metrics and its log line.
struct Pair {
    snapshot: Arc<Snapshot>,
    route: RouteId,
    live_backend: BackendId,
    backend: BackendId,
    request_id: HeaderValue,
}

/// Splits `request` (already rewritten for the live backend) into the live request
/// and, when the shadow can take it, its mirror.
pub async fn prepare(
    snapshot: &Arc<Snapshot>,
    decision: Decision,
    shadow: BackendId,
    request: Request<Incoming>,
    client: &UpstreamClient,
    request_id: &HeaderValue,
) -> Result<(Request<RequestBody>, Option<Mirror>), ProxyError> {
    let route = decision.route;
    let config = snapshot.table.route(route);
    let (Some(resources), Some(settings)) = (snapshot.shadow(route), config.shadow.as_ref()) else {
        return Ok((request.map(RequestBody::Streamed), None));
    };
    let Ok(permit) = resources.limiter.clone().try_acquire_owned() else {
        record_outcome(snapshot, route, shadow, ShadowOutcome::Dropped);
        return Ok((request.map(RequestBody::Streamed), None));
    };
    let (parts, body) = request.into_parts();
    let bytes = match read_limited(body, settings.max_body).await {
        Ok(Limited::Whole(bytes)) => bytes,
        Ok(Limited::Over(body)) => {
            record_outcome(snapshot, route, shadow, ShadowOutcome::Skipped);
            return Ok((Request::from_parts(parts, body), None));
        }
        Err(e) => {
            return Err(ProxyError::ClientBody {
                reason: e.to_string(),
            })
        }
    };
    let mirror = Mirror {
        pair: Pair {
            snapshot: snapshot.clone(),
            route,
            live_backend: decision.backend,
            backend: shadow,
            request_id: request_id.clone(),
        },
        request: copy_for(&parts, snapshot.upstream(shadow), bytes.clone()),
        permit,
        client: client.clone(),
    };
    let live = Request::from_parts(parts, RequestBody::Buffered(Full::new(bytes)));
    Ok((live, Some(mirror)))
}

/// The shadow's copy: same method, path, query, headers (already rewritten for the
/// live backend, so hop-by-hop removed and the request id set) and body, sent to the
/// shadow backend with `x-veer-shadow: 1`.
fn copy_for(live: &http::request::Parts, shadow: &Upstream, body: Bytes) -> Request<RequestBody> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(shadow.scheme.clone());
    uri.authority = Some(shadow.authority.clone());
    uri.path_and_query = live.uri.path_and_query().cloned();
    let mut request = Request::new(RequestBody::Buffered(Full::new(body)));
    *request.method_mut() = live.method.clone();
    *request.uri_mut() = Uri::from_parts(uri).unwrap_or_default();
    *request.version_mut() = live.version;
    *request.headers_mut() = live.headers.clone();
    let headers = request.headers_mut();
    headers.insert(http::header::HOST, shadow.host_header.clone());
    headers.insert(VEER_SHADOW.clone(), HeaderValue::from_static("1"));
    request
}

/// Why there is no shadow answer to compare.
#[derive(Debug, Clone, PartialEq)]
pub enum ShadowFailure {
    /// No complete answer within the backend's timeout.
    Timeout,
    /// Unreachable, reset, or the body broke.
    Failed(String),
    /// Answered, with a body over `compare.max_body`.
    TooLarge,
}

impl Mirror {
    /// Starts the mirror as a detached task; it compares once `live` delivers.
    pub fn spawn(self, live: oneshot::Receiver<LiveCapture>) {
        tokio::spawn(self.run(live));
    }

    async fn run(self, live: oneshot::Receiver<LiveCapture>) {
        let Mirror {
            pair,
            request,
            permit,
            client,
        } = self;
        let in_flight = InFlight::start(Role::Shadow);
        let upstream = pair.snapshot.upstream(pair.backend);
        let route = pair.snapshot.table.route(pair.route);
        let started = Instant::now();
        let exchange = exchange(&client, request, route.compare.max_body);
        let answer = match tokio::time::timeout(upstream.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err((None, ShadowFailure::Timeout)),
        };
        record_request(&RequestRecord {
            route: &route.name,
            backend: &upstream.name,
            role: Role::Shadow,
            status: match &answer {
                Ok((status, _)) => Some(*status),
                Err((status, _)) => *status,
            },
            duration: started.elapsed(),
            request_id: pair.request_id.to_str().unwrap_or("-"),
            upstream: upstream.authority.as_str(),
            bytes: answer.as_ref().ok().map(|(_, body)| body.len() as u64),
        });
        drop((permit, in_flight));
        let live = live.await.unwrap_or_else(|_| {
            LiveCapture::Failed("the live request ended without an answer".to_owned())
        });
        let shadow = answer.map_err(|(_, failure)| failure);
        let (outcome, comparison) = judge(route, &live, &shadow);
        record_comparison(&ComparisonRecord {
            route: &route.name,
            backend: &upstream.name,
            outcome,
            max_abs_deviation: comparison.as_ref().and_then(|c| c.max_abs_deviation),
            label_agreement: comparison.as_ref().and_then(|c| c.label_agreement),
        });
        if let (Some(c), ShadowOutcome::Diverged) = (&comparison, outcome) {
            record_divergence(Divergence {
                unix_time: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
                route: route.name.clone(),
                backend: upstream.name.clone(),
                request_id: String::from_utf8_lossy(pair.request_id.as_bytes()).into_owned(),
                pointers: c.differences.iter().map(|d| d.pointer.clone()).collect(),
                max_abs_deviation: c.max_abs_deviation,
            });
        }
        let log = pair
            .snapshot
            .shadow(pair.route)
            .and_then(|r| r.log.as_ref());
        if let (Some(log), Some(c), ShadowOutcome::Diverged) = (log, &comparison, outcome) {
            let line = divergence_line(&pair, &live, &shadow, c);
            log.submit(&route.name, line);
        }
    }
}

/// Sends the mirror and reads its answer whole (up to `max_body`).
async fn exchange(
    client: &UpstreamClient,
    request: Request<RequestBody>,
    max_body: u64,
) -> Result<(u16, Bytes), (Option<u16>, ShadowFailure)> {
    let response = client
        .request(request)
        .await
        .map_err(|e| (None, ShadowFailure::Failed(crate::forward::root_cause(&e))))?;
    let status = response.status().as_u16();
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    match LimitedBody::new(response.into_body(), limit)
        .collect()
        .await
    {
        Ok(body) => Ok((status, body.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err((Some(status), ShadowFailure::TooLarge))
        }
        Err(e) => Err((Some(status), ShadowFailure::Failed(e.to_string()))),
    }
}

/// The verdict on one mirrored request: the outcome, and the comparison when the two
/// answers could be compared at all.
pub fn judge(
    route: &Route,
    live: &LiveCapture,
    shadow: &Result<(u16, Bytes), ShadowFailure>,
) -> (ShadowOutcome, Option<Comparison>) {
    let (shadow_status, shadow_body) = match shadow {
        Err(ShadowFailure::Timeout) => return (ShadowOutcome::Timeout, None),
        Err(ShadowFailure::Failed(_)) => return (ShadowOutcome::ShadowError, None),
        Err(ShadowFailure::TooLarge) => return (ShadowOutcome::Skipped, None),
        Ok(answer) => answer,
    };
    let (live_status, live_body) = match live {
        LiveCapture::Failed(_) => return (ShadowOutcome::LiveError, None),
        LiveCapture::TooLarge => return (ShadowOutcome::Skipped, None),
        LiveCapture::Complete { status, body } => (*status, body),
    };
    let comparison = veer_compare::compare(
        &route.compare,
        veer_compare::Answer {
            status: live_status,
            body: live_body,
        },
        veer_compare::Answer {
            status: *shadow_status,
            body: shadow_body,
        },
    );
    let outcome = match comparison.outcome {
        Outcome::Match => ShadowOutcome::Match,
        Outcome::Diverged => ShadowOutcome::Diverged,
        Outcome::LiveError(_) => ShadowOutcome::LiveError,
        Outcome::ShadowError(_) => ShadowOutcome::ShadowError,
    };
    (outcome, Some(comparison))
}

fn record_outcome(snapshot: &Snapshot, route: RouteId, backend: BackendId, outcome: ShadowOutcome) {
    record_comparison(&ComparisonRecord {
        route: &snapshot.table.route(route).name,
        backend: &snapshot.upstream(backend).name,
        outcome,
        max_abs_deviation: None,
        label_agreement: None,
    });
}

fn divergence_line(
    mirror: &Pair,
    live: &LiveCapture,
    answer: &Result<(u16, Bytes), ShadowFailure>,
    comparison: &Comparison,
) -> serde_json::Value {
    let snapshot = &mirror.snapshot;
    let (live_status, live_body) = match live {
        LiveCapture::Complete { status, body } => (Some(*status), excerpt(body)),
        _ => (None, String::new()),
    };
    let (shadow_status, shadow_body) = match answer {
        Ok((status, body)) => (Some(*status), excerpt(body)),
        Err(_) => (None, String::new()),
    };
    let differences: Vec<serde_json::Value> = comparison
        .differences
        .iter()
        .map(|d| serde_json::json!({ "pointer": d.pointer, "live": d.live, "shadow": d.shadow }))
        .collect();
    serde_json::json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "request_id": String::from_utf8_lossy(mirror.request_id.as_bytes()),
        "route": snapshot.table.route(mirror.route).name,
        "live_backend": snapshot.upstream(mirror.live_backend).name,
        "shadow_backend": snapshot.upstream(mirror.backend).name,
        "live_status": live_status,
        "shadow_status": shadow_status,
        "max_abs_deviation": comparison.max_abs_deviation,
        "label_agreement": comparison.label_agreement,
        "differences": differences,
        "live_body": live_body,
        "shadow_body": shadow_body,
    })
}
