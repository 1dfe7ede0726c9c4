//! The connections to backends: veer's own keep-alive pool for HTTP/1.1 backends,
//! hyper-util's client for HTTP/2 ones.
//!
//! An HTTP/1.1 backend's pool ([`Http1Pool`]) holds every connection to it, busy or
//! idle, as hyper's connection-level senders (`hyper::client::conn::http1`). A
//! request takes one that is ready (hyper has read its last answer whole), queues
//! itself on it, and puts it straight back: the sender is not ready again until the
//! connection's task has finished that exchange, so nothing has to wait for the
//! answer to hand the connection back. Profiled through passthrough (callgrind,
//! 4,000 requests), hyper-util's legacy pool cost ~9,200 instructions per request
//! for the same job: a hashed pool key per checkout, a task spawned per request to
//! return the connection, and the boxing around both.
//!
//! A connection idle longer than [`IDLE_TIMEOUT`] (since it last read from the
//! backend, which for a ready connection is when its last answer ended) is never
//! reused: veer gives up an idle connection before the backend does. Checkouts
//! close such connections, the one they come to and those at the pool's old end,
//! and a sweep every [`SWEEP_EVERY`] (a task per pool, started with its first
//! connection, ended with the pool) closes them when no traffic comes: a burst's
//! connections do not stay open for as long as the backend would keep them. A request
//! hyper hands back unsent (its kept connection closed before any byte went out)
//! is sent on another connection. New connections go through hyper-util's TCP
//! connector (every resolved address, each with its share of the connect timeout).
//! HTTP/2 backends multiplex one connection, where the legacy client's cost is paid
//! once per connection, not per request.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::rt::{Read, Write};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;
use tower_service::Service;
use veer_config::{Backend, Protocol};

use crate::body::RequestBody;
use crate::UpstreamError;

/// 4 s: under the shortest keep-alive common model servers keep (uvicorn's 5 s,
/// behind KServe and FastAPI servers), so veer closes an idle connection before the
/// backend does and rarely sends on one the backend is closing; the rare race left
/// is retried (`forward::send`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// How often a pool closes its connections idle past [`IDLE_TIMEOUT`] when no
/// checkout does: an idle connection is closed within 6 s, and a pool with nothing
/// to close costs one timer wake-up every 2 s.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Times a request handed back unsent is tried on another connection. Each try
/// found its connection closed before writing a byte; three in a row means the
/// backend is closing connections as fast as veer opens them.
const UNSENT_TRIES: usize = 3;

/// The connections to one backend (or, for HTTP/2, to every backend with the same
/// connection settings, keyed inside by authority).
#[derive(Debug)]
pub(crate) enum UpstreamClient {
    /// An HTTP/1.1 backend: veer's own pool.
    Http1(Http1Pool),
    /// An HTTP/2 backend: hyper-util's client.
    H2(Client<HttpsConnector<HttpConnector>, RequestBody>),
}

impl UpstreamClient {
    /// A client for `backend`, trusting what `tls` trusts.
    pub(crate) fn new(backend: &Backend, tls: ClientConfig) -> UpstreamClient {
        match backend.protocol {
            Protocol::Http1 => UpstreamClient::Http1(Http1Pool::new(backend, tls)),
            Protocol::H2 => UpstreamClient::H2(h2_client(backend, tls)),
        }
    }

    /// Sends `req` (its URI absolute) and waits for the answer's head.
    pub(crate) async fn request(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match self {
            UpstreamClient::Http1(pool) => pool.send(req).await,
            UpstreamClient::H2(client) => client.request(req).await.map_err(UpstreamError::H2),
        }
    }
}

/// An HTTP/2 client: prior knowledge on `http://`, ALPN h2 on `https://`, over
/// [`tcp_connector`].
fn h2_client(
    backend: &Backend,
    tls: ClientConfig,
) -> Client<HttpsConnector<HttpConnector>, RequestBody> {
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(tcp_connector(backend));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(true)
        .build(connector)
}

/// TCP to `backend`, for either client: every address its host resolves to, each
/// with its share of the connect timeout, IPv6 falling back to IPv4; no Nagle delay
/// (requests are small and latency-bound); any scheme (TLS goes on top).
fn tcp_connector(backend: &Backend) -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(backend.connect_timeout));
    tcp
}

/// Milliseconds from `epoch` to now.
fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The keep-alive connections to one HTTP/1.1 backend.
pub(crate) struct Http1Pool {
    /// The backend's URL: where the TCP connector goes.
    target: Uri,
    /// TCP ([`tcp_connector`]).
    tcp: HttpConnector,
    /// The host, for TLS and for messages.
    host: String,
    connect_timeout: Duration,
    /// For `https://`: the connector and the name to verify (none
    /// when the host is not one a certificate can name).
    tls: Option<(TlsConnector, Option<ServerName<'static>>)>,
    /// What connections' read times count from.
    epoch: Instant,
    /// Roughly oldest first: connections go back at the end. Shared with the
    /// pool's sweep, which holds it weakly.
    connections: Arc<Mutex<VecDeque<Pooled>>>,
    /// Whether the sweep has started.
    sweeping: AtomicBool,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("target", &self.target)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// One connection, as its sender, and when it last read from the backend
/// (milliseconds since the pool's epoch): for a ready connection, the end of its
/// last answer, when its idle time began.
#[derive(Debug)]
struct Pooled {
    sender: http1::SendRequest<RequestBody>,
    last_read: Arc<AtomicU64>,
}

impl Pooled {
    /// Closed, or ready and idle past [`IDLE_TIMEOUT`] at `now` (milliseconds since
    /// the pool's epoch): never to be used again.
    fn spent(&self, now: u64) -> bool {
        let idle = now.saturating_sub(self.last_read.load(Ordering::Relaxed));
        self.sender.is_closed()
            || (self.sender.is_ready() && u128::from(idle) > IDLE_TIMEOUT.as_millis())
    }
}

impl Http1Pool {
    fn new(backend: &Backend, tls: ClientConfig) -> Http1Pool {
        let url = &backend.url;
        let https = url.scheme() == Some(&Scheme::HTTPS);
        // A URI keeps IPv6 literals bracketed; resolving and TLS want them bare.
        let host = url.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = https.then(|| {
            let name = ServerName::try_from(host.clone()).ok();
            (TlsConnector::from(Arc::new(tls)), name)
        });
        Http1Pool {
            target: url.clone(),
            tcp: tcp_connector(backend),
            host,
            connect_timeout: backend.connect_timeout,
            tls,
            epoch: Instant::now(),
            connections: Arc::default(),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Sends `req` on a ready connection (a new one when none is), and waits for
    /// the answer's head.
    async fn send(&self, req: Request<RequestBody>) -> Result<Response<Incoming>, UpstreamError> {
        let mut req = origin_form(req);
        let mut tries = 0;
        loop {
            tries += 1;
            let (mut pooled, reused) = match self.ready() {
                Some(pooled) => (pooled, true),
                // Boxed: the connect path (TCP, TLS) is most of this future's size,
                // and inline every request would carry and move it.
                None => (Box::pin(self.connect()).await?, false),
            };
            let answer = pooled.sender.try_send_request(req);
            self.put_back(pooled);
            match answer.await {
                Ok(response) => return Ok(response),
                // A kept connection closed as the request was queued on it; a new
                // one that does so is the backend's doing, and is an error.
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused && tries < UNSENT_TRIES => req = unsent,
                    _ => return Err(UpstreamError::Exchange(failed.into_error())),
                },
            }
        }
    }

    /// A connection ready for a request, the most recently used first, taken out of
    /// the pool. Closed ones and ready ones idle past [`IDLE_TIMEOUT`] are dropped:
    /// those met on the way, and those at the old end, so connections a burst left
    /// behind are let go by later checkouts that never reach them. Busy ones (an
    /// exchange still under way) are passed over.
    ///
    /// Ready is hyper's word, and a hint: in a narrow window a connection reads as
    /// ready while its last exchange is still being wound up, and a request taken
    /// there waits behind it (never mixed into it). hyper-util's pool has the same.
    fn ready(&self) -> Option<Pooled> {
        let now = millis_since(self.epoch);
        let spent = |pooled: &Pooled| pooled.spent(now);
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        while connections.front().is_some_and(spent) {
            connections.pop_front();
        }
        let mut i = connections.len();
        while i > 0 {
            i -= 1;
            let pooled = &connections[i];
            if spent(pooled) {
                connections.swap_remove_back(i);
            } else if pooled.sender.is_ready() {
                return connections.swap_remove_back(i);
            }
        }
        None
    }

    /// Starts the pool's sweep, once: every [`SWEEP_EVERY`] it drops the connections
    /// closed or idle past [`IDLE_TIMEOUT`] (dropping a sender closes its
    /// connection), until the pool is gone.
    fn sweep_idle(&self) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let (connections, epoch) = (Arc::downgrade(&self.connections), self.epoch);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(connections) = connections.upgrade() else {
                    return;
                };
                let now = millis_since(epoch);
                connections
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|pooled| !pooled.spent(now));
            }
        });
    }

    fn put_back(&self, pooled: Pooled) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(pooled);
    }

    fn stamped<IO>(&self, io: IO, last_read: &Arc<AtomicU64>) -> TokioIo<Stamped<IO>> {
        TokioIo::new(Stamped {
            io,
            epoch: self.epoch,
            last_read: last_read.clone(),
        })
    }

    /// A new connection (TCP, then TLS for `https://`), within the connect timeout.
    async fn connect(&self) -> Result<Pooled, UpstreamError> {
        let timed_out = || {
            UpstreamError::Connect(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.connect_timeout),
            )))
        };
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let mut tcp = self.tcp.clone();
        let connecting = async {
            std::future::poll_fn(|cx| tcp.poll_ready(cx)).await?;
            tcp.call(self.target.clone()).await
        };
        let tcp = tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| UpstreamError::Connect(e.into()))?
            .into_inner();
        self.sweep_idle();
        let last_read = Arc::new(AtomicU64::new(millis_since(self.epoch)));
        let sender = match &self.tls {
            None => handshake(self.stamped(tcp, &last_read)).await?,
            Some((connector, name)) => {
                let name = name.clone().ok_or_else(|| {
                    UpstreamError::Connect(
                        format!("{:?} is not a name a certificate can hold", self.host).into(),
                    )
                })?;
                let tls = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
                handshake(self.stamped(tls, &last_read)).await?
            }
        };
        Ok(Pooled { sender, last_read })
    }
}

/// A backend connection's stream that stamps each read that brought bytes: the
/// pool's clock of when an answer ended.
struct Stamped<IO> {
    io: IO,
    epoch: Instant,
    last_read: Arc<AtomicU64>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Stamped<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_read
                .store(millis_since(self.epoch), Ordering::Relaxed);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Stamped<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Starts HTTP/1.1 on `io`, its connection driven by a task of its own that ends
/// when the backend or veer closes it.
async fn handshake<T>(io: T) -> Result<http1::SendRequest<RequestBody>, UpstreamError>
where
    T: Read + Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(UpstreamError::Exchange)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "backend connection closed");
        }
    });
    Ok(sender)
}

/// `req` with its URI in origin form (`/path?query`), as an HTTP/1.1 request line
/// to a backend carries it; `Host` is already set.
fn origin_form(mut req: Request<RequestBody>) -> Request<RequestBody> {
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or(PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    req
}
