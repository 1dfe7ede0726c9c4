//! The request handler: a request's story from arrival to answer, one phase a call.

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use veer_route::RequestHead;

use crate::forward::{self, UpstreamClient};
use crate::headers::{self, Downstream};
use crate::{ProxyError, Routes, Snapshot};

/// Response bodies: a backend's, streamed through, or one veer wrote itself.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The reverse proxy: current routes plus the upstream connection pool.
#[derive(Debug, Clone)]
pub struct Proxy {
    routes: Routes,
    client: UpstreamClient,
}

impl Proxy {
    /// A proxy serving `routes`.
    pub fn new(routes: Routes) -> Proxy {
        Proxy {
            routes,
            client: forward::client(),
        }
    }

    /// The routes, for reloads.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Serves one client request from `client`.
    pub async fn handle(&self, req: Request<Incoming>, client: &Downstream) -> Response<ProxyBody> {
        let snapshot = self.routes.load();
        let request_id = headers::request_id(req.headers());
        match self.forward(&snapshot, req, client, &request_id).await {
            Ok(response) => response.map(Either::Left),
            Err(error) => {
                let id = String::from_utf8_lossy(request_id.as_bytes());
                let status = error.status().as_u16();
                // A 5xx is veer's or a backend's problem and worth an operator's eye;
                // a 404 is the client's, and could flood the log.
                if error.status().is_server_error() {
                    tracing::warn!(status, error = %error, request_id = %id, "request failed");
                } else {
                    tracing::debug!(status, error = %error, request_id = %id, "request refused");
                }
                error
                    .to_response(&request_id)
                    .map(|b| Either::Right(Full::new(b)))
            }
        }
    }

    async fn forward(
        &self,
        snapshot: &Snapshot,
        req: Request<Incoming>,
        client: &Downstream,
        request_id: &HeaderValue,
    ) -> Result<Response<Incoming>, ProxyError> {
        let decision = snapshot
            .table
            .decide(&RequestHead::of(&req), &mut rand::rng())
            .ok_or_else(|| ProxyError::NoRoute {
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
            })?;
        let upstream = snapshot.upstream(decision.backend);
        let outbound = forward::upstream_request(req, upstream, client, request_id);
        let mut response = forward::send(&self.client, outbound, upstream).await?;
        headers::to_downstream(response.headers_mut(), &upstream.name_header, request_id);
        Ok(response)
    }
}
