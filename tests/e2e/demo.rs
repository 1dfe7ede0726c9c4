//! `veer demo` and scale-out, as a newcomer and an operator would meet them.

use std::collections::HashMap;
use std::process::Command;

use veer_testkit::{Behavior, TestBackend, TestClient};

use crate::{start, two_versions, VEER};

/// Runs `veer demo` with `args` for `duration`; its stdout, after a clean exit.
fn demo(duration: &str, args: &[&str]) -> String {
    let out = Command::new(VEER)
        .args([
            "demo",
            "--duration",
            duration,
            "--rps",
            "200",
            "--port",
            "0",
            "--admin-port",
            "0",
        ])
        .args(args)
        .output()
        .expect("run veer demo");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("dashboard:    http://127.0.0.1:"),
        "{stdout}"
    );
    stdout.into_owned()
}

#[test]
fn the_demo_shadows_v2_and_rolls_it_back_on_its_label_flips() {
    let stdout = demo("15s", &[]);
    for line in [
        "churn-v1  live",
        "churn-v2  shadow",
        "shadow churn-v2: divergence",
        "rollout churn: start 0% → 0% (shadow) by veer",
        "rollout churn: rollback 0% → 0% (rolled_back) by veer",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    let rollback = stdout
        .lines()
        .find(|l| l.contains("rollout churn: rollback"))
        .unwrap_or_default();
    assert!(
        rollback.contains("label_flip: the candidate's rate is at least"),
        "rolled back for its label flips: {rollback}"
    );
    assert!(
        !stdout.contains("churn-v2  live"),
        "a rolled-back v2 never served a user:\n{stdout}"
    );
    let divergence = stdout
        .lines()
        .rev()
        .find_map(|l| {
            l.split("divergence ")
                .nth(1)?
                .split('%')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .expect("a divergence figure");
    assert!(
        (1.0..60.0).contains(&divergence),
        "v2 differs on one segment, not everywhere: {divergence}%"
    );
}

#[test]
fn the_demo_promotes_a_good_candidate() {
    let stdout = demo("60s", &["--candidate", "good"]);
    for line in [
        "rollout churn: advance 0% → 25% (progressing) by veer",
        "rollout churn: advance 25% → 50% (progressing) by veer",
        "rollout churn: promote 50% → 100% (promoted) by veer",
        "churn-v2  live",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("rollback"), "{stdout}");
}

/// Three replicas on one config: every user meets one version whichever replica
/// answers, and the replicas' counters, summed by backend as Prometheus would, add up
/// to the requests sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_on_every_user_and_their_metrics_add_up() {
    let (a, b) = (
        TestBackend::start(Behavior::Fixed("a".into())).await,
        TestBackend::start(Behavior::Fixed("b".into())).await,
    );
    let config = two_versions(&a.url(), &b.url(), 70, 30, "{ header = \"x-user-id\" }");
    let replicas = [start(&config), start(&config), start(&config)];
    let clients: Vec<TestClient> = replicas.iter().map(|r| TestClient::new(r.addr())).collect();
    let mut sent = 0;
    for user in 0..300 {
        let user = format!("user-{user}");
        let mut seen = Vec::new();
        for client in &clients {
            let answer = client
                .get("/v1/p", &[("x-user-id", &user)])
                .await
                .expect("answer");
            seen.push(answer.header("x-veer-backend").to_owned());
            sent += 1;
        }
        assert!(seen.iter().all(|s| *s == seen[0]), "{user}: {seen:?}");
    }
    let mut by_backend: HashMap<String, f64> = HashMap::new();
    for replica in &replicas {
        let text = TestClient::new(replica.admin_addr())
            .get("/metrics", &[])
            .await
            .expect("metrics")
            .text();
        for line in text
            .lines()
            .filter(|l| l.starts_with("veer_requests_total{"))
        {
            let backend = line
                .split("backend=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default();
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            *by_backend.entry(backend.to_owned()).or_default() += value;
        }
    }
    let total: f64 = by_backend.values().sum();
    assert_eq!(total, f64::from(sent), "{by_backend:?}");
    assert_eq!(by_backend["v1"] + by_backend["v2"], f64::from(sent));
    assert_eq!(by_backend["v1"], a.requests() as f64);
}

/// A demo that cannot bind its port says so once, fails, and leaves no routing
/// file behind.
#[test]
fn a_demo_on_a_busy_port_fails_once_and_cleans_up() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = busy.local_addr().expect("its address").port().to_string();
    let child = Command::new(VEER)
        .args([
            "demo",
            "--duration",
            "5s",
            "--port",
            &port,
            "--admin-port",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run veer demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("veer demo ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches(&format!("127.0.0.1:{port}")).count(),
        1,
        "the error, once: {stderr}"
    );
    let file = std::env::temp_dir().join(format!("veer-demo-{pid}.toml"));
    assert!(!file.exists(), "{} left behind", file.display());
    drop(busy);
}

/// The demo's routing file is yours to edit: a SIGHUP applies the edit and says so,
/// the final summary is labelled, and the edited file is kept when the demo ends.
#[test]
fn an_edited_demo_file_is_reloaded_on_sighup_and_kept() {
    use std::io::BufRead;
    let mut child = Command::new(VEER)
        .args([
            "demo",
            "--duration",
            "8s",
            "--rps",
            "50",
            "--port",
            "0",
            "--admin-port",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run veer demo");
    let pid = child.id();
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let wait_for = |wanted: &str| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match seen.recv_timeout(left) {
                Ok(line) if line.contains(wanted) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {wanted:?}: {e}"),
            }
        }
    };
    let announced = wait_for("routing file: ");
    let path = announced
        .split("routing file: ")
        .nth(1)
        .and_then(|rest| rest.split(" (edit it").next())
        .map(std::path::PathBuf::from)
        .expect("the routing file's path");
    let mut text = std::fs::read_to_string(&path).expect("the demo's routing file");
    text.push_str("\n# edited by a person\n");
    std::fs::write(&path, &text).expect("edit the routing file");
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    wait_for("config reloaded: generation 2");
    wait_for("[final, after ");
    let kept = wait_for("your edited routing file is kept: ");
    assert!(kept.ends_with(&path.display().to_string()), "{kept}");
    assert!(child.wait().expect("the demo ends").success());
    let _ = reader.join();
    assert_eq!(
        std::fs::read_to_string(&path).expect("kept"),
        text,
        "the edit is still there"
    );
    let _ = std::fs::remove_file(&path);
}
