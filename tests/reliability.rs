//! The production edge held against the built binary: reloads under load, a canary
//! flipped while traffic flows, overload and slowloris, the drain on SIGTERM, and
//! HTTP/2 load over h2c and TLS.
//!
//! Like `isolation.rs`, these tests time veer and weigh its memory, so they run in a
//! binary of their own and one at a time within it. Every load loop is bounded in
//! count and in time; only loopback addresses are used.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};
use veer_testkit::{Behavior, TestBackend, TestClient, TestPki, VeerProcess};

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

/// Says, where `.ci/run` counts it, that `test` was skipped and why.
fn skipped(test: &str, why: &str) {
    veer_testkit::skipped(&format!("{test}: {why}"));
}

fn two_versions(v1: &str, v2: &str, w1: u32, w2: u32, extra: &str) -> String {
    format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
{extra}

[backends.v1]
url = "{v1}"
timeout = "10s"

[backends.v2]
url = "{v2}"
timeout = "10s"

[[routes]]
name = "canary"
split = [ {{ backend = "v1", weight = {w1} }}, {{ backend = "v2", weight = {w2} }} ]
"#
    )
}

fn percentile(mut samples: Vec<Duration>, pct: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * pct / 100).min(samples.len() - 1)]
}

/// Looks at one answer (and when its request began); false counts it as failed.
type Check = Arc<dyn Fn(Instant, &veer_testkit::Answer) -> bool + Send + Sync>;

/// Runs `clients` tasks sending GETs until `stop`, each answer checked by `check`
/// (which returns false for a failure); returns (sent, failed).
async fn load(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
    check: Check,
) -> (usize, usize) {
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = TestClient::new(addr);
            let (stop, sent, failed, check) =
                (stop.clone(), sent.clone(), failed.clone(), check.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let began = Instant::now();
                    let ok = match client.get("/p", &[]).await {
                        Ok(answer) => answer.status == 200 && check(began, &answer),
                        Err(_) => false,
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    if !ok {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_at_32_connections_fail_nothing() {
    let _turn = one_at_a_time().await;
    let (a, b) = (
        TestBackend::start(Behavior::Fixed("v1".into())).await,
        TestBackend::start(Behavior::Fixed("v2".into())).await,
    );
    let config = |i: u32| two_versions(&a.url(), &b.url(), 100 - i * 5, i * 5, "");
    let veer = start(&config(0));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(veer.addr(), 32, stop.clone(), Arc::new(|_, _| true)));
    for i in 1..=20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reloaded = tokio::task::block_in_place(|| veer.reload(&config(i)));
        assert!(reloaded.is_ok(), "reload {i}: {reloaded:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let (sent, failed) = traffic.await.expect("load");
    assert!(sent > 200, "load ran: {sent}");
    assert_eq!(failed, 0, "{failed} of {sent} failed");
}

/// When each configuration was asked for and when it was in place.
#[derive(Debug, Clone, Copy)]
struct Flip {
    asked: Instant,
    applied: Instant,
    to_v2: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_flipped_every_200ms_answers_from_a_live_generation() {
    let _turn = one_at_a_time().await;
    let (a, b) = (
        TestBackend::start(Behavior::Fixed("v1".into())).await,
        TestBackend::start(Behavior::Fixed("v2".into())).await,
    );
    let config = |to_v2: bool| {
        let (w1, w2) = if to_v2 { (0, 100) } else { (100, 0) };
        two_versions(&a.url(), &b.url(), w1, w2, "")
    };
    let started = Instant::now();
    let veer = start(&config(false));
    let flips = Arc::new(StdMutex::new(vec![Flip {
        asked: started,
        applied: Instant::now(),
        to_v2: false,
    }]));
    let answers = Arc::new(StdMutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let check = {
        let answers = answers.clone();
        Arc::new(move |began: Instant, answer: &veer_testkit::Answer| {
            let backend = answer.header("x-veer-backend").to_owned();
            if let Ok(mut all) = answers.lock() {
                all.push((began, Instant::now(), backend == "v2"));
            }
            true
        })
    };
    let traffic = tokio::spawn(load(veer.addr(), 8, stop.clone(), check));
    for i in 1..=15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let to_v2 = i % 2 == 1;
        let asked = Instant::now();
        let reloaded = tokio::task::block_in_place(|| veer.reload(&config(to_v2)));
        assert!(reloaded.is_ok(), "flip {i}: {reloaded:?}");
        flips.lock().expect("flips").push(Flip {
            asked,
            applied: Instant::now(),
            to_v2,
        });
    }
    stop.store(true, Ordering::SeqCst);
    let (sent, failed) = traffic.await.expect("load");
    assert_eq!(failed, 0, "{failed} of {sent} failed");
    let flips = flips.lock().expect("flips").clone();
    let answers = answers.lock().expect("answers").clone();
    assert!(answers.iter().any(|a| a.2) && answers.iter().any(|a| !a.2));
    for (began, ended, on_v2) in answers {
        // Live during [began, ended]: the last configuration in place at `began`,
        // and every one asked for before `ended` and not replaced before `began`.
        let in_place = flips
            .iter()
            .rev()
            .find(|f| f.applied <= began)
            .map(|f| f.to_v2);
        let possible = flips
            .iter()
            .filter(|f| f.asked <= ended && f.applied >= began)
            .map(|f| f.to_v2);
        let live: Vec<bool> = in_place.into_iter().chain(possible).collect();
        assert!(
            live.contains(&on_v2),
            "answered by {} while only {live:?} (to_v2) were live",
            if on_v2 { "v2" } else { "v1" }
        );
    }
}

/// Connects, sends a GET, and returns (status line, time from connect to answer).
async fn get_raw(addr: SocketAddr) -> (String, Duration) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return ("connect failed".into(), Duration::ZERO);
    };
    let began = Instant::now();
    let _ = stream
        .write_all(b"GET /p HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await;
    let mut head = [0u8; 12];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut head)).await;
    let line = match read {
        Ok(Ok(_)) => String::from_utf8_lossy(&head).into_owned(),
        _ => "no answer".into(),
    };
    (line, began.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_gets_503_at_once_while_open_connections_and_the_admin_are_served() {
    let _turn = one_at_a_time().await;
    let slow = TestBackend::start(Behavior::Slow(Duration::from_secs(2))).await;
    let veer = start(&two_versions(
        &slow.url(),
        &slow.url(),
        1,
        0,
        "\n[limits]\nmax_connections = 100",
    ));
    let rss_before = veer.rss_bytes().unwrap_or(0);
    let addr = veer.addr();
    // 400 clients in 100 ms (20 every 5 ms), all open while the first 100 wait on
    // the 2 s backend.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.extend((0..20).map(|_| tokio::spawn(get_raw(addr))));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = TestClient::new(veer.admin_addr());
    let livez = admin
        .get("/livez", &[])
        .await
        .expect("the admin port answers");
    assert_eq!(livez.status, 200);
    let mut refused = Vec::new();
    let mut served = 0;
    for client in clients {
        let (line, took) = client.await.expect("client");
        match &line[9..12.min(line.len())] {
            "503" => refused.push(took),
            "200" => served += 1,
            other => panic!("unexpected answer {other:?}: {line:?}"),
        }
    }
    assert_eq!(served, 100, "the open connections are all served");
    assert_eq!(refused.len(), 300);
    let p95 = percentile(refused, 95);
    assert!(p95 < Duration::from_millis(50), "503 p95 {p95:?}");
    let rss_after = veer.rss_bytes().unwrap_or(0);
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "memory bounded: {rss_before} → {rss_after}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut in_flight = f64::MAX;
    while Instant::now() < deadline {
        in_flight = admin
            .metric("veer_in_flight_requests", &[("role", "live")])
            .await;
        if in_flight == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_flight, 0.0, "the in-flight gauge returns to 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slowloris_connections_are_closed_while_clients_are_served() {
    let _turn = one_at_a_time().await;
    let fast = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let veer = start(&two_versions(
        &fast.url(),
        &fast.url(),
        1,
        0,
        "\n[limits]\nheader_read_timeout = \"3s\"",
    ));
    let addr = veer.addr();
    let opened = Instant::now();
    let trickles: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let (mut read, mut write) = stream.split();
                let trickle = async {
                    for byte in b"GET /p HTTP/1.1\r\nx-slow: abcdefgh" {
                        if write.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                };
                let mut answer = Vec::new();
                let reading =
                    tokio::time::timeout(Duration::from_secs(15), read.read_to_end(&mut answer));
                tokio::select! {
                    _ = reading => {}
                    () = trickle => {}
                }
                (
                    String::from_utf8_lossy(&answer).into_owned(),
                    opened.elapsed(),
                )
            })
        })
        .collect();
    let client = TestClient::new(addr);
    let admin = TestClient::new(veer.admin_addr());
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let began = Instant::now();
        assert_eq!(client.get("/p", &[]).await.expect("answer").status, 200);
        latencies.push(began.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(admin.get("/livez", &[]).await.expect("livez").status, 200);
    let p99 = percentile(latencies, 99);
    assert!(
        p99 < Duration::from_millis(50),
        "client p99 {p99:?} beside 200 trickles"
    );
    for trickle in trickles {
        let (answer, after) = trickle.await.expect("trickle");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(after < Duration::from_secs(6), "closed after {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_and_slow_connections_at_once_and_drains_requests() {
    let _turn = one_at_a_time().await;
    let slow = TestBackend::start(Behavior::Slow(Duration::from_millis(1500))).await;
    let mut veer = start(&two_versions(&slow.url(), &slow.url(), 1, 0, ""));
    let addr = veer.addr();
    let in_flight = tokio::spawn(async move { TestClient::new(addr).get("/p", &[]).await });
    let mut idle = TcpStream::connect(addr).await.expect("idle connection");
    let mut trickling = TcpStream::connect(addr)
        .await
        .expect("trickling connection");
    trickling
        .write_all(b"GET /p HTTP/1.1\r\nx-slow")
        .await
        .expect("a partial head");
    // An HTTP/2 connection with a request in flight: it gets a GOAWAY, its request
    // finishes, and the connection ends cleanly.
    let h2 = TcpStream::connect(addr).await.expect("h2 connection");
    let (mut sender, h2_connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .expect("h2c handshake");
    let h2_connection = tokio::spawn(h2_connection);
    let h2_request = http::Request::get(format!("http://{addr}/p"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let h2_in_flight = tokio::spawn(sender.send_request(h2_request));
    tokio::time::sleep(Duration::from_millis(300)).await;

    veer.signal("TERM").expect("SIGTERM");
    let signalled = Instant::now();
    let admin = TestClient::new(veer.admin_addr());
    let readyz = admin
        .get("/readyz", &[])
        .await
        .expect("readyz while draining");
    assert_eq!(readyz.status, 503);
    for (name, stream) in [("idle", &mut idle), ("trickling", &mut trickling)] {
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the {name} connection closes at once");
    }
    let answer = in_flight
        .await
        .expect("task")
        .expect("the in-flight request finishes");
    assert_eq!(answer.status, 200);
    let h2_answer = h2_in_flight
        .await
        .expect("task")
        .expect("the h2 request finishes");
    assert_eq!(h2_answer.status(), 200);
    drop(h2_answer);
    let ended = tokio::time::timeout(Duration::from_secs(5), h2_connection)
        .await
        .expect("the h2 connection ends")
        .expect("task");
    assert!(
        ended.is_ok(),
        "after a GOAWAY, not a broken pipe: {ended:?}"
    );
    let status = veer.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once() {
    let _turn = one_at_a_time().await;
    let hung = TestBackend::start(Behavior::Hangs).await;
    let mut veer = start(&two_versions(&hung.url(), &hung.url(), 1, 0, ""));
    let addr = veer.addr();
    let _stuck = tokio::spawn(async move { TestClient::new(addr).get("/p", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    veer.signal("TERM").expect("first SIGTERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        veer.wait_exit(Duration::from_millis(100)).is_err(),
        "still draining"
    );
    let second = Instant::now();
    veer.signal("TERM").expect("second SIGTERM");
    veer.wait_exit(Duration::from_secs(2))
        .expect("exits on the second signal");
    assert!(second.elapsed() < Duration::from_secs(2));
}

/// TLS traffic through two SIGHUPs: a rotated certificate is served from the next
/// handshake on; a broken one is refused as a reload error (the process stays up,
/// the generation stays, the error is counted) while every request keeps succeeding,
/// from a pooled HTTP/2 client and on new handshakes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_sighup_and_a_broken_one_costs_no_tls_request() {
    let _turn = one_at_a_time().await;
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let pki = Arc::new(TestPki::new());
    let tls = format!(
        "https = \"127.0.0.1:0\"\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"",
        pki.path("server.crt").display(),
        pki.path("server.key").display()
    );
    let config = two_versions(&backend.url(), &backend.url(), 1, 0, &tls);
    let veer = start(&config);
    let https: SocketAddr = veer
        .wait_for_log(0, "https listening", Duration::from_secs(10))
        .ok()
        .and_then(|l| l["fields"]["addr"].as_str().and_then(|a| a.parse().ok()))
        .expect("the https listener's address");
    let admin = TestClient::new(veer.admin_addr());
    let served = || async { pki.handshake(https, &[b"h2"]).await.expect("handshake").1 };
    let first = served().await;
    assert_eq!(first, pki.certificate("server"));

    // Requests all along: a pooled HTTP/2 client, and a new client (a new
    // handshake) every fifth.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (pki, stop) = (pki.clone(), stop.clone());
        async move {
            let kept = pki.client(https, true);
            let (mut sent, mut failed) = (0usize, Vec::new());
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                let answer = if sent % 5 == 4 {
                    pki.client(https, false).get("/p", &[]).await
                } else {
                    kept.get("/p", &[]).await
                };
                match answer {
                    Ok((answer, _)) if answer.status == 200 => {}
                    other => failed.push(format!("{other:?}")),
                }
                sent += 1;
            }
            (sent, failed)
        }
    });

    pki.issue("server", "second");
    tokio::task::block_in_place(|| veer.reload(&config)).expect("the rotated pair loads");
    let rotated = served().await;
    assert_ne!(rotated, first);
    assert_eq!(rotated, pki.certificate("server"), "the new certificate");

    let metric = |text: &str, name: &str, labels: &[(&str, &str)]| {
        veer_testkit::metric_value(text, name, labels)
    };
    let before = admin.get("/metrics", &[]).await.expect("metrics").text();
    std::fs::write(pki.path("server.key"), "not a key").expect("break the key");
    let refused =
        tokio::task::block_in_place(|| veer.reload(&config)).expect_err("a broken key is refused");
    assert!(refused.to_string().contains("tls.key"), "{refused}");
    let after = admin.get("/metrics", &[]).await.expect("metrics").text();
    let errors = [("result", "error")];
    assert_eq!(
        metric(&after, "veer_config_reloads_total", &errors),
        metric(&before, "veer_config_reloads_total", &errors) + 1.0
    );
    assert_eq!(metric(&after, "veer_config_generation", &[]), 2.0);
    assert_eq!(served().await, rotated, "the running pair keeps serving");
    // A little more traffic on the refused reload's far side, then the count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (sent, failed) = traffic.await.expect("traffic");
    assert!(sent >= 20, "{sent} requests");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
}

/// Runs h2load and returns its summary line of requests, or `None` when it is not
/// installed.
fn h2load(args: &[&str]) -> Option<String> {
    let out = Command::new("h2load").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.lines()
            .find(|l| l.starts_with("requests:"))
            .unwrap_or(&text)
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_over_h2c_and_tls_sees_no_error() {
    let _turn = one_at_a_time().await;
    if Command::new("h2load").arg("--version").output().is_err() {
        return skipped(
            "h2load_over_h2c_and_tls_sees_no_error",
            "h2load (nghttp2-client) is not installed",
        );
    }
    let fast = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let pki = TestPki::new();
    let tls = format!(
        "https = \"127.0.0.1:0\"\n\n[tls]\ncert = \"{}\"\nkey = \"{}\"",
        pki.path("server.crt").display(),
        pki.path("server.key").display()
    );
    let veer = start(&two_versions(&fast.url(), &fast.url(), 1, 0, &tls));
    let https: SocketAddr = veer
        .wait_for_log(0, "https listening", Duration::from_secs(10))
        .ok()
        .and_then(|l| l["fields"]["addr"].as_str().and_then(|a| a.parse().ok()))
        .expect("the https listener's address");
    let plain = format!("http://{}/p", veer.addr());
    let secure = format!("https://127.0.0.1:{}/p", https.port());
    // 10,000 requests: a few seconds of load on a test build.
    for target in [plain, secure] {
        let summary = tokio::task::block_in_place(|| {
            h2load(&["-n", "10000", "-c", "8", "-m", "4", "-t", "1", &target])
        })
        .expect("h2load ran");
        assert!(
            summary.contains("10000 succeeded, 0 failed, 0 errored"),
            "{target}: {summary}"
        );
    }
    // openssl's own client negotiates h2 by ALPN too.
    let alpn = Command::new("openssl")
        .args([
            "s_client",
            "-alpn",
            "h2",
            "-connect",
            &format!("127.0.0.1:{}", https.port()),
        ])
        .stdin(std::process::Stdio::null())
        .output();
    match alpn {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("ALPN protocol: h2"), "{text}");
        }
        Err(e) => skipped(
            "h2load_over_h2c_and_tls_sees_no_error (openssl)",
            &e.to_string(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_is_veer_s_503_not_the_backend_s_error() {
    let _turn = one_at_a_time().await;
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let config = two_versions(&backend.url(), &backend.url(), 1, 0, "");
    let veer = VeerProcess::start_limited(VEER, &config, Some(48))
        .unwrap_or_else(|e| panic!("veer did not start: {e}"));
    // A first connection, served while descriptors remain.
    let mut first = TcpStream::connect(veer.addr()).await.expect("connect");
    first
        .write_all(b"GET /p HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = first.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Use up veer's descriptors with connections it accepts and keeps.
    let mut hogs = Vec::new();
    for _ in 0..60 {
        if let Ok(stream) = TcpStream::connect(veer.addr()).await {
            hogs.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The pooled upstream connection idles out (4 s) so the next request must
    // connect anew, with no descriptor left to do it.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    first
        .write_all(b"GET /p HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .expect("write");
    let n = tokio::time::timeout(Duration::from_secs(10), first.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("answer");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""error":"out_of_sockets""#), "{answer}");
    drop(hogs);
    let admin = TestClient::new(veer.admin_addr());
    let exchanges = admin
        .metric("veer_requests_total", &[("backend", "v1")])
        .await;
    assert_eq!(
        exchanges, 1.0,
        "only the first request was an exchange with v1"
    );
    let refused = admin
        .metric("veer_refused_total", &[("reason", "out_of_sockets")])
        .await;
    assert_eq!(refused, 1.0, "counted as veer's own refusal");
}
