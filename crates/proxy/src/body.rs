//! The bodies veer moves: requests to a backend, responses to the client, and the
//! two places a shadowed request's bytes are kept (the buffered request, the teed
//! live response), both bounded.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::grpc::GrpcCall;
use crate::silence::Silence;
use crate::upload::{ClientBody, ClientFault, Progress};

/// A request body on its way to a backend.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// Streamed from the client as it arrives (no shadow).
    Streamed(ClientBody),
    /// Buffered whole, so a shadow gets the same bytes.
    Buffered(Full<Bytes>),
    /// Too large to mirror: the part already read, then the rest as it arrives.
    Replayed {
        /// Chunks read before the limit was passed.
        prefix: VecDeque<Bytes>,
        /// The remainder, streamed.
        rest: ClientBody,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientFault;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        match self.get_mut() {
            RequestBody::Streamed(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Buffered(body) => poll_full(body, cx),
            RequestBody::Replayed { prefix, rest } => match prefix.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streamed(body) => body.is_end_stream(),
            RequestBody::Buffered(body) => body.is_end_stream(),
            RequestBody::Replayed { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streamed(body) => body.size_hint(),
            RequestBody::Buffered(body) => body.size_hint(),
            RequestBody::Replayed { prefix, rest } => {
                let buffered: u64 = prefix.iter().map(|c| c.len() as u64).sum();
                let mut hint = rest.size_hint();
                // Upper first: `set_lower` asserts the lower bound stays at or below
                // the upper one.
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint.set_lower(hint.lower().saturating_add(buffered));
                hint
            }
        }
    }
}

/// Polls a [`Full`] body as one of veer's bodies (it cannot fail).
fn poll_full<E>(
    body: &mut Full<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, E>>> {
    Pin::new(body)
        .poll_frame(cx)
        .map(|f| f.map(|f| f.map_err(|never| match never {})))
}

/// What reading a client body for a mirror came to.
pub(crate) enum MirrorRead {
    /// The whole body, within the limits.
    Whole(Bytes),
    /// Not the whole body: forward what was read and the rest as it arrives
    /// ([`RequestBody::Replayed`]); the mirror is skipped.
    Partial {
        /// The body for the live request, intact.
        body: RequestBody,
        /// Why the mirror cannot have it.
        cut: Cut,
    },
}

/// Why a body was not read whole for a mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Larger than `shadow.max_body`.
    TooLarge,
    /// Not complete in time: the client is uploading slowly or has stalled.
    TooSlow,
    /// The bytes being read for the shadow backend's mirrors reached their budget.
    NoRoom,
}

/// Reads `body` whole if it is at most `limit` bytes, complete within `time`, and
/// every chunk finds room in `budget` (permits are bytes, held only while reading);
/// otherwise stops at the first chunk that does not fit (or when the time is up) and
/// hands back what it read with the rest still streaming, so the live request loses
/// nothing and waits no longer than `time` for the mirror's sake.
pub(crate) async fn read_for_mirror(
    mut body: ClientBody,
    limit: u64,
    time: Duration,
    budget: &Semaphore,
) -> Result<MirrorRead, ClientFault> {
    if body.size_hint().lower() > limit {
        return Ok(MirrorRead::Partial {
            body: RequestBody::Streamed(body),
            cut: Cut::TooLarge,
        });
    }
    // A sleep, not `Instant + time`: it saturates instead of overflowing for the
    // longest timeouts a config may give.
    let deadline = tokio::time::sleep(time);
    tokio::pin!(deadline);
    let mut prefix = VecDeque::new();
    let mut read = 0u64;
    let mut reserved: Option<SemaphorePermit<'_>> = None;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => match frame {
                Some(frame) => frame?,
                None => break,
            },
            () = &mut deadline => {
                let body = RequestBody::Replayed { prefix, rest: body };
                return Ok(MirrorRead::Partial { body, cut: Cut::TooSlow });
            }
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        read += chunk.len() as u64;
        let room = u32::try_from(chunk.len())
            .ok()
            .and_then(|n| budget.try_acquire_many(n).ok());
        prefix.push_back(chunk);
        let cut = match room {
            _ if read > limit => Cut::TooLarge,
            None => Cut::NoRoom,
            Some(room) => {
                match reserved.as_mut() {
                    Some(held) => held.merge(room),
                    None => reserved = Some(room),
                }
                continue;
            }
        };
        let body = RequestBody::Replayed { prefix, rest: body };
        return Ok(MirrorRead::Partial { body, cut });
    }
    Ok(MirrorRead::Whole(concat(prefix.make_contiguous())))
}

/// Chunks joined into one buffer (without a copy when there is only one).
pub(crate) fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [only] => only.clone(),
        _ => {
            let mut whole = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                whole.extend_from_slice(chunk);
            }
            whole.freeze()
        }
    }
}

/// The live response as the shadow's comparison sees it.
#[derive(Debug)]
pub(crate) enum LiveCapture {
    /// The live answer, complete and within the compare limit.
    Complete {
        /// Its status.
        status: u16,
        /// Its body, as the chunks it arrived in: they are joined on the compare
        /// pool, not on the thread serving the client.
        chunks: Vec<Bytes>,
    },
    /// Complete, but larger than the compare limit.
    TooLarge,
    /// The live request failed, or the response ended early (the client left, the
    /// backend reset): why.
    Failed(Cow<'static, str>),
}

/// A response body on its way to the client.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// A backend's body, streamed through; the backend's in-flight permit is held
    /// until it ends.
    Streamed {
        body: UpstreamBody,
        /// Recorded when the body ends, for a gRPC call.
        call: Option<Box<GrpcCall>>,
        _permit: OwnedSemaphorePermit,
    },
    /// A backend's body, streamed through while a copy is kept for the shadow.
    Teed {
        tee: Tee,
        /// Recorded when the body ends, for a gRPC call.
        call: Option<Box<GrpcCall>>,
        _permit: OwnedSemaphorePermit,
    },
    /// A body veer wrote itself.
    Local(Full<Bytes>),
}

impl ResponseBody {
    /// A body veer wrote.
    pub(crate) fn local(bytes: Bytes) -> ResponseBody {
        ResponseBody::Local(Full::new(bytes))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        match self.get_mut() {
            ResponseBody::Streamed { body, call, .. } => {
                let polled = ready!(Pin::new(body).poll_frame(cx));
                if let Some(call) = call {
                    call.observe(&polled);
                }
                Poll::Ready(polled)
            }
            ResponseBody::Teed { tee, call, .. } => {
                let polled = ready!(Pin::new(tee).poll_frame(cx));
                if let Some(call) = call {
                    call.observe(&polled);
                }
                Poll::Ready(polled)
            }
            ResponseBody::Local(body) => poll_full(body, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Streamed { body, .. } => body.is_end_stream(),
            ResponseBody::Teed { tee, .. } => tee.inner.is_end_stream(),
            ResponseBody::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Streamed { body, .. } => body.size_hint(),
            ResponseBody::Teed { tee, .. } => tee.inner.size_hint(),
            ResponseBody::Local(body) => body.size_hint(),
        }
    }
}

/// Why a backend's response body stopped short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamBodyError {
    /// The connection broke or the framing was bad.
    #[error("the backend's response body broke")]
    Broken(#[source] hyper::Error),
    /// Nothing arrived for the backend's timeout: the connection is given up.
    #[error("the backend's response body stalled for {0:?}")]
    Stalled(Duration),
}

/// A backend's response body, never silent for longer than the backend's timeout
/// once the request is whole: a backend that stalls mid-body has the exchange (and
/// its connection) dropped then, instead of holding the client and the in-flight
/// permit forever. While the client is still uploading (a streaming call), a quiet
/// backend is waiting for it, not stalled.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    inner: Incoming,
    silence: Silence,
    upload: Option<Arc<Progress>>,
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: Incoming,
        stall: Duration,
        upload: Option<Arc<Progress>>,
    ) -> UpstreamBody {
        UpstreamBody {
            inner,
            silence: Silence::new(stall),
            upload,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.silence.heard();
                Poll::Ready(frame.map(|f| f.map_err(UpstreamBodyError::Broken)))
            }
            Poll::Pending if this.upload.as_deref().is_some_and(Progress::open) => {
                this.silence.heard();
                Poll::Pending
            }
            Poll::Pending => match this.silence.poll_quiet(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(UpstreamBodyError::Stalled(this.silence.limit()))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Streams a live response to the client while keeping up to `limit` bytes of it;
/// when it ends (or is dropped early) the capture goes to the waiting shadow task.
/// Chunks are kept by reference count, never copied here. Once the shadow task has
/// stopped waiting (it timed out), nothing more is kept.
#[derive(Debug)]
pub(crate) struct Tee {
    inner: UpstreamBody,
    /// The status the comparison sees (for gRPC, set from the trailers).
    status: u16,
    /// The response is gRPC: its status comes in its trailers.
    grpc: bool,
    kept: Vec<Bytes>,
    kept_len: u64,
    limit: u64,
    over_limit: bool,
    done: Option<oneshot::Sender<LiveCapture>>,
}

impl Tee {
    /// Tees `inner` (a response with `status`) into `done`.
    pub(crate) fn new(
        inner: UpstreamBody,
        status: u16,
        grpc: bool,
        limit: u64,
        done: oneshot::Sender<LiveCapture>,
    ) -> Tee {
        Tee {
            inner,
            status,
            grpc,
            kept: Vec::new(),
            kept_len: 0,
            limit,
            over_limit: false,
            done: Some(done),
        }
    }

    fn finish(&mut self, capture: LiveCapture) {
        if let Some(done) = self.done.take() {
            // The shadow task may be gone (timed out); nothing is waiting then.
            let _ = done.send(capture);
        }
    }

    fn complete(&mut self) -> LiveCapture {
        if self.over_limit {
            return LiveCapture::TooLarge;
        }
        LiveCapture::Complete {
            status: self.status,
            chunks: std::mem::take(&mut self.kept),
        }
    }

    /// Whether anyone still waits for the capture.
    fn wanted(&mut self) -> bool {
        if self.done.as_ref().is_some_and(|done| done.is_closed()) {
            self.done = None;
            self.kept = Vec::new();
        }
        self.done.is_some()
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if !this.wanted() {
                    return polled;
                }
                if let Some(trailers) = frame.trailers_ref().filter(|_| this.grpc) {
                    let grpc = crate::grpc::status(trailers).unwrap_or(crate::grpc::UNKNOWN);
                    this.status = crate::grpc::http_equivalent(grpc);
                }
                if let Some(chunk) = frame.data_ref() {
                    this.kept_len += chunk.len() as u64;
                    if this.kept_len > this.limit {
                        this.over_limit = true;
                        this.kept.clear();
                    } else {
                        this.kept.push(chunk.clone());
                    }
                }
                if this.inner.is_end_stream() {
                    let capture = this.complete();
                    this.finish(capture);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let reason = format!("live response broke: {e}");
                this.finish(LiveCapture::Failed(reason.into()));
            }
            Poll::Ready(None) => {
                let capture = this.complete();
                this.finish(capture);
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish(LiveCapture::Failed(
            "the live response was not sent to the end (client gone?)".into(),
        ));
    }
}

impl LiveCapture {
    /// The capture of a response whose body is already known to be empty (a 204,
    /// an answer to HEAD, `content-length: 0`): hyper never polls such a body, so
    /// it is not teed.
    pub(crate) fn empty(status: u16) -> LiveCapture {
        LiveCapture::Complete {
            status,
            chunks: Vec::new(),
        }
    }
}
