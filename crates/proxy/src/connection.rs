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
//! - once shutdown begins, an HTTP/1 connection closes at once (HTTP/2 ones get
//!   GOAWAY from the graceful shutdown).
//!
//! While a request is in flight the connection has no read deadline of its own: the
//! request body and the backend have theirs. Writing has one at all times: a client
//! that stops reading its answers (its socket stays full) is cut off after
//! `idle_timeout`, so it cannot hold a connection slot and a backend permit forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use http::StatusCode;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use veer_telemetry::Telemetry;

use crate::error::raw_answer;

/// The answer to a request head that did not arrive in time.
static HEADER_TIMEOUT_ANSWER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    raw_answer(
        StatusCode::REQUEST_TIMEOUT,
        "request_header_timeout",
        "the request head did not arrive in time",
        "",
    )
});

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
    /// Requests ever started: a request that began and ended between two reads
    /// (pipelined, answered from hyper's buffer) still counts as activity.
    started: AtomicU64,
    /// The connection's reader, parked while a request was in flight: woken when the
    /// last one ends, so the idle clock starts then and not at the next byte.
    reader: AtomicWaker,
    /// Signalled when an HTTP/2 connection has been idle too long: its task ends it
    /// gracefully (GOAWAY), which a stream of bytes cannot do.
    idle: Notify,
}

impl Activity {
    /// Marks a request in flight until the guard (kept in its response body) drops.
    pub(crate) fn start(self: &Arc<Self>) -> Active {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Active(self.clone())
    }

    fn busy(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }

    /// Resolves when the connection's idle time is up and it should be ended
    /// gracefully (HTTP/2).
    pub(crate) async fn idle_closed(&self) {
        self.idle.notified().await;
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
    /// An idle HTTP/2 connection being ended gracefully: no deadline any more.
    Ending,
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
    /// Preface bytes matched so far, while the protocol is unknown.
    sniffed: usize,
    /// [`Activity`]'s count of started requests when last looked at.
    seen: u64,
    /// Bytes handed to the socket and not yet flushed: no raw answer may go out.
    unflushed: bool,
    /// Armed while the client does not take what veer writes (its window is full):
    /// a client that stops reading is cut off after `idle` (nginx's send_timeout).
    write_stall: Option<Pin<Box<Sleep>>>,
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
            sniffed: 0,
            seen: 0,
            unflushed: false,
            write_stall: None,
            stop: stop.clone(),
            stopped: Box::pin(stop.clone().cancelled_owned()),
            telemetry,
        }
    }

    fn arm(&mut self, phase: Phase, after: Duration) {
        self.phase = phase;
        self.deadline.as_mut().reset(Instant::now() + after);
    }

    /// Tells HTTP/2 prior knowledge from HTTP/1 by the preface, across reads: HTTP/1
    /// at the first byte that differs from it, HTTP/2 only once it is whole.
    fn sniff(&mut self, fresh: &[u8]) {
        for byte in fresh {
            if self.protocol != Protocol::Unknown {
                return;
            }
            if *byte != H2_PREFACE[self.sniffed] {
                self.protocol = Protocol::Http1;
            } else {
                self.sniffed += 1;
                if self.sniffed == H2_PREFACE.len() {
                    self.protocol = Protocol::H2;
                }
            }
        }
    }

    /// True (and the phase made Busy) when a request is in flight or one started
    /// since the last look.
    fn busy(&mut self) -> bool {
        let started = self.activity.started.load(Ordering::Acquire);
        if started != self.seen {
            self.seen = started;
            self.phase = Phase::Busy;
        }
        if self.activity.busy() {
            self.phase = Phase::Busy;
            return true;
        }
        false
    }

    /// Notes bytes that just arrived.
    fn arrived(&mut self, fresh: &[u8]) {
        self.sniff(fresh);
        if self.busy() || fresh.is_empty() {
            return;
        }
        match self.phase {
            // HTTP/2 frames between requests (the preface, settings, pings) are not a
            // head: the connection is idle, and they do not keep it alive.
            Phase::Idle | Phase::Ending if self.protocol == Protocol::H2 => {}
            _ if self.protocol == Protocol::H2 => {
                let idle = self.timeouts.idle;
                self.arm(Phase::Idle, idle);
            }
            Phase::Head { started: true } => {}
            // A new connection's budget already runs from accept.
            Phase::Head { started: false } => self.phase = Phase::Head { started: true },
            Phase::Idle | Phase::Busy | Phase::Ending => {
                let header = self.timeouts.header;
                self.arm(Phase::Head { started: true }, header);
            }
        }
    }

    /// Notes how a write went: progress disarms the stall clock, a full socket arms
    /// it, and past it the write fails.
    fn wrote<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_stall = None;
            return polled;
        }
        let after = self.timeouts.idle;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client has not read its answer within idle_timeout",
            ))),
            Poll::Pending => Poll::Pending,
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
        if this.busy() {
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
        // Shutdown: an HTTP/1 connection with nothing in flight closes now (end of
        // stream); an HTTP/2 one is sent GOAWAY by the graceful shutdown instead.
        let stopping = this.stop.is_cancelled() || this.stopped.as_mut().poll(cx).is_ready();
        if stopping && this.protocol != Protocol::H2 {
            return Poll::Ready(Ok(()));
        }
        if this.phase == Phase::Ending || this.deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.phase {
            Phase::Head { started: true } if this.protocol == Protocol::Http1 => {
                // Only when every earlier answer is flushed can a whole response go
                // out without landing inside one; then it fits the empty send buffer.
                if !this.unflushed {
                    let _ = Pin::new(&mut this.io).poll_write(cx, &HEADER_TIMEOUT_ANSWER);
                    let _ = Pin::new(&mut this.io).poll_flush(cx);
                }
                if let Some(telemetry) = &this.telemetry {
                    telemetry.record_client_error("request_header_timeout");
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete within header_read_timeout",
                )))
            }
            // An idle HTTP/2 connection gets a GOAWAY from its task, not an end of
            // stream that could cut a request crossing it.
            Phase::Idle if this.protocol == Protocol::H2 => {
                this.phase = Phase::Ending;
                this.activity.idle.notify_one();
                Poll::Pending
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
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        // Written, or waiting to be: either way not flushed yet.
        this.unflushed |= !buf.is_empty();
        this.wrote(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.unflushed |= bufs.iter().any(|b| !b.is_empty());
        this.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            this.unflushed = false;
        }
        this.wrote(cx, polled)
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
