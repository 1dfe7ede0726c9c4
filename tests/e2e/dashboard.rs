//! The built-in dashboard in a real headless Chromium: the numbers it renders are the
//! numbers `/stats` reports, and with an admin token it asks for the token first.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use veer_testkit::{Behavior, TestBackend, TestClient};

use crate::{start, two_versions, TokenFile};

const CHROMIUM: &str = "chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_stats_reports() {
    if Command::new(CHROMIUM).arg("--version").output().is_err() {
        crate::skipped(&format!("dashboard test: {CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)"));
        return;
    }
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.1,0.9]]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.7,0.3]]}"#.into())).await;
    let config = two_versions(&live.url(), &shadow.url(), 1, 0, "{ header = \"x-user-id\" }")
        + "[routes.shadow]\nbackend = \"v2\"\npercent = 50\n[routes.compare]\nabs_tolerance = 0.01\n";
    let veer = start(&config);
    let client = TestClient::new(veer.addr());
    for i in 0..200 {
        let answer = client
            .get("/v1/p", &[("x-user-id", &format!("user-{i}"))])
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
    }
    let admin = TestClient::new(veer.admin_addr());
    // Comparisons finish after the answers; wait until the count stops moving.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stats = admin.get("/stats", &[]).await.expect("stats").json();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = admin.get("/stats", &[]).await.expect("stats").json();
        let settled = next["shadows"][0]["compared"] == stats["shadows"][0]["compared"];
        stats = next;
        if (settled && stats["shadows"][0]["compared"].as_u64() > Some(0))
            || Instant::now() > deadline
        {
            break;
        }
    }
    let shadowed = &stats["shadows"][0];
    let compared = shadowed["compared"].as_u64().expect("compared");
    assert!(
        (60..=140).contains(&compared),
        "about half of 200 users are mirrored: {compared}"
    );

    let url = format!("http://{}/", veer.admin_addr());
    let dom = tokio::task::block_in_place(|| dump_dom(&url));
    let shown = |stat: &str| -> String {
        let marker = format!("data-stat=\"{stat}\"");
        let at = dom
            .find(&marker)
            .unwrap_or_else(|| panic!("no {stat} in the page:\n{dom}"));
        let rest = &dom[at..];
        let start = rest.find('>').expect("element") + 1;
        rest[start..start + rest[start..].find('<').expect("text")].to_owned()
    };
    assert_eq!(shown("compared"), compared.to_string());
    assert_eq!(shown("divergence-rate"), "100.0%");
    assert_eq!(shown("label-agreement"), "0.0%");
    assert_eq!(shown("weights"), "weights: v1 1 · v2 0");
    let live = stats["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["role"] == "live")
        .expect("a live row")
        .clone();
    assert_eq!(live["requests"], 200);
    assert_eq!(shown("requests"), "200");
    // Quantiles come from bucket counts, which stand still once traffic stops.
    for q in ["p50", "p95", "p99"] {
        let ms = live[q]
            .as_f64()
            .map(|s| format!("{:.1}", s * 1000.0))
            .expect("a quantile");
        assert_eq!(shown(q), ms, "{q}");
    }
    // A rate depends on when it is read; the page shows one, positive.
    assert!(
        shown("rate").parse::<f64>().is_ok_and(|r| r > 0.0),
        "{}",
        shown("rate")
    );
    assert!(
        dom.contains("data-role=\"shadow\""),
        "shadow latency row shown"
    );
    assert!(
        dom.contains("/predictions/0/0"),
        "recent divergent pairs listed"
    );
}

/// A route with a rollout: the page shows its state, its steps, each signal's verdict
/// with the counts `/rollouts` reports, and its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_rollout() {
    if Command::new(CHROMIUM).arg("--version").output().is_err() {
        crate::skipped(&format!("dashboard rollout test: {CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)"));
        return;
    }
    let (v1, v2) = crate::two_backends().await;
    let config = two_versions(&v1.url(), &v2.url(), 90, 10, "\"random\"")
        + "[routes.rollout]\ncandidate = \"v2\"\nsteps = [10, 50, 100]\nmin_step = \"1h\"\n";
    let veer = start(&config);
    let client = TestClient::new(veer.addr());
    for _ in 0..100 {
        assert_eq!(client.get("/v1/p", &[]).await.expect("answer").status, 200);
    }
    let admin = TestClient::new(veer.admin_addr());
    let paused = admin
        .send(
            http::Method::POST,
            "/rollouts/model/pause",
            &[],
            bytes::Bytes::new(),
        )
        .await
        .expect("pause");
    assert_eq!(paused.status, 200, "{}", paused.text());
    // The next judgement (every 5 s) counts the 100 requests.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rollout = loop {
        let now =
            admin.get("/rollouts", &[]).await.expect("rollouts").json()["rollouts"][0].clone();
        let counted: u64 = now["signals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["signal"] == "errors")
            .filter_map(|s| s["candidate"]["total"].as_u64())
            .sum();
        let baseline = now["signals"][0]["baseline"]["total"].as_u64().unwrap_or(0);
        if counted + baseline == 100 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the 100 requests judged: {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let errors = rollout["signals"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["signal"] == "errors").cloned())
        .expect("the errors signal");
    let url = format!("http://{}/", veer.admin_addr());
    let dom = tokio::task::block_in_place(|| dump_dom(&url));
    let shown = |after: &str, stat: &str| -> String {
        let from = dom
            .find(after)
            .unwrap_or_else(|| panic!("no {after} in the page:\n{dom}"));
        let marker = format!("data-stat=\"{stat}\"");
        let at = from
            + dom[from..]
                .find(&marker)
                .unwrap_or_else(|| panic!("no {stat} after {after}:\n{dom}"));
        let rest = &dom[at..];
        let start = rest.find('>').expect("element") + 1;
        rest[start..start + rest[start..].find('<').expect("text")].to_owned()
    };
    assert_eq!(shown("data-rollout=\"model\"", "rollout-phase"), "paused");
    assert_eq!(shown("data-rollout=\"model\"", "rollout-weight"), "10%");
    assert_eq!(
        shown("data-signal=\"errors\"", "candidate"),
        format!(
            "{}/{}",
            errors["candidate"]["bad"], errors["candidate"]["total"]
        )
    );
    assert_eq!(
        shown("data-signal=\"errors\"", "verdict"),
        errors["verdict"]
            .as_str()
            .expect("a verdict")
            .to_uppercase()
    );
    assert!(
        dom.contains("<span class=\"now\">10%</span>"),
        "the current step is marked:\n{dom}"
    );
    assert!(
        dom.contains("data-action=\"pause\""),
        "the pause is in the history:\n{dom}"
    );
    assert!(
        dom.contains("data-action=\"start\""),
        "the start is in the history:\n{dom}"
    );
}

/// With `[admin] token_file` set the page loads, its data requests are refused, and
/// it shows the token field instead of figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_dashboard_asks_for_it() {
    if Command::new(CHROMIUM).arg("--version").output().is_err() {
        crate::skipped(&format!("dashboard token test: {CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)"));
        return;
    }
    let backend = TestBackend::start(Behavior::Fixed("a".into())).await;
    let token = TokenFile::new("dashboard-token-7e1f");
    let config = two_versions(&backend.url(), &backend.url(), 1, 0, "\"random\"")
        + &format!("\n[admin]\ntoken_file = \"{}\"\n", token.path().display());
    let veer = start(&config);
    let url = format!("http://{}/", veer.admin_addr());
    let dom = tokio::task::block_in_place(|| dump_dom(&url));
    assert!(
        dom.contains("<form id=\"login\">"),
        "token field shown:\n{dom}"
    );
    assert!(dom.contains("this veer asks for its admin token"), "{dom}");
    assert!(
        !dom.contains("<section data-route"),
        "no figures without the token:\n{dom}"
    );
}

/// The page as Chromium renders it after its scripts ran.
fn dump_dom(url: &str) -> String {
    // One profile per page: two Chromiums on one profile directory clash on its lock.
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "veer-chromium-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("chromium status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium output");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
