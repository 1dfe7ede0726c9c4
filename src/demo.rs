//! `veer demo`: the whole idea in one command and one process, nothing downloaded.
//!
//! Two versions of a small churn model (logistic regression speaking KServe V1) are
//! served on loopback; veer runs in front of them and rolls v2 out by itself: v2
//! starts at weight 0 with every request mirrored to it (`shadow_first`), then steps
//! through 25 %, 50 % and 100 % by `x-user-id` while its signals pass. A built-in
//! load generator drives realistic requests; every few seconds a summary prints what
//! the dashboard shows, and each rollout decision prints as it happens.
//!
//! By default v2 is the "retrained" model: it weighs support calls more, so its label
//! flips on customers who call support a lot, and the prediction gate rolls it back
//! before any user sees it. `--candidate good` serves a v2 that agrees with v1, and
//! veer promotes it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use tokio::net::TcpListener;
use veer_proxy::server::{ListenerLimits, Serving};

/// `veer demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. `60s`, `5m`); runs until Ctrl-C when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Requests per second the load generator sends.
    #[arg(long, default_value_t = 50)]
    pub rps: u32,
    /// Client port veer listens on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Admin port: metrics and the dashboard (0: any free port).
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// Serve only this model version (`v1` or `v2`) on `--port`, on all interfaces,
    /// for compose or for trying veer against your own config.
    #[arg(long, value_parser = ["v1", "v2"])]
    pub backend_only: Option<String>,
    /// The address `--backend-only` listens on: all interfaces by default, for
    /// containers; `127.0.0.1` keeps the model on this machine.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
    /// Which v2 is rolled out: `flips` (its labels flip on frequent callers: rolled
    /// back) or `good` (agrees with v1: promoted).
    #[arg(long, default_value = "flips", value_parser = ["flips", "good"])]
    pub candidate: String,
}

/// A logistic-regression churn model: `p = σ(w · x + b)` over tenure (months),
/// monthly charges, total charges and support calls.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// `churn-v1` or `churn-v2`.
    pub name: &'static str,
    weights: [f64; 4],
    bias: f64,
    /// Added to `z` per support call beyond three: the segment v2 learned about.
    frequent_caller_boost: f64,
    /// Extra latency per instance in batches above [`LARGE_BATCH`].
    slow_per_instance: Duration,
}

/// The version in production.
pub const V1: Model = Model {
    name: "churn-v1",
    weights: [-0.045, 0.028, -0.0002, 0.35],
    bias: -1.1,
    frequent_caller_boost: 0.0,
    slow_per_instance: Duration::ZERO,
};

/// The retrained candidate: nearly v1, but customers who call support more than three
/// times churn much more in its eyes; and it is slower on large batches.
pub const V2: Model = Model {
    name: "churn-v2",
    weights: [-0.046, 0.028, -0.0002, 0.35],
    bias: -1.1,
    frequent_caller_boost: 0.8,
    slow_per_instance: Duration::from_micros(500),
};

/// A v2 that learned nothing new: it predicts as v1 does, and is promoted.
pub const V2_GOOD: Model = Model {
    name: "churn-v2",
    ..V1
};

/// Batches above this size are "large".
const LARGE_BATCH: usize = 16;

impl Model {
    /// `[p_stay, p_churn]` per instance.
    pub fn predict(&self, instances: &[[f64; 4]]) -> Vec<[f64; 2]> {
        instances
            .iter()
            .map(|x| {
                let z: f64 = self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>()
                    + self.bias
                    + self.frequent_caller_boost * (x[3] - 3.0).max(0.0);
                let churn = 1.0 / (1.0 + (-z).exp());
                [round(1.0 - churn), round(churn)]
            })
            .collect()
    }

    async fn answer(self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST || !req.uri().path().ends_with(":predict") {
            return json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "POST /v1/models/churn:predict"}),
            );
        }
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": e.to_string()}),
                )
            }
        };
        #[derive(serde::Deserialize)]
        struct Input {
            instances: Vec<[f64; 4]>,
        }
        let input: Input = match serde_json::from_slice(&body) {
            Ok(i) => i,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": format!("expected {{\"instances\": [[tenure, monthly, total, support_calls], ...]}}: {e}")}),
                )
            }
        };
        if input.instances.len() > LARGE_BATCH {
            tokio::time::sleep(self.slow_per_instance * input.instances.len() as u32).await;
        }
        let predictions = self.predict(&input.instances);
        json(
            StatusCode::OK,
            serde_json::json!({ "predictions": predictions, "model_version": self.name }),
        )
    }
}

fn round(p: f64) -> f64 {
    (p * 1e4).round() / 1e4
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves `model` on `listener` until the runtime ends.
pub async fn serve_model(listener: TcpListener, model: Model) {
    let per_connection = move |_peer| {
        service_fn(
            move |req| async move { Ok::<_, std::convert::Infallible>(model.answer(req).await) },
        )
    };
    let forever = std::future::pending();
    let serving = Serving::fixed(ListenerLimits::admin());
    veer_proxy::server::serve(listener, per_connection, serving, forever, || {
        Duration::ZERO
    })
    .await;
}

/// The demo's routing file: v1 live, v2 shadowed and rolled out by veer by
/// `x-user-id`. `config/demo.toml` is this with the default ports (a test keeps them
/// equal).
pub fn config(v1: SocketAddr, v2: SocketAddr, port: u16, admin_port: u16) -> String {
    format!(
        r#"# veer demo: v1 live, v2 shadowed so every v1 answer is compared with what v2
# would have said, and rolled out by veer itself: weight 0 until v2's predictions
# pass, then 25 %, 50 % and 100 % by x-user-id while its errors, latency and
# predictions pass; a failing signal rolls it back. Margins are wide and steps short
# so the demo decides in seconds; see config/rollout.toml for production values.

[listen]
http = "127.0.0.1:{port}"
admin = "127.0.0.1:{admin_port}"

[backends.churn-v1]
url = "http://{v1}"
timeout = "2s"

[backends.churn-v2]
url = "http://{v2}"
timeout = "2s"

[[routes]]
name = "churn"
match = {{ path_prefix = "/v1/models/churn" }}
split = [ {{ backend = "churn-v1", weight = 100 }}, {{ backend = "churn-v2", weight = 0 }} ]
split_by = {{ header = "x-user-id" }}
hash_seed = 7

[routes.shadow]
backend = "churn-v2"
percent = 100

[routes.compare]
select = "/predictions"
abs_tolerance = 0.05

[routes.rollout]
candidate = "churn-v2"
steps = [25, 50, 100]
min_step = "5s"
max_step = "2m"
shadow_first = "5s"
alpha = 0.05

[routes.rollout.errors]
abs_margin = 0.05

[routes.rollout.latency]
abs_margin = 0.1

[routes.rollout.predictions]
max_divergence = 0.5
max_label_flip = 0.02
critical = true
"#
    )
}

/// Runs the demo until `--duration` passes or Ctrl-C.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if let Some(version) = &args.backend_only {
        let model = match (version.as_str(), args.candidate.as_str()) {
            ("v1", _) => V1,
            (_, "good") => V2_GOOD,
            _ => V2,
        };
        // All interfaces by default: this mode is for containers (deploy/compose),
        // where veer reaches the model over the container network.
        let listener = TcpListener::bind((args.bind, args.port))
            .await
            .with_context(|| format!("bind {}:{}", args.bind, args.port))?;
        println!(
            "{} serving KServe V1 on http://{}/v1/models/churn:predict",
            model.name,
            listener.local_addr()?
        );
        tokio::select! {
            () = serve_model(listener, model) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return Ok(());
    }
    let (l1, l2) = (
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
    );
    let (v1, v2) = (l1.local_addr()?, l2.local_addr()?);
    let candidate = if args.candidate == "good" {
        V2_GOOD
    } else {
        V2
    };
    tokio::spawn(serve_model(l1, V1));
    tokio::spawn(serve_model(l2, candidate));
    let path = std::env::temp_dir().join(format!("veer-demo-{}.toml", std::process::id()));
    let written = config(v1, v2, args.port, args.admin_port);
    std::fs::write(&path, &written).with_context(|| format!("write {}", path.display()))?;
    let result = run_demo(&args, &path).await;
    // The routing file goes with the demo, unless you edited it: then it is yours.
    match std::fs::read_to_string(&path) {
        Ok(now) if now != written => {
            println!("your edited routing file is kept: {}", path.display())
        }
        _ => {
            let _ = std::fs::remove_file(&path);
        }
    }
    result
}

/// The demo proper, on the routing file at `path` (which the caller cleans up,
/// whatever happens here).
async fn run_demo(args: &DemoArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let stop = {
        let duration = args.duration;
        let interrupted = crate::run::shutdown_signal()?;
        async move {
            match duration {
                Some(d) => {
                    tokio::select! { () = tokio::time::sleep(d) => {}, () = interrupted => {} }
                }
                None => interrupted.await,
            }
        }
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let veer = tokio::spawn({
        let path = path.to_owned();
        async move {
            crate::run::serve(&path, stop, |b| {
                let _ = bound_tx.send(b);
            })
            .await
        }
    });
    let Ok(bound) = bound_rx.await else {
        return veer.await.context("veer task")?;
    };
    // Taken before the routing file's path is printed: a SIGHUP sent as soon as it
    // shows is reported too.
    let generation = bound.routes.load().generation();
    println!(
        "veer demo: churn-v1 live; churn-v2 ({}) shadowed and rolled out by veer: 0% → 25% → 50% → 100% while its signals pass",
        if args.candidate == "good" { "agrees with v1" } else { "its labels flip on frequent callers" }
    );
    println!("  dashboard:    http://{}/", bound.admin);
    println!("  metrics:      http://{}/metrics", bound.admin);
    println!("  client:       curl -s http://{}/v1/models/churn:predict -H 'x-user-id: alice' -d '{{\"instances\": [[12, 70.5, 846.0, 5]]}}'", bound.http);
    println!(
        "  routing file: {} (edit it, then: kill -HUP {})",
        path.display(),
        std::process::id()
    );
    let started = Instant::now();

    let counts = Arc::new(Counts::default());
    let load = tokio::spawn(drive(bound.http, args.rps, counts.clone()));
    let report = tokio::spawn(report(counts, bound.routes.clone()));
    let decisions = tokio::spawn(print_decisions(bound.routes.clone(), generation));
    let result = veer.await.context("veer task")?;
    load.abort();
    report.abort();
    decisions.abort();
    println!(
        "[final, after {}s]\n{}",
        started.elapsed().as_secs(),
        summary(&bound.routes.stats())
    );
    result
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Customers of a telecom: tenure, monthly and total charges, support calls.
fn customer(rng: &mut impl Rng) -> [f64; 4] {
    let tenure = rng.random_range(0.0..72.0f64).round();
    let monthly = (rng.random_range(20.0..120.0f64) * 100.0).round() / 100.0;
    let support = if rng.random_bool(0.08) {
        rng.random_range(4..9)
    } else {
        rng.random_range(0..4)
    };
    [
        tenure,
        monthly,
        (tenure * monthly).round(),
        f64::from(support),
    ]
}

/// Sends `rps` requests a second from 500 users: mostly single customers, some small
/// batches, one in twenty a batch of 32.
async fn drive(addr: SocketAddr, rps: u32, counts: Arc<Counts>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rps.max(1))));
    loop {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let (user, body) = {
            let mut rng = rand::rng();
            let batch = match rng.random_range(0..100) {
                0..75 => 1,
                75..95 => rng.random_range(2..5),
                _ => 32,
            };
            let instances: Vec<[f64; 4]> = (0..batch).map(|_| customer(&mut rng)).collect();
            (
                format!("user-{}", rng.random_range(0..500)),
                serde_json::json!({ "instances": instances }).to_string(),
            )
        };
        let request = Request::post(format!("http://{addr}/v1/models/churn:predict"))
            .header("x-user-id", user)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let (client, counts) = (client.clone(), counts.clone());
        counts.sent.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let ok = match request {
                Ok(r) => match client.request(r).await {
                    Ok(resp) => {
                        let success = resp.status().is_success();
                        resp.into_body().collect().await.is_ok() && success
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            };
            let counter = if ok { &counts.ok } else { &counts.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Prints a summary every five seconds.
async fn report(counts: Arc<Counts>, routes: veer_proxy::Routes) {
    let started = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        every.tick().await;
        println!(
            "[{:>4}s] sent {} · ok {} · failed {}",
            started.elapsed().as_secs(),
            counts.sent.load(Ordering::Relaxed),
            counts.ok.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed)
        );
        println!("{}", summary(&routes.stats()));
    }
}

/// Prints each rollout decision as it happens: `rollout churn: advance 0% → 25%
/// (progressing): every signal passed ...`.
async fn print_decisions(routes: veer_proxy::Routes, mut generation: u64) {
    let mut printed = 0;
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        every.tick().await;
        // The demo's log shows warnings only: say here that your SIGHUP took.
        let now = routes.load().generation();
        if now != generation {
            println!("config reloaded: generation {now}");
            generation = now;
        }
        let all = routes.rollouts();
        let history = all["history"].as_array().cloned().unwrap_or_default();
        // The history keeps the last 100; the demo makes a handful.
        for line in history.iter().skip(printed) {
            if line["action"] == "hold" {
                continue;
            }
            println!(
                "rollout {}: {} {}% → {}% ({}) by {}: {}",
                line["route"].as_str().unwrap_or("?"),
                line["action"].as_str().unwrap_or("?"),
                line["from"],
                line["to"],
                line["phase"].as_str().unwrap_or("?"),
                line["actor"].as_str().unwrap_or("?"),
                line["reason"].as_str().unwrap_or(""),
            );
        }
        printed = history.len();
    }
}

/// The dashboard's figures as text.
fn summary(stats: &serde_json::Value) -> String {
    let ms = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("–".to_owned(), |s| format!("{:.1} ms", s * 1000.0))
    };
    let pct = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("–".to_owned(), |x| format!("{:.1}%", x * 100.0))
    };
    let mut lines = Vec::new();
    for v in stats["versions"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  {:<9} {:<6} requests {:>6}  p50 {:>8}  p99 {:>8}  errors {}",
            v["backend"].as_str().unwrap_or("?"),
            v["role"].as_str().unwrap_or("?"),
            v["requests"],
            ms(&v["p50"]),
            ms(&v["p99"]),
            pct(&v["error_rate"]),
        ));
    }
    for s in stats["shadows"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  shadow {}: divergence {} · label agreement {} · compared {}",
            s["backend"].as_str().unwrap_or("?"),
            pct(&s["divergence_rate"]),
            pct(&s["label_agreement"]),
            s["compared"],
        ));
    }
    if lines.is_empty() {
        lines.push("  (no traffic yet)".to_owned());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_demo_config_is_the_one_the_demo_writes() {
        let committed =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
                .expect("config/demo.toml");
        let written = config(
            "127.0.0.1:8001".parse().unwrap(),
            "127.0.0.1:8002".parse().unwrap(),
            8080,
            9901,
        );
        assert_eq!(committed, written);
    }

    #[test]
    fn v2_disagrees_with_v1_on_customers_who_call_support_a_lot() {
        let calm = [24.0, 70.0, 1680.0, 1.0];
        let caller = [24.0, 70.0, 1680.0, 7.0];
        let (a, b) = (V1.predict(&[calm, caller]), V2.predict(&[calm, caller]));
        assert!(
            (a[0][1] - b[0][1]).abs() < 0.05,
            "close for calm customers: {a:?} {b:?}"
        );
        assert!(
            (a[1][1] - b[1][1]).abs() > 0.05,
            "apart for frequent callers: {a:?} {b:?}"
        );
        assert!(a.iter().chain(&b).all(|p| (p[0] + p[1] - 1.0).abs() < 1e-3));
    }
}
