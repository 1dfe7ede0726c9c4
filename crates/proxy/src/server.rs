//! Accepting connections: one loop for every listener veer runs (the client port, the
//! admin port, the demo's model servers), serving HTTP/1.1 and HTTP/2 (prior
//! knowledge) on each, within a connection limit, every connection on its own clock
//! (`connection`) and counted so shutdown can drain it.

use std::convert::Infallible;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use veer_config::{defaults, Limits};
use veer_telemetry::Telemetry;

use crate::connection::{Activity, Counted, CountedFuture, Timeouts, Watched};
use crate::error::raw_answer;
use crate::headers::Downstream;
use crate::Proxy;

/// After a failed accept (out of file descriptors, typically), wait this long before
/// the next: long enough for connections to close, short enough not to be noticed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a refused connection is read from (and discarded) after its 503, so the
/// client reads the answer instead of a reset.
const REFUSED_LINGER: Duration = Duration::from_secs(1);

/// Refused connections answered at once at most: each lingers up to
/// [`REFUSED_LINGER`] holding a descriptor, so a flood past the limit must not turn
/// into a flood of those; 1,024 answers a burst of clients (a restarted fleet
/// reconnecting) with 503s, and past it a connection just closes.
const MAX_REFUSING: usize = 1024;

/// The answer on a connection over the limit.
static TOO_MANY_CONNECTIONS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    raw_answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        "veer is at its connection limit; retry",
        "retry-after: 1\r\n",
    )
});

/// What one listener enforces on its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; past it a new one gets 503 and is closed.
    pub max_connections: usize,
    /// A request head must be complete this long after its first byte: else 408.
    pub header_read_timeout: Duration,
    /// An idle keep-alive connection closes after this.
    pub idle_timeout: Duration,
}

impl ListenerLimits {
    /// The client listeners' limits, from `[limits]`.
    pub fn clients(limits: &Limits) -> ListenerLimits {
        ListenerLimits {
            max_connections: limits.max_connections,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }

    /// The admin listener's own, smaller limits: it keeps answering while the
    /// client port is flooded, and a flood of its own stays small.
    pub fn admin() -> ListenerLimits {
        ListenerLimits {
            max_connections: defaults::ADMIN_MAX_CONNECTIONS,
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
        }
    }
}

/// The certificate for the next handshake (`None`: serve plain HTTP).
type CurrentTls = Arc<dyn Fn() -> Option<Arc<rustls::ServerConfig>> + Send + Sync>;

/// How a listener serves: its limits (read again for every connection, so a reload
/// applies to the next one), its TLS certificate (likewise, per handshake) and where
/// it counts what it refuses.
#[derive(Clone)]
pub struct Serving {
    limits: Arc<dyn Fn() -> ListenerLimits + Send + Sync>,
    tls: Option<CurrentTls>,
    telemetry: Option<Telemetry>,
}

impl Serving {
    /// Fixed limits, counted nowhere (the admin listener, test servers).
    pub fn fixed(limits: ListenerLimits) -> Serving {
        Serving {
            limits: Arc::new(move || limits),
            tls: None,
            telemetry: None,
        }
    }

    /// Limits read from `limits` for each new connection, refusals counted in
    /// `telemetry`.
    pub fn live(
        limits: impl Fn() -> ListenerLimits + Send + Sync + 'static,
        telemetry: Telemetry,
    ) -> Serving {
        Serving {
            limits: Arc::new(limits),
            tls: None,
            telemetry: Some(telemetry),
        }
    }
}

/// A listener on `addr` with a backlog of [`defaults::LISTEN_BACKLOG`] connections.
/// Like tokio's own `bind`, it must be called within a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(defaults::LISTEN_BACKLOG)
}

/// Serves `listener` until `shutdown` resolves, each connection with the service
/// `make_service` makes for its peer; then stops accepting, closes the connections
/// with nothing in flight, and waits up to `drain` for the others' requests to
/// finish (read when shutdown begins). Returns true when all of them did.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    mut make_service: M,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
    drain: impl FnOnce() -> Duration,
) -> bool
where
    M: FnMut(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stop = CancellationToken::new();
    let open = Arc::new(Slots::default());
    let refusing = Arc::new(Slots::default());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // veer keeps the header timeout itself (`connection`): hyper's would also count
    // keep-alive idle time and close without an answer.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(defaults::HTTP2_MAX_CONCURRENT_STREAMS);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let limits = (serving.limits)();
                    let Some(slot) = Slot::take(&open, limits.max_connections) else {
                        if let Some(telemetry) = &serving.telemetry {
                            telemetry.record_refusal("too_many_connections");
                        }
                        // A 503 in plain HTTP, when it can be one and while few are
                        // lingering; else the connection just closes.
                        let answering = serving.tls.is_none()
                            .then(|| Slot::take(&refusing, MAX_REFUSING))
                            .flatten();
                        if let Some(answering) = answering {
                            refuse(stream, answering);
                        }
                        continue;
                    };
                    let activity = Arc::new(Activity::default());
                    let connection = Connection {
                        service: Tracked { inner: make_service(peer), activity: activity.clone() },
                        activity,
                        timeouts: Timeouts {
                            header: limits.header_read_timeout,
                            idle: limits.idle_timeout,
                        },
                        stop: stop.clone(),
                        telemetry: serving.telemetry.clone(),
                        builder: builder.clone(),
                    };
                    let tls = serving.tls.as_ref().map(|current| current());
                    let handshake_within = limits.header_read_timeout;
                    tokio::spawn(async move {
                        let _slot = slot;
                        match tls {
                            None => connection.serve(stream, false, peer).await,
                            // An HTTPS listener never falls back to plain HTTP.
                            Some(None) => {}
                            Some(Some(config)) => {
                                let shaken = handshake(stream, config, handshake_within, &connection.stop).await;
                                if let Some((stream, h2)) = shaken {
                                    connection.serve(stream, h2, peer).await;
                                }
                            }
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
    // Every connection task sees this: HTTP/1 ones with nothing in flight close,
    // the others finish their requests (HTTP/2 ones after a GOAWAY).
    stop.cancel();
    let drain = drain();
    tracing::info!(connections = open.count(), timeout = ?drain, "draining");
    tokio::select! {
        () = open.all_closed() => true,
        () = tokio::time::sleep(drain) => false,
    }
}

/// Serves client traffic through `proxy` on `listener`, as [`serve`] does, with
/// the `[limits]` of the routes it serves (a reload applies to the next connection,
/// and to the drain when it starts); over TLS when `tls` is true, with the
/// certificate of the serving generation at each handshake.
pub async fn serve_proxy(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: bool,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let routes = proxy.routes().clone();
    let mut serving = {
        let routes = routes.clone();
        Serving::live(
            move || ListenerLimits::clients(&routes.load().config().limits),
            proxy.routes().telemetry().clone(),
        )
    };
    if tls {
        let routes = routes.clone();
        serving.tls = Some(Arc::new(move || routes.load().tls().cloned()));
    }
    let drain = move || routes.load().config().limits.drain_timeout;
    let per_connection = move |peer: SocketAddr| {
        let (proxy, peer) = (proxy.clone(), Downstream::new(peer));
        service_fn(move |req| {
            let (proxy, peer) = (proxy.clone(), peer.clone());
            async move { Ok::<_, Infallible>(proxy.handle(req, &peer).await) }
        })
    };
    serve(listener, per_connection, serving, shutdown, drain).await
}

/// Everything one accepted connection is served with.
struct Connection<S> {
    service: Tracked<S>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    stop: CancellationToken,
    telemetry: Option<Telemetry>,
    builder: auto::Builder<TokioExecutor>,
}

impl<S> Connection<S> {
    /// Serves HTTP on `io` (`h2` when TLS ALPN chose it) until the connection ends.
    async fn serve<IO, B>(self, io: IO, h2: bool, peer: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let closing = self.activity.clone();
        let io = Watched::new(
            io,
            self.activity,
            self.timeouts,
            h2,
            &self.stop,
            self.telemetry,
        );
        let connection = self
            .builder
            .serve_connection(TokioIo::new(io), self.service);
        tokio::pin!(connection);
        // Shutdown, or an idle HTTP/2 connection, ends the connection gracefully:
        // hyper sends HTTP/2 a GOAWAY and lets the requests in flight finish.
        let mut ending = false;
        loop {
            tokio::select! {
                outcome = connection.as_mut() => {
                    if let Err(e) = outcome {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = self.stop.cancelled(), if !ending => {
                    connection.as_mut().graceful_shutdown();
                    ending = true;
                }
                () = closing.idle_closed(), if !ending => {
                    connection.as_mut().graceful_shutdown();
                    ending = true;
                }
            }
        }
    }
}

/// The TLS handshake of a new connection, within `within` (the header read
/// timeout: a handshake is the first part of a request's head) and abandoned at
/// shutdown: the stream and whether ALPN chose HTTP/2, or `None`.
async fn handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    within: Duration,
    stop: &CancellationToken,
) -> Option<(TlsStream<TcpStream>, bool)> {
    let accept = TlsAcceptor::from(config).accept(stream);
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(within, accept) => outcome,
        () = stop.cancelled() => return None,
    };
    match outcome {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            Some((stream, h2))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// A listener's connections (or lingering refusals): how many are open, and a
/// signal when the last one closes.
#[derive(Debug, Default)]
struct Slots {
    open: AtomicUsize,
    emptied: Notify,
}

impl Slots {
    fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves once no slot is taken.
    async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            emptied.await;
        }
    }
}

/// One of a listener's connection slots, given back when the connection ends.
struct Slot(Arc<Slots>);

impl Slot {
    fn take(slots: &Arc<Slots>, max: usize) -> Option<Slot> {
        slots
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(slots.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.emptied.notify_waiters();
        }
    }
}

/// Answers a connection over the limit with 503 and closes it, reading (and
/// discarding) what the client sent meanwhile for a moment so it gets the answer
/// rather than a reset ([`linger`]).
fn refuse(stream: TcpStream, answering: Slot) {
    // Sent from the accept loop itself, straight into the fresh socket's empty send
    // buffer (tokio would first wait for the readiness event), so the 503 never
    // queues behind the tasks of the connections being served.
    let sent =
        match SockRef::from(&stream).send_with_flags(&TOO_MANY_CONNECTIONS, libc::MSG_NOSIGNAL) {
            Ok(sent) => sent,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => 0,
            Err(_) => return,
        };
    tokio::spawn(linger(stream, sent, answering));
}

/// Finishes a refusal: the rest of the 503 (after `sent` bytes), the end of the
/// stream, then up to [`REFUSED_LINGER`] of reading and discarding.
async fn linger(mut stream: TcpStream, sent: usize, _answering: Slot) {
    let rest = TOO_MANY_CONNECTIONS.get(sent..).unwrap_or_default();
    if stream.write_all(rest).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSED_LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A connection's service, counting its requests in flight for the connection's
/// clock.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<Counted<B>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let active = self.activity.start();
        CountedFuture::new(self.inner.call(req), active)
    }
}
