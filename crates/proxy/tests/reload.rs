//! Reloads in-process over real sockets: one serialised path, settings carried over
//! only when they are unchanged, and entries nothing uses released.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{file_name, shadowed, start, temp_path};
use veer_testkit::{Behavior, TestBackend};

fn log_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// Waits (up to 20 s) until `n` lines of the log at `path` carry a request id
/// starting with `prefix`; how many do.
async fn lines_reaching(path: &Path, prefix: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| {
                l["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(prefix))
            })
            .count();
        if count >= n || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A divergence log's rate is keyed by (path, lines a second), its file writer by path
/// (one writer per file): a reload from 1 to 1000 lines a second gets a rate of its
/// own at once, and the old rate is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_from_1_to_1000_divergence_lines_a_second_takes_effect() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[0.1]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[0.9]}"#.into())).await;
    let log = temp_path("divergence-rate", "jsonl");
    let lines = |per_sec: u32| {
        format!(
            "divergence_log = \"{}\"\ndivergence_log_per_sec = {per_sec}",
            file_name(&log)
        )
    };
    let proxy = start(&shadowed(
        "rate",
        &live.url(),
        &shadow.url(),
        "5s",
        &lines(1),
    ))
    .await;
    let diverged = |at_least| {
        proxy.metric_reaches(
            "veer_shadow_comparisons_total",
            &[("outcome", "diverged")],
            at_least,
        )
    };
    for _ in 0..60 {
        proxy.client.get("/rate/p", &[]).await.expect("answer");
    }
    assert_eq!(diverged(60.0).await, 60.0);
    let at_one_per_second = log_lines(&log);
    let limited = proxy.metric(
        "veer_divergence_log_dropped_total",
        &[("reason", "rate_limited")],
    );
    assert!(
        at_one_per_second <= 20 && limited >= 40.0,
        "{at_one_per_second} lines written, {limited} rate-limited at 1/s"
    );

    let reloaded = proxy
        .reload(&shadowed(
            "rate",
            &live.url(),
            &shadow.url(),
            "5s",
            &lines(1000),
        ))
        .await
        .expect("accepted");
    assert_eq!(reloaded.generation, 2);
    for i in 0..60 {
        let id = format!("after-{i}");
        proxy
            .client
            .get("/rate/p", &[("x-request-id", &id)])
            .await
            .expect("answer");
    }
    assert_eq!(diverged(120.0).await, 120.0);
    let written = lines_reaching(&log, "after-", 60).await;
    assert_eq!(
        written, 60,
        "all 60 divergences of the second generation are written"
    );
    let size = proxy.routes.registry_size();
    assert_eq!(
        (size.log_writers, size.log_rates),
        (1, 1),
        "one writer for the file, and the 1/s rate is released"
    );
    let _ = std::fs::remove_file(&log);
}

/// Twenty reloads at once come one after another: each gets its own generation, the
/// last is 21, and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reloads_each_take_the_next_generation() {
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let proxy = start(&shadowed("gen", &backend.url(), &backend.url(), "5s", "")).await;
    let reloads: Vec<_> = (0..20)
        .map(|_| {
            let routes = proxy.routes.clone();
            tokio::spawn(async move { routes.reload().await })
        })
        .collect();
    let mut generations = BTreeSet::new();
    for reload in reloads {
        let reloaded = reload.await.expect("task").expect("accepted");
        generations.insert(reloaded.generation);
    }
    assert_eq!(generations, (2..=21).collect::<BTreeSet<u64>>());
    assert_eq!(proxy.routes.load().generation(), 21);
    assert_eq!(
        proxy.metric("veer_config_reloads_total", &[("result", "ok")]),
        21.0,
        "the first load and twenty reloads"
    );
}

/// What a reload leaves unused is released: a limiter whose max changed, a log whose
/// rate changed, the series of a removed route. What stays unchanged is the same
/// entry, so mirrors in flight keep counting against the same limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_no_snapshot_uses_are_released() {
    let backend = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let log = temp_path("divergence-release", "jsonl");
    let with = |max: u32, per_sec: u32, extra_route: bool| {
        let mut config = shadowed("kept", &backend.url(), &backend.url(), "5s",
            &format!(
                "max_in_flight = {max}\ndivergence_log = \"{}\"\ndivergence_log_per_sec = {per_sec}",
                file_name(&log)
            ),
        );
        if extra_route {
            config.push_str(
                "\n[[routes]]\nname = \"extra\"\nmatch = { path_prefix = \"/extra/\" }\nsplit = [ { backend = \"live\", weight = 1 } ]\n",
            );
        }
        config
    };
    let proxy = start(&with(8, 1, true)).await;
    let size = proxy.routes.registry_size();
    assert_eq!((size.limiters, size.log_writers, size.log_rates), (1, 1, 1));
    // kept: live to live, shadow to shadow; extra: live to live.
    assert_eq!((size.exchanges, size.comparisons), (3, 1));

    proxy.reload(&with(8, 1, true)).await.expect("accepted");
    assert_eq!(proxy.routes.registry_size(), size, "unchanged: handed over");

    proxy.reload(&with(16, 5, false)).await.expect("accepted");
    let size = proxy.routes.registry_size();
    assert_eq!(
        (size.limiters, size.log_writers, size.log_rates),
        (1, 1, 1),
        "the old limiter and rate are gone; the file keeps its writer"
    );
    assert_eq!(
        (size.exchanges, size.comparisons),
        (2, 1),
        "so are extra's series"
    );
    let _ = std::fs::remove_file(&log);
}

/// An unchanged limiter is the same limiter after a reload: a mirror in flight from
/// the previous generation still holds its permit. A changed `max_in_flight` makes a
/// new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_limiter_is_handed_over_with_its_permits() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[1]}"#.into())).await;
    let hung = TestBackend::start(Behavior::Hangs).await;
    let config = |max: u32| {
        shadowed(
            "held",
            &live.url(),
            &hung.url(),
            "5s",
            &format!("max_in_flight = {max}"),
        )
    };
    let proxy = start(&config(1)).await;
    let outcome = |outcome| proxy.metric("veer_shadow_comparisons_total", &[("outcome", outcome)]);
    proxy.client.get("/held/p", &[]).await.expect("answer");
    eventually(|| hung.requests() == 1).await;

    proxy.reload(&config(1)).await.expect("accepted");
    proxy.client.get("/held/p", &[]).await.expect("answer");
    assert_eq!(
        outcome("dropped"),
        1.0,
        "same limiter: its permit is still taken"
    );

    proxy.reload(&config(2)).await.expect("accepted");
    proxy.client.get("/held/p", &[]).await.expect("answer");
    assert_eq!(outcome("dropped"), 1.0, "a new limiter has a permit free");
    eventually(|| hung.requests() == 2).await;
}

/// Waits (up to 10 s) for `condition`, and fails the test if it never holds.
async fn eventually(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "the condition never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
