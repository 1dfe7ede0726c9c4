//! The admin listener of the running binary: health, config, reload, and metrics
//! that a real Prometheus toolchain accepts.

use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use sha2::{Digest, Sha256};
use veer_testkit::{Behavior, TestBackend, TestClient};

use crate::{start, two_backends, two_versions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_config_and_method_checks() {
    let (a, b) = two_backends().await;
    let veer = start(&two_versions(
        &a.url(),
        &b.url(),
        95,
        5,
        "{ header = \"x-user-id\" }",
    ));
    let admin = TestClient::new(veer.admin_addr());
    assert_eq!(
        admin.get("/livez", &[]).await.expect("livez").status,
        StatusCode::OK
    );
    assert_eq!(
        admin.get("/readyz", &[]).await.expect("readyz").status,
        StatusCode::OK
    );

    let config = admin.get("/config", &[]).await.expect("config");
    assert_eq!(config.status, StatusCode::OK);
    let c = config.json();
    assert_eq!(c["generation"], 1);
    assert_eq!(
        c["source"]["file"],
        veer.config_path().display().to_string()
    );
    assert_eq!(c["source"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        c["routes"][0]["strategy"],
        "canary 95/5 by header x-user-id (v1/v2)"
    );
    assert_eq!(
        c["routes"][0]["split"][1],
        serde_json::json!({"backend": "v2", "weight": 5})
    );
    assert_eq!(c["backends"][0]["timeout_seconds"], 5.0);

    let get_reload = admin.get("/-/reload", &[]).await.expect("answer");
    assert_eq!(get_reload.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_reload.header("allow"), "POST");
    assert_eq!(
        admin.get("/nope", &[]).await.expect("answer").status,
        StatusCode::NOT_FOUND
    );

    // None of the admin paths exist on the client port.
    let client = TestClient::new(veer.addr());
    for path in ["/metrics", "/livez", "/config", "/-/reload"] {
        let answer = client.get(path, &[]).await.expect("answer");
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.json()["error"], "no_route");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_applies_a_good_file_and_explains_a_bad_one() {
    let (a, b) = two_backends().await;
    let veer = start(&two_versions(&a.url(), &b.url(), 1, 0, "\"random\""));
    let admin = TestClient::new(veer.admin_addr());
    std::fs::write(
        veer.config_path(),
        two_versions(&a.url(), &b.url(), 0, 1, "\"random\""),
    )
    .expect("write");
    let ok = admin
        .send(Method::POST, "/-/reload", &[], Default::default())
        .await
        .expect("answer");
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["generation"], 2);
    // The checksum is of the bytes validated and served, not of a second read.
    let config = admin.get("/config", &[]).await.expect("config").json();
    let bytes = std::fs::read(veer.config_path()).expect("read the routing file");
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(config["source"]["sha256"], sha256);
    assert_eq!(config["generation"], 2);
    let served = TestClient::new(veer.addr())
        .get("/v1/p", &[])
        .await
        .expect("answer");
    assert_eq!(served.header("x-veer-backend"), "v2");

    std::fs::write(veer.config_path(), "[[routes]]\nname = 5\n").expect("write");
    let bad = admin
        .send(Method::POST, "/-/reload", &[], Default::default())
        .await
        .expect("answer");
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = bad.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with(&format!("{}:2:8: error:", veer.config_path().display())),
        "{message}"
    );

    let metrics = admin.get("/metrics", &[]).await.expect("metrics").text();
    assert!(metrics.contains("veer_config_generation 2"), "{metrics}");
    assert!(
        metrics.contains("veer_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("veer_config_reloads_total{result=\"ok\"} 2"),
        "start + one reload: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_the_contract_drop_removed_routes_and_pass_promtool() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.1,0.9]]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.6,0.4]]}"#.into())).await;
    let with_shadow = two_versions(&live.url(), &shadow.url(), 1, 0, "\"random\"")
        + "[routes.shadow]\nbackend = \"v2\"\n[routes.compare]\nabs_tolerance = 0.01\n";
    let veer = start(&with_shadow);
    let (client, admin) = (
        TestClient::new(veer.addr()),
        TestClient::new(veer.admin_addr()),
    );
    for _ in 0..20 {
        assert_eq!(
            client.get("/v1/p", &[]).await.expect("answer").status,
            StatusCode::OK
        );
    }
    // The signed deviation is recorded last of a pair's figures: once it counts
    // 40 numbers, every figure of the 20 pairs is in.
    let metrics = wait_for_metric(
        &admin,
        "veer_shadow_deviation_numbers_total{route=\"model\",backend=\"v2\"} 40",
    )
    .await;
    for expected in [
        "# HELP veer_requests_total",
        "veer_requests_total{route=\"model\",backend=\"v1\",role=\"live\",code=\"200\"} 20",
        "veer_requests_total{route=\"model\",backend=\"v2\",role=\"shadow\",code=\"200\"} 20",
        "veer_request_duration_seconds_bucket{route=\"model\",backend=\"v1\",role=\"live\",le=\"0.001\"}",
        "veer_shadow_abs_deviation_bucket{route=\"model\",backend=\"v2\",le=\"0.5\"} 20",
        "veer_shadow_label_agreements_total{route=\"model\",backend=\"v2\",agree=\"false\"} 20",
        "veer_shadow_comparisons_total{route=\"model\",backend=\"v2\",outcome=\"diverged\"} 20",
        // [0.1, 0.9] against [0.6, 0.4]: +0.5 and -0.5 in each of 20 pairs.
        "# TYPE veer_shadow_deviation_up_total counter",
        "veer_shadow_deviation_up_total{route=\"model\",backend=\"v2\"} 10\n",
        "veer_shadow_deviation_down_total{route=\"model\",backend=\"v2\"} 10\n",
        "veer_route_weight{route=\"model\",backend=\"v1\"} 1",
        "veer_config_generation 1",
        "veer_build_info{version=",
        "veer_in_flight_requests{role=\"live\"} 0",
        "veer_config_last_reload_success_timestamp_seconds",
        // Its 1 before any reload is explained where people read it.
        "# HELP veer_config_reloads_total Config loads by result (the first load at start counts as ok;",
        "veer_config_reloads_total{result=\"ok\"} 1\n",
        "veer_backend_ejected{backend=\"v2\"} 0\n",
    ] {
        assert!(metrics.contains(expected), "missing {expected}\n{metrics}");
    }
    assert!(
        !metrics.contains("quantile="),
        "durations are histograms, not summaries"
    );
    promtool_check(&metrics);

    // A reload that renames the route: the old route's weight series is gone.
    let renamed = two_versions(&live.url(), &shadow.url(), 1, 0, "\"random\"")
        .replace("name = \"model\"", "name = \"renamed\"");
    tokio::task::block_in_place(|| veer.reload(&renamed)).expect("reloaded");
    let metrics = admin.get("/metrics", &[]).await.expect("metrics").text();
    assert!(metrics.contains("veer_route_weight{route=\"renamed\",backend=\"v1\"} 1"));
    assert!(
        !metrics.contains("veer_route_weight{route=\"model\""),
        "stale weight exported:\n{metrics}"
    );
}

/// A canary failing every request is ejected: `veer_backend_ejected` and the log say
/// so, its users are served by v1 meanwhile, and it comes back after its ejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_backend_shows_in_the_metrics_and_the_log() {
    let v1 = TestBackend::start(Behavior::Fixed("v1".into())).await;
    let v2 = TestBackend::start(Behavior::Status(500)).await;
    let config = two_versions(&v1.url(), &v2.url(), 50, 50, "\"random\"").replace(
        "[backends.v2]\n",
        "[backends.v2]\noutlier = { consecutive_failures = 3, ejection = \"10s\" }\n",
    );
    let veer = start(&config);
    let (client, admin) = (
        TestClient::new(veer.addr()),
        TestClient::new(veer.admin_addr()),
    );
    let mut failed = 0;
    for _ in 0..200 {
        if client.get("/v1/p", &[]).await.expect("answer").status != StatusCode::OK {
            failed += 1;
        }
        if failed == 3 {
            break;
        }
    }
    assert_eq!(failed, 3, "three 500s from v2 in 200 requests at 50 %");
    let metrics = admin.get("/metrics", &[]).await.expect("metrics").text();
    for expected in [
        "veer_backend_ejected{backend=\"v2\"} 1\n",
        "veer_backend_ejected{backend=\"v1\"} 0\n",
    ] {
        assert!(metrics.contains(expected), "missing {expected}\n{metrics}");
    }
    let logged = tokio::task::block_in_place(|| {
        veer.wait_for_log(
            0,
            "backend ejected after failures in a row; its share goes to the other backends",
            Duration::from_secs(5),
        )
    })
    .expect("the ejection is logged");
    assert_eq!(logged["fields"]["backend"], "v2", "{logged}");
    for _ in 0..20 {
        let answer = client.get("/v1/p", &[]).await.expect("answer");
        assert_eq!(answer.header("x-veer-backend"), "v1", "v2 is out meanwhile");
    }
    let back = wait_for_metric(&admin, "veer_backend_ejected{backend=\"v2\"} 0\n").await;
    assert!(
        back.contains("veer_backend_ejected{backend=\"v2\"} 0\n"),
        "back after its 10 s ejection:\n{back}"
    );
}

/// Scrapes until `needle` shows up (shadow comparisons finish after the answers).
async fn wait_for_metric(admin: &TestClient, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = admin.get("/metrics", &[]).await.expect("metrics").text();
        if text.contains(needle) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `promtool check metrics` on the exposition, where promtool is installed.
fn promtool_check(metrics: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        crate::skipped("promtool check: promtool is not installed (Debian package prometheus; .ci/run installs it)");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool ran");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

/// While draining, /readyz says so; the request in flight still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_draining() {
    let slow = TestBackend::start(Behavior::Slow(Duration::from_millis(1500))).await;
    let veer = start(&two_versions(&slow.url(), &slow.url(), 1, 0, "\"random\""));
    let client = TestClient::new(veer.addr());
    let in_flight = tokio::spawn(async move { client.get("/v1/p", &[]).await });
    while slow.requests() == 0 {
        tokio::task::yield_now().await;
    }
    veer.signal("TERM").expect("SIGTERM");
    let from = 0;
    tokio::task::block_in_place(|| veer.wait_for_log(from, "draining", Duration::from_secs(10)))
        .expect("draining logged");
    let ready = TestClient::new(veer.admin_addr())
        .get("/readyz", &[])
        .await
        .expect("answer");
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        in_flight.await.expect("task").expect("answer").status,
        StatusCode::OK
    );
}
