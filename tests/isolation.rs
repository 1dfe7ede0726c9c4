//! The promise veer is built on, held against the built binary: a shadow can never
//! stall live traffic, and what it holds stays bounded.
//!
//! These tests time veer and weigh its memory, so they run in a test binary of their
//! own (cargo runs test binaries one after another) and one at a time within it:
//! what they measure is veer under the load they make, not their neighbours.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::sync::{Mutex, MutexGuard};
use veer_testkit::{Behavior, TestBackend, TestClient, VeerProcess};

/// The binary under test, built by cargo for this test run.
const VEER: &str = env!("CARGO_BIN_EXE_veer");

/// Starts veer on `config` or fails the test with veer's own words.
fn start(config: &str) -> VeerProcess {
    VeerProcess::start(VEER, config).unwrap_or_else(|e| panic!("veer did not start: {e}"))
}

/// Held for the whole of a test: the tests of this binary run one at a time.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    TURN.lock().await
}

/// A flat JSON object of 60,000 keys (under the default 1 MiB `compare.max_body`),
/// in reverse order when `reversed`, so the comparison has to pair every key.
fn sixty_thousand_keys(reversed: bool) -> String {
    let mut keys: Vec<usize> = (0..60_000).collect();
    if reversed {
        keys.reverse();
    }
    let members: Vec<String> = keys.iter().map(|i| format!("\"k{i:05}\":0.5")).collect();
    format!("{{{}}}", members.join(","))
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Four shadowed requests at a time whose answers are 60,000-key objects (each
/// comparison pairs every key), while a second route serves live traffic: the
/// comparisons run on the compare pool, so the live route's p99 stays under 50 ms
/// and `/livez` answers within 100 ms throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_thousand_key_shadow_answers_leave_live_p99_under_50ms_and_livez_under_100ms() {
    let _turn = one_at_a_time().await;
    let (live_body, shadow_body) = (sixty_thousand_keys(false), sixty_thousand_keys(true));
    assert!(live_body.len() < 1024 * 1024);
    let big_live = TestBackend::start(Behavior::Fixed(live_body)).await;
    let big_shadow = TestBackend::start(Behavior::Fixed(shadow_body)).await;
    // The probes and the fast route's backend run on a thread and runtime of their
    // own, so they never queue behind this runtime's big-answer tasks: what they
    // measure is veer.
    let probes = Probes::start();
    let veer = start(&format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.big-live]
url = "{}"
timeout = "30s"

[backends.big-shadow]
url = "{}"
timeout = "30s"

[backends.fast]
url = "{}"
timeout = "5s"

[[routes]]
name = "big"
match = {{ path_prefix = "/big/" }}
split = [ {{ backend = "big-live", weight = 1 }} ]

[routes.shadow]
backend = "big-shadow"

[[routes]]
name = "live"
match = {{ path_prefix = "/live/" }}
split = [ {{ backend = "fast", weight = 1 }} ]
"#,
        big_live.url(),
        big_shadow.url(),
        probes.backend_url
    ));
    let admin = TestClient::new(veer.admin_addr());
    let stop = Arc::new(AtomicBool::new(false));
    let mut mirrors = Vec::new();
    for _ in 0..4 {
        let (client, stop) = (TestClient::new(veer.addr()), stop.clone());
        mirrors.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            for _ in 0..2_000 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let answer = client.get("/big/p", &[]).await.expect("answer");
                assert_eq!(answer.status, StatusCode::OK);
            }
        }));
    }
    let compared = |admin: &TestClient| {
        let admin = admin.clone();
        async move {
            admin
                .metric(
                    "veer_shadow_comparisons_total",
                    &[("route", "big"), ("outcome", "match")],
                )
                .await
        }
    };
    // Measure only once comparisons are under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while compared(&admin).await < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let compared_before = compared(&admin).await;
    assert!(compared_before >= 1.0, "no comparison finished in 60 s");

    let (latencies, worst_livez) = {
        let go = probes.run(veer.addr(), veer.admin_addr());
        tokio::task::spawn_blocking(go).await.expect("probe thread")
    };
    let compared_during = compared(&admin).await - compared_before;
    stop.store(true, Ordering::SeqCst);
    for mirror in mirrors {
        mirror.await.expect("mirror client");
    }
    assert!(
        compared_during >= 4.0,
        "only {compared_during} comparisons ran while live traffic was measured"
    );
    let p99 = p99(latencies);
    println!(
        "live p99 {p99:?}, slowest /livez {worst_livez:?}, {compared_during} comparisons meanwhile"
    );
    assert!(p99 < Duration::from_millis(50), "live p99 {p99:?}");
    assert!(
        worst_livez < Duration::from_millis(100),
        "slowest /livez {worst_livez:?}"
    );
}

/// What the probe thread measured: live latencies and the slowest `/livez`.
type Measured = (Vec<Duration>, Duration);

/// A thread with a runtime of its own, serving the fast route's backend and, when
/// told where veer is, timing 300 live requests and 100 `/livez` calls.
struct Probes {
    backend_url: String,
    go: std::sync::mpsc::Sender<(std::net::SocketAddr, std::net::SocketAddr)>,
    done: std::sync::mpsc::Receiver<Measured>,
}

impl Probes {
    fn start() -> Probes {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime");
            runtime.block_on(async move {
                let fast =
                    TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
                let _ = url_tx.send(fast.url());
                let Ok((addr, admin_addr)) = go_rx.recv() else {
                    return;
                };
                let (live, livez) = (TestClient::new(addr), TestClient::new(admin_addr));
                let mut latencies = Vec::new();
                let mut worst_livez = Duration::ZERO;
                for i in 0..300 {
                    let started = Instant::now();
                    let answer = live.get("/live/p", &[]).await.expect("live answer");
                    assert_eq!(answer.status, StatusCode::OK);
                    latencies.push(started.elapsed());
                    if i % 3 == 0 {
                        let started = Instant::now();
                        let answer = livez.get("/livez", &[]).await.expect("livez answer");
                        assert_eq!(answer.status, StatusCode::OK);
                        worst_livez = worst_livez.max(started.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = done_tx.send((latencies, worst_livez));
            });
        });
        let backend_url = url_rx.recv().expect("the probe thread's backend");
        Probes {
            backend_url,
            go,
            done,
        }
    }

    /// Starts probing veer at `addr` (admin at `admin`); the returned call waits for
    /// the measurements.
    fn run(
        self,
        addr: std::net::SocketAddr,
        admin: std::net::SocketAddr,
    ) -> impl FnOnce() -> Measured + Send + 'static {
        let _ = self.go.send((addr, admin));
        move || self.done.recv().expect("the probes finished")
    }
}

/// A slow live backend and 1 MB shadow answers with `max_in_flight = 8`: a mirror
/// holds its permit (and its answer) until the pair is judged, so at most eight
/// answers are held, memory grows by well under 20 MB, and the other 52 of 60
/// requests (one every 25 ms, all while the first live answers are pending) are
/// dropped and counted, not mirrored. (When the permit was let go once the shadow
/// had answered, all 60 were mirrored and held: RSS grew by 60 MB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_mirrors_in_flight_hold_at_most_eight_megabyte_answers() {
    let _turn = one_at_a_time().await;
    let megabyte = format!(r#"{{"predictions":["{}"]}}"#, "x".repeat(1 << 20));
    // Long enough that all 60 requests (1.5 s of them) arrive while the first
    // mirrors still wait for their live answers, however loaded the machine.
    let slow = TestBackend::start(Behavior::Slow(Duration::from_secs(10))).await;
    let shadow = TestBackend::start(Behavior::Fixed(megabyte)).await;
    let veer = start(&format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.live]
url = "{}"
timeout = "20s"

[backends.shadow]
url = "{}"
timeout = "20s"

[[routes]]
name = "held"
split = [ {{ backend = "live", weight = 1 }} ]

[routes.shadow]
backend = "shadow"
max_in_flight = 8

[routes.compare]
max_body = "2MiB"
"#,
        slow.url(),
        shadow.url()
    ));
    let admin = TestClient::new(veer.admin_addr());
    let baseline = veer.rss_bytes().expect("procfs");
    let mut peak = baseline;
    let mut requests = Vec::new();
    for _ in 0..60 {
        let client = TestClient::new(veer.addr());
        requests.push(tokio::spawn(async move { client.get("/p", &[]).await }));
        tokio::time::sleep(Duration::from_millis(25)).await;
        peak = peak.max(veer.rss_bytes().unwrap_or(0));
    }
    let watch_until = Instant::now() + Duration::from_secs(40);
    while requests.iter().any(|r| !r.is_finished()) && Instant::now() < watch_until {
        peak = peak.max(veer.rss_bytes().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for request in requests {
        let answer = request.await.expect("task").expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
    }
    let dropped = admin
        .metric(
            "veer_shadow_comparisons_total",
            &[("route", "held"), ("outcome", "dropped")],
        )
        .await;
    assert_eq!(dropped, 52.0);
    let judged = Instant::now() + Duration::from_secs(20);
    let all = || admin.metric("veer_shadow_comparisons_total", &[("route", "held")]);
    while all().await < 60.0 && Instant::now() < judged {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(all().await, 60.0, "8 judged, 52 dropped");
    assert_eq!(shadow.requests(), 8, "only 8 mirrors were sent");
    let growth = peak.saturating_sub(baseline);
    println!("RSS {baseline} -> peak {peak} bytes");
    assert!(
        growth < 20 * 1024 * 1024,
        "RSS grew by {} MB holding 8 mirrors",
        growth / (1024 * 1024)
    );
}
