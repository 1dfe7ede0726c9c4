//! Mirroring a request to its route's shadow backend, and judging the answer.
//!
//! [`prepare`] runs on the live path and never waits on the shadow:
//! - a saturated shadow (no in-flight permit free) drops the mirror at once, counted,
//!   without buffering anything;
//! - otherwise the request body is buffered up to `shadow.max_body`, for no longer
//!   than the shadow backend's `timeout`; a larger or slower body goes live intact
//!   (what was read, then the rest streaming) and the mirror is skipped, counted.
//!   Bodies being read for one shadow backend's mirrors hold at most
//!   `max_in_flight × max_body` bytes between them; past that the mirror is dropped;
//! - the in-flight permit is taken only once the body is whole, so a client that
//!   stalls its upload never holds one.
//!
//! The [`Mirror`] then runs as a detached task holding its permit until the pair is
//! judged: it sends the copy at once and reads the shadow's answer within the
//! backend's `timeout`; a failed shadow is judged at once; otherwise it waits for the
//! live answer's capture (sent by the [`Tee`](crate::body::Tee) when the live
//! response ends), again for at most `timeout` (past it: `timeout`), and hands the
//! pair to the compare pool. A full pool queue drops the pair, counted. So at most
//! `max_in_flight` pairs' bodies are held per shadow backend, whatever the live side
//! does.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use veer_compare::{Comparison, Outcome};
use veer_config::{BackendId, Compare};
use veer_route::{Decision, RouteId};
use veer_telemetry::{Divergence, Exchange, Judged, ShadowOutcome};

use crate::body::{concat, read_for_mirror, Cut, LiveCapture, MirrorRead, RequestBody};
use crate::divergence;
use crate::forward;
use crate::grpc;
use crate::pool::ComparePool;
use crate::snapshot::{ShadowPlan, Snapshot, Upstream};
use crate::upload::ClientBody;
use crate::upstream::UpstreamClient;
use crate::ProxyError;

/// `x-veer-shadow: 1` on every mirrored request, so a backend can skip side effects.
pub(crate) static VEER_SHADOW: HeaderName = HeaderName::from_static("x-veer-shadow");

/// A mirrored request, ready to run.
pub(crate) struct Mirror {
    pair: Pair,
    request: Request<RequestBody>,
    permit: OwnedSemaphorePermit,
    client: Arc<UpstreamClient>,
}

/// Who a live/shadow pair belongs to, for its metrics and its log line.
struct Pair {
    snapshot: Arc<Snapshot>,
    route: RouteId,
    live_backend: BackendId,
    shadow_backend: BackendId,
    request_id: HeaderValue,
    kind: Mirrored,
    /// The body both sides were sent, kept for a divergent pair's record (the
    /// shadow's pairs, not the noise floor's): which input diverged. The same
    /// buffer the mirror was sent, so keeping it costs no copy.
    request_body: Option<Bytes>,
}

/// What a mirror is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mirrored {
    /// The route's shadow: the new version's answer.
    Shadow,
    /// The noise floor: the live backend's second answer to the same request.
    Noise,
}

impl Pair {
    fn plan(&self) -> Option<&ShadowPlan> {
        let route = self.snapshot.route(self.route);
        match self.kind {
            Mirrored::Shadow => route.shadow.as_ref(),
            Mirrored::Noise => route.noise_plan(self.live_backend),
        }
    }
}

/// Splits `request` (already rewritten for the live backend) into the live request
/// and, when the shadow can take it, its mirror.
pub(crate) async fn prepare(
    snapshot: &Arc<Snapshot>,
    decision: Decision,
    request: Request<ClientBody>,
    request_id: &HeaderValue,
) -> Result<(Request<RequestBody>, Option<Mirror>), ProxyError> {
    let streamed = |request: Request<ClientBody>| Ok((request.map(RequestBody::Streamed), None));
    let route = snapshot.route(decision.route);
    // A request sampled for the noise floor is sent again to its live backend
    // instead of to the shadow: one mirror per request at most.
    let (shadow_backend, plan, kind) = match route.noise_sample(decision.backend) {
        Some(plan) => (decision.backend, plan, Mirrored::Noise),
        None => match (decision.shadow, route.shadow.as_ref()) {
            (Some(backend), Some(plan)) => (backend, plan, Mirrored::Shadow),
            _ => return streamed(request),
        },
    };
    if plan.limiter.mirrors.available_permits() == 0 {
        plan.comparisons
            .record(&Judged::only(ShadowOutcome::Dropped));
        return streamed(request);
    }
    let shadow = snapshot.upstream(shadow_backend);
    let (parts, body) = request.into_parts();
    let read = read_for_mirror(body, plan.max_body, shadow.timeout, &plan.limiter.reading);
    let bytes = match read.await {
        Ok(MirrorRead::Whole(bytes)) => bytes,
        Ok(MirrorRead::Partial { body, cut }) => {
            tracing::debug!(?cut, route = %snapshot.route(decision.route).name, "request body not mirrored");
            let outcome = match cut {
                Cut::NoRoom => ShadowOutcome::Dropped,
                Cut::TooLarge | Cut::TooSlow => ShadowOutcome::Skipped,
            };
            plan.comparisons.record(&Judged::only(outcome));
            return Ok((Request::from_parts(parts, body), None));
        }
        Err(fault) => return Err(ProxyError::ClientBody(fault)),
    };
    let buffered = |bytes| RequestBody::Buffered(Full::new(bytes));
    let Ok(permit) = plan.limiter.mirrors.clone().try_acquire_owned() else {
        // Taken meanwhile by another request.
        plan.comparisons
            .record(&Judged::only(ShadowOutcome::Dropped));
        return Ok((Request::from_parts(parts, buffered(bytes)), None));
    };
    let mirror = Mirror {
        pair: Pair {
            snapshot: snapshot.clone(),
            route: decision.route,
            live_backend: decision.backend,
            shadow_backend,
            request_id: request_id.clone(),
            kind,
            request_body: (kind == Mirrored::Shadow).then(|| bytes.clone()),
        },
        request: copy_for(&parts, shadow, bytes.clone()),
        permit,
        client: shadow.client.clone(),
    };
    Ok((Request::from_parts(parts, buffered(bytes)), Some(mirror)))
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
pub(crate) enum ShadowFailure {
    /// No complete answer within the backend's timeout.
    Timeout,
    /// Unreachable, reset, or the body broke.
    Failed(String),
    /// Answered, with a body over `compare.max_body`.
    TooLarge,
}

impl ShadowFailure {
    fn outcome(&self) -> ShadowOutcome {
        match self {
            ShadowFailure::Timeout => ShadowOutcome::Timeout,
            ShadowFailure::Failed(_) => ShadowOutcome::ShadowError,
            ShadowFailure::TooLarge => ShadowOutcome::Skipped,
        }
    }
}

impl Mirror {
    /// Starts the mirror as a detached task; it is judged on `judges` once `live`
    /// delivers.
    pub(crate) fn spawn(self, live: oneshot::Receiver<LiveCapture>, judges: &ComparePool) {
        tokio::spawn(self.run(live, judges.clone()));
    }

    async fn run(self, live: oneshot::Receiver<LiveCapture>, judges: ComparePool) {
        let Mirror {
            pair,
            request,
            permit,
            client,
        } = self;
        let Some(plan) = pair.plan() else { return };
        let upstream = pair.snapshot.upstream(pair.shadow_backend);
        let compare_limit = pair.snapshot.route(pair.route).compare.max_body;
        let in_flight = plan.exchanges.as_ref().map(|e| e.in_flight());
        let started = Instant::now();
        let answer =
            match tokio::time::timeout(upstream.timeout, exchange(&client, request, compare_limit))
                .await
            {
                Ok(answer) => answer,
                Err(_) => Err((None, ShadowFailure::Timeout)),
            };
        if let Some(exchanges) = &plan.exchanges {
            exchanges.record(&Exchange {
                status: match &answer {
                    Ok((answered, _)) => Some(answered.http),
                    Err((status, _)) => *status,
                },
                started,
                request_id: pair.request_id.to_str().unwrap_or("-"),
                upstream: upstream.authority.as_str(),
                bytes: answer.as_ref().ok().map(|(_, body)| body.len() as u64),
                grpc_status: answer.as_ref().ok().and_then(|(answered, _)| answered.grpc),
            });
        }
        drop(in_flight);
        let shadow = match answer {
            Ok((answered, body)) => (answered.compared(), body),
            // Without a shadow answer the live one does not matter: judged now.
            Err((_, failure)) => return plan.comparisons.record(&Judged::only(failure.outcome())),
        };
        // The permit is still held: the wait for the live answer counts against the
        // shadow's limit, and has the shadow backend's timeout as its deadline.
        let live = match tokio::time::timeout(upstream.timeout, live).await {
            Ok(Ok(capture)) => capture,
            Ok(Err(_)) => LiveCapture::Failed("the live request ended without an answer".into()),
            Err(_) => {
                return plan
                    .comparisons
                    .record(&Judged::only(ShadowOutcome::Timeout))
            }
        };
        let comparisons = plan.comparisons.clone();
        let judgement = Box::new(move || judge_and_record(pair, live, shadow, permit));
        if judges.submit(judgement).is_err() {
            // The pool is behind: the pair is dropped (its permit with it), not queued.
            comparisons.record(&Judged::only(ShadowOutcome::Dropped));
        }
    }
}

/// A shadow answer's status: its HTTP status, and its `grpc-status` for a gRPC call.
#[derive(Debug, Clone, Copy)]
struct Answered {
    http: u16,
    grpc: Option<u16>,
}

impl Answered {
    /// The status the comparison sees: for a gRPC call, its status's HTTP
    /// equivalent, as on the live side.
    fn compared(self) -> u16 {
        self.grpc.map_or(self.http, grpc::http_equivalent)
    }
}

/// Sends the mirror and reads its answer whole (up to `max_body`), into one buffer
/// sized from its length when it declares one.
async fn exchange(
    client: &UpstreamClient,
    request: Request<RequestBody>,
    max_body: u64,
) -> Result<(Answered, Bytes), (Option<u16>, ShadowFailure)> {
    let response = client
        .request(request)
        .await
        .map_err(|e| (None, ShadowFailure::Failed(forward::root_cause(&e))))?;
    let status = response.status().as_u16();
    let is_grpc = grpc::is_grpc(response.headers());
    let mut grpc_status = is_grpc.then(|| grpc::status(response.headers())).flatten();
    let mut body = response.into_body();
    if body.size_hint().lower() > max_body {
        return Err((Some(status), ShadowFailure::TooLarge));
    }
    let expected = body.size_hint().exact().unwrap_or(0);
    let mut whole = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| (Some(status), ShadowFailure::Failed(e.to_string())))?;
        if let Some(trailers) = frame.trailers_ref().filter(|_| is_grpc) {
            grpc_status = Some(grpc::status(trailers).unwrap_or(grpc::UNKNOWN));
        }
        if let Ok(chunk) = frame.into_data() {
            if (whole.len() + chunk.len()) as u64 > max_body {
                return Err((Some(status), ShadowFailure::TooLarge));
            }
            whole.extend_from_slice(&chunk);
        }
    }
    // A gRPC call that ended without a status ended badly.
    let grpc = grpc_status.or(is_grpc.then_some(grpc::UNKNOWN));
    Ok((Answered { http: status, grpc }, whole.freeze()))
}

/// On a compare-pool thread: judges the pair, records the verdict, lists and logs a
/// divergence, lets both answers go, and only then the permit.
fn judge_and_record(
    pair: Pair,
    live: LiveCapture,
    shadow: (u16, Bytes),
    permit: OwnedSemaphorePermit,
) {
    let live = LiveSide::from(live);
    if let Some(plan) = pair.plan() {
        let route = pair.snapshot.route(pair.route);
        // The comparison is pure and tested against any input; should it panic all
        // the same, the pair still gets an outcome and the thread goes on.
        let judged =
            std::panic::catch_unwind(AssertUnwindSafe(|| judge(&route.compare, &live, &shadow)));
        let (outcome, comparison) = judged.unwrap_or_else(|_| {
            tracing::error!(route = %route.name, "a shadow comparison panicked");
            (ShadowOutcome::ShadowError, None)
        });
        // Why a pair could not be judged is said here, and in the divergence log
        // (`log_unjudged`), so a route whose every pair is an error (a `select` that
        // finds nothing, a backend that answers HTML) can be diagnosed.
        if let Some(Outcome::LiveError(reason) | Outcome::ShadowError(reason)) =
            comparison.as_ref().map(|c| &c.outcome)
        {
            tracing::debug!(
                route = %route.name,
                outcome = outcome.label(),
                %reason,
                "a shadow pair could not be judged"
            );
        }
        let shift = comparison.as_ref().map(|c| c.shift).unwrap_or_default();
        plan.comparisons.record(&Judged {
            outcome,
            max_abs_deviation: comparison.as_ref().and_then(|c| c.max_abs_deviation),
            label_agreement: comparison.as_ref().and_then(|c| c.label_agreement),
            shift_up: shift.up,
            shift_down: shift.down,
            numbers: shift.numbers,
        });
        // The noise floor's divergences are the model's own: counted, not listed.
        if let (Some(c), Mirrored::Shadow) = (&comparison, pair.kind) {
            match outcome {
                ShadowOutcome::Diverged => record_divergence(&pair, plan, &live, &shadow, c),
                ShadowOutcome::LiveError | ShadowOutcome::ShadowError => {
                    log_unjudged(&pair, plan, &live, &shadow, c);
                }
                _ => {}
            }
        }
    }
    drop((live, shadow));
    drop(permit);
}

/// The live side of a pair as the comparison reads it: its body in one piece.
enum LiveSide {
    Answered { status: u16, body: Bytes },
    TooLarge,
    Failed(Cow<'static, str>),
}

impl From<LiveCapture> for LiveSide {
    fn from(capture: LiveCapture) -> LiveSide {
        match capture {
            LiveCapture::Complete { status, chunks } => LiveSide::Answered {
                status,
                body: concat(&chunks),
            },
            LiveCapture::TooLarge => LiveSide::TooLarge,
            LiveCapture::Failed(reason) => LiveSide::Failed(reason),
        }
    }
}

/// Writes a pair both sides answered that the comparison could not judge (a
/// `select` that finds nothing, an answer that is not JSON, a 5xx) to the route's
/// log, when it has one, with the outcome and the reason: at most
/// `UNJUDGED_LOGGED_PER_SECOND` a second, asked before the line is made. A side that
/// did not answer is counted only; the dashboard lists divergences only.
fn log_unjudged(
    pair: &Pair,
    plan: &ShadowPlan,
    live: &LiveSide,
    shadow: &(u16, Bytes),
    comparison: &Comparison,
) {
    let Some(log) = &plan.log else {
        return;
    };
    if !matches!(live, LiveSide::Answered { .. }) || !plan.comparisons.logs_unjudged_now() {
        return;
    }
    let line = divergence::line(
        &logged_pair(pair, live, shadow),
        comparison,
        SystemTime::now(),
    );
    log.submit(line, &plan.comparisons);
}

/// A pair as its log line and record describe it, with the request body.
fn logged_pair<'a>(
    pair: &'a Pair,
    live: &'a LiveSide,
    shadow: &'a (u16, Bytes),
) -> divergence::LoggedPair<'a> {
    let snapshot = &pair.snapshot;
    divergence::LoggedPair {
        request_id: pair.request_id.as_bytes(),
        route: &snapshot.route(pair.route).name,
        live_backend: &snapshot.upstream(pair.live_backend).name,
        shadow_backend: &snapshot.upstream(pair.shadow_backend).name,
        request: Some(pair.request_body.as_deref().unwrap_or_default()),
        live: match live {
            LiveSide::Answered { status, body } => Some((*status, &body[..])),
            _ => None,
        },
        shadow: Some((shadow.0, &shadow.1[..])),
    }
}

/// Keeps a divergent pair for the dashboard (when its series lists one more this
/// second) and writes it to the route's log (when it has one): one record, made only
/// when one of them takes it.
fn record_divergence(
    pair: &Pair,
    plan: &ShadowPlan,
    live: &LiveSide,
    shadow: &(u16, Bytes),
    comparison: &Comparison,
) {
    let listed = plan.comparisons.lists_divergence_now();
    if !listed && plan.log.is_none() {
        return;
    }
    let snapshot = &pair.snapshot;
    let now = SystemTime::now();
    let mut divergent = logged_pair(pair, live, shadow);
    let mut record = divergence::line(&divergent, comparison, now);
    // Model inputs go where the operator put them: the divergence log (a 0600 file),
    // and the admin listener's records only when a token guards who may read them.
    let guarded = snapshot.admin_token().is_some();
    if let Some(log) = &plan.log {
        let line = if listed && guarded {
            record.clone()
        } else {
            std::mem::take(&mut record)
        };
        log.submit(line, &plan.comparisons);
    }
    if listed && !guarded {
        divergent.request = None;
        record = divergence::line(&divergent, comparison, now);
    }
    if listed {
        plan.comparisons.record_divergence(Divergence {
            unix_time: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            route: divergent.route.to_owned(),
            shadow_backend: divergent.shadow_backend.to_owned(),
            request_id: String::from_utf8_lossy(pair.request_id.as_bytes()).into_owned(),
            differences: divergence::shown(&comparison.differences),
            max_abs_deviation: comparison.max_abs_deviation,
            label_agreement: comparison.label_agreement,
            record,
        });
    }
}

/// The verdict on one mirrored request whose shadow answered: the outcome, and the
/// comparison when the two answers could be compared at all.
fn judge(
    settings: &Compare,
    live: &LiveSide,
    shadow: &(u16, Bytes),
) -> (ShadowOutcome, Option<Comparison>) {
    let (live_status, live_body) = match live {
        LiveSide::Failed(reason) => {
            tracing::debug!(%reason, "no live answer to compare with");
            return (ShadowOutcome::LiveError, None);
        }
        LiveSide::TooLarge => return (ShadowOutcome::Skipped, None),
        LiveSide::Answered { status, body } => (*status, body),
    };
    let comparison = veer_compare::compare(
        settings,
        veer_compare::Answer {
            status: live_status,
            body: live_body,
        },
        veer_compare::Answer {
            status: shadow.0,
            body: &shadow.1,
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
