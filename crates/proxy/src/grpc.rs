//! gRPC through veer: calls pass through as HTTP/2 requests (bodies streaming,
//! `te: trailers` kept, trailers forwarded), and each call is recorded when it ends,
//! with its `grpc-status`.
//!
//! A gRPC call answers `200` at once and says how it went in its trailers, so the
//! exchange of a gRPC call is recorded at the end of the response instead of at its
//! head: `veer_requests_total` gets `code="grpc_<n>"` for a non-zero status (`200`
//! for OK), its duration is the whole call's, and a status that is the server's
//! fault ([`veer_telemetry::GRPC_SERVER_FAULTS`]) counts as the backend's error and against its
//! outlier detection. A trailers-only answer (the status in the head) is recorded at
//! once, like any other answer.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::uri::Authority;
use http::{header, HeaderMap, HeaderValue};
use hyper::body::Frame;
use veer_telemetry::{Exchange, ExchangeSeries};

use crate::health::Health;
use crate::upload::Progress;

/// `grpc-status` of a call that ended without one (the stream was cut short).
pub(crate) const UNKNOWN: u16 = 2;
/// `grpc-status` of a call whose client went away before it ended.
const CANCELLED: u16 = 1;

/// True for a gRPC message (`content-type: application/grpc`, `+proto`, `;...`).
/// gRPC-Web (`application/grpc-web`) is not: its status travels in the body.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .strip_prefix(b"application/grpc")
            .is_some_and(|rest| matches!(rest.first(), None | Some(b'+' | b';')))
    })
}

/// The `grpc-status` in `headers` (trailers, or a trailers-only head).
pub(crate) fn status(headers: &HeaderMap) -> Option<u16> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The HTTP status a gRPC status corresponds to (the mapping gRPC gateways use):
/// how a shadow's comparison sees a gRPC answer, whose HTTP status is always 200.
/// So `status` mode tells OK from NOT_FOUND from UNAVAILABLE, and a server fault
/// on either side is that side's error, as a 5xx is.
pub(crate) fn http_equivalent(grpc: u16) -> u16 {
    match grpc {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        4 => 504,
        16 => 401,
        _ => 500,
    }
}

/// The status a comparison sees for a response with status `http` and `headers`:
/// for a trailers-only gRPC answer, its gRPC status's HTTP equivalent.
pub(crate) fn compared_status(http: u16, headers: &HeaderMap) -> u16 {
    match status(headers).filter(|_| is_grpc(headers)) {
        Some(grpc) => http_equivalent(grpc),
        None => http,
    }
}

/// A gRPC call in progress, recorded once when its response ends.
pub(crate) struct GrpcCall {
    series: Arc<ExchangeSeries>,
    health: Arc<Health>,
    started: Instant,
    request_id: HeaderValue,
    upstream: Authority,
    http_status: u16,
    /// The client's side of a streaming call: when it broke the call, the
    /// backend is not to blame.
    upload: Option<Arc<Progress>>,
    recorded: bool,
}

impl std::fmt::Debug for GrpcCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcCall")
            .field("route", &self.series.route())
            .field("backend", &self.series.backend())
            .field("recorded", &self.recorded)
            .finish_non_exhaustive()
    }
}

impl GrpcCall {
    pub(crate) fn new(
        series: Arc<ExchangeSeries>,
        health: Arc<Health>,
        started: Instant,
        request_id: HeaderValue,
        upstream: Authority,
        http_status: u16,
        upload: Option<Arc<Progress>>,
    ) -> GrpcCall {
        GrpcCall {
            series,
            health,
            started,
            request_id,
            upstream,
            http_status,
            upload,
            recorded: false,
        }
    }

    /// Looks at what the response body just yielded; records the call when it ends.
    pub(crate) fn observe<E>(&mut self, polled: &Option<Result<Frame<Bytes>, E>>) {
        match polled {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.finish(Some(status(trailers).unwrap_or(UNKNOWN)));
                }
            }
            // The client broke its half (too large, stalled): the call is its doing.
            Some(Err(_)) if self.upload.as_deref().and_then(Progress::fault).is_some() => {
                self.recorded = true;
            }
            Some(Err(_)) => self.finish(None),
            None => self.finish(Some(UNKNOWN)),
        }
    }

    /// Records the call: `grpc` is its status, `None` when the response broke.
    fn finish(&mut self, grpc: Option<u16>) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let exchange = Exchange {
            status: grpc.map(|_| self.http_status),
            started: self.started,
            request_id: self.request_id.to_str().unwrap_or("-"),
            upstream: self.upstream.as_str(),
            bytes: None,
            grpc_status: grpc,
        };
        self.series.record(&exchange);
        self.health.record(!exchange.failed());
    }
}

impl Drop for GrpcCall {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or the stream was reset),
        // which is not the backend's doing.
        self.finish(Some(CANCELLED));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_statuses_compare_as_their_http_equivalents() {
        assert_eq!(http_equivalent(0), 200);
        assert_eq!(http_equivalent(5), 404);
        assert_eq!(http_equivalent(14), 503);
        assert!(
            veer_telemetry::GRPC_SERVER_FAULTS
                .iter()
                .all(|code| http_equivalent(*code) >= 500),
            "a server fault is a 5xx to the comparison too"
        );
    }

    #[test]
    fn grpc_messages_and_statuses_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        assert_eq!(status(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("14"));
        assert_eq!(status(&h), Some(14));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_grpc(&h));
    }
}
