//! gRPC through veer (issue 9): real grpcio servers and client (tests/grpc/model.py)
//! on loopback, veer between them with `protocol = "h2"` backends. Unary and
//! server-streaming calls pass, trailers arrive, a sticky canary by `x-user-id` holds
//! for gRPC clients, and a gRPC error status counts against its backend.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use veer_testkit::{TestClient, VeerProcess};

use crate::start;

/// The model server and client script.
const MODEL_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/model.py");
/// Python starts, imports grpc and compiles the .proto before it binds: well under
/// a second on an idle machine, given slack for a loaded 2-core one.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole `model.py call` run: its start-up plus every call, each of which the
/// script itself bounds at 10 s.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Users in the sticky canary: at 50/50 the chance that all land on one version is
/// 2⁻¹⁹, and the seeded hash makes the outcome the same on every run anyway.
const USERS: usize = 20;
/// gRPC's UNAVAILABLE, what a model server answers while it cannot serve.
const UNAVAILABLE: u64 = 14;

/// Whether Python's grpcio and grpcio-tools are installed; says why not when not.
fn grpc_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        crate::skipped(&format!("{test}: Python grpcio and grpcio-tools are not installed (pip install grpcio grpcio-tools; .ci/run installs them)"));
    }
    ok
}

/// Drains a child's pipe on a thread, so the child never blocks on a full pipe and
/// what it said is there for a failure message.
fn drain(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

/// A running `model.py serve`; killed on drop.
struct ModelServer {
    child: Child,
    addr: String,
}

impl ModelServer {
    /// Starts a server answering as `version` (every call failing with `fail_code`
    /// when given) and waits for its `listening 127.0.0.1:PORT` line.
    fn start(version: &str, fail_code: Option<u64>) -> ModelServer {
        let mut command = Command::new("python3");
        command
            .args([MODEL_PY, "serve", "--port", "0", "--version", version])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(code) = fail_code {
            command.args(["--fail-code", &code.to_string()]);
        }
        let mut child = command.spawn().expect("spawn python3 model.py serve");
        let stderr = drain(child.stderr.take().expect("stderr pipe"));
        let stdout = child.stdout.take().expect("stdout pipe");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep reading, so a chatty server never blocks on a full pipe.
            for _ in lines {}
        });
        let ready = rx.recv_timeout(SERVER_READY_TIMEOUT);
        let addr = match &ready {
            Ok(Some(Ok(line))) => line.strip_prefix("listening ").map(str::to_owned),
            _ => None,
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait(); // which ends its stderr
            panic!(
                "model server {version} not ready within {SERVER_READY_TIMEOUT:?}: {ready:?}\n{}",
                stderr.join().unwrap_or_default()
            );
        };
        ModelServer { child, addr }
    }

    /// The backend URL veer is given: h2c, as gRPC speaks it without TLS.
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `model.py call` against `target`: `count` calls of `method` ("unary" or
/// "stream") for each of `users`, on one channel. One JSON object per call.
fn call(
    target: std::net::SocketAddr,
    users: &[String],
    method: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let mut command = Command::new("python3");
    command
        .args([MODEL_PY, "call", "--target", &target.to_string()])
        .args(["--method", method, "--count", &count.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for user in users {
        command.args(["--user", user]);
    }
    let mut child = command.spawn().expect("spawn python3 model.py call");
    let stdout = drain(child.stdout.take().expect("stdout pipe"));
    let stderr = drain(child.stderr.take().expect("stderr pipe"));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for model.py call") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("model.py call exited {s}:\n{stdout}\n{stderr}"),
        None => panic!("model.py call took over {CLIENT_TIMEOUT:?}:\n{stdout}\n{stderr}"),
    }
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(results.len(), users.len() * count, "{stdout}\n{stderr}");
    results
}

/// Veer in front of two model servers: a 50/50 canary by `x-user-id`, on every
/// method of the test service.
fn veer_for(v1: &ModelServer, v2: &ModelServer) -> VeerProcess {
    start(&format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.v1]
url = "{}"
protocol = "h2"
timeout = "10s"

[backends.v2]
url = "{}"
protocol = "h2"
timeout = "10s"

[[routes]]
name = "model"
match = {{ path_prefix = "/veer.test.Model/" }}
split = [ {{ backend = "v1", weight = 50 }}, {{ backend = "v2", weight = 50 }} ]
split_by = {{ header = "x-user-id" }}
hash_seed = 7
"#,
        v1.url(),
        v2.url()
    ))
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// A call's status and what veer logged about failed requests, for assertion
/// messages: a backend that resets the stream reaches the client only as a 502.
fn explain(result: &serde_json::Value, veer: &VeerProcess) -> String {
    let failures: Vec<String> = veer
        .log_lines()
        .iter()
        .filter(|l| l["fields"]["message"] == "request failed")
        .filter_map(|l| l["fields"]["error"].as_str().map(str::to_owned))
        .take(3)
        .collect();
    format!(
        "{} {} ({result}); veer's request failures: [{}]",
        result["status"],
        result["details"],
        failures.join("; ")
    )
}

/// A unary call and a three-message server stream, each answered OK with the
/// backend's trailing metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_streaming_calls_pass_through_with_their_trailers() {
    if !grpc_available("gRPC passthrough test") {
        return;
    }
    let (v1, v2) = (
        ModelServer::start("v1", None),
        ModelServer::start("v2", None),
    );
    let veer = veer_for(&v1, &v2);
    let some = users(4);
    for (method, messages) in [("unary", 1), ("stream", 3)] {
        let results = tokio::task::block_in_place(|| call(veer.addr(), &some, method, 2));
        for result in &results {
            assert_eq!(result["code"], 0, "{method}: {}", explain(result, &veer));
            let versions = result["versions"].as_array().expect("versions");
            assert_eq!(versions.len(), messages, "{method}: {result}");
            let version = &versions[0];
            assert!(versions.iter().all(|v| v == version), "{method}: {result}");
            // The metadata reached the backend, and the backend's trailing metadata
            // (sent after the body, in HTTP/2 trailers) reached the client. The
            // status itself travels in those trailers as grpc-status, which grpcio
            // hands over as the call's code rather than as metadata.
            assert!(
                result["seen_users"]
                    .as_array()
                    .expect("seen_users")
                    .iter()
                    .all(|u| *u == result["user"]),
                "{method}: {result}"
            );
            assert_eq!(result["trailer_version"], *version, "{method}: {result}");
        }
    }
}

/// Every user's calls, unary and streaming, all multiplexed on one HTTP/2
/// connection (as a gRPC channel sends them), land on one version: veer splits per
/// call, by the `x-user-id` metadata, not per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_canary_keeps_each_grpc_user_on_one_version() {
    if !grpc_available("gRPC sticky canary test") {
        return;
    }
    let (v1, v2) = (
        ModelServer::start("v1", None),
        ModelServer::start("v2", None),
    );
    let veer = veer_for(&v1, &v2);
    let everyone = users(USERS);
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for method in ["unary", "stream"] {
        let results = tokio::task::block_in_place(|| call(veer.addr(), &everyone, method, 3));
        for result in results {
            assert_eq!(result["code"], 0, "{method}: {}", explain(&result, &veer));
            let user = result["user"].as_str().expect("user").to_owned();
            for version in result["versions"].as_array().expect("versions") {
                let version = version.as_str().expect("a version name").to_owned();
                seen.entry(user.clone()).or_default().insert(version);
            }
        }
    }
    assert_eq!(seen.len(), USERS, "{seen:?}");
    for (user, versions) in &seen {
        assert_eq!(
            versions.len(),
            1,
            "{user} moved between versions: {versions:?}"
        );
    }
    let on_v2 = seen.values().filter(|v| v.contains("v2")).count();
    assert!(0 < on_v2 && on_v2 < USERS, "{on_v2} of {USERS} users on v2");
}

/// A v2 that answers UNAVAILABLE: its users get that status, message and trailing
/// metadata through veer, and veer counts the calls as `grpc_14` for v2 (issue 9's
/// metrics contract), not as the HTTP 200 that carried them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_error_status_reaches_the_client_and_counts_against_its_backend() {
    if !grpc_available("gRPC error status test") {
        return;
    }
    let v1 = ModelServer::start("v1", None);
    let v2 = ModelServer::start("v2", Some(UNAVAILABLE));
    let veer = veer_for(&v1, &v2);
    let results = tokio::task::block_in_place(|| call(veer.addr(), &users(USERS), "unary", 1));
    let mut failed = 0;
    for result in &results {
        match result["code"].as_u64() {
            Some(0) => assert_eq!(result["versions"], serde_json::json!(["v1"]), "{result}"),
            Some(UNAVAILABLE) => {
                // v2's status, message and trailing metadata, as v2 sent them. The
                // code alone proves nothing: grpcio also maps a 502 from veer to 14.
                assert_eq!(
                    result["details"],
                    "v2 fails on purpose",
                    "{}",
                    explain(result, &veer)
                );
                assert_eq!(result["trailer_version"], "v2", "{result}");
                failed += 1;
            }
            _ => panic!(
                "neither OK from v1 nor UNAVAILABLE from v2: {}",
                explain(result, &veer)
            ),
        }
    }
    assert!(failed > 0, "no user landed on v2: {results:?}");

    // veer records a request when it ends, which may be just after the client has
    // its status: poll, within a bound.
    let admin = TestClient::new(veer.admin_addr());
    let code = format!("grpc_{UNAVAILABLE}");
    let labels = [("backend", "v2"), ("code", code.as_str())];
    let deadline = Instant::now() + Duration::from_secs(5);
    let counted = loop {
        let counted = admin.metric("veer_requests_total", &labels).await;
        if counted >= 1.0 || Instant::now() >= deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        counted >= 1.0,
        "veer_requests_total{{backend=\"v2\",code=\"{code}\"}} is {counted} after {failed} UNAVAILABLE answers from v2; its series:\n{}",
        admin
            .get("/metrics", &[])
            .await
            .expect("metrics")
            .text()
            .lines()
            .filter(|l| l.starts_with("veer_requests_total") && l.contains("backend=\"v2\""))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
