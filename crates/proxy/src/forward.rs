//! Forwarding one request to its backend over the upstream pool, body streaming.

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::Full;
use hyper::body::{Body, Incoming};

use crate::body::RequestBody;
use crate::headers::{self, Downstream};
use crate::snapshot::Upstream;
use crate::upload::{ClientFault, Progress};
use crate::ProxyError;
use crate::UpstreamError;

pub(crate) use crate::error::root_cause;

/// Rewrites a client request for `upstream`: same method, path, query and body;
/// absolute URI on the backend's authority; HTTP/1.1; headers per
/// [`headers::to_upstream`].
pub(crate) fn upstream_request<B>(
    req: Request<B>,
    upstream: &Upstream,
    peer: &Downstream,
    request_id: &HeaderValue,
) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    headers::to_upstream(
        &mut parts.headers,
        peer,
        parts.uri.authority(),
        &upstream.host_header,
        request_id,
    );
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(upstream.scheme.clone());
    uri.authority = Some(upstream.authority.clone());
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or(PathAndQuery::from_static("/")),
    );
    // Every part comes from an already-parsed URI, so this cannot fail.
    parts.uri = Uri::from_parts(uri).unwrap_or_default();
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// Sends `req` and waits for the response head within the backend's timeout.
/// `upload` is the client body's progress: a failure after the client failed its
/// body, or a timeout while the body is still incomplete, is the client's fault,
/// never the backend's.
///
/// An idempotent request without a body that fails before a whole answer head
/// (connect failure, or a pooled connection the backend closed or reset as the
/// request went out) is sent once more, on another connection, within the same
/// timeout, unless the backend says `retry = false`. An idempotent request may be
/// sent twice (RFC 9110 §9.2.2); no request with a body ever is.
pub(crate) async fn send(
    req: Request<RequestBody>,
    upstream: &Upstream,
    upload: Option<&Progress>,
) -> Result<Response<Incoming>, ProxyError> {
    let replay = (upstream.retry && req.method().is_idempotent() && req.body().is_end_stream())
        .then(|| replay_of(&req));
    let deadline = tokio::time::Instant::now() + upstream.timeout;
    let first = tokio::time::timeout_at(deadline, upstream.client.request(req)).await;
    let outcome = match (first, replay) {
        (Ok(Err(failed)), Some(again)) if unanswered(&failed) => {
            tracing::debug!(backend = %upstream.name, error = %root_cause(&failed), "retrying once");
            tokio::time::timeout_at(deadline, upstream.client.request(again)).await
        }
        (first, _) => first,
    };
    // The upload's own account comes first: some failures lose the body's error
    // on the way (an HTTP/2 backend's stream is merely reset).
    if let (Ok(Err(_)) | Err(_), Some(fault)) = (&outcome, upload.and_then(Progress::fault)) {
        return Err(ProxyError::ClientBody(fault));
    }
    match outcome {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(source)) if ClientFault::find(&source).is_some() => {
            Err(ProxyError::client_fault(source))
        }
        // The backend cannot answer what it has not yet received whole.
        Err(_) if upload.is_some_and(Progress::open) => {
            Err(ProxyError::ClientBody(ClientFault::Stalled {
                timeout: upstream.timeout,
            }))
        }
        Ok(Err(source)) if out_of_sockets(&source) => Err(ProxyError::OutOfSockets { source }),
        Ok(Err(source)) if source.is_connect() => Err(ProxyError::Unreachable {
            backend: upstream.name.clone(),
            source,
        }),
        Ok(Err(source)) => Err(ProxyError::Upstream {
            backend: upstream.name.clone(),
            source,
        }),
        Err(_) => Err(ProxyError::Timeout {
            backend: upstream.name.clone(),
            timeout: upstream.timeout,
        }),
    }
}

/// True when connecting failed for want of a file descriptor here (EMFILE, ENFILE):
/// veer's own shortage, not the backend's fault.
fn out_of_sockets(error: &UpstreamError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        }
        cause = e.source();
    }
    false
}

/// The same bodiless request again.
fn replay_of(req: &Request<RequestBody>) -> Request<RequestBody> {
    let mut again = Request::new(RequestBody::Buffered(Full::new(Bytes::new())));
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// True when the backend cannot have answered `error`'s request: it was never
/// connected, or the connection closed or was reset before any byte of an answer
/// (a pooled connection the backend closed as the request went out shows as
/// either, depending on which side of the close the request's bytes landed).
fn unanswered(error: &UpstreamError) -> bool {
    if error.is_connect() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        cause = e.source();
    }
    false
}
