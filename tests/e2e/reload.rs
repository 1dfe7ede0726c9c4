//! SIGHUP: atomic swaps under load, and reloads that are refused without harm.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use veer_testkit::TestClient;

use crate::{start, two_versions};

/// Reloads flip all traffic between v1 and v2 ten times while four clients keep
/// sending; not one request may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_continuous_load_drops_nothing() {
    let (a, b) = crate::two_backends().await;
    let config = |to_v2: bool| {
        let (w1, w2) = if to_v2 { (0, 100) } else { (100, 0) };
        two_versions(&a.url(), &b.url(), w1, w2, "\"random\"")
    };
    let veer = start(&config(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let client = TestClient::new(veer.addr());
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            // Bounded in count and time whatever happens to the reloads.
            let deadline = Instant::now() + Duration::from_secs(60);
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let ok = matches!(client.get("/v1/p", &[]).await, Ok(a) if a.status == 200);
                sent.fetch_add(1, Ordering::SeqCst);
                if !ok {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for i in 1..=10 {
        let before = sent.load(Ordering::SeqCst);
        let verdict = tokio::task::block_in_place(|| veer.reload(&config(i % 2 == 1)));
        let line = verdict.expect("reload accepted");
        assert_eq!(line["fields"]["generation"], i + 1);
        // Let traffic flow on each generation before the next swap.
        while sent.load(Ordering::SeqCst) < before + 50 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.expect("load task");
    }
    let sent = sent.load(Ordering::SeqCst);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failures among {sent} requests"
    );
    assert!(sent >= 500, "only {sent} requests were sent");
    assert!(
        a.requests() > 0 && b.requests() > 0,
        "both generations served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_keeps_the_old_routes_serving() {
    let (a, b) = crate::two_backends().await;
    let veer = start(&two_versions(&a.url(), &b.url(), 1, 0, "\"random\""));
    let client = TestClient::new(veer.addr());

    let broken = two_versions(&a.url(), &b.url(), 0, 1, "\"random\"")
        .replace("\"v2\", weight", "\"v3\", weight");
    let verdict = tokio::task::block_in_place(|| veer.reload(&broken)).expect_err("rejected");
    let error = verdict["fields"]["error"]
        .as_str()
        .expect("error text")
        .to_owned();
    let expected = format!(
        "{}:17:55: error: unknown backend \"v3\"",
        veer.config_path().display()
    );
    assert!(error.starts_with(&expected), "{error}");

    for _ in 0..20 {
        let answer = client.get("/v1/p", &[]).await.expect("answer");
        assert_eq!(answer.header("x-veer-backend"), "v1");
    }
    // The failed reload did not count: the next good one is generation 2.
    let ok = tokio::task::block_in_place(|| {
        veer.reload(&two_versions(&a.url(), &b.url(), 0, 1, "\"random\""))
    })
    .expect("accepted");
    assert_eq!(ok["fields"]["generation"], 2);
    assert_eq!(
        client
            .get("/v1/p", &[])
            .await
            .expect("answer")
            .header("x-veer-backend"),
        "v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_a_listener_is_rejected_whole() {
    let (a, b) = crate::two_backends().await;
    let veer = start(&two_versions(&a.url(), &b.url(), 1, 0, "\"random\""));
    let moved =
        two_versions(&a.url(), &b.url(), 0, 1, "\"random\"").replace("127.0.0.1:0", "127.0.0.1:1");
    let verdict = tokio::task::block_in_place(|| veer.reload(&moved)).expect_err("rejected");
    let error = verdict["fields"]["error"].as_str().expect("error text");
    assert!(
        error.contains("listeners change only on restart"),
        "{error}"
    );
    // The weights in the same file did not sneak in.
    let answer = TestClient::new(veer.addr())
        .get("/v1/p", &[])
        .await
        .expect("answer");
    assert_eq!(answer.header("x-veer-backend"), "v1");
}
