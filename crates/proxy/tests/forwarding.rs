//! The proxy in-process over real loopback sockets: what reaches the backend, what
//! comes back, and what veer answers itself when a backend fails.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::start;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use veer_testkit::{Behavior, TestBackend};

fn one_backend(url: &str, timeout: &str) -> String {
    format!(
        r#"
[backends.model]
url = "{url}"
timeout = "{timeout}"

[[routes]]
name = "models"
match = {{ path_prefix = "/v1/" }}
split = [ {{ backend = "model", weight = 1 }} ]
"#
    )
}

#[tokio::test]
async fn request_head_is_rewritten_for_the_backend() {
    let backend = TestBackend::start(Behavior::Inspect).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let answer = proxy
        .client
        .get(
            "/v1/models/churn:predict?x=1",
            &[
                ("host", "api.example.com"),
                ("connection", "x-private"),
                ("x-private", "hop"),
                ("x-forwarded-for", "10.9.9.9"),
                ("x-request-id", "req-42"),
                ("x-model-input", "kept"),
            ],
        )
        .await
        .expect("answer");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-veer-backend"), "model");
    assert_eq!(answer.header("x-request-id"), "req-42");
    let seen = answer.json();
    assert_eq!(seen["uri"], "/v1/models/churn:predict?x=1");
    assert_eq!(seen["version"], "HTTP/1.1");
    let h = &seen["headers"];
    assert_eq!(h["host"][0], backend.addr().to_string());
    assert_eq!(h["x-forwarded-host"][0], "api.example.com");
    assert_eq!(h["x-forwarded-for"][0], "10.9.9.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "http");
    assert_eq!(h["x-request-id"][0], "req-42");
    assert_eq!(h["x-model-input"][0], "kept");
    assert!(
        h.get("x-private").is_none(),
        "Connection-named header leaked: {h}"
    );
    assert!(
        h.get("connection").is_none_or(|c| c[0] != "x-private"),
        "{h}"
    );
}

#[tokio::test]
async fn a_request_id_is_generated_when_the_client_sends_none() {
    let backend = TestBackend::start(Behavior::Inspect).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    let sent = answer.json()["headers"]["x-request-id"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sent.len(), 32);
    assert_eq!(answer.header("x-request-id"), sent);
}

#[tokio::test]
async fn large_bodies_round_trip_byte_for_byte() {
    let backend = TestBackend::start(Behavior::Echo).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let body: Bytes = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let answer = proxy
        .client
        .send(Method::POST, "/v1/echo", &[], body.clone())
        .await
        .expect("answer");
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body == body, "echoed body differs");
}

/// Both directions stream: each chunk the client sends comes back through the proxy
/// before the client sends the next, so neither side was buffered whole.
#[tokio::test]
async fn bodies_stream_both_ways_chunk_by_chunk() {
    let backend = TestBackend::start(Behavior::Echo).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let (mut body_tx, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    let request = Request::post("/v1/stream").body(body).expect("request");
    let first = Bytes::from_static(b"chunk-0;");
    body_tx
        .send_data(first.clone())
        .await
        .expect("send first chunk");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("response head before the request body ended")
        .expect("response");
    let mut response_body = response.into_body();
    for i in 1..=5 {
        let frame = tokio::time::timeout(Duration::from_secs(10), response_body.frame())
            .await
            .expect("echoed chunk arrives while the request is still open")
            .expect("a frame")
            .expect("no body error");
        let data = frame.into_data().expect("data frame");
        assert!(data.starts_with(b"chunk-"), "{data:?}");
        body_tx
            .send_data(Bytes::from(format!("chunk-{i};")))
            .await
            .expect("send next chunk");
    }
    drop(body_tx);
    let rest = response_body.collect().await.expect("rest").to_bytes();
    assert!(rest.ends_with(b"chunk-5;"), "{rest:?}");
}

#[tokio::test]
async fn no_route_is_404_with_a_json_body() {
    let backend = TestBackend::start(Behavior::Fixed("x".into())).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let answer = proxy.client.get("/other", &[]).await.expect("answer");
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("content-type"), "application/json");
    let body = answer.json();
    assert_eq!(body["error"], "no_route");
    assert_eq!(body["message"], "no route matches GET /other");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn refused_connection_is_502_naming_the_backend() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let proxy = start(&one_backend(&url, "5s")).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let body = answer.json();
    assert_eq!(body["error"], "backend_unreachable");
    assert_eq!(body["backend"], "model");
    assert!(
        body["message"].as_str().unwrap().contains("refused"),
        "{body}"
    );
}

#[tokio::test]
async fn backend_closing_the_connection_is_502() {
    let backend = TestBackend::start(Behavior::Closes).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["error"], "backend_failed");
    assert_eq!(answer.json()["backend"], "model");
}

#[tokio::test]
async fn backend_past_its_timeout_is_504() {
    let backend = TestBackend::start(Behavior::Hangs).await;
    let proxy = start(&one_backend(&backend.url(), "200ms")).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    let body = answer.json();
    assert_eq!(body["error"], "backend_timeout");
    assert_eq!(body["backend"], "model");
    assert_eq!(
        body["message"],
        "backend \"model\" did not answer within 200ms"
    );
}

#[tokio::test]
async fn backend_error_statuses_pass_through_untouched() {
    let backend = TestBackend::start(Behavior::Status(503)).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.text(), "status 503");
    assert_eq!(answer.header("x-veer-backend"), "model");
}

/// A request keeps the snapshot it arrived with: reloading mid-request to a config
/// that sends everything elsewhere does not redirect it.
#[tokio::test]
async fn a_request_in_flight_finishes_on_the_routes_it_started_with() {
    let slow = TestBackend::start(Behavior::Slow(Duration::from_millis(600))).await;
    let fast = TestBackend::start(Behavior::Fixed("fast".into())).await;
    let proxy = start(&one_backend(&slow.url(), "5s")).await;
    let client = proxy.client.clone();
    let in_flight = tokio::spawn(async move { client.get("/v1/x", &[]).await });
    while slow.requests() == 0 {
        tokio::task::yield_now().await;
    }
    let reloaded = proxy
        .reload(&one_backend(&fast.url(), "5s"))
        .await
        .expect("accepted");
    assert_eq!(reloaded.generation, 2);
    let after = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(after.text(), "fast");
    let before = in_flight.await.expect("task").expect("answer");
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.text(), "slow");
}

#[tokio::test]
async fn http2_clients_are_served_too() {
    let backend = TestBackend::start(Behavior::Inspect).await;
    let proxy = start(&one_backend(&backend.url(), "5s")).await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let request = Request::get("http://api.example.com/v1/h2")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["headers"]["x-forwarded-host"][0], "api.example.com");
}
