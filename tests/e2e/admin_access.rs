//! The admin listener's locks on the running binary: a rebound `Host`, a cross-site
//! reload, the bearer token, and what `/config` never shows.

use bytes::Bytes;
use http::{Method, StatusCode};
use veer_testkit::{Answer, TestClient, VeerProcess};

use crate::{start, two_backends, two_versions, TokenFile};

/// A header value a route matches on: a secret `/config` must not show.
const MATCHED_KEY: &str = "hunter2-api-key";

/// A second route, matched on [`MATCHED_KEY`], for a [`two_versions`] file.
const KEYED_ROUTE: &str = r#"
[[routes]]
name = "keyed"
match = { path_prefix = "/keyed/", headers = { "x-api-key" = "hunter2-api-key" } }
split = [ { backend = "v1", weight = 1 } ]
"#;

/// The serving generation, as `/config` tells it (with `auth` when a token is set).
async fn generation(admin: &TestClient, auth: &[(&str, &str)]) -> u64 {
    let config = admin.get("/config", auth).await.expect("config");
    assert_eq!(config.status, StatusCode::OK, "{}", config.text());
    config.json()["generation"].as_u64().expect("a generation")
}

/// Asserts a refusal: its status, its `error` code, and no echo of `secrets`.
fn assert_refused(answer: &Answer, status: StatusCode, code: &str, secrets: &[&str]) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.json()["error"], code);
    for secret in secrets {
        assert!(!answer.text().contains(secret), "{secret} echoed");
    }
}

/// No log line so far holds any of `secrets`.
fn assert_not_logged(veer: &VeerProcess, secrets: &[&str]) {
    for line in veer.log_lines() {
        let text = line.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} logged: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_reload_is_refused_and_reloads_nothing() {
    let (a, b) = two_backends().await;
    let veer = start(&two_versions(&a.url(), &b.url(), 1, 0, "\"random\""));
    // A file that reloads fine: only the checks stand between it and generation 2.
    std::fs::write(
        veer.config_path(),
        two_versions(&a.url(), &b.url(), 0, 1, "\"random\""),
    )
    .expect("rewrite the routing file");
    let admin = TestClient::new(veer.admin_addr());
    let text = ("content-type", "text/plain");
    // What a form or a no-preflight fetch on another site sends.
    for cross in [
        [("origin", "http://evil.example"), text],
        [("origin", "null"), text],
        [("sec-fetch-site", "cross-site"), text],
    ] {
        let answer = admin
            .send(Method::POST, "/-/reload", &cross, Bytes::from_static(b"x"))
            .await
            .expect("answer");
        assert_refused(&answer, StatusCode::FORBIDDEN, "cross_origin", &["evil"]);
        assert_eq!(generation(&admin, &[]).await, 1, "{cross:?}");
    }
    // The same request from the listener's own origin (its dashboard) reloads.
    let own = format!("http://{}", veer.admin_addr());
    let answer = admin
        .send(
            Method::POST,
            "/-/reload",
            &[("origin", &own), text],
            Bytes::from_static(b"x"),
        )
        .await
        .expect("answer");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(generation(&admin, &[]).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_is_misdirected_on_every_path() {
    let (a, b) = two_backends().await;
    let config =
        two_versions(&a.url(), &b.url(), 1, 0, "\"random\"") + "\n[admin]\nhosts = [\"veer\"]\n";
    let veer = start(&config);
    let admin = TestClient::new(veer.admin_addr());
    for path in [
        "/config",
        "/livez",
        "/readyz",
        "/metrics",
        "/",
        "/stats",
        "/divergences/r-1",
    ] {
        let answer = admin
            .get(path, &[("host", "rebind.evil.example")])
            .await
            .expect("answer");
        assert_refused(
            &answer,
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            &["rebind"],
        );
    }
    let port = veer.admin_addr().port();
    for host in [
        veer.admin_addr().to_string(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("veer:{port}"),
        "VEER".to_owned(),
    ] {
        let answer = admin
            .get("/config", &[("host", &host)])
            .await
            .expect("answer");
        assert_eq!(answer.status, StatusCode::OK, "{host}: {}", answer.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_locks_all_but_the_probes_the_scrape_and_the_page() {
    let (first, second) = ("first-token-4f9c2e71", "second-token-0b8d5a33");
    let token = TokenFile::new(first);
    let (a, b) = two_backends().await;
    let config = |w1, w2| {
        two_versions(&a.url(), &b.url(), w1, w2, "\"random\"")
            + &format!("\n[admin]\ntoken_file = \"{}\"\n", token.path().display())
    };
    let veer = start(&config(1, 0));
    let admin = TestClient::new(veer.admin_addr());
    let bearer = |t: &str| format!("Bearer {t}");
    let (right, wrong) = (bearer(first), bearer("first-token-4f9c2e7X"));

    for path in ["/config", "/stats", "/divergences/r-1", "/nope"] {
        for auth in [vec![], vec![("authorization", wrong.as_str())]] {
            let answer = admin.get(path, &auth).await.expect("answer");
            assert_refused(&answer, StatusCode::UNAUTHORIZED, "unauthorized", &[first]);
            assert_eq!(answer.header("www-authenticate"), "Bearer", "{path}");
        }
    }
    let with_right = [("authorization", right.as_str())];
    for path in ["/config", "/stats"] {
        let answer = admin.get(path, &with_right).await.expect("answer");
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
    }
    // Past the token, a divergent pair's record is looked up (none is kept here).
    let record = admin
        .get("/divergences/r-1", &with_right)
        .await
        .expect("answer");
    assert_eq!(record.status, StatusCode::NOT_FOUND, "{}", record.text());
    assert_eq!(record.json()["error"], "no_such_divergence");
    for path in ["/livez", "/readyz", "/metrics", "/"] {
        let answer = admin.get(path, &[]).await.expect("answer");
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
    }
    let unauthorized_reload = admin
        .send(Method::POST, "/-/reload", &[], Bytes::new())
        .await
        .expect("answer");
    assert_eq!(unauthorized_reload.status, StatusCode::UNAUTHORIZED);

    // A reload re-reads the file: the old token stops working, the new one works.
    token.write(second);
    std::fs::write(veer.config_path(), config(0, 1)).expect("rewrite the routing file");
    let reload = admin
        .send(Method::POST, "/-/reload", &with_right, Bytes::new())
        .await
        .expect("answer");
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.text());
    let stale = admin.get("/config", &with_right).await.expect("answer");
    assert_refused(&stale, StatusCode::UNAUTHORIZED, "unauthorized", &[first]);
    let new = bearer(second);
    assert_eq!(generation(&admin, &[("authorization", &new)]).await, 2);

    let config = admin
        .get("/config", &[("authorization", &new)])
        .await
        .expect("config")
        .text();
    assert!(
        !config.contains(first) && !config.contains(second),
        "{config}"
    );
    assert_not_logged(&veer, &[first, second, "first-token-4f9c2e7X"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_shows_header_names_never_their_values_nor_url_credentials() {
    let (a, b) = two_backends().await;
    let veer = start(&(two_versions(&a.url(), &b.url(), 1, 0, "\"random\"") + KEYED_ROUTE));
    let keyed = TestClient::new(veer.addr())
        .get("/keyed/p", &[("x-api-key", MATCHED_KEY)])
        .await
        .expect("answer");
    assert_eq!(keyed.status, StatusCode::OK, "the keyed route serves");

    let admin = TestClient::new(veer.admin_addr());
    let config = admin.get("/config", &[]).await.expect("config");
    assert_eq!(config.status, StatusCode::OK);
    let described = config.json();
    assert_eq!(described["routes"][1]["name"], "keyed");
    assert_eq!(
        described["routes"][1]["match"]["headers"],
        serde_json::json!({ "x-api-key": veer_config::REDACTED })
    );
    assert!(!config.text().contains(MATCHED_KEY), "{}", config.text());

    // A backend url with credentials is refused without echoing them, and the
    // serving config keeps showing none.
    let with_userinfo = two_versions(&a.url(), &b.url(), 1, 0, "\"random\"")
        .replace("url = \"http://", "url = \"http://ops:hunter2-password@");
    std::fs::write(veer.config_path(), with_userinfo).expect("rewrite the routing file");
    let refused = admin
        .send(Method::POST, "/-/reload", &[], Bytes::new())
        .await
        .expect("answer");
    assert_refused(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reload_rejected",
        &["hunter2-password"],
    );
    let config = admin.get("/config", &[]).await.expect("config");
    assert_eq!(config.json()["generation"], 1);
    assert!(!config.text().contains("hunter2"), "{}", config.text());
    assert_not_logged(&veer, &[MATCHED_KEY, "hunter2-password"]);
}
