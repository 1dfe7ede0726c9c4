//! Forwarding one request to its backend over the pooled client, body streaming.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::{headers, ProxyError, Upstream};

/// The pooled keep-alive client every request goes out on. One per process: its pool
/// is keyed by backend authority, so it survives reloads that keep a backend.
pub type UpstreamClient = Client<HttpConnector, Incoming>;

/// 90 s: longer than the keep-alive of typical model servers would make veer race
/// their close; shorter keeps idle sockets to removed backends from lingering.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds the client: no Nagle delay (requests are small and latency-bound).
pub fn client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Rewrites a client request for `upstream`: same method, path, query and body;
/// absolute URI on the backend's authority; HTTP/1.1; headers per [`headers::to_upstream`].
pub fn upstream_request(
    req: Request<Incoming>,
    upstream: &Upstream,
    client_ip: IpAddr,
    request_id: &HeaderValue,
) -> Request<Incoming> {
    let (mut parts, body) = req.into_parts();
    let host = veer_route::RequestHead {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
    }
    .host()
    .map(str::to_owned);
    let mut uri = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone());
    if let Some(pq) = parts.uri.path_and_query() {
        uri = uri.path_and_query(pq.clone());
    } else {
        uri = uri.path_and_query("/");
    }
    // Scheme, authority and path all come from already-parsed URIs.
    parts.uri = uri.build().unwrap_or_default();
    parts.version = Version::HTTP_11;
    headers::to_upstream(&mut parts.headers, client_ip, host.as_deref(), request_id);
    Request::from_parts(parts, body)
}

/// Sends `req` and waits for the response head within the backend's timeout.
pub async fn send(
    client: &UpstreamClient,
    req: Request<Incoming>,
    upstream: &Upstream,
) -> Result<Response<Incoming>, ProxyError> {
    match tokio::time::timeout(upstream.timeout, client.request(req)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) if e.is_connect() => Err(ProxyError::Unreachable {
            backend: upstream.name.clone(),
            reason: root_cause(&e),
        }),
        Ok(Err(e)) => Err(ProxyError::Upstream {
            backend: upstream.name.clone(),
            reason: root_cause(&e),
        }),
        Err(_) => Err(ProxyError::Timeout {
            backend: upstream.name.clone(),
            timeout: upstream.timeout,
        }),
    }
}

/// The innermost error's message: "Connection refused (os error 111)" rather than
/// hyper-util's "client error (Connect)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
