//! The built-in dashboard in a real headless Chromium: the numbers it renders are the
//! numbers `/stats` reports, it fits the width of a laptop and of a desktop screen,
//! its divergent pairs show their values and lead to their full records, its colours
//! follow the config's budgets, and with an admin token it asks for the token first.

use std::time::{Duration, Instant};

use serde_json::Value;
use veer_testkit::{Behavior, TestBackend, TestClient};

use crate::chromium::{self, dump_dom, Page, CHROMIUM};
use crate::{start, two_versions, TokenFile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_stats_reports() {
    if !chromium::installed() {
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
    // Hard to misread: what the figures cover, how latency is timed, and v2 beside v1.
    for (said, why) in [
        ("this replica", "the page shows one replica"),
        ("open the Grafana dashboard", "and where all of them are"),
        ("to the response head", "live latency's definition"),
        ("to the end of its body", "shadow latency's definition"),
        ("data-stat=\"delta-p50\"", "v2's difference from v1"),
    ] {
        assert!(dom.contains(said), "{why}: no {said:?} in the page");
    }
}

/// A route with a rollout: the page shows its state, its steps, each signal's verdict
/// with the counts `/rollouts` reports, and its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_rollout() {
    if !chromium::installed() {
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
    // The rollout's panel and its signals' table fit a laptop's width too.
    tokio::task::block_in_place(|| {
        let mut page = Page::open(&url, WIDTHS[0], 900);
        page.wait_for(
            r#"document.querySelector('[data-rollout="model"] [data-signal="errors"]')"#,
            Duration::from_secs(30),
        );
        assert_fits(&mut page, WIDTHS[0]);
    });
}

/// With `[admin] token_file` set the page loads, its data requests are refused, and
/// it shows the token field instead of figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_dashboard_asks_for_it() {
    if !chromium::installed() {
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

/// The widths a dashboard is read at: a laptop's and a desktop's.
const WIDTHS: [u32; 2] = [1280, 1920];

/// Fails unless the page fits `width`: no horizontal scroll, and every table, the
/// divergent pairs' above all, inside the viewport.
fn assert_fits(page: &mut Page, width: u32) {
    let layout = page.evaluate(
        r#"(() => {
            const root = document.documentElement;
            const tables = [...document.querySelectorAll("table")].map((t) => ({
                id: t.id || t.closest("[data-route]")?.dataset.route || "?",
                right: t.getBoundingClientRect().right,
            }));
            return { scroll: root.scrollWidth, client: root.clientWidth, tables };
        })()"#,
    );
    let client = layout["client"].as_f64().expect("clientWidth");
    assert!(
        client <= f64::from(width) && client > f64::from(width) * 0.9,
        "the viewport is {width} px: {layout}"
    );
    assert!(
        layout["scroll"].as_f64() <= Some(client),
        "the page scrolls sideways at {width} px: {layout}"
    );
    let tables = layout["tables"].as_array().expect("tables");
    assert!(
        tables.iter().any(|t| t["id"] == "recent"),
        "the divergent pairs' table is there: {layout}"
    );
    for table in tables {
        assert!(
            table["right"].as_f64() <= Some(client),
            "table {} ends past the viewport at {width} px: {layout}",
            table["id"]
        );
    }
}

/// Routes of one veer for the page's harder parts: `busy` diverges on about half
/// of its inputs (labels flip) against an `alert_divergence` of 20 %, `calm` on a few
/// against the same, and `wide` answers class probabilities under a key long enough
/// to wrap, its shadow moving probability from the second class to the first (a row
/// that sums to 1 on both sides: no net shift).
fn three_routes(v1: &str, v2: &str, calm: &str, wide_live: &str, wide_shadow: &str) -> String {
    format!(
        r#"
[listen]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"

[backends.v1]
url = "{v1}"
[backends.v2]
url = "{v2}"
[backends.v2-calm]
url = "{calm}"
[backends.w1]
url = "{wide_live}"
[backends.w2]
url = "{wide_shadow}"

[[routes]]
name = "busy"
match = {{ path_prefix = "/busy/" }}
split = [ {{ backend = "v1", weight = 80 }}, {{ backend = "v2", weight = 20 }} ]
[routes.shadow]
backend = "v2"
[routes.compare]
alert_divergence = 0.2

[[routes]]
name = "calm"
match = {{ path_prefix = "/calm/" }}
split = [ {{ backend = "v1", weight = 1 }} ]
[routes.shadow]
backend = "v2-calm"
[routes.compare]
alert_divergence = 0.2

[[routes]]
name = "wide"
match = {{ path_prefix = "/wide/" }}
split = [ {{ backend = "w1", weight = 1 }} ]
[routes.shadow]
backend = "w2"
[routes.compare]
abs_tolerance = 0.01
"#
    )
}

/// The key of `wide`'s one output: 200 characters without a space.
fn long_key() -> String {
    format!("churn_probability_{}", "x".repeat(182))
}

/// The page at 1,280 and 1,920 px: nothing scrolls sideways; a divergent pair shows
/// both values and its label flip; its link answers the full record, request body
/// included, over the admin socket and in the page; and a route under its
/// `alert_divergence` is green where one over it is red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_fits_shows_values_links_records_and_colours_by_budget() {
    if !chromium::installed() {
        crate::skipped(&format!("dashboard layout test: {CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)"));
        return;
    }
    let v1 = TestBackend::start(Behavior::Predicts { flip_percent: 0 }).await;
    let v2 = TestBackend::start(Behavior::Predicts { flip_percent: 50 }).await;
    let calm = TestBackend::start(Behavior::Predicts { flip_percent: 3 }).await;
    let key = long_key();
    let wide_live = TestBackend::start(Behavior::Fixed(format!(
        r#"{{"predictions":{{"{key}":[0.2,0.8]}}}}"#
    )))
    .await;
    let wide_shadow = TestBackend::start(Behavior::Fixed(format!(
        r#"{{"predictions":{{"{key}":[0.35,0.65]}}}}"#
    )))
    .await;
    let veer = start(&three_routes(
        &v1.url(),
        &v2.url(),
        &calm.url(),
        &wide_live.url(),
        &wide_shadow.url(),
    ));
    let client = TestClient::new(veer.addr());
    let body = |i: usize| format!(r#"{{"instances": [[{i}, 70.5, 846.0]]}}"#);
    for i in 0..150 {
        for route in ["busy", "calm", "wide"] {
            let answer = client
                .send(
                    http::Method::POST,
                    &format!("/{route}/predict"),
                    &[("x-request-id", &format!("{route}-{i}"))],
                    bytes::Bytes::from(body(i)),
                )
                .await
                .expect("answer");
            assert_eq!(answer.status, 200, "{route}: {}", answer.text());
        }
    }
    let admin = TestClient::new(veer.admin_addr());
    let stats = settled_stats(&admin, 3).await;
    let shadow = |route: &str| -> Value {
        stats["shadows"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["route"] == route))
            .cloned()
            .unwrap_or_else(|| panic!("no shadow figures for {route}: {stats}"))
    };
    let (busy, calm_rate) = (
        shadow("busy")["divergence_rate"]
            .as_f64()
            .expect("busy rate"),
        shadow("calm")["divergence_rate"]
            .as_f64()
            .expect("calm rate"),
    );
    assert!(busy > 0.2, "busy diverges over its budget: {busy}");
    assert!(
        calm_rate < 0.2,
        "calm diverges under its budget: {calm_rate}"
    );
    assert_eq!(
        shadow("wide")["shift"]["direction"],
        "even",
        "a row of probabilities moves both ways"
    );

    let url = format!("http://{}/", veer.admin_addr());
    let mut page = tokio::task::block_in_place(|| Page::open(&url, WIDTHS[0], 900));
    // The figure is of the last minute, which a slow start of Chromium may cut into:
    // the page has rendered once it shows some.
    let rendered = r#"Number(document.querySelector('[data-route="wide"] [data-stat="compared"]')?.textContent) > 0
        && document.querySelectorAll('#recent tbody tr').length > 0"#;
    tokio::task::block_in_place(|| page.wait_for(rendered, Duration::from_secs(30)));
    for width in WIDTHS {
        tokio::task::block_in_place(|| {
            page.set_width(width, 900);
            assert_fits(&mut page, width);
        });
    }

    // Colours follow the budget: red over it, green under it, and the limit is named.
    let colour = |page: &mut Page, route: &str| {
        page.evaluate(&format!(
            r#"document.querySelector('[data-route="{route}"] [data-stat="divergence-rate"]').className"#
        ))
    };
    let (busy_class, calm_class, limit) = tokio::task::block_in_place(|| {
        let limit = page.evaluate(r#"document.querySelector('[data-route="calm"] [data-stat="divergence-limit"]').textContent"#);
        (colour(&mut page, "busy"), colour(&mut page, "calm"), limit)
    });
    assert_eq!(busy_class, "bad", "over alert_divergence: red");
    assert_eq!(calm_class, "good", "under alert_divergence: not red");
    assert_eq!(limit, "limit 20.0% (compare.alert_divergence)");

    // A flipped pair shows both labels and the flip mark.
    let pair = tokio::task::block_in_place(|| {
        page.evaluate(
            r#"(() => {
                const row = [...document.querySelectorAll('#recent tbody tr')]
                    .find((r) => r.querySelector('[data-stat="label-flip"]'));
                if (!row) return null;
                const text = (stat) => row.querySelector(`[data-stat="${stat}"]`)?.textContent;
                return { id: row.dataset.requestId, pointer: text("pointer"), live: text("live-value"),
                         shadow: text("shadow-value"), flip: text("label-flip"),
                         href: row.querySelector('[data-stat="record-link"]').getAttribute("href") };
            })()"#,
        )
    });
    assert_eq!(pair["pointer"], "/predictions/0", "{pair}");
    let values = (pair["live"].as_str(), pair["shadow"].as_str());
    assert!(
        matches!(
            values,
            (Some(r#""yes""#), Some(r#""no""#)) | (Some(r#""no""#), Some(r#""yes""#))
        ),
        "both labels shown: {pair}"
    );
    assert_eq!(pair["flip"], "⚑ label flip");
    let id = pair["id"].as_str().expect("a request id").to_owned();
    assert_eq!(pair["href"], format!("/divergences/{id}"));

    // The link answers the pair's whole record over the admin socket...
    let record = admin
        .get(pair["href"].as_str().expect("href"), &[])
        .await
        .expect("the record");
    assert_eq!(record.status, 200, "{}", record.text());
    assert_eq!(record.header("content-type"), "application/json");
    let record = record.json();
    let sent: usize = id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("ids end in their number");
    assert_eq!(record["request_id"], id.as_str());
    // No admin token here: the input that diverged stays out of memory (it is in
    // the divergence log, when there is one).
    assert!(sent > 0, "{id}");
    assert_eq!(record["request_body"], serde_json::Value::Null);
    assert!(
        record["request_body_withheld"]
            .as_str()
            .is_some_and(|why| why.contains("token_file")),
        "{record}"
    );
    assert_eq!(record["label_agreement"], false);
    assert!(record["live_body"]
        .as_str()
        .is_some_and(|b| b.contains("predictions")));
    assert!(record["shadow_body"]
        .as_str()
        .is_some_and(|b| b.contains("predictions")));
    // ... and in the page, fetched with whatever token the page holds.
    let shown = tokio::task::block_in_place(|| {
        page.evaluate(&format!(
            r#"document.querySelector('#recent tr[data-request-id="{id}"] [data-stat="record-link"]').click()"#
        ));
        page.wait_for(
            r#"document.querySelector('[data-stat="record"]').textContent.includes("request_body_withheld")"#,
            Duration::from_secs(10),
        );
        page.evaluate(r#"JSON.parse(document.querySelector('[data-stat="record"]').textContent)"#)
    });
    assert_eq!(shown["request_id"], id.as_str());
    tokio::task::block_in_place(|| assert_fits(&mut page, WIDTHS[1]));

    // The long pointer of `wide` is listed whole, wrapped inside its cell.
    let wide_pointer = tokio::task::block_in_place(|| {
        page.evaluate(r#"[...document.querySelectorAll('#recent [data-stat="pointer"]')].map((p) => p.textContent).find((p) => p.length > 100)"#)
    });
    assert_eq!(wide_pointer, format!("/predictions/{key}/0"));

    // A pair no longer kept (or never) is a short JSON 404.
    let missing = admin
        .get("/divergences/never-sent", &[])
        .await
        .expect("answer");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "no_such_divergence");
}

/// `/stats` once the comparisons of `routes` shadowed routes stop moving (they finish
/// after the answers).
async fn settled_stats(admin: &TestClient, routes: usize) -> Value {
    let compared = |stats: &Value| -> Vec<u64> {
        stats["shadows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["compared"].as_u64())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats = admin.get("/stats", &[]).await.expect("stats").json();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let next = admin.get("/stats", &[]).await.expect("stats").json();
        let settled = compared(&next) == compared(&stats) && compared(&next).len() == routes;
        stats = next;
        if settled || Instant::now() > deadline {
            return stats;
        }
    }
}
