//! SIGHUP: atomic swaps under load, and reloads that are refused without harm.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use veer_testkit::{Behavior, TestBackend, TestClient};

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

/// A routing file of `n` basic routes on `/rN/`, all to `v1`.
fn many_routes(v1: &str, n: usize) -> String {
    let mut config = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n[backends.v1]\nurl = \"{v1}\"\n"
    );
    for i in 0..n {
        config.push_str(&format!(
            "\n[[routes]]\nname = \"r{i}\"\nmatch = {{ path_prefix = \"/r{i}/\" }}\nsplit = [ {{ backend = \"v1\", weight = 1 }} ]\n"
        ));
    }
    config
}

/// SIGHUP and `POST /-/reload` at the same time, on an 800-route file: every
/// successful reload takes the next generation, so the generation always comes to
/// 1 + the successful reloads. (When each trigger computed "N + 1" from the same N,
/// 80 reloads gave generation 79.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sighup_and_post_reloads_of_800_routes_count_every_generation() {
    let backend =
        veer_testkit::TestBackend::start(veer_testkit::Behavior::Fixed("ok".into())).await;
    let veer = start(&many_routes(&backend.url(), 800));
    let admin = TestClient::new(veer.admin_addr());
    // Ten of each: the last POST waits for every reload before it, and a loaded CI
    // box compiles an 800-route debug-build snapshot slowly.
    let posts: Vec<_> = (0..10)
        .map(|_| {
            let admin = admin.clone();
            tokio::spawn(async move {
                let answer = admin
                    .send(http::Method::POST, "/-/reload", &[], bytes::Bytes::new())
                    .await
                    .expect("answer");
                assert_eq!(answer.status, http::StatusCode::OK, "{}", answer.text());
                answer.json()["generation"].as_u64().expect("generation")
            })
        })
        .collect();
    tokio::task::block_in_place(|| {
        for _ in 0..10 {
            veer.signal("HUP").expect("SIGHUP");
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut posted = Vec::new();
    for post in posts {
        posted.push(post.await.expect("reload task"));
    }
    posted.sort_unstable();
    posted.dedup();
    assert_eq!(posted.len(), 10, "every POST got a generation of its own");

    // Reloads triggered by signals may still be waiting or running (signals sent
    // while one runs are folded into one more). Wait (bounded) until the figures
    // agree and stay put for half a second: a lost generation would keep the
    // generation below the count of successful reloads for ever.
    let settled = Instant::now() + Duration::from_secs(60);
    let mut last: Option<(f64, f64, u64)> = None;
    let mut steady_since = Instant::now();
    loop {
        let generation = admin.metric("veer_config_generation", &[]).await;
        let ok = admin
            .metric("veer_config_reloads_total", &[("result", "ok")])
            .await;
        let config = admin.get("/config", &[]).await.expect("config").json();
        let now = (generation, ok, config["generation"].as_u64().unwrap_or(0));
        if last != Some(now) {
            (last, steady_since) = (Some(now), Instant::now());
        }
        let agree = generation == ok && now.2 as f64 == generation && ok >= 12.0;
        if (agree && steady_since.elapsed() >= Duration::from_millis(500))
            || Instant::now() > settled
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (generation, ok, shown) = last.expect("read at least once");
    assert_eq!(
        generation, ok,
        "generation = 1 + successful reloads (the first load counts as one)"
    );
    assert_eq!(
        shown as f64, generation,
        "/config shows the same generation"
    );
    assert!(
        ok >= 12.0,
        "the 10 POSTs and at least one SIGHUP reloaded: {ok}"
    );
}

/// `[reload] watch = true` with the file mounted the way Kubernetes mounts a
/// ConfigMap: `veer.toml -> ..data/veer.toml`, `..data -> ..v1`. Swapping `..data`
/// reloads once; a file veer writes next to it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_swap_is_reloaded_by_the_watch() {
    let (a, b) = crate::two_backends().await;
    let folder = std::env::temp_dir().join(format!("veer-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    let write_version = |name: &str, w2: u32| {
        let dir = folder.join(name);
        std::fs::create_dir_all(&dir).expect("version folder");
        let config = format!(
            "[reload]\nwatch = true\n{}",
            two_versions(&a.url(), &b.url(), 100 - w2, w2, "\"random\"")
        );
        std::fs::write(dir.join("veer.toml"), config).expect("write version");
    };
    write_version("..v1", 0);
    std::os::unix::fs::symlink("..v1", folder.join("..data")).expect("..data link");
    std::os::unix::fs::symlink("..data/veer.toml", folder.join("veer.toml")).expect("file link");
    let veer = veer_testkit::VeerProcess::start_file(crate::VEER, folder.join("veer.toml"))
        .expect("veer starts");
    veer.wait_for_log(
        0,
        "watching the routing file's folder",
        Duration::from_secs(10),
    )
    .expect("the watch is on");
    let admin = TestClient::new(veer.admin_addr());
    let generation = || async {
        admin.get("/config", &[]).await.expect("config").json()["generation"]
            .as_u64()
            .unwrap_or(0)
    };

    // A file written next to the config (a log, say) is not a reason to reload.
    std::fs::write(folder.join("divergence.jsonl"), "{}\n").expect("write a log");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(generation().await, 1);

    // Kubernetes' swap: a new version folder, a new link, renamed over `..data`.
    write_version("..v2", 100);
    std::os::unix::fs::symlink("..v2", folder.join("..data_tmp")).expect("tmp link");
    std::fs::rename(folder.join("..data_tmp"), folder.join("..data")).expect("swap");
    let deadline = Instant::now() + Duration::from_secs(10);
    while generation().await < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(generation().await, 2, "one reload for the swap");
    let answer = TestClient::new(veer.addr())
        .get("/v1/p", &[])
        .await
        .expect("answer");
    assert_eq!(
        answer.header("x-veer-backend"),
        "v2",
        "the new weights serve"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(generation().await, 2, "debounced: still one reload");
    drop(veer);
    let _ = std::fs::remove_dir_all(&folder);
}

/// A reload that would route nothing is refused; one that takes a route, or a
/// backend's whole share, away from live traffic is applied, and says so in its
/// answer and its log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_empty_the_table_and_says_what_traffic_it_takes_away() {
    let (a, b) = crate::two_backends().await;
    let canary = two_versions(&a.url(), &b.url(), 50, 50, "\"random\"");
    let with_other = format!(
        "{canary}\n[[routes]]\nname = \"other\"\nmatch = {{ path_prefix = \"/other\" }}\nsplit = [ {{ backend = \"v1\", weight = 1 }} ]\n"
    );
    let veer = start(&with_other);
    let client = TestClient::new(veer.addr());
    for _ in 0..40 {
        assert_eq!(client.get("/v1/p", &[]).await.expect("answer").status, 200);
    }
    assert_eq!(client.get("/other", &[]).await.expect("answer").status, 200);
    assert!(b.requests() > 0, "v2 served the canary");
    let admin = TestClient::new(veer.admin_addr());
    let reload = |text: String| {
        std::fs::write(veer.config_path(), text).expect("rewrite the routing file");
        admin.send(http::Method::POST, "/-/reload", &[], bytes::Bytes::new())
    };

    let listen_only = "[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n".to_owned();
    let refused = reload(listen_only).await.expect("answer");
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("no [[routes]]: every request would be answered 404")),
        "{}",
        refused.text()
    );
    assert_eq!(client.get("/other", &[]).await.expect("answer").status, 200);

    let applied = reload(two_versions(&a.url(), &b.url(), 1, 0, "\"random\""))
        .await
        .expect("answer");
    assert_eq!(applied.status, 200, "{}", applied.text());
    let answer = applied.json();
    assert_eq!(answer["generation"], 2);
    let warnings: Vec<&str> = answer["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    let file = veer.config_path().display().to_string();
    assert!(
        warnings.contains(&format!("{file}:1:1: warning: route \"other\" was removed: the requests it took now go to the next route that matches, or get 404").as_str()),
        "{warnings:#?}"
    );
    assert!(
        warnings.contains(&format!("{file}:1:1: warning: backend \"v2\" served route \"model\" in the last 5 minutes and gets no share of it now").as_str()),
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 2, "v1 keeps its share: {warnings:#?}");
    let logged = veer
        .wait_for_log(0, "config reloaded", std::time::Duration::from_secs(10))
        .expect("the reload's log line");
    assert_eq!(logged["fields"]["warnings"], 2, "{logged}");
    // The warnings themselves, in one log line beside it.
    let said_both = |line: &serde_json::Value| {
        line["fields"]["message"].as_str().is_some_and(|m| {
            m.contains("route \"other\" was removed")
                && m.contains("backend \"v2\" served route \"model\" in the last 5 minutes")
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !veer.log_lines().iter().any(said_both) {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with both warnings: {:#?}",
            veer.log_messages()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(client.get("/other", &[]).await.expect("answer").status, 404);
}

/// veer's async worker threads, by the name tokio gives them (its blocking threads
/// share the name, but none has run yet when this is called).
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("veer's threads")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "tokio-rt-worker")
        })
        .count()
}

/// `[runtime] workers` sets the worker threads veer serves on; the runtime is built
/// at start, so a reload that changes it is applied with a warning that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_workers_sets_the_worker_threads_and_a_reload_says_it_waits_for_a_restart() {
    let (a, b) = crate::two_backends().await;
    let routes = two_versions(&a.url(), &b.url(), 1, 0, "\"random\"");
    let veer = start(&format!("[runtime]\nworkers = 3\n{routes}"));
    assert_eq!(worker_threads(veer.pid()), 3);
    let one = start(&format!("[runtime]\nworkers = 1\n{routes}"));
    assert_eq!(
        worker_threads(one.pid()),
        0,
        "one worker is an event loop on the main thread, with no worker thread"
    );
    let client = TestClient::new(one.addr());
    assert_eq!(client.get("/v1/p", &[]).await.expect("answer").status, 200);

    std::fs::write(veer.config_path(), &routes).expect("rewrite the routing file");
    let admin = TestClient::new(veer.admin_addr());
    let applied = admin
        .send(http::Method::POST, "/-/reload", &[], bytes::Bytes::new())
        .await
        .expect("answer");
    assert_eq!(applied.status, 200, "{}", applied.text());
    assert_eq!(
        applied.json()["warnings"][0]
            .as_str()
            .and_then(|w| w.split_once(" warning: "))
            .map(|(_, w)| w.to_owned()),
        Some("runtime.workers is one per core in the file but veer runs on 3; the runtime is built at start, so it takes effect on restart".to_owned()),
        "{}",
        applied.text()
    );
}

/// With `[runtime] workers = 1` veer is one event loop on its main thread, and all of
/// it still works there: it mirrors and compares, reloads (off that thread), and on
/// SIGTERM finishes the request in flight and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_mirrors_reloads_and_drains_on_its_one_event_loop() {
    let live = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.1,0.9]]}"#.into())).await;
    let shadow = TestBackend::start(Behavior::Fixed(r#"{"predictions":[[0.8,0.2]]}"#.into())).await;
    let slow = TestBackend::start(Behavior::Slow(Duration::from_millis(800))).await;
    let config = |weight: u32| {
        format!(
            r#"
[runtime]
workers = 1

[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.v1]
url = "{}"

[backends.v2]
url = "{}"

[backends.slow]
url = "{}"
timeout = "5s"

[[routes]]
name = "slow"
match = {{ path_prefix = "/slow" }}
split = [ {{ backend = "slow", weight = 1 }} ]

[[routes]]
name = "churn"
split = [ {{ backend = "v1", weight = {weight} }} ]
[routes.shadow]
backend = "v2"
[routes.compare]
select = "/predictions"
abs_tolerance = 0.01
"#,
            live.url(),
            shadow.url(),
            slow.url()
        )
    };
    let mut veer = start(&config(1));
    assert_eq!(worker_threads(veer.pid()), 0);
    let client = TestClient::new(veer.addr());
    for _ in 0..20 {
        let answer = client
            .get("/v1/models/churn:predict", &[])
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
        assert!(answer.text().contains("0.9"), "{}", answer.text());
    }
    let admin = TestClient::new(veer.admin_addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut diverged = 0.0;
    while diverged < 20.0 && Instant::now() < deadline {
        diverged = admin
            .metric("veer_shadow_comparisons_total", &[("outcome", "diverged")])
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(diverged, 20.0, "every mirrored pair is compared");

    let reloaded = tokio::task::block_in_place(|| veer.reload(&config(2)));
    assert!(reloaded.is_ok(), "{reloaded:?}");
    assert_eq!(
        client
            .get("/v1/models/churn:predict", &[])
            .await
            .expect("answer")
            .status,
        200
    );

    let in_flight = {
        let client = TestClient::new(veer.addr());
        tokio::spawn(async move { client.get("/slow", &[]).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin
        .metric("veer_in_flight_requests", &[("role", "live")])
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "the slow request never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    veer.signal("TERM").expect("SIGTERM");
    let answer = in_flight
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "slow");
    let status = tokio::task::block_in_place(|| veer.wait_exit(Duration::from_secs(10)));
    assert!(status.expect("veer exits").success());
}
