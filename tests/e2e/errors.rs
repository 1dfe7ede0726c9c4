//! What the client gets when no route or no backend can answer, and how veer stops.

use std::time::Duration;

use veer_testkit::{Behavior, TestBackend, TestClient};

use crate::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_answered_404_502_504_with_json_bodies() {
    let hung = TestBackend::start(Behavior::Hangs).await;
    let refused = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let refused_url = format!("http://{}", refused.local_addr().expect("addr"));
    drop(refused);
    let config = format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.gone]
url = "{refused_url}"

[backends.stuck]
url = "{}"
timeout = "300ms"

[[routes]]
name = "gone"
match = {{ path_prefix = "/gone" }}
split = [ {{ backend = "gone", weight = 1 }} ]

[[routes]]
name = "stuck"
match = {{ path_prefix = "/stuck" }}
split = [ {{ backend = "stuck", weight = 1 }} ]
"#,
        hung.url()
    );
    let veer = start(&config);
    let client = TestClient::new(veer.addr());
    for (path, status, error, backend) in [
        ("/nowhere", 404, "no_route", None),
        ("/gone", 502, "backend_unreachable", Some("gone")),
        ("/stuck", 504, "backend_timeout", Some("stuck")),
    ] {
        let answer = client.get(path, &[]).await.expect("answer");
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
        let body = answer.json();
        assert_eq!(body["error"], error, "{path}");
        assert_eq!(body["backend"].as_str(), backend, "{path}");
        assert_eq!(
            body["request_id"].as_str(),
            Some(answer.header("x-request-id"))
        );
    }
    // 5xx are logged for the operator, naming the backend.
    let logged = veer
        .wait_for_log(0, "request failed", Duration::from_secs(5))
        .expect("logged");
    assert!(
        logged["fields"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("\"gone\""),
        "{logged}"
    );
}

/// SIGTERM: the request in flight still gets its answer, then veer exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight_then_exits_cleanly() {
    let slow = TestBackend::start(Behavior::Slow(Duration::from_millis(800))).await;
    let mut veer = start(&crate::two_versions(
        &slow.url(),
        &slow.url(),
        1,
        1,
        "\"random\"",
    ));
    let client = TestClient::new(veer.addr());
    let in_flight = tokio::spawn(async move { client.get("/v1/p", &[]).await });
    while slow.requests() == 0 {
        tokio::task::yield_now().await;
    }
    veer.signal("TERM").expect("send SIGTERM");
    let answer = in_flight.await.expect("task").expect("answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "slow");
    let status =
        tokio::task::block_in_place(|| veer.wait_exit(Duration::from_secs(10))).expect("exits");
    assert!(status.success(), "{status}");
}

/// One access-log line per request, with what an operator greps for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_an_access_line() {
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let veer = start(&crate::two_versions(
        &backend.url(),
        &backend.url(),
        1,
        0,
        "\"random\"",
    ));
    let client = TestClient::new(veer.addr());
    let from = veer.log_len();
    client
        .get("/v1/p", &[("x-request-id", "acc-1")])
        .await
        .expect("answer");
    client
        .get("/elsewhere", &[("x-request-id", "acc-2")])
        .await
        .expect("answer");
    let line =
        tokio::task::block_in_place(|| veer.wait_for_log(from, "access", Duration::from_secs(10)))
            .expect("an access line");
    let f = &line["fields"];
    assert_eq!(line["target"], "veer::access");
    assert_eq!(
        (
            f["request_id"].as_str(),
            f["route"].as_str(),
            f["backend"].as_str()
        ),
        (Some("acc-1"), Some("model"), Some("v1"))
    );
    assert_eq!(
        (
            f["role"].as_str(),
            f["status"].as_u64(),
            f["bytes"].as_u64()
        ),
        (Some("live"), Some(200), Some(2))
    );
    assert_eq!(
        f["upstream"].as_str(),
        Some(backend.addr().to_string().as_str())
    );
    assert!(f["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while veer
        .log_messages()
        .iter()
        .filter(|m| *m == "access")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no access line for the 404"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
