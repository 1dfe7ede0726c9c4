//! Upstream faults over real loopback sockets: dead, hung and mid-body-stalled
//! backends, the keep-alive race, a saturated backend, and outlier ejection.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::start;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use veer_testkit::{Behavior, TestBackend};

fn one_backend(url: &str, extra: &str) -> String {
    timed_backend(url, "500ms", extra)
}

fn timed_backend(url: &str, timeout: &str, extra: &str) -> String {
    format!(
        r#"
[backends.model]
url = "{url}"
timeout = "{timeout}"
{extra}

[[routes]]
name = "models"
split = [ {{ backend = "model", weight = 1 }} ]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backends_fail_fast_and_hung_ones_at_their_timeout() {
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let proxy = start(&one_backend(&format!("http://{dead}"), "")).await;
    let sent = Instant::now();
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error"], "backend_unreachable");
    assert!(
        sent.elapsed() < Duration::from_millis(300),
        "{:?}",
        sent.elapsed()
    );

    // A timeout long enough that ±10 % is wider than a loaded machine's jitter.
    let hung = TestBackend::start(Behavior::Hangs).await;
    let proxy = start(&timed_backend(&hung.url(), "3s", "")).await;
    let sent = Instant::now();
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    let took = sent.elapsed();
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["error"], "backend_timeout");
    assert!(
        took >= Duration::from_millis(2700) && took <= Duration::from_millis(3300),
        "504 at the 3 s timeout, ±10 %: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_stalling_mid_body_is_cut_at_its_timeout() {
    let addr = common::raw_backend(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst ten.",
        true,
    )
    .await;
    let proxy = start(&one_backend(
        &format!("http://{addr}"),
        "max_connections = 1",
    ))
    .await;
    let sent = Instant::now();
    let outcome = proxy.client.get("/v1/x", &[]).await;
    let took = sent.elapsed();
    assert!(outcome.is_err(), "the body cannot complete: {outcome:?}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "cut at the timeout: {took:?}"
    );
    // The backend's only permit came back with the cut: the next request is not
    // refused as saturated (it is cut too, but it was let through).
    let next = proxy.client.get("/v1/x", &[]).await;
    assert!(
        next.is_err(),
        "let through to the stalling backend: {next:?}"
    );
    let in_flight = [("role", "live")];
    assert_eq!(
        proxy
            .metric_falls_to("veer_in_flight_requests", &in_flight, 0.0)
            .await,
        0.0,
        "no request is left counted in flight"
    );
}

/// What a counting backend has seen: connections accepted in all, and open now.
#[derive(Clone, Default)]
struct Connections {
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

/// A backend that answers "ok" after `delay`, never closes an idle connection
/// itself, and counts its connections.
async fn counts_connections(delay: Duration) -> (SocketAddr, Connections) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Connections::default();
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.accepted.fetch_add(1, Ordering::SeqCst);
            counted.open.fetch_add(1, Ordering::SeqCst);
            let open = counted.open.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_kept_alive_and_shared_only_in_turn() {
    let (backend, Connections { accepted, .. }) =
        counts_connections(Duration::from_millis(100)).await;
    let proxy = start(&one_backend(&format!("http://{backend}"), "")).await;
    for _ in 0..5 {
        let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
        assert_eq!(
            (answer.status.as_u16(), answer.text()),
            (200, "ok".to_owned())
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection, in turn"
    );
    // Eight at once need eight connections (one is the kept one); eight more at once
    // after them find those eight ready and open none.
    for round in 0..2 {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let client = proxy.client.clone();
                tokio::spawn(async move { client.get("/v1/x", &[]).await })
            })
            .collect();
        for call in calls {
            let answer = call.await.expect("task").expect("answer");
            assert_eq!(answer.status, 200, "round {round}: {}", answer.text());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 8, "after round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_connection_idle_past_four_seconds_is_not_reused_but_a_slow_answer_keeps_its() {
    let (backend, Connections { accepted, .. }) =
        counts_connections(Duration::from_millis(4_200)).await;
    let config = format!(
        r#"
[backends.model]
url = "http://{backend}"
timeout = "10s"

[[routes]]
name = "models"
split = [ {{ backend = "model", weight = 1 }} ]
"#
    );
    let proxy = start(&config).await;
    let get = || async { proxy.client.get("/v1/x", &[]).await.expect("answer").status };
    // Idle time counts from the end of the answer, not from when the request went
    // out 4.2 s before: the second request takes the same connection.
    assert_eq!(get().await, 200);
    assert_eq!(get().await, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // Idle past 4 s: given up before the backend would (uvicorn: 5 s), a new one.
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    assert_eq!(get().await, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A burst's connections are closed once idle past 4 s even when no request comes
/// to close them at checkout: the pool's sweep does it, within a few seconds more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bursts_idle_connections_are_closed_without_further_traffic() {
    let (backend, Connections { open, .. }) = counts_connections(Duration::from_millis(200)).await;
    let proxy = start(&one_backend(&format!("http://{backend}"), "")).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let client = proxy.client.clone();
            tokio::spawn(async move { client.get("/v1/x", &[]).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("task").expect("answer").status, 200);
    }
    let idle_since = Instant::now();
    assert_eq!(
        open.load(Ordering::SeqCst),
        10,
        "one connection per request"
    );
    let deadline = idle_since + Duration::from_secs(15);
    while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_after = idle_since.elapsed();
    assert_eq!(open.load(Ordering::SeqCst), 0, "all closed by veer");
    assert!(
        closed_after >= Duration::from_secs(4) && closed_after < Duration::from_secs(10),
        "closed after 4 s idle, by a sweep every 2 s: {closed_after:?}"
    );
}

/// A backend that closes keep-alive connections idle for 1 s, as many servers do.
async fn closes_idle_after_one_second() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(1))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keep_alive_race_costs_no_request() {
    let backend = closes_idle_after_one_second().await;
    let proxy = start(&one_backend(&format!("http://{backend}"), "")).await;
    let mut failed = Vec::new();
    for i in 0..20 {
        let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
        if answer.status != 200 {
            failed.push((i, answer.status, answer.text()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(failed.is_empty(), "{failed:?}");
}

/// A backend that reads the first connection's request and resets it (RST, no
/// answer), then serves every later connection: the sharp end of the keep-alive
/// race, where the backend's close lands after the request's bytes.
async fn resets_its_first_connection() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let mut head = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut head).await;
            let _ = stream.set_zero_linger();
        }
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reset_before_any_answer_is_sent_again_when_idempotent() {
    let backend = resets_its_first_connection().await;
    let proxy = start(&one_backend(&format!("http://{backend}"), "")).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (200, "ok".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_post_is_not_sent_again() {
    let backend = resets_its_first_connection().await;
    let proxy = start(&one_backend(&format!("http://{backend}"), "")).await;
    let answer = proxy
        .client
        .send(http::Method::POST, "/v1/x", &[], Bytes::from_static(b"{}"))
        .await
        .expect("answer");
    assert_eq!(answer.status, 502, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_not_sent_again_when_the_backend_says_retry_false() {
    let backend = resets_its_first_connection().await;
    let proxy = start(&one_backend(&format!("http://{backend}"), "retry = false")).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, 502, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_backend_answers_503_at_once() {
    let slow = TestBackend::start(Behavior::Slow(Duration::from_millis(400))).await;
    let proxy = start(&one_backend(&slow.url(), "max_connections = 2")).await;
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let client = proxy.client.clone();
            tokio::spawn(async move { client.get("/v1/x", &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = Instant::now();
    let refused = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert!(
        sent.elapsed() < Duration::from_millis(50),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["error"], "backend_saturated");
    assert_eq!(refused.header("retry-after"), "1");
    for call in busy {
        assert_eq!(call.await.expect("task").expect("answer").status, 200);
    }
    // Permits come back when the answers end.
    assert_eq!(
        proxy.client.get("/v1/x", &[]).await.expect("answer").status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_ejected_and_its_users_return_after() {
    let v1 = TestBackend::start(Behavior::Fixed("v1".into())).await;
    let v2 = TestBackend::start(Behavior::Status(500)).await;
    let config = format!(
        r#"
[backends.v1]
url = "{}"
[backends.v2]
url = "{}"
outlier = {{ consecutive_failures = 3, ejection = "1s" }}

[[routes]]
name = "canary"
split = [ {{ backend = "v1", weight = 50 }}, {{ backend = "v2", weight = 50 }} ]
split_by = {{ header = "x-user-id" }}
"#,
        v1.url(),
        v2.url()
    );
    let proxy = start(&config).await;
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let backend_of = |answer: &veer_testkit::Answer| answer.header("x-veer-backend").to_owned();
    let mut on_v2 = Vec::new();
    for user in &users {
        let answer = proxy
            .client
            .get("/x", &[("x-user-id", user)])
            .await
            .expect("answer");
        if backend_of(&answer) == "v2" {
            on_v2.push(user.clone());
        }
    }
    assert!(
        on_v2.len() >= 3,
        "enough users on v2 to eject it: {}",
        on_v2.len()
    );
    let ejected = |proxy: &common::Harness| {
        proxy
            .routes
            .load()
            .ejections()
            .any(|(name, out)| name == "v2" && out)
    };
    assert!(ejected(&proxy), "three 500s in a row eject v2");
    for user in &on_v2 {
        let answer = proxy
            .client
            .get("/x", &[("x-user-id", user)])
            .await
            .expect("answer");
        assert_eq!(
            backend_of(&answer),
            "v1",
            "{user} is served by v1 meanwhile"
        );
        assert_eq!(answer.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!ejected(&proxy), "back after its ejection");
    let answer = proxy
        .client
        .get("/x", &[("x-user-id", &on_v2[0])])
        .await
        .expect("answer");
    assert_eq!(backend_of(&answer), "v2", "sticky users return to v2");
}
