//! The request handler: a request's story from arrival to answer, one phase a call.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::{Body, Incoming};
use tokio::sync::oneshot;
use veer_config::BackendId;
use veer_route::RequestHead;
use veer_telemetry::{Exchange, Role};

use crate::body::{LiveCapture, ResponseBody, Tee, UpstreamBody};
use crate::error::Blame;
use crate::forward;
use crate::grpc::{self, GrpcCall};
use crate::headers::{self, Downstream};
use crate::path;
use crate::pool::ComparePool;
use crate::shadow;
use crate::snapshot::{CompiledRoute, Upstream};
use crate::upload::{ClientBody, Progress};
use crate::{ProxyError, Routes, Snapshot};

/// The reverse proxy: the current routes (with their upstream clients), and the
/// pool of threads shadow pairs are judged on.
#[derive(Debug, Clone)]
pub struct Proxy {
    routes: Routes,
    judges: ComparePool,
}

impl Proxy {
    /// A proxy serving `routes`.
    pub fn new(routes: Routes) -> Proxy {
        Proxy {
            routes,
            judges: ComparePool::start(),
        }
    }

    /// The routes it serves.
    pub(crate) fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Serves one client request from `peer`.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Downstream,
    ) -> Response<ResponseBody> {
        let _in_flight = self.routes.telemetry().in_flight(Role::Live);
        let snapshot = self.routes.load();
        let request_id = headers::request_id(req.headers());
        match self.forward(&snapshot, req, peer, &request_id).await {
            Ok(response) => response,
            Err(error) => {
                self.account(&error, &request_id);
                error.to_response(&request_id).map(ResponseBody::local)
            }
        }
    }

    /// Counts and logs a request veer answered itself, by whose doing it was: the
    /// client's (a 4xx, counted as a client error, with its access line), a limit's
    /// (counted as a refusal; under overload a line per request would flood the
    /// log), or a backend's failure (worth an operator's eye; its exchange is
    /// already recorded).
    fn account(&self, error: &ProxyError, request_id: &HeaderValue) {
        let id = String::from_utf8_lossy(request_id.as_bytes());
        let status = error.status().as_u16();
        let message = error.message();
        let telemetry = self.routes.telemetry();
        match error.blame() {
            Blame::Client => {
                telemetry.record_client_error(error.kind());
                tracing::info!(target: "veer::access", request_id = %id, route = "-", status, "access");
                tracing::debug!(status, error = %message, request_id = %id, "request refused");
            }
            _ if error.is_overload() => {
                telemetry.record_refusal(error.kind());
                tracing::debug!(status, error = %message, request_id = %id, "request refused");
            }
            _ => tracing::warn!(status, error = %message, request_id = %id, "request failed"),
        }
    }

    /// Route, mirror (when sampled), forward, record, and hand back the live answer.
    async fn forward(
        &self,
        snapshot: &Arc<Snapshot>,
        req: Request<Incoming>,
        peer: &Downstream,
        request_id: &HeaderValue,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        headers::check_head(&req)?;
        let req = with_normalized_path(req);
        let decision =
            snapshot
                .decide(&RequestHead::of(&req))
                .ok_or_else(|| ProxyError::NoRoute {
                    method: req.method().to_string(),
                    path: req.uri().path().to_owned(),
                })?;
        let route = snapshot.route(decision.route);
        let upstream = snapshot.upstream(decision.backend);
        let stall = snapshot.config().limits.body_read_timeout;
        let req = req.map(|body| ClientBody::new(body, route.max_request_body, stall));
        if let Some(fault) = req.body().declared_too_large() {
            return Err(ProxyError::ClientBody(fault));
        }
        let upload = req.body().progress();
        // Held until the response body ends: requests in flight to the backend.
        let permit =
            upstream
                .permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| ProxyError::Saturated {
                    backend: upstream.name.clone(),
                })?;
        let outbound = forward::upstream_request(req, upstream, peer, request_id);
        let (outbound, mirror) = shadow::prepare(snapshot, decision, outbound, request_id).await?;
        // The mirror is under way before the live request is sent; it waits for the
        // live answer's capture, never the other way round.
        let live_capture = mirror.map(|mirror| {
            let (capture, captured) = oneshot::channel();
            mirror.spawn(captured, &self.judges);
            capture
        });
        let started = Instant::now();
        let result = forward::send(outbound, upstream, upload.as_deref())
            .await
            .and_then(|response| refuse_upgrade(response, upstream));
        let call = record_live(
            route,
            decision.backend,
            upstream,
            &result,
            started,
            request_id,
            &upload,
        );
        let result =
            result.map(|r| r.map(|body| UpstreamBody::new(body, upstream.timeout, upload.clone())));
        let mut response = match (result, live_capture) {
            (Ok(response), None) => response.map(|body| ResponseBody::Streamed {
                body,
                call,
                _permit: permit,
            }),
            (Ok(response), Some(capture)) if response.body().is_end_stream() => {
                // hyper never polls a body it knows is empty: nothing to tee.
                let status = grpc::compared_status(response.status().as_u16(), response.headers());
                let _ = capture.send(LiveCapture::empty(status));
                response.map(|body| ResponseBody::Streamed {
                    body,
                    call,
                    _permit: permit,
                })
            }
            (Ok(response), Some(capture)) => {
                let status = grpc::compared_status(response.status().as_u16(), response.headers());
                let is_grpc = grpc::is_grpc(response.headers());
                let limit = route.compare.max_body;
                response.map(|body| ResponseBody::Teed {
                    tee: Tee::new(body, status, is_grpc, limit, capture),
                    call,
                    _permit: permit,
                })
            }
            (Err(error), capture) => {
                if let Some(capture) = capture {
                    let _ = capture.send(LiveCapture::Failed(error.message().into()));
                }
                return Err(error);
            }
        };
        headers::to_downstream(response.headers_mut(), &upstream.name_header, request_id);
        Ok(response)
    }
}

/// Records the live exchange in the route's series and the backend's health: now,
/// or, for a gRPC call whose status will come in its trailers, when its response
/// ends (the returned call rides along in the response body). A client's fault (or
/// veer's own) is not the backend's exchange, and is recorded nowhere here.
fn record_live(
    route: &CompiledRoute,
    backend: BackendId,
    upstream: &Upstream,
    result: &Result<Response<Incoming>, ProxyError>,
    started: Instant,
    request_id: &HeaderValue,
    upload: &Option<Arc<Progress>>,
) -> Option<Box<GrpcCall>> {
    if matches!(result, Err(e) if e.blame() != Blame::Backend) {
        return None;
    }
    let series = route.live_series(backend);
    let response = result.as_ref().ok();
    let grpc = response.filter(|r| grpc::is_grpc(r.headers()));
    let grpc_status = grpc.and_then(|r| grpc::status(r.headers()));
    if let (Some(r), None, Some(series)) = (grpc, grpc_status, series) {
        if !r.body().is_end_stream() {
            return Some(Box::new(GrpcCall::new(
                series.clone(),
                upstream.health.clone(),
                started,
                request_id.clone(),
                upstream.authority.clone(),
                r.status().as_u16(),
                upload.clone(),
            )));
        }
    }
    let exchange = Exchange {
        status: response.map(|r| r.status().as_u16()),
        started,
        request_id: request_id.to_str().unwrap_or("-"),
        upstream: upstream.authority.as_str(),
        bytes: response.and_then(|r| r.body().size_hint().exact()),
        grpc_status,
    };
    upstream.health.record(!exchange.failed());
    if let Some(series) = series {
        series.record(&exchange);
    }
    None
}

/// The request with its path's dot-segments resolved ([`path::normalize`]), so it
/// is matched and forwarded as the backend would resolve it.
fn with_normalized_path<B>(mut req: Request<B>) -> Request<B> {
    let Cow::Owned(path) = path::normalize(req.uri().path()) else {
        return req;
    };
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    // Built from a path and query that were already valid: it cannot fail.
    if let Ok(pq) = PathAndQuery::try_from(path_and_query) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// A `101 Switching Protocols` nobody asked for (veer never forwards `Upgrade`)
/// cannot be relayed: the backend is answering some other protocol.
fn refuse_upgrade(
    response: Response<Incoming>,
    upstream: &Upstream,
) -> Result<Response<Incoming>, ProxyError> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(ProxyError::BadAnswer {
            backend: upstream.name.clone(),
            problem: "101 Switching Protocols to a request that did not ask to upgrade",
        });
    }
    Ok(response)
}
