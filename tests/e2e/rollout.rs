//! Automated rollouts through the binary: a good candidate is promoted, a failing
//! one rolled back (and then gets nothing), a diverging one rolled back from the
//! shadow gate alone, `shadow_first` holds the weight at 0 until the prediction gate
//! passes, a restart resumes its step, a reload keeps it unless the steps change,
//! and a person can pause and resume through `veer rollout`. Every action is checked in the decision log, with its numbers.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use veer_testkit::{Behavior, TestBackend, TestClient, VeerProcess};

use crate::VEER;

/// Time a rollout in these tests may take to reach its verdict: they take seconds
/// (2 s steps), this is the bound on a loaded CI machine with a debug build.
const VERDICT_WITHIN: Duration = Duration::from_secs(60);

/// A folder of its own for one test's routing file, state file and decision log,
/// removed when the test ends.
fn folder(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("veer-e2e-rollout-{name}-"))
        .tempdir()
        .expect("create the test folder")
}

/// A route `model` with v1 at 90 and v2 (the candidate) at 10, and `rollout` as its
/// `[routes.rollout]` body (plus `extra` sections after it).
fn config(v1: &str, v2: &str, shadow: bool, rollout: &str, extra: &str) -> String {
    let shadow = if shadow {
        "[routes.shadow]\nbackend = \"v2\"\n[routes.compare]\nselect = \"/predictions\"\n"
    } else {
        ""
    };
    format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.v1]
url = "{v1}"

[backends.v2]
url = "{v2}"

[[routes]]
name = "model"
match = {{ path_prefix = "/v1/" }}
split = [ {{ backend = "v1", weight = 90 }}, {{ backend = "v2", weight = 10 }} ]
{shadow}
[routes.rollout]
candidate = "v2"
state_file = "rollout.json"
decision_log = "decisions.jsonl"
alpha = 0.05
{rollout}
# Loopback latencies jitter, and a debug build is slow: wide margins let a good
# candidate pass in a few hundred requests (the statistics are tested exactly in
# crates/rollout).
[routes.rollout.errors]
abs_margin = 0.05
[routes.rollout.latency]
abs_margin = 0.3
{extra}
"#
    )
}

fn start_in(dir: &Path, text: &str) -> VeerProcess {
    let path = dir.join("veer.toml");
    std::fs::write(&path, text).expect("write the routing file");
    VeerProcess::start_file(VEER, path).unwrap_or_else(|e| panic!("veer did not start: {e}"))
}

/// Steady traffic to `/v1/predict` from 4 clients, each body different (so a
/// classifier's answers vary), until the returned flag is set or the bound passes.
fn traffic(veer: &VeerProcess) -> (Arc<AtomicBool>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let client = Arc::new(TestClient::new(veer.addr()));
    let (flag, count) = (stop.clone(), sent.clone());
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (client, flag, count) = (client.clone(), flag.clone(), count.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !flag.load(Ordering::SeqCst) && started.elapsed() < VERDICT_WITHIN * 2 {
                        let body = Bytes::from(format!("{{\"instances\": [[{w}, {i}]]}}"));
                        let _ = client.send(Method::POST, "/v1/predict", &[], body).await;
                        count.fetch_add(1, Ordering::SeqCst);
                        i += 1;
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.await;
        }
    });
    (stop, sent, task)
}

/// `GET /rollouts`' entry for route `model`.
async fn rollout(admin: &TestClient) -> Value {
    let all = admin
        .get("/rollouts", &[])
        .await
        .expect("GET /rollouts")
        .json();
    all["rollouts"][0].clone()
}

/// Waits until the rollout's phase is `phase`; the last status seen, or a failure
/// with the decision log.
async fn wait_for_phase(admin: &TestClient, phase: &str, dir: &Path) -> Value {
    let deadline = Instant::now() + VERDICT_WITHIN;
    loop {
        let now = rollout(admin).await;
        if now["phase"] == phase {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no {phase} within {VERDICT_WITHIN:?}; now {now:#}\ndecisions:\n{:#?}",
            decisions(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn decisions(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("decisions.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The first decision line with `action`, waited for: a decision shows in
/// `/rollouts` a moment before its line is written.
async fn line(dir: &Path, action: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = decisions(dir).into_iter().find(|l| l["action"] == action) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {action} line: {:#?}",
            decisions(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The judged `signal` of a decision line, which must be there.
fn signal(line: &Value, signal: &str) -> Value {
    line["signals"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["signal"] == signal).cloned())
        .unwrap_or_else(|| panic!("no {signal} signal in {line:#}"))
}

/// The decision moved the candidate's weight `from` → `to`.
fn assert_moved(line: &Value, from: u8, to: u8) {
    assert_eq!(
        (&line["from"], &line["to"]),
        (&from.into(), &to.into()),
        "{line:#}"
    );
}

/// The decision log's actions, in order, without holds.
fn actions(dir: &Path) -> Vec<String> {
    decisions(dir)
        .iter()
        .filter(|d| d["action"] != "hold")
        .map(|d| d["action"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// A line with its numbers: the route, generation, weights, and for a judged
/// action every signal with its counts, bounds and limit.
fn assert_has_numbers(line: &Value) {
    for field in [
        "at",
        "route",
        "generation",
        "action",
        "actor",
        "from",
        "to",
        "phase",
        "reason",
    ] {
        assert!(!line[field].is_null(), "{field} missing in {line:#}");
    }
    let signals = line["signals"].as_array().expect("signals");
    assert!(
        !signals.is_empty(),
        "a judged action lists its signals: {line:#}"
    );
    for s in signals {
        for field in [
            "signal",
            "verdict",
            "candidate",
            "lower",
            "upper",
            "limit",
            "fail_above",
        ] {
            assert!(!s[field].is_null(), "{field} missing in {s:#}");
        }
        assert!(s["candidate"]["total"].is_u64(), "{s:#}");
    }
}

fn veer_rollout(admin: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new(VEER)
        .arg("rollout")
        .args(args)
        .args(["--admin", &admin.to_string()])
        .output()
        .expect("run veer rollout");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_candidate_is_paused_resumed_and_promoted_with_every_action_on_record() {
    let scratch = folder("good");
    let dir = scratch.path();
    let v1 = TestBackend::start(Behavior::Fixed("{\"predictions\": [1]}".into())).await;
    let v2 = TestBackend::start(Behavior::Fixed("{\"predictions\": [1]}".into())).await;
    let veer = start_in(
        dir,
        &config(
            &v1.url(),
            &v2.url(),
            false,
            "steps = [10, 50, 100]\nmin_step = \"2s\"",
            "",
        ),
    );
    let admin = TestClient::new(veer.admin_addr());
    let first = rollout(&admin).await;
    assert_eq!(first["phase"], "progressing", "{first:#}");
    assert_eq!(first["weight"], 10);

    // A person pauses before any traffic: nothing advances while paused.
    let (ok, said) = veer_rollout(veer.admin_addr(), &["pause", "model"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("model: pause by operator, 10% → 10% (paused)"),
        "{said}"
    );
    let (stop, sent, task) = traffic(&veer);
    // Held until the candidate has earned its advance (a paused rollout is still
    // judged, for the record) and min_step is long past: only the pause holds it.
    let paused_at = Instant::now();
    loop {
        let now = rollout(&admin).await;
        assert_eq!(now["weight"], 10, "a paused rollout holds: {now:#}");
        let signals = now["signals"].as_array().cloned().unwrap_or_default();
        let earned = !signals.is_empty() && signals.iter().all(|s| s["verdict"] == "pass");
        if earned && paused_at.elapsed() >= Duration::from_secs(4) {
            break;
        }
        assert!(
            paused_at.elapsed() < VERDICT_WITHIN,
            "the paused candidate never passed every signal: {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, said) = veer_rollout(veer.admin_addr(), &["resume", "model"]);
    assert!(ok, "{said}");
    let (ok, said) = veer_rollout(veer.admin_addr(), &["resume", "model"]);
    assert!(
        !ok && said.contains("409"),
        "resuming twice is refused: {said}"
    );

    let promoted = wait_for_phase(&admin, "promoted", dir).await;
    stop.store(true, Ordering::SeqCst);
    let _ = task.await;
    assert_eq!(promoted["weight"], 100);
    let promote = line(dir, "promote").await;
    assert_eq!(
        actions(dir),
        ["start", "pause", "resume", "advance", "promote"],
        "{:#?}",
        decisions(dir)
    );
    assert_eq!(line(dir, "pause").await["actor"], "operator");
    let advance = line(dir, "advance").await;
    assert_eq!(advance["actor"], "veer");
    assert_moved(&advance, 10, 50);
    assert_has_numbers(&advance);
    assert_has_numbers(&promote);
    let errors = signal(&promote, "errors");
    assert_eq!(errors["verdict"], "pass");
    assert!(
        errors["upper"].as_f64() <= errors["limit"].as_f64(),
        "{errors:#}"
    );

    // Promoted: the baseline gets nothing, and the metrics say so.
    let metrics = admin.get("/metrics", &[]).await.expect("metrics").text();
    let v1_weight = [("route", "model"), ("backend", "v1")];
    assert_eq!(
        veer_testkit::metric_value(&metrics, "veer_route_weight", &v1_weight),
        0.0
    );
    let before = v1.requests();
    let client = TestClient::new(veer.addr());
    for i in 0..20 {
        let body = Bytes::from(format!("{{\"instances\": [[{i}]]}}"));
        let answer = client
            .send(Method::POST, "/v1/predict", &[], body)
            .await
            .expect("answer");
        assert_eq!(answer.header("x-veer-backend"), "v2");
    }
    assert_eq!(v1.requests(), before);
    let metrics = admin.get("/metrics", &[]).await.expect("metrics").text();
    let value = |name, labels: &[(&str, &str)]| veer_testkit::metric_value(&metrics, name, labels);
    assert_eq!(value("veer_rollout_weight", &[("route", "model")]), 100.0);
    assert_eq!(
        value(
            "veer_rollout_state",
            &[("route", "model"), ("state", "promoted")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "veer_rollout_state",
            &[("route", "model"), ("state", "progressing")]
        ),
        0.0
    );
    assert_eq!(
        value(
            "veer_rollout_decisions_total",
            &[
                ("route", "model"),
                ("action", "pause"),
                ("actor", "operator")
            ]
        ),
        1.0
    );
    // The verdicts that promoted it stay on show.
    for (verdict, now) in [("pass", 1.0), ("hold", 0.0), ("fail", 0.0)] {
        let labels = [
            ("route", "model"),
            ("signal", "errors"),
            ("verdict", verdict),
        ];
        assert_eq!(value("veer_rollout_signal", &labels), now, "{verdict}");
    }
    assert_eq!(
        value(
            "veer_route_weight",
            &[("route", "model"), ("backend", "v1")]
        ),
        0.0
    );
    assert!(sent.load(Ordering::SeqCst) > 0);
    let (ok, status) = veer_rollout(veer.admin_addr(), &["status"]);
    assert!(
        ok && status.contains("model: v2 promoted at 100%"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_failing_30_percent_is_rolled_back_and_then_gets_nothing() {
    let scratch = folder("failing");
    let dir = scratch.path();
    let v1 = TestBackend::start(Behavior::Fixed("{\"predictions\": [1]}".into())).await;
    let v2 = TestBackend::start(Behavior::Failing { percent: 30 }).await;
    let hook = TestBackend::start(Behavior::Records("{}".into())).await;
    let notify = format!("[routes.rollout.hooks]\nnotify = \"{}/veer\"", hook.url());
    let veer = start_in(
        dir,
        &config(
            &v1.url(),
            &v2.url(),
            false,
            "steps = [10, 50, 100]\nmin_step = \"2s\"",
            &notify,
        ),
    );
    let admin = TestClient::new(veer.admin_addr());
    let (stop, _, task) = traffic(&veer);
    let rolled_back = wait_for_phase(&admin, "rolled_back", dir).await;
    assert_eq!(rolled_back["weight"], 0);
    // Requests in flight when the swap happened may still finish on v2; then none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = v2.requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let _ = task.await;
    assert_eq!(
        v2.requests(),
        after,
        "no request reaches a rolled-back candidate"
    );
    let rollback = line(dir, "rollback").await;
    assert_has_numbers(&rollback);
    assert_moved(&rollback, 10, 0);
    let errors = signal(&rollback, "errors");
    assert_eq!(errors["verdict"], "fail", "{errors:#}");
    assert!(
        errors["lower"].as_f64() > errors["fail_above"].as_f64(),
        "{errors:#}"
    );
    assert_eq!(actions(dir), ["start", "rollback"]);
    // Each decision line was POSTed to the hook, as written in the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    let posted = loop {
        let posted: Vec<Value> = hook
            .received()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("a JSON decision line"))
            .collect();
        if ["start", "rollback"]
            .iter()
            .all(|a| posted.iter().any(|p| p["action"] == *a))
        {
            break posted;
        }
        assert!(Instant::now() < deadline, "notified: {posted:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Each is its own POST: they may arrive in either order; a hold may come too.
    let mut posted_actions: Vec<&str> = posted
        .iter()
        .filter_map(|p| p["action"].as_str())
        .filter(|a| *a != "hold")
        .collect();
    posted_actions.sort_unstable();
    assert_eq!(posted_actions, ["rollback", "start"]);
    assert!(
        posted.contains(&rollback),
        "the notification is the decision line"
    );
    // It stays rolled back: a person retries it.
    let (ok, said) = veer_rollout(veer.admin_addr(), &["retry", "model"]);
    assert!(ok && said.contains("retry by operator, 0% → 10%"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverging_predictions_roll_back_from_the_shadow_gate_alone() {
    let scratch = folder("diverging");
    let dir = scratch.path();
    let v1 = TestBackend::start(Behavior::Predicts { flip_percent: 0 }).await;
    let v2 = TestBackend::start(Behavior::Predicts { flip_percent: 40 }).await;
    let rollout = "steps = [10, 50, 100]\nmin_step = \"2s\"\nshadow_first = \"2s\"";
    // Nothing listens on port 1: every notification fails, and is only counted.
    let gate = "[routes.rollout.predictions]\nmax_divergence = 0.1\nmax_label_flip = 0.05\ncritical = true\n[routes.rollout.hooks]\nnotify = \"http://127.0.0.1:1/\"";
    let veer = start_in(dir, &config(&v1.url(), &v2.url(), true, rollout, gate));
    let admin = TestClient::new(veer.admin_addr());
    assert_eq!(rollout_phase_weight(&admin).await, ("shadow".into(), 0));
    let (stop, _, task) = traffic(&veer);
    let rolled_back = wait_for_phase(&admin, "rolled_back", dir).await;
    stop.store(true, Ordering::SeqCst);
    let _ = task.await;
    assert_eq!(rolled_back["weight"], 0);
    let rollback = line(dir, "rollback").await;
    assert_eq!(
        actions(dir),
        ["start", "rollback"],
        "never given live traffic"
    );
    assert_has_numbers(&rollback);
    let failed: Vec<&str> = rollback["signals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["verdict"] == "fail")
        .filter_map(|s| s["signal"].as_str())
        .collect();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|s| ["divergence", "label_flip"].contains(s)),
        "{rollback:#}"
    );
    assert!(v2.requests() > 0, "the candidate was mirrored to");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let failures = admin
            .metric("veer_rollout_notify_failures_total", &[("route", "model")])
            .await;
        if failures >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "undelivered notifications counted: {failures}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rollout_phase_weight(admin: &TestClient) -> (String, u64) {
    let now = rollout(admin).await;
    (
        now["phase"].as_str().unwrap_or("?").to_owned(),
        now["weight"].as_u64().unwrap_or(999),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_first_holds_weight_at_0_until_the_prediction_gate_passes_and_a_restart_resumes() {
    let scratch = folder("shadow-first");
    let dir = scratch.path();
    let v1 = TestBackend::start(Behavior::Predicts { flip_percent: 20 }).await;
    let v2 = TestBackend::start(Behavior::Predicts { flip_percent: 20 }).await;
    let plan = "steps = [20, 50, 100]\nmin_step = \"1h\"\nshadow_first = \"2s\"";
    let gate = "[routes.rollout.predictions]\nmax_divergence = 0.2\nmax_label_flip = 0.2";
    let text = config(&v1.url(), &v2.url(), true, plan, gate);
    let veer = start_in(dir, &text);
    let admin = TestClient::new(veer.admin_addr());
    assert_eq!(rollout_phase_weight(&admin).await, ("shadow".into(), 0));
    let metrics = admin.get("/metrics", &[]).await.expect("metrics").text();
    assert_eq!(
        veer_testkit::metric_value(
            &metrics,
            "veer_rollout_state",
            &[("route", "model"), ("state", "shadow")]
        ),
        1.0
    );
    let (stop, _, task) = traffic(&veer);
    // Every look until the gate passes finds the candidate at 0 %.
    let deadline = Instant::now() + VERDICT_WITHIN;
    let progressing = loop {
        let now = rollout(&admin).await;
        if now["phase"] == "progressing" {
            break now;
        }
        assert_eq!(
            (&now["phase"], &now["weight"]),
            (&"shadow".into(), &0.into()),
            "{now:#}"
        );
        assert!(Instant::now() < deadline, "the gate never passed: {now:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::SeqCst);
    let _ = task.await;
    assert_eq!(progressing["weight"], 20);
    let advance = line(dir, "advance").await;
    assert_has_numbers(&advance);
    assert_moved(&advance, 0, 20);
    for gate in ["divergence", "label_flip"] {
        let judged = signal(&advance, gate);
        assert_eq!(judged["verdict"], "pass", "{judged:#}");
        assert!(
            judged["candidate"]["total"].as_u64() > Some(0),
            "{judged:#}"
        );
    }

    // A restart in the middle of the rollout resumes its step from the state file.
    drop(veer);
    let veer = start_in(dir, &text);
    let admin = TestClient::new(veer.admin_addr());
    assert_eq!(
        rollout_phase_weight(&admin).await,
        ("progressing".into(), 20)
    );
    let resumed = wait_for_start(dir, 2).await;
    assert!(
        resumed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("resumed")),
        "{resumed:#}"
    );

    // A reload that changes a setting other than the candidate or the steps keeps
    // the progress; changed steps start a new rollout, back in the shadow phase.
    let stricter = text.replace("alpha = 0.05", "alpha = 0.04");
    assert_ne!(stricter, text);
    veer.reload(&stricter).expect("reloaded");
    assert_eq!(
        rollout_phase_weight(&admin).await,
        ("progressing".into(), 20)
    );
    let restepped = stricter.replace("steps = [20, 50, 100]", "steps = [30, 60, 100]");
    assert_ne!(restepped, stricter);
    veer.reload(&restepped).expect("reloaded");
    assert_eq!(rollout_phase_weight(&admin).await, ("shadow".into(), 0));
    let begun = wait_for_start(dir, 3).await;
    assert_eq!(begun["to"], 0, "{begun:#}");
    assert!(
        begun["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("the rollout begins in shadow")),
        "{begun:#}"
    );
}

/// Waits for the `n`-th `start` line of the decision log.
async fn wait_for_start(dir: &Path, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let starts: Vec<Value> = decisions(dir)
            .into_iter()
            .filter(|l| l["action"] == "start")
            .collect();
        if starts.len() >= n {
            return starts[n - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no start line #{n}: {:#?}",
            decisions(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
