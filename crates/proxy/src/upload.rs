//! The client's request body as veer reads it: at most the route's
//! `max_request_body` bytes, and never silent for longer than `body_read_timeout`.
//!
//! A body that breaks those limits, or that the client frames badly, fails with a
//! [`ClientFault`]. The fault travels inside the upstream error when it happens
//! while forwarding, so the handler can tell a client's fault from a backend's
//! ([`ClientFault::find`]) and never count it against the backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// What the client did wrong with its request body.
#[derive(Debug, thiserror::Error)]
pub enum ClientFault {
    /// The body is larger than the route allows.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The route's `max_request_body`.
        limit: u64,
    },
    /// Nothing arrived for `timeout` while the body was incomplete.
    #[error("the request body stalled for {timeout:?}")]
    Stalled {
        /// `limits.body_read_timeout`.
        timeout: Duration,
    },
    /// The body's framing is broken (bad chunked encoding, closed early).
    #[error("the request body could not be read")]
    Broken(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ClientFault {
    /// The client fault somewhere in `error`'s chain of causes, if one caused it.
    pub(crate) fn find<'e>(
        error: &'e (dyn std::error::Error + 'static),
    ) -> Option<&'e ClientFault> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(fault) = e.downcast_ref::<ClientFault>() {
                return Some(fault);
            }
            cause = e.source();
        }
        None
    }
}

/// Where reading the body stands, shared with the handler: whether the proxy is
/// waiting on the client right now. A backend timeout while it is, is the client's.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU8);

const READING: u8 = 0;
const WAITING_ON_CLIENT: u8 = 1;
const DONE: u8 = 2;

impl Progress {
    /// True while the body is incomplete and no bytes are waiting to be read.
    pub(crate) fn waiting_on_client(&self) -> bool {
        self.0.load(Ordering::Relaxed) == WAITING_ON_CLIENT
    }
}

/// A client's request body, bounded in size and in silence.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
    limit: u64,
    read: u64,
    stall: Duration,
    /// Armed while the client is silent; made the first time it is.
    silence: Option<Pin<Box<Sleep>>>,
    /// Shared with the handler, for bodies that are not empty.
    progress: Option<Arc<Progress>>,
}

impl ClientBody {
    /// Reads `inner` under `limit` bytes and a `stall` timeout.
    pub(crate) fn new(inner: Incoming, limit: u64, stall: Duration) -> ClientBody {
        // Most requests (GETs) have no body: no shared state for them.
        let progress = (!inner.is_end_stream()).then(Arc::default);
        ClientBody {
            inner,
            limit,
            read: 0,
            stall,
            silence: None,
            progress,
        }
    }

    /// The shared reading state, when the body is not empty.
    pub(crate) fn progress(&self) -> Option<Arc<Progress>> {
        self.progress.clone()
    }

    /// True when the declared length already breaks the limit: answer 413 before
    /// anything goes upstream.
    pub(crate) fn declared_too_large(&self) -> Option<ClientFault> {
        (self.inner.size_hint().lower() > self.limit)
            .then_some(ClientFault::TooLarge { limit: self.limit })
    }

    fn mark(&self, state: u8) {
        if let Some(p) = &self.progress {
            p.0.store(state, Ordering::Relaxed);
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientFault;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.limit {
                        this.mark(DONE);
                        return Poll::Ready(Some(Err(ClientFault::TooLarge { limit: this.limit })));
                    }
                }
                this.mark(READING);
                // Re-armed from now the next time the client goes quiet.
                if let Some(silence) = this.silence.as_mut() {
                    let deadline = tokio::time::Instant::now() + this.stall;
                    silence.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.mark(DONE);
                Poll::Ready(Some(Err(ClientFault::Broken(e.into()))))
            }
            Poll::Ready(None) => {
                this.mark(DONE);
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.mark(WAITING_ON_CLIENT);
                let stall = this.stall;
                let silence = this
                    .silence
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match silence.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.mark(DONE);
                        Poll::Ready(Some(Err(ClientFault::Stalled { timeout: stall })))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
