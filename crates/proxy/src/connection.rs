//! A client connection's own clock: the timeouts hyper does not keep for veer.
//!
//! [`Watched`] wraps a connection's byte stream and knows, from the service, whether
//! a request is in flight on it ([`Activity`]). While none is:
//! - a connection that is idle closes after `idle_timeout`;
//! - an HTTP/1 request head that has started must be complete within
//!   `header_read_timeout` of its first byte (a new connection gets the same budget
//!   for its first head); past it veer answers `408 request_header_timeout` and
//!   closes. This is what stops slowloris: hyper's own header timeout also counts
//!   keep-alive idle time and closes without an answer;
//! - once shutdown begins, the connection closes at once.
//!
//! While a request is in flight the connection has no deadline of its own: the
//! request body and the backend have theirs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use veer_telemetry::Telemetry;

/// The answer to a request head that did not arrive in time.
const HEADER_TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 91\r\n\r\n\
{\"error\":\"request_header_timeout\",\"message\":\"the request head did not arrive in time\"}\n";

/// The first bytes of every HTTP/2 prior-knowledge connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// From a head's first byte to its end (and from accept to the first head).
    pub(crate) header: Duration,
    /// From the end of the last request to the next one's first byte.
    pub(crate) idle: Duration,
}

/// Requests in flight on one connection, counted by the service.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    requests: AtomicUsize,
    /// The connection's reader, parked while a request was in flight: woken when the
    /// last one ends, so the idle clock starts then and not at the next byte.
    reader: AtomicWaker,
}

impl Activity {
    /// Marks a request in flight until the guard (kept in its response body) drops.
    pub(crate) fn start(self: &Arc<Self>) -> Active {
        self.requests.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    fn busy(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(crate) struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: `idle` runs.
    Idle,
    /// A head is on its way (or awaited on a new connection): `header` runs.
    Head { started: bool },
    /// A request is in flight: no deadline here.
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http1,
    H2,
}

/// A client connection's stream, with its deadlines.
pub(crate) struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    phase: Phase,
    protocol: Protocol,
    deadline: Pin<Box<Sleep>>,
    stop: CancellationToken,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Where header timeouts are counted.
    telemetry: Option<Telemetry>,
}

impl<IO> Watched<IO> {
    /// Watches `io`, a connection just accepted (or whose TLS handshake just ended;
    /// `h2` when ALPN chose HTTP/2). `stop` is cancelled when shutdown begins.
    pub(crate) fn new(
        io: IO,
        activity: Arc<Activity>,
        timeouts: Timeouts,
        h2: bool,
        stop: &CancellationToken,
        telemetry: Option<Telemetry>,
    ) -> Watched<IO> {
        Watched {
            io,
            activity,
            timeouts,
            phase: Phase::Head { started: false },
            protocol: if h2 { Protocol::H2 } else { Protocol::Unknown },
            deadline: Box::pin(tokio::time::sleep(timeouts.header)),
            stop: stop.clone(),
            stopped: Box::pin(stop.clone().cancelled_owned()),
            telemetry,
        }
    }

    fn arm(&mut self, phase: Phase, after: Duration) {
        self.phase = phase;
        self.deadline.as_mut().reset(Instant::now() + after);
    }

    /// Notes bytes that just arrived.
    fn arrived(&mut self, fresh: &[u8]) {
        if self.protocol == Protocol::Unknown && !fresh.is_empty() {
            let n = fresh.len().min(H2_PREFACE.len());
            self.protocol = if fresh[..n] == H2_PREFACE[..n] {
                Protocol::H2
            } else {
                Protocol::Http1
            };
        }
        if self.activity.busy() {
            self.phase = Phase::Busy;
        } else if !fresh.is_empty() {
            match self.phase {
                // HTTP/2 frames between requests (the preface, settings, pings) are
                // not a head: the connection is idle, and they do not keep it alive.
                Phase::Idle if self.protocol == Protocol::H2 => {}
                _ if self.protocol == Protocol::H2 => {
                    let idle = self.timeouts.idle;
                    self.arm(Phase::Idle, idle);
                }
                Phase::Head { started: true } => {}
                // A new connection's budget already runs from accept.
                Phase::Head { started: false } => self.phase = Phase::Head { started: true },
                Phase::Idle | Phase::Busy => {
                    let header = self.timeouts.header;
                    self.arm(Phase::Head { started: true }, header);
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // Copy out the few bytes the protocol sniff needs before borrowing
                // `this` mutably.
                let fresh = &buf.filled()[before..];
                let mut head = [0u8; 24];
                let n = fresh.len().min(head.len());
                head[..n].copy_from_slice(&fresh[..n]);
                this.arrived(&head[..n]);
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if this.activity.busy() {
            this.phase = Phase::Busy;
            this.activity.reader.register(cx.waker());
            // The last request may have ended meanwhile; then its wake was missed.
            if this.activity.busy() {
                return Poll::Pending;
            }
        }
        if this.phase == Phase::Busy {
            let idle = this.timeouts.idle;
            this.arm(Phase::Idle, idle);
        }
        // Shutdown: a connection with nothing in flight closes now (end of stream).
        if this.stop.is_cancelled() || this.stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        if this.deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.phase {
            Phase::Head { started: true } if this.protocol == Protocol::Http1 => {
                // Nothing has been written on this connection since its last answer,
                // so a whole response fits in the empty send buffer; best effort.
                let _ = Pin::new(&mut this.io).poll_write(cx, HEADER_TIMEOUT_RESPONSE);
                let _ = Pin::new(&mut this.io).poll_flush(cx);
                if let Some(telemetry) = &this.telemetry {
                    telemetry.record_client_error("request_header_timeout");
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete within header_read_timeout",
                )))
            }
            // Idle, or silent since accept: close without a word, as nginx does.
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

pin_project! {
    /// A response body that keeps its request counted as in flight until hyper has
    /// written (or dropped) it.
    pub(crate) struct Counted<B> {
        #[pin]
        inner: B,
        active: Option<Active>,
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A service's response future whose response comes out [`Counted`].
    pub(crate) struct CountedFuture<F> {
        #[pin]
        inner: F,
        active: Option<Active>,
    }
}

impl<F> CountedFuture<F> {
    pub(crate) fn new(inner: F, active: Active) -> CountedFuture<F> {
        CountedFuture {
            inner,
            active: Some(active),
        }
    }
}

impl<F, B, E> Future for CountedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<Counted<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx));
        let active = this.active.take();
        Poll::Ready(response.map(|r| r.map(|inner| Counted { inner, active })))
    }
}
