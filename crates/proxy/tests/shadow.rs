//! Shadow mode over real sockets: the live answer never waits on the shadow, limits
//! hold, the copy is faithful, and comparisons land in the metrics and the log.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{file_name, shadowed, start, Harness};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use veer_testkit::{Behavior, TestBackend};

const COMPARISONS: &str = "veer_shadow_comparisons_total";

fn outcome(proxy: &Harness, route: &str, outcome: &str) -> f64 {
    proxy.metric(COMPARISONS, &[("route", route), ("outcome", outcome)])
}

/// The 2 s shadow must not show up in the live latency: every one of 40 requests is
/// answered far sooner than the shadow could answer even one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_does_not_delay_the_live_answer() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Slow(Duration::from_secs(2))).await;
    let proxy = start(&shadowed("slow", &live.url(), &shadow.url(), "10s", "")).await;
    let mut worst = Duration::ZERO;
    for _ in 0..40 {
        let started = Instant::now();
        let answer = proxy
            .client
            .get("/slow/predict", &[])
            .await
            .expect("answer");
        worst = worst.max(started.elapsed());
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.text(), r#"{"predictions":[1]}"#);
    }
    assert!(
        worst < Duration::from_millis(500),
        "slowest live answer took {worst:?}"
    );
    assert!(shadow.requests() >= 1, "the shadow was mirrored to");
}

/// nginx's `mirror` makes the next request on a keep-alive connection wait for the
/// mirror; here 100 requests on one connection with a 1 s shadow finish well under 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keep_alive_connection_is_not_held_by_the_shadow() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Slow(Duration::from_secs(1))).await;
    let proxy = start(&shadowed(
        "keepalive",
        &live.url(),
        &shadow.url(),
        "10s",
        "",
    ))
    .await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let started = Instant::now();
    for _ in 0..100 {
        sender.ready().await.expect("the connection is kept alive");
        let request = Request::post("/keepalive/predict")
            .header("host", "veer")
            .body(Full::new(Bytes::from_static(b"{\"instances\":[1]}")))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.expect("body");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "100 requests took {took:?}");
    assert!(
        shadow.requests() >= 50,
        "mirrors were sent: {}",
        shadow.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_and_refused_shadows_leave_live_traffic_error_free() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let hung = TestBackend::start(Behavior::Hangs).await;
    let refused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused_url = format!("http://{}", refused.local_addr().expect("addr"));
    drop(refused);
    let mut proxies = Vec::new();
    for (route, shadow_url) in [("hung", hung.url()), ("refused", refused_url)] {
        let proxy = start(&shadowed(route, &live.url(), &shadow_url, "300ms", "")).await;
        for _ in 0..200 {
            let answer = proxy
                .client
                .get(&format!("/{route}/p"), &[])
                .await
                .expect("answer");
            assert_eq!(answer.status, StatusCode::OK, "{route}: {}", answer.text());
        }
        proxies.push(proxy);
    }
    let timeouts = proxies[0]
        .metric_reaches(COMPARISONS, &[("outcome", "timeout")], 1.0)
        .await;
    assert!(timeouts >= 1.0, "hung shadow timed out: {timeouts}");
    let errors = proxies[1]
        .metric_reaches(COMPARISONS, &[("outcome", "shadow_error")], 200.0)
        .await;
    assert_eq!(errors, 200.0);
}

/// A black-holed shadow holds exactly `max_in_flight` mirrors; every further one is
/// dropped and counted, not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_past_max_in_flight_are_dropped_and_counted_exactly() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let hung = TestBackend::start(Behavior::Hangs).await;
    let proxy = start(&shadowed(
        "dropped",
        &live.url(),
        &hung.url(),
        "60s",
        "max_in_flight = 8",
    ))
    .await;
    for _ in 0..100 {
        let answer = proxy.client.get("/dropped/p", &[]).await.expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(outcome(&proxy, "dropped", "dropped"), 92.0);
    let in_flight: usize = proxy
        .metric_reaches(COMPARISONS, &[("route", "dropped")], 92.0)
        .await as usize;
    assert_eq!(
        in_flight, 92,
        "the 8 in flight are still waiting on the black hole"
    );
    // The hung backend saw at most 8 connections: nothing was queued for it.
    assert!(
        hung.requests() <= 8,
        "{} connections to the black hole",
        hung.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_goes_live_intact_and_the_mirror_is_skipped() {
    let live = TestBackend::start(Behavior::Echo).await;
    let shadow = TestBackend::start(Behavior::Records("{}".into())).await;
    let proxy = start(&shadowed(
        "skipped",
        &live.url(),
        &shadow.url(),
        "5s",
        "max_body = \"1KiB\"",
    ))
    .await;
    let big: Bytes = (0..5_000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        let answer = proxy
            .client
            .send(Method::POST, "/skipped/p", &[], big.clone())
            .await
            .expect("answer");
        assert!(answer.body == big, "the live backend got the body intact");
    }
    // Without a content-length (chunked), the limit is found while reading; the part
    // already read is replayed ahead of the rest.
    let chunked = chunked_post(proxy.addr, "/skipped/p", &big).await;
    assert!(
        chunked == big,
        "chunked body reached the live backend intact"
    );
    assert_eq!(outcome(&proxy, "skipped", "skipped"), 4.0);
    assert!(shadow.received().is_empty());
}

/// POSTs `body` in 1 KiB chunks with no content-length; returns the response body.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, body: &Bytes) -> Bytes {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let (mut tx, channel) = http_body_util::channel::Channel::<Bytes>::new(4);
    let request = Request::post(path)
        .header("host", "veer")
        .body(channel)
        .expect("request");
    let chunks: Vec<Bytes> = body.chunks(1024).map(Bytes::copy_from_slice).collect();
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send_data(chunk).await.is_err() {
                break;
            }
        }
    });
    let response = sender.send_request(request).await.expect("response");
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gets_a_byte_identical_copy_marked_as_a_shadow() {
    let live = TestBackend::start(Behavior::Records(r#"{"predictions":[1]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Records(r#"{"predictions":[1]}"#.into())).await;
    let proxy = start(&shadowed("copy", &live.url(), &shadow.url(), "5s", "")).await;
    let body: Bytes = (0..100 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let answer = proxy
        .client
        .send(
            Method::POST,
            "/copy/predict?v=2",
            &[
                ("x-request-id", "req-copy"),
                ("content-type", "application/octet-stream"),
            ],
            body.clone(),
        )
        .await
        .expect("answer");
    assert_eq!(answer.status, StatusCode::OK);
    proxy
        .metric_reaches(COMPARISONS, &[("route", "copy")], 1.0)
        .await;
    let (live_got, shadow_got) = (live.received(), shadow.received());
    assert_eq!((live_got.len(), shadow_got.len()), (1, 1));
    assert!(
        shadow_got[0].body == body,
        "shadow body differs from what the client sent"
    );
    assert!(
        live_got[0].body == body,
        "live body differs from what the client sent"
    );
    let h = &shadow_got[0].headers;
    assert_eq!(h["x-veer-shadow"], "1");
    assert_eq!(h["x-request-id"], "req-copy");
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["host"], shadow.addr().to_string());
    assert!(!live_got[0].headers.contains_key("x-veer-shadow"));
    assert_eq!(outcome(&proxy, "copy", "match"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparisons_are_counted_and_divergent_pairs_logged() {
    let live = TestBackend::start(Behavior::Fixed(
        r#"{"predictions":[[0.1,0.9]],"model_version":"v1"}"#.into(),
    ))
    .await;
    let agreeing = TestBackend::start(Behavior::Fixed(
        r#"{"predictions":[[0.105,0.895]],"model_version":"v2"}"#.into(),
    ))
    .await;
    let flipped = TestBackend::start(Behavior::Fixed(
        r#"{"predictions":[[0.7,0.3]],"model_version":"v2"}"#.into(),
    ))
    .await;
    let log = std::env::temp_dir().join(format!("veer-divergence-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);

    let ignore = "[routes.compare]\nabs_tolerance = 0.01\nignore = [\"/model_version\"]";
    let same = shadowed("agree", &live.url(), &agreeing.url(), "5s", "")
        .replace("[routes.compare]\nabs_tolerance = 0.01", ignore);
    let proxy = start(&same).await;
    for _ in 0..5 {
        proxy.client.get("/agree/p", &[]).await.expect("answer");
    }
    assert_eq!(
        proxy
            .metric_reaches(
                COMPARISONS,
                &[("route", "agree"), ("outcome", "match")],
                5.0
            )
            .await,
        5.0
    );
    assert_eq!(
        proxy.metric(
            "veer_shadow_label_agreements_total",
            &[("route", "agree"), ("agree", "true")]
        ),
        5.0
    );

    let logged = format!("divergence_log = \"{}\"", file_name(&log));
    let differ = shadowed("differ", &live.url(), &flipped.url(), "5s", &logged)
        .replace("[routes.compare]\nabs_tolerance = 0.01", ignore);
    let proxy = start(&differ).await;
    for i in 0..3 {
        proxy
            .client
            .send(
                http::Method::POST,
                "/differ/p",
                &[("x-request-id", &format!("d-{i}"))],
                bytes::Bytes::from(format!("{{\"instances\": [[{i}]]}}")),
            )
            .await
            .expect("answer");
    }
    assert_eq!(
        proxy
            .metric_reaches(
                COMPARISONS,
                &[("route", "differ"), ("outcome", "diverged")],
                3.0
            )
            .await,
        3.0
    );
    assert_eq!(
        proxy.metric(
            "veer_shadow_label_agreements_total",
            &[("route", "differ"), ("agree", "false")]
        ),
        3.0
    );
    assert!(
        proxy
            .routes
            .telemetry()
            .render()
            .contains("veer_shadow_abs_deviation"),
        "deviation recorded"
    );

    let lines = veer_testkit::wait_for_json_lines(&log, 3).await;
    assert!(
        lines.len() >= 3,
        "{} of 3 lines in {}",
        lines.len(),
        log.display()
    );
    let first = &lines[0];
    assert_eq!(first["route"], "differ");
    assert_eq!(first["live_backend"], "live");
    assert_eq!(first["shadow_backend"], "shadow");
    assert_eq!(first["live_status"], 200);
    assert!(first["request_id"].as_str().unwrap().starts_with("d-"));
    // Which input diverged: the request body each line's pair was sent.
    for line in &lines {
        let i = line["request_id"]
            .as_str()
            .unwrap()
            .trim_start_matches("d-");
        assert_eq!(line["request_body"], format!("{{\"instances\": [[{i}]]}}"));
    }
    assert_eq!(first["differences"][0]["pointer"], "/predictions/0/0");
    assert_eq!(first["differences"][0]["live"], 0.1);
    assert_eq!(first["differences"][0]["shadow"], 0.7);
    assert_eq!(first["label_agreement"], false);
    assert!(first["shadow_body"].as_str().unwrap().contains("0.7"));
    let _ = std::fs::remove_file(&log);
}

/// A client that stalls its upload never holds a shadow permit: the body is read for
/// the mirror before a permit is taken, and only up to the shadow's timeout. With
/// `max_in_flight = 8`, eight uploads stalled mid-body leave mirroring on for the
/// next twenty well-formed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_stalled_uploads_do_not_stop_the_next_twenty_from_being_mirrored() {
    use tokio::io::AsyncWriteExt;
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let proxy = start(&shadowed(
        "stalled",
        &live.url(),
        &shadow.url(),
        "5s",
        "max_in_flight = 8",
    ))
    .await;
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        let head =
            "POST /stalled/p HTTP/1.1\r\nhost: veer\r\ncontent-length: 1000\r\n\r\n{\"instances\":";
        stream.write_all(head.as_bytes()).await.expect("write");
        stalled.push(stream);
    }
    // All eight are inside veer, reading their bodies, before the twenty start.
    let in_flight = proxy
        .metric_reaches("veer_in_flight_requests", &[("role", "live")], 8.0)
        .await;
    assert_eq!(in_flight, 8.0);
    for i in 0..20 {
        let id = format!("well-formed-{i}");
        let answer = proxy
            .client
            .send(
                Method::POST,
                "/stalled/p",
                &[("x-request-id", &id)],
                Bytes::from_static(b"{\"instances\":[1]}"),
            )
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
        // One pair at a time, so none is dropped for the mirrors of the others.
        proxy
            .metric_reaches(COMPARISONS, &[("outcome", "match")], f64::from(i + 1))
            .await;
    }
    let matched = proxy.metric(COMPARISONS, &[("outcome", "match")]);
    assert_eq!(
        matched, 20.0,
        "every well-formed request was mirrored and compared"
    );
    assert_eq!(outcome(&proxy, "stalled", "dropped"), 0.0);
    drop(stalled);
}

/// A mirror waits for the live answer no longer than the shadow's timeout: past it
/// the pair is a `timeout`, and its permit is free for the next mirror long before
/// the slow live answer ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_waits_for_a_slow_live_answer_only_until_the_shadow_timeout() {
    let live = TestBackend::start(Behavior::Slow(Duration::from_secs(4))).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let proxy = start(&shadowed(
        "waits",
        &live.url(),
        &shadow.url(),
        "300ms",
        "max_in_flight = 1",
    ))
    .await;
    let client = proxy.client.clone();
    let first = tokio::spawn(async move { client.get("/waits/p", &[]).await });
    // The first mirror gives up 300 ms after its shadow answered, while the first
    // live answer is still seconds away; the second request comes then (a moment
    // after the outcome is counted, for the permit to be let go just after it).
    let first_gave_up = proxy
        .metric_reaches(COMPARISONS, &[("outcome", "timeout")], 1.0)
        .await;
    assert_eq!(first_gave_up, 1.0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = proxy.client.get("/waits/p", &[]).await.expect("answer");
    let first = first.await.expect("task").expect("answer");
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK)
    );
    let timed_out = proxy
        .metric_reaches(COMPARISONS, &[("outcome", "timeout")], 2.0)
        .await;
    assert_eq!(
        timed_out, 2.0,
        "both pairs gave up waiting on the live answer"
    );
    assert_eq!(
        outcome(&proxy, "waits", "dropped"),
        0.0,
        "the permit came back"
    );
    assert_eq!(shadow.requests(), 2);
}

/// Reading a request body for a mirror has the shadow's timeout as its deadline: an
/// upload that pauses past it goes live whole, and its mirror is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_pausing_past_the_shadow_timeout_goes_live_and_skips_its_mirror() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let live = TestBackend::start(Behavior::Echo).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let proxy = start(&shadowed(
        "paused",
        &live.url(),
        &shadow.url(),
        "500ms",
        "max_in_flight = 1",
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (first, rest) = ("{\"instances\":", "[[1, 2]]}");
    let head = format!(
        "POST /paused/p HTTP/1.1\r\nhost: veer\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{first}",
        first.len() + rest.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let skipped = proxy
        .metric_reaches(COMPARISONS, &[("outcome", "skipped")], 1.0)
        .await;
    assert_eq!(skipped, 1.0, "the mirror gave up on the paused upload");
    stream.write_all(rest.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Echoed in two chunks, as it came.
    assert!(
        answer.contains(first) && answer.contains(rest),
        "the live backend got it whole: {answer}"
    );
    assert_eq!(shadow.requests(), 0, "nothing was mirrored");
    // The permit was never taken: the next request is mirrored.
    let next = proxy.client.get("/paused/p", &[]).await.expect("answer");
    assert_eq!(next.status, StatusCode::OK);
    let judged = proxy.metric_reaches(COMPARISONS, &[], 2.0).await;
    assert_eq!(judged, 2.0);
    assert_eq!(outcome(&proxy, "paused", "dropped"), 0.0);
}

/// A divergent value of a megabyte still gives a log line of at most 16 KiB, with
/// the cut marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_differing_value_logs_a_line_of_at_most_16_kib() {
    let big = |c: char| format!(r#"{{"predictions":["{}"]}}"#, c.to_string().repeat(1 << 20));
    let live = TestBackend::start(Behavior::Fixed(big('a'))).await;
    let shadow = TestBackend::start(Behavior::Fixed(big('b'))).await;
    let log = common::temp_path("divergence-cut", "jsonl");
    let config = shadowed(
        "cut",
        &live.url(),
        &shadow.url(),
        "5s",
        &format!("divergence_log = \"{}\"", file_name(&log)),
    )
    .replace(
        "[routes.compare]\nabs_tolerance = 0.01",
        "[routes.compare]\nmax_body = \"2MiB\"",
    );
    let proxy = start(&config).await;
    let answer = proxy.client.get("/cut/p", &[]).await.expect("answer");
    assert_eq!(
        answer.body.len(),
        big('a').len(),
        "the client got the whole answer"
    );
    let text = wait_for_text(&log).await;
    let line = text.lines().next().expect("one line");
    assert!(line.len() <= 16 * 1024, "{} bytes", line.len());
    let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(record["differences"][0]["pointer"], "/predictions/0");
    assert_eq!(record["differences"][0]["cut"], true);
    assert_eq!(record["live_body_bytes"], big('a').len());
    let _ = std::fs::remove_file(&log);
}

/// The text of the file at `path` once it holds a whole line (up to 20 s).
async fn wait_for_text(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bodies being read for one shadow backend's mirrors hold at most
/// `max_in_flight × max_body` bytes: with room for two 1 KiB bodies, a third
/// upload in progress is not buffered for a mirror (dropped, counted) and reaches
/// the live backend intact, while the two that found room are mirrored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_being_read_for_mirrors_are_bounded_in_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let live = TestBackend::start(Behavior::Echo).await;
    let shadow = TestBackend::start(Behavior::Fixed("{}".into())).await;
    let proxy = start(&shadowed(
        "budget",
        &live.url(),
        &shadow.url(),
        "5s",
        "max_in_flight = 2\nmax_body = \"1KiB\"",
    ))
    .await;
    let mut uploads = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        let head = "POST /budget/p HTTP/1.1\r\nhost: veer\r\ncontent-length: 1024\r\n\r\n";
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&[b'x'; 1000]).await.expect("write");
        uploads.push(stream);
    }
    let dropped = proxy
        .metric_reaches(COMPARISONS, &[("outcome", "dropped")], 1.0)
        .await;
    assert_eq!(dropped, 1.0, "the third body found no room");
    // The uploads finish: each body reaches the live backend whole.
    for stream in &mut uploads {
        stream.write_all(&[b'y'; 24]).await.expect("write");
    }
    let whole = format!("{}{}", "x".repeat(1000), "y".repeat(24));
    for mut stream in uploads {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 4096];
            while !answer.ends_with(whole.as_bytes()) {
                let n = stream.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(read.is_ok(), "the live answer came back");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with(&whole), "{text}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while shadow.requests() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        shadow.requests(),
        2,
        "the two that found room were mirrored"
    );
    assert_eq!(proxy.metric(COMPARISONS, &[("outcome", "dropped")]), 1.0);
}

/// A live answer with no body (`content-length: 0`) is captured as empty, not as a
/// failed live request: hyper never reads such a body, so it is not teed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_live_answer_is_compared_as_empty() {
    let live = TestBackend::start(Behavior::Fixed(String::new())).await;
    let shadow = TestBackend::start(Behavior::Fixed(String::new())).await;
    let config = shadowed("empty", &live.url(), &shadow.url(), "5s", "").replace(
        "[routes.compare]\nabs_tolerance = 0.01",
        "[routes.compare]\nmode = \"exact\"",
    );
    let proxy = start(&config).await;
    for _ in 0..3 {
        let answer = proxy.client.get("/empty/p", &[]).await.expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.is_empty());
    }
    assert_eq!(
        proxy
            .metric_reaches(COMPARISONS, &[("outcome", "match")], 3.0)
            .await,
        3.0
    );
    assert_eq!(outcome(&proxy, "empty", "live_error"), 0.0);
}

/// A candidate that scores higher shows as an upward signed deviation: the sums by
/// direction and the count of numbers compared, per route and shadow backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_scoring_higher_moves_the_signed_deviation_up() {
    // Per pair: +0.10 on the first score, -0.05 on the second.
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[0.20,0.50]}"#.into())).await;
    let higher = TestBackend::start(Behavior::Fixed(r#"{"predictions":[0.30,0.45]}"#.into())).await;
    let proxy = start(&shadowed("higher", &live.url(), &higher.url(), "5s", "")).await;
    for _ in 0..40 {
        let answer = proxy.client.get("/higher/p", &[]).await.expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
    }
    let labels = [("route", "higher"), ("backend", "shadow")];
    let numbers = proxy
        .metric_reaches("veer_shadow_deviation_numbers_total", &labels, 80.0)
        .await;
    assert_eq!(numbers, 80.0, "two numbers in each of 40 pairs");
    let up = proxy.metric("veer_shadow_deviation_up_total", &labels);
    let down = proxy.metric("veer_shadow_deviation_down_total", &labels);
    assert!((up - 4.0).abs() < 1e-6, "up {up}");
    assert!((down - 2.0).abs() < 1e-6, "down {down}");
    assert!(up > down, "the shadow scores higher");
    let mean = (up - down) / numbers;
    assert!((mean - 0.025).abs() < 1e-6, "mean signed shift {mean}");
}

/// The record veer keeps of the listed divergent pair `id`, sent through a proxy on
/// `config` (with no divergence log).
async fn kept_record(config: &str, id: &str) -> serde_json::Value {
    let proxy = start(config).await;
    let answer = proxy
        .client
        .send(
            Method::POST,
            "/nolog/p",
            &[("x-request-id", id)],
            Bytes::from_static(br#"{"instances": [[42, 7]]}"#),
        )
        .await
        .expect("answer");
    assert_eq!(answer.status, StatusCode::OK);
    proxy
        .metric_reaches(COMPARISONS, &[("outcome", "diverged")], 1.0)
        .await;
    let telemetry = proxy.routes.telemetry();
    let deadline = Instant::now() + Duration::from_secs(20);
    let record = loop {
        if let Some(record) = telemetry.divergence_record(id) {
            break record;
        }
        assert!(Instant::now() < deadline, "the pair's record was kept");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(telemetry.divergence_record("never-sent"), None);
    serde_json::from_str(&record).expect("a JSON record")
}

/// Without a divergence log, a listed divergent pair's whole record is still kept
/// for `GET /divergences/{request_id}`: both answers and the differences, and the
/// request body both sides were sent only when an admin token guards who may read
/// it (model inputs are not left on an open listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_pair_keeps_its_record_without_a_log() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":["yes"]}"#.into())).await;
    let flipped = TestBackend::start(Behavior::Fixed(r#"{"predictions":["no"]}"#.into())).await;
    let config = shadowed("nolog", &live.url(), &flipped.url(), "5s", "");

    let open = kept_record(&config, "kept-1").await;
    assert_eq!(open["request_id"], "kept-1");
    assert_eq!(open["request_body"], serde_json::Value::Null);
    assert!(
        open["request_body_withheld"]
            .as_str()
            .is_some_and(|why| why.contains("[admin] token_file")),
        "{open}"
    );
    assert_eq!(open["live_body"], r#"{"predictions":["yes"]}"#);
    assert_eq!(open["shadow_body"], r#"{"predictions":["no"]}"#);
    assert_eq!(
        open["differences"][0],
        serde_json::json!({"pointer": "/predictions/0", "live": "yes", "shadow": "no"})
    );
    assert_eq!(open["label_agreement"], false);

    let token = std::env::temp_dir().join(format!("veer-token-{}", std::process::id()));
    std::fs::write(&token, "t0ken\n").expect("write the token file");
    let guarded = format!("{config}\n[admin]\ntoken_file = \"{}\"\n", token.display());
    let kept = kept_record(&guarded, "kept-2").await;
    let _ = std::fs::remove_file(&token);
    assert_eq!(kept["request_body"], r#"{"instances": [[42, 7]]}"#);
    assert_eq!(kept.get("request_body_withheld"), None, "{kept}");
}

/// A pair both sides answered that cannot be judged goes to the divergence log with
/// its outcome and why, one a second at most: here a `select` that finds nothing in
/// the live answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_that_finds_nothing_is_logged_with_its_reason() {
    let v2 = r#"{"model_name":"churn","outputs":[{"name":"probability","datatype":"FP32","shape":[1],"data":[0.8]}]}"#;
    let live = TestBackend::start(Behavior::Fixed(v2.into())).await;
    let shadow = TestBackend::start(Behavior::Fixed(v2.into())).await;
    let log = common::temp_path("unjudged", "jsonl");
    let logged = format!("divergence_log = \"{}\"", file_name(&log));
    let config = shadowed("unjudged", &live.url(), &shadow.url(), "5s", &logged).replace(
        "[routes.compare]\nabs_tolerance = 0.01",
        "[routes.compare]\nselect = \"/outputs/label\"",
    );
    let proxy = start(&config).await;
    for i in 0..5 {
        let id = format!("unjudged-{i}");
        let answer = proxy
            .client
            .get("/unjudged/p", &[("x-request-id", &id)])
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
    }
    let errors = proxy
        .metric_reaches(COMPARISONS, &[("outcome", "live_error")], 5.0)
        .await;
    assert_eq!(errors, 5.0);
    veer_testkit::wait_for_json_lines(&log, 1).await;
    // Lines are written as each second ends: past the next one, every line is in.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lines = veer_testkit::wait_for_json_lines(&log, 1).await;
    let _ = std::fs::remove_file(&log);
    assert!(
        (1..=2).contains(&lines.len()),
        "one line a second, however many pairs: {lines:#?}"
    );
    let line = &lines[0];
    assert!(
        line["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("unjudged-")),
        "{line:#}"
    );
    assert_eq!(line["outcome"], "live_error");
    assert!(
        line["reason"].as_str().is_some_and(|r| {
            r.contains("no value at select pointer /outputs/label") && r.contains("probability")
        }),
        "{line:#}"
    );
    assert_eq!(line["live_body"], v2, "the answer it could not read");
}
