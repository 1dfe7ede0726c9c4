//! Forwarding one request to its backend over the upstream pool, body streaming.

use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::RequestBody;
use crate::headers::{self, Downstream};
use crate::snapshot::Upstream;
use crate::upload::{ClientFault, Progress};
use crate::ProxyError;

pub(crate) use crate::error::root_cause;

/// The pool of keep-alive connections to backends that every request goes out on.
/// One per proxy: it is keyed by backend authority, so it survives reloads that keep
/// a backend.
pub(crate) type UpstreamPool = Client<HttpConnector, RequestBody>;

/// 90 s: longer than the keep-alive of typical model servers would make veer race
/// their close; shorter keeps idle sockets to removed backends from lingering.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds the pool: no Nagle delay (requests are small and latency-bound).
pub(crate) fn upstream_pool() -> UpstreamPool {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

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
/// `upload` is the client body's progress: a failure while the client is the one
/// being waited on is the client's fault, never the backend's.
pub(crate) async fn send(
    pool: &UpstreamPool,
    req: Request<RequestBody>,
    upstream: &Upstream,
    upload: Option<&Progress>,
) -> Result<Response<Incoming>, ProxyError> {
    match tokio::time::timeout(upstream.timeout, pool.request(req)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(source)) if ClientFault::find(&source).is_some() => {
            Err(ProxyError::client_fault(source))
        }
        Err(_) if upload.is_some_and(Progress::waiting_on_client) => {
            Err(ProxyError::ClientBody(ClientFault::Stalled {
                timeout: upstream.timeout,
            }))
        }
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
