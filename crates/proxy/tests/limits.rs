//! The client listener's limits over raw loopback sockets: slow and idle clients
//! are closed, a full listener answers 503, and a client's faulty upload is a 4xx
//! that never counts against the backend it was routed to.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use veer_proxy::server;
use veer_testkit::{Behavior, TestBackend};

fn limited(backend: &str, limits: &str) -> String {
    format!(
        r#"
[limits]
{limits}

[backends.model]
url = "{backend}"
timeout = "5s"

[[routes]]
name = "models"
split = [ {{ backend = "model", weight = 1 }} ]
"#
    )
}

/// Everything the server sends until it closes (or `within` passes).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `request` on a fresh connection and returns the whole answer (requests
/// say `connection: close`).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_to_close(&mut stream, Duration::from_secs(10)).await
}

const GET: &[u8] = b"GET /v1/x HTTP/1.1\r\nhost: t\r\n\r\n";

/// Asserts a raw answer's body is exactly as long as its `content-length` says.
fn assert_whole(answer: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let declared: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|n| n.trim().parse().ok())
        .expect("a content-length");
    assert_eq!(declared, body.len(), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_get_408_while_other_clients_are_served() {
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let proxy = start(&limited(&backend.url(), "header_read_timeout = \"1s\"")).await;
    let addr = proxy.addr;
    let started = Instant::now();
    let trickles: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let (mut read, mut write) = stream.split();
                // Half start like HTTP/2's preface does ("P"), which must not make
                // them look like HTTP/2.
                let head: &[u8] = if i % 2 == 0 {
                    b"GET /v1/x HTTP/1.1\r\nx-slow: 0123456789abcdef"
                } else {
                    b"POST /v1/x HTTP/1.1\r\nx-slow: 0123456789abcdef"
                };
                let trickle = async {
                    for byte in head {
                        if write.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                };
                let mut answer = Vec::new();
                let reading =
                    tokio::time::timeout(Duration::from_secs(8), read.read_to_end(&mut answer));
                tokio::select! {
                    _ = reading => {}
                    () = trickle => {}
                }
                (
                    String::from_utf8_lossy(&answer).into_owned(),
                    started.elapsed(),
                )
            })
        })
        .collect();

    let mut latencies = Vec::new();
    for _ in 0..100 {
        let sent = Instant::now();
        let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
        assert_eq!(answer.status, 200);
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    assert!(
        latencies[98] < Duration::from_millis(50),
        "p99 {:?} while 50 clients trickle",
        latencies[98]
    );

    for trickle in trickles {
        let (answer, after) = trickle.await.expect("trickle task");
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout"),
            "got {answer:?}"
        );
        assert!(answer.contains(r#""error":"request_header_timeout""#));
        assert_whole(&answer);
        assert!(after < Duration::from_secs(4), "closed after {after:?}");
    }
    assert_eq!(
        proxy.metric(
            "veer_client_errors_total",
            &[("reason", "request_header_timeout")]
        ),
        50.0
    );
    assert_eq!(
        backend.requests(),
        100,
        "no partial head reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_silent_connections_are_closed() {
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let proxy = start(&limited(
        &backend.url(),
        "idle_timeout = \"500ms\"\nheader_read_timeout = \"300ms\"",
    ))
    .await;

    // Keep-alive, one request answered, then nothing: closed at the idle timeout.
    let mut kept = TcpStream::connect(proxy.addr).await.expect("connect");
    kept.write_all(GET).await.expect("write");
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_from = Instant::now();
    let rest = read_to_close(&mut kept, Duration::from_secs(5)).await;
    let idle = idle_from.elapsed();
    assert_eq!(rest, "", "closed without another word");
    assert!(
        idle >= Duration::from_millis(400) && idle < Duration::from_secs(3),
        "idle connection closed after {idle:?}"
    );

    // Silent from the start: closed at the header timeout, without an answer.
    let mut silent = TcpStream::connect(proxy.addr).await.expect("connect");
    let opened = Instant::now();
    assert_eq!(read_to_close(&mut silent, Duration::from_secs(5)).await, "");
    let silent_for = opened.elapsed();
    assert!(
        silent_for >= Duration::from_millis(250) && silent_for < Duration::from_secs(2),
        "closed at the header timeout: {silent_for:?}"
    );

    // Two pipelined requests in one write, both answered, then nothing: closed
    // quietly, with no 408 written into it. Which of the two timeouts ends it
    // depends on when hyper starts waiting for the next head after a pipelined
    // batch (seen both ways in CI), so the bound is the shorter one.
    let mut piped = TcpStream::connect(proxy.addr).await.expect("connect");
    piped.write_all(&[GET, GET].concat()).await.expect("write");
    let piped_from = Instant::now();
    let all = read_to_close(&mut piped, Duration::from_secs(5)).await;
    assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all:?}");
    assert!(!all.contains("408"), "{all:?}");
    let piped_for = piped_from.elapsed();
    assert!(
        piped_for >= Duration::from_millis(250) && piped_for < Duration::from_secs(3),
        "closed at a timeout, not at once: {piped_for:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_answers_503_and_keeps_serving_the_open_connections() {
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let proxy = start(&limited(&backend.url(), "max_connections = 4")).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        stream.write_all(GET).await.expect("write");
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(stream);
    }

    let refused_at = Instant::now();
    let refused = exchange(proxy.addr, GET).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "got {refused:?}");
    assert!(refused.contains(r#""error":"too_many_connections""#));
    assert!(refused.contains("retry-after: 1"));
    assert_whole(&refused);
    assert!(refused_at.elapsed() < Duration::from_secs(2));

    for stream in &mut open {
        stream.write_all(GET).await.expect("write");
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("answer");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "open ones still served"
        );
    }

    // One closes: its slot is free for the next client.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = exchange(
            proxy.addr,
            b"GET /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was never reused: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A burst of new connections past the standard library's backlog of 128, all
/// arriving before any is accepted, is held by the kernel: every handshake completes
/// at once, none is dropped to be retried a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_backlog_rather_than_being_dropped() {
    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..600 {
        connecting.spawn(tokio::time::timeout(
            Duration::from_millis(500),
            TcpStream::connect(addr),
        ));
    }
    let mut connected = Vec::new();
    while let Some(outcome) = connecting.join_next().await {
        if let Ok(Ok(Ok(stream))) = outcome {
            connected.push(stream);
        }
    }
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
    assert_eq!(
        connected.len(),
        600,
        "every handshake completes at once (the kernel caps the backlog at net.core.somaxconn = {})",
        cap.trim()
    );
    // And they are all there to be accepted.
    for _ in 0..600 {
        let accepted = tokio::time::timeout(Duration::from_secs(1), listener.accept()).await;
        assert!(
            matches!(accepted, Ok(Ok(_))),
            "a queued connection is accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_uploads_are_4xx_and_never_count_against_the_backend() {
    faulty_uploads(false).await;
}

/// An HTTP/2 backend's stream is only reset when the client's body fails: the
/// fault must still be the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_uploads_to_an_http2_backend_are_the_client_s_too() {
    faulty_uploads(true).await;
}

async fn faulty_uploads(h2: bool) {
    // Reads the whole body before answering, as a model server does.
    let backend = TestBackend::start(Behavior::Records("{}".into())).await;
    let mut config = limited(
        &backend.url(),
        "max_request_body = \"1KiB\"\nbody_read_timeout = \"500ms\"",
    );
    if h2 {
        config = config.replace("timeout = \"5s\"", "timeout = \"5s\"\nprotocol = \"h2\"");
    }
    let proxy = start(&config).await;
    let addr = proxy.addr;

    let declared = exchange(
        addr,
        b"POST /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 2048\r\n\r\n",
    )
    .await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(declared.contains(r#""error":"request_body_too_large""#));
    assert_eq!(
        backend.requests(),
        0,
        "refused before anything went upstream"
    );

    let chunk = format!("3e8\r\n{}\r\n", "x".repeat(1000));
    let chunked = exchange(
        addr,
        format!("POST /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");

    let stalled_at = Instant::now();
    let stalled = exchange(
        addr,
        b"POST /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 100\r\n\r\nonly ten..",
    )
    .await;
    assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled}");
    assert!(stalled.contains(r#""error":"request_body_timeout""#));
    assert!(stalled_at.elapsed() < Duration::from_secs(3));

    let broken = exchange(
        addr,
        b"POST /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnot hex\r\n0\r\n\r\n",
    )
    .await;
    assert!(broken.starts_with("HTTP/1.1 400"), "{broken}");
    assert!(broken.contains(r#""error":"bad_request_body""#));

    assert_eq!(
        proxy.metric("veer_requests_total", &[("backend", "model")]),
        0.0,
        "no exchange was recorded against the backend"
    );
    for (reason, count) in [
        ("request_body_too_large", 2.0),
        ("request_body_timeout", 1.0),
        ("bad_request_body", 1.0),
    ] {
        assert_eq!(
            proxy.metric("veer_client_errors_total", &[("reason", reason)]),
            count,
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_lives_for_the_idle_timeout_not_the_header_timeout() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let proxy = start(&limited(
        &backend.url(),
        "header_read_timeout = \"300ms\"\nidle_timeout = \"1200ms\"",
    ))
    .await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    let closed = tokio::spawn(connection);
    let request = || {
        http::Request::get(format!("http://{}/v1/x", proxy.addr))
            .body(Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    // Idle longer than the header timeout between requests: still open.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = sender.send_request(request()).await.expect("first answer");
    assert_eq!(answer.status(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = sender.send_request(request()).await.expect("second answer");
    assert_eq!(answer.status(), 200);
    // Idle past the idle timeout: veer ends it with a GOAWAY, so the client's
    // connection finishes cleanly rather than breaking.
    let ended = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .expect("the connection task");
    assert!(ended.is_ok(), "ended gracefully: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_frees_the_backend() {
    let big = "x".repeat(16 * 1024 * 1024);
    let backend = TestBackend::start(Behavior::Fixed(big)).await;
    let config = limited(&backend.url(), "idle_timeout = \"1s\"")
        .replace("timeout = \"5s\"", "timeout = \"5s\"\nmax_connections = 1");
    let proxy = start(&config).await;
    let mut stalled = TcpStream::connect(proxy.addr).await.expect("connect");
    stalled.write_all(GET).await.expect("write");
    // Read nothing: veer's writes fill the socket and stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(
        busy.status, 503,
        "the only backend permit is held meanwhile"
    );
    // Cut at the 1 s idle timeout, well before the backend's 5 s one could.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
        if answer.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled reader still holds the backend"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
