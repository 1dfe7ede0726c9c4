//! The client's request body as veer reads it: at most the route's
//! `max_request_body` bytes, and never silent for longer than `body_read_timeout`.
//!
//! A body that breaks those limits, or that the client frames badly, fails with a
//! [`ClientFault`]. The fault travels inside the upstream error when it happens
//! while forwarding, so the handler can tell a client's fault from a backend's
//! ([`ClientFault::find`]) and never count it against the backend.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::silence::Silence;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// What the client did wrong with its request body.
#[derive(Debug, thiserror::Error)]
pub enum ClientFault {
    /// The body is larger than the route allows.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The route's `max_request_body`.
        limit: u64,
    },
    /// The body did not arrive in time: nothing for `body_read_timeout`, or not
    /// all of it within the backend's timeout.
    #[error("the request body did not arrive in time ({timeout:?})")]
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
/// waiting on the client right now, whether the body is complete, and the fault
/// that ended it, if one did. Some upstream errors lose the body's own error (an
/// HTTP/2 backend's stream is just reset), so the fault is kept here too.
#[derive(Debug)]
pub(crate) struct Progress {
    state: AtomicU8,
    limit: u64,
    stall: Duration,
}

const READING: u8 = 0;
const WAITING_ON_CLIENT: u8 = 1;
const DONE: u8 = 2;
const TOO_LARGE: u8 = 3;
const STALLED: u8 = 4;
const BROKEN: u8 = 5;

impl Progress {
    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Relaxed);
    }

    /// True while the body is incomplete and the client has not failed it: a
    /// timeout now is the upload's, not the backend's.
    pub(crate) fn open(&self) -> bool {
        matches!(
            self.state.load(Ordering::Relaxed),
            READING | WAITING_ON_CLIENT
        )
    }

    /// The fault that ended the body, if the client caused one.
    pub(crate) fn fault(&self) -> Option<ClientFault> {
        match self.state.load(Ordering::Relaxed) {
            TOO_LARGE => Some(ClientFault::TooLarge { limit: self.limit }),
            STALLED => Some(ClientFault::Stalled {
                timeout: self.stall,
            }),
            BROKEN => Some(ClientFault::Broken(
                "the client broke its request body".into(),
            )),
            _ => None,
        }
    }
}

/// A client's request body, bounded in size and in silence.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
    limit: u64,
    read: u64,
    silence: Silence,
    /// Shared with the handler, for bodies that are not empty.
    progress: Option<Arc<Progress>>,
}

impl ClientBody {
    /// Reads `inner` under `limit` bytes and a `stall` timeout.
    pub(crate) fn new(inner: Incoming, limit: u64, stall: Duration) -> ClientBody {
        // Most requests (GETs) have no body: no shared state for them.
        let progress = (!inner.is_end_stream()).then(|| {
            Arc::new(Progress {
                state: AtomicU8::new(READING),
                limit,
                stall,
            })
        });
        ClientBody {
            inner,
            limit,
            read: 0,
            silence: Silence::new(stall),
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
            p.set(state);
        }
    }

    fn fail(
        &self,
        state: u8,
        fault: ClientFault,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        self.mark(state);
        Poll::Ready(Some(Err(fault)))
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
                        let limit = this.limit;
                        return this.fail(TOO_LARGE, ClientFault::TooLarge { limit });
                    }
                }
                this.silence.heard();
                this.mark(if this.inner.is_end_stream() {
                    DONE
                } else {
                    READING
                });
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(BROKEN, ClientFault::Broken(e.into())),
            Poll::Ready(None) => {
                this.mark(DONE);
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.mark(WAITING_ON_CLIENT);
                match this.silence.poll_quiet(cx) {
                    Poll::Ready(()) => {
                        let timeout = this.silence.limit();
                        this.fail(STALLED, ClientFault::Stalled { timeout })
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
