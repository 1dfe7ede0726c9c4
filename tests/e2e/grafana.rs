//! deploy/: the Grafana dashboard cannot drift from the metrics veer exports, and a
//! real Prometheus scrapes veer and answers the dashboard's queries.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use veer_testkit::{Behavior, TestBackend, TestClient, VeerProcess};

use crate::{start, two_versions};

/// Every PromQL expression in the dashboard: targets, annotations, variable queries.
fn dashboard_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/veer-rollout.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard JSON exists");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut found = Vec::new();
    collect(&dashboard, &mut found);
    found
}

fn collect(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr" | "query", serde_json::Value::String(q)) if q.contains("veer_") => {
                        out.push(q.clone())
                    }
                    _ => collect(inner, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        _ => {}
    }
}

/// The `veer_*` metric names a query reads.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("veer_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The series names a scrape offers: each family, plus `_bucket`, `_sum` and
/// `_count` for histograms.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// A veer with a shadowed canary that has served, mirrored and compared traffic.
async fn busy_veer() -> (VeerProcess, TestBackend, TestBackend) {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.1,0.9]]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.6,0.4]]}"#.into())).await;
    let config = two_versions(&live.url(), &shadow.url(), 9, 1, "\"random\"")
        + "[routes.shadow]\nbackend = \"v2\"\n[routes.compare]\nabs_tolerance = 0.01\n";
    let veer = start(&config);
    let client = TestClient::new(veer.addr());
    for _ in 0..50 {
        client.get("/v1/p", &[]).await.expect("answer");
    }
    (veer, live, shadow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_a_metric_veer_exports() {
    let (veer, _live, _shadow) = busy_veer().await;
    let admin = TestClient::new(veer.admin_addr());
    // Comparisons land just after the answers; one more scrape is enough to see them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = admin.get("/metrics", &[]).await.expect("metrics").text();
        if text.contains("veer_shadow_label_agreements_total") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let offered = exported(&metrics);
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "only {} queries found", queries.len());
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "{query}");
        for name in names {
            assert!(
                offered.contains(&name),
                "the dashboard reads {name}, which veer does not export:\n{query}"
            );
        }
    }
}

/// Stops the child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_veer_and_answers_a_dashboard_query() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::skipped("Prometheus test: prometheus is not installed (Debian package prometheus; .ci/run installs it)");
        return;
    }
    let (veer, _live, _shadow) = busy_veer().await;
    let dir = std::env::temp_dir().join(format!("veer-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: veer\n    static_configs:\n      - targets: [\"{}\"]\n",
            veer.admin_addr()
        ),
    )
    .expect("write prometheus.yml");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a free port");
        probe.local_addr().expect("addr").port()
    };
    let _prometheus = Running(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let api = TestClient::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let client = TestClient::new(veer.addr());
    // Keep traffic flowing while Prometheus takes a few scrapes (bounded in count and
    // time); then ask it the dashboard's divergence-ratio question.
    let divergence = dashboard_queries()
        .into_iter()
        .find(|q| q.contains("outcome=\"diverged\""))
        .expect("the dashboard has a divergence query")
        .replace("$route", "model")
        .replace("$candidate", "v2")
        .replace("$__rate_interval", "1m");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        for _ in 0..20 {
            client.get("/v1/p", &[]).await.expect("answer");
        }
        let query = format!("/api/v1/query?query={}", encode(&divergence));
        // Until Prometheus is ready it answers 503 in plain text: keep waiting.
        if let Ok(a) = api.get(&query, &[]).await.map_err(drop).and_then(|a| {
            if a.status == 200 {
                Ok(a)
            } else {
                Err(())
            }
        }) {
            let body = a.json();
            if body["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {divergence}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(answer["status"], "success");
    let value: f64 = answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert_eq!(value, 1.0, "every compared pair diverges in this set-up");
    // The signed deviation's panel: [0.1, 0.9] against [0.6, 0.4] moves one number
    // up 0.5 and one down 0.5 per pair, so the upward part per number is 0.25 and
    // the mean nets out at 0.
    let signed: Vec<String> = dashboard_queries()
        .into_iter()
        .filter(|q| q.contains("veer_shadow_deviation_up_total"))
        .map(|q| {
            q.replace("$route", "model")
                .replace("$candidate", "v2")
                .replace("$__rate_interval", "1m")
        })
        .collect();
    assert_eq!(signed.len(), 2, "the mean and its upward part: {signed:?}");
    for (query, expected) in signed.iter().zip([0.0, 0.25]) {
        let answer = api
            .get(&format!("/api/v1/query?query={}", encode(query)), &[])
            .await
            .expect("Prometheus answers")
            .json();
        let value: f64 = answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a number for {query}: {answer}"));
        // A scrape reads the count a moment before the sums, so a pair judged in
        // between skews a sample by one pair; over the few scrapes in the window
        // that is a few percent (0.261 for 0.25 was seen in CI). 0.05 still tells
        // 0.25 from 0 and up from down.
        assert!((value - expected).abs() < 0.05, "{query} = {value}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Percent-encodes a query string value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
