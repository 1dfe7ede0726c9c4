//! Shadow mode through the binary: turned on by SIGHUP, answers never leak, divergent
//! pairs land in the JSON-lines log.

use veer_testkit::{Behavior, TestBackend, TestClient};

use crate::start;

fn config(live: &str, shadow: &str, shadow_section: &str) -> String {
    format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.churn-v1]
url = "{live}"

[backends.churn-v2]
url = "{shadow}"

[[routes]]
name = "churn"
match = {{ path_prefix = "/v1/models/churn" }}
split = [ {{ backend = "churn-v1", weight = 1 }} ]
{shadow_section}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_turns_on_shadow_and_divergent_pairs_are_logged() {
    let live = TestBackend::start(Behavior::Fixed(
        r#"{"predictions":[[0.1,0.9]],"model_version":"v1"}"#.into(),
    ))
    .await;
    let shadow = TestBackend::start(Behavior::Records(
        r#"{"predictions":[[0.8,0.2]],"model_version":"v2"}"#.into(),
    ))
    .await;
    let log =
        std::env::temp_dir().join(format!("veer-e2e-divergence-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let veer = start(&config(&live.url(), &shadow.url(), ""));
    let client = TestClient::new(veer.addr());
    client
        .get("/v1/models/churn:predict", &[])
        .await
        .expect("answer");
    assert_eq!(shadow.requests(), 0, "no shadow before the reload");

    let section = format!(
        "[routes.shadow]\nbackend = \"churn-v2\"\ndivergence_log = \"{}\"\n[routes.compare]\nselect = \"/predictions\"\nabs_tolerance = 0.01",
        log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    );
    let verdict =
        tokio::task::block_in_place(|| veer.reload(&config(&live.url(), &shadow.url(), &section)));
    verdict.expect("shadow config accepted");

    for i in 0..20 {
        let answer = client
            .get(
                "/v1/models/churn:predict",
                &[("x-request-id", &format!("e2e-{i}"))],
            )
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-veer-backend"), "churn-v1");
        assert!(
            answer.text().contains("0.9"),
            "the client only ever sees v1: {}",
            answer.text()
        );
    }

    let lines = veer_testkit::wait_for_json_lines(&log, 10).await;
    // The log is rate-limited to 10 lines a second by default: 20 fast requests give
    // at least 10 lines and at most 20.
    assert!((10..=20).contains(&lines.len()), "{} lines", lines.len());
    let line = &lines[0];
    assert_eq!(line["route"], "churn");
    assert_eq!(line["live_backend"], "churn-v1");
    assert_eq!(line["shadow_backend"], "churn-v2");
    assert_eq!(line["label_agreement"], false);
    assert_eq!(line["differences"][0]["pointer"], "/predictions/0/0");
    assert!(line["request_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("e2e-")));

    let mirrored = shadow.received();
    assert!(mirrored.len() >= 20);
    assert!(mirrored.iter().all(|r| r.headers["x-veer-shadow"] == "1"));
    let _ = std::fs::remove_file(&log);
}

/// `compare.noise_percent`: that share of requests goes a second time to its live
/// backend (marked `x-veer-shadow: 1`), the two answers are compared as the noise
/// floor, and the client sees one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_noise_floor_sends_requests_twice_to_the_live_backend_and_compares_them() {
    let live = TestBackend::start(Behavior::Records(r#"{"predictions":[[0.1,0.9]]}"#.into())).await;
    let unused = TestBackend::start(Behavior::Fixed("{}".into())).await;
    let section = "[routes.compare]\nselect = \"/predictions\"\nnoise_percent = 100";
    let veer = start(&config(&live.url(), &unused.url(), section));
    let client = TestClient::new(veer.addr());
    for _ in 0..20 {
        let answer = client
            .get("/v1/models/churn:predict", &[])
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-veer-backend"), "churn-v1");
    }
    let admin = TestClient::new(veer.admin_addr());
    let labels = [
        ("route", "churn"),
        ("backend", "churn-v1"),
        ("outcome", "match"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while admin.metric("veer_noise_comparisons_total", &labels).await < 20.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "20 noise pairs compared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let received = live.received();
    assert_eq!(received.len(), 40, "every request twice");
    let marked = received
        .iter()
        .filter(|r| r.headers.get("x-veer-shadow").is_some())
        .count();
    assert_eq!(marked, 20, "the second copies say they are mirrors");
    assert_eq!(
        admin
            .metric("veer_noise_label_agreements_total", &[("agree", "true")])
            .await,
        20.0
    );
    assert_eq!(
        admin.metric("veer_shadow_comparisons_total", &[]).await,
        0.0,
        "noise pairs are not shadow comparisons"
    );
    assert_eq!(unused.requests(), 0);
}
