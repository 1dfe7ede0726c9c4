//! gRPC-shaped exchanges over real HTTP/2 sockets: trailers reach the client, and a
//! call is counted with its `grpc-status` when it ends.

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::start;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// An HTTP/2 backend answering every call like a gRPC server: a message, then the
/// status `grpc` in the trailers; or, when `trailers_only`, the status in the head.
async fn grpc_backend(grpc: &'static str, trailers_only: bool) -> SocketAddr {
    grpc_backend_saying(grpc, trailers_only, b"\0\0\0\0\x02hi").await
}

/// As [`grpc_backend`], answering with the gRPC message bytes `message`.
async fn grpc_backend_saying(
    grpc: &'static str,
    trailers_only: bool,
    message: &'static [u8],
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let saw_te = req.headers().get("te").cloned();
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static(grpc));
                trailers.insert("x-model-version", HeaderValue::from_static("v2"));
                let frames = if trailers_only {
                    VecDeque::new()
                } else {
                    VecDeque::from([
                        Frame::data(Bytes::from_static(message)),
                        Frame::trailers(trailers),
                    ])
                };
                let mut response = Response::new(Frames(frames));
                let h = response.headers_mut();
                h.insert("content-type", HeaderValue::from_static("application/grpc"));
                if trailers_only {
                    h.insert("grpc-status", HeaderValue::from_static(grpc));
                }
                if let Some(te) = saw_te {
                    h.insert("x-saw-te", te);
                }
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A response body that yields the frames it was given, then ends.
struct Frames(VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn config(backend: SocketAddr) -> String {
    format!(
        r#"
[backends.v2]
url = "http://{backend}"
protocol = "h2"

[[routes]]
name = "grpc"
split = [ {{ backend = "v2", weight = 1 }} ]
"#
    )
}

/// A gRPC-like call through veer over h2c: status, trailers and what the backend saw.
async fn call(proxy: SocketAddr) -> (Response<()>, Option<HeaderMap>) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let req = Request::post(format!("http://{proxy}/veer.test.Model/Predict"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Empty::new())
        .expect("request");
    let response = client.request(req).await.expect("answer");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    (
        Response::from_parts(parts, ()),
        collected.trailers().cloned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_through_and_the_status_is_counted_when_the_call_ends() {
    let backend = grpc_backend("14", false).await;
    let proxy = start(&config(backend)).await;
    let (head, trailers) = call(proxy.addr).await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["x-saw-te"],
        "trailers",
        "te: trailers reaches the server"
    );
    let trailers = trailers.expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "14");
    assert_eq!(trailers["x-model-version"], "v2");
    let counted = proxy
        .metric_reaches(
            "veer_requests_total",
            &[("backend", "v2"), ("code", "grpc_14")],
            1.0,
        )
        .await;
    assert_eq!(counted, 1.0);
    assert_eq!(proxy.metric("veer_requests_total", &[("code", "200")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailers_only_answer_is_counted_at_once() {
    let backend = grpc_backend("5", true).await;
    let proxy = start(&config(backend)).await;
    let (head, _) = call(proxy.addr).await;
    assert_eq!(head.headers()["grpc-status"], "5");
    assert_eq!(
        proxy.metric(
            "veer_requests_total",
            &[("backend", "v2"), ("code", "grpc_5")]
        ),
        1.0
    );
}

fn shadowed(live: SocketAddr, shadow: SocketAddr) -> String {
    compared(live, shadow, "status")
}

/// A gRPC route on `live`, mirrored to `shadow`, compared in `mode`.
fn compared(live: SocketAddr, shadow: SocketAddr, mode: &str) -> String {
    format!(
        r#"
[backends.live]
url = "http://{live}"
protocol = "h2"

[backends.shadow]
url = "http://{shadow}"
protocol = "h2"

[[routes]]
name = "grpc"
split = [ {{ backend = "live", weight = 1 }} ]

[routes.shadow]
backend = "shadow"

[routes.compare]
mode = "{mode}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_shadow_is_judged_by_its_grpc_status() {
    let ok = grpc_backend("0", false).await;
    let not_found = grpc_backend("5", false).await;
    let also_ok = grpc_backend("0", false).await;

    let differs = start(&shadowed(ok, not_found)).await;
    let (head, trailers) = call(differs.addr).await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        trailers.expect("trailers")["grpc-status"],
        "0",
        "the live answer"
    );
    let diverged = differs
        .metric_reaches(
            "veer_shadow_comparisons_total",
            &[("outcome", "diverged")],
            1.0,
        )
        .await;
    assert_eq!(
        diverged, 1.0,
        "NOT_FOUND beside OK diverges though both are HTTP 200"
    );
    assert_eq!(
        differs.metric(
            "veer_requests_total",
            &[("role", "shadow"), ("code", "grpc_5")]
        ),
        1.0
    );

    let agrees = start(&shadowed(ok, also_ok)).await;
    call(agrees.addr).await;
    let matched = agrees
        .metric_reaches(
            "veer_shadow_comparisons_total",
            &[("outcome", "match")],
            1.0,
        )
        .await;
    assert_eq!(matched, 1.0);
}

/// In `exact` mode a gRPC pair is judged by its message bytes too (no protobuf
/// decoding), and still by its grpc-status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_shadow_in_exact_mode_compares_the_message_bytes() {
    let says_hi = grpc_backend_saying("0", false, b"\0\0\0\0\x02hi").await;
    let says_ho = grpc_backend_saying("0", false, b"\0\0\0\0\x02ho").await;
    let also_hi = grpc_backend_saying("0", false, b"\0\0\0\0\x02hi").await;
    let hi_not_found = grpc_backend_saying("5", false, b"\0\0\0\0\x02hi").await;
    for (shadow, outcome) in [
        (says_ho, "diverged"),
        (also_hi, "match"),
        (hi_not_found, "diverged"),
    ] {
        let proxy = start(&compared(says_hi, shadow, "exact")).await;
        let (head, trailers) = call(proxy.addr).await;
        assert_eq!(head.status(), 200);
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
        let judged = proxy
            .metric_reaches(
                "veer_shadow_comparisons_total",
                &[("outcome", outcome)],
                1.0,
            )
            .await;
        assert_eq!(judged, 1.0, "{shadow}: {outcome}");
        let total = proxy.metric("veer_shadow_comparisons_total", &[]);
        assert_eq!(total, 1.0, "{shadow}: one pair, judged once");
    }
}
