//! Accepting connections: one loop for every listener veer runs (the client port, the
//! admin port, the demo's model servers), serving HTTP/1.1 and HTTP/2 (prior
//! knowledge) on each, every connection watched so shutdown can drain it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::headers::Downstream;
use crate::Proxy;

/// After a failed accept (out of file descriptors, typically), wait this long before
/// the next: long enough for connections to close, short enough not to be noticed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `listener` until `shutdown` resolves, each connection with the service
/// `make_service` makes for its peer; then stops accepting and waits up to `drain`
/// for the connections' requests to finish. Returns true when all of them did.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    mut make_service: M,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> bool
where
    M: FnMut(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), make_service(peer))
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(connections = graceful.count(), "draining");
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(drain) => false,
    }
}

/// Serves client traffic through `proxy` on `listener`, as [`serve`] does.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> bool {
    let per_connection = move |peer: SocketAddr| {
        let (proxy, peer) = (proxy.clone(), Downstream::new(peer));
        service_fn(move |req| {
            let (proxy, peer) = (proxy.clone(), peer.clone());
            async move { Ok::<_, Infallible>(proxy.handle(req, &peer).await) }
        })
    };
    serve(listener, per_connection, shutdown, drain).await
}
