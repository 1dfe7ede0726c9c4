//! The accept loop: HTTP/1.1 and HTTP/2 (prior knowledge) on one listener, every
//! connection watched so shutdown can drain it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::headers::Downstream;
use crate::Proxy;

/// After a failed accept (out of file descriptors, typically), wait this long before
/// the next: long enough for connections to close, short enough not to be noticed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `listener` until `shutdown` resolves, then stops accepting and waits up to
/// `drain` for in-flight requests to finish. Returns true when all of them did.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    let _ = stream.set_nodelay(true);
                    let proxy = proxy.clone();
                    let downstream = Downstream::new(client);
                    let service = service_fn(move |req| {
                        let (proxy, downstream) = (proxy.clone(), downstream.clone());
                        async move { Ok::<_, Infallible>(proxy.handle(req, &downstream).await) }
                    });
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(%client, error = %e, "client connection ended with an error");
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
